package main

import (
	"errors"
	"testing"
)

// fakeCommitter is a GroupCommitter whose unsynced bytes the test sets, and whose next
// sync fails with fail.
type fakeCommitter struct {
	unsynced int64
	fail     error
}

func (f *fakeCommitter) Unsynced() int64    { return f.unsynced }
func (f *fakeCommitter) Sync() func() error { return func() error { return f.fail } }
func (f *fakeCommitter) Synced(err error) error {
	f.unsynced = 0
	if err != nil {
		return errStore
	}
	return nil
}

// TestWriteACompactionMadeDurableIsNotRefused: the store compacts in an append when no
// fsync runs, which makes every write before durable (its snapshot holds them). A write
// still waiting in the outbox then is decided at once: a later fsync's failure, which
// refuses the writes it covers, must not refuse it too — its operation stays in the map,
// and its sender was closed as refused (found by TestRelayChaos, seed 19).
func TestWriteACompactionMadeDurableIsNotRefused(t *testing.T) {
	rm := newRoom("m")
	gc := &fakeCommitter{}
	rm.gc = gc
	rm.committer = true // the test commits itself, with the lock held
	newConn := func() *conn { return &conn{done: make(chan struct{})} }
	x, y, z := newConn(), newConn(), newConn()
	rm.mu.Lock()
	defer rm.mu.Unlock()

	gc.unsynced = 100 // x's operation, logged
	wx := rm.wrote(x)
	gc.unsynced = 0 // y's, logged, and the log compacted: x's and y's durable
	if wy := rm.wrote(y); wy != nil {
		t.Fatal("y's write made durable by the compaction is waiting")
	}
	gc.unsynced = 50 // z's, logged
	wz := rm.wrote(z)
	gc.fail = errors.New("input/output error")
	for len(rm.outbox) > 0 {
		rm.commit()
	}
	if wx == nil || !wx.done || wx.err != nil || x.kicked() {
		t.Fatalf("x's write, durable by the compaction: %+v, x kicked %v", wx, x.kicked())
	}
	if wz == nil || !wz.done || !errors.Is(wz.err, errStore) || !z.kicked() {
		t.Fatalf("z's write, its fsync failed: %+v, z kicked %v", wz, z.kicked())
	}
}
