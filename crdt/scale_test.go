package crdt

import (
	"bytes"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/mapcrdt/mapcrdt/hlc"
)

// Tests of what a busy map's replica holds over time: large values edited again and
// again, long sessions, restores.

// longString returns a JSON string of about n bytes, different for each i.
func longString(i, n int) string {
	return `"` + strconv.Itoa(i) + strings.Repeat("x", n) + `"`
}

// TestUndoHistoryBoundedInBytes: the undo and redo stacks keep their newest steps within
// the message limit in bytes (undoBudget), whatever the depth allows: a large geometry
// dragged again and again kept a whole copy per step (100 by default), in memory and in
// every snapshot, until the snapshot was too large to take. The steps kept still undo and
// redo exactly.
func TestUndoHistoryBoundedInBytes(t *testing.T) {
	opts := Options{PeerID: "alice", Wall: hlc.NewManualClock(1_700_000_000_000), Limits: DefaultLimits()}
	opts.Limits.MaxMessageBytes = 64 << 10
	r, err := NewReplica(opts)
	if err != nil {
		t.Fatal(err)
	}
	const meta = `{"id":"f1","layerId":"L1"}`
	const size, edits = 8 << 10, 40
	vals := []string{longString(0, size)}
	if _, err := r.Update("feature", meta, "geometry", vals[0]); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= edits; i++ {
		vals = append(vals, longString(i, size))
		if _, err := r.Update("feature", meta, "geometry", vals[i]); err != nil {
			t.Fatal(err)
		}
		r.Flush()
		held := 0
		for _, st := range r.undo.undo {
			held += st.bytes
		}
		if held != r.undo.held || held > undoBudget(&r.opts) {
			t.Fatalf("after %d edits: the undo steps hold %d bytes (counted %d), more than %d", i, held, r.undo.held, undoBudget(&r.opts))
		}
	}
	steps := len(r.undo.undo)
	if steps < 5 || steps >= edits {
		t.Fatalf("%d undo steps kept of %d edits of %d bytes under a budget of %d", steps, edits+1, size, undoBudget(&r.opts))
	}
	r.Compact()
	snap, err := r.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap) > 2*undoBudget(&r.opts) {
		t.Fatalf("snapshot of %d bytes with %d undo steps", len(snap), steps)
	}
	// Every step kept undoes; the redo stack stays within the budget too.
	for k := 1; k <= steps; k++ {
		if res, err := r.Undo(); err != nil || !res.Done {
			t.Fatalf("undo %d: %v %v", k, res, err)
		}
		if v, _, _ := r.Get("feature", meta, "geometry"); v != vals[edits-k] {
			t.Fatalf("undo %d: geometry %.20s…, want %.20s…", k, v, vals[edits-k])
		}
		held := 0
		for _, st := range r.undo.redo {
			held += st.bytes
		}
		if held > undoBudget(&r.opts) {
			t.Fatalf("after %d undos the redo steps hold %d bytes", k, held)
		}
	}
	if r.CanUndo() {
		t.Fatal("more undo steps than were kept")
	}
	for k := 1; r.CanRedo(); k++ {
		if _, err := r.Redo(); err != nil {
			t.Fatal(err)
		}
		if v, _, _ := r.Get("feature", meta, "geometry"); v != vals[edits-steps+k] {
			t.Fatalf("redo %d: geometry %.20s…, want %.20s…", k, v, vals[edits-steps+k])
		}
	}
	if v, _, _ := r.Get("feature", meta, "geometry"); v != vals[edits] {
		t.Fatal("redo did not come back to the last edit")
	}
	// Steps that each hold little (a value set where there was none) undone: the redo
	// steps hold the values, and keep to the budget too.
	for i := 0; i < edits; i++ {
		if _, err := r.Update("feature", `{"id":"g`+strconv.Itoa(i)+`","layerId":"L1"}`, "geometry", longString(i, size)); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.undo.undo) < edits {
		t.Fatalf("%d undo steps of %d small ones", len(r.undo.undo), edits)
	}
	for r.CanUndo() {
		if _, err := r.Undo(); err != nil {
			t.Fatal(err)
		}
	}
	held := 0
	for _, st := range r.undo.redo {
		held += st.bytes
	}
	if held > undoBudget(&r.opts) || len(r.undo.redo) < 5 {
		t.Fatalf("%d redo steps hold %d bytes", len(r.undo.redo), held)
	}
}

// TestUndoGroupPastTheBudgetStartsAStep: edits that join one step (a group, the capture
// interval) stop joining it once it holds more than the budget (undoBudget): the next edit
// starts a step of its own, and the budget drops the old one. They joined without bound:
// 40 grouped edits of 8 KB under a 64 KB limit made one step of 322 KB, kept whole, and
// the snapshot was too large to take. The newest part undoes exactly and redoes; a batch
// is atomic and stays one step, whatever it holds.
func TestUndoGroupPastTheBudgetStartsAStep(t *testing.T) {
	const meta = `{"id":"f1","layerId":"L1"}`
	const size, edits = 8 << 10, 40
	for _, mode := range []string{"group", "capture interval"} {
		wall := hlc.NewManualClock(kitT0)
		r := kitReplica(t, "alice", wall, kitUndoLimits(64<<10, 100_000), func(o *Options) {
			if mode == "capture interval" {
				o.CaptureInterval = hlc.Second
			}
		})
		budget, entry := undoBudget(&r.opts), len(meta)+48+size+4
		group := ""
		if mode == "group" {
			group = "drag"
		}
		vals := []string{longString(0, size)}
		kitOK(t)(r.Update("feature", meta, "geometry", vals[0]))
		r.undo.closeTop() // the grouped edits start a step of their own
		starts := 0
		for i := 1; i <= edits; i++ {
			vals = append(vals, longString(i, size))
			kitOK(t)(r.Apply(Edit{Verb: VerbUpdate, Subject: "feature", Metadata: meta, Key: "geometry", Value: vals[i], Group: group}))
			r.Flush()
			top := r.undo.undo[len(r.undo.undo)-1]
			if len(top.entries) == 1 {
				starts++
			}
			if top.bytes > budget+entry || r.undo.held > budget+entry {
				t.Fatalf("%s: after %d edits the newest step holds %d bytes, the history %d, over a budget of %d", mode, i, top.bytes, r.undo.held, budget)
			}
		}
		if starts < 4 {
			t.Fatalf("%s: %d edits of %d bytes under a budget of %d started %d steps", mode, edits, size, budget, starts)
		}
		r.Compact() // the log keeps only the newest value
		snap, err := r.Snapshot()
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		restored := kitRestore(t, snap, wall)
		for _, r := range []*Replica{r, restored} {
			part := len(r.undo.undo[len(r.undo.undo)-1].entries)
			if part >= edits {
				t.Fatalf("%s: one step of all %d edits", mode, edits)
			}
			kitUndo(t, r)
			kitWant(t, r, "feature", meta, "geometry", vals[edits-part])
			if r.CanUndo() {
				t.Fatalf("%s: an older part kept past the budget", mode)
			}
			kitRedo(t, r)
			kitWant(t, r, "feature", meta, "geometry", vals[edits])
		}
	}
	// A batch replacing 12 values of 8 KB: one step past the budget, every edit in it.
	r := kitReplica(t, "alice", hlc.NewManualClock(kitT0), kitUndoLimits(64<<10, 100_000))
	kitNoErr(t, r.StartBatch())
	for i := 0; i < 12; i++ {
		f := `{"id":"g` + strconv.Itoa(i) + `","layerId":"L1"}`
		if _, err := r.Seed("feature", f, `{"geometry":`+longString(i, size)+`}`); err != nil {
			t.Fatal(err)
		}
		kitOK(t)(r.Update("feature", f, "geometry", `"small"`))
	}
	kitNoErr(t, r.CommitBatch())
	if top := r.undo.undo[len(r.undo.undo)-1]; len(r.undo.undo) != 1 || len(top.entries) != 12 || top.bytes <= undoBudget(&r.opts) {
		t.Fatalf("a batch of 12 edits: %d steps, the newest of %d edits and %d bytes", len(r.undo.undo), len(top.entries), top.bytes)
	}
}

// TestUndoSkippedStepLeavesTheBudget: an undo that skips every place of its step (a peer
// wrote them all since) takes the step off the stack, and its bytes off the count the
// budget is held to. They stayed counted: every later edit then dropped steps the budget
// had room for, for as long as the replica lived.
func TestUndoSkippedStepLeavesTheBudget(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	alice := kitReplica(t, "alice", wall, kitUndoLimits(64<<10, 100_000))
	bob := kitReplica(t, "bob", wall, kitUndoLimits(64<<10, 100_000))
	const f1 = `{"id":"f1","layerId":"L1"}`
	kitOK(t)(alice.Update("feature", f1, "geometry", longString(0, 40<<10)))
	kitOK(t)(alice.Update("feature", f1, "geometry", `"small"`)) // its step holds the 40 KB
	kitDeliver(t, alice.Flush(), bob)
	wall.Advance(1)
	kitOK(t)(bob.Update("feature", f1, "geometry", `"bob's"`))
	kitDeliver(t, bob.Flush(), alice)
	if res := kitUndo(t, alice); len(res.Skipped) != 1 || len(res.Changes) != 0 {
		t.Fatalf("undo over bob's write: %+v", res)
	}
	// Three steps of 10 KB each, and the first one: 31 KB of the 64 KB.
	for i := 0; i < 3; i++ {
		meta := `{"id":"g` + strconv.Itoa(i) + `","layerId":"L1"}`
		kitOK(t)(alice.Update("feature", meta, "geometry", longString(i, 10<<10)))
		kitOK(t)(alice.Update("feature", meta, "geometry", `"small"`))
	}
	if n := len(alice.undo.undo); n != 7 {
		t.Fatalf("%d undo steps kept of 7 within the budget", n)
	}
}

// TestRestoredUndoHistoryKeepsWhatTheReplicaKept: a replica and its copy restored from a
// snapshot count their undo steps' bytes alike, and so keep the same steps after the
// same edit. An upsert of an object read before but never written recorded "{}" as the
// value to restore where there was none: counted by the replica (2 bytes more), written
// null in the snapshot, not counted by the copy — at the budget's edge the replica
// dropped a step its copy kept.
func TestRestoredUndoHistoryKeepsWhatTheReplicaKept(t *testing.T) {
	const budget = 4096
	wall := hlc.NewManualClock(kitT0)
	alice := kitReplica(t, "alice", wall, kitUndoLimits(budget, 100_000))
	const l2, f1 = `{"id":"L2"}`, `{"id":"f1","layerId":"L1"}`
	if _, _, err := alice.Get("datalayer", l2, "name"); err != nil {
		t.Fatal(err)
	}
	kitOK(t)(alice.Upsert("datalayer", l2, `{"name":"a layer"}`))
	snap, err := alice.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	restored, err := NewReplicaFromSnapshot(Options{Wall: wall, Limits: alice.opts.Limits}, snap)
	if err != nil {
		t.Fatal(err)
	}
	// Four more steps, two of them restoring values that bring the five to one byte under
	// the budget.
	entry := len(f1) + 48
	rest := budget - (len(l2) + 48) - 4*entry - 1
	values := []string{longString(0, rest/2-3), longString(1, rest-rest/2-3)}
	for _, r := range []*Replica{alice, restored} {
		for i, v := range values {
			f := `{"id":"f` + strconv.Itoa(i+1) + `","layerId":"L1"}`
			kitOK(t)(r.Update("feature", f, "geometry", v))
			kitOK(t)(r.Update("feature", f, "geometry", `"small"`))
		}
		if n := len(r.undo.undo); n != 5 {
			t.Errorf("%s: %d undo steps, 5 fit the budget (%d of %d bytes counted)", r.origin, n, r.undo.held, budget)
		}
	}
}

// inLog reports whether o itself is in r's log.
func inLog(r *Replica, o *op) bool {
	i, ok := r.log.find(o.ts)
	return ok && r.log.ops[i] == o
}

// TestCompactLetsSupersededValuesGo: after Compact, no operation the replica still points
// at but the log's holds a value — not an undo entry's write (a superseded edit, which
// moveOut copied whole, value and all, at every Compact: the undo history's memory
// doubled), not an operation of the block being filled (which kept the last hundred
// superseded values alive). Undo after Compact writes exactly what it writes without.
func TestCompactLetsSupersededValuesGo(t *testing.T) {
	wallA, wallB := hlc.NewManualClock(1_700_000_000_000), hlc.NewManualClock(1_700_000_000_000)
	a := newTestReplica(t, "alice", wallA) // compacts after every edit
	b := newTestReplica(t, "alice", wallB) // never
	meta := func(i int) string { return `{"id":"f` + strconv.Itoa(i) + `","layerId":"L1"}` }
	var editThen func(f func(r *Replica) error, compact bool)
	edit := func(f func(r *Replica) error) { editThen(f, true) }
	editThen = func(f func(r *Replica) error, compact bool) {
		t.Helper()
		for _, r := range []*Replica{a, b} {
			if err := f(r); err != nil {
				t.Fatal(err)
			}
		}
		wallA.Advance(1000)
		wallB.Advance(1000)
		ma, mb := a.Flush(), b.Flush()
		if len(ma) != len(mb) {
			t.Fatalf("%d messages against %d", len(ma), len(mb))
		}
		for i := range ma {
			if !bytes.Equal(ma[i], mb[i]) {
				t.Fatalf("messages differ:\n%s\n%s", ma[i], mb[i])
			}
		}
		if compact {
			a.Compact()
		}
	}
	for i := 0; i < 12; i++ {
		// A batch over three features, with its own metadata text (members in another
		// order), then a drag of one: each edit supersedes the one before.
		edit(func(r *Replica) error {
			if err := r.StartBatch(); err != nil {
				return err
			}
			for f := 0; f < 3; f++ {
				m := `{"layerId":"L1","id":"f` + strconv.Itoa(f) + `"}`
				if _, err := r.Update("feature", m, "geometry", longString(i*10+f, 2000)); err != nil {
					return err
				}
			}
			return r.CommitBatch()
		})
		// Two drags of one feature, the first superseded before any Compact.
		for k := 5; k <= 6; k++ {
			editThen(func(r *Replica) error {
				_, err := r.Update("feature", meta(i%3), "geometry", longString(i*10+k, 2000))
				return err
			}, k == 6)
		}
	}
	// A value an undo entry holds is copied once, by the first Compact after its edit.
	olds := map[*byte]bool{}
	for _, st := range a.undo.undo {
		for _, e := range st.entries {
			olds[unsafe.StringData(e.old)] = true
		}
	}
	a.Compact()
	for _, st := range a.undo.undo {
		for _, e := range st.entries {
			if !olds[unsafe.StringData(e.old)] {
				t.Fatalf("Compact copied the value %.20s… of an undo entry again", e.old)
			}
		}
	}
	held := 0
	for _, steps := range [][]undoStep{a.undo.undo, a.undo.redo} {
		for _, st := range steps {
			for _, e := range st.entries {
				if inLog(a, e.by.op) {
					continue
				}
				e.by.op.writes(func(w *op, _ int32) { held += len(w.value) })
			}
		}
	}
	if held > 0 {
		t.Errorf("undo entries hold %d bytes of values of operations no longer in the log", held)
	}
	held = 0
	if blk := a.bulk.block; blk != nil {
		for i := range blk {
			if o := &blk[i]; o.value != "" && !o.ts.IsZero() && !inLog(a, o) {
				held += len(o.value)
			}
		}
	}
	if held > 0 {
		t.Errorf("the block being filled holds %d bytes of values of operations no longer in the log", held)
	}
	for a.CanUndo() {
		edit(func(r *Replica) error {
			_, err := r.Undo()
			return err
		})
	}
	for a.CanRedo() {
		edit(func(r *Replica) error {
			_, err := r.Redo()
			return err
		})
	}
	if a.State() != b.State() {
		t.Fatal("states differ")
	}
}

// TestRestoreKeepsNoSnapshotText: a replica restored from a snapshot keeps copies of what
// its undo steps name (the value to restore, the key, the group), not the snapshot's text,
// which one entry pointing into it kept whole in memory.
func TestRestoreKeepsNoSnapshotText(t *testing.T) {
	r := newTestReplica(t, "alice", nil)
	if _, err := r.Apply(Edit{Verb: VerbUpdate, Subject: "feature", Metadata: `{"id":"f1","layerId":"L1"}`, Key: "properties.name", Value: `"a"`, Group: "g"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Apply(Edit{Verb: VerbUpdate, Subject: "feature", Metadata: `{"id":"f1","layerId":"L1"}`, Key: "properties.name", Value: `"b"`, Group: "h"}); err != nil {
		t.Fatal(err)
	}
	// A peer's operations, one beyond a hole in its seqs, the known peers, a save.
	wall := time.Now().UnixMilli()
	for _, seq := range []int{1, 3} {
		if _, err := r.Receive([]byte(`{"kind":"OperationMessage","sender":"bob","verb":"update","subject":"feature","metadata":{"id":"f2","layerId":"L1"},"key":"properties.n","value":` +
			strconv.Itoa(seq) + `,"hlc":"` + hlc.Timestamp{Wall: wall, Counter: uint32(seq), Peer: "bob"}.String() + `","seq":` + strconv.Itoa(seq) + `}`)); err != nil {
			t.Fatal(err)
		}
	}
	r.SetPeers([]string{"bob", "carol"})
	r.Flush()
	if _, err := r.Receive([]byte(`{"kind":"SavedMessage","sender":"bob","lastKnownHLC":"` + hlc.Timestamp{Wall: wall, Counter: 9, Peer: "bob"}.String() +
		`","vector":{"alice":2,"bob":1}}`)); err != nil {
		t.Fatal(err)
	}
	r.SavedMessage()
	snap, err := r.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// 32 MB more of the snapshot's text, which the replica has no use for (a member it does
	// not read).
	const pad = 32 << 20
	snap = append(snap[:len(snap)-1], `,"pad":"`...)
	snap = append(snap, strings.Repeat("p", pad)...)
	snap = append(snap, `"}`...)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	restored, err := NewReplicaFromSnapshot(Options{}, snap)
	if err != nil {
		t.Fatal(err)
	}
	grown := int64(heap()) - int64(before)
	if len(restored.undo.undo) != 2 || len(restored.vec.above) != 1 || len(restored.Peers()) != 2 || restored.saved.IsZero() || len(restored.savedBy) != 1 {
		t.Fatalf("restored %d undo steps, %d origins with seqs above a hole, peers %v, saved %v by %v",
			len(restored.undo.undo), len(restored.vec.above), restored.Peers(), restored.saved, restored.savedBy)
	}
	if grown > pad/2 {
		t.Errorf("the restored replica holds %d bytes: the snapshot's text (%d)", grown, len(snap))
	}
	if res, err := restored.Undo(); err != nil || !res.Done {
		t.Fatal(res, err)
	}
	runtime.KeepAlive(snap)
}

// TestSnapshotAfterAnUndoStepPastTheBudget: the newest undo step is kept past the budget
// (a batch deleting a layer's features restores them all), but a snapshot holds each
// history within it — README: both histories, about twice the message limit at most,
// within what a restore takes. Such a snapshot used to be over 4 × the limit, and
// Snapshot refused it (too_large) until the next edit dropped the step.
func TestSnapshotAfterAnUndoStepPastTheBudget(t *testing.T) {
	const limit = 64 << 10
	wall := hlc.NewManualClock(kitT0)
	alice := kitReplica(t, "alice", wall, kitUndoLimits(limit, 100_000))
	meta := func(i int) string { return `{"id":"f` + strconv.Itoa(i) + `","layerId":"L1"}` }
	for i := 0; i < 100; i++ {
		kitOK(t)(alice.Upsert("feature", meta(i), `{"type":"Feature","properties":{"t":"`+strings.Repeat("x", 3000)+`"}}`))
	}
	alice.Flush()
	kitNoErr(t, alice.StartBatch())
	for i := 0; i < 100; i++ {
		kitOK(t)(alice.Delete("feature", meta(i)))
	}
	kitNoErr(t, alice.CommitBatch())
	alice.Flush()
	alice.Compact()
	snap, err := alice.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot after a batch whose undo restores 300 KB: %v", err)
	}
	restored, err := NewReplicaFromSnapshot(Options{Wall: wall, Limits: alice.opts.Limits}, snap)
	if err != nil {
		t.Fatal(err)
	}
	kitSameState(t, alice, restored)
	if restored.CanUndo() {
		t.Error("the restored replica can undo: the snapshot holds the step past the budget, or older ones without it")
	}
	// The replica itself still undoes the delete.
	kitUndo(t, alice)
	kitWant(t, alice, "feature", meta(99), "properties.t", `"`+strings.Repeat("x", 3000)+`"`)

	// A redo step past the budget is left out the same way: an import (one group of
	// upserts, whose undo step restores their absence) undone.
	bob := kitReplica(t, "bob", wall, kitUndoLimits(limit, 100_000))
	for i := 0; i < 100; i++ {
		kitOK(t)(bob.Apply(Edit{Verb: VerbUpsert, Subject: "feature", Metadata: meta(i), Group: "import",
			Value: `{"type":"Feature","properties":{"t":"` + strings.Repeat("y", 3000) + `"}}`}))
	}
	bob.Flush()
	kitUndo(t, bob)
	bob.Flush()
	bob.Compact()
	if snap, err = bob.Snapshot(); err != nil {
		t.Fatalf("Snapshot with a redo step of 300 KB: %v", err)
	}
	if restored, err = NewReplicaFromSnapshot(Options{Wall: wall, Limits: bob.opts.Limits}, snap); err != nil {
		t.Fatal(err)
	}
	kitSameState(t, bob, restored)
	if restored.CanRedo() {
		t.Error("the restored replica can redo the step past the budget")
	}
	kitRedo(t, bob)
	kitWant(t, bob, "feature", meta(99), "properties.t", `"`+strings.Repeat("y", 3000)+`"`)
}
