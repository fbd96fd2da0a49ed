// What the benchmark's two entries share: bench.js (Node) and browser.js (headless
// Chromium, through page.js) time the same runs with runOnce, and print the same table.
// Nothing here needs Node: the page imports this module too.

import { ops, OPS, FEATURES, concurrentOp } from "./workload.js";
import { mapcrdt } from "./systems.js";
import { _rawBridge } from "../index.js";

export const now = () => performance.now();

const encoder = new TextEncoder();

/** The bytes of a message: a string's UTF-8 length, or a byte array's length. */
export function byteLength(m) {
  if (typeof m !== "string") return m.byteLength;
  return globalThis.Buffer ? globalThis.Buffer.byteLength(m) : encoder.encode(m).byteLength;
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/**
 * One run of W1–W4 on fresh replicas of sys. gzipSize(payload), if given, is called out of
 * the timed parts and gives W2's gzip -9 bytes; without it (the browser, which has no
 * gzip -9) the run keeps W2's payload as w2payload, for its caller to measure and drop.
 */
export async function runOnce(sys, run, { gzipSize } = {}) {
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
  r.w1bytes = messages.reduce((n, m) => n + byteLength(m), 0);

  // W2
  const b = await sys.replica(1);
  g = gcs(a);
  t = now();
  const { sent, payload } = sys.catchUp(a, b);
  r.w2 = now() - t;
  r.w2gc = gcs(a) - g;
  r.windows.w2 = [t, t + r.w2];
  // Counted out of the timed part (the messages as sent).
  r.w2bytes = sent.reduce((n, m) => n + byteLength(m), 0);
  if (gzipSize) r.w2gzip = gzipSize(payload);
  else r.w2payload = payload;
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

/** The runs of each system ({name: [run, …]}) → the median of each figure (a flag: all runs). */
export function summarize(all) {
  const results = {};
  for (const [name, runs] of Object.entries(all)) {
    results[name] = {};
    for (const key of Object.keys(runs[0])) {
      if (key === "windows" || key === "w2payload") continue;
      const vals = runs.map((r) => r[key]);
      results[name][key] = typeof vals[0] === "boolean" ? vals.every(Boolean) : median(vals);
    }
  }
  return results;
}

// ------------------------------------------------------------------ memory

/**
 * The memory the caught-up replica of W2 holds: {total, js, wasmGrowth, go} in bytes, run
 * on its own (bench.js: a child process per system; browser.js: a page per system).
 * gc() collects the JS heap; jsHeap() reads it (Node: heapUsed + external; Chromium:
 * performance.memory.usedJSHeapSize, which counts ArrayBuffers but not wasm memories);
 * heapCountsWasm says whether that figure counts the system's wasm memory; wasmMemory is
 * Loro's WebAssembly.Memory. The replicas stay alive (globalThis.keep) after the reading.
 */
export async function memoryAfterW2(sys, { gc, jsHeap, heapCountsWasm, wasmMemory }) {
  const a = await sys.replica(0);
  for (let i = 0; i < OPS; i++) sys.edit(a, ops[i]);
  const probe = sys === mapcrdt ? a : null;
  const measure = () => {
    let wasmBytes = 0;
    let goHeap = 0;
    // Go's collection first: it may grow the wasm memory, which must be in both the wasm
    // size and the JS heap's figure read below (read before it, 9 pages of growth once
    // showed up as 0.6 MB of JS heap).
    if (probe) goHeap = probe.memory(true).heapAlloc;
    gc();
    gc();
    const js = jsHeap();
    if (wasmMemory) wasmBytes = wasmMemory.buffer.byteLength;
    if (probe) wasmBytes = probe.memory(false).wasmMemory;
    return { js, wasmBytes, goHeap };
  };
  const before = measure();
  const b = await sys.replica(1);
  sys.catchUp(a, b);
  const after = measure();
  const wasmGrowth = after.wasmBytes - before.wasmBytes;
  // Where the JS heap's figure counts a WebAssembly.Memory's buffer, its growth is taken
  // out, or a wasm system's memory growth would be counted twice (once here, once as
  // wasmGrowth or inside the Go heap).
  const js = after.js - before.js - (heapCountsWasm ? wasmGrowth : 0);
  const go = after.goHeap - before.goHeap;
  // mapcrdt: the Go heap the replica holds (exact, after a collection); the wasm memory
  // only grows by whole pages and keeps what the runtime reserved, so it is reported aside.
  const total = probe ? go + Math.max(js, 0) : wasmGrowth + Math.max(js, 0);
  globalThis.keep = [a, b];
  return { total, js, wasmGrowth, go };
}

// ------------------------------------------------------------------ bridge overhead

export async function bridgeOverhead() {
  const raw = await _rawBridge();
  const e = await mapcrdt.replica(99);
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

// ------------------------------------------------------------------ printing

function fmt(v, digits) {
  if (typeof v === "boolean") return v ? "yes" : "NO";
  if (v >= 1e6) return (v / 1e6).toFixed(2) + "M";
  if (v >= 1e4) return Math.round(v).toLocaleString("en-US");
  return v.toFixed(digits);
}

/**
 * The table's lines: a row per figure, each system's median, the ratios other / mapcrdt
 * (names[0]), the target. mem ({name: {total}}), if given, adds the memory row.
 */
export function table(names, results, mem) {
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
  return [row(head), widths.map((w) => "-".repeat(w)).join("  "), ...lines.map(row)];
}

/**
 * mapcrdt's figure in each run (runs: its runOnce results), each marked with a * per Go
 * collection inside the workload and, when jsInside(window) is given (Node's gc
 * observer), a + per collection of V8's JS heap.
 */
export function perRunLines(runs, jsInside) {
  const lines = [];
  for (const [label, key, digits] of [["W1 ms", "w1", 1], ["W2 ms", "w2", 1], ["W3 µs/op", "w3", 2], ["W4 ms", "w4", 1]]) {
    const cells = runs.map((r) => (r[key].toFixed(digits) + "*".repeat(r[key + "gc"]) + (jsInside ? "+".repeat(jsInside(r.windows[key])) : "")).padEnd(9));
    lines.push(`  ${label.padEnd(9)} ${cells.join(" ")}`);
  }
  return lines;
}

/** The lines of bridgeOverhead()'s figures. */
export function bridgeLines(o) {
  return [
    "mapcrdt bridge, per call (ns): wasmexport vs js.FuncOf",
    `  empty export (mapcrdt_out)        ${o.exportRaw.toFixed(0)}`,
    `  canUndo()                         ${o.exportCall.toFixed(0)}  vs  ${o.funcofCall.toFixed(0)}`,
    `  18-byte string in, out            ${o.export18.toFixed(0)}  vs  ${o.funcof18.toFixed(0)}`,
    `  10 KB string in                   ${o.export10k.toFixed(0)}  vs  ${o.funcof10k.toFixed(0)}`,
    `  W3 receive (µs/op)                ${o.w3.wasmexport.toFixed(2)}  vs  ${o.w3.funcof.toFixed(2)}`,
  ];
}
