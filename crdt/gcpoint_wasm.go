//go:build js && wasm

package crdt

import (
	"runtime/debug"
	_ "unsafe" // go:linkname
)

// writeBarrier is the runtime's flag that a collection is marking (exported by the
// runtime by name: go.dev/issue/67401; the wasm module reads it too).
//
//go:linkname writeBarrier runtime.writeBarrier
var writeBarrier struct {
	enabled bool
	pad     [3]byte
	alignme uint64
}

// finishMark ends the mark phase of a collection in progress (see gcpoint.go):
// SetGCPercent(-1) waits for it, and while this goroutine waits the scheduler runs the
// idle mark worker, at full speed, to its end; the percent is then set back as it was.
func finishMark() {
	if writeBarrier.enabled {
		debug.SetGCPercent(debug.SetGCPercent(-1))
	}
}
