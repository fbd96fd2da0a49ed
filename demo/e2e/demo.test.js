// Browser tests of the demo: the page (demo/web), the Leaflet helper (jsglue/leaflet.js), the
// engine (jsglue/index.js + mapcrdt.wasm) and the relay (go run ./demo), end to end.
//
// One relay (temp data dir) and one headless Chromium for the suite; each test opens its
// own browser contexts (separate storage: separate browsers, as far as the page can tell)
// on a map of its own. Assertions read the layers and the DOM through window.mapcrdtDemo;
// each test also saves a screenshot to demo/e2e/screenshots/ for people to look at.
//
// Run: make build && node --test demo/e2e/

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  clickFeature,
  converged,
  dragMarker,
  drawMarker,
  feature,
  features,
  launchBrowser,
  mapName,
  mapPoint,
  openDemo,
  renameViaForm,
  screenshot,
  setOffline,
  startRelay,
  until,
  waitReady,
} from './browser.js';

const close = (...ps) => Promise.all(ps.map((p) => p.close().catch(() => {})));

/** Resolves when `page` renders feature `id` (optionally satisfying a condition on it). */
function seen(page, id, { name, gone = false, timeout } = {}) {
  return until(
    page,
    ([id, name, gone]) => {
      const f = window.mapcrdtDemo.feature(id);
      if (gone) return !f;
      return !!f && (name === null || f.name === name);
    },
    [id, name ?? null, gone],
    { what: `${gone ? 'removal of' : 'feature'} ${id}${name ? ` named ${name}` : ''}`, timeout },
  );
}

function assertNoErrors(...views) {
  for (const v of views) assert.deepEqual(v.errors, [], `errors in ${v.name}'s page`);
}

// The suite's timeout bounds all its tests together (node:test races the suite against it),
// and each test's: only a guard against a hang. The 16 tests took 91 s on a loaded 2-core
// machine (3–9 s each), half the 180 s this was.
describe('demo: two and three browsers on one map', { timeout: 600_000 }, () => {
  let relay;
  let browser;

  before(async () => {
    [relay, browser] = await Promise.all([startRelay(), launchBrowser()]);
  });

  after(async () => {
    await browser?.close();
    await relay?.stop();
  });

  test('a marker created in A appears in B', async () => {
    const map = mapName('create');
    const A = await openDemo(browser, relay, { map, name: 'Alice' });
    const B = await openDemo(browser, relay, { map, name: 'Bob' });
    try {
      // Each page lists the other by name.
      await until(B.page, () => document.querySelector('#peers').textContent.includes('Alice'), null, { what: 'Alice in B’s peers' });
      await until(A.page, () => document.querySelector('#peers').textContent.includes('Bob'), null, { what: 'Bob in A’s peers' });

      const id = await drawMarker(A.page, 0.3, 0.35);
      const inA = await feature(A.page, id);
      assert.equal(inA.type, 'marker');
      assert.equal(inA.layerId, 'default');
      await seen(B.page, id);
      const inB = await feature(B.page, id);
      assert.equal(inB.type, 'marker');
      assert.ok(Math.abs(inB.latlngs[0] - inA.latlngs[0]) < 1e-5 && Math.abs(inB.latlngs[1] - inA.latlngs[1]) < 1e-5, `${inA.latlngs} vs ${inB.latlngs}`);
      assert.equal(await B.page.locator(`.leaflet-marker-icon[data-feature-id="${id}"]`).count(), 1);
      await converged([A.page, B.page]);
      await screenshot(B.page, 'create-B');
      assertNoErrors(A, B);
    } finally {
      await close(A, B);
    }
  });

  test('a marker dragged in B moves in A', async () => {
    const map = mapName('move');
    const A = await openDemo(browser, relay, { map, name: 'Alice' });
    const B = await openDemo(browser, relay, { map, name: 'Bob' });
    try {
      const id = await drawMarker(A.page, 0.4, 0.4);
      await seen(B.page, id);
      const start = (await feature(B.page, id)).latlngs;

      await dragMarker(B.page, id, 140, 90);
      await until(
        B.page,
        ([id, start]) => {
          const ll = window.mapcrdtDemo.feature(id).latlngs;
          return Math.abs(ll[0] - start[0]) > 1e-4 && Math.abs(ll[1] - start[1]) > 1e-4;
        },
        [id, start],
        { what: 'the drag in B' },
      );
      const moved = (await feature(B.page, id)).latlngs;
      assert.ok(moved[0] < start[0] && moved[1] > start[1], 'dragged down and right');
      await until(
        A.page,
        ([id, ll]) => {
          const got = window.mapcrdtDemo.feature(id)?.latlngs;
          return !!got && Math.abs(got[0] - ll[0]) < 1e-5 && Math.abs(got[1] - ll[1]) < 1e-5;
        },
        [id, moved],
        { what: 'the move in A' },
      );
      // One geometry edit for the whole drag: the creation, then one update.
      const sentByB = await B.page.evaluate(() => window.mapcrdtDemo.engine.vector()[window.mapcrdtDemo.engine.peerId] ?? 0);
      assert.equal(sentByB, 1, 'B sent one operation for the drag');

      // The helper's API emulating a completed drag in A moves it in B too.
      await A.page.evaluate(([id, lat, lng]) => window.mapcrdtDemo.dragMarkerTo(id, lat, lng), [id, moved[0] + 0.001, moved[1] - 0.001]);
      await until(
        B.page,
        ([id, lat]) => Math.abs(window.mapcrdtDemo.feature(id).latlngs[0] - lat) < 1e-5,
        [id, moved[0] + 0.001],
        { what: 'the programmatic move in B' },
      );

      // A selects the seeded polygon and drags its first vertex: one editable:edited, one
      // geometry update, and B's polygon changes shape.
      await clickFeature(A.page, 'seedArea');
      await until(A.page, () => window.mapcrdtDemo.selected() === 'seedArea', null, { what: 'selection of the polygon' });
      const before = (await feature(A.page, 'seedArea')).latlngs[0];
      const vertex = await A.page.evaluate(() => window.mapcrdtDemo.screenPoint('seedArea', window.mapcrdtDemo.feature('seedArea').latlngs[0][0]));
      await A.page.mouse.move(vertex.x, vertex.y);
      await A.page.mouse.down();
      await A.page.mouse.move(vertex.x - 40, vertex.y - 30, { steps: 8 });
      await A.page.mouse.up();
      await until(
        B.page,
        (before) => {
          const ring = window.mapcrdtDemo.feature('seedArea').latlngs[0];
          return ring.length === before.length && ring[0][0] > before[0][0] + 1e-4 && ring[0][1] < before[0][1] - 1e-4;
        },
        before,
        { what: 'the reshaped polygon in B' },
      );
      const ringA = (await feature(A.page, 'seedArea')).latlngs[0];
      assert.deepEqual(ringA.slice(1), before.slice(1), 'only the dragged vertex moved');
      await converged([A.page, B.page]);
      await screenshot(A.page, 'move-A');
      assertNoErrors(A, B);
    } finally {
      await close(A, B);
    }
  });

  test('a vertex drag in A outlasts B’s reshape of the same polygon, and its release wins', async () => {
    const map = mapName('vertexdrag');
    const A = await openDemo(browser, relay, { map, name: 'Alice' });
    const B = await openDemo(browser, relay, { map, name: 'Bob' });
    try {
      await clickFeature(A.page, 'seedArea');
      await until(A.page, () => window.mapcrdtDemo.selected() === 'seedArea', null, { what: 'selection of the polygon' });
      const start = (await feature(A.page, 'seedArea')).latlngs[0];
      const grab = await A.page.evaluate((ll) => window.mapcrdtDemo.screenPoint('seedArea', ll), start[2]);
      await A.page.mouse.move(grab.x, grab.y);
      await A.page.mouse.down();
      await A.page.mouse.move(grab.x + 10, grab.y - 10, { steps: 3 });

      // B moves another vertex of the polygon (a whole-geometry write), while A holds the drag.
      await B.page.evaluate(() => {
        const d = window.mapcrdtDemo;
        const g = structuredClone(d.engine.get('feature', { id: 'seedArea', layerId: 'default' }).geometry);
        g.coordinates[0][5] = [2.348, 48.85];
        d.engine.update('feature', { id: 'seedArea', layerId: 'default', featureType: 'polygon' }, 'geometry', g);
        d.rename('seedPin1', 'sends the reshape');
      });
      await until(
        A.page,
        () => window.mapcrdtDemo.engine.get('feature', { id: 'seedArea', layerId: 'default' }).geometry.coordinates[0][5][1] === 48.85,
        null,
        { what: 'B’s reshape received by A' },
      );
      const release = { x: grab.x + 40, y: grab.y - 70 };
      await A.page.mouse.move(release.x, release.y, { steps: 6 });
      await A.page.mouse.up();

      // The vertex is where A let go, in A and then in B; the rest is the ring A saw: A's
      // release is the later write of the geometry.
      await until(
        A.page,
        (release) => {
          const d = window.mapcrdtDemo;
          const p = d.screenPoint('seedArea', d.feature('seedArea').latlngs[0][2]);
          return Math.hypot(p.x - release.x, p.y - release.y) <= 2;
        },
        release,
        { what: 'the vertex where A let go' },
      );
      const ringA = (await feature(A.page, 'seedArea')).latlngs[0];
      await until(
        B.page,
        (want) => {
          const got = window.mapcrdtDemo.feature('seedArea').latlngs[0][2];
          return Math.abs(got[0] - want[0]) < 1e-6 && Math.abs(got[1] - want[1]) < 1e-6;
        },
        ringA[2],
        { what: 'A’s vertex in B' },
      );
      await converged([A.page, B.page]);
      const ringB = (await feature(B.page, 'seedArea')).latlngs[0];
      const round = (x) => (Array.isArray(x) ? x.map(round) : Math.round(x * 1e6) / 1e6);
      assert.deepEqual(round(ringB), round(ringA));
      assert.deepEqual(ringA.filter((_, i) => i !== 2), start.filter((_, i) => i !== 2), 'only the dragged vertex moved');
      await screenshot(B.page, 'vertexdrag-B');
      assertNoErrors(A, B);
    } finally {
      await close(A, B);
    }
  });

  test('a marker drag in A outlasts B’s move of the same marker, and its release wins', async () => {
    const map = mapName('markerdrag');
    const A = await openDemo(browser, relay, { map, name: 'Alice' });
    const B = await openDemo(browser, relay, { map, name: 'Bob' });
    try {
      const startA = await A.page.evaluate(() => window.mapcrdtDemo.screenPoint('seedPin1'));
      const box = await A.page.locator('.leaflet-marker-icon[data-feature-id="seedPin1"]').boundingBox();
      const grab = { x: box.x + box.width / 2, y: box.y + box.height / 3 };
      await A.page.mouse.move(grab.x, grab.y);
      await A.page.mouse.down();
      await A.page.mouse.move(grab.x + 150, grab.y - 100, { steps: 10 });

      await B.page.evaluate(() => window.mapcrdtDemo.dragMarkerTo('seedPin1', 48.851, 2.345));
      await until(
        A.page,
        () => window.mapcrdtDemo.engine.get('feature', { id: 'seedPin1', layerId: 'default' }).geometry.coordinates[1] === 48.851,
        null,
        { what: 'B’s move received by A' },
      );
      // Not moved from under A's pointer: released without moving again, it stays there.
      await A.page.mouse.up();
      const at = (page, want) =>
        until(
          page,
          (want) => {
            const d = window.mapcrdtDemo;
            const p = d.screenPoint('seedPin1');
            return Math.hypot(p.x - want.x, p.y - want.y) <= 2;
          },
          want,
          { what: `seedPin1 at ${JSON.stringify(want)}` },
        );
      await at(A.page, { x: startA.x + 150, y: startA.y - 100 });
      const inA = (await feature(A.page, 'seedPin1')).latlngs;
      await until(
        B.page,
        (want) => {
          const got = window.mapcrdtDemo.feature('seedPin1').latlngs;
          return Math.abs(got[0] - want[0]) < 1e-6 && Math.abs(got[1] - want[1]) < 1e-6;
        },
        inA,
        { what: 'A’s drag in B' },
      );
      await converged([A.page, B.page]);
      assert.ok(Math.abs(inA[0] - 48.851) > 1e-3, `A's marker is at B's move: ${inA}`);
      await screenshot(B.page, 'markerdrag-B');
      assertNoErrors(A, B);
    } finally {
      await close(A, B);
    }
  });

  test('a concurrent rename in three browsers ends with the same name everywhere', async () => {
    const map = mapName('rename');
    const A = await openDemo(browser, relay, { map, name: 'Alice' });
    const B = await openDemo(browser, relay, { map, name: 'Bob' });
    const C = await openDemo(browser, relay, { map, name: 'Carol' });
    const views = [A, B, C];
    try {
      const id = await drawMarker(A.page, 0.5, 0.3);
      await Promise.all([seen(B.page, id), seen(C.page, id)]);
      // Each selects the marker and types a name; then all three apply at once.
      for (const v of views) {
        await clickFeature(v.page, id);
        await until(v.page, (id) => window.mapcrdtDemo.selected() === id, id, { what: `selection in ${v.name}` });
        await v.page.fill('#feature-name', `name by ${v.name}`);
      }
      await Promise.all(views.map((v) => v.page.evaluate(() => document.querySelector('#feature-form').requestSubmit())));

      const state = await converged(views.map((v) => v.page));
      const names = await Promise.all(views.map(async (v) => (await feature(v.page, id)).name));
      assert.ok(names.every((n) => n === names[0]), `names differ: ${names}`);
      assert.ok(['name by Alice', 'name by Bob', 'name by Carol'].includes(names[0]), names[0]);
      assert.ok(state.includes(names[0]));
      // The form of each shows the winning name too.
      for (const v of views) {
        await until(v.page, (n) => document.querySelector('#feature-name').value === n, names[0], { what: `form of ${v.name}` });
      }
      await screenshot(C.page, 'rename-C');
      assertNoErrors(...views);
    } finally {
      await close(...views);
    }
  });

  test('a peer whose id is a member name of JavaScript objects is listed by its id', async () => {
    const map = mapName('peerids');
    const A = await openDemo(browser, relay, { map, name: 'Alice' });
    const ids = ['constructor', '__proto__', 'toString'];
    // Bare WebSocket peers, joining without a display name, from a page of the relay's origin.
    const context = await browser.newContext();
    try {
      const E = await context.newPage();
      await E.goto(relay.url + '/style.css');
      await E.evaluate(
        async ({ url, ids }) => {
          window.sockets = [];
          for (const peer of ids) {
            const ws = new WebSocket(url);
            window.sockets.push(ws);
            await new Promise((resolve) => (ws.onopen = resolve));
            ws.send(JSON.stringify({ kind: 'JoinRequest', peer }));
          }
        },
        { url: `${relay.url.replace(/^http/, 'ws')}/ws/sync/${map}`, ids },
      );
      await until(A.page, (ids) => ids.every((id) => window.mapcrdtDemo.peers().some((p) => p.id === id)), ids, { what: 'the three peers in A' });
      const listed = await A.page.evaluate(() => window.mapcrdtDemo.peers());
      for (const id of ids) {
        assert.equal(listed.find((p) => p.id === id).text, `${id.slice(0, 8)} ${id.slice(0, 8)}`, `peer ${id}`);
      }
      assertNoErrors(A);
    } finally {
      await close(A, context);
    }
  });

  test('a delete propagates', async () => {
    const map = mapName('delete');
    const A = await openDemo(browser, relay, { map, name: 'Alice' });
    const B = await openDemo(browser, relay, { map, name: 'Bob' });
    try {
      const id = await drawMarker(A.page, 0.6, 0.5);
      await seen(B.page, id);
      // Delete mode, then a click on the marker (in A), and the seeded polygon through the
      // selected-feature form (in B).
      await A.page.click('#tool-delete');
      await A.page.locator(`.leaflet-marker-icon[data-feature-id="${id}"]`).click();
      await seen(A.page, id, { gone: true });
      await seen(B.page, id, { gone: true });
      assert.equal(await B.page.locator(`[data-feature-id="${id}"]`).count(), 0);

      await clickFeature(B.page, 'seedArea');
      await until(B.page, () => window.mapcrdtDemo.selected() === 'seedArea', null, { what: 'selection of the polygon' });
      await B.page.click('#feature-delete');
      await seen(B.page, 'seedArea', { gone: true });
      await seen(A.page, 'seedArea', { gone: true });
      await converged([A.page, B.page]);
      await screenshot(A.page, 'delete-A');
      assertNoErrors(A, B);
    } finally {
      await close(A, B);
    }
  });

  test('geometries Leaflet cannot draw, sent by a peer, are not drawn and stop nothing else', async () => {
    const map = mapName('badgeom');
    const A = await openDemo(browser, relay, { map, name: 'Alice' });
    const B = await openDemo(browser, relay, { map, name: 'Bob' });
    let C;
    try {
      await seen(A.page, 'seedPin1');
      // B's engine takes, in one batch, features whose geometry is valid JSON but no
      // position Leaflet can place, then a good one; its next edit sends them all.
      const good = await B.page.evaluate(() => {
        const d = window.mapcrdtDemo;
        const layerId = d.feature('seedPin1').layerId;
        const bad = [
          { type: 'Point', coordinates: ['x', null] },
          { type: 'Point', coordinates: [] },
          { type: 'LineString', coordinates: [1, 2] },
          { type: 'Polygon', coordinates: [[[0, 0], 'corner', [1, 1], [0, 0]]] },
          { type: 'MultiPolygon', coordinates: [[[[0, 0], [1, NaN]]]] },
          { type: 'LineString', coordinates: [[2.35, 48.85], [2.36]] },
          // Empty or degenerate: Leaflet draws nothing of them, and throws "latlngs not
          // passed" placing the label of an empty one.
          { type: 'Polygon', coordinates: [] },
          { type: 'Polygon', coordinates: [[]] },
          { type: 'Polygon', coordinates: [[[2.35, 48.85], [2.36, 48.86], [2.35, 48.85]]] },
          { type: 'Polygon', coordinates: [[[2.35, 48.85], [2.36, 48.85], [2.36, 48.86], [2.35, 48.85]], []] },
          { type: 'LineString', coordinates: [] },
          { type: 'LineString', coordinates: [[2.35, 48.85]] },
          { type: 'MultiLineString', coordinates: [] },
          { type: 'MultiLineString', coordinates: [[], [[2.35, 48.85], [2.36, 48.86]]] },
          { type: 'MultiPolygon', coordinates: [] },
          { type: 'MultiPolygon', coordinates: [[]] },
        ];
        d.engine.batch((e) => {
          bad.forEach((geometry, i) =>
            e.upsert('feature', { id: `bad${i}`, layerId, featureType: 'marker' }, { type: 'Feature', geometry, properties: { name: `bad ${i}` } }),
          );
          e.upsert('feature', { id: 'goodAfterBad', layerId, featureType: 'marker' },
            { type: 'Feature', geometry: { type: 'Point', coordinates: [2.352, 48.857] }, properties: { name: 'good' } });
        });
        return d.addMarker(48.858, 2.353, { name: 'sent after' });
      });
      await seen(A.page, 'goodAfterBad', { name: 'good' });
      await seen(A.page, good);
      await converged([A.page, B.page]);
      for (const v of [A, B]) {
        const ids = (await features(v.page)).map((f) => f.id);
        assert.deepEqual(ids.filter((id) => id.startsWith('bad')), [], `${v.name} draws a bad geometry`);
      }
      // A bad geometry made good later is drawn.
      await B.page.evaluate(() => {
        const d = window.mapcrdtDemo;
        const layerId = d.feature('seedPin1').layerId;
        d.engine.update('feature', { id: 'bad0', layerId, featureType: 'marker' }, 'geometry', { type: 'Point', coordinates: [2.351, 48.856] });
        d.addMarker(48.859, 2.354);
      });
      await seen(A.page, 'bad0', { name: 'bad 0' });
      // A page opened later gets them in its catch-up: not drawn there either.
      C = await openDemo(browser, relay, { map, name: 'Carol' });
      await seen(C.page, 'bad0', { name: 'bad 0' });
      await converged([A.page, B.page, C.page]);
      const inC = (await features(C.page)).map((f) => f.id);
      assert.deepEqual(inC.filter((id) => id.startsWith('bad')), ['bad0']);
      assertNoErrors(A, B, C);
    } finally {
      await close(A, B, ...(C ? [C] : []));
    }
  });

  test('A offline edits, B edits, A reconnects: both show both edits', async () => {
    const map = mapName('offline');
    const A = await openDemo(browser, relay, { map, name: 'Alice' });
    const B = await openDemo(browser, relay, { map, name: 'Bob' });
    try {
      await setOffline(A.page, true);
      await until(B.page, () => !document.querySelector('#peers').textContent.includes('Alice'), null, { what: 'Alice gone from B’s peers' });

      const a = await drawMarker(A.page, 0.25, 0.6);
      await renameViaForm(A.page, a, 'made offline');
      const b = await drawMarker(B.page, 0.75, 0.6);
      await renameViaForm(B.page, b, 'made online');
      // B moves the seeded marker meanwhile: an update to an object loaded from the "server".
      await B.page.evaluate(() => window.mapcrdtDemo.dragMarkerTo('seedPin1', 48.851, 2.351));

      assert.equal(await feature(B.page, a), null, 'B cannot see A’s offline edit yet');
      assert.equal(await feature(A.page, b), null, 'A cannot see B’s edit yet');
      assert.ok((await A.page.evaluate(() => window.mapcrdtDemo.engine.pending())) > 0, 'A’s outbox holds its edits');

      await setOffline(A.page, false);
      await Promise.all([seen(A.page, b, { name: 'made online' }), seen(B.page, a, { name: 'made offline' })]);
      await until(A.page, () => Math.abs(window.mapcrdtDemo.feature('seedPin1').latlngs[0] - 48.851) < 1e-6, null, { what: 'seedPin1 moved in A' });
      await converged([A.page, B.page]);
      assert.equal(await A.page.evaluate(() => window.mapcrdtDemo.engine.pending()), 0);
      await screenshot(A.page, 'offline-A');
      assertNoErrors(A, B);
    } finally {
      await close(A, B);
    }
  });

  test('a third window opened after the others closed gets everything from the relay', async () => {
    const map = mapName('late');
    const A = await openDemo(browser, relay, { map, name: 'Alice' });
    const B = await openDemo(browser, relay, { map, name: 'Bob' });
    let C;
    try {
      const m = await drawMarker(A.page, 0.3, 0.3);
      await renameViaForm(A.page, m, 'from Alice');

      // B draws a line: three clicks, then a click on the last vertex ends it.
      const before = (await features(B.page)).map((f) => f.id);
      await B.page.click('#tool-line');
      const pts = [await mapPoint(B.page, 0.55, 0.2), await mapPoint(B.page, 0.7, 0.3), await mapPoint(B.page, 0.65, 0.45)];
      for (const p of pts) await B.page.mouse.click(p.x, p.y);
      await B.page.mouse.click(pts[2].x, pts[2].y);
      const line = await (
        await until(B.page, (before) => window.mapcrdtDemo.features().find((f) => f.type === 'polyline' && !before.includes(f.id))?.id, before, {
          what: 'the new line',
        })
      ).jsonValue();
      assert.equal((await feature(B.page, line)).latlngs.length, 3);

      // B draws a polygon in a new datalayer, finished with the Finish button.
      await B.page.click('#layer-add');
      await until(B.page, () => window.mapcrdtDemo.datalayers().length === 2, null, { what: 'the new datalayer' });
      const layerName = B.page.locator('#layers li:has(.layer-active:checked) .layer-name');
      await layerName.fill('Bob’s layer');
      await layerName.press('Enter');
      await layerName.blur();
      await B.page.click('#tool-polygon');
      for (const [fx, fy] of [[0.2, 0.7], [0.35, 0.75], [0.3, 0.9]]) {
        const p = await mapPoint(B.page, fx, fy);
        await B.page.mouse.click(p.x, p.y);
      }
      await B.page.click('#tool-finish');
      await until(B.page, () => window.mapcrdtDemo.features().some((f) => f.type === 'polygon' && f.layerId !== 'default'), null, {
        what: 'the polygon in the new layer',
      });
      await seen(A.page, line);
      const expected = await converged([A.page, B.page]);
      const expectedFeatures = await features(A.page);
      const expectedLayers = await A.page.evaluate(() => window.mapcrdtDemo.datalayers().map((d) => d.name));
      assert.ok(expectedLayers.includes('Bob’s layer'), String(expectedLayers));
      await screenshot(A.page, 'late-A-before-closing');

      await close(A, B);
      C = await openDemo(browser, relay, { map, name: 'Carol' });
      await until(C.page, (n) => window.mapcrdtDemo.features().length === n, expectedFeatures.length, { what: 'every feature in C' });
      await until(C.page, (s) => window.mapcrdtDemo.engine.state() === s, expected, { what: 'C’s state equal to A’s and B’s' });
      const got = await features(C.page);
      // A drawing page keeps its own layers at full precision; what travels has 6 decimals.
      const round = (x) => (Array.isArray(x) ? x.map(round) : Math.round(x * 1e6) / 1e6);
      const byId = (fs) =>
        Object.fromEntries(fs.map((f) => [f.id, { type: f.type, name: f.name, color: f.color, layerId: f.layerId, latlngs: round(f.latlngs) }]));
      assert.deepEqual(byId(got), byId(expectedFeatures));
      assert.deepEqual(await C.page.evaluate(() => window.mapcrdtDemo.datalayers().map((d) => d.name)), expectedLayers);
      // Only the relay and Carol are online.
      const peers = await C.page.evaluate(() => window.mapcrdtDemo.peers().map((p) => p.id));
      assert.equal(peers.length, 2, String(peers));
      assert.ok(peers.includes('relay'));
      await screenshot(C.page, 'late-C');
      assertNoErrors(C);
    } finally {
      await close(A, B, ...(C ? [C] : []));
    }
  });

  test('undo in A after B changed the same property keeps B’s value and says so', async () => {
    const map = mapName('undo');
    const A = await openDemo(browser, relay, { map, name: 'Alice' });
    const B = await openDemo(browser, relay, { map, name: 'Bob' });
    try {
      const id = await drawMarker(A.page, 0.45, 0.45);
      await renameViaForm(A.page, id, 'from Alice');
      await seen(B.page, id, { name: 'from Alice' });
      await renameViaForm(B.page, id, 'from Bob');
      await seen(A.page, id, { name: 'from Bob' });

      assert.equal(await A.page.isDisabled('#undo'), false);
      await A.page.click('#undo');
      await until(A.page, () => {
        const note = document.querySelector('#undo-note');
        return !note.hidden && note.getBoundingClientRect().height > 0;
      }, null, { what: 'the undo note' });
      assert.match(await A.page.textContent('#undo-note'), /Kept 1 change\(s\) by another peer/);
      assert.equal((await feature(A.page, id)).name, 'from Bob');
      await converged([A.page, B.page]);
      assert.equal((await feature(B.page, id)).name, 'from Bob');
      await screenshot(A.page, 'undo-A');

      // A's next undo step is the creation, and B has changed the marker since: kept too.
      await A.page.click('#undo');
      await until(A.page, () => /Kept 1 change/.test(document.querySelector('#undo-note').textContent), null, { what: 'the second note' });
      assert.ok(await feature(A.page, id), 'the marker B renamed stays');

      // A moves the marker; Ctrl+Z moves it back in both, Ctrl+Shift+Z moves it again.
      const start = (await feature(A.page, id)).latlngs;
      const to = [start[0] + 0.002, start[1] + 0.003];
      await A.page.evaluate(([id, to]) => window.mapcrdtDemo.dragMarkerTo(id, to[0], to[1]), [id, to]);
      const at = (page, ll, what) =>
        until(
          page,
          ([id, ll]) => {
            const got = window.mapcrdtDemo.feature(id)?.latlngs;
            return !!got && Math.abs(got[0] - ll[0]) < 1e-6 && Math.abs(got[1] - ll[1]) < 1e-6;
          },
          [id, ll],
          { what },
        );
      await at(B.page, to, 'the move in B');
      await A.page.locator('#map').focus();
      await A.page.keyboard.press('Control+z');
      await at(A.page, start, 'Ctrl+Z in A');
      await at(B.page, start, 'Ctrl+Z seen in B');
      await until(A.page, () => document.querySelector('#undo-note').hidden, null, { what: 'no note for a clean undo' });
      await A.page.keyboard.press('Control+Shift+z');
      await at(A.page, to, 'Ctrl+Shift+Z in A');
      await at(B.page, to, 'Ctrl+Shift+Z seen in B');
      await converged([A.page, B.page]);
      assertNoErrors(A, B);
    } finally {
      await close(A, B);
    }
  });

  test('datalayers: add, rename, show/hide (locally), delete with its features, undo', async () => {
    const map = mapName('layers');
    const A = await openDemo(browser, relay, { map, name: 'Alice' });
    const B = await openDemo(browser, relay, { map, name: 'Bob' });
    try {
      await A.page.click('#layer-add');
      await until(A.page, () => window.mapcrdtDemo.datalayers().length === 2, null, { what: 'the new datalayer' });
      const row = A.page.locator('#layers li:has(.layer-active:checked)');
      const layerId = await row.getAttribute('data-layer-id');
      await row.locator('.layer-name').fill('Trees');
      await row.locator('.layer-name').press('Enter');
      const id = await drawMarker(A.page, 0.7, 0.7);
      assert.equal((await feature(A.page, id)).layerId, layerId);
      await until(B.page, (lid) => window.mapcrdtDemo.datalayers().some((d) => d.id === lid && d.name === 'Trees'), layerId, { what: 'Trees in B' });
      await seen(B.page, id);
      assert.equal((await feature(B.page, id)).layerId, layerId);

      // Hiding is a view setting of A only.
      await A.page.locator(`#layers li[data-layer-id="${layerId}"] .layer-visible`).uncheck();
      await until(A.page, (id) => window.mapcrdtDemo.feature(id)?.visible === false, id, { what: 'hidden in A' });
      assert.equal(await A.page.locator(`[data-feature-id="${id}"]`).count(), 0);
      assert.equal((await feature(B.page, id)).visible, true);
      await A.page.locator(`#layers li[data-layer-id="${layerId}"] .layer-visible`).check();
      await until(A.page, (id) => window.mapcrdtDemo.feature(id)?.visible === true, id, { what: 'shown again in A' });

      // B deletes the datalayer: its features go with it, everywhere; B's undo brings both back.
      await B.page.locator(`#layers li[data-layer-id="${layerId}"] .layer-delete`).click();
      await until(A.page, (lid) => !window.mapcrdtDemo.datalayers().some((d) => d.id === lid), layerId, { what: 'Trees gone in A' });
      await seen(A.page, id, { gone: true });
      await seen(B.page, id, { gone: true });
      await B.page.click('#undo');
      await until(A.page, (lid) => window.mapcrdtDemo.datalayers().some((d) => d.id === lid && d.name === 'Trees'), layerId, { what: 'Trees back in A' });
      await seen(A.page, id);
      await seen(B.page, id);
      await converged([A.page, B.page]);
      await screenshot(B.page, 'layers-B');
      assertNoErrors(A, B);
    } finally {
      await close(A, B);
    }
  });

  test('a feature added to a datalayer deleted meanwhile is not drawn, and is again when the datalayer is back', async () => {
    const map = mapName('orphan');
    const A = await openDemo(browser, relay, { map, name: 'Alice' });
    const B = await openDemo(browser, relay, { map, name: 'Bob' });
    try {
      await setOffline(B.page, true);
      const id = await B.page.evaluate(() => window.mapcrdtDemo.addMarker(48.857, 2.352, { name: 'made offline' }));
      await B.page.evaluate((id) => window.mapcrdtDemo.select(id), id);
      await A.page.locator('li[data-layer-id="default"] .layer-delete').click();
      await until(A.page, () => window.mapcrdtDemo.datalayers().length === 0, null, { what: 'the datalayer deleted in A' });
      await setOffline(B.page, false);
      await converged([A.page, B.page]);

      // Kept in the engine (B's edit is not lost), drawn nowhere, no longer selected in B.
      for (const v of [A, B]) {
        await until(v.page, () => window.mapcrdtDemo.datalayers().length === 0, null, { what: `no datalayer in ${v.name}` });
        const kept = await v.page.evaluate((id) => window.mapcrdtDemo.engine.get('feature', { id, layerId: 'default' }, 'properties.name'), id);
        assert.equal(kept, 'made offline', `${v.name}'s engine holds the feature`);
        await until(v.page, (id) => window.mapcrdtDemo.feature(id)?.visible === false, id, { what: `${id} not drawn in ${v.name}` });
        assert.equal(await v.page.locator(`[data-feature-id="${id}"]`).count(), 0, `${v.name} shows no element of it`);
      }
      assert.equal(await B.page.evaluate(() => window.mapcrdtDemo.selected()), null);
      assert.equal(await B.page.isHidden('#feature-form'), true);
      assert.equal(await A.page.evaluate((id) => (window.mapcrdtDemo.select(id), window.mapcrdtDemo.selected()), id), null, 'not selectable');

      // A undoes the deletion: the datalayer is back, and the feature drawn with it.
      await A.page.click('#undo');
      for (const v of [A, B]) {
        await until(v.page, (id) => window.mapcrdtDemo.feature(id)?.visible === true, id, { what: `${id} drawn again in ${v.name}` });
        await until(v.page, () => window.mapcrdtDemo.feature('seedPin1')?.visible === true, null, { what: `seedPin1 back in ${v.name}` });
      }
      assert.equal(await A.page.locator(`.leaflet-marker-icon[data-feature-id="${id}"]`).count(), 1);
      await converged([A.page, B.page]);
      await screenshot(A.page, 'orphan-A');
      assertNoErrors(A, B);
    } finally {
      await close(A, B);
    }
  });

  test('a reload of A keeps its unsent offline edits', async () => {
    const map = mapName('reload');
    const A = await openDemo(browser, relay, { map, name: 'Alice' });
    const B = await openDemo(browser, relay, { map, name: 'Bob' });
    try {
      const peerId = await A.page.evaluate(() => window.mapcrdtDemo.engine.peerId);
      await setOffline(A.page, true);
      const id = await drawMarker(A.page, 0.35, 0.55);
      await renameViaForm(A.page, id, 'kept across reload');
      await until(A.page, () => window.mapcrdtDemo.persisted(), null, { what: 'the snapshot in IndexedDB' });
      assert.equal(await feature(B.page, id), null, 'the edit never left A');

      await A.page.reload();
      await waitReady(A.page, { online: false });
      assert.equal(await A.page.evaluate(() => window.mapcrdtDemo.restored), true);
      assert.equal(await A.page.evaluate(() => window.mapcrdtDemo.engine.peerId), peerId, 'same peer id after reload');
      await seen(A.page, id, { name: 'kept across reload' });
      // The reloaded page is online again, sends what waited, and B gets it.
      await waitReady(A.page, { online: true });
      await seen(B.page, id, { name: 'kept across reload' });
      await converged([A.page, B.page]);
      await screenshot(A.page, 'reload-A');
      assertNoErrors(A, B);
    } finally {
      await close(A, B);
    }
  });

  /** Opens the map in another tab of view's browser (its context: the same storage). */
  async function openTab(view, name) {
    const url = view.url ?? view.page.url();
    const page = await view.context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`console: ${m.text()}`);
    });
    await page.goto(url);
    await waitReady(page);
    return { context: view.context, url, page, errors, name, close: () => page.close() };
  }

  /** Makes a marker in tab while offline, and waits until it is saved in IndexedDB. */
  async function offlineMarker(tab, name) {
    await setOffline(tab.page, true);
    const id = await tab.page.evaluate((name) => window.mapcrdtDemo.addMarker(48.857, 2.352, { name }), name);
    await until(tab.page, () => window.mapcrdtDemo.persisted(), null, { what: 'the snapshot in IndexedDB' });
    assert.ok((await tab.page.evaluate(() => window.mapcrdtDemo.engine.pending())) > 0, 'the edit waits in the outbox');
    return id;
  }

  test('a second tab reloaded keeps its own slot, and sends its offline edits', async () => {
    const map = mapName('tabs');
    const T1 = await openDemo(browser, relay, { map, name: 'Alice' });
    const W = await openDemo(browser, relay, { map, name: 'Watcher' });
    const T2 = await openTab(T1, 'Alice’s second tab');
    try {
      const before = await T2.page.evaluate(() => [window.mapcrdtDemo.slot, window.mapcrdtDemo.engine.peerId]);
      assert.equal(await T1.page.evaluate(() => window.mapcrdtDemo.slot), 0);
      assert.equal(before[0], 1);
      const id = await offlineMarker(T2, 'made offline in tab 2');

      // The first tab goes; the second reloads: it takes its own slot again, not the free 0.
      await T1.page.close();
      await T2.page.reload();
      await waitReady(T2.page, { online: false });
      assert.deepEqual(await T2.page.evaluate(() => [window.mapcrdtDemo.slot, window.mapcrdtDemo.engine.peerId, window.mapcrdtDemo.restored]), [...before, true]);
      await seen(T2.page, id, { name: 'made offline in tab 2' });
      await seen(W.page, id, { name: 'made offline in tab 2' });
      await converged([T2.page, W.page]);
      assertNoErrors(T2, W);
    } finally {
      await close(T1, T2, W);
    }
  });

  test('offline edits of a tab closed before it was online again reach the others through the next tab', async () => {
    const map = mapName('stranded');
    const T1 = await openDemo(browser, relay, { map, name: 'Alice' });
    const W = await openDemo(browser, relay, { map, name: 'Watcher' });
    const T2 = await openTab(T1, 'Alice’s second tab');
    let T3;
    try {
      assert.equal(await T2.page.evaluate(() => window.mapcrdtDemo.slot), 1);
      const id = await offlineMarker(T2, 'made offline in a closed tab');
      // Both tabs go; a new one takes slot 0, and the unsent edits of slot 1 with it.
      await T2.close();
      await T1.page.close();
      T3 = await openTab(T2, 'Alice’s third tab');
      assert.equal(await T3.page.evaluate(() => window.mapcrdtDemo.slot), 0);
      await seen(T3.page, id, { name: 'made offline in a closed tab' });
      await seen(W.page, id, { name: 'made offline in a closed tab' });
      await converged([T3.page, W.page]);
      assert.deepEqual(await T3.page.evaluate(() => window.mapcrdtDemo.adopted), [1]);
      // Taken over once: a fourth tab finds nothing left to take.
      const T4 = await openTab(T3, 'Alice’s fourth tab');
      assert.equal(await T4.page.evaluate(() => window.mapcrdtDemo.slot), 1);
      assert.equal(await T4.page.evaluate(() => window.mapcrdtDemo.restored), false);
      assert.deepEqual(await T4.page.evaluate(() => window.mapcrdtDemo.adopted), []);
      await T4.close();
      assertNoErrors(T2, T3, W);
    } finally {
      await close(T1, T2, W, ...(T3 ? [T3] : []));
    }
  });
});
