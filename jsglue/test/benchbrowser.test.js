// The benchmark's browser twin (jsglue/bench/browser.js) still runs: one run of W1–W4 for
// the three systems in headless chromium, every workload converged, the JSON's shape (the
// memory row's too), and the same workload as bench.js's in Node (Loro's bytes, which
// depend on no clock and no random id, equal to the byte). No timing is asserted. Skipped
// when chromium is not installed (but in CI, where it fails), as the other browser tests.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const bench = (name) => fileURLToPath(new URL(`../bench/${name}`, import.meta.url));

function run(script, args) {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [bench(script), ...args], { encoding: "utf8", timeout: 300_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`${script} ${args.join(" ")}: ${err.message}\n${stderr}`));
      resolve(stdout);
    });
  });
}

const lastJSON = (out) => JSON.parse(out.trim().split("\n").pop());

test("browser.js: one run of the three systems in chromium converges, and is bench.js's workload", async (t) => {
  const chromium = process.env.CHROMIUM ?? "/usr/bin/chromium";
  if (!existsSync(chromium)) {
    if (process.env.CI) throw new Error("chromium not installed: a browser test cannot be skipped in CI");
    return t.skip("chromium not installed");
  }
  const out = await run("browser.js", ["--runs", "1", "--json"]);
  const got = lastJSON(out);
  assert.deepEqual(Object.keys(got).sort(), ["bridge", "browser", "mem", "results"]);
  assert.match(got.browser.v8, /^\d+\.\d+\.\d+/);
  assert.match(got.browser.userAgent, /Chrome\/\d+/);
  assert.deepEqual(Object.keys(got.results), ["mapcrdt", "Yjs", "Loro"]);
  for (const [name, r] of Object.entries(got.results)) {
    for (const key of ["w2ok", "w3ok", "w4ok"]) assert.equal(r[key], true, `${name} ${key}`);
    for (const key of ["w1", "w1bytes", "w2", "w2bytes", "w2gzip", "w3", "w4", "w4edits", "w4syncs"]) {
      assert.ok(Number.isFinite(r[key]) && r[key] > 0, `${name} ${key}: ${r[key]}`);
    }
    assert.ok(r.w2gzip < r.w2bytes, `${name}: gzip -9 of W2's payload ${r.w2gzip} ≥ its ${r.w2bytes} bytes`);
    assert.equal(r.w2payload, undefined, `${name}: the payload came back in the results`);
  }
  // The memory row: each system's caught-up replica measured in its own page.
  assert.deepEqual(Object.keys(got.mem), ["mapcrdt", "Yjs", "Loro"]);
  for (const [name, m] of Object.entries(got.mem)) {
    assert.ok(Number.isFinite(m.total) && m.total > 0, `${name} memory ${m.total}`);
  }
  assert.ok(got.mem.mapcrdt.go > 0, "mapcrdt: no Go heap held by the caught-up replica");
  assert.ok(got.mem.Loro.wasmGrowth > 0, "Loro: its wasm memory did not grow");
  assert.match(out, /^memory after W2 \(MB\) /m);
  for (const key of ["exportRaw", "exportCall", "funcofCall", "export18", "funcof18", "export10k", "funcof10k"]) {
    assert.ok(Number.isFinite(got.bridge[key]) && got.bridge[key] > 0, `bridge ${key}: ${got.bridge[key]}`);
  }
  assert.ok(got.bridge.w3.wasmexport > 0 && got.bridge.w3.funcof > 0);
  // The printed table: a row per figure, "yes" for the three systems where they converged.
  assert.match(out, /V8 \d+\.\d+/);
  for (const row of ["W2 converged", "W3 converged", "W4 converged"]) {
    assert.match(out, new RegExp(`^${row}\\s+yes\\s+yes\\s+yes\\s*$`, "m"));
  }
  assert.match(out, /^W2 bytes sent, gzip -9 /m);

  // The same workload as in Node: Loro's messages and catch-up are the same bytes (its peer
  // ids are set; Yjs's client ids are random, mapcrdt's messages carry clock readings, so
  // their bytes move by a few from one run to the next).
  const node = lastJSON(await run("bench.js", ["--runs", "1", "--no-memory", "--no-bridge", "--only", "Loro", "--json"]));
  for (const key of ["w1bytes", "w2bytes", "w2gzip"]) {
    assert.equal(got.results.Loro[key], node.results.Loro[key], `Loro ${key}: browser vs Node`);
  }
});
