package crdt

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// mdoc is a datalayer document being edited by a test: decoded JSON, numbers kept as
// written.
type mdoc map[string]any

func decodeMDoc(t testing.TB, data []byte) mdoc {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var d mdoc
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("decode: %v\n%s", err, data)
	}
	return d
}

// mergeParis loads the reference datalayer of the table tests: two markers, a line and a
// mergePolygon with _umap_options, and one mergeMarker without an id.
func mergeParis(t testing.TB) mdoc {
	t.Helper()
	data, err := os.ReadFile("testdata/merge/paris.json")
	if err != nil {
		t.Fatal(err)
	}
	return decodeMDoc(t, data)
}

func (d mdoc) bytes(t testing.TB) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any(d))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (d mdoc) clone(t testing.TB) mdoc { return decodeMDoc(t, d.bytes(t)) }

func (d mdoc) features() []any { return d["features"].([]any) }

func (d mdoc) feature(id string) map[string]any {
	for _, f := range d.features() {
		if f := f.(map[string]any); f["id"] == id {
			return f
		}
	}
	panic("no feature " + id)
}

func (d mdoc) props(id string) map[string]any {
	return d.feature(id)["properties"].(map[string]any)
}

func (d mdoc) opts(id string) map[string]any {
	return d.props(id)["_umap_options"].(map[string]any)
}

func (d mdoc) layerOpts() map[string]any { return d["_umap_options"].(map[string]any) }

func (d mdoc) remove(id string) {
	d["features"] = slices.DeleteFunc(d.features(), func(f any) bool { return f.(map[string]any)["id"] == id })
}

func (d mdoc) add(f map[string]any) { d["features"] = append(d.features(), f) }

func mergeMarker(id, name string, lng, lat float64) map[string]any {
	f := map[string]any{
		"type":       "Feature",
		"geometry":   map[string]any{"type": "Point", "coordinates": []any{lng, lat}},
		"properties": map[string]any{"name": name, "_umap_options": map[string]any{"color": "Orange"}},
	}
	if id != "" {
		f["id"] = id
	}
	return f
}

func mergePolygon(id, name string) map[string]any {
	return map[string]any{
		"type": "Feature",
		"id":   id,
		"geometry": map[string]any{"type": "Polygon", "coordinates": []any{[]any{
			[]any{2.35, 48.85}, []any{2.36, 48.85}, []any{2.36, 48.86}, []any{2.35, 48.85},
		}}},
		"properties": map[string]any{"name": name, "_umap_options": map[string]any{"fillColor": "Purple"}},
	}
}

// mergeCanon is the form Merge writes a document in, for comparing expectations.
func mergeCanon(t testing.TB, data []byte) string {
	t.Helper()
	c, err := canonicalJSON(string(data), 64)
	if err != nil {
		t.Fatalf("mergeCanon: %v", err)
	}
	return string(appendValueForm(nil, c))
}

// mergeEdit returns a copy of d changed by fn (fn nil: unchanged).
func mergeEdit(t testing.TB, d mdoc, fn func(mdoc)) mdoc {
	c := d.clone(t)
	if fn != nil {
		fn(c)
	}
	return c
}

// TestMergeTable: two saves made from testdata/merge/paris.json, each case under the three
// policies: a clean merge is the same under all three; a conflicted one fails under
// MergeFail (naming the first conflict) and resolves each way under the others.
func TestMergeTable(t *testing.T) {
	type edits = func(mdoc)
	tests := []struct {
		name             string
		latest, incoming edits
		want             edits      // the merge, when there is no conflict
		conflicts        []Conflict // expected conflicts, values as canonical JSON
		wantLatestWins   edits      // the merge under MergeLatestWins, when there are conflicts
		wantIncomingWins edits      // … and under MergeIncomingWins
	}{
		{
			name:     "both sides add",
			latest:   func(d mdoc) { d.add(mergeMarker("QmFyc", "Bar du Marché", 2.3387, 48.8530)) },
			incoming: func(d mdoc) { d.add(mergePolygon("UGFyY", "Parc Monceau")) },
			want: func(d mdoc) {
				d.add(mergeMarker("QmFyc", "Bar du Marché", 2.3387, 48.8530))
				d.add(mergePolygon("UGFyY", "Parc Monceau"))
			},
		},
		{
			name:     "both sides add the same feature",
			latest:   func(d mdoc) { d.add(mergeMarker("QmFyc", "Bar du Marché", 2.3387, 48.8530)) },
			incoming: func(d mdoc) { d.add(mergeMarker("QmFyc", "Bar du Marché", 2.3387, 48.8530)) },
			want:     func(d mdoc) { d.add(mergeMarker("QmFyc", "Bar du Marché", 2.3387, 48.8530)) },
		},
		{
			name:     "both sides delete the same feature",
			latest:   func(d mdoc) { d.remove("Mzk2N") },
			incoming: func(d mdoc) { d.remove("Mzk2N") },
			want:     func(d mdoc) { d.remove("Mzk2N") },
		},
		{
			name:     "one side deletes, the other leaves it",
			latest:   func(d mdoc) { d.props("Mzc1M")["name"] = "Musée du Louvre" },
			incoming: func(d mdoc) { d.remove("NTE1Y") },
			want: func(d mdoc) {
				d.props("Mzc1M")["name"] = "Musée du Louvre"
				d.remove("NTE1Y")
			},
		},
		{
			name:     "incoming edits what latest deleted",
			latest:   func(d mdoc) { d.remove("UxNjQ") },
			incoming: func(d mdoc) { d.opts("UxNjQ")["color"] = "Black" },
			conflicts: []Conflict{{FeatureID: "UxNjQ", Key: "",
				Reference: "*", Latest: "", Incoming: "*"}},
			wantLatestWins: func(d mdoc) { d.remove("UxNjQ") },
			wantIncomingWins: func(d mdoc) {
				f := d.feature("UxNjQ")
				f["properties"].(map[string]any)["_umap_options"].(map[string]any)["color"] = "Black"
				d.remove("UxNjQ")
				d.add(f) // latest does not hold it: after latest's features
			},
		},
		{
			name: "latest edits what incoming deleted",
			latest: func(d mdoc) {
				d.feature("Mzc1M")["geometry"] = map[string]any{"type": "Point", "coordinates": []any{2.3377, 48.8607}}
			},
			incoming:  func(d mdoc) { d.remove("Mzc1M") },
			conflicts: []Conflict{{FeatureID: "Mzc1M", Key: "", Reference: "*", Latest: "*", Incoming: ""}},
			wantLatestWins: func(d mdoc) {
				d.feature("Mzc1M")["geometry"] = map[string]any{"type": "Point", "coordinates": []any{2.3377, 48.8607}}
			},
			wantIncomingWins: func(d mdoc) {
				d.remove("Mzc1M")
			},
		},
		{
			name:     "different properties of one feature",
			latest:   func(d mdoc) { d.props("UxNjQ")["name"] = "Le Flore" },
			incoming: func(d mdoc) { d.props("UxNjQ")["description"] = "Terrasse chauffée" },
			want: func(d mdoc) {
				d.props("UxNjQ")["name"] = "Le Flore"
				d.props("UxNjQ")["description"] = "Terrasse chauffée"
			},
		},
		{
			name:     "different _umap_options of one feature",
			latest:   func(d mdoc) { d.opts("Mzk2N")["color"] = "Red" },
			incoming: func(d mdoc) { d.opts("Mzk2N")["weight"] = "3"; delete(d.opts("Mzk2N"), "dashArray") },
			want: func(d mdoc) {
				d.opts("Mzk2N")["color"] = "Red"
				d.opts("Mzk2N")["weight"] = "3"
				delete(d.opts("Mzk2N"), "dashArray")
			},
		},
		{
			name:     "same property, same value",
			latest:   func(d mdoc) { d.props("NTE1Y")["name"] = "Jardin du Luxembourg (Sénat)" },
			incoming: func(d mdoc) { d.props("NTE1Y")["name"] = "Jardin du Luxembourg (Sénat)" },
			want:     func(d mdoc) { d.props("NTE1Y")["name"] = "Jardin du Luxembourg (Sénat)" },
		},
		{
			name:     "same property, different values",
			latest:   func(d mdoc) { d.props("NTE1Y")["name"] = "Luxembourg" },
			incoming: func(d mdoc) { d.props("NTE1Y")["name"] = "Jardin du Sénat" },
			conflicts: []Conflict{{FeatureID: "NTE1Y", Key: "properties.name",
				Reference: `"Jardin du Luxembourg"`, Latest: `"Luxembourg"`, Incoming: `"Jardin du Sénat"`}},
			wantLatestWins:   func(d mdoc) { d.props("NTE1Y")["name"] = "Luxembourg" },
			wantIncomingWins: func(d mdoc) { d.props("NTE1Y")["name"] = "Jardin du Sénat" },
		},
		{
			name: "conflicts and clean changes together",
			latest: func(d mdoc) {
				d.opts("UxNjQ")["color"] = "Black"
				d.props("UxNjQ")["name"] = "Le Flore"
			},
			incoming: func(d mdoc) {
				d.opts("UxNjQ")["color"] = "White"
				d.props("Mzc1M")["url"] = "https://www.louvre.fr/visiter"
			},
			conflicts: []Conflict{{FeatureID: "UxNjQ", Key: "properties._umap_options.color",
				Reference: `"DarkRed"`, Latest: `"Black"`, Incoming: `"White"`}},
			wantLatestWins: func(d mdoc) {
				d.opts("UxNjQ")["color"] = "Black"
				d.props("UxNjQ")["name"] = "Le Flore"
				d.props("Mzc1M")["url"] = "https://www.louvre.fr/visiter"
			},
			wantIncomingWins: func(d mdoc) {
				d.opts("UxNjQ")["color"] = "White"
				d.props("UxNjQ")["name"] = "Le Flore"
				d.props("Mzc1M")["url"] = "https://www.louvre.fr/visiter"
			},
		},
		{
			name:     "a property deleted on one side, changed on the other",
			latest:   func(d mdoc) { delete(d.props("Mzc1M"), "description") },
			incoming: func(d mdoc) { d.props("Mzc1M")["description"] = "Musée national" },
			conflicts: []Conflict{{FeatureID: "Mzc1M", Key: "properties.description",
				Reference: `"Musée"`, Latest: "", Incoming: `"Musée national"`}},
			wantLatestWins:   func(d mdoc) { delete(d.props("Mzc1M"), "description") },
			wantIncomingWins: func(d mdoc) { d.props("Mzc1M")["description"] = "Musée national" },
		},
		{
			name:     "a property deleted on one side, left on the other",
			latest:   func(d mdoc) { d.props("Mzc1M")["name"] = "Musée du Louvre" },
			incoming: func(d mdoc) { delete(d.props("Mzc1M"), "url") },
			want: func(d mdoc) {
				d.props("Mzc1M")["name"] = "Musée du Louvre"
				delete(d.props("Mzc1M"), "url")
			},
		},
		{
			// uMap writes a feature without options without "_umap_options" (its
			// Feature.cloneProperties drops an empty one): latest reset every option. That
			// is, option by option, three deleted and one deleted against an edit.
			name:     "_umap_options removed on one side, one option changed on the other",
			latest:   func(d mdoc) { delete(d.props("NTE1Y"), "_umap_options") },
			incoming: func(d mdoc) { d.opts("NTE1Y")["fillOpacity"] = "0.6" },
			conflicts: []Conflict{{FeatureID: "NTE1Y", Key: "properties._umap_options.fillOpacity",
				Reference: `"0.4"`, Latest: "", Incoming: `"0.6"`}},
			wantLatestWins: func(d mdoc) { delete(d.props("NTE1Y"), "_umap_options") },
			wantIncomingWins: func(d mdoc) {
				d.props("NTE1Y")["_umap_options"] = map[string]any{"fillOpacity": "0.6"}
			},
		},
		{
			// One user resets the feature's options (uMap then writes no "_umap_options"),
			// the other sets one it did not have: no conflict, key by key.
			name:     "_umap_options removed on one side, a new option set on the other",
			latest:   func(d mdoc) { delete(d.props("UxNjQ"), "_umap_options") },
			incoming: func(d mdoc) { d.opts("UxNjQ")["showLabel"] = true },
			want: func(d mdoc) {
				d.props("UxNjQ")["_umap_options"] = map[string]any{"showLabel": true}
			},
		},
		{
			// Mzc1M has no options; both sides give it one: an object added on both sides.
			// And a merge that leaves no option writes none, as uMap does.
			name: "_umap_options added on both sides; emptied by the merge",
			latest: func(d mdoc) {
				d.props("Mzc1M")["_umap_options"] = map[string]any{"color": "Red"}
				delete(d.opts("Mzk2N"), "color")
				delete(d.opts("Mzk2N"), "weight")
			},
			incoming: func(d mdoc) {
				d.props("Mzc1M")["_umap_options"] = map[string]any{"weight": "3"}
				delete(d.opts("Mzk2N"), "dashArray")
				delete(d.opts("Mzk2N"), "smoothFactor")
			},
			want: func(d mdoc) {
				d.props("Mzc1M")["_umap_options"] = map[string]any{"color": "Red", "weight": "3"}
				delete(d.props("Mzk2N"), "_umap_options")
			},
		},
		{
			name: "geometry on one side, properties on the other",
			latest: func(d mdoc) {
				d.feature("Mzk2N")["geometry"].(map[string]any)["coordinates"] = []any{[]any{2.2945, 48.8584}, []any{2.3499, 48.853}}
			},
			incoming: func(d mdoc) {
				d.opts("Mzk2N")["color"] = "Navy"
				d.props("Mzk2N")["name"] = "Quais de Seine"
			},
			want: func(d mdoc) {
				d.feature("Mzk2N")["geometry"].(map[string]any)["coordinates"] = []any{[]any{2.2945, 48.8584}, []any{2.3499, 48.853}}
				d.opts("Mzk2N")["color"] = "Navy"
				d.props("Mzk2N")["name"] = "Quais de Seine"
			},
		},
		{
			name: "geometry on both sides (one value)",
			latest: func(d mdoc) {
				d.feature("UxNjQ")["geometry"] = map[string]any{"type": "Point", "coordinates": []any{2.3331, 48.854}}
			},
			incoming: func(d mdoc) {
				d.feature("UxNjQ")["geometry"] = map[string]any{"type": "Point", "coordinates": []any{2.333, 48.8541}}
			},
			conflicts: []Conflict{{FeatureID: "UxNjQ", Key: "geometry",
				Reference: `{"coordinates":[2.333,48.8539],"type":"Point"}`,
				Latest:    `{"coordinates":[2.3331,48.854],"type":"Point"}`,
				Incoming:  `{"coordinates":[2.333,48.8541],"type":"Point"}`}},
			wantLatestWins: func(d mdoc) {
				d.feature("UxNjQ")["geometry"] = map[string]any{"type": "Point", "coordinates": []any{2.3331, 48.854}}
			},
			wantIncomingWins: func(d mdoc) {
				d.feature("UxNjQ")["geometry"] = map[string]any{"type": "Point", "coordinates": []any{2.333, 48.8541}}
			},
		},
		{
			name:   "layer options, different keys",
			latest: func(d mdoc) { d.layerOpts()["name"] = "Paris à vélo" },
			incoming: func(d mdoc) {
				d.layerOpts()["color"] = "Teal"
				d.layerOpts()["remoteData"] = map[string]any{"format": "geojson"}
			},
			want: func(d mdoc) {
				d.layerOpts()["name"] = "Paris à vélo"
				d.layerOpts()["color"] = "Teal"
				d.layerOpts()["remoteData"] = map[string]any{"format": "geojson"}
			},
		},
		{
			name:     "layer options, same key",
			latest:   func(d mdoc) { d.layerOpts()["color"] = "Teal" },
			incoming: func(d mdoc) { d.layerOpts()["color"] = "Gold" },
			conflicts: []Conflict{{FeatureID: "", Key: "_umap_options.color",
				Reference: `"DarkRed"`, Latest: `"Teal"`, Incoming: `"Gold"`}},
			wantLatestWins:   func(d mdoc) { d.layerOpts()["color"] = "Teal" },
			wantIncomingWins: func(d mdoc) { d.layerOpts()["color"] = "Gold" },
		},
		{
			// uMap adds a field to the layer's list for each property key a user adds: two
			// users adding one each is ordinary concurrent editing, not a conflict.
			name: "layer fields, each side appends one: both kept, latest's first",
			latest: func(d mdoc) {
				d.layerOpts()["fields"] = append(d.layerOpts()["fields"].([]any), map[string]any{"key": "phone", "type": "String"})
			},
			incoming: func(d mdoc) {
				d.layerOpts()["fields"] = append(d.layerOpts()["fields"].([]any), map[string]any{"key": "hours", "type": "String"})
			},
			want: func(d mdoc) {
				d.layerOpts()["fields"] = append(d.layerOpts()["fields"].([]any),
					map[string]any{"key": "phone", "type": "String"}, map[string]any{"key": "hours", "type": "String"})
			},
		},
		{
			name: "layer fields, both sides append the same one: kept once",
			latest: func(d mdoc) {
				d.layerOpts()["fields"] = append(d.layerOpts()["fields"].([]any), map[string]any{"key": "phone", "type": "String"})
			},
			incoming: func(d mdoc) {
				d.layerOpts()["fields"] = append(d.layerOpts()["fields"].([]any),
					map[string]any{"type": "String", "key": "phone"}, map[string]any{"key": "hours", "type": "String"})
			},
			want: func(d mdoc) {
				d.layerOpts()["fields"] = append(d.layerOpts()["fields"].([]any),
					map[string]any{"key": "phone", "type": "String"}, map[string]any{"key": "hours", "type": "String"})
			},
		},
		{
			name: "layer fields, one side appends, the other removes one: a conflict",
			latest: func(d mdoc) {
				d.layerOpts()["fields"] = append(d.layerOpts()["fields"].([]any), map[string]any{"key": "phone", "type": "String"})
			},
			incoming: func(d mdoc) {
				d.layerOpts()["fields"] = slices.Delete(d.layerOpts()["fields"].([]any), 1, 2)
			},
			conflicts: []Conflict{{FeatureID: "", Key: "_umap_options.fields", Reference: "*", Latest: "*", Incoming: "*"}},
			wantLatestWins: func(d mdoc) {
				d.layerOpts()["fields"] = append(d.layerOpts()["fields"].([]any), map[string]any{"key": "phone", "type": "String"})
			},
			wantIncomingWins: func(d mdoc) {
				d.layerOpts()["fields"] = slices.Delete(d.layerOpts()["fields"].([]any), 1, 2)
			},
		},
		{
			name: "layer fields, one side appends, the other reorders and appends: a conflict",
			latest: func(d mdoc) {
				fs := d.layerOpts()["fields"].([]any)
				fs[0], fs[1] = fs[1], fs[0]
				d.layerOpts()["fields"] = append(fs, map[string]any{"key": "hours", "type": "String"})
			},
			incoming: func(d mdoc) {
				d.layerOpts()["fields"] = append(d.layerOpts()["fields"].([]any), map[string]any{"key": "phone", "type": "String"})
			},
			conflicts: []Conflict{{FeatureID: "", Key: "_umap_options.fields", Reference: "*", Latest: "*", Incoming: "*"}},
			wantLatestWins: func(d mdoc) {
				fs := d.layerOpts()["fields"].([]any)
				fs[0], fs[1] = fs[1], fs[0]
				d.layerOpts()["fields"] = append(fs, map[string]any{"key": "hours", "type": "String"})
			},
			wantIncomingWins: func(d mdoc) {
				d.layerOpts()["fields"] = append(d.layerOpts()["fields"].([]any), map[string]any{"key": "phone", "type": "String"})
			},
		},
		{
			name: "a feature without id, edited on one side, is replaced",
			latest: func(d mdoc) {
				f := d.features()[4].(map[string]any)
				f["properties"].(map[string]any)["name"] = "Tour Eiffel"
			},
			incoming: func(d mdoc) { d.props("Mzc1M")["name"] = "Musée du Louvre" },
			want: func(d mdoc) {
				f := d.features()[4].(map[string]any)
				f["properties"].(map[string]any)["name"] = "Tour Eiffel"
				d.props("Mzc1M")["name"] = "Musée du Louvre"
			},
		},
		{
			name: "a feature without id, edited differently on both sides: both kept",
			latest: func(d mdoc) {
				d.features()[4].(map[string]any)["properties"].(map[string]any)["name"] = "Tour Eiffel"
			},
			incoming: func(d mdoc) {
				d.features()[4].(map[string]any)["properties"].(map[string]any)["name"] = "La tour Eiffel"
			},
			want: func(d mdoc) {
				other := mergeDeepCopy(d.features()[4]).(map[string]any)
				other["properties"].(map[string]any)["name"] = "La tour Eiffel"
				d.features()[4].(map[string]any)["properties"].(map[string]any)["name"] = "Tour Eiffel"
				d.add(other)
			},
		},
		{
			name:     "features without id, the same one added on both sides",
			latest:   func(d mdoc) { d.add(mergeMarker("", "Notre-Dame", 2.3499, 48.853)) },
			incoming: func(d mdoc) { d.add(mergeMarker("", "Notre-Dame", 2.3499, 48.853)) },
			want:     func(d mdoc) { d.add(mergeMarker("", "Notre-Dame", 2.3499, 48.853)) },
		},
		{
			name: "features without id, deleted on one side",
			latest: func(d mdoc) {
				d["features"] = d.features()[:4]
			},
			incoming: func(d mdoc) { d.add(mergeMarker("", "Notre-Dame", 2.3499, 48.853)) },
			want: func(d mdoc) {
				d["features"] = d.features()[:4]
				d.add(mergeMarker("", "Notre-Dame", 2.3499, 48.853))
			},
		},
		{
			name: "feature order: latest's, then incoming's new ones in their order",
			latest: func(d mdoc) {
				fs := d.features()
				fs[0], fs[3] = fs[3], fs[0] // latest moved the mergePolygon first
				d.add(mergeMarker("TGF0Z", "Latest's new", 2.30, 48.87))
			},
			incoming: func(d mdoc) {
				fs := d.features()
				// Incoming inserts two new features at the front, and one in the middle.
				n := []any{mergeMarker("SW5jM", "Incoming's first", 2.31, 48.87), mergeMarker("SW5jN", "Incoming's second", 2.32, 48.87)}
				fs = append(n, fs...)
				fs = slices.Insert(fs, 4, any(mergeMarker("SW5jO", "Incoming's third", 2.33, 48.87)))
				d["features"] = fs
			},
			want: func(d mdoc) {
				fs := d.features()
				fs[0], fs[3] = fs[3], fs[0]
				d.add(mergeMarker("TGF0Z", "Latest's new", 2.30, 48.87))
				d.add(mergeMarker("SW5jM", "Incoming's first", 2.31, 48.87))
				d.add(mergeMarker("SW5jN", "Incoming's second", 2.32, 48.87))
				d.add(mergeMarker("SW5jO", "Incoming's third", 2.33, 48.87))
			},
		},
		{
			name:     "both sides add one id with different content: merged member by member",
			latest:   func(d mdoc) { d.add(mergeMarker("QmFyc", "Bar du Marché", 2.3387, 48.8530)) },
			incoming: func(d mdoc) { d.add(mergeMarker("QmFyc", "Le Bar du Marché", 2.3387, 48.8530)) },
			conflicts: []Conflict{{FeatureID: "QmFyc", Key: "properties.name",
				Reference: "", Latest: `"Bar du Marché"`, Incoming: `"Le Bar du Marché"`}},
			wantLatestWins:   func(d mdoc) { d.add(mergeMarker("QmFyc", "Bar du Marché", 2.3387, 48.8530)) },
			wantIncomingWins: func(d mdoc) { d.add(mergeMarker("QmFyc", "Le Bar du Marché", 2.3387, 48.8530)) },
		},
		{
			name:     "a property name with a dot is escaped in the key",
			latest:   func(d mdoc) { d.props("Mzc1M")["horaires.été"] = "9h-18h" },
			incoming: func(d mdoc) { d.props("Mzc1M")["horaires.été"] = "9h-21h" },
			conflicts: []Conflict{{FeatureID: "Mzc1M", Key: `properties.horaires\.été`,
				Reference: "", Latest: `"9h-18h"`, Incoming: `"9h-21h"`}},
			wantLatestWins:   func(d mdoc) { d.props("Mzc1M")["horaires.été"] = "9h-18h" },
			wantIncomingWins: func(d mdoc) { d.props("Mzc1M")["horaires.été"] = "9h-21h" },
		},
		{
			name:     "a JSON null is a value, not a deletion",
			latest:   func(d mdoc) { d.props("Mzc1M")["url"] = nil },
			incoming: func(d mdoc) { delete(d.props("Mzc1M"), "url") },
			conflicts: []Conflict{{FeatureID: "Mzc1M", Key: "properties.url",
				Reference: `"https://www.louvre.fr"`, Latest: "null", Incoming: ""}},
			wantLatestWins:   func(d mdoc) { d.props("Mzc1M")["url"] = nil },
			wantIncomingWins: func(d mdoc) { delete(d.props("Mzc1M"), "url") },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ref := mergeParis(t)
			r, l, i := ref.bytes(t), mergeEdit(t, ref, tc.latest).bytes(t), mergeEdit(t, ref, tc.incoming).bytes(t)
			for _, policy := range []MergePolicy{MergeFail, MergeLatestWins, MergeIncomingWins} {
				res, err := Merge(r, l, i, policy)
				checkMergeConflicts(t, policy, res.Conflicts, tc.conflicts)
				if len(tc.conflicts) == 0 {
					if err != nil {
						t.Fatalf("policy %d: %v", policy, err)
					}
					checkMergeDoc(t, res.Document, mergeEdit(t, ref, tc.want).bytes(t))
					continue
				}
				switch policy {
				case MergeFail:
					if !errors.Is(err, ErrConflict) || Code(err) != "conflict" || res.Document != nil {
						t.Fatalf("MergeFail: err %v, document %s; want a conflict error and no document", err, res.Document)
					}
					first := tc.conflicts[0]
					if first.FeatureID != "" && !strings.Contains(err.Error(), quote(first.FeatureID)) || first.Key != "" && !strings.Contains(err.Error(), quote(first.Key)) {
						t.Errorf("message %q does not name %q and %q", err, first.FeatureID, first.Key)
					}
				case MergeLatestWins:
					if err != nil {
						t.Fatal(err)
					}
					checkMergeDoc(t, res.Document, mergeEdit(t, ref, tc.wantLatestWins).bytes(t))
				case MergeIncomingWins:
					if err != nil {
						t.Fatal(err)
					}
					checkMergeDoc(t, res.Document, mergeEdit(t, ref, tc.wantIncomingWins).bytes(t))
				}
			}
		})
	}
}

// checkMergeConflicts compares conflicts; a want value "*" means any non-empty value.
func checkMergeConflicts(t *testing.T, policy MergePolicy, got, want []Conflict) {
	t.Helper()
	match := func(g, w string) bool { return g == w || (w == "*" && g != "") }
	ok := len(got) == len(want)
	for k := 0; ok && k < len(got); k++ {
		g, w := got[k], want[k]
		ok = g.FeatureID == w.FeatureID && g.Key == w.Key &&
			match(g.Reference, w.Reference) && match(g.Latest, w.Latest) && match(g.Incoming, w.Incoming)
	}
	if !ok {
		t.Errorf("policy %d: conflicts\n got  %+v\n want %+v", policy, got, want)
	}
}

func checkMergeDoc(t *testing.T, got, want []byte) {
	t.Helper()
	if w := mergeCanon(t, want); string(got) != w {
		t.Errorf("document\n got  %s\n want %s", got, w)
	}
}

// TestMergeEncodings: a latest document written by Python's json.dumps (as uMap's server
// writes the result of its own merge: \u escapes, spaces, 1.0) merges with a reference
// written by JavaScript without phantom changes.
func TestMergeEncodings(t *testing.T) {
	ref := []byte(`{"type":"FeatureCollection","_umap_options":{"name":"Caf\u00e9s","opacity":1},
		"features":[{"type":"Feature","id":"UxNjQ","geometry":{"type":"Point","coordinates":[2.333,48.8539]},
		"properties":{"name":"Café de Flore","capacity":120}}]}`)
	latest := []byte(`{"type": "FeatureCollection", "features": [{"type": "Feature", "id": "UxNjQ",
		"geometry": {"type": "Point", "coordinates": [2.333, 48.8539]},
		"properties": {"name": "Caf\u00e9 de Flore", "capacity": 120.0, "note": "r\u00e9nov\u00e9"}}],
		"_umap_options": {"name": "Caf\u00e9s", "opacity": 1.0}}`)
	incoming := []byte(`{"type":"FeatureCollection","_umap_options":{"name":"Cafés","opacity":1},
		"features":[{"type":"Feature","id":"UxNjQ","geometry":{"type":"Point","coordinates":[2.333,48.8539]},
		"properties":{"name":"Café de Flore","capacity":1.2e2,"terrasse":true}}]}`)
	res, err := Merge(ref, latest, incoming, MergeFail)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"_umap_options":{"name":"Cafés","opacity":1},"features":[{"geometry":{"coordinates":[2.333,48.8539],"type":"Point"},"id":"UxNjQ","properties":{"capacity":120,"name":"Café de Flore","note":"rénové","terrasse":true},"type":"Feature"}],"type":"FeatureCollection"}`
	if string(res.Document) != want {
		t.Errorf("got  %s\nwant %s", res.Document, want)
	}
}

func TestMergeNumbersAsJavaScriptWritesThem(t *testing.T) {
	for in, want := range map[string]string{
		"0": "0", "-0": "0", "0.0": "0", "1.0": "1", "1E3": "1000", "-12.50": "-12.5",
		"0.000001": "0.000001", "1e-7": "1e-7", "1.5e-7": "1.5e-7", "1e21": "1e+21",
		"123456789012345680000": "123456789012345680000", "1e400": "1e400", "-1e-400": "0",
		"48.8566": "48.8566", "9007199254740993": "9007199254740992",
	} {
		if got := string(appendJSNumber(nil, in)); got != want {
			t.Errorf("%s: got %s, want %s", in, got, want)
		}
	}
}

func TestMergeNumberIDs(t *testing.T) {
	doc := func(features string) []byte {
		return []byte(`{"type":"FeatureCollection","features":[` + features + `]}`)
	}
	f := func(id, name string) string {
		return `{"type":"Feature","id":` + id + `,"geometry":null,"properties":{"name":"` + name + `"}}`
	}
	res, err := Merge(doc(f("7", "a")+","+f(`"7"`, "s")), doc(f("7.0", "b")+","+f(`"7"`, "s")), doc(f("7", "c")+","+f(`"7"`, "t")), MergeFail)
	if !errors.Is(err, ErrConflict) || len(res.Conflicts) != 1 {
		t.Fatalf("got %v %+v", err, res.Conflicts)
	}
	if c := res.Conflicts[0]; c.FeatureID != "7" || c.Key != "properties.name" || c.Latest != `"b"` || c.Incoming != `"c"` {
		t.Errorf("conflict %+v", c)
	}
	if !strings.Contains(err.Error(), `feature "7", key "properties.name"`) || !strings.Contains(err.Error(), "1 conflict") {
		t.Errorf("message %q", err)
	}
}

// TestMergeLoneSurrogates: a string escaping a lone UTF-16 surrogate is a string of its own
// to JavaScript (JSON.stringify writes "\ud800" back): Merge keeps it, tells "\ud800" from
// "\udbff" (an edit between them is kept, two ids are two features), and "\uD800" equals
// "\ud800". A pair is one character ("\ud83d\ude00" equals "😀").
func TestMergeLoneSurrogates(t *testing.T) {
	doc := func(features ...string) []byte {
		return []byte(`{"type":"FeatureCollection","features":[` + strings.Join(features, ",") + `]}`)
	}
	f := func(id, props string) string {
		return `{"type":"Feature","id":` + id + `,"geometry":null,"properties":{` + props + `}}`
	}
	// An edit of a value from one lone surrogate to another, and one left as it was.
	res, err := Merge(
		doc(f(`"a"`, `"n":"x\ud800","m":"\udc00","e":"\ud83d\ude00"`)),
		doc(f(`"a"`, `"n":"x\uD800","m":"\udc00","e":"😀","z":1`)),
		doc(f(`"a"`, `"n":"x\udbff","m":"\uDC00","e":"\ud83d\ude00"`)), MergeFail)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"features":[{"geometry":null,"id":"a","properties":{"e":"😀","m":"\udc00","n":"x\udbff","z":1},"type":"Feature"}],"type":"FeatureCollection"}`; string(res.Document) != want {
		t.Errorf("values:\ngot  %s\nwant %s", res.Document, want)
	}
	// Two ids that differ only by their lone surrogate are two features: incoming deletes
	// one and adds the other.
	res, err = Merge(doc(f(`"\ud800"`, `"n":1`)), doc(f(`"\ud800"`, `"n":1`), f(`"z"`, "")), doc(f(`"\udbff"`, `"n":1`)), MergeFail)
	if err != nil {
		t.Fatal(err)
	}
	if want := string(doc(f(`"z"`, ""), f(`"\udbff"`, `"n":1`))); string(res.Document) != mergeCanon(t, []byte(want)) {
		t.Errorf("ids:\ngot  %s\nwant %s", res.Document, mergeCanon(t, []byte(want)))
	}
	// Two different edits of one value are a conflict, the values quoted as they are.
	res, err = Merge(doc(f(`"a"`, `"n":"\ud800"`)), doc(f(`"a"`, `"n":"\udbff"`)), doc(f(`"a"`, `"n":"\udc00"`)), MergeFail)
	if !errors.Is(err, ErrConflict) || len(res.Conflicts) != 1 || res.Conflicts[0].Latest != `"\udbff"` || res.Conflicts[0].Incoming != `"\udc00"` {
		t.Errorf("conflict: %v %+v", err, res.Conflicts)
	}
	// A conflict in a feature whose id holds a lone surrogate names it with U+FFFD there
	// (Conflict.FeatureID is decoded text).
	res, err = Merge(doc(f(`"x\ud800"`, `"n":1`)), doc(f(`"x\ud800"`, `"n":2`)), doc(f(`"x\ud800"`, `"n":3`)), MergeFail)
	if !errors.Is(err, ErrConflict) || len(res.Conflicts) != 1 || res.Conflicts[0].FeatureID != "x\uFFFD" || res.Conflicts[0].Key != "properties.n" {
		t.Errorf("conflict in a feature whose id holds a lone surrogate: %v %+v", err, res.Conflicts)
	}
}

// TestMergeDuplicateIDs: the k-th feature of an id is matched with the k-th of the others.
func TestMergeDuplicateIDs(t *testing.T) {
	doc := func(names ...string) []byte {
		var fs []string
		for _, n := range names {
			fs = append(fs, `{"type":"Feature","id":"dup","geometry":null,"properties":{"name":"`+n+`"}}`)
		}
		return []byte(`{"type":"FeatureCollection","features":[` + strings.Join(fs, ",") + `]}`)
	}
	res, err := Merge(doc("a", "b"), doc("a2", "b"), doc("a", "b2", "c"), MergeFail)
	if err != nil {
		t.Fatal(err)
	}
	if want := mergeCanon(t, doc("a2", "b2", "c")); string(res.Document) != want {
		t.Errorf("got  %s\nwant %s", res.Document, want)
	}

	// Which of several features of one id an edited one was cannot be told: they are
	// matched by content, as features without an id. Latest deleted the first, incoming
	// renamed it: the deletion, and incoming's feature kept (as a new one), not incoming's
	// edit merged into the second.
	res, err = Merge(doc("a", "b"), doc("b"), doc("a2", "b"), MergeFail)
	if err != nil || len(res.Conflicts) != 0 {
		t.Fatalf("deleted against edited: %v %+v", err, res.Conflicts)
	}
	if want := mergeCanon(t, doc("b", "a2")); string(res.Document) != want {
		t.Errorf("deleted against edited:\ngot  %s\nwant %s", res.Document, want)
	}
	// The same with an edit that does not touch what tells them apart: matched by place,
	// incoming's new color went silently to the feature latest kept.
	colored := func(fs ...[2]string) []byte {
		var out []string
		for _, f := range fs {
			out = append(out, `{"type":"Feature","id":"dup","geometry":null,"properties":{"name":"`+f[0]+`","_umap_options":{"color":"`+f[1]+`"}}}`)
		}
		return []byte(`{"type":"FeatureCollection","features":[` + strings.Join(out, ",") + `]}`)
	}
	res, err = Merge(colored([2]string{"a", "Red"}, [2]string{"b", "Red"}), colored([2]string{"b", "Red"}),
		colored([2]string{"a", "Blue"}, [2]string{"b", "Red"}), MergeFail)
	if want := mergeCanon(t, colored([2]string{"b", "Red"}, [2]string{"a", "Blue"})); err != nil || string(res.Document) != want {
		t.Errorf("deleted against recolored: %v\ngot  %s\nwant %s", err, res.Document, want)
	}
	// Latest reordered them, incoming edited one: nothing else changes.
	res, err = Merge(doc("a", "b", "c"), doc("b", "c", "a"), doc("a", "b2", "c"), MergeFail)
	if want := mergeCanon(t, doc("c", "a", "b2")); err != nil || string(res.Document) != want {
		t.Errorf("reordered: %v\ngot  %s\nwant %s", err, res.Document, want)
	}
	// An id shared in one document only (latest added a second "dup") is matched by
	// content in all three: incoming's edit of the first is a deletion and an addition.
	res, err = Merge(doc("a"), doc("a", "b"), doc("a2"), MergeFail)
	if want := mergeCanon(t, doc("b", "a2")); err != nil || string(res.Document) != want {
		t.Errorf("shared in latest only: %v\ngot  %s\nwant %s", err, res.Document, want)
	}
}

func TestMergeConflictMessages(t *testing.T) {
	ref := mergeParis(t)
	for _, tc := range []struct {
		latest, incoming func(mdoc)
		want             string
	}{
		{func(d mdoc) { d.remove("UxNjQ") }, func(d mdoc) { d.props("UxNjQ")["name"] = "x" },
			`conflict: 1 conflict: feature "UxNjQ" deleted in latest, edited in incoming`},
		{func(d mdoc) { d.props("UxNjQ")["name"] = "x" }, func(d mdoc) { d.remove("UxNjQ") },
			`conflict: 1 conflict: feature "UxNjQ" edited in latest, deleted in incoming`},
		{func(d mdoc) { d.layerOpts()["name"] = "x"; d.props("Mzc1M")["name"] = "x" },
			func(d mdoc) { d.layerOpts()["name"] = "y"; d.props("Mzc1M")["name"] = "y" },
			`conflict: 2 conflicts, the first: layer option "_umap_options.name"`},
	} {
		_, err := Merge(ref.bytes(t), mergeEdit(t, ref, tc.latest).bytes(t), mergeEdit(t, ref, tc.incoming).bytes(t), MergeFail)
		if err == nil || err.Error() != tc.want {
			t.Errorf("got %v, want %s", err, tc.want)
		}
	}
}

// TestMergeConflictOrder: layer-level conflicts first, then features in the merge order
// (latest's, then incoming's new ones), and within a feature the keys in path order, member
// names compared level by level: "properties.a.z" before "properties.a-", though "-" sorts
// before "." in the joined key.
func TestMergeConflictOrder(t *testing.T) {
	f := func(id string, v int) string {
		n := strconv.Itoa(v)
		return `{"type":"Feature","id":"` + id + `","geometry":null,"properties":{"a-":` + n + `,"a":{"z":` + n + `},"b":` + n + `}}`
	}
	doc := func(v int, ids ...string) []byte {
		var fs []string
		for _, id := range ids {
			fs = append(fs, f(id, v))
		}
		return []byte(`{"type":"FeatureCollection","_umap_options":{"name":` + strconv.Itoa(v) + `},"features":[` + strings.Join(fs, ",") + `]}`)
	}
	// Latest holds y before x; incoming adds w (the same id as latest's w, other values).
	res, err := Merge(doc(1, "x", "y"), doc(2, "y", "x", "w"), doc(3, "x", "y", "w"), MergeLatestWins)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range res.Conflicts {
		got = append(got, c.FeatureID+" "+c.Key)
	}
	var want []string
	want = append(want, " _umap_options.name")
	for _, id := range []string{"y", "x", "w"} {
		want = append(want, id+" properties.a.z", id+" properties.a-", id+" properties.b")
	}
	if !slices.Equal(got, want) {
		t.Errorf("conflicts in order\n%q\nwant\n%q", got, want)
	}
}

func TestMergeErrors(t *testing.T) {
	ok := `{"type":"FeatureCollection","features":[]}`
	deep := `{"type":"FeatureCollection","features":[],"x":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`
	tests := []struct {
		name                        string
		reference, latest, incoming string
		policy                      MergePolicy
		code                        string
		sentinel                    error
		mention                     string
	}{
		{"invalid JSON", ok, `{"type":"FeatureCollection",`, ok, MergeFail, "invalid_json", ErrInvalidJSON, "latest document"},
		{"empty", "", ok, ok, MergeFail, "invalid_json", ErrInvalidJSON, "reference document"},
		{"invalid UTF-8", ok, ok, "{\"type\":\"FeatureCollection\",\"features\":[],\"n\":\"\xff\"}", MergeFail, "invalid_json", ErrInvalidJSON, "incoming document"},
		{"not an object", ok, `[]`, ok, MergeFail, "bad_value", ErrBadValue, "latest document is not a JSON object"},
		{"type not a string", ok, ok, `{"type":7,"features":[]}`, MergeFail, "bad_value", ErrBadValue, `incoming document has type "7"`},
		{"no type", ok, ok, `{"features":[]}`, MergeFail, "bad_value", ErrBadValue, `incoming document has no "type"`},
		{"not a FeatureCollection", `{"type":"Feature","features":[]}`, ok, ok, MergeFail, "bad_value", ErrBadValue, `reference document has type "Feature", expected "FeatureCollection"`},
		{"no features", ok, `{"type":"FeatureCollection"}`, ok, MergeFail, "bad_value", ErrBadValue, `latest document has no "features"`},
		{"features not an array", ok, `{"type":"FeatureCollection","features":{}}`, ok, MergeFail, "bad_value", ErrBadValue, `"features" is not an array`},
		{"a feature not an object", ok, ok, `{"type":"FeatureCollection","features":[{"type":"Feature"},3]}`, MergeFail, "bad_value", ErrBadValue, "incoming document: features[1] is not an object"},
		{"a feature without its type", ok, ok, `{"type":"FeatureCollection","features":[{"geometry":null}]}`, MergeFail, "bad_value", ErrBadValue, `incoming document: features[0] has no "type"; expected "Feature"`},
		{"a geometry for a feature", ok, `{"type":"FeatureCollection","features":[{"type":"Feature"},{"type":"Point","coordinates":[1,2]}]}`, ok, MergeFail, "bad_value", ErrBadValue, `latest document: features[1] has type "Point", expected "Feature"`},
		{"too deep", ok, ok, deep, MergeFail, "too_deep", ErrTooDeep, "incoming document"},
		{"bad policy", ok, ok, ok, MergePolicy(3), "bad_option", ErrBadOption, "unknown merge policy 3"},
		{"negative policy", ok, ok, ok, MergePolicy(-1), "bad_option", ErrBadOption, "unknown merge policy -1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Merge([]byte(tc.reference), []byte(tc.latest), []byte(tc.incoming), tc.policy)
			var e *Error
			if !errors.As(err, &e) || e.Code() != tc.code || !errors.Is(err, tc.sentinel) {
				t.Fatalf("got %v, want code %s", err, tc.code)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("message %q does not mention %q", err, tc.mention)
			}
			if res.Document != nil || res.Conflicts != nil {
				t.Errorf("result %+v alongside an error", res)
			}
		})
	}
	t.Run("too large", func(t *testing.T) {
		big := make([]byte, MergeMaxBytes/2+1)
		_, err := Merge(big, big, nil, MergeFail)
		if Code(err) != "too_large" || !errors.Is(err, ErrTooLarge) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestMergeDoesNotModifyInputs(t *testing.T) {
	ref := mergeParis(t)
	r := ref.bytes(t)
	l := mergeEdit(t, ref, func(d mdoc) { d.props("UxNjQ")["name"] = "a" }).bytes(t)
	i := mergeEdit(t, ref, func(d mdoc) { d.props("UxNjQ")["name"] = "b" }).bytes(t)
	r0, l0, i0 := slices.Clone(r), slices.Clone(l), slices.Clone(i)
	if _, err := Merge(r, l, i, MergeIncomingWins); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r, r0) || !bytes.Equal(l, l0) || !bytes.Equal(i, i0) {
		t.Error("inputs modified")
	}
}

func TestConflictJSON(t *testing.T) {
	cs := []Conflict{
		{FeatureID: "UxNjQ", Key: "properties.name", Reference: `"a"`, Latest: `"b"`, Incoming: `"c"`},
		{FeatureID: "Mzc1M", Key: "", Reference: `{"type":"Feature"}`, Incoming: `{"type":"Feature","id":"Mzc1M"}`},
	}
	b := AppendConflictsJSON(nil, cs)
	var got []map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	want := []map[string]any{
		{"featureId": "UxNjQ", "key": "properties.name", "reference": "a", "latest": "b", "incoming": "c"},
		{"featureId": "Mzc1M", "key": "", "reference": map[string]any{"type": "Feature"}, "incoming": map[string]any{"type": "Feature", "id": "Mzc1M"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %s", b)
	}
	if s := string(AppendConflictsJSON(nil, nil)); s != "[]" {
		t.Errorf("empty: %s", s)
	}
}

func ExampleMerge() {
	reference := []byte(`{"type":"FeatureCollection","_umap_options":{"name":"Cafés"},"features":[
		{"type":"Feature","id":"UxNjQ","geometry":{"type":"Point","coordinates":[2.333,48.8539]},
		 "properties":{"name":"Café de Flore","_umap_options":{"color":"DarkRed"}}}]}`)
	latest := []byte(`{"type":"FeatureCollection","_umap_options":{"name":"Cafés"},"features":[
		{"type":"Feature","id":"UxNjQ","geometry":{"type":"Point","coordinates":[2.333,48.8539]},
		 "properties":{"name":"Le Flore","_umap_options":{"color":"Black"}}}]}`)
	incoming := []byte(`{"type":"FeatureCollection","_umap_options":{"name":"Cafés"},"features":[
		{"type":"Feature","id":"UxNjQ","geometry":{"type":"Point","coordinates":[2.3331,48.854]},
		 "properties":{"name":"Café de Flore","_umap_options":{"color":"Gold"}}}]}`)

	_, err := Merge(reference, latest, incoming, MergeFail)
	fmt.Println(err)

	res, _ := Merge(reference, latest, incoming, MergeIncomingWins)
	for _, c := range res.Conflicts {
		fmt.Printf("%s %s: %s, %s, %s\n", c.FeatureID, c.Key, c.Reference, c.Latest, c.Incoming)
	}
	fmt.Println(string(res.Document))
	// Output:
	// conflict: 1 conflict: feature "UxNjQ", key "properties._umap_options.color"
	// UxNjQ properties._umap_options.color: "DarkRed", "Black", "Gold"
	// {"_umap_options":{"name":"Cafés"},"features":[{"geometry":{"coordinates":[2.3331,48.854],"type":"Point"},"id":"UxNjQ","properties":{"_umap_options":{"color":"Gold"},"name":"Le Flore"},"type":"Feature"}],"type":"FeatureCollection"}
}

// --- property tests on seeded random datalayers ---

// genMergeLayer makes a random datalayer: features with ids (a few without, a few sharing one),
// properties and _umap_options drawn from small sets so that random edits collide.
func genMergeLayer(rnd *rand.Rand) map[string]any {
	d := map[string]any{
		"type":          "FeatureCollection",
		"_umap_options": genMergeOptions(rnd),
	}
	if rnd.IntN(4) > 0 {
		d["_umap_options"].(map[string]any)["fields"] = []any{"name"}
	}
	fs := []any{}
	for n := rnd.IntN(8); n > 0; n-- {
		fs = append(fs, genMergeFeature(rnd))
	}
	d["features"] = fs
	return d
}

var (
	genMergeKeys   = []string{"name", "description", "url", "a.b", "_umap_options", "nested"}
	genMergeOpts   = []string{"color", "weight", "iconClass", "showLabel", "fillOpacity"}
	genMergeValues = []any{"x", "y", "Café", 1, 2.5, true, nil, []any{1, 2}, map[string]any{"k": "v"}}
	// genMergeAppends are appended to arrays: few, so that both sides often append the same.
	genMergeAppends = []any{"x", 3}
)

// genMergeValue is one of genMergeValues, a copy: a document holding the shared map or
// slice itself would change it for every later round when edited (mutateMergeLayer edits an
// "_umap_options" in place), or come to hold itself, which json.Marshal cannot write.
func genMergeValue(rnd *rand.Rand) any {
	return mergeDeepCopy(genMergeValues[rnd.IntN(len(genMergeValues))])
}

func genMergeOptions(rnd *rand.Rand) map[string]any {
	o := map[string]any{}
	for _, k := range genMergeOpts {
		if rnd.IntN(2) == 0 {
			o[k] = genMergeValue(rnd)
		}
	}
	return o
}

func genMergeID(rnd *rand.Rand) any {
	switch rnd.IntN(12) {
	case 0:
		return nil // no id: matched by content
	case 1:
		return "dup" // shared by several features
	case 2:
		return rnd.IntN(5) // a number
	}
	const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 5)
	for i := range b {
		b[i] = letters[rnd.IntN(len(letters))]
	}
	return string(b)
}

func genMergeFeature(rnd *rand.Rand) map[string]any {
	f := map[string]any{"type": "Feature", "geometry": genMergeGeometry(rnd), "properties": genMergeProps(rnd)}
	if id := genMergeID(rnd); id != nil {
		f["id"] = id
	}
	return f
}

func genMergeGeometry(rnd *rand.Rand) any {
	switch rnd.IntN(3) {
	case 0:
		return map[string]any{"type": "Point", "coordinates": []any{rnd.IntN(3), rnd.IntN(3)}}
	case 1:
		return map[string]any{"type": "LineString", "coordinates": []any{[]any{0, rnd.IntN(3)}, []any{1, 1}}}
	}
	return nil
}

func genMergeProps(rnd *rand.Rand) map[string]any {
	p := map[string]any{}
	for _, k := range genMergeKeys {
		if rnd.IntN(2) == 0 {
			switch k {
			case "_umap_options":
				p[k] = genMergeOptions(rnd)
			case "nested":
				p[k] = map[string]any{"deep": map[string]any{"x": genMergeValue(rnd)}}
			default:
				p[k] = genMergeValue(rnd)
			}
		}
	}
	if rnd.IntN(2) == 0 {
		p["list"] = []any{"a"}
	}
	return p
}

// mergeAppend returns v with one or two of genMergeAppends appended, if it is an array;
// otherwise an array of one.
func mergeAppend(rnd *rand.Rand, v any) any {
	a, _ := v.([]any)
	for n := 1 + rnd.IntN(2); n > 0; n-- {
		a = append(a, genMergeAppends[rnd.IntN(len(genMergeAppends))])
	}
	return a
}

// mutateMergeLayer makes a few random edits, as a user between two saves.
func mutateMergeLayer(rnd *rand.Rand, d map[string]any) map[string]any {
	d = mergeDeepCopy(d).(map[string]any)
	if rnd.IntN(3) == 0 { // a property key added: uMap appends a field to the layer's
		opts := d["_umap_options"].(map[string]any)
		opts["fields"] = mergeAppend(rnd, opts["fields"])
	}
	for n := rnd.IntN(5); n > 0; n-- {
		fs := d["features"].([]any)
		if len(fs) == 0 || rnd.IntN(6) == 0 {
			switch rnd.IntN(2) {
			case 0:
				d["features"] = append(fs, genMergeFeature(rnd))
			default:
				opts := d["_umap_options"].(map[string]any)
				k := genMergeOpts[rnd.IntN(len(genMergeOpts))]
				if rnd.IntN(3) == 0 {
					delete(opts, k)
				} else {
					opts[k] = genMergeValue(rnd)
				}
			}
			continue
		}
		j := rnd.IntN(len(fs))
		f := fs[j].(map[string]any)
		switch rnd.IntN(8) {
		case 0:
			d["features"] = slices.Delete(fs, j, j+1)
		case 7:
			f["properties"].(map[string]any)["list"] = mergeAppend(rnd, f["properties"].(map[string]any)["list"])
		case 1:
			f["geometry"] = genMergeGeometry(rnd)
		case 2:
			f["properties"].(map[string]any)[genMergeKeys[rnd.IntN(len(genMergeKeys))]] = genMergeValue(rnd)
		case 3:
			delete(f["properties"].(map[string]any), genMergeKeys[rnd.IntN(len(genMergeKeys))])
		case 4:
			p := f["properties"].(map[string]any)
			o, ok := p["_umap_options"].(map[string]any)
			if !ok {
				o = map[string]any{}
				p["_umap_options"] = o
			}
			o[genMergeOpts[rnd.IntN(len(genMergeOpts))]] = genMergeValue(rnd)
		case 5:
			p := f["properties"].(map[string]any)
			p["nested"] = map[string]any{"deep": map[string]any{"x": genMergeValue(rnd)}}
		default:
			slices.Reverse(fs) // reorder
		}
	}
	return d
}

func mergeDeepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		c := make(map[string]any, len(v))
		for k, x := range v {
			c[k] = mergeDeepCopy(x)
		}
		return c
	case []any:
		c := make([]any, len(v))
		for i, x := range v {
			c[i] = mergeDeepCopy(x)
		}
		return c
	}
	return v
}

func mergeJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mergeFeatureSet describes a merged document as a set: layer members, and each feature's
// canonical JSON keyed by its identity (the k-th of an identity counted in document order).
func mergeFeatureSet(t testing.TB, doc []byte) map[string]int {
	t.Helper()
	d, err := parseLayer("merged", doc)
	if err != nil {
		t.Fatalf("merged document does not parse: %v\n%s", err, doc)
	}
	set := map[string]int{}
	eachMember(d.canon, func(name, val string) bool {
		if name != "features" {
			set["mdoc "+name+"="+val]++
		}
		return true
	})
	for _, f := range d.feats {
		set["feature "+f.key.ident+"="+f.raw]++
	}
	return set
}

const mergeRounds = 1000

// TestMergeProperties: merge(r, r, x) = x; merge(r, x, r) = x; merge(r, x, x) = x, also
// through the merge proper (without Merge's shortcuts), compared as sets.
func TestMergeProperties(t *testing.T) {
	rnd := rand.New(rand.NewPCG(8, 2024))
	for round := 0; round < mergeRounds; round++ {
		r := genMergeLayer(rnd)
		x := mutateMergeLayer(rnd, r)
		rb, xb := mergeJSON(t, r), mergeJSON(t, x)
		want := mergeCanon(t, xb)
		for name, args := range map[string][3][]byte{
			"merge(r, r, x)": {rb, rb, xb},
			"merge(r, x, r)": {rb, xb, rb},
			"merge(r, x, x)": {rb, xb, xb},
		} {
			for _, policy := range []MergePolicy{MergeFail, MergeLatestWins, MergeIncomingWins} {
				res, err := Merge(args[0], args[1], args[2], policy)
				if err != nil || len(res.Conflicts) > 0 || string(res.Document) != want {
					t.Fatalf("round %d, %s, policy %d: %v %+v\n got  %s\n want %s", round, name, policy, err, res.Conflicts, res.Document, want)
				}
			}
			// The merge proper gives the same features and values (its order may differ).
			pr, _ := parseLayer("r", args[0])
			pl, _ := parseLayer("l", args[1])
			pi, _ := parseLayer("i", args[2])
			res, err := mergeLayers(pr, pl, pi, MergeFail)
			if err != nil || len(res.Conflicts) > 0 {
				t.Fatalf("round %d, %s without shortcut: %v %+v", round, name, err, res.Conflicts)
			}
			if got, want := mergeFeatureSet(t, res.Document), mergeFeatureSet(t, xb); !reflect.DeepEqual(got, want) {
				t.Fatalf("round %d, %s without shortcut:\n got  %v\n want %v", round, name, got, want)
			}
		}
	}
}

// TestMergeSymmetry: without conflicts, merge(r, a, b) and merge(r, b, a) hold the same
// features and values; with conflicts, merge(r, a, b) under MergeLatestWins is
// merge(r, b, a) under MergeIncomingWins, and the conflicts are the same with sides swapped.
// Each resolved conflict's value is in the document at its key. Values are compared with
// every array's elements sorted: the elements both sides appended to an array come in the
// order of the arguments (TestMergeAppendedArrays checks that order).
func TestMergeSymmetry(t *testing.T) {
	rnd := rand.New(rand.NewPCG(8, 7))
	clean, conflicted := 0, 0
	for round := 0; round < mergeRounds; round++ {
		r := genMergeLayer(rnd)
		a, b := mutateMergeLayer(rnd, r), mutateMergeLayer(rnd, r)
		rb, ab, bb := mergeJSON(t, r), mergeJSON(t, a), mergeJSON(t, b)
		ab1, err1 := Merge(rb, ab, bb, MergeFail)
		ba1, err2 := Merge(rb, bb, ab, MergeFail)
		if (err1 == nil) != (err2 == nil) || len(ab1.Conflicts) != len(ba1.Conflicts) {
			t.Fatalf("round %d: %v vs %v", round, err1, err2)
		}
		if err1 == nil {
			clean++
			if got, want := mergeFeatureSet(t, mergeSortArrays(t, ab1.Document)), mergeFeatureSet(t, mergeSortArrays(t, ba1.Document)); !reflect.DeepEqual(got, want) {
				t.Fatalf("round %d: merge(r,a,b) and merge(r,b,a) differ:\n%v\n%v", round, got, want)
			}
			continue
		}
		conflicted++
		if Code(err1) != "conflict" {
			t.Fatalf("round %d: %v", round, err1)
		}
		for _, c := range ab1.Conflicts {
			mirror := Conflict{c.FeatureID, c.Key, c.Reference, c.Incoming, c.Latest}
			if !slices.Contains(ba1.Conflicts, mirror) {
				t.Fatalf("round %d: conflict %+v has no mirror in %+v", round, c, ba1.Conflicts)
			}
		}
		lw, err := Merge(rb, ab, bb, MergeLatestWins)
		if err != nil {
			t.Fatal(err)
		}
		iw, err := Merge(rb, bb, ab, MergeIncomingWins)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := mergeFeatureSet(t, mergeSortArrays(t, lw.Document)), mergeFeatureSet(t, mergeSortArrays(t, iw.Document)); !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: latest-wins(r,a,b) and incoming-wins(r,b,a) differ:\n%v\n%v", round, got, want)
		}
		checkMergeResolved(t, lw, func(c Conflict) string { return c.Latest })
		iw2, _ := Merge(rb, ab, bb, MergeIncomingWins)
		checkMergeResolved(t, iw2, func(c Conflict) string { return c.Incoming })
	}
	t.Logf("%d clean merges, %d with conflicts", clean, conflicted)
	if clean < mergeRounds/10 || conflicted < mergeRounds/10 {
		t.Errorf("the generator gives too few of one kind: %d clean, %d with conflicts", clean, conflicted)
	}
}

// mergeSortArrays returns doc with the elements of every array in it sorted by their JSON.
func mergeSortArrays(t *testing.T, doc []byte) []byte {
	var sortIn func(v any) any
	sortIn = func(v any) any {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				v[k] = sortIn(x)
			}
		case []any:
			for k, x := range v {
				v[k] = sortIn(x)
			}
			slices.SortFunc(v, func(a, b any) int {
				ja, _ := json.Marshal(a)
				jb, _ := json.Marshal(b)
				return bytes.Compare(ja, jb)
			})
		}
		return v
	}
	return mergeJSON(t, sortIn(map[string]any(decodeMDoc(t, doc))))
}

// checkMergeResolved checks that the value each conflict was resolved to is at its key (with
// duplicate ids, in one of the features of that id).
func checkMergeResolved(t *testing.T, res MergeResult, pick func(Conflict) string) {
	t.Helper()
	d, err := parseLayer("merged", res.Document)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range res.Conflicts {
		want := pick(c)
		roots := []string{d.canon}
		if c.FeatureID != "" {
			roots = nil
			for _, f := range d.feats {
				if f.id == c.FeatureID {
					roots = append(roots, f.raw)
				}
			}
		}
		var seen []string
		for _, root := range roots {
			v, _ := mergeLookupKey(t, root, c.Key)
			seen = append(seen, v)
		}
		if !slices.Contains(seen, want) && !(want == "" && c.Key == "") {
			t.Fatalf("conflict %+v resolved to one of %q", c, seen)
		}
	}
}

func mergeLookupKey(t *testing.T, root, key string) (string, bool) {
	if key == "" {
		return root, root != ""
	}
	path, err := parsePath(key, DefaultLimits())
	if err != nil {
		t.Fatalf("key %q: %v", key, err)
	}
	return lookup(root, path)
}

// BenchmarkMerge merges two saves of a datalayer of 5,000 features, each side editing 50.
func BenchmarkMerge(b *testing.B) {
	rnd := rand.New(rand.NewPCG(1, 2))
	r := map[string]any{"type": "FeatureCollection", "_umap_options": genMergeOptions(rnd)}
	fs := make([]any, 5000)
	for k := range fs {
		f := mergeMarker("f"+strconv.Itoa(k), "Marker "+strconv.Itoa(k), rnd.Float64()*4, 48+rnd.Float64())
		f["properties"].(map[string]any)["description"] = strings.Repeat("Lorem ipsum dolor sit amet. ", 4)
		fs[k] = f
	}
	r["features"] = fs
	side := func(name string) map[string]any {
		d := mergeDeepCopy(r).(map[string]any)
		for _, f := range d["features"].([]any)[:100] {
			if rnd.IntN(2) == 0 {
				f.(map[string]any)["properties"].(map[string]any)[name] = "edited"
			}
		}
		return d
	}
	rb, lb, ib := mergeJSON(b, r), mergeJSON(b, side("latest")), mergeJSON(b, side("incoming"))
	b.SetBytes(int64(len(rb) + len(lb) + len(ib)))
	for b.Loop() {
		if _, err := Merge(rb, lb, ib, MergeFail); err != nil {
			b.Fatal(err)
		}
	}
}

// TestMergeLoneSurrogateNames: member names escaping a lone surrogate would decode alike
// (U+FFFD), two properties made one: such a document is refused.
func TestMergeLoneSurrogateNames(t *testing.T) {
	empty := []byte(`{"type":"FeatureCollection","features":[]}`)
	doc := []byte(`{"type":"FeatureCollection","features":[{"type":"Feature","id":"a","properties":{"\ud800":1,"\udc00":2},"geometry":null}]}`)
	if _, err := Merge(empty, empty, doc, MergeFail); !errors.Is(err, ErrBadValue) {
		t.Fatalf("got %v, want bad_value", err)
	}
}

// TestMergeAppendedArrays: where both sides changed an array only by appending to the
// reference's elements, the merge keeps the reference's elements, latest's appended ones,
// then incoming's but for those equal to one of latest's (each of latest's absorbing one);
// in feature properties as at layer level, never in a geometry; any other concurrent change
// of an array is a conflict.
func TestMergeAppendedArrays(t *testing.T) {
	// layer builds a document whose layer option "list" is opt (absent if "") and whose
	// feature "f" has property "tags" tags (absent if "") and geometry geom.
	layer := func(opt, tags, geom string) string {
		o, p := "", ""
		if opt != "" {
			o = `"_umap_options":{"list":` + opt + `},`
		}
		if tags != "" {
			p = `,"tags":` + tags
		}
		return `{"type":"FeatureCollection",` + o + `"features":[{"type":"Feature","id":"f","geometry":` + geom +
			`,"properties":{"name":"x","nested":{"deep":{"list":` + cmp.Or(tags, "null") + `}}` + p + `}}]}`
	}
	const line = `{"type":"LineString","coordinates":[[0,0],[1,1]]}`
	tests := []struct {
		name                string
		reference, lat, inc string // the tags (and the nested list) of each side
		want, wantSwapped   string // the merged tags; "" for a conflict
	}{
		{"each side appends one", `["a"]`, `["a","b"]`, `["a","c"]`, `["a","b","c"]`, `["a","c","b"]`},
		{"each side appends several", `["a"]`, `["a","b","c"]`, `["a","d","e"]`, `["a","b","c","d","e"]`, `["a","d","e","b","c"]`},
		{"from an empty array", `[]`, `["b"]`, `["c"]`, `["b","c"]`, `["c","b"]`},
		{"the same one on both sides: once", `["a"]`, `["a",{"k":1,"t":"S"}]`, `["a",{"t":"S","k":1.0}]`, `["a",{"k":1,"t":"S"}]`, `["a",{"k":1,"t":"S"}]`},
		{"the same one and others", `["a"]`, `["a","b","c"]`, `["a","c","d"]`, `["a","b","c","d"]`, `["a","c","d","b"]`},
		{"one side appends twice what the other appends once", `["a"]`, `["a","b"]`, `["a","b","b"]`, `["a","b","b"]`, `["a","b","b"]`},
		{"one side removes", `["a","b"]`, `["a","b","c"]`, `["a"]`, "", ""},
		{"one side empties", `["a"]`, `["a","b"]`, `[]`, "", ""},
		{"one side reorders and appends", `["a","b"]`, `["a","b","c"]`, `["b","a","d"]`, "", ""},
		{"one side changes an element and appends", `["a","b"]`, `["a","b","c"]`, `["a","x","d"]`, "", ""},
		{"one side makes it a string", `["a"]`, `["a","b"]`, `"a"`, "", ""},
		{"no reference array: both added", ``, `["b"]`, `["c"]`, "", ""},
		{"a reference that is not an array", `"a"`, `["a","b"]`, `["a","c"]`, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The same arrays as a feature property, nested in one, and as a layer option.
			r, l, i := layer(tc.reference, tc.reference, line), layer(tc.lat, tc.lat, line), layer(tc.inc, tc.inc, line)
			for _, swapped := range []bool{false, true} {
				a, b, want := l, i, tc.want
				if swapped {
					a, b, want = i, l, tc.wantSwapped
				}
				for _, policy := range []MergePolicy{MergeFail, MergeLatestWins, MergeIncomingWins} {
					res, err := Merge([]byte(r), []byte(a), []byte(b), policy)
					if want == "" {
						if len(res.Conflicts) != 3 || res.Conflicts[0].Key != "_umap_options.list" ||
							res.Conflicts[1].Key != "properties.nested.deep.list" || res.Conflicts[2].Key != "properties.tags" {
							t.Fatalf("swapped %v, policy %d: conflicts %+v (%v), want the list, the nested list and the tags", swapped, policy, res.Conflicts, err)
						}
						continue
					}
					if err != nil || len(res.Conflicts) > 0 {
						t.Fatalf("swapped %v, policy %d: %v %+v", swapped, policy, err, res.Conflicts)
					}
					if got, w := string(res.Document), mergeCanon(t, []byte(layer(want, want, line))); got != w {
						t.Fatalf("swapped %v, policy %d:\n got  %s\n want %s", swapped, policy, got, w)
					}
				}
			}
		})
	}

	// A geometry stays one value: coordinates appended on both sides conflict, and so do
	// appends to a geometry that is an array itself (not GeoJSON, but taken).
	for _, g := range [][3]string{
		{line, `{"type":"LineString","coordinates":[[0,0],[1,1],[2,2]]}`, `{"type":"LineString","coordinates":[[0,0],[1,1],[3,3]]}`},
		{`[1]`, `[1,2]`, `[1,3]`},
	} {
		r, l, i := layer(`["a"]`, "", g[0]), layer(`["a"]`, "", g[1]), layer(`["a"]`, "", g[2])
		res, err := Merge([]byte(r), []byte(l), []byte(i), MergeFail)
		if Code(err) != "conflict" || len(res.Conflicts) != 1 || res.Conflicts[0].Key != "geometry" {
			t.Fatalf("geometry %s: %v %+v, want a conflict on the geometry", g[0], err, res.Conflicts)
		}
	}
}
