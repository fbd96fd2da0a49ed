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
// drop it else; the map updater has no upsert. A datalayer is modelled as uMap's DataLayer
// holds it: {options}, its options the upserted value (createDataLayer → setOptions, with a
// remoteData object at least); uMap's form edits them as the path options.name.

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
      const options = structuredClone(value._umap_options || value); // createDataLayer
      options.remoteData ??= {};
      model.layers[value.id] = { options };
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
  alice.upsert("datalayer", L1, { id: "L1", name: "Roads", color: "Red", displayOnLoad: true, remoteData: {} });
  deliver();
  assert.deepEqual(model.layers.L1.options, { id: "L1", name: "Roads", color: "Red", displayOnLoad: true, remoteData: {} });
  calls.length = 0;
  alice.upsert("datalayer", L1, { id: "L1", color: "Blue", displayOnLoad: true, remoteData: {} });
  deliver();
  assert.deepEqual(model.layers.L1.options, bob.engine.get("datalayer", L1), "bob's datalayer is the engine's");
  assert.deepEqual(model.layers.L1.options, { id: "L1", color: "Blue", displayOnLoad: true, remoteData: {} });
  // uMap's calls: the upsert (a no-op on a datalayer it has), each option as a path of the
  // DataLayer, then an update without value (setObjectValue deletes) of the one the value lacks.
  const op = (rest) => ({ subject: "datalayer", metadata: { id: "L1" }, ...rest });
  assert.deepEqual(calls, [
    op({ verb: "upsert", value: { id: "L1", color: "Blue", displayOnLoad: true, remoteData: {} }, hasValue: true }),
    op({ verb: "update", key: "options.color", value: "Blue", hasValue: true }),
    op({ verb: "update", key: "options.displayOnLoad", value: true, hasValue: true }),
    op({ verb: "update", key: "options.remoteData", value: {}, hasValue: true }),
    op({ verb: "update", key: "options.name", hasValue: false }),
  ]);
  // An option set since by uMap's form (options.description), then a whole value without it.
  alice.update("datalayer", L1, "options.description", "main roads");
  deliver();
  assert.equal(model.layers.L1.options.description, "main roads");
  alice.upsert("datalayer", L1, { id: "L1", name: "Streets", remoteData: {} });
  deliver();
  assert.deepEqual(model.layers.L1.options, { id: "L1", name: "Streets", remoteData: {} });
  // A delete, then an upsert: the layer shows the new value, then only what it held is
  // taken away by the next.
  alice.delete("datalayer", L1);
  alice.upsert("datalayer", L1, { id: "L1", opacity: 0.5 });
  deliver();
  assert.deepEqual(model.layers.L1.options, { id: "L1", opacity: 0.5 });
  alice.upsert("datalayer", L1, { id: "L1", color: "Green" });
  calls.length = 0;
  deliver();
  assert.deepEqual(model.layers.L1.options, { id: "L1", color: "Green" });
  assert.deepEqual(
    calls.filter((c) => !c.hasValue).map((c) => c.key),
    ["options.opacity"],
  );
});

test("an undo or redo of bob's own upsert of a datalayer takes away the options the value it restores lacks", async (t) => {
  const { bob, model } = await setup(t);
  // uMap's UI makes the datalayer, then syncs its options (createDataLayer), then a second
  // upsert of it (as a mapcrdt client may make; uMap's restore() updates options whole).
  model.layers.L1 = { options: { id: "L1", name: "Roads", remoteData: {} } };
  bob.upsert("datalayer", L1, { id: "L1", name: "Roads", remoteData: {} });
  model.layers.L1.options = { id: "L1", name: "Roads", description: "all of them", color: "Red", remoteData: {} };
  bob.upsert("datalayer", L1, { id: "L1", name: "Roads", description: "all of them", color: "Red", remoteData: {} }, { id: "L1", name: "Roads", remoteData: {} });
  bob.undo();
  assert.deepEqual(model.layers.L1.options, { id: "L1", name: "Roads", remoteData: {} });
  assert.deepEqual(model.layers.L1.options, bob.engine.get("datalayer", L1));
  bob.redo();
  assert.deepEqual(model.layers.L1.options, { id: "L1", name: "Roads", description: "all of them", color: "Red", remoteData: {} });
  // uMap's form edits, then an undo of the upsert that came before them: the option the
  // form added, which the restored value lacks, goes.
  model.layers.L1.options.opacity = 0.4;
  bob.update("datalayer", L1, "options.opacity", 0.4);
  model.layers.L1.options.color = "Blue";
  bob.update("datalayer", L1, "options.color", "Blue", "Red");
  bob.undo(); // options.color back to the oldValue uMap gave: Red
  assert.deepEqual(model.layers.L1.options, { id: "L1", name: "Roads", description: "all of them", color: "Red", opacity: 0.4, remoteData: {} });
  bob.undo(); // the first edit under options: the engine takes "options" away whole
  assert.deepEqual(model.layers.L1.options, { id: "L1", name: "Roads", description: "all of them", color: "Red", remoteData: {} });
  bob.undo(); // the second upsert
  assert.deepEqual(model.layers.L1.options, { id: "L1", name: "Roads", remoteData: {} });
  assert.deepEqual(model.layers.L1.options, bob.engine.get("datalayer", L1));
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
  model.layers.L1 = { options: { id: "L1", name: "Roads", color: "Red" } }; // the page drew the engine's map
  alice.upsert("datalayer", L1, { id: "L1", color: "Red" });
  deliver();
  assert.deepEqual(model.layers.L1.options, { id: "L1", color: "Red" });
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

test("a datalayer's first color set in uMap's form, then undone, goes from every map", async (t) => {
  const peers = {};
  for (const name of ["alice", "bob"]) {
    const layers = {};
    const calls = [];
    const errors = [];
    const sync = await createUmapSync({ updaters: { datalayer: realDataLayers(layers, calls) }, engineOptions: { peerId: name }, onError: (e) => errors.push(e) });
    t.after(() => sync.close());
    peers[name] = { sync, layers, calls, errors };
  }
  const { alice, bob } = peers;
  const deliver = () => {
    for (const m of alice.sync.engine.flush()) bob.sync.receive(m);
  };
  // createDataLayer, then the form: options.color had no value (oldValue undefined).
  alice.layers.L1 = { options: { id: "L1", name: "Roads", remoteData: {} } };
  alice.sync.upsert("datalayer", L1, { id: "L1", name: "Roads", remoteData: {} });
  alice.layers.L1.options.color = "Red";
  alice.sync.update("datalayer", L1, "options.color", "Red", undefined);
  alice.layers.L1.options.name = "Streets";
  alice.sync.update("datalayer", L1, "options.name", "Streets", "Roads");
  deliver();
  assert.deepEqual(bob.layers.L1, alice.layers.L1);
  alice.sync.undo(); // the name: back to Roads
  alice.sync.undo(); // the color: the engine takes "options" away (it held the color only)
  deliver();
  const expected = { options: { id: "L1", name: "Roads", remoteData: {} } };
  assert.deepEqual(alice.layers.L1, expected, "alice's map");
  assert.deepEqual(bob.layers.L1, expected, "bob's map");
  assert.deepEqual([alice.errors, bob.errors], [[], []]);
  assert.ok(![...alice.calls, ...bob.calls].some((c) => c.key === "options"), "no update of options itself");
  alice.sync.redo();
  alice.sync.redo();
  deliver();
  assert.deepEqual(bob.layers.L1, { options: { id: "L1", name: "Streets", color: "Red", remoteData: {} } });
  assert.deepEqual(alice.layers.L1, bob.layers.L1);
});

test("an unset under options shows the option the value holds itself again, and a later value still takes it away", async (t) => {
  const { alice, bob, model, deliver } = await setup(t);
  alice.upsert("datalayer", L1, { id: "L1", name: "Roads", color: "Red" });
  alice.update("datalayer", L1, "options.name", "Streets", { oldValue: "Roads" });
  alice.update("datalayer", L1, "options.color", "Blue"); // no old value: undo takes the path away
  deliver();
  assert.deepEqual(model.layers.L1.options, { id: "L1", name: "Streets", color: "Blue", remoteData: {} });
  alice.undo(); // unset of options.color: the layer's own color shows again
  deliver();
  assert.deepEqual(model.layers.L1.options, { id: "L1", name: "Streets", color: "Red", remoteData: {} });
  // A whole value without color (a delete and an upsert in one message: one change, "set").
  alice.delete("datalayer", L1);
  alice.upsert("datalayer", L1, { id: "L1", name: "Avenues", remoteData: {} });
  deliver();
  assert.deepEqual(model.layers.L1.options, { id: "L1", name: "Avenues", remoteData: {} });
  assert.deepEqual(model.layers.L1.options, bob.engine.get("datalayer", L1));
});
