#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine: installs what the build
# needs (clang for bindgen, Debian's RocksDB to link against, the wasm32 target)
# and what the fault suite uses (nftables, iptables, iproute2, faketime), then builds and tests with
# the committed Cargo.lock.
set -euo pipefail
cd "$(dirname "$0")/.."

# RocksDB aborts a test process (an assertion, not an error) when a write
# fails for want of space; say so up front instead of failing obscurely.
# Its clusters and fault runs write a few GB; 5 GB free is the bar we ask.
for dir in "${TMPDIR:-/tmp}" "${CARGO_TARGET_DIR:-target}"; do
  mkdir -p "$dir"
  free_kb=$(df -Pk "$dir" | awk 'NR == 2 {print $4}')
  if [ "$free_kb" -lt $((5 * 1024 * 1024)) ]; then
    echo "error: only $((free_kb / 1024)) MB free in $dir; the test command asks for 5 GB: free some space (leftover local clusters in \$TMPDIR are the usual cause)" >&2
    exit 1
  fi
done

need_apt=()
# jemalloc (the `sluice` binary's allocator) is built from source by its crate.
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v clang >/dev/null 2>&1 || need_apt+=(clang)
[ -e /usr/include/clang-c/Index.h ] || ls /usr/lib/llvm-*/include/clang-c/Index.h >/dev/null 2>&1 || need_apt+=(libclang-dev)
[ -e /usr/include/rocksdb/db.h ] || need_apt+=(librocksdb-dev)
[ -e /usr/include/snappy.h ] || need_apt+=(libsnappy-dev)
# The fault suite's partitions (network namespaces and nftables; root only).
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || need_apt+=(nftables)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || need_apt+=(iproute2)
# The fault suite's late packets (an iptables-legacy NFQUEUE rule; root only).
command -v iptables-legacy >/dev/null 2>&1 || [ -x /usr/sbin/iptables-legacy ] || need_apt+=(iptables)
# The fault suite's wrong wall clocks (libfaketime, preloaded into the nodes).
ls /usr/lib/*/faketime/libfaketimeMT.so.1 >/dev/null 2>&1 || ls /usr/lib/faketime/libfaketimeMT.so.1 >/dev/null 2>&1 || need_apt+=(faketime)
# README's sql sink walkthrough (its test runs it) reads the table with sqlite3.
command -v sqlite3 >/dev/null 2>&1 || need_apt+=(sqlite3)
# The sql sink's PostgreSQL tests and README walkthrough start a throwaway
# server (scripts/postgres-scratch.sh) and read it with psql.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
# README's connector walkthrough serves its endpoint with Python's http.server.
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || rustup target add wasm32-unknown-unknown

# Formatting and lints are gates, not advice.
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The API docs build without a warning: no broken or private links.
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

# Dependency policy (deny.toml): licences, banned crates, sources.
command -v cargo-deny >/dev/null 2>&1 || cargo install cargo-deny --locked --version 0.20.2
# cargo deny reads every platform's dependencies: fetch them (the registry is reachable).
cargo fetch --locked
cargo deny --offline check licenses bans sources
# Advisories need the RustSec database, a git repository on GitHub. Fetch it
# where GitHub is reachable; where it is not (these build machines), use the
# copy in ~/.cargo/advisory-dbs and say how old it is; with neither, say so.
advisory_db="$HOME/.cargo/advisory-dbs"
timeout 120 cargo deny fetch db >/dev/null 2>&1 || true
if [ -d "$advisory_db" ] && ls "$advisory_db"/*/.git >/dev/null 2>&1; then
  for db in "$advisory_db"/*/; do
    echo "cargo deny: RustSec database $(basename "$db") as of $(git -C "$db" log -1 --format=%cs)"
  done
  cargo deny --offline check advisories
else
  echo "cargo deny: advisories NOT checked (no RustSec database in $advisory_db; see README.md)"
fi

# SmartModule ABI and decoders are fuzzed for SLUICE_FUZZ_SECS (default 1 s) per target.
cargo test --workspace --locked "$@"
