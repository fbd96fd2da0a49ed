package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/mapcrdt/mapcrdt/crdt"
)

// TestRelayChaos is an adversarial end-to-end test of the relay: for each seed, browsers
// (crdt replicas speaking the relay protocol over real WebSockets on 127.0.0.1, as
// web/app.js does) and uMap clients (its plain form) edit one or two maps through a relay
// storing them, with the engine's message limits or small ones (sync answers in pages),
// the same for all or mixed. At random: messages pile up unread; peers leave cleanly or
// abruptly (no close frame, or the socket cut in the middle of a frame), edit offline and
// come back, compact their logs, send SavedMessages; the browsers online all write one
// key at once; a browser synced to quiet leaves for good (its storage wiped) and a new
// one comes; the relay's fsyncs wait a while (writes pile up, joins and sync answers wait
// on them) or one fails (its writes' senders are refused); the relay pings every 20 ms
// or not; it shuts down and restarts on its data directory, or crashes: its fsyncs fail
// from then on (maybe while writes wait for them), each log is cut at a random byte of
// what was written and not fsync'd, or left with a torn line. Unlike
// TestChaosThroughTheRelay, nothing waits for quiet between steps.
//
// It checks what the relay promises. After every restart its stored maps hold every
// message a peer sent before a pong it got (a pong follows the writes of the messages
// before it: they were fsync'd) and every operation it broadcast (sent once durable). No
// peer is closed by the relay but for what the test provoked. At the end, everyone back
// and synced to quiescence, every browser's State, the relay's, the stored map's and a
// replay of every edit made (the uMap clients': those acknowledged) are equal.
//
// A failure names its seed: -chaos.seed N runs it alone, -chaos.seeds N runs N seeds. A
// seed fixes the steps, not how the relay's goroutines interleave with them: a failing
// seed may need a few runs to fail again. It prints the last events; CHAOS_FULL=1 prints
// the messages whole, CHAOS_TRACE=1 prints the events of a seed that passes too.
func TestRelayChaos(t *testing.T) {
	n, first := 20, uint64(1)
	if *chaosSeeds > 0 {
		n = *chaosSeeds
	}
	if *chaosSeed > 0 {
		n, first = 1, *chaosSeed
	}
	for i := range uint64(n) {
		seed := first + i
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			defer func() {
				if t.Failed() {
					t.Logf("seed %d failed: go test ./demo -run TestRelayChaos -chaos.seed %d -v", seed, seed)
				}
			}()
			relayChaos(t, seed, 600)
		})
	}
}

var (
	chaosSeeds = flag.Int("chaos.seeds", 0, "TestRelayChaos: how many seeds to run (default 20)")
	chaosSeed  = flag.Uint64("chaos.seed", 0, "TestRelayChaos: run this seed only")
)

// errCrashed is what a crashed relay's replicas answer, and its fsyncs return.
var errCrashed = errors.New("chaos: the relay crashed")

// crashState is one relay instance's crash: once crashed, its replicas take and answer
// nothing, its maps do not open, its fsyncs fail and its closes compact nothing. tails
// holds each log's text as a failing fsync found it: what was written and not durable.
type crashState struct {
	mu      sync.RWMutex // held for reading by an open and a close, for writing to crash
	crashed atomic.Bool
	tailsMu sync.Mutex
	tails   map[string][]byte
	// hold, when not nil, holds the fsyncs until it is closed; failNext fails the next.
	holdMu   sync.Mutex
	hold     chan struct{}
	failNext atomic.Bool
}

// sync is the stores' syncLog: it waits while held, fails once crashed (noting what the log
// holds), or once when failNext is set.
func (cs *crashState) sync(f *os.File) error {
	cs.holdMu.Lock()
	hold := cs.hold
	cs.holdMu.Unlock()
	if hold != nil {
		<-hold
	}
	if cs.crashed.Load() {
		if text, err := os.ReadFile(f.Name()); err == nil {
			cs.tailsMu.Lock()
			if len(text) > len(cs.tails[f.Name()]) {
				cs.tails[f.Name()] = text
			}
			cs.tailsMu.Unlock()
		}
		return errCrashed
	}
	if cs.failNext.CompareAndSwap(true, false) {
		return errChaosIO
	}
	return f.Sync()
}

// errChaosIO is the error of an fsync the test fails.
var errChaosIO = errors.New("chaos: input/output error")

// holdSyncs has the fsyncs wait until releaseSyncs: a slow disk, while writes pile up.
func (cs *crashState) holdSyncs() {
	cs.holdMu.Lock()
	defer cs.holdMu.Unlock()
	if cs.hold == nil {
		cs.hold = make(chan struct{})
	}
}

// releaseSyncs lets the fsyncs held go on.
func (cs *crashState) releaseSyncs() {
	cs.holdMu.Lock()
	defer cs.holdMu.Unlock()
	if cs.hold != nil {
		close(cs.hold)
		cs.hold = nil
	}
}

// unsynced reports whether a room of the relay holds writes not fsync'd.
func (w *chaosWorld) unsynced() bool {
	w.relay.mu.Lock()
	var rooms []*room
	for _, rm := range w.relay.rooms {
		rooms = append(rooms, rm)
	}
	w.relay.mu.Unlock()
	for _, rm := range rooms {
		select {
		case <-rm.ready:
		default:
			continue
		}
		rm.mu.Lock()
		n := int64(0)
		if rm.gc != nil {
			n = rm.gc.Unsynced()
		}
		rm.mu.Unlock()
		if n > 0 {
			return true
		}
	}
	return false
}

// chaosReplica is a stored replica that stops at its relay's crash.
type chaosReplica struct {
	*storeReplica
	cs *crashState
}

// Check refuses everything once crashed.
func (c chaosReplica) Check(msg []byte) ([][]byte, error) {
	if c.cs.crashed.Load() {
		return nil, errCrashed
	}
	return c.storeReplica.Check(msg)
}

// PeerMessage is PeerMessageForward's replies.
func (c chaosReplica) PeerMessage(msg []byte) ([][]byte, error) {
	replies, _, err := c.PeerMessageForward(msg)
	return replies, err
}

// PeerMessageForward refuses everything once crashed.
func (c chaosReplica) PeerMessageForward(msg []byte) ([][]byte, [][]byte, error) {
	if c.cs.crashed.Load() {
		return nil, nil, errCrashed
	}
	return c.storeReplica.PeerMessageForward(msg)
}

// Joined greets no one once crashed.
func (c chaosReplica) Joined(peer string) [][]byte {
	if c.cs.crashed.Load() {
		return nil
	}
	return c.storeReplica.Joined(peer)
}

// Close only closes the log once crashed: no compaction.
func (c chaosReplica) Close() error {
	c.cs.mu.RLock()
	defer c.cs.mu.RUnlock()
	if c.cs.crashed.Load() {
		return c.logFile.Close()
	}
	return c.storeReplica.Close()
}

// chaosWorld is one seed's run.
type chaosWorld struct {
	t     *testing.T
	rng   *rand.Rand
	seed  uint64
	so    storeOptions
	logs  *syncBuffer
	relay *Relay
	srv   *httptest.Server
	cs    *crashState
	maps  []string
	peers []*chaosPeer
	umaps []*umapPeer
	// oracle, per map, takes every message a browser flushed and every uMap operation
	// acknowledged: the state everyone must reach.
	oracle map[string]*crdt.Replica
	// acked, per map, holds the messages carrying operations that a peer sent to the relay
	// before a pong it received, and the operations the relay broadcast: they were
	// fsync'd, and no restart may lose them.
	acked    map[string][][]byte
	restarts int
	crashes  int
	// cuts counts the logs a crash cut in what was not fsync'd, torn those it left a torn
	// line at the end of.
	cuts, torn int
	// pages counts the partial sync pages the browsers received.
	pages int
	// closing counts the clean closes under way.
	closing sync.WaitGroup
	// pingInterval is the relay's (0: its default).
	pingInterval time.Duration
	// generation numbers the browsers that replace those gone for good.
	generation int
	// trace holds the last events, printed with a failure.
	traceMu sync.Mutex
	trace   []string
}

// tracef notes an event.
func (w *chaosWorld) tracef(format string, args ...any) {
	w.traceMu.Lock()
	defer w.traceMu.Unlock()
	if len(w.trace) == 3000 {
		w.trace = w.trace[1:]
	}
	w.trace = append(w.trace, time.Now().Format("05.000 ")+fmt.Sprintf(format, args...))
}

// short is msg clipped for a trace.
func short(msg []byte) string {
	if len(msg) > 160 && os.Getenv("CHAOS_FULL") == "" {
		return string(msg[:160]) + "…"
	}
	return string(msg)
}

func (w *chaosWorld) fatalf(format string, args ...any) {
	w.t.Helper()
	logs := w.logs.String()
	if len(logs) > 4000 {
		logs = "…" + logs[len(logs)-4000:]
	}
	w.traceMu.Lock()
	trace := strings.Join(w.trace, "\n")
	w.traceMu.Unlock()
	w.t.Fatalf("seed %d: "+format+"\nstore log (end):\n%s\ntrace:\n%s", append(append([]any{w.seed}, args...), logs, trace)...)
}

// startRelay serves a new relay on the world's data directory.
func (w *chaosWorld) startRelay() {
	cs := &crashState{tails: map[string][]byte{}}
	so := w.so
	so.syncLog = cs.sync
	so.Log = slog.New(slog.NewTextHandler(w.logs, nil))
	factory := newStoreFactory(so)
	opts := Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		MaxMessageSize: FrameLimit(w.so.Replica.Limits.MaxMessageBytes),
		// Pinged often, or not (the default 30 s): a healthy browser's link is never
		// taken for dead, however long its reader on the relay waits for an fsync.
		PingInterval: w.pingInterval, PingTimeout: 5 * time.Second,
		NewReplica: func(name string) (Replica, error) {
			cs.mu.RLock()
			defer cs.mu.RUnlock()
			if cs.crashed.Load() {
				return nil, errCrashed
			}
			rep, err := factory(name)
			if err != nil {
				return nil, err
			}
			return chaosReplica{rep.(*storeReplica), cs}, nil
		}}
	w.cs, w.relay = cs, NewRelay(opts)
	w.srv = httptest.NewServer(w.relay)
}

// stopRelay shuts the relay down (a crash first, if crash), and checks what its maps'
// files then hold: every acknowledged message.
func (w *chaosWorld) stopRelay(crash bool) {
	if crash {
		if w.rng.IntN(2) == 0 {
			// The disk is slow: the peers online edit, and the relay writes what they
			// send, while its fsyncs wait — and then it crashes.
			w.cs.holdSyncs()
			sent := false
			for _, p := range w.peers {
				if p.c != nil && p.joined {
					chaosEdit(w.t, w.rng, p.r)
					sent = sent || p.r.Pending() > 0
					p.flush()
				}
			}
			for deadline := time.Now().Add(500 * time.Millisecond); sent && !w.unsynced() && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
		}
		w.cs.mu.Lock()
		w.cs.crashed.Store(true)
		w.cs.mu.Unlock()
	}
	w.cs.releaseSyncs()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.relay.Shutdown(ctx); err != nil {
		w.fatalf("Shutdown: %v", err)
	}
	w.srv.Close()
	if crash {
		// What a crash leaves: each log cut at a random byte of what was written and not
		// fsync'd (the failed fsync cut it back to what was), or a torn line after it.
		for _, name := range w.maps {
			path := filepath.Join(w.so.Dir, name+".log")
			now, err := os.ReadFile(path)
			if err != nil {
				continue
			}
			w.cs.tailsMu.Lock()
			tail := w.cs.tails[path]
			w.cs.tailsMu.Unlock()
			switch {
			case len(tail) > len(now) && bytes.HasPrefix(tail, now):
				tail = tail[:len(now)+w.rng.IntN(len(tail)-len(now)+1)]
				w.cuts++
			case len(tail) > len(now):
				w.fatalf("%s: the log after the failed fsync (%d bytes) is not a prefix of what was written (%d)", name, len(now), len(tail))
			default:
				tail = now
				if msgs := w.acked[name]; len(msgs) > 0 && w.rng.IntN(2) == 0 {
					m := msgs[w.rng.IntN(len(msgs))]
					tail = append(bytes.Clone(now), m[:1+w.rng.IntN(len(m)-1)]...)
					w.torn++
				}
			}
			writeFile(w.t, path, string(tail))
			if w.rng.IntN(4) == 0 { // and a compaction's temporary snapshot, torn
				writeFile(w.t, filepath.Join(w.so.Dir, name+".snapshot.tmp"), `{"objects":[["feat`)
			}
		}
	}
	for _, p := range w.peers {
		p.gone()
	}
	for _, u := range w.umaps {
		u.gone()
	}
	for _, name := range w.maps {
		w.checkDurable(name)
	}
}

// checkDurable opens the stored map name and checks that it holds every message
// acknowledged: taking them all again changes nothing.
func (w *chaosWorld) checkDurable(name string) {
	if len(w.acked[name]) == 0 {
		return
	}
	logs := &syncBuffer{}
	so := w.so
	so.Log = slog.New(slog.NewTextHandler(logs, nil))
	rep, err := newStoreFactory(so)(name)
	if err != nil {
		w.fatalf("reopening %s after %d restarts and %d crashes: %v\n%s", name, w.restarts, w.crashes, err, logs)
	}
	s := rep.(*storeReplica)
	defer s.Close()
	snap, err := s.r.Snapshot()
	if err != nil {
		w.fatalf("%s: snapshot: %v", name, err)
	}
	check, err := crdt.NewReplicaFromSnapshot(crdt.Options{PeerID: relayPeerID}, snap)
	if err != nil {
		w.fatalf("%s: %v", name, err)
	}
	for _, m := range w.acked[name] {
		if _, err := check.Receive(m); err != nil {
			w.fatalf("%s: the checker refuses an acknowledged message %.300s: %v", name, m, err)
		}
	}
	if got, want := s.r.State(), check.State(); got != want {
		w.fatalf("%s lost acknowledged messages (after %d restarts, %d crashes):\nstored %s\nwith the acknowledged %s",
			name, w.restarts, w.crashes, got, want)
	}
}

// inbox is what a connection's reader received, in order, and how it ended.
type inbox struct {
	mu     sync.Mutex
	msgs   []string
	closed error // set once the reader ends
	notify chan struct{}
}

func (in *inbox) push(msg string, err error) {
	in.mu.Lock()
	if err != nil {
		in.closed = err
	} else {
		in.msgs = append(in.msgs, msg)
	}
	in.mu.Unlock()
	select {
	case in.notify <- struct{}{}:
	default:
	}
}

// pop returns the next message; ok is false when none is there (closed, if the reader
// ended).
func (in *inbox) pop() (msg string, ok bool, closed error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if len(in.msgs) > 0 {
		msg = in.msgs[0]
		in.msgs = in.msgs[1:]
		return msg, true, nil
	}
	return "", false, in.closed
}

// wsConn is one client connection: its WebSocket, its TCP connection (to cut it), and
// its reader's inbox.
type wsConn struct {
	ws  *websocket.Conn
	raw net.Conn
	in  *inbox
	// pings lists, per ping sent and not answered, the messages sent before it.
	pings [][][]byte
	// sent are the messages carrying operations sent since the last ping.
	sent [][]byte
}

// dialChaos connects to mapName on the world's relay.
func (w *chaosWorld) dial(mapName string) (*wsConn, error) {
	c := &wsConn{in: &inbox{notify: make(chan struct{}, 1)}}
	var rawMu sync.Mutex
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		rawMu.Lock()
		c.raw = conn
		rawMu.Unlock()
		return conn, err
	}}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(w.srv.URL, "http")+"/ws/sync/"+mapName,
		&websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(64 << 20)
	c.ws = ws
	go func() {
		for {
			_, data, err := ws.Read(context.Background())
			if err != nil {
				c.in.push("", err)
				return
			}
			c.in.push(string(data), nil)
		}
	}()
	return c, nil
}

// write sends msg as a text message.
func (c *wsConn) write(msg []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.ws.Write(ctx, websocket.MessageText, msg)
}

// cutMidFrame writes the first part of msg's frame on the TCP connection, then closes it:
// a browser gone in the middle of a message.
func (c *wsConn) cutMidFrame(rng *rand.Rand, msg []byte) {
	frame := []byte{0x81}
	switch n := len(msg); {
	case n < 126:
		frame = append(frame, 0x80|byte(n))
	case n < 1<<16:
		frame = append(frame, 0x80|126)
		frame = binary.BigEndian.AppendUint16(frame, uint16(n))
	default:
		frame = append(frame, 0x80|127)
		frame = binary.BigEndian.AppendUint64(frame, uint64(n))
	}
	mask := [4]byte{1, 2, 3, 4}
	frame = append(frame, mask[:]...)
	for i, b := range msg {
		frame = append(frame, b^mask[i%4])
	}
	c.raw.Write(frame[:1+rng.IntN(len(frame)-1)])
	c.raw.Close()
	c.ws.CloseNow()
}

// chaosPeer is a browser: a crdt replica and, while online, its connection.
type chaosPeer struct {
	w           *chaosWorld
	id, mapName string
	r           *crdt.Replica
	c           *wsConn // nil: offline
	joined      bool
}

// String names p in failures and traces.
func (p *chaosPeer) String() string { return p.mapName + "/" + p.id }

// gone forgets p's connection, closed (its unanswered pings with it).
func (p *chaosPeer) gone() {
	if p.c != nil {
		p.w.tracef("%s: offline", p)
		p.c.ws.CloseNow()
		p.c, p.joined = nil, false
	}
}

// leave closes p's connection cleanly: a close frame, answered by the relay's once it reads
// it (a reader waiting for a held fsync reads it late: the handshake runs in the background).
func (p *chaosPeer) leave() {
	p.w.tracef("%s: leaves", p)
	ws := p.c.ws
	p.c, p.joined = nil, false
	p.w.closing.Add(1)
	go func() {
		defer p.w.closing.Done()
		ws.Close(websocket.StatusNormalClosure, "")
	}()
}

// send writes msgs to the relay, noting those that carry operations for the relay (acked
// once a later pong comes). A failed write leaves p offline: what it carried reaches the
// relay from p's log, in its answer to the next greeting probe.
func (p *chaosPeer) send(msgs [][]byte) {
	for _, m := range msgs {
		if p.c == nil {
			return
		}
		if err := p.c.write(m); err != nil {
			p.w.tracef("%s: send failed: %v", p, err)
			p.gone()
			return
		}
		p.w.tracef("%s > %s", p, short(m))
		if carriesOps(m) {
			p.c.sent = append(p.c.sent, m)
		}
	}
}

// carriesOps reports whether msg is an OperationMessage, or a ListOperationsResponse to
// the relay.
func carriesOps(msg []byte) bool {
	var m struct {
		Kind, Recipient string
		Message         struct{ Verb string }
	}
	if json.Unmarshal(msg, &m) != nil {
		return false
	}
	return m.Kind == "OperationMessage" ||
		m.Kind == "PeerMessage" && m.Recipient == relayPeerID && m.Message.Verb == "ListOperationsResponse"
}

// flush sends p's pending edits, if online, and has the oracle take them.
func (p *chaosPeer) flush() {
	if p.c == nil || !p.joined {
		return
	}
	msgs := p.r.Flush()
	for _, m := range msgs {
		if _, err := p.w.oracle[p.mapName].Receive(m); err != nil {
			p.w.fatalf("oracle refuses %s's %.200s: %v", p, m, err)
		}
	}
	p.send(msgs)
}

// ping sends a ping; its pong acknowledges what p sent before it (c.pings).
func (p *chaosPeer) ping() {
	if p.c == nil || !p.joined {
		return
	}
	if err := p.c.write([]byte(`{"kind":"ping"}`)); err != nil {
		p.gone()
		return
	}
	p.c.pings = append(p.c.pings, p.c.sent)
	p.c.sent = nil
}

// handle takes one message from the relay; it reports whether it was a pong.
func (p *chaosPeer) handle(msg string) (pong bool) {
	w := p.w
	w.tracef("%s < %s", p, short([]byte(msg)))
	if strings.Contains(msg, `"more":`) {
		w.pages++
	}
	if msg == `{"kind":"pong"}` {
		if len(p.c.pings) == 0 {
			w.fatalf("%s: a pong for no ping", p)
		}
		w.acked[p.mapName] = append(w.acked[p.mapName], p.c.pings[0]...)
		p.c.pings = p.c.pings[1:]
		return true
	}
	if kindOf([]byte(msg)) == "OperationMessage" {
		// Another's operation, broadcast once its write was durable: no restart may lose it.
		w.acked[p.mapName] = append(w.acked[p.mapName], []byte(msg))
	}
	if kindOf([]byte(msg)) == "JoinResponse" {
		var resp struct{ Peer string }
		json.Unmarshal([]byte(msg), &resp)
		if resp.Peer != p.id {
			p.gone() // its id is still taken (its previous connection not yet gone): later
			return false
		}
		p.joined = true
	}
	res, err := p.r.Receive([]byte(msg))
	if err != nil {
		w.fatalf("%s refuses %.300s: %v", p, msg, err)
	}
	replies := res.Replies
	if kindOf([]byte(msg)) == "JoinResponse" {
		// As the page does (web/app.js flushNow): it catches up from the relay, not from
		// the peer the engine picked (maybe a uMap client, which this one does not answer).
		replies = [][]byte{p.r.SyncRequest(relayPeerID)}
		for _, m := range res.Replies {
			if !bytes.Contains(m, []byte(`"verb":"ListOperationsRequest"`)) || bytes.Contains(m, []byte(`"pushBack":true`)) {
				replies = append(replies, m)
			}
		}
	}
	p.send(replies)
	p.flush()
	return false
}

// deliver has p take up to n of the messages it received; a connection that ended
// leaves p offline once its messages are taken.
func (p *chaosPeer) deliver(n int) {
	for ; n > 0 && p.c != nil; n-- {
		msg, ok, closed := p.c.in.pop()
		if !ok {
			if closed != nil {
				p.checkClose(closed)
				p.gone()
			}
			return
		}
		p.handle(msg)
	}
}

// checkClose fails on a close the relay should not have made: a refusal, but by a
// crashed relay.
func (p *chaosPeer) checkClose(err error) {
	var ce websocket.CloseError
	if errors.As(err, &ce) && ce.Code == websocket.StatusGoingAway && ce.Reason == "no pong" {
		p.w.fatalf("%s, alive, closed by the relay: %d %q", p, ce.Code, ce.Reason)
	}
	if errors.As(err, &ce) && ce.Code != websocket.StatusGoingAway && ce.Code != websocket.StatusNormalClosure &&
		!strings.Contains(ce.Reason, errCrashed.Error()) && !strings.Contains(ce.Reason, errStore.Error()) &&
		ce.Reason != "too slow" { // it left its messages unread: with small limits, its queue fills
		p.w.fatalf("%s closed by the relay: %d %q", p, ce.Code, ce.Reason)
	}
}

// connect joins p's map, if its id is free in the room.
func (p *chaosPeer) connect() {
	if p.c != nil {
		return
	}
	w := p.w
	c, err := w.dial(p.mapName)
	if err != nil {
		w.fatalf("%s: dial: %v", p, err)
	}
	p.c = c
	p.send([][]byte{[]byte(`{"kind":"JoinRequest","token":"t","peer":"` + p.id + `","name":"` + p.id + `"}`)})
}

// next waits for the next message (a minute at most); false if the connection ended,
// which leaves p offline.
func (p *chaosPeer) next() (string, bool) {
	deadline := time.Now().Add(time.Minute)
	for p.c != nil {
		msg, ok, closed := p.c.in.pop()
		if ok {
			return msg, true
		}
		if closed != nil {
			p.checkClose(closed)
			p.gone()
			return "", false
		}
		select {
		case <-p.c.in.notify:
		case <-time.After(time.Until(deadline)):
			p.w.fatalf("%s: nothing within a minute", p)
		}
	}
	return "", false
}

// settle waits for p's JoinResponse if it has not come yet, then pings and takes every
// message until the pong of that ping; it reports whether anything else came (or p went offline).
func (p *chaosPeer) settle() (busy bool) {
	for p.c != nil && !p.joined {
		msg, ok := p.next()
		if !ok {
			return true
		}
		p.handle(msg)
		busy = true
	}
	p.ping()
	for p.c != nil {
		msg, ok := p.next()
		if !ok {
			return true
		}
		// Its own pong: the last (the pongs of earlier pings may come first).
		if p.handle(msg) {
			if p.c != nil && len(p.c.pings) == 0 {
				return busy
			}
			continue
		}
		busy = true
	}
	return true
}

// umapPeer is uMap's client: it sends operations in uMap's form, each followed by the bare
// "ping" whose "pong" acknowledges it, and answers sync requests with its operations (while
// it waits for a pong or its JoinResponse); it takes nothing in.
type umapPeer struct {
	w           *chaosWorld
	id, mapName string
	c           *wsConn
	clock       int64
	counter     int
	journal     []umapOp // the operations it made
}

// String names u in failures and traces.
func (u *umapPeer) String() string { return u.mapName + "/" + u.id + " (uMap)" }

// gone forgets u's connection, closed.
func (u *umapPeer) gone() {
	if u.c != nil {
		u.c.ws.CloseNow()
		u.c = nil
	}
}

// waitFor reads until a message for which want holds, dropping the others; false if the
// connection ended.
func (u *umapPeer) waitFor(want func(string) bool) (got string, ok bool) {
	deadline := time.Now().Add(time.Minute)
	for {
		msg, ok, closed := u.c.in.pop()
		if ok {
			if want(msg) {
				return msg, true
			}
			u.answer(msg)
			continue
		}
		if closed != nil {
			return "", false
		}
		select {
		case <-u.c.in.notify:
		case <-time.After(time.Until(deadline)):
			u.w.fatalf("%s: nothing within a minute", u)
		}
	}
}

// edit connects if needed, sends one operation and waits for its pong.
func (u *umapPeer) edit(rng *rand.Rand) {
	w := u.w
	if u.c == nil {
		c, err := w.dial(u.mapName)
		if err != nil {
			w.fatalf("%s: dial: %v", u, err)
		}
		u.c = c
		if u.c.write([]byte(`{"token":"tok","peer":"`+u.id+`","username":"U","kind":"JoinRequest"}`)) != nil {
			u.gone()
			return
		}
		resp, ok := u.waitFor(func(m string) bool { return kindOf([]byte(m)) == "JoinResponse" })
		if !ok {
			u.gone()
			return
		}
		if !strings.Contains(resp, `"peer":"`+u.id+`"`) {
			u.gone() // its id still taken: later
			return
		}
	}
	now := time.Now().UnixMilli()
	if now > u.clock {
		u.clock, u.counter = now, 0
	} else {
		u.counter++
	}
	hlc := fmt.Sprintf("%d:%d:%s", u.clock, u.counter, u.id)
	f := chaosFeatures[rng.IntN(len(chaosFeatures))]
	var fields string // as uMap's Journal keeps it
	if rng.IntN(6) == 0 {
		fields = `"verb":"delete","subject":"feature","metadata":` + f + `,"hlc":"` + hlc + `"`
	} else {
		fields = `"verb":"update","subject":"feature","metadata":` + f +
			`,"key":"` + chaosKeys[rng.IntN(len(chaosKeys))] + `","value":` + chaosValue(rng) + `,"hlc":"` + hlc + `"`
	}
	op := `{"sender":"` + u.id + `",` + fields + `,"kind":"OperationMessage"}`
	w.tracef("%s > %s", u, op)
	if u.c.write([]byte(op)) == nil {
		u.c.write([]byte("ping")) // fails if the relay refused op meanwhile: the close says
	}
	if _, ok := u.waitFor(func(m string) bool { return m == "pong" }); !ok {
		var ce websocket.CloseError
		if errors.As(u.c.in.closed, &ce) && ce.Code == websocket.StatusPolicyViolation && ce.Reason == errStore.Error() {
			// Its fsync failed (failNext): refused, the operation is not in the map, and a
			// uMap client does not send it again.
			w.tracef("%s: refused %s", u, op)
			u.gone()
			return
		}
		w.fatalf("%s: the relay closed the connection before the pong of an operation: %v", u, u.c.in.closed)
	}
	if _, err := w.oracle[u.mapName].Receive([]byte(op)); err != nil {
		w.fatalf("oracle refuses %s's %s: %v", u, op, err)
	}
	w.acked[u.mapName] = append(w.acked[u.mapName], []byte(op))
	u.journal = append(u.journal, umapOp{u.clock, u.counter, "{" + fields + "}"})
}

// umapOp is an operation of a uMap client's Journal, and its clock.
type umapOp struct {
	wall    int64
	counter int
	text    string
}

// answer answers a ListOperationsRequest as uMap's client does (engine.js
// onListOperationsRequest): the operations of its Journal after the asker's lastKnownHLC,
// in uMap's plain form, without a vector (its own only here, the last five at most: it
// cannot page, and an asker of small limits would refuse a large answer).
func (u *umapPeer) answer(msg string) {
	var req struct {
		Kind, Sender string
		Message      struct{ Verb, LastKnownHLC string }
	}
	if json.Unmarshal([]byte(msg), &req) != nil || req.Kind != "PeerMessage" || req.Message.Verb != "ListOperationsRequest" {
		return
	}
	var since umapOp
	if parts := strings.Split(req.Message.LastKnownHLC, ":"); len(parts) == 3 {
		since.wall, _ = strconv.ParseInt(parts[0], 10, 64)
		since.counter, _ = strconv.Atoi(parts[1])
	}
	var ops []string
	for _, o := range u.journal {
		if o.wall > since.wall || o.wall == since.wall && o.counter > since.counter {
			ops = append(ops, o.text)
		}
	}
	ops = ops[max(0, len(ops)-5):]
	resp := `{"sender":"` + u.id + `","recipient":` + strconv.Quote(req.Sender) +
		`,"message":{"verb":"ListOperationsResponse","operations":[` + strings.Join(ops, ",") + `]},"kind":"PeerMessage"}`
	u.w.tracef("%s > %s", u, short([]byte(resp)))
	u.c.write([]byte(resp))
}

var (
	chaosFeatures = func() []string {
		var fs []string
		for i := range 10 {
			fs = append(fs, fmt.Sprintf(`{"id":"f%d","layerId":"L%d"}`, i, 1+i%2))
		}
		return fs
	}()
	chaosKeys = []string{"properties", "properties.name", "properties._umap_options", "properties._umap_options.color",
		"properties._umap_options.weight", "geometry"}
)

func chaosValue(rng *rand.Rand) string {
	switch rng.IntN(6) {
	case 5:
		return strconv.Quote(strings.Repeat(string(rune('a'+rng.IntN(26))), 50+rng.IntN(250)))
	case 0:
		return fmt.Sprintf(`"v%d"`, rng.IntN(100))
	case 1:
		return strconv.Itoa(rng.IntN(10))
	case 2:
		return fmt.Sprintf(`{"type":"Point","coordinates":[%d,%d]}`, rng.IntN(90), rng.IntN(45))
	case 3:
		return fmt.Sprintf(`{"color":"c%d","weight":%d}`, rng.IntN(9), rng.IntN(9))
	default:
		return fmt.Sprintf(`{"name":"n%d","_umap_options":{"weight":%d}}`, rng.IntN(9), rng.IntN(9))
	}
}

// chaosEdit makes one random edit in r (an update, upsert, unset or delete of a feature at
// a parent or child path, of the datalayer or the map, or an undo).
func chaosEdit(t *testing.T, rng *rand.Rand, r *crdt.Replica) {
	t.Helper()
	var err error
	switch f := chaosFeatures[rng.IntN(len(chaosFeatures))]; rng.IntN(10) {
	case 0:
		_, err = r.Upsert("feature", f, `{"type":"Feature","properties":{"name":"up","_umap_options":{"color":"red"}},"geometry":{"type":"Point","coordinates":[1,2]}}`)
	case 1:
		_, err = r.Delete("feature", f)
	case 2:
		_, err = r.Unset("feature", f, chaosKeys[rng.IntN(len(chaosKeys))])
	case 3:
		_, err = r.Update("datalayer", `{"id":"L1"}`, "_umap_options.name", chaosValue(rng))
	case 4:
		_, err = r.Update("map", `{}`, "properties.zoom", strconv.Itoa(rng.IntN(18)))
	case 5:
		if r.CanUndo() && !r.InBatch() {
			_, err = r.Undo()
		}
	default:
		_, err = r.Update("feature", f, chaosKeys[rng.IntN(len(chaosKeys))], chaosValue(rng))
	}
	if err != nil {
		t.Fatal(err)
	}
}

// relayChaos runs one seed of TestRelayChaos: steps random steps, then everyone back and
// synced, and the checks.
func relayChaos(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 0xc4a05))
	w := &chaosWorld{t: t, rng: rng, seed: seed, logs: &syncBuffer{},
		oracle: map[string]*crdt.Replica{}, acked: map[string][][]byte{}}
	w.so = storeOptions{Dir: t.TempDir(), CompactEvery: []int{2, 5, 30, 1000}[rng.IntN(4)],
		CompactBytes: []int64{2000, 1 << 20}[rng.IntN(2)], Replica: crdt.Options{Limits: w.limits()}}
	mixed := rng.IntN(2) == 0 // else every browser has the relay's limits
	if rng.IntN(2) == 0 {
		w.pingInterval = 20 * time.Millisecond
	}
	w.maps = []string{"m1"}
	if rng.IntN(2) == 0 {
		w.maps = append(w.maps, "m2")
	}
	for _, name := range w.maps {
		w.oracle[name] = newCRDT(t, "oracle")
		for _, id := range []string{"ana", "ben", "cho"}[:2+rng.IntN(2)] {
			w.peers = append(w.peers, &chaosPeer{w: w, id: id, mapName: name, r: w.newBrowser(id, mixed)})
		}
		if rng.IntN(2) == 0 {
			w.umaps = append(w.umaps, &umapPeer{w: w, id: "umap" + name, mapName: name})
		}
	}
	w.startRelay()
	defer func() {
		for _, p := range w.peers {
			p.gone()
		}
		for _, u := range w.umaps {
			u.gone()
		}
		w.cs.releaseSyncs()
		w.relay.Shutdown(context.Background())
		w.srv.Close()
		w.closing.Wait()
	}()
	for _, p := range w.peers {
		p.connect()
	}

	for step := 0; step < steps; step++ {
		p := w.peers[rng.IntN(len(w.peers))]
		switch k := rng.IntN(112); {
		case k < 25: // edits, sent at once or later
			if rng.IntN(4) == 0 {
				if err := p.r.StartBatch(); err != nil {
					t.Fatal(err)
				}
				for n := 2 + rng.IntN(3); n > 0; n-- {
					chaosEdit(t, rng, p.r)
				}
				if err := p.r.CommitBatch(); err != nil {
					t.Fatal(err)
				}
			} else {
				for n := 1 + rng.IntN(3); n > 0; n-- {
					chaosEdit(t, rng, p.r)
				}
			}
			if rng.IntN(3) > 0 {
				p.flush()
			}
		case k < 50: // some of what came is read
			p.deliver(1 + rng.IntN(8))
		case k < 58:
			p.ping()
		case k < 64: // a clean leave
			if p.c != nil {
				p.leave()
			}
		case k < 70: // an abrupt one: the socket closed, maybe in the middle of a frame
			if p.c != nil {
				msgs := p.r.Flush()
				for _, m := range msgs {
					if _, err := w.oracle[p.mapName].Receive(m); err != nil {
						w.fatalf("oracle refuses %.200s: %v", m, err)
					}
				}
				if len(msgs) > 0 && p.joined {
					p.send(msgs[:len(msgs)-1])
					if p.c != nil {
						p.c.cutMidFrame(rng, msgs[len(msgs)-1])
					}
				} else {
					p.c.ws.CloseNow()
				}
				p.gone()
			}
		case k < 80:
			p.connect()
		case k < 83:
			w.tracef("%s: compacts", p)
			p.r.Compact()
		case k < 86:
			if p.c != nil && p.joined {
				p.send([][]byte{p.r.SavedMessage()})
			}
		case k < 91:
			if len(w.umaps) > 0 {
				w.cs.releaseSyncs() // it waits for its pong
				w.umaps[rng.IntN(len(w.umaps))].edit(rng)
			}
		case k < 92: // the relay restarts
			w.restarts++
			w.tracef("restart")
			w.stopRelay(false)
			w.startRelay()
		case k < 94: // it crashes
			w.crashes++
			w.tracef("crash")
			w.stopRelay(true)
			w.startRelay()
		case k < 98: // the disk slows down (the fsyncs wait, the writes pile up), or is back
			w.tracef("fsyncs held or released")
			if rng.IntN(2) == 0 {
				w.cs.holdSyncs()
			} else {
				w.cs.releaseSyncs()
			}
		case k < 100: // the next fsync fails
			w.tracef("the next fsync fails")
			w.cs.failNext.Store(true)
		case k < 104: // a burst: the peers online write one key before anyone reads
			f := chaosFeatures[rng.IntN(len(chaosFeatures))]
			for _, q := range w.peers {
				if _, err := q.r.Update("feature", f, "properties.name", strconv.Quote("by "+q.id)); err != nil {
					t.Fatal(err)
				}
			}
			// Sent at once, each browser from a goroutine of its own.
			var wg sync.WaitGroup
			for _, q := range w.peers {
				if q.c == nil || !q.joined {
					continue
				}
				msgs := q.r.Flush()
				for _, m := range msgs {
					if _, err := w.oracle[q.mapName].Receive(m); err != nil {
						w.fatalf("oracle refuses %.200s: %v", m, err)
					}
				}
				wg.Add(1)
				go func() { defer wg.Done(); q.send(msgs) }()
			}
			wg.Wait()
		case k < 106: // a browser leaves for good once synced (its storage wiped): a new one comes
			if p.c != nil && p.joined {
				w.cs.releaseSyncs()
				p.flush()
				for i := 0; i < 10 && p.c != nil && p.settle(); i++ {
				}
				if p.c != nil {
					w.tracef("%s leaves for good", p)
					p.leave()
					w.generation++
					p.id = fmt.Sprintf("%s-%d", p.id[:3], w.generation)
					p.r = w.newBrowser(p.id, mixed)
				}
			}
		default: // everyone reads a while
			for _, q := range w.peers {
				q.deliver(rng.IntN(20))
			}
		}
	}

	// Everyone back, synced until a round brings nothing new.
	w.cs.releaseSyncs()
	for round := 0; ; round++ {
		if round == 50 {
			w.fatalf("no quiet after 50 rounds")
		}
		busy := false
		for _, p := range w.peers {
			for p.c == nil || !p.joined {
				if p.c == nil {
					w.waitIDFree(p)
					p.connect()
				}
				p.settle()
				busy = true
			}
			p.flush()
			if p.settle() {
				busy = true
			}
		}
		if !busy {
			break
		}
	}
	for _, name := range w.maps {
		want := w.oracle[name].State()
		var relayState string
		w.withReplica(name, func(r *crdt.Replica) { relayState = r.State() })
		if relayState != want {
			var who []string
			for _, p := range w.peers {
				if p.mapName == name {
					who = append(who, fmt.Sprintf("%s: as the edits %v, as the relay %v", p, p.r.State() == want, p.r.State() == relayState))
				}
			}
			w.fatalf("%s: the relay holds\n%s\nthe edits make\n%s\n%s", name, relayState, want, strings.Join(who, "\n"))
		}
		for _, p := range w.peers {
			if p.mapName == name {
				if got := p.r.State(); got != want {
					w.fatalf("%s holds\n%s\nthe edits make\n%s", p, got, want)
				}
			}
		}
	}
	w.restarts++
	w.stopRelay(false) // and what was stored holds it all
	for _, name := range w.maps {
		so := w.so
		so.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
		rep, err := newStoreFactory(so)(name)
		if err != nil {
			w.fatalf("%s: %v", name, err)
		}
		got := rep.(*storeReplica).r.State()
		rep.Close()
		if want := w.oracle[name].State(); got != want {
			w.fatalf("%s reopened holds\n%s\nthe edits make\n%s", name, got, want)
		}
	}
	w.startRelay()
	if os.Getenv("CHAOS_TRACE") != "" {
		t.Log(strings.Join(w.trace, "\n"))
	}
	if testing.Verbose() {
		t.Logf("seed %d: limit %d (mixed %v), %d partial pages", seed, w.so.Replica.Limits.MaxMessageBytes, mixed, w.pages)
		t.Logf("seed %d: %d maps, %d browsers, %d uMap clients, %d restarts, %d crashes (%d logs cut in what was not fsync'd, %d torn lines), %d acknowledged messages",
			seed, len(w.maps), len(w.peers), len(w.umaps), w.restarts, w.crashes, w.cuts, w.torn, len(w.acked["m1"])+len(w.acked["m2"]))
	}
}

// waitIDFree waits until p's id is free in its room: its previous connection gone.
func (w *chaosWorld) waitIDFree(p *chaosPeer) {
	for deadline := time.Now().Add(30 * time.Second); !w.idFree(p.mapName, p.id); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			var stacks []string
			for _, g := range strings.Split(string(buf), "\n\n") {
				if strings.Contains(g, "mapcrdt/demo.") && !strings.Contains(g, "relayChaos") {
					stacks = append(stacks, g)
				}
			}
			w.fatalf("%s's id is still taken after 30 s; the relay's goroutines:\n%s", p, strings.Join(stacks, "\n\n"))
		}
	}
}

// limits returns random limits: the engine's, or message limits so small that a sync
// answer comes in pages, and a relay's snapshot may not hold its map.
func (w *chaosWorld) limits() crdt.Limits {
	lim := crdt.DefaultLimits()
	lim.MaxMessageBytes = []int{lim.MaxMessageBytes, 2500, 5000}[w.rng.IntN(3)]
	return lim
}

// newBrowser returns a browser's replica: the relay's limits, or its own if mixed.
func (w *chaosWorld) newBrowser(id string, mixed bool) *crdt.Replica {
	lim := w.so.Replica.Limits
	if mixed {
		lim = w.limits()
	}
	r, err := crdt.NewReplica(crdt.Options{PeerID: id, Limits: lim})
	if err != nil {
		w.t.Fatal(err)
	}
	return r
}

// idFree reports whether id is free in mapName's room.
func (w *chaosWorld) idFree(mapName, id string) bool {
	w.relay.mu.Lock()
	rm := w.relay.rooms[mapName]
	w.relay.mu.Unlock()
	if rm == nil {
		return true
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return rm.find(id) == nil
}

// withReplica calls fn with the crdt replica of mapName's open room, under its lock.
func (w *chaosWorld) withReplica(mapName string, fn func(*crdt.Replica)) {
	w.relay.mu.Lock()
	rm := w.relay.rooms[mapName]
	w.relay.mu.Unlock()
	if rm == nil {
		w.fatalf("room %s is not open", mapName)
	}
	<-rm.ready
	rm.mu.Lock()
	defer rm.mu.Unlock()
	fn(rm.replica.(chaosReplica).r)
}
