package main

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/mapcrdt/mapcrdt/crdt"
	"github.com/mapcrdt/mapcrdt/hlc"
)

// objectTable is a caller's table of changes' objects, as the glue keeps it: subjects and
// metadata texts by number.
type objectTable struct {
	objs []json.RawMessage // subject (quoted), metadata, …
}

// held is Call.Objects for the table.
func (o *objectTable) held() uint32 { return uint32(len(o.objs) / 2) }

// expand turns the compact form of changes.go into the full JSON array
// crdt.AppendChangesJSON writes, as the glue's parseChanges does into objects, updating
// the table with the objects the text defines.
func (o *objectTable) expand(t testing.TB, text string) string {
	t.Helper()
	parts := strings.Split(text, string(rune(UnitSeparator)))
	var a []json.RawMessage
	if err := json.Unmarshal([]byte(parts[0]), &a); err != nil || (len(parts) != 1 && len(parts)%2 != 0) {
		t.Fatalf("compact changes %q: %v", text, err)
	}
	num := func(raw string) int {
		n, err := strconv.Atoi(raw)
		if err != nil {
			t.Fatalf("compact changes %q: %s is not a number", text, raw)
		}
		return n
	}
	if len(parts) > 1 {
		base := num(parts[1])
		if 2*base > len(o.objs) {
			t.Fatalf("compact changes %q: base %d past the table's %d objects", text, base, len(o.objs)/2)
		}
		o.objs = o.objs[:2*base]
		for i, p := range parts[2:] {
			if i%2 == 0 {
				p = strconv.Quote(p) // a subject, as text
			} else if !json.Valid([]byte(p)) {
				t.Fatalf("compact changes %q: metadata %q is not JSON", text, p)
			}
			o.objs = append(o.objs, json.RawMessage(p))
		}
	}
	var b strings.Builder
	b.WriteByte('[')
	for i := 0; i < len(a); {
		code, obj := num(string(a[i])), num(string(a[i+1]))
		i += 2
		if 2*obj+1 >= len(o.objs) || code>>2 >= len(changeKinds) {
			t.Fatalf("compact changes %q: code %d, object %d of %d", text, code, obj, len(o.objs)/2)
		}
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		b.WriteString(`{"kind":"` + string(changeKinds[code>>2]) + `","subject":`)
		b.Write(o.objs[2*obj])
		b.WriteString(`,"metadata":`)
		b.Write(o.objs[2*obj+1])
		if code&2 != 0 {
			b.WriteString(`,"key":`)
			b.Write(a[i])
			i++
		}
		if code&1 != 0 {
			b.WriteString(`,"value":`)
			b.Write(a[i])
			i++
		}
		b.WriteString(`,"hlc":`)
		b.Write(a[i])
		i++
		b.WriteByte('}')
	}
	b.WriteByte(']')
	return b.String()
}

// expandChanges expands the changes of a call made with Objects 0 (an empty table).
func expandChanges(t testing.TB, text string) string {
	t.Helper()
	return new(objectTable).expand(t, text)
}

// defined is the number of objects text defines.
func defined(text string) int {
	return strings.Count(text, string(rune(UnitSeparator))) / 2
}

// changeCalls are calls' changes that hold the traps of the compact form: every kind,
// with and without key and value, fewer and more objects than the scan handles, and the
// traps of identifying objects by address.
func changeCalls() map[string][]crdt.Change {
	ts := func(i int) hlc.Timestamp {
		return hlc.Timestamp{Wall: 1727184449010 + int64(i), Counter: uint32(i % 3), Peer: "p" + strconv.Itoa(i%2)}
	}
	metas := make([]string, 5000)
	for i := range metas {
		metas[i] = `{"id":"f` + strconv.Itoa(i) + `","layerId":"L"}`
	}
	shared := `{"id":"same"}`
	other := `{"id":"same"},` // holds the same text at another address
	calls := map[string][]crdt.Change{
		"none": nil,
		"every kind": {
			{Kind: crdt.Created, Subject: "feature", Metadata: metas[0], Value: `{"type":"Feature"}`, HLC: ts(0)},
			{Kind: crdt.Set, Subject: "feature", Metadata: metas[0], Key: "properties.name", Value: `"a\u2028b"`, HLC: ts(1)},
			{Kind: crdt.Set, Subject: "feature", Metadata: metas[0], Value: `{}`, HLC: ts(2)},
			{Kind: crdt.Unset, Subject: "feature", Metadata: metas[1], Key: `properties.a\.b`, HLC: ts(3)},
			{Kind: crdt.Deleted, Subject: "feature", Metadata: metas[1], HLC: ts(4)},
			{Kind: crdt.Set, Subject: "map", Metadata: `{}`, Key: "properties.zoom", Value: `7`, HLC: ts(5)},
		},
		// One text in memory for two subjects, equal text at another address, and a
		// shorter text at the same address.
		"same address": {
			{Kind: crdt.Set, Subject: "datalayer", Metadata: shared, Key: "k", Value: "1", HLC: ts(0)},
			{Kind: crdt.Set, Subject: "feature", Metadata: shared, Key: "k", Value: "2", HLC: ts(1)},
			{Kind: crdt.Set, Subject: "datalayer", Metadata: other[:len(shared)], Key: "k", Value: "3", HLC: ts(2)},
			{Kind: crdt.Set, Subject: "feature", Metadata: shared, Key: "j", Value: "5", HLC: ts(4)},
			{Kind: crdt.Set, Subject: "feature", Metadata: shared[:0] + `{}`, Key: "j", Value: "6", HLC: ts(5)},
			{Kind: crdt.Set, Subject: "datalayer", Metadata: shared, Key: "k", Value: "7", HLC: ts(6)},
		},
	}
	for _, n := range []int{linearObjects, linearObjects + 1, 300, 5000} {
		var cs []crdt.Change
		for i := range 3 * n {
			m := metas[(i*7)%n]
			if i%5 == 4 { // the same text at another address: another object, equal metadata
				m = strings.Clone(m)
			}
			cs = append(cs, crdt.Change{Kind: crdt.Set, Subject: "feature", Metadata: m, Key: "properties.n", Value: strconv.Itoa(i), HLC: ts(i)})
			if i%40 == 39 { // a subject met at a known address past the scan
				cs = append(cs, crdt.Change{Kind: crdt.Set, Subject: "datalayer", Metadata: m, Key: "k", Value: "0", HLC: ts(i)})
			}
		}
		calls["objects "+strconv.Itoa(n)] = cs
	}
	return calls
}

// TestChangeRowsExpandAsTheFullForm: whatever the changes and whatever the caller's table
// holds, the compact form expands into exactly the text crdt.AppendChangesJSON writes.
func TestChangeRowsExpandAsTheFullForm(t *testing.T) {
	calls := changeCalls()
	names := []string{"none", "every kind", "same address", "objects 8", "objects 9", "objects 300", "objects 5000"}
	check := func(w *changeRows, tab *objectTable, name string, held uint32) string {
		t.Helper()
		cs := calls[name]
		text := string(w.appendTo(nil, cs, held))
		if got, want := tab.expand(t, text), string(crdt.AppendChangesJSON(nil, cs)); got != want {
			t.Fatalf("%s (held %d): expands to\n%.600s\nwant\n%.600s", name, held, got, want)
		}
		return text
	}
	t.Run("a caller that keeps its table", func(t *testing.T) {
		var w changeRows // one writer for every call, as the host has
		var tab objectTable
		for round := range 3 {
			for _, name := range names {
				check(&w, &tab, name, tab.held())
			}
			if len(w.objs) > 2*maxObjects+5000 || w.index.n > len(w.objs) {
				t.Fatalf("round %d: the writer keeps %d objects, %d indexed", round, len(w.objs), w.index.n)
			}
		}
	})
	t.Run("a caller that keeps none", func(t *testing.T) {
		var w changeRows
		for range 2 {
			for _, name := range names {
				check(&w, new(objectTable), name, 0)
			}
		}
	})
	t.Run("a caller that lost results", func(t *testing.T) {
		var w changeRows
		var tab objectTable
		for i, name := range append(names, names...) {
			if i%3 == 1 { // the result never reaches the caller: its table stays as it was
				w.appendTo(nil, calls[name], tab.held())
				continue
			}
			check(&w, &tab, name, tab.held())
		}
	})
}

// TestChangeRowsWriteEachObjectOnce: an object is written the first time a call names it,
// then only by number, in the same call and the next ones; the table starts again past
// maxObjects; a caller whose table is shorter is sent again what it lacks.
func TestChangeRowsWriteEachObjectOnce(t *testing.T) {
	calls := changeCalls()
	for _, n := range []int{linearObjects + 1, 300} {
		cs := calls["objects "+strconv.Itoa(n)]
		distinct := map[[2]any]bool{}
		for _, c := range cs {
			distinct[[2]any{c.Subject, unsafe.StringData(c.Metadata)}] = true
		}
		var w changeRows
		var tab objectTable
		text := string(w.appendTo(nil, cs, 0))
		tab.expand(t, text)
		if got := defined(text); got != len(distinct) {
			t.Fatalf("%d objects: %d written, want %d", n, got, len(distinct))
		}
		// Named again, by a caller that kept them: none written.
		if text := string(w.appendTo(nil, cs, tab.held())); defined(text) != 0 {
			t.Fatalf("%d objects, again: %d written, want 0", n, defined(text))
		}
		// By a caller that holds 3 of them: the others again, numbered from 3.
		text = string(w.appendTo(nil, cs, 3))
		if got := defined(text); got != len(distinct)-3 || !strings.HasPrefix(text[strings.IndexByte(text, UnitSeparator):], "\x1f3\x1f") {
			t.Fatalf("%d objects, to a caller that holds 3: %d written from %.12q", n, got, text[strings.IndexByte(text, UnitSeparator):])
		}
	}
	// Two subjects at one address: the one the caller kept is still found after it lost
	// the result that added the other.
	{
		var w changeRows
		var tab objectTable
		meta := `{"id":"x"}`
		dl := []crdt.Change{{Kind: crdt.Set, Subject: "datalayer", Metadata: meta, Key: "k", Value: "1", HLC: hlc.Timestamp{Wall: 1, Peer: "p"}}}
		ft := []crdt.Change{{Kind: crdt.Set, Subject: "feature", Metadata: meta, Key: "k", Value: "2", HLC: hlc.Timestamp{Wall: 2, Peer: "p"}}}
		tab.expand(t, string(w.appendTo(nil, dl, tab.held())))
		w.appendTo(nil, ft, tab.held()) // lost
		if text := string(w.appendTo(nil, dl, tab.held())); defined(text) != 0 {
			t.Fatalf("the kept object, after a lost one at its address: %q", text)
		}
		if text := string(w.appendTo(nil, ft, tab.held())); tab.expand(t, text) != string(crdt.AppendChangesJSON(nil, ft)) || defined(text) != 1 {
			t.Fatalf("the lost object again: %q", text)
		}
	}
	// One new object a call: the table grows to maxObjects, then starts again at 0 and
	// writes the known ones anew.
	metas := make([]string, maxObjects+10)
	for i := range metas {
		metas[i] = `{"id":"` + strconv.Itoa(i) + `"}`
	}
	var w changeRows
	var tab objectTable
	one := func(i int) string {
		c := []crdt.Change{{Kind: crdt.Set, Subject: "feature", Metadata: metas[i], Key: "k", Value: "1", HLC: hlc.Timestamp{Wall: 1, Peer: "p"}}}
		text := string(w.appendTo(nil, c, tab.held()))
		if got, want := tab.expand(t, text), string(crdt.AppendChangesJSON(nil, c)); got != want {
			t.Fatalf("object %d: %s, want %s", i, got, want)
		}
		return text
	}
	for i := range maxObjects {
		if text := one(i); defined(text) != 1 || !strings.Contains(text, "\x1f"+strconv.Itoa(i)+"\x1f") {
			t.Fatalf("object %d: %q", i, text)
		}
	}
	if text := one(0); defined(text) != 1 || !strings.Contains(text, "]\x1f0\x1f") || tab.held() != 1 {
		t.Fatalf("past the bound: %q, table %d", text, tab.held())
	}
	if text := one(0); defined(text) != 0 {
		t.Fatalf("the first object again after the bound: %q", text)
	}
}

// TestChangeRowsRandomCalls: thousands of calls over a pool of objects — texts shared by
// two subjects, equal texts at other addresses, shorter texts at the same address — with
// results randomly lost (never read by the caller) and a pool larger than maxObjects: every
// result read expands into the full form. A failure prints its seed.
func TestChangeRowsRandomCalls(t *testing.T) {
	for seed := range int64(20) {
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		type obj struct{ subject, meta string }
		var pool []obj
		digits := strings.Repeat("1234567890", 2) // its prefixes: JSON texts at one address
		for i := range maxObjects + 500 {
			m := `{"id":"f` + strconv.Itoa(i) + `"}`
			switch i % 7 {
			case 1:
				m = strings.Clone(pool[i-1].meta) // equal text, another address
			case 2:
				pool = append(pool, obj{"datalayer", pool[i-2].meta}) // one address, two subjects
				continue
			case 3:
				m = digits[:1+i%19] // texts of other lengths at one address
			}
			pool = append(pool, obj{"feature", m})
		}
		var w changeRows
		var tab objectTable
		for call := range 3000 {
			n := rng.IntN(12)
			if call%500 == 499 {
				n = 300
			}
			cs := make([]crdt.Change, n)
			for i := range cs {
				o := pool[rng.IntN(len(pool))]
				if rng.IntN(4) > 0 { // mostly a few hot objects
					o = pool[rng.IntN(40)]
				}
				cs[i] = crdt.Change{Kind: crdt.Set, Subject: o.subject, Metadata: o.meta, Key: "k", Value: strconv.Itoa(i), HLC: hlc.Timestamp{Wall: int64(call + 1), Peer: "p"}}
			}
			text := string(w.appendTo(nil, cs, tab.held()))
			if rng.IntN(10) == 0 {
				continue // lost
			}
			if got, want := tab.expand(t, text), string(crdt.AppendChangesJSON(nil, cs)); got != want {
				t.Fatalf("seed %d, call %d: expands to\n%.300s\nwant\n%.300s", seed, call, got, want)
			}
			if len(w.objs) > maxObjects+300 {
				t.Fatalf("seed %d, call %d: the writer holds %d objects", seed, call, len(w.objs))
			}
		}
	}
}

// TestKindCode: each kind's code, for the engine's constants and for the same text in
// other memory; an unknown kind gives 0.
func TestKindCode(t *testing.T) {
	for k, kind := range changeKinds {
		copied := crdt.ChangeKind(strings.Clone(string(kind)))
		if kindCode(kind) != k<<2 || kindCode(copied) != k<<2 {
			t.Fatalf("kindCode(%q) = %d / %d (a copy), want %d", kind, kindCode(kind), kindCode(copied), k<<2)
		}
	}
	if kindCode("moved") != 0 {
		t.Fatal("an unknown kind has a code")
	}
}

// TestChangesSizeHoldsAFreshTable: changesSize is at least what a call's changes take when
// every object is new to the caller (the most they can take, escapes of keys aside), and
// not far above it, so one buffer sized by it holds them.
func TestChangesSizeHoldsAFreshTable(t *testing.T) {
	for name, cs := range changeCalls() {
		var w changeRows
		n := len(w.appendTo(nil, cs, 0))
		if est := changesSize(cs); est < n || est > 2*n+64 {
			t.Errorf("%s: %d changes take %d bytes; changesSize says %d", name, len(cs), n, est)
		}
	}
	// A call's output grows once, into the size given: one allocation more than into a
	// buffer that holds it already.
	cs := changeCalls()["objects 5000"]
	c := &Call{}
	small := testing.AllocsPerRun(3, func() { c.appendChanges(make([]byte, 0, 64), cs) })
	large := testing.AllocsPerRun(3, func() { c.appendChanges(make([]byte, 0, 4<<20), cs) })
	if small > large+1 {
		t.Errorf("%v allocations into a small buffer, %v into a large one", small, large)
	}
}

// TestChangeRowsLostResultPastTheBound: the call that starts the table again from 0 (past
// maxObjects) is lost — its caller still holds the table of before, all of it — and the
// next call names its objects by the numbers the lost call gave them: it must write them
// again, not name the caller's old objects at those numbers.
func TestChangeRowsLostResultPastTheBound(t *testing.T) {
	metas := make([]string, maxObjects+2)
	for i := range metas {
		metas[i] = `{"id":"` + strconv.Itoa(i) + `"}`
	}
	change := func(i int) []crdt.Change {
		return []crdt.Change{{Kind: crdt.Set, Subject: "feature", Metadata: metas[i], Key: "k", Value: "1", HLC: hlc.Timestamp{Wall: 1, Peer: "p"}}}
	}
	var w changeRows
	var tab objectTable
	for i := range maxObjects {
		tab.expand(t, string(w.appendTo(nil, change(i), tab.held())))
	}
	w.appendTo(nil, change(maxObjects), tab.held()) // starts the table again: lost
	for _, i := range []int{maxObjects, maxObjects + 1, maxObjects} {
		c := change(i)
		if got, want := tab.expand(t, string(w.appendTo(nil, c, tab.held()))), string(crdt.AppendChangesJSON(nil, c)); got != want {
			t.Fatalf("object %d after the lost call: %s, want %s", i, got, want)
		}
	}
}
