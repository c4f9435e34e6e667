# cdpvault build, run and test entry points. Every target installs what it needs.
GO ?= go
SHELL := /bin/bash
TEST_LOG ?= $(or $(TMPDIR),/tmp)/cdpvault-test.log
BIN := bin/cdpvault
CHROMIUM ?= /usr/bin/chromium
export CDPVAULT_CHROMIUM := $(CHROMIUM)

.PHONY: build run test bench check deps chromium npm-deps tools fuzz-smoke clean

build:
	$(GO) build -o $(BIN) .

# Chromium from Debian's packages; never a browser download.
chromium:
	@if [ ! -x $(CHROMIUM) ]; then \
		echo "installing chromium"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

# npm clients used by the end-to-end tests (no browser download).
NPM_DIRS := e2e examples
npm-deps:
	@for d in $(NPM_DIRS); do \
		if [ ! -f $$d/node_modules/.package-lock.json ] || [ $$d/package-lock.json -nt $$d/node_modules/.package-lock.json ]; then \
			echo "npm ci in $$d"; \
			(cd $$d && PUPPETEER_SKIP_DOWNLOAD=1 PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error) || exit 1; \
		fi; \
	done

# systemd-analyze (unit verification) and promtool (alert rule tests).
tools:
	@if ! command -v systemd-analyze >/dev/null || ! command -v promtool >/dev/null; then \
		echo "installing systemd and prometheus tools"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd prometheus >/dev/null; \
	fi

deps: chromium npm-deps tools
	$(GO) mod download

# asyncpreemptoff: see configs/cdpvault.service (no message bytes left on signal stacks).
run: chromium build
	GODEBUG=asyncpreemptoff=1 ./$(BIN) serve

# Fuzz smoke first, then the whole suite; its verbose log goes to $(TEST_LOG)
# and the closing line counts top-level tests.
test: deps
	$(GO) vet ./...
	$(MAKE) fuzz-smoke
	@status=0; $(GO) test -count=1 -timeout 20m -v ./... > $(TEST_LOG) 2>&1 || status=$$?; \
	grep -E '^(ok|FAIL|panic:)' $(TEST_LOG) || true; \
	if [ $$status -ne 0 ]; then echo "--- failures (full log: $(TEST_LOG))"; grep -E -A40 '^\s*--- FAIL|^panic:' $(TEST_LOG) | head -400; fi; \
	echo "tests: $$(grep -c '^--- PASS' $(TEST_LOG)) passed, $$(grep -c '^--- FAIL' $(TEST_LOG)) failed"; \
	exit $$status

fuzz-smoke:
	$(GO) test -run '^$$' -fuzz '^FuzzScrub$$' -fuzztime 10s ./redact/
	$(GO) test -run '^$$' -fuzz '^FuzzEvent$$' -fuzztime 10s ./scrub/
	$(GO) test -run '^$$' -fuzz '^FuzzContains$$' -fuzztime 10s ./inject/

bench: deps
	$(GO) test -run '^$$' -bench . -benchmem -count 1 -timeout 30m ./...

check:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt: $$out"; exit 1; fi

clean:
	rm -rf bin
