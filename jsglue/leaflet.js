// mapcrdt/leaflet — wires a Leaflet map edited with Leaflet.Editable to a mapcrdt engine
// (DESIGN §10). leaflet.d.ts has the types.
//
//   import { bindLeaflet } from "mapcrdt/leaflet";
//   const featuresLayer = L.featureGroup().addTo(map);   // editOptions.featuresLayer
//   const ctl = bindLeaflet({ map, featuresLayer, engine, layerId: "my-datalayer", L });
//
// Local edits → engine edits, one per completed change:
// - creation: `editable:created` gives the new layer its id and datalayer, and
//   `editable:drawing:commit` upserts the whole GeoJSON feature (subject "feature",
//   metadata {id, layerId, featureType}), in the datalayer the layerId option gives then;
// - geometry: `editable:edited` (fired once per completed change: drawing commit, vertex
//   drag, vertex deletion, marker drag …) and a marker's own `dragend` each give one
//   update of "geometry" — only when the geometry really changed, so the two events of one
//   marker drag make one edit. A degenerate part (a polygon's hole left with fewer than 3
//   vertices, deleted vertex by vertex; a part committed with too few clicks) is dropped
//   from what is sent, and from the layer. A geometry with nothing drawable left (every
//   vertex or part deleted: a line of fewer than 2 vertices, a polygon whose outline has
//   fewer than 3, whatever its holes, a multi-geometry without a part) deletes the feature,
//   as uMap's frontend deletes a feature left without geometry: one engine.delete (one undo
//   step, whose undo brings back the geometry before the last deletion) and the layer
//   removed. `editable:editing` (many per drag) is never synced;
// - properties and deletion go through the controller: setProperty / setProperties /
//   deleteFeature (Leaflet.Editable has no deletion event).
//
// Changes → layers: the controller subscribes to engine.onChange and renders every feature
// a change touches from the engine's state (engine.get): created → a layer of the right type
// (marker for Point, polyline for (Multi)LineString, polygon for (Multi)Polygon) styled from
// properties._umap_options.color and labelled with properties.name; set/unset → move,
// reshape, restyle, rename; deleted → removed. Rendering is idempotent and never calls
// the engine's edit methods; a flag set while rendering keeps the Leaflet events it causes
// from being echoed back to the engine.
//
// A layer the user is dragging (a marker, or a vertex of a line or polygon: from the press
// on it — Leaflet starts a drag only at the first move — or its dragstart or
// editable:vertex:dragstart, to the matching end or the press's release) is not redrawn:
// moving it, reshaping it (the editor's reset replaces the vertex handles) or restyling a marker
// (setIcon replaces its drag handler) would end the drag, and the rest of it would move
// nothing. What arrives meanwhile is held. At the release the layer's geometry is sent if
// the drag changed it — the later write, which wins over the peer's on "geometry" — and then
// the feature is drawn from the engine: the peer's other changes, and its geometry only if
// the release sent none. A deletion is drawn at once (the drag cannot bring it back).
// A committed line or polygon the user goes on drawing (Leaflet.Editable's continueForward,
// continueBackward, newShape, newHole: from editable:drawing:start to editable:drawing:end)
// is held the same way: reshaping it would replace the arrays the editor adds the clicked
// points to, and they would be lost. At the drawing's end (committed, or cancelled with the
// points it added kept on the layer) the layer's geometry is sent if it changed.
//
// The controller listens on the map (where Leaflet.Editable forwards its events), keeping
// only layers of its featuresLayer. Layers the controller knows carry their identity in a
// WeakMap; `idOf(layer)` reads it.

const DEFAULT_COLOR = "#3388ff";
const ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** A random id of n characters [A-Za-z0-9] (uMap's feature ids look like "UxNjQ"). */
export function randomId(n = 8) {
  const bytes = new Uint8Array(n);
  globalThis.crypto.getRandomValues(bytes);
  let s = "";
  for (const b of bytes) s += ID_ALPHABET[b % ID_ALPHABET.length];
  return s;
}

/** JSON text with object members sorted, for comparing values whatever their key order. */
export function canonicalJSON(v) {
  if (v === null || typeof v !== "object") return JSON.stringify(v) ?? "null";
  if (Array.isArray(v)) return "[" + v.map(canonicalJSON).join(",") + "]";
  const keys = Object.keys(v)
    .filter((k) => v[k] !== undefined)
    .sort();
  return "{" + keys.map((k) => JSON.stringify(k) + ":" + canonicalJSON(v[k])).join(",") + "}";
}

/** "marker", "polyline" or "polygon" for a GeoJSON geometry type; "" if unsupported. */
export function featureTypeOfGeometry(geometry) {
  switch (geometry && geometry.type) {
    case "Point":
      return "marker";
    case "LineString":
    case "MultiLineString":
      return "polyline";
    case "Polygon":
    case "MultiPolygon":
      return "polygon";
    default:
      return "";
  }
}

/**
 * A geometry with a part of fewer vertices than Leaflet.Editable lets a user leave: a line of
 * fewer than 2 positions, a polygon ring of fewer than 3 (its closing position, equal to the
 * first, not counted), a polygon without rings, a multi-geometry without parts. Leaflet draws
 * nothing visible for such a part, and throws on an empty one ("latlngs not passed", when it
 * places a label). Takes a geometry whose positions validPositions accepted.
 */
function degenerate(g) {
  const c = g.coordinates;
  switch (g.type) {
    case "LineString":
      return c.length < 2;
    case "MultiLineString":
      return c.length === 0 || c.some((line) => line.length < 2);
    case "Polygon":
      return degeneratePolygon(c);
    case "MultiPolygon":
      return c.length === 0 || c.some(degeneratePolygon);
    default:
      return false;
  }
}

function degeneratePolygon(rings) {
  return rings.length === 0 || rings.some((ring) => ring.length - (closed(ring) ? 1 : 0) < 3);
}

/**
 * g without its degenerate parts: a polygon's holes of fewer than 3 vertices, a
 * multipolygon's polygons whose outer ring has fewer than 3 (their holes with them), a
 * multilinestring's lines of fewer than 2; g itself if it has none; null if nothing
 * drawable is left (a line of fewer than 2 positions, a polygon whose outer ring has fewer
 * than 3 vertices, whatever its holes, a multi-geometry without a part left). Leaflet.Editable
 * makes such parts for a moment, or for good: it lets a user delete a hole vertex by vertex
 * (down to 2, 1, then none), a page may delete any vertex or part (uMap's "Delete this vertex",
 * "Delete this shape": vertex.delete(), deleteShapeAt), and a new part committed with too few
 * clicks is sent (editable:drawing:commit) before it is deleted. Sent as they are, they would
 * make the whole feature degenerate, drawn by no map, the user's own included.
 */
function withoutDegenerateParts(g) {
  const ringOk = (ring) => ring.length - (closed(ring) ? 1 : 0) >= 3;
  const polygonOk = (rings) => rings.length > 0 && ringOk(rings[0]);
  const polygon = (rings) => (rings.slice(1).every(ringOk) ? rings : [rings[0], ...rings.slice(1).filter(ringOk)]);
  let c = g.coordinates;
  if (g.type === "LineString") return c.length >= 2 ? g : null;
  if (g.type === "Polygon") {
    if (!polygonOk(c)) return null;
    c = polygon(c);
  } else if (g.type === "MultiPolygon") c = c.filter(polygonOk).map(polygon);
  else if (g.type === "MultiLineString") c = c.filter((line) => line.length >= 2);
  if (c.length === 0) return null;
  const same = c.length === g.coordinates.length && c.every((x, i) => x === g.coordinates[i]);
  return same ? g : { ...g, coordinates: c };
}

/** Whether a ring's last position repeats its first (GeoJSON closes rings; Leaflet drops the repeat). */
function closed(ring) {
  const a = ring[0];
  const z = ring[ring.length - 1];
  return ring.length > 1 && a[0] === z[0] && a[1] === z[1];
}

/** Runs fn; what it throws is rethrown asynchronously (reported like a listener's error), not to the caller. */
function reportLater(fn) {
  try {
    fn();
  } catch (e) {
    queueMicrotask(() => {
      throw e;
    });
  }
}

// How deep a geometry's positions lie in its coordinates, by type.
const POSITION_DEPTH = { Point: 0, LineString: 1, MultiLineString: 2, Polygon: 2, MultiPolygon: 3 };

/**
 * A geometry Leaflet can draw: a supported type whose coordinates nest positions as deep
 * as the type says, each position a place (validPosition), and no part degenerate (empty,
 * or too few vertices to be seen). A peer may send any JSON as a geometry; Leaflet throws
 * on a position it cannot read ("Invalid LatLng"), on an empty line or ring ("latlngs not
 * passed"), and placing the label of a line or polygon far beyond the world (its squared
 * distances overflow: "Invalid LatLng object: (NaN, NaN)").
 */
function validGeometry(g) {
  return (
    g !== null &&
    typeof g === "object" &&
    featureTypeOfGeometry(g) !== "" &&
    validPositions(g.coordinates, POSITION_DEPTH[g.type]) &&
    !degenerate(g)
  );
}

// The largest longitude drawn, either way: a line drawn across the antimeridian on a
// wrapped world goes past ±180, a million degrees is no place a user drew, and near 1e150
// Leaflet's distances overflow.
const MAX_LNG = 1e6;

/**
 * A position [lng, lat, alt?, …] of numbers only (GeoJSON's; Leaflet reads a string or null
 * altitude as NaN or 0, sent back so by the next drag), with lat within ±90 (beyond is no
 * place: Leaflet would clamp it to the map's edge) and lng within ±MAX_LNG.
 */
function validPosition(c) {
  return c.length >= 2 && c.every(Number.isFinite) && Math.abs(c[1]) <= 90 && Math.abs(c[0]) <= MAX_LNG;
}

function validPositions(c, depth) {
  if (!Array.isArray(c)) return false;
  if (depth === 0) return validPosition(c);
  for (const x of c) if (!validPositions(x, depth - 1)) return false;
  return true;
}

/** The marker icon: a pin in color. */
function defaultMarkerIcon(L, color) {
  const safe = /^#[0-9a-fA-F]{3,8}$|^[a-zA-Z]{1,30}$/.test(color) ? color : DEFAULT_COLOR;
  const html =
    `<svg xmlns="http://www.w3.org/2000/svg" width="26" height="36" viewBox="0 0 26 36" aria-hidden="true">` +
    `<path d="M13 1C6.4 1 1 6.3 1 12.8 1 21.6 13 35 13 35s12-13.4 12-22.2C25 6.3 19.6 1 13 1z" ` +
    `fill="${safe}" stroke="#fff" stroke-width="2"/><circle cx="13" cy="13" r="4.5" fill="#fff"/></svg>`;
  return L.divIcon({
    className: "mapcrdt-marker",
    html,
    iconSize: [26, 36],
    iconAnchor: [13, 35],
    tooltipAnchor: [0, -30],
  });
}

/**
 * Binds a Leaflet map (with Leaflet.Editable) to an engine. See leaflet.d.ts.
 * @param {import("./leaflet.d.ts").BindOptions} options
 */
// The keys of BindOptions (leaflet.d.ts): another one is a mistake (a misspelt option would
// otherwise fall back to its default without a word).
const BIND_KEYS = new Set(["map", "featuresLayer", "engine", "layerId", "L", "precision", "newId", "newProperties",
  "defaultColor", "markerIcon", "isLayerVisible", "editable", "group", "onEdit", "onRender"]);

export function bindLeaflet(options) {
  if (options === null || typeof options !== "object") throw new TypeError("bindLeaflet takes an options object");
  for (const k of Object.keys(options)) {
    if (!BIND_KEYS.has(k)) throw new TypeError(`bindLeaflet: unknown option ${JSON.stringify(k)} (known: ${[...BIND_KEYS].join(", ")})`);
  }
  if (options.precision !== undefined && !(Number.isInteger(options.precision) && options.precision >= 0 && options.precision <= 15)) {
    // NaN or a word would make every coordinate sent NaN (kept as null by the engine).
    throw new TypeError(`bindLeaflet: precision must be a whole number of decimals from 0 to 15, not ${String(options.precision)}`);
  }
  const { map, featuresLayer, engine } = options;
  const L = options.L ?? globalThis.L;
  if (!map || !featuresLayer || !engine) throw new TypeError("bindLeaflet needs map, featuresLayer and engine");
  if (!L) throw new TypeError("bindLeaflet needs L (the Leaflet namespace)");
  if (options.layerId === undefined) throw new TypeError("bindLeaflet needs layerId: a datalayer id or a function of the layer");
  const precision = options.precision ?? 6;
  const newId = options.newId ?? (() => randomId(8));
  const defaultColor = options.defaultColor ?? DEFAULT_COLOR;
  const markerIcon = options.markerIcon ?? ((color) => defaultMarkerIcon(L, color));
  const isLayerVisible = options.isLayerVisible ?? (() => true);
  const editable = options.editable ?? ((layer) => layer instanceof L.Marker);
  const onEdit = options.onEdit ?? (() => {});
  const onRender = options.onRender ?? (() => {});
  const group = options.group;

  /**
   * Per layer: identity and what is rendered.
   * dragging: the user is dragging the layer; drawing: the user goes on drawing it (a committed
   * line or polygon: see render); held: a change arrived meanwhile.
   * @type {WeakMap<any, {id: string, layerId: string, featureType: string, committed: boolean,
   *   engineGeometry: string, renderedGeometry: string, color: string, name: string, properties: any,
   *   dragging?: boolean, drawing?: boolean, held?: boolean, alt?: number, press?: object}>}
   */
  const infos = new WeakMap();
  /** @type {Map<string, any>} feature id → layer */
  const layers = new Map();
  /**
   * Feature id → the datalayers whose feature of that id waits, not drawn, while another
   * datalayer's is (one layer per id): drawn when that one goes (see render).
   * @type {Map<string, Set<string>>}
   */
  const waiting = new Map();
  let applying = 0;
  let unbound = false;

  const resolveLayerId = (layer) => {
    const v = typeof options.layerId === "function" ? options.layerId(layer) : options.layerId;
    if (typeof v !== "string" || v === "") throw new Error("layerId must give a non-empty datalayer id");
    return v;
  };

  const typeOfLayer = (layer) => {
    if (layer instanceof L.Polygon) return "polygon";
    if (layer instanceof L.Polyline) return "polyline";
    if (layer instanceof L.Marker) return "marker";
    return "";
  };

  const metadata = (info) => ({ id: info.id, layerId: info.layerId, featureType: info.featureType });
  const identity = (info) => ({ id: info.id, layerId: info.layerId });

  const geometryOf = (layer) => layer.toGeoJSON(precision).geometry;

  const editOptions = (info) => (group ? { group: group(info.id, info.layerId) } : undefined);

  // ---------------------------------------------------------------- rendering

  const colorOf = (properties) => {
    const c = properties && properties._umap_options && properties._umap_options.color;
    return typeof c === "string" && c !== "" ? c : defaultColor;
  };
  const nameOf = (properties) => {
    const n = properties && properties.name;
    return typeof n === "string" ? n : n == null ? "" : String(n);
  };

  function tagElement(layer) {
    const info = infos.get(layer);
    const el = layer.getElement && layer.getElement();
    if (info && el) {
      el.setAttribute("data-feature-id", info.id);
      el.setAttribute("data-layer-id", info.layerId);
    }
  }

  function style(layer, info, color) {
    info.color = color;
    if (layer instanceof L.Marker) {
      layer.setIcon(markerIcon(color));
    } else if (layer.setStyle) {
      layer.setStyle({ color, fillColor: color });
    }
    tagElement(layer);
  }

  function label(layer, info, name) {
    info.name = name;
    if (name === "") {
      if (layer.getTooltip()) layer.unbindTooltip();
    } else if (layer.getTooltip()) {
      layer.setTooltipContent(escapeText(name));
    } else {
      layer.bindTooltip(escapeText(name), {
        permanent: true,
        direction: layer instanceof L.Marker ? "top" : "center",
        className: "mapcrdt-label",
      });
    }
  }

  function setGeometry(layer, geometry) {
    if (layer instanceof L.Marker) {
      layer.setLatLng(L.GeoJSON.coordsToLatLng(geometry.coordinates));
    } else {
      const depth = { LineString: 0, MultiLineString: 1, Polygon: 1, MultiPolygon: 2 }[geometry.type];
      layer.setLatLngs(L.GeoJSON.coordsToLatLngs(geometry.coordinates, depth));
    }
    if (layer.editEnabled && layer.editEnabled() && layer.editor && !(layer instanceof L.Marker)) {
      layer.editor.reset();
    }
  }

  function createLayer(featureType, geometry, color) {
    const latlngsDepth = { LineString: 0, MultiLineString: 1, Polygon: 1, MultiPolygon: 2 }[geometry.type];
    const editOpts = map.editTools ? { editOptions: { editTools: map.editTools } } : {};
    if (featureType === "marker") {
      return L.marker(L.GeoJSON.coordsToLatLng(geometry.coordinates), { icon: markerIcon(color), ...editOpts });
    }
    const latlngs = L.GeoJSON.coordsToLatLngs(geometry.coordinates, latlngsDepth);
    const opts = { color, fillColor: color, ...editOpts };
    return featureType === "polygon" ? L.polygon(latlngs, opts) : L.polyline(latlngs, opts);
  }

  function adopt(layer, info) {
    infos.set(layer, info);
    layers.set(info.id, layer);
    layer.on(layerEvents);
  }

  function show(layer, info) {
    const visible = isLayerVisible(info.layerId);
    if (visible && !featuresLayer.hasLayer(layer)) {
      featuresLayer.addLayer(layer);
    } else if (!visible && featuresLayer.hasLayer(layer)) {
      if (layer.editEnabled && layer.editEnabled()) layer.disableEdit();
      featuresLayer.removeLayer(layer);
    }
  }

  // drawWaiting draws the first feature of id, of the datalayers waiting for its layer,
  // that the engine holds (render: the others wait again; one deleted meanwhile is absent).
  function drawWaiting(id) {
    const w = waiting.get(id);
    if (!w) return;
    waiting.delete(id);
    for (const layerId of w) renderSafely({ id, layerId });
  }

  function drop(id) {
    const layer = layers.get(id);
    if (!layer) return;
    layers.delete(id);
    layer.off(layerEvents);
    const info = infos.get(layer);
    if (info) info.dragging = info.drawing = false; // removed under the drag: nothing to send
    if (layer.editEnabled && layer.editEnabled()) layer.disableEdit();
    featuresLayer.removeLayer(layer);
    if (map.hasLayer(layer)) map.removeLayer(layer);
    infos.delete(layer);
  }

  // Leaflet places a permanent tooltip (a label) by reading its size when it opens: each read
  // lays out every marker and label added before it, so n labelled features drawn one after
  // the other cost O(n²) (Chromium: 1,000 ~3 s, 2,000 ~17 s). Many features at once are drawn
  // with the map's panes hidden (nothing to lay out: the reads are free, and give 0), and
  // their labels placed once the panes are shown again (one layout).
  const MANY = 16;
  /** @type {any[] | null} the layers drawn while the panes are hidden */
  let hidden = null;

  function drawingMany(count, fn) {
    const pane = count >= MANY && hidden === null && map.getPane && map.getPane("mapPane");
    if (!pane) return fn();
    const display = pane.style.display;
    pane.style.display = "none";
    hidden = [];
    try {
      return fn();
    } finally {
      const drawn = hidden;
      hidden = null;
      pane.style.display = display;
      for (const layer of drawn) {
        const tooltip = layer.getTooltip && layer.getTooltip();
        if (tooltip && tooltip._map && tooltip._updatePosition) reportLater(() => tooltip._updatePosition());
      }
    }
  }

  /** Renders one feature from the engine's state. Returns what happened. */
  function render(ident) {
    const id = ident.id;
    let layer = layers.get(id);
    let info = layer && infos.get(layer);
    if (info && info.layerId !== ident.layerId) {
      // The same id in another datalayer is another object, and the controller has one
      // layer per id: the one drawn keeps it, and this one waits until it goes. A feature
      // moved to another datalayer is that case for a moment: a batch making the new one,
      // then deleting the old one, gives the new one's change first.
      let w = waiting.get(id);
      if (!w) waiting.set(id, (w = new Set()));
      w.add(ident.layerId);
      return "ignored";
    }
    const value = engine.get("feature", { id, layerId: ident.layerId });
    if (info && (info.dragging || info.drawing) && value !== undefined && value !== null) {
      info.held = true; // drawn when the drag or the drawing ends (endDrag, endDrawing)
      return "held";
    }
    const geometry = value && value.geometry;
    if (value === undefined || value === null || !validGeometry(geometry)) {
      if (layer && (!info || info.committed)) {
        drop(id);
        onRender({ id, layerId: ident.layerId, kind: "removed", layer });
        drawWaiting(id);
        return "removed";
      }
      return "absent";
    }
    const properties = value.properties && typeof value.properties === "object" ? value.properties : {};
    const featureType = featureTypeOfGeometry(geometry);
    const color = colorOf(properties);
    const name = nameOf(properties);
    const geomText = canonicalJSON(geometry);
    applying++;
    try {
      if (layer && info && info.featureType !== featureType) {
        drop(id); // the geometry changed kind: a new layer
        layer = undefined;
      }
      if (!layer) {
        layer = createLayer(featureType, geometry, color);
        info = {
          id,
          layerId: ident.layerId,
          featureType,
          committed: true,
          engineGeometry: geomText,
          renderedGeometry: canonicalJSON(geometryOf(layer)),
          color,
          name: "",
          properties,
        };
        adopt(layer, info);
        label(layer, info, name);
        show(layer, info);
        if (featuresLayer.hasLayer(layer) && editable(layer) && layer.enableEdit && !layer.editEnabled()) layer.enableEdit(map);
        if (hidden !== null) hidden.push(layer); // its label placed when the panes are shown
        onRender({ id, layerId: info.layerId, kind: "created", layer });
        return "created";
      }
      info = /** @type {any} */ (infos.get(layer));
      info.committed = true;
      info.properties = properties;
      if (geomText !== info.engineGeometry) {
        info.engineGeometry = geomText;
        const current = canonicalJSON(geometryOf(layer));
        if (current !== geomText) setGeometry(layer, geometry);
        info.renderedGeometry = canonicalJSON(geometryOf(layer));
      }
      if (color !== info.color) style(layer, info, color);
      if (name !== info.name) label(layer, info, name);
      show(layer, info);
      if (hidden !== null) hidden.push(layer);
      onRender({ id, layerId: info.layerId, kind: "updated", layer });
      return "updated";
    } finally {
      applying--;
    }
  }

  function applyChanges(changes) {
    if (unbound || !Array.isArray(changes)) return;
    drawingMany(changes.length, () => applyEach(changes));
  }

  function applyEach(changes) {
    const seen = new Set();
    for (const c of changes) {
      if (!c || c.subject !== "feature" || !c.metadata) continue;
      const id = c.metadata.id;
      const layerId = c.metadata.layerId;
      if (typeof id !== "string" || typeof layerId !== "string") continue;
      const k = layerId + "\u0000" + id;
      if (seen.has(k)) continue;
      seen.add(k);
      renderSafely({ id, layerId });
    }
  }

  // renderSafely is render, with what it throws reported (reportLater) rather than stopping
  // the features after it from being drawn.
  function renderSafely(ident) {
    reportLater(() => render(ident));
  }

  /** Renders every feature alive in the engine (after restoring a snapshot). */
  function renderAll() {
    const features = JSON.parse(engine.state()).filter((o) => o.subject === "feature");
    // Layers of features gone first (by datalayer and id: the same id may be alive in
    // another datalayer, whose feature then takes the layer), then every feature drawn.
    const alive = new Set(features.map((o) => o.metadata.layerId + "\u0000" + o.metadata.id));
    for (const [id, layer] of [...layers]) {
      const info = infos.get(layer);
      if (info && info.committed && !alive.has(info.layerId + "\u0000" + id)) drop(id);
    }
    waiting.clear();
    drawingMany(features.length, () => {
      for (const o of features) renderSafely({ id: o.metadata.id, layerId: o.metadata.layerId });
    });
  }

  // ---------------------------------------------------------------- local edits

  function edited(what) {
    reportLater(() => onEdit(what));
  }

  function ours(layer) {
    return !!layer && infos.has(layer);
  }

  function syncGeometry(layer) {
    if (applying || unbound) return false;
    const info = infos.get(layer);
    if (!info || !info.committed) return false;
    const drawn = geometryOf(layer);
    const geometry = withoutDegenerateParts(drawn);
    if (geometry === null) return deleteEmptied(layer, info);
    if (geometry !== drawn) redrawLater(layer, info, drawn, geometry);
    const text = canonicalJSON(geometry);
    if (text === info.renderedGeometry) return false;
    info.renderedGeometry = text;
    info.engineGeometry = text;
    engine.update("feature", metadata(info), "geometry", geometry, editOptions(info));
    edited({ kind: "geometry", id: info.id, layerId: info.layerId });
    return true;
  }

  // deleteEmptied deletes the feature of layer, whose geometry has nothing drawable left
  // (syncGeometry): what uMap does with a feature left without geometry (Path.isEmpty →
  // del). One engine.delete: one undo step, whose undo brings back the geometry the engine
  // held, the one before the last vertex or part went. The layer leaves the helper at once
  // (the delete's change finds no layer to draw, and Leaflet.Editable's events that follow
  // are not ours), and the map once Leaflet.Editable is done with the deletion that emptied
  // it (its vertex deletion goes on after editable:edited).
  function deleteEmptied(layer, info) {
    const id = info.id;
    if (layers.get(id) === layer) layers.delete(id);
    layer.off(layerEvents);
    infos.delete(layer);
    info.dragging = info.drawing = false;
    engine.delete("feature", metadata(info), editOptions(info));
    queueMicrotask(() => {
      if (layer.editEnabled && layer.editEnabled()) layer.disableEdit();
      featuresLayer.removeLayer(layer);
      if (map.hasLayer(layer)) map.removeLayer(layer);
    });
    reportLater(() => onRender({ id, layerId: info.layerId, kind: "removed", layer }));
    edited({ kind: "deleted", id, layerId: info.layerId });
    drawWaiting(id);
    return true;
  }

  // redrawLater draws geometry (what syncGeometry sent: drawn without its degenerate parts)
  // on the layer, once Leaflet.Editable is done with the change that made drawn (its vertex
  // deletion goes on after editable:edited), unless the layer changed meanwhile.
  function redrawLater(layer, info, drawn, geometry) {
    const was = canonicalJSON(drawn);
    queueMicrotask(() => {
      if (unbound || infos.get(layer) !== info || info.dragging || info.drawing) return;
      if (canonicalJSON(geometryOf(layer)) !== was) return;
      applying++;
      try {
        setGeometry(layer, geometry);
        info.renderedGeometry = canonicalJSON(geometryOf(layer));
      } finally {
        applying--;
      }
    });
  }

  function commit(layer) {
    const info = infos.get(layer);
    if (!info) return;
    if (info.committed) {
      syncGeometry(layer);
      return;
    }
    const geometry = geometryOf(layer);
    if (degenerate(geometry)) return; // a line of one point: drawing:end removes it
    // The datalayer asked again: the one of editable:created may have gone while the user
    // drew (a peer deleted it: the feature would go to it, and be drawn nowhere). If the
    // function throws now, the feature keeps that one (what the user drew is not lost).
    if (typeof options.layerId === "function") reportLater(() => (info.layerId = resolveLayerId(layer)));
    const text = canonicalJSON(geometry);
    info.committed = true;
    info.renderedGeometry = text;
    info.engineGeometry = text;
    layers.set(info.id, layer);
    const feature = { type: "Feature", id: info.id, geometry, properties: info.properties };
    engine.upsert("feature", metadata(info), feature, editOptions(info));
    tagElement(layer);
    edited({ kind: "created", id: info.id, layerId: info.layerId });
  }

  function onCreated(e) {
    if (applying || unbound) return;
    const layer = e.layer;
    if (!layer || infos.has(layer)) return;
    if (e.editTools && e.editTools.featuresLayer && e.editTools.featuresLayer !== featuresLayer) return;
    const featureType = typeOfLayer(layer);
    if (!featureType) return;
    const layerId = resolveLayerId(layer);
    const id = newId();
    const extra = options.newProperties ? options.newProperties({ id, layerId, featureType, layer }) : {};
    const properties = { ...extra };
    const color = colorOf(properties);
    properties._umap_options = { ...(properties._umap_options || {}), color };
    const info = {
      id,
      layerId,
      featureType,
      committed: false,
      engineGeometry: "",
      renderedGeometry: "",
      color,
      name: "",
      properties,
    };
    adopt(layer, info);
    style(layer, info, color);
    label(layer, info, nameOf(properties));
  }

  function onDrawingCommit(e) {
    if (applying || unbound || !ours(e.layer)) return;
    commit(e.layer);
  }

  function onEdited(e) {
    if (applying || unbound || !ours(e.layer)) return;
    const info = infos.get(e.layer);
    if (!info.committed) return; // still being drawn: the commit creates it
    syncGeometry(e.layer);
  }

  function onDrawingStart(e) {
    if (unbound || !ours(e.layer)) return;
    const info = infos.get(e.layer);
    if (info.committed) info.drawing = true; // drawn on again (a new feature is not in the engine yet)
  }

  function onDrawingEnd(e) {
    if (unbound || !ours(e.layer)) return;
    const layer = e.layer;
    const info = infos.get(layer);
    if (info.committed) {
      endDrawing(layer);
      return;
    }
    // Cancelled, or committed with too few points: it was never in the engine. Remove it
    // once Leaflet.Editable is done with it.
    setTimeout(() => {
      if (info.committed || (layer.editor && layer.editor.drawing())) return;
      if (layers.get(info.id) === layer) layers.delete(info.id);
      layer.off(layerEvents);
      if (layer.editEnabled && layer.editEnabled()) layer.disableEdit();
      featuresLayer.removeLayer(layer);
      infos.delete(layer);
    }, 0);
  }

  // A drag of a committed feature's layer begins: a marker's (or a path's, with a path drag
  // plugin) own dragstart, or Leaflet.Editable's editable:vertex:dragstart for a vertex.
  // A marker's drag replaces its LatLng with one without altitude (Leaflet's MarkerDrag); a
  // vertex drag keeps the vertex's (Leaflet.Editable updates lat and lng only). The marker's
  // altitude is kept the same way (alt: the one it had at the dragstart).
  function startDrag(layer) {
    const info = infos.get(layer);
    if (!info || !info.committed || unbound) return;
    if (!info.dragging && layer instanceof L.Marker) info.alt = layer.getLatLng().alt;
    info.dragging = true;
  }

  // endDrag ends it: at the layer's dragend or editable:vertex:dragend, or when the drag
  // cannot end normally (editing disabled, the layer taken off the map: its drag handler
  // goes without a dragend). Sends the layer's geometry if the drag changed it, then draws
  // what was held.
  function endDrag(layer) {
    const info = infos.get(layer);
    if (!info || !info.dragging) return;
    info.dragging = false;
    if (!info.drawing) finish(layer, info); // a vertex dragged while drawing: the drawing's end finishes
  }

  // endDrawing ends the drawing on of a committed layer (editable:drawing:end): as endDrag.
  function endDrawing(layer) {
    const info = infos.get(layer);
    if (!info || !info.drawing) return;
    info.drawing = false;
    if (!info.dragging) finish(layer, info);
  }

  function finish(layer, info) {
    if (applying) queueMicrotask(() => finishDrag(layer, info)); // not inside a render
    else finishDrag(layer, info);
  }

  function finishDrag(layer, info) {
    if (unbound || infos.get(layer) !== info) return;
    if (info.alt !== undefined) {
      const ll = layer.getLatLng();
      if (ll.alt === undefined) ll.alt = info.alt;
      info.alt = undefined;
    }
    syncGeometry(layer);
    if (info.held) {
      info.held = false;
      renderSafely(identity(info));
    }
  }

  function onLayerDragStart(e) {
    startDrag(e.target);
  }

  // A press on a marker, a vertex or a middle handle begins the drag for the helper: Leaflet
  // starts it only at the first move, and a change drawn in between would replace what is
  // pressed (setIcon, the editor's reset), so the drag that follows would move nothing. The
  // press's release ends it after the browser's events of the release (a click on a vertex
  // deletes it; one on a middle handle leaves the vertex it inserted at the press, with no
  // edit event: sent then). A drag begun meanwhile ended at its own dragend already.
  // A press of another mouse button than the first on a marker or a vertex (ev: its DOM
  // event) starts no drag (Leaflet's Draggable ignores it) and holds nothing: its release may
  // never reach the page (the context menu a right press opens takes it), and the hold would
  // last until the layer's next press. (One on a middle handle inserts a vertex, whichever
  // the button: it holds, for the release to send it.)
  // A release the page may never get ends the hold too: a context menu opened at the press
  // (Ctrl-click on macOS) takes it, and so may the window losing focus mid-press (its blur).
  // A drag Leaflet goes on with after that is sent at its own dragend.
  const RELEASES = ["mouseup", "touchend", "touchcancel", "pointerup", "pointercancel", "contextmenu"];
  function onPress(layer, ev) {
    const info = infos.get(layer);
    const doc = globalThis.document;
    if (!info || !info.committed || unbound || !doc) return;
    if (ev && typeof ev.button === "number" && !ev.touches && ev.button !== 0) return;
    startDrag(layer);
    const press = (info.press = {}); // this press's release ends the hold, not an earlier one's
    const win = globalThis.window;
    const release = () => {
      for (const t of RELEASES) doc.removeEventListener(t, release, true);
      if (win && win.removeEventListener) win.removeEventListener("blur", release);
      // Unless a later press came before this timer (input events may: a quick second drag).
      setTimeout(() => {
        if (info.press === press) endDrag(layer);
      }, 0);
    };
    for (const t of RELEASES) doc.addEventListener(t, release, true);
    if (win && win.addEventListener) win.addEventListener("blur", release);
  }

  function onLayerPress(e) {
    const layer = e.target;
    if (layer instanceof L.Marker && layer.dragging && layer.dragging.enabled()) onPress(layer, e.originalEvent);
  }

  function onLayerDragEnd(e) {
    const layer = e.target;
    if (unbound) return;
    if (infos.get(layer)?.dragging) endDrag(layer);
    else if (!applying) syncGeometry(layer); // a dragend without its dragstart (a programmatic move)
  }

  function onLayerRemove(e) {
    endDrag(e.target);
  }

  function onLayerAdd(e) {
    tagElement(e.target);
  }

  const layerEvents = {
    add: onLayerAdd,
    remove: onLayerRemove,
    mousedown: onLayerPress,
    touchstart: onLayerPress,
    dragstart: onLayerDragStart,
    dragend: onLayerDragEnd,
  };

  function onVertexDragStart(e) {
    if (ours(e.layer)) startDrag(e.layer);
  }

  function onVertexPress(e) {
    if (ours(e.layer)) onPress(e.layer, e.originalEvent);
  }

  function onMiddlePress(e) {
    if (ours(e.layer)) onPress(e.layer);
  }

  function onVertexDragEndOrDisable(e) {
    if (ours(e.layer)) endDrag(e.layer);
  }

  const mapEvents = {
    "editable:created": onCreated,
    "editable:drawing:commit": onDrawingCommit,
    "editable:edited": onEdited,
    "editable:drawing:start": onDrawingStart,
    "editable:drawing:end": onDrawingEnd,
    "editable:vertex:dragstart": onVertexDragStart,
    "editable:vertex:mousedown": onVertexPress,
    "editable:middlemarker:mousedown": onMiddlePress,
    "editable:vertex:dragend": onVertexDragEndOrDisable,
    "editable:disable": onVertexDragEndOrDisable,
  };
  map.on(mapEvents);
  const offChange = engine.onChange((event) => applyChanges(event.changes));

  // ---------------------------------------------------------------- the controller

  // batched runs fn in one batch: the caller's, when one is open (engine.batch would throw
  // "a batch is already open" — after part of the work), or its own.
  function batched(fn) {
    if (engine.inBatch()) fn();
    else engine.batch(fn);
  }

  // dropDeleted removes layer, the feature of id the controller deleted, if the delete's
  // change has not (it changed nothing visible), and draws a feature of that id waiting in
  // another datalayer.
  function dropDeleted(id, layer) {
    if (layers.get(id) !== layer) return; // rendered already: removed, and maybe replaced
    drop(id);
    drawWaiting(id);
  }

  function need(id) {
    const layer = layers.get(id);
    const info = layer && infos.get(layer);
    if (!info || !info.committed) throw new Error(`mapcrdt/leaflet: no feature ${JSON.stringify(id)}`);
    return { layer, info };
  }

  const controller = {
    engine,

    seed(collection, layerId) {
      if (!collection || !Array.isArray(collection.features)) throw new TypeError("seed takes a GeoJSON FeatureCollection");
      const ids = [];
      drawingMany(collection.features.length, () => collection.features.forEach((f, i) => {
        if (!f || !validGeometry(f.geometry)) return;
        const id = f.id != null ? String(f.id) : f.properties && f.properties.id != null ? String(f.properties.id) : `${layerId}-${i}`;
        const meta = { id, layerId, featureType: featureTypeOfGeometry(f.geometry) };
        const value = { type: "Feature", id, geometry: f.geometry, properties: f.properties ?? {} };
        engine.seed("feature", meta, value);
        renderSafely({ id, layerId });
        ids.push(id);
      }));
      return ids;
    },

    applyChanges,
    renderAll,

    layerFor(id) {
      return layers.get(id);
    },

    idOf(layer) {
      const info = infos.get(layer);
      return info ? info.id : undefined;
    },

    metadataOf(id) {
      const layer = layers.get(id);
      const info = layer && infos.get(layer);
      return info ? metadata(info) : undefined;
    },

    features() {
      const out = [];
      for (const [id, layer] of layers) {
        const info = infos.get(layer);
        if (!info || !info.committed) continue;
        out.push({
          id,
          layerId: info.layerId,
          featureType: info.featureType,
          layer,
          name: info.name,
          color: info.color,
          visible: featuresLayer.hasLayer(layer),
        });
      }
      return out;
    },

    addFeature(feature, layerId) {
      if (!feature || !validGeometry(feature.geometry)) throw new TypeError("addFeature takes a GeoJSON Feature with a geometry Leaflet can draw: a Point, (Multi)LineString or (Multi)Polygon with no empty or degenerate part");
      const lid = layerId ?? resolveLayerId(null);
      const id = feature.id != null ? String(feature.id) : newId();
      const featureType = featureTypeOfGeometry(feature.geometry);
      const properties = { ...(feature.properties ?? {}) };
      const value = { type: "Feature", id, geometry: feature.geometry, properties };
      engine.upsert("feature", { id, layerId: lid, featureType }, value, group ? { group: group(id, lid) } : undefined);
      renderSafely({ id, layerId: lid });
      edited({ kind: "created", id, layerId: lid });
      return id;
    },

    setProperty(id, key, value) {
      const { info } = need(id);
      const path = "properties." + key;
      if (value === undefined) engine.unset("feature", metadata(info), path, editOptions(info));
      else engine.update("feature", metadata(info), path, value, editOptions(info));
      renderSafely(identity(info));
      edited({ kind: "property", id, layerId: info.layerId, key });
    },

    setProperties(id, values) {
      const { info } = need(id);
      const entries = Object.entries(values);
      if (entries.length === 0) return;
      batched(() => {
        for (const [key, value] of entries) {
          const path = "properties." + key;
          if (value === undefined) engine.unset("feature", metadata(info), path);
          else engine.update("feature", metadata(info), path, value);
        }
      });
      renderSafely(identity(info));
      edited({ kind: "property", id, layerId: info.layerId, key: entries.map(([k]) => k).join(",") });
    },

    syncGeometry(id) {
      const { layer } = need(id);
      return syncGeometry(layer);
    },

    deleteFeature(id) {
      const layer = layers.get(id);
      const info = layer && infos.get(layer);
      if (!info) return false;
      if (!info.committed) {
        drop(id);
        return false;
      }
      engine.delete("feature", metadata(info), editOptions(info));
      dropDeleted(id, layer);
      edited({ kind: "deleted", id, layerId: info.layerId });
      return true;
    },

    deleteFeatures(ids) {
      const targets = ids
        .map((id) => layers.get(id))
        .filter((layer) => layer && infos.get(layer) && infos.get(layer).committed)
        .map((layer) => ({ layer, info: infos.get(layer) }));
      if (targets.length === 0) return 0;
      batched(() => {
        for (const { info } of targets) engine.delete("feature", metadata(info));
      });
      for (const { layer, info } of targets) dropDeleted(info.id, layer);
      edited({ kind: "deleted", id: targets.map((t) => t.info.id).join(","), layerId: "" });
      return targets.length;
    },

    refreshVisibility() {
      applying++;
      try {
        for (const layer of layers.values()) {
          const info = infos.get(layer);
          if (!info || !info.committed) continue;
          show(layer, info);
          if (featuresLayer.hasLayer(layer) && editable(layer) && layer.enableEdit && !layer.editEnabled()) layer.enableEdit(map);
        }
      } finally {
        applying--;
      }
    },

    get applying() {
      return applying > 0;
    },

    unbind() {
      if (unbound) return;
      unbound = true;
      map.off(mapEvents);
      offChange();
      waiting.clear();
      for (const layer of layers.values()) layer.off(layerEvents);
    },
  };

  renderAll();
  return controller;
}

function escapeText(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
