// index.d.ts against what index.js does at run time: every method called, its result's shape
// checked against the declared type (property names, optional or always there, undefined
// rather than null, arrays, frozen metadata, Uint8Array), and every argument of every
// method given bad input of every kind — each refused with a MapcrdtError whose code is one
// the .d.ts names for it, the engine unchanged and still working after.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createEngine, initialize, jsonText, merge, MapcrdtError } from "../index.js";

const f1 = { id: "f1", layerId: "L1", featureType: "marker" };
const KINDS = new Set(["created", "deleted", "set", "unset"]);
const CLOCK = /^\d+:\d+:[!-~]+$/;

const isPlain = (v) => v !== null && typeof v === "object" && !Array.isArray(v) && [Object.prototype, null].includes(Object.getPrototypeOf(v));

function keysWithin(v, allowed, what) {
  for (const k of Object.keys(v)) assert.ok(allowed.includes(k), `${what} has ${k}, which the .d.ts does not declare`);
}

/** Change of index.d.ts: key absent for the whole object, value only for created and set. */
function checkChange(c) {
  assert.ok(isPlain(c), "a Change is a plain object");
  keysWithin(c, ["kind", "subject", "metadata", "key", "value", "hlc"], "a Change");
  assert.ok(KINDS.has(c.kind), c.kind);
  assert.equal(typeof c.subject, "string");
  assert.ok(isPlain(c.metadata) && Object.isFrozen(c.metadata), "metadata: a frozen object");
  assert.ok(CLOCK.test(c.hlc) || c.hlc === "0:0:", `hlc ${c.hlc}: a clock, or the zero clock of a seed`);
  if ("key" in c) assert.ok(typeof c.key === "string" && c.key !== "", "key: a non-empty string when present");
  if (c.kind === "created" || c.kind === "deleted") assert.ok(!("key" in c), `${c.kind} names no key`);
  if (c.kind === "unset") assert.ok("key" in c, "unset names its key");
  assert.equal("value" in c, c.kind === "created" || c.kind === "set", `value present exactly for created and set (${c.kind})`);
  if ("value" in c) assert.notEqual(c.value, undefined);
}

function checkSkipped(s) {
  keysWithin(s, ["subject", "metadata", "key"], "a Skipped");
  assert.equal(typeof s.subject, "string");
  assert.ok(isPlain(s.metadata));
  assert.equal(typeof s.key, "string", "Skipped.key is always there (\"\" for the whole object)");
}

function checkUndoResult(u) {
  assert.deepEqual(Object.keys(u).sort(), ["changes", "done", "skipped"]);
  assert.equal(typeof u.done, "boolean");
  assert.ok(Array.isArray(u.changes) && Array.isArray(u.skipped));
  u.changes.forEach(checkChange);
  u.skipped.forEach(checkSkipped);
}

const count = (n) => Number.isSafeInteger(n) && n >= 0;

test("every method returns what index.d.ts declares", async () => {
  let t = 1_727_184_449_010;
  const now = () => t;
  const a = await createEngine({ peerId: "alice", now });
  const b = await createEngine({ peerId: "bob", now });
  assert.equal(a.peerId, "alice");
  assert.equal(a.closed, false);
  const events = [];
  const off = a.onChange((e) => events.push(e));
  assert.equal(typeof off, "function");

  // The edits return nothing.
  assert.equal(a.seed("datalayer", { id: "L1" }, { name: "layer" }), undefined);
  assert.equal(a.upsert("feature", f1, { type: "Feature", geometry: { type: "Point", coordinates: [1, 2] }, properties: { name: "x" } }), undefined);
  assert.equal(a.update("feature", f1, "properties.name", "y", { group: "g" }), undefined);
  assert.equal(a.unset("feature", f1, "properties.name"), undefined);
  assert.equal(a.edit({ verb: "update", subject: "feature", metadata: f1, key: "properties.n", value: 1 }), undefined);
  assert.equal(a.edit({ verb: "update", subject: "feature", metadata: f1, key: "properties.n" }), undefined); // no value: unset
  assert.equal(a.startBatch(), undefined);
  assert.equal(a.inBatch(), true);
  a.update("map", {}, "properties.name", "m");
  assert.equal(a.commitBatch(), undefined);
  assert.equal(a.inBatch(), false);
  assert.equal(a.batch(() => 7), 7);
  assert.equal(a.delete("feature", { id: "f2", layerId: "L1" }), undefined);

  // Events: {origin, changes}, and skipped for undo and redo only.
  assert.ok(events.length >= 5);
  for (const e of events) {
    keysWithin(e, ["origin", "changes", "skipped"], "a ChangeEvent");
    assert.ok(["local", "remote", "undo", "redo"].includes(e.origin));
    assert.equal("skipped" in e, e.origin === "undo" || e.origin === "redo");
    e.changes.forEach(checkChange);
  }
  assert.deepEqual(events[0].origin, "local", "seeded base values count as local");
  assert.equal(events[0].changes[0].hlc, "0:0:", "a seeded value's change has the zero clock");

  // The outbox and receiving.
  assert.ok(Number.isInteger(a.pending()) && a.pending() > 0);
  const msgs = a.flush();
  assert.ok(Array.isArray(msgs) && msgs.every((m) => typeof m === "string" && JSON.parse(m).kind === "OperationMessage"));
  assert.deepEqual(a.flush(), []);
  const kinds = new Set();
  for (const m of msgs) {
    const changes = b.receive(m);
    assert.ok(Array.isArray(changes));
    changes.forEach(checkChange);
    for (const c of changes) kinds.add(c.kind);
  }
  for (const k of ["created", "set", "unset"]) assert.ok(kinds.has(k), `a received ${k}`);
  const res = a.onPeerMessage(b.syncRequest("alice"));
  assert.deepEqual(Object.keys(res).sort(), ["changes", "replies"]);
  assert.ok(Array.isArray(res.replies) && res.replies.every((r) => typeof r === "string"));
  assert.ok(Array.isArray(res.changes));
  const back = b.onPeerMessage(res.replies[0]);
  back.changes.forEach(checkChange);
  assert.equal(typeof a.syncRequest("bob"), "string");

  // Undo and redo, with a peer's later write skipped.
  t += 10;
  a.update("feature", f1, "properties.color", "red");
  for (const m of a.flush()) b.receive(m);
  t += 10;
  b.update("feature", f1, "properties.color", "blue");
  for (const m of b.flush()) a.receive(m);
  const u = a.undo();
  checkUndoResult(u);
  assert.deepEqual(u.skipped.map((s) => s.key), ["properties.color"]);
  checkUndoResult(a.undo());
  checkUndoResult(a.redo());
  assert.equal(typeof a.canUndo(), "boolean");
  assert.equal(typeof a.canRedo(), "boolean");
  while (a.canUndo()) a.undo();
  assert.equal(a.undo().done, false, "nothing left to undo: done false, no throw");

  // Reads.
  assert.equal(a.get("feature", f1, "properties.nothing"), undefined, "absent: undefined, not null");
  assert.equal(a.get("feature", { id: "nobody", layerId: "L1" }), undefined);
  a.update("map", {}, "properties.null", null);
  assert.equal(a.get("map", {}, "properties.null"), null, "a JSON null is null");
  const state = JSON.parse(a.state());
  assert.ok(Array.isArray(state));
  for (const o of state) assert.deepEqual(Object.keys(o).sort(), ["metadata", "subject", "value"]);
  assert.match(a.clock(), CLOCK);
  const v = a.vector();
  assert.ok(isPlain(v) && Object.values(v).every(count), JSON.stringify(v));
  a.setPeers(["bob", "carol"]);
  assert.deepEqual(a.peers(), ["bob", "carol"]);
  a.setPeers([]);
  assert.deepEqual(a.peers(), [], "[] clears the peers");

  // Saving, compaction, snapshots, memory.
  const stats = a.compact();
  assert.deepEqual(Object.keys(stats).sort(), ["bytes", "ops", "remaining"]);
  assert.ok(Object.values(stats).every(count));
  const dirty = a.dirty();
  assert.ok(dirty.length > 0);
  for (const d of dirty) {
    assert.deepEqual(Object.keys(d).sort(), ["metadata", "subject"]);
    assert.ok(isPlain(d.metadata));
  }
  assert.equal(a.markSaved(a.clock()), undefined);
  assert.equal(JSON.parse(a.savedMessage()).kind, "SavedMessage");
  const snap = a.snapshot();
  assert.equal(Object.getPrototypeOf(snap), Uint8Array.prototype, "a Uint8Array (not a Buffer, not an ArrayBuffer)");
  assert.notEqual(a.snapshot(), snap, "a new array each call");
  const restored = await createEngine({ snapshot: snap.buffer.slice(0) });
  assert.equal(restored.state(), a.state());
  const mem = a.memory();
  assert.deepEqual(Object.keys(mem).sort(), ["heapAlloc", "heapInuse", "heapSys", "mallocs", "numGC", "sys", "totalAlloc", "wasmMemory"]);
  assert.ok(Object.values(mem).every(count));

  // Merge: {document, conflicts}; a refusal for conflicts carries them.
  const fc = (a) => ({ type: "FeatureCollection", features: [{ type: "Feature", id: "1", properties: { a } }] });
  const m = await merge(fc(1), fc(2), fc(3), { policy: "latest" });
  assert.deepEqual(Object.keys(m).sort(), ["conflicts", "document"]);
  assert.equal(typeof m.document, "string");
  assert.deepEqual(m.conflicts, [{ featureId: "1", key: "properties.a", reference: 1, latest: 2, incoming: 3 }]);
  const gone = await merge(fc(1), { type: "FeatureCollection", features: [] }, fc(3), { policy: "latest" });
  assert.ok(!("latest" in gone.conflicts[0]), "a side where the place is absent is left out, not null");
  await assert.rejects(merge(fc(1), fc(2), fc(3)), (e) => {
    assert.ok(e instanceof MapcrdtError && e instanceof Error);
    assert.equal(e.name, "MapcrdtError");
    assert.equal(e.code, "conflict");
    assert.equal(e.conflicts.length, 1);
    return true;
  });
  // Bytes of either kind, as receive() and snapshot take them.
  const enc = (v) => new TextEncoder().encode(JSON.stringify(v));
  const fromBytes = await merge(enc(fc(1)), enc(fc(2)).buffer, fc(1));
  assert.equal(fromBytes.document, (await merge(fc(1), fc(2), fc(1))).document);

  // Every error is a MapcrdtError with a code, and no other property but conflicts.
  try {
    a.commitBatch();
    assert.fail("commitBatch without a batch");
  } catch (e) {
    assert.ok(e instanceof MapcrdtError);
    assert.deepEqual(Object.keys(e).sort(), ["code", "name"]);
  }

  off();
  assert.equal(a.close(), undefined);
  assert.equal(a.closed, true);
  for (const e of [b, restored]) e.close();
});

// Bad values of every kind JavaScript has.
function badValues() {
  const circular = {};
  circular.self = circular;
  const throwing = {
    get id() {
      throw new Error("getter");
    },
  };
  return {
    undefined: undefined,
    null: null,
    NaN: NaN,
    Infinity: Infinity,
    huge: 1e308,
    negative: -1,
    fraction: 1.5,
    bigint: 10n,
    symbol: Symbol("s"),
    function: () => 1,
    date: new Date(0),
    map: new Map([["id", "f1"]]),
    circular,
    nullProto: Object.create(null),
    throwingGetter: throwing,
    proxy: new Proxy({}, { ownKeys() { throw new Error("trap"); }, get() { throw new Error("trap"); } }),
    array: [1],
    true: true,
    empty: "",
    text: "x y",
    number: 3,
    object: {},
    bytes: new Uint8Array([123, 125]),
    arrayBuffer: new ArrayBuffer(2),
  };
}

// For each method, each argument: the good value, the codes index.d.ts names for bad input
// there, and the bad values it takes (JSON.stringify's rules for values, say).
// An options object is read by its own keys: any object without any is no options at all.
const OPTIONS_TAKEN = ["undefined", "object", "date", "map", "nullProto", "arrayBuffer"];
const M = jsonText('{"id":"f1","layerId":"L1"}');
const CALLS = {
  update: [["feature", ["unknown_subject"]], [M, ["bad_metadata"]], ["properties.x", ["bad_key"], ["text"]], [2, ["bad_value"], ["null", "NaN", "Infinity", "huge", "negative", "fraction", "date", "map", "nullProto", "array", "true", "empty", "text", "number", "object", "bytes", "arrayBuffer"]], [undefined, ["bad_option", "bad_value"], OPTIONS_TAKEN]],
  unset: [["feature", ["unknown_subject"]], [M, ["bad_metadata"]], ["properties.x", ["bad_key"], ["text"]], [undefined, ["bad_option", "bad_value"], OPTIONS_TAKEN]],
  upsert: [["feature", ["unknown_subject"]], [M, ["bad_metadata"]], [{ a: 1 }, ["bad_value"], ["map", "nullProto", "object", "bytes", "arrayBuffer"]], [undefined, ["bad_option", "bad_value"], OPTIONS_TAKEN]],
  delete: [["feature", ["unknown_subject"]], [M, ["bad_metadata"]], [undefined, ["bad_option", "bad_value"], OPTIONS_TAKEN]],
  seed: [["feature", ["unknown_subject"]], [M, ["bad_metadata"]], [{ a: 1 }, ["bad_value"], ["map", "nullProto", "object", "bytes", "arrayBuffer"]]],
  edit: [[{ verb: "update", subject: "feature", metadata: M, key: "properties.y", value: 1 }, ["bad_option", "unknown_verb"]]],
  get: [["feature", ["unknown_subject"]], [M, ["bad_metadata"]], ["properties.x", ["bad_key"], ["undefined", "text"]]],
  receive: [['{"kind":"pong"}', ["bad_message", "invalid_json", "unknown_kind"]]],
  onPeerMessage: [['{"kind":"pong"}', ["bad_message", "invalid_json", "unknown_kind"]]],
  syncRequest: [["bob", ["bad_option", "bad_state"]]],
  setPeers: [[["bob"], ["bad_option"]]],
  markSaved: [["1727184449010:0:a", ["bad_hlc", "clock_drift"]]],
  batch: [[() => {}, ["bad_option"], ["function"]]],
  onChange: [[() => {}, ["bad_option"], ["function"]]],
};

function throwsOneOf(fn, codes, what) {
  let threw = false;
  try {
    fn();
  } catch (e) {
    threw = true;
    assert.ok(e instanceof MapcrdtError, `${what}: threw ${e && e.constructor && e.constructor.name}, not a MapcrdtError: ${e && e.message}`);
    assert.ok(codes.includes(e.code), `${what}: code ${e.code} ("${e.message}"), want one of ${codes.join(", ")}`);
  }
  return threw;
}

test("every argument of every method, given bad input, throws a declared code and changes nothing", async () => {
  const now = () => 1_727_184_449_010;
  const a = await createEngine({ peerId: "alice", now });
  const peer = await createEngine({ peerId: "peer", now });
  a.upsert("feature", f1, { type: "Feature", properties: { name: "x" } });
  a.flush();
  const fingerprint = () => a.state() + a.clock() + JSON.stringify(a.vector()) + a.pending() + JSON.stringify(a.peers()) + a.canUndo() + a.inBatch();
  for (const [method, args] of Object.entries(CALLS)) {
    for (let i = 0; i < args.length; i++) {
      const [, codes, accepted = []] = args[i];
      for (const [name, bad] of Object.entries(badValues())) {
        if (accepted.includes(name)) continue;
        const argv = args.map(([good]) => good);
        argv[i] = bad;
        const before = fingerprint();
        const threw = throwsOneOf(() => a[method](...argv), codes, `${method} argument ${i} = ${name}`);
        assert.ok(threw || (method === "get" && i === 2), `${method} argument ${i} = ${name} was taken`);
        assert.equal(fingerprint(), before, `${method} argument ${i} = ${name}: the engine changed`);
      }
    }
  }
  // The engine works after: an edit reaches a peer.
  a.update("feature", f1, "properties.name", "after");
  for (const m of a.flush()) peer.receive(m);
  assert.equal(peer.get("feature", f1, "properties.name"), "after");
  a.close();
  peer.close();
});

test("bad options of createEngine, initialize and merge throw bad_option (or the snapshot's code), never a TypeError", async () => {
  const fc = '{"type":"FeatureCollection","features":[]}';
  const rejects = async (promise, codes, what) => {
    await assert.rejects(promise, (e) => {
      assert.ok(e instanceof MapcrdtError, `${what}: ${e && e.constructor && e.constructor.name}: ${e && e.message}`);
      assert.ok(codes.includes(e.code), `${what}: code ${e.code} (${e.message})`);
      return true;
    }, what);
  };
  const ok = { maxDrift: ["number"], undoDepth: ["number"], captureInterval: ["number"], syncPage: ["number"] };
  for (const key of ["peerId", "maxDrift", "undoDepth", "captureInterval", "syncPage", "snapshot", "now", "limits", "bridge", "wasmURL"]) {
    for (const [name, bad] of Object.entries(badValues())) {
      if (name === "undefined" || (ok[key] ?? []).includes(name) || (key === "limits" && ["date", "map", "object", "arrayBuffer", "nullProto"].includes(name))) continue;
      if (key === "now" && name === "function") continue;
      await rejects(createEngine({ [key]: bad }), key === "snapshot" ? ["bad_option", "bad_snapshot"] : ["bad_option"], `createEngine ${key} = ${name}`);
    }
  }
  for (const [name, bad] of Object.entries(badValues())) {
    if (name === "undefined") continue;
    if (name !== "number") await rejects(createEngine({ limits: { maxDepth: bad } }), ["bad_option"], `limits.maxDepth = ${name}`);
    await rejects(merge(fc, fc, fc, { policy: bad }), ["bad_option"], `merge policy = ${name}`);
    if (!["date", "map", "object", "arrayBuffer", "nullProto"].includes(name)) {
      await rejects(initialize(bad), ["bad_option"], `initialize(${name})`);
      await rejects(merge(fc, fc, fc, bad), ["bad_option"], `merge options = ${name}`);
    }
    for (let i = 0; i < 3; i++) {
      const docs = [fc, fc, fc];
      docs[i] = bad;
      await rejects(merge(...docs), ["bad_value", "invalid_json"], `merge document ${i} = ${name}`);
    }
  }
});

test("edit() of an upsert without a value, and a Blob message, are refused by what they are", async () => {
  const a = await createEngine({ peerId: "alice" });
  assert.throws(() => a.edit({ verb: "upsert", subject: "map", metadata: {} }), { code: "bad_value", message: /upsert needs a value/ });
  assert.throws(() => a.receive(new Blob(['{"kind":"pong"}'])), { code: "bad_message", message: /Blob.*binaryType/ });
  assert.throws(() => a.onPeerMessage(new Blob(["{}"])), { code: "bad_message" });
  assert.equal(a.state(), "[]");
  a.close();
});

test("a getter or Proxy trap that throws while the glue reads an argument is a bad_option error, changing nothing", async () => {
  const a = await createEngine({ peerId: "alice" });
  const boom = () => {
    throw new Error("boom");
  };
  const edit = { verb: "update", subject: "map", metadata: {}, key: "properties.a", value: 1, group: "g", oldValue: 0 };
  for (const field of Object.keys(edit)) {
    const e = { ...edit };
    Object.defineProperty(e, field, { get: boom, enumerable: true });
    assert.throws(() => a.edit(e), { code: "bad_option", message: new RegExp(`edit ${field} cannot be read: boom`) }, field);
  }
  for (const field of ["group", "oldValue"]) {
    assert.throws(() => a.update("map", {}, "properties.a", 1, { get [field]() { return boom(); } }), { code: "bad_option", message: /boom/ }, field);
  }
  const ids = ["bob"];
  Object.defineProperty(ids, 0, { get: boom });
  assert.throws(() => a.setPeers(ids), { code: "bad_option", message: /boom/ });
  assert.throws(() => a.setPeers(new Proxy(["bob"], { get: boom })), { code: "bad_option", message: /boom/ });
  assert.equal(a.state(), "[]");
  assert.deepEqual(a.peers(), []);
  a.edit(edit);
  assert.equal(a.get("map", {}, "properties.a"), 1, "the engine still works");
  a.close();
});

test("batch(fn) commits when fn returns: an async fn's edits after its first await are outside the batch", async () => {
  const a = await createEngine({ peerId: "alice" });
  const p = a.batch(async (e) => {
    e.update("map", {}, "properties.a", 1);
    e.update("map", {}, "properties.b", 2);
    await null;
    assert.equal(e.inBatch(), false, "committed already");
    e.update("map", {}, "properties.c", 3);
  });
  assert.ok(p instanceof Promise, "fn's result, as it is");
  await p;
  const verbs = a.flush().map((m) => JSON.parse(m).verb);
  assert.deepEqual(verbs, ["batch", "update"]);
  a.close();
});
