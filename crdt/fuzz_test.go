package crdt

// Fuzz targets for every decoder the network reaches. The seeds below run with every plain
// `go test`, and so does the committed corpus in testdata/fuzz/<Name>/. Run one target
// longer with
//
//	go test -run '^$' -fuzz FuzzDecodeOp -fuzztime 60s ./crdt

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mapcrdt/mapcrdt/hlc"
)

// Peer ids of the fuzzed replicas: not something a seed uses, so an operation from the
// input is never mistaken for one of theirs.
const (
	fuzzPeerA = "fz-a-5c0e2f"
	fuzzPeerB = "fz-b-9d41aa"
	fuzzPeerC = "fz-c-03b7e1"
)

// fuzzWall is the wall clock of every fuzzed replica: the clocks of the seeds are around
// t0, and within the drift guard.
func fuzzWall() *hlc.ManualClock { return hlc.NewManualClock(t0 + 10_000) }

func addOpSeeds(f *testing.F) {
	h := func(ms int64, peer string) string { return stamp(ms, 0, peer) }
	for _, s := range []string{
		// A plain update, as uMap's Journal sends it.
		`{"kind":"OperationMessage","sender":"bob","verb":"update","subject":"feature","metadata":{"id":"f1","layerId":"L1","featureType":"marker"},"key":"properties.name","value":"Café","hlc":"` + h(1, "bob") + `","seq":1}`,
		// An unset (no value) and a null.
		`{"kind":"OperationMessage","sender":"bob","verb":"update","subject":"map","metadata":{},"key":"properties.name","hlc":"` + h(2, "bob") + `","seq":2}`,
		`{"verb":"update","subject":"map","key":"a\\.b","value":null,"hlc":"` + h(3, "bob") + `"}`,
		// Upsert, delete, batch.
		`{"kind":"OperationMessage","sender":"alice","verb":"upsert","subject":"datalayer","metadata":{"id":"L1"},"value":{"type":"FeatureCollection","features":[],"_umap_options":{"name":"Trees"}},"hlc":"` + h(4, "alice") + `","seq":1}`,
		`{"kind":"OperationMessage","sender":"alice","verb":"delete","subject":"feature","metadata":{"id":"f1","layerId":"L1"},"hlc":"` + h(5, "alice") + `","seq":2}`,
		`{"kind":"OperationMessage","sender":"alice","verb":"batch","operations":[{"verb":"upsert","subject":"feature","metadata":{"id":"f2","layerId":"L1"},"value":{"type":"Feature","geometry":{"type":"Point","coordinates":[1,2]}}},{"verb":"update","subject":"feature","metadata":{"id":"f2","layerId":"L1"},"key":"properties.name","value":"x"},{"verb":"update","subject":"feature","metadata":{"id":"f2","layerId":"L1"},"key":"properties.name","value":"y"}],"hlc":"` + h(6, "alice") + `","seq":3}`,
		// Unknown fields, escaped names, numbers as written.
		`{"kind":"OperationMessage","sender":"bob","verb":"update","subject":"mappermissions","metadata":{"x":[1,{}]},"key":"edit_status","value":[1.0,1e3,-0,"\ud800"],"x-extra":{"b":1,"a":2},"hlc":"` + h(7, "bob") + `","seq":3}`,
		// Parent and child paths.
		`{"verb":"update","subject":"feature","metadata":{"id":"f1","layerId":"L1"},"key":"properties","value":{"name":"p","color":"red"},"hlc":"` + h(8, "carol") + `","seq":1}`,
		// Sync messages.
		`{"kind":"PeerMessage","sender":"bob","recipient":"` + fuzzPeerA + `","message":{"verb":"ListOperationsRequest","vector":{"bob":2},"lastKnownHLC":"` + h(1, "bob") + `"}}`,
		`{"kind":"PeerMessage","sender":"bob","recipient":"","message":{"verb":"ListOperationsResponse","operations":[{"verb":"delete","subject":"map","hlc":"` + h(1, "bob") + `","seq":1},{"verb":"update","subject":"map","key":"k","value":1,"hlc":"` + h(2, "bob") + `","seq":2}],"vector":{"bob":2}}}`,
		`{"kind":"PeerMessage","sender":"bob","message":{"verb":"ListOperationsResponse","state":{"peers":["bob"],"objects":[["feature",{"id":"f1","layerId":"L1"}]],"ops":[[` + "1727184449001" + `,0,0,1,1,0,"properties.name","a"],[1,0,0,2,2,0,{"type":"Feature"}],[1,0,0,3,4,[[1,0,"geometry"],[3,0]]]]},"vector":{"bob":3}}}`,
		`{"kind":"SavedMessage","sender":"bob","lastKnownHLC":"` + h(9, "bob") + `"}`,
		`{"kind":"JoinResponse","peers":["bob","alice"]}`,
		`{"kind":"pong"}`,
		// Bad input of every kind.
		``,
		`{`,
		`{"verb":"update"}`,
		`{"verb":"update","subject":"feature","metadata":{"id":1},"key":"a","hlc":"1:0:x"}`,
		`{"verb":"upsert","subject":"map","value":[],"hlc":"1:0:x"}`,
		`{"verb":"update","subject":"map","key":"a..b","value":1,"hlc":"1:0:x"}`,
		`{"verb":"update","subject":"map","key":"a","value":1,"hlc":"99999999999999:0:x"}`,
		`{"verb":"batch","operations":[{"verb":"batch","operations":[]}],"hlc":"1:0:x"}`,
		"{\"verb\":\"update\",\"subject\":\"map\",\"key\":\"a\",\"value\":\"\xff\",\"hlc\":\"1:0:x\"}",
		`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[`,
	} {
		f.Add([]byte(s))
	}
}

// FuzzDecodeOp decodes any bytes as a message on a fresh replica. It must never panic; an
// error must carry a stable code and change nothing; a message that is accepted must leave
// a canonical state, and come out of the replica's sync output (both encodings) as the same
// state on a second replica.
func FuzzDecodeOp(f *testing.F) {
	addOpSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		wall := fuzzWall()
		a := newTestReplica(t, fuzzPeerA, wall)
		before, vv := a.State(), a.Vector()
		_, err := a.Receive(data)
		if err != nil {
			if c := Code(err); c == "internal" || c == "" {
				t.Fatalf("error without a code: %v", err)
			}
			if a.State() != before || !vectorsEqual(a.Vector(), vv) || a.LogLen() != 0 {
				t.Fatalf("a rejected message changed the replica: %v\n%s", err, a.State())
			}
			return
		}
		if bytes.Contains(data, []byte("fz-")) {
			return // the input names the fuzzed replicas: their own operations are not relayed
		}
		want := a.State()
		checkStateCanonical(t, want)
		// A mapcrdt peer catches up (compact encoding).
		b := newTestReplica(t, fuzzPeerB, wall)
		syncPair(t, b, a)
		if got := b.State(); got != want {
			t.Fatalf("compact sync output decodes to another state\n got %s\nwant %s", got, want)
		}
		// A plain uMap peer catches up (operations as uMap writes them).
		c := newTestReplica(t, fuzzPeerC, wall)
		res := recv(t, a, umapRequest(fuzzPeerC, fuzzPeerA, ""))
		for _, m := range res.Replies {
			recv(t, c, m)
		}
		if got := c.State(); got != want {
			t.Fatalf("uMap sync output decodes to another state\n got %s\nwant %s", got, want)
		}
	})
}

// splitMessages cuts fuzz input into at most 8 messages at newlines.
func splitMessages(data []byte) [][]byte {
	parts := bytes.SplitN(data, []byte("\n"), 8)
	out := parts[:0]
	for _, p := range parts {
		if len(p) > 0 {
			out = append(out, p)
		}
	}
	return out
}

// opsOf returns the operations a message holds, by clock, as wire text (nil if the message
// is rejected).
func opsOf(t testing.TB, msg []byte) map[hlc.Timestamp]string {
	r := newTestReplica(t, fuzzPeerC, fuzzWall())
	if _, err := r.Receive(msg); err != nil {
		return nil
	}
	out := map[hlc.Timestamp]string{}
	for _, o := range r.log.ops {
		out[o.ts] = string(appendOp(nil, o, ""))
	}
	return out
}

// FuzzReceive applies the messages of the input to two replicas, in order and in reverse
// order. Nothing panics; a message refused fails with a stable code and leaves the replica
// as it was (state, vector, log); both accept the same messages (validation does not depend
// on the state); and if every clock names one operation only, both end in the same state,
// canonical JSON, the naive replay's.
func FuzzReceive(f *testing.F) {
	h := func(ms int64, c uint32, peer string) string { return stamp(ms, c, peer) }
	for _, s := range []string{
		// Concurrent writes of one key, a delete, an update older than the delete.
		`{"verb":"upsert","subject":"feature","metadata":{"id":"f1","layerId":"L1"},"value":{"properties":{"name":"a"}},"hlc":"` + h(1, 0, "alice") + `","seq":1}` + "\n" +
			`{"verb":"update","subject":"feature","metadata":{"id":"f1","layerId":"L1"},"key":"properties.name","value":"b","hlc":"` + h(2, 0, "bob") + `","seq":1}` + "\n" +
			`{"verb":"update","subject":"feature","metadata":{"id":"f1","layerId":"L1"},"key":"properties.name","value":"c","hlc":"` + h(2, 0, "carol") + `","seq":1}` + "\n" +
			`{"verb":"delete","subject":"feature","metadata":{"id":"f1","layerId":"L1"},"hlc":"` + h(3, 0, "alice") + `","seq":2}`,
		// Parent and child, in the "wrong" order.
		`{"verb":"update","subject":"map","key":"properties.name","value":"new","hlc":"` + h(7, 0, "bob") + `"}` + "\n" +
			`{"verb":"update","subject":"map","key":"properties","value":{"name":"old","zoom":3},"hlc":"` + h(5, 0, "alice") + `"}` + "\n" +
			`{"verb":"update","subject":"map","key":"properties.zoom","hlc":"` + h(6, 0, "carol") + `"}`,
		// A batch, a duplicate, a sync response holding both.
		`{"verb":"batch","operations":[{"verb":"update","subject":"map","key":"a","value":1},{"verb":"update","subject":"map","key":"a.b","value":2},{"verb":"update","subject":"map","key":"a"}],"hlc":"` + h(4, 0, "alice") + `","seq":1}` + "\n" +
			`{"verb":"batch","operations":[{"verb":"update","subject":"map","key":"a","value":1},{"verb":"update","subject":"map","key":"a.b","value":2},{"verb":"update","subject":"map","key":"a"}],"hlc":"` + h(4, 0, "alice") + `","seq":1}` + "\n" +
			`{"kind":"PeerMessage","sender":"x","message":{"verb":"ListOperationsResponse","operations":[{"verb":"update","subject":"map","key":"a.c","value":3,"hlc":"` + h(4, 1, "bob") + `","seq":1}],"vector":{"bob":1}}}`,
		// Upsert after newer updates; a seq-less operation; a bad message in between.
		`{"verb":"update","subject":"feature","metadata":{"id":"f","layerId":"L"},"key":"geometry.coordinates","value":[3,4],"hlc":"` + h(9, 0, "bob") + `","seq":2}` + "\n" +
			`not json` + "\n" +
			`{"verb":"upsert","subject":"feature","metadata":{"id":"f","layerId":"L"},"value":{"geometry":{"type":"Point","coordinates":[1,2]}},"hlc":"` + h(8, 0, "alice") + `"}`,
		// The same clock with two contents: the replicas may differ, and must not panic.
		`{"verb":"update","subject":"map","key":"k","value":1,"hlc":"` + h(1, 0, "eve") + `"}` + "\n" +
			`{"verb":"update","subject":"map","key":"k","value":2,"hlc":"` + h(1, 0, "eve") + `"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		msgs := splitMessages(data)
		wall := fuzzWall()
		fwd := newTestReplica(t, fuzzPeerA, wall)
		rev := newTestReplica(t, fuzzPeerB, wall)
		okF := make([]bool, len(msgs))
		okR := make([]bool, len(msgs))
		// receive gives r message i, and checks that a refusal has a stable code and left r
		// as it was.
		receive := func(r *Replica, i int) bool {
			state, vv, n := r.State(), r.Vector(), r.LogLen()
			_, err := r.Receive(msgs[i])
			if err == nil {
				return true
			}
			if c := Code(err); c == "internal" || c == "" {
				t.Fatalf("error without a code: %v", err)
			}
			if r.State() != state || !vectorsEqual(r.Vector(), vv) || r.LogLen() != n {
				t.Fatalf("message %d was refused (%v) and changed the replica: %q", i, err, msgs[i])
			}
			return false
		}
		for i := range msgs {
			okF[i] = receive(fwd, i)
		}
		for i := len(msgs) - 1; i >= 0; i-- {
			okR[i] = receive(rev, i)
		}
		for i := range msgs {
			if okF[i] != okR[i] {
				t.Fatalf("message %d accepted in one order only (forward %v, reverse %v): %q", i, okF[i], okR[i], msgs[i])
			}
		}
		// Skip inputs where one clock names two different operations: which one a replica
		// keeps depends on arrival (a peer that reuses a clock breaks the model).
		seen := map[hlc.Timestamp]string{}
		for i, m := range msgs {
			if !okF[i] {
				continue
			}
			for ts, text := range opsOf(t, m) {
				if prev, ok := seen[ts]; ok && prev != text {
					return
				}
				seen[ts] = text
			}
		}
		if fwd.State() != rev.State() {
			t.Fatalf("the replicas diverge\nforward %s\nreverse %s", fwd.State(), rev.State())
		}
		checkStateCanonical(t, fwd.State())
		// Each matches the naive replay of what it accepted.
		or := newOracle(t)
		for ts, text := range seen {
			_ = ts
			or.add([]byte(text))
		}
		if got, want := norm(t, fwd.State()), or.state(); got != want {
			t.Fatalf("the replicas differ from the replay\n got %s\nwant %s", got, want)
		}
	})
}

// checkStateCanonical checks that state, as State returns it, is an array of
// {"subject","metadata","value"} (in that order), by subject, each metadata and value
// canonical JSON.
func checkStateCanonical(t *testing.T, state string) {
	t.Helper()
	var objs []struct {
		Subject         string
		Metadata, Value json.RawMessage
	}
	if !utf8.ValidString(state) || json.Unmarshal([]byte(state), &objs) != nil {
		t.Fatalf("the state is not JSON: %q", state)
	}
	for i, o := range objs {
		if i > 0 && o.Subject < objs[i-1].Subject {
			t.Fatalf("the state's objects are not by subject: %s", state)
		}
		for _, part := range []json.RawMessage{o.Metadata, o.Value} {
			if c, err := canonicalJSON(string(part), 1<<10); err != nil || c != string(part) {
				t.Fatalf("the state is not canonical (%v): %s, not %s\n%s", err, part, c, state)
			}
		}
		subject, _ := json.Marshal(o.Subject)
		want := `{"subject":` + string(subject) + `,"metadata":` + string(o.Metadata) + `,"value":` + string(o.Value) + `}`
		if !strings.Contains(state, want) {
			t.Fatalf("the state's object %d is not written {subject, metadata, value}: %s", i, state)
		}
	}
}

// FuzzCanonicalJSON compares canonicalJSON with encoding/json. Documented differences:
// canonicalJSON rejects invalid UTF-8 (encoding/json lets it through and replaces it), and
// nesting beyond its limit; duplicate names keep the last value in both; a lone surrogate
// escape is kept as written in a value and becomes U+FFFD in a name, as encoding/json
// decodes it.
func FuzzCanonicalJSON(f *testing.F) {
	for _, s := range []string{
		`{"b":1,"a":[true,false,null,{"d":"x","c":-1.5e+10}]}`, // sorting, all kinds of values
		`{"a":1,"a":2}`,                                         // duplicate names: the last wins
		`{"\u0061":1,"a":2}`,                                    // a duplicate spelled differently
		" \t\r\n{ \"a\" : [ 1 , 2 ] } \n",                       // whitespace
		`"\u00e9\ud83d\ude00\n\"\\\/\b\f\r\t"`,                  // escapes in a value are kept
		`{"\ud800":1,"\udfff":2}`,                               // lone surrogates in names: bad_value
		`["\ud800x","\udc00"]`,                                  // lone surrogates in values
		`[1.0,1e3,1E+3,-0,0.10,123456789012345678901234567890]`, // numbers kept as written
		`{"a":`,                // truncated
		`{} x`,                 // trailing garbage
		"\"\xff\"",             // invalid UTF-8
		`"\x"`,                 // bad escape
		`[01]`,                 // leading zero
		`[[[[[[[[[[]]]]]]]]]]`, // nesting
		``,                     // empty
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		const depth = 200
		c, err := canonicalJSON(s, depth)
		std := json.Valid([]byte(s))
		if err != nil {
			if Code(err) != "invalid_json" && Code(err) != "too_deep" && Code(err) != "bad_value" {
				t.Fatalf("code %q: %v", Code(err), err)
			}
			if std && !errors.Is(err, ErrTooDeep) && !errors.Is(err, ErrBadValue) && utf8.ValidString(s) {
				t.Fatalf("encoding/json accepts %q, canonicalJSON does not: %v", s, err)
			}
			return
		}
		if !std {
			t.Fatalf("canonicalJSON accepts %q, encoding/json does not", s)
		}
		if !utf8.ValidString(c) || !json.Valid([]byte(c)) {
			t.Fatalf("output %q is not valid JSON", c)
		}
		again, err := canonicalJSON(c, depth)
		if err != nil || again != c {
			t.Fatalf("not idempotent: %q → %q → %q, %v", s, c, again, err)
		}
		if strings.ContainsAny(outsideStrings(c), " \t\r\n") {
			t.Fatalf("whitespace left in %q", c)
		}
		if a, b := normJSON(decodeNumber(t, s)), normJSON(decodeNumber(t, c)); a != b {
			t.Fatalf("different values\n in  %s\n out %s", a, b)
		}
	})
}

// outsideStrings returns the JSON text s with the contents of its strings left out.
func outsideStrings(s string) string {
	var b strings.Builder
	in := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case in && c == '\\':
			i++
		case c == '"':
			in = !in
		case !in:
			b.WriteByte(c)
		}
	}
	return b.String()
}
