package main

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestREADMENamesTheFlags: README "The demo relay on a network" names every flag main
// defines, with its default where it has one ("`-addr` (default `127.0.0.1:8080`)",
// "`-max-conns` (1000)"), and names no flag main does not define. A flag added, renamed
// or given another default in main.go and not in the README fails here.
func TestREADMENamesTheFlags(t *testing.T) {
	read := func(path string) string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	src, readme := read("main.go"), read("../README.md")
	start := strings.Index(readme, "## The demo relay on a network")
	if start < 0 {
		t.Fatal(`README.md has no section "The demo relay on a network"`)
	}
	section := readme[start:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}

	flags := map[string]bool{"h": true}
	defs := regexp.MustCompile(`flag\.(?:String|Int)Var\(&cfg\.\w+, "([a-z-]+)", ("[^"]*"|-?\d+),`).FindAllStringSubmatch(src, -1)
	if len(defs) < 8 {
		t.Fatalf("found %d flags in main.go", len(defs))
	}
	for _, d := range defs {
		name, def := d[1], d[2]
		flags[name] = true
		if s, err := strconv.Unquote(def); err == nil {
			def = s
		}
		if !strings.Contains(section, "`-"+name+"`") {
			t.Errorf("README.md does not name the flag `-%s`", name)
			continue
		}
		if def == "" {
			continue
		}
		want := regexp.MustCompile("`-" + regexp.QuoteMeta(name) + "` \\((default )?`?" + regexp.QuoteMeta(def) + "`?\\)")
		if !want.MatchString(section) {
			t.Errorf("README.md does not give -%s's default as main.go does: %q", name, def)
		}
	}
	for _, m := range regexp.MustCompile("`-([a-z][a-z-]*)[` ]").FindAllStringSubmatch(section, -1) {
		if !flags[m[1]] {
			t.Errorf("README.md names a flag -%s, which main.go does not define", m[1])
		}
	}
}
