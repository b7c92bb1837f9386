# Every target installs what it needs by itself, so each works from a fresh clone.
NODE_MODULES := node_modules/.package-lock.json
BUILD := dist/cli/main.js

.PHONY: all install build test serve bench bench-quick typecheck clean

all: build

$(NODE_MODULES): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

install: $(NODE_MODULES)

$(BUILD): $(NODE_MODULES) tsconfig.json $(shell find src -name '*.ts')
	npx tsc -p tsconfig.json
	@touch $@

build: $(BUILD)

typecheck: $(NODE_MODULES)
	npx tsc -p tsconfig.json --noEmit

## test: every test (unit, CLI, real servers) with vitest; its global setup type-checks and builds dist/ once
test: $(NODE_MODULES)
	npx vitest run

## serve: start verdict on the shipped policies with the decision log in ./data
serve: build
	node bin/verdict.js serve --policies policies --db data/decisions.db

## bench: the engine benchmark, the server benchmark (h2load; installs nghttp2-client if missing), verdict beside its peers,
## then check latency while a 10,000-rule set is reloaded, under sustained load (full collections) and while one client floods CheckBatch, and what each check leaves to the garbage collector
bench: build
	node bench/engine.mjs
	node bench/hostile.mjs
	node bench/server.mjs
	node bench/compare.mjs
	node bench/reload.mjs
	node bench/full-gc.mjs
	node bench/batch-flood.mjs
	node bench/gc.mjs

# The short run: compare.mjs covers every server row of server.mjs, so it is left out here.
bench-quick: build
	node bench/engine.mjs --quick
	node bench/compare.mjs --quick

## bench-peers: verdict beside Cerbos (audit on/off), the bare grpc-js ceiling, cedar-wasm and casbin
## in one run, one table (installs the peers into bench/.peers/ on first use); ARGS=--quick for the short run
.PHONY: bench-peers
bench-peers: build
	node bench/compare.mjs $(ARGS)

## bench-gc: bytes each check leaves to the garbage collector (allocated, promoted) and the young-generation pauses, at 2,000/s
.PHONY: bench-gc
bench-gc: build
	node bench/gc.mjs $(ARGS)

## bench-reload: the worst check latency (an h2load prober; installs nghttp2-client if missing) at rest and while one file, then every file, of a 10,000-rule set is reloaded
.PHONY: bench-reload
bench-reload: build
	node bench/reload.mjs $(ARGS)

## bench-flood: another caller's check latency while one client keeps 100 CheckBatch calls in flight (ARGS=--baseline DIR for before/after; ARGS=--large-checks floods 1 MB Checks instead, ARGS=--null-lists Checks the request limits refuse)
.PHONY: bench-flood
bench-flood: build
	node bench/batch-flood.mjs $(ARGS)

## bench-audit: verify speed on a 1,000,000-row log, and server throughput with the hash chain and signing on vs off
.PHONY: bench-audit
bench-audit: build
	node bench/audit.mjs

## bench-replay: rows per second of verdict replay over a 1,000,000-row log (ARGS=--quick for 200,000)
.PHONY: bench-replay
bench-replay: build
	node bench/replay.mjs $(ARGS)

clean:
	rm -rf dist
