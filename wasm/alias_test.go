package main

import (
	"bytes"
	"math/rand/v2"
	"regexp"
	"strconv"
	"testing"

	"github.com/mapcrdt/mapcrdt/crdt"
	"github.com/mapcrdt/mapcrdt/hlc"
)

// twinHosts runs every call on two hosts: one given fresh copies of the arguments, the
// other the arguments in one buffer that is overwritten after each call — the wasm
// bridge's input buffer, which the next call writes into. Whatever an engine keeps of an
// argument's text shows as a difference between the two.
type twinHosts struct {
	t            *testing.T
	fresh, reuse *Host
	buf          []byte
}

func (x *twinHosts) call(m Method, h uint32, a ...string) (string, bool) {
	x.t.Helper()
	return x.run(true, m, h, a...)
}

// random is call for a call whose answer is random (a JoinResponse picks a peer to ask).
func (x *twinHosts) random(m Method, h uint32, a ...string) {
	x.t.Helper()
	x.run(false, m, h, a...)
}

// sessionToken matches a session token in a sync message.
var sessionToken = regexp.MustCompile(`"(session|for)":"[0-9a-z]{8}"`)

func (x *twinHosts) run(compare bool, m Method, h uint32, a ...string) (string, bool) {
	x.t.Helper()
	out1, ok1 := x.fresh.Call(nil, &Call{Method: m, Handle: h, Now: t0, Args: args(a...)})
	x.buf = x.buf[:0]
	for _, s := range a {
		x.buf = append(x.buf, s...)
	}
	in := make([][]byte, len(a))
	off := 0
	for i, s := range a {
		in[i] = x.buf[off : off+len(s) : off+len(s)]
		off += len(s)
	}
	out2, ok2 := x.reuse.Call(nil, &Call{Method: m, Handle: h, Now: t0, Args: in})
	for i := range x.buf {
		x.buf[i] = 'x'
	}
	// Each engine's session token (its sync requests and answers) is random.
	out1, out2 = sessionToken.ReplaceAll(out1, []byte(`"$1":"~"`)), sessionToken.ReplaceAll(out2, []byte(`"$1":"~"`))
	if compare && (ok1 != ok2 || !bytes.Equal(out1, out2)) {
		x.t.Fatalf("%s: the hosts answer\n%.300s\n%.300s", methodNames[m], out1, out2)
	}
	return string(out1), ok1
}

// TestHostKeepsNothingOfItsArguments: two hosts, one reading its arguments from a buffer
// overwritten after every call, answer every call alike — operations, a compact catch-up,
// the relay's peer lists, SavedMessages, sync requests, edits, seeds, markSaved — and end
// with equal states, peers, clocks, vectors, dirty lists and snapshots. A failure prints
// its seed.
func TestHostKeepsNothingOfItsArguments(t *testing.T) {
	metas := []string{`{"id":"f1","layerId":"L1"}`, `{"featureType":"marker","id":"f2","layerId":"L1"}`, `{"id":"L1"}`, `{}`}
	subjects := []string{"feature", "feature", "datalayer", "map"}
	keys := []string{"properties.name", "properties._umap_options.color", "geometry", "properties.a\\.b"}
	for seed := range 20 {
		rng := rand.New(rand.NewPCG(uint64(seed), 3))
		wall := hlc.NewManualClock(t0)
		src := func(peer string) *crdt.Replica {
			r, err := crdt.NewReplica(crdt.Options{PeerID: peer, Wall: wall})
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		a, b := src("alice"), src("bob")
		var msgs [][]byte
		for step := range 40 {
			wall.Advance(int64(1 + rng.IntN(3)))
			r := []*crdt.Replica{a, b}[rng.IntN(2)]
			k := rng.IntN(len(metas))
			v := `"v` + strconv.Itoa(step) + `"`
			if rng.IntN(4) == 0 {
				v = `{"x":[` + strconv.Itoa(step) + `,"é"]}`
			}
			var err error
			switch rng.IntN(6) {
			case 0:
				_, err = r.Upsert(subjects[k], metas[k], `{"type":"Feature","properties":{"name":`+v+`}}`)
			case 1:
				_, err = r.Delete(subjects[k], metas[k])
			default:
				_, err = r.Update(subjects[k], metas[k], keys[rng.IntN(len(keys))], v)
			}
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, r.Flush()...)
		}
		// What sink will get: a catch-up from alice first (compact), then every operation.
		asker := src("sink")
		res, err := a.Receive(asker.SyncRequest("alice"))
		if err != nil || len(res.Replies) != 1 {
			t.Fatalf("seed %d: alice's response: %v", seed, err)
		}
		x := &twinHosts{t: t, fresh: NewHost(), reuse: NewHost()}
		out, _ := x.call(MethodCreate, 0, "sink")
		if out2, _ := x.call(MethodCreate, 0, "other"); out2 == out {
			t.Fatal("one handle for two engines")
		}
		h64, _ := strconv.ParseUint(out, 10, 32)
		h := uint32(h64)
		x.random(MethodReceive, h, `{"kind":"JoinResponse","peer":"sink","peers":["alice","bob","sink"]}`)
		x.call(MethodReceive, h, string(res.Replies[0]))
		for _, m := range msgs {
			x.call(MethodReceive, h, string(m))
			if rng.IntN(5) == 0 {
				x.call(MethodEdit, h, "update", "feature", metas[0], "properties.mine", `"s`+strconv.Itoa(rng.IntN(9))+`"`, `{"was":"é"}`, "grp")
			}
		}
		x.call(MethodReceive, h, string(a.SavedMessage()))
		x.call(MethodReceive, h, `{"kind":"SavedMessage","sender":"bob","lastKnownHLC":"`+b.Clock().String()+`"}`) // uMap's: no vector
		x.call(MethodReceive, h, `{"kind":"ListPeersResponse","peers":["alice","bob","carol","sink"]}`)
		x.call(MethodReceive, h, `{"kind":"PeerMessage","sender":"carol","recipient":"sink","message":{"verb":"ListOperationsRequest","vector":{"alice":1}}}`)
		x.call(MethodSeed, h, "feature", `{"id":"base","layerId":"L9"}`, `{"type":"Feature","properties":{"name":"b"}}`)
		x.call(MethodMarkSaved, h, strconv.FormatInt(t0+1, 10)+":0:zed")
		x.call(MethodSetPeers, h, "alice\x1ezed")
		for _, m := range []Method{MethodState, MethodPeers, MethodClock, MethodVector, MethodDirty, MethodFlush, MethodSnapshot, MethodUndo} {
			x.call(m, h)
		}
		x.call(MethodReceive, h, `{"kind":"JoinResponse","peer":"sink","peers":["alice","sink"]}`) // one peer to ask
		x.call(MethodPeers, h)
	}
}
