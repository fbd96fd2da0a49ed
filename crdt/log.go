package crdt

import (
	"slices"
	"strings"
	"unsafe"

	"github.com/mapcrdt/mapcrdt/hlc"
)

// opLog holds every operation the replica knows, once, sorted by clock, so that "what
// changed since X" is a binary search and a slice. Operations mostly arrive in clock order
// and are appended; a late one is inserted in place.
type opLog struct {
	ops []*op
}

// find returns the index where ts is or would be.
func (l *opLog) find(ts hlc.Timestamp) (int, bool) {
	ops := l.ops
	n := len(ops)
	if n == 0 || ops[n-1].ts.Less(ts) {
		return n, false
	}
	// slices.BinarySearchFunc, written out: its comparison was a closure call per probe.
	lo, hi := 0, n
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if ops[m].ts.Less(ts) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, ops[lo].ts == ts // lo < n: ops[n-1] is not before ts
}

// has reports whether an operation with clock ts is in the log.
func (l *opLog) has(ts hlc.Timestamp) bool {
	_, ok := l.find(ts)
	return ok
}

// insert adds o unless an operation with its clock is there; it reports whether it did.
func (l *opLog) insert(o *op) bool {
	i, ok := l.find(o.ts)
	if ok {
		return false
	}
	if i == len(l.ops) { // the usual case: the newest operation
		l.ops = append(l.ops, o)
	} else {
		l.ops = slices.Insert(l.ops, i, o)
	}
	return true
}

// insertMany adds the operations whose clock the log does not hold yet (the first of equal
// clocks) and returns them, in clock order. A catch-up's operations interleave with the
// log's: one merge, which also tells the clocks the log holds, costs O(n + m log m) (O(n +
// m) for operations already in order, as a catch-up lists them) where an insertion each
// would move the log m times.
func (l *opLog) insertMany(ops []*op) []*op {
	if len(ops) < 8 {
		var added []*op
		for _, o := range ops {
			if l.insert(o) {
				added = append(added, o)
			}
		}
		sortStable(added, func(a, b *op) int { return a.ts.Compare(b.ts) })
		return added
	}
	byClock := func(a, b *op) int { return a.ts.Compare(b.ts) }
	sorted := slices.Clone(ops)
	if !slices.IsSortedFunc(sorted, byClock) {
		sortStable(sorted, byClock)
	}
	// The merge: the log's operations and the new ones, each clock once (the log's first).
	n := len(l.ops)
	var merged []*op
	if n > 0 && !l.ops[n-1].ts.Less(sorted[0].ts) {
		merged = make([]*op, 0, n+len(sorted))
	}
	added := sorted[:0]
	i := 0
	for j, o := range sorted {
		if j > 0 && o.ts == sorted[j-1].ts {
			continue // a second one of a clock in ops
		}
		if merged != nil {
			for i < n && l.ops[i].ts.Less(o.ts) {
				merged = append(merged, l.ops[i])
				i++
			}
			if i < n && l.ops[i].ts == o.ts {
				continue // held
			}
			merged = append(merged, o)
		}
		added = append(added, o)
	}
	if merged == nil {
		l.ops = append(l.ops, added...)
	} else {
		l.ops = append(merged, l.ops[i:]...)
	}
	if len(added) == 0 {
		return nil
	}
	return added
}

// since returns the operations with a clock strictly after ts, in clock order. The slice
// is the log's own: do not modify it.
func (l *opLog) since(ts hlc.Timestamp) []*op {
	i, ok := l.find(ts)
	if ok {
		i++
	}
	return l.ops[i:]
}

// remove drops the operations for which drop returns true, returning how many.
func (l *opLog) remove(drop func(*op) bool) int {
	n := len(l.ops)
	l.ops = slices.DeleteFunc(l.ops, drop)
	return n - len(l.ops)
}

// VersionVector summarises what a replica holds: for each origin peer, the highest seq such
// that every operation 1…seq of that peer is held (or was superseded and compacted away).
type VersionVector map[string]uint64

// vectorState tracks the contiguous vector and the seqs received above it. The peer add saw
// last is "hot": its seq is kept in a field, not yet in the map, so that a stream of
// operations from one peer (a remote editor, or this replica's own edits) costs no map
// operation — a Go map hashes and compares its string keys with runtime calls, byte by byte
// in wasm. vector() writes it back; nothing reads the map but through it.
type vectorState struct {
	settled VersionVector       // the vector, but for the hot peer when hotSet
	above   map[string][]uint64 // sorted seqs > the vector's seq of peer, held but not contiguous
	hot     string              // the hot peer
	hotSeq  uint64              // its seq in the vector, when hotSet
	hotSet  bool
}

func newVectorState() vectorState {
	return vectorState{settled: VersionVector{}, above: map[string][]uint64{}}
}

// vector returns the vector (the replica's own map: callers copy what they keep).
func (v *vectorState) vector() VersionVector {
	if v.hotSet {
		v.settled[v.hot] = v.hotSeq
		v.hotSet = false
	}
	return v.settled
}

// setVector replaces the vector (a snapshot's).
func (v *vectorState) setVector(vv VersionVector) {
	v.settled, v.hotSet = vv, false
}

// samePeer reports whether a and b are one peer id, at once when they share memory (the
// decoder interns peer ids).
func samePeer(a, b string) bool {
	return len(a) == len(b) && (unsafe.StringData(a) == unsafe.StringData(b) || textEqual(a, b))
}

// add records seq from peer; it reports whether seq leaves a gap (is not the next one).
func (v *vectorState) add(peer string, seq uint64) (gap bool) {
	_, gap = v.take(peer, seq)
	return gap
}

// take is add, reporting too whether seq was held already (holds; nothing changes then):
// a receive's one look at the vector.
func (v *vectorState) take(peer string, seq uint64) (held, gap bool) {
	if v.hotSet && samePeer(peer, v.hot) {
		switch {
		case seq <= v.hotSeq:
			return true, false
		case seq == v.hotSeq+1 && len(v.above) == 0: // nothing held above any peer's seqs
			v.hotSeq = seq
			return false, false
		}
	}
	vv := v.vector()
	have := vv[peer]
	switch {
	case seq <= have:
		return true, false
	case seq == have+1:
		if len(v.above) == 0 { // nothing held above any peer's contiguous seqs
			v.hot, v.hotSeq, v.hotSet = peer, seq, true // vv[peer] is written back by vector()
			return false, false
		}
		have = seq
		rest := v.above[peer]
		for len(rest) > 0 && rest[0] <= have+1 {
			if rest[0] == have+1 {
				have++
			}
			rest = rest[1:]
		}
		vv[peer] = have
		if len(rest) == 0 {
			delete(v.above, peer)
		} else {
			v.above[peer] = rest
		}
		return false, false
	}
	rest := v.above[peer]
	i, found := slices.BinarySearch(rest, seq)
	if !found {
		v.above[peer] = slices.Insert(rest, i, seq)
	}
	return found, true
}

// holds reports whether seq of peer is held: at or below the vector, or above it.
func (v *vectorState) holds(peer string, seq uint64) bool {
	var have uint64
	if v.hotSet && samePeer(peer, v.hot) {
		have = v.hotSeq // not written back: a stream from the hot peer stays off the map
	} else {
		have = v.settled[peer]
	}
	if seq <= have || len(v.above) == 0 {
		return seq <= have
	}
	_, found := slices.BinarySearch(v.above[peer], seq)
	return found
}

// worthAsking says, for a seq of peer that add has just recorded as leaving a gap, whether
// to ask a peer for what is missing now: at once for a new hole (seq-1 neither the
// contiguous end nor held above it); for a seq that extends what is held above a hole
// already reported, only as their number doubles (1, 2, 4, … held above). A hole that no
// peer can fill (its operation lost everywhere, or never made: a faulty peer) would
// otherwise have every later operation of its origin ask for all those above it again:
// traffic quadratic in their number.
func (v *vectorState) worthAsking(peer string, seq uint64) bool {
	rest := v.above[peer]
	if _, found := slices.BinarySearch(rest, seq-1); !found && seq-1 != v.vector()[peer] {
		return true
	}
	n := len(rest)
	return n&(n-1) == 0
}

// addRun records the seqs first…last of peer, a run of consecutive ones (what a catch-up
// brings): what add of each would record, with one update of the vector when the run
// starts at or below the next seq expected. It reports whether the run leaves a gap.
func (v *vectorState) addRun(peer string, first, last uint64) (gap bool) {
	vv := v.vector()
	have := vv[peer]
	switch {
	case last <= have:
		return false
	case first <= have+1:
		vv[peer] = last - 1 // first…last-1 are contiguous with have: add(last) takes the rest
		return v.add(peer, last)
	}
	// The run lies above a gap. Above every seq held there (a catch-up of the live
	// operations only, the superseded ones left out): appended at once.
	if rest := v.above[peer]; len(rest) == 0 || rest[len(rest)-1] < first {
		rest = slices.Grow(rest, int(last-first+1))
		for s := first; s <= last; s++ {
			rest = append(rest, s)
		}
		v.above[peer] = rest
		return true
	}
	for s := first; s <= last; s++ {
		if v.add(peer, s) {
			gap = true
		}
	}
	return gap
}

// adopt raises the vector to at least other (after a complete sync response from a replica
// holding other).
func (v *vectorState) adopt(other VersionVector) {
	vv := v.vector()
	for peer, seq := range other {
		if seq > vv[peer] {
			// other's names may point into a message (parseVector), and assigning to a
			// map stores the key given even when an equal one is there: a copy.
			peer = strings.Clone(peer)
			vv[peer] = seq
			rest := v.above[peer]
			for len(rest) > 0 && rest[0] <= seq {
				rest = rest[1:]
			}
			// Continue over seqs now contiguous.
			for len(rest) > 0 && rest[0] == vv[peer]+1 {
				vv[peer]++
				rest = rest[1:]
			}
			if len(rest) == 0 {
				delete(v.above, peer)
			} else {
				v.above[peer] = rest
			}
		}
	}
}

// ahead reports whether the vector claims operations other does not.
func (v *vectorState) ahead(other VersionVector) bool {
	for peer, seq := range v.vector() {
		if seq > other[peer] {
			return true
		}
	}
	return false
}

// Clone returns a copy of the vector.
func (vv VersionVector) Clone() VersionVector {
	out := make(VersionVector, len(vv))
	for k, v := range vv {
		out[k] = v
	}
	return out
}
