#!/usr/bin/env bash
# Consume throughput of one partition from its leader, for one build or two
# side by side: per round and build, a fresh 3-node local cluster, RECORDS
# 1 KiB records produced into an RF=3 partition (`bench produce`, 4
# producers), then `bench consume` three times; the nodes' CPU ticks over the
# consumes are read from /proc. Builds alternate round by round.
# Prints each consume, then per build the median records/s and the CPU ticks
# (1/CLK_TCK s) per 100,000 records consumed.
# Usage: [SLUICE_BIN=new] [BASE_BIN=old] scripts/bench-consume.sh [ROUNDS] [RECORDS]
set -euo pipefail
cd "$(dirname "$0")/.."
NEW=${SLUICE_BIN:-./target/release/sluice}
BASE=${BASE_BIN:-}
ROUNDS=${1:-3}
RECORDS=${2:-200000}
PORT=${PORT:-19970}
WORK=$(mktemp -d)
OUT=$WORK/runs.txt
bin=""
trap '[ -n "$bin" ] && "$bin" cluster delete >/dev/null 2>&1; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM
builds=(new)
[ -n "$BASE" ] && builds=(base new)
ticks() {
    local t=0
    for f in "$SLUICE_HOME"/local/node-*/node.pid; do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$(cat "$f")/stat")))
    done
    echo "$t"
}
for round in $(seq 1 "$ROUNDS"); do
    for build in "${builds[@]}"; do
        if [ "$build" = base ]; then bin=$BASE; else bin=$NEW; fi
        export SLUICE_HOME=$WORK/$build-$round
        mkdir -p "$SLUICE_HOME"
        "$bin" cluster start --local --spus 3 --port "$PORT" >/dev/null
        "$bin" bench produce --topic c --replication 3 --records "$RECORDS" --producers 4 -O json >/dev/null
        sleep 2
        before=$(ticks)
        for _ in 1 2 3; do
            "$bin" bench consume --topic c -O json |
                python3 -c 'import json,sys; d=json.load(sys.stdin); print(sys.argv[1], "consume", d["records"], round(d["records_per_second"]))' "$build"
        done | tee -a "$OUT"
        echo "$build ticks $((3 * RECORDS)) $(($(ticks) - before))" | tee -a "$OUT"
        "$bin" cluster delete >/dev/null
        bin=""
    done
done
python3 - "$OUT" <<'PY'
import statistics, sys
runs = [l.split() for l in open(sys.argv[1])]
for build in dict.fromkeys(r[0] for r in runs):
    rps = [int(r[3]) for r in runs if r[0] == build and r[1] == "consume"]
    ticks = [(int(r[3]), int(r[2])) for r in runs if r[0] == build and r[1] == "ticks"]
    per = sum(t for t, _ in ticks) / sum(n for _, n in ticks) * 100_000
    print(f"{build}: median {statistics.median(rps):,.0f} records/s, {per:.1f} CPU ticks per 100,000 records")
PY
