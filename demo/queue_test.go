package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestQueuedBytesAreBounded: a client that does not read, and sends itself PeerMessages
// of 256 KiB, is closed as too slow once the messages waiting for it pass SendQueueBytes,
// far below SendQueue messages: the relay does not hold what it cannot send, and the
// room goes on. (By count only, 256 messages of any size, a client made the relay hold
// gigabytes.)
func TestQueuedBytesAreBounded(t *testing.T) {
	_, srv := startRelay(t, Options{SendQueue: 1 << 20, SendQueueBytes: 1 << 20, WriteTimeout: time.Minute})
	slow, _ := join(t, srv, "m", `,"peer":"slow"`)
	other, _ := join(t, srv, "m", `,"peer":"other"`)
	slow.expect("ListPeersResponse") // then it stops reading

	msg := []byte(`{"kind":"PeerMessage","recipient":"slow","message":{"v":"` + strings.Repeat("x", 256<<10) + `"}}`)
	stop := make(chan struct{})
	sent := make(chan int, 1)
	go func() { // 100 MiB at most, far more than the socket buffers hold
		n := 0
		defer func() { sent <- n }()
		for ; n < 400; n++ {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			err := slow.ws.Write(ctx, websocket.MessageText, msg)
			cancel()
			if err != nil {
				return
			}
		}
	}()
	other.wait = 30 * time.Second
	if got := peers(other.expect("ListPeersResponse")); slices.Contains(got, "slow") {
		t.Fatalf("peers %v", got)
	}
	close(stop)
	other.barrier()
	slow.expectClosed(websocket.StatusPolicyViolation, "too slow") // reads what was written
	t.Logf("slow sent %d messages of %d bytes", <-sent, len(msg))
	newcomer, _ := join(t, srv, "m", "")
	other.expect("ListPeersResponse")
	newcomer.send(`{"kind":"OperationMessage","verb":"delete","subject":"map"}`)
	other.expect("OperationMessage")
}

// TestBurstReachesEveryPeer: a peer that sends thousands of messages at once (its offline
// edits flushed on reconnecting, one message each) reaches every other peer, whose
// queues take the burst: on loopback the sender outruns the relay's writes, and a queue
// of 256 messages closed every reading peer "too slow" (a burst of 1,000 did).
func TestBurstReachesEveryPeer(t *testing.T) {
	_, srv := startRelay(t, Options{})
	const burst = 5000
	var readers []*client
	done := make(chan error, 2)
	for _, id := range []string{"r1", "r2"} {
		c, _ := join(t, srv, "m", `,"peer":"`+id+`"`)
		readers = append(readers, c)
	}
	writer, _ := join(t, srv, "m", `,"peer":"w"`)
	for _, c := range readers {
		go func() {
			got := 0
			for got < burst {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				_, data, err := c.ws.Read(ctx)
				cancel()
				if err != nil {
					done <- fmt.Errorf("%s after %d of %d messages: %v", c.id, got, burst, err)
					return
				}
				if strings.Contains(string(data), `"kind":"OperationMessage"`) {
					got++
				}
			}
			done <- nil
		}()
	}
	for i := range burst {
		writer.send(`{"kind":"OperationMessage","verb":"update","subject":"map","key":"n","value":` + strconv.Itoa(i) + `}`)
	}
	for range readers {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range readers {
		c.barrier()
	}
}
