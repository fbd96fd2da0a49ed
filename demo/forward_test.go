package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/mapcrdt/mapcrdt/crdt"
)

// TestOfflineEditsReachPeersOnlineThroughTheRelay: carol joins with edits made offline,
// answers the relay's greeting probe, and leaves before answering bob's probe. Bob, online
// all along, gets her edits from the relay, which passes on what her answer taught its
// replica; he used to lack them until he reconnected.
func TestOfflineEditsReachPeersOnlineThroughTheRelay(t *testing.T) {
	s := startStoreRelay(t, storeOptions{Dir: t.TempDir()}, Options{}, nil)
	b, _ := joinPeer(t, s.srv, "m", "bob", nil)
	b.settle()
	b.sendAll(edits(t, b.r, "b"))
	b.settle()

	cr := newCRDT(t, "carol")
	_ = edits(t, cr, "c") // offline: the messages are lost
	c, _ := joinPeer(t, s.srv, "m", "carol", cr)
	greeting := c.read() // the relay's probe, before its answer to carol
	if !strings.Contains(greeting, `"sender":"relay"`) || !strings.Contains(greeting, `"pushBack":true`) {
		t.Fatalf("greeting %s", greeting)
	}
	res, err := c.r.Receive([]byte(greeting))
	if err != nil {
		t.Fatal(err)
	}
	c.sendAll(res.Replies)
	c.send(`{"kind":"ping"}`) // answered once the relay took carol's answer
	for c.read() != `{"kind":"pong"}` {
	}
	c.ws.Close(websocket.StatusNormalClosure, "")

	var forwarded []string
	for _, m := range b.settle() { // carol joined, her edits, carol left
		if strings.Contains(m, "ListOperationsResponse") {
			forwarded = append(forwarded, m)
		}
	}
	if !strings.Contains(s.state("m"), "Renamed c") {
		t.Fatal("the relay lacks carol's edits")
	}
	sameState(t, "bob", b.r.State(), s.state("m"))
	if len(forwarded) != 1 || !strings.Contains(forwarded[0], `"sender":"relay","recipient":""`) ||
		strings.Contains(forwarded[0], `"vector"`) || strings.Contains(forwarded[0], `"session"`) || strings.Contains(forwarded[0], `"for"`) {
		t.Fatalf("bob got %.300q", forwarded)
	}
	// In uMap's plain form, which uMap's client reads (message.operations; the compact
	// form made it throw), with carol's edits only.
	var fwd struct {
		Message struct {
			Operations []map[string]any
			State      any
		}
	}
	if err := json.Unmarshal([]byte(forwarded[0]), &fwd); err != nil || fwd.Message.State != nil || len(fwd.Message.Operations) == 0 {
		t.Fatalf("forward not in uMap's form: %v %.300s", err, forwarded[0])
	}
	for _, o := range fwd.Message.Operations {
		if h, _ := o["hlc"].(string); !strings.HasSuffix(h, ":carol") {
			t.Errorf("forwarded an operation not carol's: %v", o)
		}
	}

	// A newcomer without offline edits brings nothing: nothing is passed on.
	d, _ := joinPeer(t, s.srv, "m", "dave", nil)
	d.settle()
	b.settle() // probes dave
	d.settle() // answers bob
	for _, m := range b.settle() {
		if strings.Contains(m, `"sender":"relay"`) {
			t.Fatalf("bob got %.300s", m)
		}
	}
	sameState(t, "dave", d.r.State(), b.r.State())
}

// TestForwardedResponseClaimsNothingElse: a response passed on by the relay gives its
// operations, and nothing else: no vector (the answerer's, computed for the relay, claims
// operations the peer may lack, which it would then never ask for), no reply.
func TestForwardedResponseClaimsNothingElse(t *testing.T) {
	alice, bob, carol, relay := newCRDT(t, "alice"), newCRDT(t, "bob"), newCRDT(t, "carol"), newCRDT(t, "relay")
	fromAlice := edits(t, alice, "a")
	for _, m := range fromAlice {
		for _, r := range []*crdt.Replica{relay, carol} {
			if _, err := r.Receive(m); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := bob.Receive(fromAlice[0]); err != nil { // bob missed the rest: in flight
		t.Fatal(err)
	}
	_ = edits(t, carol, "c") // offline
	res, err := carol.Receive(relay.ProbeRequest("carol"))
	if err != nil || len(res.Replies) != 1 {
		t.Fatalf("carol's answer: %v, %d replies", err, len(res.Replies))
	}
	answer := withSender(res.Replies[0], "carol") // as the relay routes it
	if !strings.Contains(string(answer), `"alice":`) {
		t.Fatalf("carol's answer names no vector of alice's: %.300s", answer)
	}
	fwd := forwardable(answer, "relay")
	res, err = bob.Receive(fwd)
	if err != nil {
		t.Fatalf("bob refused %.300s: %v", fwd, err)
	}
	if len(res.Replies) != 0 {
		t.Fatalf("bob answered the forward: %q", res.Replies)
	}
	if !strings.Contains(bob.State(), "Renamed c") {
		t.Fatal("bob lacks carol's edits")
	}
	if got := bob.Vector()["alice"]; got != 1 {
		t.Fatalf("bob claims alice's operations up to %d, holds 1", got)
	}
	// His next sync brings what he lacks.
	if _, err := relay.Receive(answer); err != nil {
		t.Fatal(err)
	}
	res, err = relay.Receive(bob.SyncRequest("relay"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range res.Replies {
		if _, err := bob.Receive(m); err != nil {
			t.Fatal(err)
		}
	}
	sameState(t, "bob after a sync", bob.State(), relay.State())
}
