package crdt

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mapcrdt/mapcrdt/hlc"
)

// Messages a faulty or hostile peer can send: none of them may stop a replica from
// editing and syncing. (Each test failed before its fix; the seqs claimed are the largest a
// peer takes, 2^53 - 1, or just above what the replica made.)

const hostileMax = "9007199254740991"

// hostileOwnOp is mallory's operation stamped with alice's origin and seq.
func hostileOwnOp(counter int, seq string) []byte {
	return []byte(`{"kind":"OperationMessage","sender":"mallory","verb":"update","subject":"feature",` +
		`"metadata":{"id":"f9","layerId":"L1"},"key":"properties.x","value":1,"hlc":"` +
		strconv.FormatInt(kitT0, 10) + `:` + strconv.Itoa(counter) + `:alice","seq":` + seq + `}`)
}

// hostileVector is a response with no operations whose vector claims alice's origin.
func hostileVector(to, seq string) []byte {
	return []byte(`{"kind":"PeerMessage","sender":"mallory","recipient":"` + to + `","message":{"verb":"ListOperationsResponse",` +
		`"pushBack":true,"state":{"objects":[],"ops":[],"peers":[]},"vector":{"alice":` + seq + `}}}`)
}

// hostileWorks checks that bob takes what alice sends after the hostile message: an edit,
// a sync request, a SavedMessage, and that her snapshot restores.
func hostileWorks(t *testing.T, a, b *Replica, wall hlc.WallClock) {
	t.Helper()
	kitSet(t, a, kitF1, "properties.name", `"after"`)
	for _, m := range a.Flush() {
		if _, err := b.Receive(m); err != nil {
			t.Errorf("bob refuses alice's edit: %v", err)
		}
	}
	if _, err := b.Receive(a.SyncRequest("bob")); err != nil {
		t.Errorf("bob refuses alice's sync request: %v", err)
	}
	if _, err := b.Receive(a.SavedMessage()); err != nil {
		t.Errorf("bob refuses alice's SavedMessage: %v", err)
	}
	kitRestore(t, kitSnapshot(t, a), wall)
	kitWant(t, b, "feature", kitF1, "properties.name", `"after"`)
}

// TestHostileOwnOriginOperation: an operation stamped with alice's origin and a seq she
// never made. Once she has stamped anything, it is refused and changes nothing; before (a
// fresh replica, whose id may have been used by an earlier page), it is taken as hers and
// her next edits go to a new origin. Before: her next edit got seq 2^53, refused by every
// peer, her snapshot unreadable.
func TestHostileOwnOriginOperation(t *testing.T) {
	t.Run("after her first edit: refused", func(t *testing.T) {
		wall := hlc.NewManualClock(kitT0)
		a, b := kitReplica(t, "alice", wall), kitReplica(t, "bob", wall)
		kitSet(t, a, kitF1, "properties.name", `"before"`)
		kitDeliver(t, a.Flush(), b)
		state, vec := a.State(), a.Vector()
		for _, seq := range []string{hostileMax, "50", "2"} {
			if _, err := a.Receive(hostileOwnOp(5, seq)); Code(err) != "bad_message" {
				t.Errorf("seq %s: error %v, want bad_message", seq, err)
			}
		}
		if a.State() != state || !kitEqualVV(a.Vector(), vec) {
			t.Errorf("a refused operation changed alice: %s %v", a.State(), a.Vector())
		}
		hostileWorks(t, a, b, wall)
		if got := a.Vector()["alice"]; got != 2 {
			t.Errorf("alice's seqs go on from hers: vector alice:%d, want 2", got)
		}
	})
	t.Run("fresh: taken, then a new origin", func(t *testing.T) {
		wall := hlc.NewManualClock(kitT0)
		a, b := kitReplica(t, "alice", wall), kitReplica(t, "bob", wall)
		kitRecv(t, a, hostileOwnOp(0, hostileMax))
		hostileWorks(t, a, b, wall)
		if vv := a.Vector(); len(vv) != 1 || vv["alice"] != 0 {
			t.Errorf("alice's vector %v: want her edit under a new origin (alice~…)", vv)
		}
	})
}

// TestHostileOwnOriginVector: a response whose vector claims alice's operations up to
// 2^53 - 1, sent to her, or to carol, from whom alice then catches up. Not adopted once
// she has stamped; before: every later edit of hers was refused everywhere.
func TestHostileOwnOriginVector(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	a, b, c := kitReplica(t, "alice", wall), kitReplica(t, "bob", wall), kitReplica(t, "carol", wall)
	kitSet(t, a, kitF1, "properties.name", `"before"`)
	kitDeliver(t, a.Flush(), b, c)
	kitRecv(t, a, hostileVector("alice", hostileMax))
	kitRecv(t, c, hostileVector("carol", hostileMax))
	kitRoute(t, []*Replica{a, c}, a.SyncRequest("carol"))
	if got := a.Vector()["alice"]; got != 1 {
		t.Errorf("alice adopted a claim of her own operations: vector alice:%d, want 1", got)
	}
	hostileWorks(t, a, b, wall)
}

// TestHostileOwnOriginGapStorm: one operation under alice's origin a little past her seqs
// (50, when she made 1) made every later edit of hers a hole at every peer, each healed by
// a sync re-sending all her edits since: 1.56 MB for 200 one-key edits. Refused now.
func TestHostileOwnOriginGapStorm(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	a, b := kitReplica(t, "alice", wall), kitReplica(t, "bob", wall)
	kitSet(t, a, kitF1, "properties.v", `0`)
	kitDeliver(t, a.Flush(), b)
	if _, err := a.Receive(hostileOwnOp(5, "50")); Code(err) != "bad_message" {
		t.Fatalf("error %v, want bad_message", err)
	}
	total := 0
	for i := 1; i <= 200; i++ {
		wall.Advance(10)
		kitSet(t, a, kitF1, "properties.v"+strconv.Itoa(i), `1`)
		for _, m := range a.Flush() {
			_, responses := kitRun(t, []*Replica{a, b}, 100, kitRecv(t, b, m).Replies)
			for _, r := range responses {
				total += len(r)
			}
		}
	}
	if total > 0 {
		t.Errorf("200 one-key edits of alice cost %d bytes of sync responses, want none", total)
	}
	kitSameState(t, a, b)
}

// TestHostileSavedMessage: a SavedMessage cannot mark as saved an edit not made yet — by a
// vector claiming alice's seqs beyond hers, or by a clock ahead of hers (within MaxDrift).
// Before: every later edit of hers was never dirty (vector), or those of the next ~60 s.
func TestHostileSavedMessage(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	a := kitReplica(t, "alice", wall)
	kitRecv(t, a, []byte(`{"kind":"SavedMessage","sender":"mallory","lastKnownHLC":"`+strconv.FormatInt(kitT0, 10)+
		`:0:mallory","vector":{"alice":`+hostileMax+`}}`))
	wall.Advance(1000)
	kitSet(t, a, kitF1, "properties.name", `"x"`)
	a.Flush()
	kitWantDirty(t, a, "feature f1")

	b := kitReplica(t, "bob", wall)
	kitRecv(t, b, []byte(`{"kind":"SavedMessage","sender":"mallory","lastKnownHLC":"`+strconv.FormatInt(kitT0+1000+59_000, 10)+`:0:mallory"}`))
	wall.Advance(30_000)
	kitSet(t, b, kitF1, "properties.name", `"y"`)
	b.Flush()
	kitWantDirty(t, b, "feature f1")
}

// TestHostileHoleNoOneFills: mallory broadcasts operations of an origin z from seq 2 — seq 1
// never exists — naming the other honest peer as sender. Each of z's operations above the
// hole had alice and bob exchange all those above it again: 5.97 MB for 200 small messages.
// A hole is asked about when it opens, then as what is held above it doubles: linear.
func TestHostileHoleNoOneFills(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	a, b := kitReplica(t, "alice", wall), kitReplica(t, "bob", wall)
	reps := []*Replica{a, b}
	total, asks := 0, 0
	for i := 2; i <= 201; i++ {
		wall.Advance(1)
		op := func(sender string) []byte {
			return []byte(`{"kind":"OperationMessage","sender":"` + sender + `","verb":"update","subject":"feature",` +
				`"metadata":{"id":"f` + strconv.Itoa(i) + `","layerId":"L1"},"key":"properties.x","value":1,"hlc":"` +
				strconv.FormatInt(wall.NowMillis(), 10) + `:0:z","seq":` + strconv.Itoa(i) + `}`)
		}
		ra, rb := kitRecv(t, a, op("bob")), kitRecv(t, b, op("alice"))
		asks += len(ra.Replies) + len(rb.Replies)
		_, responses := kitRun(t, reps, 100, append(ra.Replies, rb.Replies...))
		for _, r := range responses {
			total += len(r)
		}
	}
	if asks > 2*9 || total > 200_000 {
		t.Errorf("200 operations above a hole: %d requests, %d bytes of responses", asks, total)
	}
	kitSameState(t, a, b)
	// A hole that does fill is still healed at once: seq 1 of z arrives, then 203 (202 lost).
	kitRecv(t, a, []byte(`{"kind":"OperationMessage","sender":"bob","verb":"update","subject":"feature","metadata":{"id":"g","layerId":"L1"},"key":"properties.x","value":1,"hlc":"`+
		strconv.FormatInt(wall.NowMillis(), 10)+`:1:z","seq":1}`))
	if res := kitRecv(t, a, []byte(`{"kind":"OperationMessage","sender":"bob","verb":"update","subject":"feature","metadata":{"id":"h","layerId":"L1"},"key":"properties.x","value":1,"hlc":"`+
		strconv.FormatInt(wall.NowMillis(), 10)+`:3:z","seq":203}`)); len(res.Replies) != 1 {
		t.Errorf("a new hole (202) asked %d times, want once", len(res.Replies))
	}
}

// TestHostileSessionToken: a request's session token is echoed in every page answering
// it; one over 64 bytes is refused (bad_message), and the replica answers the next.
func TestHostileSessionToken(t *testing.T) {
	wall := hlc.NewManualClock(kitInternT0)
	a := kitReplica(t, "alice", wall)
	if _, err := a.Update("feature", `{"id":"f","layerId":"L"}`, "properties.x", "1"); err != nil {
		t.Fatal(err)
	}
	a.Flush()
	ask := func(token string) (Result, error) {
		return a.Receive([]byte(`{"kind":"PeerMessage","sender":"mallory","recipient":"alice","message":{"verb":"ListOperationsRequest","session":` +
			token + `,"vector":{}}}`))
	}
	for _, bad := range []string{`"` + strings.Repeat("s", 65) + `"`, `1`, `null`} {
		if _, err := ask(bad); !errors.Is(err, ErrBadMessage) {
			t.Errorf("session %.20s…: %v, want bad_message", bad, err)
		}
	}
	res, err := ask(`"` + strings.Repeat("s", 64) + `"`)
	if err != nil || len(res.Replies) != 1 || !strings.Contains(string(res.Replies[0]), `"for":"`+strings.Repeat("s", 64)+`"`) {
		t.Fatalf("a 64-byte token: %v %q", err, res.Replies)
	}
}

// TestLoneSurrogateNamesRefused: a value whose member names escape lone surrogates
// ({"\ud800":1,"\udc00":2}, two members to JavaScript) is refused, from the caller and
// from a peer, rather than kept as one member named U+FFFD.
func TestLoneSurrogateNamesRefused(t *testing.T) {
	wall := hlc.NewManualClock(kitInternT0)
	a := kitReplica(t, "alice", wall)
	meta := `{"id":"f","layerId":"L"}`
	if _, err := a.Upsert("feature", meta, `{"properties":{"\ud800":1,"\udc00":2}}`); !errors.Is(err, ErrBadValue) {
		t.Fatalf("upsert: %v, want bad_value", err)
	}
	if _, err := a.Update("feature", meta, "properties.p", `{"\udc00":2}`); !errors.Is(err, ErrBadValue) {
		t.Fatalf("update: %v, want bad_value", err)
	}
	now := strconv.FormatInt(kitInternT0, 10)
	msg := `{"kind":"OperationMessage","sender":"bob","verb":"upsert","subject":"feature","metadata":` + meta +
		`,"value":{"properties":{"\ud800":1,"\udc00":2}},"hlc":"` + now + `:0:bob","seq":1}`
	if _, err := a.Receive([]byte(msg)); !errors.Is(err, ErrBadValue) {
		t.Fatalf("receive: %v, want bad_value", err)
	}
	if a.LogLen() != 0 {
		t.Fatalf("log of %d", a.LogLen())
	}
}

// TestHostileSessionTokenInAResponse: a response whose tokens are over 64 bytes is
// refused whichever path reads it (the compact form's fast path took them).
func TestHostileSessionTokenInAResponse(t *testing.T) {
	wall := hlc.NewManualClock(kitInternT0)
	a := kitReplica(t, "alice", wall)
	b := kitReplica(t, "bob", wall)
	kitOK(t)(b.Update("feature", `{"id":"f","layerId":"L"}`, "properties.x", "1"))
	b.Flush()
	res := kitRecv(t, b, a.SyncRequest("bob"))
	resp := string(res.Replies[0])
	long := strings.Repeat("s", 65)
	for _, name := range []string{"for", "session"} {
		i := strings.Index(resp, `"`+name+`":"`)
		if i < 0 {
			t.Fatalf("no %s in %s", name, resp)
		}
		j := i + len(name) + 4
		k := j + strings.IndexByte(resp[j:], '"')
		bad := resp[:j] + long + resp[k:]
		if _, err := a.Receive([]byte(bad)); !errors.Is(err, ErrBadMessage) {
			t.Errorf("%s of 65 bytes: %v, want bad_message", name, err)
		}
	}
	kitRecv(t, a, []byte(resp))
	kitSameState(t, a, b)
}

// TestHugePeerListIsLinear: a ListPeersResponse's peers were each looked for in the list
// before and in those before them in the list: a list of 100,000 peers (1.3 MB) sent twice,
// or one newcomer listed 100,000 times, took ~10^10 string comparisons (a frozen tab: 18 s
// for the five lists below, natively).
//
// The bound is on the processor time the five lists take (cpuTime), not the wall clock's:
// on a loaded machine the wall clock grows with the other processes' work (a GOOS=js run
// on a shared 2-core machine took 2.3 s of the 3 s this test allowed the wall clock).
func TestHugePeerListIsLinear(t *testing.T) {
	const n = 100_000
	r := kitReplica(t, "self", nil)
	var b strings.Builder
	b.WriteString(`{"kind":"ListPeersResponse","peers":{`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"p` + strconv.Itoa(i) + `":"n"`)
	}
	b.WriteString(`}}`)
	list := []byte(b.String())
	dup := []byte(`{"kind":"ListPeersResponse","peers":[` + strings.Repeat(`"c",`, n) + `"c"]}`)
	start := cpuTime()
	kitRecv(t, r, list)
	if res := kitRecv(t, r, list); len(res.Replies) != 0 { // no newcomer
		t.Fatalf("%d probes", len(res.Replies))
	}
	if res := kitRecv(t, r, dup); len(res.Replies) != 1 {
		t.Fatalf("%d probes", len(res.Replies))
	}
	kitRecv(t, r, list)
	if res := kitRecv(t, r, dup); len(res.Replies) != 1 {
		t.Fatalf("%d probes", len(res.Replies))
	}
	d := cpuTime() - start
	t.Logf("five peer lists of %d: %v of processor time", n, d)
	if d > 5*time.Second {
		t.Fatalf("five peer lists of %d took %v of processor time", n, d)
	}
}

// TestDeepMembersDoNotPoisonSync: an operation's metadata, a batch's and its unknown
// fields were held to the message's nesting limit only (MaxDepth + wrapDepth), where a sync
// response and a snapshot wrap the operation deeper: one OperationMessage taken by every
// replica made every catch-up response holding it, and every snapshot, refused (too_deep)
// — the relay's map no longer opened. Such a member is now refused as it arrives.
func TestDeepMembersDoNotPoisonSync(t *testing.T) {
	deep := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }
	upd := `"verb":"update","subject":"feature","metadata":{"id":"f","layerId":"L"},"key":"properties.x","value":1`
	for _, tc := range []struct{ name, body string }{
		{"batch metadata", `"verb":"batch","subject":"feature","metadata":%s,"operations":[{` + upd + `}]`},
		{"batch field", `"verb":"batch","zzz":%s,"operations":[{` + upd + `}]`},
		{"sub-operation field", `"verb":"batch","operations":[{"zzz":%s,` + upd + `}]`},
		{"field", `"zzz":%s,` + upd},
		{"operations field", `"operations":[%s],` + upd},
		{"metadata", `"verb":"update","subject":"feature","metadata":{"id":"f","layerId":"L","zz":%s},"key":"properties.x","value":1`},
	} {
		for n := 72; n > 0; n-- {
			a := kitReplica(t, "alice", nil)
			msg := umapOp("mallory", strings.Replace(tc.body, "%s", deep(n), 1)+`,"seq":1`, "1727184449001:0:mallory")
			if _, err := a.Receive(msg); err != nil {
				if !errors.Is(err, ErrTooDeep) {
					t.Fatalf("%s nested %d: %v", tc.name, n, err)
				}
				continue
			}
			for _, plain := range []bool{false, true} {
				b := kitReplica(t, "bob", nil)
				req := b.SyncRequest("alice")
				if plain {
					req = []byte(`{"kind":"PeerMessage","sender":"bob","recipient":"alice","message":{"verb":"ListOperationsRequest","lastKnownHLC":"1:0:x"}}`)
				}
				res, err := a.Receive(req)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range res.Replies {
					if _, err := b.Receive(m); err != nil {
						t.Fatalf("%s nested %d (plain %v): bob refused alice's answer: %v", tc.name, n, plain, err)
					}
				}
				if b.State() != a.State() {
					t.Fatalf("%s nested %d (plain %v): diverged", tc.name, n, plain)
				}
			}
			snap, err := a.Snapshot()
			if err == nil {
				_, err = NewReplicaFromSnapshot(DefaultOptions(), snap)
			}
			if err != nil {
				t.Fatalf("%s nested %d: snapshot: %v", tc.name, n, err)
			}
			break // the deepest taken syncs and restores
		}
	}
}
