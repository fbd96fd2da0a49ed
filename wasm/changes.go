package main

import (
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
// object. The table is bounded: past maxObjects the next call starts it again from 0.

// UnitSeparator separates the objects of compact changes (see above).
const UnitSeparator = 0x1f

// changeKinds are the kinds in the order of their code (the glue's KINDS).
var changeKinds = [...]crdt.ChangeKind{crdt.Set, crdt.Unset, crdt.Created, crdt.Deleted}

// changeRows writes changes in the compact form and mirrors the caller's table of objects.
type changeRows struct {
	objs  []rowObject               // the caller's table, then the objects of the current call
	index map[*byte]int32           // metadata text address → number in objs
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
			if o := &w.objs[s.n]; len(o.meta) == len(c.Metadata) && o.subject == c.Subject {
				return s.n
			}
		}
	}
	head, ok := w.index[p]
	n := head
	if !ok {
		n, head = -1, -1
	}
	for n >= 0 {
		if o := &w.objs[n]; len(o.meta) == len(c.Metadata) && o.subject == c.Subject {
			break
		}
		n = w.objs[n].prev
	}
	if n < 0 {
		n = int32(len(w.objs))
		w.objs = append(w.objs, rowObject{subject: c.Subject, meta: c.Metadata, prev: head})
		if w.index == nil {
			w.index = make(map[*byte]int32, 64)
		}
		w.index[p] = n
	}
	if w.nseen < linearObjects {
		w.seen[w.nseen] = seenObject{meta: p, n: n}
		w.nseen++
	}
	return n
}

// begin readies the table for a call whose caller holds its first held objects.
func (w *changeRows) begin(held uint32) {
	w.nseen = 0
	if int64(held) < int64(len(w.objs)) { // the caller lacks the rest: forget them
		for i := len(w.objs) - 1; i >= int(held); i-- { // newest first: each is its address's head
			p := unsafe.StringData(w.objs[i].meta)
			if prev := w.objs[i].prev; prev >= 0 {
				w.index[p] = prev
			} else {
				delete(w.index, p)
			}
		}
		clear(w.objs[held:])
		w.objs = w.objs[:held]
	}
	if len(w.objs) >= maxObjects {
		if cap(w.objs) > 2*maxObjects { // a catch-up's thousands of objects
			w.objs = nil
		} else {
			clear(w.objs)
			w.objs = w.objs[:0]
		}
		if len(w.index) > 2*maxObjects {
			w.index = nil
		} else {
			clear(w.index)
		}
	}
}

// appendTo appends changes in the compact form, for a caller whose table holds its
// first held objects (see above).
func (w *changeRows) appendTo(dst []byte, changes []crdt.Change, held uint32) []byte {
	w.begin(held)
	base := len(w.objs)
	dst = append(dst, '[')
	for i := range changes {
		c := &changes[i]
		code := 0
		for k, kind := range changeKinds {
			if c.Kind == kind {
				code = k << 2
			}
		}
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
