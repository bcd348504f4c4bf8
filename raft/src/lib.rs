//! Sluice's only door to openraft.
//!
//! Every replicated thing in Sluice (the controller's metadata, each partition's
//! records) is a [`Group`]: an openraft instance whose log and vote live in the
//! node's one RocksDB database ([`LogDb`]) and whose state machine is a
//! [`ReplicatedState`] implemented elsewhere (the controller crate, the SPU).
//! Commands and responses cross this boundary as opaque bytes, so no other
//! crate sees an openraft type.
//!
//! Durability contract: a write is acknowledged after its entry is fsynced in
//! RocksDB's WAL and applied. State machines need not fsync on apply: after a
//! crash openraft re-applies every entry after the last *synced* snapshot
//! point, and [`ReplicatedState::apply`] skips entries it already holds. The
//! log prefix is purged only after [`ReplicatedState::sync`] succeeded.

mod coalesce;
mod error;
mod group;
mod group_config;
mod log_store;
mod network;
mod quiesce;
mod runtime;
mod state_machine;
pub mod timeouts;

pub use coalesce::{BATCH_RPCS_MAX, Coalescing, serve_batch};
pub use error::{RaftError, WriteError};
pub use group::{Group, GroupStatus};
pub use group_config::GroupConfig;
pub use log_store::{LogDb, LogDbOptions, SyncObserver};
pub use network::{
    APPEND_STREAM_IN_FLIGHT_MAX, AppendStream, AppendStreamFuture, CallError, CallFuture,
    RaftTransport,
};
pub use quiesce::{QuiesceConfig, Quiescence};
pub use state_machine::{ReplicatedState, SyncJob};

/// Identifier of a Raft group within a node's [`LogDb`]. The controller is
/// group 0; partitions use `(topic_id << 32) | partition`.
pub type GroupId = u64;
/// Identifier of a node, the same as `sluice_proto::NodeId`.
pub type NodeId = u64;

/// The group id of the controller.
pub const CONTROLLER_GROUP: GroupId = 0;

/// Histogram of WAL fsync durations in seconds (its `_count` is the number
/// of fsyncs), recorded through the `metrics` facade: a no-op unless the
/// node installed an exporter (`sluice_spu::metrics` lists every name).
pub const WAL_FSYNC_SECONDS: &str = "sluice_wal_fsync_seconds";
/// Histogram of a replica's Raft log appends, in seconds from the start of
/// the write to the WAL fsync that made it durable: the write itself, any
/// wait for a running fsync (they never run beside a write), and the wait
/// for the syncer thread's next fsync. Its excess over [`WAL_FSYNC_SECONDS`]
/// is the queueing in front of the disk.
pub const RAFT_LOG_APPEND_SECONDS: &str = "sluice_raft_log_append_seconds";
/// Histogram of writes proposed on this node as leader, in seconds from the
/// proposal to the state machine's answer (the majority's fsyncs, the
/// replication round trips and the apply included).
pub const RAFT_WRITE_SECONDS: &str = "sluice_raft_write_seconds";
/// Counter of writes that found their leader's lease expired (its group had
/// slept, or lost touch with a majority for an election timeout) and sent a
/// heartbeat round at once to renew it (`Group::renew_lease`).
pub const RAFT_LEASE_RENEWALS: &str = "sluice_raft_lease_renewals_total";
/// Counter of sleeping groups woken on this node, by why (label `why`, one
/// of a fixed set of phrases): what keeps an idle cluster from sleeping.
pub const RAFT_GROUP_WAKES: &str = "sluice_raft_group_wakes_total";
/// Histogram of the state machine applying one committed entry, in seconds.
pub const RAFT_APPLY_SECONDS: &str = "sluice_raft_apply_seconds";

/// The group id of a partition of the topic with `topic_id` (never 0).
pub fn partition_group(topic_id: u32, partition: u32) -> GroupId {
    ((topic_id as u64) << 32) | partition as u64
}

/// An opaque command or response: encoded and decoded by the state machine's
/// owner, carried as-is through the Raft log. Shared, so retrying a proposal
/// or keeping an entry in memory never copies a batch; encoded as one byte
/// string, not byte by byte.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bytes(pub std::sync::Arc<Vec<u8>>);

impl serde::Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let buf = serde_bytes::ByteBuf::deserialize(deserializer)?;
        Ok(Bytes(std::sync::Arc::new(buf.into_vec())))
    }
}

impl std::fmt::Display for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes", self.0.len())
    }
}

openraft::declare_raft_types!(
    /// The one openraft type configuration of Sluice.
    pub TypeConfig:
        D = Bytes,
        R = Bytes,
        AsyncRuntime = runtime::SluiceRuntime,
);

#[cfg(test)]
mod deposed_stream_tests;
#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod quiesce_tests;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
mod tests;
