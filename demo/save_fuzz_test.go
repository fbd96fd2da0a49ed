package main

import (
	"bytes"
	"encoding/json"
	"math/big"
	"strconv"
	"testing"

	"github.com/mapcrdt/mapcrdt/crdt"
)

// FuzzDatalayerSaves makes three saves of one datalayer with any bodies: a creation, a
// second creation (stale once the first is stored: merged against the empty datalayer),
// and a save from version base under a conflict policy. Whatever the bytes:
//   - every answer is one the endpoint documents, as a JSON object (dlServer.do), and
//     never a 5xx;
//   - a refused save changes nothing that GET answers;
//   - an accepted save is the new latest version: GET answers the body's JSON values
//     when the save was not merged, and the merged document when it was.
func FuzzDatalayerSaves(f *testing.F) {
	f.Add([]byte(layer(cafe("Café de Flore", "Gold"))), []byte(layer(walk)), []byte(layer(cafe("Les Deux Magots", "Gold"), walk)), uint8(1), uint8(0))
	f.Add([]byte(layer(cafe("A", "Red"))), []byte(layer(cafe("B", "Red"))), []byte(layer(cafe("C", "Blue"))), uint8(1), uint8(1))
	f.Add([]byte(layer()), []byte(`{"type":"FeatureCollection","features":[{"type":"Feature","id":"x","properties":{"a":1e400}}]}`), []byte(`[1]`), uint8(2), uint8(2))
	f.Add([]byte(`{"type":"FeatureCollection","features":[{"id":"d","type":"Feature"},{"id":"d","type":"Feature"}]}`), []byte(`{"type":"Feature"}`), []byte(`{"type":"FeatureCollection"`), uint8(0), uint8(3))
	f.Add([]byte(`{"type":"FeatureCollection","features":[],"_umap_options":{"name":"\u00e9\ud800"}}`), []byte(`{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"name":"no id"}}]}`), []byte(layer(walk)), uint8(9), uint8(1))
	f.Add([]byte(layer(walk)), []byte(`{"type":"FeatureCollection","features":[]}`), []byte(layer()), uint8(3), uint8(0))
	policies := []string{"", "?conflicts=fail", "?conflicts=latest", "?conflicts=incoming"}
	mergePolicies := []crdt.MergePolicy{crdt.MergeFail, crdt.MergeFail, crdt.MergeLatestWins, crdt.MergeIncomingWins}
	f.Fuzz(func(t *testing.T, a, b, c []byte, base, policy uint8) {
		s := startDatalayers(t, datalayerOptions{MaxBytes: 64 << 10})
		const path = "/api/maps/m/datalayers/d"
		get := func() dlResponse {
			r := s.doRaw("GET", path, nil, "")
			if r.status != 200 && r.status != 404 {
				t.Fatalf("GET: %d %s", r.status, r.raw)
			}
			return r
		}
		// The versions stored so far, as GET answered them ("0": the empty datalayer).
		versions := map[string][]byte{"0": emptyLayer}
		save := func(from string, p uint8, body []byte) {
			query := policies[p%4]
			t.Helper()
			before := get()
			var h map[string]string
			if from != "" {
				h = map[string]string{VersionHeader: from}
			}
			r := s.doRaw("PUT", path+query, h, string(body))
			var answer struct {
				Version  json.Number
				Merged   bool
				Document json.RawMessage
				Error    struct{ Code string }
			}
			if err := json.Unmarshal(r.raw, &answer); err != nil {
				t.Fatalf("PUT from %q: %d, not a JSON object (%v): %s", from, r.status, err, r.raw)
			}
			after := get()
			switch r.status {
			case 200:
			case 400, 409, 412, 413:
				if answer.Error.Code == "" {
					t.Fatalf("PUT from %q: %d without an error code: %s", from, r.status, r.raw)
				}
				if after.status != before.status || after.version != before.version || string(after.raw) != string(before.raw) {
					t.Fatalf("PUT from %q refused (%d %s) but GET changed:\n%s %s\nwas\n%s %s", from, r.status, r.raw, after.version, after.raw, before.version, before.raw)
				}
				return
			default:
				t.Fatalf("PUT from %q: %d %s", from, r.status, r.raw)
			}
			prev, _ := strconv.Atoi(before.version)
			next := strconv.Itoa(prev + 1)
			if after.status != 200 || after.version != next || answer.Version.String() != next || r.version != next {
				t.Fatalf("PUT from %q accepted as %s (%s); GET %d %q after version %q", from, answer.Version, r.raw, after.status, after.version, before.version)
			}
			want := body
			if answer.Merged {
				// What crdt.Merge (FuzzMerge's subject) makes of the version the save
				// started from, the latest and the body.
				ref := versions[from]
				if from == "" {
					ref = emptyLayer
				}
				res, err := crdt.Merge(ref, before.raw, body, mergePolicies[p%4])
				if err != nil {
					t.Fatalf("PUT from %q merged, but crdt.Merge refuses it: %v", from, err)
				}
				if !sameJSON(t, answer.Document, res.Document) {
					t.Fatalf("PUT from %q: merged into\n%s\nnot crdt.Merge's\n%s", from, answer.Document, res.Document)
				}
				want = res.Document
			}
			versions[next] = after.raw
			if !sameJSON(t, after.raw, want) {
				t.Fatalf("PUT from %q: GET answers\n%s\nnot the JSON of\n%s", from, after.raw, want)
			}
		}
		save("", 0, a)
		save("0", 0, b)
		save(strconv.Itoa(int(base%4)), policy, c)
	})
}

// sameJSON reports whether two texts hold the same JSON value: numbers compared by value
// (1e400 is a number JSON allows, past float64's range), texts after decoding.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	decode := func(text []byte) any {
		d := json.NewDecoder(bytes.NewReader(text))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			t.Fatalf("not JSON (%v): %s", err, text)
		}
		return v
	}
	return sameValue(decode(a), decode(b))
}

// sameValue is sameJSON on decoded values.
func sameValue(a, b any) bool {
	switch a := a.(type) {
	case json.Number:
		b, ok := b.(json.Number)
		if !ok {
			return false
		}
		x, _, err1 := big.ParseFloat(string(a), 10, 256, big.ToNearestEven)
		y, _, err2 := big.ParseFloat(string(b), 10, 256, big.ToNearestEven)
		return err1 == nil && err2 == nil && x.Cmp(y) == 0
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, v := range a {
			if w, ok := b[k]; !ok || !sameValue(v, w) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !sameValue(a[i], b[i]) {
				return false
			}
		}
		return true
	default:
		return a == b
	}
}
