#!/usr/bin/env bash
# Sluice next to NATS JetStream on the same machine: a 3-node cluster of each
# on loopback, the same workloads interleaved round by round (so both see the
# same neighbours), medians and Sluice/JetStream ratios at the end.
#
# Workloads: produce 1 KiB records, RF 3, 4 producers, to 1, 8 and 64
# partitions (JetStream: as many streams); then consume one partition. Each
# round uses fresh topics/streams, deleted afterwards.
#
# JetStream 2.9 acknowledges a publish once a majority holds it in memory and
# fsyncs every 2 minutes; Sluice acknowledges after a majority's fsync. The
# figures compare the products as they ship, not equal durability.
#
# Needs: a release build of sluice (SLUICE_BIN, default target/release/sluice),
# nats-server (installed from Debian when missing and run as root), cargo (to
# build bench-peers/, the JetStream client). Usage:
#   scripts/bench-peers.sh [ROUNDS] [RECORDS]      (defaults 3, 100000)
# Raw results, one JSON object per line, go to $OUT (default a temp file).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
RECORDS=${2:-100000}
S=${SLUICE_BIN:-./target/release/sluice}
PORT=${SLUICE_PORT:-19950}
NATS_PORT=${NATS_PORT:-14222}
OUT=${OUT:-$(mktemp --suffix=.jsonl)}
[ -x "$S" ] || { echo "no sluice binary at $S: cargo build --release -p sluice, or set SLUICE_BIN" >&2; exit 1; }

if ! command -v nats-server >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        echo "installing nats-server (Debian)..." >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q nats-server >/dev/null
    else
        echo "nats-server is missing: sudo apt-get install nats-server" >&2
        exit 1
    fi
fi
echo "building the JetStream client (bench-peers/)..." >&2
cargo build -q --release --manifest-path bench-peers/Cargo.toml
JS="${CARGO_TARGET_DIR:-bench-peers/target}/release/jetstream-bench"

WORK=$(mktemp -d)
SLUICE_HOME=$WORK/sluice
export SLUICE_HOME
NATS_PIDS=()
cleanup() {
    "$S" cluster delete >/dev/null 2>&1 || true
    for pid in "${NATS_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A 3-server JetStream cluster on 127.0.0.1.
for i in 0 1 2; do
    routes=""
    for j in 0 1 2; do
        [ "$i" = "$j" ] || routes="$routes nats://127.0.0.1:$((NATS_PORT + 1000 + j))"
    done
    mkdir -p "$WORK/nats-$i"
    cat > "$WORK/nats-$i.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:$((NATS_PORT + i))
jetstream { store_dir: "$WORK/nats-$i" }
cluster {
  name: bench
  listen: 127.0.0.1:$((NATS_PORT + 1000 + i))
  routes: [$(echo $routes | sed 's/ /, /g')]
}
CONF
    nats-server -c "$WORK/nats-$i.conf" >"$WORK/nats-$i.log" 2>&1 &
    NATS_PIDS+=($!)
done
"$S" cluster start --local --spus 3 --port "$PORT" >/dev/null

# JetStream needs its meta leader before the first stream can be made.
for _ in $(seq 1 60); do
    "$JS" --url "nats://127.0.0.1:$NATS_PORT" produce --topic warmup --records 1 --producers 1 >/dev/null 2>&1 && break
    sleep 1
done
"$JS" --url "nats://127.0.0.1:$NATS_PORT" delete --topic warmup >/dev/null

run() { # system workload round command...
    local system=$1 workload=$2 round=$3
    shift 3
    local json
    json=$("$@" | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)))')
    echo "{\"system\": \"$system\", \"workload\": \"$workload\", \"round\": $round, \"result\": $json}" >>"$OUT"
    echo "  $system $workload round $round: $(echo "$json" | python3 -c '
import json, sys
r = json.load(sys.stdin)
l = r["latency_us"]
print("%.0f records/s, p50 %.2f ms, p99 %.2f ms" % (r["records_per_second"], l["p50"] / 1000, l["p99"] / 1000))')" >&2
}

for round in $(seq 1 "$ROUNDS"); do
    for parts in 1 8 64; do
        t="p$parts-r$round"
        run sluice "produce-$parts" "$round" "$S" bench produce --topic "$t" --partitions "$parts" \
            --replication 3 --records "$RECORDS" --producers 4 -O json
        run jetstream "produce-$parts" "$round" "$JS" --url "nats://127.0.0.1:$NATS_PORT" produce \
            --topic "$t" --partitions "$parts" --replication 3 --records "$RECORDS" --producers 4
        if [ "$parts" = 1 ]; then
            run sluice consume "$round" "$S" bench consume --topic "$t" -O json
            run jetstream consume "$round" "$JS" --url "nats://127.0.0.1:$NATS_PORT" consume --topic "$t"
        fi
        "$S" topic delete "$t" >/dev/null
        "$JS" --url "nats://127.0.0.1:$NATS_PORT" delete --topic "$t" --partitions "$parts"
    done
done

python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"{'workload':<12} {'sluice rec/s':>13} {'jetstream':>10} {'ratio':>6}   {'p50 ms s/js':>12}   {'p99 ms s/js':>14}")
for w in dict.fromkeys(r["workload"] for r in rows):
    med = lambda sysname, f: statistics.median(f(r["result"]) for r in rows if r["workload"] == w and r["system"] == sysname)
    rate = lambda r: r["records_per_second"]
    p50 = lambda r: r["latency_us"]["p50"] / 1000
    p99 = lambda r: r["latency_us"]["p99"] / 1000
    s, j = med("sluice", rate), med("jetstream", rate)
    if w == "consume":
        # Latency means a wait per batch on one side and per message on the other.
        print(f"{w:<12} {s:>13.0f} {j:>10.0f} {s / j:>6.2f}")
        continue
    print(f"{w:<12} {s:>13.0f} {j:>10.0f} {s / j:>6.2f}   {med('sluice', p50):>5.2f}/{med('jetstream', p50):<6.2f}   {med('sluice', p99):>6.2f}/{med('jetstream', p99):<7.2f}")
print(f"(medians of {max(r['round'] for r in rows)} interleaved rounds; raw results in {sys.argv[1]})")
PY
