package crdt_test

import (
	"bytes"
	"strconv"
	"testing"
	"unsafe"

	"github.com/mapcrdt/mapcrdt/crdt"
	"github.com/mapcrdt/mapcrdt/hlc"
)

// TestCallerBuffersNotKept: what the API documents as not retained — Receive's msg, an
// Edit's strings (views of a buffer the caller reuses), NewReplicaFromSnapshot's bytes,
// Merge's documents — can be overwritten by the caller once the call returns: the replica's
// state, messages, snapshot and results read the same as a replica's given fresh copies.
func TestCallerBuffersNotKept(t *testing.T) {
	wall := hlc.NewManualClock(1727184449000)
	newReplica := func(peer string) *crdt.Replica {
		r, err := crdt.NewReplica(crdt.Options{PeerID: peer, Wall: wall})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	scribble := func(b []byte) {
		for i := range b {
			b[i] = 'X'
		}
	}
	// view is a string sharing buf's bytes, as the wasm bridge passes its arguments.
	view := func(buf []byte, s string) string {
		buf = append(buf[:0], s...)
		return unsafe.String(unsafe.SliceData(buf), len(buf))
	}

	// Edits through views of one reused buffer; the twin gets fresh strings.
	alice, twin := newReplica("alice"), newReplica("alice")
	const meta = `{"featureType":"marker","id":"f1","layerId":"L1"}`
	edits := []crdt.Edit{
		{Verb: crdt.VerbUpsert, Subject: "feature", Metadata: meta, Value: `{"type":"Feature","properties":{"name":"one"}}`},
		{Verb: crdt.VerbUpdate, Subject: "feature", Metadata: meta, Key: `properties.a\.b`, Value: `{"deep":[1,2]}`, Group: "form"},
		{Verb: crdt.VerbUpdate, Subject: "feature", Metadata: meta, Key: "properties.c", Value: `"x"`, OldValue: `"old"`, Group: "form"},
		{Verb: crdt.VerbUpsert, Subject: "datalayer", Metadata: `{"id":"L1"}`, Value: `{"name":"layer"}`},
		{Verb: crdt.VerbDelete, Subject: "datalayer", Metadata: `{"id":"L2"}`},
	}
	bufs := make([][]byte, 5)
	for i := range bufs {
		bufs[i] = make([]byte, 0, 256)
	}
	for _, e := range edits {
		v := crdt.Edit{Verb: e.Verb, Subject: view(bufs[0], e.Subject), Metadata: view(bufs[1], e.Metadata),
			Key: view(bufs[2], e.Key), Value: view(bufs[3], e.Value), OldValue: view(bufs[4], e.OldValue), Group: e.Group}
		if _, err := alice.Apply(v); err != nil {
			t.Fatal(err)
		}
		if _, err := twin.Apply(e); err != nil {
			t.Fatal(err)
		}
		for _, b := range bufs {
			scribble(b[:cap(b)])
		}
	}
	same := func(what string, a, b *crdt.Replica) {
		t.Helper()
		if a.State() != b.State() {
			t.Fatalf("%s: state differs:\n%s\n%s", what, a.State(), b.State())
		}
		sa, err := a.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(sa, []byte("XXX")) {
			t.Fatalf("%s: the snapshot holds the scribbled buffer: %s", what, sa)
		}
	}
	same("edits", alice, twin)
	msgs := alice.Flush()
	if want := twin.Flush(); len(msgs) != len(want) {
		t.Fatalf("%d messages, the twin %d", len(msgs), len(want))
	}
	for i, m := range msgs {
		if bytes.Contains(m, []byte("XXX")) {
			t.Fatalf("message %d holds the scribbled buffer: %s", i, m)
		}
	}

	// Every kind of message received from one reused buffer; the twin gets copies.
	bob, bobTwin := newReplica("bob"), newReplica("bob")
	carol := newReplica("carol")
	in := append([]string(nil), func() []string {
		var s []string
		for _, m := range msgs {
			s = append(s, string(m))
		}
		return s
	}()...)
	in = append(in,
		`{"kind":"JoinResponse","peer":"bob","peers":["alice","bob"]}`,
		`{"kind":"ListPeersResponse","peers":{"relay":"Relay","alice":"Alice","bob":"Bob"}}`,
		string(alice.SavedMessage()),
	)
	res, err := alice.Receive(carol.SyncRequest("alice")) // a catch-up response, compact form
	if err != nil || len(res.Replies) != 1 {
		t.Fatal(err)
	}
	in = append(in, string(res.Replies[0]))
	buf := make([]byte, 0, 1<<12)
	for _, m := range in {
		buf = append(buf[:0], m...)
		if _, err := bob.Receive(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := bobTwin.Receive([]byte(m)); err != nil {
			t.Fatal(err)
		}
		scribble(buf[:cap(buf)])
	}
	if _, err := carol.Receive(append(buf[:0], res.Replies[0]...)); err != nil {
		t.Fatal(err)
	}
	scribble(buf[:cap(buf)])
	same("receive", bob, bobTwin)
	same("catch-up", carol, alice)
	if p := bob.Peers(); len(p) == 0 || bytes.Contains([]byte(p[0]), []byte("X")) {
		t.Fatalf("peers %q", p)
	}

	// A replica restored from a snapshot whose bytes are then overwritten.
	snap, err := alice.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	restored, err := crdt.NewReplicaFromSnapshot(crdt.Options{Wall: wall}, snap)
	if err != nil {
		t.Fatal(err)
	}
	want := string(snap)
	scribble(snap)
	again, err := restored.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(again, []byte("XXX")) || restored.State() != alice.State() {
		t.Fatalf("the restored replica changed with the snapshot's bytes:\n%s\nwas\n%s", again, want)
	}

	// Merge: its result keeps nothing of its documents.
	docs := []string{
		`{"type":"FeatureCollection","features":[{"type":"Feature","id":"1","properties":{"a":1,"b":"ref"}}]}`,
		`{"type":"FeatureCollection","features":[{"type":"Feature","id":"1","properties":{"a":2,"b":"ref"}}]}`,
		`{"type":"FeatureCollection","features":[{"type":"Feature","id":"1","properties":{"a":3,"b":"new"}}]}`,
	}
	b3 := make([][]byte, 3)
	for i, d := range docs {
		b3[i] = []byte(d)
	}
	got, err := crdt.Merge(b3[0], b3[1], b3[2], crdt.MergeLatestWins)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(got.Document)
	conflicts := string(crdt.AppendConflictsJSON(nil, got.Conflicts))
	for _, b := range b3 {
		scribble(b)
	}
	if string(got.Document) != doc || string(crdt.AppendConflictsJSON(nil, got.Conflicts)) != conflicts {
		t.Fatalf("the merge result changed with its documents:\n%s %s\nwas\n%s %s", got.Document, crdt.AppendConflictsJSON(nil, got.Conflicts), doc, conflicts)
	}
}

// TestOptionsSubjectsNotKept: NewReplica keeps its own copy of the subject table — a caller
// reusing the slices it passed (Options.Subjects, a Subject's IDFields) changes nothing.
func TestOptionsSubjectsNotKept(t *testing.T) {
	subjects := []crdt.Subject{{Name: "pin", IDFields: []string{"layer", "id"}}}
	r, err := crdt.NewReplica(crdt.Options{PeerID: "a", Subjects: subjects})
	if err != nil {
		t.Fatal(err)
	}
	const meta = `{"id":"p1","layer":"L1"}`
	if _, err := r.Update("pin", meta, "name", `"one"`); err != nil {
		t.Fatal(err)
	}
	subjects[0].IDFields[0], subjects[0].IDFields[1] = "other", "fields"
	subjects[0].Name = "renamed"
	if _, err := r.Update("pin", meta, "color", `"red"`); err != nil {
		t.Fatalf("after the caller reused its subject table: %v", err)
	}
	if got, want := r.State(), `[{"subject":"pin","metadata":{"id":"p1","layer":"L1"},"value":{"color":"red","name":"one"}}]`; got != want {
		t.Fatalf("state %s, want %s", got, want)
	}
}

// TestDistinctReplicasShareNothing: the Replica doc says distinct replicas may be used from
// goroutines of their own at once (the relay holds one per map). Under -race, any state the
// package shared between them would show here.
func TestDistinctReplicasShareNothing(t *testing.T) {
	const n = 4
	done := make(chan string, n)
	for g := range n {
		go func() {
			peer := "p" + strconv.Itoa(g)
			a, errA := crdt.NewReplica(crdt.Options{PeerID: peer + "a"})
			b, errB := crdt.NewReplica(crdt.Options{PeerID: peer + "b"})
			if errA != nil || errB != nil {
				done <- "NewReplica failed"
				return
			}
			meta := `{"id":"f` + strconv.Itoa(g) + `","layerId":"L1"}`
			for i := range 200 {
				if _, err := a.Update("feature", meta, "properties.n", strconv.Itoa(i)); err != nil {
					done <- err.Error()
					return
				}
				for _, m := range a.Flush() {
					if _, err := b.Receive(m); err != nil {
						done <- err.Error()
						return
					}
				}
			}
			if _, err := crdt.Merge([]byte(`{"type":"FeatureCollection","features":[]}`), []byte(`{"type":"FeatureCollection","features":[]}`), []byte(`{"type":"FeatureCollection","features":[]}`), crdt.MergeFail); err != nil {
				done <- err.Error()
				return
			}
			if _, err := a.Snapshot(); err != nil {
				done <- err.Error()
				return
			}
			a.Compact()
			if a.State() != b.State() {
				done <- "diverged"
				return
			}
			done <- ""
		}()
	}
	for range n {
		if msg := <-done; msg != "" {
			t.Error(msg)
		}
	}
}
