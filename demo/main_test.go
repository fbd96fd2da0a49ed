package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestMuxServesPageGlueAndRelay(t *testing.T) {
	dir := t.TempDir()
	static, glue := filepath.Join(dir, "web"), filepath.Join(dir, "jsglue")
	writeFile(t, filepath.Join(static, "index.html"), "<title>page</title>")
	writeFile(t, filepath.Join(glue, "index.js"), "export {}")
	writeFile(t, filepath.Join(glue, "mapcrdt.wasm"), "\x00asm")
	writeFile(t, filepath.Join(glue, "node_modules/leaflet/dist/leaflet.js"), "L")

	relay := NewRelay(Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	srv := httptest.NewServer(newMux(relay, static, glue))
	defer srv.Close()
	defer relay.Shutdown(context.Background())

	for _, tt := range []struct{ path, ctype, body string }{
		{"/", "text/html; charset=utf-8", "<title>page</title>"},
		{"/jsglue/index.js", "text/javascript; charset=utf-8", "export {}"},
		{"/jsglue/mapcrdt.wasm", "application/wasm", "\x00asm"},
		{"/jsglue/node_modules/leaflet/dist/leaflet.js", "text/javascript; charset=utf-8", "L"},
	} {
		resp, err := http.Get(srv.URL + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != tt.ctype || string(body) != tt.body {
			t.Errorf("%s: %d %q %q", tt.path, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws/sync/m", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	ws.Write(ctx, websocket.MessageText, []byte(`{"kind":"ping"}`))
	if _, got, err := ws.Read(ctx); err != nil || string(got) != `{"kind":"pong"}` {
		t.Fatalf("ping: %s %v", got, err)
	}
}

func TestRunPrintsAddressAndShutsDown(t *testing.T) {
	dir := t.TempDir()
	cfg := config{addr: "127.0.0.1:0", data: filepath.Join(dir, "data"), static: dir, glue: dir}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, pw); pw.Close() }()

	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "listening on http://127.0.0.1:") || strings.HasSuffix(line, ":0\n") {
		t.Fatalf("got %q, %v", line, err)
	}
	go io.Copy(io.Discard, pr)
	url := strings.TrimSpace(strings.TrimPrefix(line, "listening on "))
	resp, err := http.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := os.Stat(cfg.data); err != nil {
		t.Fatalf("data directory not created: %v", err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

// serveTimeouts serves h with newServer on a listener of 127.0.0.1 and returns its address.
func serveTimeouts(t *testing.T, h http.Handler, to timeouts) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(h, to)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// closedByServer sends text on a new connection to addr and reads until the server
// closes it, failing if it is still open after 10 s.
func closedByServer(t *testing.T, addr, text string) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, text); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("after %q the server kept the connection open: %v (read %q)", text, err, got)
	}
	return string(got)
}

// TestSlowClientsAreCutOff: a request whose body never ends (a PUT trickling its
// datalayer, slowloris) and an idle keep-alive connection are closed by the server's
// timeouts; without them each held its connection, and the PUT its goroutine and
// body buffer, for ever. A WebSocket outlives them: the upgrade clears the deadlines.
func TestSlowClientsAreCutOff(t *testing.T) {
	const d = 300 * time.Millisecond
	relay := NewRelay(Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer relay.Shutdown(context.Background())
	mux := newMux(relay, t.TempDir(), t.TempDir())
	newDatalayers(datalayerOptions{Dir: t.TempDir(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}).register(mux)
	addr := serveTimeouts(t, mux, timeouts{header: d, read: d, write: d, idle: d})

	closedByServer(t, addr, "PUT /api/maps/m/datalayers/d HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"type\":")
	if got := closedByServer(t, addr, "GET /api/maps/m/datalayers/d HTTP/1.1\r\nHost: x\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 404") {
		t.Fatalf("GET answered %q", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws/sync/m", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	time.Sleep(3 * d)
	ws.Write(ctx, websocket.MessageText, []byte(`{"kind":"ping"}`))
	if _, got, err := ws.Read(ctx); err != nil || string(got) != `{"kind":"pong"}` {
		t.Fatalf("WebSocket after the timeouts: %s %v", got, err)
	}
}

// TestRunRefusesOtherHostsOnLoopback: a relay listening on 127.0.0.1 answers only to
// the loopback names; a request naming another host (a page whose DNS name an
// attacker made resolve to 127.0.0.1: same-origin with the relay for the browser, so
// the Origin check lets its WebSocket in) is refused with 421, WebSocket and HTTP
// alike. -hosts widens the list.
func TestRunRefusesOtherHostsOnLoopback(t *testing.T) {
	for _, tt := range []struct {
		hosts string
		host  string
		want  int
	}{
		{"", "evil.example", http.StatusMisdirectedRequest},
		{"", "localhost", http.StatusOK},
		{"", "LocalHost", http.StatusOK},
		{"", "127.0.0.1", http.StatusOK},
		{"", "[::1]", http.StatusOK},
		{"", "localhost.evil.example", http.StatusMisdirectedRequest},
		{"relay.example.org, localhost", "relay.example.org", http.StatusOK},
		{"relay.example.org", "127.0.0.1", http.StatusMisdirectedRequest},
		{"*", "evil.example", http.StatusOK},
		{"relay.example.org:8443,[::1]", "relay.example.org", http.StatusOK},
		{"relay.example.org:8443,[::1]", "[::1]", http.StatusOK},
	} {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "web", "index.html"), "page")
		cfg := config{addr: "127.0.0.1:0", data: filepath.Join(dir, "data"), static: filepath.Join(dir, "web"),
			glue: dir, hosts: tt.hosts}
		url, stop := startRun(t, cfg)
		_, port, _ := net.SplitHostPort(strings.TrimPrefix(url, "http://"))
		for _, path := range []string{"/", "/api/maps/m/datalayers/d", "/ws/sync/m"} {
			req, _ := http.NewRequest("GET", url+path, nil)
			req.Host = tt.host + ":" + port
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			want := tt.want
			if want == http.StatusOK && path != "/" { // reached the handlers
				want = map[string]int{"/api/maps/m/datalayers/d": http.StatusNotFound, "/ws/sync/m": http.StatusUpgradeRequired}[path]
			}
			if resp.StatusCode != want {
				t.Errorf("-hosts %q, Host %s, %s: %d, want %d", tt.hosts, req.Host, path, resp.StatusCode, want)
			}
		}
		stop()
	}
}

// startRun runs the demo with cfg until stop, and returns its URL.
func startRun(t *testing.T, cfg config) (url string, stop func()) {
	t.Helper()
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, pw); pw.Close() }()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	return strings.TrimSpace(strings.TrimPrefix(line, "listening on ")), func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}
}

// TestStaticServesFilesOnly: the page and glue directories serve their files, but no
// listing of a directory without index.html and no dot file, and nothing outside them
// (the data directory next to the page's, the repository around the glue), however
// the path is written.
func TestStaticServesFilesOnly(t *testing.T) {
	dir := t.TempDir()
	static, glue := filepath.Join(dir, "web"), filepath.Join(dir, "jsglue")
	writeFile(t, filepath.Join(static, "index.html"), "<title>page</title>")
	writeFile(t, filepath.Join(static, "sub", "index.html"), "sub page")
	writeFile(t, filepath.Join(static, ".env"), "SECRET=1")
	writeFile(t, filepath.Join(glue, "index.js"), "export {}")
	writeFile(t, filepath.Join(glue, "test", "a.test.js"), "test")
	writeFile(t, filepath.Join(glue, "node_modules", ".bin", "tsc"), "#!/bin/sh")
	writeFile(t, filepath.Join(glue, ".git", "config"), "[core]")
	writeFile(t, filepath.Join(dir, "data", "m.log"), "secret log")
	writeFile(t, filepath.Join(dir, "go.mod"), "module x")

	relay := NewRelay(Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer relay.Shutdown(context.Background())
	srv := httptest.NewServer(newMux(relay, static, glue))
	defer srv.Close()
	for _, tt := range []struct {
		path string
		want int
	}{
		{"/", 200},
		{"/sub/", 200},
		{"/jsglue/index.js", 200},
		{"/jsglue/test/a.test.js", 200},
		{"/jsglue/", 404},
		{"/jsglue/test/", 404},
		{"/jsglue/node_modules/", 404},
		{"/.env", 404},
		{"/jsglue/.git/config", 404},
		{"/jsglue/node_modules/.bin/tsc", 404},
		{"/jsglue/node_modules/%2ebin/tsc", 404},
		{"/../data/m.log", 404},
		{"/%2e%2e/data/m.log", 404},
		{"/jsglue/..%2f..%2fdata/m.log", 404},
		{"/jsglue/..%2fgo.mod", 404},
		{"/jsglue/%2e%2e/go.mod", 404},
	} {
		req, _ := http.NewRequest("GET", srv.URL+"/", nil)
		req.URL.RawPath, req.URL.Path = tt.path, mustUnescape(t, tt.path)
		resp, err := http.DefaultTransport.RoundTrip(req) // no redirect followed
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if status := resp.StatusCode; status != tt.want && !(tt.want == 404 && status/100 == 3) {
			t.Errorf("%s: %d %q, want %d", tt.path, status, body, tt.want)
		}
		if b := string(body); strings.Contains(b, "secret") || strings.Contains(b, "SECRET") || strings.Contains(b, "module x") ||
			strings.Contains(b, "<pre>") {
			t.Errorf("%s: served %q", tt.path, b)
		}
	}
}

func mustUnescape(t *testing.T, p string) string {
	t.Helper()
	u, err := url.PathUnescape(p)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestRunShutdownClosesMaps: on SIGINT/SIGTERM (run's context done) with peers
// connected, every peer is told 1001, run returns, and each map is compacted and
// closed: its log folded into the snapshot, which holds every edit a peer was sent.
func TestRunShutdownClosesMaps(t *testing.T) {
	dir := t.TempDir()
	cfg := config{addr: "127.0.0.1:0", data: filepath.Join(dir, "data"), static: dir, glue: dir}
	url, stop := startRun(t, cfg)
	srv := &httptest.Server{URL: url}
	a, _ := joinPeer(t, srv, "m", "alice", nil)
	a.settle()
	a.sendAll(edits(t, a.r, "a"))
	a.settle()
	b, _ := joinPeer(t, srv, "n", "bob", nil)
	b.settle()
	b.sendAll(edits(t, b.r, "b"))
	b.settle()
	closed := []<-chan websocket.StatusCode{a.closedBy(), b.closedBy()}
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return")
	}
	for _, ch := range closed {
		select {
		case code := <-ch:
			if code != websocket.StatusGoingAway {
				t.Fatalf("closed with %d, want 1001", code)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a peer is still connected after run returned")
		}
	}
	for _, p := range []*peer{a, b} {
		name := map[*peer]string{a: "m", b: "n"}[p]
		if n := fileSize(t, filepath.Join(cfg.data, name+".log")); n != 0 {
			t.Fatalf("%s.log holds %d bytes after the shutdown: not compacted", name, n)
		}
		s, _ := mustOpenStored(t, storeOptions{Dir: cfg.data}, name)
		sameState(t, "map "+name+" after the shutdown", s.r.State(), p.r.State())
		s.Close()
	}
}

// TestRunRefusesMalformedOrigins: a malformed -origins pattern stops run at once, with
// the pattern named; it used to start, and refuse every cross-origin page (403) with
// a log line per handshake.
func TestRunRefusesMalformedOrigins(t *testing.T) {
	dir := t.TempDir()
	cfg := config{addr: "127.0.0.1:0", data: filepath.Join(dir, "data"), static: dir, glue: dir,
		origins: "umap.example.org, umap[.example.org"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := run(ctx, cfg, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `-origins "umap[.example.org"`) {
		t.Fatalf("run: %v, want an error naming the pattern", err)
	}
}

// TestRunShutdownDoesNotWaitForHTTPFirst: a slow HTTP request in flight (a PUT still
// uploading) does not hold back the closing of the WebSockets and maps: the peers are
// told 1001 at once, and run returns once the request ends, every map compacted.
// The relay was shut down only after the HTTP requests (up to the 15 s budget), then
// with no time left to wait for the maps: the peers went on editing meanwhile.
func TestRunShutdownDoesNotWaitForHTTPFirst(t *testing.T) {
	dir := t.TempDir()
	cfg := config{addr: "127.0.0.1:0", data: filepath.Join(dir, "data"), static: dir, glue: dir}
	url, stop := startRun(t, cfg)
	a, _ := joinPeer(t, &httptest.Server{URL: url}, "m", "alice", nil)
	a.settle()
	a.sendAll(edits(t, a.r, "a"))
	a.settle()

	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	put := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("PUT", url+"/api/maps/m/datalayers/d", pr)
		// The body is sent once the handler reads it (100 Continue): the first write
		// below returns once the request is in the handler.
		req.Header.Set("Expect", "100-continue")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("PUT: %v", err)
			put <- 0
			return
		}
		resp.Body.Close()
		put <- resp.StatusCode
	}()
	io.WriteString(pw, `{"type":"FeatureCollection",`)

	closed := a.closedBy()
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case code := <-closed:
		if code != websocket.StatusGoingAway {
			t.Fatalf("closed with %d, want 1001", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the peer was not told 1001 while an HTTP request was in flight")
	}
	io.WriteString(pw, `"features":[]}`)
	pw.Close()
	<-stopped
	if status := <-put; status != http.StatusOK {
		t.Fatalf("the PUT in flight: %d, want 200", status)
	}
	if n := fileSize(t, filepath.Join(cfg.data, "m.log")); n != 0 {
		t.Fatalf("m.log holds %d bytes after run returned: not compacted", n)
	}
}
