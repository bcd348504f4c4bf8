#!/usr/bin/env bash
# Failover as a long-lived producer sees it: `sluice bench produce` at 500
# records/s to an RF=3 partition of a 3-node local cluster; its leader is
# SIGKILLed 3 s in. The largest ack latency of the run is the stall the kill
# caused (kill, election, the client noticing and resending). Needs a release
# build. Usage: scripts/bench-failover.sh [PORT]
set -euo pipefail
cd "$(dirname "$0")/.."
S=./target/release/sluice
PORT=${1:-19830}
SLUICE_HOME=$(mktemp -d)
export SLUICE_HOME
trap '$S cluster delete >/dev/null 2>&1 || true' EXIT
trap 'exit 130' INT TERM
$S cluster start --local --spus 3 --port "$PORT" >/dev/null
$S topic create fo -r 3 >/dev/null
sleep 2
leader=$($S partition list fo -O json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["leader"])')
$S bench produce --topic fo --records 4000 --rate 500 --record-size 100 -O json >"$SLUICE_HOME/bench.json" &
bench=$!
sleep 3
kill -9 "$(cat "$SLUICE_HOME/local/node-$leader/node.pid")"
wait $bench
python3 - "$SLUICE_HOME/bench.json" <<'PY'
import json, sys
l = json.load(open(sys.argv[1]))["latency_us"]
print(f"ack latency p50 {l['p50'] / 1000:.1f} ms, max {l['max'] / 1000:.0f} ms (the failover stall)")
PY
