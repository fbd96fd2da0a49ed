package crdt

import (
	"math"
	"strconv"
	"strings"

	"github.com/mapcrdt/mapcrdt/hlc"
)

// SnapshotVersion is the snapshot format version this engine writes and reads.
const SnapshotVersion = 1

// Snapshot exports the whole replica — every operation of the log (which rebuilds the state
// and its per-path clocks), the seeded base values, the version vector, the clock, the seq
// counter, the outbox, the undo and redo stacks, the saved horizon and the known peers — as
// one JSON value (format in doc.go, "Snapshots"). A replica restored from it with
// NewReplicaFromSnapshot continues exactly where this one stopped, but for an undo or redo
// step past the history's budget, which it leaves out (fitting). It fails while a batch
// is open, and (ErrTooLarge) when the snapshot would be over 4 × Limits.MaxMessageBytes, what
// a restore takes.
func (r *Replica) Snapshot() ([]byte, error) {
	if r.batch != nil {
		return nil, newError(ErrBadState, "cannot snapshot while a batch is open")
	}
	b := []byte(`{"format":"mapcrdt-snapshot","version":`)
	b = strconv.AppendInt(b, SnapshotVersion, 10)
	b = append(b, `,"peer":`...)
	b = appendString(b, r.peer)
	b = append(b, `,"clock":"`...)
	b = r.clock.Last().AppendText(b)
	b = append(b, `","seqs":`...)
	b = appendVector(b, r.seqs.vector())
	b = append(b, `,"origins":[`...)
	for i, o := range sortedKeys(r.origins) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, o)
	}
	b = append(b, ']')
	if !r.saved.IsZero() {
		b = append(b, `,"saved":"`...)
		b = r.saved.AppendText(b)
		b = append(b, '"')
	}
	if len(r.savedBy) > 0 {
		b = append(b, `,"savedBy":`...)
		b = appendVector(b, r.savedBy)
	}
	b = append(b, `,"vector":`...)
	b = appendVector(b, r.vec.vector())
	b = append(b, `,"above":{`...)
	n := 0
	for _, p := range sortedKeys(r.vec.above) {
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = appendString(b, p)
		b = append(b, ":["...)
		for i, s := range r.vec.above[p] {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendUint(b, s, 10)
		}
		b = append(b, ']')
	}
	b = append(b, `},"peers":[`...)
	for i, p := range r.peers {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, p)
	}
	b = append(b, `],"log":`...)
	enc := newOpsEncoder(&r.dec)
	enc.all = true
	index := map[*op]int{}
	size := 56 * len(r.log.ops) // as response's estimate
	for i, o := range r.log.ops {
		index[o] = i
		size += len(o.value)
		for _, s := range o.subOps() {
			size += 8 + len(s.value)
		}
	}
	b = enc.appendState(b, r.log.ops, size)
	b = append(b, `,"outbox":[`...)
	for i, o := range r.outbox {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(index[o]), 10)
	}
	b = append(b, ']')
	b = appendRestores(b, r.log.ops)
	b = append(b, `,"bases":[`...)
	n = 0
	for _, o := range r.objects.sorted(nil) {
		if o.root.op == nil || !o.root.op.ts.IsZero() {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = append(b, '[')
		b = appendString(b, o.subject.Name)
		b = append(b, ',')
		b = append(b, o.meta...)
		b = append(b, ',')
		b = append(b, o.root.op.value...)
		b = append(b, ']')
	}
	b = append(b, `],"undo":`...)
	b = appendSteps(b, fitting(r.undo.undo, undoBudget(&r.opts)))
	b = append(b, `,"redo":`...)
	b = appendSteps(b, fitting(r.undo.redo, undoBudget(&r.opts)))
	b = append(b, '}')
	// What NewReplicaFromSnapshot takes under the same limits: a snapshot it would refuse
	// is an error here, not a file that cannot be read back.
	if max := r.opts.Limits.maxSnapshot(); len(b) > max {
		return nil, newError(ErrTooLarge, "snapshot of "+strconv.Itoa(len(b))+" bytes, more than a restore takes ("+
			strconv.Itoa(max)+", 4 × limits.maxMessageBytes)")
	}
	return b, nil
}

// fitting returns steps, a history as a snapshot holds it: without its newest step when
// that step held more than budget bytes of values to restore before its last edit — a
// batch's (a batch deleting a layer's features restores them all), a redo of a group's
// (an import undone) — and then without the older steps, which could not be undone before
// it. The history keeps such a step, undoable until a reload; a snapshot holding it could
// pass what a restore takes. Every other step a history keeps is within the budget, or
// passed it with its last edit only (a group's, the capture interval's).
func fitting(steps []undoStep, budget int) []undoStep {
	if n := len(steps); n > 0 {
		top := &steps[n-1]
		if k := len(top.entries); k > 0 && top.bytes-top.entries[k-1].size() > budget {
			return nil
		}
	}
	return steps
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sortStable(keys, strings.Compare) // the objects of a map run into the tens of thousands
	return keys
}

// A step is {"at","closed","entries":[[subject, metadata, key|null, present, old|null, hlc,
// sub, others?], …],"group","inBatch"}: others, the clock of a peer's work the old value
// held (undoEntry.others), only when there is one. The members are in canonical order, so
// that a restore takes the steps' text as it is (a snapshot of an engine before session 34
// wrote "group" first: its steps are sorted on restore, ~10× the allocations).
func appendSteps(b []byte, steps []undoStep) []byte {
	b = append(b, '[')
	for i, s := range steps {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"at":`...)
		b = strconv.AppendInt(b, s.at, 10)
		b = append(b, `,"closed":`...)
		b = strconv.AppendBool(b, s.closed)
		b = append(b, `,"entries":[`...)
		for j, e := range s.entries {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, '[')
			b = appendString(b, e.obj.subject.Name)
			b = append(b, ',')
			b = append(b, e.obj.meta...)
			b = append(b, ',')
			if e.path == nil {
				b = append(b, "null"...)
			} else {
				b = appendString(b, JoinPath(e.path...))
			}
			b = append(b, ',')
			b = strconv.AppendBool(b, e.oldPresent)
			b = append(b, ',')
			if e.oldPresent {
				b = append(b, e.old...)
			} else {
				b = append(b, "null"...)
			}
			b = append(b, `,"`...)
			b = e.by.op.ts.AppendText(b)
			b = append(b, `",`...)
			b = strconv.AppendInt(b, int64(e.by.sub), 10)
			if !e.others.IsZero() {
				b = append(b, `,"`...)
				b = e.others.AppendText(b)
				b = append(b, '"')
			}
			b = append(b, ']')
		}
		b = append(b, `],"group":`...)
		b = appendString(b, s.group)
		b = append(b, `,"inBatch":`...)
		b = strconv.AppendBool(b, s.inBatch)
		b = append(b, '}')
	}
	return append(b, ']')
}

// NewReplicaFromSnapshot restores a replica from Snapshot output. opts.PeerID may be empty
// (the snapshot's peer is used) or must equal it (ErrBadOption). A snapshot of another
// format version is refused with ErrSnapshotVersion, a damaged one with ErrBadSnapshot, one
// over 4 × opts.Limits.MaxMessageBytes with ErrTooLarge. snap is not retained: the caller
// may reuse it once the call returns.
func NewReplicaFromSnapshot(opts Options, snap []byte) (*Replica, error) {
	x, err := StartRestore(opts, snap)
	for err == nil {
		var r *Replica
		if r, err = x.Step(math.MaxInt); r != nil {
			return r, nil
		}
	}
	return nil, err
}

// A Restore is NewReplicaFromSnapshot done in steps, each a bounded share of the work, so
// that a caller on an event loop (the wasm module's glue) can restore a large snapshot
// without blocking the loop for the whole of it: a snapshot of 100,000 live paths takes a
// quarter of a second or more in wasm. StartRestore reads and checks the snapshot's text
// and its header; Step goes on. The replica is the caller's once a Step returns it; until
// then nothing else may use it (nothing else has it). A Restore is not safe for concurrent
// use.
type Restore struct {
	r      *Replica
	ms     []member // the snapshot's members: views of its text, a copy the Restore owns
	clock  hlc.Timestamp
	phase  int // restoreOps, restoreApply, …
	ops    *opsDecoder
	queued []*op // the outbox
	i      int   // the next operation to apply, base to seed or step to read
	list   []string
	steps  []undoStep
	err    error // the error that ended the restore
}

// The phases of a Restore, in order.
const (
	restoreOps   = iota // decoding the log's operations
	restoreApply        // applying them
	restoreBases        // seeding the bases
	restoreUndo         // reading the undo steps
	restoreRedo         // reading the redo steps
	restoreDone
)

// restoreBad and restoreWrap make a restore's errors ErrBadSnapshot, but for the codes a
// snapshot's reader gives itself.
func restoreBad(why string) error { return newError(ErrBadSnapshot, why) }

func restoreWrap(err error) error {
	if e, ok := err.(*Error); ok && (e.sentinel == ErrBadSnapshot || e.sentinel == ErrSnapshotVersion || e.sentinel == ErrBadOption) {
		return err
	}
	return restoreBad(err.Error())
}

// StartRestore begins a restore of snap (see NewReplicaFromSnapshot, whose errors it and
// Step return): it checks the snapshot's text whole, and reads its header. snap is not
// retained: the caller may reuse it once the call returns.
func StartRestore(opts Options, snap []byte) (*Restore, error) {
	bad, wrap := restoreBad, restoreWrap
	lim := opts.Limits
	if lim == (Limits{}) {
		lim = DefaultLimits()
	}
	if len(snap) > lim.maxSnapshot() {
		return nil, newError(ErrTooLarge, "snapshot of "+strconv.Itoa(len(snap))+" bytes")
	}
	ms, err := parseObject(string(snap), lim.wireDepth())
	if err != nil {
		return nil, wrap(err)
	}
	if f, _ := stringValue(field(ms, "format")); f != "mapcrdt-snapshot" {
		return nil, bad("not a mapcrdt snapshot (format " + quote(field(ms, "format")) + ")")
	}
	if v := field(ms, "version"); v != strconv.Itoa(SnapshotVersion) {
		return nil, newError(ErrSnapshotVersion, "snapshot version "+quote(v)+", this engine reads version "+strconv.Itoa(SnapshotVersion))
	}
	for _, f := range []string{"log", "vector", "above"} {
		if !isObject(field(ms, f)) {
			return nil, bad(f + " must be an object")
		}
	}
	for _, f := range []string{"peers", "outbox", "bases", "undo", "redo"} {
		if v := field(ms, f); len(v) == 0 || v[0] != '[' {
			return nil, bad(f + " must be an array")
		}
	}
	peer, ok := stringValue(field(ms, "peer"))
	if !ok || hlc.ValidPeer(peer) != nil {
		return nil, bad("snapshot without a valid peer: " + quote(field(ms, "peer")))
	}
	if opts.PeerID != "" && opts.PeerID != peer {
		return nil, newError(ErrBadOption, "peerId "+quote(opts.PeerID)+" differs from the snapshot's "+quote(peer))
	}
	opts.PeerID = strings.Clone(peer) // kept: see detach
	r, err := newReplica(opts)
	if err != nil {
		return nil, err
	}
	ts := func(name string) (hlc.Timestamp, error) {
		s, ok := stringValue(field(ms, name))
		if !ok {
			return hlc.Timestamp{}, bad(name + " must be a clock")
		}
		t, err := hlc.Parse(s)
		if err != nil {
			return t, bad(name + ": " + err.Error())
		}
		t.Peer = strings.Clone(t.Peer) // kept: see detach
		return t, nil
	}
	clock, err := ts("clock")
	if err != nil {
		return nil, err
	}
	if field(ms, "saved") != "" {
		if r.saved, err = ts("saved"); err != nil {
			return nil, err
		}
	}
	if raw := field(ms, "savedBy"); raw != "" {
		if r.savedBy, err = parseVector(raw); err != nil {
			return nil, wrap(err)
		}
		r.savedBy = detach(r.savedBy)
	}
	if !isObject(field(ms, "seqs")) {
		return nil, bad("seqs must be an object")
	}
	seqs, err := parseVector(field(ms, "seqs"))
	if err != nil {
		return nil, wrap(err)
	}
	r.seqs = ownSeqs{others: detach(seqs)} // the current origin is set below
	origins, err := stringList(field(ms, "origins"))
	if err != nil {
		return nil, wrap(err)
	}
	for _, o := range origins {
		if hlc.ValidPeer(o) != nil || (o != peer && !strings.HasPrefix(o, peer[:min(len(peer), hlc.MaxPeerLen-8)]+"~")) {
			return nil, bad("origin " + quote(o) + " is not the peer " + quote(peer) + " or one of its incarnations")
		}
		r.origins[strings.Clone(o)] = true
	}
	if !r.origins[clock.Peer] {
		return nil, bad("the clock's origin " + quote(clock.Peer) + " is not one of the snapshot's origins")
	}
	// Continue with the clock's origin until the first local edit (see reincarnate).
	r.origin = clock.Peer
	r.seqs.setOrigin(r.origin)
	r.clock = hlc.New(r.origin, r.opts.Wall)
	r.clock.SetMaxDrift(r.opts.MaxDrift)
	r.restored = true
	vv, err := parseVector(field(ms, "vector"))
	if err != nil {
		return nil, wrap(err)
	}
	r.vec.setVector(detach(vv))
	eachMember(field(ms, "above"), func(p, list string) bool {
		if len(list) == 0 || list[0] != '[' {
			err = bad("above: " + quote(p) + " must list seqs")
			return false
		}
		for _, s := range elements(list) {
			n, ok := parseSeq(s)
			if !ok {
				err = bad("above: bad seq " + quote(s))
				return false
			}
			if _, ok := r.vec.above[p]; !ok {
				p = strings.Clone(p)
			}
			r.vec.above[p] = append(r.vec.above[p], n)
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	if r.peers, err = stringList(field(ms, "peers")); err != nil {
		return nil, wrap(err)
	}
	for i, p := range r.peers {
		r.peers[i] = strings.Clone(p)
	}
	x := &Restore{r: r, ms: ms, clock: clock}
	if x.ops, err = r.startOps(field(ms, "log"), 0); err != nil {
		r.dropPending()
		return nil, wrap(err)
	}
	return x, nil
}

// Step goes on with the restore for about work units (an operation or sub-operation to
// decode or apply, an undo entry, a base: each a few microseconds in wasm), and returns the
// replica once restored, nil before. An error ends the restore: every later Step returns it.
func (x *Restore) Step(work int) (*Replica, error) {
	if x.err == nil && x.phase < restoreDone {
		x.err = x.step(max(work, 1))
	}
	if x.err != nil {
		x.r, x.ms, x.ops, x.queued, x.list, x.steps = nil, nil, nil, nil, nil, nil
		return nil, x.err
	}
	if x.phase < restoreDone {
		return nil, nil
	}
	r := x.r
	x.r, x.ms = nil, nil
	return r, nil
}

func (x *Restore) step(work int) error {
	r, ms := x.r, x.ms
	bad, wrap := restoreBad, restoreWrap
	for work > 0 && x.phase < restoreDone {
		switch x.phase {
		case restoreOps:
			done, err := r.stepOps(x.ops, work)
			if err != nil {
				r.dropPending()
				return wrap(err)
			}
			if !done {
				return nil
			}
			work -= len(x.ops.ops) // what is left of it, roughly
			r.commitPending()
			// The outbox: operations stamped but not yet sent when the snapshot was taken.
			// They move to a new origin before they leave (see reincarnate).
			ops := x.ops.ops
			for _, s := range elements(field(ms, "outbox")) {
				i, e := strconv.Atoi(s)
				if e != nil || i < 0 || i >= len(ops) || ops[i].seq != 0 || !r.isOwn(ops[i].ts.Peer) {
					return bad("outbox: bad index " + quote(s))
				}
				x.queued = append(x.queued, ops[i])
			}
			x.phase, x.i = restoreApply, 0
		case restoreApply:
			ops := x.ops.ops
			for ; x.i < len(ops) && work > 0; x.i++ {
				if x.i%gcEvery == gcEvery-1 {
					gcPoint()
				}
				o := ops[x.i]
				work -= 1 + len(o.subOps())
				if r.log.insert(o) {
					r.applyOp(o)
				}
			}
			if x.i < len(ops) {
				return nil
			}
			r.outbox = x.queued
			if err := decodeRestores(field(ms, "restores"), ops); err != nil {
				return err
			}
			x.ops = nil
			r.clock.Observe(x.clock)
			if n := len(r.log.ops); n > 0 {
				r.clock.Observe(r.log.ops[n-1].ts)
			}
			x.phase, x.i, x.list = restoreBases, 0, elements(field(ms, "bases"))
		case restoreBases:
			for ; x.i < len(x.list) && work > 0; x.i++ {
				work--
				p := elements(x.list[x.i])
				if len(p) != 3 {
					return bad("a base is [subject, metadata, value]")
				}
				sub, _ := stringValue((p[0]))
				if _, err := r.Seed(sub, p[1], p[2]); err != nil {
					return wrap(err)
				}
			}
			if x.i < len(x.list) {
				return nil
			}
			x.phase, x.i, x.list = restoreUndo, 0, elements(field(ms, "undo")) // an array: see StartRestore
		case restoreUndo, restoreRedo:
			for ; x.i < len(x.list) && work > 0; x.i++ {
				s, err := r.decodeStep(x.list[x.i])
				if err != nil {
					return err
				}
				work -= 1 + len(s.entries)
				x.steps = append(x.steps, s)
			}
			if x.i < len(x.list) {
				return nil
			}
			if x.phase == restoreUndo {
				r.undo.undo, x.steps = x.steps, nil
				x.phase, x.i, x.list = restoreRedo, 0, elements(field(ms, "redo"))
				continue
			}
			r.undo.redo, x.steps = x.steps, nil
			r.undo.settle(&r.opts)
			r.dec.forget() // the snapshot's text: not kept by the parser's buffers
			x.phase = restoreDone
		}
	}
	return nil
}

// detach returns vv with its peer ids copied. What a restored replica keeps must not point
// into the snapshot's text (as parsing's results do): one string pointing into it keeps it
// all in memory, a copy of the whole snapshot for as long as the replica lives.
//
//go:noinline
func detach(vv VersionVector) VersionVector {
	out := make(VersionVector, len(vv))
	for p, n := range vv {
		out[strings.Clone(p)] = n
	}
	return out
}

// decodeStep reads one undo or redo step of a snapshot.
func (r *Replica) decodeStep(el string) (undoStep, error) {
	bad := func(why string) error { return newError(ErrBadSnapshot, "undo: "+why) }
	var s undoStep
	ms, e := parseObject(el, r.opts.Limits.wireDepth())
	if e != nil {
		return s, bad(e.Error())
	}
	// Nothing kept may be a view of the snapshot's text (see detach): the group, the
	// keys, the clocks' peers are copied or interned.
	s.group, _ = stringValue(field(ms, "group"))
	s.group = strings.Clone(s.group)
	s.at, _ = strconv.ParseInt(field(ms, "at"), 10, 64)
	s.closed = field(ms, "closed") == "true"
	s.inBatch = field(ms, "inBatch") == "true"
	if ents := field(ms, "entries"); len(ents) == 0 || ents[0] != '[' {
		return s, bad("entries must be an array")
	}
	var fields [8]string
	ents := elements(field(ms, "entries"))
	s.entries = make([]undoEntry, 0, len(ents))
	for _, en := range ents {
		p := appendElements(fields[:0], en)
		if len(p) != 7 && len(p) != 8 {
			return s, bad("an entry has 7 or 8 fields, got " + quote(en))
		}
		sub, _ := stringValue((p[0]))
		// Snapshot writes an entry's object by its canonical text, the one the object
		// was first seen with: found by it, without parsing and sorting it again (an
		// undo step of a large import names thousands of objects, each many times).
		obj, e := r.identifyListed(sub, p[1], false)
		var ent undoEntry
		if e == nil && p[2] != "null" {
			key, _ := stringValue((p[2]))
			ent.path, e = r.dec.parseKey(key)
		}
		if e != nil {
			r.dropPending()
			return s, bad(e.Error())
		}
		r.commitPending()
		if r.dec.known(p[1]) == nil && textEqual(obj.meta, p[1]) {
			r.dec.remember(obj)
		}
		ent.obj = obj
		ent.oldPresent = p[3] == "true"
		if ent.oldPresent {
			ent.old, ent.own = strings.Clone(p[4]), true // not a view of the snapshot's text
		}
		hs, _ := stringValue((p[5]))
		t, e := hlc.Parse(hs)
		if e != nil {
			return s, bad(e.Error())
		}
		idx, e := strconv.Atoi(p[6])
		if e != nil || idx < 0 || idx > r.opts.Limits.MaxBatch || idx > math.MaxInt32 {
			// A sub index past the batch limit names no sub-operation (and would
			// overflow the index's int32).
			return s, bad("bad sub index " + quote(p[6]))
		}
		var by *op
		if i, ok := r.log.find(t); ok {
			by = r.log.ops[i]
		} else {
			t.Peer = strings.Clone(t.Peer)
			by = &op{ts: t} // compacted away: the clock is all undo needs
		}
		if idx > 0 && (by.verb != VerbBatch || idx > len(by.subOps())) {
			// A batch compacted away: its clock and the index order the write
			// (compareWrites); it has no sub-operations to read (undoEntry.byMeta).
			by = &op{ts: t, verb: VerbBatch}
		}
		ent.by = write{op: by, sub: int32(idx)}
		if len(p) == 8 {
			hs, _ := stringValue(p[7])
			if ent.others, e = hlc.Parse(hs); e != nil {
				return s, bad(e.Error())
			}
			ent.others.Peer = strings.Clone(ent.others.Peer)
		}
		s.entries = append(s.entries, ent)
		s.bytes += ent.size()
	}
	return s, nil
}

// appendRestores appends ,"restores":[[index, sub, "clock"], …], the writes of local undos
// and redos that restored a peer's work (opExtra.restores), by their operation's index in
// the log and their sub-operation's (0: the operation itself) — nothing when there is none.
func appendRestores(b []byte, ops []*op) []byte {
	n := 0
	for i, o := range ops {
		subs := o.subOps()
		for j := -1; j < len(subs); j++ {
			t, sub := o, 0
			if j >= 0 {
				t, sub = subs[j], j+1
			} else if o.verb == VerbBatch {
				continue
			}
			if t.x == nil || t.x.restores.IsZero() {
				continue
			}
			if n == 0 {
				b = append(b, `,"restores":[`...)
			} else {
				b = append(b, ',')
			}
			n++
			b = append(b, '[')
			b = strconv.AppendInt(b, int64(i), 10)
			b = append(b, ',')
			b = strconv.AppendInt(b, int64(sub), 10)
			b = append(b, `,"`...)
			b = t.x.restores.AppendText(b)
			b = append(b, `"]`...)
		}
	}
	if n > 0 {
		b = append(b, ']')
	}
	return b
}

// decodeRestores reads appendRestores's list (absent: none) onto the log's operations.
func decodeRestores(raw string, ops []*op) error {
	if raw == "" {
		return nil
	}
	bad := func(why string) error { return newError(ErrBadSnapshot, "restores: "+why) }
	if raw[0] != '[' {
		return bad("must be an array")
	}
	for _, el := range elements(raw) {
		p := elements(el)
		if len(p) != 3 {
			return bad("an entry is [index, sub, clock], got " + quote(el))
		}
		i, e1 := strconv.Atoi(p[0])
		sub, e2 := strconv.Atoi(p[1])
		hs, _ := stringValue(p[2])
		t, e3 := hlc.Parse(hs)
		if e1 != nil || e2 != nil || e3 != nil || i < 0 || i >= len(ops) || sub < 0 || sub > len(ops[i].subOps()) ||
			(sub == 0) != (ops[i].verb != VerbBatch) {
			return bad("bad entry " + quote(el))
		}
		target := ops[i]
		if sub > 0 {
			target = ops[i].subOps()[sub-1]
		}
		target.more().restores = t
	}
	return nil
}
