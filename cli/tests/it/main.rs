//! End-to-end tests: real `sluice` processes (CLI and node) on 127.0.0.1,
//! talking QUIC. Each test gets its own SLUICE_HOME and port.

mod bad_input;
mod harness;
mod replication;
mod single_node;
mod smartmodules;
