// Types of mapcrdt's JavaScript API (index.js). Hand-written: each type names the Go file
// it mirrors. The engine is the Go package github.com/mapcrdt/mapcrdt/crdt compiled to
// WebAssembly (wasm/); DESIGN §9 and §10 are the contract.

/** A JSON value, as JSON.parse returns it. */
export type JSONValue = null | boolean | number | string | JSONValue[] | { [key: string]: JSONValue };

/**
 * The stable error codes (crdt/errors.go, plus the bridge's own in wasm/dispatch.go:
 * "bad_state" for a closed engine, "internal" for a recovered panic or a broken module).
 */
export type ErrorCode =
  | "invalid_json"
  | "unknown_verb"
  | "unknown_subject"
  | "unknown_kind"
  | "bad_message"
  | "bad_metadata"
  | "bad_key"
  | "bad_value"
  | "bad_hlc"
  | "clock_drift"
  | "too_large"
  | "too_deep"
  | "bad_snapshot"
  | "snapshot_version"
  | "bad_state"
  | "bad_option"
  | "conflict"
  | "internal";

/** The error every function of the API throws (crdt.Error in crdt/errors.go). */
export class MapcrdtError extends Error {
  constructor(code: string, message: string);
  readonly name: "MapcrdtError";
  /** The stable code (ErrorCode; typed string so that future codes stay assignable). */
  readonly code: ErrorCode | (string & {});
  /** On a merge refused for its conflicts (code "conflict"). */
  conflicts?: MergeConflict[];
}

/** JSON text passed as it is where a value or metadata is expected (no JSON.stringify). */
export class JSONText {
  /** Throws "invalid_json" for anything but a string (the text itself is checked where it is used). */
  constructor(text: string);
  readonly text: string;
}

/** Marks text as JSON: `engine.update(s, m, k, jsonText('"Café"'))`. */
export function jsonText(text: string): JSONText;

/**
 * A value argument: any JSON-serializable value, or JSON text wrapped by jsonText(). It is
 * written with JSON.stringify, whose rules apply as they are: NaN and ±Infinity become null,
 * a Date its ISO text, a Map, a Set or an ArrayBuffer {}, a typed array an object of its
 * indices, members holding undefined or a function are left out. What JSON.stringify throws
 * on (a BigInt, a cycle), or writes nothing for (undefined, a function, a symbol), is a
 * "bad_value" error.
 */
export type Value = JSONValue | JSONText | { toJSON(): unknown };

/**
 * Metadata naming an object: an object holding its identity fields (crdt/subjects.go:
 * "feature" needs layerId and id, "datalayer" and "datalayerpermissions" need id, "map" and
 * "mappermissions" none), plus any other fields (featureType …) that travel along. A string
 * in it (a member name too) holding a lone surrogate is a "bad_metadata" error: it would
 * reach the module as U+FFFD, and "g\ud800" and "g\udc00" would name one object.
 */
export type Metadata = { [key: string]: JSONValue } | JSONText;

/**
 * The subjects of uMap (crdt.DefaultSubjects in crdt/subjects.go). The type is open (a
 * string a peer's message may carry), but an engine knows these five only: an edit or get
 * of another is an "unknown_subject" error.
 */
export type Subject = "map" | "mappermissions" | "datalayer" | "datalayerpermissions" | "feature" | (string & {});

/**
 * A message as it travels: JSON text (what flush() gives), a parsed object, or UTF-8 bytes.
 * A Blob (a WebSocket's binary frame, by default) is a "bad_message" error: set the socket's
 * binaryType to "arraybuffer".
 */
export type MessageInput = string | object | Uint8Array | ArrayBuffer | JSONText;

/** The engine's limits on input (crdt.Limits in crdt/op.go). Each defaults as documented there. */
export interface Limits {
  /**
   * Largest message in bytes, received or made by a local edit (a batch's included: the edit
   * that would pass it throws "too_large"); a PeerMessage received may be 4 KiB larger (a
   * sync response carrying an edit of the limit); a snapshot may take 4 times it (default 32 MiB).
   * A peer's operation larger than a local edit may be (from an engine with larger limits),
   * in whatever message, makes that message "too_large", whole.
   */
  maxMessageBytes?: number;
  /**
   * Deepest nesting of an object's value, each object and array counted with those its key
   * path makes (an update of "a.b" to [[1]] nests 4: the object, a, and two arrays), and of
   * a message's metadata and unknown fields (default 64, at least 3): deeper is "too_deep".
   */
  maxDepth?: number;
  /**
   * Most sub-operations in a batch, received or local (the edit past it throws
   * "too_large"), or operations in a sync response (default 100,000).
   */
  maxBatch?: number;
  /** Longest key path in bytes (default 1,024). */
  maxKeyBytes?: number;
  /** Most parts in a key path (default 32). */
  maxKeyParts?: number;
}

/** Options of createEngine (crdt.Options in crdt/replica.go). An unknown key is a "bad_option" error. */
export interface EngineOptions {
  /**
   * This replica's peer id: printable ASCII without spaces, `"`, `\` or `:` (uMap's peers split clocks at `:`), ≤ 128 bytes.
   * Default: a fresh UUID. One id per live engine (per tab, not per user): two engines
   * stamping under one id at once number different operations alike, and a peer catching
   * up by those numbers can miss one of them.
   */
  peerId?: string;
  /**
   * Where mapcrdt.wasm is (default: next to index.js). The module is loaded once per page: a
   * later createEngine, initialize or merge naming another URL throws "bad_option".
   */
  wasmURL?: string | URL;
  /**
   * How far ahead of the local clock a remote clock may be, in ms: a positive integer
   * (default 60,000), at most 9,223,372,036,854 (~292 years: what a Go time.Duration holds).
   */
  maxDrift?: number;
  /**
   * A snapshot() of an engine to start from (an empty or damaged one is a "bad_snapshot"
   * error, one of another format "snapshot_version"). peerId, if given, must be the
   * snapshot's ("bad_option"). It is restored a share at a time, each ~4–16 ms, the event
   * loop running in between; the first share reads the whole text (~40 ms for 17 MB here).
   */
  snapshot?: Uint8Array | ArrayBuffer | string;
  /**
   * Undo steps kept: a positive integer (default 100). The undo and the redo history each
   * also keep to limits.maxMessageBytes of values to restore: past it the oldest steps go.
   */
  undoDepth?: number;
  /**
   * A local edit made within this many ms of the previous one (its wall clock, ends
   * included; neither in a group) joins its undo step (default 0: each edit is a step); at
   * most 9,223,372,036,854. A step holding more than limits.maxMessageBytes of values to
   * restore takes no more edits: the next starts a step (and the old one goes).
   */
  captureInterval?: number;
  /**
   * The wall clock, ms since the epoch (default Date.now). Called at most once per engine
   * call (never by startBatch, commitBatch, inBatch, memory or close); a call whose clock
   * throws, or returns anything but a number from 1 to 2^53 - 1, throws "bad_option" and
   * changes nothing.
   */
  now?: () => number;
  /** Limits on input. */
  limits?: Limits;
  /**
   * How many operations one answer to a sync request carries at most: a positive integer
   * (default 10,000). An answer is also kept to about half of `limits.maxMessageBytes`.
   * The rest follows in pages: the asking engine's reply to each partial page (from
   * `onPeerMessage` or `flush`) is a request for the next one.
   */
  syncPage?: number;
  /** "wasmexport" (default) or "funcof": the js.FuncOf bridge, ~9–18 µs per call where the default takes ~0.1; for measurements. */
  bridge?: "wasmexport" | "funcof";
}

/** Options of one local edit (crdt.Edit in crdt/apply.go). */
export interface EditOptions {
  /**
   * Consecutive edits with the same group form one undo step (a drag, a form), until it
   * holds more than limits.maxMessageBytes of values to restore: the next edit starts a
   * step (and the old one goes). A lone surrogate in it is a "bad_option" error.
   */
  group?: string;
  /**
   * The value before the edit, used by undo only where the engine never saw one. For an
   * upsert or a delete, the whole object before, or null for none (uMap's upsert(value,
   * null): its undo deletes the object); any other value is a "bad_value" error.
   */
  oldValue?: Value;
  /**
   * false keeps the edit out of the undo history (uMap's update(…, {undo: false}) of a
   * datalayer's _referenceVersion after a save; crdt.Edit.NoUndo): it makes no undo step
   * and joins none — in a batch it joins the batch's message, not its step — and leaves the
   * redo stack. An older step's undo or redo leaves a place it wrote since as written and
   * lists it in `skipped`, as a peer's write (a step that wrote the whole object, an
   * upsert or a delete, is then skipped whole). It is an edit to save like any other
   * (dirty() lists it). Default true; not a boolean: "bad_option".
   */
  undo?: boolean;
}

/** A general local edit (crdt.Edit in crdt/apply.go). */
export interface Edit extends EditOptions {
  verb: "update" | "upsert" | "delete";
  subject: Subject;
  metadata: Metadata;
  /** The key path of an update ("properties.name"; a literal dot is written "\."). */
  key?: string;
  /** The new value (update: absent unsets the key; upsert: the whole object, required: "bad_value"; delete: none). */
  value?: Value;
}

/**
 * What became visible (crdt.ChangeKind in crdt/changes.go). An update of an object never
 * upserted (it came from the saved map, or its upsert has not arrived yet) makes it alive
 * with an empty base (DESIGN §4): its first change is then "set" or "unset", with no
 * "created" before it — a view creates the object it lacks on any change.
 */
export type ChangeKind = "created" | "deleted" | "set" | "unset";

/**
 * One visible change to render (crdt.Change in crdt/changes.go; it crosses from the module
 * in the compact form of wasm/changes.go). Treat it as read-only: changes with equal
 * metadata share one metadata object, within a call and across calls and engines (the glue
 * keeps up to 4,096 metadata objects it built, and starts afresh when full), and that object is frozen; copy
 * one before changing it.
 */
export interface Change {
  kind: ChangeKind;
  subject: Subject;
  /** The object's metadata (canonical: members sorted). */
  metadata: { [key: string]: JSONValue };
  /** The key path for "set" and "unset" of one path; absent for the whole object. */
  key?: string;
  /** The new value ("created": the whole object; "set": the value at key, or the whole object). */
  value?: JSONValue;
  /** The clock of the first operation behind the change, "wall:counter:peer" ("0:0:", the zero clock, for seed()'s). */
  hlc: string;
}

/** A place an undo or redo left as another peer wrote it (crdt.Skipped in crdt/undo.go). */
export interface Skipped {
  subject: Subject;
  metadata: { [key: string]: JSONValue };
  /** The key path; "" for the whole object. */
  key: string;
}

/** What undo() and redo() did (crdt.UndoResult in crdt/undo.go). */
export interface UndoResult {
  /** False when there was nothing to undo (redo). */
  done: boolean;
  changes: Change[];
  skipped: Skipped[];
}

/** Where a change came from. Seeded base values count as "local". */
export type ChangeOrigin = "local" | "remote" | "undo" | "redo";

/** What onChange listeners get: the changes of one call. */
export interface ChangeEvent {
  origin: ChangeOrigin;
  changes: Change[];
  /** For undo and redo (always, [] when none): the places left as another peer wrote them. Absent for the other origins. */
  skipped?: Skipped[];
}

/** What onPeerMessage() returns (crdt.Result in crdt/sync.go). */
export interface PeerMessageResult {
  /** Messages to send now (sync requests and responses), JSON text. */
  replies: string[];
  /**
   * The visible changes. Without an onChange listener they are built when first read (an
   * own, enumerable property all the same): a caller that only forwards the replies of a
   * catch-up pays nothing for its thousands of changes.
   */
  changes: Change[];
}

/** What compact() dropped (crdt.CompactStats in crdt/compact.go). */
export interface CompactStats {
  /** Operations that left the log. */
  ops: number;
  /** Their size as wire JSON. */
  bytes: number;
  /** Operations the log still holds. */
  remaining: number;
}

/** An object with unsaved local edits (crdt.DirtyObject in crdt/sync.go). */
export interface DirtyObject {
  subject: Subject;
  metadata: { [key: string]: JSONValue };
}

/** The Go heap of the module (runtime.MemStats, wasm/dispatch.go), plus the wasm memory size. */
export interface MemoryStats {
  heapAlloc: number;
  heapInuse: number;
  heapSys: number;
  sys: number;
  /** Bytes allocated since the module started (never decreases). */
  totalAlloc: number;
  /** Allocations since the module started. */
  mallocs: number;
  numGC: number;
  /** Bytes of the module's linear memory (it never shrinks). */
  wasmMemory: number;
}

/** One replica of a map (crdt.Replica in crdt/replica.go). Every method is synchronous. */
export interface Engine {
  /** This replica's peer id. */
  readonly peerId: string;
  /** True after close(). */
  readonly closed: boolean;

  /**
   * Sets key of an object to value (an "update" operation; undefined is an error: use unset).
   * A key holding a lone surrogate is a "bad_key" error ("k\ud800" and "k\udbff" would be
   * one key); so it is in unset, edit and get.
   */
  update(subject: Subject, metadata: Metadata, key: string, value: Value, options?: EditOptions): void;
  /** Removes key from an object (an "update" operation without a value). */
  unset(subject: Subject, metadata: Metadata, key: string, options?: EditOptions): void;
  /** Replaces the whole object with value (an object) and makes it alive. */
  upsert(subject: Subject, metadata: Metadata, value: Value, options?: EditOptions): void;
  /** Makes the object absent. */
  delete(subject: Subject, metadata: Metadata, options?: EditOptions): void;
  /** Any local edit. */
  edit(edit: Edit): void;
  /**
   * Opens a batch: the edits until commitBatch are one operation, one message, one undo step,
   * with one clock taken at the first edit. A batch left open while peers' messages are
   * received (startBatch, an await, commitBatch) is sent in parts, one message each, in
   * order: the edits made after a receive are stamped after it. The parts are one undo step.
   * Throws "bad_state" if a batch is open already (batches do not nest).
   */
  startBatch(): void;
  /** Closes the batch and queues its message, none for an empty batch ("bad_state" if none is open). */
  commitBatch(): void;
  /** Whether a batch is open. */
  inBatch(): boolean;
  /**
   * Runs fn inside startBatch / commitBatch (committed even if fn throws) and returns its
   * result. Throws "bad_state", without calling fn, if a batch is open already. The batch is
   * committed when fn returns: an async fn's edits after its first await are outside it (use
   * startBatch / commitBatch around the awaits).
   */
  batch<T>(fn: (engine: Engine) => T): T;
  /** Sets the base value of an object: what the page loaded from the server (never sent, never undone). */
  seed(subject: Subject, metadata: Metadata, value: Value): void;

  /** The messages to send now, JSON text: replies queued by receive(), then the outbox. */
  flush(): string[];
  /** How many messages flush() would return at most. */
  pending(): number;
  /**
   * Takes one incoming message of any kind (OperationMessage, PeerMessage, SavedMessage,
   * JoinResponse, ListPeersResponse; {"kind":"pong"} and {"kind":"ping"} change nothing, but
   * the bare text "pong" uMap's server answers a bare "ping" with is not JSON:
   * "invalid_json"; another kind is "unknown_kind") and returns the visible changes. Replies it
   * produces wait for the next flush(): a sync request on a JoinResponse or a gap, a probe
   * (a one-way request) of each peer a ListPeersResponse adds, sync answers.
   */
  receive(message: MessageInput): Change[];
  /** Like receive(), but returns the replies instead of queuing them. */
  onPeerMessage(message: MessageInput): PeerMessageResult;
  /**
   * A ListOperationsRequest to recipient (default: a random known peer, never this one). Throws
   * "bad_option" for a recipient that is no valid peer id (as EngineOptions.peerId, but a
   * `:` is taken: a replica restored from an old snapshot may hold one), and "bad_state" when none is
   * given and no other peer is known (peers(): the relay's last peer list, or setPeers).
   */
  syncRequest(recipient?: string): string;

  /**
   * Reverts the latest local undo step with new operations (queued in the outbox). Throws
   * "bad_state" while a batch is open; with nothing to undo, returns done: false.
   */
  undo(): UndoResult;
  /** Re-applies what the latest undo reverted. Throws "bad_state" while a batch is open. */
  redo(): UndoResult;
  canUndo(): boolean;
  canRedo(): boolean;

  /** The visible value of an object (no key) or of one key path; undefined when absent. */
  get(subject: Subject, metadata: Metadata, key?: string): JSONValue | undefined;
  /**
   * Every alive object as canonical JSON text: an array of {subject, metadata, value}
   * sorted by subject and identity. Converged replicas give equal text. An object whose
   * value is {} is left out: it cannot be told apart from one never seen (DESIGN §4).
   */
  state(): string;
  /**
   * The replica's clock, "wall:counter:peer": at or after every clock it issued or received
   * (a received one moves it there, the HLC's receive rule); its next edit is stamped after it.
   */
  clock(): string;
  /** The version vector: peer → highest contiguous seq held. */
  vector(): Record<string, number>;
  /** The peers last announced by the relay (JoinResponse, ListPeersResponse) or setPeers. */
  peers(): string[];
  /**
   * Replaces the known peers (for transports that learn them otherwise); [] clears them. A
   * peer id that is not valid (empty among them) is a "bad_option" error, changing nothing.
   */
  setPeers(peers: string[]): void;

  /** Drops superseded operations from the log; the state does not change. */
  compact(): CompactStats;
  /**
   * The whole replica as bytes (a new Uint8Array each call), for createEngine({snapshot}); an
   * undo or redo step holding more than limits.maxMessageBytes of values to restore (a batch
   * deleting many features), undoable until then, is left out with the steps before it.
   * Throws "bad_state" while a batch is open, and "too_large" for a snapshot over 4 ×
   * limits.maxMessageBytes (what a restore takes).
   */
  snapshot(): Uint8Array;
  /**
   * Everything up to hlc is saved on the server. Throws "bad_hlc" for a malformed clock and
   * "clock_drift" for one further ahead than maxDrift (a save "in the future" would hide
   * the edits made until then), changing nothing.
   */
  markSaved(hlc: string): void;
  /** A SavedMessage announcing that everything this replica holds is saved (marks it saved too). */
  savedMessage(): string;
  /**
   * Objects with local edits newer than the saved horizon whose work is still visible (an edit
   * a peer's newer one superseded is that peer's to save), parents first.
   */
  dirty(): DirtyObject[];

  /**
   * Calls callback after every call that changed what is visible; returns the unsubscribe
   * function. Every listener gets the events in the order the engine made them: an edit a
   * listener makes while an event is delivered has its event delivered once that one has
   * reached every listener (after the listener's edit call has returned).
   */
  onChange(callback: (event: ChangeEvent) => void): () => void;
  /** The module's Go heap (shared by every engine), after a garbage collection if gc. */
  memory(gc?: boolean): MemoryStats;
  /**
   * Frees the engine. Every later call of a method throws "bad_state", before its arguments
   * are looked at; peerId and closed stay readable, onChange's unsubscribe functions stay
   * harmless, and closing twice does nothing.
   */
  close(): void;
}

/** Creates an engine; the first call loads the module. */
export function createEngine(options?: EngineOptions): Promise<Engine>;

/** Loads the module ahead of the first createEngine. */
export function initialize(options?: { wasmURL?: string | URL }): Promise<void>;

/** Merge policies (crdt.MergePolicy in crdt/merge.go). */
export type MergePolicy = "fail" | "latest" | "incoming";

/** One conflict of a merge (crdt.Conflict in crdt/merge.go). */
export interface MergeConflict {
  /**
   * The feature's id as text: a number id as JavaScript writes it (7 → "7"), a lone
   * surrogate of a string id as U+FFFD; "" for a layer-level conflict (features matched by
   * content, without an id or of an id several features share, never conflict).
   */
  featureId: string;
  /** The key path ("" for the whole feature). */
  key: string;
  /** The value in each document; absent where the place is absent. */
  reference?: JSONValue;
  latest?: JSONValue;
  incoming?: JSONValue;
}

/** The result of merge (crdt.MergeResult in crdt/merge.go). */
export interface MergeResult {
  /** The merged FeatureCollection, canonical JSON text. */
  document: string;
  /** Every conflict found (resolved in document under "latest" and "incoming"). */
  conflicts: MergeConflict[];
}

/**
 * A GeoJSON document argument: JSON text (a string or jsonText()), UTF-8 bytes (Uint8Array
 * or ArrayBuffer), or an object (written with JSON.stringify). A lone surrogate in a string
 * of the text, raw or escaped, is kept as JSON.parse reads it (as from an object).
 */
export type DocumentInput = string | JSONText | Uint8Array | ArrayBuffer | object;

/**
 * Three-way merge of two saves of a datalayer against their common reference (DESIGN §8).
 * Under policy "fail" (the default) a conflict throws a MapcrdtError of code "conflict"
 * whose `conflicts` lists them. The promise rejects too with "invalid_json" (a document that
 * is not JSON), "bad_value" (not a FeatureCollection, or an object JSON.stringify refuses),
 * "too_large" / "too_deep" (over 64 MiB together / 64 levels), "bad_option" (an unknown
 * option, a policy not listed, an offThread not boolean) and "internal" (the merge's worker
 * stopped).
 *
 * Documents of over 1 MiB together are merged in a worker (`merge-worker.js`, next to
 * index.js: a module Web Worker, or a Node worker thread), on its own instance of the module,
 * so that the event loop goes on (a merge takes 25–40 ms a MiB; the worker's start 40–60 ms,
 * and it stops 5 s after its last merge). Objects are written with JSON.stringify on the
 * calling thread first. Where no worker can start (no Worker, a page's policy, a bundle
 * without merge-worker.js), every merge runs on the calling thread.
 */
export function merge(
  reference: DocumentInput,
  latest: DocumentInput,
  incoming: DocumentInput,
  options?: MergeOptions,
): Promise<MergeResult>;

/** The options of merge. */
export interface MergeOptions {
  /** "fail" (the default), "latest" or "incoming". */
  policy?: MergePolicy;
  /** The module's URL (as createEngine's): the worker loads it from there too. */
  wasmURL?: string | URL;
  /**
   * true: merge in a worker whatever the size; false: on the calling thread, blocking it for
   * the merge's time. Unset: in a worker for documents of over 1 MiB together.
   */
  offThread?: boolean;
}

/** @internal Raw access to the module's call table, for tests and measurements. Unstable. */
export function _rawBridge(options?: { wasmURL?: string | URL }): Promise<{
  methods: Record<string, number>;
  call(method: number, handle: number, flags: number, args: (string | Uint8Array)[], bytes?: boolean): string | Uint8Array;
  callFuncOf(method: number, handle: number, flags: number, args: (string | Uint8Array)[]): string | Uint8Array;
  exports: WebAssembly.Exports;
  /** The module's table of changes' objects the glue keeps: [subject0, metadata0, …]. */
  objects: unknown[];
}>;
