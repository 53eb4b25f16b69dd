# canaryctl — run `make help` for the targets.
SHELL := /bin/bash
GO ?= go
PKG := github.com/canaryctl/canaryctl
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -s -w -X $(PKG)/cmd.version=$(VERSION) -X $(PKG)/cmd.commit=$(COMMIT) -X $(PKG)/cmd.buildDate=$(DATE)
FUZZTIME ?= 20s
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/canaryctl (static, -trimpath, version stamped)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/canaryctl ./cmd/canaryctl

IMAGE ?= canaryctl:$(VERSION)
image: ## container image (IMAGE=canaryctl:VERSION): static binary, non-root, distroless (needs docker)
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) --build-arg DATE=$(DATE) -t $(IMAGE) .

SCENARIO ?= good
demo: build ## the main job: a demo rollout on embedded defaults (SCENARIO=good|slow|errors; the built binary keeps the exit code)
	bin/canaryctl demo --scenario $(SCENARIO)

test: ## unit and integration tests (the slow end-to-end rollouts: make e2e)
	$(GO) test ./...

race: ## tests under the race detector
	$(GO) test -race ./...

e2e: ## the slow end-to-end rollouts: the built binary runs demos, kill -9 and resume, abort, pause, Kong, etcd takeover (about 4 min)
	$(GO) test -tags e2e -count=1 -timeout 15m ./e2e/
	$(GO) test -race -tags e2e -count=1 -timeout 10m -run '^TestEtcdTakeover$$' ./cmd/

vet: ## go vet
	$(GO) vet ./...

lint: vet ## go vet and staticcheck
	$(GO) run $(STATICCHECK) ./...

fmt-check: ## fail if gofmt would change a file
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

tidy-check: ## fail if go.mod/go.sum are not tidy (does not rewrite them)
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }

bench: ## benchmarks (statistics, proxy hot path)
	$(GO) test -run '^$$' -bench . -benchmem ./...

bench-kong-log: ## kong-log receiver: entries/s per core, allocations, peak heap/RSS (Kong 3.x batches of 100 over loopback)
	$(GO) test -run '^$$' -bench 'BenchmarkLog(ReceiverHTTP|Decode)' -benchtime 20000x -benchmem ./providers/kong/

fuzz: ## run every fuzz target for FUZZTIME each
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

SIM_ROLLOUTS ?= 1000
SIM_SEED ?= 1
SIM_RESULTS ?= rollout/sim/results.json
sim: build ## run the scenario library (testdata/scenarios) on the real engine, SIM_ROLLOUTS rollouts each: writes SIM_RESULTS and README's decision table
	bin/canaryctl simulate --scenario testdata/scenarios --rollouts $(SIM_ROLLOUTS) --seed $(SIM_SEED) --results $(SIM_RESULTS) --readme README.md

readme-table: ## rewrite README's decision table from SIM_RESULTS without simulating (TestReadmeTable checks they match)
	$(GO) run ./cmd/canaryctl simulate --from $(SIM_RESULTS) --readme README.md >/dev/null

vectors: ## replay Kayenta's own test vectors (testdata/kayenta) and print the count line README.md quotes
	@set -o pipefail; $(GO) test -count=1 -json -run '^TestKayentaVectors$$' ./analysis/ ./judge/ | $(GO) run ./internal/vectorcount testdata/kayenta/upstream

conformance: ## the proxy side by side with nginx on the raw-request corpus (also part of race)
	@set -o pipefail; $(GO) test -count=1 -run '^TestConformance$$' -v ./providers/proxy/conformance/ | grep -E '^(ok|FAIL|---)|conformance:|want|received|relayed|recorded' | grep -v -- '--- PASS'

ci: fmt-check vet vectors race ## the checks to run before a commit: format, vet, Kayenta vectors, race-enabled tests (bash .ci/run adds make e2e)
	@echo "ci: all checks passed"

.PHONY: help build image demo test race e2e vet lint fmt-check tidy-check bench bench-kong-log fuzz vectors conformance sim readme-table ci
