package crdt

// Sync (DESIGN §5, issue 3): the uMap failure cases as named tests, push-back, the version
// vector, superseded operations left out of responses, join handling, and the outbox
// (DESIGN §6, coalescing). The helpers named kit* are shared by the sync, undo, dirty,
// compact and snapshot tests.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mapcrdt/mapcrdt/hlc"
	"github.com/tidwall/gjson"
)

// kitT0 is 2024-09-24 in milliseconds, uMap's example clock.
const kitT0 int64 = 1_727_184_449_000

// Metadata of the objects the tests edit.
const (
	kitL1 = `{"id":"L1"}`
	kitL2 = `{"id":"L2"}`
	kitF1 = `{"id":"f1","layerId":"L1","featureType":"marker"}`
	kitF2 = `{"id":"f2","layerId":"L1","featureType":"marker"}`
	kitF3 = `{"id":"f3","layerId":"L2","featureType":"polygon"}`
)

func kitReplica(t testing.TB, peer string, wall hlc.WallClock, mod ...func(*Options)) *Replica {
	t.Helper()
	opts := DefaultOptions()
	opts.PeerID, opts.Wall = peer, wall
	for _, m := range mod {
		m(&opts)
	}
	r, err := NewReplica(opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func kitRecv(t testing.TB, r *Replica, msg []byte) Result {
	t.Helper()
	res, err := r.Receive(msg)
	if err != nil {
		t.Fatalf("%s receives %s: %v", r.PeerID(), msg, err)
	}
	return res
}

// kitOK fails the test on a local edit's error: kitOK(t)(r.Update(…)).
func kitOK(t testing.TB) func([]Change, error) {
	return func(_ []Change, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}

func kitNoErr(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func kitSet(t testing.TB, r *Replica, meta, key, value string) {
	t.Helper()
	sub := "feature"
	if !strings.Contains(meta, "layerId") {
		sub = "datalayer"
	}
	kitOK(t)(r.Update(sub, meta, key, value))
}

// kitDeliver hands every message to every replica, in order; replies are dropped.
func kitDeliver(t testing.TB, msgs [][]byte, to ...*Replica) {
	t.Helper()
	for _, r := range to {
		for _, m := range msgs {
			kitRecv(t, r, m)
		}
	}
}

// kitRoute delivers msgs, and every reply, to the replica named by each PeerMessage's
// recipient, until nothing is left. It returns how many messages were delivered.
func kitRoute(t testing.TB, reps []*Replica, msgs ...[]byte) int {
	t.Helper()
	n, _ := kitRun(t, reps, 200, msgs)
	return n
}

// kitRun is kitRoute, failing past limit messages; it also returns the
// ListOperationsResponses delivered, in order.
func kitRun(t testing.TB, reps []*Replica, limit int, msgs [][]byte) (n int, responses [][]byte) {
	t.Helper()
	queue := slices.Clone(msgs)
	for len(queue) > 0 {
		if n++; n > limit {
			t.Fatalf("sync does not end after %d messages", limit)
		}
		m := queue[0]
		queue = queue[1:]
		if gjson.GetBytes(m, "message.verb").String() == "ListOperationsResponse" {
			responses = append(responses, m)
		}
		to := gjson.GetBytes(m, "recipient").String()
		i := slices.IndexFunc(reps, func(r *Replica) bool { return r.PeerID() == to })
		if i < 0 {
			t.Fatalf("message to %q, who is not here: %s", to, m)
		}
		queue = append(queue, kitRecv(t, reps[i], m).Replies...)
	}
	return n, responses
}

// kitSync runs a full exchange started by a asking b.
func kitSync(t testing.TB, a, b *Replica) {
	t.Helper()
	kitRoute(t, []*Replica{a, b}, a.SyncRequest(b.PeerID()))
}

func kitGet(t testing.TB, r *Replica, sub, meta, key string) (string, bool) {
	t.Helper()
	v, ok, err := r.Get(sub, meta, key)
	if err != nil {
		t.Fatalf("%s: Get(%s, %s, %q): %v", r.PeerID(), sub, meta, key, err)
	}
	return v, ok
}

// kitWant checks the value at key ("" want: absent).
func kitWant(t testing.TB, r *Replica, sub, meta, key, want string) {
	t.Helper()
	got, ok := kitGet(t, r, sub, meta, key)
	switch {
	case want == "" && ok:
		t.Errorf("%s: %s %s %q = %s, want absent", r.PeerID(), sub, meta, key, got)
	case want != "" && !ok:
		t.Errorf("%s: %s %s %q absent, want %s", r.PeerID(), sub, meta, key, want)
	case want != "" && got != want:
		t.Errorf("%s: %s %s %q = %s, want %s", r.PeerID(), sub, meta, key, got, want)
	}
}

func kitSameState(t testing.TB, rs ...*Replica) {
	t.Helper()
	for _, r := range rs[1:] {
		if r.State() != rs[0].State() {
			t.Errorf("%s and %s differ\n%s: %s\n%s: %s", rs[0].PeerID(), r.PeerID(),
				rs[0].PeerID(), rs[0].State(), r.PeerID(), r.State())
		}
	}
}

// kitWireOp is one operation of a ListOperationsResponse, read independently of the engine.
type kitWireOp struct {
	hlc        hlc.Timestamp
	seq        uint64
	verb       string
	subject    string
	key, value string
	subs       int
}

// kitResponseOps reads the operations of a ListOperationsResponse PeerMessage, in either
// uMap's "operations" form or the compact "state" form (compact.go's format comment).
func kitResponseOps(t testing.TB, msg []byte) (ops []kitWireOp, compact bool) {
	t.Helper()
	inner := gjson.GetBytes(msg, "message")
	if v := inner.Get("verb").String(); v != "ListOperationsResponse" {
		t.Fatalf("not a ListOperationsResponse: %s", msg)
	}
	wire := func(o gjson.Result) kitWireOp {
		w := kitWireOp{verb: o.Get("verb").String(), subject: o.Get("subject").String(),
			key: o.Get("key").String(), value: o.Get("value").Raw, seq: o.Get("seq").Uint(),
			subs: len(o.Get("operations").Array())}
		if h := o.Get("hlc"); h.Exists() {
			ts, err := hlc.Parse(h.String())
			if err != nil {
				t.Fatalf("bad hlc in %s: %v", o.Raw, err)
			}
			w.hlc = ts
		}
		return w
	}
	if st := inner.Get("state"); st.Exists() {
		peers := st.Get("peers").Array()
		objs := st.Get("objects").Array()
		verbs := map[int64]string{1: "update", 2: "upsert", 3: "delete", 4: "batch"}
		var wall int64
		for _, el := range st.Get("ops").Array() {
			if el.IsObject() {
				ops = append(ops, wire(el))
				continue
			}
			a := el.Array()
			if len(a) < 6 {
				t.Fatalf("short compact operation %s", el.Raw)
			}
			wall += a[0].Int()
			w := kitWireOp{hlc: hlc.Timestamp{Wall: wall, Counter: uint32(a[1].Uint()), Peer: peers[a[2].Int()].String()},
				seq: a[3].Uint(), verb: verbs[a[4].Int()]}
			if w.verb == "batch" {
				w.subs = len(a[5].Array())
			} else {
				w.subject = objs[a[5].Int()].Array()[0].String()
				if w.verb == "update" {
					w.key = a[6].String()
					if len(a) > 7 {
						w.value = a[7].Raw
					}
				} else if w.verb == "upsert" {
					w.value = a[6].Raw
				}
			}
			ops = append(ops, w)
		}
		return ops, true
	}
	if !inner.Get("operations").IsArray() {
		t.Fatalf("response with neither state nor operations: %s", msg)
	}
	for _, o := range inner.Get("operations").Array() {
		ops = append(ops, wire(o))
	}
	return ops, false
}

func kitHLCs(ops []kitWireOp) []string {
	var out []string
	for _, o := range ops {
		out = append(out, o.hlc.String())
	}
	return out
}

func kitMsgHLC(t testing.TB, msg []byte) hlc.Timestamp {
	t.Helper()
	return hlc.MustParse(gjson.GetBytes(msg, "hlc").String())
}

// kitReplies splits replies into ListOperationsRequests and ListOperationsResponses.
func kitReplies(t testing.TB, res Result) (requests, responses [][]byte) {
	t.Helper()
	for _, m := range res.Replies {
		if k := gjson.GetBytes(m, "kind").String(); k != "PeerMessage" {
			t.Fatalf("reply of kind %q: %s", k, m)
		}
		switch v := gjson.GetBytes(m, "message.verb").String(); v {
		case "ListOperationsRequest":
			requests = append(requests, m)
		case "ListOperationsResponse":
			responses = append(responses, m)
		default:
			t.Fatalf("reply with verb %q: %s", v, m)
		}
	}
	return requests, responses
}

// TestStateAnswerNamesKnownObjectsByText: a state answer to a replica that knows its
// objects names each by the canonical text the replica keeps, and is found by it without
// being sorted again (identifyListed) — by subject too: a feature and a datalayer of one
// metadata text stay two objects.
func TestStateAnswerNamesKnownObjectsByText(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	a := kitReplica(t, "a", wall)
	b := kitReplica(t, "b", wall)
	const both = `{"id":"x","layerId":"L1"}` // canonical: what each keeps, what a's answer writes
	edit := func(sub, key, value string) {
		t.Helper()
		kitOK(t)(a.Update(sub, both, key, value))
	}
	edit("feature", "properties.name", `"feature 1"`)
	edit("datalayer", "name", `"layer 1"`)
	edit("feature", "properties.color", `"red"`)
	kitDeliver(t, a.Flush(), b) // b knows both objects
	wall.Advance(1000)
	edit("feature", "properties.name", `"feature 2"`)
	edit("datalayer", "name", `"layer 2"`)
	edit("datalayer", "color", `"blue"`)
	a.Flush() // lost: b catches up from a's answer

	_, responses := kitReplies(t, kitRecv(t, a, b.SyncRequest("a")))
	if len(responses) != 1 {
		t.Fatalf("%d responses", len(responses))
	}
	if ops, compact := kitResponseOps(t, responses[0]); !compact || len(ops) != 3 {
		t.Fatalf("answer: compact %v, %d operations; want the state form, 3", compact, len(ops))
	}
	if !bytes.Contains(responses[0], []byte(both)) {
		t.Fatalf("answer does not name the objects by their text: %s", responses[0])
	}
	for _, m := range kitRecv(t, b, responses[0]).Replies {
		kitRecv(t, a, m)
	}
	kitWant(t, b, "feature", both, "properties.name", `"feature 2"`)
	kitWant(t, b, "feature", both, "properties.color", `"red"`)
	kitWant(t, b, "feature", both, "color", "")
	kitWant(t, b, "datalayer", both, "name", `"layer 2"`)
	kitWant(t, b, "datalayer", both, "color", `"blue"`)
	kitSameState(t, a, b)
}

// TestSyncOfflineEditsWithOlderClocksReachLateJoiners is uMap's first failure case: carol
// edits offline with a wall clock behind everyone's; when she comes back her broadcast is
// lost and she syncs with bob only. Dave, who holds newer operations than carol's (so
// "operations since my last known clock" would skip hers), and erin, who joins late and
// empty, both sync with bob — who never saw carol's edits live — and get them.
func TestSyncOfflineEditsWithOlderClocksReachLateJoiners(t *testing.T) {
	wall := func(ms int64) *hlc.ManualClock { return hlc.NewManualClock(kitT0 + ms) }
	carolWall := wall(0)
	alice := kitReplica(t, "alice", wall(20_000))
	bob := kitReplica(t, "bob", wall(20_000))
	carol := kitReplica(t, "carol", carolWall)
	dave := kitReplica(t, "dave", wall(20_000))

	// Carol, offline, edits a key nobody else touches and a feature of her own.
	kitSet(t, carol, kitF1, "properties.name", `"carol's name"`)
	kitSet(t, carol, kitF3, "properties.color", `"green"`)
	carolWall.Advance(50)
	kitOK(t)(carol.Update("datalayer", kitL2, "name", `"carol's layer"`))

	// Alice and bob, online, edit with later clocks; dave receives everything live.
	kitSet(t, alice, kitF1, "properties.color", `"red"`)
	kitDeliver(t, alice.Flush(), bob, dave)
	kitSet(t, bob, kitF2, "properties.name", `"bob's"`)
	kitDeliver(t, bob.Flush(), alice, dave)

	// Carol reconnects: her broadcast reaches nobody, then she syncs with bob.
	fromCarol := carol.Flush()
	if len(fromCarol) != 3 {
		t.Fatalf("carol flushes %d messages, want 3", len(fromCarol))
	}
	kitSync(t, carol, bob)
	kitWant(t, bob, "feature", kitF1, "properties.name", `"carol's name"`)
	kitSameState(t, bob, carol)
	if _, ok := kitGet(t, alice, "feature", kitF3, "properties.color"); ok {
		t.Fatal("precondition: alice must not have carol's edits")
	}

	// Dave's last known clock is newer than every one of carol's operations.
	req := dave.SyncRequest("bob")
	last := hlc.MustParse(gjson.GetBytes(req, "message.lastKnownHLC").String())
	for _, m := range fromCarol {
		if ts := kitMsgHLC(t, m); !ts.Less(last) {
			t.Fatalf("precondition: carol's %s is not older than dave's lastKnownHLC %s", ts, last)
		}
	}
	kitRoute(t, []*Replica{dave, bob}, req)
	kitWant(t, dave, "feature", kitF1, "properties.name", `"carol's name"`)
	kitWant(t, dave, "feature", kitF3, "properties.color", `"green"`)
	kitWant(t, dave, "datalayer", kitL2, "name", `"carol's layer"`)
	kitSameState(t, bob, dave)
	if got := dave.Vector()["carol"]; got != 3 {
		t.Errorf("dave's vector holds carol:%d, want 3", got)
	}

	// Erin joins late and empty; the relay lists bob and erin herself.
	erin := kitReplica(t, "erin", wall(21_000))
	res := kitRecv(t, erin, []byte(`{"kind":"JoinResponse","uuid":"erin","peers":["bob","erin"]}`))
	if len(res.Replies) != 1 || gjson.GetBytes(res.Replies[0], "recipient").String() != "bob" {
		t.Fatalf("erin's join replies %q, want one sync request to bob", res.Replies)
	}
	kitRoute(t, []*Replica{erin, bob}, res.Replies...)
	kitSameState(t, bob, erin)
	kitWant(t, erin, "feature", kitF3, "properties.color", `"green"`)

	// Alice finally syncs with erin: all five hold the same state, the replay of everything.
	kitSync(t, alice, erin)
	kitSameState(t, alice, bob, carol, dave, erin)
	for _, r := range []*Replica{alice, bob, carol, dave, erin} {
		if vv := r.Vector(); vv["alice"] != 1 || vv["bob"] != 1 || vv["carol"] != 3 {
			t.Errorf("%s's vector %v, want alice:1 bob:1 carol:3", r.PeerID(), vv)
		}
	}
}

// TestSyncGapTriggersHeal: seq 3 arrives before seq 2. It is applied at once, the receiver
// asks the sender for what it lacks, and after the exchange the vector is contiguous.
func TestSyncGapTriggersHeal(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	alice := kitReplica(t, "alice", wall)
	bob := kitReplica(t, "bob", wall)
	var msgs [][]byte
	for i, key := range []string{"properties.name", "properties.color", "geometry"} {
		wall.Advance(10)
		kitSet(t, alice, kitF1, key, strconv.Quote("v"+strconv.Itoa(i+1)))
		msgs = append(msgs, alice.Flush()...)
	}
	if len(msgs) != 3 {
		t.Fatalf("%d messages, want 3", len(msgs))
	}
	if res := kitRecv(t, bob, msgs[0]); len(res.Replies) != 0 {
		t.Fatalf("seq 1 in order: replies %q, want none", res.Replies)
	}
	res := kitRecv(t, bob, msgs[2])
	kitWant(t, bob, "feature", kitF1, "geometry", `"v3"`) // applied despite the gap
	if len(res.Changes) != 1 || res.Changes[0].Key != "geometry" {
		t.Errorf("seq 3 after a gap: changes %+v, want geometry set", res.Changes)
	}
	reqs, resps := kitReplies(t, res)
	if len(reqs) != 1 || len(resps) != 0 {
		t.Fatalf("seq 3 after a gap: replies %q, want one ListOperationsRequest", res.Replies)
	}
	req := reqs[0]
	if to, from := gjson.GetBytes(req, "recipient").String(), gjson.GetBytes(req, "sender").String(); to != "alice" || from != "bob" {
		t.Errorf("gap request from %q to %q, want bob to alice", from, to)
	}
	if got := gjson.GetBytes(req, "message.vector.alice").Uint(); got != 1 {
		t.Errorf("gap request vector alice:%d, want 1 (seq 3 is not contiguous)", got)
	}
	if got := bob.Vector()["alice"]; got != 1 {
		t.Errorf("bob's vector alice:%d before the heal, want 1", got)
	}

	res = kitRecv(t, alice, req)
	reqs, resps = kitReplies(t, res)
	if len(resps) != 1 || len(reqs) != 0 {
		t.Fatalf("alice answers %q, want one response and nothing asked back", res.Replies)
	}
	ops, _ := kitResponseOps(t, resps[0])
	if !slices.ContainsFunc(ops, func(o kitWireOp) bool { return o.seq == 2 && o.key == "properties.color" }) {
		t.Errorf("the response lacks seq 2: %s", resps[0])
	}
	if slices.ContainsFunc(ops, func(o kitWireOp) bool { return o.seq == 1 }) {
		t.Errorf("the response repeats seq 1, which bob's vector covers: %s", resps[0])
	}
	res = kitRecv(t, bob, resps[0])
	if len(res.Replies) != 0 {
		t.Errorf("bob, holding nothing alice lacks, replies %q", res.Replies)
	}
	if got := bob.Vector()["alice"]; got != 3 {
		t.Errorf("bob's vector alice:%d after the heal, want 3", got)
	}
	kitWant(t, bob, "feature", kitF1, "properties.color", `"v2"`)
	kitSameState(t, alice, bob)

	// The next live operation is in order again: no request.
	kitSet(t, alice, kitF2, "properties.name", `"next"`)
	for _, m := range alice.Flush() {
		if res := kitRecv(t, bob, m); len(res.Replies) != 0 {
			t.Errorf("seq 4 after the heal: replies %q, want none", res.Replies)
		}
	}
	if got := bob.Vector()["alice"]; got != 4 {
		t.Errorf("bob's vector alice:%d, want 4", got)
	}
}

// TestSyncVectorAdvancesOnlyOverContiguousSeqs delivers seqs 2, 4, 1, 1, 3 and checks the
// vector after each.
func TestSyncVectorAdvancesOnlyOverContiguousSeqs(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	alice := kitReplica(t, "alice", wall)
	bob := kitReplica(t, "bob", wall)
	var msgs [][]byte
	for i := 0; i < 4; i++ {
		wall.Advance(1)
		kitSet(t, alice, kitF1, "properties.k"+strconv.Itoa(i), strconv.Itoa(i))
		msgs = append(msgs, alice.Flush()...)
	}
	for _, step := range []struct {
		seq  int
		want uint64
	}{{2, 0}, {4, 0}, {1, 2}, {1, 2}, {3, 4}} {
		kitRecv(t, bob, msgs[step.seq-1])
		if got := bob.Vector()["alice"]; got != step.want {
			t.Fatalf("after seq %d: vector alice:%d, want %d", step.seq, got, step.want)
		}
	}
	// A seq-less operation (uMap's plain Journal) changes no vector entry.
	kitRecv(t, bob, []byte(`{"kind":"OperationMessage","sender":"umap","verb":"update","subject":"feature","metadata":`+kitF2+
		`,"key":"properties.name","value":"x","hlc":"`+strconv.FormatInt(kitT0+100, 10)+`:0:umap"}`))
	if vv := bob.Vector(); len(vv) != 1 || vv["alice"] != 4 {
		t.Errorf("vector after a seq-less operation: %v, want only alice:4", vv)
	}
}

// TestSyncLastKnownHLCOnlyRequest: a peer running uMap's plain Journal asks with
// lastKnownHLC only; it gets, in uMap's "operations" form, every operation after that
// clock, in clock order — and nothing asked back.
func TestSyncLastKnownHLCOnlyRequest(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	alice := kitReplica(t, "alice", wall)
	bob := kitReplica(t, "bob", wall)
	umap := kitReplica(t, "umapjs", wall) // plays the Journal's side: holds what it had
	var all [][]byte
	edit := func(r *Replica, meta, key, value string) {
		wall.Advance(7)
		kitSet(t, r, meta, key, value)
		msgs := r.Flush()
		all = append(all, msgs...)
		other := alice
		if r == alice {
			other = bob
		}
		kitDeliver(t, msgs, other)
	}
	edit(alice, kitF1, "properties.name", `"a1"`)
	edit(bob, kitF2, "properties.name", `"b1"`)
	edit(alice, kitF1, "geometry", `{"type":"Point","coordinates":[2.35,48.85]}`)
	kitDeliver(t, all, umap)
	last := kitMsgHLC(t, all[len(all)-1])
	edit(bob, kitF2, "properties.color", `"blue"`)
	edit(alice, kitF3, "properties.name", `"a3"`)
	edit(bob, kitF1, "properties._umap_options.weight", `4`)
	wantAfter := kitHLCsOfMsgs(t, all[3:])

	req := []byte(`{"kind":"PeerMessage","sender":"umapjs","recipient":"alice","message":{"verb":"ListOperationsRequest","lastKnownHLC":"` + last.String() + `"}}`)
	res := kitRecv(t, alice, req)
	reqs, resps := kitReplies(t, res)
	if len(resps) != 1 || len(reqs) != 0 {
		t.Fatalf("replies %q, want exactly one ListOperationsResponse", res.Replies)
	}
	resp := resps[0]
	if to := gjson.GetBytes(resp, "recipient").String(); to != "umapjs" {
		t.Errorf("response to %q, want umapjs", to)
	}
	ops, compact := kitResponseOps(t, resp)
	if compact {
		t.Fatalf("a plain Journal's request answered in the compact form, want uMap's operations: %s", resp)
	}
	if got := kitHLCs(ops); !slices.Equal(got, wantAfter) {
		t.Errorf("operations after %s:\n got %q\nwant %q", last, got, wantAfter)
	}
	for _, o := range gjson.GetBytes(resp, "message.operations").Array() {
		for _, f := range []string{"verb", "subject", "metadata", "key", "value", "hlc"} {
			if !o.Get(f).Exists() {
				t.Errorf("operation without %q, which uMap's Journal reads: %s", f, o.Raw)
			}
		}
		if o.Get("metadata.layerId").String() == "" {
			t.Errorf("operation without its feature's metadata: %s", o.Raw)
		}
	}
	kitRecv(t, umap, resp)
	kitSameState(t, alice, umap)

	// No lastKnownHLC at all (or null): everything.
	for _, lk := range []string{``, `,"lastKnownHLC":null`} {
		req := []byte(`{"kind":"PeerMessage","sender":"umapjs","recipient":"alice","message":{"verb":"ListOperationsRequest"` + lk + `}}`)
		_, resps := kitReplies(t, kitRecv(t, alice, req))
		if len(resps) != 1 {
			t.Fatalf("request %s: %d responses", req, len(resps))
		}
		ops, _ := kitResponseOps(t, resps[0])
		if got := kitHLCs(ops); !slices.Equal(got, kitHLCsOfMsgs(t, all)) {
			t.Errorf("request %s:\n got %q\nwant %q", req, got, kitHLCsOfMsgs(t, all))
		}
	}
}

func kitHLCsOfMsgs(t testing.TB, msgs [][]byte) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, kitMsgHLC(t, m).String())
	}
	slices.SortFunc(out, func(a, b string) int { return hlc.MustParse(a).Compare(hlc.MustParse(b)) })
	return out
}

// TestSyncTwoWayExchangePushBack: alice asks bob; bob's response and alice's push-back are
// enough for both to hold the same state, the replay of every operation.
func TestSyncTwoWayExchangePushBack(t *testing.T) {
	wa, wb := hlc.NewManualClock(kitT0), hlc.NewManualClock(kitT0+3)
	alice := kitReplica(t, "alice", wa)
	bob := kitReplica(t, "bob", wb)
	or := newOracle(t)
	for i := 0; i < 5; i++ {
		wa.Advance(5)
		wb.Advance(5)
		kitSet(t, alice, kitF1, "properties.name", strconv.Quote("alice "+strconv.Itoa(i)))
		kitSet(t, alice, kitF2, "properties.k"+strconv.Itoa(i), `"a"`)
		kitSet(t, bob, kitF1, "properties.name", strconv.Quote("bob "+strconv.Itoa(i)))
		kitSet(t, bob, kitF3, "properties.k"+strconv.Itoa(i), `"b"`)
		kitSet(t, bob, kitL1, "name", strconv.Quote("layer "+strconv.Itoa(i)))
		for _, m := range append(alice.Flush(), bob.Flush()...) {
			or.add(m)
		}
	}
	kitOK(t)(bob.Delete("feature", kitF3)) // supersedes bob's own updates of f3
	for _, m := range bob.Flush() {
		or.add(m)
	}

	reqs, resps := kitReplies(t, kitRecv(t, bob, alice.SyncRequest("bob")))
	if len(resps) != 1 {
		t.Fatalf("bob answers with %d responses", len(resps))
	}
	rreqs, push := kitReplies(t, kitRecv(t, alice, resps[0]))
	if len(push) != 1 || len(rreqs) != 0 {
		t.Fatalf("alice, holding what bob lacks, replies %d requests and %d responses, want one push-back", len(rreqs), len(push))
	}
	if !gjson.GetBytes(push[0], "message.pushBack").Bool() {
		t.Errorf("push-back not marked: %s", push[0])
	}
	if res := kitRecv(t, bob, push[0]); len(res.Replies) != 0 {
		t.Errorf("a push-back is answered with %q, want nothing (no ping-pong)", res.Replies)
	}
	kitSameState(t, alice, bob)
	if got, want := norm(t, alice.State()), or.state(); got != want {
		t.Errorf("after the exchange:\n got %s\nwant %s", got, want)
	}
	if va, vb := alice.Vector(), bob.Vector(); va["alice"] != 10 || va["bob"] != 16 || vb["alice"] != 10 || vb["bob"] != 16 {
		t.Errorf("vectors alice %v bob %v, want alice:10 bob:16 on both", va, vb)
	}
	// Whatever else bob asked for changes nothing any more.
	before := alice.State()
	kitRoute(t, []*Replica{alice, bob}, reqs...)
	if alice.State() != before {
		t.Error("the rest of the exchange changed alice's state")
	}
	kitSameState(t, alice, bob)
}

// TestSyncResponseOmitsSupersededOps: operations whose every write is superseded are not
// sent, compacted or not, and the requester still converges with a complete vector.
func TestSyncResponseOmitsSupersededOps(t *testing.T) {
	for _, compacted := range []bool{false, true} {
		t.Run("compacted="+strconv.FormatBool(compacted), func(t *testing.T) {
			wall := hlc.NewManualClock(kitT0)
			alice := kitReplica(t, "alice", wall)
			var flushed [][]byte
			for i := 1; i <= 3; i++ {
				wall.Advance(10)
				kitSet(t, alice, kitF1, "properties.name", strconv.Quote("name "+strconv.Itoa(i)))
				flushed = append(flushed, alice.Flush()...)
			}
			wall.Advance(10)
			kitSet(t, alice, kitF1, "properties", `{"color":"red"}`) // covers properties.name
			kitSet(t, alice, kitF2, "properties.name", `"kept"`)
			flushed = append(flushed, alice.Flush()...)
			if compacted {
				if st := alice.Compact(); st.Ops != 3 {
					t.Errorf("Compact dropped %d operations, want 3", st.Ops)
				}
			}
			want := kitHLCsOfMsgs(t, flushed[3:])

			for _, form := range []string{"lastKnownHLC", "vector"} {
				bob := kitReplica(t, "bob", wall)
				req := bob.SyncRequest("alice")
				if form == "lastKnownHLC" {
					req = []byte(`{"kind":"PeerMessage","sender":"bob","recipient":"alice","message":{"verb":"ListOperationsRequest","lastKnownHLC":null}}`)
				}
				_, resps := kitReplies(t, kitRecv(t, alice, req))
				if len(resps) != 1 {
					t.Fatalf("%s: %d responses", form, len(resps))
				}
				ops, _ := kitResponseOps(t, resps[0])
				if got := kitHLCs(ops); !slices.Equal(got, want) {
					t.Errorf("%s: response holds %q, want only the live %q", form, got, want)
				}
				kitRecv(t, bob, resps[0])
				kitSameState(t, alice, bob)
				if form == "vector" {
					if got := bob.Vector()["alice"]; got != 5 {
						t.Errorf("bob's vector alice:%d, want 5 (superseded seqs are covered)", got)
					}
					wall.Advance(10)
					kitSet(t, alice, kitF1, "properties.name", `"after"`)
					for _, m := range alice.Flush() {
						if res := kitRecv(t, bob, m); len(res.Replies) != 0 {
							t.Errorf("seq 6 after a response without seqs 1-3: replies %q, want none", res.Replies)
						}
					}
					kitSameState(t, alice, bob)
				}
			}
		})
	}
}

// TestSyncJoinResponse: a JoinResponse makes a sync request to one of the listed peers,
// never to the replica itself; a ListPeersResponse updates the peers and probes the ones
// that were not listed before (TestSyncNewcomerIsProbed).
func TestSyncJoinResponse(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	r := kitReplica(t, "self", wall)
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		res := kitRecv(t, r, []byte(`{"kind":"JoinResponse","uuid":"self","peers":["a","self","b"]}`))
		if len(res.Replies) != 1 {
			t.Fatalf("JoinResponse replies %q, want one sync request", res.Replies)
		}
		m := res.Replies[0]
		to := gjson.GetBytes(m, "recipient").String()
		if to != "a" && to != "b" {
			t.Fatalf("sync request to %q, want a or b: %s", to, m)
		}
		seen[to] = true
		if gjson.GetBytes(m, "sender").String() != "self" || gjson.GetBytes(m, "message.verb").String() != "ListOperationsRequest" ||
			!gjson.GetBytes(m, "message.vector").IsObject() {
			t.Fatalf("not a ListOperationsRequest from self with a vector: %s", m)
		}
	}
	if !seen["a"] || !seen["b"] {
		t.Errorf("100 joins only asked %v", seen)
	}
	if got := r.Peers(); !slices.Equal(got, []string{"a", "self", "b"}) {
		t.Errorf("Peers() = %q", got)
	}
	if res := kitRecv(t, r, []byte(`{"kind":"JoinResponse","peers":["self"]}`)); len(res.Replies) != 0 {
		t.Errorf("alone: JoinResponse replies %q, want none", res.Replies)
	}
	if res := kitRecv(t, r, []byte(`{"kind":"JoinResponse","peers":[]}`)); len(res.Replies) != 0 {
		t.Errorf("no peers: JoinResponse replies %q, want none", res.Replies)
	}
	res := kitRecv(t, r, []byte(`{"kind":"ListPeersResponse","peers":["self","c","c"]}`))
	if len(res.Replies) != 1 || gjson.GetBytes(res.Replies[0], "recipient").String() != "c" ||
		!gjson.GetBytes(res.Replies[0], "message.pushBack").Bool() {
		t.Errorf("ListPeersResponse with a newcomer c (twice) replies %q, want one probe of c", res.Replies)
	}
	if res := kitRecv(t, r, []byte(`{"kind":"ListPeersResponse","peers":["self","c"]}`)); len(res.Replies) != 0 {
		t.Errorf("ListPeersResponse with no newcomer replies %q, want none", res.Replies)
	}
	if got := r.Peers(); !slices.Equal(got, []string{"self", "c"}) {
		t.Errorf("Peers() after ListPeersResponse = %q", got)
	}
	// A list of many newcomers (a misbehaving relay) is probed maxProbes at most.
	many := []string{"self", "c"}
	for i := 0; i < 100; i++ {
		many = append(many, fmt.Sprintf("n%d", i))
	}
	list, _ := json.Marshal(map[string]any{"kind": "ListPeersResponse", "peers": many})
	if res := kitRecv(t, r, list); len(res.Replies) != maxProbes {
		t.Errorf("ListPeersResponse with 100 newcomers: %d probes, want %d", len(res.Replies), maxProbes)
	} else if to := gjson.GetBytes(res.Replies[0], "recipient").String(); to != "n0" {
		t.Errorf("first probe to %q, want n0", to)
	}
	kitRecv(t, r, []byte(`{"kind":"ListPeersResponse","peers":["self","c"]}`))
	// SyncRequest("") picks a known peer, not self.
	for i := 0; i < 20; i++ {
		if to := gjson.GetBytes(r.SyncRequest(""), "recipient").String(); to != "c" {
			t.Fatalf("SyncRequest(\"\") to %q, want c", to)
		}
	}
	for _, bad := range []string{`{"kind":"JoinResponse"}`, `{"kind":"JoinResponse","peers":"a"}`, `{"kind":"JoinResponse","peers":[1]}`} {
		if _, err := r.Receive([]byte(bad)); Code(err) != "bad_message" {
			t.Errorf("%s: error %v, want bad_message", bad, err)
		}
	}
}

// TestSyncNewcomerIsProbed: carol edited offline and her messages were lost. When she
// joins, she syncs with one peer; the peers already there see her in the ListPeersResponse
// and each ask her, one way, for what she holds and they lack. Every replica ends with every
// edit, no later edit needed, and carol is caught up once, not once per peer present.
// (Without the probes, the peer carol did not ask lacks her edits: the test fails.)
func TestSyncNewcomerIsProbed(t *testing.T) {
	for _, page := range []int{0, 1} {
		t.Run(fmt.Sprint("page ", page), func(t *testing.T) {
			wall := hlc.NewManualClock(kitT0)
			alice := kitReplica(t, "alice", wall, kitPaged(page))
			bob := kitReplica(t, "bob", wall, kitPaged(page))
			carol := kitReplica(t, "carol", wall, kitPaged(page))
			for i := range 3 {
				kitSet(t, alice, fmt.Sprintf(`{"id":"a%d","layerId":"L"}`, i), "properties.name", `"by alice"`)
			}
			kitDeliver(t, alice.Flush(), bob)
			for i := range 2 {
				kitSet(t, bob, fmt.Sprintf(`{"id":"b%d","layerId":"L"}`, i), "properties.name", `"by bob"`)
				kitSet(t, carol, fmt.Sprintf(`{"id":"c%d","layerId":"L"}`, i), "properties.name", `"by carol"`)
			}
			kitDeliver(t, bob.Flush(), alice)
			_ = carol.Flush() // lost on the way
			alice.SetPeers([]string{"alice", "bob"})
			bob.SetPeers([]string{"alice", "bob"})

			peers := []byte(`{"kind":"ListPeersResponse","peers":["alice","bob","carol"]}`)
			msgs := kitRecv(t, carol, []byte(`{"kind":"JoinResponse","peer":"carol","peers":["alice","bob","carol"]}`)).Replies
			for _, r := range []*Replica{alice, bob} {
				probes := kitRecv(t, r, peers).Replies
				if len(probes) != 1 || gjson.GetBytes(probes[0], "recipient").String() != "carol" {
					t.Fatalf("%s probes %q, want one request to carol", r.PeerID(), probes)
				}
				msgs = append(msgs, probes...)
			}
			_, responses := kitRun(t, []*Replica{alice, bob, carol}, 200, msgs)
			kitSameState(t, alice, bob, carol)
			kitWant(t, alice, "feature", `{"id":"c1","layerId":"L"}`, "properties.name", `"by carol"`)
			kitWant(t, carol, "feature", `{"id":"a2","layerId":"L"}`, "properties.name", `"by alice"`)
			toCarol, fromCarol := 0, 0
			for _, m := range responses {
				ops, _ := kitResponseOps(t, m)
				switch gjson.GetBytes(m, "recipient").String() {
				case "carol":
					toCarol += len(ops)
				default:
					for _, o := range ops {
						if o.hlc.Peer != "carol" {
							t.Errorf("carol sent %s's operation %v: a probe is answered with what the asker lacks", o.hlc.Peer, o.hlc)
						}
					}
					fromCarol += len(ops)
				}
			}
			if toCarol != 5 {
				t.Errorf("carol received %d operations, want alice's 3 and bob's 2, once", toCarol)
			}
			// Her 2 to each of alice and bob, and to the peer she asked perhaps twice: her
			// push-back crosses that peer's probe.
			if fromCarol < 4 || fromCarol > 6 {
				t.Errorf("carol sent %d operations, want her 2 to each of alice and bob (and at most once more to one)", fromCarol)
			}
			if again := kitRecv(t, alice, peers).Replies; len(again) != 0 {
				t.Errorf("the same list again: replies %q, want none", again)
			}
		})
	}
}

// TestOutboxCoalescesOnePath: 100 updates of one path while disconnected leave as one
// message, the last value, seq 1.
func TestOutboxCoalescesOnePath(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	alice := kitReplica(t, "alice", wall)
	last := ""
	for i := 0; i < 100; i++ {
		wall.Advance(16)
		last = `{"type":"Point","coordinates":[` + strconv.Itoa(i) + `.5,48.85]}`
		kitSet(t, alice, kitF1, "geometry", last)
	}
	msgs := alice.Flush()
	if len(msgs) != 1 {
		t.Fatalf("Flush sends %d messages, want 1", len(msgs))
	}
	m := gjson.ParseBytes(msgs[0])
	if m.Get("key").String() != "geometry" || m.Get("value").Raw != `{"coordinates":[99.5,48.85],"type":"Point"}` || m.Get("seq").Int() != 1 {
		t.Errorf("the message is %s, want the last geometry with seq 1", msgs[0])
	}
	if alice.Pending() != 0 || len(alice.Flush()) != 0 {
		t.Error("the outbox is not empty after Flush")
	}
	bob := kitReplica(t, "bob", wall)
	if res := kitRecv(t, bob, msgs[0]); len(res.Replies) != 0 {
		t.Errorf("the coalesced message looks like a gap: %q", res.Replies)
	}
	kitSameState(t, alice, bob)
	kitWant(t, bob, "feature", kitF1, "geometry", `{"coordinates":[99.5,48.85],"type":"Point"}`)
}

// TestOutboxPendingCountsWhatFlushSends: Pending is what the next Flush sends — a drag of
// 100 positions waiting is one message waiting (DESIGN §6: writes to the same path waiting
// collapse into the last one).
func TestOutboxPendingCountsWhatFlushSends(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	alice := kitReplica(t, "alice", wall)
	if alice.Pending() != 0 {
		t.Fatalf("fresh replica: Pending %d", alice.Pending())
	}
	for i := 0; i < 5; i++ {
		kitSet(t, alice, kitF1, "properties.k"+strconv.Itoa(i), `1`)
		if got := alice.Pending(); got != i+1 {
			t.Fatalf("after %d edits of different paths: Pending %d", i+1, got)
		}
	}
	kitNoErr(t, alice.StartBatch())
	kitSet(t, alice, kitF2, "properties.name", `"in batch"`)
	kitSet(t, alice, kitF2, "properties.color", `"red"`)
	if got := alice.Pending(); got != 5 {
		t.Errorf("an open batch is not pending yet: Pending %d, want 5", got)
	}
	kitNoErr(t, alice.CommitBatch())
	if got := alice.Pending(); got != 6 {
		t.Errorf("after the commit: Pending %d, want 6", got)
	}
	if n := len(alice.Flush()); n != 6 || alice.Pending() != 0 {
		t.Errorf("Flush sent %d, Pending %d after, want 6 and 0", n, alice.Pending())
	}
	for i := 0; i < 100; i++ {
		wall.Advance(1)
		kitSet(t, alice, kitF1, "geometry", strconv.Itoa(i))
	}
	p := alice.Pending()
	if n := len(alice.Flush()); p != n {
		t.Errorf("100 updates of one path: Pending %d, but Flush sends %d", p, n)
	}
}

// TestOutboxDifferentPathsAllLeave: one message per path, in clock order, contiguous seqs.
func TestOutboxDifferentPathsAllLeave(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	alice := kitReplica(t, "alice", wall)
	keys := []string{"properties.name", "properties.color", "properties.description", "properties._umap_options.weight", "geometry"}
	var want []string
	for _, meta := range []string{kitF1, kitF2} {
		for _, k := range keys {
			wall.Advance(1)
			v := strconv.Quote(meta[7:9] + " " + k)
			kitSet(t, alice, meta, k, v)
			want = append(want, k+"="+v)
		}
	}
	msgs := alice.Flush()
	var got []string
	var prev hlc.Timestamp
	for i, m := range msgs {
		g := gjson.ParseBytes(m)
		got = append(got, g.Get("key").String()+"="+g.Get("value").Raw)
		if g.Get("seq").Int() != int64(i+1) {
			t.Errorf("message %d has seq %d", i, g.Get("seq").Int())
		}
		if ts := kitMsgHLC(t, m); !prev.Less(ts) {
			t.Errorf("message %d not in clock order", i)
		} else {
			prev = ts
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("Flush sent\n %q\nwant\n %q", got, want)
	}
	bob := kitReplica(t, "bob", wall)
	kitDeliver(t, msgs, bob)
	kitSameState(t, alice, bob)
}

// TestOutboxUpsertThenUpdates: what leaves after an upsert and updates of the same feature
// (and whole-object writes in between) rebuilds the same state on a fresh replica.
func TestOutboxUpsertThenUpdates(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	alice := kitReplica(t, "alice", wall)
	step := func() { wall.Advance(3) }
	kitOK(t)(alice.Upsert("feature", kitF1, `{"type":"Feature","geometry":{"type":"Point","coordinates":[1,2]},"properties":{"name":"new","color":"red"}}`))
	for i := 0; i < 5; i++ {
		step()
		kitSet(t, alice, kitF1, "properties.name", strconv.Quote("n"+strconv.Itoa(i)))
		kitSet(t, alice, kitF1, "geometry", `{"type":"Point","coordinates":[`+strconv.Itoa(i)+`,2]}`)
	}
	step()
	kitOK(t)(alice.Unset("feature", kitF1, "properties.color"))
	kitSet(t, alice, kitF1, "properties._umap_options.weight", `3`)
	kitOK(t)(alice.Upsert("feature", kitF2, `{"type":"Feature","properties":{"name":"second"}}`))
	kitSet(t, alice, kitF2, "properties.name", `"second, renamed"`)
	kitOK(t)(alice.Delete("feature", kitF2))
	kitOK(t)(alice.Upsert("feature", kitF3, `{"type":"Feature","properties":{"a":1}}`))
	kitSet(t, alice, kitF3, "properties", `{"b":2}`)
	kitSet(t, alice, kitF3, "properties.c", `3`)
	msgs := alice.Flush()
	bob := kitReplica(t, "bob", wall)
	kitDeliver(t, msgs, bob)
	kitSameState(t, alice, bob)
	if len(msgs) >= 19 {
		t.Errorf("%d messages for 19 edits: nothing coalesced", len(msgs))
	}

	// The same property over random edits: flush once, replay on a fresh replica.
	for seed := 0; seed < *seeds/10; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 3))
		w := hlc.NewManualClock(kitT0)
		a := kitReplica(t, "alice", w)
		or := newOracle(t)
		var all [][]byte
		for i := 0; i < 30; i++ {
			w.Advance(int64(rng.IntN(3)))
			randomEdit(t, rng, a)
			if rng.IntN(8) == 0 {
				all = append(all, a.Flush()...)
			}
		}
		all = append(all, a.Flush()...)
		b := kitReplica(t, "bob", w)
		for _, m := range all {
			or.add(m)
			if res := kitRecv(t, b, m); len(res.Replies) != 0 {
				t.Fatalf("seed %d: in-order messages look like a gap: %s", seed, res.Replies[0])
			}
		}
		if norm(t, a.State()) != or.state() || a.State() != b.State() {
			t.Fatalf("seed %d: what left does not rebuild the state\nalice %s\nbob   %s\nreplay %s", seed, a.State(), b.State(), or.state())
		}
	}
}

// TestOutboxBatchIsOneMessage: a batch leaves as one batch message, all its edits inside.
func TestOutboxBatchIsOneMessage(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	alice := kitReplica(t, "alice", wall)
	kitNoErr(t, alice.StartBatch())
	kitOK(t)(alice.Upsert("datalayer", kitL1, `{"name":"Layer"}`))
	kitOK(t)(alice.Upsert("feature", kitF1, `{"type":"Feature","properties":{}}`))
	kitSet(t, alice, kitF1, "properties.name", `"x"`)
	kitSet(t, alice, kitF2, "properties.name", `"y"`)
	kitNoErr(t, alice.CommitBatch())
	if alice.Pending() != 1 {
		t.Errorf("Pending %d after a batch, want 1", alice.Pending())
	}
	msgs := alice.Flush()
	if len(msgs) != 1 {
		t.Fatalf("a batch leaves as %d messages", len(msgs))
	}
	g := gjson.ParseBytes(msgs[0])
	if g.Get("verb").String() != "batch" || len(g.Get("operations").Array()) != 4 || g.Get("seq").Int() != 1 {
		t.Errorf("batch message %s, want verb batch, 4 operations, seq 1", msgs[0])
	}
	bob := kitReplica(t, "bob", wall)
	res := kitRecv(t, bob, msgs[0])
	kitSameState(t, alice, bob)
	if len(res.Changes) == 0 || res.Changes[0].Subject != "datalayer" {
		t.Errorf("changes %+v, want the datalayer first", res.Changes)
	}
	// An empty batch sends nothing.
	kitNoErr(t, alice.StartBatch())
	kitNoErr(t, alice.CommitBatch())
	if n := len(alice.Flush()); n != 0 {
		t.Errorf("an empty batch sent %d messages", n)
	}
}

// TestFlushAppendMatchesFlush: FlushAppend writes what Flush returns, separated by sep.
func TestFlushAppendMatchesFlush(t *testing.T) {
	wall := hlc.NewManualClock(t0)
	a, b := newTestReplica(t, "alice", wall), newTestReplica(t, "alice", wall)
	for _, r := range []*Replica{a, b} {
		for i := 0; i < 3; i++ {
			if _, err := r.Update("feature", `{"id":"f1","layerId":"L1"}`, "properties.n"+strconv.Itoa(i), strconv.Itoa(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := bytes.Join(a.Flush(), []byte{0x1E})
	got, n := b.FlushAppend([]byte("x"), 0x1E)
	if n != 3 || string(got) != "x"+string(want) {
		t.Fatalf("FlushAppend gave %d messages %q, want 3 %q", n, got, want)
	}
	if got, n := b.FlushAppend(nil, 0x1E); n != 0 || len(got) != 0 {
		t.Fatalf("a second FlushAppend sent %d messages", n)
	}
}

// scramble rewrites a JSON message as a page might send it: members in reverse order and
// whitespace everywhere, so that every object value is canonicalized on receive.
func scramble(t testing.TB, msg []byte) []byte {
	dec := json.NewDecoder(bytes.NewReader(msg))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	var out []byte
	var write func(v any)
	write = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			names := slices.Sorted(maps.Keys(v))
			slices.Reverse(names)
			out = append(out, "{ "...)
			for k, n := range names {
				if k > 0 {
					out = append(out, " , "...)
				}
				out = strconv.AppendQuote(out, n)
				out = append(out, " : "...)
				write(v[n])
			}
			out = append(out, " }"...)
		case []any:
			out = append(out, "[ "...)
			for k, e := range v {
				if k > 0 {
					out = append(out, " , "...)
				}
				write(e)
			}
			out = append(out, " ]"...)
		default:
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, b...)
		}
	}
	write(v)
	return out
}

// TestReceiveResultsAreTheCallers: the changes of successive Receive and Apply calls share
// a block (Receive) but no slot: every result keeps its changes through 40 later calls (the block
// runs out on the way), and what a caller appends to one stays, written over by no call.
func TestReceiveResultsAreTheCallers(t *testing.T) {
	r := newTestReplica(t, fuzzPeerA, fuzzWall())
	var kept, grown, applied [][]Change
	for i := range 40 {
		msg := `{"kind":"OperationMessage","verb":"update","subject":"feature","metadata":{"id":"f` + strconv.Itoa(i%7) +
			`","layerId":"L"},"key":"properties.n","value":` + strconv.Itoa(i) + `,"hlc":"` + stamp(20_000, uint32(i), "bob") + `","seq":` + strconv.Itoa(i+1) + `}`
		res, err := r.Receive([]byte(msg))
		if err != nil || len(res.Changes) != 1 {
			t.Fatalf("%d: %v %v", i, err, res.Changes)
		}
		kept = append(kept, res.Changes)
		// Apply cuts its changes from the same block.
		local, err := r.Update("feature", `{"id":"g`+strconv.Itoa(i)+`","layerId":"L"}`, "properties.n", strconv.Itoa(i))
		if err != nil || len(local) != 1 {
			t.Fatalf("%d: %v %v", i, err, local)
		}
		applied = append(applied, local)
		if i%3 == 0 { // the caller appends to its result
			grown = append(grown, append(res.Changes, Change{Kind: Set, Key: "mine"}))
		}
	}
	for i, cs := range applied {
		if len(cs) != 1 || cs[0].Value != strconv.Itoa(i) || cs[0].Metadata != `{"id":"g`+strconv.Itoa(i)+`","layerId":"L"}` {
			t.Fatalf("local result %d now holds %+v", i, cs)
		}
	}
	for i, cs := range grown {
		if len(cs) != 2 || cs[0].Value != strconv.Itoa(3*i) || cs[1].Key != "mine" {
			t.Fatalf("appended result %d now holds %+v", i, cs)
		}
	}
	for i, cs := range kept {
		if len(cs) != 1 || cs[0].Value != strconv.Itoa(i) || cs[0].Key != "properties.n" {
			t.Fatalf("result %d now holds %+v", i, cs)
		}
	}
}

// TestReceiveKeepsNothingOfItsInput: a replica that receives every message through one
// reused buffer, overwritten after each receive together with its parser's scratch text,
// ends exactly like one that received fresh copies — nothing kept points into either.
func TestReceiveKeepsNothingOfItsInput(t *testing.T) {
	for seed := 0; seed < 200; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 11))
		wall := hlc.NewManualClock(kitT0)
		var msgs [][]byte
		srcs := []*Replica{newTestReplica(t, "a", wall), newTestReplica(t, "b", wall)}
		for step := 0; step < 30; step++ {
			wall.Advance(int64(rng.IntN(3)))
			s := srcs[rng.IntN(len(srcs))]
			randomEdit(t, rng, s)
			if rng.IntN(4) == 0 { // a long value: past bulkLongText or not
				if _, err := s.Update("map", "{}", "properties.long"+strconv.Itoa(step), `"`+strings.Repeat("L", 600+rng.IntN(800))+`"`); err != nil {
					t.Fatal(err)
				}
			}
			if rng.IntN(3) == 0 {
				msgs = append(msgs, s.Flush()...)
			}
		}
		for _, s := range srcs {
			msgs = append(msgs, s.Flush()...)
		}
		// A sync response too, in the compact form, to the sinks, first: what they keep of
		// a's operations comes from it.
		joiner := newTestReplica(t, "sink", wall)
		msgs = append(recv(t, srcs[0], joiner.SyncRequest("a")).Replies, msgs...)
		fresh, reused := newTestReplica(t, "sink", wall), newTestReplica(t, "sink", wall)
		reused.session = fresh.session // twins: their responses carry it
		var buf []byte
		for _, m := range msgs {
			m = scramble(t, m)
			if _, err := fresh.Receive(slices.Clone(m)); err != nil {
				t.Fatalf("seed %d: %v\n%s", seed, err, m)
			}
			buf = append(buf[:0], m...)
			if _, err := reused.Receive(buf); err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			for i := range buf {
				buf[i] = 'x'
			}
			arena := reused.dec.arena[:cap(reused.dec.arena)]
			for i := range arena {
				arena[i] = 'x'
			}
		}
		if fresh.State() != reused.State() {
			t.Fatalf("seed %d: states differ\nfresh  %s\nreused %s", seed, fresh.State(), reused.State())
		}
		a, b := newTestReplica(t, "j1", wall), newTestReplica(t, "j1", wall)
		b.session = a.session // twins: the responses echo it
		ra, rb := recv(t, fresh, a.SyncRequest("sink")).Replies, recv(t, reused, b.SyncRequest("sink")).Replies
		if len(ra) != len(rb) || (len(ra) > 0 && !bytes.Equal(ra[0], rb[0])) {
			t.Fatalf("seed %d: logs differ\nfresh  %s\nreused %s", seed, ra, rb)
		}
		sa, err1 := fresh.Snapshot()
		sb, err2 := reused.Snapshot()
		if err1 != nil || err2 != nil || !bytes.Equal(sa, sb) {
			t.Fatalf("seed %d: snapshots differ (%v %v)", seed, err1, err2)
		}
	}
}

// TestBigResponseSkipsNotedValues: a sync response far above bigValue, in both formats,
// with big values inside (long strings, nested arrays), gives the holder's state; the
// memo of where its values end is used, then emptied, and a snapshot restored after it
// (its values walked by the same code) comes out whole.
func TestBigResponseSkipsNotedValues(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	holder := newTestReplica(t, "holder", wall)
	long := `"` + strings.Repeat(`x\"]}[{`, 5000) + `"`
	for f := 0; f < 400; f++ {
		meta := `{"id":"f` + strconv.Itoa(f) + `","layerId":"L1"}`
		must[[]Change](t)(holder.Update("feature", meta, "properties.name", `"n`+strconv.Itoa(f)+`"`))
		must[[]Change](t)(holder.Update("feature", meta, "geometry", `{"type":"LineString","coordinates":[[1,2],[3,4],[5,[6,[7]]]]}`))
		if f%100 == 0 {
			must[[]Change](t)(holder.Update("feature", meta, "properties.description", long))
		}
	}
	holder.Flush()
	for _, compact := range []bool{true, false} {
		joiner := newTestReplica(t, "joiner", wall)
		req := joiner.SyncRequest("holder")
		if !compact {
			req = umapRequest("joiner", "holder", "")
		}
		resp := recv(t, holder, req).Replies[0]
		if len(resp) < 4*bigValue {
			t.Fatalf("response of %d bytes: not big enough for the test", len(resp))
		}
		recv(t, joiner, resp)
		if joiner.State() != holder.State() {
			t.Fatalf("compact %v: the joiner's state differs", compact)
		}
		if len(joiner.dec.ends) != 0 {
			t.Fatalf("compact %v: %d ends left noted after the receive", compact, len(joiner.dec.ends))
		}
		snap := must[[]byte](t)(joiner.Snapshot())
		back, err := NewReplicaFromSnapshot(Options{PeerID: "joiner", Wall: wall}, snap)
		if err != nil || back.State() != holder.State() {
			t.Fatalf("compact %v: snapshot after a big receive: %v", compact, err)
		}
	}
}

// TestMessagesDamageThatParse: every message a replica sends, damaged so that it still
// parses (kitDamaged: each scalar replaced, each array element dropped) — the compact sync
// response a mapcrdt peer gets, the operation list uMap's Journal gets, a batch, a sync
// request, a SavedMessage, a JoinResponse — is refused with a typed error that changes
// nothing, or accepted; either way the receiver then works through every call
// (kitExercise). Compact responses name peers and objects by index: an index out of range
// must be an error, not a panic.
func TestMessagesDamageThatParse(t *testing.T) {
	alice, _ := kitRichReplica(t)
	asker := kitReplica(t, "zed", hlc.NewManualClock(kitT0+100_000))
	compact := kitRecv(t, alice, asker.SyncRequest("alice")).Replies[0]
	plain := kitRecv(t, alice, []byte(`{"kind":"PeerMessage","sender":"zed","recipient":"alice","message":{"verb":"ListOperationsRequest","lastKnownHLC":null}}`)).Replies[0]
	kitNoErr(t, alice.StartBatch())
	kitOK(t)(alice.Upsert("feature", kitF3, `{"type":"Feature","properties":{"name":"in a batch"}}`))
	kitOK(t)(alice.Delete("datalayer", kitL1))
	kitNoErr(t, alice.CommitBatch())
	batch := alice.Flush()[0]
	messages := map[string][]byte{
		"compact response": compact,
		"plain response":   plain,
		"batch":            batch,
		"sync request":     alice.SyncRequest("zed"),
		"saved message":    alice.SavedMessage(),
		"join response":    []byte(`{"kind":"JoinResponse","peer":"zed","peers":["alice","bob","zed"]}`),
	}
	fingerprint := func(r *Replica) string {
		return fmt.Sprint(r.State(), r.Pending(), r.CanUndo(), r.CanRedo(), r.InBatch(), r.Vector(), r.Peers(), r.Dirty(), r.LogLen())
	}
	for name, msg := range messages {
		refused, accepted := 0, 0
		for _, damaged := range kitDamaged(msg) {
			r := kitReplica(t, "zed", hlc.NewManualClock(kitT0+100_000))
			kitSet(t, r, kitF1, "properties.mine", `"zed's"`)
			before := fingerprint(r)
			_, err := r.Receive(damaged)
			if err != nil {
				if c := Code(err); c == "" || c == "internal" {
					t.Fatalf("%s damaged: untyped error %v\n%s", name, err, damaged)
				}
				if after := fingerprint(r); after != before {
					t.Fatalf("%s damaged: refused (%v) but the replica changed:\n%s\nwas\n%s\nmessage %s", name, err, after, before, damaged)
				}
				refused++
			} else {
				accepted++
			}
			t.Run(name, func(t *testing.T) { kitExercise(t, r) })
		}
		t.Logf("%s: %d damaged copies that parse, %d refused, %d accepted", name, refused+accepted, refused, accepted)
		if refused == 0 || refused+accepted < 20 {
			t.Errorf("%s: too few damaged copies refused (%d of %d)", name, refused, refused+accepted)
		}
	}
}

// kitPaged sets a replica's page of sync responses (Options.SyncPage).
func kitPaged(n int) func(*Options) { return func(o *Options) { o.SyncPage = n } }

// kitExchange runs the exchange msgs start between the replicas like kitRoute (up to 500
// messages: pages take many), and returns the ListOperationsResponses sent, in order.
func kitExchange(t testing.TB, reps []*Replica, msgs ...[]byte) [][]byte {
	t.Helper()
	_, responses := kitRun(t, reps, 500, msgs)
	return responses
}

// kitFrom keeps the messages sender sent.
func kitFrom(msgs [][]byte, sender string) (out [][]byte) {
	for _, m := range msgs {
		if gjson.GetBytes(m, "sender").String() == sender {
			out = append(out, m)
		}
	}
	return out
}

// TestSyncPagesACatchUp: a catch-up larger than a page (by operations, then by bytes)
// comes in pages, each answered with a request for the next, until the joiner holds it
// all. Before paging, a catch-up over the message limit was refused by the joiner
// (too_large), every time it asked: a map with more than 32 MiB of operations could not be
// joined at all.
func TestSyncPagesACatchUp(t *testing.T) {
	t.Run("operations", func(t *testing.T) {
		wall := hlc.NewManualClock(kitT0)
		holder := kitReplica(t, "holder", wall, kitPaged(4))
		for i := range 25 {
			wall.Advance(1)
			kitSet(t, holder, `{"id":"f`+strconv.Itoa(i)+`","layerId":"L1"}`, "properties.name", strconv.Quote("n"+strconv.Itoa(i)))
		}
		holder.Flush()
		joiner := kitReplica(t, "joiner", wall)
		resps := kitExchange(t, []*Replica{joiner, holder}, joiner.SyncRequest("holder"))
		if len(resps) != 7 {
			t.Errorf("%d responses, want 7 pages of at most 4 operations", len(resps))
		}
		var seen []string
		for i, m := range resps {
			ops, compact := kitResponseOps(t, m)
			more := gjson.GetBytes(m, "message.more")
			if !compact || len(ops) > 4 || len(ops) == 0 || more.Exists() != (i < len(resps)-1) {
				t.Errorf("page %d: %d operations (compact %v), more %s: %s", i, len(ops), compact, more.Raw, m)
			}
			if more.Exists() && more.String() != ops[len(ops)-1].hlc.String() {
				t.Errorf("page %d: more %s, not the clock of its last operation", i, more.Raw)
			}
			// The vector claims only what this page and the ones before brought.
			if got, want := gjson.GetBytes(m, "message.vector.holder").Uint(), uint64(min(25, 4*(i+1))); got != want {
				t.Errorf("page %d: vector holder:%d, want %d", i, got, want)
			}
			seen = append(seen, kitHLCs(ops)...)
		}
		if !slices.IsSorted(seen) || len(slices.Compact(slices.Clone(seen))) != 25 {
			t.Errorf("the pages brought %d operations (%v), want each of the 25 once, in order", len(seen), seen)
		}
		kitSameState(t, holder, joiner)
		if !vectorsEqual(joiner.Vector(), holder.Vector()) {
			t.Errorf("vectors %v and %v", joiner.Vector(), holder.Vector())
		}
	})
	t.Run("bytes", func(t *testing.T) {
		wall := hlc.NewManualClock(kitT0)
		small := func(o *Options) { o.Limits = DefaultLimits(); o.Limits.MaxMessageBytes = 8 << 10 }
		holder := kitReplica(t, "holder", wall, small)
		big := strconv.Quote(strings.Repeat("x", 1000))
		for i := range 40 {
			wall.Advance(1)
			kitSet(t, holder, `{"id":"f`+strconv.Itoa(i)+`","layerId":"L1"}`, "properties.text", big)
		}
		holder.Flush()
		joiner := kitReplica(t, "joiner", wall, small)
		resps := kitExchange(t, []*Replica{joiner, holder}, joiner.SyncRequest("holder"))
		for i, m := range resps {
			if len(m) > 8<<10 {
				t.Errorf("page %d: %d bytes, over the 8 KiB a message may take", i, len(m))
			}
		}
		if len(resps) < 6 {
			t.Errorf("%d responses for 40 KB of operations and 4 KiB pages", len(resps))
		}
		kitSameState(t, holder, joiner)
	})
}

// kitHole has a peer make six edits, and delivers all but the second (seq 2) to reps. It
// returns the peer and its six messages.
func kitHole(t testing.TB, wall *hlc.ManualClock, reps ...*Replica) (*Replica, [][]byte) {
	t.Helper()
	peer := kitReplica(t, "peer", wall)
	var msgs [][]byte
	for i := range 6 {
		wall.Advance(1)
		kitSet(t, peer, kitF1, "properties.k"+strconv.Itoa(i), strconv.Itoa(i))
		msgs = append(msgs, peer.Flush()...)
	}
	for _, r := range reps {
		for i, m := range msgs {
			if i != 1 {
				kitRecv(t, r, m)
			}
		}
	}
	return peer, msgs
}

// TestSyncPagesPastAHole: the holder lacks one of a peer's operations (seq 2), so the
// joiner's vector cannot move past it whatever the pages bring. The pages go on from the
// last clock sent (the request's "after"), not from the vector, and end; the joiner claims
// nothing past the hole, and gets seq 2 from the holder's next answer once it has it.
func TestSyncPagesPastAHole(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	holder := kitReplica(t, "holder", wall, kitPaged(1))
	peer, msgs := kitHole(t, wall, holder)
	joiner := kitReplica(t, "joiner", wall)
	resps := kitFrom(kitExchange(t, []*Replica{joiner, holder}, joiner.SyncRequest("holder")), "holder")
	if len(resps) != 5 {
		t.Errorf("%d responses, want one page for each of the 5 operations", len(resps))
	}
	kitSameState(t, holder, joiner)
	if got := joiner.Vector()["peer"]; got != 1 {
		t.Errorf("the joiner's vector peer:%d, want 1: seq 2 never reached it", got)
	}
	kitRecv(t, holder, msgs[1])
	kitExchange(t, []*Replica{joiner, holder}, joiner.SyncRequest("holder"))
	kitSameState(t, holder, joiner, peer)
	if got := joiner.Vector()["peer"]; got != 6 {
		t.Errorf("the joiner's vector peer:%d after the hole is filled, want 6", got)
	}
}

// TestSyncPageVectorClaimsNothingSkipped: an operation that reaches the holder between two
// pages, with a clock older than the pages sent so far, is not in the next pages (they go
// on from the last clock sent): the vector sent with them does not claim it, so the joiner
// asks for it again — and gets it — at its next sync.
func TestSyncPageVectorClaimsNothingSkipped(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	holder := kitReplica(t, "holder", wall, kitPaged(2))
	for i := range 6 {
		wall.Advance(10)
		kitSet(t, holder, kitF1, "properties.k"+strconv.Itoa(i), strconv.Itoa(i))
	}
	holder.Flush()
	// A peer whose wall clock is behind: its edit's clock is older than the holder's.
	late := kitReplica(t, "late", hlc.NewManualClock(kitT0+5))
	kitSet(t, late, kitF2, "properties.late", `"late"`)
	lateMsg := late.Flush()[0]

	joiner := kitReplica(t, "joiner", wall)
	first := kitRecv(t, holder, joiner.SyncRequest("holder")).Replies[0]
	next := kitRecv(t, joiner, first).Replies
	if len(next) != 1 {
		t.Fatalf("the first page is answered with %q, want one request", next)
	}
	kitRecv(t, holder, lateMsg)
	kitExchange(t, []*Replica{joiner, holder}, next...)
	if got := joiner.Vector()["late"]; got != 0 {
		t.Errorf("the joiner's vector late:%d, but the pages never brought late's edit", got)
	}
	if _, ok := kitGet(t, joiner, "feature", kitF2, "properties.late"); ok {
		t.Fatal("the late edit reached the joiner: the test does not test what it says")
	}
	kitExchange(t, []*Replica{joiner, holder}, joiner.SyncRequest("holder"))
	kitWant(t, joiner, "feature", kitF2, "properties.late", `"late"`)
	kitSameState(t, holder, joiner)
}

// TestSyncPagesBothWays: each side holds more than a page the other lacks. The joiner takes
// the holder's pages, then pushes its own back, in pages too: the holder asks for each next
// one. Both end equal.
func TestSyncPagesBothWays(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	holder := kitReplica(t, "holder", wall, kitPaged(3))
	joiner := kitReplica(t, "joiner", wall, kitPaged(3))
	for i := range 10 {
		wall.Advance(1)
		kitSet(t, holder, `{"id":"h`+strconv.Itoa(i)+`","layerId":"L1"}`, "properties.name", `"h"`)
		kitSet(t, joiner, `{"id":"j`+strconv.Itoa(i)+`","layerId":"L1"}`, "properties.name", `"j"`)
	}
	holder.Flush()
	joiner.Flush()
	resps := kitExchange(t, []*Replica{joiner, holder}, joiner.SyncRequest("holder"))
	for _, m := range resps {
		if ops, _ := kitResponseOps(t, m); len(ops) > 3 {
			t.Errorf("a page of %d operations: %s", len(ops), m)
		}
	}
	// The holder asks nothing back: the joiner pushes back after the last page, and each
	// side's operations go once.
	if n := len(kitFrom(resps, "joiner")); n != 4 {
		t.Errorf("the joiner sent %d responses, want its 10 operations in 4 pages", n)
	}
	if n := len(kitFrom(resps, "holder")); n != 4 {
		t.Errorf("the holder sent %d responses, want its 10 operations in 4 pages", n)
	}
	kitSameState(t, holder, joiner)
	if !vectorsEqual(joiner.Vector(), holder.Vector()) {
		t.Errorf("vectors %v and %v", joiner.Vector(), holder.Vector())
	}
}

// TestSyncPagesSeqlessOperations: operations of uMap's plain Journal carry no seq, so no
// vector says who holds them; a mapcrdt peer gets all of them, and pages them by clock.
func TestSyncPagesSeqlessOperations(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	holder := kitReplica(t, "holder", wall, kitPaged(2))
	for i := range 7 {
		wall.Advance(1)
		kitRecv(t, holder, []byte(`{"kind":"OperationMessage","sender":"umap","verb":"update","subject":"feature","metadata":`+kitF1+
			`,"key":"properties.k`+strconv.Itoa(i)+`","value":1,"hlc":"`+hlc.Timestamp{Wall: wall.NowMillis(), Peer: "umap"}.String()+`"}`))
	}
	joiner := kitReplica(t, "joiner", wall)
	resps := kitFrom(kitExchange(t, []*Replica{joiner, holder}, joiner.SyncRequest("holder")), "holder")
	if len(resps) != 4 {
		t.Errorf("%d responses, want 7 operations in 4 pages", len(resps))
	}
	kitSameState(t, holder, joiner)
}

// TestSyncPagesEndWhenBothLackTheSame: two replicas lack the same operation of a peer
// (seq 2) and hold the ones after it, which their vectors cannot say: each pushes them back
// to the other after the last page it gets. A push-back in pages stays a push-back to its
// last page, which gets none in return; before, the two sent each other those operations
// forever.
func TestSyncPagesEndWhenBothLackTheSame(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	a := kitReplica(t, "a", wall, kitPaged(1))
	b := kitReplica(t, "b", wall, kitPaged(1))
	kitHole(t, wall, a, b)
	kitExchange(t, []*Replica{a, b}, a.SyncRequest("b")) // fails if it does not end
	kitSameState(t, a, b)
}

// TestSyncPageOptions: a negative page is refused; zero is the default.
func TestSyncPageOptions(t *testing.T) {
	if _, err := NewReplica(Options{SyncPage: -1}); !errors.Is(err, ErrBadOption) {
		t.Errorf("SyncPage -1: %v, want bad_option", err)
	}
	r, err := NewReplica(Options{})
	if err != nil || r.opts.SyncPage != DefaultSyncPage {
		t.Errorf("SyncPage 0: %v, page %d", err, r.opts.SyncPage)
	}
}

// TestSyncVectorCountsTheOriginNotTheSender: DESIGN §5 — the peer of an operation is the id
// inside its hlc, not the envelope's sender, which a relay or a catch-up changes. alice's
// operations reach bob with sender "relay", and then in carol's catch-up response: bob's
// vector counts them for alice only, a gap among them is asked of the sender that passed it
// on, and alice's own answer to bob is then the vector's to judge, not the sender's.
func TestSyncVectorCountsTheOriginNotTheSender(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	alice := kitReplica(t, "alice", wall)
	bob := kitReplica(t, "bob", wall)
	carol := kitReplica(t, "carol", wall)
	var msgs [][]byte
	for i := range 3 {
		wall.Advance(10)
		kitSet(t, alice, kitF1, "properties.k"+strconv.Itoa(i), strconv.Itoa(i))
		msgs = append(msgs, alice.Flush()...)
	}
	kitDeliver(t, msgs, carol)
	relayed := func(m []byte) []byte {
		out := bytes.Replace(m, []byte(`"sender":"alice"`), []byte(`"sender":"relay"`), 1)
		if bytes.Equal(out, m) {
			t.Fatalf("no sender to replace in %s", m)
		}
		return out
	}

	res := kitRecv(t, bob, relayed(msgs[1])) // seq 2 first: a gap in alice's seqs
	reqs, _ := kitReplies(t, res)
	if len(reqs) != 1 || gjson.GetBytes(reqs[0], "recipient").String() != "relay" {
		t.Fatalf("a gap in what the relay passed on: replies %q, want one request to the relay", res.Replies)
	}
	if vv := bob.Vector(); len(vv) != 0 {
		t.Errorf("after seq 2 alone: vector %v, want empty", vv)
	}
	kitRecv(t, bob, relayed(msgs[0]))
	if vv := bob.Vector(); len(vv) != 1 || vv["alice"] != 2 {
		t.Errorf("after seqs 1 and 2 from the relay: vector %v, want only alice:2", vv)
	}

	// carol answers bob's request: alice's seq 3 in carol's envelope counts for alice.
	res = kitRecv(t, carol, bob.SyncRequest("carol"))
	_, resps := kitReplies(t, res)
	if len(resps) != 1 {
		t.Fatalf("carol answers %q, want one response", res.Replies)
	}
	kitRecv(t, bob, resps[0])
	if vv := bob.Vector(); len(vv) != 1 || vv["alice"] != 3 {
		t.Errorf("after carol's catch-up: vector %v, want only alice:3", vv)
	}
	kitSameState(t, alice, bob)

	// What bob asks alice now names her seqs as held: her answer carries none of them.
	res = kitRecv(t, alice, bob.SyncRequest("alice"))
	_, resps = kitReplies(t, res)
	if len(resps) != 1 {
		t.Fatalf("alice answers %q, want one response", res.Replies)
	}
	if ops, _ := kitResponseOps(t, resps[0]); len(ops) != 0 {
		t.Errorf("alice sends bob %d operations his vector holds: %s", len(ops), resps[0])
	}
}

// TestReceiveSameClockTwoContents: two different operations under one clock (a faulty
// peer) are not told apart — the first one a replica receives is kept, and the second
// changes nothing there (doc.go, "Tie-break").
func TestReceiveSameClockTwoContents(t *testing.T) {
	op := func(value string) []byte {
		return []byte(`{"kind":"OperationMessage","sender":"mallory","verb":"update","subject":"feature","metadata":` + kitF1 +
			`,"key":"properties.name","value":` + value + `,"hlc":"` + strconv.FormatInt(kitT0, 10) + `:0:mallory","seq":1}`)
	}
	for _, first := range []string{`"one"`, `"two"`} {
		second := `"two"`
		if first == second {
			second = `"one"`
		}
		r := kitReplica(t, "alice", hlc.NewManualClock(kitT0))
		kitRecv(t, r, op(first))
		if res := kitRecv(t, r, op(second)); len(res.Changes) != 0 {
			t.Errorf("the second content under the same clock changed %v", res.Changes)
		}
		kitWant(t, r, "feature", kitF1, "properties.name", first)
	}
}

// TestBatchTakesItsClockAtItsFirstEdit: doc.go: a local batch takes its clock at its first
// edit — not when it opens, not at its last edit.
func TestBatchTakesItsClockAtItsFirstEdit(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	alice := kitReplica(t, "alice", wall)
	kitNoErr(t, alice.StartBatch())
	wall.Advance(100)
	kitSet(t, alice, kitF1, "properties.a", `1`)
	wall.Advance(100)
	kitSet(t, alice, kitF2, "properties.b", `2`)
	kitNoErr(t, alice.CommitBatch())
	msgs := alice.Flush()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want the batch's one", len(msgs))
	}
	if got, want := kitMsgHLC(t, msgs[0]), (hlc.Timestamp{Wall: kitT0 + 100, Peer: "alice"}); got != want {
		t.Errorf("batch clock %s, want %s (its first edit's)", got, want)
	}
}

// TestSyncCarriesTheLargestEditPastManyOrigins: the largest edit reaches a late joiner, and
// the late joiner's goes back in its push-back, when the vector is more than the 4 KiB a
// PeerMessage may hold past the limit (here 100 origins of a UUID's length: a map edited over
// time by many sessions). A page of that edit and the vector was refused at every request:
// the joiner never got the edit, nor anything after it in clock order. The page goes
// without a vector, and the vector follows in the next.
func TestSyncCarriesTheLargestEditPastManyOrigins(t *testing.T) {
	const limit = 4096
	small := func(o *Options) { o.Limits.MaxMessageBytes = limit }
	wall := hlc.NewManualClock(kitT0)
	largest := func(r *Replica, meta string) {
		for v := limit; v > 3000; v-- {
			if _, err := r.Update("feature", meta, "properties.t", `"`+strings.Repeat("x", v)+`"`); err == nil {
				r.Flush()
				return
			}
		}
		t.Fatal("no edit taken")
	}
	alice := kitReplica(t, "alice", wall, small)
	for i := range 100 {
		p := kitReplica(t, fmt.Sprintf("peer-%031d", i), wall, small)
		kitSet(t, p, kitF3, "properties.n", strconv.Itoa(i))
		kitDeliver(t, p.Flush(), alice)
	}
	largest(alice, kitF1)
	wall.Advance(1)
	kitSet(t, alice, kitF2, "properties.n", "1") // after it in clock order
	alice.Flush()
	carol := kitReplica(t, "carol", wall, small)
	_, responses := kitRun(t, []*Replica{carol, alice}, 200, [][]byte{carol.SyncRequest("alice")})
	kitSameState(t, alice, carol)
	if !kitEqualVV(alice.Vector(), carol.Vector()) {
		t.Errorf("carol's vector %v, want alice's %v", carol.Vector(), alice.Vector())
	}
	// carol's own largest edit goes back to alice in the push-back of her next catch-up.
	largest(carol, kitF2)
	wall.Advance(1)
	kitSet(t, alice, kitF3, "properties.m", "1")
	alice.Flush()
	_, more := kitRun(t, []*Replica{carol, alice}, 200, [][]byte{carol.SyncRequest("alice")})
	kitSameState(t, alice, carol)
	for _, m := range append(responses, more...) {
		if len(m) > limit+4096 {
			t.Errorf("a response of %d bytes", len(m))
		}
	}
}

// TestSyncCarriesTheLargestEdit: the largest edit a replica takes (its OperationMessage
// at the message limit) reaches a late joiner with the same limits, and the responder
// through a push-back: its page wraps it in a PeerMessage, a response's tokens and a
// vector, which a peer takes up to 4 KiB past the limit (README "Protocol": paged to fit).
// A message of another kind is still held to the limit.
func TestSyncCarriesTheLargestEdit(t *testing.T) {
	small := func(o *Options) { o.Limits.MaxMessageBytes = 4096 }
	wall := hlc.NewManualClock(kitT0)
	largest := func(r *Replica, meta string) []byte {
		for v := 4096; v > 3000; v-- {
			if _, err := r.Update("feature", meta, "properties.t", `"`+strings.Repeat("x", v)+`"`); err == nil {
				msgs := r.Flush()
				if len(msgs) != 1 || len(msgs[0]) < 4000 {
					t.Fatalf("the largest edit: %d messages", len(msgs))
				}
				return msgs[0]
			}
		}
		t.Fatal("no edit taken")
		return nil
	}
	alice := kitReplica(t, "alice", wall, small)
	msg := largest(alice, kitF1)
	carol := kitReplica(t, "carol", wall, small)
	kitSync(t, carol, alice)
	kitSameState(t, alice, carol)
	// carol's own largest edit goes back to alice in the push-back of her next catch-up.
	largest(carol, kitF2)
	wall.Advance(1)
	kitSet(t, alice, kitF3, "properties.n", `1`)
	alice.Flush()
	kitSync(t, carol, alice)
	kitSameState(t, alice, carol)
	// An OperationMessage past the limit is refused, however little.
	padded := append(append([]byte(nil), msg[:len(msg)-1]...), []byte(strings.Repeat(" ", 4097-len(msg))+"}")...)
	if _, err := kitReplica(t, "dave", wall, small).Receive(padded); Code(err) != "too_large" {
		t.Errorf("an OperationMessage of %d bytes: %v, want too_large", len(padded), err)
	}
}

// TestPlainAnswerAfterLastKnownHLCClaimsNoVector: the answer to a request in uMap's plain
// form with a lastKnownHLC holds only what follows that clock: it carries no vector, which
// would claim the operations before it. A mapcrdt replica asking so (the metamorphic test's
// script did) adopted it and never got them: no later sync sent them.
func TestPlainAnswerAfterLastKnownHLCClaimsNoVector(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	alice, bob := kitReplica(t, "alice", wall), kitReplica(t, "bob", wall)
	kitSet(t, bob, kitF1, "properties.name", `"bob"`)
	bob.Flush() // lost on its way to alice
	wall.Advance(5)
	kitSet(t, alice, kitF2, "properties.name", `"alice"`)
	alice.Flush()
	req := []byte(`{"kind":"PeerMessage","sender":"alice","recipient":"bob","message":{"verb":"ListOperationsRequest","lastKnownHLC":"` + alice.Clock().String() + `"}}`)
	_, resps := kitRun(t, []*Replica{alice, bob}, 50, [][]byte{req})
	if len(resps) == 0 || gjson.GetBytes(resps[0], "message.vector").Exists() {
		t.Errorf("the answer after a lastKnownHLC claims a vector: %q", resps)
	}
	kitSync(t, alice, bob)
	kitWant(t, alice, "feature", kitF1, "properties.name", `"bob"`)
	kitSameState(t, alice, bob)
}

// TestPlainAnswerCarriesAnEmptyVector: the answer to uMap's plain request for everything
// carries the responder's vector, empty too (an empty one is left out only after a
// lastKnownHLC): a mapcrdt asker then pushes back what the responder lacks.
func TestPlainAnswerCarriesAnEmptyVector(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	alice, bob := kitReplica(t, "alice", wall), kitReplica(t, "bob", wall)
	kitSet(t, alice, kitF1, "properties.name", `"alice"`)
	alice.Flush()
	req := []byte(`{"kind":"PeerMessage","sender":"alice","recipient":"bob","message":{"verb":"ListOperationsRequest","lastKnownHLC":null}}`)
	_, resps := kitRun(t, []*Replica{alice, bob}, 50, [][]byte{req})
	if len(resps) == 0 || gjson.GetBytes(resps[0], "message.vector").Raw != "{}" {
		t.Errorf("bob's answer, his vector empty: %q", resps)
	}
	kitSameState(t, alice, bob)
}
