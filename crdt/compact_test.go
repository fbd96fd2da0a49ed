package crdt

// Compaction (DESIGN §6, issue 5).

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"unsafe"
	"weak"

	"github.com/mapcrdt/mapcrdt/hlc"
	"github.com/tidwall/gjson"
)

// kitBare is the size of an OperationMessage without its envelope: the operation as the
// log holds it (what CompactStats.Bytes counts).
func kitBare(t testing.TB, msg []byte) int {
	t.Helper()
	prefix := `"kind":"OperationMessage","sender":` + strconv.Quote(gjson.GetBytes(msg, "sender").String()) + `,`
	return len(msg) - len(prefix)
}

func TestCompactDropsSupersededOps(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	alice := kitReplica(t, "alice", wall)
	bob := kitReplica(t, "bob", wall)
	var msgs [][]byte
	edit := func(r *Replica, meta, key, value string) {
		wall.Advance(5)
		kitSet(t, r, meta, key, value)
		m := r.Flush()
		msgs = append(msgs, m...)
		if r == bob {
			kitDeliver(t, m, alice)
		}
	}
	for i := 0; i < 10; i++ {
		edit(alice, kitF1, "geometry", `{"type":"Point","coordinates":[`+strconv.Itoa(i)+`,1]}`)
	}
	edit(alice, kitF1, "properties.name", `"a"`)
	edit(bob, kitF1, "properties.name", `"bob"`)  // supersedes alice's name
	edit(alice, kitF2, "properties.name", `"x"`)  // superseded by the properties write below
	edit(alice, kitF2, "properties.color", `"y"`) // idem
	edit(bob, kitF2, "properties", `{"z":1}`)
	edit(alice, kitF2, "properties.w", `2`) // below, newer: stays
	edit(alice, kitF3, "properties.name", `"gone"`)
	wall.Advance(5)
	kitOK(t)(alice.Delete("feature", kitF3)) // supersedes the update of f3
	msgs = append(msgs, alice.Flush()...)

	dropped := map[int]bool{0: true, 1: true, 2: true, 3: true, 4: true, 5: true, 6: true, 7: true, 8: true, 10: true, 12: true, 13: true, 16: true}
	wantBytes := 0
	for i := range dropped {
		wantBytes += kitBare(t, msgs[i])
	}
	before := alice.State()
	n := alice.LogLen()
	if n != len(msgs) {
		t.Fatalf("LogLen %d before compaction, want %d", n, len(msgs))
	}
	st := alice.Compact()
	if st.Ops != len(dropped) || st.Remaining != n-len(dropped) || alice.LogLen() != st.Remaining {
		t.Errorf("Compact = %+v, LogLen %d; want %d dropped, %d remaining", st, alice.LogLen(), len(dropped), n-len(dropped))
	}
	if st.Bytes != wantBytes {
		t.Errorf("Compact reports %d bytes, want %d (the dropped operations as wire JSON)", st.Bytes, wantBytes)
	}
	if alice.State() != before {
		t.Errorf("Compact changed the state\nbefore %s\nafter  %s", before, alice.State())
	}
	if st := alice.Compact(); st.Ops != 0 || st.Bytes != 0 {
		t.Errorf("a second Compact dropped %+v", st)
	}
	// A replica that syncs from the compacted one converges, with the full vector, and the
	// next live operation is no gap.
	carol := kitReplica(t, "carol", wall)
	kitSync(t, carol, alice)
	kitSameState(t, alice, carol)
	or := newOracle(t)
	for _, m := range msgs {
		or.add(m)
	}
	if got := norm(t, carol.State()); got != or.state() {
		t.Errorf("carol after sync\n got %s\nwant %s", got, or.state())
	}
	if vv := carol.Vector(); vv["alice"] != 16 || vv["bob"] != 2 {
		t.Errorf("carol's vector %v, want alice:16 bob:2", vv)
	}
	wall.Advance(5)
	kitSet(t, alice, kitF1, "properties.color", `"c"`)
	for _, m := range alice.Flush() {
		if res := kitRecv(t, carol, m); len(res.Replies) != 0 {
			t.Errorf("the next live operation looks like a gap: %q", res.Replies)
		}
	}
}

// TestCompactBothSidesThenSync: alice and bob edit the same objects apart, both compact,
// then sync: both equal the replay of every operation ever flushed.
func TestCompactBothSidesThenSync(t *testing.T) {
	for seed := 0; seed < *seeds/10; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 55))
		wa, wb := hlc.NewManualClock(kitT0), hlc.NewManualClock(kitT0+int64(rng.IntN(20)))
		alice := kitReplica(t, "alice", wa)
		bob := kitReplica(t, "bob", wb)
		or := newOracle(t)
		for i := 0; i < 40; i++ {
			wa.Advance(int64(rng.IntN(3)))
			wb.Advance(int64(rng.IntN(3)))
			r := alice
			if rng.IntN(2) == 0 {
				r = bob
			}
			randomEdit(t, rng, r)
			if rng.IntN(4) == 0 {
				for _, m := range r.Flush() {
					or.add(m)
				}
			}
			if rng.IntN(10) == 0 {
				r.Compact()
			}
			if rng.IntN(15) == 0 { // an occasional sync in the middle
				kitSync(t, alice, bob)
			}
		}
		for _, r := range []*Replica{alice, bob} {
			for _, m := range r.Flush() {
				or.add(m)
			}
			r.Compact()
		}
		kitSync(t, alice, bob)
		want := or.state()
		for _, r := range []*Replica{alice, bob} {
			if got := norm(t, r.State()); got != want {
				t.Fatalf("seed %d: %s after sync\n got %s\nwant %s", seed, r.PeerID(), got, want)
			}
		}
		// And a newcomer syncing with either.
		carol := kitReplica(t, "carol", wa)
		kitSync(t, carol, bob)
		if got := norm(t, carol.State()); got != want {
			t.Fatalf("seed %d: carol\n got %s\nwant %s", seed, got, want)
		}
	}
}

// TestCompactKeepsTheOutbox: Compact never drops an operation waiting in the outbox (nor
// the open batch); what leaves afterwards is what would have left without it.
func TestCompactKeepsTheOutbox(t *testing.T) {
	build := func(compact bool) ([][]byte, *Replica) {
		wall := hlc.NewManualClock(kitT0)
		alice := kitReplica(t, "alice", wall)
		bob := kitReplica(t, "bob", hlc.NewManualClock(kitT0+50))
		kitSet(t, alice, kitF1, "properties.name", `"queued 1"`)
		wall.Advance(1)
		kitSet(t, alice, kitF1, "properties.name", `"queued 2"`) // supersedes queued 1
		kitSet(t, alice, kitF1, "properties.color", `"red"`)
		kitSet(t, alice, kitF2, "properties.name", `"overwritten by bob"`)
		kitSet(t, bob, kitF2, "properties.name", `"bob"`)
		kitDeliver(t, bob.Flush(), alice)
		kitNoErr(t, alice.StartBatch())
		kitSet(t, alice, kitF3, "properties.a", `1`)
		if compact {
			alice.Compact()
			if st := alice.Compact(); st.Ops != 0 {
				t.Errorf("second Compact dropped %d", st.Ops)
			}
		}
		kitSet(t, alice, kitF3, "properties.b", `2`)
		kitNoErr(t, alice.CommitBatch())
		if compact {
			alice.Compact()
		}
		return alice.Flush(), alice
	}
	plain, a1 := build(false)
	compacted, a2 := build(true)
	if len(plain) != len(compacted) {
		t.Fatalf("without Compact %d messages leave, with it %d", len(plain), len(compacted))
	}
	for i := range plain {
		if string(plain[i]) != string(compacted[i]) {
			t.Errorf("message %d\nwithout Compact %s\nwith Compact    %s", i, plain[i], compacted[i])
		}
	}
	if len(compacted) != 3 {
		t.Errorf("%d messages leave, want 3 (name, color, the batch)", len(compacted))
	}
	kitSameState(t, a1, a2)
	fresh := kitReplica(t, "carol", hlc.NewManualClock(kitT0+100))
	kitRecv(t, fresh, []byte(`{"kind":"OperationMessage","sender":"bob","verb":"update","subject":"feature","metadata":`+kitF2+`,"key":"properties.name","value":"bob","hlc":"`+hlc.Timestamp{Wall: kitT0 + 50, Peer: "bob"}.String()+`","seq":1}`))
	kitDeliver(t, compacted, fresh)
	kitSameState(t, a2, fresh)
	// The open batch is kept too: compacting in the middle of it loses nothing.
	kitWant(t, a2, "feature", kitF3, "properties", `{"a":1,"b":2}`)
}

// TestCompactThenUndo: undo still works once the operations it refers to are compacted.
func TestCompactThenUndo(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	alice := kitReplica(t, "alice", wall)
	for i := 1; i <= 3; i++ {
		wall.Advance(10)
		kitSet(t, alice, kitF1, "properties.name", strconv.Quote("v"+strconv.Itoa(i)))
		alice.Flush()
	}
	if st := alice.Compact(); st.Ops != 2 {
		t.Fatalf("Compact dropped %d, want 2", st.Ops)
	}
	kitUndo(t, alice)
	kitWant(t, alice, "feature", kitF1, "properties.name", `"v2"`)
	kitUndo(t, alice)
	kitWant(t, alice, "feature", kitF1, "properties.name", `"v1"`)
	alice.Compact()
	kitRedo(t, alice)
	kitRedo(t, alice)
	kitWant(t, alice, "feature", kitF1, "properties.name", `"v3"`)
}

// TestDecimalMatchesStrconv: the compact encoding's integer reader accepts exactly the JSON
// integers of up to 18 digits, with strconv's values.
func TestDecimalMatchesStrconv(t *testing.T) {
	cases := []string{"0", "7", "-0", "-7", "42", "-42", "123456789012345678", "1234567890123456789",
		"01", "", "-", "+1", "1.5", "1e3", " 1", "1 ", "a", "9x", "--1"}
	rng := rand.New(rand.NewPCG(7, 8))
	for n := 0; n < 5000; n++ {
		b := make([]byte, rng.IntN(20))
		for i := range b {
			b[i] = "-0123456789.e"[rng.IntN(13)]
		}
		cases = append(cases, string(b))
	}
	for _, s := range cases {
		for _, signed := range []bool{false, true} {
			got, ok := decimal(s, signed)
			want, err := strconv.ParseInt(s, 10, 64)
			valid := err == nil && len(strings.TrimPrefix(s, "-")) <= 18 && s[0] != '+' &&
				(signed || s[0] != '-') && !(len(strings.TrimPrefix(s, "-")) > 1 && strings.TrimPrefix(s, "-")[0] == '0')
			if ok != valid || (ok && got != want) {
				t.Fatalf("decimal(%q, %v) = %d, %v; want %d, %v", s, signed, got, ok, want, valid)
			}
		}
	}
}

// TestAppendNumAsStrconv: the encoder's numbers are written as strconv writes them, on each
// side of its one-digit case and of hlc.AppendDecimal's range and halves.
func TestAppendNumAsStrconv(t *testing.T) {
	var cases []uint64
	for _, base := range []uint64{0, 10, 100, 1e8, 1e15, 1e16, 1727193549000} {
		for d := uint64(0); d < 3; d++ {
			cases = append(cases, base+d, base-d)
		}
	}
	cases = append(cases, math.MaxUint64, math.MaxUint64-1, 1<<53)
	for i := range uint64(100_000) {
		cases = append(cases, i*i*7919)
	}
	for _, u := range cases {
		if got, want := string(appendNum([]byte("x"), u)), "x"+strconv.FormatUint(u, 10); got != want {
			t.Fatalf("appendNum(%d) = %q, want %q", u, got, want)
		}
	}
}

// appendAdded is the encoding as add builds it: the operations' text kept apart, then the
// object written around the three arrays (what appendState wrote before it wrote the
// operations into its buffer).
func (e *opsEncoder) appendAdded(b []byte, ops []*op) []byte {
	for _, o := range ops {
		e.add(o)
	}
	b = append(b, `{"objects":[`...)
	b = append(b, e.objArr...)
	b = append(b, `],"ops":[`...)
	b = append(b, e.opsArr...)
	b = append(b, `],"peers":[`...)
	b = append(b, e.peerArr...)
	return append(b, "]}"...)
}

// TestAppendStateIsAdded: over random logs of several peers with batches (some of their
// sub-operations superseded), deletes and operations with unknown fields, appendState
// writes what add and appendAdded write, for a response (visible sub-operations only) and
// for a snapshot (all), whatever the size it is told. A failure prints its seed.
func TestAppendStateIsAdded(t *testing.T) {
	for seed := range 60 {
		rng := rand.New(rand.NewPCG(uint64(seed), 11))
		wall := hlc.NewManualClock(1727193549000)
		holder := newTestReplica(t, "holder", wall)
		peers := []*Replica{holder, newTestReplica(t, "p1", wall), newTestReplica(t, "p2", wall)}
		for range 20 + rng.IntN(60) {
			wall.Advance(int64(rng.IntN(3)))
			p := peers[rng.IntN(len(peers))]
			randomEdit(t, rng, p)
			for _, m := range p.Flush() {
				if p != holder {
					if _, err := holder.Receive(m); err != nil {
						t.Fatal(err)
					}
				}
			}
			if rng.IntN(8) == 0 { // an operation with fields the compact form has no place for
				ts := holder.Clock()
				ts.Wall++
				ts.Peer = "p3"
				msg := `{"kind":"OperationMessage","verb":"update","subject":"map","metadata":{},"key":"properties.x","value":1,"hlc":"` + ts.String() + `","extra":[1,{"a":2}]}`
				if _, err := holder.Receive([]byte(msg)); err != nil {
					t.Fatal(err)
				}
			}
		}
		ops := holder.log.ops
		for _, all := range []bool{false, true} {
			ref := newOpsEncoder(&holder.dec)
			ref.all = all
			want := string(ref.appendAdded([]byte("x"), ops))
			for _, size := range []int{0, 1 << 20} {
				e := newOpsEncoder(&holder.dec)
				e.all = all
				if got := string(e.appendState([]byte("x"), ops, size)); got != want {
					t.Fatalf("seed %d, all %v, size %d: appendState wrote\n%.400s\nwant\n%.400s", seed, all, size, got, want)
				}
			}
		}
	}
}

// TestBulkCopies: what bulk hands out is its own: values copied out of a buffer keep their
// text when the buffer is overwritten, across many blocks and past bulkLongText, and each
// operation is a distinct zero op.
func TestBulkCopies(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	var b bulk
	buf := make([]byte, 2*bulkLongText)
	var got, want []string
	for range 5000 {
		n := rng.IntN(len(buf))
		if rng.IntN(4) > 0 {
			n = rng.IntN(64)
		}
		for i := range buf[:n] {
			buf[i] = byte('a' + rng.IntN(26))
		}
		want = append(want, string(buf[:n]))
		got = append(got, b.clone(unsafe.String(unsafe.SliceData(buf), n)))
		for i := range buf {
			buf[i] = 'x'
		}
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("value %d of %d bytes: %.40q, want %.40q", i, len(want[i]), got[i], want[i])
		}
	}
	seen := map[*op]bool{}
	for i := range 3 * bulkOps {
		o := b.next()
		if seen[o] || !o.blk || !reflect.DeepEqual(*o, op{blk: true}) {
			t.Fatalf("op %d: handed out twice, or not zero, or not marked", i)
		}
		seen[o] = true
		o.verb, o.value = VerbUpdate, "v"
	}
}

// blockedRefs lists the references a replica keeps to operations taken from a block
// (op.blk): the log (and batches' sub-operations), the outbox, the open batch, the objects'
// writes, the undo and redo steps.
func blockedRefs(r *Replica) []string {
	var out []string
	check := func(where string, o *op) {
		if o == nil {
			return
		}
		if o.blk {
			out = append(out, where)
		}
		for i, s := range o.subOps() {
			if s.blk {
				out = append(out, where+" sub "+strconv.Itoa(i))
			}
		}
	}
	for i, o := range r.log.ops {
		check("log "+strconv.Itoa(i), o)
	}
	for i, o := range r.outbox {
		check("outbox "+strconv.Itoa(i), o)
	}
	check("open batch", r.batch)
	r.objects.each(func(ob *object) {
		check("root of "+ob.meta, ob.root.op)
		for i, p := range ob.paths {
			check("kept write "+strconv.Itoa(i)+" of "+ob.meta, p.op)
		}
	})
	for name, steps := range map[string][]undoStep{"undo": r.undo.undo, "redo": r.undo.redo} {
		for i, st := range steps {
			for j, e := range st.entries {
				check(name+" step "+strconv.Itoa(i)+" entry "+strconv.Itoa(j), e.by.op)
			}
		}
	}
	return out
}

// TestCompactMovesOperationsOutOfBlocks: operations from every source that takes them from
// blocks — single receives, a catch-up, local edits alone and in batches, an undo, the
// outbox and an open batch — are referenced from blocks no more after Compact, and the
// replica then behaves as a twin that never compacted: same state, same undo and redo,
// the same messages flushed, the same answer to what is received next.
func TestCompactMovesOperationsOutOfBlocks(t *testing.T) {
	build := func(name string) (alice, bob *Replica) {
		wa, wb := hlc.NewManualClock(kitT0), hlc.NewManualClock(kitT0+1)
		alice, bob = kitReplica(t, "alice", wa), kitReplica(t, "bob", wb)
		carol := kitReplica(t, "carol-"+name, hlc.NewManualClock(kitT0+2))
		for i := range 6 { // carol's edits reach alice in a catch-up
			kitSet(t, carol, kitF3, "properties.n"+strconv.Itoa(i%3), strconv.Itoa(i))
		}
		carol.Flush()
		kitSync(t, alice, carol)
		for i := range 300 { // bob's, one message each: several blocks
			wb.Advance(1)
			kitSet(t, bob, kitF1, "properties.k"+strconv.Itoa(i%7), `"b`+strconv.Itoa(i)+`"`)
		}
		kitOK(t)(bob.Apply(Edit{Verb: VerbUpdate, Subject: "feature", Metadata: kitF2, Key: "properties.x", Value: `1`}))
		kitOK(t)(bob.Upsert("datalayer", kitL1, `{"name":"a layer"}`)) // an object's root
		kitDeliver(t, bob.Flush(), alice)
		for i := range 40 {
			wa.Advance(3)
			kitSet(t, alice, kitF2, "properties.a"+strconv.Itoa(i%4), `"a`+strconv.Itoa(i)+`"`)
			alice.Flush()
		}
		if err := alice.StartBatch(); err != nil {
			t.Fatal(err)
		}
		kitSet(t, alice, kitF1, "properties.k1", `"in a batch"`)
		kitSet(t, alice, kitF2, "properties.a1", `"in a batch too"`)
		if err := alice.CommitBatch(); err != nil {
			t.Fatal(err)
		}
		alice.Flush()
		kitUndo(t, alice)
		alice.Flush()
		wa.Advance(3)
		// On another feature: Compact keeps what is superseded on an object that unpublished
		// edits write (see Compact).
		kitSet(t, alice, kitF3, "properties.queued", `"not flushed"`)
		if err := alice.StartBatch(); err != nil {
			t.Fatal(err)
		}
		kitSet(t, alice, kitF3, "properties.open", `"in the open batch"`)
		return alice, bob
	}
	alice, bob := build("a")
	twin, _ := build("b")
	if len(blockedRefs(alice)) == 0 {
		t.Fatal("no operation of the test comes from a block")
	}
	if st := alice.Compact(); st.Ops == 0 {
		t.Fatal("Compact dropped nothing")
	}
	if refs := blockedRefs(alice); len(refs) > 0 {
		t.Fatalf("after Compact, %d references into blocks: %v", len(refs), refs[:min(len(refs), 5)])
	}
	kitSameState(t, alice, twin)
	for _, r := range []*Replica{alice, twin} {
		if err := r.CommitBatch(); err != nil {
			t.Fatal(err)
		}
	}
	same := func(what string, a, b any) {
		t.Helper()
		if ja, jb := strconv.Quote(fmtAny(a)), strconv.Quote(fmtAny(b)); ja != jb {
			t.Errorf("%s: compacted %s, twin %s", what, ja, jb)
		}
	}
	same("flush", alice.Flush(), twin.Flush())
	for range 3 {
		same("undo", kitUndo(t, alice), kitUndo(t, twin))
	}
	same("redo", kitRedo(t, alice), kitRedo(t, twin))
	same("flush after undo", alice.Flush(), twin.Flush())
	kitSet(t, bob, kitF1, "properties.k2", `"later"`)
	msgs := bob.Flush()
	same("receive", kitRecv(t, alice, msgs[0]), kitRecv(t, twin, msgs[0]))
	kitSameState(t, alice, twin)
	if alice.Compact(); len(blockedRefs(alice)) > 0 {
		t.Error("a second Compact leaves references into blocks")
	}
	kitSameState(t, alice, twin)
}

// fmtAny writes v for a comparison: its Go syntax, messages as text.
func fmtAny(v any) string {
	if ms, ok := v.([][]byte); ok {
		var b strings.Builder
		for _, m := range ms {
			b.Write(m)
			b.WriteByte('\n')
		}
		return b.String()
	}
	return fmt.Sprintf("%+v", v)
}

// TestCompactFreesBlocks: the first blocks of operations and of values are garbage after
// Compact — it dropped most of their operations, moved out (with their values) the ones it
// keeps, and copied the values alice's undo wrote again and her redo step holds — and the
// memory comes back; undo and redo still work. Alice's next edit after the undo drops the
// redo step, or she redoes after Compact.
func TestCompactFreesBlocks(t *testing.T) {
	for _, redo := range []bool{true, false} {
		wa, wb := hlc.NewManualClock(kitT0), hlc.NewManualClock(kitT0+1)
		alice, bob := kitReplica(t, "alice", wa), kitReplica(t, "bob", wb)
		send := func(key, value string) {
			wb.Advance(1)
			kitSet(t, bob, kitF1, key, value)
			for _, m := range bob.Flush() {
				kitRecv(t, alice, m)
			}
		}
		long := strings.Repeat("x", 200) // values fill several blocks of text too
		send("properties.a", `"bob's a `+long+`"`)
		first := weak.Make(alice.log.ops[0])
		firstText := weak.Make(unsafe.StringData(alice.log.ops[0].value))
		send("properties.b", `"bob's b"`) // kept
		wa.Advance(1)
		kitSet(t, alice, kitF1, "properties.a", `"alice's a"`)
		kitUndo(t, alice) // writes bob's value again; the step to redo holds alice's
		kept := 3         // bob's b and last name, alice's undo
		if !redo {
			kitSet(t, alice, kitF1, "properties.c", `"alice's c"`) // drops the step to redo
			kept++
		}
		alice.Flush()
		for i := range 3 * bulkOps { // superseded, but for the last
			send("properties.name", `"`+strconv.Itoa(i)+long+`"`)
		}
		if !alice.log.ops[0].blk {
			t.Fatal("a received operation is not taken from a block")
		}
		if st := alice.Compact(); st.Remaining != kept {
			t.Fatalf("redo %v: Compact kept %d operations, want %d", redo, st.Remaining, kept)
		}
		for range 4 {
			runtime.GC()
		}
		if first.Value() != nil {
			t.Errorf("redo %v: the first block of operations is still referenced after Compact", redo)
		}
		if firstText.Value() != nil {
			t.Errorf("redo %v: the first block of values is still referenced after Compact", redo)
		}
		kitWant(t, alice, "feature", kitF1, "properties.a", `"bob's a `+long+`"`)
		kitWant(t, alice, "feature", kitF1, "properties.b", `"bob's b"`)
		kitWant(t, alice, "feature", kitF1, "properties.name", `"`+strconv.Itoa(3*bulkOps-1)+long+`"`)
		if redo {
			kitRedo(t, alice)
			kitWant(t, alice, "feature", kitF1, "properties.a", `"alice's a"`)
		} else {
			kitWant(t, alice, "feature", kitF1, "properties.c", `"alice's c"`)
			kitUndo(t, alice)
			kitWant(t, alice, "feature", kitF1, "properties.c", "")
		}
	}
}

// TestListedObjectsMadeForTheirFirstOperation: the objects of a compact list (a state
// answer, a snapshot) are made when an operation first names them, with room for five
// path writes when that operation is an update — the feature's keys then take no array of
// their own — and in the plain layout when it is an upsert.
func TestListedObjectsMadeForTheirFirstOperation(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	a := kitReplica(t, "a", wall)
	for _, k := range []string{"properties.name", "properties.color", "properties.description", "properties._umap_options.weight", "geometry"} {
		kitOK(t)(a.Update("feature", kitF1, k, `"`+k+`"`))
	}
	kitOK(t)(a.Upsert("feature", kitF2, `{"type":"Feature","properties":{"name":"two"}}`))
	a.Flush()
	snap, err := a.Snapshot()
	kitNoErr(t, err)
	b := kitReplica(t, "b", wall)
	kitSync(t, b, a)
	c, err := NewReplicaFromSnapshot(DefaultOptions(), snap)
	kitNoErr(t, err)
	for _, r := range []*Replica{b, c} {
		kitSameState(t, a, r)
		f1, err := r.identify("feature", kitF1)
		kitNoErr(t, err)
		if len(f1.paths) != 5 || cap(f1.paths) != 5 {
			t.Errorf("%s: f1 holds %d writes in room for %d; want 5 in its own 5", r.PeerID(), len(f1.paths), cap(f1.paths))
		}
		f2, err := r.identify("feature", kitF2)
		kitNoErr(t, err)
		if cap(f2.paths) != 0 {
			t.Errorf("%s: f2, made by an upsert, has room for %d writes", r.PeerID(), cap(f2.paths))
		}
	}
}

// TestCompactRandomTwin: alice edits, undoes, redoes and receives bob's edits at random,
// and compacts at random; her twin does the same but never compacts. Under a small
// message limit (so that the undo history's byte budget drops steps all the time) they
// must send the same messages, report the same changes and skips, hold the same state,
// dirty list and undo and redo steps (as a snapshot writes them), and a newcomer catching
// up from either ends up with the same state. Compact lets go of the values of what it
// drops, and no longer copies the undo steps' values at each call: nothing of this may
// show.
func TestCompactRandomTwin(t *testing.T) {
	compacted, dropped := 0, 0
	for seed := 0; seed < *seeds/10; seed++ {
		wall, wb := hlc.NewManualClock(kitT0), hlc.NewManualClock(kitT0+3)
		lim := kitUndoLimits(2048, 100_000)
		alice, twin := kitReplica(t, "alice", wall, lim), kitReplica(t, "alice", wall, lim)
		bob := kitReplica(t, "bob", wb, lim)
		rng := rand.New(rand.NewPCG(uint64(seed), 91))
		ra, rt := rand.New(rand.NewPCG(uint64(seed), 92)), rand.New(rand.NewPCG(uint64(seed), 92))
		same := func(step int, what string, a, b any) {
			t.Helper()
			if ja, jb := fmtAny(a), fmtAny(b); ja != jb {
				t.Fatalf("seed %d step %d: %s: compacted %s\ntwin %s", seed, step, what, ja, jb)
			}
		}
		for step := 0; step < 120; step++ {
			steps := len(alice.undo.undo)
			wall.Advance(int64(rng.IntN(3)))
			wb.Advance(int64(rng.IntN(3)))
			switch k := rng.IntN(12); {
			case k < 4:
				same(step, "edit", randomEdit(t, ra, alice), randomEdit(t, rt, twin))
				if len(alice.undo.undo) <= steps {
					dropped++ // a step dropped (or joined: the capture interval is 0 here)
				}
			case k < 5:
				randomEdit(t, rng, bob)
			case k < 6:
				same(step, "undo", kitUndo(t, alice), kitUndo(t, twin))
			case k < 7:
				same(step, "redo", kitRedo(t, alice), kitRedo(t, twin))
			case k < 8:
				ma, mt := alice.Flush(), twin.Flush()
				same(step, "flush", ma, mt)
				kitDeliver(t, ma, bob)
			case k < 9:
				for _, m := range bob.Flush() {
					same(step, "receive", kitRecv(t, alice, m), kitRecv(t, twin, m))
				}
			default:
				compacted += alice.Compact().Ops
			}
			same(step, "state", alice.State(), twin.State())
			same(step, "dirty", lcDirty(alice), lcDirty(twin))
			same(step, "undo steps", string(appendSteps(nil, alice.undo.undo)), string(appendSteps(nil, twin.undo.undo)))
			same(step, "redo steps", string(appendSteps(nil, alice.undo.redo)), string(appendSteps(nil, twin.undo.redo)))
		}
		same(-1, "last flush", alice.Flush(), twin.Flush())
		ca, ct := kitReplica(t, "carol", wb, lim), kitReplica(t, "carol", wb, lim)
		kitSync(t, ca, alice)
		kitSync(t, ct, twin)
		same(-1, "a newcomer's state", ca.State(), ct.State())
		same(-1, "a newcomer's state", ca.State(), alice.State())
	}
	if compacted == 0 || dropped == 0 {
		t.Fatalf("Compact dropped %d operations, the undo history %d steps: the test tests nothing", compacted, dropped)
	}
}

// TestCompactKeepsWhatAnUnsentEditSupersedes: doc.go "Compaction": an operation superseded
// only by a local edit not yet published (the outbox, an open batch) is kept, and sent —
// that edit may never go out (a tab closed before the flush).
func TestCompactKeepsWhatAnUnsentEditSupersedes(t *testing.T) {
	for _, inBatch := range []bool{false, true} {
		wall := hlc.NewManualClock(kitT0)
		alice := kitReplica(t, "alice", wall)
		bob := kitReplica(t, "bob", wall)
		kitSet(t, bob, kitF1, "properties.name", `"bob"`)
		kitDeliver(t, bob.Flush(), alice)
		wall.Advance(5)
		if inBatch {
			kitNoErr(t, alice.StartBatch())
		}
		kitSet(t, alice, kitF1, "properties.name", `"alice, unsent"`)
		if st := alice.Compact(); st.Ops != 0 {
			t.Errorf("batch %v: Compact dropped %d operations", inBatch, st.Ops)
		}
		// The tab closes: what alice held reaches carol, bob's edit included.
		carol := kitReplica(t, "carol", wall)
		kitSync(t, carol, alice)
		kitWant(t, carol, "feature", kitF1, "properties.name", `"bob"`)
	}
}

// TestCompactKeepsVisibleOperationsBelowTheSavedHorizon: doc.go "Compaction": an operation
// still visible is kept however old the saved horizon: dropped, it would let an older write
// from an offline peer win where it must not.
func TestCompactKeepsVisibleOperationsBelowTheSavedHorizon(t *testing.T) {
	wall := hlc.NewManualClock(kitT0)
	alice := kitReplica(t, "alice", wall)
	bob := kitReplica(t, "bob", wall) // offline
	kitSet(t, bob, kitF1, "properties.name", `"bob, offline"`)
	bob.Flush()
	wall.Advance(10)
	kitSet(t, alice, kitF1, "properties.name", `"alice, later"`)
	alice.Flush()
	wall.Advance(10)
	kitNoErr(t, alice.MarkSaved(alice.Clock()))
	if st := alice.Compact(); st.Ops != 0 {
		t.Fatalf("Compact dropped %d operations, all visible", st.Ops)
	}
	kitSync(t, alice, bob) // bob comes back with his older edit
	kitWant(t, alice, "feature", kitF1, "properties.name", `"alice, later"`)
	kitSameState(t, alice, bob)
}

// TestCompactedDuplicateIsADuplicate: an operation Compact dropped (superseded) that
// arrives again — a duplicate on the network, a relay's resend; a batch's too — is a duplicate as it is
// to a replica that never compacted: the vector holds its seq. Taken as new, it moved the
// clock, which splits an open batch into two messages (seed 98 of
// TestMetamorphicCompactSnapshotPaging), and went back into the log.
func TestCompactedDuplicateIsADuplicate(t *testing.T) {
	for _, c := range []struct{ compact, batch bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		compact := c.compact
		wall := hlc.NewManualClock(kitT0)
		alice, bob := kitReplica(t, "alice", wall), kitReplica(t, "bob", wall)
		if c.batch { // a batch operation: ingest's path for several operations
			kitNoErr(t, bob.StartBatch())
			kitSet(t, bob, kitF1, "properties.color", `"bob"`)
		}
		kitSet(t, bob, kitF1, "properties.name", `"bob"`)
		if c.batch {
			kitNoErr(t, bob.CommitBatch())
		}
		dup := bob.Flush()
		kitDeliver(t, dup, alice)
		if c.batch {
			kitSet(t, bob, kitF1, "properties.color", `"bob again"`) // the batch's other write superseded
			kitDeliver(t, bob.Flush(), alice)
		}
		wall.Advance(1)
		kitSet(t, alice, kitF1, "properties.name", `"alice"`)
		alice.Flush()
		if compact {
			if st := alice.Compact(); st.Ops != 1 {
				t.Fatalf("Compact dropped %d operations, want bob's", st.Ops)
			}
		}
		wall.Advance(1)
		kitNoErr(t, alice.StartBatch())
		kitSet(t, alice, kitF2, "properties.name", `"one"`)
		wall.Advance(1)
		logLen := alice.LogLen()
		if res := kitRecv(t, alice, dup[0]); len(res.Changes) != 0 || len(res.Replies) != 0 {
			t.Fatalf("compact %v: a duplicate changed %v, replied %q", compact, res.Changes, res.Replies)
		}
		if alice.LogLen() != logLen {
			t.Errorf("compact %v: a duplicate took the log from %d to %d operations", compact, logLen, alice.LogLen())
		}
		kitSet(t, alice, kitF2, "properties.color", `"red"`)
		kitNoErr(t, alice.CommitBatch())
		if msgs := alice.Flush(); len(msgs) != 1 {
			t.Errorf("compact %v: the batch went out as %d messages, want 1 (a duplicate moved the clock)", compact, len(msgs))
		}
	}
}
