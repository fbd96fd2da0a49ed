package crdt

import (
	"strconv"
	"strings"
	"unsafe"

	"github.com/mapcrdt/mapcrdt/hlc"
)

// Undo and redo of local edits (DESIGN §7). An undo step lists, for every place a local edit
// wrote, the value it had before and the write that changed it. Undoing emits new
// operations with fresh clocks, so on every other replica an undo is just more edits; a
// place another peer has written since is left as that peer wrote it and reported skipped
// (and so is one a local edit made with Edit.NoUndo wrote since: op.restores holds its own
// clock).

// undoEntry is one place a step changed.
type undoEntry struct {
	obj        *object
	path       []string // nil: the whole object
	old        string   // the value to restore
	oldPresent bool
	by         write // the local write that changed the place
	// others is the newest clock of another peer's work the old value held (othersIn), zero
	// when none: restoring the value puts that work back (op.restores).
	others hlc.Timestamp
	// own says old is an allocation of its own (moveOut copied it): not copied again.
	own bool
}

// size is about what the entry holds and takes in a snapshot: the value it restores, the
// object's metadata and the rest of its line. An old value not present counts nothing (a
// revert may leave "{}" in old): a snapshot writes null, and a restored entry, which has
// none, must count what the original did — else a restore drops a step the replica kept.
func (e *undoEntry) size() int {
	n := len(e.obj.meta) + 48
	if e.oldPresent {
		n += len(e.old)
	}
	return n
}

// byMeta is the metadata text the write that changed the place carried, "" when its
// operation was compacted away before a snapshot (then only its clock is kept).
func (e *undoEntry) byMeta() string {
	if e.by.sub == 0 {
		return e.by.op.meta()
	}
	if subs := e.by.op.subOps(); int(e.by.sub) <= len(subs) {
		return subs[e.by.sub-1].meta()
	}
	return ""
}

type undoStep struct {
	entries []undoEntry
	bytes   int // the entries' size (undoEntry.size)
	group   string
	at      int64 // wall ms of the latest edit in the step
	closed  bool  // no further edit joins it
	inBatch bool
}

type undoStacks struct {
	undo, redo []undoStep
	held       int         // the undo stack's steps' bytes, summed
	base       []undoStep  // the array the undo stack is a window of (see push)
	chunk      []undoEntry // room for the first entry of the next steps (one allocation for many)
}

// undoBudget is the most bytes each stack's steps hold (undoStep.bytes): the oldest steps
// are dropped past it, but for the newest. A step keeps the values it restores whole — a
// polygon of 500,000 vertices dragged a hundred times is a hundred copies of ~11 MB —
// and a snapshot holds them all: without a bound, a few drags of a large geometry made
// the replica's memory grow by a value each and its snapshot too large to take.
func undoBudget(opts *Options) int { return opts.Limits.MaxMessageBytes }

// entry returns the slot of the shared chunk the next entry is cut from, zero, for a
// local edit to write its entry in field by field and record it: an entry built then
// copied into the chunk was a memory.fill and a memory.copy in wasm (calls out of the
// wasm code). record gives it back zero when the entry joins a step instead.
func (s *undoStacks) entry() *undoEntry {
	if len(s.chunk) == 0 {
		s.chunk = make([]undoEntry, 32)
	}
	return &s.chunk[0]
}

// one returns a slice holding just e, cut from a shared chunk (appending to it copies); e
// may be the chunk's next slot (entry), which is then not copied.
func (s *undoStacks) one(e *undoEntry) []undoEntry {
	if len(s.chunk) == 0 {
		s.chunk = make([]undoEntry, 32)
	}
	if e != &s.chunk[0] {
		s.chunk[0] = *e
	}
	out := s.chunk[:1:1]
	s.chunk = s.chunk[1:]
	return out
}

// record adds an entry: to the open batch's step, to the newest step when the group or the
// capture interval says so, or as a new step. A step not a batch's that holds more than the
// budget takes no more edits (it is closed): a group of drags of a large polygon would grow
// by a copy of the geometry per drag, past what a snapshot holds; as steps of their own,
// the budget drops the oldest. A batch is atomic: it stays one step.
func (s *undoStacks) record(e *undoEntry, group string, inBatch bool, now int64, opts *Options) {
	if n := len(s.undo); n > 0 {
		top := &s.undo[n-1]
		if !top.inBatch && top.bytes > undoBudget(opts) {
			top.closed = true
		}
		join := !top.closed && (inBatch && top.inBatch ||
			!inBatch && !top.inBatch && (group != "" && group == top.group ||
				group == "" && top.group == "" && opts.CaptureInterval > 0 && now-top.at <= opts.CaptureInterval.Milliseconds()))
		if join {
			top.entries = append(top.entries, *e)
			top.at = now
			n := e.size()
			if len(s.chunk) > 0 && e == &s.chunk[0] {
				*e = undoEntry{} // the slot entry gave: given back zero
			}
			top.bytes += n
			if s.held += n; s.held > undoBudget(opts) {
				s.dropOldest(opts.UndoDepth, undoBudget(opts))
			}
			return
		}
	}
	s.push(&undoStep{entries: s.one(e), bytes: e.size(), group: strings.Clone(group), at: now, inBatch: inBatch}, opts)
}

// push adds a step on top of the undo stack and drops the oldest past depth. The stack is a
// window sliding along one array, base: the oldest step is dropped by reslicing (a copy of
// the whole stack per edit would cost more than the edit), and when the window reaches the
// array's end its steps move back to the start — where append would allocate a new array
// every depth or so steps.
func (s *undoStacks) push(st *undoStep, opts *Options) {
	if n := len(s.undo); n > 0 && n == cap(s.undo) && cap(s.base) > 0 {
		const size = unsafe.Sizeof(undoStep{})
		start := uintptr(unsafe.Pointer(unsafe.SliceData(s.base)))
		at := uintptr(unsafe.Pointer(unsafe.SliceData(s.undo)))
		if at > start && at < start+uintptr(cap(s.base))*size { // a window of base, not at its start
			base := s.base[:cap(s.base)]
			copy(base, s.undo)
			clear(base[n:]) // what the dropped steps held
			s.undo = base[:n]
		}
	}
	old := unsafe.SliceData(s.undo)
	s.undo = append(s.undo, *st)
	if unsafe.SliceData(s.undo) != old { // a new array, the window at its start
		s.base = s.undo[:cap(s.undo)]
	}
	if s.held += st.bytes; len(s.undo) > opts.UndoDepth || s.held > undoBudget(opts) {
		s.dropOldest(opts.UndoDepth, undoBudget(opts))
	}
}

// dropOldest drops the oldest undo steps past depth, and past budget bytes but for the
// newest step.
//
//go:noinline
func (s *undoStacks) dropOldest(depth, budget int) {
	for len(s.undo) > depth || len(s.undo) > 1 && s.held > budget {
		s.held -= s.undo[0].bytes
		st := &s.undo[0] // cleared field by field: undoStep{} stored whole is a memory.fill in wasm
		st.entries, st.bytes, st.group, st.at, st.closed, st.inBatch = nil, 0, "", 0, false, false
		s.undo = s.undo[1:]
	}
}

// settle sums the undo stack's bytes again, and drops the oldest steps of each stack past
// the budget, but for the newest (after a revert moved a step, a restore).
func (s *undoStacks) settle(opts *Options) {
	budget := undoBudget(opts)
	s.held = 0
	for i := range s.undo {
		s.held += s.undo[i].bytes
	}
	s.dropOldest(opts.UndoDepth, budget)
	held := 0
	for i := range s.redo {
		held += s.redo[i].bytes
	}
	for len(s.redo) > 1 && held > budget {
		held -= s.redo[0].bytes
		s.redo[0] = undoStep{} // the array must not keep the step's operations and values
		s.redo = s.redo[1:]
	}
}

// moveOut copies the entries of every step into arrays of their own, each value to restore
// copied too and each write's operation where mv moves it (see Replica.moveOut).
func (s *undoStacks) moveOut(mv func(*op) *op) {
	for _, steps := range [][]undoStep{s.undo, s.redo} {
		for i := range steps {
			es := make([]undoEntry, len(steps[i].entries))
			for j, e := range steps[i].entries {
				e.by.op = mv(e.by.op)
				if !e.own {
					// Copied once: a value copied at an earlier Compact is its own already.
					e.old, e.own = strings.Clone(e.old), true
				}
				es[j] = e
			}
			steps[i].entries = es
		}
	}
	s.chunk = nil
}

func (s *undoStacks) closeTop() {
	if n := len(s.undo); n > 0 {
		s.undo[n-1].closed = true
	}
}

// Skipped names a place an undo or redo left alone because another peer wrote it since (or
// a local edit made with Edit.NoUndo did).
type Skipped struct {
	Subject  string // the object's subject ("feature")
	Metadata string // its metadata, canonical JSON
	Key      string // the escaped key path; "" for the whole object
}

// UndoResult is what Undo and Redo did.
type UndoResult struct {
	// Done is false when there was nothing to undo (redo).
	Done bool
	// Changes are the visible changes the step made.
	Changes []Change
	// Skipped lists the places left as another peer (or an Edit.NoUndo edit) wrote them.
	Skipped []Skipped
}

// CanUndo reports whether there is a step to undo.
func (r *Replica) CanUndo() bool { return len(r.undo.undo) > 0 }

// CanRedo reports whether there is a step to redo.
func (r *Replica) CanRedo() bool { return len(r.undo.redo) > 0 }

// Undo reverts the newest local undo step. It fails while a batch is open.
func (r *Replica) Undo() (UndoResult, error) {
	return r.revert(&r.undo.undo, &r.undo.redo)
}

// Redo re-applies what the newest undo reverted. It fails while a batch is open.
func (r *Replica) Redo() (UndoResult, error) {
	return r.revert(&r.undo.redo, &r.undo.undo)
}

func (r *Replica) revert(from, to *[]undoStep) (UndoResult, error) {
	if r.batch != nil {
		return UndoResult{}, newError(ErrBadState, "undo and redo are not allowed while a batch is open")
	}
	n := len(*from)
	if n == 0 {
		return UndoResult{}, nil
	}
	step := (*from)[n-1]
	res := UndoResult{Done: true}
	var subs []*op
	for i := len(step.entries) - 1; i >= 0; i-- {
		e := step.entries[i]
		if r.othersWroteSince(e) {
			res.Skipped = append(res.Skipped, Skipped{Subject: e.obj.subject.Name, Metadata: e.obj.meta, Key: JoinPath(e.path...)})
			continue
		}
		sub := &op{obj: e.obj, path: e.path}
		sub.setMeta(e.byMeta())
		if !e.others.IsZero() {
			sub.more().restores = e.others
		}
		switch {
		case e.path != nil:
			sub.verb = VerbUpdate
			if e.oldPresent {
				sub.value = strings.Clone(e.old) // it may lie in a block (see bulk)
			}
		case e.oldPresent:
			sub.verb, sub.value = VerbUpsert, strings.Clone(e.old)
		default:
			sub.verb = VerbDelete
		}
		subs = append(subs, sub)
	}
	groups, err := r.messageGroups(subs)
	if err != nil {
		return UndoResult{}, err // the step stays, nothing changed
	}
	(*from)[n-1] = undoStep{} // the array must not keep the step's operations and values
	*from = (*from)[:n-1]
	if len(subs) == 0 {
		r.undo.settle(&r.opts) // the step went: held must not count it
		return res, nil
	}
	// One operation, or one batch, with a fresh clock — or, when the values restored are
	// more than a peer takes in one message, several, in order, each with its own clock.
	tops := make([]*op, len(groups))
	for i, g := range groups {
		if len(g) > 1 {
			tops[i] = &op{verb: VerbBatch, ts: r.now()}
			tops[i].more().subs = g
		} else {
			tops[i] = g[0]
			tops[i].ts = r.now()
		}
	}
	t := r.track(nil)
	t.watch(tops)
	// The step that goes back lists what each write overwrote, in the order written.
	back := undoStep{closed: true}
	for _, top := range tops {
		r.log.insert(top)
		top.writes(func(sub *op, idx int32) {
			cur, present := sub.obj.valueAt(sub.path)
			if sub.path == nil {
				present = present && sub.obj.exists()
			}
			w := write{op: top, sub: idx}
			// As a local edit's (undoPlace): a write below a value that is not an object
			// (geometry "s1", by a write of geometry.c) goes back by restoring that value
			// whole — restoring "absent at geometry.c" would leave geometry {}.
			place, old, oldPresent, others := r.undoPlace(sub.obj, sub.path, &oldValue{value: cur, present: present, others: r.othersIn(sub.obj, sub.path)})
			sub.obj.apply(w)
			back.entries = append(back.entries, undoEntry{obj: sub.obj, path: place, old: old, oldPresent: oldPresent, by: w, others: others})
			back.bytes += back.entries[len(back.entries)-1].size()
		})
		r.outbox = append(r.outbox, top)
	}
	*to = append(*to, back)
	r.undo.settle(&r.opts)
	res.Changes = t.changes()
	return res, nil
}

// messageGroups splits subs, in order, into runs that each fit one message a peer with the
// same limits takes (Limits.MaxMessageBytes and MaxBatch, sized as fitsMessage sizes a
// local edit): an undo restores old values, which may be far larger than what replaced
// them (a batch deleting a layer's polygons, undone). One operation alone over the limit is
// refused (ErrTooLarge): a value seeded from the server, never sent, can be that large.
func (r *Replica) messageGroups(subs []*op) ([][]*op, error) {
	lim := r.opts.Limits
	room := lim.MaxMessageBytes - r.envelopeSize()
	var groups [][]*op
	start, bytes := 0, 0
	for i, sub := range subs {
		meta := sub.meta()
		if meta == "" {
			meta = sub.obj.meta
		}
		n := subSize(sub.obj.subject.Name, meta, JoinPath(sub.path...), sub.value)
		if n > room {
			return nil, newError(ErrTooLarge, "undo or redo restores a value of about "+strconv.Itoa(n)+
				" bytes: its message would be more than "+strconv.Itoa(lim.MaxMessageBytes)+" (limits.maxMessageBytes)")
		}
		if i > start && (bytes+n > room || i-start >= lim.MaxBatch) {
			groups = append(groups, subs[start:i:i])
			start, bytes = i, 0
		}
		bytes += n
	}
	if start < len(subs) {
		groups = append(groups, subs[start:])
	}
	return groups, nil
}

// othersWroteSince reports whether a write by another peer, newer than the entry's own
// write, is visible at, above or below the entry's place — or a local undo's write that
// restored such a write's work there (a peer's value that a later local edit overwrote,
// and its undo put back).
func (r *Replica) othersWroteSince(e undoEntry) bool {
	o := e.obj
	newerOther := func(w write) bool {
		if w.op == nil || w.op.ts.IsZero() {
			return false
		}
		if !r.isOwn(w.op.ts.Peer) {
			return compareWrites(w, e.by) > 0
		}
		t := w.target()
		if t.x == nil {
			return false
		}
		if t.x.restores == w.op.ts { // an edit made with Edit.NoUndo, maybe in the step's batch
			return compareWrites(w, e.by) > 0
		}
		return t.x.restores.Compare(e.by.op.ts) > 0
	}
	if newerOther(o.root) {
		return true
	}
	for _, p := range o.paths {
		if !newerOther(p.w()) {
			continue
		}
		if e.path == nil {
			return true
		}
		wp := p.path()
		if hasPrefix(e.path, wp) || hasPrefix(wp, e.path) {
			return true
		}
	}
	return false
}

// othersIn returns the newest clock of another peer's work that the value at path (nil: the
// whole object) holds: other peers' writes kept at, above or below it, and the work local
// undo writes restored there (op.restores). Zero when none.
func (r *Replica) othersIn(o *object, path []string) hlc.Timestamp {
	var newest hlc.Timestamp
	if o.root.op != nil {
		newest = r.othersClock(o.root)
	}
	for i := range o.paths {
		p := &o.paths[i]
		// The path first: it is at hand, where the write's operation may be in cold memory.
		if path != nil {
			if wp := p.path(); !hasPrefix(path, wp) && !hasPrefix(wp, path) {
				continue
			}
		}
		if ts := r.othersClock(write{op: p.op, sub: p.sub}); ts.Compare(newest) > 0 {
			newest = ts
		}
	}
	return newest
}

// othersClock is the clock of another peer's work a write holds: its own when another
// peer made it or a local edit made with Edit.NoUndo (taken as a peer's), the one it
// restored when a local undo did (op.restores), else zero.
func (r *Replica) othersClock(w write) hlc.Timestamp {
	if w.op == nil {
		return hlc.Timestamp{}
	}
	if ts := w.op.ts; !r.isOwn(ts.Peer) && ts.Wall != 0 {
		return ts
	}
	if t := w.target(); t.x != nil {
		return t.x.restores
	}
	return hlc.Timestamp{}
}

// undoPlace is the place a local edit of path is undone at, and the value it holds before
// the edit: path and old — or, when an update replaced a value that is not an object on
// its way (geometry [1,2], by a write of geometry.type) or made objects that were not
// there (properties._umap_options, for its color), the shortest such prefix and its value,
// restored whole. Only an absent old value can hide such a prefix. Only an object whose
// whole value is known (upserted or seeded) is so undone: of one loaded from the saved map
// and only edited, the engine knows the paths written, and restoring "no _umap_options"
// would drop the members it never saw.
func (r *Replica) undoPlace(obj *object, path []string, old *oldValue) ([]string, string, bool, hlc.Timestamp) {
	if old.present || old.fromCaller || len(path) < 2 || obj.root.op == nil {
		return path, old.value, old.present, old.others
	}
	for k := 1; k < len(path); k++ {
		place := path[:k:k]
		if v, ok := obj.valueAt(place); !ok || !isObject(v) {
			return place, v, ok, r.othersIn(obj, place)
		}
	}
	return path, old.value, old.present, old.others
}
