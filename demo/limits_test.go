package main

import (
	"strings"
	"testing"
	"time"

	"github.com/mapcrdt/mapcrdt/crdt"
)

// bigEdit upserts a feature whose name is n bytes into r and returns its message.
func bigEdit(t *testing.T, r *crdt.Replica, id string, n int) []byte {
	t.Helper()
	if _, err := r.Upsert("feature", `{"id":"`+id+`","layerId":"L"}`,
		`{"type":"Feature","geometry":null,"properties":{"name":"`+strings.Repeat("x", n)+`"}}`); err != nil {
		t.Fatalf("the engine refused an edit of %d bytes: %v", n, err)
	}
	msgs := r.Flush()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	return msgs[0]
}

// TestEditOfTheEnginesLimitPassesTheRelay: an edit the engine makes under its default
// limits (32 MiB a message), here of 20 MiB, reaches the relay's replica and the other
// peer, and so does the same size of offline edit in the answer to the relay's greeting
// probe: with the relay's frame limit below the engine's, the edit closed its peer's
// connection (1009), and every rejoin again, on answering the probe.
func TestEditOfTheEnginesLimitPassesTheRelay(t *testing.T) {
	const size = 20 << 20
	s := startStoreRelay(t, storeOptions{Dir: t.TempDir()}, Options{}, nil)
	a, _ := joinPeer(t, s.srv, "m", "alice", nil)
	a.wait = time.Minute
	a.settle()
	b, _ := joinPeer(t, s.srv, "m", "bob", nil)
	b.wait = time.Minute
	for range 2 { // bob catches up; alice probes him, and he answers
		b.settle()
		a.settle()
	}

	msg := bigEdit(t, a.r, "big-a", size)
	t.Logf("alice's edit: %d bytes", len(msg))
	a.send(string(msg))
	a.settle()
	if got := b.read(); got != string(msg) {
		t.Fatalf("bob got %.200s…, want alice's edit as sent", got)
	}
	b.receive(string(msg))
	sameState(t, "bob", b.r.State(), a.r.State())
	sameState(t, "the relay", s.state("m"), a.r.State())

	// Carol edits offline (the message is lost), then joins: her answer to the relay's
	// greeting probe carries the edit.
	cr := newCRDT(t, "carol")
	_ = bigEdit(t, cr, "big-c", size)
	c, _ := joinPeer(t, s.srv, "m", "carol", cr)
	c.wait = time.Minute
	c.settle()
	if !strings.Contains(s.state("m"), `"big-c"`) {
		t.Fatal("the relay lacks carol's offline edit")
	}
	sameState(t, "carol", c.r.State(), s.state("m"))
}

// TestFrameLimitFollowsTheEnginesLimit: the relay's default frame limit, and the one the
// demo command configures, take a message of the engine's limit in a PeerMessage envelope.
func TestFrameLimitFollowsTheEnginesLimit(t *testing.T) {
	engine := int64(crdt.DefaultLimits().MaxMessageBytes)
	if got := NewRelay(Options{}).opts.MaxMessageSize; got < engine+envelopeRoom {
		t.Errorf("default frame limit %d, want at least %d", got, engine+envelopeRoom)
	}
	opts, store := relayOptions(t.TempDir())
	if got, want := opts.MaxMessageSize, FrameLimit(store.Replica.Limits.MaxMessageBytes); got != want {
		t.Errorf("the demo's frame limit %d, want %d (its replicas' message limit and an envelope)", got, want)
	}
	if store.Replica.Limits.MaxMessageBytes < int(engine) {
		t.Errorf("the demo's replicas take %d bytes a message, less than a browser's engine makes (%d)",
			store.Replica.Limits.MaxMessageBytes, engine)
	}
}
