#!/usr/bin/env bash
# A 10%-selective SmartModule filter against a full read of the same records
# (issue 6): 100,000 records of 1 KiB in an RF=3 partition of a 3-node local
# cluster (release build); `sluice bench consume` from the leader, in full and
# through the module, three times each, interleaved. Prints each run and the
# ratio of the median times. MODULE picks the module and its records:
#   hello-filter (default): one record in ten contains an `a`, which the
#     module looks for after checking the value is UTF-8;
#   log-level-filter: JSON log lines, one in ten of level `error`; the module
#     parses every line in full (the filter that does real work, issue 15).
# Usage: [SLUICE_BIN=path/to/sluice] [MODULE=name] scripts/bench-filter.sh [PORT]
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SLUICE_BIN:-./target/release/sluice}
PORT=${1:-19880}
MODULE=${MODULE:-hello-filter}
case "$MODULE" in
  hello-filter|log-level-filter) ;;
  *) echo "MODULE must be hello-filter or log-level-filter, not '$MODULE'" >&2; exit 2 ;;
esac
cargo build --release --quiet --target wasm32-unknown-unknown \
  --manifest-path examples/smartmodules/Cargo.toml -p "$MODULE"
WASM=examples/smartmodules/target/wasm32-unknown-unknown/release/${MODULE//-/_}.wasm
SLUICE_HOME=$(mktemp -d)
export SLUICE_HOME
trap '$S cluster delete >/dev/null 2>&1 || true; rm -rf "$SLUICE_HOME"' EXIT
trap 'exit 130' INT TERM
$S cluster start --local --spus 3 --port "$PORT" >/dev/null
$S topic create filt -r 3 >/dev/null
python3 - "$SLUICE_HOME/records.txt" "$MODULE" <<'PY'
import json, sys
path, module = sys.argv[1], sys.argv[2]
with open(path, "w") as f:
    for i in range(100_000):
        if module == "hello-filter":
            body = ("a" if i % 10 == 0 else "b") * 1023
        else:
            line = {
                "ts": 1_765_000_000_000 + i,
                "level": "error" if i % 10 == 0 else ("warn" if i % 10 == 5 else "info"),
                "service": "checkout",
                "ctx": {"user": f"u-{i % 977}", "path": "/api/v1/cart", "latency_ms": i % 250,
                        "tags": ["eu-west", "canary" if i % 7 == 0 else "stable"]},
                "msg": "",
            }
            pad = 1023 - len(json.dumps(line, separators=(",", ":")))
            line["msg"] = ("request handled " * 64)[:pad]
            body = json.dumps(line, separators=(",", ":"))
            assert len(body) == 1023, len(body)
        f.write(body + "\n")
PY
$S produce filt -f "$SLUICE_HOME/records.txt" >/dev/null
$S smartmodule create "$MODULE" --wasm-file "$WASM" >/dev/null
for i in 1 2 3; do
  $S bench consume --topic filt -O json | python3 -c 'import json,sys; d=json.load(sys.stdin); print("full", d["records"], d["seconds"])'
  $S bench consume --topic filt --filter "$MODULE" -O json | python3 -c 'import json,sys; d=json.load(sys.stdin); print("filter", d["records"], d["seconds"])'
done | tee "$SLUICE_HOME/runs.txt"
python3 - "$SLUICE_HOME/runs.txt" <<'PY'
import statistics, sys
runs = [l.split() for l in open(sys.argv[1])]
full = statistics.median(float(r[2]) for r in runs if r[0] == "full")
filt = statistics.median(float(r[2]) for r in runs if r[0] == "filter")
print(f"median full {full:.3f} s, filtered {filt:.3f} s, ratio {filt / full:.2f}")
PY
