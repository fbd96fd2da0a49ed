package crdt

import (
	"strings"
	"testing"
)

func TestAppendKeyJSONIsJoinPathAsJSON(t *testing.T) {
	for _, path := range [][]string{
		{"properties", "name"}, {"a.b", "c"}, {`back\slash`}, {"q\"uote", "ctl\x01"},
		{"*?|#@!"}, {"été", "名前"}, {"x"},
	} {
		got := string(appendKeyJSON(nil, path))
		want := string(appendString(nil, JoinPath(path...)))
		if got != want {
			t.Errorf("appendKeyJSON(%q) = %s, want %s", path, got, want)
		}
	}
}

// TestHasPrefix: by value, whether the parts share their bytes (interned), are copies, or
// the paths are slices of one array.
func TestHasPrefix(t *testing.T) {
	copyOf := func(p []string) []string {
		c := make([]string, len(p))
		for i, s := range p {
			c[i] = strings.Clone(s)
		}
		return c
	}
	a := []string{"properties", "name", "x"}
	for _, tc := range []struct {
		path, prefix []string
		want         bool
	}{
		{a, a, true},
		{a, a[:2], true},
		{a[:2], a, false},
		{a, nil, true},
		{nil, nil, true},
		{a, copyOf(a[:2]), true},
		{copyOf(a), a, true},
		{a, []string{"properties", "nom"}, false},
		{a, []string{"properties", "names"}, false},
		{a, []string{"propertie", "name"}, false},
		{a, []string{"properties", "name", "x", "y"}, false},
		{a[1:], a[:1], false},
		{[]string{""}, []string{""}, true},
		{[]string{"a", ""}, []string{"a", "b"}, false},
	} {
		if got := hasPrefix(tc.path, tc.prefix); got != tc.want {
			t.Errorf("hasPrefix(%q, %q) = %v, want %v", tc.path, tc.prefix, got, tc.want)
		}
		if got, want := equalPath(tc.path, tc.prefix), tc.want && len(tc.path) == len(tc.prefix); got != want {
			t.Errorf("equalPath(%q, %q) = %v, want %v", tc.path, tc.prefix, got, want)
		}
	}
}
