package crdt

import (
	"bytes"
	"strings"
	"testing"
)

// TestAppendLitIsAppend holds appendLit to append: every length around its word path's
// bounds (0–40 bytes), appended after 0–40 bytes into 0–40 bytes of spare room, writes
// the same bytes and leaves the spare room past them as it was.
func TestAppendLitIsAppend(t *testing.T) {
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
					t.Fatalf("appendLit(%d bytes with %d spare, %q) = %q, want %q", pre, room, s, got, want)
				}
				if len(got) <= cap(b) { // written in place: the room past it untouched
					for i := len(got); i < cap(b); i++ {
						if full[i] != '.' {
							t.Fatalf("appendLit(%d bytes with %d spare, %q) wrote byte %d past its text", pre, room, s, i)
						}
					}
				}
			}
		}
	}
}
