package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/mapcrdt/mapcrdt/crdt"
)

// gateSync is a store's syncLog for tests: it counts the log's fsyncs and, once armed,
// holds the next one until the test releases it, with nil (it then runs) or an error
// (it fails with it).
type gateSync struct {
	mu    sync.Mutex
	calls int
	held  chan chan error
}

func (g *gateSync) sync(f *os.File) error {
	g.mu.Lock()
	g.calls++
	held := g.held
	g.held = nil
	g.mu.Unlock()
	if held != nil {
		release := make(chan error)
		held <- release
		if err := <-release; err != nil {
			return err
		}
	}
	return f.Sync()
}

func (g *gateSync) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls
}

// hold arms g: the next fsync waits. It returns the channel that fsync's release comes
// out of.
func (g *gateSync) hold() <-chan chan error {
	held := make(chan chan error)
	g.mu.Lock()
	g.held = held
	g.mu.Unlock()
	return held
}

// held waits for the fsync g holds (hold) and returns its release.
func held(t *testing.T, h <-chan chan error) chan error {
	t.Helper()
	select {
	case release := <-h:
		t.Cleanup(func() { // a test that failed meanwhile lets the relay end
			select {
			case release <- nil:
			default:
			}
		})
		return release
	case <-time.After(30 * time.Second):
		t.Fatal("no fsync of the log reached the test's syncLog")
		return nil
	}
}

// gateRelay is a relay whose map "m" is stored in dir with g's fsyncs, and whose
// connections the test drives (conn.handle) and drains itself, as the fuzz test does.
type gateRelay struct {
	t     *testing.T
	relay *Relay
	g     *gateSync
	dir   string
	so    storeOptions
	conns []*conn
}

func newGateRelay(t *testing.T) *gateRelay {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	gr := &gateRelay{t: t, g: &gateSync{}, dir: t.TempDir()}
	gr.so = storeOptions{Dir: gr.dir, Log: quiet, syncLog: gr.g.sync}
	gr.relay = NewRelay(Options{NewReplica: newStoreFactory(gr.so), Log: quiet})
	t.Cleanup(func() {
		for _, c := range gr.conns {
			gr.relay.leave(c)
		}
	})
	return gr
}

// join joins a connection as peer to map "m", and drains its greetings.
func (gr *gateRelay) join(peer string) *conn {
	c := newConn(gr.relay, nil, "m")
	if err := c.handle([]byte(`{"kind":"JoinRequest","peer":"` + peer + `"}`)); err != nil || c.id != peer {
		gr.t.Fatalf("join %s: %v, as %q", peer, err, c.id)
	}
	gr.conns = append(gr.conns, c)
	drain(c)
	return c
}

// joinAll joins a connection for each peer, and drains every greeting and roster.
func (gr *gateRelay) joinAll(peers ...string) []*conn {
	var cs []*conn
	for _, p := range peers {
		cs = append(cs, gr.join(p))
	}
	for _, c := range cs {
		drain(c)
	}
	return cs
}

func (gr *gateRelay) room() *room { return gr.conns[0].room }

func (gr *gateRelay) store() *storeReplica { return gr.room().replica.(*storeReplica) }

// handle has c send msg, which must be accepted.
func (gr *gateRelay) handle(c *conn, msg []byte) {
	gr.t.Helper()
	if err := c.handle(msg); err != nil {
		gr.t.Fatalf("%s sends %.100s: %v", c.id, msg, err)
	}
}

// logOps returns the OperationMessages of the map's log, in order.
func (gr *gateRelay) logOps() []string {
	var ops []string
	for _, l := range readLines(gr.t, filepath.Join(gr.dir, "m.log")) {
		if kindOf([]byte(l)) == "OperationMessage" {
			ops = append(ops, l)
		}
	}
	return ops
}

// opsIn returns the OperationMessages of msgs, as text.
func opsIn(msgs [][]byte) []string {
	var ops []string
	for _, m := range msgs {
		if kindOf(m) == "OperationMessage" {
			ops = append(ops, string(m))
		}
	}
	return ops
}

// rename makes one edit of r's: its feature named name, as one OperationMessage.
func rename(t *testing.T, r *crdt.Replica, name string) []byte {
	t.Helper()
	meta := `{"id":"f-` + r.PeerID() + `","layerId":"L","featureType":"marker"}`
	if _, err := r.Update("feature", meta, "properties.name", strconv.Quote(name)); err != nil {
		t.Fatal(err)
	}
	msgs := r.Flush()
	if len(msgs) != 1 {
		t.Fatalf("%d messages for one edit", len(msgs))
	}
	return msgs[0]
}

// The operations of several peers, and several of one peer, written while an fsync runs
// share the next fsync; none of them reaches anyone (the other peers, or its sender's
// replies) before its fsync has returned, and the peers receive them in the log's order.
// Before group commit, each was fsync'd alone, under the room's lock, and the store took
// no syncLog: the held fsync never came.
func TestGroupCommitSharesAnFsyncAndSendsOnlyWhatIsDurable(t *testing.T) {
	gr := newGateRelay(t)
	cs := gr.joinAll("alice", "bob", "carol", "dave")
	a, b, c, d := cs[0], cs[1], cs[2], cs[3]
	ra, rb, rc := newCRDT(t, "alice"), newCRDT(t, "bob"), newCRDT(t, "carol")

	h := gr.g.hold()
	gr.handle(a, rename(t, ra, "a1"))
	release := held(t, h) // a1's fsync runs, and is held
	before := gr.g.count()
	gr.handle(b, rename(t, rb, "b1"))
	gr.handle(c, rename(t, rc, "c1"))
	gr.handle(a, rename(t, ra, "a2")) // alice's next: read on while her first waits
	gr.handle(a, []byte(`{"kind":"ping"}`))
	if n := len(gr.logOps()); n != 4 {
		t.Fatalf("the log holds %d operations while the first fsync runs, want 4 written", n)
	}
	for _, p := range []*conn{a, b, c, d} {
		if got := drain(p); len(got) > 0 {
			t.Fatalf("%s received %q before any fsync returned", p.id, got)
		}
	}

	release <- nil
	settled(gr.room())
	if n := gr.g.count() - before; n != 1 {
		t.Fatalf("%d fsyncs for the 3 operations written while the first ran, want 1", n)
	}
	log := gr.logOps()
	if got := opsIn(drain(d)); !slices.Equal(got, log) {
		t.Fatalf("dave received, in order:\n%q\nthe log holds\n%q", got, log)
	}
	if got := drain(a); !slices.Equal(opsIn(got), []string{log[1], log[2]}) ||
		string(got[len(got)-1]) != `{"kind":"pong"}` {
		t.Fatalf("alice received %q: want bob's and carol's operations, then her pong", got)
	}

	// Everything any peer received is read back after a crash (the files as they are).
	gr.room().mu.Lock()
	want := gr.store().r.State()
	gr.room().mu.Unlock()
	back := reopenCopy(t, gr.so)
	sameState(t, "read back after a crash", back, want)
}

// reopenCopy opens map "m" from a copy of o.Dir's files, as a crash leaves them, and
// returns its state.
func reopenCopy(t *testing.T, o storeOptions) string {
	t.Helper()
	crashed := t.TempDir()
	for _, name := range []string{"m.snapshot", "m.log"} {
		if b, err := os.ReadFile(filepath.Join(o.Dir, name)); err == nil {
			writeFile(t, filepath.Join(crashed, name), string(b))
		}
	}
	o.Dir, o.syncLog = crashed, nil
	back, err := reopen(o)
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	return back.r.State()
}

// An fsync that fails fails every operation written since the last one that succeeded:
// the fsync's own and those written while it ran, of any peer. Their senders are closed
// as a message the log cannot take closes them (1008, errStore), what they sent after is
// dropped, no peer receives any of it, and the log and the replica are as before them.
// The peers that wrote nothing meanwhile stay, and the map goes on.
func TestFailedGroupFsyncFailsEveryOperationOfTheGroup(t *testing.T) {
	gr := newGateRelay(t)
	cs := gr.joinAll("alice", "bob", "carol", "dave")
	a, b, c, d := cs[0], cs[1], cs[2], cs[3]
	ra, rb, rc, rd := newCRDT(t, "alice"), newCRDT(t, "bob"), newCRDT(t, "carol"), newCRDT(t, "dave")
	gr.handle(a, rename(t, ra, "a1"))
	settled(gr.room())
	drain(b)
	drain(c)
	drain(d)
	logBefore, err := os.ReadFile(filepath.Join(gr.dir, "m.log"))
	if err != nil {
		t.Fatal(err)
	}
	gr.room().mu.Lock()
	stateBefore := gr.store().r.State()
	gr.room().mu.Unlock()

	h := gr.g.hold()
	gr.handle(b, rename(t, rb, "b1"))
	release := held(t, h)
	gr.handle(c, rename(t, rc, "c1"))
	gr.handle(b, rename(t, rb, "b2"))
	gr.handle(b, []byte(`{"kind":"PeerMessage","recipient":"dave","message":{"verb":"ListOperationsRequest"}}`))
	release <- errors.New("input/output error")
	settled(gr.room())

	for _, p := range []*conn{b, c} {
		if !p.kicked() || p.reason != (closeError{websocket.StatusPolicyViolation, errStore.Error()}) {
			t.Fatalf("%s: kicked %v with %v, want 1008 %q", p.id, p.kicked(), p.reason, errStore)
		}
	}
	for _, p := range []*conn{a, d} {
		if p.kicked() {
			t.Fatalf("%s was closed (%v), it wrote nothing in the failed group", p.id, p.reason)
		}
		if got := drain(p); len(got) > 0 {
			t.Fatalf("%s received %q of the failed group", p.id, got)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(gr.dir, "m.log")); !bytes.Equal(got, logBefore) {
		t.Fatalf("the log after the failed fsync:\n%s\nbefore the group:\n%s", got, logBefore)
	}
	gr.room().mu.Lock()
	state := gr.store().r.State()
	gr.room().mu.Unlock()
	sameState(t, "the relay's replica after the failed fsync", state, stateBefore)
	sameState(t, "read back after a crash", reopenCopy(t, gr.so), stateBefore)

	// The map goes on: the next operation is stored, and reaches the others.
	d2 := rename(t, rd, "d1")
	gr.handle(d, d2)
	settled(gr.room())
	if got := opsIn(drain(a)); len(got) != 1 || got[0] != string(withSender(d2, "dave")) {
		t.Fatalf("alice received %q after the failure, want dave's operation", got)
	}
	if log := gr.logOps(); len(log) != 2 || log[1] != string(withSender(d2, "dave")) {
		t.Fatalf("the log holds %q, want alice's first and dave's", log)
	}
}

// Peers sending at once over real WebSockets, each a burst: every operation is in the log
// after a crash (no compaction on close), and every peer received the others' in the
// order of the log.
func TestConcurrentSendersAreAllDurableInTheLogsOrder(t *testing.T) {
	dir := t.TempDir()
	g := &gateSync{}
	s := startStoreRelay(t, storeOptions{Dir: dir, syncLog: g.sync}, Options{},
		func(r *storeReplica) Replica { return crashOnClose{r} })
	ids := []string{"alice", "bob", "carol", "dave"}
	ps := make([]*peer, len(ids))
	for i, id := range ids {
		ps[i], _ = joinPeer(t, s.srv, "m", id, nil)
	}
	for _, p := range ps {
		p.settle()
	}
	const each = 40
	msgs := make([][][]byte, len(ps))
	for i, p := range ps {
		for j := range each {
			msgs[i] = append(msgs[i], rename(t, p.r, p.id+" "+strconv.Itoa(j)))
		}
	}
	var senders sync.WaitGroup
	for i, p := range ps {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for _, m := range msgs[i] {
				if err := p.ws.Write(context.Background(), websocket.MessageText, m); err != nil {
					t.Errorf("%s: write: %v", p.id, err)
					return
				}
			}
		}()
	}
	senders.Wait()
	if t.Failed() {
		return
	}
	// Twice round: a peer's ping is handled after its own frames, so only once every peer
	// has settled has the relay handled them all (a peer quiet before was no proof).
	got := make([][]string, len(ps))
	for range 2 {
		for i, p := range ps {
			for _, m := range p.settle() {
				if kindOf([]byte(m)) == "OperationMessage" {
					got[i] = append(got[i], m)
				}
			}
		}
	}
	var log []string
	for _, l := range readLines(t, filepath.Join(dir, "m.log")) {
		if kindOf([]byte(l)) == "OperationMessage" {
			log = append(log, l)
		}
	}
	if len(log) != len(ps)*each {
		t.Fatalf("the log holds %d operations, want %d", len(log), len(ps)*each)
	}
	for i, p := range ps {
		var others []string
		for _, l := range log {
			if !bytes.Contains([]byte(l), []byte(`"sender":"`+p.id+`"`)) {
				others = append(others, l)
			}
		}
		if !slices.Equal(got[i], others) {
			t.Fatalf("%s received %d operations, not the others' %d in the log's order", p.id, len(got[i]), len(others))
		}
	}
	t.Logf("%d operations, %d fsyncs of the log", len(log), g.count())
	want := ps[0].r.State()
	for _, p := range ps[1:] {
		sameState(t, p.id, p.r.State(), want)
	}
	s.stopWith(ps...) // a crash: nothing compacted
	back, err := reopen(storeOptions{Dir: dir, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	sameState(t, "read back after a crash", back.r.State(), want)
}

// A sync request to the relay is answered from what is durable only: it waits for the
// writes before it to be fsync'd. Answered at once, from the replica holding an operation
// whose fsync then failed, it handed a peer that operation, which the relay lost.
func TestSyncAnswerWaitsForTheWritesBeforeIt(t *testing.T) {
	gr := newGateRelay(t)
	cs := gr.joinAll("bob", "dave")
	b, d := cs[0], cs[1]
	rb, rd := newCRDT(t, "bob"), newCRDT(t, "dave")

	h := gr.g.hold()
	gr.handle(b, rename(t, rb, "b1"))
	release := held(t, h)
	answered := make(chan error, 1)
	go func() { answered <- d.handle(rd.SyncRequest("relay")) }()
	rm := gr.room()
	waitFor(t, "dave's request handled or waiting", func() bool {
		rm.mu.Lock()
		defer rm.mu.Unlock()
		return rm.settling > 0 || len(answered) > 0
	})
	release <- errors.New("input/output error")
	if err := <-answered; err != nil {
		t.Fatal(err)
	}
	settled(rm)
	if !b.kicked() || d.kicked() {
		t.Fatalf("closed: bob %v (his operation failed its fsync), dave %v (%v): want bob only", b.kicked(), d.kicked(), d.reason)
	}
	got := drain(d)
	if len(got) == 0 || kindOf(got[len(got)-1]) != "PeerMessage" {
		t.Fatalf("dave received %q, want an answer to his sync request", got)
	}
	for _, m := range got {
		if bytes.Contains(m, []byte(`f-bob`)) {
			t.Fatalf("dave received %q, which carries bob's operation that failed its fsync", m)
		}
	}
}
