package crdt

// Edits kept out of the undo history (Edit.NoUndo; doc.go, "Undo"): uMap's
// update(…, {undo: false}), which it makes for a datalayer's _referenceVersion after a save.

import (
	"testing"

	"github.com/mapcrdt/mapcrdt/hlc"
	"github.com/tidwall/gjson"
)

// kitNoUndo makes a NoUndo update (value "" unsets) of the feature or datalayer meta.
func kitNoUndo(t testing.TB, r *Replica, meta, key, value string) {
	t.Helper()
	sub := "feature"
	if meta == kitL1 {
		sub = "datalayer"
	}
	if _, err := r.Apply(Edit{Verb: VerbUpdate, Subject: sub, Metadata: meta, Key: key, Value: value, NoUndo: true}); err != nil {
		t.Fatalf("%s: NoUndo update of %s: %v", r.PeerID(), key, err)
	}
}

func kitSteps(t testing.TB, r *Replica, undo, redo int) {
	t.Helper()
	if len(r.undo.undo) != undo || len(r.undo.redo) != redo {
		t.Fatalf("%s: %d undo and %d redo steps, want %d and %d", r.PeerID(), len(r.undo.undo), len(r.undo.redo), undo, redo)
	}
}

// The uMap case: a save's _referenceVersion is no step; the user's undo reverts the user's
// edit, not the version, and a redo waiting stays.
func TestNoUndoEditMakesNoStep(t *testing.T) {
	alice, bob, _, walls := kitTrio(t)
	kitSet(t, alice, kitL1, "properties.name", `"roads"`)
	kitTick(walls, 10)
	kitNoUndo(t, alice, kitL1, "_referenceVersion", `"v1"`)
	kitSteps(t, alice, 1, 0)
	msgs := alice.Flush()
	if len(msgs) != 2 || gjson.GetBytes(msgs[1], "key").String() != "_referenceVersion" {
		t.Fatalf("alice sends %q, want the two updates", msgs)
	}
	kitDeliver(t, msgs, bob)
	kitWant(t, bob, "datalayer", kitL1, "_referenceVersion", `"v1"`)
	kitTick(walls, 10)
	if res := kitUndo(t, alice); len(res.Skipped) != 0 || len(res.Changes) != 1 || res.Changes[0].Key != "properties.name" {
		t.Fatalf("undo = %+v, want the name reverted alone", res)
	}
	kitWant(t, alice, "datalayer", kitL1, "properties.name", "")
	kitWant(t, alice, "datalayer", kitL1, "_referenceVersion", `"v1"`)
	if alice.CanUndo() {
		t.Error("CanUndo after undoing the one step")
	}
	// Another save while a redo waits: the redo stays, and redoes the name.
	kitTick(walls, 10)
	kitNoUndo(t, alice, kitL1, "_referenceVersion", `"v2"`)
	kitSteps(t, alice, 0, 1)
	kitTick(walls, 10)
	if res := kitRedo(t, alice); len(res.Skipped) != 0 {
		t.Errorf("redo skipped %+v", res.Skipped)
	}
	kitWant(t, alice, "datalayer", kitL1, "properties.name", `"roads"`)
	kitWant(t, alice, "datalayer", kitL1, "_referenceVersion", `"v2"`)
	kitDeliver(t, alice.Flush(), bob)
	kitSameState(t, alice, bob)
}

// An older step's undo or redo leaves a place a NoUndo edit wrote since as written, and
// reports it skipped, as for a peer's write — at the place, below it and above it, after
// a later own edit overwrote it and was undone (its undo put it back), and in a replica
// restored from a snapshot.
func TestNoUndoEditIsLeftByAnOlderStepsUndo(t *testing.T) {
	for _, tc := range []struct {
		name, key, value, want string // the NoUndo write, and what name holds after the undo
		later                  bool   // an own undoable edit over it, undone first
	}{
		{"same path", "properties.name", `"sys"`, `"sys"`, false},
		{"unset", "properties.name", "", "", false},
		{"below", "properties.name.x", `1`, `{"x":1}`, false},
		{"above", "properties", `{"name":"sys"}`, `"sys"`, false},
		{"put back by a later undo", "properties.name", `"sys"`, `"sys"`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			alice, bob, _, walls := kitTrio(t)
			kitSet(t, alice, kitF1, "properties.name", `"a1"`)
			kitTick(walls, 10)
			kitNoUndo(t, alice, kitF1, tc.key, tc.value)
			kitSteps(t, alice, 1, 0)
			if tc.later {
				kitTick(walls, 10)
				kitSet(t, alice, kitF1, "properties.name", `"a2"`)
				kitTick(walls, 10)
				if res := kitUndo(t, alice); len(res.Skipped) != 0 {
					t.Fatalf("the later edit's undo skipped %+v", res.Skipped)
				}
				kitWant(t, alice, "feature", kitF1, "properties.name", `"sys"`)
				kitSteps(t, alice, 1, 1)
			}
			kitDeliver(t, alice.Flush(), bob)
			re := kitRestore(t, kitSnapshot(t, alice), walls[0])
			for _, r := range []*Replica{alice, re} {
				state, pending := r.State(), r.Pending()
				kitTick(walls, 10)
				res := kitUndo(t, r)
				if !res.Done || len(res.Skipped) != 1 || res.Skipped[0].Key != "properties.name" || len(res.Changes) != 0 {
					t.Errorf("%s: undo = %+v, want properties.name skipped, no change", r.PeerID(), res)
				}
				kitWant(t, r, "feature", kitF1, "properties.name", tc.want)
				if r.State() != state || r.Pending() != pending {
					t.Errorf("%s: an undo skipping its one place changed the state or queued %d operations", r.PeerID(), r.Pending()-pending)
				}
			}
		})
	}
}

// A redo is an older step too: a place a NoUndo edit wrote after the undo is left.
func TestNoUndoEditIsLeftByARedo(t *testing.T) {
	alice, _, _, walls := kitTrio(t)
	kitSet(t, alice, kitF1, "properties.name", `"a1"`)
	kitTick(walls, 10)
	kitUndo(t, alice)
	kitTick(walls, 10)
	kitNoUndo(t, alice, kitF1, "properties.name", `"sys"`)
	kitSteps(t, alice, 0, 1)
	kitTick(walls, 10)
	if res := kitRedo(t, alice); len(res.Skipped) != 1 || res.Skipped[0].Key != "properties.name" {
		t.Errorf("redo skipped %+v, want properties.name", res.Skipped)
	}
	kitWant(t, alice, "feature", kitF1, "properties.name", `"sys"`)
}

// A step that wrote the whole object (its creation) is skipped whole once a NoUndo edit
// wrote any of it since, as for a peer's write.
func TestNoUndoEditSkipsAWholeObjectStep(t *testing.T) {
	alice, _, _, walls := kitTrio(t)
	if _, err := alice.Upsert("datalayer", kitL1, `{"name":"roads"}`); err != nil {
		t.Fatal(err)
	}
	kitTick(walls, 10)
	kitNoUndo(t, alice, kitL1, "_referenceVersion", `"v1"`)
	kitTick(walls, 10)
	if res := kitUndo(t, alice); len(res.Skipped) != 1 || res.Skipped[0].Key != "" {
		t.Errorf("undo skipped %+v, want the whole datalayer", res.Skipped)
	}
	kitWant(t, alice, "datalayer", kitL1, "name", `"roads"`)
}

// In a batch, a NoUndo edit joins the batch's message, not its undo step; the batch's undo
// leaves a place it wrote after the batch's own edit of it, and restores its value where the
// batch's edit overwrote it. A batch of NoUndo edits alone makes no step.
func TestNoUndoEditInABatch(t *testing.T) {
	for _, tc := range []struct {
		name    string
		edits   []Edit
		entries int    // of the batch's step; 0: no step
		skipped string // the place the undo skips, "-" for none
		want    string // name after the undo
	}{
		{"another path", []Edit{
			{Verb: VerbUpdate, Key: "properties.name", Value: `"b1"`},
			{Verb: VerbUpdate, Key: "properties._ref", Value: `"v"`, NoUndo: true},
		}, 1, "-", `"a0"`},
		{"the same path after", []Edit{
			{Verb: VerbUpdate, Key: "properties.name", Value: `"b1"`},
			{Verb: VerbUpdate, Key: "properties.name", Value: `"sys"`, NoUndo: true},
		}, 1, "properties.name", `"sys"`},
		{"the same path before", []Edit{
			{Verb: VerbUpdate, Key: "properties.name", Value: `"sys"`, NoUndo: true},
			{Verb: VerbUpdate, Key: "properties.name", Value: `"b1"`},
		}, 1, "-", `"sys"`},
		{"alone", []Edit{
			{Verb: VerbUpdate, Key: "properties.name", Value: `"sys"`, NoUndo: true},
			{Verb: VerbUpdate, Key: "properties._ref", Value: `"v"`, NoUndo: true},
		}, 0, "-", `"a0"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			alice, bob, _, walls := kitTrio(t)
			kitSet(t, alice, kitF1, "properties.name", `"a0"`)
			kitDeliver(t, alice.Flush(), bob)
			kitTick(walls, 10)
			kitNoErr(t, alice.StartBatch())
			for _, e := range tc.edits {
				e.Subject, e.Metadata = "feature", kitF1
				if _, err := alice.Apply(e); err != nil {
					t.Fatal(err)
				}
			}
			kitNoErr(t, alice.CommitBatch())
			msgs := alice.Flush()
			if len(msgs) != 1 || len(gjson.GetBytes(msgs[0], "operations").Array()) != len(tc.edits) {
				t.Fatalf("alice sends %q, want the batch of %d", msgs, len(tc.edits))
			}
			kitDeliver(t, msgs, bob)
			if tc.entries == 0 {
				kitSteps(t, alice, 1, 0) // a0's step alone
				if n := len(alice.undo.undo[0].entries); n != 1 {
					t.Fatalf("a0's step took the batch: %d entries", n)
				}
				return
			}
			kitSteps(t, alice, 2, 0)
			if n := len(alice.undo.undo[1].entries); n != tc.entries {
				t.Fatalf("the batch's step holds %d entries, want %d", n, tc.entries)
			}
			kitTick(walls, 10)
			res := kitUndo(t, alice)
			switch {
			case tc.skipped == "-" && len(res.Skipped) != 0,
				tc.skipped != "-" && (len(res.Skipped) != 1 || res.Skipped[0].Key != tc.skipped):
				t.Errorf("undo skipped %+v, want %s", res.Skipped, tc.skipped)
			}
			kitWant(t, alice, "feature", kitF1, "properties.name", tc.want)
			kitWant(t, alice, "feature", kitF1, "properties._ref", map[bool]string{true: `"v"`}[tc.name == "another path"])
			kitDeliver(t, alice.Flush(), bob)
			kitSameState(t, alice, bob)
		})
	}
}

// A NoUndo edit neither closes the newest step nor joins it: the next edit of the group
// still joins it.
func TestNoUndoEditLeavesTheGroupOpen(t *testing.T) {
	alice := kitReplica(t, "alice", hlc.NewManualClock(kitT0))
	for i, e := range []Edit{
		{Verb: VerbUpdate, Key: "properties.name", Value: `"d1"`, Group: "drag"},
		{Verb: VerbUpdate, Key: "properties._ref", Value: `"v"`, NoUndo: true, Group: "drag"},
		{Verb: VerbUpdate, Key: "properties.name", Value: `"d2"`, Group: "drag"},
	} {
		e.Subject, e.Metadata = "feature", kitF1
		if _, err := alice.Apply(e); err != nil {
			t.Fatal(i, err)
		}
	}
	kitSteps(t, alice, 1, 0)
	if n := len(alice.undo.undo[0].entries); n != 2 {
		t.Fatalf("the drag's step holds %d entries, want 2", n)
	}
	kitUndo(t, alice)
	kitWant(t, alice, "feature", kitF1, "properties.name", "")
	kitWant(t, alice, "feature", kitF1, "properties._ref", `"v"`)
}

// Compact moves the operations it keeps out of their blocks (moveOut): a NoUndo write's
// mark goes with it, and an older step's undo still leaves what it wrote.
func TestNoUndoEditSurvivesCompact(t *testing.T) {
	alice, _, _, walls := kitTrio(t)
	kitSet(t, alice, kitF1, "properties.name", `"a1"`)
	kitTick(walls, 10)
	kitNoUndo(t, alice, kitF1, "properties.name", `"sys"`)
	alice.Flush()
	alice.Compact()
	re := kitRestore(t, kitSnapshot(t, alice), walls[0])
	for _, r := range []*Replica{alice, re} {
		kitTick(walls, 10)
		if res := kitUndo(t, r); len(res.Skipped) != 1 {
			t.Errorf("%s: after Compact, undo skipped %+v, want properties.name", r.PeerID(), res.Skipped)
		}
		kitWant(t, r, "feature", kitF1, "properties.name", `"sys"`)
	}
}

// A NoUndo edit is an edit to save like any other: staying out of the undo history says
// nothing of the server (a program's edit nobody should undo must still be saved). Dirty
// lists it — alone, in a batch, on a restored replica — until a save covers it.
func TestNoUndoEditIsDirty(t *testing.T) {
	alice, _, _, walls := kitTrio(t)
	kitNoUndo(t, alice, kitL1, "_referenceVersion", `"v1"`)
	kitWantDirty(t, alice, "datalayer L1")
	kitTick(walls, 10)
	kitNoErr(t, alice.MarkSaved(alice.Clock()))
	kitWantDirty(t, alice)
	kitTick(walls, 10)
	kitNoErr(t, alice.StartBatch())
	kitNoUndo(t, alice, kitL1, "_referenceVersion", `"v2"`)
	kitSet(t, alice, kitF1, "properties.name", `"a1"`)
	kitNoErr(t, alice.CommitBatch())
	kitWantDirty(t, alice, "datalayer L1", "feature f1")
	kitTick(walls, 10)
	kitNoErr(t, alice.MarkSaved(alice.Clock()))
	kitNoUndo(t, alice, kitL1, "_referenceVersion", `"v3"`)
	kitWantDirty(t, kitRestore(t, kitSnapshot(t, alice), walls[0]), "datalayer L1")
}

// TestNoUndoEditQueuedAcrossAReload: a NoUndo edit still in the outbox when the replica
// is reloaded from its snapshot moves to the new origin (reincarnate) and stays a NoUndo
// edit: the undo of the step before it leaves what it wrote, the whole upsert skipped, as
// without the reload (seed 270 of TestMetamorphicCompactSnapshotPaging). Renamed, it was
// taken for an edit of the step's own, and the undo restored the object under it.
func TestNoUndoEditQueuedAcrossAReload(t *testing.T) {
	var want string
	for _, reload := range []bool{false, true} {
		for _, batch := range []bool{false, true} {
			wall := hlc.NewManualClock(kitT0)
			alice := kitReplica(t, "alice", wall)
			if batch {
				kitNoErr(t, alice.StartBatch())
			}
			kitOK(t)(alice.Upsert("datalayer", kitL1, `{"name":"roads"}`))
			kitNoUndo(t, alice, kitL1, "_referenceVersion", `"v1"`)
			if batch {
				kitNoErr(t, alice.CommitBatch())
			}
			if reload {
				alice = kitRestore(t, kitSnapshot(t, alice), wall)
			}
			alice.Flush() // a reloaded replica's queued edits take its new origin
			wall.Advance(1)
			res := kitUndo(t, alice)
			got := fmtAny(res.Skipped) + " " + alice.State()
			if !reload && !batch {
				want = got
			}
			if len(res.Skipped) != 1 || got != want {
				t.Errorf("reload %v, batch %v: the undo skipped %+v and left %s\nwant %s", reload, batch, res.Skipped, got, want)
			}
		}
	}
}
