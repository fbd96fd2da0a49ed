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
		if gapOne != gapRun || one.vv["a"] != run.vv["a"] || !slices.Equal(one.above["a"], run.above["a"]) || len(one.above) != len(run.above) {
			t.Fatalf("round %d, run %d…%d: one by one gap %v vv %d above %v; at once gap %v vv %d above %v",
				round, first, last, gapOne, one.vv["a"], one.above["a"], gapRun, run.vv["a"], run.above["a"])
		}
	}
}
