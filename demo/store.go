package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mapcrdt/mapcrdt/crdt"
)

// The relay's replica of a map is a crdt.Replica with peer id "relay",
// persisted in the data directory as two files per map:
//
//	<map>.snapshot  the replica's crdt snapshot (crdt.Replica.Snapshot), JSON
//	<map>.log       every message the replica accepted since that snapshot,
//	                one JSON text per line, in the order received
//
// Durability: Check or PeerMessage appends a message to the log, and the
// relay has it fsync'd (GroupCommitter: Sync, Synced) before it broadcasts it
// or answers it; the messages appended meanwhile, by any peer of the room (the
// rest of one peer's burst too), share that fsync (group commit). Whatever any peer has seen from the
// relay survives a crash or power loss. A failed fsync cuts the log back to
// its last fsync'd byte and reloads the replica: every message appended since
// is refused (errStore), as one that could not be written is. If the files cannot be
// read back then, the replica refuses every message until its room closes.
// A message is written only after the replica accepted it, so a rejected one
// (malformed, far-future clock, …) never reaches the disk.
//
// What is logged: every accepted OperationMessage and SavedMessage, and every
// PeerMessage addressed to the relay except ListOperationsRequest (which
// changes nothing): a ListOperationsResponse brings operations and a version
// vector.
//
// Forwarding: the operations a ListOperationsResponse brings that the replica
// did not hold (a newcomer's offline edits, in its answer to the greeting
// probe) are passed on to the other peers of the room, in uMap's plain form
// (crdt.Replica.ReceiveTaught, which uMap's client reads too), without a
// vector (PeerMessageForward, forwardable): the peers online get them even if
// the newcomer never answers their own probes.
//
// Opening replays the log over the snapshot. Receiving is idempotent, so a
// log that overlaps its snapshot (a crash between the two steps of a
// compaction) replays to the same state. The replay runs with the clock
// drift guard off, because the messages were already accepted: a wall clock
// that stepped back between two runs must not reject them now. A line is
// read one of three ways:
//
//   - it does not parse as JSON, and is the last: a crash in the middle of a
//     write. It is ignored with a warning (the message was never fsync'd, so
//     never broadcast).
//   - it does not parse as JSON, and is not the last: the disk lost data. The
//     map is refused (every join fails) until someone repairs the file.
//   - it parses, but the engine refuses it: an earlier engine accepted it,
//     and this one validates more strictly (a member name escaping a lone
//     UTF-16 surrogate is bad_value now). It is skipped with a warning, and
//     dropped at the next compaction: one message the engine no longer
//     takes must not cost the map.
//
// An empty (zero-length) or unreadable snapshot refuses the map too: it is
// never written so (written whole and fsync'd before it is renamed), and the
// log since it is not the whole map.
//
// Compaction: crdt.Replica.Compact (superseded operations leave the
// replica's log), then the snapshot is written to <map>.snapshot.tmp,
// fsync'd, renamed over <map>.snapshot (atomic), the directory fsync'd, and
// only then the log truncated. A crash at any step leaves either the old
// snapshot and the whole log, or the new snapshot and a log it overlaps
// (or empty); a leftover <map>.snapshot.tmp is ignored, and overwritten by
// the next compaction. It runs when the map is opened with a non-empty log,
// every CompactEvery logged messages once the log holds an eighth of the
// snapshot's bytes, or CompactBytes log bytes, and on Close
// (when the room empties or the relay shuts down). A compaction that fails
// (a write error, a full disk, a map grown past what a snapshot holds: 4 ×
// Limits.MaxMessageBytes) leaves the log holding everything and is retried
// after as many messages or bytes again; one that fails as the map opens
// does not refuse it: the log's damaged last line, if any, is cut off, and
// new lines follow the whole ones. A map too large for a snapshot gets its
// drift guard back by replaying its log twice, the second time with the
// guard on: while the wall clock is behind a line (it stepped back more than
// MaxDrift), that map is refused, until the clock catches up.
//
// One relay process per data directory: nothing locks the files. Map names
// are file names: on a case-insensitive filesystem (macOS, Windows) the maps
// "Paris" and "paris" share their files, so the demo folds map names to lower
// case there (Options.FoldCase, caseInsensitiveDir): one room, one replica.

// caseInsensitiveDir reports whether file names in dir are case-insensitive: a file
// created there with upper-case letters is found under its lower-case name.
func caseInsensitiveDir(dir string) (bool, error) {
	f, err := os.CreateTemp(dir, ".CaseProbe-*")
	if err != nil {
		return false, err
	}
	name := f.Name()
	f.Close()
	defer os.Remove(name)
	st, err := os.Stat(name)
	if err != nil {
		return false, err
	}
	lower, err := os.Stat(filepath.Join(dir, strings.ToLower(filepath.Base(name))))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(st, lower), nil
}

// relayPeerID is the peer id of every relay replica.
const relayPeerID = "relay"

// storeOptions configure the crdt-backed replicas of a data directory.
type storeOptions struct {
	// Dir is the data directory (created if missing).
	Dir string
	// CompactEvery is how many logged messages trigger a compaction (default 1000), once
	// the log holds an eighth of the snapshot's bytes.
	CompactEvery int
	// CompactBytes is how many log bytes trigger a compaction (default 8 MiB).
	CompactBytes int64
	// Replica configures the crdt replicas (limits, drift guard, wall clock);
	// its PeerID is ignored: it is always "relay".
	Replica crdt.Options
	// Log receives storage events (default slog.Default()).
	Log *slog.Logger
	// syncLog makes the log's writes durable (default (*os.File).Sync); tests
	// replace it to watch or fail the fsyncs.
	syncLog func(*os.File) error
}

// newStoreFactory returns a ReplicaFactory opening crdt replicas persisted
// under o.Dir.
func newStoreFactory(o storeOptions) ReplicaFactory {
	if o.CompactEvery <= 0 {
		o.CompactEvery = 1000
	}
	if o.CompactBytes <= 0 {
		o.CompactBytes = 8 << 20
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.syncLog == nil {
		o.syncLog = (*os.File).Sync
	}
	if o.Replica.Limits == (crdt.Limits{}) {
		o.Replica.Limits = crdt.DefaultLimits()
	}
	o.Replica.PeerID = relayPeerID
	return func(mapName string) (Replica, error) { return openStore(o, mapName) }
}

// storeReplica is the Replica of one map: a crdt replica and its files.
type storeReplica struct {
	opts      storeOptions
	name      string
	snapPath  string
	logPath   string
	r         *crdt.Replica
	logFile   *os.File // opened O_APPEND
	lines     int      // messages in the log
	logBytes  int64
	compactAt int // lines at which to compact next
	// compactBytesAt is the log bytes at which to compact next.
	compactBytesAt int64
	// snapBytes is the snapshot's size: a compaction by count (compactAt) waits for a log
	// of an eighth of it. Each compaction writes the whole map: a large map compacted every
	// CompactEvery small messages wrote hundreds of times what it logged (a map of
	// 1,000,000 live paths: a ~50 MB snapshot and seconds of Compact and Snapshot, with the
	// room waiting, per 1,000 messages).
	snapBytes int64
	// synced is the log's bytes known durable; syncing is set from Sync to Synced,
	// syncTo the log's bytes when Sync was called.
	synced  int64
	syncing bool
	syncTo  int64
	// broken is set when the replica could not be reloaded after a storage failure
	// (reload): it may hold messages the files lost, so it answers and takes nothing
	// more, and Close does not compact it. The map's next open reads its files anew.
	broken bool
}

func openStore(o storeOptions, name string) (*storeReplica, error) {
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	s := &storeReplica{opts: o, name: name,
		snapPath: filepath.Join(o.Dir, name+".snapshot"),
		logPath:  filepath.Join(o.Dir, name+".log")}
	r, replayed, keep, err := s.load()
	if err != nil {
		return nil, err
	}
	s.r, s.lines = r, replayed
	_, statErr := os.Stat(s.logPath)
	created := errors.Is(statErr, fs.ErrNotExist)
	if s.logFile, err = os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err != nil {
		return nil, err
	}
	if created {
		if err := syncDir(o.Dir); err != nil {
			s.logFile.Close()
			return nil, err
		}
	}
	s.compactAt, s.compactBytesAt = o.CompactEvery, o.CompactBytes
	if fi, err := os.Stat(s.snapPath); err == nil {
		s.snapBytes = fi.Size()
	}
	// Fold a replayed log (and any damaged tail) into the snapshot now:
	// nothing is ever appended after a partial line.
	st, err := s.logFile.Stat()
	if err == nil && st.Size() > 0 {
		if cerr := s.compact(); cerr != nil {
			o.Log.Error("compacting", "map", name, "err", cerr)
			err = s.keepLog(keep)
		}
	}
	if err != nil {
		s.logFile.Close()
		return nil, err
	}
	o.Log.Info("map opened", "map", name, "replayed", replayed, "operations", s.r.LogLen())
	return s, nil
}

// load reads the snapshot (if any) and replays the log (if any) over it. It
// returns the replica, the log's lines, and how many of the log's bytes to keep
// if it is not compacted: all but a damaged last line.
func (s *storeReplica) load() (r *crdt.Replica, lines int, keep int64, err error) {
	snap, err := os.ReadFile(s.snapPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, 0, 0, err
	}
	logText, err := os.ReadFile(s.logPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, 0, 0, err
	}
	logLines := bytes.Split(logText, []byte("\n"))
	for len(logLines) > 0 && len(bytes.TrimSpace(logLines[len(logLines)-1])) == 0 {
		logLines = logLines[:len(logLines)-1]
	}
	if len(logLines) == 0 {
		r, err = s.fromSnapshot(s.opts.Replica, snap)
		return r, 0, int64(len(logText)), err
	}
	opts := s.opts.Replica
	opts.MaxDrift = time.Duration(math.MaxInt64) // accepted before: no drift guard on replay
	if r, keep, err = s.replay(opts, snap, logLines, int64(len(logText)), true); err != nil {
		return nil, 0, 0, err
	}
	// Back to the live options (drift guard on) through a snapshot, or, for a map
	// past what a snapshot holds, by replaying again with the guard on.
	if snap2, err := r.Snapshot(); err == nil {
		r, err = s.fromSnapshot(s.opts.Replica, snap2)
		return r, len(logLines), keep, err
	}
	r, keep, err = s.replay(s.opts.Replica, snap, logLines, int64(len(logText)), false)
	return r, len(logLines), keep, err
}

// replay has a replica made with opts from snap take the log's lines (of size bytes), and
// returns it and how many of the log's bytes to keep: all but a damaged last line. Only
// warn logs what it skips.
func (s *storeReplica) replay(opts crdt.Options, snap []byte, lines [][]byte, size int64, warn bool) (*crdt.Replica, int64, error) {
	r, err := s.fromSnapshot(opts, snap)
	if err != nil {
		return nil, 0, err
	}
	keep := size
	var at int64 // where line i starts
	for i, line := range lines {
		start := at
		at += int64(len(line)) + 1
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		_, err := r.Receive(line)
		switch {
		case err == nil:
		case crdt.Code(err) == "clock_drift":
			// Replayed with the guard on (a map too large for a snapshot), after the
			// wall clock stepped back: the clock catches up with the line, retry then.
			return nil, 0, fmt.Errorf("%s line %d is ahead of the wall clock, which stepped back: %w",
				filepath.Base(s.logPath), i+1, err)
		case json.Valid(line):
			// Written whole, and accepted then: an earlier engine took it, and this one
			// validates more strictly. The rest of the map must not be lost for it.
			if warn {
				s.opts.Log.Warn("skipping a log line the engine refuses (an earlier engine took it)",
					"map", s.name, "file", s.logPath, "line", i+1, "bytes", len(line), "err", err)
			}
		case i < len(lines)-1:
			return nil, 0, fmt.Errorf("%s line %d is damaged: %w", filepath.Base(s.logPath), i+1, err)
		default:
			if warn {
				s.opts.Log.Warn("ignoring the damaged last line of the log (an interrupted write)",
					"map", s.name, "file", s.logPath, "line", i+1, "bytes", len(line), "err", err)
			}
			keep = start
		}
	}
	return r, keep, nil
}

// keepLog makes the log, not compacted when the map was opened, one that lines can be
// appended to: its first keep bytes, ending with a line break, fsync'd.
func (s *storeReplica) keepLog(keep int64) error {
	if err := s.logFile.Truncate(keep); err != nil {
		return err
	}
	s.logBytes = keep
	if keep > 0 {
		last := make([]byte, 1)
		f, err := os.Open(s.logPath)
		if err != nil {
			return err
		}
		_, err = f.ReadAt(last, keep-1)
		f.Close()
		if err != nil {
			return err
		}
		if last[0] != '\n' {
			if _, err := s.logFile.Write([]byte("\n")); err != nil {
				return err
			}
			s.logBytes++
		}
	}
	s.compactAt, s.compactBytesAt = s.lines+s.opts.CompactEvery, s.logBytes+s.opts.CompactBytes
	s.synced = s.logBytes
	return s.logFile.Sync()
}

func (s *storeReplica) fromSnapshot(opts crdt.Options, snap []byte) (*crdt.Replica, error) {
	if snap == nil {
		return crdt.NewReplica(opts)
	}
	r, err := crdt.NewReplicaFromSnapshot(opts, snap)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(s.snapPath), err)
	}
	return r, nil
}

// ID returns "relay".
func (s *storeReplica) ID() string { return relayPeerID }

// Check has the crdt replica receive an OperationMessage or SavedMessage,
// then logs it. The replica's replies (a sync request when msg reveals a
// gap) go back to the sender.
func (s *storeReplica) Check(msg []byte) ([][]byte, error) {
	if s.broken {
		return nil, errStore
	}
	res, err := s.r.Receive(msg)
	if err != nil {
		return nil, err
	}
	if err := s.append(msg); err != nil {
		s.reload()
		return nil, err
	}
	return res.Replies, nil
}

// PeerMessage has the crdt replica receive a PeerMessage addressed to the
// relay: it answers a ListOperationsRequest with what the sender lacks, and
// takes in a ListOperationsResponse (pushing back what the sender lacks).
func (s *storeReplica) PeerMessage(msg []byte) ([][]byte, error) {
	replies, _, err := s.PeerMessageForward(msg)
	return replies, err
}

// PeerMessageForward is PeerMessage, and passes on to the room the operations
// a ListOperationsResponse brought that the replica did not hold: a response
// holding them in uMap's plain form (or, past the message limit or
// maxPlainGrowth times the response in that form, the response received), as
// forwardable writes it, goes to every other peer.
//
// That is how edits a peer made offline reach the peers online while it is
// connected: the relay's greeting probe brings them here, but the peers
// present get them only from their own probe of the newcomer (its
// ListPeersResponse), which it may leave unanswered (it leaves at once, or
// answers the relay first and drops). A peer present that gets both answers
// takes the edits twice (receiving is idempotent): a newcomer's offline
// edits cross the room twice. A response that brings nothing new (a newcomer
// without offline edits, the usual join) is not passed on.
func (s *storeReplica) PeerMessageForward(msg []byte) (replies, forward [][]byte, err error) {
	if s.broken {
		return nil, nil, errStore
	}
	// In uMap's plain form, which uMap's client reads too (the compact form made it
	// throw), and with what the replica learned from msg only.
	res, plain, taught, err := s.r.ReceiveTaught(msg, "")
	if err != nil {
		return nil, nil, err
	}
	learned := taught > 0
	if peerVerb(msg) != "ListOperationsRequest" {
		if err := s.append(msg); err != nil {
			s.reload()
			return nil, nil, err
		}
	}
	switch {
	case plain != nil && len(plain) <= maxPlainGrowth*len(msg):
		forward = [][]byte{forwardable(plain, relayPeerID)}
	case learned: // too large in the plain form
		forward = [][]byte{forwardable(msg, relayPeerID)}
	}
	return res.Replies, forward, nil
}

// maxPlainGrowth bounds the plain form of a forward against the response it
// comes from: the compact form writes an object's metadata and a peer id once,
// the plain form in every operation, so a response of many operations on one
// object with a large metadata (20 KB) grew 350 times, to every peer, as often
// as a peer sent one. A mapcrdt peer's answer grows up to ~6 times (a thousand
// one-number updates); one that would grow more is forwarded as received.
const maxPlainGrowth = 8

// Joined asks a peer that just joined for what the relay lacks: the peer
// may come back with edits made offline. The request is a probe (one way):
// its answer reaches PeerMessage and is pushed nothing back, since the peer
// catches up through its own request; a push-back too would send it the map
// twice.
func (s *storeReplica) Joined(peer string) [][]byte {
	if s.broken {
		return nil
	}
	return [][]byte{s.r.ProbeRequest(peer)}
}

// Close compacts the files if the log holds anything, and closes them. A map that
// holds nothing (no snapshot, an empty log) leaves no file: a client joining made-up
// map names, or a typo, must not fill the data directory with empty logs.
func (s *storeReplica) Close() error {
	var err error
	if s.lines > 0 && !s.broken {
		err = s.compact()
	}
	st, serr := s.logFile.Stat()
	if cerr := s.logFile.Close(); err == nil {
		err = cerr
	}
	if err != nil || serr != nil || st.Size() != 0 {
		return err
	}
	if _, err := os.Stat(s.snapPath); !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := os.Remove(s.logPath); err != nil {
		return err
	}
	return syncDir(s.opts.Dir)
}

// peerVerb returns the verb of a PeerMessage's message.
func peerVerb(msg []byte) string {
	var m struct {
		Message struct {
			Verb string `json:"verb"`
		} `json:"message"`
	}
	_ = json.Unmarshal(msg, &m) // the replica has accepted msg: it parses
	return m.Message.Verb
}

// errStore wraps a storage failure reported to a peer (its text is the close reason).
var errStore = errors.New("internal: the relay could not store the message")

// append writes msg as one log line, then compacts if due and no fsync is running (the
// compaction makes it durable). Sync and Synced fsync it, with whatever follows it.
func (s *storeReplica) append(msg []byte) error {
	line := make([]byte, 0, len(msg)+1)
	line = append(line, msg...)
	// The replica accepted msg, so a line break in it can only be
	// whitespace between JSON tokens: a space is the same JSON.
	for i, c := range line {
		if c == '\n' || c == '\r' {
			line[i] = ' '
		}
	}
	line = append(line, '\n')
	if _, err := s.logFile.Write(line); err != nil {
		s.opts.Log.Error("writing the log", "map", s.name, "err", err)
		s.dropTail()
		return errStore
	}
	s.lines++
	s.logBytes += int64(len(line))
	if !s.syncing {
		s.compactIfDue()
	}
	return nil
}

// compactIfDue compacts when the log has grown enough since the last compaction.
func (s *storeReplica) compactIfDue() {
	if s.lines >= s.compactAt && s.logBytes >= s.snapBytes/8 || s.logBytes >= s.compactBytesAt {
		if err := s.compact(); err != nil {
			// The log still holds everything: retry after as much again.
			s.opts.Log.Error("compacting", "map", s.name, "err", err)
			s.compactAt, s.compactBytesAt = s.lines+s.opts.CompactEvery, s.logBytes+s.opts.CompactBytes
		}
	}
}

// Unsynced returns how many of the log's bytes are not fsync'd yet.
func (s *storeReplica) Unsynced() int64 { return s.logBytes - s.synced }

// Sync returns the fsync of the log as written so far, to be run without the room's lock
// while more is appended; Synced takes its result. No compaction runs meanwhile: a log
// truncated under a running fsync would leave what it covers unknown.
func (s *storeReplica) Sync() func() error {
	s.syncing, s.syncTo = true, s.logBytes
	f, sync := s.logFile, s.opts.syncLog
	return func() error { return sync(f) }
}

// Synced ends a Sync. After an fsync that failed, the log is cut back to its last fsync'd
// byte, dropping every line written since (the sync's and those appended meanwhile), and
// the replica reloaded from the files, so that none of those messages, all refused
// (errStore), stays in it; as after a failed write. Else the compaction, if due, runs now.
func (s *storeReplica) Synced(err error) error {
	s.syncing = false
	if err != nil {
		s.opts.Log.Error("syncing the log", "map", s.name, "err", err)
		s.logBytes = s.synced
		s.dropTail()
		s.reload()
		return errStore
	}
	s.synced = s.syncTo
	s.compactIfDue()
	return nil
}

// dropTail cuts from the log what a failed append may have left of its line (logBytes is
// the log's length: compaction empties it, and the map opens compacted).
func (s *storeReplica) dropTail() {
	if err := s.logFile.Truncate(s.logBytes); err != nil {
		s.opts.Log.Error("cutting a failed write from the log", "map", s.name, "err", err)
	}
}

// reload puts the replica back to what the files hold, after it applied a message that
// could not be stored: the message is refused (its sender closed), so it must not stay in
// the replica, which would hand it to peers and lose it at the next restart. If the files
// cannot be read back, the replica is broken: it refuses every later message.
func (s *storeReplica) reload() {
	r, n, _, err := s.load()
	if err != nil {
		s.opts.Log.Error("reloading the map after a storage failure: refusing it until it is opened again",
			"map", s.name, "err", err)
		s.broken = true
		return
	}
	s.r, s.lines = r, n
}

// compact writes a new snapshot atomically, then empties the log.
func (s *storeReplica) compact() error {
	st := s.r.Compact()
	// Snapshot refuses one NewReplicaFromSnapshot would refuse (over 4 ×
	// MaxMessageBytes): a readable snapshot and log are never replaced by an
	// unreadable snapshot.
	snap, err := s.r.Snapshot()
	if err != nil {
		return err
	}
	if err := writeFileAtomic(s.snapPath, snap); err != nil {
		return err
	}
	s.snapBytes = int64(len(snap))
	if err := s.logFile.Truncate(0); err != nil {
		return err
	}
	// The log is empty from here, whatever the sync says: logBytes is where a failed
	// append cuts it back to (dropTail), and a stale one would pad it with zeros.
	logged := s.lines
	s.lines, s.logBytes, s.synced = 0, 0, 0
	if err := s.logFile.Sync(); err != nil {
		return err
	}
	s.opts.Log.Info("map compacted", "map", s.name, "logged", logged, "dropped", st.Ops,
		"operations", st.Remaining, "snapshot_bytes", len(snap))
	s.compactAt, s.compactBytesAt = s.opts.CompactEvery, s.opts.CompactBytes
	return nil
}

// writeFileAtomic replaces path with data: a temporary file in the same
// directory, fsync'd, renamed over path, and the directory fsync'd.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

// syncDir makes a directory's entries (a created or renamed file) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
