package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/mapcrdt/mapcrdt/crdt"
)

// The relay under load, over real WebSockets on 127.0.0.1: what a deployment of the demo
// relay can expect of one map. Each benchmark runs with the relay's stored replica (every
// operation checked by a crdt replica and fsync'd to the map's log before it is forwarded,
// as `make demo` runs it) and without (forwarded only, as uMap's own server does).
//
//	go test ./demo -run '^$' -bench Relay -benchtime 3s

// benchPeer is one WebSocket client of a benchmark: a reader goroutine counts the
// OperationMessages it receives.
type benchPeer struct {
	ws   *websocket.Conn
	id   string
	got  atomic.Int64
	pong chan struct{}
	err  atomic.Value // what ended the reader (an error)
}

// benchRelay serves a relay for b, stored in a temporary directory when stored, and joins
// n peers to map "load"; the peers' readers run until the benchmark ends, peer i's calling
// arrived(i), if not nil, after each OperationMessage.
func benchRelay(b *testing.B, n int, stored bool, arrived func(i int)) []*benchPeer {
	b.Helper()
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts := Options{Log: discard, MaxConnsPerIP: n + 1}
	if stored {
		opts.NewReplica = newStoreFactory(storeOptions{Dir: b.TempDir(), Log: discard})
	}
	relay := NewRelay(opts)
	srv := httptest.NewServer(relay)
	ctx, cancel := context.WithCancel(context.Background())
	var readers sync.WaitGroup
	b.Cleanup(func() {
		cancel()
		readers.Wait()
		sctx, scancel := context.WithTimeout(context.Background(), time.Minute)
		defer scancel()
		relay.Shutdown(sctx)
		srv.Close()
	})
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws/sync/load"
	peers := make([]*benchPeer, n)
	for i := range peers {
		ws, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			b.Fatal(err)
		}
		ws.SetReadLimit(64 << 20)
		p := &benchPeer{ws: ws, id: "p" + strconv.Itoa(i), pong: make(chan struct{}, 1)}
		if err := ws.Write(ctx, websocket.MessageText, []byte(`{"kind":"JoinRequest","token":"t","peer":"`+p.id+`"}`)); err != nil {
			b.Fatal(err)
		}
		peers[i] = p
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				_, data, err := ws.Read(ctx)
				if err != nil {
					p.err.Store(err)
					return
				}
				switch {
				case bytes.Contains(data, []byte(`"kind":"OperationMessage"`)):
					p.got.Add(1)
					if arrived != nil {
						arrived(i)
					}
				case string(data) == `{"kind":"pong"}`:
					p.pong <- struct{}{}
				}
			}
		}()
	}
	for _, p := range peers {
		p.barrier(b) // joined, and the room's greetings read
	}
	return peers
}

// barrier returns once the relay has handled every message p sent before it.
func (p *benchPeer) barrier(b *testing.B) {
	b.Helper()
	if !p.waitBarrier() {
		b.Fatalf("%s: no pong in a minute", p.id)
	}
}

// waitBarrier is barrier for any goroutine: false when the write failed or no pong came
// in a minute.
func (p *benchPeer) waitBarrier() bool {
	if p.ws.Write(context.Background(), websocket.MessageText, []byte(`{"kind":"ping"}`)) != nil {
		return false
	}
	select {
	case <-p.pong:
		return true
	case <-time.After(time.Minute):
		return false
	}
}

func (p *benchPeer) send(b *testing.B, msg []byte) {
	if err := p.ws.Write(context.Background(), websocket.MessageText, msg); err != nil {
		b.Fatalf("%s: write: %v", p.id, err)
	}
}

// benchEditor makes peer id's edits: each renames one of 1,000 features, a message of
// ~250 bytes as the demo page sends it.
type benchEditor struct {
	r *crdt.Replica
	i int
}

func newBenchEditor(b *testing.B, id string) *benchEditor {
	r, err := crdt.NewReplica(crdt.Options{PeerID: id})
	if err != nil {
		b.Fatal(err)
	}
	return &benchEditor{r: r}
}

func (e *benchEditor) next(b *testing.B) []byte {
	f := e.i % 1000
	e.i++
	meta := `{"id":"f` + strconv.Itoa(f) + `","layerId":"606d26bd-230f-4d3e-a2a7-0c3caed71548","featureType":"marker"}`
	if _, err := e.r.Update("feature", meta, "properties.name", `"name `+strconv.Itoa(e.i)+`"`); err != nil {
		b.Fatal(err)
	}
	msgs := e.r.Flush()
	if len(msgs) != 1 {
		b.Fatalf("%d messages for one edit", len(msgs))
	}
	return msgs[0]
}

// BenchmarkRelayFanout: one peer edits, the map's other peers receive. ns/op is one
// message's time from the writer's send to its arrival at the last of the other peers;
// the next leaves only then (a closed loop: latency, not throughput). p50-µs and p99-µs
// are the quantiles of those times.
func BenchmarkRelayFanout(b *testing.B) {
	for _, stored := range []bool{false, true} {
		for _, n := range []int{2, 10, 50} {
			b.Run("peers="+strconv.Itoa(n)+"/stored="+strconv.FormatBool(stored), func(b *testing.B) {
				var left atomic.Int64
				done := make(chan struct{}, 1)
				peers := benchRelay(b, n, stored, func(int) {
					if left.Add(-1) == 0 {
						done <- struct{}{}
					}
				})
				e := newBenchEditor(b, peers[0].id)
				var times []time.Duration
				for b.Loop() {
					// Made out of the timed part: ns/op is the relay's, from the send on.
					b.StopTimer()
					msg := e.next(b)
					b.StartTimer()
					left.Store(int64(n - 1))
					start := time.Now()
					peers[0].send(b, msg)
					select {
					case <-done:
					case <-time.After(time.Minute):
						b.Fatalf("a message did not reach %d peers in a minute", left.Load())
					}
					times = append(times, time.Since(start))
				}
				slices.Sort(times)
				b.ReportMetric(float64(times[len(times)/2].Nanoseconds())/1e3, "p50-µs")
				b.ReportMetric(float64(times[len(times)*99/100].Nanoseconds())/1e3, "p99-µs")
			})
		}
	}
}

// BenchmarkRelayThroughput: every peer of a map edits at once, as fast as the others
// take its messages: a peer sends on while no other peer lags more than window messages
// per writer behind what has been sent (on loopback a writer outruns the relay's writes
// to the others: unchecked, the queues would grow to the relay's bounds, and the figure
// would be the reads').
// It ends when every peer has received every other's messages. ops/s is the operations
// the map takes a second; deliveries/s the messages the relay writes.
func BenchmarkRelayThroughput(b *testing.B) {
	const window = 16
	for _, stored := range []bool{false, true} {
		for _, n := range []int{2, 10} {
			b.Run("peers="+strconv.Itoa(n)+"/stored="+strconv.FormatBool(stored), func(b *testing.B) {
				peers := benchRelay(b, n, stored, nil)
				per := b.N
				msgs := make([][][]byte, n)
				for i := range msgs {
					e := newBenchEditor(b, peers[i].id)
					for range per {
						msgs[i] = append(msgs[i], e.next(b))
					}
				}
				sent := make([]atomic.Int64, n)
				// lagging reports whether a peer has more than window messages per writer
				// to receive yet.
				lagging := func() bool {
					var all int64
					for i := range sent {
						all += sent[i].Load()
					}
					for i, p := range peers {
						if all-sent[i].Load()-p.got.Load() > int64(window*(n-1)) {
							return true
						}
					}
					return false
				}
				b.ResetTimer()
				start := time.Now()
				var writers sync.WaitGroup
				for i, p := range peers {
					writers.Add(1)
					go func() {
						defer writers.Done()
						deadline := time.Now().Add(time.Minute)
						for _, m := range msgs[i] {
							for lagging() {
								if time.Now().After(deadline) {
									b.Errorf("%s: the others lag for a minute", p.id)
									return
								}
								time.Sleep(20 * time.Microsecond)
							}
							if err := p.ws.Write(context.Background(), websocket.MessageText, m); err != nil {
								b.Errorf("%s: write: %v", p.id, err)
								return
							}
							sent[i].Add(1)
						}
					}()
				}
				writers.Wait()
				if b.Failed() {
					return
				}
				want := int64(per * (n - 1))
				deadline := time.Now().Add(time.Minute)
				for _, p := range peers {
					for p.got.Load() < want {
						if time.Now().After(deadline) {
							b.Fatalf("%s received %d of %d messages in a minute (reader: %v)", p.id, p.got.Load(), want, p.err.Load())
						}
						time.Sleep(20 * time.Microsecond)
					}
				}
				elapsed := time.Since(start).Seconds()
				b.ReportMetric(float64(per*n)/elapsed, "ops/s")
				b.ReportMetric(float64(per*n*(n-1))/elapsed, "deliveries/s")
			})
		}
	}
}
