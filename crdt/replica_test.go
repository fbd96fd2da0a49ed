package crdt

import (
	"maps"
	"math/rand/v2"
	"testing"
)

// TestOwnSeqsIsAMap: ownSeqs, whose current origin's seq lives outside its map, reads and
// writes as a plain map of origin → seq does, across changes of the current origin, over
// random calls (origins that share bytes, the empty one, a seq of 0 set on purpose).
func TestOwnSeqsIsAMap(t *testing.T) {
	origins := []string{"p", "p~a", "p~b", "q", ""}
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 7))
		model := map[string]uint64{}
		s := ownSeqs{origin: "p", others: map[string]uint64{}}
		if seed%2 == 1 { // as a snapshot restores it: no map entry yet for the origin to come
			s = ownSeqs{others: nil}
			s.setOrigin(origins[rng.IntN(len(origins))])
		}
		for step := range 60 {
			o := string([]byte(origins[rng.IntN(len(origins))])) // a copy: not the same bytes
			switch rng.IntN(4) {
			case 0:
				s.setOrigin(o)
			case 1:
				n := uint64(rng.IntN(3))
				s.set(o, n)
				model[o] = n
			default:
				if got := s.get(o); got != model[o] {
					t.Fatalf("seed %d step %d: get(%q) = %d, want %d", seed, step, o, got, model[o])
				}
			}
			if v := s.vector(); !maps.Equal(v, VersionVector(model)) {
				t.Fatalf("seed %d step %d: vector %v, want %v", seed, step, v, model)
			}
		}
	}
}
