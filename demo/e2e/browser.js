// Helpers for the browser tests in demo/e2e/*.test.js (run by `make test`).
//
//   import { launchBrowser, startRelay } from './browser.js';
//   const relay = await startRelay();           // go run ./demo on a free port
//   const browser = await launchBrowser();      // Debian's headless chromium
//   const page = await browser.newPage();
//   await page.goto(relay.url + '/');
//   ...
//   await browser.close(); await relay.stop();
//
// playwright-core comes from jsglue/node_modules (there is no root package.json);
// `npx playwright install` cannot download browsers here, so Debian's chromium is used.

import { createRequire } from 'node:module';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

const require = createRequire(new URL('../../jsglue/package.json', import.meta.url));
let playwright;
try {
  playwright = require('playwright-core');
} catch (err) {
  throw new Error(`playwright-core not found in jsglue/node_modules: run (cd jsglue && npm ci)\n${err.message}`);
}
export const { chromium } = playwright;

// Without the background-networking flags chromium keeps trying to reach Google's
// hosts, which this network refuses. --no-sandbox because CI runs as root.
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

/** Path of the chromium binary: $CHROMIUM, /usr/bin/chromium, or `command -v chromium`. */
export function chromiumPath() {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  if (existsSync('/usr/bin/chromium')) return '/usr/bin/chromium';
  try {
    const p = execFileSync('sh', ['-c', 'command -v chromium'], { encoding: 'utf8' }).trim();
    if (p) return p;
  } catch { /* not found */ }
  throw new Error('chromium not found: apt-get install -y --no-install-recommends chromium (or set CHROMIUM=/path)');
}

/**
 * Launch headless chromium; returns a playwright Browser. Each launch gets a fresh,
 * temporary user-data-dir (playwright makes one and removes it on close()).
 * `options` are passed to chromium.launch(); `options.args` are appended to CHROMIUM_ARGS.
 */
export async function launchBrowser(options = {}) {
  const { args = [], ...rest } = options;
  return chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    timeout: 120_000, // a hang guard: playwright's 30 s is near what a loaded machine takes
    args: [...CHROMIUM_ARGS, ...args],
    ...rest,
  });
}

/**
 * Start the demo relay: `go run ./demo -addr 127.0.0.1:0 -data DIR` from the repo root,
 * and wait for it to print `listening on http://127.0.0.1:PORT` (on stdout or stderr).
 *
 * dataDir: where the relay keeps its replicas; default a new temp dir, removed by stop().
 *          Pass the same dir to a second startRelay() to test a restart.
 * args:    extra relay flags. env: extra environment. timeoutMs: startup limit
 *          (includes compiling on a cold cache). command: the argv to run instead of
 *          `go run ./demo` (the -addr/-data flags are appended).
 *
 * Returns { url, port, dataDir, child, logs(), stop() }; url has no trailing slash.
 * stop() sends SIGTERM to the relay's process group (go run and its child), then
 * SIGKILL after 5 s, and resolves when it has exited.
 */
export async function startRelay({
  dataDir,
  args = [],
  env = {},
  timeoutMs = 120_000,
  command = [process.env.GO || 'go', 'run', './demo'],
} = {}) {
  const ownDir = !dataDir;
  if (ownDir) dataDir = mkdtempSync(join(tmpdir(), 'mapcrdt-relay-'));

  const [cmd, ...cmdArgs] = command;
  const child = spawn(cmd, [...cmdArgs, '-addr', '127.0.0.1:0', '-data', dataDir, ...args], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // own process group, so stop() reaches the binary `go run` starts
  });

  let output = '';
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const killGroup = (sig) => {
    try { process.kill(-child.pid, sig); } catch { /* already gone */ }
  };
  // Never leave a relay behind if the test process exits without calling stop().
  const onExit = () => killGroup('SIGKILL');
  process.once('exit', onExit);

  const url = await new Promise((resolve, reject) => {
    let done = false;
    let timer;
    const finish = (err, value) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) {
        killGroup('SIGKILL');
        process.removeListener('exit', onExit);
        if (ownDir) rmSync(dataDir, { recursive: true, force: true });
        reject(err);
      } else resolve(value);
    };
    const onData = (chunk) => {
      output += chunk;
      const m = /listening on (https?:\/\/[^\s"']+)/.exec(output);
      if (m) finish(null, m[1].replace(/\/+$/, ''));
    };
    child.stdout.setEncoding('utf8').on('data', onData);
    child.stderr.setEncoding('utf8').on('data', onData);
    child.once('error', (err) => finish(new Error(`relay: cannot start ${cmd}: ${err.message}`)));
    exited.then(({ code, signal }) =>
      finish(new Error(`relay exited (code ${code}, signal ${signal}) before listening:\n${output}`)));
    timer = setTimeout(() =>
      finish(new Error(`relay did not print "listening on" within ${timeoutMs} ms:\n${output}`)), timeoutMs);
  });

  const groupAlive = () => {
    try { process.kill(-child.pid, 0); return true; } catch { return false; }
  };
  let stopping;
  const stop = () => {
    stopping ??= (async () => {
      // SIGTERM reaches both `go run` and the relay binary; give the relay up to
      // 5 s to shut down cleanly (it may be flushing dataDir), then SIGKILL.
      killGroup('SIGTERM');
      const deadline = Date.now() + 5_000;
      while (groupAlive() && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      if (groupAlive()) killGroup('SIGKILL');
      await exited;
      process.removeListener('exit', onExit);
      if (ownDir) rmSync(dataDir, { recursive: true, force: true });
      return exited;
    })();
    return stopping;
  };

  return {
    url,
    port: Number(new URL(url).port),
    dataDir,
    child,
    logs: () => output,
    stop,
  };
}

// ------------------------------------------------------------------ demo page helpers
//
// For demo/e2e/*.test.js: open the demo page in a fresh browser context, wait for
// conditions on window.mapcrdtDemo (the page's test hook), drive the UI.

import { mkdirSync } from 'node:fs';

export const screenshotDir = join(repoRoot, 'demo/e2e/screenshots');

/**
 * Opens the demo page for map `map` as `name` in a new browser context (its own storage,
 * like another browser), with no tiles. Resolves once the page is online (unless
 * `online: false`). Page errors and console errors are collected in `errors`.
 */
export async function openDemo(browser, relay, { map, name, query = '', online = true, timeout = 30_000 } = {}) {
  const context = await browser.newContext({ viewport: { width: 1200, height: 760 } });
  // Navigations (goto, reload) and actions wait up to 2 min, not playwright's 30 s: a guard
  // against a hang only (until() and waitReady() give their own limits).
  context.setDefaultTimeout(120_000);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  const q = new URLSearchParams({ map, name, tiles: 'none' });
  const url = `${relay.url}/?${q}${query ? '&' + query : ''}`;
  await page.goto(url);
  await waitReady(page, { online, timeout });
  return { context, page, errors, name, close: () => context.close() };
}

/** Waits until the page's hook is ready (and online, unless online is false). */
export async function waitReady(page, { online = true, timeout = 30_000 } = {}) {
  await page.waitForFunction(
    (online) => window.mapcrdtDemo?.ready && (!online || window.mapcrdtDemo.status() === 'online'),
    online,
    { timeout, polling: 50 },
  );
}

/** page.waitForFunction with the suite's defaults; a failure names what was awaited. */
export async function until(page, fn, arg, { timeout = 15_000, what = String(fn) } = {}) {
  try {
    return await page.waitForFunction(fn, arg, { timeout, polling: 50 });
  } catch (err) {
    throw new Error(`timed out after ${timeout} ms waiting for: ${what}\n${err.message}`);
  }
}

/** Saves a screenshot as demo/e2e/screenshots/<name>.png. */
export async function screenshot(page, name) {
  mkdirSync(screenshotDir, { recursive: true });
  const path = join(screenshotDir, `${name}.png`);
  await page.screenshot({ path });
  return path;
}

/** The page position of (fx, fy), fractions of the map's width and height. */
export async function mapPoint(page, fx, fy) {
  const box = await page.locator('#map').boundingBox();
  return { x: Math.round(box.x + box.width * fx), y: Math.round(box.y + box.height * fy) };
}

/** Features as the page renders them (window.mapcrdtDemo.features()). */
export function features(page) {
  return page.evaluate(() => window.mapcrdtDemo.features());
}

export function feature(page, id) {
  return page.evaluate((id) => window.mapcrdtDemo.feature(id) ?? null, id);
}

/** The engine's canonical state text. */
export function engineState(page) {
  return page.evaluate(() => window.mapcrdtDemo.engine.state());
}

/** Clicks the marker tool, then the map at (fx, fy); resolves with the new marker's id. */
export async function drawMarker(page, fx, fy) {
  const before = new Set((await features(page)).map((f) => f.id));
  await page.click('#tool-marker');
  const p = await mapPoint(page, fx, fy);
  await page.mouse.click(p.x, p.y);
  const handle = await until(
    page,
    (before) => window.mapcrdtDemo.features().find((f) => !before.includes(f.id) && f.type === 'marker')?.id,
    [...before],
    { what: 'the new marker' },
  );
  return handle.jsonValue();
}

/** Selects a feature by clicking it, then renames it through the form. */
export async function renameViaForm(page, id, name) {
  await clickFeature(page, id);
  await until(page, (id) => window.mapcrdtDemo.selected() === id, id, { what: `selection of ${id}` });
  await page.fill('#feature-name', name);
  await page.click('#feature-apply');
  await until(page, ([id, name]) => window.mapcrdtDemo.feature(id)?.name === name, [id, name], { what: `name ${name}` });
}

/** Clicks on a feature's element (a marker's pin, a path's stroke near its first vertex). */
export async function clickFeature(page, id) {
  const el = page.locator(`.leaflet-marker-icon[data-feature-id="${id}"]`);
  if ((await el.count()) > 0) {
    await el.click();
    return;
  }
  const p = await page.evaluate((id) => {
    const f = window.mapcrdtDemo.feature(id);
    const first = f.type === 'polygon' ? f.latlngs[0][0] : f.latlngs[0];
    return window.mapcrdtDemo.screenPoint(id, first);
  }, id);
  await page.mouse.click(p.x, p.y);
}

/** Drags a marker's pin by (dx, dy) pixels with the mouse. */
export async function dragMarker(page, id, dx, dy) {
  const box = await page.locator(`.leaflet-marker-icon[data-feature-id="${id}"]`).boundingBox();
  const x = box.x + box.width / 2;
  const y = box.y + box.height / 3;
  await page.mouse.move(x, y);
  await page.mouse.down();
  await page.mouse.move(x + dx / 2, y + dy / 2, { steps: 5 });
  await page.mouse.move(x + dx, y + dy, { steps: 5 });
  await page.mouse.up();
}

/** Checks or unchecks the offline switch and waits for the status it gives. */
export async function setOffline(page, offline) {
  if (offline) await page.check('#offline');
  else await page.uncheck('#offline');
  const want = offline ? 'offline' : 'online';
  await until(page, (want) => window.mapcrdtDemo.status() === want && document.querySelector('#status').textContent === want, want, {
    what: `status ${want}`,
  });
}

/** Waits until every page's engine holds the same state; returns it. */
export async function converged(pages, { timeout = 15_000 } = {}) {
  const deadline = Date.now() + timeout;
  let states;
  for (;;) {
    states = await Promise.all(pages.map(engineState));
    if (states.every((s) => s === states[0])) return states[0];
    if (Date.now() > deadline) throw new Error(`states did not converge within ${timeout} ms:\n${states.join('\n---\n')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A fresh map name for one test. */
export function mapName(prefix) {
  return `${prefix}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}`;
}
