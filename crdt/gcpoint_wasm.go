//go:build js && wasm

package crdt

import (
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
// setGCPercent(-1) waits for it, and while this goroutine waits the scheduler runs the
// idle mark worker, at full speed, to its end; the percent is then set back as it was.
func finishMark() {
	if writeBarrier.enabled {
		setGCPercent(setGCPercent(-1))
	}
}

// setGCPercent is runtime/debug.SetGCPercent's body, which the runtime provides under this
// name. Called directly, the module links no runtime/debug, whose imports (fmt, os and what
// they bring) were 20,674 bytes of the .wasm gzipped.
//
//go:linkname setGCPercent runtime/debug.setGCPercent
func setGCPercent(percent int32) int32
