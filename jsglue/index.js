// mapcrdt — the JavaScript API of the engine (DESIGN §10).
//
// An ES module for browsers and Node ≥ 20, no bundler needed. It loads Go's own
// wasm_exec.js and mapcrdt.wasm (both next to this file after `make build`) once per page,
// and gives engines: `const engine = await createEngine({peerId})`.
//
// Conventions (index.d.ts has the types):
// - Values and metadata are JavaScript values, written with JSON.stringify (one call per
//   argument). Already-serialized JSON text can be passed as `jsonText(text)`.
// - Messages are JSON text: flush(), syncRequest(), savedMessage() and the replies of
//   onPeerMessage() are strings, ready for WebSocket.send; receive() and onPeerMessage()
//   take a string (or a parsed object, or UTF-8 bytes).
// - Every call is synchronous; errors are thrown as MapcrdtError (an Error) whose `code` is
//   the stable code of DESIGN §9 ("invalid_json", "clock_drift", "bad_option", …).
//
// The bridge: the module exports //go:wasmexport functions over buffers owned by Go (see
// wasm/doc.go). Arguments are written as UTF-8 into the input buffer, their lengths into a
// uint32 array, and the result is read from the output buffer. Go may grow the memory in a
// call, which detaches the views of the old buffer: a view of length 0 is made again
// (reading memory.buffer on each call cost ~10 ns a time, a view's length ~1 ns). The
// slower js.FuncOf bridge of the same module (`bridge: "funcof"`) is kept for measurements.

const RS = "\x1e"; // separates the messages of a list result (never in valid JSON text)
const US = "\x1f"; // separates the objects of compact changes (never in valid JSON text)
const FLAG_CHANGES = 1;
const FLAG_GC = 2;
const FLAG_STEPWISE = 4;
const PROTOCOL = "1";

/** An error from the engine or the glue; `code` is the stable code of DESIGN §9. */
export class MapcrdtError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = "MapcrdtError";
    this.code = code;
  }
}

function fail(code, message) {
  return new MapcrdtError(code, message);
}

function closed() {
  return fail("bad_state", "the engine is closed");
}

/** JSON text passed as it is, where the API otherwise takes a JavaScript value. */
export class JSONText {
  /** @param {string} text */
  constructor(text) {
    if (typeof text !== "string") throw fail("invalid_json", "jsonText() takes a string");
    this.text = text;
  }
  toString() {
    return this.text;
  }
}

/** Marks text as JSON, to pass where a value or metadata is expected. */
export function jsonText(text) {
  return new JSONText(text);
}

// ------------------------------------------------------------------ loading the module

const isNode =
  typeof process !== "undefined" && process.versions != null && typeof process.versions.node === "string";

/** @type {Promise<Bridge> | null} */
let loading = null;
let loadedFrom = "";

function defaultWasmURL() {
  return new URL("./mapcrdt.wasm", import.meta.url);
}

function toURL(u) {
  if (u instanceof URL) return u;
  if (typeof u !== "string" || u === "") throw fail("bad_option", "wasmURL must be a URL or a non-empty string");
  if (isNode && !/^[a-z][a-z0-9+.-]*:/i.test(u)) {
    // A file path in Node.
    return new URL(u, "file://" + process.cwd().replace(/\\/g, "/") + "/");
  }
  return new URL(u, globalThis.location ? globalThis.location.href : import.meta.url);
}

async function loadGoRuntime() {
  if (typeof globalThis.Go !== "function") {
    await import(new URL("./wasm_exec.js", import.meta.url).href);
  }
  if (typeof globalThis.Go !== "function") {
    throw fail("internal", "wasm_exec.js did not define globalThis.Go (run `make build`, which copies it next to index.js)");
  }
}

async function instantiate(url, importObject) {
  if (isNode && url.protocol === "file:") {
    const { readFile } = await import("node:fs/promises");
    return WebAssembly.instantiate(await readFile(url), importObject);
  }
  const response = await fetch(url);
  if (!response.ok) throw fail("internal", `fetching ${url.href}: HTTP ${response.status}`);
  if (WebAssembly.instantiateStreaming && /application\/wasm/.test(response.headers.get("content-type") || "")) {
    return WebAssembly.instantiateStreaming(response, importObject);
  }
  return WebAssembly.instantiate(await response.arrayBuffer(), importObject);
}

async function load(wasmURL) {
  const url = wasmURL === undefined ? defaultWasmURL() : toURL(wasmURL);
  if (loading) {
    if (wasmURL !== undefined && url.href !== loadedFrom) {
      throw fail("bad_option", `the module is already loaded from ${loadedFrom}; wasmURL ${url.href} differs`);
    }
    return loading;
  }
  loadedFrom = url.href;
  loading = (async () => {
    await loadGoRuntime();
    const go = new globalThis.Go();
    const { instance } = await instantiate(url, go.importObject);
    const previous = globalThis.__mapcrdt;
    delete globalThis.__mapcrdt;
    go.run(instance); // runs main until it blocks: installs globalThis.__mapcrdt; never resolves
    const factory = globalThis.__mapcrdt;
    if (previous !== undefined) globalThis.__mapcrdt = previous;
    if (!factory || factory.version !== PROTOCOL) {
      throw fail("internal", `${url.href} is not a mapcrdt module of protocol ${PROTOCOL}`);
    }
    const bridge = new Bridge(go, instance, factory);
    bridge.onCrash = () => {
      // The next createEngine loads a fresh instance; the engines of this one stay dead.
      if (loading === pending) {
        loading = null;
        loadedFrom = "";
      }
    };
    return bridge;
  })();
  const pending = loading;
  try {
    return await loading;
  } catch (e) {
    loading = null; // a failed load may be retried
    loadedFrom = "";
    throw e;
  }
}

// ------------------------------------------------------------------ the bridge

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// Text shorter than this (in UTF-16 units) is written by JavaScript (writeSmall), longer
// text by TextEncoder.encodeInto. Node's encodeInto is a native fast path (~40 ns for 86
// ASCII units, against ~120 for the loop); a browser's goes through its bindings: in
// Chromium 156 a call costs ~290 ns whatever the length, ~550 with a view made for it, and
// the loop is cheaper up to ~250 units (~380 ns at 290 for either). Measured on W1's
// arguments (the metadata's 86 units, a description's 78 with "café, Straße, 東京").
const shortText = isNode ? 48 : 256;

/**
 * Writes s from unit i on as UTF-8 into u8 at off, as TextEncoder does (a lone surrogate as
 * U+FFFD); returns the offset after the last byte. u8 must hold 3 bytes per unit left.
 */
function writeUTF8(s, i, u8, off) {
  const len = s.length;
  for (; i < len; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      u8[off++] = c;
    } else if (c < 0x800) {
      u8[off++] = 0xc0 | (c >> 6);
      u8[off++] = 0x80 | (c & 0x3f);
    } else {
      if ((c & 0xf800) === 0xd800) {
        const d = i + 1 < len ? s.charCodeAt(i + 1) : 0;
        if (c < 0xdc00 && (d & 0xfc00) === 0xdc00) {
          c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          u8[off++] = 0xf0 | (c >> 18);
          u8[off++] = 0x80 | ((c >> 12) & 0x3f);
          u8[off++] = 0x80 | ((c >> 6) & 0x3f);
          u8[off++] = 0x80 | (c & 0x3f);
          i++;
          continue;
        }
        c = 0xfffd; // a lone surrogate
      }
      u8[off++] = 0xe0 | (c >> 12);
      u8[off++] = 0x80 | ((c >> 6) & 0x3f);
      u8[off++] = 0x80 | (c & 0x3f);
    }
  }
  return off;
}

class Bridge {
  constructor(go, instance, factory) {
    this.go = go;
    this.ex = instance.exports;
    this.memory = this.ex.mem;
    this.factory = factory;
    this.crashed = "";
    this.onCrash = () => {};
    // The Go program ends on a fatal error (out of memory, say) inside the export call that
    // hit it, which then returns to JavaScript as if it had finished: mapcrdt_in with the
    // address of no buffer, mapcrdt_call with whatever the memory held as its result. Go
    // tells of its end through go.exit: the module is marked crashed there, and the error
    // thrown leaves that call, so nothing reads what it left.
    const exit = go.exit;
    go.exit = (code) => {
      exit.call(go, code);
      if (!this.crashed) this.crashed = `the Go program exited (code ${code})`;
      this.onCrash();
      throw fail("internal", "the mapcrdt module crashed: " + this.crashed);
    };
    /** @type {Record<string, number>} */
    this.m = Object.create(null);
    factory.methods.forEach((name, i) => {
      this.m[name] = i;
    });
    this.lens = this.ex.mapcrdt_lens() >>> 2;
    /**
     * The objects of changes the module sent, [subject0, metadata0, …] (parseChanges); a
     * metadata object is kept as its text until a change names it (metadataAt).
     */
    this.objs = [];
    this.inPtr = this.ex.mapcrdt_in(0) >>> 0;
    this.inCap = 64 << 10;
    this.outPtr = 0; // the last result's address (invoke)
    this.refresh();
  }

  refresh() {
    this.buf = this.memory.buffer;
    this.u8 = new Uint8Array(this.buf);
    this.u32 = new Uint32Array(this.buf);
    this.inView = this.u8.subarray(this.inPtr, this.inPtr + this.inCap);
  }

  /**
   * Sets the input buffer Go gave (address, size) and the views of it. The address comes as
   * wasm's signed i32: negative past 2 GiB of memory, so it is read as unsigned.
   */
  setIn(ptr, cap) {
    ptr >>>= 0;
    this.inPtr = ptr;
    this.inCap = cap;
    if (this.u8.length === 0) this.refresh(); // mapcrdt_in may have grown the memory
    else this.inView = this.u8.subarray(ptr, ptr + cap);
  }

  alive() {
    if (this.go.exited || this.crashed) {
      throw fail("internal", `the mapcrdt module has ${this.crashed ? "crashed (" + this.crashed + ")" : "exited"}; reload the page (a bug: please report it)`);
    }
  }

  /**
   * Calls method through the wasmexport bridge. args are strings or Uint8Arrays. Returns
   * the result as a string, or as bytes (a copy) when bytes is true.
   */
  call(method, handle, flags, now, args, bytes) {
    const r = this.invoke(method, handle, flags, now, args);
    const p = this.outPtr;
    return bytes ? this.u8.slice(p, p + r) : decode(this.u8, p, r);
  }

  /**
   * Calls method and leaves its result in the module's memory: r bytes at this.outPtr
   * (this.u8), valid until the next call. An error is thrown.
   */
  invoke(method, handle, flags, now, args) {
    this.alive();
    const n = args.length;
    if (n > 16) throw fail("internal", `${n} arguments, more than the bridge takes (16)`);
    let need = 0;
    for (let i = 0; i < n; i++) {
      const a = args[i];
      need += typeof a === "string" ? a.length * 3 : byteLength(a);
    }
    if (need > this.inCap) {
      this.writeLarge(args, need);
    } else {
      this.writeSmall(args);
    }
    this.u32[this.lens + 17] = this.objs.length >>> 1; // the objects word (wasm/main_wasm.go)
    let r;
    try {
      r = this.ex.mapcrdt_call(method, handle, flags, n, now);
      if (this.u8.length === 0) this.refresh();
      if (this.u32[this.lens + 16] !== 0) {
        // The call left a garbage collection marking: let Go's scheduler finish it now (see
        // writeBarrier in wasm/main_wasm.go).
        this.factory.idle();
      }
    } catch (e) {
      // A trap (the Go runtime aborting: out of memory, a fatal error) leaves the module in
      // no state to continue; every later call reports it.
      if (!this.crashed) this.crashed = String(e && e.message);
      this.onCrash();
      throw fail("internal", "the mapcrdt module crashed: " + this.crashed);
    }
    if (this.inCap > 256 << 10) {
      // Give a large input buffer back (Go replaces it by a small one).
      this.setIn(this.ex.mapcrdt_in(0), 64 << 10);
    }
    if (this.u8.length === 0) this.refresh();
    const p = this.u32[this.lens + 18]; // the result's address (outWord in wasm/main_wasm.go)
    if (r < 0) throw errorFrom(decode(this.u8, p, -r - 1));
    this.outPtr = p;
    return r;
  }

  /** Writes arguments that fit the input buffer at 3 bytes per UTF-16 unit. */
  writeSmall(args) {
    if (this.u8.length === 0) this.refresh();
    const u8 = this.u8;
    let off = this.inPtr;
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      let w = 0;
      if (typeof a === "string") {
        const len = a.length;
        if (len < shortText) {
          // Short text: copy ASCII directly, which is cheaper than a subarray + encodeInto;
          // from the first other unit on, writeUTF8 goes on (no slice, no view to make).
          for (; w < len; w++) {
            const c = a.charCodeAt(w);
            if (c > 0x7f) break;
            u8[off + w] = c;
          }
          if (w < len) w = writeUTF8(a, w, u8, off + w) - off;
        } else {
          // The first argument (a message, say) goes into a view kept of the input buffer: a
          // view made for each call cost ~22 ns.
          const to = off === this.inPtr ? this.inView : u8.subarray(off, this.inPtr + this.inCap);
          w = encoder.encodeInto(a, to).written;
        }
      } else {
        // A view of a detached buffer (transferred away) has no bytes, and set() would throw.
        w = byteLength(a);
        if (w > 0) u8.set(a, off);
      }
      this.u32[this.lens + i] = w;
      off += w;
    }
  }

  /**
   * Writes arguments too large for the input buffer. It grows to their length in UTF-16
   * units and a sixteenth first: a large message (a catch-up, a snapshot's JSON) is ASCII
   * but for a few values, and the 3 bytes per unit that always fit (need) would make Go
   * allocate, and the wasm memory keep, three times the message. An argument that does not
   * fit — text longer in UTF-8 than in units, or bytes after such text — is never written
   * past the buffer's end: the arguments are written again into a buffer sized by what was
   * written and what is left (3 bytes per unit only for text not yet written), then, should
   * that not do, into one of need bytes, where everything fits.
   */
  writeLarge(args, need) {
    let units = 0;
    for (const a of args) units += typeof a === "string" ? a.length : byteLength(a);
    let size = Math.max(units + (units >>> 4), this.inCap); // Go keeps at least inCap
    for (let pass = 0; ; pass++) {
      this.setIn(this.ex.mapcrdt_in(size), size);
      const end = this.inPtr + size;
      let off = this.inPtr;
      let left = need; // what the arguments not written yet may take
      let i = 0;
      for (; i < args.length; i++) {
        const a = args[i];
        let w;
        let more = 0; // if the argument does not fit: what it takes from off
        if (typeof a === "string") {
          left -= 3 * a.length;
          const r = encoder.encodeInto(a, this.u8.subarray(off, end));
          w = r.written;
          if (r.read < a.length) more = w + 3 * (a.length - r.read);
        } else {
          w = byteLength(a);
          left -= w;
          if (w > end - off) more = w;
          else if (w > 0) this.u8.set(a, off);
        }
        if (more > 0) {
          if (pass === 2) throw fail("internal", "the arguments take more than 3 bytes per UTF-16 unit");
          size = pass === 1 ? need : Math.min(need, off - this.inPtr + more + left);
          break;
        }
        this.u32[this.lens + i] = w;
        off += w;
      }
      if (i === args.length) return;
    }
  }

  /** The same call through the js.FuncOf bridge (about 7 µs more per call). */
  callFuncOf(method, handle, flags, now, args, bytes) {
    this.alive();
    if (this.u8.length === 0) this.refresh();
    this.u32[this.lens + 17] = this.objs.length >>> 1;
    const [ok, result] = this.factory.call(method, handle, flags, now, ...args);
    if (!ok) throw errorFrom(result);
    return result;
  }
}

// Byte arguments are recognised and measured by the typed array's internal slots, through
// the getters of %TypedArray%.prototype, never by what the object says: a byteLength defined
// on the object, or a Proxy's, could say less than set() writes — past the input buffer,
// into Go's heap. The getter of the length throws for anything but a typed array, before
// anything is written.
const typedArrayProto = Object.getPrototypeOf(Uint8Array.prototype);
const typedArrayLength = Object.getOwnPropertyDescriptor(typedArrayProto, "byteLength").get;
const typedArrayName = Object.getOwnPropertyDescriptor(typedArrayProto, Symbol.toStringTag).get;
const apply = Reflect.apply;

// The arguments of a call that takes none (flush, pending, canUndo…, and the getters
// above): one array for all.
const noArgs = Object.freeze([]);

function byteLength(a) {
  return apply(typedArrayLength, a, noArgs);
}

/** Whether v is a Uint8Array (of any realm: a Node Buffer too), not an object posing as one. */
function isBytes(v) {
  return apply(typedArrayName, v, noArgs) === "Uint8Array";
}

function decode(u8, p, n) {
  if (n === 0) return "";
  if (n < 64) {
    let s = "";
    for (let i = p; i < p + n; i++) {
      const c = u8[i];
      if (c > 0x7f) return decoder.decode(u8.subarray(p, p + n));
      s += String.fromCharCode(c);
    }
    return s;
  }
  return decoder.decode(u8.subarray(p, p + n));
}

function errorFrom(text) {
  let e;
  try {
    e = JSON.parse(text);
  } catch {
    return fail("internal", "unreadable error from the module: " + text);
  }
  const err = fail(e.code, e.message);
  if (e.conflicts) err.conflicts = e.conflicts;
  return err;
}

// ------------------------------------------------------------------ arguments

function json(v, code, what) {
  // A number, a boolean or null is written as JSON.stringify writes it (a finite number as
  // String does, any other as null), without its call: ~10–20 ns against ~150–200 for a
  // small integer in Node 20, where JSON.stringify's setup is most of the cost.
  const t = typeof v;
  if (t === "number") return Number.isFinite(v) ? String(v) : "null";
  if (t === "boolean") return v ? "true" : "false";
  if (v === null) return "null";
  if (t === "string" && v.length < 64) {
    // A short string of printable ASCII without '"' or '\\' is written as it is, quoted:
    // what JSON.stringify writes, in half its time (~24 ns against ~47).
    let i = 0;
    for (; i < v.length; i++) {
      const c = v.charCodeAt(i);
      if (c < 0x20 || c === 0x22 || c === 0x5c || c > 0x7e) break;
    }
    if (i === v.length) return '"' + v + '"';
  }
  if (v instanceof JSONText) {
    // "" is how the bridge says "no value" (an unset): as a value it is no JSON at all.
    if (v.text === "") throw fail("invalid_json", `${what} is an empty JSON text`);
    return v.text;
  }
  let s;
  try {
    s = JSON.stringify(v);
  } catch (e) {
    throw fail(code, `${what} cannot be written as JSON: ${describe(e)}`);
  }
  if (s === undefined) throw fail(code, `${what} cannot be written as JSON (${typeof v})`);
  return s;
}

// The JSON texts of the last 4,096 metadata objects written for the module, by their id:
// a feature's metadata is written on every edit of it, and JSON.stringify of a small
// object costs ~10× what checking it against the text written last time does. A hit
// needs the same own keys, in the same order, each with the same (===) value, and no
// toJSON. Only plain objects (of prototype Object.prototype or null) whose values are all
// strings, finite numbers, booleans or null are kept, and an entry's text is written from
// the values it keeps, read once each (what JSON.stringify writes of such an object): an
// array, a boxed primitive or a class instance with the same keys and values has other
// JSON ("[]" for an array with an id), and a getter may answer differently at each read —
// kept, either would give its text to the next plain object of those keys and values. The
// check is by content, so a new object with the same fields (how uMap builds metadata)
// hits, and a changed one misses. Cleared when full.
const metadataTexts = new Map();
const METADATA_TEXTS_SIZE = 4096;
let lastKeys = [];
let lastPrefixes = [];

// metadataJSON is metadataText with whatever the object's own code throws (a getter, a
// Proxy's trap) turned into a bad_metadata error, as json() does for JSON.stringify.
function metadataJSON(m) {
  try {
    const t = metadataText(m);
    return typeof t === "string" ? t : t.text;
  } catch (e) {
    if (e instanceof MapcrdtError) throw e;
    throw fail("bad_metadata", `metadata cannot be read: ${describe(e)}`);
  }
}

// metadataArg is metadataJSON for an edit's argument: a text the cache keeps goes as its
// UTF-8 bytes, encoded once per entry and written into the module's memory with one copy,
// where the text was encoded on every edit (~50 ns in Node, through a view of the input
// buffer made for it; ~90 ns or more in a browser, whose glue writes it unit by unit).
function metadataArg(m) {
  try {
    const t = metadataText(m);
    if (typeof t === "string") return t;
    if (t.bytes === null) t.bytes = encoder.encode(t.text);
    return t.bytes;
  } catch (e) {
    if (e instanceof MapcrdtError) throw e;
    throw fail("bad_metadata", `metadata cannot be read: ${describe(e)}`);
  }
}

// metadataText returns the metadata's JSON text, or the cache's entry holding it.
function metadataText(m) {
  if (m === null || typeof m !== "object" || m instanceof JSONText) return metadataJSONText(m);
  const id = m.id;
  if (typeof id !== "string" || typeof m.toJSON === "function") return metadataJSONText(m);
  const proto = Object.getPrototypeOf(m);
  if (proto !== Object.prototype && proto !== null) return metadataJSONText(m);
  const e = metadataTexts.get(id);
  if (e !== undefined) {
    // for-in walks the own keys in Object.keys' order without making its array (~30 ns an
    // edit); the prototype is Object.prototype or null, so a key for-in meets beyond them
    // (an enumerable member given to Object.prototype) is one no entry has: a miss, as is
    // a key more (ks[n] is undefined) or less (i < n at the end).
    const ks = e.keys;
    const vs = e.values;
    const n = ks.length;
    let i = 0;
    for (const k in m) {
      if (k !== ks[i] || m[k] !== vs[i]) {
        i = -1;
        break;
      }
      i++;
    }
    if (i === n) return e;
  }
  let keys = Object.keys(m);
  const n = keys.length;
  const values = new Array(n);
  for (let i = 0; i < n; i++) {
    const v = m[keys[i]];
    const t = typeof v;
    if (!(t === "string" || t === "boolean" || v === null || (t === "number" && Number.isFinite(v)))) {
      return metadataJSONText(m); // a nested value: written whole, never kept
    }
    if (t === "string" && !wellFormed(v)) throw fail("bad_metadata", `metadata ${JSON.stringify(keys[i])}: ${JSON.stringify(v)} ${loneSurrogate}`);
    values[i] = v;
  }
  // Metadata objects mostly share one list of keys: keep one array for all of them, and
  // the text before each value ('{"id":', ',"layerId":' …), written (and its names
  // checked) once per list.
  if (sameKeys(lastKeys, keys)) keys = lastKeys;
  else {
    for (const k of keys) if (!wellFormed(k)) throw fail("bad_metadata", `metadata member name ${JSON.stringify(k)} ${loneSurrogate}`);
    lastKeys = keys;
    lastPrefixes = keys.map((k, i) => (i === 0 ? "{" : ",") + json(k, "bad_metadata", "metadata") + ":");
  }
  let text = n === 0 ? "{" : "";
  for (let i = 0; i < n; i++) {
    const v = values[i];
    text += lastPrefixes[i] + (typeof v === "string" ? json(v, "bad_metadata", "metadata") : String(v));
  }
  text += "}";
  if (metadataTexts.size >= METADATA_TEXTS_SIZE) metadataTexts.clear();
  const entry = { keys, values, text, bytes: null };
  metadataTexts.set(id, entry);
  return entry;
}

// metadataJSONText is the JSON text of metadata the cache does not keep (JSON.stringify's,
// or a JSONText's own), refused if any of its strings holds a lone surrogate.
function metadataJSONText(m) {
  const text = json(m, "bad_metadata", "metadata");
  if (!wellFormedJSON(text)) throw fail("bad_metadata", `metadata ${text} ${loneSurrogate}`);
  return text;
}

function sameKeys(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// describe is what a caught exception says: its message, or the thrown value itself
// (code may throw anything, not only Errors).
function describe(e) {
  if (e instanceof Error) return e.message;
  try {
    return String(e);
  } catch {
    return typeof e;
  }
}

// show writes any value into an error message: JSON for what JSON.stringify takes, else its
// type. It never throws — JSON.stringify throws on a BigInt or a cycle, String() on an object
// without a prototype, and a toJSON or getter may throw anything — so a bad option is a
// bad_option error, not a TypeError from its message.
function show(v) {
  if (typeof v === "bigint") return `${v}n`;
  if (typeof v === "symbol" || typeof v === "function") return `a ${typeof v}`;
  try {
    const s = JSON.stringify(v);
    if (s !== undefined) return s.length > 80 ? s.slice(0, 80) + "…" : s;
  } catch {
    // a cycle, a BigInt inside, a throwing toJSON or getter
  }
  return v === null ? "null" : `a value of type ${typeof v}`;
}

function str(v, code, what) {
  if (typeof v !== "string") throw fail(code, `${what} must be a string, got ${typeof v}`);
  return v;
}

// wellFormed says whether a string holds no lone surrogate (U+D800–U+DFFF out of a pair).
// TextEncoder writes each one as U+FFFD, and so does Go's JSON reader for an escaped one
// (\ud800): "g\ud800" and "g\udc00" would name one object, "k\ud800" and "k\udbff" one key.
// String.prototype.isWellFormed is in Node 20 and browsers since 2023; the pattern is for
// older ones (without lookbehind, which older Safari lacks).
const wellFormed =
  typeof String.prototype.isWellFormed === "function"
    ? (s) => s.isWellFormed()
    : (s) => !/[\ud800-\udbff](?![\udc00-\udfff])|(?:^|[^\ud800-\udbff])[\udc00-\udfff]/.test(s);

const loneSurrogate = "holds a lone surrogate (U+D800–U+DFFF out of a pair), which would reach the module as U+FFFD";

/** An undo group (EditOptions.group): a well-formed string, or two groups would be one. */
function groupArg(group) {
  if (!wellFormed(str(group, "bad_option", "group"))) throw fail("bad_option", `group ${JSON.stringify(group)} ${loneSurrogate}`);
  return group;
}

/** A key path argument: a well-formed string. */
function keyArg(key) {
  if (!wellFormed(str(key, "bad_key", "key"))) throw fail("bad_key", `key ${JSON.stringify(key)} ${loneSurrogate}`);
  return key;
}

// wellFormedJSON says whether every string of a JSON text, member names included, is
// well-formed as JSON.parse reads it: raw, or escaped (JSON.stringify writes a lone
// surrogate as \udXXX). Text that is no JSON passes: the module says what is wrong with it.
function wellFormedJSON(text) {
  if (!wellFormed(text)) return false;
  if (text.indexOf("\\u") < 0) return true;
  try {
    return wellFormedValue(JSON.parse(text));
  } catch {
    return true; // no JSON, or nested past the stack: the module refuses it
  }
}

function wellFormedValue(v) {
  if (typeof v === "string") return wellFormed(v);
  if (v === null || typeof v !== "object") return true;
  for (const k in v) if (!wellFormed(k) || !wellFormedValue(v[k])) return false;
  return true;
}

// bytesOf views an ArrayBuffer. A detached one (transferred to a worker, say) has no bytes
// left, and a view of it cannot be made: the module is then given none, and refuses them.
function bytesOf(buffer) {
  return buffer.byteLength === 0 ? new Uint8Array(0) : new Uint8Array(buffer);
}

function messageArg(m) {
  if (typeof m === "string" || isBytes(m)) return m;
  if (m instanceof ArrayBuffer) return bytesOf(m);
  if (m instanceof JSONText) return m.text;
  if (typeof Blob === "function" && m instanceof Blob) {
    // A WebSocket's binary frame with its default binaryType: no bytes to read synchronously
    // (JSON.stringify would write "{}", refused as a message of no kind).
    throw fail("bad_message", 'a Blob cannot be read synchronously: pass its text or bytes (a WebSocket\'s binaryType "arraybuffer" gives ArrayBuffers)');
  }
  if (m !== null && typeof m === "object") return json(m, "bad_message", "the message");
  throw fail("bad_message", `a message is JSON text, an object or UTF-8 bytes, not ${m === null ? "null" : typeof m}`);
}

// The kinds of change by their code in the module's compact form (wasm/changes.go).
const KINDS = ["set", "unset", "created", "deleted"];

// Metadata objects by their text, shared by every engine: building a metadata object is
// half of what JSON.parse spends on one received change, and a map's changes name the same
// few thousand objects again and again (a new engine's catch-up too). Cleared when full.
// The objects are shared: index.d.ts says changes are read-only.
const metadataCache = new Map();
const METADATA_CACHE_SIZE = 4096;

function deepFreeze(v) {
  if (v !== null && typeof v === "object") {
    for (const k in v) deepFreeze(v[k]);
    Object.freeze(v);
  }
  return v;
}

function metadataOf(text) {
  let m = metadataCache.get(text);
  if (m === undefined) {
    // Frozen: it is shared by every change naming the object, in every engine, so a
    // caller writing into one (index.d.ts says read-only) would change what later changes
    // say; frozen, the write throws (in a module's strict mode) or does nothing.
    m = deepFreeze(JSON.parse(text));
    if (metadataCache.size >= METADATA_CACHE_SIZE) metadataCache.clear();
    // The key as a string of its own: text is a slice of the whole result, which a
    // slice would keep alive (V8 flattens the concatenation before taking the substring).
    metadataCache.set((" " + text).substring(1), m);
  }
  return m;
}

// parseChanges turns the module's compact changes — [code, obj, key?, value?, hlc, …],
// then, if the call met objects new to the bridge's table objs ([subject0, metadata0, …]),
// US base US subject US metadata … (wasm/changes.go) — into the Change objects of
// index.d.ts: the new objects go into the table at once (takeObjects, addObjects), the
// Change objects are built by expandChanges — which may wait (see lazyChanges).
function parseChanges(text, bridge) {
  if (text === "") return [];
  if (text.length < 256) {
    const one = parseOne(text, bridge.objs); // null for a text with new objects
    if (one !== null) return one;
  }
  return expandChanges(takeObjects(text, bridge), bridge.objs);
}

// takeObjects adds the call's new objects to the bridge's table and returns the changes'
// array text.
function takeObjects(text, bridge) {
  const u = text.indexOf(US);
  if (u < 0) return text;
  addObjects(text.slice(u + 1), bridge);
  return text.slice(0, u);
}

// addObjects adds the objects of defs (base US subject US metadata …) to the bridge's
// table, cut to base objects first — as a new array, never in place: a result whose
// changes are expanded later (lazyChanges) keeps the array of its call, where later calls
// only ever append.
function addObjects(defsText, bridge) {
  const defs = defsText.split(US);
  const base = 2 * Number(defs[0]);
  if (base < bridge.objs.length) bridge.objs = bridge.objs.slice(0, base);
  const objs = bridge.objs;
  for (let k = 1; k < defs.length; k += 2) objs.push(defs[k], defs[k + 1]); // metadata as text: see metadataAt
}

// metadataAt returns the metadata object of the table's object at o (its subject's index):
// the table keeps a new object's metadata as its JSON text until a change names it — a
// catch-up's answer defines thousands of objects whose changes may never be read.
function metadataAt(objs, o) {
  const m = objs[o + 1];
  if (typeof m !== "string") return m;
  return (objs[o + 1] = metadataOf(m));
}

// expandChanges builds the Change objects of the array text, whose objects objs holds.
function expandChanges(text, objs) {
  const a = JSON.parse(text);
  const out = [];
  for (let i = 0; i < a.length; ) {
    const code = a[i];
    const o = 2 * a[i + 1];
    const c = { kind: KINDS[code >> 2], subject: objs[o], metadata: metadataAt(objs, o) };
    i += 2;
    if (code & 2) c.key = a[i++];
    if (code & 1) c.value = a[i++];
    c.hlc = a[i++];
    out.push(c);
  }
  return out;
}

// lazyChanges sets result.changes to the changes whose array is the UTF-8 bytes of
// arrayBytes (a copy), built when first read: a catch-up's thousands of Change objects cost
// ~15% of applying it (W2 9.6 → 8.2 ms) and decoding their text ~5% more, and a caller that
// only forwards the replies never reads them. objs is the table the array's objects are in
// (see addObjects). The property is an own, enumerable one (JSON.stringify, spreading and
// destructuring see it), replaced by the array on first read or write.
function lazyChanges(result, arrayBytes, objs) {
  const settle = (v) => {
    Object.defineProperty(result, "changes", { value: v, writable: true, enumerable: true, configurable: true });
    return v;
  };
  Object.defineProperty(result, "changes", {
    get: () => settle(expandChanges(decoder.decode(arrayBytes), objs)),
    set: settle,
    enumerable: true,
    configurable: true,
  });
  return result;
}

// parseOne reads the usual result of a received edit, one change — [code,obj,"key"?,
// value?,"hlc"], its object already in the table — without JSON.parse of the whole and the
// array it builds (~60 ns against ~170 for a string value; an object value is parsed
// alone). Anything else (a backslash anywhere, a new object, several changes) returns
// null, for the general way: each check below fails on it.
function parseOne(text, objs) {
  const n = text.length;
  if (text.charCodeAt(n - 1) !== 93 || text.charCodeAt(n - 2) !== 34 || text.indexOf("\\") >= 0) return null;
  let i = 1;
  let code = 0;
  let c;
  while ((c = text.charCodeAt(i++)) !== 44) {
    if (!(c >= 48 && c <= 57) || i > 3) return null; // (NaN past the end fails too)
    code = code * 10 + c - 48;
  }
  let o = 0;
  while ((c = text.charCodeAt(i++)) !== 44) {
    if (!(c >= 48 && c <= 57)) return null;
    o = o * 10 + c - 48;
  }
  const h = text.lastIndexOf('"', n - 3); // the clock's opening quote: a clock holds none
  const ch = { kind: KINDS[code >> 2], subject: objs[2 * o], metadata: metadataAt(objs, 2 * o) };
  if (code & 2) {
    if (text.charCodeAt(i) !== 34) return null;
    const k = text.indexOf('"', i + 1);
    ch.key = text.slice(i + 1, k);
    i = k + 2;
  }
  if (code & 1) {
    if (i >= h - 1) return null;
    const v = text.slice(i, h - 1); // up to the comma before the clock
    const v0 = v.charCodeAt(0);
    if (v0 === 34) {
      if (v.indexOf('"', 1) !== v.length - 1) return null; // not one string: several changes
      ch.value = v.slice(1, -1);
    } else if (v0 === 123 || v0 === 91) {
      // An object or array — or several changes: then a clock's closing quote, a comma and
      // the next change's code. Any '",' before a digit sends the text the general way.
      for (let q = v.indexOf('",'); q >= 0; q = v.indexOf('",', q + 2)) {
        const d = v.charCodeAt(q + 2);
        if (d >= 48 && d <= 57) return null;
      }
      ch.value = JSON.parse(v);
    } else if (v.indexOf(",") >= 0) {
      return null; // several changes
    } else {
      ch.value = JSON.parse(v); // a number, true, false or null
    }
  } else if (i !== h) {
    return null;
  }
  ch.hlc = text.slice(h + 1, n - 2);
  return [ch];
}

function splitMessages(text) {
  if (text === "") return [];
  return text.indexOf(RS) < 0 ? [text] : text.split(RS); // one message: 4× cheaper than split
}

const editOptionKeys = new Set(["group", "oldValue", "undo"]);
const editKeys = new Set(["verb", "subject", "metadata", "key", "value", "oldValue", "group", "undo"]);

function checkKeys(obj, allowed, what) {
  if (obj === null || typeof obj !== "object") throw fail("bad_option", `${what} must be an object`);
  let keys;
  try {
    keys = Object.keys(obj);
  } catch (e) {
    throw fail("bad_option", `${what} cannot be read: ${describe(e)}`);
  }
  for (const k of keys) {
    if (!allowed.has(k)) throw fail("bad_option", `unknown ${what} key ${JSON.stringify(k)} (known: ${[...allowed].join(", ")})`);
  }
}

// readKeys reads each key of obj once into a plain object; what a getter throws is a
// bad_option error.
function readKeys(obj, keys, what) {
  const out = {};
  for (const k of keys) {
    try {
      out[k] = obj[k];
    } catch (e) {
      throw fail("bad_option", `${what} ${k} cannot be read: ${describe(e)}`);
    }
  }
  return out;
}

// ------------------------------------------------------------------ engines

const optionKeys = new Set([
  "peerId",
  "wasmURL",
  "maxDrift",
  "snapshot",
  "undoDepth",
  "captureInterval",
  "now",
  "limits",
  "syncPage",
  "bridge",
]);
const limitKeys = ["maxMessageBytes", "maxDepth", "maxBatch", "maxKeyBytes", "maxKeyParts"];

function count(v, name, positive) {
  if (v === undefined) return "";
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < (positive ? 1 : 0)) {
    throw fail("bad_option", `${name} must be a ${positive ? "positive" : "non-negative"} integer, got ${show(v)}`);
  }
  return String(v);
}

const registry =
  typeof FinalizationRegistry === "function"
    ? new FinalizationRegistry(({ bridge, handle }) => {
        try {
          bridge.call(bridge.m.close, handle, 0, 0, [], false);
        } catch {
          // the module is gone; nothing to free
        }
      })
    : null;

/**
 * Creates an engine (a replica of one map). The first call loads the module (from
 * options.wasmURL, default mapcrdt.wasm next to this file); later calls reuse it.
 */
export async function createEngine(options = {}) {
  checkKeys(options, optionKeys, "option");
  // Each option read once: a getter answering a string when checked and something else
  // when used would pass the checks.
  const o = readKeys(options, optionKeys, "option");
  if (o.peerId !== undefined && (typeof o.peerId !== "string" || o.peerId === "")) {
    throw fail("bad_option", "peerId must be a non-empty string");
  }
  if (o.now !== undefined && typeof o.now !== "function") throw fail("bad_option", "now must be a function returning milliseconds");
  if (o.bridge !== undefined && o.bridge !== "wasmexport" && o.bridge !== "funcof") {
    throw fail("bad_option", `bridge must be "wasmexport" or "funcof", not ${show(o.bridge)}`);
  }
  let snapshot = "";
  if (o.snapshot !== undefined) {
    if (typeof o.snapshot === "string") snapshot = o.snapshot;
    else if (isBytes(o.snapshot)) snapshot = o.snapshot;
    else if (o.snapshot instanceof ArrayBuffer) snapshot = bytesOf(o.snapshot);
    else throw fail("bad_option", "snapshot must be a Uint8Array, an ArrayBuffer or a string");
    // The module reads an empty argument as "no snapshot": an empty one (or a buffer
    // transferred away) must not make a fresh engine in silence.
    if ((typeof snapshot === "string" ? snapshot.length : byteLength(snapshot)) === 0) {
      throw fail("bad_snapshot", "the snapshot is empty");
    }
  }
  const limitSet = new Set(limitKeys);
  const limits = o.limits === undefined ? {} : o.limits;
  checkKeys(limits, limitSet, "limits");
  const l = readKeys(limits, limitSet, "limits");
  const args = [
    o.peerId ?? "",
    // 0 is the module's "default" (60 s, 100 steps): an explicit 0 would be taken for it.
    count(o.maxDrift, "maxDrift", true),
    count(o.undoDepth, "undoDepth", true),
    count(o.captureInterval, "captureInterval", false),
    ...limitKeys.map((k) => count(l[k], "limits." + k, true)),
    snapshot,
    count(o.syncPage, "syncPage", true),
  ];
  const bridge = await load(o.wasmURL);
  const now = o.now === undefined ? Date.now : checkedClock(o.now);
  if (snapshot === "" || bridge.m.restoreStep === undefined) {
    const handle = Number(bridge.call(bridge.m.create, 0, 0, now(), args, false));
    return new Engine(bridge, handle, now, o.bridge === "funcof");
  }
  // A snapshot is restored a share at a time, the event loop running in between (DESIGN
  // §10): one of 100,000 live paths takes a quarter of a second or more in wasm. Each
  // share is sized to take ~4–16 ms.
  const handle = Number(bridge.call(bridge.m.create, 0, FLAG_STEPWISE, now(), args, false));
  let work = RESTORE_WORK;
  try {
    for (;;) {
      const t0 = performance.now();
      if (bridge.call(bridge.m.restoreStep, handle, 0, now(), [String(work)], false) === "done") break;
      const took = performance.now() - t0;
      if (took < 4) work = Math.min(work * 2, 1 << 24);
      else if (took > 16) work = Math.max(work >> 1, 64);
      await nextTask();
    }
  } catch (e) {
    try {
      bridge.call(bridge.m.close, handle, 0, 0, [], false); // a restore ended by a throwing clock
    } catch {
      // the module is gone
    }
    throw e;
  }
  return new Engine(bridge, handle, now, o.bridge === "funcof");
}

// The first share of a restore in steps: operations (or undo entries) restored in a call.
const RESTORE_WORK = 2048;

// nextTask resolves in a later task of the event loop, after what waits there (I/O, timers,
// input): setImmediate in Node, a MessageChannel's message in a browser (a timer of 0 waits
// 4 ms once nested).
function nextTask() {
  if (typeof setImmediate === "function") return new Promise((resolve) => setImmediate(resolve));
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      channel.port1.close();
      resolve();
    };
    channel.port2.postMessage(0);
  });
}

// checkedClock wraps options.now: what it returns must be a time the module takes (ms since
// 1970, from 1 to 2^53 - 1, hlc.MaxWall: a clock stamped at 2^53 no peer parses), and what
// it throws becomes a bad_option error. The module reads
// any other number as "use the system clock", which would hide a broken clock; and a value
// the call cannot convert (a BigInt) would throw at the boundary.
function checkedClock(now) {
  return () => {
    let t;
    try {
      t = now();
    } catch (e) {
      throw fail("bad_option", `options.now threw: ${describe(e)}`);
    }
    if (typeof t !== "number" || !(t >= 1 && t <= Number.MAX_SAFE_INTEGER)) {
      throw fail("bad_option", `options.now returned ${typeof t === "number" ? t : typeof t}: want milliseconds since 1970`);
    }
    return t;
  };
}

/**
 * Loads the module without creating an engine (createEngine does it on first use).
 * @param {{wasmURL?: string | URL}} [options]
 */
export async function initialize(options = {}) {
  const keys = new Set(["wasmURL"]);
  checkKeys(options, keys, "option");
  await load(readKeys(options, keys, "option").wasmURL); // a throwing getter: bad_option
}

const policies = new Set(["fail", "latest", "incoming"]);
const mergeOptionKeys = new Set(["policy", "wasmURL", "offThread"]);

// A merge of documents over this many bytes together runs in a worker unless told otherwise.
// Measured in Node here: a merge takes 25–40 ms a MiB of input on the calling thread, a
// worker's start (its own instance of the module) 40–60 ms, and its first merge runs ~1.5×
// slower than on a warm instance: below 1 MiB the worker costs more than the block it saves.
const OFF_THREAD_BYTES = 1024 * 1024;
// A worker left with no merge stops after this long (its memory goes with it); a merge in
// the meantime (uMap saves a map's datalayers one after another) does not start another.
const WORKER_LINGER_MS = 5000;

/**
 * Three-way merge of two saves of a datalayer (crdt.Merge, DESIGN §8). Documents are
 * GeoJSON FeatureCollections as JSON text, objects or bytes. Large ones are merged in a
 * worker (merge-worker.js), so that the merge does not block the event loop (DESIGN §10).
 */
export async function merge(reference, latest, incoming, options = {}) {
  checkKeys(options, mergeOptionKeys, "option");
  // Read once each, through readKeys: a getter that throws is a bad_option error.
  const o = readKeys(options, mergeOptionKeys, "option");
  const policy = o.policy === undefined ? "fail" : o.policy;
  if (!policies.has(policy)) throw fail("bad_option", `policy must be "fail", "latest" or "incoming", not ${show(policy)}`);
  if (o.offThread !== undefined && typeof o.offThread !== "boolean") {
    throw fail("bad_option", `offThread must be true or false, not ${show(o.offThread)}`);
  }
  const docs = [mergeInput(reference, "reference"), mergeInput(latest, "latest"), mergeInput(incoming, "incoming")];
  const size = docs.reduce((n, d) => n + (typeof d === "string" ? d.length : d.byteLength), 0);
  if ((o.offThread ?? size > OFF_THREAD_BYTES) && !workersUnavailable) {
    // The worker loads the module this thread loaded, or would load.
    const url = o.wasmURL === undefined ? (loading ? new URL(loadedFrom) : defaultWasmURL()) : toURL(o.wasmURL);
    if (loading && url.href !== loadedFrom) {
      throw fail("bad_option", `the module is already loaded from ${loadedFrom}; wasmURL ${url.href} differs`);
    }
    const result = await inWorker({ reference: docs[0], latest: docs[1], incoming: docs[2], policy, wasmURL: url.href });
    if (result !== undefined) return result; // undefined: no worker could start here
  }
  const bridge = await load(o.wasmURL);
  const text = bridge.call(
    bridge.m.merge,
    0,
    0,
    0,
    [...docs.map((d) => (typeof d !== "string" || wellFormed(d) ? d : escapeLoneSurrogates(d))), policy],
    false,
  );
  const i = text.indexOf(RS);
  return { document: text.slice(0, i), conflicts: JSON.parse(text.slice(i + 1)) };
}

// mergeInput is a merge document as text or bytes, as a worker can be given it.
function mergeInput(d, name) {
  if (typeof d === "string" || isBytes(d)) return d;
  if (d instanceof ArrayBuffer) return bytesOf(d); // as receive() and snapshot take it
  return json(d, "bad_value", name); // a JSONText's own text
}

// ------------------------------------------------------------------ the merge worker

/** @type {{post: (m: any) => void, terminate: () => void, idle: (yes: boolean) => void, pending: Map<number, any>, replied: boolean, linger: any} | null} */
let mergeWorker = null;
let workersUnavailable = false;
let nextMergeJob = 1;

// inWorker runs one merge in the merge worker, started for it if none runs, and stopped
// WORKER_LINGER_MS after its last merge (its memory, grown to the documents', goes with it;
// an idle worker does not keep Node's process alive). It resolves
// to undefined if no worker could start on this platform (no Worker, a page's policy, a
// bundle without merge-worker.js): merge() then runs on the calling thread, from then on.
async function inWorker(job) {
  if (!mergeWorker) {
    let w = null;
    try {
      w = await startMergeWorker();
    } catch {
      w = null;
    }
    if (!w) {
      workersUnavailable = true;
      return undefined;
    }
    if (!mergeWorker) mergeWorker = w;
    else w.terminate(); // another merge started one meanwhile
  }
  const w = mergeWorker;
  const id = nextMergeJob++;
  clearTimeout(w.linger);
  w.idle(false);
  return new Promise((resolve, reject) => {
    w.pending.set(id, { resolve, reject });
    w.post({ id, ...job });
  });
}

async function startMergeWorker() {
  const url = new URL("./merge-worker.js", import.meta.url);
  /** @type {any} */
  const w = { pending: new Map(), replied: false, linger: undefined };
  const onMessage = (m) => {
    const job = w.pending.get(m.id);
    if (!job) return;
    w.replied = true;
    w.pending.delete(m.id);
    if (w.pending.size === 0 && mergeWorker === w) {
      w.idle(true);
      w.linger = setTimeout(() => {
        if (mergeWorker === w && w.pending.size === 0) {
          mergeWorker = null;
          w.terminate();
        }
      }, WORKER_LINGER_MS);
      if (isNode) w.linger.unref();
    }
    if (m.error) {
      const err = fail(m.error.code, m.error.message);
      if (m.error.conflicts) err.conflicts = m.error.conflicts;
      job.reject(err);
    } else job.resolve(m.result);
  };
  const onFailure = (why) => {
    clearTimeout(w.linger);
    if (mergeWorker === w) mergeWorker = null;
    const jobs = [...w.pending.values()];
    w.pending.clear();
    if (!w.replied) workersUnavailable = true; // it never worked: merge on this thread
    for (const job of jobs) {
      if (!w.replied) job.resolve(undefined);
      else job.reject(fail("internal", `the merge worker stopped: ${why}`));
    }
  };
  if (isNode) {
    const { Worker } = await import("node:worker_threads");
    const worker = new Worker(url);
    worker.on("message", onMessage);
    worker.on("error", (e) => onFailure(describe(e)));
    worker.on("exit", (code) => onFailure(`exit code ${code}`));
    w.post = (m) => worker.postMessage(m);
    w.idle = (yes) => (yes ? worker.unref() : worker.ref());
    w.terminate = () => {
      w.pending.clear();
      worker.removeAllListeners();
      worker.terminate();
    };
    return w;
  }
  if (typeof Worker !== "function") return null;
  const worker = new Worker(url, { type: "module" });
  worker.onmessage = (e) => onMessage(e.data);
  worker.onerror = (e) => {
    e.preventDefault();
    onFailure(e.message || "it could not start");
  };
  worker.onmessageerror = () => onFailure("a message could not be read");
  w.post = (m) => worker.postMessage(m);
  w.idle = () => {};
  w.terminate = () => {
    w.pending.clear();
    worker.onmessage = worker.onerror = worker.onmessageerror = null;
    worker.terminate();
  };
  return w;
}

// escapeLoneSurrogates writes each lone surrogate of JSON text as its escape (\udXXX), which
// JSON.parse reads as the same string, as JSON.stringify writes it: encoded as UTF-8 it would
// reach the module as U+FFFD, and "x\ud800" and "x\udbff" would be one value. One right
// after an escaping backslash (no JSON) is left as it is: the module refuses the text.
function escapeLoneSurrogates(text) {
  let out = "";
  let from = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) continue;
    if (c < 0xdc00 && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        i++; // a pair
        continue;
      }
    }
    let k = i;
    while (k > 0 && text.charCodeAt(k - 1) === 0x5c) k--;
    if ((i - k) % 2 === 1) continue;
    out += text.slice(from, i) + "\\u" + c.toString(16);
    from = i + 1;
  }
  return out + text.slice(from);
}

class Engine {
  #bridge;
  #call;
  #funcof;
  #m;
  #handle;
  #now;
  #peerId;
  /** @type {Set<(event: any) => void>} */
  #listeners = new Set();
  #emitting = false;
  /** @type {any[]} events made while another was being delivered (#emit) */
  #queued = [];
  /** @type {string[]} replies produced by receive(), sent by the next flush() */
  #replies = [];
  #closed = false;

  constructor(bridge, handle, now, funcof) {
    this.#bridge = bridge;
    this.#call = funcof ? bridge.callFuncOf : bridge.call;
    this.#funcof = funcof;
    this.#m = bridge.m;
    this.#handle = handle;
    this.#now = now;
    // No clock read (peerId stamps nothing): options.now failing here would leave the
    // module's engine open, with no Engine to close it.
    this.#peerId = this.#call.call(bridge, this.#m.peerId, handle, 0, 0, [], false);
    if (registry) registry.register(this, { bridge, handle }, this);
  }

  // A closed engine throws bad_state before anything else: a method taking no arguments
  // checks in #run (or #runUntimed); one that checks its arguments checks first itself,
  // then calls #exec, which does not check again (one check a call on the edit and receive
  // paths, as before). Should the arguments' own code (a toJSON, a getter) close the
  // engine, the module refuses its closed handle with bad_state.
  #run(method, flags, args, bytes = false) {
    if (this.#closed) throw closed();
    return this.#call.call(this.#bridge, method, this.#handle, flags, this.#now(), args, bytes);
  }

  #exec(method, flags, args) {
    return this.#call.call(this.#bridge, method, this.#handle, flags, this.#now(), args, false);
  }

  // #runUntimed is #run for a method that stamps nothing: with the system clock, the call
  // passes no time (0: the module reads the system clock itself, should it need it), which
  // saves a Date.now() (~37 ns) a call; a clock given as options.now is passed as always.
  #runUntimed(method) {
    if (this.#closed) throw closed();
    return this.#call.call(this.#bridge, method, this.#handle, 0, this.#now === Date.now ? 0 : this.#now(), noArgs, false);
  }

  // #runClockless is #run for a method that never reads the time: no clock read at all,
  // options.now's included (0: the module would read the system clock, should it need it).
  #runClockless(method) {
    if (this.#closed) throw closed();
    return this.#call.call(this.#bridge, method, this.#handle, 0, 0, noArgs, false);
  }

  // #emit delivers an event to every listener, in the order the engine made the events: a
  // listener's own edit (a validator replacing a remote value) makes its event while
  // another is being delivered, and that one waits in #queued until every listener has had
  // the first — or a renderer after the validator would get the correction, then the value
  // it corrected, and show the wrong one.
  #emit(origin, changes, skipped) {
    if (changes.length === 0 || this.#listeners.size === 0) return;
    const event = skipped ? { origin, changes, skipped } : { origin, changes };
    if (this.#emitting) {
      this.#queued.push(event);
      return;
    }
    this.#emitting = true;
    try {
      this.#deliver(event);
      for (let i = 0; i < this.#queued.length; i++) this.#deliver(this.#queued[i]);
    } finally {
      this.#emitting = false;
      this.#queued = [];
    }
  }

  #deliver(event) {
    for (const cb of [...this.#listeners]) {
      try {
        cb(event);
      } catch (e) {
        // A listener's error must not undo what the engine did: report it asynchronously.
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }

  #edit(verb, subject, metadata, key, value, opts) {
    const args = [
      verb,
      str(subject, "unknown_subject", "subject"),
      metadataArg(metadata),
      key,
      value,
    ];
    if (opts !== undefined) {
      checkKeys(opts, editOptionKeys, "edit option");
      // Each read once; a getter that throws is a bad_option error, as in createEngine.
      let oldValue, group, undo;
      try {
        oldValue = opts.oldValue;
        group = opts.group;
        undo = opts.undo;
      } catch (e) {
        throw fail("bad_option", `edit options cannot be read: ${describe(e)}`);
      }
      if (undo !== undefined && typeof undo !== "boolean") throw fail("bad_option", `undo must be a boolean, got ${show(undo)}`);
      args.push(
        oldValue === undefined ? "" : json(oldValue, "bad_value", "oldValue"),
        group === undefined ? "" : groupArg(group),
        undo === false ? "false" : "",
      );
    }
    const want = this.#listeners.size > 0;
    const text = this.#exec(this.#m.edit, want ? FLAG_CHANGES : 0, args);
    if (want) this.#emit("local", parseChanges(text, this.#bridge));
  }

  /** This replica's peer id (the one given, or a fresh UUID). */
  get peerId() {
    return this.#peerId;
  }

  update(subject, metadata, key, value, opts) {
    if (this.#closed) throw closed();
    this.#edit("update", subject, metadata, keyArg(key), json(value, "bad_value", "value"), opts);
  }

  unset(subject, metadata, key, opts) {
    if (this.#closed) throw closed();
    this.#edit("update", subject, metadata, keyArg(key), "", opts);
  }

  upsert(subject, metadata, value, opts) {
    if (this.#closed) throw closed();
    this.#edit("upsert", subject, metadata, "", json(value, "bad_value", "value"), opts);
  }

  delete(subject, metadata, opts) {
    if (this.#closed) throw closed();
    this.#edit("delete", subject, metadata, "", "", opts);
  }

  edit(e) {
    if (this.#closed) throw closed();
    checkKeys(e, editKeys, "edit");
    const f = readKeys(e, editKeys, "edit"); // each read once; a getter that throws: bad_option
    const verb = str(f.verb, "unknown_verb", "verb");
    const key = f.key === undefined ? "" : keyArg(f.key);
    // No value is an unset for an update, and nothing for a delete; an upsert needs one (""
    // would reach the module as JSON text, and be refused as invalid_json).
    if (f.value === undefined && verb === "upsert") throw fail("bad_value", "an upsert needs a value: the whole object");
    const value = f.value === undefined ? "" : json(f.value, "bad_value", "value");
    const opts = {};
    if (f.oldValue !== undefined) opts.oldValue = f.oldValue;
    if (f.group !== undefined) opts.group = f.group;
    if (f.undo !== undefined) opts.undo = f.undo;
    this.#edit(verb, f.subject, f.metadata, key, value, opts);
  }

  // A batch's clock is taken at its first edit: opening, closing or asking about one reads
  // no clock, so a clock that breaks inside batch(fn) cannot leave its batch open.
  startBatch() {
    this.#runClockless(this.#m.startBatch);
  }

  commitBatch() {
    this.#runClockless(this.#m.commitBatch);
  }

  inBatch() {
    return this.#runClockless(this.#m.inBatch) === "true";
  }

  batch(fn) {
    if (this.#closed) throw closed();
    if (typeof fn !== "function") throw fail("bad_option", "batch takes a function");
    this.startBatch();
    try {
      return fn(this);
    } finally {
      this.commitBatch();
    }
  }

  seed(subject, metadata, value) {
    if (this.#closed) throw closed();
    const want = this.#listeners.size > 0;
    const text = this.#exec(this.#m.seed, want ? FLAG_CHANGES : 0, [
      str(subject, "unknown_subject", "subject"),
      metadataJSON(metadata),
      json(value, "bad_value", "value"),
    ]);
    if (want) this.#emit("local", parseChanges(text, this.#bridge));
  }

  flush() {
    const out = splitMessages(this.#runUntimed(this.#m.flush));
    if (this.#replies.length === 0) return out;
    const replies = this.#replies;
    this.#replies = [];
    return replies.concat(out);
  }

  pending() {
    return Number(this.#runUntimed(this.#m.pending)) + this.#replies.length;
  }

  onPeerMessage(message) {
    if (this.#closed) throw closed();
    if (this.#listeners.size === 0 && !this.#funcof) return this.#peerMessageLazy(message);
    const text = this.#exec(this.#m.receive, 0, [messageArg(message)]);
    const i = text.indexOf(RS);
    const changes = parseChanges(i < 0 ? text : text.slice(0, i), this.#bridge);
    const replies = i < 0 ? [] : text.slice(i + 1).split(RS);
    this.#emit("remote", changes);
    return { changes, replies };
  }

  // #peerMessageLazy is onPeerMessage without a listener: the result is read from the
  // module's memory — the replies and the new objects decoded, the changes' array copied
  // as bytes for lazyChanges.
  #peerMessageLazy(message) {
    const bridge = this.#bridge;
    const n = bridge.invoke(this.#m.receive, this.#handle, 0, this.#now(), [messageArg(message)]);
    const p = bridge.outPtr;
    const res = bridge.u8.subarray(p, p + n);
    let end = res.indexOf(0x1e); // RS: the replies follow
    const replies = end < 0 ? [] : decode(res, end + 1, n - end - 1).split(RS);
    if (end < 0) end = n;
    if (end === 0) return { changes: [], replies };
    const u = res.subarray(0, end).indexOf(0x1f); // US: the new objects follow
    if (u >= 0) {
      addObjects(decode(res, u + 1, end - u - 1), bridge);
      end = u;
    }
    return lazyChanges({ changes: undefined, replies }, res.slice(0, end), bridge.objs);
  }

  receive(message) {
    // onPeerMessage without the result object and the empty list of replies it makes.
    if (this.#closed) throw closed();
    const text = this.#exec(this.#m.receive, 0, [messageArg(message)]);
    const i = text.indexOf(RS);
    const changes = parseChanges(i < 0 ? text : text.slice(0, i), this.#bridge);
    this.#emit("remote", changes);
    if (i >= 0) this.#replies.push(...text.slice(i + 1).split(RS));
    return changes;
  }

  syncRequest(recipient) {
    if (this.#closed) throw closed();
    if (recipient === undefined) return this.#run(this.#m.syncRequest, 0, []);
    // "" would reach the module as "no recipient" (a random known peer): a caller's empty
    // id is a mistake to report, not a request to pick.
    if (str(recipient, "bad_option", "recipient") === "") throw fail("bad_option", "recipient must be a peer id, not empty");
    return this.#exec(this.#m.syncRequest, 0, [recipient]);
  }

  #revert(method, origin) {
    const text = this.#run(method, 0, []);
    const i = text.indexOf(RS);
    const res = JSON.parse(text.slice(0, i));
    res.changes = parseChanges(text.slice(i + 1), this.#bridge);
    this.#emit(origin, res.changes, res.skipped);
    return res;
  }

  undo() {
    return this.#revert(this.#m.undo, "undo");
  }

  redo() {
    return this.#revert(this.#m.redo, "redo");
  }

  canUndo() {
    return this.#runUntimed(this.#m.canUndo) === "true";
  }

  canRedo() {
    return this.#runUntimed(this.#m.canRedo) === "true";
  }

  get(subject, metadata, key) {
    if (this.#closed) throw closed();
    const args = [str(subject, "unknown_subject", "subject"), metadataJSON(metadata)];
    if (key !== undefined) {
      // "" would reach the module as "no key" (the whole object).
      if (keyArg(key) === "") throw fail("bad_key", "empty key");
      args.push(key);
    }
    const text = this.#exec(this.#m.get, 0, args);
    return text === "" ? undefined : JSON.parse(text);
  }

  state() {
    return this.#run(this.#m.state, 0, []);
  }

  clock() {
    return this.#run(this.#m.clock, 0, []);
  }

  vector() {
    return JSON.parse(this.#run(this.#m.vector, 0, []));
  }

  peers() {
    return JSON.parse(this.#run(this.#m.peers, 0, []));
  }

  setPeers(peers) {
    if (this.#closed) throw closed();
    if (!Array.isArray(peers)) throw fail("bad_option", "setPeers takes an array of peer ids");
    let ids;
    try {
      ids = Array.prototype.map.call(peers, (p) => str(p, "bad_option", "a peer id"));
    } catch (e) {
      if (e instanceof MapcrdtError) throw e;
      throw fail("bad_option", `the peer ids cannot be read: ${describe(e)}`); // a getter, a Proxy's trap
    }
    // The ids cross joined by RS: one holding it would cross as two valid ids, and [""] as
    // "", the module's "no list" (no peers, in silence).
    if (ids.some((p) => p === "")) throw fail("bad_option", "a peer id must not be empty");
    if (ids.some((p) => p.includes(RS))) throw fail("bad_option", "a peer id holds a control character (U+001E)");
    this.#exec(this.#m.setPeers, 0, [ids.join(RS)]);
  }

  compact() {
    return JSON.parse(this.#run(this.#m.compact, 0, []));
  }

  snapshot() {
    return this.#run(this.#m.snapshot, 0, [], true);
  }

  markSaved(hlc) {
    if (this.#closed) throw closed();
    this.#exec(this.#m.markSaved, 0, [str(hlc, "bad_hlc", "hlc")]);
  }

  savedMessage() {
    return this.#run(this.#m.savedMessage, 0, []);
  }

  dirty() {
    return JSON.parse(this.#run(this.#m.dirty, 0, []));
  }

  onChange(callback) {
    if (this.#closed) throw closed();
    if (typeof callback !== "function") throw fail("bad_option", "onChange takes a function");
    const cb = (e) => callback(e);
    this.#listeners.add(cb);
    return () => {
      this.#listeners.delete(cb);
    };
  }

  /** The Go heap of the module (shared by every engine), for measurements. */
  memory(gc = false) {
    if (this.#closed) throw closed();
    const text = this.#bridge.call(this.#m.memory, 0, gc ? FLAG_GC : 0, 0, [], false);
    return { ...JSON.parse(text), wasmMemory: this.#bridge.memory.buffer.byteLength };
  }

  get closed() {
    return this.#closed;
  }

  close() {
    if (this.#closed) return;
    // No clock read: a broken options.now must not keep the engine open.
    this.#call.call(this.#bridge, this.#m.close, this.#handle, 0, 0, [], false);
    this.#closed = true;
    this.#listeners.clear();
    if (registry) registry.unregister(this);
  }
}

/**
 * Unstable access to the module's raw call table, for tests and measurements. Not part of
 * the API: it may change in any release.
 */
export async function _rawBridge(options = {}) {
  const bridge = await load(options.wasmURL);
  return {
    methods: { ...bridge.m },
    call: (method, handle, flags, args, bytes = false) => bridge.call(method, handle, flags, Date.now(), args, bytes),
    callFuncOf: (method, handle, flags, args) => bridge.callFuncOf(method, handle, flags, Date.now(), args, false),
    exports: bridge.ex,
    get objects() {
      return bridge.objs;
    },
  };
}
