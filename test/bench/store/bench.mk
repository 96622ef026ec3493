# bench-store: Rafter's replicated store against a three-member etcd cluster on this
# machine, side by side (test/bench/store/README.md). Not part of `make test`.
# Included from the top-level Makefile. Extra flags: make bench-store BENCH_STORE_FLAGS='--duration=30s'
#
# Debian's etcd-server package may start its own etcd on 2379/2380 where an init
# system exists; the benchmark never uses those ports (it asks the kernel for free
# ones), so such a service cannot interfere with the run.

GO ?= go
BENCH_STORE_FLAGS ?=

.PHONY: bench-store
bench-store:
	command -v etcd >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server)
	$(GO) build -o bin/controlplane ./cmd/controlplane
	$(GO) run ./test/bench/store --controlplane=bin/controlplane --etcd=$$(command -v etcd) $(BENCH_STORE_FLAGS)
