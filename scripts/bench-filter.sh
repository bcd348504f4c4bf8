#!/usr/bin/env bash
# A 10%-selective SmartModule filter against a full read of the same records
# (issue 6): 100,000 records of 1 KiB, one in ten containing an `a`, in an RF=3
# partition of a 3-node local cluster (release build); `sluice bench consume`
# from the leader, in full and through `hello-filter`, three times each,
# interleaved. Prints each run and the ratio of the median times.
# Usage: [SLUICE_BIN=path/to/sluice] scripts/bench-filter.sh [PORT]
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SLUICE_BIN:-./target/release/sluice}
PORT=${1:-19880}
cargo build --release --quiet --target wasm32-unknown-unknown \
  --manifest-path examples/smartmodules/Cargo.toml -p hello-filter
WASM=examples/smartmodules/target/wasm32-unknown-unknown/release/hello_filter.wasm
SLUICE_HOME=$(mktemp -d)
export SLUICE_HOME
trap '$S cluster delete >/dev/null 2>&1 || true; rm -rf "$SLUICE_HOME"' EXIT
trap 'exit 130' INT TERM
$S cluster start --local --spus 3 --port "$PORT" >/dev/null
$S topic create filt -r 3 >/dev/null
python3 - "$SLUICE_HOME/records.txt" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(100_000):
        body = ("a" if i % 10 == 0 else "b") * 1023
        f.write(body + "\n")
PY
$S produce filt -f "$SLUICE_HOME/records.txt" >/dev/null
$S smartmodule create hello-filter --wasm-file "$WASM" >/dev/null
for i in 1 2 3; do
  $S bench consume --topic filt -O json | python3 -c 'import json,sys; d=json.load(sys.stdin); print("full", d["records"], d["seconds"])'
  $S bench consume --topic filt --filter hello-filter -O json | python3 -c 'import json,sys; d=json.load(sys.stdin); print("filter", d["records"], d["seconds"])'
done | tee "$SLUICE_HOME/runs.txt"
python3 - "$SLUICE_HOME/runs.txt" <<'PY'
import statistics, sys
runs = [l.split() for l in open(sys.argv[1])]
full = statistics.median(float(r[2]) for r in runs if r[0] == "full")
filt = statistics.median(float(r[2]) for r in runs if r[0] == "filter")
print(f"median full {full:.3f} s, filtered {filt:.3f} s, ratio {filt / full:.2f}")
PY
