// createEngine({snapshot}) restores a share at a time (crdt.Restore, the module's
// restoreStep), the event loop running in between (DESIGN §10), to the engine a restore in
// one call gives.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createEngine, MapcrdtError } from "../index.js";
import { inChromium } from "./chromium.js";

// bigEngine is an engine of n features edited one by one (n operations, n undo steps'
// entries), a few edits left in its outbox.
async function bigEngine(n) {
  const a = await createEngine({ peerId: "alice" });
  for (let i = 0; i < n; i++) {
    a.update("feature", { id: "f" + i, layerId: "L1" }, "properties.name", "name " + i);
    if (i % 1000 === 999) a.flush();
  }
  a.flush();
  a.update("feature", { id: "f0", layerId: "L1" }, "properties.color", "red"); // queued
  return a;
}

test("createEngine({snapshot}) restores in steps: the event loop runs meanwhile; the engine is the one that wrote it", async () => {
  const a = await bigEngine(20000);
  const snap = a.snapshot();
  // The order of a setImmediate made first and the restore's end: a restore in one call
  // ends first (nothing but microtasks before it); one in steps waits for the next task.
  const order = [];
  setImmediate(() => order.push("immediate"));
  const b = await createEngine({ snapshot: snap });
  order.push("restored");
  assert.deepEqual(order, ["immediate", "restored"]);
  assert.equal(b.state(), a.state());
  assert.deepEqual(b.snapshot(), snap);
  assert.equal(b.pending(), 1);
  assert.equal(b.canUndo(), true);
  assert.equal(b.undo().done, true);
  assert.equal(b.get("feature", { id: "f0", layerId: "L1" }, "properties.color"), undefined);
  // A small one is restored in its first share: no task in between.
  const small = await bigEngine(10);
  const order2 = [];
  setImmediate(() => order2.push("immediate"));
  const c = await createEngine({ snapshot: small.snapshot() });
  order2.push("restored");
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(order2, ["restored", "immediate"]);
  assert.equal(c.state(), small.state());
  for (const e of [a, b, c, small]) e.close();
});

test("createEngine({snapshot}): damage met late in the restore, or a clock that throws meanwhile, rejects with its code", async () => {
  const a = await bigEngine(5000);
  const text = new TextDecoder().decode(a.snapshot());
  // An outbox naming no operation: met once every operation is decoded.
  const damaged = text.replace('"outbox":[', '"outbox":[999999,');
  assert.notEqual(damaged, text);
  await assert.rejects(createEngine({ snapshot: damaged }), (e) => e instanceof MapcrdtError && e.code === "bad_snapshot" && /outbox/.test(e.message));
  let calls = 0;
  const now = () => {
    if (++calls === 3) throw new Error("clock gone");
    return 1_800_000_000_000;
  };
  await assert.rejects(createEngine({ snapshot: text, now }), (e) => e.code === "bad_option" && /clock gone/.test(e.message));
  assert.ok(calls >= 3, "the clock is read at each share");
  // The module goes on: the same snapshot restores.
  const b = await createEngine({ snapshot: text });
  assert.equal(b.state(), a.state());
  a.close();
  b.close();
});

test("createEngine({snapshot}) in a browser restores in steps too (a MessageChannel's task between shares)", async (t) => {
  const page = `<!doctype html><meta charset="utf-8"><script type="module">
import { createEngine } from "./index.js";
try {
  const a = await createEngine({ peerId: "alice" });
  for (let i = 0; i < 20000; i++) a.update("feature", { id: "f" + i, layerId: "L1" }, "properties.n", i);
  a.flush();
  const snap = a.snapshot();
  let channels = 0;
  const Real = window.MessageChannel;
  window.MessageChannel = class extends Real { constructor() { super(); channels++; } };
  const b = await createEngine({ snapshot: snap });
  window.MessageChannel = Real;
  window.result = { same: b.state() === a.state(), channels };
} catch (e) {
  window.result = { error: String(e && e.stack || e) };
}
</script>`;
  const run = await inChromium(t, page);
  if (!run) return;
  assert.deepEqual(run.errors, []);
  assert.equal(run.result.error, undefined, run.result.error);
  assert.equal(run.result.same, true);
  assert.ok(run.result.channels >= 1, `${run.result.channels} tasks between shares`);
});
