// The page side of leaflet-random.test.js (a browser module, loaded by its page): two or
// three Leaflet + Leaflet.Editable maps side by side, each bound by the Leaflet helper to
// its own engine, joined by a test network that delays, reorders, duplicates and loses
// messages; and what the test checks at the end (window.R).

import { createEngine } from "../index.js";
import { bindLeaflet, canonicalJSON } from "../leaflet.js";

const L = globalThis.L;
const W = 300; // each map's size in the page, side by side
const H = 260;
const GAP = 10;

/** mulberry32, as random.test.js. */
function rng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (n) => Math.floor(next() * n), pick: (xs) => xs[Math.floor(next() * xs.length)], chance: (p) => next() < p };
}

const round6 = (x) => (Array.isArray(x) ? x.map(round6) : typeof x === "number" ? Math.round(x * 1e6) / 1e6 : x);

/** A ring closed (GeoJSON's; Leaflet's toGeoJSON closes them). */
function closedRings(g) {
  const close = (ring) => {
    const a = ring[0];
    const z = ring[ring.length - 1];
    return ring.length > 0 && (a[0] !== z[0] || a[1] !== z[1]) ? [...ring, a] : ring;
  };
  if (g.type === "Polygon") return { ...g, coordinates: g.coordinates.map(close) };
  if (g.type === "MultiPolygon") return { ...g, coordinates: g.coordinates.map((p) => p.map(close)) };
  return g;
}

const TYPES = { Point: "marker", LineString: "polyline", MultiLineString: "polyline", Polygon: "polygon", MultiPolygon: "polygon" };

/** Whether the helper draws this geometry (leaflet.d.ts, seed: the test's geometries are all in range). */
function drawable(g) {
  if (!g || typeof g !== "object" || !TYPES[g.type] || !Array.isArray(g.coordinates)) return false;
  const c = g.coordinates;
  const ringOk = (r) => Array.isArray(r) && r.length - (r.length > 1 && r[0][0] === r[r.length - 1][0] && r[0][1] === r[r.length - 1][1] ? 1 : 0) >= 3;
  switch (g.type) {
    case "Point":
      return c.length >= 2;
    case "LineString":
      return c.length >= 2;
    case "MultiLineString":
      return c.length > 0 && c.every((l) => l.length >= 2);
    case "Polygon":
      return c.length > 0 && c.every(ringOk);
    case "MultiPolygon":
      return c.length > 0 && c.every((p) => p.length > 0 && p.every(ringOk));
  }
  return false;
}

function colorOf(p) {
  const c = p && p._umap_options && p._umap_options.color;
  return typeof c === "string" && c !== "" ? c : "#3388ff";
}
function nameOf(p) {
  const n = p && p.name;
  return typeof n === "string" ? n : n == null ? "" : String(n);
}

// Every LatLng of a layer's latlngs, however deep.
function flatLatLngs(x, out = []) {
  if (Array.isArray(x)) for (const y of x) flatLatLngs(y, out);
  else if (x) out.push(x);
  return out;
}

function mkmap(left) {
  const div = document.createElement("div");
  div.style.cssText = `position:absolute;top:0;left:${left}px;width:${W}px;height:${H}px`;
  document.body.append(div);
  const featuresLayer = L.featureGroup();
  const map = L.map(div, {
    editable: true,
    editOptions: { featuresLayer },
    zoomAnimation: false,
    fadeAnimation: false,
    dragging: false, // a drag that misses its handle moves nothing (the map stays put)
    doubleClickZoom: false,
    scrollWheelZoom: false,
    boxZoom: false,
    keyboard: false,
    zoomControl: false, // no control under the clicks
    attributionControl: false,
  }).setView([48.85, 2.35], 14);
  featuresLayer.addTo(map);
  // uMap's "Delete this vertex (Alt+Click)" and "Delete this shape" (Shift+click).
  map.on("editable:vertex:altclick", (e) => e.vertex.delete());
  // uMap's "Continue line" (from a line's first or last vertex), here on Ctrl+click.
  map.on("editable:vertex:ctrlclick", (e) => e.vertex.continue());
  map.on("editable:vertex:shiftclick", (e) => {
    const shape = e.layer instanceof L.Polygon ? e.layer.parentShape(e.vertex.latlngs) : e.vertex.latlngs;
    e.layer.editor.deleteShape(shape);
  });
  return { div, map, featuresLayer };
}

/** What a map draws: feature id → what the user sees of it. */
function drawnSummary(ctl, featuresLayer) {
  const out = {};
  const byLayer = new Map(ctl.features().map((f) => [f.layer, f]));
  // The layers shown, and those the controller keeps hidden (a datalayer not shown).
  const layers = [...featuresLayer.getLayers(), ...ctl.features().filter((f) => !f.visible).map((f) => f.layer)];
  for (const layer of layers) {
    const f = byLayer.get(layer);
    const id = ctl.idOf(layer) ?? "?unknown";
    // What the user sees, read from the layer rather than the controller's bookkeeping: the
    // label's text, the path's stroke or the pin's fill.
    const tooltip = layer.getTooltip();
    const label = tooltip ? new DOMParser().parseFromString(String(tooltip.getContent()), "text/html").body.textContent : "";
    const el = layer instanceof L.Marker ? layer.options.icon.options.html : null;
    const fill = el ? (/fill="([^"]*)"/.exec(el) || [])[1] : layer.options.color;
    out[id] = {
      layerId: f?.layerId,
      type: f?.featureType,
      geometry: canonicalJSON(round6(layer.toGeoJSON(6).geometry)),
      name: label,
      color: fill,
    };
  }
  return out;
}

/** What the engine's state says a map draws. */
function expectedSummary(engine) {
  const byId = new Map();
  for (const o of JSON.parse(engine.state())) {
    if (o.subject !== "feature") continue;
    const v = o.value;
    if (!v || !drawable(v.geometry)) continue;
    const e = {
      layerId: o.metadata.layerId,
      type: TYPES[v.geometry.type],
      geometry: canonicalJSON(round6(closedRings(v.geometry))),
      name: nameOf(v.properties),
      color: colorOf(v.properties),
    };
    if (!byId.has(o.metadata.id)) byId.set(o.metadata.id, []);
    byId.get(o.metadata.id).push(e);
  }
  return byId;
}

class Peer {
  constructor(i, engine, ctl, m) {
    this.i = i;
    this.engine = engine;
    this.ctl = ctl;
    Object.assign(this, m);
    this.online = true;
    /** The datalayer new drawings go to (if the map asks: see bind). */
    this.datalayer = "L1";
    /** Datalayers this map's user hid. */
    this.hidden = new Set();
    this.lose = false; // while offline: what it flushes is lost (true) or held in its outbox
    /** Layers whose editing the test (the user) turned on or off: layer → wanted. */
    this.wantEdit = new WeakMap();
  }
}

const R = {
  log: [],
  async setup(seed, n) {
    const r = rng(seed ^ 0x5eed);
    R.r = r;
    R.log = [];
    R.reloads = 0;
    R.saved = [];
    R.fake = null;
    R.deliverAtRelease = false;
    R.trace = [];
    globalThis.TRACE = new URLSearchParams(location.search).has("trace");
    R.queue = [];
    R.stats = { edits: {}, delivered: 0, duplicated: 0, lost: 0, remoteDuringDrag: 0 };
    let t = 1_790_000_000_000;
    const now = () => ++t; // one clock for all: deterministic (reads take nothing from r), no drift
    R.now = now;
    R.peers = [];
    for (let i = 0; i < n; i++) R.peers.push(R.bind(i, await createEngine({ peerId: "p" + i, now })));
    // The datalayer every map loaded from the server (seeded: never sent, never undone).
    const features = [];
    const spot = () => {
      const q = R.place(0);
      return [round6(q.lng), round6(q.lat)];
    };
    for (let k = 0; k < 6; k++) {
      const kind = k % 3;
      let geometry;
      if (kind === 0) geometry = { type: "Point", coordinates: k === 0 ? [...spot(), 35] : spot() };
      else if (kind === 1) geometry = { type: "LineString", coordinates: k === 1 ? [[...spot(), 10], [...spot(), 12.5], [...spot(), -3]] : [spot(), spot(), spot()] };
      else {
        const ring = [spot(), spot(), spot(), spot()];
        geometry = { type: "Polygon", coordinates: [[...ring, ring[0]]] };
      }
      features.push({ type: "Feature", id: "s" + k, geometry, properties: { name: "seeded " + k } });
    }
    if (r.chance(0.5)) features.push({ type: "Feature", id: "s6", geometry: { type: "MultiLineString", coordinates: [[spot(), spot()], [spot(), spot()]] }, properties: {} });
    R.collection = { type: "FeatureCollection", features };
    for (const p of R.peers) p.ctl.seed(R.collection, "L1");
    return true;
  },

  /** Map i: a new map bound to engine (at setup, and when the page is reloaded). */
  bind(i, engine) {
    const m = mkmap(i * (W + GAP));
    let k = 0;
    const peer = new Peer(i, engine, null, m);
    // Some maps draw into the datalayer the user picked last (the layerId function, asked at
    // the drawing's start and its commit), some group each feature's edits in one undo step.
    const picking = R.r.chance(0.5);
    const grouping = R.r.chance(0.5) ? { group: (id) => "g" + id } : {};
    peer.ctl = bindLeaflet({
      map: m.map,
      featuresLayer: m.featuresLayer,
      engine,
      layerId: picking ? () => peer.datalayer : "L1",
      ...grouping,
      L,
      isLayerVisible: (layerId) => !peer.hidden.has(layerId),
      newId: () => `f${i}x${++k}r${R.reloads}`,
      onEdit: (e) => {
        R.stats.edits[e.kind] = (R.stats.edits[e.kind] ?? 0) + 1;
      },
      onRender: (e) => {
        if (globalThis.TRACE) R.trace.push(`map ${i} render ${e.kind} ${e.id} handles=${e.layer.editor ? e.layer.editor.editLayer.getLayers().length : "-"}`);
        if (R.dragging && R.dragging.i === i && R.dragging.id === e.id) R.stats.remoteDuringDrag++;
      },
    });
    if (globalThis.TRACE) {
      for (const t of ["editable:vertex:mousedown", "editable:vertex:dragstart", "editable:vertex:dragend", "editable:vertex:click", "editable:vertex:deleted", "editable:edited", "editable:enable", "editable:disable", "editable:drawing:start", "editable:drawing:end", "editable:vertex:new"]) {
        m.map.on(t, (e) => R.trace.push(`map ${i} ${t} ${peer.ctl.idOf(e.layer)} handles=${e.layer.editor ? e.layer.editor.editLayer.getLayers().length : "-"}`));
      }
      m.map.on("movestart", () => R.trace.push(`map ${i} movestart ${new Error().stack}`));
    }
    // A marker focused near the map's edge pans the map (Leaflet's autoPanOnFocus), animated:
    // Leaflet.Editable makes the handles of the vertices it brings into view at its moveend.
    m.map.on("movestart", () => (peer.moving = true));
    m.map.on("moveend", () => (peer.moving = false));
    // Drawing with the editor: the user's layer stays edited after the commit.
    m.map.on("editable:drawing:start", (e) => peer.wantEdit.set(e.layer, true));
    // Hidden (its datalayer hidden), a line or polygon is edited no more: shown again, only
    // markers are made editable (BindOptions.editable).
    m.featuresLayer.on("layerremove", (e) => peer.wantEdit.set(e.layer, false));
    return peer;
  },
  /**
   * Map i's page reloaded: its engine restored from a snapshot — taken now, or the one saved
   * earlier (older: what it did since, unsent, is lost) — and drawn on a new map.
   */
  async reload(i, how) {
    const p = R.peers[i];
    if (p.online) R.pump();
    const snap = how === "older" && R.saved[i] ? R.saved[i] : how === "fresh" ? null : p.engine.snapshot();
    p.ctl.unbind();
    p.map.remove();
    p.div.remove();
    p.engine.close();
    R.reloads++;
    // Without a snapshot (none stored, or storage cleared) the page is a new peer: its edits
    // not sent are lost, and it catches up by sync.
    const engine = snap ? await createEngine({ snapshot: snap, now: R.now }) : await createEngine({ peerId: `p${i}n${R.reloads}`, now: R.now });
    const q = R.bind(i, engine);
    q.online = p.online;
    q.lose = p.lose;
    R.peers[i] = q;
    // uMap loads the datalayer from the server again, then syncs.
    q.ctl.seed(R.collection, "L1");
    if (!snap && q.online) {
      const others = R.peers.filter((x) => x !== q && x.online);
      if (others.length > 0) R.route(i, q.engine.syncRequest(others[R.r.int(others.length)].engine.peerId));
      for (const x of others) if (R.r.chance(0.5)) R.route(x.i, x.engine.syncRequest(q.engine.peerId)); // their probes
    }
    return snap ? (how === "older" ? "older snapshot" : "snapshot") : "nothing (a new peer)";
  },
  save(i) {
    R.saved[i] = R.peers[i].engine.snapshot();
  },

  // ------------------------------------------------------------ network

  /** Moves every online peer's outbox into the network (one copy per recipient). */
  pump() {
    for (const p of R.peers) {
      if (!p.online && !p.lose) continue;
      const msgs = p.engine.flush();
      if (!p.online) {
        R.stats.lost += msgs.length;
        continue;
      }
      for (const m of msgs) R.route(p.i, m);
    }
  },
  route(from, m) {
    const msg = JSON.parse(m);
    if (msg.kind === "PeerMessage") {
      const to = R.peers.findIndex((p) => p.engine.peerId === msg.recipient || p.engine.peerId === String(msg.recipient).split("~")[0]);
      if (to >= 0) R.queue.push({ to, m });
      return;
    }
    for (const p of R.peers) if (p.i !== from) R.queue.push({ to: p.i, m });
  },
  /** Delivers up to n queued messages in a random order; some twice. */
  deliver(n) {
    const r = R.r;
    for (let k = 0; k < n && R.queue.length > 0; k++) {
      const at = r.int(Math.min(R.queue.length, 6)) + (R.queue.length > 6 && r.chance(0.3) ? r.int(R.queue.length - 6) : 0);
      const { to, m } = R.queue[at];
      R.queue.splice(at, 1);
      const p = R.peers[to];
      if (!p.online) {
        R.stats.lost++;
        continue;
      }
      if (r.chance(0.08)) {
        R.queue.push({ to, m }); // delivered again later
        R.stats.duplicated++;
      }
      R.stats.delivered++;
      if (m.includes('"kind":"PeerMessage"') && r.chance(0.5)) {
        for (const reply of p.engine.onPeerMessage(m).replies) R.route(to, reply);
      } else {
        p.engine.receive(m);
      }
      if (r.chance(0.5)) R.pump();
    }
  },
  /** Some of the network's traffic, as time passes between user actions. */
  tick() {
    R.pump();
    const r = R.r;
    if (r.chance(0.7)) R.deliver(r.int(R.queue.length + 1));
  },
  setOnline(i, online, lose = false) {
    const p = R.peers[i];
    if (p.online === online) return;
    p.online = online;
    p.lose = lose;
    if (!online) return;
    // Back: asks each peer for what it missed (the answer's pushBack gives them its edits),
    // and each peer probes it (as on a ListPeersResponse).
    R.pump();
    for (const q of R.peers) {
      if (q === p || !q.online) continue;
      R.route(p.i, p.engine.syncRequest(q.engine.peerId));
      if (R.r.chance(0.5)) R.route(q.i, q.engine.syncRequest(p.engine.peerId));
    }
  },
  /** Everyone online, everything delivered, every pair synced both ways. */
  settle() {
    for (const p of R.peers) R.setOnline(p.i, true);
    for (let round = 0; round < 3; round++) {
      for (let k = 0; k < 200 && (R.queue.length > 0 || R.peers.some((p) => p.engine.pending() > 0)); k++) {
        R.pump();
        while (R.queue.length > 0) {
          const { to, m } = R.queue.shift();
          const p = R.peers[to];
          if (m.includes('"kind":"PeerMessage"')) for (const reply of p.engine.onPeerMessage(m).replies) R.route(to, reply);
          else p.engine.receive(m);
        }
      }
      for (const p of R.peers) for (const q of R.peers) if (p !== q) R.route(p.i, p.engine.syncRequest(q.engine.peerId));
    }
    for (let k = 0; k < 200 && (R.queue.length > 0 || R.peers.some((p) => p.engine.pending() > 0)); k++) {
      R.pump();
      while (R.queue.length > 0) {
        const { to, m } = R.queue.shift();
        const p = R.peers[to];
        if (m.includes('"kind":"PeerMessage"')) for (const reply of p.engine.onPeerMessage(m).replies) R.route(to, reply);
        else p.engine.receive(m);
      }
    }
    return R.peers.map((p) => p.engine.pending());
  },

  // ------------------------------------------------------------ places and features

  /** A random place well inside map i: {lat, lng, x, y} (x, y in the page). */
  place(i) {
    const r = R.r;
    const { map, div } = R.peers[i];
    const cx = 25 + r.int(W - 50);
    const cy = 25 + r.int(H - 50);
    const ll = map.containerPointToLatLng([cx, cy]);
    const b = div.getBoundingClientRect();
    return { lat: ll.lat, lng: ll.lng, x: b.x + cx, y: b.y + cy };
  },
  /** The page point of a place on map i. */
  at(i, lat, lng) {
    const { map, div } = R.peers[i];
    const p = map.latLngToContainerPoint([lat, lng]);
    const b = div.getBoundingClientRect();
    return { x: b.x + p.x, y: b.y + p.y, inside: p.x > 5 && p.y > 5 && p.x < W - 5 && p.y < H - 5 };
  },
  center(el) {
    const b = el.getBoundingClientRect();
    return { x: b.x + b.width / 2, y: b.y + b.height / 2 };
  },
  /** The committed features map i shows: [{id, type}], sorted by id. */
  features(i) {
    return R.peers[i].ctl
      .features()
      .map((f) => ({ id: f.id, type: f.featureType, visible: f.visible }))
      .sort((a, b) => (a.id < b.id ? -1 : 1));
  },
  /** The page point of feature id's marker icon on map i, or null. */
  iconAt(i, id) {
    const l = R.peers[i].ctl.layerFor(id);
    const el = l && l.getElement && l.getElement();
    if (!el || !(l instanceof L.Marker)) return null;
    const c = R.center(el);
    return R.insideMap(i, c) ? c : null;
  },
  insideMap(i, c) {
    const b = R.peers[i].div.getBoundingClientRect();
    return c.x > b.x + 5 && c.y > b.y + 5 && c.x < b.x + W - 5 && c.y < b.y + H - 5;
  },
  /** Turns editing of feature id's path on map i on (the user clicked it, as in uMap). */
  edit(i, id, on = true) {
    const p = R.peers[i];
    const l = p.ctl.layerFor(id);
    if (!l || l instanceof L.Marker || !l._map) return false;
    if (on && !l.editEnabled()) l.enableEdit();
    if (!on && l.editEnabled()) l.disableEdit();
    p.wantEdit.set(l, on);
    return true;
  },
  /** Vertex handles of feature id on map i: [{x, y, k}] (k: which vertex), or [] if not edited. */
  vertices(i, id) {
    const l = R.peers[i].ctl.layerFor(id);
    if (!l || l instanceof L.Marker || !l.editEnabled()) return [];
    return flatLatLngs(l.getLatLngs())
      .map((ll, k) => (ll.__vertex && ll.__vertex.getElement() ? { ...R.center(ll.__vertex.getElement()), k } : null))
      .filter((v) => v && R.insideMap(i, v));
  },
  middles(i, id) {
    const l = R.peers[i].ctl.layerFor(id);
    if (!l || l instanceof L.Marker || !l.editEnabled()) return [];
    return flatLatLngs(l.getLatLngs())
      .map((ll, k) => {
        const mm = ll.__vertex && ll.__vertex.middleMarker;
        const el = mm && mm._map && mm.getElement();
        return el && el.style.opacity !== "0" ? { ...R.center(el), k } : null;
      })
      .filter((v) => v && R.insideMap(i, v));
  },

  /**
   * A drag on map j of feature id, as Leaflet and Leaflet.Editable fire it (the page's one
   * mouse is on another map): begun and moved now, ended by fakeDragEnd.
   */
  fakeDragStart(j, id) {
    const p = R.peers[j];
    const l = p.ctl.layerFor(id);
    if (!l || !l._map || R.fake) return "none"; // hidden there: no drag
    const q = R.place(j);
    const ll = L.latLng(q.lat, q.lng);
    if (l instanceof L.Marker) {
      if (!l.dragging || !l.dragging.enabled()) return "none";
      l.fire("movestart").fire("dragstart");
      l.setLatLng(ll);
      l.fire("drag", { latlng: ll });
      R.fake = { layer: l, marker: true };
      return "marker drag";
    }
    R.edit(j, id, true);
    const vs = flatLatLngs(l.getLatLngs()).filter((x) => x.__vertex && x.__vertex._map);
    if (vs.length === 0) return "none";
    const v = vs[R.r.int(vs.length)].__vertex;
    v.fire("dragstart");
    L.DomUtil.setPosition(v._icon, p.map.latLngToLayerPoint(ll));
    v.fire("drag");
    R.fake = { layer: l, vertex: v };
    return "vertex drag";
  },
  fakeDragEnd() {
    const f = R.fake;
    R.fake = null;
    if (!f) return false;
    if (f.marker) f.layer.fire("moveend").fire("dragend", { distance: 10 });
    else f.vertex.fire("dragend");
    return true;
  },

  /** The user shows or hides datalayer layerId on map i (uMap's datalayer toggle). */
  toggleLayer(i, layerId) {
    const p = R.peers[i];
    const hide = !p.hidden.has(layerId);
    if (hide) p.hidden.add(layerId);
    else p.hidden.delete(layerId);
    p.ctl.refreshVisibility();
    return hide ? "hidden" : "shown";
  },
  layerIdOf(i, id) {
    return R.peers[i].ctl.metadataOf(id)?.layerId;
  },
  /** The user picks the datalayer new drawings go to. */
  pickDatalayer(i, layerId) {
    R.peers[i].datalayer = layerId;
  },
  /** The user pans or zooms map i a little (Leaflet.Editable makes the handles now in view). */
  moveView(i) {
    const r = R.r;
    const { map } = R.peers[i];
    const z = map.getZoom();
    const zoom = r.chance(0.3) ? (z >= 15 ? z - 1 : z <= 13 ? z + 1 : z + (r.chance(0.5) ? 1 : -1)) : z;
    const c = L.latLng(48.85 + (r.next() - 0.5) * 0.004, 2.35 + (r.next() - 0.5) * 0.006);
    map.setView(c, zoom, { animate: false });
    return `${zoom}`;
  },

  // ------------------------------------------------------------ edits through the engine

  meta(i, id) {
    return R.peers[i].ctl.metadataOf(id);
  },
  /** A peer's edit of feature id, as uMap (or the helper) makes them; returns what it did. */
  engineEdit(i, id, what) {
    const p = R.peers[i];
    const r = R.r;
    const meta = R.meta(i, id);
    if (!meta) return "none";
    const e = p.engine;
    switch (what) {
      case "name":
        if (r.chance(0.7)) p.ctl.setProperty(id, "name", r.chance(0.2) ? `<b>"${r.int(9)}" & 'co'</b>` : "n" + r.int(100));
        else p.ctl.setProperty(id, "name", undefined);
        return what;
      case "color":
        e.update("feature", meta, "properties._umap_options.color", r.pick(["red", "green", "#123456", "DarkRed"]));
        return what;
      case "props":
        p.ctl.setProperties(id, { name: "m" + r.int(100), "_umap_options.color": r.pick(["blue", "orange"]) });
        return what;
      case "geometry": {
        // uMap's own geometry edit (a peer's uMap, or a page's): the whole geometry.
        const g = e.get("feature", { id, layerId: meta.layerId }, "geometry");
        if (!g) return "none";
        const d = () => Math.round((r.next() - 0.5) * 4000) / 1e6;
        const shift = (c) => (typeof c[0] === "number" ? [round6(c[0] + d()), round6(c[1] + d()), ...c.slice(2)] : c.map(shift));
        const ng = { ...g, coordinates: shift(g.coordinates) };
        e.update("feature", meta, "geometry", closedRings(ng));
        return what;
      }
      case "kind": {
        // A geometry of another kind (a polygon made a point …): the helper draws a new layer.
        const type = e.get("feature", { id, layerId: meta.layerId }, "geometry.type");
        const spot = () => {
          const q = R.place(i);
          return [round6(q.lng), round6(q.lat)];
        };
        const kinds = ["Point", "LineString", "Polygon"].filter((t) => t !== type);
        const t = r.pick(kinds);
        const a = spot();
        const g = t === "Point" ? { type: t, coordinates: a } : t === "LineString" ? { type: t, coordinates: [a, spot()] } : { type: t, coordinates: [[a, spot(), spot(), a]] };
        e.update("feature", meta, "geometry", g);
        return `${what} ${t}`;
      }
      case "bad": {
        // A geometry no map draws (a peer's bug, an old client): not drawn until fixed.
        const q = R.place(i);
        e.update("feature", meta, "geometry", r.chance(0.5) ? { type: "LineString", coordinates: [[round6(q.lng), round6(q.lat)]] } : { type: "Polygon", coordinates: [] });
        return what;
      }
      case "delete":
        return p.ctl.deleteFeature(id) ? what : "none";
      case "move": {
        // uMap moves a feature to another datalayer: the new one, and the old one deleted.
        const v = e.get("feature", { id, layerId: meta.layerId });
        if (!v) return "none";
        const to = meta.layerId === "L1" ? "L2" : "L1";
        const order = r.chance(0.5);
        e.batch(() => {
          if (order) e.upsert("feature", { ...meta, layerId: to }, v);
          e.delete("feature", meta);
          if (!order) e.upsert("feature", { ...meta, layerId: to }, v);
        });
        return what;
      }
      case "undo":
        return e.undo().done ? what : "nothing to undo";
      case "redo":
        return e.redo().done ? what : "nothing to redo";
    }
    return "none";
  },
  /** Map i renames and recolors every feature it draws. */
  probe(i) {
    const p = R.peers[i];
    for (const f of p.ctl.features()) p.ctl.setProperties(f.id, { name: `probe ${i} ${f.id}`, "_umap_options.color": ["red", "green", "blue"][i] });
  },
  deleteMany(i) {
    const p = R.peers[i];
    const ids = R.features(i)
      .map((f) => f.id)
      .filter(() => R.r.chance(0.4));
    return p.ctl.deleteFeatures(ids);
  },
  undo(i) {
    return R.peers[i].engine.undo().done;
  },
  redo(i) {
    return R.peers[i].engine.redo().done;
  },

  // ------------------------------------------------------------ drawing

  start(i, kind) {
    const tools = R.peers[i].map.editTools;
    if (kind === "marker") tools.startMarker();
    else if (kind === "polyline") tools.startPolyline();
    else tools.startPolygon();
    return true;
  },
  /** Goes on drawing feature id (a committed path): continueForward/Backward, newShape, newHole. */
  drawOn(i, id, how) {
    const p = R.peers[i];
    const l = p.ctl.layerFor(id);
    if (!l || l instanceof L.Marker) return false;
    R.edit(i, id, true);
    const g = l.toGeoJSON().geometry;
    if (how === "forward" && g.type === "LineString") l.editor.continueForward();
    else if (how === "backward" && g.type === "LineString") l.editor.continueBackward();
    else if (how === "hole" && (g.type === "Polygon" || g.type === "MultiPolygon")) {
      // uMap's "Start a hole here": at a place within the polygon (the hole's first vertex).
      let at = null;
      for (let k = 0; k < 40 && !at; k++) {
        const q = R.place(i);
        const ll = L.latLng(q.lat, q.lng);
        if (l.shapeAt(ll)) at = ll;
      }
      if (!at) return false;
      l.editor.newHole(at);
    }
    else if (how === "shape") l.editor.newShape();
    else return false;
    return true;
  },
  drawing(i) {
    return R.peers[i].map.editTools.drawing();
  },
  endDrawing(i, commit) {
    const tools = R.peers[i].map.editTools;
    if (!tools.drawing()) return false;
    if (commit) tools.commitDrawing();
    else tools.stopDrawing();
    return true;
  },
  /** Waits for the helper's timers (a release's, a cancelled drawing's). */
  idle(ms = 0) {
    return new Promise((res) => setTimeout(res, ms));
  },
  /** Waits until no map is moving (an animated pan: at most 2 s). */
  async still() {
    for (let k = 0; k < 100 && R.peers.some((p) => p.moving); k++) await R.idle(20);
  },

  // ------------------------------------------------------------ checks

  /** What is wrong with map i against its engine's state. */
  problems(i) {
    const p = R.peers[i];
    const { ctl, featuresLayer, map } = p;
    const out = [];
    const expected = expectedSummary(p.engine);
    const drawn = drawnSummary(ctl, featuresLayer);
    for (const [id, options] of expected) {
      const d = drawn[id];
      if (!d) {
        out.push(`${id}: in the engine (${options.map((o) => o.layerId).join(", ")}), not drawn`);
        continue;
      }
      // One layer per id: a twin (the same id alive in two datalayers) is drawn as one of them.
      if (!options.some((o) => canonicalJSON(o) === canonicalJSON(d))) {
        out.push(`${id}: drawn ${canonicalJSON(d)}, the engine holds ${options.map(canonicalJSON).join(" | ")}`);
      }
    }
    for (const id of Object.keys(drawn)) if (!expected.has(id)) out.push(`${id}: drawn, not in the engine`);
    if (ctl.features().length !== Object.keys(drawn).length) out.push(`features() lists ${ctl.features().length}, ${Object.keys(drawn).length} drawn`);
    for (const f of ctl.features()) {
      const shown = !p.hidden.has(f.layerId);
      if (f.visible !== shown) out.push(`${f.id}: visible ${f.visible}, its datalayer ${shown ? "shown" : "hidden"}`);
      if (featuresLayer.hasLayer(f.layer) !== shown || map.hasLayer(f.layer) !== shown) out.push(`${f.id}: on the map ${map.hasLayer(f.layer)}, its datalayer ${shown ? "shown" : "hidden"}`);
    }
    // Ghosts: layers nobody knows, vertex handles of layers gone or not edited.
    map.eachLayer((l) => {
      if (l instanceof L.LayerGroup || l instanceof L.Renderer || l instanceof L.Tooltip) return;
      if (l === map.editTools.forwardLineGuide || l === map.editTools.backwardLineGuide) return;
      if (featuresLayer.hasLayer(l)) return;
      if (l instanceof L.Editable.VertexMarker || l instanceof L.Editable.MiddleMarker) {
        const f = l.editor.feature;
        if (!f._map) out.push("a vertex handle of a layer not on the map");
        else if (!l.editor.enabled()) out.push("a vertex handle of an editor disabled");
        else if (ctl.idOf(f) === undefined) out.push("a vertex handle of a layer the controller does not know");
      } else out.push("a layer outside featuresLayer: " + (l.constructor.name || "?"));
    });
    // Editing: markers drag (the helper's default), a path is edited only if the user made it so,
    // with a handle on each vertex.
    for (const layer of featuresLayer.getLayers()) {
      const id = ctl.idOf(layer);
      if (!layer._map) continue; // reported above
      if (layer instanceof L.Marker) {
        if (!layer.editEnabled() || !layer.dragging || !layer.dragging.enabled()) out.push(`${id}: a marker that does not drag`);
        continue;
      }
      const want = p.wantEdit.get(layer) ?? false;
      const editing = !!layer.editEnabled();
      if (editing !== want) out.push(`${id}: editing ${editing}, the user made it ${want}`);
      if (layer.editEnabled()) {
        // A handle on each vertex within the map's view (Leaflet.Editable makes those only,
        // and more as the view moves), and no handle of a vertex the layer no longer has.
        const bounds = map.getBounds();
        const all = flatLatLngs(layer.getLatLngs());
        const handles = layer.editor.editLayer.getLayers().filter((h) => h instanceof L.Editable.VertexMarker);
        const stale = handles.filter((h) => !all.includes(h.latlng)).length;
        const missing = all.filter((ll) => bounds.contains(ll) && !(ll.__vertex && ll.__vertex._map && ll.__vertex.latlng === ll)).length;
        if (stale > 0 || missing > 0) out.push(`${id}: ${stale} vertex handles of no vertex, ${missing} vertices in view without a handle (of ${all.length})`);
      }
    }
    for (const f of ctl.features()) {
      if (!f.visible && f.layer.editEnabled && f.layer.editEnabled()) out.push(`${f.id}: hidden, and edited`);
      const t = f.layer.getTooltip();
      if (f.visible && t && !t.isOpen()) out.push(`${f.id}: its label not shown`);
    }
    if (map.editTools.drawing()) out.push("still drawing");
    return out;
  },
  states() {
    return R.peers.map((p) => p.engine.state());
  },
  drawn(i) {
    return drawnSummary(R.peers[i].ctl, R.peers[i].featuresLayer);
  },
  snapshot(i) {
    let s = "";
    for (const b of R.peers[i].engine.snapshot()) s += String.fromCharCode(b);
    return btoa(s);
  },
  /** A fresh map drawn from a snapshot: what it draws. */
  async fresh(b64) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const engine = await createEngine({ snapshot: bytes });
    const m = mkmap(0);
    const ctl = bindLeaflet({ map: m.map, featuresLayer: m.featuresLayer, engine, layerId: "L1", L });
    return drawnSummary(ctl, m.featuresLayer);
  },
  /** Ids alive (drawable) in two datalayers at once in map i's engine: drawn as either. */
  twins(i) {
    return [...expectedSummary(R.peers[i].engine)].filter(([, o]) => o.length > 1).map(([id]) => id);
  },
  /** The page point of vertex k (from the end if negative) of the layer being drawn on map i. */
  drawingVertex(i, k) {
    const ed = R.peers[i].map.editTools._drawingEditor;
    if (!ed) return null;
    const lls = ed._drawnLatLngs;
    const ll = lls && lls[k < 0 ? lls.length + k : k];
    const el = ll && ll.__vertex && ll.__vertex.getElement();
    return el ? R.center(el) : null;
  },
};

// A message that arrives right after a release, before the helper's own timer for it runs
// (a window capture listener sees the mouseup before the helper's document one).
window.addEventListener(
  "mouseup",
  () => {
    if (!R.deliverAtRelease) return;
    R.deliverAtRelease = false;
    setTimeout(() => {
      R.pump();
      R.deliver(R.queue.length);
    }, 0);
  },
  true,
);

window.R = R;
window.result = {};
