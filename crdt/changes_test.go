package crdt

import (
	"math"
	"strconv"
	"testing"
	"time"
)

// TestTrackerSurvivesItsCounterWrapping: a catch-up chains each object's watched places
// through a field of the object, valid for one call number (tracker.gen). When the number
// wraps, an object may hold an earlier call's number equal to the new call's, with a spot
// index that means nothing: every object holds one (pointing forwards and backwards), the
// counter wraps, and the changes of two catch-ups must still come, one per place, render
// the state, and not loop.
func TestTrackerSurvivesItsCounterWrapping(t *testing.T) {
	alice, _ := newScenarioReplica(t, "alice", 10)
	bob, _ := newScenarioReplica(t, "bob", 20)
	edit := func(round int) {
		for f := 0; f < 12; f++ {
			meta := `{"id":"f` + strconv.Itoa(f) + `","layerId":"L"}`
			for _, k := range []string{"properties.name", "properties.color", "geometry"} {
				v := `"` + k + "-" + strconv.Itoa(round) + `"`
				if _, err := alice.Update("feature", meta, k, v); err != nil {
					t.Fatal(err)
				}
			}
		}
		alice.Flush()
	}
	view := newView(t)
	for round := 0; round < 2; round++ {
		edit(round)
		n := int32(0)
		bob.objects.each(func(o *object) {
			n++
			o.trkGen, o.lastSpt = 0, 40-3*n // what a call numbered 0 could have left
		})
		bob.trkGen = math.MaxUint32 // the next call wraps to 0
		res := recv(t, alice, bob.SyncRequest("alice"))
		done := make(chan Result, 1)
		var err error
		go func() {
			var r Result
			r, err = bob.Receive(res.Replies[0])
			done <- r
		}()
		var changes []Change
		select {
		case r := <-done:
			if err != nil {
				t.Fatal(err)
			}
			changes = r.Changes
		case <-time.After(20 * time.Second):
			t.Fatalf("round %d: the catch-up does not end", round)
		}
		seen := map[string]bool{}
		for _, c := range changes { // coalesced: one change per place
			if k := c.Metadata + " " + c.Key; seen[k] {
				t.Fatalf("round %d: %s %s changed twice in one call", round, c.Metadata, c.Key)
			} else {
				seen[k] = true
			}
		}
		if len(changes) != 36 {
			t.Fatalf("round %d: %d changes, want 36 (12 features × 3 keys)", round, len(changes))
		}
		view.apply(changes)
		if got, want := view.state(), norm(t, bob.State()); got != want {
			t.Fatalf("round %d: the changes do not render the state\nview  %s\nstate %s", round, got, want)
		}
		if bob.State() != alice.State() {
			t.Fatalf("round %d: bob did not catch up", round)
		}
	}
}
