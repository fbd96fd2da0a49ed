// The same module in a browser: headless Debian chromium (through playwright-core) loads
// index.js as an ES module from a static server, which fetches wasm_exec.js and streams
// mapcrdt.wasm (served as application/wasm). Skipped when chromium is not installed (but in CI).

import { test } from "node:test";
import assert from "node:assert/strict";
import { inChromium } from "./chromium.js";

const page = `<!doctype html><meta charset="utf-8"><script type="module">
import { createEngine, MapcrdtError } from "./index.js";
try {
  const a = await createEngine({ peerId: "alice" });
  const b = await createEngine({ peerId: "bob" });
  const meta = { id: "f1", layerId: "L1", featureType: "marker" };
  const seen = [];
  b.onChange((e) => seen.push(e.origin + ":" + e.changes.map((c) => c.kind).join(",")));
  a.upsert("feature", meta, { type: "Feature", geometry: { type: "Point", coordinates: [2.35, 48.85] }, properties: { name: "Café" } });
  a.update("feature", meta, "properties.name", "Café de Flore");
  for (const m of a.flush()) b.receive(m);
  let code = "";
  try { b.receive("{broken"); } catch (e) { code = e instanceof MapcrdtError ? e.code : String(e); }
  // Enough edits for the Go collector to run (several times): the glue finishes each
  // collection through __mapcrdt.idle, a js.FuncOf call, which must work here too.
  const d = await createEngine({ peerId: "dora" });
  const e = await createEngine({ peerId: "emil" });
  const gcBefore = d.memory().numGC;
  const pad = " ".repeat(1000); // 20,000 kept values of 1 KB: past the first collection's 12 MB
  for (let i = 0; i < 20000; i++) {
    d.update("feature", { id: "g" + (i % 500), layerId: "L1", featureType: "marker" }, "properties.n", "value " + i + pad);
    for (const m of d.flush()) e.receive(m);
  }
  const collections = d.memory().numGC - gcBefore;
  const converged = d.state() === e.state();
  const c = await createEngine({ snapshot: b.snapshot() });
  window.result = { same: a.state() === b.state(), name: b.get("feature", meta, "properties.name"), seen, code,
                    snapshot: c.state() === b.state(), peer: c.peerId, collections, converged };
} catch (e) {
  window.result = { error: String(e && e.stack || e) };
}
</script>`;

test("the module works in a browser (chromium, ES module, streaming instantiation)", async (t) => {
  const run = await inChromium(t, page);
  if (!run) return;
  const { result: result, errors } = run;
  assert.deepEqual(errors, []);
  assert.equal(result.error, undefined, result.error);
  assert.equal(result.same, true);
  assert.equal(result.name, "Café de Flore");
  assert.deepEqual(result.seen, ["remote:created", "remote:set"]);
  assert.equal(result.code, "invalid_json");
  assert.equal(result.snapshot, true);
  assert.equal(result.peer, "bob");
  assert.ok(result.collections > 0, "no collection ran during 20,000 edits");
  assert.equal(result.converged, true);
});
