// What the glue refuses before anything reaches the module, and what a refused call leaves
// behind: nothing (DESIGN §9) — not even in the glue's own caches, which every engine of the
// page shares.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createEngine, MapcrdtError } from "../index.js";

/** Asserts that fn throws a MapcrdtError of code (and a message matching re, if given). */
function throwsCode(fn, code, re) {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof MapcrdtError, `not a MapcrdtError: ${e && e.stack}`);
    assert.equal(e.code, code, `code of "${e.message}"`);
    if (re) assert.match(e.message, re);
    return true;
  });
}

test("metadata that is no plain object leaves nothing in the glue's cache of metadata texts", async () => {
  const a = await createEngine({ peerId: "a" });
  const b = await createEngine({ peerId: "b" });
  // An array with an id has the own keys and values of {id} but the JSON text "[]"; a
  // boxed primitive with an id, those of {id} (or {0, 1, id}) and the text of the primitive.
  const array = [];
  array.id = "dl1";
  const number = Object.assign(new Number(5), { id: "dl2" });
  const string = Object.assign(new String("ab"), { id: "dl3" });
  for (const bad of [array, number, string]) {
    throwsCode(() => a.upsert("datalayer", bad, { name: "bad" }), "bad_metadata");
  }
  for (const e of [a, b]) {
    e.upsert("datalayer", { id: "dl1" }, { name: "good" });
    e.upsert("datalayer", { id: "dl2" }, { name: "good" });
    e.upsert("datalayer", { 0: "a", 1: "b", id: "dl3" }, { name: "good" });
    assert.deepEqual(e.get("datalayer", { id: "dl1" }), { name: "good" });
    assert.deepEqual(e.get("datalayer", { id: "dl2" }), { name: "good" });
  }
  assert.equal(a.state(), b.state());
  a.close();
  b.close();
});

test("metadata read through getters: the text kept is that of the values read, once each", async () => {
  const a = await createEngine({ peerId: "a" });
  // A getter answering another value at each read: JSON.stringify reads it once, the cache's
  // check again. The metadata sent is what one read gave, and a plain object later is
  // written as it is, whatever the getter's object left in the cache.
  let n = 0;
  const fickle = {
    id: "f1",
    get layerId() {
      return "L" + n++;
    },
  };
  for (let i = 0; i < 4; i++) {
    // After the getter's object, a plain one with the value of each of the next reads.
    for (const ahead of [0, 1, 2]) {
      a.unset("feature", fickle, "properties.x");
      const [sent] = a.flush();
      assert.match(JSON.parse(sent).metadata.layerId, /^L\d+$/);
      const l = "L" + (n + ahead - 1);
      a.unset("feature", { id: "f1", layerId: l }, "properties.x");
      const [msg] = a.flush();
      assert.deepEqual(JSON.parse(msg).metadata, { id: "f1", layerId: l });
    }
  }
  a.close();
});
