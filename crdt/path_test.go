package crdt

import "testing"

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
