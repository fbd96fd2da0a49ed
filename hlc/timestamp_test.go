package hlc_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/mapcrdt/mapcrdt/hlc"
)

func ts(wall int64, counter uint32, peer string) hlc.Timestamp {
	return hlc.Timestamp{Wall: wall, Counter: counter, Peer: peer}
}

// TestCompare pins the order of DESIGN §3: walltime as a number, then counter as a number,
// then peer id bytewise. Every case is checked in both directions, so Compare is also
// antisymmetric and Less agrees with it.
func TestCompare(t *testing.T) {
	tests := []struct {
		name string
		a, b string // a sorts strictly before b
	}{
		{"uMap example: counter 42 before 43", "1727193549:42:id1", "1727193549:43:id1"},
		{"counter numeric: 9 before 10", "1727193549:9:id1", "1727193549:10:id1"},
		{"counter numeric: 99 before 100", "1727193549:99:id1", "1727193549:100:id1"},
		{"walltime numeric: 999 before 1000", "999:0:id1", "1000:0:id1"},
		{"walltime beats counter", "999:5000:id1", "1000:0:id1"},
		{"walltime beats peer", "999:0:zzz", "1000:0:aaa"},
		{"counter beats peer", "5:1:zzz", "5:2:aaa"},
		{"peer breaks ties bytewise", "5:1:id1", "5:1:id2"},
		{"peer bytewise: uppercase before lowercase", "5:1:Zed", "5:1:abe"},
		{"peer bytewise: prefix first", "5:1:id", "5:1:id0"},
		{"peer bytewise, not numeric: id10 before id9", "5:1:id10", "5:1:id9"},
		{"largest walltime last", "9007199254740990:2147483647:z", "9007199254740991:0:a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := hlc.MustParse(tt.a), hlc.MustParse(tt.b)
			if got := a.Compare(b); got != -1 {
				t.Errorf("%v.Compare(%v) = %d, want -1", a, b, got)
			}
			if got := b.Compare(a); got != 1 {
				t.Errorf("%v.Compare(%v) = %d, want 1", b, a, got)
			}
			if !a.Less(b) {
				t.Errorf("%v.Less(%v) = false, want true", a, b)
			}
			if b.Less(a) {
				t.Errorf("%v.Less(%v) = true, want false", b, a)
			}
			if a.Less(a) || b.Less(b) {
				t.Errorf("Less is not irreflexive on %v, %v", a, b)
			}
			if a.Compare(a) != 0 || b.Compare(b) != 0 {
				t.Errorf("Compare(self) != 0 on %v, %v", a, b)
			}
		})
	}
}

// TestCompareNotTextual makes sure the order is not that of the serialized strings: for these
// pairs the text order is the wrong way round (uMap's bug).
func TestCompareNotTextual(t *testing.T) {
	tests := []struct {
		name string
		a, b string // a sorts before b as a timestamp, after it as text
	}{
		{"counter", "1727193549:9:id1", "1727193549:10:id1"},
		{"walltime", "999:0:id1", "1000:0:id1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.a < tt.b {
				t.Fatalf("bad case: %q < %q as text too", tt.a, tt.b)
			}
			if !hlc.MustParse(tt.a).Less(hlc.MustParse(tt.b)) {
				t.Errorf("%s does not sort before %s", tt.a, tt.b)
			}
		})
	}
}

func TestCompareEqual(t *testing.T) {
	a, b := ts(1727193549, 42, "id1"), hlc.MustParse("1727193549:42:id1")
	if a != b {
		t.Fatalf("%#v != %#v", a, b)
	}
	if got := a.Compare(b); got != 0 {
		t.Errorf("Compare = %d, want 0", got)
	}
	if a.Less(b) || b.Less(a) {
		t.Errorf("Less true on equal timestamps")
	}
}

// TestCompareSorts checks Compare as a sort key against a hand-sorted list, so the three
// fields are combined in the right order (and not, say, summed).
func TestCompareSorts(t *testing.T) {
	want := []hlc.Timestamp{
		{},
		ts(0, 0, "a"),
		ts(0, 1, "a"),
		ts(9, 0, "a"),
		ts(9, 9, "b"),
		ts(9, 10, "a"),
		ts(10, 0, "a"),
		ts(10, 0, "b"),
		ts(1000, 0, "a"),
	}
	for i := range want {
		for j := range want {
			got := want[i].Compare(want[j])
			exp := 0
			if i < j {
				exp = -1
			} else if i > j {
				exp = 1
			}
			if got != exp {
				t.Errorf("%v.Compare(%v) = %d, want %d", want[i], want[j], got, exp)
			}
		}
	}
}

func TestIsZero(t *testing.T) {
	tests := []struct {
		name string
		ts   hlc.Timestamp
		want bool
	}{
		{"zero value", hlc.Timestamp{}, true},
		{"peer only", ts(0, 0, "a"), false},
		{"counter only", ts(0, 1, ""), false},
		{"wall only", ts(1, 0, ""), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.ts.IsZero(); got != tt.want {
				t.Errorf("%#v.IsZero() = %v, want %v", tt.ts, got, tt.want)
			}
		})
	}
	// The zero clock sorts before every timestamp a clock can produce.
	if !(hlc.Timestamp{}).Less(ts(0, 0, "a")) {
		t.Errorf("zero timestamp does not sort first")
	}
}

func TestString(t *testing.T) {
	tests := []struct {
		name string
		ts   hlc.Timestamp
		want string
	}{
		{"zero value", hlc.Timestamp{}, "0:0:"},
		{"uMap form", ts(1727184449010, 0, "3f2a"), "1727184449010:0:3f2a"},
		{"counter", ts(1727193549, 42, "id1"), "1727193549:42:id1"},
		{"extremes", ts(hlc.MaxWall, hlc.MaxCounter, "p"), "9007199254740991:2147483647:p"},
		{"peer with colons", ts(1, 2, "a:b:c"), "1:2:a:b:c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.ts.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			if got := string(tt.ts.AppendText([]byte("x="))); got != "x="+tt.want {
				t.Errorf("AppendText = %q, want %q", got, "x="+tt.want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	long := strings.Repeat("p", hlc.MaxPeerLen)
	tests := []struct {
		name string
		in   string
		want hlc.Timestamp
	}{
		{"uMap form", "1727184449010:0:3f2a", ts(1727184449010, 0, "3f2a")},
		{"counter", "1727193549:42:id1", ts(1727193549, 42, "id1")},
		{"zeros", "0:0:p", ts(0, 0, "p")},
		{"uuid peer", "1:2:606d26bd-230f-4d3e-a2a7-0c3caed71548", ts(1, 2, "606d26bd-230f-4d3e-a2a7-0c3caed71548")},
		{"peer keeps its colons", "1:2:a:b", ts(1, 2, "a:b")},
		{"peer of colons only", "1:2:::", ts(1, 2, "::")},
		{"peer of punctuation", "1:2:!~", ts(1, 2, "!~")},
		{"peer at MaxPeerLen", "1:2:" + long, ts(1, 2, long)},
		{"walltime at MaxWall", "9007199254740991:0:p", ts(hlc.MaxWall, 0, "p")},
		{"counter at MaxCounter", "1:2147483647:p", ts(1, hlc.MaxCounter, "p")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := hlc.Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("Parse(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
			if s := got.String(); s != tt.in {
				t.Errorf("Parse(%q).String() = %q, does not round-trip", tt.in, s)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"walltime only", "1727193549"},
		{"no peer part", "1727193549:42"},
		{"empty peer", "1727193549:42:"},
		{"zero value text", "0:0:"},
		{"empty walltime", ":42:id1"},
		{"empty counter", "1727193549::id1"},
		{"wrong separator", "1727193549-42-id1"},
		{"negative walltime", "-1:0:id1"},
		{"negative counter", "1:-1:id1"},
		{"plus sign", "+1:0:id1"},
		{"leading zero walltime", "01:0:id1"},
		{"leading zero counter", "1:00:id1"},
		{"leading zero counter nonzero", "1:07:id1"},
		{"non-digit walltime", "1a:0:id1"},
		{"hex walltime", "0x10:0:id1"},
		{"decimal point", "1.5:0:id1"},
		{"exponent", "1e3:0:id1"},
		{"space before walltime", " 1:0:id1"},
		{"space after counter", "1:0 :id1"},
		{"non-ASCII digit", "１:0:id1"},
		{"peer with space", "1:0:id 1"},
		{"peer with leading space", "1:0: id1"},
		{"peer with tab", "1:0:id\t1"},
		{"peer with newline", "1:0:id1\n"},
		{"peer with NUL", "1:0:id\x001"},
		{"peer with DEL", "1:0:id\x7f"},
		{"peer non-ASCII", "1:0:idé"},
		{"peer invalid UTF-8", "1:0:id\xff"},
		{"peer too long", "1:0:" + strings.Repeat("p", hlc.MaxPeerLen+1)},
		{"walltime above MaxWall", "9007199254740992:0:id1"},
		{"walltime 17 digits", "10000000000000000:0:id1"},
		{"walltime above int64", "99999999999999999999:0:id1"},
		{"counter above MaxCounter", "1:2147483648:id1"},
		{"counter above uint32", "1:4294967296:id1"},
		{"counter 17 digits", "1:10000000000000000:id1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := hlc.Parse(tt.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want an error", tt.in, got)
			}
			if got != (hlc.Timestamp{}) {
				t.Errorf("Parse(%q) returned %#v with its error, want the zero Timestamp", tt.in, got)
			}
			if !errors.Is(err, hlc.ErrBadTimestamp) {
				t.Errorf("Parse(%q) error %v does not wrap ErrBadTimestamp", tt.in, err)
			}
			if errors.Is(err, hlc.ErrClockDrift) {
				t.Errorf("Parse(%q) error %v wraps ErrClockDrift", tt.in, err)
			}
			var e *hlc.Error
			if !errors.As(err, &e) {
				t.Errorf("Parse(%q) error %T is not *hlc.Error", tt.in, err)
			}
			// The message quotes the input (cut short when long).
			quoted := tt.in
			if len(quoted) > 80 {
				quoted = quoted[:80]
			}
			quoted = strings.TrimSuffix(strconv.Quote(quoted), `"`)
			if !strings.Contains(err.Error(), quoted) {
				t.Errorf("Parse(%q) error %q does not quote the input", tt.in, err)
			}
		})
	}
}

func TestMustParsePanics(t *testing.T) {
	defer func() {
		r := recover()
		err, ok := r.(error)
		if !ok || !errors.Is(err, hlc.ErrBadTimestamp) {
			t.Errorf("MustParse panicked with %v, want an error wrapping ErrBadTimestamp", r)
		}
	}()
	hlc.MustParse("1:2")
	t.Errorf("MustParse did not panic")
}

func TestValidPeer(t *testing.T) {
	tests := []struct {
		name string
		id   string
		ok   bool
	}{
		{"letters and digits", "id1", true},
		{"uuid", "606d26bd-230f-4d3e-a2a7-0c3caed71548", true},
		{"colon", "a:b", true},
		{"one byte", "x", true},
		{"MaxPeerLen bytes", strings.Repeat("x", hlc.MaxPeerLen), true},
		{"empty", "", false},
		{"too long", strings.Repeat("x", hlc.MaxPeerLen+1), false},
		{"space", "a b", false},
		{"control", "a\rb", false},
		{"DEL", "\x7f", false},
		{"non-ASCII", "pér", false},
		{"quote", `a"b`, false}, // written inside JSON strings as it is
		{"backslash", `a\b`, false},
		{"quote in a word", `abcdefg"hij`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := hlc.ValidPeer(tt.id)
			if (err == nil) != tt.ok {
				t.Errorf("ValidPeer(%q) = %v, want ok=%v", tt.id, err, tt.ok)
			}
		})
	}
}

// FuzzParse checks that Parse never panics and that every text it accepts is canonical: its
// String is the very same text, and parsing that again gives the same Timestamp.
func FuzzParse(f *testing.F) {
	f.Add("1727184449010:0:3f2a")                             // uMap's form
	f.Add("1727193549:9:id1")                                 // counter with fewer digits…
	f.Add("1727193549:10:id1")                                // …sorts after, not before
	f.Add("0:0:p")                                            // smallest valid
	f.Add("0:0:")                                             // zero value's String: empty peer
	f.Add("9007199254740991:2147483647:z")                    // MaxWall, MaxCounter
	f.Add("9007199254740992:0:z")                             // MaxWall+1
	f.Add("1:2147483648:z")                                   // MaxCounter+1
	f.Add("1:2:a:b")                                          // peer keeps its colons
	f.Add("01:0:p")                                           // leading zero
	f.Add("-1:0:p")                                           // sign
	f.Add("1:0:p q")                                          // space in peer
	f.Add("1:0:é")                                            // non-ASCII peer
	f.Add("1:2")                                              // missing peer
	f.Add("1:2:606d26bd-230f-4d3e-a2a7-0c3caed71548")         // uuid peer
	f.Add("18446744073709551616:4294967296:" + "x\xff\x00\t") // overflowing everything
	f.Fuzz(func(t *testing.T, s string) {
		got, err := hlc.Parse(s)
		if err != nil {
			if !errors.Is(err, hlc.ErrBadTimestamp) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrBadTimestamp", s, err)
			}
			return
		}
		if got.Wall < 0 || got.Wall > hlc.MaxWall || got.Counter > hlc.MaxCounter || hlc.ValidPeer(got.Peer) != nil {
			t.Fatalf("Parse(%q) = %#v, out of range", s, got)
		}
		text := got.String()
		if text != s {
			t.Fatalf("Parse(%q).String() = %q", s, text)
		}
		again, err := hlc.Parse(text)
		if err != nil {
			t.Fatalf("Parse(%q): %v after Parse(%q) succeeded", text, err, s)
		}
		if again != got {
			t.Fatalf("Parse(%q) = %#v, then %#v", s, got, again)
		}
	})
}

// TestParseWallCounterIsParse: on texts made of the pieces a timestamp's numbers can go
// wrong with (leading zeros, too many digits, limits, signs, spaces, colons), followed by
// a valid peer id, ParseWallCounter takes the numbers exactly when Parse takes the whole
// (with one colon between them), and reads the same.
func TestParseWallCounterIsParse(t *testing.T) {
	pieces := []string{"0", "1", "00", "01", "9", "42", "1727193549", "9007199254740991", "9007199254740992",
		"2147483647", "2147483648", "4294967296", "12345678901234567", "-1", "+1", " 1", "1 ", "", "a", ":", "1:2", "٣",
		"1795480314487", "0795480314487", "9999999999999", "1000000000000"}
	// 13-digit walltimes (read two words at a time) with each byte in turn replaced by the
	// bytes around the digits, and by one with a high bit.
	for i := range 13 {
		for _, b := range []byte{'/', ':', ';', '?', 'A', 0xB0, 0x39 + 0xC0} {
			w := []byte("1795480314487")
			w[i] = b
			pieces = append(pieces, string(w))
		}
	}
	n := 0
	for _, w := range pieces {
		for _, c := range pieces {
			prefix := w + ":" + c
			want, err := hlc.Parse(prefix + ":peer-1")
			wall, counter, ok := hlc.ParseWallCounter(prefix)
			// Parse splits at the first two colons (a peer id may hold more): with a third
			// one in the numbers' text the two read other fields, and ParseWallCounter refuses.
			if ok && (err != nil || wall != want.Wall || counter != want.Counter) ||
				!ok && strings.Count(prefix, ":") == 1 && err == nil {
				t.Fatalf("%q: ParseWallCounter %d %d %v, Parse %v %v", prefix, wall, counter, ok, want, err)
			}
			if ok {
				n++
			}
		}
	}
	if n < 20 {
		t.Fatalf("only %d good texts", n)
	}
}
