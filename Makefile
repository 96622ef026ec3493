# Rafter's build. `make run` and `make test` install what they need themselves
# (buf and protoc plugins with `go install`); everything runs offline after that.

GO       ?= go
GOBIN    := $(or $(shell $(GO) env GOBIN),$(shell $(GO) env GOPATH)/bin)
export GOBIN
export PATH := $(GOBIN):$(PATH)
BIN      := bin
RUN_DIR  := .run

# Pinned code-generation tools (built from the Go module proxy).
BUF_VERSION        := v1.75.0
PROTOC_GEN_GO      := v1.36.12
PROTOC_GEN_GO_GRPC := v1.6.2
GRPC_GATEWAY       := v2.33.0

.PHONY: all build proto proto-check tools test test-unit test-e2e run down lint bench bench-store bench-sched bench-pods jepsen jepsen-docker docker-engine docker-image clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/controlplane ./cmd/ctl ./cmd/nodeagent

tools:
	@command -v buf >/dev/null && buf --version 2>/dev/null | grep -q $(BUF_VERSION:v%=%) || $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	@command -v protoc-gen-go >/dev/null || $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO)
	@command -v protoc-gen-go-grpc >/dev/null || $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC)
	@command -v protoc-gen-grpc-gateway >/dev/null || $(GO) install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@$(GRPC_GATEWAY)
	@command -v protoc-gen-openapiv2 >/dev/null || $(GO) install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@$(GRPC_GATEWAY)

# The CNI reference plugins internal/cni runs (bridge, host-local, portmap; the
# loopback plugin is built too, for other users of the directory), built from
# the Go module proxy into $(CNI_BIN). Their nftables
# backends run the nft binary (sigs.k8s.io/knftables), so Debian's nftables is
# installed when nft is missing. internal/cni/cnitest builds the same version
# for tests; keep CNI_PLUGINS_VERSION equal to cnitest.Version.
CNI_BIN             ?= $(BIN)/cni
CNI_PLUGINS_VERSION := v1.10.0
CNI_PLUGINS_MOD     := github.com/containernetworking/plugins/plugins

.PHONY: cni-plugins
cni-plugins:
	@command -v nft >/dev/null || { echo "cni-plugins: installing Debian's nftables (nft)"; DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables >/dev/null; }
	GOBIN=$(abspath $(CNI_BIN)) $(GO) install \
		$(CNI_PLUGINS_MOD)/main/bridge@$(CNI_PLUGINS_VERSION) \
		$(CNI_PLUGINS_MOD)/ipam/host-local@$(CNI_PLUGINS_VERSION) \
		$(CNI_PLUGINS_MOD)/main/loopback@$(CNI_PLUGINS_VERSION) \
		$(CNI_PLUGINS_MOD)/meta/portmap@$(CNI_PLUGINS_VERSION)

# Regenerate the schema (tools/k8sproto) and all generated code under gen/.
proto: tools
	bash tools/k8sproto/gen.sh

# Fail when the committed generated code is stale.
proto-check: tools
	bash tools/k8sproto/check.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# The full suite: lint, generated-code freshness, unit tests (race detector on),
# the multi-process tests and the short Jepsen run. Packages run one at a time: the
# Jepsen run saturates this 2-core machine and would starve the timing of the others.
test: lint proto-check
	$(GO) test -race -count=1 -p 1 -timeout 30m ./...

test-unit:
	$(GO) test -race -count=1 -short ./...

# A local 3-peer cluster on loopback, in the background; `make down` stops it.
run: build
	@bash hack/run.sh start

down:
	@bash hack/run.sh stop

# The Jepsen-style suite (root): peers in network namespaces, faults, checkers.
# `make test` runs a short version (test/jepsen); this runs one long one.
DURATION ?= 10m
jepsen: build
	$(GO) run ./test/jepsen/cmd/jepsen --controlplane=$(BIN)/controlplane --duration=$(DURATION) $(JEPSEN_FLAGS)

# The same suite with the peers in Docker containers (root): installs Debian's
# docker.io and starts dockerd when needed, builds the image without a registry.
jepsen-docker: docker-image
	$(GO) run ./test/jepsen/cmd/jepsen --platform=docker --image=$(DOCKER_IMAGE) --prefix=rjd --duration=$(DURATION) $(JEPSEN_FLAGS)

DOCKER_IMAGE ?= rafter/controlplane:dev

docker-engine:
	@bash hack/docker-engine.sh

# The peer image (a static controlplane in an empty root), used by
# docker-compose.yml and make jepsen-docker.
docker-image: docker-engine
	@bash hack/docker-image.sh $(DOCKER_IMAGE)

bench: bench-store

-include test/bench/store/bench.mk

clean:
	rm -rf $(BIN) $(RUN_DIR)

# The scheduler and controllers at scale: 3 peers and hollow nodes (not in make test).
# make bench-sched BENCH_SCHED_FLAGS='--scenarios=1000x10000'
BENCH_SCHED_FLAGS ?=
bench-sched:
	$(GO) build -o $(BIN)/controlplane ./cmd/controlplane
	$(GO) run ./test/bench/sched --controlplane=$(BIN)/controlplane $(BENCH_SCHED_FLAGS)

# Pod startup latency on one real node (root): 100 pods, the image cached,
# creation until Running in a watch, beside `runc run -d` of the same rootfs.
# make bench-pods BENCH_PODS_FLAGS='--pods=50 --log-dir=/tmp/bench-pods-logs --perf=/tmp/burst.perf'
BENCH_PODS_FLAGS ?=
bench-pods:
	$(GO) build -o $(BIN)/ ./cmd/controlplane ./cmd/nodeagent
	$(GO) run ./test/bench/pods --controlplane=$(BIN)/controlplane --nodeagent=$(BIN)/nodeagent $(BENCH_PODS_FLAGS)
