package main

// Connection-level limits of the relay: connection caps, the JoinRequest
// deadline, the Origin check of the handshake.

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// dialStatus opens a WebSocket to mapName with the given request headers and returns
// the connection (nil if refused) and the handshake's HTTP status.
func dialStatus(t *testing.T, srv *httptest.Server, mapName string, header http.Header) (*websocket.Conn, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws/sync/"+mapName,
		&websocket.DialOptions{HTTPHeader: header})
	if resp == nil {
		t.Fatalf("dial %s: no answer: %v", mapName, err)
	}
	if err != nil {
		return nil, resp.StatusCode
	}
	t.Cleanup(func() { ws.CloseNow() })
	return ws, resp.StatusCode
}

// waitOpen waits until the relay counts n connections open (a closed one is counted
// until its handler has returned).
func waitOpen(t *testing.T, r *Relay, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		r.mu.Lock()
		open := r.open
		r.mu.Unlock()
		if open == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections open, want %d", open, n)
		}
	}
}

// TestConnectionsPerAddressAreBounded: one address cannot open more than
// MaxConnsPerIP connections (handshakes or sockets that never join included): one
// more is answered 429 before the upgrade, and a slot freed is taken again. Without
// the bound, one client held any number of sockets, each two goroutines and buffers.
func TestConnectionsPerAddressAreBounded(t *testing.T) {
	r, srv := startRelay(t, Options{MaxConnsPerIP: 3})
	a, _ := join(t, srv, "m", "")
	dial(t, srv, "other") // never joins
	dial(t, srv, "m")
	if ws, status := dialStatus(t, srv, "m", nil); ws != nil || status != http.StatusTooManyRequests {
		t.Fatalf("fourth connection from one address: %d, want 429", status)
	}
	a.barrier() // the refusal touched no one
	a.ws.Close(websocket.StatusNormalClosure, "")
	waitOpen(t, r, 2)
	if ws, status := dialStatus(t, srv, "m", nil); ws == nil {
		t.Fatalf("after a close: %d, want the upgrade", status)
	}
}

// TestConnectionsAreBounded: past MaxConns connections in all, one more is answered
// 503, whatever its address.
func TestConnectionsAreBounded(t *testing.T) {
	r, srv := startRelay(t, Options{MaxConns: 2, MaxConnsPerIP: -1})
	a, _ := join(t, srv, "m", "")
	dial(t, srv, "n")
	if ws, status := dialStatus(t, srv, "m", nil); ws != nil || status != http.StatusServiceUnavailable {
		t.Fatalf("third connection: %d, want 503", status)
	}
	a.ws.Close(websocket.StatusNormalClosure, "")
	waitOpen(t, r, 1)
	dial(t, srv, "m")
}

// TestSocketThatNeverJoinsIsClosed: a connection that sends no JoinRequest within
// JoinTimeout is closed with 1008 (pings do not count); one that joined is not.
func TestSocketThatNeverJoinsIsClosed(t *testing.T) {
	const timeout = time.Second // the joined socket must join within it, on a loaded machine too
	r, srv := startRelay(t, Options{JoinTimeout: timeout})
	idle := dial(t, srv, "m")
	idle.barrier() // a ping is answered, and is no join
	joined, _ := join(t, srv, "m", "")
	idle.expectClosed(websocket.StatusPolicyViolation, "no JoinRequest within 1s")
	time.Sleep(2 * timeout)
	joined.barrier()
	waitOpen(t, r, 1)
}

// TestCrossOriginHandshakeIsRefused: a page of another origin cannot open a
// connection (cross-site WebSocket hijacking: any site a user visits could read and
// write the maps of a relay on their machine or network), unless it is one of
// OriginPatterns; the relay's own pages and non-browser clients (no Origin) can.
func TestCrossOriginHandshakeIsRefused(t *testing.T) {
	_, srv := startRelay(t, Options{OriginPatterns: []string{"umap.example.org"}})
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, tt := range []struct {
		origin string
		want   int
	}{
		{"", http.StatusSwitchingProtocols},
		{"http://" + host, http.StatusSwitchingProtocols},
		{"https://umap.example.org", http.StatusSwitchingProtocols},
		{"https://evil.example", http.StatusForbidden},
		{"https://umap.example.org.evil.example", http.StatusForbidden},
		{"null", http.StatusForbidden},
	} {
		h := http.Header{}
		if tt.origin != "" {
			h.Set("Origin", tt.origin)
		}
		if _, status := dialStatus(t, srv, "m", h); status != tt.want {
			t.Errorf("Origin %q: %d, want %d", tt.origin, status, tt.want)
		}
	}
}

// TestEmptyMapLeavesNoFiles: joining a map and leaving it without an edit leaves no
// file in the data directory: an empty log stayed for every map name ever joined, so a
// client joining made-up names filled the directory. A map with an edit keeps its files.
func TestEmptyMapLeavesNoFiles(t *testing.T) {
	dir := t.TempDir()
	s := startStoreRelay(t, storeOptions{Dir: dir}, Options{}, nil)
	for _, name := range []string{"ghost1", "ghost2"} {
		c, _ := join(t, s.srv, name, "")
		c.ws.Close(websocket.StatusNormalClosure, "")
	}
	a, _ := joinPeer(t, s.srv, "kept", "alice", nil)
	a.settle()
	a.sendAll(edits(t, a.r, "a"))
	a.settle()
	s.stopWith(a)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"kept.log", "kept.snapshot"}) {
		t.Fatalf("data directory holds %v, want the kept map's files only", names)
	}
}

// TestFoldCaseMakesOneMapOfNamesDifferingInCase: on a case-insensitive filesystem
// "Paris" and "paris" are one pair of files; the relay opened two rooms, two replicas
// appending to and compacting over the same files, and the save endpoint two locks
// over one directory. Under FoldCase (set by run when caseInsensitiveDir says so)
// they are one room, one replica, one datalayer, in lower case.
func TestFoldCaseMakesOneMapOfNamesDifferingInCase(t *testing.T) {
	dir := t.TempDir()
	s := startStoreRelay(t, storeOptions{Dir: dir}, Options{FoldCase: true}, nil)
	a, _ := joinPeer(t, s.srv, "Paris", "alice", nil)
	a.settle()
	a.sendAll(edits(t, a.r, "a"))
	a.settle()
	b, resp := joinPeer(t, s.srv, "paris", "bob", nil)
	if got := peers(resp); !slices.Equal(got, []string{"relay", "alice", "bob"}) {
		t.Fatalf("bob joined paris among %v, want alice's room", got)
	}
	b.settle()
	sameState(t, "one map", b.r.State(), a.r.State())
	s.stopWith(a, b)
	if _, err := os.Stat(dir + "/paris.snapshot"); err != nil {
		t.Fatalf("the map's files are not in lower case: %v", err)
	}

	d := startDatalayers(t, datalayerOptions{Dir: t.TempDir(), FoldCase: true})
	d.mustPut("/api/maps/Paris/datalayers/L1", "", layer(walk), 1)
	d.mustPut("/api/maps/paris/datalayers/l1", "1", layer(), 2)
	if r := d.get("/api/maps/PARIS/datalayers/l1"); r.status != 200 || r.version != "2" {
		t.Fatalf("GET in other cases: %d version %q", r.status, r.version)
	}
}

// TestCaseInsensitiveDirProbe: the probe tells the test's directory as it is (a file
// named in upper case found, or not, under its lower-case name: not on Linux), and
// leaves no file behind; a missing directory is an error.
func TestCaseInsensitiveDirProbe(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	writeFile(t, other+"/X", "")
	_, err := os.Stat(other + "/x")
	want := err == nil
	fold, err := caseInsensitiveDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if fold != want || len(entries) != 0 {
		t.Fatalf("folds %v, want %v; left %d files", fold, want, len(entries))
	}
	if _, err := caseInsensitiveDir(dir + "/missing"); err == nil {
		t.Fatal("no error for a missing directory")
	}
}

// TestConnectionsPerAddressCountIPv6ByPrefix: MaxConnsPerIP counts an IPv6 client by
// its /64, which one host usually holds whole: counted by address, it could open
// MaxConnsPerIP connections from each of 2^64 addresses.
func TestConnectionsPerAddressCountIPv6ByPrefix(t *testing.T) {
	for _, tt := range []struct{ a, b string }{
		{"[2001:db8:1:2::1]:4000", "[2001:db8:1:2:ffff:eeee:dddd:cccc]:4001"},
		{"[fe80::1%eth0]:4000", "[fe80::2]:4000"},
		{"192.0.2.1:4000", "[::ffff:192.0.2.1]:5000"},
	} {
		if ka, kb := remoteHost(tt.a), remoteHost(tt.b); ka != kb {
			t.Errorf("%s counts as %s, %s as %s: want one", tt.a, ka, tt.b, kb)
		}
	}
	for _, tt := range []struct{ a, b string }{
		{"[2001:db8:1:2::1]:4000", "[2001:db8:1:3::1]:4000"},
		{"192.0.2.1:4000", "192.0.2.2:4000"},
	} {
		if ka, kb := remoteHost(tt.a), remoteHost(tt.b); ka == kb {
			t.Errorf("%s and %s both count as %s", tt.a, tt.b, ka)
		}
	}
}

// TestSavesAreBounded: at most MaxSaves PUTs hold a body in memory at once (each up
// to 16 MiB, and a merge's three documents); one more waits for a slot before its
// body is read, and is saved once a slot is free. Without a bound any number of
// concurrent PUTs each held their body.
func TestSavesAreBounded(t *testing.T) {
	o := datalayerOptions{Dir: t.TempDir(), MaxSaves: 1, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	dl := newDatalayers(o) // the endpoint, to watch its slots
	mux := http.NewServeMux()
	dl.register(mux)
	d := &dlServer{t: t, dir: o.Dir, srv: httptest.NewServer(mux)}
	t.Cleanup(d.srv.Close)
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() }) // before the server's Close, which waits for the PUT
	slow := make(chan *http.Response, 1)
	go func() {
		req, _ := http.NewRequest("PUT", d.srv.URL+"/api/maps/m/datalayers/a", pr)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			resp = &http.Response{}
		} else {
			resp.Body.Close()
		}
		slow <- resp
	}()
	io.WriteString(pw, `{"type":"FeatureCollection",`)
	waitFor(t, "the slow PUT to take the slot", func() bool { return len(dl.saves) == 1 })
	fast := make(chan dlResponse, 1)
	go func() { fast <- d.doRaw("PUT", "/api/maps/m/datalayers/b", nil, layer(walk)) }()
	waitFor(t, "the second PUT to wait", func() bool { return dl.waiting.Load() == 1 })
	select {
	case r := <-fast:
		t.Fatalf("the second PUT was answered (%d) while the slot was taken", r.status)
	default:
	}
	io.WriteString(pw, `"features":[]}`)
	pw.Close()
	if r := <-slow; r.StatusCode != 200 {
		t.Fatalf("slow PUT: %d", r.StatusCode)
	}
	if r := <-fast; r.status != 200 {
		t.Fatalf("second PUT: %d %s", r.status, r.raw)
	}
}

// TestOddMapNamesAreRefused: a map name that is not [A-Za-z0-9_-]{1,64} — a way out of
// the data directory, a NUL, non-ASCII, too long, a dot — is refused before the
// upgrade, and nothing is created in or around the data directory.
func TestOddMapNamesAreRefused(t *testing.T) {
	root := t.TempDir()
	dir := root + "/data"
	s := startStoreRelay(t, storeOptions{Dir: dir}, Options{}, nil)
	for _, name := range []string{"%2e%2e", "..%2f..%2fetc", "a%2fb", "a%5cb", "a%00b", "%C3%A9t%C3%A9",
		"caf%CC%81e", strings.Repeat("a", 65), "a.b", "a%20b", "%2e"} {
		if ws, status := dialStatus(t, s.srv, name, nil); ws != nil || status != http.StatusBadRequest {
			t.Errorf("map %q: %d, want 400", name, status)
		}
	}
	if ws, _ := dialStatus(t, s.srv, strings.Repeat("a", 64), nil); ws == nil {
		t.Error("a name of 64 characters is refused")
	}
	entries, _ := os.ReadDir(root)
	if len(entries) > 1 {
		t.Errorf("files created around the data directory: %v", entries)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files created in the data directory: %v", entries)
	}
}
