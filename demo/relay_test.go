package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
)

// startRelay serves a Relay on a test server; cleanup shuts it down and
// checks that every connection and room is gone.
func startRelay(t *testing.T, opts Options) (*Relay, *httptest.Server) {
	t.Helper()
	opts.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	relay := NewRelay(opts)
	srv := httptest.NewServer(relay)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := relay.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		srv.Close()
		relay.mu.Lock()
		defer relay.mu.Unlock()
		if len(relay.conns) != 0 || len(relay.rooms) != 0 {
			t.Errorf("after shutdown: %d connections, %d rooms", len(relay.conns), len(relay.rooms))
		}
		// Every connection's slot of MaxConns and MaxConnsPerIP came back, whatever ended
		// it (a refused handshake, a kick, a close, the shutdown): a slot lost for good
		// would have the relay refuse everyone once MaxConns were lost.
		if relay.open != 0 || len(relay.openBy) != 0 {
			t.Errorf("after shutdown: %d connection slots taken, by %v", relay.open, relay.openBy)
		}
	})
	return relay, srv
}

// client is a test WebSocket client.
type client struct {
	t  *testing.T
	ws *websocket.Conn
	id string
	// wait bounds each read and write (default 30 s), a guard against a hang only: no
	// test waits for it to pass (barrier asks for a pong instead), and a loaded machine
	// running the race detector may take seconds for one message. A test moving messages
	// of many megabytes raises it, for the race detector's slow scans of them.
	wait time.Duration
}

func dial(t *testing.T, srv *httptest.Server, mapName string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws/sync/"+mapName, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", mapName, err)
	}
	ws.SetReadLimit(64 << 20)
	t.Cleanup(func() { ws.CloseNow() })
	return &client{t: t, ws: ws, wait: 30 * time.Second}
}

// join dials mapName, joins with the JoinRequest fields extra, reads the
// JoinResponse and its own ListPeersResponse.
func join(t *testing.T, srv *httptest.Server, mapName string, extra string) (*client, map[string]any) {
	t.Helper()
	c := dial(t, srv, mapName)
	c.send(`{"kind":"JoinRequest","token":"t"` + extra + `}`)
	resp := c.expect("JoinResponse")
	c.id = resp["peer"].(string)
	c.expect("ListPeersResponse")
	return c, resp
}

func (c *client) send(msg string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), c.wait)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// trySend writes msg and returns the write's error.
func (c *client) trySend(msg string) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.wait)
	defer cancel()
	return c.ws.Write(ctx, websocket.MessageText, []byte(msg))
}

// expectClosedOrReset is expectClosed for a message the relay refuses while it is still
// being written: the relay closes with the rest of it unread, and the kernel may then
// reset the connection before the close frame is read — or the write itself fails.
// writeErr is the error of that write.
func (c *client) expectClosedOrReset(writeErr error, code websocket.StatusCode, want string) {
	c.t.Helper()
	if writeErr == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for writeErr == nil {
			_, _, writeErr = c.ws.Read(ctx)
		}
		var ce websocket.CloseError
		if errors.As(writeErr, &ce) {
			if ce.Code != code || !strings.Contains(ce.Reason, want) {
				c.t.Fatalf("%s: closed with %d %q, want %d containing %q", c.id, ce.Code, ce.Reason, code, want)
			}
			return
		}
	}
	if !errors.Is(writeErr, syscall.ECONNRESET) {
		c.t.Fatalf("%s: want close %d or a reset, got %v", c.id, code, writeErr)
	}
}

// read returns the next message's text.
func (c *client) read() string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), c.wait)
	defer cancel()
	_, data, err := c.ws.Read(ctx)
	if err != nil {
		c.t.Fatalf("%s: read: %v", c.id, err)
	}
	return string(data)
}

// expect reads the next message and checks its kind.
func (c *client) expect(kind string) map[string]any {
	c.t.Helper()
	text := c.read()
	var m map[string]any
	if err := json.Unmarshal([]byte(text), &m); err != nil || m["kind"] != kind {
		c.t.Fatalf("%s: got %s, want kind %s", c.id, text, kind)
	}
	if kind == "JoinResponse" || kind == "ListPeersResponse" {
		m["peers"] = orderedKeys(c.t, text, "peers")
	}
	return m
}

// orderedKeys returns the member names of the object member name of the JSON object
// text, in order, as a []any of strings (the order a map loses).
func orderedKeys(t *testing.T, text, name string) []any {
	t.Helper()
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(text), &top); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(top[name])))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("%s is not an object: %s", name, top[name])
	}
	var keys []any
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var v string
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("%s: a name is not a string: %v", name, err)
		}
	}
	return keys
}

// barrier sends a ping and checks that the next message is the pong: the
// relay queued nothing else for c before it.
func (c *client) barrier() {
	c.t.Helper()
	c.send(`{"kind":"ping"}`)
	if got := c.read(); got != `{"kind":"pong"}` {
		c.t.Fatalf("%s: got %s, want pong", c.id, got)
	}
}

// expectClosed reads until the connection closes and checks the close code
// and that the reason contains want.
func (c *client) expectClosed(code websocket.StatusCode, want string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		_, _, err := c.ws.Read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) {
			c.t.Fatalf("%s: want close %d, got %v", c.id, code, err)
		}
		if ce.Code != code || !strings.Contains(ce.Reason, want) || len(ce.Reason) > maxReason {
			c.t.Fatalf("%s: closed with %d %q, want %d containing %q", c.id, ce.Code, ce.Reason, code, want)
		}
		if testing.Verbose() {
			c.t.Logf("closed: %d %q", ce.Code, ce.Reason)
		}
		return
	}
}

// peers returns the peer ids of a JoinResponse or ListPeersResponse.
func peers(m map[string]any) []string {
	var ids []string
	for _, p := range m["peers"].([]any) {
		ids = append(ids, p.(string))
	}
	return ids
}

func TestJoinAndListPeers(t *testing.T) {
	_, srv := startRelay(t, Options{})
	a, resp := join(t, srv, "m", `,"name":"Ann"`)
	if _, err := uuid.Parse(a.id); err != nil {
		t.Fatalf("fresh peer id %q is not a uuid", a.id)
	}
	if got := peers(resp); !slices.Equal(got, []string{"relay", a.id}) {
		t.Fatalf("JoinResponse peers %v", got)
	}
	b, resp := join(t, srv, "m", `,"name":"Bob\u0007"`)
	if got := peers(resp); !slices.Equal(got, []string{"relay", a.id, b.id}) {
		t.Fatalf("JoinResponse peers %v", got)
	}
	names := resp["names"].(map[string]any)
	if names[a.id] != "Ann" || names[b.id] != "Bob" || names["relay"] != "relay" {
		t.Fatalf("names %v", names)
	}
	if got := peers(a.expect("ListPeersResponse")); !slices.Equal(got, []string{"relay", a.id, b.id}) {
		t.Fatalf("A's ListPeersResponse after B joined: %v", got)
	}
	b.ws.Close(websocket.StatusNormalClosure, "bye")
	if got := peers(a.expect("ListPeersResponse")); !slices.Equal(got, []string{"relay", a.id}) {
		t.Fatalf("A's ListPeersResponse after B left: %v", got)
	}
}

func TestRequestedPeerID(t *testing.T) {
	_, srv := startRelay(t, Options{})
	a, _ := join(t, srv, "m", `,"peer":"alice"`)
	if a.id != "alice" {
		t.Fatalf("requested id not honoured: %q", a.id)
	}
	for _, extra := range []string{`,"peer":"alice"`, `,"peer":"relay"`, `,"peer":"bad id!"`, `,"peer":""`} {
		c, _ := join(t, srv, "m", extra)
		if _, err := uuid.Parse(c.id); err != nil {
			t.Errorf("JoinRequest%s: got id %q, want a fresh uuid", extra, c.id)
		}
	}
	b, _ := join(t, srv, "other", `,"peer":"alice"`)
	if b.id != "alice" {
		t.Fatalf("id taken in another room only: got %q", b.id)
	}
}

func TestOperationAndSavedBroadcast(t *testing.T) {
	_, srv := startRelay(t, Options{})
	a, _ := join(t, srv, "m", "")
	b, _ := join(t, srv, "m", "")
	a.expect("ListPeersResponse")
	c, _ := join(t, srv, "m", "")
	a.expect("ListPeersResponse")
	b.expect("ListPeersResponse")
	for _, msg := range []string{
		`{"kind":"OperationMessage","sender":"x","verb":"update","subject":"map","key":"properties.name","value":"Café","extra":[1,{"a":null}]}`,
		`{"kind":"SavedMessage","sender":"x","lastKnownHLC":"1727184449010:0:x"}`,
	} {
		a.send(msg)
		want := string(withSender([]byte(msg), a.id)) // as sent, but by whom: a
		if got := b.read(); got != want {
			t.Fatalf("B got %s, want %s", got, want)
		}
		if got := c.read(); got != want {
			t.Fatalf("C got %s, want %s", got, want)
		}
		a.barrier() // not echoed to the sender
	}
}

func TestPeerMessageRouting(t *testing.T) {
	_, srv := startRelay(t, Options{})
	a, _ := join(t, srv, "m", "")
	b, _ := join(t, srv, "m", "")
	a.expect("ListPeersResponse")
	c, _ := join(t, srv, "m", "")
	a.expect("ListPeersResponse")
	b.expect("ListPeersResponse")

	a.send(fmt.Sprintf(`{"kind":"PeerMessage","sender":"spoofed","recipient":%q,"message":{"verb":"ListOperationsRequest"}}`, b.id))
	m := b.expect("PeerMessage")
	if m["sender"] != a.id || m["recipient"] != b.id || m["message"].(map[string]any)["verb"] != "ListOperationsRequest" {
		t.Fatalf("B got %v", m)
	}
	c.barrier()
	a.barrier()

	a.send(`{"kind":"PeerMessage","recipient":"nobody","message":{}}`) // dropped
	a.barrier()
}

func TestPing(t *testing.T) {
	_, srv := startRelay(t, Options{})
	c := dial(t, srv, "m")
	c.barrier() // before joining
	c.send(`{"kind":"JoinRequest","token":"t"}`)
	c.expect("JoinResponse")
	c.expect("ListPeersResponse")
	c.barrier()
}

func TestBadMessagesCloseOnlyTheirConnection(t *testing.T) {
	tests := []struct {
		name, msg string
		binary    bool
		join      bool
		code      websocket.StatusCode
		reason    string
	}{
		{"malformed JSON", `{"kind":"OperationMessage",`, false, true, websocket.StatusPolicyViolation, `invalid JSON at byte 27, after "ind\":\"OperationMessage\",": unexpected end of JSON input`},
		{"bad JSON", `{"kind":"ping",x}`, false, true, websocket.StatusPolicyViolation, `invalid JSON at byte 16, after "{\"kind\":\"ping\",x": invalid character 'x'`},
		{"array", `[1,2]`, false, true, websocket.StatusPolicyViolation, "not a JSON object"},
		{"null", `null`, false, true, websocket.StatusPolicyViolation, "not a JSON object"},
		{"no kind", `{"verb":"update"}`, false, true, websocket.StatusPolicyViolation, `without a string "kind"`},
		{"unknown kind", `{"kind":"Nope"}`, false, true, websocket.StatusPolicyViolation, `unknown kind "Nope"`},
		{"long unknown kind", `{"kind":"` + strings.Repeat("é", 300) + `"}`, false, true, websocket.StatusPolicyViolation, "unknown kind"},
		{"before join", `{"kind":"OperationMessage"}`, false, false, websocket.StatusPolicyViolation, "OperationMessage before JoinRequest"},
		{"join twice", `{"kind":"JoinRequest","token":"t"}`, false, true, websocket.StatusPolicyViolation, "JoinRequest sent twice"},
		{"bad join", `{"kind":"JoinRequest","peer":7}`, false, false, websocket.StatusPolicyViolation, "bad JoinRequest"},
		{"no recipient", `{"kind":"PeerMessage","message":{}}`, false, true, websocket.StatusPolicyViolation, `"recipient"`},
		{"no message", `{"kind":"PeerMessage","recipient":"relay","message":3}`, false, true, websocket.StatusPolicyViolation, `"message"`},
		{"binary", `{"kind":"ping"}`, true, true, websocket.StatusPolicyViolation, "binary"},
		{"too big", `{"kind":"OperationMessage","value":"` + strings.Repeat("x", 2000) + `"}`, false, true, websocket.StatusMessageTooBig, "read limited at"},
		{"one byte too big", sized(1025), false, true, websocket.StatusMessageTooBig, "read limited at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := startRelay(t, Options{MaxMessageSize: 1024})
			bystander, _ := join(t, srv, "m", "")
			bad := dial(t, srv, "m")
			if tt.join {
				bad.send(`{"kind":"JoinRequest","token":"t"}`)
				bad.id = bad.expect("JoinResponse")["peer"].(string)
				bad.expect("ListPeersResponse")
				bystander.expect("ListPeersResponse")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			typ := websocket.MessageText
			if tt.binary {
				typ = websocket.MessageBinary
			}
			if err := bad.ws.Write(ctx, typ, []byte(tt.msg)); err != nil {
				t.Fatal(err)
			}
			bad.expectClosed(tt.code, tt.reason)
			if tt.join {
				if got := peers(bystander.expect("ListPeersResponse")); slices.Contains(got, bad.id) {
					t.Fatalf("closed peer still listed: %v", got)
				}
			}
			bystander.barrier()
			other, _ := join(t, srv, "m", "")
			bystander.expect("ListPeersResponse")
			other.send(`{"kind":"OperationMessage","verb":"delete","subject":"map"}`)
			bystander.expect("OperationMessage")
		})
	}
}

// sized returns an OperationMessage of n bytes.
func sized(n int) string {
	const empty = `{"kind":"OperationMessage","value":""}`
	return `{"kind":"OperationMessage","value":"` + strings.Repeat("x", n-len(empty)) + `"}`
}

func TestMaxSizedMessagePasses(t *testing.T) {
	_, srv := startRelay(t, Options{MaxMessageSize: 1024})
	a, _ := join(t, srv, "m", "")
	b, _ := join(t, srv, "m", "")
	a.expect("ListPeersResponse")
	a.send(sized(1024))
	if got := b.read(); len(got) != len(withSender([]byte(sized(1024)), a.id)) {
		t.Fatalf("got %d bytes: %.200s", len(got), got)
	}
}

func TestRoomsAreIsolated(t *testing.T) {
	_, srv := startRelay(t, Options{})
	a, _ := join(t, srv, "one", "")
	b, resp := join(t, srv, "two", "")
	if got := peers(resp); !slices.Equal(got, []string{"relay", b.id}) {
		t.Fatalf("room two lists %v", got)
	}
	a.send(`{"kind":"OperationMessage","verb":"delete","subject":"map"}`)
	a.send(fmt.Sprintf(`{"kind":"PeerMessage","recipient":%q,"message":{}}`, b.id))
	a.barrier()
	b.barrier()
}

func TestInvalidMapName(t *testing.T) {
	_, srv := startRelay(t, Options{})
	for _, name := range []string{"a.b", strings.Repeat("x", 65), "%20"} {
		resp, err := http.Get(srv.URL + "/ws/sync/" + name)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("map %q: status %d, want 400", name, resp.StatusCode)
		}
	}
}

// fakeReplica rejects messages containing the string "bad" (quoted: a random peer id in a
// sender may hold the letters), acknowledges those
// containing "ack", and answers every PeerMessage.
type fakeReplica struct {
	mu     sync.Mutex
	seen   []string
	closed bool
}

func (f *fakeReplica) ID() string { return "fake-replica" }

func (f *fakeReplica) Check(msg []byte) ([][]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if strings.Contains(string(msg), `"bad"`) {
		return nil, errors.New(`bad_value: "bad" is not accepted`)
	}
	f.seen = append(f.seen, string(msg))
	if strings.Contains(string(msg), "ack") {
		return [][]byte{[]byte(`{"kind":"PeerMessage","message":{"verb":"ack"}}`)}, nil
	}
	return nil, nil
}

func (f *fakeReplica) PeerMessage(msg []byte) ([][]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, string(msg))
	var m struct{ Sender string }
	json.Unmarshal(msg, &m)
	return [][]byte{
		fmt.Appendf(nil, `{"kind":"PeerMessage","sender":"fake-replica","recipient":%q,"message":{"verb":"ListOperationsResponse"}}`, m.Sender),
		[]byte(`{"kind":"OperationMessage","verb":"delete","subject":"map"}`),
	}, nil
}

func (f *fakeReplica) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func TestReplicaHook(t *testing.T) {
	var mu sync.Mutex
	replicas := map[string]*fakeReplica{}
	factory := func(name string) (Replica, error) {
		mu.Lock()
		defer mu.Unlock()
		if name == "broken" {
			return nil, errors.New("disk on fire")
		}
		replicas[name] = &fakeReplica{}
		return replicas[name], nil
	}
	_, srv := startRelay(t, Options{NewReplica: factory})
	a, resp := join(t, srv, "m", "")
	if got := peers(resp); !slices.Equal(got, []string{"fake-replica", a.id}) {
		t.Fatalf("peers %v", got)
	}
	b, _ := join(t, srv, "m", "")
	a.expect("ListPeersResponse")
	fake := replicas["m"]

	op := `{"kind":"OperationMessage","verb":"update","value":"ack me"}`
	a.send(op)
	if got := a.expect("PeerMessage"); got["message"].(map[string]any)["verb"] != "ack" {
		t.Fatalf("Check reply: %v", got)
	}
	if got := b.read(); got != string(withSender([]byte(op), a.id)) {
		t.Fatalf("B got %s", got)
	}

	a.send(`{"kind":"PeerMessage","recipient":"fake-replica","message":{"verb":"ListOperationsRequest"}}`)
	if got := a.expect("PeerMessage"); got["recipient"] != a.id || got["sender"] != "fake-replica" {
		t.Fatalf("PeerMessage reply: %v", got)
	}
	a.expect("OperationMessage")
	b.barrier() // the replica's replies go to the sender only

	b.send(`{"kind":"SavedMessage","note":"bad"}`)
	b.expectClosed(websocket.StatusPolicyViolation, `bad_value: "bad" is not accepted`)
	a.expect("ListPeersResponse")
	a.barrier() // the rejected message was not broadcast

	fake.mu.Lock()
	seen := slices.Clone(fake.seen)
	fake.mu.Unlock()
	if len(seen) != 2 || seen[0] != string(withSender([]byte(op), a.id)) || !strings.Contains(seen[1], fmt.Sprintf(`"sender":%q`, a.id)) {
		t.Fatalf("replica saw %q", seen)
	}

	a.ws.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "replica closed when its room empties", func() bool {
		fake.mu.Lock()
		defer fake.mu.Unlock()
		return fake.closed
	})

	c := dial(t, srv, "broken")
	c.send(`{"kind":"JoinRequest","token":"t"}`)
	c.expectClosed(websocket.StatusInternalError, "cannot open map: disk on fire")
}

func TestSlowClientIsClosed(t *testing.T) {
	_, srv := startRelay(t, Options{SendQueue: 4, WriteTimeout: time.Minute})
	slow, _ := join(t, srv, "m", "")
	fast, _ := join(t, srv, "m", "")
	slow.expect("ListPeersResponse") // then it stops reading
	writer, _ := join(t, srv, "m", "")
	fast.expect("ListPeersResponse")

	big := `{"kind":"OperationMessage","value":"` + strings.Repeat("x", 256<<10) + `"}`
	// The fast client reads while the writer floods: 12 MiB, more than the
	// slow client's socket buffers hold. The writer waits until the fast
	// client got each message before sending the next, so the fast client's
	// queue never holds more than one, however loaded the machine is.
	fastDone := make(chan error, 1)
	received := make(chan struct{}, 48)
	go func() {
		slowLeft := false
		for ops := 0; ops < 48 || !slowLeft; {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, got, err := fast.ws.Read(ctx)
			cancel()
			switch {
			case err != nil:
				fastDone <- err
				return
			case len(got) == len(withSender([]byte(big), writer.id)):
				ops++
				received <- struct{}{}
			case strings.Contains(string(got), "ListPeersResponse") && !strings.Contains(string(got), slow.id):
				slowLeft = true
			default:
				fastDone <- fmt.Errorf("fast client got %.100s", got)
				return
			}
		}
		fastDone <- nil
	}()
	start := time.Now()
	for i := 0; i < 48; i++ {
		writer.send(big)
		select {
		case <-received:
		case err := <-fastDone:
			fastDone <- err // read again below
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := <-fastDone; err != nil {
		t.Fatal(err)
	}
	fast.barrier()
	slow.expectClosed(websocket.StatusPolicyViolation, "too slow")
	t.Logf("slow client closed %v after the flood", time.Since(start))
	writer.expect("ListPeersResponse")
	writer.barrier()
}

func TestShutdownClosesConnections(t *testing.T) {
	relay, srv := startRelay(t, Options{})
	a, _ := join(t, srv, "m", "")
	b := dial(t, srv, "n") // not joined yet
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- relay.Shutdown(ctx) }()
	a.expectClosed(websocket.StatusGoingAway, "relay shutting down")
	b.expectClosed(websocket.StatusGoingAway, "relay shutting down")
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if _, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws/sync/m", nil); err == nil {
		t.Fatal("dial after shutdown succeeded")
	}
}

func TestConnectionsEndCleanly(t *testing.T) {
	relay, srv := startRelay(t, Options{})
	baseline := runtime.NumGoroutine()
	for i := 0; i < 5; i++ {
		c, _ := join(t, srv, fmt.Sprint("m", i%2), "")
		c.send(`{"kind":"OperationMessage"}`)
		if i%2 == 0 {
			c.ws.Close(websocket.StatusNormalClosure, "")
		} else {
			c.ws.CloseNow() // no close handshake
		}
	}
	waitFor(t, "every connection handler returned", func() bool {
		relay.mu.Lock()
		defer relay.mu.Unlock()
		return len(relay.conns) == 0 && len(relay.rooms) == 0
	})
	waitFor(t, "no goroutine left behind", func() bool { return runtime.NumGoroutine() <= baseline })
}

// waitFor polls cond until it holds; the 30 s are a guard against a hang only.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
	}
}

// A connection dead on the way answers no ping: the relay closes it, and its peer id is
// free again for the peer connecting anew (a page back from a dead link). Without the
// pings the id stayed taken, and the dead peer listed, for as long as the relay ran.
func TestDeadConnectionFreesItsPeerID(t *testing.T) {
	_, srv := startRelay(t, Options{PingInterval: 100 * time.Millisecond, PingTimeout: 1500 * time.Millisecond})
	live, _ := join(t, srv, "m", `,"peer":"bob"`)
	dead, _ := join(t, srv, "m", `,"peer":"alice"`)
	_ = dead // never read again: its pongs are never sent, as on a dead link
	if got := peers(live.expect("ListPeersResponse")); !slices.Equal(got, []string{"relay", "bob", "alice"}) {
		t.Fatalf("peers after alice joined: %v", got)
	}
	// bob reads, so answers the pings: it stays, and hears alice leave.
	if got := peers(live.expect("ListPeersResponse")); !slices.Equal(got, []string{"relay", "bob"}) {
		t.Fatalf("peers after the dead connection: %v", got)
	}
	again, _ := join(t, srv, "m", `,"peer":"alice"`)
	if again.id != "alice" {
		t.Fatalf("alice connecting again got %q", again.id)
	}
	if got := peers(live.expect("ListPeersResponse")); !slices.Equal(got, []string{"relay", "bob", "alice"}) {
		t.Fatalf("peers after alice came back: %v", got)
	}
	live.barrier()
	again.barrier()
}

// A join that waits for its map to open — a large map's replica loading — holds the
// connection's reading goroutine, which is the one that reads pongs: the ping sent
// meanwhile found no pong in time, and the joining peer was closed "no pong". A ping
// unanswered while the connection is busy, or while its messages keep arriving, is no
// sign of a dead link.
func TestSlowJoinIsNoDeadLink(t *testing.T) {
	opening := 1500 * time.Millisecond
	_, srv := startRelay(t, Options{PingInterval: 100 * time.Millisecond, PingTimeout: 300 * time.Millisecond,
		NewReplica: func(string) (Replica, error) { time.Sleep(opening); return nopReplica{}, nil }})
	c, _ := join(t, srv, "m", "")
	c.barrier() // still open: the pings went on after the join, and were answered
}

// TestRelayDefaultsAreTheREADMEs: README "Protocol": frames up to the engine's message
// limit plus 4 KiB (32 MiB + 4 KiB), send queues of 65,536 messages and 2 × the frame limit
// in bytes, a ping every 30 s and 15 s for its pong.
func TestRelayDefaultsAreTheREADMEs(t *testing.T) {
	o := NewRelay(Options{}).opts
	frame := int64(32<<20 + 4<<10)
	if o.MaxMessageSize != frame || o.SendQueue != 1<<16 || o.SendQueueBytes != 2*frame ||
		o.PingInterval != 30*time.Second || o.PingTimeout != 15*time.Second {
		t.Errorf("defaults: frame %d, queue %d messages and %d bytes, ping %v, pong within %v",
			o.MaxMessageSize, o.SendQueue, o.SendQueueBytes, o.PingInterval, o.PingTimeout)
	}
}
