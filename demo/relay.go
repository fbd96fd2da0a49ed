package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
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
	// connection (default 65,536). A client that lets its queue overflow is
	// closed with 1008 "too slow" rather than blocking its room. The bound is
	// far above a burst a healthy peer reads: a peer flushing its offline edits
	// sends one message each, and on loopback a sender outruns the relay's writes
	// to the others (with 256, a burst of 1,000 closed every other peer). A
	// queue takes memory for the messages it holds only.
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
	// PingInterval is how often each connection is sent a WebSocket ping
	// (default 30 s; negative: never). One whose pong has not come within
	// PingTimeout (default 15 s) is closed: a connection dead on the way
	// (a laptop sleeping, a dropped NAT entry) ends no close, and would
	// hold its peer id — refused to the peer connecting again — and be
	// listed in its room for ever.
	PingInterval time.Duration
	PingTimeout  time.Duration
	// MaxConns bounds the WebSocket connections open at once, handshakes
	// included (default 1000; negative: no bound). One more is answered 503
	// before the upgrade. Each connection may hold a map's replica in memory
	// (a room's replica lives while a peer is in it), so this bounds the maps
	// open too.
	MaxConns int
	// MaxConnsPerIP bounds the connections open at once from one remote
	// address, an IPv6 one counted by its /64 (default 50; negative: no bound). One more is answered 429
	// before the upgrade. Behind a reverse proxy every connection comes from
	// the proxy's address: bound them there and set this negative.
	MaxConnsPerIP int
	// JoinTimeout is how long a connection may stay open without sending its
	// JoinRequest (default 30 s; negative: forever). It is then closed with
	// 1008: a socket that never joins holds no room, only a slot of MaxConns.
	JoinTimeout time.Duration
	// FoldCase makes map names case-insensitive: "Paris" and "paris" are one
	// room, whose replica is opened as "paris". Set it when the replicas' files
	// live on a case-insensitive filesystem (macOS, Windows; see
	// caseInsensitiveDir): there the two names are one pair of files, which two
	// rooms would write over each other.
	FoldCase bool
	// OriginPatterns are the other origins whose pages may open a connection,
	// as websocket.AcceptOptions.OriginPatterns matches them: host patterns
	// ("umap.example.org", "*.example.org") or, with a scheme,
	// "https://umap.example.org". A browser's handshake from any other origin
	// than the relay's own host is refused with 403 (cross-site WebSocket
	// hijacking). A request without an Origin header (not a browser) is taken.
	OriginPatterns []string
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

	mu    sync.Mutex
	rooms map[string]*room
	// closing holds, per map, the channel closed when the replica of its
	// last room is closed: a new room's replica is opened after it.
	closing map[string]chan struct{}
	conns   map[*conn]struct{}
	// open counts the connections being served (handshakes included), in all
	// and per remote address, for MaxConns and MaxConnsPerIP.
	open   int
	openBy map[string]int
	closed bool
	active sync.WaitGroup // one per connection being served
}

// NewRelay returns a Relay configured by opts.
func NewRelay(opts Options) *Relay {
	if opts.MaxMessageSize <= 0 {
		opts.MaxMessageSize = FrameLimit(crdt.DefaultLimits().MaxMessageBytes)
	}
	if opts.SendQueue <= 0 {
		opts.SendQueue = 1 << 16
	}
	if opts.SendQueueBytes <= 0 {
		opts.SendQueueBytes = 2 * opts.MaxMessageSize
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.PingInterval == 0 {
		opts.PingInterval = 30 * time.Second
	}
	if opts.PingTimeout <= 0 {
		opts.PingTimeout = 15 * time.Second
	}
	if opts.MaxConns == 0 {
		opts.MaxConns = 1000
	}
	if opts.MaxConnsPerIP == 0 {
		opts.MaxConnsPerIP = 50
	}
	if opts.JoinTimeout == 0 {
		opts.JoinTimeout = 30 * time.Second
	}
	if opts.NewReplica == nil {
		opts.NewReplica = func(string) (Replica, error) { return nopReplica{}, nil }
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	r := &Relay{opts: opts, rooms: map[string]*room{}, closing: map[string]chan struct{}{},
		conns: map[*conn]struct{}{}, openBy: map[string]int{}}
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
	if r.opts.FoldCase {
		name = strings.ToLower(name)
	}
	addr := remoteHost(req.RemoteAddr)
	r.mu.Lock()
	switch {
	case r.closed:
		r.mu.Unlock()
		http.Error(w, "relay shutting down", http.StatusServiceUnavailable)
		return
	case r.opts.MaxConns > 0 && r.open >= r.opts.MaxConns:
		r.mu.Unlock()
		w.Header().Set("Retry-After", "60")
		http.Error(w, "too many connections", http.StatusServiceUnavailable)
		return
	case r.opts.MaxConnsPerIP > 0 && r.openBy[addr] >= r.opts.MaxConnsPerIP:
		r.mu.Unlock()
		w.Header().Set("Retry-After", "60")
		http.Error(w, "too many connections from your address", http.StatusTooManyRequests)
		return
	}
	r.open++
	r.openBy[addr]++
	r.active.Add(1)
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.open--
		if r.openBy[addr]--; r.openBy[addr] == 0 {
			delete(r.openBy, addr)
		}
		r.mu.Unlock()
		r.active.Done()
	}()

	ws, err := websocket.Accept(w, req, &websocket.AcceptOptions{OriginPatterns: r.opts.OriginPatterns})
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

// remoteHost is what MaxConnsPerIP counts a request's RemoteAddr (host:port) under:
// its IPv4 address, or the /64 of its IPv6 address (one host usually holds a whole
// /64, and could pick a new address per connection).
func remoteHost(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	if ip = ip.Unmap(); ip.Is6() {
		p, _ := ip.WithZone("").Prefix(64)
		return p.String()
	}
	return ip.String()
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
// needed, and tells the room. It is called from c's reading goroutine. The
// replica is opened, and c added to the room, without the relay's lock (loading
// a large map takes a while, and the room waits for its writes to be durable:
// joins and leaves of other maps go on meanwhile), after the close of
// the map's previous room, if one is closing, has ended: two replicas of a
// map would share its files.
func (r *Relay) join(c *conn, peer, name string) error {
	r.mu.Lock()
	if c.left {
		r.mu.Unlock()
		return nil // kicked meanwhile: it must not enter a room now
	}
	rm := r.rooms[c.mapName]
	var previous chan struct{}
	opener := rm == nil
	if opener {
		rm = newRoom(c.mapName)
		r.rooms[c.mapName] = rm
		previous = r.closing[c.mapName]
	}
	rm.joining++ // the room stays open for c (see retire)
	r.mu.Unlock()

	if opener {
		if previous != nil {
			<-previous
		}
		if rep, err := r.opts.NewReplica(c.mapName); err != nil {
			rm.openErr = err
		} else {
			rm.replica, rm.replicaID = rep, rep.ID()
			rm.gc, _ = rep.(GroupCommitter)
		}
		close(rm.ready)
	}
	<-rm.ready
	if rm.openErr == nil {
		// Without the relay's lock: the room first waits for its writes to be durable
		// (settle), and one map's fsync must not hold back the others, nor Shutdown. The
		// room stays open for c meanwhile (joining).
		rm.join(c, peer, name)
	}

	r.mu.Lock()
	rm.joining--
	var done chan struct{}
	switch {
	case rm.openErr != nil:
		if rm.joining == 0 && r.rooms[rm.name] == rm {
			delete(r.rooms, rm.name)
		}
	case c.left: // kicked meanwhile (its leave found no room): it leaves, maybe emptying it
		done = r.retire(rm, rm.leave(c))
	default:
		c.room = rm // its leave, from now on, leaves rm
	}
	r.mu.Unlock()
	if done != nil {
		r.closeRoom(rm, done)
	}
	if rm.openErr != nil {
		return &closeError{websocket.StatusInternalError, "cannot open map: " + rm.openErr.Error()}
	}
	return nil
}

// leave removes c from its room, if it joined one, closing the room (and its
// replica) when it empties. Later joins of c are ignored. The replica is
// closed without the relay's lock (the stored replica compacts its files):
// a join of the map meanwhile opens a new room, whose replica is opened once
// the close has ended.
func (r *Relay) leave(c *conn) {
	r.mu.Lock()
	c.left = true
	var done chan struct{}
	rm := c.room
	if rm != nil {
		done = r.retire(rm, rm.leave(c))
	}
	r.mu.Unlock()
	if done != nil {
		r.closeRoom(rm, done)
	}
}

// retire takes rm out of the relay when it is empty and no join is on its way
// into it, and returns the channel its close will close (nil when it stays).
// Called with the relay's lock held.
func (r *Relay) retire(rm *room, empty bool) chan struct{} {
	if !empty || rm.joining > 0 || r.rooms[rm.name] != rm {
		return nil
	}
	delete(r.rooms, rm.name)
	done := make(chan struct{})
	r.closing[rm.name] = done
	return done
}

// closeRoom closes the replica of rm, retired, and then done. Called without
// the relay's lock.
func (r *Relay) closeRoom(rm *room, done chan struct{}) {
	rm.closeReplica(r.opts.Log)
	r.mu.Lock()
	if r.closing[rm.name] == done {
		delete(r.closing, rm.name)
	}
	r.mu.Unlock()
	close(done)
}
