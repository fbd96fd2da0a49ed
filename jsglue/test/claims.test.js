// What index.d.ts's doc comments promise, claim by claim, where no other test holds it: a
// default, a bound, the code an error carries, an ordering, what a call changes and what
// it leaves alone. Each test names the comment it holds to.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createEngine, initialize, jsonText, JSONText, merge, MapcrdtError } from "../index.js";
import { manualClock } from "./net.js";

const f1 = { id: "f1", layerId: "L1", featureType: "marker" };

function throwsCode(fn, code, re) {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof MapcrdtError, `not a MapcrdtError: ${e}`);
    assert.equal(e.code, code, `code of "${e.message}"`);
    if (re) assert.match(e.message, re);
    return true;
  });
}

async function rejectsCode(promise, code, re) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof MapcrdtError, `not a MapcrdtError: ${e}`);
    assert.equal(e.code, code, `code of "${e.message}"`);
    if (re) assert.match(e.message, re);
    return true;
  });
}

const deliver = (from, to) => {
  for (const m of from.flush()) to.receive(m);
};

test("JSONText: anything but a string is invalid_json, in the constructor and in jsonText()", () => {
  for (const bad of [3, null, undefined, {}, ["{}"], new Uint8Array([123, 125])]) {
    throwsCode(() => new JSONText(bad), "invalid_json");
    throwsCode(() => jsonText(bad), "invalid_json");
  }
  assert.equal(jsonText('"x"').text, '"x"');
  assert.ok(jsonText("1") instanceof JSONText);
});

test("Value: written as JSON.stringify writes it; what it refuses or writes nothing for is bad_value", async () => {
  const e = await createEngine({ peerId: "alice" });
  const put = (v) => {
    e.update("map", {}, "properties.v", v);
    return e.get("map", {}, "properties.v");
  };
  assert.equal(put(NaN), null);
  assert.equal(put(Infinity), null);
  assert.equal(put(-Infinity), null);
  assert.equal(put(new Date(0)), "1970-01-01T00:00:00.000Z");
  assert.deepEqual(put(new Map([["a", 1]])), {});
  assert.deepEqual(put(new Set([1])), {});
  assert.deepEqual(put(new ArrayBuffer(4)), {});
  assert.deepEqual(put(new Uint8Array([7, 8])), { 0: 7, 1: 8 });
  assert.deepEqual(put({ a: 1, u: undefined, f: () => 1 }), { a: 1 });
  assert.deepEqual(put({ toJSON: () => ({ via: "toJSON" }) }), { via: "toJSON" });
  const before = e.state();
  for (const bad of [undefined, () => 1, Symbol("s"), 10n, { big: 1n }]) {
    throwsCode(() => e.update("map", {}, "properties.v", bad), "bad_value");
  }
  const cycle = {};
  cycle.self = cycle;
  throwsCode(() => e.update("map", {}, "properties.v", cycle), "bad_value");
  assert.equal(e.state(), before);
  e.close();
});

test("EngineOptions: maxDrift, undoDepth and syncPage take positive integers (0 is bad_option), captureInterval 0 and up", async () => {
  for (const key of ["maxDrift", "undoDepth", "syncPage"]) {
    await rejectsCode(createEngine({ [key]: 0 }), "bad_option", new RegExp(key));
    const e = await createEngine({ [key]: 1 });
    e.close();
  }
  for (const key of ["maxMessageBytes", "maxDepth", "maxBatch", "maxKeyBytes", "maxKeyParts"]) {
    await rejectsCode(createEngine({ limits: { [key]: 0 } }), "bad_option", new RegExp(key));
  }
  const e = await createEngine({ captureInterval: 0 });
  e.close();
  await rejectsCode(createEngine({ captureInterval: -1 }), "bad_option", /captureInterval/);
});

test("EngineOptions.peerId: default a fresh UUID", async () => {
  const a = await createEngine();
  const b = await createEngine();
  const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
  assert.match(a.peerId, uuid);
  assert.match(b.peerId, uuid);
  assert.notEqual(a.peerId, b.peerId);
  a.close();
  b.close();
});

test("EngineOptions.maxDrift: a remote clock up to maxDrift ahead is taken, one more ms is clock_drift", async () => {
  const clock = manualClock(1_000_000_000);
  const e = await createEngine({ peerId: "e", now: clock.now, maxDrift: 5_000 });
  const op = (wall, seq) =>
    JSON.stringify({ kind: "OperationMessage", sender: "z", verb: "update", subject: "map", metadata: {}, key: "properties.a", value: seq, hlc: `${wall}:0:z`, seq });
  throwsCode(() => e.receive(op(1_000_005_001, 1)), "clock_drift");
  e.receive(op(1_000_005_000, 1));
  assert.equal(e.get("map", {}, "properties.a"), 1);
  e.close();
});

test("EngineOptions.now: read at most once per engine call", async () => {
  let calls = 0;
  const now = () => {
    calls++;
    return 1_727_184_449_010;
  };
  const e = await createEngine({ peerId: "e", now });
  const other = await createEngine({ peerId: "o", now: () => 1_727_184_449_010 });
  other.update("map", {}, "properties.b", 1);
  const [msg] = other.flush();
  const work = {
    update: () => e.update("map", {}, "properties.a", 1),
    unset: () => e.unset("map", {}, "properties.a"),
    upsert: () => e.upsert("feature", f1, { type: "Feature" }),
    delete: () => e.delete("feature", f1),
    edit: () => e.edit({ verb: "update", subject: "map", metadata: {}, key: "properties.c", value: 2 }),
    seed: () => e.seed("datalayer", { id: "L1" }, { name: "l" }),
    startBatch: () => e.startBatch(),
    commitBatch: () => e.commitBatch(),
    batch: () => e.batch(() => {}),
    flush: () => e.flush(),
    pending: () => e.pending(),
    receive: () => e.receive(msg),
    onPeerMessage: () => e.onPeerMessage(other.syncRequest("e")),
    syncRequest: () => e.syncRequest("o"),
    undo: () => e.undo(),
    redo: () => e.redo(),
    canUndo: () => e.canUndo(),
    get: () => e.get("map", {}),
    state: () => e.state(),
    clock: () => e.clock(),
    vector: () => e.vector(),
    setPeers: () => e.setPeers(["o"]),
    peers: () => e.peers(),
    compact: () => e.compact(),
    snapshot: () => e.snapshot(),
    markSaved: () => e.markSaved("1727184449010:0:e"),
    savedMessage: () => e.savedMessage(),
    dirty: () => e.dirty(),
    memory: () => e.memory(),
    close: () => e.close(),
  };
  for (const [name, fn] of Object.entries(work)) {
    calls = 0;
    fn();
    assert.ok(calls <= 1, `${name} read the clock ${calls} times`);
  }
  other.close();
});

test("EngineOptions.captureInterval: edits within it are one undo step, on the wall clock", async () => {
  const clock = manualClock();
  const e = await createEngine({ peerId: "e", now: clock.now, captureInterval: 500 });
  e.update("map", {}, "properties.a", 1);
  clock.advance(400);
  e.update("map", {}, "properties.a", 2);
  clock.advance(500); // 500 after the last edit: within the interval still, 900 after the first
  e.update("map", {}, "properties.a", 3);
  clock.advance(501);
  e.update("map", {}, "properties.a", 4);
  e.update("map", {}, "properties.b", 1, { group: "g" }); // a group's edit joins no interval
  e.undo();
  e.undo();
  assert.equal(e.get("map", {}, "properties.a"), 3);
  e.undo();
  assert.equal(e.get("map", {}, "properties.a"), undefined, "the three edits each within 500 ms of the last: one step");
  assert.equal(e.canUndo(), false);
  e.close();
});

test("batch(fn): committed even when fn throws after options.now broke (opening and closing a batch read no clock)", async () => {
  let broken = false;
  const e = await createEngine({ peerId: "e", now: () => (broken ? NaN : 1_727_184_449_010) });
  assert.throws(
    () =>
      e.batch(() => {
        e.update("map", {}, "properties.a", 1);
        broken = true;
        throw new Error("boom");
      }),
    /boom/,
  );
  assert.equal(e.inBatch(), false, "committed");
  broken = false;
  const [msg] = e.flush();
  assert.equal(JSON.parse(msg).verb, "batch");
  e.close();
});

test("EditOptions.group: consecutive edits of one group are one undo step; another group or none starts one", async () => {
  const e = await createEngine({ peerId: "e" });
  e.update("map", {}, "properties.a", 1, { group: "drag" });
  e.update("map", {}, "properties.b", 1, { group: "drag" });
  e.update("map", {}, "properties.c", 1, { group: "form" });
  e.update("map", {}, "properties.d", 1);
  e.update("map", {}, "properties.e", 1, { group: "form" });
  const undos = [];
  while (e.canUndo()) undos.push(e.undo().changes.map((c) => c.key).sort().join(","));
  assert.deepEqual(undos, ["properties.e", "properties.d", "properties.c", "properties.a,properties.b"]);
  e.close();
});

test("EditOptions.oldValue: undo restores it where the engine never saw a value, and ignores it where it did", async () => {
  const e = await createEngine({ peerId: "e" });
  e.update("feature", f1, "properties.name", "new", { oldValue: "from the server" });
  e.undo();
  assert.equal(e.get("feature", f1, "properties.name"), "from the server");
  e.update("feature", f1, "properties.color", "red");
  e.update("feature", f1, "properties.color", "blue", { oldValue: "green" });
  e.undo();
  assert.equal(e.get("feature", f1, "properties.color"), "red", "the engine saw red: oldValue is not used");
  e.close();
});

test("ChangeKind: an update of an object never upserted makes it alive with a set, no created before it", async () => {
  const a = await createEngine({ peerId: "a" });
  const b = await createEngine({ peerId: "b" });
  a.update("feature", f1, "properties.name", "x");
  const [msg] = a.flush();
  const changes = b.receive(msg);
  assert.deepEqual(changes.map((c) => [c.kind, c.key, c.value]), [["set", "properties.name", "x"]]);
  // An unset leaves the objects above its path in place: on an object never seen, that is
  // a "set" of "properties" to {} (the top-most path it touched).
  a.unset("feature", { id: "f2", layerId: "L1" }, "properties.name");
  const un = b.receive(a.flush()[0]);
  assert.deepEqual(un.map((c) => [c.kind, c.key, c.value]), [["set", "properties", {}]]);
  a.update("feature", { id: "f2", layerId: "L1" }, "properties.name", "n");
  b.receive(a.flush()[0]);
  a.unset("feature", { id: "f2", layerId: "L1" }, "properties.name");
  const both = b.receive(a.flush()[0]);
  assert.deepEqual(both.map((c) => [c.kind, c.key]), [["unset", "properties.name"]]);
  a.close();
  b.close();
});

test("Change: metadata canonical (members sorted), hlc the clock of the operation behind it", async () => {
  const a = await createEngine({ peerId: "a" });
  const b = await createEngine({ peerId: "b" });
  a.update("feature", { layerId: "L1", id: "f1", featureType: "marker", zeta: 1, alpha: 2 }, "properties.name", "x");
  const [msg] = a.flush();
  const [c] = b.receive(msg);
  assert.deepEqual(Object.keys(c.metadata), ["alpha", "featureType", "id", "layerId", "zeta"]);
  assert.equal(c.hlc, JSON.parse(msg).hlc);
  a.close();
  b.close();
});

test("UndoResult and ChangeEvent: done false with nothing to redo; an undo's event carries skipped: [] when none", async () => {
  const e = await createEngine({ peerId: "e" });
  const events = [];
  e.onChange((ev) => events.push(ev));
  assert.equal(e.redo().done, false);
  e.update("map", {}, "properties.a", 1);
  const u = e.undo();
  assert.equal(u.done, true);
  assert.deepEqual(u.skipped, []);
  assert.equal(events.at(-1).origin, "undo");
  assert.deepEqual(events.at(-1).skipped, []);
  e.redo();
  assert.equal(events.at(-1).origin, "redo");
  assert.deepEqual(events.at(-1).skipped, []);
  assert.equal(e.get("map", {}, "properties.a"), 1);
  e.close();
});

test("startBatch: a second one is bad_state; batch(fn) with a batch open is bad_state without calling fn", async () => {
  const e = await createEngine({ peerId: "e" });
  e.startBatch();
  e.update("map", {}, "properties.a", 1);
  throwsCode(() => e.startBatch(), "bad_state");
  let called = false;
  throwsCode(() => e.batch(() => (called = true)), "bad_state");
  assert.equal(called, false);
  assert.equal(e.inBatch(), true, "the batch open stays open");
  e.commitBatch();
  const msgs = e.flush();
  assert.equal(msgs.length, 1);
  assert.equal(JSON.parse(msgs[0]).verb, "batch");
  e.close();
});

test("undo, redo and snapshot while a batch is open throw bad_state, changing nothing", async () => {
  const e = await createEngine({ peerId: "e" });
  e.update("map", {}, "properties.a", 1);
  e.update("map", {}, "properties.a", 2);
  e.undo();
  e.startBatch();
  e.update("map", {}, "properties.b", 1);
  for (const m of ["undo", "redo", "snapshot"]) throwsCode(() => e[m](), "bad_state");
  assert.equal(e.inBatch(), true);
  e.commitBatch();
  assert.equal(e.get("map", {}, "properties.a"), 1);
  assert.equal(e.canRedo(), false, "the batch, a new edit, cleared the redo");
  e.undo();
  assert.equal(e.get("map", {}, "properties.b"), undefined);
  assert.equal(e.get("map", {}, "properties.a"), 1);
  e.close();
});

test("seed: never sent, never undone", async () => {
  const e = await createEngine({ peerId: "e" });
  e.seed("datalayer", { id: "L1" }, { name: "server" });
  assert.equal(e.canUndo(), false);
  assert.deepEqual(e.flush(), []);
  e.update("datalayer", { id: "L1" }, "name", "mine");
  e.seed("datalayer", { id: "L2" }, { name: "other" });
  e.undo();
  assert.equal(e.get("datalayer", { id: "L1" }, "name"), "server");
  assert.deepEqual(e.get("datalayer", { id: "L2" }), { name: "other" });
  assert.equal(e.canUndo(), false);
  // Nor is a seed a local edit that clears the redo (DESIGN §7); a refused edit is none either.
  e.seed("datalayer", { id: "L3" }, { name: "third" });
  throwsCode(() => e.update("datalayer", { id: "L1" }, "", 1), "bad_key");
  assert.equal(e.canRedo(), true);
  e.redo();
  assert.equal(e.get("datalayer", { id: "L1" }, "name"), "mine");
  e.close();
});

test("flush: the replies receive() queued, then the outbox; pending() is at least what flush() gives", async () => {
  const a = await createEngine({ peerId: "a" });
  const b = await createEngine({ peerId: "b" });
  a.update("map", {}, "properties.x", 1);
  a.update("map", {}, "properties.y", 1);
  a.flush();
  a.update("map", {}, "properties.z", 1);
  const [third] = a.flush(); // seq 3: b lacks 1 and 2, and asks
  b.update("map", {}, "properties.mine", 1);
  b.update("map", {}, "properties.mine", 2); // coalesced: one message
  b.receive(third);
  const n = b.pending();
  const out = b.flush();
  assert.ok(n >= out.length, `pending ${n}, flush ${out.length}`);
  assert.equal(out.length, 2);
  assert.equal(JSON.parse(out[0]).kind, "PeerMessage", "the gap's sync request first");
  assert.equal(JSON.parse(out[0]).message.verb, "ListOperationsRequest");
  assert.equal(JSON.parse(out[1]).kind, "OperationMessage");
  assert.equal(b.pending(), 0);
  a.close();
  b.close();
});

test("state(): sorted by subject, then identity", async () => {
  const e = await createEngine({ peerId: "e" });
  e.update("map", {}, "properties.a", 1);
  e.update("feature", { id: "b", layerId: "L2" }, "properties.a", 1);
  e.update("feature", { id: "a", layerId: "L2" }, "properties.a", 1);
  e.update("feature", { id: "z", layerId: "L1" }, "properties.a", 1);
  e.update("datalayer", { id: "L2" }, "name", 1);
  e.update("datalayer", { id: "L1" }, "name", 1);
  e.update("mappermissions", {}, "x", 1);
  e.update("datalayerpermissions", { id: "L1" }, "x", 1);
  const names = JSON.parse(e.state()).map((o) => [o.subject, o.metadata.layerId ?? "", o.metadata.id ?? ""].join("/"));
  const sorted = [...names].sort();
  assert.deepEqual(names, sorted);
  assert.equal(names.length, 8);
  e.close();
});

test("clock(): at or after every clock issued or received, and the next edit is stamped after it", async () => {
  const ca = manualClock(1_000_000_000);
  const a = await createEngine({ peerId: "a", now: ca.now });
  const b = await createEngine({ peerId: "b", now: manualClock(1_000_000_000 + 30_000).now });
  a.update("map", {}, "properties.x", 1);
  const [m] = a.flush();
  assert.equal(a.clock(), JSON.parse(m).hlc, "issued");
  b.update("map", {}, "properties.y", 1);
  const [mb] = b.flush();
  a.receive(mb);
  const cmp = (x, y) => {
    const [xw, xc, xp] = x.split(":");
    const [yw, yc, yp] = y.split(":");
    return Number(xw) - Number(yw) || Number(xc) - Number(yc) || (xp < yp ? -1 : xp > yp ? 1 : 0);
  };
  assert.ok(cmp(a.clock(), JSON.parse(mb).hlc) >= 0, `${a.clock()}: received ${JSON.parse(mb).hlc}, 30 s ahead`);
  assert.equal(a.clock().split(":")[0], JSON.parse(mb).hlc.split(":")[0], "the HLC's receive rule: moved to the received walltime");
  const held = a.clock();
  a.update("map", {}, "properties.z", 1);
  const [next] = a.flush();
  assert.ok(cmp(JSON.parse(next).hlc, held) > 0);
  assert.equal(a.clock(), JSON.parse(next).hlc);
  a.close();
  b.close();
});

test("peers(): what a JoinResponse or ListPeersResponse announced last (an object of id → name too), or setPeers", async () => {
  const e = await createEngine({ peerId: "e" });
  e.receive({ kind: "JoinResponse", peer: "e", peers: ["relay", "x"] });
  assert.deepEqual(e.peers().sort(), ["relay", "x"]);
  e.receive({ kind: "ListPeersResponse", peers: { relay: "Relay", y: "Yann" } });
  assert.deepEqual(e.peers().sort(), ["relay", "y"]);
  e.setPeers(["z"]);
  assert.deepEqual(e.peers(), ["z"]);
  throwsCode(() => e.setPeers(["ok", "has space"]), "bad_option");
  assert.deepEqual(e.peers(), ["z"], "a bad list changes nothing");
  e.close();
});

test("receive(): a JoinResponse queues a sync request; a ListPeersResponse a probe of each peer it adds", async () => {
  const e = await createEngine({ peerId: "e" });
  assert.deepEqual(e.receive({ kind: "JoinResponse", peer: "e", peers: ["relay"] }), []);
  const [req] = e.flush();
  const r = JSON.parse(req);
  assert.equal(r.recipient, "relay");
  assert.equal(r.message.verb, "ListOperationsRequest");
  e.receive({ kind: "ListPeersResponse", peers: ["relay", "e", "newcomer"] });
  const probes = e.flush().map((m) => JSON.parse(m));
  assert.deepEqual(probes.map((p) => [p.recipient, p.message.verb, p.message.pushBack]), [["newcomer", "ListOperationsRequest", true]]);
  e.close();
});

test("syncRequest(): with no recipient, one of the known peers", async () => {
  const e = await createEngine({ peerId: "e" });
  e.setPeers(["p1", "p2", "p3"]);
  const seen = new Set();
  for (let i = 0; i < 60; i++) seen.add(JSON.parse(e.syncRequest()).recipient);
  for (const r of seen) assert.ok(["p1", "p2", "p3"].includes(r), r);
  assert.ok(seen.size > 1, "random among them");
  e.setPeers(["e", "p2"]);
  for (let i = 0; i < 20; i++) assert.equal(JSON.parse(e.syncRequest()).recipient, "p2", "never itself");
  e.setPeers(["e"]);
  throwsCode(() => e.syncRequest(), "bad_state");
  e.close();
});

test("markSaved: a bad or future clock changes nothing; savedMessage marks everything held saved", async () => {
  const clock = manualClock(1_000_000_000);
  const e = await createEngine({ peerId: "e", now: clock.now });
  e.update("map", {}, "properties.a", 1);
  e.flush();
  const before = JSON.stringify(e.dirty()) + e.clock();
  throwsCode(() => e.markSaved("nope"), "bad_hlc");
  throwsCode(() => e.markSaved("1000060001:0:server"), "clock_drift");
  assert.equal(JSON.stringify(e.dirty()) + e.clock(), before);
  e.markSaved("1000060000:0:server"); // maxDrift ahead exactly: taken
  assert.deepEqual(e.dirty(), []);
  e.update("map", {}, "properties.b", 1);
  assert.equal(e.dirty().length, 1, "an edit after the save (the clock moved past it) is dirty");
  e.savedMessage();
  assert.deepEqual(e.dirty(), []);
  e.close();
});

test("dirty(): parents first, and an edit a peer's newer write superseded is not dirty", async () => {
  const clock = manualClock();
  const a = await createEngine({ peerId: "a", now: clock.now });
  const b = await createEngine({ peerId: "b", now: clock.now });
  a.update("feature", { id: "f1", layerId: "L1" }, "properties.name", "x");
  a.update("map", {}, "properties.name", "m");
  a.update("datalayer", { id: "L1" }, "name", "l");
  a.update("datalayer", { id: "L0" }, "name", "l");
  assert.deepEqual(a.dirty().map((d) => d.subject), ["map", "datalayer", "datalayer", "feature"]);
  a.flush();
  clock.advance(10);
  b.update("map", {}, "properties.name", "bob's");
  deliver(b, a);
  assert.deepEqual(a.dirty().map((d) => d.subject), ["datalayer", "datalayer", "feature"]);
  a.close();
  b.close();
});

test("snapshot(): past 4 × limits.maxMessageBytes it is too_large, and what a restore takes otherwise", async () => {
  const limits = { maxMessageBytes: 64 * 1024 };
  const e = await createEngine({ peerId: "e", limits });
  let i = 0;
  for (; i < 3; i++) e.update("feature", { id: `f${i}`, layerId: "L" }, "properties.text", "x".repeat(60_000));
  e.flush();
  const snap = e.snapshot();
  assert.ok(snap.length > 3 * 60_000 && snap.length <= 4 * limits.maxMessageBytes, String(snap.length));
  const r = await createEngine({ snapshot: snap, limits });
  assert.equal(r.state(), e.state());
  r.close();
  for (; i < 6; i++) e.update("feature", { id: `f${i}`, layerId: "L" }, "properties.text", "x".repeat(60_000));
  e.flush();
  throwsCode(() => e.snapshot(), "too_large");
  e.close();
});

test("limits.maxBatch: a plain sync response with more operations is too_large", async () => {
  const a = await createEngine({ peerId: "a" });
  for (let i = 0; i < 5; i++) a.update("map", {}, `properties.k${i}`, i);
  a.flush();
  // uMap's plain Journal asks without a vector: the answer is a list of operations.
  const [reply] = a.onPeerMessage({ kind: "PeerMessage", sender: "b", recipient: "a", message: { verb: "ListOperationsRequest", lastKnownHLC: "0:0:b" } }).replies;
  const ops = JSON.parse(reply).message.operations;
  assert.equal(ops.length, 5);
  const small = await createEngine({ peerId: "b", limits: { maxBatch: 4 } });
  throwsCode(() => small.receive(reply), "too_large");
  assert.equal(small.state(), "[]");
  const enough = await createEngine({ peerId: "b", limits: { maxBatch: 5 } }); // the recipient: another ignores it
  enough.receive(reply);
  assert.equal(enough.state(), a.state());
  for (const e of [a, small, enough]) e.close();
});

test("syncPage: an answer carries at most that many operations, and the rest follows in pages", async () => {
  const a = await createEngine({ peerId: "a", syncPage: 3 });
  const b = await createEngine({ peerId: "b" });
  for (let i = 0; i < 7; i++) a.update("map", {}, `properties.k${i}`, i);
  a.flush();
  let msg = b.syncRequest("a");
  let pages = 0;
  for (;;) {
    const { replies } = a.onPeerMessage(msg);
    assert.equal(replies.length, 1);
    pages++;
    const next = b.onPeerMessage(replies[0]).replies;
    if (next.length === 0) break;
    msg = next[0];
  }
  assert.equal(pages, 3);
  assert.equal(b.state(), a.state());
  a.close();
  b.close();
});

test("memory(gc): a collection first when gc, and counters that never decrease", async () => {
  const e = await createEngine({ peerId: "e" });
  const m1 = e.memory();
  const m2 = e.memory(true);
  assert.ok(m2.numGC > m1.numGC, `${m1.numGC} → ${m2.numGC}`);
  assert.ok(m2.totalAlloc >= m1.totalAlloc && m2.mallocs >= m1.mallocs);
  assert.ok(m2.wasmMemory >= m1.wasmMemory);
  e.close();
});

test("merge: too_large over 64 MiB together, too_deep past 64 levels, bad_value for what is not a FeatureCollection", async () => {
  const fc = (props) => JSON.stringify({ type: "FeatureCollection", features: [{ type: "Feature", id: "1", properties: props }] });
  const third = "x".repeat(((64 << 20) / 3) | 0);
  const big = fc({ s: third });
  await rejectsCode(merge(big, big, fc({ s: third + "x".repeat(4096) })), "too_large");
  const small = fc({ s: "x".repeat(((64 << 20) / 3 - 4096) | 0) });
  await merge(small, small, small);
  const nest = (n) => '{"a":'.repeat(n) + "1" + "}".repeat(n);
  // The document's levels count: FeatureCollection, features, a feature, and 61 more.
  await merge(fc(JSON.parse(nest(61))), fc({}), fc({}));
  await rejectsCode(merge(fc(JSON.parse(nest(62))), fc({}), fc({})), "too_deep");
  await rejectsCode(merge({ type: "Feature" }, fc({}), fc({})), "bad_value");
  await rejectsCode(merge("[1]", fc({}), fc({})), "bad_value");
});

test("peer ids: createEngine refuses a ':', a clock, syncRequest and setPeers take one (an old snapshot's replica); other faults are refused everywhere", async () => {
  await rejectsCode(createEngine({ peerId: "a:b" }), "bad_option");
  const e = await createEngine({ peerId: "e" });
  const op = (peer) => ({ kind: "OperationMessage", sender: "z", verb: "update", subject: "map", metadata: {}, key: "properties.a", value: peer.length, hlc: `${Date.now()}:0:${peer}`, seq: 1 });
  e.receive(op("a:b"));
  assert.deepEqual(e.vector(), { "a:b": 1 });
  assert.equal(JSON.parse(e.syncRequest("a:b")).recipient, "a:b");
  e.setPeers(["a:b"]);
  assert.deepEqual(e.peers(), ["a:b"]);
  await createEngine({ peerId: "x".repeat(128) }).then((x) => x.close());
  for (const bad of ["a b", 'a"b', "a\\b", "é", "x".repeat(129)]) {
    await rejectsCode(createEngine({ peerId: bad }), "bad_option");
    throwsCode(() => e.receive(op(bad)), "bad_hlc");
    throwsCode(() => e.syncRequest(bad), "bad_option");
    throwsCode(() => e.setPeers([bad]), "bad_option");
  }
  assert.deepEqual(e.vector(), { "a:b": 1 });
  e.close();
});

test("get(): undefined for an object never written, and for one deleted; {} for one written to {}, which state() leaves out", async () => {
  const e = await createEngine({ peerId: "e" });
  const m = { id: "x", layerId: "L" };
  assert.equal(e.get("feature", m), undefined);
  e.upsert("feature", m, {});
  assert.deepEqual(e.get("feature", m), {});
  assert.equal(e.state(), "[]");
  e.delete("feature", m);
  assert.equal(e.get("feature", m), undefined);
  assert.equal(e.get("feature", m, "properties"), undefined);
  e.close();
});

test("a message is taken or refused whole: a catch-up with one operation too far ahead changes nothing", async () => {
  const e = await createEngine({ peerId: "e" });
  const now = Date.now();
  const o = (key, wall, seq) => ({ verb: "update", subject: "map", metadata: {}, key, value: 1, hlc: `${wall}:0:z`, seq });
  const resp = { kind: "PeerMessage", sender: "z", recipient: "e", message: { verb: "ListOperationsResponse", operations: [o("properties.a", now, 1), o("properties.b", now + 120_000, 2)], vector: { z: 2 } } };
  const clock = e.clock();
  throwsCode(() => e.receive(resp), "clock_drift");
  assert.equal(e.state(), "[]");
  assert.deepEqual(e.vector(), {});
  assert.equal(e.clock(), clock);
  e.receive({ ...resp, message: { ...resp.message, operations: [o("properties.a", now, 1)], vector: { z: 1 } } });
  assert.deepEqual(e.vector(), { z: 1 }, "the same response without that operation is taken");
  e.close();
});

test("limits: each one given is the bound (key bytes and parts too_large, nesting too_deep, counted with the key's parts), undoDepth the steps kept", async () => {
  const e = await createEngine({ peerId: "e", limits: { maxKeyBytes: 10, maxKeyParts: 2, maxDepth: 3 }, undoDepth: 2 });
  e.update("map", {}, "a.bcdefghi", 1);
  throwsCode(() => e.update("map", {}, "a.bcdefghij", 1), "too_large");
  throwsCode(() => e.update("map", {}, "a.b.c", 1), "too_large");
  e.update("map", {}, "a.b", [1]);
  throwsCode(() => e.update("map", {}, "a.b", [[1]]), "too_deep");
  e.update("map", {}, "a", [[1]]);
  throwsCode(() => e.update("map", {}, "a", [[[1]]]), "too_deep");
  e.upsert("map", {}, { a: { b: { c: 1 } } });
  throwsCode(() => e.upsert("map", {}, { a: { b: { c: { d: 1 } } } }), "too_deep");
  e.update("feature", { id: "f", layerId: "L", x: { y: { z: 1 } } }, "k", 1); // metadata 3 levels deep
  throwsCode(() => e.update("feature", { id: "f", layerId: "L", x: { y: { z: { w: 1 } } } }, "k", 1), "too_deep");
  await rejectsCode(createEngine({ limits: { maxDepth: 2 } }), "bad_option", /MaxDepth above 2/);
  let steps = 0;
  while (e.canUndo()) {
    e.undo();
    steps++;
  }
  assert.equal(steps, 2);
  assert.equal(e.get("feature", { id: "f", layerId: "L" }, "k"), undefined, "the newest step undone");
  assert.deepEqual(e.get("map", {}), { a: [[1]] }, "the upsert undone; the older steps are gone: a stays [[1]]");
  e.close();
});

test("receive() returns the changes its onChange event carries", async () => {
  const a = await createEngine({ peerId: "a" });
  const b = await createEngine({ peerId: "b" });
  const events = [];
  b.onChange((ev) => events.push(ev));
  a.upsert("feature", f1, { type: "Feature", properties: { name: "x" } });
  const changes = b.receive(a.flush()[0]);
  assert.equal(events.length, 1);
  assert.equal(events[0].origin, "remote");
  assert.deepEqual(events[0].changes, changes);
  a.close();
  b.close();
});

test("limits.maxMessageBytes: a restore takes a snapshot of up to 4 times it, and refuses a larger one", async () => {
  const e = await createEngine({ peerId: "e" });
  for (let i = 0; i < 5; i++) e.update("feature", { id: `f${i}`, layerId: "L" }, "properties.text", "x".repeat(60_000));
  e.flush();
  const snap = e.snapshot();
  assert.ok(snap.length > 4 * 64 * 1024 && snap.length < 4 * 80 * 1024, String(snap.length));
  await rejectsCode(createEngine({ snapshot: snap, limits: { maxMessageBytes: 64 * 1024 } }), "too_large");
  const r = await createEngine({ snapshot: snap, limits: { maxMessageBytes: 80 * 1024 } });
  assert.equal(r.state(), e.state());
  r.close();
  e.close();
});

test("receive(): {kind: pong} and {kind: ping} change nothing; the bare text pong is invalid_json, another kind unknown_kind", async () => {
  const e = await createEngine({ peerId: "e" });
  for (const m of ['{"kind":"pong"}', { kind: "ping" }]) {
    assert.deepEqual(e.receive(m), []);
    assert.equal(e.pending(), 0);
  }
  throwsCode(() => e.receive("pong"), "invalid_json");
  throwsCode(() => e.receive({ kind: "JoinRequest" }), "unknown_kind");
  assert.equal(e.state(), "[]");
  e.close();
});

test("onPeerMessage(): returns the replies receive() would queue, and queues nothing", async () => {
  const a = await createEngine({ peerId: "a" });
  const b = await createEngine({ peerId: "b" });
  a.update("map", {}, "properties.x", 1);
  a.flush();
  const { replies } = a.onPeerMessage(b.syncRequest("a"));
  assert.equal(replies.length, 1);
  assert.equal(a.pending(), 0);
  assert.deepEqual(a.flush(), []);
  a.receive(b.syncRequest("a"));
  assert.equal(a.pending(), 1, "receive() queues the same reply");
  a.close();
  b.close();
});

test("wasmURL: once the module is loaded, initialize and merge naming another URL throw bad_option; the same URL, however written, is taken", async () => {
  const e = await createEngine({ peerId: "e" });
  const fc = '{"type":"FeatureCollection","features":[]}';
  await rejectsCode(initialize({ wasmURL: "/elsewhere/mapcrdt.wasm" }), "bad_option", /already loaded/);
  await rejectsCode(merge(fc, fc, fc, { wasmURL: "/elsewhere/mapcrdt.wasm" }), "bad_option", /already loaded/);
  const here = new URL("../mapcrdt.wasm", import.meta.url);
  await initialize({ wasmURL: here });
  await initialize({ wasmURL: here.href });
  (await createEngine({ wasmURL: here })).close();
  e.close();
});

test("commitBatch: an empty batch queues nothing and is no undo step; Edit.key: a literal dot is written \\.", async () => {
  const e = await createEngine({ peerId: "e" });
  e.update("map", {}, "properties.a", 1);
  e.flush();
  e.startBatch();
  e.commitBatch();
  assert.equal(e.pending(), 0);
  assert.deepEqual(e.flush(), []);
  e.undo();
  assert.equal(e.get("map", {}, "properties.a"), undefined, "the undo reverted the edit before the empty batch");
  e.update("map", {}, "properties.a\\.b", 1);
  assert.deepEqual(e.get("map", {}, "properties"), { "a.b": 1 });
  assert.equal(e.get("map", {}, "properties.a\\.b"), 1);
  assert.equal(e.get("map", {}, "properties.a.b"), undefined);
  e.close();
});

test("syncPage: by default an answer carries 10,000 operations, and says more follow", async () => {
  const a = await createEngine({ peerId: "a" });
  const b = await createEngine({ peerId: "b" });
  for (let i = 0; i <= 10_000; i++) a.update("map", {}, `properties.k${i}`, i);
  a.flush();
  const [page] = a.onPeerMessage(b.syncRequest("a")).replies;
  assert.ok(JSON.parse(page).message.more, "a partial page");
  const [next] = b.onPeerMessage(page).replies;
  assert.deepEqual(b.vector(), { a: 10_000 });
  const [last] = a.onPeerMessage(next).replies;
  assert.equal(JSON.parse(last).message.more, undefined);
  b.onPeerMessage(last);
  assert.deepEqual(b.vector(), { a: 10_001 });
  assert.equal(b.state(), a.state());
  a.close();
  b.close();
});

test("a clock up to maxDrift ahead moves the receiver's with it: a third peer whose wall clock is behind refuses the receiver's next edit (README)", async () => {
  const t = 1_727_184_449_010;
  const ahead = await createEngine({ peerId: "ahead", now: () => t + 59_000 });
  const middle = await createEngine({ peerId: "middle", now: () => t });
  const behind = await createEngine({ peerId: "behind", now: () => t - 2_000 });
  ahead.update("map", {}, "properties.a", 1);
  middle.receive(ahead.flush()[0]); // 59 s ahead: taken
  middle.update("map", {}, "properties.b", 1);
  const [msg] = middle.flush();
  assert.equal(JSON.parse(msg).hlc.split(":")[0], String(t + 59_000), "stamped at the clock it took");
  throwsCode(() => behind.receive(msg), "clock_drift");
  for (const e of [ahead, middle, behind]) e.close();
});

test("EngineOptions.snapshot: a damaged one — cut anywhere, not JSON, not an object, too deep — is bad_snapshot", async () => {
  const a = await createEngine({ peerId: "a" });
  a.update("map", {}, "properties.x", 1);
  a.flush();
  a.update("feature", { id: "f", layerId: "L" }, "properties.y", [1, 2]);
  const snap = a.snapshot();
  const damaged = [new TextEncoder().encode("hello"), "[]", "5", "[".repeat(1000), new Uint8Array([0xff, 0xfe]), new TextDecoder().decode(snap) + "x"];
  for (let i = 1; i < snap.length; i += 5) damaged.push(snap.slice(0, i));
  for (const s of damaged) await rejectsCode(createEngine({ snapshot: s }), "bad_snapshot");
  a.close();
});

test("limits.maxMessageBytes: the largest edit an engine takes reaches a late joiner with the same limits (its page is a PeerMessage, taken 4 KiB past the limit)", async () => {
  const limits = { maxMessageBytes: 4096 };
  const a = await createEngine({ peerId: "a", limits });
  let v = 4096;
  for (;; v--) {
    try {
      a.update("feature", f1, "properties.t", "x".repeat(v));
      break;
    } catch (e) {
      if (e.code !== "too_large") throw e;
    }
  }
  const [edit] = a.flush();
  assert.ok(edit.length > 4000, String(edit.length));
  const c = await createEngine({ peerId: "c", limits });
  const [page] = a.onPeerMessage(c.syncRequest("a")).replies;
  assert.ok(page.length > 4096, `a page of ${page.length} bytes`);
  c.onPeerMessage(page);
  assert.equal(c.state(), a.state());
  throwsCode(() => c.receive(edit.slice(0, -1) + " ".repeat(4097 - edit.length) + "}"), "too_large");
  a.close();
  c.close();
});

test("limits.maxMessageBytes: a peer's operation larger than the engine's own edits may be is too_large, in a page within the 4 KiB too, and changes nothing; a late joiner of its limits catches up on the rest", async () => {
  const a = await createEngine({ peerId: "a", limits: { maxMessageBytes: 16384 } });
  const limits = { maxMessageBytes: 4096 };
  const b = await createEngine({ peerId: "b", limits });
  b.update("feature", f1, "properties.n", 1);
  b.flush();
  a.update("feature", f1, "properties.t", "x".repeat(6000)); // an edit b's limits refuse
  a.flush();
  // b's request as an engine before "maxMessageBytes" writes it: a pages to its own limits.
  const [page] = a.onPeerMessage(b.syncRequest("a").replace(/"maxMessageBytes":\d+,/, "")).replies;
  assert.ok(page.length > 4096 && page.length <= 4096 + 4096, `a page of ${page.length} bytes`);
  const state = b.state();
  const vector = b.vector();
  throwsCode(() => b.onPeerMessage(page), "too_large", /limits\.maxMessageBytes/);
  assert.equal(b.state(), state);
  assert.deepEqual(b.vector(), vector);
  const c = await createEngine({ peerId: "c", limits });
  for (let msgs = [c.syncRequest("b")]; msgs.length; ) {
    const m = msgs.shift();
    msgs.push(...(JSON.parse(m).recipient === "b" ? b : c).onPeerMessage(m).replies);
  }
  assert.equal(c.state(), b.state());
  // With its limit in the request, a pages to it: the edit withheld, b takes the rest.
  for (let msgs = [b.syncRequest("a")]; msgs.length; ) {
    const m = msgs.shift();
    msgs.push(...(JSON.parse(m).recipient === "b" ? b : a).onPeerMessage(m).replies);
  }
  assert.equal(b.get("feature", f1, "properties.t"), undefined);
  a.close();
  b.close();
  c.close();
});

test("Edit.value: a delete takes none (bad_value), an update without one unsets its key", async () => {
  const e = await createEngine({ peerId: "e" });
  e.upsert("map", {}, { a: 1, b: 2 });
  throwsCode(() => e.edit({ verb: "delete", subject: "map", metadata: {}, value: { c: 3 } }), "bad_value", /delete takes no value/);
  assert.deepEqual(e.get("map", {}), { a: 1, b: 2 });
  e.edit({ verb: "update", subject: "map", metadata: {}, key: "a" });
  assert.deepEqual(e.get("map", {}), { b: 2 });
  e.edit({ verb: "delete", subject: "map", metadata: {} });
  assert.equal(e.get("map", {}), undefined);
  e.close();
});

test("Metadata: a feature needs layerId and id, a datalayer and its permissions id, the map and its permissions none; other fields travel along", async () => {
  const e = await createEngine({ peerId: "e" });
  for (const [subject, meta] of [["feature", { id: "f" }], ["feature", { layerId: "L" }], ["datalayer", {}], ["datalayerpermissions", { layerId: "L" }], ["datalayer", { id: 1 }]]) {
    throwsCode(() => e.update(subject, meta, "k", 1), "bad_metadata");
  }
  e.update("map", { id: "ignored", x: 1 }, "k", 1);
  e.update("mappermissions", {}, "k", 1);
  assert.equal(e.get("map", {}, "k"), 1, "the map is one object whatever its metadata");
  e.update("datalayer", { id: "L", name: "travels" }, "k", 1);
  assert.equal(e.get("datalayer", { id: "L" }, "k"), 1);
  e.close();
});

test("a catch-up in the compact form is taken or refused whole too: one operation too far ahead refuses all of it", async () => {
  let t = 1_727_184_449_010;
  const z = await createEngine({ peerId: "z", now: () => t });
  const e = await createEngine({ peerId: "e", now: () => 1_727_184_449_010 });
  z.update("map", {}, "properties.a", 1);
  t += 120_000; // z's wall clock jumps two minutes ahead
  z.update("map", {}, "properties.b", 1);
  z.flush();
  const [page] = z.onPeerMessage(e.syncRequest("z")).replies;
  assert.ok(JSON.parse(page).message.state, "the compact form");
  const clock = e.clock();
  throwsCode(() => e.onPeerMessage(page), "clock_drift");
  assert.equal(e.state(), "[]");
  assert.deepEqual(e.vector(), {});
  assert.equal(e.clock(), clock);
  z.close();
  e.close();
});

test("snapshot(): after a batch deleting more than limits.maxMessageBytes of features, it is made, without that undo step; the engine still undoes it", async () => {
  const limits = { maxMessageBytes: 64 * 1024 };
  const e = await createEngine({ peerId: "e", limits });
  const meta = (i) => ({ id: "f" + i, layerId: "L" });
  for (let i = 0; i < 100; i++) e.upsert("feature", meta(i), { type: "Feature", properties: { t: "x".repeat(3000) } });
  e.flush();
  e.batch(() => {
    for (let i = 0; i < 100; i++) e.delete("feature", meta(i));
  });
  e.flush();
  e.compact();
  const r = await createEngine({ snapshot: e.snapshot(), limits });
  assert.equal(r.state(), e.state());
  assert.equal(r.canUndo(), false);
  e.undo();
  assert.equal(e.get("feature", meta(42), "properties.t"), "x".repeat(3000));
  r.close();
  e.close();
});

test("EngineOptions.now: 2^53 - 1 is the last time taken; 2^53, a walltime no peer parses, is bad_option", async () => {
  await rejectsCode(createEngine({ peerId: "e", now: () => 2 ** 53 }), "bad_option", /options.now returned/);
  let t = 2 ** 53 - 1;
  const e = await createEngine({ peerId: "e", now: () => t });
  e.update("map", {}, "properties.a", 1);
  const [m] = e.flush();
  assert.equal(JSON.parse(m).hlc, `${2 ** 53 - 1}:0:e`);
  t = 2 ** 53;
  throwsCode(() => e.update("map", {}, "properties.a", 2), "bad_option");
  t = 2 ** 53 - 1;
  assert.equal(e.get("map", {}, "properties.a"), 1);
  e.close();
});

test("EditOptions.oldValue: null before an upsert says there was none (its undo deletes the object everywhere); a non-object is bad_value", async () => {
  const a = await createEngine({ peerId: "alice" });
  const b = await createEngine({ peerId: "bob" });
  const feature = { type: "Feature", geometry: { type: "Point", coordinates: [1, 2] }, properties: {} };
  a.upsert("feature", f1, feature, { oldValue: null });
  deliver(a, b);
  a.undo();
  deliver(a, b);
  assert.equal(a.get("feature", f1), undefined);
  assert.equal(b.get("feature", f1), undefined);
  const before = a.state();
  throwsCode(() => a.upsert("feature", f1, feature, { oldValue: 5 }), "bad_value");
  throwsCode(() => a.delete("feature", f1, { oldValue: "x" }), "bad_value");
  assert.equal(a.state(), before);
  assert.deepEqual(a.flush(), []);
  a.close();
  b.close();
});
