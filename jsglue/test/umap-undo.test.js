// mapcrdt/umap (umap.js): update()'s 6th argument. uMap's DataLayer.setReferenceVersion calls
// sync.update('_referenceVersion', version, null, {undo: false}) after each save: the
// server's version must not become an undo step, nor be reverted by one.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createUmapSync } from "../umap.js";

const L1 = { id: "L1" };

test("update(…, {undo: false}) makes no undo step; an older step's undo leaves what it wrote", async (t) => {
  const datalayer = { update() {}, upsert() {}, delete() {} }; // undos reach the updaters
  const sync = await createUmapSync({ updaters: { datalayer }, engineOptions: { peerId: "alice" } });
  t.after(() => sync.close());
  sync.update("datalayer", L1, "properties.name", "roads", undefined);
  sync.update("datalayer", L1, "_referenceVersion", "v1", null, { undo: false });
  // The user's undo after the save reverts the user's edit, not the version.
  assert.equal(sync.canUndo(), true);
  sync._undoManager.undo();
  assert.equal(sync.engine.get("datalayer", L1, "properties.name"), undefined);
  assert.equal(sync.engine.get("datalayer", L1, "_referenceVersion"), "v1");
  assert.equal(sync.canUndo(), false);
  // A save while a redo waits leaves the redo (uMap's update with undo false adds no stage).
  sync.update("datalayer", L1, "_referenceVersion", "v2", null, { undo: false });
  assert.equal(sync.canRedo(), true);
  sync._undoManager.redo();
  assert.equal(sync.engine.get("datalayer", L1, "properties.name"), "roads");
  // An older step whose place the version's update wrote since: left, and listed as skipped.
  sync.update("datalayer", L1, "properties.color", "red");
  sync.update("datalayer", L1, "properties.color", "blue", "red", { undo: false });
  const r = sync.undo();
  assert.deepEqual(r.skipped.map((s) => s.key), ["properties.color"]);
  assert.equal(sync.engine.get("datalayer", L1, "properties.color"), "blue");
  // As uMap's: options with undo true, or no options, make a step; options without undo
  // ({}: undo undefined, falsy) make none.
  sync.update("datalayer", L1, "properties.a", 1, undefined, { undo: true });
  sync.update("datalayer", L1, "properties.b", 1);
  sync.update("datalayer", L1, "properties.c", 1, undefined, {});
  sync.undo();
  sync.undo();
  assert.deepEqual(["a", "b", "c"].map((k) => sync.engine.get("datalayer", L1, `properties.${k}`)), [undefined, undefined, 1]);
  // An unset with undo false makes no step either: the next undo is the name's.
  sync.update("datalayer", L1, "properties.c", undefined, 1, { undo: false });
  assert.equal(sync.engine.get("datalayer", L1, "properties.c"), undefined);
  sync.undo();
  assert.equal(sync.engine.get("datalayer", L1, "properties.name"), undefined);
  assert.equal(sync.engine.get("datalayer", L1, "properties.c"), undefined);
  assert.equal(sync.canUndo(), false);
});

test("a save's _referenceVersion update (undo: false) leaves the map saved, as under uMap's engine", async (t) => {
  // uMap's DataLayer.save() ends with setReferenceVersion({response, sync: true}): an update
  // of _referenceVersion with {undo: false}, made while the adapter's save() runs. It is the
  // save's own: save() marks it saved with the rest (else every save() would leave the map
  // dirty, and the next save it again).
  let version = 0;
  let sync;
  const layer = {
    async save() {
      sync.update("datalayer", L1, "_referenceVersion", `v${++version}`, null, { undo: false });
      return true;
    },
  };
  const datalayer = { update() {}, upsert() {}, delete() {}, getStoredObject: () => layer };
  const states = [];
  sync = await createUmapSync({ updaters: { datalayer }, engineOptions: { peerId: "alice" }, onStateChange: (s) => states.push(s.dirty) });
  t.after(() => sync.close());
  sync.update("datalayer", L1, "properties.name", "roads");
  assert.equal(sync.isDirty(), true);
  assert.equal(await sync.save(), true);
  assert.equal(sync.isDirty(), false, "saved: the version's update is not an edit to save");
  assert.equal(states.at(-1), false);
  assert.equal(version, 1);
  // Nothing to save: no second save of the layer.
  assert.equal(await sync.save(), true);
  assert.equal(version, 1);
  // An edit of the user's while a save is under way stays dirty, and the version's update
  // made after it with it (save() cannot tell what the save sent): the next save sends both.
  layer.save = async () => {
    sync.update("datalayer", L1, "properties.name", "rivers");
    sync.update("datalayer", L1, "_referenceVersion", `v${++version}`, null, { undo: false });
    return true;
  };
  sync.update("datalayer", L1, "properties.name", "lakes");
  assert.equal(await sync.save(), true);
  assert.equal(version, 2);
  assert.equal(sync.isDirty(), true, "an edit made during the save is not saved by it");
  layer.save = async () => {
    sync.update("datalayer", L1, "_referenceVersion", `v${++version}`, null, { undo: false });
    return true;
  };
  assert.equal(await sync.save(), true);
  assert.equal(version, 3);
  assert.equal(sync.isDirty(), false);
  // Outside a save, such an edit is one to save (the engine's dirty() lists it).
  sync.update("datalayer", L1, "_referenceVersion", "v9", null, { undo: false });
  assert.equal(sync.isDirty(), true);
});

// uMap's FeatureUpdater (updaters.js): upsert of a feature it has sets value.geometry, else
// datalayer.makeFeature(value) (geojson.geometry || geojson); delete removes it. Both throw a
// TypeError on a value of null, as uMap's do.
function featureUpdater(features, calls) {
  return {
    applyMessage(op) {
      calls.push(structuredClone(op));
      return this[op.verb](op);
    },
    upsert({ metadata, value }) {
      const f = features[metadata.id];
      if (f) f.geometry = structuredClone(value.geometry);
      else features[metadata.id] = structuredClone({ geometry: value.geometry || value, properties: { _umap_options: {}, ...value.properties } });
    },
    update({ key, metadata, value }) {
      const f = features[metadata.id];
      if (f && key === "geometry") f.geometry = structuredClone(value);
    },
    delete({ metadata }) {
      delete features[metadata.id];
    },
  };
}

test("an undo of a feature uMap made (sync.upsert(toGeoJSON(), null)) deletes it on every map", async (t) => {
  const f1 = { featureType: "marker", id: "f1", layerId: "L1" };
  const geojson = { type: "Feature", geometry: { type: "Point", coordinates: [1, 2] }, properties: { name: "x" } };
  const peers = [];
  for (const name of ["alice", "bob"]) {
    const features = {};
    const calls = [];
    const errors = [];
    const sync = await createUmapSync({ updaters: { feature: featureUpdater(features, calls) }, engineOptions: { peerId: name }, onError: (e) => errors.push(e) });
    t.after(() => sync.close());
    peers.push({ sync, features, calls, errors });
  }
  const [a, b] = peers;
  const deliver = () => {
    for (const m of a.sync.engine.flush()) b.sync.receive(m);
  };
  // uMap's DataLayer.makeFeature: the feature is drawn, then synced with oldValue null.
  a.features.f1 = { geometry: geojson.geometry, properties: { _umap_options: {}, name: "x" } };
  a.sync.upsert("feature", f1, geojson, null);
  deliver();
  assert.ok(b.features.f1);
  a.sync._undoManager.undo();
  deliver();
  assert.deepEqual([a.errors, b.errors], [[], []], "no updater threw");
  assert.equal(a.features.f1, undefined, "alice's map no longer shows it");
  assert.equal(b.features.f1, undefined, "nor bob's");
  assert.equal(a.sync.engine.get("feature", f1), undefined);
  assert.equal(a.calls.at(-1).verb, "delete");
  // The redo makes it again on both.
  a.sync._undoManager.redo();
  deliver();
  assert.equal(a.features.f1.geometry.coordinates[0], 1);
  assert.equal(b.features.f1.geometry.coordinates[0], 1);
  assert.deepEqual([a.errors, b.errors], [[], []]);
});

test("an undo of a delete given oldValue null sends nothing a peer refuses", async (t) => {
  const f2 = { featureType: "marker", id: "f2", layerId: "L1" };
  const peers = [];
  for (const name of ["alice", "bob"]) {
    const features = {};
    const calls = [];
    const errors = [];
    const sync = await createUmapSync({ updaters: { feature: featureUpdater(features, calls) }, engineOptions: { peerId: name }, onError: (e) => errors.push(e) });
    t.after(() => sync.close());
    peers.push({ sync, features, calls, errors });
  }
  const [a, b] = peers;
  // A feature from the saved map (never upserted), deleted with no value to restore.
  a.sync.delete("feature", f2, null);
  a.sync.undo();
  for (const m of a.sync.engine.flush()) b.sync.receive(m); // threw bad_value (an upsert of null)
  assert.deepEqual([a.errors, b.errors], [[], []]);
  assert.equal(a.sync.engine.get("feature", f2), undefined);
  assert.ok(a.calls.every((c) => c.value !== null), "no upsert of null");
});

test("an undo, by other code on the same engine, of an upsert with oldValue null deletes the object, in uMap's object too", async (t) => {
  const f1 = { featureType: "marker", id: "f1", layerId: "L1" };
  const features = {};
  const calls = [];
  const errors = [];
  const sync = await createUmapSync({ updaters: { feature: featureUpdater(features, calls) }, engineOptions: { peerId: "bob" }, onError: (e) => errors.push(e) });
  t.after(() => sync.close());
  // Another user of the engine (the Leaflet helper, a script) makes a feature the adapter's
  // updaters did not draw, with oldValue null (there was none), and undoes it: the engine
  // deletes it.
  sync.engine.upsert("feature", f1, { type: "Feature", geometry: { type: "Point", coordinates: [1, 2] }, properties: {} }, { oldValue: null });
  features.f1 = { geometry: { type: "Point", coordinates: [1, 2] }, properties: { _umap_options: {} } };
  sync.engine.undo();
  assert.equal(sync.engine.get("feature", f1), undefined);
  assert.deepEqual(errors, []);
  assert.equal(features.f1, undefined);
  assert.equal(calls.at(-1).verb, "delete");
  sync.engine.redo();
  assert.deepEqual(errors, []);
  assert.deepEqual(features.f1.geometry, { type: "Point", coordinates: [1, 2] });
});

test("_undoManager.undo(true) redoes, as uMap's UndoManager.undo(redo) does", async (t) => {
  const sync = await createUmapSync({ updaters: { datalayer: { update() {} } }, engineOptions: { peerId: "alice" } });
  t.after(() => sync.close());
  sync.update("datalayer", L1, "name", "roads");
  sync._undoManager.undo();
  assert.equal(sync.engine.get("datalayer", L1, "name"), undefined);
  assert.equal(sync._undoManager.undo(true).done, true);
  assert.equal(sync.engine.get("datalayer", L1, "name"), "roads");
  sync._undoManager.undo(false);
  assert.equal(sync.engine.get("datalayer", L1, "name"), undefined);
});
