package crdt

import (
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// TestErrorCodesAreDocumented: the codes callers can get — the sentinels of errors.go, the
// wasm bridge's own (wasm/dispatch.go) and the glue's (jsglue/*.js) — are exactly the
// ErrorCode union of jsglue/index.d.ts, every one is named in README.md, and every code
// DESIGN §9 lists is one of them. A code added, renamed or dropped in one place and not the
// others fails here.
func TestErrorCodesAreDocumented(t *testing.T) {
	read := func(path string) string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	set := func(text, pattern string) map[string]bool {
		out := map[string]bool{}
		for _, m := range regexp.MustCompile(pattern).FindAllStringSubmatch(text, -1) {
			out[m[1]] = true
		}
		return out
	}
	sorted := func(m map[string]bool) []string {
		s := make([]string, 0, len(m))
		for k := range m {
			s = append(s, k)
		}
		sort.Strings(s)
		return s
	}

	produced := set(read("errors.go"), `Err\w+\s*=\s*errors\.New\("([a-z_]+)"\)`)
	if len(produced) < 17 {
		t.Fatalf("found %d sentinels in errors.go: %v", len(produced), sorted(produced))
	}
	produced["internal"] = true // Code of an error that is no *Error; the bridge's recovered panics
	for _, src := range []struct{ path, pattern string }{
		{"../wasm/dispatch.go", `code: "([a-z_]+)"`},
		{"../jsglue/index.js", `fail\("([a-z_]+)"`},
		{"../jsglue/leaflet.js", `fail\("([a-z_]+)"`},
	} {
		for code := range set(read(src.path), src.pattern) {
			produced[code] = true
		}
	}

	dts := read("../jsglue/index.d.ts")
	union := regexp.MustCompile(`(?s)export type ErrorCode =(.*?);`).FindStringSubmatch(dts)
	if union == nil {
		t.Fatal("index.d.ts has no ErrorCode type")
	}
	typed := set(union[1], `\| "([a-z_]+)"`)
	if a, b := sorted(produced), sorted(typed); !slices.Equal(a, b) {
		t.Errorf("codes produced %v\nindex.d.ts ErrorCode %v", a, b)
	}

	readme := read("../README.md")
	for code := range produced {
		if !strings.Contains(readme, "`"+code+"`") {
			t.Errorf("README.md does not name the error code `%s`", code)
		}
	}
	// DESIGN §9's list.
	for _, code := range []string{"invalid_json", "unknown_verb", "unknown_subject", "bad_key", "bad_hlc", "clock_drift", "too_large", "too_deep"} {
		if !produced[code] {
			t.Errorf("DESIGN §9's code %q is not produced", code)
		}
	}
}
