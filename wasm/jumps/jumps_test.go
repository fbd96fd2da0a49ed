package main

import (
	"bytes"
	"errors"
	"testing"
)

// These tests check the bytes Rewrite writes; run_js_test.go (GOOS=js) runs small
// functions before and after, and make test-wasm runs the engine's whole test suite
// compiled to wasm and rewritten (go test -exec wasm/jumps/exec.sh).

// module wraps function bodies (each without its size) into a module of one type,
// (func (param i32) (result i32)), as Go's functions are, exporting the first as "f".
func module(bodies ...[]byte) []byte {
	m := []byte("\x00asm\x01\x00\x00\x00")
	m = append(m, section(1, []byte{1, 0x60, 1, 0x7f, 1, 0x7f})...)
	funcs := appendU32(nil, uint32(len(bodies)))
	for range bodies {
		funcs = append(funcs, 0)
	}
	m = append(m, section(3, funcs)...)
	m = append(m, section(7, []byte{1, 1, 'f', 0, 0})...)
	code := appendU32(nil, uint32(len(bodies)))
	for _, b := range bodies {
		code = appendU32(code, uint32(len(b)))
		code = append(code, b...)
	}
	return append(m, section(10, code)...)
}

func section(id byte, content []byte) []byte {
	return append(appendU32([]byte{id}, uint32(len(content))), content...)
}

const (
	opReturn, opDrop, opNop = 0x0f, 0x1a, 0x01
	empty                   = 0x40
	opI32Add, opI32Sub      = 0x6a, 0x6b
	opI32GtS, opI32And      = 0x4a, 0x71
	opI32Eqz                = 0x45
)

// goShaped is a function in the shape Go gives every function: two i32 locals (1 and 2)
// besides PC_B (0), an exit block around a loop around blocks B(n-1) … B0, and a br_table
// on local 0 sending PC_B k to Bk (the last, and anything larger, to B(n-1)). codes[k] is
// the code after Bk's end; the function returns 1 when it falls off the loop. Inside
// codes[k] the loop is br (n-1-k) at its top level.
func goShaped(codes ...[]byte) []byte {
	n := len(codes)
	b := []byte{1, 2, 0x7f, // locals: two i32
		opBlock, empty, // the exit
		opLoop, empty}
	for range n {
		b = append(b, opBlock, empty)
	}
	b = append(b, opLocalGet, 0, opBrTable)
	b = appendU32(b, uint32(n-1))
	for k := range n {
		b = appendU32(b, uint32(k))
	}
	for _, c := range codes {
		b = append(b, opEnd)
		b = append(b, c...)
	}
	return append(b, opEnd, 0x00 /* unreachable */, opEnd, opI32Const, 1, opEnd)
}

// jumpTo is Go's jump to block k from depth d below the loop: PC_B = k, back to the loop.
func jumpTo(k, d byte) []byte { return []byte{opI32Const, k, opLocalSet, 0, opBr, d} }

// cat joins instruction sequences.
func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func rewrite(t *testing.T, in []byte) ([]byte, Stats) {
	t.Helper()
	out, st, err := Rewrite(in)
	if err != nil {
		t.Fatal(err)
	}
	return out, st
}

func TestRewriteMakesForwardJumpsDirect(t *testing.T) {
	// Block 0's code jumps forward to block 2 (the loop is br 2 there): from inside B1 and
	// B2, B2 is br 1. Block 1's code returns. Block 2's returns 7.
	ret7 := []byte{opI32Const, 7, opReturn}
	in := module(goShaped(jumpTo(2, 2), []byte{opI32Const, 5, opReturn}, ret7))
	out, st := rewrite(t, in)
	want := module(goShaped([]byte{opBr, 1}, []byte{opI32Const, 5, opReturn}, ret7))
	if !bytes.Equal(out, want) {
		t.Fatalf("got  % x\nwant % x", out, want)
	}
	if st != (Stats{Functions: 1, Shaped: 1, Forward: 1}) {
		t.Fatalf("stats %+v", st)
	}
}

func TestRewriteCountsTheLabelsOfIfs(t *testing.T) {
	// The jump to block 2 inside an if: the loop is br 3 from there, B2 is br 2.
	ret7 := []byte{opI32Const, 7, opReturn}
	code0 := cat([]byte{opLocalGet, 1, opIf, empty}, jumpTo(2, 3), []byte{opEnd})
	out, st := rewrite(t, module(goShaped(code0, nil, ret7)))
	want0 := []byte{opLocalGet, 1, opIf, empty, opBr, 2, opEnd}
	if !bytes.Equal(out, module(goShaped(want0, nil, ret7))) || st.Forward != 1 {
		t.Fatalf("got % x (%+v)", out, st)
	}
}

// sumTo is sum = 1 + … + local 1 as Go lays a loop out: block 0 (the entry) sets the
// locals and jumps to the header, block 1 (the body) adds and counts down and runs into
// block 2 (the header), which jumps back to the body while the counter is positive and
// then on to block 3, which returns the sum.
func sumTo(n byte) []byte {
	return goShaped(
		cat([]byte{opI32Const, n, opLocalSet, 1, opI32Const, 0, opLocalSet, 2}, jumpTo(2, 3)),
		[]byte{opLocalGet, 2, opLocalGet, 1, opI32Add, opLocalSet, 2,
			opLocalGet, 1, opI32Const, 1, opI32Sub, opLocalSet, 1},
		cat([]byte{opLocalGet, 1, opI32Const, 0, opI32GtS, opIf, empty}, jumpTo(1, 2), []byte{opEnd}, jumpTo(3, 1)),
		[]byte{opLocalGet, 2, opReturn},
	)
}

func TestRewriteRunsALoopWithoutTheTable(t *testing.T) {
	out, st := rewrite(t, module(sumTo(10)))
	if st.Loops != 1 || st.Forward != 2 || st.Backward != 0 || st.Copied != 14 {
		t.Fatalf("stats %+v", st)
	}
	// Block 2's code is a loop: the test, then (inside the if) a copy of block 1's code and a
	// branch to the loop's start; after the if, the jump to block 3 (br 2: the new loop and
	// B3 are open).
	header := cat([]byte{opLoop, empty, opLocalGet, 1, opI32Const, 0, opI32GtS, opIf, empty},
		[]byte{opLocalGet, 2, opLocalGet, 1, opI32Add, opLocalSet, 2,
			opLocalGet, 1, opI32Const, 1, opI32Sub, opLocalSet, 1},
		[]byte{opBr, 1, opEnd, opBr, 1, opEnd})
	if !bytes.Contains(out, header) {
		t.Fatalf("no loop in % x", out)
	}
}

// oddTo9 sums the odd numbers up to 9 with a loop whose body is two blocks: block 1 adds
// the counter when it is odd, else jumps to block 2, which counts down; block 3 is the
// header.
func oddTo9() []byte {
	return goShaped(
		cat([]byte{opI32Const, 9, opLocalSet, 1, opI32Const, 0, opLocalSet, 2}, jumpTo(3, 4)),
		cat([]byte{opLocalGet, 1, opI32Const, 1, opI32And, opI32Eqz, opIf, empty}, jumpTo(2, 4), []byte{opEnd},
			[]byte{opLocalGet, 2, opLocalGet, 1, opI32Add, opLocalSet, 2}),
		[]byte{opLocalGet, 1, opI32Const, 1, opI32Sub, opLocalSet, 1},
		cat([]byte{opLocalGet, 1, opI32Const, 0, opI32GtS, opIf, empty}, jumpTo(1, 2), []byte{opEnd}, jumpTo(4, 1)),
		[]byte{opLocalGet, 2, opReturn},
	)
}

func TestRewriteCopiesARegionOfSeveralBlocks(t *testing.T) {
	// The region copied is blocks 1 and 2, under a block of the copy's own that block 1's
	// jump to block 2 leaves.
	f := oddTo9()
	out, st := rewrite(t, module(f))
	if st.Loops != 1 || st.Backward != 0 {
		t.Fatalf("stats %+v", st)
	}
	// In the copy: block (for block 2's code), the odd test whose jump is br 1 out of the if
	// to that block's end, the add, end, the count down, then br 1 (out of the header's if)
	// to the new loop's start.
	copied := cat([]byte{opBlock, empty, opLocalGet, 1, opI32Const, 1, opI32And, opI32Eqz, opIf, empty, opBr, 1, opEnd,
		opLocalGet, 2, opLocalGet, 1, opI32Add, opLocalSet, 2, opEnd,
		opLocalGet, 1, opI32Const, 1, opI32Sub, opLocalSet, 1, opBr, 1, opEnd})
	if !bytes.Contains(out, copied) {
		t.Fatalf("no copy in % x", out)
	}
}

func TestRewriteLeavesWhatItCannotProve(t *testing.T) {
	ret7 := []byte{opI32Const, 7, opReturn}
	for _, c := range []struct {
		name   string
		body   []byte
		shaped int // 1: in Go's shape, but nothing to rewrite
	}{
		// PC_B read by the function's code: it may need the value a jump sets.
		{"local 0 read", goShaped(cat([]byte{opLocalGet, 0, opDrop}, jumpTo(2, 2)), nil, ret7), 0},
		// An instruction the decoder does not know (a SIMD one).
		{"unknown instruction", goShaped(cat([]byte{0xfd, 0x0c}, jumpTo(2, 2)), nil, ret7), 0},
		// Not Go's shape: no br_table on local 0.
		{"no dispatch", []byte{0, opBlock, empty, opLoop, empty, opI32Const, 2, opLocalSet, 0, opBr, 0, opEnd, opEnd, opI32Const, 1, opEnd}, 0},
		// The pattern with another local.
		{"local 1", goShaped([]byte{opI32Const, 2, opLocalSet, 1, opBr, 2}, nil, ret7), 1},
		// A branch out of the function's own block (which the decoder does not follow).
		{"function label", goShaped([]byte{opBr, 4}, nil, ret7), 0},
		// Code between the loop's start and the br_table: a branch to the loop runs it.
		{"code at the loop's head", bytes.Replace(goShaped(jumpTo(2, 2), nil, ret7),
			[]byte{opLoop, empty}, []byte{opLoop, empty, opI32Const, 1, opLocalSet, 1}, 1), 0},
		// A br_table entry that is not one of its blocks (here the loop, depth 3).
		{"table to the loop", bytes.Replace(goShaped(jumpTo(2, 2), nil, ret7),
			[]byte{opBrTable, 2, 0, 1, 2}, []byte{opBrTable, 2, 0, 1, 3}, 1), 0},
	} {
		in := module(c.body)
		out, st := rewrite(t, in)
		if !bytes.Equal(out, in) || st.Forward+st.Loops != 0 || st.Shaped != c.shaped {
			t.Errorf("%s: changed (%+v)", c.name, st)
		}
	}
}

func TestRewriteLeavesLargeLoopBodies(t *testing.T) {
	// sumTo with a body over maxCopy bytes (nops): the back-edge stays a jump through the
	// table.
	f := sumTo(10)
	big := bytes.Repeat([]byte{opNop}, maxCopy)
	i := bytes.Index(f, []byte{opLocalGet, 2, opLocalGet, 1, opI32Add})
	f = cat(f[:i], big, f[i:])
	_, st := rewrite(t, module(f))
	if st.Loops != 0 || st.Backward != 1 || st.Forward != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRewriteRejectsWhatIsNotAModule(t *testing.T) {
	good := module(goShaped(jumpTo(2, 2), nil, nil))
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

// FuzzRewrite: no input makes Rewrite panic, and what it writes reads again (and rewrites
// again without a panic).
func FuzzRewrite(f *testing.F) {
	f.Add(module(sumTo(10)))
	f.Add(module(goShaped(jumpTo(2, 2), []byte{opI32Const, 5, opReturn}, []byte{opI32Const, 7, opReturn})))
	f.Add(module(goShaped(cat([]byte{opLocalGet, 1, opIf, empty}, jumpTo(2, 3), []byte{opEnd}), nil, nil)))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, _, err := Rewrite(in)
		if err != nil {
			return
		}
		if _, _, err := Rewrite(out); err != nil {
			t.Fatalf("the rewritten module does not read again: %v", err)
		}
	})
}
