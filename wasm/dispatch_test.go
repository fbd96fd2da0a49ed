package main

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/mapcrdt/mapcrdt/crdt"
	"github.com/mapcrdt/mapcrdt/hlc"
)

// The dispatcher is plain Go: these tests run natively (go test ./wasm/...) and under Node
// (GOOS=js GOARCH=wasm go test ./wasm/...).

const (
	t0   = int64(1_727_184_449_010) // the wall clock of the tests, ms
	meta = `{"id":"f1","layerId":"L1","featureType":"marker"}`
	feat = `{"type":"Feature","geometry":{"type":"Point","coordinates":[1,2]},"properties":{"name":"x"}}`
)

// tester drives a Host with text arguments.
type tester struct {
	t *testing.T
	h *Host
}

func newTester(t *testing.T) *tester { return &tester{t: t, h: NewHost()} }

func args(a ...string) [][]byte {
	out := make([][]byte, len(a))
	for i, s := range a {
		out[i] = []byte(s)
	}
	return out
}

// call runs a call and returns its result and whether it succeeded.
func (x *tester) call(m Method, handle uint32, flags uint32, a ...string) (string, bool) {
	x.t.Helper()
	out, ok := x.h.Call(nil, &Call{Method: m, Handle: handle, Flags: flags, Now: t0, Args: args(a...)})
	if !ok && !json.Valid(out) {
		x.t.Fatalf("%s: error is not JSON: %q", methodNames[m], out)
	}
	return string(out), ok
}

// must runs a call that must succeed.
func (x *tester) must(m Method, handle uint32, a ...string) string {
	x.t.Helper()
	out, ok := x.call(m, handle, FlagChanges, a...)
	if !ok {
		x.t.Fatalf("%s(%q): %s", methodNames[m], a, out)
	}
	return out
}

// fails runs a call that must fail with code, and returns the message.
func (x *tester) fails(code string, m Method, handle uint32, a ...string) string {
	x.t.Helper()
	out, ok := x.call(m, handle, 0, a...)
	if ok {
		x.t.Fatalf("%s(%q) = %q, want error %s", methodNames[m], a, out, code)
	}
	var e struct{ Code, Message string }
	if err := json.Unmarshal([]byte(out), &e); err != nil {
		x.t.Fatalf("error JSON %q: %v", out, err)
	}
	if e.Code != code {
		x.t.Fatalf("%s(%q): code %q (%s), want %q", methodNames[m], a, e.Code, e.Message, code)
	}
	return e.Message
}

func (x *tester) create(peer string) uint32 {
	x.t.Helper()
	n, err := strconv.Atoi(x.must(MethodCreate, 0, peer))
	if err != nil {
		x.t.Fatal(err)
	}
	return uint32(n)
}

// deliver flushes from and gives every message to each of to.
func (x *tester) deliver(from uint32, to ...uint32) int {
	x.t.Helper()
	out := x.must(MethodFlush, from)
	if out == "" {
		return 0
	}
	msgs := strings.Split(out, string(rune(RecordSeparator)))
	for _, m := range msgs {
		if !json.Valid([]byte(m)) {
			x.t.Fatalf("flush gave invalid JSON %q", m)
		}
		for _, h := range to {
			x.must(MethodReceive, h, m)
		}
	}
	return len(msgs)
}

func TestMethodTable(t *testing.T) {
	seen := map[string]bool{}
	for i, name := range Methods() {
		if name == "" || seen[name] {
			t.Fatalf("method %d: name %q empty or repeated", i, name)
		}
		seen[name] = true
		m, ok := MethodByName(name)
		if !ok || int(m) != i {
			t.Fatalf("MethodByName(%q) = %d, %v", name, m, ok)
		}
		if Method(i) != MethodCreate && Method(i) != MethodClose && Method(i) != MethodRestoreStep && handlers[i] == nil {
			t.Fatalf("method %q has no handler", name)
		}
	}
	if _, ok := MethodByName("nope"); ok {
		t.Fatal("MethodByName(nope) found something")
	}
}

func TestTwoEnginesConverge(t *testing.T) {
	x := newTester(t)
	a, b := x.create("a"), x.create("b")
	if a == b {
		t.Fatal("two engines share a handle")
	}
	changes := x.must(MethodEdit, a, "upsert", "feature", meta, "", feat)
	if !strings.Contains(expandChanges(t, changes), `"kind":"created"`) {
		t.Fatalf("upsert changes = %s", changes)
	}
	x.must(MethodEdit, a, "update", "feature", meta, "properties.name", `"Café"`)
	if got := x.must(MethodPending, a); got != "2" {
		t.Fatalf("pending = %s, want 2", got)
	}
	if n := x.deliver(a, b); n != 2 {
		t.Fatalf("delivered %d messages, want 2", n)
	}
	if sa, sb := x.must(MethodState, a), x.must(MethodState, b); sa != sb || !strings.Contains(sa, "Café") {
		t.Fatalf("states differ:\n%s\n%s", sa, sb)
	}
	if got := x.must(MethodGet, b, "feature", meta, "properties.name"); got != `"Café"` {
		t.Fatalf("get = %s", got)
	}
	if got := x.must(MethodGet, b, "feature", `{"id":"nope","layerId":"L1"}`, "properties.name"); got != "" {
		t.Fatalf("get of an absent key = %q, want empty", got)
	}
	if got := x.must(MethodPeerID, b); got != "b" {
		t.Fatalf("peerId = %q", got)
	}
	// The wall clock of the call stamps the edits.
	if got := x.must(MethodClock, a); !strings.HasPrefix(got, strconv.FormatInt(t0, 10)+":") {
		t.Fatalf("clock = %q, want walltime %d", got, t0)
	}
}

func TestEditWithoutChanges(t *testing.T) {
	x := newTester(t)
	a := x.create("a")
	out, ok := x.call(MethodEdit, a, 0, "update", "feature", meta, "properties.name", `"n"`)
	if !ok || out != "" {
		t.Fatalf("edit without FlagChanges = %q, %v; want empty", out, ok)
	}
}

func TestSyncCatchUp(t *testing.T) {
	x := newTester(t)
	a, c := x.create("a"), x.create("c")
	for i := range 20 {
		x.must(MethodEdit, a, "update", "feature", meta, "properties.n"+strconv.Itoa(i), strconv.Itoa(i))
	}
	x.must(MethodFlush, a)
	// c was offline: it asks a, a answers, c applies.
	req := x.must(MethodSyncRequest, c, "a")
	out := x.must(MethodReceive, a, req)
	parts := strings.Split(out, string(rune(RecordSeparator)))
	if expandChanges(t, parts[0]) != "[]" || len(parts) < 2 {
		t.Fatalf("a's answer to a sync request: %q", out)
	}
	for _, reply := range parts[1:] {
		x.must(MethodReceive, c, reply)
	}
	if sa, sc := x.must(MethodState, a), x.must(MethodState, c); sa != sc {
		t.Fatalf("after catch-up:\n%s\n%s", sa, sc)
	}
	if v := x.must(MethodVector, c); v != `{"a":20}` {
		t.Fatalf("vector = %s", v)
	}
}

// TestReceiveKeepsNoArgument: receive passes the bridge's input buffer to the engine
// without a copy, which is only right if the engine keeps nothing of it. Scribbling over the
// buffer after each call must change nothing.
func TestReceiveKeepsNoArgument(t *testing.T) {
	x := newTester(t)
	a, b := x.create("a"), x.create("b")
	x.must(MethodEdit, a, "upsert", "feature", meta, "", feat)
	x.must(MethodEdit, a, "update", "feature", meta, "properties.name", `"kept"`)
	x.must(MethodStartBatch, a)
	x.must(MethodEdit, a, "update", "map", "{}", "properties.name", `"in a batch"`)
	x.must(MethodEdit, a, "upsert", "datalayer", `{"id":"L1"}`, "", `{"name":"layer"}`)
	x.must(MethodCommitBatch, a)
	buf := make([]byte, 0, 1<<16)
	for _, m := range strings.Split(x.must(MethodFlush, a), string(rune(RecordSeparator))) {
		buf = append(buf[:0], m...)
		if out, ok := x.h.Call(nil, &Call{Method: MethodReceive, Handle: b, Now: t0, Args: [][]byte{buf}}); !ok {
			t.Fatal(string(out))
		}
		for i := range buf {
			buf[i] = 'X'
		}
	}
	// And a sync response, which carries many operations.
	c := x.create("c")
	req := x.must(MethodSyncRequest, c, "a")
	_, resp, _ := strings.Cut(x.must(MethodReceive, a, req), string(rune(RecordSeparator)))
	buf = append(buf[:0], resp...)
	if out, ok := x.h.Call(nil, &Call{Method: MethodReceive, Handle: c, Now: t0, Args: [][]byte{buf}}); !ok {
		t.Fatal(string(out))
	}
	for i := range buf {
		buf[i] = 'X'
	}
	want := x.must(MethodState, a)
	if got := x.must(MethodState, b); got != want {
		t.Fatalf("b's state changed with the buffer:\n%s\n%s", want, got)
	}
	if got := x.must(MethodState, c); got != want {
		t.Fatalf("c's state changed with the buffer:\n%s\n%s", want, got)
	}
	if got := x.must(MethodSnapshot, b); strings.Contains(got, "XXXX") {
		t.Fatal("b's snapshot holds the scribbled buffer")
	}
}

func TestUndoRedo(t *testing.T) {
	x := newTester(t)
	a := x.create("a")
	x.must(MethodEdit, a, "upsert", "feature", meta, "", feat)
	x.must(MethodEdit, a, "update", "feature", meta, "properties.name", `"y"`)
	if x.must(MethodCanUndo, a) != "true" || x.must(MethodCanRedo, a) != "false" {
		t.Fatal("canUndo/canRedo")
	}
	var res struct {
		Done    bool
		Changes []struct{ Kind, Key string }
		Skipped []any
	}
	head, changes, _ := strings.Cut(x.must(MethodUndo, a), string(rune(RecordSeparator)))
	full := strings.TrimSuffix(head, "}") + `,"changes":` + expandChanges(t, changes) + "}"
	if err := json.Unmarshal([]byte(full), &res); err != nil {
		t.Fatal(err)
	}
	if !res.Done || len(res.Changes) != 1 || res.Changes[0].Key != "properties.name" || res.Skipped == nil {
		t.Fatalf("undo = %+v", res)
	}
	if got := x.must(MethodGet, a, "feature", meta, "properties.name"); got != `"x"` {
		t.Fatalf("after undo name = %s", got)
	}
	x.must(MethodRedo, a)
	if got := x.must(MethodGet, a, "feature", meta, "properties.name"); got != `"y"` {
		t.Fatalf("after redo name = %s", got)
	}
}

func TestBatchAndDirty(t *testing.T) {
	x := newTester(t)
	a := x.create("a")
	x.must(MethodStartBatch, a)
	if x.must(MethodInBatch, a) != "true" {
		t.Fatal("inBatch")
	}
	x.must(MethodEdit, a, "upsert", "datalayer", `{"id":"L1"}`, "", `{"name":"layer"}`)
	x.must(MethodEdit, a, "upsert", "feature", meta, "", feat)
	x.fails("bad_state", MethodStartBatch, a)
	x.must(MethodCommitBatch, a)
	x.fails("bad_state", MethodCommitBatch, a)
	msgs := x.must(MethodFlush, a)
	if strings.Count(msgs, `"verb":"batch"`) != 1 || strings.ContainsRune(msgs, RecordSeparator) {
		t.Fatalf("a batch is one message: %s", msgs)
	}
	var dirty []struct {
		Subject  string
		Metadata map[string]any
	}
	if err := json.Unmarshal([]byte(x.must(MethodDirty, a)), &dirty); err != nil {
		t.Fatal(err)
	}
	if len(dirty) != 2 || dirty[0].Subject != "datalayer" || dirty[1].Subject != "feature" {
		t.Fatalf("dirty = %+v", dirty)
	}
	saved := x.must(MethodSavedMessage, a)
	if !strings.Contains(saved, `"kind":"SavedMessage"`) {
		t.Fatalf("savedMessage = %s", saved)
	}
	if got := x.must(MethodDirty, a); got != "[]" {
		t.Fatalf("dirty after savedMessage = %s", got)
	}
	x.must(MethodMarkSaved, a, "1:0:a")
	x.fails("bad_hlc", MethodMarkSaved, a, "yesterday")
	// A save horizon past the drift guard would mark the next minute's edits saved.
	x.must(MethodEdit, a, "update", "map", "{}", "properties.name", `"later"`)
	x.fails("clock_drift", MethodMarkSaved, a, strconv.FormatInt(t0+61_000, 10)+":0:server")
	if got := x.must(MethodDirty, a); !strings.Contains(got, `"subject":"map"`) {
		t.Fatalf("dirty after a refused markSaved = %s", got)
	}
}

// TestSyncRequestRecipient: a request goes to a valid peer id, given or known; a request
// to no one is refused rather than written with an empty recipient, which a relay drops
// or refuses.
func TestSyncRequestRecipient(t *testing.T) {
	x := newTester(t)
	a := x.create("a")
	x.fails("bad_state", MethodSyncRequest, a)
	x.must(MethodSetPeers, a, "a")
	x.fails("bad_state", MethodSyncRequest, a) // itself only
	for _, bad := range []string{"has space", `a"b`, `a\b`, strings.Repeat("x", 129), "tab\t"} {
		x.fails("bad_option", MethodSyncRequest, a, bad)
	}
	if req := x.must(MethodSyncRequest, a, "bob"); !strings.Contains(req, `"recipient":"bob"`) {
		t.Fatalf("syncRequest(bob) = %s", req)
	}
	x.must(MethodSetPeers, a, "a\x1ecarol")
	if req := x.must(MethodSyncRequest, a); !strings.Contains(req, `"recipient":"carol"`) {
		t.Fatalf("syncRequest() = %s", req)
	}
}

func TestSeedAndPeers(t *testing.T) {
	x := newTester(t)
	a := x.create("a")
	if ch := x.must(MethodSeed, a, "feature", meta, feat); !strings.Contains(expandChanges(t, ch), `"kind":"created"`) {
		t.Fatalf("seed changes = %s", ch)
	}
	if got := x.must(MethodPending, a); got != "0" {
		t.Fatalf("a seed is never sent: pending %s", got)
	}
	x.must(MethodSetPeers, a, "b\x1ec")
	if got := x.must(MethodPeers, a); got != `["b","c"]` {
		t.Fatalf("peers = %s", got)
	}
	x.fails("bad_option", MethodSetPeers, a, "b\x1ewith space")
	x.must(MethodSetPeers, a, "")
	if got := x.must(MethodPeers, a); got != "[]" {
		t.Fatalf("peers after clearing = %s", got)
	}
}

func TestCompactAndSnapshot(t *testing.T) {
	x := newTester(t)
	a := x.create("a")
	for i := range 5 {
		x.must(MethodEdit, a, "update", "feature", meta, "geometry", `{"type":"Point","coordinates":[`+strconv.Itoa(i)+`,0]}`)
		x.must(MethodFlush, a)
	}
	var st struct{ Ops, Bytes, Remaining int }
	if err := json.Unmarshal([]byte(x.must(MethodCompact, a)), &st); err != nil {
		t.Fatal(err)
	}
	if st.Ops != 4 || st.Bytes <= 0 || st.Remaining != 1 {
		t.Fatalf("compact = %+v, want 4 dropped, 1 left", st)
	}
	snap := x.must(MethodSnapshot, a)
	b := x.create("") // fresh UUID peer
	if id := x.must(MethodPeerID, b); len(id) < 8 {
		t.Fatalf("generated peer id %q", id)
	}
	out, ok := x.h.Call(nil, &Call{Method: MethodCreate, Now: t0, Args: args("", "", "", "", "", "", "", "", "", snap)})
	if !ok {
		t.Fatalf("create from snapshot: %s", out)
	}
	n, _ := strconv.Atoi(string(out))
	c := uint32(n)
	if x.must(MethodState, a) != x.must(MethodState, c) || x.must(MethodPeerID, c) != "a" {
		t.Fatal("snapshot round trip lost something")
	}
	x.fails("bad_snapshot", MethodCreate, 0, "", "", "", "", "", "", "", "", "", `{"format":"nope"}`)
}

func TestCreateOptions(t *testing.T) {
	x := newTester(t)
	x.fails("bad_option", MethodCreate, 0, "has space")
	x.fails("bad_option", MethodCreate, 0, "a", "-5")
	x.fails("bad_option", MethodCreate, 0, "a", "", "lots")
	msg := x.fails("bad_option", MethodCreate, 0, "a", "", "", "", "", "2") // maxDepth must be above 2
	if msg == "" {
		t.Fatal("empty message")
	}
	// Durations in ms must fit a time.Duration (int64 ns): 9,223,372,036,854 ms at most.
	// Past it, time.Duration(n) * time.Millisecond wrapped: 18446744073710 became 0 (the
	// drift guard off), 18446744073711 1 ms, 9223372036855 a negative duration.
	for _, n := range []string{"9223372036855", "18446744073709", "18446744073710", "18446744073711", "9223372036854775807", "99999999999999999999"} {
		x.fails("bad_option", MethodCreate, 0, "a", n)         // maxDrift
		x.fails("bad_option", MethodCreate, 0, "a", "", "", n) // captureInterval
	}
	out, ok := x.h.Call(nil, &Call{Method: MethodCreate, Now: t0, Args: args("longest", "9223372036854", "", "9223372036854")})
	if !ok {
		t.Fatal(string(out))
	}
	longest, _ := strconv.Atoi(string(out))
	// The longest guard still refuses a clock further ahead (1,000 years).
	far := `{"kind":"OperationMessage","sender":"z","verb":"update","subject":"map","metadata":{},"key":"properties.name","value":"x","hlc":"` +
		strconv.FormatInt(t0+1000*365*24*3600*1000, 10) + `:0:z","seq":1}`
	x.fails("clock_drift", MethodReceive, uint32(longest), far)
	// maxDrift: a clock 5 s ahead is refused with a 1 s guard, and accepted with the default.
	strict := x.create("s")
	_ = strict
	out, ok = x.h.Call(nil, &Call{Method: MethodCreate, Now: t0, Args: args("strict", "1000")})
	if !ok {
		t.Fatal(string(out))
	}
	n, _ := strconv.Atoi(string(out))
	ahead := `{"kind":"OperationMessage","sender":"z","verb":"update","subject":"map","metadata":{},"key":"properties.name","value":"x","hlc":"` +
		strconv.FormatInt(t0+5000, 10) + `:0:z","seq":1}`
	x.fails("clock_drift", MethodReceive, uint32(n), ahead)
	x.must(MethodReceive, x.create("lenient"), ahead)
	// limits.maxDepth applies to values.
	out, ok = x.h.Call(nil, &Call{Method: MethodCreate, Now: t0, Args: args("d", "", "", "", "", "4")})
	if !ok {
		t.Fatal(string(out))
	}
	n, _ = strconv.Atoi(string(out))
	x.fails("too_deep", MethodEdit, uint32(n), "update", "map", "{}", "properties.x", `{"a":{"b":{"c":{"d":{"e":{"f":1}}}}}}`)
}

// TestBadInputKeepsServing: every kind of bad input gets its code, changes nothing, and the
// engine keeps working.
func TestBadInputKeepsServing(t *testing.T) {
	x := newTester(t)
	a, b := x.create("a"), x.create("b")
	x.must(MethodEdit, a, "upsert", "feature", meta, "", feat)
	x.deliver(a, b)
	before := x.must(MethodState, b)
	deep := strings.Repeat(`{"a":`, 100_000) + "1" + strings.Repeat("}", 100_000)
	cases := []struct {
		code string
		m    Method
		args []string
	}{
		{"invalid_json", MethodReceive, []string{`{"kind":`}},
		{"invalid_json", MethodReceive, []string{"\xff\xfe"}},
		{"invalid_json", MethodReceive, []string{""}},
		{"too_deep", MethodReceive, []string{deep}},
		{"too_deep", MethodReceive, []string{strings.Repeat("[", 1_000_000)}},
		{"unknown_kind", MethodReceive, []string{`{"kind":"Nope"}`}},
		{"unknown_verb", MethodReceive, []string{`{"kind":"OperationMessage","verb":"explode","subject":"map","metadata":{},"hlc":"1:0:z"}`}},
		{"unknown_subject", MethodReceive, []string{`{"kind":"OperationMessage","verb":"delete","subject":"planet","metadata":{},"hlc":"1:0:z"}`}},
		{"bad_hlc", MethodReceive, []string{`{"kind":"OperationMessage","verb":"delete","subject":"map","metadata":{},"hlc":"soon"}`}},
		{"clock_drift", MethodReceive, []string{`{"kind":"OperationMessage","verb":"delete","subject":"map","metadata":{},"hlc":"32503680000000:0:z"}`}},
		{"unknown_verb", MethodEdit, []string{"explode", "map", "{}"}},
		{"unknown_subject", MethodEdit, []string{"update", "planet", "{}", "name", `1`}},
		{"bad_metadata", MethodEdit, []string{"update", "feature", `{"id":"f1"}`, "name", `1`}},
		{"bad_metadata", MethodEdit, []string{"update", "feature", `"f1"`, "name", `1`}},
		{"invalid_json", MethodEdit, []string{"update", "feature", meta, "properties.name", `{"a":`}},
		{"bad_key", MethodEdit, []string{"update", "feature", meta, "", `1`}},
		{"bad_value", MethodEdit, []string{"upsert", "feature", meta, "", `[1]`}},
		{"bad_value", MethodSeed, []string{"feature", meta, `"text"`}},
		{"bad_state", MethodState, nil}, // handle 999 below
	}
	for _, c := range cases {
		h := b
		if c.m == MethodState {
			h = 999
		}
		x.fails(c.code, c.m, h, c.args...)
		if got := x.must(MethodState, b); got != before {
			t.Fatalf("%s %q changed the state:\n%s\n%s", c.code, c.args, before, got)
		}
	}
	// Still serving.
	x.must(MethodEdit, a, "update", "feature", meta, "properties.name", `"after"`)
	x.deliver(a, b)
	if x.must(MethodState, a) != x.must(MethodState, b) {
		t.Fatal("engines diverged after bad input")
	}
}

// TestPanicIsRecovered: a call that panics inside (here: a required argument missing, which
// only a broken caller does) reports "internal" with the panic text, and nothing stops.
func TestPanicIsRecovered(t *testing.T) {
	x := newTester(t)
	a := x.create("a")
	msg := x.fails("internal", MethodEdit, a) // no arguments at all
	if !strings.Contains(msg, "panic: runtime error: index out of range") || !strings.Contains(msg, "goroutine") {
		t.Fatalf("panic message = %q", msg)
	}
	x.fails("internal", MethodSeed, a, "feature")
	x.fails("internal", MethodMerge, 0, "{}")
	x.fails("internal", Method(9999), a)
	x.must(MethodEdit, a, "update", "map", "{}", "properties.name", `"still here"`)
	if got := x.must(MethodGet, a, "map", "{}", "properties.name"); got != `"still here"` {
		t.Fatalf("get = %s", got)
	}
}

func TestCloseAndHandles(t *testing.T) {
	x := newTester(t)
	var hs []uint32
	for i := range 50 {
		hs = append(hs, x.create("p"+strconv.Itoa(i)))
	}
	if x.h.Len() != 50 {
		t.Fatalf("Len = %d", x.h.Len())
	}
	for _, h := range hs[:25] {
		x.must(MethodState, h) // the last engine called, which close must forget
		x.must(MethodClose, h)
		x.must(MethodClose, h) // twice is fine
		x.fails("bad_state", MethodState, h)
	}
	if x.h.Len() != 25 {
		t.Fatalf("Len after closing = %d", x.h.Len())
	}
	if h := x.create("new"); h <= hs[len(hs)-1] {
		t.Fatalf("handle %d reused", h)
	}
}

func TestMerge(t *testing.T) {
	x := newTester(t)
	ref := `{"type":"FeatureCollection","features":[{"type":"Feature","id":"a","geometry":null,"properties":{"name":"r"}}]}`
	lat := `{"type":"FeatureCollection","features":[{"type":"Feature","id":"a","geometry":null,"properties":{"name":"l"}}]}`
	inc := `{"type":"FeatureCollection","features":[{"type":"Feature","id":"a","geometry":null,"properties":{"name":"i"}}]}`
	out, ok := x.call(MethodMerge, 0, 0, ref, lat, inc)
	if ok {
		t.Fatalf("conflict merged: %s", out)
	}
	var e struct {
		Code      string
		Conflicts []struct{ FeatureID, Key string }
	}
	if err := json.Unmarshal([]byte(out), &e); err != nil {
		t.Fatal(err)
	}
	if e.Code != "conflict" || len(e.Conflicts) != 1 || e.Conflicts[0].Key != "properties.name" {
		t.Fatalf("merge error = %s", out)
	}
	out = x.must(MethodMerge, 0, ref, lat, inc, "incoming")
	doc, conflicts, _ := strings.Cut(out, string(rune(RecordSeparator)))
	if !json.Valid([]byte(doc)) || !strings.Contains(doc, `"name":"i"`) || !strings.Contains(conflicts, "properties.name") {
		t.Fatalf("merge = %s", out)
	}
	x.fails("bad_option", MethodMerge, 0, ref, lat, inc, "mine")
}

func TestMemory(t *testing.T) {
	x := newTester(t)
	out, ok := x.call(MethodMemory, 0, FlagGC)
	var m map[string]uint64
	if !ok || json.Unmarshal([]byte(out), &m) != nil || m["heapAlloc"] == 0 || m["numGC"] == 0 ||
		m["totalAlloc"] < m["heapAlloc"] || m["mallocs"] == 0 {
		t.Fatalf("memory = %s", out)
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote`, `back\slash`, "nl\n\r\t", "\x00\x1f\x7f", "Café 東京"} {
		b := crdt.AppendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil || back != s {
			t.Fatalf("AppendJSONString(%q) = %s (%v)", s, b, err)
		}
	}
}

// FuzzCall: whatever the method and arguments, Call returns (never panics past it), an
// error is the error JSON, and a call that fails leaves the engine as it was: its state,
// outbox, undo and redo, batch, vector, peers and unsaved objects.
func FuzzCall(f *testing.F) {
	f.Add(uint8(MethodReceive), `{"kind":"OperationMessage","verb":"update","subject":"map","metadata":{},"key":"a","value":1,"hlc":"1:0:z"}`, "", "")
	f.Add(uint8(MethodEdit), "update", "feature", meta)
	f.Add(uint8(MethodEdit), "upsert", "map", "{}")
	f.Add(uint8(MethodGet), "feature", meta, "properties")
	f.Add(uint8(MethodMarkSaved), "1:2:p", "", "")
	f.Add(uint8(MethodMarkSaved), "9999999999999:0:p", "", "")
	f.Add(uint8(MethodCreate), "p", "x", "")
	f.Add(uint8(MethodMerge), "{}", "[]", "null")
	f.Fuzz(func(t *testing.T, m uint8, a1, a2, a3 string) {
		h := NewHost()
		id, _ := h.Call(nil, &Call{Method: MethodCreate, Now: t0, Args: args("fuzz")})
		handle, _ := strconv.Atoi(string(id))
		// Something to lose: an object with a key, an edit waiting in the outbox, an undo step.
		for _, e := range [][]string{{"upsert", "feature", meta, "", feat}, {"update", "map", "{}", "properties.name", `"m"`}} {
			if out, ok := h.Call(nil, &Call{Method: MethodEdit, Handle: uint32(handle), Now: t0, Args: args(e...)}); !ok {
				t.Fatal(string(out))
			}
		}
		// What a refused call must leave as it was (DESIGN §9: bad input changes nothing).
		fingerprint := func() string {
			var b strings.Builder
			for _, q := range []Method{MethodState, MethodPending, MethodCanUndo, MethodCanRedo, MethodInBatch, MethodVector, MethodPeers, MethodDirty} {
				out, _ := h.Call(nil, &Call{Method: q, Handle: uint32(handle), Now: t0})
				b.Write(out)
				b.WriteByte(0)
			}
			return b.String()
		}
		method := Method(m % uint8(numMethods+2))
		for n := 0; n <= 3; n++ {
			before := fingerprint()
			out, ok := h.Call(nil, &Call{Method: method, Handle: uint32(handle), Flags: FlagChanges, Now: t0, Args: args(a1, a2, a3)[:n]})
			if !ok {
				var e struct{ Code, Message string }
				if err := json.Unmarshal(out, &e); err != nil || e.Code == "" {
					t.Fatalf("error %q is not the error JSON", out)
				}
				if e.Code == "bad_state" && method == MethodCommitBatch {
					continue // no batch was open: nothing to compare
				}
				if after := fingerprint(); after != before && method != MethodClose {
					t.Fatalf("%s(%q) failed (%s) and changed the engine:\n%q\nwas\n%q", methodName(method), args(a1, a2, a3)[:n], out, after, before)
				}
			}
		}
	})
}

// methodName is a method's name, or its number if it has none.
func methodName(m Method) string {
	if m < numMethods {
		return methodNames[m]
	}
	return "method " + strconv.Itoa(int(m))
}

// TestEditKeepsNoArgument: edits read their arguments in place (Call.view); scribbling over
// the arguments after each call must change nothing the engine holds — state, messages to
// send, undo groups, snapshot.
func TestEditKeepsNoArgument(t *testing.T) {
	x := newTester(t)
	a := x.create("a")
	edits := [][]string{
		{"upsert", "feature", meta, "", feat},
		{"update", "feature", meta, "properties.name", `"kept"`, "", "grp"},
		{"update", "feature", meta, `properties.a\.b`, `{"deep":[1,2]}`, `"old"`, "grp"},
		{"update", "map", `{}`, "properties.name", `"map"`},
		{"delete", "datalayer", `{"id":"L9"}`},
	}
	for _, e := range edits {
		argv := args(e...)
		if out, ok := x.h.Call(nil, &Call{Method: MethodEdit, Handle: a, Now: t0, Args: argv}); !ok {
			t.Fatal(string(out))
		}
		for _, arg := range argv {
			for i := range arg {
				arg[i] = 'X'
			}
		}
	}
	state := x.must(MethodState, a)
	msgs := x.must(MethodFlush, a)
	snap := x.must(MethodSnapshot, a)
	for name, got := range map[string]string{"state": state, "messages": msgs, "snapshot": snap} {
		if strings.Contains(got, "XXX") {
			t.Errorf("the %s holds a scribbled argument: %s", name, got)
		}
	}
	if !strings.Contains(state, `"kept"`) || !strings.Contains(msgs, `properties.a\\.b`) || !strings.Contains(snap, `"grp"`) {
		t.Errorf("edits lost:\nstate %s\nmessages %s\nsnapshot %s", state, msgs, snap)
	}
}

// TestRestoreInSteps: create under FlagStepwise begins a snapshot's restore and gives the
// engine's handle, which answers nothing but restoreStep and close until restoreStep says
// "done"; the engine is then the one a plain create gives. An error ends the restore.
func TestRestoreInSteps(t *testing.T) {
	x := newTester(t)
	a := x.create("a")
	for i := 0; i < 30; i++ {
		x.must(MethodEdit, a, "update", "feature", `{"id":"f`+strconv.Itoa(i)+`","layerId":"L1"}`, "properties.n", strconv.Itoa(i))
	}
	x.must(MethodFlush, a)
	x.must(MethodEdit, a, "update", "feature", `{"id":"g","layerId":"L1"}`, "properties.n", `"last"`)
	snap := x.must(MethodSnapshot, a)
	stepwise := func(s string) uint32 {
		out, ok := x.call(MethodCreate, 0, FlagStepwise, "", "", "", "", "", "", "", "", "", s)
		if !ok {
			t.Fatalf("create: %s", out)
		}
		n, _ := strconv.Atoi(out)
		return uint32(n)
	}
	h := stepwise(snap)
	x.fails("bad_state", MethodState, h)
	x.fails("bad_option", MethodRestoreStep, h, "0")
	steps := 0
	for x.must(MethodRestoreStep, h, "1") != "done" {
		steps++
	}
	if steps < 30 {
		t.Fatalf("restored in %d steps of 1, for 31 operations", steps)
	}
	if x.must(MethodState, h) != x.must(MethodState, a) || x.must(MethodCanUndo, h) != "true" || x.must(MethodPending, h) != "1" {
		t.Fatal("the restore in steps lost something")
	}
	x.fails("bad_state", MethodRestoreStep, h, "1") // done: no restore under way
	// Closed during its restore: gone.
	c := stepwise(snap)
	x.must(MethodRestoreStep, c, "1")
	x.must(MethodClose, c)
	x.fails("bad_state", MethodRestoreStep, c, "1")
	x.fails("bad_state", MethodState, c)
	// Damage met at a later step ends the restore with its code.
	bad := strings.Replace(snap, `"properties.n","\"last\""`, `"properties..n","\"last\""`, 1)
	if bad == snap {
		bad = strings.Replace(snap, `"outbox":[`, `"outbox":[99,`, 1)
	}
	d := stepwise(bad)
	var out string
	for ok := true; ok; {
		if out, ok = x.call(MethodRestoreStep, d, 0, "1"); ok && out == "done" {
			t.Fatalf("a damaged snapshot restored:\n%s", bad)
		}
	}
	if !strings.Contains(out, `"code":"bad_snapshot"`) {
		t.Fatalf("damaged: %s", out)
	}
	x.fails("bad_state", MethodRestoreStep, d, "1")
	x.fails("bad_snapshot", MethodCreate, 0, "", "", "", "", "", "", "", "", "", `{"format":"nope"}`)
}

// TestKeepClearsTheChange: the one change of a call (an edit's) is cleared field by field
// in the reused buffer, so that it keeps no replica's value alive; every field of Change,
// whatever fields it gains, is zero after keep.
func TestKeepClearsTheChange(t *testing.T) {
	var c crdt.Change
	v := reflect.ValueOf(&c).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		switch {
		case f.Kind() == reflect.String:
			f.SetString("x")
		case f.Type() == reflect.TypeOf(hlc.Timestamp{}):
			f.Set(reflect.ValueOf(hlc.Timestamp{Wall: 1, Counter: 1, Peer: "p"}))
		default:
			t.Fatalf("Change has a field %s of type %s: set it here, and clear it in keep", v.Type().Field(i).Name, f.Type())
		}
	}
	buf := []crdt.Change{c}
	(&Call{}).keep(buf)
	if !reflect.ValueOf(buf[0]).IsZero() {
		t.Fatalf("after keep: %+v, want the zero Change", buf[0])
	}
}
