// A seeded random walk over the whole JavaScript surface, good calls and bad ones mixed:
// `node --test jsglue/test/random.test.js` (RANDOM_SEEDS=n for more seeds, RANDOM_SEED=s
// for one, RANDOM_STEPS=n for longer walks). Three engines edit, batch, undo, compact, restore from snapshots and exchange
// their messages in a random order, with duplicates; between those calls come calls with
// bad arguments of every JavaScript type. Whatever the seed:
//   - a call that throws throws a MapcrdtError whose code is one of index.d.ts's
//     ErrorCode, and the engine is as it was (state, outbox, undo, vector);
//   - good calls never throw;
//   - once every message is delivered and every pair has synced, the three engines hold
//     the same state;
//   - a fourth engine, fed corrupted copies of the messages (flipped bytes, cut texts),
//     never breaks: after all of it, an edit on it still works.
// A failure names its seed and step.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createEngine, merge, jsonText, MapcrdtError } from "../index.js";
import { manualClock } from "./net.js";

// The codes index.d.ts declares, read from it: the test follows the typed contract.
const dts = readFileSync(new URL("../index.d.ts", import.meta.url), "utf8");
const union = dts.match(/export type ErrorCode =([^;]*);/);
assert.ok(union, "index.d.ts declares ErrorCode");
const CODES = new Set([...union[1].matchAll(/"([a-z_]+)"/g)].map((m) => m[1]));
assert.ok(CODES.has("bad_value") && CODES.has("internal"), `ErrorCode read: ${[...CODES]}`);

/** mulberry32: a small seeded generator, the same sequence on every platform. */
function rng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n) => Math.floor(next() * n),
    pick: (xs) => xs[Math.floor(next() * xs.length)],
    chance: (p) => next() < p,
  };
}

const LAYERS = ["606d26bd-230f-4d3e-a2a7-0c3caed71548", "L2"];
const OBJECTS = [
  ["feature", { id: "f1", layerId: LAYERS[0], featureType: "marker" }],
  ["feature", { id: "f2", layerId: LAYERS[0], featureType: "polyline" }],
  ["feature", { id: "f1", layerId: LAYERS[1], featureType: "marker" }],
  ["datalayer", { id: LAYERS[0] }],
  ["map", {}],
];
// Parent and child paths, so that writes above and below one another meet.
const KEYS = ["properties", "properties.name", "properties._umap_options", "properties._umap_options.color", "geometry", "_umap_options.name"];

function goodValue(r) {
  switch (r.int(7)) {
    case 0:
      return `name ${r.int(100)} café`;
    case 1:
      return r.int(1000) / 8;
    case 2:
      return r.chance(0.5);
    case 3:
      return null;
    case 4:
      return { type: "Point", coordinates: [r.int(90), r.int(45)] };
    case 5:
      return { name: `n${r.int(10)}`, _umap_options: { color: r.pick(["Red", "Blue"]) } };
    default:
      return [r.int(3), "x", { y: r.int(5) }];
  }
}

/** A value JSON cannot hold, or a JSONText that is not JSON. */
function badValue(r) {
  const cyclic = { a: 1 };
  cyclic.self = cyclic;
  return r.pick([
    undefined,
    Symbol("s"),
    () => 1,
    10n,
    cyclic,
    { toJSON() {
      throw new Error("toJSON fails");
    } },
    { get x() {
      throw 42; // not even an Error
    } },
    jsonText("{bad"),
    jsonText(""),
    jsonText("[1] [2]"),
    JSON.parse("[".repeat(300) + "]".repeat(300)), // deeper than the default 64 levels
  ]);
}

function badMetadata(r) {
  const cyclic = { id: "c" };
  cyclic.layerId = cyclic;
  return r.pick([
    undefined,
    null,
    42,
    "f1",
    [],
    {},
    { id: 5, layerId: LAYERS[0] },
    { layerId: LAYERS[0] },
    { id: "x", layerId: 7 },
    cyclic,
    { get id() {
      throw new Error("id getter fails");
    }, layerId: "L" },
    new Proxy({ id: "p", layerId: "L" }, { ownKeys() {
      throw new Error("ownKeys fails");
    } }),
    { id: "t", layerId: "L", toJSON() {
      throw 7;
    } },
    jsonText("{"),
    jsonText("[1]"),
  ]);
}

function badKey(r) {
  return r.pick([undefined, null, 1, "", ".", "a..b", "properties.", ".x", "x".repeat(5000), "a\u0000b", {}]);
}

/** A message that is not one: never a valid operation, so it cannot forge one. */
function badMessage(r, sample) {
  return r.pick([
    undefined,
    null,
    7,
    "",
    "not json",
    "[]",
    "{}",
    '{"kind":"OperationMessage"}',
    '{"kind":"PeerMessage","message":{"verb":"ListOperationsRequest","vector":[1]}}',
    '{"kind":"OperationMessage","verb":"update","subject":"planet","hlc":"1:0:x"}',
    sample ? sample.slice(0, Math.max(1, r.int(sample.length))) : "{",
    new Uint8Array([0xff, 0xfe, 0x7b, 0x22]),
    new Uint8Array(64).map(() => r.int(256)).buffer,
    { kind: "OperationMessage", verb: "explode" },
    Symbol("m"),
  ]);
}

/** sample with a few bytes changed: sometimes still a valid message, sometimes not. */
function corrupt(r, sample) {
  const b = Buffer.from(sample);
  const n = 1 + r.int(3);
  for (let i = 0; i < n; i++) b[r.int(b.length)] = r.pick([0x22, 0x5c, 0x7b, 0x7d, 0x3a, 0x2c, 0x30, 0x39, 0x2e, 0x00, 0xc3, r.int(256)]);
  return r.chance(0.5) ? b.toString("latin1") : new Uint8Array(b);
}

/** What a throwing call must leave as it was. */
function snapshotOf(e) {
  return JSON.stringify([e.state(), e.pending(), e.canUndo(), e.canRedo(), e.inBatch(), e.vector(), e.dirty().length]);
}

function expectMapcrdtError(err, what) {
  assert.ok(err instanceof MapcrdtError && err instanceof Error, `${what}: threw ${err} (${typeof err}), not a MapcrdtError`);
  assert.ok(CODES.has(err.code), `${what}: code ${JSON.stringify(err.code)} is not an ErrorCode (${err.message})`);
}

/** Runs a bad call: it throws a typed error and changes nothing, or it succeeds. */
function badCall(e, what, fn) {
  const before = snapshotOf(e);
  try {
    fn();
  } catch (err) {
    expectMapcrdtError(err, what);
    assert.equal(snapshotOf(e), before, `${what} threw ${err.code} but changed the engine`);
    return false;
  }
  return true;
}

async function walk(seed, steps) {
  const r = rng(seed);
  const clock = manualClock();
  const bridge = seed % 2 === 0 ? "wasmexport" : "funcof";
  const engines = [];
  for (let i = 0; i < 3; i++) engines.push(await createEngine({ peerId: `p${i}`, now: clock.now, bridge }));
  // Listeners on some engines: the changes are then built at once, not lazily.
  const events = [0, 0, 0];
  for (let i = 0; i < 3; i++) {
    if (r.chance(0.5)) {
      engines[i].onChange((ev) => {
        for (const c of ev.changes) assert.ok(["set", "unset", "created", "deleted"].includes(c.kind), `change kind ${c.kind}`);
        events[i]++;
      });
    }
  }
  const victim = await createEngine({ peerId: "victim", now: clock.now, bridge });
  /** @type {{to: number, msg: string}[]} */
  let inflight = [];
  const samples = [];

  const route = (from, msg) => {
    samples.push(msg);
    if (samples.length > 50) samples.shift();
    const m = JSON.parse(msg);
    if (m.kind === "PeerMessage") {
      const to = engines.findIndex((e) => e.peerId === m.recipient);
      if (to >= 0) inflight.push({ to, msg });
      return;
    }
    for (let to = 0; to < 3; to++) {
      if (to === from) continue;
      inflight.push({ to, msg });
      if (r.chance(0.1)) inflight.push({ to, msg }); // a duplicate
    }
  };
  const flush = (i) => {
    for (const msg of engines[i].flush()) route(i, msg);
  };
  const deliver = (k) => {
    const [{ to, msg }] = inflight.splice(k, 1);
    engines[to].receive(msg);
  };
  const sync = (x, y) => {
    const a = engines[x];
    const b = engines[y];
    let toB = [a.syncRequest(b.peerId)];
    let toA = [];
    const results = [];
    for (let round = 0; toA.length + toB.length > 0; round++) {
      assert.ok(round < 10, "sync does not end");
      const nextA = [];
      const nextB = [];
      for (const m of toB) nextA.push(...keep(results, b.onPeerMessage(m)).replies);
      for (const m of toA) nextB.push(...keep(results, a.onPeerMessage(m)).replies);
      toA = nextA;
      toB = nextB;
    }
    // The changes, read only now (built lazily when no listener wants them): after the
    // calls that followed, each is still a whole change.
    for (const res of results) {
      for (const c of res.changes) {
        assert.ok(["set", "unset", "created", "deleted"].includes(c.kind), `change kind ${c.kind}`);
        assert.equal(typeof c.subject, "string");
        assert.equal(typeof c.metadata, "object");
        assert.match(c.hlc, /^\d+:\d+:./);
      }
    }
  };
  const keep = (list, res) => {
    if (r.chance(0.5)) list.push(res);
    return res;
  };
  const goodEdit = (e) => {
    const [subject, meta] = r.pick(OBJECTS);
    switch (r.int(6)) {
      case 0:
        e.upsert(subject, meta, subject === "feature" ? { type: "Feature", properties: { name: "up" }, geometry: goodValue(r) } : { name: "up" });
        break;
      case 1:
        e.delete(subject, meta);
        break;
      case 2:
        e.unset(subject, meta, r.pick(KEYS));
        break;
      default:
        e.update(subject, meta, r.pick(KEYS), goodValue(r));
    }
  };

  for (let step = 0; step < steps; step++) {
    const where = `seed ${seed} step ${step}`;
    clock.advance(r.int(40));
    const i = r.int(3);
    const e = engines[i];
    const action = r.int(20);
    try {
      switch (action) {
        case 0:
        case 1:
        case 2:
        case 3:
          goodEdit(e);
          break;
        case 4:
          e.batch(() => {
            for (let n = 1 + r.int(3); n > 0; n--) goodEdit(e);
          });
          break;
        case 5:
        case 6:
          flush(i);
          break;
        case 7:
        case 8:
          if (inflight.length > 0) deliver(r.int(inflight.length));
          break;
        case 9:
          sync(i, (i + 1 + r.int(2)) % 3);
          break;
        case 10:
          if (e.canUndo()) e.undo();
          else if (e.canRedo()) e.redo();
          break;
        case 11:
          if (r.chance(0.3)) e.compact();
          break;
        case 12: {
          if (!r.chance(0.3)) break;
          // Restart from a snapshot: what the outbox held is sent first, as a page
          // persisting at unload would.
          flush(i);
          const snap = e.snapshot();
          const state = e.state();
          e.close();
          engines[i] = await createEngine({ snapshot: snap, now: clock.now, bridge });
          assert.equal(engines[i].state(), state, `${where}: restored state`);
          break;
        }
        case 13: {
          const sample = samples.length > 0 ? r.pick(samples) : null;
          if (sample) badCall(victim, `${where}: corrupted message`, () => victim.receive(corrupt(r, sample)));
          if (sample && r.chance(0.3)) badCall(victim, `${where}: corrupted peer message`, () => victim.onPeerMessage(corrupt(r, sample)));
          break;
        }
        default: {
          // A bad call on a live engine.
          const [subject, meta] = r.pick(OBJECTS);
          const calls = [
            ["update, bad value", () => e.update(subject, meta, r.pick(KEYS), badValue(r))],
            ["update, bad metadata", () => e.update("feature", badMetadata(r), "properties.name", "x")],
            ["update, bad key", () => e.update(subject, meta, badKey(r), 1)],
            ["update, bad subject", () => e.update(r.pick([undefined, 3, "", "planet", "Feature"]), meta, "properties.name", 1)],
            ["upsert, bad value", () => e.upsert(subject, meta, r.pick([badValue(r), 5, "text", [1]]))],
            ["delete, bad metadata", () => e.delete(subject, badMetadata(r))],
            ["edit, bad options", () => e.update(subject, meta, "properties.name", 1, r.pick([7, { unknown: 1 }, { group: 5 }, { oldValue: 10n }]))],
            ["edit object", () => e.edit(r.pick([null, {}, { verb: "explode", subject, metadata: meta }, { verb: "update", subject, metadata: meta, key: "a..b", value: 1 }, { verb: "update", extra: 1 }]))],
            ["receive", () => e.receive(badMessage(r, samples.length > 0 ? r.pick(samples) : null))],
            ["onPeerMessage", () => e.onPeerMessage(badMessage(r, null))],
            ["syncRequest", () => e.syncRequest(r.pick([5, "", "has space", 'a"b', "x".repeat(200), {}]))],
            ["get", () => e.get(r.pick([undefined, "planet"]), badMetadata(r), badKey(r))],
            ["markSaved", () => e.markSaved(r.pick([undefined, "", "yesterday", "1:2", "9999999999999:0:p0", 5]))],
            ["seed", () => e.seed(subject, badMetadata(r), badValue(r))],
            ["setPeers", () => e.setPeers(r.pick([undefined, "p1", [5], ["has space"], [{}]]))],
            ["commitBatch outside a batch", () => (e.inBatch() ? undefined : e.commitBatch())],
          ];
          const [what, fn] = r.pick(calls);
          badCall(e, `${where}: ${what}`, fn);
        }
      }
    } catch (err) {
      if (err instanceof assert.AssertionError) throw err;
      throw new Error(`${where}: action ${action} threw ${err && err.code} ${err && err.message}`, { cause: err });
    }
  }

  // Everything delivered, every pair synced, every outbox flushed and delivered.
  for (let round = 0; ; round++) {
    assert.ok(round < 20, `seed ${seed}: the network does not settle`);
    while (inflight.length > 0) deliver(r.int(inflight.length));
    for (let i = 0; i < 3; i++) if (engines[i].inBatch()) engines[i].commitBatch();
    for (const [x, y] of [[0, 1], [1, 2], [0, 2]]) sync(x, y);
    for (let i = 0; i < 3; i++) flush(i);
    if (inflight.length === 0) break;
  }
  const states = engines.map((e) => e.state());
  assert.equal(states[1], states[0], `seed ${seed}: engines 0 and 1 differ`);
  assert.equal(states[2], states[0], `seed ${seed}: engines 0 and 2 differ`);

  // The victim still works (an object no corrupted message can name: an update of one
  // that a message deleted would change nothing visible, DESIGN §4).
  const fresh = { id: "still-here", layerId: "L9" };
  victim.upsert("feature", fresh, { type: "Feature", properties: { name: "still here" } });
  assert.equal(victim.get("feature", fresh, "properties.name"), "still here", `seed ${seed}: the victim`);
  for (const e of [...engines, victim]) e.close();
  return { events };
}

test("a random walk of good and bad calls: typed errors that change nothing, and convergence", async () => {
  const one = process.env.RANDOM_SEED;
  const seeds = one !== undefined ? [Number(one)] : Array.from({ length: Number(process.env.RANDOM_SEEDS ?? 40) }, (_, s) => s + 1);
  const steps = Number(process.env.RANDOM_STEPS ?? 250);
  for (const seed of seeds) await walk(seed, steps);
});

test("merge: bad documents and options reject with typed errors", async () => {
  const r = rng(99);
  const layer = '{"type":"FeatureCollection","features":[]}';
  let refused = 0;
  for (let n = 0; n < 200; n++) {
    const docs = [layer, layer, layer];
    docs[r.int(3)] = r.pick([undefined, null, 5, "", "{", "[1]", '{"type":"Feature"}', new Uint8Array([0xff]), Symbol("d"), 10n]);
    const options = r.chance(0.3) ? r.pick([5, null, { policy: "" }, { policy: "newest" }, { policy: 1 }, { extra: 1 }]) : undefined;
    try {
      await merge(docs[0], docs[1], docs[2], options);
    } catch (err) {
      expectMapcrdtError(err, `merge ${n}`);
      refused++;
    }
  }
  assert.equal(refused, 200, "every call had a bad document");
  const ok = await merge(layer, layer, layer);
  assert.equal(typeof ok.document, "string");
});
