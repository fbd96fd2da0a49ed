package main

import (
	"encoding/json"
	"slices"
	"testing"
)

// The messages of this file are built as uMap's own frontend builds them
// (umap-project/umap, umap/static/umap/js/modules/sync/): websocket.js
// WebSocketTransport.connect sends {token, peer, username} as a JoinRequest, and
// WebSocketTransport.send copies a payload and sets "kind" last (JSON.stringify leaves
// out undefined members: username when anonymous, lastKnownHLC when its log is empty);
// its keep-alive is the bare text "ping", answered by the bare text "pong"
// (onMessage; umap/sync/app.py sync). engine.js onJoinResponse reads {peer, peers} and
// asks one of Object.keys(peers) (_getRandomPeer) with sendToPeer: {sender, recipient,
// message: {lastKnownHLC, verb}}.

// umapJoin dials mapName and joins as uMap's client does, returning the JoinResponse's
// text and the client.
func umapJoin(t *testing.T, c *client, peer, username string) string {
	t.Helper()
	req := `{"token":"tok","peer":"` + peer + `"`
	if username != "" {
		req += `,"username":"` + username + `"`
	}
	c.send(req + `,"kind":"JoinRequest"}`)
	text := c.read()
	var m struct {
		Kind  string
		Peer  string
		Peers map[string]string
	}
	if err := json.Unmarshal([]byte(text), &m); err != nil || m.Kind != "JoinResponse" {
		t.Fatalf("join: %s (%v)", text, err)
	}
	c.id = m.Peer
	return text
}

// TestUmapClientJoinsAndPings: a JoinResponse and ListPeersResponse carry "peers" as
// uMap's server writes it — an object of peer id → user name (umap/sync/payloads.py) —
// whose keys are the peers a uMap client can address; the name a uMap client sends as
// "username" is the one listed; the bare "ping" is answered with the bare "pong" and
// does not close the connection.
func TestUmapClientJoinsAndPings(t *testing.T) {
	_, srv := startRelay(t, Options{})
	a := dial(t, srv, "m")
	a.send("ping") // uMap pings every 30 s, joined or not
	if got := a.read(); got != "pong" {
		t.Fatalf("ping: got %s, want pong", got)
	}
	text := umapJoin(t, a, "QxMjE", "Ann")
	if a.id != "QxMjE" {
		t.Fatalf("joined as %q", a.id)
	}
	var resp struct{ Peers map[string]string }
	if err := json.Unmarshal([]byte(text), &resp); err != nil {
		t.Fatalf("JoinResponse %s: peers is not uMap's object of id → name: %v", text, err)
	}
	if resp.Peers["QxMjE"] != "Ann" || resp.Peers["relay"] != "relay" || len(resp.Peers) != 2 {
		t.Fatalf("peers %v", resp.Peers)
	}
	if got := orderedKeys(t, text, "peers"); !slices.Equal(got, []any{"relay", "QxMjE"}) {
		t.Fatalf("peer ids %v", got)
	}
	lp := a.read()
	if got := orderedKeys(t, lp, "peers"); !slices.Equal(got, []any{"relay", "QxMjE"}) {
		t.Fatalf("ListPeersResponse %s", lp)
	}
	b := dial(t, srv, "m")
	umapJoin(t, b, "NzE0O", "") // anonymous: no username
	b.read()                    // its ListPeersResponse
	lp = a.read()
	var list struct{ Peers map[string]string }
	if err := json.Unmarshal([]byte(lp), &list); err != nil || list.Peers["NzE0O"] != "" || list.Peers["QxMjE"] != "Ann" {
		t.Fatalf("ListPeersResponse %s (%v)", lp, err)
	}
	a.send("ping")
	if got := a.read(); got != "pong" {
		t.Fatalf("ping after join: got %s", got)
	}
	// uMap's OperationMessage and PeerMessage, kind last, reach the other peer.
	op := `{"sender":"QxMjE","verb":"update","subject":"feature","metadata":{"id":"UxNjQ","layerId":"L1","featureType":"marker"},"key":"properties.name","value":"x","hlc":"1727184449010:0:QxMjE","kind":"OperationMessage"}`
	a.send(op)
	if got := b.read(); got != op {
		t.Fatalf("relayed %s, want %s", got, op)
	}
	pm := `{"sender":"QxMjE","recipient":"NzE0O","message":{"verb":"ListOperationsRequest"},"kind":"PeerMessage"}`
	a.send(pm)
	if got := b.read(); got != pm {
		t.Fatalf("routed %s, want %s", got, pm)
	}
}

// TestUmapClientCatchesUpFromTheRelay: a uMap client that picks the relay's replica
// (a key of the JoinResponse's peers) and asks it with uMap's ListOperationsRequest gets
// a ListOperationsResponse it reads: message.operations, each with its subject and hlc
// (engine.js onListOperationsResponse, Operations.sort, _applyOperation).
func TestUmapClientCatchesUpFromTheRelay(t *testing.T) {
	s := startStoreRelay(t, storeOptions{Dir: t.TempDir()}, Options{}, nil)
	a := dial(t, s.srv, "m")
	umapJoin(t, a, "QxMjE", "Ann")
	a.read()                // ListPeersResponse
	a.expect("PeerMessage") // the relay's greeting probe: uMap would answer it, not needed here
	op := `{"sender":"QxMjE","verb":"update","subject":"feature","metadata":{"id":"UxNjQ","layerId":"L1","featureType":"marker"},"key":"properties.name","value":"Café","hlc":"1727184449010:0:QxMjE","kind":"OperationMessage"}`
	a.send(op)
	a.send("ping") // answered once the relay has taken op (b's request could overtake it)
	if got := a.read(); got != "pong" {
		t.Fatalf("ping after the operation: got %s", got)
	}
	b := dial(t, s.srv, "m")
	umapJoin(t, b, "NzE0O", "")
	b.read()                // ListPeersResponse
	b.expect("PeerMessage") // greeting
	b.send(`{"sender":"NzE0O","recipient":"relay","message":{"verb":"ListOperationsRequest"},"kind":"PeerMessage"}`)
	var resp struct {
		Kind, Sender, Recipient string
		Message                 struct {
			Verb       string
			Operations []map[string]any
		}
	}
	text := b.read()
	if err := json.Unmarshal([]byte(text), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Kind != "PeerMessage" || resp.Sender != "relay" || resp.Recipient != "NzE0O" ||
		resp.Message.Verb != "ListOperationsResponse" || len(resp.Message.Operations) != 1 {
		t.Fatalf("answer %s", text)
	}
	o := resp.Message.Operations[0]
	if o["hlc"] != "1727184449010:0:QxMjE" || o["subject"] != "feature" || o["value"] != "Café" || o["key"] != "properties.name" {
		t.Fatalf("operation %v", o)
	}
}
