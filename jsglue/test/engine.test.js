// The JavaScript surface of mapcrdt (DESIGN §10), end to end through the real .wasm:
// `make build && node --test jsglue/test/`.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createEngine, initialize, jsonText, merge, MapcrdtError, _rawBridge } from "../index.js";
import { Net, manualClock } from "./net.js";

const layer = "606d26bd-230f-4d3e-a2a7-0c3caed71548";
const meta = (id) => ({ id, layerId: layer, featureType: "marker" });
const point = (x, y) => ({ type: "Point", coordinates: [x, y] });
const feature = (name, x = 1, y = 2) => ({ type: "Feature", geometry: point(x, y), properties: { name } });

/** Asserts that fn throws a MapcrdtError of code (and a message matching re, if given). */
function throwsCode(fn, code, re) {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof MapcrdtError, `not a MapcrdtError: ${e}`);
    assert.ok(e instanceof Error);
    assert.equal(e.code, code, `code of "${e.message}"`);
    if (re) assert.match(e.message, re);
    return true;
  });
}

async function rejectsCode(promise, code, re, what = "") {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof MapcrdtError, `${what} not a MapcrdtError: ${e}`);
    assert.equal(e.code, code, `${what} code of "${e.message}"`);
    if (re) assert.match(e.message, re);
    return true;
  });
}

test("three engines: live edits reach every engine", async () => {
  const net = new Net();
  const a = await net.add("alice");
  const b = await net.add("bob");
  const c = await net.add("carol");
  const seen = [];
  const off = b.onChange((e) => seen.push(e));

  a.upsert("datalayer", { id: layer }, { name: "Cafés" });
  a.upsert("feature", meta("f1"), feature("Café"));
  a.upsert("feature", meta("f2"), feature("Bar", 3, 4));
  net.settle();
  b.update("feature", meta("f1"), "properties.name", "Café de Flore");
  c.update("feature", meta("f2"), "geometry", point(5, 6));
  c.update("feature", meta("f2"), "properties._umap_options.color", "DarkViolet");
  net.settle();
  a.delete("feature", meta("f2"));
  net.settle();

  const [sa, sb, sc] = net.states();
  assert.equal(sa, sb);
  assert.equal(sb, sc);
  const state = JSON.parse(sa);
  assert.equal(state.length, 2, sa);
  assert.deepEqual(a.get("feature", meta("f1"), "properties.name"), "Café de Flore");
  assert.equal(c.get("feature", meta("f2")), undefined, "deleted");
  assert.deepEqual(c.get("datalayer", { id: layer }), { name: "Cafés" });

  // b saw a's and c's edits as remote changes, its own as local ones.
  const origins = new Set(seen.map((e) => e.origin));
  assert.deepEqual([...origins].sort(), ["local", "remote"]);
  const remote = seen.filter((e) => e.origin === "remote").flatMap((e) => e.changes);
  assert.ok(remote.some((ch) => ch.kind === "created" && ch.subject === "datalayer"));
  assert.ok(remote.some((ch) => ch.kind === "set" && ch.key === "geometry" && ch.value.coordinates[0] === 5));
  assert.ok(remote.some((ch) => ch.kind === "deleted" && ch.metadata.id === "f2"));
  for (const ch of remote) {
    assert.equal(typeof ch.hlc, "string");
    assert.equal(typeof ch.metadata, "object");
  }
  off();
  a.update("feature", meta("f1"), "properties.name", "after unsubscribe");
  const n = seen.length;
  net.settle();
  assert.equal(seen.length, n, "no event after unsubscribe");
  net.close();
});

test("concurrent edits converge to the same state text", async () => {
  const net = new Net();
  const clocks = [manualClock(), manualClock(), manualClock()];
  clocks[1].advance(5);
  clocks[2].advance(10); // carol's edits are the latest
  const ids = ["alice", "bob", "carol"];
  const es = [];
  for (let i = 0; i < 3; i++) es.push(await net.add(ids[i], { clock: clocks[i] }));
  es[0].upsert("feature", meta("f1"), feature("base"));
  net.settle();
  // Everybody edits the same keys without hearing the others.
  for (let i = 0; i < 3; i++) {
    es[i].update("feature", meta("f1"), "properties.name", `name by ${ids[i]}`);
    es[i].update("feature", meta("f1"), `properties.by_${ids[i]}`, i);
    es[i].update("feature", meta("f1"), "geometry", point(i, i));
    clocks[i].advance(1);
  }
  // Deliver in a scrambled order: each engine's messages reversed, carol's first.
  const outboxes = es.map((e) => e.flush());
  for (const i of [2, 0, 1]) {
    for (const m of [...outboxes[i]].reverse()) {
      for (let j = 0; j < 3; j++) if (j !== i) es[j].receive(m);
    }
  }
  net.settle();
  const [s0, s1, s2] = net.states();
  assert.equal(s0, s1);
  assert.equal(s1, s2);
  assert.equal(es[0].get("feature", meta("f1"), "properties.name"), "name by carol");
  assert.deepEqual(es[1].get("feature", meta("f1"), "geometry"), point(2, 2));
  for (let i = 0; i < 3; i++) assert.equal(es[2].get("feature", meta("f1"), `properties.by_${ids[i]}`), i);
  // Duplicates change nothing.
  for (const m of outboxes[0]) assert.deepEqual(es[1].receive(m), []);
  assert.equal(es[1].state(), s0);
  net.close();
});

test("an offline engine catches up through syncRequest / onPeerMessage", async () => {
  const net = new Net();
  const a = await net.add("alice");
  const b = await net.add("bob");
  const c = await net.add("carol");
  a.upsert("feature", meta("f1"), feature("one"));
  net.settle();
  net.setOnline("carol", false);
  for (let i = 0; i < 30; i++) {
    (i % 2 ? a : b).update("feature", meta(`g${i}`), "properties.name", `g${i}`);
  }
  a.delete("feature", meta("f1"));
  net.settle();
  // Carol edits offline: her edits wait in her outbox.
  c.update("feature", meta("offline"), "properties.name", "made offline");
  assert.equal(c.pending(), 1);
  assert.notEqual(c.state(), a.state());

  // Back online: she asks alice directly, and applies the answer.
  net.setOnline("carol", true);
  const req = c.syncRequest("alice");
  assert.equal(JSON.parse(req).kind, "PeerMessage");
  assert.equal(JSON.parse(req).recipient, "alice");
  const { replies, changes } = a.onPeerMessage(req);
  assert.equal(changes.length, 0);
  assert.ok(replies.length >= 1);
  let caught = [];
  for (const r of replies) {
    const res = c.onPeerMessage(r);
    caught = caught.concat(res.changes);
    for (const back of res.replies) a.onPeerMessage(back);
  }
  // Every change whole, as index.d.ts promises (31 objects: past the module's scan of 8).
  const { hlc: delHLC, ...deleted } = caught.find((ch) => ch.kind === "deleted");
  assert.deepEqual(deleted, { kind: "deleted", subject: "feature", metadata: meta("f1") });
  assert.match(delHLC, /^\d+:\d+:alice$/);
  const names = caught.filter((ch) => ch.key === "properties.name");
  assert.equal(names.length, 30);
  for (const { hlc, ...ch } of names) {
    const id = ch.metadata.id;
    assert.deepEqual(ch, { kind: "set", subject: "feature", metadata: meta(id), key: "properties.name", value: id });
    assert.match(hlc, Number(id.slice(1)) % 2 ? /:alice$/ : /:bob$/);
  }
  net.settle(); // carol's offline edit goes out
  const [sa, sb, sc] = net.states();
  assert.equal(sa, sc);
  assert.equal(sb, sc);
  assert.equal(b.get("feature", meta("offline"), "properties.name"), "made offline");
  assert.deepEqual(Object.keys(c.vector()).sort(), ["alice", "bob", "carol"]);
  net.close();
});

test("a catch-up larger than a page comes in pages, each reply asking for the next", async () => {
  const net = new Net();
  // alice answers in pages of 7 operations, and of ~4 KiB (half her message limit).
  const a = await net.add("alice", { engine: { syncPage: 7, limits: { maxMessageBytes: 8192 } } });
  for (let i = 0; i < 40; i++) a.update("feature", meta(`p${i}`), "properties.name", `p${i}`);
  for (let i = 0; i < 6; i++) a.update("feature", meta(`big${i}`), "properties.text", "x".repeat(1500));
  net.settle();
  const c = await net.add("carol", { engine: { limits: { maxMessageBytes: 8192 } } });
  let toAlice = [c.syncRequest("alice")];
  const pages = [];
  let changes = 0;
  while (toAlice.length > 0) {
    const next = [];
    for (const m of toAlice) {
      for (const page of a.onPeerMessage(m).replies) {
        pages.push(page);
        assert.ok(page.length <= 8192, `a page of ${page.length} bytes`);
        const res = c.onPeerMessage(page);
        changes += res.changes.length;
        next.push(...res.replies);
      }
    }
    toAlice = next;
  }
  assert.ok(pages.length >= 8, `${pages.length} pages for 46 operations`);
  assert.ok(pages.slice(0, -1).every((p) => JSON.parse(p).message.more), "every page but the last says more follow");
  assert.equal(JSON.parse(pages.at(-1)).message.more, undefined);
  assert.equal(changes, 46);
  assert.equal(c.state(), a.state());
  net.close();
});

test("changes name their metadata right, shared between calls, past the glue's cache of them", async () => {
  const a = await createEngine({ peerId: "a" });
  const b = await createEngine({ peerId: "b" });
  const n = 5000; // more objects than the glue keeps metadata of (4096): the cache is cleared once
  const msgs = [];
  for (let i = 0; i < n; i++) {
    a.update("feature", meta(`m${i}`), "properties.name", `n${i}`);
    msgs.push(...a.flush());
  }
  a.update("datalayer", meta("m7"), "name", "a layer named by a feature's metadata text");
  msgs.push(...a.flush());
  const seen = [];
  for (const m of msgs) {
    const [ch, ...more] = b.receive(m);
    assert.equal(more.length, 0);
    seen.push(ch);
  }
  for (let i = 0; i < n; i++) {
    const { hlc, ...ch } = seen[i];
    assert.deepEqual(ch, { kind: "set", subject: "feature", metadata: meta(`m${i}`), key: "properties.name", value: `n${i}` });
  }
  const layerChange = seen[n];
  assert.equal(layerChange.subject, "datalayer");
  assert.deepEqual(layerChange.metadata, meta("m7"));
  // Equal metadata text, one object: across calls, engines and subjects.
  a.update("feature", meta(`m${n - 1}`), "properties.color", "red");
  const [again] = b.receive(a.flush()[0]);
  assert.equal(again.metadata, seen[n - 1].metadata);
  // A catch-up of them all in one call: every object's metadata, in and out of the cache.
  const c = await createEngine({ peerId: "c" });
  let caught = [];
  for (const r of a.onPeerMessage(c.syncRequest("a")).replies) caught = caught.concat(c.onPeerMessage(r).changes);
  assert.equal(caught.length, n + 2);
  for (const ch of caught) {
    const id = ch.subject === "datalayer" ? "m7" : ch.metadata.id;
    assert.deepEqual(ch.metadata, meta(id));
    if (ch.subject === "feature") assert.equal(ch.value, ch.key === "properties.name" ? `n${id.slice(1)}` : "red");
  }
  for (const e of [a, b, c]) e.close();
});

test("onPeerMessage's changes are built when first read, right after any later call", async () => {
  // Two sources of different objects; more than the module's table of objects holds (4096),
  // so the second catch-up starts the table again from 0 and names other objects by the
  // numbers the first one used.
  const n = 4500;
  const sources = [];
  for (const [peer, prefix] of [["a", "m"], ["b", "z"]]) {
    const src = await createEngine({ peerId: peer });
    for (let i = 0; i < n; i++) src.update("feature", meta(`${prefix}${i}`), "properties.name", `${prefix}-name-${i} é 東京`);
    src.flush();
    sources.push(src);
  }
  const catchUp = async (src, peerId, listen) => {
    const e = await createEngine({ peerId });
    const heard = [];
    if (listen) e.onChange((ev) => heard.push(...ev.changes));
    const [reply] = src.onPeerMessage(e.syncRequest(src.peerId)).replies;
    return { e, res: e.onPeerMessage(reply), heard };
  };
  const first = await catchUp(sources[0], "c1", false);
  const second = await catchUp(sources[1], "c2", false);
  const third = await catchUp(sources[0], "c3", true); // a listener: built at once, and the same
  const check = (changes, prefix) => {
    assert.equal(changes.length, n);
    for (const { hlc, ...ch } of changes) {
      const i = ch.metadata.id.slice(1);
      assert.deepEqual(ch, { kind: "set", subject: "feature", metadata: meta(`${prefix}${i}`), key: "properties.name", value: `${prefix}-name-${i} é 東京` });
    }
  };
  assert.deepEqual(Object.keys(first.res), ["changes", "replies"]);
  const read = first.res.changes;
  check(read, "m");
  assert.equal(first.res.changes, read, "read once, kept");
  check(second.res.changes, "z");
  check(third.res.changes, "m");
  assert.equal(third.heard.length, n);
  assert.deepEqual(third.heard, third.res.changes);
  assert.deepEqual(first.res.changes, third.res.changes.map((c) => ({ ...c, hlc: c.hlc })));
  // An own, enumerable property: JSON and spreading see it, unread; it can be written.
  const fourth = await catchUp(sources[1], "c4", false);
  assert.equal(JSON.parse(JSON.stringify(fourth.res)).changes.length, n);
  const fifth = await catchUp(sources[1], "c5", false);
  assert.equal({ ...fifth.res }.changes.length, n);
  const sixth = await catchUp(sources[0], "c6", false);
  sixth.res.changes = [];
  assert.deepEqual(sixth.res.changes, []);
  // No changes: an empty list, at once.
  const none = sixth.e.onPeerMessage(sources[0].syncRequest("c6"));
  assert.deepEqual(none.changes, []);
  for (const x of [...sources, first.e, second.e, third.e, fourth.e, fifth.e, sixth.e]) x.close();
});

test("changes name their objects by number: each sent once, again to a glue that lost it", async () => {
  const raw = await _rawBridge(); // the same module the engines use: its table of objects
  const a = await createEngine({ peerId: "a" });
  const b = await createEngine({ peerId: "b" });
  const c = await createEngine({ peerId: "c" });
  const check = (e, from, ids, key, value) => {
    for (const id of ids) from.update("feature", meta(id), key, value);
    const got = from.flush().flatMap((m) => e.receive(m));
    assert.deepEqual(
      got.map(({ hlc, ...ch }) => ch),
      ids.map((id) => ({ kind: "set", subject: "feature", metadata: meta(id), key, value })),
    );
  };
  const ids = Array.from({ length: 20 }, (_, i) => `o${i}`);
  check(b, a, ids, "properties.name", "one");
  const held = raw.objects.length;
  assert.ok(held >= 2 * ids.length, `the table holds ${held / 2} objects`);
  // The same objects again: named by number, nothing added to the table.
  check(b, a, ids, "properties.name", "two");
  assert.equal(raw.objects.length, held);
  // Another engine's replicas of them are other objects (other texts in the module).
  check(c, a, ids.slice(0, 5), "properties.name", "three");
  assert.equal(raw.objects.length, held + 2 * 5);
  // A glue that lost the end of its table (a result it never read) is sent it again.
  raw.objects.length = held - 2 * 7;
  check(b, a, ids, "properties.name", "four");
  check(c, a, ids.slice(0, 5), "properties.name", "five");
  assert.equal(raw.objects.length, held + 2 * 5);
  // And one that lost all of it.
  raw.objects.length = 0;
  check(c, a, ids, "properties.color", "red");
  check(b, a, ids, "properties.color", "blue");
  // A feature's new metadata (moved to another layer) is a new object.
  a.update("feature", { ...meta("o1"), layerId: "L2" }, "properties.name", "moved");
  const [moved] = b.receive(a.flush()[0]);
  assert.deepEqual(moved.metadata, { ...meta("o1"), layerId: "L2" });
  check(b, a, ids.slice(0, 3), "properties.name", "six");
  for (const e of [a, b, c]) e.close();
});

test("a result the glue never read, of the call that started the module's table of objects again, costs a resend, not a wrong object", async () => {
  const raw = await _rawBridge();
  // The next engine's handle: handles are given in order.
  const probe = Number(raw.call(raw.methods.create, 0, 0, ["probe"]));
  raw.call(raw.methods.close, probe, 0, []);
  const e = await createEngine({ peerId: "e" });
  const heard = [];
  e.onChange((ev) => heard.push(...ev.changes));
  for (let i = 0; i < 4096; i++) e.update("feature", meta(`t${i}`), "properties.n", i); // the table's bound
  assert.equal(heard.length, 4096);
  // The same engine's edit through the raw bridge: a result the glue never reads (as one
  // that failed after its changes were written) — and the module's table starts again in it.
  raw.call(raw.methods.edit, probe + 1, 1, ["update", "feature", JSON.stringify(meta("x")), "properties.n", "1"]);
  heard.length = 0;
  e.update("feature", meta("x"), "properties.n", 2);
  e.update("feature", meta("y"), "properties.n", 3);
  e.update("feature", meta("x"), "properties.n", 4);
  assert.deepEqual(
    heard.map((c) => [c.metadata.id, c.value]),
    [["x", 2], ["y", 3], ["x", 4]],
  );
  e.close();
});

test("edits' metadata: written as JSON once per content, checked again on every edit", async () => {
  const a = await createEngine({ peerId: "a" });
  // The glue writes a plain ASCII string itself, and JSON.stringify the others: with one
  // value of those, its calls count the metadata texts written.
  const meta = (id) => ({ id, layerId: layer, featureType: "marker", note: "café" });
  const stringify = JSON.stringify;
  let calls = 0;
  JSON.stringify = function (...args) {
    calls++;
    return stringify.apply(this, args);
  };
  const sent = (m) => {
    calls = 0;
    a.unset("feature", m, "properties.x"); // no value to write: every stringify is the metadata's
    const [msg] = a.flush();
    return { metadata: JSON.parse(msg).metadata, calls };
  };
  try {
    // A new object with the same content (how uMap builds metadata) is not written again.
    assert.deepEqual(sent(meta("k1")), { metadata: meta("k1"), calls: 1 });
    assert.deepEqual(sent(meta("k1")), { metadata: meta("k1"), calls: 0 });
    // Any change to the object is seen: a value, a key more or less, a value's type, the
    // order of the keys, a nested value (never kept), a toJSON.
    const m = meta("k1");
    m.layerId = "other";
    assert.deepEqual(sent(m), { metadata: { ...meta("k1"), layerId: "other" }, calls: 1 });
    m.extra = 1;
    assert.deepEqual(sent(m).metadata, { ...meta("k1"), layerId: "other", extra: 1 });
    m.extra = "1";
    assert.deepEqual(sent(m), { metadata: { ...meta("k1"), layerId: "other", extra: "1" }, calls: 1 });
    delete m.extra;
    assert.deepEqual(sent(m).metadata, { ...meta("k1"), layerId: "other" });
    assert.deepEqual(sent({ featureType: "marker", layerId: "other", id: "k1", note: "café" }).calls, 1);
    m.nested = { a: 1 };
    assert.deepEqual(sent(m), { metadata: { ...meta("k1"), layerId: "other", nested: { a: 1 } }, calls: 1 });
    m.nested.a = 2;
    assert.deepEqual(sent(m), { metadata: { ...meta("k1"), layerId: "other", nested: { a: 2 } }, calls: 1 });
    class Named {
      constructor(id) {
        this.id = id;
      }
      toJSON() {
        return { id: this.id, layerId: layer };
      }
    }
    assert.deepEqual(sent(new Named("k1")).metadata, { id: "k1", layerId: layer });
    assert.deepEqual(sent(new Named("k1")).metadata, { id: "k1", layerId: layer });
    class Moved {
      constructor() {
        Object.assign(this, meta("k1"));
      }
      toJSON() {
        return { ...this, layerId: "moved" };
      }
    }
    assert.deepEqual(sent(meta("k1")).metadata, meta("k1"));
    assert.deepEqual(sent(new Moved()).metadata, { ...meta("k1"), layerId: "moved" });
    assert.deepEqual(sent({ id: "k1", layerId: "x", note: "é" }), { metadata: { id: "k1", layerId: "x", note: "é" }, calls: 1 });
    // More ids than the glue keeps (4,096): still right after it is cleared.
    for (let i = 0; i < 5000; i++) assert.deepEqual(sent(meta(`k${i}`)).metadata, meta(`k${i}`));
    assert.deepEqual(sent(meta("k1")), { metadata: meta("k1"), calls: 1 });
    assert.deepEqual(sent(meta("k4999")), { metadata: meta("k4999"), calls: 0 });
  } finally {
    JSON.stringify = stringify;
  }
  a.close();
});

test("a gap in seqs is healed by the sync request receive() queues", async () => {
  const net = new Net();
  const a = await net.add("alice");
  const b = await net.add("bob");
  a.update("map", {}, "properties.n1", 1);
  a.update("map", {}, "properties.n2", 2);
  a.update("map", {}, "properties.n3", 3);
  const [m1, , m3] = a.flush();
  b.receive(m1);
  b.receive(m3); // m2 lost: b notices the gap and queues a sync request
  assert.ok(b.pending() >= 1);
  net.settle();
  assert.equal(b.get("map", {}, "properties.n2"), 2);
  assert.equal(a.state(), b.state());
  net.close();
});

test("a newcomer's lost offline edits reach every peer: each probes it on the ListPeersResponse", async () => {
  const net = new Net();
  const a = await net.add("alice");
  const b = await net.add("bob");
  const c = await net.add("carol");
  net.setOnline("carol", false);
  a.update("feature", meta("fa"), "properties.name", "by alice");
  net.settle();
  c.update("feature", meta("fc"), "properties.name", "by carol");
  c.flush(); // sent on a connection that dropped it
  a.receive({ kind: "JoinResponse", peer: "alice", peers: ["alice", "bob"] });
  b.receive({ kind: "JoinResponse", peer: "bob", peers: ["alice", "bob"] });
  a.flush();
  b.flush(); // their join requests: not the point here
  net.setOnline("carol", true);
  c.receive({ kind: "JoinResponse", peer: "carol", peers: ["alice", "bob", "carol"] });
  const list = { kind: "ListPeersResponse", peers: ["alice", "bob", "carol"] };
  a.receive(list);
  b.receive(list);
  for (const e of [a, b]) {
    const [probe, ...rest] = e.flush();
    assert.equal(rest.length, 0);
    const m = JSON.parse(probe);
    assert.deepEqual([m.recipient, m.message.verb, m.message.pushBack], ["carol", "ListOperationsRequest", true]);
    net.route(e.peerId, probe);
  }
  net.settle();
  for (const e of [a, b, c]) assert.equal(e.get("feature", meta("fc"), "properties.name"), "by carol", e.peerId);
  const [sa, sb, sc] = net.states();
  assert.equal(sa, sc);
  assert.equal(sb, sc);
  a.receive(list);
  assert.equal(a.pending(), 0, "the same list again probes no one");
  net.close();
});

test("undo and redo: local steps, sent as new operations, others' work left alone", async () => {
  const net = new Net();
  const a = await net.add("alice");
  const b = await net.add("bob");
  const events = [];
  a.onChange((e) => events.push(e));
  assert.equal(a.canUndo(), false);
  assert.deepEqual(a.undo(), { done: false, changes: [], skipped: [] });

  a.upsert("feature", meta("f1"), feature("first"));
  a.update("feature", meta("f1"), "properties.name", "second");
  a.update("feature", meta("f1"), "properties.color", "red");
  net.settle();
  assert.equal(a.canUndo(), true);

  let r = a.undo(); // color
  assert.equal(r.done, true);
  assert.deepEqual(
    r.changes.map((ch) => [ch.kind, ch.key]),
    [["unset", "properties.color"]],
  );
  assert.equal(events.at(-1).origin, "undo");
  net.settle();
  assert.equal(b.get("feature", meta("f1"), "properties.color"), undefined);

  // Bob renames the feature: alice's undo of her rename leaves his name.
  b.update("feature", meta("f1"), "properties.name", "bob's name");
  net.settle();
  r = a.undo();
  assert.equal(r.done, true);
  assert.deepEqual(r.skipped, [{ subject: "feature", metadata: { featureType: "marker", id: "f1", layerId: layer }, key: "properties.name" }]);
  assert.equal(a.get("feature", meta("f1"), "properties.name"), "bob's name");

  // The create: bob has written inside the feature since, so it stays.
  r = a.undo();
  assert.equal(r.done, true);
  assert.deepEqual(r.changes, []);
  assert.deepEqual(
    r.skipped.map((s) => s.key),
    [""],
  );
  assert.equal(a.canUndo(), false);
  // Redo re-applies what the undo of the color reverted.
  assert.equal(a.canRedo(), true);
  r = a.redo();
  assert.equal(events.at(-1).origin, "redo");
  net.settle();
  assert.equal(b.get("feature", meta("f1"), "properties.color"), "red");
  assert.equal(b.get("feature", meta("f1"), "properties.name"), "bob's name");
  assert.equal(a.state(), b.state());

  // Undo of a create is a delete; undo of the delete restores the object.
  a.upsert("feature", meta("f3"), feature("three"));
  net.settle();
  r = a.undo();
  assert.deepEqual(
    r.changes.map((ch) => ch.kind),
    ["deleted"],
  );
  net.settle();
  assert.equal(b.get("feature", meta("f3")), undefined);
  a.redo();
  net.settle();
  assert.equal(b.get("feature", meta("f3"), "properties.name"), "three");

  // Edits in one group are one step; a new edit clears redo.
  a.update("feature", meta("f1"), "geometry", point(1, 1), { group: "drag" });
  a.update("feature", meta("f1"), "geometry", point(2, 2), { group: "drag" });
  a.update("feature", meta("f1"), "geometry", point(3, 3), { group: "drag" });
  a.undo();
  assert.deepEqual(a.get("feature", meta("f1"), "geometry"), point(1, 2));
  assert.equal(a.canRedo(), true);
  a.update("map", {}, "properties.name", "x");
  assert.equal(a.canRedo(), false);
  net.close();
});

test("snapshot round trip: state, peer, clock and undo survive", async () => {
  const clock = manualClock();
  const a = await createEngine({ peerId: "alice", now: clock.now });
  a.upsert("feature", meta("f1"), feature("one"));
  a.update("feature", meta("f1"), "properties.name", "two");
  a.flush();
  a.update("feature", meta("f1"), "properties.color", "blue"); // still in the outbox
  const snap = a.snapshot();
  assert.ok(snap instanceof Uint8Array && snap.byteLength > 0);

  const b = await createEngine({ snapshot: snap, now: clock.now });
  assert.equal(b.peerId, "alice");
  assert.equal(b.state(), a.state());
  assert.equal(b.clock(), a.clock());
  assert.deepEqual(b.vector(), a.vector());
  assert.equal(b.pending(), 1, "the outbox is part of the snapshot");
  assert.equal(b.canUndo(), true);
  b.undo();
  assert.equal(b.get("feature", meta("f1"), "properties.color"), undefined);

  // A string and an ArrayBuffer work too.
  const text = new TextDecoder().decode(snap);
  const c = await createEngine({ snapshot: text, peerId: "alice" });
  assert.equal(c.state(), a.state());
  const d = await createEngine({ snapshot: snap.slice().buffer });
  assert.equal(d.state(), a.state());

  await rejectsCode(createEngine({ snapshot: '{"format":"mapcrdt-snapshot","version":999}' }), "snapshot_version");
  await rejectsCode(createEngine({ snapshot: "{}" }), "bad_snapshot");
  await rejectsCode(createEngine({ snapshot: snap, peerId: "someone-else" }), "bad_option");
  for (const e of [a, b, c, d]) e.close();
});

test("bad input is rejected with its code, changes nothing, and the engine keeps working", async () => {
  const net = new Net();
  const a = await net.add("alice");
  const b = await net.add("bob");
  a.upsert("feature", meta("f1"), feature("one"));
  net.settle();
  const before = b.state();
  const deep = '{"a":'.repeat(100_000) + "1" + "}".repeat(100_000);
  const op = (fields) => JSON.stringify({ kind: "OperationMessage", sender: "x", subject: "map", metadata: {}, hlc: "1:0:x", ...fields });
  const cases = [
    ["invalid_json", () => b.receive("{not json")],
    ["invalid_json", () => b.receive("")],
    ["invalid_json", () => b.receive(new Uint8Array([0xff, 0xfe, 0x7b]))],
    ["too_deep", () => b.receive(deep)],
    ["too_deep", () => b.receive("[".repeat(2_000_000))],
    ["unknown_kind", () => b.receive({ kind: "Nope" })],
    ["unknown_verb", () => b.receive(op({ verb: "explode" }))],
    ["unknown_subject", () => b.receive(op({ verb: "delete", subject: "planet" }))],
    ["bad_hlc", () => b.receive(op({ verb: "delete", hlc: "tomorrow" }))],
    ["bad_hlc", () => b.receive(op({ verb: "delete", hlc: '1727184449010:0:a"b' }))], // would break the JSON it is written into
    ["clock_drift", () => b.receive(op({ verb: "delete", hlc: "32503680000000:0:x" }))],
    ["bad_key", () => b.receive(op({ verb: "update", key: "", value: 1 }))],
    ["bad_message", () => b.receive(42)],
    ["bad_message", () => b.receive(null)],
    ["bad_message", () => b.onPeerMessage({ kind: "PeerMessage", sender: "x", recipient: "bob", message: 3 })],
    ["unknown_subject", () => b.update("planet", {}, "name", 1)],
    ["unknown_subject", () => b.update(7, {}, "name", 1)],
    ["bad_metadata", () => b.update("feature", { id: "f1" }, "properties.name", 1)],
    ["bad_metadata", () => b.update("feature", "f1", "properties.name", 1)],
    ["bad_key", () => b.update("feature", meta("f1"), 12, 1)],
    ["bad_key", () => b.update("feature", meta("f1"), "", 1)],
    ["bad_value", () => b.update("feature", meta("f1"), "properties.name", undefined)],
    ["bad_value", () => b.update("feature", meta("f1"), "properties.name", () => 1)],
    ["bad_value", () => b.update("feature", meta("f1"), "properties.name", 10n)],
    [
      "bad_value",
      () => {
        const cyclic = {};
        cyclic.self = cyclic;
        b.update("feature", meta("f1"), "properties.name", cyclic);
      },
    ],
    ["bad_value", () => b.upsert("feature", meta("f1"), [1, 2])],
    ["invalid_json", () => b.update("feature", meta("f1"), "properties.name", jsonText("{nope"))],
    ["too_deep", () => b.update("feature", meta("f1"), "properties.x", JSON.parse("[".repeat(100) + "]".repeat(100)))],
    ["unknown_verb", () => b.edit({ verb: "explode", subject: "map", metadata: {} })],
    ["bad_option", () => b.edit({ verb: "delete", subject: "map", metadata: {}, colour: "red" })],
    ["bad_option", () => b.update("map", {}, "properties.a", 1, { grup: "x" })],
    ["bad_state", () => b.commitBatch()],
    ["bad_hlc", () => b.markSaved("last tuesday")],
    ["bad_hlc", () => b.markSaved(12)],
    ["clock_drift", () => b.markSaved(`${Number(b.clock().split(":")[0]) + 120_000}:0:server`)],
    ["invalid_json", () => b.update("feature", meta("f1"), "properties.name", jsonText(""))],
    ["invalid_json", () => b.upsert("feature", meta("f1"), jsonText(""))],
    ["bad_option", () => b.syncRequest("has space")],
    ["bad_option", () => b.syncRequest("")],
    ["bad_key", () => b.edit({ verb: "delete", subject: "feature", metadata: meta("f1"), key: "properties.name" })],
    ["bad_key", () => b.edit({ verb: "upsert", subject: "feature", metadata: meta("f1"), key: "properties", value: { a: 1 } })],
    ["bad_key", () => b.get("feature", meta("f1"), "")],
    ["bad_option", () => b.setPeers(["alice\u001ebob"])],
    ["bad_option", () => b.syncRequest('a"b')],
    ["bad_state", () => b.syncRequest()],
    ["bad_metadata", () => b.update("feature", new Proxy(meta("f1"), { ownKeys() { throw new Error("trap"); } }), "properties.a", 1)],
    ["bad_metadata", () => b.update("feature", { get id() { throw 42; } }, "properties.a", 1)],
    ["bad_option", () => b.update("map", {}, "properties.a", 1, new Proxy({}, { ownKeys() { throw new Error("trap"); } }))],
    ["bad_option", () => b.onChange("not a function")],
    ["bad_option", () => b.setPeers("bob")],
  ];
  for (const [code, fn] of cases) {
    throwsCode(fn, code);
    assert.equal(b.state(), before, `${code}: the state changed`);
  }
  assert.equal(b.pending(), 0, "nothing queued by bad input");
  // Still working, both ways.
  b.update("feature", meta("f1"), "properties.name", "after");
  a.update("feature", meta("f1"), "properties.color", "green");
  net.settle();
  assert.equal(a.state(), b.state());
  assert.equal(a.get("feature", meta("f1"), "properties.name"), "after");
  net.close();
});

test("a panic inside the module is recovered: code internal, the module keeps serving", async () => {
  const a = await createEngine({ peerId: "alice" });
  const b = await createEngine({ peerId: "bob" });
  const raw = await _rawBridge();
  const h = Number(raw.call(raw.methods.create, 0, 0, ["raw-peer"]));
  // Calls no glue makes: missing arguments, a method past the table, too many arguments,
  // lengths pointing past the buffer, non-numbers through the js.FuncOf bridge.
  throwsCode(() => raw.call(raw.methods.edit, h, 0, []), "internal", /panic: runtime error: index out of range/);
  throwsCode(() => raw.call(raw.methods.seed, h, 0, ["feature"]), "internal", /panic/);
  throwsCode(() => raw.call(9999, h, 0, []), "internal", /no method/);
  throwsCode(() => raw.call(raw.methods.receive, h, 0, new Array(40).fill("{}")), "internal", /more than the bridge takes/);
  throwsCode(() => raw.callFuncOf("edit", {}, null, [Symbol.iterator.toString()]), "internal", /panic/);
  throwsCode(() => raw.callFuncOf(raw.methods.edit, h, 0, []), "internal", /panic/);
  const ex = raw.exports;
  const n = ex.mapcrdt_call(raw.methods.receive, h, 0, 1e6, Date.now());
  assert.ok(n < 0, "a call with a million arguments fails");
  // The module is alive: every engine still works.
  a.update("map", {}, "properties.name", "still here");
  b.receive(a.flush()[0]);
  assert.equal(b.get("map", {}, "properties.name"), "still here");
  assert.equal(raw.call(raw.methods.peerId, h, 0, []), "raw-peer");
  a.close();
  b.close();
});

test("several engines in one process share the module and nothing else", async () => {
  await initialize();
  await rejectsCode(initialize({ get wasmURL() { throw new Error("boom"); } }), "bad_option", /wasmURL cannot be read: boom/);
  const engines = await Promise.all(Array.from({ length: 20 }, (_, i) => createEngine({ peerId: `p${i}` })));
  assert.equal(new Set(engines.map((e) => e.peerId)).size, 20);
  engines.forEach((e, i) => e.update("map", {}, "properties.owner", i));
  engines.forEach((e, i) => assert.equal(e.get("map", {}, "properties.owner"), i));
  for (const e of engines.slice(0, 10)) e.close();
  engines[0].close(); // twice is fine
  assert.equal(engines[0].closed, true);
  throwsCode(() => engines[0].state(), "bad_state", /closed/);
  throwsCode(() => engines[3].update("map", {}, "properties.x", 1), "bad_state");
  assert.equal(engines[15].get("map", {}, "properties.owner"), 15);
  // A fresh UUID when no peerId is given.
  const anon = await createEngine();
  assert.match(anon.peerId, /^[0-9a-f-]{36}$/);
  for (const e of engines.slice(10)) e.close();
  anon.close();
  // A different wasmURL after the module is loaded is an error.
  await rejectsCode(createEngine({ wasmURL: "/elsewhere/mapcrdt.wasm" }), "bad_option", /already loaded/);
});

test("createEngine validates its options and names an unknown key", async () => {
  await rejectsCode(createEngine({ peerID: "x" }), "bad_option", /"peerID"/);
  await rejectsCode(createEngine({ limits: { maxDepht: 3 } }), "bad_option", /"maxDepht"/);
  await rejectsCode(createEngine({ peerId: "" }), "bad_option");
  await rejectsCode(createEngine({ peerId: "has space" }), "bad_option", /peerId/);
  // A peer id is written inside JSON strings as it is: no quote, no backslash.
  await rejectsCode(createEngine({ peerId: 'a"b' }), "bad_option", /peerId/);
  await rejectsCode(createEngine({ peerId: "a\\b" }), "bad_option", /peerId/);
  // uMap's peers split a clock's text at ':' and drop an operation whose clock has more parts.
  await rejectsCode(createEngine({ peerId: "team:alice" }), "bad_option", /peerId "team:alice" holds ':'/);
  await rejectsCode(createEngine({ maxDrift: -1 }), "bad_option", /maxDrift/);
  await rejectsCode(createEngine({ undoDepth: 1.5 }), "bad_option", /undoDepth/);
  await rejectsCode(createEngine({ captureInterval: "1s" }), "bad_option", /captureInterval/);
  await rejectsCode(createEngine({ now: 5 }), "bad_option", /now/);
  // 0 is the module's "default": an explicit 0 was taken for 60 s, or 100 steps.
  await rejectsCode(createEngine({ maxDrift: 0 }), "bad_option", /maxDrift must be a positive integer/);
  await rejectsCode(createEngine({ undoDepth: 0 }), "bad_option", /undoDepth must be a positive integer/);
  await rejectsCode(createEngine({ syncPage: 0 }), "bad_option", /syncPage must be a positive integer/);
  await rejectsCode(createEngine({ syncPage: "100" }), "bad_option", /syncPage/);
  await rejectsCode(createEngine({ snapshot: 5 }), "bad_option", /snapshot/);
  await rejectsCode(createEngine({ bridge: "carrier pigeon" }), "bad_option", /bridge/);
  await rejectsCode(createEngine({ limits: { maxDepth: 0 } }), "bad_option", /maxDepth/);
  await rejectsCode(createEngine(null), "bad_option");

  // now: the engine's clock follows it; maxDrift bounds remote clocks against it.
  const clock = manualClock(1_000_000);
  const e = await createEngine({ peerId: "timed", now: clock.now, maxDrift: 1000 });
  e.update("map", {}, "properties.a", 1);
  assert.match(e.clock(), /^1000000:0:timed$/);
  const ahead = (ms) =>
    JSON.stringify({ kind: "OperationMessage", sender: "z", verb: "update", subject: "map", metadata: {}, key: "properties.b", value: 2, hlc: `${ms}:0:z`, seq: 1 });
  throwsCode(() => e.receive(ahead(1_005_000)), "clock_drift");
  clock.advance(4500);
  e.receive(ahead(1_005_000));
  assert.equal(e.get("map", {}, "properties.b"), 2);
  // limits reach the engine.
  const small = await createEngine({ limits: { maxMessageBytes: 100 } });
  throwsCode(() => small.receive(ahead(1).padEnd(200, " ")), "too_large");
  e.close();
  small.close();
});

test("a local edit whose message a peer would refuse throws too_large and changes nothing", async () => {
  const net = new Net();
  const limits = { maxBatch: 3, maxMessageBytes: 2048 };
  const a = await net.add("alice", { engine: { limits } });
  const b = await net.add("bob", { engine: { limits } });
  throwsCode(() => a.update("feature", meta("big"), "properties.text", "x".repeat(2000)), "too_large");
  a.startBatch();
  for (let i = 0; i < 3; i++) a.update("feature", meta(`f${i}`), "properties.name", `n${i}`);
  const before = a.state();
  throwsCode(() => a.update("feature", meta("f3"), "properties.name", "n3"), "too_large", /maxBatch/);
  assert.equal(a.state(), before);
  a.commitBatch();
  a.startBatch();
  a.update("feature", meta("g0"), "properties.text", "y".repeat(900));
  throwsCode(() => a.update("feature", meta("g1"), "properties.text", "y".repeat(900)), "too_large", /maxMessageBytes/);
  a.commitBatch();
  net.settle(); // bob takes every message alice sends
  assert.equal(b.state(), a.state());
  assert.equal(b.get("feature", meta("f2"), "properties.name"), "n2");
  net.close();
});

test("an undo restoring more than a message holds goes out in several, each taken by a peer", async () => {
  const net = new Net();
  const limits = { maxMessageBytes: 4096 };
  const a = await net.add("alice", { engine: { limits } });
  const b = await net.add("bob", { engine: { limits } });
  for (let i = 0; i < 20; i++) a.update("feature", meta(`f${i}`), "properties.text", "x".repeat(400));
  net.settle();
  a.startBatch();
  for (let i = 0; i < 20; i++) a.delete("feature", meta(`f${i}`));
  a.commitBatch();
  net.settle();
  assert.equal(b.state(), "[]");
  a.undo(); // twenty features of ~450 bytes back: more than 4 KiB
  const msgs = a.flush();
  assert.ok(msgs.length >= 3, `${msgs.length} messages`);
  for (const m of msgs) {
    assert.ok(Buffer.byteLength(m) <= 4096, `a message of ${Buffer.byteLength(m)} bytes`);
    b.receive(m);
  }
  assert.equal(b.state(), a.state());
  assert.equal(b.get("feature", meta("f19"), "properties.text"), "x".repeat(400));
  net.close();
});

test("batch, seed, get, compact, dirty and the save horizon", async () => {
  const net = new Net();
  const a = await net.add("alice");
  const b = await net.add("bob");
  const events = [];
  a.onChange((e) => events.push(e));
  a.seed("datalayer", { id: layer }, { name: "From the server" });
  assert.equal(a.pending(), 0, "a seed is never sent");
  assert.equal(events.at(-1).origin, "local");
  assert.equal(a.get("datalayer", { id: layer }, "name"), "From the server");

  const result = a.batch((e) => {
    assert.equal(e.inBatch(), true);
    e.upsert("feature", meta("f1"), feature("one"));
    e.upsert("feature", meta("f2"), feature("two"));
    return "done";
  });
  assert.equal(result, "done");
  assert.equal(a.inBatch(), false);
  const msgs = a.flush();
  assert.equal(msgs.length, 1);
  assert.equal(JSON.parse(msgs[0]).verb, "batch");
  b.receive(msgs[0]);
  assert.equal(b.get("feature", meta("f2"), "properties.name"), "two");

  // A batch whose function throws is still committed, and the error goes through.
  assert.throws(() =>
    a.batch((e) => {
      e.update("feature", meta("f1"), "properties.x", 1);
      throw new Error("boom");
    }),
  /boom/);
  assert.equal(a.inBatch(), false);
  net.settle();
  assert.equal(b.get("feature", meta("f1"), "properties.x"), 1);

  // Compaction: superseded drags leave the log; the state stays.
  for (let i = 0; i < 10; i++) {
    a.update("feature", meta("f1"), "geometry", point(i, i));
    net.settle();
  }
  const stateBefore = a.state();
  const st = a.compact();
  assert.ok(st.ops >= 9, JSON.stringify(st));
  assert.ok(st.bytes > 0 && st.remaining > 0);
  assert.equal(a.state(), stateBefore);

  // Dirty: datalayer before its features; saved clears it.
  const dirty = a.dirty();
  assert.ok(dirty.length >= 2);
  assert.ok(dirty.every((d) => typeof d.metadata === "object"));
  const saved = a.savedMessage();
  assert.equal(JSON.parse(saved).kind, "SavedMessage");
  assert.deepEqual(a.dirty(), []);
  b.update("feature", meta("f9"), "properties.name", "nine");
  assert.equal(b.dirty().length, 1);
  b.receive(saved);
  b.markSaved(b.clock());
  assert.deepEqual(b.dirty(), []);

  // JoinResponse: the peers, and a sync request to one of them.
  b.receive({ kind: "JoinResponse", peers: ["alice", "bob"] });
  assert.deepEqual(b.peers(), ["alice", "bob"]);
  b.setPeers(["alice"]);
  assert.equal(JSON.parse(b.syncRequest()).recipient, "alice");
  net.close();
});

test("messages may be text, objects or UTF-8 bytes; values may be JSON text", async () => {
  const a = await createEngine({ peerId: "alice" });
  const b = await createEngine({ peerId: "bob" });
  a.update("feature", jsonText(JSON.stringify(meta("f1"))), "properties.name", jsonText('"Caf\\u00e9 東京"'));
  a.update("feature", meta("f1"), "properties.n", 1);
  a.update("feature", meta("f1"), "properties.o", { nested: [1, { x: null }] });
  const [m1, m2, m3] = a.flush();
  b.receive(m1);
  b.receive(JSON.parse(m2));
  b.receive(new TextEncoder().encode(m3));
  assert.equal(b.get("feature", meta("f1"), "properties.name"), "Café 東京");
  assert.deepEqual(b.get("feature", meta("f1"), "properties.o"), { nested: [1, { x: null }] });
  a.unset("feature", meta("f1"), "properties.n");
  b.receive(a.flush()[0]);
  assert.equal(b.get("feature", meta("f1"), "properties.n"), undefined);
  assert.equal(a.state(), b.state());
  // Unicode keys and long values cross the buffers intact.
  const long = "é".repeat(100_000) + "𝄞";
  a.update("feature", meta("f1"), "properties.ключ", long);
  b.receive(a.flush()[0]);
  assert.equal(b.get("feature", meta("f1"), "properties.ключ"), long);
  a.close();
  b.close();
});

test("texts of any size and script cross the bridge whole", async () => {
  const a = await createEngine({ peerId: "a" });
  const b = await createEngine({ peerId: "b" });
  // Sizes around the bridge's guess (the texts' lengths and an eighth) and its buffer (64 KB),
  // in 1-, 2-, 3- and 4-byte characters, with short texts after the long one.
  const texts = [
    "x".repeat(70000),
    "é".repeat(30000),
    "東".repeat(50000),
    "😀".repeat(20000),
    "a".repeat(60000) + "東".repeat(3000),
    "東" + "a".repeat(100),
  ];
  texts.forEach((t, i) => {
    a.update("feature", meta(`ü${i}`), "properties.name", t, { group: "g東" });
    const [msg] = a.flush();
    assert.equal(a.get("feature", meta(`ü${i}`), "properties.name"), t);
    const [ch] = b.receive(msg);
    assert.equal(ch.value, t);
    assert.deepEqual(ch.metadata, meta(`ü${i}`));
    assert.equal(b.get("feature", meta(`ü${i}`), "properties.name"), t);
    assert.equal(b.receive(new TextEncoder().encode(msg)).length, 0); // as bytes: known already
  });
  assert.equal(a.state(), b.state());
  a.close();
  b.close();
});

test("string values are written as JSON.stringify writes them, quoted as they are when plain", async () => {
  const e = await createEngine({ peerId: "strings" });
  const strings = ["", "v12-34", " ", "~", "a".repeat(63), "a".repeat(64), "b".repeat(200), 'say "hi"', "back\\slash",
    "tab\there", "\u001f", "\u007f", "caf\u00e9", "\u2028", "emoji \ud83d\uddfa", "lone \ud800", "new\nline"];
  for (const [i, s] of strings.entries()) {
    e.update("feature", meta("s" + i), "properties.name", s);
    const [msg] = e.flush();
    assert.equal(JSON.parse(msg).value, s, `value ${JSON.stringify(s)}`);
    assert.equal(e.get("feature", meta("s" + i), "properties.name"), s);
    if (/^[\x20-\x7e]*$/.test(s) && !/["\\]/.test(s)) assert.ok(msg.includes(`"value":"${s}"`), msg);
  }
  e.close();
});

test("a received change reads the same whatever its shape (one change read without JSON.parse, or not)", async () => {
  const a = await createEngine({ peerId: "shapes-a" });
  const b = await createEngine({ peerId: "shapes-b" });
  const values = ["", "plain", 'say "hi"', "back\\slash", 'a","b', "[1]", "{x}", "東京 café", "ends with \\", "\u001f",
    0, -1.5, 1e21, 123456789, true, false, null, { a: 1 }, [1, "x"], { type: "Point", coordinates: [2.35, 48.85] }, [], {},
    ["a", 1], { s: "x", n: [1, "y", 2] }, [[1, 2], [3, 4]]];
  const keys = ["properties.name", "properties.a\\.b", "x"];
  let n = 0;
  const hlcOf = (msg) => JSON.parse(msg).hlc;
  for (const key of keys) {
    for (const value of values) {
      const m = meta(`shape${n++}`);
      a.update("feature", m, "properties.first", 1); // the object reaches b's table first
      b.receive(a.flush()[0]);
      a.update("feature", m, key, value);
      const [msg] = a.flush();
      const got = b.receive(msg);
      assert.deepEqual(got, [{ kind: "set", subject: "feature", metadata: m, key, value, hlc: hlcOf(msg) }], `${key} = ${JSON.stringify(value)}`);
      a.unset("feature", m, key);
      const [gone] = a.flush();
      assert.deepEqual(b.receive(gone), [{ kind: "unset", subject: "feature", metadata: m, key, hlc: hlcOf(gone) }]);
    }
  }
  // Several changes in one result, of objects already known, first a string, a number, an unset.
  const [m1, m2] = [meta("shape0"), meta("shape1")];
  for (const [v1, v2] of [["one", "two"], [1, 2], [undefined, undefined], [true, "x"], [null, { a: 1 }], [{ a: 1 }, "x"],
    [[1, 2], 3], [["a", 1], 2], [{ b: ["c", 4] }, { d: 5 }]]) {
    a.startBatch();
    if (v1 === undefined) {
      a.unset("feature", m1, "properties.first");
      a.unset("feature", m2, "properties.first");
    } else {
      a.update("feature", m1, "properties.first", v1);
      a.update("feature", m2, "properties.first", v2);
    }
    a.commitBatch();
    const [msg] = a.flush();
    const kind = v1 === undefined ? "unset" : "set";
    const want = [m1, m2].map((m, i) => {
      const c = { kind, subject: "feature", metadata: m, key: "properties.first" };
      if (v1 !== undefined) c.value = [v1, v2][i];
      c.hlc = hlcOf(msg);
      return c;
    });
    assert.deepEqual(b.receive(msg), want, `batch ${JSON.stringify([v1, v2])}`);
  }
  // Whole-object changes.
  const m = meta("shape-batch");
  a.startBatch();
  a.upsert("feature", m, { type: "Feature", properties: { name: "x" } });
  a.update("feature", m, "properties.color", "red");
  a.commitBatch();
  const [batch] = a.flush();
  const got = b.receive(batch);
  assert.equal(got.length, 1); // the upsert and the update of one object: one created
  assert.equal(got[0].kind, "created");
  assert.deepEqual(got[0].value, { type: "Feature", properties: { name: "x", color: "red" } });
  a.delete("feature", m);
  const [del] = a.flush();
  assert.deepEqual(b.receive(del), [{ kind: "deleted", subject: "feature", metadata: m, hlc: hlcOf(del) }]);
  assert.equal(a.state(), b.state());
  a.close();
  b.close();
});

test("a large argument costs Go its size in bytes, not three bytes per character", async () => {
  const a = await createEngine({ peerId: "a" });
  const raw = await _rawBridge();
  const h = Number(raw.call(raw.methods.create, 0, 0, ["sizes"]));
  const alloc = () => a.memory().totalAlloc;
  // canUndo ignores its argument: what the call allocates is the input buffer (and the small
  // one that replaces it after the call).
  // Text within the first guess (its length and a sixteenth) costs one buffer; past it, two.
  const cases = [
    ["a".repeat(1_000_000), 1_000_000, 1.2e6],
    ["a".repeat(900_000) + "é".repeat(50_000), 1_000_000, 1.2e6],
    ["a".repeat(800_000) + "é".repeat(200_000), 1_200_000, 2.5e6],
    ["東".repeat(400_000), 1_200_000, 1.8e6],
  ];
  for (const [text, bytes, most] of cases) {
    for (const args of [[text], [text, "é".repeat(10)], ["x", text]]) {
      const before = alloc();
      assert.equal(raw.call(raw.methods.canUndo, h, 0, args), "false");
      const used = alloc() - before;
      assert.ok(used >= bytes && used < most, `${bytes} bytes of text: ${used} bytes allocated`);
    }
  }
  // And the text arrives whole: a value past the first guess, then one within it.
  const b = await createEngine({ peerId: "b" });
  for (const [text] of cases.slice(1)) {
    a.update("feature", meta("big"), "properties.name", text, { group: "g東" });
    const [msg] = a.flush();
    const [ch] = b.receive(msg);
    assert.equal(ch.value, text);
  }
  assert.equal(a.state(), b.state());
  a.close();
  b.close();
});

test("a throwing onChange listener does not break the engine", async () => {
  const a = await createEngine({ peerId: "alice" });
  const seen = [];
  a.onChange(() => {
    throw new Error("listener bug");
  });
  a.onChange((e) => seen.push(e.origin));
  // The glue rethrows a listener's error in a microtask (an uncaught error, reported as
  // such); catch it here by standing in for queueMicrotask.
  const queued = [];
  const original = globalThis.queueMicrotask;
  globalThis.queueMicrotask = (fn) => queued.push(fn);
  try {
    a.update("map", {}, "properties.name", "x");
  } finally {
    globalThis.queueMicrotask = original;
  }
  assert.deepEqual(seen, ["local"]);
  assert.equal(queued.length, 1);
  assert.throws(queued[0], /listener bug/);
  assert.equal(a.get("map", {}, "properties.name"), "x");
  a.close();
});

test("the js.FuncOf bridge gives the same results as the wasmexport bridge", async () => {
  const clock = manualClock();
  const x = await createEngine({ peerId: "same", now: clock.now });
  const y = await createEngine({ peerId: "same", now: clock.now, bridge: "funcof" });
  for (const e of [x, y]) {
    e.upsert("feature", meta("f1"), feature("Straße"));
    e.update("feature", meta("f1"), "properties.color", "red");
    e.undo();
  }
  assert.deepEqual(y.flush(), x.flush());
  assert.equal(y.state(), x.state());
  assert.deepEqual(y.snapshot(), x.snapshot());
  throwsCode(() => y.receive("{"), "invalid_json");
  // Changes through either bridge name their objects in the one table of the module, also
  // after the glue lost part of it.
  const raw = await _rawBridge();
  const z = await createEngine({ peerId: "z", now: clock.now });
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 30; i++) z.update("feature", meta(`fz${i % 12}`), "properties.name", `n${round}.${i}`);
    z.flush().forEach((m, k) => {
      if (k % 4 === 3) raw.objects.length = 2 * round; // as if results were lost
      const got = y.receive(m);
      assert.deepEqual(x.receive(m), got);
      assert.equal(got[0].metadata.id, JSON.parse(m).metadata.id);
    });
  }
  x.close();
  y.close();
  z.close();
});

test("merge: three-way merge of datalayer saves", async () => {
  const fc = (features) => ({ type: "FeatureCollection", features });
  const f = (id, name) => ({ type: "Feature", id, geometry: null, properties: { name } });
  const ref = fc([f("a", "r"), f("b", "r")]);
  const latest = fc([f("a", "latest"), f("b", "r")]);
  const incoming = fc([f("a", "r"), f("b", "incoming")]);
  const res = await merge(ref, JSON.stringify(latest), new TextEncoder().encode(JSON.stringify(incoming)));
  const doc = JSON.parse(res.document);
  assert.deepEqual(
    doc.features.map((x) => x.properties.name),
    ["latest", "incoming"],
  );
  assert.deepEqual(res.conflicts, []);

  const clash = fc([f("a", "mine"), f("b", "r")]);
  await assert.rejects(merge(ref, latest, clash), (e) => {
    assert.equal(e.code, "conflict");
    assert.equal(e.conflicts.length, 1);
    assert.equal(e.conflicts[0].featureId, "a");
    assert.equal(e.conflicts[0].key, "properties.name");
    assert.equal(e.conflicts[0].incoming, "mine");
    return true;
  });
  const forced = await merge(ref, latest, clash, { policy: "incoming" });
  assert.equal(JSON.parse(forced.document).features[0].properties.name, "mine");
  assert.equal(forced.conflicts.length, 1);
  // A number id is named by its text; the side that deleted the feature (latest changed its
  // id: one deleted, one added) has no value.
  const byNumber = await merge(fc([f(7, "r")]), fc([f(7.5, "r")]), fc([f(7, "incoming")]), { policy: "latest" });
  assert.deepEqual(byNumber.conflicts, [
    { featureId: "7", key: "", reference: f(7, "r"), incoming: f(7, "incoming") },
  ]);
  assert.ok(!("latest" in byNumber.conflicts[0]));
  await rejectsCode(merge(ref, latest, clash, { policy: "mine" }), "bad_option");
  await rejectsCode(merge(ref, latest, clash, { polcy: "latest" }), "bad_option", /"polcy"/);
  await rejectsCode(merge("{", latest, clash), "invalid_json");
  // An option whose getter throws is a bad_option error, as in createEngine.
  const boom = () => {
    throw new Error("boom");
  };
  await rejectsCode(merge(ref, latest, clash, { get policy() { return boom(); } }), "bad_option", /policy cannot be read: boom/);
  await rejectsCode(merge(ref, latest, clash, { get wasmURL() { return boom(); } }), "bad_option", /wasmURL cannot be read: boom/);
});

test("merge: a string holding a lone surrogate is kept, and told from another", async () => {
  // JSON.stringify writes a lone surrogate as its escape; JSON.parse gives it back.
  const fc = (...features) => ({ type: "FeatureCollection", features });
  const f = (id, props) => ({ type: "Feature", id, geometry: null, properties: props });
  const res = await merge(fc(f("a", { n: "x\ud800", m: "\udc00" })), fc(f("a", { n: "x\ud800", m: "\udc00", z: 1 })), fc(f("a", { n: "x\udbff", m: "\udc00" })));
  assert.deepEqual(JSON.parse(res.document).features[0].properties, { m: "\udc00", n: "x\udbff", z: 1 });
  // Two ids differing by their lone surrogate are two features: incoming replaced one.
  const ids = await merge(fc(f("\ud800", {})), fc(f("\ud800", {}), f("z", {})), fc(f("\udbff", {})));
  assert.deepEqual(JSON.parse(ids.document).features.map((x) => x.id), ["z", "\udbff"]);
});

test("merge: a document given as text keeps a raw lone surrogate as JSON.parse reads it, as from an object", async () => {
  // JSON text built by JavaScript may hold a lone surrogate as it is, not escaped: JSON.parse
  // reads it. Encoded as UTF-8 it would reach the module as U+FFFD: "x\ud800" and "x\udbff"
  // would be one value, and latest's edit from one to the other lost.
  const text = (...features) =>
    `{"type":"FeatureCollection","features":[${features
      .map(([id, n]) => `{"type":"Feature","id":"${id}","geometry":null,"properties":{"n":"x${n}"}}`)
      .join(",")}]}`;
  const docs = [text(["a", "\ud800"]), text(["a", "\udbff"]), text(["a", "\ud800"])];
  const res = await merge(...docs);
  assert.deepEqual(JSON.parse(res.document).features[0].properties, { n: "x\udbff" });
  assert.equal(res.document, (await merge(...docs.map((d) => JSON.parse(d)))).document);
  assert.equal(res.document, (await merge(...docs.map((d) => jsonText(d)))).document, "as jsonText");
  // Ids differing by their lone surrogate are two features, as from objects.
  const ids = await merge(text(["\ud800", ""]), text(["\ud800", ""], ["z", ""]), text(["\udbff", ""]));
  assert.deepEqual(JSON.parse(ids.document).features.map((f) => f.id), ["z", "\udbff"]);
  // A member name holding one is refused, as from an object; after an escaping backslash it
  // is no JSON.
  const fc = '{"type":"FeatureCollection","features":[]';
  await rejectsCode(merge(`${fc},"\ud800":1}`, `${fc}}`, `${fc}}`), "bad_value");
  await rejectsCode(merge(`${fc},"x":"\\\ud800"}`, `${fc}}`, `${fc}}`), "invalid_json");
  const x = `${fc},"x":"\\\\\ud800"`; // an escaped backslash, then the surrogate
  const kept = await merge(`${x}}`, `${x}}`, `${x},"y":1}`);
  assert.equal(JSON.parse(kept.document).x, "\\\ud800");
});

test("options.now: a clock that throws or returns no time makes the call throw bad_option, changing nothing", async () => {
  for (const [name, bad] of [
    ["NaN", NaN],
    ["a string", "1727184449010"],
    ["a BigInt", 1727184449010n],
    ["zero", 0],
    ["past 2^53", 2 ** 54],
    ["undefined", undefined],
  ]) {
    await rejectsCode(createEngine({ peerId: "p", now: () => bad }), "bad_option", /options.now returned/, name);
  }
  await rejectsCode(createEngine({ now: () => { throw new Error("clock broke"); } }), "bad_option", /options.now threw: clock broke/);

  // A clock that breaks later: the call throws, the engine is as it was and works once the
  // clock does; other engines of the module never notice (a BigInt used to reach the
  // module's boundary and be taken for a crash of the module).
  let t = 1_727_184_449_010;
  let broken = null;
  const e = await createEngine({ peerId: "p", now: () => (broken === null ? t : broken) });
  const other = await createEngine({ peerId: "q" });
  e.update("map", {}, "properties.a", 1);
  const before = e.state();
  for (const b of [10n, NaN, "soon"]) {
    broken = b;
    throwsCode(() => e.update("map", {}, "properties.a", 2), "bad_option");
    throwsCode(() => e.flush(), "bad_option");
  }
  broken = null;
  assert.equal(e.state(), before);
  // A clock that fails right after the create call: createEngine reads it for that call
  // only (it used to read it again, and throw, leaving the module's new engine open with
  // no Engine to close it).
  const raw = await _rawBridge();
  const probe = Number(raw.call(raw.methods.create, 0, 0, ["probe"]));
  raw.call(raw.methods.close, probe, 0, []);
  let ticks = 0;
  let created = false;
  const late = await createEngine({ peerId: "late", now: () => (!created && ++ticks === 2 ? NaN : t) });
  created = true;
  assert.equal(raw.call(raw.methods.peerId, probe + 1, 0, []), "late");
  // close() reads no clock either: a broken one does not keep the engine open.
  created = false;
  ticks = 1;
  late.close();
  assert.equal(late.closed, true);
  throwsCode(() => raw.call(raw.methods.peerId, probe + 1, 0, []), "bad_state", /no engine/);
  t += 5;
  e.update("map", {}, "properties.a", 3);
  const sent = e.flush(); // one message per path: the latest value
  assert.equal(sent.length, 1);
  assert.equal(JSON.parse(sent[0]).value, 3);
  other.update("map", {}, "properties.b", 1);
  assert.equal(other.flush().length, 1);
  e.close();
  other.close();
});

test("a change's metadata, shared by later changes and engines, is frozen", async () => {
  const a = await createEngine({ peerId: "a" });
  const b = await createEngine({ peerId: "b" });
  const c = await createEngine({ peerId: "c" });
  a.update("feature", meta("f1"), "properties.name", "x");
  a.update("feature", meta("f1"), "properties.color", "red");
  const [m1, m2] = a.flush();
  const first = b.receive(m1)[0];
  assert.ok(Object.isFrozen(first.metadata));
  assert.throws(() => {
    first.metadata.hacked = true;
  }, TypeError);
  assert.throws(() => {
    first.metadata.id = "other";
  }, TypeError);
  for (const e of [b, c]) {
    const later = e.receive(m2)[0];
    assert.deepEqual({ ...later.metadata }, { featureType: "marker", id: "f1", layerId: layer });
  }
  // The rest of a change is the caller's.
  first.value = "mine";
  first.extra = 1;
  for (const e of [a, b, c]) e.close();
});

test("empty snapshots and buffers transferred away are refused with a code", async () => {
  for (const snapshot of ["", new Uint8Array(0), new ArrayBuffer(0)]) {
    // The module reads an empty argument as "no snapshot": this was a fresh engine.
    await rejectsCode(createEngine({ snapshot }), "bad_snapshot", /empty/);
  }
  const detach = (buffer) => {
    structuredClone(buffer, { transfer: [buffer] });
    assert.equal(buffer.byteLength, 0);
    return buffer;
  };
  await rejectsCode(createEngine({ snapshot: detach(new ArrayBuffer(16)) }), "bad_snapshot");
  const e = await createEngine({ peerId: "p" });
  const view = new Uint8Array(new ArrayBuffer(16));
  detach(view.buffer);
  // set() of a detached view threw a TypeError; new Uint8Array(detached) too.
  throwsCode(() => e.receive(view), "invalid_json");
  throwsCode(() => e.receive(detach(new ArrayBuffer(16))), "invalid_json");
  throwsCode(() => e.onPeerMessage(view), "invalid_json");
  e.update("map", {}, "properties.a", 1);
  assert.equal(e.flush().length, 1);
  e.close();
});

test("a batch open across an await, while a peer's edit arrives, leaves in parts; the later edit wins", async () => {
  const ca = manualClock();
  const cb = manualClock();
  const a = await createEngine({ peerId: "alice", now: ca.now });
  const b = await createEngine({ peerId: "bob", now: cb.now });
  a.startBatch();
  a.update("feature", meta("f1"), "properties.weight", 2);
  await new Promise((resolve) => setTimeout(resolve, 0)); // the page awaits something
  ca.advance(5000);
  cb.advance(5000);
  b.update("feature", meta("f1"), "properties.name", "bob");
  for (const m of b.flush()) a.receive(m);
  a.update("feature", meta("f1"), "properties.name", "alice, after seeing bob");
  a.commitBatch();
  const msgs = a.flush();
  assert.equal(msgs.length, 2, "two parts");
  for (const m of msgs) b.receive(m);
  for (const e of [a, b]) assert.equal(e.get("feature", meta("f1"), "properties.name"), "alice, after seeing bob");
  assert.equal(b.state(), a.state());
  a.undo(); // one step: both parts
  assert.equal(a.get("feature", meta("f1"), "properties.name"), "bob");
  assert.equal(a.get("feature", meta("f1"), "properties.weight"), undefined);
  assert.equal(a.canUndo(), false);
  a.close();
  b.close();
});

test("createEngine's defaults are the documented ones: maxDrift 60 s, 100 undo steps, keys of 1 KiB and 32 parts, 64 levels, 100,000 per batch, 32 MiB per message", async () => {
  // DESIGN §3 (MaxDrift default 60 s) and §9 (limits with defaults), README "Guarantees and
  // limits", index.d.ts: what an engine made without options takes and refuses.
  const clock = manualClock(1_000_000_000);
  const e = await createEngine({ peerId: "defaults", now: clock.now });
  const op = (wall, seq, key = "properties.b") =>
    JSON.stringify({ kind: "OperationMessage", sender: "z", verb: "update", subject: "map", metadata: {}, key, value: seq, hlc: `${wall}:0:z`, seq });
  throwsCode(() => e.receive(op(1_000_060_001, 1)), "clock_drift");
  e.receive(op(1_000_060_000, 1));
  assert.equal(e.get("map", {}, "properties.b"), 1);

  const m = meta("d");
  e.update("feature", m, "properties." + "k".repeat(1024 - "properties.".length), 1);
  throwsCode(() => e.update("feature", m, "properties." + "k".repeat(1025 - "properties.".length), 1), "too_large");
  e.update("feature", m, Array(32).fill("p").join("."), 1);
  throwsCode(() => e.update("feature", m, Array(33).fill("p").join("."), 1), "too_large");

  const nest = (n) => '{"a":'.repeat(n) + "1" + "}".repeat(n);
  e.upsert("feature", m, jsonText(nest(64)));
  throwsCode(() => e.upsert("feature", m, jsonText(nest(65))), "too_deep");

  const big = op(1_000_000_001, 2);
  e.receive(big.padEnd(32 << 20, " "));
  throwsCode(() => e.receive(big.padEnd((32 << 20) + 1, " ")), "too_large", /33554432|32 MiB/);

  e.flush();
  e.startBatch();
  for (let i = 0; i < 100_000; i++) e.update("map", {}, "properties.n", i);
  throwsCode(() => e.update("map", {}, "properties.n", -1), "too_large", /maxBatch|100000|100,000/);
  e.commitBatch();
  assert.equal(e.get("map", {}, "properties.n"), 99_999);
  e.flush();

  const u = await createEngine({ peerId: "undo-depth", now: clock.now });
  for (let i = 0; i < 101; i++) u.update("map", {}, "properties.n", i);
  let steps = 0;
  while (u.canUndo()) {
    u.undo();
    steps++;
  }
  assert.equal(steps, 100);
  assert.equal(u.get("map", {}, "properties.n"), 0);
  e.close();
  u.close();
});

test("a snapshot restores the engine that wrote it: its peer id comes with it, another peerId is bad_option", async () => {
  const a = await createEngine({ peerId: "alice" });
  a.update("map", {}, "properties.name", "saved");
  a.flush();
  const snap = a.snapshot();
  await rejectsCode(createEngine({ snapshot: snap, peerId: "bob" }), "bad_option", /"bob" differs from the snapshot's "alice"/);
  for (const opts of [{ snapshot: snap }, { snapshot: snap, peerId: "alice" }]) {
    const r = await createEngine(opts);
    assert.equal(r.peerId, "alice");
    assert.equal(r.state(), a.state());
    r.update("map", {}, "properties.name", "after");
    const [msg] = r.flush();
    assert.match(JSON.parse(msg).hlc, /:alice~[0-9a-z]+$/); // a new origin: no seq reused
    r.close();
  }
  a.close();
});

test("a number, boolean or null value is sent as JSON.stringify writes it", async () => {
  // json() writes these without JSON.stringify: the message must carry the same text, and
  // a value JSON has no number for (NaN, ±Infinity) goes as null, as JSON.stringify's.
  const values = [0, -0, 5, -3, 0.1 + 0.2, 2.35 + 1 / 1e6, 1e21, 1e-7, 5e-324, Number.MAX_VALUE, -1.5e300, NaN, Infinity, -Infinity, true, false, null];
  const e = await createEngine({ peerId: "n" });
  for (const v of values) {
    e.update("feature", meta("f1"), "properties.v", v);
    const [msg] = e.flush();
    const m = /"value":(.*),"verb":"update"}$/.exec(msg);
    assert.ok(m, msg);
    assert.equal(m[1], JSON.stringify(v), `the value ${String(v)} in ${msg}`);
    assert.equal(e.get("feature", meta("f1"), "properties.v"), JSON.parse(JSON.stringify(v)));
  }
  e.close();
});
