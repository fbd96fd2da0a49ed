// Types of mapcrdt/umap (umap.js): a mapcrdt engine behind the surface uMap's frontend calls
// on its own sync engine, modelled on umap-project/umap's umap/static/umap/js/modules/sync/:
// engine.js (class SyncEngine) at commit bffbeb52303f8dfe724d8998e39371dd1eaff1f1, undo.js at
// 50f2c08ecb528ebd54e03bc6ee2cba97af3e8770, websocket.js at
// 69ca89a6baa96b72e9bc199219d1c92766624396, and updaters.js in its version over `app` (the
// five updaters, Schema.hasField, DataLayerUpdater.delete → del + commitDelete). Hand-written.
//
// Where uMap's engine and this adapter differ:
// - uMap applies every remote operation as it arrives (a late one included, so peers can end
//   apart); the adapter applies only what became visible after last-writer-wins per key path:
//   an edit that lost to a newer one makes no updater call, and peers end equal.
// - uMap's undo writes the old value back whatever happened since; mapcrdt's leaves a place a
//   peer wrote later as it is (UndoResult.skipped). A peer's undo reaches the others as plain
//   edits: their updaters get it as any remote change.
// - The engine reports changes coalesced per object and key path over one received message (a
//   batch, a catch-up): an upsert of a feature a peer shows, and the key edits the message
//   makes after it, are one whole-object "set". uMap's upsert of an object its updater has
//   applies part of the value (FeatureUpdater: the geometry; DataLayerUpdater: nothing), so the
//   adapter follows upsert() with update() of each top-level key of the value — a feature's
//   but its geometry, type (a getter of the geometry) and id (the metadata's), its properties
//   always (as below): the feature then shows the engine's value (uMap's own engine leaves a
//   feature's properties as they were on a peer's upsert of it). A top-level key uMap's object
//   holds (as far as the engine's changes, local ones too, told) and the new value lacks is
//   taken away: update() without value.
// - A datalayer's value is what uMap upserts, its options (uMap 3: properties), which uMap's
//   DataLayer holds in datalayer.options, where its form edits them (update("options.name"):
//   the engine keeps those under the value's "options" key). The adapter speaks the
//   DataLayer's paths: the upsert gets the value without "options", whose leaves follow as
//   updates of options.… (a late joiner shows the name given after the layer was made); a
//   new value of a datalayer uMap has comes as updates of options.<name> (options.<name>
//   without value for one it lacks; the prefix is "options" unless the value holds its edits
//   under "properties"); an unset under options — an undo of a datalayer's first form edit
//   made with no old value takes the whole "options" away — gives each option it touches the
//   value the engine's value still makes for it, or takes it away (uMap drops an update of
//   "options" itself: not a schema field).
// - A uMap feature always holds properties._umap_options (getOption reads it; toGeoJSON()
//   leaves out an empty one). A feature's properties or properties._umap_options that the
//   engine takes away or sets without one — an undo of a marker's first color restores the
//   absence of _umap_options — reach the updater with an empty one ({}), shown the same.
// - update()'s 6th argument: options with a falsy undo ({undo: false}) keep the edit out of the
//   undo history, as uMap's do (EditOptions.undo: an older step's undo leaves what it wrote,
//   and lists it skipped) — in a batch too, where uMap's joins the batch's undo step. Such an
//   edit made while save() runs (a stored object's save() writing the datalayer's
//   _referenceVersion) is part of that save: save() marks it saved, unless an undoable edit
//   was made meanwhile (then it stays dirty, and the next save() sends it again).
// - isDirty() is engine.dirty() (or a map without an id, as uMap's): an undo of an unsaved
//   edit leaves the map dirty, where uMap's UndoManager toggles the step back to clean; a
//   save() that fails part way marks nothing saved (uMap's marks the objects saved before).
// - commitBatch(subject, metadata) ignores both: the batch message names its first edit's.
// - A batch opened inside one joins it (uMap's second startBatch drops the first's edits).
// - Edits made offline (no transport, transport.isOpen false, or offline = true) wait in the
//   engine's outbox and leave at the next attach() / onConnection(); uMap's are sent never
//   (peers catch up on them by asking).
// - Bad input (a local edit's or an incoming message's) throws the engine's MapcrdtError with
//   its code, and nothing is applied or sent. An updater's error is given to onError, and the
//   other changes of the call are still applied.

import type { Engine, EngineOptions, JSONValue, MessageInput, Metadata, Subject, UndoResult, Value } from "./index.js";

/** An operation as uMap's engine hands it to an updater (updaters.js: `{verb, subject, metadata, key, value}`). */
export interface UmapOperation {
  verb: "update" | "upsert" | "delete";
  subject: Subject;
  /** A copy of the change's metadata (canonical: members sorted). */
  metadata: { [key: string]: JSONValue };
  /** The key path of an update. */
  key?: string;
  /** update: the new value, absent for an unset; upsert: the whole object. */
  value?: JSONValue;
}

/**
 * One of uMap's updaters (MapUpdater, DataLayerUpdater, FeatureUpdater, MapPermissionsUpdater,
 * DataLayerPermissionsUpdater). The adapter calls applyMessage(operation) when the updater has
 * it (uMap's BaseUpdater dispatches on verb), else the method named by the verb; a method the
 * updater lacks is not called (a whole-object change of an updater without upsert becomes one
 * update per top-level key). The map updater also gets update({key: "numberOfConnectedPeers"})
 * when the peers or the connection change, as uMap's engine does.
 */
export interface UmapUpdater {
  applyMessage?(operation: UmapOperation): unknown;
  update?(operation: UmapOperation | { key: string }): unknown;
  upsert?(operation: UmapOperation): unknown;
  delete?(operation: UmapOperation): unknown;
  /** The object save() saves for an object with unsaved edits (uMap's: the datalayer of a feature). */
  getStoredObject?(metadata: { [key: string]: JSONValue }): { save(): unknown } | undefined;
}

/** The updaters by subject (uMap's SyncEngine.updaters). */
export interface UmapUpdaters {
  map: UmapUpdater;
  feature?: UmapUpdater;
  datalayer?: UmapUpdater;
  mappermissions?: UmapUpdater;
  datalayerpermissions?: UmapUpdater;
  [subject: string]: UmapUpdater | undefined;
}

/**
 * uMap's WebSocketTransport as the adapter uses it (websocket.js): send(kind, payload) adds
 * `kind` to payload and sends it as JSON; isOpen false holds messages back; close() for stop().
 */
export interface UmapTransport {
  send(kind: string, payload: { [key: string]: unknown }): void;
  readonly isOpen?: boolean;
  close?(): void;
}

/** What onStateChange gets (uMap's UndoManager.toggleState sets the undo/redo buttons and the dirty flag from it). */
export interface UmapSyncState {
  canUndo: boolean;
  canRedo: boolean;
  dirty: boolean;
}

/** Options of the adapter. */
export interface UmapSyncOptions {
  updaters: UmapUpdaters;
  /** A connected transport; or attach() one later. */
  transport?: UmapTransport;
  /**
   * An updater's error, a change for a subject without an updater (code "unknown_subject"),
   * or the transport's send throwing (change undefined: the rest of that flush is dropped, and
   * the peers fetch it when this replica rejoins). Default: thrown from a microtask.
   */
  onError?: (error: unknown, change: import("./index.js").Change | undefined) => void;
  /**
   * After every edit (a batch's: at its commit), undo, redo, save, visible remote change and
   * peer's SavedMessage (uMap's toggleState moments), and _undoManager.toggleState(). Default: what uMap's toggleState does
   * to the page when there is a document — the .edit-undo and .edit-redo buttons disabled
   * when there is nothing to undo or redo, the body's umap-is-dirty class, the
   * .disabled-on-dirty and .enabled-on-dirty buttons.
   */
  onStateChange?: (state: UmapSyncState) => void;
  /** After reconnect() (the socket closed unasked): where the page's reconnection policy starts. */
  onReconnect?: (sync: UmapSyncEngine) => void;
}

/** Options of createUmapSync: an engine, or the options to make one. */
export interface CreateUmapSyncOptions extends UmapSyncOptions {
  /** An engine to use (the adapter's close() leaves it open). */
  engine?: Engine;
  /** Options of the engine made when none is given (closed by the adapter's close()). */
  engineOptions?: EngineOptions;
}

/** The methods proxy() binds to an object's subject and metadata. */
export type UmapSyncProxy = Omit<UmapSyncEngine, "upsert" | "update" | "delete" | "commitBatch"> & {
  upsert(value: Value, oldValue?: Value): void;
  update(key: string, value: Value | undefined, oldValue?: Value, options?: { undo?: boolean }): void;
  delete(oldValue?: Value): void;
  commitBatch(): void;
};

/** What uMap's objects give proxy(): Feature, DataLayer, the map. */
export interface UmapSyncable {
  getSyncMetadata(): { subject: Subject; metadata?: Metadata };
}

/** A uMap-shaped sync engine backed by a mapcrdt engine. Every method but save() is synchronous. */
export class UmapSyncEngine {
  /** Throws "bad_option" for a missing engine or updaters, or a callback that is not a function. */
  constructor(engine: Engine, options: UmapSyncOptions);
  /** The mapcrdt engine (for seed, get, snapshot …). */
  readonly engine: Engine;
  /** The engine's peer id: give it to the transport's JoinRequest. */
  readonly peerId: string;
  updaters: UmapUpdaters;
  transport: UmapTransport | undefined;
  /** transport.isOpen. */
  readonly isOpen: boolean | undefined;
  websocketConnected: boolean;
  /** Set by uMap's transport when close() was asked. */
  closeRequested: boolean;
  /** While true nothing is sent (edits wait); set it back and call onConnection() to send. */
  offline: boolean;
  /** The peers of the last JoinResponse or ListPeersResponse, as sent. */
  peers: unknown;
  /** What uMap's code reads of its engine's UndoManager. */
  readonly _undoManager: {
    /** undo(true) redoes, as uMap's UndoManager.undo(redo) does. */
    undo(redo?: boolean): UndoResult;
    redo(): UndoResult;
    isDirty(): boolean;
    toggleState(): void;
  };

  /** Uses a connected transport from now on, sends what waited ("bad_option" without send()). */
  attach(transport: UmapTransport): void;
  /** Sends what waited and updates the peer count (uMap's transport calls it). */
  onConnection(): void;
  /** The socket closed unasked: marks it disconnected, calls onReconnect. */
  reconnect(): void;
  /** Closes the transport; edits wait until the next attach(). */
  stop(): void;
  /** stop(), stops applying the engine's changes, closes the engine createUmapSync made. */
  close(): void;

  /**
   * Replaces the whole object (a feature's GeoJSON, a datalayer); oldValue serves undo where
   * the engine never saw one. null (uMap's new features pass it) or none: the object was not
   * there, and an undo deletes it.
   */
  upsert(subject: Subject, metadata: Metadata | undefined, value: Value, oldValue?: Value): void;
  /**
   * Sets key (value undefined: unsets it). options with a falsy undo ({undo: false}: a
   * datalayer's _referenceVersion after a save) make no undo step (EditOptions.undo).
   */
  update(
    subject: Subject,
    metadata: Metadata | undefined,
    key: string,
    value: Value | undefined,
    oldValue?: Value,
    options?: { undo?: boolean },
  ): void;
  /** Deletes the object (uMap's third argument is its old value, for undo; null: none). */
  delete(subject: Subject, metadata: Metadata | undefined, oldValue?: Value): void;
  /** Opens a batch (one inside one joins it). */
  startBatch(): void;
  /** Closes the batch: one message, one undo step. Its arguments are not used. "bad_state" when none is open. */
  commitBatch(subject?: Subject, metadata?: Metadata): void;
  /** upsert, update, delete and commitBatch bound to object.getSyncMetadata(), read at each call. */
  proxy(object: UmapSyncable): UmapSyncProxy;

  /** Undoes the latest local step (its changes reach the updaters and the peers). "bad_state" inside a batch. */
  undo(): UndoResult;
  redo(): UndoResult;
  canUndo(): boolean;
  canRedo(): boolean;
  /**
   * Whether there are unsaved local edits (engine.dirty()), or the map was never saved: the map
   * updater's getStoredObject() (uMap's: the map) has no id, as uMap's isDirty() says.
   */
  isDirty(): boolean;
  /**
   * Saves each stored object with unsaved edits once (getStoredObject(metadata).save(), parents
   * first; the map first, edited or not, when it has no id yet, as uMap's save() does),
   * stopping at the first falsy result (false); then saved() with the clock taken before the
   * saves, so edits made meanwhile stay unsaved. Returns true when all saved.
   */
  save(): Promise<boolean>;
  /** Marks the local edits up to horizon (default: all) saved and sends a SavedMessage. */
  saved(horizon?: string, vector?: Record<string, number>): void;

  /** A message from the transport (parsed or text); throws the engine's MapcrdtError for a bad one, changing nothing. */
  receive(message: MessageInput): import("./index.js").Change[];
  /** uMap's onOperationMessage: receive() of payload as an OperationMessage. */
  onOperationMessage(payload: { [key: string]: unknown }): import("./index.js").Change[];
  /** peers, or {} before any. */
  getPeers(): unknown;
}

/** Makes a UmapSyncEngine over options.engine, or over a new engine (options.engineOptions). */
export function createUmapSync(options: CreateUmapSyncOptions): Promise<UmapSyncEngine>;
