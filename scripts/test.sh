#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine: installs what the build
# needs (clang for bindgen, Debian's RocksDB to link against, the wasm32 target)
# and what the fault suite uses (nftables, iproute2), then builds and tests with
# the committed Cargo.lock.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v clang >/dev/null 2>&1 || need_apt+=(clang)
[ -e /usr/include/clang-c/Index.h ] || ls /usr/lib/llvm-*/include/clang-c/Index.h >/dev/null 2>&1 || need_apt+=(libclang-dev)
[ -e /usr/include/rocksdb/db.h ] || need_apt+=(librocksdb-dev)
[ -e /usr/include/snappy.h ] || need_apt+=(libsnappy-dev)
# The fault suite's partitions (network namespaces and nftables; root only).
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || need_apt+=(nftables)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || need_apt+=(iproute2)
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

# Dependency policy (deny.toml): licences, banned crates, sources.
command -v cargo-deny >/dev/null 2>&1 || cargo install cargo-deny --locked --version 0.20.2
cargo deny --offline check licenses bans sources
# Advisories need the RustSec database, fetched from GitHub, which these
# machines cannot reach: checked when a copy is present, said when not.
if [ -d "$HOME/.cargo/advisory-dbs" ]; then
  cargo deny --offline check advisories
else
  echo "cargo deny: advisories not checked (no RustSec database in ~/.cargo/advisory-dbs; see README.md)"
fi

# SmartModule ABI and decoders are fuzzed for SLUICE_FUZZ_SECS (default 1 s) per target.
cargo test --workspace --locked "$@"
