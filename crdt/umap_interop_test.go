package crdt

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/mapcrdt/mapcrdt/hlc"
	"github.com/tidwall/gjson"
)

// The messages below are built as uMap's own frontend builds them (umap-project/umap):
//   - umap/static/umap/js/modules/sync/engine.js, SyncEngine.update/upsert/delete/commitBatch
//     make {verb, subject, metadata, key, value} (commitBatch: {verb:"batch", operations,
//     subject, metadata}); Operations.addLocal appends "hlc"; SyncEngine._send sends
//     {sender, ...operation};
//   - umap/static/umap/js/modules/sync/websocket.js, WebSocketTransport.send copies the
//     payload and sets "kind" last, then JSON.stringify: "kind" is the LAST member, and a
//     member whose value is undefined (a delete's key, an unset's value, the map's metadata)
//     is absent;
//   - the subjects' metadata: Feature.getSyncMetadata (modules/data/features.js:
//     {id, layerId, featureType}), DataLayer.getSyncMetadata (modules/data/layer.js: {id}),
//     the map's getSyncMetadata ({subject:"map"}, no metadata at all);
//   - hlc.js, HybridLogicalClock.serialize: `${walltime}:${nn}:${id}`; utils.js generateId:
//     five alphanumeric characters.

const umapT0 int64 = 1_727_184_449_000

// umapOp is an OperationMessage as uMap's _send + WebSocketTransport.send write it.
func umapOp(sender, body, clock string) []byte {
	return []byte(`{"sender":"` + sender + `",` + body + `,"hlc":"` + clock + `","kind":"OperationMessage"}`)
}

func TestUmapOperationMessagesAreTaken(t *testing.T) {
	wall := hlc.NewManualClock(umapT0 + 1000)
	r := kitReplica(t, "mcrdt", wall)
	feat := `"metadata":{"id":"UxNjQ","layerId":"606d26bd-230f-4d3e-a2a7-0c3caed71548","featureType":"marker"}`
	msgs := [][]byte{
		// DataLayer: SyncEngine.upsert("datalayer", {id}, value)
		umapOp("QxMjE", `"verb":"upsert","subject":"datalayer","metadata":{"id":"606d26bd-230f-4d3e-a2a7-0c3caed71548"},"value":{"name":"Layer 1","type":"FeatureCollection","features":[]}`, "1727184449001:0:QxMjE"),
		// Feature.onCommit: sync.upsert(this.toGeoJSON())
		umapOp("QxMjE", `"verb":"upsert","subject":"feature",`+feat+`,"value":{"type":"Feature","geometry":{"type":"Point","coordinates":[0.439453,48.04871]},"properties":{},"id":"UxNjQ"}`, "1727184449002:0:QxMjE"),
		// a property edit: update(subject, metadata, key, value)
		umapOp("QxMjE", `"verb":"update","subject":"feature",`+feat+`,"key":"properties.name","value":"Café"`, "1727184449003:0:QxMjE"),
		umapOp("QxMjE", `"verb":"update","subject":"feature",`+feat+`,"key":"properties._umap_options.color","value":"DarkRed"`, "1727184449003:1:QxMjE"),
		// an unset: value undefined, so absent
		umapOp("QxMjE", `"verb":"update","subject":"feature",`+feat+`,"key":"properties.name"`, "1727184449004:0:QxMjE"),
		// the map: getSyncMetadata gives no metadata
		umapOp("QxMjE", `"verb":"update","subject":"map","key":"properties.name","value":"My map"`, "1727184449005:0:QxMjE"),
		// a batch (commitBatch through the proxy: the object's subject and metadata)
		umapOp("QxMjE", `"verb":"batch","operations":[{"verb":"update","subject":"feature",`+feat+`,"key":"properties.a","value":1},{"verb":"update","subject":"feature",`+feat+`,"key":"properties.b","value":2}],"subject":"feature",`+feat, "1727184449006:0:QxMjE"),
	}
	for _, m := range msgs {
		if _, err := r.Receive(m); err != nil {
			t.Fatalf("%s: %v", m, err)
		}
	}
	// The batch's own subject and metadata are kept and passed on (it lost its metadata).
	for _, o := range r.log.ops {
		if o.verb == VerbBatch && (!extraHas(o.extra(), "metadata") || !extraHas(o.extra(), "subject")) {
			t.Errorf("the batch keeps %q", o.extra())
		}
	}
	got := r.State()
	for _, want := range []string{`"color":"DarkRed"`, `"a":1`, `"b":2`, `"name":"My map"`, `"name":"Layer 1"`} {
		if !strings.Contains(got, want) {
			t.Errorf("state lacks %s: %s", want, got)
		}
	}
	if strings.Contains(got, "Café") {
		t.Errorf("unset name still there: %s", got)
	}
	// a delete: no key, no value
	del := umapOp("QxMjE", `"verb":"delete","subject":"feature",`+feat, "1727184449007:0:QxMjE")
	if _, err := r.Receive(del); err != nil {
		t.Fatalf("%s: %v", del, err)
	}
	if strings.Contains(r.State(), "UxNjQ") {
		t.Errorf("deleted feature still there: %s", r.State())
	}
}

// A plain uMap peer's ListOperationsRequest (engine.js onJoinResponse → sendToPeer:
// {lastKnownHLC, verb} in "message", lastKnownHLC absent when its log is empty) is answered
// in uMap's form: onListOperationsResponse reads message.operations, and _applyOperation
// each one's subject, metadata, verb (and a batch's sub-operations' own).
func TestUmapListOperationsRequestIsAnsweredInUmapForm(t *testing.T) {
	wall := hlc.NewManualClock(umapT0 + 1000)
	r := kitReplica(t, "mcrdt", wall)
	kitOK(t)(r.Update("feature", kitF1, "properties.name", `"x"`))
	kitNoErr(t, r.StartBatch())
	kitOK(t)(r.Update("feature", kitF2, "properties.a", `1`))
	kitOK(t)(r.Update("feature", kitF2, "properties.b", `2`))
	kitNoErr(t, r.CommitBatch())
	kitOK(t)(r.Update("map", `{}`, "properties.name", `"m"`))
	flushed := r.Flush()
	hlcText := regexp.MustCompile(`^\d+:\d+:[^:]+$`) // uMap's own test of addLocal
	for _, m := range flushed {
		var v map[string]any
		if err := json.Unmarshal(m, &v); err != nil {
			t.Fatal(err)
		}
		if s, _ := v["hlc"].(string); !hlcText.MatchString(s) {
			t.Errorf("hlc %q is not uMap's text", s)
		}
		// Every OperationMessage has a subject, a batch's too: uMap's server's model requires
		// it (umap/sync/payloads.py OperationMessage: subject one of map, datalayer,
		// feature), or drops the message.
		switch subj, _ := v["subject"].(string); subj {
		case "map", "datalayer", "feature":
		default:
			t.Errorf("subject %q: %s", subj, m)
		}
		if v["verb"] == "batch" && v["subject"] != "feature" {
			t.Errorf("a batch of feature edits names subject %v", v["subject"])
		}
	}
	// The subject written on a batch message is not kept as an unknown field by a
	// mapcrdt peer: the operation would go whole in the compact form, and a catch-up
	// holding it the slow way (hasExtra).
	peer := kitReplica(t, "peer2", wall)
	for _, m := range flushed {
		kitRecv(t, peer, m)
	}
	for _, o := range peer.log.ops {
		if hasExtra(o) {
			t.Errorf("received %v keeps extra fields %q", o.verb, o.extra())
		}
	}
	for _, req := range []string{
		`{"sender":"QxMjE","recipient":"mcrdt","message":{"verb":"ListOperationsRequest"},"kind":"PeerMessage"}`,
		`{"sender":"QxMjE","recipient":"mcrdt","message":{"lastKnownHLC":"1727184449001:0:QxMjE","verb":"ListOperationsRequest"},"kind":"PeerMessage"}`,
	} {
		res, err := r.Receive([]byte(req))
		if err != nil {
			t.Fatalf("%s: %v", req, err)
		}
		if len(res.Replies) != 1 {
			t.Fatalf("%d replies", len(res.Replies))
		}
		var env struct {
			Kind, Sender, Recipient string
			Message                 struct {
				Verb       string
				Operations []map[string]any
			}
		}
		if err := json.Unmarshal(res.Replies[0], &env); err != nil {
			t.Fatal(err)
		}
		if env.Kind != "PeerMessage" || env.Recipient != "QxMjE" || env.Message.Verb != "ListOperationsResponse" {
			t.Fatalf("envelope %+v", env)
		}
		if len(env.Message.Operations) != 3 {
			t.Fatalf("%d operations, want 3", len(env.Message.Operations))
		}
		for _, o := range env.Message.Operations {
			if _, ok := o["subject"].(string); !ok && o["verb"] != "batch" {
				t.Errorf("operation without subject: %v", o)
			}
			if s, _ := o["hlc"].(string); !hlcText.MatchString(s) {
				t.Errorf("hlc %q", s)
			}
			if o["verb"] == "batch" {
				for _, sub := range o["operations"].([]any) {
					if _, ok := sub.(map[string]any)["subject"].(string); !ok {
						t.Errorf("sub-operation without subject: %v", sub)
					}
				}
			}
		}
	}
}

// uMap's server answers a JoinRequest with JoinResponse(peer=…, peers=…) and announces
// ListPeersResponse(peers=…) (umap/sync/app.py Peer.receive and send_peers_list; the
// models in umap/sync/payloads.py, written by pydantic's model_dump_json): "peers" is an
// object of peer id → user name. A replica behind uMap's server takes them, asks one of the
// others for what it missed, and probes a newcomer.
func TestUmapServerPeerLists(t *testing.T) {
	wall := hlc.NewManualClock(umapT0 + 1000)
	r := kitReplica(t, "mcrdt", wall)
	res, err := r.Receive([]byte(`{"kind":"JoinResponse","peers":{"QxMjE":"","mcrdt":"Bob"},"peer":"mcrdt"}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Peers(); strings.Join(got, ",") != "QxMjE,mcrdt" {
		t.Errorf("peers %q", got)
	}
	if len(res.Replies) != 1 || !strings.Contains(string(res.Replies[0]), `"recipient":"QxMjE"`) {
		t.Fatalf("replies %q, want a sync request to QxMjE", res.Replies)
	}
	res, err = r.Receive([]byte(`{"kind":"ListPeersResponse","peers":{"QxMjE":"","mcrdt":"Bob","NzE0O":"Ann"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Replies) != 1 || !strings.Contains(string(res.Replies[0]), `"recipient":"NzE0O"`) {
		t.Fatalf("replies %q, want a probe of NzE0O", res.Replies)
	}
	if _, err := r.Receive([]byte(`{"kind":"ListPeersResponse","peers":{"QxMjE":1}}`)); err != nil {
		t.Errorf("a name is not read: %v", err)
	}
	if _, err := r.Receive([]byte(`{"kind":"ListPeersResponse","peers":"QxMjE"}`)); err == nil {
		t.Error("peers as a string taken")
	}
}

// A uMap peer's ListOperationsResponse (engine.js onListOperationsRequest → sendToPeer:
// {operations, verb}; Operations.getOperationsSince returns its stored operations as they
// are: its own as addLocal left them — no kind, no sender —, others' as receive left them —
// their sender, no kind) is taken.
func TestUmapListOperationsResponseIsTaken(t *testing.T) {
	wall := hlc.NewManualClock(umapT0 + 1000)
	r := kitReplica(t, "mcrdt", wall)
	feat := `"metadata":{"id":"UxNjQ","layerId":"L1","featureType":"marker"}`
	resp := `{"sender":"QxMjE","recipient":"mcrdt","message":{"operations":[` +
		`{"verb":"update","subject":"feature",` + feat + `,"key":"properties.name","value":"a","hlc":"1727184449001:0:QxMjE"},` +
		`{"sender":"NzE0O","verb":"update","subject":"feature",` + feat + `,"key":"properties.name","value":"b","hlc":"1727184449002:0:NzE0O"},` +
		`{"verb":"update","subject":"map","key":"properties.zoom","value":7,"hlc":"1727184449003:0:QxMjE"}` +
		`],"verb":"ListOperationsResponse"},"kind":"PeerMessage"}`
	res, err := r.Receive([]byte(resp))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Replies) != 0 {
		t.Errorf("replies %q to a plain response", res.Replies)
	}
	if v, _, _ := r.Get("feature", `{"id":"UxNjQ","layerId":"L1"}`, "properties.name"); v != `"b"` {
		t.Errorf("name %s, want \"b\"", v)
	}
	if v, _, _ := r.Get("map", `{}`, "properties.zoom"); v != `7` {
		t.Errorf("zoom %s", v)
	}
	// uMap's SavedMessage (engine.js saved(): {sender, lastKnownHLC}, kind last) is taken.
	if _, err := r.Receive([]byte(`{"sender":"QxMjE","lastKnownHLC":"1727184449003:0:QxMjE","kind":"SavedMessage"}`)); err != nil {
		t.Error(err)
	}
}

// uMap orders clocks by their text (engine.js Operations.sort and storeRemoteOperations:
// a.hlc < b.hlc, JavaScript's code-unit comparison of hlc.js's serialize). mapcrdt orders
// them as numbers, then the peer id bytewise (DESIGN §3). They agree whenever the
// walltimes and counters have the same number of digits (uMap's walltimes all have 13
// until 2286), on peer id ties too; they differ on counters of different digit counts at
// one walltime, where uMap's text order is wrong ("…:9:" after "…:10:") and mapcrdt's
// deliberately is not.
func TestUmapClockOrder(t *testing.T) {
	umapLess := func(a, b string) bool { return a < b } // ASCII: code units are bytes
	cases := []struct {
		a, b  string
		agree bool
	}{
		{"1727184449010:0:QxMjE", "1727184449011:0:AAAAA", true},
		{"1727184449010:3:QxMjE", "1727184449010:4:AAAAA", true},
		{"1727184449010:42:QxMjE", "1727184449010:43:AAAAA", true},
		{"1727184449010:0:AAAAA", "1727184449010:0:QxMjE", true},    // peer id tie-break
		{"1727184449010:0:QxMjE", "1727184449010:0:QxMjEa", true},   // a prefix first
		{"1727184449010:7:Zz", "1727184449010:7:a", true},           // bytewise: 'Z' < 'a'
		{"1727184449010:7:relay", "1727184449010:7:relay~x1", true}, // a restored origin
		{"1727184449010:9:QxMjE", "1727184449010:10:QxMjE", false},  // uMap: "9" > "1"
		{"1727184449010:99:AAAAA", "1727184449010:100:AAAAA", false},
	}
	for _, c := range cases {
		a, err := hlc.Parse(c.a)
		kitNoErr(t, err)
		b, err := hlc.Parse(c.b)
		kitNoErr(t, err)
		if !a.Less(b) || b.Less(a) {
			t.Errorf("mapcrdt: %s is not before %s", c.a, c.b)
		}
		if umapLess(c.a, c.b) != c.agree {
			t.Errorf("uMap's order of %s, %s: agreement %v expected", c.a, c.b, c.agree)
		}
	}
}

// TestPeerIDWithoutColon: uMap's client splits a clock's text at ':' and drops an
// operation whose clock has more than three parts (hlc.js parse): a new replica's peer id
// may not hold one (bad_option). A snapshot of an earlier one that does still restores.
func TestPeerIDWithoutColon(t *testing.T) {
	wall := hlc.NewManualClock(umapT0)
	if _, err := NewReplica(Options{PeerID: "team:alice", Wall: wall}); Code(err) != "bad_option" {
		t.Fatalf("team:alice: %v, want bad_option", err)
	}
	r, err := newReplica(Options{PeerID: "team:bob", Wall: wall})
	if err != nil {
		t.Fatal(err)
	}
	kitOK(t)(r.Update("feature", kitF1, "properties.name", `"x"`))
	snap, err := r.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	back, err := NewReplicaFromSnapshot(Options{Wall: wall}, snap)
	if err != nil || back.State() != r.State() {
		t.Fatalf("restore: %v", err)
	}
}

// TestReceiveTaught: what a response taught a replica, in uMap's plain form — the relay's
// forward of a newcomer's offline edits. Operations held before beyond a hole in their
// origin's seqs (which its vector does not cover) are not among them.
func TestReceiveTaught(t *testing.T) {
	wall := hlc.NewManualClock(umapT0 + 10_000)
	relay := kitReplica(t, "relay", wall)
	bob := kitReplica(t, "bob", wall)
	carol := kitReplica(t, "carol", wall)
	kitOK(t)(bob.Update("feature", kitF1, "properties.old", `1`))
	kitOK(t)(bob.Update("feature", kitF2, "properties.gap", `1`))
	sent := bob.Flush()
	kitRecv(t, relay, sent[1]) // seq 2: seq 1 is a hole
	kitRecv(t, carol, sent[0])
	kitRecv(t, carol, sent[1])
	// uMap's client's edit, seq-less, taken before
	kitRecv(t, relay, umapOp("QxMjE", `"verb":"update","subject":"feature","metadata":{"id":"g","layerId":"L"},"key":"properties.u","value":1`, "1727184449001:0:QxMjE"))
	kitRecv(t, carol, umapOp("QxMjE", `"verb":"update","subject":"feature","metadata":{"id":"g","layerId":"L"},"key":"properties.u","value":1`, "1727184449001:0:QxMjE"))
	answer := func() []byte { // carol's answer to the relay's probe
		t.Helper()
		res, err := carol.Receive(relay.ProbeRequest("carol"))
		if err != nil || len(res.Replies) != 1 {
			t.Fatalf("%v %q", err, res.Replies)
		}
		return res.Replies[0]
	}
	_, got, n, err := relay.ReceiveTaught(answer(), "")
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Message struct{ Operations []map[string]any }
	}
	if err := json.Unmarshal(got, &env); err != nil || n != 1 || len(env.Message.Operations) != 1 || env.Message.Operations[0]["key"] != "properties.old" {
		t.Fatalf("%v, %d: %s", err, n, got)
	}
	// No vector: the relay's would claim bob's seq 2 to a peer taking only seq 1 from it.
	if gjson.GetBytes(got, "message.vector").Exists() {
		t.Fatalf("what was taught carries a vector: %s", got)
	}
	if _, got, n, err := relay.ReceiveTaught(answer(), ""); err != nil || got != nil || n != 0 {
		t.Fatalf("nothing learned, got %d: %s (%v)", n, got, err)
	}
	kitOK(t)(carol.Update("feature", kitF1, "properties.new", `2`))
	kitOK(t)(carol.Update("feature", kitF2, "properties.new", `3`))
	carol.Flush()
	_, got, n, err = relay.ReceiveTaught(answer(), "")
	if err := json.Unmarshal(got, &env); err != nil || n != 2 || len(env.Message.Operations) != 2 {
		t.Fatalf("%v: %s", err, got)
	}
	for _, o := range env.Message.Operations {
		if o["key"] != "properties.new" {
			t.Errorf("not learned from the message: %v", o)
		}
	}
	small := kitReplica(t, "relay2", wall, func(o *Options) { o.Limits = DefaultLimits(); o.Limits.MaxMessageBytes = 700 })
	big := kitReplica(t, "dave", wall)
	for _, k := range []string{"a", "b", "c"} {
		kitOK(t)(big.Update("feature", kitF1, "properties."+k, `"`+strings.Repeat("x", 100)+`"`))
	}
	big.Flush()
	res, err := big.Receive(kitEarlier(small.ProbeRequest("dave"))) // paged to dave's limit
	if err != nil {
		t.Fatal(err)
	}
	if _, got, n, err := small.ReceiveTaught(res.Replies[0], ""); err != nil || got != nil || n != 3 {
		t.Fatalf("over the limit: %d bytes, %d taught (%v)", len(got), n, err)
	}
}
