// The workload of the benchmark (issue 6): 10,000 operations over 1,000 features × 5 keys.
// Operation i writes key KEYS[floor(i / FEATURES) % 5] of feature i % FEATURES, so every
// key of every feature is written twice, the second time 5,000 operations later.

export const FEATURES = 1000;
export const OPS = 10_000;
export const KEYS = [
  "properties.name",
  "properties.color",
  "properties.description",
  "properties._umap_options.weight",
  "geometry",
];
const COLORS = ["red", "blue", "green", "orange", "DarkViolet"];

export const featureIds = Array.from({ length: FEATURES }, (_, f) => `f${String(f).padStart(4, "0")}`);
export const LAYER = "606d26bd-230f-4d3e-a2a7-0c3caed71548";

/** The metadata of feature f, as uMap's Journal sends it. */
export const metadata = featureIds.map((id) => ({ id, layerId: LAYER, featureType: "marker" }));

/** Operation i: {f (feature index), key, value}. */
export function op(i) {
  const f = i % FEATURES;
  const k = Math.floor(i / FEATURES) % KEYS.length;
  const key = KEYS[k];
  let value;
  switch (k) {
    case 0:
      value = `Feature ${f} (edit ${i})`;
      break;
    case 1:
      value = COLORS[i % COLORS.length];
      break;
    case 2:
      value = `A longer description of feature ${f}, written in edit ${i}: café, Straße, 東京.`;
      break;
    case 3:
      value = 1 + (i % 9);
      break;
    default:
      value = { type: "Point", coordinates: [2.35 + (f % 100) / 1000 + i / 1e6, 48.85 + Math.floor(f / 100) / 1000] };
  }
  return { f, key, value };
}

export const ops = Array.from({ length: OPS }, (_, i) => op(i));

/** W4: replica r writes properties.name of every feature (the same 1,000 keys on each replica). */
export function concurrentOp(r, f) {
  return { f, key: "properties.name", value: `replica ${r} names feature ${f}` };
}

/** JSON with object members sorted: equal for equal content whatever the insertion order. */
export function canonical(v) {
  if (Array.isArray(v)) return "[" + v.map(canonical).join(",") + "]";
  if (v !== null && typeof v === "object") {
    return (
      "{" +
      Object.keys(v)
        .sort()
        .map((k) => JSON.stringify(k) + ":" + canonical(v[k]))
        .join(",") +
      "}"
    );
  }
  return JSON.stringify(v);
}
