//go:build js && wasm

package main

import (
	"encoding/json"
	"math"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall/js"
	"testing"
	"unsafe"
)

// These tests run under Node (GOOS=js GOARCH=wasm go test ./wasm/..., with
// $(go env GOROOT)/lib/wasm on PATH): the two bridges of main_wasm.go, called the way the
// glue calls them. jsglue/test/*.test.js covers the same from JavaScript.

// exportRun writes args into the input buffer as the glue does and runs exportCall.
func exportRun(t *testing.T, m Method, handle uint32, a ...string) (string, bool) {
	t.Helper()
	total := 0
	for _, s := range a {
		total += len(s)
	}
	p := exportIn(uint32(total))
	if p != addr(unsafe.SliceData(inBuf)) {
		t.Fatal("exportIn returned another address than the input buffer's")
	}
	off := 0
	for i, s := range a {
		copy(inBuf[off:], s)
		lens[i] = uint32(len(s))
		off += len(s)
	}
	n := exportCall(uint32(m), handle, FlagChanges, uint32(len(a)), float64(t0))
	ok := n >= 0
	if !ok {
		n = -n - 1
	}
	if exportOut() != addr(unsafe.SliceData(outBuf[:cap(outBuf)])) || lens[outWord] != exportOut() {
		t.Fatal("exportOut or lens[outWord] is not the output buffer")
	}
	return string(outBuf[:n]), ok
}

func exportMust(t *testing.T, m Method, handle uint32, a ...string) string {
	t.Helper()
	out, ok := exportRun(t, m, handle, a...)
	if !ok {
		t.Fatalf("%s: %s", methodNames[m], out)
	}
	return out
}

func TestExportBridge(t *testing.T) {
	a, _ := strconv.Atoi(exportMust(t, MethodCreate, 0, "ea"))
	b, _ := strconv.Atoi(exportMust(t, MethodCreate, 0, "eb"))
	exportMust(t, MethodEdit, uint32(a), "upsert", "feature", meta, "", feat)
	exportMust(t, MethodEdit, uint32(a), "update", "feature", meta, "properties.name", `"Café ☕"`)
	msgs := strings.Split(exportMust(t, MethodFlush, uint32(a)), string(rune(RecordSeparator)))
	if len(msgs) != 2 {
		t.Fatalf("flush: %d messages", len(msgs))
	}
	for _, m := range msgs {
		exportMust(t, MethodReceive, uint32(b), m)
	}
	sa, sb := exportMust(t, MethodState, uint32(a)), exportMust(t, MethodState, uint32(b))
	if sa != sb || !strings.Contains(sa, "Café ☕") {
		t.Fatalf("states:\n%s\n%s", sa, sb)
	}
	// The wall clock comes from the call.
	if c := exportMust(t, MethodClock, uint32(a)); !strings.HasPrefix(c, strconv.FormatInt(t0, 10)+":") {
		t.Fatalf("clock %q", c)
	}
	// An error is a negative length and the error JSON.
	out, ok := exportRun(t, MethodReceive, uint32(b), "{nope")
	var e struct{ Code string }
	if ok || json.Unmarshal([]byte(out), &e) != nil || e.Code != "invalid_json" {
		t.Fatalf("bad message: %v %s", ok, out)
	}
	// A large argument grows the input buffer, a large result the output buffer; the next
	// small call gets small buffers back.
	big := `"` + strings.Repeat("x", 3<<20) + `"`
	exportMust(t, MethodEdit, uint32(a), "update", "feature", meta, "properties.big", big)
	if len(exportMust(t, MethodState, uint32(a))) < 3<<20 {
		t.Fatal("state lost the big value")
	}
	exportMust(t, MethodCanUndo, uint32(a))
	if cap(outBuf) > 1<<20 {
		t.Fatalf("output buffer kept at %d bytes", cap(outBuf))
	}
	exportIn(10)
	if len(inBuf) > 1<<20 {
		t.Fatalf("input buffer kept at %d bytes", len(inBuf))
	}
}

// TestExportPanics: broken calls through the raw exports panic inside and come back as
// "internal"; the module keeps serving.
func TestExportPanics(t *testing.T) {
	a, _ := strconv.Atoi(exportMust(t, MethodCreate, 0, "pa"))
	check := func(n int32) {
		t.Helper()
		if n >= 0 {
			t.Fatalf("a broken call succeeded: %q", outBuf[:n])
		}
		if lens[outWord] != exportOut() {
			t.Fatal("a broken call's lens[outWord] is not the output buffer")
		}
		lens[outWord] = 0 // the next broken call must set it again
		var e struct{ Code, Message string }
		if err := json.Unmarshal(outBuf[:-n-1], &e); err != nil || e.Code != "internal" || !strings.Contains(e.Message, "panic") {
			t.Fatalf("broken call: %q (%v)", outBuf[:-n-1], err)
		}
	}
	check(exportCall(uint32(MethodEdit), uint32(a), 0, maxArgs+1, float64(t0))) // too many arguments
	lens[0] = uint32(len(inBuf) + 1)
	check(exportCall(uint32(MethodReceive), uint32(a), 0, 1, float64(t0))) // a length past the buffer
	check(exportCall(uint32(MethodEdit), uint32(a), 0, 0, float64(t0)))    // missing arguments
	// A wall clock that is no number falls back to the system clock.
	for _, now := range []float64{math.NaN(), math.Inf(1), -5, 1e300} {
		if n := exportCall(uint32(MethodClock), uint32(a), 0, 0, now); n < 0 {
			t.Fatalf("now=%v: %s", now, outBuf[:-n-1])
		}
	}
	if out, ok := exportRun(t, Method(1000), uint32(a)); ok || !strings.Contains(out, "internal") {
		t.Fatalf("unknown method: %s", out)
	}
	exportMust(t, MethodEdit, uint32(a), "update", "map", "{}", "properties.name", `"fine"`)
}

func TestFuncOfBridge(t *testing.T) {
	install()
	f := js.Global().Get("__mapcrdt")
	if f.Get("version").String() != "1" || f.Get("methods").Length() != int(numMethods) {
		t.Fatal("factory: version or methods")
	}
	if f.Get("methods").Index(int(MethodReceive)).String() != "receive" {
		t.Fatal("methods are not the call table")
	}
	call := func(m Method, handle int, a ...any) (bool, js.Value) {
		r := f.Call("call", append([]any{int(m), handle, int(FlagChanges), float64(t0)}, a...)...)
		return r.Index(0).Bool(), r.Index(1)
	}
	ok, h := call(MethodCreate, 0, "fa")
	if !ok {
		t.Fatal(h.String())
	}
	handle, _ := strconv.Atoi(h.String())
	// Arguments may be strings or Uint8Arrays.
	u := js.Global().Get("Uint8Array").New(len(meta))
	js.CopyBytesToJS(u, []byte(meta))
	if ok, v := call(MethodEdit, handle, "upsert", "feature", u, "", feat); !ok {
		t.Fatal(v.String())
	}
	if ok, v := call(MethodGet, handle, "feature", meta, "properties.name"); !ok || v.String() != `"x"` {
		t.Fatalf("get: %v %s", ok, v.String())
	}
	// A snapshot comes back as bytes.
	ok, snap := call(MethodSnapshot, handle)
	if !ok || snap.Get("constructor").Get("name").String() != "Uint8Array" || snap.Length() == 0 {
		t.Fatal("snapshot is not a Uint8Array")
	}
	// Errors, and panics (a non-number method), are [false, errorJSON].
	if ok, v := call(MethodReceive, handle, "[1"); ok || !strings.Contains(v.String(), "invalid_json") {
		t.Fatalf("bad message: %v %s", ok, v.String())
	}
	r := f.Call("call", "not a number")
	if r.Index(0).Bool() || !strings.Contains(r.Index(1).String(), `"internal"`) {
		t.Fatalf("garbage call: %s", r.Index(1).String())
	}
	if ok, _ := call(MethodState, handle); !ok {
		t.Fatal("the bridge stopped serving")
	}
}

// A wasmexport call that leaves a garbage collection marking says so in lens[gcFlag], and
// __mapcrdt.idle (what the glue then calls) lets the scheduler finish the collection.
func TestIdleFinishesMarking(t *testing.T) {
	install()
	defer debug.SetGCPercent(debug.SetGCPercent(1))
	a, _ := strconv.Atoi(exportMust(t, MethodCreate, 0, "gc"))
	for i := 0; lens[gcFlag] == 0; i++ {
		if i == 1_000_000 {
			t.Fatal("no call left a collection marking")
		}
		exportMust(t, MethodEdit, uint32(a), "update", "feature", meta, "properties.n"+strconv.Itoa(i%500), strconv.Itoa(i))
	}
	if !writeBarrier.enabled {
		t.Fatal("the flag is set and no collection is marking")
	}
	js.Global().Get("__mapcrdt").Call("idle")
	if writeBarrier.enabled {
		t.Fatal("idle returned with the collection still marking")
	}
	exportMust(t, MethodCanUndo, uint32(a))
	if lens[gcFlag] != 0 {
		t.Fatal("a call that left no collection marking set the flag")
	}
}

// setGCPercent, linked by name, is the runtime's own: debug.SetGCPercent sees what it set.
func TestSetGCPercentIsTheRuntimes(t *testing.T) {
	old := debug.SetGCPercent(123)
	defer debug.SetGCPercent(old)
	if got := setGCPercent(45); got != 123 {
		t.Fatalf("setGCPercent returned %d, want the 123 debug.SetGCPercent set", got)
	}
	if got := debug.SetGCPercent(old); got != 45 {
		t.Fatalf("debug.SetGCPercent returned %d, want the 45 setGCPercent set", got)
	}
}

// A catch-up's answer, passed to the engine that asked for it, is written into the
// answer's own buffer (the glue reads a result before it writes the next call's
// arguments): exportIn gives that buffer, and the joiner reads the answer from it.
func TestAnswerBufferBecomesInput(t *testing.T) {
	a, _ := strconv.Atoi(exportMust(t, MethodCreate, 0, "holder"))
	j, _ := strconv.Atoi(exportMust(t, MethodCreate, 0, "joiner"))
	long := `"` + strings.Repeat("y", 1000) + `"`
	for i := range 400 {
		exportMust(t, MethodEdit, uint32(a), "update", "feature", meta, "properties.k"+strconv.Itoa(i), long)
	}
	exportMust(t, MethodFlush, uint32(a))
	req := exportMust(t, MethodSyncRequest, uint32(j), "holder")
	out := exportMust(t, MethodReceive, uint32(a), req)
	answer := out[strings.IndexByte(out, RecordSeparator)+1:]
	if len(answer) <= keptBuffer {
		t.Fatalf("answer of %d bytes: not a large one", len(answer))
	}
	was := exportOut()
	// What the glue asks for: the text's length in UTF-16 units and a sixteenth.
	if p := exportIn(uint32(len(answer) + len(answer)>>4)); p != was {
		t.Fatal("the input buffer is not the answer's")
	}
	if exportOut() == was || lens[outWord] != exportOut() {
		t.Fatal("the output buffer is still the one given as input")
	}
	exportMust(t, MethodReceive, uint32(j), answer)
	if sa, sj := exportMust(t, MethodState, uint32(a)), exportMust(t, MethodState, uint32(j)); sa != sj {
		t.Fatal("the joiner's state differs from the holder's")
	}
}
