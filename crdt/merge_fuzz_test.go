package crdt

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzMerge: no input makes Merge panic; every error is an *Error with a stable code (never
// "internal"); a merged document is a valid, canonical FeatureCollection that merges with
// itself to itself; conflicts come with an error exactly under MergeFail.
func FuzzMerge(f *testing.F) {
	const (
		empty  = `{"type":"FeatureCollection","features":[]}`
		marker = `{"type":"FeatureCollection","_umap_options":{"name":"Cafés","color":"DarkRed"},"features":[` +
			`{"type":"Feature","id":"UxNjQ","geometry":{"type":"Point","coordinates":[2.333,48.8539]},` +
			`"properties":{"name":"Café de Flore","_umap_options":{"color":"Black"}}}]}`
	)
	// Nothing changed anywhere.
	f.Add([]byte(empty), []byte(empty), []byte(empty), uint8(MergeFail))
	// Both sides add a feature.
	f.Add([]byte(empty), []byte(marker),
		[]byte(`{"type":"FeatureCollection","features":[{"type":"Feature","id":"Mzk2N","geometry":{"type":"LineString","coordinates":[[2.29,48.85],[2.33,48.86]]},"properties":{"name":"Balade"}}]}`),
		uint8(MergeFail))
	// Same property, different values: a conflict under each policy.
	f.Add([]byte(marker),
		[]byte(`{"type":"FeatureCollection","_umap_options":{"name":"Cafés","color":"DarkRed"},"features":[{"type":"Feature","id":"UxNjQ","geometry":{"type":"Point","coordinates":[2.333,48.8539]},"properties":{"name":"Le Flore","_umap_options":{"color":"Black"}}}]}`),
		[]byte(`{"type":"FeatureCollection","_umap_options":{"name":"Cafés","color":"DarkRed"},"features":[{"type":"Feature","id":"UxNjQ","geometry":{"type":"Point","coordinates":[2.333,48.8539]},"properties":{"name":"Flore","_umap_options":{"color":"Black"}}}]}`),
		uint8(MergeLatestWins))
	// An edit against a delete, resolved for incoming.
	f.Add([]byte(marker), []byte(empty),
		[]byte(`{"type":"FeatureCollection","features":[{"type":"Feature","id":"UxNjQ","geometry":{"type":"Point","coordinates":[2.4,48.9]},"properties":{"name":"Café de Flore","_umap_options":{"color":"Black"}}}]}`),
		uint8(MergeIncomingWins))
	// Features without id, number ids, duplicate ids, whitespace and escapes.
	f.Add([]byte(`{"type":"FeatureCollection","features":[{"type":"Feature","geometry":null,"properties":{}},{"type":"Feature","id":7,"properties":{"a":1}}]}`),
		[]byte(`{ "type" : "FeatureCollection" , "features" : [ {"type":"Feature","id":7.0,"properties":{"a":1.0}} , {"type":"Feature","id":7,"properties":{}} ] }`),
		[]byte(`{"type":"FeatureCollection","features":[{"type":"Feature","geometry":null,"properties":{}},{"type":"Feature","id":"\u0037","properties":{"a\\.b":"\u00e9"}}]}`),
		uint8(MergeFail))
	// Layer options only.
	f.Add([]byte(`{"type":"FeatureCollection","features":[],"_umap_options":{"color":"Red","rank":0}}`),
		[]byte(`{"type":"FeatureCollection","features":[],"_umap_options":{"color":"Blue","rank":0}}`),
		[]byte(`{"type":"FeatureCollection","features":[],"_umap_options":{"color":"Red","rank":1e0}}`),
		uint8(MergeFail))
	// Fields appended on both sides, one the same; a property array appended on both sides.
	f.Add([]byte(`{"type":"FeatureCollection","features":[{"type":"Feature","id":1,"properties":{"t":[1]}}],"_umap_options":{"fields":[{"key":"name","type":"String"}]}}`),
		[]byte(`{"type":"FeatureCollection","features":[{"type":"Feature","id":1,"properties":{"t":[1,2]}}],"_umap_options":{"fields":[{"key":"name","type":"String"},{"key":"phone","type":"String"}]}}`),
		[]byte(`{"type":"FeatureCollection","features":[{"type":"Feature","id":1,"properties":{"t":[1,3,2]}}],"_umap_options":{"fields":[{"key":"name","type":"String"},{"type":"String","key":"phone"},{"key":"hours","type":"String"}]}}`),
		uint8(MergeFail))
	// Invalid: not JSON, not a FeatureCollection, a feature not an object, a bad policy.
	f.Add([]byte(`{"type":"FeatureCollection","features":[`), []byte(empty), []byte(empty), uint8(MergeFail))
	f.Add([]byte(empty), []byte(`{"type":"Feature","features":[]}`), []byte(empty), uint8(MergeFail))
	f.Add([]byte(empty), []byte(empty), []byte(`{"type":"FeatureCollection","features":[1,"x",null]}`), uint8(MergeFail))
	f.Add([]byte(empty), []byte(empty), []byte(empty), uint8(3))
	// Too deep.
	f.Add([]byte(`{"type":"FeatureCollection","features":[],"x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`),
		[]byte(empty), []byte(empty), uint8(MergeFail))
	// Invalid UTF-8 and a lone surrogate.
	f.Add([]byte("{\"type\":\"FeatureCollection\",\"features\":[],\"n\":\"\xff\"}"),
		[]byte(`{"type":"FeatureCollection","features":[],"n":"\ud800"}`), []byte(empty), uint8(MergeFail))

	f.Fuzz(func(t *testing.T, reference, latest, incoming []byte, p uint8) {
		checkMerge(t, reference, latest, incoming, MergePolicy(p%4))
	})
}

// checkMerge runs Merge and checks what FuzzMerge promises of its result.
func checkMerge(t *testing.T, reference, latest, incoming []byte, policy MergePolicy) {
	t.Helper()
	res, err := Merge(reference, latest, incoming, policy)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) || e.Code() == "" || Code(err) == "internal" {
			t.Fatalf("error without a code: %v", err)
		}
		if res.Document != nil {
			t.Fatalf("a document alongside an error: %v", err)
		}
		if errors.Is(err, ErrConflict) != (len(res.Conflicts) > 0) || errors.Is(err, ErrConflict) && policy != MergeFail {
			t.Fatalf("error %v with %d conflicts under policy %d", err, len(res.Conflicts), policy)
		}
		return
	}
	if policy == MergeFail && len(res.Conflicts) > 0 {
		t.Fatalf("conflicts without an error under MergeFail")
	}
	if !json.Valid(res.Document) {
		t.Fatalf("invalid merged document: %s", res.Document)
	}
	// The merged document is a datalayer, canonical, and merging it with itself gives
	// it back unchanged.
	again, err := Merge(res.Document, res.Document, res.Document, MergeFail)
	if err != nil || string(again.Document) != string(res.Document) {
		t.Fatalf("merged document does not merge to itself: %v\n%s\n%s", err, res.Document, again.Document)
	}
	for _, c := range res.Conflicts {
		for _, v := range []string{c.Reference, c.Latest, c.Incoming} {
			if v != "" && !json.Valid([]byte(v)) {
				t.Fatalf("conflict value is not JSON: %q", v)
			}
		}
	}
}

// TestMergeDamageThatParses: the three documents of a merge with a conflict, each in turn
// damaged so that it still parses (kitDamaged: each scalar replaced, each array element
// dropped), under every policy: a typed error or a canonical document, as FuzzMerge checks
// (random bytes seldom stay JSON).
func TestMergeDamageThatParses(t *testing.T) {
	docs := [3][]byte{
		[]byte(`{"type":"FeatureCollection","_umap_options":{"name":"Cafés","rank":1},"features":[{"type":"Feature","id":"UxNjQ","geometry":{"type":"Point","coordinates":[2.333,48.8539]},"properties":{"name":"Café de Flore","_umap_options":{"color":"Black"}}},{"type":"Feature","id":7,"properties":{"a":[1,2]}}]}`),
		[]byte(`{"type":"FeatureCollection","_umap_options":{"name":"Cafés","rank":2},"features":[{"type":"Feature","id":"UxNjQ","geometry":{"type":"Point","coordinates":[2.333,48.8539]},"properties":{"name":"Le Flore","_umap_options":{"color":"Black"}}}]}`),
		[]byte(`{"type":"FeatureCollection","_umap_options":{"name":"Cafés","rank":1},"features":[{"type":"Feature","id":"UxNjQ","geometry":{"type":"Point","coordinates":[2.4,48.9]},"properties":{"name":"Flore","_umap_options":{"color":"Red"}}},{"type":"Feature","id":"new","properties":{}}]}`),
	}
	n := 0
	for i := range docs {
		for _, damaged := range kitDamaged(docs[i]) {
			in := docs
			in[i] = damaged
			for p := MergeFail; p <= MergeIncomingWins; p++ {
				checkMerge(t, in[0], in[1], in[2], p)
				n++
			}
		}
	}
	t.Logf("%d merges of damaged documents", n)
}
