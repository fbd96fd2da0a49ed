// The same module in a browser: headless Debian chromium (through playwright-core) loads
// index.js as an ES module from a static server, which fetches wasm_exec.js and streams
// mapcrdt.wasm (served as application/wasm). Skipped when chromium is not installed.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../", import.meta.url));
const types = { ".js": "text/javascript", ".wasm": "application/wasm", ".html": "text/html" };

function chromiumPath() {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  if (existsSync("/usr/bin/chromium")) return "/usr/bin/chromium";
  try {
    return execFileSync("sh", ["-c", "command -v chromium"], { encoding: "utf8" }).trim() || null;
  } catch {
    return null;
  }
}

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
  const exe = chromiumPath();
  if (!exe) return t.skip("chromium not installed");
  let chromium;
  try {
    ({ chromium } = (await import("playwright-core")).default);
  } catch {
    return t.skip("playwright-core not installed (npm ci in jsglue)");
  }
  const server = createServer(async (req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    if (path === "/") {
      res.writeHead(200, { "content-type": "text/html" }).end(page);
      return;
    }
    const file = normalize(join(root, path));
    if (!file.startsWith(root)) return res.writeHead(403).end();
    try {
      const body = await readFile(file);
      res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream" }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const browser = await chromium.launch({
    executablePath: exe,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  try {
    const p = await browser.newPage();
    const errors = [];
    p.on("pageerror", (e) => errors.push(String(e)));
    await p.goto(`http://127.0.0.1:${server.address().port}/`);
    await p.waitForFunction(() => window.result !== undefined, null, { timeout: 60_000 });
    const result = await p.evaluate(() => window.result);
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
  } finally {
    await browser.close();
    server.close();
  }
});
