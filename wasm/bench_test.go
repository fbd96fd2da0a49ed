package main

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Benchmarks of the dispatcher: natively with go test -bench, in wasm with
// GOOS=js GOARCH=wasm go test -bench (PATH as in the Makefile). The JavaScript side,
// bridge included, is measured by jsglue/bench/bench.js.

var benchKeys = []string{"properties.name", "properties.color", "properties.description", "properties._umap_options.weight", "geometry"}

// benchEdit returns the arguments of edit i of the workload of jsglue/bench (1,000 features
// × 5 keys).
func benchEdit(i int) []string {
	f := i % 1000
	k := (i / 1000) % 5
	var v string
	switch k {
	case 3:
		v = strconv.Itoa(1 + i%9)
	case 4:
		v = `{"type":"Point","coordinates":[` + strconv.Itoa(f) + `.5,48.85]}`
	default:
		v = `"value ` + strconv.Itoa(i) + ` of feature ` + strconv.Itoa(f) + `"`
	}
	m := `{"featureType":"marker","id":"f` + strconv.Itoa(f) + `","layerId":"606d26bd-230f-4d3e-a2a7-0c3caed71548"}`
	return []string{"update", "feature", m, benchKeys[k], v}
}

func benchCreate(b *testing.B, h *Host, peer string) uint32 {
	out, ok := h.Call(nil, &Call{Method: MethodCreate, Now: t0, Args: args(peer)})
	if !ok {
		b.Fatal(string(out))
	}
	n, _ := strconv.Atoi(string(out))
	return uint32(n)
}

func BenchmarkCallCanUndo(b *testing.B) {
	h := NewHost()
	c := &Call{Method: MethodCanUndo, Handle: benchCreate(b, h, "a"), Now: t0}
	buf := make([]byte, 0, 1024)
	for b.Loop() {
		buf, _ = h.Call(buf[:0], c)
	}
}

// BenchmarkEditFlush is W1's unit: one local edit and the flush that produces its message.
func BenchmarkEditFlush(b *testing.B) {
	h := NewHost()
	a := benchCreate(b, h, "a")
	buf := make([]byte, 0, 1024)
	edit := &Call{Method: MethodEdit, Handle: a, Now: t0}
	flush := &Call{Method: MethodFlush, Handle: a, Now: t0}
	i := 0
	for b.Loop() {
		edit.Args = args(benchEdit(i)...)
		i++
		buf, _ = h.Call(buf[:0], edit)
		buf, _ = h.Call(buf[:0], flush)
	}
}

// BenchmarkReceive is W3's unit: one remote operation, applied by one call.
func BenchmarkReceive(b *testing.B) {
	h := NewHost()
	a := benchCreate(b, h, "a")
	var msgs [][]byte
	for i := range 10_000 {
		h.Call(nil, &Call{Method: MethodEdit, Handle: a, Now: t0, Args: args(benchEdit(i)...)})
		out, _ := h.Call(nil, &Call{Method: MethodFlush, Handle: a, Now: t0})
		msgs = append(msgs, []byte(strings.Clone(string(out))))
	}
	buf := make([]byte, 0, 4096)
	c := &Call{Method: MethodReceive, Now: t0, Args: make([][]byte, 1)}
	i := 0
	for b.Loop() {
		if i%len(msgs) == 0 {
			b.StopTimer()
			if c.Handle != 0 {
				h.Call(nil, &Call{Method: MethodClose, Handle: c.Handle})
			}
			c.Handle = benchCreate(b, h, "c"+strconv.Itoa(i))
			b.StartTimer()
		}
		c.Args[0] = msgs[i%len(msgs)]
		i++
		var ok bool
		if buf, ok = h.Call(buf[:0], c); !ok {
			b.Fatal(string(buf))
		}
		c.Objects = heldAfter(buf, c.Objects)
	}
}

// heldAfter is the size of the caller's table of changes' objects after it read the
// changes out (as the glue does).
func heldAfter(out []byte, held uint32) uint32 {
	i := bytes.IndexByte(out, UnitSeparator)
	if i < 0 {
		return held
	}
	j := i + 1
	base := uint32(0)
	for ; j < len(out) && out[j] != UnitSeparator && out[j] != RecordSeparator; j++ {
		base = 10*base + uint32(out[j]-'0')
	}
	end := bytes.IndexByte(out, RecordSeparator)
	if end < 0 {
		end = len(out)
	}
	return base + uint32(bytes.Count(out[j:end], []byte{UnitSeparator})/2)
}

// BenchmarkCatchUp is W2's unit: a fresh engine asks the holder of the workload's 10,000
// edits for what it lacks and applies the answer.
func BenchmarkCatchUp(b *testing.B) {
	h := NewHost()
	a := benchCreate(b, h, "a")
	for i := range 10_000 {
		h.Call(nil, &Call{Method: MethodEdit, Handle: a, Now: t0, Args: args(benchEdit(i)...)})
		h.Call(nil, &Call{Method: MethodFlush, Handle: a, Now: t0})
	}
	buf := make([]byte, 0, 4096)
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		n++
		j := benchCreate(b, h, "j"+strconv.Itoa(n))
		req, _ := h.Call(nil, &Call{Method: MethodSyncRequest, Handle: j, Now: t0, Args: args("a")})
		out, ok := h.Call(buf[:0], &Call{Method: MethodReceive, Handle: a, Now: t0, Args: [][]byte{req}})
		i := bytes.IndexByte(out, RecordSeparator)
		if !ok || i < 0 {
			b.Fatalf("holder: %.200s", out)
		}
		resp := bytes.Clone(out[i+1:])
		if buf, ok = h.Call(out[:0], &Call{Method: MethodReceive, Handle: j, Now: t0, Args: [][]byte{resp}}); !ok {
			b.Fatalf("joiner: %.200s", buf)
		}
		h.Call(nil, &Call{Method: MethodClose, Handle: j})
	}
}

// BenchmarkConcurrent is W4's unit: three engines write properties.name of the same 1,000
// features, each edit flushed, then every pair exchanges what the other lacks. The edits'
// arguments are made beforehand; one output buffer serves every call, as in the module.
// The edits' and the syncs' shares are reported as edits-ms/op and syncs-ms/op.
func BenchmarkConcurrent(b *testing.B) {
	h := NewHost()
	var edits [3][1000][][]byte
	for k := range edits {
		for f := range edits[k] {
			a := benchEdit(f)
			a[4] = `"replica ` + strconv.Itoa(k) + ` names feature ` + strconv.Itoa(f) + `"`
			edits[k][f] = args(a...)
		}
	}
	buf := make([]byte, 0, 1<<20)
	n := 0
	var editing time.Duration
	b.ReportAllocs()
	for b.Loop() {
		var e [3]uint32
		var peers [3]string
		for k := range e {
			n++
			peers[k] = "p" + strconv.Itoa(n)
			e[k] = benchCreate(b, h, peers[k])
		}
		edit := &Call{Method: MethodEdit, Now: t0}
		flush := &Call{Method: MethodFlush, Now: t0}
		start := time.Now()
		for f := range 1000 {
			for k := range e {
				edit.Handle, flush.Handle, edit.Args = e[k], e[k], edits[k][f]
				var ok bool
				if buf, ok = h.Call(buf[:0], edit); !ok {
					b.Fatal(string(buf))
				}
				buf, _ = h.Call(buf[:0], flush)
			}
		}
		editing += time.Since(start)
		for _, p := range [][2]int{{0, 1}, {1, 2}, {0, 2}} {
			x, y := e[p[0]], e[p[1]]
			req, _ := h.Call(nil, &Call{Method: MethodSyncRequest, Handle: x, Now: t0, Args: args(peers[p[1]])})
			toY, toX := [][]byte{req}, [][]byte(nil)
			for len(toX)+len(toY) > 0 {
				var nextX, nextY [][]byte
				for _, m := range toY {
					buf, nextX = benchReplies(b, h, buf, y, m, nextX)
				}
				for _, m := range toX {
					buf, nextY = benchReplies(b, h, buf, x, m, nextY)
				}
				toX, toY = nextX, nextY
			}
		}
		for _, x := range e {
			h.Call(nil, &Call{Method: MethodClose, Handle: x})
		}
	}
	ms := float64(b.Elapsed()) / 1e6 / float64(b.N)
	b.ReportMetric(float64(editing)/1e6/float64(b.N), "edits-ms/op")
	b.ReportMetric(ms-float64(editing)/1e6/float64(b.N), "syncs-ms/op")
}

// benchReplies has engine x receive message m, using buf for the result, and appends copies
// of its replies to replies.
func benchReplies(b *testing.B, h *Host, buf []byte, x uint32, m []byte, replies [][]byte) ([]byte, [][]byte) {
	out, ok := h.Call(buf[:0], &Call{Method: MethodReceive, Handle: x, Now: t0, Args: [][]byte{m}})
	if !ok {
		b.Fatalf("receive: %.200s", out)
	}
	if i := bytes.IndexByte(out, RecordSeparator); i >= 0 {
		for _, r := range bytes.Split(out[i+1:], []byte{RecordSeparator}) {
			replies = append(replies, bytes.Clone(r))
		}
	}
	return out, replies
}
