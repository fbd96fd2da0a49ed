package main

import (
	"context"
	"log/slog"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/mapcrdt/mapcrdt/crdt"
)

// SyncPattern is the ServeMux pattern of the relay's WebSocket endpoint.
const SyncPattern = "GET /ws/sync/{map}"

// idPattern is what map names and peer ids must match.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// envelopeRoom is what a frame may hold beyond the engine's message limit: a PeerMessage
// envelope ({"kind":"PeerMessage","sender":…,"recipient":…,"message":…}) around a message
// of the limit, with peer ids of 128 bytes (the engine's longest) each byte escaped (\u00XX).
const envelopeRoom = 4 << 10

// FrameLimit is the frame limit of a relay whose peers' engines take messages of up to
// maxMessageBytes (crdt.Limits.MaxMessageBytes): such a message, and a PeerMessage
// envelope around it.
func FrameLimit(maxMessageBytes int) int64 { return int64(maxMessageBytes) + envelopeRoom }

// Options configures a Relay. Zero fields take their defaults.
type Options struct {
	// MaxMessageSize is the largest frame accepted, in bytes. The default,
	// FrameLimit(crdt.DefaultLimits().MaxMessageBytes) (32 MiB and 4 KiB), takes any
	// message an engine with the default limits makes: an edit (an import of a datalayer
	// with thousands of features is one upsert or batch), or a sync page in its envelope.
	// A smaller limit would close, with every rejoin, the connection of a peer that made
	// an edit over it: the answer to the relay's greeting probe carries that edit again.
	// A larger frame closes its connection with 1009 (message too big).
	MaxMessageSize int64
	// SendQueue is how many messages may wait to be written to one
	// connection (default 256). A client that lets its queue overflow is
	// closed with 1008 "too slow" rather than blocking its room.
	SendQueue int
	// SendQueueBytes bounds the bytes of the messages waiting to be written to
	// one connection, the one being written included (default 2 ×
	// MaxMessageSize: two messages of the engine's limit). A client
	// whose queue would pass it is closed with 1008 "too slow", like one whose
	// SendQueue overflows: a client that does not read cannot make the relay
	// hold more. An empty queue takes any one message.
	SendQueueBytes int64
	// WriteTimeout bounds the write of one message (default 10 s).
	WriteTimeout time.Duration
	// NewReplica opens each room's Replica. Nil gives every room a replica
	// with id "relay" that accepts everything and stores nothing.
	NewReplica ReplicaFactory
	// Log receives connection events (default slog.Default()).
	Log *slog.Logger
}

// Relay is the http.Handler of uMap's sync protocol over WebSocket at
// SyncPattern: one room per map name, holding the joined connections and the
// map's Replica. Messages are relayed, never rewritten, except the sender
// field of a PeerMessage (see withSender). A Replica that is a Forwarder
// passes on to the room what a PeerMessage taught it. The JoinRequest token
// is accepted as is: the demo has no authentication.
type Relay struct {
	opts Options
	mux  *http.ServeMux

	mu     sync.Mutex
	rooms  map[string]*room
	conns  map[*conn]struct{}
	closed bool
	active sync.WaitGroup // one per connection being served
}

// NewRelay returns a Relay configured by opts.
func NewRelay(opts Options) *Relay {
	if opts.MaxMessageSize <= 0 {
		opts.MaxMessageSize = FrameLimit(crdt.DefaultLimits().MaxMessageBytes)
	}
	if opts.SendQueue <= 0 {
		opts.SendQueue = 256
	}
	if opts.SendQueueBytes <= 0 {
		opts.SendQueueBytes = 2 * opts.MaxMessageSize
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.NewReplica == nil {
		opts.NewReplica = func(string) (Replica, error) { return nopReplica{}, nil }
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	r := &Relay{opts: opts, rooms: map[string]*room{}, conns: map[*conn]struct{}{}}
	r.mux = http.NewServeMux()
	r.mux.HandleFunc(SyncPattern, r.serveSync)
	return r
}

// ServeHTTP serves SyncPattern and answers 404 to anything else.
func (r *Relay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mux.ServeHTTP(w, req)
}

func (r *Relay) serveSync(w http.ResponseWriter, req *http.Request) {
	name := req.PathValue("map")
	if !idPattern.MatchString(name) {
		http.Error(w, "invalid map name: want [A-Za-z0-9_-]{1,64}", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		http.Error(w, "relay shutting down", http.StatusServiceUnavailable)
		return
	}
	r.active.Add(1)
	r.mu.Unlock()
	defer r.active.Done()

	ws, err := websocket.Accept(w, req, nil)
	if err != nil {
		return // Accept has answered the request
	}
	// Past the limit, the library itself closes with 1009 and the reason
	// "read limited at MaxMessageSize+1 bytes".
	ws.SetReadLimit(r.opts.MaxMessageSize)
	c := newConn(r, ws, name)
	if !r.track(c) {
		ws.Close(websocket.StatusGoingAway, "relay shutting down")
		return
	}
	defer r.untrack(c)
	c.serve(req.Context())
}

func (r *Relay) track(c *conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *Relay) untrack(c *conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
}

// Shutdown refuses new connections, closes every open one with 1001
// (going away) and waits until they are all gone and their rooms' replicas
// are closed, or ctx is done.
func (r *Relay) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		c.kick(websocket.StatusGoingAway, "relay shutting down")
	}
	r.mu.Unlock()

	done := make(chan struct{})
	go func() { r.active.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// join adds c to the room of its map, opening the room (and its replica) if
// needed, and tells the room. It is called from c's reading goroutine.
func (r *Relay) join(c *conn, peer, name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.left {
		return nil // kicked meanwhile: it must not enter a room now
	}
	rm := r.rooms[c.mapName]
	if rm == nil {
		rep, err := r.opts.NewReplica(c.mapName)
		if err != nil {
			return &closeError{websocket.StatusInternalError, "cannot open map: " + err.Error()}
		}
		rm = &room{name: c.mapName, replica: rep, replicaID: rep.ID()}
		r.rooms[c.mapName] = rm
	}
	rm.join(c, peer, name)
	return nil
}

// leave removes c from its room, if it joined one, closing the room (and its
// replica) when it empties. Later joins of c are ignored. It holds the
// relay's lock until the replica is closed: a join meanwhile would open a
// second replica of the map on the same files.
func (r *Relay) leave(c *conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c.left = true
	rm := c.room
	if rm == nil || rm.leave(c, r.opts.Log) {
		return
	}
	delete(r.rooms, rm.name)
}
