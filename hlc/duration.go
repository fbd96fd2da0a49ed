//go:build !(js && wasm)

package hlc

import "time"

// Duration is a span of time in nanoseconds: time.Duration itself (an alias), except in the
// wasm build, where it is an int64 of the same meaning and methods (duration_wasm.go) so the
// module does not link package time (~54 KB gzip: time's init links internal/godebug,
// internal/bisect, the runtime's metrics and package syscall).
type Duration = time.Duration

// The units of a Duration, as in package time.
const (
	Millisecond = time.Millisecond
	Second      = time.Second
	Minute      = time.Minute
	Hour        = time.Hour
)

// wallMillis is time.Now in milliseconds since the Unix epoch.
func wallMillis() int64 { return time.Now().UnixMilli() }
