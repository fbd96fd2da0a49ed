package crdt

import (
	"runtime"
	"testing"
	"weak"
)

// TestLargeTextsAreNotKept: once a replica has received a large message (a catch-up, in
// both forms), nothing it keeps points into that text: the buffer is collected while the
// replica lives on; nor does a restored replica keep the snapshot's bytes. (The parser's reused member buffers
// kept their stale members, and with them the last text: in the wasm module, the
// bridge's input buffer of a catch-up, up to three times the message.)
func TestLargeTextsAreNotKept(t *testing.T) {
	w := kitBenchWorkload(t)
	collected := func(p weak.Pointer[byte]) bool {
		for range 4 {
			runtime.GC()
		}
		return p.Value() == nil
	}
	for _, form := range []string{"mapcrdt", "umap"} {
		joiner := kitReplica(t, "joiner-"+form, w.wall)
		req := joiner.SyncRequest(w.holder.PeerID())
		if form == "umap" {
			req = []byte(`{"kind":"PeerMessage","sender":"joiner-umap","recipient":"` + w.holder.PeerID() + `","message":{"verb":"ListOperationsRequest","lastKnownHLC":null}}`)
		}
		res, err := w.holder.Receive(req)
		if err != nil || len(res.Replies) != 1 {
			t.Fatalf("holder: %v", err)
		}
		msg := append(make([]byte, 0, len(res.Replies[0])), res.Replies[0]...)
		gone := weak.Make(&msg[0])
		if _, err := joiner.Receive(msg); err != nil {
			t.Fatal(err)
		}
		msg = nil
		if !collected(gone) {
			t.Errorf("%s: the replica keeps the %d-byte response it received", form, len(res.Replies[0]))
		}
		if joiner.State() != w.holder.State() {
			t.Fatalf("%s: the joiner did not catch up", form)
		}
		runtime.KeepAlive(joiner)
	}
	snap := append([]byte(nil), w.snap...)
	gone := weak.Make(&snap[0])
	r, err := NewReplicaFromSnapshot(Options{Wall: w.wall}, snap)
	if err != nil {
		t.Fatal(err)
	}
	snap = nil
	if !collected(gone) {
		t.Error("a restored replica keeps its snapshot")
	}
	runtime.KeepAlive(r)
}
