#!/usr/bin/env bash
# How long a consumer group takes to rebalance. Starts a 3-node local cluster
# and a topic of PARTITIONS partitions (RF=3); per round, member A joins and
# takes every partition, then member B joins (JOIN: until each owns a share),
# then B is killed with SIGKILL (CRASH: until A owns every partition again,
# which waits for B's session timeout, SESSION). Ownership is read by polling
# `sluice consumer describe` every 50 ms (up to ~0.1 s of polling included).
# The *_READ columns are when the members were told to read (their
# "partitions assigned" log lines): START_READ from A's launch until it reads
# every partition, JOIN_READ until B reads half of them, CRASH_READ until A
# reads B's half again. B joins only once A reads everything. Needs a release
# build (or SLUICE_BIN) and python3.
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
member() { # group, log file
    RUST_LOG=sluice_client=info NO_COLOR=1 \
        $S consume rebalance -g "$1" --session-timeout "$SESSION" >/dev/null 2>"$2" &
    members+=($!)
    echo $!
}
# Partitions named by "partitions assigned" lines of log $1 after its line $2.
assigned() {
    tail -n +"$(($2 + 1))" "$1" 2>/dev/null | python3 -c '
import re, sys
seen = set()
for line in sys.stdin:
    m = re.search(r"partitions assigned.*partitions=\[([0-9, ]*)\]", line)
    if m:
        seen.update(int(p) for p in m.group(1).split(",") if p.strip())
print(len(seen))'
}
wait_assigned() { # log, from line, count; prints the seconds waited since $4
    until [ "$(assigned "$1" "$2")" -ge "$3" ]; do sleep 0.05; done
    python3 -c "print(f'{$(date +%s.%N) - $4:.2f}')"
}
half=$((PARTS / 2))

printf "round\tjoin_s\tcrash_s\tstart_read_s\tjoin_read_s\tcrash_read_s\t(%s partitions, session %s)\n" "$PARTS" "$SESSION"
for round in $(seq 1 "$ROUNDS"); do
    group="bench-$round"
    alog="$SLUICE_HOME/a-$round.log"
    blog="$SLUICE_HOME/b-$round.log"
    t0=$(date +%s.%N)
    a=$(member "$group" "$alog")
    start_read=$(wait_assigned "$alog" 0 "$PARTS" "$t0")
    t1=$(date +%s.%N)
    b=$(member "$group" "$blog")
    join=$(wait_owners "$group" 2)
    join_read=$(wait_assigned "$blog" 0 "$half" "$t1")
    seen=$(wc -l < "$alog")
    t2=$(date +%s.%N)
    kill -9 "$b"
    crash=$(wait_owners "$group" 1)
    crash_read=$(wait_assigned "$alog" "$seen" "$half" "$t2")
    kill -INT "$a"
    wait "$a" 2>/dev/null || true
    printf "%s\t%s\t%s\t%s\t%s\t%s\n" "$round" "$join" "$crash" "$start_read" "$join_read" "$crash_read"
done
