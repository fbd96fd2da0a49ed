package hlc_test

import (
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mapcrdt/mapcrdt/hlc"
)

// step is one event in a scripted clock history: the wall clock is set to wall, then the clock
// sends (Now) or, if recv is set, receives recv (Update). want is the timestamp returned.
type step struct {
	name    string
	wall    int64
	recv    string // remote timestamp text; "" for a send
	want    string
	wantErr error
}

// runHistory plays steps on a fresh clock of peer "a" and checks every result.
func runHistory(t *testing.T, steps []step) *hlc.Clock {
	t.Helper()
	wall := hlc.NewManualClock(0)
	c := hlc.New("a", wall)
	for i, s := range steps {
		wall.Set(s.wall)
		var got hlc.Timestamp
		var err error
		if s.recv == "" {
			got = c.Now()
		} else {
			got, err = c.Update(hlc.MustParse(s.recv))
		}
		if !errors.Is(err, s.wantErr) || (err == nil) != (s.wantErr == nil) {
			t.Fatalf("step %d (%s): error %v, want %v", i, s.name, err, s.wantErr)
		}
		if want := hlc.MustParse(s.want); got != want {
			t.Fatalf("step %d (%s): got %v, want %v", i, s.name, got, want)
		}
		if last := c.Last(); last != got {
			t.Fatalf("step %d (%s): Last() = %v, want %v", i, s.name, last, got)
		}
	}
	return c
}

// TestClockHistory is a scripted send/receive history in the manner of CockroachDB's hlc
// tests: each step sets the wall clock, sends or receives, and names the timestamp expected.
func TestClockHistory(t *testing.T) {
	runHistory(t, []step{
		{name: "first send takes the wall clock", wall: 1000, want: "1000:0:a"},
		{name: "same millisecond: counter grows", wall: 1000, want: "1000:1:a"},
		{name: "wall clock catches up: counter resets", wall: 1001, want: "1001:0:a"},
		{name: "wall clock steps back: walltime kept, counter grows", wall: 999, want: "1001:1:a"},
		{name: "still behind: counter grows again", wall: 999, want: "1001:2:a"},
		{name: "wall clock passes last: counter resets", wall: 1002, want: "1002:0:a"},
		{name: "receive from a peer behind: tick local", wall: 1002, recv: "1000:7:b", want: "1002:1:a"},
		{name: "receive equal walltime, remote counter higher: max+1", wall: 1002, recv: "1002:5:b", want: "1002:6:a"},
		{name: "receive equal walltime, local counter higher: max+1", wall: 1002, recv: "1002:3:b", want: "1002:7:a"},
		{name: "receive equal walltime and counter: +1", wall: 1002, recv: "1002:7:b", want: "1002:8:a"},
		{name: "receive, wall clock ahead of both: wall clock, counter 0", wall: 1003, recv: "1002:9:b", want: "1003:0:a"},
		{name: "receive from a peer ahead within drift: jump walltime and counter", wall: 1003, recv: "5000:4:b", want: "5000:5:a"},
		{name: "send while running ahead of the wall clock", wall: 1004, want: "5000:6:a"},
		{name: "receive between wall clock and last: tick local", wall: 1004, recv: "4000:99:b", want: "5000:7:a"},
		{name: "receive far ahead: refused, clock unchanged", wall: 1004, recv: "70000:0:b", want: "5000:7:a", wantErr: hlc.ErrClockDrift},
		{name: "send after a refusal ignores the refused remote", wall: 1004, want: "5000:8:a"},
		{name: "wall clock reaches last walltime: counter still grows", wall: 5000, want: "5000:9:a"},
		{name: "wall clock passes last walltime: counter resets", wall: 5001, want: "5001:0:a"},
		{name: "receive remote equal to last except peer", wall: 5001, recv: "5001:0:b", want: "5001:1:a"},
		{name: "wall clock jumps forward by a lot", wall: 66000, want: "66000:0:a"},
		{name: "the once refused remote is now within drift", wall: 66000, recv: "70000:0:b", want: "70000:1:a"},
		{name: "wall clock steps back by a minute", wall: 6000, want: "70000:2:a"},
		{name: "receive uMap's counter 9 after counter 10", wall: 70000, recv: "70000:9:b", want: "70000:10:a"},
		{name: "then counter 10 from another peer", wall: 70000, recv: "70000:10:c", want: "70000:11:a"},
	})
}

// TestClockMonotonicRandom drives three clocks with jumping wall clocks (forward, backward,
// stalled) and random message exchanges, and checks the two HLC guarantees on every event:
// each clock's timestamps strictly increase, and a received timestamp sorts before the one
// the receiver returns.
func TestClockMonotonicRandom(t *testing.T) {
	refused := 0
	for seed := uint64(1); seed <= 20; seed++ {
		t.Run("seed="+strconv.FormatUint(seed, 10), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 0x6d617063))
			const n = 3
			walls := make([]*hlc.ManualClock, n)
			clocks := make([]*hlc.Clock, n)
			prev := make([]hlc.Timestamp, n)
			for i := range clocks {
				walls[i] = hlc.NewManualClock(10_000_000 + r.Int64N(5000))
				clocks[i] = hlc.New("p"+strconv.Itoa(i), walls[i])
			}
			var sent []hlc.Timestamp
			for ev := 0; ev < 2000; ev++ {
				i := r.IntN(n)
				switch r.IntN(4) {
				case 0: // the wall clock moves: mostly forward, sometimes back, rarely by minutes
					if r.IntN(20) == 0 {
						walls[i].Advance(r.Int64N(180_000) - 90_000)
					} else {
						walls[i].Advance(r.Int64N(200) - 50)
					}
				case 1, 2: // send
					got := clocks[i].Now()
					if !prev[i].Less(got) {
						t.Fatalf("event %d: clock %d sent %v after %v", ev, i, got, prev[i])
					}
					if got.Peer != clocks[i].Peer() {
						t.Fatalf("event %d: clock %d stamped peer %q", ev, i, got.Peer)
					}
					prev[i] = got
					sent = append(sent, got)
				case 3: // receive some earlier message
					if len(sent) == 0 {
						continue
					}
					remote := sent[r.IntN(len(sent))]
					before := clocks[i].Last()
					got, err := clocks[i].Update(remote)
					if err != nil {
						if !errors.Is(err, hlc.ErrClockDrift) {
							t.Fatalf("event %d: Update: %v", ev, err)
						}
						if clocks[i].Last() != before || got != before {
							t.Fatalf("event %d: refused Update moved the clock from %v to %v", ev, before, clocks[i].Last())
						}
						refused++
						continue
					}
					if !prev[i].Less(got) {
						t.Fatalf("event %d: clock %d received %v and went from %v to %v", ev, i, remote, prev[i], got)
					}
					if !remote.Less(got) {
						t.Fatalf("event %d: clock %d received %v and returned %v, not after it", ev, i, remote, got)
					}
					prev[i] = got
				}
			}
		})
	}
	if refused == 0 {
		t.Errorf("no Update was refused: the drift guard path was never exercised")
	}
}

func TestClockDriftGuard(t *testing.T) {
	const now = 1_727_193_549_000
	tests := []struct {
		name     string
		maxDrift *hlc.Duration // nil: the default
		ahead    int64         // milliseconds the remote is ahead of the wall clock
		ok       bool
	}{
		{name: "61 s ahead refused", ahead: 61_000, ok: false},
		{name: "59 s ahead accepted", ahead: 59_000, ok: true},
		{name: "exactly 60 s ahead accepted", ahead: 60_000, ok: true},
		{name: "60 s and 1 ms ahead refused", ahead: 60_001, ok: false},
		{name: "year 3000 refused", ahead: 32_503_680_000_000 - now, ok: false},
		{name: "far behind accepted", ahead: -now, ok: true},
		{name: "SetMaxDrift(10s): 11 s refused", maxDrift: ptr(10 * hlc.Second), ahead: 11_000, ok: false},
		{name: "SetMaxDrift(10s): 9 s accepted", maxDrift: ptr(10 * hlc.Second), ahead: 9_000, ok: true},
		{name: "SetMaxDrift(2m): 61 s accepted", maxDrift: ptr(2 * hlc.Minute), ahead: 61_000, ok: true},
		{name: "SetMaxDrift(0) disables: year 3000 accepted", maxDrift: ptr(hlc.Duration(0)), ahead: 32_503_680_000_000 - now, ok: true},
		{name: "SetMaxDrift(-1s) disables: 61 s accepted", maxDrift: ptr(-hlc.Second), ahead: 61_000, ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wall := hlc.NewManualClock(now)
			c := hlc.New("a", wall)
			if tt.maxDrift != nil {
				c.SetMaxDrift(*tt.maxDrift)
				if got := c.MaxDrift(); got != *tt.maxDrift {
					t.Errorf("MaxDrift() = %v after SetMaxDrift(%v)", got, *tt.maxDrift)
				}
			}
			first := c.Now() // now:0:a
			remote := ts(now+tt.ahead, 3, "b")

			checkErr := c.CheckDrift(remote)
			if c.Last() != first {
				t.Fatalf("CheckDrift moved the clock to %v", c.Last())
			}
			got, err := c.Update(remote)
			if (checkErr == nil) != (err == nil) {
				t.Errorf("CheckDrift = %v but Update error = %v", checkErr, err)
			}

			if tt.ok {
				if err != nil {
					t.Fatalf("Update(%v): %v", remote, err)
				}
				if !remote.Less(got) || !first.Less(got) {
					t.Errorf("Update(%v) = %v, not after remote and %v", remote, got, first)
				}
				return
			}
			if !errors.Is(err, hlc.ErrClockDrift) {
				t.Fatalf("Update(%v) error = %v, want ErrClockDrift", remote, err)
			}
			if errors.Is(err, hlc.ErrBadTimestamp) {
				t.Errorf("drift error %v also wraps ErrBadTimestamp", err)
			}
			var e *hlc.Error
			if !errors.As(err, &e) {
				t.Errorf("drift error is %T, want *hlc.Error", err)
			}
			if !strings.Contains(err.Error(), strconv.Quote(remote.String())) {
				t.Errorf("drift error %q does not quote the remote timestamp %q", err, remote)
			}
			if got != first {
				t.Errorf("refused Update returned %v, want the unchanged %v", got, first)
			}
			if c.Last() != first {
				t.Errorf("refused Update moved Last() to %v, want %v", c.Last(), first)
			}
			if next, want := c.Now(), ts(now, 1, "a"); next != want {
				t.Errorf("Now() after a refused Update = %v, want %v", next, want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestClockDriftFollowsWallClock(t *testing.T) {
	wall := hlc.NewManualClock(0)
	c := hlc.New("a", wall)
	remote := ts(100_000, 0, "b")
	if err := c.CheckDrift(remote); !errors.Is(err, hlc.ErrClockDrift) {
		t.Fatalf("CheckDrift(%v) at wall 0 = %v, want ErrClockDrift", remote, err)
	}
	wall.Advance(40_000) // now 60 s behind the remote
	if err := c.CheckDrift(remote); err != nil {
		t.Fatalf("CheckDrift(%v) at wall 40000 = %v, want nil", remote, err)
	}
	if got, err := c.Update(remote); err != nil || got != ts(100_000, 1, "a") {
		t.Fatalf("Update(%v) = %v, %v; want 100000:1:a", remote, got, err)
	}
}

func TestClockCounterOverflow(t *testing.T) {
	const w = 5000
	tests := []struct {
		name  string
		last  hlc.Timestamp // observed first, so Last() is (last.Wall, last.Counter, "a")
		recv  *hlc.Timestamp
		wants []hlc.Timestamp // successive results; the wall clock stays at w
	}{
		{
			name:  "Now at MaxCounter carries into walltime",
			last:  ts(w, hlc.MaxCounter, "a"),
			wants: []hlc.Timestamp{ts(w+1, 0, "a"), ts(w+1, 1, "a")},
		},
		{
			name:  "Now one below MaxCounter does not carry yet",
			last:  ts(w, hlc.MaxCounter-1, "a"),
			wants: []hlc.Timestamp{ts(w, hlc.MaxCounter, "a"), ts(w+1, 0, "a")},
		},
		{
			name:  "Update with remote at the same walltime and MaxCounter carries",
			last:  ts(w, 5, "a"),
			recv:  ptr(ts(w, hlc.MaxCounter, "b")),
			wants: []hlc.Timestamp{ts(w+1, 0, "a"), ts(w+1, 1, "a")},
		},
		{
			name:  "Update with local at MaxCounter and remote behind carries",
			last:  ts(w, hlc.MaxCounter, "a"),
			recv:  ptr(ts(w-1, 7, "b")),
			wants: []hlc.Timestamp{ts(w+1, 0, "a")},
		},
		{
			name:  "Update with remote ahead at MaxCounter carries",
			last:  ts(w, 0, "a"),
			recv:  ptr(ts(w+10, hlc.MaxCounter, "b")),
			wants: []hlc.Timestamp{ts(w+11, 0, "a"), ts(w+11, 1, "a")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := hlc.New("a", hlc.NewManualClock(w))
			c.Observe(tt.last)
			if c.Last() != tt.last {
				t.Fatalf("Last() = %v after Observe(%v)", c.Last(), tt.last)
			}
			for i, want := range tt.wants {
				var got hlc.Timestamp
				if i == 0 && tt.recv != nil {
					var err error
					if got, err = c.Update(*tt.recv); err != nil {
						t.Fatalf("Update(%v): %v", *tt.recv, err)
					}
					if !tt.recv.Less(got) {
						t.Errorf("Update(%v) = %v, not after the remote", *tt.recv, got)
					}
				} else {
					got = c.Now()
				}
				if got != want {
					t.Errorf("result %d = %v, want %v", i, got, want)
				}
				if got.Counter > hlc.MaxCounter {
					t.Errorf("result %d = %v: counter above MaxCounter", i, got)
				}
			}
		})
	}
}

func TestClockObserve(t *testing.T) {
	start := ts(1000, 5, "a")
	tests := []struct {
		name string
		t    hlc.Timestamp
		want hlc.Timestamp
	}{
		{"earlier walltime: unchanged", ts(999, 100, "z"), start},
		{"same walltime, lower counter: unchanged", ts(1000, 4, "z"), start},
		{"equal walltime and counter: unchanged", ts(1000, 5, "z"), start},
		{"zero timestamp: unchanged", hlc.Timestamp{}, start},
		{"same walltime, higher counter: forward", ts(1000, 9, "b"), ts(1000, 9, "a")},
		{"later walltime: forward", ts(2000, 3, "b"), ts(2000, 3, "a")},
		{"far ahead: forward, no drift guard", ts(1000+time.Hour.Milliseconds(), 0, "b"), ts(1000+time.Hour.Milliseconds(), 0, "a")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := hlc.New("a", hlc.NewManualClock(0)) // the wall clock far behind
			c.Observe(start)
			c.Observe(tt.t)
			if got := c.Last(); got != tt.want {
				t.Errorf("Last() after Observe(%v) = %v, want %v", tt.t, got, tt.want)
			}
			if c.Last().Less(start) {
				t.Errorf("Observe moved the clock backwards")
			}
			next := c.Now()
			if !tt.t.Less(next) || !start.Less(next) {
				t.Errorf("Now() after Observe(%v) = %v, not after it", tt.t, next)
			}
		})
	}
}

func TestNew(t *testing.T) {
	c := hlc.New("peer-1", hlc.NewManualClock(42))
	if got := c.Peer(); got != "peer-1" {
		t.Errorf("Peer() = %q", got)
	}
	if hlc.DefaultMaxDrift != 60*hlc.Second {
		t.Errorf("DefaultMaxDrift = %v, want 60s (DESIGN §3)", hlc.DefaultMaxDrift)
	}
	if got := c.MaxDrift(); got != hlc.DefaultMaxDrift {
		t.Errorf("MaxDrift() = %v, want %v", got, hlc.DefaultMaxDrift)
	}
	if got, want := c.Last(), ts(0, 0, "peer-1"); got != want {
		t.Errorf("Last() of a new clock = %#v, want %#v", got, want)
	}
	if got, want := c.Now(), ts(42, 0, "peer-1"); got != want {
		t.Errorf("Now() = %v, want %v", got, want)
	}
}

func TestNewWallClocks(t *testing.T) {
	t.Run("WallFunc", func(t *testing.T) {
		ms := int64(7)
		c := hlc.New("a", hlc.WallFunc(func() int64 { return ms }))
		if got := c.Now(); got != ts(7, 0, "a") {
			t.Errorf("Now() = %v, want 7:0:a", got)
		}
		ms = 9
		if got := c.Now(); got != ts(9, 0, "a") {
			t.Errorf("Now() = %v, want 9:0:a", got)
		}
	})
	t.Run("nil is the system clock", func(t *testing.T) {
		before := time.Now().UnixMilli()
		got := hlc.New("a", nil).Now()
		after := time.Now().UnixMilli()
		if got.Wall < before || got.Wall > after {
			t.Errorf("Now() walltime %d not within [%d, %d]", got.Wall, before, after)
		}
	})
	t.Run("ManualClock", func(t *testing.T) {
		var m hlc.ManualClock // usable zero value
		if got := m.NowMillis(); got != 0 {
			t.Errorf("zero ManualClock reads %d", got)
		}
		m.Set(100)
		m.Advance(-30)
		if got := m.NowMillis(); got != 70 {
			t.Errorf("after Set(100), Advance(-30): %d, want 70", got)
		}
	})
}

func TestNewPanicsOnBadPeer(t *testing.T) {
	tests := []struct {
		name string
		peer string
	}{
		{"empty", ""},
		{"space", "a b"},
		{"non-ASCII", "pér"},
		{"too long", strings.Repeat("x", hlc.MaxPeerLen+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if r == nil {
					t.Fatalf("New(%q) did not panic", tt.peer)
				}
				if msg, ok := r.(string); !ok || !strings.HasPrefix(msg, "hlc.New: ") {
					t.Errorf("New(%q) panicked with %#v, want a string starting with \"hlc.New: \"", tt.peer, r)
				}
			}()
			hlc.New(tt.peer, hlc.NewManualClock(0))
		})
	}
}

// TestClockAtIsTheWallClockRead: UpdateAt and CheckDriftAt with WallMillis's reading give
// what Update and CheckDrift give, clock and error, over random histories around the
// drift bound and a wall clock that steps back.
func TestClockAtIsTheWallClockRead(t *testing.T) {
	rng := rand.New(rand.NewPCG(61, 62))
	const start = 1_727_193_549_000
	for round := 0; round < 500; round++ {
		wa, wb := hlc.NewManualClock(start), hlc.NewManualClock(start)
		a, b := hlc.New("me", wa), hlc.New("me", wb)
		for step := 0; step < 40; step++ {
			d := int64(rng.IntN(2000)) - 500
			wa.Advance(d)
			wb.Advance(d)
			remote := hlc.Timestamp{Wall: wa.NowMillis() + int64(rng.IntN(121_000)) - 60_500, Counter: uint32(rng.IntN(3)), Peer: "them"}
			if rng.IntN(4) == 0 {
				ta, tb := a.Now(), b.Now()
				if ta != tb {
					t.Fatalf("round %d: Now %v and %v", round, ta, tb)
				}
				continue
			}
			ea, eb := a.CheckDrift(remote), b.CheckDriftAt(remote, b.WallMillis())
			if (ea == nil) != (eb == nil) || (ea != nil && ea.Error() != eb.Error()) {
				t.Fatalf("round %d: CheckDrift(%v) %v, CheckDriftAt %v", round, remote, ea, eb)
			}
			ta, ea := a.Update(remote)
			tb, eb := b.UpdateAt(remote, b.WallMillis())
			if ta != tb || (ea == nil) != (eb == nil) || (ea != nil && !errors.Is(eb, hlc.ErrClockDrift)) {
				t.Fatalf("round %d: Update(%v) = %v, %v; UpdateAt = %v, %v", round, remote, ta, ea, tb, eb)
			}
		}
	}
}

// The package documentation's walltime hazard: with the drift guard off, a remote timestamp
// at MaxWall and MaxCounter is followed by MaxWall+1, whose text no peer parses; with the
// guard on, that timestamp is refused and the clock stays where it was.
func TestClockPastMaxWallOnlyWithoutTheGuard(t *testing.T) {
	remote := ts(hlc.MaxWall, hlc.MaxCounter, "b")
	c := hlc.New("a", hlc.NewManualClock(1_727_184_449_010))
	if _, err := c.Update(remote); !errors.Is(err, hlc.ErrClockDrift) {
		t.Fatalf("guard on: Update(%v) = %v, want ErrClockDrift", remote, err)
	}
	if c.Last().Wall > hlc.MaxWall {
		t.Fatalf("guard on: Last() = %v", c.Last())
	}
	c.SetMaxDrift(0)
	got, err := c.Update(remote)
	if err != nil {
		t.Fatalf("guard off: Update(%v): %v", remote, err)
	}
	if got != ts(hlc.MaxWall+1, 0, "a") {
		t.Fatalf("guard off: Update(%v) = %v, want MaxWall+1:0:a", remote, got)
	}
	if _, err := hlc.Parse(got.String()); !errors.Is(err, hlc.ErrBadTimestamp) {
		t.Fatalf("Parse(%q) = %v, want ErrBadTimestamp: no peer parses it", got.String(), err)
	}
}
