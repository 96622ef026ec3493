#!/usr/bin/env bash
# Regenerates Rafter's API code; `make proto` runs this.
#
#  1. tools/k8sproto writes proto/api/rafter/<group>/v1/{types,services}.proto,
#     rafter/meta/v1/requests.proto and gen/rafter/kinds/kinds.go from the Go
#     types of k8s.io/api (field numbers are kept from the existing protos).
#  2. buf generate (proto/buf.gen.yaml) writes Go, gRPC, grpc-gateway and
#     OpenAPI code for every proto under proto/api into gen/.
#
# Works offline: buf and the protoc plugins are local binaries in $(go env GOBIN), or $(go env GOPATH)/bin.
# Operates on the tree this script lives in, so check.sh can run it on a copy.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
gobin="$(go env GOBIN)"
export PATH="${gobin:-$(go env GOPATH)/bin}:$PATH"

cd "$root"
go run ./tools/k8sproto -proto proto/api -kinds gen/rafter/kinds/kinds.go
cd proto
buf generate
