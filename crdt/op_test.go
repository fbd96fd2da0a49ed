package crdt

// Operations on the wire: validation of every input (DESIGN §9) with its stable code, a
// message quoting the bad input and nothing changed; decoding and encoding that lose
// nothing; key paths; options.

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/mapcrdt/mapcrdt/hlc"
	"github.com/tidwall/gjson"
)

// good is a valid operation message; the validation cases break one thing in it.
var good = `{"kind":"OperationMessage","sender":"bob","verb":"update","subject":"feature",` +
	`"metadata":{"id":"f9","layerId":"L1","featureType":"marker"},"key":"properties.name","value":"x",` +
	`"hlc":"` + stamp(50, 0, "bob") + `","seq":3}`

// with returns good with old replaced by new (old must occur once).
func with(t testing.TB, old, new string) string {
	t.Helper()
	if strings.Count(good, old) != 1 {
		t.Fatalf("with: %q occurs %d times", old, strings.Count(good, old))
	}
	return strings.Replace(good, old, new, 1)
}

// opWith returns an operation message of bob's at t=50 made of members.
func opWith(members string) string {
	return `{"kind":"OperationMessage","sender":"bob",` + members + `,"hlc":"` + stamp(50, 0, "bob") + `","seq":3}`
}

func peerMessage(inner string) string {
	return `{"kind":"PeerMessage","sender":"bob","recipient":"val","message":` + inner + `}`
}

// validationReplica returns a replica holding a little of everything, so that "nothing
// changed" means something.
func validationReplica(t testing.TB, opts Options) *Replica {
	t.Helper()
	opts.PeerID = "val"
	opts.Wall = hlc.NewManualClock(t0 + 1000)
	r, err := NewReplica(opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{
		`{"kind":"OperationMessage","sender":"bob","verb":"upsert","subject":"datalayer","metadata":{"id":"L1"},"value":{"name":"Trees"},"hlc":"` + stamp(1, 0, "bob") + `","seq":1}`,
		`{"kind":"OperationMessage","sender":"bob","verb":"update","subject":"feature","metadata":{"id":"f1","layerId":"L1"},"key":"properties.name","value":"oak","hlc":"` + stamp(2, 0, "bob") + `","seq":2}`,
	} {
		if _, err := r.Receive([]byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Update("map", `{}`, "properties.name", `"My map"`); err != nil {
		t.Fatal(err)
	}
	return r
}

type replicaView struct {
	state   string
	vector  VersionVector
	clock   hlc.Timestamp
	logLen  int
	pending int
	objects int
}

func viewOf(r *Replica) replicaView {
	return replicaView{r.State(), r.Vector(), r.Clock(), r.LogLen(), r.Pending(), r.objects.len()}
}

func (v replicaView) equal(w replicaView) bool {
	return v.state == w.state && vectorsEqual(v.vector, w.vector) && v.clock == w.clock &&
		v.logLen == w.logLen && v.pending == w.pending && v.objects == w.objects
}

// checkError checks err against the §9 contract: an *Error with the sentinel's code,
// errors.Is with the sentinel, a message containing quoted.
func checkError(t testing.TB, err, sentinel error, quoted string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted, want %v", sentinel)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T %v is not an *Error", err, err)
	}
	if !errors.Is(err, sentinel) || e.Code() != sentinel.Error() || Code(err) != sentinel.Error() {
		t.Fatalf("error %q: code %q, want %q", err, e.Code(), sentinel)
	}
	if !strings.HasPrefix(err.Error(), sentinel.Error()+": ") {
		t.Errorf("error %q does not start with its code", err)
	}
	if quoted != "" && !strings.Contains(err.Error(), quoted) {
		t.Errorf("error %q\n does not quote %s", err, quoted)
	}
}

func TestReceiveValidation(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	longKey := strings.Repeat("k", 1025)
	tooManyParts := strings.TrimSuffix(strings.Repeat("p.", 33), ".")
	small := func(o *Options) { o.Limits = DefaultLimits(); o.Limits.MaxMessageBytes = 256 }
	batch3 := func(o *Options) { o.Limits = DefaultLimits(); o.Limits.MaxBatch = 3 }
	sub := `{"verb":"update","subject":"feature","metadata":{"id":"f1","layerId":"L1"},"key":"k","value":1}`
	tests := []struct {
		name   string
		msg    string
		opts   func(*Options)
		code   error
		quoted string // text the message must contain
	}{
		// invalid_json
		{"empty input", ``, nil, ErrInvalidJSON, `near ""`},
		{"only whitespace", " \n", nil, ErrInvalidJSON, `at byte 2`},
		{"truncated in a string", good[:60], nil, ErrInvalidJSON, strconv.Quote(good[44:60])},
		{"truncated after a comma", good[:strings.Index(good, `"verb"`)], nil, ErrInvalidJSON, `near "`},
		{"truncated before the last brace", good[:len(good)-1], nil, ErrInvalidJSON, `"seq\":3"`},
		{"trailing garbage", good + ` x`, nil, ErrInvalidJSON, `3} x"`},
		{"two messages", good + good, nil, ErrInvalidJSON, `unexpected text after the value`},
		{"invalid UTF-8 in a value", with(t, `"value":"x"`, "\"value\":\"\xff\""), nil, ErrInvalidJSON, `\xff`},
		{"invalid UTF-8 in a name", with(t, `"value":"x"`, "\"value\":\"x\",\"\xc3(\":1"), nil, ErrInvalidJSON, `\xc3(`},
		{"overlong UTF-8", with(t, `"value":"x"`, "\"value\":\"\xc0\xaf\""), nil, ErrInvalidJSON, `invalid UTF-8`},
		{"UTF-8 surrogate half", with(t, `"value":"x"`, "\"value\":\"\xed\xa0\x80\""), nil, ErrInvalidJSON, `invalid UTF-8`},
		{"bad escape", with(t, `"value":"x"`, `"value":"a\x41"`), nil, ErrInvalidJSON, `bad escape`},
		{"short unicode escape", with(t, `"value":"x"`, `"value":"\u12"`), nil, ErrInvalidJSON, `\\u12`},
		{"non-hex unicode escape", with(t, `"value":"x"`, `"value":"\uzzzz"`), nil, ErrInvalidJSON, `\\uzzzz`},
		{"escape at the end", `{"a":"\`, nil, ErrInvalidJSON, `unterminated escape`},
		{"raw control character", with(t, `"value":"x"`, "\"value\":\"a\tb\""), nil, ErrInvalidJSON, `control character`},
		{"bare word", with(t, `"value":"x"`, `"value":x`), nil, ErrInvalidJSON, `"value\":x,`},
		{"single quotes", with(t, `"value":"x"`, `"value":'x'`), nil, ErrInvalidJSON, `'x'`},
		{"leading zero", with(t, `"seq":3`, `"seq":03`), nil, ErrInvalidJSON, `"seq\":03}"`},
		{"NaN", with(t, `"value":"x"`, `"value":NaN`), nil, ErrInvalidJSON, `NaN`},
		{"trailing comma", with(t, `"seq":3`, `"seq":3,`), nil, ErrInvalidJSON, `3,}`},
		{"missing colon", with(t, `"seq":3`, `"seq" 3`), nil, ErrInvalidJSON, `expected ':'`},
		{"unclosed array", with(t, `"value":"x"`, `"value":[1,2`), nil, ErrInvalidJSON, `[1,2`},
		{"truncated literal", with(t, `"value":"x"`, `"value":tru`), nil, ErrInvalidJSON, `tru,`},
		{"bad number", with(t, `"value":"x"`, `"value":1.e5`), nil, ErrInvalidJSON, `1.e5`},

		// bad_message: well-formed JSON of the wrong shape
		{"not an object", `[1,2]`, nil, ErrBadMessage, `[1,2]`},
		{"a string", `"update"`, nil, ErrBadMessage, `"\"update\""`},
		{"no verb", with(t, `"verb":"update",`, ``), nil, ErrBadMessage, `without a verb`},
		{"verb not a string", with(t, `"verb":"update"`, `"verb":1`), nil, ErrBadMessage, `"1"`},
		{"kind not a string", with(t, `"kind":"OperationMessage"`, `"kind":7`), nil, ErrBadMessage, `"7"`},
		{"subject missing", with(t, `"subject":"feature",`, ``), nil, ErrBadMessage, `without a subject`},
		{"subject not a string", with(t, `"subject":"feature"`, `"subject":["feature"]`), nil, ErrBadMessage, `"[\"feature\"]"`},
		{"seq zero", with(t, `"seq":3`, `"seq":0`), nil, ErrBadMessage, `"0"`},
		{"seq negative", with(t, `"seq":3`, `"seq":-3`), nil, ErrBadMessage, `"-3"`},
		{"seq a string", with(t, `"seq":3`, `"seq":"3"`), nil, ErrBadMessage, `"\"3\""`},
		{"seq fractional", with(t, `"seq":3`, `"seq":1.5`), nil, ErrBadMessage, `"1.5"`},
		{"seq with exponent", with(t, `"seq":3`, `"seq":3e0`), nil, ErrBadMessage, `"3e0"`},
		{"seq 2^53", with(t, `"seq":3`, `"seq":9007199254740992`), nil, ErrBadMessage, `"9007199254740992"`},
		{"batch without operations", opWith(`"verb":"batch"`), nil, ErrBadMessage, `array of operations`},
		{"batch operations not an array", opWith(`"verb":"batch","operations":{"0":` + sub + `}`), nil, ErrBadMessage, `array of operations`},
		{"empty batch", opWith(`"verb":"batch","operations":[]`), nil, ErrBadMessage, `empty batch`},
		{"batch element not an object", opWith(`"verb":"batch","operations":[` + sub + `,7]`), nil, ErrBadMessage, `7`},
		{"batch inside a batch", opWith(`"verb":"batch","operations":[{"verb":"batch","operations":[` + sub + `]}]`), nil, ErrBadMessage, `batch inside a batch`},
		{"sub-operation with its own hlc", opWith(`"verb":"batch","operations":[` + strings.TrimSuffix(sub, `}`) + `,"hlc":"` + stamp(50, 0, "bob") + `"}` + `]`), nil, ErrBadMessage, `own hlc`},
		{"sub-operation with its own seq", opWith(`"verb":"batch","operations":[` + strings.Replace(sub, `"key"`, `"seq":4,"key"`, 1) + `]`), nil, ErrBadMessage, `own seq`},
		{"sub-operation without a verb", opWith(`"verb":"batch","operations":[{"subject":"map","key":"a","value":1}]`), nil, ErrBadMessage, `without a verb`},
		{"PeerMessage without a message", `{"kind":"PeerMessage","sender":"bob","recipient":"val"}`, nil, ErrBadMessage, `message object`},
		{"PeerMessage with a string message", `{"kind":"PeerMessage","sender":"bob","recipient":"val","message":"hi"}`, nil, ErrBadMessage, `message object`},
		{"response without operations", peerMessage(`{"verb":"ListOperationsResponse"}`), nil, ErrBadMessage, `operations`},
		{"response operations not an array", peerMessage(`{"verb":"ListOperationsResponse","operations":{}}`), nil, ErrBadMessage, `operations`},
		{"response element not an object", peerMessage(`{"verb":"ListOperationsResponse","operations":[null]}`), nil, ErrBadMessage, `null`},
		{"response with a bad vector", peerMessage(`{"verb":"ListOperationsResponse","operations":[],"vector":{"bob":"x"}}`), nil, ErrBadMessage, `"\"x\""`},
		{"response with a vector of a bad peer", peerMessage(`{"verb":"ListOperationsResponse","operations":[],"vector":{"b o b":1}}`), nil, ErrBadMessage, `"b o b"`},
		{"request without a sender", `{"kind":"PeerMessage","recipient":"val","message":{"verb":"ListOperationsRequest","vector":{}}}`, nil, ErrBadMessage, `without a sender`},
		{"request with a vector array", peerMessage(`{"verb":"ListOperationsRequest","vector":[1]}`), nil, ErrBadMessage, `vector`},
		{"JoinResponse peers not strings", `{"kind":"JoinResponse","peers":["a",1]}`, nil, ErrBadMessage, `"1"`},
		{"compact response of a bad shape", peerMessage(`{"verb":"ListOperationsResponse","state":{"peers":["bob"],"objects":[["feature"]],"ops":[]}}`), nil, ErrBadMessage, `"[\"feature\"]"`},

		// unknown_verb, unknown_subject, unknown_kind
		{"unknown verb", with(t, `"verb":"update"`, `"verb":"patch"`), nil, ErrUnknownVerb, `"patch"`},
		{"verb in capitals", with(t, `"verb":"update"`, `"verb":"Update"`), nil, ErrUnknownVerb, `"Update"`},
		{"unknown verb in a batch", opWith(`"verb":"batch","operations":[{"verb":"move","subject":"map","key":"a"}]`), nil, ErrUnknownVerb, `"move"`},
		{"unknown peer message verb", peerMessage(`{"verb":"ListPeers"}`), nil, ErrUnknownVerb, `"ListPeers"`},
		{"unknown subject", with(t, `"subject":"feature"`, `"subject":"layer"`), nil, ErrUnknownSubject, `"layer"`},
		{"unknown subject in a batch", opWith(`"verb":"batch","operations":[` + strings.Replace(sub, `"feature"`, `"marker"`, 1) + `]`), nil, ErrUnknownSubject, `"marker"`},
		{"unknown kind", with(t, `"kind":"OperationMessage"`, `"kind":"Hello"`), nil, ErrUnknownKind, `"Hello"`},
		{"no kind and no verb", `{"subject":"map"}`, nil, ErrUnknownKind, `""`},

		// bad_metadata
		{"feature without layerId", with(t, `"layerId":"L1",`, ``), nil, ErrBadMetadata, `metadata.layerId`},
		{"feature without id", with(t, `"id":"f9",`, ``), nil, ErrBadMetadata, `metadata.id`},
		{"non-string id", with(t, `"id":"f9"`, `"id":7`), nil, ErrBadMetadata, `"7"`},
		{"null layerId", with(t, `"layerId":"L1"`, `"layerId":null`), nil, ErrBadMetadata, `"null"`},
		{"empty id", with(t, `"id":"f9"`, `"id":""`), nil, ErrBadMetadata, `"\"\""`},
		{"id too long", with(t, `"id":"f9"`, `"id":"`+strings.Repeat("i", MaxIDBytes+1)+`"`), nil, ErrBadMetadata, `"\"iiiiii`},
		{"metadata not an object", with(t, `"metadata":{"id":"f9","layerId":"L1","featureType":"marker"}`, `"metadata":"f9"`), nil, ErrBadMetadata, `"\"f9\""`},
		{"metadata an array", with(t, `"metadata":{"id":"f9","layerId":"L1","featureType":"marker"}`, `"metadata":["f9","L1"]`), nil, ErrBadMetadata, `"[\"f9\",\"L1\"]"`},
		{"datalayer without id", opWith(`"verb":"delete","subject":"datalayer","metadata":{"name":"L1"}`), nil, ErrBadMetadata, `metadata.id`},
		{"datalayer without metadata", opWith(`"verb":"delete","subject":"datalayer"`), nil, ErrBadMetadata, `metadata.id`},
		// A compact list's objects are made when an operation first names them; one that no
		// operation names is checked all the same, and one named after others were made
		// leaves none of them behind.
		{"compact response listing an object no operation names, without layerId", peerMessage(`{"verb":"ListOperationsResponse","state":{"peers":["bob"],"objects":[["feature",{"id":"f1","layerId":"L1"}],["feature",{"id":"f2"}]],"ops":[[1727184449001,0,0,1,1,0,"properties.name","a"]]},"vector":{"bob":1}}`), nil, ErrBadMetadata, `metadata.layerId`},
		{"compact response, uMap's layout, listing an object no operation names", peerMessage(`{"verb":"ListOperationsResponse","state":{"peers":["bob"],"objects":[["feature",{"layerId":"L1","id":"f1"}],["feature",{"id":"f2"}]],"ops":[[1727184449001,0,0,1,1,0,"properties.name","a"]]},"vector":{"bob":1}}`), nil, ErrBadMetadata, `metadata.layerId`},
		{"compact response whose second operation names a bad object", peerMessage(`{"verb":"ListOperationsResponse","state":{"peers":["bob"],"objects":[["feature",{"id":"f1","layerId":"L1"}],["feature",{"id":"f2"}]],"ops":[[1727184449001,0,0,1,1,0,"properties.name","a"],[1,0,0,2,1,1,"properties.name","b"]]},"vector":{"bob":2}}`), nil, ErrBadMetadata, `metadata.layerId`},

		// bad_key
		{"empty key", with(t, `"key":"properties.name"`, `"key":""`), nil, ErrBadKey, `empty key`},
		{"empty part", with(t, `"key":"properties.name"`, `"key":"properties..name"`), nil, ErrBadKey, `"properties..name"`},
		{"leading dot", with(t, `"key":"properties.name"`, `"key":".name"`), nil, ErrBadKey, `".name"`},
		{"trailing dot", with(t, `"key":"properties.name"`, `"key":"name."`), nil, ErrBadKey, `"name."`},
		{"trailing backslash", with(t, `"key":"properties.name"`, `"key":"name\\"`), nil, ErrBadKey, `"name\\"`},
		{"escaped then empty part", with(t, `"key":"properties.name"`, `"key":"a\\.."`), nil, ErrBadKey, `"a\\.."`},
		{"key not a string", with(t, `"key":"properties.name"`, `"key":5`), nil, ErrBadKey, `"5"`},
		{"update without a key", with(t, `"key":"properties.name",`, ``), nil, ErrBadKey, `without a key`},
		{"bad key in a batch", opWith(`"verb":"batch","operations":[` + strings.Replace(sub, `"k"`, `"a..b"`, 1) + `]`), nil, ErrBadKey, `"a..b"`},

		// bad_value
		{"upsert of an array", opWith(`"verb":"upsert","subject":"datalayer","metadata":{"id":"L2"},"value":[1]`), nil, ErrBadValue, `"[1]"`},
		{"upsert of a string", opWith(`"verb":"upsert","subject":"datalayer","metadata":{"id":"L2"},"value":"L2"`), nil, ErrBadValue, `"\"L2\""`},
		{"upsert of null", opWith(`"verb":"upsert","subject":"map","value":null`), nil, ErrBadValue, `"null"`},
		{"upsert without a value", opWith(`"verb":"upsert","subject":"map"`), nil, ErrBadValue, `upsert needs an object value`},

		// bad_hlc
		{"hlc not clock text", with(t, `"hlc":"`+stamp(50, 0, "bob")+`"`, `"hlc":"yesterday"`), nil, ErrBadHLC, `"yesterday"`},
		{"hlc missing", with(t, `,"hlc":"`+stamp(50, 0, "bob")+`"`, ``), nil, ErrBadHLC, `without an hlc`},
		{"hlc a number", with(t, `"hlc":"`+stamp(50, 0, "bob")+`"`, `"hlc":1727184449050`), nil, ErrBadHLC, `"1727184449050"`},
		{"hlc with two parts", with(t, `"hlc":"`+stamp(50, 0, "bob")+`"`, `"hlc":"1727184449050:0"`), nil, ErrBadHLC, `"1727184449050:0"`},
		{"hlc counter with a leading zero", with(t, `"hlc":"`+stamp(50, 0, "bob")+`"`, `"hlc":"1727184449050:01:bob"`), nil, ErrBadHLC, `"1727184449050:01:bob"`},
		{"hlc negative wall", with(t, `"hlc":"`+stamp(50, 0, "bob")+`"`, `"hlc":"-1:0:bob"`), nil, ErrBadHLC, `"-1:0:bob"`},
		{"hlc wall 2^53", with(t, `"hlc":"`+stamp(50, 0, "bob")+`"`, `"hlc":"9007199254740992:0:bob"`), nil, ErrBadHLC, `"9007199254740992:0:bob"`},
		{"hlc counter 2^31", with(t, `"hlc":"`+stamp(50, 0, "bob")+`"`, `"hlc":"1727184449050:2147483648:bob"`), nil, ErrBadHLC, `2147483648`},
		{"hlc empty peer", with(t, `"hlc":"`+stamp(50, 0, "bob")+`"`, `"hlc":"1727184449050:0:"`), nil, ErrBadHLC, `"1727184449050:0:"`},
		{"hlc peer with a space", with(t, `"hlc":"`+stamp(50, 0, "bob")+`"`, `"hlc":"1727184449050:0:b ob"`), nil, ErrBadHLC, `"1727184449050:0:b ob"`},
		{"SavedMessage without lastKnownHLC", `{"kind":"SavedMessage","sender":"bob"}`, nil, ErrBadHLC, `lastKnownHLC`},
		{"SavedMessage with a bad lastKnownHLC", `{"kind":"SavedMessage","sender":"bob","lastKnownHLC":"soon"}`, nil, ErrBadHLC, `"soon"`},
		{"request with a bad lastKnownHLC", peerMessage(`{"verb":"ListOperationsRequest","lastKnownHLC":"x:y:z"}`), nil, ErrBadHLC, `"x:y:z"`},
		{"response with a bad hlc", peerMessage(`{"verb":"ListOperationsResponse","operations":[{"verb":"delete","subject":"map","hlc":"1:2"}]}`), nil, ErrBadHLC, `"1:2"`},

		// clock_drift
		{"61 s ahead", with(t, stamp(50, 0, "bob"), stamp(1000+61_000, 0, "bob")), nil, ErrClockDrift, strconv.Quote(stamp(1000+61_000, 0, "bob"))},
		{"61 s ahead in a response", peerMessage(`{"verb":"ListOperationsResponse","operations":[{"verb":"delete","subject":"map","hlc":"` + stamp(3, 0, "bob") + `"},{"verb":"delete","subject":"datalayer","metadata":{"id":"L1"},"hlc":"` + stamp(62_000, 0, "eve") + `"}]}`), nil, ErrClockDrift, strconv.Quote(stamp(62_000, 0, "eve"))},

		// too_large
		{"message over MaxMessageBytes", good + strings.Repeat(" ", 256-len(good)+1), small, ErrTooLarge, `message of 257 bytes, more than 256`},
		{"key too long", with(t, `"key":"properties.name"`, `"key":"`+longKey+`"`), nil, ErrTooLarge, `"kkkkkkkk`},
		{"key with too many parts", with(t, `"key":"properties.name"`, `"key":"`+tooManyParts+`"`), nil, ErrTooLarge, `"p.p.p.p`},
		{"batch too long", opWith(`"verb":"batch","operations":[` + strings.TrimSuffix(strings.Repeat(sub+",", 4), ",") + `]`), batch3, ErrTooLarge, `more than 3`},
		{"response too long", peerMessage(`{"verb":"ListOperationsResponse","operations":[` + strings.TrimSuffix(strings.Repeat(`{"verb":"delete","subject":"map","hlc":"`+stamp(3, 0, "bob")+`"},`, 4), ",") + `]}`), batch3, ErrTooLarge, `more than 3`},

		// too_deep: the message says where, quoting the input there
		{"value nested 100 deep", with(t, `"value":"x"`, `"value":`+deep(100)), nil, ErrTooDeep, `levels at byte`},
		{"metadata nested 100 deep", with(t, `"featureType":"marker"`, `"featureType":`+deep(100)), nil, ErrTooDeep, `levels at byte`},
		{"objects nested 100 deep", with(t, `"value":"x"`, `"value":`+strings.Repeat(`{"a":`, 100)+`1`+strings.Repeat(`}`, 100)), nil, ErrTooDeep, `levels at byte`},
		{"nested deep in a batch", opWith(`"verb":"batch","operations":[` + strings.Replace(sub, `"value":1`, `"value":`+deep(80), 1) + `]`), nil, ErrTooDeep, `levels at byte`},
	}
	names := map[string]bool{}
	for _, tc := range tests {
		if names[tc.name] {
			t.Fatalf("two cases named %q", tc.name)
		}
		names[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{}
			if tc.opts != nil {
				tc.opts(&opts)
			}
			r := validationReplica(t, opts)
			before := viewOf(r)
			res, err := r.Receive([]byte(tc.msg))
			checkError(t, err, tc.code, tc.quoted)
			if len(res.Changes) != 0 || len(res.Replies) != 0 {
				t.Errorf("an error with a result: %+v", res)
			}
			if after := viewOf(r); !after.equal(before) {
				t.Errorf("the replica changed\nbefore %+v\nafter  %+v", before, after)
			}
			// And it keeps working.
			if _, err := r.Receive([]byte(good)); err != nil {
				t.Errorf("the valid message after the error: %v", err)
			}
		})
	}
	// Every sentinel a message can provoke has a case.
	for _, s := range []error{ErrInvalidJSON, ErrUnknownVerb, ErrUnknownSubject, ErrUnknownKind, ErrBadMessage,
		ErrBadMetadata, ErrBadKey, ErrBadValue, ErrBadHLC, ErrClockDrift, ErrTooLarge, ErrTooDeep} {
		if !slices.ContainsFunc(tests, func(c struct {
			name   string
			msg    string
			opts   func(*Options)
			code   error
			quoted string
		}) bool {
			return c.code == s
		}) {
			t.Errorf("no case for %v", s)
		}
	}
}

func TestLocalEditValidation(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(r *Replica) error
		code   error
		quoted string
	}{
		{"unknown subject", func(r *Replica) error {
			_, err := r.Update("layer", metaL1, "name", `1`)
			return err
		}, ErrUnknownSubject, `"layer"`},
		{"metadata not JSON", func(r *Replica) error {
			_, err := r.Update("feature", `{"id":"f1",`, "name", `1`)
			return err
		}, ErrInvalidJSON, `{\"id\":\"f1\",`},
		{"metadata without layerId", func(r *Replica) error {
			_, err := r.Update("feature", `{"id":"f1"}`, "name", `1`)
			return err
		}, ErrBadMetadata, `metadata.layerId`},
		{"metadata an array", func(r *Replica) error {
			_, err := r.Delete("datalayer", `["L1"]`)
			return err
		}, ErrBadMetadata, `"[\"L1\"]"`},
		{"empty key", func(r *Replica) error {
			_, err := r.Update("feature", metaF1, "", `1`)
			return err
		}, ErrBadKey, `empty key`},
		{"empty part", func(r *Replica) error {
			_, err := r.Unset("feature", metaF1, "properties.")
			return err
		}, ErrBadKey, `"properties."`},
		{"trailing backslash", func(r *Replica) error {
			_, err := r.Update("feature", metaF1, `properties.x\`, `1`)
			return err
		}, ErrBadKey, `"properties.x\\"`},
		{"value not JSON", func(r *Replica) error {
			_, err := r.Update("feature", metaF1, "properties.name", `oak`)
			return err
		}, ErrInvalidJSON, `"oak"`},
		{"value with trailing text", func(r *Replica) error {
			_, err := r.Update("feature", metaF1, "properties.name", `"oak" "elm"`)
			return err
		}, ErrInvalidJSON, `"\"oak\" \"elm\""`},
		{"update with an empty value", func(r *Replica) error {
			_, err := r.Update("feature", metaF1, "properties.name", ``)
			return err
		}, ErrBadValue, `Unset`},
		{"upsert of a non-object", func(r *Replica) error {
			_, err := r.Upsert("feature", metaF1, `[1,2]`)
			return err
		}, ErrBadValue, `"[1,2]"`},
		// A key or a value an upsert or delete would ignore: meaning to remove one key, the
		// caller would delete the whole object.
		{"delete with a key", func(r *Replica) error {
			_, err := r.Apply(Edit{Verb: VerbDelete, Subject: "feature", Metadata: metaF1, Key: "properties.name"})
			return err
		}, ErrBadKey, `delete takes no key`},
		{"delete with a value", func(r *Replica) error {
			_, err := r.Apply(Edit{Verb: VerbDelete, Subject: "feature", Metadata: metaF1, Value: `1`})
			return err
		}, ErrBadValue, `delete takes no value`},
		{"upsert with a key", func(r *Replica) error {
			_, err := r.Apply(Edit{Verb: VerbUpsert, Subject: "feature", Metadata: metaF1, Key: "properties", Value: `{"name":"x"}`})
			return err
		}, ErrBadKey, `upsert takes no key`},
		{"seed of a non-object", func(r *Replica) error {
			_, err := r.Seed("feature", metaF1, `"saved"`)
			return err
		}, ErrBadValue, `"\"saved\""`},
		{"value too deep", func(r *Replica) error {
			_, err := r.Update("feature", metaF1, "properties.name", strings.Repeat("[", 65)+strings.Repeat("]", 65))
			return err
		}, ErrTooDeep, `levels at byte`},
		{"key too long", func(r *Replica) error {
			_, err := r.Update("feature", metaF1, strings.Repeat("k", 1025), `1`)
			return err
		}, ErrTooLarge, `"kkkk`},
		{"edit verb batch", func(r *Replica) error {
			_, err := r.Apply(Edit{Verb: VerbBatch, Subject: "map", Metadata: `{}`})
			return err
		}, ErrUnknownVerb, `"batch"`},
		{"commit without a batch", func(r *Replica) error { return r.CommitBatch() }, ErrBadState, `no batch`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := validationReplica(t, Options{})
			before := viewOf(r)
			canUndo := r.CanUndo()
			checkError(t, tc.edit(r), tc.code, tc.quoted)
			if after := viewOf(r); !after.equal(before) {
				t.Errorf("the replica changed\nbefore %+v\nafter  %+v", before, after)
			}
			if r.CanUndo() != canUndo {
				t.Error("a failed edit made an undo step")
			}
		})
	}
	t.Run("start twice", func(t *testing.T) {
		r := validationReplica(t, Options{})
		if err := r.StartBatch(); err != nil {
			t.Fatal(err)
		}
		checkError(t, r.StartBatch(), ErrBadState, `already open`)
	})
}

func TestOptionsValidation(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"peer id with a space", Options{PeerID: "a b"}},
		{"peer id too long", Options{PeerID: strings.Repeat("p", hlc.MaxPeerLen+1)}},
		{"negative drift", Options{MaxDrift: -1}},
		{"negative limit", Options{Limits: Limits{MaxMessageBytes: -1, MaxDepth: 64, MaxBatch: 1, MaxKeyBytes: 1, MaxKeyParts: 1}}},
		{"depth 2", Options{Limits: Limits{MaxMessageBytes: 1, MaxDepth: 2, MaxBatch: 1, MaxKeyBytes: 1, MaxKeyParts: 1}}},
		{"a limit left zero", Options{Limits: Limits{MaxMessageBytes: 100}}},
		{"negative undo depth", Options{UndoDepth: -1}},
		{"duplicate subject", Options{Subjects: []Subject{{Name: "map"}, {Name: "map"}}}},
		{"empty subject name", Options{Subjects: []Subject{{Name: ""}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewReplica(tc.opts)
			checkError(t, err, ErrBadOption, "")
		})
	}
	r, err := NewReplica(DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if len(r.PeerID()) != 36 {
		t.Errorf("default peer id %q is not a UUID", r.PeerID())
	}
}

func TestCode(t *testing.T) {
	if Code(nil) != "" {
		t.Error("Code(nil)")
	}
	if Code(errors.New("x")) != "internal" {
		t.Error("Code of a foreign error")
	}
	e := newError(ErrBadKey, `empty part in key "a..b"`)
	if Code(e) != "bad_key" || e.Error() != `bad_key: empty part in key "a..b"` || !errors.Is(e, ErrBadKey) {
		t.Errorf("%v", e)
	}
	wrapped := errors.Join(errors.New("context"), e)
	if Code(wrapped) != "bad_key" {
		t.Errorf("Code through a wrapper = %q", Code(wrapped))
	}
	if got := quote(strings.Repeat("x", 100)); !strings.HasSuffix(got, `…"`) || len(got) > 70 {
		t.Errorf("quote cuts long input: %s", got)
	}
}

func TestVerb(t *testing.T) {
	for _, v := range []Verb{VerbUpdate, VerbUpsert, VerbDelete, VerbBatch} {
		got, ok := parseVerb(v.String())
		if !ok || got != v {
			t.Errorf("parseVerb(%q) = %v, %v", v.String(), got, ok)
		}
	}
	if s := Verb(0).String(); s != "verb(0)" {
		t.Errorf("Verb(0) = %q", s)
	}
	if s := Verb(9).String(); s != "verb(9)" {
		t.Errorf("Verb(9) = %q", s)
	}
	for _, s := range []string{"", "Update", "ListOperationsRequest", "verb(1)"} {
		if _, ok := parseVerb(s); ok {
			t.Errorf("parseVerb(%q) accepted", s)
		}
	}
}

func TestParseSeq(t *testing.T) {
	tests := []struct {
		raw  string
		want uint64
		ok   bool
	}{
		{"1", 1, true}, {"12", 12, true}, {"9007199254740991", 1<<53 - 1, true},
		{"0", 0, false}, {"", 0, false}, {"01", 0, false}, {"-1", 0, false}, {"1.0", 0, false},
		{"1e3", 0, false}, {"9007199254740992", 0, false}, {"99999999999999999999", 0, false},
		{`"1"`, 0, false}, {"null", 0, false}, {"+1", 0, false},
	}
	for _, tc := range tests {
		got, ok := parseSeq(tc.raw)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("parseSeq(%q) = %d, %v; want %d, %v", tc.raw, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParsePath(t *testing.T) {
	lim := DefaultLimits()
	tests := []struct {
		key  string
		want []string // nil: an error
		code error
	}{
		{"geometry", []string{"geometry"}, nil},
		{"properties.name", []string{"properties", "name"}, nil},
		{"properties._umap_options.color", []string{"properties", "_umap_options", "color"}, nil},
		{`properties.a\.b`, []string{"properties", "a.b"}, nil},
		{`a\\b`, []string{`a\b`}, nil},
		{`a\\.b`, []string{`a\`, "b"}, nil},
		{`\*\?\|\#\@\!`, []string{`*?|#@!`}, nil},
		{`a\b`, []string{"ab"}, nil}, // a backslash before any other byte keeps the byte
		{"geometry.coordinates.0", []string{"geometry", "coordinates", "0"}, nil},
		{"Café.名前", []string{"Café", "名前"}, nil},
		{" . ", []string{" ", " "}, nil},
		{"", nil, ErrBadKey},
		{".", nil, ErrBadKey},
		{"a.", nil, ErrBadKey},
		{".a", nil, ErrBadKey},
		{"a..b", nil, ErrBadKey},
		{`a\`, nil, ErrBadKey},
		{`a.\`, nil, ErrBadKey},
		{`a\..`, nil, ErrBadKey},
		{strings.Repeat("k", 1024), []string{strings.Repeat("k", 1024)}, nil},
		{strings.Repeat("k", 1025), nil, ErrTooLarge},
		{strings.TrimSuffix(strings.Repeat("p.", 32), "."), slices.Repeat([]string{"p"}, 32), nil},
		{strings.TrimSuffix(strings.Repeat("p.", 33), "."), nil, ErrTooLarge},
		{strings.TrimSuffix(strings.Repeat(`p\..`, 33), "."), nil, ErrTooLarge},
	}
	for _, tc := range tests {
		got, err := parsePath(tc.key, lim)
		if tc.want == nil {
			if !errors.Is(err, tc.code) {
				t.Errorf("parsePath(%q) = %q, %v; want %v", tc.key, got, err, tc.code)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("parsePath(%q) = %q, %v; want %q", tc.key, got, err, tc.want)
		}
		// JoinPath gives a key that parses back to the same parts.
		back, err := parsePath(JoinPath(got...), lim)
		if err != nil || !slices.Equal(back, got) {
			t.Errorf("parsePath(JoinPath(%q)) = %q, %v", got, back, err)
		}
	}
}

func TestJoinPath(t *testing.T) {
	tests := []struct {
		parts []string
		want  string
	}{
		{[]string{"properties", "name"}, "properties.name"},
		{[]string{"properties", "a.b"}, `properties.a\.b`},
		{[]string{`a\b`}, `a\\b`},
		{[]string{"*?|#@!"}, `\*\?\|\#\@\!`},
		{[]string{"Café"}, "Café"},
		{nil, ""},
	}
	for _, tc := range tests {
		if got := JoinPath(tc.parts...); got != tc.want {
			t.Errorf("JoinPath(%q) = %q, want %q", tc.parts, got, tc.want)
		}
	}
}

// TestOperationRoundTrip: an operation received and sent on (a sync response to a plain
// uMap peer) is the operation that came in, in canonical form, without kind and sender.
func TestOperationRoundTrip(t *testing.T) {
	h := func(ms int64) string { return `"hlc":"` + stamp(ms, 0, "bob") + `"` }
	tests := []struct{ name, op string }{
		{"update", `{"verb":"update","subject":"feature","metadata":{"id":"f1","layerId":"L1","featureType":"marker"},"key":"properties.name","value":"Café",` + h(1) + `,"seq":1}`},
		{"update to null", `{"verb":"update","subject":"feature","metadata":{"id":"f1","layerId":"L1"},"key":"properties.color","value":null,` + h(2) + `,"seq":2}`},
		{"unset", `{"verb":"update","subject":"map","metadata":{},"key":"properties.zoom",` + h(3) + `,"seq":3}`},
		{"upsert", `{"verb":"upsert","subject":"datalayer","metadata":{"id":"L2"},"value":{"type":"FeatureCollection","features":[],"_umap_options":{"name":"Trees"}},` + h(4) + `,"seq":4}`},
		{"delete", `{"verb":"delete","subject":"datalayerpermissions","metadata":{"id":"L3"},` + h(5) + `,"seq":5}`},
		{"batch", `{"verb":"batch","operations":[{"verb":"upsert","subject":"feature","metadata":{"id":"f2","layerId":"L1"},"value":{"type":"Feature"}},{"verb":"update","subject":"feature","metadata":{"id":"f2","layerId":"L1"},"key":"properties.name","value":"x"}],` + h(6) + `,"seq":6}`},
		{"seq-less", `{"verb":"update","subject":"mappermissions","metadata":{},"key":"edit_status","value":3,` + h(7) + `}`},
		{"escaped key and unknown fields", `{"verb":"update","subject":"map","metadata":{"x":[1,{"b":2,"a":1}]},"key":"a\\.b","value":{"z":1,"y":"\u00e9\n"},"x-extra":[true],` + h(8) + `,"seq":7}`},
		{"numbers kept as written", `{"verb":"update","subject":"map","metadata":{},"key":"n","value":[1.0,1e3,-0,0.10,12345678901234567890],` + h(9) + `,"seq":8}`},
		{"delete with a stray key and value", `{"verb":"delete","subject":"datalayer","metadata":{"id":"L4"},"key":"name","value":1,` + h(10) + `,"seq":9}`},
		{"upsert with a stray key", `{"verb":"upsert","subject":"datalayer","metadata":{"id":"L5"},"key":"name","value":{"a":1},` + h(11) + `,"seq":10}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestReplica(t, "relay", hlc.NewManualClock(t0+1000))
			msg := `{"kind":"OperationMessage","sender":"bob",` + tc.op[1:]
			if _, err := r.Receive([]byte(msg)); err != nil {
				t.Fatal(err)
			}
			resp := recv(t, r, umapRequest("umapjs", "relay", "")).Replies[0]
			got := gjson.GetBytes(resp, "message.operations.0").Raw
			want, err := canonicalJSON(tc.op, 64)
			if err != nil {
				t.Fatal(err)
			}
			gotC, err := canonicalJSON(got, 64)
			if err != nil {
				t.Fatalf("%s: %v", got, err)
			}
			if gotC != want {
				t.Errorf("round trip\n got %s\nwant %s", gotC, want)
			}
		})
	}
}

func TestDefaultSubjects(t *testing.T) {
	tests := []struct {
		subject, meta, want string
		err                 error
	}{
		{"map", `{}`, "map", nil},
		{"map", `{"id":"ignored"}`, "map", nil},
		{"mappermissions", `{}`, "mappermissions", nil},
		{"datalayer", `{"id":"L1"}`, "datalayer\x00L1", nil},
		{"datalayerpermissions", `{"id":"L1"}`, "datalayerpermissions\x00L1", nil},
		{"feature", `{"id":"f1","layerId":"L1","featureType":"marker"}`, "feature\x00L1\x00f1", nil},
		{"feature", `{"id":"f\u00e9","layerId":"L1"}`, "feature\x00L1\x00fé", nil},
		{"feature", `{"id":"f1"}`, "", ErrBadMetadata},
		{"datalayer", `{"id":1}`, "", ErrBadMetadata},
	}
	subs := map[string]*Subject{}
	for _, s := range DefaultSubjects() {
		subs[s.Name] = &s
	}
	for _, tc := range tests {
		meta, err := canonicalJSON(tc.meta, 64)
		if err != nil {
			t.Fatal(err)
		}
		got, err := objectKey(subs[tc.subject], meta)
		if !errors.Is(err, tc.err) || got != tc.want {
			t.Errorf("objectKey(%s, %s) = %q, %v; want %q, %v", tc.subject, tc.meta, got, err, tc.want, tc.err)
		}
	}
}

func TestCustomSubjects(t *testing.T) {
	r, err := NewReplica(Options{PeerID: "p", Wall: hlc.NewManualClock(t0), Subjects: []Subject{{Name: "note", IDFields: []string{"slug"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Update("note", `{"slug":"a"}`, "text", `"hi"`); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Update("feature", metaF1, "text", `"hi"`); !errors.Is(err, ErrUnknownSubject) {
		t.Errorf("a subject outside the table: %v", err)
	}
	if got := r.State(); got != `[{"subject":"note","metadata":{"slug":"a"},"value":{"text":"hi"}}]` {
		t.Errorf("state %s", got)
	}
}

var updateGolden = flag.Bool("update", false, "rewrite the golden files of testdata/golden")

type goldenMsg struct {
	name string
	msg  []byte
}

// goldenWire returns the messages a scripted session produces, named by golden file.
func goldenWire(t *testing.T) []goldenMsg {
	var out []goldenMsg
	const alicePeer = "1b9f6a3e-6c2d-4e57-9a0b-2f4c8d7e1a01"
	const bobPeer = "5e0d2c71-93a4-4b8f-8e16-7d3a9c0b4f02"
	wall := hlc.NewManualClock(t0)
	alice := newTestReplica(t, alicePeer, wall)
	bob := newTestReplica(t, bobPeer, wall)
	alice.session, bob.session = "s0a11ce0", "s0b0b000" // random otherwise
	layer := `{"id":"606d26bd-230f-4d3e-a2a7-0c3caed71548"}`
	marker := `{"id":"UxNjQ","layerId":"606d26bd-230f-4d3e-a2a7-0c3caed71548","featureType":"marker"}`
	polygon := `{"id":"Mzg5N","layerId":"606d26bd-230f-4d3e-a2a7-0c3caed71548","featureType":"polygon"}`
	one := func(name string, edit func() error) {
		t.Helper()
		wall.Advance(1000)
		if err := edit(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		msgs := alice.Flush()
		if len(msgs) != 1 {
			t.Fatalf("%s: %d messages", name, len(msgs))
		}
		out = append(out, goldenMsg{name, msgs[0]})
	}
	ch := func(_ []Change, err error) error { return err }
	one("upsert_datalayer", func() error {
		return ch(alice.Upsert("datalayer", layer, `{"type":"FeatureCollection","features":[],"_umap_options":{"name":"Arbres","displayOnLoad":true}}`))
	})
	one("upsert_feature", func() error {
		return ch(alice.Upsert("feature", marker, `{"type":"Feature","geometry":{"type":"Point","coordinates":[2.3522,48.8566]},"properties":{"name":"Chêne","_umap_options":{"color":"DarkGreen"}},"id":"UxNjQ"}`))
	})
	one("update", func() error { return ch(alice.Update("feature", marker, "properties.name", `"Café"`)) })
	one("update_nested", func() error {
		return ch(alice.Update("feature", marker, "properties._umap_options.color", `"Crimson"`))
	})
	one("update_null", func() error { return ch(alice.Update("feature", marker, "properties.description", `null`)) })
	one("update_escaped_key", func() error { return ch(alice.Update("map", `{}`, `properties.a\.b`, `{"x":1}`)) })
	one("unset", func() error { return ch(alice.Unset("feature", marker, "properties.description")) })
	one("batch", func() error {
		if err := alice.StartBatch(); err != nil {
			return err
		}
		if err := ch(alice.Upsert("feature", polygon, `{"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[2,48],[3,48],[3,49],[2,48]]]},"properties":{}}`)); err != nil {
			return err
		}
		if err := ch(alice.Update("feature", polygon, "properties.name", `"Parc"`)); err != nil {
			return err
		}
		if err := ch(alice.Update("feature", marker, "geometry", `{"type":"Point","coordinates":[2.35,48.85]}`)); err != nil {
			return err
		}
		return alice.CommitBatch()
	})
	one("delete", func() error { return ch(alice.Delete("feature", polygon)) })

	// bob joins knowing nothing; then, knowing the first two operations, asks for the rest —
	// as a mapcrdt peer (vector: the compact response) and as uMap's plain Journal
	// (lastKnownHLC only: the response in uMap's format).
	out = append(out, goldenMsg{"list_operations_request_empty", bob.SyncRequest(alicePeer)})
	for _, m := range out[:2] {
		recv(t, bob, m.msg)
	}
	req := bob.SyncRequest(alicePeer)
	out = append(out, goldenMsg{"list_operations_request", req})
	out = append(out, goldenMsg{"list_operations_response_compact", recv(t, alice, req).Replies[0]})
	lastKnown := gjson.GetBytes(out[1].msg, "hlc").String()
	out = append(out, goldenMsg{"list_operations_response", recv(t, alice, umapRequest(bobPeer, alicePeer, lastKnown)).Replies[0]})
	out = append(out, goldenMsg{"saved_message", alice.SavedMessage()})
	return out
}

// TestGoldenWireFormat compares the messages of a scripted session with
// testdata/golden/*.json. After an intended change of the wire format, rewrite them with
//
//	go test ./crdt -run Golden -update
//
// and review the diff: every peer running uMap's Journal reads these messages.
func TestGoldenWireFormat(t *testing.T) {
	msgs := goldenWire(t)
	dir := filepath.Join("testdata", "golden")
	if *updateGolden {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range msgs {
		t.Run(m.name, func(t *testing.T) {
			path := filepath.Join(dir, m.name+".json")
			got := append(append([]byte(nil), m.msg...), '\n')
			if *updateGolden {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./crdt -run Golden -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s changed\n got %s\nwant %s", path, got, want)
			}
			if !json.Valid(want) {
				t.Errorf("%s is not JSON", path)
			}
			// Every golden message is accepted by a fresh replica.
			r := newTestReplica(t, "golden-reader", hlc.NewManualClock(t0+60_000))
			if _, err := r.Receive(bytes.TrimSpace(want)); err != nil {
				t.Errorf("a fresh replica rejects %s: %v", path, err)
			}
		})
	}
	// No stale golden file is left behind.
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		if !slices.ContainsFunc(msgs, func(m goldenMsg) bool { return m.name == name }) {
			t.Errorf("%s is no longer produced", f)
		}
	}
}

// TestAppendKeyIsAppendKeyJSON: the key text remembered for an interned path, as JSON, is
// what appendKeyJSON writes for the path — escaped dots, backslashes, quotes, controls and
// other bytes — and a prefix of an interned path (same first element) is written, not read.
func TestAppendKeyIsAppendKeyJSON(t *testing.T) {
	d := &decoder{lim: DefaultLimits()}
	for _, key := range []string{"properties.name", `properties.a\.b`, `x\\y.z`, "a.\"q\".b", "c.\x01", "é.名前", `a\*b.\?`, "geometry"} {
		path, err := d.parseKey(key)
		if err != nil {
			t.Fatalf("%q: %v", key, err)
		}
		for _, p := range [][]string{path, path[:1]} {
			got, want := string(d.appendKey(nil, p)), string(appendKeyJSON(nil, p))
			if got != want {
				t.Errorf("%q %q: appendKey %s, appendKeyJSON %s", key, p, got, want)
			}
		}
	}
	var none *decoder
	if got := string(none.appendKey(nil, []string{"a.b", "c"})); got != `"a\\.b.c"` {
		t.Errorf("nil decoder: %s", got)
	}
}

// TestParseKeySlots: keys met again (from the slots, from the map, or parsed anew when
// their slot holds another key) give the interned path of their first parse, equal to a
// fresh parse; a bad key is refused every time and never remembered.
func TestParseKeySlots(t *testing.T) {
	d := &decoder{lim: DefaultLimits()}
	keys := []string{"properties.name", "properties.description", "properties._umap_options.color",
		"properties.size", "geometry", `a\.b`, "ab", "ba", "x.y.z", "properties.names", "p"}
	for i := 0; i < 200; i++ {
		keys = append(keys, "properties.k"+strconv.Itoa(i))
	}
	first := map[string][]string{}
	rng := rand.New(rand.NewPCG(5, 6))
	for n := 0; n < 20000; n++ {
		key := keys[rng.IntN(len(keys))]
		if n%7 == 0 {
			key = keys[rng.IntN(5)] // the usual few, again and again
		}
		got, err := d.parseKey(key)
		if err != nil {
			t.Fatalf("%q: %v", key, err)
		}
		if p, ok := first[key]; ok {
			if &p[0] != &got[0] || len(p) != len(got) {
				t.Fatalf("%q: another path the second time: %q, first %q", key, got, p)
			}
		} else {
			first[key] = got
			want, _ := parsePath(key, d.lim)
			if !slices.Equal(got, want) {
				t.Fatalf("%q: %q, want %q", key, got, want)
			}
		}
		if _, err := d.parseKey("a..b"); err == nil {
			t.Fatal(`"a..b" accepted`)
		}
	}
	for _, s := range d.keySlots {
		if s.path != nil && !slices.Equal(s.path, first[s.key]) {
			t.Fatalf("slot %q holds %q", s.key, s.path)
		}
	}
}

func TestTextEqual(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for n := 0; n <= 40; n++ {
		a := make([]byte, n)
		for i := range a {
			a[i] = byte(rng.IntN(256))
		}
		if !textEqual(string(a), string(slices.Clone(a))) {
			t.Fatalf("len %d: equal texts compare unequal", n)
		}
		for i := range a { // one byte changed, anywhere: unequal, and (almost surely) another hash
			b := slices.Clone(a)
			b[i] ^= 1 << rng.IntN(8)
			if textEqual(string(a), string(b)) {
				t.Fatalf("len %d: a change at %d compares equal", n, i)
			}
			if textHash(string(a)) == textHash(string(b)) {
				t.Fatalf("len %d: a change at %d keeps the hash", n, i)
			}
		}
		if n > 0 && textEqual(string(a), string(a[:n-1])) {
			t.Fatalf("len %d: a prefix compares equal", n)
		}
	}
}

// TestKnownMetaCollision: an object that holds the hash of another metadata text (a hash
// collision, made by hand) is not taken for that text's object, received or edited.
func TestKnownMetaCollision(t *testing.T) {
	wall := fuzzWall()
	r := newTestReplica(t, fuzzPeerA, wall)
	metaA, metaB := `{"id":"a","layerId":"L"}`, `{"id":"b","layerId":"L"}`
	for _, m := range []string{metaA, metaA, metaB} { // each remembered when made
		if _, err := r.Update("feature", m, "properties.name", `"x"`); err != nil {
			t.Fatal(err)
		}
	}
	a := r.dec.known(metaA)
	if a == nil || r.dec.known(metaB) == nil {
		t.Fatal("an object made by an edit is not remembered")
	}
	r.dec.byMeta = table64[metaSlot]{} // A alone, then B's hash made to lead to A
	r.dec.remember(a)
	if !r.dec.byMeta.add(metaKey(metaB), metaSlot{a, unsafe.StringData(a.meta)}) { // B's hash now leads to A
		t.Fatal("B's hash is taken")
	}
	if s := r.dec.byMeta.get(metaKey(metaB)); s == nil || s.obj != a {
		t.Fatal("B's hash does not lead to A")
	}
	hitA := r.metaCache.get(metaHitKey("feature", metaA))
	if hitA == nil || hitA.obj != a {
		t.Fatal("an object edited twice by one text is not in the edits' cache")
	}
	r.metaCache = table64[metaHit]{}
	// The edits' cache too: B's hash, and that of a datalayer named by A's text, lead to A.
	r.metaCache.add(metaHitKey("feature", metaB), *hitA)
	r.metaCache.add(metaHitKey("datalayer", metaA), *hitA)
	if _, err := r.Update("datalayer", metaA, "name", `"layer"`); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := r.Get("datalayer", metaA, "name"); got != `"layer"` {
		t.Fatalf("the datalayer's name %s", got)
	}
	if got, ok, _ := r.Get("feature", metaA, "name"); ok {
		t.Fatalf("the datalayer's name written on feature A: %s", got)
	}
	if got := r.dec.known(metaB); got != nil {
		t.Fatalf("known(B) = the object of %s", got.meta)
	}
	if _, err := r.Update("feature", metaB, "properties.name", `"edited"`); err != nil {
		t.Fatal(err)
	}
	msg := `{"kind":"OperationMessage","verb":"update","subject":"feature","metadata":` + metaB + `,"key":"properties.color","value":"red","hlc":"` + stamp(20_000, 0, "bob") + `","seq":1}`
	if _, err := r.Receive([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got, _, _ := r.Get("feature", metaA, "properties")
	if got != `{"name":"x"}` {
		t.Fatalf("A's properties %s: written through B's name", got)
	}
	if got, _, _ = r.Get("feature", metaB, "properties"); got != `{"color":"red","name":"edited"}` {
		t.Fatalf("B's properties %s", got)
	}
}

// TestLongMetadataIsNotRemembered: byMeta's key holds a text's length in 16 bits, so a
// metadata text longer than that is never remembered nor looked up there — where two texts
// of different lengths could share a key and one be read for the other's length — and its
// object is found by its identity as any other, received or edited.
func TestLongMetadataIsNotRemembered(t *testing.T) {
	r := newTestReplica(t, fuzzPeerA, fuzzWall())
	long := `{"id":"a","layerId":"L","note":"` + strings.Repeat("n", maxMetaKeyLen) + `"}`
	short := `{"id":"b","layerId":"L"}`
	for i, m := range []string{long, long, short, short, long} {
		msg := `{"kind":"OperationMessage","verb":"update","subject":"feature","metadata":` + m + `,"key":"properties.n","value":` + strconv.Itoa(i) + `,"hlc":"` + stamp(20_000, uint32(i), "bob") + `","seq":` + strconv.Itoa(i+1) + `}`
		if _, err := r.Receive([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Update("feature", m, "properties.e", strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	if r.dec.known(long) != nil {
		t.Fatal("a metadata text longer than maxMetaKeyLen is remembered")
	}
	if r.dec.known(short) == nil || r.dec.byMeta.n != 1 {
		t.Fatalf("byMeta holds %d texts, want the short one", r.dec.byMeta.n)
	}
	if r.objects.len() != 2 {
		t.Fatalf("%d objects, want 2", r.objects.len())
	}
	for m, want := range map[string]string{long: `{"e":4,"n":4}`, short: `{"e":3,"n":3}`} {
		if got, _, _ := r.Get("feature", m, "properties"); got != want {
			t.Fatalf("properties %s, want %s", got, want)
		}
	}
}

// TestFlatValuesIsMemberValues: on valid metadata objects — flat ones of plain strings,
// and ones with escapes, numbers, nested values, whitespace, repeated names — flatValues
// either declines or finds what the general member walk finds.
func TestFlatValuesIsMemberValues(t *testing.T) {
	rng := rand.New(rand.NewPCG(81, 82))
	fields := []string{"layerId", "id"}
	names := []string{"id", "layerId", "featureType", "i", "layerI", "idx"}
	values := []string{`"a"`, `"606d26bd-230f"`, `""`, `"x\"y"`, `"caf\u00e9"`, `"é"`, `12`, `null`, `{"id":"n"}`, `["id"]`}
	taken, declined := 0, 0
	for n := 0; n < 20000; n++ {
		var b strings.Builder
		b.WriteByte('{')
		for m := rng.IntN(5); m > 0; m-- {
			b.WriteString(`"` + names[rng.IntN(len(names))] + `"`)
			if rng.IntN(20) == 0 {
				b.WriteByte(' ')
			}
			b.WriteString(":" + values[rng.IntN(len(values))])
			if m > 1 {
				b.WriteByte(',')
			}
		}
		b.WriteByte('}')
		meta := b.String()
		if _, err := canonicalJSON(meta, 64); err != nil {
			t.Fatalf("generator gave invalid JSON %s: %v", meta, err)
		}
		got, want := make([]string, 2), make([]string, 2)
		memberValues(meta, fields, want)
		if !flatValues(meta, fields, got) {
			declined++
			continue
		}
		taken++
		if !slices.Equal(got, want) {
			t.Fatalf("%s: flatValues %q, memberValues %q", meta, got, want)
		}
	}
	if taken < 1000 || declined < 1000 {
		t.Fatalf("flatValues took %d texts and declined %d: the generator misses a side", taken, declined)
	}
}

// TestKnownPeerTSIsParse: the clock texts of the peer named last are read by comparing its
// id and reading the numbers only; on texts built to confuse that (other ids, ids inside
// ids, colons in ids, bad numbers), whatever knownPeerTS takes, Parse reads the same.
func TestKnownPeerTSIsParse(t *testing.T) {
	peers := []string{"p", "peer-1", "a:b", "7d3c6d0e-55aa-4c1e-9b0e-3f1d2c4b5a69", "~x"}
	numbers := []string{"0:0", "1727193549:42", "01:2", "1:", ":1", "1:2:3", "9007199254740992:1", "5:2147483648", "", "1"}
	taken := 0
	for _, last := range peers {
		var d decoder
		d.peers = map[string]string{last: last}
		d.lastPeer = last
		for _, num := range numbers {
			for _, id := range append(peers, "xp", "1:2:p", "b", "a:b:c") {
				for _, text := range []string{num + ":" + id, num + id} {
					got, ok := d.knownPeerTS(text)
					if !ok {
						continue
					}
					taken++
					want, err := hlc.Parse(text)
					if err != nil || got != want {
						t.Fatalf("last %q, %q: knownPeerTS %v, Parse %v %v", last, text, got, want, err)
					}
					if unsafe.StringData(got.Peer) != unsafe.StringData(last) {
						t.Fatalf("%q: the peer is not the interned one", text)
					}
				}
			}
		}
	}
	if taken < 10 {
		t.Fatalf("only %d texts taken", taken)
	}
}

// TestCheckDepthAtTheBound: a value as deep as a key of p parts leaves room for is taken, one
// level more is refused, however short the value (a value at most twice the room long is
// taken without a scan: each level takes two brackets).
func TestCheckDepthAtTheBound(t *testing.T) {
	lim := DefaultOptions().Limits
	nest := func(d int, inner string) string { return strings.Repeat("[", d) + inner + strings.Repeat("]", d) }
	for _, p := range []int{0, 1, 3, lim.MaxDepth - 1, lim.MaxDepth, lim.MaxDepth + 2} {
		path := make([]string, p)
		room := lim.MaxDepth - p
		for _, d := range []int{room - 1, room, room + 1, 1} {
			if d < 1 {
				continue
			}
			for _, inner := range []string{"", "0", `"` + strings.Repeat("x", 40) + `"`} {
				v := nest(d, inner)
				err := lim.checkDepth(v, path)
				if want := d > room; (err != nil) != want || (err != nil && !errors.Is(err, ErrTooDeep)) {
					t.Errorf("path of %d parts, value %d deep (%d bytes): %v, want refused %v", p, d, len(v), err, want)
				}
			}
		}
	}
}

// TestNewObjectsRememberedAtCommit: the objects a live message makes are found by their
// metadata text from the next message on; a call making more than rememberedAtCommit (a
// catch-up, a large batch) leaves its objects to be remembered when named again.
func TestNewObjectsRememberedAtCommit(t *testing.T) {
	for _, n := range []int{1, rememberedAtCommit, rememberedAtCommit + 1} {
		wall := fuzzWall()
		src, r := newTestReplica(t, "src", wall), newTestReplica(t, "dst", wall)
		metas := make([]string, n)
		if err := src.StartBatch(); err != nil {
			t.Fatal(err)
		}
		for i := range metas {
			metas[i] = `{"id":"f` + strconv.Itoa(i) + `","layerId":"L"}`
			if _, err := src.Update("feature", metas[i], "properties.n", strconv.Itoa(i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := src.CommitBatch(); err != nil {
			t.Fatal(err)
		}
		for _, m := range src.Flush() {
			kitRecv(t, r, m)
		}
		for _, m := range metas {
			if got, want := r.dec.known(m) != nil, n <= rememberedAtCommit; got != want {
				t.Fatalf("%d new objects in one message: %s remembered %v, want %v", n, m, got, want)
			}
		}
		kitSameState(t, src, r)
	}
}

// TestTextHashIsSeeded: textHash starts from the process's seed — another seed, other
// hashes for the same texts (the objects table and byMeta then place them elsewhere).
func TestTextHashIsSeeded(t *testing.T) {
	old := hashSeed
	defer func() { hashSeed = old }()
	texts := []string{"", "a", "feature\x00L\x00f1", `{"id":"f1","layerId":"606d26bd-230f-4d3e-a2a7-0c3caed71548"}`}
	hashSeed = 1
	var first []uint64
	for _, s := range texts {
		first = append(first, textHash(s))
	}
	hashSeed = 2
	for i, s := range texts {
		if textHash(s) == first[i] {
			t.Fatalf("%q hashes to %#x under both seeds", s, first[i])
		}
	}
}

// TestLoneSurrogateRefused: JSON may escape a lone UTF-16 surrogate, which decodes as
// U+FFFD: ids "h\ud800" and "h\udc00" would name one feature, keys likewise. A message
// naming one is refused (the JS glue refuses the same locally), and changes nothing.
func TestLoneSurrogateRefused(t *testing.T) {
	r := kitReplica(t, "bob", hlc.NewManualClock(kitT0))
	before := r.State()
	msg := func(id, key string) []byte {
		return []byte(`{"kind":"OperationMessage","sender":"alice","verb":"update","subject":"feature",` +
			`"metadata":{"id":"` + id + `","layerId":"L1"},"key":"` + key + `","value":1,"hlc":"1727184449000:0:alice","seq":1}`)
	}
	for _, tc := range []struct{ id, key, code string }{
		{`h\ud800`, "properties.n", "bad_metadata"},
		{`h\udc00`, "properties.n", "bad_metadata"},
		{"h", `properties.k\ud800`, "bad_key"},
		{"h", `properties.k\udbff`, "bad_key"},
	} {
		if _, err := r.Receive(msg(tc.id, tc.key)); Code(err) != tc.code {
			t.Errorf("id %s key %s: error %v, want %s", tc.id, tc.key, err, tc.code)
		}
	}
	if r.State() != before {
		t.Errorf("a refused message changed the state: %s", r.State())
	}
	// A pair is one character, and welcome.
	kitRecv(t, r, msg(`h\ud83d\ude00`, `properties.k\ud83d\ude00`))
	if !strings.Contains(r.State(), "h😀") || !strings.Contains(r.State(), "k😀") {
		t.Errorf("an escaped pair should decode: %s", r.State())
	}
}

// TestOperationPassedOnBytes: README "Protocol": an operation passed on is JSON without
// whitespace, its known members sorted, the unknown ones after them as they came, every
// value canonical; a uMap batch's own subject and metadata are kept.
func TestOperationPassedOnBytes(t *testing.T) {
	h := `"hlc":"` + stamp(1, 0, "bob") + `"`
	tests := []struct{ name, in, want string }{
		{"unknown fields after the known ones",
			`{"zzz":{"b":1, "a":2},"verb":"update","value":{"y":1,"x":2},"subject":"map","metadata":{},"key":"k","aaa":[1],` + h + `,"seq":1}`,
			`{` + h + `,"key":"k","metadata":{},"seq":1,"subject":"map","value":{"x":2,"y":1},"verb":"update","zzz":{"a":2,"b":1},"aaa":[1]}`},
		{"a uMap batch's subject and metadata kept",
			`{"verb":"batch","subject":"feature","metadata":{"layerId":"L","id":"f"},"operations":[{"verb":"update","subject":"map","metadata":{},"key":"k","value":1}],` + h + `,"seq":1}`,
			`{` + h + `,"operations":[{"key":"k","metadata":{},"subject":"map","value":1,"verb":"update"}],"seq":1,"verb":"batch","metadata":{"id":"f","layerId":"L"},"subject":"feature"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestReplica(t, "relay", hlc.NewManualClock(t0+1000))
			if _, err := r.Receive([]byte(`{"kind":"OperationMessage","sender":"bob",` + tc.in[1:])); err != nil {
				t.Fatal(err)
			}
			resp := recv(t, r, umapRequest("umapjs", "relay", "")).Replies[0]
			if got := gjson.GetBytes(resp, "message.operations.0").Raw; got != tc.want {
				t.Errorf("passed on as\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

// TestLoneSurrogateElsewhereInAMessage: README "Guarantees and limits": a peer's message
// whose member names escape a lone surrogate — in its value, its metadata or an unknown
// field — is refused (bad_value), changing nothing; a string value, or a metadata string
// that is no identity, keeps its escape.
func TestLoneSurrogateElsewhereInAMessage(t *testing.T) {
	msg := func(meta, value, extra string) []byte {
		return []byte(`{"kind":"OperationMessage","sender":"alice","verb":"update","subject":"feature","metadata":` + meta +
			`,"key":"properties.n","value":` + value + extra + `,"hlc":"1727184449000:0:alice","seq":1}`)
	}
	const meta = `{"id":"h","layerId":"L1"}`
	for name, m := range map[string][]byte{
		"value member":    msg(meta, `{"\ud800":1}`, ""),
		"metadata member": msg(`{"id":"h","layerId":"L1","\udc00":1}`, `1`, ""),
		"unknown field":   msg(meta, `1`, `,"extra":{"\ud800":1}`),
	} {
		r := kitReplica(t, "bob", hlc.NewManualClock(kitT0))
		if _, err := r.Receive(m); Code(err) != "bad_value" {
			t.Errorf("%s: error %v, want bad_value", name, err)
		}
		if r.State() != "[]" || r.LogLen() != 0 {
			t.Errorf("%s: the refused message left %s", name, r.State())
		}
	}
	r := kitReplica(t, "bob", hlc.NewManualClock(kitT0))
	res := kitRecv(t, r, msg(`{"id":"h","layerId":"L1","x":"\udc00"}`, `"\ud800"`, ""))
	if len(res.Changes) != 1 || res.Changes[0].Metadata != `{"id":"h","layerId":"L1","x":"\udc00"}` || res.Changes[0].Value != `"\ud800"` {
		t.Errorf("the escapes of string values are kept as they came: %+v", res.Changes)
	}
}
