// Command demo is the mapcrdt demo server: it serves the Leaflet page, the
// JavaScript glue and the engine's .wasm, and relays uMap's sync protocol
// over WebSocket at /ws/sync/{map} (see Relay).
//
// Run it from the repository root:
//
//	go run ./demo -addr 127.0.0.1:8080
//
// It prints one line, "listening on http://HOST:PORT", once it listens, and
// shuts down gracefully on SIGINT or SIGTERM. It listens on 127.0.0.1 unless
// told otherwise; the README's "The demo relay on a network" describes the
// flags that matter on a network (-hosts, -origins, -max-conns, …) and its limits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mapcrdt/mapcrdt/crdt"
)

// config is the command line.
type config struct {
	addr, data, static, glue string
	// origins and hosts are comma-separated lists (see main's flags).
	origins, hosts          string
	maxConns, maxConnsPerIP int
	maxSaves                int
}

func main() {
	var cfg config
	flag.StringVar(&cfg.addr, "addr", "127.0.0.1:8080", "listen address, host:port (port 0 picks a free one)")
	flag.StringVar(&cfg.data, "data", "./demo/data", "data directory: the relay's replicas and saved datalayers")
	flag.StringVar(&cfg.static, "static", "demo/web", "directory served at /: the page")
	flag.StringVar(&cfg.glue, "glue", "jsglue", "directory served at /jsglue/: glue, wasm and node_modules")
	flag.StringVar(&cfg.origins, "origins", "", "comma-separated origins, besides the relay's own, whose pages may connect:\n"+
		"host patterns (umap.example.org, *.example.org) or scheme://host")
	flag.StringVar(&cfg.hosts, "hosts", "", "comma-separated host names the relay answers to (the Host header, any port);\n"+
		"\"*\" for any. Default: localhost, 127.0.0.1 and ::1 when -addr is a loopback address\n"+
		"(a DNS-rebinding page cannot reach it), any otherwise")
	flag.IntVar(&cfg.maxConns, "max-conns", 1000, "WebSocket connections open at once (negative: no bound)")
	flag.IntVar(&cfg.maxConnsPerIP, "max-conns-per-ip", 50, "WebSocket connections open at once from one remote address\n"+
		"(negative: no bound; behind a reverse proxy, bound them in the proxy)")
	flag.IntVar(&cfg.maxSaves, "max-saves", 4, "datalayer PUTs read and merged at once (each holds up to 16 MiB and a merge);\n"+
		"more wait for a slot")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal kills at once
	}()
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
	fold, err := caseInsensitiveDir(cfg.data)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if fold {
		slog.Info("the data directory is case-insensitive: map names and datalayer ids are folded to lower case")
	}
	opts, _ := relayOptions(cfg.data)
	opts.MaxConns, opts.MaxConnsPerIP, opts.OriginPatterns = cfg.maxConns, cfg.maxConnsPerIP, splitList(cfg.origins)
	for _, p := range opts.OriginPatterns {
		// As the handshake matches them (websocket.AcceptOptions): a malformed one
		// would refuse every cross-origin page with a log line per handshake.
		if _, err := path.Match(strings.ToLower(p), ""); err != nil {
			return fmt.Errorf("-origins %q: %w", p, err)
		}
	}
	opts.FoldCase = fold
	relay := NewRelay(opts)
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	mux := newMux(relay, cfg.static, cfg.glue)
	newDatalayers(datalayerOptions{Dir: cfg.data, FoldCase: fold, MaxSaves: cfg.maxSaves}).register(mux) // the save endpoint (save.go)
	hosts := splitList(cfg.hosts)
	for i, h := range hosts { // a name with a port, or an IPv6 address in brackets, as a URL writes it
		if name, _, err := net.SplitHostPort(h); err == nil {
			h = name
		}
		hosts[i] = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	}
	if hosts == nil && isLoopback(ln.Addr()) {
		hosts = []string{"localhost", "127.0.0.1", "::1"}
	}
	srv := newServer(allowHosts(mux, hosts), defaultTimeouts)
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
	// Both at once: an HTTP request in flight (a slow upload) must not hold back the
	// closing of the WebSockets, nor leave the maps no time to close.
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Shutdown(sctx) }()
	err = srv.Shutdown(sctx) // stops listening; WebSockets are hijacked, not waited for
	if rerr := <-relayDone; err == nil {
		err = rerr
	}
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// timeouts bound what a client that sends or reads slowly holds (http.Server's).
type timeouts struct{ header, read, write, idle time.Duration }

// defaultTimeouts: the headers of a request must arrive within 10 s, the whole
// request (a PUT of a large datalayer) within 2 min, and its answer (the .wasm) be
// written within 2 min; an idle keep-alive connection is closed after 2 min.
var defaultTimeouts = timeouts{header: 10 * time.Second, read: 2 * time.Minute, write: 2 * time.Minute, idle: 2 * time.Minute}

// newServer is the HTTP server of the demo. A WebSocket is not bound by its
// timeouts: the upgrade (http.Hijacker) clears the connection's deadlines.
func newServer(h http.Handler, t timeouts) *http.Server {
	return &http.Server{Handler: h,
		ReadHeaderTimeout: t.header,
		ReadTimeout:       t.read,
		WriteTimeout:      t.write,
		IdleTimeout:       t.idle,
		MaxHeaderBytes:    64 << 10,
	}
}

// splitList returns the non-empty, trimmed items of a comma-separated list (nil if none).
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// isLoopback reports whether a listener's address is a loopback address.
func isLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// allowHosts answers 421 to a request whose Host header (its name, without the
// port) is none of hosts, case aside; nil or "*" allows any. A relay on a loopback
// address thus refuses a page of another site whose name the attacker made resolve
// to 127.0.0.1 (DNS rebinding): to the browser that page is same-origin with the
// relay, and the Origin check lets it in.
func allowHosts(h http.Handler, hosts []string) http.Handler {
	if hosts == nil || slices.Contains(hosts, "*") {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		name := req.Host
		if host, _, err := net.SplitHostPort(name); err == nil {
			name = host
		}
		name = strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
		if !slices.ContainsFunc(hosts, func(a string) bool { return strings.EqualFold(a, name) }) {
			http.Error(w, "unknown host "+strconv.Quote(req.Host)+": see the relay's -hosts flag", http.StatusMisdirectedRequest)
			return
		}
		h.ServeHTTP(w, req)
	})
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
	mux.Handle("GET /jsglue/", noCache(http.StripPrefix("/jsglue/", http.FileServer(filesOnly{http.Dir(glue)}))))
	mux.Handle("GET /", noCache(http.FileServer(filesOnly{http.Dir(static)})))
	return mux
}

// filesOnly serves the files of a directory but no listing of a directory without an
// index.html, and nothing whose path has a part starting with "." (.git, .env,
// node_modules/.bin, a .tmp file): the glue's directory holds its tests, sources and
// node_modules, which a relay on a network has no reason to list.
type filesOnly struct{ fs http.FileSystem }

// Open opens name as the FileSystem does, or answers that it does not exist.
func (f filesOnly) Open(name string) (http.File, error) {
	for _, part := range strings.Split(name, "/") {
		if strings.HasPrefix(part, ".") {
			return nil, fs.ErrNotExist
		}
	}
	file, err := f.fs.Open(name)
	if err != nil {
		return nil, err
	}
	if st, err := file.Stat(); err != nil || st.IsDir() {
		index, ierr := f.fs.Open(path.Join(name, "index.html"))
		if err == nil && ierr == nil {
			index.Close()
			return file, nil
		}
		file.Close()
		return nil, fs.ErrNotExist
	}
	return file, nil
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
