// The benchmark of issue 6: the same workloads through mapcrdt, Yjs and Loro in one Node
// process, one table with ratios. Run by `make bench` (after `make build`), or
// `node jsglue/bench/bench.js [--runs N] [--json]`.
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
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import { setFlagsFromString } from "node:v8";
import { PerformanceObserver } from "node:perf_hooks";
import { runInNewContext } from "node:vm";
import { systems as allSystems, mapcrdt, loroMemory } from "./systems.js";
import { ops, OPS, FEATURES, concurrentOp } from "./workload.js";
import { _rawBridge } from "../index.js";

const args = process.argv.slice(2);
const RUNS = Number(args.includes("--runs") ? args[args.indexOf("--runs") + 1] : 5);
const ONLY = args.includes("--only") ? args[args.indexOf("--only") + 1].split(",") : null;
const now = () => performance.now();

const systems = ONLY ? allSystems.filter((s) => s === mapcrdt || ONLY.includes(s.name)) : allSystems;

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc");

// V8's collections of the JS heap (scavenges and full ones), kept to mark the workloads of
// mapcrdt's runs they ran inside (the observer is called after the runs; entries carry
// their start on performance.now()'s clock). The benchmark's own gc() calls, between runs,
// fall outside every workload.
const jsCollections = [];
new PerformanceObserver((list) => jsCollections.push(...list.getEntries())).observe({ entryTypes: ["gc"] });

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

function gzipSize(payload) {
  return gzipSync(typeof payload === "string" ? Buffer.from(payload) : payload, { level: 9 }).byteLength;
}

async function runOnce(sys, run) {
  const r = {};
  // How many Go collections each workload of mapcrdt's took (read between workloads, out
  // of the timed parts): one of ~5–8 ms lands in one workload or another in most runs.
  const gcs = (e) => (sys.collections ? sys.collections(e) : 0);
  // W1
  const a = await sys.replica(0);
  const messages = new Array(OPS);
  let g = gcs(a);
  let t = now();
  for (let i = 0; i < OPS; i++) messages[i] = sys.edit(a, ops[i]);
  r.w1 = now() - t;
  r.w1gc = gcs(a) - g;
  r.windows = { w1: [t, t + r.w1] };
  r.w1bytes = messages.reduce((n, m) => n + (typeof m === "string" ? Buffer.byteLength(m) : m.byteLength), 0);

  // W2
  const b = await sys.replica(1);
  g = gcs(a);
  t = now();
  const { bytes, payload } = sys.catchUp(a, b);
  r.w2 = now() - t;
  r.w2gc = gcs(a) - g;
  r.windows.w2 = [t, t + r.w2];
  r.w2bytes = bytes;
  r.w2gzip = gzipSize(payload);
  r.w2ok = sys.digest(a) === sys.digest(b);

  // W3
  const c = await sys.replica(2);
  g = gcs(a);
  t = now();
  for (let i = 0; i < OPS; i++) sys.apply(c, messages[i]);
  r.windows.w3 = [t, now()];
  r.w3 = ((r.windows.w3[1] - t) * 1000) / OPS;
  r.w3gc = gcs(a) - g;
  r.w3ok = sys.digest(a) === sys.digest(c);
  for (const x of [a, b, c]) sys.close(x);

  // W4
  const reps = [await sys.replica(10 + run * 3), await sys.replica(11 + run * 3), await sys.replica(12 + run * 3)];
  g = gcs(reps[0]);
  t = now();
  for (let f = 0; f < FEATURES; f++) {
    for (let k = 0; k < 3; k++) sys.edit(reps[k], concurrentOp(k, f));
  }
  const t4 = now();
  sys.sync(reps[0], reps[1]);
  sys.sync(reps[1], reps[2]);
  sys.sync(reps[0], reps[2]);
  r.w4 = now() - t;
  r.windows.w4 = [t, t + r.w4];
  r.w4edits = t4 - t;
  r.w4syncs = r.w4 - r.w4edits;
  r.w4gc = gcs(reps[0]) - g;
  const d = reps.map((x) => sys.digest(x));
  r.w4ok = d[0] === d[1] && d[1] === d[2];
  for (const x of reps) sys.close(x);
  return r;
}

// ------------------------------------------------------------------ memory (child process)

async function memoryChild(name) {
  const sys = systems.find((s) => s.name === name);
  const a = await sys.replica(0);
  for (let i = 0; i < OPS; i++) sys.edit(a, ops[i]);
  const wasm = name === "Loro" ? loroMemory() : null;
  let probe = null;
  if (name === "mapcrdt") probe = a;
  const measure = () => {
    let wasmBytes = 0;
    let goHeap = 0;
    // Go's collection first: it may grow the wasm memory, which must be in both the wasm
    // size and process.memoryUsage() read below (read before it, 9 pages of growth once
    // showed up as 0.6 MB of JS heap).
    if (probe) goHeap = probe.memory(true).heapAlloc;
    gc();
    gc();
    const m = process.memoryUsage();
    if (wasm) wasmBytes = wasm.buffer.byteLength;
    if (probe) wasmBytes = probe.memory(false).wasmMemory;
    return { js: m.heapUsed + m.external, wasmBytes, goHeap };
  };
  const before = measure();
  const b = await sys.replica(1);
  sys.catchUp(a, b);
  const after = measure();
  const wasmGrowth = after.wasmBytes - before.wasmBytes;
  // process.memoryUsage().external counts a WebAssembly.Memory's buffer: take its growth out,
  // or a wasm system's memory growth would be counted twice (once here, once as wasmGrowth
  // or inside the Go heap).
  const js = after.js - before.js - wasmGrowth;
  const go = after.goHeap - before.goHeap;
  // mapcrdt: the Go heap the replica holds (exact, after a collection); the wasm memory
  // only grows by whole pages and keeps what the runtime reserved, so it is reported aside.
  const total = name === "mapcrdt" ? go + Math.max(js, 0) : wasmGrowth + Math.max(js, 0);
  process.stdout.write(JSON.stringify({ total, js, wasmGrowth, go }) + "\n");
  globalThis.keep = [a, b];
}

function memoryOf(name) {
  const res = spawnSync(process.execPath, [fileURLToPath(import.meta.url), "--memory-child", name], { encoding: "utf8" });
  if (res.status !== 0) throw new Error(`memory child ${name}: ${res.stderr}`);
  return JSON.parse(res.stdout.trim().split("\n").pop());
}

// ------------------------------------------------------------------ bridge overhead

async function bridgeOverhead() {
  const raw = await _rawBridge();
  const e = await mapcrdt.replica(99);
  const h = 1; // any handle works for canUndo's cost; use the real one below
  void h;
  const m = raw.methods;
  const time = (n, fn) => {
    for (let i = 0; i < 1000; i++) fn();
    const t = now();
    for (let i = 0; i < n; i++) fn();
    return ((now() - t) * 1e6) / n; // ns
  };
  const handle = Number(raw.call(m.create, 0, 0, ["overhead"]));
  const out = {
    exportRaw: time(200_000, () => raw.exports.mapcrdt_out()),
    exportCall: time(100_000, () => raw.call(m.canUndo, handle, 0, [])),
    funcofCall: time(20_000, () => raw.callFuncOf(m.canUndo, handle, 0, [])),
    export18: time(100_000, () => raw.call(m.peerId, handle, 0, ["abcdefghijklmnopqr"])),
    funcof18: time(20_000, () => raw.callFuncOf(m.peerId, handle, 0, ["abcdefghijklmnopqr"])),
  };
  const big = JSON.stringify({ text: "x".repeat(10_000) });
  out.export10k = time(20_000, () => raw.call(m.pending, handle, 0, [big]));
  out.funcof10k = time(5_000, () => raw.callFuncOf(m.pending, handle, 0, [big]));
  raw.call(m.close, handle, 0, []);
  e.close();

  // W3 through each bridge.
  const w3 = {};
  for (const bridge of ["wasmexport", "funcof"]) {
    const a = await mapcrdt.replica(100, { bridge });
    const msgs = ops.map((o) => mapcrdt.edit(a, o));
    const runs = [];
    for (let run = 0; run < 3; run++) {
      const c = await mapcrdt.replica(101 + run, { bridge });
      const t = now();
      for (const msg of msgs) c.receive(msg);
      runs.push(((now() - t) * 1000) / OPS);
      c.close();
    }
    a.close();
    w3[bridge] = median(runs);
  }
  return { ...out, w3 };
}

// ------------------------------------------------------------------ table

function fmt(v, digits) {
  if (typeof v === "boolean") return v ? "yes" : "NO";
  if (v >= 1e6) return (v / 1e6).toFixed(2) + "M";
  if (v >= 1e4) return Math.round(v).toLocaleString("en-US");
  return v.toFixed(digits);
}

function table(results, mem) {
  const rows = [
    ["W1 10k local edits (ms)", "w1", 1, "≤ 35"],
    ["W1 message bytes", "w1bytes", 0, ""],
    ["W2 catch-up (ms)", "w2", 2, "≤ 15"],
    ["W2 bytes sent, raw", "w2bytes", 0, ""],
    ["W2 bytes sent, gzip -9", "w2gzip", 0, ""],
    ["W2 converged", "w2ok", 0, ""],
    ["W3 remote op (µs/op)", "w3", 2, "≤ 3"],
    ["W3 converged", "w3ok", 0, ""],
    ["W4 3 replicas, 1k keys (ms)", "w4", 2, "≤ 10"],
    ["  its 3,000 edits (ms)", "w4edits", 2, ""],
    ["  its 3 syncs (ms)", "w4syncs", 2, ""],
    ["W4 converged", "w4ok", 0, ""],
  ];
  const names = systems.map((s) => s.name);
  const head = ["workload", ...names, ...names.slice(1).map((n) => `${n}/mapcrdt`), "target"];
  const lines = [];
  for (const [label, key, digits, target] of rows) {
    const vals = names.map((n) => results[n][key]);
    const ratios = vals.slice(1).map((v) => (typeof v === "boolean" ? "" : (v / vals[0]).toFixed(2) + "×"));
    lines.push([label, ...vals.map((v) => fmt(v, digits)), ...ratios, target]);
  }
  if (mem) {
    const vals = names.map((n) => mem[n].total / 1048576);
    lines.push([
      "memory after W2 (MB)",
      ...vals.map((v) => v.toFixed(2)),
      ...vals.slice(1).map((v) => (v / vals[0]).toFixed(2) + "×"),
      "",
    ]);
  }
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => String(l[i]).length)));
  const row = (cells) => cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join("  ");
  console.log(row(head));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const l of lines) console.log(row(l));
}

async function main() {
  if (args[0] === "--memory-child") return memoryChild(args[1]);
  console.log(`mapcrdt benchmark: ${OPS} ops over ${FEATURES} features × 5 keys; medians of ${RUNS} runs (Node ${process.version})`);
  const all = Object.fromEntries(systems.map((s) => [s.name, []]));
  for (let run = 0; run < RUNS; run++) {
    for (const sys of systems) {
      all[sys.name].push(await runOnce(sys, run));
      gc();
    }
  }
  const results = {};
  await new Promise((resolve) => setTimeout(resolve, 50)); // the gc observer's entries (setImmediate is too soon)
  for (const [name, runs] of Object.entries(all)) {
    results[name] = {};
    for (const key of Object.keys(runs[0])) {
      if (key === "windows") continue;
      const vals = runs.map((r) => r[key]);
      results[name][key] = typeof vals[0] === "boolean" ? vals.every(Boolean) : median(vals);
    }
  }
  const mem = args.includes("--no-memory") ? null : Object.fromEntries(systems.map((s) => [s.name, memoryOf(s.name)]));
  console.log();
  table(results, mem);
  // Each run's figures too: a median of five on a shared machine hides how far apart they
  // are (the first run compiles the module; a garbage collection lands in one workload or
  // another).
  console.log("\nmapcrdt per run (run 1 first; * a Go collection ran inside the workload, + one of V8's JS heap):");
  const jsInside = (w) => jsCollections.filter((e) => e.startTime >= w[0] && e.startTime < w[1]).length;
  for (const [label, key, digits] of [["W1 ms", "w1", 1], ["W2 ms", "w2", 1], ["W3 µs/op", "w3", 2], ["W4 ms", "w4", 1]]) {
    const cells = all.mapcrdt.map((r) => (r[key].toFixed(digits) + "*".repeat(r[key + "gc"]) + "+".repeat(jsInside(r.windows[key]))).padEnd(9));
    console.log(`  ${label.padEnd(9)} ${cells.join(" ")}`);
  }
  if (mem) {
    console.log(
      `\nmemory: mapcrdt = Go heap retained (after GC) + JS heap delta; Yjs = JS heap delta; Loro = wasm memory growth + JS heap delta` +
        `\n        (JS heap delta: heapUsed + external, without the growth of the wasm memories that external counts).` +
        `\n        mapcrdt wasm memory growth: ${(mem.mapcrdt.wasmGrowth / 1048576).toFixed(2)} MB (pages the Go runtime reserved; never returned)`,
    );
  }
  if (!args.includes("--no-bridge")) {
    const o = await bridgeOverhead();
    console.log("\nmapcrdt bridge, per call (ns): wasmexport vs js.FuncOf");
    console.log(`  empty export (mapcrdt_out)        ${o.exportRaw.toFixed(0)}`);
    console.log(`  canUndo()                         ${o.exportCall.toFixed(0)}  vs  ${o.funcofCall.toFixed(0)}`);
    console.log(`  18-byte string in, out            ${o.export18.toFixed(0)}  vs  ${o.funcof18.toFixed(0)}`);
    console.log(`  10 KB string in                   ${o.export10k.toFixed(0)}  vs  ${o.funcof10k.toFixed(0)}`);
    console.log(`  W3 receive (µs/op)                ${o.w3.wasmexport.toFixed(2)}  vs  ${o.w3.funcof.toFixed(2)}`);
  }
  if (args.includes("--json")) console.log(JSON.stringify({ results, mem }));
}

await main();
