//! The metadata the controller replicates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sluice_proto::{NodeId, PartitionAssignment, SmartModuleInfo, TopicInfo, TopicSpec, WireError};

/// A node known to the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: NodeId,
    /// Address clients and peers use to reach the node.
    pub addr: String,
}

/// A topic and the id that names its partitions' Raft groups and directories.
/// Ids are never reused, so a topic deleted and created again under the same
/// name never meets the old one's leftovers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub id: u32,
    pub info: TopicInfo,
}

/// Everything the controller knows. `last_index` is the Raft index of the last
/// command applied to it: commands at or below it are already in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub last_index: u64,
    pub next_topic_id: u32,
    pub nodes: BTreeMap<NodeId, NodeRecord>,
    pub topics: BTreeMap<String, TopicRecord>,
    /// The SmartModule store: every node holds all of it (voters and learners
    /// alike), so any SPU can run a registered module from its own copy.
    pub smartmodules: BTreeMap<String, SmartModuleRecord>,
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
