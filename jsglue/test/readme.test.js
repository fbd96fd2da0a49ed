// The README's JavaScript example, run as written: it must stay true. Its first ```js block
// is taken from README.md, its import pointed at this checkout's glue, and run with a fake
// socket (two engines joined through it), a render callback and an IndexedDB stand-in.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as mapcrdt from "../index.js";

test("the README's JavaScript example runs as written", async () => {
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  const block = readme.match(/```js\n([\s\S]*?)```/);
  assert.ok(block, "README.md has a ```js block");
  const importLine = /^import \{ ([\w, ]+) \} from "mapcrdt";.*$/m;
  const m = block[1].match(importLine);
  assert.ok(m, `the example imports from "mapcrdt": ${block[1].slice(0, 120)}`);
  const names = m[1].split(",").map((s) => s.trim());
  for (const n of names) assert.ok(n in mapcrdt, `the example imports ${n}, which index.js does not export`);
  const body = block[1].replace(importLine, "");

  // A peer on the other end of the socket: what the example sends reaches it.
  const peer = await mapcrdt.createEngine({ peerId: "bob" });
  const sent = [];
  const socket = {
    send(msg) {
      sent.push(msg);
      peer.receive(msg);
    },
    onmessage: null,
  };
  const rendered = [];
  const render = (changes) => rendered.push(...changes);
  const stored = new Map();
  const idb = { put: async (k, v) => void stored.set(k, v) };

  const run = new Function("mapcrdt", "socket", "render", "idb", `return (async () => { const { ${names.join(", ")} } = mapcrdt; ${body}\n return { engine, off }; })();`);
  const { engine, off } = await run(mapcrdt, socket, render, idb);

  assert.ok(sent.length >= 2, `the example's edits were sent: ${sent.length}`);
  for (const msg of engine.flush()) socket.send(msg); // the undo the example made last
  assert.equal(peer.state(), engine.state(), "the peer holds what the example made");
  assert.ok(stored.get("snap") instanceof Uint8Array, "the snapshot was stored");
  const resumed = await mapcrdt.createEngine({ snapshot: stored.get("snap") });
  assert.equal(resumed.state(), engine.state(), "the stored snapshot resumes the engine");

  // A message from the peer, through the example's onmessage: rendered through onChange.
  peer.update("feature", { id: "UxNjQ", layerId: "606d26bd-…", featureType: "marker" }, "properties.name", "Chez Bob");
  for (const msg of peer.flush()) socket.onmessage({ data: msg });
  assert.ok(rendered.some((c) => c.key === "properties.name" && c.value === "Chez Bob"), "the peer's edit was rendered");
  assert.equal(typeof off, "function");
  off();
  for (const e of [engine, peer, resumed]) e.close();
});
