// Type-checked by `tsc -p jsglue` when tsconfig.json lists it (noEmit): a typed use of the
// Leaflet helper (leaflet.d.ts), so that its types stay usable. It is never run.
import type * as Leaflet from "leaflet";
import { createEngine, type Change } from "../index.js";
import {
  bindLeaflet,
  canonicalJSON,
  featureTypeOfGeometry,
  randomId,
  type FeatureType,
  type LeafletController,
  type LocalEdit,
  type RenderEvent,
  type RenderedFeature,
} from "../leaflet.js";

declare const L: typeof Leaflet;

async function use(): Promise<void> {
  const engine = await createEngine({ peerId: "a" });
  const featuresLayer = L.featureGroup();
  const map = L.map("map", { editable: true, editOptions: { featuresLayer } } as Leaflet.MapOptions);
  let active = "default";
  const ctl: LeafletController = bindLeaflet({
    map,
    featuresLayer,
    engine,
    L,
    layerId: () => active,
    isLayerVisible: (layerId: string) => layerId !== "hidden",
    newProperties: ({ featureType }) => ({ name: featureType === "marker" ? "pin" : "" }),
    group: (id: string) => "feature:" + id,
    onEdit: (e: LocalEdit) => void e.kind,
    onRender: (e: RenderEvent) => void e.layer,
  });
  const ids: string[] = ctl.seed({ type: "FeatureCollection", features: [] }, "default");
  const id = ctl.addFeature({ geometry: { type: "Point", coordinates: [2.35, 48.85] }, properties: { name: "x" } }, "default");
  ctl.setProperty(id, "name", "Café");
  ctl.setProperty(id, "_umap_options.color", undefined);
  ctl.setProperties(id, { name: "y", "_umap_options.color": "#ff0000" });
  const layer = ctl.layerFor(id);
  if (layer) void ctl.idOf(layer);
  const meta = ctl.metadataOf(id);
  if (meta) {
    const t: FeatureType = meta.featureType;
    void t;
  }
  const all: RenderedFeature[] = ctl.features();
  void all.map((f) => f.visible && f.name);
  void ctl.syncGeometry(id);
  const changes: Change[] = engine.receive("{}");
  ctl.applyChanges(changes);
  ctl.renderAll();
  ctl.refreshVisibility();
  void ctl.deleteFeature(id);
  void ctl.deleteFeatures(ids);
  void (ctl.applying as boolean);
  ctl.unbind();
  active = randomId(5);
  void canonicalJSON({ b: 1, a: [2] });
  const kind: FeatureType | "" = featureTypeOfGeometry({ type: "Point" });
  void kind;
}
void use;
