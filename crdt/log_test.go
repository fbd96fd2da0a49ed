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
