// mapcrdt/umap (umap.js): isDirty() and save() as uMap's UndoManager and SyncEngine have them
// (modules/sync/undo.js: isDirty() is true while the map has no id; modules/sync/engine.js:
// _getDirtyObjects() puts the map first when it has no id — "There is no operation for first
// map save" — and save() saves each object once, then saved() and toggleState()). The map's
// stored object is what MapUpdater.getStoredObject() gives: the map itself. And toggleState()
// (undo.js), which sets the page's buttons from the undo stacks and isDirty().

import { test } from "node:test";
import assert from "node:assert/strict";
import { createUmapSync } from "../umap.js";

test("a map never saved (no id) is dirty without any edit, and save() saves it first", async (t) => {
  const saves = [];
  const umap = {
    id: undefined,
    async save() {
      saves.push("map");
      this.id = 42; // the server made it
      return true;
    },
  };
  const layer = {
    async save() {
      saves.push(`layer of map ${umap.id}`);
      return true;
    },
  };
  const map = { update() {}, getStoredObject: () => umap };
  const datalayer = { update() {}, upsert() {}, delete() {}, getStoredObject: () => layer };
  const states = [];
  const sync = await createUmapSync({ updaters: { map, datalayer }, engineOptions: { peerId: "alice" }, onStateChange: (s) => states.push(s.dirty) });
  t.after(() => sync.close());
  assert.equal(sync.isDirty(), true, "uMap's saveAll() returns early when the map is not dirty");
  assert.equal(sync._undoManager.isDirty(), true);
  sync.upsert("datalayer", { id: "L1" }, { id: "L1", name: "Roads" });
  assert.equal(states.at(-1), true);
  assert.equal(await sync.save(), true);
  assert.deepEqual(saves, ["map", "layer of map 42"], "the map first: its datalayers' URLs need its id");
  assert.equal(sync.isDirty(), false);
  assert.equal(states.at(-1), false);
  // Saved, with nothing edited: nothing is saved again.
  assert.equal(await sync.save(), true);
  assert.equal(saves.length, 2);
});

test("a new map whose save fails stays dirty, and nothing after it is saved", async (t) => {
  const saves = [];
  const umap = {
    async save() {
      saves.push("map");
      return false;
    },
  };
  const layer = {
    async save() {
      saves.push("layer");
      return true;
    },
  };
  const map = { update() {}, getStoredObject: () => umap };
  const datalayer = { update() {}, upsert() {}, delete() {}, getStoredObject: () => layer };
  const sync = await createUmapSync({ updaters: { map, datalayer }, engineOptions: { peerId: "alice" } });
  t.after(() => sync.close());
  sync.upsert("datalayer", { id: "L1" }, { id: "L1" });
  assert.equal(await sync.save(), false);
  assert.deepEqual(saves, ["map"]);
  assert.equal(sync.isDirty(), true);
});

// A page as uMap's toggleState() sees it: the edit toolbar's undo and redo buttons, the body,
// buttons classed disabled-on-dirty (uMap's "view" button) and enabled-on-dirty (its save).
function fakeDocument() {
  const button = (cls) => ({ cls, disabled: "untouched" });
  const buttons = [button("edit-undo"), button("edit-redo"), button("disabled-on-dirty"), button("enabled-on-dirty"), button("enabled-on-dirty")];
  const classes = new Set();
  const doc = {
    queries: 0,
    buttons,
    body: { classList: { toggle: (c, on) => (on ? classes.add(c) : classes.delete(c)), contains: (c) => classes.has(c) } },
    querySelector(sel) {
      doc.queries++;
      return buttons.find((b) => `.${b.cls}` === sel) ?? null;
    },
    querySelectorAll(sel) {
      doc.queries++;
      return buttons.filter((b) => `.${b.cls}` === sel);
    },
  };
  // [undo disabled, redo disabled, body dirty, disabled-on-dirty, enabled-on-dirty…]
  doc.shown = () => [buttons[0].disabled, buttons[1].disabled, classes.has("umap-is-dirty"), ...buttons.slice(2).map((b) => b.disabled)];
  return doc;
}

test("without onStateChange, the page's undo, redo and save buttons follow the engine as uMap's toggleState sets them", async (t) => {
  const doc = fakeDocument();
  globalThis.document = doc;
  t.after(() => delete globalThis.document);
  const layer = { save: async () => true };
  const datalayer = { update() {}, upsert() {}, delete() {}, getStoredObject: () => layer };
  const sync = await createUmapSync({ updaters: { map: { update() {} }, datalayer }, engineOptions: { peerId: "alice" } });
  t.after(() => sync.close());
  const L1 = { id: "L1" };
  sync.update("datalayer", L1, "name", "Roads");
  assert.deepEqual(doc.shown(), [false, true, true, true, false, false]);
  sync._undoManager.undo();
  assert.deepEqual(doc.shown(), [true, false, true, true, false, false]);
  sync._undoManager.redo();
  assert.equal(await sync.save(), true);
  assert.deepEqual(doc.shown(), [false, true, false, false, true, true]);
  // uMap's bottom bar calls toggleState() when it redraws (its buttons made anew).
  for (const b of doc.buttons) b.disabled = "untouched";
  sync._undoManager.toggleState();
  assert.deepEqual(doc.shown(), [false, true, false, false, true, true]);
  // A batch: as uMap's, one toggle at its commit (none per edit).
  const before = doc.queries;
  sync.startBatch();
  for (let i = 0; i < 5; i++) sync.update("datalayer", L1, `opacity`, i / 10);
  assert.equal(doc.queries, before, "no toggle inside the batch");
  sync.commitBatch();
  assert.ok(doc.queries > before);
  assert.deepEqual(doc.shown(), [false, true, true, true, false, false]);
});

test("an onStateChange given replaces the default: the page is left alone", async (t) => {
  const doc = fakeDocument();
  globalThis.document = doc;
  t.after(() => delete globalThis.document);
  const states = [];
  const sync = await createUmapSync({ updaters: { datalayer: { update() {} } }, engineOptions: { peerId: "alice" }, onStateChange: (s) => states.push(s) });
  t.after(() => sync.close());
  sync.update("datalayer", { id: "L1" }, "name", "Roads");
  assert.deepEqual(states, [{ canUndo: true, canRedo: false, dirty: true }]);
  assert.equal(doc.queries, 0);
});
