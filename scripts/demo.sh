#!/usr/bin/env bash
# Builds stringsvc, starts three backends and a proxy on 127.0.0.1, curls
# both endpoints through the proxy, prints a few /metrics lines, and stops
# everything it started on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$(mktemp -d)/stringsvc
go build -o "$bin" .
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$(dirname "$bin")"; }
trap cleanup EXIT

for port in 8081 8082 8083; do
	"$bin" -listen "127.0.0.1:$port" 2>/dev/null &
	pids+=($!)
done
"$bin" -listen 127.0.0.1:8080 -proxy 127.0.0.1:8081,127.0.0.1:8082,127.0.0.1:8083 &
pids+=($!)

for port in 8081 8082 8083 8080; do
	for _ in $(seq 50); do
		curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
		sleep 0.1
	done
done

set -x
curl -sS -XPOST http://127.0.0.1:8080/uppercase -d '{"s":"hello, world"}'
curl -sS -XPOST http://127.0.0.1:8080/count -d '{"s":"héllo"}'
curl -sS -XPOST http://127.0.0.1:8080/uppercase -d '{"s":""}'
for i in 1 2 3 4 5 6; do curl -sS -XPOST http://127.0.0.1:8080/uppercase -d "{\"s\":\"req $i\"}"; done
set +x
curl -sS http://127.0.0.1:8080/metrics | grep -E '^stringsvc_(requests_total|upstream_requests_total|upstream_breaker_state)'
