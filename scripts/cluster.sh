#!/usr/bin/env bash
# Builds stringsvc and runs a local cluster on 127.0.0.1: an etcd with its
# data in a temporary directory, three backends registered in it, and a
# proxy following them. Shows the keys, sends traffic, stops one backend
# and shows the traffic move; stops everything it started on exit.
# Needs etcd and etcdctl (apt-get install -y etcd-server etcd-client).
set -euo pipefail
cd "$(dirname "$0")/.."

etcd_port=${ETCD_PORT:-23790}
peer_port=${ETCD_PEER_PORT:-23800}
registry=etcd://127.0.0.1:$etcd_port
tmp=$(mktemp -d)
bin=$tmp/stringsvc
go build -o "$bin" .

pids=()
cleanup() {
	if ((${#pids[@]})); then kill "${pids[@]}" 2>/dev/null || true; fi
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

wait_for() { # url [text the answer must contain]
	for _ in $(seq 100); do
		curl -fsS "$1" 2>/dev/null | grep -qF -- "${2:-}" && return 0
		sleep 0.1
	done
	echo "no answer${2:+ with $2} from $1" >&2
	return 1
}

etcd --name cluster --data-dir "$tmp/etcd" \
	--listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
	--listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
	--initial-cluster "cluster=http://127.0.0.1:$peer_port" --logger zap --log-level warn 2>"$tmp/etcd.log" &
pids+=($!)
wait_for "http://127.0.0.1:$etcd_port/health"

declare -A backend
for port in 8081 8082 8083; do
	"$bin" -listen "127.0.0.1:$port" -registry "$registry" -registry.ttl 5s -log.requests=false 2>"$tmp/backend-$port.log" &
	backend[$port]=$!
	pids+=($!)
done
"$bin" -listen 127.0.0.1:8080 -proxy "$registry" -log.requests=false 2>"$tmp/proxy.log" &
pids+=($!)
for port in 8081 8082 8083; do
	wait_for "http://127.0.0.1:$port/metrics" "stringsvc_registered 1"
done
wait_for http://127.0.0.1:8080/metrics 'stringsvc_discovery_instances{source="etcd"} 3'

traffic() { # requests
	for _ in $(seq "$1"); do
		curl -fsS -XPOST http://127.0.0.1:8080/uppercase -d '{"s":"hello"}' >/dev/null
	done
	curl -sS http://127.0.0.1:8080/metrics |
		grep -E '^stringsvc_(upstream_requests_total\{.*outcome="success"|discovery_instances)'
}

show() { echo "+ $*"; "$@"; }
show etcdctl --endpoints "127.0.0.1:$etcd_port" get --prefix /services/stringsvc/
show traffic 300
show kill -TERM "${backend[8082]}"
wait "${backend[8082]}" || true
show etcdctl --endpoints "127.0.0.1:$etcd_port" get --prefix /services/stringsvc/
show traffic 300
echo "--- proxy log"
cat "$tmp/proxy.log"
echo "--- log of the stopped backend"
cat "$tmp/backend-8082.log"
