package crdt

import (
	"strconv"
	"strings"

	"github.com/mapcrdt/mapcrdt/hlc"
)

// ingest applies validated remote operations. Duplicates (a clock already held) change
// nothing. It reports whether a live operation revealed a gap in its origin's seqs.
func (r *Replica) ingest(ops []*op) ([]Change, bool, error) {
	// The clock takes the newest of the operations, once: the drift guard passes them all
	// if it passes that one, and the receive rule gives a clock past all of them.
	var newest hlc.Timestamp
	for _, o := range ops {
		if newest.Less(o.ts) {
			newest = o.ts
		}
		if o.ts.Peer == r.origin && o.seq > r.seqs.get(r.origin) {
			if err := r.ownBeyond(o); err != nil {
				r.dropPending()
				return nil, false, err
			}
		}
		if err := r.heldTooLarge(o); err != nil {
			r.dropPending() // the whole message is refused, as for any bad operation in it
			return nil, false, err
		}
	}
	pt := r.clock.WallMillis() // once: the drift guard and the merge below see one reading
	if err := r.clock.CheckDriftAt(newest, pt); err != nil {
		r.dropPending()
		return nil, false, hlcError(err)
	}
	r.commitPending()
	if len(ops) == 1 && ops[0].verb != VerbBatch {
		// One operation (a peer's live edit): ingestOne's insertion tells a duplicate.
		changes, gap := r.ingestOne(ops[0], pt)
		return changes, gap, nil
	}
	// The log first: it tells the operations it did not hold (the duplicates left out), in
	// clock order. The state is read (watch) before any of them is applied.
	added := r.log.insertMany(r.unheld(ops))
	t := r.track(r.changeBuf)
	t.watch(added)
	gap := false
	for i := 0; i < len(ops); {
		o, j := ops[i], i+1
		for j < len(ops) && ops[j].seq == ops[j-1].seq+1 && ops[j].ts.Peer == o.ts.Peer {
			j++ // a run of one peer's consecutive seqs, as a catch-up lists them
		}
		if o.seq > 0 && r.vec.addRun(o.ts.Peer, o.seq, ops[j-1].seq) {
			gap = true
		}
		i = j
	}
	if len(added) < len(ops) {
		r.forgetDuplicates(ops)
	}
	for i, o := range added {
		if i%gcEvery == gcEvery-1 {
			gcPoint()
		}
		r.applyOp(o)
		if r.isOwn(o.ts.Peer) && o.seq > r.seqs.get(o.ts.Peer) {
			r.raiseOwn(o.ts.Peer, o.seq) // ours, sent before the snapshot we were restored from
		}
	}
	if len(added) > 0 {
		_, _ = r.clock.UpdateAt(newest, pt) // drift was checked above, at the same pt
	}
	return t.changes(), gap, nil
}

// ingestOne is ingest for one operation that is not a batch (a live edit of a peer, the
// usual message), without the tracker: the one place it can change is read before and
// after — or not at all when the operation is a duplicate or superseded on arrival.
func (r *Replica) ingestOne(o *op, pt int64) ([]Change, bool) {
	gap := false
	if o.seq > 0 {
		var held bool
		if held, gap = r.vec.take(o.ts.Peer, o.seq); held {
			forget(o)
			return nil, false // a duplicate, or held and dropped by Compact (see unheld)
		}
		gap = gap && r.vec.worthAsking(o.ts.Peer, o.seq)
	}
	if !r.log.insert(o) {
		forget(o)
		return nil, false // a duplicate: asked about when first received
	}
	_, _ = r.clock.UpdateAt(o.ts, pt) // drift was checked by ingest, at pt
	if r.isOwn(o.ts.Peer) && o.seq > r.seqs.get(o.ts.Peer) {
		r.raiseOwn(o.ts.Peer, o.seq)
	}
	if o.verb == VerbUpdate && o.value != "" && !generalOnly {
		if changes, done := r.setPath(o); done {
			return changes, gap
		}
	}
	// What the place holds is read first, then the write applied: apply says whether it is
	// kept (one reading of the kept writes, where keeps and then apply made two).
	s := r.watchOne(o, o.ts)
	if !o.obj.apply(write{op: o}) {
		return nil, gap
	}
	return r.changeAt(&s, o, r.changeBuf), gap
}

// unheld returns ops without those the vector holds: held before and dropped by Compact
// (superseded by what the replica holds), they are duplicates as they are to a replica that
// never compacted, and taking them again would move the clock (an open batch would be sent
// in two parts) and put them back in the log. ops itself when it holds none.
func (r *Replica) unheld(ops []*op) []*op {
	var out []*op
	for i, o := range ops {
		if o.seq > 0 && r.vec.holds(o.ts.Peer, o.seq) {
			if out == nil {
				out = append(make([]*op, 0, len(ops)), ops[:i]...)
			}
		} else if out != nil {
			out = append(out, o)
		}
	}
	if out == nil {
		return ops
	}
	return out
}

// forgetDuplicates clears the operations of ops the log did not take (see forget).
func (r *Replica) forgetDuplicates(ops []*op) {
	for _, o := range ops {
		if i, ok := r.log.find(o.ts); !ok || r.log.ops[i] != o {
			forget(o)
		}
	}
}

// forget clears o, a received operation the log held already, and its sub-operations. It
// came from the replica's blocks (bulk), which live as long as any operation taken from
// them: uncleared, it would keep its copied value — up to a message's size — as long.
func forget(o *op) {
	for _, s := range o.subOps() {
		forget(s)
	}
	*o = op{}
}

// generalOnly has ingestOne, applyOp and commitLocal take the general way for every write:
// set by the test that holds their use of setAt to it (TestSetPathIsTheGeneralWay).
var generalOnly bool

// setPath is ingestOne for a set (an update with a value) on an alive object that keeps no
// write strictly above or below its path — the usual edit of a feature's property or
// geometry: one reading of the kept writes decides what the place held, whether the set is
// kept and which write it replaces (object.setAt), where watchOne, apply and changeAt read
// them three times. It does what they do (TestSetPathIsTheGeneralWay). done false: the case
// is not its own, and nothing was done.
func (r *Replica) setPath(o *op) (changes []Change, done bool) {
	before, present, kept, ok := o.obj.setAt(write{op: o}, o.path, true)
	if !ok || !kept {
		return nil, ok
	}
	var s spot // set field by field: a spot literal is built, then copied (memory.copy in wasm)
	s.obj, s.path, s.first, s.before, s.present, s.watched = o.obj, o.path, o.ts, before, present, true
	return r.dec.appendChange(r.changeBuf, &s, o.value, true), true
}

// watchOne returns the place write sub can change, with what it holds now.
func (r *Replica) watchOne(sub *op, ts hlc.Timestamp) spot {
	s := spot{obj: sub.obj, path: spotOf(sub), first: ts, watched: true}
	if s.path == nil {
		s.before, s.present = s.obj.value()
		s.present = s.present && s.obj.exists()
	} else {
		s.before, s.present = s.obj.valueAt(s.path)
	}
	return s
}

// applyAt applies w, the write of sub, whose place s is watched, and appends the change
// it made, if any, to out[:0] (nil when there is none).
func (r *Replica) applyAt(s *spot, sub *op, w write, out []Change) []Change {
	sub.obj.apply(w)
	return r.changeAt(s, sub, out)
}

// changeAt is applyAt once the write is applied.
func (r *Replica) changeAt(s *spot, sub *op, out []Change) []Change {
	obj := sub.obj
	// A set at its own place of an alive object, with nothing newer kept below it: the
	// place holds its value, without reading the state.
	known := sub.value != "" && len(s.path) == len(sub.path) && len(s.path) > 0 && obj.alive()
	for _, p := range obj.paths {
		if known && int(p.n) > len(sub.path) && hasPrefix(p.path(), sub.path) {
			known = false
		}
	}
	return r.dec.appendChange(out, s, sub.value, known)
}

func (r *Replica) applyOp(o *op) {
	if o.verb != VerbBatch { // the usual case, without a closure call
		if o.verb == VerbUpdate && o.value != "" && !generalOnly {
			if _, _, _, ok := o.obj.setAt(write{op: o}, o.path, false); ok {
				return // a set with no kept write above or below: one reading
			}
		}
		o.obj.apply(write{op: o})
		return
	}
	for i, s := range o.subOps() {
		s.obj.apply(write{op: o, sub: int32(i + 1)})
	}
}

// Edit is one local edit. Apply keeps no part of its strings: it copies what it keeps, so a
// caller may pass views of a buffer it reuses.
type Edit struct {
	// Verb is VerbUpdate, VerbUpsert or VerbDelete.
	Verb Verb
	// Subject and Metadata (JSON object text) name the object.
	Subject, Metadata string
	// Key is the escaped key path of an update (an upsert or a delete takes none: ErrBadKey).
	Key string
	// Value is JSON text: the new value of an update ("" unsets the path) or the whole
	// object of an upsert (a delete takes none: ErrBadValue).
	Value string
	// OldValue is JSON text of the value before the edit, used by undo only when the engine
	// itself has nothing at the path (a value it never saw). Optional. For an upsert or a
	// delete it is the whole object before, or null: there was none (the undo deletes it);
	// any other value is ErrBadValue.
	OldValue string
	// Group joins consecutive edits with the same non-empty group into one undo step — until
	// the step holds more than the undo budget (Limits.MaxMessageBytes of values to restore):
	// the next edit starts a step, and the budget drops the old one.
	Group string
	// NoUndo keeps the edit out of the undo history (uMap's update(…, {undo: false}): a
	// datalayer's _referenceVersion after a save). It makes no undo step and joins none —
	// in a batch it joins the batch's message, not its step — and leaves the redo stack as
	// it is. The undo or redo of an older step leaves a place it wrote since as it is, like
	// a peer's later write, and reports it skipped (doc.go, "Undo"). It is an edit like
	// any other for Dirty: what it wrote is to be saved.
	NoUndo bool
}

// Apply makes one local edit: stamps it, applies it, queues its message in the outbox and
// records its undo step. It returns the visible changes (for onChange listeners).
//
// Like Receive's, the changes of successive calls are cut from one block.
func (r *Replica) Apply(e Edit) ([]Change, error) {
	changes, err := r.ApplyAppend(r.chunk(), e)
	return r.cut(changes), err
}

// ApplyAppend is Apply appending the changes to changes[:0]: a caller making many edits
// reuses one buffer.
func (r *Replica) ApplyAppend(changes []Change, e Edit) ([]Change, error) {
	r.changeBuf = changes[:0]
	defer func() { r.changeBuf = nil }()
	// The edit, what it overwrites, the undo entry and the options go by address: in wasm a
	// struct of more than 16 bytes passed or returned by value is a memory.copy (a call into
	// the engine, ~8 ns), and these were ten of them an edit.
	var old oldValue
	sub, err := r.prepare(&e, &old)
	if err != nil {
		return nil, err
	}
	if e.NoUndo {
		changes, w := r.commitLocal(sub, &old)
		// Its own clock as the work it "restores": othersClock and othersWroteSince then
		// take it as another peer's write, and snapshots keep it (appendRestores).
		w.target().more().restores = w.op.ts
		return changes, nil
	}
	if len(r.undo.redo) > 0 {
		clear(r.undo.redo) // the array must not keep the steps' operations and values
		r.undo.redo = r.undo.redo[:0]
	}
	place, before, present, others := r.undoPlace(sub.obj, rootOrPath(sub), &old)
	changes, w := r.commitLocal(sub, &old)
	// The capture interval is on the wall clock: the clock's own walltime can run ahead of it
	// for as long as a peer's clock is ahead of ours, and would join edits made far apart.
	var at int64
	if r.opts.CaptureInterval > 0 {
		at = r.clock.WallMillis()
	}
	u := r.undo.entry()
	u.obj, u.path, u.old, u.oldPresent, u.by, u.others = sub.obj, place, before, present, w, others
	r.undo.record(u, e.Group, r.batch != nil, at, &r.opts)
	return changes, nil
}

// Update sets key of the object to value (JSON text).
func (r *Replica) Update(subject, metadata, key, value string) ([]Change, error) {
	if value == "" {
		return nil, newError(ErrBadValue, "update needs a value; use Unset to remove a key")
	}
	return r.Apply(Edit{Verb: VerbUpdate, Subject: subject, Metadata: metadata, Key: key, Value: value})
}

// Unset removes key from the object.
func (r *Replica) Unset(subject, metadata, key string) ([]Change, error) {
	return r.Apply(Edit{Verb: VerbUpdate, Subject: subject, Metadata: metadata, Key: key})
}

// Upsert replaces the whole object with value (a JSON object) and makes it alive.
func (r *Replica) Upsert(subject, metadata, value string) ([]Change, error) {
	return r.Apply(Edit{Verb: VerbUpsert, Subject: subject, Metadata: metadata, Value: value})
}

// Delete makes the object absent.
func (r *Replica) Delete(subject, metadata string) ([]Change, error) {
	return r.Apply(Edit{Verb: VerbDelete, Subject: subject, Metadata: metadata})
}

type oldValue struct {
	value      string
	present    bool
	fromCaller bool          // Edit.OldValue, not what the state holds
	others     hlc.Timestamp // the newest work of another peer the value holds (othersIn)
}

// prepare validates a local edit into a sub-operation (no clock yet) and reads the value it
// will overwrite into old (zero on entry). Nothing changes on error.
func (r *Replica) prepare(e *Edit, old *oldValue) (*op, error) {
	obj, meta, err := r.identifyWithMeta(e.Subject, e.Metadata, e.Verb == VerbUpdate)
	if err != nil {
		r.dropPending()
		return nil, err
	}
	o := r.bulk.next()
	o.verb, o.obj = e.Verb, obj
	if !textEqual(meta, obj.meta) {
		o.setMeta(strings.Clone(meta)) // featureType and the like travel with the edit
	}
	switch e.Verb {
	case VerbUpdate:
		if o.path, err = r.dec.parseKey(e.Key); err != nil {
			break
		}
		o.setKey(e.Key)
		if e.Value != "" {
			o.value, err = r.canonicalValue(&r.bulk, e.Value)
		}
	case VerbUpsert:
		if e.Key != "" {
			err = newError(ErrBadKey, "upsert takes no key: it replaces the whole object (update sets one key)")
			break
		}
		if o.value, err = r.canonicalValue(&r.bulk, e.Value); err == nil && !isObject(o.value) {
			err = newError(ErrBadValue, "upsert needs an object value, got "+quote(o.value))
		}
	case VerbDelete:
		// A key or value would be ignored: a caller meaning to remove one key would delete
		// the whole object.
		if e.Key != "" {
			err = newError(ErrBadKey, "delete takes no key: it deletes the whole object (an update without a value unsets one key)")
		} else if e.Value != "" {
			err = newError(ErrBadValue, "delete takes no value")
		}
	default:
		err = newError(ErrUnknownVerb, "a local edit is update, upsert or delete, not "+quote(e.Verb.String()))
	}
	if err == nil {
		err = r.opts.Limits.checkDepth(o.value, o.path)
	}
	size := 0
	if err == nil {
		size, err = r.fitsMessage(o, meta, e.Key)
	}
	if err == nil {
		var from write
		var one bool
		old.value, old.present, from, one = obj.valueAtFrom(o.path)
		if one {
			old.others = r.othersClock(from)
		} else {
			old.others = r.othersIn(obj, o.path)
		}
		if e.Verb != VerbUpdate {
			old.present = old.present && obj.exists()
		}
		if !old.present && e.OldValue != "" {
			if old.value, err = r.canonicalValue(nil, e.OldValue); err == nil {
				old.present, old.fromCaller = true, true
				if e.Verb != VerbUpdate && !isObject(old.value) {
					// The whole object before: null says there was none (uMap's
					// upsert(value, null) of a feature it makes); nothing else is one.
					if old.value == "null" {
						*old = oldValue{others: old.others}
					} else {
						err = newError(ErrBadValue, "the old value of an "+e.Verb.String()+" is the whole object before it, or null for none, not "+quote(old.value))
					}
				}
			}
		}
	}
	if err != nil {
		r.dropPending()
		return nil, err
	}
	r.commitPending()
	if r.batch != nil {
		if r.batchOvertaken() {
			r.sealBatch()
		}
		r.batchBytes += size
	}
	return o, nil
}

// fitsMessage refuses (ErrTooLarge) a local edit whose message would be more than a peer
// takes: the edit alone, or the open batch with it, over Limits.MaxMessageBytes, or a batch
// of more than Limits.MaxBatch edits. Peers would refuse that message, every time it was
// sent: the edit would stay on this replica alone. It returns the bytes the edit adds to a
// batch's message (an upper bound).
func (r *Replica) fitsMessage(o *op, meta, key string) (int, error) {
	lim := &r.opts.Limits
	envelope := r.envelopeSize()
	if r.batch == nil {
		// The usual edit, far below the limit even with every byte of the key and subject
		// escaped (\u00XX): their exact length is not needed (the walk over the key cost ~5%
		// of a local edit).
		if n := 62 + 6*(len(o.obj.subject.Name)+len(key)) + len(meta) + len(o.value); n+envelope <= lim.MaxMessageBytes {
			return n, nil
		}
	}
	n := subSize(o.obj.subject.Name, meta, key, o.value)
	if r.batch == nil || r.batchOvertaken() { // alone, or the first of the batch's next part (prepare)
		if n+envelope > lim.MaxMessageBytes {
			return 0, newError(ErrTooLarge, "an edit of about "+strconv.Itoa(n)+" bytes: its message would be more than "+
				strconv.Itoa(lim.MaxMessageBytes)+" (limits.maxMessageBytes)")
		}
		return n, nil
	}
	if len(r.batch.subOps()) >= lim.MaxBatch {
		return 0, newError(ErrTooLarge, "a batch of more than "+strconv.Itoa(lim.MaxBatch)+
			" edits (limits.maxBatch): commit it and start another")
	}
	if r.batchBytes+n+envelope > lim.MaxMessageBytes {
		return 0, newError(ErrTooLarge, "this edit would make the batch's message more than "+strconv.Itoa(lim.MaxMessageBytes)+
			" bytes (limits.maxMessageBytes): commit it and start another")
	}
	return n, nil
}

// envelopeSize is about the most bytes of an OperationMessage of this replica around its
// operation or its batch's operations:
// {"kind":"OperationMessage","sender":"…","verb":"batch","operations":[…],"hlc":"…",
// "seq":…}, its clock's walltime, counter and seq at their longest, and the origin as a
// restored replica's may be (peer~suffix).
func (r *Replica) envelopeSize() int { return 140 + len(r.peer) + len(r.origin) + 8 }

// subSize is about the most bytes an operation takes in a batch's message, and a comma:
// {"verb":"update","subject":"…","metadata":…,"key":"…","value":…}.
func subSize(subject, meta, key, value string) int {
	return 62 + jsonStringLen(subject) + len(meta) + jsonStringLen(key) + len(value)
}

// heldTooLarge refuses (ErrTooLarge) a peer's operation o larger than this replica's own
// edits can be: its text as a sync response lists it in uMap's plain form (appendOp without
// a sender: a local edit's OperationMessage, less its kind and sender) over
// Limits.MaxMessageBytes. fitsMessage keeps every local edit's message within the limit, so
// a peer with the same limits never makes such an operation; one with larger limits can,
// and it reaches this replica inside a sync response (4 KiB past the limit, peerRoom). Held,
// it could not be paged to a peer with this replica's limits: a page of one operation is at
// most its text (the compact form writes no more) and the envelope, within peerRoom. The
// measure is the operation's own, whatever message carried it, so replicas of the same
// limits agree on it.
func (r *Replica) heldTooLarge(o *op) error { return r.tooLarge(o, r.opts.Limits.MaxMessageBytes) }

// tooLarge is heldTooLarge against the limit max: a peer's (peerLimit), for a page to it.
func (r *Replica) tooLarge(o *op, max int) error {
	if textBound(o) <= max {
		return nil // the usual operation, far below the limit: no need to count its text
	}
	if n := r.opTextLen(o, max); n > max {
		return newError(ErrTooLarge, "an operation of "+strconv.Itoa(n)+" bytes or more: larger than an edit may be (limits.maxMessageBytes "+
			strconv.Itoa(max)+")")
	}
	return nil
}

// textBound is more than the length of o's text as appendOp writes it without a sender:
// wireSize counts its values, metadata and unknown fields once, and its keys twice, where a
// key's text may take 6 bytes a byte (\u00XX) at worst; a batch's own unknown fields apart.
func textBound(o *op) int {
	if o.verb == VerbBatch {
		return 3*wireSize(o) + len(o.extra())
	}
	// wireSize of one write, without its walk (a receive's hot path)
	n := 96 + len(o.ts.Peer) + 64 + len(o.value) + len(o.obj.meta) + len(o.obj.subject.Name)
	for _, part := range o.path {
		n += 2 * (len(part) + 1)
	}
	if o.x != nil {
		n += len(o.x.key) + len(o.x.extra) + len(o.x.meta)
	}
	return 3*n + len(o.extra())
}

// opTextLen is the length of o's text as appendOp writes it without a sender — or, once
// that passes max, a length past max: a batch's text is counted one sub-operation at a time,
// and the count stops there (a compact response writes an object's metadata once, which
// each sub-operation's text repeats: a message of the limit may hold a batch whose text is
// far larger, not to be written whole).
func (r *Replica) opTextLen(o *op, max int) int {
	if o.verb != VerbBatch {
		return len(appendOpWith(&r.dec, nil, o, ""))
	}
	head := op{ts: o.ts, seq: o.seq, verb: VerbBatch, x: &opExtra{extra: o.extra()}} // its own members
	n := len(appendOpWith(nil, nil, &head, ""))
	var buf []byte
	for i, s := range o.subOps() {
		if i > 0 {
			n++ // the comma
		}
		buf = appendOpWith(&r.dec, buf[:0], s, "")
		if n += len(buf); n > max {
			break
		}
	}
	return n
}

// jsonStringLen is the length of s written as a JSON string, quotes excluded, at most.
func jsonStringLen(s string) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			n++
		} else if c < 0x20 {
			n += 5
		}
	}
	return n
}

func rootOrPath(o *op) []string {
	if o.verb == VerbUpdate {
		return o.path
	}
	return nil
}

// commitLocal stamps sub (inside the open batch, or as an operation of its own), applies it
// and queues it. It returns the changes and the write it made.
func (r *Replica) commitLocal(sub *op, old *oldValue) ([]Change, write) {
	var top *op
	var idx int32
	if r.batch != nil {
		top = r.batch
		top.addSub(sub)
		idx = int32(len(top.subOps()))
		if idx == 1 {
			top.ts = r.now()
			r.log.insert(top)
		}
	} else {
		top = sub
		top.ts = r.now()
		r.log.insert(top)
		r.outbox = append(r.outbox, top)
	}
	var s spot
	if path := spotOf(sub); len(path) == len(rootOrPath(sub)) && !old.fromCaller {
		// The place is the written path: what prepare read there is the "before". (Set
		// field by field: a spot literal is built, then copied, a memory.copy in wasm.)
		s.obj, s.path, s.first, s.before, s.present, s.watched = sub.obj, path, top.ts, old.value, old.present, true
	} else {
		s = r.watchOne(sub, top.ts)
	}
	w := write{op: top, sub: idx}
	if sub.verb == VerbUpdate && sub.value != "" && len(s.path) == len(sub.path) && !generalOnly {
		// A set at its own place: as setPath does for a received one.
		if _, _, kept, ok := sub.obj.setAt(w, sub.path, false); ok {
			if kept {
				return r.dec.appendChange(r.changeBuf, &s, sub.value, true), w
			}
			return nil, w
		}
	}
	return r.applyAt(&s, sub, w, r.changeBuf), w
}

// StartBatch opens a local batch: the edits until CommitBatch become one batch operation
// with one clock (taken at its first edit), applied as they are made, sent as one message
// and undone as one step.
//
// A batch left open while remote operations arrive (Receive between two of its edits) is
// sent in parts, in order, one message each: the edits made after the receive are a new
// batch operation with a clock after what was received. With one clock for the whole
// batch, an edit made after seeing a peer's write of the same place would be older than
// it, and lose to it on every replica. The parts stay one undo step.
func (r *Replica) StartBatch() error {
	if r.batch != nil {
		return newError(ErrBadState, "a batch is already open")
	}
	r.batch = &op{verb: VerbBatch}
	r.batchBytes = 0
	r.undo.closeTop()
	return nil
}

// batchOvertaken reports whether the open batch holds edits and the clock has moved past
// its clock since (only a receive moves it while a batch is open).
func (r *Replica) batchOvertaken() bool {
	return r.batch != nil && len(r.batch.subOps()) > 0 && r.clock.Last() != r.batch.ts
}

// sealBatch queues the open batch's edits so far as one batch operation and opens the
// next part (see StartBatch).
func (r *Replica) sealBatch() {
	r.outbox = append(r.outbox, r.batch)
	r.batch = &op{verb: VerbBatch}
	r.batchBytes = 0
}

// CommitBatch closes the open batch and queues it. An empty batch sends nothing.
func (r *Replica) CommitBatch() error {
	b := r.batch
	if b == nil {
		return newError(ErrBadState, "no batch is open")
	}
	r.batch = nil
	r.undo.closeTop()
	if len(b.subOps()) > 0 {
		r.outbox = append(r.outbox, b)
	}
	return nil
}

// InBatch reports whether a batch is open.
func (r *Replica) InBatch() bool { return r.batch != nil }

// Seed sets the base value of an object: what the page loaded from the server. It is a
// write at the zero clock, never sent and never undone: every operation overrides it.
func (r *Replica) Seed(subject, metadata, value string) ([]Change, error) {
	obj, err := r.identify(subject, metadata)
	if err != nil {
		r.dropPending()
		return nil, err
	}
	v, err := r.canonicalValue(nil, value)
	if err == nil && !isObject(v) {
		err = newError(ErrBadValue, "a base value must be an object, got "+quote(v))
	}
	if err != nil {
		r.dropPending()
		return nil, err
	}
	r.commitPending()
	base := &op{verb: VerbUpsert, obj: obj, value: v}
	t := r.track(nil)
	t.add(obj, nil, hlc.Timestamp{})
	t.watch(nil)
	obj.apply(write{op: base})
	return t.changes(), nil
}

// ownBeyond decides about a received operation under this replica's own origin with a seq
// above the last it published. Before the replica stamps anything under its origin (fresh,
// or restored from a snapshot), that is its own earlier work — a reload, a stale snapshot —
// and is taken: raiseOwn then moves the replica's next edits to a new origin. Once it has
// stamped, no such operation can exist: a peer forged it, and taking it would number this
// replica's next edits after a seq it never made — a hole every peer would ask about on each
// edit, or past the largest seq a peer takes, every edit refused. It is refused. (o nil: a
// vector's claim of such operations.)
func (r *Replica) ownBeyond(o *op) error {
	if !r.stamped || r.restored {
		return nil
	}
	if o == nil {
		return newError(ErrBadMessage, "a claim of operations of this replica's own origin "+quote(r.origin)+" it never made")
	}
	return newError(ErrBadMessage, "an operation under this replica's own origin "+quote(r.origin)+" with seq "+
		strconv.FormatUint(o.seq, 10)+", above the last it made ("+strconv.FormatUint(r.seqs.get(r.origin), 10)+")")
}

// raiseOwn records seq as the last one of the replica's origin, taken from a peer (see
// ownBeyond): under its current origin, the next edits then go to a new one.
func (r *Replica) raiseOwn(origin string, seq uint64) {
	r.seqs.set(origin, seq)
	if origin == r.origin {
		r.ownSeen = true
	}
}
