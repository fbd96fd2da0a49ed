// Command jumps rewrites the forward jumps of a Go-built WebAssembly module into direct
// branches. make build runs it on the module:
//
//	go run ./wasm/jumps in.wasm out.wasm
//
// # Why
//
// Go compiles each function into one loop around a br_table on the function's first
// parameter (PC_B, the block to run, which the runtime also uses to resume a function after
// a goroutine switch). Each jump target and each point after a call is a block of that
// table, and every jump, forward or backward, is written as
//
//	i32.const K; local.set 0; br $loop   ;; PC_B = K, back to the br_table, on to block K
//
// The engine runs a jump as a loop back-edge and an indirect branch through the table. A
// forward jump's target block is still open where the jump is (block K ends right where
// block K's code starts, and the code of every block before it lies inside it), so the same
// jump can be the one instruction `br` to the end of block K. This command makes that change
// in place: the new branch and nop padding take the bytes of the three instructions, so no
// offset or size in the module changes. Backward jumps (loops) stay as they are: a `br`
// can only leave a block forward.
//
// # Why it is safe
//
// Block K's code is what the br_table would have run: the only difference is that PC_B is
// not set to K, and a function is rewritten only if nothing but the br_table reads PC_B (no
// other local.get 0). A function whose shape is not Go's (no such loop and br_table), or
// that holds an instruction the decoder does not know, is left as it is; so are all
// functions when the module is not one this decoder reads to the end.
package main

import (
	"errors"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: jumps in.wasm out.wasm")
		os.Exit(2)
	}
	in, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "jumps:", err)
		os.Exit(1)
	}
	out, st, err := Rewrite(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "jumps:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(os.Args[2], out, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "jumps:", err)
		os.Exit(1)
	}
	fmt.Printf("jumps: %d of %d functions in Go's shape; %d forward jumps made direct, %d backward left\n",
		st.Shaped, st.Functions, st.Forward, st.Backward)
}

// Stats counts what Rewrite found and changed.
type Stats struct {
	Functions int // function bodies in the module
	Shaped    int // bodies in Go's shape (a loop around a br_table on local 0), rewritten
	Forward   int // jumps made direct branches
	Backward  int // jumps left as they were (their target block is closed where they are)
}

// errFormat is returned for a module whose sections cannot be read.
var errFormat = errors.New("not a WebAssembly module this command reads")

// Rewrite returns a copy of the module with the forward jumps of its Go-shaped functions
// made direct branches (see the package comment), and what it did. The copy has the length
// of the original.
func Rewrite(mod []byte) ([]byte, Stats, error) {
	var st Stats
	if len(mod) < 8 || string(mod[:4]) != "\x00asm" || mod[4] != 1 {
		return nil, st, errFormat
	}
	out := append([]byte(nil), mod...)
	r := reader{b: out, i: 8}
	for r.i < len(out) {
		id := r.byte()
		size := int(r.u32())
		if r.err || size > len(out)-r.i {
			return nil, st, errFormat
		}
		end := r.i + size
		if id == 10 { // the code section
			n := int(r.u32())
			for k := 0; k < n; k++ {
				bodySize := int(r.u32())
				if r.err || bodySize > end-r.i {
					return nil, st, errFormat
				}
				st.Functions++
				rewriteBody(out[r.i:r.i+bodySize], &st)
				r.i += bodySize
			}
			if r.err || r.i != end {
				return nil, st, errFormat
			}
		}
		r.i = end
	}
	return out, st, nil
}

// reader decodes the module's bytes; err is set, and every read returns 0, past the end or
// on a malformed number.
type reader struct {
	b   []byte
	i   int
	err bool
}

func (r *reader) byte() byte {
	if r.i >= len(r.b) {
		r.err = true
		return 0
	}
	c := r.b[r.i]
	r.i++
	return c
}

// u32 reads an unsigned LEB128 number of at most 32 bits.
func (r *reader) u32() uint32 {
	var v uint32
	for shift := 0; shift < 35; shift += 7 {
		c := r.byte()
		v |= uint32(c&0x7f) << shift
		if c&0x80 == 0 {
			return v
		}
	}
	r.err = true
	return 0
}

// s64 reads a signed LEB128 number (i32.const and i64.const immediates).
func (r *reader) s64() int64 {
	var v int64
	shift := 0
	for shift < 70 {
		c := r.byte()
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return v
		}
	}
	r.err = true
	return 0
}

func (r *reader) skip(n int) {
	if n > len(r.b)-r.i {
		r.err = true
		r.i = len(r.b)
		return
	}
	r.i += n
}

// blockType skips a block type: empty (0x40), a value type, or a type index (s33).
func (r *reader) blockType() {
	if r.i < len(r.b) {
		switch c := r.b[r.i]; {
		case c == 0x40 || (c >= 0x7b && c <= 0x7f) || c == 0x70 || c == 0x6f:
			r.i++
			return
		}
	}
	r.s64()
}

// frame is an open block, loop or if: its label.
type frame struct {
	id   int  // the number of the block instruction that opened it, in the body
	loop bool // a loop (a branch to it goes back to its start)
}

// patch is a jump to rewrite: the bytes [start, end) of the body become br depth and nops.
type patch struct {
	start, end, depth int
}

// rewriteBody rewrites one function body in place (see Rewrite), or leaves it as it is.
func rewriteBody(body []byte, st *Stats) {
	r := reader{b: body}
	for n := r.u32(); n > 0 && !r.err; n-- { // the locals: count, type
		r.u32()
		r.byte()
	}
	var (
		stack    []frame
		nextID   int
		loopID   = -1
		table    []int // PC_B → the id of the block the br_table goes to; last: the default
		gets0    int   // local.get 0 instructions
		patches  []patch
		backward int
		lastOps  [3]int // start offsets of the last three instructions
		lastKind [3]byte
	)
	push := func(loop bool) {
		stack = append(stack, frame{id: nextID, loop: loop})
		nextID++
	}
	for r.i < len(body) && !r.err {
		start := r.i
		op := r.byte()
		switch {
		case op == 0x02 || op == 0x04: // block, if
			r.blockType()
			push(false)
		case op == 0x03: // loop
			r.blockType()
			if loopID < 0 {
				loopID = nextID
			}
			push(true)
		case op == 0x05: // else: the same label
		case op == 0x0b: // end
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		case op == 0x0c: // br
			d := int(r.u32())
			// The jump pattern: i32.const K; local.set 0 (two bytes); br to the loop.
			if r.err || table == nil || d >= len(stack) || stack[len(stack)-1-d].id != loopID ||
				lastKind[1] != 0x41 || lastKind[2] != 0x21 || start-lastOps[2] != 2 || body[lastOps[2]+1] != 0x00 {
				break
			}
			k := (&reader{b: body, i: lastOps[1] + 1}).s64()
			if k < 0 {
				break
			}
			target := table[len(table)-1] // the default
			if k < int64(len(table)-1) {
				target = table[k]
			}
			depth := -1
			for i := len(stack) - 1; i >= 0; i-- {
				if stack[i].id == target && !stack[i].loop {
					depth = len(stack) - 1 - i
					break
				}
			}
			if depth < 0 {
				backward++
				break
			}
			patches = append(patches, patch{start: lastOps[1], end: r.i, depth: depth})
		case op == 0x0d: // br_if
			r.u32()
		case op == 0x0e: // br_table
			n := int(r.u32())
			labels := make([]int, 0, n+1)
			for j := 0; j <= n && !r.err; j++ {
				d := int(r.u32())
				if d >= len(stack) {
					return
				}
				labels = append(labels, stack[len(stack)-1-d].id)
			}
			// Go's: the first br_table, right after local.get 0, inside the loop.
			if table == nil && loopID >= 0 && lastKind[2] == 0x20 && body[lastOps[2]+1] == 0x00 {
				table = labels
				gets0-- // that local.get 0 is the br_table's own
			}
		case op == 0x00 || op == 0x01 || op == 0x0f || op == 0x1a || op == 0x1b || (op >= 0x45 && op <= 0xc4):
			// no immediate: unreachable, nop, return, drop, select, numeric and sign-extension
		case op == 0x10: // call
			r.u32()
		case op == 0x11: // call_indirect
			r.u32()
			r.u32()
		case op == 0x20: // local.get
			if r.u32() == 0 {
				gets0++
			}
		case op >= 0x21 && op <= 0x24: // local.set, local.tee, global.get, global.set
			r.u32()
		case op >= 0x28 && op <= 0x3e: // loads and stores: align, offset
			r.u32()
			r.u32()
		case op == 0x3f || op == 0x40: // memory.size, memory.grow
			r.byte()
		case op == 0x41 || op == 0x42: // i32.const, i64.const
			r.s64()
		case op == 0x43:
			r.skip(4)
		case op == 0x44:
			r.skip(8)
		case op == 0xfc:
			switch sub := r.u32(); {
			case sub <= 7: // saturating truncations
			case sub == 10: // memory.copy
				r.byte()
				r.byte()
			case sub == 11: // memory.fill
				r.byte()
			default:
				return // not an instruction Go emits: leave the function
			}
		default:
			return
		}
		lastOps[0], lastOps[1], lastOps[2] = lastOps[1], lastOps[2], start
		lastKind[0], lastKind[1], lastKind[2] = lastKind[1], lastKind[2], op
	}
	if r.err || r.i != len(body) || table == nil || gets0 != 0 {
		return
	}
	st.Shaped++
	st.Backward += backward
	for _, p := range patches {
		w := p.start
		body[w] = 0x0c // br depth
		w++
		for v := uint32(p.depth); ; w++ {
			if v < 0x80 {
				body[w] = byte(v)
				w++
				break
			}
			body[w] = byte(v&0x7f) | 0x80
			v >>= 7
		}
		for ; w < p.end; w++ {
			body[w] = 0x01 // nop
		}
		st.Forward++
	}
}
