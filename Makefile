# mapcrdt — build and test entry points.
#
#   make test    every test the project has (what CI runs, through .ci/run)
#   make build   jsglue/mapcrdt.wasm + jsglue/wasm_exec.js
#   make size    raw / gzip -9 / brotli -q 11 size of the .wasm
#   make demo    the demo page and relay on http://$(ADDR)
#   make bench   Go benchmarks, then jsglue/bench/bench.js, gcpause.js and restore.js
#   make bench-browser  bench.js's workloads in headless chromium (jsglue/bench/browser.js)
#   make icount  BENCH=BenchmarkX: instructions per iteration (valgrind)
#   make fuzz    every Go fuzz target for $(FUZZTIME) each
#
# Each step is guarded, so the Makefile works while parts of the tree are
# not written yet: a step whose inputs do not exist says so and is skipped.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

GO ?= go
GOROOT := $(shell $(GO) env GOROOT)
NODE ?= node
GOTESTFLAGS ?=
# go test's own limit per package binary (10 min by default) is a hang guard: the GOOS=js
# crdt tests took 464 s of it on a loaded 2-core machine.
TESTTIMEOUT ?= -timeout 30m
FUZZTIME ?= 10s
ADDR ?= 127.0.0.1:8080

WASM_OUT := jsglue/mapcrdt.wasm
WASM_EXEC := jsglue/wasm_exec.js
# Computed once at parse time; nothing below creates these files.
WASM_GO := $(wildcard wasm/*.go)
DEMO_GO := $(wildcard demo/*.go)
JS_TESTS := $(wildcard jsglue/test/*.test.js)
E2E_TESTS := $(wildcard demo/e2e/*.test.js)
NPM_STAMP := jsglue/node_modules/.package-lock.json

.PHONY: all build size vet test test-go test-wasm test-js typecheck test-e2e \
	fuzz bench bench-browser icount demo deps clean

all: build

# ---------------------------------------------------------------- install

# npm ci only when node_modules is missing or older than the lockfile.
deps:
	@if [ ! -f jsglue/package.json ]; then echo "deps: no jsglue/package.json, skipped"; \
	elif [ ! -f $(NPM_STAMP) ] || [ jsglue/package-lock.json -nt $(NPM_STAMP) ] \
	     || [ jsglue/package.json -nt $(NPM_STAMP) ]; then \
	  echo "== npm ci (jsglue)"; \
	  cd jsglue && npm ci --no-audit --no-fund && touch node_modules/.package-lock.json; \
	fi

# ---------------------------------------------------------------- build

build:
	cp -f "$(GOROOT)/lib/wasm/wasm_exec.js" $(WASM_EXEC)
ifneq ($(WASM_GO),)
	GOOS=js GOARCH=wasm $(GO) build -trimpath -ldflags='-s -w' -o $(WASM_OUT).tmp ./wasm
	@# Go's jumps made direct branches, its small loops run without the table (wasm/jumps).
	$(GO) run ./wasm/jumps $(WASM_OUT).tmp $(WASM_OUT)
	@rm -f $(WASM_OUT).tmp
	@echo "built $(WASM_OUT) ($$(wc -c < $(WASM_OUT)) bytes)"
else
	@echo "build: wasm/ has no Go files yet, $(WASM_OUT) not built"
endif

size: build
	@if [ ! -f $(WASM_OUT) ]; then echo "size: no $(WASM_OUT)"; exit 0; fi; \
	 printf '%-8s %10s bytes\n' raw "$$(wc -c < $(WASM_OUT))"; \
	 printf '%-8s %10s bytes\n' gzip-9 "$$(gzip -9 -c $(WASM_OUT) | wc -c)"; \
	 if command -v brotli >/dev/null 2>&1; then \
	   printf '%-8s %10s bytes\n' brotli-11 "$$(brotli -q 11 -c $(WASM_OUT) | wc -c)"; \
	 else \
	   echo "brotli   (not installed: apt-get install -y --no-install-recommends brotli)"; \
	 fi

# ---------------------------------------------------------------- checks

# gofmt over every Go file git knows (tracked, or untracked and not ignored).
vet:
	@echo "== gofmt -l"
	@files=$$(git ls-files -co --exclude-standard -- '*.go' 2>/dev/null \
	          || find . -name '*.go' -not -path '*/node_modules/*'); \
	 files=$$(for f in $$files; do if [ -f "$$f" ]; then echo "$$f"; fi; done); \
	 if [ -n "$$files" ]; then \
	   bad=$$(gofmt -l $$files); \
	   if [ -n "$$bad" ]; then echo "gofmt -l: these files need gofmt -w:"; echo "$$bad"; exit 1; fi; \
	 fi
	@echo "== go vet ./..."
	$(GO) vet ./...
ifneq ($(WASM_GO),)
	@echo "== go vet ./wasm/... (GOOS=js GOARCH=wasm)"
	GOOS=js GOARCH=wasm $(GO) vet ./wasm/...
endif

# ---------------------------------------------------------------- tests

# One command, every test, in order; stops at the first failing step.
test: deps
	@$(MAKE) --no-print-directory vet
	@$(MAKE) --no-print-directory test-go
	@$(MAKE) --no-print-directory test-wasm
	@$(MAKE) --no-print-directory build
	@$(MAKE) --no-print-directory test-js
	@$(MAKE) --no-print-directory typecheck
	@$(MAKE) --no-print-directory test-e2e

test-go:
	@echo "== go test ./..."
	$(GO) test $(TESTTIMEOUT) $(GOTESTFLAGS) ./...
	@echo "== go test -race ./demo (the relay: a goroutine per connection, rooms shared)"
	$(GO) test $(TESTTIMEOUT) $(GOTESTFLAGS) -race ./demo

# go_js_wasm_exec (in GOROOT/lib/wasm) runs the test binary in Node, after wasm/jumps
# rewrote it as make build rewrites the module (wasm/jumps/exec.sh): every test of crdt,
# hlc and wasm runs the code that ships.
test-wasm:
ifneq ($(WASM_GO),)
	@echo "== go test ./crdt ./hlc ./wasm/... (GOOS=js GOARCH=wasm, jumps rewritten, in Node)"
	@t=$$(mktemp -d); trap 'rm -rf $$t' EXIT; $(GO) build -o $$t/jumps ./wasm/jumps; \
	 set -x; JUMPS=$$t/jumps PATH="$(GOROOT)/lib/wasm:$$PATH" GOOS=js GOARCH=wasm \
	   $(GO) test $(TESTTIMEOUT) $(GOTESTFLAGS) -exec "$(CURDIR)/wasm/jumps/exec.sh" ./crdt ./hlc ./wasm/...
else
	@echo "== go test ./wasm/...: wasm/ has no Go files yet, skipped"
endif

test-js:
ifneq ($(JS_TESTS),)
	@echo "== node --test jsglue/test"
	$(NODE) --test $(JS_TESTS)
else
	@echo "== node --test jsglue/test: no jsglue/test/*.test.js yet, skipped"
endif

typecheck:
	@if [ ! -f jsglue/tsconfig.json ]; then echo "== tsc: no jsglue/tsconfig.json yet, skipped"; exit 0; fi; \
	 if [ ! -x jsglue/node_modules/.bin/tsc ]; then echo "tsc missing: run make deps"; exit 1; fi; \
	 echo "== tsc -p jsglue"; \
	 jsglue/node_modules/.bin/tsc -p jsglue

# Browser tests (Playwright + Debian's chromium; see demo/e2e/browser.js).
test-e2e:
ifneq ($(E2E_TESTS),)
	@echo "== node --test demo/e2e (headless chromium)"
	$(NODE) --test $(E2E_TESTS)
else
	@echo "== node --test demo/e2e: no demo/e2e/*.test.js yet, skipped"
endif

# Every FuzzXxx of every package, FUZZTIME each (go test -fuzz takes one target at a time).
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	   list=$$($(GO) test -list '^Fuzz' $$pkg); \
	   for f in $$(echo "$$list" | grep '^Fuzz' || true); do \
	     echo "== fuzz $$pkg $$f ($(FUZZTIME))"; \
	     $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$pkg; \
	   done; \
	 done

# make icount BENCH=BenchmarkReceive [ICOUNT_PKG=./crdt N1=20000 N2=40000]: the x86
# instructions one iteration of a benchmark costs, counted by valgrind's callgrind with the
# collector off: the difference of an N1- and an N2-iteration run, over N2-N1. Repeatable
# to ±0.5%, where times on a shared machine are not.
ICOUNT_PKG ?= ./crdt
N1 ?= 20000
N2 ?= 40000
icount:
	@command -v valgrind >/dev/null || { echo "icount: needs valgrind (apt-get install valgrind)"; exit 1; }
	@[ -n "$(BENCH)" ] || { echo "icount: say BENCH=BenchmarkName"; exit 1; }
	@t=$$(mktemp -d); trap 'rm -rf $$t' EXIT; $(GO) test -c -o $$t/b.test $(ICOUNT_PKG); \
	 ic() { GOGC=off GODEBUG=asyncpreemptoff=1 GOMAXPROCS=1 valgrind --tool=callgrind \
	   --callgrind-out-file=/dev/null $$t/b.test -test.run '^$$' -test.bench "^$(BENCH)$$" \
	   -test.benchtime $${1}x 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'; }; \
	 a=$$(ic $(N1)); b=$$(ic $(N2)); \
	 echo "$(BENCH): $$(( (b - a) / ($(N2) - $(N1)) )) instructions/op"

bench: deps build
	@echo "== go test -bench"
	$(GO) test -run '^$$' -bench . -benchmem ./...
	@echo "== node jsglue/bench/bench.js"
	$(NODE) jsglue/bench/bench.js
	@echo "== node jsglue/bench/gcpause.js"
	$(NODE) jsglue/bench/gcpause.js
	@echo "== node jsglue/bench/restore.js"
	$(NODE) jsglue/bench/restore.js

bench-browser: deps build
	$(NODE) jsglue/bench/browser.js

# ---------------------------------------------------------------- demo

demo: deps build
ifneq ($(DEMO_GO),)
	$(GO) run ./demo -addr $(ADDR)
else
	@echo "demo: demo/main.go not written yet"; exit 1
endif

clean:
	rm -f $(WASM_OUT) $(WASM_EXEC)
