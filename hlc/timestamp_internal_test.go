package hlc

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// printable against the byte-at-a-time rule (printable ASCII but '"' and '\\'), on every
// byte value at every position of strings of 0 to 40 bytes, and on random strings.
func TestPrintableIsTheByteRule(t *testing.T) {
	slow := func(s string) bool {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c <= ' ' || c > '~' || c == '"' || c == '\\' {
				return false
			}
		}
		return true
	}
	for n := 0; n <= 40; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = 'a'
		}
		if !printable(string(b)) {
			t.Fatalf("%q refused", b)
		}
		for pos := 0; pos < n; pos++ {
			for c := 0; c < 256; c++ {
				b[pos] = byte(c)
				if got, want := printable(string(b)), slow(string(b)); got != want {
					t.Fatalf("%q (byte %#x at %d): %v, want %v", b, c, pos, got, want)
				}
			}
			b[pos] = 'a'
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200_000 {
		b := make([]byte, rng.IntN(48))
		for i := range b {
			if rng.IntN(6) == 0 {
				b[i] = byte(rng.IntN(256))
			} else {
				b[i] = byte('!' + rng.IntN(94))
			}
		}
		if got, want := printable(string(b)), slow(string(b)); got != want {
			t.Fatalf("%q: %v, want %v", b, got, want)
		}
	}
}

// TestParseIsParseSlow: Parse's one pass over the digits gives what parseSlow, field by
// field, gives — the same timestamp or the same error — on texts built of digits, colons,
// zeros, peers and bad bytes, and on fields of 15 to 17 digits around the limits.
func TestParseIsParseSlow(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	parts := []string{"0", "1", "9", "00", "01", "10", "1727193549000", "9007199254740991", "9007199254740992",
		"2147483647", "2147483648", "12345678901234567", "18446744073709551616", ":", ":", ":", "-", "a", "p", " ", "\xff", "é",
		"606d26bd-230f-4d3e-a2a7-0c3caed71548", strings.Repeat("x", MaxPeerLen)}
	for n := 0; n < 200000; n++ {
		var b strings.Builder
		for k := rng.IntN(7); k >= 0; k-- {
			b.WriteString(parts[rng.IntN(len(parts))])
		}
		s := b.String()
		got, err := Parse(s)
		want, werr := parseSlow(s)
		if got != want || (err == nil) != (werr == nil) || (err != nil && err.Error() != werr.Error()) {
			t.Fatalf("Parse(%q) = %#v, %v; parseSlow: %#v, %v", s, got, err, want, werr)
		}
	}
}

// AppendText against strconv, on every power of ten and its neighbours, the limits, and
// random walltimes and counters.
func TestAppendTextIsStrconv(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	walls := []int64{0, 1, 9, 10, 99, 100, MaxWall, MaxWall + 1, 1e16 - 1, 1e16, 1<<63 - 1, -1, -1 << 63}
	for p := int64(1); p <= 1e18; p *= 10 {
		walls = append(walls, p-1, p, p+1)
	}
	counters := []uint32{0, 1, 9, 10, 11, 99, 100, 101, MaxCounter, 1<<32 - 1}
	for n := 0; n < 100000; n++ {
		walls = append(walls, rng.Int64N(1<<uint(1+rng.IntN(62))))
		counters = append(counters, uint32(rng.Uint64N(1<<uint(1+rng.IntN(32)))))
	}
	for k, w := range walls {
		ts := Timestamp{Wall: w, Counter: counters[k%len(counters)], Peer: "p"}
		want := strconv.FormatInt(w, 10) + ":" + strconv.FormatUint(uint64(ts.Counter), 10) + ":p"
		if got := string(ts.AppendText([]byte("x"))); got != "x"+want {
			t.Fatalf("AppendText(%#v) = %q, want %q", ts, got, "x"+want)
		}
	}
}

// eightDigits on every x < 10^8 in steps, and around every power of ten.
func TestEightDigits(t *testing.T) {
	check := func(x uint32) {
		w := eightDigits(x)
		var b [8]byte
		for k := range b {
			b[k] = byte(w>>(8*k)) + '0'
		}
		if want := fmt.Sprintf("%08d", x); string(b[:]) != want {
			t.Fatalf("eightDigits(%d) = %q, want %q", x, b[:], want)
		}
		if z := leadingZeroDigits(w, x); z != 8-len(strconv.Itoa(int(x))) {
			t.Fatalf("leadingZeroDigits(%d) = %d", x, z)
		}
	}
	for x := uint32(0); x < 1e8; x += 997 {
		check(x)
	}
	for p := uint32(1); p <= 1e7; p *= 10 {
		for d := uint32(0); d < 200; d++ {
			check(p + d)
			check(min(p*10-1, p*10-d))
		}
	}
	check(1e8 - 1)
}
