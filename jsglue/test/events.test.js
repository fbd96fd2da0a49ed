// onChange events: every listener gets the events of an engine in the order the engine
// made them, also when a listener edits the engine while an event is being delivered.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createEngine } from "../index.js";

const meta = { id: "f1", layerId: "L1" };

test("an edit made by a listener reaches every listener after the event that caused it", async () => {
  const a = await createEngine({ peerId: "a" });
  const c = await createEngine({ peerId: "c" });
  const seen = [[], [], []];
  // Listener 0 corrects a remote value (a validator); 1 and 2 render what they get, in order.
  c.onChange((e) => {
    seen[0].push(...e.changes.map((ch) => `${e.origin}:${ch.value}`));
    for (const ch of e.changes) {
      if (ch.key === "properties.color" && ch.value === "forbidden") {
        c.update("feature", meta, "properties.color", "allowed");
        // The edit's own event waits for the one being delivered: not seen yet, by anyone.
        assert.deepEqual(seen[0], ["remote:forbidden"]);
      }
    }
  });
  for (const i of [1, 2]) c.onChange((e) => seen[i].push(...e.changes.map((ch) => `${e.origin}:${ch.value}`)));
  a.update("feature", meta, "properties.color", "forbidden");
  for (const m of a.flush()) c.receive(m);
  for (const s of seen) assert.deepEqual(s, ["remote:forbidden", "local:allowed"]);
  assert.equal(c.get("feature", meta, "properties.color"), "allowed");

  // Nested twice over, and from an undo: the events still come in the order they were made.
  const order = [];
  const off = c.onChange((e) => {
    order.push(`${e.origin}:${e.changes[0].value}`);
    const v = e.changes[0].value;
    if (typeof v === "number" && v < 3) c.update("feature", meta, "properties.n", v + 1);
  });
  c.update("feature", meta, "properties.n", 0);
  assert.deepEqual(order, ["local:0", "local:1", "local:2", "local:3"]);
  order.length = 0;
  c.undo();
  assert.deepEqual(order, ["undo:2", "local:3"]);
  off();
  a.close();
  c.close();
});

test("a listener that throws, or closes the engine, leaves the queued events in order", async () => {
  const c = await createEngine({ peerId: "c" });
  const seen = [];
  const queued = [];
  const original = globalThis.queueMicrotask;
  globalThis.queueMicrotask = (fn) => queued.push(fn);
  try {
    c.onChange((e) => {
      if (e.changes[0].value === 1) {
        c.update("map", {}, "properties.n", 2);
        throw new Error("listener bug");
      }
    });
    c.onChange((e) => seen.push(e.changes[0].value));
    c.update("map", {}, "properties.n", 1);
  } finally {
    globalThis.queueMicrotask = original;
  }
  assert.deepEqual(seen, [1, 2]);
  assert.equal(queued.length, 1);
  assert.throws(queued[0], /listener bug/);
  // Later events start afresh.
  c.update("map", {}, "properties.n", 3);
  assert.deepEqual(seen, [1, 2, 3]);
  // Closed by a listener: the event being delivered ends, what is queued reaches no one.
  const d = await createEngine({ peerId: "d" });
  const got = [];
  d.onChange((e) => {
    got.push(e.changes[0].value);
    if (e.changes[0].value === 1) {
      d.update("map", {}, "properties.n", 2);
      d.close();
    }
  });
  d.update("map", {}, "properties.n", 1);
  assert.deepEqual(got, [1]);
  assert.equal(d.closed, true);
  c.close();
});
