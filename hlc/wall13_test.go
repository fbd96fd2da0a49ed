package hlc

import (
	"strconv"
	"testing"
)

// TestWall13: the word-at-a-time reading of a 13-digit walltime takes exactly what
// decimalField takes, for numbers across the range and each byte in turn replaced by the
// bytes around the digits.
func TestWall13(t *testing.T) {
	if !littleEndian {
		t.Skip("words are not little-endian here: wall13 always declines")
	}
	texts := []string{"1000000000000", "9999999999999", "0123456789012", "1795480314487:5"}
	for v := uint64(1e12); v < 1e13; v += 7_777_777_777 + v%1000 {
		texts = append(texts, strconv.FormatUint(v, 10))
	}
	for i := range 13 {
		for _, b := range []byte{'/', ':', ';', '?', 'A', 0xB0, 0xF9, 0x00} {
			w := []byte("1795480314487")
			w[i] = b
			texts = append(texts, string(w))
		}
	}
	taken := 0
	for _, s := range texts {
		got, ok := wall13(s)
		// What decimalField reads as the walltime of s[:13] followed by a colon.
		want, colon, wantOK := decimalField(s[:13]+":", 0, MaxWall)
		wantOK = wantOK && colon == 13
		if ok != wantOK || (ok && got != want) {
			t.Errorf("%q: wall13 %d %v, decimalField %d %v", s, got, ok, want, wantOK)
		}
		if ok {
			taken++
		}
	}
	if taken < 1000 {
		t.Errorf("only %d texts read", taken)
	}
}
