package crdt

import (
	"math/bits"
	"unsafe"
)

// The fast path of receive: one walk over a message that is one operation written the way
// uMap and mapcrdt peers write it — compact, each member once, names and short strings
// without escapes, the metadata a flat object of strings. It fills the opFields that
// decodeOp would have read from the parsed members, with no member list in between and
// no second reading of the strings, and hands them to the same build. Any other message —
// whitespace, an escape, a non-ASCII key, an unknown member, a value the
// parser refuses — is left to the general parser (parseTop, decodeOp), which reads it
// again from the start: the fast path changes nothing before it answers. A repeated member
// needs no care: the last one wins here as it does in decodeOp.

// fastOp decodes s, a whole message, if it is an OperationMessage the fast path takes. ok
// false means it did not take it (nothing done); otherwise o and err are what decodeOp of
// the parsed message would give, and sender is the raw text of the sender member ("" if
// none).
func (d *decoder) fastOp(s string) (o *op, sender string, ok bool, err error) {
	d.metaMembers.n = 0
	o, sender, ok, err = d.fastOpOf(s)
	// The metadata's members serve this message's build only (identityKey): another
	// message's text may come at the same address (the wasm module's input buffer).
	d.metaMembers.n, d.metaSrc, d.metaCanon = 0, "", ""
	return o, sender, ok, err
}

func (d *decoder) fastOpOf(s string) (o *op, sender string, ok bool, err error) {
	if len(s) < 2 || s[0] != '{' {
		return nil, "", false, nil
	}
	p := jparser{s: s, i: 1, maxDepth: d.lim.wireDepth(), stack: d.top[:0], arena: d.arena[:0]}
	var f opFields
	if len(s) > 8 && s[2] == 'h' && s[1] == '"' { // (uMap's messages start otherwise: no attempt)
		if sender, ok := d.canonicalOp(s, &p, &f); ok {
			return d.fastBuilt(&p, &f, sender)
		}
		// Not in mapcrdt's own layout after all: read again, member by member.
		p = jparser{s: s, i: 1, maxDepth: d.lim.wireDepth(), stack: d.top[:0], arena: d.arena[:0]}
		f = opFields{}
	}
	hasKind := false
	for {
		i := p.i
		if i >= len(s) || s[i] != '"' {
			return nil, "", false, nil
		}
		var name string
		var id int
		if i+16 <= len(s) {
			name, id = knownName(s[i:])
		} else { // knownName reads 16 bytes: the last member's name is read from a copy
			var tail [16]byte
			copy(tail[:], s[i:])
			name, id = knownName(unsafe.String(&tail[0], len(tail)))
		}
		i += len(name) + 2 // "" (not a wire name) leaves i on the name's closing quote or in it
		if name == "" || i >= len(s) || s[i] != ':' {
			return nil, "", false, nil
		}
		i++
		var str string
		switch id { // the name's index: no string comparisons
		case wireKind:
			if str, i = plainString(s, i); !textEqual(str, "OperationMessage") {
				return nil, "", false, nil
			}
			hasKind = true
		case wireSender:
			start := i
			if _, i = plainString(s, i); i < 0 {
				return nil, "", false, nil
			}
			sender = s[start:i]
		case wireVerb:
			f.verb, i = plainString(s, i)
			f.hasVerb = true
		case wireSubject:
			f.subject, i = plainString(s, i)
			f.hasSubject = true
		case wireKey:
			f.key, i = plainString(s, i)
			f.hasKey = true
		case wireHLC:
			f.hlcText, i = plainString(s, i)
			f.hasHLC = true
		case wireSeq:
			start := i
			for i < len(s) && s[i]-'0' <= 9 {
				i++
			}
			n, good := parseSeq(s[start:i])
			if !good {
				return nil, "", false, nil
			}
			f.seq = n
		case wireMetadata:
			f.meta, i = flatObjectMembers(s, i, &p.arena, &d.metaMembers)
			d.metaSrc, d.metaCanon = s, f.meta
			f.hasMeta = true
		case wireValue:
			p.i = i
			if f.value = p.valueString(1); p.err != nil {
				return nil, "", false, nil
			}
			i = p.i
			f.hasValue = true
		default:
			return nil, "", false, nil
		}
		if i < 0 || i >= len(s) {
			return nil, "", false, nil
		}
		if s[i] == ',' {
			p.i = i + 1
			continue
		}
		if s[i] != '}' || i+1 != len(s) || !hasKind {
			return nil, "", false, nil
		}
		break
	}
	return d.fastBuilt(&p, &f, sender)
}

// fastBuilt keeps the parser's grown buffers for the next message and builds the
// operation of the fields the fast path read.
func (d *decoder) fastBuilt(p *jparser, f *opFields, sender string) (*op, string, bool, error) {
	if cap(p.stack) > cap(d.top) {
		d.top = p.stack[:0]
	}
	if cap(p.arena) <= 1<<20 {
		d.arena = p.arena[:0]
	}
	o, err := d.build(f, true)
	return o, sender, true, err
}

// canonicalOp reads the fields of an OperationMessage written the way a mapcrdt peer writes
// one (appendOpWith): compact, its members in name order — hlc, key, kind, metadata,
// sender, seq, subject, value, verb, with key, seq and value optional. The names and the
// constant text between the fields are compared, not looked up one member at a time; each
// field is read as fastOp's loop reads it, so that what it takes gives the same fields
// (FuzzFastOp). ok false: the text is not so laid out; f and p then hold a partial reading
// the caller discards.
func (d *decoder) canonicalOp(s string, p *jparser, f *opFields) (sender string, ok bool) {
	const (
		open     = canonicalOpen
		key      = `,"key":`
		kindMeta = `,"kind":"OperationMessage","metadata":`
		from     = `,"sender":`
		seq      = `,"seq":`
		subject  = `,"subject":`
		value    = `,"value":`
		verb     = `,"verb":`
	)
	if !litOpen.at(s, 0) {
		return "", false
	}
	i := len(open)
	if f.hlcText, i = plainString(s, i); i < 0 {
		return "", false
	}
	f.hasHLC = true
	if litKey.at(s, i) {
		if f.key, i = plainString(s, i+len(key)); i < 0 {
			return "", false
		}
		f.hasKey = true
	}
	if !litKindMeta[0].at(s, i) || !litKindMeta[1].at(s, i+16) || !litKindMeta[2].at(s, i+32) {
		return "", false
	}
	i += len(kindMeta)
	// A metadata text the replica holds (byMeta) is found by its first '}': a JSON object's
	// text ends where it closes, so a text held (a whole object) that the bytes up to that
	// brace equal is the member's whole value — nothing of it read member by member. Any
	// other text (unknown, unsorted, a '}' in a string) is read by flatObject.
	if e := indexByte(s, i, '}'); e > i {
		if obj := d.known(s[i : e+1]); obj != nil {
			f.meta, f.metaObj, i = s[i:e+1], obj, e+1
		}
	}
	if f.metaObj == nil {
		if f.meta, i = flatObjectMembers(s, i, &p.arena, &d.metaMembers); i < 0 {
			return "", false
		}
		d.metaSrc, d.metaCanon = s, f.meta
	}
	f.hasMeta = true
	if !litSender.at(s, i) {
		return "", false
	}
	start := i + len(from)
	if _, i = plainString(s, start); i < 0 {
		return "", false
	}
	sender = s[start:i]
	if litSeq.at(s, i) {
		start := i + len(seq)
		for i = start; i < len(s) && s[i]-'0' <= 9; i++ {
		}
		n, good := parseSeq(s[start:i])
		if !good {
			return "", false
		}
		f.seq = n
	}
	if !litSubject.at(s, i) {
		return "", false
	}
	if f.subject, i = plainString(s, i+len(subject)); i < 0 {
		return "", false
	}
	f.hasSubject = true
	if litValue.at(s, i) {
		// A plain string (printable ASCII, no escape) is its own canonical text.
		if j := i + len(value); j < len(s) && s[j] == '"' {
			if _, e := plainString(s, j); e > 0 {
				f.value, i = s[j:e], e
			}
		}
		if f.value == "" {
			p.i = i + len(value)
			if f.value = p.valueString(1); p.err != nil {
				return "", false
			}
			i = p.i
		}
		f.hasValue = true
	}
	if !litVerb.at(s, i) {
		return "", false
	}
	if f.verb, i = plainString(s, i+len(verb)); i < 0 {
		return "", false
	}
	f.hasVerb = true
	return sender, i == len(s)-1 && s[i] == '}'
}

// indexByte returns the index of the first c at or after s[i], or -1: eight bytes at a time
// (in wasm, strings.IndexByte is a byte loop).
func indexByte(s string, i int, c byte) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	if littleEndian {
		for n := len(s) - 8; i <= n; i += 8 {
			x := *(*uint64)(unsafe.Pointer(unsafe.StringData(s[i:]))) ^ (uint64(c) * ones)
			if m := (x - ones) &^ x & highs; m != 0 { // the lowest set bit marks the first c
				return i + bits.TrailingZeros64(m)>>3
			}
		}
	}
	for ; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// canonicalOpen is how a message in mapcrdt's own layout starts (canonicalOp).
const canonicalOpen = `{"hlc":`

// The short texts between canonicalOp's fields, as words to compare (lit16).
var (
	litOpen    = newLit16(canonicalOpen)
	litKey     = newLit16(`,"key":`)
	litSender  = newLit16(`,"sender":`)
	litSeq     = newLit16(`,"seq":`)
	litSubject = newLit16(`,"subject":`)
	litValue   = newLit16(`,"value":`)
	litVerb    = newLit16(`,"verb":`)
	// `,"kind":"OperationMessage","metadata":` (38 bytes) in three.
	litKindMeta = [3]lit16{newLit16(`,"kind":"Operati`), newLit16(`onMessage","meta`), newLit16(`data":`)}
)

// lit16 is a text of at most 16 bytes as two little-endian words and the mask of its bytes
// in the second: at compares it with two loads and no call (textEqual is a call in wasm,
// where a call costs what several loads do).
type lit16 struct {
	w0, m0, w1, m1 uint64
}

func newLit16(lit string) lit16 {
	var b [16]byte
	var m [16]byte
	copy(b[:], lit)
	for i := range lit {
		m[i] = 0xff
	}
	le := func(x []byte) uint64 {
		var w uint64
		for k := 7; k >= 0; k-- {
			w = w<<8 | uint64(x[k])
		}
		return w
	}
	return lit16{w0: le(b[:8]), m0: le(m[:8]), w1: le(b[8:]), m1: le(m[8:])}
}

// at reports whether s holds the text at i. It reads 16 bytes, so it answers false when
// fewer follow i (canonicalOp then leaves the message to fastOp's loop).
func (l *lit16) at(s string, i int) bool {
	if !littleEndian || i < 0 || len(s)-i < 16 {
		return false
	}
	p := unsafe.Pointer(unsafe.StringData(s))
	x0 := *(*uint64)(unsafe.Add(p, i))
	x1 := *(*uint64)(unsafe.Add(p, i+8))
	return x0&l.m0 == l.w0 && x1&l.m1 == l.w1
}

// plainString reads the JSON string at s[i] if it holds only printable ASCII without an
// escape, and returns its text and the index after its closing quote; i < 0 if it does not.
func plainString(s string, i int) (string, int) {
	if i >= len(s) || s[i] != '"' {
		return "", -1
	}
	// plainRun's loop, written out: a call less for each of the dozen strings of a message.
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	j := i + 1
	if littleEndian {
		for n := len(s) - 8; j <= n; j += 8 {
			x := *(*uint64)(unsafe.Pointer(unsafe.StringData(s[j:])))
			q := x ^ ('"' * ones)
			b := x ^ ('\\' * ones)
			if m := ((x - 0x20*ones) | (q - ones) | (b - ones) | x) & highs; m != 0 {
				j += bits.TrailingZeros64(m) >> 3
				goto end
			}
		}
	}
	for j < len(s) && plainByte[s[j]] {
		j++
	}
end:
	if j >= len(s) || s[j] != '"' {
		return "", -1
	}
	return s[i+1 : j], j + 1
}

// flatMember is one member of a flat object: its name, and its text `"name":"value"` at
// [start, end) of the object's text.
type flatMember struct {
	name       string
	start, end int
}

// flatObject reads the object at s[i] if it is flat — up to eight members, each a plain
// string (plainString) named by a plain string — and returns the index after it. Its
// canonical text is then s[i:end] itself (the names strictly increase) or the text
// flatObject writes into *arena (the members sorted). The index is negative for any other
// text: a value that is not a plain string, a repeated name, whitespace.
func flatObject(s string, i int, arena *[]byte) (canon string, end int) {
	var ms flatMembers
	return flatObjectMembers(s, i, arena, &ms)
}

// flatMembers are the members flatObjectMembers read, in the text's order.
type flatMembers struct {
	m [8]flatMember
	n int
}

// value returns the raw value of the member named name ("" if none): the member's text
// is "name":value, its name a plain string.
func (ms *flatMembers) value(s, name string) string {
	for _, m := range ms.m[:ms.n] {
		if m.name == name {
			return s[m.start+len(name)+3 : m.end]
		}
	}
	return ""
}

// flatObjectMembers is flatObject that leaves the members it read in *ms (for a flat
// object: n = 0 for any other text), for a caller that wants the values of some of them
// without reading the text again.
func flatObjectMembers(s string, i int, arena *[]byte, members *flatMembers) (canon string, end int) {
	members.n = 0
	if i >= len(s) || s[i] != '{' {
		return "", -1
	}
	start := i
	i++
	if i < len(s) && s[i] == '}' {
		return s[start : i+1], i + 1
	}
	ms := &members.m
	n := 0
	sorted := true
	for {
		name, j := plainString(s, i)
		if j < 0 || j >= len(s) || s[j] != ':' || n == len(ms) {
			return "", -1
		}
		if _, j = plainString(s, j+1); j < 0 || j >= len(s) {
			return "", -1
		}
		for k := range n {
			if ms[k].name == name {
				return "", -1 // a repeated name: the last one wins, as the parser decides
			}
		}
		if n > 0 && !nameLess(ms[n-1].name, name) {
			sorted = false
		}
		ms[n] = flatMember{name, i, j}
		n++
		switch s[j] {
		case ',':
			i = j + 1
			continue
		case '}':
		default:
			return "", -1
		}
		members.n = n
		if sorted {
			return s[start : j+1], j + 1
		}
		end = j + 1
		break
	}
	for a := 1; a < n; a++ { // insertion sort: a few members
		for b := a; b > 0 && nameLess(ms[b].name, ms[b-1].name); b-- {
			ms[b], ms[b-1] = ms[b-1], ms[b]
		}
	}
	mark := len(*arena)
	out := append(*arena, '{')
	for k := range n {
		if k > 0 {
			out = append(out, ',')
		}
		out = append(out, s[ms[k].start:ms[k].end]...)
	}
	out = append(out, '}')
	*arena = out
	return arenaString(out[mark:]), end
}
