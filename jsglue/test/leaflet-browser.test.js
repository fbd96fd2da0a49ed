// The Leaflet helper (leaflet.js) rendering a peer's changes and making batched edits, in
// headless Debian chromium (through playwright-core) with Leaflet and Leaflet.Editable from
// node_modules. Skipped when chromium is not installed (but in CI). (The demo's page runs it too:
// demo/e2e.)

import { test } from "node:test";
import assert from "node:assert/strict";
import { inChromium } from "./chromium.js";

// Each scenario gets its own map, featuresLayer, a peer engine a and the engine b that the
// controller draws; it returns what the test checks. window.result: {name: value | {error}}.
const page = `<!doctype html><meta charset="utf-8">
<link rel="stylesheet" href="/node_modules/leaflet/dist/leaflet.css">
<script src="/node_modules/leaflet/dist/leaflet-src.js"></script>
<script src="/node_modules/leaflet-editable/src/Leaflet.Editable.js"></script>
<script type="module">
import { createEngine } from "./index.js";
import { bindLeaflet } from "./leaflet.js";
let n = 0;
async function setup() {
  const div = document.createElement("div");
  div.style.cssText = "width:400px;height:300px";
  document.body.append(div);
  const featuresLayer = L.featureGroup();
  const map = L.map(div, { editable: true, editOptions: { featuresLayer } }).setView([48.85, 2.35], 13);
  featuresLayer.addTo(map);
  const a = await createEngine({ peerId: "a" + ++n });
  const b = await createEngine({ peerId: "b" + n });
  const ctl = bindLeaflet({ map, featuresLayer, engine: b, layerId: "L1", L });
  const send = () => { for (const m of a.flush()) b.receive(m); };
  const drawn = () => ctl.features().map((f) => f.layerId + "/" + f.id + (f.visible ? "" : " hidden")).sort();
  return { a, b, ctl, send, drawn, onMap: () => featuresLayer.getLayers().length };
}
const meta = (id, layerId) => ({ id, layerId, featureType: "marker" });
const feature = (name) => ({ type: "Feature", geometry: { type: "Point", coordinates: [2.35, 48.85] }, properties: { name } });
const scenarios = {
  // A peer moves F from datalayer L1 to L2: one batch, the new one made first, then the old
  // one deleted — and the other way round.
  async move() {
    const { a, b, send, drawn, onMap } = await setup();
    const out = {};
    for (const [id, newFirst] of [["F", true], ["G", false]]) {
      a.upsert("feature", meta(id, "L1"), feature(id));
      send();
      a.batch(() => {
        if (newFirst) a.upsert("feature", meta(id, "L2"), feature(id));
        a.delete("feature", meta(id, "L1"));
        if (!newFirst) a.upsert("feature", meta(id, "L2"), feature(id));
      });
      send();
      out[id] = drawn().filter((f) => f.endsWith("/" + id));
    }
    out.state = JSON.parse(b.state()).map((o) => o.metadata.layerId + "/" + o.metadata.id);
    out.onMap = onMap();
    return out;
  },
  // The same id alive in two datalayers: one is drawn (one layer per id); when it goes —
  // deleted by the peer, or by the controller — the other is drawn.
  async twins() {
    const { a, ctl, send, drawn } = await setup();
    const out = {};
    a.upsert("feature", meta("F", "L1"), feature("one"));
    a.upsert("feature", meta("F", "L2"), feature("two"));
    send();
    out.both = drawn();
    a.delete("feature", meta("F", "L1"));
    send();
    out.afterRemoteDelete = drawn();
    out.name = ctl.features()[0]?.name;
    a.upsert("feature", meta("F", "L3"), feature("three"));
    send();
    out.third = drawn();
    out.deleted = ctl.deleteFeature("F");
    out.afterLocalDelete = drawn();
    out.name3 = ctl.features()[0]?.name;
    // A twin deleted while it waited is not drawn when the one shown goes.
    a.upsert("feature", meta("K", "L1"), feature("k1"));
    a.upsert("feature", meta("K", "L2"), feature("k2"));
    send();
    a.delete("feature", meta("K", "L2"));
    send();
    a.delete("feature", meta("K", "L1"));
    send();
    out.gone = drawn().filter((f) => f.endsWith("/K"));
    return out;
  },
  // setProperties and deleteFeatures inside the caller's batch join it.
  async batched() {
    const { b, ctl, drawn } = await setup();
    const id = ctl.addFeature({ geometry: { type: "Point", coordinates: [2.35, 48.85] }, properties: { name: "n" } });
    const id2 = ctl.addFeature({ geometry: { type: "LineString", coordinates: [[2.35, 48.85], [2.36, 48.86]] }, properties: {} });
    b.flush();
    b.batch(() => {
      ctl.setProperty(id, "name", "m");
      ctl.setProperties(id, { color: "x", size: 2 });
      ctl.deleteFeatures([id2]);
    });
    const out = { inBatch: b.inBatch(), properties: b.get("feature", meta(id, "L1"), "properties"), id2: b.get("feature", meta(id2, "L1")) ?? null };
    out.messages = b.flush().map((m) => JSON.parse(m).verb);
    out.drawn = drawn().length;
    // Outside a batch, each still makes its own.
    ctl.setProperties(id, { color: "y", size: 3 });
    out.alone = b.flush().map((m) => JSON.parse(m).verb);
    // One undo step took the caller's batch: undone, the line is back.
    b.undo();
    b.undo();
    out.afterUndo = drawn().length;
    return out;
  },
  // A peer changes a feature while this page's user drags it (Leaflet's drag events, fired
  // as a drag fires them; the move between them as a drag makes it): the layer is not
  // redrawn under the drag, and the release sends the dragged geometry, the later write.
  async drags() {
    const { a, b, ctl, send } = await setup();
    const out = {};
    // What b sends, delivered to a (so a's next edits come after it).
    const sent = () => b.flush().map((m) => (a.receive(m), JSON.parse(m))).map((m) => [m.key, m.value]);
    const geometry = (id, layerId = "L1") => b.get("feature", { id, layerId }, "geometry");
    const point = (lng, lat) => ({ type: "Point", coordinates: [lng, lat] });

    // A marker dragged to (2.36, 48.86); the peer moves and recolors it meanwhile.
    a.upsert("feature", meta("M", "L1"), feature("m"));
    send();
    const m = ctl.layerFor("M");
    const handler = m.dragging;
    m.fire("dragstart");
    m.setLatLng([48.86, 2.36]);
    a.update("feature", meta("M", "L1"), "geometry", point(2.34, 48.84));
    a.update("feature", meta("M", "L1"), "properties._umap_options", { color: "red" });
    send();
    out.markerDuring = [m.getLatLng().lat, m.getLatLng().lng];
    out.sameHandler = m.dragging === handler && m.dragging.enabled(); // setIcon replaces it, ending the drag
    m.fire("dragend", { distance: 10 });
    out.markerSent = sent();
    out.markerEngine = geometry("M");
    out.markerColor = ctl.features().find((f) => f.id === "M").color;

    // Released where it started: nothing to send, and the peer's move is drawn.
    m.fire("dragstart");
    a.update("feature", meta("M", "L1"), "geometry", point(2.33, 48.83));
    send();
    m.fire("dragend", { distance: 0 });
    out.unmovedSent = sent();
    out.unmovedAt = [m.getLatLng().lat, m.getLatLng().lng];

    // A polygon's vertex dragged; the peer moves another vertex meanwhile.
    const ring = [[2.35, 48.85], [2.36, 48.85], [2.36, 48.86], [2.35, 48.86], [2.35, 48.85]];
    a.upsert("feature", { id: "P", layerId: "L1", featureType: "polygon" },
      { type: "Feature", geometry: { type: "Polygon", coordinates: [ring] }, properties: {} });
    send();
    const p = ctl.layerFor("P");
    p.enableEdit();
    const vertex = p.getLatLngs()[0][1].__vertex;
    p.editor.fireAndForward("editable:vertex:dragstart", { vertex });
    vertex.latlng.update(L.latLng(48.849, 2.361)); // what VertexMarker.onDrag does
    p.editor.refresh();
    const theirs = ring.map((c) => c.slice());
    theirs[3] = [2.349, 48.861];
    a.update("feature", { id: "P", layerId: "L1", featureType: "polygon" }, "geometry", { type: "Polygon", coordinates: [theirs] });
    send();
    out.handleKept = p.getLatLngs()[0][1].__vertex === vertex && p.editor.editLayer.hasLayer(vertex);
    p.editor.fireAndForward("editable:vertex:dragend", { vertex });
    p.editor.onEdited();
    out.polygonSent = sent();
    out.polygonEngine = geometry("P").coordinates[0];

    // A vertex drag that ends without its dragend (editing disabled under it): the held
    // geometry is drawn, nothing stays held.
    const v2 = p.getLatLngs()[0][2].__vertex;
    p.editor.fireAndForward("editable:vertex:dragstart", { vertex: v2 });
    a.update("feature", { id: "P", layerId: "L1", featureType: "polygon" }, "geometry", { type: "Polygon", coordinates: [ring] });
    send();
    p.disableEdit();
    await Promise.resolve();
    out.afterDisableSent = sent();
    out.afterDisable = p.toGeoJSON(6).geometry.coordinates[0];
    a.update("feature", { id: "P", layerId: "L1", featureType: "polygon" }, "properties.name", "later");
    send();
    out.laterName = ctl.features().find((f) => f.id === "P").name;

    // Deleted by the peer under the drag: removed at once, nothing sent at the release.
    m.fire("dragstart");
    m.setLatLng([48.87, 2.37]);
    a.delete("feature", meta("M", "L1"));
    send();
    out.deletedDrawn = ctl.layerFor("M") !== undefined;
    m.fire("dragend", { distance: 10 });
    out.deletedSent = sent();
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
window.result = result;
</script>`;

test("the Leaflet helper draws moved and twin features, joins the caller's batch, and redraws no layer under a drag (chromium)", async (t) => {
  const run = await inChromium(t, page);
  if (!run) return;
  const { result: r, errors } = run;
  for (const [name, v] of Object.entries(r)) assert.equal(v.error, undefined, `${name}: ${v.error}`);

  // Moved from L1 to L2, whichever order the batch holds: drawn in L2, one layer each.
  assert.deepEqual(r.move.F, ["L2/F"]);
  assert.deepEqual(r.move.G, ["L2/G"]);
  assert.deepEqual(r.move.state.sort(), ["L2/F", "L2/G"]);
  assert.equal(r.move.onMap, 2);

  assert.deepEqual(r.twins.both, ["L1/F"]);
  assert.deepEqual(r.twins.afterRemoteDelete, ["L2/F"]);
  assert.equal(r.twins.name, "two");
  assert.deepEqual(r.twins.third, ["L2/F"]);
  assert.equal(r.twins.deleted, true);
  assert.deepEqual(r.twins.afterLocalDelete, ["L3/F"]);
  assert.equal(r.twins.name3, "three");
  assert.deepEqual(r.twins.gone, []);

  assert.equal(r.batched.inBatch, false);
  assert.deepEqual(r.batched.properties, { name: "m", color: "x", size: 2 });
  assert.equal(r.batched.id2, null);
  assert.deepEqual(r.batched.messages, ["batch"]);
  assert.equal(r.batched.drawn, 1);
  assert.deepEqual(r.batched.alone, ["batch"]);
  assert.equal(r.batched.afterUndo, 2);

  // The marker stayed under the drag, kept its drag handler, and its release was sent and kept.
  assert.deepEqual(r.drags.markerDuring, [48.86, 2.36]);
  assert.equal(r.drags.sameHandler, true);
  assert.deepEqual(r.drags.markerSent, [["geometry", { type: "Point", coordinates: [2.36, 48.86] }]]);
  assert.deepEqual(r.drags.markerEngine, { type: "Point", coordinates: [2.36, 48.86] });
  assert.equal(r.drags.markerColor, "red", "the peer's color drawn at the release");
  assert.deepEqual(r.drags.unmovedSent, []);
  assert.deepEqual(r.drags.unmovedAt, [48.83, 2.33]);
  // The vertex handle survived the peer's reshape; the release sent the dragged ring whole.
  assert.equal(r.drags.handleKept, true);
  const dragged = [[2.35, 48.85], [2.361, 48.849], [2.36, 48.86], [2.35, 48.86], [2.35, 48.85]];
  assert.deepEqual(r.drags.polygonSent, [["geometry", { type: "Polygon", coordinates: [dragged] }]]);
  assert.deepEqual(r.drags.polygonEngine, dragged);
  assert.deepEqual(r.drags.afterDisableSent, []);
  assert.deepEqual(r.drags.afterDisable, [[2.35, 48.85], [2.36, 48.85], [2.36, 48.86], [2.35, 48.86], [2.35, 48.85]]);
  assert.equal(r.drags.laterName, "later");
  assert.equal(r.drags.deletedDrawn, false);
  assert.deepEqual(r.drags.deletedSent, []);
  assert.deepEqual(errors, []);
});
