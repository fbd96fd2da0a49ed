// mapcrdt/umap (umap.js) against a model of uMap's own websocket server (umap/sync/app.py
// and umap/sync/payloads.py of umap-project/umap, the version whose Request takes
// SavedMessage and a "batch" verb, as bffbeb52's engine.js sends) and uMap's transport
// (modules/sync/websocket.js: send(kind, payload) writes {...payload, kind}; close() sets the
// receiver's closeRequested). What differs from the relay of umap.test.js, and what the
// adapter must live with:
// - the server answers a JoinRequest {token, peer, username} with a JoinResponse {peer, peers}
//   to the joiner, then broadcasts a ListPeersResponse {peers} to every peer, the joiner too;
// - it validates each message (pydantic, discriminated by kind) and drops one that fails:
//   an OperationMessage needs verb in upsert|update|delete|batch and subject in
//   map|datalayer|feature; a SavedMessage a string lastKnownHLC; a PeerMessage a sender, a
//   recipient and a message object; no other kind passes (extra members do);
// - it broadcasts OperationMessage and SavedMessage to every peer of the map, the sender
//   too ("including sender!"), as text received, and never rewrites sender;
// - it routes a PeerMessage to its recipient.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createUmapSync } from "../umap.js";

const SUBJECTS = ["map", "datalayer", "feature"];
const VERBS = ["upsert", "update", "delete", "batch"];
const isString = (v) => typeof v === "string";
const isDict = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

// payloads.py's Request: the reason a message is dropped, or undefined when it passes.
function invalid(m) {
  switch (m.kind) {
    case "OperationMessage":
      if (!VERBS.includes(m.verb)) return `verb ${m.verb}`;
      if (!SUBJECTS.includes(m.subject)) return `subject ${m.subject}`;
      if (m.metadata != null && !isDict(m.metadata)) return "metadata";
      if (m.key != null && !isString(m.key)) return "key";
      if (m.operations != null && !Array.isArray(m.operations)) return "operations";
      return undefined;
    case "SavedMessage":
      return isString(m.lastKnownHLC) ? undefined : "lastKnownHLC";
    case "PeerMessage":
      return isString(m.sender) && isString(m.recipient) && isDict(m.message) ? undefined : "PeerMessage";
    default:
      return `kind ${m.kind}`;
  }
}

class UmapServer {
  peers = new Map(); // peer id → {username, deliver}
  queue = [];
  dropped = [];
  sent = []; // {from, message}
  connect(sync, username) {
    const server = this;
    let peer;
    const transport = {
      receiver: sync,
      isOpen: true,
      send(kind, payload) {
        if (!this.isOpen) throw new Error("closed");
        const text = JSON.stringify({ ...payload, kind });
        server.onText(this, text);
      },
      close() {
        this.receiver.closeRequested = true;
        this.isOpen = false;
        server.disconnect(peer);
      },
    };
    // WebSocketTransport.connect: the JoinRequest on open.
    transport.send("JoinRequest", { token: "signed", peer: sync.peerId, username });
    peer = sync.peerId;
    return transport;
  }
  onText(transport, text) {
    const m = JSON.parse(text);
    if (m.kind === "JoinRequest") {
      this.peers.set(m.peer, { username: m.username, transport });
      this.enqueue(m.peer, JSON.stringify({ kind: "JoinResponse", peers: this.peerList(), peer: m.peer }));
      this.broadcast(JSON.stringify({ kind: "ListPeersResponse", peers: this.peerList() }));
      return;
    }
    const from = [...this.peers].find(([, p]) => p.transport === transport)?.[0];
    this.sent.push({ from, message: m });
    const why = invalid(m);
    if (why !== undefined) {
      this.dropped.push({ from, why, message: m });
      return;
    }
    if (m.kind === "PeerMessage") this.enqueue(m.recipient, text);
    else this.broadcast(text);
  }
  disconnect(id) {
    if (!this.peers.delete(id)) return;
    this.broadcast(JSON.stringify({ kind: "ListPeersResponse", peers: this.peerList() }));
  }
  peerList() {
    return Object.fromEntries([...this.peers].map(([id, p]) => [id, p.username]));
  }
  broadcast(text) {
    for (const id of this.peers.keys()) this.enqueue(id, text); // the sender too
  }
  enqueue(to, text) {
    this.queue.push({ to, text });
  }
  // Delivers what is queued, as the transport's onMessage does (JSON.parse, then receive).
  pump() {
    let n = 0;
    while (this.queue.length > 0) {
      assert.ok(++n < 10_000, "messages keep bouncing");
      const { to, text } = this.queue.shift();
      const p = this.peers.get(to);
      if (p) p.transport.receiver.receive(JSON.parse(text));
    }
  }
}

function setPath(obj, key, value) {
  const parts = key.split(".");
  const last = parts.pop();
  let o = obj;
  for (const p of parts) o = o[p] ??= {};
  if (value === undefined) delete o[last];
  else o[last] = structuredClone(value);
}

// A peer: the adapter over updaters that record their calls and keep the map they show.
async function makePeer(t, name) {
  const model = { layers: {}, features: {} };
  const calls = [];
  class Base {
    applyMessage(op) {
      calls.push(structuredClone(op));
      return this[op.verb](op);
    }
  }
  const datalayer = new (class extends Base {
    upsert({ value }) {
      model.layers[value.id] ??= structuredClone(value);
    }
    update({ key, metadata, value }) {
      setPath(model.layers[metadata.id], key, value);
    }
    delete({ metadata }) {
      delete model.layers[metadata.id];
    }
  })();
  const feature = new (class extends Base {
    upsert({ metadata, value }) {
      const f = model.features[metadata.id];
      if (f) f.geometry = structuredClone(value.geometry);
      else model.features[metadata.id] = structuredClone({ geometry: value.geometry, properties: { _umap_options: {}, ...value.properties } });
    }
    update({ key, metadata, value }) {
      const f = model.features[metadata.id];
      if (f) setPath(f, key, value);
    }
    delete({ metadata }) {
      delete model.features[metadata.id];
    }
  })();
  const map = { update() {} };
  const sync = await createUmapSync({ updaters: { map, datalayer, feature }, engineOptions: { peerId: name } });
  t.after(() => sync.close());
  return { name, sync, model, calls };
}

const fmeta = (id) => ({ featureType: "marker", id, layerId: "L1" });
const point = (x, y, properties) => ({ type: "Feature", geometry: { type: "Point", coordinates: [x, y] }, properties });

test("over uMap's server (it echoes to the sender, validates, never rewrites sender) peers converge and nothing is dropped", async (t) => {
  const server = new UmapServer();
  const a = await makePeer(t, "alice");
  const b = await makePeer(t, "bob");
  a.sync.attach(server.connect(a.sync, "Alice"));
  b.sync.attach(server.connect(b.sync, "Bob"));
  server.pump();
  assert.deepEqual(a.sync.getPeers(), { alice: "Alice", bob: "Bob" });
  // uMap's UI edits its objects, then calls the engine.
  a.model.layers.L1 = { id: "L1", name: "Roads" };
  a.sync.upsert("datalayer", { id: "L1" }, { id: "L1", name: "Roads" });
  a.model.features.f1 = { geometry: point(1, 2).geometry, properties: { _umap_options: {}, name: "x" } };
  a.sync.upsert("feature", fmeta("f1"), point(1, 2, { name: "x" }), null);
  a.sync.startBatch();
  a.model.features.f1.properties.name = "y";
  a.sync.update("feature", fmeta("f1"), "properties.name", "y", "x");
  a.model.features.f1.properties.color = "Red";
  a.sync.update("feature", fmeta("f1"), "properties.color", "Red", undefined);
  a.sync.commitBatch("feature", fmeta("f1"));
  server.pump();
  assert.deepEqual(a.calls, [], "alice's own messages, echoed, reach none of her updaters");
  assert.deepEqual(b.model, a.model);
  // An undo after the echoes still undoes, on both maps.
  a.sync._undoManager.undo();
  server.pump();
  assert.deepEqual(a.model.features.f1.properties, { _umap_options: {}, name: "x" });
  assert.deepEqual(b.model, a.model);
  // A save: the SavedMessage reaches alice too; her map stays saved, bob's edit after it dirty.
  a.sync.saved();
  b.model.features.f1.properties.name = "z";
  b.sync.update("feature", fmeta("f1"), "properties.name", "z", "x");
  server.pump();
  assert.equal(a.sync.isDirty(), false);
  assert.equal(b.sync.isDirty(), true);
  assert.deepEqual(a.model, b.model);
  // An edit and its undo before any echo comes back: the echoes change nothing.
  a.model.features.f1.properties.name = "w";
  a.sync.update("feature", fmeta("f1"), "properties.name", "w", "z");
  const seen = a.calls.length;
  a.sync.undo();
  server.pump();
  assert.deepEqual(a.calls.slice(seen).map((c) => [c.key, c.value]), [["properties.name", "z"]], "alice's updaters got her undo only");
  assert.deepEqual(a.model, b.model);
  // A late joiner: its JoinResponse, then the ListPeersResponse every peer gets.
  const c = await makePeer(t, "carol");
  c.sync.attach(server.connect(c.sync, "Carol"));
  server.pump();
  assert.deepEqual(c.model, a.model);
  assert.deepEqual(server.dropped, [], "every message passed uMap's validation");
  for (const { from, message } of server.sent) {
    if (message.sender !== undefined) assert.equal(message.sender, from, "each message names its own sender");
  }
});

test("over uMap's server: a dropped socket, edits on both sides meanwhile, a new socket: both maps end equal", async (t) => {
  const server = new UmapServer();
  const a = await makePeer(t, "alice");
  const b = await makePeer(t, "bob");
  a.sync.attach(server.connect(a.sync, "Alice"));
  const first = server.connect(b.sync, "Bob");
  b.sync.attach(first);
  server.pump();
  a.model.layers.L1 = { id: "L1", name: "Roads" };
  a.sync.upsert("datalayer", { id: "L1" }, { id: "L1", name: "Roads" });
  server.pump();
  // The socket drops: the server forgets bob; uMap's transport, not asked to close, calls
  // reconnect().
  first.isOpen = false;
  server.disconnect("bob");
  assert.equal(b.sync.closeRequested, false);
  b.sync.reconnect();
  assert.equal(b.sync.websocketConnected, false);
  b.model.layers.L1.color = "Red";
  b.sync.update("datalayer", { id: "L1" }, "color", "Red");
  a.model.layers.L1.name = "Streets";
  a.sync.update("datalayer", { id: "L1" }, "name", "Streets", "Roads");
  server.pump();
  assert.deepEqual(a.model.layers.L1, { id: "L1", name: "Streets" });
  // A new socket (uMap's engine: authenticate() after a delay).
  b.sync.attach(server.connect(b.sync, "Bob"));
  server.pump();
  assert.equal(b.sync.websocketConnected, true);
  assert.deepEqual(a.model.layers.L1, { id: "L1", name: "Streets", color: "Red" });
  assert.deepEqual(b.model, a.model);
  // stop(): uMap's transport.close() sets closeRequested, so its onclose does not reconnect.
  b.sync.stop();
  assert.equal(b.sync.closeRequested, true);
  assert.deepEqual(b.sync.getPeers(), { alice: "Alice", bob: "Bob" }, "the last list, as uMap's keeps it");
  server.pump();
  assert.deepEqual(a.sync.getPeers(), { alice: "Alice" });
  assert.deepEqual(server.dropped, []);
});
