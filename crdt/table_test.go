package crdt

import "testing"

// TestTable64: the table against a Go map — keys that share their low bits or their high
// bits (one probe run each), growth past many sizes, the first value kept for a key, absent
// keys nil.
func TestTable64(t *testing.T) {
	var x table64[int]
	want := map[uint64]int{}
	if x.get(42) != nil {
		t.Fatal("an empty table finds 42")
	}
	for i := 1; i <= 5000; i++ {
		k := uint64(i) * 0x9e3779b97f4a7c15
		switch i % 3 {
		case 0:
			k = uint64(i) << 40 // low bits zero
		case 1:
			k = uint64(i) * 8 // addresses: high bits zero
		}
		_, had := want[k]
		if added := x.add(k, i); added == had {
			t.Fatalf("add(%#x) reports %v, the key was there: %v", k, added, had)
		}
		if !had {
			want[k] = i
		}
		if x.add(k, -i) { // taken: the first value stays
			t.Fatalf("add(%#x) again reports it added", k)
		}
		if i%97 == 0 || i == 5000 {
			for k, v := range want {
				if p := x.get(k); p == nil || *p != v {
					t.Fatalf("after %d adds: key %#x gives %v, want %d", i, k, p, v)
				}
			}
			if x.get(uint64(i)<<40|1) != nil || 2*x.n > len(x.slots) || x.n != len(want) {
				t.Fatalf("after %d adds: an absent key found, or %d entries (want %d) in %d slots", i, x.n, len(want), len(x.slots))
			}
		}
	}
}
