package crdt

import (
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"unsafe"
)

// TestObjectTable: the table against a Go map through random insertions and removals —
// small tables, where runs of slots wrap around the end and removals move objects back,
// and growth past many sizes; every object found by its key, absent keys not found,
// sorted() in key order.
func TestObjectTable(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 40 {
		var tab objectTable
		want := map[string]*object{}
		keys := 8 + rng.IntN(3000>>(round%6)) // the key space: small ones keep the table small
		for step := range 4000 {
			key := "feature\x00L\x00f" + strconv.Itoa(rng.IntN(keys))
			o := want[key]
			switch {
			case o == nil:
				o = &object{key: key}
				tab.add(o)
				want[key] = o
			case rng.IntN(2) == 0:
				tab.remove(o)
				tab.remove(o) // a second time: nothing there
				delete(want, key)
			}
			if step%101 != 0 && step != 3999 {
				continue
			}
			if tab.len() != len(want) || 4*tab.len() > 3*len(tab.slots) {
				t.Fatalf("round %d step %d: %d objects (want %d) in %d slots", round, step, tab.len(), len(want), len(tab.slots))
			}
			for k, o := range want {
				if got := tab.get(k); got != o {
					t.Fatalf("round %d step %d: get(%q) = %v, want %v", round, step, k, got, o)
				}
			}
			for i := range keys {
				k := "feature\x00L\x00f" + strconv.Itoa(i)
				if want[k] == nil && tab.get(k) != nil {
					t.Fatalf("round %d step %d: removed %q found", round, step, k)
				}
			}
			n := 0
			tab.each(func(o *object) {
				if want[o.key] != o {
					t.Fatalf("round %d step %d: each gives %q, not held", round, step, o.key)
				}
				n++
			})
			sorted := tab.sorted(nil)
			if n != len(want) || len(sorted) != len(want) || !slices.IsSortedFunc(sorted, func(a, b *object) int {
				if a.key < b.key {
					return -1
				}
				return 1
			}) {
				t.Fatalf("round %d step %d: each gave %d, sorted %d objects (want %d), or out of order", round, step, n, len(sorted), len(want))
			}
		}
	}
	var empty objectTable
	if empty.get("x") != nil || len(empty.sorted(nil)) != 0 {
		t.Fatal("an empty table finds an object")
	}
	empty.remove(&object{key: "x"})
	empty.reserve(100)
	if 3*len(empty.slots) < 4*100 || empty.len() != 0 {
		t.Fatalf("reserve(100): %d slots, %d objects", len(empty.slots), empty.len())
	}
}

// TestObjectBlocksFillTheirSizeClass: a block of objects takes from the runtime what its
// objects need and at most a few bytes more (objectBlocks' lengths are chosen for the
// runtime's size classes; a field added to object can push a block into the next class,
// up to 40 bytes more per object). TotalAlloc counts the bytes of each allocation's class.
func TestObjectBlocksFillTheirSizeClass(t *testing.T) {
	const n = 500
	perBlock := func(alloc func(i int)) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := range n {
			alloc(i)
		}
		runtime.ReadMemStats(&after)
		return (after.TotalAlloc - before.TotalAlloc) / n
	}
	withPaths := make([][]objectAlloc, n)
	plain := make([][]object, n)
	for _, c := range []struct {
		name      string
		need, got uint64
	}{
		{"with paths", uint64(unsafe.Sizeof(objectAlloc{})) * withPathsBlockLen,
			perBlock(func(i int) { withPaths[i] = make([]objectAlloc, withPathsBlockLen) })},
		{"plain", uint64(unsafe.Sizeof(object{})) * plainBlockLen,
			perBlock(func(i int) { plain[i] = make([]object, plainBlockLen) })},
	} {
		if c.got < c.need || c.got-c.need > 32 {
			t.Errorf("%s: a block of %d bytes takes %d", c.name, c.need, c.got)
		}
	}
	runtime.KeepAlive(withPaths)
	runtime.KeepAlive(plain)
}
