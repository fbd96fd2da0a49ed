// EditOptions.undo: false (crdt.Edit.NoUndo): an edit kept out of the undo history, as uMap's
// update(…, {undo: false}) of a datalayer's _referenceVersion after a save.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createEngine, MapcrdtError } from "../index.js";

const L1 = { id: "L1" };

test("an edit with undo: false makes no step, leaves the redo, and an older step's undo leaves it", async () => {
  const a = await createEngine({ peerId: "alice" });
  a.update("datalayer", L1, "properties.name", "roads");
  a.update("datalayer", L1, "_referenceVersion", "v1", { undo: false });
  assert.equal(a.flush().length, 2, "both edits are sent");
  // The undo reverts the name, not the version; then there is nothing to undo.
  let res = a.undo();
  assert.deepEqual(res.skipped, []);
  assert.equal(a.get("datalayer", L1, "properties.name"), undefined);
  assert.equal(a.get("datalayer", L1, "_referenceVersion"), "v1");
  assert.equal(a.canUndo(), false);
  // A save while a redo waits leaves the redo.
  a.edit({ verb: "update", subject: "datalayer", metadata: L1, key: "_referenceVersion", value: "v2", undo: false });
  assert.equal(a.canRedo(), true);
  a.redo();
  assert.equal(a.get("datalayer", L1, "properties.name"), "roads");
  // An older step's undo leaves a place written since with undo: false, and says so — also
  // in an engine restored from a snapshot.
  a.update("datalayer", L1, "properties.color", "red");
  a.update("datalayer", L1, "properties.color", "blue", { undo: false });
  const b = await createEngine({ snapshot: a.snapshot() });
  for (const e of [a, b]) {
    res = e.undo();
    assert.deepEqual(res.skipped, [{ subject: "datalayer", metadata: L1, key: "properties.color" }]);
    assert.equal(e.get("datalayer", L1, "properties.color"), "blue");
  }
  // undo: true is the default.
  a.update("datalayer", L1, "properties.color", "green", { undo: true });
  a.undo();
  assert.equal(a.get("datalayer", L1, "properties.color"), "blue");
  // An edit to save like any other.
  a.markSaved(a.clock());
  assert.deepEqual(a.dirty(), []);
  a.update("datalayer", L1, "_referenceVersion", "v3", { undo: false });
  assert.deepEqual(a.dirty().map((d) => d.subject), ["datalayer"]);
  a.close();
  b.close();
});

test("undo: false in a batch joins its message, not its step", async () => {
  const a = await createEngine({ peerId: "alice" });
  a.batch(() => {
    a.update("datalayer", L1, "properties.name", "roads");
    a.update("datalayer", L1, "_referenceVersion", "v1", { undo: false });
  });
  const msgs = a.flush();
  assert.equal(msgs.length, 1);
  assert.equal(JSON.parse(msgs[0]).operations.length, 2);
  a.undo();
  assert.equal(a.get("datalayer", L1, "properties.name"), undefined);
  assert.equal(a.get("datalayer", L1, "_referenceVersion"), "v1");
  a.close();
});

test("undo not a boolean is a bad_option error that changes nothing", async () => {
  const a = await createEngine({ peerId: "alice" });
  for (const undo of [0, 1, "false", null, {}]) {
    assert.throws(
      () => a.update("datalayer", L1, "_referenceVersion", "v1", { undo }),
      (e) => e instanceof MapcrdtError && e.code === "bad_option",
      `undo ${JSON.stringify(undo)}`,
    );
    assert.throws(
      () => a.edit({ verb: "delete", subject: "datalayer", metadata: L1, undo }),
      (e) => e instanceof MapcrdtError && e.code === "bad_option",
    );
  }
  assert.equal(a.get("datalayer", L1, "_referenceVersion"), undefined);
  assert.equal(a.canUndo(), false);
  assert.deepEqual(a.flush(), []);
  a.close();
});
