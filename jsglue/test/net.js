// A test network: engines joined by an in-memory relay that speaks like uMap's
// (OperationMessage and SavedMessage broadcast to the others, PeerMessage to its recipient).
// A peer can be taken offline: what it sends waits in its outbox, what others broadcast
// while it is away is lost for it (as with a real relay), and it catches up by sync.

import { createEngine } from "../index.js";

/** A manual wall clock, shared or per engine: `clock.now()`, `clock.advance(ms)`. */
export function manualClock(start = 1_727_184_449_010) {
  let t = start;
  return {
    now: () => t,
    advance(ms) {
      t += ms;
    },
    set(ms) {
      t = ms;
    },
  };
}

export class Net {
  constructor() {
    /** @type {Map<string, {engine: any, online: boolean, clock: any}>} */
    this.peers = new Map();
  }

  async add(peerId, options = {}) {
    const clock = options.clock ?? manualClock();
    const engine = await createEngine({ peerId, now: clock.now, ...options.engine });
    this.peers.set(peerId, { engine, online: true, clock });
    return engine;
  }

  engine(peerId) {
    return this.peers.get(peerId).engine;
  }

  setOnline(peerId, online) {
    this.peers.get(peerId).online = online;
  }

  /** Delivers until every online engine's outbox is empty. Returns the messages moved. */
  settle(maxRounds = 100) {
    let moved = 0;
    for (let round = 0; round < maxRounds; round++) {
      let any = false;
      for (const [from, p] of this.peers) {
        if (!p.online) continue;
        for (const m of p.engine.flush()) {
          any = true;
          moved++;
          this.route(from, m);
        }
      }
      if (!any) return moved;
    }
    throw new Error("the network did not settle");
  }

  route(from, message) {
    const msg = JSON.parse(message);
    if (msg.kind === "PeerMessage") {
      const to = this.peers.get(msg.recipient);
      if (to && to.online) to.engine.receive(message);
      return;
    }
    for (const [id, p] of this.peers) {
      if (id !== from && p.online) p.engine.receive(message);
    }
  }

  states() {
    return [...this.peers.values()].map((p) => p.engine.state());
  }

  close() {
    for (const p of this.peers.values()) p.engine.close();
  }
}
