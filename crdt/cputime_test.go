//go:build unix

package crdt

import (
	"syscall"
	"time"
)

// cpuTime is the processor time the test process has used so far (user and system, every
// thread): unlike the wall clock, it does not grow while other processes hold the cores.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
