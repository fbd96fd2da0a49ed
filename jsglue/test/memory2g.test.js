// The module's memory past 2 GiB, and out of it. Wasm returns an address as a signed i32, so
// Go's buffers placed above 2^31 reach JavaScript as negative numbers: a refused message of
// 2.1 GB (a hostile peer's, say) grows the memory that far, and every later call must still
// work. A message larger than the 4 GiB the memory can hold ends the Go program: that must
// be reported as a crash, and the next createEngine must load the module again. Their own
// file: the process keeps the memory afterwards.

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

test("a call that runs the module out of memory is a crash: the next createEngine loads it again", async (t) => {
  const a = await createEngine({ peerId: "a" });
  a.update("map", {}, "properties.name", "before");
  let big;
  try {
    big = new Uint8Array(4.04e9); // its input buffer does not fit in 4 GiB: Go's fatal error
  } catch {
    t.skip("no room for a 4 GB array here");
    return;
  }
  // Go's exit inside mapcrdt_in returned to the glue as if it had given a buffer: the write
  // failed with a RangeError, and every later createEngine with "the module has exited".
  assert.throws(() => a.receive(big), { code: "internal", message: /crashed/ });
  big = null;
  assert.throws(() => a.get("map", {}, "properties.name"), { code: "internal", message: /crashed/ });
  const b = await createEngine({ peerId: "b" });
  b.update("map", {}, "properties.name", "after");
  assert.equal(b.get("map", {}, "properties.name"), "after");
  b.close();
});
