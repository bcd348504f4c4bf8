#!/usr/bin/env bash
# Produce throughput and server CPU per record as partitions grow, for one
# build or two side by side. Each round starts a fresh 3-node local cluster
# per build and runs `sluice bench produce` (1 KiB records, RF=3, 4
# producers) into a fresh topic of each partition count, reading the nodes'
# CPU ticks from /proc before and after. Builds and partition counts are
# interleaved round by round, so both builds see the same neighbours.
# Prints per build and partition count: median records/s, ack p50 and CPU
# microseconds per record, then ratios (each count against 1 partition; the
# new build against BASE_BIN).
# Usage: [SLUICE_BIN=new] [BASE_BIN=old] [BASE_EXTRA=flags] [EXTRA=flags] \
#            scripts/bench-scale.sh [ROUNDS] [RECORDS] [PARTITIONS...]
#        (defaults: 3 rounds, 100000 records, partitions 1 8 64)
# EXTRA and BASE_EXTRA are more `cluster start` flags for the new and the
# base build; BASE_EXTRA alone makes the base the same binary run with them
# (e.g. BASE_EXTRA=--no-quiesce). BENCH_EXTRA and BASE_BENCH_EXTRA are more
# `bench produce` flags the same way (BASE_BENCH_EXTRA alone: same binary).
# Each topic is created, given a leader per partition and left SETTLE seconds
# (default 5) before its run, so neither the creation nor its elections are
# counted.
# MODULES="a.wasm b.wasm" registers those SmartModules in each cluster before
# it is measured (a cluster with a module store, as most have).
set -euo pipefail
cd "$(dirname "$0")/.."
NEW=${SLUICE_BIN:-./target/release/sluice}
BASE=${BASE_BIN:-}
[ -z "$BASE" ] && [ -n "${BASE_EXTRA:-}${BASE_BENCH_EXTRA:-}" ] && BASE=$NEW
ROUNDS=${1:-3}
RECORDS=${2:-100000}
shift $(($# < 2 ? $# : 2))
PARTS=("${@:-1 8 64}")
read -r -a PARTS <<<"${PARTS[*]}"
PORT=${PORT:-19930}
HZ=$(getconf CLK_TCK)
OUT=$(mktemp)
WORK=$(mktemp -d)
current=""
stop() { [ -n "$current" ] && SLUICE_HOME=$WORK/$current "$current_bin" cluster delete >/dev/null 2>&1 || true; }
trap 'stop; rm -rf "$WORK"; rm -f "$OUT"' EXIT
trap 'exit 130' INT TERM

builds=(new)
[ -n "$BASE" ] && builds=(base new)
bin_of() { if [ "$1" = base ]; then echo "$BASE"; else echo "$NEW"; fi; }
extra_of() { if [ "$1" = base ]; then echo "${BASE_EXTRA:-}"; else echo "${EXTRA:-}"; fi; }
bench_extra_of() { if [ "$1" = base ]; then echo "${BASE_BENCH_EXTRA:-}"; else echo "${BENCH_EXTRA:-}"; fi; }
ticks() {
    local t=0
    for f in "$WORK/$current"/local/node-*/node.pid; do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$(cat "$f")/stat")))
    done
    echo "$t"
}

for round in $(seq 1 "$ROUNDS"); do
    for build in "${builds[@]}"; do
        current=$build-$round
        current_bin=$(bin_of "$build")
        export SLUICE_HOME=$WORK/$current
        # shellcheck disable=SC2046 # the extra flags are words
        "$current_bin" cluster start --local --spus 3 --port "$PORT" --no-metrics \
            $(extra_of "$build") >/dev/null
        for module in ${MODULES:-}; do
            "$current_bin" smart-module create "$(basename "$module" .wasm | tr _ -)" \
                --wasm-file "$module" >/dev/null
        done
        for p in "${PARTS[@]}"; do
            # The topic is made, elected and settled before the clock and
            # the CPU count start: what is measured is producing into it
            # (a 1,000-partition creation alone costs more CPU than the
            # 100,000 records; it was counted until 2026-12-05).
            "$current_bin" topic create "scale-$p" --partitions "$p" --replication 3 >/dev/null
            for _ in $(seq 180); do
                leaderless=$("$current_bin" partition list "scale-$p" 2>/dev/null |
                    awk 'NR > 1 && $3 == "none"' | wc -l)
                [ "$leaderless" -eq 0 ] && break
                sleep 1
            done
            sleep "${SETTLE:-5}"
            t0=$(ticks)
            # shellcheck disable=SC2046 # the extra flags are words
            json=$("$current_bin" bench produce --topic "scale-$p" --partitions "$p" \
                --replication 3 --producers 4 --records "$RECORDS" -O json \
                $(bench_extra_of "$build"))
            t1=$(ticks)
            python3 - "$build" "$p" "$((t1 - t0))" "$HZ" "$json" >>"$OUT" <<'PY'
import json, sys
build, parts, ticks, hz, report = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5])
cpu_us = ticks / hz * 1e6 / report["records"]
print(json.dumps({"build": build, "partitions": parts, "rps": report["records_per_second"],
                  "p50_ms": report["latency_us"]["p50"] / 1000, "cpu_us": cpu_us}))
PY
            tail -1 "$OUT" >&2
        done
        stop
        current=""
    done
done

python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = {}
for key in sorted({(r["build"], r["partitions"]) for r in rows}, key=lambda k: (k[0] != "base", k[1])):
    sel = [r for r in rows if (r["build"], r["partitions"]) == key]
    med[key] = {f: statistics.median(r[f] for r in sel) for f in ("rps", "p50_ms", "cpu_us")}
print("build  partitions  records/s  ack p50 ms  CPU us/record  rps vs 1 partition  CPU vs 1 partition")
for (build, p), m in med.items():
    one = med.get((build, 1))
    vs = lambda f: f"{m[f] / one[f]:.2f}" if one else "-"
    print(f"{build:5}  {p:10}  {m['rps']:9.0f}  {m['p50_ms']:10.1f}  {m['cpu_us']:13.1f}  {vs('rps'):>18}  {vs('cpu_us'):>18}")
if any(b == "base" for b, _ in med):
    print("new / base:")
    for (build, p), m in med.items():
        if build == "new" and ("base", p) in med:
            b = med[("base", p)]
            print(f"  {p} partitions: records/s {m['rps'] / b['rps']:.2f}, CPU/record {m['cpu_us'] / b['cpu_us']:.2f}, ack p50 {m['p50_ms'] / b['p50_ms']:.2f}")
PY
