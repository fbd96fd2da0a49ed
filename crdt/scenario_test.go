package crdt

// Scenarios a uMap developer would write: two or three replicas with wall clocks the test
// moves by hand, messages delivered in the order the scenario needs, and the visible result
// (State, Get, the changes Receive returns) checked against what a person looking at the map
// expects.

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mapcrdt/mapcrdt/hlc"
	"github.com/tidwall/gjson"
)

// t0 is the scenarios' epoch: uMap's example clock, 2024-09-24, in milliseconds.
const t0 int64 = 1_727_184_449_000

// Metadata of the objects the scenarios edit.
const (
	metaL1  = `{"id":"L1"}`
	metaL2  = `{"id":"L2"}`
	metaF1  = `{"id":"f1","layerId":"L1","featureType":"marker"}`
	metaF2  = `{"id":"f2","layerId":"L1","featureType":"polygon"}`
	metaMap = `{}`
)

// stamp returns uMap's clock text for wall (ms after t0), counter and peer.
func stamp(ms int64, counter uint32, peer string) string {
	return hlc.Timestamp{Wall: t0 + ms, Counter: counter, Peer: peer}.String()
}

// wop is an operation as a remote peer would send it.
type wop struct {
	verb, subject, meta string
	key                 string // update only; "-" leaves the key out
	value               string // raw JSON; "" leaves the value out (an unset, for an update)
	hlc                 string // top-level only
	seq                 uint64 // 0 leaves seq out (uMap's plain Journal)
	extra               string // raw members added as they are: `"foo":1`
	ops                 []wop  // batch
}

func (w wop) appendJSON(b []byte) []byte {
	b = append(b, `{"verb":`...)
	b = strconv.AppendQuote(b, w.verb)
	if w.subject != "" {
		b = append(b, `,"subject":`...)
		b = strconv.AppendQuote(b, w.subject)
	}
	if w.meta != "" {
		b = append(b, `,"metadata":`...)
		b = append(b, w.meta...)
	}
	if w.key != "" && w.key != "-" {
		b = append(b, `,"key":`...)
		b = appendString(b, w.key)
	}
	if w.value != "" {
		b = append(b, `,"value":`...)
		b = append(b, w.value...)
	}
	if w.ops != nil {
		b = append(b, `,"operations":[`...)
		for i, s := range w.ops {
			if i > 0 {
				b = append(b, ',')
			}
			b = s.appendJSON(b)
		}
		b = append(b, ']')
	}
	if w.hlc != "" {
		b = append(b, `,"hlc":`...)
		b = strconv.AppendQuote(b, w.hlc)
	}
	if w.seq != 0 {
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, w.seq, 10)
	}
	if w.extra != "" {
		b = append(b, ',')
		b = append(b, w.extra...)
	}
	return append(b, '}')
}

// msg returns w as an OperationMessage sent by the peer of its clock.
func (w wop) msg() []byte {
	ts, err := hlc.Parse(w.hlc)
	sender := "relay"
	if err == nil {
		sender = ts.Peer
	}
	b := []byte(`{"kind":"OperationMessage","sender":`)
	b = strconv.AppendQuote(b, sender)
	op := w.appendJSON(nil)
	b = append(b, ',')
	return append(b, op[1:]...)
}

// listResponse wraps operations in a ListOperationsResponse PeerMessage to recipient.
func listResponse(sender, recipient string, ops ...wop) []byte {
	b := []byte(`{"kind":"PeerMessage","sender":`)
	b = strconv.AppendQuote(b, sender)
	b = append(b, `,"recipient":`...)
	b = strconv.AppendQuote(b, recipient)
	b = append(b, `,"message":{"verb":"ListOperationsResponse","operations":[`...)
	for i, o := range ops {
		if i > 0 {
			b = append(b, ',')
		}
		b = o.appendJSON(b)
	}
	return append(b, "]}}"...)
}

// newScenarioReplica returns a replica named peer whose wall clock reads t0+ms.
func newScenarioReplica(t testing.TB, peer string, ms int64) (*Replica, *hlc.ManualClock) {
	t.Helper()
	wall := hlc.NewManualClock(t0 + ms)
	return newTestReplica(t, peer, wall), wall
}

func recv(t testing.TB, r *Replica, msg []byte) Result {
	t.Helper()
	res, err := r.Receive(msg)
	if err != nil {
		t.Fatalf("%s receives %s: %v", r.PeerID(), msg, err)
	}
	return res
}

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// flushTo publishes from's outbox and delivers every message to each of to, in order.
func flushTo(t testing.TB, from *Replica, to ...*Replica) [][]byte {
	t.Helper()
	msgs := from.Flush()
	for _, r := range to {
		for _, m := range msgs {
			recv(t, r, m)
		}
	}
	return msgs
}

// syncPair runs the sync protocol between a and b until neither has anything to say.
func syncPair(t testing.TB, a, b *Replica) {
	t.Helper()
	type hop struct {
		to  *Replica
		msg []byte
	}
	other := func(r *Replica) *Replica {
		if r == a {
			return b
		}
		return a
	}
	queue := []hop{{b, a.SyncRequest(b.PeerID())}}
	for n := 0; len(queue) > 0; n++ {
		if n > 20 {
			t.Fatal("sync does not end")
		}
		h := queue[0]
		queue = queue[1:]
		for _, reply := range recv(t, h.to, h.msg).Replies {
			queue = append(queue, hop{other(h.to), reply})
		}
	}
}

// describe renders changes one per line: `kind subject layer/id key = value`.
func describe(changes []Change) []string {
	out := []string{}
	for _, c := range changes {
		s := string(c.Kind) + " " + c.Subject
		if id := identity(c.Metadata); id != "" {
			s += " " + id
		}
		if c.Key != "" {
			s += " " + c.Key
		}
		if c.Value != "" {
			s += " = " + c.Value
		}
		out = append(out, s)
	}
	return out
}

func identity(meta string) string {
	id := gjson.Get(meta, "id").String()
	if l := gjson.Get(meta, "layerId"); l.Exists() {
		return l.String() + "/" + id
	}
	return id
}

func wantChanges(t testing.TB, what string, got []Change, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if g := describe(got); !slices.Equal(g, want) {
		t.Errorf("%s: changes\n got %q\nwant %q", what, g, want)
	}
}

// wantGet checks the visible value at key of an object ("" key: the whole object; "" want:
// absent).
func wantGet(t testing.TB, r *Replica, subject, meta, key, want string) {
	t.Helper()
	got, ok, err := r.Get(subject, meta, key)
	if err != nil {
		t.Fatalf("%s: Get(%s, %s, %q): %v", r.PeerID(), subject, meta, key, err)
	}
	switch {
	case want == "" && ok:
		t.Errorf("%s: Get(%s, %s, %q) = %s, want absent", r.PeerID(), subject, meta, key, got)
	case want != "" && !ok:
		t.Errorf("%s: Get(%s, %s, %q) absent, want %s", r.PeerID(), subject, meta, key, want)
	case want != "" && got != want:
		t.Errorf("%s: Get(%s, %s, %q) = %s, want %s", r.PeerID(), subject, meta, key, got, want)
	}
}

func wantSameState(t testing.TB, rs ...*Replica) {
	t.Helper()
	for _, r := range rs[1:] {
		if r.State() != rs[0].State() {
			t.Errorf("%s and %s differ\n%s: %s\n%s: %s", rs[0].PeerID(), r.PeerID(),
				rs[0].PeerID(), rs[0].State(), r.PeerID(), r.State())
		}
	}
}

func TestScenarioConcurrentWritesToOneKey(t *testing.T) {
	tests := []struct {
		name         string
		aliceMs      int64 // alice's wall clock, ms after t0
		bobMs        int64
		bobFirst     bool // bob edits first (same millisecond: counter ties break nothing)
		winner, lose string
	}{
		{name: "bob's wall clock is later", aliceMs: 10, bobMs: 20, winner: "bob", lose: "alice"},
		{name: "alice's wall clock is later", aliceMs: 30, bobMs: 20, winner: "alice", lose: "bob"},
		{name: "same millisecond: the peer id breaks the tie", aliceMs: 10, bobMs: 10, winner: "bob", lose: "alice"},
		{name: "same millisecond, bob first: still the peer id", aliceMs: 10, bobMs: 10, bobFirst: true, winner: "bob", lose: "alice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			alice, _ := newScenarioReplica(t, "alice", tc.aliceMs)
			bob, _ := newScenarioReplica(t, "bob", tc.bobMs)
			edit := func(r *Replica) {
				must[[]Change](t)(r.Update("feature", metaF1, "properties.name", strconv.Quote(r.PeerID())))
			}
			if tc.bobFirst {
				edit(bob)
				edit(alice)
			} else {
				edit(alice)
				edit(bob)
			}
			fromAlice, fromBob := alice.Flush(), bob.Flush()
			aliceSees := recv(t, alice, fromBob[0]).Changes
			bobSees := recv(t, bob, fromAlice[0]).Changes

			want := strconv.Quote(tc.winner)
			wantGet(t, alice, "feature", metaF1, "properties.name", want)
			wantGet(t, bob, "feature", metaF1, "properties.name", want)
			wantSameState(t, alice, bob)
			// The loser sees the winner's value; the winner sees nothing change.
			loserSees, winnerSees := aliceSees, bobSees
			if tc.winner == "alice" {
				loserSees, winnerSees = bobSees, aliceSees
			}
			wantChanges(t, tc.lose+" receives", loserSees, "set feature L1/f1 properties.name = "+want)
			wantChanges(t, tc.winner+" receives", winnerSees)
		})
	}
}

func TestScenarioUpdateOlderThanDeleteIsIgnored(t *testing.T) {
	carol, _ := newScenarioReplica(t, "carol", 100)
	upsert := wop{verb: "upsert", subject: "feature", meta: metaF1, value: `{"type":"Feature","properties":{"name":"tree"}}`, hlc: stamp(1, 0, "alice"), seq: 1}
	update := wop{verb: "update", subject: "feature", meta: metaF1, key: "properties.name", value: `"oak"`, hlc: stamp(2, 0, "bob"), seq: 1}
	del := wop{verb: "delete", subject: "feature", meta: metaF1, hlc: stamp(3, 0, "alice"), seq: 2}
	later := wop{verb: "update", subject: "feature", meta: metaF1, key: "properties.name", value: `"birch"`, hlc: stamp(4, 0, "bob"), seq: 2}

	wantChanges(t, "upsert", recv(t, carol, upsert.msg()).Changes,
		`created feature L1/f1 = {"properties":{"name":"tree"},"type":"Feature"}`)
	wantChanges(t, "delete", recv(t, carol, del.msg()).Changes, "deleted feature L1/f1")
	wantChanges(t, "update older than the delete", recv(t, carol, update.msg()).Changes)
	wantGet(t, carol, "feature", metaF1, "", "")
	wantChanges(t, "update newer than the delete", recv(t, carol, later.msg()).Changes)
	wantGet(t, carol, "feature", metaF1, "", "")
	wantGet(t, carol, "feature", metaF1, "properties.name", "")
	if got := carol.State(); got != "[]" {
		t.Errorf("state after delete = %s, want []", got)
	}

	// Every other order ends the same.
	msgs := [][]byte{upsert.msg(), update.msg(), del.msg(), later.msg()}
	for _, order := range [][]int{{0, 1, 2, 3}, {3, 2, 1, 0}, {1, 3, 0, 2}, {2, 0, 3, 1}} {
		r, _ := newScenarioReplica(t, "dave", 100)
		for _, i := range order {
			recv(t, r, msgs[i])
		}
		wantSameState(t, carol, r)
	}
}

func TestScenarioUpsertAfterDeleteRevivesWithNewerUpdates(t *testing.T) {
	// delete t3 < upsert t5 < update t7: the update made while the feature was deleted
	// shows up once the newer upsert brings the feature back.
	r, _ := newScenarioReplica(t, "carol", 100)
	recv(t, r, wop{verb: "delete", subject: "feature", meta: metaF1, hlc: stamp(3, 0, "alice")}.msg())
	wantChanges(t, "update on a deleted feature", recv(t, r, wop{verb: "update", subject: "feature", meta: metaF1,
		key: "properties.name", value: `"late"`, hlc: stamp(7, 0, "bob")}.msg()).Changes)
	wantChanges(t, "upsert newer than the delete", recv(t, r, wop{verb: "upsert", subject: "feature", meta: metaF1,
		value: `{"properties":{"name":"restored","color":"red"}}`, hlc: stamp(5, 0, "alice")}.msg()).Changes,
		`created feature L1/f1 = {"properties":{"color":"red","name":"late"}}`)
}

func TestScenarioLateUpsertKeepsNewerKeys(t *testing.T) {
	alice, _ := newScenarioReplica(t, "alice", 10)
	bob, _ := newScenarioReplica(t, "bob", 20)
	carol, _ := newScenarioReplica(t, "carol", 30)

	must[[]Change](t)(alice.Upsert("feature", metaF1, `{"type":"Feature","properties":{"name":"old","color":"red"},"geometry":{"type":"Point","coordinates":[1,2]}}`))
	must[[]Change](t)(bob.Update("feature", metaF1, "properties.name", `"new"`))
	must[[]Change](t)(bob.Update("feature", metaF1, "geometry.coordinates", `[3,4]`))
	fromAlice, fromBob := alice.Flush(), bob.Flush()

	for _, m := range fromBob {
		recv(t, carol, m)
	}
	ch := recv(t, carol, fromAlice[0]).Changes
	want := `{"geometry":{"coordinates":[3,4],"type":"Point"},"properties":{"color":"red","name":"new"},"type":"Feature"}`
	wantChanges(t, "the late upsert", ch, "set feature L1/f1 = "+want)
	wantGet(t, carol, "feature", metaF1, "", want)

	for _, m := range fromBob {
		recv(t, alice, m)
	}
	recv(t, bob, fromAlice[0])
	wantSameState(t, alice, bob, carol)
}

func TestScenarioUpdateOfFeatureNeverUpserted(t *testing.T) {
	update := wop{verb: "update", subject: "feature", meta: metaF1, key: "properties.name", value: `"Café"`, hlc: stamp(5, 0, "bob"), seq: 1}
	t.Run("seeded from the saved map", func(t *testing.T) {
		r, _ := newScenarioReplica(t, "alice", 10)
		seeded := must[[]Change](t)(r.Seed("feature", metaF1, `{"type":"Feature","properties":{"name":"saved","color":"blue"}}`))
		wantChanges(t, "seed", seeded, `created feature L1/f1 = {"properties":{"color":"blue","name":"saved"},"type":"Feature"}`)
		wantChanges(t, "update", recv(t, r, update.msg()).Changes, `set feature L1/f1 properties.name = "Café"`)
		wantGet(t, r, "feature", metaF1, "", `{"properties":{"color":"blue","name":"Café"},"type":"Feature"}`)
		if r.Pending() != 0 {
			t.Errorf("a seed is never sent; outbox holds %d", r.Pending())
		}
	})
	t.Run("never seen at all", func(t *testing.T) {
		r, _ := newScenarioReplica(t, "alice", 10)
		wantChanges(t, "update", recv(t, r, update.msg()).Changes, `set feature L1/f1 properties.name = "Café"`)
		wantGet(t, r, "feature", metaF1, "", `{"properties":{"name":"Café"}}`)
		want := `[{"subject":"feature","metadata":{"id":"f1","layerId":"L1"},"value":{"properties":{"name":"Café"}}}]`
		if got := r.State(); got != want {
			t.Errorf("state\n got %s\nwant %s", got, want)
		}
	})
	t.Run("seed after the update", func(t *testing.T) {
		// The page loaded the saved map after the update arrived: the update stays on top.
		r, _ := newScenarioReplica(t, "alice", 10)
		recv(t, r, update.msg())
		must[[]Change](t)(r.Seed("feature", metaF1, `{"properties":{"name":"saved","color":"blue"}}`))
		wantGet(t, r, "feature", metaF1, "", `{"properties":{"color":"blue","name":"Café"}}`)
	})
}

func TestScenarioBatch(t *testing.T) {
	t.Run("local batch: one message, every write visible after one receive", func(t *testing.T) {
		alice, _ := newScenarioReplica(t, "alice", 10)
		bob, _ := newScenarioReplica(t, "bob", 20)
		if err := alice.StartBatch(); err != nil {
			t.Fatal(err)
		}
		must[[]Change](t)(alice.Upsert("datalayer", metaL1, `{"name":"Trees"}`))
		must[[]Change](t)(alice.Upsert("feature", metaF1, `{"type":"Feature","properties":{"name":"a"}}`))
		must[[]Change](t)(alice.Update("feature", metaF1, "properties.name", `"b"`))
		must[[]Change](t)(alice.Update("feature", metaF1, "properties.color", `"red"`))
		if err := alice.CommitBatch(); err != nil {
			t.Fatal(err)
		}
		msgs := alice.Flush()
		if len(msgs) != 1 {
			t.Fatalf("a batch is one message, got %d", len(msgs))
		}
		if v := gjson.GetBytes(msgs[0], "verb").String(); v != "batch" {
			t.Fatalf("verb %q, want batch", v)
		}
		wantChanges(t, "bob receives the batch", recv(t, bob, msgs[0]).Changes,
			`created datalayer L1 = {"name":"Trees"}`,
			`created feature L1/f1 = {"properties":{"color":"red","name":"b"},"type":"Feature"}`)
		wantSameState(t, alice, bob)
	})

	t.Run("array order breaks ties", func(t *testing.T) {
		ts := stamp(5, 0, "alice")
		tests := []struct {
			name string
			ops  []wop
			want string
		}{
			{"two updates of one path: the later wins", []wop{
				{verb: "update", subject: "feature", meta: metaF1, key: "properties.name", value: `"first"`},
				{verb: "update", subject: "feature", meta: metaF1, key: "properties.name", value: `"second"`},
			}, `{"properties":{"name":"second"}}`},
			{"update then unset", []wop{
				{verb: "update", subject: "feature", meta: metaF1, key: "properties.name", value: `"first"`},
				{verb: "update", subject: "feature", meta: metaF1, key: "properties.name"},
				{verb: "update", subject: "feature", meta: metaF1, key: "properties.color", value: `"red"`},
			}, `{"properties":{"color":"red"}}`},
			{"upsert after an update replaces it", []wop{
				{verb: "update", subject: "feature", meta: metaF1, key: "properties.name", value: `"x"`},
				{verb: "upsert", subject: "feature", meta: metaF1, value: `{"properties":{"name":"y"}}`},
			}, `{"properties":{"name":"y"}}`},
			{"update after an upsert applies on it", []wop{
				{verb: "upsert", subject: "feature", meta: metaF1, value: `{"properties":{"name":"y","color":"blue"}}`},
				{verb: "update", subject: "feature", meta: metaF1, key: "properties.name", value: `"x"`},
			}, `{"properties":{"color":"blue","name":"x"}}`},
			{"child then parent: the parent wins", []wop{
				{verb: "update", subject: "feature", meta: metaF1, key: "properties.name", value: `"x"`},
				{verb: "update", subject: "feature", meta: metaF1, key: "properties", value: `{"color":"green"}`},
			}, `{"properties":{"color":"green"}}`},
			{"parent then child: both", []wop{
				{verb: "update", subject: "feature", meta: metaF1, key: "properties", value: `{"color":"green"}`},
				{verb: "update", subject: "feature", meta: metaF1, key: "properties.name", value: `"x"`},
			}, `{"properties":{"color":"green","name":"x"}}`},
			{"delete then update: stays deleted", []wop{
				{verb: "delete", subject: "feature", meta: metaF1},
				{verb: "update", subject: "feature", meta: metaF1, key: "properties.name", value: `"x"`},
			}, ``},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				batch := wop{verb: "batch", ops: tc.ops, hlc: ts, seq: 1}
				bob, _ := newScenarioReplica(t, "bob", 20)
				recv(t, bob, batch.msg())
				wantGet(t, bob, "feature", metaF1, "", tc.want)
				// The same batch through a sync response, after a write it beats.
				carol, _ := newScenarioReplica(t, "carol", 20)
				recv(t, carol, wop{verb: "update", subject: "feature", meta: metaF1, key: "properties.name", value: `"older"`, hlc: stamp(1, 0, "dave")}.msg())
				recv(t, carol, listResponse("bob", "carol", batch))
				wantGet(t, carol, "feature", metaF1, "", tc.want)
				// And the same batch twice changes nothing more.
				wantChanges(t, "the batch again", recv(t, carol, batch.msg()).Changes)
				wantSameState(t, bob, carol)
			})
		}
	})

	t.Run("atomic: a bad sub-operation applies nothing", func(t *testing.T) {
		bob, _ := newScenarioReplica(t, "bob", 20)
		before, vv := bob.State(), bob.Vector()
		bad := wop{verb: "batch", hlc: stamp(5, 0, "alice"), seq: 1, ops: []wop{
			{verb: "upsert", subject: "datalayer", meta: metaL1, value: `{"name":"Trees"}`},
			{verb: "update", subject: "feature", meta: metaF1, key: "properties.name", value: `"ok"`},
			{verb: "update", subject: "feature", meta: `{"id":"f2"}`, key: "properties.name", value: `"no layerId"`},
		}}
		_, err := bob.Receive(bad.msg())
		if !errors.Is(err, ErrBadMetadata) {
			t.Fatalf("err = %v, want bad_metadata", err)
		}
		if bob.State() != before || !vectorsEqual(bob.Vector(), vv) {
			t.Errorf("a rejected batch changed the state: %s", bob.State())
		}
		wantGet(t, bob, "datalayer", metaL1, "", "")
	})
}

func vectorsEqual(a, b VersionVector) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func TestScenarioChildSurvivesLateParent(t *testing.T) {
	child := wop{verb: "update", subject: "feature", meta: metaF1, key: "properties.name", value: `"new name"`, hlc: stamp(7, 0, "bob"), seq: 1}
	parent := wop{verb: "update", subject: "feature", meta: metaF1, key: "properties", value: `{"name":"old name","color":"red"}`, hlc: stamp(5, 0, "alice"), seq: 1}
	want := `{"color":"red","name":"new name"}`

	late, _ := newScenarioReplica(t, "carol", 100)
	recv(t, late, child.msg())
	wantChanges(t, "the late parent", recv(t, late, parent.msg()).Changes,
		`set feature L1/f1 properties = `+want)
	wantGet(t, late, "feature", metaF1, "properties", want)
	wantGet(t, late, "feature", metaF1, "properties.name", `"new name"`)

	inOrder, _ := newScenarioReplica(t, "dave", 100)
	recv(t, inOrder, parent.msg())
	wantChanges(t, "the child in order", recv(t, inOrder, child.msg()).Changes,
		`set feature L1/f1 properties.name = "new name"`)
	wantSameState(t, late, inOrder)

	// geometry at t=5 arrives after geometry.coordinates at t=7 the same way.
	g7 := wop{verb: "update", subject: "feature", meta: metaF1, key: "geometry.coordinates", value: `[5,6]`, hlc: stamp(7, 1, "bob")}
	g5 := wop{verb: "update", subject: "feature", meta: metaF1, key: "geometry", value: `{"type":"Point","coordinates":[1,2]}`, hlc: stamp(5, 1, "alice")}
	recv(t, late, g7.msg())
	recv(t, late, g5.msg())
	wantGet(t, late, "feature", metaF1, "geometry", `{"coordinates":[5,6],"type":"Point"}`)

	// A parent newer than the child covers it, in either order.
	p9 := wop{verb: "update", subject: "feature", meta: metaF1, key: "properties", value: `{"color":"blue"}`, hlc: stamp(9, 0, "alice")}
	recv(t, late, p9.msg())
	wantGet(t, late, "feature", metaF1, "properties", `{"color":"blue"}`)
	wantChanges(t, "the covered child again", recv(t, late, child.msg()).Changes)
}

func TestScenarioReceiveIsIdempotent(t *testing.T) {
	alice, _ := newScenarioReplica(t, "alice", 10)
	bob, _ := newScenarioReplica(t, "bob", 20)
	must[[]Change](t)(alice.Upsert("datalayer", metaL1, `{"name":"Trees"}`))
	must[[]Change](t)(alice.Update("feature", metaF1, "properties.name", `"oak"`))
	must[[]Change](t)(alice.Delete("feature", metaF2))
	for i, m := range alice.Flush() {
		first := recv(t, bob, m)
		state, vv := bob.State(), bob.Vector()
		second := recv(t, bob, m)
		if i < 2 && len(first.Changes) == 0 {
			t.Errorf("message %d: first receive changed nothing", i)
		}
		wantChanges(t, "message "+strconv.Itoa(i)+" again", second.Changes)
		if len(second.Replies) != 0 {
			t.Errorf("message %d again: replies %q", i, second.Replies)
		}
		if bob.State() != state || !vectorsEqual(bob.Vector(), vv) {
			t.Errorf("message %d again changed the replica", i)
		}
	}
	// A sync response holding what bob has changes nothing either.
	resp := listResponse("alice", "bob",
		wop{verb: "upsert", subject: "datalayer", meta: metaL1, value: `{"name":"Trees"}`, hlc: alice.log.ops[0].ts.String(), seq: 1})
	wantChanges(t, "a response with a known operation", recv(t, bob, resp).Changes)
	wantSameState(t, alice, bob)
}

func TestScenarioReceiveReturnsVisibleChangesOnly(t *testing.T) {
	t.Run("superseded on arrival", func(t *testing.T) {
		r, _ := newScenarioReplica(t, "carol", 100)
		recv(t, r, wop{verb: "update", subject: "feature", meta: metaF1, key: "properties.name", value: `"new"`, hlc: stamp(7, 0, "bob")}.msg())
		wantChanges(t, "an older write to the same path", recv(t, r, wop{verb: "update", subject: "feature", meta: metaF1,
			key: "properties.name", value: `"old"`, hlc: stamp(5, 0, "alice")}.msg()).Changes)
		wantChanges(t, "an older write below it", recv(t, r, wop{verb: "update", subject: "feature", meta: metaF1,
			key: "properties.name.x", value: `1`, hlc: stamp(6, 0, "alice")}.msg()).Changes)
		wantChanges(t, "a newer write of the same value", recv(t, r, wop{verb: "update", subject: "feature", meta: metaF1,
			key: "properties.name", value: `"new"`, hlc: stamp(8, 0, "alice")}.msg()).Changes)
		wantChanges(t, "an unset of a path never set", recv(t, r, wop{verb: "update", subject: "feature", meta: metaF1,
			key: "properties.nothing", hlc: stamp(9, 0, "alice")}.msg()).Changes)
		wantChanges(t, "a delete of an object never seen", recv(t, r, wop{verb: "delete", subject: "feature", meta: metaF2,
			hlc: stamp(10, 0, "alice")}.msg()).Changes)
	})

	t.Run("coalesced", func(t *testing.T) {
		r, _ := newScenarioReplica(t, "carol", 100)
		recv(t, r, wop{verb: "upsert", subject: "feature", meta: metaF1, value: `{"geometry":{"type":"Point","coordinates":[0,0]},"properties":{}}`, hlc: stamp(1, 0, "alice")}.msg())
		// A marker drag: many geometry updates in one catch-up give one change.
		var drag []wop
		for i := 1; i <= 5; i++ {
			drag = append(drag, wop{verb: "update", subject: "feature", meta: metaF1, key: "geometry.coordinates",
				value: "[" + strconv.Itoa(i) + ",0]", hlc: stamp(int64(10+i), 0, "bob"), seq: uint64(i)})
		}
		wantChanges(t, "a drag in one response", recv(t, r, listResponse("bob", "carol", drag...)).Changes,
			`set feature L1/f1 geometry.coordinates = [5,0]`)
		// A set and an unset of the same path in one response: nothing visible changed.
		wantChanges(t, "set then unset", recv(t, r, listResponse("bob", "carol",
			wop{verb: "update", subject: "feature", meta: metaF1, key: "properties.tmp", value: `1`, hlc: stamp(20, 0, "bob"), seq: 6},
			wop{verb: "update", subject: "feature", meta: metaF1, key: "properties.tmp", hlc: stamp(21, 0, "bob"), seq: 7},
		)).Changes)
		// A child and its parent in one response: one change at the parent.
		wantChanges(t, "child and parent", recv(t, r, listResponse("bob", "carol",
			wop{verb: "update", subject: "feature", meta: metaF1, key: "properties.name", value: `"n"`, hlc: stamp(22, 0, "bob"), seq: 8},
			wop{verb: "update", subject: "feature", meta: metaF1, key: "properties", value: `{"color":"red"}`, hlc: stamp(23, 0, "bob"), seq: 9},
		)).Changes, `set feature L1/f1 properties = {"color":"red"}`)
	})

	t.Run("clock order: a datalayer before its features", func(t *testing.T) {
		dl := wop{verb: "upsert", subject: "datalayer", meta: metaL1, value: `{"name":"Trees"}`, hlc: stamp(1, 0, "alice"), seq: 1}
		f1 := wop{verb: "upsert", subject: "feature", meta: metaF1, value: `{"properties":{"name":"oak"}}`, hlc: stamp(2, 0, "alice"), seq: 2}
		f2 := wop{verb: "upsert", subject: "feature", meta: metaF2, value: `{"properties":{"name":"elm"}}`, hlc: stamp(2, 1, "alice"), seq: 3}
		name := wop{verb: "update", subject: "datalayer", meta: metaL1, key: "name", value: `"Old trees"`, hlc: stamp(3, 0, "alice"), seq: 4}
		want := []string{
			`created datalayer L1 = {"name":"Old trees"}`,
			`created feature L1/f1 = {"properties":{"name":"oak"}}`,
			`created feature L1/f2 = {"properties":{"name":"elm"}}`,
		}
		for _, order := range [][]wop{{dl, f1, f2, name}, {f2, f1, name, dl}, {name, f2, dl, f1}} {
			r, _ := newScenarioReplica(t, "carol", 100)
			wantChanges(t, "one response", recv(t, r, listResponse("alice", "carol", order...)).Changes, want...)
		}
	})
}

func TestScenarioSeqlessOperation(t *testing.T) {
	// uMap's plain Journal sends no seq: accepted, ordered by its clock, outside the vector.
	r, _ := newScenarioReplica(t, "carol", 100)
	op := wop{verb: "update", subject: "map", meta: metaMap, key: "properties.name", value: `"My map"`, hlc: stamp(5, 0, "umapjs")}
	res := recv(t, r, op.msg())
	wantChanges(t, "seq-less update", res.Changes, `set map properties.name = "My map"`)
	if len(res.Replies) != 0 {
		t.Errorf("a seq-less operation is no gap; replies %q", res.Replies)
	}
	if vv := r.Vector(); vv["umapjs"] != 0 {
		t.Errorf("vector %v counts a seq-less operation", vv)
	}
	older := wop{verb: "update", subject: "map", meta: metaMap, key: "properties.name", value: `"Older"`, hlc: stamp(4, 0, "umapjs")}
	wantChanges(t, "older seq-less update", recv(t, r, older.msg()).Changes)
	wantChanges(t, "same again", recv(t, r, op.msg()).Changes)

	// A fresh replica catches up on it through sync.
	late, _ := newScenarioReplica(t, "dave", 100)
	syncPair(t, late, r)
	wantSameState(t, r, late)
}

func TestScenarioSeqlessOperationReachesPeerWithNewerOperations(t *testing.T) {
	// While dave is offline, a peer running uMap's plain Journal (no seq) edits the map at
	// t=5 and carol receives it; dave edits at t=100. dave reconnects: his outbox reaches
	// carol live, then he asks carol for what he lacks. His vector cannot name a seq-less
	// operation and his lastKnownHLC (t=100) is newer than it — he must still get it, or the
	// two replicas never converge (DESIGN §5).
	carol, _ := newScenarioReplica(t, "carol", 100)
	dave, _ := newScenarioReplica(t, "dave", 100)
	recv(t, carol, wop{verb: "update", subject: "map", meta: metaMap, key: "properties.name", value: `"My map"`, hlc: stamp(5, 0, "umapjs")}.msg())
	must[[]Change](t)(dave.Update("map", metaMap, "properties.color", `"red"`))
	flushTo(t, dave, carol)
	syncPair(t, dave, carol)
	wantGet(t, dave, "map", metaMap, "properties.name", `"My map"`)
	wantSameState(t, carol, dave)
}

// umapRequest is the ListOperationsRequest of uMap's plain Journal: no vector.
func umapRequest(sender, recipient, lastKnown string) []byte {
	lk := "null"
	if lastKnown != "" {
		lk = strconv.Quote(lastKnown)
	}
	return []byte(`{"kind":"PeerMessage","sender":"` + sender + `","recipient":"` + recipient +
		`","message":{"verb":"ListOperationsRequest","lastKnownHLC":` + lk + `}}`)
}

func TestScenarioUnknownFieldsPassThrough(t *testing.T) {
	alice, _ := newScenarioReplica(t, "alice", 10)
	ops := []wop{
		{verb: "update", subject: "feature", meta: `{"id":"f1","layerId":"L1","featureType":"marker","x-layer":{"z":1}}`,
			key: "properties.name", value: `"a"`, hlc: stamp(1, 0, "bob"), seq: 1, extra: `"x-client":"umap 3.0","x-nested":{"b":[1,2],"a":null}`},
		{verb: "batch", hlc: stamp(2, 0, "bob"), seq: 2, extra: `"x-batch":true`, ops: []wop{
			{verb: "update", subject: "feature", meta: metaF2, key: "properties.name", value: `"b"`, extra: `"x-sub":1`},
		}},
		{verb: "delete", subject: "datalayer", meta: metaL2, hlc: stamp(3, 0, "bob"), seq: 3, extra: `"x-why":"gone"`},
	}
	for _, o := range ops {
		recv(t, alice, o.msg())
	}
	checks := []struct{ path, want string }{
		{"0.x-client", `"umap 3.0"`},
		{"0.x-nested", `{"a":null,"b":[1,2]}`},
		{"0.metadata.x-layer", `{"z":1}`},
		{"0.metadata.featureType", `"marker"`},
		{"1.x-batch", `true`},
		{"1.operations.0.x-sub", `1`},
		{"2.x-why", `"gone"`},
	}
	check := func(what string, ops gjson.Result) {
		t.Helper()
		for _, c := range checks {
			if v := ops.Get(c.path); v.Raw != c.want {
				t.Errorf("%s: %s = %s, want %s\nin %s", what, c.path, v.Raw, c.want, ops.Raw)
			}
		}
	}
	// A plain uMap peer catches up from alice: the operations come back as uMap writes them.
	resp := recv(t, alice, umapRequest("umapjs", "alice", "")).Replies[0]
	check("uMap catch-up", gjson.GetBytes(resp, "message.operations"))

	// A mapcrdt peer catches up in the compact encoding, then passes them on to uMap.
	carol, _ := newScenarioReplica(t, "carol", 100)
	syncPair(t, carol, alice)
	wantSameState(t, alice, carol)
	resp = recv(t, carol, umapRequest("umapjs", "carol", "")).Replies[0]
	check("second hop", gjson.GetBytes(resp, "message.operations"))
}

func TestScenarioMetadataTravelsAlong(t *testing.T) {
	alice, _ := newScenarioReplica(t, "alice", 10)
	bob, _ := newScenarioReplica(t, "bob", 20)
	carol, _ := newScenarioReplica(t, "carol", 30)
	must[[]Change](t)(alice.Upsert("feature", metaF1, `{"type":"Feature","geometry":{"type":"Point","coordinates":[1,2]}}`))
	msg := alice.Flush()[0]
	if v := gjson.GetBytes(msg, "metadata.featureType").String(); v != "marker" {
		t.Errorf("local upsert message: metadata.featureType = %q in %s", v, msg)
	}
	ch := recv(t, bob, msg).Changes
	if len(ch) != 1 || gjson.Get(ch[0].Metadata, "featureType").String() != "marker" {
		t.Errorf("bob's change lost featureType: %+v", ch)
	}
	resp := recv(t, bob, umapRequest("umapjs", "bob", "")).Replies[0]
	if v := gjson.GetBytes(resp, "message.operations.0.metadata.featureType").String(); v != "marker" {
		t.Errorf("uMap sync output lost featureType: %s", resp)
	}
	resp = recv(t, bob, carol.SyncRequest("bob")).Replies[0]
	ch = recv(t, carol, resp).Changes
	if len(ch) != 1 || ch[0].Metadata != `{"featureType":"marker","id":"f1","layerId":"L1"}` {
		t.Errorf("carol's change metadata after a compact sync: %+v", ch)
	}
	// featureType is not identity: without it, or with another, the same feature.
	wantGet(t, carol, "feature", `{"layerId":"L1","id":"f1"}`, "geometry.type", `"Point"`)
	wantGet(t, carol, "feature", `{"layerId":"L1","id":"f1","featureType":"polygon"}`, "geometry.type", `"Point"`)
}

func TestScenarioOneMetadataTextTwoSubjects(t *testing.T) {
	// A datalayer and a feature named by the same metadata text are two objects: received or
	// edited locally, in either order, a write to one never lands on the other.
	const same = `{"id":"L1","layerId":"L1"}`
	alice, _ := newScenarioReplica(t, "alice", 10)
	bob, _ := newScenarioReplica(t, "bob", 20)
	must[[]Change](t)(alice.Upsert("datalayer", same, `{"name":"layer"}`))
	must[[]Change](t)(alice.Upsert("feature", same, `{"type":"Feature","properties":{"name":"tree"}}`))
	must[[]Change](t)(alice.Update("datalayer", same, "name", `"layer 2"`))
	must[[]Change](t)(alice.Update("feature", same, "properties.name", `"oak"`))
	flushTo(t, alice, bob)
	for _, r := range []*Replica{alice, bob} {
		wantGet(t, r, "datalayer", same, "name", `"layer 2"`)
		wantGet(t, r, "feature", same, "properties.name", `"oak"`)
		wantGet(t, r, "datalayer", same, "properties", "")
		wantGet(t, r, "feature", same, "name", "")
	}
}

func TestScenarioLocalEditSendsItsOwnMetadata(t *testing.T) {
	// The page first touches a feature through a call that names it by identity only (no
	// featureType), then upserts it with its full metadata. The upsert that leaves must carry
	// the metadata it was made with: a uMap peer needs featureType to build the feature.
	alice, _ := newScenarioReplica(t, "alice", 10)
	must[[]Change](t)(alice.Update("feature", `{"id":"f1","layerId":"L1"}`, "properties.name", `"oak"`))
	must[[]Change](t)(alice.Upsert("feature", metaF1, `{"type":"Feature","geometry":{"type":"Point","coordinates":[1,2]},"properties":{"name":"oak"}}`))
	msgs := alice.Flush()
	if got := gjson.GetBytes(msgs[len(msgs)-1], "metadata").Raw; got != `{"featureType":"marker","id":"f1","layerId":"L1"}` {
		t.Errorf("the upsert left with metadata %s, want the metadata it was made with\n%s", got, msgs[len(msgs)-1])
	}
}

func TestScenarioEscapedKeys(t *testing.T) {
	alice, _ := newScenarioReplica(t, "alice", 10)
	bob, _ := newScenarioReplica(t, "bob", 20)
	must[[]Change](t)(alice.Update("feature", metaF1, `properties.a\.b`, `"dotted"`))
	must[[]Change](t)(alice.Update("feature", metaF1, `properties.a.b`, `"nested"`))
	must[[]Change](t)(alice.Update("feature", metaF1, `properties.back\\slash`, `1`))
	msgs := alice.Flush()
	if k := gjson.GetBytes(msgs[0], "key").String(); k != `properties.a\.b` {
		t.Errorf("key on the wire %q", k)
	}
	ch := recv(t, bob, msgs[0]).Changes
	wantChanges(t, "dotted key", ch, `set feature L1/f1 properties.a\.b = "dotted"`)
	recv(t, bob, msgs[1])
	recv(t, bob, msgs[2])
	want := `{"properties":{"a":{"b":"nested"},"a.b":"dotted","back\\slash":1}}`
	wantGet(t, bob, "feature", metaF1, "", want)
	wantGet(t, bob, "feature", metaF1, `properties.a\.b`, `"dotted"`)
	wantGet(t, bob, "feature", metaF1, `properties.a.b`, `"nested"`)
	wantGet(t, bob, "feature", metaF1, `properties.back\\slash`, `1`)
	// gjson reads the same paths from the dump.
	v, _, _ := bob.Get("feature", metaF1, "")
	for _, k := range []string{`properties.a\.b`, `properties.a.b`, `properties.back\\slash`} {
		g, _, _ := bob.Get("feature", metaF1, k)
		if gj := gjson.Get(v, k).Raw; gj != g {
			t.Errorf("gjson %q = %s, Get = %s", k, gj, g)
		}
	}
	wantSameState(t, alice, bob)
}

func TestScenarioGet(t *testing.T) {
	r, _ := newScenarioReplica(t, "carol", 100)
	must[[]Change](t)(r.Upsert("feature", metaF1, `{"type":"Feature","geometry":{"type":"Point","coordinates":[1,2]},"properties":{"name":"oak","_umap_options":{"color":"red"}}}`))
	must[[]Change](t)(r.Update("feature", metaF1, "properties._umap_options.weight", `3`))
	tests := []struct{ name, key, want string }{
		{"whole object", "", `{"geometry":{"coordinates":[1,2],"type":"Point"},"properties":{"_umap_options":{"color":"red","weight":3},"name":"oak"},"type":"Feature"}`},
		{"a member", "type", `"Feature"`},
		{"an object member", "geometry", `{"coordinates":[1,2],"type":"Point"}`},
		{"an array", "geometry.coordinates", `[1,2]`},
		{"deep from the upsert", "properties._umap_options.color", `"red"`},
		{"deep from the update", "properties._umap_options.weight", `3`},
		{"a parent of an update", "properties._umap_options", `{"color":"red","weight":3}`},
		{"missing", "properties.nothing", ``},
		{"below a string", "properties.name.x", ``},
		{"array elements are not members", "geometry.coordinates.0", ``},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { wantGet(t, r, "feature", metaF1, tc.key, tc.want) })
	}
	t.Run("object never seen", func(t *testing.T) { wantGet(t, r, "feature", metaF2, "", "") })
	t.Run("deleted object", func(t *testing.T) {
		must[[]Change](t)(r.Delete("feature", metaF1))
		wantGet(t, r, "feature", metaF1, "", "")
		wantGet(t, r, "feature", metaF1, "type", "")
	})
	t.Run("map and datalayer", func(t *testing.T) {
		must[[]Change](t)(r.Update("map", metaMap, "properties.name", `"My map"`))
		must[[]Change](t)(r.Upsert("datalayer", metaL2, `{"name":"L2"}`))
		wantGet(t, r, "map", "", "properties.name", `"My map"`)
		wantGet(t, r, "map", metaMap, "", `{"properties":{"name":"My map"}}`)
		wantGet(t, r, "datalayer", metaL2, "name", `"L2"`)
	})
	t.Run("errors", func(t *testing.T) {
		for _, c := range []struct {
			subject, meta, key string
			code               error
		}{
			{"layer", metaL1, "", ErrUnknownSubject},
			{"feature", `{"id":"f1"}`, "", ErrBadMetadata},
			{"feature", `{"id":`, "", ErrInvalidJSON},
			{"feature", metaF1, "a..b", ErrBadKey},
		} {
			if _, _, err := r.Get(c.subject, c.meta, c.key); !errors.Is(err, c.code) {
				t.Errorf("Get(%s, %s, %q): err %v, want %v", c.subject, c.meta, c.key, err, c.code)
			}
		}
		if n := strings.Count(r.State(), `"subject"`); n != 2 {
			t.Errorf("Get must not create objects; state %s", r.State())
		}
	})
}

func TestScenarioClockDriftGuard(t *testing.T) {
	tests := []struct {
		name  string
		ahead int64 // ms ahead of carol's wall clock
		ok    bool
	}{
		{"59 s ahead accepted", 59_000, true},
		{"exactly 60 s ahead accepted", 60_000, true},
		{"60.001 s ahead rejected", 60_001, false},
		{"61 s ahead rejected", 61_000, false},
		{"a year ahead rejected", 365 * 24 * 3600 * 1000, false},
		{"behind accepted", -3_600_000, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			carol, _ := newScenarioReplica(t, "carol", 1000)
			recv(t, carol, wop{verb: "upsert", subject: "feature", meta: metaF1, value: `{"properties":{"name":"a"}}`, hlc: stamp(1, 0, "alice"), seq: 1}.msg())
			state, vv, clock := carol.State(), carol.Vector(), carol.Clock()
			ahead := wop{verb: "update", subject: "feature", meta: metaF1, key: "properties.name", value: `"future"`,
				hlc: stamp(1000+tc.ahead, 0, "mallory"), seq: 1}
			for _, m := range [][]byte{ahead.msg(), listResponse("alice", "carol",
				wop{verb: "update", subject: "feature", meta: metaF1, key: "properties.color", value: `"fine"`, hlc: stamp(2, 0, "alice"), seq: 2},
				ahead)} {
				res, err := carol.Receive(m)
				if tc.ok {
					if err != nil {
						t.Fatalf("rejected: %v", err)
					}
					if tc.ahead > 0 {
						wantGet(t, carol, "feature", metaF1, "properties.name", `"future"`)
					}
					continue
				}
				if err == nil {
					t.Fatalf("accepted: %+v", res)
				}
				if Code(err) != "clock_drift" || !errors.Is(err, ErrClockDrift) {
					t.Errorf("err %v: code %q", err, Code(err))
				}
				if !strings.Contains(err.Error(), strconv.Quote(ahead.hlc)) {
					t.Errorf("the error does not quote the clock: %v", err)
				}
				if carol.State() != state || !vectorsEqual(carol.Vector(), vv) || carol.Clock() != clock {
					t.Errorf("a rejected operation changed the replica: %s %v %v", carol.State(), carol.Vector(), carol.Clock())
				}
			}
		})
	}
}

func TestScenarioThreePeersConverge(t *testing.T) {
	// Three peers edit the same feature while partitioned, then sync pairwise.
	alice, aw := newScenarioReplica(t, "alice", 0)
	bob, bw := newScenarioReplica(t, "bob", 0)
	carol, cw := newScenarioReplica(t, "carol", 0)
	must[[]Change](t)(alice.Upsert("datalayer", metaL1, `{"name":"Trees"}`))
	must[[]Change](t)(alice.Upsert("feature", metaF1, `{"type":"Feature","properties":{"name":"oak"},"geometry":{"type":"Point","coordinates":[0,0]}}`))
	flushTo(t, alice, bob, carol)

	aw.Advance(10)
	bw.Advance(20)
	cw.Advance(30)
	must[[]Change](t)(alice.Update("feature", metaF1, "geometry.coordinates", `[1,1]`))
	must[[]Change](t)(bob.Update("feature", metaF1, "properties.name", `"elm"`))
	must[[]Change](t)(bob.Update("feature", metaF1, "geometry", `{"type":"Point","coordinates":[2,2]}`))
	must[[]Change](t)(carol.Update("feature", metaF1, "properties", `{"name":"ash","color":"green"}`))
	for _, r := range []*Replica{alice, bob, carol} {
		r.Flush() // sent while the network was down: lost
	}
	syncPair(t, alice, bob)
	syncPair(t, bob, carol)
	syncPair(t, carol, alice)
	wantSameState(t, alice, bob, carol)
	wantGet(t, alice, "feature", metaF1, "", `{"geometry":{"coordinates":[2,2],"type":"Point"},"properties":{"color":"green","name":"ash"},"type":"Feature"}`)
	for _, r := range []*Replica{alice, bob, carol} {
		if vv := r.Vector(); vv["alice"] != 3 || vv["bob"] != 2 || vv["carol"] != 1 {
			t.Errorf("%s vector %v", r.PeerID(), vv)
		}
	}
}

func TestScenarioDeepValueSyncsAndSnapshots(t *testing.T) {
	// A value as deep as an OperationMessage may carry (the message itself at the depth
	// limit) is accepted live. The same operation must then travel in every sync response
	// and in a snapshot, where the envelope puts it a few levels deeper: otherwise one deep
	// value makes every catch-up from this replica fail, and its own snapshot unreadable.
	deep := strings.Repeat("[", 63) + strings.Repeat("]", 63)
	op := wop{verb: "update", subject: "map", meta: metaMap, key: "k", value: deep, hlc: stamp(1, 0, "bob"), seq: 1}
	alice, wall := newScenarioReplica(t, "alice", 100)
	recv(t, alice, op.msg())
	wantGet(t, alice, "map", metaMap, "k", deep)

	t.Run("compact sync", func(t *testing.T) {
		carol, _ := newScenarioReplica(t, "carol", 100)
		resp := recv(t, alice, carol.SyncRequest("alice")).Replies[0]
		if _, err := carol.Receive(resp); err != nil {
			t.Fatalf("the catch-up response is refused: %v", err)
		}
		wantSameState(t, alice, carol)
	})
	t.Run("uMap sync", func(t *testing.T) {
		carol, _ := newScenarioReplica(t, "carol", 100)
		resp := recv(t, alice, umapRequest("carol", "alice", "")).Replies[0]
		if _, err := carol.Receive(resp); err != nil {
			t.Fatalf("the catch-up response is refused: %v", err)
		}
		wantSameState(t, alice, carol)
	})
	t.Run("snapshot", func(t *testing.T) {
		snap, err := alice.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		back, err := NewReplicaFromSnapshot(Options{PeerID: "alice", Wall: wall}, snap)
		if err != nil {
			t.Fatalf("the replica's own snapshot is refused: %v", err)
		}
		wantSameState(t, alice, back)
	})
}

func TestScenarioDeepLocalEditReachesPeers(t *testing.T) {
	// A local edit the replica accepts must be accepted by its peers (same limits): if not,
	// the two diverge for good. The edit's value is checked against MaxDepth on its own,
	// but on the wire it sits one level down in the OperationMessage.
	alice, _ := newScenarioReplica(t, "alice", 100)
	bob, _ := newScenarioReplica(t, "bob", 100)
	for _, n := range []int{62, 63, 64} {
		deep := strings.Repeat("[", n) + strings.Repeat("]", n)
		if _, err := alice.Update("map", metaMap, "k"+strconv.Itoa(n), deep); err != nil {
			if errors.Is(err, ErrTooDeep) {
				continue // refused at the source: fine
			}
			t.Fatal(err)
		}
		for _, m := range alice.Flush() {
			if _, err := bob.Receive(m); err != nil {
				t.Errorf("%d levels: alice accepted the edit, bob refuses her message: %v", n, err)
			}
		}
	}
	wantSameState(t, alice, bob)
}

func TestScenarioUndoOfDeleteOfDeepObjectReachesPeers(t *testing.T) {
	// A key of 30 parts and a value 40 levels deep would build an object 70 levels deep,
	// which undoing its delete would send whole, as an upsert: such a write is refused at
	// the source (MaxDepth bounds the object). One just within the bound reaches peers.
	alice, _ := newScenarioReplica(t, "alice", 100)
	bob, _ := newScenarioReplica(t, "bob", 100)
	key := strings.TrimSuffix(strings.Repeat("p.", 30), ".")
	deep := strings.Repeat("[", 40) + strings.Repeat("]", 40)
	if _, err := alice.Update("datalayer", metaL1, key, deep); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("a write building a 70-level object: got %v, want too_deep", err)
	}
	deep = strings.Repeat("[", 34) + strings.Repeat("]", 34)
	must[[]Change](t)(alice.Update("datalayer", metaL1, key, deep))
	must[[]Change](t)(alice.Delete("datalayer", metaL1))
	if _, err := alice.Undo(); err != nil {
		t.Fatal(err)
	}
	for _, m := range alice.Flush() {
		if _, err := bob.Receive(m); err != nil {
			t.Errorf("bob refuses alice's message: %v", err)
		}
	}
	wantSameState(t, alice, bob)
}

func TestScenarioSavedMessageFromTheFuture(t *testing.T) {
	// A peer whose clock runs a year ahead saves the map and broadcasts SavedMessage. The
	// drift guard refuses its operations (DESIGN §3); its SavedMessage must not mark a year
	// of this replica's future edits as saved either: they would never reach the server.
	alice, wall := newScenarioReplica(t, "alice", 100)
	future := stamp(100+365*24*3600*1000, 0, "mallory")
	_, err := alice.Receive([]byte(`{"kind":"SavedMessage","sender":"mallory","lastKnownHLC":"` + future + `"}`))
	if err != nil && !errors.Is(err, ErrClockDrift) {
		t.Fatalf("err %v, want nil or clock_drift", err)
	}
	wall.Advance(1000)
	must[[]Change](t)(alice.Update("feature", metaF1, "properties.name", `"after the save"`))
	alice.Flush()
	dirty := alice.Dirty()
	if len(dirty) != 1 || dirty[0].Subject != "feature" {
		t.Errorf("an edit made after the save is not dirty: Dirty() = %+v", dirty)
	}
}

// A catch-up moves the clock once, past the newest operation it brings, whatever their
// order in the response: carol's next edit is stamped after every one of them.
func TestScenarioClockPassesACatchUp(t *testing.T) {
	carol, _ := newScenarioReplica(t, "carol", 0) // her wall clock is behind all of them
	ops := []wop{
		{verb: "update", subject: "feature", meta: metaF1, key: "properties.a", value: `1`, hlc: stamp(5_000, 7, "bob"), seq: 1},
		{verb: "update", subject: "feature", meta: metaF1, key: "properties.b", value: `2`, hlc: stamp(9_000, 3, "alice"), seq: 1},
		{verb: "update", subject: "feature", meta: metaF1, key: "properties.c", value: `3`, hlc: stamp(9_000, 3, "bob"), seq: 2},
		{verb: "update", subject: "feature", meta: metaF1, key: "properties.d", value: `4`, hlc: stamp(2_000, 0, "alice"), seq: 2},
	}
	recv(t, carol, listResponse("bob", "carol", ops...))
	if _, err := carol.Update("feature", metaF1, "properties.e", `5`); err != nil {
		t.Fatal(err)
	}
	own := carol.Clock()
	for _, o := range ops {
		ts, err := hlc.Parse(o.hlc)
		if err != nil {
			t.Fatal(err)
		}
		if !ts.Less(own) {
			t.Errorf("carol's edit %s is not after %s", own, ts)
		}
	}
	if want := stamp(9_000, 5, "carol"); own.String() != want { // past bob's 9000:3, then her edit
		t.Errorf("clock %s, want %s", own, want)
	}
}

// TestScenarioBatchOpenAcrossAReceive: a batch left open while a peer's write arrives (the
// JS glue's startBatch, an await, commitBatch). The edit alice makes after seeing bob's
// write is newer than it on every replica; her edit made before it is older. The batch
// leaves in two parts, in order, and is still one undo step. (With the batch's clock taken
// at StartBatch, her later edit lost to bob's, silently: the test fails.)
func TestScenarioBatchOpenAcrossAReceive(t *testing.T) {
	wa, wb := hlc.NewManualClock(kitT0), hlc.NewManualClock(kitT0)
	alice, bob := kitReplica(t, "alice", wa), kitReplica(t, "bob", wb)
	kitNoErr(t, alice.StartBatch())
	kitSet(t, alice, kitF1, "properties.color", `"red"`) // before bob's write
	kitSet(t, alice, kitF1, "properties.weight", `2`)
	wa.Advance(5000)
	wb.Advance(5000)
	kitSet(t, bob, kitF1, "properties.name", `"bob"`)
	kitSet(t, bob, kitF1, "properties.color", `"bob's blue"`)
	kitDeliver(t, bob.Flush(), alice)
	ch, err := alice.Update("feature", kitF1, "properties.name", `"alice, after seeing bob"`)
	if err != nil || len(ch) != 1 {
		t.Fatalf("alice's edit after bob's: changes %v, error %v; want it visible", ch, err)
	}
	kitNoErr(t, alice.CommitBatch())
	msgs := alice.Flush()
	if len(msgs) != 2 || gjson.GetBytes(msgs[0], "verb").String() != "batch" ||
		kitMsgHLC(t, msgs[0]).Compare(kitMsgHLC(t, msgs[1])) >= 0 {
		t.Fatalf("the batch open across a receive should leave as two parts, in order: %q", msgs)
	}
	kitDeliver(t, msgs, bob)
	for _, r := range []*Replica{alice, bob} {
		kitWant(t, r, "feature", kitF1, "properties.name", `"alice, after seeing bob"`)
		kitWant(t, r, "feature", kitF1, "properties.color", `"bob's blue"`)
		kitWant(t, r, "feature", kitF1, "properties.weight", `2`)
	}
	kitSameState(t, alice, bob)
	// One undo step for both parts: bob's color, newer than alice's, is left as he wrote it.
	res := kitUndo(t, alice)
	if len(res.Skipped) != 1 || res.Skipped[0].Key != "properties.color" {
		t.Errorf("undo skipped %+v, want properties.color", res.Skipped)
	}
	kitWant(t, alice, "feature", kitF1, "properties.name", `"bob"`)
	kitWant(t, alice, "feature", kitF1, "properties.weight", "")
	if alice.CanUndo() {
		t.Error("the two parts should be one undo step")
	}
	kitDeliver(t, alice.Flush(), bob)
	kitSameState(t, alice, bob)
}
