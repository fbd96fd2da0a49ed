// mapcrdt/umap — a mapcrdt engine behind the surface uMap's frontend calls on its own sync
// engine (umap/static/umap/js/modules/sync/engine.js, class SyncEngine). umap.d.ts has the
// types; README "uMap" says how to swap it in.
//
//   import { createUmapSync } from "mapcrdt/umap";
//   const sync = await createUmapSync({ updaters: { map: new MapUpdater(app), … } });
//   const transport = new WebSocketTransport(sync);             // uMap's; calls sync.receive
//   await transport.connect(url, token, sync.peerId, username);
//   sync.attach(transport);                                      // sends what waited
//
// Local calls (upsert, update, delete, batches, proxy(object)) become engine edits; the
// engine's outgoing messages go to transport.send(kind, payload) whenever the transport is
// open (what was made offline waits in the engine's outbox). Incoming messages go to
// engine.receive. Every visible change the engine reports for a remote edit, an undo or a
// redo is applied through the updaters with the call uMap's own engine would make for the
// operation behind it:
//   created                → updater.upsert({verb: "upsert", subject, metadata, value})
//   set of a key           → updater.update({verb: "update", subject, metadata, key, value})
//   unset of a key         → updater.update({verb: "update", subject, metadata, key})  (no value: uMap's unset)
//   set of the whole value → updater.upsert({verb: "upsert", subject, metadata, value}), then
//                            updater.update(…) of each top-level key uMap's upsert leaves,
//                            then updater.update({…, key}) (no value) of each top-level key
//                            uMap's object holds and the value lacks
// (a feature's properties and properties._umap_options are given an empty _umap_options
// where they have none: see #featureProperties; a datalayer's value is its options, which
// uMap's DataLayer holds under options.…: see #datalayerValue and #datalayerPath)
//   deleted                → updater.delete({verb: "delete", subject, metadata})
// through updater.applyMessage(operation) when the updater has one (uMap's BaseUpdater), as
// uMap's _applyOperation does. Local edits are not applied (uMap's UI made them already).

import { createEngine, JSONText, MapcrdtError } from "./index.js";

const PEER_KINDS = ["JoinResponse", "ListPeersResponse"];
const SAVED = ["SavedMessage"];
// createUmapSync's mark on the options of an adapter over an engine it made (closed with it).
const OWNS = Symbol("owns engine");

/** A uMap-shaped sync engine backed by a mapcrdt engine. */
export class UmapSyncEngine {
  #engine;
  #ownsEngine;
  #off;
  #depth = 0;
  // object (subject + metadata) → the top-level keys its uMap object holds (#track); features
  // apart, and only for keys beside id, type, geometry and properties (an entry only when it
  // has some: most features have none).
  #shown = new Map();
  #shownFeatures = new Map();
  #saving = 0; // save() calls under way
  #editedWhileSaving = false;
  #onError;
  #onStateChange;
  #onReconnect;

  constructor(engine, options) {
    if (engine === null || typeof engine !== "object" || typeof engine.onChange !== "function") {
      throw new MapcrdtError("bad_option", "UmapSyncEngine needs a mapcrdt engine (createEngine)");
    }
    const { updaters, transport, onError, onStateChange, onReconnect } = options ?? {};
    if (updaters === null || typeof updaters !== "object") {
      throw new MapcrdtError("bad_option", "UmapSyncEngine needs updaters: {map, feature, datalayer, …}");
    }
    for (const [name, fn] of [
      ["onError", onError],
      ["onStateChange", onStateChange],
      ["onReconnect", onReconnect],
    ]) {
      if (fn !== undefined && typeof fn !== "function") throw new MapcrdtError("bad_option", `${name} must be a function`);
    }
    this.#engine = engine;
    this.#ownsEngine = options[OWNS] === true;
    this.updaters = updaters;
    this.transport = undefined;
    this.websocketConnected = false;
    this.closeRequested = false;
    this.offline = false;
    this.peers = undefined;
    this.#onError = onError ?? ((error) => queueMicrotask(() => { throw error; }));
    this.#onStateChange = onStateChange ?? toggleState;
    this.#onReconnect = onReconnect;
    // The top-level keys uMap's objects hold, as far as the engine told (see #track): what a
    // new whole value of an object must take away. An engine handed over may hold objects
    // already (shown by whoever built the map from it).
    if (!this.#ownsEngine) {
      for (const { subject, metadata, value } of JSON.parse(engine.state())) {
        this.#track({ kind: "created", subject, metadata, value });
      }
    }
    this.#off = engine.onChange((event) => {
      // uMap's UI already shows its own edits: they are only tracked.
      const remote = event.origin !== "local";
      for (const change of event.changes) {
        if (remote) this.#apply(change);
        this.#track(change);
      }
    });
    // uMap's code reads the undo manager of its engine (undo, redo, isDirty, toggleState).
    this._undoManager = {
      // uMap's UndoManager.undo(redo = false): undo(true) is its redo.
      undo: (redo = false) => (redo ? this.redo() : this.undo()),
      redo: () => this.redo(),
      isDirty: () => this.isDirty(),
      toggleState: () => this.#stateChanged(),
    };
    if (transport !== undefined) this.attach(transport);
  }

  /** The mapcrdt engine behind the adapter. */
  get engine() {
    return this.#engine;
  }

  /** This replica's peer id (what uMap's transport sends in its JoinRequest). */
  get peerId() {
    return this.#engine.peerId;
  }

  get isOpen() {
    return this.transport?.isOpen;
  }

  // --- the connection ------------------------------------------------------------------

  /** Uses transport from now on (a connected one) and sends what waited. */
  attach(transport) {
    if (transport === null || typeof transport !== "object" || typeof transport.send !== "function") {
      throw new MapcrdtError("bad_option", "a transport has a send(kind, payload) method");
    }
    this.transport = transport;
    this.closeRequested = false;
    this.onConnection();
  }

  /** uMap's transport calls this once connected: sends what waited, updates the peer count. */
  onConnection() {
    this.websocketConnected = true;
    this.#flush();
    this.#peersChanged();
  }

  /** uMap's transport calls this when the socket closed unasked: edits wait until attach(). */
  reconnect() {
    this.websocketConnected = false;
    this.#peersChanged();
    this.#onReconnect?.(this);
  }

  /** Closes the transport (uMap's stop()); edits wait in the engine until the next attach(). */
  stop() {
    const transport = this.transport;
    this.transport = undefined;
    this.websocketConnected = false;
    if (transport && typeof transport.close === "function") transport.close();
  }

  /** Stops, unsubscribes from the engine, and closes it if createUmapSync made it. */
  close() {
    this.stop();
    this.#off();
    if (this.#ownsEngine) this.#engine.close();
  }

  // --- local edits (engine.js SyncEngine) -----------------------------------------------

  /**
   * uMap's upsert. An oldValue of null (uMap's features pass it when they are made:
   * sync.upsert(toGeoJSON(), null)) says the object was not there, as for uMap's UndoManager,
   * whose undo then deletes it: the engine is given no oldValue, and its undo deletes the
   * object (given null, the engine would undo to a value of null).
   */
  upsert(subject, metadata, value, oldValue) {
    this.#engine.upsert(subject, meta(metadata), value, oldValue === null ? undefined : old(oldValue));
    this.#edited();
  }

  /**
   * uMap's update; a value of undefined unsets the key. As for uMap's, options given with a
   * falsy undo ({undo: false}: a datalayer's _referenceVersion after a save) keep the edit
   * out of the undo history (EditOptions.undo) — in a batch too, where uMap's would not.
   */
  update(subject, metadata, key, value, oldValue, options) {
    let opts = old(oldValue);
    const undoable = options === undefined || options === null || !!options.undo;
    if (!undoable) opts = { ...opts, undo: false };
    if (value === undefined) this.#engine.unset(subject, meta(metadata), key, opts);
    else this.#engine.update(subject, meta(metadata), key, value, opts);
    this.#edited(undoable);
  }

  /** uMap's delete. An oldValue of null is none, as for upsert (its undo would restore null). */
  delete(subject, metadata, oldValue) {
    this.#engine.delete(subject, meta(metadata), oldValue === null ? undefined : old(oldValue));
    this.#edited();
  }

  /** Opens a batch; a batch opened inside one joins it (uMap's would drop the outer one's edits). */
  startBatch() {
    if (this.#depth === 0) this.#engine.startBatch();
    this.#depth++;
  }

  /**
   * Closes the batch: its edits leave as one message and are one undo step. subject and
   * metadata (uMap's proxy passes the object's) are accepted and not used: the engine's batch
   * message names its first operation's subject and metadata. Throws "bad_state" when no batch
   * is open.
   */
  commitBatch(_subject, _metadata) {
    if (this.#depth === 0) throw new MapcrdtError("bad_state", "commitBatch without startBatch");
    this.#depth--;
    if (this.#depth > 0) return;
    this.#engine.commitBatch();
    this.#edited();
  }

  /**
   * A proxy of this engine whose upsert, update, delete and commitBatch take the subject and
   * metadata from object.getSyncMetadata(), read at each call.
   */
  proxy(object) {
    return new Proxy(this, {
      get(target, prop) {
        if (prop === "upsert" || prop === "update" || prop === "delete" || prop === "commitBatch") {
          const { subject, metadata } = object.getSyncMetadata();
          return target[prop].bind(target, subject, metadata);
        }
        const v = Reflect.get(target, prop, target);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
  }

  // --- undo ------------------------------------------------------------------------------

  /** Undoes the latest local step; the updaters get its changes, the peers its operations. */
  undo() {
    const result = this.#engine.undo();
    this.#edited();
    return result;
  }

  redo() {
    const result = this.#engine.redo();
    this.#edited();
    return result;
  }

  canUndo() {
    return this.#engine.canUndo();
  }

  canRedo() {
    return this.#engine.canRedo();
  }

  /**
   * Whether local edits are not saved yet (engine.dirty()), or the map is not (uMap's
   * isDirty(): a map without an id, never saved, is dirty).
   */
  isDirty() {
    return this.#newMap() !== undefined || this.#engine.dirty().length > 0;
  }

  // The map's stored object (uMap's MapUpdater.getStoredObject(): the map itself) when it has
  // no id yet: a map the server has not made, which uMap's engine counts dirty and saves
  // first (_getDirtyObjects), whatever else is.
  #newMap() {
    const updater = this.updaters.map;
    if (typeof updater?.getStoredObject !== "function") return undefined;
    const map = updater.getStoredObject({});
    return map !== null && typeof map === "object" && !map.id ? map : undefined;
  }

  // --- saving ------------------------------------------------------------------------------

  /**
   * uMap's save(): calls save() once on each stored object (updater.getStoredObject(metadata))
   * with unsaved local edits, parents first — the map first when it has no id yet (a new map,
   * uMap's _getDirtyObjects) —; stops at the first that resolves falsy (false).
   * Then announces the save to the peers (saved()) and returns true.
   */
  async save() {
    const newMap = this.#newMap();
    const objects = newMap === undefined ? [] : [newMap];
    for (const { subject, metadata } of this.#engine.dirty()) {
      const updater = this.updaters[subject];
      const obj = typeof updater?.getStoredObject === "function" ? updater.getStoredObject({ ...metadata }) : undefined;
      if (obj && !objects.includes(obj)) objects.push(obj);
    }
    // What is saved: the edits held now, not those made while the saves are under way —
    // but for the {undo: false} edits the saves themselves make (uMap's DataLayer.save()
    // writes the server's _referenceVersion so): when nothing else was edited meanwhile,
    // the horizon moves past them, or they would stay dirty and every save() make another.
    let horizon = this.#engine.clock();
    const vector = this.#engine.vector();
    const outer = this.#saving === 0;
    if (outer) this.#editedWhileSaving = false;
    this.#saving++;
    try {
      for (const obj of objects) {
        if (!(await obj.save())) return false;
      }
    } finally {
      this.#saving--;
    }
    if (outer && !this.#editedWhileSaving) horizon = this.#engine.clock();
    this.saved(horizon, vector);
    return true;
  }

  /** uMap's saved(): marks the local edits saved and sends a SavedMessage. */
  saved(horizon, vector) {
    const hlc = horizon ?? this.#engine.clock();
    this.#engine.markSaved(hlc);
    const payload = { sender: this.peerId, lastKnownHLC: hlc, vector: vector ?? this.#engine.vector() };
    if (this.#canSend()) {
      try {
        this.transport.send("SavedMessage", payload);
      } catch (e) {
        this.#onError(e, undefined);
      }
    }
    this.#stateChanged();
  }

  // --- incoming ---------------------------------------------------------------------------

  /**
   * What uMap's transport calls with each message (parsed, or text): any kind the engine
   * takes. A message the engine refuses throws its MapcrdtError and changes nothing.
   */
  receive(message) {
    const changes = this.#engine.receive(message);
    const m = parsedIf(message, PEER_KINDS) ?? parsedIf(message, SAVED);
    if (m !== undefined && PEER_KINDS.includes(m.kind)) {
      this.peers = m.peers;
      this.#peersChanged();
    }
    this.#flush();
    // A peer's save changes what is dirty (uMap's onSavedMessage toggles the undo state too).
    if (changes.length > 0 || m?.kind === "SavedMessage") this.#stateChanged();
    return changes;
  }

  /** uMap's onOperationMessage(payload): an OperationMessage without its kind. */
  onOperationMessage(payload) {
    return this.receive({ ...payload, kind: "OperationMessage" });
  }

  /** The peers of the last JoinResponse or ListPeersResponse, as the relay sent them ({} before). */
  getPeers() {
    return this.peers || {};
  }

  // --- internals ---------------------------------------------------------------------------

  // undoable false: an edit made with {undo: false}. During save(), any other edit (an
  // undo, a redo, an edit of the user's) keeps save() from marking saved what came after it
  // started.
  #edited(undoable = true) {
    if (undoable && this.#saving > 0) this.#editedWhileSaving = true;
    if (this.#depth === 0) this.#flush();
    this.#stateChanged();
  }

  #canSend() {
    return this.transport !== undefined && !this.offline && this.transport.isOpen !== false;
  }

  #flush() {
    if (!this.#canSend()) return; // the engine keeps its outbox until then
    const transport = this.transport;
    for (const text of this.#engine.flush()) {
      const { kind, ...payload } = JSON.parse(text);
      try {
        transport.send(kind, payload);
      } catch (e) {
        // A socket closing under us: the rest of this flush is gone from the outbox, and the
        // peers fetch it when this replica rejoins (their sync request on its arrival).
        this.#onError(e, undefined);
        return;
      }
    }
  }

  #peersChanged() {
    this.#call(this.updaters.map, "update", { key: "numberOfConnectedPeers" }, undefined);
  }

  #stateChanged() {
    // uMap's toggleState comes with each undo step, a batch's at its commit (and isDirty()
    // reads the engine's dirty objects: not once per edit of an import). The default's work
    // needs a page.
    if (this.#depth > 0 || (this.#onStateChange === toggleState && globalThis.document === undefined)) return;
    try {
      this.#onStateChange({ canUndo: this.#engine.canUndo(), canRedo: this.#engine.canRedo(), dirty: this.isDirty() });
    } catch (e) {
      this.#onError(e, undefined);
    }
  }

  #apply(change) {
    const { kind, subject, key } = change;
    const updater = this.updaters[subject];
    if (updater === undefined || updater === null) {
      this.#onError(new MapcrdtError("unknown_subject", `no updater for ${subject}`), change);
      return;
    }
    const metadata = { ...change.metadata };
    // A whole value of null (held by an engine of a build before 2026-11-25, whose undo of
    // an upsert made with oldValue null restored null; now it deletes): uMap's UndoManager turns an upsert of null into a delete (copyOperation); its
    // updaters' upsert would throw on it. A later value makes the object again (upsert).
    if (key === undefined && change.value === null) {
      if (kind === "set") this.#call(updater, "delete", { verb: "delete", subject, metadata }, change);
      return;
    }
    if (kind === "deleted") {
      this.#call(updater, "delete", { verb: "delete", subject, metadata }, change);
    } else if (key !== undefined && subject === "feature" && (key === "properties" || key === "properties._umap_options")) {
      this.#featureProperties(updater, metadata, key, kind === "set" ? change.value : undefined, change);
    } else if (key !== undefined && subject === "datalayer" && this.#datalayerPath(updater, kind, metadata, change)) {
      // done
    } else if (key !== undefined && kind === "set") {
      this.#call(updater, "update", { verb: "update", subject, metadata, key, value: change.value }, change);
    } else if (key !== undefined) {
      this.#call(updater, "update", { verb: "update", subject, metadata, key }, change);
    } else if (subject === "datalayer" && isPlain(change.value)) {
      this.#datalayerValue(updater, kind, metadata, change);
    } else {
      const value = kind === "unset" ? {} : change.value;
      if (typeof updater.upsert === "function") {
        this.#call(updater, "upsert", { verb: "upsert", subject, metadata, value }, change);
        // A new value of an object the map shows (a "set": it was alive), maybe an upsert and
        // the key edits after it in one message: uMap's upsert of an object it has applies
        // part of it (FeatureUpdater: the geometry). The rest follows as updates of its
        // top-level keys.
        if (kind === "set" && isPlain(value)) {
          const feature = subject === "feature";
          for (const k of Object.keys(value)) {
            // A feature's geometry came with upsert; its type is a getter of the geometry, and
            // its id (like any object's) is the metadata's.
            if (k === "id" || (feature && (k === "geometry" || k === "type" || k === "properties"))) continue;
            this.#call(updater, "update", { verb: "update", subject, metadata, key: k, value: value[k] }, change);
          }
          if (feature) this.#featureProperties(updater, metadata, "properties", value.properties, change);
        }
      } else if (value !== null && typeof value === "object" && !Array.isArray(value)) {
        // An updater without upsert (uMap's map and permissions updaters): one update per
        // top-level key.
        for (const k of Object.keys(value)) {
          this.#call(updater, "update", { verb: "update", subject, metadata, key: k, value: value[k] }, change);
        }
      }
      // The keys the new value lacks and uMap's object still holds: the updates above set
      // only what the value holds. An update without value takes each away (setObjectValue
      // deletes the key), as uMap's unset does; the id is the metadata's.
      if (kind === "set") {
        for (const k of this.#shownKeys(change)) {
          if (k !== "id" && !(isPlain(value) && Object.hasOwn(value, k))) {
            this.#call(updater, "update", { verb: "update", subject, metadata, key: k }, change);
          }
        }
      }
    }
  }

  // A change under a datalayer value's "options" key (see #datalayerValue), in uMap's terms:
  // each option it touches is what the value's key and the one under "options" make together.
  // A set of a path below an option is written as it is (as uMap's peers got it); an unset,
  // or a set of the whole "options" (uMap's restore()), gives each option it touches that
  // value, or takes it away when there is none — never an update of "options" itself, which
  // uMap's DataLayerUpdater drops (no such field) and setObjectValue would delete whole.
  // Returns false for any other change.
  #datalayerPath(updater, kind, metadata, change) {
    const path = segments(change.key);
    if (!DATALAYER_PATHS.includes(path[0]) || (kind === "set" && path.length > 1)) return false;
    const { subject } = change;
    const value = this.#engine.get(subject, metadata);
    let names;
    if (path.length > 1) names = [path[1]];
    else {
      names = new Set(this.#shownKeys(change));
      if (kind === "set" && isPlain(change.value)) for (const name of Object.keys(change.value)) names.add(name);
    }
    for (const name of names) {
      if (name === "id") continue;
      const v = optionValue(value, name);
      const key = `${path[0]}.${name}`;
      if (v === undefined) this.#call(updater, "update", { verb: "update", subject, metadata, key }, change);
      else this.#call(updater, "update", { verb: "update", subject, metadata, key, value: v }, change);
    }
    return true;
  }

  // A datalayer's whole value. It is what uMap upserts, the datalayer's options
  // (createDataLayer: sync.upsert(datalayer.options); uMap 3: its properties), which uMap's
  // DataLayer holds under datalayer.options, where its form edits them: update("options.name"),
  // which the engine keeps under the value's "options" key. DataLayerUpdater.upsert makes a
  // datalayer from the value and leaves one it has as it is; its update writes a key path on
  // the DataLayer (setObjectValue). So: the upsert gets the value without that key (uMap's
  // would take it for an option: a late joiner would show the name the layer was made with);
  // a datalayer uMap has gets each option as an update of options.<name>; the edits under the
  // key follow as updates of their paths, as they reached the peers that were there; and an
  // option uMap's datalayer holds and the value lacks is taken away (options.<name>, no value).
  #datalayerValue(updater, kind, metadata, change) {
    const { subject, value } = change;
    const nested = DATALAYER_PATHS.filter((k) => isPlain(value[k]));
    const prefix = nested[0] ?? DATALAYER_PATHS[0];
    let base = value;
    if (nested.length > 0) {
      base = { ...value };
      for (const k of nested) delete base[k];
    }
    const set = (key, v) => this.#call(updater, "update", { verb: "update", subject, metadata, key, value: v }, change);
    const upserts = typeof updater.upsert === "function";
    if (upserts) this.#call(updater, "upsert", { verb: "upsert", subject, metadata, value: base }, change);
    if (kind === "set" || !upserts) {
      for (const k of Object.keys(base)) if (k !== "id") set(`${prefix}.${k}`, base[k]);
    }
    for (const k of nested) for (const [path, v] of leaves(value[k], k, [])) set(path, v);
    if (kind === "set") {
      const names = optionNames(value);
      for (const name of this.#shownKeys(change)) {
        if (name !== "id" && !names.has(name)) {
          this.#call(updater, "update", { verb: "update", subject, metadata, key: `${prefix}.${name}` }, change);
        }
      }
    }
  }

  // #trackDatalayer records a datalayer's option names, what uMap's datalayer.options holds:
  // a whole value's (optionNames), a path options.<name>… adds name (any other path its
  // first name), an unset of options.<name> takes it away unless the value's own key holds
  // it still, one of options leaves the value's own.
  #trackDatalayer({ kind, subject, metadata, key, value }) {
    const id = subject + "\0" + JSON.stringify(metadata);
    if (key === undefined) {
      if (kind === "deleted" || !isPlain(value)) this.#shown.delete(id);
      else this.#shown.set(id, optionNames(value));
      return;
    }
    const path = segments(key);
    const under = DATALAYER_PATHS.includes(path[0]);
    let held = this.#shown.get(id);
    if (kind === "set" && held === undefined) this.#shown.set(id, (held = new Set()));
    if (under && path.length === 1) {
      if (kind === "set") {
        if (isPlain(value)) for (const name of Object.keys(value)) held.add(name);
      } else {
        const now = this.#engine.get(subject, metadata);
        if (isPlain(now)) this.#shown.set(id, optionNames(now));
        else this.#shown.delete(id);
      }
      return;
    }
    const [name, whole] = under ? [path[1], path.length === 2] : [path[0], path.length === 1];
    if (kind === "set") held.add(name);
    else if (whole && !(under && optionValue(this.#engine.get(subject, metadata), name) !== undefined)) held?.delete(name);
  }

  // The top-level keys uMap's object for the change's object holds, as #track recorded them.
  #shownKeys({ subject, metadata }) {
    const shown = subject === "feature" ? this.#shownFeatures : this.#shown;
    if (shown.size === 0) return [];
    return [...(shown.get(subject + "\0" + JSON.stringify(metadata)) ?? [])];
  }

  // #track records, from every change the engine reports (local ones too: uMap's UI made
  // them on its objects), which top-level keys each object's uMap object holds: a whole value
  // gives its keys, a set of a path adds its first key, an unset of a top-level key takes it
  // away (an unset below one leaves the key, maybe {}), a delete forgets the object.
  #track(change) {
    const { kind, subject, metadata, key, value } = change;
    if (subject === "datalayer") {
      this.#trackDatalayer(change);
      return;
    }
    const feature = subject === "feature";
    const shown = feature ? this.#shownFeatures : this.#shown;
    let top;
    let whole = true;
    if (key !== undefined) {
      [top, whole] = topKey(key);
      if (feature && FEATURE_KEYS.has(top)) return;
      if (kind !== "set" && shown.size === 0) return;
    } else if (kind === "deleted" || !isPlain(value)) {
      if (shown.size > 0) shown.delete(subject + "\0" + JSON.stringify(metadata));
      return;
    }
    let keys;
    if (key === undefined) {
      keys = Object.keys(value);
      if (feature) keys = keys.filter((k) => !FEATURE_KEYS.has(k));
      if (keys.length === 0 && shown.size === 0) return;
    }
    const id = subject + "\0" + JSON.stringify(metadata);
    if (key === undefined) {
      if (keys.length > 0) shown.set(id, new Set(keys));
      else shown.delete(id);
    } else if (kind === "set") {
      let held = shown.get(id);
      if (held === undefined) shown.set(id, (held = new Set()));
      held.add(top);
    } else if (whole) {
      const held = shown.get(id);
      held?.delete(top);
      if (held?.size === 0) shown.delete(id);
    }
  }

  // A uMap feature always has properties and properties._umap_options (its constructor makes
  // them; getOption reads the latter: without one, rendering throws), and its toGeoJSON()
  // leaves out an empty _umap_options. The engine can take them away: an undo of a feature's
  // first color restores the absence of _umap_options (DESIGN §7), a value upserted from
  // toGeoJSON() has none. An update of properties (value undefined: an unset) or of
  // properties._umap_options gives an empty one where the value has none — what uMap shows
  // the same.
  #featureProperties(updater, metadata, key, value, change) {
    value ??= {};
    if (key === "properties" && isPlain(value) && !("_umap_options" in value)) value = { _umap_options: {}, ...value };
    this.#call(updater, "update", { verb: "update", subject: "feature", metadata, key, value }, change);
  }

  #call(updater, verb, operation, change) {
    if (updater === undefined || updater === null) return;
    try {
      if (typeof updater[verb] !== "function") return; // uMap's updaters lack what never happens to them
      if (typeof updater.applyMessage === "function" && operation.verb === verb) updater.applyMessage(operation);
      else updater[verb](operation);
    } catch (e) {
      this.#onError(e, change);
    }
  }
}

/**
 * Makes a UmapSyncEngine: over options.engine, or over a new engine made with
 * options.engineOptions (closed by the adapter's close()).
 */
export async function createUmapSync(options) {
  const { engine, engineOptions, ...rest } = options ?? {};
  if (engine !== undefined) return new UmapSyncEngine(engine, rest);
  const made = await createEngine(engineOptions);
  try {
    return new UmapSyncEngine(made, { ...rest, [OWNS]: true });
  } catch (e) {
    made.close();
    throw e;
  }
}

// The default onStateChange: what uMap's UndoManager.toggleState() does to the page (its
// undo and redo buttons, the body's umap-is-dirty class, the buttons disabled or enabled on
// dirty); nothing without a document, as uMap's.
function toggleState({ canUndo, canRedo, dirty }) {
  const document = globalThis.document;
  if (document === undefined) return;
  const undoButton = document.querySelector(".edit-undo");
  const redoButton = document.querySelector(".edit-redo");
  if (undoButton) undoButton.disabled = !canUndo;
  if (redoButton) redoButton.disabled = !canRedo;
  document.body.classList.toggle("umap-is-dirty", dirty);
  for (const button of document.querySelectorAll(".disabled-on-dirty")) button.disabled = dirty;
  for (const button of document.querySelectorAll(".enabled-on-dirty")) button.disabled = !dirty;
}

// uMap's map has no metadata (getSyncMetadata gives {subject: "map"}): the engine takes {}.
function meta(metadata) {
  return metadata === undefined ? {} : metadata;
}

function old(oldValue) {
  return oldValue === undefined ? undefined : { oldValue };
}

// The keys of a datalayer's value under which the engine keeps uMap's edits of its
// options.name / properties.name paths (see #apply).
const DATALAYER_PATHS = ["options", "properties"];

// optionNames gives the names of the options uMap's datalayer holds for a whole value of it:
// the value's keys and those under its "options" / "properties" key.
function optionNames(value) {
  const names = new Set();
  for (const [k, v] of Object.entries(value)) {
    if (DATALAYER_PATHS.includes(k) && isPlain(v)) for (const name of Object.keys(v)) names.add(name);
    else names.add(k);
  }
  return names;
}

// optionValue gives what uMap's datalayer.options[name] is for a datalayer's value: the
// value's own, and over it (merged into an object) the one under "options" / "properties".
function optionValue(value, name) {
  if (!isPlain(value)) return undefined;
  let v = value[name];
  for (const k of DATALAYER_PATHS) {
    const over = value[k];
    if (!isPlain(over) || !Object.hasOwn(over, name)) continue;
    v = isPlain(v) && isPlain(over[name]) ? merged(v, over[name]) : over[name];
  }
  return v;
}

function merged(a, b) {
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = isPlain(out[k]) && isPlain(v) ? merged(out[k], v) : v;
  return out;
}

// leaves appends [path, value] for each leaf of obj (a value that is not a non-empty plain
// object) under prefix: uMap's setObjectValue writes into the objects on the way, so each
// leaf written keeps what uMap's object holds beside it, as the path edits did.
function leaves(obj, prefix, out) {
  for (const [k, v] of Object.entries(obj)) {
    if (isPlain(v) && Object.keys(v).length > 0) leaves(v, `${prefix}.${k}`, out);
    else out.push([`${prefix}.${k}`, v]);
  }
  return out;
}

// A feature's keys uMap's FeatureUpdater handles itself (upsert: geometry; type is a getter of
// it; properties: #featureProperties; id: the metadata's).
const FEATURE_KEYS = new Set(["id", "type", "geometry", "properties"]);

// topKey gives a key path's first name (unescaped: the path a\.b is the name "a.b") and whether it
// is the whole path.
function topKey(key) {
  if (!key.includes("\\")) {
    const dot = key.indexOf(".");
    return dot < 0 ? [key, true] : [key.slice(0, dot), false];
  }
  let name = "";
  for (let i = 0; i < key.length; i++) {
    const c = key[i];
    if (c === "\\" && i + 1 < key.length) name += key[++i];
    else if (c === ".") return [name, false];
    else name += c;
  }
  return [name, true];
}

// segments splits a key path into its names (unescaped: the path a\.b is the one name "a.b").
function segments(key) {
  if (!key.includes("\\")) return key.split(".");
  const out = [];
  let name = "";
  for (let i = 0; i < key.length; i++) {
    const c = key[i];
    if (c === "\\" && i + 1 < key.length) name += key[++i];
    else if (c === ".") {
      out.push(name);
      name = "";
    } else name += c;
  }
  out.push(name);
  return out;
}

function isPlain(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

// parsedIf gives the message as an object when its kind is one of kinds (a message the engine
// took, so valid), else undefined.
function parsedIf(message, kinds) {
  let m = message instanceof JSONText ? message.text : message;
  if (typeof m === "string" || m instanceof Uint8Array || m instanceof ArrayBuffer) {
    const text = typeof m === "string" ? m : new TextDecoder().decode(m);
    if (!kinds.some((k) => text.includes(k))) return undefined;
    try {
      m = JSON.parse(text);
    } catch {
      return undefined;
    }
  }
  if (m === null || typeof m !== "object" || !kinds.includes(m.kind)) return undefined;
  return m;
}
