package crdt

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mapcrdt/mapcrdt/hlc"
	"github.com/tidwall/gjson"
)

// kitRunErrs is kitRun that does not stop at a refused message: each error is kept (the
// message dropped, as a transport would), and routing goes on with the rest.
func kitRunErrs(t testing.TB, reps []*Replica, msgs [][]byte) (responses [][]byte, errs []error) {
	t.Helper()
	queue := slices.Clone(msgs)
	for n := 0; len(queue) > 0; n++ {
		if n > 200 {
			t.Fatal("sync does not end after 200 messages")
		}
		m := queue[0]
		queue = queue[1:]
		if gjson.GetBytes(m, "message.verb").String() == "ListOperationsResponse" {
			responses = append(responses, m)
		}
		to := gjson.GetBytes(m, "recipient").String()
		i := slices.IndexFunc(reps, func(r *Replica) bool { return r.PeerID() == to })
		if i < 0 {
			t.Fatalf("message to %q, who is not here", to)
		}
		res, err := reps[i].Receive(m)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		queue = append(queue, res.Replies...)
	}
	return responses, errs
}

// kitEarlier is a sync request or response as a replica of a version before
// "maxMessageBytes" writes it: its peer pages to its own limit.
func kitEarlier(msg []byte) []byte {
	return regexp.MustCompile(`"maxMessageBytes":[0-9]+,`).ReplaceAll(msg, nil)
}

// kitText is an update value: a JSON string of n bytes, quotes included.
func kitText(c string, n int) string { return `"` + strings.Repeat(c, n-2) + `"` }

// TestOperationLargerThanOwnEditsIsRefused: a peer configured with larger limits (alice)
// makes an operation larger than bob's own edits can be, whose page to bob still fits in
// the 4 KiB a PeerMessage may hold past bob's limit. bob took it, and could not page it to
// carol, a late joiner with bob's limits: his page around it, to carol's longer peer id,
// was past the limit + 4 KiB at every request, and carol never caught up. bob refuses it
// (too_large) and stays as he was; carol catches up from bob on all he holds.
func TestOperationLargerThanOwnEditsIsRefused(t *testing.T) {
	const limit = 16 << 10
	small := func(o *Options) { o.Limits.MaxMessageBytes = limit }
	large := func(o *Options) { o.Limits.MaxMessageBytes = 2 * limit }
	wall := hlc.NewManualClock(kitT0)
	alice := kitReplica(t, "a", wall, large)
	bob := kitReplica(t, "b", wall, small)
	carol := kitReplica(t, "carol-"+strings.Repeat("c", 100), wall, small)
	kitSet(t, alice, kitF2, "properties.n", "1")
	kitDeliver(t, alice.Flush(), bob)
	wall.Advance(1)
	kitSet(t, bob, kitF3, "properties.n", "2")
	kitDeliver(t, bob.Flush(), alice)

	// alice's large edit, then one after it in clock order, sized so that her page of it to
	// bob is as large as bob takes: the limit + 4 KiB.
	pageToBob := func() []byte {
		res := kitRecv(t, alice, kitEarlier(bob.SyncRequest("a")))
		return res.Replies[0]
	}
	n := limit + 1000
	var page []byte
	for range 5 {
		wall.Advance(1)
		kitOK(t)(alice.Update("feature", kitF1, "properties.t", kitText("x", n)))
		wall.Advance(1)
		kitSet(t, alice, kitF2, "properties.m", strconv.Itoa(n))
		alice.Flush()
		if page = pageToBob(); len(page) == limit+peerRoom {
			break
		}
		n += limit + peerRoom - len(page)
	}
	if len(page) != limit+peerRoom {
		t.Fatalf("alice's page to bob is %d bytes, want %d", len(page), limit+peerRoom)
	}
	if ops, _ := kitResponseOps(t, page); len(ops) != 1 || len(ops[0].value) != n {
		t.Fatalf("alice's page to bob holds %d operations, want her large edit alone", len(ops))
	}

	before, vv, logLen, interned := bob.State(), bob.Vector(), bob.LogLen(), kitInterned(bob)
	_, errs := kitRunErrs(t, []*Replica{alice, bob}, [][]byte{kitEarlier(bob.SyncRequest("a"))})
	if len(errs) != 1 || Code(errs[0]) != "too_large" {
		t.Errorf("bob receiving alice's page of an operation of %d bytes: %v, want one too_large", n, errs)
	}
	if bob.State() != before || !kitEqualVV(bob.Vector(), vv) || bob.LogLen() != logLen {
		t.Errorf("bob changed on a refused page: %s, %v, %d operations", bob.State(), bob.Vector(), bob.LogLen())
	}
	if got := kitInterned(bob); got != interned {
		t.Errorf("the refused page's keys stay interned: %+v, was %+v", got, interned)
	}

	// carol, with bob's limits, catches up from bob on everything he holds.
	responses, errs := kitRunErrs(t, []*Replica{bob, carol}, [][]byte{carol.SyncRequest("b")})
	if len(errs) != 0 {
		t.Errorf("carol catching up from bob: %v", errs)
	}
	kitSameState(t, bob, carol)
	for _, m := range responses {
		if len(m) > limit+peerRoom {
			t.Errorf("a response of %d bytes", len(m))
		}
	}
	kitWant(t, carol, "feature", kitF2, "properties.n", "1")
	kitWant(t, carol, "feature", kitF3, "properties.n", "2")
}

// TestOperationLargerThanOwnEditsInABatchIsRefused: the measure is the operation's text as
// each of its sub-operations would be written in a message, metadata repeated — not the
// compact page that carried it, which writes an object's metadata once. alice (larger
// limits) makes a batch of many small writes to one feature of long metadata: its page to
// bob is far below bob's limit, its text far over it. bob refuses it whole, as any
// message whose one operation is bad.
func TestOperationLargerThanOwnEditsInABatchIsRefused(t *testing.T) {
	const limit = 16 << 10
	wall := hlc.NewManualClock(kitT0)
	alice := kitReplica(t, "a", wall, func(o *Options) { o.Limits.MaxMessageBytes = 8 * limit })
	bob := kitReplica(t, "b", wall, func(o *Options) { o.Limits.MaxMessageBytes = limit })
	meta := `{"id":"f1","layerId":"L1","note":"` + strings.Repeat("m", 1000) + `"}`
	kitNoErr(t, alice.StartBatch())
	for i := range 40 {
		kitOK(t)(alice.Update("feature", meta, "properties.p"+strconv.Itoa(i), strconv.Itoa(i)))
	}
	kitNoErr(t, alice.CommitBatch())
	msgs := alice.Flush()
	if len(msgs) != 1 || len(msgs[0]) <= limit {
		t.Fatalf("alice's batch: %d messages", len(msgs))
	}
	before, interned := bob.State(), kitInterned(bob)
	responses, errs := kitRunErrs(t, []*Replica{alice, bob}, [][]byte{kitEarlier(bob.SyncRequest("a"))})
	if len(responses) == 0 || len(responses[0]) > limit/2 {
		t.Fatalf("alice's page to bob: %d responses, want one far below bob's limit", len(responses))
	}
	if len(errs) != 1 || Code(errs[0]) != "too_large" {
		t.Errorf("bob receiving alice's batch of %d bytes of text: %v, want one too_large", len(msgs[0]), errs)
	}
	if bob.State() != before || bob.LogLen() != 0 || len(bob.Vector()) != 0 {
		t.Errorf("bob changed on a refused page: %s", bob.State())
	}
	if got := kitInterned(bob); got != interned {
		t.Errorf("the refused page's peer ids and keys stay interned: %+v, was %+v", got, interned)
	}
	// The same batch within bob's limit is taken.
	carol := kitReplica(t, "c", wall, func(o *Options) { o.Limits.MaxMessageBytes = 8 * limit })
	kitNoErr(t, carol.StartBatch())
	for i := range 10 {
		kitOK(t)(carol.Update("feature", meta, "properties.q"+strconv.Itoa(i), strconv.Itoa(i)))
	}
	kitNoErr(t, carol.CommitBatch())
	carol.Flush()
	kitSync(t, bob, carol)
	kitSameState(t, bob, carol)
}

// TestHeldOperationTooLargeForPeersIsWithheld: a replica restored with smaller limits from
// the snapshot of one with larger limits (or of a build before the rule) holds an operation
// no peer of its limits takes. Its page went out at every request: past the limit + 4 KiB
// a late joiner refused it as a message too large, within it as an operation too large —
// the joiner never caught up with what followed it. It is left out of the pages, named in
// the page's "withheld", and never claimed by a vector: the joiner gets everything else,
// and its next sync ends too.
func TestHeldOperationTooLargeForPeersIsWithheld(t *testing.T) {
	const limit = 16 << 10
	small := func(o *Options) { o.Limits.MaxMessageBytes = limit }
	for _, over := range []int{2000, 8000} { // its page within the PeerMessage's 4 KiB past the limit, and past it
		wall := hlc.NewManualClock(kitT0)
		dave := kitReplica(t, "dave", wall, func(o *Options) { o.Limits.MaxMessageBytes = 2 * limit })
		kitSet(t, dave, kitF2, "properties.n", "1")
		wall.Advance(1)
		kitOK(t)(dave.Update("feature", kitF1, "properties.t", kitText("x", limit+over)))
		wall.Advance(1)
		kitSet(t, dave, kitF3, "properties.n", "3")
		dave.Flush()
		var big hlc.Timestamp
		for _, o := range dave.log.ops {
			if len(o.value) > limit {
				big = o.ts
			}
		}
		opts := DefaultOptions()
		opts.Wall = wall
		small(&opts)
		restored, err := NewReplicaFromSnapshot(opts, kitSnapshot(t, dave))
		if err != nil {
			t.Fatal(err)
		}
		kitSameState(t, dave, restored) // a snapshot's operations are kept

		carol := kitReplica(t, "carol", wall, small)
		responses, errs := kitRunErrs(t, []*Replica{restored, carol}, [][]byte{carol.SyncRequest("dave")})
		if len(errs) != 0 {
			t.Fatalf("%d bytes over: carol catching up: %v", over, errs)
		}
		kitWant(t, carol, "feature", kitF2, "properties.n", "1")
		kitWant(t, carol, "feature", kitF3, "properties.n", "3")
		kitWant(t, carol, "feature", kitF1, "properties.t", "")
		named := 0
		for _, m := range responses {
			if len(m) > limit+peerRoom {
				t.Errorf("%d bytes over: a response of %d bytes", over, len(m))
			}
			for _, w := range gjson.GetBytes(m, "message.withheld").Array() {
				if named++; w.String() != big.String() {
					t.Errorf("%d bytes over: withheld %s, want %s", over, w, big)
				}
			}
		}
		if named != 1 {
			t.Errorf("%d bytes over: the pages named %d operations withheld, want 1", over, named)
		}
		if got := carol.Vector()["dave"]; got >= 2 {
			t.Errorf("%d bytes over: carol's vector claims dave's seq %d, the one withheld is 2", over, got)
		}
		// The next sync ends too, and still leaves it out.
		if _, errs := kitRunErrs(t, []*Replica{restored, carol}, [][]byte{carol.SyncRequest("dave")}); len(errs) != 0 {
			t.Errorf("%d bytes over: carol's next sync: %v", over, errs)
		}
		kitWant(t, carol, "feature", kitF1, "properties.t", "")
	}
}

// TestOpTextLen: opTextLen counts what appendOp writes without a sender, and textBound is
// more than that, over operations of every kind (batches, unknown fields, own metadata, keys
// escaped, seq-less).
func TestOpTextLen(t *testing.T) {
	r, _ := kitRichReplica(t)
	wall := hlc.NewManualClock(kitT0)
	more := kitReplica(t, "zed", wall)
	kitRecv(t, more, []byte(`{"kind":"OperationMessage","sender":"u","verb":"batch","subject":"feature","metadata":{"id":"f9","layerId":"L1"},"x-batch":[1,2],"operations":[`+
		`{"verb":"update","subject":"feature","metadata":{"id":"f9","layerId":"L1","featureType":"marker"},"key":"properties.a\\\\.b\u0001","value":"\u0002\"","x":{"y":1}},`+
		`{"verb":"upsert","subject":"feature","metadata":{"id":"f8","layerId":"L1"},"value":{"type":"Feature"}},`+
		`{"verb":"delete","subject":"datalayer","metadata":{"id":"L3"}}],"hlc":"`+hlc.Timestamp{Wall: kitT0, Counter: 12, Peer: "u"}.String()+`","seq":7}`))
	kitNoErr(t, more.StartBatch())
	kitSet(t, more, kitF1, "properties.p", `[1,{"a":"\u0003"}]`)
	kitOK(t)(more.Upsert("feature", kitF2, `{"type":"Feature","properties":{}}`))
	kitNoErr(t, more.CommitBatch())
	more.Flush()
	ops := append(slices.Clone(r.log.ops), more.log.ops...)
	if len(ops) < 8 {
		t.Fatalf("%d operations", len(ops))
	}
	for _, o := range ops {
		text := appendOp(nil, o, "")
		if n := r.opTextLen(o, 1<<30); n != len(text) {
			t.Errorf("opTextLen %d, appendOp writes %d: %s", n, len(text), text)
		}
		if b := textBound(o); b < len(text) {
			t.Errorf("textBound %d, under the %d bytes of %s", b, len(text), text)
		}
	}
}

// TestSmallerAskerCatchesUpFromLargerResponder: alice (16 KiB messages) catching up from
// bob (64 KiB) on many small edits: bob paged to half his own limit, a page alice refused
// (too_large) at every request, and she never caught up. A request says the asker's
// limit ("maxMessageBytes"), and the pages are made to the smaller of the two.
func TestSmallerAskerCatchesUpFromLargerResponder(t *testing.T) {
	const limit = 16 << 10
	wall := hlc.NewManualClock(kitT0)
	alice := kitReplica(t, "alice", wall, func(o *Options) { o.Limits.MaxMessageBytes = limit })
	bob := kitReplica(t, "bob", wall, func(o *Options) { o.Limits.MaxMessageBytes = 4 * limit })
	for i := range 40 {
		wall.Advance(1)
		kitSet(t, bob, kitF1, "properties.p"+strconv.Itoa(i), kitText("v", 1000))
	}
	bob.Flush()
	responses, errs := kitRunErrs(t, []*Replica{alice, bob}, [][]byte{alice.SyncRequest("bob")})
	if len(errs) != 0 {
		t.Fatalf("alice catching up from bob: %v", errs)
	}
	kitSameState(t, alice, bob)
	for _, m := range responses {
		if len(m) > limit+peerRoom {
			t.Errorf("a response of %d bytes to alice", len(m))
		}
	}
	// The other way: bob asks alice, and pushes back his edits in pages alice takes.
	carol := kitReplica(t, "carol", wall, func(o *Options) { o.Limits.MaxMessageBytes = limit })
	if _, errs := kitRunErrs(t, []*Replica{carol, bob}, [][]byte{bob.SyncRequest("carol")}); len(errs) != 0 {
		t.Fatalf("bob's push-back to carol: %v", errs)
	}
	kitSameState(t, carol, bob)
}

// TestSmallerAskerGetsAllButAnOperationOverItsLimit: bob (64 KiB) holds an edit over
// alice's limit (16 KiB) between two she can take, all in one of his pages: alice refused
// the page whole at every request, and never got the edit after it. bob withholds it from
// her (named in "withheld", her vector below it), and she takes the rest.
func TestSmallerAskerGetsAllButAnOperationOverItsLimit(t *testing.T) {
	const limit = 16 << 10
	wall := hlc.NewManualClock(kitT0)
	alice := kitReplica(t, "alice", wall, func(o *Options) { o.Limits.MaxMessageBytes = limit })
	bob := kitReplica(t, "bob", wall, func(o *Options) { o.Limits.MaxMessageBytes = 4 * limit })
	kitSet(t, bob, kitF2, "properties.n", "1")
	wall.Advance(1)
	kitSet(t, bob, kitF1, "properties.t", kitText("x", limit+2000))
	wall.Advance(1)
	kitSet(t, bob, kitF3, "properties.n", "3")
	bob.Flush()
	for range 2 { // and the next sync too
		responses, errs := kitRunErrs(t, []*Replica{alice, bob}, [][]byte{alice.SyncRequest("bob")})
		if len(errs) != 0 {
			t.Fatalf("alice catching up from bob: %v", errs)
		}
		kitWant(t, alice, "feature", kitF2, "properties.n", "1")
		kitWant(t, alice, "feature", kitF3, "properties.n", "3")
		kitWant(t, alice, "feature", kitF1, "properties.t", "")
		named := 0
		for _, m := range responses {
			named += len(gjson.GetBytes(m, "message.withheld").Array())
		}
		if named != 1 {
			t.Errorf("the pages named %d operations withheld, want 1", named)
		}
		if got := alice.Vector()["bob"]; got >= 2 {
			t.Errorf("alice's vector claims bob's seq %d, the one withheld is 2", got)
		}
	}
}

// TestWithheldOperationsSupersededAreNotClaimed: bob (64 KiB) wrote a datalayer's
// properties.color, which carol (16 KiB, like alice) took live, then its properties whole,
// over their limit, superseding it. alice asks bob: he withholds the large write and does
// not send the one it superseded, yet his vector claimed both, and alice adopted it: she
// held neither, claimed both, and carol, who holds the color, never sent it to her —
// alice and carol, of the same limits, differed for good. A page naming operations
// withheld from its asker is taken without its vector.
func TestWithheldOperationsSupersededAreNotClaimed(t *testing.T) {
	const limit = 16 << 10
	small := func(o *Options) { o.Limits.MaxMessageBytes = limit }
	wall := hlc.NewManualClock(kitT0)
	bob := kitReplica(t, "bob", wall, func(o *Options) { o.Limits.MaxMessageBytes = 4 * limit })
	alice := kitReplica(t, "alice", wall, small)
	carol := kitReplica(t, "carol", wall, small)
	kitSet(t, bob, kitL1, "properties.color", "[1,2,3]")
	kitDeliver(t, bob.Flush(), carol)
	wall.Advance(1)
	kitSet(t, bob, kitL1, "properties", kitText("x", limit+2000))
	bob.Flush()
	if _, errs := kitRunErrs(t, []*Replica{alice, bob}, [][]byte{alice.SyncRequest("bob")}); len(errs) != 0 {
		t.Fatal(errs)
	}
	if got := alice.Vector()["bob"]; got != 0 {
		t.Errorf("alice's vector claims bob's seq %d; she holds none of his operations", got)
	}
	kitSync(t, alice, carol)
	kitSameState(t, alice, carol)
	kitWant(t, alice, "datalayer", kitL1, "properties.color", "[1,2,3]")
}
