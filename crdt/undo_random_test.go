package crdt

// A seeded randomized test of undo and redo (DESIGN §7) over 2–3 replicas that edit,
// undo, redo, flush and receive in random order with duplicates.

import (
	"errors"
	"flag"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/mapcrdt/mapcrdt/hlc"
	"github.com/tidwall/gjson"
)

// urModel is what the test expects of one step of a replica's undo or redo stack: the
// state before it, and whether the state may differ from that for a reason other than
// the step (a peer's operation received since, or an edit undone by its path alone).
type urModel struct {
	before  string
	dirty   bool
	partial bool
	bytes   int  // the step's bytes (undoStep.bytes) when last seen on the stack
	edit    bool // a step of local edits (undoStacks.record), not one an undo or redo put back
}

type urRun struct {
	t          *testing.T
	seed       int
	rng        *rand.Rand
	wall       *hlc.ManualClock
	reps       []*Replica
	inbox      [][][]byte
	or         *oracle
	undo, redo [][]urModel
	taken      []int // per replica, how many receives brought operations
	msgBytes   int   // Limits.MaxMessageBytes, 0 for the default
	// noUndo draws which edits are made with Edit.NoUndo (one in eight), apart from rng: the
	// seeds draw the same operations as before it.
	noUndo *rand.Rand
}

func (u *urRun) fatalf(format string, args ...any) {
	u.t.Helper()
	u.t.Fatalf("seed %d: "+format, append([]any{u.seed}, args...)...)
}

var urTrace = flag.Bool("urtrace", false, "log every step of TestUndoRandomized")
var urFirst = flag.Int("urfirst", 0, "the first seed of TestUndoRandomized")

func (u *urRun) trace(format string, args ...any) {
	if *urTrace {
		u.t.Logf(format, args...)
	}
}

func (u *urRun) flush(i int) {
	for _, m := range u.reps[i].Flush() {
		u.or.add(m)
		for j := range u.reps {
			if j != i {
				u.inbox[j] = append(u.inbox[j], m)
			}
		}
	}
}

// receive hands m to replica i; a message that brought operations (the log or the state
// changed: the vector does not move past a hole) marks every modelled step of i dirty.
func (u *urRun) receive(i int, m []byte) {
	r := u.reps[i]
	nu, nr := len(r.undo.undo), len(r.undo.redo)
	logLen, state := r.LogLen(), r.State()
	u.trace("u%d receives %s", i, m)
	res, err := r.Receive(m)
	if err != nil {
		u.fatalf("u%d receives %s: %v", i, m, err)
	}
	if len(r.undo.undo) != nu || len(r.undo.redo) != nr {
		u.fatalf("u%d: a receive changed the undo stacks", i)
	}
	if *urTrace {
		g, _ := kitGet(u.t, r, "feature", `{"id":"f1","layerId":"L2"}`, "geometry")
		u.trace("  u%d log %d->%d changed %v geometry %s", i, logLen, r.LogLen(), r.State() != state, g)
	}
	if r.LogLen() != logLen || r.State() != state {
		u.taken[i]++
		for _, st := range [][]urModel{u.undo[i], u.redo[i]} {
			for k := range st {
				st[k].dirty = true
			}
		}
	}
	for _, reply := range res.Replies {
		to, _ := strconv.Atoi(gjson.GetBytes(reply, "recipient").String()[1:])
		u.inbox[to] = append(u.inbox[to], reply)
	}
}

// deliver hands replica i one message of its inbox, at random, keeping it there (a
// duplicate later) one time in five.
func (u *urRun) deliver(i int) {
	if len(u.inbox[i]) == 0 {
		return
	}
	x := u.rng.IntN(len(u.inbox[i]))
	m := u.inbox[i][x]
	if u.rng.IntN(5) > 0 {
		u.inbox[i] = append(u.inbox[i][:x], u.inbox[i][x+1:]...)
	}
	u.receive(i, m)
}

// edit makes one local edit on replica i, with a group one time in six; it reports whether
// it was made with Edit.NoUndo (then it made no step, joined none and left the redo
// stack: to the steps modelled, it is as a peer's write).
func (u *urRun) edit(i int, group string) (noUndo bool) {
	r, rng := u.reps[i], u.rng
	o := randObjects[rng.IntN(len(randObjects))]
	e := Edit{Subject: o.sub, Metadata: o.meta, Group: group}
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
	before, n := r.State(), len(r.undo.undo)
	if e.NoUndo = u.noUndo.IntN(8) == 0; e.NoUndo {
		nr, entries := len(r.undo.redo), 0
		if n > 0 {
			entries = len(r.undo.undo[n-1].entries)
		}
		u.trace("u%d edit %+v, no undo", i, e)
		if _, err := r.Apply(e); err != nil {
			u.fatalf("u%d: %+v: %v", i, e, err)
		}
		if len(r.undo.undo) != n || len(r.undo.redo) != nr || n > 0 && len(r.undo.undo[n-1].entries) != entries {
			u.fatalf("u%d: a NoUndo edit changed the stacks", i)
		}
		for _, st := range [][]urModel{u.undo[i], u.redo[i]} {
			for k := range st {
				st[k].dirty = true
			}
		}
		return true
	}
	// A step not a batch's that holds more than the budget takes no more edits.
	full := n > 0 && !r.undo.undo[n-1].inBatch && r.undo.undo[n-1].bytes > undoBudget(&r.opts)
	u.trace("u%d edit %+v (steps %d, models %d)", i, e, len(r.undo.undo), len(u.undo[i]))
	if _, err := r.Apply(e); err != nil {
		u.fatalf("u%d: %+v: %v", i, e, err)
	}
	if r.CanRedo() || !r.CanUndo() {
		u.fatalf("u%d: after an edit CanUndo %v CanRedo %v", i, r.CanUndo(), r.CanRedo())
	}
	u.redo[i] = u.redo[i][:0]
	top := r.undo.undo[len(r.undo.undo)-1]
	switch {
	case len(top.entries) == 1 && len(r.undo.undo) <= n+1: // a new step
		u.undo[i] = append(u.undo[i], urModel{before: before, edit: true})
	case len(top.entries) > 1 && len(r.undo.undo) <= n && !full: // joined the newest step
	default:
		u.fatalf("u%d: an edit took the undo stack from %d to %d steps, the newest of %d entries (the one before full: %v)", i, n, len(r.undo.undo), len(top.entries), full)
	}
	u.trim(i)
	if e := top.entries[len(top.entries)-1]; e.path != nil && e.obj.root.op == nil {
		u.undo[i][len(u.undo[i])-1].partial = true // undone by its path alone (doc.go)
	}
	return false
}

// revert undoes (or redoes) the newest step of replica i and checks what it did.
func (u *urRun) revert(i int, redo bool) {
	r := u.reps[i]
	from, to := &u.undo[i], &u.redo[i]
	stack, can, name := r.undo.undo, r.CanUndo(), "undo"
	if redo {
		from, to = &u.redo[i], &u.undo[i]
		stack, can, name = r.undo.redo, r.CanRedo(), "redo"
	}
	if can != (len(stack) > 0) || len(stack) != len(*from) {
		u.fatalf("u%d: can%s %v with %d steps, %d modelled", i, name, can, len(stack), len(*from))
	}
	before, pending := r.State(), r.Pending()
	var step undoStep
	var guards []kitGuard
	if can {
		step = stack[len(stack)-1]
		guards = kitOthersNewest(u.t, r, step)
	}
	var res UndoResult
	var err error
	if redo {
		res, err = r.Redo()
	} else {
		res, err = r.Undo()
	}
	u.trace("u%d %s: %+v %v (models %d)", i, name, res, err, len(*from))
	if err != nil {
		u.fatalf("u%d: %s: %v", i, name, err)
	}
	after := r.State()
	if !can {
		if res.Done || after != before || r.Pending() != pending {
			u.fatalf("u%d: %s with nothing to %s: %+v", i, name, name, res)
		}
		return
	}
	if !res.Done {
		u.fatalf("u%d: %s of a step not done", i, name)
	}
	// A step all skipped reverted nothing: nothing goes on the other stack.
	allSkipped := len(res.Skipped) == len(step.entries)
	back, want := r.CanRedo(), len(*to) > 0 || !allSkipped
	if redo {
		back = r.CanUndo()
	}
	if back != want {
		u.fatalf("u%d: after a %s skipping %d of %d places, can take back %v", i, name, len(res.Skipped), len(step.entries), back)
	}
	// (2) A place whose newest write is another peer's is left as it is.
	for _, g := range guards {
		if v, ok := kitGet(u.t, r, g.sub, g.meta, g.key); v != g.value || ok != g.present {
			u.fatalf("u%d: %s changed %s %s %q, whose newest write is another peer's: %s (%v) -> %s (%v)",
				i, name, g.sub, g.meta, g.key, g.value, g.present, v, ok)
		}
	}
	// (5) The skipped places are places of the step; a step all skipped changes and sends
	// nothing (a step partly undone may queue no more operations: the outbox coalesces).
	if len(res.Skipped) > len(step.entries) {
		u.fatalf("u%d: %s skipped %d places of a step of %d", i, name, len(res.Skipped), len(step.entries))
	}
	for _, s := range res.Skipped {
		found := false
		for _, e := range step.entries {
			found = found || e.obj.subject.Name == s.Subject && e.obj.meta == s.Metadata && JoinPath(e.path...) == s.Key
		}
		if !found {
			u.fatalf("u%d: %s skipped %+v, not a place of the step", i, name, s)
		}
	}
	if allSkipped && (r.Pending() != pending || after != before) {
		u.fatalf("u%d: %s skipped all %d places, yet queued %d operations or changed the state", i, name, len(step.entries), r.Pending()-pending)
	}
	// (3), (4) With no peer's operation since, the step goes back exactly, skipping nothing.
	m := (*from)[len(*from)-1]
	*from = (*from)[:len(*from)-1]
	if !m.dirty {
		if len(res.Skipped) > 0 {
			u.fatalf("u%d: %s skipped %+v with no peer's operation received since the step", i, name, res.Skipped)
		}
		if !m.partial && after != m.before {
			u.fatalf("u%d: %s of a step no peer touched\n got %s\nwant %s", i, name, after, m.before)
		}
	}
	if m.partial && after != m.before {
		// The residue of a path undone alone is in the state every older step goes back to.
		for _, st := range [][]urModel{u.undo[i], u.redo[i]} {
			for k := range st {
				st[k].partial = true
			}
		}
	}
	if !allSkipped {
		*to = append(*to, urModel{before: before})
	}
	u.trim(i)
}

// trim drops from the models of replica i's stacks the oldest steps the replica dropped,
// after checking that it had to: each stack keeps its newest steps within the byte budget
// (undoBudget), but for the newest step, whatever its size — whole steps, a batch's or a
// group's entries never parted. A step of edits not a batch's took each edit while it held
// at most the budget (record), so without its newest entry it holds at most that. The
// steps kept then still undo and redo as modelled.
func (u *urRun) trim(i int) {
	r := u.reps[i]
	budget := undoBudget(&r.opts)
	for k, st := range []struct {
		name  string
		got   []undoStep
		model *[]urModel
	}{{"undo", r.undo.undo, &u.undo[i]}, {"redo", r.undo.redo, &u.redo[i]}} {
		m := *st.model
		if len(st.got) > len(m) {
			u.fatalf("u%d: %d %s steps, %d modelled", i, len(st.got), st.name, len(m))
		}
		held := 0
		for _, s := range st.got {
			sum := 0
			for _, e := range s.entries {
				sum += e.size()
			}
			if sum != s.bytes {
				u.fatalf("u%d: a %s step of %d bytes counted %d", i, st.name, sum, s.bytes)
			}
			held += sum
		}
		if k == 0 && held != r.undo.held {
			u.fatalf("u%d: the undo steps hold %d bytes, counted %d", i, held, r.undo.held)
		}
		if len(st.got) > 1 && held > budget {
			u.fatalf("u%d: %d %s steps hold %d bytes, over the budget of %d", i, len(st.got), st.name, held, budget)
		}
		if drop := len(m) - len(st.got); drop > 0 && len(st.got) > 0 && held+m[drop-1].bytes <= budget {
			u.fatalf("u%d: dropped %d %s steps, the newest of %d bytes, with %d of %d held", i, drop, st.name, m[drop-1].bytes, held, budget)
		}
		*st.model = m[len(m)-len(st.got):]
		for j, s := range st.got {
			(*st.model)[j].bytes = s.bytes
			if last := len(s.entries) - 1; (*st.model)[j].edit && !s.inBatch && last > 0 && s.bytes-s.entries[last].size() > budget {
				u.fatalf("u%d: a %s step of %d edits holds %d bytes, %d before its last, over the budget of %d", i, st.name, len(s.entries), s.bytes, s.bytes-s.entries[last].size(), budget)
			}
		}
	}
}

// runUndoRandom runs one seed; msgBytes > 0 sets Limits.MaxMessageBytes (and with it the
// undo history's byte budget, undoBudget).
func runUndoRandom(t *testing.T, seed, msgBytes int) {
	rng := rand.New(rand.NewPCG(uint64(seed), 77))
	u := &urRun{t: t, seed: seed, rng: rng, wall: hlc.NewManualClock(kitT0), or: newOracle(t), msgBytes: msgBytes,
		noUndo: rand.New(rand.NewPCG(uint64(seed), 78))}
	n := 2 + seed%2
	interval := hlc.Duration(rng.IntN(2)*3) * hlc.Millisecond
	seeded := rng.IntN(2) == 0
	// Under a small history, groups often and drags of up to 20 edits: steps of grouped
	// edits past the budget, which then take no more.
	groupEvery, drag := 6, 1
	if msgBytes > 0 {
		groupEvery, drag = 3, 20
	}
	for i := 0; i < n; i++ {
		r := kitReplica(t, "u"+strconv.Itoa(i), u.wall, func(o *Options) {
			o.UndoDepth, o.CaptureInterval = 1000, interval
			if msgBytes > 0 {
				o.Limits = DefaultLimits()
				o.Limits.MaxMessageBytes = msgBytes
			}
		})
		if seeded {
			for _, o := range randObjects {
				v := randObjectValue(rand.New(rand.NewPCG(uint64(seed), 1)))
				if _, err := r.Seed(o.sub, o.meta, v); err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					u.or.seed(o.sub, o.meta, v)
				}
			}
		}
		u.reps = append(u.reps, r)
	}
	u.inbox, u.undo, u.redo, u.taken = make([][][]byte, n), make([][]urModel, n), make([][]urModel, n), make([]int, n)
	for step := 0; step < 100; step++ {
		u.wall.Advance(int64(rng.IntN(5)) - 1)
		i := rng.IntN(n)
		r := u.reps[i]
		switch k := rng.IntN(16); {
		case k < 5:
			group := ""
			if rng.IntN(groupEvery) == 0 {
				group = "g" + strconv.Itoa(rng.IntN(2))
			}
			u.edit(i, group)
			if group != "" && drag > 1 { // a drag
				for d := rng.IntN(drag); d > 0; d-- {
					u.edit(i, group)
				}
			}
		case k < 6: // a batch, maybe left open across a receive
			before, taken, steps := r.State(), u.taken[i], len(r.undo.undo)
			kitNoErr(t, r.StartBatch())
			edits, noUndo := 1+rng.IntN(4), 0
			for e := edits; e > 0; e-- {
				if rng.IntN(4) == 0 {
					u.deliver(i)
				}
				if rng.IntN(5) == 0 {
					if _, err := r.Undo(); !errors.Is(err, ErrBadState) {
						u.fatalf("u%d: undo in a batch: %v", i, err)
					}
				}
				if u.edit(i, "") {
					noUndo++
				}
			}
			kitNoErr(t, r.CommitBatch())
			if noUndo == edits { // no step (the oldest may have gone past the depth: <=)
				if len(r.undo.undo) > steps {
					u.fatalf("u%d: a batch of NoUndo edits made a step", i)
				}
				break
			}
			// Its first edit made a step (StartBatch closed the one before), the others joined
			// it — but for the NoUndo ones.
			if top := r.undo.undo[len(r.undo.undo)-1]; len(top.entries) != edits-noUndo {
				u.fatalf("u%d: a batch of %d edits, %d NoUndo, is a step of %d", i, edits, noUndo, len(top.entries))
			}
			m := &u.undo[i][len(u.undo[i])-1]
			m.before, m.dirty = before, u.taken[i] != taken || noUndo > 0
		case k < 8:
			u.revert(i, false)
		case k < 9:
			u.revert(i, true)
		case k < 10: // undo, then redo at once: the state before the undo again (3)
			if r.CanUndo() {
				u.revert(i, false)
				u.revert(i, true)
			}
		case k < 12:
			u.flush(i)
		default:
			for d := rng.IntN(4); d >= 0; d-- {
				u.deliver(i)
			}
		}
	}
	// (1), (6): every message sent, undo and redo included, is taken by every peer, and
	// all converge to the replay of them.
	for i := range u.reps {
		u.flush(i)
	}
	for busy := true; busy; {
		busy = false
		for i := range u.reps {
			for len(u.inbox[i]) > 0 {
				busy = true
				m := u.inbox[i][0]
				u.inbox[i] = u.inbox[i][1:]
				u.receive(i, m)
			}
		}
	}
	want := u.or.state()
	for i, r := range u.reps {
		if got := norm(t, r.State()); got != want {
			u.fatalf("u%d diverges from the replay\n got %s\nwant %s", i, got, want)
		}
	}
}

// TestUndoRandomized: replicas edit parent and child paths, upsert, delete, batch (some
// left open across a receive), group, undo and redo at random, and exchange messages in
// random order with duplicates. An undo or redo leaves a place whose newest write is a
// peer's as it is; with no peer's operation received since the step, it restores exactly
// the state before the step (an undo followed by its redo: the state before the undo) and
// skips nothing; CanUndo, CanRedo and the skipped places match the stacks; and every
// replica converges to the replay of every message sent.
func TestUndoRandomized(t *testing.T) {
	for _, seed := range undoFoundSeeds {
		runUndoRandom(t, seed, 0)
	}
	for seed := *urFirst; seed < *seeds/2; seed++ {
		runUndoRandom(t, seed, 0)
	}
}

// TestUndoRandomizedSmallHistory is TestUndoRandomized under a message limit of 1,500
// bytes, and so an undo history of as many bytes (undoBudget): a few steps of these
// values, the oldest dropped all the time (trim checks which, that a batch stays one step,
// and that a group does until it holds more than the budget). A redo after an undo whose step went, or of a step dropped, finds less
// to take back; what is left still undoes and redoes exactly, and never over a peer's
// later write. Groups come often here, in drags of up to 20 edits: a step of them past the
// budget takes no more (record), and the next starts a step.
func TestUndoRandomizedSmallHistory(t *testing.T) {
	for seed := *urFirst; seed < *seeds/4; seed++ {
		runUndoRandom(t, seed, 1500)
	}
}

// undoFoundSeeds are seeds past the default range that found a bug, run every time:
// 5477, a redo after an undo that wrote below a value that is not an object (geometry
// "s1", by an unset of geometry.c) left geometry {} (revert recorded "absent at
// geometry.c" where undoPlace restores geometry whole).
var undoFoundSeeds = []int{5477}
