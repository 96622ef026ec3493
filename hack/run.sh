#!/usr/bin/env bash
# Starts (or stops) a local 3-peer Rafter control plane on loopback for `make run`.
# State lives in .run/: data dirs, logs and pid files.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.run
peers=(1 2 3)
bootstrap=p1=127.0.0.1:7001,p2=127.0.0.1:7002,p3=127.0.0.1:7003

stop() {
	for i in "${peers[@]}"; do
		if [ -f "$dir/p$i.pid" ]; then
			kill "$(cat "$dir/p$i.pid")" 2>/dev/null || true
			rm -f "$dir/p$i.pid"
		fi
	done
}

start() {
	mkdir -p "$dir"
	stop
	for i in "${peers[@]}"; do
		nohup bin/controlplane --id="p$i" --data-dir="$dir/p$i" \
			--raft-addr="127.0.0.1:700$i" --grpc-addr="127.0.0.1:744$i" --http-addr="127.0.0.1:808$i" \
			--bootstrap="$bootstrap" >"$dir/p$i.log" 2>&1 &
		echo $! >"$dir/p$i.pid"
	done
	for _ in $(seq 1 100); do
		if curl -sf http://127.0.0.1:8081/api/v1/namespaces/default >/dev/null 2>&1; then
			cat <<MSG
Rafter control plane is up: 3 peers on loopback (logs and data in $dir/).
  REST: http://127.0.0.1:8081  http://127.0.0.1:8082  http://127.0.0.1:8083
  gRPC: 127.0.0.1:7441  127.0.0.1:7442  127.0.0.1:7443   (server reflection on)
Try:
  curl -s http://127.0.0.1:8081/cluster/v1/members
  curl -s -X POST http://127.0.0.1:8082/api/v1/namespaces/default/configmaps \\
       -d '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"data":{"k":"v"}}'
  curl -s http://127.0.0.1:8083/api/v1/namespaces/default/configmaps/a
  curl -sN 'http://127.0.0.1:8081/api/v1/namespaces/default/configmaps?watch=true'
  bin/ctl apply -R -f examples/ && bin/ctl get all && bin/ctl cluster members
Stop it with: make down
MSG
			return 0
		fi
		sleep 0.2
	done
	echo "cluster did not become ready; see $dir/p*.log" >&2
	tail -n 20 "$dir"/p*.log >&2
	stop
	return 1
}

case "${1:-start}" in
start) start ;;
stop) stop ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
