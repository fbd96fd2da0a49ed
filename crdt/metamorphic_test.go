package crdt

// A metamorphic randomized test: Compact, a snapshot round trip and sync paging change
// nothing observable but sizes (doc.go, "Compaction", "Snapshots", "Sync"). One random
// script runs on twin worlds: in world A nothing else happens; in world B replicas are
// compacted and reloaded from their own snapshot at random points, and sync responses are
// paged at one to three operations. After every step both worlds must agree on everything
// a caller sees: what an edit, undo, redo, receive or flush returns (changes, skips,
// errors, the messages), and of every replica State, a Get, Dirty, CanUndo and CanRedo,
// Pending, InBatch; the changes each returned must render its state. At the end, after
// sync rounds, every replica equals the others, a newcomer catches up to the same state
// from each replica of either world, and every undo and redo step does the same in both.
//
// The script: local edits of every kind (batches left open across steps, groups, NoUndo),
// undo, redo, MarkSaved, SavedMessages, OperationMessages delivered in any order with
// duplicates, sync requests and probes, late joiners (some by uMap's plain request). A
// failure prints its seed, its step and the steps before it: -mmfirst=SEED -mmtail=N runs
// it again with more of them, and -mmonly (c, s, p) tells which of B's three it needs.
//
// What the documentation says does change, and the test therefore allows:
//   - a clock's counter counts the messages received in its millisecond (the HLC's receive
//     rule), and paging makes more of them: the wall clock moves at every step, so that no
//     local edit is stamped in the millisecond of a receive;
//   - a replica restored from a snapshot stamps its next edits (and its queued ones) under a
//     new origin, "peer~suffix" with seqs from 1: clocks and messages are compared with the
//     suffix taken out of every clock, and without seqs once a replica has a new origin;
//   - a sync exchange is paged, so its changes come in several receives: they are checked
//     to render the state (doc.go, "What receive returns"), and the states compared;
//   - a SavedMessage's vector says what its saver holds up to the first hole in each
//     origin's seqs: a reload's new origin numbers the edits after it from 1, which moves
//     the holes, and so what such a save covers. A replica holding operations above a hole
//     sends no SavedMessage here;
//   - an answer to a request made before a reload is followed by a new request (doc.go,
//     "Sync"): after a probe, whose answer goes one way, that makes a two-way exchange, so
//     B reloads no replica during a probe's exchange;
//   - for the same reason, an operation one world takes as new (superseded on arrival: it
//     changes nothing but the clock) can be held by the other's vector: an open batch would
//     be sent in two parts in one world only, so both commit it then (sameOpenBatch);
//   - a response to uMap's plain Journal leaves out the operations compaction dropped;
//   - sync messages (vectors, sessions, pages) and the replies a gap asks with differ: the
//     gap's replies are not routed (the script's explicit syncs and the end's sync rounds
//     heal every gap in both worlds).

import (
	"errors"
	"flag"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mapcrdt/mapcrdt/hlc"
	"github.com/tidwall/gjson"
)

// mmWorld is one of the twin worlds: its replicas (nil until one joins) and, per replica,
// the OperationMessages and SavedMessages on their way to it.
type mmWorld struct {
	name  string
	opts  Options
	reps  []*Replica
	views []*view
	inbox [][][]byte
}

type mmRun struct {
	t      *testing.T
	seed   int
	step   int
	what   string
	rng    *rand.Rand
	brng   *rand.Rand // world B's own choices, in its sync exchanges (more messages than A's)
	wall   *hlc.ManualClock
	a, b   *mmWorld
	events []string // the script so far, printed on a failure
}

func (m *mmRun) fatalf(format string, args ...any) {
	m.t.Helper()
	n := len(m.events)
	tail := m.events[max(0, n-*mmTail):]
	m.t.Fatalf("seed %d step %d (%s): "+format+"\nlast steps:\n  %s", append([]any{m.seed, m.step, m.what}, append(args, strings.Join(tail, "\n  "))...)...)
}

var (
	mmTail  = flag.Int("mmtail", 12, "how many steps a failure of TestMetamorphicCompactSnapshotPaging prints")
	mmFirst = flag.Int("mmfirst", 0, "the first seed of TestMetamorphicCompactSnapshotPaging")
	mmLong  = flag.Bool("mmlong", false, "TestMetamorphicCompactSnapshotPaging: 5 replicas, 200-300 steps a seed")
	mmOnly  = flag.String("mmonly", "csp", "what world B of TestMetamorphicCompactSnapshotPaging does: c compacts, s reloads from snapshots, p pages (to tell which one a failure needs)")
)

var mmSuffix = regexp.MustCompile(`(p[0-9])~[0-9a-z]{7}`)
var mmSeq = regexp.MustCompile(`,"seq":[0-9]+`)

// mmNorm takes a reloaded replica's origin suffixes out of s (and seqs, when seqs is set).
func mmNorm(s string, seqs bool) string {
	s = mmSuffix.ReplaceAllString(s, "$1")
	if seqs {
		s = mmSeq.ReplaceAllString(s, "")
	}
	return s
}

func mmChanges(ch []Change) string {
	var b []byte
	for _, c := range ch {
		b = c.AppendJSON(b)
		b = append(b, '\n')
	}
	return mmNorm(string(b), false)
}

func mmUndo(res UndoResult, err error) string {
	s := "done " + strconv.FormatBool(res.Done) + "\n" + mmChanges(res.Changes)
	for _, k := range res.Skipped {
		s += "skipped " + k.Subject + " " + k.Metadata + " " + k.Key + "\n"
	}
	return s + mmErr(err)
}

func mmErr(err error) string {
	if err == nil {
		return ""
	}
	return mmNorm(err.Error(), false) // an error may quote a clock
}

func (m *mmRun) same(what, a, b string) {
	m.t.Helper()
	if a != b {
		m.fatalf("%s differs\n  A (plain): %s\n  B:         %s", what, a, b)
	}
}

// newReplica makes replica i of world w.
func (m *mmRun) newReplica(w *mmWorld, i int) {
	opts := w.opts
	opts.PeerID = "p" + strconv.Itoa(i)
	r, err := NewReplica(opts)
	if err != nil {
		m.t.Fatal(err)
	}
	w.reps[i], w.views[i] = r, newView(m.t)
	w.inbox[i] = nil
	// What the page loaded from the server (Seed): a base that compaction and snapshots keep.
	base := randObjects[3]
	ch, err := r.Seed(base.sub, base.meta, `{"type":"Feature","properties":{"name":"saved","color":"blue"},"geometry":{"type":"Point","coordinates":[0,0]}}`)
	if err != nil {
		m.t.Fatal(err)
	}
	w.views[i].apply(ch)
}

// exchange runs the sync exchange msg starts in world w until nothing is left to route,
// and checks that the changes each replica returned render its state.
func (m *mmRun) exchange(w *mmWorld, msg []byte) {
	probe := gjson.GetBytes(msg, "message.pushBack").Bool()
	queue := [][]byte{msg}
	for n := 0; len(queue) > 0; n++ {
		if n > 2000 {
			m.fatalf("world %s: the sync exchange does not end", w.name)
		}
		msg := queue[0]
		queue = queue[1:]
		to := gjson.GetBytes(msg, "recipient").String()
		i, _ := strconv.Atoi(strings.TrimPrefix(to, "p"))
		if w.reps[i] == nil || !strings.HasPrefix(to, "p") {
			m.fatalf("world %s: a message to %q: %s", w.name, to, msg)
		}
		if w == m.b { // between two messages of the exchange (two pages), B's replicas too
			switch m.brng.IntN(12) {
			case 0:
				m.events = append(m.events, "  (B) p"+strconv.Itoa(i)+" compacts before it receives "+string(msg))
				m.compact(i)
			case 1:
				if probe {
					break // a reloaded prober answers the answer with a request: a two-way sync
				}
				m.events = append(m.events, "  (B) p"+strconv.Itoa(i)+" reloads before it receives "+string(msg))
				m.reload(i) // an answer to a request made before: its vector is not taken
			}
		}
		r := w.reps[i]
		if w == m.b && gjson.GetBytes(msg, "message.more").Exists() {
			mmDone.pages++
		}
		res, err := r.Receive(msg)
		if err != nil {
			m.fatalf("world %s: p%d receives %s: %v", w.name, i, msg, err)
		}
		w.views[i].apply(res.Changes)
		queue = append(queue, res.Replies...)
	}
}

// joined lists the replicas that joined (the same in both worlds).
func (m *mmRun) joined() []int {
	var out []int
	for i, r := range m.a.reps {
		if r != nil {
			out = append(out, i)
		}
	}
	return out
}

func (m *mmRun) pick() int {
	j := m.joined()
	return j[m.rng.IntN(len(j))]
}

func (m *mmRun) other(i int) int {
	j := slices.DeleteFunc(m.joined(), func(k int) bool { return k == i })
	if len(j) == 0 {
		return -1
	}
	return j[m.rng.IntN(len(j))]
}

// edit draws one edit.
func (m *mmRun) edit() Edit {
	rng := m.rng
	o := randObjects[rng.IntN(len(randObjects))]
	e := Edit{Subject: o.sub, Metadata: o.meta}
	switch k := rng.IntN(10); {
	case k < 5:
		e.Verb, e.Key, e.Value = VerbUpdate, randPaths[rng.IntN(len(randPaths))], randValue(rng)
	case k < 7:
		e.Verb, e.Key = VerbUpdate, randPaths[rng.IntN(len(randPaths))]
	case k < 9:
		e.Verb, e.Value = VerbUpsert, randObjectValue(rng)
	default:
		e.Verb = VerbDelete
	}
	if rng.IntN(6) == 0 {
		e.Group = "g" + strconv.Itoa(rng.IntN(2))
	}
	e.NoUndo = rng.IntN(7) == 0
	return e
}

// both runs f on the replica i of each world and compares what it returns.
func (m *mmRun) both(i int, what string, f func(w *mmWorld, r *Replica) string) {
	m.t.Helper()
	m.same(what, f(m.a, m.a.reps[i]), f(m.b, m.b.reps[i]))
}

func (m *mmRun) broadcast(w *mmWorld, from int, msg []byte) {
	for j, r := range w.reps {
		if j != from && r != nil {
			w.inbox[j] = append(w.inbox[j], msg)
		}
	}
}

// check compares everything a caller sees of every replica.
func (m *mmRun) check() { m.checkViews(m.step < 0 || m.step%4 == 0) }

// checkViews is check; views says whether to check also that the changes each replica
// returned render its state (their JSON is most of the test's time).
func (m *mmRun) checkViews(views bool) {
	for _, i := range m.joined() {
		ra, rb := m.a.reps[i], m.b.reps[i]
		p := "p" + strconv.Itoa(i) + " "
		m.same(p+"state", ra.State(), rb.State())
		m.same(p+"dirty", lcDirty(ra), lcDirty(rb))
		m.same(p+"canUndo/canRedo", strconv.FormatBool(ra.CanUndo())+strconv.FormatBool(ra.CanRedo()),
			strconv.FormatBool(rb.CanUndo())+strconv.FormatBool(rb.CanRedo()))
		m.same(p+"pending", strconv.Itoa(ra.Pending()), strconv.Itoa(rb.Pending()))
		m.same(p+"in batch", strconv.FormatBool(ra.InBatch()), strconv.FormatBool(rb.InBatch()))
		for _, w := range []*mmWorld{m.a, m.b} {
			if !views {
				break
			}
			if got, want := w.views[i].state(), norm(m.t, w.reps[i].State()); got != want {
				m.fatalf("world %s: p%d: the changes it returned do not render its state\nview  %s\nstate %s", w.name, i, got, want)
			}
		}
		o := randObjects[m.rng.IntN(len(randObjects))]
		key := randPaths[m.rng.IntN(len(randPaths))]
		if m.rng.IntN(4) == 0 {
			key = ""
		}
		get := func(r *Replica) string {
			v, ok, err := r.Get(o.sub, o.meta, key)
			return v + " " + strconv.FormatBool(ok) + " " + mmErr(err)
		}
		m.same(p+"get "+o.sub+o.meta+" "+key, get(ra), get(rb))
	}
}

func (m *mmRun) event(format string, args ...any) {
	s := "step " + strconv.Itoa(m.step) + ": " + format
	for _, a := range args {
		s = strings.Replace(s, "%v", mmAny(a), 1)
	}
	m.what = s
	m.events = append(m.events, s)
}

func mmAny(a any) string {
	switch v := a.(type) {
	case int:
		return strconv.Itoa(v)
	case string:
		return v
	case Edit:
		return [...]string{"?", "update", "upsert", "delete", "batch"}[min(int(v.Verb), 4)] + " " + v.Subject + v.Metadata + " " + v.Key + "=" + v.Value + " group " + v.Group + " noUndo " + strconv.FormatBool(v.NoUndo)
	}
	return "?"
}

// TestMetamorphicCompactSnapshotPaging: see the top of this file.
func TestMetamorphicCompactSnapshotPaging(t *testing.T) {
	mmDone.dropped, mmDone.reloads, mmDone.pages = 0, 0, 0
	n := *seeds / 10 // 200 by default
	for seed := *mmFirst; seed < *mmFirst+n; seed++ {
		runMetamorphic(t, seed)
	}
	if n >= 10 && (mmDone.dropped == 0 || mmDone.reloads == 0 || mmDone.pages == 0) && *mmOnly == "csp" {
		t.Fatalf("world B dropped %d operations, reloaded %d times, sent %d partial pages: the test tests nothing", mmDone.dropped, mmDone.reloads, mmDone.pages)
	}
	t.Logf("world B dropped %d operations, reloaded %d times, sent %d partial pages", mmDone.dropped, mmDone.reloads, mmDone.pages)
}

func runMetamorphic(t *testing.T, seed int) {
	defer func(f func(int) int) { randIntN = f }(randIntN)
	randIntN = rand.New(rand.NewPCG(uint64(seed), 5151)).IntN
	rng := rand.New(rand.NewPCG(uint64(seed), 5150))
	m := &mmRun{t: t, seed: seed, rng: rng, brng: rand.New(rand.NewPCG(uint64(seed), 5152)),
		wall: hlc.NewManualClock(1_700_000_000_000)}
	n := 4
	if *mmLong {
		n = 5
	}
	opts := Options{Wall: m.wall}
	if rng.IntN(3) == 0 {
		opts.CaptureInterval = 2 * hlc.Millisecond
	}
	if rng.IntN(4) == 0 { // a short history, trimmed all the time
		opts.UndoDepth = 1 + rng.IntN(3)
	}
	if rng.IntN(4) == 0 { // pages of half the limit in both worlds; the history's budget
		opts.Limits = DefaultLimits()
		opts.Limits.MaxMessageBytes = 2048 << rng.IntN(3)
	}
	m.a = &mmWorld{name: "A", opts: opts}
	if page := 1 + rng.IntN(3); strings.Contains(*mmOnly, "p") {
		opts.SyncPage = page
	}
	m.b = &mmWorld{name: "B", opts: opts}
	for _, w := range []*mmWorld{m.a, m.b} {
		w.reps, w.views, w.inbox = make([]*Replica, n), make([]*view, n), make([][][]byte, n)
	}
	for i := 0; i < 2; i++ {
		m.newReplica(m.a, i)
		m.newReplica(m.b, i)
	}
	steps := 60 + rng.IntN(60)
	if *mmLong {
		steps += 140 + rng.IntN(40)
	}
	for m.step = 0; m.step < steps; m.step++ {
		// The wall clock moves at every step: an edit stamped in the millisecond of a
		// receive would take a counter past the receives' (a paged exchange is several),
		// and a counter can decide a tie with a peer's clock.
		m.wall.Advance(1 + int64(rng.IntN(3)))
		i := m.pick()
		var clocks [2][]hlc.Timestamp
		for _, j := range m.joined() {
			clocks[0] = append(clocks[0], m.a.reps[j].Clock())
			clocks[1] = append(clocks[1], m.b.reps[j].Clock())
		}
		switch k := rng.IntN(40); {
		case k < 10:
			e := m.edit()
			m.event("p%v edits %v", i, e)
			m.both(i, "edit", func(w *mmWorld, r *Replica) string {
				ch, err := r.Apply(e)
				w.views[i].apply(ch)
				return mmChanges(ch) + mmErr(err)
			})
		case k < 11:
			if m.a.reps[i].InBatch() {
				m.event("p%v commits its batch", i)
				m.both(i, "commit", func(_ *mmWorld, r *Replica) string { return mmErr(r.CommitBatch()) })
			} else {
				m.event("p%v starts a batch", i)
				m.both(i, "start", func(_ *mmWorld, r *Replica) string { return mmErr(r.StartBatch()) })
			}
		case k < 15:
			m.event("p%v flushes", i)
			rb := m.b.reps[i]
			seqs := rb.origin != rb.peer || rb.restored // a reload's new origin counts from 1
			m.both(i, "flush", func(w *mmWorld, r *Replica) string {
				var s string
				for _, msg := range r.Flush() {
					m.broadcast(w, i, msg)
					s += mmNorm(string(msg), seqs) + "\n"
				}
				return s
			})
		case k < 23:
			if len(m.a.inbox[i]) == 0 {
				m.event("p%v: nothing to receive", i)
				break
			}
			x, keep := rng.IntN(len(m.a.inbox[i])), rng.IntN(4) == 0
			m.event("p%v receives %v", i, string(m.a.inbox[i][x]))
			m.both(i, "receive", func(w *mmWorld, r *Replica) string {
				msg := w.inbox[i][x]
				if !keep {
					w.inbox[i] = slices.Delete(w.inbox[i], x, x+1)
				}
				res, err := r.Receive(msg)
				w.views[i].apply(res.Changes)
				return mmChanges(res.Changes) + mmErr(err) // the replies (a gap's request) are not routed
			})
		case k < 26:
			m.event("p%v undoes", i)
			m.both(i, "undo", func(w *mmWorld, r *Replica) string {
				res, err := r.Undo()
				w.views[i].apply(res.Changes)
				return mmUndo(res, err)
			})
		case k < 28:
			m.event("p%v redoes", i)
			m.both(i, "redo", func(w *mmWorld, r *Replica) string {
				res, err := r.Redo()
				w.views[i].apply(res.Changes)
				return mmUndo(res, err)
			})
		case k < 29:
			m.event("p%v marks saved", i)
			m.both(i, "markSaved", func(_ *mmWorld, r *Replica) string { return mmErr(r.MarkSaved(r.Clock())) })
		case k < 30:
			if len(m.a.reps[i].vec.above) > 0 || len(m.b.reps[i].vec.above) > 0 {
				m.event("p%v holds operations above a hole: no SavedMessage", i)
				break
			}
			m.event("p%v broadcasts a SavedMessage", i)
			for _, w := range []*mmWorld{m.a, m.b} {
				m.broadcast(w, i, w.reps[i].SavedMessage())
			}
		case k < 33:
			j := m.other(i)
			if j < 0 {
				break
			}
			probe := rng.IntN(4) == 0
			plain := !probe && rng.IntN(4) == 0
			since := rng.IntN(2) == 0
			m.event("p%v syncs with p%v, probe "+strconv.FormatBool(probe)+", plain "+strconv.FormatBool(plain), i, j)
			for _, w := range []*mmWorld{m.a, m.b} {
				r := w.reps[i]
				req := r.SyncRequest("p" + strconv.Itoa(j))
				switch {
				case probe:
					req = r.ProbeRequest("p" + strconv.Itoa(j))
				case plain:
					// uMap's plain Journal's request: for everything (its answer's vector is
					// the responder's), or for what follows the asker's newest operation
					// (no vector).
					last := "null"
					if n := r.LogLen(); n > 0 && since {
						last = `"` + r.log.ops[n-1].ts.String() + `"`
					}
					req = []byte(`{"kind":"PeerMessage","sender":"p` + strconv.Itoa(i) + `","recipient":"p` + strconv.Itoa(j) +
						`","message":{"verb":"ListOperationsRequest","lastKnownHLC":` + last + `}}`)
				}
				m.exchange(w, req)
			}
		case k < 35:
			var late int
			for late = 0; late < n && m.a.reps[late] != nil; late++ {
			}
			if late == n {
				break
			}
			plain := rng.IntN(3) == 0
			m.event("p%v joins from p%v, plain "+strconv.FormatBool(plain), late, i)
			for _, w := range []*mmWorld{m.a, m.b} {
				m.newReplica(w, late)
				req := w.reps[late].SyncRequest("p" + strconv.Itoa(i))
				if plain { // uMap's plain Journal: no vector, everything
					req = []byte(`{"kind":"PeerMessage","sender":"p` + strconv.Itoa(late) + `","recipient":"p` + strconv.Itoa(i) + `","message":{"verb":"ListOperationsRequest","lastKnownHLC":null}}`)
				}
				m.exchange(w, req)
			}
		case k < 37:
			m.event("p%v compacts (B)", i)
			m.compact(i)
		default:
			if m.b.reps[i].InBatch() {
				m.event("p%v compacts (B), its batch open", i)
				m.compact(i)
				break
			}
			m.event("p%v reloads from its snapshot (B)", i)
			m.reload(i)
		}
		for k, j := range m.joined()[:len(clocks[0])] {
			m.sameOpenBatch(j, clocks[0][k], clocks[1][k])
		}
		m.check()
	}
	m.finish()
}

// sameOpenBatch commits replica i's open batch in both worlds when a receive (or a sync
// exchange) moved its clock in one world only: the operation it took was new there, and held here by the
// vector (a reload's new origin moves the holes a vector stops at, and a response's vector
// claims the superseded operations it leaves out). Superseded, it changed nothing, but an
// edit joining the batch after it would start the batch's next part in one world only.
// Only in that direction: B's vector holds what A's does (new origins only split A's holes),
// and a replica of B that takes what A holds has lost it (Compact dropping it, say).
func (m *mmRun) sameOpenBatch(i int, clockA, clockB hlc.Timestamp) {
	ra, rb := m.a.reps[i], m.b.reps[i]
	if !ra.InBatch() || ra.Clock() == clockA || rb.Clock() != clockB {
		return // only B's vector holds more (not a compacted operation taken again)
	}
	m.events = append(m.events, "  the receive moved the clock in one world: both commit the batch")
	if err := ra.CommitBatch(); err != nil {
		m.fatalf("commit: %v", err)
	}
	if err := rb.CommitBatch(); err != nil {
		m.fatalf("commit: %v", err)
	}
}

// mmDone counts what world B did over a run's seeds: a test whose B never compacts,
// reloads or pages tests nothing.
var mmDone struct{ dropped, reloads, pages int }

// reload replaces replica i of world B by one restored from its snapshot (not while a
// batch is open: Snapshot refuses).
func (m *mmRun) reload(i int) {
	if !strings.Contains(*mmOnly, "s") || m.b.reps[i].InBatch() {
		return
	}
	snap, err := m.b.reps[i].Snapshot()
	if errors.Is(err, ErrTooLarge) {
		return // more than a restore takes (4 × the message limit)
	}
	if err != nil {
		m.fatalf("p%d: snapshot: %v", i, err)
	}
	var r *Replica
	if m.rng.IntN(2) == 0 {
		r, err = NewReplicaFromSnapshot(m.b.opts, snap)
	} else { // in steps (the wasm module's createEngine)
		r, _, err = restoreInSteps(m.b.opts, snap, 1+m.rng.IntN(40))
	}
	if err != nil {
		m.fatalf("p%d: restore: %v", i, err)
	}
	m.b.reps[i] = r
	mmDone.reloads++
}

func (m *mmRun) compact(i int) {
	if strings.Contains(*mmOnly, "c") {
		mmDone.dropped += m.b.reps[i].Compact().Ops
	}
}

// finish commits the batches, flushes, delivers everything, syncs until every replica
// holds the same, compares the worlds, lets a newcomer catch up from each replica, and
// undoes and redoes everything on one replica of each world.
func (m *mmRun) finish() {
	m.step = -1
	m.event("the end: batches committed, flushed, delivered, synced")
	joined := m.joined()
	for _, w := range []*mmWorld{m.a, m.b} {
		for _, i := range joined {
			if w.reps[i].InBatch() {
				if err := w.reps[i].CommitBatch(); err != nil {
					m.fatalf("commit: %v", err)
				}
			}
			for _, msg := range w.reps[i].Flush() {
				m.broadcast(w, i, msg)
			}
		}
		for _, i := range joined {
			for _, msg := range w.inbox[i] {
				res, err := w.reps[i].Receive(msg)
				if err != nil {
					m.fatalf("world %s: p%d receives %s: %v", w.name, i, msg, err)
				}
				w.views[i].apply(res.Changes)
			}
			w.inbox[i] = nil
		}
		for round := 0; round < 2; round++ {
			for _, i := range joined {
				for _, j := range joined {
					if i != j {
						m.exchange(w, w.reps[i].SyncRequest("p"+strconv.Itoa(j)))
					}
				}
			}
		}
		for _, i := range joined[1:] {
			if w.reps[i].State() != w.reps[joined[0]].State() {
				m.fatalf("world %s: p%d and p%d differ after the sync rounds", w.name, joined[0], i)
			}
		}
	}
	m.check()
	// A newcomer catching up from each replica, compacted or not.
	late := len(m.a.reps)
	for _, w := range []*mmWorld{m.a, m.b} {
		w.reps, w.views, w.inbox = append(w.reps, nil), append(w.views, nil), append(w.inbox, nil)
	}
	for _, i := range joined {
		m.event("a newcomer p%v catches up from p%v", late, i)
		for _, w := range []*mmWorld{m.a, m.b} {
			m.newReplica(w, late)
			m.exchange(w, w.reps[late].SyncRequest("p"+strconv.Itoa(i)))
		}
		m.same("the newcomer's state", m.a.reps[late].State(), m.b.reps[late].State())
		m.same("the newcomer's state against its source", m.a.reps[late].State(), m.a.reps[i].State())
	}
	// Undo everything, then redo it, on every replica (one at a time, in both worlds).
	for _, i := range joined {
		for k := 0; k < 200 && m.a.reps[i].CanUndo(); k++ {
			m.wall.Advance(1)
			m.event("p%v undoes (the end)", i)
			m.both(i, "undo", func(w *mmWorld, r *Replica) string {
				res, err := r.Undo()
				w.views[i].apply(res.Changes)
				return mmUndo(res, err)
			})
			m.checkViews(false)
		}
		for k := 0; k < 200 && m.a.reps[i].CanRedo(); k++ {
			m.wall.Advance(1)
			m.event("p%v redoes (the end)", i)
			m.both(i, "redo", func(w *mmWorld, r *Replica) string {
				res, err := r.Redo()
				w.views[i].apply(res.Changes)
				return mmUndo(res, err)
			})
			m.checkViews(false)
		}
		m.check()
	}
}
