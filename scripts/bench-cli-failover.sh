#!/usr/bin/env bash
# Failover as a fresh CLI sees it: per round a fresh 3-node local cluster and
# an RF=3 topic; its partition's leader is SIGKILLed, then `echo x | sluice
# --endpoint DEAD,LIVE,LIVE produce` runs again and again (a new process
# each time, as a shell loop or a cron job would) until one is acknowledged.
# The dead leader is listed first: a profile that names it first is the
# case where a new process must get past a dead node before it can even ask
# who leads now. Prints, per round, the time from the kill to that first
# acknowledgement and how many attempts it took, then the median.
# Needs a release build (or SLUICE_BIN).
# Usage: [SLUICE_BIN=...] scripts/bench-cli-failover.sh [ROUNDS] [PORT]
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SLUICE_BIN:-./target/release/sluice}
ROUNDS=${1:-5}
PORT=${2:-19810}
SLUICE_HOME=$(mktemp -d)
export SLUICE_HOME
trap '$S cluster delete >/dev/null 2>&1 || true; rm -rf "$SLUICE_HOME"' EXIT
trap 'exit 130' INT TERM
took=()
for round in $(seq "$ROUNDS"); do
    $S cluster start --local --spus 3 --port "$PORT" >/dev/null
    $S topic create fo -r 3 >/dev/null
    echo first | $S produce fo >/dev/null
    leader=$($S partition list fo -O json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["leader"])')
    endpoints="127.0.0.1:$((PORT + leader - 1))"
    for n in 1 2 3; do
        [ "$n" -ne "$leader" ] && endpoints="$endpoints,127.0.0.1:$((PORT + n - 1))"
    done
    kill -9 "$(cat "$SLUICE_HOME/local/node-$leader/node.pid")"
    start=$(date +%s.%N)
    attempts=1
    until echo x | $S --endpoint "$endpoints" produce fo >/dev/null 2>&1; do
        attempts=$((attempts + 1))
    done
    end=$(date +%s.%N)
    t=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')
    echo "round $round: leader node $leader killed; acknowledged after $t s, attempt $attempts" >&2
    took+=("$t")
    $S cluster delete >/dev/null 2>&1 || true
    PORT=$((PORT + 3))
done
printf '%s\n' "${took[@]}" | sort -n | awk '{ v[NR] = $1 } END {
    printf "kill to first acknowledged produce of a fresh CLI: median %.3f s over %d rounds (min %.3f, max %.3f)\n",
        v[int((NR + 1) / 2)], NR, v[1], v[NR]
}'
