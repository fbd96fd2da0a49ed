package crdt

import "math/bits"

// table64 maps nonzero 64-bit keys to values: open addressing with linear probing, at
// most half full, no removal, so a lookup ends at its key or at an empty slot. The replica
// looks up its indexes (objects by metadata hash, key texts by path) on every operation;
// a Go map costs a runtime call there, which in Go's wasm port matches its control bytes
// one at a time, where this is a few inlined instructions.
type table64[V any] struct {
	slots []slot64[V] // a power of two of them, or none
	shift uint        // 64 - log2(len(slots))
	n     int
}

type slot64[V any] struct {
	key uint64 // 0: empty
	val V
}

// home is the first slot of key k: the top bits of a multiplicative hash, good for keys
// that differ only in their low bits (addresses) as for hashes.
func (t *table64[V]) home(k uint64) uint64 { return k * 0x9e3779b97f4a7c15 >> t.shift }

// get returns the value of key k (nonzero), nil if none.
func (t *table64[V]) get(k uint64) *V {
	if len(t.slots) == 0 {
		return nil
	}
	mask := uint64(len(t.slots) - 1)
	for i := t.home(k); ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.key == k {
			return &s.val
		}
		if s.key == 0 {
			return nil
		}
	}
}

// add gives key k (nonzero) the value v unless k has one; it reports whether it did.
func (t *table64[V]) add(k uint64, v V) bool {
	if 2*(t.n+1) > len(t.slots) {
		old := t.slots
		size := max(16, 2*len(old))
		t.slots = make([]slot64[V], size)
		t.shift = uint(64 - bits.TrailingZeros(uint(size)))
		t.n = 0
		for i := range old {
			if old[i].key != 0 {
				t.add(old[i].key, old[i].val)
			}
		}
	}
	mask := uint64(len(t.slots) - 1)
	for i := t.home(k); ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.key == k {
			return false
		}
		if s.key == 0 {
			*s = slot64[V]{key: k, val: v}
			t.n++
			return true
		}
	}
}
