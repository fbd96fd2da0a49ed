package crdt

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/mapcrdt/mapcrdt/hlc"
)

// TestInsertManyMatchesInsert: a merge of many operations leaves the log that inserting
// them one by one leaves, and returns exactly the operations that were new.
func TestInsertManyMatchesInsert(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	ts := func() hlc.Timestamp {
		return hlc.Timestamp{Wall: t0 + int64(rng.IntN(50)), Counter: uint32(rng.IntN(3)), Peer: []string{"a", "b", "c"}[rng.IntN(3)]}
	}
	for round := 0; round < 500; round++ {
		var one, many opLog
		for i, n := 0, rng.IntN(30); i < n; i++ {
			o := &op{ts: ts()}
			one.insert(o)
			many.insert(o)
		}
		batch := make([]*op, rng.IntN(40))
		for i := range batch {
			batch[i] = &op{ts: ts()}
			if i > 0 && rng.IntN(5) == 0 {
				batch[i] = batch[rng.IntN(i)] // a duplicate inside the batch
			}
		}
		var want []*op
		for _, o := range batch {
			if one.insert(o) {
				want = append(want, o)
			}
		}
		slices.SortFunc(want, func(a, b *op) int { return a.ts.Compare(b.ts) })
		got := many.insertMany(batch)
		slices.SortFunc(got, func(a, b *op) int { return a.ts.Compare(b.ts) })
		if !slices.Equal(got, want) {
			for i := range got {
				t.Logf("%v %p / %v %p", got[i].ts, got[i], want[i].ts, want[i])
			}
			t.Fatalf("round %d: insertMany returned %d operations, want %d", round, len(got), len(want))
		}
		if !slices.Equal(many.ops, one.ops) {
			t.Fatalf("round %d: the logs differ", round)
		}
	}
}

// TestVectorAddRunIsAddOfEach: recording a run of consecutive seqs at once leaves the
// vector, the seqs above it and the gap report that adding them one by one leaves, from
// random states (runs below, across, at and beyond the next seq expected).
func TestVectorAddRunIsAddOfEach(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for round := 0; round < 20000; round++ {
		one, run := newVectorState(), newVectorState()
		for i, n := 0, rng.IntN(12); i < n; i++ { // the same random past for both
			p, s := []string{"a", "b"}[rng.IntN(2)], uint64(1+rng.IntN(20))
			one.add(p, s)
			run.add(p, s)
		}
		first := uint64(1 + rng.IntN(24))
		last := first + uint64(rng.IntN(8))
		gapOne := false
		for s := first; s <= last; s++ {
			if one.add("a", s) {
				gapOne = true
			}
		}
		gapRun := run.addRun("a", first, last)
		if gapOne != gapRun || one.vector()["a"] != run.vector()["a"] || !slices.Equal(one.above["a"], run.above["a"]) || len(one.above) != len(run.above) {
			t.Fatalf("round %d, run %d…%d: one by one gap %v vv %d above %v; at once gap %v vv %d above %v",
				round, first, last, gapOne, one.vector()["a"], one.above["a"], gapRun, run.vector()["a"], run.above["a"])
		}
	}
}

// TestVectorStateIsTheModel: add, addRun and adopt against sets of held seqs per peer, over
// random streams that switch peers (peer ids given as equal texts in other memory too, as
// received ones are), with the vector read at random moments (vector() writes the hot
// peer's seq back) and restored by setVector.
func TestVectorStateIsTheModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	peers := []string{"alice", "bob", "carol"}
	for round := 0; round < 3000; round++ {
		v := newVectorState()
		held := map[string]map[uint64]bool{}
		contiguous := func(p string) uint64 {
			n := uint64(0)
			for held[p][n+1] {
				n++
			}
			return n
		}
		hold := func(p string, s uint64) {
			if held[p] == nil {
				held[p] = map[uint64]bool{}
			}
			held[p][s] = true
		}
		for step := 0; step < 60; step++ {
			p := peers[rng.IntN(len(peers))]
			if rng.IntN(2) == 0 {
				p = string([]byte(p)) // the same id in other memory
			}
			have := contiguous(p)
			switch k := rng.IntN(20); {
			case k < 14: // mostly the next seq, sometimes a gap or an old one
				s := have + 1
				if k >= 11 {
					s = uint64(1 + rng.IntN(int(have)+4))
				}
				if got, want := v.add(p, s), s > have+1; got != want {
					t.Fatalf("round %d step %d: add(%s, %d) gap %v, want %v", round, step, p, s, got, want)
				}
				hold(p, s)
			case k < 16:
				first := uint64(1 + rng.IntN(int(have)+3))
				last := first + uint64(rng.IntN(5))
				if got, want := v.addRun(p, first, last), first > have+1; got != want {
					t.Fatalf("round %d step %d: addRun(%s, %d, %d) gap %v, want %v", round, step, p, first, last, got, want)
				}
				for s := first; s <= last; s++ {
					hold(p, s)
				}
			case k < 17:
				up := have + uint64(rng.IntN(4))
				v.adopt(VersionVector{p: up})
				for s := uint64(1); s <= up; s++ {
					hold(p, s)
				}
			case k < 18: // a vector set from outside (a snapshot's), p raised if nothing is above it
				vv := VersionVector{}
				for _, q := range peers {
					if c := contiguous(q); c > 0 {
						vv[q] = c
					}
				}
				if len(v.above[p]) == 0 {
					vv[p] = have + 2
					hold(p, have+1)
					hold(p, have+2)
				}
				v.setVector(vv)
			default:
				_ = v.vector()
			}
			if rng.IntN(3) > 0 {
				continue
			}
			vv := v.vector()
			for _, q := range peers {
				if vv[q] != contiguous(q) {
					t.Fatalf("round %d step %d: vector[%s] = %d, want %d", round, step, q, vv[q], contiguous(q))
				}
				var above []uint64
				for s := range held[q] {
					if s > vv[q] {
						above = append(above, s)
					}
				}
				slices.Sort(above)
				if !slices.Equal(v.above[q], above) {
					t.Fatalf("round %d step %d: above[%s] = %v, want %v", round, step, q, v.above[q], above)
				}
			}
		}
	}
}

// TestLogFindIsALinearScan: find's binary search against a scan of the log, on logs of
// clocks that share walls, counters and peers, for clocks held and not.
func TestLogFindIsALinearScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	peers := []string{"a", "b", "bb", "c"}
	stamp := func() hlc.Timestamp {
		return hlc.Timestamp{Wall: int64(rng.IntN(4)), Counter: uint32(rng.IntN(3)), Peer: peers[rng.IntN(len(peers))]}
	}
	for round := 0; round < 2000; round++ {
		var l opLog
		for n := rng.IntN(30); n > 0; n-- {
			l.insert(&op{ts: stamp()})
		}
		if !slices.IsSortedFunc(l.ops, func(a, b *op) int { return a.ts.Compare(b.ts) }) {
			t.Fatalf("round %d: the log is not in clock order", round)
		}
		for k := 0; k < 20; k++ {
			ts := stamp()
			want := len(l.ops)
			for i, o := range l.ops {
				if !o.ts.Less(ts) {
					want = i
					break
				}
			}
			held := want < len(l.ops) && l.ops[want].ts == ts
			if i, ok := l.find(ts); i != want || ok != held {
				t.Fatalf("round %d: find(%v) = %d, %v; want %d, %v", round, ts, i, ok, want, held)
			}
		}
	}
}
