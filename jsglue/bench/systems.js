// The three systems under test, behind one small interface:
//
//   name
//   replica(i)          a fresh replica (async), i its index (peer ids differ)
//   edit(rep, op)       one local edit; returns the message it produces (W1)
//   catchUp(src, dst)   dst, fresh, catches up on everything src holds; returns {sent, payload}:
//                       the messages sent (strings or byte arrays), and all of them as one
//                       payload (for its gzip -9 size)
//   apply(rep, msg)     applies one remote message (W3)
//   sync(a, b)          a and b exchange everything each lacks (W4)
//   digest(rep)         a canonical text of the visible state (convergence)
//   close(rep)
//
// Modelling: in mapcrdt a feature is an object addressed by metadata, a key a dotted path
// (the uMap wire format). In Yjs and Loro a feature is a map (Y.Map / LoroMap) in a root map,
// keyed by feature id, holding the five keys as flat entries ("properties.name" → value),
// geometry as a plain JSON value.
//
// Nothing here needs Node: browser.js's page imports this module too ("yjs" and
// "loro-crdt" resolved by its import map, Loro's web build initialized before any run).

import * as Y from "yjs";
import { LoroDoc, LoroMap } from "loro-crdt";
import { createEngine } from "../index.js";
import { featureIds, metadata, canonical } from "./workload.js";

export const mapcrdt = {
  name: "mapcrdt",
  async replica(i, options = {}) {
    return createEngine({ peerId: `peer-${i}`, ...options });
  },
  edit(e, { f, key, value }) {
    e.update("feature", metadata[f], key, value);
    return e.flush()[0];
  },
  catchUp(src, dst) {
    // dst asks src for what it lacks; src answers with one ListOperationsResponse.
    const { replies } = src.onPeerMessage(dst.syncRequest(src.peerId));
    for (const r of replies) {
      const back = dst.onPeerMessage(r).replies;
      for (const b of back) src.onPeerMessage(b);
    }
    return { sent: replies, payload: replies.join("\n") };
  },
  apply(e, msg) {
    e.receive(msg);
  },
  sync(a, b) {
    // a asks b; every reply goes to the other side, until neither has anything to say.
    let toB = [a.syncRequest(b.peerId)];
    let toA = [];
    while (toA.length > 0 || toB.length > 0) {
      const nextA = [];
      const nextB = [];
      for (const m of toB) nextA.push(...b.onPeerMessage(m).replies);
      for (const m of toA) nextB.push(...a.onPeerMessage(m).replies);
      toA = nextA;
      toB = nextB;
    }
  },
  digest(e) {
    return e.state();
  },
  close(e) {
    e.close();
  },
  /** Go collections the module has run so far (every engine shares the module). */
  collections(e) {
    return e.memory(false).numGC;
  },
};

export const yjs = {
  name: "Yjs",
  async replica() {
    const doc = new Y.Doc();
    const root = doc.getMap("features");
    const rep = { doc, root, last: null };
    doc.on("update", (u) => {
      rep.last = u;
    });
    return rep;
  },
  edit(rep, { f, key, value }) {
    const id = featureIds[f];
    const m = rep.root.get(id);
    if (m === undefined) {
      rep.doc.transact(() => {
        const fm = new Y.Map();
        rep.root.set(id, fm);
        fm.set(key, value);
      });
    } else {
      m.set(key, value);
    }
    return rep.last;
  },
  catchUp(src, dst) {
    const u = Y.encodeStateAsUpdate(src.doc);
    Y.applyUpdate(dst.doc, u);
    return { sent: [u], payload: u };
  },
  apply(rep, u) {
    Y.applyUpdate(rep.doc, u);
  },
  sync(a, b) {
    const toB = Y.encodeStateAsUpdate(a.doc, Y.encodeStateVector(b.doc));
    const toA = Y.encodeStateAsUpdate(b.doc, Y.encodeStateVector(a.doc));
    Y.applyUpdate(b.doc, toB);
    Y.applyUpdate(a.doc, toA);
  },
  digest(rep) {
    return canonical(rep.root.toJSON());
  },
  close(rep) {
    rep.doc.destroy();
  },
};

export const loro = {
  name: "Loro",
  async replica(i) {
    const doc = new LoroDoc();
    doc.setPeerId(i + 1);
    const root = doc.getMap("features");
    const rep = { doc, root, last: null, unsubscribe: null };
    rep.unsubscribe = doc.subscribeLocalUpdates((u) => {
      rep.last = u;
    });
    return rep;
  },
  edit(rep, { f, key, value }) {
    // Each call makes two wasm-backed handles (the detached map offered, the attached one
    // returned): freed here, as a long-lived page would, or they pile up in Loro's wasm
    // memory until collected, and every later run of every system slows down.
    const offered = new LoroMap();
    const fm = rep.root.getOrCreateContainer(featureIds[f], offered);
    fm.set(key, value);
    rep.doc.commit();
    fm.free();
    offered.free();
    return rep.last;
  },
  catchUp(src, dst) {
    const u = src.doc.export({ mode: "update" });
    dst.doc.import(u);
    return { sent: [u], payload: u };
  },
  apply(rep, u) {
    rep.doc.import(u);
  },
  sync(a, b) {
    const vb = b.doc.oplogVersion();
    const va = a.doc.oplogVersion();
    const toB = a.doc.export({ mode: "update", from: vb });
    const toA = b.doc.export({ mode: "update", from: va });
    b.doc.import(toB);
    a.doc.import(toA);
    vb.free();
    va.free();
  },
  digest(rep) {
    return canonical(rep.doc.toJSON());
  },
  close(rep) {
    rep.unsubscribe();
    rep.root.free();
    rep.doc.free();
  },
};

export const systems = [mapcrdt, yjs, loro];
