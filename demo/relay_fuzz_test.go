package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mapcrdt/mapcrdt/crdt"
	"github.com/mapcrdt/mapcrdt/hlc"
)

// fuzzWall is the relay replica's wall clock in FuzzRelayMessages (ms): the seeds' clocks
// are at or before it, so they pass the drift guard on any day the fuzzer runs.
const fuzzWall = 1727193549000

// fuzzSeeds are messages a browser may send after its JoinRequest, separated by 0x1e in a
// seed: valid operations of every verb and subject, a sync request and response for the
// relay, a message routed to the other peer, and broken ones (a raw line break inside a
// string, a second JoinRequest, a far-future clock, a non-object).
var fuzzSeeds = []string{
	`{"kind":"OperationMessage","sender":"alice","verb":"update","subject":"map","metadata":{},"key":"properties.name","value":"Café","hlc":"1727193549000:0:alice","seq":1}`,
	`{"kind":"OperationMessage","sender":"alice","verb":"upsert","subject":"feature","metadata":{"id":"f1","layerId":"L1","featureType":"marker"},"value":{"type":"Feature","properties":{"name":"a"},"geometry":{"type":"Point","coordinates":[2.3,48.8]}},"hlc":"1727193549000:1:alice","seq":2}` +
		"\x1e" + `{"kind":"OperationMessage","sender":"alice","verb":"delete","subject":"feature","metadata":{"id":"f1","layerId":"L1","featureType":"marker"},"hlc":"1727193549000:2:alice","seq":3}`,
	`{"kind":"OperationMessage","sender":"alice","verb":"batch","operations":[{"verb":"upsert","subject":"datalayer","metadata":{"id":"L1"},"value":{"type":"FeatureCollection","_umap_options":{"name":"one"}}},{"verb":"update","subject":"datalayer","metadata":{"id":"L1"},"key":"_umap_options.name","value":"two"}],"hlc":"1727193548000:0:alice","seq":1}`,
	`{"kind":"SavedMessage","sender":"alice","lastKnownHLC":"1727193549000:0:alice"}`,
	`{"kind":"PeerMessage","recipient":"relay","message":{"verb":"ListOperationsRequest","vector":{},"lastKnownHLC":null}}`,
	`{"kind":"PeerMessage","recipient":"relay","message":{"verb":"ListOperationsResponse","operations":[{"kind":"OperationMessage","sender":"carol","verb":"update","subject":"map","metadata":{},"key":"properties.zoom","value":7,"hlc":"1727193540000:0:carol","seq":1}]}}`,
	`{"kind":"PeerMessage","recipient":"bob","message":{"verb":"ListOperationsRequest","vector":{}}}`,
	`{"kind":"ping"}` + "\x1e" + `{"kind":"JoinRequest","peer":"again"}`,
	"{\"kind\":\"OperationMessage\",\"sender\":\"alice\",\"verb\":\"update\",\"subject\":\"map\",\"metadata\":{},\"key\":\"properties.name\",\"value\":\"two\nlines\",\"hlc\":\"1727193549000:3:alice\",\"seq\":1}",
	"{\"kind\":\"OperationMessage\",\n\"sender\":\"alice\",\"verb\":\"update\",\"subject\":\"map\",\"metadata\":{},\"key\":\"properties.name\",\r\n\"value\":\"a\\u2028b\",\"hlc\":\"1727193549000:4:alice\",\"seq\":1}",
	`{"kind":"OperationMessage","sender":"alice","verb":"update","subject":"map","metadata":{},"key":"properties.name","value":1,"hlc":"1827193549000:0:alice","seq":1}`,
	`[1,2]` + "\x1e" + `null` + "\x1e" + `{"kind":"Gossip"}`,
}

// FuzzRelayMessages sends the messages of its input (split at 0x1e) from one joined
// connection to a relay whose room holds a stored crdt replica, with another peer in the
// room, calling the connection's handler directly (no WebSocket). Whatever the bytes:
//   - nothing panics;
//   - a message the relay refuses changes neither the replica nor what the other peer
//     receives, and the sender's next connection works;
//   - an operation accepted reaches the other peer byte for byte, and whatever
//     the other peer receives (a PeerMessage's forward) is JSON;
//   - the replica read back from its files — as a crash leaves them, and after the room
//     closes — equals the replica that ran.
func FuzzRelayMessages(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(strings.Join(fuzzSeeds, "\x1e")))
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		so := storeOptions{Dir: dir, CompactEvery: 3, Log: quiet,
			Replica: crdt.Options{Wall: hlc.NewManualClock(fuzzWall)}}
		relay := NewRelay(Options{NewReplica: newStoreFactory(so), Log: quiet})
		joinConn := func(peer string) *conn {
			c := newConn(relay, nil, "m")
			if err := c.handle([]byte(`{"kind":"JoinRequest","peer":"` + peer + `"}`)); err != nil {
				t.Fatalf("join %s: %v", peer, err)
			}
			return c
		}
		bob := joinConn("bob")
		alice := joinConn("alice")
		rm := bob.room
		store := rm.replica.(*storeReplica)
		drain(bob)

		msgs := bytes.Split(data, []byte{0x1e})
		if len(msgs) > 16 {
			msgs = msgs[:16]
		}
		for _, msg := range msgs {
			before, beforeLen := store.r.State(), store.r.LogLen()
			err := alice.handle(msg)
			settled(rm) // what msg brings waits for its sync (group commit)
			got := drain(bob)
			if err != nil {
				if _, ok := err.(*closeError); !ok {
					t.Fatalf("%q: error %T %v, not a closeError", msg, err, err)
				}
				if st, n := store.r.State(), store.r.LogLen(); st != before || n != beforeLen {
					t.Fatalf("%q refused (%v) but the replica changed:\n%s (%d ops)\nwas\n%s (%d ops)", msg, err, st, n, before, beforeLen)
				}
				if len(got) > 0 {
					t.Fatalf("%q refused (%v) but bob received %q", msg, err, got)
				}
				// The connection is closed; the browser reconnects.
				relay.leave(alice)
				drain(bob)
				alice = joinConn("alice")
				drain(bob)
				continue
			}
			for _, m := range got {
				if !json.Valid(m) {
					t.Fatalf("%q accepted, bob received %q: not JSON", msg, m)
				}
			}
			if k := kindOf(msg); k == "OperationMessage" || k == "SavedMessage" {
				// Broadcast as sent, but for its sender: the connection's peer (withSender).
				if len(got) != 1 || !bytes.Equal(got[0], withSender(msg, "alice")) {
					t.Fatalf("%q accepted, bob received %q", msg, got)
				}
			}
		}

		// A crash now: the files as they are, read by a new replica.
		want := store.r.State()
		crashed := t.TempDir()
		for _, name := range []string{"m.snapshot", "m.log"} {
			if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
				if err := os.WriteFile(filepath.Join(crashed, name), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		co := so
		co.Dir = crashed
		back, err := reopen(co)
		if err != nil {
			t.Fatalf("reopening the files after a crash: %v", err)
		}
		if got := back.r.State(); got != want {
			t.Fatalf("read back after a crash:\n%s\nran\n%s", got, want)
		}
		back.Close()

		// The room closes (the replica compacts into its snapshot) and opens again.
		relay.leave(alice)
		relay.leave(bob)
		again, err := reopen(so)
		if err != nil {
			t.Fatalf("reopening after close: %v", err)
		}
		defer again.Close()
		if got := again.r.State(); got != want {
			t.Fatalf("read back after close:\n%s\nran\n%s", got, want)
		}
	})
}

// reopen opens map "m" of o.Dir as the relay does.
func reopen(o storeOptions) (*storeReplica, error) {
	r, err := newStoreFactory(o)("m")
	if err != nil {
		return nil, err
	}
	return r.(*storeReplica), nil
}

// settled returns once rm holds back nothing for a sync (group commit): the messages
// handled so far are durable, and what comes of them queued.
func settled(rm *room) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	rm.settle()
}

// drain returns the messages queued for c, emptying its queue.
func drain(c *conn) [][]byte {
	var out [][]byte
	for {
		m, ok := c.next()
		if !ok {
			return out
		}
		c.written(m) // as the writer does
		out = append(out, m)
	}
}

// kindOf returns the "kind" of a message the relay accepted ("" if it has none).
func kindOf(msg []byte) string {
	var m struct {
		Kind string `json:"kind"`
	}
	if json.Unmarshal(msg, &m) != nil {
		return ""
	}
	return m.Kind
}
