package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// closeWatcher is a Replica that notes every call made after Close, or while Close runs.
type closeWatcher struct {
	mu      sync.Mutex
	closed  bool
	late    []string // calls after Close
	calls   int
	closing bool
}

func (w *closeWatcher) ID() string { return "relay" }

func (w *closeWatcher) call(what string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls++
	if w.closed || w.closing {
		w.late = append(w.late, what)
	}
}

func (w *closeWatcher) Check([]byte) ([][]byte, error) { w.call("Check"); return nil, nil }

func (w *closeWatcher) PeerMessage([]byte) ([][]byte, error) {
	w.call("PeerMessage")
	return nil, nil
}

func (w *closeWatcher) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	return nil
}

// TestNoReplicaCallAfterItsRoomClosed: a connection kicked (Shutdown, too slow, a write
// failed) leaves its room at once, while its reader may still hold a message read before
// the kick. Handled after the room's last peer left, that message must not reach the
// replica, which is closed (and, for the stored replica, being compacted): at most one
// method of a room's replica runs at a time, and none after Close.
func TestNoReplicaCallAfterItsRoomClosed(t *testing.T) {
	w := &closeWatcher{}
	r := NewRelay(Options{NewReplica: func(string) (Replica, error) { return w, nil },
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	c := newConn(r, nil, "m") // no WebSocket: the room's side only
	if err := r.join(c, "alice", ""); err != nil {
		t.Fatal(err)
	}
	rm := c.room
	if err := rm.operation(c, []byte(`{"kind":"OperationMessage"}`)); err != nil {
		t.Fatal(err)
	}
	c.kick(websocket.StatusGoingAway, "relay shutting down")
	r.leave(c) // the last peer: the replica is closed

	// What the reader had read before the kick reaches the room now.
	if err := rm.operation(c, []byte(`{"kind":"OperationMessage"}`)); err != nil {
		t.Fatal(err)
	}
	peerMsg := []byte(`{"kind":"PeerMessage","recipient":"relay","message":{}}`)
	var fields map[string]json.RawMessage
	json.Unmarshal(peerMsg, &fields)
	if err := rm.peerMessage(c, peerMsg, fields); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed || w.calls != 1 || len(w.late) > 0 {
		t.Fatalf("closed %v, %d calls, after Close: %v", w.closed, w.calls, w.late)
	}
}

// TestShutdownWhileStreaming: the relay shuts down while the only peer of a room streams
// operations, so the room's last leave closes (and compacts) the stored replica while the
// kicked connection's reader may be handling one. Run with -race (make test does): the
// race detector saw the compaction and a Check run at once.
func TestShutdownWhileStreaming(t *testing.T) {
	for iter := range 20 {
		s := startStoreRelay(t, storeOptions{Dir: t.TempDir()}, Options{}, nil)
		a, _ := joinPeer(t, s.srv, "m", "alice", nil)
		a.settle()
		var msgs [][]byte
		for i := range 400 {
			if _, err := a.r.Update("map", `{}`, "properties.n", fmt.Sprint(i)); err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, a.r.Flush()...)
		}
		go func() {
			for _, m := range msgs {
				if a.ws.Write(context.Background(), websocket.MessageText, m) != nil {
					return
				}
			}
		}()
		closed := a.closedBy()
		time.Sleep(time.Duration(iter%5) * time.Millisecond) // vary how far the stream got
		s.stop()
		if code := <-closed; code != websocket.StatusGoingAway {
			t.Fatalf("closed with %d, want 1001", code)
		}
	}
}

// gatedReplica is a Replica whose Close waits for its release (a large map's compaction).
type gatedReplica struct {
	nopReplica
	closing chan struct{} // closed when Close starts
	release chan struct{}
	closed  *atomic.Bool
}

func (g *gatedReplica) Close() error {
	close(g.closing)
	<-g.release
	g.closed.Store(true)
	return nil
}

// TestSlowReplicasBlockNoOtherMap: a map's replica opens (loads the map) and closes
// (compacts its files) without the relay's lock: joins of other maps go on meanwhile
// (they waited for it, ~40–90 ms per close of a large map). A join of the map itself
// opens its new replica only once the old one is closed, never two on the same files.
func TestSlowReplicasBlockNoOtherMap(t *testing.T) {
	first := &gatedReplica{closing: make(chan struct{}), release: make(chan struct{}), closed: new(atomic.Bool)}
	openGate := make(chan struct{})
	var opensOfA atomic.Int32
	var reopenedEarly atomic.Bool
	_, srv := startRelay(t, Options{NewReplica: func(name string) (Replica, error) {
		switch name {
		case "A":
			if opensOfA.Add(1) == 1 {
				return first, nil
			}
			if !first.closed.Load() {
				reopenedEarly.Store(true)
			}
		case "S":
			<-openGate
		}
		return nopReplica{}, nil
	}})
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(first.release); close(openGate) }) }
	t.Cleanup(release) // before the relay's Shutdown, which waits for the close
	a, _ := join(t, srv, "A", "")
	a.ws.Close(websocket.StatusNormalClosure, "bye")
	<-first.closing // A's replica is closing, and stays so

	join(t, srv, "B", "") // would wait for A's close

	again := dial(t, srv, "A")
	again.send(`{"kind":"JoinRequest","token":"t"}`)

	slow := dial(t, srv, "S") // its replica takes its time to open
	slow.send(`{"kind":"JoinRequest","token":"t"}`)
	join(t, srv, "C", "") // would wait for S's open

	time.Sleep(20 * time.Millisecond) // the join of A meanwhile must still wait
	if opensOfA.Load() != 1 {
		t.Fatal("a second replica of A opened while the first was closing")
	}
	release()
	again.expect("JoinResponse")
	if reopenedEarly.Load() {
		t.Error("A reopened before its close ended")
	}
	slow.expect("JoinResponse")
}
