package crdt

// A randomized test of replicas with different limits (doc.go, "Sync": "A replica holds no
// peer's operation larger than its own edits may be"). Five replicas, two of 16 KiB
// messages, two of 64 KiB, one of the default limits, each with its own sync page (1 to 4
// operations, or the default), edit (values near and over the smaller limits, batches near
// them), flush, deliver live messages in any order with duplicates, sync with each other in
// both directions (paged), join late, reload from their snapshots (a larger replica's
// snapshot restored with 16 KiB limits too), and compact.
//
// What the rule promises, and the test asserts:
//   - nothing panics, and the only error is too_large: a local edit over the replica's own
//     limit (it changes nothing), a live message holding an operation whose text (its
//     OperationMessage less kind and sender) is over the receiver's limit, or itself over
//     it — exactly those; a sync message is never refused (a request and a compact response
//     say their writer's limit, and the pages to it are made to it);
//   - every sync exchange ends (its messages are bounded);
//   - a "withheld" clock never names an operation the asker held (as its request's vector
//     says), and at the end a replica's vector claims no operation within its limit that
//     it does not hold, unless that operation is superseded there (adding it to the replay
//     of what it holds changes nothing);
//   - at the end, after every replica has flushed, taken its live messages and synced with
//     every other: replicas of the same limits hold the same state; each holds no operation
//     over its limit (but those a restore gave it, and a batch over it that came within it,
//     without the sub-operations its sender held superseded), and its state is the replay
//     of what it holds; and it holds every operation within its limit that another replica
//     holds within its own and has not superseded (that replica sends it), unless it is
//     superseded here.
//
// Not promised, so not asserted: the replay of every operation within a replica's limit.
// An operation superseded by one over its limit, at every replica that holds it, reaches it
// from none (superseded operations are not sent), and a replica withholds what it holds
// over its own limit (restored with smaller limits) from every peer, whatever the peer's
// limit: its pages stay within its own.
//
// A failure prints its seed and the steps before it: -mlfirst=SEED runs from it, -mltail=N
// prints more steps.

import (
	"flag"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mapcrdt/mapcrdt/hlc"
	"github.com/tidwall/gjson"
)

var (
	mlFirst = flag.Int("mlfirst", 0, "the first seed of TestMixedLimits")
	mlTail  = flag.Int("mltail", 15, "how many steps a failure of TestMixedLimits prints")
)

// mlOp is an operation some replica flushed: its message and its text's length, the
// measure of the rule.
type mlOp struct {
	msg  []byte
	ts   hlc.Timestamp
	size int
}

var mlDebug func(*mlRun, int)

type mlRun struct {
	t      *testing.T
	seed   int
	rng    *rand.Rand
	wall   *hlc.ManualClock
	limits []int // per replica: its Limits.MaxMessageBytes
	pages  []int
	reps   []*Replica
	inbox  [][][]byte
	ops    []mlOp
	byTS   map[hlc.Timestamp]int // ops index
	extra  []map[hlc.Timestamp]bool
	queued []bool // restored with smaller limits, with edits in its outbox
	events []string
}

func (m *mlRun) fatalf(format string, args ...any) {
	m.t.Helper()
	tail := m.events[max(0, len(m.events)-*mlTail):]
	m.t.Fatalf("seed %d: "+format+"\nlast steps:\n  %s", append([]any{m.seed}, append(args, strings.Join(tail, "\n  "))...)...)
}

func (m *mlRun) event(s string) { m.events = append(m.events, s) }

func (m *mlRun) opts(i, limit int) Options {
	opts := DefaultOptions()
	opts.PeerID, opts.Wall = "p"+strconv.Itoa(i), m.wall
	opts.Limits.MaxMessageBytes = limit
	if m.pages[i] > 0 {
		opts.SyncPage = m.pages[i]
	}
	return opts
}

func (m *mlRun) join(i int) {
	r, err := NewReplica(m.opts(i, m.limits[i]))
	if err != nil {
		m.t.Fatal(err)
	}
	m.reps[i], m.extra[i] = r, map[hlc.Timestamp]bool{}
}

func (m *mlRun) joined() []int {
	var out []int
	for i, r := range m.reps {
		if r != nil {
			out = append(out, i)
		}
	}
	return out
}

// bigValue is a string value of about one of the limits, a little under or over.
func (m *mlRun) bigValue() string {
	base := []int{16 << 10, 64 << 10}[m.rng.IntN(2)]
	return kitText("x", base-400+m.rng.IntN(800))
}

func (m *mlRun) edit() Edit {
	o := randObjects[m.rng.IntN(len(randObjects))]
	e := Edit{Subject: o.sub, Metadata: o.meta}
	switch k := m.rng.IntN(10); {
	case k < 6:
		e.Verb, e.Key, e.Value = VerbUpdate, randPaths[m.rng.IntN(len(randPaths))], randValue(m.rng)
		if m.rng.IntN(3) == 0 {
			e.Value = m.bigValue()
		}
	case k < 7:
		e.Verb, e.Key = VerbUpdate, randPaths[m.rng.IntN(len(randPaths))]
	case k < 9:
		e.Verb, e.Value = VerbUpsert, randObjectValue(m.rng)
	default:
		e.Verb = VerbDelete
	}
	return e
}

// overLimit says whether a live message holds an operation over limit.
func (m *mlRun) overLimit(msg []byte, limit int) bool {
	ts := hlc.MustParse(gjson.GetBytes(msg, "hlc").String())
	k, ok := m.byTS[ts]
	if !ok {
		m.fatalf("a message never flushed: %s", msg)
	}
	return m.ops[k].size > limit
}

func (m *mlRun) flush(i int) {
	for _, msg := range m.reps[i].Flush() {
		ts := hlc.MustParse(gjson.GetBytes(msg, "hlc").String())
		text := strings.Replace(string(msg), `"kind":"OperationMessage",`, "", 1)
		text = strings.Replace(text, `"sender":"`+m.reps[i].PeerID()+`",`, "", 1)
		if len(text) > m.limits[i] && m.queued[i] {
			// An edit queued under larger limits, restored with smaller ones: sent as it
			// is, held as one a restore gave it.
			m.extra[i][ts] = true
		} else if len(text) > m.limits[i] {
			m.fatalf("p%d flushed an operation of %d bytes, over its limit %d", i, len(text), m.limits[i])
		}
		m.byTS[ts] = len(m.ops)
		m.ops = append(m.ops, mlOp{msg: msg, ts: ts, size: len(text)})
		for _, j := range m.joined() {
			if j != i {
				m.inbox[j] = append(m.inbox[j], msg)
			}
		}
	}
}

// localEdit applies e on replica i: a refusal is too_large and changes nothing.
func (m *mlRun) localEdit(i int, e Edit) {
	r := m.reps[i]
	state, pending, logLen := r.State(), r.Pending(), r.LogLen()
	_, err := r.Apply(e)
	if err == nil {
		return
	}
	if Code(err) != "too_large" {
		m.fatalf("p%d: edit: %v", i, err)
	}
	mlDone.edits++
	if r.State() != state || r.Pending() != pending || r.LogLen() != logLen {
		m.fatalf("p%d: a refused edit changed the replica", i)
	}
}

func (m *mlRun) receive(i int, msg []byte) {
	r := m.reps[i]
	state, vv := r.State(), r.Vector()
	_, err := r.Receive(msg)
	// Refused: an operation over the limit, or a message over it (its kind and sender on
	// top of the operation's text: a peer of larger limits can make an operation within
	// the limit whose message is not, taken by sync only).
	over := m.overLimit(msg, r.opts.Limits.MaxMessageBytes) || len(msg) > r.opts.Limits.MaxMessageBytes
	switch {
	case err == nil && over:
		m.fatalf("p%d (limit %d) took a message over its limit: %.200s", i, r.opts.Limits.MaxMessageBytes, msg)
	case err != nil && !over:
		m.fatalf("p%d receives %.300s: %v", i, msg, err)
	case err != nil && (r.State() != state || !kitEqualVV(r.Vector(), vv)):
		m.fatalf("p%d: a refused message changed the replica", i)
	case err != nil:
		mlDone.live++
	}
}

// held says whether replica r holds (or held: compacted, superseded) the operation ts: its
// vector covers it, or its log has it.
func mlHeld(r *Replica, o mlOp, seq int) bool {
	if r.Vector()[o.ts.Peer] >= uint64(seq) {
		return true
	}
	for _, x := range r.log.ops {
		if x.ts == o.ts {
			return true
		}
	}
	return false
}

func (m *mlRun) seqOf(o mlOp) int { return int(gjson.GetBytes(o.msg, "seq").Int()) }

// checkClaims: replica i's vector claims no operation within its limit that it never took
// and that would change its state: one is claimed only as superseded — left out of a page
// by a responder that held what supersedes it (doc.go, "Sync", "Compaction") — so that
// adding it to the replay of what it holds (held, whose replay is want) changes nothing.
// (One over its limit it may claim, superseded by another over its limit: it takes neither.)
func (m *mlRun) checkClaims(i int, held [][]byte, took map[hlc.Timestamp]bool, want string) {
	vv := m.reps[i].Vector()
	for _, x := range m.ops {
		if took[x.ts] || x.size > m.limits[i] || vv[x.ts.Peer] < uint64(m.seqOf(x)) {
			continue
		}
		o := newOracle(m.t)
		for _, msg := range append(held, x.msg) {
			o.add(msg)
		}
		if o.state() != want {
			m.fatalf("p%d (limit %d) claims %s (%d bytes), which it never took and does not supersede", i, m.limits[i], x.ts, x.size)
		}
	}
}

// exchange routes a sync exchange to its end: every message of it is taken, whatever the
// limits of the two.
func (m *mlRun) exchange(req []byte) {
	queue := [][]byte{req}
	asked := map[string]gjson.Result{} // the vector of each one's last request
	for n := 0; len(queue) > 0; n++ {
		if n > 500 {
			m.fatalf("a sync exchange does not end")
		}
		msg := queue[0]
		queue = queue[1:]
		to := gjson.GetBytes(msg, "recipient").String()
		from := gjson.GetBytes(msg, "sender").String()
		i, _ := strconv.Atoi(strings.TrimPrefix(to, "p"))
		j, _ := strconv.Atoi(strings.TrimPrefix(from, "p"))
		r := m.reps[i]
		if gjson.GetBytes(msg, "message.verb").String() == "ListOperationsRequest" {
			asked[from] = gjson.GetBytes(msg, "message.vector")
		}
		for _, w := range gjson.GetBytes(msg, "message.withheld").Array() {
			mlDone.withheld++
			ts := hlc.MustParse(w.String())
			k, ok := m.byTS[ts]
			if !ok {
				m.fatalf("withheld names %s, never flushed", ts)
			}
			// What the asker holds, as its request said it (its vector; a push-back's
			// withheld answers no request): one it holds above a hole in its origin's seqs
			// it lacks to the responder, which sends such operations again too.
			if v, ok := asked[to]; ok && v.Get(gjson.Escape(ts.Peer)).Int() >= int64(m.seqOf(m.ops[k])) {
				m.fatalf("p%d's page to p%d withholds %s, which p%d holds", j, i, ts, i)
			}
		}
		res, err := r.Receive(msg)
		if err != nil { // each says its limit: its peer pages to it, and withholds what is over it
			m.fatalf("p%d (limit %d) receives p%d's (limit %d) %.300s: %v", i, r.opts.Limits.MaxMessageBytes, j,
				m.reps[j].opts.Limits.MaxMessageBytes, msg, err)
		}
		m.event("    p" + strconv.Itoa(i) + " takes p" + strconv.Itoa(j) + "'s " + gjson.GetBytes(msg, "message.verb").String() +
			" vector " + gjson.GetBytes(msg, "message.vector").Raw + " more " + gjson.GetBytes(msg, "message.more").Raw +
			" withheld " + gjson.GetBytes(msg, "message.withheld").Raw + " pushBack " + gjson.GetBytes(msg, "message.pushBack").Raw)
		queue = append(queue, res.Replies...)
	}
}

func (m *mlRun) reload(i int) {
	r := m.reps[i]
	if r.InBatch() {
		return
	}
	snap, err := r.Snapshot()
	if Code(err) == "too_large" {
		return
	}
	if err != nil {
		m.fatalf("p%d: snapshot: %v", i, err)
	}
	limit := m.limits[i]
	if limit > 16<<10 && m.rng.IntN(3) == 0 {
		limit = 16 << 10 // a larger replica's snapshot restored with smaller limits
	}
	nr, err := NewReplicaFromSnapshot(m.opts(i, limit), snap)
	if Code(err) == "too_large" && limit < m.limits[i] {
		return // a snapshot is taken up to 4 × the message limit: more than the smaller one takes
	}
	if err != nil {
		m.fatalf("p%d: restore with limit %d: %v", i, limit, err)
	}
	if nr.State() != r.State() {
		m.fatalf("p%d: restored, another state", i)
	}
	// What it holds over its new limit it keeps: the operations its vector claims or its
	// log has.
	for _, o := range m.ops {
		if o.size > limit && (m.extra[i][o.ts] || mlHeld(r, o, m.seqOf(o))) {
			m.extra[i][o.ts] = true
		}
	}
	if limit < m.limits[i] && (r.Pending() > 0 || r.InBatch()) {
		m.queued[i] = true
	}
	if limit < m.limits[i] {
		mlDone.restores++
	}
	m.reps[i], m.limits[i] = nr, limit
	m.event("p" + strconv.Itoa(i) + " restored with limit " + strconv.Itoa(limit))
}

// TestMixedLimits: see the top of this file.
func TestMixedLimits(t *testing.T) {
	mlDone = struct{ edits, live, withheld, restores int }{}
	n := *seeds / 20 // 100 by default
	for seed := *mlFirst; seed < *mlFirst+n; seed++ {
		runMixedLimits(t, seed)
	}
	if n >= 50 && (mlDone.edits == 0 || mlDone.live == 0 || mlDone.withheld == 0 || mlDone.restores == 0) {
		t.Fatalf("%+v: the test tests nothing", mlDone)
	}
	t.Logf("refused %d local edits and %d live messages, withheld %d operations, restored %d replicas with smaller limits",
		mlDone.edits, mlDone.live, mlDone.withheld, mlDone.restores)
}

// mlDone counts what the seeds did: a run that never refuses, withholds or restores with
// smaller limits tests nothing.
var mlDone struct{ edits, live, withheld, restores int }

func runMixedLimits(t *testing.T, seed int) {
	defer func(f func(int) int) { randIntN = f }(randIntN)
	randIntN = rand.New(rand.NewPCG(uint64(seed), 7332)).IntN // the origin suffixes of restored replicas
	rng := rand.New(rand.NewPCG(uint64(seed), 7331))
	m := &mlRun{t: t, seed: seed, rng: rng, wall: hlc.NewManualClock(1_700_000_000_000),
		limits: []int{16 << 10, 16 << 10, 64 << 10, 64 << 10, DefaultLimits().MaxMessageBytes},
		byTS:   map[hlc.Timestamp]int{}}
	n := len(m.limits)
	m.reps, m.inbox, m.extra, m.queued = make([]*Replica, n), make([][][]byte, n), make([]map[hlc.Timestamp]bool, n), make([]bool, n)
	for range n {
		if rng.IntN(2) == 0 {
			m.pages = append(m.pages, 1+rng.IntN(4))
		} else {
			m.pages = append(m.pages, 0)
		}
	}
	for _, i := range []int{0, 2, 4} {
		m.join(i)
	}
	steps := 40 + rng.IntN(40)
	for step := 0; step < steps; step++ {
		m.wall.Advance(1 + int64(rng.IntN(3)))
		j := m.joined()
		i := j[rng.IntN(len(j))]
		r := m.reps[i]
		switch k := rng.IntN(40); {
		case k < 12:
			e := m.edit()
			m.event("p" + strconv.Itoa(i) + " edits " + mmAny(e)[:min(len(mmAny(e)), 80)])
			m.localEdit(i, e)
		case k < 14:
			if r.InBatch() {
				m.event("p" + strconv.Itoa(i) + " commits its batch")
				kitNoErr(t, r.CommitBatch())
			} else {
				m.event("p" + strconv.Itoa(i) + " starts a batch")
				kitNoErr(t, r.StartBatch())
			}
		case k < 20:
			m.event("p" + strconv.Itoa(i) + " flushes")
			m.flush(i)
		case k < 28:
			if len(m.inbox[i]) == 0 {
				break
			}
			x := rng.IntN(len(m.inbox[i]))
			msg := m.inbox[i][x]
			if rng.IntN(4) != 0 {
				m.inbox[i] = slices.Delete(m.inbox[i], x, x+1)
			}
			if rng.IntN(5) == 0 {
				m.event("p" + strconv.Itoa(i) + " loses a message")
				break
			}
			m.event("p" + strconv.Itoa(i) + " receives " + gjson.GetBytes(msg, "hlc").String())
			m.receive(i, msg)
		case k < 33:
			o := j[rng.IntN(len(j))]
			if o == i {
				break
			}
			m.event("p" + strconv.Itoa(i) + " syncs with p" + strconv.Itoa(o))
			if rng.IntN(4) == 0 {
				m.exchange(r.ProbeRequest("p" + strconv.Itoa(o)))
			} else {
				m.exchange(r.SyncRequest("p" + strconv.Itoa(o)))
			}
		case k < 35:
			var late int
			for late = 0; late < n && m.reps[late] != nil; late++ {
			}
			if late == n {
				break
			}
			m.event("p" + strconv.Itoa(late) + " joins from p" + strconv.Itoa(i))
			m.join(late)
			m.exchange(m.reps[late].SyncRequest("p" + strconv.Itoa(i)))
		case k < 37:
			m.event("p" + strconv.Itoa(i) + " compacts")
			r.Compact()
		default:
			m.reload(i)
		}
	}
	m.finish()
}

// finish flushes and delivers everything, syncs every pair, and checks the promise.
func (m *mlRun) finish() {
	m.event("the end")
	joined := m.joined()
	for _, i := range joined {
		if m.reps[i].InBatch() {
			kitNoErr(m.t, m.reps[i].CommitBatch())
		}
		m.flush(i)
	}
	for _, i := range joined {
		for _, msg := range m.inbox[i] {
			m.receive(i, msg)
		}
		m.inbox[i] = nil
	}
	for round := 0; round < 2; round++ {
		for _, i := range joined {
			for _, j := range joined {
				if i != j {
					m.exchange(m.reps[i].SyncRequest("p" + strconv.Itoa(j)))
				}
			}
		}
	}
	for _, i := range joined {
		r := m.reps[i]
		// Its state is the replay of what it holds (a batch as it holds it: without the
		// sub-operations superseded here or at its sender).
		var held [][]byte
		took := map[hlc.Timestamp]bool{}
		for _, x := range r.log.ops {
			if k := m.byTS[x.ts]; m.ops[k].size > m.limits[i] && !m.extra[i][x.ts] && x.verb != VerbBatch {
				m.fatalf("p%d (limit %d) holds %s, of %d bytes", i, m.limits[i], x.ts, m.ops[k].size)
			}
			held, took[x.ts] = append(held, appendOp(nil, x, "")), true
		}
		o := newOracle(m.t)
		for _, msg := range held {
			o.add(msg)
		}
		want := o.state()
		if got := norm(m.t, r.State()); got != want {
			m.fatalf("p%d (limit %d): its state is not the replay of its log:\n  got  %.600s\n  want %.600s", i, m.limits[i], got, want)
		}
		// It took every operation within its limit that a peer holds within the peer's
		// own (not superseded there: that it sends), or it is superseded here.
		for _, x := range m.ops {
			if took[x.ts] || x.size > m.limits[i] {
				continue
			}
			for _, h := range joined {
				if h == i || x.size > m.limits[h] {
					continue
				}
				if k, ok := m.reps[h].log.find(x.ts); ok && m.reps[h].log.ops[k].live != 0 {
					o := newOracle(m.t)
					for _, msg := range append(held, x.msg) {
						o.add(msg)
					}
					if o.state() != want {
						m.fatalf("p%d (limit %d) lacks %s (%d bytes), which p%d (limit %d) holds", i, m.limits[i], x.ts, x.size, h, m.limits[h])
					}
					break
				}
			}
		}
		m.checkClaims(i, held, took, want)
	}
	for _, i := range joined {
		r := m.reps[i]
		for _, j := range joined {
			if j > i && m.limits[j] == m.limits[i] && len(m.extra[i]) == 0 && len(m.extra[j]) == 0 && r.State() != m.reps[j].State() {
				m.fatalf("p%d and p%d, of the same limits, differ:\n  %s\n  %s", i, j, r.State(), m.reps[j].State())
			}
		}
	}
}
