package hlc

import (
	"encoding/binary"
	"errors"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"unsafe"
)

// MaxCounter is the largest counter a Timestamp may carry. See the package documentation
// for what happens when a burst of events reaches it.
const MaxCounter = 1<<31 - 1

// MaxWall is the largest walltime (milliseconds) a Timestamp may carry: 2^53-1, the largest
// integer a JavaScript number holds exactly.
const MaxWall = 1<<53 - 1

// MaxPeerLen is the longest peer id a Timestamp accepts, in bytes.
const MaxPeerLen = 128

// ErrBadTimestamp is the sentinel of every malformed timestamp text.
var ErrBadTimestamp = errors.New("hlc: bad timestamp")

// Timestamp is one point of the hybrid logical clock. Its zero value is the zero clock, the
// smallest timestamp, used for values that were never written by anyone (a base value loaded
// from the server). Timestamps are small comparable values: == tells identity, Compare tells
// order.
type Timestamp struct {
	// Wall is the physical part: milliseconds since the Unix epoch.
	Wall int64
	// Counter breaks ties between events in the same millisecond.
	Counter uint32
	// Peer is the id of the replica that made the timestamp; it breaks the remaining ties.
	Peer string
}

// Compare returns -1 if t sorts before u, +1 if after, 0 if equal. Order: Wall as a number,
// then Counter as a number, then Peer bytewise.
func (t Timestamp) Compare(u Timestamp) int {
	// Written to stay under the inliner's budget: the engine compares clocks on every
	// operation, and in WebAssembly a call costs more than the comparison.
	if t.Wall != u.Wall {
		if t.Wall < u.Wall {
			return -1
		}
		return 1
	}
	if t.Counter != u.Counter {
		if t.Counter < u.Counter {
			return -1
		}
		return 1
	}
	switch {
	case t.Peer == u.Peer:
		return 0
	case t.Peer < u.Peer:
		return -1
	}
	return 1
}

// Less reports whether t sorts strictly before u.
func (t Timestamp) Less(u Timestamp) bool {
	if t.Wall != u.Wall {
		return t.Wall < u.Wall
	}
	if t.Counter != u.Counter {
		return t.Counter < u.Counter
	}
	return t.Peer < u.Peer
}

// IsZero reports whether t is the zero clock.
func (t Timestamp) IsZero() bool { return t == Timestamp{} }

// String returns uMap's text form "wall:counter:peer". The zero Timestamp gives "0:0:".
func (t Timestamp) String() string {
	return string(t.AppendText(make([]byte, 0, 24+len(t.Peer))))
}

// AppendText appends the text form of t to b.
func (t Timestamp) AppendText(b []byte) []byte {
	if t.Wall >= 0 && t.Wall < 1e16 {
		b = AppendDecimal(b, uint64(t.Wall))
	} else {
		b = strconv.AppendInt(b, t.Wall, 10) // not a walltime Parse accepts
	}
	b = append(b, ':')
	if t.Counter < 10 {
		b = append(b, byte('0'+t.Counter)) // the usual counter
	} else {
		b = AppendDecimal(b, uint64(t.Counter))
	}
	b = append(b, ':')
	return append(b, t.Peer...)
}

// AppendDecimal appends u < 10^16 in decimal (a larger u is written wrong): two eight-digit
// halves, each turned into its eight ASCII digits at once in one 64-bit word
// (eightDigits). A walltime has 13 digits; strconv divides the whole 64-bit number by 100
// seven times, and a 64-bit division by a constant is a long multiply, which WebAssembly
// has no instruction for. The crdt package writes its other numbers with it too.
func AppendDecimal(b []byte, u uint64) []byte {
	// The digits are stored into b's spare room with one or two word stores, shifted past
	// their leading zeros: no temporary array and no copy (a runtime call in wasm).
	n := len(b)
	if cap(b)-n < 16 {
		b = slices.Grow(b, 16)
	}
	d := b[n : n+16]
	hi, lo := uint32(u/1e8), uint32(u%1e8)
	if hi == 0 {
		w := eightDigits(lo)
		z := leadingZeroDigits(w, lo)
		binary.LittleEndian.PutUint64(d, (w+ascii8)>>(8*z))
		return b[:n+8-z]
	}
	w := eightDigits(hi)
	z := leadingZeroDigits(w, hi)
	binary.LittleEndian.PutUint64(d, (w+ascii8)>>(8*z))
	binary.LittleEndian.PutUint64(d[8-z:], eightDigits(lo)+ascii8)
	return b[:n+16-z]
}

const ascii8 = 0x3030303030303030 // '0' in each byte

// eightDigits returns the eight decimal digits of x < 10^8, one a byte, the first (most
// significant) in the lowest byte: the number is split into two four-digit lanes of 32 bits,
// each lane into two of 16, each of those into two of 8, dividing every lane at once by a
// multiplication and a shift (exact for the lane widths: TestEightDigits).
func eightDigits(x uint32) uint64 {
	v := uint64(x/10000) | uint64(x%10000)<<32
	h := (v * 10486 >> 20) & 0x0000007f0000007f // lane / 100, lanes < 10^4
	v = h | (v-h*100)<<16
	h = (v * 103 >> 10) & 0x000f000f000f000f // lane / 10, lanes < 10^2
	return h | (v-h*10)<<8
}

// leadingZeroDigits is how many of w = eightDigits(x)'s digits are leading zeros, at most 7
// (x = 0 is written "0").
func leadingZeroDigits(w uint64, x uint32) int {
	if x == 0 {
		return 7
	}
	return bits.TrailingZeros64(w) / 8
}

// Parse reads uMap's "wall:counter:peer" text. Wall and counter are decimal integers without
// sign or leading zeros (other than "0" itself); the peer id is everything after the second
// colon, non-empty, printable ASCII without spaces, '"' or '\\', at most MaxPeerLen bytes
// (the text is written inside JSON strings as it is). Errors wrap
// ErrBadTimestamp and quote the input.
func Parse(s string) (Timestamp, error) {
	// One pass over the digits (each field read up to its colon), where most texts are
	// valid; anything else is read again by parseSlow, which says what is wrong.
	wall, i, ok := decimalField(s, 0, MaxWall)
	if ok {
		var counter uint64
		if counter, i, ok = decimalField(s, i+1, MaxCounter); ok {
			if peer := s[i+1:]; peer != "" && len(peer) <= MaxPeerLen && printable(peer) {
				return Timestamp{Wall: int64(wall), Counter: uint32(counter), Peer: peer}, nil
			}
		}
	}
	return parseSlow(s)
}

// ParseWallCounter reads the "walltime:counter" text that starts a timestamp's, by Parse's
// rules, for a caller that has checked the peer id after it itself (a receiver that knows
// the id of the peer whose messages it is reading: the id's bytes compared, not checked
// again). ok is false for any text Parse would not take the two numbers from.
func ParseWallCounter(s string) (wall int64, counter uint32, ok bool) {
	if len(s) >= 15 && s[13] == ':' {
		if w, ok := wall13(s); ok {
			c, ok := parseDecimal(s[14:], MaxCounter)
			return int64(w), uint32(c), ok
		}
	}
	w, i, ok := decimalField(s, 0, MaxWall)
	if !ok {
		return 0, 0, false
	}
	c, ok := parseDecimal(s[i+1:], MaxCounter)
	return int64(w), uint32(c), ok
}

// wall13 reads a walltime of today's 13 digits at the start of s (len(s) ≥ 13) by
// decimalField's rules: two word loads, each eight digits checked and read at once
// (eightDigitsValue), where a byte loop took ~100 instructions. ok is false for anything
// else, and where words are not little-endian.
func wall13(s string) (uint64, bool) {
	if !littleEndian || len(s) < 13 || s[0] == '0' {
		return 0, false
	}
	p := unsafe.Pointer(unsafe.StringData(s))
	x := *(*uint64)(p)                // digits 0–7
	y := *(*uint64)(unsafe.Add(p, 5)) // digits 5–12
	// The first five digits, as eight with three leading zeros: shifted up three bytes (the
	// lowest byte is the first digit), the three bytes below filled with '0'.
	hi, ok1 := eightDigitsValue(x<<24 | 0x303030)
	lo, ok2 := eightDigitsValue(y)
	return hi*1e8 + lo, ok1 && ok2 // < 10^13 ≤ MaxWall
}

// eightDigitsValue reads the eight ASCII digits of x, the first in its lowest byte; ok is
// false if a byte is not a digit. (The reading: pairs of digits, then pairs of pairs, each
// step one multiply and shift for every lane at once.)
func eightDigitsValue(x uint64) (uint64, bool) {
	const zeros, highs = 0x3030303030303030, 0xF0F0F0F0F0F0F0F0
	// Every byte in '0'…'9': its high nibble is 3, and adding 6 leaves it 3.
	if x&highs != zeros || (x+0x0606060606060606)&highs != zeros {
		return 0, false
	}
	v := x - zeros
	v = v*10 + v>>8 // each 16-bit lane: its two digits' value in the low byte
	v = ((v&0x000000FF000000FF)*(100+1000000<<32) + (v>>16&0x000000FF000000FF)*(1+10000<<32)) >> 32
	return v, true
}

// littleEndian is true where a word's lowest byte is its first in memory (wasm, amd64,
// arm64): eightDigitsValue's order.
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// decimalField reads the decimal integer that starts at s[i] and ends at the next ':', by
// parseDecimal's rules, and returns it with the index of that colon.
func decimalField(s string, i int, max uint64) (n uint64, colon int, ok bool) {
	start := i
	for ; i < len(s) && s[i]-'0' <= 9; i++ {
		n = n*10 + uint64(s[i]-'0')
	}
	if d := i - start; i >= len(s) || s[i] != ':' || uint(d-1) >= 16 || (d > 1 && s[start] == '0') || n > max {
		return 0, 0, false // d-1 >= 16 (unsigned): no digit, or more than 16
	}
	return n, i, true
}

// parseSlow is Parse field by field, with the error that names the field at fault.
func parseSlow(s string) (Timestamp, error) {
	i := strings.IndexByte(s, ':')
	if i < 0 {
		return Timestamp{}, badTimestamp(s, "want wall:counter:peer")
	}
	j := strings.IndexByte(s[i+1:], ':')
	if j < 0 {
		return Timestamp{}, badTimestamp(s, "want wall:counter:peer")
	}
	j += i + 1
	wall, ok := parseDecimal(s[:i], MaxWall)
	if !ok {
		return Timestamp{}, badTimestamp(s, "walltime is not an integer in [0, 2^53)")
	}
	counter, ok := parseDecimal(s[i+1:j], MaxCounter)
	if !ok {
		return Timestamp{}, badTimestamp(s, "counter is not an integer in [0, 2^31)")
	}
	peer := s[j+1:]
	if err := ValidPeer(peer); err != nil {
		return Timestamp{}, badTimestamp(s, err.Error())
	}
	return Timestamp{Wall: int64(wall), Counter: uint32(counter), Peer: peer}, nil
}

// ValidPeer reports whether id can be a peer id: non-empty, at most MaxPeerLen bytes,
// printable ASCII without spaces, '"' or '\\' (a timestamp's text, which holds it, is
// written inside JSON strings without escapes).
func ValidPeer(id string) error {
	if id == "" {
		return errors.New("empty peer id")
	}
	if len(id) > MaxPeerLen {
		return errors.New("peer id longer than " + strconv.Itoa(MaxPeerLen) + " bytes")
	}
	if !printable(id) {
		return errors.New(`peer id has a character outside printable ASCII, or a " or \`)
	}
	return nil
}

// printable reports whether every byte of s is in '!' … '~' and neither '"' nor '\\': a
// peer id, and so a timestamp's text, is written inside JSON strings as it is. It tests
// eight bytes at a time: a peer id is often a 36-byte UUID, and in wasm each turn of a
// byte loop is a jump through the function's dispatch table.
func printable(s string) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(s); i += 8 {
		// One load (wasm merges no byte loads); the test below holds in either byte order.
		x := *(*uint64)(unsafe.Pointer(unsafe.StringData(s[i:])))
		// A high bit set marks a byte below '!' (x-0x21 wraps; a borrow comes only out of
		// such a byte), above '~' (x+1 reaches 0x80; a carry comes only out of a byte ≥ 0x80),
		// non-ASCII (x), or a quote or backslash (q-1, b-1 wrap where q or b is 0). A borrow
		// or carry into the next byte follows a bad byte: no harm.
		q, b := x^('"'*ones), x^('\\'*ones)
		if ((x-0x21*ones)|(x+ones)|x|(q-ones)|(b-ones))&highs != 0 {
			return false
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

func parseDecimal(s string, max uint64) (uint64, bool) {
	if s == "" || len(s) > 16 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, n <= max
}

// MustParse is Parse for tests and constants: it panics on malformed text.
func MustParse(s string) Timestamp {
	t, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return t
}

// Error is the error type of this package: a sentinel (ErrBadTimestamp or ErrClockDrift)
// with a message that quotes what was wrong.
type Error struct {
	Sentinel error  // ErrBadTimestamp or ErrClockDrift
	Msg      string // the whole message, "hlc: " and all
}

// Error returns the message.
func (e *Error) Error() string { return e.Msg }

// Unwrap returns the sentinel, so errors.Is(err, ErrClockDrift) works.
func (e *Error) Unwrap() error { return e.Sentinel }

func badTimestamp(s, why string) error {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return &Error{Sentinel: ErrBadTimestamp, Msg: "hlc: bad timestamp " + strconv.Quote(s) + ": " + why}
}
