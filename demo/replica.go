package main

// Replica is the relay's own participant in one map room: the seam where a
// native crdt replica plugs in. Its ID is listed among the room's peers, so
// browsers can address sync requests to it like to any other peer.
//
// The relay serializes calls per room: at most one method of a room's
// Replica runs at a time, so an implementation needs no locking of its own.
// Every message is the frame's JSON text; the implementation must not
// modify it (the relay broadcasts the same bytes).
// Replies are complete JSON text frames (usually PeerMessage envelopes
// addressed to the sender); the relay sends them, in order, to the
// connection whose message caused them.
type Replica interface {
	// ID returns the replica's peer id. It must be constant and match the
	// peer id pattern [A-Za-z0-9_-]{1,64}.
	ID() string

	// Check is called with every OperationMessage and SavedMessage, exactly
	// as received, before the relay broadcasts it to the room. It validates
	// the message and may apply and store it. An error rejects the message:
	// nothing is broadcast and the sender's connection is closed with
	// policy violation (1008) and the error text as reason.
	Check(msg []byte) (replies [][]byte, err error)

	// PeerMessage is called with a PeerMessage envelope whose recipient is
	// ID(); its sender field is the sending connection's peer id. An error
	// closes the sender's connection like Check's.
	PeerMessage(msg []byte) (replies [][]byte, err error)

	// Close releases the replica: when its room's last peer leaves, or when
	// the relay shuts down. A later join opens a new one via the factory.
	Close() error
}

// JoinHook is optionally implemented by a Replica that wants to greet the
// peers joining its room. Joined is called with the new peer's id, after the
// peer got its JoinResponse and the room the new ListPeersResponse; the
// messages it returns are sent to the new peer (a probe, crdt's
// ProbeRequest, so that edits the peer made offline reach the replica even
// if it asks no one).
// Like every other method, it runs under the room's serialization.
type JoinHook interface {
	Joined(peer string) [][]byte
}

// Forwarder is optionally implemented by a Replica that passes on to its
// room what a peer's PeerMessage taught it. The relay then calls
// PeerMessageForward instead of PeerMessage: replies go to the sender, as
// PeerMessage's do, and forward, after them, to every other peer of the room.
// Like every other method, it runs under the room's serialization.
type Forwarder interface {
	// PeerMessageForward is PeerMessage, and returns too the messages for
	// the rest of the room (nil, usually). An error closes the sender's
	// connection, and nothing is forwarded.
	PeerMessageForward(msg []byte) (replies, forward [][]byte, err error)
}

// GroupCommitter is optionally implemented by a Replica whose Check and
// PeerMessage (or PeerMessageForward) write what they store without waiting
// for it to be durable, so that the writes of several calls share one sync
// (group commit). The relay then sends nothing that comes after such a write
// — its replies, its broadcast, and anything else the room sends meanwhile,
// in order — until a sync has made it durable; it reads on meanwhile, so the
// messages a peer sends in a burst share a sync too. A failed sync closes
// the sender of every write it undid, as an error of Check would (what they
// sent after it is dropped). It calls PeerMessage (PeerMessageForward),
// Joined and Close, which read what the replica holds, only when no write
// waits for a sync. Unsynced and Synced, like every other method, run
// under the room's serialization; the function Sync returns runs outside it,
// concurrently with the other methods, and never with another such function.
type GroupCommitter interface {
	// Unsynced returns how many bytes were written and are not durable yet.
	Unsynced() int64
	// Sync returns the function that makes durable what was written so far.
	// Synced is called with its error before the next Sync.
	Sync() func() error
	// Synced ends a Sync. Given an error, it undoes every write not durable
	// (the replica as before them) and returns the error their senders get.
	Synced(err error) error
}

// ReplicaFactory opens the Replica of the map named mapName (already
// validated against [A-Za-z0-9_-]{1,64}, so it is safe as a file name). It is
// called when the first peer joins a room; an error refuses that join.
type ReplicaFactory func(mapName string) (Replica, error)

// nopReplica accepts every message and holds nothing; it is the replica of
// every room when no ReplicaFactory is set.
type nopReplica struct{}

// ID returns "relay".
func (nopReplica) ID() string { return "relay" }

// Check accepts every message.
func (nopReplica) Check([]byte) ([][]byte, error) { return nil, nil }

// PeerMessage answers nothing.
func (nopReplica) PeerMessage([]byte) ([][]byte, error) { return nil, nil }

// Close does nothing.
func (nopReplica) Close() error { return nil }
