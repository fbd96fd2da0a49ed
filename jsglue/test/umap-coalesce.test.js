// mapcrdt/umap (umap.js) over uMap's updaters when the engine coalesces: within one received
// message (a batch, a catch-up) "upsert a feature, then update its keys" is one whole-object
// change, which the adapter hands to upsert() — and uMap's FeatureUpdater.upsert of a
// feature it has takes the geometry only (updaters.js). The updaters must still end showing
// the engine's state. The fake updaters here do what uMap's do to the map's objects: a
// feature is its geometry and properties (makeFeature reads those; its type is a getter of
// the geometry, its id is the metadata's), and its properties always hold an _umap_options
// object (the constructor makes one; getOption reads it: without one, rendering throws);
// upsert of a feature it has sets the geometry only; update sets the key (geometry whole);
// upsert of a datalayer it has changes nothing. What a feature shows is its toGeoJSON():
// geometry and properties, an empty _umap_options left out.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createUmapSync } from "../umap.js";
import { createEngine } from "../index.js";

function setPath(obj, key, value) {
  const parts = key.split(".");
  const last = parts.pop();
  let o = obj;
  for (const p of parts) {
    if (o[p] === undefined || o[p] === null || typeof o[p] !== "object") o[p] = {};
    o = o[p];
  }
  if (value === undefined) delete o[last];
  else o[last] = structuredClone(value);
}

// A uMap feature made from GeoJSON (Feature's constructor).
const makeFeature = (value) => structuredClone({ geometry: value.geometry, properties: { _umap_options: {}, ...(value.properties ?? {}) } });

function umapUpdaters(model) {
  const calls = [];
  class Base {
    applyMessage(op) {
      calls.push(structuredClone(op));
      return this[op.verb](op);
    }
  }
  // What uMap's feature.render() after an update needs (getOption reads _umap_options).
  const renders = (f) => {
    const o = f.properties?._umap_options;
    if (o === null || typeof o !== "object") throw new TypeError("Cannot read properties of undefined (reading 'color')");
  };
  const feature = new (class extends Base {
    upsert({ metadata, value }) {
      const f = model.features[metadata.id];
      if (f) f.geometry = structuredClone(value.geometry);
      else model.features[metadata.id] = makeFeature(value);
    }
    update({ key, metadata, value }) {
      const f = model.features[metadata.id];
      if (f === undefined) return; // "Unable to find feature"
      if (key === "geometry") f.geometry = structuredClone(value);
      else setPath(f, key, value);
      renders(f);
    }
    delete({ metadata }) {
      delete model.features[metadata.id];
    }
  })();
  const datalayer = new (class extends Base {
    upsert({ metadata, value }) {
      model.layers[metadata.id] ??= structuredClone(value);
    }
    update({ key, metadata, value }) {
      if (model.layers[metadata.id]) setPath(model.layers[metadata.id], key, value);
    }
    delete({ metadata }) {
      delete model.layers[metadata.id];
    }
  })();
  const map = new (class extends Base {
    update({ key, value }) {
      if (key !== "numberOfConnectedPeers") setPath(model.map, key, value);
    }
  })();
  return { calls, updaters: { map, datalayer, feature } };
}

// canonical JSON text, members sorted, undefined members left out.
function canonical(v) {
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return "[" + v.map(canonical).join(",") + "]";
  const keys = Object.keys(v).filter((k) => v[k] !== undefined).sort();
  return "{" + keys.map((k) => JSON.stringify(k) + ":" + canonical(v[k])).join(",") + "}";
}

// A feature as uMap's toGeoJSON() gives it: geometry and properties, an empty
// _umap_options left out (cloneProperties).
function geojson(f) {
  const properties = { ...(f.properties ?? {}) };
  const o = properties._umap_options;
  if (o !== null && typeof o === "object" && Object.keys(o).length === 0) delete properties._umap_options;
  return { geometry: f.geometry, properties };
}

// The features and datalayers the engine holds, as uMap's objects show them.
function engineView(engine) {
  const out = { features: {}, layers: {} };
  for (const { subject, metadata, value } of JSON.parse(engine.state())) {
    if (subject === "feature") out.features[metadata.id] = geojson(value);
    if (subject === "datalayer") out.layers[metadata.id] = value;
  }
  return canonical(out);
}

async function setup(t) {
  const alice = await createEngine({ peerId: "alice" });
  const model = { map: {}, layers: {}, features: {} };
  const { calls, updaters } = umapUpdaters(model);
  const errors = [];
  const bob = await createUmapSync({ updaters, engineOptions: { peerId: "bob" }, onError: (e) => errors.push(e) });
  t.after(() => assert.deepEqual(errors, [], "no updater threw"));
  t.after(() => {
    alice.close();
    bob.close();
  });
  const deliver = () => {
    for (const m of alice.flush()) bob.receive(m);
  };
  // A catch-up: bob asks alice, alice answers with every operation bob lacks, in one message.
  const catchUp = () => {
    alice.receive(bob.engine.syncRequest("alice"));
    deliver();
  };
  const shown = () => canonical({ features: Object.fromEntries(Object.entries(model.features).map(([id, f]) => [id, geojson(f)])), layers: model.layers });
  return { alice, bob, model, calls, deliver, catchUp, shown };
}

const f1 = { id: "f1", layerId: "L1" };
const pt = (x, y) => ({ type: "Point", coordinates: [x, y] });

test("an upsert of a feature bob shows, with key edits after it in one message, shows them all", async (t) => {
  const { alice, bob, model, calls, deliver, shown } = await setup(t);
  alice.upsert("datalayer", { id: "L1" }, { name: "L" });
  alice.upsert("feature", f1, { type: "Feature", geometry: pt(0, 0), properties: { name: "first", color: "red" } });
  deliver();
  assert.deepEqual(geojson(model.features.f1), { geometry: pt(0, 0), properties: { name: "first", color: "red" } });
  // One batch: a new value of the whole feature, then a key of it.
  alice.batch(() => {
    alice.upsert("feature", f1, { type: "Feature", geometry: pt(1, 1), properties: { name: "second" } });
    alice.update("feature", f1, "properties.size", 3);
  });
  const n = calls.length;
  deliver();
  assert.deepEqual(geojson(model.features.f1), { geometry: pt(1, 1), properties: { name: "second", size: 3 } });
  assert.equal(shown(), engineView(bob.engine));
  // uMap's calls: the upsert (its geometry), then the key it leaves.
  assert.deepEqual(
    calls.slice(n).map((c) => [c.verb, c.key]),
    [
      ["upsert", undefined],
      ["update", "properties"],
    ],
  );
  // A value without properties: the feature shows none.
  alice.upsert("feature", f1, { type: "Feature", geometry: pt(2, 2) });
  deliver();
  assert.deepEqual(geojson(model.features.f1), { geometry: pt(2, 2), properties: {} });
  assert.equal(shown(), engineView(bob.engine));
});

test("a catch-up coalescing an upsert and edits of a feature bob shows shows them all", async (t) => {
  const { alice, bob, model, deliver, catchUp, shown } = await setup(t);
  alice.upsert("feature", f1, { type: "Feature", geometry: pt(0, 0), properties: { name: "first" } });
  deliver();
  // Bob misses these (offline), then catches up in one response.
  alice.upsert("feature", f1, { type: "Feature", geometry: pt(5, 5), properties: { name: "again" } });
  alice.update("feature", f1, "properties.name", "renamed");
  alice.update("feature", f1, "properties._umap_options.color", "blue");
  alice.flush();
  catchUp();
  assert.deepEqual(geojson(model.features.f1), { geometry: pt(5, 5), properties: { name: "renamed", _umap_options: { color: "blue" } } });
  assert.equal(shown(), engineView(bob.engine));
});

// mulberry32: a small seeded generator.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test("random remote upserts, edits, deletes and undos, live, batched or caught up: bob's updaters show bob's engine", async (t) => {
  for (let seed = 1; seed <= 40; seed++) {
    const { alice, bob, model, deliver, catchUp, shown } = await setup(t);
    const r = rng(seed);
    const pick = (xs) => xs[Math.floor(r() * xs.length)];
    const props = () => {
      const p = {};
      for (const k of ["name", "color", "size"]) if (r() < 0.5) p[k] = pick(["a", "b", 1, 2, null, { x: 1 }]);
      return p;
    };
    // The keys uMap's features edit (a whole "properties" it never sends for a feature).
    const keys = ["geometry", "geometry.coordinates", "properties.name", "properties.color", "properties._umap_options", "properties._umap_options.color"];
    const valueAt = (key) =>
      key === "geometry" ? pt(pick([0, 1, 2]), 3) : key === "geometry.coordinates" ? [pick([4, 5]), 6] : key === "properties._umap_options" ? pick([{}, { color: "red" }]) : pick(["x", "y", 7, true]);
    const edit = () => {
      const meta = { id: pick(["f1", "f2", "f3"]), layerId: "L1" };
      const k = r();
      if (k < 0.3) {
        const v = { type: "Feature" };
        if (r() < 0.9) v.geometry = pt(pick([0, 1, 2]), pick([0, 1]));
        if (r() < 0.8) v.properties = props();
        alice.upsert("feature", meta, v);
      } else if (k < 0.75) {
        const key = pick(keys);
        if (r() < 0.2 && key !== "properties._umap_options") alice.unset("feature", meta, key);
        else alice.update("feature", meta, key, valueAt(key));
      } else if (k < 0.85) {
        alice.delete("feature", meta);
      } else if (!alice.inBatch() && alice.canUndo()) {
        alice.undo();
      }
    };
    // The saved map: the page loaded these features (uMap's updaters find them; the engines
    // take them as base values).
    alice.upsert("datalayer", { id: "L1" }, { name: "L" });
    for (const id of ["f1", "f2", "f3"]) {
      const v = { type: "Feature", geometry: pt(9, 9), properties: { name: id } };
      alice.seed("feature", { id, layerId: "L1" }, v);
      bob.engine.seed("feature", { id, layerId: "L1" }, v);
      model.features[id] = makeFeature(v);
    }
    let offline = false;
    for (let step = 0; step < 60; step++) {
      if (r() < 0.3) alice.batch(() => { for (let i = 1 + Math.floor(r() * 4); i > 0; i--) edit(); });
      else edit();
      if (r() < 0.1) offline = !offline;
      if (offline) {
        alice.flush(); // lost to bob: he catches up later
        if (r() < 0.3) {
          catchUp();
          offline = false;
        }
      } else if (r() < 0.7) {
        deliver();
      }
      if (!offline) {
        deliver();
        assert.equal(shown(), engineView(bob.engine), `seed ${seed}, step ${step}`);
      }
    }
    catchUp();
    assert.equal(engineView(bob.engine), engineView(alice), `seed ${seed}: bob's engine ends as alice's`);
    assert.equal(shown(), engineView(bob.engine), `seed ${seed}: at the end`);
  }
});

test("an undo that takes a feature's _umap_options away leaves uMap's feature one (empty)", async (t) => {
  // uMap's toGeoJSON() leaves out an empty _umap_options: a new marker's upsert has none. Its
  // first color makes one; the engine undoes that by restoring its absence (DESIGN §7).
  // uMap's feature needs one: the updaters get an empty one, which uMap shows the same.
  const { alice, bob, model, deliver, shown } = await setup(t);
  alice.upsert("feature", f1, { type: "Feature", geometry: pt(0, 0), properties: { name: "m" } });
  alice.update("feature", f1, "properties._umap_options.color", "red");
  deliver();
  assert.equal(model.features.f1.properties._umap_options.color, "red");
  alice.undo();
  deliver();
  assert.deepEqual(model.features.f1.properties, { name: "m", _umap_options: {} });
  assert.equal(shown(), engineView(bob.engine));
  // bob's own undo reaches his own updaters the same way.
  bob.update("feature", f1, "properties._umap_options.color", "blue");
  model.features.f1.properties._umap_options.color = "blue"; // what uMap's form did
  bob.undo();
  assert.deepEqual(model.features.f1.properties, { name: "m", _umap_options: {} });
  // A peer's update of the whole properties (uMap sends none for a feature) gets one too.
  alice.update("feature", f1, "properties", { name: "n" });
  alice.unset("feature", f1, "properties._umap_options");
  deliver();
  assert.deepEqual(model.features.f1.properties, { name: "n", _umap_options: {} });
  alice.unset("feature", f1, "properties");
  deliver();
  assert.deepEqual(model.features.f1.properties, { _umap_options: {} });
  assert.equal(shown(), engineView(bob.engine));
});
