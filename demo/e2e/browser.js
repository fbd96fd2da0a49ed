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
