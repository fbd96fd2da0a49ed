package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
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
