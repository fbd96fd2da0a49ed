package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"slices"
	"sync"

	"github.com/coder/websocket"
	"github.com/google/uuid"
)

// room is one map's joined connections and replica. Its mutex serializes
// membership changes, replica calls and the queueing of broadcasts, so every
// peer sees the room's messages in one order (with a GroupCommitter replica,
// they wait in the outbox in that order until the writes before them are
// durable). A connection's messages are
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

	// Group commit, when the replica is a GroupCommitter (gc): what the room sends
	// after a write of the replica waits in outbox, in order, until a sync has made
	// the write durable. A goroutine (commitAll, while committer is set) syncs while
	// writes wait, with the lock released during each sync: the writes made meanwhile
	// share the next. One sync runs at a time (committing). cond (on mu) is signalled
	// when a sync ends and when a settle does; settling counts the calls waiting for
	// every write to be durable, which new writes wait for.
	gc         GroupCommitter
	outbox     []outgoing
	committer  bool
	committing bool
	settling   int
	cond       *sync.Cond
}

// outgoing is a message the room sends once the writes before it are durable. A write
// of the replica is one without a recipient (to); the messages that come of it carry it
// too (w), and are dropped if it fails, with those that come after it of its sender's.
type outgoing struct {
	to, from *conn // from: whose message it comes of (nil: the room's)
	msg      []byte
	w        *write
}

// write is one write of the replica: done once a sync decided it, err its failure.
type write struct {
	done bool
	err  error
}

// newRoom returns the room of a map, its replica not opened yet.
func newRoom(name string) *room {
	rm := &room{name: name, ready: make(chan struct{})}
	rm.cond = sync.NewCond(&rm.mu)
	return rm
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
// replica's JoinHook returns, if it has one. A c kicked meanwhile is not added.
// Called without the relay's lock (Relay.join sets c.room after).
func (rm *room) join(c *conn, peer, name string) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	rm.settle() // Joined reads the replica: nothing not durable must show
	if c.kicked() {
		return
	}
	if !idPattern.MatchString(peer) || rm.taken(peer) {
		peer = uuid.NewString()
	}
	c.id, c.name = peer, name
	rm.peers = append(rm.peers, c)
	resp := rm.roster("JoinResponse")
	resp.Peer = peer
	rm.send(c, mustJSON(resp), nil, nil)
	rm.broadcast(nil, mustJSON(rm.roster("ListPeersResponse")), nil)
	if h, ok := rm.replica.(JoinHook); ok {
		rm.sendAll(c, h.Joined(peer), nil)
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
	i := slices.Index(rm.peers, c)
	if i >= 0 {
		rm.peers = slices.Delete(rm.peers, i, i+1)
	}
	if len(rm.peers) == 0 {
		return true
	}
	if i >= 0 { // else c was kicked before it entered (join): the roster is unchanged
		rm.broadcast(nil, mustJSON(rm.roster("ListPeersResponse")), nil)
	}
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
	rm.settle()
	if err := rm.replica.Close(); err != nil {
		log.Error("closing replica", "map", rm.name, "err", err)
	}
}

// broadcast sends msg to every peer but from, whose message it comes of (w: the write
// it comes of, if any).
func (rm *room) broadcast(from *conn, msg []byte, w *write) {
	for _, p := range rm.peers {
		if p != from {
			rm.send(p, msg, from, w)
		}
	}
}

// send queues msg to c, after what waits in the outbox; from is whose message it comes
// of (nil: the room's), w the write it comes of, if any. What waits in the outbox for c
// counts against c's send queue (conn.hold).
func (rm *room) send(c *conn, msg []byte, from *conn, w *write) {
	if len(rm.outbox) == 0 {
		c.enqueue(msg)
		return
	}
	if c.hold(msg) {
		rm.outbox = append(rm.outbox, outgoing{to: c, from: from, msg: msg, w: w})
	}
}

func (rm *room) sendAll(c *conn, msgs [][]byte, w *write) {
	for _, m := range msgs {
		rm.send(c, m, c, w)
	}
}

// reply sends c msg after what the room sends before it: a pong follows the replies
// to the messages c sent before its ping.
func (rm *room) reply(c *conn, msg []byte) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	rm.send(c, msg, c, nil)
}

// wrote returns the write the replica call for a message of from just made, queued in
// the outbox, or nil if it made none that is not durable yet, and has a goroutine sync
// it. Called after a call that succeeded, which writes (Check), or which ran settled
// (PeerMessage): the bytes not durable are its.
func (rm *room) wrote(from *conn) *write {
	if rm.gc == nil {
		return nil
	}
	if rm.gc.Unsynced() == 0 {
		// Nothing written is waiting: a compaction (the store's, in this call's append)
		// made durable every write before too. They are decided now, not by the next sync,
		// whose failure would refuse them though they stay in the map.
		for _, o := range rm.outbox {
			if o.w != nil && !o.w.done {
				o.w.done, o.w.err = true, nil
			}
		}
		return nil
	}
	w := &write{}
	rm.outbox = append(rm.outbox, outgoing{from: from, w: w})
	if !rm.committer {
		rm.committer = true
		go rm.commitAll()
	}
	return w
}

// maxUnsynced bounds the log bytes written and not durable, a message past it: a sender
// waits for a sync then (as it waited for its own before group commit), so that peers
// sending faster than the disk syncs cannot make the room hold more.
const maxUnsynced = 1 << 20

// waitWrite waits, with the lock held (released meanwhile), until a write may be made,
// and reports whether c's message is still to be handled.
func (rm *room) waitWrite(c *conn) bool {
	for rm.settling > 0 || rm.gc != nil && rm.gc.Unsynced() >= maxUnsynced {
		rm.cond.Wait()
	}
	return !c.out && !c.kicked()
}

// commitAll syncs until no write waits, in a goroutine of its own: the peers' messages
// are handled meanwhile, and their writes share the next sync.
func (rm *room) commitAll() {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	for len(rm.outbox) > 0 {
		rm.commit()
	}
	rm.committer = false
}

// settle returns once no write waits to be durable, syncing if no one else does; new
// writes wait meanwhile (one always coming would hold it forever). For the replica's
// calls that read what it holds, and its close.
func (rm *room) settle() {
	rm.settling++
	for len(rm.outbox) > 0 {
		rm.commit()
	}
	rm.settling--
	rm.cond.Broadcast()
}

// commit syncs the replica's writes so far, then sends what waited for them, or it waits
// for the sync running to end. Called, and returns, with the lock held; it is released
// while it waits or syncs: writes are made meanwhile, which the next sync takes.
//
// A failed sync undid every write not durable: their senders are closed as if the
// replica had refused their messages (what they sent after is dropped, as a closed
// connection's), and what comes of the writes is not sent.
func (rm *room) commit() {
	if rm.committing {
		rm.cond.Wait()
		return
	}
	rm.committing = true
	n := len(rm.outbox) // the writes the sync takes are in outbox[:n]
	var err error
	if rm.gc.Unsynced() > 0 { // else a compaction has made everything durable
		sync := rm.gc.Sync()
		rm.mu.Unlock()
		err = sync()
		rm.mu.Lock()
		err = rm.gc.Synced(err)
	}
	if err != nil || rm.gc.Unsynced() == 0 {
		// A failed sync undid every write not durable; a compaction made them all durable.
		n = len(rm.outbox)
	}
	for _, o := range rm.outbox[:n] {
		if o.w != nil && !o.w.done { // one a compaction made durable is decided (wrote)
			o.w.done, o.w.err = true, err
		}
	}
	// Send, in order, everything up to the first write still to sync.
	var failed map[*conn]bool
	for len(rm.outbox) > 0 && (rm.outbox[0].w == nil || rm.outbox[0].w.done) {
		o := rm.outbox[0]
		if o.w != nil && o.w.err != nil && !failed[o.from] {
			if failed == nil {
				failed = map[*conn]bool{}
			}
			failed[o.from] = true
			o.from.kick(websocket.StatusPolicyViolation, o.w.err.Error())
		}
		if o.to != nil {
			o.to.release(o.msg, !failed[o.from])
		}
		rm.outbox[0] = outgoing{}
		rm.outbox = rm.outbox[1:]
	}
	if len(rm.outbox) == 0 {
		rm.outbox = nil // the array goes back
	}
	rm.committing = false
	rm.cond.Broadcast()
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
	if !rm.waitWrite(c) {
		return nil
	}
	replies, err := rm.replica.Check(msg)
	if err != nil {
		return &closeError{websocket.StatusPolicyViolation, err.Error()}
	}
	w := rm.wrote(c)
	rm.sendAll(c, replies, w)
	rm.broadcast(c, msg, w)
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
	if c.out || c.kicked() {
		return nil
	}
	if recipient == rm.replicaID {
		// It may write (a response is logged): it waits, as an operation does, for a settle
		// running (a join's) to end. Settling alongside it instead, and writing once its own
		// settle ended, it could keep a join's settle waiting for ever.
		if !rm.waitWrite(c) {
			return nil
		}
		rm.settle() // the answer reads the replica: nothing not durable must show
		if c.out || c.kicked() {
			return nil
		}
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
		w := rm.wrote(c)
		rm.sendAll(c, replies, w)
		for _, m := range forward {
			rm.broadcast(c, m, w)
		}
		return nil
	}
	if p := rm.find(recipient); p != nil {
		rm.send(p, msg, c, nil)
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
