//go:build js && wasm

package main

import (
	"syscall/js"
	"unsafe"
)

// writeBarrier is the runtime's flag that a garbage collection is marking (the runtime
// exports it by name: go.dev/issue/67401). The js/wasm runtime has one thread and runs its
// background mark worker only when the scheduler gets control, which a wasmexport call never
// gives it: a collection started inside one stays in its mark phase, with every pointer write
// paying the write barrier, for as many calls as its assists take to finish it. Measured on
// the W3 workload: a third of the time. So a call that leaves the collector marking says so
// (gcFlag), and the glue then calls __mapcrdt.idle, a js.FuncOf callback: returning from it
// passes through the scheduler, which runs the idle mark worker to the end of the mark phase.
//
//go:linkname writeBarrier runtime.writeBarrier
var writeBarrier struct {
	enabled bool
	pad     [3]byte
	alignme uint64
}

// maxArgs bounds the arguments of one wasmexport call (create takes the most: 10).
const maxArgs = 16

// gcFlag is the index in lens of the word a call sets to 1 when it leaves a collection
// marking (see writeBarrier).
const gcFlag = maxArgs

// objectsWord is the index in lens of the word JavaScript sets before a call to the
// number of objects its table of changes' objects holds (Call.Objects), for either bridge.
const objectsWord = maxArgs + 1

// outWord is the index in lens of the word a call sets to the address of its result
// (exportOut's), read by the glue instead of a second call.
const outWord = maxArgs + 2

var (
	host = NewHost()

	// The shared buffers of the wasmexport bridge. Go owns them; JavaScript writes the
	// arguments into inBuf and their lengths into lens, and reads a result from outBuf. The
	// Go heap does not move, and these globals keep the buffers alive between calls.
	inBuf  = make([]byte, 64<<10)
	outBuf = make([]byte, 0, 64<<10)
	lens   [maxArgs + 3]uint32 // argument lengths, then gcFlag, objectsWord and outWord
	argv   [maxArgs][]byte
	call   Call // the call being run (a global: a local would escape to the heap)
)

// keptBuffer is the largest buffer kept between calls: a larger one (a catch-up's message
// or result) is replaced by a small one at the next call (the glue gives a large input
// buffer back at once, at the same size).
const keptBuffer = 256 << 10

func main() {
	// In js/wasm the garbage collector runs on the one thread the engine runs on, so every
	// collection is paid inside some call. The engine's live heap is small and grows slowly
	// (the log, the state); collecting at 4× the live heap instead of 2× halves what a
	// stream of edits pays for collection, at the price of more memory between collections.
	setGCPercent(300)
	install()
	select {}
}

// install sets globalThis.__mapcrdt (see the package doc).
func install() {
	names := make([]any, len(methodNames))
	for i, n := range methodNames {
		names[i] = n
	}
	f := js.Global().Get("Object").New()
	f.Set("version", "1")
	f.Set("methods", js.ValueOf(names))
	f.Set("call", js.FuncOf(jsCall))
	f.Set("idle", js.FuncOf(func(js.Value, []js.Value) any { return nil }))
	js.Global().Set("__mapcrdt", f)
}

// jsCall is __mapcrdt.call(method, handle, flags, now, ...args): args are strings or
// Uint8Arrays; it returns [true, result] (a string, or a Uint8Array for a snapshot) or
// [false, errorJSON]. It never throws and never lets a panic through.
func jsCall(_ js.Value, a []js.Value) (ret any) {
	defer func() {
		if p := recover(); p != nil {
			ret = []any{false, string(appendError(nil, &callError{code: "internal", msg: panicText(p)}))}
		}
	}()
	c := Call{Method: Method(a[0].Int()), Handle: uint32(a[1].Int()), Flags: uint32(a[2].Int()), Now: millis(a[3].Float()), Objects: lens[objectsWord]}
	for _, v := range a[4:] {
		if v.Type() == js.TypeString {
			c.Args = append(c.Args, []byte(v.String()))
			continue
		}
		b := make([]byte, v.Get("byteLength").Int())
		js.CopyBytesToGo(b, v)
		c.Args = append(c.Args, b)
	}
	out, ok := host.Call(nil, &c)
	if ok && c.Method == MethodSnapshot {
		u := js.Global().Get("Uint8Array").New(len(out))
		js.CopyBytesToJS(u, out)
		return []any{true, u}
	}
	return []any{ok, string(out)}
}

// millis converts a wall clock from JavaScript; NaN, infinities and values out of range
// (which would trap in a float-to-int conversion) mean "use the system clock".
func millis(now float64) int64 {
	if now >= 1 && now <= 1<<53 {
		return int64(now)
	}
	return 0
}

func addr(p *byte) uint32 { return uint32(uintptr(unsafe.Pointer(p))) }

// exportIn makes the input buffer hold at least n bytes and returns its address. The
// address changes when the buffer grows (and memory.buffer may change with it).
//
//go:wasmexport mapcrdt_in
func exportIn(n uint32) uint32 {
	if uint32(len(inBuf)) < n || (len(inBuf) > keptBuffer && n <= 64<<10) {
		if n > keptBuffer && uint32(cap(outBuf)) >= n {
			// The last result's buffer, which the glue has read (it reads a result before
			// it writes the next call's arguments) and the next call would drop: a
			// catch-up's answer, passed from one engine to another, is written into the
			// answer's own buffer rather than into a new one as large.
			inBuf, outBuf = outBuf[:cap(outBuf)], make([]byte, 0, 64<<10)
			lens[outWord] = exportOut()
		} else {
			inBuf = make([]byte, max(n, 64<<10))
		}
	}
	return addr(unsafe.SliceData(inBuf))
}

// exportLens returns the address of the argument lengths (uint32 × maxArgs), followed by
// the collector flag (uint32, see writeBarrier), the objects word (uint32, see objectsWord)
// and the result's address (uint32, see outWord). It never changes.
//
//go:wasmexport mapcrdt_lens
func exportLens() uint32 { return addr((*byte)(unsafe.Pointer(&lens[0]))) }

// exportOut returns the address of the last result.
//
//go:wasmexport mapcrdt_out
func exportOut() uint32 { return addr(unsafe.SliceData(outBuf[:cap(outBuf)])) }

// exportCall runs one call whose nargs arguments are in the input buffer, one after
// another, their lengths in lens. It returns the length n of the result at exportOut(),
// also written to lens[outWord]:
// n ≥ 0 for a result, -n-1 for an error (JSON).
//
//go:wasmexport mapcrdt_call
func exportCall(method, handle, flags, nargs uint32, now float64) (n int32) {
	defer func() {
		if p := recover(); p != nil {
			outBuf = appendError(outBuf[:0], &callError{code: "internal", msg: panicText(p)})
			n = -int32(len(outBuf)) - 1
			host.now = 0
			lens[outWord] = exportOut()
		}
	}()
	if cap(outBuf) > keptBuffer {
		outBuf = make([]byte, 0, 64<<10) // don't keep a large result's buffer
	}
	// Field by field: a Call literal assigned whole is built on the stack and copied (a
	// memory.fill and a memory.copy in wasm, ~8 ns each).
	c := &call
	c.Method, c.Handle, c.Flags, c.Now = Method(method), handle, flags, millis(now)
	c.Args, c.Objects = argv[:nargs], lens[objectsWord]
	c.changes, c.rows = nil, nil
	off := uint32(0)
	for i := range nargs {
		c.Args[i] = inBuf[off : off+lens[i]]
		off += lens[i]
	}
	out, ok := host.call(outBuf[:0], c)  // recovered above
	for i := uint32(0); i < nargs; i++ { // not clear: its runtime calls cost more (wasm)
		argv[i] = nil
	}
	outBuf = out
	lens[outWord] = exportOut()
	lens[gcFlag] = 0
	if writeBarrier.enabled {
		lens[gcFlag] = 1
	}
	if !ok {
		return -int32(len(out)) - 1
	}
	return int32(len(out))
}

// setGCPercent is runtime/debug.SetGCPercent's body, which the runtime provides under this
// name. Called directly, the module links no runtime/debug, whose imports (fmt, os and what
// they bring) were 20,674 bytes of the .wasm gzipped.
//
//go:linkname setGCPercent runtime/debug.setGCPercent
func setGCPercent(percent int32) int32
