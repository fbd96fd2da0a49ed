package main

import (
	"fmt"
	"strings"
	"testing"
)

// TestCompactionByCountWaitsForTheLog: on a large map, CompactEvery small messages do not
// rewrite the whole map each time; the compaction comes once the log holds an eighth of
// the snapshot's bytes (or CompactBytes), and the map reopens whole after it.
func TestCompactionByCountWaitsForTheLog(t *testing.T) {
	dir := t.TempDir()
	so := storeOptions{Dir: dir, CompactEvery: 5, CompactBytes: 1 << 40}
	s, logs := mustOpenStored(t, so, "m")
	alice := newCRDT(t, "alice")
	send := func(key, value string) int64 {
		t.Helper()
		if _, err := alice.Update("map", `{}`, key, value); err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, m := range alice.Flush() {
			n += int64(len(m)) + 1
			checkAll(t, s, [][]byte{m})
		}
		return n
	}
	// A large map: 5 messages of 100 KB, compacted into a snapshot of ~500 KB.
	for i := range 5 {
		send(fmt.Sprintf("properties.big%d", i), `"`+strings.Repeat("x", 100_000)+`"`)
	}
	if n := strings.Count(logs.String(), "map compacted"); n != 1 || s.snapBytes < 500_000 {
		t.Fatalf("%d compactions, a snapshot of %d bytes", n, s.snapBytes)
	}
	// 100 small messages (20 × CompactEvery), ~20 KB: no compaction. Then until the log
	// holds an eighth of the snapshot: one.
	var logged int64
	for i := range 100 {
		logged += send("properties.name", fmt.Sprintf(`"name %d"`, i))
	}
	if n := strings.Count(logs.String(), "map compacted"); n != 1 || logged >= s.snapBytes/8 {
		t.Fatalf("%d compactions after %d bytes of small messages", n, logged)
	}
	for i := 0; strings.Count(logs.String(), "map compacted") == 1; i++ {
		if i == 10_000 {
			t.Fatal("no compaction")
		}
		logged += send("properties.name", fmt.Sprintf(`"more %d"`, i))
	}
	if logged < s.snapBytes/8-1000 {
		t.Fatalf("compacted after %d bytes of log, a snapshot of %d", logged, s.snapBytes)
	}
	want := alice.State()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, _ = mustOpenStored(t, so, "m")
	defer s.Close()
	sameState(t, "reopened", s.r.State(), want)
}
