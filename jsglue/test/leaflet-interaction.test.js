// The Leaflet helper (leaflet.js) while the user is in the middle of an interaction — a real
// mouse drag of a marker or a vertex, a line drawn on, a new polygon being drawn — when a
// peer's change or the user's own undo arrives; and geometries round-tripped through it. In
// headless Debian chromium (see chromium.js), with playwright's mouse.
//
// Each scenario has two maps side by side, each bound to its own engine: a (the left map,
// where the mouse is: the user's) and b (the peer's). What both engines hold and what both
// maps draw are compared at the end, and the maps are searched for ghosts: a layer the
// controller does not know, a vertex handle of a layer gone or no longer edited.

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
window.setup = async (extra = {}) => {
  for (const c of current) { c.ctl.unbind(); c.map.remove(); c.div.remove(); }
  const A = mkmap("m"), B = mkmap("m m2");
  const a = await createEngine({ peerId: "a" + ++n });
  const b = await createEngine({ peerId: "b" + n });
  const ctlA = bindLeaflet({ map: A.map, featuresLayer: A.featuresLayer, engine: a, layerId: "L1", L, ...extra });
  const ctlB = bindLeaflet({ map: B.map, featuresLayer: B.featuresLayer, engine: b, layerId: "L1", L, ...extra });
  current = [{ ...A, ctl: ctlA }, { ...B, ctl: ctlB }];
  const env = { a, b, ctlA, ctlB, A, B };
  env.toA = () => { for (const m of b.flush()) a.receive(m); };
  env.toB = () => { for (const m of a.flush()) b.receive(m); };
  env.sync = () => { for (let i = 0; i < 3; i++) { env.toA(); env.toB(); } };
  env.meta = (id, featureType = "marker", layerId = "L1") => ({ id, layerId, featureType });
  env.add = (e, id, geometry, properties = {}) =>
    e.upsert("feature", env.meta(id), { type: "Feature", geometry, properties });
  // The page point of a marker's icon, of a vertex handle, of a place on map A.
  env.iconAt = (id) => { const r = env.ctlA.layerFor(id).getElement().getBoundingClientRect(); return { x: r.x + r.width / 2, y: r.y + r.height / 2 }; };
  env.vertexAt = (id, ...path) => {
    let ll = env.ctlA.layerFor(id).getLatLngs();
    for (const i of path) ll = ll[i];
    const r = ll.__vertex.getElement().getBoundingClientRect();
    return { x: r.x + r.width / 2, y: r.y + r.height / 2 };
  };
  env.placeAt = (lat, lng) => { const p = env.A.map.latLngToContainerPoint([lat, lng]); return { x: p.x, y: p.y }; };
  window.env = env;
  return true;
};
const round = (x) => (Array.isArray(x) ? x.map(round) : typeof x === "number" ? Math.round(x * 1e6) / 1e6 : x);
const sides = (s) => (s === "a" ? { ctl: env.ctlA, engine: env.a, ...env.A } : { ctl: env.ctlB, engine: env.b, ...env.B });
// What a map draws: each layer of its featuresLayer, by feature id.
window.drawnOf = (s) => {
  const { ctl, featuresLayer } = sides(s);
  const out = {};
  for (const layer of featuresLayer.getLayers()) {
    const f = ctl.features().find((x) => x.layer === layer);
    out[ctl.idOf(layer) ?? "?"] = { geometry: round(layer.toGeoJSON(6).geometry), name: f?.name, color: f?.color };
  }
  return out;
};
// What an engine holds: each feature's datalayer/id → its geometry.
window.engineOf = (s) => {
  const out = {};
  for (const o of JSON.parse(sides(s).engine.state())) {
    if (o.subject === "feature") out[o.metadata.layerId + "/" + o.metadata.id] = round(o.value.geometry);
  }
  return out;
};
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
// How many listeners map A has (a leak shows as a count that grows).
window.listeners = () => Object.values(env.A.map._events).reduce((n, l) => n + l.length, 0);
// Both maps and both engines, at the end of a scenario (after the engines exchanged all).
window.outcome = () => ({ engineA: engineOf("a"), engineB: engineOf("b"), drawnA: drawnOf("a"), drawnB: drawnOf("b"), ghosts: [...ghosts("a"), ...ghosts("b")] });
window.result = {};
</script>`;

const marker = (lng, lat) => ({ type: "Point", coordinates: [lng, lat] });
const ring = [[2.34, 48.845], [2.36, 48.845], [2.36, 48.855], [2.34, 48.855], [2.34, 48.845]];

// Runs the scenarios with the mouse; returns what each one ended with.
async function drive(p) {
  const ev = (f, arg) => p.evaluate(f, arg);
  const out = {};
  const drag = async (from, to, during, arg) => {
    await p.mouse.move(from.x, from.y);
    await p.mouse.down();
    await p.mouse.move((from.x + to.x) / 2, (from.y + to.y) / 2, { steps: 5 });
    const mid = await ev(during, arg);
    await p.mouse.move(to.x, to.y, { steps: 5 });
    await p.mouse.up();
    return mid;
  };

  // A marker dragged while the peer deletes it: nothing left anywhere, no listener left.
  await ev(() => setup());
  const before = await ev(() => listeners());
  await ev(([g]) => { env.add(env.b, "M", g, { name: "m" }); env.sync(); }, [marker(2.35, 48.85)]);
  let from = await ev(() => env.iconAt("M"));
  await drag(from, { x: from.x + 60, y: from.y + 40 }, () => { env.b.delete("feature", env.meta("M")); env.sync(); });
  await ev(() => env.sync());
  out.markerDeleted = { ...(await ev(() => outcome())), listenersBefore: before, listenersAfter: await ev(() => listeners()) };

  // A vertex of a polygon in vertex editing dragged while the peer deletes the polygon,
  // reshapes it, makes it a point, renames it, or moves it to another datalayer.
  out.vertex = {};
  for (const what of ["delete", "reshape", "point", "rename", "datalayer"]) {
    await ev(() => setup());
    await ev(([r]) => {
      env.b.upsert("feature", env.meta("P", "polygon"), { type: "Feature", geometry: { type: "Polygon", coordinates: [r] }, properties: { name: "p" } });
      env.sync();
      env.ctlA.layerFor("P").enableEdit();
    }, [ring]);
    from = await ev(() => env.vertexAt("P", 0, 1));
    const to = { x: from.x + 40, y: from.y + 30 };
    await drag(from, to, ([what]) => {
      const meta = env.meta("P", "polygon");
      const r = env.b.get("feature", meta).geometry.coordinates[0];
      if (what === "delete") env.b.delete("feature", meta);
      if (what === "reshape") env.b.update("feature", meta, "geometry", { type: "Polygon", coordinates: [[r[0], r[1], r[2], [2.33, 48.856], r[4]]] });
      if (what === "point") env.b.update("feature", meta, "geometry", { type: "Point", coordinates: [2.35, 48.85] });
      if (what === "rename") env.b.update("feature", meta, "properties.name", "q");
      if (what === "datalayer") {
        env.b.batch(() => {
          env.b.upsert("feature", { ...meta, layerId: "L2" }, env.b.get("feature", meta));
          env.b.delete("feature", meta);
        });
      }
      env.sync();
    }, [what]);
    await ev(() => env.sync());
    out.vertex[what] = {
      ...(await ev(() => outcome())),
      released: await ev(([x, y]) => { const ll = env.A.map.containerPointToLatLng([x, y]); return [Math.round(ll.lng * 1e6) / 1e6, Math.round(ll.lat * 1e6) / 1e6]; }, [to.x, to.y]),
      editing: await ev(() => env.ctlA.layerFor("P")?.editEnabled() ?? null),
    };
  }

  // A middle handle dragged (a vertex inserted) while the peer reshapes the ring; a vertex
  // dragged while the peer sends a geometry Leaflet cannot draw (held: the release repairs it).
  for (const what of ["middle", "bad"]) {
    await ev(() => setup());
    await ev(([r]) => {
      env.b.upsert("feature", env.meta("P", "polygon"), { type: "Feature", geometry: { type: "Polygon", coordinates: [r] }, properties: {} });
      env.sync();
      env.ctlA.layerFor("P").enableEdit();
    }, [ring]);
    from = await ev(([what]) => {
      if (what === "bad") return env.vertexAt("P", 0, 1);
      const r = env.ctlA.layerFor("P").getLatLngs()[0][1].__vertex.middleMarker.getElement().getBoundingClientRect();
      return { x: r.x + r.width / 2, y: r.y + r.height / 2 };
    }, [what]);
    const drawnDuring = await drag(from, { x: from.x + 20, y: from.y + 40 }, ([what]) => {
      const meta = env.meta("P", "polygon");
      const r = env.b.get("feature", meta).geometry.coordinates[0];
      const g = what === "bad" ? { type: "Polygon", coordinates: [[r[0], [2.36]]] } : { type: "Polygon", coordinates: [[r[0], r[1], r[2], [2.33, 48.856], r[4]]] };
      env.b.update("feature", meta, "geometry", g);
      env.sync();
      return { a: !!env.ctlA.layerFor("P"), b: !!env.ctlB.layerFor("P") };
    }, [what]);
    out[what] = { drawnDuring, ...(await ev(() => { env.sync(); return outcome(); })) };
  }

  // A hole deleted vertex by vertex, by clicks on its handles (Leaflet.Editable lets a hole go
  // whole): after each click both maps draw what both engines hold.
  await ev(() => setup());
  await ev(() => {
    const outer = [[2.33, 48.84], [2.37, 48.84], [2.37, 48.86], [2.33, 48.86], [2.33, 48.84]];
    const hole = [[2.34, 48.845], [2.36, 48.845], [2.36, 48.855], [2.34, 48.855], [2.34, 48.845]];
    env.b.upsert("feature", env.meta("P", "polygon"), { type: "Feature", geometry: { type: "Polygon", coordinates: [outer, hole] }, properties: {} });
    env.sync();
    env.ctlA.layerFor("P").enableEdit();
  });
  out.hole = [];
  for (let i = 0; i < 4; i++) {
    const at = await ev(() => {
      const h = env.ctlA.layerFor("P")?.getLatLngs()[1];
      if (!h || h.length === 0) return null;
      const r = h[0].__vertex.getElement().getBoundingClientRect();
      return { x: r.x + r.width / 2, y: r.y + r.height / 2 };
    });
    if (!at) break;
    await p.mouse.click(at.x, at.y);
    await ev(() => new Promise((res) => setTimeout(res, 0)));
    out.hole.push(await ev(() => {
      env.sync();
      return { ...outcome(), rings: env.ctlA.layerFor("P")?.getLatLngs().map((r) => r.length), editing: env.ctlA.layerFor("P")?.editEnabled() };
    }));
  }

  // A new part of a committed multilinestring (multipolygon) committed after one click (two):
  // Leaflet.Editable sends the commit, then deletes the part. The page sends each edit as
  // it is made (onEdit flushes, as the helper's docs suggest): no geometry sent is one the
  // peer would not draw, and the peer draws the feature all along.
  out.newPart = {};
  for (const kind of ["line", "polygon"]) {
    await ev(() => {
      window.sent = [];
      return setup({ onEdit: () => { if (window.env) for (const m of env.a.flush()) { window.sent.push(m); env.b.receive(m); } } });
    });
    const clicks = await ev(([kind, ring]) => {
      const line = [[2.34, 48.845], [2.35, 48.85]];
      const geometry = kind === "line"
        ? { type: "MultiLineString", coordinates: [line, [[2.36, 48.845], [2.37, 48.85]]] }
        : { type: "MultiPolygon", coordinates: [[ring]] };
      env.b.upsert("feature", env.meta("F", kind === "line" ? "polyline" : "polygon"), { type: "Feature", geometry, properties: {} });
      env.sync();
      env.removed = 0;
      env.ctlB.layerFor("F").on("remove", () => env.removed++);
      const l = env.ctlA.layerFor("F");
      l.enableEdit();
      l.editor.newShape();
      return (kind === "line" ? [[48.852, 2.355]] : [[48.852, 2.355], [48.853, 2.365]]).map(([lat, lng]) => env.placeAt(lat, lng));
    }, [kind, ring]);
    for (const q of clicks) await p.mouse.click(q.x, q.y);
    out.newPart[kind] = await ev(() => {
      window.sent = [];
      env.A.map.editTools.commitDrawing();
      return new Promise((res) => setTimeout(res, 0)).then(() => {
        env.sync();
        const geometries = window.sent.map((m) => JSON.parse(m)).filter((m) => m.key === "geometry").map((m) => m.value);
        return { geometries, removedInB: env.removed, ...outcome() };
      });
    });
  }

  // A press on a vertex handle, or on a marker, held still while the peer reshapes (recolors)
  // the feature, then the drag: the handle pressed is the one dragged. And a click on a
  // middle handle (Leaflet.Editable inserts the vertex at the press, and fires no edit).
  out.pressed = {};
  for (const what of ["vertex", "marker", "middle click"]) {
    await ev(() => setup());
    from = await ev(([what, r]) => {
      if (what === "marker") {
        env.add(env.b, "M", { type: "Point", coordinates: [2.35, 48.85] });
        env.sync();
        return env.iconAt("M");
      }
      env.b.upsert("feature", env.meta("P", "polygon"), { type: "Feature", geometry: { type: "Polygon", coordinates: [r] }, properties: {} });
      env.sync();
      env.ctlA.layerFor("P").enableEdit();
      if (what === "vertex") return env.vertexAt("P", 0, 1);
      const e = env.ctlA.layerFor("P").getLatLngs()[0][1].__vertex.middleMarker.getElement().getBoundingClientRect();
      return { x: e.x + e.width / 2, y: e.y + e.height / 2 };
    }, [what, ring]);
    await p.mouse.move(from.x, from.y);
    await p.mouse.down();
    await ev(([what]) => {
      if (what === "marker") env.b.update("feature", env.meta("M"), "properties._umap_options", { color: "red" });
      else env.b.update("feature", env.meta("P", "polygon"), "properties.name", "theirs");
      if (what === "vertex") {
        const r = env.b.get("feature", env.meta("P", "polygon")).geometry.coordinates[0];
        env.b.update("feature", env.meta("P", "polygon"), "geometry", { type: "Polygon", coordinates: [[r[0], r[1], r[2], [2.33, 48.856], r[4]]] });
      }
      env.sync();
    }, [what]);
    if (what !== "middle click") await p.mouse.move(from.x + 40, from.y + 30, { steps: 5 });
    await p.mouse.up();
    await ev(() => new Promise((res) => setTimeout(res, 10)));
    out.pressed[what] = await ev(() => { env.sync(); return outcome(); });
  }

  // Two presses on a marker in a row, the second before the first's release is done with
  // (its timer): the second press holds the marker until its own release.
  await ev(() => setup());
  out.twoPresses = await ev(async ([g]) => {
    env.add(env.b, "M", g);
    env.sync();
    const el = env.ctlA.layerFor("M").getElement();
    const r = el.getBoundingClientRect();
    const opts = { bubbles: true, cancelable: true, button: 0, buttons: 1, clientX: r.x + r.width / 2, clientY: r.y + r.height / 2 };
    el.dispatchEvent(new MouseEvent("mousedown", opts));
    el.dispatchEvent(new MouseEvent("mouseup", opts));
    el.dispatchEvent(new MouseEvent("mousedown", opts));
    await new Promise((res) => setTimeout(res, 10));
    env.b.update("feature", env.meta("M"), "properties._umap_options", { color: "red" });
    env.sync();
    const held = env.ctlA.layerFor("M").getElement() === el && env.ctlA.features()[0].color !== "red";
    el.dispatchEvent(new MouseEvent("mouseup", opts));
    await new Promise((res) => setTimeout(res, 10));
    return { held, colorAfter: env.ctlA.features()[0].color };
  }, [marker(2.35, 48.85)]);

  // A press of another button than the first (a right click) on a marker or a vertex handle,
  // whose release the page never gets (the browser's context menu, opened at the press on
  // Linux, takes it): Leaflet starts no drag for it, so nothing is held — the peer's change
  // is drawn at once.
  out.otherButton = {};
  for (const what of ["marker", "vertex"]) {
    await ev(() => setup());
    out.otherButton[what] = await ev(async ([what, g, r]) => {
      let el;
      if (what === "marker") {
        env.add(env.b, "M", g);
        env.sync();
        el = env.ctlA.layerFor("M").getElement();
      } else {
        env.b.upsert("feature", env.meta("P", "polygon"), { type: "Feature", geometry: { type: "Polygon", coordinates: [r] }, properties: {} });
        env.sync();
        env.ctlA.layerFor("P").enableEdit();
        el = env.ctlA.layerFor("P").getLatLngs()[0][1].__vertex.getElement();
      }
      const b = el.getBoundingClientRect();
      el.dispatchEvent(new MouseEvent("mousedown", { bubbles: true, cancelable: true, button: 2, buttons: 2, clientX: b.x + b.width / 2, clientY: b.y + b.height / 2 }));
      await new Promise((res) => setTimeout(res, 10));
      const id = what === "marker" ? "M" : "P";
      env.b.update("feature", env.meta(id, what === "marker" ? "marker" : "polygon"), "properties._umap_options", { color: "red" });
      env.sync();
      return env.ctlA.features().find((f) => f.id === id).color;
    }, [what, marker(2.35, 48.85), ring]);
  }

  // A press on a marker whose release the page never gets: a context menu opened at the
  // press (Ctrl-click on macOS) or the window losing focus. The hold ends there: the peer's
  // change is drawn without waiting for the next press.
  out.lostRelease = {};
  for (const how of ["contextmenu", "blur"]) {
    await ev(() => setup());
    out.lostRelease[how] = await ev(async ([how, g]) => {
      env.add(env.b, "M", g);
      env.sync();
      const el = env.ctlA.layerFor("M").getElement();
      const b = el.getBoundingClientRect();
      const at = { bubbles: true, cancelable: true, clientX: b.x + b.width / 2, clientY: b.y + b.height / 2 };
      el.dispatchEvent(new MouseEvent("mousedown", { ...at, button: 0, buttons: 1, ctrlKey: how === "contextmenu" }));
      env.b.update("feature", env.meta("M"), "properties._umap_options", { color: "blue" });
      env.sync();
      const held = env.ctlA.features().find((f) => f.id === "M").color !== "blue";
      if (how === "contextmenu") el.dispatchEvent(new MouseEvent("contextmenu", { ...at, button: 0, ctrlKey: true }));
      else window.dispatchEvent(new FocusEvent("blur"));
      await new Promise((res) => setTimeout(res, 10));
      env.b.update("feature", env.meta("M"), "properties._umap_options", { color: "red" });
      env.sync();
      return { held, color: env.ctlA.features().find((f) => f.id === "M").color };
    }, [how, marker(2.35, 48.85)]);
  }

  // Both users drag the same marker at once (the peer's drag fired as Leaflet fires it);
  // whoever releases last wrote last, and wins on both maps.
  for (const last of ["mine", "theirs"]) {
    await ev(() => setup());
    await ev(([g]) => { env.add(env.b, "M", g); env.sync(); }, [marker(2.35, 48.85)]);
    from = await ev(() => env.iconAt("M"));
    await p.mouse.move(from.x, from.y);
    await p.mouse.down();
    await p.mouse.move(from.x + 30, from.y + 30, { steps: 5 });
    await ev(() => {
      const m = env.ctlB.layerFor("M");
      m.fire("dragstart");
      m.setLatLng([48.86, 2.36]);
    });
    if (last === "mine") await ev(() => { env.ctlB.layerFor("M").fire("dragend", { distance: 10 }); env.sync(); });
    await p.mouse.move(from.x + 60, from.y + 60, { steps: 5 });
    await p.mouse.up();
    await ev(() => env.sync());
    if (last === "theirs") await ev(() => { env.ctlB.layerFor("M").fire("dragend", { distance: 10 }); env.sync(); });
    out["both-" + last] = await ev(() => outcome());
  }

  // The user's own undo (of the drag before) during a second drag, then a redo: the
  // release is the later write.
  await ev(() => setup());
  await ev(([g]) => { env.add(env.a, "M", g); env.sync(); }, [marker(2.35, 48.85)]);
  from = await ev(() => env.iconAt("M"));
  await drag(from, { x: from.x + 30, y: from.y }, () => 0);
  from = await ev(() => env.iconAt("M"));
  out.undoDuring = await drag(from, { x: from.x, y: from.y + 50 }, () => {
    const res = env.a.undo();
    env.sync();
    const m = env.ctlA.layerFor("M").getLatLng();
    return { undone: res.done, engine: env.a.get("feature", env.meta("M")).geometry.coordinates, marker: [m.lng, m.lat], dragging: env.ctlA.layerFor("M").dragging.moved() };
  });
  await ev(() => env.sync());
  out.undoDuring.after = await ev(() => outcome());
  out.undoDuring.redo = await ev(() => { const done = env.a.redo().done; env.sync(); return { done, ...outcome() }; });

  // A committed line drawn on (continueForward, as uMap's "continue line"): the peer
  // reshapes it between two clicks; then committed. And drawn on, then cancelled.
  for (const end of ["commit", "cancel"]) {
    await ev(() => setup());
    await ev(() => {
      env.b.upsert("feature", env.meta("Li", "polyline"), { type: "Feature", geometry: { type: "LineString", coordinates: [[2.34, 48.845], [2.35, 48.85]] }, properties: {} });
      env.sync();
      const l = env.ctlA.layerFor("Li");
      l.enableEdit();
      l.editor.continueForward();
    });
    let q = await ev(() => env.placeAt(48.852, 2.355));
    await p.mouse.click(q.x, q.y);
    await ev(() => {
      env.b.update("feature", env.meta("Li", "polyline"), "geometry", { type: "LineString", coordinates: [[2.34, 48.846], [2.35, 48.85]] });
      env.b.update("feature", env.meta("Li", "polyline"), "properties.name", "theirs");
      env.sync();
    });
    if (end === "commit") {
      q = await ev(() => env.placeAt(48.853, 2.36));
      await p.mouse.click(q.x, q.y);
    }
    const during = await ev(() => env.ctlA.layerFor("Li").toGeoJSON(6).geometry.coordinates.length);
    await ev(([end]) => {
      if (end === "commit") env.A.map.editTools.commitDrawing();
      else env.A.map.editTools.stopDrawing();
      env.sync();
    }, [end]);
    out["continue-" + end] = { during, ...(await ev(() => outcome())) };
  }

  // A new polygon being drawn (not in the engine yet) while the user's undo removes another
  // feature and a peer adds one: the polygon, finished, is the user's.
  await ev(() => setup());
  await ev(([g]) => { env.add(env.a, "M", g); env.sync(); env.A.map.editTools.startPolygon(); }, [marker(2.35, 48.85)]);
  for (const [lat, lng] of [[48.84, 2.33], [48.84, 2.34]]) {
    const q = await ev(([lat, lng]) => env.placeAt(lat, lng), [lat, lng]);
    await p.mouse.click(q.x, q.y);
  }
  await ev(([g]) => { env.a.undo(); env.add(env.b, "N", g); env.sync(); }, [marker(2.36, 48.85)]);
  {
    const q = await ev(() => env.placeAt(48.845, 2.34));
    await p.mouse.click(q.x, q.y);
  }
  out.drawingNew = await ev(() => { env.A.map.editTools.commitDrawing(); env.sync(); return outcome(); });

  // Many changes at once (the panes hidden while they are drawn) during a marker drag.
  await ev(() => setup());
  await ev(([g]) => { env.add(env.b, "M", g, { name: "m" }); env.sync(); }, [marker(2.35, 48.85)]);
  from = await ev(() => env.iconAt("M"));
  await drag(from, { x: from.x + 60, y: from.y + 40 }, () => {
    env.b.batch(() => {
      for (let i = 0; i < 20; i++) env.add(env.b, "X" + i, { type: "Point", coordinates: [2.33 + i * 0.001, 48.84] }, { name: "x" + i });
      env.b.update("feature", env.meta("M"), "geometry", { type: "Point", coordinates: [2.3, 48.8] });
    });
    env.sync();
  });
  out.many = await ev(() => { env.sync(); return outcome(); });

  // A marker with an altitude dragged: its altitude is kept, as a vertex drag keeps a vertex's.
  await ev(() => setup());
  await ev(() => { env.add(env.b, "Z", { type: "Point", coordinates: [2.35, 48.85, 100] }); env.sync(); });
  from = await ev(() => env.iconAt("Z"));
  await drag(from, { x: from.x + 40, y: from.y + 40 }, () => 0);
  out.altitude = await ev(() => { env.sync(); return outcome(); });

  // A polygon drawn while the datalayer the layerId option gives changes (the first deleted
  // by a peer meanwhile, say): it goes to the one given at the commit.
  await ev(() => { window.datalayer = "L1"; return setup({ layerId: () => window.datalayer }); });
  await ev(() => env.A.map.editTools.startPolygon());
  for (const [i, [lat, lng]] of [[48.84, 2.33], [48.84, 2.34], [48.845, 2.34]].entries()) {
    const q = await ev(([lat, lng]) => env.placeAt(lat, lng), [lat, lng]);
    await p.mouse.click(q.x, q.y);
    if (i === 0) await ev(() => { window.datalayer = "L9"; });
  }
  out.datalayerAtCommit = await ev(() => { env.A.map.editTools.commitDrawing(); env.sync(); return outcome(); });

  // The layerId function throwing at the commit: the polygon goes to the datalayer of its
  // creation, and the error is reported (not thrown into Leaflet.Editable's commit).
  await ev(() => { window.datalayer = "L1"; return setup({ layerId: () => { if (window.datalayer === "throw") throw new Error("no datalayer now"); return window.datalayer; } }); });
  await ev(() => env.A.map.editTools.startPolygon());
  for (const [i, [lat, lng]] of [[48.84, 2.33], [48.84, 2.34], [48.845, 2.34]].entries()) {
    const q = await ev(([lat, lng]) => env.placeAt(lat, lng), [lat, lng]);
    await p.mouse.click(q.x, q.y);
    if (i === 0) await ev(() => { window.datalayer = "throw"; });
  }
  out.datalayerThrows = await ev(async () => {
    const errors = [];
    const onError = (e) => { errors.push(String(e.error?.message ?? e.message)); e.preventDefault(); };
    window.addEventListener("error", onError);
    env.A.map.editTools.commitDrawing();
    env.sync();
    await new Promise((res) => setTimeout(res, 10));
    window.removeEventListener("error", onError);
    return { errors, ...outcome() };
  });
  return out;
}

/** Asserts both engines hold the same, and both maps draw what the engines hold. */
function assertConverged(o, what) {
  assert.deepEqual(o.engineA, o.engineB, `${what}: the engines differ`);
  const byId = (e) => Object.fromEntries(Object.entries(e).map(([k, g]) => [k.split("/")[1], g]));
  const geometries = (d) => Object.fromEntries(Object.entries(d).map(([id, f]) => [id, f.geometry]));
  // Drawn geometries are Leaflet's (rings closed, key order of its own): compared as text of sorted keys.
  const norm = (x) => JSON.parse(JSON.stringify(x, (k, v) => (v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort()) : v)));
  assert.deepEqual(norm(geometries(o.drawnA)), norm(byId(o.engineA)), `${what}: map A does not draw what the engine holds`);
  assert.deepEqual(norm(geometries(o.drawnB)), norm(byId(o.engineB)), `${what}: map B does not draw what the engine holds`);
  assert.deepEqual(o.drawnA, o.drawnB, `${what}: the maps differ`);
  assert.deepEqual(o.ghosts, [], `${what}: ghosts on the maps`);
}

test("the Leaflet helper under a real drag or drawing when a peer's change or the user's undo arrives (chromium)", async (t) => {
  const run = await inChromium(t, page, drive);
  if (!run) return;
  const { driven: r, errors } = run;

  assertConverged(r.markerDeleted, "marker deleted under its drag");
  assert.deepEqual(r.markerDeleted.engineA, {});
  assert.deepEqual(r.markerDeleted.drawnA, {});
  assert.equal(r.markerDeleted.listenersAfter, r.markerDeleted.listenersBefore, "listeners left on the map");

  for (const [what, o] of Object.entries(r.vertex)) assertConverged(o, `vertex drag, peer's ${what}`);
  assert.deepEqual(r.vertex.delete.engineA, {});
  assert.equal(r.vertex.delete.editing, null);
  // The release is the later write of the geometry: the dragged ring, whole, wins over the
  // peer's reshape and its change of kind; the peer's rename is kept.
  for (const what of ["reshape", "point", "rename"]) {
    const g = r.vertex[what].engineA["L1/P"];
    assert.equal(g.type, "Polygon", `peer's ${what}`);
    const [got] = g.coordinates;
    assert.deepEqual(got.filter((_, i) => i !== 1), ring.filter((_, i) => i !== 1), `peer's ${what}: only the dragged vertex moved`);
    const px = 2e-4; // about a pixel at zoom 13: the icon's centre, grabbed, is not exactly the vertex
    assert.ok(Math.hypot(got[1][0] - r.vertex[what].released[0], got[1][1] - r.vertex[what].released[1]) < 2 * px, `peer's ${what}: the vertex where it was let go: ${got[1]}`);
    assert.equal(r.vertex[what].editing, true, `peer's ${what}: the polygon is still edited`);
  }
  assert.equal(r.vertex.rename.drawnA.P.name, "q");
  // Moved to another datalayer under the drag: the feature of L1 the drag was on is gone;
  // the one of L2 is the peer's, drawn in both maps.
  assert.deepEqual(Object.keys(r.vertex.datalayer.engineA), ["L2/P"]);
  assert.deepEqual(r.vertex.datalayer.engineA["L2/P"].coordinates, [ring]);

  for (const last of ["mine", "theirs"]) {
    const o = r["both-" + last];
    assertConverged(o, `both dragging, ${last} released last`);
    const at = o.engineA["L1/M"].coordinates;
    if (last === "theirs") assert.deepEqual(at, [2.36, 48.86]);
    else assert.ok(at[0] > 2.35 + 1e-3 && at[1] < 48.85 - 1e-3, `mine: ${at}`);
  }

  // 4 vertices, then 3, then the hole is gone (2 vertices are no hole: Leaflet draws a
  // stroke, and the peer would draw nothing of a polygon with such a ring).
  assert.deepEqual(r.hole.map((o) => o.rings), [[4, 3], [4]]);
  r.hole.forEach((o, i) => {
    assertConverged(o, `hole, click ${i + 1}`);
    assert.equal(o.editing, true, `hole, click ${i + 1}: still edited`);
  });
  assert.equal(r.hole[1].engineA["L1/P"].coordinates.length, 1);

  for (const [kind, o] of Object.entries(r.newPart)) {
    assertConverged(o, `new ${kind} part after too few clicks`);
    for (const g of o.geometries) {
      const parts = g.type === "MultiLineString" ? g.coordinates : g.coordinates.map((p) => p[0].slice(1));
      assert.ok(parts.every((part) => part.length >= 2), `${kind}: a degenerate part sent: ${JSON.stringify(g)}`);
    }
    assert.equal(o.removedInB, 0, `${kind}: the peer stopped drawing the feature`);
  }
  assert.equal(r.newPart.line.engineA["L1/F"].coordinates.length, 2);
  assert.equal(r.newPart.polygon.engineA["L1/F"].coordinates.length, 1);

  assert.deepEqual(r.twoPresses, { held: true, colorAfter: "red" }, "the second press held the marker until its release");
  assert.deepEqual(r.lostRelease, { contextmenu: { held: true, color: "red" }, blur: { held: true, color: "red" } }, "a press whose release never came held the marker");
  assert.deepEqual(r.otherButton, { marker: "red", vertex: "red" }, "a right-button press held the feature (its release may never come)");
  for (const [what, o] of Object.entries(r.pressed)) assertConverged(o, `pressed ${what}`);
  const pressedRing = r.pressed.vertex.engineA["L1/P"].coordinates[0];
  assert.deepEqual(pressedRing.filter((_, i) => i !== 1), ring.filter((_, i) => i !== 1), "the ring the user saw, the pressed vertex moved");
  assert.ok(pressedRing[1][0] > ring[1][0] + 1e-3 && pressedRing[1][1] < ring[1][1] - 1e-3, `the pressed vertex dragged: ${pressedRing[1]}`);
  assert.equal(r.pressed.vertex.drawnA.P.name, "theirs");
  const pressedAt = r.pressed.marker.engineA["L1/M"].coordinates;
  assert.ok(pressedAt[0] > 2.35 + 1e-3 && pressedAt[1] < 48.85 - 1e-3, `the pressed marker dragged: ${pressedAt}`);
  assert.equal(r.pressed.marker.drawnA.M.color, "red");
  assert.equal(r.pressed["middle click"].engineA["L1/P"].coordinates[0].length, 6, "the vertex a click on a middle handle inserted is sent");
  assert.equal(r.pressed["middle click"].drawnA.P.name, "theirs");

  assertConverged(r.middle, "middle handle dragged during a reshape");
  const withInserted = r.middle.engineA["L1/P"].coordinates[0];
  assert.equal(withInserted.length, 6, "the vertex inserted");
  assert.deepEqual(withInserted.filter((_, i) => i !== 1), ring, "the rest is the ring the user saw");
  assert.deepEqual(r.bad.drawnDuring, { a: true, b: false }, "held under the drag; not drawn by the peer");
  assertConverged(r.bad, "vertex dragged while the peer sent a bad geometry");
  assert.equal(r.bad.engineA["L1/P"].coordinates[0].length, 5, "the release repaired it");

  // The undo during the drag is applied in the engine, not drawn under the drag; the release wins.
  assert.equal(r.undoDuring.undone, true);
  assert.deepEqual(r.undoDuring.engine, [2.35, 48.85], "the undo restored the first place");
  assert.notDeepEqual(r.undoDuring.marker, [2.35, 48.85], "the marker was moved from under the pointer");
  assert.equal(r.undoDuring.dragging, true, "the drag went on");
  assertConverged(r.undoDuring.after, "undo during a drag");
  const released = r.undoDuring.after.engineA["L1/M"].coordinates;
  assert.ok(released[1] < 48.85 - 1e-3 && released[0] > 2.35 + 1e-3, `the release is the marker's place: ${released}`);
  assert.equal(r.undoDuring.redo.done, false, "the release is a new edit: nothing left to redo");
  assertConverged(r.undoDuring.redo, "redo after the drag");

  // Drawn on while the peer reshaped it: the clicked points are kept (the whole line, as
  // drawn, is the later write); the peer's name is drawn.
  const cont = r["continue-commit"];
  assert.equal(cont.during, 4, "both clicked points are on the line being drawn");
  assertConverged(cont, "line drawn on");
  assert.equal(cont.engineA["L1/Li"].coordinates.length, 4);
  assert.deepEqual(cont.engineA["L1/Li"].coordinates.slice(0, 2), [[2.34, 48.845], [2.35, 48.85]]);
  assert.equal(cont.drawnA.Li.name, "theirs");
  // Cancelled: Leaflet.Editable keeps the point clicked on the layer; the engines get it too.
  const cancelled = r["continue-cancel"];
  assertConverged(cancelled, "line drawn on, cancelled");
  assert.equal(cancelled.engineA["L1/Li"].coordinates.length, 3);

  assertConverged(r.drawingNew, "new polygon drawn during an undo");
  assert.deepEqual(Object.keys(r.drawingNew.engineA).filter((k) => k !== "L1/N").length, 1, "the polygon, and not the undone marker");
  assert.equal(Object.values(r.drawingNew.engineA).find((g) => g.type === "Polygon").coordinates[0].length, 4);

  assertConverged(r.many, "many changes during a drag");
  assert.equal(Object.keys(r.many.drawnA).length, 21);
  assert.notDeepEqual(r.many.engineA["L1/M"].coordinates, [2.3, 48.8], "the release wins over the peer's move");

  assertConverged(r.altitude, "a marker with an altitude dragged");
  const z = r.altitude.engineA["L1/Z"].coordinates;
  assert.ok(z[0] > 2.35 + 1e-3 && z[1] < 48.85 - 1e-3, `moved: ${z}`);
  assert.equal(z[2], 100, `the altitude kept: ${z}`);

  assertConverged(r.datalayerAtCommit, "a polygon drawn while the datalayer changed");
  assert.deepEqual(Object.keys(r.datalayerAtCommit.engineA).map((k) => k.split("/")[0]), ["L9"]);
  assertConverged(r.datalayerThrows, "a polygon drawn while the layerId function came to throw");
  assert.deepEqual(Object.keys(r.datalayerThrows.engineA).map((k) => k.split("/")[0]), ["L1"]);
  assert.deepEqual(r.datalayerThrows.errors, ["no datalayer now"]);
  assert.deepEqual(errors, []);
});

// Geometries a peer sends, through the helper and back: each drawn as Leaflet reads it, sent
// back unchanged by a release that moved nothing, and with only the dragged vertex changed
// by a vertex drag; positions Leaflet cannot place are not drawn, and stop nothing.
async function driveGeometries(p) {
  const ev = (f, arg) => p.evaluate(f, arg);
  const out = {};
  const outer = [[2.34, 48.84], [2.36, 48.84], [2.36, 48.86], [2.34, 48.86], [2.34, 48.84]];
  const hole = [[2.345, 48.845], [2.355, 48.845], [2.355, 48.855], [2.345, 48.845]];
  const other = [[2.37, 48.84, 30], [2.38, 48.84, 31], [2.38, 48.85, 32], [2.37, 48.84, 30]];
  const good = {
    multiPolygon: { type: "MultiPolygon", coordinates: [[outer, hole], [other]] },
    holes: { type: "Polygon", coordinates: [outer, hole] },
    multiLine: { type: "MultiLineString", coordinates: [[[2.34, 48.84], [2.35, 48.85]], [[2.36, 48.84], [2.37, 48.85], [2.38, 48.86]]] },
    oneLine: { type: "MultiLineString", coordinates: [[[2.34, 48.84], [2.35, 48.85]]] },
    onePolygon: { type: "MultiPolygon", coordinates: [[other]] },
    altitude: { type: "LineString", coordinates: [[2.34, 48.84, 100], [2.35, 48.85, 120.5], [2.36, 48.85, -3]] },
    altitudePoint: { type: "Point", coordinates: [2.34, 48.84, 100] },
    precise: { type: "LineString", coordinates: [[2.3412345678, 48.8412345678], [2.35, 48.85]] },
    unclosed: { type: "Polygon", coordinates: [[[2.34, 48.84], [2.36, 48.84], [2.36, 48.86]]] },
    wrapped: { type: "LineString", coordinates: [[179.5, 10], [181.5, 10.5], [-200, -89.5]] },
  };
  const bad = {
    hugeLng: { type: "LineString", coordinates: [[1e300, 48], [2.35, 48.85]] },
    hugePolygon: { type: "Polygon", coordinates: [[[1e300, 1e300], [2.35, 48.85], [2.36, 48.85], [1e300, 1e300]]] },
    hugePoint: { type: "Point", coordinates: [1e300, 48] },
    latBeyond: { type: "Point", coordinates: [2.35, 91] },
    latBeyondLine: { type: "LineString", coordinates: [[2.35, -200], [2.35, 48.85]] },
    altString: { type: "LineString", coordinates: [[2.34, 48.84, "x"], [2.35, 48.85]] },
    altNull: { type: "Point", coordinates: [2.34, 48.84, null] },
    extraString: { type: "Point", coordinates: [2.34, 48.84, 1, "m"] },
  };
  out.geometries = await ev(async ([good, bad]) => {
    await setup();
    const errors = [];
    const onError = (e) => errors.push(String(e.error ?? e.message));
    window.addEventListener("error", onError);
    const r = { shown: {}, noopSent: {}, drawn: {} };
    env.b.batch(() => {
      for (const [id, g] of Object.entries({ ...good, ...bad })) env.add(env.b, id, g, { name: id });
      env.add(env.b, "after", { type: "Point", coordinates: [2.352, 48.857] }, { name: "after" });
    });
    env.sync();
    await new Promise((res) => setTimeout(res, 0)); // errors are reported in a microtask
    env.A.map.setZoom(12); // labels placed again
    env.A.map.panBy([40, 40], { animate: false });
    await new Promise((res) => setTimeout(res, 0));
    window.removeEventListener("error", onError);
    r.errors = errors;
    for (const id of [...Object.keys(good), ...Object.keys(bad), "after"]) {
      const l = env.ctlA.layerFor(id);
      r.drawn[id] = !!l && env.A.featuresLayer.hasLayer(l);
      if (l && id in good) {
        r.shown[id] = l.toGeoJSON(6).geometry;
        r.noopSent[id] = env.ctlA.syncGeometry(id);
      }
    }
    r.flushed = env.a.flush().length;
    return r;
  }, [good, bad]);

  // A vertex of a hole of a multipolygon dragged (as Leaflet.Editable does it): the whole
  // multipolygon is sent, the other part's altitudes kept; the peer draws the same.
  out.holeDrag = await ev(async ([g]) => {
    await setup();
    env.add(env.b, "MP", g);
    env.sync();
    const l = env.ctlA.layerFor("MP");
    l.enableEdit();
    const vertex = l.getLatLngs()[0][1][2].__vertex;
    l.editor.fireAndForward("editable:vertex:dragstart", { vertex });
    vertex.latlng.update(L.latLng(48.856, 2.356));
    l.editor.refresh();
    l.editor.fireAndForward("editable:vertex:dragend", { vertex });
    l.editor.onEdited();
    env.sync();
    return { engine: env.b.get("feature", env.meta("MP")).geometry, drawnB: env.ctlB.layerFor("MP").toGeoJSON(6).geometry };
  }, [good.multiPolygon]);

  // precision: the decimals of what the helper sends.
  out.precision = await ev(async () => {
    await setup({ precision: 3 });
    env.add(env.b, "Li", { type: "LineString", coordinates: [[2.341234, 48.841234], [2.35, 48.85]] });
    env.sync();
    const noop = env.ctlA.syncGeometry("Li");
    const l = env.ctlA.layerFor("Li");
    l.enableEdit();
    const vertex = l.getLatLngs()[1].__vertex;
    l.editor.fireAndForward("editable:vertex:dragstart", { vertex });
    vertex.latlng.update(L.latLng(48.8567891, 2.3567891));
    l.editor.refresh();
    l.editor.fireAndForward("editable:vertex:dragend", { vertex });
    l.editor.onEdited();
    env.sync();
    return { noop, engine: env.b.get("feature", env.meta("Li")).geometry };
  });
  return out;
}

test("the Leaflet helper round-trips (multi)geometries, holes and altitudes, and draws no position Leaflet cannot place (chromium)", async (t) => {
  const run = await inChromium(t, page, driveGeometries);
  if (!run) return;
  const { driven: r, errors } = run;
  const g = r.geometries;
  assert.deepEqual(g.errors, [], "nothing thrown while drawing, zooming, panning");
  for (const [id, drawn] of Object.entries(g.drawn)) {
    const expectDrawn = !/^(huge|latBeyond|alt(String|Null)|extraString)/.test(id);
    assert.equal(drawn, expectDrawn, `${id} ${expectDrawn ? "not " : ""}drawn`);
  }
  // Leaflet's reading: the kinds kept, rings closed, 6 decimals, altitudes kept.
  assert.deepEqual(g.shown.multiPolygon.type, "MultiPolygon");
  assert.deepEqual(g.shown.multiPolygon.coordinates[0].length, 2, "the hole kept");
  assert.deepEqual(g.shown.multiPolygon.coordinates[1][0][0], [2.37, 48.84, 30]);
  assert.deepEqual(g.shown.holes.coordinates.length, 2);
  assert.deepEqual(g.shown.oneLine.type, "MultiLineString");
  assert.deepEqual(g.shown.onePolygon.type, "MultiPolygon");
  assert.deepEqual(g.shown.altitude.coordinates, [[2.34, 48.84, 100], [2.35, 48.85, 120.5], [2.36, 48.85, -3]]);
  assert.deepEqual(g.shown.altitudePoint.coordinates, [2.34, 48.84, 100]);
  assert.deepEqual(g.shown.precise.coordinates[0], [2.341235, 48.841235]);
  assert.deepEqual(g.shown.unclosed.coordinates[0], [[2.34, 48.84], [2.36, 48.84], [2.36, 48.86], [2.34, 48.84]]);
  assert.deepEqual(g.shown.wrapped.coordinates, [[179.5, 10], [181.5, 10.5], [-200, -89.5]]);
  // Shown as read, nothing is sent back for it.
  for (const [id, sent] of Object.entries(g.noopSent)) assert.equal(sent, false, `${id} sent back without an edit`);
  assert.equal(g.flushed, 0);

  const h = r.holeDrag;
  assert.equal(h.engine.type, "MultiPolygon");
  assert.deepEqual(h.engine.coordinates[0][0], [[2.34, 48.84], [2.36, 48.84], [2.36, 48.86], [2.34, 48.86], [2.34, 48.84]]);
  assert.deepEqual(h.engine.coordinates[0][1], [[2.345, 48.845], [2.355, 48.845], [2.356, 48.856], [2.345, 48.845]]);
  assert.deepEqual(h.engine.coordinates[1], [[[2.37, 48.84, 30], [2.38, 48.84, 31], [2.38, 48.85, 32], [2.37, 48.84, 30]]]);
  assert.deepEqual(h.drawnB, h.engine);

  assert.equal(r.precision.noop, false, "a geometry finer than precision is not sent back rounded without an edit");
  assert.deepEqual(r.precision.engine.coordinates, [[2.341, 48.841], [2.357, 48.857]]);
  assert.deepEqual(errors, []);
});
