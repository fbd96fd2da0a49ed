package crdt

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/mapcrdt/mapcrdt/hlc"
)

// CompactStats says what Compact dropped.
type CompactStats struct {
	// Ops is how many operations left the log.
	Ops int
	// Bytes is their size as wire JSON.
	Bytes int
	// Remaining is how many operations the log still holds.
	Remaining int
}

// Compact drops from the log every operation whose every write is superseded — by a newer
// write to the same path or to an ancestor path, or by a newer upsert or delete of the
// object. The state does not change, and sync stays exact: what supersedes a dropped
// operation is held and sent, and a version vector still covers the dropped seqs (see
// doc.go, "Compaction").
//
// Operations that are still visible stay, even below the saved horizon: a replica that
// lacks one cannot be told apart from one that never needs it, and dropping it would let
// an older write from an offline peer win where it must not. The ones kept are moved out
// of the blocks they were allocated in (see bulk), so that the memory of the dropped ones
// comes back.
//
// An operation superseded while local edits wait unpublished (the outbox, an open batch)
// is kept if it writes an object they write: the edit superseding it may never go out (a
// tab closed before the flush, a reload from an older snapshot), and a vector claiming
// the dropped one would hide it from every peer that asks this replica.
func (r *Replica) Compact() CompactStats {
	var st CompactStats
	queued := map[*op]bool{}
	for _, o := range r.outbox {
		queued[o] = true
	}
	unpublished := r.unpublishedObjects()
	var dropped []*op
	st.Ops = r.log.remove(func(o *op) bool {
		if o.live > 0 || o == r.batch || queued[o] || touches(o, unpublished) {
			return false
		}
		st.Bytes += len(appendOp(nil, o, ""))
		dropped = append(dropped, o)
		return true
	})
	st.Remaining = len(r.log.ops)
	// Nothing of the replica reads a dropped operation's values now: an undo entry naming
	// it as the write it undoes reads its clock and metadata only (undoEntry.by). Its values
	// are let go before moveOut copies it for that entry — an undo step kept a dragged
	// polygon's every superseded geometry alive through them, and a copy of each at every
	// Compact, and the block being filled (bulk) kept the last hundred dropped.
	for _, o := range dropped {
		o.writes(func(w *op, _ int32) { w.value = "" })
	}
	r.moveOut()
	return st
}

// unpublishedObjects returns the objects written by local operations not yet published
// (the outbox and the open batch), nil if there are none.
func (r *Replica) unpublishedObjects() map[*object]bool {
	if len(r.outbox) == 0 && r.batch == nil {
		return nil
	}
	objs := map[*object]bool{}
	add := func(w *op, _ int32) { objs[w.obj] = true }
	for _, o := range r.outbox {
		o.writes(add)
	}
	if r.batch != nil {
		r.batch.writes(add)
	}
	return objs
}

// touches reports whether o writes one of objs.
func touches(o *op, objs map[*object]bool) bool {
	if objs == nil {
		return false
	}
	found := false
	o.writes(func(w *op, _ int32) { found = found || objs[w.obj] })
	return found
}

// moveOut gives each operation still referenced that was taken from a block (op.blk) an
// allocation of its own, with a copy of its value, and points every reference at it: the
// log, batches' sub-operations, the outbox and the open batch, the objects' writes, and
// the undo and redo steps, whose entries (cut from shared chunks) and the values they
// restore are copied too. The blocks are then garbage — but the one being filled, and
// what a caller still holds of results — and the memory of the operations Compact dropped
// comes back even where they shared a block with kept ones. It returns how many
// operations it moved.
func (r *Replica) moveOut() int {
	moved := map[*op]*op{}
	// mv returns where o lives now, moving it (and its blocked sub-operations) the first
	// time it is met.
	var mv func(o *op) *op
	mv = func(o *op) *op {
		if o == nil || !o.blk {
			return o
		}
		if n, ok := moved[o]; ok {
			return n
		}
		n := new(op)
		*n = *o
		n.blk = false
		n.value = strings.Clone(o.value)
		moved[o] = n
		n.moveSubs(mv) // o.x is n's now: o is garbage once every reference is moved
		return n
	}
	for i, o := range r.log.ops {
		if o.blk {
			r.log.ops[i] = mv(o)
		} else {
			o.moveSubs(mv) // a local batch: its edits are blocked
		}
	}
	for i, o := range r.outbox {
		r.outbox[i] = mv(o) // in the log: moved above
	}
	// The open batch (allocated alone) is in the log once it has an edit: its edits moved.
	r.objects.each(func(ob *object) {
		ob.root.op = mv(ob.root.op)
		for i := range ob.paths {
			ob.paths[i].op = mv(ob.paths[i].op)
		}
	})
	r.undo.moveOut(mv)
	r.one = [1]*op{}
	r.changeChunk = nil // it holds the values of changes already handed out
	// The originals stay in their block while it lives (the one being filled, bulk): their
	// copies have the values now. (Their opExtra is their copies'.)
	for o := range moved {
		o.value = ""
	}
	return len(moved)
}

// moveSubs points o's sub-operations at where mv moves them.
func (o *op) moveSubs(mv func(*op) *op) {
	if o.x == nil {
		return
	}
	for i, s := range o.x.subs {
		o.x.subs[i] = mv(s)
	}
}

// LogLen returns how many operations the log holds.
func (r *Replica) LogLen() int { return len(r.log.ops) }

// The compact encoding of a set of operations, used by snapshots and by sync responses to
// mapcrdt peers (DESIGN §6 "catch-up by snapshot"). Operations are listed in clock order as
// arrays; peers, subjects and metadata are written once and referred to by index, and
// walltimes are deltas from the previous operation:
//
//	{"objects":[["feature",{"id":…,"layerId":…}],…], "peers":["p0",…],
//	 "ops":[[dWall,counter,peer,seq, 1,obj,"key",value?],   update (no value: unset)
//	        [dWall,counter,peer,seq, 2,obj,value],          upsert
//	        [dWall,counter,peer,seq, 3,obj],                delete
//	        [dWall,counter,peer,seq, 4,[[verb,obj,…],…]],   batch, sub-operations as above
//	        {…}]}                                           an operation with extra fields, as on the wire
//
// A batch lists only its sub-operations still visible; their order is kept.

type opsEncoder struct {
	peers    map[string]int
	objs     table64[int] // object address → its index (a Go map: a runtime call a lookup)
	peerArr  []byte
	objArr   []byte
	opsArr   []byte
	np, no   int
	nops     int    // the operations added
	lastPeer string // the peer last looked up, and its index
	lastIdx  int
	wall     int64
	all      bool     // keep every sub-operation of a batch (snapshots), not only the visible ones
	dec      *decoder // the key texts it remembers (appendKey)
}

// newOpsEncoder returns an encoder writing the keys d remembers from their JSON text (d may
// be nil).
func newOpsEncoder(d *decoder) *opsEncoder {
	return &opsEncoder{peers: map[string]int{}, dec: d}
}

func (e *opsEncoder) peer(p string) int {
	// Operations come in runs from one peer, and peer ids are interned: the last one is
	// known by its address, without hashing the id.
	if unsafe.StringData(p) == unsafe.StringData(e.lastPeer) && len(p) == len(e.lastPeer) {
		return e.lastIdx
	}
	if i, ok := e.peers[p]; ok {
		e.lastPeer, e.lastIdx = p, i
		return i
	}
	if e.np > 0 {
		e.peerArr = append(e.peerArr, ',')
	}
	e.peerArr = appendString(e.peerArr, p)
	e.peers[p] = e.np
	e.lastPeer, e.lastIdx = p, e.np
	e.np++
	return e.np - 1
}

func (e *opsEncoder) object(o *object) int {
	addr := uint64(uintptr(unsafe.Pointer(o))) // nonzero; the replica keeps o alive
	if i := e.objs.get(addr); i != nil {
		return *i
	}
	if e.no > 0 {
		e.objArr = append(e.objArr, ',')
	}
	e.objArr = append(e.objArr, '[')
	e.objArr = appendString(e.objArr, o.subject.Name)
	e.objArr = append(e.objArr, ',')
	e.objArr = append(e.objArr, o.meta...)
	e.objArr = append(e.objArr, ']')
	e.objs.add(addr, e.no)
	e.no++
	return e.no - 1
}

// appendNum appends u in decimal. The encoder's numbers are small (indexes, counters, clock
// deltas, seqs): one digit is one byte, and the rest goes to hlc.AppendDecimal, where
// strconv would cost three calls and a 64-bit division by 100 a pair of digits in wasm.
func appendNum(b []byte, u uint64) []byte {
	if u < 10 {
		return append(b, byte('0'+u))
	}
	if u < 1e16 {
		return hlc.AppendDecimal(b, u)
	}
	return strconv.AppendUint(b, u, 10)
}

// add appends one operation (ops must come in clock order).
func (e *opsEncoder) add(o *op) {
	if e.nops > 0 {
		e.opsArr = append(e.opsArr, ',')
	}
	e.nops++
	if hasExtra(o) {
		e.opsArr = appendOp(e.opsArr, o, "")
		return
	}
	b := append(e.opsArr, '[')
	if d := o.ts.Wall - e.wall; d >= 0 {
		b = appendNum(b, uint64(d))
	} else {
		b = strconv.AppendInt(b, d, 10)
	}
	e.wall = o.ts.Wall
	b = append(b, ',')
	b = appendNum(b, uint64(o.ts.Counter))
	b = append(b, ',')
	b = appendNum(b, uint64(e.peer(o.ts.Peer)))
	b = append(b, ',')
	b = appendNum(b, o.seq)
	b = append(b, ',')
	if o.verb == VerbBatch {
		b = append(b, "4,["...)
		n := 0
		for i, s := range o.subOps() {
			if !e.all && !subLive(o, int32(i+1)) {
				continue
			}
			if n > 0 {
				b = append(b, ',')
			}
			n++
			b = append(b, '[')
			b = e.appendSub(b, s)
			b = append(b, ']')
		}
		b = append(b, ']')
	} else {
		b = e.appendSub(b, o)
	}
	e.opsArr = append(b, ']')
}

// hasExtra reports whether o carries what the compact form has no place for: unknown
// fields, or metadata of its own.
func hasExtra(o *op) bool {
	if o.extra() != "" || o.meta() != "" {
		return true
	}
	for _, s := range o.subOps() {
		if s.extra() != "" || s.meta() != "" {
			return true
		}
	}
	return false
}

// subLive reports whether sub-operation i of batch o is still visible.
func subLive(o *op, i int32) bool {
	s := o.subOps()[i-1]
	w := write{op: o, sub: i}
	if s.verb != VerbUpdate {
		return s.obj.root == w
	}
	for _, p := range s.obj.paths {
		if p.w() == w {
			return true
		}
	}
	return false
}

func (e *opsEncoder) appendSub(b []byte, s *op) []byte {
	b = appendNum(b, uint64(s.verb))
	b = append(b, ',')
	b = appendNum(b, uint64(e.object(s.obj)))
	switch s.verb {
	case VerbUpdate:
		b = append(b, ',')
		if s.x != nil && s.x.key != "" {
			b = appendString(b, s.x.key)
		} else {
			b = e.dec.appendKey(b, s.path)
		}
		if s.value != "" {
			b = append(b, ',')
			b = append(b, s.value...)
		}
	case VerbUpsert:
		b = append(b, ',')
		b = append(b, s.value...)
	}
	return b
}

// appendState writes ops (in clock order) in the compact encoding, without keeping the
// operations' text apart from b: a first pass numbers their objects, in the order add
// meets them, and the operations are then written into b itself (the peers follow them).
// opsSize is about what the operations take. The encoder must be new.
func (e *opsEncoder) appendState(b []byte, ops []*op, opsSize int) []byte {
	for _, o := range ops {
		if hasExtra(o) {
			continue // written whole, naming no object by number
		}
		if o.verb != VerbBatch {
			e.object(o.obj)
			continue
		}
		for i, s := range o.subOps() {
			if e.all || subLive(o, int32(i+1)) {
				e.object(s.obj)
			}
		}
	}
	b = slices.Grow(b, len(e.objArr)+opsSize+len(e.peerArr)+32)
	b = append(b, `{"objects":[`...)
	b = append(b, e.objArr...)
	b = append(b, `],"ops":[`...)
	e.opsArr = b
	for i, o := range ops {
		if i%gcEvery == gcEvery-1 {
			gcPoint()
		}
		e.add(o)
	}
	b, e.opsArr = e.opsArr, nil
	b = append(b, `],"peers":[`...)
	b = append(b, e.peerArr...)
	return append(b, "]}"...)
}

// decodeOps reads the compact encoding back into operations (objects pending). maxOps
// bounds how many (Limits.MaxBatch for a sync response); 0 means no bound but the size of
// raw (a snapshot's log holds every live operation of the replica).
func (r *Replica) decodeOps(raw string, maxOps int) ([]*op, error) {
	d, err := r.startOps(raw, maxOps)
	for err == nil {
		var done bool
		if done, err = r.stepOps(d, math.MaxInt); done {
			return d.ops, err
		}
	}
	return nil, err
}

// opsDecoder is decodeOps under way: a restore (Restore) decodes a snapshot's log a share
// at a time.
type opsDecoder struct {
	peers       []string
	objs        listedObjects
	it          elemIter // over the operations
	wall        int64    // the last operation's walltime (each holds the difference)
	n, maxOps   int
	ops         []*op
	buf, subBuf [8]string
}

// startOps reads the peers and objects of a compact encoding, and readies its operations.
func (r *Replica) startOps(raw string, maxOps int) (*opsDecoder, error) {
	if !isObject(raw) {
		return nil, newError(ErrBadMessage, "compact operations must be an object")
	}
	ms := validMembersEnds(nil, raw, r.dec.ends) // raw is a value of a parsed message or snapshot
	var err error
	bad := func(why string) error { return newError(ErrBadMessage, "compact operations: "+why) }
	peers, err := stringList(field(ms, "peers"))
	if err != nil {
		return nil, err
	}
	for _, p := range peers {
		if e := hlc.ValidPeer(p); e != nil {
			return nil, bad("peer " + quote(p) + ": " + e.Error())
		}
	}
	rawObjs := field(ms, "objects")
	if len(rawObjs) == 0 || rawObjs[0] != '[' {
		return nil, bad("objects must be an array")
	}
	var idents [][2]string // subject, metadata
	eachElement(rawObjs, func(el string) bool {
		var two [3]string
		parts := appendElements(two[:0], el)
		if len(parts) != 2 {
			err = bad("an object is [subject, metadata], got " + quote(el))
			return false
		}
		sub, ok := stringValue((parts[0]))
		if !ok {
			err = bad("subject must be a string, got " + quote(parts[0]))
			return false
		}
		idents = append(idents, [2]string{sub, parts[1]})
		return true
	})
	if err != nil {
		return nil, err
	}
	r.reserve(len(idents)) // room for the new ones, without growing
	rawOps := field(ms, "ops")
	if len(rawOps) == 0 || rawOps[0] != '[' {
		return nil, bad("ops must be an array")
	}
	return &opsDecoder{peers: peers, objs: newListedObjects(idents), it: elementsOf(rawOps), maxOps: maxOps}, nil
}

// stepOps decodes operations until work is spent (an operation counts 1, and 1 for each of
// its sub-operations); done is true at the end of the list.
func (r *Replica) stepOps(d *opsDecoder, work int) (done bool, err error) {
	bad := func(why string) error { return newError(ErrBadMessage, "compact operations: "+why) }
	for work > 0 {
		p, el, more := d.it.nextParts(d.buf[:0])
		if !more {
			return true, d.objs.rest(r)
		}
		if d.n++; d.maxOps > 0 && d.n > d.maxOps {
			return false, newError(ErrTooLarge, "more than "+strconv.Itoa(d.maxOps)+" operations")
		}
		if d.n%gcEvery == 0 {
			gcPoint()
		}
		work--
		if isObject(el) {
			m := r.dec.elemMembers(el)
			o, err := r.dec.decodeOp(m, true)
			if err != nil {
				return false, err
			}
			d.ops = append(d.ops, o)
			continue
		}
		if len(p) < 6 {
			return false, bad("an operation array is too short: " + quote(el))
		}
		dw, ok1 := decimal(p[0], true)
		cnt, ok2 := decimal(p[1], false)
		pi, ok3 := decimal(p[2], false)
		sq, ok4 := decimal(p[3], false)
		if !ok1 || !ok2 || !ok3 || !ok4 || pi >= int64(len(d.peers)) || cnt > hlc.MaxCounter || sq >= 1<<53 {
			return false, bad("bad clock or seq in " + quote(el))
		}
		d.wall += dw
		if d.wall < 0 || d.wall > hlc.MaxWall {
			return false, newError(ErrBadHLC, "walltime out of range in "+quote(el))
		}
		ts := hlc.Timestamp{Wall: d.wall, Counter: uint32(cnt), Peer: r.dec.peer(d.peers[pi])}
		seq := uint64(sq)
		var o *op
		if p[4] == "4" {
			o = r.bulk.next()
			o.ts, o.seq, o.verb = ts, seq, VerbBatch
			eachElement(p[5], func(s string) bool {
				var sub *op
				if sub, err = r.decodeSub(appendElements(d.subBuf[:0], s), &d.objs); err != nil {
					return false
				}
				o.addSub(sub)
				return true
			})
			if err == nil && len(o.subOps()) == 0 {
				err = bad("an empty batch")
			}
			work -= len(o.subOps())
		} else if o, err = r.decodeSub(p[4:], &d.objs); err == nil {
			o.ts, o.seq = ts, seq
		}
		if err != nil {
			return false, err
		}
		d.ops = append(d.ops, o)
	}
	return false, nil
}

func (r *Replica) decodeSub(p []string, objs *listedObjects) (*op, error) {
	bad := func() error {
		return newError(ErrBadMessage, "compact operations: bad sub-operation "+quote(joinRaw(p)))
	}
	if len(p) < 2 {
		return nil, bad()
	}
	v, ok1 := decimal(p[0], false)
	oi, ok2 := decimal(p[1], false)
	if !ok1 || !ok2 || oi >= int64(len(objs.objs)) || v < int64(VerbUpdate) || v > int64(VerbDelete) {
		return nil, bad()
	}
	obj, err := objs.get(r, int(oi), Verb(v))
	if err != nil {
		return nil, err
	}
	o := r.bulk.next()
	o.verb, o.obj = Verb(v), obj
	switch o.verb {
	case VerbUpdate:
		if len(p) < 3 || len(p) > 4 {
			return nil, bad()
		}
		key, ok := stringValue((p[2]))
		if !ok {
			return nil, bad()
		}
		var err error
		if o.path, err = r.dec.parseKey(key); err != nil { // interned, and remembered by key text
			return nil, err
		}
		o.setKey(key)
		if len(p) == 4 {
			o.value = r.bulk.clone(p[3])
			if err := r.opts.Limits.checkDepth(o.value, o.path); err != nil {
				return nil, err
			}
		}
	case VerbUpsert:
		if len(p) != 3 || !isObject(p[2]) {
			return nil, bad()
		}
		o.value = r.bulk.clone(p[2])
		if err := r.opts.Limits.checkDepth(o.value, nil); err != nil {
			return nil, err
		}
	case VerbDelete:
		if len(p) != 2 {
			return nil, bad()
		}
	}
	return o, nil
}

// bulk hands out operations and value texts from shared blocks — every operation a
// message, a compact decode (catch-up, snapshot) or a local edit makes: an allocation per
// bulkOps operations or bulkText bytes of values instead of two per operation (in wasm,
// mallocgc took a seventh of applying W2's catch-up, three allocations an operation; W3's
// receives took 5–9% less time without their two). A block lives as long as
// anything in it is referenced: Compact moves the operations it keeps out of their blocks
// (moveOut), so that what it drops comes back.
type bulk struct {
	ops   []op         // the current block's operations not handed out yet
	block *[bulkOps]op // the current block
	text  []byte
	// from is the block, and fromLeft how many operations it had left, at the last keep or
	// drop: the operations handed out since are the current call's (see drop).
	from     *[bulkOps]op
	fromLeft int
}

const (
	bulkOps      = 128
	bulkText     = 16 << 10
	bulkLongText = 1 << 10 // a longer value gets its own allocation
)

// next returns a zero operation, marked as taken from a block (op.blk): the block's
// operations are handed out once, as new() made them. A nil b allocates it alone. The
// caller sets its fields in place: an op (104 bytes) built then copied in is a memory.fill
// and two memory.copy calls in wasm.
func (b *bulk) next() *op {
	if b == nil {
		return new(op)
	}
	if len(b.ops) == 0 {
		b.block = new([bulkOps]op)
		b.ops = b.block[:]
	}
	o := &b.ops[0]
	b.ops = b.ops[1:]
	o.blk = true
	return o
}

// keep marks the operations handed out so far as taken (the current call's are kept, or
// made no more than garbage: see drop).
func (b *bulk) keep() { b.from, b.fromLeft = b.block, len(b.ops) }

// drop clears the operations handed out since the last keep or drop: those of a call that
// refused them (Replica.dropPending). Their block is shared with operations taken, and
// lives as long as any of them: a refused operation would keep what it points to — a value
// of up to a message's size, its object, path and peer id — as long. (The blocks between
// the first and the current one held only the call's operations: they are garbage.)
func (b *bulk) drop() {
	if f := b.from; f != nil {
		end := bulkOps
		if f == b.block {
			end -= len(b.ops)
		}
		clear(f[bulkOps-b.fromLeft : end])
	}
	if b.block != nil && b.block != b.from {
		clear(b.block[:bulkOps-len(b.ops)])
	}
	b.keep()
}

// clone returns a copy of s (which points into a message). A nil b allocates it alone.
func (b *bulk) clone(s string) string {
	if b == nil || len(s) == 0 || len(s) > bulkLongText {
		return strings.Clone(s)
	}
	if cap(b.text)-len(b.text) < len(s) {
		b.text = make([]byte, 0, bulkText)
	}
	n := len(b.text)
	b.text = append(b.text, s...)
	return unsafe.String(&b.text[n], len(s)) // the block's bytes are never written again
}

// elements returns the raw elements of a JSON array.
func elements(raw string) []string { return appendElements(nil, raw) }

// appendElements appends the raw elements of a JSON array to dst (a caller's buffer: no
// allocation for the short arrays of the compact encoding).
func appendElements(dst []string, raw string) []string {
	if len(raw) < 2 || raw[0] != '[' || raw[1] == ']' {
		return dst
	}
	p := jparser{s: raw, i: 1, maxDepth: 1 << 30}
	for p.err == nil && p.i < len(raw) {
		start := p.i
		p.skip()
		if p.err != nil {
			return dst
		}
		dst = append(dst, raw[start:p.i])
		if p.i >= len(raw) || raw[p.i] != ',' {
			return dst
		}
		p.i++
	}
	return dst
}

// decimal parses a JSON integer of at most 18 digits (a negative one if signed allows it):
// the numbers of the compact encoding, without strconv's generality.
func decimal(s string, signed bool) (int64, bool) {
	neg := false
	if signed && len(s) > 1 && s[0] == '-' {
		neg, s = true, s[1:]
	}
	if len(s) == 0 || len(s) > 18 || (s[0] == '0' && len(s) > 1) {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i] - '0'
		if c > 9 {
			return 0, false
		}
		n = n*10 + int64(c)
	}
	if neg {
		n = -n
	}
	return n, true
}

func joinRaw(p []string) string {
	s := "["
	for i, x := range p {
		if i > 0 {
			s += ","
		}
		s += x
	}
	return s + "]"
}
