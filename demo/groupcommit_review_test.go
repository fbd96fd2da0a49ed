package main

import (
	"context"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// joinAsync has c join its map as peer (a JoinRequest handled from another goroutine):
// the channel gets its error once the join returns.
func joinAsync(c *conn, peer string) <-chan error {
	done := make(chan error, 1)
	go func() { done <- c.handle([]byte(`{"kind":"JoinRequest","peer":"` + peer + `"}`)) }()
	return done
}

// returned waits for done (a call that must not wait for the fsync the test holds).
func returned(t *testing.T, what string, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s waited for the fsync of another map's write", what)
	}
}

// A join waiting for its map's writes to be durable (settle) holds none of the relay's
// locks: while map m's fsync is held, and carol's join of m waits for it, dave joins
// another map and the relay's Shutdown returns. The join of m held the relay's lock
// through its settle, so the whole relay — every map's joins and leaves, every new
// connection, Shutdown whatever its deadline — waited on m's disk.
func TestJoinWaitingForAnFsyncBlocksNoOtherMap(t *testing.T) {
	gr := newGateRelay(t)
	a := gr.join("alice")
	h := gr.g.hold()
	gr.handle(a, rename(t, newCRDT(t, "alice"), "a1"))
	release := held(t, h)
	rm := gr.room()

	carol := newConn(gr.relay, nil, "m")
	carolJoined := joinAsync(carol, "carol")
	waitFor(t, "carol's join waiting for alice's fsync", func() bool {
		rm.mu.Lock()
		defer rm.mu.Unlock()
		return rm.settling > 0
	})

	dave := newConn(gr.relay, nil, "other")
	returned(t, "dave's join of another map", joinAsync(dave, "dave"))
	gr.conns = append(gr.conns, dave)
	if dave.room == nil || dave.id != "dave" {
		t.Fatalf("dave joined %v as %q", dave.room, dave.id)
	}
	shut := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	go func() {
		if err := gr.relay.Shutdown(ctx); err != nil && err != context.Canceled {
			shut <- err
			return
		}
		shut <- nil
	}()
	returned(t, "Shutdown", shut)

	select {
	case err := <-carolJoined:
		t.Fatalf("carol's join returned (%v) before alice's operation was durable", err)
	default:
	}
	release <- nil
	if err := <-carolJoined; err != nil {
		t.Fatal(err)
	}
	gr.conns = append(gr.conns, carol)
	if carol.room != rm || carol.id != "carol" {
		t.Fatalf("carol joined %p as %q, want m's room %p", carol.room, carol.id, rm)
	}
	if got := opsIn(drain(carol)); len(got) != 0 {
		t.Fatalf("carol received %q: alice's operation, from before her join", got)
	}
}

// A connection kicked while its join waits for the map's writes to be durable leaves
// at once (its leave waits for no fsync), is never added to the room, and the room's
// last leave then closes it: no peer is listed, nor room held, for a connection gone.
func TestKickedWhileJoiningWaitsForNoFsyncAndLeavesNothing(t *testing.T) {
	gr := newGateRelay(t)
	a := gr.join("alice")
	h := gr.g.hold()
	gr.handle(a, rename(t, newCRDT(t, "alice"), "a1"))
	release := held(t, h)
	rm := gr.room()

	carol := newConn(gr.relay, nil, "m")
	carolJoined := joinAsync(carol, "carol")
	waitFor(t, "carol's join waiting for alice's fsync", func() bool {
		rm.mu.Lock()
		defer rm.mu.Unlock()
		return rm.settling > 0
	})
	carol.kick(websocket.StatusGoingAway, "gone")
	left := make(chan error, 1)
	go func() { gr.relay.leave(carol); left <- nil }() // as serve does once kicked
	returned(t, "carol's leave", left)

	release <- nil
	if err := <-carolJoined; err != nil {
		t.Fatal(err)
	}
	rm.mu.Lock()
	n := len(rm.peers)
	rm.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d peers in the room, want alice only", n)
	}
	drain(a)
	gr.relay.leave(a)
	gr.relay.mu.Lock()
	rooms := len(gr.relay.rooms)
	gr.relay.mu.Unlock()
	if rooms != 0 {
		t.Fatalf("%d rooms open after the last peer left", rooms)
	}
}
