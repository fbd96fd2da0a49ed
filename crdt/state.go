package crdt

import (
	"slices"
	"unsafe"

	"github.com/mapcrdt/mapcrdt/hlc"
)

// The state is the replay rule of DESIGN §4 kept incrementally. Each object holds:
//
//   - root: the newest whole-object write (an upsert, a delete, or the seeded base value);
//   - paths: the path writes newer than root that nothing newer has covered.
//
// Invariant: along any chain of paths (a, a.b, a.b.c) the stamps of the writes kept strictly
// increase downwards, and every kept path write is newer than root. A write arriving older
// than a kept write at its own path or above it is superseded on arrival; a write that
// arrives newer removes the kept writes at and below its path. The visible value is then the
// root value with the kept path writes applied in stamp order — which is exactly what
// replaying every operation in clock order gives, because every write dropped would have
// been overwritten in that replay.

// object is one map, datalayer, feature … known to the replica.
type object struct {
	// What a write reads first, together (48 bytes: one cache line for half the objects).
	subject *Subject    //
	root    write       // newest upsert/delete/base; op == nil means none: alive with {}
	paths   []pathWrite // path writes newer than root (see the invariant above)

	key     string // identity: subject and id fields, NUL-separated
	meta    string // canonical metadata, as last seen
	trkGen  uint32 // the tracker call lastSpot belongs to (see tracker.add)
	lastSpt int32  // that call's last spot on the object, +1
	known   bool   // committed: in Replica.objects (not pending)
}

// objectAlloc is an object allocated with room for its first path writes, made when an
// update makes the object (objectFor): a uMap feature holds a few keys (name,
// description, geometry, options…), and this is one object (216 bytes, taken from a
// block of them: objectBlocks) where the object, an array of 4 path writes and, at the
// fifth key, one of 8 were three allocations (96 + 96 + 192 bytes, the second garbage).
// An object made by an upsert, a delete or a seed keeps the plain layout: most never get
// a path write.
type objectAlloc struct {
	object
	paths [5]pathWrite
}

// pathWrite is a path write kept in the state, with its path at hand: the operation lies
// elsewhere in memory, and reading it for each kept write of an object on every write
// cost a cache miss each. 24 bytes, as a write with a []string would cost 40.
type pathWrite struct {
	op    *op
	sub   int32
	n     int32   // len(path)
	first *string // &path[0] (paths of updates have at least one part)
}

func keep(w write) pathWrite {
	p := w.target().path
	return pathWrite{op: w.op, sub: w.sub, n: int32(len(p)), first: unsafe.SliceData(p)}
}

// w returns the write.
func (k pathWrite) w() write { return write{op: k.op, sub: k.sub} }

// path returns the write's key path (the target's).
//
// The slice is put together as its header, not with unsafe.Slice, whose check of
// len × size for overflow is a call of the runtime in wasm (MulUintptr is an intrinsic
// natively only) on every kept write an object's write looks at: n is a path's length.
func (k pathWrite) path() []string {
	h := sliceHeader{data: unsafe.Pointer(k.first), len: int(k.n), cap: int(k.n)}
	return *(*[]string)(unsafe.Pointer(&h))
}

// sliceHeader is the layout of a slice.
type sliceHeader struct {
	data     unsafe.Pointer
	len, cap int
}

// write is one write of an operation kept in the state.
type write struct {
	op  *op   // the top-level operation (its clock), or a synthetic base op
	sub int32 // 0: op itself; i: op.subOps()[i-1]
}

func (w write) target() *op {
	if w.sub == 0 {
		return w.op
	}
	return w.op.subOps()[w.sub-1]
}

func (w write) ts() hlc.Timestamp { return w.op.ts }

// compareWrites orders writes by clock, then by index inside a batch.
func compareWrites(a, b write) int {
	if c := a.op.ts.Compare(b.op.ts); c != 0 {
		return c
	}
	switch {
	case a.sub < b.sub:
		return -1
	case a.sub > b.sub:
		return 1
	}
	return 0
}

// alive reports whether the object is visible (not deleted).
func (o *object) alive() bool { return o.root.op == nil || o.root.target().verb != VerbDelete }

// exists reports whether the object has anything written (it appears in dumps if alive).
func (o *object) exists() bool { return o.root.op != nil || len(o.paths) > 0 }

// apply adds one write, returning whether it was kept (false: superseded or duplicate).
// Writes it covers are released (their op's live count drops).
func (o *object) apply(w write) bool {
	t := w.target()
	if t.verb != VerbUpdate { // whole-object write
		if o.root.op != nil {
			c := compareWrites(w, o.root)
			reseed := w.op.ts.IsZero() && o.root.op.ts.IsZero()
			if c < 0 || (c == 0 && !reseed) {
				return false
			}
		}
		release(o.root)
		o.root = w
		kept := o.paths[:0]
		for _, p := range o.paths {
			if compareWrites(p.w(), w) > 0 {
				kept = append(kept, p)
			} else {
				release(p.w())
			}
		}
		clear(o.paths[len(kept):])
		o.paths = kept
		w.op.live++
		return true
	}
	if o.covered(w, t.path) {
		return false
	}
	path := t.path
	kept := o.paths[:0]
	for _, p := range o.paths {
		if hasPrefix(p.path(), path) && compareWrites(p.w(), w) < 0 { // at or below and older: covered
			release(p.w())
			continue
		}
		kept = append(kept, p)
	}
	clear(o.paths[len(kept):])
	if kept == nil {
		kept = make([]pathWrite, 0, 4) // a feature's few keys: one allocation, not three
	}
	o.paths = append(kept, keep(w))
	w.op.live++
	return true
}

// setAt is apply for a set w at path (and, before it, valueAt(path) if read is true) on an
// alive object that keeps no write strictly above or below path: one reading of the kept
// writes. ok false: the object is not so (nothing done, nothing read). Otherwise kept is
// what apply would return, and before and present what valueAt(path) gave before w (when
// read; a kept write's value is at hand, the root's is looked up).
func (o *object) setAt(w write, path []string, read bool) (before string, present, kept, ok bool) {
	if !o.alive() {
		return "", false, false, false
	}
	same := -1
	for i, p := range o.paths {
		switch wp := p.path(); {
		case len(wp) == len(path):
			if equalPath(wp, path) {
				same = i
			}
		case len(wp) < len(path):
			if hasPrefix(path, wp) {
				return "", false, false, false // a write above
			}
		case hasPrefix(wp, path):
			return "", false, false, false // a write below
		}
	}
	if o.root.op != nil && compareWrites(o.root, w) >= 0 {
		return "", false, false, true // superseded on arrival
	}
	if same >= 0 {
		old := o.paths[same].w()
		if compareWrites(old, w) >= 0 {
			return "", false, false, true // superseded on arrival (or a duplicate)
		}
		before = old.target().value
		release(old)
		// Removed from its place and w appended, as apply's filter and append leave them.
		n := len(o.paths)
		copy(o.paths[same:], o.paths[same+1:])
		o.paths[n-1] = keep(w)
	} else {
		if read {
			var found bool
			if before, found = lookup(o.rootValue(), path); !found {
				before = ""
			}
		}
		if o.paths == nil {
			o.paths = make([]pathWrite, 0, 4) // as apply makes it
		}
		o.paths = append(o.paths, keep(w))
	}
	w.op.live++
	return before, before != "", true, true
}

// covered reports whether the path write w (at path) would be superseded on arrival: the
// root or a kept write at or above path is newer (or is w itself).
func (o *object) covered(w write, path []string) bool {
	if o.root.op != nil && compareWrites(o.root, w) >= 0 {
		return true
	}
	for _, p := range o.paths {
		if hasPrefix(path, p.path()) && compareWrites(p.w(), w) >= 0 {
			return true
		}
	}
	return false
}

// keeps reports whether applying w would keep it (apply would return true), without
// changing anything.
func (o *object) keeps(w write) bool {
	t := w.target()
	if t.verb != VerbUpdate {
		if o.root.op == nil {
			return true
		}
		c := compareWrites(w, o.root)
		return c > 0 || (c == 0 && w.op.ts.IsZero() && o.root.op.ts.IsZero())
	}
	return !o.covered(w, t.path)
}

func release(w write) {
	if w.op != nil {
		w.op.live--
	}
}

// rootValue returns the whole-object value before path writes: the root's value or {}.
func (o *object) rootValue() string {
	if o.root.op == nil {
		return "{}"
	}
	return o.root.target().value
}

// value returns the visible canonical value of the object and whether it is alive.
func (o *object) value() (string, bool) {
	if !o.alive() {
		return "", false
	}
	if len(o.paths) == 0 {
		return o.rootValue(), true
	}
	t := &jtree{raw: o.rootValue()}
	for _, w := range o.sortedPaths() {
		applyTo(t, w.target(), w.target().path)
	}
	return t.String(), true
}

func (o *object) sortedPaths() []write {
	ws := make([]write, len(o.paths))
	for i, p := range o.paths {
		ws[i] = p.w()
	}
	slices.SortFunc(ws, compareWrites)
	return ws
}

func applyTo(t *jtree, w *op, path []string) {
	if w.value == "" {
		t.unset(path)
	} else {
		t.set(path, w.value)
	}
}

// valueAt returns the visible value at path (nil: the whole object) and whether it is
// present. A deleted object has nothing present.
func (o *object) valueAt(path []string) (string, bool) {
	v, ok, _, _ := o.valueAtFrom(path)
	return v, ok
}

// valueAtFrom is valueAt that also says where the value comes from: one says it comes
// from one kept write, from (the root's, the path's, or an ancestor's; from.op nil when
// the object holds none); otherwise it is made of several (the whole object, or writes
// below path).
func (o *object) valueAtFrom(path []string) (v string, ok bool, from write, one bool) {
	if len(path) == 0 {
		v, ok = o.value()
		return v, ok, write{}, false
	}
	if !o.alive() || !o.exists() {
		return "", false, o.root, true // absent, or alive with {} and nothing written (an object just made)
	}
	// The usual place, and each of a catch-up's: a kept write of the very path (the same
	// interned parts), none below it. Being kept, it is newer than any write above it: the
	// place holds its value. (Read as the general way below would, without its two prefix
	// comparisons a kept write.)
	exact := -1
	for i := range o.paths {
		p := &o.paths[i]
		if int(p.n) == len(path) {
			if p.first == &path[0] {
				exact = i
			}
		} else if int(p.n) > len(path) && hasPrefix(p.path(), path) {
			exact = -1
			break
		}
	}
	if exact >= 0 {
		w := o.paths[exact].w()
		if v := w.target().value; v != "" {
			return v, true, w, true
		}
		return "", false, w, true
	}
	// The deepest write at or above path decides the starting point; writes below it are
	// then applied in order.
	// (The kept writes' path lengths are read here, not their operations': a remote write
	// looks at the one it supersedes, in cold memory, and reads only its clock and value.)
	var anc write
	ancN := -1 // len(anc's path)
	var below []write
	for _, p := range o.paths {
		wp := p.path()
		if hasPrefix(path, wp) {
			if len(wp) > ancN {
				anc, ancN = p.w(), len(wp)
			}
		} else if hasPrefix(wp, path) {
			below = append(below, p.w())
		}
	}
	var start string
	if anc.op != nil {
		if t := anc.target(); t.value != "" {
			start, ok = lookup(t.value, path[ancN:])
		}
	} else {
		start, ok = lookup(o.rootValue(), path)
		anc = o.root
	}
	if len(below) == 0 {
		return start, ok, anc, true
	}
	slices.SortFunc(below, compareWrites)
	tree := &jtree{raw: start}
	for _, w := range below {
		applyTo(tree, w.target(), w.target().path[len(path):])
	}
	if tree.kids == nil && tree.raw == "" {
		return "", false, write{}, false
	}
	return tree.String(), true, write{}, false
}
