// The Leaflet helper's options, in Node (its rendering runs in Chromium: demo/e2e).
// bindLeaflet checks its options before it touches Leaflet.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { bindLeaflet } from "../leaflet.js";

// The option names leaflet.d.ts declares in BindOptions.
const dts = readFileSync(new URL("../leaflet.d.ts", import.meta.url), "utf8");
const body = dts.match(/export interface BindOptions \{([\s\S]*?)\n\}/);
assert.ok(body, "leaflet.d.ts declares BindOptions");
const declared = [...body[1].matchAll(/^ {2}(\w+)\??:/gm)].map((m) => m[1]);

test("bindLeaflet names a misspelt or unknown option instead of ignoring it", () => {
  const base = { map: {}, featuresLayer: {}, engine: {}, layerId: "L1" };
  assert.throws(() => bindLeaflet({ ...base, precison: 5 }), { name: "TypeError", message: /unknown option "precison"/ });
  assert.throws(() => bindLeaflet({ ...base, featureLayer: {} }), { name: "TypeError", message: /unknown option "featureLayer"/ });
  assert.throws(() => bindLeaflet(null), TypeError);
  assert.throws(() => bindLeaflet({ map: {}, engine: {}, layerId: "L1" }), { name: "TypeError", message: /needs map, featuresLayer and engine/ });
});

test("bindLeaflet knows every option leaflet.d.ts declares, and no other", () => {
  assert.ok(declared.length >= 10, `BindOptions read: ${declared}`);
  const base = { map: {}, featuresLayer: {}, engine: {}, layerId: "L1" };
  for (const k of declared) {
    // A declared key passes the check: what fails after it is the missing Leaflet (L).
    assert.throws(
      () => bindLeaflet({ ...base, [k]: base[k] ?? undefined, L: undefined }),
      (e) => !/unknown option/.test(e.message),
      `option ${k}`,
    );
  }
  assert.throws(() => bindLeaflet({ ...base, notDeclared: 1 }), /unknown option/);
});

test("bindLeaflet refuses a precision that is not a whole number of decimals from 0 to 15", () => {
  // NaN or a word would round every coordinate sent to NaN, which the engine keeps as null.
  const base = { map: {}, featuresLayer: {}, engine: {}, layerId: "L1" };
  for (const precision of [NaN, "6", -1, 2.5, 16, null, Infinity]) {
    assert.throws(() => bindLeaflet({ ...base, precision }), { name: "TypeError", message: /precision/ }, `precision ${String(precision)}`);
  }
  for (const precision of [0, 6, 15, undefined]) {
    // Accepted: what fails after is the missing Leaflet (L).
    assert.throws(() => bindLeaflet({ ...base, precision, L: undefined }), (e) => !/precision/.test(e.message), `precision ${precision}`);
  }
});
