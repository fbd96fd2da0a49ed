// A page's life, through the public API only: three tabs joined by a simulated relay that
// delays, reorders and duplicates what it carries. A tab edits, goes offline and edits more,
// reloads from its snapshot (a new engine), comes back and syncs; a second tab joins late
// and catches up in pages; the first undoes, after its reload, an edit made before it; a
// third edits the same keys concurrently; dirty() and markSaved across the reload. After
// every step each tab's view — a Map built from onChange events only — equals state() and
// get(), and once the relay is drained every online tab holds the same state().

import { test } from "node:test";
import assert from "node:assert/strict";
import { createEngine } from "../index.js";
import { manualClock } from "./net.js";

/** mulberry32: a small seeded generator. */
function rng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { int: (n) => Math.floor(next() * n), chance: (p) => next() < p };
}

/** Splits an escaped key path ("a.b\.c" → ["a", "b.c"]). */
function splitKey(key) {
  const parts = [];
  let cur = "";
  for (let i = 0; i < key.length; i++) {
    if (key[i] === "\\" && i + 1 < key.length) cur += key[++i];
    else if (key[i] === ".") {
      parts.push(cur);
      cur = "";
    } else cur += key[i];
  }
  parts.push(cur);
  return parts;
}

const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const clone = (v) => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));
const id = (subject, metadata) => subject + " " + JSON.stringify(metadata);

/** What a page renders: a Map of objects, built from onChange events only. */
class View {
  constructor(engine) {
    this.objects = new Map();
    this.events = [];
    for (const o of JSON.parse(engine.state())) this.objects.set(id(o.subject, o.metadata), { ...o, value: o.value });
    this.errors = [];
    // A listener's error is reported asynchronously by the engine: keep it for checkView.
    this.off = engine.onChange((e) => {
      try {
        this.apply(e);
      } catch (err) {
        this.errors.push(`${err.message} in ${JSON.stringify(e)}`);
      }
    });
  }

  apply(e) {
    this.events.push(e);
    for (const c of e.changes) {
      const k = id(c.subject, c.metadata);
      let o = this.objects.get(k);
      if (!o && (c.kind === "set" || c.kind === "unset")) {
        // An object never seen is alive with an empty base (DESIGN §4): an update of one
        // comes as "set", with no "created" before it.
        o = { subject: c.subject, metadata: c.metadata, value: {} };
        this.objects.set(k, o);
      }
      switch (c.kind) {
        case "created":
          assert.equal(o, undefined, `created ${k}, already in the view`);
          this.objects.set(k, { subject: c.subject, metadata: c.metadata, value: clone(c.value) });
          break;
        case "deleted":
          assert.ok(o, `deleted ${k}, not in the view`);
          this.objects.delete(k);
          break;
        case "set":
        case "unset": {
          assert.ok(o, `${c.kind} ${k} ${c.key}, not in the view`);
          if (c.key === undefined) {
            assert.equal(c.kind, "set", "an unset names a key");
            o.value = clone(c.value);
            break;
          }
          const parts = splitKey(c.key);
          let at = o.value;
          for (const p of parts.slice(0, -1)) {
            if (!isObj(at[p])) {
              if (c.kind === "unset") {
                at = undefined;
                break;
              }
              at[p] = {};
            }
            at = at[p];
          }
          const last = parts[parts.length - 1];
          if (c.kind === "set") at[last] = clone(c.value);
          else if (at !== undefined) delete at[last];
          break;
        }
        default:
          assert.fail(`unknown change kind ${c.kind}`);
      }
    }
  }

  /** The view as state() would give it. */
  list() {
    return [...this.objects.values()].map((o) => ({ subject: o.subject, metadata: o.metadata, value: o.value }));
  }
}

/** Asserts that view equals the engine's state() and get() of each object and key. */
function checkView(name, engine, view, keys = []) {
  assert.deepEqual(view.errors, [], `${name}: every event applies to the view`);
  const state = JSON.parse(engine.state());
  const sortKey = (o) => id(o.subject, o.metadata);
  const byId = (xs) => new Map(xs.map((o) => [sortKey(o), o]));
  assert.deepEqual(byId(view.list()), byId(state), `${name}: the view built from events equals state()`);
  for (const o of state) {
    assert.deepEqual(engine.get(o.subject, o.metadata), o.value, `${name}: get(${sortKey(o)}) equals state()`);
    for (const k of keys) {
      let v = o.value;
      for (const p of splitKey(k)) v = isObj(v) ? v[p] : undefined;
      assert.deepEqual(engine.get(o.subject, o.metadata, k), v, `${name}: get(${sortKey(o)}, ${k})`);
    }
  }
}

/**
 * The relay: broadcasts OperationMessage and SavedMessage to the other online tabs, routes
 * PeerMessage to its recipient; each delivery may wait, come out of order or twice. A tab
 * offline neither flushes nor receives (what was broadcast meanwhile is lost for it).
 * Tabs marked `direct` take messages with onPeerMessage and send the replies themselves.
 */
class Relay {
  constructor(seed) {
    this.r = rng(seed);
    this.tabs = new Map(); // peerId → {engine, view, online, direct}
    this.queue = []; // [to, message]
    this.checks = 0;
    this.peerMessages = 0;
  }

  attach(engine, { direct = false } = {}) {
    const tab = { engine, view: new View(engine), online: true, direct };
    this.tabs.set(engine.peerId, tab);
    return tab;
  }

  detach(peerId) {
    const tab = this.tabs.get(peerId);
    tab.view.off();
    this.tabs.delete(peerId);
    this.queue = this.queue.filter(([to]) => to !== peerId);
  }

  send(from, message) {
    const msg = JSON.parse(message);
    if (msg.kind === "PeerMessage") this.peerMessages++;
    const targets = msg.kind === "PeerMessage" ? [msg.recipient] : [...this.tabs.keys()].filter((p) => p !== from);
    for (const to of targets) {
      const tab = this.tabs.get(to);
      if (!tab || !tab.online) continue;
      this.queue.push([to, message]);
      if (this.r.chance(0.15)) this.queue.push([to, message]); // duplicated
    }
  }

  /** Moves the tabs' flushed messages to the relay. */
  collect() {
    for (const [from, tab] of this.tabs) if (tab.online) for (const m of tab.engine.flush()) this.send(from, m);
  }

  /** Delivers some queued messages (a random subset, in a random order); the rest wait. */
  step() {
    this.collect();
    const n = this.queue.length;
    for (let i = 0; i < n && this.queue.length > 0; i++) {
      if (this.r.chance(0.3)) continue; // delayed
      const [to, message] = this.queue.splice(this.r.int(this.queue.length), 1)[0];
      this.deliver(to, message);
    }
  }

  deliver(to, message) {
    const tab = this.tabs.get(to);
    if (!tab || !tab.online) return;
    if (tab.direct) {
      const res = tab.engine.onPeerMessage(message);
      for (const reply of res.replies) this.send(to, reply);
    } else {
      tab.engine.receive(message);
    }
    this.check(to);
  }

  check(peerId) {
    const tab = this.tabs.get(peerId);
    checkView(peerId, tab.engine, tab.view, ["properties.name", "properties.color", "geometry"]);
    this.checks++;
  }

  checkAll() {
    for (const p of this.tabs.keys()) this.check(p);
  }

  /** Delivers everything, a few chaotic steps first, then in order until quiet. */
  drain() {
    for (let i = 0; i < 3; i++) this.step();
    for (let round = 0; round < 200; round++) {
      this.collect();
      if (this.queue.length === 0) return;
      while (this.queue.length > 0) {
        const [to, message] = this.queue.shift();
        this.deliver(to, message);
      }
    }
    throw new Error("the relay did not settle");
  }

  assertConverged(label) {
    const online = [...this.tabs.values()].filter((t) => t.online);
    const states = online.map((t) => t.engine.state());
    for (let i = 1; i < states.length; i++) {
      assert.equal(states[i], states[0], `${label}: ${online[i].engine.peerId} converged with ${online[0].engine.peerId}`);
    }
    this.checkAll();
  }
}

const L = "606d26bd-230f-4d3e-a2a7-0c3caed71548";
const f = (n) => ({ id: `f${n}`, layerId: L });
const pt = (x, y) => ({ type: "Point", coordinates: [x, y] });
const marker = (n, name) => ({ type: "Feature", geometry: pt(n, n), properties: { name } });
const dirtyIds = (e) => e.dirty().map((d) => id(d.subject, d.metadata)).sort();

for (const seed of process.env.LIFECYCLE_SEEDS ? Array.from({ length: +process.env.LIFECYCLE_SEEDS }, (_, i) => i + 1) : [1, 2, 3, 7, 42]) {
  test(`a page's life: edit, offline, reload, late join, undo, concurrent edits (seed ${seed})`, async () => {
    const clock = manualClock();
    const tick = () => clock.advance(37);
    const opts = { now: clock.now, syncPage: 2 };
    const relay = new Relay(seed);

    // Tab A opens the map and draws.
    let a = await createEngine({ peerId: "tab-a", ...opts });
    relay.attach(a);
    a.upsert("datalayer", { id: L }, { name: "Layer" });
    for (let i = 1; i <= 4; i++) {
      tick();
      a.upsert("feature", f(i), marker(i, `m${i}`));
    }
    tick();
    a.startBatch();
    a.update("feature", f(1), "properties.color", "red");
    a.update("feature", f(2), "properties.color", "blue");
    a.commitBatch();
    relay.check("tab-a");
    assert.deepEqual(dirtyIds(a).length, 5, "five objects edited, none saved");

    // Tab C is already there; it gets A's edits through the relay.
    const c = await createEngine({ peerId: "tab-c", ...opts });
    relay.attach(c, { direct: true });
    c.receive(JSON.stringify({ kind: "JoinResponse", uuid: "tab-c", peers: ["tab-a", "tab-c"] }));
    relay.send("tab-c", c.syncRequest("tab-a"));
    relay.drain();
    relay.assertConverged("C joined");

    // A saves: nothing is dirty.
    a.markSaved(a.clock());
    assert.deepEqual(a.dirty(), [], "nothing dirty after markSaved(clock())");
    relay.checkAll();

    // A goes offline and edits more; C edits meanwhile (lost for A).
    relay.tabs.get("tab-a").online = false;
    tick();
    a.update("feature", f(3), "properties.name", "offline name");
    tick();
    a.delete("feature", f(4));
    tick();
    a.update("feature", f(1), "geometry", pt(10, 10));
    relay.check("tab-a");
    tick();
    c.update("feature", f(2), "properties.name", "c renamed");
    tick();
    c.upsert("feature", f(5), marker(5, "c5"));
    relay.drain();
    assert.deepEqual(dirtyIds(a), [1, 3, 4].map((n) => id("feature", f(n))).sort(), "A's offline edits are dirty, its delete too");
    const dirtyBefore = a.dirty();
    const stateBefore = a.state();
    const canUndoBefore = a.canUndo();
    assert.ok(canUndoBefore);

    // A reloads from its snapshot: a new engine, same peer id, still offline.
    const snap = a.snapshot();
    relay.detach("tab-a");
    a.close();
    tick();
    a = await createEngine({ snapshot: snap, ...opts });
    assert.equal(a.peerId, "tab-a");
    assert.equal(a.state(), stateBefore, "the reloaded tab holds what it held");
    assert.deepEqual(a.dirty(), dirtyBefore, "dirty() survives the reload");
    assert.equal(a.canUndo(), canUndoBefore, "the undo stack survives the reload");
    const tabA = relay.attach(a);
    tabA.online = false;
    relay.check("tab-a");

    // A undoes, after the reload, its last edit from before it (the moved marker).
    tick();
    const seen = tabA.view.events.length;
    const u = a.undo();
    assert.equal(u.done, true);
    assert.deepEqual(tabA.view.events.slice(seen).map((e) => e.origin), ["undo"], "the undo made one event of origin undo");
    assert.deepEqual(tabA.view.events[seen].changes, u.changes, "the event holds undo()'s changes");
    assert.deepEqual(a.get("feature", f(1), "geometry"), pt(1, 1), "undo restored the geometry");
    relay.check("tab-a");
    assert.deepEqual(dirtyIds(a), [1, 3, 4].map((n) => id("feature", f(n))).sort(), "undone, f1 is still to save");

    // A comes back: its outbox (kept by the snapshot) goes out, and it syncs from C.
    tabA.online = true;
    relay.send("tab-a", a.syncRequest("tab-c"));
    relay.drain();
    relay.assertConverged("A back");
    assert.equal(a.get("feature", f(2), "properties.name"), "c renamed", "A caught up with C's edit made while it was away");
    assert.equal(c.get("feature", f(3), "properties.name"), "offline name", "C got A's offline edit");
    assert.equal(c.get("feature", f(4)), undefined, "C got A's offline delete");
    assert.deepEqual(c.get("feature", f(1), "geometry"), pt(1, 1), "C got A's undo");

    // Tab B joins late and catches up in pages of two operations.
    const b = await createEngine({ peerId: "tab-b", ...opts });
    relay.attach(b);
    b.receive(JSON.stringify({ kind: "JoinResponse", uuid: "tab-b", peers: ["tab-a", "tab-b", "tab-c"] }));
    const peerMessages = relay.peerMessages;
    relay.send("tab-b", b.syncRequest("tab-a"));
    relay.drain();
    relay.assertConverged("B caught up");
    assert.ok(relay.peerMessages - peerMessages >= 6, `B's catch-up took pages (${relay.peerMessages - peerMessages} peer messages)`);
    assert.ok(relay.tabs.get("tab-b").view.events.length >= 2, "B's catch-up came as several events (pages)");

    // A, B and C edit the same keys concurrently, messages crossing in the relay.
    for (let round = 0; round < 6; round++) {
      tick();
      a.update("feature", f(1), "properties.name", `a${round}`);
      c.update("feature", f(1), "properties.name", `c${round}`);
      b.update("feature", f(1), "properties.color", `b${round}`);
      if (round % 2 === 0) c.unset("feature", f(1), "properties.color");
      if (round === 3) b.delete("feature", f(2));
      if (round === 4) a.upsert("feature", f(2), marker(2, "a revives"));
      relay.step();
    }
    relay.drain();
    relay.assertConverged("concurrent edits");

    // A batch left open while C's messages arrive (a drag across a receive) goes out in parts.
    tick();
    a.startBatch();
    a.update("feature", f(3), "geometry", pt(30, 30));
    c.update("feature", f(3), "geometry", pt(31, 31));
    c.update("feature", f(3), "properties.color", "green");
    relay.step();
    relay.step();
    tick();
    a.update("feature", f(3), "properties.color", "yellow");
    a.commitBatch();
    relay.drain();
    relay.assertConverged("a batch open across receives");

    // A undoes its last edit, which C's or B's newer ones may cover; everyone converges.
    tick();
    a.undo();
    relay.check("tab-a");
    tick();
    a.redo();
    relay.check("tab-a");
    relay.drain();
    relay.assertConverged("undo/redo after the concurrent edits");

    // Compaction changes nothing visible, and a tab joining afterwards still catches up.
    for (const t of [a, b, c]) {
      const before = t.state();
      t.compact();
      assert.equal(t.state(), before, "compact() keeps the state");
    }
    const d = await createEngine({ peerId: "tab-d", ...opts });
    relay.attach(d, { direct: true });
    relay.send("tab-d", d.syncRequest("tab-b"));
    relay.drain();
    relay.assertConverged("D after compaction");

    // A saves what it holds: nothing of it is dirty any more.
    a.markSaved(a.clock());
    assert.deepEqual(a.dirty(), []);
    assert.ok(relay.checks > 20);
    for (const t of relay.tabs.values()) t.engine.close();
  });
}
