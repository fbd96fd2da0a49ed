package main

import (
	"math/bits"
	"unsafe"

	"github.com/mapcrdt/mapcrdt/crdt"
	"github.com/mapcrdt/mapcrdt/hlc"
)

// The changes a call returns cross to JavaScript in a compact form the glue expands
// (parseChanges in jsglue/index.js) into the crdt.Change objects of its .d.ts. Written out
// in full, each change repeats its object's subject and metadata — twice the text of the
// rest of a received change, costing twice to write, to decode from memory and to parse
// (W2: 1.17 MB for 5,000 changes, against 0.54 MB) — and the glue hashed each metadata
// text to find the object it had already parsed. So the caller keeps a table of the
// objects it was sent, each change names its object by number in that table, and an
// object is written only the first time it appears:
//
//	[code,obj,key?,value?,hlc, code,obj,…] US base US subject US metadata US subject US metadata …
//
// code = kind<<2 | 2 if a key follows | 1 if a value follows, with kind 0 set, 1 unset,
// 2 created, 3 deleted (changeKinds); obj is the object's number in the caller's table;
// hlc is "wall:counter:peer"; US is the unit separator 0x1f, which JSON text cannot hold
// raw. The objects after the array are the call's new ones, numbered from base on: the
// caller cuts its table to base entries, then appends them. When the call has no new
// object, nothing follows the array. No changes: [].
//
// The caller says with each call how many objects its table holds (Call.Objects); the
// writer trusts no more than that, so a result the caller never read (an error returned
// after the changes were written, a call that trapped) costs a resend, never a wrong
// object. A caller holding more objects than the writer's table never read the call that
// started the table again (below): it is sent everything again, from 0. The table is bounded: past maxObjects the next call starts it again from 0.

// UnitSeparator separates the objects of compact changes (see above).
const UnitSeparator = 0x1f

// changeKinds are the kinds in the order of their code (the glue's KINDS).
var changeKinds = [...]crdt.ChangeKind{crdt.Set, crdt.Unset, crdt.Created, crdt.Deleted}

// kindCode returns the code of kind, shifted as a change's code holds it (0 for a kind not
// in changeKinds). The engine's kinds are its constants, whose text the linker keeps once:
// the same address is the same kind, without comparing the texts (in wasm, a runtime call
// and a byte loop each).
func kindCode(kind crdt.ChangeKind) int {
	for k, known := range changeKinds {
		if unsafe.StringData(string(kind)) == unsafe.StringData(string(known)) && len(kind) == len(known) {
			return k << 2
		}
	}
	for k, known := range changeKinds {
		if kind == known {
			return k << 2
		}
	}
	return 0
}

// changeRows writes changes in the compact form and mirrors the caller's table of objects.
type changeRows struct {
	objs  []rowObject               // the caller's table, then the objects of the current call
	index addrIndex                 // metadata text address → number in objs
	seen  [linearObjects]seenObject // the current call's first objects, looked up by a scan
	nseen int
}

// rowObject is one object of the table: its subject and metadata text. Two changes are of
// one object when their metadata is the same text in memory (crdt.Change.Metadata is the
// object's own copy) of the same length, for the same subject: an identity that costs no
// hashing of the text. The table holds the text, so its address is not reused while it is
// in the index. The index holds an address's newest object, which links to the others.
type rowObject struct {
	subject string
	meta    string
	prev    int32 // the object before it at the same address (another subject or length), or -1
}

// seenObject is an object the current call already named.
type seenObject struct {
	meta *byte
	n    int32
}

const (
	linearObjects = 8    // a call's objects found by a scan before the index is asked
	maxObjects    = 4096 // the table's bound (a single call may define more)
)

// object returns the number of c's object, adding it to the table if it is new.
func (w *changeRows) object(c *crdt.Change) int32 {
	p := unsafe.StringData(c.Metadata)
	for i := range w.nseen {
		if s := &w.seen[i]; s.meta == p {
			if o := &w.objs[s.n]; len(o.meta) == len(c.Metadata) && sameSubject(o.subject, c.Subject) {
				return s.n
			}
		}
	}
	head := w.index.get(p)
	n := head
	for n >= 0 {
		if o := &w.objs[n]; len(o.meta) == len(c.Metadata) && sameSubject(o.subject, c.Subject) {
			break
		}
		n = w.objs[n].prev
	}
	if n < 0 {
		n = int32(len(w.objs))
		w.objs = append(w.objs, rowObject{subject: c.Subject, meta: c.Metadata, prev: head})
		w.index.set(p, n)
	}
	if w.nseen < linearObjects {
		w.seen[w.nseen] = seenObject{meta: p, n: n}
		w.nseen++
	}
	return n
}

// sameSubject is a == b, at once when they share memory (a subject's name is one string).
func sameSubject(a, b string) bool {
	return len(a) == len(b) && (unsafe.StringData(a) == unsafe.StringData(b) || a == b)
}

// begin readies the table for a call whose caller holds its first held objects.
func (w *changeRows) begin(held uint32) {
	w.nseen = 0
	if n := int64(len(w.objs)); int64(held) != n && n > 0 {
		// Fewer: the caller lacks the rest (it never read the call that added them): forget
		// them. More: the table started again (past maxObjects, below) in a call the caller
		// never read, so what it holds is the table of before, none of it this one's (the
		// table only ever shrinks to what the caller holds, or to 0): forget it all.
		if int64(held) > n {
			held = 0
		}
		clear(w.objs[held:])
		w.objs = w.objs[:held]
		w.index.reset(len(w.objs))
		for i := range w.objs { // in order: the newest object at an address is its head
			w.index.set(unsafe.StringData(w.objs[i].meta), int32(i))
		}
	}
	if len(w.objs) >= maxObjects {
		if cap(w.objs) > 2*maxObjects { // a catch-up's thousands of objects
			w.objs = nil
		} else {
			clear(w.objs)
			w.objs = w.objs[:0]
		}
		w.index.reset(0)
	}
}

// addrIndex is the table's index: numbers by text address, open addressing with linear
// probing, at most half full — a few inlined instructions where a Go map costs a runtime
// call that in wasm matches its control bytes one at a time. It has no removal: the table
// rebuilds it when it shrinks (rare: after a lost result, or past maxObjects).
type addrIndex struct {
	slots []addrSlot // a power of two of them, or none
	shift uint       // 64 - log2(len(slots))
	n     int
}

type addrSlot struct {
	p *byte // nil: empty
	n int32
}

// at returns the slot of p: the one holding it, or the empty one where it would go.
func (x *addrIndex) at(p *byte) *addrSlot {
	mask := uintptr(len(x.slots) - 1)
	for i := uintptr(uint64(uintptr(unsafe.Pointer(p)))*0x9e3779b97f4a7c15>>x.shift) & mask; ; i = (i + 1) & mask {
		if s := &x.slots[i]; s.p == p || s.p == nil {
			return s
		}
	}
}

// get returns the number of p, -1 if none.
func (x *addrIndex) get(p *byte) int32 {
	if len(x.slots) == 0 {
		return -1
	}
	if s := x.at(p); s.p != nil {
		return s.n
	}
	return -1
}

// set makes n the number of p.
func (x *addrIndex) set(p *byte, n int32) {
	if 2*(x.n+1) > len(x.slots) {
		old := x.slots
		x.alloc(max(64, 2*len(old)))
		for _, s := range old {
			if s.p != nil {
				*x.at(s.p) = s
				x.n++
			}
		}
	}
	s := x.at(p)
	if s.p == nil {
		x.n++
	}
	*s = addrSlot{p: p, n: n}
}

// reset empties the index, with room for n entries.
func (x *addrIndex) reset(n int) {
	size := 64
	for size < 2*n {
		size *= 2
	}
	if len(x.slots) >= size && len(x.slots) <= 4*maxObjects {
		clear(x.slots) // keep the room (up to the bound's)
		x.n = 0
		return
	}
	x.alloc(size)
}

// alloc replaces the slots by size empty ones (a power of two).
func (x *addrIndex) alloc(size int) {
	x.slots = make([]addrSlot, size)
	x.shift = uint(64 - bits.TrailingZeros(uint(size)))
	x.n = 0
}

// changesSize is about what changes take in the compact form, a little more rather than
// less: a change's key, value and clock with its separators, and its object's text when it
// is not the previous change's.
func changesSize(changes []crdt.Change) int {
	n := 16
	var meta string
	for i := range changes {
		c := &changes[i]
		n += len(c.Key) + len(c.Value) + len(c.HLC.Peer) + 40
		if unsafe.StringData(c.Metadata) != unsafe.StringData(meta) {
			meta = c.Metadata
			n += len(c.Subject) + len(meta) + 2
		}
	}
	return n
}

// appendTo appends changes in the compact form, for a caller whose table holds its
// first held objects (see above).
func (w *changeRows) appendTo(dst []byte, changes []crdt.Change, held uint32) []byte {
	w.begin(held)
	base := len(w.objs)
	dst = append(dst, '[')
	for i := range changes {
		c := &changes[i]
		code := kindCode(c.Kind)
		if c.Key != "" {
			code |= 2
		}
		if c.Value != "" {
			code |= 1
		}
		if code >= 10 { // code < 16
			dst = append(dst, '1')
			code -= 10
		}
		dst = append(dst, byte('0'+code), ',')
		dst = hlc.AppendDecimal(dst, uint64(w.object(c))) // < 2³¹
		dst = append(dst, ',')
		if c.Key != "" {
			dst = crdt.AppendJSONString(dst, c.Key)
			dst = append(dst, ',')
		}
		if c.Value != "" {
			dst = append(dst, c.Value...)
			dst = append(dst, ',')
		}
		dst = append(dst, '"')
		dst = c.HLC.AppendText(dst)
		dst = append(dst, `",`...)
	}
	if len(changes) > 0 {
		dst = dst[:len(dst)-1] // the last change's comma
	}
	dst = append(dst, ']')
	if base < len(w.objs) {
		dst = append(dst, UnitSeparator)
		dst = hlc.AppendDecimal(dst, uint64(base))
		for _, o := range w.objs[base:] {
			dst = append(dst, UnitSeparator)
			dst = append(dst, o.subject...)
			dst = append(dst, UnitSeparator)
			dst = append(dst, o.meta...)
		}
	}
	return dst
}
