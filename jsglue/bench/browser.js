// The benchmark of issue 6 in a browser: bench.js's runs (core.js's runOnce, the same
// workload.js and systems.js) in headless Chromium, whose V8 is much newer than Node 20's,
// as uMap's users run mapcrdt. Run by `make bench-browser` (after `make build`), or
// `node jsglue/bench/browser.js [--runs N] [--only Yjs,Loro] [--no-bridge] [--json]`.
//
// It serves jsglue/ on 127.0.0.1 (no other network), loads page.js in Debian's chromium
// ($CHROMIUM, or /usr/bin/chromium) through playwright-core, and prints bench.js's table
// from the page's runs: medians of --runs runs (default 5), each on fresh replicas, ratios
// other / mapcrdt. Yjs (dist/yjs.mjs, and the lib0 modules it imports) and Loro (its web
// build, which fetches its .wasm) load through an import map, without a bundler.
//
// What differs from bench.js:
// - W2's gzip -9 bytes are computed here, from the payload each run POSTs (a page has no
//   gzip -9: CompressionStream takes no level).
// - The memory row is measured in a page of its own for each system (bench.js: a child
//   process), whose JS heap is performance.memory.usedJSHeapSize, precise with
//   --enable-precise-memory-info: it counts what Node's heapUsed + external count, but
//   not the wasm memories (so no growth is taken out of it); see page.js. --no-memory
//   leaves it out.
// - The per-run rows mark Go's collections (*) only: V8's collections of the JS heap are
//   not observable in a page (Node's PerformanceObserver of `gc` entries).

import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { OPS, FEATURES } from "./workload.js";
import { summarize, table, perRunLines, bridgeLines } from "./core.js";

const root = fileURLToPath(new URL("../", import.meta.url)); // jsglue/
const args = process.argv.slice(2);
const RUNS = Number(args.includes("--runs") ? args[args.indexOf("--runs") + 1] : 5);
const ONLY = args.includes("--only") ? args[args.indexOf("--only") + 1] : null;
const BRIDGE = !args.includes("--no-bridge");
const MEMORY = !args.includes("--no-memory");
const types = { ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".html": "text/html" };

// ------------------------------------------------------------------ the import map

/** The file a package's conditional export gives a browser's ES module import (or null). */
function exportTarget(entry) {
  if (typeof entry === "string") return entry.endsWith(".cjs") ? null : entry;
  if (entry === null || typeof entry !== "object") return null;
  for (const c of ["browser", "module", "import", "default"]) {
    const t = c in entry ? exportTarget(entry[c]) : null;
    if (t) return t;
  }
  return null;
}

/** Every export of package pkg (its `exports` map) as import-map entries under /node_modules/. */
function packageEntries(pkg) {
  const dir = join(root, "node_modules", pkg);
  const { exports } = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  const entries = {};
  for (const [key, entry] of Object.entries(exports)) {
    if (key.includes("*") || key.endsWith(".json")) continue;
    const t = exportTarget(entry);
    if (t) entries[pkg + key.slice(1)] = `/node_modules/${pkg}/${t.replace(/^\.\//, "")}`;
  }
  return entries;
}

function importMap() {
  return {
    imports: {
      ...packageEntries("lib0"),
      ...packageEntries("isomorphic.js"),
      ...packageEntries("yjs"),
      // Not "." (whose browser build imports "./loro_wasm" without its extension): the web
      // build, an ES module whose default export instantiates the .wasm.
      "loro-crdt": "/node_modules/loro-crdt/web/index.js",
    },
  };
}

function pageHTML() {
  return `<!doctype html><meta charset="utf-8"><title>mapcrdt benchmark</title><link rel="icon" href="data:,">
<script type="importmap">${JSON.stringify(importMap())}</script>
<script type="module" src="/bench/page.js" onerror="window.result = {error: 'page.js or a module it imports failed to load'}"></script>
`;
}

// ------------------------------------------------------------------ the server

// Cross-origin isolation (every response same-origin-only): without it Chromium rounds
// performance.now() to 100 µs, 1–2% of W2's and W4's parts; isolated, to 5 µs.
const ISOLATED = { "cross-origin-opener-policy": "same-origin", "cross-origin-embedder-policy": "require-corp" };

function serve() {
  const html = pageHTML();
  const server = createServer(async (req, res) => {
    for (const [k, v] of Object.entries(ISOLATED)) res.setHeader(k, v);
    const path = new URL(req.url, "http://x").pathname;
    if (path === "/") return res.writeHead(200, { "content-type": "text/html" }).end(html);
    if (path === "/gzip" && req.method === "POST") {
      const chunks = [];
      for await (const c of req) chunks.push(c);
      const size = gzipSync(Buffer.concat(chunks), { level: 9 }).byteLength;
      return res.writeHead(200, { "content-type": "text/plain" }).end(String(size));
    }
    const file = normalize(join(root, decodeURIComponent(path)));
    if (!file.startsWith(root)) return res.writeHead(403).end();
    try {
      const body = await readFile(file);
      res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream" }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

// ------------------------------------------------------------------ the browser

function chromiumPath() {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  if (existsSync("/usr/bin/chromium")) return "/usr/bin/chromium";
  throw new Error("chromium not found: apt-get install -y --no-install-recommends chromium (or set CHROMIUM=/path)");
}

/** Loads url in a new context of browser; returns the page's window.result. */
async function pageResult(browser, url) {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    // A module that fails to load (a 404 in its graph, a bare name the import map lacks)
    // leaves window.result unset: its error ends the wait, not the hang guard.
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("response", (r) => {
      if (r.status() >= 400) errors.push(`${r.url()}: HTTP ${r.status()}`);
    });
    await page.goto(url);
    // A hang guard only: five runs of the three systems take well under a minute.
    const deadline = Date.now() + 600_000;
    let result;
    while ((result = await page.evaluate(() => window.result)) === undefined) {
      if (errors.length > 0) throw new Error(`the page failed to load: ${errors.join("\n")}`);
      if (Date.now() > deadline) throw new Error("the page set no result in 10 minutes");
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    if (result.error) throw new Error(`the page failed: ${[result.error, ...errors].join("\n")}`);
    if (errors.length > 0) throw new Error(`the page's uncaught errors: ${errors.join("\n")}`);
    if (!result.isolated) throw new Error("the page is not cross-origin isolated (its clock would be rounded to 100 µs)");
    return result;
  } finally {
    await context.close();
  }
}

async function runInChromium() {
  const { chromium } = createRequire(join(root, "package.json"))("playwright-core");
  const server = await serve();
  const browser = await chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    timeout: 120_000, // a hang guard: a loaded 2-core machine takes near playwright's 30 s
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic",
      "--js-flags=--expose-gc", // gc() between runs, as bench.js
      "--enable-precise-memory-info", // performance.memory to the byte (the memory row)
    ],
  });
  try {
    const cdp = await browser.newBrowserCDPSession();
    const version = await cdp.send("Browser.getVersion"); // product, jsVersion (V8), userAgent
    const url = (query) => `http://127.0.0.1:${server.address().port}/?${new URLSearchParams(query)}`;
    const query = { runs: String(RUNS), bridge: BRIDGE ? "1" : "0" };
    if (ONLY) query.only = ONLY;
    const result = await pageResult(browser, url(query));
    const names = Object.keys(result.runs);
    // Each system's memory in a fresh context (its own renderer), after the runs, as bench.js.
    const mem = MEMORY ? {} : null;
    if (mem) for (const name of names) mem[name] = (await pageResult(browser, url({ memory: name }))).memory;
    return { ...result, mem, product: version.product, v8: version.jsVersion };
  } finally {
    await browser.close();
    server.close();
  }
}

async function main() {
  const { runs, mem, bridge, userAgent, product, v8 } = await runInChromium();
  const names = Object.keys(runs);
  const results = summarize(runs);
  console.log(`mapcrdt benchmark: ${OPS} ops over ${FEATURES} features × 5 keys; medians of ${RUNS} runs (${product}, V8 ${v8}, headless)`);
  console.log(`userAgent: ${userAgent}`);
  console.log();
  for (const l of table(names, results, mem)) console.log(l);
  console.log("\nmapcrdt per run (run 1 first; * a Go collection ran inside the workload; V8's collections are not observable in a page):");
  for (const l of perRunLines(runs.mapcrdt, null)) console.log(l);
  if (mem) {
    console.log(
      `\nmemory: mapcrdt = Go heap retained (after GC) + JS heap delta; Yjs = JS heap delta; Loro = wasm memory growth + JS heap delta` +
        `\n        (JS heap delta: performance.memory.usedJSHeapSize, which counts ArrayBuffers, not wasm memories; a page per system).` +
        `\n        mapcrdt wasm memory growth: ${(mem.mapcrdt.wasmGrowth / 1048576).toFixed(2)} MB (pages the Go runtime reserved; never returned)`,
    );
  }
  if (bridge) {
    console.log();
    for (const l of bridgeLines(bridge)) console.log(l);
  }
  if (args.includes("--json")) console.log(JSON.stringify({ browser: { product, v8, userAgent }, results, mem, bridge }));
}

await main();
