//! Metadata changes: what a [`Request::Once`] carries, each also a request
//! of its own, and the ids that make a change apply at most once.

use serde::{Deserialize, Serialize};

use crate::{
    NodeId, OffsetCommit, PartitionAssignment, Request, TopicSettings, TopicSettingsV1, TopicSpec,
};

/// Identifies one metadata change across its retries (see [`Request::Once`]).
pub type RequestId = [u64; 2];

/// A fresh random [`RequestId`] (per-process random hash keys mixed with the
/// time, a counter and the pid: unique without a random-number dependency).
pub fn new_request_id() -> RequestId {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let word = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(nanos);
        h.write_u64(n);
        h.write_u64(salt);
        h.write_u32(std::process::id());
        h.finish()
    };
    [word(1), word(2)]
}

/// A change of the cluster's metadata: what a [`Request::Once`] carries.
/// Each is also a request of its own ([`MetadataChange::into_request`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataChange {
    CreateTopic(TopicSpec),
    DeleteTopic {
        name: String,
    },
    CreateSmartModule {
        name: String,
        #[serde(with = "serde_bytes")]
        wasm: Vec<u8>,
    },
    DeleteSmartModule {
        name: String,
    },
    UnregisterNode {
        id: NodeId,
    },
    ReassignPartition {
        topic: String,
        partition: u32,
        replicas: Vec<NodeId>,
    },
    AddAcl(crate::AclEntry),
    RemoveAcl(crate::AclEntry),
    CommitOffset(OffsetCommit),
    DeleteConsumer {
        consumer: String,
        topic: Option<String>,
    },
    AddPartitions {
        topic: String,
        count: u32,
    },
    CreateTopicAssigned {
        spec: TopicSpec,
        assignments: Vec<PartitionAssignment>,
    },
    CreateTopicWith {
        spec: TopicSpec,
        assignments: Option<Vec<PartitionAssignment>>,
        settings: TopicSettingsV1,
    },
    CreateTopicV2 {
        spec: TopicSpec,
        assignments: Option<Vec<PartitionAssignment>>,
        settings: TopicSettings,
    },
    DeleteTopicForced {
        name: String,
    },
    CreateConnector(crate::ConnectorSpec),
    DeleteConnector {
        name: String,
    },
}

impl MetadataChange {
    /// The request that makes this change (without the at-most-once id).
    pub fn into_request(self) -> Request {
        match self {
            MetadataChange::CreateTopic(spec) => Request::CreateTopic(spec),
            MetadataChange::DeleteTopic { name } => Request::DeleteTopic { name },
            MetadataChange::CreateSmartModule { name, wasm } => {
                Request::CreateSmartModule { name, wasm }
            }
            MetadataChange::DeleteSmartModule { name } => Request::DeleteSmartModule { name },
            MetadataChange::UnregisterNode { id } => Request::UnregisterNode { id },
            MetadataChange::ReassignPartition {
                topic,
                partition,
                replicas,
            } => Request::ReassignPartition {
                topic,
                partition,
                replicas,
            },
            MetadataChange::AddAcl(entry) => Request::AddAcl(entry),
            MetadataChange::RemoveAcl(entry) => Request::RemoveAcl(entry),
            MetadataChange::CommitOffset(commit) => Request::CommitOffset(commit),
            MetadataChange::DeleteConsumer { consumer, topic } => {
                Request::DeleteConsumer { consumer, topic }
            }
            MetadataChange::AddPartitions { topic, count } => {
                Request::AddPartitions { topic, count }
            }
            MetadataChange::CreateTopicAssigned { spec, assignments } => {
                Request::CreateTopicAssigned { spec, assignments }
            }
            MetadataChange::CreateTopicWith {
                spec,
                assignments,
                settings,
            } => Request::CreateTopicWith {
                spec,
                assignments,
                settings,
            },
            MetadataChange::CreateTopicV2 {
                spec,
                assignments,
                settings,
            } => Request::CreateTopicV2 {
                spec,
                assignments,
                settings,
            },
            MetadataChange::DeleteTopicForced { name } => Request::DeleteTopicForced { name },
            MetadataChange::CreateConnector(spec) => Request::CreateConnector(spec),
            MetadataChange::DeleteConnector { name } => Request::DeleteConnector { name },
        }
    }

    /// The change's name in messages and logs (the same as its request's).
    pub fn name(&self) -> &'static str {
        match self {
            MetadataChange::CreateTopic(_) => "create topic",
            MetadataChange::DeleteTopic { .. } => "delete topic",
            MetadataChange::CreateSmartModule { .. } => "create SmartModule",
            MetadataChange::DeleteSmartModule { .. } => "delete SmartModule",
            MetadataChange::UnregisterNode { .. } => "unregister node",
            MetadataChange::ReassignPartition { .. } => "reassign partition",
            MetadataChange::AddAcl(_) => "add ACL",
            MetadataChange::RemoveAcl(_) => "remove ACL",
            MetadataChange::CommitOffset(_) => "commit offset",
            MetadataChange::DeleteConsumer { .. } => "delete consumer",
            MetadataChange::AddPartitions { .. } => "add partitions",
            MetadataChange::CreateTopicAssigned { .. } => "create topic",
            MetadataChange::CreateTopicWith { .. } | MetadataChange::CreateTopicV2 { .. } => {
                "create topic"
            }
            MetadataChange::DeleteTopicForced { .. } => "delete system topic",
            MetadataChange::CreateConnector(_) => "create connector",
            MetadataChange::DeleteConnector { .. } => "delete connector",
        }
    }
}

impl Request {
    /// This metadata change, to be applied at most once (see [`Request::Once`]).
    /// Other requests are returned as they are.
    pub fn once(self) -> Request {
        match self.into_metadata_change() {
            Ok(change) => Request::Once {
                id: new_request_id(),
                change,
            },
            Err(other) => *other,
        }
    }

    /// The metadata change this request makes, or the request itself if it
    /// makes none.
    pub fn into_metadata_change(self) -> Result<MetadataChange, Box<Request>> {
        Ok(match self {
            Request::CreateTopic(spec) => MetadataChange::CreateTopic(spec),
            Request::DeleteTopic { name } => MetadataChange::DeleteTopic { name },
            Request::CreateSmartModule { name, wasm } => {
                MetadataChange::CreateSmartModule { name, wasm }
            }
            Request::DeleteSmartModule { name } => MetadataChange::DeleteSmartModule { name },
            Request::UnregisterNode { id } => MetadataChange::UnregisterNode { id },
            Request::ReassignPartition {
                topic,
                partition,
                replicas,
            } => MetadataChange::ReassignPartition {
                topic,
                partition,
                replicas,
            },
            Request::AddAcl(entry) => MetadataChange::AddAcl(entry),
            Request::RemoveAcl(entry) => MetadataChange::RemoveAcl(entry),
            Request::CommitOffset(commit) => MetadataChange::CommitOffset(commit),
            Request::DeleteConsumer { consumer, topic } => {
                MetadataChange::DeleteConsumer { consumer, topic }
            }
            Request::AddPartitions { topic, count } => {
                MetadataChange::AddPartitions { topic, count }
            }
            Request::CreateTopicAssigned { spec, assignments } => {
                MetadataChange::CreateTopicAssigned { spec, assignments }
            }
            Request::CreateTopicWith {
                spec,
                assignments,
                settings,
            } => MetadataChange::CreateTopicWith {
                spec,
                assignments,
                settings,
            },
            Request::CreateTopicV2 {
                spec,
                assignments,
                settings,
            } => MetadataChange::CreateTopicV2 {
                spec,
                assignments,
                settings,
            },
            Request::DeleteTopicForced { name } => MetadataChange::DeleteTopicForced { name },
            Request::CreateConnector(spec) => MetadataChange::CreateConnector(spec),
            Request::DeleteConnector { name } => MetadataChange::DeleteConnector { name },
            other => return Err(Box::new(other)),
        })
    }
}
