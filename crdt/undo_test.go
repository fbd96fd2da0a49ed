package crdt

// Undo and redo (DESIGN §7, issue 4): named scenarios, then a seeded property test.

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/mapcrdt/mapcrdt/hlc"
	"github.com/tidwall/gjson"
)

func kitUndo(t testing.TB, r *Replica) UndoResult {
	t.Helper()
	res, err := r.Undo()
	if err != nil {
		t.Fatalf("%s: Undo: %v", r.PeerID(), err)
	}
	return res
}

func kitRedo(t testing.TB, r *Replica) UndoResult {
	t.Helper()
	res, err := r.Redo()
	if err != nil {
		t.Fatalf("%s: Redo: %v", r.PeerID(), err)
	}
	return res
}

// kitTrio returns alice, bob and carol with wall clocks a few ms apart.
func kitTrio(t testing.TB, mod ...func(*Options)) (a, b, c *Replica, walls []*hlc.ManualClock) {
	walls = []*hlc.ManualClock{hlc.NewManualClock(kitT0), hlc.NewManualClock(kitT0 + 1), hlc.NewManualClock(kitT0 + 2)}
	return kitReplica(t, "alice", walls[0], mod...), kitReplica(t, "bob", walls[1], mod...),
		kitReplica(t, "carol", walls[2], mod...), walls
}

func kitTick(walls []*hlc.ManualClock, ms int64) {
	for _, w := range walls {
		w.Advance(ms)
	}
}

func TestUndoRestoresPreviousValueEverywhere(t *testing.T) {
	alice, bob, carol, walls := kitTrio(t)
	kitSet(t, alice, kitF1, "properties.name", `"first"`)
	kitDeliver(t, alice.Flush(), bob, carol)
	kitTick(walls, 10)
	kitSet(t, alice, kitF1, "properties.name", `"second"`)
	kitDeliver(t, alice.Flush(), bob, carol)
	kitTick(walls, 10)
	res := kitUndo(t, alice)
	if !res.Done || len(res.Skipped) != 0 {
		t.Fatalf("Undo = %+v, want done, nothing skipped", res)
	}
	if len(res.Changes) != 1 || res.Changes[0].Kind != Set || res.Changes[0].Value != `"first"` {
		t.Errorf("Undo changes %+v, want name set to \"first\"", res.Changes)
	}
	msgs := alice.Flush()
	if len(msgs) != 1 || gjson.GetBytes(msgs[0], "value").String() != "first" {
		t.Fatalf("the undo sends %q, want one update back to \"first\"", msgs)
	}
	if ts := kitMsgHLC(t, msgs[0]); !bob.Clock().Less(ts) {
		t.Errorf("the undo's clock %s is not fresh (bob holds %s)", ts, bob.Clock())
	}
	kitDeliver(t, msgs, bob, carol)
	for _, r := range []*Replica{alice, bob, carol} {
		kitWant(t, r, "feature", kitF1, "properties.name", `"first"`)
	}
	// Undo again: the feature had no name before.
	kitUndo(t, alice)
	kitDeliver(t, alice.Flush(), bob, carol)
	for _, r := range []*Replica{alice, bob, carol} {
		kitWant(t, r, "feature", kitF1, "properties.name", "")
	}
	if alice.CanUndo() {
		t.Error("CanUndo after undoing both edits")
	}
	// Redo twice: "second" again everywhere.
	kitRedo(t, alice)
	kitRedo(t, alice)
	kitDeliver(t, alice.Flush(), bob, carol)
	for _, r := range []*Replica{alice, bob, carol} {
		kitWant(t, r, "feature", kitF1, "properties.name", `"second"`)
	}
	kitSameState(t, alice, bob, carol)
}

func TestUndoSkipsWhatAPeerOverwrote(t *testing.T) {
	alice, bob, _, walls := kitTrio(t)
	kitSet(t, alice, kitF1, "properties.name", `"alice 1"`)
	kitSet(t, alice, kitF1, "properties.color", `"red"`)
	kitDeliver(t, alice.Flush(), bob)
	kitTick(walls, 10)
	kitNoErr(t, alice.StartBatch())
	kitSet(t, alice, kitF1, "properties.name", `"alice 2"`)
	kitSet(t, alice, kitF1, "properties.color", `"blue"`)
	kitNoErr(t, alice.CommitBatch())
	kitDeliver(t, alice.Flush(), bob)
	kitTick(walls, 10)
	kitSet(t, bob, kitF1, "properties.name", `"bob"`) // bob overwrites one of the two keys
	kitDeliver(t, bob.Flush(), alice)
	kitTick(walls, 10)

	res := kitUndo(t, alice)
	if !res.Done {
		t.Fatal("Undo not done")
	}
	want := []Skipped{{Subject: "feature", Metadata: `{"featureType":"marker","id":"f1","layerId":"L1"}`, Key: "properties.name"}}
	if !slices.Equal(res.Skipped, want) {
		t.Errorf("Skipped = %+v, want %+v", res.Skipped, want)
	}
	kitDeliver(t, alice.Flush(), bob)
	for _, r := range []*Replica{alice, bob} {
		kitWant(t, r, "feature", kitF1, "properties.name", `"bob"`)
		kitWant(t, r, "feature", kitF1, "properties.color", `"red"`)
	}
	kitSameState(t, alice, bob)

	// Everything overwritten: nothing is sent, the skip is reported.
	kitTick(walls, 10)
	kitSet(t, bob, kitF1, "properties.color", `"green"`)
	kitDeliver(t, bob.Flush(), alice)
	res = kitUndo(t, alice)
	if len(res.Skipped) != 1 || res.Skipped[0].Key != "properties.color" {
		t.Errorf("Skipped = %+v, want properties.color", res.Skipped)
	}
	if n := len(alice.Flush()); n != 0 {
		t.Errorf("an undo that skipped everything sent %d messages", n)
	}
	kitWant(t, alice, "feature", kitF1, "properties.color", `"green"`)

	// A peer's write below the path undone (properties.name under properties) and a peer's
	// delete of the object count as writes since.
	kitTick(walls, 10)
	kitSet(t, alice, kitF2, "properties", `{"name":"p","color":"c"}`)
	kitDeliver(t, alice.Flush(), bob)
	kitTick(walls, 10)
	kitSet(t, bob, kitF2, "properties.name", `"bob below"`)
	kitDeliver(t, bob.Flush(), alice)
	if res := kitUndo(t, alice); len(res.Skipped) != 1 || res.Skipped[0].Key != "properties" {
		t.Errorf("undo of properties after bob wrote properties.name: Skipped %+v", res.Skipped)
	}
	kitWant(t, alice, "feature", kitF2, "properties", `{"color":"c","name":"bob below"}`)
	kitTick(walls, 10)
	kitSet(t, alice, kitF3, "properties.name", `"mine"`)
	kitDeliver(t, alice.Flush(), bob)
	kitTick(walls, 10)
	kitOK(t)(bob.Delete("feature", kitF3))
	kitDeliver(t, bob.Flush(), alice)
	if res := kitUndo(t, alice); len(res.Skipped) != 1 || res.Skipped[0].Key != "properties.name" {
		t.Errorf("undo after bob deleted the feature: Skipped %+v", res.Skipped)
	}
	kitWant(t, alice, "feature", kitF3, "", "")
	kitSameState(t, alice, bob)
}

func TestUndoBatchRevertsAllInOneMessage(t *testing.T) {
	alice, bob, _, walls := kitTrio(t)
	kitOK(t)(alice.Upsert("datalayer", kitL1, `{"name":"Layer 1"}`))
	kitSet(t, alice, kitF2, "properties.name", `"two"`)
	kitDeliver(t, alice.Flush(), bob)
	before := alice.State()
	kitTick(walls, 10)
	kitNoErr(t, alice.StartBatch())
	kitSet(t, alice, kitL1, "name", `"Renamed"`)
	kitOK(t)(alice.Upsert("feature", kitF1, `{"type":"Feature","properties":{"name":"one"}}`))
	kitSet(t, alice, kitF1, "properties.name", `"one, renamed"`)
	kitOK(t)(alice.Delete("feature", kitF2))
	kitNoErr(t, alice.CommitBatch())
	kitDeliver(t, alice.Flush(), bob)
	after := alice.State()
	kitTick(walls, 10)

	res := kitUndo(t, alice)
	if !res.Done || len(res.Skipped) != 0 {
		t.Fatalf("Undo = %+v", res)
	}
	msgs := alice.Flush()
	if len(msgs) != 1 || gjson.GetBytes(msgs[0], "verb").String() != "batch" {
		t.Fatalf("the undo of a batch sends %q, want one batch", msgs)
	}
	if alice.State() != before {
		t.Errorf("after undo\n got %s\nwant %s", alice.State(), before)
	}
	kitDeliver(t, msgs, bob)
	kitSameState(t, alice, bob)
	kitTick(walls, 10)
	kitRedo(t, alice)
	msgs = alice.Flush()
	if len(msgs) != 1 || gjson.GetBytes(msgs[0], "verb").String() != "batch" {
		t.Fatalf("the redo of a batch sends %q, want one batch", msgs)
	}
	if alice.State() != after {
		t.Errorf("after redo\n got %s\nwant %s", alice.State(), after)
	}
	kitDeliver(t, msgs, bob)
	kitSameState(t, alice, bob)
}

// TestUndoRedoOfOneStepWritingAPathTwice: a step that wrote one path several times (a
// grouped drag, or a batch) is undone to the value before the step, and redone to the
// value after it — not to an intermediate one.
func TestUndoRedoOfOneStepWritingAPathTwice(t *testing.T) {
	pos := func(i int) string { return `{"coordinates":[` + strconv.Itoa(i) + `,0],"type":"Point"}` }
	for _, how := range []string{"group", "batch", "captureInterval"} {
		t.Run(how, func(t *testing.T) {
			alice, bob, _, walls := kitTrio(t, func(o *Options) {
				if how == "captureInterval" {
					o.CaptureInterval = hlc.Second
				}
			})
			kitSet(t, alice, kitF1, "geometry", pos(0))
			kitTick(walls, 5000)
			if how == "batch" {
				kitNoErr(t, alice.StartBatch())
			}
			for i := 1; i <= 3; i++ {
				kitTick(walls, 20)
				e := Edit{Verb: VerbUpdate, Subject: "feature", Metadata: kitF1, Key: "geometry", Value: pos(i)}
				if how == "group" {
					e.Group = "drag"
				}
				kitOK(t)(alice.Apply(e))
			}
			if how == "batch" {
				kitNoErr(t, alice.CommitBatch())
			}
			kitDeliver(t, alice.Flush(), bob)
			kitTick(walls, 5000)
			kitUndo(t, alice)
			kitWant(t, alice, "feature", kitF1, "geometry", pos(0))
			kitTick(walls, 5000)
			kitRedo(t, alice)
			kitWant(t, alice, "feature", kitF1, "geometry", pos(3))
			kitTick(walls, 5000)
			kitUndo(t, alice)
			kitWant(t, alice, "feature", kitF1, "geometry", pos(0))
			kitDeliver(t, alice.Flush(), bob)
			kitSameState(t, alice, bob)
		})
	}
	// The same with overlapping paths: properties, then properties.name, in one batch.
	alice, _, _, walls := kitTrio(t)
	kitSet(t, alice, kitF1, "properties", `{"name":"a","color":"red"}`)
	kitTick(walls, 10)
	kitNoErr(t, alice.StartBatch())
	kitSet(t, alice, kitF1, "properties", `{"name":"b"}`)
	kitSet(t, alice, kitF1, "properties.name", `"c"`)
	kitNoErr(t, alice.CommitBatch())
	kitTick(walls, 10)
	kitUndo(t, alice)
	kitWant(t, alice, "feature", kitF1, "properties", `{"color":"red","name":"a"}`)
	kitTick(walls, 10)
	kitRedo(t, alice)
	kitWant(t, alice, "feature", kitF1, "properties", `{"name":"c"}`)
}

func TestUndoOfFeatureCreationDeletesItEverywhere(t *testing.T) {
	alice, bob, carol, walls := kitTrio(t)
	feature := `{"geometry":{"coordinates":[2.35,48.85],"type":"Point"},"properties":{"name":"new"},"type":"Feature"}`
	kitOK(t)(alice.Upsert("feature", kitF1, feature))
	kitDeliver(t, alice.Flush(), bob, carol)
	kitWant(t, bob, "feature", kitF1, "", feature)
	kitTick(walls, 10)
	res := kitUndo(t, alice)
	if len(res.Changes) != 1 || res.Changes[0].Kind != Deleted {
		t.Errorf("undo of a creation: changes %+v, want deleted", res.Changes)
	}
	msgs := alice.Flush()
	if len(msgs) != 1 || gjson.GetBytes(msgs[0], "verb").String() != "delete" {
		t.Fatalf("undo of a creation sends %q, want one delete", msgs)
	}
	kitDeliver(t, msgs, bob, carol)
	for _, r := range []*Replica{alice, bob, carol} {
		kitWant(t, r, "feature", kitF1, "", "")
		if r.State() != "[]" {
			t.Errorf("%s: state %s, want []", r.PeerID(), r.State())
		}
	}
	kitTick(walls, 10)
	res = kitRedo(t, alice)
	if len(res.Changes) != 1 || res.Changes[0].Kind != Created || res.Changes[0].Value != feature {
		t.Errorf("redo of a creation: changes %+v, want created", res.Changes)
	}
	kitDeliver(t, alice.Flush(), bob, carol)
	for _, r := range []*Replica{alice, bob, carol} {
		kitWant(t, r, "feature", kitF1, "", feature)
	}
}

func TestUndoOfDatalayerDeleteRestoresIt(t *testing.T) {
	alice, bob, _, walls := kitTrio(t)
	kitOK(t)(alice.Upsert("datalayer", kitL1, `{"name":"Trees","displayOnLoad":true}`))
	kitDeliver(t, alice.Flush(), bob)
	kitTick(walls, 10)
	kitSet(t, bob, kitL1, "name", `"Old trees"`) // the last value comes from bob
	kitDeliver(t, bob.Flush(), alice)
	kitTick(walls, 10)
	kitOK(t)(alice.Delete("datalayer", kitL1))
	kitDeliver(t, alice.Flush(), bob)
	kitWant(t, bob, "datalayer", kitL1, "", "")
	kitTick(walls, 10)
	res := kitUndo(t, alice)
	if len(res.Skipped) != 0 || len(res.Changes) != 1 || res.Changes[0].Kind != Created {
		t.Errorf("undo of a delete: %+v, want the datalayer created", res)
	}
	kitDeliver(t, alice.Flush(), bob)
	for _, r := range []*Replica{alice, bob} {
		kitWant(t, r, "datalayer", kitL1, "", `{"displayOnLoad":true,"name":"Old trees"}`)
	}
	kitSameState(t, alice, bob)
	// Redo deletes it again.
	kitTick(walls, 10)
	kitRedo(t, alice)
	kitDeliver(t, alice.Flush(), bob)
	kitWant(t, bob, "datalayer", kitL1, "", "")
}

func TestUndoNeverUndoesRemoteEdits(t *testing.T) {
	alice, bob, _, walls := kitTrio(t)
	kitSet(t, alice, kitF1, "properties.name", `"alice"`)
	kitOK(t)(alice.Upsert("feature", kitF2, `{"type":"Feature","properties":{}}`))
	kitDeliver(t, alice.Flush(), bob)
	if bob.CanUndo() || bob.CanRedo() {
		t.Fatal("bob, who only received, can undo or redo")
	}
	if res := kitUndo(t, bob); res.Done || len(res.Changes) != 0 {
		t.Errorf("bob's Undo = %+v, want nothing done", res)
	}
	if n := len(bob.Flush()); n != 0 {
		t.Errorf("bob's empty undo sent %d messages", n)
	}
	kitTick(walls, 10)
	kitSet(t, bob, kitF1, "properties.color", `"bob"`)
	kitDeliver(t, bob.Flush(), alice)
	kitTick(walls, 10)
	// Alice's undo steps are hers only: the remote edit in between is not one of them.
	kitUndo(t, alice)
	kitUndo(t, alice)
	if alice.CanUndo() {
		t.Error("alice can undo a third step: a remote edit entered her stack")
	}
	kitWant(t, alice, "feature", kitF1, "properties.color", `"bob"`)
	kitWant(t, alice, "feature", kitF1, "properties.name", "")
	// Bob's one step is his edit; alice's undo operations received never enter it.
	kitDeliver(t, alice.Flush(), bob)
	kitUndo(t, bob)
	if bob.CanUndo() {
		t.Error("bob can undo more than his one edit")
	}
	kitDeliver(t, bob.Flush(), alice)
	kitSameState(t, alice, bob)
	kitWant(t, alice, "feature", kitF1, "properties.color", "")
}

func TestUndoNewLocalEditClearsRedo(t *testing.T) {
	alice, bob, _, walls := kitTrio(t)
	kitSet(t, alice, kitF1, "properties.name", `"a"`)
	kitSet(t, alice, kitF1, "properties.name", `"b"`)
	kitUndo(t, alice)
	if !alice.CanRedo() {
		t.Fatal("no redo after an undo")
	}
	// A remote edit does not clear redo.
	kitSet(t, bob, kitF2, "properties.name", `"bob"`)
	kitDeliver(t, bob.Flush(), alice)
	if !alice.CanRedo() {
		t.Error("a remote edit cleared the redo stack")
	}
	kitTick(walls, 10)
	kitSet(t, alice, kitF1, "properties.color", `"c"`)
	if alice.CanRedo() {
		t.Error("a new local edit left the redo stack")
	}
	if res := kitRedo(t, alice); res.Done {
		t.Error("Redo did something after a new edit")
	}
	kitWant(t, alice, "feature", kitF1, "properties.name", `"a"`)
	// A failed edit does not clear it.
	kitUndo(t, alice)
	if _, err := alice.Update("feature", `{"id":"x"}`, "properties.name", `"bad"`); err == nil {
		t.Fatal("an edit with bad metadata succeeded")
	}
	if !alice.CanRedo() {
		t.Error("a refused edit cleared the redo stack")
	}
	// Undo and redo are refused while a batch is open.
	kitNoErr(t, alice.StartBatch())
	if _, err := alice.Undo(); Code(err) != "bad_state" {
		t.Errorf("Undo in a batch: %v, want bad_state", err)
	}
	if _, err := alice.Redo(); Code(err) != "bad_state" {
		t.Errorf("Redo in a batch: %v, want bad_state", err)
	}
	kitNoErr(t, alice.CommitBatch())
}

func TestUndoDepthBoundsTheStack(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	alice := kitReplica(t, "alice", wall, func(o *Options) { o.UndoDepth = 3 })
	for i := 1; i <= 5; i++ {
		wall.Advance(10)
		kitSet(t, alice, kitF1, "properties.name", strconv.Quote("v"+strconv.Itoa(i)))
	}
	for i := 0; i < 3; i++ {
		if !alice.CanUndo() {
			t.Fatalf("only %d undo steps, want 3", i)
		}
		kitUndo(t, alice)
	}
	if alice.CanUndo() {
		t.Error("more than UndoDepth=3 steps kept")
	}
	kitWant(t, alice, "feature", kitF1, "properties.name", `"v2"`)
	for i := 0; i < 3; i++ {
		kitRedo(t, alice)
	}
	kitWant(t, alice, "feature", kitF1, "properties.name", `"v5"`)
	if _, err := NewReplica(Options{PeerID: "x", UndoDepth: -1}); Code(err) != "bad_option" {
		t.Errorf("UndoDepth -1: %v, want bad_option", err)
	}
}

func TestUndoCaptureIntervalAndGroups(t *testing.T) {
	t.Run("captureInterval", func(t *testing.T) {
		wall := hlc.NewManualClock(kitT0)
		alice := kitReplica(t, "alice", wall, func(o *Options) { o.CaptureInterval = 500 * hlc.Millisecond })
		kitSet(t, alice, kitF1, "properties.name", `"a"`)
		wall.Advance(2000)
		kitSet(t, alice, kitF1, "properties.name", `"b"`) // a step of its own (2 s later)
		wall.Advance(100)
		kitSet(t, alice, kitF1, "properties.color", `"red"`) // joins it
		wall.Advance(400)
		kitSet(t, alice, kitF1, "properties.weight", `2`) // joins it
		wall.Advance(501)
		kitSet(t, alice, kitF2, "properties.name", `"x"`) // too late: a new step
		kitUndo(t, alice)
		kitWant(t, alice, "feature", kitF2, "properties.name", "")
		kitWant(t, alice, "feature", kitF1, "properties.weight", `2`)
		kitUndo(t, alice)
		kitWant(t, alice, "feature", kitF1, "", `{"properties":{"name":"a"}}`)
		kitUndo(t, alice)
		if alice.CanUndo() {
			t.Error("more steps than the interval makes")
		}
	})
	t.Run("on the wall clock, not the clock a peer ahead pushed on", func(t *testing.T) {
		// bob's clock is 30 s ahead (within MaxDrift): after his edit, alice's clock reads
		// his walltime until hers passes it. Her two edits, 10 s apart, are two steps.
		wa, wb := hlc.NewManualClock(kitT0), hlc.NewManualClock(kitT0+30_000)
		ci := func(o *Options) { o.CaptureInterval = 500 * hlc.Millisecond }
		alice, bob := kitReplica(t, "alice", wa, ci), kitReplica(t, "bob", wb, ci)
		kitSet(t, bob, kitF2, "properties.name", `"bob"`)
		kitDeliver(t, bob.Flush(), alice)
		kitSet(t, alice, kitF1, "properties.name", `"first"`)
		wa.Advance(10_000)
		kitSet(t, alice, kitF1, "properties.color", `"second"`)
		kitUndo(t, alice)
		kitWant(t, alice, "feature", kitF1, "properties.name", `"first"`)
		kitWant(t, alice, "feature", kitF1, "properties.color", "")
	})
	t.Run("off by default", func(t *testing.T) {
		wall := hlc.NewManualClock(kitT0)
		alice := kitReplica(t, "alice", wall)
		kitSet(t, alice, kitF1, "properties.name", `"a"`)
		kitSet(t, alice, kitF1, "properties.color", `"b"`) // same millisecond
		kitUndo(t, alice)
		kitWant(t, alice, "feature", kitF1, "properties.name", `"a"`)
	})
	t.Run("group", func(t *testing.T) {
		wall := hlc.NewManualClock(kitT0)
		alice := kitReplica(t, "alice", wall)
		edit := func(key, value, group string) {
			wall.Advance(1000)
			kitOK(t)(alice.Apply(Edit{Verb: VerbUpdate, Subject: "feature", Metadata: kitF1, Key: key, Value: value, Group: group}))
		}
		edit("properties.a", `1`, "")
		edit("properties.b", `2`, "drag")
		edit("properties.c", `3`, "drag")
		edit("properties.d", `4`, "drag")
		edit("properties.e", `5`, "other")
		edit("properties.f", `6`, "")
		kitUndo(t, alice) // f
		kitWant(t, alice, "feature", kitF1, "properties.e", `5`)
		kitUndo(t, alice) // e
		kitWant(t, alice, "feature", kitF1, "properties.d", `4`)
		res := kitUndo(t, alice) // b, c, d together
		kitWant(t, alice, "feature", kitF1, "properties", `{"a":1}`)
		if len(res.Changes) != 3 {
			t.Errorf("undo of the drag group: %d changes, want 3", len(res.Changes))
		}
		if msgs := alice.Flush(); len(msgs) != 4 || gjson.GetBytes(msgs[3], "verb").String() != "batch" {
			t.Errorf("the group's undo should leave as one batch, got %d messages", len(msgs))
		}
		kitUndo(t, alice) // a
		if alice.CanUndo() {
			t.Error("more steps than the groups make")
		}
	})
}

func TestUndoUsesOldValueForAPathNeverSeen(t *testing.T) {
	alice, bob, _, walls := kitTrio(t)
	// The page loaded f1 from the server without seeding the engine.
	kitOK(t)(alice.Apply(Edit{Verb: VerbUpdate, Subject: "feature", Metadata: kitF1, Key: "properties.name", Value: `"new"`, OldValue: `"from the server"`}))
	kitDeliver(t, alice.Flush(), bob)
	kitTick(walls, 10)
	kitUndo(t, alice)
	kitDeliver(t, alice.Flush(), bob)
	for _, r := range []*Replica{alice, bob} {
		kitWant(t, r, "feature", kitF1, "properties.name", `"from the server"`)
	}
	// A deleted feature the engine never saw comes back with the old value given.
	feature := `{"geometry":{"coordinates":[1,2],"type":"Point"},"properties":{"name":"server"},"type":"Feature"}`
	kitTick(walls, 10)
	kitOK(t)(alice.Apply(Edit{Verb: VerbDelete, Subject: "feature", Metadata: kitF2, OldValue: feature}))
	kitTick(walls, 10)
	kitUndo(t, alice)
	kitWant(t, alice, "feature", kitF2, "", feature)
	// When the engine knows the value, OldValue is not used.
	kitOK(t)(alice.Seed("feature", kitF3, `{"type":"Feature","properties":{"name":"seeded"}}`))
	kitTick(walls, 10)
	kitOK(t)(alice.Apply(Edit{Verb: VerbUpdate, Subject: "feature", Metadata: kitF3, Key: "properties.name", Value: `"x"`, OldValue: `"bogus"`}))
	kitUndo(t, alice)
	kitWant(t, alice, "feature", kitF3, "properties.name", `"seeded"`)
	// A malformed OldValue is refused and changes nothing.
	before := alice.State()
	if _, err := alice.Apply(Edit{Verb: VerbUpdate, Subject: "feature", Metadata: kitF1, Key: "properties.other", Value: `1`, OldValue: `{bad`}); Code(err) != "invalid_json" {
		t.Errorf("bad OldValue: %v, want invalid_json", err)
	}
	if alice.State() != before {
		t.Error("a refused edit changed the state")
	}
}

// TestUndoOfWholeObjectOldValueNull: uMap makes a feature with upsert(value, null), the
// null saying there was none. Its undo deletes the feature everywhere — it sent an upsert
// of null, which every peer refused (bad_value), while the undoer kept null. An old value
// of an upsert or delete that is neither an object nor null is refused, changing nothing.
func TestUndoOfWholeObjectOldValueNull(t *testing.T) {
	alice, bob, _, walls := kitTrio(t)
	feature := `{"geometry":{"coordinates":[1,2],"type":"Point"},"properties":{"name":"new"},"type":"Feature"}`
	kitOK(t)(alice.Apply(Edit{Verb: VerbUpsert, Subject: "feature", Metadata: kitF1, Value: feature, OldValue: "null"}))
	kitDeliver(t, alice.Flush(), bob)
	kitTick(walls, 10)
	kitUndo(t, alice)
	kitDeliver(t, alice.Flush(), bob)
	for _, r := range []*Replica{alice, bob} {
		if v, ok, _ := r.Get("feature", kitF1, ""); ok {
			t.Errorf("%s: the undone creation left %s", r.PeerID(), v)
		}
	}
	kitTick(walls, 10)
	kitRedo(t, alice)
	kitDeliver(t, alice.Flush(), bob)
	kitWant(t, bob, "feature", kitF1, "", feature)
	// A delete of a feature the engine never saw, with null for its old value: its undo
	// sends nothing a peer refuses.
	kitTick(walls, 10)
	kitOK(t)(alice.Apply(Edit{Verb: VerbDelete, Subject: "feature", Metadata: kitF2, OldValue: "null"}))
	kitDeliver(t, alice.Flush(), bob)
	kitTick(walls, 10)
	kitUndo(t, alice)
	kitDeliver(t, alice.Flush(), bob)
	if alice.State() != bob.State() {
		t.Errorf("diverged:\n%s\n%s", alice.State(), bob.State())
	}
	before := alice.State()
	for _, old := range []string{"5", `"x"`, "[]", "true"} {
		for _, v := range []Verb{VerbUpsert, VerbDelete} {
			e := Edit{Verb: v, Subject: "feature", Metadata: kitF3, OldValue: old}
			if v == VerbUpsert {
				e.Value = feature
			}
			if _, err := alice.Apply(e); Code(err) != "bad_value" {
				t.Errorf("%s with old value %s: %v, want bad_value", v, old, err)
			}
		}
	}
	if alice.State() != before || len(alice.Flush()) != 0 {
		t.Error("a refused edit changed the state or queued a message")
	}
}

// TestUndoProperty: three replicas make random local edits, undos and redos, with random
// delivery (and the sync requests gaps trigger). Before each undo or redo, every place of
// the step whose newest write belongs to another peer is recorded; after it, those places
// must be unchanged. At the end all replicas equal each other and the replay of every
// flushed message.
func TestUndoProperty(t *testing.T) {
	for seed := 0; seed < *seeds/4; seed++ {
		undoPropertyRun(t, seed)
	}
}

type kitGuard struct {
	sub, meta, key string
	value          string
	present        bool
}

// kitOthersNewest returns, for the step about to be undone or redone, the places whose
// newest write (by clock, over every write the replica holds at, above or below the place)
// belongs to another peer, with their current values.
func kitOthersNewest(t testing.TB, r *Replica, step undoStep) []kitGuard {
	var out []kitGuard
	for _, e := range step.entries {
		var best *op
		var bestSub int32
		for _, o := range r.log.ops {
			o.writes(func(w *op, sub int32) {
				if w.obj != e.obj {
					return
				}
				touches := w.verb != VerbUpdate || e.path == nil || kitPrefix(e.path, w.path) || kitPrefix(w.path, e.path)
				if !touches {
					return
				}
				if best == nil || best.ts.Less(o.ts) || (best.ts == o.ts && bestSub < sub) {
					best, bestSub = o, sub
				}
			})
		}
		if best == nil || best.ts.Peer == r.PeerID() && !kitNoUndoWrite(best, bestSub) {
			continue
		}
		// The place to watch is where the other peer wrote, when that is below the step's
		// place (a sibling entry of the step may legitimately change the rest).
		place := e.path
		if w := best; w.verb == VerbBatch {
			w = best.subOps()[bestSub-1]
			if w.verb == VerbUpdate && len(w.path) > len(place) {
				place = w.path
			}
		} else if w.verb == VerbUpdate && len(w.path) > len(place) {
			place = w.path
		}
		g := kitGuard{sub: e.obj.subject.Name, meta: e.obj.meta, key: JoinPath(place...)}
		g.value, g.present = kitGet(t, r, g.sub, g.meta, g.key)
		out = append(out, g)
	}
	return out
}

// kitNoUndoWrite reports whether the write (o, sub) is a local edit's made with
// Edit.NoUndo: an undo takes it as another peer's.
func kitNoUndoWrite(o *op, sub int32) bool {
	t := write{op: o, sub: sub}.target()
	return t.x != nil && t.x.restores == o.ts
}

func kitPrefix(path, prefix []string) bool {
	return len(prefix) <= len(path) && slices.Equal(path[:len(prefix)], prefix)
}

func undoPropertyRun(t *testing.T, seed int) {
	rng := rand.New(rand.NewPCG(uint64(seed), 44))
	wall := hlc.NewManualClock(kitT0)
	const n = 3
	reps := make([]*Replica, n)
	inbox := make([][][]byte, n)
	for i := range reps {
		reps[i] = kitReplica(t, "u"+strconv.Itoa(i), wall)
	}
	or := newOracle(t)
	index := func(peer string) int { return int(peer[1] - '0') }
	flush := func(i int) {
		for _, m := range reps[i].Flush() {
			or.add(m)
			for j := range reps {
				if j != i {
					inbox[j] = append(inbox[j], m)
				}
			}
		}
	}
	deliver := func(i int) {
		if len(inbox[i]) == 0 {
			return
		}
		x := rng.IntN(len(inbox[i]))
		m := inbox[i][x]
		if rng.IntN(5) > 0 {
			inbox[i] = append(inbox[i][:x], inbox[i][x+1:]...)
		}
		res, err := reps[i].Receive(m)
		if err != nil {
			t.Fatalf("seed %d: u%d receives %s: %v", seed, i, m, err)
		}
		for _, reply := range res.Replies {
			to := gjson.GetBytes(reply, "recipient").String()
			inbox[index(to)] = append(inbox[index(to)], reply)
		}
	}
	revert := func(i int, redo bool) {
		r := reps[i]
		stack := r.undo.undo
		if redo {
			stack = r.undo.redo
		}
		if len(stack) == 0 {
			return
		}
		guards := kitOthersNewest(t, r, stack[len(stack)-1])
		var err error
		var res UndoResult
		if redo {
			res, err = r.Redo()
		} else {
			res, err = r.Undo()
		}
		if err != nil || !res.Done {
			t.Fatalf("seed %d: u%d undo/redo: %+v %v", seed, i, res, err)
		}
		for _, g := range guards {
			v, ok := kitGet(t, r, g.sub, g.meta, g.key)
			if v != g.value || ok != g.present {
				t.Fatalf("seed %d: u%d's %s (redo %v) changed %s %s %q, whose newest write is another peer's: %s (%v) -> %s (%v)",
					seed, i, "undo", redo, g.sub, g.meta, g.key, g.value, g.present, v, ok)
			}
		}
	}
	for step := 0; step < 80; step++ {
		wall.Advance(int64(rng.IntN(4)) - 1)
		i := rng.IntN(n)
		switch k := rng.IntN(12); {
		case k < 4:
			randomEdit(t, rng, reps[i])
		case k < 6:
			revert(i, false)
		case k < 7:
			revert(i, true)
		case k < 9:
			flush(i)
		default:
			for d := rng.IntN(4); d >= 0; d-- {
				deliver(i)
			}
		}
		for _, r := range reps {
			for _, st := range [][]undoStep{r.undo.undo, r.undo.redo} {
				for _, s := range st {
					for _, e := range s.entries {
						if e.by.op.ts.Peer != r.PeerID() {
							t.Fatalf("seed %d: %s's undo stacks hold a write of %s", seed, r.PeerID(), e.by.op.ts.Peer)
						}
					}
				}
			}
		}
	}
	for i := range reps {
		flush(i)
	}
	for busy := true; busy; {
		busy = false
		for i := range reps {
			for len(inbox[i]) > 0 {
				busy = true
				m := inbox[i][0]
				inbox[i] = inbox[i][1:]
				res, err := reps[i].Receive(m)
				if err != nil {
					t.Fatalf("seed %d: receive: %v", seed, err)
				}
				for _, reply := range res.Replies {
					to := index(gjson.GetBytes(reply, "recipient").String())
					inbox[to] = append(inbox[to], reply)
				}
			}
		}
	}
	want := or.state()
	for i, r := range reps {
		if got := norm(t, r.State()); got != want {
			t.Fatalf("seed %d: u%d diverges from the replay\n got %s\nwant %s", seed, i, got, want)
		}
	}
}

// TestUndoRedoSkipsWhatAPeerWroteSinceTheUndo: redo follows the same rule as undo.
func TestUndoRedoSkipsWhatAPeerWroteSinceTheUndo(t *testing.T) {
	alice, bob, _, walls := kitTrio(t)
	kitSet(t, alice, kitF1, "properties.name", `"alice"`)
	kitTick(walls, 10)
	kitUndo(t, alice)
	kitDeliver(t, alice.Flush(), bob)
	kitTick(walls, 10)
	kitSet(t, bob, kitF1, "properties.name", `"bob"`)
	kitDeliver(t, bob.Flush(), alice)
	kitTick(walls, 10)
	res := kitRedo(t, alice)
	if !res.Done || len(res.Skipped) != 1 || res.Skipped[0].Key != "properties.name" {
		t.Errorf("Redo = %+v, want properties.name skipped", res)
	}
	if n := len(alice.Flush()); n != 0 {
		t.Errorf("a redo that skipped everything sent %d messages", n)
	}
	kitWant(t, alice, "feature", kitF1, "properties.name", `"bob"`)
}

// TestUndoChangesRenderTheStep: the changes Undo and Redo return are what a renderer needs:
// applied to a view holding the replica's previous state, they give its new state — for
// steps of one place and of many (batches, groups).
func TestUndoChangesRenderTheStep(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	alice := kitReplica(t, "alice", wall)
	v := newView(t)
	check := func(what string) {
		t.Helper()
		if got, want := v.state(), norm(t, alice.State()); got != want {
			t.Fatalf("%s: the changes returned do not render the state\nview  %s\nstate %s", what, got, want)
		}
	}
	v.apply(kitEditChanges(t)(alice.Upsert("feature", kitF1, `{"type":"Feature","properties":{"name":"a","color":"red"}}`)))
	kitNoErr(t, alice.StartBatch())
	for _, kv := range [][2]string{{"properties.name", `"b"`}, {"properties.color", `"blue"`}, {"properties.weight", `3`}} {
		v.apply(kitEditChanges(t)(alice.Update("feature", kitF1, kv[0], kv[1])))
	}
	v.apply(kitEditChanges(t)(alice.Upsert("datalayer", kitL1, `{"name":"L"}`)))
	kitNoErr(t, alice.CommitBatch())
	check("after the batch")
	res := kitUndo(t, alice)
	v.apply(res.Changes)
	check("after undo of a batch of four places")
	res = kitRedo(t, alice)
	v.apply(res.Changes)
	check("after redo of a batch of four places")

	// Random steps on one replica.
	for seed := 0; seed < *seeds/10; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 5))
		w := hlc.NewManualClock(kitT0)
		r := kitReplica(t, "r", w)
		v := newView(t)
		for i := 0; i < 30; i++ {
			w.Advance(int64(rng.IntN(3)))
			switch rng.IntN(4) {
			case 0, 1:
				v.apply(randomEdit(t, rng, r))
			case 2:
				v.apply(kitUndo(t, r).Changes)
			case 3:
				v.apply(kitRedo(t, r).Changes)
			}
			if got, want := v.state(), norm(t, r.State()); got != want {
				t.Fatalf("seed %d step %d: the changes returned do not render the state\nview  %s\nstate %s", seed, i, got, want)
			}
		}
	}
}

func kitEditChanges(t testing.TB) func([]Change, error) []Change {
	return func(ch []Change, err error) []Change {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return ch
	}
}

// TestUndoCarriesTheEditsMetadata: an undo operation names its object with the metadata of
// the edit it reverts (featureType travels along, DESIGN §2), even when the replica first
// met the object through an operation without it.
func TestUndoCarriesTheEditsMetadata(t *testing.T) {
	alice, _, _, walls := kitTrio(t)
	bare := `{"id":"f1","layerId":"L1"}`
	kitRecv(t, alice, []byte(`{"kind":"OperationMessage","sender":"umap","verb":"update","subject":"feature","metadata":`+bare+
		`,"key":"properties.name","value":"from umap","hlc":"`+hlc.Timestamp{Wall: kitT0 - 10, Peer: "umap"}.String()+`"}`))
	kitTick(walls, 10)
	kitOK(t)(alice.Delete("feature", kitF1)) // kitF1 has featureType "marker"
	if m := alice.Flush(); len(m) != 1 || gjson.GetBytes(m[0], "metadata.featureType").String() != "marker" {
		t.Fatalf("the delete leaves as %q, want featureType marker", m)
	}
	kitTick(walls, 10)
	kitUndo(t, alice)
	m := alice.Flush()
	if len(m) != 1 || gjson.GetBytes(m[0], "verb").String() != "upsert" {
		t.Fatalf("the undo leaves as %q, want one upsert", m)
	}
	if ft := gjson.GetBytes(m[0], "metadata.featureType").String(); ft != "marker" {
		t.Errorf("the undo's upsert has featureType %q, want marker (the deleted feature's): %s", ft, m[0])
	}
}

// TestUndoPushSlidesWithoutAllocating: the undo stack keeps the newest depth steps, in
// order, through many pushes; once its array exists, pushing allocates nothing (the window
// moves back to the array's start); a stack replaced from elsewhere (a snapshot, a redo)
// is pushed onto correctly.
func TestUndoPushSlidesWithoutAllocating(t *testing.T) {
	const depth = 7
	opts := Options{UndoDepth: depth, Limits: DefaultLimits()}
	var s undoStacks
	check := func(last int) {
		t.Helper()
		want := min(last, depth)
		if len(s.undo) != want {
			t.Fatalf("after %d pushes: %d steps, want %d", last, len(s.undo), want)
		}
		for i, st := range s.undo {
			if st.at != int64(last-want+i+1) {
				t.Fatalf("after %d pushes: step %d is %d, want %d", last, i, st.at, last-want+i+1)
			}
		}
	}
	n := 0
	for ; n < 100; n++ {
		s.push(&undoStep{at: int64(n + 1)}, &opts)
		check(n + 1)
	}
	pushes := func() {
		for k := 0; k < 100; k++ {
			n++
			s.push(&undoStep{at: int64(n)}, &opts)
		}
	}
	if a := testing.AllocsPerRun(20, pushes); a != 0 {
		t.Errorf("%v allocations per 100 pushes", a)
	}
	check(n)
	s.undo = append([]undoStep(nil), s.undo...) // replaced: another array
	for k := 0; k < 50; k++ {
		n++
		s.push(&undoStep{at: int64(n)}, &opts)
		check(n)
	}
}

// kitUndoLimits returns an option setting the message and batch limits.
func kitUndoLimits(bytes, batch int) func(*Options) {
	return func(o *Options) {
		o.Limits = DefaultLimits()
		o.Limits.MaxMessageBytes, o.Limits.MaxBatch = bytes, batch
	}
}

// kitFitsPeers checks that every message fits the limits and that peer, with the same
// limits, takes each one.
func kitFitsPeers(t *testing.T, msgs [][]byte, lim Limits, peer *Replica) {
	t.Helper()
	for _, m := range msgs {
		if len(m) > lim.MaxMessageBytes {
			t.Errorf("a message of %d bytes, over the limit of %d", len(m), lim.MaxMessageBytes)
		}
		if subs := len(gjson.GetBytes(m, "operations").Array()); subs > lim.MaxBatch {
			t.Errorf("a batch of %d operations, over the limit of %d", subs, lim.MaxBatch)
		}
		if _, err := peer.Receive(m); err != nil {
			t.Fatalf("%s refuses %.200s: %v", peer.PeerID(), m, err)
		}
	}
}

// TestUndoFitsAPeersMessages: an undo restores old values, which may be far larger than
// what replaced them. Undoing a batch that deleted twenty large features makes more than a
// peer takes in one message: it goes out as several batches, in order, each within the
// limits, and the peer ends equal; redo and undo again too. A captured step of more edits
// than maxBatch is split by count. A single value over the limit (seeded from the server,
// never sent) makes the undo fail with too_large, changing nothing.
func TestUndoFitsAPeersMessages(t *testing.T) {
	t.Run("bytes", func(t *testing.T) {
		mod := kitUndoLimits(4<<10, 100)
		alice, bob, _, walls := kitTrio(t, mod)
		lim := alice.opts.Limits
		text := `"` + strings.Repeat("x", 400) + `"`
		meta := func(i int) string { return fmt.Sprintf(`{"id":"f%02d","layerId":"L"}`, i) }
		for i := range 20 {
			kitSet(t, alice, meta(i), "properties.text", text)
		}
		kitFitsPeers(t, alice.Flush(), lim, bob)
		kitTick(walls, 10)
		kitNoErr(t, alice.StartBatch())
		for i := range 20 {
			kitOK(t)(alice.Delete("feature", meta(i)))
		}
		kitNoErr(t, alice.CommitBatch())
		kitFitsPeers(t, alice.Flush(), lim, bob)
		for round := range 3 {
			kitTick(walls, 10)
			res := kitUndo(t, alice)
			if len(res.Changes) != 20 {
				t.Fatalf("round %d: undo made %d changes, want 20 features back", round, len(res.Changes))
			}
			msgs := alice.Flush()
			if len(msgs) < 3 {
				t.Errorf("round %d: the undo of 20 × 400 bytes left in %d messages of at most 4 KiB", round, len(msgs))
			}
			kitFitsPeers(t, msgs, lim, bob)
			kitSameState(t, alice, bob)
			kitWant(t, bob, "feature", meta(19), "properties.text", text)
			kitTick(walls, 10)
			kitRedo(t, alice)
			kitFitsPeers(t, alice.Flush(), lim, bob)
			kitSameState(t, alice, bob)
			if s := bob.State(); s != "[]" {
				t.Fatalf("round %d: after redo bob holds %s", round, s)
			}
		}
	})
	t.Run("count", func(t *testing.T) {
		alice, bob, _, walls := kitTrio(t, kitUndoLimits(32<<20, 8), func(o *Options) { o.CaptureInterval = hlc.Hour })
		for i := range 20 { // each its own message, all one undo step
			kitSet(t, alice, fmt.Sprintf(`{"id":"f%02d","layerId":"L"}`, i), "properties.name", `"n"`)
		}
		kitFitsPeers(t, alice.Flush(), alice.opts.Limits, bob)
		kitTick(walls, 10)
		kitUndo(t, alice)
		msgs := alice.Flush()
		if len(msgs) != 3 {
			t.Errorf("the undo of a step of 20 edits left in %d messages, want 3 (8, 8, 4)", len(msgs))
		}
		kitFitsPeers(t, msgs, alice.opts.Limits, bob)
		kitSameState(t, alice, bob)
		kitWant(t, alice, "feature", `{"id":"f19","layerId":"L"}`, "properties.name", "")
	})
	t.Run("order", func(t *testing.T) {
		// One step writing a path, then below it, then the path again: split one operation
		// a message, the restored values land as they do from a single batch.
		capture := func(o *Options) { o.CaptureInterval = hlc.Hour }
		edits := func(r *Replica) {
			kitSet(t, r, kitF1, "properties", `{"name":"a","color":"red"}`)
			r.Flush()
			r.undo.closeTop()
			kitOK(t)(r.Update("feature", kitF1, "properties.name", `"b"`))
			kitOK(t)(r.Update("feature", kitF1, "properties", `{"name":"c"}`))
			kitOK(t)(r.Update("feature", kitF1, "properties.color", `"blue"`))
			kitOK(t)(r.Unset("feature", kitF1, "properties.name"))
			r.Flush()
		}
		one, _, _, walls1 := kitTrio(t, capture)
		split, peer, _, walls2 := kitTrio(t, capture, kitUndoLimits(32<<20, 1))
		edits(one)
		edits(split)
		for _, w := range [][]*hlc.ManualClock{walls1, walls2} {
			kitTick(w, 10)
		}
		kitUndo(t, one)
		kitUndo(t, split)
		if n := len(one.Flush()); n != 1 {
			t.Errorf("default limits: the undo left in %d messages, want 1", n)
		}
		msgs := split.Flush()
		if len(msgs) < 2 {
			t.Errorf("maxBatch 1: the undo of 4 edits left in %d message", len(msgs))
		}
		if a, b := one.State(), split.State(); a != b {
			t.Errorf("undo split into messages: %s\nin one batch: %s", b, a)
		}
		kitWant(t, split, "feature", kitF1, "properties", `{"color":"red","name":"a"}`)
		slices.Reverse(msgs) // a peer receiving them in any order ends the same
		kitFitsPeers(t, msgs, split.opts.Limits, peer)
		kitWant(t, peer, "feature", kitF1, "properties", `{"color":"red","name":"a"}`)
	})
	t.Run("one value too large", func(t *testing.T) {
		// A feature written key by key, each edit within the limit, is larger than the
		// limit as a whole: the undo of its delete would upsert it in one operation.
		alice := kitReplica(t, "alice", hlc.NewManualClock(kitT0), kitUndoLimits(4<<10, 100))
		for i := range 6 {
			kitSet(t, alice, kitF1, fmt.Sprintf("properties.p%d", i), `"`+strings.Repeat("x", 1000)+`"`)
		}
		kitOK(t)(alice.Delete("feature", kitF1))
		alice.Flush()
		state, clock := alice.State(), alice.Clock()
		_, err := alice.Undo()
		if Code(err) != "too_large" || !errors.Is(err, ErrTooLarge) {
			t.Fatalf("undo restoring a 5 KB value under a 4 KiB limit: %v, want too_large", err)
		}
		if alice.State() != state || alice.Clock() != clock || alice.Pending() != 0 || !alice.CanUndo() {
			t.Errorf("the refused undo changed the replica")
		}
		if _, err := alice.Undo(); Code(err) != "too_large" {
			t.Errorf("the same undo again: %v, want too_large", err)
		}
	})
}

// TestUndoRestoresWhatAWriteBelowReplaced: an update below a value that is not an object
// replaces it by objects (geometry [1,2] by a write of geometry.type; no _umap_options by
// a write of its color). The undo restores the value replaced, not an empty object, on
// every replica. (Undoing only the path written left {"geometry":{}} and
// "_umap_options":{}: the test fails.)
func TestUndoRestoresWhatAWriteBelowReplaced(t *testing.T) {
	for _, tc := range []struct{ name, base, key, value string }{
		{"a value that is not an object", `{"geometry":[1,2],"properties":{"name":"n"}}`, "geometry.type", `"Point"`},
		{"objects that were not there", `{"properties":{"name":"n"}}`, "properties._umap_options.color", `"red"`},
		{"two levels made", `{"properties":{"name":"n"}}`, "properties.a.b.c", `1`},
		{"a string on the way", `{"properties":{"name":"n"}}`, "properties.name.first", `"x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			alice, bob, _, walls := kitTrio(t)
			kitOK(t)(alice.Upsert("feature", kitF1, tc.base))
			kitDeliver(t, alice.Flush(), bob)
			before := alice.State()
			kitTick(walls, 10)
			kitSet(t, alice, kitF1, tc.key, tc.value)
			after := alice.State()
			kitDeliver(t, alice.Flush(), bob)
			kitTick(walls, 10)
			kitUndo(t, alice)
			kitDeliver(t, alice.Flush(), bob)
			if got := alice.State(); got != before {
				t.Errorf("after undo:\n got %s\nwant %s", got, before)
			}
			kitSameState(t, alice, bob)
			kitTick(walls, 10)
			kitRedo(t, alice)
			kitDeliver(t, alice.Flush(), bob)
			if got := alice.State(); got != after {
				t.Errorf("after redo:\n got %s\nwant %s", got, after)
			}
			kitSameState(t, alice, bob)
		})
	}
	// An object the engine knows only by the paths written (loaded from the saved map, not
	// seeded) is undone path by path: "no properties" would drop what the page holds.
	alice, _, _, walls := kitTrio(t)
	kitSet(t, alice, kitF1, "properties._umap_options.color", `"red"`)
	kitTick(walls, 10)
	res := kitUndo(t, alice)
	if len(res.Changes) != 1 || res.Changes[0].Key != "properties._umap_options.color" {
		t.Errorf("undo on an object never upserted: changes %+v, want properties._umap_options.color unset", res.Changes)
	}
}

// TestUndoKeepsAPeersWorkAnOwnLaterEditOverwrote: alice writes a1; bob writes over it;
// alice writes a2 over bob's. Undoing a2 brings bob's value back; undoing a1 then must
// leave bob's value and report it skipped (bob wrote after a1). The write of bob's value
// is alice's undo, so the kept writes alone do not show it: the undo's write carries the
// clock of the work it restored. (Without it, bob's value was erased, nothing skipped.)
func TestUndoKeepsAPeersWorkAnOwnLaterEditOverwrote(t *testing.T) {
	for _, tc := range []struct{ name, key2, value2, wantKey string }{
		{"same path", "properties.name", `"a2"`, "properties.name"},
		{"alice's later edit of the parent", "properties", `{"name":"a2"}`, "properties.name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			alice, bob, _, walls := kitTrio(t)
			kitSet(t, alice, kitF1, "properties.name", `"a1"`)
			kitDeliver(t, alice.Flush(), bob)
			kitTick(walls, 10)
			kitSet(t, bob, kitF1, "properties.name", `"bob"`)
			kitDeliver(t, bob.Flush(), alice)
			kitTick(walls, 10)
			kitSet(t, alice, kitF1, tc.key2, tc.value2)
			kitDeliver(t, alice.Flush(), bob)
			kitTick(walls, 10)
			kitUndo(t, alice)
			kitWant(t, alice, "feature", kitF1, "properties.name", `"bob"`)
			// A replica restored from a snapshot now knows the same (checked below).
			re := kitRestore(t, kitSnapshot(t, alice), walls[0])
			kitTick(walls, 10)
			res := kitUndo(t, alice)
			kitWant(t, alice, "feature", kitF1, "properties.name", `"bob"`)
			if len(res.Skipped) != 1 || res.Skipped[0].Key != tc.wantKey {
				t.Errorf("second undo skipped %+v, want %s", res.Skipped, tc.wantKey)
			}
			kitDeliver(t, alice.Flush(), bob)
			kitSameState(t, alice, bob)
			// Redo of the second step (a2 over the restored bob) is alice's own work again.
			// (The first step, skipped whole, left nothing to redo.)
			kitTick(walls, 10)
			kitRedo(t, alice)
			kitWant(t, alice, "feature", kitF1, "properties.name", `"a2"`)
			if alice.CanRedo() {
				t.Error("a step skipped whole should leave nothing to redo")
			}
			// The snapshot kept what the undo's write restored.
			if res := kitUndo(t, re); len(res.Skipped) != 1 {
				t.Errorf("after a snapshot, the undo skipped %+v, want bob's place", res.Skipped)
			}
			kitWant(t, re, "feature", kitF1, "properties.name", `"bob"`)
		})
	}
}

// TestDroppedStepIsCleared: a step dropped past the depth is cleared field by field in the
// stack's array (dropOldest), so that it keeps nothing alive; every field of undoStep,
// whatever fields it gains, is zero after it.
func TestDroppedStepIsCleared(t *testing.T) {
	full := func() *undoStep {
		var st undoStep
		v := reflect.ValueOf(&st).Elem()
		for i := range v.NumField() {
			f := reflect.NewAt(v.Field(i).Type(), unsafe.Pointer(v.Field(i).UnsafeAddr())).Elem() // settable, unexported
			switch f.Kind() {
			case reflect.Slice:
				f.Set(reflect.MakeSlice(f.Type(), 1, 1))
			case reflect.String:
				f.SetString("g")
			case reflect.Int, reflect.Int64:
				f.SetInt(1)
			case reflect.Bool:
				f.SetBool(true)
			default:
				t.Fatalf("undoStep has a field %s of kind %s: set it here, and clear it in dropOldest", v.Type().Field(i).Name, f.Kind())
			}
		}
		return &st
	}
	opts := DefaultOptions()
	opts.UndoDepth = 2
	var s undoStacks
	for range 3 {
		s.push(full(), &opts)
	}
	if len(s.undo) != 2 || len(s.base) < 3 || &s.base[1] != &s.undo[0] {
		t.Fatalf("the stack is not the window of base it should be: %d steps, base %d", len(s.undo), len(s.base))
	}
	if !reflect.ValueOf(s.base[0]).IsZero() {
		t.Fatalf("the dropped step holds %+v, want the zero undoStep", s.base[0])
	}
}
