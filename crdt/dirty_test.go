package crdt

// Save tracking (issue 4, DESIGN §6 "saved horizon"): Dirty, MarkSaved, SavedMessage.

import (
	"errors"
	"slices"
	"testing"

	"github.com/mapcrdt/mapcrdt/hlc"
	"github.com/tidwall/gjson"
)

// kitDirty renders Dirty() as "subject id" lines.
func kitDirty(r *Replica) []string {
	out := []string{}
	for _, d := range r.Dirty() {
		s := d.Subject
		if id := gjson.Get(d.Metadata, "id"); id.Exists() {
			s += " " + id.String()
		}
		out = append(out, s)
	}
	return out
}

func kitWantDirty(t testing.TB, r *Replica, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if got := kitDirty(r); !slices.Equal(got, want) {
		t.Errorf("%s: Dirty() = %q, want %q", r.PeerID(), got, want)
	}
}

// TestDirtySavedMessageFromAnotherPeer mirrors uMap: bob edits, alice receives and saves the
// map; bob, receiving alice's SavedMessage, is no longer dirty for what alice saved, and
// stays dirty for what he did after.
func TestDirtySavedMessageFromAnotherPeer(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	alice := kitReplica(t, "alice", wall)
	bob := kitReplica(t, "bob", wall)
	kitSet(t, bob, kitF1, "properties.name", `"bob"`)
	kitOK(t)(bob.Upsert("datalayer", kitL2, `{"name":"two"}`))
	kitDeliver(t, bob.Flush(), alice)
	kitWantDirty(t, bob, "datalayer L2", "feature f1")
	kitWantDirty(t, alice) // remote operations are not alice's to save

	wall.Advance(10)
	kitSet(t, alice, kitF2, "properties.name", `"alice"`)
	kitWantDirty(t, alice, "feature f2")
	wall.Advance(10)
	saved := alice.SavedMessage()
	if gjson.GetBytes(saved, "kind").String() != "SavedMessage" || gjson.GetBytes(saved, "sender").String() != "alice" {
		t.Fatalf("SavedMessage() = %s", saved)
	}
	lk, err := hlc.Parse(gjson.GetBytes(saved, "lastKnownHLC").String())
	if err != nil {
		t.Fatalf("SavedMessage lastKnownHLC: %v in %s", err, saved)
	}
	if lk.Less(alice.Clock()) {
		t.Errorf("SavedMessage lastKnownHLC %s is older than alice's clock %s", lk, alice.Clock())
	}
	kitWantDirty(t, alice) // the saver is clean, its unsent edit included
	// Bob edits again after alice saved, before her message arrives.
	wall.Advance(10)
	kitSet(t, bob, kitF3, "properties.name", `"after the save"`)
	if res := kitRecv(t, bob, saved); len(res.Changes) != 0 || len(res.Replies) != 0 {
		t.Errorf("SavedMessage gave %+v", res)
	}
	kitWantDirty(t, bob, "feature f3")
	// A SavedMessage older than the horizon does not make anything dirty again.
	old := []byte(`{"kind":"SavedMessage","sender":"x","lastKnownHLC":"` + hlc.Timestamp{Wall: kitT0, Peer: "x"}.String() + `"}`)
	kitRecv(t, bob, old)
	kitWantDirty(t, bob, "feature f3")
	// Bad SavedMessages are refused.
	for _, bad := range []string{`{"kind":"SavedMessage"}`, `{"kind":"SavedMessage","lastKnownHLC":5}`, `{"kind":"SavedMessage","lastKnownHLC":"nope"}`} {
		if _, err := bob.Receive([]byte(bad)); Code(err) != "bad_hlc" {
			t.Errorf("%s: %v, want bad_hlc", bad, err)
		}
	}
	kitWantDirty(t, bob, "feature f3")
}

// TestDirtyParentsFirst: a datalayer comes out of Dirty() before its features, whatever
// the order of the edits; the map and permissions (no parent) come first too.
func TestDirtyParentsFirst(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	r := kitReplica(t, "alice", wall)
	step := func() { wall.Advance(5) }
	kitSet(t, r, kitF1, "properties.name", `"x"`)
	step()
	kitSet(t, r, kitF3, "properties.name", `"y"`)
	step()
	kitOK(t)(r.Upsert("datalayer", kitL2, `{"name":"two"}`))
	step()
	kitSet(t, r, kitF1, "geometry", `{"type":"Point","coordinates":[1,2]}`) // f1 again: listed once
	step()
	kitOK(t)(r.Upsert("datalayer", kitL1, `{"name":"one"}`))
	step()
	kitOK(t)(r.Update("map", `{}`, "properties.name", `"My map"`))
	step()
	kitOK(t)(r.Delete("feature", kitF2)) // a deletion must be saved too
	got := kitDirty(r)
	if len(got) != 6 {
		t.Fatalf("Dirty() = %q, want 6 objects", got)
	}
	pos := func(s string) int { return slices.Index(got, s) }
	for _, c := range [][2]string{{"datalayer L1", "feature f1"}, {"datalayer L1", "feature f2"}, {"datalayer L2", "feature f3"}, {"map", "feature f1"}} {
		if pos(c[0]) < 0 || pos(c[1]) < 0 || pos(c[0]) > pos(c[1]) {
			t.Errorf("Dirty() = %q: %s must come before %s", got, c[0], c[1])
		}
	}
	// Metadata is the object's, ready for the save request.
	for _, d := range r.Dirty() {
		if d.Subject == "feature" && gjson.Get(d.Metadata, "layerId").String() == "" {
			t.Errorf("dirty feature without its layerId: %+v", d)
		}
	}
	// Inside a batch too.
	r2 := kitReplica(t, "bob", wall)
	kitNoErr(t, r2.StartBatch())
	kitSet(t, r2, kitF1, "properties.name", `"x"`)
	kitOK(t)(r2.Upsert("datalayer", kitL1, `{"name":"one"}`))
	kitNoErr(t, r2.CommitBatch())
	kitWantDirty(t, r2, "datalayer L1", "feature f1")
}

// TestDirtyMarkSaved: MarkSaved(ts) cleans every local operation up to ts, inclusive, and
// nothing after; undo operations are dirty like any other edit.
func TestDirtyMarkSaved(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	r := kitReplica(t, "alice", wall)
	kitSet(t, r, kitF1, "properties.name", `"a"`)
	first := r.Clock()
	wall.Advance(10)
	kitSet(t, r, kitF2, "properties.name", `"b"`)
	kitWantDirty(t, r, "feature f1", "feature f2")
	kitNoErr(t, r.MarkSaved(first))
	kitWantDirty(t, r, "feature f2")
	kitNoErr(t, r.MarkSaved(hlc.Timestamp{Wall: kitT0 - 1000, Peer: "alice"})) // older: no effect
	kitWantDirty(t, r, "feature f2")
	// A horizon further ahead than MaxDrift (60 s) would hide the edits of the next minute:
	// refused, nothing marked.
	err := r.MarkSaved(hlc.Timestamp{Wall: kitT0 + 10 + 61_000, Peer: "server"})
	if !errors.Is(err, ErrClockDrift) {
		t.Fatalf("MarkSaved 61 s ahead: %v, want %s", err, ErrClockDrift)
	}
	kitWantDirty(t, r, "feature f2")
	kitNoErr(t, r.MarkSaved(r.Clock()))
	kitWantDirty(t, r)
	// Flushing does not save anything.
	wall.Advance(10)
	kitSet(t, r, kitF3, "properties.name", `"c"`)
	r.Flush()
	kitWantDirty(t, r, "feature f3")
	kitNoErr(t, r.MarkSaved(r.Clock()))
	// An undo is an edit to save.
	wall.Advance(10)
	kitUndo(t, r)
	kitWantDirty(t, r, "feature f3")
	// A saved horizon from another peer's clock (same wall, another peer id) is compared as a clock.
	wall.Advance(10)
	kitSet(t, r, kitF1, "properties.name", `"d"`)
	ts := r.Clock()
	kitNoErr(t, r.MarkSaved(hlc.Timestamp{Wall: ts.Wall, Counter: ts.Counter, Peer: "zzz"})) // after ts: peer ids break ties
	kitWantDirty(t, r)
}

// TestDirtySaveRacingAnEditInFlight: bob's edit is sent but has not reached alice when she
// saves; her SavedMessage (clock after bob's edit) must not mark it saved — she never had it.
// A SavedMessage without a vector (uMap's plain Journal) still marks everything up to its
// clock, as uMap does.
func TestDirtySaveRacingAnEditInFlight(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	alice := kitReplica(t, "alice", wall)
	bob := kitReplica(t, "bob", wall)
	kitSet(t, bob, kitF1, "properties.name", `"seen"`)
	kitDeliver(t, bob.Flush(), alice)
	wall.Advance(5)
	kitSet(t, bob, kitF2, "properties.name", `"in flight"`)
	inFlight := bob.Flush() // not delivered yet
	wall.Advance(5)
	kitSet(t, alice, kitF1, "properties.color", `"blue"`) // her clock passes bob's edit
	saved := alice.SavedMessage()
	if lk := kitMsgField(t, saved, "lastKnownHLC"); !kitMsgHLC(t, inFlight[0]).Less(hlc.MustParse(lk)) {
		t.Fatalf("the save's clock %s should come after the edit in flight", lk)
	}
	kitRecv(t, bob, saved)
	kitWantDirty(t, bob, "feature f2")
	kitDeliver(t, inFlight, alice)
	wall.Advance(5)
	kitRecv(t, bob, alice.SavedMessage())
	kitWantDirty(t, bob)

	// The same race with uMap's plain SavedMessage: its clock decides.
	carol := kitReplica(t, "carol", wall)
	kitSet(t, carol, kitF1, "properties.color", `"red"`)
	carol.Flush()
	wall.Advance(5)
	plain := []byte(`{"kind":"SavedMessage","sender":"umap","lastKnownHLC":"` + hlc.Timestamp{Wall: wall.NowMillis(), Peer: "umap"}.String() + `"}`)
	kitRecv(t, carol, plain)
	kitWantDirty(t, carol)

	// The saved vector survives a snapshot.
	kitSet(t, bob, kitF2, "properties.name", `"later"`)
	restored := kitRestore(t, kitSnapshot(t, bob), wall)
	kitWantDirty(t, restored, "feature f2")
}

func kitMsgField(t testing.TB, msg []byte, name string) string {
	t.Helper()
	v := gjson.GetBytes(msg, name)
	if !v.Exists() {
		t.Fatalf("no %s in %s", name, msg)
	}
	return v.String()
}

// TestDirtyDoesNotDependOnCompaction: alice's unsaved edit that bob's newer one superseded
// is bob's to save, not hers; Dirty says so before Compact drops her operation as after.
// (Before, f1 was listed until a compaction, then not.)
func TestDirtyDoesNotDependOnCompaction(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	alice, bob := kitReplica(t, "alice", wall), kitReplica(t, "bob", wall)
	kitSet(t, alice, kitF1, "properties.name", `"alice"`)
	kitSet(t, alice, kitF2, "properties.name", `"alice too"`)
	kitDeliver(t, alice.Flush(), bob)
	wall.Advance(10)
	kitSet(t, bob, kitF1, "properties.name", `"bob"`)
	kitDeliver(t, bob.Flush(), alice)
	kitWantDirty(t, alice, "feature f2")
	alice.Compact()
	kitWantDirty(t, alice, "feature f2")
	kitWantDirty(t, bob, "feature f1")
}

// TestDirtySavedMessageAheadLeavesLaterEditsDirty: README "Guarantees and limits": a
// SavedMessage marks nothing saved past what the replica made, and moves its clock past
// the save, so later edits stay dirty — a save stamped ahead of this replica's wall clock
// (within MaxDrift), in uMap's plain form or with a vector claiming more of this replica's
// seqs than it made.
func TestDirtySavedMessageAheadLeavesLaterEditsDirty(t *testing.T) {
	ahead := hlc.Timestamp{Wall: kitT0 + 30_000, Peer: "server"}.String()
	for name, msg := range map[string]string{
		"plain":       `{"kind":"SavedMessage","sender":"umap","lastKnownHLC":"` + ahead + `"}`,
		"with vector": `{"kind":"SavedMessage","sender":"bob","lastKnownHLC":"` + ahead + `","vector":{"alice":50}}`,
	} {
		t.Run(name, func(t *testing.T) {
			wall := hlc.NewManualClock(kitT0)
			r := kitReplica(t, "alice", wall)
			kitSet(t, r, kitF1, "properties.name", `"before"`)
			r.Flush()
			kitRecv(t, r, []byte(msg))
			kitWantDirty(t, r)
			wall.Advance(10) // the wall clock is still 30 s behind the save
			kitSet(t, r, kitF2, "properties.name", `"after"`)
			kitWantDirty(t, r, "feature f2")
			r.Flush()
			kitWantDirty(t, r, "feature f2")
		})
	}
}
