package main

import (
	"bytes"
	"errors"
	"testing"
)

// The rewritten module's behaviour is tested by running the engine's whole test suite
// compiled to wasm and rewritten (make test-wasm runs go test -exec wasm/jumps/exec.sh);
// these tests check the bytes.

// module wraps function bodies (each without its size) into a module of one type,
// (func (param i32) (result i32)), as Go's functions are.
func module(bodies ...[]byte) []byte {
	m := []byte("\x00asm\x01\x00\x00\x00")
	m = append(m, section(1, []byte{1, 0x60, 1, 0x7f, 1, 0x7f})...)
	funcs := []byte{byte(len(bodies))}
	for range bodies {
		funcs = append(funcs, 0)
	}
	m = append(m, section(3, funcs)...)
	code := []byte{byte(len(bodies))}
	for _, b := range bodies {
		code = append(code, byte(len(b)))
		code = append(code, b...)
	}
	return append(m, section(10, code)...)
}

func section(id byte, content []byte) []byte {
	return append([]byte{id, byte(len(content))}, content...)
}

const (
	opBlock, opLoop, opIf, opEnd = 0x02, 0x03, 0x04, 0x0b
	opBr, opBrTable, opReturn    = 0x0c, 0x0e, 0x0f
	opLocalGet, opLocalSet       = 0x20, 0x21
	opI32Const, opDrop, opNop    = 0x41, 0x1a, 0x01
	empty                        = 0x40
)

// goShaped is a function in the shape Go gives every function: a loop around a br_table on
// local 0, PC_B 0, 1, 2 going to blocks B0, B1, B2, whose code follows each one's end.
// code0 and code1 are the code of blocks 0 and 1 (block 2's returns 7).
func goShaped(code0, code1 []byte) []byte {
	b := []byte{0, // no locals
		opBlock, empty, // the exit
		opLoop, empty,
		opBlock, empty, // B2
		opBlock, empty, // B1
		opBlock, empty, // B0
		opLocalGet, 0, opBrTable, 2, 0, 1, 2,
		opEnd}
	b = append(b, code0...)
	b = append(b, opEnd)
	b = append(b, code1...)
	b = append(b, opEnd, opI32Const, 7, opReturn, opEnd, 0x00 /* unreachable */, opEnd, opI32Const, 1, opEnd)
	return b
}

// jumpTo is Go's jump to block k from depth d below the loop: PC_B = k, back to the loop.
func jumpTo(k, d byte) []byte { return []byte{opI32Const, k, opLocalSet, 0, opBr, d} }

func TestRewriteMakesForwardJumpsDirect(t *testing.T) {
	// Block 0's code jumps to block 2 (forward; from inside B1 and B2 the loop is br 2);
	// block 1's code jumps back to block 0 (from inside B2 the loop is br 1).
	in := module(goShaped(jumpTo(2, 2), jumpTo(0, 1)))
	out, st, err := Rewrite(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("length %d, want %d", len(out), len(in))
	}
	// From inside B1 (depth 0) and B2 (depth 1), B2 is br 1: the six bytes become br 1 and
	// four nops.
	want := module(goShaped([]byte{opBr, 1, opNop, opNop, opNop, opNop}, jumpTo(0, 1)))
	if !bytes.Equal(out, want) {
		t.Fatalf("got  % x\nwant % x", out, want)
	}
	if st != (Stats{Functions: 1, Shaped: 1, Forward: 1, Backward: 1}) {
		t.Fatalf("stats %+v", st)
	}
	if !bytes.Equal(in, module(goShaped(jumpTo(2, 2), jumpTo(0, 1)))) {
		t.Fatal("Rewrite changed its input")
	}
}

func TestRewriteCountsTheLabelsOfIfs(t *testing.T) {
	// The jump to block 2 inside an if: the loop is br 3 from there, B2 is br 2.
	code0 := append([]byte{opI32Const, 1, opIf, empty}, jumpTo(2, 3)...)
	code0 = append(code0, opEnd)
	out, st, err := Rewrite(module(goShaped(code0, nil)))
	if err != nil {
		t.Fatal(err)
	}
	want0 := []byte{opI32Const, 1, opIf, empty, opBr, 2, opNop, opNop, opNop, opNop, opEnd}
	if !bytes.Equal(out, module(goShaped(want0, nil))) || st.Forward != 1 {
		t.Fatalf("got % x (%+v)", out, st)
	}
}

func TestRewriteLeavesWhatItCannotProve(t *testing.T) {
	for _, c := range []struct {
		name string
		body []byte
	}{
		// PC_B read by the function's code: it may need the value a jump sets.
		{"local 0 read", goShaped(append([]byte{opLocalGet, 0, opDrop}, jumpTo(2, 2)...), nil)},
		// An instruction the decoder does not know (a SIMD one).
		{"unknown instruction", goShaped(append([]byte{0xfd, 0x0c}, jumpTo(2, 2)...), nil)},
		// Not Go's shape: no br_table on local 0.
		{"no dispatch", []byte{0, opBlock, empty, opLoop, empty, opI32Const, 2, opLocalSet, 0, opBr, 0, opEnd, opEnd, opI32Const, 1, opEnd}},
		// The pattern with another local.
		{"local 1", goShaped([]byte{opI32Const, 2, opLocalSet, 1, opBr, 2}, nil)},
	} {
		in := module(c.body)
		out, st, err := Rewrite(in)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !bytes.Equal(out, in) || st.Forward != 0 {
			t.Errorf("%s: changed (%+v)", c.name, st)
		}
	}
}

func TestRewriteRejectsWhatIsNotAModule(t *testing.T) {
	good := module(goShaped(jumpTo(2, 2), nil))
	for _, in := range [][]byte{
		nil,
		[]byte("\x00asm"),
		[]byte("not wasm at all"),
		good[:len(good)-3], // a code section cut short
		append(append([]byte{}, good...), 10, 0x80), // a section size that never ends
	} {
		if _, _, err := Rewrite(in); !errors.Is(err, errFormat) {
			t.Errorf("Rewrite(% x): %v, want errFormat", in, err)
		}
	}
}
