package crdt

import (
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/mapcrdt/mapcrdt/hlc"
)

// Result is what receiving a message produced.
type Result struct {
	// Changes are the visible changes to render.
	Changes []Change
	// Replies are messages to send now (sync requests and responses), whole envelopes.
	Replies [][]byte
}

// Receive takes one message from the transport: an OperationMessage, a PeerMessage
// (ListOperationsRequest / ListOperationsResponse), a SavedMessage, a JoinResponse, a
// ListPeersResponse or a pong. A bare operation (no kind, a verb) is taken as an
// OperationMessage. Bad input gets an *Error and changes nothing. msg is not retained: the
// caller may reuse its buffer once Receive returns.
//
// The changes of successive calls are cut from one allocation (16 of them): a kept Result
// keeps that block, and appending to its Changes copies them.
func (r *Replica) Receive(msg []byte) (Result, error) {
	r.changeBuf = r.chunk()
	changes, replies, err := r.receive(msg)
	r.changeBuf = nil
	return Result{Changes: r.cut(changes), Replies: replies}, err
}

// chunk returns the room left in the block the changes of Receive and Apply are cut from
// (empty, a new block when none is left).
func (r *Replica) chunk() []Change {
	if cap(r.changeChunk) == 0 {
		r.changeChunk = make([]Change, 0, 16)
	}
	return r.changeChunk
}

// cut gives changes, written into chunk() (or elsewhere, when they did not fit), to the
// caller: its capacity cut to its length, so that an append copies, and the block's room
// past it left for the next call.
func (r *Replica) cut(changes []Change) []Change {
	if n := len(changes); n > 0 && unsafe.SliceData(changes) == unsafe.SliceData(r.changeChunk) {
		changes = changes[:n:n]
		r.changeChunk = r.changeChunk[n:n]
	}
	return changes
}

// ReceiveAppend is Receive appending the changes to changes[:0] (Result.Changes): a caller
// receiving many messages reuses one buffer. Result.Changes is valid until the buffer is
// used again.
func (r *Replica) ReceiveAppend(changes []Change, msg []byte) (Result, error) {
	r.changeBuf = changes[:0]
	changes, replies, err := r.receive(msg)
	r.changeBuf = nil
	return Result{Changes: changes, Replies: replies}, err
}

// keptText is the size of a message above which receive clears the parser's buffers of
// it (decoder.forget): a smaller one kept by them until the next message costs little.
const keptText = 16 << 10

func (r *Replica) receive(msg []byte) ([]Change, [][]byte, error) {
	changes, replies, err := r.receiveMessage(msg)
	// The memo of where msg's values end names addresses of msg: not valid past this call.
	// (Cleared here rather than deferred in receiveMessage, whose many returns would make
	// the defer a slow, not open-coded one. parseTop clears it too.)
	if len(r.dec.ends) > 0 {
		clear(r.dec.ends)
	}
	if len(msg) > keptText {
		r.dec.forget()
	}
	return changes, replies, err
}

// peerRoom is what a PeerMessage may hold beyond Limits.MaxMessageBytes: the envelope,
// tokens and vector of a sync response around an operation of the limit (the largest local
// edit a replica takes), which it must carry to a peer of the same limits. The demo relay's
// frames allow the same.
const peerRoom = 4 << 10

// receiveMessage is receive's work. It and receiveOp return a Result's two slices, not a
// Result: in wasm a struct of more than 16 bytes returned is a memory.copy at each level
// (a call out of the wasm code), the slices' words are not.
func (r *Replica) receiveMessage(msg []byte) ([]Change, [][]byte, error) {
	lim := r.opts.Limits.MaxMessageBytes
	if len(msg) > lim+peerRoom {
		return nil, nil, newError(ErrTooLarge, "message of "+strconv.Itoa(len(msg))+" bytes, more than "+strconv.Itoa(lim)+
			" (and 4096 for a PeerMessage)")
	}
	// msg is read in place, without a copy: everything kept is copied out of it (own).
	s := unsafe.String(unsafe.SliceData(msg), len(msg))
	over := len(msg) > lim // taken only as a PeerMessage: read the slow way, which checks
	if !over {
		if o, sender, ok, err := r.dec.fastOp(s); ok {
			return r.receiveOp(o, sender, err)
		}
		if res, ok, err := r.fastResponse(s); ok {
			return res.Changes, res.Replies, err
		}
	}
	members, err := r.dec.parseTop(s)
	if err != nil {
		return nil, nil, err
	}
	if over && field(members, "kind") != `"PeerMessage"` {
		return nil, nil, newError(ErrTooLarge, "message of "+strconv.Itoa(len(msg))+" bytes, more than "+strconv.Itoa(lim))
	}
	kind, hasKind := "", false
	for _, m := range members {
		if m.name == "kind" {
			if kind, hasKind = stringValue(m.val); !hasKind {
				return nil, nil, newError(ErrBadMessage, "kind must be a string, got "+quote(m.val))
			}
		}
	}
	if !hasKind && field(members, "verb") != "" {
		kind = "OperationMessage"
	}
	switch kind {
	case "OperationMessage":
		o, err := r.dec.decodeOp(members, true)
		return r.receiveOp(o, field(members, "sender"), err)
	case "PeerMessage":
		res, err := r.receivePeerMessage(members)
		return res.Changes, res.Replies, err
	case "SavedMessage":
		raw := field(members, "lastKnownHLC")
		s, ok := stringValue(raw)
		if !ok {
			return nil, nil, newError(ErrBadHLC, "SavedMessage needs lastKnownHLC")
		}
		ts, err := hlc.Parse(s)
		if err != nil {
			return nil, nil, hlcError(err)
		}
		if err := r.clock.CheckDrift(ts); err != nil {
			return nil, nil, hlcError(err) // a save "in the future" would hide later edits
		}
		ts.Peer = strings.Clone(ts.Peer) // kept (MarkSaved): not the message's text
		if raw := field(members, "vector"); raw != "" {
			// A mapcrdt saver says exactly what it held: our operations it had are saved, an
			// operation still on its way to it is not, whatever its clock.
			vv, err := parseVector(raw)
			if err != nil {
				return nil, nil, err
			}
			for origin := range r.origins {
				// Not past what this replica made: a save cannot hold an edit not made yet.
				if s := min(vv[origin], r.seqs.get(origin)); s > r.savedBy[origin] {
					if r.savedBy == nil {
						r.savedBy = VersionVector{}
					}
					r.savedBy[origin] = s
				}
			}
			return nil, nil, nil
		}
		r.markSaved(r.publishedUpTo(ts)) // uMap's plain Journal: everything sent up to its clock (drift checked above)
		return nil, nil, nil
	case "JoinResponse", "ListPeersResponse":
		peers, err := peerList(field(members, "peers"))
		if err != nil {
			return nil, nil, err
		}
		for i, p := range peers {
			peers[i] = strings.Clone(p) // kept: not the message's text
		}
		before := r.peers
		r.peers = peers
		if kind == "JoinResponse" {
			if to := r.pickPeer(); to != "" {
				return nil, [][]byte{r.SyncRequest(to)}, nil
			}
			return nil, nil, nil
		}
		return nil, r.probeNewcomers(before, peers), nil
	case "pong", "ping":
		return nil, nil, nil
	}
	return nil, nil, newError(ErrUnknownKind, "unknown message kind "+quote(kind))
}

// receiveOp ingests o, the operation of an OperationMessage whose sender member is the raw
// text sender ("" if none), or fails with err, the error of its decoding.
func (r *Replica) receiveOp(o *op, sender string, err error) ([]Change, [][]byte, error) {
	if err != nil {
		r.dropPending()
		return nil, nil, err
	}
	r.one[0] = o
	changes, gap, err := r.ingest(r.one[:])
	r.one[0] = nil
	if err != nil {
		return nil, nil, err
	}
	if gap {
		to, _ := stringValue(sender)
		if to == "" || to == r.peer {
			to = o.ts.Peer
		}
		return changes, [][]byte{r.SyncRequest(to)}, nil
	}
	return changes, nil, nil
}

// field returns the raw value of the last member called name, "" if there is none. It is
// not inlined: a copy of its loop at each of its ~50 call sites (a message's fields, a
// snapshot's) was ~5.5 KB of the gzipped wasm module; a message calls it a few times.
//
//go:noinline
func field(members []member, name string) string {
	var v string
	for _, m := range members {
		if m.name == name {
			v = m.val // the last one wins, as in JSON.parse
		}
	}
	return v
}

func stringList(raw string) ([]string, error) {
	if len(raw) == 0 || raw[0] != '[' {
		return nil, newError(ErrBadMessage, "peers must be an array of strings")
	}
	var out []string
	var err error
	eachElement(raw, func(el string) bool {
		s, ok := stringValue((el))
		if !ok {
			err = newError(ErrBadMessage, "peers must be an array of strings, got "+quote(el))
			return false
		}
		out = append(out, s)
		return true
	})
	return out, err
}

// peerList reads the peers of a JoinResponse or ListPeersResponse: uMap's server
// (umap/sync/app.py, payloads.py) sends an object of peer id → user name, the demo relay
// sent an array of peer ids; either is taken, the ids in the order written.
func peerList(raw string) ([]string, error) {
	if len(raw) == 0 || raw[0] != '{' {
		return stringList(raw)
	}
	var out []string
	it := members(raw)
	for name, _, ok := it.next(); ok; name, _, ok = it.next() {
		out = append(out, name)
	}
	if it.p.err != nil {
		return nil, newError(ErrBadMessage, "peers must be an object of peer ids or an array of strings")
	}
	return out, nil
}

// Peers returns (a copy of) the peers last announced by the relay (JoinResponse,
// ListPeersResponse), or given to SetPeers.
func (r *Replica) Peers() []string { return slices.Clone(r.peers) }

// SetPeers replaces the known peers (for transports that learn them otherwise). The ids are
// kept as given, not checked (the JavaScript API checks them): SyncRequest("") and
// ProbeRequest("") may pick any of them. The slice itself is not retained.
func (r *Replica) SetPeers(peers []string) { r.peers = slices.Clone(peers) }

// probeNewcomers returns a one-way sync request to every peer of peers that is not in
// before (nor this replica): a peer that joins may hold edits nobody else has — made
// offline, or sent on a connection that dropped them — and the sync it starts itself
// reaches one peer only. The request is answered as a push-back: the newcomer sends what
// this replica lacks and asks nothing back (it catches up through its own request), so a
// join costs each peer present one small exchange, not a second catch-up of the newcomer.
// At most maxProbes peers are probed per message: each probe carries the whole vector,
// and a list of a million made-up peers must not make a million of them.
//
// The peers known are a set: a list of 100,000 looked up in the one before and in itself
// took 10^10 comparisons.
func (r *Replica) probeNewcomers(before, peers []string) [][]byte {
	var out [][]byte
	known := make(map[string]bool, len(before)+1)
	known[r.peer] = true
	for _, p := range before {
		known[p] = true
	}
	for _, p := range peers {
		if len(out) == maxProbes {
			break
		}
		if !known[p] {
			known[p] = true
			out = append(out, r.ProbeRequest(p))
		}
	}
	return out
}

// maxProbes is how many newcomers one ListPeersResponse has probed, at most (a room of
// uMap editors gains one at a time).
const maxProbes = 64

func (r *Replica) pickPeer() string {
	var others []string
	for _, p := range r.peers {
		if p != r.peer {
			others = append(others, p)
		}
	}
	if len(others) == 0 {
		return ""
	}
	return others[randIntN(len(others))]
}

// Flush publishes the outbox: every local operation not yet sent gets its seq and becomes
// an OperationMessage. Operations whose every write was superseded while they waited (a
// marker drag's intermediate positions) are dropped instead: one message leaves per path.
func (r *Replica) Flush() [][]byte {
	if len(r.outbox) == 0 {
		return nil
	}
	// All messages are written into one buffer (not one allocation per message). A message
	// is a full slice expression of the buffer: when append moves the buffer, the messages
	// already out keep the old array, which nothing writes to again.
	size := 0
	for _, o := range r.outbox { // an estimate: a batch grows the buffer
		size += 256 + len(r.peer) + len(o.value)
		if o.obj != nil {
			size += len(o.obj.meta)
		}
	}
	buf := make([]byte, 0, size)
	out := make([][]byte, 0, len(r.outbox))
	r.flush(func(o *op) {
		start := len(buf)
		buf = appendOpWith(&r.dec, buf, o, r.peerJSON)
		out = append(out, buf[start:len(buf):len(buf)])
	})
	if len(out) == 0 {
		return nil
	}
	return out
}

// FlushAppend is Flush writing the messages into dst, separated by sep (a byte that JSON
// text never holds raw, such as the record separator 0x1E), without a buffer per message.
// It returns the extended buffer and the number of messages.
func (r *Replica) FlushAppend(dst []byte, sep byte) ([]byte, int) {
	n := 0
	r.flush(func(o *op) {
		if n > 0 {
			dst = append(dst, sep)
		}
		n++
		dst = appendOpWith(&r.dec, dst, o, r.peerJSON)
	})
	return dst, n
}

// flush gives each operation of the outbox its seq and sends it, in order, but those
// superseded while they waited: dropped, they leave no hole in the seqs. One superseded
// only by edits of the batch still open is sent all the same (when it writes an object
// the batch writes): the batch may never be committed (a tab closed first), and the edit
// would then be lost everywhere (see Compact).
func (r *Replica) flush(send func(o *op)) {
	if r.restored && len(r.outbox) > 0 {
		r.reincarnate()
	}
	var dropped map[*op]bool
	open := r.openBatchObjects()
	for _, o := range r.outbox {
		if o.live == 0 && !touches(o, open) {
			if dropped == nil {
				dropped = map[*op]bool{}
			}
			dropped[o] = true
			continue
		}
		o.seq = r.seqs.get(o.ts.Peer) + 1
		r.seqs.set(o.ts.Peer, o.seq)
		r.vec.add(o.ts.Peer, o.seq)
		send(o)
	}
	if len(dropped) > 0 {
		r.log.remove(func(x *op) bool { return dropped[x] })
	}
	if len(r.outbox) == 1 {
		r.outbox[0] = nil // the usual flush, without clear's calls of the runtime (wasm)
	} else {
		clear(r.outbox)
	}
	r.outbox = r.outbox[:0]
}

// openBatchObjects returns the objects the open batch's edits write, nil if there are
// none.
func (r *Replica) openBatchObjects() map[*object]bool {
	if r.batch == nil || len(r.batch.subOps()) == 0 {
		return nil
	}
	objs := map[*object]bool{}
	r.batch.writes(func(w *op, _ int32) { objs[w.obj] = true })
	return objs
}

// Pending returns how many messages Flush would send now: the local operations waiting in
// the outbox that are not superseded by a later one (or only by an open batch's edits).
func (r *Replica) Pending() int {
	n := 0
	open := r.openBatchObjects()
	for _, o := range r.outbox {
		if o.live > 0 || touches(o, open) {
			n++
		}
	}
	return n
}

// SyncRequest returns a PeerMessage asking recipient (a random known peer if empty) for
// every operation this replica lacks. The request carries the version vector and
// lastKnownHLC, so a peer running uMap's plain Journal can answer it too. The recipient is
// written as given, not checked (the JavaScript API checks it): with "" and no known peer,
// the message names no recipient.
func (r *Replica) SyncRequest(recipient string) []byte { return r.syncRequest(recipient, nil, false) }

// ProbeRequest returns a one-way SyncRequest to recipient, a peer that just joined: it asks
// for what this replica lacks, and is answered as a push-back, so nothing is pushed back in
// return — the newcomer catches up through its own request. A replica sends one to every
// peer a ListPeersResponse adds; a relay holding a replica sends one from its join hook.
// An empty recipient is a random known peer, as in SyncRequest.
func (r *Replica) ProbeRequest(recipient string) []byte { return r.syncRequest(recipient, nil, true) }

// syncRequest is SyncRequest; after, if not nil, asks for the page that follows a partial
// one whose last operation had that clock (its "more"), and pushBack asks for an answer
// as a push-back: that page was one, or (without after) a one-way probe of a newcomer.
func (r *Replica) syncRequest(recipient string, after *hlc.Timestamp, pushBack bool) []byte {
	if recipient == "" {
		recipient = r.pickPeer()
	}
	b := r.peerEnvelope(recipient)
	b = append(b, '{') // members in canonical order (see appendOp)
	if after != nil {
		b = append(b, `"after":"`...)
		b = after.AppendText(b)
		b = append(b, `",`...)
	}
	if n := len(r.log.ops); n > 0 {
		b = append(b, `"lastKnownHLC":"`...)
		b = r.log.ops[n-1].ts.AppendText(b)
		b = append(b, `",`...)
	}
	b = r.appendLimit(b)
	if pushBack {
		b = append(b, `"pushBack":true,`...)
	}
	b = append(b, `"session":`...)
	b = appendString(b, r.session)
	b = append(b, `,"vector":`...)
	b = appendVector(b, r.vec.vector())
	return append(b, `,"verb":"ListOperationsRequest"}}`...)
}

func (r *Replica) peerEnvelope(recipient string) []byte {
	b := append([]byte(nil), `{"kind":"PeerMessage","sender":`...)
	b = appendString(b, r.peer)
	b = append(b, `,"recipient":`...)
	b = appendString(b, recipient)
	return append(b, `,"message":`...)
}

// AppendJSON appends the vector as a JSON object, peers sorted.
func (vv VersionVector) AppendJSON(b []byte) []byte { return appendVector(b, vv) }

func appendVector(b []byte, vv VersionVector) []byte {
	peers := make([]string, 0, len(vv))
	for p := range vv {
		peers = append(peers, p)
	}
	sortStable(peers, strings.Compare)
	b = append(b, '{')
	for i, p := range peers {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, p)
		b = append(b, ':')
		b = appendNum(b, vv[p])
	}
	return append(b, '}')
}

func parseVector(raw string) (VersionVector, error) {
	if len(raw) == 0 || raw[0] != '{' {
		return nil, newError(ErrBadMessage, "vector must be an object of peer: seq")
	}
	vv := VersionVector{}
	var err error
	eachMember(raw, func(name, val string) bool {
		n, ok := parseSeq(val)
		if !ok && val != "0" {
			err = newError(ErrBadMessage, "vector entry "+quote(name)+" must be a seq, got "+quote(val))
			return false
		}
		if e := hlc.ValidPeer(name); e != nil {
			err = newError(ErrBadMessage, "vector entry "+quote(name)+": "+e.Error())
			return false
		}
		vv[name] = n
		return true
	})
	return vv, err
}

// sendable reports whether o goes to a peer that lacks it, unpublished being the objects
// local operations not yet published write (unpublishedObjects). Operations whose every
// write is superseded are left out — what supersedes them is sent or already held — but
// for those that write an object an unpublished operation writes (see Compact): that one is
// not sent, and may never be. So are this replica's seq-less operations not yet published.
func (r *Replica) sendable(o *op, unpublished map[*object]bool) bool {
	return (o.live != 0 || touches(o, unpublished)) && (o.seq > 0 || !r.isOwn(o.ts.Peer))
}

// pageScan is what a mapcrdt peer holding vv lacks, as one page of a sync response needs
// it (Replica.scanPage): the page, whether it lacks operations the page leaves out, and
// for each origin the lowest seq it lacks outside the page, below which the page's vector
// is lowered (pageEnds).
type pageScan struct {
	vv      VersionVector
	page    []*op
	skipped bool // the peer lacks operations up to the request's "after", not in the page
	rest    bool // it lacks operations past the page
	// withheld are the clocks of the operations it lacks over its limit (tooLarge, the
	// smaller of its and this replica's: restored from a snapshot of a replica of larger
	// limits, or of a build before the rule; or the peer's limit is smaller), in the page
	// or not: never sent, never claimed, named in every page.
	withheld []hlc.Timestamp
	// The origins met: the seq vv gives each (known), the lowest it lacks outside the page
	// (low, 0 if none).
	origins []struct {
		peer       string
		known, low uint64
	}
	index map[string]int32
	// Origins met, by the address of their id (the decoder interns them), and their index +
	// 1 (0: an empty slot), each in the slot a hash of the address picks: a map lookup for
	// every operation hashed its id (in wasm, a byte at a time).
	cache [8]struct {
		peer string
		i    int32
	}
}

// origin returns the index of peer's entries.
func (s *pageScan) origin(peer string) int32 {
	c := &s.cache[uint32(uintptr(unsafe.Pointer(unsafe.StringData(peer))))*2654435761>>29]
	if c.i > 0 && unsafe.StringData(peer) == unsafe.StringData(c.peer) && len(peer) == len(c.peer) {
		return c.i - 1
	}
	i, ok := s.index[peer]
	if !ok {
		i = int32(len(s.origins))
		s.index[peer] = i
		s.origins = append(s.origins, struct {
			peer       string
			known, low uint64
		}{peer, s.vv[peer], 0})
	}
	c.peer, c.i = peer, i+1
	return i
}

// leaveOut notes o, lacked, as not in the page.
func (s *pageScan) leaveOut(o *op) {
	if o.seq > 0 {
		if g := &s.origins[s.origin(o.ts.Peer)]; g.low == 0 || o.seq < g.low {
			g.low = o.seq
		}
	}
}

// scanPage works out, in one walk of the log, the page of what a mapcrdt peer holding vv
// lacks: the operations the replica may send (sendable) of a seq above vv's for their
// origin, and every seq-less one (no vector summarises those: they are rare, and receiving
// one twice changes nothing), in clock order — the first n of them after after, if not nil:
// the clock of the last operation of the page before (the request's "after"). The
// operations up to it were sent then, and are skipped: an asker whose vector cannot move
// past an operation this replica lacks too would otherwise be sent the same page again.
// With a nil vv (uMap's plain Journal, after its lastKnownHLC), the page is what it lacks
// after after, and no vector goes with it.
func (r *Replica) scanPage(vv VersionVector, after *hlc.Timestamp, n, limit int) *pageScan {
	s := &pageScan{vv: vv, index: map[string]int32{}}
	ops, skip := r.log.ops, 0 // the operations up to after
	if after != nil {
		skip = len(ops) - len(r.log.since(*after))
	}
	if vv == nil {
		ops, skip = ops[skip:], 0
	}
	unpublished := r.unpublishedObjects()
	for j, o := range ops {
		if !r.sendable(o, unpublished) || o.seq > 0 && vv != nil && o.seq <= s.origins[s.origin(o.ts.Peer)].known {
			continue
		}
		big := vv != nil && r.tooLarge(o, limit) != nil
		if big {
			s.withheld = append(s.withheld, o.ts)
		}
		switch {
		case j < skip:
			s.skipped = true
		case len(s.page) < n:
			if big {
				break
			}
			s.page = append(s.page, o)
			continue
		default:
			s.rest = true
		}
		s.leaveOut(o)
	}
	return s
}

// ReceiveTaught is Receive, and returns too what msg taught this replica: the operations
// a ListOperationsResponse brought that it did not hold (but those superseded on arrival),
// how many, and a ListOperationsResponse to recipient holding them in uMap's plain form (a
// list of operations, which uMap's client and mapcrdt peers both read; no vector, which
// would claim what the message did not teach) — nil when there
// are none, or when it would pass Limits.MaxMessageBytes. The demo relay passes on to
// every peer what a newcomer's answer taught its replica with it. Only what this message
// brought is counted: operations held before (beyond a hole in their origin's seqs, which
// a vector does not cover) are not sent again.
func (r *Replica) ReceiveTaught(msg []byte, recipient string) (res Result, plain []byte, taught int, err error) {
	r.teaching = true
	defer func() {
		clear(r.taught) // the operations live in the log: no reference kept here
		r.taught, r.teaching = r.taught[:0], false
	}()
	if res, err = r.Receive(msg); err != nil {
		return res, nil, 0, err
	}
	kept := make([]*op, 0, len(r.taught))
	for _, o := range r.taught {
		if o.live > 0 {
			kept = append(kept, o)
		}
	}
	if len(kept) == 0 {
		return res, nil, 0, nil
	}
	sortStable(kept, func(a, b *op) int { return a.ts.Compare(b.ts) })
	// No vector: this replica's would claim what the message did not teach.
	plain = r.response(recipient, kept, false, false, VersionVector{}, nil, "", nil)
	if len(plain) > r.opts.Limits.MaxMessageBytes {
		plain = nil
	}
	return res, plain, len(kept), nil
}

// pageSize is how many operations a page holds at most: SyncPage, and Limits.MaxBatch (what
// a peer takes in one response).
func (r *Replica) pageSize() int { return min(r.opts.SyncPage, r.opts.Limits.MaxBatch) }

// appendLimit appends a sync message's "maxMessageBytes": this replica's
// Limits.MaxMessageBytes, to which its peer makes the pages it sends it.
func (r *Replica) appendLimit(b []byte) []byte {
	b = append(b, `"maxMessageBytes":`...)
	b = strconv.AppendInt(b, int64(r.opts.Limits.MaxMessageBytes), 10)
	return append(b, ',')
}

// peerLimit is the limit the pages to a peer are made to, from its sync message's
// "maxMessageBytes" (raw JSON, "" if absent: a peer of an earlier version): the smaller of
// its and this replica's. Pages to a larger peer are kept to this replica's limit, which
// its own edits and the operations it holds are within; pages to a smaller peer to its
// limit, an operation over it withheld (pageScan): made to this replica's own, they passed
// it, and the peer refused them at every request.
func (r *Replica) peerLimit(raw string) (int, error) {
	own := r.opts.Limits.MaxMessageBytes
	if raw == "" {
		return own, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n <= 0 {
		return 0, newError(ErrBadMessage, "maxMessageBytes must be a positive integer, got "+quote(raw))
	}
	return min(n, own), nil
}

// pagedResponse is the compact response to recipient, a mapcrdt peer, of the page s of
// what it lacks (scanPage). A page is also kept to about half of Limits.MaxMessageBytes (an
// answer over it is written again, cut by wireSize), but always one operation at least.
//
// forAsker is the session token of the replica whose vector s was worked out from (the
// request's, or for a push-back the page's it answers), echoed as "for".
func (r *Replica) pagedResponse(recipient string, s *pageScan, pushBack bool, forAsker string, limit int) []byte {
	page := s.page
	vv, more := r.pageEnds(s, page)
	msg := r.response(recipient, page, pushBack, true, vv, more, forAsker, s.withheld)
	if budget := limit / 2; len(msg) > budget && len(page) > 1 {
		size := 0
		for i, o := range page {
			if size += wireSize(o); size > budget && i > 0 {
				page = page[:i]
				break
			}
		}
		for _, o := range s.page[len(page):] {
			s.rest = true
			s.leaveOut(o)
		}
		vv, more = r.pageEnds(s, page)
		msg = r.response(recipient, page, pushBack, true, vv, more, forAsker, s.withheld)
	}
	if len(page) == 1 && len(msg) > limit+peerRoom {
		// An operation of about the limit with the vector of many origins (peerRoom holds
		// ~60): more than a peer takes, at every request. It goes with an empty vector (it
		// claims nothing) and says more: the request for the next page brings the vector.
		ts := page[0].ts
		msg = r.response(recipient, page, pushBack, true, VersionVector{}, &ts, forAsker, s.withheld)
	}
	return msg
}

// pageEnds returns the vector and the "more" of page, the first of s.page. When it is all
// the peer lacks, they are nil: the replica's own vector goes with it, and nothing follows.
// Otherwise the vector is the replica's, lowered below every operation the asker lacks and
// does not get in this page, so that the asker, adopting it, claims none of them (one that
// arrived here between two pages, its clock older than after, is left to the asker's next
// sync request); more is the clock of the page's last operation when operations remain.
func (r *Replica) pageEnds(s *pageScan, page []*op) (vv VersionVector, more *hlc.Timestamp) {
	if !s.skipped && !s.rest && len(s.withheld) == 0 {
		return nil, nil // the usual answer: everything, with this replica's vector
	}
	vv = r.vec.vector().Clone()
	for _, g := range s.origins {
		if g.low > 0 && vv[g.peer] >= g.low {
			vv[g.peer] = g.low - 1
		}
	}
	if s.rest {
		ts := page[len(page)-1].ts
		more = &ts
	}
	return vv, more
}

// wireSize is about the most bytes o takes in a response: its values, keys, metadata and
// unknown fields, a clock, a seq and the punctuation around them.
func wireSize(o *op) int {
	n := 96 + len(o.ts.Peer)
	o.writes(func(w *op, _ int32) {
		n += 64 + len(w.value) + len(w.obj.meta) + len(w.obj.subject.Name)
		for _, part := range w.path {
			n += 2 * (len(part) + 1) // a part and its dot, every byte escaped at worst
		}
		if w.x != nil {
			n += len(w.x.key) + len(w.x.extra) + len(w.x.meta)
		}
	})
	return n
}

// optClock reads the optional clock of a message's member (its raw JSON, "" if absent):
// nil if absent or null, an ErrBadHLC if it is not a clock's text.
func optClock(raw, name string) (*hlc.Timestamp, error) {
	if raw == "" || raw == "null" {
		return nil, nil
	}
	s, ok := stringValue(raw)
	if !ok {
		return nil, newError(ErrBadHLC, name+" must be a string")
	}
	ts, err := hlc.Parse(s)
	if err != nil {
		return nil, hlcError(err)
	}
	return &ts, nil
}

// response builds a ListOperationsResponse to recipient: the operations as uMap writes them,
// or, for a mapcrdt peer (compact), in the compact encoding of compact.go — about a third
// of the bytes before compression, and half after.
//
// vv is the vector sent with them, nil for this replica's own — in uMap's form, an empty
// one given is left out (the operations after a lastKnownHLC: a vector would claim those
// before it, which the asker may lack); more, if not nil, says more pages follow, and is
// the clock of the last operation sent (see page). forAsker, if not
// empty, is echoed as "for" (see Replica.session); a compact response also carries this
// replica's own token ("session"), for the push-back it may get in return. withheld are
// the clocks of the operations the asker lacks that this page leaves out as larger than
// its limit takes (pageScan), named for whoever reads the exchange
// ("withheld", after "verb": a reader of an earlier version passes over it).
func (r *Replica) response(recipient string, ops []*op, pushBack, compact bool, vv VersionVector, more *hlc.Timestamp, forAsker string, withheld []hlc.Timestamp) []byte {
	own := vv == nil
	if own {
		vv = r.vec.vector()
	}
	b := r.peerEnvelope(recipient)
	b = append(b, '{') // members in canonical order (see appendOp)
	if forAsker != "" {
		b = append(b, `"for":`...)
		b = appendString(b, forAsker)
		b = append(b, ',')
	}
	if compact {
		b = r.appendLimit(b)
	}
	if more != nil {
		b = append(b, `"more":"`...)
		b = more.AppendText(b)
		b = append(b, `",`...)
	}
	if !compact {
		b = append(b, `"operations":[`...)
		for i, o := range ops {
			if i > 0 {
				b = append(b, ',')
			}
			if i%gcEvery == gcEvery-1 {
				gcPoint()
			}
			b = appendOpWith(&r.dec, b, o, "")
		}
		b = append(b, "],"...)
	}
	if pushBack {
		b = append(b, `"pushBack":true,`...)
	}
	if compact {
		b = append(b, `"session":`...)
		b = appendString(b, r.session)
		b = append(b, ',')
		enc := newOpsEncoder(&r.dec)
		// A batch's superseded sub-operations are left out — but while local operations
		// wait unpublished, what supersedes them may never go out (see sendable).
		enc.all = len(r.outbox) > 0 || r.batch != nil
		// About what the operations take: each value, and ~56 bytes of clock, numbers and
		// key (an estimate short by a third grew the array through three copies); the
		// vector after them, ~48 bytes a peer.
		size := 56*len(ops) + 48*len(vv) + 64
		for _, o := range ops {
			size += len(o.value)
		}
		// Objects: a subject and metadata each, ~100 bytes; as many as the operations at most.
		enc.objArr = make([]byte, 0, 128*min(len(ops), 1024))
		b = append(b, `"state":`...)
		b = enc.appendState(b, ops, size) // one buffer, not a doubling series
		b = append(b, ',')
	}
	if compact || own || len(vv) > 0 {
		b = append(b, `"vector":`...)
		b = appendVector(b, vv)
		b = append(b, ',')
	}
	b = append(b, `"verb":"ListOperationsResponse"`...)
	if len(withheld) > 0 {
		b = appendWithheld(b, withheld)
	}
	return append(b, "}}"...)
}

// appendWithheld appends a response's "withheld" member: the clocks of the operations its
// page left out as larger than a peer of this replica's limits takes.
func appendWithheld(b []byte, withheld []hlc.Timestamp) []byte {
	b = append(b, `,"withheld":[`...)
	for i, ts := range withheld {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(ts.AppendText(b), '"')
	}
	return append(b, ']')
}

func (r *Replica) receivePeerMessage(members []member) (Result, error) {
	sender, _ := stringValue(field(members, "sender"))
	recipient, _ := stringValue(field(members, "recipient"))
	if recipient != "" && recipient != r.peer {
		return Result{}, nil // not ours: a relay routed it wrongly
	}
	inner := field(members, "message")
	if !isObject(inner) {
		return Result{}, newError(ErrBadMessage, "PeerMessage needs a message object")
	}
	msg := validMembersEnds(nil, inner, r.dec.ends) // inner is a value of the parsed message
	var err error
	verb, _ := stringValue(field(msg, "verb"))
	switch verb {
	case "ListOperationsRequest":
		var vv VersionVector
		if raw := field(msg, "vector"); raw != "" {
			if vv, err = parseVector(raw); err != nil {
				return Result{}, err
			}
		}
		lastKnown, err := optClock(field(msg, "lastKnownHLC"), "lastKnownHLC")
		if err != nil {
			return Result{}, err
		}
		after, err := optClock(field(msg, "after"), "after")
		if err != nil {
			return Result{}, err
		}
		if sender == "" {
			return Result{}, newError(ErrBadMessage, "ListOperationsRequest without a sender")
		}
		if vv == nil { // uMap's plain Journal: one answer (it would not ask for a next page)
			ops := r.scanPage(nil, lastKnown, len(r.log.ops), 0).page // all it lacks
			if lastKnown != nil {
				// What follows lastKnownHLC only: no vector, which would claim the operations
				// before it (a mapcrdt replica asking so would adopt it, and miss them).
				vv = VersionVector{}
			}
			return Result{Replies: [][]byte{r.response(sender, ops, false, false, vv, nil, "", nil)}}, nil
		}
		// A request for the next page of a push-back is answered as a push-back: its last
		// page gets no push-back in return (two replicas with the same hole in a peer's
		// operations would otherwise push what lies above it to each other forever). So is
		// a newcomer's probe (probeNewcomers): one way.
		pushBack := field(msg, "pushBack") == "true"
		session, err := optToken(field(msg, "session"), "session")
		if err != nil {
			return Result{}, err
		}
		limit, err := r.peerLimit(field(msg, "maxMessageBytes"))
		if err != nil {
			return Result{}, err
		}
		page := r.pagedResponse(sender, r.scanPage(vv, after, r.pageSize(), limit), pushBack, session, limit)
		// No ask-back of what the asker holds and this replica lacks: the asker pushes it
		// back when it has taken the last page (takeResponse), and a request here too would
		// have it sent twice.
		return Result{Replies: [][]byte{page}}, nil
	case "ListOperationsResponse":
		var ops []*op
		if st := field(msg, "state"); st != "" {
			ops, err = r.decodeOps(st, r.opts.Limits.MaxBatch)
		} else {
			raw := field(msg, "operations")
			if len(raw) == 0 || raw[0] != '[' {
				return Result{}, newError(ErrBadMessage, "ListOperationsResponse needs operations or state")
			}
			n := 0
			for it := elementsOf(raw); ; {
				ms, el, more := it.nextMembers(r.dec.elem)
				if !more {
					err = it.p.err // nil at the end of the list
					break
				}
				if ms != nil {
					r.dec.elem = ms[:0] // the buffer, grown, for the next one
				}
				if n++; n > r.opts.Limits.MaxBatch {
					err = newError(ErrTooLarge, "response of more than "+strconv.Itoa(r.opts.Limits.MaxBatch)+" operations")
					break
				}
				if !isObject(el) {
					err = newError(ErrBadMessage, "an operation must be an object, got "+quote(el))
					break
				}
				var o *op
				if o, err = r.dec.decodeOp(ms, true); err != nil {
					break
				}
				ops = append(ops, o)
				if len(ops)%gcEvery == 0 {
					gcPoint()
				}
			}
		}
		var vv VersionVector
		if err == nil {
			if rawVV := field(msg, "vector"); rawVV != "" {
				vv, err = parseVector(rawVV)
			}
		}
		var more *hlc.Timestamp
		if err == nil {
			more, err = optClock(field(msg, "more"), "more")
		}
		var tokens sessionTokens
		if err == nil {
			tokens.forAsker, err = optToken(field(msg, "for"), "for")
		}
		if err == nil {
			tokens.responder, err = optToken(field(msg, "session"), "session")
		}
		if err == nil {
			tokens.limit, err = r.peerLimit(field(msg, "maxMessageBytes"))
		}
		tokens.withheld = field(msg, "withheld") != ""
		if err != nil {
			r.dropPending()
			return Result{}, err
		}
		return r.takeResponse(ops, vv, field(msg, "pushBack") == "true", sender, more, tokens)
	}
	return Result{}, newError(ErrUnknownVerb, "unknown peer message verb "+quote(verb))
}

// takeResponse applies the decoded operations of a ListOperationsResponse from sender, with
// its vector (nil if none), pushBack flag, more (the clock of its last operation when
// more pages follow, else nil) and session tokens. It answers a partial page with a
// request for the next one, and the last page with what the sender lacks.
//
// A response echoing another session than this replica's answers a vector this replica
// may no longer hold (a request sent before a reload from an older snapshot): its
// operations are taken, its vector is not adopted (it would claim what the snapshot
// lacks, and no sync would bring it), and its last page is answered with a new request.
func (r *Replica) takeResponse(ops []*op, vv VersionVector, pushBack bool, sender string, more *hlc.Timestamp, tokens sessionTokens) (Result, error) {
	changes, _, err := r.ingest(ops)
	if err != nil {
		return Result{}, err
	}
	if r.teaching { // ReceiveTaught: the operations the log took (ingest clears the others)
		for _, o := range ops {
			if i, ok := r.log.find(o.ts); ok && r.log.ops[i] == o {
				r.taught = append(r.taught, o)
			}
		}
	}
	res := Result{Changes: changes}
	if vv != nil {
		if vv[r.origin] > r.seqs.get(r.origin) && r.ownBeyond(nil) != nil {
			// A claim of this replica's operations it never made (see ownBeyond): not
			// adopted, and its seqs go on from the last it made.
			delete(vv, r.origin)
		}
		stale := tokens.forAsker != "" && tokens.forAsker != r.session
		// A page naming operations withheld from this replica (over its limit): what they
		// superseded the sender does not send (dead, or compacted away), and its vector
		// claims it, whatever its origin. Adopted, this replica would claim it and never
		// take it, not even from a peer of its limits that holds it: the vector only says
		// what to push back.
		if !stale && !tokens.withheld {
			r.vec.adopt(vv)
		}
		for origin := range r.origins {
			if s := vv[origin]; s > r.seqs.get(origin) {
				r.raiseOwn(origin, s)
			}
		}
		if more != nil {
			if sender != "" {
				res.Replies = append(res.Replies, r.syncRequest(sender, more, pushBack))
			}
			return res, nil
		}
		if stale && sender != "" {
			res.Replies = append(res.Replies, r.SyncRequest(sender))
			return res, nil
		}
		if !pushBack && sender != "" {
			// Pushed back even empty when this vector is ahead: its operations beyond the
			// sender's may all be compacted away, and the sender adopts the vector.
			if theirs := r.scanPage(vv, nil, r.pageSize(), tokens.limit); len(theirs.page) > 0 || r.vec.ahead(vv) {
				page := r.pagedResponse(sender, theirs, true, tokens.responder, tokens.limit)
				res.Replies = append(res.Replies, page)
			}
		}
	}
	return res, nil
}

// sessionTokens are the session tokens of a ListOperationsResponse (see Replica.session):
// forAsker ("for") is the token of the replica whose vector it answers, responder
// ("session") its writer's own, which a push-back in return echoes. Either is "" when
// absent (a peer of an earlier version: its vector is adopted, as then).
// sessionTokens are a response's session tokens, and the limit of its writer (peerLimit),
// for the pages pushed back to it.
type sessionTokens struct {
	forAsker, responder string
	limit               int
	// withheld says the response names operations withheld from this replica: its vector
	// is not adopted (see takeResponse).
	withheld bool
}

// maxToken bounds a session token received: a request's is echoed in every page answering
// it, and a peer's own are 8 bytes.
const maxToken = 64

// optToken reads an optional session token (raw JSON, "" if absent): a string.
func optToken(raw, name string) (string, error) {
	if raw == "" {
		return "", nil
	}
	s, ok := stringValue(raw)
	if !ok || len(s) > maxToken {
		return "", newError(ErrBadMessage, name+" must be a string of at most 64 bytes, got "+quote(raw))
	}
	return s, nil
}

// MarkSaved records that everything up to ts is saved on the server: local operations up
// to it are no longer dirty. A ts further ahead of the wall clock than MaxDrift is refused
// (ErrClockDrift), as a SavedMessage carrying it is: a save "in the future" would hide the
// edits made until then. Nothing changes on error.
func (r *Replica) MarkSaved(ts hlc.Timestamp) error {
	if err := r.clock.CheckDrift(ts); err != nil {
		return hlcError(err)
	}
	r.markSaved(ts)
	return nil
}

func (r *Replica) markSaved(ts hlc.Timestamp) {
	if r.saved.Less(ts) {
		r.saved = ts
	}
	// The next local edits are stamped after the horizon, so they are dirty: a saver's clock
	// ahead of ours (by less than MaxDrift) would otherwise cover the edits made until ours
	// passed it.
	r.clock.Observe(ts)
}

// publishedUpTo lowers a saved horizon ts received from another peer below the local
// operations not yet published (the outbox, the open batch): they never left this
// replica, so no saver holds them, whatever their clock. Local operations are stamped
// in the order they are published, so those sent are all older than the first waiting.
func (r *Replica) publishedUpTo(ts hlc.Timestamp) hlc.Timestamp {
	first := r.batch
	if len(r.outbox) > 0 {
		first = r.outbox[0]
	}
	if first == nil || first.ts.IsZero() || ts.Less(first.ts) {
		return ts // nothing waits (an open batch without an edit has no clock yet)
	}
	if i, _ := r.log.find(first.ts); i > 0 {
		return r.log.ops[i-1].ts
	}
	return hlc.Timestamp{}
}

// SavedMessage returns the SavedMessage announcing that everything this replica holds is
// saved (and marks it saved locally). Besides uMap's lastKnownHLC it carries the version
// vector, so that a peer whose edit had not reached this replica yet keeps it dirty.
func (r *Replica) SavedMessage() []byte {
	ts := r.clock.Last()
	if n := len(r.log.ops); n > 0 && ts.Less(r.log.ops[n-1].ts) {
		ts = r.log.ops[n-1].ts
	}
	r.markSaved(ts)
	b := append([]byte(nil), `{"kind":"SavedMessage","sender":`...)
	b = appendString(b, r.peer)
	b = append(b, `,"lastKnownHLC":"`...)
	b = ts.AppendText(b)
	b = append(b, `","vector":`...)
	b = appendVector(b, r.vec.vector())
	return append(b, '}')
}

// DirtyObject names an object with unsaved local operations.
type DirtyObject struct {
	Subject  string // the object's subject ("feature")
	Metadata string // its metadata, canonical JSON, as last seen
}

// Dirty lists the objects with local operations not yet saved — newer than the saved horizon
// and not held by a peer that announced a save — whose work is still visible: what uMap's
// save() must send. An operation every write of which a newer one superseded (a peer's,
// whose save is that peer's to make) is not listed, whether or not Compact has dropped it
// yet. Parents come before their children (a datalayer before its features).
func (r *Replica) Dirty() []DirtyObject {
	seen := map[*object]bool{}
	var objs []*object
	for _, o := range r.log.since(r.saved) {
		if o.live == 0 || !r.isOwn(o.ts.Peer) || (o.seq > 0 && o.seq <= r.savedBy[o.ts.Peer]) {
			continue
		}
		o.writes(func(w *op, _ int32) {
			if !seen[w.obj] {
				seen[w.obj] = true
				objs = append(objs, w.obj)
			}
		})
	}
	rank := func(o *object) int {
		if o.subject.Parent == "" {
			return 0
		}
		return 1
	}
	sortStable(objs, func(a, b *object) int {
		if c := rank(a) - rank(b); c != 0 {
			return c
		}
		return 0
	})
	out := make([]DirtyObject, len(objs))
	for i, o := range objs {
		out[i] = DirtyObject{Subject: o.subject.Name, Metadata: o.meta}
	}
	return out
}
