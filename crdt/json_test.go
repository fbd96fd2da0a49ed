package crdt

// The engine's own JSON reader and writer (json.go): canonical form, the jtree editor's
// set/unset rule, and lookups cross-checked against gjson on random documents.

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mapcrdt/mapcrdt/hlc"
	"github.com/tidwall/gjson"
)

func TestCanonicalJSON(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"scalar", `1`, `1`},
		{"string", `"x"`, `"x"`},
		{"literals", `[true,false,null]`, `[true,false,null]`},
		{"empty object", `{}`, `{}`},
		{"empty array", `[]`, `[]`},
		{"sorted keys", `{"b":1,"a":2,"c":3}`, `{"a":2,"b":1,"c":3}`},
		{"sorted bytewise", `{"b":1,"a":2,"A":3,"é":4,"aa":5,"_":6,"0":7}`, `{"0":7,"A":3,"_":6,"a":2,"aa":5,"b":1,"é":4}`},
		{"nested sorted", `{"z":{"y":1,"x":[{"b":1,"a":2}]},"a":0}`, `{"a":0,"z":{"x":[{"a":2,"b":1}],"y":1}}`},
		{"array order kept", `[3,1,2]`, `[3,1,2]`},
		{"last duplicate wins", `{"a":1,"b":2,"a":3}`, `{"a":3,"b":2}`},
		{"three duplicates", `{"a":1,"a":2,"a":3}`, `{"a":3}`},
		{"duplicates nested", `{"o":{"k":1,"k":{"x":1}},"o":{"k":2,"k":[1]}}`, `{"o":{"k":[1]}}`},
		{"duplicate spelled differently", `{"a":1,"\u0061":2}`, `{"a":2}`},
		{"whitespace", " {\n\t\"b\" : [ 1 , 2 ] ,\r\n \"a\" : { } } \n", `{"a":{},"b":[1,2]}`},
		{"escapes in values kept", `"\u00e9\n\"\\\/"`, `"\u00e9\n\"\\\/"`},
		{"escapes in names decoded", `{"\u00e9":1,"\n":2,"\/":3}`, `{"\n":2,"/":3,"é":1}`},
		{"control character name", `{"\u0001":1}`, `{"\u0001":1}`},
		{"surrogate pair name", `{"\ud83d\ude00":1}`, `{"😀":1}`},
		{"lone surrogate value kept", `"\ud800"`, `"\ud800"`},
		{"numbers kept", `[1.0,1e3,1E+3,-0,0.10,12345678901234567890,1e-7,-1.5e300]`, `[1.0,1e3,1E+3,-0,0.10,12345678901234567890,1e-7,-1.5e300]`},
		{"unicode kept", `"Café 名前 😀"`, `"Café 名前 😀"`},
		{"html not escaped", `"<a href='x'>&</a>"`, `"<a href='x'>&</a>"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := canonicalJSON(tc.in, 64)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("canonicalJSON(%q)\n got %s\nwant %s", tc.in, got, tc.want)
			}
			again, err := canonicalJSON(got, 64)
			if err != nil || again != got {
				t.Errorf("not idempotent: %s → %s, %v", got, again, err)
			}
			if !json.Valid([]byte(got)) {
				t.Errorf("output is not JSON: %s", got)
			}
		})
	}
}

func TestCanonicalJSONErrors(t *testing.T) {
	tests := []struct {
		name, in string
		code     error
	}{
		{"empty", ``, ErrInvalidJSON},
		{"space", ` `, ErrInvalidJSON},
		{"truncated object", `{"a":1`, ErrInvalidJSON},
		{"truncated string", `"abc`, ErrInvalidJSON},
		{"trailing garbage", `{} x`, ErrInvalidJSON},
		// Decoded, two such names would both be U+FFFD: one member, a value lost.
		{"lone surrogate name", `{"\ud800":1}`, ErrBadValue},
		{"lone surrogate names", `{"a":{"\ud800":1,"\udc00":2}}`, ErrBadValue},
		{"lone low surrogate name", `{"x\udfffy":1}`, ErrBadValue},
		{"two values", `1 2`, ErrInvalidJSON},
		{"trailing comma in array", `[1,]`, ErrInvalidJSON},
		{"trailing comma in object", `{"a":1,}`, ErrInvalidJSON},
		{"leading comma", `[,1]`, ErrInvalidJSON},
		{"name not a string", `{a:1}`, ErrInvalidJSON},
		{"number name", `{1:1}`, ErrInvalidJSON},
		{"missing value", `{"a":}`, ErrInvalidJSON},
		{"invalid UTF-8", "\"\xff\"", ErrInvalidJSON},
		{"invalid UTF-8 name", "{\"\xfe\":1}", ErrInvalidJSON},
		{"truncated UTF-8", "\"\xc3\"", ErrInvalidJSON},
		{"bad escape", `"\a"`, ErrInvalidJSON},
		{"short \\u", `"\u00e"`, ErrInvalidJSON},
		{"uppercase \\U", `"\U00e9"`, ErrInvalidJSON},
		{"raw newline in string", "\"a\nb\"", ErrInvalidJSON},
		{"raw NUL in string", "\"a\x00b\"", ErrInvalidJSON},
		{"leading zero", `01`, ErrInvalidJSON},
		{"plus sign", `+1`, ErrInvalidJSON},
		{"bare dot", `.5`, ErrInvalidJSON},
		{"dot without digits", `1.`, ErrInvalidJSON},
		{"exponent without digits", `1e`, ErrInvalidJSON},
		{"hex", `0x10`, ErrInvalidJSON},
		{"NaN", `NaN`, ErrInvalidJSON},
		{"Infinity", `-Infinity`, ErrInvalidJSON},
		{"True", `True`, ErrInvalidJSON},
		{"nul", `nul`, ErrInvalidJSON},
		{"single quotes", `'a'`, ErrInvalidJSON},
		{"comment", `[1 /* x */]`, ErrInvalidJSON},
		{"BOM", "\ufeff{}", ErrInvalidJSON},
		{"vertical tab", "\v1", ErrInvalidJSON},
		{"too deep array", strings.Repeat("[", 65) + strings.Repeat("]", 65), ErrTooDeep},
		{"too deep object", strings.Repeat(`{"a":`, 65) + "1" + strings.Repeat("}", 65), ErrTooDeep},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := canonicalJSON(tc.in, 64)
			if !errors.Is(err, tc.code) {
				t.Fatalf("canonicalJSON(%q) = %q, %v; want %v", tc.in, got, err, tc.code)
			}
			if got != "" {
				t.Errorf("an error with output %q", got)
			}
		})
	}
	t.Run("depth limit is exact", func(t *testing.T) {
		for _, n := range []int{1, 3, 64} {
			ok := strings.Repeat("[", n) + strings.Repeat("]", n)
			if _, err := canonicalJSON(ok, n); err != nil {
				t.Errorf("%d levels with limit %d: %v", n, n, err)
			}
			if _, err := canonicalJSON("["+ok+"]", n); !errors.Is(err, ErrTooDeep) {
				t.Errorf("%d levels with limit %d: %v", n+1, n, err)
			}
			okObj := strings.Repeat(`{"a":`, n-1) + "{}" + strings.Repeat("}", n-1)
			if _, err := canonicalJSON(okObj, n); err != nil {
				t.Errorf("%d object levels with limit %d: %v", n, n, err)
			}
		}
	})
}

func TestDecodeString(t *testing.T) {
	tests := []struct{ raw, want string }{
		{`abc`, "abc"},
		{`\"\\\/\b\f\n\r\t`, "\"\\/\b\f\n\r\t"},
		{`\u00e9\u00E9`, "éé"},
		{`\ud83d\ude00`, "😀"},
		{`\ud83d`, "\uFFFD"},
		{`\ude00`, "\uFFFD"},
		{`\ud83dx`, "\uFFFDx"},
		{`\ud83d\u0041`, "\uFFFDA"},
		{`\ud83d\ud83d\ude00`, "\uFFFD😀"},
		{`\u0000`, "\x00"},
	}
	for _, tc := range tests {
		if got := decodeString(tc.raw); got != tc.want {
			t.Errorf("decodeString(%q) = %q, want %q", tc.raw, got, tc.want)
		}
		// encoding/json decodes the same way.
		var s string
		if err := json.Unmarshal([]byte(`"`+tc.raw+`"`), &s); err != nil || s != tc.want {
			t.Errorf("encoding/json decodes %q to %q, %v", tc.raw, s, err)
		}
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", `"quoted"`, `back\slash`, "tab\tnew\nline\rcr", "\x00\x01\x1f\x7f",
		"Café 名前 😀", "<>&", "\u2028\u2029", "\b\f"} {
		raw := string(appendString(nil, s))
		var back string
		if err := json.Unmarshal([]byte(raw), &back); err != nil || back != s {
			t.Errorf("appendString(%q) = %s → %q, %v", s, raw, back, err)
		}
		if c, err := canonicalJSON(raw, 4); err != nil || c != raw {
			t.Errorf("appendString(%q) = %s is not canonical: %s, %v", s, raw, c, err)
		}
	}
}

func TestJTree(t *testing.T) {
	type edit struct {
		path  string // escaped key
		value string // "" unsets
	}
	tests := []struct {
		name  string
		start string
		edits []edit
		want  string
	}{
		{"set a member", `{}`, []edit{{"a", `1`}}, `{"a":1}`},
		{"replace a member", `{"a":1,"b":2}`, []edit{{"a", `[3]`}}, `{"a":[3],"b":2}`},
		{"set deep makes the objects on the way", `{}`, []edit{{"a.b.c", `1`}}, `{"a":{"b":{"c":1}}}`},
		{"set below a scalar replaces it with an object", `{"a":1}`, []edit{{"a.b", `2`}}, `{"a":{"b":2}}`},
		{"set below null", `{"a":null}`, []edit{{"a.b", `2`}}, `{"a":{"b":2}}`},
		{"set below an array replaces it: numbers name members", `{"a":[1,2]}`, []edit{{"a.0", `9`}}, `{"a":{"0":9}}`},
		{"set below a string", `{"p":{"name":"x"}}`, []edit{{"p.name.first", `"y"`}}, `{"p":{"name":{"first":"y"}}}`},
		{"set keeps siblings", `{"p":{"a":1,"b":{"c":2}}}`, []edit{{"p.b.d", `3`}}, `{"p":{"a":1,"b":{"c":2,"d":3}}}`},
		{"set an object value", `{}`, []edit{{"p", `{"b":1,"a":2}`}}, `{"p":{"b":1,"a":2}}`},
		{"unset a member", `{"a":1,"b":2}`, []edit{{"a", ``}}, `{"b":2}`},
		{"unset the last member leaves the parent", `{"p":{"a":1}}`, []edit{{"p.a", ``}}, `{"p":{}}`},
		{"unset a missing member", `{"a":1}`, []edit{{"b", ``}}, `{"a":1}`},
		{"unset below a missing member makes the parents", `{}`, []edit{{"p.q.r", ``}}, `{"p":{"q":{}}}`},
		{"unset below a scalar replaces it with an object", `{"a":1}`, []edit{{"a.b", ``}}, `{"a":{}}`},
		{"set then unset", `{}`, []edit{{"a.b", `1`}, {"a.b", ``}}, `{"a":{}}`},
		{"unset then set", `{"a":{"b":1}}`, []edit{{"a", ``}, {"a.c", `2`}}, `{"a":{"c":2}}`},
		{"set a parent over a child", `{}`, []edit{{"a.b", `1`}, {"a", `{"c":2}`}}, `{"a":{"c":2}}`},
		{"set a child into a set parent", `{}`, []edit{{"a", `{"c":2}`}, {"a.b", `1`}}, `{"a":{"b":1,"c":2}}`},
		{"escaped dot", `{}`, []edit{{`a\.b`, `1`}, {"a.b", `2`}}, `{"a":{"b":2},"a.b":1}`},
		{"special characters", `{}`, []edit{{JoinPath(`"q"`, `\`, "é"), `1`}}, `{"\"q\"":{"\\":{"é":1}}}`},
		{"root not an object", `[1]`, []edit{{"a", `1`}}, `{"a":1}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tree := &jtree{raw: tc.start}
			for _, e := range tc.edits {
				path, err := parsePath(e.path, DefaultLimits())
				if err != nil {
					t.Fatal(err)
				}
				if e.value == "" {
					tree.unset(path)
				} else {
					tree.set(path, e.value)
				}
			}
			if got := tree.String(); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
	t.Run("untouched tree keeps its text", func(t *testing.T) {
		tree := &jtree{raw: `{"b":1,"a":2}`}
		if got := tree.String(); got != `{"b":1,"a":2}` {
			t.Errorf("got %s", got)
		}
	})
}

// TestJTreeAgainstMaps applies random set/unset edits to random documents with jtree and
// with the oracle's map code, and compares.
func TestJTreeAgainstMaps(t *testing.T) {
	for seed := uint64(0); seed < 500; seed++ {
		rng := rand.New(rand.NewPCG(seed, 11))
		doc := randomCanonical(t, rng, 3)
		if !isObject(doc) {
			doc = `{}`
		}
		tree := &jtree{raw: doc}
		m := decodeNumber(t, doc).(map[string]any)
		var log []string
		for i := 0; i < 1+rng.IntN(8); i++ {
			path := randomPath(rng, doc)
			if rng.IntN(3) == 0 {
				tree.unset(path)
				unsetPath(m, path)
				log = append(log, "unset "+JoinPath(path...))
				continue
			}
			v := randomCanonical(t, rng, 2)
			tree.set(path, v)
			setPath(m, path, decodeNumber(t, v))
			log = append(log, "set "+JoinPath(path...)+" = "+v)
		}
		got := tree.String()
		if c, err := canonicalJSON(got, 64); err != nil || c != got {
			t.Fatalf("seed %d: jtree output not canonical: %s (%v)", seed, got, err)
		}
		if norm(t, got) != normJSON(m) {
			t.Fatalf("seed %d: from %s after %q\njtree %s\nmaps  %s", seed, doc, log, norm(t, got), normJSON(m))
		}
	}
}

// Random documents: names drawn from an alphabet rich in what paths must escape.
var nameAlphabet = []string{"a", "b", "name", "0", "1", ".", "a.b", "*", "?", "|", "#", "@", "!", `\`, " ", "é", "😀",
	`"`, "-", "_", ":", "=", "properties", "geometry", "x y", "#(", "..", "@this", "a*", "\t", "<"}

func randomName(rng *rand.Rand) string {
	n := 1 + rng.IntN(2)
	s := ""
	for i := 0; i < n; i++ {
		s += nameAlphabet[rng.IntN(len(nameAlphabet))]
	}
	return s
}

// randomJSON writes a random value with random whitespace, member order and escaping.
func randomJSON(rng *rand.Rand, depth int) string {
	ws := func() string { return []string{"", "", " ", "\n  ", "\t"}[rng.IntN(5)] }
	k := rng.IntN(10)
	if depth <= 0 && k >= 7 {
		k = rng.IntN(7)
	}
	switch k {
	case 0:
		return []string{"0", "-1", "1.5", "1e3", "-0.0", "12345678901234567890", "1E-2"}[rng.IntN(7)]
	case 1:
		return []string{"true", "false", "null"}[rng.IntN(3)]
	case 2, 3:
		s := randomName(rng)
		if rng.IntN(2) == 0 {
			return quoteASCII(s) // escapes other than the minimal ones
		}
		return string(appendString(nil, s))
	case 4, 5, 6:
		if depth <= 0 {
			return `"leaf"`
		}
		fallthrough
	case 7, 8:
		n := rng.IntN(5)
		var b strings.Builder
		b.WriteString("{" + ws())
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteString("," + ws())
			}
			name := randomName(rng)
			if rng.IntN(3) == 0 {
				b.WriteString(quoteASCII(name))
			} else {
				b.Write(appendString(nil, name))
			}
			b.WriteString(ws() + ":" + ws() + randomJSON(rng, depth-1))
		}
		return b.String() + ws() + "}"
	}
	n := rng.IntN(4)
	parts := make([]string, n)
	for i := range parts {
		parts[i] = randomJSON(rng, depth-1)
	}
	return "[" + ws() + strings.Join(parts, ","+ws()) + ws() + "]"
}

// quoteASCII writes s as a JSON string escaping every non-ASCII character (as \uXXXX, with
// surrogate pairs) and a few ASCII ones that need no escape.
func quoteASCII(s string) string {
	b := []byte{'"'}
	const hex = "0123456789abcdef"
	u := func(r rune) { b = append(b, '\\', 'u', hex[r>>12&15], hex[r>>8&15], hex[r>>4&15], hex[r&15]) }
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r == '/':
			b = append(b, '\\', '/')
		case r < 0x20 || r == 'a':
			u(r)
		case r < 0x80:
			b = append(b, byte(r))
		case r >= 0x10000:
			r -= 0x10000
			u(0xD800 + r>>10)
			u(0xDC00 + r&0x3FF)
		default:
			u(r)
		}
	}
	return string(append(b, '"'))
}

func randomCanonical(t testing.TB, rng *rand.Rand, depth int) string {
	t.Helper()
	c, err := canonicalJSON(randomJSON(rng, depth), 64)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// randomPath returns a path into doc: mostly one that exists, sometimes one that does not,
// or one that goes through an array or a scalar.
func randomPath(rng *rand.Rand, doc string) []string {
	var path []string
	raw := doc
	for {
		var names []string
		eachMember(raw, func(name, _ string) bool {
			names = append(names, name)
			return true
		})
		if len(names) == 0 || rng.IntN(4) == 0 {
			path = append(path, randomName(rng))
			if rng.IntN(3) == 0 {
				path = append(path, randomName(rng))
			}
			return path
		}
		name := names[rng.IntN(len(names))]
		path = append(path, name)
		raw, _ = memberOf(raw, name)
		if rng.IntN(3) == 0 {
			return path
		}
		if !isObject(raw) && rng.IntN(2) == 0 {
			if strings.HasPrefix(raw, "[") {
				return append(path, strconv.Itoa(rng.IntN(3)))
			}
			return path
		}
	}
}

// throughArray reports whether path, followed through doc, meets an array before its end
// (where gjson reads "0" as an element and the engine, by its path rule, does not).
func throughArray(doc string, path []string) bool {
	raw := doc
	for _, name := range path {
		if strings.HasPrefix(raw, "[") {
			return true
		}
		v, ok := memberOf(raw, name)
		if !ok {
			return false
		}
		raw = v
	}
	return false
}

// TestLookupAgainstGJSON: on random canonical documents, the engine's lookup and gjson
// agree on every path that does not go through an array: same presence, same raw text.
// Paths are written with JoinPath, so gjson also checks the escaping.
func TestLookupAgainstGJSON(t *testing.T) {
	checked := 0
	for seed := uint64(0); seed < 2000; seed++ {
		rng := rand.New(rand.NewPCG(seed, 13))
		doc := randomCanonical(t, rng, 4)
		if !isObject(doc) {
			continue
		}
		for i := 0; i < 10; i++ {
			path := randomPath(rng, doc)
			if throughArray(doc, path) {
				continue
			}
			key := JoinPath(path...)
			got, ok := lookup(doc, path)
			g := gjson.Get(doc, key)
			if ok != g.Exists() || (ok && got != g.Raw) {
				t.Fatalf("seed %d: %s in %s\nlookup %q %v\ngjson  %q %v", seed, key, doc, got, ok, g.Raw, g.Exists())
			}
			checked++
			// The replica reads the same through Get, from a seeded object.
			if seed%50 == 0 && i == 0 {
				r := newTestReplica(t, "p", nil)
				if _, err := r.Seed("map", `{}`, doc); err != nil {
					t.Fatal(err)
				}
				v, present, err := r.Get("map", `{}`, key)
				if err != nil || present != ok || v != got {
					t.Fatalf("seed %d: Get(%q) = %q, %v, %v; lookup %q, %v", seed, key, v, present, err, got, ok)
				}
			}
		}
	}
	if checked < 5000 {
		t.Errorf("only %d lookups checked", checked)
	}
}

func TestEachMemberAndElement(t *testing.T) {
	doc := `{"a":1,"b":{"c":[1,{"d":"}"}]},"e\"":"x,y","f":[]}`
	var names []string
	eachMember(doc, func(name, val string) bool {
		names = append(names, name+"="+val)
		return true
	})
	want := []string{`a=1`, `b={"c":[1,{"d":"}"}]}`, `e"="x,y"`, `f=[]`}
	if !slices.Equal(names, want) {
		t.Errorf("eachMember\n got %q\nwant %q", names, want)
	}
	if got := elements(`[1,"a,]",{"b":[2]},[],null]`); !slices.Equal(got, []string{`1`, `"a,]"`, `{"b":[2]}`, `[]`, `null`}) {
		t.Errorf("elements %q", got)
	}
	if got := elements(`[]`); got != nil {
		t.Errorf("elements of [] = %q", got)
	}
	if v, ok := memberOf(doc, "e\""); !ok || v != `"x,y"` {
		t.Errorf("memberOf e\" = %q, %v", v, ok)
	}
	if _, ok := memberOf(`[1]`, "0"); ok {
		t.Error("memberOf an array")
	}
	n := 0
	eachMember(doc, func(string, string) bool { n++; return false })
	if n != 1 {
		t.Errorf("eachMember did not stop: %d", n)
	}
}

// TestPlainRun checks the word-at-a-time scan against the byte loop on every byte value at
// every position of a word, and on random strings.
func TestPlainRun(t *testing.T) {
	slow := func(s string, i int) int {
		for i < len(s) && plainByte[s[i]] {
			i++
		}
		return i
	}
	base := []byte("abcdefghijklmnopqrstuvwxyz012345")
	for c := 0; c < 256; c++ {
		for pos := 0; pos < len(base); pos++ {
			b := append([]byte(nil), base...)
			b[pos] = byte(c)
			for start := 0; start < 9; start++ {
				if got, want := plainRun(string(b), start), slow(string(b), start); got != want {
					t.Fatalf("byte %#x at %d, start %d: %d, want %d", c, pos, start, got, want)
				}
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 20000; n++ {
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = byte(0x20 + rng.IntN(0x60))
			if rng.IntN(10) == 0 {
				b[i] = byte(rng.IntN(256))
			}
		}
		for start := 0; start <= len(b); start++ {
			if got, want := plainRun(string(b), start), slow(string(b), start); got != want {
				t.Fatalf("%q from %d: %d, want %d", b, start, got, want)
			}
		}
	}
}

// TestPlainStringIsPlainRun: plainString (plainRun's loop written out) against plainRun, on
// every byte value at every position of a quoted string, closed or not, and on random texts
// with quotes.
func TestPlainStringIsPlainRun(t *testing.T) {
	ref := func(s string, i int) (string, int) {
		if i >= len(s) || s[i] != '"' {
			return "", -1
		}
		j := plainRun(s, i+1)
		if j >= len(s) || s[j] != '"' {
			return "", -1
		}
		return s[i+1 : j], j + 1
	}
	check := func(s string, i int) {
		t.Helper()
		gs, gi := plainString(s, i)
		ws, wi := ref(s, i)
		if gs != ws || gi != wi {
			t.Fatalf("plainString(%q, %d) = %q, %d; want %q, %d", s, i, gs, gi, ws, wi)
		}
	}
	base := []byte(`x"abcdefghijklmnopqrstuvwxyz012345"`)
	for c := 0; c < 256; c++ {
		for pos := 2; pos < len(base); pos++ {
			b := append([]byte(nil), base...)
			b[pos] = byte(c)
			for end := pos; end <= len(b); end++ {
				check(string(b[:end]), 1)
			}
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for n := 0; n < 20000; n++ {
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = byte(0x20 + rng.IntN(0x60))
			switch rng.IntN(12) {
			case 0:
				b[i] = byte(rng.IntN(256))
			case 1, 2:
				b[i] = '"'
			}
		}
		for i := 0; i <= len(b); i++ {
			check(string(b), i)
		}
	}
}

// TestAppendStringEveryByte: appendString (eight bytes at a time) against a byte loop
// writing the same escapes, on every byte value at every position and on random strings;
// valid text comes back through the parser.
func TestAppendStringEveryByte(t *testing.T) {
	ref := func(s string) string { // the escapes of RFC 8259 this engine writes
		out := []byte{'"'}
		for i := 0; i < len(s); i++ {
			switch c := s[i]; {
			case c == '"':
				out = append(out, '\\', '"')
			case c == '\\':
				out = append(out, '\\', '\\')
			case c == '\n':
				out = append(out, '\\', 'n')
			case c == '\r':
				out = append(out, '\\', 'r')
			case c == '\t':
				out = append(out, '\\', 't')
			case c < 0x20:
				out = append(out, fmt.Sprintf("\\u%04x", c)...)
			default:
				out = append(out, c)
			}
		}
		return string(append(out, '"'))
	}
	base := []byte("abcdefghijklmnopqrstuvwxyz0123")
	for c := 0; c < 256; c++ {
		for pos := 0; pos < len(base); pos++ {
			b := append([]byte(nil), base...)
			b[pos] = byte(c)
			if got, want := string(appendString(nil, string(b))), ref(string(b)); got != want {
				t.Fatalf("byte %#x at %d: %s, want %s", c, pos, got, want)
			}
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for n := 0; n < 20000; n++ {
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		if got, want := string(appendString(nil, string(b))), ref(string(b)); got != want {
			t.Fatalf("%q: %s, want %s", b, got, want)
		}
		// A valid string comes back through the parser.
		if utf8.Valid(b) {
			if got, ok := stringValue(string(appendString(nil, string(b)))); !ok || got != string(b) {
				t.Fatalf("%q does not come back: %q", b, got)
			}
		}
	}
}

// TestSkipFindsTheEnd: skip, which trusts text validated before, ends every valid value
// exactly where it ends (strings with escaped quotes and backslashes, nesting, numbers,
// literals); on any bytes at all it stays in bounds.
func TestSkipFindsTheEnd(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	str := func() string {
		parts := []string{`a`, `\"`, `\\`, `\\\"`, `}`, `]`, `[`, `{`, `,`, `\u00e9`, `é`, `\n`}
		var b strings.Builder
		b.WriteByte('"')
		for n := rng.IntN(6); n > 0; n-- {
			b.WriteString(parts[rng.IntN(len(parts))])
		}
		return b.String() + `"`
	}
	var gen func(depth int) string
	gen = func(depth int) string {
		switch k := rng.IntN(7); {
		case k <= 1 && depth < 4:
			var b strings.Builder
			b.WriteByte("[{"[k])
			for n := rng.IntN(4); n > 0; n-- {
				if k == 1 {
					b.WriteString(str() + ":")
				}
				b.WriteString(gen(depth + 1))
				if n > 1 {
					b.WriteByte(',')
				}
			}
			b.WriteByte("]}"[k])
			return b.String()
		case k == 2:
			return []string{"true", "false", "null", "-1.5e3", "0", "42"}[rng.IntN(6)]
		}
		return str()
	}
	for n := 0; n < 20000; n++ {
		v := gen(0)
		if _, err := canonicalJSON(v, 64); err != nil {
			t.Fatalf("generator gave invalid JSON %s: %v", v, err)
		}
		p := jparser{s: v + `,"rest"]`, maxDepth: 1 << 30}
		p.skip()
		if p.err != nil || p.i != len(v) {
			t.Fatalf("skip of %s ended at %d (%v), want %d", v, p.i, p.err, len(v))
		}
	}
	for n := 0; n < 20000; n++ {
		b := make([]byte, rng.IntN(24))
		for i := range b {
			const alphabet = `"\[]{},:a1`
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		p := jparser{s: string(b), maxDepth: 1 << 30}
		p.skip() // must not panic
		if p.i < 0 || p.i > len(b) {
			t.Fatalf("skip of %q left the text: %d", b, p.i)
		}
	}
}

// TestKnownNameIndex: knownName gives each wire name with its index in wireNames (fastOp
// switches on the wire… constants), and nothing for a prefix or a longer name.
func TestKnownNameIndex(t *testing.T) {
	pad := func(s string) string { return s + strings.Repeat(" ", 16) }
	for i, w := range wireNames {
		if name, id := knownName(pad(`"` + w + `":`)); name != w || id != i {
			t.Fatalf("knownName(%q) = %q, %d; want %q, %d", w, name, id, w, i)
		}
		if name, id := knownName(pad(`"` + w[:len(w)-1] + `":`)); name != "" || id != -1 {
			t.Fatalf("knownName of a prefix of %q = %q, %d", w, name, id)
		}
		if name, id := knownName(pad(`"` + w + `x":`)); name != "" || id != -1 {
			t.Fatalf("knownName of %q + x = %q, %d", w, name, id)
		}
	}
	for id, w := range map[int]string{wireKind: "kind", wireSender: "sender", wireVerb: "verb", wireSubject: "subject",
		wireMetadata: "metadata", wireKey: "key", wireValue: "value", wireHLC: "hlc", wireSeq: "seq"} {
		if wireNames[id] != w {
			t.Fatalf("wireNames[%d] = %q, want %q", id, wireNames[id], w)
		}
	}
}

// TestNameIsStr: the member-name reader gives what str gives (value, end, error) on short
// and long names, escapes, bad bytes and unterminated text.
func TestNameIsStr(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	parts := []string{"a", "id", "layerId", `\"`, `\\`, `\u00e9`, "é", "\x01", `"`, "featureTypeLonger", `\x`,
		"kin", "metadat", "ke", "s", "lastKnownHL", "coordinate"}
	parts = append(parts, wireNames...) // the names knownName finds without a loop
	for n := 0; n < 40000; n++ {
		var b strings.Builder
		b.WriteByte('"')
		for k := rng.IntN(5); k > 0; k-- {
			b.WriteString(parts[rng.IntN(len(parts))])
		}
		if rng.IntN(5) > 0 {
			b.WriteString(`":1`)
		}
		if rng.IntN(2) > 0 { // room for knownName's two eight-byte loads
			b.WriteString(`,"padding":"0123456789abcdef"`)
		}
		text := b.String()
		p, q := jparser{s: text, maxDepth: 8}, jparser{s: text, maxDepth: 8}
		got, want := p.name(), q.str()
		if got != want || p.i != q.i || (p.err == nil) != (q.err == nil) {
			t.Fatalf("%q: name %q at %d (%v), str %q at %d (%v)", text, got, p.i, p.err, want, q.i, q.err)
		}
	}
}

// TestStringEndIsTheRule: stringEnd (eight bytes at a time, then a backslash-counting loop)
// against the rule read byte by byte — the first quote not escaped by an odd run of
// backslashes — with '"', '\\' and other bytes at every position of strings of 0 to 40
// bytes, and on random strings of those bytes.
func TestStringEndIsTheRule(t *testing.T) {
	slow := func(s string, i int) int {
		for j := i + 1; j < len(s); j++ {
			switch s[j] {
			case '\\':
				j++
			case '"':
				return j + 1
			}
		}
		return -1
	}
	check := func(s string) {
		t.Helper()
		if got, want := stringEnd(s, 0), slow(s, 0); got != want {
			t.Fatalf("stringEnd(%q) = %d, want %d", s, got, want)
		}
	}
	for n := 1; n <= 40; n++ {
		b := []byte(`"` + strings.Repeat("a", n-1))
		check(string(b))
		for pos := 1; pos < n; pos++ {
			for _, c := range []byte{'"', '\\', 0, 0x80, 0xff, '!', '#', '[', 'b'} {
				b[pos] = c
				check(string(b))
				for end := pos + 1; end < n; end++ { // and a quote after it
					b[end] = '"'
					check(string(b))
					b[end] = 'a'
				}
			}
			b[pos] = 'a'
		}
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for range 200_000 {
		b := make([]byte, 1+rng.IntN(40))
		b[0] = '"'
		for i := 1; i < len(b); i++ {
			b[i] = `"\\\\ab\x00é`[rng.IntN(8)]
		}
		check(string(b))
	}
}

// TestNextMembersIsElementsThenMembers: reading a list's objects member by member in one
// pass gives the elements eachElement gives and, for each object, the members validMembers
// lists — on canonical lists of random values (objects, empty ones, strings holding '}' and
// escaped quotes, nested lists, scalars between them).
func TestNextMembersIsElementsThenMembers(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	vals := []string{`1`, `"a}\"b"`, `[{"x":"]"},[]]`, `{}`, `{"k":{"l":[1,"}"]}}`, `null`, `"é\\"`}
	for round := 0; round < 5000; round++ {
		var els []string
		for n := rng.IntN(6); n > 0; n-- {
			if rng.IntN(4) == 0 {
				els = append(els, vals[rng.IntN(len(vals))])
				continue
			}
			var b strings.Builder
			b.WriteByte('{')
			for m := 0; m < rng.IntN(4); m++ {
				if m > 0 {
					b.WriteByte(',')
				}
				b.WriteString(`"n` + strconv.Itoa(m) + `\"":` + vals[rng.IntN(len(vals))])
			}
			b.WriteByte('}')
			els = append(els, b.String())
		}
		list := "[" + strings.Join(els, ",") + "]"
		if _, err := canonicalJSON(list, 64); err != nil {
			t.Fatalf("generator gave invalid JSON %s: %v", list, err)
		}
		var want []string
		eachElement(list, func(el string) bool { want = append(want, el); return true })
		var buf []member
		i := 0
		for it := elementsOf(list); ; i++ {
			ms, el, more := it.nextMembers(buf)
			if !more {
				if it.p.err != nil || i != len(want) {
					t.Fatalf("%s: %d elements (%v), want %d", list, i, it.p.err, len(want))
				}
				break
			}
			if i >= len(want) || el != want[i] {
				t.Fatalf("%s: element %d is %q, want %q", list, i, el, want)
			}
			if wantMs := validMembers(nil, el); !slices.Equal(ms, wantMs) || (ms == nil) != (el[0] != '{' || el == "{}") {
				t.Fatalf("%s: members of %s: %q, want %q", list, el, ms, wantMs)
			}
		}
	}
}

// TestSortOnlyIsTheRewrite: an object valid and compact but out of order, written from the
// members scanObject listed (writeSorted), is what the full parse writes (value), on random
// objects of plain, escaped and repeated names, nested objects in and out of order, arrays
// and whitespace; the stack is left as it was; and the short way is taken where it applies.
func TestSortOnlyIsTheRewrite(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	names := []string{`"a"`, `"b"`, `"id"`, `"layerId"`, `"featureType"`, `"é"`, `"\u0061"`, `"\n"`, `"type"`, `"coordinates"`, `""`}
	var object func(depth int) string
	leaf := func(depth int) string {
		switch rng.IntN(6) {
		case 0:
			return `"v` + strconv.Itoa(rng.IntN(100)) + `"`
		case 1:
			return strconv.Itoa(rng.IntN(1000) - 500)
		case 2:
			return `[1.5,"x",null,true]`
		case 3:
			if depth < 3 {
				return object(depth + 1)
			}
			return `{}`
		case 4:
			return `"\u00e9\"x"`
		}
		return "false"
	}
	object = func(depth int) string {
		var b strings.Builder
		b.WriteByte('{')
		if rng.IntN(3) == 0 { // a bigger object, in order but for a member near its end
			n := listFirst + rng.IntN(8)
			swap := rng.IntN(n + 4) // past n: in order, or a name repeated at the end
			for k := 0; k < n; k++ {
				j := k
				if k == swap {
					j = k + 1
				} else if k == swap+1 {
					j = k - 1
				}
				if k > 0 {
					b.WriteByte(',')
				}
				b.WriteString(`"k` + strconv.Itoa(10+j) + `":` + leaf(depth))
			}
			if swap >= n+2 {
				b.WriteString(`,"k1` + strconv.Itoa(rng.IntN(n)%10) + `":0`)
			}
			b.WriteByte('}')
			return b.String()
		}
		for k := rng.IntN(6); k >= 0; k-- {
			if b.Len() > 1 {
				b.WriteByte(',')
			}
			if rng.IntN(40) == 0 {
				b.WriteByte(' ')
			}
			b.WriteString(names[rng.IntN(len(names))])
			b.WriteByte(':')
			b.WriteString(leaf(depth))
		}
		b.WriteByte('}')
		return b.String()
	}
	short := 0
	for n := 0; n < 20000; n++ {
		text := object(0)
		pre := []member{{name: "below", val: "1"}} // a caller's members under the object's
		p := jparser{s: text, maxDepth: 16, stack: pre}
		got := p.valueString(0)
		q := jparser{s: text, maxDepth: 16}
		want := string(q.value(nil, 0))
		if p.err != nil || q.err != nil || got != want || p.i != len(text) {
			t.Fatalf("%s: valueString %s (%v, at %d), value %s (%v)", text, got, p.err, p.i, want, q.err)
		}
		if len(p.stack) != 1 || p.stack[0] != pre[0] {
			t.Fatalf("%s: stack left %v", text, p.stack)
		}
		s := jparser{s: text, maxDepth: 16}
		if _, sortOnly := s.scanObject(0, true); sortOnly {
			short++
			if s.i != len(text) {
				t.Fatalf("%s: scanObject stopped at %d", text, s.i)
			}
		} else if len(s.stack) != 0 {
			t.Fatalf("%s: scanObject left %v", text, s.stack)
		}
	}
	if short < 2000 {
		t.Fatalf("the short way taken %d times of 20,000", short)
	}
	t.Logf("the short way taken %d times of 20,000", short)
}

// TestCanonicalValueOfPlainStrings: a caller's value that is a plain string (printable
// ASCII, no escape) is taken as its own canonical text, without the parser; everything
// else — whitespace around it, escapes, other bytes, an unclosed quote — gets what the
// parser gives, error included.
func TestCanonicalValueOfPlainStrings(t *testing.T) {
	r := newTestReplica(t, "p", hlc.NewManualClock(1))
	check := func(in string) {
		t.Helper()
		want, wantErr := canonicalJSON(in, r.opts.Limits.MaxDepth)
		got, err := r.canonicalValue(nil, in)
		if got != want || (err == nil) != (wantErr == nil) {
			t.Fatalf("canonicalValue(%q) = %q, %v; the parser gives %q, %v", in, got, err, want, wantErr)
		}
	}
	for _, in := range []string{`"x"`, `""`, `"a b c ~ 0123456789 <&>"`, ` "x"`, `"x" `, `"x"x`, `"x`, `"`,
		`"\u0041"`, `"a\"b"`, `"é"`, "\"a\tb\"", "\"\x7f\"", `"x""y"`, `1`, `{"b":1,"a":2}`} {
		check(in)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for n := 0; n < 5000; n++ {
		b := []byte{'"'}
		for range rng.IntN(30) {
			c := byte(0x20 + rng.IntN(0x5f))
			if rng.IntN(20) == 0 {
				c = byte(rng.IntN(256))
			}
			b = append(b, c)
		}
		if rng.IntN(10) != 0 {
			b = append(b, '"')
		}
		check(string(b))
	}
}

func TestLoneSurrogate(t *testing.T) {
	for body, want := range map[string]bool{
		`plain`: false, `a\u00e9b`: false, `\ud83d\ude00`: false, `x\ud83d\ude00y\n`: false,
		`\\ud800`: false, `\\\ud83d\ude00`: false,
		`a\ud800`: true, `\ud800b`: true, `\udc00`: true, `\ud800\u0041`: true, `\ud800\n`: true,
		`\ud83d\ude00\udc00`: true, `\\\ud800`: true, `\uD800`: true,
	} {
		if got := loneSurrogate(body); got != want {
			t.Errorf("loneSurrogate(%s) = %v, want %v", body, got, want)
		}
	}
}
