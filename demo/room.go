package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"sync"

	"github.com/coder/websocket"
	"github.com/google/uuid"
)

// room is one map's joined connections and replica. Its mutex serializes
// membership changes, replica calls and the queueing of broadcasts, so every
// peer sees the room's messages in one order. A connection's messages are
// handled only while it is in the room: one kicked leaves at once, while its
// reader may still hold a message read before the kick, and that message
// must not reach a replica its room's last leave has closed.
type room struct {
	name      string
	replica   Replica // set once ready is closed
	replicaID string

	// ready is closed once the replica is opened, or failed to (openErr).
	ready   chan struct{}
	openErr error
	// joining counts the joins on their way into the room (under the relay's
	// lock): the room is not closed while one is.
	joining int

	mu    sync.Mutex
	peers []*conn // in join order
}

// peersMessage is JoinResponse and ListPeersResponse. Peers is written as uMap's server
// writes it (umap/sync/payloads.py, JoinResponse and ListPeersResponse: "peers" an object
// of peer id → user name, "" for none), in roster order: uMap's client picks the peer it
// asks from Object.keys(peers) (engine.js _getRandomPeer), so an array would have it ask
// peers "0", "1" …, which are no one. Names repeats the names given (the demo page's).
type peersMessage struct {
	Kind  string            `json:"kind"`
	Peer  string            `json:"peer,omitempty"`
	Peers rosterPeers       `json:"peers"`
	Names map[string]string `json:"names"`
}

// rosterPeers are a roster's peer ids and their names, in order.
type rosterPeers struct{ ids, names []string }

// MarshalJSON writes the peers as a JSON object of id → name, in order.
func (p rosterPeers) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i, id := range p.ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, mustJSON(id)...)
		b = append(b, ':')
		b = append(b, mustJSON(p.names[i])...)
	}
	return append(b, '}'), nil
}

// roster returns the room's peer ids (the replica first) and their names.
// Called with the lock held.
func (rm *room) roster(kind string) peersMessage {
	m := peersMessage{Kind: kind, Peers: rosterPeers{ids: []string{rm.replicaID}, names: []string{"relay"}},
		Names: map[string]string{rm.replicaID: "relay"}}
	for _, p := range rm.peers {
		m.Peers.ids = append(m.Peers.ids, p.id)
		m.Peers.names = append(m.Peers.names, p.name)
		if p.name != "" {
			m.Names[p.id] = p.name
		}
	}
	return m
}

// join gives c a peer id (peer if valid and free, else a fresh uuid), sends
// it the JoinResponse, everyone the new ListPeersResponse, and c what the
// replica's JoinHook returns, if it has one.
func (rm *room) join(c *conn, peer, name string) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if !idPattern.MatchString(peer) || rm.taken(peer) {
		peer = uuid.NewString()
	}
	c.id, c.name, c.room = peer, name, rm
	rm.peers = append(rm.peers, c)
	resp := rm.roster("JoinResponse")
	resp.Peer = peer
	c.enqueue(mustJSON(resp))
	rm.broadcast(nil, mustJSON(rm.roster("ListPeersResponse")))
	if h, ok := rm.replica.(JoinHook); ok {
		c.enqueueAll(h.Joined(peer))
	}
}

func (rm *room) taken(id string) bool {
	return id == rm.replicaID || rm.find(id) != nil
}

func (rm *room) find(id string) *conn {
	for _, p := range rm.peers {
		if p.id == id {
			return p
		}
	}
	return nil
}

// leave removes c and tells the others; it reports whether the room is left
// empty. A connection's messages are dropped once it left (c.out): after the
// replica call running, if any, none other is made for c.
func (rm *room) leave(c *conn) (empty bool) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	c.out = true
	for i, p := range rm.peers {
		if p == c {
			rm.peers = append(rm.peers[:i], rm.peers[i+1:]...)
			break
		}
	}
	if len(rm.peers) == 0 {
		return true
	}
	rm.broadcast(nil, mustJSON(rm.roster("ListPeersResponse")))
	return false
}

// empty reports whether no peer is in the room.
func (rm *room) empty() bool {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return len(rm.peers) == 0
}

// closeReplica closes the replica of the room, retired (Relay.retire): no peer
// is in it, and none can enter. Under the room's lock: after the replica call
// running, if any.
func (rm *room) closeReplica(log *slog.Logger) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if err := rm.replica.Close(); err != nil {
		log.Error("closing replica", "map", rm.name, "err", err)
	}
}

// broadcast queues msg to every peer but except.
func (rm *room) broadcast(except *conn, msg []byte) {
	for _, p := range rm.peers {
		if p != except {
			p.enqueue(msg)
		}
	}
}

// operation has the replica check an OperationMessage or SavedMessage from
// c, sends c the replica's replies, and relays msg to the other peers. It
// drops msg if c has left the room.
func (rm *room) operation(c *conn, msg []byte) error {
	// The sender is who sent it (a peer's gap heal asks the sender): a peer naming another
	// would have every receiver ask that one.
	msg = withSender(msg, c.id)
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if c.out {
		return nil
	}
	replies, err := rm.replica.Check(msg)
	if err != nil {
		return &closeError{websocket.StatusPolicyViolation, err.Error()}
	}
	c.enqueueAll(replies)
	rm.broadcast(c, msg)
	return nil
}

// peerMessage routes a PeerMessage from c (data: its text, fields: its
// decoded top level) to its recipient, as c wrote it but for the sender, set
// to c's peer id (withSender). A message for the
// replica goes to Replica.PeerMessage (or Forwarder.PeerMessageForward, whose
// forward goes to the other peers); one for an absent peer, or from a peer
// that has left the room, is dropped.
func (rm *room) peerMessage(c *conn, data []byte, fields map[string]json.RawMessage) error {
	var recipient string
	if err := json.Unmarshal(fields["recipient"], &recipient); err != nil || recipient == "" {
		return policy(`PeerMessage without a string "recipient"`)
	}
	if m := fields["message"]; len(m) == 0 || m[0] != '{' {
		return policy(`PeerMessage without an object "message"`)
	}
	msg := withSender(data, c.id)

	rm.mu.Lock()
	defer rm.mu.Unlock()
	if c.out {
		return nil
	}
	if recipient == rm.replicaID {
		var replies, forward [][]byte
		var err error
		if f, ok := rm.replica.(Forwarder); ok {
			replies, forward, err = f.PeerMessageForward(msg)
		} else {
			replies, err = rm.replica.PeerMessage(msg)
		}
		if err != nil {
			return &closeError{websocket.StatusPolicyViolation, err.Error()}
		}
		c.enqueueAll(replies)
		for _, m := range forward {
			rm.broadcast(c, m)
		}
		return nil
	}
	if p := rm.find(recipient); p != nil {
		p.enqueue(msg)
	}
	return nil
}

// mustJSON marshals values that cannot fail to marshal, leaving <, > and &
// as they are (json.Marshal escapes them, for JSON inside HTML): a peer's
// text, its display name in a roster, reaches the others as it wrote it.
func mustJSON(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}
