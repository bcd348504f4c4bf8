#!/usr/bin/env bash
# Runs Fluvio's own CLI smoke tests (the bats files of a Fluvio checkout)
# against Sluice: `sluice` installed as `fluvio`, a local 2-node cluster, and
# modules built by our SDK standing in for the ones Fluvio's smdk builds
# (same behaviour, see examples/smartmodules). Nothing of Fluvio's is copied
# into this repository: the tests are read from the checkout given.
#
# Usage: [SLUICE_BIN=target/debug/sluice] scripts/fluvio-bats.sh FLUVIO_CHECKOUT [BATS_FILE...]
#   FLUVIO_CHECKOUT: a Fluvio git checkout, or a bare clone (its HEAD is read).
#   BATS_FILE: paths under tests/cli/ (default: fluvio_smoke_tests,
#   partition_test and fluvio_read_only, the suites issue 20 counts).
# Prints every test's outcome (TAP) and a count of passed, failed and skipped.
# Needs bats, bats-support and bats-assert (Debian packages; installed when
# missing and apt-get is available), jq and the wasm32-unknown-unknown target.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SRC=${1:?usage: scripts/fluvio-bats.sh FLUVIO_CHECKOUT [BATS_FILE...]}
shift
SLUICE_BIN=$(realpath "${SLUICE_BIN:-target/debug/sluice}")
PORT=${PORT:-19480}

need=()
command -v bats >/dev/null || need+=(bats)
[ -d /usr/lib/bats/bats-support ] || need+=(bats-support)
[ -d /usr/lib/bats/bats-assert ] || need+=(bats-assert)
command -v jq >/dev/null || need+=(jq)
command -v expect >/dev/null || need+=(expect)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}" >&2
    apt-get install -y "${need[@]}" >/dev/null
fi

WORK=$(mktemp -d)
export SLUICE_HOME=$WORK/home
cleanup() {
    "$SLUICE_BIN" cluster delete --force >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The tests, as the checkout's HEAD has them (a bare clone has no work tree).
if git -C "$SRC" rev-parse --is-bare-repository 2>/dev/null | grep -q true \
    || [ ! -d "$SRC/tests/cli" ]; then
    git -C "$SRC" archive HEAD tests/cli | tar -x -C "$WORK"
else
    mkdir -p "$WORK/tests"
    cp -r "$SRC/tests/cli" "$WORK/tests/"
fi
echo "Fluvio tests from $(git -C "$SRC" rev-parse --short HEAD)" >&2
ln -s /usr/lib/bats/bats-support "$WORK/tests/cli/test_helper/bats-support"
ln -s /usr/lib/bats/bats-assert "$WORK/tests/cli/test_helper/bats-assert"

# Stand-ins for the modules the tests load, where they look for them.
(cd examples/smartmodules && cargo build --release --target wasm32-unknown-unknown -q)
built=$ROOT/examples/smartmodules/target/wasm32-unknown-unknown/release
for dir in wasm32-wasip1/release-lto wasm32-unknown-unknown/release; do
    out=$WORK/smartmodule/examples/target/$dir
    mkdir -p "$out"
    cp "$built/uppercase_map.wasm" "$out/fluvio_smartmodule_map.wasm"
    cp "$built/hello_filter.wasm" "$out/fluvio_smartmodule_filter.wasm"
    cp "$built/param_filter.wasm" "$out/fluvio_smartmodule_filter_param.wasm"
    cp "$built/even_filter_map.wasm" "$out/fluvio_smartmodule_filter_map.wasm"
    cp "$built/object_values.wasm" "$out/fluvio_smartmodule_array_map_object.wasm"
    cp "$built/concat_aggregate.wasm" "$out/fluvio_smartmodule_aggregate.wasm"
    cp "$built/sum_aggregate.wasm" "$out/fluvio_wasm_aggregate_sum.wasm"
done

mkdir -p "$WORK/bin"
ln -s "$SLUICE_BIN" "$WORK/bin/fluvio"
export FLUVIO_BIN=$WORK/bin/fluvio
export PATH=$WORK/bin:$PATH
"$FLUVIO_BIN" cluster start --local --spus 2 --port "$PORT" >&2

files=("$@")
read_only=false
if [ ${#files[@]} -eq 0 ]; then
    files=(fluvio_smoke_tests partition_test)
    read_only=true
fi
cd "$WORK"
# Files in name order, except that those under a `non-concurrent` directory
# (they stop and delete clusters) run last, local-resume before
# cluster-delete, as Fluvio's Makefile runs them.
mapfile -t args < <(
    for f in "${files[@]}"; do find "tests/cli/$f" -name '*.bats'; done \
        | sort | awk '/non-concurrent/ { last[n++] = $0; next } { print }
            END { for (i = n - 1; i >= 0; i--) print last[i] }'
)
# The partition test's matrix values in Fluvio's CI, for 2 SPUs.
export PARTITIONS=${PARTITIONS:-2} REPLICATION=${REPLICATION:-2}
set +e
bats --tap "${args[@]}" | tee "$WORK/tap" | sed 's/^/  /'
if $read_only; then
    # As Fluvio's CI runs them: on a cluster started read-only from a
    # metadata file (its topics exist; admin changes are refused).
    git -C "$SRC" show HEAD:crates/fluvio-cluster/test-data/metadata.json >"$WORK/metadata.json"
    "$FLUVIO_BIN" cluster delete --force >/dev/null 2>&1
    "$FLUVIO_BIN" cluster start --local --port "$PORT" --read-only "$WORK/metadata.json" >&2
    bats --tap tests/cli/fluvio_read_only | tee -a "$WORK/tap" | sed 's/^/  /'
fi
set -e
ok=$(grep -c '^ok .*' "$WORK/tap" | tr -d ' ' || true)
skipped=$(grep -c '^ok .* # skip' "$WORK/tap" || true)
failed=$(grep -c '^not ok' "$WORK/tap" || true)
echo "passed $((ok - skipped)), failed $failed, skipped $skipped (of $((ok + failed)))"
