//go:build !(js && wasm)

package main

import "os"

// main of the host build: the module only makes sense as WebAssembly. This twin lets
// go vet ./... and go test ./... build the package natively (dispatch.go is tested here).
func main() {
	os.Stderr.WriteString("mapcrdt/wasm: build it with GOOS=js GOARCH=wasm (make build); see jsglue/\n")
	os.Exit(2)
}
