package crdt

import (
	"bytes"
	"strings"
	"testing"
)

// TestAppendLitIsAppend holds appendLit and appendLit4 to append: every length around their
// word paths' bounds (0–40 bytes), appended after 0–40 bytes into 0–40 bytes of spare room,
// writes the same bytes and leaves the spare room past them as it was.
func TestAppendLitIsAppend(t *testing.T) {
	for _, f := range []struct {
		name string
		fn   func([]byte, string) []byte
	}{{"appendLit", appendLit}, {"appendLit4", appendLit4}} {
		testAppendLit(t, f.name, f.fn)
	}
}

func testAppendLit(t *testing.T, name string, appendLit func([]byte, string) []byte) {
	src := "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	for n := 0; n <= 40; n++ {
		s := strings.Clone(src[len(src)-n:]) // its own allocation: nothing after it to read
		for pre := 0; pre <= 40; pre += 5 {
			for room := 0; room <= 40; room++ {
				b := make([]byte, pre, pre+room)
				full := b[:cap(b)]
				for i := range full {
					full[i] = '.'
				}
				want := append(bytes.Clone(b), s...)
				got := appendLit(b, s)
				if !bytes.Equal(got, want) {
					t.Fatalf("%s(%d bytes with %d spare, %q) = %q, want %q", name, pre, room, s, got, want)
				}
				if len(got) <= cap(b) { // written in place: the room past it untouched
					for i := len(got); i < cap(b); i++ {
						if full[i] != '.' {
							t.Fatalf("%s(%d bytes with %d spare, %q) wrote byte %d past its text", name, pre, room, s, i)
						}
					}
				}
			}
		}
	}
}
