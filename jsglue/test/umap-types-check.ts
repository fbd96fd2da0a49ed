// Type-checked by `tsc -p jsglue` (tsconfig.json lists it; noEmit): a typed use of the uMap
// adapter (umap.d.ts), so that its types stay usable. It is never run.
import { createEngine, type UndoResult } from "../index.js";
import {
  createUmapSync,
  UmapSyncEngine,
  type UmapOperation,
  type UmapSyncProxy,
  type UmapSyncState,
  type UmapTransport,
  type UmapUpdater,
} from "../umap.js";

async function use(): Promise<void> {
  const seen: UmapOperation[] = [];
  const feature: UmapUpdater = {
    applyMessage: (op: UmapOperation) => seen.push(op),
    update: (op) => void op,
    upsert: (op: UmapOperation) => void op.value,
    delete: (op: UmapOperation) => void op.metadata,
    getStoredObject: (metadata) => ({ save: async () => metadata["layerId"] !== undefined }),
  };
  const transport: UmapTransport = { send: (kind: string, payload) => void [kind, payload], isOpen: true, close() {} };
  const sync: UmapSyncEngine = await createUmapSync({
    updaters: { map: { update: () => undefined }, feature },
    engineOptions: { peerId: "alice" },
    onStateChange: (s: UmapSyncState) => void (s.canUndo && s.dirty),
    onError: (e, change) => void [e, change?.kind],
    onReconnect: (s: UmapSyncEngine) => s.attach(transport),
  });
  sync.attach(transport);
  const peer: string = sync.peerId;
  sync.upsert("feature", { id: "f", layerId: "L" }, { type: "Feature", properties: {}, geometry: null });
  sync.update("feature", { id: "f", layerId: "L" }, "properties.name", "x", undefined, { undo: true });
  sync.update("map", undefined, "properties.name", undefined);
  sync.startBatch();
  sync.delete("feature", { id: "f", layerId: "L" });
  sync.commitBatch("feature", { id: "f", layerId: "L" });
  const p: UmapSyncProxy = sync.proxy({ getSyncMetadata: () => ({ subject: "feature", metadata: { id: "f", layerId: "L" } }) });
  p.update("properties.name", "y");
  p.upsert({ type: "Feature" });
  p.delete();
  p.startBatch();
  p.commitBatch();
  const u: UndoResult = sync._undoManager.undo();
  const r: UndoResult = sync.redo();
  const dirty: boolean = sync.isDirty() || sync._undoManager.isDirty();
  const ok: boolean = await sync.save();
  sync.receive({ kind: "ListPeersResponse", peers: { alice: "A" } });
  sync.onOperationMessage({ sender: "b", verb: "update", subject: "map", key: "k", value: 1, hlc: "1:0:b" });
  void [peer, u, r, dirty, ok, sync.getPeers(), sync.engine.state()];
  sync.close();
  const own = new UmapSyncEngine(await createEngine(), { updaters: { map: {} } });
  own.stop();
}
void use;
