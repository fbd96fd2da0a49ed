// mapcrdt/umap (umap.js): a new whole value of an object uMap's map shows (an upsert of a
// datalayer or of the map it has, an undo or redo of one) must leave uMap's object equal to
// the engine's value — the keys the new value lacks taken away too.
//
// The fake updaters do what uMap's do (umap/static/umap/js/modules/sync/updaters.js, the
// version that goes with umap-project/umap@bffbeb52's engine.js): every call goes through
// BaseUpdater.applyMessage; DataLayerUpdater.upsert creates a datalayer only when none has
// value.id ("Upsert only happens when a new datalayer is created": one it has is left as it
// is), from value._umap_options || value; DataLayerUpdater.update and MapUpdater.update
// write the key with Utils.setObjectValue (a value of undefined deletes the key; a path whose
// parent is missing is dropped) when Utils.fieldInSchema(key) says the field is uMap's, and
// drop it else; the map updater has no upsert. A datalayer object is modelled as the options
// it was made from (uMap keeps them in datalayer.options), which the engine's value is.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createUmapSync } from "../umap.js";
import { createEngine } from "../index.js";

// A few of uMap's schema fields (umap/static/umap/js/modules/schema.js).
const SCHEMA = new Set(["name", "description", "color", "opacity", "displayOnLoad", "zoom", "type", "remoteData"]);

// Utils.fieldInSchema: the name after an "options." or "properties." prefix, up to its first dot.
function fieldInSchema(key) {
  if (typeof key !== "string") return false;
  const name = ["options.", "properties."].reduce((acc, prefix) => acc.replace(prefix, ""), key);
  return SCHEMA.has(name.split(".")[0]);
}

// Utils.setObjectValue.
function setObjectValue(obj, key, value) {
  const parts = key.split(".");
  const lastKey = parts.pop();
  const objectToSet = parts.reduce((currentObj, part) => {
    if (currentObj !== undefined && part in currentObj) return currentObj[part];
  }, obj);
  if (objectToSet === undefined) return;
  if (typeof value === "undefined") delete objectToSet[lastKey];
  else objectToSet[lastKey] = structuredClone(value);
}

function umapUpdaters(model) {
  const calls = [];
  class BaseUpdater {
    applyMessage(payload) {
      calls.push({ ...structuredClone(payload), hasValue: "value" in payload });
      return this[payload.verb](payload);
    }
  }
  const datalayer = new (class extends BaseUpdater {
    upsert({ value }) {
      if (model.layers[value.id]) return; // getDataLayerFromID found it
      model.layers[value.id] = structuredClone(value._umap_options || value); // createDataLayer
    }
    update({ key, metadata, value }) {
      const layer = model.layers[metadata.id];
      // datalayer.render([key]) after it: without a datalayer, a TypeError.
      if (layer === undefined) throw new TypeError("Cannot read properties of undefined (reading 'render')");
      if (fieldInSchema(key)) setObjectValue(layer, key, value);
    }
    delete({ metadata }) {
      delete model.layers[metadata.id];
    }
  })();
  // FeatureUpdater: upsert of a feature it has sets its geometry only, else makeFeature
  // (geometry and properties, with the _umap_options its constructor gives); update writes
  // the key (geometry whole).
  const feature = new (class extends BaseUpdater {
    upsert({ metadata, value }) {
      const f = model.features[metadata.id];
      if (f) f.geometry = structuredClone(value.geometry);
      else model.features[metadata.id] = structuredClone({ geometry: value.geometry, properties: { _umap_options: {}, ...value.properties } });
    }
    update({ key, metadata, value }) {
      const f = model.features[metadata.id];
      if (f === undefined) return; // "Unable to find feature"
      if (key === "geometry") f.geometry = structuredClone(value);
      else setObjectValue(f, key, value);
    }
    delete({ metadata }) {
      delete model.features[metadata.id];
    }
  })();
  const map = new (class extends BaseUpdater {
    update({ key, value }) {
      if (fieldInSchema(key)) setObjectValue(model.map, key, value);
    }
  })();
  return { calls, updaters: { map, datalayer, feature } };
}

async function setup(t, bobEngine) {
  const alice = await createEngine({ peerId: "alice" });
  const model = { map: {}, layers: {}, features: {} };
  const { calls, updaters } = umapUpdaters(model);
  const errors = [];
  const options = { updaters, onError: (e) => errors.push(e) };
  const bob = await createUmapSync(bobEngine ? { ...options, engine: bobEngine } : { ...options, engineOptions: { peerId: "bob" } });
  t.after(() => assert.deepEqual(errors, [], "no updater threw"));
  t.after(() => {
    alice.close();
    bob.close();
    bobEngine?.close();
  });
  const deliver = () => {
    for (const m of alice.flush()) bob.receive(m);
  };
  return { alice, bob, model, calls, deliver };
}

const L1 = { id: "L1" };

test("a peer's upsert of a datalayer bob shows, its options without name, takes the name away", async (t) => {
  const { alice, bob, model, calls, deliver } = await setup(t);
  alice.upsert("datalayer", L1, { id: "L1", name: "Roads", color: "Red", displayOnLoad: true });
  deliver();
  assert.deepEqual(model.layers.L1, { id: "L1", name: "Roads", color: "Red", displayOnLoad: true });
  calls.length = 0;
  alice.upsert("datalayer", L1, { id: "L1", color: "Blue", displayOnLoad: true });
  deliver();
  assert.deepEqual(model.layers.L1, bob.engine.get("datalayer", L1), "bob's datalayer is the engine's");
  assert.deepEqual(model.layers.L1, { id: "L1", color: "Blue", displayOnLoad: true });
  // uMap's calls: the upsert (a no-op on a datalayer it has), the value's keys, then an
  // update without value (setObjectValue deletes) for the key the value lacks.
  const op = (rest) => ({ subject: "datalayer", metadata: { id: "L1" }, ...rest });
  assert.deepEqual(calls, [
    op({ verb: "upsert", value: { id: "L1", color: "Blue", displayOnLoad: true }, hasValue: true }),
    op({ verb: "update", key: "color", value: "Blue", hasValue: true }),
    op({ verb: "update", key: "displayOnLoad", value: true, hasValue: true }),
    op({ verb: "update", key: "name", hasValue: false }),
  ]);
  // A key set by an update since, then a whole value without it: it goes too.
  alice.update("datalayer", L1, "description", "main roads");
  deliver();
  assert.equal(model.layers.L1.description, "main roads");
  alice.upsert("datalayer", L1, { id: "L1", name: "Streets" });
  deliver();
  assert.deepEqual(model.layers.L1, { id: "L1", name: "Streets" });
  // A delete, then an upsert: created afresh, nothing of the old layer is taken twice.
  alice.delete("datalayer", L1);
  alice.upsert("datalayer", L1, { id: "L1", opacity: 0.5 });
  deliver();
  alice.upsert("datalayer", L1, { id: "L1", color: "Green" });
  calls.length = 0;
  deliver();
  assert.deepEqual(model.layers.L1, { id: "L1", color: "Green" });
  assert.deepEqual(
    calls.filter((c) => !c.hasValue).map((c) => c.key),
    ["opacity"],
  );
});

test("an undo or redo of bob's own upsert of a datalayer takes away the keys the value it restores lacks", async (t) => {
  const { bob, model } = await setup(t);
  // uMap's UI makes the datalayer, then syncs its options (createDataLayer), then a second
  // upsert (what a restore of an older version of its options does in one step).
  model.layers.L1 = { id: "L1", name: "Roads" };
  bob.upsert("datalayer", L1, { id: "L1", name: "Roads" });
  model.layers.L1 = { id: "L1", name: "Roads", description: "all of them", color: "Red" };
  bob.upsert("datalayer", L1, { id: "L1", name: "Roads", description: "all of them", color: "Red" }, { id: "L1", name: "Roads" });
  bob.undo();
  assert.deepEqual(model.layers.L1, { id: "L1", name: "Roads" });
  assert.deepEqual(model.layers.L1, bob.engine.get("datalayer", L1));
  bob.redo();
  assert.deepEqual(model.layers.L1, { id: "L1", name: "Roads", description: "all of them", color: "Red" });
  // An update of bob's, then an undo of an upsert that came before it: the update's key,
  // which the restored value lacks, goes.
  model.layers.L1.opacity = 0.4;
  bob.update("datalayer", L1, "opacity", 0.4);
  bob.update("datalayer", L1, "color", "Blue", "Red");
  bob.undo(); // color back to Red
  bob.undo(); // opacity unset
  bob.undo(); // the second upsert
  assert.deepEqual(model.layers.L1, { id: "L1", name: "Roads" });
  assert.deepEqual(model.layers.L1, bob.engine.get("datalayer", L1));
});

test("a peer's upsert of the map (an updater without upsert) takes away the keys the value lacks", async (t) => {
  const { alice, bob, model, deliver } = await setup(t);
  alice.upsert("map", {}, { name: "My map", zoom: 5, color: "Red" });
  deliver();
  assert.deepEqual(model.map, { name: "My map", zoom: 5, color: "Red" });
  alice.upsert("map", {}, { zoom: 6 });
  deliver();
  assert.deepEqual(model.map, { zoom: 6 });
  assert.deepEqual(model.map, bob.engine.get("map", {}));
});

test("over an engine that held the datalayer before the adapter came, its keys are known", async (t) => {
  const bobEngine = await createEngine({ peerId: "bob" });
  // "aaron" < "alice": in the same millisecond, alice's later write still wins (HLC ties go
  // to the greater peer id).
  const early = await createEngine({ peerId: "aaron" });
  early.upsert("datalayer", L1, { id: "L1", name: "Roads", color: "Red" });
  for (const m of early.flush()) bobEngine.receive(m);
  early.close();
  const { alice, model, deliver } = await setup(t, bobEngine);
  model.layers.L1 = { id: "L1", name: "Roads", color: "Red" }; // the page drew the engine's map
  alice.upsert("datalayer", L1, { id: "L1", color: "Red" });
  deliver();
  assert.deepEqual(model.layers.L1, { id: "L1", color: "Red" });
});

test("a feature's top-level key beside geometry and properties, gone from its new value, goes", async (t) => {
  const { alice, model, calls, deliver } = await setup(t);
  const f1 = { id: "f1", layerId: "L1" };
  const geometry = { type: "Point", coordinates: [1, 2] };
  alice.upsert("datalayer", L1, { id: "L1", name: "Roads" });
  alice.upsert("feature", f1, { type: "Feature", geometry, properties: { name: "a" } });
  deliver();
  // An upsert of the feature with a member uMap's makeFeature drops, then one without it.
  alice.upsert("feature", f1, { type: "Feature", geometry, properties: { name: "b" }, bbox: [1, 2, 1, 2] });
  deliver();
  assert.deepEqual(model.features.f1.bbox, [1, 2, 1, 2]);
  calls.length = 0;
  alice.upsert("feature", f1, { type: "Feature", geometry, properties: { name: "c" } });
  deliver();
  assert.deepEqual(model.features.f1, { geometry, properties: { _umap_options: {}, name: "c" } });
  assert.deepEqual(
    calls.map((c) => [c.verb, c.key]),
    [["upsert", undefined], ["update", "properties"], ["update", "bbox"]],
  );
});

// uMap's DataLayer as its updaters see it: createDataLayer(value._umap_options || value)
// makes one whose options are that value (setOptions; a remoteData object at least), and its
// form edits options.name: DataLayerUpdater.update writes the key on the DataLayer with
// setObjectValue when fieldInSchema(key) (options.name → name: in the schema).
function realDataLayers(layers, calls) {
  return {
    applyMessage(payload) {
      calls.push(structuredClone(payload));
      return this[payload.verb](payload);
    },
    upsert({ value }) {
      if (layers[value.id]) return;
      const options = structuredClone(value._umap_options || value);
      options.remoteData ??= {};
      layers[value.id] = { options };
    },
    update({ key, metadata, value }) {
      const layer = layers[metadata.id];
      if (layer === undefined) throw new TypeError("Cannot read properties of undefined (reading 'render')");
      if (fieldInSchema(key)) setObjectValue(layer, key, value);
    },
    delete({ metadata }) {
      delete layers[metadata.id];
    },
  };
}

test("a datalayer renamed after it was made (options.name) shows its name on a peer that joins later", async (t) => {
  const alice = await createEngine({ peerId: "alice" });
  t.after(() => alice.close());
  const peers = {};
  for (const name of ["carol", "bob"]) {
    const layers = {};
    const calls = [];
    const errors = [];
    const sync = await createUmapSync({ updaters: { datalayer: realDataLayers(layers, calls) }, engineOptions: { peerId: name }, onError: (e) => errors.push(e) });
    t.after(() => sync.close());
    peers[name] = { sync, layers, calls, errors };
  }
  const { carol, bob } = peers;
  // uMap's createDataLayer: sync.upsert(datalayer.options); then its form's edits.
  alice.upsert("datalayer", L1, { id: "L1", name: "Layer 1", displayOnLoad: true, remoteData: { format: "geojson" } });
  for (const m of alice.flush()) carol.sync.receive(m);
  alice.update("datalayer", L1, "options.name", "Roads");
  alice.update("datalayer", L1, "options.remoteData.url", "https://example.org/roads.geojson");
  alice.update("datalayer", L1, "options.color", "Red");
  for (const m of alice.flush()) carol.sync.receive(m);
  const expected = { options: { id: "L1", name: "Roads", displayOnLoad: true, color: "Red", remoteData: { format: "geojson", url: "https://example.org/roads.geojson" } } };
  assert.deepEqual(carol.layers.L1, expected, "carol, there all along");
  // Bob joins: one catch-up message, one "created" of the layer with every edit in it.
  alice.receive(bob.sync.engine.syncRequest("alice"));
  for (const m of alice.flush()) bob.sync.receive(m);
  assert.deepEqual([carol.errors, bob.errors], [[], []]);
  assert.deepEqual(bob.layers.L1, expected, "bob shows what carol shows");
  assert.equal(bob.calls[0].verb, "upsert");
  assert.deepEqual(bob.calls.slice(1).map((c) => [c.verb, c.key]).sort(), [
    ["update", "options.color"],
    ["update", "options.name"],
    ["update", "options.remoteData.url"],
  ]);
  assert.equal("options" in bob.calls[0].value, false, "the upsert's value holds the options only");
});
