package crdt

import (
	"flag"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/mapcrdt/mapcrdt/hlc"
)

var seeds = flag.Int("seeds", 2000, "seeds for the randomized tests")

// objects and paths the random edits choose from: parent/child pairs on purpose.
var (
	randObjects = []struct{ sub, meta string }{
		{"map", `{}`},
		{"datalayer", `{"id":"L1"}`},
		{"datalayer", `{"id":"L2"}`},
		{"feature", `{"id":"f1","layerId":"L1","featureType":"marker"}`},
		{"feature", `{"id":"f2","layerId":"L1","featureType":"polygon"}`},
		{"feature", `{"id":"f1","layerId":"L2"}`},
	}
	randPaths = []string{"geometry", "properties", "properties.name", "properties.color",
		"properties._umap_options", "properties._umap_options.color", "name", `a\.b`, "geometry.type"}
)

func randValue(rng *rand.Rand) string {
	switch rng.IntN(8) {
	case 0:
		return strconv.Itoa(rng.IntN(100))
	case 1:
		return `"s` + strconv.Itoa(rng.IntN(10)) + `"`
	case 2:
		return `null`
	case 3:
		return `{"name":"n` + strconv.Itoa(rng.IntN(5)) + `","color":"red"}`
	case 4:
		return `{"type":"Point","coordinates":[` + strconv.Itoa(rng.IntN(90)) + `.5,2]}`
	case 5:
		return `{"_umap_options":{"color":"c` + strconv.Itoa(rng.IntN(3)) + `"},"x":[1,{"y":2}]}`
	case 6:
		return `[1,2,3]`
	}
	return `true`
}

func randObjectValue(rng *rand.Rand) string {
	return `{"type":"Feature","geometry":` + randValue(rng) + `,"properties":{"name":"p` + strconv.Itoa(rng.IntN(9)) + `","n":` + strconv.Itoa(rng.IntN(9)) + `}}`
}

// randomEdit makes one random local edit (maybe a batch) on r and returns its changes.
func randomEdit(t *testing.T, rng *rand.Rand, r *Replica) (changes []Change) {
	one := func() {
		o := randObjects[rng.IntN(len(randObjects))]
		var err error
		var ch []Change
		switch k := rng.IntN(10); {
		case k < 5:
			ch, err = r.Update(o.sub, o.meta, randPaths[rng.IntN(len(randPaths))], randValue(rng))
		case k < 7:
			ch, err = r.Unset(o.sub, o.meta, randPaths[rng.IntN(len(randPaths))])
		case k < 9:
			ch, err = r.Upsert(o.sub, o.meta, randObjectValue(rng))
		default:
			ch, err = r.Delete(o.sub, o.meta)
		}
		changes = append(changes, ch...)
		if err != nil {
			t.Fatal(err)
		}
	}
	if rng.IntN(6) == 0 {
		if err := r.StartBatch(); err != nil {
			t.Fatal(err)
		}
		for n := 1 + rng.IntN(4); n > 0; n-- {
			one()
		}
		if err := r.CommitBatch(); err != nil {
			t.Fatal(err)
		}
		return changes
	}
	one()
	return changes
}

func newTestReplica(t testing.TB, peer string, wall hlc.WallClock) *Replica {
	t.Helper()
	r, err := NewReplica(Options{PeerID: peer, Wall: wall})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestConvergenceAgainstReplay: replicas edit at random, every message reaches every
// replica in a random order with duplicates, and every dump equals the naive replay.
func TestConvergenceAgainstReplay(t *testing.T) {
	for seed := 0; seed < *seeds; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		wall := hlc.NewManualClock(1_700_000_000_000)
		n := 2 + rng.IntN(3)
		reps := make([]*Replica, n)
		or := newOracle(t)
		base := randObjects[3]
		baseValue := `{"type":"Feature","properties":{"name":"saved","color":"blue"},"geometry":{"type":"Point","coordinates":[0,0]}}`
		or.seed(base.sub, base.meta, baseValue)
		views := make([]*view, n)
		for i := range reps {
			reps[i] = newTestReplica(t, "p"+strconv.Itoa(i), wall)
			views[i] = newView(t)
			ch, err := reps[i].Seed(base.sub, base.meta, baseValue)
			if err != nil {
				t.Fatal(err)
			}
			views[i].apply(ch)
		}
		var sent [][]byte
		inbox := make([][][]byte, n)
		for step := 0; step < 40; step++ {
			wall.Advance(int64(rng.IntN(3)) - 1) // same millisecond, forwards, backwards
			i := rng.IntN(n)
			switch rng.IntN(4) {
			case 0, 1:
				views[i].apply(randomEdit(t, rng, reps[i]))
			case 2:
				for _, m := range reps[i].Flush() {
					sent = append(sent, m)
					or.add(m)
					for j := range reps {
						if j != i {
							inbox[j] = append(inbox[j], m)
						}
					}
				}
			case 3: // deliver a few pending messages, maybe twice
				for k := rng.IntN(3); k > 0 && len(inbox[i]) > 0; k-- {
					x := rng.IntN(len(inbox[i]))
					res, err := reps[i].Receive(inbox[i][x])
					if err != nil {
						t.Fatalf("seed %d: receive: %v", seed, err)
					}
					views[i].apply(res.Changes)
					if rng.IntN(3) > 0 {
						inbox[i] = append(inbox[i][:x], inbox[i][x+1:]...)
					}
				}
			}
		}
		for i, r := range reps {
			for _, m := range r.Flush() {
				sent = append(sent, m)
				or.add(m)
				for j := range reps {
					if j != i {
						inbox[j] = append(inbox[j], m)
					}
				}
			}
		}
		want := or.state()
		for i, r := range reps {
			msgs := append(inbox[i], sent[:rng.IntN(len(sent)+1)]...) // duplicates, own echoes
			rng.Shuffle(len(msgs), func(a, b int) { msgs[a], msgs[b] = msgs[b], msgs[a] })
			for k, m := range msgs {
				if k%5 == 4 { // several at once, as a sync response would
					var ops []*op
					for _, mm := range msgs[k-4 : k+1] {
						ms, err := parseObject(string(mm), 64)
						if err != nil {
							t.Fatal(err)
						}
						o, err := r.dec.decodeOp(ms, true)
						if err != nil {
							t.Fatal(err)
						}
						ops = append(ops, o)
					}
					ch, _, err := r.ingest(ops)
					if err != nil {
						t.Fatal(err)
					}
					views[i].apply(ch)
					continue
				}
				if k%5 != 0 && k+5-k%5 <= len(msgs) {
					continue // part of a group above
				}
				res, err := r.Receive(m)
				if err != nil {
					t.Fatalf("seed %d: receive: %v", seed, err)
				}
				views[i].apply(res.Changes)
			}
			if got := views[i].state(); got != norm(t, r.State()) {
				t.Fatalf("seed %d: replica %d: the changes it returned do not render its state\nview  %s\nstate %s", seed, i, got, norm(t, r.State()))
			}
			if got := norm(t, r.State()); got != want {
				t.Fatalf("seed %d: replica %d diverges from the replay\n got %s\nwant %s", seed, i, got, want)
			}
		}
		for i := 1; i < n; i++ {
			if reps[i].State() != reps[0].State() {
				t.Fatalf("seed %d: replicas 0 and %d differ as text", seed, i)
			}
		}
	}
}
