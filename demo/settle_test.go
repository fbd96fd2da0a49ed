package main

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// parkedInPeerMessage reports whether a goroutine handling a PeerMessage (room.peerMessage)
// is parked on the room's condition variable: waiting for a settle, or a sync, to end.
func parkedInPeerMessage() bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "(*room).peerMessage") && strings.Contains(g, "sync.(*Cond).Wait") {
			return true
		}
	}
	return false
}

// A join's settle waits for the writes made before it, not for those made after it: a
// PeerMessage to the relay (a sync response, which the relay logs) that arrives while a
// join waits for an fsync waits for that join, as an OperationMessage does. It settled
// alongside the join instead, and, when it took the room's lock first once the fsync
// ended, wrote again: the join then waited for that write's fsync too, and a steady
// stream of sync responses (peers answering probes, catching up in pages) could hold a
// join back for ever. Each round here: bob's operation's fsync held, carol's join
// waiting for it, dave's response arriving; when the next fsync (of dave's response)
// starts, carol must have her JoinResponse. Without the fix dave won the race about half
// the rounds.
func TestJoinSettleWaitsForNoWriteAfterIt(t *testing.T) {
	gr := newGateRelay(t)
	b := gr.join("bob")
	d := newConn(gr.relay, nil, "m")
	if err := d.handle([]byte(`{"kind":"JoinRequest","peer":"dave"}`)); err != nil {
		t.Fatal(err)
	}
	gr.conns = append(gr.conns, d)
	var probe []byte
	for _, m := range drain(d) {
		if kindOf(m) == "PeerMessage" {
			probe = m
		}
	}
	if probe == nil {
		t.Fatal("dave got no greeting probe")
	}
	drain(b)
	rb, rd := newCRDT(t, "bob"), newCRDT(t, "dave")
	rm := gr.room()
	for i := range 20 {
		h := gr.g.hold()
		gr.handle(b, rename(t, rb, fmt.Sprint("b", i)))
		release := held(t, h)

		carol := newConn(gr.relay, nil, "m")
		joined := joinAsync(carol, fmt.Sprint("carol", i))
		waitFor(t, "carol's join waiting for bob's fsync", func() bool {
			rm.mu.Lock()
			defer rm.mu.Unlock()
			return rm.settling > 0
		})
		// dave answers the relay's probe with an edit made offline.
		rename(t, rd, fmt.Sprint("d", i))
		res, err := rd.Receive(probe)
		if err != nil || len(res.Replies) != 1 {
			t.Fatalf("dave's answer to the probe: %v %q", err, res.Replies)
		}
		answered := make(chan error, 1)
		go func() { answered <- d.handle(res.Replies[0]) }()
		waitFor(t, "dave's response waiting", parkedInPeerMessage)

		h2 := gr.g.hold()
		release <- nil
		var release2 chan error
		select {
		case release2 = <-h2: // dave's response is written, its fsync starts
		case err := <-joined:
			if err != nil {
				t.Fatal(err)
			}
			joined = nil
			release2 = held(t, h2)
		}
		var gotJoin bool
		for _, m := range drain(carol) {
			gotJoin = gotJoin || kindOf(m) == "JoinResponse"
		}
		if !gotJoin {
			release2 <- nil
			t.Fatalf("round %d: dave's response, sent after carol's join began, was written before it ended: "+
				"carol's join waits for its fsync too", i)
		}
		release2 <- nil
		if joined != nil {
			returned(t, "carol's join", joined)
		}
		returned(t, "dave's response", answered)
		gr.relay.leave(carol)
		settled(rm)
		drain(b)
		drain(d)
	}
}
