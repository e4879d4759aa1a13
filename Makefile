# Snowflake: build, test, demo and benchmark entry points.
#
# `make demo` and `make test` are all a fresh machine needs: they install what
# is missing (Debian packages, npm test servers) and then run.

GO       ?= go
BIN      ?= bin
# Every test, including the slow end-to-end ones, runs in `make test`.
# SNOWFLAKE_REQUIRE_TOOLS turns "tool not installed" skips into failures, so a
# missing install step cannot hide behind a green run.
TESTFLAGS ?= -race -timeout 25m
export SNOWFLAKE_REQUIRE_TOOLS = 1

# binary name => main package
MAINS := snowflake-server:./server snowflake-broker:./broker snowflake-proxy:./proxy \
         snowflake-client:./client probetest:./probetest fingerprint:./cmd/fingerprint

.PHONY: all build test test-deps npm-deps vet demo bench lint fuzz clean

all: build

build:
	@mkdir -p $(BIN)
	@for m in $(MAINS); do \
		name=$${m%%:*}; pkg=$${m#*:}; \
		if [ -f "$$pkg/main.go" ]; then \
			$(GO) build -trimpath -o $(BIN)/$$name $$pkg || exit 1; \
		fi; \
	done

test-deps:
	@./scripts/install-test-deps.sh

npm-deps:
	@./scripts/install-npm-deps.sh

vet:
	$(GO) vet ./...

test: test-deps npm-deps vet
	$(GO) test $(TESTFLAGS) ./...

demo: build
	@BIN=$(BIN) GO=$(GO) ./scripts/demo.sh

# The harness is built, not run with `go run`, which does not pass SIGTERM
# on: a harness left running keeps its whole chain up.
bench: build test-deps
	$(GO) test -run '^$$' -bench . -benchmem ./common/...
	$(GO) test -run '^$$' -bench BenchmarkServer -benchtime 3x ./server/
	$(GO) run ./bench/switchcost
	$(GO) build -o $(BIN)/bench ./bench
	$(BIN)/bench -bin $(BIN)

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi

# Short fuzzing pass over every fuzz target (FUZZTIME each).
FUZZTIME ?= 20s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

clean:
	rm -rf $(BIN)

# The browser proxy (proxy-wasm): WebAssembly binary, web page and MV3
# extension, in out/proxy-wasm/{page,extension}.
.PHONY: wasm
wasm:
	@./proxy-wasm/build.sh out/proxy-wasm
