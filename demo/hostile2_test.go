package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// hostileOp is an OperationMessage of origin peer with seq, writing value to feature id.
func hostileOp(peer string, seq int, wall int64, id, value string) string {
	return fmt.Sprintf(`{"kind":"OperationMessage","sender":%q,"verb":"update","subject":"feature","metadata":{"id":%q,"layerId":"L"},"key":"properties.name","value":%q,"hlc":"%d:%d:%s","seq":%d}`,
		peer, id, value, wall, seq, peer, seq)
}

// TestForwardOnlyWhatTheResponseTaught: operations the relay's replica holds beyond a
// hole in their origin's seqs (a peer that skipped a seq and never answers the gap's
// request) are not what a later response teaches it: they were broadcast when received.
// Each small response bringing one new operation made the relay pass all of them on again,
// to every peer: a few hundred bytes in, the whole log out, as many times as sent.
func TestForwardOnlyWhatTheResponseTaught(t *testing.T) {
	s, err := reopen(storeOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wall := time.Now().UnixMilli()
	big := strings.Repeat("x", 1000)
	const held = 200
	for i := range held { // seq 1 never comes
		if _, err := s.Check([]byte(hostileOp("mallory", i+2, wall, fmt.Sprintf("f%d", i), big))); err != nil {
			t.Fatal(err)
		}
	}
	in, out := 0, 0
	for i := range 20 {
		op := hostileOp("eve", i+1, wall, "g", "v")
		op = strings.TrimPrefix(op, `{"kind":"OperationMessage",`)
		msg := `{"kind":"PeerMessage","sender":"eve","recipient":"relay","message":{"verb":"ListOperationsResponse","operations":[{` + op + `]}}`
		_, fwd, err := s.PeerMessageForward([]byte(msg))
		if err != nil {
			t.Fatal(err)
		}
		in += len(msg)
		for _, m := range fwd {
			out += len(m)
		}
	}
	if out > 4*in {
		t.Fatalf("%d bytes of responses made the relay forward %d bytes", in, out)
	}
}

// TestForwardGrowsBoundedly: a compact response writes an object's metadata once, the
// plain form of its forward in every operation. Many operations on one object with a
// large metadata made 57 KB in 20 MB out, to every peer, each time a peer sent such a
// response (with new operations: new keys, new seqs).
func TestForwardGrowsBoundedly(t *testing.T) {
	s, err := reopen(storeOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := newCRDT(t, "mallory")
	meta := `{"id":"f","layerId":"L","pad":"` + strings.Repeat("p", 20000) + `"}`
	for i := range 1000 {
		if _, err := m.Update("feature", meta, fmt.Sprintf("properties.k%d", i), `1`); err != nil {
			t.Fatal(err)
		}
	}
	m.Flush()
	res, err := m.Receive(s.r.ProbeRequest("mallory"))
	if err != nil {
		t.Fatal(err)
	}
	msg := withSender(res.Replies[0], "mallory")
	_, fwd, err := s.PeerMessageForward(msg)
	if err != nil || len(fwd) != 1 {
		t.Fatalf("%v, %d forwards", err, len(fwd))
	}
	if len(fwd[0]) > maxPlainGrowth*len(msg) {
		t.Fatalf("%d bytes in, %d forwarded", len(msg), len(fwd[0]))
	}
	// What it forwards still brings the operations.
	bob := newCRDT(t, "bob")
	if _, err := bob.Receive(fwd[0]); err != nil {
		t.Fatal(err)
	}
	sameState(t, "bob", bob.State(), s.r.State())
}
