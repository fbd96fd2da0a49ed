// The Leaflet helper (leaflet.js) with the engine's undo and redo, many features at once, and
// errors thrown while it draws, in headless Debian chromium (see leaflet-browser.test.js).

import { test } from "node:test";
import assert from "node:assert/strict";
import { inChromium } from "./chromium.js";

const page = `<!doctype html><meta charset="utf-8">
<link rel="stylesheet" href="/node_modules/leaflet/dist/leaflet.css">
<script src="/node_modules/leaflet/dist/leaflet-src.js"></script>
<script src="/node_modules/leaflet-editable/src/Leaflet.Editable.js"></script>
<script type="module">
import { createEngine } from "./index.js";
import { bindLeaflet } from "./leaflet.js";
let n = 0;
async function setup(extra = {}) {
  const div = document.createElement("div");
  div.style.cssText = "width:400px;height:300px";
  document.body.append(div);
  const featuresLayer = L.featureGroup();
  const map = L.map(div, { editable: true, editOptions: { featuresLayer } }).setView([48.85, 2.35], 13);
  featuresLayer.addTo(map);
  const a = await createEngine({ peerId: "a" + ++n });
  const b = await createEngine({ peerId: "b" + n });
  const ctl = bindLeaflet({ map, featuresLayer, engine: b, layerId: "L1", L, ...extra });
  const send = () => { for (const m of a.flush()) b.receive(m); };
  const back = () => { for (const m of b.flush()) a.receive(m); };
  return { a, b, ctl, map, send, back };
}
const at = (m) => [m.getLatLng().lng, m.getLatLng().lat];
const point = (lng, lat) => ({ type: "Point", coordinates: [lng, lat] });
const scenarios = {
  // Undo and redo of a marker drag, a vertex drag, a drawn line, a deletion and property
  // changes redraw the layer; an undo of a drag the peer overwrote leaves the peer's place.
  async undo() {
    const { a, b, ctl, map, send, back } = await setup();
    const out = {};
    const id = ctl.addFeature({ geometry: point(2.35, 48.85), properties: { name: "m", _umap_options: { color: "red" } } });
    const m = ctl.layerFor(id);
    m.fire("dragstart");
    m.setLatLng([48.86, 2.36]);
    m.fire("dragend", { distance: 10 });
    b.undo();
    out.dragUndone = at(ctl.layerFor(id));
    b.redo();
    out.dragRedone = at(ctl.layerFor(id));

    const ring = [[2.35, 48.85], [2.36, 48.85], [2.36, 48.86], [2.35, 48.86], [2.35, 48.85]];
    const pid = ctl.addFeature({ geometry: { type: "Polygon", coordinates: [ring] }, properties: {} });
    const p = ctl.layerFor(pid);
    p.enableEdit();
    const vertex = p.getLatLngs()[0][1].__vertex;
    p.editor.fireAndForward("editable:vertex:dragstart", { vertex });
    vertex.latlng.update(L.latLng(48.849, 2.361));
    p.editor.refresh();
    p.editor.fireAndForward("editable:vertex:dragend", { vertex });
    p.editor.onEdited();
    b.undo();
    out.vertexUndone = p.toGeoJSON(6).geometry.coordinates[0];
    out.handleUndone = [p.getLatLngs()[0][1].__vertex.latlng.lng, p.getLatLngs()[0][1].__vertex.latlng.lat];
    b.redo();
    out.vertexRedone = p.toGeoJSON(6).geometry.coordinates[0][1];

    const line = map.editTools.startPolyline();
    line.editor.newPointForward(L.latLng(48.85, 2.35));
    line.editor.newPointForward(L.latLng(48.86, 2.36));
    map.editTools.commitDrawing();
    const lid = ctl.idOf(line);
    b.undo();
    out.drawnUndone = [ctl.layerFor(lid) === undefined, map.hasLayer(line)];
    b.redo();
    out.drawnRedone = ctl.layerFor(lid)?.toGeoJSON(6).geometry.coordinates ?? null;

    ctl.setProperties(id, { name: "n", "_umap_options.color": "blue" });
    const shown = () => { const f = ctl.features().find((f) => f.id === id); return [f.name, f.color, ctl.layerFor(id).getTooltip()?.getContent() ?? null]; };
    b.undo();
    out.propertiesUndone = shown();
    ctl.deleteFeature(id);
    b.undo();
    out.deleteUndone = ctl.layerFor(id) ? [shown(), at(ctl.layerFor(id))] : null;

    back();
    ctl.layerFor(id).fire("dragstart");
    ctl.layerFor(id).setLatLng([48.87, 2.37]);
    ctl.layerFor(id).fire("dragend", { distance: 10 });
    back();
    a.update("feature", { id, layerId: "L1", featureType: "marker" }, "geometry", point(2.3, 48.8));
    send();
    out.skipped = b.undo().skipped.map((s) => s.key);
    out.peerKept = at(ctl.layerFor(id));
    return out;
  },
  // An error thrown while a feature is drawn (here by onRender) is reported, and stops
  // nothing: the features after it are seeded and drawn, and the local edit is announced.
  async throwing() {
    const edits = [];
    const { b, ctl } = await setup({
      onRender: (e) => { if (e.id === "x1") throw new Error("boom"); },
      onEdit: (e) => edits.push(e.kind),
    });
    const f = (id) => ({ type: "Feature", id, geometry: point(2.35, 48.85), properties: { name: id } });
    const out = {};
    try { out.seeded = ctl.seed({ features: [f("x0"), f("x1"), f("x2")] }, "L1"); } catch (e) { out.seeded = String(e); }
    out.drawn = ctl.features().map((x) => x.id).sort();
    out.state = JSON.parse(b.state()).map((o) => o.metadata.id).sort();
    try { ctl.setProperty("x1", "name", "y"); } catch (e) { out.setProperty = String(e); }
    out.edits = edits;
    return out;
  },
  // What leaflet.d.ts says of the controller's results: seed's ids, onEdit's LocalEdit,
  // features() and metadataOf, an unknown id.
  async contract() {
    const edits = [];
    const { ctl } = await setup({ onEdit: (e) => edits.push(e) });
    const out = {};
    const pt = { type: "Point", coordinates: [2.35, 48.85] };
    out.seeded = ctl.seed({ features: [{ type: "Feature", id: 7, geometry: pt }, { type: "Feature", geometry: pt, properties: { id: "p" } }, { type: "Feature", geometry: pt }] }, "L1");
    out.featureKeys = Object.keys(ctl.features()[0]).sort();
    out.metadata = ctl.metadataOf("7");
    out.applying = ctl.applying;
    ctl.setProperties("7", { name: "n", color: "red" });
    out.deleted = ctl.deleteFeatures(["7", "p"]);
    out.edits = edits;
    out.unknown = ["setProperty", "setProperties", "syncGeometry"].map((m) => {
      try { ctl[m]("nobody", m === "setProperties" ? { a: 1 } : "a", 1); return "no throw"; } catch (e) { return e.constructor.name + (e.code ? " " + e.code : ""); }
    });
    return out;
  },
};
const result = {};
for (const [name, fn] of Object.entries(scenarios)) {
  try {
    result[name] = await fn();
  } catch (e) {
    result[name] = { error: String((e && e.stack) || e) };
  }
}
// Many labelled features: the peer's batch of them waits for window.deliver (the test reads
// chromium's layout count around it); a reference map draws the same ones one change at a time.
{
  const N = 300;
  const many = await setup();
  const ref = await setup();
  const meta = (i) => ({ id: "f" + i, layerId: "L1", featureType: i % 2 ? "marker" : "polyline" });
  const value = (i) => ({ type: "Feature", properties: { name: "label " + i },
    geometry: i % 2 ? point(2.33 + i / 5000, 48.85) : { type: "LineString", coordinates: [[2.33 + i / 5000, 48.84], [2.34 + i / 5000, 48.845]] } });
  many.a.batch(() => { for (let i = 0; i < N; i++) many.a.upsert("feature", meta(i), value(i)); });
  for (let i = 0; i < N; i++) { ref.a.upsert("feature", meta(i), value(i)); ref.send(); }
  const labels = (s) => Array.from({ length: N }, (_, i) => s.ctl.layerFor("f" + i)?.getTooltip()?.getElement()?.style.transform ?? null);
  window.deliver = () => {
    many.send();
    return { drawn: many.ctl.features().length, same: JSON.stringify(labels(many)) === JSON.stringify(labels(ref)), sample: labels(many).slice(0, 2), paneShown: many.map.getPane("mapPane").style.display };
  };
}
window.result = result;
</script>`;

test("the Leaflet helper redraws what undo and redo change, draws many labels in one layout, and survives a throwing renderer (chromium)", async (t) => {
  const run = await inChromium(t, page, async (p, metrics) => {
    const before = await metrics();
    const delivered = await p.evaluate(() => window.deliver());
    const after = await metrics();
    return { ...delivered, layouts: after.LayoutCount - before.LayoutCount };
  });
  if (!run) return;
  const { result: r, errors, driven } = run;
  for (const [name, v] of Object.entries(r)) assert.equal(v.error, undefined, `${name}: ${v.error}`);

  assert.deepEqual(r.undo.dragUndone, [2.35, 48.85]);
  assert.deepEqual(r.undo.dragRedone, [2.36, 48.86]);
  assert.deepEqual(r.undo.vertexUndone, [[2.35, 48.85], [2.36, 48.85], [2.36, 48.86], [2.35, 48.86], [2.35, 48.85]]);
  assert.deepEqual(r.undo.handleUndone, [2.36, 48.85], "the vertex handles follow the undone ring");
  assert.deepEqual(r.undo.vertexRedone, [2.361, 48.849]);
  assert.deepEqual(r.undo.drawnUndone, [true, false]);
  assert.deepEqual(r.undo.drawnRedone, [[2.35, 48.85], [2.36, 48.86]]);
  assert.deepEqual(r.undo.propertiesUndone, ["m", "red", "m"]);
  assert.deepEqual(r.undo.deleteUndone, [["m", "red", "m"], [2.36, 48.86]]);
  assert.deepEqual(r.undo.skipped, ["geometry"]);
  assert.deepEqual(r.undo.peerKept, [2.3, 48.8]);

  assert.deepEqual(r.throwing.seeded, ["x0", "x1", "x2"]);
  assert.deepEqual(r.throwing.drawn, ["x0", "x1", "x2"]);
  assert.deepEqual(r.throwing.state, ["x0", "x1", "x2"]);
  assert.equal(r.throwing.setProperty, undefined);
  assert.deepEqual(r.throwing.edits, ["property"]);
  assert.ok(errors.length > 0 && errors.every((e) => /boom/.test(e)), `errors: ${errors}`);

  assert.deepEqual(r.contract.seeded, ["7", "p", "L1-2"], "id, else properties.id, else layerId-index");
  assert.deepEqual(r.contract.featureKeys, ["color", "featureType", "id", "layer", "layerId", "name", "visible"]);
  assert.deepEqual(r.contract.metadata, { id: "7", layerId: "L1", featureType: "marker" });
  assert.equal(r.contract.applying, false);
  assert.equal(r.contract.deleted, 2);
  assert.deepEqual(r.contract.edits, [
    { kind: "property", id: "7", layerId: "L1", key: "name,color" },
    { kind: "deleted", id: "7,p", layerId: "" },
  ]);
  assert.deepEqual(r.contract.unknown, ["Error", "Error", "Error"], "an unknown id: an Error, not a MapcrdtError");

  // 300 labelled features in one batch: drawn, labels placed as when drawn one by one, and
  // not a layout per label (Leaflet lays out every label before a new one as it places it).
  assert.equal(driven.drawn, 300);
  assert.equal(driven.same, true, `labels: ${driven.sample}`);
  assert.equal(driven.paneShown, "");
  assert.ok(driven.layouts < 30, `${driven.layouts} layouts`);
});
