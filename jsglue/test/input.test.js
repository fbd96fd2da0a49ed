// What the glue refuses before anything reaches the module, and what a refused call leaves
// behind: nothing (DESIGN §9) — not even in the glue's own caches, which every engine of the
// page shares.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createEngine, jsonText, MapcrdtError } from "../index.js";

/** Asserts that fn throws a MapcrdtError of code (and a message matching re, if given). */
function throwsCode(fn, code, re) {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof MapcrdtError, `not a MapcrdtError: ${e && e.stack}`);
    assert.equal(e.code, code, `code of "${e.message}"`);
    if (re) assert.match(e.message, re);
    return true;
  });
}

test("metadata that is no plain object leaves nothing in the glue's cache of metadata texts", async () => {
  const a = await createEngine({ peerId: "a" });
  const b = await createEngine({ peerId: "b" });
  // An array with an id has the own keys and values of {id} but the JSON text "[]"; a
  // boxed primitive with an id, those of {id} (or {0, 1, id}) and the text of the primitive.
  const array = [];
  array.id = "dl1";
  const number = Object.assign(new Number(5), { id: "dl2" });
  const string = Object.assign(new String("ab"), { id: "dl3" });
  for (const bad of [array, number, string]) {
    throwsCode(() => a.upsert("datalayer", bad, { name: "bad" }), "bad_metadata");
  }
  for (const e of [a, b]) {
    e.upsert("datalayer", { id: "dl1" }, { name: "good" });
    e.upsert("datalayer", { id: "dl2" }, { name: "good" });
    e.upsert("datalayer", { 0: "a", 1: "b", id: "dl3" }, { name: "good" });
    assert.deepEqual(e.get("datalayer", { id: "dl1" }), { name: "good" });
    assert.deepEqual(e.get("datalayer", { id: "dl2" }), { name: "good" });
  }
  assert.equal(a.state(), b.state());
  a.close();
  b.close();
});

test("metadata read through getters: the text kept is that of the values read, once each", async () => {
  const a = await createEngine({ peerId: "a" });
  // A getter answering another value at each read: JSON.stringify reads it once, the cache's
  // check again. The metadata sent is what one read gave, and a plain object later is
  // written as it is, whatever the getter's object left in the cache.
  let n = 0;
  const fickle = {
    id: "f1",
    get layerId() {
      return "L" + n++;
    },
  };
  for (let i = 0; i < 4; i++) {
    // After the getter's object, a plain one with the value of each of the next reads.
    for (const ahead of [0, 1, 2]) {
      a.unset("feature", fickle, "properties.x");
      const [sent] = a.flush();
      assert.match(JSON.parse(sent).metadata.layerId, /^L\d+$/);
      const l = "L" + (n + ahead - 1);
      a.unset("feature", { id: "f1", layerId: l }, "properties.x");
      const [msg] = a.flush();
      assert.deepEqual(JSON.parse(msg).metadata, { id: "f1", layerId: l });
    }
  }
  a.close();
});

test("a key, metadata or undo group holding a lone surrogate is refused, not merged with another", async () => {
  const a = await createEngine({ peerId: "a" });
  const f = { id: "f", layerId: "L" };
  a.upsert("feature", f, { type: "Feature", properties: {} });
  const before = a.state();
  // TextEncoder, and Go's JSON reader for an escape, read each lone surrogate as U+FFFD:
  // "g\ud800" and "g\udc00" would be one object, "k\ud800" and "k\udbff" one key.
  for (const id of ["g\ud800", "g\udc00", "\udfffg", "g\ud800\ud800"]) {
    throwsCode(() => a.upsert("feature", { id, layerId: "L" }, { type: "Feature" }), "bad_metadata", /lone surrogate/);
    throwsCode(() => a.upsert("feature", { id: "g", layerId: id }, { type: "Feature" }), "bad_metadata", /lone surrogate/);
    throwsCode(() => a.get("feature", { id, layerId: "L" }), "bad_metadata");
    throwsCode(() => a.seed("feature", { id, layerId: "L" }, { type: "Feature" }), "bad_metadata");
    // Member names, nested values (never kept by the cache), JSON text (raw or escaped).
    throwsCode(() => a.delete("feature", { ...f, [id]: 1 }), "bad_metadata");
    throwsCode(() => a.delete("feature", { ...f, extra: { deep: [id] } }), "bad_metadata");
    throwsCode(() => a.delete("feature", jsonText(`{"id":"f","layerId":${JSON.stringify(id)}}`)), "bad_metadata");
    throwsCode(() => a.delete("feature", jsonText(`{"id":"f","layerId":"${id}"}`)), "bad_metadata");
    throwsCode(() => a.update("feature", f, `properties.k${id}`, 1), "bad_key", /lone surrogate/);
    throwsCode(() => a.unset("feature", f, `properties.k${id}`), "bad_key");
    throwsCode(() => a.edit({ verb: "update", subject: "feature", metadata: f, key: id, value: 1 }), "bad_key");
    throwsCode(() => a.get("feature", f, id), "bad_key");
    throwsCode(() => a.update("feature", f, "properties.x", 1, { group: id }), "bad_option");
  }
  assert.equal(a.state(), before);
  assert.equal(a.pending(), 1); // the upsert only
  // Surrogate pairs are characters like any other, written raw or as escapes.
  const pair = { id: "g😀", layerId: "L" };
  a.upsert("feature", pair, { type: "Feature", properties: {} });
  a.update("feature", pair, "properties.k😀", 1, { group: "g😀" });
  assert.deepEqual(a.get("feature", jsonText('{"id":"g\\ud83d\\ude00","layerId":"L"}'), "properties.k😀"), 1);
  // A backslash followed by "ud800" in metadata is text, not an escape.
  a.update("feature", { id: "g\\ud800", layerId: "L" }, "properties.k", 2);
  assert.deepEqual(a.get("feature", jsonText('{"id":"g\\\\ud800","layerId":"L"}')), { properties: { k: 2 } });
  a.close();
});

test("without String.prototype.isWellFormed (older browsers), lone surrogates are found all the same", async () => {
  const own = Object.getOwnPropertyDescriptor(String.prototype, "isWellFormed");
  delete String.prototype.isWellFormed;
  let glue;
  try {
    glue = await import("../index.js?without-isWellFormed"); // a second instance of the module
  } finally {
    Object.defineProperty(String.prototype, "isWellFormed", own);
  }
  const a = await glue.createEngine({ peerId: "a" });
  const f = { id: "f", layerId: "L" };
  for (const k of ["\ud800", "a\udbff", "\udc00b", "a\udfffb", "\ud800\ud800", "\udc00\ud800", "😀\ud800", "\udc00😀"]) {
    assert.throws(() => a.update("feature", f, "properties." + k, 1), { code: "bad_key" }, JSON.stringify(k));
    assert.throws(() => a.delete("feature", { ...f, x: k }), { code: "bad_metadata" }, JSON.stringify(k));
  }
  for (const k of ["", "a", "😀", "a😀b", "\ud83d\ude00\ud83d\ude00", "東京"]) {
    a.update("feature", f, "properties.k" + k, 1);
    a.delete("feature", { ...f, x: k });
  }
  a.close();
});

test("maxDrift and captureInterval past a time.Duration's range are bad_option, not wrapped", async () => {
  // The glue takes any safe integer; the module refuses what time.Duration cannot hold
  // (9,223,372,036,854 ms): 18446744073710 ms wrapped to 0 — the drift guard off.
  for (const n of [9_223_372_036_855, 18_446_744_073_710, 18_446_744_073_711, Number.MAX_SAFE_INTEGER]) {
    for (const key of ["maxDrift", "captureInterval"]) {
      await assert.rejects(createEngine({ [key]: n }), (e) => {
        assert.ok(e instanceof MapcrdtError);
        assert.equal(e.code, "bad_option");
        assert.match(e.message, new RegExp(`${key} must be at most 9223372036854`));
        return true;
      });
    }
  }
  await assert.rejects(createEngine({ maxDrift: 2 ** 53 }), { code: "bad_option" }); // the glue's own check
  const now = 1_727_184_449_010;
  const a = await createEngine({ peerId: "a", maxDrift: 9_223_372_036_854, captureInterval: 9_223_372_036_854, now: () => now });
  const ahead = (ms, seq) =>
    JSON.stringify({ kind: "OperationMessage", sender: "b", verb: "update", subject: "map", metadata: {}, key: "properties.n", value: seq, hlc: `${now + ms}:0:b`, seq });
  a.receive(ahead(100 * 365 * 86_400_000, 1)); // 100 years ahead: inside the longest guard
  throwsCode(() => a.receive(ahead(1000 * 365 * 86_400_000, 2)), "clock_drift"); // 1,000: past it
  a.close();
});

test("setPeers refuses an empty peer id, alone or among others, changing nothing", async () => {
  const e = await createEngine({ peerId: "a" });
  e.setPeers(["b", "c"]);
  // [""] crossed as "", the module's "no list": it cleared the peers in silence.
  for (const bad of [[""], ["", ""], ["b", ""], ["", "b"]]) {
    throwsCode(() => e.setPeers(bad), "bad_option", /empty/);
    assert.deepEqual(e.peers(), ["b", "c"]);
  }
  e.setPeers([]); // no peers: an empty list
  assert.deepEqual(e.peers(), []);
  e.close();
});

test("after close(), every method throws bad_state before it looks at its arguments", async () => {
  const a = await createEngine({ peerId: "a" });
  const f = { id: "f1", layerId: "L1" };
  a.update("feature", f, "properties.x", 1);
  const [msg] = a.flush();
  const b = await createEngine({ peerId: "b" });
  const off = b.onChange(() => {});
  b.close();
  const proto = Object.getPrototypeOf(b);
  const methods = Object.getOwnPropertyNames(proto).filter((n) => n !== "constructor" && n !== "close" && typeof Object.getOwnPropertyDescriptor(proto, n).value === "function");
  assert.ok(methods.length >= 30, methods.join(" "));
  // Bad arguments (none), then good ones: bad_state either way.
  const good = {
    update: ["feature", f, "properties.x", 2],
    unset: ["feature", f, "properties.x"],
    upsert: ["feature", f, {}],
    delete: ["feature", f],
    edit: [{ verb: "delete", subject: "feature", metadata: f }],
    seed: ["feature", f, {}],
    receive: [msg],
    onPeerMessage: [msg],
    get: ["feature", f],
    syncRequest: ["a"],
    setPeers: [["a"]],
    markSaved: ["1727184449010:0:a"],
    batch: [() => {}],
    onChange: [() => {}],
    memory: [],
  };
  for (const name of methods) {
    throwsCode(() => b[name](), "bad_state", /closed/);
    throwsCode(() => b[name](...(good[name] ?? [])), "bad_state", /closed/);
  }
  off(); // unsubscribing after close is harmless
  b.close(); // and so is closing again
  assert.equal(b.closed, true);
  assert.equal(b.peerId, "b");
  a.close();
});
