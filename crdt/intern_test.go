package crdt

import (
	"runtime"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/mapcrdt/mapcrdt/hlc"
)

// internSizes are the sizes of the decoder's interning tables.
type internSizes struct {
	peers, parts, paths, keys, keyTexts, keyBytes int
}

func kitInterned(r *Replica) internSizes {
	d := &r.dec
	return internSizes{len(d.peers), len(d.parts), len(d.paths), len(d.byKey), d.keyText.n, d.keyBytes}
}

// kitRefusedMessages returns messages, each naming peer ids and keys never seen (made of
// tag and i), that a replica at kitInternT0 refuses — each in another place of the decoding
// or after it, through each way a message is read (the fast paths, the general parser, an
// operation list, the compact encoding) — and what each is.
func kitRefusedMessages(tag string, i int) (names []string, msgs []string) {
	n := tag + strconv.Itoa(i)
	peer := strings.Repeat("p", 100) + n
	key := "properties." + strings.Repeat("k", 200) + n
	meta := `{"id":"f` + n + `","layerId":"L"}`
	ahead := strconv.FormatInt(kitInternT0+120_000, 10) // past MaxDrift
	now := strconv.FormatInt(kitInternT0, 10)
	add := func(name, msg string) {
		names = append(names, name)
		msgs = append(msgs, msg)
	}
	add("canonical, clock_drift", `{"hlc":"`+ahead+`:0:`+peer+`","key":"`+key+`","kind":"OperationMessage","metadata":`+meta+`,"sender":"m","seq":1,"subject":"feature","value":1,"verb":"update"}`)
	add("uMap's order, clock_drift", `{"kind":"OperationMessage","sender":"m","verb":"update","subject":"feature","metadata":`+meta+`,"key":"`+key+`","value":1,"hlc":"`+ahead+`:0:`+peer+`","seq":1}`)
	add("general parser, clock_drift", `{ "kind":"OperationMessage","verb":"update","subject":"feature","metadata":`+meta+`,"key":"`+key+`.a\\.b","value":1,"hlc":"`+ahead+`:0:`+peer+`x","seq":1}`)
	add("too deep after its key", `{"kind":"OperationMessage","sender":"m","verb":"update","subject":"feature","metadata":`+meta+`,"key":"`+key+`","value":`+strings.Repeat("[", 70)+strings.Repeat("]", 70)+`,"hlc":"`+now+`:0:`+peer+`","seq":1}`)
	add("batch, its last operation bad", `{"kind":"OperationMessage","verb":"batch","hlc":"`+now+`:0:`+peer+`","seq":1,"operations":[`+
		`{"verb":"update","subject":"feature","metadata":`+meta+`,"key":"`+key+`.one","value":1},`+
		`{"verb":"update","subject":"feature","metadata":`+meta+`,"key":"`+key+`.two","value":1},`+
		`{"verb":"update","subject":"nope","metadata":`+meta+`,"key":"`+key+`.three","value":1}]}`)
	add("own origin, a seq never made", `{"kind":"OperationMessage","sender":"m","verb":"update","subject":"feature","metadata":`+meta+`,"key":"`+key+`","value":1,"hlc":"`+now+`:0:alice","seq":99}`)
	var peers, ops strings.Builder
	for j := range 50 {
		if j > 0 {
			peers.WriteByte(',')
			ops.WriteByte(',')
		}
		peers.WriteString(`"` + peer + "_" + strconv.Itoa(j) + `"`)
		w := "0"
		if j == 0 {
			w = now
		}
		ops.WriteString(`[` + w + `,0,` + strconv.Itoa(j) + `,1,1,0,"` + key + `.` + strconv.Itoa(j) + `",1]`)
	}
	compact := func(last string) string {
		return `{"kind":"PeerMessage","sender":"m","recipient":"alice","message":{"state":{"objects":[["feature",` + meta + `]],"ops":[` +
			ops.String() + `,` + last + `],"peers":[` + peers.String() + `]},"vector":{},"verb":"ListOperationsResponse"}}`
	}
	add("compact response, a bad key last", compact(`[1,0,0,2,1,0,"properties..bad",1]`))
	add("compact response, clock_drift last", compact(`[120000,0,1,2,1,0,"`+key+`.late",1]`))
	add("compact response, a bad peer index last", compact(`[1,0,50,2,1,0,"`+key+`.late",1]`))
	add("operation list, clock_drift last", `{"kind":"PeerMessage","sender":"m","recipient":"alice","message":{"operations":[`+
		`{"hlc":"`+now+`:0:`+peer+`","key":"`+key+`","metadata":`+meta+`,"seq":1,"subject":"feature","value":1,"verb":"update"},`+
		`{"hlc":"`+ahead+`:0:`+peer+`y","key":"`+key+`.b","metadata":`+meta+`,"seq":1,"subject":"feature","value":1,"verb":"update"}],"vector":{},"verb":"ListOperationsResponse"}}`)
	return names, msgs
}

const kitInternT0 = 1_700_000_000_000

// TestRefusedMessagesInternNothing: a refused message leaves none of the peer ids and keys
// it named in the decoder's tables (they had no bound for peer ids, and held up to 65,536
// paths of up to 1 KiB — about 350 MB — for messages the replica never took), nor in its
// caches of the last peer and keys; a local edit refused after its key was read neither.
func TestRefusedMessagesInternNothing(t *testing.T) {
	wall := hlc.NewManualClock(kitInternT0)
	a := kitReplica(t, "alice", wall)
	// Tables not empty, alice has stamped (her own origin's seqs are hers), and the last
	// peer is set.
	kitSet(t, a, `{"id":"f0","layerId":"L"}`, "properties.name", `"a"`)
	a.Flush()
	for i := range 3 {
		kitRecv(t, a, []byte(`{"kind":"OperationMessage","sender":"bob","verb":"update","subject":"feature","metadata":{"id":"f0","layerId":"L"},"key":"properties.b","value":1,"hlc":"`+strconv.FormatInt(kitInternT0, 10)+`:`+strconv.Itoa(i)+`:bob","seq":`+strconv.Itoa(i+1)+`}`))
	}
	before, state, logLen := kitInterned(a), a.State(), a.LogLen()
	lastPeer := a.dec.lastPeer
	for i := range 20 {
		names, msgs := kitRefusedMessages("r", i)
		for k, msg := range msgs {
			if _, err := a.Receive([]byte(msg)); err == nil {
				t.Fatalf("%s: accepted", names[k])
			}
			if got := kitInterned(a); got != before {
				t.Fatalf("%s: the tables went from %+v to %+v", names[k], before, got)
			}
			if a.dec.lastPeer != lastPeer && a.dec.lastPeer != "" {
				t.Fatalf("%s: the last peer is %q", names[k], a.dec.lastPeer)
			}
		}
		// A local edit refused once its key is read.
		key := "properties.local" + strconv.Itoa(i)
		if _, err := a.Update("feature", `{"id":"f0","layerId":"L"}`, key, strings.Repeat("[", 70)+strings.Repeat("]", 70)); err == nil {
			t.Fatal("a local edit too deep accepted")
		}
		if got := kitInterned(a); got != before {
			t.Fatalf("a refused local edit: the tables went from %+v to %+v", before, got)
		}
	}
	for _, s := range a.dec.keySlots {
		if s.path != nil && a.dec.byKey[s.key].path == nil {
			t.Errorf("key slot %q is not an entry of byKey", s.key)
		}
	}
	if a.State() != state || a.LogLen() != logLen {
		t.Error("refused messages changed the replica")
	}
}

// TestRefusedFloodRetainsNothing is the reviewer's measure: a flood of refused messages
// (clock_drift), each naming a new 100-byte peer id and a new ~900-byte key, grew the heap
// by ~5 KB a message (164 B of it the peer id), without limit.
func TestRefusedFloodRetainsNothing(t *testing.T) {
	wall := hlc.NewManualClock(kitInternT0)
	a := kitReplica(t, "alice", wall)
	before := kitInterned(a)
	heap := kitHeap()
	pad, keyPad := strings.Repeat("p", 100), strings.Repeat("k", 900)
	const n = 20_000
	for i := range n {
		msg := `{"kind":"OperationMessage","sender":"m","verb":"update","subject":"feature","metadata":{"id":"f","layerId":"L"},"key":"properties.` +
			keyPad + strconv.Itoa(i) + `","value":1,"hlc":"1800000000000:0:` + pad + strconv.Itoa(i) + `","seq":1}`
		if _, err := a.Receive([]byte(msg)); err == nil {
			t.Fatal("accepted")
		}
	}
	if got := kitInterned(a); got != before {
		t.Errorf("%d refused messages: the tables went from %+v to %+v", n, before, got)
	}
	if grew := int64(kitHeap()) - int64(heap); grew > 8<<20 {
		t.Errorf("%d refused messages grew the heap by %d MB", n, grew>>20)
	}
	runtime.KeepAlive(a)
}

func kitHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestRefusedThenAcceptedInterns: a peer id and key first met in a refused message are
// interned when a message naming them is taken: shared by the operations, the key text
// remembered.
func TestRefusedThenAcceptedInterns(t *testing.T) {
	wall := hlc.NewManualClock(kitInternT0)
	a := kitReplica(t, "alice", wall)
	msg := func(wall int64, seq int) []byte {
		return []byte(`{"kind":"OperationMessage","sender":"m","verb":"update","subject":"feature","metadata":{"id":"f","layerId":"L"},"key":"properties.a\\.b","value":1,"hlc":"` +
			strconv.FormatInt(wall, 10) + `:0:carol","seq":` + strconv.Itoa(seq) + `}`)
	}
	before := kitInterned(a)
	if _, err := a.Receive(msg(kitInternT0+120_000, 1)); err == nil {
		t.Fatal("accepted")
	}
	if got := kitInterned(a); got != before {
		t.Fatalf("the tables went from %+v to %+v", before, got)
	}
	for seq := 1; seq <= 2; seq++ {
		kitRecv(t, a, msg(kitInternT0+int64(seq), seq))
	}
	got := kitInterned(a)
	if want := (internSizes{peers: 1, parts: 2, paths: 1, keys: 1, keyTexts: 1, keyBytes: len("properties\x00a.b") + len(`properties.a\.b`)}); got != want {
		t.Errorf("tables %+v, want %+v", got, want)
	}
	o := a.log.ops[len(a.log.ops)-1]
	shared := a.dec.paths["properties\x00a.b"]
	if len(o.path) == 0 || &o.path[0] != &shared[0] || unsafe.StringData(o.ts.Peer) != unsafe.StringData(a.dec.peers["carol"]) {
		t.Error("the operation does not hold the interned path and peer id")
	}
	if k := a.dec.keyOf(o.path); k != `properties.a\.b` || a.dec.keyText.get(pathKey(o.path)) == nil {
		t.Errorf("the key text of the path is not remembered (%q)", k)
	}
	kitWant(t, a, "feature", `{"id":"f","layerId":"L"}`, `properties.a\.b`, "1")
}

// TestInternBounds: what accepted messages make the decoder intern is bounded — peer ids
// by number, paths by number and by bytes of key text (65,536 paths of 1 KiB took ~350 MB)
// — and what is past the bounds is taken all the same, its path or peer id owned by the
// operation instead of shared.
func TestInternBounds(t *testing.T) {
	wall := hlc.NewManualClock(kitInternT0)
	a := kitReplica(t, "alice", wall)
	b := kitReplica(t, "bob", wall)
	keyPad := strings.Repeat("k", 1000)
	n := maxKeyBytes/1000 + 100
	for i := range n {
		kitSet(t, b, `{"id":"f","layerId":"L"}`, "properties."+strconv.Itoa(i)+keyPad, strconv.Itoa(i))
		if i%1000 == 999 {
			kitDeliver(t, b.Flush(), a)
		}
	}
	kitDeliver(t, b.Flush(), a)
	for _, r := range []*Replica{a, b} {
		if d := &r.dec; d.keyBytes > maxKeyBytes || len(d.paths) >= n || len(d.byKey) >= n {
			t.Errorf("%s: %d paths and %d keys interned, %d bytes of key text", r.PeerID(), len(d.paths), len(d.byKey), d.keyBytes)
		}
	}
	kitSameState(t, a, b)
	last := "properties." + strconv.Itoa(n-1) + keyPad
	kitWant(t, a, "feature", `{"id":"f","layerId":"L"}`, last, strconv.Itoa(n-1))
	c := kitReplica(t, "carol", wall)
	kitSync(t, c, a)
	kitSameState(t, a, c)

	// Peer ids: one operation each from maxPeers + 10 peers.
	p := kitReplica(t, "pat", wall)
	for i := range maxPeers + 10 {
		kitRecv(t, p, []byte(`{"kind":"OperationMessage","sender":"m","verb":"update","subject":"feature","metadata":{"id":"f","layerId":"L"},"key":"properties.n","value":`+
			strconv.Itoa(i)+`,"hlc":"`+strconv.FormatInt(kitInternT0, 10)+`:`+strconv.Itoa(i)+`:peer-`+strconv.Itoa(i)+`","seq":1}`))
	}
	if len(p.dec.peers) != maxPeers {
		t.Errorf("%d peer ids interned, want %d", len(p.dec.peers), maxPeers)
	}
	kitWant(t, p, "feature", `{"id":"f","layerId":"L"}`, "properties.n", strconv.Itoa(maxPeers+9))
	if o := p.log.ops[len(p.log.ops)-1]; o.ts.Peer != "peer-"+strconv.Itoa(maxPeers+9) {
		t.Errorf("the last operation's peer is %q", o.ts.Peer)
	}
}

// TestRefusedOperationsRetainNothing: the operations and objects of refused messages are
// taken from blocks shared with those of accepted ones (bulk, objectBlocks), which live as
// long as any of theirs does; a refused operation or object left there kept its value,
// metadata, path and peer id as long. Here 40 accepted operations, each among 127 refused
// ones with a value of 100 KB or new metadata of 50 KB, kept ~360 MB through the
// operations and ~100 MB through the objects.
func TestRefusedOperationsRetainNothing(t *testing.T) {
	wall := hlc.NewManualClock(kitInternT0)
	a := kitReplica(t, "alice", wall)
	heap := kitHeap()
	big := `"` + strings.Repeat("v", 100_000) + `"`
	long := strings.Repeat("t", 50_000)
	now := strconv.FormatInt(kitInternT0, 10)
	for i := range 40 {
		n := strconv.Itoa(i)
		kitRecv(t, a, []byte(`{"kind":"OperationMessage","sender":"bob","verb":"update","subject":"feature","metadata":{"id":"g`+n+`","layerId":"L"},"key":"properties.x","value":`+n+`,"hlc":"`+now+`:`+n+`:bob","seq":`+strconv.Itoa(i+1)+`}`))
		for j := range 127 {
			m := strconv.Itoa(j)
			var msg string
			switch j % 3 {
			case 0: // clock_drift, a large value
				msg = `{"kind":"OperationMessage","sender":"m","verb":"update","subject":"feature","metadata":{"id":"g` + n + `","layerId":"L"},"key":"properties.y","value":` + big + `,"hlc":"1800000000000:0:mallory","seq":1}`
			case 1: // a batch refused at its last operation, large values before
				msg = `{"kind":"OperationMessage","verb":"batch","hlc":"` + now + `:0:mallory","seq":1,"operations":[` +
					`{"verb":"update","subject":"feature","metadata":{"id":"h` + n + "_" + m + `","layerId":"L","featureType":"` + long + `"},"key":"properties.y","value":` + big + `},` +
					`{"verb":"update","subject":"nope","metadata":{"id":"f","layerId":"L"},"key":"properties.y","value":1}]}`
			default: // clock_drift, a new object with large metadata
				msg = `{"kind":"OperationMessage","sender":"m","verb":"upsert","subject":"feature","metadata":{"id":"h` + n + "_" + m + `","layerId":"L","featureType":"` + long + `"},"value":{"a":` + big + `},"hlc":"1800000000000:0:mallory","seq":1}`
			}
			if _, err := a.Receive([]byte(msg)); err == nil {
				t.Fatal("accepted")
			}
		}
	}
	if grew := int64(kitHeap()) - int64(heap); grew > 16<<20 {
		t.Errorf("40 accepted operations among 5,080 refused ones: the heap grew by %d MB", grew>>20)
	}
	if a.LogLen() != 40 {
		t.Fatalf("log of %d operations, want 40", a.LogLen())
	}
	for i := range 40 {
		kitWant(t, a, "feature", `{"id":"g`+strconv.Itoa(i)+`","layerId":"L"}`, "properties.x", strconv.Itoa(i))
	}
	b := kitReplica(t, "bob", wall)
	kitSync(t, b, a)
	kitSameState(t, a, b)
	a.Compact()
	kitSameState(t, a, b)
	runtime.KeepAlive(a)
}

// TestDuplicatesRetainNothing: an operation received again (a peer's resend, a catch-up
// overlapping live messages, or a hostile peer replaying one) is decoded — its value
// copied — before the log tells it is held already. The copy was kept by the block the
// duplicate was taken from as long as any operation of that block lived: a replayed
// 20 KB edit grew the heap by 20 KB each time, without limit.
func TestDuplicatesRetainNothing(t *testing.T) {
	wall := hlc.NewManualClock(kitInternT0)
	a := kitReplica(t, "alice", wall)
	heap := kitHeap()
	big := `"` + strings.Repeat("v", 20_000) + `"`
	now := strconv.FormatInt(kitInternT0, 10)
	sub := func(n string) string {
		return `{"verb":"update","subject":"feature","metadata":{"id":"g` + n + `","layerId":"L"},"key":"properties.x","value":` + big
	}
	clock := func(seq int) string {
		return `"hlc":"` + now + `:` + strconv.Itoa(seq) + `:bob","seq":` + strconv.Itoa(seq)
	}
	seq := 0
	for i := range 40 {
		n := strconv.Itoa(i)
		seq++
		one := `{"kind":"OperationMessage","sender":"bob",` + sub(n)[1:] + `,` + clock(seq) + `}`
		seq++
		batch := `{"kind":"OperationMessage","sender":"bob","verb":"batch",` + clock(seq) + `,"operations":[` + sub(n+"b") + `}]}`
		kitRecv(t, a, []byte(one))
		kitRecv(t, a, []byte(batch))
		for range 60 {
			kitRecv(t, a, []byte(one))   // ingestOne's duplicate
			kitRecv(t, a, []byte(batch)) // insertMany's
		}
	}
	if grew := int64(kitHeap()) - int64(heap); grew > 16<<20 {
		t.Errorf("80 operations received 61 times each: the heap grew by %d MB", grew>>20)
	}
	if a.LogLen() != 80 {
		t.Fatalf("log of %d operations, want 80", a.LogLen())
	}
	for i := range 40 {
		kitWant(t, a, "feature", `{"id":"g`+strconv.Itoa(i)+`","layerId":"L"}`, "properties.x", big)
		kitWant(t, a, "feature", `{"id":"g`+strconv.Itoa(i)+`b","layerId":"L"}`, "properties.x", big)
	}
	b := kitReplica(t, "bob2", wall)
	kitSync(t, b, a)
	kitSameState(t, a, b)
	runtime.KeepAlive(a)
}
