//go:build js && wasm

package hlc

import _ "unsafe" // go:linkname

// Duration is a span of time in nanoseconds, as time.Duration. The wasm build declares its
// own so that the module does not link package time (~54 KB gzip: time's init links
// internal/godebug, internal/bisect, the runtime's metrics and package syscall); elsewhere
// Duration is time.Duration itself (duration.go).
type Duration int64

// The units of a Duration, as in package time.
const (
	Millisecond Duration = 1_000_000
	Second               = 1000 * Millisecond
	Minute               = 60 * Second
	Hour                 = 60 * Minute
)

// Milliseconds returns d as an integer millisecond count, rounded toward zero (as
// time.Duration.Milliseconds).
func (d Duration) Milliseconds() int64 { return int64(d) / 1e6 }

// timeNow is time.now, which the runtime provides (walltime and nanotime) and time.Now
// reads: linked by name, the module needs no package time to read the wall clock.
//
//go:linkname timeNow time.now
func timeNow() (sec int64, nsec int32, mono int64)

// wallMillis is time.Now in milliseconds since the Unix epoch.
func wallMillis() int64 {
	sec, nsec, _ := timeNow()
	return sec*1e3 + int64(nsec)/1e6
}
