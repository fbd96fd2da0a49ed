package crdt

import (
	"errors"
	"strconv"

	"github.com/mapcrdt/mapcrdt/hlc"
)

// Sentinel errors callers branch on. Every error the engine returns for bad input is an
// *Error whose Unwrap gives one of these (errors.Is works) and whose Code is stable text
// that crosses to JavaScript unchanged.
var (
	ErrInvalidJSON     = errors.New("invalid_json")     // not well-formed JSON, or invalid UTF-8
	ErrUnknownVerb     = errors.New("unknown_verb")     // verb not update/upsert/delete/batch
	ErrUnknownSubject  = errors.New("unknown_subject")  // subject not in the subject table
	ErrUnknownKind     = errors.New("unknown_kind")     // message kind not understood
	ErrBadMessage      = errors.New("bad_message")      // a field missing or of the wrong type
	ErrBadMetadata     = errors.New("bad_metadata")     // identity fields missing or malformed
	ErrBadKey          = errors.New("bad_key")          // malformed key path
	ErrBadValue        = errors.New("bad_value")        // a value of the wrong shape (upsert of a non-object)
	ErrBadHLC          = errors.New("bad_hlc")          // malformed clock text
	ErrClockDrift      = errors.New("clock_drift")      // a remote clock too far ahead
	ErrTooLarge        = errors.New("too_large")        // message, batch or key over its limit
	ErrTooDeep         = errors.New("too_deep")         // JSON nested deeper than the limit
	ErrBadSnapshot     = errors.New("bad_snapshot")     // a damaged snapshot
	ErrSnapshotVersion = errors.New("snapshot_version") // a snapshot from another format version
	ErrBadState        = errors.New("bad_state")        // a call out of order (commit without start …)
	ErrBadOption       = errors.New("bad_option")       // an invalid option
	ErrConflict        = errors.New("conflict")         // a three-way merge found conflicts
)

// Error is the error type of the engine: a sentinel, which gives the stable Code, and a
// message that quotes the input that was wrong.
type Error struct {
	sentinel error
	msg      string
}

// Code returns the stable error code ("invalid_json", "clock_drift", …).
func (e *Error) Code() string { return e.sentinel.Error() }

// Error returns "code: message".
func (e *Error) Error() string { return e.sentinel.Error() + ": " + e.msg }

// Unwrap returns the sentinel.
func (e *Error) Unwrap() error { return e.sentinel }

// Code returns the stable code of err: the Code of an *Error in its chain, "internal" for any
// other non-nil error, "" for nil.
func Code(err error) string {
	if err == nil {
		return ""
	}
	if e := asError(err); e != nil {
		return e.Code()
	}
	return "internal"
}

// asError is errors.As(err, &e) for an e of type *Error, written out: errors.As takes the
// target as an any and so links internal/reflectlite's assignability checks into the wasm
// module. It walks the tree as errors.As does: err itself, its As method, then what Unwrap
// gives (one error, or many depth first).
func asError(err error) *Error {
	for err != nil {
		if e, ok := err.(*Error); ok {
			return e
		}
		if x, ok := err.(interface{ As(any) bool }); ok {
			var e *Error
			if x.As(&e) {
				return e
			}
		}
		switch x := err.(type) {
		case interface{ Unwrap() error }:
			err = x.Unwrap()
		case interface{ Unwrap() []error }:
			for _, err := range x.Unwrap() {
				if e := asError(err); e != nil {
					return e
				}
			}
			return nil
		default:
			return nil
		}
	}
	return nil
}

// newError is not inlined: its allocation and write barriers, copied into each of its ~115
// call sites, were ~11 KB of the gzipped wasm module; a call makes an error, not a hot path.
//
//go:noinline
func newError(sentinel error, msg string) *Error { return &Error{sentinel: sentinel, msg: msg} }

// quote returns s quoted, cut to a readable length.
func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strconv.Quote(s)
}

// hlcError turns an hlc error into the engine's error type.
func hlcError(err error) error {
	if errors.Is(err, hlc.ErrClockDrift) {
		return newError(ErrClockDrift, err.Error())
	}
	return newError(ErrBadHLC, err.Error())
}
