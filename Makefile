# Build, test and release targets for linkwatch_exporter.
#
# Tools (promu, staticcheck) are pinned in the separate tools module
# (tools/go.mod) and run through `go tool`, so nothing has to be installed
# beyond Go itself: the first run downloads them through the module proxy.

GO          ?= go
GOFMT       ?= gofmt
TOOLS_MOD   := tools/go.mod
PROMU       := $(GO) tool -modfile=$(TOOLS_MOD) promu
STATICCHECK := $(GO) tool -modfile=$(TOOLS_MOD) staticcheck
PREFIX      ?= .
TARBALL_DIR ?= .tarballs

# promu fails in a git repository that has no commits yet ("unable to get
# the current branch"). In that case (or outside git) build the tree as
# non-git: promu then stamps Branch/Revision as "non-git", and go's own VCS
# stamping has to be switched off as it cannot read the hidden repository.
ifeq ($(shell git rev-parse --verify -q HEAD 2>/dev/null),)
PROMU_ENV := GIT_DIR=/nonexistent GOFLAGS="$(GOFLAGS) -buildvcs=false"
endif

.PHONY: all
all: lint build test

.PHONY: build
build:
	@echo ">> building binaries"
	$(PROMU_ENV) $(PROMU) build --prefix $(PREFIX)

.PHONY: test
test:
	@echo ">> vetting code"
	$(GO) vet ./...
	@echo ">> running tests (race detector)"
	$(GO) test -race -count=1 -timeout 15m ./...
	@echo ">> checking deploy files"
	./deploy/prometheus/check.sh
	./deploy/systemd/check.sh
	./deploy/kubernetes/check.sh
	@echo ">> fuzzing each target briefly"
	$(MAKE) --no-print-directory fuzz-short

# The long form of the reliability suite (RELIABILITY.md): the TestStress*
# integration tests with LWT_STRESS=long. `make test` runs their short form.
STRESS_TIMEOUT ?= 4h

.PHONY: stress
stress:
	@echo ">> running the reliability suite, long form (needs root)"
	LWT_STRESS=long $(GO) test -race -count=1 -timeout $(STRESS_TIMEOUT) -v -run '^TestStress' ./integration/

.PHONY: test-short
test-short:
	@echo ">> running short tests"
	$(GO) test -short ./...

# Native Go fuzzing; see RELIABILITY.md. go test fuzzes one target of one
# package at a time, so the targets run one after another. New interesting
# inputs are minimized for at most FUZZ_MINIMIZE: the default of 60s lets the
# minimizer stall a worker for a minute on inputs grown from the larger seeds.
FUZZ_TARGETS  := watcher:FuzzDecodeAndApply routes:FuzzParse routes:FuzzWebhook
FUZZ_SHORT    ?= 10s
FUZZ_LONG     ?= 10m
FUZZ_MINIMIZE ?= 5s
# Extra go test flags, e.g. FUZZ_FLAGS=-parallel=1 to fuzz with one worker
# on a shared machine (as the runs in RELIABILITY.md did).
FUZZ_FLAGS    ?=

define fuzz_run
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo ">> fuzzing $$name in ./$$pkg for $(1)"; \
		$(GO) test -run XXX -fuzz "^$$name\$$" -fuzztime $(1) -fuzzminimizetime $(FUZZ_MINIMIZE) $(FUZZ_FLAGS) ./$$pkg/; \
	done
endef

.PHONY: fuzz-short
fuzz-short:
	$(call fuzz_run,$(FUZZ_SHORT))

.PHONY: fuzz-long
fuzz-long:
	$(call fuzz_run,$(FUZZ_LONG))

.PHONY: bench
bench:
	@echo ">> side-by-side scrape benchmark against node_exporter (needs root; see BENCHMARKS.md)"
	./bench/scrape.sh $(BENCH_ARGS)

.PHONY: bench-smoke
bench-smoke:
	@echo ">> scrape benchmark smoke test (needs root)"
	./bench/scrape.sh --smoke $(BENCH_ARGS)

# Failover reaction time (BENCHMARKS.md, target 4): 100 trials of each
# trigger in the failover topology against an exporter built without the race
# detector. `make test` runs its short form (10 trials, race build).
FAILOVER_TRIALS ?= 100

.PHONY: bench-failover
bench-failover:
	@echo ">> failover reaction benchmark, $(FAILOVER_TRIALS) trials (needs root; see BENCHMARKS.md)"
	LWT_BENCH_FAILOVER=$(FAILOVER_TRIALS) $(GO) test -count=1 -timeout 30m -v -run '^TestFailoverReaction$$' ./integration/

.PHONY: bench-go
bench-go:
	@echo ">> Go benchmarks of the hot paths"
	$(GO) test -run '^$$' -bench . -benchmem -count $(or $(COUNT),1) ./watcher ./collector ./routes

.PHONY: lint
lint:
	@echo ">> vetting code"
	$(GO) vet ./...
	@echo ">> checking code style"
	@unformatted="$$($(GOFMT) -l .)" || exit 1; \
	if [ -n "$$unformatted" ]; then \
		echo "gofmt needed on:"; echo "$$unformatted"; \
		echo "run 'make fmt' to fix"; exit 1; \
	fi
	@echo ">> running staticcheck"
	$(STATICCHECK) ./...

.PHONY: fmt
fmt:
	@echo ">> formatting code"
	$(GOFMT) -w .

.PHONY: tarball
tarball: build
	@echo ">> building release tarball"
	$(PROMU_ENV) $(PROMU) tarball --prefix $(TARBALL_DIR) $(PREFIX)

.PHONY: clean
clean:
	@echo ">> cleaning"
	rm -rf ./linkwatch_exporter ./.build ./$(TARBALL_DIR)
