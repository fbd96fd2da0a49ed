//go:build js && wasm

package crdt

import (
	"runtime/debug"
	"testing"
)

var sink [][]byte

// TestFinishMarkEndsTheMark: a collection started by allocation stays marking while this
// goroutine runs (js/wasm has no other thread); finishMark ends it, and leaves the GC
// percent as it found it.
func TestFinishMarkEndsTheMark(t *testing.T) {
	old := debug.SetGCPercent(1)
	defer debug.SetGCPercent(old)
	for i := 0; !writeBarrier.enabled; i++ {
		if i == 1_000_000 {
			t.Fatal("no collection started after a million allocations")
		}
		sink = append(sink[:i%64], make([]byte, 1024))
	}
	finishMark()
	if writeBarrier.enabled {
		t.Fatal("finishMark returned with the collection still marking")
	}
	if p := debug.SetGCPercent(old); p != 1 {
		t.Errorf("GC percent after finishMark: %d, want 1", p)
	}
	finishMark() // nothing marking: nothing to do
	sink = nil
}
