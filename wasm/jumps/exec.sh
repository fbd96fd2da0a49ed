#!/bin/sh
# go test -exec for GOOS=js GOARCH=wasm (make test-wasm): the test binary's jumps are made
# direct, as make build makes the module's, by the jumps command built at $JUMPS; then it
# runs under Node through Go's own go_js_wasm_exec (on PATH). The tests run the code that
# ships.
set -e
bin=$1
shift
"$JUMPS" "$bin" "$bin.jumps" >/dev/null
exec go_js_wasm_exec "$bin.jumps" "$@"
