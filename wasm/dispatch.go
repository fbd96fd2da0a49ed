package main

import (
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/mapcrdt/mapcrdt/crdt"
	"github.com/mapcrdt/mapcrdt/hlc"
)

// Method is the index of a call in the call table. The glue reads the table by name from
// __mapcrdt.methods, so the numbering may change between builds, never the names.
type Method uint32

// The call table. Arguments are listed as [name, …]; "?" marks an optional trailing one.
const (
	// MethodCreate [peerId?, maxDriftMs?, undoDepth?, captureIntervalMs?, maxMessageBytes?,
	// maxDepth?, maxBatch?, maxKeyBytes?, maxKeyParts?, snapshot?, syncPage?] → the new
	// handle, decimal.
	// Empty text means the default.
	MethodCreate Method = iota
	// MethodClose [] → "" (closing twice is not an error).
	MethodClose
	// MethodPeerID [] → the peer id as plain text.
	MethodPeerID
	// MethodEdit [verb, subject, metadata, key?, value?, oldValue?, group?, undo?] → the changes
	// (the compact JSON array of changes.go) if flags has FlagChanges, else "". verb is update, upsert or delete; an
	// update without a value unsets the key. undo "false" keeps the edit out of the undo
	// history (crdt.Edit.NoUndo); "" or absent: undoable.
	MethodEdit
	// MethodStartBatch, MethodCommitBatch [] → "".
	MethodStartBatch
	MethodCommitBatch
	// MethodInBatch [] → "true" | "false".
	MethodInBatch
	// MethodSeed [subject, metadata, value] → changes as MethodEdit.
	MethodSeed
	// MethodFlush [] → messages separated by 0x1E ("" when none).
	MethodFlush
	// MethodPending [] → the outbox length, decimal.
	MethodPending
	// MethodReceive [message] → the changes (compact, see changes.go), then each reply
	// preceded by 0x1E.
	MethodReceive
	// MethodSyncRequest [recipient?] → the message.
	MethodSyncRequest
	// MethodUndo, MethodRedo [] → {"done":bool,"skipped":[{subject,metadata,key}]}, 0x1E, then
	// the changes (compact, see changes.go).
	MethodUndo
	MethodRedo
	// MethodCanUndo, MethodCanRedo [] → "true" | "false".
	MethodCanUndo
	MethodCanRedo
	// MethodGet [subject, metadata, key?] → the value as JSON, "" when absent.
	MethodGet
	// MethodState [] → the canonical state (crdt.Replica.State).
	MethodState
	// MethodClock [] → the replica's clock (crdt.Replica.Clock), "wall:counter:peer".
	MethodClock
	// MethodVector [] → the version vector, {"peer":seq,…} sorted by peer.
	MethodVector
	// MethodPeers [] → the known peers, a JSON array of strings.
	MethodPeers
	// MethodSetPeers [peers separated by 0x1E] → "".
	MethodSetPeers
	// MethodMarkSaved [hlc] → "".
	MethodMarkSaved
	// MethodSavedMessage [] → the SavedMessage.
	MethodSavedMessage
	// MethodDirty [] → [{"subject","metadata"},…].
	MethodDirty
	// MethodCompact [] → {"ops","bytes","remaining"}.
	MethodCompact
	// MethodSnapshot [] → the snapshot bytes.
	MethodSnapshot
	// MethodMerge [reference, latest, incoming, policy?] → the merged document, 0x1E, the
	// conflicts (JSON array); handle is ignored. policy is "fail" (default), "latest" or "incoming". A conflict
	// under "fail" is an error whose JSON carries "conflicts".
	MethodMerge
	// MethodMemory [] → {"heapAlloc","heapInuse","heapSys","sys","totalAlloc","mallocs","numGC"} of the Go heap;
	// with FlagGC, after a garbage collection. Handle is ignored.
	MethodMemory
	// MethodRestoreStep [work] → "" while the restore of a snapshot that MethodCreate began
	// under FlagStepwise goes on, "done" once the engine is ready under its handle: each
	// call does about work units of it (crdt.Restore.Step). An error ends the restore.
	MethodRestoreStep

	numMethods
)

var methodNames = [numMethods]string{
	MethodCreate: "create", MethodClose: "close", MethodPeerID: "peerId", MethodEdit: "edit",
	MethodStartBatch: "startBatch", MethodCommitBatch: "commitBatch", MethodInBatch: "inBatch",
	MethodSeed: "seed", MethodFlush: "flush", MethodPending: "pending", MethodReceive: "receive",
	MethodSyncRequest: "syncRequest", MethodUndo: "undo", MethodRedo: "redo",
	MethodCanUndo: "canUndo", MethodCanRedo: "canRedo", MethodGet: "get", MethodState: "state",
	MethodClock: "clock", MethodVector: "vector", MethodPeers: "peers", MethodSetPeers: "setPeers",
	MethodMarkSaved: "markSaved", MethodSavedMessage: "savedMessage", MethodDirty: "dirty",
	MethodCompact: "compact", MethodSnapshot: "snapshot", MethodMerge: "merge", MethodMemory: "memory",
	MethodRestoreStep: "restoreStep",
}

// Methods returns the names of the call table, by index.
func Methods() []string { return methodNames[:] }

// MethodByName returns the index of a method name.
func MethodByName(name string) (Method, bool) {
	for i, n := range methodNames {
		if n == name {
			return Method(i), true
		}
	}
	return 0, false
}

// Flags modify a call.
const (
	// FlagChanges asks local edits (edit, seed) to return their changes; without it they
	// return "" and skip the work of writing them.
	FlagChanges uint32 = 1 << iota
	// FlagGC asks memory to collect garbage first.
	FlagGC
	// FlagStepwise asks create, given a snapshot, to begin its restore and return the
	// handle the engine will have: MethodRestoreStep goes on with it, a share a call, so
	// that the event loop is not held for the whole restore.
	FlagStepwise
)

// RecordSeparator separates the messages of a list result. Valid JSON text never holds the
// byte 0x1E unescaped.
const RecordSeparator = 0x1E

// Call is one call into the module.
type Call struct {
	Method Method
	Handle uint32
	Flags  uint32
	// Now is the caller's wall clock in milliseconds since the epoch (Date.now()); 0 or
	// less means the system clock.
	Now int64
	// Args are the arguments, UTF-8 text or bytes. Call copies what it keeps.
	Args [][]byte
	// Objects is how many objects the caller's table of changes' objects holds (see
	// changes.go): 0 for a caller that keeps none, which is then sent every object.
	Objects uint32

	changes *[]crdt.Change // the host's reused buffer of changes, set by Host.run
	rows    *changeRows    // the host's writer of changes, set by Host.run
}

// appendChanges appends changes in the compact form of changes.go.
func (c *Call) appendChanges(dst []byte, changes []crdt.Change) []byte {
	if len(changes) > 16 {
		dst = slices.Grow(dst, changesSize(changes)) // a catch-up's: one buffer, not a doubling series
	}
	if c.rows == nil {
		return new(changeRows).appendTo(dst, changes, 0)
	}
	return c.rows.appendTo(dst, changes, c.Objects)
}

// changeBuf returns the buffer of changes to reuse (empty), and keeps what a handler used.
func (c *Call) changeBuf() []crdt.Change {
	if c.changes == nil {
		return nil
	}
	return (*c.changes)[:0]
}

// keep gives the buffer back after the changes were written out.
func (c *Call) keep(used []crdt.Change) {
	// The buffer must not keep a replica's values alive. (One change, the usual, without
	// clear's calls of the runtime, and field by field: a Change{} stored whole is a
	// memory.fill in wasm, a call into the engine.)
	switch len(used) {
	case 0:
	case 1:
		u := &used[0]
		u.Kind, u.Subject, u.Metadata, u.Key, u.Value, u.HLC = "", "", "", "", "", hlc.Timestamp{}
	default:
		clear(used)
	}
	if c.changes != nil && cap(used) <= 1024 && cap(used) > cap(*c.changes) {
		*c.changes = used[:0]
	}
}

// Host is the handle table of engines and the dispatcher. It is not safe for concurrent
// use (there is one thread in a wasm module).
type Host struct {
	engines map[uint32]*crdt.Replica
	// restores are the engines whose snapshot is being restored (FlagStepwise), by handle.
	restores map[uint32]*crdt.Restore
	// The engine of the last call and its handle: a page's calls mostly go to one engine.
	lastHandle uint32
	lastEngine *crdt.Replica
	last       uint32        // the last handle given; handles are never reused
	now        int64         // the wall clock of the current call (see Call.Now)
	changes    []crdt.Change // the buffer receive reuses for the changes of one call
	rows       changeRows    // the writer of the changes a call returns
}

// NewHost returns an empty handle table.
func NewHost() *Host {
	return &Host{engines: map[uint32]*crdt.Replica{}, restores: map[uint32]*crdt.Restore{}}
}

// wall is the wall clock every replica of the host reads: the value the current call
// brought, or the system clock.
func (h *Host) wall() int64 {
	if h.now > 0 {
		return h.now
	}
	return hlc.SystemClock{}.NowMillis()
}

// callError is an error the bridge itself reports, with its stable code.
type callError struct {
	code, msg string
}

// Error returns "code: message".
func (e *callError) Error() string { return e.code + ": " + e.msg }

// errorCode returns the stable code of err.
func errorCode(err error) string {
	if e, ok := err.(*callError); ok {
		return e.code
	}
	return crdt.Code(err)
}

// Len returns the number of engines open.
func (h *Host) Len() int { return len(h.engines) }

// Call runs one call, appending its result to dst. ok false means dst holds an error:
// {"code":…,"message":…} (plus "conflicts" for a merge conflict). Call never panics: a panic
// inside is returned as code "internal".
//
// c is not kept, nor are its Args: the caller may reuse both.
func (h *Host) Call(dst []byte, c *Call) (out []byte, ok bool) {
	start := len(dst)
	defer func() {
		if p := recover(); p != nil {
			out, ok = appendError(dst[:start], &callError{code: "internal", msg: panicText(p)}), false
		}
		h.now = 0
	}()
	return h.call(dst, c)
}

// call is Call without its recover: the caller recovers a panic, and then resets h.now
// (the wasmexport bridge, whose own recover makes a second one a cost on every call).
func (h *Host) call(dst []byte, c *Call) ([]byte, bool) {
	start := len(dst)
	h.now = c.Now
	if c.Method >= numMethods {
		h.now = 0
		return appendError(dst, &callError{code: "internal", msg: "no method " + strconv.FormatUint(uint64(c.Method), 10)}), false
	}
	out, err := h.run(dst, c)
	h.now = 0
	if err != nil {
		return appendErrorResult(dst[:start], err), false
	}
	return out, true
}

// panicText renders a recovered panic value with the stack of the panic.
func panicText(p any) string {
	var s string
	switch v := p.(type) {
	case error:
		s = v.Error()
	case string:
		s = v
	default:
		s = "panic of a non-error value"
	}
	buf := make([]byte, 4096)
	buf = buf[:runtime.Stack(buf, false)]
	return "panic: " + s + "\n" + string(buf)
}

// arg returns argument i as text; a missing required argument panics (index out of range),
// which Call reports as "internal": it is a bug of the caller, not bad input.
func (c *Call) arg(i int) string { return string(c.Args[i]) }

// view returns argument i as text without a copy: valid only while the call runs, for
// engine methods documented to keep nothing of their arguments.
func (c *Call) view(i int) string { return unsafe.String(unsafe.SliceData(c.Args[i]), len(c.Args[i])) }

// viewOpt is view for an optional argument, "" if absent.
func (c *Call) viewOpt(i int) string {
	if i < len(c.Args) {
		return c.view(i)
	}
	return ""
}

// opt returns optional argument i as text, "" if absent.
func (c *Call) opt(i int) string {
	if i < len(c.Args) {
		return string(c.Args[i])
	}
	return ""
}

// handler runs one method on replica r (nil for the methods of the module itself).
type handler func(r *crdt.Replica, dst []byte, c *Call) ([]byte, error)

// handlers is the call table: small functions, one per method, so that a call's stack
// frame holds only what its method needs (a frame is zeroed on every call, and wasm pays
// for it).
var handlers [numMethods]handler

func init() {
	handlers = [numMethods]handler{
		MethodPeerID: func(r *crdt.Replica, dst []byte, _ *Call) ([]byte, error) {
			return append(dst, r.PeerID()...), nil
		},
		MethodEdit:        edit,
		MethodSeed:        seed,
		MethodStartBatch:  func(r *crdt.Replica, dst []byte, _ *Call) ([]byte, error) { return dst, r.StartBatch() },
		MethodCommitBatch: func(r *crdt.Replica, dst []byte, _ *Call) ([]byte, error) { return dst, r.CommitBatch() },
		MethodInBatch: func(r *crdt.Replica, dst []byte, _ *Call) ([]byte, error) {
			return strconv.AppendBool(dst, r.InBatch()), nil
		},
		MethodFlush: flush,
		MethodPending: func(r *crdt.Replica, dst []byte, _ *Call) ([]byte, error) {
			return strconv.AppendInt(dst, int64(r.Pending()), 10), nil
		},
		MethodReceive:     receive,
		MethodSyncRequest: syncRequest,
		MethodUndo:        func(r *crdt.Replica, dst []byte, c *Call) ([]byte, error) { return revert(dst, c, r.Undo) },
		MethodRedo:        func(r *crdt.Replica, dst []byte, c *Call) ([]byte, error) { return revert(dst, c, r.Redo) },
		MethodCanUndo: func(r *crdt.Replica, dst []byte, _ *Call) ([]byte, error) {
			return strconv.AppendBool(dst, r.CanUndo()), nil
		},
		MethodCanRedo: func(r *crdt.Replica, dst []byte, _ *Call) ([]byte, error) {
			return strconv.AppendBool(dst, r.CanRedo()), nil
		},
		MethodGet: get,
		MethodState: func(r *crdt.Replica, dst []byte, _ *Call) ([]byte, error) {
			return append(dst, r.State()...), nil
		},
		MethodClock: func(r *crdt.Replica, dst []byte, _ *Call) ([]byte, error) {
			return r.Clock().AppendText(dst), nil
		},
		MethodVector: func(r *crdt.Replica, dst []byte, _ *Call) ([]byte, error) {
			return r.Vector().AppendJSON(dst), nil
		},
		MethodPeers: func(r *crdt.Replica, dst []byte, _ *Call) ([]byte, error) {
			return appendStrings(dst, r.Peers()), nil
		},
		MethodSetPeers:  setPeers,
		MethodMarkSaved: markSaved,
		MethodSavedMessage: func(r *crdt.Replica, dst []byte, _ *Call) ([]byte, error) {
			return append(dst, r.SavedMessage()...), nil
		},
		MethodDirty:   dirty,
		MethodCompact: compact,
		MethodSnapshot: func(r *crdt.Replica, dst []byte, _ *Call) ([]byte, error) {
			snap, err := snapshot(r)
			return append(dst, snap...), err
		},
		MethodMerge: func(_ *crdt.Replica, dst []byte, c *Call) ([]byte, error) { return merge(dst, c) },
		MethodMemory: func(_ *crdt.Replica, dst []byte, c *Call) ([]byte, error) {
			return memory(dst, c.Flags&FlagGC != 0), nil
		},
	}
}

func (h *Host) run(dst []byte, c *Call) ([]byte, error) {
	switch c.Method {
	case MethodCreate:
		return h.create(dst, c)
	case MethodClose:
		delete(h.engines, c.Handle)
		delete(h.restores, c.Handle)
		h.lastHandle, h.lastEngine = 0, nil
		return dst, nil
	case MethodMerge, MethodMemory:
		return handlers[c.Method](nil, dst, c)
	case MethodRestoreStep:
		return h.restoreStep(dst, c)
	}
	r := h.lastEngine
	if c.Handle != h.lastHandle || r == nil {
		r = h.engines[c.Handle]
		h.lastHandle, h.lastEngine = c.Handle, r
	}
	if r == nil {
		return nil, &callError{code: "bad_state", msg: "no engine " + strconv.FormatUint(uint64(c.Handle), 10) + " (closed, or never created)"}
	}
	c.changes, c.rows = &h.changes, &h.rows
	out, err := handlers[c.Method](r, dst, c)
	c.changes, c.rows = nil, nil // (after a panic, the caller's next Call overwrites them)
	return out, err
}

func edit(r *crdt.Replica, dst []byte, c *Call) ([]byte, error) {
	// Apply keeps no part of an Edit's strings (it copies what it keeps; see crdt.Edit), so
	// the hot path reads the arguments in place.
	e := crdt.Edit{Subject: c.view(1), Metadata: c.view(2), Key: c.viewOpt(3), Value: c.viewOpt(4), OldValue: c.viewOpt(5), Group: c.viewOpt(6)}
	switch string(c.Args[0]) { // compared in place, where a string made of it took a copy
	case "update":
		e.Verb = crdt.VerbUpdate
	case "upsert":
		e.Verb = crdt.VerbUpsert
	case "delete":
		e.Verb = crdt.VerbDelete
	default:
		return nil, &callError{code: "unknown_verb", msg: "a local edit is update, upsert or delete, not " + strconv.Quote(string(c.Args[0]))}
	}
	switch undo := c.viewOpt(7); undo {
	case "":
	case "false":
		e.NoUndo = true
	default:
		return nil, &callError{code: "bad_option", msg: "undo is \"false\" or empty, not " + strconv.Quote(undo)}
	}
	changes, err := r.ApplyAppend(c.changeBuf(), e)
	if c.Flags&FlagChanges != 0 {
		dst = c.appendChanges(dst, changes)
	}
	c.keep(changes)
	return dst, err
}

func seed(r *crdt.Replica, dst []byte, c *Call) ([]byte, error) {
	changes, err := r.Seed(c.arg(0), c.arg(1), c.arg(2))
	if c.Flags&FlagChanges != 0 {
		dst = c.appendChanges(dst, changes)
	}
	return dst, err
}

func flush(r *crdt.Replica, dst []byte, _ *Call) ([]byte, error) {
	dst, _ = r.FlushAppend(dst, RecordSeparator)
	return dst, nil
}

func receive(r *crdt.Replica, dst []byte, c *Call) ([]byte, error) {
	// Receive copies what it keeps (it reads the message as a string), so the argument,
	// which points into the bridge's reused input buffer, is passed as it is.
	res, err := r.ReceiveAppend(c.changeBuf(), c.Args[0])
	if err != nil {
		return nil, err
	}
	if len(res.Replies) > 0 {
		n := 0
		for _, m := range res.Replies {
			n += 1 + len(m)
		}
		if len(res.Changes) > 16 {
			n += changesSize(res.Changes)
		}
		// A sixteenth more: what the glue asks for to write the same text as the next
		// call's argument (a catch-up's answer, passed to the engine that asked), which then
		// reuses this buffer (exportIn).
		dst = slices.Grow(dst, n+n>>4)
	}
	dst = c.appendChanges(dst, res.Changes)
	c.keep(res.Changes)
	for _, m := range res.Replies {
		dst = append(dst, RecordSeparator)
		dst = append(dst, m...)
	}
	return dst, nil
}

func revert(dst []byte, c *Call, do func() (crdt.UndoResult, error)) ([]byte, error) {
	res, err := do()
	if err != nil {
		return nil, err
	}
	return appendUndoResult(dst, c, res), nil
}

func get(r *crdt.Replica, dst []byte, c *Call) ([]byte, error) {
	v, ok, err := r.Get(c.arg(0), c.arg(1), c.opt(2))
	if err != nil || !ok {
		return dst, err
	}
	return append(dst, v...), nil
}

func setPeers(r *crdt.Replica, dst []byte, c *Call) ([]byte, error) {
	var peers []string
	if list := c.opt(0); list != "" {
		peers = strings.Split(list, string(rune(RecordSeparator)))
	}
	for _, p := range peers {
		if err := hlc.ValidPeer(p); err != nil {
			return nil, &callError{code: "bad_option", msg: "peer " + strconv.Quote(p) + ": " + err.Error()}
		}
	}
	r.SetPeers(peers)
	return dst, nil
}

func markSaved(r *crdt.Replica, dst []byte, c *Call) ([]byte, error) {
	ts, err := hlc.Parse(c.arg(0))
	if err != nil {
		return nil, &callError{code: "bad_hlc", msg: err.Error()}
	}
	return dst, r.MarkSaved(ts)
}

// syncRequest asks the recipient given, which must be a valid peer id, or a known peer
// other than this one: a request addressed to no one would reach no one (and uMap's relay
// and ours refuse a PeerMessage without a recipient).
func syncRequest(r *crdt.Replica, dst []byte, c *Call) ([]byte, error) {
	to := c.opt(0)
	if to == "" && !slices.ContainsFunc(r.Peers(), func(p string) bool { return p != r.PeerID() }) {
		return nil, &callError{code: "bad_state", msg: "syncRequest: no known peer to ask; name the recipient"}
	}
	if to != "" {
		if err := hlc.ValidPeer(to); err != nil {
			return nil, &callError{code: "bad_option", msg: "recipient " + strconv.Quote(to) + ": " + err.Error()}
		}
	}
	return append(dst, r.SyncRequest(to)...), nil
}

func dirty(r *crdt.Replica, dst []byte, _ *Call) ([]byte, error) {
	dst = append(dst, '[')
	for i, d := range r.Dirty() {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"subject":`...)
		dst = crdt.AppendJSONString(dst, d.Subject)
		dst = append(dst, `,"metadata":`...)
		dst = append(dst, d.Metadata...)
		dst = append(dst, '}')
	}
	return append(dst, ']'), nil
}

func compact(r *crdt.Replica, dst []byte, _ *Call) ([]byte, error) {
	st := r.Compact()
	dst = append(dst, `{"ops":`...)
	dst = strconv.AppendInt(dst, int64(st.Ops), 10)
	dst = append(dst, `,"bytes":`...)
	dst = strconv.AppendInt(dst, int64(st.Bytes), 10)
	dst = append(dst, `,"remaining":`...)
	dst = strconv.AppendInt(dst, int64(st.Remaining), 10)
	return append(dst, '}'), nil
}

// create makes a replica from the options of MethodCreate.
func (h *Host) create(dst []byte, c *Call) ([]byte, error) {
	opts := crdt.DefaultOptions()
	opts.PeerID = c.opt(0)
	opts.Wall = hlc.WallFunc(h.wall)
	num := func(i int, name string, most int64) (int64, bool, error) {
		s := c.opt(i)
		if s == "" {
			return 0, false, nil
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return 0, false, &callError{code: "bad_option", msg: name + " must be a non-negative integer, got " + strconv.Quote(s)}
		}
		if n > most {
			return 0, false, &callError{code: "bad_option", msg: name + " must be at most " + strconv.FormatInt(most, 10) + " ms (~292 years, what a time.Duration holds), got " + s}
		}
		return n, true, nil
	}
	var err error
	set := func(i int, name string, most int64, apply func(int64)) {
		if err != nil {
			return
		}
		var n int64
		var ok bool
		if n, ok, err = num(i, name, most); ok {
			apply(n)
		}
	}
	// A duration's milliseconds must fit a time.Duration (int64 nanoseconds): past it,
	// time.Duration(n) * time.Millisecond wraps (maxDrift 18446744073710 became 0, the drift
	// guard off, and 9223372036855 a negative duration).
	const maxMillis = int64(math.MaxInt64 / hlc.Millisecond)
	set(1, "maxDrift", maxMillis, func(n int64) { opts.MaxDrift = hlc.Duration(n) * hlc.Millisecond })
	set(2, "undoDepth", math.MaxInt64, func(n int64) { opts.UndoDepth = int(n) })
	set(3, "captureInterval", maxMillis, func(n int64) { opts.CaptureInterval = hlc.Duration(n) * hlc.Millisecond })
	set(4, "limits.maxMessageBytes", math.MaxInt64, func(n int64) { opts.Limits.MaxMessageBytes = int(n) })
	set(5, "limits.maxDepth", math.MaxInt64, func(n int64) { opts.Limits.MaxDepth = int(n) })
	set(6, "limits.maxBatch", math.MaxInt64, func(n int64) { opts.Limits.MaxBatch = int(n) })
	set(7, "limits.maxKeyBytes", math.MaxInt64, func(n int64) { opts.Limits.MaxKeyBytes = int(n) })
	set(8, "limits.maxKeyParts", math.MaxInt64, func(n int64) { opts.Limits.MaxKeyParts = int(n) })
	set(10, "syncPage", math.MaxInt64, func(n int64) { opts.SyncPage = int(n) })
	if err != nil {
		return nil, err
	}
	var r *crdt.Replica
	if len(c.Args) > 9 && len(c.Args[9]) > 0 && c.Flags&FlagStepwise != 0 {
		x, err := crdt.StartRestore(opts, c.Args[9]) // it copies the snapshot's text
		if err != nil {
			return nil, err
		}
		h.last++
		h.restores[h.last] = x
		return strconv.AppendUint(dst, uint64(h.last), 10), nil
	} else if len(c.Args) > 9 && len(c.Args[9]) > 0 {
		r, err = fromSnapshot(opts, append([]byte(nil), c.Args[9]...))
	} else {
		r, err = crdt.NewReplica(opts)
	}
	if err != nil {
		return nil, err
	}
	h.last++
	h.engines[h.last] = r
	return strconv.AppendUint(dst, uint64(h.last), 10), nil
}

// restoreStep runs MethodRestoreStep.
func (h *Host) restoreStep(dst []byte, c *Call) ([]byte, error) {
	x := h.restores[c.Handle]
	if x == nil {
		return nil, &callError{code: "bad_state", msg: "no restore under way for " + strconv.FormatUint(uint64(c.Handle), 10)}
	}
	work, err := strconv.Atoi(c.opt(0))
	if err != nil || work < 1 {
		return nil, &callError{code: "bad_option", msg: "work must be a positive integer, got " + strconv.Quote(c.opt(0))}
	}
	r, err := x.Step(work)
	if err != nil {
		delete(h.restores, c.Handle)
		return nil, err
	}
	if r == nil {
		return dst, nil
	}
	delete(h.restores, c.Handle)
	h.engines[c.Handle] = r
	return append(dst, "done"...), nil
}

// appendUndoResult writes {"done":…,"skipped":[…]}, then RecordSeparator and the changes
// in the compact form of changes.go.
func appendUndoResult(dst []byte, c *Call, res crdt.UndoResult) []byte {
	dst = append(dst, `{"done":`...)
	dst = strconv.AppendBool(dst, res.Done)
	dst = append(dst, `,"skipped":[`...)
	for i, s := range res.Skipped {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"subject":`...)
		dst = crdt.AppendJSONString(dst, s.Subject)
		dst = append(dst, `,"metadata":`...)
		dst = append(dst, s.Metadata...)
		dst = append(dst, `,"key":`...)
		dst = crdt.AppendJSONString(dst, s.Key)
		dst = append(dst, '}')
	}
	dst = append(dst, "]}"...)
	dst = append(dst, RecordSeparator)
	return c.appendChanges(dst, res.Changes)
}

// merge runs crdt.Merge.
func merge(dst []byte, c *Call) ([]byte, error) {
	var policy crdt.MergePolicy
	switch p := c.opt(3); p {
	case "", "fail":
		policy = crdt.MergeFail
	case "latest":
		policy = crdt.MergeLatestWins
	case "incoming":
		policy = crdt.MergeIncomingWins
	default:
		return nil, &callError{code: "bad_option", msg: "policy must be \"fail\", \"latest\" or \"incoming\", not " + strconv.Quote(p)}
	}
	res, err := crdt.Merge(c.Args[0], c.Args[1], c.Args[2], policy)
	if err != nil {
		if len(res.Conflicts) > 0 {
			return nil, &mergeError{err: err, conflicts: res.Conflicts}
		}
		return nil, err
	}
	dst = append(dst, res.Document...)
	dst = append(dst, RecordSeparator)
	return crdt.AppendConflictsJSON(dst, res.Conflicts), nil
}

// mergeError is a merge refused for its conflicts: the error JSON carries them.
type mergeError struct {
	err       error
	conflicts []crdt.Conflict
}

// Error returns the merge error's text.
func (e *mergeError) Error() string { return e.err.Error() }

// Unwrap returns the engine's error.
func (e *mergeError) Unwrap() error { return e.err }

// memory reports the Go heap.
func memory(dst []byte, gc bool) []byte {
	if gc {
		runtime.GC()
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	dst = append(dst, `{"heapAlloc":`...)
	dst = strconv.AppendUint(dst, m.HeapAlloc, 10)
	dst = append(dst, `,"heapInuse":`...)
	dst = strconv.AppendUint(dst, m.HeapInuse, 10)
	dst = append(dst, `,"heapSys":`...)
	dst = strconv.AppendUint(dst, m.HeapSys, 10)
	dst = append(dst, `,"sys":`...)
	dst = strconv.AppendUint(dst, m.Sys, 10)
	dst = append(dst, `,"totalAlloc":`...)
	dst = strconv.AppendUint(dst, m.TotalAlloc, 10)
	dst = append(dst, `,"mallocs":`...)
	dst = strconv.AppendUint(dst, m.Mallocs, 10)
	dst = append(dst, `,"numGC":`...)
	dst = strconv.AppendUint(dst, uint64(m.NumGC), 10)
	return append(dst, '}')
}

// appendErrorResult writes err as the error JSON of a failed call.
func appendErrorResult(dst []byte, err error) []byte {
	if me, ok := err.(*mergeError); ok {
		dst = appendError(dst, me.err)
		dst = dst[:len(dst)-1]
		dst = append(dst, `,"conflicts":`...)
		dst = crdt.AppendConflictsJSON(dst, me.conflicts)
		return append(dst, '}')
	}
	return appendError(dst, err)
}

// appendError writes {"code":…,"message":…}. The message is the error text without its
// "code: " prefix.
func appendError(dst []byte, err error) []byte {
	code := errorCode(err)
	msg := strings.TrimPrefix(err.Error(), code+": ")
	dst = append(dst, `{"code":`...)
	dst = crdt.AppendJSONString(dst, code)
	dst = append(dst, `,"message":`...)
	dst = crdt.AppendJSONString(dst, msg)
	return append(dst, '}')
}

func appendStrings(dst []byte, list []string) []byte {
	dst = append(dst, '[')
	for i, s := range list {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = crdt.AppendJSONString(dst, s)
	}
	return append(dst, ']')
}
