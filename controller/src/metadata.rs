//! The metadata the controller replicates.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sluice_proto::{
    AclEntry, NodeId, PartitionAssignment, SmartModuleInfo, TopicInfo, TopicSpec, WireError,
};

/// A node known to the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: NodeId,
    /// Address clients and peers use to reach the node.
    pub addr: String,
    /// The random id of the node's data dir, set when the node first announces
    /// itself. `None` for a node listed in the initial cluster that has not
    /// started yet. A node id that comes back with another incarnation lost
    /// its data (wiped) and must not rejoin: it would vote with an empty log.
    pub incarnation: Option<String>,
}

/// A topic and the id that names its partitions' Raft groups and directories.
/// Ids are never reused, so a topic deleted and created again under the same
/// name never meets the old one's leftovers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub id: u32,
    pub info: TopicInfo,
    /// Partitions with a reassignment under way -> the replicas they are
    /// leaving (which keep their copy until the new set has taken over).
    pub moving: BTreeMap<u32, Vec<NodeId>>,
    /// Partitions that were ever reassigned: their first listed replica must
    /// not create the Raft group's membership (the group exists already).
    pub reassigned: BTreeSet<u32>,
}

/// Everything the controller knows. `last_index` is the Raft index of the last
/// command applied to it: commands at or below it are already in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub last_index: u64,
    pub next_topic_id: u32,
    pub nodes: BTreeMap<NodeId, NodeRecord>,
    /// Unregistered node ids: never used again.
    pub removed: BTreeSet<NodeId>,
    pub topics: BTreeMap<String, TopicRecord>,
    /// The SmartModule store: every node holds all of it (voters and learners
    /// alike), so any SPU can run a registered module from its own copy.
    pub smartmodules: BTreeMap<String, SmartModuleRecord>,
    /// Outcomes of the latest [`crate::Command::Once`] changes, oldest first
    /// (bounded): a repeated request id gets its first outcome again.
    pub recent_requests:
        std::collections::VecDeque<(sluice_proto::RequestId, crate::CommandResult)>,
    /// Who may do what (`sluice acl`): every node authorizes requests
    /// against its copy. At most [`ACL_ENTRIES_MAX`](sluice_proto::limits::ACL_ENTRIES_MAX).
    pub acls: BTreeSet<AclEntry>,
}

/// [`Metadata`] as format 1 wrote it (before ACLs), read once when a node
/// of an older release is upgraded. Field order is the encoding: keep it.
#[derive(Deserialize)]
pub(crate) struct MetadataV1 {
    last_index: u64,
    next_topic_id: u32,
    nodes: BTreeMap<NodeId, NodeRecord>,
    removed: BTreeSet<NodeId>,
    topics: BTreeMap<String, TopicRecord>,
    smartmodules: BTreeMap<String, SmartModuleRecord>,
    recent_requests: std::collections::VecDeque<(sluice_proto::RequestId, crate::CommandResult)>,
}

impl From<MetadataV1> for Metadata {
    fn from(v1: MetadataV1) -> Self {
        Metadata {
            last_index: v1.last_index,
            next_topic_id: v1.next_topic_id,
            nodes: v1.nodes,
            removed: v1.removed,
            topics: v1.topics,
            smartmodules: v1.smartmodules,
            recent_requests: v1.recent_requests,
            acls: BTreeSet::new(),
        }
    }
}

/// A registered SmartModule and its code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmartModuleRecord {
    pub info: SmartModuleInfo,
    #[serde(with = "serde_bytes")]
    pub wasm: Vec<u8>,
}

impl Metadata {
    pub fn smartmodule(&self, name: &str) -> Result<&SmartModuleRecord, WireError> {
        self.smartmodules
            .get(name)
            .ok_or_else(|| WireError::UnknownSmartModule {
                name: name.to_string(),
            })
    }

    /// What this metadata says about node `id` (for a node checking its identity).
    pub fn incarnation_of(&self, id: NodeId) -> sluice_proto::NodeIncarnation {
        let record = self.nodes.get(&id);
        sluice_proto::NodeIncarnation {
            known: record.is_some(),
            incarnation: record.and_then(|r| r.incarnation.clone()),
            removed: self.removed.contains(&id),
        }
    }

    /// Node ids that hold a replica of some partition (assigned or leaving).
    pub fn nodes_with_replicas(&self) -> BTreeSet<NodeId> {
        let mut out = BTreeSet::new();
        for t in self.topics.values() {
            for a in &t.info.assignments {
                out.extend(a.replicas.iter().copied());
            }
            for leaving in t.moving.values() {
                out.extend(leaving.iter().copied());
            }
        }
        out
    }

    pub fn topic(&self, name: &str) -> Result<&TopicRecord, WireError> {
        self.topics
            .get(name)
            .ok_or_else(|| WireError::UnknownTopic {
                topic: name.to_string(),
            })
    }

    /// Assigns `spec.replication` distinct nodes to each partition, rotating
    /// the starting node so replicas (and, with the first replica as preferred
    /// leader, leaders) spread evenly. Only the `live` nodes are used when the
    /// proposer knew which answer (a new partition on a dead node could not
    /// elect a leader). Deterministic: same state and command, same result.
    pub(crate) fn assign(
        &self,
        spec: &TopicSpec,
        live: Option<&[NodeId]>,
    ) -> Result<Vec<PartitionAssignment>, WireError> {
        let registered = self.nodes.len();
        let nodes: Vec<NodeId> = self
            .nodes
            .keys()
            .copied()
            .filter(|n| live.is_none_or(|live| live.contains(n)))
            .collect();
        if spec.replication as usize > nodes.len() {
            return Err(WireError::InvalidArgument {
                what: "replication factor".into(),
                reason: format!(
                    "{} replicas requested but {} of the cluster's {registered} node(s) are reachable; lower -r or bring nodes back",
                    spec.replication,
                    nodes.len()
                ),
            });
        }
        let offset = self.next_topic_id as usize;
        Ok((0..spec.partitions)
            .map(|p| PartitionAssignment {
                partition: p,
                replicas: (0..spec.replication as usize)
                    .map(|r| nodes[(offset + p as usize + r) % nodes.len()])
                    .collect(),
            })
            .collect())
    }
}
