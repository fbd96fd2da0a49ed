package crdt

// Snapshots (DESIGN §6, issue 5): round trips, continuing where the replica stopped, and
// refusing future or damaged snapshots.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/mapcrdt/mapcrdt/hlc"
	"github.com/tidwall/gjson"
)

func kitSnapshot(t testing.TB, r *Replica) []byte {
	t.Helper()
	snap, err := r.Snapshot()
	if err != nil {
		t.Fatalf("%s: Snapshot: %v", r.PeerID(), err)
	}
	return snap
}

func kitRestore(t testing.TB, snap []byte, wall hlc.WallClock) *Replica {
	t.Helper()
	opts := DefaultOptions()
	opts.Wall = wall
	r, err := NewReplicaFromSnapshot(opts, snap)
	if err != nil {
		t.Fatalf("NewReplicaFromSnapshot: %v\n%s", err, snap)
	}
	return r
}

// kitRichReplica returns a replica that holds a bit of everything a snapshot must carry:
// a seeded base, remote operations (one after a gap), flushed and queued local operations,
// a batch, undo and redo steps, a compacted log, a saved horizon and known peers. The
// wall clocks of alice and bob are returned.
func kitRichReplica(t testing.TB) (*Replica, *hlc.ManualClock) {
	t.Helper()
	wall := hlc.NewManualClock(kitT0)
	bobWall := hlc.NewManualClock(kitT0 + 30_000) // bob's clock runs 30 s ahead
	alice := kitReplica(t, "alice", wall)
	bob := kitReplica(t, "bob", bobWall)
	kitOK(t)(alice.Seed("feature", kitF2, `{"type":"Feature","properties":{"name":"from the server","n":1}}`))
	kitRecv(t, alice, []byte(`{"kind":"JoinResponse","peers":["alice","bob","carol"]}`))
	var fromBob [][]byte
	for _, kv := range [][2]string{{"properties.name", `"b1"`}, {"properties.color", `"b2"`}, {"properties.x", `"b3"`}} {
		bobWall.Advance(10)
		kitSet(t, bob, kitF3, kv[0], kv[1])
		fromBob = append(fromBob, bob.Flush()...)
	}
	kitRecv(t, alice, fromBob[0])
	kitRecv(t, alice, fromBob[2]) // a gap: bob's seq 2 is missing
	kitRecv(t, alice, []byte(`{"kind":"OperationMessage","sender":"umap","verb":"update","subject":"feature","metadata":{"id":"f1","layerId":"L1"},"key":"properties.extra","value":1,"x-client":"umap 3","hlc":"`+hlc.Timestamp{Wall: kitT0 + 5, Peer: "umap"}.String()+`"}`))
	for i := 0; i < 3; i++ {
		wall.Advance(10)
		kitSet(t, alice, kitF1, "properties.name", `"a`+string(rune('1'+i))+`"`)
		alice.Flush()
	}
	kitNoErr(t, alice.StartBatch())
	kitOK(t)(alice.Upsert("datalayer", kitL1, `{"name":"Layer \"1\"","x":[1,{"y":null}]}`))
	kitSet(t, alice, kitF2, "properties.n", `2`)
	kitNoErr(t, alice.CommitBatch())
	alice.Flush()
	if err := alice.MarkSaved(alice.Clock()); err != nil {
		t.Fatal(err)
	}
	wall.Advance(10)
	kitSet(t, alice, kitF1, "geometry", `{"type":"Point","coordinates":[2.35,48.85]}`) // waits in the outbox
	kitSet(t, alice, kitF2, "properties.name", `"queued"`)
	kitSet(t, alice, kitF2, "properties.name", `"queued, last"`)
	wall.Advance(10)
	kitSet(t, alice, kitF1, "properties.color", `"red"`)
	kitUndo(t, alice) // color: a redo step
	alice.Compact()
	return alice, wall
}

func TestSnapshotRoundTripIsIdentical(t *testing.T) {
	alice, wall := kitRichReplica(t)
	snap := kitSnapshot(t, alice)
	r2 := kitRestore(t, snap, wall)
	snap2 := kitSnapshot(t, r2)
	if !bytes.Equal(snap, snap2) {
		t.Fatalf("snapshot → restore → snapshot differs\nfirst  %s\nsecond %s", snap, snap2)
	}
	if r2.State() != alice.State() || r2.PeerID() != "alice" || r2.Clock() != alice.Clock() ||
		r2.Pending() != alice.Pending() || r2.LogLen() != alice.LogLen() || r2.CanUndo() != alice.CanUndo() || r2.CanRedo() != alice.CanRedo() {
		t.Errorf("the restored replica differs: state %v clock %s/%s pending %d/%d log %d/%d",
			r2.State() == alice.State(), r2.Clock(), alice.Clock(), r2.Pending(), alice.Pending(), r2.LogLen(), alice.LogLen())
	}
	if !kitEqualVV(r2.Vector(), alice.Vector()) {
		t.Errorf("vector %v, want %v", r2.Vector(), alice.Vector())
	}
	if got, want := kitDirty(r2), kitDirty(alice); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("Dirty %q, want %q", got, want)
	}
	if got := r2.Peers(); strings.Join(got, ",") != "alice,bob,carol" {
		t.Errorf("Peers %q", got)
	}
	// Restoring under an explicit, equal peer id works; another one is refused.
	opts := DefaultOptions()
	opts.PeerID = "alice"
	if _, err := NewReplicaFromSnapshot(opts, snap); err != nil {
		t.Errorf("restore with the same peer id: %v", err)
	}
	opts.PeerID = "mallory"
	if _, err := NewReplicaFromSnapshot(opts, snap); Code(err) != "bad_option" {
		t.Errorf("restore under another peer id: %v, want bad_option", err)
	}
	// Random replicas round-trip too.
	for seed := 0; seed < *seeds/10; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 66))
		w := hlc.NewManualClock(kitT0)
		a, b := kitReplica(t, "a", w), kitReplica(t, "b", w)
		for i := 0; i < 25; i++ {
			w.Advance(int64(rng.IntN(3)) - 1)
			r := a
			if rng.IntN(3) == 0 {
				r = b
			}
			randomEdit(t, rng, r)
			switch rng.IntN(6) {
			case 0:
				kitDeliver(t, r.Flush(), a, b)
			case 1:
				r.Compact()
			case 2:
				if r.CanUndo() {
					kitUndo(t, r)
				}
			}
		}
		for _, r := range []*Replica{a, b} {
			s1 := kitSnapshot(t, r)
			r2 := kitRestore(t, s1, w)
			if s2 := kitSnapshot(t, r2); !bytes.Equal(s1, s2) {
				t.Fatalf("seed %d: %s: the round trip differs\nfirst  %s\nsecond %s", seed, r.PeerID(), s1, s2)
			}
			if r2.State() != r.State() {
				t.Fatalf("seed %d: %s: the restored state differs", seed, r.PeerID())
			}
		}
	}
}

func kitEqualVV(a, b VersionVector) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestSnapshotContinuesWhereItStopped: the original and its restored copy, driven the
// same way from the same wall clock, send the same edits with the same clocks (walltime and
// counter), the outbox intact, undo and redo working. A new edit may be stamped under a new origin
// (bdc789d: a restored replica reincarnates, so a stale snapshot never reuses a seq), whose
// seqs start at 1 and never repeat, and whose clocks are above every clock held.
func TestSnapshotContinuesWhereItStopped(t *testing.T) {
	alice, wall := kitRichReplica(t)
	held := alice.Clock()
	type wc struct {
		wall    int64
		counter uint32
	}
	queued := map[wc]bool{} // stamped before the snapshot, sent after it
	for _, o := range alice.outbox {
		queued[wc{o.ts.Wall, o.ts.Counter}] = true
	}
	isQueued := func(ts hlc.Timestamp) bool { return queued[wc{ts.Wall, ts.Counter}] }
	snap := kitSnapshot(t, alice)
	twinWall := hlc.NewManualClock(wall.NowMillis())
	twin := kitRestore(t, snap, twinWall)
	if twin.Pending() != alice.Pending() || !twin.CanRedo() || !twin.CanUndo() {
		t.Errorf("restored: Pending %d (want %d), CanUndo %v, CanRedo %v", twin.Pending(), alice.Pending(), twin.CanUndo(), twin.CanRedo())
	}
	steps := []func(r *Replica){
		func(r *Replica) { kitRedo(t, r) },
		func(r *Replica) { kitSet(t, r, kitF3, "properties.name", `"alice"`) },
		func(r *Replica) { kitUndo(t, r) },
		func(r *Replica) { kitUndo(t, r) },
		func(r *Replica) { kitUndo(t, r) },
		func(r *Replica) { kitUndo(t, r) },
		func(r *Replica) { kitRedo(t, r) },
		func(r *Replica) { kitOK(t)(r.Delete("feature", kitF2)) },
		func(r *Replica) { kitUndo(t, r) },
	}
	// same reports whether two messages are the same edit: everything equal but the
	// origin inside the hlc and the seq.
	same := func(a, b []byte) bool {
		strip := func(m []byte) string {
			g := gjson.ParseBytes(m)
			ts := hlc.MustParse(g.Get("hlc").String())
			out, _ := kitReplaceField(m, "hlc", strconv.Quote(strconv.FormatInt(ts.Wall, 10)+":"+strconv.FormatUint(uint64(ts.Counter), 10)))
			out, _ = kitReplaceField(out, "seq", "0")
			return string(out)
		}
		return strip(a) == strip(b)
	}
	bob := kitReplica(t, "bob", twinWall) // receives what the restored replica sends
	var sent [][]byte
	for i, step := range steps {
		wall.Advance(3)
		twinWall.Advance(3)
		step(alice)
		step(twin)
		a, b := alice.Flush(), twin.Flush()
		if len(a) != len(b) {
			t.Fatalf("step %d: the original sends %d messages, the restored one %d", i, len(a), len(b))
		}
		for j := range a {
			ts := kitMsgHLC(t, b[j])
			if !same(a[j], b[j]) {
				t.Errorf("step %d message %d\noriginal %s\nrestored %s", i, j, a[j], b[j])
			}
			if gjson.GetBytes(b[j], "sender").String() != "alice" {
				t.Errorf("the restored replica sends as %q", gjson.GetBytes(b[j], "sender").String())
			}
			if res := kitRecv(t, bob, b[j]); len(res.Replies) != 0 && !isQueued(ts) {
				t.Errorf("step %d: bob sees a gap in %s", i, b[j])
			}
		}
		if alice.State() != twin.State() {
			t.Fatalf("step %d: states differ\noriginal %s\nrestored %s", i, alice.State(), twin.State())
		}
		sent = append(sent, b...)
	}
	// Per origin, seqs never repeat and follow on; new clocks are above what was held.
	seqs := map[string][]int64{}
	for _, m := range sent {
		ts := kitMsgHLC(t, m)
		seqs[ts.Peer] = append(seqs[ts.Peer], gjson.GetBytes(m, "seq").Int())
		if !isQueued(ts) && !held.Less(ts) {
			t.Errorf("clock %s not above %s, held before the snapshot", ts, held)
		}
		if ts.Peer != "alice" && !strings.HasPrefix(ts.Peer, "alice~") {
			t.Errorf("a new origin %q that does not name alice", ts.Peer)
		}
	}
	if len(seqs) > 2 {
		t.Errorf("more than one new origin: %v", seqs)
	}
	for origin, list := range seqs {
		first := int64(1)
		if origin == "alice" {
			first = 5 // 4 sent before the snapshot
		}
		for i, s := range list {
			if s != first+int64(i) {
				t.Errorf("origin %s sends seqs %v, want %d, %d, …", origin, list, first, first+1)
				break
			}
		}
	}
	if !alice.CanUndo() || !twin.CanUndo() {
		t.Error("the undo stack ran dry")
	}
}

// TestSnapshotClockNeverGoesBackwards: restored on a machine whose wall clock is behind
// (or reloaded after the clock stepped back), the next local edit still has a clock above
// every clock the replica held — including remote clocks ahead of its wall.
func TestSnapshotClockNeverGoesBackwards(t *testing.T) {
	alice, wall := kitRichReplica(t)
	var maxHeld hlc.Timestamp
	for _, o := range alice.log.ops {
		if maxHeld.Less(o.ts) {
			maxHeld = o.ts
		}
	}
	if maxHeld.Wall <= wall.NowMillis() {
		t.Fatalf("precondition: the newest clock held (%s) should be ahead of the wall clock (bob's)", maxHeld)
	}
	snap := kitSnapshot(t, alice)
	for _, back := range []int64{0, -10, -60_000, -3_600_000} {
		w := hlc.NewManualClock(wall.NowMillis() + back)
		r := kitRestore(t, snap, w)
		kitSet(t, r, kitF3, "properties.after", `true`)
		msgs := r.Flush()
		last := kitMsgHLC(t, msgs[len(msgs)-1])
		if !maxHeld.Less(last) || !alice.Clock().Less(last) {
			t.Errorf("wall %+d ms: the next edit's clock %s is not above %s (held) and %s (clock)", back, last, maxHeld, alice.Clock())
		}
		for _, m := range msgs {
			if ts := kitMsgHLC(t, m); !ts.Less(last) && ts != last {
				t.Errorf("wall %+d ms: messages out of clock order", back)
			}
		}
	}
}

// TestSnapshotGapHealsAfterRestore: a restored replica still knows it lacks bob's seq 2.
func TestSnapshotGapHealsAfterRestore(t *testing.T) {
	alice, wall := kitRichReplica(t)
	r := kitRestore(t, kitSnapshot(t, alice), wall)
	if got := r.Vector()["bob"]; got != 1 {
		t.Fatalf("restored vector bob:%d, want 1", got)
	}
	req := r.SyncRequest("bob")
	if gjson.GetBytes(req, "message.vector.bob").Uint() != 1 {
		t.Errorf("sync request %s does not ask for bob's seq 2", req)
	}
}

func TestSnapshotRefusesFutureVersion(t *testing.T) {
	alice, _ := kitRichReplica(t)
	snap := kitSnapshot(t, alice)
	if !bytes.Contains(snap, []byte(`"version":1`)) {
		t.Fatalf("snapshot without \"version\":1: %.200s", snap)
	}
	for _, v := range []string{"2", "99"} {
		future := bytes.Replace(snap, []byte(`"version":1`), []byte(`"version":`+v), 1)
		_, err := NewReplicaFromSnapshot(DefaultOptions(), future)
		if Code(err) != "snapshot_version" || !errors.Is(err, ErrSnapshotVersion) {
			t.Errorf("version %s: %v, want snapshot_version", v, err)
		}
		if err != nil && !strings.Contains(err.Error(), v) {
			t.Errorf("version %s: the error %q does not say which version", v, err)
		}
	}
}

func TestSnapshotRefusesDamage(t *testing.T) {
	alice, _ := kitRichReplica(t)
	snap := kitSnapshot(t, alice)
	refused := func(what string, s []byte) {
		t.Helper()
		defer func() {
			if p := recover(); p != nil {
				t.Errorf("%s: panic %v", what, p)
			}
		}()
		r, err := NewReplicaFromSnapshot(DefaultOptions(), s)
		if Code(err) != "bad_snapshot" || !errors.Is(err, ErrBadSnapshot) || r != nil {
			t.Errorf("%s: %v, want bad_snapshot\n%.300s", what, err, s)
		}
	}
	// Truncated anywhere.
	for n := 0; n < len(snap); n++ {
		refused("truncated to "+strconv.Itoa(n)+" bytes", snap[:n])
	}
	// Garbage.
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 50; i++ {
		g := make([]byte, 1+rng.IntN(200))
		for j := range g {
			g[j] = byte(rng.IntN(256))
		}
		refused("garbage", g)
	}
	for _, g := range []string{``, `null`, `[]`, `{}`, `"snapshot"`, `{"format":"other","version":1}`, `{"version":1}`} {
		refused(g, []byte(g))
	}
	// Wrong field types (and wrong values) in an otherwise good snapshot.
	fields := map[string][]string{
		"peer":    {`5`, `null`, `""`},
		"clock":   {`5`, `"yesterday"`, `null`},
		"seqs":    {`"3"`, `[]`, `{"alice":-1}`, `{"alice":1.5}`, `null`},
		"origins": {`{}`, `[1]`, `"alice"`, `["bob"]`, `[""]`},
		"saved":   {`5`, `"x"`},
		"vector":  {`[]`, `{"bob":"1"}`, `{"bob":-1}`, `5`},
		"above":   {`[]`, `{"bob":["x"]}`, `{"bob":5}`, `5`},
		"peers":   {`{}`, `[1]`, `"bob"`},
		"log":     {`[]`, `5`, `{"peers":[],"objects":[],"ops":[[0,0,7,1,1,0,"k",1]]}`, `{"peers":5,"objects":[],"ops":[]}`},
		"outbox":  {`{}`, `[999]`, `["x"]`, `5`},
		"bases":   {`{}`, `[1]`, `[["feature",{"id":"f9","layerId":"L1"},5]]`, `5`},
		"undo":    {`{}`, `[5]`, `[{"entries":[[1,2,3]]}]`, `5`},
		"redo":    {`{}`, `[{"entries":5}]`, `5`},
		"format":  {`5`, `null`},
		"version": {`"1"`},
	}
	for name, vals := range fields {
		for _, v := range vals {
			damaged, ok := kitReplaceField(snap, name, v)
			if !ok {
				t.Fatalf("the snapshot has no field %q", name)
			}
			if name == "version" {
				if _, err := NewReplicaFromSnapshot(DefaultOptions(), damaged); err == nil {
					t.Errorf("version %s accepted", v)
				}
				continue
			}
			refused(name+" = "+v, damaged)
		}
	}
	// A snapshot over the size limit is refused before it is read.
	opts := DefaultOptions()
	opts.Limits.MaxMessageBytes = 16
	if _, err := NewReplicaFromSnapshot(opts, snap); err == nil {
		t.Error("a snapshot far over the size limit was accepted")
	}
}

// kitReplaceField replaces the raw value of a top-level member of a JSON object.
func kitReplaceField(doc []byte, name, raw string) ([]byte, bool) {
	r := gjson.GetBytes(doc, name)
	if !r.Exists() || r.Index == 0 {
		return nil, false
	}
	out := append([]byte(nil), doc[:r.Index]...)
	out = append(out, raw...)
	return append(out, doc[r.Index+len(r.Raw):]...), true
}

func TestSnapshotRefusedWhileBatchOpen(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	r := kitReplica(t, "alice", wall)
	kitNoErr(t, r.StartBatch())
	kitSet(t, r, kitF1, "properties.name", `"x"`)
	snap, err := r.Snapshot()
	if Code(err) != "bad_state" || !errors.Is(err, ErrBadState) || snap != nil {
		t.Errorf("Snapshot in a batch: %v, want bad_state", err)
	}
	kitNoErr(t, r.CommitBatch())
	kitRestore(t, kitSnapshot(t, r), wall)
	// An empty batch open is still a batch open.
	kitNoErr(t, r.StartBatch())
	if _, err := r.Snapshot(); Code(err) != "bad_state" {
		t.Errorf("Snapshot in an empty batch: %v, want bad_state", err)
	}
}

// TestSnapshotOlderRestoreNeverReusesASeq: a replica restored from a snapshot older than
// what it already sent (IndexedDB saved a while ago) syncs, or gets its own operations back,
// then edits: the edit's (origin, seq) is one no peer holds yet — no gap, nothing hidden.
func TestSnapshotOlderRestoreNeverReusesASeq(t *testing.T) {
	for _, how := range []string{"sync response", "own operations received"} {
		t.Run(how, func(t *testing.T) {
			wall := hlc.NewManualClock(kitT0)
			alice := kitReplica(t, "alice", wall)
			bob := kitReplica(t, "bob", wall)
			kitSet(t, alice, kitF1, "properties.a", `1`)
			kitDeliver(t, alice.Flush(), bob)
			old := kitSnapshot(t, alice) // seq 1
			var later [][]byte
			for _, k := range []string{"properties.b", "properties.c"} {
				wall.Advance(10)
				kitSet(t, alice, kitF1, k, `2`)
				later = append(later, alice.Flush()...)
			}
			kitDeliver(t, later, bob) // bob holds alice:3
			wall.Advance(10)
			restored := kitRestore(t, old, wall)
			if how == "sync response" {
				kitSync(t, restored, bob)
			} else {
				kitDeliver(t, later, restored)
			}
			kitSet(t, restored, kitF2, "properties.name", `"after restore"`)
			msgs := restored.Flush()
			if len(msgs) != 1 {
				t.Fatalf("%d messages", len(msgs))
			}
			ts, seq := kitMsgHLC(t, msgs[0]), gjson.GetBytes(msgs[0], "seq").Uint()
			if seq <= bob.Vector()[ts.Peer] {
				t.Fatalf("the first operation after the restore takes %s seq %d, which bob already holds: %s", ts.Peer, seq, msgs[0])
			}
			if res := kitRecv(t, bob, msgs[0]); len(res.Replies) != 0 {
				t.Errorf("bob sees a gap: %q", res.Replies)
			}
			carol := kitReplica(t, "carol", wall)
			kitSync(t, carol, bob)
			kitWant(t, carol, "feature", kitF2, "properties.name", `"after restore"`)
			kitSameState(t, bob, carol, restored)
		})
	}
}

// TestSnapshotOlderRestoreFlushedBeforeSyncHidesNoEdit: the same older restore, but the
// page flushes its first edit before any sync answer arrives (DESIGN §5: the outbox goes
// out on reconnect). The edit may not take a seq peers already hold for another operation:
// a replica that missed the live message and syncs by vector would never be sent it.
func TestSnapshotOlderRestoreFlushedBeforeSyncHidesNoEdit(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	alice := kitReplica(t, "alice", wall)
	bob := kitReplica(t, "bob", wall)
	carol := kitReplica(t, "carol", wall)
	kitSet(t, alice, kitF1, "properties.a", `1`)
	kitDeliver(t, alice.Flush(), bob, carol)
	old := kitSnapshot(t, alice) // alice has sent seq 1
	wall.Advance(10)
	kitSet(t, alice, kitF1, "properties.b", `2`)
	kitDeliver(t, alice.Flush(), bob, carol) // seq 2, not in the snapshot
	wall.Advance(10)
	restored := kitRestore(t, old, wall)
	kitSet(t, restored, kitF2, "properties.name", `"after restore"`)
	msgs := restored.Flush()
	kitDeliver(t, msgs, bob) // carol misses the live message
	for _, m := range msgs {
		if seq := gjson.GetBytes(m, "seq").Int(); seq == 2 {
			t.Errorf("the restored replica reuses seq 2, already taken by another operation: %s", m)
		}
	}
	kitSync(t, carol, bob)
	kitSync(t, carol, restored)
	kitWant(t, carol, "feature", kitF2, "properties.name", `"after restore"`)
	kitSameState(t, bob, carol)
}

// TestSnapshotStaleOutboxNeverHidesALaterEdit: the stale snapshot held two queued edits;
// after it, a third edit superseded the first and the outbox left as seqs 1 and 2 (the
// first coalesced away). Restored from the stale snapshot, the replica flushes its queued
// edits again: they must not take seqs that now name other operations, or dave — who got
// only the restored replica's messages — would believe he holds the later edit and never
// be sent it.
func TestSnapshotStaleOutboxNeverHidesALaterEdit(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	alice := kitReplica(t, "alice", wall)
	bob := kitReplica(t, "bob", wall)
	dave := kitReplica(t, "dave", wall)
	kitSet(t, alice, kitF1, "properties.name", `"one"`)  // X1, queued
	kitSet(t, alice, kitF1, "properties.color", `"red"`) // X2, queued
	stale := kitSnapshot(t, alice)
	wall.Advance(10)
	kitSet(t, alice, kitF1, "properties.name", `"two"`) // Z supersedes X1
	kitDeliver(t, alice.Flush(), bob)                   // X2 and Z; dave is offline
	wall.Advance(10)
	restored := kitRestore(t, stale, wall)
	again := restored.Flush()
	kitDeliver(t, again, dave, bob)
	for _, pair := range [][2]*Replica{{dave, bob}, {restored, bob}, {dave, restored}} {
		kitSync(t, pair[0], pair[1])
	}
	for _, r := range []*Replica{alice, bob, dave, restored} {
		kitWant(t, r, "feature", kitF1, "properties.name", `"two"`)
	}
	kitSameState(t, alice, bob, dave, restored)
}

// FuzzSnapshot: whatever the bytes, NewReplicaFromSnapshot returns a replica or a typed
// error, and never panics. A replica it returns has a canonical state, and must then work through every kind of call —
// a local edit and its flush, undo and redo, answering a peer's sync request and the peer's
// push back, compaction — each returning or failing with a typed error, never panicking; and
// its own snapshot must restore to the same state. A damaged snapshot from a page's storage
// that still parses may be inconsistent (a vector claiming operations the log lacks, an undo
// step naming a missing one): that must cost errors, not a crash.
func FuzzSnapshot(f *testing.F) {
	rich, _ := kitRichReplica(f)
	f.Add(kitSnapshot(f, rich))
	f.Add(kitSnapshot(f, kitReplica(f, "plain", hlc.NewManualClock(kitT0))))
	f.Fuzz(func(t *testing.T, snap []byte) {
		opts := DefaultOptions()
		opts.Wall = hlc.NewManualClock(kitT0 + 100_000)
		r, err := NewReplicaFromSnapshot(opts, snap)
		// A restore in steps of 3 ends as the one in a single call.
		stepped, _, serr := restoreInSteps(opts, snap, 3)
		if (err == nil) != (serr == nil) || (err != nil && err.Error() != serr.Error()) {
			t.Fatalf("restored with %v, in steps with %v", err, serr)
		}
		if err != nil {
			switch Code(err) {
			case "bad_snapshot", "snapshot_version", "too_large":
				return
			}
			t.Fatalf("refused with %v", err)
		}
		state := r.State()
		if got := stepped.State(); got != state {
			t.Fatalf("restored in steps to\n%s\nnot\n%s", got, state)
		}
		checkStateCanonical(t, state)
		again, err := r.Snapshot()
		if err != nil {
			t.Fatalf("a restored replica cannot snapshot: %v", err)
		}
		back, err := NewReplicaFromSnapshot(opts, again)
		if err != nil {
			t.Fatalf("its own snapshot is refused: %v\n%s", err, again)
		}
		if got := back.State(); got != state {
			t.Fatalf("its own snapshot restores to\n%s\nnot\n%s", got, state)
		}

		kitExercise(t, r)
	})
}

// kitExercise puts a restored replica through every kind of call — a local edit and its
// flush, undo and redo, answering a peer's sync request and taking the peer's push back,
// compaction, a snapshot — and fails on a panic or an untyped error.
func kitExercise(t *testing.T, r *Replica) {
	t.Helper()
	typed := func(what string, err error) {
		t.Helper()
		if err != nil && (Code(err) == "" || Code(err) == "internal") {
			t.Fatalf("%s: untyped error %v", what, err)
		}
	}
	_, err := r.Update("feature", kitF1, "properties.fuzz", `"edit"`)
	typed("Update", err)
	r.Flush()
	_, err = r.Undo()
	typed("Undo", err)
	_, err = r.Redo()
	typed("Redo", err)
	r.Flush()
	peer := kitReplica(t, "kit-peer", hlc.NewManualClock(kitT0+100_000))
	res, err := r.Receive(peer.SyncRequest(r.PeerID()))
	typed("Receive(sync request)", err)
	for _, reply := range res.Replies {
		back, err := peer.Receive(reply)
		typed("the peer receives the answer", err)
		for _, push := range back.Replies {
			_, err := r.Receive(push)
			typed("Receive(push back)", err)
		}
	}
	r.Compact()
	_, err = r.Snapshot()
	typed("Snapshot after all of it", err)
	r.Dirty()
	_ = r.State()
}

// TestSnapshotDamageThatParses: a snapshot damaged so that it still parses — each scalar of
// the rich snapshot replaced in turn by other numbers, strings and literals, each array
// element dropped — is refused with bad_snapshot, or restores to a replica that works
// through every call (kitExercise): random bytes (FuzzSnapshot) seldom stay valid JSON.
func TestSnapshotDamageThatParses(t *testing.T) {
	rich, _ := kitRichReplica(t)
	snap := kitSnapshot(t, rich)
	opts := DefaultOptions()
	opts.Wall = hlc.NewManualClock(kitT0 + 100_000)
	try := func(damaged []byte) bool {
		t.Helper()
		r, err := NewReplicaFromSnapshot(opts, damaged)
		if err != nil {
			if c := Code(err); c != "bad_snapshot" && c != "snapshot_version" {
				t.Fatalf("refused with %v:\n%s", err, damaged)
			}
			return false
		}
		t.Run("", func(t *testing.T) { kitExercise(t, r) })
		return true
	}
	accepted, total := 0, 0
	for _, damaged := range kitDamaged(snap) {
		total++
		if try(damaged) {
			accepted++
		}
	}
	t.Logf("%d damaged snapshots that parse: %d restored and exercised, the others refused", total, accepted)
	if total < 500 || accepted == 0 {
		t.Fatalf("too few variants: %d, %d restored", total, accepted)
	}
}

// kitDamaged returns the valid JSON texts made from doc by replacing each scalar in turn
// with other numbers, strings and literals (peer ids and clocks of the kit among them), and
// by dropping each scalar element of an array.
func kitDamaged(doc []byte) [][]byte {
	replacements := []string{`0`, `1`, `-1`, `2`, `1000000000`, `9007199254740993`, `1e3`, `""`, `"alice"`, `"bob"`, `"zed"`,
		`"alice~x"`, `"1727184449010:0:bob"`, `"feature"`, `"properties.name"`, `null`, `true`, `{}`, `[]`}
	var out [][]byte
	for _, tok := range kitJSONTokens(doc) {
		if tok.array {
			if d := kitDropElement(doc, tok.start, tok.end); json.Valid(d) {
				out = append(out, d)
			}
			continue
		}
		for _, v := range replacements {
			d := append(append(append([]byte(nil), doc[:tok.start]...), v...), doc[tok.end:]...)
			if json.Valid(d) {
				out = append(out, d)
			}
		}
	}
	return out
}

// kitToken is a scalar of a JSON text at [start, end), or an element of an array.
type kitToken struct {
	start, end int
	array      bool
}

// kitJSONTokens lists the scalars of a valid JSON text, and each scalar that is an element
// of an array a second time as an array element.
func kitJSONTokens(doc []byte) []kitToken {
	var out []kitToken
	var stack []byte
	for i := 0; i < len(doc); {
		c := doc[i]
		switch {
		case c == '{' || c == '[':
			stack = append(stack, c)
			i++
			continue
		case c == '}' || c == ']':
			stack = stack[:len(stack)-1]
			i++
			continue
		case c == ',' || c == ':' || c == ' ' || c == '\n':
			i++
			continue
		}
		start := i
		if c == '"' {
			for i++; doc[i] != '"'; i++ {
				if doc[i] == '\\' {
					i++
				}
			}
			i++
			if j := kitSkipSpace(doc, i); j < len(doc) && doc[j] == ':' {
				continue // a member name
			}
		} else {
			for i < len(doc) && !strings.ContainsRune(",:]} \n", rune(doc[i])) {
				i++
			}
		}
		out = append(out, kitToken{start: start, end: i})
		if len(stack) > 0 && stack[len(stack)-1] == '[' {
			out = append(out, kitToken{start: start, end: i, array: true})
		}
	}
	return out
}

func kitSkipSpace(doc []byte, i int) int {
	for i < len(doc) && (doc[i] == ' ' || doc[i] == '\n') {
		i++
	}
	return i
}

// kitDropElement removes the array element at [start, end) with the comma after it, or
// before it when it is the last.
func kitDropElement(doc []byte, start, end int) []byte {
	switch {
	case end < len(doc) && doc[end] == ',':
		end++
	case start > 0 && doc[start-1] == ',':
		start--
	}
	return append(append([]byte(nil), doc[:start]...), doc[end:]...)
}

// TestSnapshotOfAnEarlierEngine: a page restores the snapshot it stored in IndexedDB with
// whatever engine it loads next. testdata/snapshots/session29.json was written by
// session 29's engine (7047304): a seeded base, a batch, a peer's edit, an undo, a save
// mark and an edit still in the outbox. This engine restores it to the same state, with
// its undo, outbox and dirty state, and goes on editing and syncing.
func TestSnapshotOfAnEarlierEngine(t *testing.T) {
	snap, err := os.ReadFile("testdata/snapshots/session29.json")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/snapshots/session29.state")
	if err != nil {
		t.Fatal(err)
	}
	wall := hlc.NewManualClock(1_727_184_460_000)
	r, err := NewReplicaFromSnapshot(Options{Wall: wall}, snap)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.State(); got != string(want) {
		t.Fatalf("state\n got %s\nwant %s", got, want)
	}
	if !r.CanUndo() || r.CanRedo() || r.Pending() != 1 { // the queued edit cleared the redo
		t.Fatalf("undo %v, redo %v, pending %d", r.CanUndo(), r.CanRedo(), r.Pending())
	}
	if d := r.Dirty(); len(d) != 1 {
		t.Fatalf("dirty %+v, want the map's queued edit", d)
	}
	kitOK(t)(r.Update("feature", kitF2, "properties.b", `2`))
	if _, err := r.Undo(); err != nil {
		t.Fatal(err)
	}
	out := r.Flush()
	if len(out) == 0 || !strings.Contains(string(out[0]), `:alice~`) {
		t.Fatalf("flushed %q: want messages under a new origin", out)
	}
	fresh := kitReplica(t, "carol", wall) // loads the saved map (a seeded base is never sent)
	kitOK(t)(fresh.Seed("feature", `{"id":"s1","layerId":"L1"}`, `{"type":"Feature","properties":{"name":"seeded"},"geometry":null}`))
	kitSync(t, fresh, r)
	kitSameState(t, fresh, r)
}

// TestSnapshotHoldsNoSession: doc.go "Sync": a replica's session token is the replica
// object's, never in a snapshot — each restore of one snapshot asks under a token of its
// own.
func TestSnapshotHoldsNoSession(t *testing.T) {
	r, wall := kitRichReplica(t)
	snap := kitSnapshot(t, r)
	if bytes.Contains(snap, []byte(r.session)) {
		t.Fatalf("the snapshot holds the session %q", r.session)
	}
	a, b := kitRestore(t, snap, wall), kitRestore(t, snap, wall)
	if a.session == b.session || a.session == r.session || a.session == "" {
		t.Fatalf("sessions %q, %q of two restores of %q's snapshot", a.session, b.session, r.session)
	}
}

// TestSnapshotStepsAreCanonical: the undo and redo steps of a snapshot are written in
// canonical JSON (members sorted), so a restore takes their text as it is. Written with
// "group" first (before session 34), a restore sorted every step: a snapshot of 100,000
// undoable edits allocated 255 MB to restore where it now takes 63.
func TestSnapshotStepsAreCanonical(t *testing.T) {
	r, _ := kitRichReplica(t)
	if _, err := r.Undo(); err != nil { // a redo step too
		t.Fatal(err)
	}
	snap := string(kitSnapshot(t, r))
	for _, name := range []string{"undo", "redo"} {
		raw, ok := memberOf(snap, name)
		if !ok || len(elements(raw)) == 0 {
			t.Fatalf("%s: no steps in %s", name, snap)
		}
		canon, err := canonicalJSON(raw, 64)
		if err != nil {
			t.Fatal(err)
		}
		if canon != raw {
			t.Fatalf("%s steps not canonical:\n got %s\nwant %s", name, raw, canon)
		}
	}
}

// restoreInSteps restores snap with StartRestore and Steps of work, and counts the Steps.
func restoreInSteps(opts Options, snap []byte, work int) (*Replica, int, error) {
	x, err := StartRestore(opts, snap)
	if err != nil {
		return nil, 0, err
	}
	for n := 1; ; n++ {
		r, err := x.Step(work)
		if err != nil {
			if _, again := x.Step(work); again != err {
				return nil, n, fmt.Errorf("a Step after the error %v gave %v", err, again)
			}
			return nil, n, err
		}
		if r != nil {
			if r2, err := x.Step(work); r2 != nil || err != nil {
				return nil, n, fmt.Errorf("a Step after the end gave %v, %v", r2, err)
			}
			return r, n, nil
		}
	}
}

// TestRestoreInSteps: a Restore's Steps, of whatever work, end with the replica a single
// NewReplicaFromSnapshot gives (state, snapshot, undo and redo, outbox), and a Step does a
// bounded share: Steps of 1 take at least as many as the log's operations and undo steps.
func TestRestoreInSteps(t *testing.T) {
	rich, wall := kitRichReplica(t)
	if _, err := rich.Undo(); err != nil { // a redo step too
		t.Fatal(err)
	}
	big := kitReplica(t, "bulk", wall)
	kitOK(t)(big.Seed("feature", kitF2, `{"type":"Feature","properties":{"n":0}}`))
	for b := 0; b < 20; b++ {
		kitNoErr(t, big.StartBatch())
		for i := 0; i < 50; i++ {
			kitSet(t, big, `{"id":"g`+strconv.Itoa(i)+`","layerId":"L1"}`, "properties.v", strconv.Itoa(b))
		}
		kitNoErr(t, big.CommitBatch())
		wall.Advance(1000)
	}
	kitSet(t, big, kitF1, "properties.name", `"queued"`) // in the outbox
	for name, r := range map[string]*Replica{"rich": rich, "bulk": big} {
		snap := kitSnapshot(t, r)
		opts := DefaultOptions()
		opts.Wall = wall
		want := kitRestore(t, snap, wall)
		wantSnap := kitSnapshot(t, want)
		for _, work := range []int{1, 2, 7, 100, math.MaxInt} {
			got, steps, err := restoreInSteps(opts, snap, work)
			if err != nil {
				t.Fatalf("%s, steps of %d: %v", name, work, err)
			}
			if g := kitSnapshot(t, got); !bytes.Equal(g, wantSnap) {
				t.Fatalf("%s, steps of %d: restored to\n%s\nnot\n%s", name, work, g, wantSnap)
			}
			if got.State() != want.State() || got.CanUndo() != want.CanUndo() || got.CanRedo() != want.CanRedo() || got.Pending() != want.Pending() {
				t.Fatalf("%s, steps of %d: state, undo, redo or outbox differ", name, work)
			}
			least := len(want.log.ops) + len(want.undo.undo) + len(want.undo.redo)
			switch {
			case work == 1 && steps < least:
				t.Fatalf("%s: %d Steps of 1 for %d operations and undo steps", name, steps, least)
			case work == math.MaxInt && steps != 1:
				t.Fatalf("%s: %d Steps of any size", name, steps)
			}
		}
		if _, err := kitRestore(t, snap, wall).Undo(); err != nil {
			t.Fatal(err)
		}
	}
	// A damaged snapshot fails at the Step that meets the damage, and every Step after.
	snap := kitSnapshot(t, big)
	bad := bytes.Replace(snap, []byte(`"bases":[[`), []byte(`"bases":[[1,`), 1)
	if bytes.Equal(bad, snap) {
		t.Fatal("no base to damage")
	}
	_, steps, err := restoreInSteps(DefaultOptions(), bad, 5)
	if Code(err) != "bad_snapshot" || steps < 2 {
		t.Fatalf("after %d Steps: %v", steps, err)
	}
}
