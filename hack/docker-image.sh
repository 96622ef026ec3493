#!/usr/bin/env bash
# Builds the peer image without any registry: a static controlplane binary (no
# cgo) in an otherwise empty root file system, imported with `docker import`.
# Usage: hack/docker-image.sh IMAGE
set -euo pipefail

image=${1:?usage: hack/docker-image.sh IMAGE}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
CGO_ENABLED=0 go build -trimpath -o "$root/controlplane" ./cmd/controlplane
mkdir -p "$root/data" "$root/tmp"
chmod 1777 "$root/tmp"
tar -C "$root" --owner=0 --group=0 -c . |
	docker import --change 'ENTRYPOINT ["/controlplane"]' --change 'VOLUME /data' \
		--message "rafter controlplane $(git describe --always --dirty 2>/dev/null || echo dev)" - "$image" >/dev/null
echo "docker-image: built $image"
