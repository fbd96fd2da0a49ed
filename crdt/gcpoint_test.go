package crdt

import (
	"strconv"
	"testing"

	"github.com/mapcrdt/mapcrdt/hlc"
)

// TestLongCallsPassGCPoints: answering a catch-up (in both encodings), decoding and applying
// the answer, writing a snapshot and restoring one each pass a gcPoint every gcEvery
// operations — where, in wasm, a collection that started inside the call is finished
// (gcpoint_wasm.go).
func TestLongCallsPassGCPoints(t *testing.T) {
	points := 0
	defer func(f func()) { gcPoint = f }(gcPoint)
	gcPoint = func() { points++ }
	count := func(f func()) int {
		points = 0
		f()
		return points
	}

	wall := hlc.NewManualClock(kitT0)
	a := kitReplica(t, "a", wall)
	const n = 3000 // one path of each of n features
	for i := range n {
		meta := `{"id":"f` + strconv.Itoa(i) + `","layerId":"L1","featureType":"marker"}`
		kitOK(t)(a.Update("feature", meta, "properties.name", strconv.Quote(strconv.Itoa(i))))
	}
	a.Flush()
	per := n / gcEvery // the points one loop over the n operations passes
	requests := map[string][]byte{
		"compact": nil, // a mapcrdt peer's request, with its vector
		"uMap":    []byte(`{"kind":"PeerMessage","sender":"b","recipient":"a","message":{"verb":"ListOperationsRequest"}}`),
	}
	for name, req := range requests {
		b := kitReplica(t, "b", wall)
		if req == nil {
			req = b.SyncRequest("a")
		}
		var answer Result
		if got := count(func() { answer = kitRecv(t, a, req) }); got < per {
			t.Errorf("%s: answering passed %d points, want ≥ %d", name, got, per)
		}
		var caught Result
		// Decoding, applying, and making the changes: three loops over n.
		if got := count(func() { caught = kitRecv(t, b, answer.Replies[0]) }); got < 3*per {
			t.Errorf("%s: catching up passed %d points, want ≥ %d", name, got, 3*per)
		}
		if len(caught.Changes) != n {
			t.Fatalf("%s: %d changes, want %d", name, len(caught.Changes), n)
		}
	}

	var snap []byte
	if got := count(func() { snap = kitSnapshot(t, a) }); got < per {
		t.Errorf("Snapshot passed %d points, want ≥ %d", got, per)
	}
	// Decoding and applying.
	if got := count(func() { kitRestore(t, snap, wall) }); got < 2*per {
		t.Errorf("restoring passed %d points, want ≥ %d", got, 2*per)
	}
}
