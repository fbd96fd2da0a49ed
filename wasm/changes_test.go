package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/mapcrdt/mapcrdt/crdt"
	"github.com/mapcrdt/mapcrdt/hlc"
)

// expandChanges turns the compact form of changes.go into the full JSON array
// crdt.AppendChangesJSON writes, as the glue's parseChanges does into objects.
func expandChanges(t testing.TB, text string) string {
	t.Helper()
	parts := strings.Split(text, string(rune(UnitSeparator)))
	var a []json.RawMessage
	if err := json.Unmarshal([]byte(parts[0]), &a); err != nil || len(parts)%2 != 1 {
		t.Fatalf("compact changes %q: %v", text, err)
	}
	var objs []json.RawMessage
	for i, p := range parts[1:] {
		if i%2 == 0 {
			p = strconv.Quote(p) // a subject, as text
		} else if !json.Valid([]byte(p)) {
			t.Fatalf("compact changes %q: metadata %q is not JSON", text, p)
		}
		objs = append(objs, json.RawMessage(p))
	}
	num := func(raw json.RawMessage) int {
		n, err := strconv.Atoi(string(raw))
		if err != nil {
			t.Fatalf("compact changes %q: %s is not a number", text, raw)
		}
		return n
	}
	var b strings.Builder
	b.WriteByte('[')
	for i := 0; i < len(a); {
		code, obj := num(a[i]), num(a[i+1])
		i += 2
		if 2*obj+1 >= len(objs) || code>>2 >= len(changeKinds) {
			t.Fatalf("compact changes %q: code %d, object %d", text, code, obj)
		}
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		b.WriteString(`{"kind":"` + string(changeKinds[code>>2]) + `","subject":`)
		b.Write(objs[2*obj])
		b.WriteString(`,"metadata":`)
		b.Write(objs[2*obj+1])
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

// TestChangeRowsExpandAsTheFullForm: whatever the changes, the compact form expands into
// exactly the text crdt.AppendChangesJSON writes — over every kind, with and without key
// and value, fewer and more objects than the scan handles, a writer reused across calls,
// and the traps of identifying objects by address.
func TestChangeRowsExpandAsTheFullForm(t *testing.T) {
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
		// One text in memory for two subjects, and equal text at another address.
		"same address": {
			{Kind: crdt.Set, Subject: "datalayer", Metadata: shared, Key: "k", Value: "1", HLC: ts(0)},
			{Kind: crdt.Set, Subject: "feature", Metadata: shared, Key: "k", Value: "2", HLC: ts(1)},
			{Kind: crdt.Set, Subject: "datalayer", Metadata: other[:len(shared)], Key: "k", Value: "3", HLC: ts(2)},
			{Kind: crdt.Set, Subject: "feature", Metadata: shared, Key: "j", Value: "5", HLC: ts(4)},
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
	var w changeRows // one writer for every call, as the host has
	for round := range 2 {
		for name, cs := range calls {
			want := string(crdt.AppendChangesJSON(nil, cs))
			text := string(w.appendTo(nil, cs))
			if got := expandChanges(t, text); got != want {
				t.Fatalf("round %d, %s: expands to\n%.600s\nwant\n%.600s", round, name, got, want)
			}
			if len(w.objs) != 0 || cap(w.objs) > keptObjects || len(w.index) > keptObjects {
				t.Fatalf("%s: the writer keeps %d objects, %d indexed", name, len(w.objs), len(w.index))
			}
		}
	}
	// Each object is written once: as many as distinct (subject, text address) pairs.
	for _, n := range []int{linearObjects + 1, 300} {
		cs := calls["objects "+strconv.Itoa(n)]
		distinct := map[[2]any]bool{}
		for _, c := range cs {
			distinct[[2]any{c.Subject, unsafe.StringData(c.Metadata)}] = true
		}
		text := string(w.appendTo(nil, cs))
		if parts := strings.Split(text, string(rune(UnitSeparator))); len(parts)-1 != 2*len(distinct) {
			t.Fatalf("%d objects: %d written, want %d", n, (len(parts)-1)/2, len(distinct))
		}
	}
}
