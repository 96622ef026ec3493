#!/usr/bin/env bash
# Makes sure a Docker engine answers: installs Debian's docker.io when dockerd is
# missing and starts dockerd in the background when none runs (its log goes to
# .run/dockerd.log). Needs root. Nothing is pulled from any registry.
set -euo pipefail

if ! command -v dockerd >/dev/null 2>&1; then
	echo "docker-engine: installing Debian's docker.io"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq docker.io >/dev/null
fi
if docker info >/dev/null 2>&1; then
	exit 0
fi
mkdir -p .run
echo "docker-engine: starting dockerd (log: .run/dockerd.log)"
nohup dockerd >.run/dockerd.log 2>&1 &
for _ in $(seq 1 60); do
	if docker info >/dev/null 2>&1; then
		exit 0
	fi
	sleep 1
done
echo "docker-engine: dockerd did not answer within 60s; see .run/dockerd.log" >&2
exit 1
