// The mapcrdt demo page: a Leaflet + Leaflet.Editable map whose edits go through a mapcrdt
// engine (jsglue/index.js, via the Leaflet helper jsglue/leaflet.js) and a WebSocket to the
// demo relay (/ws/sync/{map}, uMap's sync protocol).
//
// URL parameters: ?map=NAME (default "demo"), ?name=DISPLAY NAME, ?tiles=URL|none (default
// OpenStreetMap), ?seed=none (skip the sample data seeded as if loaded from a server),
// ?keepalive=MS (how often the page pings the relay, default 25,000; a connection that
// answers nothing for that long is dropped and made again).
//
// The engine is saved to IndexedDB (per map) after every local edit and on pagehide, and
// restored on load with the same peer id, so edits made offline survive a reload. Each tab
// takes a slot (a Web Lock) so two tabs of one browser never share a peer id; a tab keeps
// its slot across reloads (sessionStorage). Edits another tab made offline and could not
// send — it was closed first, and no tab takes its slot — are taken over by the next page
// that starts (adoptStranded): never lost.
//
// A feature whose datalayer is gone (a peer added it while another deleted the datalayer)
// is kept in the engine but not drawn, as uMap shows a feature only in its datalayer; it is
// drawn again if the datalayer comes back (layerShown).
//
// window.mapcrdtDemo is a small hook for the browser tests (demo/e2e): they read the state
// from the layers through it instead of looking at screenshots.

import { createEngine } from "/jsglue/index.js";
import { bindLeaflet, randomId } from "/jsglue/leaflet.js";

// A failure while the page starts (mapcrdt.wasm not built — `go run ./demo` without
// `make build` —, Leaflet missing from jsglue/node_modules, …) would leave it saying
// "connecting" for ever: it is shown instead. Listened to until the page is ready.
function startFailed(/** @type {any} */ e) {
  if (window.mapcrdtDemo?.ready) return;
  const status = document.querySelector("#status");
  const msg = document.querySelector("#fatal");
  if (!status || !msg) return;
  status.textContent = "error";
  /** @type {HTMLElement} */ (status).dataset.status = "error";
  const reason = e?.error ?? e?.reason ?? e;
  msg.textContent = `The page could not start: ${reason instanceof Error ? reason.message : String(reason)}. Run make demo (it installs and builds), then reload.`;
  /** @type {HTMLElement} */ (msg).hidden = false;
}
addEventListener("error", startFailed);
addEventListener("unhandledrejection", startFailed);

const L = window.L;
const params = new URLSearchParams(location.search);
const NAME_RE = /^[A-Za-z0-9_-]{1,64}$/;
const mapName = NAME_RE.test(params.get("map") ?? "") ? /** @type {string} */ (params.get("map")) : "demo";
const displayName = pickDisplayName();
const DEFAULT_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png";
const DEFAULT_LAYER = { id: "default", name: "Layer 1" };
const DEFAULT_COLOR = "#3388ff";

// Page state (declared first: the helper renders, and calls back, while the page starts).
let selectedId = /** @type {string | null} */ (null);
let formNeedsRefresh = false;
/** @type {"select" | "marker" | "line" | "polygon" | "delete"} */
let mode = "select";
let lastDrawingEnd = 0;
let localEdits = 0;
let persistedEdits = 0;
let persistTimer = 0;
let persistDue = 0;
let persistRunning = 0;

const $ = (sel) => /** @type {HTMLElement} */ (document.querySelector(sel));

function pickDisplayName() {
  const fromURL = (params.get("name") ?? "").trim();
  if (fromURL) return fromURL.slice(0, 64);
  let stored = "";
  try {
    stored = localStorage.getItem("mapcrdt-demo:name") ?? "";
    if (!stored) {
      stored = "Guest " + Math.floor(100 + Math.random() * 900);
      localStorage.setItem("mapcrdt-demo:name", stored);
    }
  } catch {
    stored = "Guest";
  }
  return stored;
}

// ------------------------------------------------------------------ storage (IndexedDB)

function openDB() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open("mapcrdt-demo", 1);
    req.onupgradeneeded = () => req.result.createObjectStore("snapshots");
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function idbGet(db, key) {
  return new Promise((resolve, reject) => {
    const req = db.transaction("snapshots", "readonly").objectStore("snapshots").get(key);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function idbKeys(db) {
  return new Promise((resolve, reject) => {
    const req = db.transaction("snapshots", "readonly").objectStore("snapshots").getAllKeys();
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function idbDelete(db, key) {
  return new Promise((resolve, reject) => {
    const tx = db.transaction("snapshots", "readwrite");
    tx.objectStore("snapshots").delete(key);
    tx.oncomplete = () => resolve(undefined);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

function idbPut(db, key, value) {
  return new Promise((resolve, reject) => {
    const tx = db.transaction("snapshots", "readwrite");
    tx.objectStore("snapshots").put(value, key);
    tx.oncomplete = () => resolve(undefined);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

/** Takes a lock for the page's life; false if it is not free (within waitMs). */
function takeLock(name, waitMs) {
  return new Promise((resolve) => {
    /** @type {LockOptions} */
    const opts = waitMs > 0 ? { signal: AbortSignal.timeout(waitMs) } : { ifAvailable: true };
    navigator.locks
      .request(name, opts, (lock) => {
        if (!lock) {
          resolve(false);
          return undefined;
        }
        resolve(true);
        return new Promise(() => {}); // held until the page goes away
      })
      .catch(() => resolve(false));
  });
}

const SLOTS = 32;
const slotLock = (n) => `mapcrdt-demo:${mapName}:${n}`;
const SLOT_MEMORY = `mapcrdt-demo:slot:${mapName}`;

/** The slot this tab had before a reload (sessionStorage): a number, -1 if none, null if it cannot tell. */
function rememberedSlot() {
  try {
    const n = Number(sessionStorage.getItem(SLOT_MEMORY) ?? -1);
    return Number.isInteger(n) && n >= -1 && n < SLOTS ? n : -1;
  } catch {
    return null; // no sessionStorage (private mode, a sandbox)
  }
}

function rememberSlot(n) {
  try {
    sessionStorage.setItem(SLOT_MEMORY, String(n));
  } catch {
    // no memory: a reload takes slot 0 first, as a new tab does
  }
}

/**
 * The storage slot of this tab. A reloaded tab takes its own again, waiting a little for
 * the page before to let it go: its snapshot holds its unsent edits. A new tab takes the
 * first free one. Without sessionStorage a tab cannot tell a reload: it waits for slot 0
 * (the slot of a single tab), then takes the first free one.
 */
async function takeSlot() {
  if (!navigator.locks) return 0;
  const own = rememberedSlot();
  let slot = -1;
  const first = own === null ? 0 : own;
  if (first >= 0 && (await takeLock(slotLock(first), 1500))) slot = first;
  for (let n = 0; slot < 0 && n < SLOTS; n++) {
    if (n !== first && (await takeLock(slotLock(n), 0))) slot = n;
  }
  if (slot >= 0) rememberSlot(slot);
  return slot; // -1: no persistence for this tab
}

/**
 * Takes over the unsent edits of other slots: a snapshot whose slot no tab holds, with
 * messages still to send (a tab closed while offline, whose slot no tab took since). Its
 * messages are received into this page's engine — they reach the relay when this page
 * syncs with it (the relay's greeting probe, this page's own request's push-back) — this
 * engine is saved, and only then is that slot cleared. The slot is locked meanwhile, so a
 * tab reloading into it waits, then starts afresh. A snapshot that cannot be read or
 * restored is left as it is.
 */
async function adoptStranded() {
  if (!db || slot < 0 || !navigator.locks) return [];
  const adopted = [];
  let keys;
  try {
    keys = await idbKeys(db);
  } catch {
    return adopted;
  }
  for (let n = 0; n < SLOTS; n++) {
    const key = `${mapName}#${n}`;
    if (n === slot || !keys.includes(key)) continue;
    try {
      await navigator.locks.request(slotLock(n), { ifAvailable: true }, async (lock) => {
        if (!lock) return; // a tab has it
        const saved = await idbGet(db, key);
        if (!saved || !saved.bytes) return;
        const other = await createEngine({ snapshot: saved.bytes });
        try {
          if (other.pending() === 0) return;
          for (const m of other.flush()) {
            if (JSON.parse(m).kind === "OperationMessage") engine.receive(m); // not its stale sync requests
          }
        } finally {
          other.close();
        }
        await idbPut(db, storageKey, { bytes: engine.snapshot(), peerId: engine.peerId, savedAt: Date.now() });
        await idbDelete(db, key);
        adopted.push(n);
      });
    } catch (e) {
      console.warn(`mapcrdt demo: cannot take over the unsent edits of slot ${n}`, e);
    }
  }
  return adopted;
}

// ------------------------------------------------------------------ start

const [db, slot] = await Promise.all([openDB().catch(() => null), takeSlot()]);
const storageKey = `${mapName}#${slot}`;
let restored = false;
/** @type {import("/jsglue/index.js").Engine} */
let engine;
{
  let saved;
  if (db && slot >= 0) {
    try {
      saved = await idbGet(db, storageKey);
    } catch (e) {
      console.warn("mapcrdt demo: cannot read the saved snapshot", e);
    }
  }
  if (saved && saved.bytes) {
    try {
      engine = await createEngine({ snapshot: saved.bytes });
      restored = true;
    } catch (e) {
      console.warn("mapcrdt demo: the saved snapshot is unusable, starting afresh", e);
    }
  }
  engine ??= await createEngine();
}
const adopted = await adoptStranded();

// ------------------------------------------------------------------ the map

const featuresLayer = L.featureGroup();
const map = L.map("map", {
  editable: true,
  editOptions: { featuresLayer },
  zoomControl: true,
}).setView([48.8545, 2.3475], 15);
featuresLayer.addTo(map);
const editTools = map.editTools;

let tileLayer = null;
function setTiles(url) {
  if (tileLayer) map.removeLayer(tileLayer);
  tileLayer = null;
  const container = map.getContainer();
  if (!url || url === "none") {
    container.classList.add("no-tiles");
  } else {
    container.classList.remove("no-tiles");
    tileLayer = L.tileLayer(url, {
      maxZoom: 19,
      attribution: url === DEFAULT_TILES ? '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors' : "",
    }).addTo(map);
  }
  /** @type {HTMLInputElement} */ ($("#tiles")).value = url || "none";
}
setTiles(params.has("tiles") ? (params.get("tiles") ?? "").trim() || "none" : DEFAULT_TILES);
$("#tiles-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const url = /** @type {HTMLInputElement} */ ($("#tiles")).value.trim() || "none";
  setTiles(url);
  const u = new URL(location.href);
  u.searchParams.set("tiles", url);
  history.replaceState(null, "", u);
});

// ------------------------------------------------------------------ datalayers

/** @type {Map<string, {id: string, name: string}>} alive datalayers */
const datalayers = new Map();
/** Datalayers hidden in this browser (a view setting, not an edit: not synced). */
const hidden = new Set(readHidden());
let activeLayerId = "";

function readHidden() {
  try {
    return JSON.parse(localStorage.getItem(`mapcrdt-demo:hidden:${mapName}`) ?? "[]");
  } catch {
    return [];
  }
}
function writeHidden() {
  try {
    localStorage.setItem(`mapcrdt-demo:hidden:${mapName}`, JSON.stringify([...hidden]));
  } catch {
    // private mode: the setting lasts for the page only
  }
}

/** The datalayer's value in the engine, or undefined if it is not alive. */
function datalayerValue(id) {
  const v = engine.get("datalayer", { id });
  return v !== undefined && v !== null && typeof v === "object" ? /** @type {any} */ (v) : undefined;
}

function readDatalayer(id) {
  const v = datalayerValue(id);
  if (!v) {
    datalayers.delete(id);
    return;
  }
  const name = typeof v.name === "string" && v.name !== "" ? v.name : id;
  datalayers.set(id, { id, name });
}

/**
 * Whether the features of a datalayer are drawn: it is alive, and not hidden here. A feature
 * whose datalayer is gone — a peer added it while another deleted the datalayer — stays in
 * the engine, not drawn: uMap shows a feature only as part of its datalayer. It is drawn
 * again if the datalayer comes back (the deletion undone). Asks the engine, not the
 * datalayers list: the helper draws a change before this page's listener reads it.
 */
function layerShown(layerId) {
  return !hidden.has(layerId) && datalayerValue(layerId) !== undefined;
}

function ensureActiveLayer() {
  if (activeLayerId && datalayers.has(activeLayerId)) return activeLayerId;
  activeLayerId = sortedLayers()[0]?.id ?? "";
  return activeLayerId;
}

/** The datalayer of a new feature; creates one if the map has none. */
function layerForNewFeature() {
  if (ensureActiveLayer()) {
    if (hidden.has(activeLayerId)) {
      // Hidden here: what the user draws would vanish as it is drawn. Show the layer.
      hidden.delete(activeLayerId);
      writeHidden();
      ctl.refreshVisibility();
      renderLayerList();
    }
    return activeLayerId;
  }
  const id = randomId(8);
  engine.upsert("datalayer", { id }, { name: "Layer 1" });
  readDatalayer(id);
  activeLayerId = id;
  renderLayerList();
  afterLocalEdit();
  return id;
}

function sortedLayers() {
  return [...datalayers.values()].sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
}

function renderLayerList() {
  ensureActiveLayer();
  const ul = $("#layers");
  const want = sortedLayers();
  const existing = new Map([...ul.children].map((li) => [/** @type {HTMLElement} */ (li).dataset.layerId, li]));
  for (const [id, li] of existing) if (!datalayers.has(/** @type {string} */ (id))) li.remove();
  want.forEach((dl, index) => {
    let li = /** @type {HTMLLIElement | undefined} */ (existing.get(dl.id));
    if (!li) {
      li = document.createElement("li");
      li.dataset.layerId = dl.id;
      li.innerHTML =
        '<input type="radio" name="active-layer" class="layer-active" title="New features go to this layer">' +
        '<input type="checkbox" class="layer-visible" title="Show or hide (only here)">' +
        '<input type="text" class="layer-name" maxlength="100" title="Rename">' +
        '<button type="button" class="layer-delete" title="Delete the layer and its features">✕</button>';
    }
    const active = /** @type {HTMLInputElement} */ (li.querySelector(".layer-active"));
    const visible = /** @type {HTMLInputElement} */ (li.querySelector(".layer-visible"));
    const name = /** @type {HTMLInputElement} */ (li.querySelector(".layer-name"));
    active.checked = dl.id === activeLayerId;
    visible.checked = !hidden.has(dl.id);
    li.classList.toggle("hidden", hidden.has(dl.id));
    if (document.activeElement !== name) name.value = dl.name;
    if (ul.children[index] !== li) ul.insertBefore(li, ul.children[index] ?? null);
  });
}

$("#layers").addEventListener("change", (e) => {
  const target = /** @type {HTMLInputElement} */ (e.target);
  const li = /** @type {HTMLElement | null} */ (target.closest("li"));
  const id = li?.dataset.layerId;
  if (!id || !datalayers.has(id)) return;
  if (target.classList.contains("layer-active")) {
    activeLayerId = id;
  } else if (target.classList.contains("layer-visible")) {
    if (target.checked) hidden.delete(id);
    else hidden.add(id);
    writeHidden();
    ctl.refreshVisibility();
    if (selectedId && !drawn(selectedId)) select(null);
  } else if (target.classList.contains("layer-name")) {
    const name = target.value.trim();
    if (name && name !== datalayers.get(id)?.name) {
      engine.update("datalayer", { id }, "name", name);
      afterLocalEdit();
    } else {
      target.value = datalayers.get(id)?.name ?? ""; // an empty name is not taken: show the name kept
    }
  }
  renderLayerList();
});

$("#layers").addEventListener("click", (e) => {
  const target = /** @type {HTMLElement} */ (e.target);
  if (!target.classList.contains("layer-delete")) return;
  const id = /** @type {HTMLElement} */ (target.closest("li"))?.dataset.layerId;
  if (id) deleteDatalayer(id);
});

$("#layer-add").addEventListener("click", () => {
  const id = randomId(8);
  engine.upsert("datalayer", { id }, { name: `Layer ${datalayers.size + 1}` });
  readDatalayer(id);
  activeLayerId = id;
  renderLayerList();
  afterLocalEdit();
});

/** Deletes a datalayer and its features: one batch, one undo step. */
function deleteDatalayer(id) {
  const features = JSON.parse(engine.state()).filter((o) => o.subject === "feature" && o.metadata.layerId === id);
  engine.batch(() => {
    for (const f of features) {
      const meta = ctl.metadataOf(f.metadata.id) ?? f.metadata;
      engine.delete("feature", meta);
    }
    engine.delete("datalayer", { id });
  });
  readDatalayer(id);
  if (activeLayerId === id) activeLayerId = "";
  renderLayerList();
  afterLocalEdit();
}

// ------------------------------------------------------------------ the Leaflet helper

const ctl = bindLeaflet({
  map,
  featuresLayer,
  engine,
  L,
  layerId: () => layerForNewFeature(),
  isLayerVisible: layerShown,
  defaultColor: DEFAULT_COLOR,
  onEdit: () => afterLocalEdit(),
  // The selected feature redrawn: the form follows once the change is drawn (the listener of
  // engine.onChange below). A removal too: a feature a peer moves to another datalayer is
  // removed, then drawn again there under the same id, and stays selected, with what is
  // being typed in its form; one gone for good is deselected there.
  onRender: (ev) => {
    if (ev.id === selectedId) formNeedsRefresh = true;
  },
});

engine.seed("datalayer", { id: DEFAULT_LAYER.id }, { name: DEFAULT_LAYER.name });
if (params.get("seed") !== "none") {
  try {
    const res = await fetch("seed.geojson", { cache: "no-cache" });
    if (res.ok) ctl.seed(await res.json(), DEFAULT_LAYER.id);
  } catch (e) {
    console.warn("mapcrdt demo: no sample data", e);
  }
}
for (const o of JSON.parse(engine.state())) {
  if (o.subject === "datalayer") readDatalayer(o.metadata.id);
}
renderLayerList();
ctl.refreshVisibility(); // features drawn before their datalayer was seeded

// ------------------------------------------------------------------ selection and the form

function isPath(layer) {
  return layer instanceof L.Polyline;
}

function highlight(id, on) {
  const layer = id && ctl.layerFor(id);
  if (!layer) return;
  if (layer instanceof L.Marker) {
    layer.getElement()?.classList.toggle("selected", on);
  } else if (isPath(layer)) {
    /** @type {any} */ (layer).setStyle({ weight: on ? 5 : 3 });
    if (on && !layer.editEnabled()) layer.enableEdit(map);
    if (!on && layer.editEnabled()) layer.disableEdit();
  }
}

/** Whether a feature is drawn on the map (not in a hidden or deleted datalayer). */
function drawn(id) {
  return !!ctl.features().find((f) => f.id === id)?.visible;
}

function select(id) {
  if (id && !drawn(id)) id = null;
  if (selectedId && selectedId !== id) highlight(selectedId, false);
  const other = selectedId !== id;
  selectedId = id;
  if (id) highlight(id, true);
  fillForm(other);
}

function toHex(color) {
  if (/^#[0-9a-f]{6}$/i.test(color)) return color.toLowerCase();
  const ctx = document.createElement("canvas").getContext("2d");
  if (!ctx) return DEFAULT_COLOR;
  ctx.fillStyle = "#000";
  ctx.fillStyle = color;
  const v = String(ctx.fillStyle);
  return /^#[0-9a-f]{6}$/i.test(v) ? v : DEFAULT_COLOR;
}

/**
 * The form's fields as last filled from the feature. A field the user changed since (its
 * value differs) is a pending edit: a peer's change to the feature does not overwrite it,
 * and Apply writes only such fields — a field left as it was, showing a value a peer has
 * since replaced, is not written back over the peer's.
 */
const shown = { name: "", color: "" };

/** Fills the form from the selected feature; fresh: a newly selected one (pending edits dropped). */
function fillForm(fresh = false) {
  formNeedsRefresh = false;
  const form = /** @type {HTMLFormElement} */ ($("#feature-form"));
  const f = selectedId ? ctl.features().find((x) => x.id === selectedId) : undefined;
  form.hidden = !f;
  $("#no-selection").hidden = !!f;
  if (!f) return;
  const name = /** @type {HTMLInputElement} */ ($("#feature-name"));
  const color = /** @type {HTMLInputElement} */ ($("#feature-color"));
  // shown keeps what the field holds once set, not what it was set to: an input drops the
  // line breaks of a name ("a\nb" shows "ab"), which would look changed by the user — kept
  // as a pending edit for ever, and written back over the name by the next Apply.
  if (fresh || name.value === shown.name) {
    name.value = f.name;
    shown.name = name.value;
  }
  if (fresh || color.value === shown.color) {
    color.value = toHex(f.color);
    shown.color = color.value;
  }
  $("#feature-id").textContent = f.id;
  $("#feature-layer").textContent = datalayers.get(f.layerId)?.name ?? f.layerId;
  highlight(f.id, true);
}

$("#feature-form").addEventListener("submit", (e) => {
  e.preventDefault();
  if (!selectedId) return;
  const f = ctl.features().find((x) => x.id === selectedId);
  if (!f) return;
  const name = /** @type {HTMLInputElement} */ ($("#feature-name")).value;
  const color = /** @type {HTMLInputElement} */ ($("#feature-color")).value;
  /** @type {Record<string, string>} */
  const values = {};
  if (name !== shown.name && name !== f.name) values.name = name;
  if (color !== shown.color && color.toLowerCase() !== toHex(f.color)) values["_umap_options.color"] = color;
  if (Object.keys(values).length > 0) ctl.setProperties(f.id, values);
  /** @type {HTMLInputElement} */ ($("#feature-name")).blur();
  fillForm(true);
});

$("#feature-delete").addEventListener("click", () => {
  if (selectedId) ctl.deleteFeature(selectedId);
  select(null);
});

// ------------------------------------------------------------------ tools


const hints = {
  select: "Click a feature to select it; drag markers and vertices to move them.",
  marker: "Click on the map to place the marker.",
  line: "Click to add points; click the last point again (or Finish, Enter) to end.",
  polygon: "Click to add points; click the first or last point again (or Finish, Enter) to end.",
  delete: "Click features to delete them. Esc to leave.",
};

function updateTools() {
  for (const b of document.querySelectorAll("[data-mode]")) {
    b.setAttribute("aria-pressed", String(/** @type {HTMLElement} */ (b).dataset.mode === mode));
  }
  const drawingPath = mode === "line" || mode === "polygon";
  /** @type {HTMLButtonElement} */ ($("#tool-finish")).disabled = !drawingPath;
  /** @type {HTMLButtonElement} */ ($("#tool-cancel")).disabled = mode === "select";
  map.getContainer().classList.toggle("delete-mode", mode === "delete");
  $("#mode-hint").textContent = hints[mode];
}

function setMode(next) {
  if (editTools.drawing()) editTools.stopDrawing();
  mode = next;
  if (next !== "select") select(null);
  if (next === "marker") editTools.startMarker();
  else if (next === "line") editTools.startPolyline();
  else if (next === "polygon") editTools.startPolygon();
  updateTools();
}

function finishDrawing() {
  const editor = /** @type {any} */ (editTools)._drawingEditor;
  if (editor && editor._drawnLatLngs && editor._drawnLatLngs.length >= editor.MIN_VERTEX) {
    editTools.commitDrawing();
  } else {
    setMode("select");
  }
}

for (const b of document.querySelectorAll("[data-mode]")) {
  b.addEventListener("click", () => {
    const m = /** @type {any} */ (/** @type {HTMLElement} */ (b).dataset.mode);
    setMode(mode === m ? "select" : m);
  });
}
$("#tool-finish").addEventListener("click", finishDrawing);
$("#tool-cancel").addEventListener("click", () => setMode("select"));

map.on("editable:drawing:end", () => {
  lastDrawingEnd = Date.now();
  if (mode === "marker" || mode === "line" || mode === "polygon") {
    mode = "select";
    updateTools();
  }
});
map.on("editable:drawing:commit", (e) => {
  const id = ctl.idOf(e.layer);
  if (id) setTimeout(() => select(id), 0);
});

featuresLayer.on("click", (e) => {
  const layer = e.propagatedFrom ?? e.layer ?? e.sourceTarget;
  const id = ctl.idOf(layer);
  if (!id || editTools.drawing()) return;
  L.DomEvent.stopPropagation(e); // paths bubble their clicks to the map, which would deselect
  if (mode === "delete") {
    ctl.deleteFeature(id);
    if (selectedId === id) select(null);
  } else {
    select(id);
  }
});

map.on("click", () => {
  if (editTools.drawing() || Date.now() - lastDrawingEnd < 400) return;
  if (mode === "select") select(null);
});

updateTools();

// ------------------------------------------------------------------ undo and redo

let noteTimer = 0;

function showSkipped(skipped) {
  const note = $("#undo-note");
  clearTimeout(noteTimer);
  if (!skipped || skipped.length === 0) {
    note.hidden = true;
    return;
  }
  const n = skipped.length;
  note.textContent = `Kept ${n} change(s) by another peer`;
  note.title = skipped.map((s) => `${s.subject} ${s.metadata.id ?? ""} ${s.key || "(whole object)"}`).join("\n");
  note.hidden = false;
  noteTimer = window.setTimeout(() => {
    note.hidden = true;
  }, 20_000);
}

function doUndo() {
  if (!engine.canUndo()) return;
  const res = engine.undo();
  showSkipped(res.skipped);
  afterLocalEdit();
}

function doRedo() {
  if (!engine.canRedo()) return;
  const res = engine.redo();
  showSkipped(res.skipped);
  afterLocalEdit();
}

function updateHistory() {
  /** @type {HTMLButtonElement} */ ($("#undo")).disabled = !engine.canUndo();
  /** @type {HTMLButtonElement} */ ($("#redo")).disabled = !engine.canRedo();
}

$("#undo").addEventListener("click", doUndo);
$("#redo").addEventListener("click", doRedo);

document.addEventListener("keydown", (e) => {
  const t = /** @type {HTMLElement} */ (e.target);
  const typing = t instanceof HTMLInputElement ? !["checkbox", "radio", "button", "color"].includes(t.type) : t instanceof HTMLTextAreaElement;
  const key = e.key.toLowerCase();
  if ((e.ctrlKey || e.metaKey) && !e.altKey && (key === "z" || key === "y")) {
    if (typing) return; // the field's own undo
    e.preventDefault();
    if (key === "y" || e.shiftKey) doRedo();
    else doUndo();
  } else if (e.key === "Escape" && mode !== "select") {
    setMode("select");
  } else if (e.key === "Enter" && !typing && (mode === "line" || mode === "polygon")) {
    e.preventDefault();
    finishDrawing();
  }
});

// ------------------------------------------------------------------ reacting to the engine

engine.onChange((ev) => {
  let layersChanged = false;
  for (const c of ev.changes) {
    if (c.subject === "datalayer" && typeof c.metadata.id === "string") {
      readDatalayer(c.metadata.id);
      layersChanged = true;
    }
  }
  if (layersChanged) {
    renderLayerList();
    ctl.refreshVisibility(); // the features of a datalayer gone, or back
  }
  if (selectedId && !drawn(selectedId)) select(null);
  else if (formNeedsRefresh) fillForm();
  updateHistory();
  if (ev.origin === "remote") schedulePersist(1000);
});

// ------------------------------------------------------------------ persistence


/** Saves the engine's snapshot within delay ms (sooner if already due sooner). */
function schedulePersist(delay) {
  if (!db || slot < 0) return;
  const due = Date.now() + delay;
  if (persistTimer && persistDue <= due) return;
  clearTimeout(persistTimer);
  persistDue = due;
  persistTimer = window.setTimeout(persistNow, delay);
}

async function persistNow() {
  clearTimeout(persistTimer);
  persistTimer = 0;
  if (!db || slot < 0 || engine.closed || engine.inBatch()) return;
  const upto = localEdits;
  persistRunning++;
  try {
    const bytes = engine.snapshot();
    await idbPut(db, storageKey, { bytes, peerId: engine.peerId, savedAt: Date.now() });
    persistedEdits = Math.max(persistedEdits, upto);
  } catch (e) {
    console.warn("mapcrdt demo: cannot save the snapshot", e);
  } finally {
    persistRunning--;
  }
}

addEventListener("pagehide", () => {
  void persistNow();
});

/** After every local edit: send it (if online), save the snapshot, refresh the buttons. */
function afterLocalEdit() {
  localEdits++;
  updateHistory();
  scheduleFlush();
  schedulePersist(0);
  if (formNeedsRefresh) fillForm();
}

// ------------------------------------------------------------------ the connection

/** @type {WebSocket | null} */
let ws = null;
let joined = false;
let wantOnline = true;
let attempts = 0;
let stableTimer = 0;
const STABLE_MS = 10_000;
/** A ping is out, and nothing was heard since it went (see KEEPALIVE). */
let awaitingPong = false;
let idMismatches = 0;
let retryTimer = 0;
/** @type {string[]} */
let peerIds = [];
/**
 * Display names by peer id, from the relay's roster. A Map: a peer id may be any name,
 * "constructor" or "__proto__" too, which a plain object would answer with what it inherits.
 * @type {Map<string, string>}
 */
let peerNames = new Map();
let status = "connecting";

/** "online", "connecting", "no network" (connecting while the browser says it has none), or "offline" (the switch). */
function setStatus(s) {
  if (s === "connecting" && navigator.onLine === false) s = "no network";
  status = s;
  const el = $("#status");
  el.textContent = s;
  el.dataset.status = s;
}

let noteIsClose = false;
/** Shows why the relay closed the connection, or refused a message (refused: true); "" hides it. */
function connNote(text, refused = false) {
  const el = $("#conn-note");
  el.textContent = text;
  el.hidden = text === "";
  noteIsClose = text !== "" && !refused;
}

function wsURL() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${location.host}/ws/sync/${encodeURIComponent(mapName)}`;
}

function connect() {
  clearTimeout(retryTimer);
  retryTimer = 0;
  if (!wantOnline || ws) return;
  setStatus("connecting");
  const sock = new WebSocket(wsURL());
  ws = sock;
  joined = false;
  awaitingPong = false;
  sock.onopen = () => {
    if (ws !== sock) return;
    sock.send(JSON.stringify({ kind: "JoinRequest", peer: engine.peerId, name: displayName }));
  };
  sock.onmessage = (ev) => {
    if (ws !== sock || typeof ev.data !== "string") return;
    awaitingPong = false;
    onMessage(sock, ev.data);
  };
  sock.onclose = (ev) => {
    if (ws !== sock) return;
    ws = null;
    joined = false;
    if (ev.code !== 1000 && ev.reason) {
      console.warn(`mapcrdt demo: the relay closed the connection: ${ev.code} ${ev.reason}`);
      connNote(
        `The relay closed the connection: ${ev.reason}` +
          (ev.reason.startsWith("clock_drift") ? " — this computer's clock is more than a minute off: set it right, then reload." : ""),
      );
    }
    renderPeers();
    if (wantOnline) {
      setStatus("connecting");
      const delay = Math.min(10_000, 250 * 2 ** Math.min(attempts, 6));
      attempts++;
      retryTimer = window.setTimeout(connect, delay);
    } else {
      setStatus("offline");
    }
  };
}

// The browser lost the network: the socket cannot carry anything now (Chromium holds what
// is sent on it), yet it stays open, and the page said "online", until TCP gives up —
// minutes. Drop it and try again at once (a relay on this machine is still reachable); the
// status says "no network" while the tries fail. Back online: try at once, not at the end
// of the backoff.
addEventListener("offline", () => {
  if (wantOnline) reconnect("network lost");
});

/** Drops the socket, which carries nothing any more, without waiting for its close, and makes a new one. */
function reconnect(reason) {
  const sock = ws;
  ws = null;
  joined = false;
  if (sock) sock.close(1000, reason);
  attempts = 0;
  renderPeers();
  connect();
}
addEventListener("online", () => {
  if (!wantOnline || ws) return;
  attempts = 0;
  connect();
});

function disconnect() {
  wantOnline = false;
  clearTimeout(retryTimer);
  retryTimer = 0;
  const sock = ws;
  ws = null;
  joined = false;
  if (sock) sock.close(1000, "offline");
  setStatus("offline");
  renderPeers();
}

function receive(text) {
  try {
    engine.receive(text);
  } catch (e) {
    const code = /** @type {any} */ (e).code;
    console.warn("mapcrdt demo: a message was refused:", code, /** @type {any} */ (e).message);
    // Shown too: what it carried is missing from this map. A clock more than a minute
    // behind refuses every edit made since by the others.
    connNote(
      `A message from the relay was refused (${code}): ${/** @type {any} */ (e).message}` +
        (code === "clock_drift" ? " — this computer's clock is more than a minute off: set it right, then reload." : ""),
      true,
    );
  }
}

function onMessage(sock, text) {
  let msg;
  try {
    msg = JSON.parse(text);
  } catch {
    return;
  }
  switch (msg && msg.kind) {
    case "JoinResponse":
      if (msg.peer !== engine.peerId && idMismatches < 12) {
        // Our peer id is still taken (this page's previous connection, not yet gone after
        // a reload): the engine's id cannot change, so try again in a moment.
        idMismatches++;
        sock.close(1000, "peer id taken");
        return;
      }
      joined = true;
      idMismatches = 0;
      setStatus("online");
      // The backoff starts again, and the relay's last refusal is forgotten, once this
      // connection has lasted: one the relay closes at once (it refuses what this page
      // sends) is tried again ever more slowly, not four times a second for ever.
      clearTimeout(stableTimer);
      stableTimer = window.setTimeout(() => {
        if (ws !== sock || !joined) return;
        attempts = 0;
        if (noteIsClose) connNote(""); // a refused message stays said: what it carried is missing
      }, STABLE_MS);
      peerIds = peerIdsOf(msg);
      peerNames = namesOf(msg);
      renderPeers();
      receive(text); // the engine learns the peers and queues a sync request
      flushNow(true);
      return;
    case "ListPeersResponse":
      peerIds = peerIdsOf(msg);
      peerNames = namesOf(msg);
      renderPeers();
      receive(text);
      break;
    case "pong":
      return;
    default:
      receive(text);
  }
  flushNow(false);
}

/**
 * The peer ids of a JoinResponse or ListPeersResponse: the keys of its "peers", an object
 * of id → name as uMap's server writes it (an array of ids is taken too).
 * @param {any} msg
 * @returns {string[]}
 */
function peerIdsOf(msg) {
  if (Array.isArray(msg.peers)) return msg.peers;
  return msg.peers && typeof msg.peers === "object" ? Object.keys(msg.peers) : [];
}

/** The names of a JoinResponse or ListPeersResponse: its own string members only. */
function namesOf(msg) {
  const names = new Map();
  if (msg.names && typeof msg.names === "object") {
    for (const [id, name] of Object.entries(msg.names)) if (typeof name === "string") names.set(id, name);
  }
  return names;
}

/**
 * Sends what the engine has to send. After joining, the page catches up from the relay's
 * replica, which holds every edit it was sent or saved whoever is online, and from it only:
 * the engine's own request, to a peer it picks, is sent to the relay instead (asking both
 * would bring the map twice). The peers present ask this page, one way, for what it holds
 * and they lack (its offline edits).
 */
function flushNow(afterJoin) {
  if (!joined || !ws || ws.readyState !== WebSocket.OPEN) return;
  let out = engine.flush();
  if (afterJoin && peerIds.includes("relay")) {
    const catchUp = (m) => m.includes('"verb":"ListOperationsRequest"') && !m.includes('"pushBack":true');
    out = out.filter((m) => !catchUp(m));
    out.unshift(engine.syncRequest("relay"));
  }
  for (const m of out) ws.send(m);
}

let flushQueued = false;
function scheduleFlush() {
  if (flushQueued) return;
  flushQueued = true;
  queueMicrotask(() => {
    flushQueued = false;
    flushNow(false);
  });
}

// Keep-alive. A connection can die without closing (a laptop waking up, a changed network,
// a proxy dropping it): the page would say "online" while nothing it sends arrives, until
// TCP gives up — many minutes. Nothing heard for a whole period, not even the pong of the
// ping sent at its start: the connection is dropped and made again.
const KEEPALIVE = Math.min(600_000, Math.max(200, Number(params.get("keepalive")) || 25_000));
setInterval(() => {
  if (!joined || !ws || ws.readyState !== WebSocket.OPEN) return;
  if (awaitingPong) {
    awaitingPong = false;
    console.warn(`mapcrdt demo: no answer from the relay for ${KEEPALIVE} ms: connecting again`);
    reconnect("no answer");
    return;
  }
  awaitingPong = true;
  ws.send('{"kind":"ping"}');
}, KEEPALIVE);

function renderPeers() {
  const ul = $("#peers");
  ul.textContent = "";
  const ids = joined ? peerIds : [engine.peerId];
  for (const id of ids) {
    const li = document.createElement("li");
    li.dataset.peer = id;
    const me = id === engine.peerId;
    li.classList.toggle("me", me);
    const name = id === "relay" ? "relay (server replica)" : peerNames.get(id) || (me ? displayName : id.slice(0, 8));
    li.append(name + (me ? " (you)" : ""));
    if (id !== "relay") {
      const small = document.createElement("span");
      small.className = "id";
      small.textContent = " " + id.slice(0, 8);
      li.append(small);
    }
    ul.append(li);
  }
}

const offlineBox = /** @type {HTMLInputElement} */ ($("#offline"));
offlineBox.checked = false;
offlineBox.addEventListener("change", () => {
  if (offlineBox.checked) {
    disconnect();
  } else {
    wantOnline = true;
    attempts = 0;
    connect();
  }
});

// ------------------------------------------------------------------ the test hook

function latlngsOf(layer) {
  const conv = (x) => (Array.isArray(x) ? x.map(conv) : [x.lat, x.lng]);
  return layer instanceof L.Marker ? conv(layer.getLatLng()) : conv(layer.getLatLngs());
}

window.mapcrdtDemo = {
  engine,
  map,
  controller: ctl,
  mapName,
  displayName,
  slot,
  restored,
  /** The slots whose unsent edits this page took over as it started. */
  adopted,
  ready: false,
  status: () => status,
  /** Every feature as rendered on the map (from the layers, not the engine). */
  features: () =>
    ctl.features().map((f) => ({
      id: f.id,
      layerId: f.layerId,
      type: f.featureType,
      latlngs: latlngsOf(f.layer),
      name: f.name,
      color: f.color,
      visible: f.visible,
    })),
  feature(id) {
    return this.features().find((f) => f.id === id);
  },
  datalayers: () => sortedLayers().map((d) => ({ ...d, visible: !hidden.has(d.id), active: d.id === activeLayerId })),
  peers: () => [...document.querySelectorAll("#peers li")].map((li) => ({ id: /** @type {HTMLElement} */ (li).dataset.peer, text: li.textContent })),
  selected: () => selectedId,
  /** Connections in a row that ended before lasting STABLE_MS (the reconnect backoff's exponent). */
  retries: () => attempts,
  mode: () => mode,
  /** True when every local edit so far is in IndexedDB. */
  persisted: () => persistedEdits >= localEdits && persistRunning === 0 && !persistTimer,
  /** The page coordinates of a point (default: of the feature's first vertex or marker anchor). */
  screenPoint(id, latlng) {
    let ll = latlng;
    if (!ll) {
      const layer = ctl.layerFor(id);
      if (!layer) return null;
      ll = layer instanceof L.Marker ? layer.getLatLng() : /** @type {any} */ (layer).getCenter();
    }
    const p = map.latLngToContainerPoint(L.latLng(ll));
    const r = map.getContainer().getBoundingClientRect();
    return { x: r.left + p.x, y: r.top + p.y };
  },
  latLngAt(x, y) {
    const r = map.getContainer().getBoundingClientRect();
    const ll = map.containerPointToLatLng([x - r.left, y - r.top]);
    return [ll.lat, ll.lng];
  },
  addMarker(lat, lng, properties = {}) {
    return ctl.addFeature({ geometry: { type: "Point", coordinates: [lng, lat] }, properties }, layerForNewFeature());
  },
  /** Moves a marker as a completed drag does: setLatLng, then the marker's dragend. */
  dragMarkerTo(id, lat, lng) {
    const layer = ctl.layerFor(id);
    if (!(layer instanceof L.Marker)) throw new Error("no marker " + id);
    layer.setLatLng([lat, lng]);
    layer.fire("dragend", { distance: 1 });
  },
  rename(id, name) {
    ctl.setProperty(id, "name", name);
  },
  select,
  undo: doUndo,
  redo: doRedo,
  deleteFeature: (id) => ctl.deleteFeature(id),
};

if (restored) console.info(`mapcrdt demo: restored peer ${engine.peerId} from IndexedDB (slot ${slot})`);
if (adopted.length > 0) console.info(`mapcrdt demo: took over the unsent edits of slot(s) ${adopted.join(", ")}`);
$("#map-name").textContent = mapName;
$("#my-name").textContent = displayName;
document.title = `${mapName} · mapcrdt demo`;
renderPeers();
updateHistory();
schedulePersist(0);
connect();
window.mapcrdtDemo.ready = true;
// Started: an error reported meanwhile (a renderer's, reported and passed over) was not fatal.
removeEventListener("error", startFailed);
removeEventListener("unhandledrejection", startFailed);
$("#fatal").hidden = true;
