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

## test: type-check, build, then run every test (unit, CLI, server) with vitest
test: build
	npx vitest run

## serve: start verdict on the shipped policies with the decision log in ./data
serve: build
	node bin/verdict.js serve --policies policies --db data/decisions.db

bench: build
	node bench/engine.js

bench-quick: build
	node bench/engine.js --quick

clean:
	rm -rf dist
