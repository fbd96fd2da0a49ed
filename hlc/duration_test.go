package hlc_test

import (
	"math"
	"testing"
	"time"

	"github.com/mapcrdt/mapcrdt/hlc"
)

// The wasm build's Duration is its own int64 (the module links no package time): its units,
// Milliseconds and the system clock must be time's, which GOOS=js GOARCH=wasm go test checks.
func TestDurationIsTimeDuration(t *testing.T) {
	units := []struct {
		name string
		got  hlc.Duration
		want time.Duration
	}{
		{"Millisecond", hlc.Millisecond, time.Millisecond},
		{"Second", hlc.Second, time.Second},
		{"Minute", hlc.Minute, time.Minute},
		{"Hour", hlc.Hour, time.Hour},
	}
	for _, u := range units {
		if int64(u.got) != int64(u.want) {
			t.Errorf("hlc.%s = %d ns, want %d", u.name, int64(u.got), int64(u.want))
		}
	}
	for _, ns := range []int64{0, 1, 999_999, 1_000_000, 1_500_000, -1, -1_500_000, -999_999, math.MaxInt64, math.MinInt64} {
		if got, want := hlc.Duration(ns).Milliseconds(), time.Duration(ns).Milliseconds(); got != want {
			t.Errorf("Duration(%d).Milliseconds() = %d, want %d", ns, got, want)
		}
	}
	before := time.Now().UnixMilli()
	got := hlc.SystemClock{}.NowMillis()
	after := time.Now().UnixMilli()
	if got < before || got > after {
		t.Errorf("SystemClock.NowMillis() = %d, want within [%d, %d] (time.Now)", got, before, after)
	}
}
