#!/usr/bin/env bash
# Measures, in one run, good requests/s (200 without "err") with wrk:
#   direct        one backend
#   direct-nolog  one backend with -log.requests=false (the cost of logging)
#   proxy         stringsvc -proxy in front of three backends (the default balancer, p2c)
#   proxy-rr      the same with -proxy.balancer roundrobin
#   proxy-hedge   the same with an armed hedge timer that never fires (-proxy.hedge-after 50ms)
#   proxy-old     the proxy built from OLD_BIN, in front of the same backends (if OLD_BIN is set)
#   count         /count on the proxy (no hop)
#   nginx         nginx in front of the same three backends (if installed)
#   grpc-direct   gRPC to one backend (scripts/grpcload)
#   grpc-proxy    gRPC in, gRPC out: a proxy with -proxy grpc://... in front of the three
#   http-grpc     HTTP in, gRPC out: the same proxy's HTTP side
# then latency at a fixed rate (open loop) direct vs proxy (vs nginx).
# Servers run on CPU 0, the load generator on CPU 1 (taskset). Each
# scenario runs RUNS times, interleaved; medians are reported with min-max.
# A ratio is the median of the runs' own ratios: the two scenarios of a pair
# run back to back, so a shared machine's slow minutes hit both alike.
#
#   scripts/bench.sh                     # defaults below
#   RUNS=7 DURATION=10s scripts/bench.sh
#   BIN=/tmp/old-stringsvc scripts/bench.sh   # measure another build
#   RATE=0 scripts/bench.sh              # throughput only, no fixed-rate run
#   OLD_BIN=/tmp/old scripts/bench.sh    # and an older proxy beside the new, paired
#   GRPC=0 scripts/bench.sh              # no gRPC scenarios
set -euo pipefail
shopt -s nullglob # the log globs below may match nothing (no nginx)
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
DURATION=${DURATION:-6s}
CONNS=${CONNS:-50}
RATE=${RATE:-2000}
RATE_DURATION=${RATE_DURATION:-10s}
GRPC=${GRPC:-1}
OLD_BIN=${OLD_BIN:-}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}

if ! command -v wrk >/dev/null; then
	if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
		apt-get install -y -qq wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
	else
		echo "bench.sh needs wrk: sudo apt-get install -y wrk" >&2
		exit 1
	fi
fi
command -v nginx >/dev/null || echo "nginx not installed (apt-get install -y nginx): skipping the nginx comparison" >&2

work=$(mktemp -d)
# The servers' logs (one line per request: hundreds of MB in a run) go to
# tmpfs when there is one, and are emptied before each measured run: written
# to disk, their writeback lands on whichever scenario runs later.
logs=$(mktemp -d -p /dev/shm 2>/dev/null || echo "$work")
pids=()
cleanup() {
	kill "${pids[@]}" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work" "$logs"
}
trap cleanup EXIT

bin=${BIN:-$work/stringsvc}
[[ -n ${BIN:-} ]] || go build -o "$bin" .
go build -o "$work/openloop" ./scripts/openloop
go build -o "$work/grpcload" ./scripts/grpcload

start() { # start NAME CMD...: runs CMD on the server CPU, logs to $logs/NAME.log
	local name=$1
	shift
	taskset -c "$SERVER_CPU" "$@" >>"$logs/$name.log" 2>&1 &
	pids+=($!)
}
backends=127.0.0.1:18181,127.0.0.1:18182,127.0.0.1:18183
start b1 "$bin" -listen 127.0.0.1:18181 -grpc.listen 127.0.0.1:19181
start b2 "$bin" -listen 127.0.0.1:18182 -grpc.listen 127.0.0.1:19182
start b3 "$bin" -listen 127.0.0.1:18183 -grpc.listen 127.0.0.1:19183
start b4 "$bin" -listen 127.0.0.1:18184 -log.requests=false
start proxy "$bin" -listen 127.0.0.1:18180 -proxy "$backends"
start proxy-rr "$bin" -listen 127.0.0.1:18185 -proxy "$backends" -proxy.balancer roundrobin
start proxy-hedge "$bin" -listen 127.0.0.1:18186 -proxy "$backends" -proxy.hedge-after 50ms
start proxy-grpc "$bin" -listen 127.0.0.1:18187 -grpc.listen 127.0.0.1:19180 \
	-proxy grpc://127.0.0.1:19181,127.0.0.1:19182,127.0.0.1:19183
ports=(18181 18182 18183 18184 18180 18185 18186 18187)
if [[ -n $OLD_BIN ]]; then
	start proxy-old "$OLD_BIN" -listen 127.0.0.1:18189 -proxy "$backends"
	ports+=(18189)
fi
if command -v nginx >/dev/null; then
	mkdir -p "$logs/nginx" # its access log too
	sed "s#@DIR@#$logs/nginx#g" scripts/bench-nginx.conf >"$logs/nginx/nginx.conf"
	start nginx nginx -p "$logs/nginx" -c "$logs/nginx/nginx.conf" -g 'daemon off;'
fi
for port in "${ports[@]}"; do
	for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
done

declare -A urls=(
	[direct]=http://127.0.0.1:18181/uppercase
	[direct-nolog]=http://127.0.0.1:18184/uppercase
	[proxy]=http://127.0.0.1:18180/uppercase
	[proxy-rr]=http://127.0.0.1:18185/uppercase
	[proxy-hedge]=http://127.0.0.1:18186/uppercase
	[proxy-old]=http://127.0.0.1:18189/uppercase
	[count]=http://127.0.0.1:18180/count
	[grpc-direct]=grpc://127.0.0.1:19181
	[grpc-proxy]=grpc://127.0.0.1:19180
	[http-grpc]=http://127.0.0.1:18187/uppercase
)
# proxy sits between round-robin and nginx, the two it is most compared with.
scenarios=(direct direct-nolog proxy-rr proxy)
if command -v nginx >/dev/null; then
	urls[nginx]=http://127.0.0.1:18190/uppercase
	scenarios+=(nginx)
fi
scenarios+=(proxy-hedge)
[[ -z $OLD_BIN ]] || scenarios+=(proxy-old)
scenarios+=(count)
[[ $GRPC == 0 ]] || scenarios+=(grpc-direct grpc-proxy http-grpc)

wrk_run() { # wrk_run URL DURATION → RESULT line; a grpc://host:port URL runs grpcload
	for f in "$logs"/*.log "$logs"/nginx/*.log; do : >"$f"; done
	if [[ $1 == grpc://* ]]; then
		taskset -c "$LOAD_CPU" "$work/grpcload" -addr "${1#grpc://}" -concurrency "$CONNS" -duration "$2"
		return
	fi
	taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$2" -s scripts/bench.lua "$1" | grep '^RESULT'
}
for s in "${scenarios[@]}"; do wrk_run "${urls[$s]}" 1s >/dev/null; done # warm up

echo "# wrk -t1 -c$CONNS -d$DURATION, $RUNS runs, servers on CPU $SERVER_CPU, wrk on CPU $LOAD_CPU"
for run in $(seq "$RUNS"); do
	for s in "${scenarios[@]}"; do
		line=$(wrk_run "${urls[$s]}" "$DURATION")
		echo "run=$run scenario=$s $line" | tee -a "$work/results"
	done
done

field() { # field SCENARIO KEY FILE → the KEY values of SCENARIO's runs, one a line
	grep " scenario=$1 \| label=$1 " "$3" | tr ' ' '\n' | sed -n "s/^$2=//p"
}
stats() { # stats < numbers → "median min max"
	sort -g | awk '{ v[NR] = $1 } END { printf "%s %s %s\n", v[int((NR + 1) / 2)], v[1], v[NR] }'
}
rps() { # rps SCENARIO → good req/s of each run
	paste <(field "$1" good "$work/results") <(field "$1" duration_us "$work/results") |
		awk '{ printf "%.0f\n", $1 / ($2 / 1e6) }'
}
summary() { # summary SCENARIO → "median min max failures p50 p99"
	local bad
	bad=$(field "$1" bad "$work/results" | awk '{ s += $1 } END { print s + 0 }')
	echo "$(rps "$1" | stats) $bad $(field "$1" p50_us "$work/results" | stats | cut -d' ' -f1)" \
		"$(field "$1" p99_us "$work/results" | stats | cut -d' ' -f1)"
}
echo
printf "%-13s %12s %17s %9s %8s %8s\n" scenario "good req/s" "min-max" failures "p50 us" "p99 us"
for s in "${scenarios[@]}"; do
	read -r med lo hi bad p50 p99 < <(summary "$s")
	printf "%-13s %12s %17s %9s %8s %8s\n" "$s" "$med" "$lo-$hi" "$bad" "$p50" "$p99"
done
ratio() { # ratio A B → "median min-max" of A/B over the runs
	paste <(rps "$1") <(rps "$2") | awk '{ printf "%.2f\n", $1 / $2 }' | stats |
		awk '{ printf "%s (runs %s-%s)", $1, $2, $3 }'
}
echo
echo "proxy/direct = $(ratio proxy direct)"
if [[ -n ${urls[nginx]:-} ]]; then
	echo "nginx/direct = $(ratio nginx direct)"
	echo "proxy/nginx  = $(ratio proxy nginx)"
fi
echo "logging on/off (direct) = $(ratio direct direct-nolog)"
echo "p2c/roundrobin (proxy) = $(ratio proxy proxy-rr)"
echo "idle hedge/none (proxy) = $(ratio proxy-hedge proxy)"
[[ -z $OLD_BIN ]] || echo "proxy new/old = $(ratio proxy proxy-old)"
if [[ $GRPC != 0 ]]; then
	echo "grpc proxy/direct = $(ratio grpc-proxy grpc-direct)"
	echo "http-grpc/direct (HTTP) = $(ratio http-grpc direct)"
	echo "http-grpc/proxy (HTTP out) = $(ratio http-grpc proxy)"
fi

[[ $RATE != 0 ]] || exit 0 # RATE=0: no fixed-rate run
echo
echo "# fixed rate: $RATE req/s for $RATE_DURATION, open loop, latency from scheduled send time ($RUNS runs, medians)"
open_scenarios=(direct proxy)
[[ -z ${urls[nginx]:-} ]] || open_scenarios+=(nginx)
for run in $(seq "$RUNS"); do
	for s in "${open_scenarios[@]}"; do
		taskset -c "$LOAD_CPU" "$work/openloop" -url "${urls[$s]}" -rate "$RATE" -duration "$RATE_DURATION" -label "$s" |
			tee -a "$work/openloop.results"
	done
done
echo
printf "%-8s %8s %8s %8s %8s\n" scenario "p50 us" "p99 us" "p99.9 us" failed
for s in "${open_scenarios[@]}"; do
	f=$work/openloop.results
	printf "%-8s %8s %8s %8s %8s\n" "$s" "$(field "$s" p50_us "$f" | stats | cut -d' ' -f1)" \
		"$(field "$s" p99_us "$f" | stats | cut -d' ' -f1)" "$(field "$s" p999_us "$f" | stats | cut -d' ' -f1)" \
		"$(field "$s" failed "$f" | awk '{ s += $1 } END { print s + 0 }')"
done
