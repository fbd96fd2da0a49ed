package hlc

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// printable against the byte-at-a-time rule, on every byte value at every position of
// strings of 0 to 40 bytes, and on random strings.
func TestPrintableIsTheByteRule(t *testing.T) {
	slow := func(s string) bool {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c <= ' ' || c > '~' {
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
