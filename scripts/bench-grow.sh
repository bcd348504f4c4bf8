#!/usr/bin/env bash
# Produce to a growing topic: `sluice bench produce` of 100,000 1 KiB records,
# RUNS times (default 12) into one RF=3 topic of a fresh 3-node local cluster
# (release build), printing each run's records/s (thousands) and the median.
# Slowdowns as the partition grows show here (compactions, snapshot stalls).
# Usage: [SLUICE_BIN=path/to/sluice] scripts/bench-grow.sh [PORT] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SLUICE_BIN:-./target/release/sluice}
PORT=${1:-19890}
RUNS=${2:-12}
SLUICE_HOME=$(mktemp -d)
export SLUICE_HOME
trap '$S cluster delete >/dev/null 2>&1 || true; rm -rf "$SLUICE_HOME"' EXIT
trap 'exit 130' INT TERM
$S cluster start --local --spus 3 --port "$PORT" >/dev/null
$S topic create grow -r 3 >/dev/null
sleep 1
for _ in $(seq 1 "$RUNS"); do
  $S bench produce --topic grow --records 100000 --producers 4 -O json |
    python3 -c 'import json,sys; print(round(json.load(sys.stdin)["records_per_second"] / 1000))'
done | tee "$SLUICE_HOME/runs.txt" | tr '\n' ' '
echo
python3 -c 'import statistics,sys; print("median", statistics.median(int(l) for l in open(sys.argv[1])), "k records/s")' "$SLUICE_HOME/runs.txt"
