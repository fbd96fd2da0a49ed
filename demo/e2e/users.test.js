// Browser tests of the demo as its users meet it: the network going away under an open page,
// a connection dying without closing, the relay restarting under open pages, a clock minutes
// off, the page failing to start, drawing into a hidden layer, the feature form while a peer
// edits the same feature (a name on several lines too), moves it to another datalayer or
// deletes it, a peer's deletion under a vertex drag, an undo pressed during a drag or while
// a line is drawn. Where pages converge, every page's
// map — its Leaflet layers and their labels, not only its engine — must show what the
// engine's state() holds
// (sameEverywhere, drawnVsEngine).
//
// Run: make build && node --test demo/e2e/users.test.js

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  clickFeature,
  converged,
  drawMarker,
  features,
  launchBrowser,
  mapName,
  mapPoint,
  openDemo,
  startRelay,
  until,
  waitReady,
} from './browser.js';

const close = (...vs) => Promise.all(vs.map((v) => v.close().catch(() => {})));

// Chromium logs each failed WebSocket connection as a console error of its own; a page
// retrying while the network or the relay is away makes some. Every other error counts.
const refused = /^console: WebSocket connection to '[^']+' failed: Error in connection establishment: net::ERR_(INTERNET_DISCONNECTED|CONNECTION_REFUSED)$/;

function assertNoErrors(...views) {
  for (const v of views) assert.deepEqual(v.errors.filter((e) => !refused.test(e)), [], `errors in ${v.name}'s page`);
}

/**
 * The differences between what a page draws and what its engine holds: every feature of a
 * shown datalayer drawn once, with the engine's datalayer, geometry (to 1e-6), name, color,
 * and its label's text in the DOM; nothing else drawn. [] when they agree.
 */
function drawnVsEngine(page) {
  return page.evaluate(() => {
    const d = window.mapcrdtDemo;
    const canon = (v) => {
      if (typeof v === 'number') return String(Math.round(v * 1e6) / 1e6);
      if (v === null || typeof v !== 'object') return JSON.stringify(v);
      if (Array.isArray(v)) return '[' + v.map(canon).join(',') + ']';
      return '{' + Object.keys(v).sort().map((k) => JSON.stringify(k) + ':' + canon(v[k])).join(',') + '}';
    };
    const shown = new Set(d.datalayers().filter((l) => l.visible).map((l) => l.id));
    const want = new Map();
    for (const o of JSON.parse(d.engine.state())) {
      if (o.subject !== 'feature' || !shown.has(o.metadata.layerId)) continue;
      const p = o.value.properties ?? {};
      want.set(o.metadata.id, {
        layerId: o.metadata.layerId,
        geometry: canon(o.value.geometry),
        name: typeof p.name === 'string' ? p.name : '',
        color: p._umap_options?.color || '#3388ff',
      });
    }
    const diffs = [];
    const got = new Map();
    for (const f of d.controller.features()) {
      if (!f.visible) continue;
      const label = f.layer.getTooltip()?.getElement()?.textContent ?? '';
      got.set(f.id, { layerId: f.layerId, geometry: canon(f.layer.toGeoJSON(6).geometry), name: label, color: f.color });
    }
    for (const [id, w] of want) {
      const g = got.get(id);
      if (!g) diffs.push(`${id}: in the engine, not drawn`);
      else for (const k of Object.keys(w)) if (w[k] !== g[k]) diffs.push(`${id}: ${k} ${w[k]} in the engine, ${g[k]} drawn`);
    }
    for (const id of got.keys()) if (!want.has(id)) diffs.push(`${id}: drawn, not in the engine`);
    return diffs;
  });
}

/** Waits until the pages' engines agree, then checks each page draws that state. */
async function sameEverywhere(views, opts) {
  const state = await converged(views.map((v) => v.page), opts);
  for (const v of views) assert.deepEqual(await drawnVsEngine(v.page), [], `${v.name}'s map and engine differ`);
  return JSON.parse(state);
}

const featureIn = (state, id) => state.find((o) => o.subject === 'feature' && o.metadata.id === id);

/**
 * What a page's map holds that it should not: a feature layer the helper does not know, a
 * vertex handle of a layer off the map or of an editor disabled, a layer outside the
 * features and edit layers. [] when clean.
 */
function ghosts(page) {
  return page.evaluate(() => {
    const d = window.mapcrdtDemo;
    const map = d.map;
    const out = [];
    map.eachLayer((l) => {
      if (l instanceof L.LayerGroup || l instanceof L.Renderer || l instanceof L.Tooltip || l instanceof L.TileLayer) return;
      if (l === map.editTools.forwardLineGuide || l === map.editTools.backwardLineGuide) return;
      if (l instanceof L.Editable.VertexMarker || l instanceof L.Editable.MiddleMarker) {
        if (!l.editor.feature._map) out.push('a vertex handle of a layer off the map');
        else if (!l.editor.enabled()) out.push('a vertex handle of a disabled editor');
        else if (d.controller.idOf(l.editor.feature) === undefined) out.push('a vertex handle of an unknown layer');
      } else if (d.controller.idOf(l) === undefined) {
        out.push('a layer the helper does not know');
      }
    });
    return out;
  });
}

/** Presses the mouse on vertex i of a polygon's outer ring and moves it by (dx, dy), not released. */
async function grabVertex(page, id, i, dx, dy) {
  const p = await page.evaluate(([id, i]) => {
    const d = window.mapcrdtDemo;
    return d.screenPoint(id, d.feature(id).latlngs[0][i]);
  }, [id, i]);
  await page.mouse.move(p.x, p.y);
  await page.mouse.down();
  await page.mouse.move(p.x + dx, p.y + dy, { steps: 4 });
  return p;
}

// The suite's timeout bounds its tests together (as in demo.test.js): a hang guard only.
describe('demo: what users meet', { timeout: 600_000 }, () => {
  let relay;
  let browser;

  before(async () => {
    [relay, browser] = await Promise.all([startRelay(), launchBrowser()]);
  });

  after(async () => {
    await browser?.close();
    await relay?.stop();
  });

  test('the browser losing the network: the page says so, edits made meanwhile reach the other page when it is back', async () => {
    const map = mapName('network');
    const A = await openDemo(browser, relay, { map, name: 'Alice' });
    const B = await openDemo(browser, relay, { map, name: 'Bob' });
    try {
      await A.context.setOffline(true);
      // The socket stays open in Chromium (what is sent on it is held): the page must not
      // keep saying "online".
      await until(A.page, () => window.mapcrdtDemo.status() === 'no network' && document.querySelector('#status').textContent === 'no network', null, {
        what: 'A saying "no network"',
        timeout: 5_000,
      });
      const id = await drawMarker(A.page, 0.3, 0.3);
      await A.page.evaluate(() => window.mapcrdtDemo.rename('seedPin1', 'renamed offline'));
      await B.page.evaluate(() => window.mapcrdtDemo.rename('seedArea', 'renamed by Bob'));
      assert.equal(await A.page.evaluate(() => window.mapcrdtDemo.status()), 'no network', 'still no network');

      await A.context.setOffline(false);
      await until(A.page, () => window.mapcrdtDemo.status() === 'online', null, { what: 'A online again' });
      const state = await sameEverywhere([A, B]);
      assert.ok(featureIn(state, id), 'A’s marker reached B');
      assert.equal(featureIn(state, 'seedPin1').value.properties.name, 'renamed offline');
      assert.equal(featureIn(state, 'seedArea').value.properties.name, 'renamed by Bob');
      assertNoErrors(A, B);
    } finally {
      await close(A, B);
    }
  });

  for (const [what, missing, says] of [
    ['its engine (mapcrdt.wasm not built)', '**/jsglue/mapcrdt.wasm', /mapcrdt\.wasm/],
    ['Leaflet (jsglue/node_modules not installed)', '**/leaflet/dist/leaflet.js', /featureGroup/],
  ]) {
    test(`a page that cannot start for want of ${what} says so, instead of "connecting" for ever`, async () => {
      const context = await browser.newContext();
      try {
        const page = await context.newPage();
        await page.route(missing, (route) => route.fulfill({ status: 404, body: 'not found' }));
        await page.goto(`${relay.url}/?tiles=none&map=${mapName('nostart')}`);
        await until(page, () => document.querySelector('#status').textContent === 'error' && !document.querySelector('#fatal').hidden, null, {
          what: 'the page saying it failed',
          timeout: 10_000,
        });
        const text = await page.textContent('#fatal');
        assert.match(text, says);
        assert.match(text, /make demo/);
      } finally {
        await context.close();
      }
    });
  }

  test('a feature drawn while its layer is hidden here shows the layer; an empty layer name is not kept in the field', async () => {
    const map = mapName('hidden');
    const A = await openDemo(browser, relay, { map, name: 'Alice' });
    try {
      await A.page.uncheck('#layers li[data-layer-id="default"] .layer-visible');
      await until(A.page, () => !window.mapcrdtDemo.feature('seedPin1').visible, null, { what: 'the layer hidden' });
      const id = await drawMarker(A.page, 0.5, 0.5);
      await until(A.page, (id) => window.mapcrdtDemo.feature(id).visible && window.mapcrdtDemo.selected() === id, id, {
        what: 'the new marker drawn and selected',
        timeout: 5_000,
      });
      assert.equal(await A.page.isChecked('#layers li[data-layer-id="default"] .layer-visible'), true);
      assert.ok((await features(A.page)).every((f) => f.visible), 'the layer’s other features shown too');

      await A.page.fill('#layers li[data-layer-id="default"] .layer-name', '  ');
      await A.page.press('#layers li[data-layer-id="default"] .layer-name', 'Enter');
      assert.equal(await A.page.inputValue('#layers li[data-layer-id="default"] .layer-name'), 'Layer 1');
      assert.deepEqual(await drawnVsEngine(A.page), []);
      assertNoErrors(A);
    } finally {
      await close(A);
    }
  });
  test('the feature form: Apply writes what the user changed, not what a peer changed since; a peer’s edit keeps what is being typed', async () => {
    const map = mapName('form');
    const A = await openDemo(browser, relay, { map, name: 'Alice' });
    const B = await openDemo(browser, relay, { map, name: 'Bob' });
    const nameIn = (page, want) =>
      until(page, (want) => window.mapcrdtDemo.feature('seedPin1').name === want, want, { what: `seedPin1 named ${want}` });
    try {
      // B opens the form on the pin and clicks into the name; A renames the pin meanwhile;
      // B then only picks a color and applies: A's name must stay.
      await clickFeature(B.page, 'seedPin1');
      await until(B.page, () => window.mapcrdtDemo.selected() === 'seedPin1', null, { what: 'selection in B' });
      await B.page.click('#feature-name');
      await A.page.evaluate(() => window.mapcrdtDemo.rename('seedPin1', 'named by Alice'));
      await nameIn(B.page, 'named by Alice');
      await B.page.locator('#feature-color').fill('#ff0000');
      await B.page.click('#feature-apply');
      let state = await sameEverywhere([A, B]);
      let pin = featureIn(state, 'seedPin1').value.properties;
      assert.equal(pin.name, 'named by Alice', 'B’s Apply wrote back the name its form showed before');
      assert.equal(pin._umap_options.color, '#ff0000');
      assert.equal(await B.page.inputValue('#feature-name'), 'named by Alice');

      // B types a name and picks a color, not applied yet; A moves the pin and renames it.
      // B's fields keep what B entered, and Apply writes both.
      await B.page.fill('#feature-name', 'typed by Bob');
      await B.page.locator('#feature-color').fill('#00aa00');
      await A.page.evaluate(() => {
        window.mapcrdtDemo.dragMarkerTo('seedPin1', 48.852, 2.349);
        window.mapcrdtDemo.rename('seedPin1', 'Alice again');
      });
      await nameIn(B.page, 'Alice again');
      assert.equal(await B.page.inputValue('#feature-name'), 'typed by Bob');
      assert.equal(await B.page.inputValue('#feature-color'), '#00aa00');
      await B.page.click('#feature-apply');
      state = await sameEverywhere([A, B]);
      pin = featureIn(state, 'seedPin1').value;
      assert.equal(pin.properties.name, 'typed by Bob');
      assert.equal(pin.properties._umap_options.color, '#00aa00');
      assert.deepEqual(pin.geometry.coordinates, [2.349, 48.852]);
      assertNoErrors(A, B);
    } finally {
      await close(A, B);
    }
  });
  test('the feature form: a name the field cannot show as it is (line breaks) is not written back by Apply, and still follows a peer', async () => {
    const map = mapName('formbreaks');
    const A = await openDemo(browser, relay, { map, name: 'Alice' });
    const B = await openDemo(browser, relay, { map, name: 'Bob' });
    const nameIn = (page, want) =>
      until(page, (want) => window.mapcrdtDemo.feature('seedPin1').name === want, want, { what: `seedPin1 named ${JSON.stringify(want)}` });
    try {
      // A names the pin on two lines (a GeoJSON import can); B's text field shows it on one.
      await A.page.evaluate(() => window.mapcrdtDemo.rename('seedPin1', 'line 1\nline 2'));
      await nameIn(B.page, 'line 1\nline 2');
      await clickFeature(B.page, 'seedPin1');
      await until(B.page, () => window.mapcrdtDemo.selected() === 'seedPin1', null, { what: 'selection in B' });
      assert.equal(await B.page.inputValue('#feature-name'), 'line 1line 2');
      // B only picks a color: the name is not B's edit.
      await B.page.locator('#feature-color').fill('#ff0000');
      await B.page.click('#feature-apply');
      let state = await sameEverywhere([A, B]);
      let pin = featureIn(state, 'seedPin1').value.properties;
      assert.equal(pin._umap_options.color, '#ff0000');
      assert.equal(pin.name, 'line 1\nline 2', 'B’s Apply wrote the name as its field showed it');
      // Nor is it a pending edit that keeps the field from following A's next rename.
      await A.page.evaluate(() => window.mapcrdtDemo.rename('seedPin1', 'one line'));
      await nameIn(B.page, 'one line');
      await until(B.page, () => document.querySelector('#feature-name').value === 'one line', null, { what: 'B’s field following A' });
      assertNoErrors(A, B);
    } finally {
      await close(A, B);
    }
  });

  test('a connection that dies without closing is noticed and made again; edits made meanwhile arrive', async () => {
    const map = mapName('deadlink');
    const B = await openDemo(browser, relay, { map, name: 'Bob' });
    // A's page, with its WebSocket passed through a route that can go silent both ways
    // without closing: a connection dead on the way (a laptop waking, a dropped NAT entry).
    const context = await browser.newContext({ viewport: { width: 1200, height: 760 } });
    const A = { name: 'Alice', context, errors: [], close: () => context.close() };
    let connections = 0;
    let silent = 0; // the connection (1-based) that goes silent; 0: none
    await context.routeWebSocket(/\/ws\/sync\//, (client) => {
      const n = ++connections;
      const server = client.connectToServer();
      client.onMessage((m) => n !== silent && server.send(m));
      server.onMessage((m) => n !== silent && client.send(m));
    });
    try {
      A.page = await context.newPage();
      A.page.on('pageerror', (e) => A.errors.push(`pageerror: ${e.message}`));
      A.page.on('console', (m) => m.type() === 'error' && A.errors.push(`console: ${m.text()}`));
      await A.page.goto(`${relay.url}/?${new URLSearchParams({ map, name: 'Alice', tiles: 'none', keepalive: '1000' })}`);
      await waitReady(A.page);
      assert.equal(connections, 1);

      silent = 1;
      await A.page.evaluate(() => window.mapcrdtDemo.rename('seedPin1', 'sent into the dead link'));
      await B.page.evaluate(() => window.mapcrdtDemo.rename('seedArea', 'renamed by Bob'));
      // Only the page's keepalive (1 s here) can notice: the route keeps A's socket open, and
      // the relay's own ping would close its side after 45 s. The suite's 15 s is a hang guard:
      // 5 s was once too short with the machine loaded (two cores, builds running).
      // Noticing is making a new connection, counted here: the status says "connecting" only
      // until the relay answers it, a few ms on this machine, which a poll of the page missed
      // once with the machine loaded (the suite's two files at once).
      for (const deadline = Date.now() + 15_000; connections < 2; await new Promise((r) => setTimeout(r, 20))) {
        if (Date.now() > deadline) assert.fail('A did not notice the dead link within 15 s (a hang guard)');
      }
      await until(A.page, () => window.mapcrdtDemo.status() === 'online', null, { what: 'A online again' });
      const state = await sameEverywhere([A, B]);
      assert.equal(featureIn(state, 'seedPin1').value.properties.name, 'sent into the dead link');
      assert.equal(featureIn(state, 'seedArea').value.properties.name, 'renamed by Bob');
      assertNoErrors(A, B);
    } finally {
      await close(A, B);
    }
  });
  test('the relay restarting under open pages: they come back on their own with the edits made meanwhile; a page opened later gets it all from the relay’s disk', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'mapcrdt-restart-'));
    let own = await startRelay({ dataDir });
    const again = () => startRelay({ dataDir, args: ['-addr', `127.0.0.1:${own.port}`] }); // the pages' address
    const map = mapName('restart');
    const A = await openDemo(browser, own, { map, name: 'Alice' });
    const B = await openDemo(browser, own, { map, name: 'Bob' });
    let C;
    try {
      const id = await drawMarker(A.page, 0.3, 0.3);
      await sameEverywhere([A, B]);

      await own.stop();
      for (const v of [A, B]) await until(v.page, () => window.mapcrdtDemo.status() === 'connecting', null, { what: `${v.name} connecting` });
      await A.page.evaluate(() => window.mapcrdtDemo.rename('seedPin1', 'renamed during the outage'));
      await B.page.evaluate((id) => window.mapcrdtDemo.dragMarkerTo(id, 48.856, 2.341), id);
      own = await again();
      for (const v of [A, B]) await until(v.page, () => window.mapcrdtDemo.status() === 'online', null, { what: `${v.name} online`, timeout: 30_000 });
      const state = await sameEverywhere([A, B]);
      assert.equal(featureIn(state, 'seedPin1').value.properties.name, 'renamed during the outage');
      assert.deepEqual(featureIn(state, id).value.geometry.coordinates, [2.341, 48.856]);
      assertNoErrors(A, B);
      const text = await A.page.evaluate(() => window.mapcrdtDemo.engine.state());

      await close(A, B);
      await own.stop();
      own = await again();
      C = await openDemo(browser, own, { map, name: 'Carol' });
      // Online comes with the JoinResponse, before the catch-up the page asks for then:
      // one page alone has converged with itself at once.
      await until(C.page, (t) => window.mapcrdtDemo.engine.state() === t, text, { what: 'Carol caught up from the relay', timeout: 30_000 });
      assert.deepEqual(await sameEverywhere([C]), state);
      assertNoErrors(C);
    } finally {
      await close(A, B, ...(C ? [C] : []));
      await own.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
  test('a page whose clock is minutes ahead: the relay’s refusal is shown, and the page retries ever more slowly', async () => {
    const map = mapName('drift');
    const context = await browser.newContext();
    await context.clock.install({ time: Date.now() + 180_000 }); // 3 min ahead; the engine refuses past 60 s
    const A = { name: 'Alice', context, errors: [], close: () => context.close() };
    try {
      A.page = await context.newPage();
      let refusals = 0;
      A.page.on('console', (m) => {
        if (m.type() === 'warning' && m.text().includes('closed the connection: 1008 clock_drift')) refusals++;
      });
      await A.page.goto(`${relay.url}/?${new URLSearchParams({ map, name: 'Alice', tiles: 'none' })}`);
      await waitReady(A.page);
      await A.page.evaluate(() => window.mapcrdtDemo.rename('seedPin1', 'from the future'));
      await until(A.page, () => !document.querySelector('#conn-note').hidden, null, { what: 'the refusal shown' });
      assert.match(await A.page.textContent('#conn-note'), /clock_drift.*clock is more than a minute off/);
      // Refused again and again: the backoff grows instead of starting over at each join.
      await until(A.page, () => window.mapcrdtDemo.retries() >= 3, null, { what: 'three refusals in a row', timeout: 10_000 });
      assert.ok(refusals >= 3, `refusals seen: ${refusals}`);
    } finally {
      await context.close();
    }
  });
  test('a page whose clock is minutes behind: the edits it refuses are said to be refused', async () => {
    const map = mapName('behind');
    const B = await openDemo(browser, relay, { map, name: 'Bob' });
    const context = await browser.newContext();
    await context.clock.install({ time: Date.now() - 180_000 });
    try {
      const page = await context.newPage();
      await page.goto(`${relay.url}/?${new URLSearchParams({ map, name: 'Alice', tiles: 'none' })}`);
      await waitReady(page);
      await B.page.evaluate(() => window.mapcrdtDemo.rename('seedPin1', 'from the present'));
      await until(page, () => !document.querySelector('#conn-note').hidden, null, { what: 'the refusal shown' });
      assert.match(await page.textContent('#conn-note'), /refused \(clock_drift\).*clock is more than a minute off/);
      assert.equal(await page.evaluate(() => window.mapcrdtDemo.feature('seedPin1').name), 'Notre-Dame');
    } finally {
      await context.close();
      await close(B);
    }
  });

  test('the feature form and vertex editing while a peer moves the feature to another datalayer, makes it a point, deletes it', async () => {
    const map = mapName('formmoved');
    const A = await openDemo(browser, relay, { map, name: 'Alice' });
    const B = await openDemo(browser, relay, { map, name: 'Bob' });
    try {
      await clickFeature(B.page, 'seedArea');
      await until(B.page, () => window.mapcrdtDemo.selected() === 'seedArea', null, { what: 'selection in B' });
      await B.page.fill('#feature-name', 'typed by Bob');

      // A moves the polygon to a datalayer of its own, as uMap does: one batch, the feature
      // made in the new datalayer and deleted from the old one.
      await A.page.evaluate(() => {
        const e = window.mapcrdtDemo.engine;
        e.batch(() => {
          e.upsert('datalayer', { id: 'L2' }, { name: 'Layer 2' });
          const meta = { id: 'seedArea', layerId: 'default', featureType: 'polygon' };
          e.upsert('feature', { ...meta, layerId: 'L2' }, e.get('feature', meta));
          e.delete('feature', meta);
        });
        window.mapcrdtDemo.rename('seedPin1', 'sends it');
      });
      await until(B.page, () => window.mapcrdtDemo.feature('seedArea')?.layerId === 'L2', null, { what: 'the move in B' });
      // B's form is still on it, with what B typed, and its vertices still editable.
      const inB = await B.page.evaluate(() => ({
        selected: window.mapcrdtDemo.selected(),
        formShown: !document.querySelector('#feature-form').hidden,
        layer: document.querySelector('#feature-layer').textContent,
        editing: window.mapcrdtDemo.controller.layerFor('seedArea').editEnabled(),
      }));
      assert.deepEqual(inB, { selected: 'seedArea', formShown: true, layer: 'Layer 2', editing: true });
      assert.equal(await B.page.inputValue('#feature-name'), 'typed by Bob');
      assert.deepEqual(await ghosts(B.page), []);
      await B.page.click('#feature-apply');
      let state = await sameEverywhere([A, B]);
      assert.equal(featureIn(state, 'seedArea').metadata.layerId, 'L2');
      assert.equal(featureIn(state, 'seedArea').value.properties.name, 'typed by Bob');

      // A makes it a point: still selected in B, a marker now, no vertex handle left.
      await A.page.evaluate(() => {
        window.mapcrdtDemo.engine.update('feature', { id: 'seedArea', layerId: 'L2', featureType: 'polygon' }, 'geometry', { type: 'Point', coordinates: [2.35, 48.855] });
        window.mapcrdtDemo.rename('seedPin1', 'sends the point');
      });
      await until(B.page, () => window.mapcrdtDemo.feature('seedArea')?.type === 'marker', null, { what: 'the point in B' });
      assert.equal(await B.page.evaluate(() => window.mapcrdtDemo.selected()), 'seedArea');
      assert.deepEqual(await ghosts(B.page), []);

      // B drags the point; A renames it meanwhile: held under the drag, A's name is drawn at
      // the release, in the map and in B's form.
      const box = await B.page.locator('.leaflet-marker-icon[data-feature-id="seedArea"]').boundingBox();
      const at = { x: box.x + box.width / 2, y: box.y + box.height / 3 };
      await B.page.mouse.move(at.x, at.y);
      await B.page.mouse.down();
      await B.page.mouse.move(at.x + 40, at.y + 30, { steps: 4 });
      await A.page.evaluate(() => {
        window.mapcrdtDemo.engine.update('feature', { id: 'seedArea', layerId: 'L2', featureType: 'marker' }, 'properties.name', 'renamed by Alice');
        window.mapcrdtDemo.rename('seedPin1', 'sends the name');
      });
      await until(B.page, () => window.mapcrdtDemo.feature('seedPin1').name === 'sends the name', null, { what: 'A’s edits in B' });
      await B.page.mouse.move(at.x + 60, at.y + 10, { steps: 4 });
      await B.page.mouse.up();
      await until(B.page, () => window.mapcrdtDemo.feature('seedArea').name === 'renamed by Alice', null, { what: 'the name drawn in B' });
      await until(B.page, () => document.querySelector('#feature-name').value === 'renamed by Alice', null, { what: 'the name in B’s form' });

      // A deletes it: B's form closes.
      await A.page.evaluate(() => window.mapcrdtDemo.deleteFeature('seedArea'));
      await until(B.page, () => !window.mapcrdtDemo.feature('seedArea'), null, { what: 'the deletion in B' });
      assert.equal(await B.page.evaluate(() => window.mapcrdtDemo.selected()), null);
      assert.equal(await B.page.evaluate(() => document.querySelector('#feature-form').hidden), true);
      state = await sameEverywhere([A, B]);
      assert.equal(featureIn(state, 'seedArea'), undefined);
      assert.deepEqual([...(await ghosts(A.page)), ...(await ghosts(B.page))], []);
      assertNoErrors(A, B);
    } finally {
      await close(A, B);
    }
  });

  test('a vertex dragged while a peer deletes its datalayer; an undo pressed during a marker drag and while a line is drawn; a polygon drawn while a peer deletes its datalayer', async () => {
    const map = mapName('midinteraction');
    const A = await openDemo(browser, relay, { map, name: 'Alice' });
    const B = await openDemo(browser, relay, { map, name: 'Bob' });
    try {
      // B drags a vertex of the polygon; A deletes the datalayer (and its features) meanwhile.
      await clickFeature(B.page, 'seedArea');
      await until(B.page, () => window.mapcrdtDemo.selected() === 'seedArea', null, { what: 'selection in B' });
      const grab = await grabVertex(B.page, 'seedArea', 2, 10, -10);
      await A.page.click('#layers li[data-layer-id="default"] .layer-delete');
      await until(B.page, () => !window.mapcrdtDemo.feature('seedArea'), null, { what: 'the deletion in B' });
      await B.page.mouse.move(grab.x + 40, grab.y - 60, { steps: 4 });
      await B.page.mouse.up();
      let state = await sameEverywhere([A, B]);
      assert.deepEqual(state.filter((o) => o.subject === 'feature'), []);
      assert.equal(await B.page.evaluate(() => window.mapcrdtDemo.selected()), null);
      assert.deepEqual([...(await ghosts(A.page)), ...(await ghosts(B.page))], []);
      await A.page.click('#undo');
      await until(B.page, () => !!window.mapcrdtDemo.feature('seedArea'), null, { what: 'the undo in B' });
      await sameEverywhere([A, B]);

      // B adds a marker, then drags the pin, pressing Ctrl+Z during the drag: the marker
      // goes; the pin ends where B let go, in both.
      const added = await B.page.evaluate(() => window.mapcrdtDemo.addMarker(48.851, 2.343, { name: 'undone' }));
      await until(A.page, (id) => !!window.mapcrdtDemo.feature(id), added, { what: 'B’s marker in A' });
      const box = await B.page.locator('.leaflet-marker-icon[data-feature-id="seedPin1"]').boundingBox();
      const from = { x: box.x + box.width / 2, y: box.y + box.height / 3 };
      const pinAt = await B.page.evaluate(() => window.mapcrdtDemo.screenPoint('seedPin1'));
      await B.page.mouse.move(from.x, from.y);
      await B.page.mouse.down();
      await B.page.mouse.move(from.x + 40, from.y + 20, { steps: 4 });
      await B.page.keyboard.press('Control+z');
      await until(B.page, (id) => !window.mapcrdtDemo.feature(id), added, { what: 'the undo during the drag' });
      await B.page.mouse.move(from.x + 80, from.y + 40, { steps: 4 });
      await B.page.mouse.up();
      const release = { x: pinAt.x + 80, y: pinAt.y + 40 };
      await until(B.page, (want) => {
        const p = window.mapcrdtDemo.screenPoint('seedPin1');
        return Math.hypot(p.x - want.x, p.y - want.y) <= 2;
      }, release, { what: 'the pin where B let go' });
      state = await sameEverywhere([A, B]);
      assert.equal(featureIn(state, added), undefined);

      // B draws a line: two clicks, Ctrl+Z (undoes the pin's drag), a third click, Enter.
      await B.page.click('#tool-line');
      for (const [fx, fy] of [[0.3, 0.7], [0.4, 0.75]]) {
        const p = await mapPoint(B.page, fx, fy);
        await B.page.mouse.click(p.x, p.y);
      }
      await B.page.keyboard.press('Control+z');
      await until(B.page, (want) => {
        const p = window.mapcrdtDemo.screenPoint('seedPin1');
        return Math.hypot(p.x - want.x, p.y - want.y) <= 2;
      }, pinAt, { what: 'the pin back where it was' });
      const third = await mapPoint(B.page, 0.5, 0.7);
      await B.page.mouse.click(third.x, third.y);
      await B.page.keyboard.press('Enter');
      await until(B.page, () => window.mapcrdtDemo.features().some((f) => f.type === 'polyline'), null, { what: 'the line' });
      state = await sameEverywhere([A, B]);
      const lines = state.filter((o) => o.subject === 'feature' && o.value.geometry.type === 'LineString');
      assert.equal(lines.length, 1);
      assert.equal(lines[0].value.geometry.coordinates.length, 3);
      assert.deepEqual([...(await ghosts(A.page)), ...(await ghosts(B.page))], []);

      // B draws a polygon; A deletes B's active datalayer between two clicks (every datalayer
      // there is): finished, the polygon goes to a datalayer alive, drawn in both.
      await B.page.click('#tool-polygon');
      for (const [fx, fy] of [[0.6, 0.6], [0.7, 0.6]]) {
        const p = await mapPoint(B.page, fx, fy);
        await B.page.mouse.click(p.x, p.y);
      }
      const active = await B.page.evaluate(() => window.mapcrdtDemo.datalayers().find((l) => l.active).id);
      await A.page.click(`#layers li[data-layer-id="${active}"] .layer-delete`);
      await until(B.page, (id) => !window.mapcrdtDemo.datalayers().some((l) => l.id === id), active, { what: 'the datalayer gone in B' });
      const last = await mapPoint(B.page, 0.65, 0.7);
      await B.page.mouse.click(last.x, last.y);
      await B.page.keyboard.press('Enter');
      await until(B.page, () => window.mapcrdtDemo.features().some((f) => f.type === 'polygon' && f.visible), null, { what: 'the polygon drawn in B' });
      state = await sameEverywhere([A, B]);
      const polygons = state.filter((o) => o.subject === 'feature' && o.value.geometry.type === 'Polygon');
      assert.equal(polygons.length, 1);
      assert.notEqual(polygons[0].metadata.layerId, active);
      assert.ok(state.some((o) => o.subject === 'datalayer' && o.metadata.id === polygons[0].metadata.layerId), 'its datalayer is alive');
      assert.ok(await A.page.evaluate((id) => window.mapcrdtDemo.feature(id)?.visible, polygons[0].metadata.id), 'drawn in A');
      assert.deepEqual([...(await ghosts(A.page)), ...(await ghosts(B.page))], []);
      assertNoErrors(A, B);
    } finally {
      await close(A, B);
    }
  });
});
