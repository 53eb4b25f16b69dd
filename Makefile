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
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/canaryctl (static, -trimpath, version stamped)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/canaryctl ./cmd/canaryctl

IMAGE ?= canaryctl:$(VERSION)
image: ## container image (IMAGE=canaryctl:VERSION): static binary, non-root, distroless (needs docker)
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) --build-arg DATE=$(DATE) -t $(IMAGE) .

demo: ## run the main job: a demo rollout on embedded defaults
	$(GO) run ./cmd/canaryctl demo

test: ## unit and integration tests
	$(GO) test ./...

race: ## tests under the race detector
	$(GO) test -race ./...

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

fuzz: ## run every fuzz target for FUZZTIME each
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

SIM_ROLLOUTS ?= 1000
SIM_SEED ?= 1
sim: ## run the scenario library (testdata/scenarios) on the real engine, SIM_ROLLOUTS rollouts each, and regenerate README's decision table
	GOGC=1000 $(GO) run ./cmd/canaryctl simulate --scenario testdata/scenarios --rollouts $(SIM_ROLLOUTS) --seed $(SIM_SEED) --readme README.md

vectors: ## replay Kayenta's own test vectors (testdata/kayenta) and print how many cases ran
	@set -o pipefail; $(GO) test -count=1 -run '^TestKayentaVectors$$' -v ./analysis/ ./judge/ | grep -E '^(ok|FAIL|--- FAIL)|kayenta vectors: ran'

ci: fmt-check vet vectors race ## what CI runs: format check, vet, Kayenta vectors, race-enabled tests
	@echo "ci: all checks passed"

.PHONY: help build image demo test race vet lint fmt-check tidy-check bench fuzz vectors sim ci
