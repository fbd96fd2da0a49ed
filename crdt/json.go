package crdt

// A small JSON reader and writer, made for this engine: it validates, canonicalizes and edits
// JSON text without decoding it into map[string]any, and without encoding/json, reflect or
// fmt (each of which costs the wasm module hundreds of kilobytes; see README "Limits").
//
// Canonical form: no insignificant whitespace, object members sorted by their decoded name
// (bytewise), a duplicate member name keeps its last value (as JavaScript's JSON.parse does),
// strings and numbers kept as their original text. Two replicas that received the same
// operations produce byte-identical canonical text.

import (
	"math/bits"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// canonicalJSON validates s (RFC 8259, valid UTF-8, nesting at most maxDepth) and returns
// its canonical form.
func canonicalJSON(s string, maxDepth int) (string, error) {
	c, err := canonicalWith(nil, s, maxDepth)
	if err != nil || c != s {
		return strings.Clone(c), err // c is in a scratch arena of this call: kept only by the copy
	}
	return strings.Clone(s), nil
}

// jscratch is the reused memory of a parser: the member stack and the arena (see jparser).
type jscratch struct {
	stack []member
	arena []byte
}

// canonicalWith is canonicalJSON without a copy: the result is s itself when s is canonical
// already (what a mapcrdt peer or JSON.stringify of a flat value gives: validated by scan),
// otherwise text in sc's arena, valid until the next use of sc. A nil sc uses memory of
// this call.
func canonicalWith(sc *jscratch, s string, maxDepth int) (string, error) {
	p := jparser{s: s, maxDepth: maxDepth}
	if sc != nil {
		p.stack, p.arena = sc.stack[:0], sc.arena[:0]
	}
	p.ws()
	// s itself when canonical already, or s without its surrounding whitespace
	v := p.valueString(0)
	p.ws()
	if p.err == nil && p.i < len(s) {
		p.fail("unexpected text after the value")
	}
	if sc != nil && cap(p.arena) <= 1<<20 {
		sc.stack, sc.arena = p.stack[:0], p.arena[:0]
	}
	if p.err != nil {
		return "", p.err
	}
	return v, nil
}

// jparser reads one JSON text. stack holds the members of the objects (and elements of
// the arrays) being canonicalized, innermost last; arena holds the canonical text written
// for nested values that were not canonical. Strings pointing into arena stay valid until
// the arena is reused (the next parse with the same scratch: parseObjectInto, canonicalWith).
type jparser struct {
	s        string
	i        int
	maxDepth int
	err      error
	stack    []member
	arena    []byte
	ends     endMemo // nil, or where the big values of the text end (see endMemo)
}

// bigValue is the size from which scan notes where an object or array ends (endMemo).
const bigValue = 16 << 10

// endMemo remembers where the big objects and arrays of a message end, by the address of
// their first byte, as the validating scan found them: the values of a sync response are
// walked again (its members listed, then the list of operations's), and skip jumps over a
// noted value instead of reading it. The text must not change while the memo is used (a
// message being received does not): the decoder empties it before each message.
type endMemo map[uintptr]uintptr

func (m endMemo) note(s string, start, end int) {
	base := uintptr(unsafe.Pointer(unsafe.StringData(s)))
	m[base+uintptr(start)] = base + uintptr(end)
}

// end returns where the value at s[i] ends, if noted and inside s.
func (m endMemo) end(s string, i int) (int, bool) {
	if len(m) == 0 {
		return 0, false
	}
	base := uintptr(unsafe.Pointer(unsafe.StringData(s)))
	e, ok := m[base+uintptr(i)]
	if !ok || e <= base+uintptr(i) || e > base+uintptr(len(s)) {
		return 0, false
	}
	return int(e - base), true
}

func (p *jparser) fail(why string) { p.failWith(ErrInvalidJSON, why) }

func (p *jparser) tooDeep() {
	p.failWith(ErrTooDeep, "JSON nested deeper than "+strconv.Itoa(p.maxDepth)+" levels")
}

func (p *jparser) failWith(sentinel error, why string) {
	if p.err != nil {
		return
	}
	at := p.i
	lo := at - 16
	if lo < 0 {
		lo = 0
	}
	if sentinel == ErrTooDeep {
		lo = at
	}
	hi := at + 16
	if hi > len(p.s) {
		hi = len(p.s)
	}
	p.err = newError(sentinel, why+" at byte "+strconv.Itoa(at)+" near "+quote(p.s[lo:hi]))
}

func (p *jparser) ws() {
	s, i := p.s, p.i
	// A table: one branch a byte where four compares cost four (in wasm, each branch is a
	// jump through the function's dispatch table).
	for i < len(s) && wsByte[s[i]] {
		i++
	}
	p.i = i
}

// wsByte marks JSON's insignificant whitespace.
var wsByte = [256]bool{' ': true, '\t': true, '\n': true, '\r': true}

// members parses the object at p.i into its members, in input order, values canonical.
func (p *jparser) members(depth int) []member { return p.membersInto(nil, depth) }

// membersInto is members appending to dst[:0] (a buffer the caller reuses).
func (p *jparser) membersInto(dst []member, depth int) []member {
	saved := p.stack
	p.stack = dst[:0]
	ok := p.pushMembers(depth)
	ms := p.stack
	p.stack = saved
	if !ok {
		return nil
	}
	return ms
}

// pushMembers parses the object at p.i and appends its members to p.stack, in input order,
// values canonical. A nested object or array uses the stack above them and gives it back.
func (p *jparser) pushMembers(depth int) bool { return p.pushList(depth, '{', '}') }

// pushElements parses the array at p.i and appends its elements (canonical, no names) to
// p.stack.
func (p *jparser) pushElements(depth int) bool { return p.pushList(depth, '[', ']') }

// pushList is pushMembers ('{' … '}') or pushElements ('[' … ']'). Whitespace is looked
// for only where the byte expected is not there: compact text (what peers send) pays no
// check for it.
func (p *jparser) pushList(depth int, open, close byte) bool {
	if depth >= p.maxDepth {
		p.tooDeep()
		return false
	}
	if p.i >= len(p.s) || p.s[p.i] != open {
		p.fail("expected an object")
		return false
	}
	p.i++
	if p.i < len(p.s) && p.s[p.i] <= ' ' {
		p.ws()
	}
	if p.i < len(p.s) && p.s[p.i] == close {
		p.i++
		return true
	}
	for p.err == nil {
		var name string
		if open == '{' {
			if p.i < len(p.s) && p.s[p.i] <= ' ' {
				p.ws()
			}
			if name = p.name(); p.err != nil {
				return false
			}
			if !(p.at(':') || p.wsTo(':')) {
				p.fail("expected ':'")
				return false
			}
		}
		if p.i < len(p.s) && p.s[p.i] <= ' ' {
			p.ws()
		}
		val := p.valueString(depth + 1) // may use the stack above, and gives it back
		p.stack = append(p.stack, member{name: name, val: val})
		if p.at(',') || p.wsTo(',') {
			continue
		}
		if p.at(close) || p.wsTo(close) {
			return p.err == nil
		}
		if open == '{' {
			p.fail("expected ',' or '}'")
		} else {
			p.fail("expected ',' or ']'")
		}
	}
	return false
}

// at moves past c if it is the next byte, and reports whether it was.
func (p *jparser) at(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

// wsTo is at after whitespace, for where at found none of c (pushList: p.at(c) || p.wsTo(c)).
//
//go:noinline
func (p *jparser) wsTo(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] <= ' ' {
		p.ws()
		if p.i < len(p.s) && p.s[p.i] == c {
			p.i++
			return true
		}
	}
	return false
}

// nameLess is a < b for member names, which mostly differ in their first byte: decided
// there without a call of the runtime's string comparison.
func nameLess(a, b string) bool {
	if len(a) > 0 && len(b) > 0 && a[0] != b[0] {
		return a[0] < b[0]
	}
	return a < b
}

// appendMembers writes members as a canonical object: sorted by name, last duplicate wins.
func appendMembers(out []byte, members []member) []byte { return appendSorted(out, members, false) }

// appendSorted is appendMembers; with plainNames, every name is known to need no escape
// (it was read from text without one) and is written as it is.
func appendSorted(out []byte, members []member, plainNames bool) []byte {
	// Stable sort keeps duplicates in input order; the last one wins. The usual object
	// (metadata, a geometry) has a few members: an insertion sort, stable as it only moves
	// a member past a greater one, takes a fraction of SortStableFunc's instructions.
	if len(members) <= 12 {
		for i := 1; i < len(members); i++ {
			for j := i; j > 0 && nameLess(members[j].name, members[j-1].name); j-- {
				members[j], members[j-1] = members[j-1], members[j]
			}
		}
	} else {
		sortStable(members, func(a, b member) int { return strings.Compare(a.name, b.name) })
	}
	out = append(out, '{')
	n := 0
	for k, m := range members {
		if k+1 < len(members) && members[k+1].name == m.name {
			continue
		}
		if n > 0 {
			out = append(out, ',')
		}
		n++
		if plainNames {
			out = append(out, '"')
			out = append(out, m.name...)
			out = append(out, '"')
		} else {
			out = appendString(out, m.name)
		}
		out = append(out, ':')
		out = append(out, m.val...)
	}
	return append(out, '}')
}

// parseObject validates s as a JSON object and returns its top-level members in input order
// (duplicates included), each value in canonical form.
func parseObject(s string, maxDepth int) ([]member, error) {
	return parseObjectInto(nil, nil, s, maxDepth)
}

// parseObjectInto is parseObject appending to dst[:0] (a buffer the caller reuses). With
// arena non-nil, the canonical text of values that were not canonical is written into
// *arena, reused from its start: it is valid until the next call with the same arena.
func parseObjectInto(dst []member, arena *[]byte, s string, maxDepth int) ([]member, error) {
	return parseObjectEnds(dst, arena, nil, s, maxDepth)
}

// parseObjectEnds is parseObjectInto noting in ends where the big values end (endMemo).
func parseObjectEnds(dst []member, arena *[]byte, ends endMemo, s string, maxDepth int) ([]member, error) {
	p := jparser{s: s, maxDepth: maxDepth, ends: ends}
	if arena != nil {
		p.arena = (*arena)[:0]
	}
	p.ws()
	if p.i >= len(s) || s[p.i] != '{' {
		if _, err := canonicalJSON(s, maxDepth); err != nil {
			return nil, err
		}
		return nil, newError(ErrBadMessage, "expected a JSON object, got "+quote(s))
	}
	m := p.membersInto(dst, 0)
	p.ws()
	if p.err == nil && p.i < len(s) {
		p.fail("unexpected text after the value")
	}
	if arena != nil && cap(p.arena) <= 1<<20 { // a huge one is not kept
		*arena = p.arena[:0]
	}
	return m, p.err
}

// validMembers lists the members of raw into dst[:0] without checking raw again: raw must
// be an object value of text this parser validated and canonicalized (a value of a
// parsed message).
func validMembers(dst []member, raw string) []member { return validMembersEnds(dst, raw, nil) }

// validMembersEnds is validMembers skipping the values the memo knows (see endMemo).
func validMembersEnds(dst []member, raw string, ends endMemo) []member {
	dst = dst[:0]
	it := members(raw)
	it.p.ends = ends
	for name, val, ok := it.next(); ok; name, val, ok = it.next() {
		dst = append(dst, member{name: name, val: val})
	}
	return dst
}

type member struct {
	name string // decoded
	val  string // canonical value
}

// valueString returns the canonical text of the value at p.i: a slice of the input when it
// is canonical already (a string, number or literal always is), otherwise text written into
// p.arena (valid while the arena is: see jparser).
func (p *jparser) valueString(depth int) string {
	start := p.i
	if p.i < len(p.s) && p.s[p.i] == '{' {
		base := len(p.stack)
		canonical, sortOnly := p.scanObject(depth, true)
		if canonical {
			return p.s[start:p.i]
		}
		if sortOnly {
			return p.writeSorted(base)
		}
	} else if p.scan(depth) {
		return p.s[start:p.i] // already canonical: the engine's own output usually is
	}
	if p.err != nil {
		return ""
	}
	p.i = start
	return p.rewrite(depth)
}

// rewrite returns the canonical text of the value at p.i, which scan found valid so far but
// not canonical, written into p.arena.
func (p *jparser) rewrite(depth int) string {
	base := len(p.stack)
	switch p.s[p.i] {
	case '{':
		ok := p.pushMembers(depth)
		mark := len(p.arena) // after the nested values pushMembers wrote
		if ok {
			p.arena = appendMembers(p.arena, p.stack[base:])
		}
		p.stack = p.stack[:base]
		return arenaString(p.arena[mark:])
	case '[':
		ok := p.pushElements(depth)
		mark := len(p.arena)
		if !ok {
			p.stack = p.stack[:base]
			return ""
		}
		p.arena = append(p.arena, '[')
		for k, m := range p.stack[base:] {
			if k > 0 {
				p.arena = append(p.arena, ',')
			}
			p.arena = append(p.arena, m.val...)
		}
		p.arena = append(p.arena, ']')
		p.stack = p.stack[:base]
		return arenaString(p.arena[mark:])
	}
	return string(p.value(nil, depth)) // scan refused a scalar: value reports the error
}

func arenaString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// scan validates the value at p.i without building anything and reports whether it is
// already canonical (no whitespace, object members strictly sorted, no escaped names).
func (p *jparser) scan(depth int) bool {
	if p.i >= len(p.s) {
		p.fail("unexpected end of input")
		return false
	}
	switch c := p.s[p.i]; {
	case c == '{':
		ok, _ := p.scanObject(depth, false) // one in the wrong order is rewritten from the top
		return ok
	case c == '[':
		if depth >= p.maxDepth {
			p.tooDeep()
			return false
		}
		open := p.i
		p.i++
		if p.i < len(p.s) && p.s[p.i] == ']' {
			p.i++
			return true
		}
		for {
			// Strings and numbers, most of the elements, without a call of scan for each.
			if p.i < len(p.s) && p.s[p.i] == '"' {
				if p.str(); p.err != nil {
					return false
				}
			} else if p.i < len(p.s) && (p.s[p.i]-'0' <= 9 || p.s[p.i] == '-') {
				if p.number(); p.err != nil {
					return false
				}
			} else if !p.scan(depth + 1) {
				return false
			}
			if p.i < len(p.s) && p.s[p.i] == ',' {
				p.i++
				continue
			}
			if p.i < len(p.s) && p.s[p.i] == ']' {
				p.i++
				if p.ends != nil && p.i-open >= bigValue {
					p.ends.note(p.s, open, p.i)
				}
				return true
			}
			return false
		}
	case c == '"':
		p.str()
		return p.err == nil
	}
	switch c := p.s[p.i]; {
	case c == '-' || (c >= '0' && c <= '9'):
		p.number()
	case strings.HasPrefix(p.s[p.i:], "true"):
		p.i += 4
	case strings.HasPrefix(p.s[p.i:], "false"):
		p.i += 5
	case strings.HasPrefix(p.s[p.i:], "null"):
		p.i += 4
	default:
		return false // whitespace or an error: the full parse decides
	}
	return p.err == nil
}

// scanObject is scan for the object at p.i. With list, when the object is valid and
// compact, its names unescaped and its values canonical, but its members are out of order
// (or a name repeats) — uMap's metadata and geometries, written by JavaScript in insertion
// order — sortOnly is true, p.i is past the object and its members are left on p.stack,
// above its length at the call: writeSorted makes the canonical text of them, without a
// second parse (see listFirst). Otherwise p.stack is as it was. (scan, inside a value,
// does not list: a nested object out of order has its container rewritten from the top.)
func (p *jparser) scanObject(depth int, list bool) (canonical, sortOnly bool) {
	if depth >= p.maxDepth {
		p.tooDeep()
		return false, false
	}
	open := p.i
	p.i++
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		return true, false
	}
	prev, first, sorted, listing := "", true, true, list
	base := len(p.stack)
	for {
		if p.i >= len(p.s) || p.s[p.i] != '"' {
			return p.unlist(base)
		}
		start := p.i
		name := p.name()
		// An escape always decodes shorter than it is written: a name with one is not
		// canonical.
		if p.err != nil || len(name) != p.i-start-2 {
			return p.unlist(base)
		}
		if sorted && !first && !nameLess(prev, name) {
			sorted = false
			if !list {
				return false, false // not canonical, and not to be written from a list
			}
			if !listing { // the members before this one: valid already
				it := members(p.s[open:start])
				for n, v, ok := it.next(); ok; n, v, ok = it.next() {
					p.stack = append(p.stack, member{name: n, val: v})
				}
				listing = true
			}
		}
		prev, first = name, false
		if p.i >= len(p.s) || p.s[p.i] != ':' {
			return p.unlist(base)
		}
		p.i++
		val := p.i
		if p.i < len(p.s) && p.s[p.i] == '"' { // as in scan's loop over elements
			if p.str(); p.err != nil {
				return p.unlist(base)
			}
		} else if p.i < len(p.s) && (p.s[p.i]-'0' <= 9 || p.s[p.i] == '-') {
			if p.number(); p.err != nil {
				return p.unlist(base)
			}
		} else if !p.scan(depth + 1) {
			return p.unlist(base)
		}
		if listing {
			p.stack = append(p.stack, member{name: name, val: p.s[val:p.i]})
			if sorted && len(p.stack)-base >= listFirst {
				p.stack, listing = p.stack[:base], false // a big object, in order so far
			}
		}
		if p.i < len(p.s) && p.s[p.i] == ',' {
			p.i++
			continue
		}
		if p.i < len(p.s) && p.s[p.i] == '}' {
			p.i++
			if p.ends != nil && p.i-open >= bigValue {
				p.ends.note(p.s, open, p.i)
			}
			if sorted {
				p.stack = p.stack[:base]
			}
			return sorted, !sorted
		}
		return p.unlist(base)
	}
}

// listFirst is how many members scanObject lists as it reads them: an object out of order
// is usually a small one (metadata, a geometry), read once; a bigger one, in order so far,
// is listed again from its start when a member out of order turns up.
const listFirst = 8

// unlist drops the members scanObject listed from base (if it did) and reports the object
// neither canonical nor only out of order.
func (p *jparser) unlist(base int) (canonical, sortOnly bool) {
	p.stack = p.stack[:base]
	return false, false
}

// writeSorted writes the object whose members scanObject left on p.stack[base:] in
// canonical form into p.arena, takes the members off the stack and returns the text.
func (p *jparser) writeSorted(base int) string {
	mark := len(p.arena)
	p.arena = appendSorted(p.arena, p.stack[base:], true)
	p.stack = p.stack[:base]
	return arenaString(p.arena[mark:])
}

func (p *jparser) value(out []byte, depth int) []byte {
	if p.err != nil {
		return out
	}
	if p.i >= len(p.s) {
		p.fail("unexpected end of input")
		return out
	}
	switch c := p.s[p.i]; {
	case c == '{':
		base := len(p.stack)
		if p.pushMembers(depth) {
			out = appendMembers(out, p.stack[base:])
		}
		p.stack = p.stack[:base]
		return out
	case c == '[':
		if depth >= p.maxDepth {
			p.tooDeep()
			return out
		}
		p.i++
		p.ws()
		out = append(out, '[')
		if p.i < len(p.s) && p.s[p.i] == ']' {
			p.i++
			return append(out, ']')
		}
		for first := true; p.err == nil; first = false {
			if !first {
				out = append(out, ',')
			}
			p.ws()
			out = p.value(out, depth+1)
			p.ws()
			if p.i < len(p.s) && p.s[p.i] == ',' {
				p.i++
				continue
			}
			if p.i < len(p.s) && p.s[p.i] == ']' {
				p.i++
				return append(out, ']')
			}
			p.fail("expected ',' or ']'")
		}
		return out
	case c == '"':
		start := p.i
		p.str()
		return append(out, p.s[start:p.i]...)
	case c == '-' || (c >= '0' && c <= '9'):
		start := p.i
		p.number()
		return append(out, p.s[start:p.i]...)
	case strings.HasPrefix(p.s[p.i:], "true"):
		p.i += 4
		return append(out, "true"...)
	case strings.HasPrefix(p.s[p.i:], "false"):
		p.i += 5
		return append(out, "false"...)
	case strings.HasPrefix(p.s[p.i:], "null"):
		p.i += 4
		return append(out, "null"...)
	}
	p.fail("unexpected character")
	return out
}

// escapeByte marks the bytes appendString escapes: controls, '"' and '\\'. (The strings it
// writes are short: a table beats the eight-byte loop of plainRun, by instruction count.)
var escapeByte = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// plainByte marks the bytes a string can hold as they are: printable ASCII but '"' and '\\'.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// littleEndian is true where the SWAR loop of plainRun applies (the lowest address is the
// lowest byte of a word): amd64, arm64, wasm, 386 … Elsewhere the byte loop does it all.
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// plainRun returns the index of the first byte at or after i that a string cannot hold as
// it is (see plainByte), or len(s). It looks at eight bytes at a time (SWAR): strings are
// most of what the engine reads, and a byte-at-a-time loop costs nine instructions a byte.
func plainRun(s string, i int) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	if littleEndian {
		for n := len(s) - 8; i <= n; i += 8 {
			x := *(*uint64)(unsafe.Pointer(unsafe.StringData(s[i:]))) // unaligned loads are fine on amd64, arm64 and wasm
			q := x ^ ('"' * ones)
			b := x ^ ('\\' * ones)
			// A high bit set in m marks a byte below 0x20 (x-0x20 wraps), a '"' or a '\\'
			// (q-1 or b-1 wraps) or a non-ASCII byte (x). Only the lowest one counts, and it
			// is always a real one: below it no byte wraps, so no borrow runs into it, and a
			// good byte (0x20…0x7f) minus 0x20, or a nonzero q or b byte below 0x80 minus 1,
			// keeps its high bit clear.
			if m := ((x - 0x20*ones) | (q - ones) | (b - ones) | x) & highs; m != 0 {
				return i + bits.TrailingZeros64(m)>>3
			}
		}
	}
	for i < len(s) && plainByte[s[i]] {
		i++
	}
	return i
}

// name is str for a member name: names are short, and a byte loop finds the end of a
// plain one in fewer instructions than str's eight-byte loop.
func (p *jparser) name() string {
	s, start := p.s, p.i+1
	if littleEndian && p.i+16 <= len(s) {
		if n, _ := knownName(s[p.i:]); n != "" {
			p.i += len(n) + 2
			return n
		}
	}
	if p.i < len(s) && s[p.i] == '"' {
		for i := start; i < len(s) && i-start < 16; i++ {
			c := s[i]
			if plainByte[c] {
				continue
			}
			if c == '"' {
				p.i = i + 1
				return s[start:i]
			}
			break
		}
	}
	n := p.str()
	// An escape decodes shorter than it is written. A lone surrogate decodes to U+FFFD:
	// {"\ud800":1,"\udc00":2} would become one member, a value silently lost.
	if p.err == nil && len(n) != p.i-start-1 && loneSurrogate(s[start:p.i-1]) {
		p.failWith(ErrBadValue, "a member name escapes a lone UTF-16 surrogate")
	}
	return n
}

// wireNames are the member names of uMap's messages, their metadata and geometries, and of
// mapcrdt's sync messages: the names the parser reads most.
var wireNames = []string{
	"kind", "sender", "verb", "subject", "metadata", "key", "value", "hlc", "seq", "operations",
	"id", "layerId", "featureType", "type", "coordinates", "properties", "geometry",
	"message", "recipient", "lastKnownHLC", "vector", "state", "objects", "ops", "peers",
}

// The positions in wireNames of the members of an operation message, as knownName
// returns them: fastOp switches on them (a switch on the names compared them as strings).
const (
	wireKind = iota
	wireSender
	wireVerb
	wireSubject
	wireMetadata
	wireKey
	wireValue
	wireHLC
	wireSeq
)

// quotedName is a wire name with its quotes, as two little-endian words and their masks,
// for knownName to compare with two loads (Go merges no loads of a constant string
// comparison on wasm: it compares byte by byte there).
type quotedName struct {
	name     string
	id       int // its index in wireNames
	w0, w1   uint64
	m0, m1   uint64
	twoWords bool
}

// namesByFirst lists the wire names by their first letter.
var namesByFirst = func() (t [256][]quotedName) {
	for id, n := range wireNames {
		q := `"` + n + `"`
		if len(q) > 16 {
			panic("wire name too long: " + n)
		}
		var b [16]byte
		copy(b[:], q)
		qn := quotedName{name: n, id: id, twoWords: len(q) > 8}
		for k := range min(len(q), 8) {
			qn.w0 |= uint64(b[k]) << (8 * k)
			qn.m0 |= 0xff << (8 * k)
		}
		for k := 8; k < len(q); k++ {
			qn.w1 |= uint64(b[k]) << (8 * (k - 8))
			qn.m1 |= 0xff << (8 * (k - 8))
		}
		t[n[0]] = append(t[n[0]], qn)
	}
	return
}()

// knownName returns the wire name that s (at least 16 bytes, little-endian memory) starts
// with, quotes included, and its index in wireNames, or "" and -1 for any other text. It
// reads no byte past s[15].
func knownName(s string) (string, int) {
	cands := namesByFirst[s[1]]
	if len(cands) == 0 {
		return "", -1
	}
	x0 := *(*uint64)(unsafe.Pointer(unsafe.StringData(s)))
	for k := range cands {
		c := &cands[k]
		if x0&c.m0 != c.w0 {
			continue
		}
		if c.twoWords && *(*uint64)(unsafe.Pointer(unsafe.StringData(s[8:])))&c.m1 != c.w1 {
			continue
		}
		return c.name, c.id
	}
	return "", -1
}

// str reads a string at p.i and returns its decoded value.
func (p *jparser) str() string {
	s, i := p.s, p.i
	if i >= len(s) || s[i] != '"' {
		p.fail("expected a string")
		return ""
	}
	i++
	start := i
	plain := true
	for i < len(s) {
		i = plainRun(s, i)
		if i >= len(s) {
			break
		}
		c := s[i]
		switch {
		case c == '"':
			p.i = i + 1
			if plain {
				return s[start:i]
			}
			return decodeString(s[start:i])
		case c == '\\':
			plain = false
			if i+1 >= len(s) {
				p.i = i
				p.fail("unterminated escape")
				return ""
			}
			switch s[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(s) || !isHex4(s[i+2:i+6]) {
					p.i = i
					p.fail("bad \\u escape")
					return ""
				}
				i += 6
			default:
				p.i = i
				p.fail("bad escape")
				return ""
			}
		case c < 0x20:
			p.i = i
			p.fail("control character in string")
			return ""
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size <= 1 {
				p.i = i
				p.fail("invalid UTF-8")
				return ""
			}
			i += size
		}
	}
	p.i = i
	p.fail("unterminated string")
	return ""
}

func (p *jparser) number() {
	s, i := p.s, p.i
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i]-'1' <= 8:
		for i++; i < len(s) && s[i]-'0' <= 9; i++ {
		}
	default:
		p.i = i
		p.fail("bad number")
		return
	}
	if i < len(s) && (s[i] == '.' || s[i]|0x20 == 'e') {
		p.fraction(i) // the integers of the engine's own texts end here
		return
	}
	p.i = i
}

// fraction reads the fraction and exponent of a number from s[i], its '.', 'e' or 'E'.
func (p *jparser) fraction(i int) {
	s := p.s
	if s[i] == '.' {
		i++
		d := i
		for i < len(s) && s[i]-'0' <= 9 {
			i++
		}
		if i == d {
			p.i = i
			p.fail("bad number")
			return
		}
	}
	if i < len(s) && s[i]|0x20 == 'e' {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		d := i
		for i < len(s) && s[i]-'0' <= 9 {
			i++
		}
		if i == d {
			p.i = i
			p.fail("bad number")
			return
		}
	}
	p.i = i
}

func isHex4(s string) bool {
	for i := 0; i < 4; i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// loneSurrogate reports whether the body of a validated JSON string escapes a UTF-16
// surrogate without its pair (\ud800 alone): decodeString makes it U+FFFD, so two such
// texts that differ decode alike. An identity or a key holding one is refused rather than
// made to name what another names.
func loneSurrogate(raw string) bool {
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		i++
		if raw[i] != 'u' {
			continue
		}
		r := hexVal(raw[i+1 : i+5])
		i += 4
		if r >= 0xDC00 && r < 0xE000 {
			return true // a low surrogate first
		}
		if r >= 0xD800 && r < 0xDC00 {
			if i+6 >= len(raw) || raw[i+1] != '\\' || raw[i+2] != 'u' {
				return true
			}
			if r2 := hexVal(raw[i+3 : i+7]); r2 < 0xDC00 || r2 >= 0xE000 {
				return true
			}
			i += 6
		}
	}
	return false
}

// decodeString decodes the body of a validated JSON string. A lone surrogate becomes U+FFFD.
func decodeString(raw string) string {
	if strings.IndexByte(raw, '\\') < 0 {
		return raw
	}
	var b strings.Builder
	b.Grow(len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		i++
		switch raw[i] {
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			r := rune(hexVal(raw[i+1 : i+5]))
			i += 4
			if r >= 0xD800 && r < 0xDC00 && i+6 < len(raw) && raw[i+1] == '\\' && raw[i+2] == 'u' {
				r2 := rune(hexVal(raw[i+3 : i+7]))
				if r2 >= 0xDC00 && r2 < 0xE000 {
					r = 0x10000 + (r-0xD800)<<10 + (r2 - 0xDC00)
					i += 6
				}
			}
			if r >= 0xD800 && r < 0xE000 {
				r = utf8.RuneError
			}
			b.WriteRune(r)
		default: // " \ /
			b.WriteByte(raw[i])
		}
	}
	return b.String()
}

func hexVal(s string) int {
	n := 0
	for i := 0; i < 4; i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			n = n*16 + int(c-'0')
		case c >= 'a' && c <= 'f':
			n = n*16 + int(c-'a'+10)
		default:
			n = n*16 + int(c-'A'+10)
		}
	}
	return n
}

// AppendJSONString appends s as a JSON string (quotes, backslashes and control characters
// escaped, everything else copied as it is): for callers building messages around the
// engine's, such as the wasm bridge.
func AppendJSONString(b []byte, s string) []byte { return appendString(b, s) }

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !escapeByte[c] {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"':
			b = append(b, '\\', '"')
		case '\\':
			b = append(b, '\\', '\\')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			const hex = "0123456789abcdef"
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// eachMember calls fn for each member of a canonical (or at least valid) JSON object, with
// the decoded name and the raw value, until fn returns false. It does nothing if raw is not
// an object.
func eachMember(raw string, fn func(name, val string) bool) {
	it := members(raw)
	for name, val, ok := it.next(); ok; name, val, ok = it.next() {
		if !fn(name, val) {
			return
		}
	}
}

// memberIter walks the members of a valid JSON object without a callback (calls through
// closures are dear in a Go wasm module).
type memberIter struct {
	p    jparser
	done bool
}

// members returns an iterator over the members of raw; none if raw is not an object.
func members(raw string) memberIter {
	it := memberIter{p: jparser{s: raw, i: 1, maxDepth: 1 << 30}}
	if len(raw) < 2 || raw[0] != '{' {
		it.done = true
		return it
	}
	it.p.ws()
	if it.p.i < len(raw) && raw[it.p.i] == '}' {
		it.done = true
	}
	return it
}

// next returns the next member's decoded name and raw value.
func (it *memberIter) next() (name, val string, ok bool) {
	p := &it.p
	if it.done || p.err != nil || p.i >= len(p.s) {
		return "", "", false
	}
	p.ws()
	name = p.name()
	p.ws()
	p.i++ // ':'
	p.ws()
	start := p.i
	p.skip()
	if p.err != nil {
		it.done = true
		return "", "", false
	}
	val = p.s[start:p.i]
	p.ws()
	if p.i >= len(p.s) || p.s[p.i] != ',' {
		it.done = true
	} else {
		p.i++
	}
	return name, val, true
}

// skip moves past one value of text this parser validated already (a value of a parsed
// message: every caller reads such text). It finds where the value ends without checking it
// again — strings end at the first quote not escaped. On other text it stops somewhere or
// fails, and never reads out of bounds.
func (p *jparser) skip() {
	if p.i >= len(p.s) {
		p.fail("unexpected end of input")
		return
	}
	s, i := p.s, p.i
	switch c := s[i]; c {
	case '"':
		i = stringEnd(s, i)
	case '{', '[':
		if e, ok := p.ends.end(s, i); ok {
			p.i = e
			return
		}
		depth := 0
		for i >= 0 && i < len(s) {
			switch s[i] {
			case '"':
				i = stringEnd(s, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					p.i = i + 1
					return
				}
			}
			i++
			for i < len(s) && !skipStop[s[i]] { // numbers, literals, ',' and ':'
				i++
			}
		}
		p.i = len(s)
		p.fail("unterminated value")
		return
	default:
		for i < len(s) && !scalarEnd[s[i]] {
			i++
		}
		if i == p.i {
			p.fail("expected a value")
			return
		}
	}
	if i < 0 {
		p.i = len(s)
		p.fail("unterminated string")
		return
	}
	p.i = i
}

// skipPart is skip for an element of a compact operation (see nextParts), whose usual
// parts are integers and short strings: those without a call to skip.
func (p *jparser) skipPart() {
	s, i := p.s, p.i
	if i < len(s) {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			for i++; i < len(s) && !scalarEnd[s[i]]; i++ {
			}
			p.i = i
			return
		case c == '"':
			if e := stringEnd(s, i); e > 0 {
				p.i = e
				return
			}
		}
	}
	p.skip() // anything else, and the errors
}

// stringEnd returns the index after the closing quote of the string that starts at s[i]
// (a '"'), or -1 if it has none: the first quote after an even run of backslashes.
func stringEnd(s string, i int) int {
	// Most strings are short and hold no backslash: eight bytes at a time to the first '"'
	// or '\\' (see plainRun), without IndexByte's call; the loop below does the rest.
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	j := i + 1
	for littleEndian && j+8 <= len(s) {
		x := *(*uint64)(unsafe.Pointer(unsafe.StringData(s[j:])))
		q := x ^ ('"' * ones)
		b := x ^ ('\\' * ones)
		if m := ((q-ones)&^q | (b-ones)&^b) & highs; m != 0 {
			if k := j + bits.TrailingZeros64(m)>>3; s[k] == '"' {
				return k + 1
			}
			break // a backslash: the loop below counts them
		}
		j += 8
	}
	for ; j < len(s); j++ {
		k := strings.IndexByte(s[j:], '"')
		if k < 0 {
			return -1
		}
		j += k
		b := j - 1
		for b > i && s[b] == '\\' {
			b--
		}
		if (j-1-b)%2 == 0 {
			return j + 1
		}
	}
	return -1
}

// skipStop marks the bytes skip stops at inside an object or array; scalarEnd those that
// end a number or literal.
var skipStop, scalarEnd = func() (stop, end [256]bool) {
	for _, c := range []byte(`"{}[]`) {
		stop[c] = true
	}
	for _, c := range []byte(",}] \t\r\n") {
		end[c] = true
	}
	return
}()

// memberOf returns the raw value of member name in a canonical object, and whether it exists.
func memberOf(raw, name string) (string, bool) {
	it := members(raw)
	for n, v, ok := it.next(); ok; n, v, ok = it.next() {
		if n == name {
			return v, true
		}
	}
	return "", false
}

// lookup follows path through nested objects of a canonical value.
func lookup(raw string, path []string) (string, bool) {
	for _, name := range path {
		v, ok := memberOf(raw, name)
		if !ok {
			return "", false
		}
		raw = v
	}
	return raw, true
}

// isObject reports whether raw JSON text is an object.
func isObject(raw string) bool { return len(raw) > 0 && raw[0] == '{' }

// jtree is a JSON value being edited: either raw canonical text or, once expanded, an object
// whose members are trees. Edits follow the engine's path rule: every path part names an
// object member; setting below a value that is not an object first replaces it with {}.
type jtree struct {
	raw  string
	kids map[string]*jtree // non-nil: an expanded object
}

func (t *jtree) expand() {
	if t.kids != nil {
		return
	}
	t.kids = map[string]*jtree{}
	eachMember(t.raw, func(name, val string) bool {
		t.kids[name] = &jtree{raw: val}
		return true
	})
	t.raw = ""
}

// set writes raw at path (non-empty) below t.
func (t *jtree) set(path []string, raw string) {
	t.parent(path).kids[path[len(path)-1]] = &jtree{raw: raw}
}

// unset removes the member at path (non-empty). Like set, it first makes every object on
// the way exist: a write, set or unset, always leaves the objects above its path in place,
// which is what makes a write covered by a newer one at an ancestor path leave no trace.
func (t *jtree) unset(path []string) {
	delete(t.parent(path).kids, path[len(path)-1])
}

// parent returns the expanded object that holds the last part of path, making every
// object on the way (a value that is not an object is replaced by {}).
func (t *jtree) parent(path []string) *jtree {
	for _, name := range path[:len(path)-1] {
		if t.kids == nil && !isObject(t.raw) {
			t.raw = "{}"
		}
		t.expand()
		k := t.kids[name]
		if k == nil || (k.kids == nil && !isObject(k.raw)) {
			k = &jtree{raw: "{}"}
			t.kids[name] = k
		}
		t = k
	}
	if t.kids == nil && !isObject(t.raw) {
		t.raw = "{}"
	}
	t.expand()
	return t
}

// appendTo writes the canonical text of t.
func (t *jtree) appendTo(b []byte) []byte {
	if t.kids == nil {
		return append(b, t.raw...)
	}
	names := make([]string, 0, len(t.kids))
	for n := range t.kids {
		names = append(names, n)
	}
	sortStable(names, strings.Compare)
	b = append(b, '{')
	for i, n := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, n)
		b = append(b, ':')
		b = t.kids[n].appendTo(b)
	}
	return append(b, '}')
}

// String returns the canonical text of t.
func (t *jtree) String() string { return string(t.appendTo(nil)) }

// elemIter walks the elements of a valid JSON array without a callback.
type elemIter struct {
	p    jparser
	done bool
}

// elementsOf returns an iterator over the elements of raw, a valid JSON array (none if raw
// is not an array).
func elementsOf(raw string) elemIter {
	it := elemIter{p: jparser{s: raw, i: 1, maxDepth: 1 << 30}}
	if len(raw) < 2 || raw[0] != '[' || raw[1] == ']' {
		it.done = true
	}
	return it
}

// nextMembers reads the next element. When it is an object (a list of operations in uMap's
// form), its members are appended to dst and returned, in the same pass over the text
// (walking the element to its end and then its members would read it twice); otherwise
// members is nil. more is false at the end.
func (it *elemIter) nextMembers(dst []member) (members []member, el string, more bool) {
	p := &it.p
	if it.done || p.err != nil || p.i >= len(p.s) {
		return nil, "", false
	}
	start := p.i
	if p.s[p.i] != '{' {
		p.skip()
	} else {
		m := memberIter{p: jparser{s: p.s, i: p.i + 1, maxDepth: p.maxDepth}}
		if m.p.ws(); m.p.i < len(p.s) && p.s[m.p.i] == '}' {
			m.done = true
		}
		members = dst[:0]
		for name, val, ok := m.next(); ok; name, val, ok = m.next() {
			members = append(members, member{name: name, val: val})
		}
		if m.p.ws(); m.p.err != nil || m.p.i >= len(p.s) || p.s[m.p.i] != '}' {
			p.i = m.p.i
			p.fail("expected '}'")
		} else {
			p.i = m.p.i + 1
		}
	}
	if el, more = it.end(start); !more {
		return nil, "", false
	}
	return members, el, true
}

// end finishes the element that began at start: its text, and false after an error. It
// steps over the ',' that follows, or marks the list done.
func (it *elemIter) end(start int) (string, bool) {
	p := &it.p
	if p.err != nil {
		it.done = true
		return "", false
	}
	el := p.s[start:p.i]
	if p.i >= len(p.s) || p.s[p.i] != ',' {
		it.done = true
	} else {
		p.i++
	}
	return el, true
}

// nextParts reads the next element. When it is an array (the compact encoding's arrays of
// arrays), its elements are appended to dst and returned as parts, in the same pass over
// the text; otherwise parts is nil. more is false at the end.
func (it *elemIter) nextParts(dst []string) (parts []string, el string, more bool) {
	p := &it.p
	if it.done || p.err != nil || p.i >= len(p.s) {
		return nil, "", false
	}
	start := p.i
	if p.s[p.i] != '[' {
		p.skip()
	} else {
		p.i++
		parts = dst
		if p.i < len(p.s) && p.s[p.i] == ']' {
			p.i++
		} else {
			for p.err == nil {
				s := p.i
				p.skipPart()
				if p.err != nil {
					break
				}
				parts = append(parts, p.s[s:p.i])
				if p.i < len(p.s) && p.s[p.i] == ',' {
					p.i++
					continue
				}
				if p.i < len(p.s) && p.s[p.i] == ']' {
					p.i++
					break
				}
				p.fail("expected ',' or ']'")
			}
		}
	}
	if el, more = it.end(start); !more {
		return nil, "", false
	}
	return parts, el, true
}
