// Command wasm is mapcrdt's WebAssembly module: the crdt engine behind a small call table,
// built with GOOS=js GOARCH=wasm and driven by the JavaScript glue in jsglue/index.js.
//
// # What main installs
//
// main installs one global, globalThis.__mapcrdt, and then blocks forever (select {}):
//
//	globalThis.__mapcrdt = {
//	  version: "1",                 // the call protocol below; the glue checks it
//	  methods: ["create", …],       // the call table, by index (see Methods)
//	  call(method, handle, flags, now, ...args) → [ok, result]   // the js.FuncOf bridge
//	  idle()                        // does nothing: lets the scheduler end a collection (below)
//	}
//
// Engines live in a handle table inside the module: "create" returns a handle (a small
// integer, never reused), every other method takes it, "close" frees it. Several engines can
// live in one page; they share nothing but the module.
//
// # Two bridges, one dispatcher
//
// Every call goes through Host.Call (dispatch.go, no build tags, tested natively): a method
// index, a handle, flags, the caller's wall clock in milliseconds and a list of arguments
// (UTF-8 text or bytes), giving a result (text or bytes) or an error {"code","message"}.
// Two bridges reach it:
//
//   - __mapcrdt.call, a js.FuncOf function: arguments are JavaScript strings or Uint8Arrays,
//     the result comes back as [true, text|Uint8Array] or [false, errorJSON]. About 9–18 µs
//     per call (README, "Measured") — kept for diagnostics, for measuring, and as a fallback.
//   - //go:wasmexport functions over shared buffers, what the glue uses: the glue asks
//     mapcrdt_in(n) for an input buffer of n bytes (its address is returned; it is owned by
//     Go and reused), writes the arguments one after another (TextEncoder.encodeInto) and their
//     byte lengths into the uint32 array at mapcrdt_lens(), then calls
//     mapcrdt_call(method, handle, flags, nargs, now). The result is a length: n ≥ 0 means
//     success, -n-1 an error; the bytes are at mapcrdt_out(), an address the call also
//     writes into the uint32 array (lens[18]: the glue reads it there instead of calling
//     again). The memory may grow during a call: the glue then makes its views of
//     memory.buffer again. About 12 ns per empty call (README) plus the copying. A result is valid until
//     the next mapcrdt_in or mapcrdt_call: a large result's buffer becomes the next input
//     buffer when that one must be as large (a catch-up's answer, handed to the engine that
//     asked for it, is not copied into a second half-megabyte buffer).
//
// A wasmexport function must never block and must never call into JavaScript (that
// corrupts the Go runtime, see ../shared/PLATFORM.md): which is why the wall clock comes in
// as an argument (the replica's hlc.WallClock reads the value of the current call), and why
// no method waits on anything. Every call is synchronous and bounded by the size of its
// input (the engine's Limits); nothing is left running between calls.
//
// One thing needs the scheduler: a garbage collection that starts inside a wasmexport call
// stays in its mark phase (every pointer write paying the write barrier) until the scheduler
// runs the mark worker, which it does only when the running goroutine waits (a js.FuncOf
// callback's return, or a wait inside the call). So the word after the
// argument lengths (lens[16]) is 1 when a call leaves a collection marking, and the glue
// then calls __mapcrdt.idle(), a callback that does nothing: returning from it, the
// scheduler finishes the collection. Measured (jsglue/bench/HISTORY.md): W1 (10k edits) 243 →
// 165 ms, W4 140 → 104 ms; the price is one pause per collection, the whole mark at once.
// A collection that starts inside a long call (a catch-up, an answer, a snapshot) is ended
// sooner, inside the call, at the engine's next gcPoint (crdt/gcpoint.go): every 256
// operations the engine checks the flag and, when set, waits for the idle mark worker.
//
// # Errors and panics
//
// Bad input gets the engine's typed error: code ("invalid_json", "clock_drift", …) and
// message. Using a closed or unknown handle is "bad_state". A panic anywhere in a call is
// recovered and returned as code "internal" with the panic text and the stack: the module
// never exits, and the other engines, and the same engine, keep serving.
//
// # Result formats
//
// Results are JSON text except where noted: lists of messages (flush, and the replies of
// receive) are message texts separated by the byte 0x1E, which valid JSON text never
// contains outside of a string escape; a snapshot is bytes; get gives empty text for an
// absent value; changes come in a compact form that names each change's object by its
// number in a table the glue keeps, and writes an object's subject and metadata only when
// the glue's table lacks it (changes.go; the glue says how many objects it holds with each
// call); undo and redo give {"done","skipped"}, 0x1E and
// the changes. The glue (jsglue/index.js) turns each into the JavaScript value its .d.ts
// promises.
//
// The module avoids fmt, os and encoding/json (with what they pull in, tens to hundreds of
// kilobytes of .wasm; wasm/deps_test.go checks): JSON is written with strconv and a small
// string escaper (crdt/json.go).
package main
