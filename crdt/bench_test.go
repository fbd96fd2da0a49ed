package crdt

// Benchmarks of the costs the issue sets targets for (receive and local edit ≤ 1 µs/op,
// catch-up of 100,000 operations ≤ 150 ms, ≤ 250 bytes of engine overhead per live path).
// No timing is asserted anywhere; run
//
//	go test -run '^$' -bench . -benchmem -count 5 ./crdt
//
// The map they work on is a uMap-sized one: 20,000 features of one datalayer, five keys
// each, 100,000 live paths, with uMap's real metadata shapes (a UUID layerId).

import (
	"encoding/json"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/mapcrdt/mapcrdt/hlc"
)

const (
	benchFeatures = 20_000
	benchLayer    = "606d26bd-230f-4d3e-a2a7-0c3caed71548"
	benchSource   = "7d3c6d0e-55aa-4c1e-9b0e-3f1d2c4b5a69"
	benchSink     = "c0ffee00-1234-4bcd-8ef0-0123456789ab"
)

var benchKeys = [5]string{"properties.name", "properties.description", "properties._umap_options.color", "properties.size", "geometry"}

func benchMeta(f int) string {
	return `{"id":"f` + strconv.Itoa(f) + `","layerId":"` + benchLayer + `","featureType":"marker"}`
}

// appendBenchMeta appends benchMeta(f).
func appendBenchMeta(b []byte, f int) []byte {
	b = append(b, `{"id":"f`...)
	b = appendNum(b, uint64(f))
	return append(b, `","layerId":"`+benchLayer+`","featureType":"marker"}`...)
}

func benchValue(f, k, gen int) string {
	if k == 4 {
		return `{"type":"Point","coordinates":[` + strconv.Itoa(f%180) + `.25,` + strconv.Itoa(gen%90) + `.5]}`
	}
	return `"v` + strconv.Itoa(f) + `-` + strconv.Itoa(gen) + `"`
}

// benchMessages returns the 100,000 update messages of the benchmark map, in clock order,
// one per live path, as a mapcrdt peer sends them (seq 1 … 100,000), and the bytes of
// their values.
func benchMessages(b testing.TB, wall hlc.WallClock) ([][]byte, int) {
	src := newTestReplica(b, benchSource, wall)
	msgs := make([][]byte, 0, benchFeatures*len(benchKeys))
	valueBytes := 0
	for f := 0; f < benchFeatures; f++ {
		meta := benchMeta(f)
		for k, key := range benchKeys {
			v := benchValue(f, k, 0)
			valueBytes += len(v)
			if _, err := src.Update("feature", meta, key, v); err != nil {
				b.Fatal(err)
			}
		}
		msgs = append(msgs, src.Flush()...)
	}
	return msgs, valueBytes
}

// benchReplica returns a replica holding the benchmark map, built by receiving msgs.
func benchReplica(b testing.TB, wall hlc.WallClock, msgs [][]byte) *Replica {
	r := newTestReplica(b, benchSink, wall)
	for _, m := range msgs {
		if _, err := r.Receive(m); err != nil {
			b.Fatal(err)
		}
	}
	return r
}

// remoteUpdate writes one update message of the benchmark's source peer into buf: the i-th
// after the 100,000 of the map, to feature i%20,000, one of its five keys.
func remoteUpdate(buf []byte, i int) []byte {
	f, k := (i*7919)%benchFeatures, i%len(benchKeys)
	buf = append(buf[:0], `{"kind":"OperationMessage","sender":"`+benchSource+`","verb":"update","subject":"feature","metadata":{"id":"f`...)
	buf = appendNum(buf, uint64(f))
	buf = append(buf, `","layerId":"`+benchLayer+`","featureType":"marker"},"key":"`...)
	buf = append(buf, benchKeys[k]...)
	buf = append(buf, `","value":`...)
	if k == 4 { // benchValue(f, k, i+1), without allocating
		buf = append(buf, `{"type":"Point","coordinates":[`...)
		buf = appendNum(buf, uint64(f%180))
		buf = append(buf, ".25,"...)
		buf = appendNum(buf, uint64((i+1)%90))
		buf = append(buf, ".5]}"...)
	} else {
		buf = append(buf, `"v`...)
		buf = appendNum(buf, uint64(f))
		buf = append(buf, '-')
		buf = appendNum(buf, uint64(i+1))
		buf = append(buf, '"')
	}
	buf = append(buf, `,"hlc":"`...)
	buf = hlc.Timestamp{Wall: t0 + 1, Counter: uint32(i), Peer: benchSource}.AppendText(buf)
	buf = append(buf, `","seq":`...)
	buf = appendNum(buf, uint64(benchFeatures*len(benchKeys)+i+1))
	return append(buf, '}')
}

// processCPU returns the CPU time (user and system, every thread: the GC's included) the
// process has used so far, from /proc/self/stat; ok is false without /proc. The machine
// that runs the benchmarks may be shared, and wall time then counts the waits for a CPU;
// the cpu-ns/op metric does not.
func processCPU() (d time.Duration, ok bool) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return 0, false
	}
	f := strings.Fields(s[i+2:]) // f[0] is field 3 (state); utime and stime are fields 14, 15
	if len(f) < 13 {
		return 0, false
	}
	ut, e1 := strconv.ParseInt(f[11], 10, 64)
	st, e2 := strconv.ParseInt(f[12], 10, 64)
	if e1 != nil || e2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * (time.Second / 100), true // USER_HZ is 100 on Linux
}

// cpuMeter reports the process CPU time per op as "cpu-ns/op" when stopped.
type cpuMeter struct {
	start time.Duration
	ok    bool
}

func startCPU() cpuMeter {
	d, ok := processCPU()
	return cpuMeter{d, ok}
}

func (m cpuMeter) report(b *testing.B) {
	end, ok := processCPU()
	if m.ok && ok && b.N > 0 {
		b.ReportMetric(float64(end-m.start)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkReceive: one remote update message per op, on a replica holding 100,000 live
// paths. The message is written into a reused buffer inside the loop (a few tens of ns).
func BenchmarkReceive(b *testing.B) {
	wall := hlc.NewManualClock(t0)
	msgs, _ := benchMessages(b, wall)
	r := benchReplica(b, wall, msgs)
	msgs = nil
	var buf []byte
	i := 0
	b.ReportAllocs()
	cpu := startCPU()
	for b.Loop() {
		buf = remoteUpdate(buf, i)
		res, err := r.Receive(buf)
		if err != nil || len(res.Replies) != 0 {
			b.Fatalf("%v %q", err, res.Replies)
		}
		i++
	}
	cpu.report(b)
}

// BenchmarkReceiveAppend is BenchmarkReceive through ReceiveAppend, one changes buffer
// reused for every message, as the wasm module calls it: no allocation for the result.
func BenchmarkReceiveAppend(b *testing.B) {
	wall := hlc.NewManualClock(t0)
	msgs, _ := benchMessages(b, wall)
	r := benchReplica(b, wall, msgs)
	msgs = nil
	var buf []byte
	var changes []Change
	i := 0
	b.ReportAllocs()
	cpu := startCPU()
	for b.Loop() {
		buf = remoteUpdate(buf, i)
		res, err := r.ReceiveAppend(changes, buf)
		if err != nil || len(res.Replies) != 0 {
			b.Fatalf("%v %q", err, res.Replies)
		}
		changes = res.Changes
		i++
	}
	cpu.report(b)
}

// BenchmarkReceiveCanonical is BenchmarkReceive with each message as a mapcrdt peer writes
// it (members sorted, the canonical form that the parser validates without rewriting),
// where BenchmarkReceive's are in uMap's member order.
func BenchmarkReceiveCanonical(b *testing.B) {
	wall := hlc.NewManualClock(t0)
	msgs, _ := benchMessages(b, wall)
	r := benchReplica(b, wall, msgs)
	msgs = nil
	var buf []byte
	i := 0
	b.ReportAllocs()
	cpu := startCPU()
	for b.Loop() {
		buf = remoteUpdateCanonical(buf, i)
		res, err := r.Receive(buf)
		if err != nil || len(res.Replies) != 0 {
			b.Fatalf("%v %q", err, res.Replies)
		}
		i++
	}
	cpu.report(b)
}

// remoteUpdateCanonical is remoteUpdate written as a mapcrdt peer writes it: members sorted.
func remoteUpdateCanonical(buf []byte, i int) []byte {
	f, k := (i*7919)%benchFeatures, i%len(benchKeys)
	buf = append(buf[:0], `{"hlc":"`...)
	buf = hlc.Timestamp{Wall: t0 + 1, Counter: uint32(i), Peer: benchSource}.AppendText(buf)
	buf = append(buf, `","key":"`...)
	buf = append(buf, benchKeys[k]...)
	buf = append(buf, `","kind":"OperationMessage","metadata":{"featureType":"marker","id":"f`...)
	buf = appendNum(buf, uint64(f))
	buf = append(buf, `","layerId":"`+benchLayer+`"},"sender":"`+benchSource+`","seq":`...)
	buf = appendNum(buf, uint64(benchFeatures*len(benchKeys)+i+1))
	buf = append(buf, `,"subject":"feature","value":`...)
	if k == 4 {
		buf = append(buf, `{"coordinates":[`...)
		buf = appendNum(buf, uint64(f%180))
		buf = append(buf, ".25,"...)
		buf = appendNum(buf, uint64((i+1)%90))
		buf = append(buf, `.5],"type":"Point"}`...)
	} else {
		buf = append(buf, `"v`...)
		buf = appendNum(buf, uint64(f))
		buf = append(buf, '-')
		buf = appendNum(buf, uint64(i+1))
		buf = append(buf, '"')
	}
	return append(buf, `,"verb":"update"}`...)
}

// BenchmarkLocalEdit: one local update (stamped, applied, queued, undo recorded) on a
// replica holding 100,000 live paths. "Update" flushes the outbox every 1,024 edits (the
// flush amortized in); "UpdateAndFlush" sends each edit at once; "ApplyAppendAndFlush" is
// UpdateAndFlush as the wasm module makes an edit: through ApplyAppend and FlushAppend,
// their buffers reused.
func BenchmarkLocalEdit(b *testing.B) {
	for _, each := range []struct {
		name   string
		flush  int
		append bool
	}{{"Update", 1024, false}, {"UpdateAndFlush", 1, false}, {"ApplyAppendAndFlush", 1, true}} {
		b.Run(each.name, func(b *testing.B) {
			wall := hlc.NewManualClock(t0)
			msgs, _ := benchMessages(b, wall)
			r := benchReplica(b, wall, msgs)
			msgs = nil
			// The metadata is written for each edit into a reused buffer, as a caller builds
			// it (the wasm module's input buffer): 20,000 texts made beforehand would lie in
			// cold memory, ~3 cache misses an edit that no caller has.
			var meta []byte
			if string(appendBenchMeta(nil, 7)) != benchMeta(7) {
				b.Fatal("appendBenchMeta is not benchMeta")
			}
			values := make([]string, 1024)
			for j := range values {
				values[j] = `"edit ` + strconv.Itoa(j) + `"`
			}
			i := 0
			var changes []Change
			var sent []byte
			b.ReportAllocs()
			cpu := startCPU()
			for b.Loop() {
				f := (i * 7919) % benchFeatures
				meta = appendBenchMeta(meta[:0], f)
				metaText := unsafe.String(unsafe.SliceData(meta), len(meta))
				var err error
				if each.append {
					changes, err = r.ApplyAppend(changes, Edit{Verb: VerbUpdate, Subject: "feature", Metadata: metaText, Key: benchKeys[i%4], Value: values[i%1024]})
				} else {
					_, err = r.Update("feature", metaText, benchKeys[i%4], values[i%1024])
				}
				if err != nil {
					b.Fatal(err)
				}
				i++
				if i%each.flush != 0 {
					continue
				}
				if each.append {
					if sent, _ = r.FlushAppend(sent[:0], 0x1e); len(sent) == 0 {
						b.Fatal("nothing to send")
					}
				} else {
					r.Flush()
				}
			}
			cpu.report(b)
		})
	}
}

// BenchmarkCatchUp: a fresh replica applies the 100,000 operations of the benchmark map —
// as one ListOperationsResponse in uMap's format, as the pages of compact responses mapcrdt
// peers get (SyncPage operations each: "OneCompactResponse" keeps its name from before
// responses were paged, and takes every page), and as 100,000 OperationMessages received
// one by one.
func BenchmarkCatchUp(b *testing.B) {
	wall := hlc.NewManualClock(t0)
	msgs, _ := benchMessages(b, wall)
	holder := benchReplica(b, wall, msgs)
	plain := recv(b, holder, umapRequest(benchSink, benchSink, "")).Replies[0]
	// The pages, as a joiner gets them: each partial page answered with a request for the
	// next one, until a page says no more follow.
	joiner := newTestReplica(b, benchSink, wall)
	var pages [][]byte
	for req := joiner.SyncRequest(holder.PeerID()); req != nil; {
		page := recv(b, holder, req).Replies[0]
		pages = append(pages, page)
		req = nil
		for _, m := range recv(b, joiner, page).Replies {
			if strings.Contains(string(m), `"after":`) {
				req = m
			}
		}
	}
	want := holder.State()
	if joiner.State() != want {
		b.Fatal("the pages give another state")
	}
	session := joiner.session
	holder, joiner = nil, nil

	check := func(b *testing.B, r *Replica) {
		b.StopTimer()
		if r.State() != want {
			b.Fatal("catch-up gives another state")
		}
		b.StartTimer()
	}
	for _, resp := range []struct {
		name string
		msgs [][]byte
	}{{"OneResponse", [][]byte{plain}}, {"OneCompactResponse", pages}} {
		b.Run(resp.name, func(b *testing.B) {
			size := 0
			for _, m := range resp.msgs {
				size += len(m)
			}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			first := true
			cpu := startCPU()
			for b.Loop() {
				r := newTestReplica(b, benchSink, wall)
				r.session = session // the pages answer the joiner's requests
				for _, m := range resp.msgs {
					if _, err := r.Receive(m); err != nil {
						b.Fatal(err)
					}
				}
				if first {
					check(b, r)
					first = false
				}
			}
			cpu.report(b)
		})
	}
	b.Run("Receives", func(b *testing.B) {
		b.ReportAllocs()
		first := true
		cpu := startCPU()
		for b.Loop() {
			r := newTestReplica(b, benchSink, wall)
			for _, m := range msgs {
				if _, err := r.Receive(m); err != nil {
					b.Fatal(err)
				}
			}
			if first {
				check(b, r)
				first = false
			}
		}
		cpu.report(b)
	})
}

func heapAlloc() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkMemoryPerPath reports the heap a replica holding 100,000 live paths uses, per
// path, beyond the bytes of the values themselves (B/path), and those value bytes
// (value-B/path). "Updates": each path written by its own remote update (the engine keeps a
// write per path: the worst case). "Upserts": each feature one upsert holding its five
// paths. Everything else the replica holds counts as overhead: keys, metadata, the log,
// clocks, the version vector.
func BenchmarkMemoryPerPath(b *testing.B) {
	const paths = float64(benchFeatures * len(benchKeys))
	b.Run("Updates", func(b *testing.B) {
		wall := hlc.NewManualClock(t0)
		msgs, valueBytes := benchMessages(b, wall)
		var overhead float64
		for b.Loop() {
			before := heapAlloc()
			r := benchReplica(b, wall, msgs)
			after := heapAlloc()
			overhead = (float64(after) - float64(before) - float64(valueBytes)) / paths
			runtime.KeepAlive(r)
		}
		b.ReportMetric(overhead, "B/path")
		b.ReportMetric(float64(valueBytes)/paths, "value-B/path")
	})
	b.Run("Upserts", func(b *testing.B) {
		wall := hlc.NewManualClock(t0)
		src := newTestReplica(b, benchSource, wall)
		msgs := make([][]byte, 0, benchFeatures)
		valueBytes := 0
		for f := 0; f < benchFeatures; f++ {
			v := `{"type":"Feature","geometry":` + benchValue(f, 4, 0) + `,"properties":{"name":` + benchValue(f, 0, 0) +
				`,"description":` + benchValue(f, 1, 0) + `,"_umap_options":{"color":` + benchValue(f, 2, 0) + `},"size":` + benchValue(f, 3, 0) + `}}`
			valueBytes += len(v)
			if _, err := src.Upsert("feature", benchMeta(f), v); err != nil {
				b.Fatal(err)
			}
			msgs = append(msgs, src.Flush()...)
		}
		var overhead float64
		for b.Loop() {
			before := heapAlloc()
			r := benchReplica(b, wall, msgs)
			after := heapAlloc()
			overhead = (float64(after) - float64(before) - float64(valueBytes)) / paths
			runtime.KeepAlive(r)
		}
		b.ReportMetric(overhead, "B/path")
		b.ReportMetric(float64(valueBytes)/paths, "value-B/path")
	})
}

// BenchmarkReferenceEncodingJSON decodes the message BenchmarkReceive receives with
// encoding/json into a map[string]any: not the engine, a yardstick to compare the numbers
// of machines of different speed (or a shared machine under load) with each other.
func BenchmarkReferenceEncodingJSON(b *testing.B) {
	msg := remoteUpdate(nil, 1)
	b.ReportAllocs()
	cpu := startCPU()
	for b.Loop() {
		var m map[string]any
		if err := json.Unmarshal(msg, &m); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
}

// TestRemoteUpdateMessage: the benchmark's allocation-free message writer gives the message
// the helpers describe (and the engine accepts it).
func TestRemoteUpdateMessage(t *testing.T) {
	for _, i := range []int{0, 1, 4, 9, 123_457} {
		f, k := (i*7919)%benchFeatures, i%len(benchKeys)
		want := `{"kind":"OperationMessage","sender":"` + benchSource + `","verb":"update","subject":"feature","metadata":` +
			benchMeta(f) + `,"key":"` + benchKeys[k] + `","value":` + benchValue(f, k, i+1) + `,"hlc":"` +
			hlc.Timestamp{Wall: t0 + 1, Counter: uint32(i), Peer: benchSource}.String() + `","seq":` +
			strconv.Itoa(benchFeatures*len(benchKeys)+i+1) + `}`
		if got := string(remoteUpdate(nil, i)); got != want {
			t.Fatalf("%d:\n got %s\nwant %s", i, got, want)
		}
	}
}

func TestRemoteUpdateCanonicalIsCanonical(t *testing.T) {
	for i := range 10 {
		msg := string(remoteUpdateCanonical(nil, i))
		c, err := canonicalJSON(string(remoteUpdate(nil, i)), 64)
		if err != nil || c != msg {
			t.Fatalf("%d: %v\n%s\n%s", i, err, c, msg)
		}
	}
}
