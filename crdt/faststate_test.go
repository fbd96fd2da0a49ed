package crdt

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// respondBoth receives each message of msgs on two replicas of one peer id (fuzzPeerA,
// with opts): a through fastResponse when it takes the message, b always through the
// general parser (the message given with a leading space, which the fast paths do not
// take and the parser skips). It fails when the two answer a message differently or end in
// different states, and returns whether the fast path took each message.
func respondBoth(t *testing.T, opts Options, msgs [][]byte) (taken []bool) {
	t.Helper()
	opts.PeerID, opts.Wall = fuzzPeerA, fuzzWall()
	a, errA := NewReplica(opts)
	b, errB := NewReplica(opts)
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	b.session = a.session // twins: their requests carry it
	for _, m := range msgs {
		var resA Result
		var errA error
		ok := false
		if len(m) <= a.opts.Limits.MaxMessageBytes {
			resA, ok, errA = a.fastResponse(string(m))
		}
		if !ok {
			resA, errA = a.Receive(m)
		}
		taken = append(taken, ok)
		resB, errB := b.Receive(append([]byte(" "), m...))
		if !ok { // the parser on both: the same error, but for the offset it names
			errA, errB = errorCode(errA), errorCode(errB)
		}
		if fmt.Sprint(errA) != fmt.Sprint(errB) {
			t.Fatalf("%.300s\nerror (fast path took it: %v): %v, the parser's %v", m, ok, errA, errB)
		}
		if fmt.Sprint(resA.Changes) != fmt.Sprint(resB.Changes) {
			t.Fatalf("%.300s\nchanges %v, the parser's %v", m, resA.Changes, resB.Changes)
		}
		if ra, rb := bytes.Join(resA.Replies, []byte("\n")), bytes.Join(resB.Replies, []byte("\n")); !bytes.Equal(ra, rb) {
			t.Fatalf("%.300s\nreplies\n%s\nthe parser's\n%s", m, ra, rb)
		}
	}
	if a.State() != b.State() || !vectorsEqual(a.Vector(), b.Vector()) || a.LogLen() != b.LogLen() {
		t.Fatalf("states differ\nfast:   %s %v\nparser: %s %v", a.State(), a.Vector(), b.State(), b.Vector())
	}
	return taken
}

// errorCode is err's code alone (nil for nil).
func errorCode(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return errors.New(e.Code())
	}
	return err
}

// peerResponses are compact responses to fuzzPeerA as mapcrdt peers write them: a full
// catch-up over every verb, subject and kind of value, a partial one, and a pushBack.
func peerResponses(t testing.TB) [][]byte {
	wall := fuzzWall()
	src := newTestReplica(t, fuzzPeerB, wall)
	must := func(_ []Change, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	m1, m2, m3 := `{"id":"f1","layerId":"L1","featureType":"marker"}`, `{"layerId":"L1","id":"f2"}`, `{"id":"f3","layerId":"L1"}`
	must(src.Upsert("datalayer", `{"id":"L1"}`, `{"name":"layer","type":"FeatureCollection"}`))
	must(src.Upsert("feature", m1, `{"type":"Feature","geometry":{"type":"Point","coordinates":[1.5,-2e3]},"properties":{"name":"a"}}`))
	must(src.Update("feature", m1, "properties.name", `"Caf\u00e9 \"quoted\" \\ é"`))
	must(src.Update("feature", m1, `properties.a\.b`, `1`))
	must(src.Update("feature", m2, "properties.x", `{"b":1,"a":[1,{"d":2,"c":null}],"e":true}`))
	must(src.Update("feature", m2, "properties.gone", `"soon"`))
	must(src.Unset("feature", m2, "properties.gone"))
	must(src.Upsert("feature", m3, `{"type":"Feature"}`))
	must(src.Delete("feature", m3))
	must(src.Update("map", "{}", "properties.zoom", "7"))
	if err := src.StartBatch(); err != nil {
		t.Fatal(err)
	}
	must(src.Update("feature", m1, "properties.color", `"red"`))
	must(src.Update("feature", m2, "geometry", `{"type":"Point","coordinates":[3,4]}`))
	must(src.Update("feature", m2, "properties.weight", `4.5`))
	if err := src.CommitBatch(); err != nil {
		t.Fatal(err)
	}
	// An operation of a uMap peer with a member mapcrdt does not know: kept, and sent as
	// an object in the compact list.
	recv(t, src, []byte(`{"kind":"OperationMessage","sender":"umap","verb":"update","subject":"feature","metadata":`+m1+`,"key":"properties.u","value":"x","hlc":"`+stamp(5, 0, fuzzPeerC)+`","x-extra":{"k":1}}`))
	src.Flush()

	var out [][]byte
	empty := newTestReplica(t, fuzzPeerA, wall)
	out = append(out, recv(t, src, empty.SyncRequest(fuzzPeerB)).Replies[0])
	// A replica holding part of it asks: the answer is the rest.
	half := newTestReplica(t, fuzzPeerA, wall)
	recv(t, half, out[0])
	must(src.Update("feature", m1, "properties.name", `"later"`))
	must(src.Update("feature", m2, "properties.name", `"later too"`))
	src.Flush()
	out = append(out, recv(t, src, half.SyncRequest(fuzzPeerB)).Replies[0])
	// pushBack: src asks a replica that answers with its own edits, and src, holding more,
	// answers back.
	own := newTestReplica(t, fuzzPeerA, wall)
	must(own.Update("feature", m3, "properties.own", `"mine"`))
	own.Flush()
	answer := recv(t, own, src.SyncRequest(fuzzPeerA)).Replies[0]
	back := recv(t, src, answer).Replies
	if len(back) != 1 || !bytes.Contains(back[0], []byte(`"pushBack":true`)) {
		t.Fatalf("no pushBack answer: %q", back)
	}
	out = append(out, back[0])
	// A partial page: src's catch-up cut to two operations a page, then the page after it.
	src.opts.SyncPage = 2
	first := recv(t, src, empty.SyncRequest(fuzzPeerB)).Replies[0]
	paged := newTestReplica(t, fuzzPeerA, wall)
	next := recv(t, paged, first).Replies
	if len(next) != 1 || !bytes.Contains(next[0], []byte(`"after":`)) {
		t.Fatalf("a partial page is not answered with a request for the next: %q", next)
	}
	out = append(out, first, recv(t, src, next[0]).Replies[0])
	src.opts.SyncPage = DefaultSyncPage
	for _, m := range out {
		if !bytes.HasPrefix(m, []byte(respHead)) || !bytes.Contains(m, []byte(`"state":`)) {
			t.Fatalf("not a compact response: %s", m)
		}
	}
	return out
}

// stateSeeds are compact responses on the edge of what the fast path takes: take says
// whether it must.
func stateSeeds() []struct {
	msg  string
	take bool
} {
	msg := func(objects, ops, peers, rest string) string {
		return respHead + `"` + fuzzPeerB + `"` + respRecipient + `"` + fuzzPeerA + `"` + respMessage + rest +
			`"state":{"objects":[` + objects + `],"ops":[` + ops + `],"peers":[` + peers + `]},"vector":{"` + fuzzPeerB + `":9},"verb":"ListOperationsResponse"}}`
	}
	w := strconv.FormatInt(t0+1, 10)
	f1 := `["feature",{"id":"f1","layerId":"L1"}]`
	pb := `"` + fuzzPeerB + `"`
	one := func(op string) string { return msg(f1, op, pb, "") }
	deep := strings.Repeat("[", 60) + strings.Repeat("]", 60)
	tooDeep := strings.Repeat("[", 63) + strings.Repeat("]", 63)
	type seed = struct {
		msg  string
		take bool
	}
	return []seed{
		{one(`[` + w + `,0,0,1,1,0,"properties.name","x"]`), true},
		{one(`[` + w + `,0,0,1,1,0,"properties.name"]`), true}, // an unset
		{one(`[` + w + `,0,0,1,2,0,{"type":"Feature","b":{"d":1,"c":[2,{"f":1,"e":2}]}}]`), true},
		{one(`[` + w + `,0,0,1,3,0]`), true},
		{one(`[` + w + `,0,0,1,4,[[1,0,"a","1"],[3,0],[2,0,{}]]]`), true},
		{one(`[` + w + `,0,0,1,1,0,"properties.a\\.b",1.5e3]`), true},
		{one(`[` + w + `,0,0,1,1,0,"properties.name","\u00e9\n"]`), true},
		{one(`[` + w + `,0,0,1,1,0,"properties.name", "x"]`), false}, // whitespace
		{one(`[` + w + `,0,0,1,1,0,"properties.x",` + deep + `]`), true},
		{one(`[` + w + `,0,0,1,1,0,"properties.x",` + tooDeep + `]`), false},
		{one(`[` + w + `,0,0,1,1,0,"properties.name","x"],[-1,1,0,2,1,0,"properties.name","y"]`), true},
		{msg(``, ``, ``, ""), true},
		// Two peers; then a response without pushBack is answered with what its sender
		// lacks (the operations of fuzzPeerC), one with it is not.
		{msg(f1, `[`+w+`,3,1,1,1,0,"properties.c","c"],[0,4,0,2,1,0,"properties.b","b"]`, pb+`,"`+fuzzPeerC+`"`, ""), true},
		{msg(f1, ``, pb, `"pushBack":true,`), true},
		{msg(f1, ``, pb, ""), true},
		// A partial page: answered with a request for the next one.
		{msg(f1, ``, pb, `"more":"`+stamp(1, 0, fuzzPeerB)+`",`), true},
		{msg(f1, ``, pb, `"more":"`+stamp(1, 0, fuzzPeerB)+`","pushBack":true,`), true},
		{msg(f1, `[`+w+`,0,0,1,1,0,"properties.name","x"]`, pb, `"more":"`+stamp(1, 0, fuzzPeerB)+`",`), true},
		{msg(f1, ``, pb, `"more":"`+stamp(1, 0, fuzzPeerB)+`"`), false}, // no comma after it
		{msg(f1, ``, pb, `"more":"1:2",`), false},                       // not a clock: bad_hlc
		{msg(f1, ``, pb, `"more":null,`), false},                        // null: no more (the parser takes it)
		{msg(f1, ``, pb, `"more":"`), false},
		{msg(`["feature",{"layerId":"L1","id":"f1"}],["map",{}]`, `[`+w+`,0,0,1,1,1,"properties.zoom",7]`, pb, ""), true},
		// Left to the general path, which accepts or refuses them.
		{msg(f1, ``, pb, `"pushBack":false,`), false},
		{one(`[` + w + `,0,1,1,1,0,"properties.name","x"]`), false},  // no peer 1
		{one(`[` + w + `,0,0,1,1,1,"properties.name","x"]`), false},  // no object 1
		{one(`[-1,0,0,1,1,0,"properties.name","x"]`), false},         // before the epoch
		{one(`[` + w + `,0,0,1,5,0]`), false},                        // no verb 5
		{one(`[` + w + `,0,0,1,0,0]`), false},                        // nor 0
		{one(`[` + w + `,0,0,01,1,0,"properties.name","x"]`), false}, // a leading zero
		{one(`[` + w + `,0,0,9007199254740992,1,0,"properties.name","x"]`), false},
		{one(`[` + w + `,4294967296,0,1,1,0,"properties.name","x"]`), false},
		{one(`[` + w + `,0,0,1,1,0,"properties.name","x",1]`), false}, // five parts
		{one(`[` + w + `,0,0,1,1,0,"properties..name","x"]`), false},  // a bad key
		{one(`[` + w + `,0,0,1,1,0,"properties.name",tru]`), false},
		{one(`[` + w + `,0,0,1,2,0,[1]]`), false},             // an upsert of an array
		{one(`[` + w + `,0,0,1,4,[]]`), false},                // an empty batch
		{one(`[` + w + `,0,0,1,4,[[1,0,"a","1"]],7]`), false}, // the general path ignores the 7
		{one(`[` + w + `,0,0,1,4,[[4,0]]]`), false},
		{one(`[` + w + `,0,0,1,1,0,"properties.name","x"] `), false},
		{one(`{"verb":"delete","subject":"feature","metadata":{"id":"f1","layerId":"L1"},"hlc":"` + stamp(1, 0, fuzzPeerB) + `","x":1}`), false},
		{msg(`["feature",{"id":1}]`, ``, pb, ""), false},   // metadata not flat
		{msg(`["planet",{"id":"f1"}]`, ``, pb, ""), false}, // an unknown subject
		{msg(`["feature",{"id":"f1"},1]`, ``, pb, ""), false},
		{msg(f1, ``, `"a b"`, ""), false}, // a bad peer id
		{msg(f1, ``, `"\u0061"`, ""), false},
		{strings.Replace(one(`[`+w+`,0,0,1,3,0]`), `{"`+fuzzPeerB+`":9}`, `{"x":-1}`, 1), false},
		{strings.Replace(one(`[`+w+`,0,0,1,3,0]`), `"recipient":"`+fuzzPeerA, `"recipient":"someone`, 1), false},
		{strings.Replace(one(`[`+w+`,0,0,1,3,0]`), `"recipient":"`+fuzzPeerA, `"recipient":"`, 1), true},
		{strings.Replace(one(`[`+w+`,0,0,1,3,0]`), `ListOperationsResponse`, `ListOperationsRequest`, 1), false},
		// Trailing commas, in every list the walk reads.
		{msg(f1+`,`, ``, pb, ""), false},
		{msg(f1, ``, pb+`,`, ""), false},
		{one(`[` + w + `,0,0,1,3,0],`), false},
		{one(`[` + w + `,0,0,1,4,[[3,0],]]`), false},
		{one(`[` + w + `,0,0,1,1,0,"properties.name",]`), false},
		{one(`[` + w + `,0,0,1,3,0,]`), false},
		{one(`[`+w+`,0,0,1,3,0]`) + " ", false},
		{one(`[` + w + `,0,0,1,3,0]`)[:200], false},
		{respHead, false},
	}
}

func TestFastResponseDecodesAsTheParser(t *testing.T) {
	seeds := stateSeeds()
	var msgs [][]byte
	for _, s := range seeds {
		msgs = append(msgs, []byte(s.msg))
	}
	for i, took := range respondBoth(t, Options{}, msgs) {
		if took != seeds[i].take {
			t.Errorf("the fast path took %v, want %v: %s", took, seeds[i].take, seeds[i].msg)
		}
	}
	// Every seed on its own replica: no earlier message helps or hides it.
	for _, s := range seeds {
		respondBoth(t, Options{}, [][]byte{[]byte(s.msg)})
	}
	// What peers send is taken, whole.
	peers := peerResponses(t)
	for i, took := range respondBoth(t, Options{}, peers) {
		if !took {
			t.Errorf("the fast path left response %d to the parser: %s", i, peers[i])
		}
	}
	// More operations than a replica takes in one message: refused alike.
	small := Options{Limits: DefaultLimits()}
	small.Limits.MaxBatch = 3
	if took := respondBoth(t, small, peers[:1]); took[0] {
		t.Error("the fast path took more operations than MaxBatch")
	}
}

// FuzzFastResponse: any message (or several, one a line) is received through the fast
// path exactly as through the general parser, or is left to it.
func FuzzFastResponse(f *testing.F) {
	for _, s := range stateSeeds() {
		f.Add([]byte(s.msg))
	}
	for _, m := range peerResponses(f) {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		respondBoth(t, Options{}, splitMessages(data))
	})
}

// TestFastIntAsDecimal: fastInt takes the integers decimal takes, with the same value, and
// stops where the integer does.
func TestFastIntAsDecimal(t *testing.T) {
	texts := []string{"0", "-0", "7", "-7", "01", "-01", "00", "-", "", "+1", "1e3", "1.5",
		"123456789012345678", "-123456789012345678", "1234567890123456789", "9223372036854775807",
		"99999999999999999999999", "٣", "1a"}
	for _, text := range texts {
		for _, signed := range []bool{false, true} {
			want, ok := decimal(text, signed)
			got, end := fastInt(text+",", 0, signed)
			if (end >= 0) != ok || (ok && (got != want || end != len(text))) {
				// A text decimal refuses as a whole may still start with an integer
				// fastInt reads (it stops at the first byte not a digit): then the byte
				// after must not be the separator.
				if !ok && end >= 0 && end < len(text) {
					continue
				}
				t.Errorf("fastInt(%q, %v) = %d, %d; decimal %d, %v", text, signed, got, end, want, ok)
			}
		}
	}
}
