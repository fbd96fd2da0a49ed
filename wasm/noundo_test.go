package main

import "testing"

// MethodEdit's 8th argument, undo "false", makes an edit no undo step (crdt.Edit.NoUndo);
// anything but "false" or "" is a bad_option error that changes nothing.
func TestEditUndoFalse(t *testing.T) {
	x := newTester(t)
	a := x.create("a")
	x.must(MethodEdit, a, "upsert", "feature", meta, "", feat)
	x.must(MethodEdit, a, "update", "feature", meta, "properties.name", `"y"`, "", "", "")
	x.must(MethodEdit, a, "update", "feature", meta, "_ref", `"v1"`, "", "", "false")
	for _, bad := range []string{"true", "0", "False"} {
		x.fails("bad_option", MethodEdit, a, "update", "feature", meta, "_ref", `"v2"`, "", "", bad)
	}
	if got := x.must(MethodGet, a, "feature", meta, "_ref"); got != `"v1"` {
		t.Fatalf("_ref = %s after refused edits, want \"v1\"", got)
	}
	x.must(MethodUndo, a) // the name, not _ref
	if got := x.must(MethodGet, a, "feature", meta, "properties.name"); got != `"x"` {
		t.Fatalf("after undo name = %s, want \"x\"", got)
	}
	if got := x.must(MethodGet, a, "feature", meta, "_ref"); got != `"v1"` {
		t.Fatalf("after undo _ref = %s, want \"v1\"", got)
	}
}
