package crdt

import (
	"strings"

	"github.com/mapcrdt/mapcrdt/hlc"
)

// The fast path of a catch-up: one walk over a ListOperationsResponse in the compact form
// (compact.go) written the way a mapcrdt peer writes it (Replica.response) — its members in
// that order, no whitespace, names, subjects, peers and keys without escapes, metadata flat
// objects of strings (flatObject), no operation with extra fields. The general path parses
// the whole message first (validating it and noting where values end), then walks the state
// again element by element; this walk validates what it reads as it reads it, and hands
// each operation's parts to the same decodeSub. Any other message, and any message the
// engine would refuse, is left to the general path, which reads it again from the start:
// the attempt changes nothing (the objects it met are dropped, as the general path drops
// them on an error).

// The fixed texts of a compact response, in the order Replica.response writes them.
const (
	respHead      = `{"kind":"PeerMessage","sender":`
	respRecipient = `,"recipient":`
	respMessage   = `,"message":{`
	respFor       = `"for":`
	respLimit     = `"maxMessageBytes":`
	respMore      = `"more":"`
	respPushBack  = `"pushBack":true,`
	respSession   = `"session":`
	respObjects   = `"state":{"objects":[`
	respOps       = `],"ops":[`
	respPeers     = `],"peers":[`
	respVector    = `]},"vector":`
	respTail      = `,"verb":"ListOperationsResponse"}}`
)

// The nesting around the values of a compact response: the message, its inner message,
// the state, the list of operations and the operation — and, in a batch, its list and the
// sub-operation. The vector is in the inner message.
const (
	opValueDepth     = 5
	subValueDepth    = 7
	vectorValueDepth = 2
)

// hasAt reports whether s holds lit at i. (Not inlined: a dozen copies cost 1.5 KB of
// .wasm gzip for nothing measurable: the walk calls it a dozen times a message.)
//
//go:noinline
func hasAt(s string, i int, lit string) bool {
	return i >= 0 && len(s)-i >= len(lit) && s[i:i+len(lit)] == lit
}

// fastInt reads the integer at s[i] as decimal takes it (at most 18 digits, no leading
// zero, a minus sign if signed): its value and the index after it, negative if decimal
// would refuse it.
func fastInt(s string, i int, signed bool) (int64, int) {
	neg := signed && i < len(s) && s[i] == '-'
	if neg {
		i++
	}
	start := i
	var n int64
	for i < len(s) && s[i]-'0' <= 9 {
		n = n*10 + int64(s[i]-'0')
		i++
	}
	if d := i - start; d == 0 || d > 18 || (s[start] == '0' && d > 1) {
		return 0, -1
	}
	if neg {
		n = -n
	}
	return n, i
}

// intText returns the text of the integer at s[i] (a sign, then digits; not checked
// further: decimal does) and the index after it.
func intText(s string, i int) (string, int) {
	start := i
	if i < len(s) && s[i] == '-' {
		i++
	}
	for i < len(s) && s[i]-'0' <= 9 {
		i++
	}
	return s[start:i], i
}

// fastResponse receives s if it is a compact ListOperationsResponse the fast path takes, to
// this replica. ok false means it did not take it and nothing changed; otherwise res and err
// are what receive of the parsed message gives.
func (r *Replica) fastResponse(s string) (res Result, ok bool, err error) {
	if !hasAt(s, 0, respHead) {
		return Result{}, false, nil
	}
	ops, vv, pushBack, more, sender, tokens, ok := r.readResponse(s)
	if !ok {
		r.dropPending() // the objects it met, as the general path drops them on an error
		return Result{}, false, nil
	}
	res, err = r.takeResponse(ops, vv, pushBack, sender, more, tokens)
	return res, true, err
}

// readResponse decodes the compact response s for fastResponse; ok false if the fast path
// does not take it (the objects it met are then pending).
func (r *Replica) readResponse(s string) (ops []*op, vv VersionVector, pushBack bool, more *hlc.Timestamp, sender string, tokens sessionTokens, ok bool) {
	d := &r.dec
	sender, i := plainString(s, len(respHead))
	if !hasAt(s, i, respRecipient) {
		return nil, nil, false, nil, "", sessionTokens{}, false
	}
	recipient, i := plainString(s, i+len(respRecipient))
	if (recipient != "" && recipient != r.peer) || !hasAt(s, i, respMessage) {
		return nil, nil, false, nil, "", sessionTokens{}, false // another's: the general path checks it all the same
	}
	i += len(respMessage)
	if hasAt(s, i, respFor) { // the asker's session token, echoed
		// Over maxToken: the general path refuses it.
		if tokens.forAsker, i = plainString(s, i+len(respFor)); i < 0 || !hasAt(s, i, ",") || len(tokens.forAsker) > maxToken {
			return nil, nil, false, nil, "", sessionTokens{}, false
		}
		i++
	}
	tokens.limit = r.opts.Limits.MaxMessageBytes // a responder of an earlier version: this replica's
	if hasAt(s, i, respLimit) {                  // the responder's limit (peerLimit)
		j := i + len(respLimit)
		k := j
		for k < len(s) && s[k] >= '0' && s[k] <= '9' {
			k++
		}
		n, err := r.peerLimit(s[j:k])
		if err != nil || !hasAt(s, k, ",") {
			return nil, nil, false, nil, "", sessionTokens{}, false // the general path says why
		}
		tokens.limit, i = n, k+1
	}
	if hasAt(s, i, respMore) { // a partial page: the clock of its last operation
		j := strings.IndexByte(s[i+len(respMore):], '"')
		if j < 0 {
			return nil, nil, false, nil, "", sessionTokens{}, false
		}
		ts, err := hlc.Parse(s[i+len(respMore) : i+len(respMore)+j])
		if err != nil || !hasAt(s, i+len(respMore)+j, `",`) {
			return nil, nil, false, nil, "", sessionTokens{}, false
		}
		more, i = &ts, i+len(respMore)+j+2
	}
	pushBack = hasAt(s, i, respPushBack)
	if pushBack {
		i += len(respPushBack)
	}
	if hasAt(s, i, respSession) { // the responder's own
		if tokens.responder, i = plainString(s, i+len(respSession)); i < 0 || !hasAt(s, i, ",") || len(tokens.responder) > maxToken {
			return nil, nil, false, nil, "", sessionTokens{}, false
		}
		i++
	}
	if !hasAt(s, i, respObjects) {
		return nil, nil, false, nil, "", sessionTokens{}, false
	}
	i += len(respObjects)
	p := jparser{s: s, maxDepth: d.lim.wireDepth(), stack: d.top[:0], arena: d.arena[:0]}

	// The objects: [subject, metadata], ….
	var idents [][2]string
	for i < len(s) && s[i] == '[' {
		sub, j := plainString(s, i+1)
		if j < 0 || j >= len(s) || s[j] != ',' {
			return nil, nil, false, nil, "", sessionTokens{}, false
		}
		meta, k := flatObject(s, j+1, &p.arena)
		if k < 0 || k+1 >= len(s) || s[k] != ']' {
			return nil, nil, false, nil, "", sessionTokens{}, false
		}
		idents = append(idents, [2]string{sub, meta})
		if i = k + 1; s[i] != ',' {
			break
		}
		if i++; i >= len(s) || s[i] != '[' { // a comma, then another: no trailing comma
			return nil, nil, false, nil, "", sessionTokens{}, false
		}
	}
	if !hasAt(s, i, respOps) {
		return nil, nil, false, nil, "", sessionTokens{}, false
	}
	i += len(respOps)
	r.reserve(len(idents))
	objs := newListedObjects(idents)

	// The operations, their peers known only at the end: each one's peer index waits in
	// peerOf until then.
	ops, peerOf, i := r.fastOps(&p, s, i, &objs)
	if i < 0 || !hasAt(s, i, respPeers) || objs.rest(r) != nil {
		return nil, nil, false, nil, "", sessionTokens{}, false
	}
	i += len(respPeers)
	var peers []string
	for i < len(s) && s[i] == '"' {
		var peer string
		if peer, i = plainString(s, i); i < 0 || i >= len(s) || hlc.ValidPeer(peer) != nil {
			return nil, nil, false, nil, "", sessionTokens{}, false
		}
		peers = append(peers, peer)
		if s[i] != ',' {
			break
		}
		if i++; i >= len(s) || s[i] != '"' {
			return nil, nil, false, nil, "", sessionTokens{}, false
		}
	}
	if !hasAt(s, i, respVector) {
		return nil, nil, false, nil, "", sessionTokens{}, false
	}
	p.i = i + len(respVector)
	raw := p.valueString(vectorValueDepth)
	if p.err != nil || !hasAt(s, p.i, respTail) || p.i+len(respTail) != len(s) {
		return nil, nil, false, nil, "", sessionTokens{}, false
	}
	vv, err := parseVector(raw)
	if err != nil {
		return nil, nil, false, nil, "", sessionTokens{}, false
	}
	for k, o := range ops {
		if int(peerOf[k]) >= len(peers) {
			return nil, nil, false, nil, "", sessionTokens{}, false
		}
		o.ts.Peer = d.peer(peers[peerOf[k]])
	}
	if cap(p.stack) > cap(d.top) {
		d.top = p.stack[:0]
	}
	if cap(p.arena) <= 1<<20 {
		d.arena = p.arena[:0]
	}
	return ops, vv, pushBack, more, sender, tokens, true
}

// fastOps reads the list of compact operations at s[i] up to its closing bracket (left at
// the index it returns, negative if the fast path does not take the list). The operations
// have no peer yet: peerOf holds each one's index in the list of peers.
func (r *Replica) fastOps(p *jparser, s string, i int, objs *listedObjects) (ops []*op, peerOf []uint32, end int) {
	var parts [8]string
	var wall int64
	for i < len(s) && s[i] == '[' {
		if len(ops) == r.opts.Limits.MaxBatch {
			return nil, nil, -1
		}
		i++
		var nums [4]int64 // the walltime's delta, the counter, the peer's index, the seq
		for k := range nums {
			if nums[k], i = fastInt(s, i, k == 0); i < 0 || i >= len(s) || s[i] != ',' {
				return nil, nil, -1
			}
			i++
		}
		dw, cnt, pi, sq := nums[0], nums[1], nums[2], nums[3]
		if pi >= 1<<32 || cnt > hlc.MaxCounter || sq >= 1<<53 {
			return nil, nil, -1
		}
		if wall += dw; wall < 0 || wall > hlc.MaxWall {
			return nil, nil, -1
		}
		ts := hlc.Timestamp{Wall: wall, Counter: uint32(cnt)}
		var o *op
		if i+2 < len(s) && s[i] == '4' && s[i+1] == ',' && s[i+2] == '[' { // a batch: [verb, obj, …], …
			o = r.bulk.next()
			o.ts, o.seq, o.verb = ts, uint64(sq), VerbBatch
			for i += 3; i < len(s) && s[i] == '['; i++ {
				var q []string
				if q, i = fastParts(p, s, i+1, parts[:0], subValueDepth); i < 0 {
					return nil, nil, -1
				}
				sub, err := r.decodeSub(q, objs)
				if err != nil {
					return nil, nil, -1
				}
				o.addSub(sub)
				if i >= len(s) || s[i] != ',' {
					break
				}
				if i+1 >= len(s) || s[i+1] != '[' {
					return nil, nil, -1
				}
			}
			if len(o.subOps()) == 0 || !hasAt(s, i, "]]") {
				return nil, nil, -1
			}
			i += 2
		} else {
			var q []string
			if q, i = fastParts(p, s, i, parts[:0], opValueDepth); i < 0 {
				return nil, nil, -1
			}
			var err error
			if o, err = r.decodeSub(q, objs); err != nil {
				return nil, nil, -1
			}
			o.ts, o.seq = ts, uint64(sq)
		}
		ops = append(ops, o)
		peerOf = append(peerOf, uint32(pi))
		if len(ops)%gcEvery == 0 {
			gcPoint()
		}
		if i >= len(s) || s[i] != ',' {
			break
		}
		if i++; i >= len(s) || s[i] != '[' { // an object-form operation, or a trailing comma
			return nil, nil, -1
		}
	}
	return ops, peerOf, i
}

// fastParts appends to dst the raw texts of the elements of a (sub-)operation at s[i],
// [verb, obj, key?, value?] after the clock, up to and past its closing bracket: the index
// after it, negative if the fast path does not take it. The verb and object are integers;
// a key or value is read by the parser at depth (validated, canonical).
func fastParts(p *jparser, s string, i int, dst []string, depth int) ([]string, int) {
	for {
		if len(dst) == cap(dst) {
			return nil, -1
		}
		var el string
		if len(dst) < 2 {
			el, i = intText(s, i)
		} else if start := i; i < len(s) && s[i] == '"' {
			if _, i = plainString(s, i); i >= 0 {
				el = s[start:i]
			} else {
				p.i = start
				if el = p.valueString(depth); p.err != nil {
					return nil, -1
				}
				i = p.i
			}
		} else {
			p.i = i
			if el = p.valueString(depth); p.err != nil {
				return nil, -1
			}
			i = p.i
		}
		if el == "" || i >= len(s) {
			return nil, -1
		}
		dst = append(dst, el)
		switch s[i] {
		case ',':
			i++
		case ']':
			return dst, i + 1
		default:
			return nil, -1
		}
	}
}
