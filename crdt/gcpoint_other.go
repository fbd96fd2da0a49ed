//go:build !(js && wasm)

package crdt

// finishMark does nothing: a native runtime marks on its own threads (see gcpoint.go).
func finishMark() {}
