//! End-to-end tests: real `sluice` processes (CLI and node) on 127.0.0.1,
//! talking QUIC. Each test gets its own SLUICE_HOME and port.

mod bad_input;
mod client_examples;
mod compression;
mod connectors;
mod consumers;
mod derived;
mod disk_full;
mod everyday;
mod harness;
mod headers;
mod http_stream;
mod idempotence;
mod limits;
mod membership;
mod metrics;
mod multihost;
mod pipelining;
mod postgres;
mod readme;
mod repair;
mod replication;
mod security;
mod single_node;
mod smartmodule_dev;
mod smartmodules;
mod system_topics;
mod tidy;

/// Builds the example SmartModules once per run (shared with the wasm crate's tests).
#[path = "../../../wasm/tests/it/build.rs"]
#[allow(dead_code)]
mod wasm_build;
