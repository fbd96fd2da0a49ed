package hlc

import (
	"errors"
	"strconv"
	"sync"
)

// DefaultMaxDrift is how far ahead of the local wall clock a remote timestamp may be before
// Update refuses it.
const DefaultMaxDrift = 60 * Second

// ErrClockDrift is the sentinel of a remote timestamp too far ahead of the local wall clock.
var ErrClockDrift = errors.New("hlc: remote clock too far ahead")

// WallClock is the physical clock the HLC follows: milliseconds since the Unix epoch.
type WallClock interface {
	// NowMillis returns the current wall time in milliseconds since the Unix epoch.
	NowMillis() int64
}

// SystemClock is the WallClock of the operating system (time.Now).
type SystemClock struct{}

// NowMillis returns time.Now in milliseconds.
func (SystemClock) NowMillis() int64 { return wallMillis() }

// WallFunc adapts a function to WallClock (the wasm module passes Date.now through it).
type WallFunc func() int64

// NowMillis calls f.
func (f WallFunc) NowMillis() int64 { return f() }

// ManualClock is a WallClock for tests: it shows the time it was last set to. The zero value
// reads 0. It is safe for concurrent use.
type ManualClock struct {
	mu sync.Mutex
	ms int64
}

// NewManualClock returns a ManualClock set to ms.
func NewManualClock(ms int64) *ManualClock { return &ManualClock{ms: ms} }

// NowMillis returns the time last set.
func (m *ManualClock) NowMillis() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ms
}

// Set moves the clock to ms, backwards or forwards.
func (m *ManualClock) Set(ms int64) {
	m.mu.Lock()
	m.ms = ms
	m.mu.Unlock()
}

// Advance moves the clock by d milliseconds (negative steps back).
func (m *ManualClock) Advance(d int64) {
	m.mu.Lock()
	m.ms += d
	m.mu.Unlock()
}

// Clock is a hybrid logical clock owned by one peer. It is not safe for concurrent use; a
// replica owns its clock. Create it with New.
type Clock struct {
	peer     string
	wall     WallClock
	maxDrift int64 // milliseconds; <= 0 disables the guard
	last     Timestamp
}

// New returns the clock of peer, following wall (SystemClock if nil), with the default
// MaxDrift. It panics if peer is not a valid peer id (see ValidPeer): a programming error,
// not input.
func New(peer string, wall WallClock) *Clock {
	if err := ValidPeer(peer); err != nil {
		panic("hlc.New: " + err.Error())
	}
	if wall == nil {
		wall = SystemClock{}
	}
	return &Clock{peer: peer, wall: wall, maxDrift: DefaultMaxDrift.Milliseconds(), last: Timestamp{Peer: peer}}
}

// SetMaxDrift changes the drift guard. Zero or negative disables it (not recommended).
func (c *Clock) SetMaxDrift(d Duration) { c.maxDrift = d.Milliseconds() }

// MaxDrift returns the drift guard.
func (c *Clock) MaxDrift() Duration { return Duration(c.maxDrift) * Millisecond }

// Peer returns the peer id the clock stamps.
func (c *Clock) Peer() string { return c.peer }

// Last returns the clock's timestamp: the last one Now or Update returned, or the one
// Observe moved it to, under its own peer (zero walltime if none). It is at or after every
// timestamp the clock has issued or received.
func (c *Clock) Last() Timestamp { return c.last }

// Now returns a timestamp for a local event (send): strictly greater than every timestamp the
// clock returned or received before, with walltime max(wall clock, last walltime).
func (c *Clock) Now() Timestamp {
	pt := c.wall.NowMillis()
	if pt > c.last.Wall {
		c.last = Timestamp{Wall: pt, Peer: c.peer}
	} else {
		c.last = tick(c.last.Wall, c.last.Counter, c.peer)
	}
	return c.last
}

// Update merges a remote timestamp (receive) and returns the new local timestamp, which is
// greater than both remote and every earlier local timestamp. A remote timestamp more than
// MaxDrift ahead of the wall clock is refused with an error wrapping ErrClockDrift, and the
// clock is left unchanged.
func (c *Clock) Update(remote Timestamp) (Timestamp, error) {
	return c.UpdateAt(remote, c.wall.NowMillis())
}

// UpdateAt is Update with the wall clock read by the caller: pt, from WallMillis. A caller
// that checks a batch's drift and then merges it reads the wall clock once.
func (c *Clock) UpdateAt(remote Timestamp, pt int64) (Timestamp, error) {
	if c.maxDrift > 0 && remote.Wall-pt > c.maxDrift {
		return c.last, c.driftError(remote, pt)
	}
	l := c.last
	switch {
	case pt > l.Wall && pt > remote.Wall:
		c.last = Timestamp{Wall: pt, Peer: c.peer}
	case l.Wall == remote.Wall:
		cnt := l.Counter
		if remote.Counter > cnt {
			cnt = remote.Counter
		}
		c.last = tick(l.Wall, cnt, c.peer)
	case l.Wall > remote.Wall:
		c.last = tick(l.Wall, l.Counter, c.peer)
	default:
		c.last = tick(remote.Wall, remote.Counter, c.peer)
	}
	return c.last, nil
}

// CheckDrift returns an error wrapping ErrClockDrift if remote is more than MaxDrift ahead of
// the wall clock, and nil otherwise. It changes nothing.
func (c *Clock) CheckDrift(remote Timestamp) error {
	return c.CheckDriftAt(remote, c.wall.NowMillis())
}

// CheckDriftAt is CheckDrift with the wall clock read by the caller: pt, from WallMillis.
func (c *Clock) CheckDriftAt(remote Timestamp, pt int64) error {
	if c.maxDrift > 0 && remote.Wall-pt > c.maxDrift {
		return c.driftError(remote, pt)
	}
	return nil
}

// WallMillis reads the clock's wall clock (milliseconds since the Unix epoch), for
// CheckDriftAt and UpdateAt.
func (c *Clock) WallMillis() int64 { return c.wall.NowMillis() }

// driftError is the error of a remote clock too far ahead of the wall clock's pt.
func (c *Clock) driftError(remote Timestamp, pt int64) error {
	return &Error{Sentinel: ErrClockDrift, Msg: "hlc: remote clock " + strconv.Quote(remote.String()) +
		" is " + strconv.FormatInt(remote.Wall-pt, 10) + " ms ahead of the local wall clock (max " +
		strconv.FormatInt(c.maxDrift, 10) + " ms)"}
}

// Observe moves the clock past t without the drift guard: for timestamps the replica already
// trusts (restoring a snapshot of its own state). It never moves the clock backwards.
func (c *Clock) Observe(t Timestamp) {
	if t.Wall > c.last.Wall || (t.Wall == c.last.Wall && t.Counter > c.last.Counter) {
		c.last = Timestamp{Wall: t.Wall, Counter: t.Counter, Peer: c.peer}
	}
}

// tick returns the timestamp right after (wall, counter) for peer, carrying a counter
// overflow into walltime.
func tick(wall int64, counter uint32, peer string) Timestamp {
	if counter >= MaxCounter {
		return Timestamp{Wall: wall + 1, Peer: peer}
	}
	return Timestamp{Wall: wall, Counter: counter + 1, Peer: peer}
}
