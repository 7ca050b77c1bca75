#!/usr/bin/env bash
# Usage: scripts/cluster.sh [etcd|consul|zk]   (default etcd)
#
# Builds stringsvc and runs a local cluster on 127.0.0.1: a registry (etcd
# with its data in a temporary directory, a Consul agent in -dev mode, or a
# standalone ZooKeeper with its data in a temporary directory), three
# backends registered in it, and a proxy following them. Shows the
# registrations, sends traffic, stops one backend and shows the traffic
# move; stops everything it started, by PID, on exit.
# Needs: etcd and etcdctl (apt-get install -y etcd-server etcd-client);
# consul on PATH or built by scripts/build-consul.sh (run here if needed:
# minutes, once); ZooKeeper (apt-get install -y zookeeper) and java.
set -euo pipefail
cd "$(dirname "$0")/.."

kind=${1:-etcd}
case $kind in
etcd | consul | zk) ;;
*)
	echo "usage: $0 [etcd|consul|zk]" >&2
	exit 2
	;;
esac
etcd_port=${ETCD_PORT:-23790}
etcd_peer_port=${ETCD_PEER_PORT:-23800}
consul_port=${CONSUL_PORT:-18500} # HTTP; serf and server RPC on the next three ports
zk_port=${ZK_PORT:-21810}
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
	for _ in $(seq 300); do
		curl -fsS "$1" 2>/dev/null | grep -qF -- "${2:-}" && return 0
		sleep 0.1
	done
	echo "no answer${2:+ with $2} from $1" >&2
	return 1
}

zk4() { # four-letter word: its answer
	exec 3<>"/dev/tcp/127.0.0.1/$zk_port"
	printf %s "$1" >&3
	cat <&3
	exec 3<&-
}

case $kind in
etcd)
	registry=etcd://127.0.0.1:$etcd_port
	backend_flags=(-registry.ttl 5s)
	etcd --name cluster --data-dir "$tmp/etcd" \
		--listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
		--listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
		--initial-cluster "cluster=http://127.0.0.1:$etcd_peer_port" --logger zap --log-level warn 2>"$tmp/etcd.log" &
	pids+=($!)
	wait_for "http://127.0.0.1:$etcd_port/health"
	registrations() { etcdctl --endpoints "127.0.0.1:$etcd_port" get --prefix /services/stringsvc/; }
	;;
consul)
	registry=consul://127.0.0.1:$consul_port
	backend_flags=(-registry.check-interval 1s)
	consul=$(command -v consul || scripts/build-consul.sh)
	"$consul" agent -dev -bind 127.0.0.1 -client 127.0.0.1 -node cluster -log-level warn \
		-http-port "$consul_port" -https-port -1 -dns-port -1 -grpc-port -1 -grpc-tls-port -1 \
		-serf-lan-port $((consul_port + 1)) -serf-wan-port $((consul_port + 2)) \
		-server-port $((consul_port + 3)) >"$tmp/consul.log" 2>&1 &
	pids+=($!)
	wait_for "http://127.0.0.1:$consul_port/v1/status/leader" '"127.0.0.1:'
	registrations() { # each instance's check: service ID and status
		curl -fsS "http://127.0.0.1:$consul_port/v1/health/checks/stringsvc" |
			grep -oE '"(ServiceID|Status)": *"[^"]*"' | paste -d' ' - -
	}
	;;
zk)
	registry=zk://127.0.0.1:$zk_port
	backend_flags=()
	printf '%s\n' tickTime=200 "dataDir=$tmp/zk" clientPortAddress=127.0.0.1 "clientPort=$zk_port" \
		admin.enableServer=false '4lw.commands.whitelist=ruok,dump' >"$tmp/zoo.cfg"
	java -Xmx256m -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
		-cp /usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar \
		org.apache.zookeeper.server.ZooKeeperServerMain "$tmp/zoo.cfg" >"$tmp/zk.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 300); do
		[[ $(zk4 ruok 2>/dev/null) == imok ]] && break
		sleep 0.1
	done
	[[ $(zk4 ruok) == imok ]]
	registrations() { zk4 dump | sed -n '/^Connections dump/q;/^Sessions with Ephemerals/,$p'; } # each session's nodes
	;;
esac

declare -A backend
for port in 8081 8082 8083; do
	"$bin" -listen "127.0.0.1:$port" -registry "$registry" "${backend_flags[@]}" -log.requests=false \
		2>"$tmp/backend-$port.log" &
	backend[$port]=$!
	pids+=($!)
done
"$bin" -listen 127.0.0.1:8080 -proxy "$registry" -log.requests=false 2>"$tmp/proxy.log" &
pids+=($!)
for port in 8081 8082 8083; do
	wait_for "http://127.0.0.1:$port/metrics" "stringsvc_registered 1"
done
wait_for http://127.0.0.1:8080/metrics "stringsvc_discovery_instances{source=\"$kind\"} 3"

traffic() { # requests
	for _ in $(seq "$1"); do
		curl -fsS -XPOST http://127.0.0.1:8080/uppercase -d '{"s":"hello"}' >/dev/null
	done
	curl -sS http://127.0.0.1:8080/metrics |
		grep -E '^stringsvc_(upstream_requests_total\{.*outcome="success"|discovery_instances)'
}

show() { echo "+ $*"; "$@"; }
show registrations
show traffic 300
show kill -TERM "${backend[8082]}"
wait "${backend[8082]}" || true
show registrations
show traffic 300
echo "--- proxy log"
cat "$tmp/proxy.log"
echo "--- log of the stopped backend"
cat "$tmp/backend-8082.log"
