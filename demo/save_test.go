package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// A realistic datalayer: a café marker and a walk, with layer and feature options.

func cafe(name, color string) string {
	return `{"type":"Feature","id":"UxNjQ","geometry":{"type":"Point","coordinates":[2.3331,48.854]},
		"properties":{"name":"` + name + `","capacity":120,"_umap_options":{"color":"` + color + `","iconClass":"Drop"}}}`
}

const walk = `{"type":"Feature","id":"k3LmQ","geometry":{"type":"LineString","coordinates":[[2.33,48.85],[2.335,48.853],[2.34,48.86]]},
	"properties":{"name":"Promenade","_umap_options":{"weight":4}}}`

func layer(features ...string) string {
	return `{"type":"FeatureCollection","_umap_options":{"name":"Cafés","displayOnLoad":true,"color":"DarkBlue"},
		"features":[` + strings.Join(features, ",") + `]}`
}

// dlServer is a save endpoint under test, over a data directory.
type dlServer struct {
	t   *testing.T
	dir string
	srv *httptest.Server
}

func startDatalayers(t *testing.T, o datalayerOptions) *dlServer {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	mux := http.NewServeMux()
	newDatalayers(o).register(mux)
	s := &dlServer{t: t, dir: o.Dir, srv: httptest.NewServer(mux)}
	t.Cleanup(s.srv.Close)
	return s
}

// dlResponse is an answer: its status, version header and JSON body.
type dlResponse struct {
	status  int
	version string // X-Datalayer-Version
	etag    string
	raw     []byte
	body    map[string]any
}

// code is the error code of an error answer.
func (r dlResponse) code() string {
	e, _ := r.body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func (s *dlServer) do(method, path string, header map[string]string, body string) dlResponse {
	s.t.Helper()
	r := s.doRaw(method, path, header, body)
	if err := json.Unmarshal(r.raw, &r.body); err != nil {
		s.t.Fatalf("%s %s: body not a JSON object: %v: %s", method, path, err, r.raw)
	}
	return r
}

// doRaw is do without the body's decoding: the answer's bytes are in raw.
func (s *dlServer) doRaw(method, path string, header map[string]string, body string) dlResponse {
	s.t.Helper()
	req, err := http.NewRequest(method, s.srv.URL+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	r := dlResponse{status: resp.StatusCode, version: resp.Header.Get(VersionHeader), etag: resp.Header.Get("ETag"), raw: raw}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		s.t.Fatalf("%s %s: Content-Type %q, body %s", method, path, ct, raw)
	}
	return r
}

func (s *dlServer) get(path string) dlResponse { return s.do("GET", path, nil, "") }

// put saves body from version base ("" for no header).
func (s *dlServer) put(path, base, body string) dlResponse {
	var h map[string]string
	if base != "" {
		h = map[string]string{VersionHeader: base}
	}
	return s.do("PUT", path, h, body)
}

// mustPut saves body from version base and checks it is stored as version want.
func (s *dlServer) mustPut(path, base, body string, want int) dlResponse {
	s.t.Helper()
	r := s.put(path, base, body)
	if r.status != 200 || r.body["version"] != float64(want) || r.version != strconv.Itoa(want) {
		s.t.Fatalf("PUT %s from %q: %d %s %s, want version %d", path, base, r.status, r.version, r.raw, want)
	}
	return r
}

// files lists the files of a datalayer's directory.
func (s *dlServer) files(mapName, id string) []string {
	s.t.Helper()
	entries, err := os.ReadDir(filepath.Join(s.dir, mapName, "datalayers", id))
	if err != nil && !os.IsNotExist(err) {
		s.t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

// feature returns the feature of a document with id.
func feature(t *testing.T, doc map[string]any, id string) map[string]any {
	t.Helper()
	feats, _ := doc["features"].([]any)
	for _, f := range feats {
		if f, _ := f.(map[string]any); f["id"] == id {
			return f
		}
	}
	t.Fatalf("no feature %q in %v", id, doc)
	return nil
}

// prop returns a feature's property at a dotted path.
func prop(t *testing.T, doc map[string]any, id, path string) any {
	t.Helper()
	var v any = feature(t, doc, id)["properties"]
	for k := range strings.SplitSeq(path, ".") {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	return v
}

func TestDatalayerCreateGetUpdate(t *testing.T) {
	s := startDatalayers(t, datalayerOptions{})
	const path = "/api/maps/paris/datalayers/cafes"
	if r := s.get(path); r.status != 404 || r.code() != "not_found" || r.version != "" {
		t.Fatalf("GET before any save: %d %s", r.status, r.raw)
	}

	r := s.mustPut(path, "", layer(cafe("Café de Flore", "Gold")), 1)
	if string(r.raw) != `{"version":1}` || r.etag != `"1"` {
		t.Fatalf("create: %s, ETag %s", r.raw, r.etag)
	}
	got := s.get(path)
	if got.status != 200 || got.version != "1" || got.etag != `"1"` {
		t.Fatalf("GET: %d %q %q", got.status, got.version, got.etag)
	}
	if prop(t, got.body, "UxNjQ", "name") != "Café de Flore" || prop(t, got.body, "UxNjQ", "_umap_options.color") != "Gold" {
		t.Fatalf("GET: %s", got.raw)
	}
	// Stored as canonical JSON: members sorted, no whitespace.
	if !strings.HasPrefix(string(got.raw), `{"_umap_options":{"color":"DarkBlue","displayOnLoad":true,"name":"Cafés"},"features":[{"geometry":`) {
		t.Fatalf("not canonical: %s", got.raw)
	}

	// Updates in order, by either header; 0 on an empty layer is a creation too.
	s.mustPut(path, "1", layer(cafe("Café de Flore", "Gold"), walk), 2)
	r = s.do("PUT", path, map[string]string{"If-Match": `"2"`}, layer(walk))
	if r.status != 200 || string(r.raw) != `{"version":3}` {
		t.Fatalf("If-Match update: %d %s", r.status, r.raw)
	}
	r = s.do("PUT", path, map[string]string{"If-Match": `"3"`, VersionHeader: "3"}, layer(walk, cafe("Les Deux Magots", "Green")))
	if r.status != 200 || string(r.raw) != `{"version":4}` {
		t.Fatalf("both headers: %d %s", r.status, r.raw)
	}
	// The ETag as a compressing proxy (nginx's gzip) hands it on: weakened.
	r = s.do("PUT", path, map[string]string{"If-Match": `W/"4"`}, layer(walk, cafe("Les Deux Magots", "Green")))
	if r.status != 200 || string(r.raw) != `{"version":5}` {
		t.Fatalf("weak If-Match: %d %s", r.status, r.raw)
	}
	got = s.get(path)
	if got.version != "5" || prop(t, got.body, "UxNjQ", "name") != "Les Deux Magots" {
		t.Fatalf("GET after updates: %s %s", got.version, got.raw)
	}
	if feats := got.body["features"].([]any); len(feats) != 2 || feats[0].(map[string]any)["id"] != "k3LmQ" {
		t.Fatalf("features: %v", feats)
	}
	s.mustPut("/api/maps/paris/datalayers/bars", "0", layer(), 1)

	if files := s.files("paris", "cafes"); !slices.Equal(files, []string{"1.json", "2.json", "3.json", "4.json", "5.json"}) {
		t.Fatalf("files: %v", files)
	}
}

func TestDatalayerStaleSaveIsMerged(t *testing.T) {
	s := startDatalayers(t, datalayerOptions{})
	const path = "/api/maps/paris/datalayers/cafes"
	s.mustPut(path, "", layer(cafe("Café de Flore", "Gold"), walk), 1)

	// Two clients start from version 1 and change different properties of the same feature.
	a := s.mustPut(path, "1", layer(cafe("Le Flore", "Gold"), walk), 2)
	if _, merged := a.body["merged"]; merged {
		t.Fatalf("an up-to-date save is not merged: %s", a.raw)
	}
	b := s.mustPut(path, "1", layer(cafe("Café de Flore", "Crimson"), walk), 3)
	if b.body["merged"] != true {
		t.Fatalf("stale save: %s", b.raw)
	}
	if cs := b.body["conflicts"].([]any); len(cs) != 0 {
		t.Fatalf("conflicts: %v", cs)
	}
	doc := b.body["document"].(map[string]any)
	if prop(t, doc, "UxNjQ", "name") != "Le Flore" || prop(t, doc, "UxNjQ", "_umap_options.color") != "Crimson" {
		t.Fatalf("merged document lost an edit: %s", b.raw)
	}
	got := s.get(path)
	if got.version != "3" || prop(t, got.body, "UxNjQ", "name") != "Le Flore" || prop(t, got.body, "UxNjQ", "_umap_options.color") != "Crimson" {
		t.Fatalf("GET: %s %s", got.version, got.raw)
	}
	// The merged document is what GET gives.
	want, _ := json.Marshal(doc)
	have, _ := json.Marshal(got.body)
	if string(want) != string(have) {
		t.Fatalf("stored %s, answered %s", have, want)
	}

	// A third client, from version 1 too, adds a feature and deletes the walk: applied on top.
	c := s.mustPut(path, "1", layer(cafe("Café de Flore", "Gold"), `{"type":"Feature","id":"new1","geometry":{"type":"Point","coordinates":[2.35,48.86]},"properties":{"name":"Le Select"}}`), 4)
	doc = c.body["document"].(map[string]any)
	if feats := doc["features"].([]any); len(feats) != 2 || prop(t, doc, "new1", "name") != "Le Select" || prop(t, doc, "UxNjQ", "name") != "Le Flore" {
		t.Fatalf("third save: %s", c.raw)
	}
}

func TestDatalayerConcurrentCreationsAreMerged(t *testing.T) {
	s := startDatalayers(t, datalayerOptions{})
	const path = "/api/maps/paris/datalayers/cafes"
	s.mustPut(path, "", layer(cafe("Café de Flore", "Gold")), 1)
	// A second client also created the layer (it started from nothing): both kept.
	r := s.mustPut(path, "0", layer(walk), 2)
	doc := r.body["document"].(map[string]any)
	if len(doc["features"].([]any)) != 2 || prop(t, doc, "k3LmQ", "name") != "Promenade" || prop(t, doc, "UxNjQ", "name") != "Café de Flore" {
		t.Fatalf("creations: %s", r.raw)
	}
}

func TestDatalayerConflictIsRefused(t *testing.T) {
	s := startDatalayers(t, datalayerOptions{})
	const path = "/api/maps/paris/datalayers/cafes"
	s.mustPut(path, "", layer(cafe("Café de Flore", "Gold"), walk), 1)
	s.mustPut(path, "1", layer(cafe("Le Flore", "Gold"), walk), 2)
	before := s.get(path)

	r := s.put(path, "1", layer(cafe("Flore", "Gold"), walk))
	if r.status != http.StatusPreconditionFailed || r.code() != "conflict" || r.version != "2" || r.etag != `"2"` {
		t.Fatalf("conflicting save: %d %q %s", r.status, r.version, r.raw)
	}
	msg := r.body["error"].(map[string]any)["message"].(string)
	if !strings.Contains(msg, `"UxNjQ"`) || !strings.Contains(msg, `"properties.name"`) {
		t.Fatalf("message %q does not name the feature and key", msg)
	}
	cs := r.body["conflicts"].([]any)
	want := map[string]any{"featureId": "UxNjQ", "key": "properties.name",
		"reference": "Café de Flore", "latest": "Le Flore", "incoming": "Flore"}
	if len(cs) != 1 || fmt.Sprint(cs[0]) != fmt.Sprint(want) {
		t.Fatalf("conflicts: %v", cs)
	}

	// An edit of a feature the latest version deleted.
	s.mustPut(path, "2", layer(cafe("Le Flore", "Gold")), 3)
	r = s.put(path, "2", layer(cafe("Le Flore", "Gold"), strings.Replace(walk, "Promenade", "Balade", 1)))
	if r.status != 412 || len(r.body["conflicts"].([]any)) != 1 {
		t.Fatalf("edit against delete: %d %s", r.status, r.raw)
	}
	if c := r.body["conflicts"].([]any)[0].(map[string]any); c["featureId"] != "k3LmQ" || c["key"] != "" || c["latest"] != nil || c["incoming"] == nil {
		t.Fatalf("edit against delete: %v", c)
	}

	// Nothing was stored.
	after := s.get(path)
	if after.version != "3" || s.files("paris", "cafes")[2] != "3.json" || len(s.files("paris", "cafes")) != 3 {
		t.Fatalf("after refusals: version %s, files %v", after.version, s.files("paris", "cafes"))
	}
	if prop(t, after.body, "UxNjQ", "name") != "Le Flore" || before.version != "2" {
		t.Fatalf("after refusals: %s", after.raw)
	}
}

func TestDatalayerConflictPolicies(t *testing.T) {
	for _, tt := range []struct{ policy, name, color string }{
		{"latest", "Le Flore", "Crimson"},
		{"incoming", "Flore", "Crimson"},
	} {
		t.Run(tt.policy, func(t *testing.T) {
			s := startDatalayers(t, datalayerOptions{})
			const path = "/api/maps/paris/datalayers/cafes"
			s.mustPut(path, "", layer(cafe("Café de Flore", "Gold"), walk), 1)
			s.mustPut(path, "1", layer(cafe("Le Flore", "Gold"), walk), 2)
			r := s.mustPut(path+"?conflicts="+tt.policy, "1", layer(cafe("Flore", "Crimson"), walk), 3)
			doc := r.body["document"].(map[string]any)
			if r.body["merged"] != true || prop(t, doc, "UxNjQ", "name") != tt.name || prop(t, doc, "UxNjQ", "_umap_options.color") != tt.color {
				t.Fatalf("%s: %s", tt.policy, r.raw)
			}
			// The resolved conflict is reported.
			cs := r.body["conflicts"].([]any)
			if len(cs) != 1 || cs[0].(map[string]any)["key"] != "properties.name" {
				t.Fatalf("resolved conflicts: %v", cs)
			}
			if got := s.get(path); got.version != "3" || prop(t, got.body, "UxNjQ", "name") != tt.name {
				t.Fatalf("GET: %s", got.raw)
			}
		})
	}
}

func TestDatalayerBadRequests(t *testing.T) {
	s := startDatalayers(t, datalayerOptions{MaxBytes: 4096})
	const path = "/api/maps/paris/datalayers/cafes"
	ok := layer(cafe("Café de Flore", "Gold"))
	for _, tt := range []struct {
		name, path string
		header     map[string]string
		body       string
		status     int
		code, msg  string
	}{
		{"not JSON", path, nil, `{"type":"FeatureCollection",`, 400, "invalid_json", "the body"},
		{"empty body", path, nil, ``, 400, "invalid_json", "the body"},
		{"a Feature", path, nil, cafe("x", "y"), 400, "bad_value", `the body has type "Feature", expected "FeatureCollection"`},
		{"no features", path, nil, `{"type":"FeatureCollection"}`, 400, "bad_value", `no "features"`},
		{"a feature not a Feature", path, nil, `{"type":"FeatureCollection","features":[{"type":"Point","coordinates":[1,2]}]}`, 400, "bad_value", "features[0]"},
		{"too deep", path, nil, `{"type":"FeatureCollection","features":[],"x":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`, 400, "too_deep", ""},
		{"too large", path, nil, layer(strings.Repeat(cafe("x", "y")+",", 40) + walk), 413, "too_large", "4096"},
		{"bad version", path, map[string]string{VersionHeader: "v1"}, ok, 400, "bad_version", `"v1"`},
		{"negative version", path, map[string]string{VersionHeader: "-1"}, ok, 400, "bad_version", ""},
		{"unquoted If-Match", path, map[string]string{"If-Match": "1"}, ok, 400, "bad_version", "If-Match"},
		{"weak If-Match unquoted", path, map[string]string{"If-Match": `W/1`}, ok, 400, "bad_version", "If-Match"},
		{"any If-Match", path, map[string]string{"If-Match": `*`}, ok, 400, "bad_version", "If-Match"},
		{"headers disagree", path, map[string]string{VersionHeader: "1", "If-Match": `"2"`}, ok, 400, "bad_version", "disagree"},
		{"bad policy", path + "?conflicts=mine", nil, ok, 400, "bad_option", `"mine"`},
		{"bad map name", "/api/maps/par.is/datalayers/cafes", nil, ok, 400, "bad_name", `map name "par.is"`},
		{"bad id", "/api/maps/paris/datalayers/" + strings.Repeat("c", 65), nil, ok, 400, "bad_name", "datalayer id"},
	} {
		r := s.do("PUT", tt.path, tt.header, tt.body)
		msg, _ := r.body["error"].(map[string]any)["message"].(string)
		if r.status != tt.status || r.code() != tt.code || !strings.Contains(msg, tt.msg) {
			t.Errorf("%s: %d %s, want %d %s %q", tt.name, r.status, r.raw, tt.status, tt.code, tt.msg)
		}
	}
	if r := s.get("/api/maps/par.is/datalayers/cafes"); r.status != 400 || r.code() != "bad_name" {
		t.Errorf("GET of a bad name: %d %s", r.status, r.raw)
	}
	// Nothing was stored.
	if r := s.get(path); r.status != 404 {
		t.Fatalf("after bad requests: %d %s", r.status, r.raw)
	}
	if entries, _ := os.ReadDir(s.dir); len(entries) != 0 {
		t.Fatalf("after bad requests the data directory holds %v", entries)
	}
}

func TestDatalayerUnknownVersion(t *testing.T) {
	s := startDatalayers(t, datalayerOptions{Keep: 3})
	const path = "/api/maps/paris/datalayers/cafes"
	if r := s.put(path, "1", layer()); r.status != 409 || r.code() != "unknown_version" || !strings.Contains(string(r.raw), "never been saved") {
		t.Fatalf("version 1 of a new layer: %d %s", r.status, r.raw)
	}
	colors := []string{"Gold", "Crimson", "Green", "Blue", "Black"}
	for i, c := range colors {
		s.mustPut(path, strconv.Itoa(i), layer(cafe("Café de Flore", c), walk), i+1)
	}
	if files := s.files("paris", "cafes"); !slices.Equal(files, []string{"3.json", "4.json", "5.json"}) {
		t.Fatalf("kept: %v", files)
	}
	for _, base := range []string{"1", "2", "6", "99"} {
		r := s.put(path, base, layer(cafe("Flore", "Black"), walk))
		if r.status != 409 || r.code() != "unknown_version" || r.version != "5" {
			t.Errorf("from version %s: %d %s", base, r.status, r.raw)
		}
	}
	if r := s.put(path, "2", layer()); !strings.Contains(string(r.raw), "no longer kept (versions 3 to 5 are)") {
		t.Errorf("message: %s", r.raw)
	}
	// The oldest kept version still merges.
	r := s.mustPut(path, "3", layer(cafe("Flore", "Green"), walk), 6)
	if doc := r.body["document"].(map[string]any); prop(t, doc, "UxNjQ", "name") != "Flore" || prop(t, doc, "UxNjQ", "_umap_options.color") != "Black" {
		t.Fatalf("merge from the oldest kept: %s", r.raw)
	}
	if files := s.files("paris", "cafes"); !slices.Equal(files, []string{"4.json", "5.json", "6.json"}) {
		t.Fatalf("kept: %v", files)
	}
}

func TestDatalayerVersionsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	const path = "/api/maps/paris/datalayers/cafes"
	s := startDatalayers(t, datalayerOptions{Dir: dir})
	s.mustPut(path, "", layer(cafe("Café de Flore", "Gold"), walk), 1)
	s.mustPut(path, "1", layer(cafe("Le Flore", "Gold"), walk), 2)
	s.srv.Close()

	s = startDatalayers(t, datalayerOptions{Dir: dir})
	if got := s.get(path); got.version != "2" || prop(t, got.body, "UxNjQ", "name") != "Le Flore" {
		t.Fatalf("GET after restart: %s %s", got.version, got.raw)
	}
	// A stale save from before the restart merges against the stored version 1.
	r := s.mustPut(path, "1", layer(cafe("Café de Flore", "Crimson"), walk), 3)
	if doc := r.body["document"].(map[string]any); prop(t, doc, "UxNjQ", "name") != "Le Flore" || prop(t, doc, "UxNjQ", "_umap_options.color") != "Crimson" {
		t.Fatalf("merge after restart: %s", r.raw)
	}
	if files := s.files("paris", "cafes"); !slices.Equal(files, []string{"1.json", "2.json", "3.json"}) {
		t.Fatalf("files: %v", files)
	}
}

// TestDatalayerConcurrentSavesLoseNothing: clients all starting from version 1
// save at once. Every accepted save is in the final document; refused ones
// (conflicts) are not, and each version number is given once.
func TestDatalayerConcurrentSavesLoseNothing(t *testing.T) {
	s := startDatalayers(t, datalayerOptions{})
	const path = "/api/maps/paris/datalayers/cafes"
	s.mustPut(path, "", layer(cafe("Café de Flore", "Gold")), 1)

	const n = 24
	type result struct {
		status  int
		version float64
		name    string // the café name this client set, if it did
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			// Even clients add a feature of their own (never a conflict); odd ones
			// rename the café (all conflict with each other but the first).
			body := layer(cafe("Café de Flore", "Gold"), fmt.Sprintf(
				`{"type":"Feature","id":"f%d","geometry":{"type":"Point","coordinates":[2.3,48.%d]},"properties":{"name":"added by %d"}}`, i, i, i))
			name := ""
			if i%2 == 1 {
				name = fmt.Sprintf("Flore %d", i)
				body = layer(cafe(name, "Gold"))
			}
			hdr := map[string]string{VersionHeader: "1"}
			if i%3 == 0 {
				hdr = map[string]string{"If-Match": `"1"`}
			}
			r := s.do("PUT", path, hdr, body)
			v, _ := r.body["version"].(float64)
			results[i] = result{r.status, v, name}
		})
	}
	wg.Wait()

	got := s.get(path)
	seen := map[float64]bool{}
	renames := 0
	for i, r := range results {
		switch {
		case r.status == 200:
			if seen[r.version] {
				t.Errorf("version %v given twice", r.version)
			}
			seen[r.version] = true
			if r.name != "" {
				renames++
				if prop(t, got.body, "UxNjQ", "name") != r.name {
					t.Errorf("accepted rename to %q lost: %s", r.name, got.raw)
				}
			} else if prop(t, got.body, fmt.Sprintf("f%d", i), "name") != fmt.Sprintf("added by %d", i) {
				t.Errorf("accepted addition of f%d lost", i)
			}
		case r.status == 412 && r.name != "":
		default:
			t.Errorf("client %d: status %d", i, r.status)
		}
	}
	// Additions never conflict. The first rename stored is accepted (on the
	// latest version, or merged over additions that left the name alone); every
	// later one conflicts with it.
	if renames != 1 {
		t.Errorf("%d conflicting renames accepted, want 1", renames)
	}
	if want := strconv.Itoa(len(seen) + 1); got.version != want {
		t.Errorf("latest version %s, want %s (%d saves accepted)", got.version, want, len(seen))
	}
	for v := 2; v <= len(seen)+1; v++ {
		if !seen[float64(v)] {
			t.Errorf("version %d not given", v)
		}
	}
	if feats := got.body["features"].([]any); len(feats) != 1+n/2 {
		t.Errorf("%d features, want %d", len(feats), 1+n/2)
	}
}

// TestDatalayerRoutesInRun: run serves the endpoint, beside the page and the relay.
func TestDatalayerRoutesInRun(t *testing.T) {
	dir := t.TempDir()
	cfg := config{addr: "127.0.0.1:0", data: filepath.Join(dir, "data"), static: dir, glue: dir}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, pw); pw.Close() }()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	url := strings.TrimSpace(strings.TrimPrefix(line, "listening on ")) + "/api/maps/paris/datalayers/cafes"

	req, _ := http.NewRequest("PUT", url, strings.NewReader(layer(walk)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != `{"version":1}` {
		t.Fatalf("PUT: %d %s", resp.StatusCode, body)
	}
	resp, err = http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get(VersionHeader) != "1" {
		t.Fatalf("GET: %d %v", resp.StatusCode, resp.Header)
	}
	if _, err := os.Stat(filepath.Join(cfg.data, "paris", "datalayers", "cafes", "1.json")); err != nil {
		t.Fatal(err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

func TestDatalayerStoreEdgeCases(t *testing.T) {
	s := startDatalayers(t, datalayerOptions{MaxBytes: 4096})
	const path = "/api/maps/paris/datalayers/cafes"
	s.mustPut(path, "", layer(cafe("Café de Flore", "Gold")), 1)
	big := func(id string) string {
		return `{"type":"Feature","id":"` + id + `","geometry":null,"properties":{"note":"` + strings.Repeat("x", 2500) + `"}}`
	}

	// Two saves that fit, merged, would not: refused, nothing stored.
	s.mustPut(path, "1", layer(cafe("Café de Flore", "Gold"), big("a")), 2)
	if r := s.put(path, "1", layer(cafe("Café de Flore", "Gold"), big("b"))); r.status != 413 || r.code() != "too_large" || !strings.Contains(string(r.raw), "merged") {
		t.Fatalf("merged too large: %d %s", r.status, r.raw)
	}

	// The temporary file of an interrupted write is not a version.
	dir := filepath.Join(s.dir, "paris", "datalayers", "cafes")
	if err := os.WriteFile(filepath.Join(dir, "3.json.tmp"), []byte(`{"type":`), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := s.get(path); got.version != "2" {
		t.Fatalf("GET with a leftover temporary file: %s", got.version)
	}
	s.mustPut(path, "2", layer(cafe("Le Flore", "Gold")), 3)
	if files := s.files("paris", "cafes"); !slices.Equal(files, []string{"1.json", "2.json", "3.json"}) {
		t.Fatalf("files: %v", files)
	}

	// A damaged stored version: a stale save through it is a 500, and stores nothing.
	if err := os.WriteFile(filepath.Join(dir, "2.json"), []byte(`{"type":"Feat`), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := s.put(path, "2", layer(cafe("Le Flore", "Crimson"))); r.status != 500 || r.code() != "internal" {
		t.Fatalf("damaged reference: %d %s", r.status, r.raw)
	}
	if got := s.get(path); got.version != "3" {
		t.Fatalf("after the failure: %s", got.version)
	}
}

// TestDatalayerWriteFailureStoresNothing: a version that cannot be written (a full disk,
// a failing device: here its temporary file's path is a directory) is a 500, and the
// latest version stays the one before; once writable, the same save is taken.
func TestDatalayerWriteFailureStoresNothing(t *testing.T) {
	s := startDatalayers(t, datalayerOptions{})
	const path = "/api/maps/paris/datalayers/cafes"
	s.mustPut(path, "", layer(cafe("Café de Flore", "Gold")), 1)
	blocker := filepath.Join(s.dir, "paris", "datalayers", "cafes", "2.json.tmp")
	writeFile(t, filepath.Join(blocker, "x"), "x")
	if r := s.put(path, "1", layer(cafe("Le Flore", "Gold"))); r.status != 500 || r.code() != "internal" {
		t.Fatalf("save with an unwritable version: %d %s", r.status, r.raw)
	}
	if got := s.get(path); got.version != "1" || prop(t, got.body, "UxNjQ", "name") != "Café de Flore" {
		t.Fatalf("GET after the failed save: %s %s", got.version, got.raw)
	}
	if err := os.RemoveAll(blocker); err != nil {
		t.Fatal(err)
	}
	s.mustPut(path, "1", layer(cafe("Le Flore", "Gold")), 2)
	if files := s.files("paris", "cafes"); !slices.Equal(files, []string{"1.json", "2.json"}) {
		t.Fatalf("files: %v", files)
	}
}
