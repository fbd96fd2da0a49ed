package crdt

// Benchmarks of issue 3 and 5 on the 10k workload: 10,000 operations over 1,000 features ×
// 5 keys (properties.name, properties.color, properties.description,
// properties._umap_options.weight, geometry as a GeoJSON Point), made by four peers with
// UUID ids and wall clocks that move like a real editing session. Every key of every
// feature is written once, then 5,000 more updates hit random keys.
//
//	go test -run '^$' -bench 'Sync|Compact|Snapshot|Outbox' -benchmem -count 5 ./crdt
//
// Issue 5's target is a late joiner's response of at most 120 KiB after gzip; the
// benchmarks report it (resp-gzip-B), they do not assert it.

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"

	"github.com/mapcrdt/mapcrdt/hlc"
)

const (
	kitBenchFeatures = 1000
	kitBenchOps      = 10_000
)

var kitBenchKeys = []string{"properties.name", "properties.color", "properties.description", "properties._umap_options.weight", "geometry"}

type kitWorkload struct {
	wall    *hlc.ManualClock
	holder  *Replica // holds every operation, uncompacted
	snap    []byte   // holder's snapshot
	compact []byte   // snapshot of holder after Compact
	msgs    [][]byte
}

var (
	kitWorkloadOnce sync.Once
	kitWorkloadVal  *kitWorkload
)

func kitUUID(rng *rand.Rand) string {
	var b [16]byte
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

var kitWords = []string{"le", "chemin", "passe", "par", "la", "forêt", "de", "Fontainebleau", "avec", "une", "vue",
	"sur", "les", "rochers", "et", "un", "point", "d'eau", "ouvert", "toute", "l'année", "parking", "gratuit", "à", "proximité"}

var kitColors = []string{"DarkBlue", "Crimson", "DarkGreen", "Orange", "SteelBlue", "#ff6600", "Purple", "Gold"}

func kitBenchValue(rng *rand.Rand, key string, f int) string {
	switch key {
	case "properties.name":
		return strconv.Quote("Point d'intérêt n°" + strconv.Itoa(f) + " " + kitWords[rng.IntN(len(kitWords))])
	case "properties.color":
		return strconv.Quote(kitColors[rng.IntN(len(kitColors))])
	case "properties.description":
		s := ""
		for n := 6 + rng.IntN(14); n > 0; n-- {
			if s != "" {
				s += " "
			}
			s += kitWords[rng.IntN(len(kitWords))]
		}
		return strconv.Quote(s + ".")
	case "properties._umap_options.weight":
		return strconv.Itoa(1 + rng.IntN(8))
	}
	lng := 2.2 + rng.Float64()*0.3
	lat := 48.8 + rng.Float64()*0.2
	return `{"type":"Point","coordinates":[` + strconv.FormatFloat(lng, 'f', 6, 64) + `,` + strconv.FormatFloat(lat, 'f', 6, 64) + `]}`
}

func kitBenchWorkload(b testing.TB) *kitWorkload {
	kitWorkloadOnce.Do(func() {
		rng := rand.New(rand.NewPCG(2024, 9))
		wall := hlc.NewManualClock(kitT0)
		authors := make([]*Replica, 4)
		for i := range authors {
			authors[i] = kitReplica(b, kitUUID(rng), wall)
		}
		layers := []string{kitUUID(rng), kitUUID(rng), kitUUID(rng)}
		metas := make([]string, kitBenchFeatures)
		const idChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
		for f := range metas {
			id := make([]byte, 5)
			for i := range id {
				id[i] = idChars[rng.IntN(len(idChars))]
			}
			metas[f] = `{"id":"` + string(id) + `","layerId":"` + layers[f%len(layers)] + `","featureType":"marker"}`
		}
		holder := kitReplica(b, kitUUID(rng), wall)
		w := &kitWorkload{wall: wall, holder: holder}
		edit := func(f int, key string) {
			wall.Advance(50 + int64(rng.IntN(1500)))
			a := authors[rng.IntN(len(authors))]
			if _, err := a.Update("feature", metas[f], key, kitBenchValue(rng, key, f)); err != nil {
				b.Fatal(err)
			}
			for _, m := range a.Flush() {
				w.msgs = append(w.msgs, m)
				if _, err := holder.Receive(m); err != nil {
					b.Fatal(err)
				}
			}
		}
		for f := 0; f < kitBenchFeatures; f++ {
			for _, k := range kitBenchKeys {
				edit(f, k)
			}
		}
		for len(w.msgs) < kitBenchOps {
			edit(rng.IntN(kitBenchFeatures), kitBenchKeys[rng.IntN(len(kitBenchKeys))])
		}
		var err error
		if w.snap, err = holder.Snapshot(); err != nil {
			b.Fatal(err)
		}
		c, err := NewReplicaFromSnapshot(Options{Wall: wall}, w.snap)
		if err != nil {
			b.Fatal(err)
		}
		c.Compact()
		if w.compact, err = c.Snapshot(); err != nil {
			b.Fatal(err)
		}
		kitWorkloadVal = w
	})
	if kitWorkloadVal == nil {
		b.Fatal("workload failed to build")
	}
	return kitWorkloadVal
}

func kitGzip(p []byte) int {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(p)
	zw.Close()
	return buf.Len()
}

// kitLogBytes is the size of the log as wire JSON (bare operations).
func kitLogBytes(r *Replica) int {
	n := 0
	for _, o := range r.log.ops {
		n += len(appendOp(nil, o, ""))
	}
	return n
}

// BenchmarkSyncLateJoiner: an empty replica asks the holder of the 10k operations for what
// it lacks, merges the response, and (having nothing to push back) stops. "mapcrdt" is a
// request with a vector (compact response); "umap" is uMap's plain Journal asking with
// lastKnownHLC only (operations response).
func BenchmarkSyncLateJoiner(b *testing.B) {
	w := kitBenchWorkload(b)
	for _, form := range []string{"mapcrdt", "umap"} {
		b.Run(form, func(b *testing.B) {
			var resp []byte
			b.ReportAllocs()
			for b.Loop() {
				joiner := kitReplica(b, "joiner", w.wall)
				req := joiner.SyncRequest(w.holder.PeerID())
				if form == "umap" {
					req = []byte(`{"kind":"PeerMessage","sender":"joiner","recipient":"` + w.holder.PeerID() + `","message":{"verb":"ListOperationsRequest","lastKnownHLC":null}}`)
				}
				res, err := w.holder.Receive(req)
				if err != nil || len(res.Replies) != 1 {
					b.Fatalf("holder: %v, %d replies", err, len(res.Replies))
				}
				resp = res.Replies[0]
				res, err = joiner.Receive(resp)
				if err != nil || len(res.Replies) != 0 {
					b.Fatalf("joiner: %v, %d replies", err, len(res.Replies))
				}
			}
			ops, _ := kitResponseOps(b, resp)
			b.ReportMetric(float64(len(resp)), "resp-raw-B")
			b.ReportMetric(float64(kitGzip(resp)), "resp-gzip-B")
			b.ReportMetric(float64(len(ops)), "resp-ops")
		})
	}
}

// BenchmarkSyncHalfBehind: the requester holds the first 5,000 operations (every key
// once); the responder holds all 10,000.
func BenchmarkSyncHalfBehind(b *testing.B) {
	w := kitBenchWorkload(b)
	half := kitReplica(b, "half", w.wall)
	for _, m := range w.msgs[:kitBenchOps/2] {
		if _, err := half.Receive(m); err != nil {
			b.Fatal(err)
		}
	}
	snap, err := half.Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	var resp []byte
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		r, err := NewReplicaFromSnapshot(Options{Wall: w.wall}, snap)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := w.holder.Receive(r.SyncRequest(w.holder.PeerID()))
		if err != nil || len(res.Replies) != 1 {
			b.Fatalf("holder: %v, %d replies", err, len(res.Replies))
		}
		resp = res.Replies[0]
		if _, err := r.Receive(resp); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(resp)), "resp-raw-B")
	b.ReportMetric(float64(kitGzip(resp)), "resp-gzip-B")
}

// BenchmarkCompact: Compact on the holder of the 10k operations; log length and bytes
// before and after.
func BenchmarkCompact(b *testing.B) {
	w := kitBenchWorkload(b)
	var st CompactStats
	var before, after, bytesBefore, bytesAfter int
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		r, err := NewReplicaFromSnapshot(Options{Wall: w.wall}, w.snap)
		if err != nil {
			b.Fatal(err)
		}
		before, bytesBefore = r.LogLen(), kitLogBytes(r)
		b.StartTimer()
		st = r.Compact()
		b.StopTimer()
		after, bytesAfter = r.LogLen(), kitLogBytes(r)
		b.StartTimer()
	}
	b.ReportMetric(float64(before), "log-ops-before")
	b.ReportMetric(float64(after), "log-ops-after")
	b.ReportMetric(float64(bytesBefore), "log-B-before")
	b.ReportMetric(float64(bytesAfter), "log-B-after")
	b.ReportMetric(float64(st.Bytes), "dropped-B")
}

// BenchmarkSnapshot: Snapshot of the 10k replica, before and after compaction.
func BenchmarkSnapshot(b *testing.B) {
	w := kitBenchWorkload(b)
	for _, c := range []struct {
		name string
		snap []byte
	}{{"full", w.snap}, {"compacted", w.compact}} {
		b.Run(c.name, func(b *testing.B) {
			r, err := NewReplicaFromSnapshot(Options{Wall: w.wall}, c.snap)
			if err != nil {
				b.Fatal(err)
			}
			var snap []byte
			b.ReportAllocs()
			for b.Loop() {
				if snap, err = r.Snapshot(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(snap)), "snap-B")
			b.ReportMetric(float64(kitGzip(snap)), "snap-gzip-B")
		})
	}
}

// BenchmarkSnapshotRestore: NewReplicaFromSnapshot of the 10k replica.
func BenchmarkSnapshotRestore(b *testing.B) {
	w := kitBenchWorkload(b)
	for _, c := range []struct {
		name string
		snap []byte
	}{{"full", w.snap}, {"compacted", w.compact}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := NewReplicaFromSnapshot(Options{Wall: w.wall}, c.snap); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOutboxDrag: a marker drag emits 100 geometry updates while disconnected; Flush
// sends what is left.
func BenchmarkOutboxDrag(b *testing.B) {
	wall := hlc.NewManualClock(kitT0)
	var msgs [][]byte
	values := make([]string, 100)
	for i := range values {
		values[i] = `{"type":"Point","coordinates":[` + strconv.FormatFloat(2.35+float64(i)*1e-4, 'f', 6, 64) + `,48.853000]}`
	}
	b.ReportAllocs()
	for b.Loop() {
		r := kitReplica(b, "a5f0c1e2-7b6d-4c3a-9e8f-0123456789ab", wall)
		for _, v := range values {
			wall.Advance(16)
			if _, err := r.Update("feature", kitF1, "geometry", v); err != nil {
				b.Fatal(err)
			}
		}
		msgs = r.Flush()
	}
	n := 0
	for _, m := range msgs {
		n += len(m)
	}
	b.ReportMetric(float64(len(msgs)), "msgs")
	b.ReportMetric(float64(n), "bytes-out")
}

// BenchmarkSyncPagedCatchUp: the responder's side of a catch-up in pages: a holder of
// 200,000 live paths (three authors' edits) answers every request of a joiner that asks
// for all of it, page after page (20 pages of SyncPage operations), as the joiner asked
// them once (its requests are recorded, then replayed). ns/op is one whole catch-up.
func BenchmarkSyncPagedCatchUp(b *testing.B) {
	const features = 40_000
	wall := hlc.NewManualClock(kitT0)
	holder := kitReplica(b, "holder", wall)
	authors := []*Replica{kitReplica(b, "author-a", wall), kitReplica(b, "author-b", wall), kitReplica(b, "author-c", wall)}
	for f := range features {
		meta := `{"id":"f` + strconv.Itoa(f) + `","layerId":"L1","featureType":"marker"}`
		for k, key := range kitBenchKeys {
			wall.Advance(1)
			a := authors[(f+k)%len(authors)]
			if _, err := a.Update("feature", meta, key, `"v`+strconv.Itoa(f)+`"`); err != nil {
				b.Fatal(err)
			}
			for _, m := range a.Flush() {
				if _, err := holder.Receive(m); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	joiner := kitReplica(b, "joiner", wall)
	var reqs [][]byte
	for req := joiner.SyncRequest("holder"); req != nil; {
		reqs = append(reqs, req)
		res, err := holder.Receive(req)
		if err != nil || len(res.Replies) != 1 {
			b.Fatalf("holder: %v, %d replies", err, len(res.Replies))
		}
		if res, err = joiner.Receive(res.Replies[0]); err != nil {
			b.Fatal(err)
		}
		req = nil
		for _, m := range res.Replies {
			if bytes.Contains(m, []byte(`"after":`)) {
				req = m
			}
		}
	}
	if joiner.State() != holder.State() {
		b.Fatal("the joiner did not catch up")
	}
	joiner = nil
	b.ReportAllocs()
	cpu := startCPU()
	for b.Loop() {
		for _, req := range reqs {
			if _, err := holder.Receive(req); err != nil {
				b.Fatal(err)
			}
		}
	}
	cpu.report(b)
	b.ReportMetric(float64(len(reqs)), "pages")
}
