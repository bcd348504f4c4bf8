//! The metadata the controller replicates.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sluice_proto::limits::PARTITION_REPLICAS_PER_NODE_MAX;
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
    /// Committed consumer offsets by (consumer, topic, partition). At most
    /// [`CONSUMER_OFFSETS_MAX`](sluice_proto::limits::CONSUMER_OFFSETS_MAX);
    /// a topic's go with it when it is deleted.
    pub consumers: BTreeMap<ConsumerKey, CommittedOffset>,
    /// Consumer groups: which member owns which partition (the members'
    /// liveness is the coordinator's, in memory). A group's offsets are
    /// those of the consumer of the same name. At most
    /// [`CONSUMER_GROUPS_MAX`](sluice_proto::limits::CONSUMER_GROUPS_MAX).
    pub groups: BTreeMap<String, GroupRecord>,
    /// Bytes of all committed SmartModule states: derived (kept up to date
    /// by `apply`, recomputed on load), never stored.
    #[serde(skip)]
    pub state_bytes: usize,
    /// Settings beyond their spec of the topics that have any (by topic
    /// id; a topic without an entry has the defaults). Stored after the
    /// rest by metadata format 4 (see `state_machine::encode_metadata`),
    /// hence skipped here: the fields above keep format 3's encoding.
    #[serde(skip)]
    pub topic_settings: BTreeMap<u32, sluice_proto::TopicSettings>,
    /// Connectors the cluster runs, by name (at most
    /// [`CONNECTORS_MAX`](sluice_proto::limits::CONNECTORS_MAX)). Stored
    /// after the topic settings by metadata format 6, hence skipped here.
    #[serde(skip)]
    pub connectors: BTreeMap<String, sluice_proto::ConnectorRecord>,
}

/// The durable part of a consumer group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub topic: String,
    pub generation: u64,
    /// Partition -> the member reading it. A partition is given to a
    /// member only while no other owns it.
    pub owners: BTreeMap<u32, String>,
    /// Each owner's session timeout (ms): a new coordinator, which has not
    /// heard from them yet, waits that long before it drops one.
    pub sessions: BTreeMap<String, u64>,
}

/// Whose offset, in which partition: (consumer, topic, partition).
pub type ConsumerKey = (String, String, u32);

/// A consumer's committed position in one partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub offset: u64,
    pub committed_ms: i64,
    /// The session and number of the commit that set it (see
    /// [`sluice_proto::OffsetCommit`]).
    pub session: u64,
    pub sequence: u64,
    /// SmartModule state committed with the offset.
    #[serde(with = "serde_bytes")]
    pub state: Option<Vec<u8>>,
}

/// [`Metadata`] as format 2 wrote it (before consumer offsets). Field order
/// is the encoding: keep it.
#[derive(Deserialize)]
pub(crate) struct MetadataV2 {
    last_index: u64,
    next_topic_id: u32,
    nodes: BTreeMap<NodeId, NodeRecord>,
    removed: BTreeSet<NodeId>,
    topics: BTreeMap<String, TopicRecord>,
    smartmodules: BTreeMap<String, SmartModuleRecord>,
    recent_requests: std::collections::VecDeque<(sluice_proto::RequestId, crate::CommandResult)>,
    acls: BTreeSet<AclEntry>,
}

impl From<MetadataV2> for Metadata {
    fn from(v2: MetadataV2) -> Self {
        Metadata {
            last_index: v2.last_index,
            next_topic_id: v2.next_topic_id,
            nodes: v2.nodes,
            removed: v2.removed,
            topics: v2.topics,
            smartmodules: v2.smartmodules,
            recent_requests: v2.recent_requests,
            acls: v2.acls,
            consumers: BTreeMap::new(),
            groups: BTreeMap::new(),
            state_bytes: 0,
            topic_settings: BTreeMap::new(),
            connectors: BTreeMap::new(),
        }
    }
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
        MetadataV2 {
            last_index: v1.last_index,
            next_topic_id: v1.next_topic_id,
            nodes: v1.nodes,
            removed: v1.removed,
            topics: v1.topics,
            smartmodules: v1.smartmodules,
            recent_requests: v1.recent_requests,
            acls: BTreeSet::new(),
        }
        .into()
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
    /// Whether the topic of this id is a system topic.
    pub fn is_system_topic(&self, id: u32) -> bool {
        self.topic_settings.get(&id).is_some_and(|s| s.system)
    }

    /// The settings of topic `name` (the defaults for a topic without any,
    /// or one that does not exist).
    pub fn topic_settings_of(&self, name: &str) -> sluice_proto::TopicSettings {
        self.topics
            .get(name)
            .and_then(|t| self.topic_settings.get(&t.id))
            .cloned()
            .unwrap_or_default()
    }

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

    /// Bytes of all committed SmartModule states, counted afresh.
    pub fn count_state_bytes(&self) -> usize {
        self.consumers
            .values()
            .map(|o| o.state.as_ref().map_or(0, Vec::len))
            .sum()
    }

    /// Committed offsets of `consumer` (every consumer if `None`) on
    /// `topic` (every topic if `None`), as listed to clients, with a row
    /// (and no offset) for each partition a group member owns before its
    /// first commit there; by consumer, topic and partition. States only
    /// for one consumer on one topic; owners by the first 8 characters of
    /// their id (the whole id is the member's secret: it can leave with it).
    pub fn consumer_offsets(
        &self,
        consumer: Option<&str>,
        topic: Option<&str>,
    ) -> Vec<sluice_proto::ConsumerOffset> {
        let mut rows: BTreeMap<ConsumerKey, sluice_proto::ConsumerOffset> = BTreeMap::new();
        let wanted = |c: &str| consumer.is_none_or(|name| name == c);
        let on_topic = |t: &str| topic.is_none_or(|name| name == t);
        let with_state = consumer.is_some() && topic.is_some();
        let shown = |owner: &String| owner.chars().take(8).collect::<String>();
        let committed: Box<dyn Iterator<Item = (&ConsumerKey, &CommittedOffset)>> = match consumer {
            None => Box::new(self.consumers.iter()),
            Some(name) => Box::new(
                self.consumers
                    .range((name.to_string(), String::new(), 0)..)
                    .take_while(move |((c, _, _), _)| c == name),
            ),
        };
        for ((c, t, p), o) in committed.filter(|((_, t, _), _)| on_topic(t)) {
            rows.insert(
                (c.clone(), t.clone(), *p),
                sluice_proto::ConsumerOffset {
                    consumer: c.clone(),
                    topic: t.clone(),
                    partition: *p,
                    offset: Some(o.offset),
                    committed_ms: o.committed_ms,
                    state: if with_state { o.state.clone() } else { None },
                    owner: self.groups.get(c).and_then(|g| g.owners.get(p).map(shown)),
                },
            );
        }
        for (group, g) in self
            .groups
            .iter()
            .filter(|(name, g)| wanted(name) && on_topic(&g.topic))
        {
            for (p, owner) in &g.owners {
                rows.entry((group.clone(), g.topic.clone(), *p))
                    .or_insert_with(|| sluice_proto::ConsumerOffset {
                        consumer: group.clone(),
                        topic: g.topic.clone(),
                        partition: *p,
                        offset: None,
                        committed_ms: 0,
                        state: None,
                        owner: Some(shown(owner)),
                    });
            }
        }
        rows.into_values().collect()
    }

    pub fn topic(&self, name: &str) -> Result<&TopicRecord, WireError> {
        self.topics
            .get(name)
            .ok_or_else(|| WireError::UnknownTopic {
                topic: name.to_string(),
            })
    }

    /// Partition replicas each registered node holds now, over all topics
    /// (a partition being moved counts on its old replicas too: they keep
    /// their copy until the move completes).
    pub(crate) fn replicas_per_node(&self) -> BTreeMap<NodeId, usize> {
        let mut held: BTreeMap<NodeId, usize> = self.nodes.keys().map(|n| (*n, 0)).collect();
        for topic in self.topics.values() {
            for a in &topic.info.assignments {
                let leaving = topic.moving.get(&a.partition).into_iter().flatten();
                let holders: BTreeSet<NodeId> = a.replicas.iter().chain(leaving).copied().collect();
                for n in holders {
                    *held.entry(n).or_default() += 1;
                }
            }
        }
        held
    }

    /// Refuses `assignments` (a new topic's) if they would take a node past
    /// [`PARTITION_REPLICAS_PER_NODE_MAX`].
    /// The assignments of `count` partitions added to `topic`, placed as
    /// `assign` places a topic's (rotating over the nodes by the topic's
    /// id), continuing its numbering.
    pub(crate) fn added_partitions(
        &self,
        topic: &str,
        count: u32,
        live: Option<&[NodeId]>,
    ) -> Result<Vec<PartitionAssignment>, WireError> {
        use sluice_proto::limits::TOPIC_PARTITIONS_MAX;
        let record = self.topic(topic)?;
        let have = record.info.spec.partitions;
        if count == 0 || have.saturating_add(count) > TOPIC_PARTITIONS_MAX {
            return Err(WireError::InvalidArgument {
                what: "partition count".into(),
                reason: format!(
                    "topic {topic} has {have} partitions; add 1 to {} more (a topic has at most {TOPIC_PARTITIONS_MAX})",
                    TOPIC_PARTITIONS_MAX - have
                ),
            });
        }
        let replication = record.info.spec.replication as usize;
        let nodes: Vec<NodeId> = self
            .nodes
            .keys()
            .copied()
            .filter(|n| live.is_none_or(|live| live.contains(n)))
            .collect();
        if replication > nodes.len() {
            return Err(WireError::InvalidArgument {
                what: "replication factor".into(),
                reason: format!(
                    "topic {topic} keeps {replication} replicas of each partition but {} of the cluster's {} node(s) are reachable; bring nodes back",
                    nodes.len(),
                    self.nodes.len()
                ),
            });
        }
        let offset = record.id.saturating_sub(1) as usize;
        Ok((have..have + count)
            .map(|p| PartitionAssignment {
                partition: p,
                replicas: (0..replication)
                    .map(|r| nodes[(offset + p as usize + r) % nodes.len()])
                    .collect(),
            })
            .collect())
    }

    /// Checks replicas placed by the caller for a new topic of `spec`: one
    /// assignment per partition, in partition order, each naming
    /// `spec.replication` distinct registered nodes.
    pub(crate) fn check_assignments(
        &self,
        spec: &TopicSpec,
        assignments: &[PartitionAssignment],
    ) -> Result<(), WireError> {
        let invalid = |reason: String| WireError::InvalidArgument {
            what: "replica assignment".into(),
            reason,
        };
        if assignments.len() != spec.partitions as usize {
            return Err(invalid(format!(
                "{} partition(s) placed for a topic of {}; place each partition once",
                assignments.len(),
                spec.partitions
            )));
        }
        for (expected, a) in (0u32..).zip(assignments) {
            if a.partition != expected {
                return Err(invalid(format!(
                    "partition {} is placed where partition {expected} belongs; number the \
                     partitions 0 to {} in order, each once",
                    a.partition,
                    spec.partitions - 1
                )));
            }
            if a.replicas.len() != spec.replication as usize {
                return Err(invalid(format!(
                    "partition {} has {} replica(s) and the topic's replication factor is {}; \
                     give every partition as many",
                    a.partition,
                    a.replicas.len(),
                    spec.replication
                )));
            }
            for (i, node) in a.replicas.iter().enumerate() {
                if a.replicas[..i].contains(node) {
                    return Err(invalid(format!(
                        "partition {} names node {node} twice; its replicas must be on \
                         different nodes",
                        a.partition
                    )));
                }
                if !self.nodes.contains_key(node) {
                    return Err(invalid(format!(
                        "partition {} names node {node}, which is not in the cluster (nodes: \
                         {:?}); see `sluice cluster spu list`",
                        a.partition,
                        self.nodes.keys().collect::<Vec<_>>()
                    )));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn check_replica_capacity(
        &self,
        topic: &str,
        assignments: &[PartitionAssignment],
    ) -> Result<(), WireError> {
        let mut held = self.replicas_per_node();
        let before = held.clone();
        for a in assignments {
            for n in &a.replicas {
                *held.entry(*n).or_default() += 1;
            }
        }
        match held
            .iter()
            .find(|(_, count)| **count > PARTITION_REPLICAS_PER_NODE_MAX)
        {
            None => Ok(()),
            Some((node, count)) => Err(WireError::InvalidArgument {
                what: "partitions".into(),
                reason: format!(
                    "topic {topic} would put {} more partition replicas on node {node}, which \
                     holds {}: {count} is past the {PARTITION_REPLICAS_PER_NODE_MAX} replicas a \
                     node may hold; create fewer partitions or a lower replication factor, \
                     delete unused topics, or add nodes",
                    count - before.get(node).copied().unwrap_or(0),
                    before.get(node).copied().unwrap_or(0),
                ),
            }),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(nodes: u64) -> Metadata {
        let mut md = Metadata::default();
        for id in 1..=nodes {
            md.nodes.insert(
                id,
                NodeRecord {
                    id,
                    addr: format!("127.0.0.1:{}", 9000 + id),
                    incarnation: None,
                },
            );
        }
        md
    }

    fn add_topic(md: &mut Metadata, name: &str, partitions: u32, replication: u32) {
        let spec = TopicSpec {
            partitions,
            replication,
            ..TopicSpec::new(name)
        };
        let assignments = md.assign(&spec, None).unwrap();
        md.check_replica_capacity(name, &assignments).unwrap();
        md.next_topic_id += 1;
        md.topics.insert(
            name.to_string(),
            TopicRecord {
                id: md.next_topic_id,
                info: TopicInfo {
                    spec,
                    created_ms: 0,
                    assignments,
                },
                moving: BTreeMap::new(),
                reassigned: BTreeSet::new(),
            },
        );
    }

    #[test]
    fn a_topic_that_would_overfill_a_node_is_refused_naming_the_node_and_counts() {
        let mut md = cluster(3);
        // 3 nodes x 1,024 replicas: 1,000 partitions at RF 3 fit, as do 24 more.
        add_topic(&mut md, "big", 1000, 3);
        assert_eq!(
            md.replicas_per_node().values().copied().collect::<Vec<_>>(),
            [1000; 3]
        );
        add_topic(&mut md, "fits", 24, 3);
        let spec = TopicSpec {
            partitions: 1,
            replication: 1,
            ..TopicSpec::new("one-more")
        };
        let assignments = md.assign(&spec, None).unwrap();
        let err = md
            .check_replica_capacity("one-more", &assignments)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("topic one-more would put 1 more partition replicas on node")
                && err.contains("which holds 1024: 1025 is past the 1024 replicas a node may hold")
                && err.contains("add nodes"),
            "{err}"
        );
    }

    #[test]
    fn a_partition_being_moved_counts_on_both_its_old_and_new_replicas() {
        let mut md = cluster(4);
        add_topic(&mut md, "t", 1, 2);
        let record = md.topics.get_mut("t").unwrap();
        let old = record.info.assignments[0].replicas.clone();
        let new: Vec<NodeId> = (1..=4).filter(|n| !old.contains(n)).collect();
        record.info.assignments[0].replicas = new;
        record.moving.insert(0, old);
        assert_eq!(md.replicas_per_node().values().sum::<usize>(), 4);
    }
}
