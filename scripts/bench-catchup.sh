#!/usr/bin/env bash
# Measures how fast a new replica catches up: a 3-node local cluster with one
# RF=3 partition of 200,000 1 KiB records, a 4th node joins and the partition
# moves onto it. Usage: scripts/bench-catchup.sh [PORT] [SNAPSHOT_EVERY:KEPT]
# (the second argument makes the leader purge its log early, so the new
# replica catches up through a snapshot and segment copy). Needs a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
S=./target/release/sluice
PORT=${1:-19800}
SLUICE_HOME=$(mktemp -d)
export SLUICE_HOME
if [ -n "${2:-}" ]; then export SLUICE_PARTITION_LOG_ENTRIES=$2; fi
trap '$S cluster delete >/dev/null 2>&1 || true' EXIT
trap 'exit 130' INT TERM
$S cluster start --local --spus 3 --port "$PORT" >/dev/null
$S bench produce --topic cu --replication 3 --records 200000 --record-size 1KiB --producers 2 | grep -i "records/s"
$S cluster start --local --spus 4 --port "$PORT" >/dev/null 2>&1
start=$(date +%s.%N)
$S partition reassign cu -p 0 --replicas 2,3,4
end=$(date +%s.%N)
echo "move (catch-up included): $(echo "$end - $start" | bc) s"
$S partition list cu
grep -h "snapshot installed" "$SLUICE_HOME"/local/node-4/node.log | tail -1 || echo "(caught up through the Raft log)"
