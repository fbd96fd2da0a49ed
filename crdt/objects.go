package crdt

import (
	"math/bits"
	"strings"
	"unsafe"
)

// objectTable holds a replica's objects by identity key (object.key): open addressing
// with linear probing over the keys' textHash, stored in the slots, at most 3/4 full.
// Growing it moves each object by its stored hash, where a Go map hashes every key again
// — in wasm, where the runtime hashes and matches a map's control bytes without vector
// instructions, growing the map was a tenth of the time of a local edit that makes an
// object (W4's edits), and an insertion or a lookup a runtime call.
type objectTable struct {
	slots []objectSlot // a power of two of them, or none
	shift uint         // 64 - log2(len(slots))
	n     int
}

type objectSlot struct {
	hash uint64
	obj  *object // nil: empty
}

// home is the first slot of hash h: its top bits (textHash mixes them all).
func (t *objectTable) home(h uint64) uint64 { return h >> t.shift }

// len returns the number of objects.
func (t *objectTable) len() int { return t.n }

// get returns the object whose key is key, nil if none.
func (t *objectTable) get(key string) *object { return t.find(key, textHash(key)) }

// find is get of a key whose textHash is h.
func (t *objectTable) find(key string, h uint64) *object {
	if len(t.slots) == 0 {
		return nil
	}
	mask := uint64(len(t.slots) - 1)
	for i := t.home(h); ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.obj == nil {
			return nil
		}
		if s.hash == h && textEqual(s.obj.key, key) {
			return s.obj
		}
	}
}

// add inserts o, whose key the table does not hold.
func (t *objectTable) add(o *object) { t.insert(o, textHash(o.key)) }

// insert is add of an object whose key's textHash is h.
func (t *objectTable) insert(o *object, h uint64) {
	t.reserve(1)
	t.put(objectSlot{h, o})
	t.n++
}

// put places s in the first empty slot of its run (there is one: at most 3/4 full).
func (t *objectTable) put(s objectSlot) {
	mask := uint64(len(t.slots) - 1)
	i := t.home(s.hash)
	for t.slots[i].obj != nil {
		i = (i + 1) & mask
	}
	t.slots[i] = s
}

// reserve makes room for n more objects, growing the table once to the size they need.
func (t *objectTable) reserve(n int) {
	need := t.n + n
	if 4*need <= 3*len(t.slots) {
		return
	}
	size := max(16, len(t.slots))
	for 4*need > 3*size {
		size *= 2
	}
	old := t.slots
	t.slots = make([]objectSlot, size)
	t.shift = uint(64 - bits.TrailingZeros(uint(size)))
	for _, s := range old {
		if s.obj != nil {
			t.put(s)
		}
	}
}

// remove takes o out of the table, if there. The objects after it in its run that could
// sit in its slot move back (no tombstone: a lookup still ends at the first empty slot).
func (t *objectTable) remove(o *object) {
	if len(t.slots) == 0 {
		return
	}
	mask := uint64(len(t.slots) - 1)
	i := t.home(textHash(o.key))
	for t.slots[i].obj != o {
		if t.slots[i].obj == nil {
			return
		}
		i = (i + 1) & mask
	}
	for j := i; ; {
		j = (j + 1) & mask
		s := t.slots[j]
		if s.obj == nil {
			break
		}
		// s stays when its home lies cyclically in (i, j]: moved to i, a lookup from its
		// home would pass the emptied slot before reaching it.
		if k := t.home(s.hash); (j-k)&mask < (j-i)&mask {
			continue
		}
		t.slots[i] = s
		i = j
	}
	t.slots[i] = objectSlot{}
	t.n--
}

// each calls f with every object, in no particular order.
func (t *objectTable) each(f func(o *object)) {
	for _, s := range t.slots {
		if s.obj != nil {
			f(s.obj)
		}
	}
}

// sorted returns the objects keep accepts (all if keep is nil), in the order of their keys.
func (t *objectTable) sorted(keep func(o *object) bool) []*object {
	out := make([]*object, 0, t.n)
	for _, s := range t.slots {
		if s.obj != nil && (keep == nil || keep(s.obj)) {
			out = append(out, s.obj)
		}
	}
	sortStable(out, func(a, b *object) int { return strings.Compare(a.key, b.key) })
	return out
}

// objectBlocks hands out the memory of the objects a replica makes (objectFor), a block of
// each kind at a time: objects live as long as the replica (a deleted one stays, with its
// delete), so a block is never kept alive by one object after the others are gone. One
// allocation of a block costs what one object's did, where W4's edits each made an object
// and its text in two (an eighth of such an edit's time natively).
type objectBlocks struct {
	withPaths []objectAlloc // made by an update: room for its first path writes
	plain     []object      // made by an upsert, a delete, a seed or a state answer
	text      []byte        // their keys and metadata texts
}

// A block's length fills one of the runtime's size classes (internal/runtime/gc's table)
// all but a few bytes, counting the 8-byte header the runtime puts before an allocation
// over 512 bytes that holds pointers: 45 objects with room for paths are 9,720 + 8 bytes
// of a 9,728-byte class, 101 plain ones 9,696 + 8. (32 of each, 6,912 + 8 and 3,072 + 8
// bytes, went into 8,192- and 3,200-byte classes: +5.4 bytes per live path in
// BenchmarkMemoryPerPath.)
const (
	withPathsBlockLen = 45
	plainBlockLen     = 101
	objectText        = 4 << 10 // bytes a text block holds; a text over a quarter of it gets its own
)

// object returns a new object with its key and metadata: key and meta copied into one
// text, and room for five path writes when paths is set.
func (b *objectBlocks) object(sub *Subject, key []byte, meta string, paths bool) *object {
	n := len(key) + len(meta)
	var text []byte
	if n > objectText/4 {
		text = make([]byte, n)
	} else {
		if cap(b.text)-len(b.text) < n {
			b.text = make([]byte, 0, objectText)
		}
		text = b.text[len(b.text) : len(b.text)+n : len(b.text)+n]
		b.text = b.text[:len(b.text)+n]
	}
	copy(text[copy(text, key):], meta)
	all := unsafe.String(unsafe.SliceData(text), len(text)) // never written again
	if !paths {
		if len(b.plain) == 0 {
			b.plain = make([]object, plainBlockLen)
		}
		// A block's objects are handed out once, zero: their fields are set in place (an
		// object literal stored whole is a memory.fill and a memory.copy in wasm).
		o := &b.plain[0]
		b.plain = b.plain[1:]
		o.key, o.subject, o.meta = all[:len(key)], sub, all[len(key):]
		return o
	}
	if len(b.withPaths) == 0 {
		b.withPaths = make([]objectAlloc, withPathsBlockLen)
	}
	a := &b.withPaths[0]
	b.withPaths = b.withPaths[1:]
	a.object.key, a.object.subject, a.object.meta = all[:len(key)], sub, all[len(key):]
	a.object.paths = a.paths[:0:len(a.paths)]
	return &a.object
}
