package crdt

import (
	"errors"
	"testing"
)

// asFunc is an error with an As method, as errors.As honours.
type asFunc struct{ e *Error }

func (a asFunc) Error() string { return "as" }
func (a asFunc) As(target any) bool {
	if p, ok := target.(**Error); ok && a.e != nil {
		*p = a.e
		return true
	}
	return false
}

// wrapped is an error with an Unwrap method, as fmt.Errorf's %w makes.
type wrapped struct{ err error }

func (w wrapped) Error() string { return "wrapped: " + w.err.Error() }
func (w wrapped) Unwrap() error { return w.err }

// Code finds the *Error of a chain as errors.As does (it walks it itself, so the module
// links no reflectlite): every shape of chain gives errors.As's answer.
func TestCodeFindsWhatErrorsAsFinds(t *testing.T) {
	bad := newError(ErrInvalidJSON, "x")
	drift := newError(ErrClockDrift, "y")
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"plain", errors.New("boom"), "internal"},
		{"*Error", bad, "invalid_json"},
		{"sentinel alone", ErrInvalidJSON, "internal"},
		{"wrapped", wrapped{bad}, "invalid_json"},
		{"wrapped twice", wrapped{wrapped{drift}}, "clock_drift"},
		{"wrapped plain", wrapped{errors.New("boom")}, "internal"},
		{"wrapped nil", wrapped{nil}, "internal"},
		{"joined", errors.Join(errors.New("a"), wrapped{drift}, bad), "clock_drift"},
		{"joined, none", errors.Join(errors.New("a"), errors.New("b")), "internal"},
		{"joined inside wrapped", wrapped{errors.Join(errors.New("a"), bad)}, "invalid_json"},
		{"As method", asFunc{drift}, "clock_drift"},
		{"As method saying no", wrapped{asFunc{}}, "internal"},
	}
	for _, c := range cases {
		var e *Error
		want := "internal"
		if c.err == nil {
			want = ""
		} else if errors.As(c.err, &e) {
			want = e.Code()
		}
		if want != c.want {
			t.Fatalf("%s: errors.As gives %q, the table says %q", c.name, want, c.want)
		}
		if got := Code(c.err); got != c.want {
			t.Errorf("%s: Code = %q, want %q", c.name, got, c.want)
		}
	}
}
