#!/usr/bin/env bash
# What idle partitions cost: starts a 3-node local cluster, creates one topic
# of PARTITIONS partitions at RF=3, writes one record to each partition (so
# every group has a leader that has committed an entry), waits SETTLE
# seconds, then samples each node's CPU time and RSS over SECONDS. Prints the
# whole cluster's CPU in cores, each node's RSS at the start and end of the
# window, and the UDP datagrams sent per second over it (`OutDatagrams` of
# /proc/net/snmp: the whole network namespace's, so other UDP traffic of
# this namespace counts too). Needs a release build (or SLUICE_BIN).
# PRELOAD=N first produces N 1 KiB records over the partitions (`sluice
# bench produce`), so the partitions idle after traffic, not after one record.
# Usage: [EXTRA=--no-quiesce] [PRELOAD=N] scripts/bench-idle.sh [PARTITIONS] [SECONDS] [SETTLE] [PORT]
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SLUICE_BIN:-./target/release/sluice}
PARTS=${1:-64}
SECS=${2:-60}
SETTLE=${3:-20}
PORT=${4:-19870}
SLUICE_HOME=$(mktemp -d)
export SLUICE_HOME
trap '$S cluster delete >/dev/null 2>&1 || true; rm -rf "$SLUICE_HOME"' EXIT
# Killed or interrupted, still stop the nodes: left running, an overloaded
# cluster logs warnings until its log bound (see README), for ever.
trap 'exit 130' INT TERM
HZ=$(getconf CLK_TCK)

pids() { for f in "$SLUICE_HOME"/local/node-*/node.pid; do echo "$(cat "$f")"; done; }
ticks() { # utime + stime of every node, summed
    local t=0
    for pid in $(pids); do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    done
    echo "$t"
}
udp_out() { awk '/^Udp:/ { n++; if (n == 2) print $5 }' /proc/net/snmp; }
rss() {
    for pid in $(pids); do awk '/^VmRSS/ {printf "%.1f ", $2/1024}' "/proc/$pid/status"; done
}

# Metrics off where the build has them: the sampler would add its own wakeups.
NO_METRICS=$($S cluster start --help | grep -q -- --no-metrics && echo --no-metrics || true)
# EXTRA: more `cluster start` flags, e.g. EXTRA=--no-quiesce for the baseline.
$S cluster start --local --spus 3 --port "$PORT" $NO_METRICS ${EXTRA:-} >/dev/null
$S topic create idle --partitions "$PARTS" --replication 3 >/dev/null
# A large topic answers its creation before every partition has elected a
# leader (the creation waits a bounded time); write once all have one.
for _ in $(seq 180); do
    leaderless=$($S partition list 2>/dev/null | awk 'NR > 1 && $3 == "none"' | wc -l)
    [ "$leaderless" -eq 0 ] && break
    echo "waiting for $leaderless partitions to elect a leader" >&2
    sleep 1
done
seq 0 $((PARTS - 1)) | xargs -P 8 -I{} sh -c "echo x | $S produce idle -p {} >/dev/null"
if [ "${PRELOAD:-0}" -gt 0 ]; then
    echo "producing $PRELOAD records first" >&2
    $S bench produce --topic idle --records "$PRELOAD" --producers 4 -O json >/dev/null
fi
echo "partitions: $PARTS x RF3 on 3 nodes; settling ${SETTLE} s" >&2
sleep "$SETTLE"
rss0=$(rss)
t0=$(ticks)
u0=$(udp_out)
s0=$(date +%s.%N)
sleep "$SECS"
t1=$(ticks)
u1=$(udp_out)
s1=$(date +%s.%N)
rss1=$(rss)
awk -v t="$((t1 - t0))" -v hz="$HZ" -v s0="$s0" -v s1="$s1" -v p="$PARTS" \
    -v r0="$rss0" -v r1="$rss1" -v u="$((u1 - u0))" 'BEGIN {
    secs = s1 - s0
    printf "partitions %d: cluster CPU %.4f cores over %.0f s; RSS MB per node %s-> %s; UDP datagrams sent %.0f/s\n",
        p, t / hz / secs, secs, r0, r1, u / secs
}'
