package crdt

// Outbox coalescing (DESIGN §6) against sending every edit: a replica's superseded local
// operations never leave (Flush drops them), and no replica may reach another state than
// it would if every one of them had been sent. The randomized test keeps two replay
// oracles: one of what was sent, one of every local operation ever queued (what sending
// every edit would give); both must equal every replica's state, and each other.

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/mapcrdt/mapcrdt/hlc"
	"github.com/tidwall/gjson"
)

// stormPaths are the paths a drag storm writes, and their parents and children.
var stormPaths = []string{"geometry", "geometry.coordinates", "geometry.type", "properties",
	"properties.name", "properties._umap_options", "properties._umap_options.color"}

// coalesceWorld is replicas editing at random, each with a wall clock of its own (within
// ±20 s of the others: below MaxDrift), an observer that takes every message in the order
// sent, and the two oracles.
type coalesceWorld struct {
	t        *testing.T
	seed     int
	rng      *rand.Rand
	base     int64
	walls    []*hlc.ManualClock
	offs     []int64
	reps     []*Replica
	inbox    [][][]byte
	sent     [][]byte
	all      *oracle // every local operation queued, superseded or not
	out      *oracle // what Flush sent
	observer *Replica
	obsWall  *hlc.ManualClock
	lastSeq  map[string]uint64 // origin → the last seq sent
	openB    []bool
	capture  hlc.Duration // Options.CaptureInterval: a storm one undo step, or many
}

func (w *coalesceWorld) fatalf(format string, args ...any) {
	w.t.Helper()
	w.t.Fatalf("seed %d: "+format, append([]any{w.seed}, args...)...)
}

// tick moves the base time and every wall clock; now and then one wall clock steps back
// or jumps ahead (staying within ±20 s of the base).
func (w *coalesceWorld) tick() {
	w.base += int64(w.rng.IntN(3))
	if w.rng.IntN(30) == 0 {
		i := w.rng.IntN(len(w.walls))
		w.offs[i] = int64(w.rng.IntN(40_001)) - 20_000
	}
	for i, c := range w.walls {
		c.Set(w.base + w.offs[i])
	}
	w.obsWall.Set(w.base)
}

// edit makes one local edit on replica i: of a storm path of obj, or a whole-object write.
func (w *coalesceWorld) edit(i, obj int, path string) {
	r := w.reps[i]
	o := randObjects[obj]
	var err error
	switch k := w.rng.IntN(20); {
	case k < 14 || path != "":
		if path == "" {
			path = stormPaths[w.rng.IntN(len(stormPaths))]
		}
		if w.rng.IntN(6) == 0 {
			_, err = r.Unset(o.sub, o.meta, path)
		} else {
			_, err = r.Update(o.sub, o.meta, path, randValue(w.rng))
		}
	case k < 18:
		_, err = r.Upsert(o.sub, o.meta, randObjectValue(w.rng))
	default:
		_, err = r.Delete(o.sub, o.meta)
	}
	if err != nil {
		w.fatalf("replica %d: edit: %v", i, err)
	}
}

// queued encodes the operations of r's outbox as Flush would send them, without seqs.
func queued(r *Replica) [][]byte {
	if r.restored && len(r.outbox) > 0 {
		r.reincarnate() // as flush does first: the operations leave under the new origin
	}
	var msgs [][]byte
	for _, o := range r.outbox {
		msgs = append(msgs, appendOpWith(&r.dec, nil, o, r.peerJSON))
	}
	return msgs
}

func (w *coalesceWorld) flush(i int) {
	r := w.reps[i]
	for _, m := range queued(r) {
		w.all.add(m)
	}
	dirty, pending := kitDirty(r), r.Pending()
	msgs := r.Flush()
	if pending != len(msgs) {
		w.fatalf("replica %d: Pending %d, but Flush sent %d", i, pending, len(msgs))
	}
	if got := kitDirty(r); !slices.Equal(got, dirty) {
		w.fatalf("replica %d: Dirty %q before Flush, %q after", i, dirty, got)
	}
	for _, m := range msgs {
		w.out.add(m)
		w.sent = append(w.sent, m)
		g := gjson.ParseBytes(m)
		ts := hlc.MustParse(g.Get("hlc").String())
		if seq := uint64(g.Get("seq").Uint()); seq != w.lastSeq[ts.Peer]+1 {
			w.fatalf("replica %d sent seq %d of %s after %d: %s", i, seq, ts.Peer, w.lastSeq[ts.Peer], m)
		}
		w.lastSeq[ts.Peer]++
		res, err := w.observer.Receive(m)
		if err != nil {
			w.fatalf("observer: receive %s: %v", m, err)
		}
		if len(res.Replies) > 0 {
			w.fatalf("observer, taking every message in the order sent, sees a gap at %s", m)
		}
		for j := range w.reps {
			if j != i {
				w.inbox[j] = append(w.inbox[j], m)
			}
		}
	}
}

// receive hands replica i one waiting message (kept now and then: delivered twice).
func (w *coalesceWorld) receive(i int) {
	if len(w.inbox[i]) == 0 {
		return
	}
	x := w.rng.IntN(len(w.inbox[i]))
	if _, err := w.reps[i].Receive(w.inbox[i][x]); err != nil {
		w.fatalf("replica %d: receive %s: %v", i, w.inbox[i][x], err)
	}
	if w.rng.IntN(4) > 0 {
		w.inbox[i] = slices.Delete(w.inbox[i], x, x+1)
	}
}

func (w *coalesceWorld) undoRedo(i int) {
	r := w.reps[i]
	var err error
	if w.rng.IntN(3) == 0 {
		_, err = r.Redo()
	} else {
		_, err = r.Undo()
	}
	if w.openB[i] {
		if !errors.Is(err, ErrBadState) {
			w.fatalf("replica %d: undo or redo in an open batch: %v, want bad_state", i, err)
		}
		return
	}
	if err != nil {
		w.fatalf("replica %d: undo/redo: %v", i, err)
	}
}

// other does one of the things that can happen between two edits of a storm.
func (w *coalesceWorld) other(i int) {
	r := w.reps[i]
	switch w.rng.IntN(9) {
	case 0, 1:
		w.receive(i)
	case 2:
		w.flush(i)
	case 3:
		w.undoRedo(i)
	case 4:
		state, dirty := r.State(), kitDirty(r)
		r.Compact()
		if r.State() != state || !slices.Equal(kitDirty(r), dirty) {
			w.fatalf("replica %d: Compact changed the state or Dirty", i)
		}
	case 5:
		if w.openB[i] {
			if err := r.CommitBatch(); err != nil {
				w.fatalf("replica %d: commit: %v", i, err)
			}
		} else if err := r.StartBatch(); err != nil {
			w.fatalf("replica %d: start batch: %v", i, err)
		}
		w.openB[i] = !w.openB[i]
	case 6:
		if w.openB[i] {
			return
		}
		snap, err := r.Snapshot()
		if err != nil {
			w.fatalf("replica %d: snapshot: %v", i, err)
		}
		opts := DefaultOptions()
		opts.Wall, opts.CaptureInterval = w.walls[i], w.capture
		r2, err := NewReplicaFromSnapshot(opts, snap)
		if err != nil {
			w.fatalf("replica %d: restore: %v", i, err)
		}
		if r2.State() != r.State() || r2.Pending() != r.Pending() {
			w.fatalf("replica %d: the restored replica differs", i)
		}
		w.reps[i] = r2
	case 7:
		saved := r.SavedMessage()
		for j, o := range w.reps {
			if j != i {
				if _, err := o.Receive(saved); err != nil {
					w.fatalf("replica %d: SavedMessage: %v", j, err)
				}
			}
		}
	default:
		if err := r.MarkSaved(r.Clock()); err != nil {
			w.fatalf("replica %d: MarkSaved: %v", i, err)
		}
	}
}

// TestCoalescingKeepsTheOutcome: drag storms (a path written again and again, with its
// parent and children, unsets, upserts and deletes of the object, remote operations,
// flushes, undo and redo, compaction, snapshots and saves in between, inside batches and
// outside): every replica ends where sending every edit would have taken it, the seqs
// sent by each origin are 1, 2, 3 … with no hole, and a replica taking the messages in
// the order sent never sees a gap.
func TestCoalescingKeepsTheOutcome(t *testing.T) {
	for seed := 0; seed < *seeds/4; seed++ {
		runCoalesce(t, seed)
	}
}

func runCoalesce(t *testing.T, seed int) {
	rng := rand.New(rand.NewPCG(uint64(seed), 11))
	w := &coalesceWorld{t: t, seed: seed, rng: rng, base: 1_700_000_000_000, all: newOracle(t), out: newOracle(t),
		lastSeq: map[string]uint64{}}
	w.obsWall = hlc.NewManualClock(w.base)
	w.observer = newTestReplica(t, "observer", w.obsWall)
	baseObj := randObjects[3]
	baseValue := `{"type":"Feature","properties":{"name":"saved","color":"blue"},"geometry":{"type":"Point","coordinates":[0,0]}}`
	w.all.seed(baseObj.sub, baseObj.meta, baseValue)
	w.out.seed(baseObj.sub, baseObj.meta, baseValue)
	if seed%2 == 1 {
		w.capture = 5 * hlc.Millisecond
	}
	n := 2 + rng.IntN(2)
	for i := 0; i < n; i++ {
		c := hlc.NewManualClock(w.base)
		w.walls = append(w.walls, c)
		w.offs = append(w.offs, 0)
		r, err := NewReplica(Options{PeerID: "p" + strconv.Itoa(i), Wall: c, CaptureInterval: w.capture})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Seed(baseObj.sub, baseObj.meta, baseValue); err != nil {
			t.Fatal(err)
		}
		w.reps = append(w.reps, r)
	}
	if _, err := w.observer.Seed(baseObj.sub, baseObj.meta, baseValue); err != nil {
		t.Fatal(err)
	}
	w.inbox = make([][][]byte, n)
	w.openB = make([]bool, n)
	for step := 0; step < 30; step++ {
		w.tick()
		i := rng.IntN(n)
		switch rng.IntN(5) {
		case 0, 1: // a storm
			obj := 3 + rng.IntN(3) // the features
			path := stormPaths[rng.IntN(3)]
			for k := 2 + rng.IntN(12); k > 0; k-- {
				w.tick()
				if rng.IntN(4) == 0 {
					w.other(i)
				}
				switch rng.IntN(8) {
				case 0:
					w.edit(i, obj, stormPaths[rng.IntN(len(stormPaths))]) // parent, child, sibling
				case 1:
					w.edit(i, obj, "") // maybe the whole object
				default:
					w.edit(i, obj, path)
				}
			}
		case 2:
			w.edit(i, rng.IntN(len(randObjects)), "")
		default:
			w.other(i)
		}
	}
	for i, r := range w.reps {
		if w.openB[i] {
			if err := r.CommitBatch(); err != nil {
				t.Fatal(err)
			}
		}
		w.flush(i)
	}
	want := w.all.state()
	if got := w.out.state(); got != want {
		t.Fatalf("seed %d: what was sent replays to another state than every edit\nsent %s\nall  %s", seed, got, want)
	}
	for i, r := range w.reps {
		msgs := append(slices.Clone(w.inbox[i]), w.sent[:rng.IntN(len(w.sent)+1)]...) // duplicates, own echoes
		rng.Shuffle(len(msgs), func(a, b int) { msgs[a], msgs[b] = msgs[b], msgs[a] })
		for _, m := range msgs {
			if _, err := r.Receive(m); err != nil {
				t.Fatalf("seed %d: replica %d: receive %s: %v", seed, i, m, err)
			}
		}
		if got := norm(t, r.State()); got != want {
			t.Fatalf("seed %d: replica %d is not where every edit sent leads\n got %s\nwant %s", seed, i, got, want)
		}
	}
	if got := norm(t, w.observer.State()); got != want {
		t.Fatalf("seed %d: the observer is not where every edit sent leads\n got %s\nwant %s", seed, got, want)
	}
}

// TestOutboxKeepsWhatAnOpenBatchSupersedes: an edit waiting in the outbox, superseded by
// an edit of a batch still open, leaves at the next Flush all the same. The batch may
// never be committed (the tab closed first; a snapshot is refused while it is open):
// dropped, the edit would be lost everywhere, where sending every edit leaves it on
// every peer. (Compact keeps such an operation for the same reason.)
func TestOutboxKeepsWhatAnOpenBatchSupersedes(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		name := "open batch"
		if sealed {
			name = "the batch's open part after a receive"
		}
		t.Run(name, func(t *testing.T) {
			wall := hlc.NewManualClock(kitT0)
			alice := kitReplica(t, "alice", wall)
			bob := kitReplica(t, "bob", wall)
			carol := kitReplica(t, "carol", wall)
			kitSet(t, alice, kitF1, "geometry", `[1,1]`)
			kitNoErr(t, alice.StartBatch())
			if sealed {
				// The batch's first part, then a receive: its next edits are a new part.
				wall.Advance(1)
				kitSet(t, alice, kitF1, "properties.name", `"first part"`)
				kitSet(t, carol, kitF2, "properties.name", `"carol"`)
				kitDeliver(t, carol.Flush(), alice, bob)
			}
			wall.Advance(1)
			kitSet(t, alice, kitF1, "geometry", `[2,2]`)
			kitSet(t, alice, kitF1, "properties.name", `"second part"`)
			kitDeliver(t, alice.Flush(), bob)
			// The tab closes with the batch open: its edits are gone, what was flushed is not.
			kitWant(t, bob, "feature", kitF1, "geometry", `[1,1]`)
			if sealed {
				kitWant(t, bob, "feature", kitF1, "properties.name", `"first part"`)
			}
		})
	}
}

// TestOutboxPlainSaveLeavesUnsentEditsDirty: uMap's plain SavedMessage (no vector) saves
// everything up to its clock — but not the edits still waiting in the outbox or in an open
// batch, whatever their clock: they never left this replica, so the saver cannot hold
// them, and marked saved they would be in no save at all (a drag coalesced there
// included).
func TestOutboxPlainSaveLeavesUnsentEditsDirty(t *testing.T) {
	plain := func(wall *hlc.ManualClock) []byte {
		return []byte(`{"kind":"SavedMessage","sender":"umap","lastKnownHLC":"` +
			hlc.Timestamp{Wall: wall.NowMillis() + 5, Peer: "umap"}.String() + `"}`)
	}
	wall := hlc.NewManualClock(kitT0)
	carol := kitReplica(t, "carol", wall)
	kitSet(t, carol, kitF2, "properties.name", `"sent"`)
	carol.Flush()
	for i := 0; i < 5; i++ { // a drag, waiting
		wall.Advance(1)
		kitSet(t, carol, kitF1, "geometry", `[`+strconv.Itoa(i)+`,0]`)
	}
	kitRecv(t, carol, plain(wall))
	kitWantDirty(t, carol, "feature f1")
	carol.Flush()
	kitWantDirty(t, carol, "feature f1")
	wall.Advance(1)
	kitRecv(t, carol, plain(wall))
	kitWantDirty(t, carol)

	// An open batch's edits are not sent either.
	kitNoErr(t, carol.StartBatch())
	wall.Advance(1)
	kitSet(t, carol, kitF3, "properties.name", `"in a batch"`)
	kitRecv(t, carol, plain(wall))
	kitWantDirty(t, carol, "feature f3")
	kitNoErr(t, carol.CommitBatch())
	kitWantDirty(t, carol, "feature f3")
	// Her own save holds them: MarkSaved and SavedMessage save what waits too.
	kitNoErr(t, carol.MarkSaved(carol.Clock()))
	kitWantDirty(t, carol)
}
