//! The Sluice node (SPU): serves produce, fetch and admin requests over QUIC,
//! runs this node's replica of the controller group and of its partitions.
//!
//! [`Node::start`] is the one function that wires everything: data directory,
//! Raft database, controller, partition replicas, TLS and the QUIC server.

mod admission;
mod audit_log;
mod audit_writer;
mod authz;
mod compressed;
mod config;
mod connectors;
mod consumers;
mod data_dir;
mod debug;
mod fsync_journal;
mod groups;
mod log_copy;
mod membership;
pub mod metrics;
mod node;
mod node_error;
mod offsets;
mod partition;
mod peers;
mod produce;
mod producers;
mod repair;
mod replicas;
mod sampler;
mod server;
mod services;
mod shared;
mod timeouts;
mod transforms;

pub use config::{
    NodeConfig, PeerAddr, QUIESCE_IDLE_MS_MIN, QUIESCE_PROBE_MS_MAX, QUIESCE_PROBE_MS_MIN,
    default_super_users,
};
pub use data_dir::{DataDir, DataDirError};
pub use membership::UNREGISTERED_MARKER;
pub use node::{Node, NodeError};
