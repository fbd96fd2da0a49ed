package main

import (
	"unsafe"

	"github.com/mapcrdt/mapcrdt/crdt"
	"github.com/mapcrdt/mapcrdt/hlc"
)

// The changes a call returns cross to JavaScript in a compact form the glue expands
// (parseChanges in jsglue/index.js) into the crdt.Change objects of its .d.ts. A catch-up
// returns thousands of changes to a few hundred objects; written out in full, each repeats
// its object's metadata, and the text is twice the size, costing twice to write, to decode
// from memory and to JSON.parse (W2: 1.17 MB for 5,000 changes, against 0.54 MB). So each
// object is written once, after the changes, and each change names it by index:
//
//	[code,obj,key?,value?,hlc, code,obj,…] US subject0 US metadata0 US subject1 US metadata1 …
//
// code = kind<<2 | 2 if a key follows | 1 if a value follows, with kind 0 set, 1 unset,
// 2 created, 3 deleted (changeKinds); obj is the object's index in the list that follows
// the array; hlc is "wall:counter:peer"; US is the unit separator 0x1f, which JSON text
// cannot hold raw. No changes: []. The metadata are texts outside the array so that the
// glue parses each distinct one once and keeps the object (metadataOf): building a
// metadata object is half of what JSON.parse spends on one received change. The changes
// of one object share one metadata object in JavaScript, across calls too.

// UnitSeparator separates the objects of compact changes (see above).
const UnitSeparator = 0x1f

// changeKinds are the kinds in the order of their code (the glue's KINDS).
var changeKinds = [...]crdt.ChangeKind{crdt.Set, crdt.Unset, crdt.Created, crdt.Deleted}

// changeRows writes changes in the compact form, remembering the objects of the call.
type changeRows struct {
	objs  []rowObject
	index map[*byte]int32 // metadata text address → index in objs, past linearObjects
}

// rowObject is one object of the call: its subject and metadata text. Two changes are of
// one object when their metadata is the same text in memory (crdt.Change.Metadata is the
// object's own copy), an identity that costs no hashing of the text.
type rowObject struct {
	subject string
	meta    string
}

const (
	linearObjects = 8   // objects looked up by a scan; more by the index
	keptObjects   = 256 // the room for objects kept between calls
)

// object returns the index of c's object, adding it if it is new.
func (w *changeRows) object(c *crdt.Change) int32 {
	p := unsafe.StringData(c.Metadata)
	if len(w.objs) <= linearObjects {
		for i := range w.objs {
			if o := &w.objs[i]; unsafe.StringData(o.meta) == p && len(o.meta) == len(c.Metadata) && o.subject == c.Subject {
				return int32(i)
			}
		}
	} else if i, ok := w.index[p]; ok {
		if o := &w.objs[i]; len(o.meta) == len(c.Metadata) && o.subject == c.Subject {
			return i
		}
	}
	n := int32(len(w.objs))
	w.objs = append(w.objs, rowObject{subject: c.Subject, meta: c.Metadata})
	if len(w.objs) > linearObjects {
		if w.index == nil {
			w.index = make(map[*byte]int32, 64)
		}
		if len(w.objs) == linearObjects+1 { // the scan's objects, now indexed
			for i := range w.objs[:linearObjects] {
				w.index[unsafe.StringData(w.objs[i].meta)] = int32(i)
			}
		}
		w.index[p] = n
	}
	return n
}

// appendTo appends changes in the compact form. It keeps no reference to them.
func (w *changeRows) appendTo(dst []byte, changes []crdt.Change) []byte {
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
	for _, o := range w.objs {
		dst = append(dst, UnitSeparator)
		dst = append(dst, o.subject...)
		dst = append(dst, UnitSeparator)
		dst = append(dst, o.meta...)
	}
	// No replica's text is kept alive between calls, nor a catch-up's thousands of
	// objects.
	if cap(w.objs) > keptObjects {
		w.objs = nil
	} else {
		clear(w.objs)
		w.objs = w.objs[:0]
	}
	if len(w.index) > keptObjects {
		w.index = nil
	} else if len(w.index) > 0 {
		clear(w.index)
	}
	return dst
}
