// Runs a test page in headless Debian chromium (through playwright-core): a static server on
// 127.0.0.1 serves jsglue/ (and node_modules), "/" is the page, which sets window.result.
// Without chromium or playwright-core the test is skipped, except under CI (CI=true), where
// it fails: .ci/run installs both.

import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../", import.meta.url));
const types = { ".js": "text/javascript", ".wasm": "application/wasm", ".html": "text/html", ".css": "text/css" };

function chromiumPath() {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  if (existsSync("/usr/bin/chromium")) return "/usr/bin/chromium";
  try {
    return execFileSync("sh", ["-c", "command -v chromium"], { encoding: "utf8" }).trim() || null;
  } catch {
    return null;
  }
}

function skip(t, why) {
  if (process.env.CI) throw new Error(`${why}: a browser test cannot be skipped in CI`);
  t.skip(why);
}

/**
 * Loads page in chromium and waits for window.result (at most 120 s). Returns {result,
 * errors} (the page's uncaught errors, a microtask after the result), or undefined when the
 * test was skipped. drive, if given, is then called with the playwright page and a function
 * giving chromium's counters (Performance.getMetrics: LayoutCount …); what it returns is
 * the result's `driven`.
 */
export async function inChromium(t, page, drive) {
  const exe = chromiumPath();
  if (!exe) return skip(t, "chromium not installed");
  let chromium;
  try {
    ({ chromium } = (await import("playwright-core")).default);
  } catch {
    return skip(t, "playwright-core not installed (npm ci in jsglue)");
  }
  const server = createServer(async (req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    if (path === "/") return res.writeHead(200, { "content-type": "text/html" }).end(page);
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
  // The timeouts are guards against a hang only: on a loaded 2-core machine the first test
  // here took 22 s, launch and load included, where playwright allows 30 s per step.
  const browser = await chromium.launch({
    executablePath: exe,
    headless: true,
    timeout: 120_000,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  try {
    const p = await browser.newPage();
    p.setDefaultTimeout(120_000);
    const errors = [];
    p.on("pageerror", (e) => errors.push(String(e)));
    await p.goto(`http://127.0.0.1:${server.address().port}/`);
    await p.waitForFunction(() => window.result !== undefined, null, { timeout: 120_000 });
    const result = await p.evaluate(() => window.result);
    let driven;
    if (drive) {
      const cdp = await p.context().newCDPSession(p);
      await cdp.send("Performance.enable");
      const metrics = async () => Object.fromEntries((await cdp.send("Performance.getMetrics")).metrics.map((m) => [m.name, m.value]));
      driven = await drive(p, metrics);
    }
    await new Promise((resolve) => setTimeout(resolve, 50)); // errors reported in a microtask
    return { result, errors, driven };
  } finally {
    await browser.close();
    server.close();
  }
}
