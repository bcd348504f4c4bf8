#!/usr/bin/env bash
# Failover as a long-lived producer sees it: `sluice bench produce` at RATE
# records/s to an RF=3 partition of a 3-node local cluster; its leader is
# SIGKILLed KILL_AFTER seconds in. The largest ack latency of the run is the
# stall the kill caused (kill, election, the client noticing and resending).
# Then the survivors' group wakes by why (`sluice_raft_group_wakes_total`),
# which says how they found the leader dead when the partition slept.
#
# Defaults: 500 records/s, the kill 3 s in (the partition never sleeps).
# A sleeping partition: RATE=1 RECORDS=10 KILL_AFTER=4.8, one record a
# second, so the group sleeps between records (it does after 300-450 ms
# idle) and the kill lands in its sleep, just before the next record.
# Needs a release build (or SLUICE_BIN); EXTRA: more `cluster start` flags.
# Usage: [SLUICE_BIN=...] [RATE=..] [RECORDS=..] [KILL_AFTER=..] scripts/bench-failover.sh [PORT]
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SLUICE_BIN:-./target/release/sluice}
PORT=${1:-19830}
RATE=${RATE:-500}
RECORDS=${RECORDS:-4000}
KILL_AFTER=${KILL_AFTER:-3}
SLUICE_HOME=$(mktemp -d)
export SLUICE_HOME
trap '$S cluster delete >/dev/null 2>&1 || true; rm -rf "$SLUICE_HOME"' EXIT
trap 'exit 130' INT TERM
out=$($S cluster start --local --spus 3 --port "$PORT" ${EXTRA:-})
read -r -a urls <<<"$(echo "$out" | sed -n 's/^Metrics (Prometheus): //p')"
$S topic create fo -r 3 >/dev/null
sleep 2
leader=$($S partition list fo -O json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["leader"])')
$S bench produce --topic fo --records "$RECORDS" --rate "$RATE" --record-size 100 -O json >"$SLUICE_HOME/bench.json" &
bench=$!
sleep "$KILL_AFTER"
kill -9 "$(cat "$SLUICE_HOME/local/node-$leader/node.pid")"
wait $bench
python3 - "$SLUICE_HOME/bench.json" <<'PY'
import json, sys
l = json.load(open(sys.argv[1]))["latency_us"]
print(f"ack latency p50 {l['p50'] / 1000:.1f} ms, max {l['max'] / 1000:.0f} ms (the failover stall)")
PY
# The survivors' wakes (the dead node's URL answers nothing).
for url in "${urls[@]}"; do curl -s --max-time 2 "$url" || true; done | python3 -c '
import re, sys
wakes = {}
for line in sys.stdin:
    m = re.match(r"sluice_raft_group_wakes_total\{.*why=\"([^\"]+)\".*\} (\S+)", line)
    if m:
        wakes[m.group(1)] = wakes.get(m.group(1), 0) + float(m.group(2))
print("survivors group wakes: " + ("; ".join(f"{w}: {n:.0f}" for w, n in sorted(wakes.items())) or "none"))
'
