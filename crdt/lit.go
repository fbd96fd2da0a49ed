package crdt

import (
	"runtime"
	"unsafe"
)

// wordCopies says whether appendLit copies short texts with word stores: in wasm, where Go
// copies every appended text through runtime.memmove (a call, and memory.copy behind it:
// ~6 ns for a few bytes in V8, against ~1 for two word stores), and not natively, where
// the compiler already turns the copy of a short constant into moves.
const wordCopies = runtime.GOARCH == "wasm"

// appendLit is append(b, s...) for a short text, mostly a constant member name written into
// a message: in wasm, a text of 8 to 16 bytes goes into b's spare room with two
// (overlapping) 8-byte stores, without a call. Inlined, with s constant, the length tests
// fold away. (A load or store of a word need not be aligned in wasm.)
func appendLit(b []byte, s string) []byte {
	n := len(s)
	if wordCopies && n >= 8 && n <= 16 && cap(b)-len(b) >= 16 {
		p := unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), len(b))
		q := unsafe.Pointer(unsafe.StringData(s))
		*(*uint64)(p) = *(*uint64)(q)
		*(*uint64)(unsafe.Add(p, n-8)) = *(*uint64)(unsafe.Add(q, n-8))
		return b[:len(b)+n]
	}
	return append(b, s...)
}

// appendLit4 is appendLit for a text of 4 to 8 bytes (`,"key":`): two 4-byte stores.
func appendLit4(b []byte, s string) []byte {
	n := len(s)
	if wordCopies && n >= 4 && n <= 8 && cap(b)-len(b) >= 8 {
		p := unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), len(b))
		q := unsafe.Pointer(unsafe.StringData(s))
		*(*uint32)(p) = *(*uint32)(q)
		*(*uint32)(unsafe.Add(p, n-4)) = *(*uint32)(unsafe.Add(q, n-4))
		return b[:len(b)+n]
	}
	return append(b, s...)
}
