// merge() in a worker (merge-worker.js): large documents are merged off the calling thread
// (DESIGN §10: long work never blocks the event loop), with the same results and errors as
// on it; with no worker to start, merge() runs on the calling thread.

import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { jsonText, merge } from "../index.js";
import { inChromium } from "./chromium.js";

const fc = (...features) => ({ type: "FeatureCollection", features });
const f = (id, props, geometry = null) => ({ type: "Feature", id, geometry, properties: props });

// outcome is what a merge gives: its result, or its error's class, code, message and conflicts.
async function outcome(p) {
  try {
    return { result: await p };
  } catch (e) {
    return { error: { name: e.name, code: e.code, message: e.message, conflicts: e.conflicts } };
  }
}

test("merge: in a worker, every result and error is the one on the calling thread", async () => {
  const ref = fc(f("a", { name: "r" }), f("b", { name: "r" }));
  const latest = fc(f("a", { name: "latest" }), f("b", { name: "r" }));
  const incoming = fc(f("a", { name: "r" }), f("b", { name: "incoming" }));
  const clash = fc(f("a", { name: "mine" }), f("b", { name: "r" }));
  const raw = (n) => `{"type":"FeatureCollection","features":[{"type":"Feature","id":"a","geometry":null,"properties":{"n":"x${n}"}}]}`;
  const bytes = (d) => new TextEncoder().encode(JSON.stringify(d));
  const deep = fc(f("a", { v: JSON.parse("[".repeat(80) + "]".repeat(80)) }));
  const cases = [
    ["objects", [ref, latest, incoming]],
    ["text, bytes and an ArrayBuffer", [JSON.stringify(ref), bytes(latest), bytes(incoming).buffer]],
    ["jsonText", [jsonText(JSON.stringify(ref)), latest, incoming]],
    ["a conflict", [ref, latest, clash]],
    ["a conflict resolved", [ref, latest, clash, { policy: "incoming" }]],
    ["a feature deleted on one side", [fc(f(7, { n: "r" })), fc(f(7.5, { n: "r" })), fc(f(7, { n: "i" })), { policy: "latest" }]],
    ["raw lone surrogates", [raw("\ud800"), raw("\udbff"), raw("\ud800")]],
    ["no JSON", ["{", latest, incoming]],
    ["not a FeatureCollection", [{ type: "Feature" }, latest, incoming]],
    ["too deep", [deep, deep, deep]],
    ["a member name with a lone surrogate", ['{"type":"FeatureCollection","features":[],"\ud800":1}', latest, incoming]],
  ];
  for (const [what, [r, l, i, options = {}]] of cases) {
    const here = await outcome(merge(r, l, i, { ...options, offThread: false }));
    const there = await outcome(merge(r, l, i, { ...options, offThread: true }));
    assert.deepEqual(there, here, what);
  }
  // The cases cover results, conflicts and the codes of refused documents.
  const codes = [];
  for (const [, [r, l, i, options = {}]] of cases) {
    const o = await outcome(merge(r, l, i, { ...options, offThread: true }));
    codes.push(o.error ? o.error.code : "ok");
  }
  assert.deepEqual(codes, ["ok", "ok", "ok", "conflict", "ok", "ok", "ok", "invalid_json", "bad_value", "too_deep", "bad_value"]);
});

test("merge: offThread must be a boolean", async () => {
  const d = fc();
  for (const bad of [1, "yes", null]) {
    await assert.rejects(merge(d, d, d, { offThread: bad }), (e) => e.code === "bad_option" && /offThread/.test(e.message));
  }
  // Once this thread has the module, a worker is not given another, as a merge here is not.
  await merge(d, d, d, { offThread: false });
  for (const offThread of [true, false]) {
    await assert.rejects(
      merge(d, d, d, { offThread, wasmURL: "file:///elsewhere/mapcrdt.wasm" }),
      (e) => e.code === "bad_option" && /already loaded from .*differs/.test(e.message),
    );
  }
});

// layer is a datalayer of n features, ~250 bytes each as JSON.
function layer(n, name) {
  return fc(
    ...Array.from({ length: n }, (_, i) =>
      f(i, { name: i % 3 === 0 ? name : "n" + i, description: "x".repeat(150) }, { type: "Point", coordinates: [i / 1000, 45] }),
    ),
  );
}

test("merge: documents of over 1 MiB are merged in a worker: the event loop runs meanwhile", async () => {
  const docs = [layer(3000, "r"), layer(3000, "latest"), layer(3000, "r")].map((d) => JSON.stringify(d));
  assert.ok(docs.join("").length > 1024 * 1024);
  await merge(fc(), fc(), fc(), { offThread: false }); // the calling thread's module loaded
  // events says which of a timer and the merge ended first: a merge on the calling thread
  // runs in one call, before any timer; one in a worker waits for its reply, timers running.
  const events = async (options) => {
    const order = [];
    const timer = new Promise((resolve) => setTimeout(resolve, 0)).then(() => order.push("timer"));
    const merged = merge(...docs, options).then((r) => {
      order.push("merge");
      return r;
    });
    const [r] = await Promise.all([merged, timer]);
    return { order, r };
  };
  const here = await events({ offThread: false });
  assert.deepEqual(here.order, ["merge", "timer"], "on the calling thread");
  const there = await events({});
  assert.deepEqual(there.order, ["timer", "merge"], "by default, for over 1 MiB");
  assert.deepEqual(there.r, here.r);
  assert.equal(JSON.parse(there.r.document).features[3].properties.name, "latest");
  // Under 1 MiB, on the calling thread by default.
  const small = [layer(10, "r"), layer(10, "latest"), layer(10, "r")];
  const order = [];
  const t = new Promise((resolve) => setTimeout(resolve, 0)).then(() => order.push("timer"));
  await merge(...small).then(() => order.push("merge"));
  await t;
  assert.deepEqual(order, ["merge", "timer"]);
});

// glueIn copies the glue (index.js, wasm_exec.js) into a fresh directory, with the given
// merge-worker.js (none if null), and imports it: the module itself is the built one.
async function glueIn(t, worker) {
  const dir = await mkdtemp(join(tmpdir(), "mapcrdt-glue-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const here = new URL("../", import.meta.url);
  for (const name of ["index.js", "wasm_exec.js", "package.json"]) await copyFile(new URL(name, here), join(dir, name));
  if (worker !== null) await writeFile(join(dir, "merge-worker.js"), worker);
  const glue = await import(pathToFileURL(join(dir, "index.js")).href);
  return { glue, wasmURL: new URL("mapcrdt.wasm", here) };
}

test("merge: with no worker to start (no merge-worker.js beside index.js), it merges on the calling thread", { timeout: 60_000 }, async (t) => {
  const { glue, wasmURL } = await glueIn(t, null);
  const ref = fc(f("a", { name: "r" }));
  const want = await merge(ref, fc(f("a", { name: "l" })), ref, { offThread: false });
  for (let i = 0; i < 2; i++) {
    const got = await glue.merge(ref, fc(f("a", { name: "l" })), ref, { offThread: true, wasmURL });
    assert.deepEqual(got, want, `merge ${i + 1}`);
  }
});

test("merge: a worker that stops mid-merge fails that merge (internal); the next merge starts another", { timeout: 60_000 }, async (t) => {
  // A stand-in worker: it answers with the count of merges it was given, and exits at one
  // under policy "incoming".
  const { glue, wasmURL } = await glueIn(
    t,
    `import { parentPort } from "node:worker_threads";
let n = 0;
parentPort.on("message", (m) => {
  if (m.policy === "incoming") process.exit(3);
  parentPort.postMessage({ id: m.id, result: { document: "merge " + ++n, conflicts: [] } });
});`,
  );
  const d = fc();
  const run = (policy) => glue.merge(d, d, d, { offThread: true, wasmURL, policy });
  assert.equal((await run("fail")).document, "merge 1");
  assert.equal((await run("fail")).document, "merge 2", "the worker is kept for the next merge");
  await assert.rejects(run("incoming"), (e) => e.code === "internal" && /merge worker stopped: exit code 3/.test(e.message));
  assert.equal((await run("fail")).document, "merge 1", "a new worker");
});

test("merge: in a browser, a module worker merges what the page merges", async (t) => {
  const page = `<!doctype html><meta charset="utf-8"><script type="module">
import { merge } from "./index.js";
try {
  const fc = (...features) => ({ type: "FeatureCollection", features });
  const f = (id, name) => ({ type: "Feature", id, geometry: null, properties: { name } });
  const docs = [fc(f("a", "r"), f("b", "r")), fc(f("a", "l"), f("b", "r")), fc(f("a", "i"), f("b", "i"))];
  const here = await merge(...docs, { policy: "latest", offThread: false });
  const there = await merge(...docs, { policy: "latest", offThread: true });
  let code = "";
  try { await merge(...docs, { offThread: true }); } catch (e) { code = e.code + ":" + e.conflicts.length; }
  window.result = { same: JSON.stringify(here) === JSON.stringify(there), conflicts: there.conflicts.length, code };
} catch (e) {
  window.result = { error: String(e && e.stack || e) };
}
</script>`;
  const run = await inChromium(t, page);
  if (!run) return;
  assert.deepEqual(run.errors, []);
  assert.equal(run.result.error, undefined, run.result.error);
  assert.deepEqual(run.result, { same: true, conflicts: 1, code: "conflict:1" });
});

test("merge: in a browser where no worker starts (its script missing, or Worker refused), it merges on the page", async (t) => {
  // Two instances of the glue (index.js?missing, index.js?refused): one whose worker script
  // fails to load (the error event comes later), one whose Worker constructor throws (as
  // under a Content-Security-Policy without worker-src).
  const page = `<!doctype html><meta charset="utf-8"><script type="module">
try {
  const fc = (...features) => ({ type: "FeatureCollection", features });
  const f = (id, name) => ({ type: "Feature", id, geometry: null, properties: { name } });
  const docs = [fc(f("a", "r")), fc(f("a", "l")), fc(f("a", "r"), f("b", "i"))];
  const Real = window.Worker;
  let started = 0;
  window.Worker = class extends Real {
    constructor(url, options) {
      started++;
      super(new URL("./no-such-worker.js", url), options);
    }
  };
  const missing = await import("./index.js?missing");
  const a = await missing.merge(...docs, { offThread: true });
  const a2 = await missing.merge(...docs, { offThread: true });
  window.Worker = class {
    constructor() {
      started++;
      throw new DOMException("refused", "SecurityError");
    }
  };
  const refused = await import("./index.js?refused");
  const b = await refused.merge(...docs, { offThread: true });
  const here = await refused.merge(...docs, { offThread: false });
  window.result = { same: [a, a2, b].every((r) => JSON.stringify(r) === JSON.stringify(here)), started, n: JSON.parse(here.document).features.length };
} catch (e) {
  window.result = { error: String(e && e.stack || e) };
}
</script>`;
  const run = await inChromium(t, page);
  if (!run) return;
  assert.equal(run.result.error, undefined, run.result.error);
  // One try each: the second merge of the first glue does not try again.
  assert.deepEqual(run.result, { same: true, started: 2, n: 2 });
});
