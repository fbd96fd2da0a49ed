// Type-checked by `tsc -p jsglue` (noEmit): a typed use of the whole API, so that index.d.ts
// stays usable and in step with what the tests exercise. It is never run.
import {
  createEngine,
  initialize,
  jsonText,
  merge,
  MapcrdtError,
  type Change,
  type ChangeEvent,
  type Engine,
  type EngineOptions,
  type UndoResult,
} from "../index.js";

async function use(): Promise<void> {
  await initialize({ wasmURL: new URL("../mapcrdt.wasm", import.meta.url) });
  const options: EngineOptions = { peerId: "a", maxDrift: 60_000, undoDepth: 50, captureInterval: 500, now: Date.now, limits: { maxDepth: 32 } };
  const a: Engine = await createEngine(options);
  const b = await createEngine({ snapshot: a.snapshot() });
  const meta = { id: "f1", layerId: "L1", featureType: "marker" };

  const off = a.onChange((e: ChangeEvent) => {
    for (const c of e.changes) {
      const kind: "created" | "deleted" | "set" | "unset" = c.kind;
      void kind;
      void c.metadata["id"];
    }
    if (e.origin === "undo" && e.skipped) void e.skipped.length;
  });
  a.upsert("feature", meta, { type: "Feature", geometry: { type: "Point", coordinates: [1, 2] }, properties: {} });
  a.update("feature", meta, "properties.name", "Café", { group: "form" });
  a.update("datalayer", { id: "L1" }, "_referenceVersion", "v1", { undo: false });
  a.update("feature", jsonText('{"id":"f1","layerId":"L1"}'), "geometry", jsonText('{"type":"Point","coordinates":[3,4]}'));
  a.unset("feature", meta, "properties.name");
  a.edit({ verb: "delete", subject: "feature", metadata: meta });
  const n: number = a.batch((e) => {
    e.update("map", {}, "properties.name", "My map");
    return 1;
  });
  void n;
  a.seed("datalayer", { id: "L1" }, { type: "FeatureCollection", features: [] });

  const out: string[] = a.flush();
  for (const m of out) {
    const changes: Change[] = b.receive(m);
    void changes;
  }
  const { replies, changes } = a.onPeerMessage(b.syncRequest(a.peerId));
  void replies.concat([]);
  void changes;
  const u: UndoResult = a.undo();
  if (u.done && a.canRedo()) a.redo();
  const v = a.get("feature", meta, "properties.name");
  if (typeof v === "string") v.toUpperCase();
  const s: string = a.state();
  const st = a.compact();
  void (s.length + st.ops + st.bytes + st.remaining + a.pending());
  a.markSaved(a.clock());
  void a.savedMessage();
  void a.dirty().map((d) => d.subject);
  void a.vector()["a"];
  a.setPeers(["b"]);
  void a.peers();
  void a.memory(true).heapAlloc;
  off();
  a.close();

  try {
    await merge('{"type":"FeatureCollection","features":[]}', { type: "FeatureCollection", features: [] }, new Uint8Array(), { policy: "latest" });
    await merge(new ArrayBuffer(0), new Uint8Array(), "{}");
    await merge("{}", "{}", "{}", { offThread: true, wasmURL: new URL("https://x/mapcrdt.wasm") });
    // @ts-expect-error offThread is a boolean
    await merge("{}", "{}", "{}", { offThread: "yes" });
  } catch (e) {
    if (e instanceof MapcrdtError && e.code === "conflict") void e.conflicts?.[0]?.featureId;
  }
}
void use;
