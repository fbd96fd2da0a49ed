// Types of mapcrdt's Leaflet helper (leaflet.js). Hand-written. The helper wires a Leaflet
// map edited with Leaflet.Editable to an engine of index.js (DESIGN §10). Leaflet's own types
// come from @types/leaflet; Leaflet.Editable has none, so the layers it adds methods to
// (enableEdit, editor …) are typed loosely here.

import type * as Leaflet from "leaflet";
import type { Change, Engine, JSONValue } from "./index.js";

/** The feature types the helper renders and creates (uMap's featureType values). */
export type FeatureType = "marker" | "polyline" | "polygon";

/** The metadata of a feature operation: identity (layerId + id) and featureType. */
export interface FeatureMetadata {
  id: string;
  /** The datalayer's id. */
  layerId: string;
  featureType: FeatureType;
}

/** A layer the helper renders or creates: a marker, a polyline or a polygon. */
export type FeatureLayer = Leaflet.Marker | Leaflet.Polyline | Leaflet.Polygon;

/** A GeoJSON feature as the engine holds it. */
export interface GeoJSONFeature {
  type: "Feature";
  id?: string | number;
  geometry: { type: string; coordinates: JSONValue[] } & { [key: string]: JSONValue };
  properties?: { [key: string]: JSONValue } | null;
}

/** A GeoJSON FeatureCollection (what a uMap datalayer is, saved on the server). */
export interface GeoJSONFeatureCollection {
  type?: "FeatureCollection";
  features: GeoJSONFeature[];
  [key: string]: unknown;
}

/**
 * What onEdit receives after each local edit the helper made to the engine ("deleted" also
 * for a feature whose every vertex or part the user deleted: see syncGeometry).
 */
export interface LocalEdit {
  kind: "created" | "geometry" | "property" | "deleted";
  /** The feature id (comma-separated ids for deleteFeatures). */
  id: string;
  /** The feature's datalayer ("" for deleteFeatures, whose features may be in several). */
  layerId: string;
  /** For "property": the key(s) under properties. */
  key?: string;
}

/** What onRender receives after the helper rendered a feature from the engine's state. */
export interface RenderEvent {
  id: string;
  layerId: string;
  kind: "created" | "updated" | "removed";
  layer: FeatureLayer;
}

/** One feature as the controller shows it. */
export interface RenderedFeature {
  id: string;
  layerId: string;
  featureType: FeatureType;
  layer: FeatureLayer;
  /** properties.name as rendered (its label); "" if none. */
  name: string;
  /** properties._umap_options.color as rendered (or the default color). */
  color: string;
  /** Whether the layer is in featuresLayer (false while its datalayer is hidden). */
  visible: boolean;
}

/** Options of bindLeaflet. */
export interface BindOptions {
  /** The map; created with `editable: true` and `editOptions: {featuresLayer}`. */
  map: Leaflet.Map;
  /** The group Leaflet.Editable adds new features to, and where remote features go. */
  featuresLayer: Leaflet.FeatureGroup | Leaflet.LayerGroup;
  engine: Engine;
  /**
   * The datalayer of a feature created by drawing: an id, or a function of the new layer
   * (called on `editable:created`, and again when the drawing is committed — the feature
   * goes to the datalayer it gives then: the first may have been deleted meanwhile; with
   * null for addFeature without a layerId).
   */
  layerId: string | ((layer: FeatureLayer | null) => string);
  /** The Leaflet namespace (default: globalThis.L). */
  L?: typeof Leaflet;
  /** Decimal places of coordinates sent: a whole number from 0 to 15 (default 6, as Leaflet's toGeoJSON). */
  precision?: number;
  /** Ids of new features (default: 8 random characters [A-Za-z0-9]). */
  newId?: () => string;
  /** The properties of a feature created by drawing (default {}; a color is added). */
  newProperties?: (feature: { id: string; layerId: string; featureType: FeatureType; layer: FeatureLayer }) => {
    [key: string]: JSONValue;
  };
  /** The color of features without properties._umap_options.color (default "#3388ff"). */
  defaultColor?: string;
  /** The icon of a marker of that color (default: an SVG pin in a divIcon). */
  markerIcon?: (color: string) => Leaflet.Icon | Leaflet.DivIcon;
  /** Whether the features of a datalayer are shown (default: always). See refreshVisibility. */
  isLayerVisible?: (layerId: string) => boolean;
  /** Whether a shown layer has its Leaflet.Editable editing enabled (default: markers, so they drag). */
  editable?: (layer: FeatureLayer) => boolean;
  /** An undo group for each edit of a feature (EditOptions.group); default none. */
  group?: (id: string, layerId: string) => string;
  /** Called after each local edit the helper made (to flush the outbox, save a snapshot …). */
  onEdit?: (edit: LocalEdit) => void;
  /**
   * Called after the helper rendered a feature from the engine's state. While many features
   * are drawn at once (16 or more changes, seed, renderAll) the map's panes are hidden, so
   * reading a layer's size or place in the page gives 0 there. What it throws is reported
   * (rethrown in a microtask), and stops nothing.
   */
  onRender?: (event: RenderEvent) => void;
}

/** What bindLeaflet returns. */
export interface LeafletController {
  readonly engine: Engine;
  /** True while the helper is changing layers from the engine's state. */
  readonly applying: boolean;
  /**
   * Seeds the engine with a datalayer loaded from the server (engine.seed: never sent,
   * never undone) and renders it. A feature's id is its `id`, else its `properties.id`, else
   * `${layerId}-${index}` (its index in features); a number id is taken as its text.
   * Returns the ids seeded. A feature whose geometry the helper does not draw is skipped:
   * the helper draws Point, LineString, MultiLineString, Polygon and MultiPolygon
   * geometries whose every position is [lng, lat] or [lng, lat, alt] (more members
   * allowed) in finite numbers only, lat within ±90 and lng within ±1,000,000, and with no
   * degenerate part (a line of fewer than 2 positions, a ring of fewer than 3 vertices, a
   * polygon or multi-geometry with no parts). A peer's feature with such a geometry is
   * not drawn either.
   */
  seed(collection: GeoJSONFeatureCollection, layerId: string): string[];
  /**
   * Renders the features these changes touch, from the engine's state. The controller
   * already does this for every engine.onChange event; calling it again is harmless.
   * The controller draws one layer per feature id: a feature whose id is drawn for another
   * datalayer waits, and is drawn when that one goes (a feature moved to another datalayer
   * ends drawn there, whichever order the move's batch holds).
   * A layer the user is dragging (a marker, a vertex of a line or polygon; from the press on
   * it, before the first move) is not redrawn until the drag ends: at the release its geometry is sent if the drag changed it (the
   * later write: a peer's geometry received meanwhile is overwritten), then what the engine
   * holds is drawn. A press whose release the page may never get ends the hold at a context
   * menu (Ctrl-click on macOS) or the window's blur. A feature deleted meanwhile is removed at once. A committed line or
   * polygon the user goes on drawing (Leaflet.Editable's continueForward, continueBackward,
   * newShape, newHole) is held the same way until editable:drawing:end, where its geometry
   * is sent if it changed (committed, or cancelled with the clicked points kept on the layer).
   */
  applyChanges(changes: readonly Change[]): void;
  /** Renders every feature of engine.state() and removes layers of absent features. */
  renderAll(): void;
  /** The layer of a feature, if rendered. */
  layerFor(id: string): FeatureLayer | undefined;
  /** The feature id of a layer the helper knows. */
  idOf(layer: Leaflet.Layer): string | undefined;
  metadataOf(id: string): FeatureMetadata | undefined;
  /** Every committed feature the helper knows, shown or hidden. */
  features(): RenderedFeature[];
  /**
   * Creates a feature (engine.upsert) and renders it; returns its id. Throws a TypeError for
   * a geometry the helper would not draw (see seed).
   */
  addFeature(feature: Omit<GeoJSONFeature, "type"> & { type?: "Feature" }, layerId?: string): string;
  /**
   * Sets properties[key] (a dotted path: "name", "_umap_options.color"); undefined unsets it.
   * Throws an Error for an id the controller has no committed feature of (so do
   * setProperties and syncGeometry); the engine's errors (MapcrdtError) pass through.
   */
  setProperty(id: string, key: string, value: JSONValue | undefined): void;
  /**
   * Several properties in one batch: one message, one undo step. Inside a batch the caller
   * opened (engine.batch, startBatch) they join it.
   */
  setProperties(id: string, values: { [key: string]: JSONValue | undefined }): void;
  /**
   * Sends the layer's current geometry if it changed (what a completed drag does). A
   * degenerate part — a polygon's hole of fewer than 3 vertices (Leaflet.Editable deletes a
   * hole vertex by vertex), a part of a multi-geometry with too few vertices (a new part
   * committed after one click) — is left out of what is sent, and then of the layer: sent,
   * it would make the feature one no map draws. A geometry with nothing drawable left — a
   * line of fewer than 2 vertices, a polygon whose outline has fewer than 3 (whatever its
   * holes: they go with it), a multi-geometry whose every part went (one part left is
   * kept, still a multi-geometry) — deletes the feature, as uMap deletes a feature
   * left without geometry: one engine.delete (one undo step, or the feature's group's; its
   * undo brings back the geometry sent before), the layer removed, onEdit told "deleted"
   * (true returned). What editable:edited does, after each vertex or part the user deletes.
   */
  syncGeometry(id: string): boolean;
  /** Deletes a feature (engine.delete) and removes its layer. False if it was not in the engine. */
  deleteFeature(id: string): boolean;
  /** Deletes features in one batch (one undo step; the caller's, if one is open). Returns how many. */
  deleteFeatures(ids: readonly string[]): number;
  /** Shows and hides layers after isLayerVisible's answers changed. */
  refreshVisibility(): void;
  /** Stops listening to the map and the engine; the layers stay. */
  unbind(): void;
}

/**
 * Binds a Leaflet map edited with Leaflet.Editable to an engine; renders the engine's features.
 * Throws a TypeError for a missing required option or an option BindOptions does not name.
 */
export function bindLeaflet(options: BindOptions): LeafletController;

/** A random id of n characters [A-Za-z0-9] (default 8). */
export function randomId(n?: number): string;

/** JSON text with object members sorted, for comparing values whatever their key order. */
export function canonicalJSON(value: unknown): string;

/** "marker", "polyline" or "polygon" for a GeoJSON geometry; "" if unsupported. */
export function featureTypeOfGeometry(geometry: { type?: string } | null | undefined): FeatureType | "";
