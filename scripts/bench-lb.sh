#!/usr/bin/env bash
# Measures the balancing and retry policies of issue 12 in one run, each
# scenario at a fixed rate (scripts/openloop), servers on CPU 0, the load
# on CPU 1:
#   slow    one of three instances 20 ms slower (scripts/delayrelay in front
#           of a real backend): its share of requests and the p99 under
#           roundrobin and p2c
#   tail    every instance answers 2% of requests 100 ms late: p99 and
#           p99.9 without hedging and with -proxy.hedge-after 10ms, and
#           upstream requests per client request
#   fail    every instance answers 500 (breakers tuned not to open):
#           upstream attempts per client request with the default retry
#           budget and without one
# Proxy-side figures come from the proxies' own /metrics.
#
#   scripts/bench-lb.sh
#   RATE=300 TAIL_RATE=500 TAIL_DURATION=40s scripts/bench-lb.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-300}
DURATION=${DURATION:-15s}
TAIL_RATE=${TAIL_RATE:-500}
TAIL_DURATION=${TAIL_DURATION:-40s}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}

work=$(mktemp -d)
pids=()
cleanup() {
	kill "${pids[@]}" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/stringsvc" .
go build -o "$work/openloop" ./scripts/openloop
go build -o "$work/delayrelay" ./scripts/delayrelay
start() { # start NAME CMD...: runs CMD on the server CPU
	local name=$1
	shift
	taskset -c "$SERVER_CPU" "$@" >>"$work/$name.log" 2>&1 &
	pids+=($!)
}
wait_up() { # wait_up PORT...
	for port in "$@"; do
		for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
	done
}
list() { # list PORT... → 127.0.0.1:PORT,...
	local IFS=,
	local out=()
	for p in "$@"; do out+=("127.0.0.1:$p"); done
	echo "${out[*]}"
}
metric() { # metric PORT REGEX → the sum of the matching series' values
	curl -fsS "http://127.0.0.1:$1/metrics" | { grep -E "^$2" || true; } | awk '{ s += $NF } END { printf "%.0f\n", s }'
}
openloop() { # openloop PORT RATE DURATION LABEL → OPENLOOP line
	taskset -c "$LOAD_CPU" "$work/openloop" -url "http://127.0.0.1:$1/uppercase" -rate "$2" -duration "$3" -label "$4"
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
quiet=(-log.requests=false)

# Three real backends, each behind three relays: plain, slow, tail.
for i in 1 2 3; do
	start "b$i" "$work/stringsvc" -listen "127.0.0.1:1828$i" "${quiet[@]}"
done
wait_up 18281 18282 18283
start slow1 "$work/delayrelay" -listen 127.0.0.1:18291 -target 127.0.0.1:18281 -delay 20ms
start slow2 "$work/delayrelay" -listen 127.0.0.1:18292 -target 127.0.0.1:18282
start slow3 "$work/delayrelay" -listen 127.0.0.1:18293 -target 127.0.0.1:18283
for i in 1 2 3; do
	start "tail$i" "$work/delayrelay" -listen "127.0.0.1:1829$((i + 3))" -target "127.0.0.1:1828$i" \
		-tail-ratio 0.02 -tail-delay 100ms
	start "fail$i" "$work/delayrelay" -listen "127.0.0.1:1829$((i + 6))" -fail
done
slow=$(list 18291 18292 18293)
tail=$(list 18294 18295 18296)
fail=$(list 18297 18298 18299)
never=(-proxy.breaker.failures 4000000000 -proxy.breaker.min-requests 4000000000)
long=(-proxy.attempt-timeout 1s -proxy.timeout 2s) # a late answer is waited for, not retried
start rr "$work/stringsvc" -listen 127.0.0.1:18270 "${quiet[@]}" -proxy "$slow" -proxy.balancer roundrobin
start p2c "$work/stringsvc" -listen 127.0.0.1:18271 "${quiet[@]}" -proxy "$slow" -proxy.balancer p2c
rr=(-proxy.balancer roundrobin) # the tail and failure scenarios measure one thing each
start nohedge "$work/stringsvc" -listen 127.0.0.1:18272 "${quiet[@]}" -proxy "$tail" "${long[@]}" "${rr[@]}"
start hedge "$work/stringsvc" -listen 127.0.0.1:18273 "${quiet[@]}" -proxy "$tail" "${long[@]}" "${rr[@]}" \
	-proxy.hedge-after 10ms
start budget "$work/stringsvc" -listen 127.0.0.1:18274 "${quiet[@]}" -proxy "$fail" "${never[@]}" "${rr[@]}"
start nobudget "$work/stringsvc" -listen 127.0.0.1:18275 "${quiet[@]}" -proxy "$fail" "${never[@]}" "${rr[@]}" \
	-proxy.retry-budget 1000 -proxy.retry-budget-min 1000000
wait_up 18270 18271 18272 18273 18274 18275

echo "# slow instance: 127.0.0.1:18291 is 20 ms slower; $RATE req/s for $DURATION"
printf "%-10s %12s %8s %8s %8s\n" balancer "slow share" "p50 us" "p99 us" failed
for b in rr:18270 p2c:18271; do
	name=${b%%:*} port=${b#*:}
	openloop "$port" 50 2s warmup >/dev/null # warm the connections and the averages
	before=$(metric "$port" 'stringsvc_upstream_requests_total\{outcome="success",upstream="127.0.0.1:18291"\}')
	total0=$(metric "$port" 'stringsvc_upstream_requests_total\{outcome="success"')
	line=$(openloop "$port" "$RATE" "$DURATION" "$name")
	slowN=$(($(metric "$port" 'stringsvc_upstream_requests_total\{outcome="success",upstream="127.0.0.1:18291"\}') - before))
	totalN=$(($(metric "$port" 'stringsvc_upstream_requests_total\{outcome="success"') - total0))
	printf "%-10s %11.1f%% %8s %8s %8s\n" "$name" "$(awk -v a="$slowN" -v b="$totalN" 'BEGIN { print 100 * a / b }')" \
		"$(field p50_us <<<"$line")" "$(field p99_us <<<"$line")" "$(field failed <<<"$line")"
done

echo
echo "# tail: every instance answers 2% of requests 100 ms late; $TAIL_RATE req/s for $TAIL_DURATION"
printf "%-10s %8s %8s %9s %8s %18s\n" proxy "p50 us" "p99 us" "p99.9 us" failed "upstream/request"
for b in nohedge:18272 hedge:18273; do
	name=${b%%:*} port=${b#*:}
	up0=$(metric "$port" 'stringsvc_upstream_requests_total\{')
	req0=$(metric "$port" 'stringsvc_requests_total\{[^}]*method="uppercase"')
	line=$(openloop "$port" "$TAIL_RATE" "$TAIL_DURATION" "$name")
	up=$(($(metric "$port" 'stringsvc_upstream_requests_total\{') - up0))
	req=$(($(metric "$port" 'stringsvc_requests_total\{[^}]*method="uppercase"') - req0))
	printf "%-10s %8s %8s %9s %8s %18.3f\n" "$name" "$(field p50_us <<<"$line")" "$(field p99_us <<<"$line")" \
		"$(field p999_us <<<"$line")" "$(field failed <<<"$line")" "$(awk -v a="$up" -v b="$req" 'BEGIN { print a / b }')"
done

echo
echo "# fail: every instance answers 500, breakers never open; $RATE req/s for $DURATION"
printf "%-10s %18s %14s\n" proxy "attempts/request" "refused"
for b in budget:18274 nobudget:18275; do
	name=${b%%:*} port=${b#*:}
	up0=$(metric "$port" 'stringsvc_upstream_requests_total\{')
	req0=$(metric "$port" 'stringsvc_requests_total\{[^}]*method="uppercase"')
	openloop "$port" "$RATE" "$DURATION" "$name" >/dev/null
	up=$(($(metric "$port" 'stringsvc_upstream_requests_total\{') - up0))
	req=$(($(metric "$port" 'stringsvc_requests_total\{[^}]*method="uppercase"') - req0))
	printf "%-10s %18.3f %14s\n" "$name" "$(awk -v a="$up" -v b="$req" 'BEGIN { print a / b }')" \
		"$(metric "$port" 'stringsvc_upstream_retries_refused_total')"
done
