// mapcrdt/umap (umap.js): the uMap-shaped sync engine. Fake updaters with uMap's method names
// and argument shapes (updaters.js) record their calls and keep a model of the map the way
// uMap's objects would change; fake transports with uMap's WebSocketTransport surface
// (send(kind, payload), isOpen, close) are wired through an in-memory relay that routes like
// uMap's server (OperationMessage and SavedMessage to the others, PeerMessage to its
// recipient, a JoinResponse to a joiner and a ListPeersResponse to the others).

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createUmapSync, UmapSyncEngine } from "../umap.js";
import { createEngine, MapcrdtError } from "../index.js";

// setPath writes value at a dotted key path as uMap's Utils.setObjectValue does (undefined
// deletes).
function setPath(obj, key, value) {
  const parts = key.split(".");
  const last = parts.pop();
  let o = obj;
  for (const p of parts) {
    if (o[p] === undefined || o[p] === null || typeof o[p] !== "object") o[p] = {};
    o = o[p];
  }
  if (value === undefined) delete o[last];
  else o[last] = structuredClone(value);
}

// makeUpdaters: uMap's five updaters as fakes over a model {map, layers, features}.
function makeUpdaters(model) {
  const calls = [];
  const record = (updater, method, op) => calls.push({ updater, method, op: structuredClone(op), hasValue: "value" in op });
  class Base {
    applyMessage(op) {
      return this[op.verb](op);
    }
  }
  const map = new (class extends Base {
    update(op) {
      record("map", "update", op);
      if (op.key !== "numberOfConnectedPeers") setPath(model.map, op.key, op.value);
    }
  })();
  const datalayer = new (class extends Base {
    upsert(op) {
      record("datalayer", "upsert", op);
      if (!model.layers[op.metadata.id]) model.layers[op.metadata.id] = structuredClone(op.value);
    }
    update(op) {
      record("datalayer", "update", op);
      setPath((model.layers[op.metadata.id] ??= {}), op.key, op.value);
    }
    delete(op) {
      record("datalayer", "delete", op);
      delete model.layers[op.metadata.id];
    }
    getStoredObject(metadata) {
      return model.stored(metadata.id);
    }
  })();
  const feature = new (class extends Base {
    upsert(op) {
      record("feature", "upsert", op);
      const f = model.features[op.metadata.id];
      // uMap's FeatureUpdater.upsert: an existing feature takes the geometry only.
      if (f) f.geometry = structuredClone(op.value.geometry);
      else model.features[op.metadata.id] = structuredClone(op.value);
    }
    update(op) {
      record("feature", "update", op);
      const f = model.features[op.metadata.id];
      if (f === undefined) return; // uMap: "Unable to find feature"
      setPath(f, op.key, op.value);
    }
    delete(op) {
      record("feature", "delete", op);
      delete model.features[op.metadata.id];
    }
    getStoredObject(metadata) {
      return model.stored(metadata.layerId);
    }
  })();
  const perms = (name) =>
    new (class extends Base {
      update(op) {
        record(name, "update", op);
      }
    })();
  return {
    calls,
    updaters: { map, datalayer, feature, mappermissions: perms("mappermissions"), datalayerpermissions: perms("datalayerpermissions") },
  };
}

// The relay: routes as uMap's server does; pump() delivers what is queued, in order, as
// WebSocketTransport.onMessage does (JSON.parse of the text, then receiver.receive).
class Relay {
  peers = new Map();
  queue = [];
  sent = []; // every message a peer sent: {from, kind, payload}
  join(peer) {
    const relay = this;
    const id = peer.sync.peerId;
    const transport = {
      isOpen: true,
      send(kind, payload) {
        if (!this.isOpen) throw new Error("closed");
        const text = JSON.stringify({ ...payload, kind });
        relay.sent.push({ from: id, kind, payload: JSON.parse(text) });
        relay.route(id, kind, payload, text);
      },
      close() {
        this.isOpen = false;
      },
    };
    this.peers.set(id, { peer, transport });
    this.enqueue(id, JSON.stringify({ kind: "JoinResponse", peer: id, peers: this.peerList() }));
    this.announce(id);
    peer.sync.attach(transport);
    return transport;
  }
  leave(id) {
    const p = this.peers.get(id);
    p.transport.isOpen = false;
    this.peers.delete(id);
    this.announce(id);
  }
  peerList() {
    return Object.fromEntries([...this.peers.values()].map(({ peer }) => [peer.sync.peerId, peer.name]));
  }
  announce(except) {
    for (const id of this.peers.keys()) {
      if (id !== except) this.enqueue(id, JSON.stringify({ kind: "ListPeersResponse", peers: this.peerList() }));
    }
  }
  route(from, kind, payload, text) {
    if (kind === "PeerMessage") {
      if (this.peers.has(payload.recipient)) this.enqueue(payload.recipient, text);
      return;
    }
    for (const id of this.peers.keys()) if (id !== from) this.enqueue(id, text);
  }
  enqueue(to, text) {
    this.queue.push({ to, text });
  }
  pump() {
    let n = 0;
    while (this.queue.length > 0) {
      assert.ok(++n < 10_000, "the relay keeps bouncing messages");
      const { to, text } = this.queue.shift();
      const p = this.peers.get(to);
      if (p) p.peer.sync.receive(JSON.parse(text));
    }
  }
  sentBy(id, kind) {
    return this.sent.filter((m) => m.from === id && (kind === undefined || m.kind === kind));
  }
}

// A peer: the adapter, its fake updaters, and the model its map shows. local* edit the model
// as uMap's UI does before it calls the sync engine (which then leaves its own updaters alone).
async function makePeer(name, options = {}) {
  const model = { map: {}, layers: {}, features: {}, saves: [], savedResult: true };
  const storedObjects = new Map();
  model.stored = (id) => {
    if (!storedObjects.has(id)) {
      storedObjects.set(id, {
        id,
        async save() {
          model.saves.push(id);
          await model.duringSave?.();
          return model.savedResult;
        },
      });
    }
    return storedObjects.get(id);
  };
  const { calls, updaters } = makeUpdaters(model);
  const sync = await createUmapSync({ updaters, engineOptions: { peerId: name }, ...options });
  const peer = {
    name,
    sync,
    model,
    calls,
    dataCalls: () => calls.filter((c) => c.op.key !== "numberOfConnectedPeers"),
    localUpsertFeature(id, layerId, value, oldValue) {
      model.features[id] = structuredClone(value);
      sync.upsert("feature", { id, layerId, featureType: "marker" }, value, oldValue);
    },
    localUpdateFeature(id, layerId, key, value, oldValue) {
      setPath(model.features[id], key, value);
      sync.update("feature", { id, layerId, featureType: "marker" }, key, value, oldValue);
    },
    localDeleteFeature(id, layerId, oldValue) {
      delete model.features[id];
      sync.delete("feature", { id, layerId, featureType: "marker" }, oldValue);
    },
    localUpsertLayer(id, value) {
      model.layers[id] = structuredClone(value);
      sync.upsert("datalayer", { id }, value);
    },
    localUpdateMap(key, value) {
      setPath(model.map, key, value);
      sync.update("map", undefined, key, value);
    },
  };
  return peer;
}

const point = (x, y, props = {}) => ({ type: "Feature", properties: props, geometry: { type: "Point", coordinates: [x, y] } });
const fmeta = (id, layerId) => ({ featureType: "marker", id, layerId });

// canonical: JSON text with members sorted, to compare whatever the order keys were set in.
function canonical(v) {
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return "[" + v.map(canonical).join(",") + "]";
  return "{" + Object.keys(v).sort().map((k) => JSON.stringify(k) + ":" + canonical(v[k])).join(",") + "}";
}

// views: what each peer's map shows (its model), comparable across peers.
const view = (p) => canonical({ map: p.model.map, layers: p.model.layers, features: p.model.features });

async function network(t, names, options) {
  const relay = new Relay();
  const peers = [];
  for (const n of names) peers.push(await makePeer(n, typeof options === "function" ? options(n) : options));
  t.after(() => {
    for (const p of peers) p.sync.close();
  });
  for (const p of peers) relay.join(p);
  relay.pump();
  return { relay, peers };
}

test("live edits reach the other peer's updaters with uMap's calls; the editor's own updaters get none", async (t) => {
  const { relay, peers: [a, b] } = await network(t, ["alice", "bob"]);
  const before = a.dataCalls().length;
  a.localUpsertLayer("L1", { name: "Layer 1" });
  a.localUpsertFeature("f1", "L1", point(2.3, 48.8, { name: "x" }));
  a.localUpdateFeature("f1", "L1", "properties.name", "Café");
  a.localUpdateMap("properties.name", "My map");
  a.localUpdateFeature("f1", "L1", "properties.name", undefined); // uMap's unset
  a.localUpdateFeature("f1", "L1", "geometry", { type: "Point", coordinates: [1, 2] });
  relay.pump();
  assert.equal(a.dataCalls().length, before, "the editor's updaters are left alone");
  assert.deepEqual(
    b.dataCalls().map((c) => [c.updater, c.method, c.op, c.hasValue]),
    [
      ["datalayer", "upsert", { verb: "upsert", subject: "datalayer", metadata: { id: "L1" }, value: { name: "Layer 1" } }, true],
      ["feature", "upsert", { verb: "upsert", subject: "feature", metadata: fmeta("f1", "L1"), value: point(2.3, 48.8, { name: "x" }) }, true],
      ["feature", "update", { verb: "update", subject: "feature", metadata: fmeta("f1", "L1"), key: "properties.name", value: "Café" }, true],
      ["map", "update", { verb: "update", subject: "map", metadata: {}, key: "properties.name", value: "My map" }, true],
      ["feature", "update", { verb: "update", subject: "feature", metadata: fmeta("f1", "L1"), key: "properties.name" }, false],
      ["feature", "update", { verb: "update", subject: "feature", metadata: fmeta("f1", "L1"), key: "geometry", value: { type: "Point", coordinates: [1, 2] } }, true],
    ],
  );
  assert.equal(view(b), view(a));
  a.localDeleteFeature("f1", "L1");
  relay.pump();
  assert.deepEqual(b.dataCalls().at(-1), {
    updater: "feature",
    method: "delete",
    op: { verb: "delete", subject: "feature", metadata: fmeta("f1", "L1") },
    hasValue: false,
  });
  assert.deepEqual(b.model.features, {});
  // An upsert of a feature the peer shows is a whole-object "set": uMap's upsert call (its
  // FeatureUpdater then takes the geometry only), then an update of the properties it left.
  a.localUpsertFeature("f3", "L1", point(7, 7, { name: "first" }));
  relay.pump();
  a.localUpsertFeature("f3", "L1", point(8, 8, { name: "second" }));
  relay.pump();
  assert.deepEqual(b.dataCalls().slice(-2), [
    {
      updater: "feature",
      method: "upsert",
      op: { verb: "upsert", subject: "feature", metadata: fmeta("f3", "L1"), value: point(8, 8, { name: "second" }) },
      hasValue: true,
    },
    {
      updater: "feature",
      method: "update",
      // uMap's features always hold an _umap_options (empty: toGeoJSON leaves it out).
      op: { verb: "update", subject: "feature", metadata: fmeta("f3", "L1"), key: "properties", value: { _umap_options: {}, name: "second" } },
      hasValue: true,
    },
  ]);
  assert.deepEqual(b.model.features.f3, point(8, 8, { _umap_options: {}, name: "second" }));
  a.localDeleteFeature("f3", "L1");
  relay.pump();
  // Every message left through transport.send(kind, payload), payload without its kind.
  const ops = relay.sentBy("alice", "OperationMessage");
  assert.equal(ops.length, 10);
  for (const m of ops) assert.equal(m.payload.sender, "alice");
});

test("concurrent edits of one key end equal on every peer's updaters (three peers)", async (t) => {
  const { relay, peers } = await network(t, ["alice", "bob", "carol"]);
  const [a, b, c] = peers;
  a.localUpsertLayer("L1", { name: "L" });
  a.localUpsertFeature("f1", "L1", point(0, 0, { name: "start" }));
  relay.pump();
  for (const round of [1, 2, 3]) {
    // Each writes the same key before anyone hears of the others.
    a.localUpdateFeature("f1", "L1", "properties.name", `a${round}`);
    b.localUpdateFeature("f1", "L1", "properties.name", `b${round}`);
    c.localUpdateFeature("f1", "L1", "properties.name", `c${round}`);
    c.localUpdateFeature("f1", "L1", "geometry", { type: "Point", coordinates: [round, round] });
    a.localUpdateFeature("f1", "L1", "geometry", { type: "Point", coordinates: [-round, -round] });
    relay.pump();
    const winner = a.sync.engine.get("feature", fmeta("f1", "L1"), "properties.name");
    for (const p of peers) {
      assert.equal(p.model.features.f1.properties.name, winner, `${p.name}'s map shows the winner, round ${round}`);
      assert.equal(view(p), view(a), `${p.name} ends as alice, round ${round}`);
    }
  }
});

test("a late joiner's updaters get the whole map, datalayers before their features", async (t) => {
  const { relay, peers: [a, b] } = await network(t, ["alice", "bob"]);
  a.localUpsertLayer("L1", { name: "Layer 1" });
  a.localUpsertFeature("f1", "L1", point(1, 1, { name: "one" }));
  b.localUpsertFeature("f2", "L1", point(2, 2, { name: "two" }));
  relay.pump();
  b.localUpdateFeature("f1", "L1", "properties.name", "uno");
  a.localUpdateMap("properties.name", "Shared");
  a.localDeleteFeature("f2", "L1");
  relay.pump();
  const c = await makePeer("carol");
  t.after(() => c.sync.close());
  relay.join(c);
  relay.pump();
  assert.equal(view(c), view(a));
  assert.equal(view(c), view(b));
  const upserts = c.dataCalls().filter((x) => x.method === "upsert").map((x) => `${x.updater}:${x.op.metadata.id}`);
  assert.deepEqual(upserts, ["datalayer:L1", "feature:f1"], "the layer first; f2, deleted, never shown");
  assert.deepEqual(c.model.features.f1.properties, { name: "uno" });
  assert.equal(c.model.map.properties.name, "Shared");
});

test("edits made offline wait in the engine and flow both ways after reconnect", async (t) => {
  const { relay, peers: [a, b] } = await network(t, ["alice", "bob"]);
  a.localUpsertLayer("L1", { name: "L" });
  a.localUpsertFeature("f1", "L1", point(0, 0, { name: "n", color: "red" }));
  relay.pump();
  relay.leave("bob");
  b.sync.reconnect(); // what uMap's transport calls when the socket closed
  assert.equal(b.sync.websocketConnected, false);
  const sentBefore = relay.sentBy("bob").length;
  b.localUpdateFeature("f1", "L1", "properties.name", "offline name");
  b.localUpsertFeature("f2", "L1", point(5, 5, { name: "made offline" }));
  a.localUpdateFeature("f1", "L1", "properties.color", "blue");
  relay.pump();
  assert.equal(relay.sentBy("bob").length, sentBefore, "nothing is sent while offline");
  assert.ok(b.sync.engine.pending() > 0, "the engine keeps bob's edits");
  assert.equal(a.model.features.f1.properties.name, "n");
  relay.join(b); // a new transport; attach() sends what waited
  relay.pump();
  assert.equal(b.sync.websocketConnected, true);
  assert.deepEqual(a.model.features.f1.properties, { name: "offline name", color: "blue" });
  assert.deepEqual(a.model.features.f2, point(5, 5, { name: "made offline" }));
  assert.equal(view(b), view(a));
  // The offline flag holds messages back the same way.
  b.sync.offline = true;
  b.localUpdateFeature("f2", "L1", "properties.name", "held");
  relay.pump();
  assert.equal(a.model.features.f2.properties.name, "made offline");
  b.sync.offline = false;
  b.sync.onConnection();
  relay.pump();
  assert.equal(a.model.features.f2.properties.name, "held");
});

test("undo and redo of one's own edits reach one's own updaters (as uMap's UndoManager does) and the peers'", async (t) => {
  const { relay, peers: [a, b] } = await network(t, ["alice", "bob"]);
  a.localUpsertLayer("L1", { name: "L" });
  a.localUpsertFeature("f1", "L1", point(0, 0, { name: "x" }));
  a.localUpdateFeature("f1", "L1", "properties.name", "y", "x");
  relay.pump();
  const n = a.dataCalls().length;
  assert.equal(a.sync.canUndo(), true);
  const r = a.sync._undoManager.undo();
  assert.equal(r.done, true);
  assert.deepEqual(a.dataCalls().slice(n).map((c) => [c.updater, c.method, c.op.key, c.op.value]), [
    ["feature", "update", "properties.name", "x"],
  ]);
  relay.pump();
  assert.equal(a.model.features.f1.properties.name, "x");
  assert.equal(b.model.features.f1.properties.name, "x");
  a.sync._undoManager.redo();
  relay.pump();
  assert.equal(a.model.features.f1.properties.name, "y");
  assert.equal(b.model.features.f1.properties.name, "y");
  // Undo of the name edit, then of the creation: a delete on both.
  a.sync.undo();
  a.sync.undo();
  relay.pump();
  assert.equal(a.model.features.f1, undefined);
  assert.equal(b.model.features.f1, undefined);
  assert.equal(b.dataCalls().at(-1).method, "delete");
  a.sync.redo();
  relay.pump();
  assert.deepEqual(b.model.features.f1, point(0, 0, { name: "x" }));
  assert.equal(view(a), view(b));
});

test("an undo leaves a key a peer wrote later as the peer wrote it (skipped), on every map", async (t) => {
  const { relay, peers: [a, b] } = await network(t, ["alice", "bob"]);
  a.localUpsertLayer("L1", { name: "L" });
  a.localUpsertFeature("f1", "L1", point(0, 0, { name: "x", color: "red" }));
  relay.pump();
  a.sync.startBatch();
  a.localUpdateFeature("f1", "L1", "properties.name", "mine", "x");
  a.localUpdateFeature("f1", "L1", "properties.color", "green", "red");
  a.sync.commitBatch("feature", fmeta("f1", "L1"));
  relay.pump();
  b.localUpdateFeature("f1", "L1", "properties.name", "bob's");
  relay.pump();
  const r = a.sync.undo();
  relay.pump();
  assert.deepEqual(r.skipped.map((s) => s.key), ["properties.name"]);
  for (const p of [a, b]) assert.deepEqual(p.model.features.f1.properties, { name: "bob's", color: "red" }, p.name);
});

test("a batch leaves as one message, reaches the peer's updaters as its edits, and is one undo step", async (t) => {
  const { relay, peers: [a, b] } = await network(t, ["alice", "bob"]);
  a.localUpsertLayer("L1", { name: "L" });
  a.localUpsertFeature("f1", "L1", point(0, 0, {}));
  relay.pump();
  const sent = relay.sentBy("alice", "OperationMessage").length;
  a.sync.startBatch();
  a.localUpdateFeature("f1", "L1", "properties.a", 1);
  a.sync.startBatch(); // nested: joins the batch
  a.localUpdateFeature("f1", "L1", "properties.b", 2);
  a.sync.commitBatch();
  assert.equal(relay.sentBy("alice", "OperationMessage").length, sent, "nothing leaves before the outer commit");
  a.localUpdateFeature("f1", "L1", "properties.c", 3);
  a.sync.commitBatch("feature", fmeta("f1", "L1"));
  const ops = relay.sentBy("alice", "OperationMessage").slice(sent);
  assert.equal(ops.length, 1);
  assert.equal(ops[0].payload.verb, "batch");
  assert.equal(ops[0].payload.operations.length, 3);
  relay.pump();
  assert.deepEqual(b.model.features.f1.properties, { a: 1, b: 2, c: 3 });
  a.sync.undo();
  relay.pump();
  assert.deepEqual(b.model.features.f1.properties, {});
  assert.throws(() => a.sync.commitBatch(), (e) => e instanceof MapcrdtError && e.code === "bad_state");
});

test("bad input is rejected with the engine's code; nothing is applied or sent", async (t) => {
  const { relay, peers: [a, b] } = await network(t, ["alice", "bob"]);
  a.localUpsertLayer("L1", { name: "L" });
  relay.pump();
  const sent = relay.sent.length;
  const calls = [a.calls.length, b.calls.length];
  const state = b.sync.engine.state();
  const code = (c) => (e) => e instanceof MapcrdtError && e.code === c;
  assert.throws(() => a.sync.update("feature", { id: "f1" }, "properties.name", "x"), code("bad_metadata")); // no layerId
  assert.throws(() => a.sync.update("feature", fmeta("f1", "L1"), "properties.n", 10n), code("bad_value"));
  assert.throws(() => a.sync.upsert("nosuch", { id: "x" }, {}), code("unknown_subject"));
  assert.throws(() => a.sync.delete("datalayer", { id: 7 }), code("bad_metadata"));
  assert.throws(() => b.sync.receive("{not json"), code("invalid_json"));
  assert.throws(
    () =>
      b.sync.receive({
        kind: "OperationMessage",
        sender: "mallory",
        verb: "update",
        subject: "feature",
        metadata: fmeta("f1", "L1"),
        key: "properties.name",
        value: "evil",
        hlc: "yesterday",
      }),
    code("bad_hlc"),
  );
  assert.throws(() => b.sync.receive({ kind: "ListPeersResponse", peers: 3 }), code("bad_message"));
  relay.pump();
  assert.equal(relay.sent.length, sent, "nothing sent");
  assert.deepEqual([a.calls.length, b.calls.length], calls, "no updater called");
  assert.equal(b.sync.engine.state(), state);
  assert.deepEqual(b.sync.getPeers(), { alice: "alice", bob: "bob" }, "the bad peer list is not taken");
});

test("proxy(object) binds upsert, update, delete and commitBatch to object.getSyncMetadata(), read at each call", async (t) => {
  const { relay, peers: [a, b] } = await network(t, ["alice", "bob"]);
  a.localUpsertLayer("L1", { name: "L" });
  relay.pump();
  let reads = 0;
  const obj = {
    current: "f1",
    getSyncMetadata() {
      reads++;
      return { subject: "feature", metadata: fmeta(this.current, "L1") };
    },
  };
  const px = a.sync.proxy(obj);
  px.upsert(point(1, 1, { name: "one" }));
  px.update("properties.name", "uno", "one");
  obj.current = "f2";
  px.upsert(point(2, 2, {}));
  px.startBatch();
  px.update("properties.a", 1);
  px.update("properties.b", 2);
  px.commitBatch();
  relay.pump();
  assert.equal(reads, 6); // upsert, update, upsert, update, update, commitBatch
  assert.deepEqual(b.model.features, { f1: point(1, 1, { name: "uno" }), f2: point(2, 2, { a: 1, b: 2 }) });
  px.delete();
  relay.pump();
  assert.deepEqual(Object.keys(b.model.features), ["f1"]);
  // The rest of the surface passes through (private state included).
  assert.equal(px.peerId, "alice");
  assert.deepEqual(px.getPeers(), { alice: "alice", bob: "bob" });
  assert.equal(px.canUndo(), true);
  px.undo(); // the delete
  relay.pump();
  assert.deepEqual(Object.keys(b.model.features).sort(), ["f1", "f2"]);
  // The map: getSyncMetadata gives no metadata.
  const mapPx = a.sync.proxy({ getSyncMetadata: () => ({ subject: "map" }) });
  mapPx.update("properties.zoom", 7);
  relay.pump();
  assert.equal(b.model.map.properties.zoom, 7);
});

test("peers: JoinResponse and ListPeersResponse set getPeers() and tell the map updater, as uMap's engine does", async (t) => {
  const relay = new Relay();
  const a = await makePeer("alice");
  const b = await makePeer("bob");
  t.after(() => (a.sync.close(), b.sync.close()));
  assert.deepEqual(a.sync.getPeers(), {});
  relay.join(a);
  relay.pump();
  assert.deepEqual(a.sync.getPeers(), { alice: "alice" });
  const n = a.calls.length;
  relay.join(b);
  relay.pump();
  assert.deepEqual(a.sync.getPeers(), { alice: "alice", bob: "bob" });
  assert.deepEqual(a.calls.slice(n).map((c) => [c.updater, c.method, c.op]), [["map", "update", { key: "numberOfConnectedPeers" }]]);
});

test("save() saves each dirty stored object once, then announces it; edits made meanwhile stay dirty", async (t) => {
  const { relay, peers: [a, b] } = await network(t, ["alice", "bob"]);
  a.localUpsertLayer("L1", { name: "L1" });
  a.localUpsertLayer("L2", { name: "L2" });
  a.localUpsertFeature("f1", "L1", point(0, 0));
  a.localUpsertFeature("f2", "L1", point(1, 1));
  relay.pump();
  assert.equal(a.sync.isDirty(), true);
  a.model.savedResult = false;
  assert.equal(await a.sync.save(), false);
  assert.deepEqual(a.model.saves, ["L1"], "stops at the first failure");
  assert.equal(a.sync.isDirty(), true);
  assert.equal(relay.sentBy("alice", "SavedMessage").length, 0);
  a.model.savedResult = true;
  a.model.saves = [];
  a.model.duringSave = () => {
    a.model.duringSave = undefined;
    a.localUpdateFeature("f2", "L1", "properties.late", true);
  };
  assert.equal(await a.sync.save(), true);
  assert.deepEqual(a.model.saves.sort(), ["L1", "L2"], "each datalayer once");
  assert.equal(relay.sentBy("alice", "SavedMessage").length, 1);
  assert.deepEqual(
    a.sync.engine.dirty().map((d) => d.metadata.id),
    ["f2"],
    "the edit made while saving is not counted saved",
  );
  relay.pump();
  a.model.saves = [];
  assert.equal(await a.sync.save(), true);
  assert.deepEqual(a.model.saves, ["L1"]);
  assert.equal(a.sync.isDirty(), false);
  assert.equal(b.sync.isDirty(), false);
});

test("an updater's error goes to onError; the call's other changes are still applied", async (t) => {
  const errors = [];
  const { relay, peers: [a, b] } = await network(t, ["alice", "bob"], { onError: (e, change) => errors.push([e.message, change?.key]) });
  b.sync.updaters.feature.update = function (op) {
    if (op.key === "properties.bad") throw new Error("boom");
    return Object.getPrototypeOf(this).update.call(this, op);
  };
  a.localUpsertLayer("L1", { name: "L" });
  a.localUpsertFeature("f1", "L1", point(0, 0));
  a.sync.startBatch();
  a.localUpdateFeature("f1", "L1", "properties.bad", 1);
  a.localUpdateFeature("f1", "L1", "properties.good", 2);
  a.sync.commitBatch();
  relay.pump();
  assert.deepEqual(errors, [["boom", "properties.bad"]]);
  assert.equal(b.model.features.f1.properties.good, 2);
});

test("onStateChange follows undo, redo, saving and a peer's save; bad construction is refused", async (t) => {
  const all = { alice: [], bob: [] };
  const { relay, peers: [a, b] } = await network(t, ["alice", "bob"], (name) => ({ onStateChange: (s) => all[name].push(s) }));
  // A peer's save: bob's edit, held by alice when she saves, is saved for bob too.
  b.localUpdateMap("properties.name", "bob's");
  relay.pump();
  assert.equal(b.sync.isDirty(), true);
  assert.equal(all.bob.at(-1).dirty, true);
  await a.sync.save();
  relay.pump();
  assert.equal(b.sync.isDirty(), false);
  assert.deepEqual(all.bob.at(-1), { canUndo: true, canRedo: false, dirty: false }, "bob's state after alice's SavedMessage");
  const states = all.alice;
  states.length = 0;
  a.localUpsertLayer("L1", { name: "L" });
  assert.deepEqual(states.at(-1), { canUndo: true, canRedo: false, dirty: true });
  a.sync.undo();
  assert.deepEqual(states.at(-1), { canUndo: false, canRedo: true, dirty: a.sync.isDirty() });
  a.sync.redo();
  assert.deepEqual(states.at(-1), { canUndo: true, canRedo: false, dirty: true });
  assert.equal(await a.sync.save(), true);
  assert.deepEqual(states.at(-1), { canUndo: true, canRedo: false, dirty: false });
  const engine = await createEngine();
  t.after(() => engine.close());
  const code = (c) => (e) => e instanceof MapcrdtError && e.code === c;
  assert.throws(() => new UmapSyncEngine(engine, {}), code("bad_option"));
  assert.throws(() => new UmapSyncEngine({}, { updaters: {} }), code("bad_option"));
  assert.throws(() => new UmapSyncEngine(engine, { updaters: {}, onError: 3 }), code("bad_option"));
  const s = new UmapSyncEngine(engine, { updaters: { map: {} } });
  assert.throws(() => s.attach({}), code("bad_option"));
  s.close();
  assert.equal(engine.closed, false, "an engine given is left open");
  const own = await createUmapSync({ updaters: { map: {} }, engineOptions: { peerId: "own" } });
  assert.equal(own.peerId, "own");
  own.close();
  assert.equal(own.engine.closed, true, "the engine createUmapSync made is closed with the adapter");
  await assert.rejects(createUmapSync({ updaters: { map: {} }, engineOptions: { nosuch: 1 } }), code("bad_option"));
});

test("umap.js exports exactly what umap.d.ts declares; package.json exports it as mapcrdt/umap", async () => {
  const mod = await import("../umap.js");
  const dts = readFileSync(new URL("../umap.d.ts", import.meta.url), "utf8");
  const values = new Set([...dts.matchAll(/^export (?:declare )?(?:function|class|const|let) (\w+)/gm)].map((m) => m[1]));
  assert.deepEqual(Object.keys(mod).sort(), [...values].sort());
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
  assert.deepEqual(pkg.exports["./umap"], { types: "./umap.d.ts", default: "./umap.js" });
  for (const f of ["umap.js", "umap.d.ts"]) assert.ok(pkg.files.includes(f), f);
});

test("the README's uMap example runs as written (uMap's classes stubbed)", async () => {
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  const section = readme.slice(readme.indexOf("### uMap"));
  const block = section.match(/```js\n([\s\S]*?)```/);
  assert.ok(block, "the uMap subsection has a ```js block");
  const importLine = /^import \{ createUmapSync \} from "mapcrdt\/umap";$/m;
  assert.match(block[1], importLine);
  const sent = [];
  const connected = [];
  class WebSocketTransport {
    constructor(receiver) {
      this.receiver = receiver;
    }
    async connect(url, token, peerId, username) {
      connected.push([url, token, peerId, username]);
      this.isOpen = true;
    }
    send(kind, payload) {
      sent.push({ ...payload, kind });
    }
  }
  const updater = () => class {
    constructor(app) {
      this.app = app;
    }
    update() {}
  };
  const run = new Function(
    "createUmapSync", "WebSocketTransport", "MapUpdater", "FeatureUpdater", "DataLayerUpdater", "app", "url", "token", "username",
    `return (async () => { ${block[1].replace(importLine, "")}\n return sync; })();`,
  );
  const sync = await run(createUmapSync, WebSocketTransport, updater(), updater(), updater(), {}, "ws://x/ws", "tok", "Ann");
  try {
    assert.deepEqual(connected, [["ws://x/ws", "tok", sync.peerId, "Ann"]]);
    assert.equal(sync.transport.receiver, sync);
    sync.update("map", undefined, "properties.name", "x");
    assert.equal(sent.length, 1);
    assert.equal(sent[0].kind, "OperationMessage");
    assert.equal(sent[0].value, "x");
  } finally {
    sync.close();
  }
});

test("a transport whose send throws: the edit stays made, onError hears of it, the peers get it after the rejoin", async (t) => {
  const errors = [];
  const { relay, peers: [a, b] } = await network(t, ["alice", "bob"], { onError: (e) => errors.push(e.message) });
  a.localUpsertLayer("L1", { name: "L" });
  a.localUpsertFeature("f1", "L1", point(0, 0, { name: "x" }));
  relay.pump();
  const transport = relay.peers.get("bob").transport;
  const send = transport.send;
  transport.send = () => {
    throw new Error("socket closing");
  };
  b.localUpdateFeature("f1", "L1", "properties.name", "lost in flight"); // must not throw
  assert.deepEqual(errors, ["socket closing"]);
  transport.send = send;
  relay.leave("bob");
  relay.pump();
  assert.equal(a.model.features.f1.properties.name, "x");
  relay.join(b);
  relay.pump();
  assert.equal(a.model.features.f1.properties.name, "lost in flight");
  assert.equal(view(a), view(b));
});

test("an updater that edits while a remote change is applied (uMap's addData) does not break the delivery", async (t) => {
  const { relay, peers: [a, b] } = await network(t, ["alice", "bob"]);
  const upsert = b.sync.updaters.datalayer.upsert;
  b.sync.updaters.datalayer.upsert = function (op) {
    upsert.call(this, op);
    // uMap's DataLayerUpdater.upsert calls datalayer.addData(value), which syncs each feature.
    for (const f of op.value.features ?? []) b.sync.upsert("feature", fmeta(f.id, op.metadata.id), f);
  };
  const f = { ...point(3, 3, { name: "in layer" }), id: "f9" };
  a.localUpsertLayer("L1", { name: "L", features: [f] });
  a.localUpdateMap("properties.name", "after");
  relay.pump();
  assert.equal(b.model.map.properties.name, "after", "the changes after the updater's edit are applied");
  assert.deepEqual(a.sync.engine.get("feature", fmeta("f9", "L1")), f, "the updater's edit reached alice's engine");
});

test("a plain uMap peer's messages (no seq) are applied, and its ListOperationsRequest is answered through the transport", async (t) => {
  const { relay, peers: [a] } = await network(t, ["alice"]);
  a.localUpsertLayer("L1", { name: "L" });
  relay.pump();
  const now = Date.now();
  // As uMap's SyncEngine._send + WebSocketTransport.send write them: {sender, ...operation, hlc}, kind last.
  const umapOp = (body, n) => ({ sender: "QxMjE", ...body, hlc: `${now}:${n}:QxMjE`, kind: "OperationMessage" });
  a.sync.receive(umapOp({ verb: "upsert", subject: "feature", metadata: fmeta("u1", "L1"), value: point(4, 4, { name: "from uMap" }) }, 0));
  a.sync.receive(JSON.stringify(umapOp({ verb: "update", subject: "feature", metadata: fmeta("u1", "L1"), key: "properties.name", value: "renamed" }, 1)));
  const { kind: _, ...payload } = umapOp({ verb: "update", subject: "map", key: "properties.zoom", value: 9 }, 2); // the map: no metadata
  a.sync.onOperationMessage(payload);
  assert.deepEqual(a.model.features.u1, point(4, 4, { name: "renamed" }));
  assert.equal(a.model.map.properties.zoom, 9);
  const before = relay.sentBy("alice", "PeerMessage").length;
  a.sync.receive({ kind: "PeerMessage", sender: "QxMjE", recipient: "alice", message: { verb: "ListOperationsRequest", lastKnownHLC: undefined } });
  const answers = relay.sentBy("alice", "PeerMessage").slice(before);
  assert.equal(answers.length, 1);
  assert.equal(answers[0].payload.recipient, "QxMjE");
  assert.equal(answers[0].payload.message.verb, "ListOperationsResponse");
  assert.ok(answers[0].payload.message.operations.some((o) => o.subject === "datalayer" && o.metadata.id === "L1"));
});
