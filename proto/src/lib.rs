//! Wire types of Sluice: identifiers, records, requests and responses, error
//! codes, limits, and the one codec that turns them into bytes.
//!
//! Everything that crosses a process boundary is defined here and nowhere
//! else, so a protocol change is one diff. This crate depends on nothing heavy
//! (serde and thiserror; the binary encoding is its own, [`encoding`]): the client crate, the SDK and the server all
//! share it without pulling each other in.

pub mod acl;
pub mod change;
pub mod codec;
pub mod compression;
pub mod connector;
pub mod consumer_groups;
pub mod encoding;
pub mod error;
pub mod headers;
pub mod limits;
pub mod messages;
pub mod raft;
pub mod record;
pub mod smartmodule_kind;
pub mod topic_settings;

pub use acl::{ANONYMOUS_PRINCIPAL, AclEntry, Operation, ResourceKind, ResourcePattern};
pub use change::{MetadataChange, RequestId, new_request_id};
pub use codec::{CodecError, PROTOCOL_VERSION};
pub use compression::{Compression, TopicCompression};
pub use connector::{
    ConnectorInfo, ConnectorRecord, ConnectorRuntime, ConnectorSpec, ConnectorTally,
};
pub use consumer_groups::{
    AssignmentStrategy, ConsumerOffset, GroupAssignment, GroupHeartbeat, LedPartitionOffsets,
    OffsetCommit,
};
pub use error::WireError;
pub use headers::{HeadersRef, RecordHeader};
pub use messages::*;
pub use raft::{RaftRpc, RaftRpcKind};
pub use record::{ConsumerRecord, ConsumerRecordRef, Record, now_ms};
pub use smartmodule_kind::SmartModuleKind;
pub use topic_settings::{KeyHash, TopicSettings, TopicSettingsV1};

/// Identifier of a node (SPU) in a cluster.
pub type NodeId = u64;
/// Index of a partition within its topic.
pub type PartitionId = u32;
/// Position of a record in its partition.
pub type Offset = u64;
