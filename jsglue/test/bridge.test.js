// The glue's writing of arguments into the module's input buffer (Bridge.writeSmall and
// writeLarge in index.js): whatever their mix of text and bytes, arguments arrive whole, and
// nothing is written past the buffer Go gave. A write past it lands in Go's heap (another
// engine's state, the allocator's own data) or past the wasm memory (a RangeError).

import { test } from "node:test";
import assert from "node:assert/strict";
import { createEngine, merge, MapcrdtError, _rawBridge } from "../index.js";
import { inChromium } from "./chromium.js";

const collection = (n, name) => ({
  type: "FeatureCollection",
  features: Array.from({ length: n }, (_, i) => ({
    type: "Feature",
    id: "f" + i,
    properties: { name },
    geometry: { type: "Point", coordinates: [1, 2] },
  })),
});

async function rejectsCode(promise, code) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof MapcrdtError, `not a MapcrdtError: ${e && e.stack}`);
    assert.equal(e.code, code, e.message);
    return true;
  });
}

test("bytes after non-ASCII text: the buffer is sized again, never written past", async () => {
  const e = await createEngine({ peerId: "a" });
  e.upsert("feature", { id: "f1", layerId: "L1" }, { type: "Feature", properties: { name: "keep me" } });
  const before = e.state();
  const utf8 = new TextEncoder();
  // The buffer's first size is the arguments' length in UTF-16 units and a sixteenth: the
  // text, three bytes a unit in UTF-8, leaves too little room for the bytes after it.
  for (const [n, m] of [
    [3000, 6000], // ~1.2 MB of text, 2 × 0.6 MB of bytes
    [300, 600], // ~120 KB, 2 × 60 KB: under the size kept between calls
  ]) {
    const text = JSON.stringify(collection(n, "中".repeat(100)));
    const bytes = utf8.encode(JSON.stringify(collection(m, "x")));
    const want = await merge(text, JSON.stringify(collection(m, "x")), JSON.stringify(collection(m, "x")), { policy: "latest" });
    for (let round = 0; round < 3; round++) {
      const got = await merge(text, bytes, bytes, { policy: "latest" });
      assert.equal(got.document, want.document);
      assert.deepEqual(got.conflicts, want.conflicts);
      assert.equal(e.state(), before, "an engine's state is as it was");
    }
  }
  // The bytes first, then text: each fits where the text's sizing put it.
  const text = "東".repeat(200_000);
  const bytes = utf8.encode(JSON.stringify(collection(600, "x")));
  await rejectsCode(merge(bytes, text, bytes), "invalid_json");
  e.update("feature", { id: "f1", layerId: "L1" }, "properties.n", 1);
  assert.equal(e.get("feature", { id: "f1", layerId: "L1" }, "properties.n"), 1);
  e.close();
});

test("a long non-ASCII peer id with a snapshot is refused for the id, the module unharmed", async () => {
  const a = await createEngine({ peerId: "a" });
  a.update("feature", { id: "f1", layerId: "L1" }, "properties.name", "x".repeat(100_000));
  const snap = a.snapshot();
  // Two bytes a unit: the id fits the first size (the units and a sixteenth), the snapshot
  // after it does not.
  const peerId = "é".repeat(snap.length >> 1);
  for (let i = 0; i < 3; i++) await rejectsCode(createEngine({ peerId, snapshot: snap }), "bad_option");
  const b = await createEngine({ snapshot: snap });
  assert.equal(b.state(), a.state());
  a.close();
  b.close();
});

test("any mix of text and bytes, around every size the writer picks, arrives whole", async () => {
  // merge(d, d, d) of one document returns it, canonical: what Go read of each argument.
  const raw = await _rawBridge();
  const utf8 = new TextEncoder();
  const doc = (n, name) => JSON.stringify(collection(n, name));
  const shapes = [
    doc(1, "a"),
    doc(400, "a"), // ~40 KB
    doc(700, "a"), // ~70 KB: past the 64 KB buffer alone
    doc(300, "é".repeat(30)),
    doc(300, "東".repeat(40)),
    doc(200, "😀".repeat(40)),
    doc(3000, "東"), // ~300 KB
  ];
  const canon = new Map();
  for (const s of shapes) canon.set(s, raw.call(raw.methods.merge, 0, 0, [s, s, s, "fail"]));
  let k = 0;
  for (const s of shapes) {
    for (const t of shapes) {
      // The same document three times, each argument text or bytes; the others' sizes vary
      // through the policy's place (a fourth argument never read past its text).
      for (const mask of [0b001, 0b010, 0b100, 0b011, 0b110, 0b111]) {
        const args = [0, 1, 2].map((i) => (mask & (1 << i) ? utf8.encode(s) : s));
        assert.equal(raw.call(raw.methods.merge, 0, 0, [...args, "fail"]), canon.get(s), `shape ${shapes.indexOf(s)} mask ${mask}`);
      }
      // Two documents: a merge of t into s (whatever it gives, the same for text and bytes).
      const want = tryCall(raw, [s, s, t]);
      assert.equal(tryCall(raw, [s, utf8.encode(s), utf8.encode(t)]), want, `pair ${k}`);
      assert.equal(tryCall(raw, [utf8.encode(s), s, t]), want, `pair ${k}`);
      k++;
    }
  }
});

function tryCall(raw, args) {
  try {
    return raw.call(raw.methods.merge, 0, 0, [...args, "latest"]);
  } catch (e) {
    assert.ok(e instanceof MapcrdtError, `not a MapcrdtError: ${e && e.stack}`);
    return "error " + e.code;
  }
}

test("bytes are measured by their own length, not by what the object says", async () => {
  const e = await createEngine({ peerId: "a" });
  const before = e.state();
  const utf8 = new TextEncoder();
  // A pong padded to 300 KB, its byteLength (and length) defined on the array as 10: set()
  // would still write it all, into a buffer sized for 10 bytes, and the module read 10.
  const big = utf8.encode(JSON.stringify({ kind: "pong", pad: "x".repeat(300_000) }));
  Object.defineProperty(big, "byteLength", { value: 10 });
  Object.defineProperty(big, "length", { value: 10 });
  assert.deepEqual(e.receive(big), []);
  // A Proxy passes instanceof Uint8Array, and says what it likes when set() reads it: it is
  // no bytes, but an object (whose JSON is no message).
  const proxy = new Proxy(new Uint8Array(10), {
    get(t, k) {
      if (k === "length" || k === "byteLength") return 1e6;
      const v = Reflect.get(t, k);
      return typeof v === "function" ? v.bind(t) : v;
    },
  });
  assert.throws(() => e.receive(proxy), (err) => err instanceof MapcrdtError && err.code === "unknown_kind");
  await rejectsCode(merge(proxy, proxy, proxy), "bad_value");
  await rejectsCode(createEngine({ snapshot: proxy }), "bad_option");
  // An option read twice (checked, then used) could answer differently: it is read once.
  let reads = 0;
  const fickle = {
    get peerId() {
      return reads++ === 0 ? "b" : { length: 1e6, byteLength: 5 };
    },
  };
  const b = await createEngine(fickle);
  assert.equal(b.peerId, "b");
  assert.equal(reads, 1);
  await rejectsCode(createEngine({ get snapshot() { throw new Error("no"); } }), "bad_option");
  // Bytes of another realm are bytes (instanceof would refuse them), and a Node Buffer too.
  const { runInNewContext } = await import("node:vm");
  const msg = JSON.stringify({ kind: "pong" });
  assert.deepEqual(e.receive(runInNewContext("new Uint8Array(b)", { b: [...utf8.encode(msg)] })), []);
  assert.deepEqual(e.receive(Buffer.from(msg)), []);
  assert.equal(e.state(), before);
  e.update("feature", { id: "f1", layerId: "L1" }, "properties.n", 1);
  assert.equal(e.get("feature", { id: "f1", layerId: "L1" }, "properties.n"), 1);
  e.close();
  b.close();
});

// Text is written as UTF-8 by JavaScript below a length that depends on where the glue runs
// (48 UTF-16 units in Node, 256 in a browser), by TextEncoder.encodeInto above it: either
// must give TextEncoder's bytes, a lone surrogate as U+FFFD. The module echoes an unknown
// merge policy in its error (strconv.Quote: an invalid byte would show as \x..), so the
// text and its TextEncoder bytes, passed as the policy, must be told apart by nothing.
// textMismatches runs in Node and, as its source, in chromium.
function textMismatches(raw) {
  const utf8 = new TextEncoder();
  const doc = '{"type":"FeatureCollection","features":[]}';
  const message = (arg) => {
    try {
      raw.call(raw.methods.merge, 0, 0, [doc, doc, doc, arg]);
      return "no error";
    } catch (e) {
      return e.code + ": " + e.message;
    }
  };
  const odd = ["é", "ß", "\u07ff", "\u0800", "東", "\uffff", "😀", "\ud800", "\udbff", "\udc00", "\udfff", "\udc00\ud800", "\ud800\ud800\udc00", "\u0080"];
  const cases = [];
  for (const len of [0, 1, 2, 47, 48, 49, 85, 86, 87, 200, 254, 255, 256, 257, 300]) {
    const pad = "a".repeat(len);
    cases.push(pad);
    for (const u of odd) cases.push(u + pad, pad + u, pad.slice(0, len >> 1) + u + pad.slice(len >> 1));
    cases.push("東京 café, Straße ".repeat(Math.ceil(len / 17)).slice(0, len));
    cases.push("😀".repeat(len >> 1) + "\ud83d");
  }
  const bad = [];
  for (const s of cases) {
    if (s === "") continue; // no policy: the default's, and no error
    const asText = message(s);
    const asBytes = message(utf8.encode(s));
    if (asText !== asBytes || !asBytes.startsWith("bad_option")) bad.push({ s, asText, asBytes });
  }
  return { cases: cases.length, bad: bad.slice(0, 5) };
}

test("text of any length, non-ASCII and lone surrogates included, arrives as TextEncoder writes it", async () => {
  const { cases, bad } = textMismatches(await _rawBridge());
  assert.ok(cases > 400);
  assert.deepEqual(bad, []);
});

test("text arrives as TextEncoder writes it in a browser too (chromium)", async (t) => {
  const page = `<!doctype html><meta charset="utf-8"><script type="module">
import { _rawBridge } from "./index.js";
${textMismatches}
try {
  window.result = textMismatches(await _rawBridge());
} catch (e) {
  window.result = { error: String(e && e.stack || e) };
}
</script>`;
  const run = await inChromium(t, page);
  if (!run) return;
  assert.deepEqual(run.errors, []);
  assert.equal(run.result.error, undefined, run.result.error);
  assert.ok(run.result.cases > 400);
  assert.deepEqual(run.result.bad, []);
});
