#!/usr/bin/env bash
# How long a consumer group takes to rebalance. Starts a 3-node local cluster
# and a topic of PARTITIONS partitions (RF=3); per round, member A joins and
# takes every partition, then member B joins (JOIN: until each owns a share),
# then B is killed with SIGKILL (CRASH: until A owns every partition again,
# which waits for B's session timeout, SESSION). Times are read by polling
# `sluice consumer describe` every 50 ms, so they include up to ~0.1 s of
# polling. Needs a release build (or SLUICE_BIN) and python3.
# Usage: scripts/bench-rebalance.sh [ROUNDS] [PARTITIONS] [SESSION] [PORT]
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SLUICE_BIN:-./target/release/sluice}
ROUNDS=${1:-5}
PARTS=${2:-6}
SESSION=${3:-3s}
PORT=${4:-19890}
SLUICE_HOME=$(mktemp -d)
export SLUICE_HOME
members=()
cleanup() {
    for pid in "${members[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    $S cluster delete >/dev/null 2>&1 || true
    rm -rf "$SLUICE_HOME"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

$S cluster start --local --spus 3 --port "$PORT" --no-metrics >/dev/null
$S topic create rebalance --partitions "$PARTS" --replication 3 >/dev/null

# Distinct owners of group $1 if every partition has one, else 0.
owners() {
    $S consumer describe "$1" -O json 2>/dev/null | python3 -c '
import json, sys
try:
    rows = json.load(sys.stdin)
except Exception:
    print(0); sys.exit()
owned = [r["owner"] for r in rows if r.get("owner")]
print(len(set(owned)) if len(owned) == '"$PARTS"' else 0)'
}
wait_owners() { # group, wanted distinct owners; prints the seconds waited
    local start now
    start=$(date +%s.%N)
    until [ "$(owners "$1")" = "$2" ]; do sleep 0.05; done
    now=$(date +%s.%N)
    python3 -c "print(f'{$now - $start:.2f}')"
}
member() {
    $S consume rebalance -g "$1" --session-timeout "$SESSION" >/dev/null 2>&1 &
    members+=($!)
    echo $!
}

printf "round\tjoin_s\tcrash_s\t(%s partitions, session %s)\n" "$PARTS" "$SESSION"
for round in $(seq 1 "$ROUNDS"); do
    group="bench-$round"
    a=$(member "$group")
    wait_owners "$group" 1 >/dev/null
    b=$(member "$group")
    join=$(wait_owners "$group" 2)
    kill -9 "$b"
    crash=$(wait_owners "$group" 1)
    kill -INT "$a"
    wait "$a" 2>/dev/null || true
    printf "%s\t%s\t%s\n" "$round" "$join" "$crash"
done
