// How long one of Go's collections stops a page, by the size of the engine's heap. Run by
// `make bench` (after `make build`), or `node jsglue/bench/gcpause.js [--runs N]`.
//
// In js/wasm Go's collector is not concurrent: a collection marks the whole heap in one
// pause, inside the call that started it (README, "Garbage collection in js/wasm"). One
// engine makes local edits over 20,000 features × 5 keys (a flush every 100 edits, as a
// page sends them), up to each row's count of operations; then engine.memory(true), which
// runs a full collection (runtime.GC), is timed --runs times (median, and the fastest).
// After the last row, compact() drops the superseded operations and the collection is
// timed again: the log is most of what the collector reads.

import { createEngine } from "../index.js";
import { KEYS, LAYER } from "./workload.js";

const args = process.argv.slice(2);
const RUNS = Number(args.includes("--runs") ? args[args.indexOf("--runs") + 1] : 5);
const FEATURES = 20_000;
const ROWS = [10_000, 30_000, 100_000, 300_000];

const metadata = Array.from({ length: FEATURES }, (_, f) => ({ id: `f${f}`, layerId: LAYER, featureType: "marker" }));

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

function collect(engine) {
  const times = [];
  let m;
  for (let k = 0; k < RUNS; k++) {
    const t = performance.now();
    m = engine.memory(true);
    times.push(performance.now() - t);
  }
  return { heap: m.heapAlloc, ms: median(times), min: Math.min(...times) };
}

const engine = await createEngine({ peerId: "gcpause" });
const rows = [];
let n = 0;
for (const target of ROWS) {
  for (; n < target; n++) {
    engine.update("feature", metadata[n % FEATURES], KEYS[Math.floor(n / FEATURES) % KEYS.length], `value of edit ${n}`);
    if (n % 100 === 99) engine.flush();
  }
  rows.push({ what: `${n.toLocaleString("en-US")} operations`, ...collect(engine) });
}
engine.compact();
rows.push({ what: "the same, after compact()", ...collect(engine) });
engine.close();

console.log(`Go's full collection in the module, by heap size (median of ${RUNS}, Node ${process.version})\n`);
const head = ["engine", "Go heap (MB)", "collection (ms)", "fastest (ms)", "ms per MB"];
const lines = rows.map((r) => [
  r.what,
  (r.heap / 1048576).toFixed(1),
  r.ms.toFixed(1),
  r.min.toFixed(1),
  (r.ms / (r.heap / 1048576)).toFixed(2),
]);
const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
const row = (cells) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
console.log(row(head));
console.log(widths.map((w) => "-".repeat(w)).join("  "));
for (const l of lines) console.log(row(l));
