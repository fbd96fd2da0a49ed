package hlc

import (
	"math/rand/v2"
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
