package crdt

import (
	"slices"

	"github.com/mapcrdt/mapcrdt/hlc"
)

// ChangeKind says what became visible.
type ChangeKind string

// The kinds of change receive returns.
const (
	// Created: the object became alive; Value is the whole object.
	Created ChangeKind = "created"
	// Deleted: the object became absent.
	Deleted ChangeKind = "deleted"
	// Set: the value at Key changed to Value (Key "" means the whole object was replaced).
	Set ChangeKind = "set"
	// Unset: nothing is at Key any more.
	Unset ChangeKind = "unset"
)

// Change is one visible change to render: per object and path, coalesced over every
// operation of one call, listed in the clock order of the first operation behind each.
type Change struct {
	Kind     ChangeKind    // what became visible
	Subject  string        // the object's subject ("feature")
	Metadata string        // the object's metadata, canonical JSON
	Key      string        // escaped key path; "" for the whole object
	Value    string        // canonical JSON (Created, Set); "" for Deleted and Unset
	HLC      hlc.Timestamp // the clock of the first operation behind the change
}

// AppendJSON appends c as a JSON object.
func (c Change) AppendJSON(b []byte) []byte {
	b = append(b, `{"kind":"`...)
	b = append(b, c.Kind...)
	b = append(b, `","subject":`...)
	b = appendString(b, c.Subject)
	b = append(b, `,"metadata":`...)
	b = append(b, c.Metadata...)
	if c.Key != "" {
		b = append(b, `,"key":`...)
		b = appendString(b, c.Key)
	}
	if c.Value != "" {
		b = append(b, `,"value":`...)
		b = append(b, c.Value...)
	}
	b = append(b, `,"hlc":"`...)
	b = c.HLC.AppendText(b)
	return append(b, `"}`...)
}

// AppendChangesJSON appends changes as a JSON array.
func AppendChangesJSON(b []byte, changes []Change) []byte {
	b = append(b, '[')
	for i, c := range changes {
		if i > 0 {
			b = append(b, ',')
		}
		b = c.AppendJSON(b)
	}
	return append(b, ']')
}

// tracker records what was visible at the places a set of operations touches, before they
// apply, so that only real differences are reported afterwards.
type tracker struct {
	dec     *decoder // for key texts of interned paths; may be nil
	inline  [2]spot  // room for the usual one or two places, without an allocation
	spots   []spot
	gen     uint32   // this call's number: object.lastSpt holds its last spot when trkGen is gen
	chained bool     // spots are chained per object (spot.prev, object.lastSpt)
	out     []Change // changes() appends to out[:0]: a buffer to reuse, or nil
}

type spot struct {
	obj     *object
	path    []string // nil: the whole object
	first   hlc.Timestamp
	before  string
	present bool
	watched bool  // before and present are recorded
	dead    bool  // widened into another spot
	prev    int32 // the object's spot before this one, +1 (0: none), when chained
}

// spotOf returns the place whose visible value a write can change: the whole object for an
// upsert or delete, the path for an update — or, for an unset below a member that is not an
// object yet, that member (an unset makes the objects above its path, see jtree.unset).
func spotOf(w *op) []string {
	if w.verb != VerbUpdate {
		return nil
	}
	if w.value != "" || len(w.path) == 1 {
		return w.path
	}
	for i := 1; i < len(w.path); i++ {
		if v, ok := w.obj.valueAt(w.path[:i]); !ok || !isObject(v) {
			return w.path[:i]
		}
	}
	return w.path
}

// watch registers every place ops touch, keeping per object the top-most places only.
func (t *tracker) watch(ops []*op) {
	if len(ops) > len(t.inline) && t.spots == nil {
		t.spots = make([]spot, 0, len(ops)) // a catch-up: one place per operation, about
	}
	for _, o := range ops {
		if o.verb != VerbBatch {
			t.add(o.obj, spotOf(o), o.ts)
			continue
		}
		for _, w := range o.subOps() {
			t.add(w.obj, spotOf(w), o.ts)
		}
	}
	for i := range t.spots {
		s := &t.spots[i]
		if s.watched || s.dead {
			continue
		}
		s.watched = true
		if !s.obj.exists() { // nothing written yet (a catch-up's new objects): nothing there
			continue
		}
		if s.path == nil {
			s.before, s.present = s.obj.value()
			s.present = s.present && s.obj.exists()
		} else {
			s.before, s.present = s.obj.valueAt(s.path)
		}
	}
}

func (t *tracker) add(obj *object, path []string, ts hlc.Timestamp) {
	// Few places (a live edit): scan them all. Many (a catch-up): chain each object's
	// spots (spot.prev) from its last one, kept on the object for this call (lastSpt: a
	// field, where a map from object to spot cost two lookups a place). An object may hold
	// the number of an earlier call that wrapped around to this one's: its first spot's
	// prev is then any index, which costs a few steps through other objects' spots (they
	// are skipped) or ends the chain (a chain only goes back) — never a spot missed.
	if !t.chained && len(t.spots) >= 8 {
		t.chained = true
		for i := range t.spots {
			s := &t.spots[i]
			s.prev = t.last(s.obj)
			s.obj.trkGen, s.obj.lastSpt = t.gen, int32(i+1)
		}
	}
	i := 0 // all spots in order …
	if t.chained {
		i = int(t.last(obj)) - 1 // … or the object's, last first
	}
	for i >= 0 && i < len(t.spots) {
		s := &t.spots[i]
		if t.chained {
			next := int(s.prev) - 1
			if next >= i {
				next = -1 // a chain only goes back (anything else would be a loop)
			}
			i = next
		} else {
			i++
		}
		if s.obj != obj || s.dead {
			continue
		}
		if s.path == nil || (path != nil && hasPrefix(path, s.path)) { // already covered
			if ts.Less(s.first) {
				s.first = ts
			}
			return
		}
		if path == nil || hasPrefix(s.path, path) { // covers the spot: widen it
			if s.first.Less(ts) {
				ts = s.first
			}
			s.dead = true
			t.add(obj, path, ts)
			return
		}
	}
	if t.spots == nil {
		t.spots = t.inline[:0]
	}
	sp := spot{obj: obj, path: path, first: ts}
	if t.chained {
		sp.prev = t.last(obj)
		obj.trkGen, obj.lastSpt = t.gen, int32(len(t.spots)+1)
	}
	t.spots = append(t.spots, sp)
}

// last returns the object's last spot of this call, +1 (0: none).
func (t *tracker) last(obj *object) int32 {
	if obj.trkGen != t.gen {
		return 0
	}
	return obj.lastSpt
}

// change compares what a watched place holds now with what it held (s.before, s.present),
// and returns the change to report, if any. For a path, known says that after is the value
// it holds now (the caller knows it without reading the state).
func (d *decoder) change(s *spot, after string, known bool) (Change, bool) {
	c := Change{Subject: s.obj.subject.Name, Metadata: s.obj.meta, HLC: s.first}
	if s.path == nil {
		after, present := s.obj.value()
		present = present && s.obj.exists()
		switch {
		case !s.present && present:
			c.Kind, c.Value = Created, after
		case s.present && !present:
			c.Kind = Deleted
		case present && after != s.before:
			c.Kind, c.Value = Set, after
		default:
			return c, false
		}
		return c, true
	}
	present := known
	if !known {
		after, present = s.obj.valueAt(s.path)
	}
	if present == s.present && textEqual(after, s.before) {
		return c, false
	}
	c.Key = d.keyOf(s.path)
	if present {
		c.Kind, c.Value = Set, after
	} else {
		c.Kind = Unset
	}
	return c, true
}

// appendChange is change for a path write whose caller reports its one change: the change,
// if any, as out[:0] with it, written in out's array field by field — where a Change
// built, returned and appended was a memory.fill and three memory.copy calls in wasm (and
// typedmemmove's call). nil when there is none.
func (d *decoder) appendChange(out []Change, s *spot, after string, known bool) []Change {
	if s.path == nil || cap(out) == 0 {
		if c, ok := d.change(s, after, known); ok {
			return append(out[:0], c)
		}
		return nil
	}
	present := known
	if !known {
		after, present = s.obj.valueAt(s.path)
	}
	if present == s.present && textEqual(after, s.before) {
		return nil
	}
	out = out[:1]
	c := &out[0]
	c.Subject, c.Metadata, c.HLC = s.obj.subject.Name, s.obj.meta, s.first
	c.Key = d.keyOf(s.path)
	if present {
		c.Kind, c.Value = Set, after
	} else {
		c.Kind, c.Value = Unset, ""
	}
	return out
}

// track returns the replica's tracker, reset for one call that reports changes (ingest,
// commitLocal, Seed, an undo step: they never nest). Reusing it saves an allocation per
// edit and per message; changes() appends to out[:0].
func (r *Replica) track(out []Change) *tracker {
	r.trkGen++ // wraps after 2³² calls: see tracker.add on numbers left by earlier calls
	r.trk = tracker{dec: &r.dec, out: out, gen: r.trkGen}
	return &r.trk
}

// changes compares every watched place with what is visible now.
func (t *tracker) changes() []Change {
	out := t.out[:0]
	if len(t.spots) > 1 && cap(out) < len(t.spots) {
		out = make([]Change, 0, len(t.spots))
	}
	for i := range t.spots {
		if i%gcEvery == gcEvery-1 {
			gcPoint()
		}
		s := &t.spots[i] // not a copy: 88 bytes
		if s.dead {
			continue
		}
		if c, ok := t.dec.change(s, "", false); ok {
			out = append(out, c)
		}
	}
	byClock := func(a, b Change) int { return a.HLC.Compare(b.HLC) }
	if len(out) > 1 && !slices.IsSortedFunc(out, byClock) { // a catch-up's usually are
		sortStable(out, byClock)
	}
	t.inline, t.spots, t.out = [2]spot{}, nil, nil // hold no values between calls
	if len(out) == 0 {
		return nil
	}
	return out
}
