//go:build js && wasm

package crdt

import (
	"syscall/js"
	"time"
)

// cpuTime is the processor time the Node process running the test has used so far
// (process.cpuUsage: user and system, every thread): unlike the wall clock, it does not
// grow while other processes hold the cores.
func cpuTime() time.Duration {
	u := js.Global().Get("process").Call("cpuUsage")
	return time.Duration(u.Get("user").Float()+u.Get("system").Float()) * time.Microsecond
}
