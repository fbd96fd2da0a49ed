// Command demo is the mapcrdt demo server: it serves the Leaflet page, the
// JavaScript glue and the engine's .wasm, and relays uMap's sync protocol
// over WebSocket at /ws/sync/{map} (see Relay).
//
// Run it from the repository root:
//
//	go run ./demo -addr 127.0.0.1:8080
//
// It prints one line, "listening on http://HOST:PORT", once it listens, and
// shuts down gracefully on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mapcrdt/mapcrdt/crdt"
)

// config is the command line.
type config struct {
	addr, data, static, glue string
}

func main() {
	var cfg config
	flag.StringVar(&cfg.addr, "addr", "127.0.0.1:8080", "listen address, host:port (port 0 picks a free one)")
	flag.StringVar(&cfg.data, "data", "./demo/data", "data directory: the relay's replicas and saved datalayers")
	flag.StringVar(&cfg.static, "static", "demo/web", "directory served at /: the page")
	flag.StringVar(&cfg.glue, "glue", "jsglue", "directory served at /jsglue/: glue, wasm and node_modules")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// run serves until ctx is done, then shuts down. It prints the listening
// line to stdout; logs go to stderr.
func run(ctx context.Context, cfg config, stdout io.Writer) error {
	if err := os.MkdirAll(cfg.data, 0o755); err != nil {
		return err
	}
	for _, dir := range []string{cfg.static, cfg.glue} {
		if _, err := os.Stat(dir); err != nil {
			slog.Warn("directory to serve is missing", "err", err)
		}
	}
	opts, _ := relayOptions(cfg.data)
	relay := NewRelay(opts)
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	mux := newMux(relay, cfg.static, cfg.glue)
	newDatalayers(datalayerOptions{Dir: cfg.data}).register(mux) // the save endpoint (save.go)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "listening on http://%s\n", displayAddr(ln.Addr()))

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		relay.Shutdown(context.Background())
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx) // stops listening; WebSockets are hijacked, not waited for
	if rerr := relay.Shutdown(sctx); err == nil {
		err = rerr
	}
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// relayOptions configures the relay of the demo and its per-map replicas (the
// store options returned): crdt replicas with peer id "relay", each persisted in
// dataDir as <map>.snapshot plus <map>.log (see store.go). Replicas and frames
// follow one message limit, the engine's default, which the page's engine uses:
// the relay takes every message a browser makes, and its replica every message
// a frame holds, but for a PeerMessage envelope's bytes.
func relayOptions(dataDir string) (Options, storeOptions) {
	limits := crdt.DefaultLimits()
	store := storeOptions{Dir: dataDir, Replica: crdt.Options{Limits: limits}}
	return Options{MaxMessageSize: FrameLimit(limits.MaxMessageBytes), NewReplica: newStoreFactory(store)}, store
}

// newMux routes the relay, the glue at /jsglue/ and the page at /.
func newMux(relay *Relay, static, glue string) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /ws/", relay)
	mux.Handle("GET /jsglue/", noCache(http.StripPrefix("/jsglue/", http.FileServer(http.Dir(glue)))))
	mux.Handle("GET /", noCache(http.FileServer(http.Dir(static))))
	return mux
}

// noCache makes browsers revalidate, so a rebuilt .wasm is picked up on reload.
func noCache(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}

// displayAddr is addr as a browser can open it (an unspecified host is shown as localhost).
func displayAddr(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return addr.String()
	}
	return net.JoinHostPort("localhost", fmt.Sprint(tcp.Port))
}

func init() {
	// Set explicitly: the system's mime.types may say otherwise.
	mime.AddExtensionType(".wasm", "application/wasm")
	mime.AddExtensionType(".js", "text/javascript; charset=utf-8")
	mime.AddExtensionType(".mjs", "text/javascript; charset=utf-8")
}
