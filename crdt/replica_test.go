package crdt

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/mapcrdt/mapcrdt/hlc"
)

// TestOwnSeqsIsAMap: ownSeqs, whose current origin's seq lives outside its map, reads and
// writes as a plain map of origin → seq does, across changes of the current origin, over
// random calls (origins that share bytes, the empty one, a seq of 0 set on purpose).
func TestOwnSeqsIsAMap(t *testing.T) {
	origins := []string{"p", "p~a", "p~b", "q", ""}
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 7))
		model := map[string]uint64{}
		s := ownSeqs{origin: "p", others: map[string]uint64{}}
		if seed%2 == 1 { // as a snapshot restores it: no map entry yet for the origin to come
			s = ownSeqs{others: nil}
			s.setOrigin(origins[rng.IntN(len(origins))])
		}
		for step := range 60 {
			o := string([]byte(origins[rng.IntN(len(origins))])) // a copy: not the same bytes
			switch rng.IntN(4) {
			case 0:
				s.setOrigin(o)
			case 1:
				n := uint64(rng.IntN(3))
				s.set(o, n)
				model[o] = n
			default:
				if got := s.get(o); got != model[o] {
					t.Fatalf("seed %d step %d: get(%q) = %d, want %d", seed, step, o, got, model[o])
				}
			}
			if v := s.vector(); !maps.Equal(v, VersionVector(model)) {
				t.Fatalf("seed %d step %d: vector %v, want %v", seed, step, v, model)
			}
		}
	}
}

// TestSetPathIsTheGeneralWay: twin replicas make the same random local edits — sets,
// unsets, upserts and deletes over parent/child paths, some in batches — one of them the
// general way only (generalOnly), and report the same changes for each; then two more
// receive the messages, shuffled and with duplicates, one through setPath, the other the
// general way (watchOne, apply, changeAt). Every call reports the same changes, and each
// pair ends with the same state, the same kept writes in the same order and the same live
// counts (what compaction keeps).
func TestSetPathIsTheGeneralWay(t *testing.T) {
	same := func(seed uint64, fast, general *Replica) {
		t.Helper()
		if fast.State() != general.State() {
			t.Fatalf("seed %d: states differ", seed)
		}
		for _, of := range fast.objects.sorted(nil) {
			key := of.key
			og := general.objects.get(key)
			if og == nil || len(of.paths) != len(og.paths) {
				t.Fatalf("seed %d: %q keeps other writes", seed, key)
			}
			for i := range of.paths {
				if of.paths[i].op.ts != og.paths[i].op.ts || of.paths[i].sub != og.paths[i].sub {
					t.Fatalf("seed %d: %q keeps other writes, or in another order", seed, key)
				}
			}
		}
		for i := range fast.log.ops {
			if f, g := fast.log.ops[i], general.log.ops[i]; f.ts != g.ts || f.live != g.live {
				t.Fatalf("seed %d: op %v live %d, the general way %d", seed, f.ts, f.live, g.live)
			}
		}
	}
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 11))
		wall := hlc.NewManualClock(t0)
		type twin struct{ fast, general *Replica }
		src := []twin{
			{newTestReplica(t, "src-a", wall), newTestReplica(t, "src-a", wall)},
			{newTestReplica(t, "src-b", wall), newTestReplica(t, "src-b", wall)},
		}
		var msgs [][]byte
		for range 60 {
			tw := src[rng.IntN(2)]
			if rng.IntN(8) == 0 {
				wall.Advance(1)
			}
			batch := rng.IntN(8) == 0
			n := 1
			if batch {
				n = 1 + rng.IntN(4)
			}
			var edits []Edit
			for range n {
				o := randObjects[rng.IntN(len(randObjects))]
				e := Edit{Subject: o.sub, Metadata: o.meta}
				switch k := rng.IntN(12); {
				case k < 8:
					e.Verb, e.Key, e.Value = VerbUpdate, randPaths[rng.IntN(len(randPaths))], randValue(rng)
				case k < 10:
					e.Verb, e.Key = VerbUpdate, randPaths[rng.IntN(len(randPaths))]
				case k < 11:
					e.Verb, e.Value = VerbUpsert, randObjectValue(rng)
				default:
					e.Verb = VerbDelete
				}
				edits = append(edits, e)
			}
			var got [2][]string
			for i, r := range []*Replica{tw.fast, tw.general} {
				generalOnly = i == 1
				if batch {
					if err := r.StartBatch(); err != nil {
						t.Fatal(err)
					}
				}
				for _, e := range edits {
					ch, err := r.Apply(e)
					if err != nil {
						t.Fatal(err)
					}
					got[i] = append(got[i], fmt.Sprint(ch))
				}
				if batch {
					if err := r.CommitBatch(); err != nil {
						t.Fatal(err)
					}
				}
				generalOnly = false
			}
			if fmt.Sprint(got[0]) != fmt.Sprint(got[1]) {
				t.Fatalf("seed %d, edits %+v:\nsetAt   %v\ngeneral %v", seed, edits, got[0], got[1])
			}
			msgs = append(msgs, tw.fast.Flush()...)
			tw.general.Flush()
		}
		for _, tw := range src {
			same(seed, tw.fast, tw.general)
		}
		rng.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })
		msgs = append(msgs, msgs[:10]...) // duplicates
		fast, general := newTestReplica(t, "dst-f", wall), newTestReplica(t, "dst-g", wall)
		for i, m := range msgs {
			rf, errF := fast.Receive(m)
			generalOnly = true
			rg, errG := general.Receive(m)
			generalOnly = false
			if (errF == nil) != (errG == nil) || fmt.Sprint(rf.Changes) != fmt.Sprint(rg.Changes) {
				t.Fatalf("seed %d, message %d %s:\nsetPath %v %v\ngeneral %v %v", seed, i, m, rf.Changes, errF, rg.Changes, errG)
			}
		}
		same(seed, fast, general)
		// A catch-up: one response holding every operation (ingest's general path, whose
		// applyOp takes setAt too), in both encodings.
		for _, compact := range []bool{true, false} {
			joinF, joinG := newTestReplica(t, "dst-j", wall), newTestReplica(t, "dst-j", wall)
			req := joinF.SyncRequest(fast.peer)
			if !compact {
				req = []byte(strings.Replace(string(req), `"vector"`, `"ignored"`, 1)) // uMap's request
			}
			res, err := fast.Receive(req)
			if err != nil || len(res.Replies) != 1 {
				t.Fatalf("seed %d: the holder answers %v %q", seed, err, res.Replies)
			}
			rf, errF := joinF.Receive(res.Replies[0])
			generalOnly = true
			rg, errG := joinG.Receive(res.Replies[0])
			generalOnly = false
			if errF != nil || errG != nil || fmt.Sprint(rf.Changes) != fmt.Sprint(rg.Changes) {
				t.Fatalf("seed %d, catch-up:\nsetAt   %v %v\ngeneral %v %v", seed, rf.Changes, errF, rg.Changes, errG)
			}
			same(seed, joinF, joinG)
		}
	}
}

// TestIdentifyMetaKeyIsObjectKey: the identity a local edit's metadata gets while it is
// sorted (flatObjectIDs, then appendKeyOf) is the one objectKey reads from the canonical
// text — the same object, or the same error code — for flat texts in and out of order,
// missing, empty, long and repeated id fields, escapes and nested values.
func TestIdentifyMetaKeyIsObjectKey(t *testing.T) {
	long := strings.Repeat("x", MaxIDBytes+1)
	metas := []string{
		`{"id":"a","layerId":"L"}`, `{"layerId":"L","id":"a","featureType":"marker"}`,
		`{"id":"a"}`, `{"layerId":"L"}`, `{}`, `{"id":"","layerId":"L"}`,
		`{"id":"` + long + `","layerId":"L"}`, `{"id":"a","id":"b","layerId":"L"}`,
		`{"id":"caf\u00e9","layerId":"L"}`, `{"id":"é","layerId":"L"}`, `{"id":1,"layerId":"L"}`,
		`{"id":"a","layerId":"L","x":{"id":"n"}}`, `{ "id":"a","layerId":"L"}`, `{"id":"a","layerId":null}`,
		`{"a":"1","b":"2","c":"3","d":"4","e":"5","f":"6","g":"7","h":"8","id":"a","layerId":"L"}`,
	}
	for _, subject := range []string{"feature", "datalayer", "map"} {
		for _, m := range metas {
			r := newTestReplica(t, fuzzPeerA, fuzzWall())
			sub := r.dec.subject(subject)
			obj, _, err := r.identifyMeta(subject, m, false)
			canon, cerr := canonicalJSON(m, 64)
			if cerr != nil {
				t.Fatalf("%s: %v", m, cerr)
			}
			key, kerr := objectKey(sub, canon)
			if Code(err) != Code(kerr) {
				t.Fatalf("%s %s: error %v, objectKey's %v", subject, m, err, kerr)
			}
			if err == nil && obj.key != key {
				t.Fatalf("%s %s: key %q, objectKey's %q", subject, m, obj.key, key)
			}
		}
	}
}

// TestObjectMadeByUpdateHasRoom: an object an update makes is allocated with room for a
// feature's five keys (objectAlloc): making it and writing its five keys takes three
// allocations — its identity text, the object, and the copy of its metadata text that the
// cache of known objects keeps at the second edit — where the plain layout took five (an
// array of four path writes and one of eight besides); one an upsert makes keeps the
// plain layout. Blocks of operations and values and the log's growth are shared by
// hundreds of edits, and AllocsPerRun rounds their share down.
func TestObjectMadeByUpdateHasRoom(t *testing.T) {
	r := newTestReplica(t, "room", hlc.NewManualClock(t0))
	keys := []string{"properties.name", "properties.color", "properties.description", "properties._umap_options.weight", "geometry"}
	var changes []Change
	var sent []byte
	metas := make([]string, 1000) // made beforehand: the test allocates nothing per feature
	for i := range metas {
		metas[i] = `{"id":"f` + strconv.Itoa(i) + `","layerId":"L"}`
	}
	f := 0
	feature := func(upsert bool) {
		f++
		meta := metas[f]
		if upsert {
			var err error
			if changes, err = r.ApplyAppend(changes, Edit{Verb: VerbUpsert, Subject: "feature", Metadata: meta, Value: `{"type":"Feature"}`}); err != nil {
				t.Fatal(err)
			}
		}
		for _, k := range keys {
			var err error
			if changes, err = r.ApplyAppend(changes, Edit{Verb: VerbUpdate, Subject: "feature", Metadata: meta, Key: k, Value: `"v"`}); err != nil {
				t.Fatal(err)
			}
		}
		sent, _ = r.FlushAppend(sent[:0], 0x1e)
	}
	for range 300 { // the caches and the buffers at their size
		feature(false)
	}
	if a := testing.AllocsPerRun(200, func() { feature(false) }); a > 3 {
		t.Errorf("an update making an object and writing five keys: %v allocations, want at most 3", a)
	}
	object := func() *object {
		o, err := r.identify("feature", metas[f])
		if err != nil || !o.known {
			t.Fatalf("feature f%d: %v", f, err)
		}
		return o
	}
	if o := object(); cap(o.paths) != 5 || len(o.paths) != 5 {
		t.Errorf("the last feature's object: %d paths, room for %d, want 5 in its own room", len(o.paths), cap(o.paths))
	}
	feature(true)
	if o := object(); len(o.paths) != 5 || cap(o.paths) == 5 {
		t.Errorf("an upserted feature's object took the room: %d paths, room for %d", len(o.paths), cap(o.paths))
	}
}

// TestLocalEditsFitAPeersMessage: a local edit whose message — alone, or its open batch's —
// a peer with the same limits would refuse is refused itself (too_large), and changes
// nothing; every edit accepted reaches the peer. Before, a batch of more than MaxBatch edits,
// or over MaxMessageBytes, was made and sent, and every peer refused it every time: the
// edits stayed on one replica. Random keys (escapes, quotes), metadata and values, under
// random limits.
func TestLocalEditsFitAPeersMessage(t *testing.T) {
	for seed := range *seeds / 20 {
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		lim := DefaultLimits()
		lim.MaxMessageBytes = 300 + rng.IntN(3000)
		lim.MaxBatch = 1 + rng.IntN(12)
		wall := hlc.NewManualClock(t0)
		mk := func(peer string) *Replica {
			r, err := NewReplica(Options{PeerID: peer, Wall: wall, Limits: lim})
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		a, b := mk(strings.Repeat("a", 1+rng.IntN(60))), mk("b")
		refused := 0
		for step := range 60 {
			wall.Advance(1)
			if rng.IntN(4) == 0 {
				if a.InBatch() {
					if err := a.CommitBatch(); err != nil {
						t.Fatal(err)
					}
				} else if err := a.StartBatch(); err != nil {
					t.Fatal(err)
				}
			}
			meta := `{"id":"f` + strconv.Itoa(rng.IntN(5)) + `","layerId":"L1","note":"` + strings.Repeat("m", rng.IntN(100)) + `"}`
			key := "properties." + strings.Repeat(`k\."q"`, rng.IntN(4)) + strconv.Itoa(rng.IntN(3))
			raw, _ := json.Marshal(strings.Repeat("é\x01\"<", rng.IntN(150)))
			value := string(raw)
			before := a.State()
			var err error
			if rng.IntN(5) == 0 {
				_, err = a.Upsert("feature", meta, `{"type":"Feature","properties":{"v":`+value+`}}`)
			} else {
				_, err = a.Update("feature", meta, key, value)
			}
			if err != nil {
				if !errors.Is(err, ErrTooLarge) {
					t.Fatalf("seed %d step %d: %v", seed, step, err)
				}
				if a.State() != before {
					t.Fatalf("seed %d step %d: a refused edit changed the state", seed, step)
				}
				refused++
			}
			if !a.InBatch() {
				for _, m := range a.Flush() {
					if _, err := b.Receive(m); err != nil {
						t.Fatalf("seed %d step %d: the peer refuses a %d-byte message (limit %d): %v", seed, step, len(m), lim.MaxMessageBytes, err)
					}
				}
			}
		}
		if a.InBatch() {
			_ = a.CommitBatch()
		}
		for _, m := range a.Flush() {
			if _, err := b.Receive(m); err != nil {
				t.Fatalf("seed %d: the peer refuses a %d-byte message: %v", seed, len(m), err)
			}
		}
		if a.State() != b.State() {
			t.Fatalf("seed %d: the peer differs", seed)
		}
		if seed == 0 && refused == 0 {
			t.Error("seed 0 refused no edit: the test does not test the limits")
		}
	}
}

// TestSnapshotOfMoreThanABatchRestores: a snapshot's log holds every live operation, more
// than a sync response may: restoring it is bounded by its size alone. Before, a replica
// holding more than Limits.MaxBatch operations (100,000 by default) wrote snapshots it could
// not read back (the relay's map then would not open). A snapshot a restore would refuse
// for its size is refused when made.
func TestSnapshotOfMoreThanABatchRestores(t *testing.T) {
	lim := DefaultLimits()
	lim.MaxBatch = 10
	wall := hlc.NewManualClock(t0)
	r, err := NewReplica(Options{PeerID: "a", Wall: wall, Limits: lim})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if _, err := r.Update("feature", `{"id":"f`+strconv.Itoa(i)+`","layerId":"L1"}`, "properties.name", `"x"`); err != nil {
			t.Fatal(err)
		}
	}
	r.Flush()
	snap, err := r.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	back, err := NewReplicaFromSnapshot(Options{Wall: wall, Limits: lim}, snap)
	if err != nil {
		t.Fatalf("restore of 40 operations (maxBatch 10): %v", err)
	}
	if back.State() != r.State() {
		t.Error("the restored replica differs")
	}
	lim.MaxMessageBytes = len(snap) / 4
	r.opts.Limits = lim
	if _, err := r.Snapshot(); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a snapshot of %d bytes under a restore limit of %d: %v, want too_large", len(snap), 4*lim.MaxMessageBytes, err)
	}
}

// TestDefaultLimitsTakeAnImport: DESIGN §9, doc.go "Errors and limits": the default limits
// take a real import — a datalayer of thousands of features, as one batch of upserts
// (uMap's import) and as one datalayer value — and a peer with the same defaults takes
// what it sends.
func TestDefaultLimitsTakeAnImport(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	alice := kitReplica(t, "alice", wall)
	bob := kitReplica(t, "bob", wall)
	const n = 10_000
	feature := func(i int) string {
		return `{"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[2.3,48.8],[2.4,48.8],[2.4,48.9],[2.3,48.8]]]},` +
			`"properties":{"name":"feature ` + strconv.Itoa(i) + `","_umap_options":{"color":"DarkRed","weight":3}}}`
	}
	kitNoErr(t, alice.StartBatch())
	kitOK(t)(alice.Upsert("datalayer", `{"id":"L1"}`, `{"type":"FeatureCollection","features":[],"_umap_options":{"name":"import"}}`))
	for i := 0; i < n; i++ {
		kitOK(t)(alice.Upsert("feature", `{"id":"f`+strconv.Itoa(i)+`","layerId":"L1","featureType":"polygon"}`, feature(i)))
	}
	kitNoErr(t, alice.CommitBatch())
	var all strings.Builder
	all.WriteString(`{"type":"FeatureCollection","_umap_options":{"name":"whole"},"features":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			all.WriteByte(',')
		}
		all.WriteString(feature(i))
	}
	all.WriteString(`]}`)
	kitOK(t)(alice.Upsert("datalayer", `{"id":"L2"}`, all.String()))
	msgs := alice.Flush()
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want the batch and the datalayer", len(msgs))
	}
	kitDeliver(t, msgs, bob)
	kitSameState(t, alice, bob)
}
