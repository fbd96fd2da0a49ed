package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/coder/websocket"
)

// maxReason is the longest close reason sent, in bytes (RFC 6455 allows 123).
const maxReason = 123

// closeError is why the relay closes a connection.
type closeError struct {
	code   websocket.StatusCode
	reason string
}

// Error returns the close code and reason.
func (e *closeError) Error() string { return fmt.Sprintf("%d %s", e.code, e.reason) }

// policy is a policy-violation (1008) closeError.
func policy(format string, args ...any) error {
	return &closeError{websocket.StatusPolicyViolation, fmt.Sprintf(format, args...)}
}

// conn is one WebSocket connection: its reading goroutine handles incoming
// messages, its writing goroutine drains the bounded send queue.
type conn struct {
	relay   *Relay
	ws      *websocket.Conn
	mapName string

	// The send queue: messages waiting to be written, in order, and their bytes with
	// the one being written. A slice, not a channel of SendQueue slots: a queue takes
	// memory for what it holds only, so its bound can be far above any burst a peer
	// makes (its offline edits flushed at once) without costing every connection.
	qmu    sync.Mutex
	queue  [][]byte
	queued int64
	// held counts the messages the room holds back for c until a sync (group commit,
	// room.send): they count against the queue's bounds, their bytes in queued.
	held int
	wake chan struct{} // a message was queued (capacity 1)
	// joining is set when the JoinRequest arrives: JoinTimeout no longer applies.
	joining atomic.Bool
	// busy is set while the reading goroutine handles a message (a join may wait for
	// its map to open), handled counts the messages it has taken: the pong of a ping
	// is read by that goroutine, so a ping unanswered meanwhile says nothing of the link.
	busy    atomic.Bool
	handled atomic.Uint64

	// Set on join by the reading goroutine: room under the relay's lock, id and
	// name under the room's; left is set, under the relay's lock, once the
	// connection has left its room (or was kicked before joining one).
	room     *room
	id, name string
	left     bool
	// out is set under the room's lock when the connection leaves it: its
	// messages still to be handled are dropped.
	out bool

	once   sync.Once
	done   chan struct{} // closed by kick
	reason closeError    // written once, before done is closed
}

func newConn(r *Relay, ws *websocket.Conn, mapName string) *conn {
	return &conn{relay: r, ws: ws, mapName: mapName,
		wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// serve runs the connection until it is closed. A kicked connection leaves
// its room at once, even while its last write is still pending.
func (c *conn) serve(ctx context.Context) {
	if d := c.relay.opts.JoinTimeout; d > 0 {
		t := time.AfterFunc(d, func() {
			if !c.joining.Load() {
				c.kick(websocket.StatusPolicyViolation, fmt.Sprintf("no JoinRequest within %v", d))
			}
		})
		defer t.Stop()
	}
	written := make(chan struct{})
	go func() { defer close(written); c.writeLoop(ctx) }()
	read := make(chan error, 1)
	go func() { read <- c.readLoop(ctx) }()
	if c.relay.opts.PingInterval > 0 {
		go c.pingLoop(ctx)
	}

	var err error
	readDone := false
	select {
	case err = <-read:
		readDone = true
		var ce *closeError
		if errors.As(err, &ce) {
			c.kick(ce.code, ce.reason)
		} else {
			c.kick(websocket.StatusNormalClosure, "")
		}
	case <-c.done:
	}
	c.relay.leave(c)
	<-written // the writer has closed the WebSocket, so the reader ends too
	if !readDone {
		err = <-read
	}
	c.relay.opts.Log.Info("connection closed", "map", c.mapName, "peer", c.id,
		"code", int(c.reason.code), "reason", c.reason.reason, "read", err)
}

// kick starts closing the connection with code and reason; later calls do nothing.
func (c *conn) kick(code websocket.StatusCode, reason string) {
	c.once.Do(func() {
		c.reason = closeError{code, clip(reason, maxReason)}
		close(c.done)
	})
}

// enqueue queues msg for writing without blocking; a full queue (SendQueue
// messages, or SendQueueBytes bytes with msg) kicks c.
func (c *conn) enqueue(msg []byte) {
	if c.count(msg, false) {
		c.qmu.Lock()
		c.queue = append(c.queue, msg)
		c.qmu.Unlock()
		c.woken()
	}
}

// hold counts msg, which the room holds back for c until a sync, as queued: it reports
// whether it fits, and a full queue kicks c, as enqueue does. The room then passes it on
// with release.
func (c *conn) hold(msg []byte) bool { return c.count(msg, true) }

// release queues msg, which c's room held back (hold), for writing, or drops it.
func (c *conn) release(msg []byte, send bool) {
	c.qmu.Lock()
	c.held--
	send = send && !c.kicked()
	if send {
		c.queue = append(c.queue, msg)
	} else {
		c.queued -= int64(len(msg))
	}
	c.qmu.Unlock()
	if send {
		c.woken()
	}
}

// count counts msg into the queue's bounds, queued or held, unless c is being closed or
// the queue is full, which kicks c; it reports whether it did.
func (c *conn) count(msg []byte, held bool) bool {
	if c.kicked() {
		return false
	}
	size := int64(len(msg))
	c.qmu.Lock()
	full := len(c.queue)+c.held >= c.relay.opts.SendQueue ||
		c.queued+size > c.relay.opts.SendQueueBytes && c.queued > 0
	if !full {
		c.queued += size
		if held {
			c.held++
		}
	}
	c.qmu.Unlock()
	if full {
		c.kick(websocket.StatusPolicyViolation, "too slow")
	}
	return !full
}

// woken wakes the writer.
func (c *conn) woken() {
	select {
	case c.wake <- struct{}{}:
	default: // the writer is already woken
	}
}

// next takes the oldest queued message, if any.
func (c *conn) next() (msg []byte, ok bool) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if len(c.queue) == 0 {
		c.queue = nil // the array goes back, however large a burst made it
		return nil, false
	}
	msg = c.queue[0]
	c.queue[0] = nil
	c.queue = c.queue[1:]
	return msg, true
}

// written counts msg out of the queued bytes.
func (c *conn) written(msg []byte) {
	c.qmu.Lock()
	c.queued -= int64(len(msg))
	c.qmu.Unlock()
}

// reply queues msg for writing, after what c's room, if it joined one, still holds
// back for it (group commit: the replies to c's earlier messages).
func (c *conn) reply(msg []byte) {
	if c.room == nil {
		c.enqueue(msg)
		return
	}
	c.room.reply(c, msg)
}

// kicked reports whether c is being closed.
func (c *conn) kicked() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// writeLoop writes queued messages until c is kicked, then closes the
// WebSocket with the kick's code and reason.
func (c *conn) writeLoop(ctx context.Context) {
	for {
		select {
		case <-c.done:
			c.ws.Close(c.reason.code, c.reason.reason)
			return
		default:
		}
		msg, ok := c.next()
		if !ok {
			select {
			case <-c.done:
			case <-c.wake:
			}
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, c.relay.opts.WriteTimeout)
		err := c.ws.Write(wctx, websocket.MessageText, msg)
		cancel()
		c.written(msg)
		if err != nil {
			c.kick(websocket.StatusInternalError, "write failed")
			c.ws.CloseNow()
			return
		}
	}
}

// pingLoop pings the connection every PingInterval until it is kicked, and
// kicks it when a pong does not come within PingTimeout (the reading
// goroutine reads the pong) — unless that goroutine was handling a message
// or took one meanwhile: then the next ping decides.
func (c *conn) pingLoop(ctx context.Context) {
	t := time.NewTicker(c.relay.opts.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		before := c.handled.Load()
		pctx, cancel := context.WithTimeout(ctx, c.relay.opts.PingTimeout)
		err := c.ws.Ping(pctx)
		cancel()
		if err != nil {
			if c.busy.Load() || c.handled.Load() != before {
				continue // the reader was busy, or messages came: the next ping tells
			}
			c.kick(websocket.StatusGoingAway, "no pong")
			return
		}
	}
}

// readLoop handles incoming messages until the connection fails or a
// message breaks the protocol; it returns why.
func (c *conn) readLoop(ctx context.Context) error {
	for {
		typ, data, err := c.ws.Read(ctx)
		if err != nil {
			if errors.Is(err, websocket.ErrMessageTooBig) {
				// The library has already closed with 1009 and its reason.
				return &closeError{websocket.StatusMessageTooBig,
					fmt.Sprintf("message too big: limit is %d bytes", c.relay.opts.MaxMessageSize)}
			}
			return err
		}
		select {
		case <-c.done:
			return nil // being closed: ignore what still arrives
		default:
		}
		if typ != websocket.MessageText {
			return policy("binary frames are not accepted: send JSON text")
		}
		c.busy.Store(true)
		err = c.handle(data)
		c.handled.Add(1)
		c.busy.Store(false)
		if err != nil {
			return err
		}
	}
}

// handle validates and dispatches one message.
func (c *conn) handle(data []byte) error {
	if string(data) == "ping" {
		// uMap's keep-alive: WebSocketTransport sends the text "ping" and waits for the
		// text "pong" (websocket.js connect, onMessage; umap/sync/app.py sync answers it).
		c.reply([]byte("pong"))
		return nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return policy("message is not a JSON object but %s", typeErr.Value)
		}
		var syntaxErr *json.SyntaxError
		if errors.As(err, &syntaxErr) {
			at := int(syntaxErr.Offset)
			return policy("invalid JSON at byte %d, after %q: %v", at, data[max(0, at-24):at], err)
		}
		return policy("invalid JSON: %v", err)
	}
	if fields == nil {
		return policy("message is not a JSON object but null")
	}
	var kind string
	if err := json.Unmarshal(fields["kind"], &kind); err != nil {
		return policy(`message without a string "kind"`)
	}
	switch kind {
	case "ping":
		c.reply([]byte(`{"kind":"pong"}`))
		return nil
	case "JoinRequest", "OperationMessage", "SavedMessage", "PeerMessage":
	default:
		return policy("unknown kind %.40q", kind)
	}
	if kind == "JoinRequest" {
		if c.joining.Swap(true) {
			return policy("JoinRequest sent twice")
		}
		return c.join(data)
	}
	if c.room == nil {
		return policy("%s before JoinRequest", kind)
	}
	if kind == "PeerMessage" {
		return c.room.peerMessage(c, data, fields)
	}
	return c.room.operation(c, data)
}

// join reads a JoinRequest and joins the room of c's map.
func (c *conn) join(data []byte) error {
	var req struct {
		Token string `json:"token"`
		Peer  string `json:"peer"`
		Name  string `json:"name"`
		// Username is the name as uMap's client sends it (websocket.js connect:
		// {token, peer, username}; umap/sync/payloads.py JoinRequest).
		Username string `json:"username"`
	}
	if err := json.Unmarshal(data, &req); err != nil {
		return policy("bad JoinRequest: %v", err)
	}
	if req.Name == "" {
		req.Name = req.Username
	}
	name := clip(printable(req.Name), 64)
	return c.relay.join(c, req.Peer, name)
}

// printable drops control characters from a display name.
func printable(s string) string {
	out := make([]rune, 0, len(s))
	for _, r := range s {
		if !unicode.IsControl(r) {
			out = append(out, r)
		}
	}
	return string(out)
}

// clip shortens s to at most n bytes, cutting at a character boundary and
// marking the cut with "…".
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
