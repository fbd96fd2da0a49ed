// How long createEngine({snapshot}) takes, and how long it holds the event loop at most, by
// the snapshot's size. Run by `make bench` (after `make build`), or
// `node jsglue/bench/restore.js [--runs N]`.
//
// An engine makes local edits over 20,000 features × 5 keys (a flush every 100 edits), up
// to each row's count of live paths; its snapshot is then restored --runs times, each in a
// fresh engine (closed after), while a setImmediate loop notes the longest time between two
// of its turns: the longest share of the restore (DESIGN §10: long work never blocks the
// event loop). Medians, and the largest of the longest blocks; and, for comparison, the
// restore in one call of the module (create without FlagStepwise), as before session 34.

import { createEngine, _rawBridge } from "../index.js";
import { KEYS, LAYER } from "./workload.js";

const args = process.argv.slice(2);
const RUNS = Number(args.includes("--runs") ? args[args.indexOf("--runs") + 1] : 5);
const FEATURES = 20_000;
const ROWS = [10_000, 30_000, 100_000];

const metadata = Array.from({ length: FEATURES }, (_, f) => ({ id: `f${f}`, layerId: LAYER, featureType: "marker" }));

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

// restore restores snap once, and returns its time and the longest turn of the loop.
async function restore(snap) {
  let last = performance.now();
  let longest = 0;
  let running = true;
  const turn = () => {
    const t = performance.now();
    longest = Math.max(longest, t - last);
    last = t;
    if (running) setImmediate(turn);
  };
  setImmediate(turn);
  const t0 = performance.now();
  const engine = await createEngine({ snapshot: snap });
  const ms = performance.now() - t0;
  running = false;
  longest = Math.max(longest, performance.now() - last);
  engine.close();
  return { ms, longest };
}

const raw = await _rawBridge();

// oneCall restores snap in one call of the module, and returns its time.
function oneCall(snap) {
  const t0 = performance.now();
  const handle = Number(raw.call(raw.methods.create, 0, 0, ["", "", "", "", "", "", "", "", "", snap, ""]));
  const ms = performance.now() - t0;
  raw.call(raw.methods.close, handle, 0, []);
  return ms;
}

const engine = await createEngine({ peerId: "restore" });
const rows = [];
let n = 0;
for (const paths of ROWS) {
  for (; n < paths; n++) {
    const f = n % FEATURES;
    const k = Math.floor(n / FEATURES) % KEYS.length;
    engine.update("feature", metadata[f], KEYS[k], k === 4 ? { type: "Point", coordinates: [n / 1e5, 45] } : `value ${n}`);
    if (n % 100 === 99) engine.flush();
  }
  engine.flush();
  const snap = engine.snapshot();
  await restore(snap); // warm
  const runs = [];
  const whole = [];
  for (let r = 0; r < RUNS; r++) {
    runs.push(await restore(snap));
    whole.push(oneCall(snap));
  }
  rows.push({
    paths,
    bytes: snap.byteLength,
    ms: median(runs.map((r) => r.ms)),
    longest: median(runs.map((r) => r.longest)),
    worst: Math.max(...runs.map((r) => r.longest)),
    whole: median(whole),
  });
}

console.log(`createEngine({snapshot}) in Node ${process.versions.node}, ${RUNS} runs (medians)`);
console.log("| live paths | snapshot bytes | restore ms | longest block ms | worst block ms | in one call ms (one block) |");
console.log("|---|---|---|---|---|---|");
for (const r of rows) {
  console.log(
    `| ${r.paths.toLocaleString("en")} | ${r.bytes.toLocaleString("en")} | ${r.ms.toFixed(0)} | ${r.longest.toFixed(1)} | ${r.worst.toFixed(1)} | ${r.whole.toFixed(0)} |`,
  );
}
