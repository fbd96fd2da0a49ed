// The Leaflet helper (leaflet.js) when the user deletes, with a real mouse, every vertex of a
// line or polygon, or every part of a multi-geometry: the feature is deleted through the
// engine (one delete, one undo step), as uMap's frontend deletes a feature left without
// geometry, rather than kept with a geometry no map draws. In headless Debian chromium (see
// chromium.js), with playwright's mouse.
//
// Two maps side by side, each bound to its own engine: a (the left map, where the mouse is)
// and b (the peer's). The page offers what uMap's does: Alt+click on a vertex deletes it
// (uMap's "Delete this vertex (Alt+Click)": vertex.delete(), whatever the vertices left),
// Shift+click on a vertex deletes the part it belongs to (uMap's "Delete this shape").

import { test } from "node:test";
import assert from "node:assert/strict";
import { inChromium } from "./chromium.js";

const page = `<!doctype html><meta charset="utf-8">
<link rel="stylesheet" href="/node_modules/leaflet/dist/leaflet.css">
<style>body{margin:0} .m{position:absolute;left:0;top:0;width:400px;height:300px} .m2{left:420px}</style>
<script src="/node_modules/leaflet/dist/leaflet-src.js"></script>
<script src="/node_modules/leaflet-editable/src/Leaflet.Editable.js"></script>
<script type="module">
import { createEngine } from "./index.js";
import { bindLeaflet } from "./leaflet.js";
let n = 0;
let current = [];
function mkmap(cls) {
  const div = document.createElement("div");
  div.className = cls;
  document.body.append(div);
  const featuresLayer = L.featureGroup();
  const map = L.map(div, { editable: true, editOptions: { featuresLayer }, zoomAnimation: false, fadeAnimation: false }).setView([48.85, 2.35], 13);
  featuresLayer.addTo(map);
  return { div, map, featuresLayer };
}
window.setup = async () => {
  for (const c of current) { c.ctl.unbind(); c.map.remove(); c.div.remove(); }
  const A = mkmap("m"), B = mkmap("m m2");
  const a = await createEngine({ peerId: "a" + ++n });
  const b = await createEngine({ peerId: "b" + n });
  const edits = [];
  const renders = [];
  const ctlA = bindLeaflet({ map: A.map, featuresLayer: A.featuresLayer, engine: a, layerId: "L1", L,
    onEdit: (e) => edits.push(e.kind + " " + e.id), onRender: (e) => renders.push(e.kind + " " + e.id) });
  const ctlB = bindLeaflet({ map: B.map, featuresLayer: B.featuresLayer, engine: b, layerId: "L1", L });
  A.map.on("editable:vertex:altclick", (e) => e.vertex.delete());
  A.map.on("editable:vertex:shiftclick", (e) => {
    const shape = e.layer instanceof L.Polygon ? e.layer.parentShape(e.vertex.latlngs) : e.vertex.latlngs;
    e.layer.editor.deleteShape(shape);
  });
  current = [{ ...A, ctl: ctlA }, { ...B, ctl: ctlB }];
  const env = { a, b, ctlA, ctlB, A, B, edits, renders };
  env.sync = () => { for (let i = 0; i < 3; i++) { for (const m of b.flush()) a.receive(m); for (const m of a.flush()) b.receive(m); } };
  window.env = env;
  return true;
};
const round = (x) => (Array.isArray(x) ? x.map(round) : typeof x === "number" ? Math.round(x * 1e6) / 1e6 : x);
const sides = (s) => (s === "a" ? { ctl: env.ctlA, engine: env.a, ...env.A } : { ctl: env.ctlB, engine: env.b, ...env.B });
// What a map draws: each layer of its featuresLayer, by feature id.
window.drawnOf = (s) => {
  const { ctl, featuresLayer } = sides(s);
  const out = {};
  for (const layer of featuresLayer.getLayers()) out[ctl.idOf(layer) ?? "?"] = round(layer.toGeoJSON(6).geometry);
  return out;
};
// What an engine holds: each feature's id → its geometry.
window.engineOf = (s) => {
  const out = {};
  for (const o of JSON.parse(sides(s).engine.state())) if (o.subject === "feature") out[o.metadata.id] = round(o.value.geometry);
  return out;
};
// Layers on a map the controller does not know, vertex handles of a layer gone or not edited.
window.ghosts = (s) => {
  const { ctl, featuresLayer, map } = sides(s);
  const out = [];
  map.eachLayer((l) => {
    if (l instanceof L.LayerGroup || l instanceof L.Renderer || l instanceof L.Tooltip) return;
    if (l === map.editTools.forwardLineGuide || l === map.editTools.backwardLineGuide) return;
    if (featuresLayer.hasLayer(l)) {
      if (ctl.idOf(l) === undefined) out.push("a layer the controller does not know");
    } else if (l instanceof L.Editable.VertexMarker || l instanceof L.Editable.MiddleMarker) {
      if (!l.editor.feature._map) out.push("a vertex handle of a layer not on the map");
      else if (!l.editor.enabled()) out.push("a vertex handle of an editor disabled");
      else if (ctl.idOf(l.editor.feature) === undefined) out.push("a vertex handle of a layer the controller does not know");
    } else {
      out.push("a layer outside featuresLayer");
    }
  });
  return out;
};
window.outcome = () => ({
  engineA: engineOf("a"), engineB: engineOf("b"), drawnA: drawnOf("a"), drawnB: drawnOf("b"),
  ghosts: [...ghosts("a"), ...ghosts("b")], layerA: !!env.ctlA.layerFor("F"), layerB: !!env.ctlB.layerFor("F"),
});
window.result = {};
</script>`;

const outer = [[2.33, 48.84], [2.37, 48.84], [2.37, 48.86], [2.33, 48.86], [2.33, 48.84]];
const hole = [[2.34, 48.845], [2.36, 48.845], [2.36, 48.855], [2.34, 48.855], [2.34, 48.845]];
const other = [[2.38, 48.84], [2.39, 48.84], [2.39, 48.85], [2.38, 48.84]];
const line = [[2.33, 48.845], [2.35, 48.85], [2.37, 48.845]];

const scenarios = {
  // A line whose vertices are deleted one by one (Alt+click on its first vertex).
  line: { featureType: "polyline", geometry: { type: "LineString", coordinates: line }, modifier: "Alt", path: [0] },
  // A polygon with a hole whose outline's vertices are deleted one by one.
  polygon: { featureType: "polygon", geometry: { type: "Polygon", coordinates: [outer, hole] }, modifier: "Alt", path: [0, 0] },
  // A multilinestring whose parts are deleted one by one (Shift+click on a vertex of the first part).
  multiLine: { featureType: "polyline", geometry: { type: "MultiLineString", coordinates: [line, [[2.33, 48.855], [2.37, 48.855]]] }, modifier: "Shift", path: [0, 0] },
  // A multipolygon (the first polygon with a hole) whose parts are deleted one by one.
  multiPolygon: { featureType: "polygon", geometry: { type: "MultiPolygon", coordinates: [[outer, hole], [other]] }, modifier: "Shift", path: [0, 0, 0] },
};

async function drive(p) {
  const ev = (f, arg) => p.evaluate(f, arg);
  const out = {};
  for (const [name, s] of Object.entries(scenarios)) {
    await ev(() => setup());
    await ev(([s]) => {
      env.b.upsert("feature", { id: "F", layerId: "L1", featureType: s.featureType }, { type: "Feature", geometry: s.geometry, properties: { name: "f" } });
      env.sync();
      env.ctlA.layerFor("F").enableEdit();
    }, [s]);
    const steps = [];
    for (let i = 0; i < 6; i++) {
      const at = await ev(([path]) => {
        let ll = env.ctlA.layerFor("F")?.getLatLngs();
        for (const j of path) ll = ll?.[j];
        const el = ll?.__vertex?.getElement();
        if (!el) return null;
        const r = el.getBoundingClientRect();
        return { x: r.x + r.width / 2, y: r.y + r.height / 2 };
      }, [s.path]);
      if (!at) break;
      await p.keyboard.down(s.modifier);
      await p.mouse.click(at.x, at.y);
      await p.keyboard.up(s.modifier);
      steps.push(await ev(async () => {
        await new Promise((res) => setTimeout(res, 0));
        env.sync();
        return outcome();
      }));
    }
    const undone = await ev(async () => {
      const undo = env.a.undo();
      env.sync();
      await new Promise((res) => setTimeout(res, 0));
      return { ...outcome(), undo: !!undo };
    });
    const redone = await ev(async () => {
      env.a.redo();
      env.sync();
      await new Promise((res) => setTimeout(res, 0));
      return outcome();
    });
    out[name] = { steps, undone, redone, edits: await ev(() => env.edits), renders: await ev(() => env.renders) };
  }

  // The controller's syncGeometry on a line the page emptied (setLatLngs([])): deleted too.
  await ev(() => setup());
  out.syncGeometry = await ev(async ([line]) => {
    env.b.upsert("feature", { id: "F", layerId: "L1", featureType: "polyline" }, { type: "Feature", geometry: { type: "LineString", coordinates: line }, properties: {} });
    env.sync();
    env.ctlA.layerFor("F").setLatLngs([]);
    const sent = env.ctlA.syncGeometry("F");
    env.sync();
    await new Promise((res) => setTimeout(res, 0));
    const gone = outcome();
    env.a.undo();
    env.sync();
    return { sent, gone, undone: outcome() };
  }, [line]);
  return out;
}

/** Both engines hold the same, both maps draw what the engines hold, no ghost. */
function assertConverged(o, what) {
  assert.deepEqual(o.engineA, o.engineB, `${what}: the engines differ`);
  assert.deepEqual(o.drawnA, o.engineA, `${what}: map A does not draw what the engine holds`);
  assert.deepEqual(o.drawnB, o.engineB, `${what}: map B does not draw what the engine holds`);
  assert.deepEqual(o.ghosts, [], `${what}: ghosts on the maps`);
}

test("the Leaflet helper deletes a feature whose every vertex or part the user deleted; undo brings it back (chromium)", async (t) => {
  const run = await inChromium(t, page, drive);
  if (!run) return;
  const { driven: r, errors } = run;

  const sg = r.syncGeometry;
  delete r.syncGeometry;
  assert.equal(sg.sent, true);
  assertConverged(sg.gone, "syncGeometry of an emptied line");
  assert.deepEqual(sg.gone.engineA, {});
  assertConverged(sg.undone, "syncGeometry of an emptied line, undone");
  assert.deepEqual(sg.undone.engineA.F, { type: "LineString", coordinates: line });

  for (const [name, o] of Object.entries(r)) {
    o.steps.forEach((step, i) => assertConverged(step, `${name}, click ${i + 1}`));
    const last = o.steps[o.steps.length - 1];
    assert.deepEqual(last.engineA, {}, `${name}: the feature left in the engine`);
    assert.equal(last.layerA, false, `${name}: the layer left in the controller`);
    assert.equal(last.layerB, false, `${name}: the peer's layer left`);
    // One delete, one undo step: the undo brings back the geometry before the last click,
    // on both maps and in both engines; the redo deletes it again.
    assert.equal(o.undone.undo, true, `${name}: nothing undone`);
    assertConverged(o.undone, `${name}, undone`);
    assert.deepEqual(o.undone.engineA, o.steps[o.steps.length - 2].engineA, `${name}: undo did not bring back the geometry before the last click`);
    assertConverged(o.redone, `${name}, redone`);
    assert.deepEqual(o.redone.engineA, {}, `${name}: redo did not delete it again`);
    assert.equal(o.edits.filter((e) => e === "deleted F").length, 1, `${name}: onEdit told of one deletion: ${o.edits}`);
    assert.equal(o.edits[o.edits.length - 1], "deleted F", `${name}: the deletion is the last edit`);
    assert.ok(o.renders.includes("removed F"), `${name}: onRender told of no removal: ${o.renders}`);
  }

  // A line: 3 vertices, then 2 (kept), then 1: no line, the feature deleted.
  assert.deepEqual(r.line.steps.map((s) => s.engineA.F?.coordinates.length), [2, undefined]);
  assert.deepEqual(r.line.undone.engineA.F, { type: "LineString", coordinates: line.slice(1) });
  // A polygon: its outline of 4 vertices, then 3 (kept, with its hole), then 2: no outline
  // left, the feature deleted — its hole is not made the outline (a hole-only leftover).
  assert.deepEqual(r.polygon.steps.map((s) => s.engineA.F?.coordinates.map((ring) => ring.length)), [[4, 5], undefined]);
  assert.deepEqual(r.polygon.undone.engineA.F.coordinates[1], hole, "the hole back with the undo");
  // Parts: one left (kept, still a multi-geometry), then none: the feature deleted.
  assert.deepEqual(r.multiLine.steps.map((s) => s.engineA.F?.type), ["MultiLineString", undefined]);
  assert.deepEqual(r.multiLine.undone.engineA.F.coordinates, [[[2.33, 48.855], [2.37, 48.855]]]);
  assert.deepEqual(r.multiPolygon.steps.map((s) => s.engineA.F?.type), ["MultiPolygon", undefined]);
  assert.deepEqual(r.multiPolygon.undone.engineA.F.coordinates, [[other]]);

  assert.deepEqual(errors, [], "nothing thrown");
});
