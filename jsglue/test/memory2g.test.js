// The module's memory past 2 GiB: wasm returns an address as a signed i32, so Go's buffers
// placed above 2^31 reach JavaScript as negative numbers. A refused message of 2.1 GB (a
// hostile peer's, say) grows the memory that far; every later call must still work. Its
// own file: the process keeps the 2 GiB of memory afterwards.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createEngine } from "../index.js";

test("after the memory grew past 2 GiB, arguments still reach the module whole", async (t) => {
  const a = await createEngine({ peerId: "a" });
  let big;
  try {
    big = new Uint8Array(2.1e9); // the input buffer Go makes for it ends past 2^31
  } catch {
    t.skip("no room for a 2.1 GB array here");
    return;
  }
  assert.throws(() => a.receive(big), { code: "too_large" });
  big = null;
  assert.ok(a.memory().wasmMemory > 2 ** 31);
  // Every later call used to write its arguments at a negative address (the view's end)
  // while Go read its buffer, zeros: "a local edit is update, upsert or delete, not …".
  a.update("map", {}, "properties.name", "after");
  assert.equal(a.get("map", {}, "properties.name"), "after");
  const b = await createEngine({ peerId: "b" });
  assert.equal(b.peerId, "b");
  b.receive(a.flush()[0]);
  assert.equal(b.get("map", {}, "properties.name"), "after");
  a.close();
  b.close();
});
