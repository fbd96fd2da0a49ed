// Command jumps rewrites the jumps of a Go-built WebAssembly module into direct branches.
// make build runs it on the module:
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
// The engine runs each as a loop back-edge and an indirect branch through the table. This
// command writes them as structured WebAssembly instead:
//
//   - A forward jump's target block is still open where the jump is (block K ends right
//     where block K's code starts, and the code of every block before it lies inside it):
//     the jump becomes the one instruction `br` to the end of block K.
//   - A loop as Go lays it out (loop rotation: the body's blocks first, then the header,
//     which tests the condition and jumps back to the body) has a back-edge that is a
//     backward jump, which no `br` can make: a `br` leaves blocks forward or goes back to
//     the start of a `loop`. When the code from the back-edge's target up to the header
//     (the region: one or more blocks' code) is no larger than maxCopy bytes, the header's
//     code is wrapped in a `loop` and the back-edge replaced by a copy of the region
//     followed by a branch to that loop's start (the header): the loop then runs without
//     the table. The region's own code stays where it was for anything else that jumps to
//     it.
//
// Other backward jumps stay as they are.
//
// # Why it is safe
//
// A rewritten jump runs the code the br_table would have run: the only difference is that
// PC_B is not set to K, and a function is rewritten only if nothing but the br_table reads
// PC_B (no other local.get 0), nothing but the openings of its blocks stands between the
// loop's start and the br_table (a branch to the loop runs nothing else), and the br_table
// goes only to those blocks. A copied body runs what the body would have: the code is the
// same, its branches go to the same places (a jump to the header, the start of the new
// loop), and a call in it stores the same return point, so a goroutine switch inside resumes
// where the original would. A function whose shape is not Go's (no such loop and br_table),
// or that holds an instruction the decoder does not know, is left as it is.
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
	fmt.Printf("jumps: %d of %d functions in Go's shape; %d forward jumps made direct, %d loops run without the table (%d bytes copied), %d backward jumps left\n",
		st.Shaped, st.Functions, st.Forward, st.Loops, st.Copied, st.Backward)
}

// Stats counts what Rewrite found and changed.
type Stats struct {
	Functions int // function bodies in the module
	Shaped    int // bodies in Go's shape (a loop around a br_table on local 0), rewritten
	Forward   int // forward jumps made direct branches
	Loops     int // back-edges replaced by a copy of the loop's body and a branch
	Copied    int // bytes of loop bodies copied
	Backward  int // backward jumps left as they were
}

// maxCopy is the largest loop body, in bytes, copied into its header.
const maxCopy = 256

// errFormat is returned for a module whose sections cannot be read.
var errFormat = errors.New("not a WebAssembly module this command reads")

// Rewrite returns the module with the jumps of its Go-shaped functions rewritten (see the
// package comment), and what it did. The input is not modified.
func Rewrite(mod []byte) ([]byte, Stats, error) {
	var st Stats
	if len(mod) < 8 || string(mod[:4]) != "\x00asm" || mod[4] != 1 {
		return nil, st, errFormat
	}
	out := append([]byte(nil), mod[:8]...)
	r := reader{b: mod, i: 8}
	for r.i < len(mod) {
		id := r.byte()
		size := int(r.u32())
		if r.err || size > len(mod)-r.i {
			return nil, st, errFormat
		}
		end := r.i + size
		content := mod[r.i:end]
		if id == 10 { // the code section
			c := reader{b: content}
			n := int(c.u32())
			code := appendU32(nil, uint32(n))
			for k := 0; k < n; k++ {
				bodySize := int(c.u32())
				if c.err || bodySize > len(content)-c.i {
					return nil, st, errFormat
				}
				st.Functions++
				body := rewriteBody(content[c.i:c.i+bodySize], &st)
				code = appendU32(code, uint32(len(body)))
				code = append(code, body...)
				c.i += bodySize
			}
			if c.err || c.i != len(content) {
				return nil, st, errFormat
			}
			content = code
		}
		out = append(out, id)
		out = appendU32(out, uint32(len(content)))
		out = append(out, content...)
		r.i = end
	}
	return out, st, nil
}

func appendU32(b []byte, v uint32) []byte {
	for v >= 0x80 {
		b = append(b, byte(v&0x7f)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
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

const (
	opBlock, opLoop, opIf, opEnd = 0x02, 0x03, 0x04, 0x0b
	opBr, opBrIf, opBrTable      = 0x0c, 0x0d, 0x0e
	opLocalGet, opLocalSet       = 0x20, 0x21
	opI32Const                   = 0x41
)

// inst is one decoded instruction.
type inst struct {
	start, end int   // its bytes in the body
	op         byte  // the opcode
	frame      int   // block, loop, if: the label it opens; end: the one it closes; else -1
	targets    []int // br, br_if, br_table: the labels it goes to (br_table: the default last)
	k          int64 // i32.const: its value
}

// function is a decoded body.
type function struct {
	body     []byte
	code     int // where the instructions start (after the locals)
	insts    []inst
	loop     int          // the label of Go's loop (the first loop)
	table    []int        // PC_B → the label the br_table goes to; the default last
	ends     map[int]int  // a label → the index of the end that closes it
	dispatch map[int]bool // the br_table's blocks
}

// decode reads a body; ok is false if it is not in Go's shape or holds an instruction the
// decoder does not know.
func decode(body []byte) (f *function, ok bool) {
	r := reader{b: body}
	for n := r.u32(); n > 0 && !r.err; n-- { // the locals: count, type
		r.u32()
		r.byte()
	}
	f = &function{body: body, code: r.i, loop: -1, ends: map[int]int{}}
	var stack []int
	next := 0
	gets0 := 0
	loopAt := -1 // the index of Go's loop
	label := func(d uint32) int {
		if int(d) >= len(stack) {
			r.err = true
			return -1
		}
		return stack[len(stack)-1-int(d)]
	}
	for r.i < len(body) && !r.err {
		in := inst{start: r.i, frame: -1}
		in.op = r.byte()
		switch op := in.op; {
		case op == opBlock || op == opIf || op == opLoop:
			r.blockType()
			in.frame = next
			if op == opLoop {
				if f.loop < 0 {
					f.loop = next
					loopAt = len(f.insts)
				}
			}
			stack = append(stack, next)
			next++
		case op == 0x05: // else: the same label
		case op == opEnd:
			if len(stack) > 0 {
				in.frame = stack[len(stack)-1]
				f.ends[in.frame] = len(f.insts)
				stack = stack[:len(stack)-1]
			}
		case op == opBr || op == opBrIf:
			in.targets = []int{label(r.u32())}
		case op == opBrTable:
			n := r.u32()
			if n > 1<<16 {
				return nil, false
			}
			for j := uint32(0); j <= n && !r.err; j++ {
				in.targets = append(in.targets, label(r.u32()))
			}
			// Go's: the first br_table, on local 0, at the head of the loop — nothing but the
			// openings of the blocks it goes to between the loop's start and it, so that a
			// branch to the loop runs the br_table and nothing else — and going only to
			// those blocks.
			if f.table == nil && f.loop >= 0 {
				n := len(f.insts)
				nest := map[int]bool{}
				for j := loopAt + 1; j < n-1 && f.insts[j].op == opBlock; j++ {
					nest[f.insts[j].frame] = true
				}
				p := f.insts[n-1]
				if p.op != opLocalGet || p.end-p.start != 2 || body[p.start+1] != 0 || len(nest) != n-2-loopAt {
					return nil, false
				}
				for _, t := range in.targets {
					if !nest[t] {
						return nil, false
					}
				}
				f.table = in.targets
				gets0-- // that local.get 0 is the br_table's own
			}
		case op == 0x00 || op == 0x01 || op == 0x0f || op == 0x1a || op == 0x1b || (op >= 0x45 && op <= 0xc4):
			// no immediate: unreachable, nop, return, drop, select, numeric and sign-extension
		case op == 0x10: // call
			r.u32()
		case op == 0x11: // call_indirect
			r.u32()
			r.u32()
		case op == opLocalGet:
			if r.u32() == 0 {
				gets0++
			}
		case op >= opLocalSet && op <= 0x24: // local.set, local.tee, global.get, global.set
			r.u32()
		case op >= 0x28 && op <= 0x3e: // loads and stores: align, offset
			r.u32()
			r.u32()
		case op == 0x3f || op == 0x40: // memory.size, memory.grow
			r.byte()
		case op == opI32Const:
			in.k = r.s64()
		case op == 0x42: // i64.const
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
				return nil, false // not an instruction Go emits
			}
		default:
			return nil, false
		}
		in.end = r.i
		f.insts = append(f.insts, in)
	}
	if r.err || r.i != len(body) || len(stack) != 0 || f.table == nil || gets0 != 0 {
		return nil, false
	}
	f.dispatch = map[int]bool{}
	for _, t := range f.table {
		f.dispatch[t] = true
	}
	return f, true
}

// jumpAt reports whether insts[i:i+3] is Go's jump (i32.const K; local.set 0; br to the
// loop), and the label of the block it goes to.
func (f *function) jumpAt(i int) (target int, ok bool) {
	if i+2 >= len(f.insts) {
		return 0, false
	}
	c, s, b := f.insts[i], f.insts[i+1], f.insts[i+2]
	if c.op != opI32Const || s.op != opLocalSet || s.end-s.start != 2 || f.body[s.start+1] != 0 ||
		b.op != opBr || b.targets[0] != f.loop || c.k < 0 {
		return 0, false
	}
	if c.k < int64(len(f.table)-1) {
		return f.table[c.k], true
	}
	return f.table[len(f.table)-1], true
}

// segment returns the instructions of the code of block t (those after the end that
// closes t, up to the next end of one of the br_table's blocks or of the loop), as
// [from, to).
func (f *function) segment(t int, dispatch map[int]bool) (from, to int) {
	from = f.ends[t] + 1
	to = from
	for to < len(f.insts) {
		in := f.insts[to]
		if in.op == opEnd && (dispatch[in.frame] || in.frame == f.loop) {
			break
		}
		to++
	}
	return from, to
}

// loopPlan is a loop rewritten: the header's code is wrapped in a new loop, and the
// back-edge at insts[edge] replaced by a copy of insts[bodyFrom:bodyTo] and a branch.
type loopPlan struct {
	header           int // the label whose end starts the header's code
	edge             int // the back-edge's first instruction
	bodyFrom, bodyTo int // the region copied: insts[bodyFrom:bodyTo]
	id               int // the new loop's label
}

// rewriteBody returns the body rewritten (see Rewrite), or as it is.
func rewriteBody(body []byte, st *Stats) []byte {
	f, ok := decode(body)
	if !ok {
		return body
	}
	st.Shaped++
	dispatch := f.dispatch
	// The segment each instruction is in: the last br_table block closed before it.
	seg := make([]int, len(f.insts))
	cur := -1
	for i, in := range f.insts {
		seg[i] = cur
		if in.op == opEnd && dispatch[in.frame] {
			cur = in.frame
		}
	}
	// Loops: a back-edge in the header's code (the first one of each header), to a block
	// whose code and the code of the blocks after it up to the header's (the region) take
	// at most maxCopy bytes.
	plans := map[int]*loopPlan{}    // by the back-edge's index
	byHeader := map[int]*loopPlan{} // by the header's label: one loop per header
	nextID := len(f.insts) + 1      // labels for the new loops (above every decoded one)
	for i := range f.insts {
		t, ok := f.jumpAt(i)
		if !ok || f.ends[t] > i || seg[i] < 0 || byHeader[seg[i]] != nil {
			continue
		}
		h := seg[i]
		// The region: the code of the blocks from the back-edge's target up to the header.
		bFrom, _ := f.segment(t, dispatch)
		bTo := f.ends[h]
		if bFrom >= bTo || f.insts[bTo-1].end-f.insts[bFrom].start > maxCopy {
			continue
		}
		p := &loopPlan{header: h, edge: i, bodyFrom: bFrom, bodyTo: bTo, id: nextID}
		nextID++
		plans[i] = p
		byHeader[h] = p
	}
	e := emitter{f: f, out: append([]byte(nil), body[:f.code]...), st: st}
	e.run(0, len(f.insts), plans, byHeader, nil)
	return e.out
}

// emitter writes a function's instructions with their branches rewritten.
type emitter struct {
	f     *function
	out   []byte
	stack []int // the labels open where the next instruction goes
	st    *Stats
}

func (e *emitter) depth(label int) (int, bool) {
	for i := len(e.stack) - 1; i >= 0; i-- {
		if e.stack[i] == label {
			return len(e.stack) - 1 - i, true
		}
	}
	return 0, false
}

// run writes insts[from:to]. In a copy of a loop body, rename maps its own labels to the
// copy's, and a jump to the header (renamed too) goes to the new loop's start.
func (e *emitter) run(from, to int, plans map[int]*loopPlan, byHeader map[int]*loopPlan, rename map[int]int) {
	f := e.f
	inCopy := rename != nil
	name := func(l int) int {
		if n, ok := rename[l]; ok {
			return n
		}
		return l
	}
	var open *loopPlan // the loop whose header's code is being written
	for i := from; i < to; i++ {
		in := f.insts[i]
		if p := plans[i]; p != nil && !inCopy {
			// The back-edge: the region, then back to the header. The region's own blocks
			// (the br_table's, between its blocks' code) are opened first, outermost first,
			// under labels of the copy.
			copyNames := map[int]int{p.header: p.id}
			var inner []int
			for j := p.bodyFrom; j < p.bodyTo; j++ {
				if in := f.insts[j]; in.op == opEnd && f.dispatch[in.frame] {
					inner = append(inner, in.frame)
				}
			}
			for j := len(inner) - 1; j >= 0; j-- {
				e.out = append(e.out, opBlock, 0x40)
				l := -2 - len(e.stack)
				copyNames[inner[j]] = l
				e.stack = append(e.stack, l)
			}
			e.run(p.bodyFrom, p.bodyTo, plans, byHeader, copyNames)
			d, _ := e.depth(p.id)
			e.out = appendU32(append(e.out, opBr), uint32(d))
			e.st.Loops++
			e.st.Copied += f.insts[p.bodyTo-1].end - f.insts[p.bodyFrom].start
			i += 2
			continue
		}
		if t, ok := f.jumpAt(i); ok {
			// A jump to a block still open (forward), or, in a copy, to the header (the new
			// loop's start): one br.
			if d, ok := e.depth(name(t)); ok {
				e.out = appendU32(append(e.out, opBr), uint32(d))
				if !inCopy {
					e.st.Forward++
				}
				i += 2
				continue
			}
			if !inCopy {
				e.st.Backward++
			}
			// Left to the table: written as it is, with its br's depth for where it is.
		}
		switch in.op {
		case opBlock, opLoop, opIf:
			e.out = append(e.out, f.body[in.start:in.end]...)
			l := in.frame
			if inCopy {
				l = -2 - len(e.stack) // a label of the copy's own: nothing outside names it
				rename[in.frame] = l
			}
			e.stack = append(e.stack, l)
			continue
		case opEnd:
			if inCopy {
				e.out = append(e.out, opEnd)
				e.stack = e.stack[:len(e.stack)-1]
				continue
			}
			if open != nil && (in.frame == f.loop || f.dispatch[in.frame]) {
				e.out = append(e.out, opEnd) // the new loop ends with its header's code
				e.stack = e.stack[:len(e.stack)-1]
				open = nil
			}
			e.out = append(e.out, opEnd)
			if len(e.stack) > 0 {
				e.stack = e.stack[:len(e.stack)-1]
			}
			if p := byHeader[in.frame]; p != nil {
				e.out = append(e.out, opLoop, 0x40) // the header's code starts: the new loop
				e.stack = append(e.stack, p.id)
				open = p
			}
			continue
		case opBr, opBrIf, opBrTable:
			e.out = append(e.out, in.op)
			if in.op == opBrTable {
				e.out = appendU32(e.out, uint32(len(in.targets)-1))
			}
			for _, t := range in.targets {
				d, ok := e.depth(name(t))
				if !ok {
					panic(fmt.Sprintf("jumps: a branch to label %d, not open", t))
				}
				e.out = appendU32(e.out, uint32(d))
			}
			continue
		}
		e.out = append(e.out, f.body[in.start:in.end]...)
	}
}
