// mapcrdt/umap (umap.js): isDirty() and save() as uMap's UndoManager and SyncEngine have them
// (modules/sync/undo.js: isDirty() is true while the map has no id; modules/sync/engine.js:
// _getDirtyObjects() puts the map first when it has no id — "There is no operation for first
// map save" — and save() saves each object once, then saved() and toggleState()). The map's
// stored object is what MapUpdater.getStoredObject() gives: the map itself.

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
