// Every export of the two modules is declared in its .d.ts (and every value the .d.ts
// declares is exported): the typed surface is the whole surface.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

for (const name of ["index", "leaflet"]) {
  test(`${name}.js exports exactly what ${name}.d.ts declares`, async () => {
    const mod = await import(`../${name}.js`);
    const dts = readFileSync(new URL(`../${name}.d.ts`, import.meta.url), "utf8");
    const values = new Set([...dts.matchAll(/^export (?:declare )?(?:function|class|const|let) (\w+)/gm)].map((m) => m[1]));
    const types = new Set([...dts.matchAll(/^export (?:interface|type) (\w+)/gm)].map((m) => m[1]));
    for (const k of Object.keys(mod)) {
      assert.ok(values.has(k), `${name}.js exports ${k}, which ${name}.d.ts does not declare${types.has(k) ? " as a value" : ""}`);
    }
    for (const k of values) assert.ok(k in mod, `${name}.d.ts declares ${k}, which ${name}.js does not export`);
  });
}
