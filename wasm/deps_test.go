//go:build !(js && wasm)

package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The module stays under its size limit (make size) by what it does not link: each package
// below costs from 20 KB to 400 KB gzip (README, "Guarantees and limits"). go list -deps of
// the wasm build must name none of them. (go test puts its own go first on PATH.)
func TestModuleLinksNoHeavyPackage(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", ".")
	cmd.Env = append(cmd.Environ(), "GOOS=js", "GOARCH=wasm")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps (GOOS=js GOARCH=wasm): %v\n%s", err, out)
	}
	heavy := map[string]bool{
		"fmt": true, "os": true, "encoding/json": true, "runtime/debug": true,
		"time": true, "internal/godebug": true, "syscall": true,
	}
	for _, dep := range strings.Fields(string(out)) {
		if heavy[dep] || strings.HasPrefix(dep, "github.com/tidwall/") || strings.HasPrefix(dep, "github.com/google/uuid") {
			t.Errorf("the wasm build links %s", dep)
		}
	}
}
