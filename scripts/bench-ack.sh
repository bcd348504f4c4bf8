#!/usr/bin/env bash
# Ack latency at a steady rate next to what the disk itself does in the same
# minutes (issue 15: "ack p99 <= 3 ms at 1,000 records/s with fsync, and its
# variance explained"). Each round: a fresh 3-node local cluster, a probe of
# the disk under it (appends of 1 KiB each followed by fdatasync, one a
# millisecond, on the filesystem that holds the nodes' data), then
# `sluice bench produce --rate RATE` into an RF=3 partition, then the nodes'
# own histograms, stage by stage: the WAL fsyncs of every node; on the
# leader, its own Raft log appends (from the write to the fsync that made it
# durable: the fsync plus the queueing in front of it), append RPCs to followers (their write and fsync and both QUIC
# hops), the Raft write (proposal to applied), the apply itself and the
# produce request (from its stream's opening to the answer written: reading
# it, checks, waiting for the producer's previous batch, the Raft write);
# the rest of the ack is the client and the two hops to it.
# An acknowledged record needs an fsync on two of the three nodes, and here
# all three share one disk, so its stalls reach every node at once: the
# probe's tail is a floor under the ack's tail that no code of ours moves.
# Prints one row per round (milliseconds). Run with TMPDIR on a tmpfs
# (TMPDIR=/dev/shm) to see the same with fsyncs that cost nothing.
# START_EXTRA: more `cluster start` flags (`--no-append-streams` for the
# baseline of pipelined replication); BENCH_EXTRA: more `bench produce` flags.
# Usage: [SLUICE_BIN=path/to/sluice] scripts/bench-ack.sh [ROUNDS] [RECORDS] [RATE]
#        (defaults: 3 rounds, 10000 records, 1000 records/s)
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SLUICE_BIN:-./target/release/sluice}
ROUNDS=${1:-3}
RECORDS=${2:-10000}
RATE=${3:-1000}
PORT=${PORT:-19960}
SLUICE_HOME=$(mktemp -d)
export SLUICE_HOME
trap '$S cluster delete >/dev/null 2>&1 || true; rm -rf "$SLUICE_HOME"' EXIT
trap 'exit 130' INT TERM

probe_disk() {
    python3 - "$SLUICE_HOME/probe" <<'PY'
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
lat = []
for _ in range(2000):
    os.write(fd, b"x" * 1024)
    t = time.perf_counter()
    os.fdatasync(fd)
    lat.append((time.perf_counter() - t) * 1000)
    time.sleep(0.001)
os.close(fd)
os.unlink(sys.argv[1])
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(f"{q(0.5):.2f} {q(0.99):.2f} {q(0.999):.2f}")
PY
}

# The quantiles of one histogram: the largest of the nodes' (`max`, for
# what every node does, as WAL fsyncs), those of the node that recorded
# it most (`busiest`: the partition's leader; another node's one write for
# the audit trail would otherwise stand in for its p50), or those of the
# node that proposed the most writes (`leader`, for what every node records
# about as often, as log appends).
node_quantiles() {
    local how=$1 name=$2
    shift 2
    for url in "$@"; do curl -s "$url"; echo "#node"; done | python3 -c '
import re, sys
how, name = sys.argv[1], sys.argv[2]
nodes, cur = [], {"count": 0, "writes": 0, "q": {}}
for line in sys.stdin:
    if line.startswith("#node"):
        nodes.append(cur)
        cur = {"count": 0, "writes": 0, "q": {}}
        continue
    m = re.match(r"sluice_raft_write_seconds_count(\{[^}]*\})? (\S+)", line)
    if m:
        cur["writes"] += float(m.group(2))
    m = re.match(name + r"\{.*quantile=\"([0-9.]+)\"\} (\S+)", line)
    if m:
        q, v = m.group(1), float(m.group(2)) * 1000
        cur["q"][q] = max(cur["q"].get(q, 0.0), v)
    m = re.match(name + r"_count(\{[^}]*\})? (\S+)", line)
    if m:
        cur["count"] += float(m.group(2))
if how in ("busiest", "leader"):
    key = "count" if how == "busiest" else "writes"
    best = max(nodes, key=lambda n: n[key])["q"] if nodes else {}
else:
    best = {}
    for n in nodes:
        for q, v in n["q"].items():
            best[q] = max(best.get(q, 0.0), v)
print(" ".join("%.2f" % best.get(q, float("nan")) for q in ("0.5", "0.99")))
' "$how" "$name"
}

printf '%-6s %-26s %-18s %-18s %-18s %-18s %-18s %-18s %-24s\n' round "disk fdatasync p50/p99/p999" \
    "node WAL fsync p50/p99" "log append p50/p99" "append RPC p50/p99" "leader write p50/p99" \
    "apply p50/p99" "produce req p50/p99" "ack p50/p99/p999/max"
for round in $(seq 1 "$ROUNDS"); do
    out=$($S cluster start --local --spus 3 --port "$PORT" ${START_EXTRA:-})
    read -r -a urls <<<"$(echo "$out" | sed -n 's/^Metrics (Prometheus): //p')"
    $S topic create lat --replication 3 >/dev/null
    for _ in $(seq 60); do
        $S partition list lat 2>/dev/null | awk 'NR > 1 && $3 == "none" {f = 1} END {exit f}' && break
        sleep 1
    done
    disk=$(probe_disk)
    ack=$($S bench produce --topic lat --replication 3 --producers 1 --records "$RECORDS" \
        --rate "$RATE" ${BENCH_EXTRA:-} -O json | python3 -c '
import json, sys
l = json.load(sys.stdin)["latency_us"]
print(" ".join(f"{l[k] / 1000:.2f}" for k in ("p50", "p99", "p999", "max")))')
    wal=$(node_quantiles max sluice_wal_fsync_seconds "${urls[@]}")
    write=$(node_quantiles busiest sluice_raft_write_seconds "${urls[@]}")
    local_append=$(node_quantiles leader sluice_raft_log_append_seconds "${urls[@]}")
    append=$(node_quantiles leader 'sluice_raft_rpc_seconds(?=\{[^}]*kind="append_entries")' "${urls[@]}")
    apply=$(node_quantiles busiest sluice_raft_apply_seconds "${urls[@]}")
    produce=$(node_quantiles busiest 'sluice_request_seconds(?=\{[^}]*kind="produce")' "${urls[@]}")
    printf '%-6s %-26s %-18s %-18s %-18s %-18s %-18s %-18s %-24s\n' "$round" "${disk// //}" "${wal// //}" \
        "${local_append// //}" "${append// //}" "${write// //}" "${apply// //}" "${produce// //}" "${ack// //}"
    $S cluster delete >/dev/null
done
