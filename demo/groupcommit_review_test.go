package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
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

// heldFor returns how many messages, and bytes, the room holds back for c (outbox).
func heldFor(rm *room, c *conn) (n int, bytes int) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	for _, o := range rm.outbox {
		if o.to == c {
			n++
			bytes += len(o.msg)
		}
	}
	return n, bytes
}

// What waits for a connection is bounded (SendQueue, SendQueueBytes) while it waits in the
// room's outbox for a sync too: a peer that pings without reading its pongs, or one that
// receives more peer messages than it reads, is closed "too slow" while an fsync runs, as
// it is without one, and the room holds no more for it. The outbox took any number of
// messages while an fsync ran, so a peer could make the relay hold memory without bound
// (a disk that stalls, or writes kept coming to keep the outbox full).
func TestOutboxHoldsNoMoreForAPeerThanItsSendQueue(t *testing.T) {
	const queue, queueBytes = 8, 4096
	gr := newGateRelay(t)
	gr.relay = NewRelay(Options{NewReplica: newStoreFactory(gr.so), Log: gr.so.Log,
		SendQueue: queue, SendQueueBytes: queueBytes})
	cs := gr.joinAll("alice", "bob", "carol", "dave")
	a, b, c, d := cs[0], cs[1], cs[2], cs[3]
	h := gr.g.hold()
	gr.handle(a, rename(t, newCRDT(t, "alice"), "a1"))
	release := held(t, h)
	rm := gr.room()

	for range 3 * queue {
		gr.handle(b, []byte(`{"kind":"ping"}`))
	}
	big := `{"kind":"PeerMessage","recipient":"carol","message":{"verb":"x","pad":"` + string(bytes.Repeat([]byte("p"), 1000)) + `"}}`
	for range 3 * queueBytes / 1000 {
		gr.handle(d, []byte(big))
	}
	if n, _ := heldFor(rm, b); n > queue || !b.kicked() || b.reason.reason != "too slow" {
		t.Fatalf("bob sent %d pings and read none: %d pongs held, closed %v (%q), want at most %d, closed too slow",
			3*queue, n, b.kicked(), b.reason.reason, queue)
	}
	if _, size := heldFor(rm, c); size > queueBytes || !c.kicked() || c.reason.reason != "too slow" {
		t.Fatalf("carol was sent %d bytes and read none: %d bytes held, closed %v (%q), want at most %d, closed too slow",
			3*queueBytes, size, c.kicked(), c.reason.reason, queueBytes)
	}
	if a.kicked() || d.kicked() {
		t.Fatalf("closed: alice %v, dave %v (%q): they read what they were sent", a.kicked(), d.kicked(), d.reason.reason)
	}
	release <- nil
	settled(rm)
	if got := opsIn(drain(d)); len(got) != 1 {
		t.Fatalf("dave received %q, want alice's operation", got)
	}
}

// A failed fsync whose reload of the replica fails too (the files cannot be read back)
// leaves a replica that still holds the operations the failed fsync lost: it must not
// hand them to anyone. The replica is broken then: every later call that reads or
// writes it is refused (its sender closed), until the room closes and the map is opened
// anew from its files. It answered a sync request with bob's lost operation.
func TestFailedFsyncWhoseReloadFailsHandsOutNothingLost(t *testing.T) {
	gr := newGateRelay(t)
	cs := gr.joinAll("bob", "dave")
	b, d := cs[0], cs[1]
	rb, rd := newCRDT(t, "bob"), newCRDT(t, "dave")

	h := gr.g.hold()
	gr.handle(b, rename(t, rb, "b1"))
	release := held(t, h)
	snap := filepath.Join(gr.dir, "m.snapshot") // unreadable: the reload fails
	os.Remove(snap)
	if err := os.Mkdir(snap, 0o755); err != nil {
		t.Fatal(err)
	}
	release <- errors.New("input/output error")
	settled(gr.room())
	if !b.kicked() {
		t.Fatal("bob's operation failed its fsync, and bob was not closed")
	}
	err := d.handle(rd.SyncRequest("relay"))
	for _, m := range drain(d) {
		if bytes.Contains(m, []byte(`f-bob`)) {
			t.Fatalf("dave received %.200q, which carries bob's operation that failed its fsync", m)
		}
	}
	if err == nil {
		t.Fatal("dave's sync request was answered by a replica its files could not restore")
	}

	// The room closes; the map opens anew from its files once they can be read.
	gr.relay.leave(b)
	gr.relay.leave(d)
	if err := os.Remove(snap); err != nil {
		t.Fatal(err)
	}
	e := gr.join("eve")
	e.room.mu.Lock()
	state := e.room.replica.(*storeReplica).r.State()
	e.room.mu.Unlock()
	if strings.Contains(state, "f-bob") {
		t.Fatalf("the map opened again holds bob's operation that failed its fsync: %.300s", state)
	}
}

// The last peer leaves while its operation's fsync runs: the room's close waits for it
// (the replica is closed only once nothing waits for a sync), and a join of the map
// meanwhile opens a new room, whose replica, opened after that close, holds the
// operation. The old room's committer has ended.
func TestRoomClosingDuringAnFsyncReopensWithTheWrite(t *testing.T) {
	gr := newGateRelay(t)
	a := gr.join("alice")
	h := gr.g.hold()
	gr.handle(a, rename(t, newCRDT(t, "alice"), "a1"))
	release := held(t, h)
	old := gr.room()
	a.kick(websocket.StatusGoingAway, "bye")
	left := make(chan struct{})
	go func() { gr.relay.leave(a); close(left) }()
	waitFor(t, "the room's close waiting for alice's fsync", func() bool {
		old.mu.Lock()
		defer old.mu.Unlock()
		return old.settling > 0
	})
	b := newConn(gr.relay, nil, "m")
	bobJoined := joinAsync(b, "bob")
	release <- nil
	<-left
	if err := <-bobJoined; err != nil {
		t.Fatal(err)
	}
	gr.conns = append(gr.conns, b)
	if b.room == old {
		t.Fatal("bob joined the room that was closing")
	}
	b.room.mu.Lock()
	state := b.room.replica.(*storeReplica).r.State()
	b.room.mu.Unlock()
	if !strings.Contains(state, "f-alice") {
		t.Fatalf("the map opened again lacks alice's operation: %.300s", state)
	}
	old.mu.Lock()
	defer old.mu.Unlock()
	if old.committer || len(old.outbox) > 0 {
		t.Fatalf("the closed room: committer %v, %d messages held", old.committer, len(old.outbox))
	}
}

// Two fsyncs that fail in a row, the first with a compaction due and its writer already
// gone: each fails only its own group (bob, who left, and carol; then alice), nothing of
// them reaches eve, and the map goes on (dave's operations, compacted) with only what
// was durable, in memory and on disk.
func TestTwoFailedFsyncsInARow(t *testing.T) {
	gr := newGateRelay(t)
	gr.so.CompactEvery = 3 // due at carol's operation, while the first fsync runs
	gr.relay = NewRelay(Options{NewReplica: newStoreFactory(gr.so), Log: gr.so.Log})
	cs := gr.joinAll("alice", "bob", "carol", "dave", "eve")
	a, b, c, d, e := cs[0], cs[1], cs[2], cs[3], cs[4]
	ra, rb, rc, rd := newCRDT(t, "alice"), newCRDT(t, "bob"), newCRDT(t, "carol"), newCRDT(t, "dave")
	gr.handle(a, rename(t, ra, "a1"))
	settled(gr.room())

	h := gr.g.hold()
	gr.handle(b, rename(t, rb, "b1"))
	release := held(t, h)
	gr.handle(c, rename(t, rc, "c1"))
	gr.relay.leave(b)
	release <- errors.New("input/output error")
	settled(gr.room())
	h = gr.g.hold()
	gr.handle(a, rename(t, ra, "a2"))
	release = held(t, h)
	release <- errors.New("input/output error")
	settled(gr.room())
	if !a.kicked() || !b.kicked() || !c.kicked() || d.kicked() || e.kicked() {
		t.Fatalf("closed: alice %v, bob %v, carol %v, dave %v, eve %v: want alice, bob and carol",
			a.kicked(), b.kicked(), c.kicked(), d.kicked(), e.kicked())
	}
	if got := opsIn(drain(e)); len(got) != 1 || !strings.Contains(got[0], `"a1"`) {
		t.Fatalf("eve received %q, want alice's first operation only", got)
	}

	gr.handle(d, rename(t, rd, "d1"))
	gr.handle(d, rename(t, rd, "d2"))
	settled(gr.room())
	if got := opsIn(drain(e)); len(got) != 2 {
		t.Fatalf("eve received %q, want dave's two operations", got)
	}
	gr.room().mu.Lock()
	state := gr.store().r.State()
	gr.room().mu.Unlock()
	for _, lost := range []string{`"b1"`, `"c1"`, `"a2"`} {
		if strings.Contains(state, lost) {
			t.Fatalf("the replica holds %s, which failed its fsync: %.300s", lost, state)
		}
	}
	if !strings.Contains(state, `"a1"`) || !strings.Contains(state, `"d2"`) {
		t.Fatalf("the replica lacks a1 or d2: %.300s", state)
	}
	sameState(t, "read back after a crash", reopenCopy(t, gr.so), state)
}
