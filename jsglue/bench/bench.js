// The benchmark of issue 6: the same workloads through mapcrdt, Yjs and Loro in one Node
// process, one table with ratios. Run by `make bench` (after `make build`), or
// `node jsglue/bench/bench.js [--runs N] [--json]`. browser.js runs them in headless Chromium.
//
//   W1  10,000 local edits over 1,000 features × 5 keys, each producing its message
//   W2  a fresh replica catches up on all of them (time; bytes sent, raw and gzip -9)
//   W3  the 10,000 messages of W1 applied to a fresh replica one call at a time (µs/op)
//   W4  three replicas write the same 1,000 keys concurrently, then every pair exchanges
//       what the other lacks (time; whether the three states are equal; the two parts'
//       times, each its own median)
//   mem the memory the caught-up replica of W2 holds (each system in a child process)
//
// Times are medians of --runs runs (default 5), each on fresh replicas. Ratios are
// other / mapcrdt: above 1 means mapcrdt is faster (or smaller).

import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import { setFlagsFromString } from "node:v8";
import { PerformanceObserver } from "node:perf_hooks";
import { runInNewContext } from "node:vm";
import { systems as allSystems, mapcrdt } from "./systems.js";
import { OPS, FEATURES } from "./workload.js";
import { runOnce, summarize, table, perRunLines, bridgeLines, bridgeOverhead, memoryAfterW2 } from "./core.js";

const args = process.argv.slice(2);
const RUNS = Number(args.includes("--runs") ? args[args.indexOf("--runs") + 1] : 5);
const ONLY = args.includes("--only") ? args[args.indexOf("--only") + 1].split(",") : null;

const systems = ONLY ? allSystems.filter((s) => s === mapcrdt || ONLY.includes(s.name)) : allSystems;

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc");

// V8's collections of the JS heap (scavenges and full ones), kept to mark the workloads of
// mapcrdt's runs they ran inside (the observer is called after the runs; entries carry
// their start on performance.now()'s clock). The benchmark's own gc() calls, between runs,
// fall outside every workload.
const jsCollections = [];
new PerformanceObserver((list) => jsCollections.push(...list.getEntries())).observe({ entryTypes: ["gc"] });

function gzipSize(payload) {
  return gzipSync(typeof payload === "string" ? Buffer.from(payload) : payload, { level: 9 }).byteLength;
}

/** The linear memory of Loro's wasm module (for the memory measurement). */
function loroMemory() {
  const require = createRequire(import.meta.url);
  const path = require.resolve("loro-crdt").replace(/index\.js$/, "loro_wasm.js");
  return require(path).__wasm.memory;
}

// ------------------------------------------------------------------ memory (child process)

async function memoryChild(name) {
  const sys = systems.find((s) => s.name === name);
  const m = await memoryAfterW2(sys, {
    gc,
    // process.memoryUsage().external counts a WebAssembly.Memory's buffer.
    jsHeap: () => {
      const u = process.memoryUsage();
      return u.heapUsed + u.external;
    },
    heapCountsWasm: true,
    wasmMemory: name === "Loro" ? loroMemory() : null,
  });
  process.stdout.write(JSON.stringify(m) + "\n");
}

function memoryOf(name) {
  const res = spawnSync(process.execPath, [fileURLToPath(import.meta.url), "--memory-child", name], { encoding: "utf8" });
  if (res.status !== 0) throw new Error(`memory child ${name}: ${res.stderr}`);
  return JSON.parse(res.stdout.trim().split("\n").pop());
}

async function main() {
  if (args[0] === "--memory-child") return memoryChild(args[1]);
  console.log(`mapcrdt benchmark: ${OPS} ops over ${FEATURES} features × 5 keys; medians of ${RUNS} runs (Node ${process.version})`);
  const all = Object.fromEntries(systems.map((s) => [s.name, []]));
  for (let run = 0; run < RUNS; run++) {
    for (const sys of systems) {
      all[sys.name].push(await runOnce(sys, run, { gzipSize }));
      gc();
    }
  }
  await new Promise((resolve) => setTimeout(resolve, 50)); // the gc observer's entries (setImmediate is too soon)
  const results = summarize(all);
  const mem = args.includes("--no-memory") ? null : Object.fromEntries(systems.map((s) => [s.name, memoryOf(s.name)]));
  console.log();
  for (const l of table(systems.map((s) => s.name), results, mem)) console.log(l);
  // Each run's figures too: a median of five on a shared machine hides how far apart they
  // are (the first run compiles the module; a garbage collection lands in one workload or
  // another).
  console.log("\nmapcrdt per run (run 1 first; * a Go collection ran inside the workload, + one of V8's JS heap):");
  const jsInside = (w) => jsCollections.filter((e) => e.startTime >= w[0] && e.startTime < w[1]).length;
  for (const l of perRunLines(all.mapcrdt, jsInside)) console.log(l);
  if (mem) {
    console.log(
      `\nmemory: mapcrdt = Go heap retained (after GC) + JS heap delta; Yjs = JS heap delta; Loro = wasm memory growth + JS heap delta` +
        `\n        (JS heap delta: heapUsed + external, without the growth of the wasm memories that external counts).` +
        `\n        mapcrdt wasm memory growth: ${(mem.mapcrdt.wasmGrowth / 1048576).toFixed(2)} MB (pages the Go runtime reserved; never returned)`,
    );
  }
  if (!args.includes("--no-bridge")) {
    console.log();
    for (const l of bridgeLines(await bridgeOverhead())) console.log(l);
  }
  if (args.includes("--json")) console.log(JSON.stringify({ results, mem }));
}

await main();
