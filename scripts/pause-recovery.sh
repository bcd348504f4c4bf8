#!/usr/bin/env bash
# Whether a cluster of many idle partitions recovers from a pause of one
# node: starts a 3-node local cluster, creates a topic of PARTITIONS x RF3,
# waits until every partition has a leader and the groups sleep, stops node
# 2 (SIGSTOP) for PAUSE seconds, resumes it, then prints every 5 s for WATCH
# seconds the partitions without a leader, the groups asleep per node and
# the load average. A healthy build is back to no leaderless partition and
# every group asleep within seconds; the build before 2026-12-05's fix left
# half of 1,000 partitions leaderless for minutes (RELIABILITY.md, "Elections
# after a pause").
# MODE=kill kills node 2 (SIGKILL) instead, watches WATCH seconds, restarts
# it with its own command line and watches WATCH seconds more (before the
# fix, 175 of 1,000 partitions stayed leaderless after the kill).
# Usage: [SLUICE_BIN=path] [MODE=pause|kill] scripts/pause-recovery.sh [PARTITIONS] [PAUSE] [WATCH]
#        (defaults: 1000 partitions, 5 s pause, 60 s watch)
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SLUICE_BIN:-./target/release/sluice}
PARTS=${1:-1000}
PAUSE=${2:-5}
WATCH=${3:-60}
PORT=${PORT:-19960}
export SLUICE_HOME
SLUICE_HOME=$(mktemp -d)
trap '"$S" cluster delete >/dev/null 2>&1 || true; rm -rf "$SLUICE_HOME"' EXIT
trap 'exit 130' INT TERM

"$S" cluster start --local --spus 3 --port "$PORT" >/dev/null
"$S" topic create paused --partitions "$PARTS" --replication 3 >/dev/null
leaderless() {
    timeout 30 "$S" partition list paused 2>/dev/null | awk 'NR > 1 && $3 == "none"' | wc -l
}
asleep() {
    for p in "$PORT" $((PORT + 1)) $((PORT + 2)); do
        curl -s --max-time 5 "http://127.0.0.1:$p/metrics" |
            awk '/^sluice_raft_groups_asleep/ {printf "%d ", $2}'
    done
}
report() { echo "$1 leaderless $(leaderless), asleep per node $(asleep), load $(cut -d' ' -f1 /proc/loadavg)"; }
for i in $(seq 24); do
    sleep 5
    [ "$(leaderless)" -eq 0 ] && [ "$i" -ge 4 ] && break
done
report "before the pause:"
pid=$(cat "$SLUICE_HOME"/local/node-2/node.pid)
watch() {
    for i in $(seq $((WATCH / 5))); do
        sleep 5
        report "t+$((i * 5)) s:"
    done
}
if [ "${MODE:-pause}" = kill ]; then
    mapfile -d '' cmd <"/proc/$pid/cmdline"
    kill -KILL "$pid"
    echo "node 2 killed"
    watch
    nohup "${cmd[@]}" >/dev/null 2>&1 &
    echo "node 2 restarted"
    watch
    kill "$!" 2>/dev/null || true
else
    kill -STOP "$pid"
    sleep "$PAUSE"
    kill -CONT "$pid"
    echo "node 2 paused for $PAUSE s"
    watch
fi
