package main

// The datalayer save endpoint: how a client without live sync (sync off, or an
// old tab) saves a datalayer, as uMap's server does it — optimistic concurrency
// with a three-way merge of a stale save (DESIGN §8), but key by key
// (crdt.Merge) rather than feature by feature.
//
//	GET /api/maps/{map}/datalayers/{id}
//	PUT /api/maps/{map}/datalayers/{id}[?conflicts=fail|latest|incoming]
//
// GET answers the latest saved version: the GeoJSON FeatureCollection, with
// "X-Datalayer-Version: N" and "ETag: "N"". A datalayer never saved is 404.
//
// PUT saves a FeatureCollection. The client names the version it started from
// in "X-Datalayer-Version: N" or "If-Match: "N"" (the ETag of its GET); absent
// or 0 means it started from nothing (a new datalayer). Then:
//
//   - N is the latest version (0 for a datalayer never saved): the body is
//     stored as version N+1. 200 {"version":N+1}.
//   - N is older (a stale save): crdt.Merge(version N, latest, body) under the
//     policy of ?conflicts= (fail, the default; latest: the latest save keeps
//     the conflicting keys; incoming: this save overwrites them). Merged, it is
//     stored as a new version: 200 {"version":…,"merged":true,"document":…,
//     "conflicts":[…]}, the conflicts listed being the ones the policy
//     resolved. A stale save from version 0 while a datalayer exists merges
//     against the empty datalayer: both sides' features and options are kept.
//   - Conflicts under fail: 412 {"error":{"code":"conflict","message":…},
//     "conflicts":[…]} (crdt.AppendConflictsJSON: feature id, key path and the
//     three values) and nothing is stored.
//   - N is not a kept version (older than the kept history, or never saved):
//     409 with code "unknown_version". The client must GET the latest and redo
//     its edits.
//
// Other errors, each {"error":{"code":…,"message":…}}: 400 "bad_name" (map
// or id not [A-Za-z0-9_-]{1,64}), "bad_version" (an unreadable version
// header), "bad_option" (an unknown ?conflicts=), "invalid_json" and
// "bad_value" (the body is not JSON, or not a FeatureCollection), "too_deep";
// 413 "too_large" (the body, or a merged document, over MaxBytes); 404
// "not_found"; 500 "internal". 412 and 409 carry the latest version's
// X-Datalayer-Version and ETag, so the client knows what to fetch.
//
// Documents are stored as crdt.Merge writes them: canonical JSON (members
// sorted, no whitespace), so GET may not return the bytes a client PUT, but
// the same JSON values.
//
// Storage: each version is a file of the data directory,
//
//	<data>/<map>/datalayers/<id>/<version>.json
//
// written atomically (a temporary file, fsync'd, renamed, the directory
// fsync'd; new directories fsync'd into their parents) before the PUT is
// answered: an accepted save survives a crash or power loss. The last Keep
// versions are kept (the new one included), older ones deleted. The files are
// the only state, so versions survive a restart. Saves of one datalayer are
// serialised by a lock of their own (reads share it); different datalayers
// save in parallel. One process per data directory: nothing locks the files.
//
// This store is separate from the relay's live-sync replica of the map
// (store.go): a datalayer saved here is not broadcast to live peers.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mapcrdt/mapcrdt/crdt"
)

// The ServeMux patterns of the save endpoint, and its version header.
const (
	DatalayerGetPattern = "GET /api/maps/{map}/datalayers/{id}"
	DatalayerPutPattern = "PUT /api/maps/{map}/datalayers/{id}"
	VersionHeader       = "X-Datalayer-Version"
)

// datalayerOptions configure the save endpoint. Zero fields take their defaults.
type datalayerOptions struct {
	// Dir is the data directory (created if missing).
	Dir string
	// Keep is how many versions of each datalayer are kept (default 50): a stale
	// save can be merged only from one of them.
	Keep int
	// MaxBytes bounds a request body and a stored document (default 16 MiB, at
	// most crdt.MergeMaxBytes/3, so that the three documents of a merge always
	// fit in crdt.MergeMaxBytes).
	MaxBytes int64
	// MaxSaves bounds the PUTs being read, validated and merged at once (default
	// 4): each holds its body (up to MaxBytes) and a merge's three documents in
	// memory. A PUT over it waits for a slot (its client may give up) before its
	// body is read.
	MaxSaves int
	// FoldCase makes map names and datalayer ids case-insensitive (lower case):
	// set on a case-insensitive filesystem, where "L1" and "l1" are one directory
	// (see Options.FoldCase).
	FoldCase bool
	// Log receives save events (default slog.Default()).
	Log *slog.Logger
}

// datalayers serves the save endpoint over the datalayer files of a data directory.
type datalayers struct {
	opts datalayerOptions

	mu    sync.Mutex            // guards locks
	locks map[string]*layerLock // by "<map>/<id>", while in use

	dirMu sync.Mutex // serialises creating directories (see makeDirs)

	saves   chan struct{} // a slot per PUT running (MaxSaves)
	waiting atomic.Int32  // PUTs waiting for a slot
}

// layerLock serialises the saves of one datalayer; refs counts the requests
// holding or waiting for it, so that it is dropped when unused.
type layerLock struct {
	sync.RWMutex
	refs int
}

// newDatalayers returns the save endpoint configured by o.
func newDatalayers(o datalayerOptions) *datalayers {
	if o.Keep <= 0 {
		o.Keep = 50
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 16 << 20
	}
	o.MaxBytes = min(o.MaxBytes, crdt.MergeMaxBytes/3)
	if o.MaxSaves <= 0 {
		o.MaxSaves = 4
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &datalayers{opts: o, locks: map[string]*layerLock{}, saves: make(chan struct{}, o.MaxSaves)}
}

// register adds the endpoint's routes to mux.
func (d *datalayers) register(mux *http.ServeMux) {
	mux.HandleFunc(DatalayerGetPattern, d.serveGet)
	mux.HandleFunc(DatalayerPutPattern, d.servePut)
}

// emptyLayer is version 0 of every datalayer: what a client creating one started from.
var emptyLayer = []byte(`{"features":[],"type":"FeatureCollection"}`)

func (d *datalayers) serveGet(w http.ResponseWriter, req *http.Request) {
	mapName, id, ok := d.layerNames(w, req)
	if !ok {
		return
	}
	unlock := d.lock(mapName, id, false)
	defer unlock()
	dir := d.layerDir(mapName, id)
	versions, err := listVersions(dir)
	if err != nil {
		d.internal(w, "listing versions", mapName, id, err)
		return
	}
	if len(versions) == 0 {
		writeError(w, http.StatusNotFound, "not_found",
			fmt.Sprintf("datalayer %q of map %q has never been saved", id, mapName))
		return
	}
	latest := versions[len(versions)-1]
	doc, err := os.ReadFile(versionPath(dir, latest))
	if err != nil {
		d.internal(w, "reading the latest version", mapName, id, err)
		return
	}
	setVersion(w, latest)
	w.Header().Set("Cache-Control", "no-cache")
	writeJSON(w, http.StatusOK, doc)
}

func (d *datalayers) servePut(w http.ResponseWriter, req *http.Request) {
	mapName, id, ok := d.layerNames(w, req)
	if !ok {
		return
	}
	policy, err := parsePolicy(req.URL.Query().Get("conflicts"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_option", err.Error())
		return
	}
	base, err := baseVersion(req.Header)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_version", err.Error())
		return
	}
	d.waiting.Add(1)
	select {
	case d.saves <- struct{}{}:
		d.waiting.Add(-1)
		defer func() { <-d.saves }()
	case <-req.Context().Done():
		d.waiting.Add(-1)
		writeError(w, http.StatusServiceUnavailable, "busy", "too many saves at once: retry")
		return
	}
	// Read and validate the body before taking the lock: a slow upload must
	// not hold up the other saves of the datalayer.
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, d.opts.MaxBytes))
	if err != nil {
		if tooBig := (*http.MaxBytesError)(nil); errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large",
				fmt.Sprintf("the body is over %d bytes", d.opts.MaxBytes))
			return
		}
		writeError(w, http.StatusBadRequest, "bad_body", "reading the body: "+err.Error())
		return
	}
	incoming, err := canonicalLayer(body)
	if err != nil {
		writeMergeError(w, err)
		return
	}
	if int64(len(incoming)) > d.opts.MaxBytes {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large",
			fmt.Sprintf("the body is %d bytes as canonical JSON, over %d", len(incoming), d.opts.MaxBytes))
		return
	}

	unlock := d.lock(mapName, id, true)
	defer unlock()
	dir := d.layerDir(mapName, id)
	versions, err := listVersions(dir)
	if err != nil {
		d.internal(w, "listing versions", mapName, id, err)
		return
	}
	var latest int64
	if len(versions) > 0 {
		latest = versions[len(versions)-1]
	}

	doc := incoming
	var merged bool
	var resolved []crdt.Conflict
	if base != latest {
		var reference []byte
		switch {
		case base > latest:
			setVersion(w, latest)
			msg := fmt.Sprintf("version %d of datalayer %q does not exist: the latest is %d", base, id, latest)
			if latest == 0 {
				msg = fmt.Sprintf("version %d of datalayer %q does not exist: it has never been saved", base, id)
			}
			writeError(w, http.StatusConflict, "unknown_version", msg)
			return
		case base == 0:
			reference = emptyLayer
		default:
			reference, err = os.ReadFile(versionPath(dir, base))
			if errors.Is(err, fs.ErrNotExist) {
				setVersion(w, latest)
				writeError(w, http.StatusConflict, "unknown_version", fmt.Sprintf(
					"version %d of datalayer %q is no longer kept (versions %d to %d are): GET the latest and redo the edits",
					base, id, versions[0], latest))
				return
			}
			if err != nil {
				d.internal(w, "reading the reference version", mapName, id, err)
				return
			}
		}
		latestDoc, err := os.ReadFile(versionPath(dir, latest))
		if err != nil {
			d.internal(w, "reading the latest version", mapName, id, err)
			return
		}
		res, err := crdt.Merge(reference, latestDoc, incoming, policy)
		switch {
		case crdt.Code(err) == "conflict":
			setVersion(w, latest)
			writeConflicts(w, err, res.Conflicts)
			return
		case err != nil:
			// The body was validated: the stored versions are at fault.
			d.internal(w, fmt.Sprintf("merging from version %d onto %d", base, latest), mapName, id, err)
			return
		}
		doc, merged, resolved = res.Document, true, res.Conflicts
		if int64(len(doc)) > d.opts.MaxBytes {
			setVersion(w, latest)
			writeError(w, http.StatusRequestEntityTooLarge, "too_large",
				fmt.Sprintf("the merged datalayer would be %d bytes, over %d", len(doc), d.opts.MaxBytes))
			return
		}
	}

	next := latest + 1
	if err := d.makeDirs(mapName, "datalayers", id); err != nil {
		d.internal(w, "creating the datalayer directory", mapName, id, err)
		return
	}
	if err := writeFileAtomic(versionPath(dir, next), doc); err != nil {
		d.internal(w, fmt.Sprintf("writing version %d", next), mapName, id, err)
		return
	}
	for _, v := range versions {
		if v > next-int64(d.opts.Keep) {
			break
		}
		if err := os.Remove(versionPath(dir, v)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			d.opts.Log.Warn("removing an old datalayer version", "map", mapName, "datalayer", id, "version", v, "err", err)
		}
	}
	d.opts.Log.Info("datalayer saved", "map", mapName, "datalayer", id, "version", next,
		"base", base, "merged", merged, "resolved", len(resolved), "bytes", len(doc))

	setVersion(w, next)
	out := append([]byte(`{"version":`), strconv.FormatInt(next, 10)...)
	if merged {
		out = append(out, `,"merged":true,"document":`...)
		out = append(out, doc...)
		out = append(out, `,"conflicts":`...)
		out = crdt.AppendConflictsJSON(out, resolved)
	}
	writeJSON(w, http.StatusOK, append(out, '}'))
}

// lock takes the lock of a datalayer (exclusive for a save, shared for a read)
// and returns its release.
func (d *datalayers) lock(mapName, id string, exclusive bool) (unlock func()) {
	key := mapName + "/" + id
	d.mu.Lock()
	l := d.locks[key]
	if l == nil {
		l = &layerLock{}
		d.locks[key] = l
	}
	l.refs++
	d.mu.Unlock()
	if exclusive {
		l.Lock()
	} else {
		l.RLock()
	}
	return func() {
		if exclusive {
			l.Unlock()
		} else {
			l.RUnlock()
		}
		d.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(d.locks, key)
		}
		d.mu.Unlock()
	}
}

// layerDir is the directory of a datalayer's versions.
func (d *datalayers) layerDir(mapName, id string) string {
	return filepath.Join(d.opts.Dir, mapName, "datalayers", id)
}

// makeDirs creates the directories Dir/parts[0]/parts[1]/… that are missing,
// each fsync'd into its parent. It holds dirMu, so that a save finding a
// directory another save is creating waits until its entry is durable.
func (d *datalayers) makeDirs(parts ...string) error {
	d.dirMu.Lock()
	defer d.dirMu.Unlock()
	if err := os.MkdirAll(d.opts.Dir, 0o755); err != nil {
		return err
	}
	dir := d.opts.Dir
	for _, p := range parts {
		sub := filepath.Join(dir, p)
		switch err := os.Mkdir(sub, 0o755); {
		case err == nil:
			if err := syncDir(dir); err != nil {
				return err
			}
		case !errors.Is(err, fs.ErrExist):
			return err
		}
		dir = sub
	}
	return nil
}

// internal logs a storage failure and answers 500.
func (d *datalayers) internal(w http.ResponseWriter, what, mapName, id string, err error) {
	d.opts.Log.Error("datalayer store: "+what, "map", mapName, "datalayer", id, "err", err)
	writeError(w, http.StatusInternalServerError, "internal", "the datalayer could not be saved or read: "+what)
}

// versionFile is the name of a version's file.
var versionFile = regexp.MustCompile(`^[1-9][0-9]{0,17}\.json$`)

// versionPath is the file of version v in dir.
func versionPath(dir string, v int64) string {
	return filepath.Join(dir, strconv.FormatInt(v, 10)+".json")
}

// listVersions returns the versions stored in dir, in increasing order (none
// if dir does not exist). Temporary files of an interrupted write are not
// versions.
func listVersions(dir string) ([]int64, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var vs []int64
	for _, e := range entries {
		if !e.Type().IsRegular() || !versionFile.MatchString(e.Name()) {
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSuffix(e.Name(), ".json"), 10, 64)
		if err == nil {
			vs = append(vs, v)
		}
	}
	slices.Sort(vs)
	return vs, nil
}

// layerNames returns the map and datalayer names of the request (in lower case
// under FoldCase), or answers 400.
func (d *datalayers) layerNames(w http.ResponseWriter, req *http.Request) (mapName, id string, ok bool) {
	mapName, id = req.PathValue("map"), req.PathValue("id")
	for _, n := range [...]struct{ what, name string }{{"map name", mapName}, {"datalayer id", id}} {
		if !idPattern.MatchString(n.name) {
			writeError(w, http.StatusBadRequest, "bad_name",
				fmt.Sprintf("invalid %s %s: want [A-Za-z0-9_-]{1,64}", n.what, quoteShort(n.name)))
			return "", "", false
		}
	}
	if d.opts.FoldCase {
		mapName, id = strings.ToLower(mapName), strings.ToLower(id)
	}
	return mapName, id, true
}

// parsePolicy reads the ?conflicts= parameter.
func parsePolicy(s string) (crdt.MergePolicy, error) {
	switch s {
	case "", "fail":
		return crdt.MergeFail, nil
	case "latest":
		return crdt.MergeLatestWins, nil
	case "incoming":
		return crdt.MergeIncomingWins, nil
	}
	return 0, fmt.Errorf("unknown conflicts policy %s: want fail, latest or incoming", quoteShort(s))
}

// versionText is a version number as the headers give it.
var versionText = regexp.MustCompile(`^(0|[1-9][0-9]{0,17})$`)

// baseVersion returns the version the client started from: X-Datalayer-Version
// or If-Match ("N" or W/"N", the ETag of a GET); 0 if neither is given.
func baseVersion(h http.Header) (int64, error) {
	var v int64 = -1
	if vals := h.Values(VersionHeader); len(vals) > 0 {
		s := strings.TrimSpace(vals[0])
		if len(vals) > 1 || !versionText.MatchString(s) {
			return 0, fmt.Errorf("invalid %s %s: want one version number", VersionHeader, quoteShort(strings.Join(vals, ", ")))
		}
		v, _ = strconv.ParseInt(s, 10, 64)
	}
	if vals := h.Values("If-Match"); len(vals) > 0 {
		s := strings.TrimSpace(vals[0])
		// A weak ETag names the same version: a proxy compressing the GET's body
		// (nginx's gzip) weakens its ETag, and the client sends what it got.
		inner, quoted := strings.CutPrefix(strings.TrimPrefix(s, "W/"), `"`)
		inner, closed := strings.CutSuffix(inner, `"`)
		if len(vals) > 1 || !quoted || !closed || !versionText.MatchString(inner) {
			return 0, fmt.Errorf(`invalid If-Match %s: want one ETag "N" of a GET`, quoteShort(strings.Join(vals, ", ")))
		}
		m, _ := strconv.ParseInt(inner, 10, 64)
		if v >= 0 && m != v {
			return 0, fmt.Errorf("%s %d and If-Match %s disagree", VersionHeader, v, s)
		}
		v = m
	}
	return max(v, 0), nil
}

// canonicalLayer validates data as a datalayer and returns it as canonical JSON
// (a merge with nothing on the other side: it parses data once).
func canonicalLayer(data []byte) ([]byte, error) {
	res, err := crdt.Merge(emptyLayer, emptyLayer, data, crdt.MergeFail)
	return res.Document, err
}

// writeMergeError answers the error of validating a body with its crdt code.
func writeMergeError(w http.ResponseWriter, err error) {
	code := crdt.Code(err)
	msg := strings.TrimPrefix(err.Error(), code+": ")
	if rest, ok := strings.CutPrefix(msg, "incoming document"); ok {
		msg = "the body" + rest
	}
	status := http.StatusInternalServerError
	switch code {
	case "invalid_json", "bad_value", "too_deep":
		status = http.StatusBadRequest
	case "too_large":
		status = http.StatusRequestEntityTooLarge
	}
	writeError(w, status, code, msg)
}

// errorBody is the JSON of an error answer.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func errorJSON(code, msg string) []byte {
	var e errorBody
	e.Error.Code, e.Error.Message = code, msg
	b, _ := json.Marshal(e) // strings only: it cannot fail
	return b
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorJSON(code, msg))
}

// writeConflicts answers 412 with the error of a refused merge and its conflicts.
func writeConflicts(w http.ResponseWriter, err error, conflicts []crdt.Conflict) {
	b := errorJSON("conflict", strings.TrimPrefix(err.Error(), "conflict: "))
	b = append(b[:len(b)-1], `,"conflicts":`...)
	b = crdt.AppendConflictsJSON(b, conflicts)
	writeJSON(w, http.StatusPreconditionFailed, append(b, '}'))
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// setVersion sets the version headers of an answer (none for version 0).
func setVersion(w http.ResponseWriter, v int64) {
	if v > 0 {
		s := strconv.FormatInt(v, 10)
		w.Header().Set(VersionHeader, s)
		w.Header().Set("ETag", `"`+s+`"`)
	}
}

// quoteShort quotes s for a message, cut to a readable length.
func quoteShort(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strconv.Quote(s)
}
