//go:build js && wasm

package main

import (
	"syscall/js"
	"testing"
)

// run instantiates mod in the JavaScript engine running the test (make test-wasm: Node)
// and returns f(pcb).
func run(t *testing.T, mod []byte, pcb int) int {
	t.Helper()
	bytes := js.Global().Get("Uint8Array").New(len(mod))
	js.CopyBytesToJS(bytes, mod)
	wasm := js.Global().Get("WebAssembly")
	m := wasm.Get("Module").New(bytes)
	inst := wasm.Get("Instance").New(m)
	return inst.Get("exports").Call("f", pcb).Int()
}

// TestRewrittenFunctionsComputeTheSame runs small Go-shaped functions before and after
// Rewrite, from each of their entries: the rewritten ones (forward jumps, a loop whose body
// is copied into its header, a region of two blocks) return what the originals do.
func TestRewrittenFunctionsComputeTheSame(t *testing.T) {
	for _, c := range []struct {
		name  string
		f     []byte
		want0 int // f(0)
		loops int
	}{
		{"sum to 10", sumTo(10), 55, 1},
		{"sum to 0", sumTo(0), 0, 1},
		{"odd numbers to 9", oddTo9(), 25, 1},
	} {
		in := module(c.f)
		out, st := rewrite(t, in)
		if st.Loops != c.loops {
			t.Errorf("%s: %d loops rewritten, want %d", c.name, st.Loops, c.loops)
		}
		if got := run(t, out, 0); got != c.want0 {
			t.Errorf("%s: f(0) = %d, want %d", c.name, got, c.want0)
		}
		for pcb := 0; pcb < 6; pcb++ { // every entry, and past the last (the default)
			if a, b := run(t, in, pcb), run(t, out, pcb); a != b {
				t.Errorf("%s: f(%d) = %d rewritten, %d before", c.name, pcb, b, a)
			}
		}
	}
}
