package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mapcrdt/mapcrdt/crdt"
)

// openStored opens the stored replica of mapName under so, its storage events in logs.
func openStored(t *testing.T, so storeOptions, mapName string, logs *syncBuffer) (*storeReplica, error) {
	t.Helper()
	so.Log = slog.New(slog.NewTextHandler(logs, nil))
	rep, err := newStoreFactory(so)(mapName)
	if err != nil {
		return nil, err
	}
	return rep.(*storeReplica), nil
}

// mustOpenStored is openStored that fails the test on an error.
func mustOpenStored(t *testing.T, so storeOptions, mapName string) (*storeReplica, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	s, err := openStored(t, so, mapName, logs)
	if err != nil {
		t.Fatalf("opening %s: %v\n%s", mapName, err, logs)
	}
	return s, logs
}

// checkAll has s take msgs, as the relay would.
func checkAll(t *testing.T, s *storeReplica, msgs [][]byte) {
	t.Helper()
	for _, m := range msgs {
		if _, err := s.Check(m); err != nil {
			t.Fatalf("Check %.200s: %v", m, err)
		}
	}
}

// crash drops s's file as a crash would: no compaction.
func crash(t *testing.T, s *storeReplica) {
	t.Helper()
	if err := s.logFile.Close(); err != nil {
		t.Fatal(err)
	}
}

// blockSnapshot makes every compaction of mapName in dir fail (a full disk, a failing
// device): its temporary snapshot's path is a directory that cannot be removed. The
// returned function unblocks it.
func blockSnapshot(t *testing.T, dir, mapName string) (unblock func()) {
	t.Helper()
	tmp := filepath.Join(dir, mapName+".snapshot.tmp")
	writeFile(t, filepath.Join(tmp, "blocker"), "x")
	return func() {
		if err := os.RemoveAll(tmp); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLogLineRefusedTodayIsSkipped: an engine upgrade tightens validation, and a log line
// an earlier engine accepted (a value whose member names escape a lone UTF-16 surrogate)
// is refused on replay. Unlike a line that is not JSON (lost data), it does not refuse the
// map: it is skipped with a warning, and the rest replays. So is a sync response whose
// session token is over 64 bytes.
func TestLogLineRefusedTodayIsSkipped(t *testing.T) {
	dir := t.TempDir()
	alice := newCRDT(t, "alice")
	msgs := edits(t, alice, "a")
	old := fmt.Sprintf(`{"hlc":"%d:0:olga","kind":"OperationMessage","metadata":{"id":"fo","layerId":"L-a"},`+
		`"sender":"olga","seq":1,"subject":"feature","value":{"properties":{"\ud800x":"old"},"type":"Feature"},"verb":"upsert"}`,
		1_700_000_000_000)
	// And a sync response whose session token is over 64 bytes, as one was once taken.
	olaf := newCRDT(t, "olaf")
	if _, err := olaf.Upsert("feature", `{"id":"fo","layerId":"L-a"}`, `{"type":"Feature"}`); err != nil {
		t.Fatal(err)
	}
	olaf.Flush()
	res, err := olaf.Receive(newCRDT(t, "relay").ProbeRequest("olaf"))
	if err != nil || len(res.Replies) != 1 {
		t.Fatalf("olaf's answer to a probe: %v %q", err, res.Replies)
	}
	// (With a space after its first brace: the engine's fast path for its own compact form
	// does not check the token's length, the general one does.)
	oldResponse := "{ " + regexp.MustCompile(`"session":"[^"]*"`).ReplaceAllString(string(res.Replies[0])[1:],
		`"session":"`+strings.Repeat("s", 65)+`"`)
	for _, line := range []struct{ text, code string }{{old, "bad_value"}, {oldResponse, "bad_message"}} {
		if _, err := newCRDT(t, "relay").Receive([]byte(line.text)); crdt.Code(err) != line.code {
			t.Fatalf("today's engine takes %.100s with %v, want %s: the test needs another line", line.text, err, line.code)
		}
	}
	var log bytes.Buffer
	for i, m := range msgs {
		switch i {
		case 1:
			log.WriteString(old + "\n")
		case 3:
			log.WriteString(oldResponse + "\n")
		}
		log.Write(m)
		log.WriteByte('\n')
	}
	writeFile(t, filepath.Join(dir, "m.log"), log.String())

	s, logs := mustOpenStored(t, storeOptions{Dir: dir}, "m")
	sameState(t, "replayed around the refused line", s.r.State(), alice.State())
	if !strings.Contains(logs.String(), "skipping a log line") || !strings.Contains(logs.String(), "bad_value") ||
		!strings.Contains(logs.String(), "bad_message") {
		t.Fatalf("no warning about the skipped line:\n%s", logs)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, _ = mustOpenStored(t, storeOptions{Dir: dir}, "m")
	defer s.Close()
	sameState(t, "reopened", s.r.State(), alice.State())
}

// TestMapReopensWhenCompactionFails: a map whose log cannot be folded into a new snapshot
// when it is opened (a full disk, a failing device) opens from its log all the same, the
// damaged tail of an interrupted write cut off; what it takes then is logged after the
// log's last whole line, and a later compaction folds it all.
func TestMapReopensWhenCompactionFails(t *testing.T) {
	dir := t.TempDir()
	alice := newCRDT(t, "alice")
	msgs := edits(t, alice, "a")
	writeFile(t, filepath.Join(dir, "m.log"), string(bytes.Join(msgs, []byte("\n")))+"\n"+
		`{"kind":"OperationMessage","sender":"alice","verb":"upd`) // a crash in the middle of a write
	unblock := blockSnapshot(t, dir, "m")

	s, logs := mustOpenStored(t, storeOptions{Dir: dir}, "m")
	sameState(t, "opened without compaction", s.r.State(), alice.State())
	if !strings.Contains(logs.String(), "compacting") {
		t.Fatalf("no log line about the failed compaction:\n%s", logs)
	}
	if _, err := alice.Update("map", `{}`, "properties.name", `"after"`); err != nil {
		t.Fatal(err)
	}
	checkAll(t, s, alice.Flush())
	crash(t, s)

	s, _ = mustOpenStored(t, storeOptions{Dir: dir}, "m") // still blocked: the log replays
	sameState(t, "reopened after a crash", s.r.State(), alice.State())
	unblock()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := fileSize(t, filepath.Join(dir, "m.log")); n != 0 {
		t.Fatalf("log of %d bytes after a compaction", n)
	}
	s, _ = mustOpenStored(t, storeOptions{Dir: dir}, "m")
	defer s.Close()
	sameState(t, "reopened from the snapshot", s.r.State(), alice.State())
}

// TestFailedCompactionWaitsForTheNextTrigger: a compaction that fails is retried after
// another CompactEvery messages or CompactBytes bytes, not at every message (each attempt
// writes the whole map).
func TestFailedCompactionWaitsForTheNextTrigger(t *testing.T) {
	dir := t.TempDir()
	so := storeOptions{Dir: dir, CompactEvery: 1000, CompactBytes: 2000}
	s, logs := mustOpenStored(t, so, "m")
	defer s.Close()
	blockSnapshot(t, dir, "m")
	alice := newCRDT(t, "alice")
	var sent int64
	for i := range 40 {
		if _, err := alice.Update("map", `{}`, "properties.name", fmt.Sprintf(`"name %d"`, i)); err != nil {
			t.Fatal(err)
		}
		for _, m := range alice.Flush() {
			sent += int64(len(m)) + 1
			checkAll(t, s, [][]byte{m})
		}
	}
	tries := strings.Count(logs.String(), `msg=compacting`)
	if want := sent / so.CompactBytes; tries < 1 || int64(tries) > want {
		t.Fatalf("%d compactions tried for %d log bytes, want 1 to %d (one per %d bytes)", tries, sent, want, so.CompactBytes)
	}
}

// TestMapOverTheSnapshotLimitReopens: a map grown past what a snapshot holds (4 ×
// MaxMessageBytes) cannot be compacted any more; its log keeps everything, and it reopens
// from it, with the clock drift guard back on.
func TestMapOverTheSnapshotLimitReopens(t *testing.T) {
	dir := t.TempDir()
	lim := crdt.DefaultLimits()
	lim.MaxMessageBytes = 2048
	so := storeOptions{Dir: dir, CompactEvery: 5, Replica: crdt.Options{Limits: lim}}
	s, logs := mustOpenStored(t, so, "m")
	alice := newCRDT(t, "alice")
	for i := range 30 {
		if _, err := alice.Upsert("feature", fmt.Sprintf(`{"id":"f%d","layerId":"L"}`, i),
			fmt.Sprintf(`{"type":"Feature","properties":{"note":"%s"}}`, strings.Repeat("x", 400))); err != nil {
			t.Fatal(err)
		}
		checkAll(t, s, alice.Flush())
	}
	if _, err := s.r.Snapshot(); crdt.Code(err) != "too_large" {
		t.Fatalf("the map's snapshot fits (%v): the test needs a larger map", err)
	}
	if !strings.Contains(logs.String(), "compacting") {
		t.Fatalf("no failed compaction logged:\n%s", logs)
	}
	if err := s.Close(); crdt.Code(err) != "too_large" {
		t.Fatalf("Close: %v, want the failed compaction", err)
	}

	s, logs = mustOpenStored(t, so, "m")
	defer s.Close()
	sameState(t, "reopened from its log", s.r.State(), alice.State())
	future := fmt.Sprintf(`{"hlc":"%d:0:mallory","kind":"OperationMessage","metadata":{"id":"fm","layerId":"L"},`+
		`"sender":"mallory","seq":1,"subject":"feature","value":{"type":"Feature"},"verb":"upsert"}`,
		time.Now().Add(time.Hour).UnixMilli())
	if _, err := s.Check([]byte(future)); crdt.Code(err) != "clock_drift" {
		t.Fatalf("a clock an hour ahead: %v, want clock_drift", err)
	}
}

// TestCompactionCrashAtEveryStep: the files a crash leaves at each step of a compaction
// (the temporary snapshot written, or torn; renamed but the log not truncated; the log
// truncated) each reopen to the state the peers saw.
func TestCompactionCrashAtEveryStep(t *testing.T) {
	base := t.TempDir()
	so := storeOptions{Dir: base, CompactEvery: 1 << 20, CompactBytes: 1 << 40}
	alice := newCRDT(t, "alice")
	s, _ := mustOpenStored(t, so, "m")
	checkAll(t, s, edits(t, alice, "a"))
	if err := s.Close(); err != nil { // the old snapshot
		t.Fatal(err)
	}
	s, _ = mustOpenStored(t, so, "m")
	checkAll(t, s, edits(t, alice, "b"))
	for i := range 20 { // a marker dragged: superseded operations, dropped by the compaction
		if _, err := alice.Update("feature", `{"id":"f1-a","layerId":"L-a"}`, "geometry",
			fmt.Sprintf(`{"type":"Point","coordinates":[%d,1]}`, i)); err != nil {
			t.Fatal(err)
		}
		checkAll(t, s, alice.Flush())
	}
	crash(t, s)
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(base, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	oldSnap, log := read("m.snapshot"), read("m.log")
	s, _ = mustOpenStored(t, storeOptions{Dir: base}, "m") // compacts: the new snapshot
	sameState(t, "compacted", s.r.State(), alice.State())
	crash(t, s)
	newSnap := read("m.snapshot")
	if newSnap == oldSnap || len(newSnap) == 0 {
		t.Fatal("the compaction wrote no new snapshot")
	}

	want := alice.State()
	for _, step := range []struct {
		name              string
		snap, tmp, log    string
		tmpIsLeftOnReopen bool
	}{
		{name: "temporary snapshot written", snap: oldSnap, tmp: newSnap, log: log},
		{name: "temporary snapshot torn", snap: oldSnap, tmp: newSnap[:len(newSnap)/2], log: log},
		{name: "temporary snapshot empty", snap: oldSnap, tmp: "\x00", log: log},
		{name: "renamed, log not truncated", snap: newSnap, log: log},
		{name: "log truncated", snap: newSnap, log: ""},
	} {
		t.Run(step.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "m.snapshot"), step.snap)
			writeFile(t, filepath.Join(dir, "m.log"), step.log)
			if step.tmp != "" {
				writeFile(t, filepath.Join(dir, "m.snapshot.tmp"), step.tmp)
			}
			s, _ := mustOpenStored(t, storeOptions{Dir: dir}, "m")
			sameState(t, "reopened", s.r.State(), want)
			bob := newCRDT(t, "bob")
			if _, err := bob.Update("map", `{}`, "properties.name", `"after `+step.name+`"`); err != nil {
				t.Fatal(err)
			}
			checkAll(t, s, bob.Flush())
			after := s.r.State()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s, _ = mustOpenStored(t, storeOptions{Dir: dir}, "m")
			defer s.Close()
			sameState(t, "reopened again", s.r.State(), after)
		})
	}
}

// TestEmptySnapshotRefusesTheMap: a zero-length snapshot is never written (written whole and
// fsync'd before it is renamed); one means the disk lost data, and the log since it is not the
// whole map: the map is refused, its files left as they are, rather than opened with what the
// log holds and compacted over.
func TestEmptySnapshotRefusesTheMap(t *testing.T) {
	dir := t.TempDir()
	alice := newCRDT(t, "alice")
	writeFile(t, filepath.Join(dir, "m.snapshot"), "")
	log := string(bytes.Join(edits(t, alice, "a"), []byte("\n"))) + "\n"
	writeFile(t, filepath.Join(dir, "m.log"), log)
	if _, err := openStored(t, storeOptions{Dir: dir}, "m", &syncBuffer{}); err == nil || !strings.Contains(err.Error(), "m.snapshot") {
		t.Fatalf("opening with an empty snapshot: %v, want an error naming m.snapshot", err)
	}
	if got := fileSize(t, filepath.Join(dir, "m.log")); got != int64(len(log)) {
		t.Fatalf("the log changed to %d bytes", got)
	}
}
