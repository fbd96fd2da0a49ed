package crdt

import (
	"bytes"
	"math/rand/v2"
	"strconv"
	"testing"
	"unsafe"

	"github.com/mapcrdt/mapcrdt/hlc"
	"github.com/tidwall/gjson"
)

// TestPagesMatchTheWholeLogWalk: the sync pages a replica answers a mapcrdt peer with —
// its requests for the first and each next page ("after"), and the push-back after a
// complete response — are byte for byte those of the way they were first worked out (the
// oracle below: the whole list of what the asker lacks, then the page cut from it and the
// vector lowered below every operation left out), on random logs: several origins (more
// than the few whose vector entries are cached), holes, clocks out of order, superseded
// operations, unpublished local edits and an open batch, seq-less operations (a peer's and
// the replica's own), pages cut by count and by bytes, vectors ahead, behind and of peers
// the log does not know.
func TestPagesMatchTheWholeLogWalk(t *testing.T) {
	for seed := range max(*seeds/10, 20) {
		pagingOracleRun(t, uint64(seed))
	}
}

func pagingOracleRun(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	wall := hlc.NewManualClock(kitT0)
	mods := []func(*Options){kitPaged(1 + rng.IntN(6))}
	big := rng.IntN(3) == 0
	if big {
		mods = append(mods, func(o *Options) { o.Limits = DefaultLimits(); o.Limits.MaxMessageBytes = 8 << 10 })
	}
	holder := kitReplica(t, "holder", wall, mods...)
	origins := make([]*Replica, 1+rng.IntN(7))
	for i := range origins {
		// Some origins' clocks lag: their operations land among older ones in the log.
		lag := hlc.NewManualClock(kitT0 - int64(rng.IntN(3))*40)
		origins[i] = kitReplica(t, "p"+strconv.Itoa(i), lag)
	}
	value := func() string {
		if big && rng.IntN(4) == 0 {
			return strconv.Quote(string(bytes.Repeat([]byte{'x'}, 500+rng.IntN(2000))))
		}
		return strconv.Itoa(rng.IntN(100))
	}
	edit := func(r *Replica) {
		meta := `{"id":"f` + strconv.Itoa(rng.IntN(6)) + `","layerId":"L1"}`
		if rng.IntN(10) == 0 {
			_, _ = r.Delete("feature", meta) // may fail on an unknown feature: no matter
			return
		}
		kitSet(t, r, meta, "properties.k"+strconv.Itoa(rng.IntN(3)), value())
	}
	for range 20 + rng.IntN(120) {
		wall.Advance(int64(rng.IntN(5)))
		switch k := rng.IntN(10); {
		case k < 6:
			o := origins[rng.IntN(len(origins))]
			o.opts.Wall.(*hlc.ManualClock).Advance(int64(1 + rng.IntN(5)))
			edit(o)
			for _, m := range o.Flush() {
				if rng.IntN(8) > 0 { // else a hole
					_, _ = holder.Receive(m)
				}
			}
		case k < 8:
			edit(holder)
			holder.Flush()
		default: // a seq-less operation: uMap's plain Journal, now and then with our own id
			peer := "umap"
			if rng.IntN(3) == 0 {
				peer = "holder"
			}
			_, _ = holder.Receive([]byte(`{"kind":"OperationMessage","sender":"umap","verb":"update","subject":"feature","metadata":{"id":"f` +
				strconv.Itoa(rng.IntN(6)) + `","layerId":"L1"},"key":"properties.k` + strconv.Itoa(rng.IntN(3)) + `","value":1,"hlc":"` +
				hlc.Timestamp{Wall: wall.NowMillis() - int64(rng.IntN(50)), Peer: peer}.String() + `"}`))
		}
	}
	switch rng.IntN(3) { // edits not published yet
	case 0:
		edit(holder)
		edit(holder)
	case 1:
		edit(holder)
		kitNoErr(t, holder.StartBatch())
		edit(holder)
	}
	names := []string{"holder", "umap", "stranger"}
	for _, o := range origins {
		names = append(names, o.PeerID())
	}
	vector := func(pushBack bool) string {
		vv := VersionVector{}
		for _, p := range names {
			if rng.IntN(4) == 0 {
				continue
			}
			top := holder.vec.vector()[p]
			if pushBack && p == "holder" {
				vv[p] = uint64(rng.IntN(int(top) + 1)) // not past what it made (see takeResponse)
				continue
			}
			vv[p] = uint64(rng.IntN(int(top) + 3))
		}
		return string(vv.AppendJSON(nil))
	}
	for range 4 {
		vec, pushBack := vector(false), rng.IntN(3) == 0
		session := ""
		if rng.IntN(4) > 0 {
			session = "s" + strconv.Itoa(rng.IntN(1000))
		}
		var after *hlc.Timestamp
		if rng.IntN(4) == 0 && len(holder.log.ops) > 0 { // a next page after any clock
			ts := holder.log.ops[rng.IntN(len(holder.log.ops))].ts
			ts.Wall += int64(rng.IntN(2))
			after = &ts
		}
		for pages := 0; ; pages++ {
			if pages > 1000 {
				t.Fatalf("seed %d: the pages do not end", seed)
			}
			req := `{"kind":"PeerMessage","sender":"asker","recipient":"holder","message":{`
			if after != nil {
				req += `"after":"` + after.String() + `",`
			}
			if pushBack {
				req += `"pushBack":true,`
			}
			if session != "" {
				req += `"session":"` + session + `",`
			}
			req += `"vector":` + vec + `,"verb":"ListOperationsRequest"}}`
			res := kitRecv(t, holder, []byte(req))
			vv, err := parseVector(vec)
			kitNoErr(t, err)
			want, partial := oraclePagedResponse(holder, "asker", oracleMissing(holder, vv, nil), after, pushBack, session)
			if len(res.Replies) != 1 || !bytes.Equal(res.Replies[0], want) {
				t.Fatalf("seed %d: %s\nis answered with %q,\nwant %s", seed, req, res.Replies, want)
			}
			if !partial {
				break
			}
			more, err := optClock(`"`+string(kitMoreOf(t, want))+`"`, "more")
			kitNoErr(t, err)
			after = more
			if rng.IntN(3) == 0 { // the asker took some of the page
				vec = vector(false)
			}
		}
	}
	// uMap's plain Journal: everything after its lastKnownHLC, if any, in one answer (with
	// the holder's vector only for everything).
	knowns := []string{""}
	if n := len(holder.log.ops); n > 0 {
		knowns = append(knowns, `"lastKnownHLC":"`+holder.log.ops[rng.IntN(n)].ts.String()+`",`)
	}
	for _, known := range knowns {
		req := `{"kind":"PeerMessage","sender":"umap","recipient":"holder","message":{` + known + `"verb":"ListOperationsRequest"}}`
		res := kitRecv(t, holder, []byte(req))
		lastKnown, err := optClock(gjsonGet(req, "message.lastKnownHLC"), "lastKnownHLC")
		kitNoErr(t, err)
		var vv VersionVector // the holder's, for everything
		if lastKnown != nil {
			vv = VersionVector{} // what follows lastKnownHLC: no vector, which would claim the rest
		}
		want := holder.response("umap", oracleMissing(holder, nil, lastKnown), false, false, vv, nil, "", nil)
		if lastKnown != nil && bytes.Contains(want, []byte(`"vector"`)) {
			t.Fatalf("seed %d: the answer after a lastKnownHLC claims a vector: %s", seed, want)
		}
		if len(res.Replies) != 1 || !bytes.Equal(res.Replies[0], want) {
			t.Fatalf("seed %d: %s\nis answered with %q,\nwant %s", seed, req, res.Replies, want)
		}
	}
	// The push-back after a complete response holding vec: what the holder lacks of it.
	vec := vector(true)
	resp := `{"kind":"PeerMessage","sender":"asker","recipient":"holder","message":{"operations":[],"session":"tok","vector":` + vec + `,"verb":"ListOperationsResponse"}}`
	res := kitRecv(t, holder, []byte(resp))
	vv, err := parseVector(vec)
	kitNoErr(t, err)
	var want [][]byte
	if theirs := oracleMissing(holder, vv, nil); len(theirs) > 0 || holder.vec.ahead(vv) {
		page, _ := oraclePagedResponse(holder, "asker", theirs, nil, true, "tok")
		want = [][]byte{page}
	}
	if len(res.Replies) != len(want) || len(want) > 0 && !bytes.Equal(res.Replies[0], want[0]) {
		t.Fatalf("seed %d: %s\nis answered with %q,\nwant %q", seed, resp, res.Replies, want)
	}
}

// gjsonGet returns the raw JSON at path in msg ("" if absent).
func gjsonGet(msg, path string) string { return gjson.Get(msg, path).Raw }

// kitMoreOf returns the text of a response's "more" clock.
func kitMoreOf(t *testing.T, msg []byte) []byte {
	t.Helper()
	i := bytes.Index(msg, []byte(`"more":"`))
	if i < 0 {
		t.Fatalf("no more in %s", msg)
	}
	rest := msg[i+len(`"more":"`):]
	return rest[:bytes.IndexByte(rest, '"')]
}

// The oracle: missing, pagedResponse and pageEnds as they were before a page was worked
// out in one walk of the log (a walk, and a vector lookup per operation, for the list of
// what the asker lacks; another for the vector of each page).

func oracleMissing(r *Replica, vv VersionVector, lastKnown *hlc.Timestamp) []*op {
	var out []*op
	unpublished := r.unpublishedObjects()
	var seen [4]struct {
		peer *byte
		n    int
		seq  uint64
	}
	nseen := 0
	for _, o := range r.log.ops {
		if (o.live == 0 && !touches(o, unpublished)) || (o.seq == 0 && r.isOwn(o.ts.Peer)) {
			continue
		}
		switch {
		case o.seq > 0 && vv != nil:
			p, known := unsafe.StringData(o.ts.Peer), uint64(0)
			i := 0
			for i < nseen && (seen[i].peer != p || seen[i].n != len(o.ts.Peer)) {
				i++
			}
			if i < nseen {
				known = seen[i].seq
			} else {
				known = vv[o.ts.Peer]
				if nseen < len(seen) {
					seen[nseen].peer, seen[nseen].n, seen[nseen].seq = p, len(o.ts.Peer), known
					nseen++
				}
			}
			if o.seq > known {
				out = append(out, o)
			}
		case o.seq == 0 && vv != nil:
			out = append(out, o)
		case lastKnown != nil:
			if lastKnown.Less(o.ts) {
				out = append(out, o)
			}
		default:
			out = append(out, o)
		}
	}
	return out
}

func oraclePagedResponse(r *Replica, recipient string, ops []*op, after *hlc.Timestamp, pushBack bool, forAsker string) (msg []byte, partial bool) {
	start := 0
	if after != nil {
		for start < len(ops) && !after.Less(ops[start].ts) {
			start++
		}
	}
	end := min(len(ops), start+min(r.opts.SyncPage, r.opts.Limits.MaxBatch))
	vv, more := oraclePageEnds(r, ops, start, end)
	msg = r.response(recipient, ops[start:end], pushBack, true, vv, more, forAsker, nil)
	budget := r.opts.Limits.MaxMessageBytes / 2
	if len(msg) > budget && end-start > 1 {
		size := 0
		for i := start; i < end; i++ {
			if size += wireSize(ops[i]); size > budget && i > start {
				end = i
				break
			}
		}
		vv, more = oraclePageEnds(r, ops, start, end)
		msg = r.response(recipient, ops[start:end], pushBack, true, vv, more, forAsker, nil)
	}
	return msg, more != nil
}

func oraclePageEnds(r *Replica, ops []*op, start, end int) (vv VersionVector, more *hlc.Timestamp) {
	if start == 0 && end == len(ops) {
		return nil, nil
	}
	vv = r.vec.vector().Clone()
	lower := func(o *op) {
		if o.seq > 0 && vv[o.ts.Peer] >= o.seq {
			vv[o.ts.Peer] = o.seq - 1
		}
	}
	for _, o := range ops[:start] {
		lower(o)
	}
	for _, o := range ops[end:] {
		lower(o)
	}
	if end < len(ops) {
		ts := ops[end-1].ts
		more = &ts
	}
	return vv, more
}
