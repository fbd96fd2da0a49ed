// The page of browser.js: the runs of bench.js (core.js's runOnce over systems.js), in
// headless Chromium. browser.js serves jsglue/ on 127.0.0.1, with an import map giving
// "yjs" (and its lib0) and "loro-crdt" (its web build); it reads window.result, which is
//
//   {userAgent, isolated, runs: {name: [runOnce's result, …]}, bridge}   or   {error}
//
// (isolated: crossOriginIsolated, which gives performance.now() its 5 µs resolution.)
//
// The query string: runs=N, only=Yjs,Loro (mapcrdt always runs), bridge=0 (no bridge
// figures); or memory=NAME alone, for a page of its own that only measures the memory of
// NAME's caught-up replica (core.js's memoryAfterW2), its result {isolated, memory}.
//
// As in bench.js, the JS heap is collected between runs (gc(), which the browser exposes
// with --js-flags=--expose-gc). W2's gzip -9 size is not taken here (the page's
// CompressionStream has no level): each run's payload is POSTed to /gzip, out of the timed
// parts, and browser.js answers with gzip -9's size, as bench.js computes it.

import initLoro from "loro-crdt";
import { systems as allSystems, mapcrdt } from "./systems.js";
import { runOnce, bridgeOverhead, memoryAfterW2 } from "./core.js";

const params = new URLSearchParams(location.search);
const RUNS = Number(params.get("runs") ?? 5);
const ONLY = params.has("only") ? params.get("only").split(",") : null;
const systems = ONLY ? allSystems.filter((s) => s === mapcrdt || ONLY.includes(s.name)) : allSystems;

async function gzipSize(payload) {
  const res = await fetch("/gzip", { method: "POST", body: payload });
  if (!res.ok) throw new Error(`POST /gzip: HTTP ${res.status}`);
  return Number(await res.text());
}

async function main() {
  // Loro's web build instantiates its wasm module (fetched next to its index.js) here,
  // once; systems.js's LoroDoc is the same module's.
  const loroWasm = await initLoro();
  const gc = globalThis.gc;
  if (typeof gc !== "function") throw new Error("gc() is not exposed: launch chromium with --js-flags=--expose-gc");
  if (params.has("memory")) {
    const name = params.get("memory");
    // usedJSHeapSize is rounded to coarse buckets unless chromium runs with
    // --enable-precise-memory-info. It counts the JS heap and ArrayBuffers, not the
    // WebAssembly.Memory of a module (Chromium 156: a 50 MB ArrayBuffer showed up as 50 MB,
    // a memory of 6.5 MB grown by 52 MB as nothing), so no wasm growth is taken out of it.
    const memory = await memoryAfterW2(allSystems.find((s) => s.name === name), {
      gc,
      jsHeap: () => performance.memory.usedJSHeapSize,
      heapCountsWasm: false,
      wasmMemory: name === "Loro" ? loroWasm.memory : null,
    });
    return { isolated: globalThis.crossOriginIsolated, memory };
  }
  const runs = Object.fromEntries(systems.map((s) => [s.name, []]));
  for (let run = 0; run < RUNS; run++) {
    for (const sys of systems) {
      const r = await runOnce(sys, run);
      r.w2gzip = await gzipSize(r.w2payload);
      delete r.w2payload;
      runs[sys.name].push(r);
      gc();
    }
  }
  const bridge = params.get("bridge") === "0" ? null : await bridgeOverhead();
  return { userAgent: navigator.userAgent, isolated: globalThis.crossOriginIsolated, runs, bridge };
}

try {
  window.result = await main();
} catch (e) {
  window.result = { error: String((e && e.stack) || e), isolated: globalThis.crossOriginIsolated };
}
