package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/mapcrdt/mapcrdt/crdt"
)

func TestWithSender(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"replaced", `{"kind":"PeerMessage","sender":"x","recipient":"b","message":{}}`,
			`{"kind":"PeerMessage","sender":"alice","recipient":"b","message":{}}`},
		{"added after kind", `{"kind":"PeerMessage","recipient":"b","message":{}}`,
			`{"kind":"PeerMessage","sender":"alice","recipient":"b","message":{}}`},
		{"added after the last kind", ` { "recipient" : "b" , "kind":"x", "kind" : "PeerMessage"}`,
			` { "recipient" : "b" , "kind":"x", "kind" : "PeerMessage","sender":"alice"}`},
		{"added in front", `{"recipient":"b"}`, `{"sender":"alice","recipient":"b"}`},
		{"added to nothing", ` {} `, ` {"sender":"alice"} `},
		{"every duplicate", `{"sender":"relay","kind":"PeerMessage","sender":1,"send\u0065r":{"a":[1]}}`,
			`{"sender":"alice","kind":"PeerMessage","sender":"alice","send\u0065r":"alice"}`},
		{"whitespace, order and escapes kept",
			"{\"message\" :\n{\"v\":\"<&>\\u0026\\\"sender\\\":1\",\"sender\":\"inner\"} ,\"sender\":null,\"kind\":\"PeerMessage\"}\n",
			"{\"message\" :\n{\"v\":\"<&>\\u0026\\\"sender\\\":1\",\"sender\":\"inner\"} ,\"sender\":\"alice\",\"kind\":\"PeerMessage\"}\n"},
		{"numbers and literals", `{"a":-1.5e3,"sender":true,"b":[null,false,{"c":"]}"}],"d":"\\"}`,
			`{"a":-1.5e3,"sender":"alice","b":[null,false,{"c":"]}"}],"d":"\\"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !json.Valid([]byte(tt.in)) {
				t.Fatalf("input is not JSON: %s", tt.in)
			}
			if got := string(withSender([]byte(tt.in), "alice")); got != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

// FuzzWithSender: for any JSON object, withSender gives JSON whose every member named
// "sender" is the sender, and whose other members are the input's, byte for byte, in
// their order.
func FuzzWithSender(f *testing.F) {
	for _, s := range []string{
		`{"kind":"PeerMessage","sender":"x","recipient":"b","message":{"v":"<&>"}}`,
		`{"kind":"PeerMessage","recipient":"b","message":{}}`,
		` { "a" : [ 1 , { "b" : "\"}" } ] , "sender" : "\u0041" } `,
		`{"send\u0065r":1,"sender":2}`,
		`{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var top map[string]json.RawMessage
		if json.Unmarshal(in, &top) != nil || top == nil {
			return // the relay takes JSON objects only
		}
		out := withSender(in, "alice")
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%s gave %s: %v", in, out, err)
		}
		if got["sender"] != "alice" {
			t.Fatalf("%s gave sender %v", in, got["sender"])
		}
		others := func(text []byte) (kept []string) {
			for _, m := range members(text) {
				if m.name != "sender" {
					kept = append(kept, string(text[m.start:m.end]))
				}
			}
			return kept
		}
		if a, b := others(in), others(out); !reflect.DeepEqual(a, b) {
			t.Fatalf("members changed:\n%q\n%q", a, b)
		}
		for _, m := range members(out) {
			if m.name == "sender" && string(out[m.value:m.end]) != `"alice"` {
				t.Fatalf("%s gave %s", in, out)
			}
		}
	})
}

// TestPeerMessageArrivesAsSent: a routed PeerMessage reaches its recipient byte for byte
// as its sender wrote it, but for the sender field: <, > and & (URLs, HTML in uMap's
// values) are not escaped (six bytes for one), members keep their order and spacing.
func TestPeerMessageArrivesAsSent(t *testing.T) {
	_, srv := startRelay(t, Options{})
	a, _ := join(t, srv, "m", `,"peer":"alice"`)
	b, _ := join(t, srv, "m", `,"peer":"bob"`)
	a.expect("ListPeersResponse")
	payload := strings.Repeat("<a href=\"?x=1&y=2\">&amp;</a>", 1000)
	body := fmt.Sprintf(`{"verb":"x","v":%q,"z":1, "a":[2]}`, payload)
	for _, tt := range []struct{ sent, want string }{
		{`{"kind":"PeerMessage","sender":"bob","recipient":"alice","message":` + body + `}`,
			`{"kind":"PeerMessage","sender":"bob","recipient":"alice","message":` + body + `}`},
		{`{"message":` + body + ` , "recipient":"alice","kind":"PeerMessage"}`,
			`{"message":` + body + ` , "recipient":"alice","kind":"PeerMessage","sender":"bob"}`},
		{`{"kind":"PeerMessage","sender":"alice","recipient":"alice","sender":"relay","message":` + body + `}`,
			`{"kind":"PeerMessage","sender":"bob","recipient":"alice","sender":"bob","message":` + body + `}`},
	} {
		b.send(tt.sent)
		if got := a.read(); got != tt.want {
			t.Fatalf("alice got %d bytes, want %d:\n%.300s", len(got), len(tt.want), got)
		}
	}
	b.barrier()
	a.barrier()
}

// TestSyncPageWithAmpersandsPassesTheRelay: a newcomer's answer to a probe, a sync page
// under the engine's limit whose values hold '&', reaches the prober within the limit
// (escaped by the relay, it arrived six times larger, was refused as too_large, and the
// two peers could never sync). The peers' limit is 1 MiB here, the page about 400 KB.
func TestSyncPageWithAmpersandsPassesTheRelay(t *testing.T) {
	lim := crdt.DefaultLimits()
	lim.MaxMessageBytes = 1 << 20
	replica := func(id string) *crdt.Replica {
		r, err := crdt.NewReplica(crdt.Options{PeerID: id, Limits: lim})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	s := startStoreRelay(t, storeOptions{Dir: t.TempDir()}, Options{}, nil)
	a, _ := joinPeer(t, s.srv, "m", "alice", replica("alice"))
	a.settle()
	cr := replica("carol")
	for i := range 100 { // made offline: lost
		if _, err := cr.Upsert("feature", fmt.Sprintf(`{"id":"f%d","layerId":"L"}`, i),
			`{"type":"Feature","geometry":null,"properties":{"description":"`+strings.Repeat("&", 4000)+`"}}`); err != nil {
			t.Fatal(err)
		}
	}
	cr.Flush()
	c, _ := joinPeer(t, s.srv, "m", "carol", cr)
	var answer string
	for range 2 { // carol answers the relay's probe and alice's
		c.settle()
		for _, m := range a.settle() {
			if strings.Contains(m, `"sender":"carol"`) {
				answer = m
			}
		}
	}
	if len(answer) == 0 || len(answer) > lim.MaxMessageBytes {
		t.Fatalf("alice got carol's answer in %d bytes (limit %d)", len(answer), lim.MaxMessageBytes)
	}
	t.Logf("carol's answer: %d bytes", len(answer))
	sameState(t, "alice", a.r.State(), cr.State())
	sameState(t, "the relay", s.state("m"), cr.State())
}

// TestRosterNamesAsGiven: a display name holding <, > or & reaches the room as given.
func TestRosterNamesAsGiven(t *testing.T) {
	_, srv := startRelay(t, Options{})
	c := dial(t, srv, "m")
	c.send(`{"kind":"JoinRequest","name":"<Ann & Bob>"}`)
	if got := c.read(); !bytes.Contains([]byte(got), []byte(`"<Ann & Bob>"`)) {
		t.Fatalf("JoinResponse %s", got)
	}
}

func TestForwardable(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"a page", `{"kind":"PeerMessage","sender":"carol","recipient":"relay","message":{"more":"1:0:c","pushBack":true,"state":{"ops":[]},"vector":{"c":3},"verb":"ListOperationsResponse"}}`,
			`{"kind":"PeerMessage","sender":"relay","recipient":"","message":{"pushBack":true,"state":{"ops":[]},"verb":"ListOperationsResponse"}}`},
		{"spacing, and members first and last", "{ \"message\" : { \"vector\" : {} , \"operations\" : [ ] ,\n\"more\":null } , \"recipient\" : \"relay\" }",
			"{\"sender\":\"relay\",\"message\" : { \"operations\" : [ ] },\"recipient\" : \"\" }"},
		{"only members left out", `{"kind":"PeerMessage","message":{"vector":{},"more":"x"}}`,
			`{"kind":"PeerMessage","sender":"relay","message":{}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(forwardable([]byte(tt.in), "relay")); got != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
			if !json.Valid([]byte(tt.want)) {
				t.Fatal("want is not JSON")
			}
		})
	}
}
