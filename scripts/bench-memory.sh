#!/usr/bin/env bash
# Node memory, idle and under load: starts a 3-node local cluster, prints each
# node's RSS (with its anonymous and file-backed parts, from /proc/PID/status)
# 10 s after start, then again right after an RF=3 produce of 100,000 1 KiB
# records and a consume of them. Needs a release build (or SLUICE_BIN).
# Usage: scripts/bench-memory.sh [PORT]
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SLUICE_BIN:-./target/release/sluice}
PORT=${1:-19850}
SLUICE_HOME=$(mktemp -d)
export SLUICE_HOME
trap '$S cluster delete >/dev/null 2>&1 || true' EXIT
trap 'exit 130' INT TERM

rss() {
    for pidfile in "$SLUICE_HOME"/local/node-*/node.pid; do
        pid=$(cat "$pidfile")
        awk -v node="$(basename "$(dirname "$pidfile")")" '
            /^VmRSS/ {rss=$2} /^RssAnon/ {anon=$2} /^RssFile/ {file=$2}
            END {printf "  %s: RSS %.1f MB (anonymous %.1f, file-backed %.1f)\n", node, rss/1024, anon/1024, file/1024}
        ' "/proc/$pid/status"
    done
}

$S cluster start --local --spus 3 --port "$PORT" >/dev/null
sleep 10
echo "idle, 10 s after start:"
rss
$S bench produce --topic mem --replication 3 --records 100000 --producers 4 -O json >/dev/null
$S bench consume --topic mem -O json >/dev/null
echo "after producing and consuming 100,000 1 KiB records (RF=3):"
rss
