package crdt

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// sortStable gives slices.SortStableFunc's result: every length around the run and merge
// boundaries, keys with many ties (the payload tells equal keys apart), sorted, reversed
// and random inputs.
func TestSortStableIsSortStableFunc(t *testing.T) {
	type kv struct{ k, v int }
	byKey := func(a, b kv) int { return a.k - b.k }
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n <= 300; n++ {
		for _, keys := range []int{1, 3, n/2 + 1, 1 << 30} {
			for shape := range 3 {
				in := make([]kv, n)
				for i := range in {
					switch shape {
					case 0:
						in[i] = kv{rng.IntN(keys), i}
					case 1:
						in[i] = kv{i % keys, i}
					case 2:
						in[i] = kv{(n - i) % keys, i}
					}
				}
				want := slices.Clone(in)
				slices.SortStableFunc(want, byKey)
				got := slices.Clone(in)
				sortStable(got, byKey)
				if !slices.Equal(got, want) {
					t.Fatalf("n=%d keys=%d shape=%d:\n got %v\nwant %v", n, keys, shape, got, want)
				}
			}
		}
	}
}
