#!/usr/bin/env bash
# Starts (or stops) a local 3-peer Rafter control plane on loopback for `make run`.
# State lives in .run/: data dirs, logs and pid files.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.run
peers=(1 2 3)
bootstrap=p1=127.0.0.1:7001,p2=127.0.0.1:7002,p3=127.0.0.1:7003

servers=127.0.0.1:7441,127.0.0.1:7442,127.0.0.1:7443
node=$(hostname -s | tr '[:upper:]' '[:lower:]')

stop() {
	if [ -f "$dir/node.pid" ]; then
		# Containers outlive their agent: delete the examples' workloads first
		# and let the agent stop their pods (each stays Terminating until its
		# containers are stopped and its network released).
		bin/ctl --server="$servers" delete -R -f examples/ --ignore-not-found >/dev/null 2>&1 || true
		for _ in $(seq 1 300); do
			if ! pgrep -f '^/app' >/dev/null 2>&1 &&
				[ -z "$(bin/ctl --server="$servers" get pods -A -o name 2>/dev/null)" ]; then break; fi
			sleep 0.2
		done
		kill "$(cat "$dir/node.pid")" 2>/dev/null || true
		rm -f "$dir/node.pid"
	fi
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
			if [ "$(id -u)" = 0 ]; then
				start_node || { stop; return 1; }
			else
				echo "Not root: no node agent started, so pods stay Pending (run make run as root for a node)."
			fi
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

# start_node runs a real node agent on this machine (root), loads the demo
# image onto it, applies examples/ and prints a pod IP to curl.
start_node() {
	make -s cni-plugins >/dev/null
	go run ./hack/demoimage -o "$dir/demo.tar" >/dev/null
	nohup bin/nodeagent --name="$node" --server="$servers" --data-dir="$PWD/$dir/node" \
		--cni-bin-dir="$PWD/bin/cni" --runtime-root=/run/rafter/make-run --node-ip=127.0.0.1 \
		>"$dir/node.log" 2>&1 &
	echo $! >"$dir/node.pid"
	for _ in $(seq 1 150); do
		if bin/ctl --server="$servers" get nodes "$node" 2>/dev/null | grep -qw Ready; then break; fi
		sleep 0.2
	done
	if ! bin/ctl --server="$servers" get nodes "$node" 2>/dev/null | grep -qw Ready; then
		echo "node $node did not become Ready; see $dir/node.log" >&2
		tail -n 20 "$dir/node.log" >&2
		return 1
	fi
	bin/ctl --server="$servers" image load "$dir/demo.tar"
	bin/ctl --server="$servers" apply -R -f examples/ >/dev/null
	local ip=""
	for _ in $(seq 1 300); do
		ip=$(bin/ctl --server="$servers" get pods -l app=guestbook,tier=web -o wide 2>/dev/null | awk '$3 == "Running" && $2 == "1/1" {print $6; exit}')
		if [ -n "$ip" ]; then break; fi
		sleep 0.2
	done
	if [ -z "$ip" ]; then
		echo "the demo pods did not start; see $dir/node.log and bin/ctl get pods" >&2
		return 1
	fi
	cat <<MSG
Node agent $node is up (log: $dir/node.log); the demo image is loaded and examples/ applied.
  curl http://$ip:8080/             # a guestbook web pod answers
  curl 'http://$ip:8080/env?name=DB_ADDRESS'
  bin/ctl get pods -o wide; bin/ctl logs <pod>; bin/ctl exec <pod> -- cat /etc/hostname
MSG
}

case "${1:-start}" in
start) start ;;
stop) stop ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
