//! The controller's replicated state machine and its persistence.
//!
//! The state is small, so it is kept in memory and written whole to one file
//! when the Raft layer asks for a synced point (`sync`): write a temporary
//! file, fsync, rename, fsync the directory. After a crash the file holds a
//! state at or before the last synced point, and the Raft log replays the rest;
//! `apply` skips commands at or below `Metadata::last_index`.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sluice_proto::limits::ACL_ENTRIES_MAX;
use sluice_proto::{
    AclEntry, NodeId, PartitionAssignment, TopicInfo, TopicSettings, TopicSettingsV1, TopicSpec,
    WireError,
};
use sluice_raft::ReplicatedState;
use tokio::sync::watch;

use crate::metadata_format::{decode_metadata, encode_metadata};
use crate::{ControllerError, Metadata, NodeRecord, SmartModuleRecord, TopicRecord};

/// Request ids remembered for `Command::Once`: far more than the changes a
/// client can retry within its retry budget.
const RECENT_REQUESTS_KEPT: usize = 10_000;

/// A change to the metadata, as proposed to the controller group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    RegisterNode(NodeRecord),
    /// `created_ms` is set by the proposer so every replica records the same time.
    /// `live` lists the nodes the proposing leader heard from recently (it
    /// is part of the command so every replica assigns the same way).
    CreateTopic {
        spec: TopicSpec,
        created_ms: i64,
        live: Option<Vec<u64>>,
    },
    DeleteTopic {
        name: String,
    },
    /// Validated by the proposing node (valid wasm, one transform export,
    /// supported ABI); the controller only checks the name is free.
    CreateSmartModule(SmartModuleRecord),
    DeleteSmartModule {
        name: String,
    },
    /// Removes a node for good; refused while it holds replicas.
    UnregisterNode {
        id: NodeId,
    },
    /// Gives a partition a new replica set; the old set is kept as `moving`
    /// until [`Command::FinishReassignment`].
    ReassignPartition {
        topic: String,
        partition: u32,
        replicas: Vec<NodeId>,
    },
    /// `command`, applied at most once per `id` (see `Request::Once`).
    Once {
        id: sluice_proto::RequestId,
        command: Box<Command>,
    },
    /// The partition's group now runs with `replicas`: the replicas that were
    /// left out may delete their copy.
    FinishReassignment {
        topic: String,
        partition: u32,
        replicas: Vec<NodeId>,
    },
    /// Grants a permission; granting one that exists changes nothing.
    AddAcl(AclEntry),
    /// Withdraws a permission; refused if no such entry exists.
    RemoveAcl(AclEntry),
    /// Sets a consumer's offset in a partition. Proposed by earlier
    /// releases only (offsets now live in each partition's own group,
    /// `sluice-spu`'s `offsets`); applied still, as Raft logs and snapshots
    /// of those releases hold it. The proposing node checked it against the
    /// partition's end; here the topic and partition must exist, the commit
    /// must not be older than the last one of its session, and the store
    /// must have room. `committed_ms` is set by the proposer.
    CommitOffset {
        commit: sluice_proto::OffsetCommit,
        committed_ms: i64,
        /// The id of the topic the proposer checked the offset against: a
        /// topic deleted and created again meanwhile is another topic.
        topic_id: u32,
    },
    /// Forgets a consumer's offsets (on one topic, or all); refused if
    /// there is none, or if it is a group with members.
    DeleteConsumer {
        consumer: String,
        topic: Option<String>,
    },
    /// Sets which member owns which partition of a consumer group. Applied
    /// only as the next generation of the group (or its first), so a
    /// coordinator that lost leadership cannot overwrite its successor's.
    SetGroupOwners {
        group: String,
        topic: String,
        generation: u64,
        owners: BTreeMap<u32, String>,
        /// Each owner's session timeout in ms.
        sessions: BTreeMap<String, u64>,
    },
    /// Adds `count` partitions to `topic`, placed like a new topic's over
    /// `live` (the nodes the proposing leader heard from recently).
    AddPartitions {
        topic: String,
        count: u32,
        live: Option<Vec<u64>>,
    },
    /// Creates a topic placed as the caller asked
    /// (`Metadata::check_assignments`) instead of by rotation.
    CreateTopicAssigned {
        spec: TopicSpec,
        created_ms: i64,
        assignments: Vec<PartitionAssignment>,
    },
    /// Creates a topic with settings beyond its spec, placed as the caller
    /// asked or, without `assignments`, over `live` as `CreateTopic` does.
    CreateTopicWith {
        spec: TopicSpec,
        created_ms: i64,
        assignments: Option<Vec<PartitionAssignment>>,
        live: Option<Vec<u64>>,
        settings: TopicSettingsV1,
    },
    /// [`Command::CreateTopicWith`] with settings in their current shape
    /// (key hash, system topic).
    CreateTopicV2 {
        spec: TopicSpec,
        created_ms: i64,
        assignments: Option<Vec<PartitionAssignment>>,
        live: Option<Vec<u64>>,
        settings: TopicSettings,
    },
    /// Deletes a topic, a system topic included ([`Command::DeleteTopic`]
    /// refuses those).
    DeleteTopicForced {
        name: String,
    },
    /// Stores a connector, to run on the node the proposer chose (see
    /// `crate::connectors`).
    CreateConnector(sluice_proto::ConnectorRecord),
    DeleteConnector {
        name: String,
    },
    /// Has `node` run connector `name`, if it is still at `generation`.
    MoveConnector {
        name: String,
        generation: u64,
        node: NodeId,
    },
}

/// The outcome of applying a [`Command`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    Done,
    TopicCreated(TopicInfo),
    Reassigned(PartitionAssignment),
    /// The command was valid Raft input but the state refused it; nothing changed.
    Rejected(WireError),
}

/// Whether a topic of `spec` may be created: the name is free and the spec
/// within the protocol's limits.
fn check_new_topic(md: &Metadata, spec: &TopicSpec) -> Result<(), WireError> {
    if md.topics.contains_key(&spec.name) {
        return Err(WireError::TopicExists {
            topic: spec.name.clone(),
        });
    }
    spec.validate()
}

/// Records a new topic placed by `assignments` (checked by the caller).
fn create_topic(
    md: &mut Metadata,
    spec: TopicSpec,
    created_ms: i64,
    assignments: Vec<PartitionAssignment>,
) -> CommandResult {
    md.next_topic_id += 1;
    let info = TopicInfo {
        spec,
        created_ms,
        assignments,
    };
    md.topics.insert(
        info.spec.name.clone(),
        TopicRecord {
            id: md.next_topic_id,
            info: info.clone(),
            moving: Default::default(),
            reassigned: Default::default(),
        },
    );
    CommandResult::TopicCreated(info)
}

/// Records a new topic with `settings`, placed as the caller asked or,
/// without `assignments`, over `live` as [`Command::CreateTopic`] does.
fn create_topic_with(
    md: &mut Metadata,
    spec: TopicSpec,
    created_ms: i64,
    assignments: Option<Vec<PartitionAssignment>>,
    live: Option<Vec<u64>>,
    settings: TopicSettings,
) -> CommandResult {
    let placed = check_new_topic(md, &spec).and_then(|()| match assignments {
        Some(given) => md.check_assignments(&spec, &given).map(|()| given),
        None => md.assign(&spec, live.as_deref()),
    });
    match placed {
        Ok(assignments) => {
            let result = create_topic(md, spec, created_ms, assignments);
            if settings != TopicSettings::default() {
                md.topic_settings.insert(md.next_topic_id, settings);
            }
            result
        }
        Err(e) => CommandResult::Rejected(e),
    }
}

/// Forgets a topic, its settings and its consumers' offsets.
fn delete_topic(md: &mut Metadata, name: String) -> CommandResult {
    match md.topics.remove(&name) {
        Some(removed) => {
            md.topic_settings.remove(&removed.id);
            // A topic created again under this name starts afresh:
            // no consumer resumes in it at the old one's offsets.
            md.consumers.retain(|(_, topic, _), _| *topic != name);
            md.groups.retain(|_, g| g.topic != name);
            md.state_bytes = md.count_state_bytes();
            CommandResult::Done
        }
        None => CommandResult::Rejected(WireError::UnknownTopic { topic: name }),
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    sluice_proto::encoding::to_vec(value).expect("controller types always encode")
}

/// Largest command or result the controller decodes: a command travels in
/// one frame.
const COMMAND_BYTES_MAX: usize = sluice_proto::limits::FRAME_SIZE_BYTES_MAX;
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    sluice_proto::encoding::from_slice(bytes, COMMAND_BYTES_MAX)
        .map(|(v, _)| v)
        .map_err(|e| e.to_string())
}

/// Read access to the metadata for the rest of the node, with a version
/// counter that changes after every applied command.
#[derive(Clone)]
pub struct MetadataView {
    state: Arc<RwLock<Metadata>>,
    changes: watch::Receiver<u64>,
}

impl MetadataView {
    /// A consistent copy of the current metadata.
    pub fn snapshot(&self) -> Metadata {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs `f` on the current metadata without copying it.
    pub fn with<R>(&self, f: impl FnOnce(&Metadata) -> R) -> R {
        f(&self.state.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// A receiver that wakes after each applied change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }
}

pub struct ControllerStateMachine {
    state: Arc<RwLock<Metadata>>,
    changes: watch::Sender<u64>,
    path: PathBuf,
}

impl ControllerStateMachine {
    /// Loads the metadata saved at `path` (or starts empty).
    pub fn open(path: PathBuf) -> Result<(Self, MetadataView), ControllerError> {
        let load_err = |reason: String| ControllerError::Load {
            path: path.display().to_string(),
            reason,
        };
        let metadata = match std::fs::read(&path) {
            Ok(bytes) => decode_metadata(&bytes).map_err(load_err)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Metadata::default(),
            Err(e) => return Err(load_err(e.to_string())),
        };
        let state = Arc::new(RwLock::new(metadata));
        let (changes, rx) = watch::channel(0);
        let view = MetadataView {
            state: state.clone(),
            changes: rx,
        };
        Ok((
            Self {
                state,
                changes,
                path,
            },
            view,
        ))
    }

    fn execute(md: &mut Metadata, command: Command) -> CommandResult {
        match command {
            Command::Once { id, command } => {
                if let Some((_, first)) = md.recent_requests.iter().find(|(seen, _)| *seen == id) {
                    return first.clone();
                }
                let result = Self::execute(md, *command);
                md.recent_requests.push_back((id, result.clone()));
                while md.recent_requests.len() > RECENT_REQUESTS_KEPT {
                    md.recent_requests.pop_front();
                }
                result
            }
            Command::RegisterNode(node) => register_node(md, node),
            Command::CreateConnector(record) => crate::connectors::create(md, record),
            Command::DeleteConnector { name } => crate::connectors::delete(md, name),
            Command::MoveConnector {
                name,
                generation,
                node,
            } => crate::connectors::move_to(md, &name, generation, node),
            Command::UnregisterNode { id } => unregister_node(md, id),
            Command::ReassignPartition {
                topic,
                partition,
                replicas,
            } => reassign(md, &topic, partition, replicas),
            Command::FinishReassignment {
                topic,
                partition,
                replicas,
            } => {
                if let Some(record) = md.topics.get_mut(&topic)
                    && record
                        .info
                        .assignments
                        .get(partition as usize)
                        .is_some_and(|a| same_set(&a.replicas, &replicas))
                {
                    record.moving.remove(&partition);
                }
                CommandResult::Done
            }
            Command::CreateTopic {
                spec,
                created_ms,
                live,
            } => {
                if let Err(e) = check_new_topic(md, &spec) {
                    return CommandResult::Rejected(e);
                }
                match md.assign(&spec, live.as_deref()) {
                    Ok(assignments) => create_topic(md, spec, created_ms, assignments),
                    Err(e) => CommandResult::Rejected(e),
                }
            }
            Command::CreateTopicAssigned {
                spec,
                created_ms,
                assignments,
            } => {
                let checked = check_new_topic(md, &spec)
                    .and_then(|()| md.check_assignments(&spec, &assignments));
                match checked {
                    Ok(()) => create_topic(md, spec, created_ms, assignments),
                    Err(e) => CommandResult::Rejected(e),
                }
            }
            Command::CreateTopicWith {
                spec,
                created_ms,
                assignments,
                live,
                settings,
            } => create_topic_with(md, spec, created_ms, assignments, live, settings.into()),
            Command::CreateTopicV2 {
                spec,
                created_ms,
                assignments,
                live,
                settings,
            } => create_topic_with(md, spec, created_ms, assignments, live, settings),
            Command::DeleteTopic { name } => {
                if md.topic_settings_of(&name).system {
                    return CommandResult::Rejected(WireError::SystemTopic { topic: name });
                }
                delete_topic(md, name)
            }
            Command::DeleteTopicForced { name } => delete_topic(md, name),
            Command::CommitOffset {
                commit,
                committed_ms,
                topic_id,
            } => commit_offset(md, commit, committed_ms, topic_id),
            Command::AddPartitions { topic, count, live } => {
                match md.added_partitions(&topic, count, live.as_deref()) {
                    Ok(added) => {
                        let record = md
                            .topics
                            .get_mut(&topic)
                            .expect("checked by added_partitions");
                        record.info.spec.partitions += count;
                        record.info.assignments.extend(added);
                        CommandResult::TopicCreated(record.info.clone())
                    }
                    Err(e) => CommandResult::Rejected(e),
                }
            }
            Command::SetGroupOwners {
                group,
                topic,
                generation,
                owners,
                sessions,
            } => set_group_owners(md, group, topic, generation, owners, sessions),
            Command::DeleteConsumer { consumer, topic } => {
                let mut removed_group = false;
                if let Some(g) = md.groups.get(&consumer)
                    && topic.as_ref().is_none_or(|t| *t == g.topic)
                {
                    if !g.owners.is_empty() {
                        return CommandResult::Rejected(WireError::InvalidArgument {
                            what: "consumer".into(),
                            reason: format!(
                                "{consumer:?} is a consumer group whose members read partitions {:?} \
                                 (or did, less than their session timeout ago); stop them first \
                                 (Ctrl-C), or retry once their session timeout has passed",
                                g.owners.keys().collect::<Vec<_>>()
                            ),
                        });
                    }
                    md.groups.remove(&consumer);
                    removed_group = true;
                }
                let before = md.consumers.len();
                md.consumers.retain(|(c, t, _), _| {
                    !(*c == consumer && topic.as_ref().is_none_or(|x| x == t))
                });
                md.state_bytes = md.count_state_bytes();
                if md.consumers.len() < before || removed_group {
                    CommandResult::Done
                } else {
                    CommandResult::Rejected(WireError::UnknownConsumer { consumer, topic })
                }
            }
            Command::CreateSmartModule(record) => {
                let name = record.info.name.clone();
                if let Err(reason) = sluice_proto::limits::validate_smartmodule_name(&name) {
                    return CommandResult::Rejected(WireError::InvalidArgument {
                        what: "SmartModule name".into(),
                        reason,
                    });
                }
                if let Some(existing) = md.smartmodules.get(&name) {
                    // The same bytes again (a script re-running its setup):
                    // nothing to do; other bytes under the name: refused.
                    if existing.info.hash == record.info.hash {
                        return CommandResult::Done;
                    }
                    return CommandResult::Rejected(WireError::SmartModuleExists { name });
                }
                md.smartmodules.insert(name, record);
                CommandResult::Done
            }
            Command::DeleteSmartModule { name } => match md.smartmodules.remove(&name) {
                Some(_) => CommandResult::Done,
                None => CommandResult::Rejected(WireError::UnknownSmartModule { name }),
            },
            Command::AddAcl(entry) => add_acl(md, entry),
            Command::RemoveAcl(entry) => {
                if md.acls.remove(&entry) {
                    CommandResult::Done
                } else {
                    CommandResult::Rejected(WireError::InvalidArgument {
                        what: "ACL entry".into(),
                        reason: format!(
                            "no entry says {entry}; see `sluice acl list` for the exact entries"
                        ),
                    })
                }
            }
        }
    }
}

/// Stores a committed offset, after the checks every replica makes alike.
fn commit_offset(
    md: &mut Metadata,
    commit: sluice_proto::OffsetCommit,
    committed_ms: i64,
    topic_id: u32,
) -> CommandResult {
    use sluice_proto::limits::{
        CONSUMER_OFFSETS_MAX, CONSUMER_STATE_BYTES_MAX, CONSUMER_STATE_TOTAL_BYTES_MAX,
        validate_consumer_name,
    };
    if let Err(reason) = validate_consumer_name(&commit.consumer) {
        return CommandResult::Rejected(WireError::InvalidArgument {
            what: "consumer name".into(),
            reason,
        });
    }
    if let Some(state) = &commit.state
        && state.len() > CONSUMER_STATE_BYTES_MAX
    {
        return CommandResult::Rejected(WireError::InvalidArgument {
            what: "offset commit".into(),
            reason: format!(
                "its SmartModule state is {} bytes; at most {CONSUMER_STATE_BYTES_MAX} are kept \
                 with an offset",
                state.len()
            ),
        });
    }
    let Some(record) = md.topics.get(&commit.topic) else {
        return CommandResult::Rejected(WireError::UnknownTopic {
            topic: commit.topic,
        });
    };
    if record.id != topic_id {
        return CommandResult::Rejected(WireError::InvalidArgument {
            what: "offset commit".into(),
            reason: format!(
                "topic {:?} was deleted and created again since the commit was checked; \
                 its offsets start afresh",
                commit.topic
            ),
        });
    }
    let partitions = record.info.spec.partitions;
    if commit.partition >= partitions {
        return CommandResult::Rejected(WireError::UnknownPartition {
            topic: commit.topic,
            partition: commit.partition,
            partitions,
        });
    }
    match (md.groups.get(&commit.consumer), &commit.member) {
        (Some(g), Some(member)) if g.owners.get(&commit.partition) == Some(member) => {}
        (Some(g), Some(member)) => {
            return CommandResult::Rejected(WireError::FencedMember {
                group: commit.consumer.clone(),
                member: member.clone(),
                reason: format!(
                    "partition {} is {} in generation {}",
                    commit.partition,
                    g.owners
                        .get(&commit.partition)
                        .map_or("owned by no member".to_string(), |o| format!(
                            "owned by member {o}"
                        )),
                    g.generation
                ),
            });
        }
        (Some(_), None) => {
            return CommandResult::Rejected(WireError::InvalidArgument {
                what: "offset commit".into(),
                reason: format!(
                    "{:?} is a consumer group: only its members commit its offsets (consume -g)",
                    commit.consumer
                ),
            });
        }
        (None, Some(member)) => {
            return CommandResult::Rejected(WireError::FencedMember {
                group: commit.consumer.clone(),
                member: member.clone(),
                reason: "the group does not exist (any more)".into(),
            });
        }
        (None, None) => {}
    }
    let key = (commit.consumer, commit.topic, commit.partition);
    let old_state = md
        .consumers
        .get(&key)
        .and_then(|o| o.state.as_ref())
        .map_or(0, Vec::len);
    let new_state = commit.state.as_ref().map_or(0, Vec::len);
    if new_state > old_state
        && md.state_bytes - old_state + new_state > CONSUMER_STATE_TOTAL_BYTES_MAX
    {
        return CommandResult::Rejected(WireError::InvalidArgument {
            what: "offset commit".into(),
            reason: format!(
                "committed SmartModule states take {} bytes in all, and {CONSUMER_STATE_TOTAL_BYTES_MAX} \
                 is the limit; delete consumers that are done (`sluice consumer delete NAME`)",
                md.state_bytes
            ),
        });
    }
    match md.consumers.get(&key) {
        Some(last) if last.session == commit.session && commit.sequence < last.sequence => {
            return CommandResult::Rejected(WireError::InvalidArgument {
                what: "offset commit".into(),
                reason: format!(
                    "commit {} of this consumer session arrived after its commit {}, \
                     which set offset {}; it was not applied (the newer one stands)",
                    commit.sequence, last.sequence, last.offset
                ),
            });
        }
        Some(_) => {}
        None if md.consumers.len() >= CONSUMER_OFFSETS_MAX => {
            return CommandResult::Rejected(WireError::InvalidArgument {
                what: "offset commit".into(),
                reason: format!(
                    "the cluster stores {CONSUMER_OFFSETS_MAX} committed offsets (one per \
                     consumer and partition), the limit; delete consumers that are done \
                     (`sluice consumer delete NAME`)"
                ),
            });
        }
        None => {}
    }
    md.state_bytes = md.state_bytes - old_state + new_state;
    md.consumers.insert(
        key,
        crate::metadata::CommittedOffset {
            offset: commit.offset,
            committed_ms,
            session: commit.session,
            sequence: commit.sequence,
            state: commit.state,
        },
    );
    CommandResult::Done
}

/// Moves a consumer group on to its next generation of owners.
fn set_group_owners(
    md: &mut Metadata,
    group: String,
    topic: String,
    generation: u64,
    owners: BTreeMap<u32, String>,
    sessions: BTreeMap<String, u64>,
) -> CommandResult {
    use sluice_proto::limits::{CONSUMER_GROUPS_MAX, validate_consumer_name};
    let invalid = |reason: String| {
        CommandResult::Rejected(WireError::InvalidArgument {
            what: "consumer group".into(),
            reason,
        })
    };
    if let Err(reason) = validate_consumer_name(&group) {
        return invalid(reason);
    }
    let Some(record) = md.topics.get(&topic) else {
        return CommandResult::Rejected(WireError::UnknownTopic { topic });
    };
    let partitions = record.info.spec.partitions;
    if let Some(p) = owners.keys().find(|p| **p >= partitions) {
        return CommandResult::Rejected(WireError::UnknownPartition {
            topic,
            partition: *p,
            partitions,
        });
    }
    let current = md.groups.get(&group);
    if let Some(g) = current {
        if g.topic != topic {
            return invalid(format!(
                "group {group:?} consumes topic {:?}, not {topic:?}; a group reads one topic: pick another group name",
                g.topic
            ));
        }
        // The same write again (a retry) is done already.
        if g.generation == generation && g.owners == owners {
            return CommandResult::Done;
        }
    } else if md.groups.len() >= CONSUMER_GROUPS_MAX {
        return invalid(format!(
            "the cluster holds {CONSUMER_GROUPS_MAX} consumer groups, the limit; delete some with `sluice consumer delete NAME`"
        ));
    }
    if md
        .consumers
        .range((group.clone(), String::new(), 0)..)
        .next()
        .is_some_and(|((c, t, _), _)| *c == group && *t != topic)
    {
        return invalid(format!(
            "{group:?} names a consumer with offsets on another topic; a group reads one topic: pick another group name"
        ));
    }
    let expected = current.map_or(1, |g| g.generation + 1);
    if generation != expected {
        // Retriable: the next heartbeat starts from the newer generation.
        return CommandResult::Rejected(WireError::Unavailable {
            what: format!("consumer group {group:?}"),
            reason: format!(
                "generation {generation} is not its next one ({expected}): its coordinator changed meanwhile"
            ),
        });
    }
    md.groups.insert(
        group,
        crate::metadata::GroupRecord {
            topic,
            generation,
            owners,
            sessions,
        },
    );
    CommandResult::Done
}

/// Grants `entry`, after the checks every replica makes alike.
fn add_acl(md: &mut Metadata, entry: AclEntry) -> CommandResult {
    let invalid = |reason: String| {
        CommandResult::Rejected(WireError::InvalidArgument {
            what: "ACL entry".into(),
            reason,
        })
    };
    if let Err(reason) = entry.validate() {
        return invalid(reason);
    }
    if md.acls.contains(&entry) {
        return CommandResult::Done;
    }
    if md.acls.len() >= ACL_ENTRIES_MAX {
        return invalid(format!(
            "the cluster holds {ACL_ENTRIES_MAX} entries, the limit; remove some, or grant \
             on prefixes instead of names"
        ));
    }
    md.acls.insert(entry);
    CommandResult::Done
}

/// Records a node's address and, when it announces itself, its data-dir
/// incarnation. An incarnation never changes once set: a node id whose data
/// was wiped comes back with a new one and is refused.
fn register_node(md: &mut Metadata, node: NodeRecord) -> CommandResult {
    let refuse = |reason: String| {
        CommandResult::Rejected(WireError::InvalidArgument {
            what: format!("node id {}", node.id),
            reason,
        })
    };
    if md.removed.contains(&node.id) {
        return refuse(
            "it was unregistered from this cluster and ids are never reused; start the node with a new --id and --join".into(),
        );
    }
    let known = md.nodes.get(&node.id).and_then(|n| n.incarnation.clone());
    let incarnation = match (known, node.incarnation) {
        (Some(old), Some(new)) if old != new => {
            return refuse(format!(
                "it already ran with another data dir (incarnation {old}, this one is {new}): its data was wiped or the id belongs to another node; a node that lost its data must not vote again under its old id: start it with a new --id and --join"
            ));
        }
        (old, new) => new.or(old),
    };
    md.nodes.insert(
        node.id,
        NodeRecord {
            id: node.id,
            addr: node.addr,
            incarnation,
        },
    );
    CommandResult::Done
}

fn same_set(a: &[NodeId], b: &[NodeId]) -> bool {
    let set = |v: &[NodeId]| v.iter().copied().collect::<std::collections::BTreeSet<_>>();
    set(a) == set(b)
}

fn unregister_node(md: &mut Metadata, id: NodeId) -> CommandResult {
    if !md.nodes.contains_key(&id) {
        return CommandResult::Rejected(WireError::InvalidArgument {
            what: format!("node id {id}"),
            reason: "no such node in this cluster; see `sluice cluster spu list`".into(),
        });
    }
    let mut holding: Vec<String> = Vec::new();
    for t in md.topics.values() {
        for a in &t.info.assignments {
            let leaving = t.moving.get(&a.partition);
            if a.replicas.contains(&id) || leaving.is_some_and(|l| l.contains(&id)) {
                holding.push(format!("{}/{}", t.info.spec.name, a.partition));
            }
        }
    }
    if !holding.is_empty() {
        return CommandResult::Rejected(WireError::InvalidArgument {
            what: format!("node id {id}"),
            reason: format!(
                "it still holds replicas of {}; move them first with `sluice partition reassign`",
                holding.join(", ")
            ),
        });
    }
    md.nodes.remove(&id);
    md.removed.insert(id);
    CommandResult::Done
}

fn reassign(
    md: &mut Metadata,
    topic: &str,
    partition: u32,
    replicas: Vec<NodeId>,
) -> CommandResult {
    let invalid = |reason: String| {
        CommandResult::Rejected(WireError::InvalidArgument {
            what: "--replicas".into(),
            reason,
        })
    };
    let Some(record) = md.topics.get(topic) else {
        return CommandResult::Rejected(WireError::UnknownTopic {
            topic: topic.to_string(),
        });
    };
    let partitions = record.info.spec.partitions;
    let Some(current) = record.info.assignments.get(partition as usize) else {
        return CommandResult::Rejected(WireError::UnknownPartition {
            topic: topic.to_string(),
            partition,
            partitions,
        });
    };
    if replicas.is_empty() {
        return invalid("name at least one node".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    for n in &replicas {
        if !seen.insert(*n) {
            return invalid(format!("node {n} is listed twice"));
        }
        if !md.nodes.contains_key(n) {
            return invalid(format!(
                "node {n} is not in the cluster; see `sluice cluster spu list`"
            ));
        }
    }
    if record.moving.contains_key(&partition) {
        return CommandResult::Rejected(WireError::Unavailable {
            what: format!("partition {topic}/{partition}"),
            reason: "a reassignment of it is still under way; retry when `sluice partition list` shows no leaving replicas".into(),
        });
    }
    if same_set(&current.replicas, &replicas) {
        return CommandResult::Reassigned(current.clone());
    }
    let leaving: Vec<NodeId> = current
        .replicas
        .iter()
        .copied()
        .filter(|n| !replicas.contains(n))
        .collect();
    let record = md.topics.get_mut(topic).expect("checked above");
    let assignment = &mut record.info.assignments[partition as usize];
    assignment.replicas = replicas;
    let assignment = assignment.clone();
    // Present (even if empty) while the move is under way.
    record.moving.insert(partition, leaving);
    record.reassigned.insert(partition);
    CommandResult::Reassigned(assignment)
}

impl ReplicatedState for ControllerStateMachine {
    fn apply(&mut self, index: u64, command: &[u8]) -> io::Result<Vec<u8>> {
        let result = {
            let mut md = self.state.write().unwrap_or_else(|p| p.into_inner());
            if index <= md.last_index {
                // Already applied before a restart; the proposer is gone.
                return Ok(encode(&CommandResult::Done));
            }
            md.last_index = index;
            match decode::<Command>(command) {
                Ok(command) => Self::execute(&mut md, command),
                Err(reason) => CommandResult::Rejected(WireError::MalformedRequest { reason }),
            }
        };
        self.changes.send_modify(|v| *v += 1);
        Ok(encode(&result))
    }

    fn sync(&mut self) -> io::Result<()> {
        let bytes = encode_metadata(&self.state.read().unwrap_or_else(|p| p.into_inner()));
        write_atomically(&self.path, &bytes)
    }

    fn snapshot(&mut self) -> io::Result<Vec<u8>> {
        Ok(encode_metadata(
            &self.state.read().unwrap_or_else(|p| p.into_inner()),
        ))
    }

    fn install_snapshot(&mut self, data: &[u8]) -> io::Result<()> {
        let md =
            decode_metadata(data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = md;
        self.changes.send_modify(|v| *v += 1);
        Ok(())
    }
}

/// Replaces `path` with `bytes` so that a crash leaves either the old or the
/// new content, never a mix.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(sm: &mut ControllerStateMachine, index: u64, c: Command) -> CommandResult {
        decode(&sm.apply(index, &encode(&c)).unwrap()).unwrap()
    }

    /// A state machine in `dir` with nodes 1 to `n` registered by entries 1 to `n`.
    fn with_nodes(dir: &std::path::Path, n: u64) -> (ControllerStateMachine, MetadataView) {
        let (mut sm, view) = ControllerStateMachine::open(dir.join("md")).unwrap();
        for id in 1..=n {
            apply(
                &mut sm,
                id,
                Command::RegisterNode(NodeRecord {
                    id,
                    addr: format!("127.0.0.1:{}", 9000 + id),
                    incarnation: None,
                }),
            );
        }
        (sm, view)
    }

    fn grant(principal: &str, topic: &str) -> AclEntry {
        AclEntry {
            principal: principal.into(),
            operation: sluice_proto::Operation::Produce,
            resource: sluice_proto::ResourcePattern::Topic(topic.into()),
        }
    }

    #[test]
    fn acls_are_checked_at_apply_and_survive_sync_and_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("controller.bin");
        let (mut sm, view) = ControllerStateMachine::open(path.clone()).unwrap();
        assert_eq!(
            apply(&mut sm, 1, Command::AddAcl(grant("alice", "orders"))),
            CommandResult::Done
        );
        // Granting twice changes nothing; removing what is not there is refused.
        assert_eq!(
            apply(&mut sm, 2, Command::AddAcl(grant("alice", "orders"))),
            CommandResult::Done
        );
        assert!(matches!(
            apply(&mut sm, 3, Command::RemoveAcl(grant("bob", "orders"))),
            CommandResult::Rejected(WireError::InvalidArgument { .. })
        ));
        let wrong_kind = AclEntry {
            resource: sluice_proto::ResourcePattern::Cluster,
            ..grant("alice", "x")
        };
        assert!(matches!(
            apply(&mut sm, 4, Command::AddAcl(wrong_kind)),
            CommandResult::Rejected(WireError::InvalidArgument { .. })
        ));
        assert_eq!(view.snapshot().acls.len(), 1);
        sm.sync().unwrap();
        let snapshot = sm.snapshot().unwrap();
        drop(sm);
        let (_, reopened) = ControllerStateMachine::open(path).unwrap();
        assert_eq!(reopened.snapshot(), view.snapshot());
        assert_eq!(decode_metadata(&snapshot).unwrap(), view.snapshot());
    }

    #[test]
    fn metadata_of_the_format_before_acls_still_loads() {
        // Format 1: the fields of Metadata without `acls`, no header.
        let mut md = Metadata {
            last_index: 9,
            next_topic_id: 3,
            ..Metadata::default()
        };
        md.removed.insert(4);
        let v1 = sluice_proto::encoding::to_vec(&(
            md.last_index,
            md.next_topic_id,
            &md.nodes,
            &md.removed,
            &md.topics,
            &md.smartmodules,
            &md.recent_requests,
        ))
        .unwrap();
        assert_eq!(decode_metadata(&v1).unwrap(), md);
    }

    /// One command of each kind, as a leader proposes them.
    fn sample_commands() -> Vec<Command> {
        let module = SmartModuleRecord {
            info: sluice_proto::SmartModuleInfo {
                name: "redact".into(),
                kind: sluice_proto::SmartModuleKind::Map,
                size_bytes: 300,
                hash: "ab".repeat(32),
                created_ms: -1,
            },
            wasm: vec![0; 300],
        };
        vec![
            Command::RegisterNode(crate::NodeRecord {
                id: 1,
                addr: "127.0.0.1:9001".into(),
                incarnation: Some("inc-1".into()),
            }),
            Command::RegisterNode(crate::NodeRecord {
                id: 2,
                addr: "127.0.0.1:9002".into(),
                incarnation: None,
            }),
            Command::CreateTopic {
                spec: TopicSpec {
                    partitions: 2,
                    retention_ms: Some(1 << 40),
                    ..TopicSpec::new("orders")
                },
                created_ms: 1_700_000_000_000,
                live: Some(vec![1, 2]),
            },
            Command::CreateSmartModule(module),
            Command::AddAcl(grant("alice", "orders")),
            Command::Once {
                id: [u64::MAX, 2],
                command: Box::new(Command::DeleteTopic { name: "t".into() }),
            },
            Command::ReassignPartition {
                topic: "orders".into(),
                partition: 1,
                replicas: vec![2, 1],
            },
            Command::UnregisterNode { id: 7 },
            Command::DeleteSmartModule {
                name: "gone".into(),
            },
            // Added with metadata format 3: the samples above are what
            // `metadata-v2.bin` was made from.
            Command::CommitOffset {
                commit: sluice_proto::OffsetCommit {
                    consumer: "billing".into(),
                    topic: "orders".into(),
                    partition: 1,
                    offset: 42,
                    session: 7,
                    sequence: 3,
                    state: Some(b"120".to_vec()),
                    member: None,
                },
                committed_ms: 1_700_000_000_001,
                topic_id: 1,
            },
            Command::DeleteConsumer {
                consumer: "gone".into(),
                topic: Some("orders".into()),
            },
            Command::SetGroupOwners {
                group: "shippers".into(),
                topic: "orders".into(),
                generation: 1,
                owners: [(0, "m-1".to_string()), (1, "m-2".to_string())].into(),
                sessions: [("m-1".to_string(), 10_000), ("m-2".to_string(), 3_000)].into(),
            },
        ]
    }

    /// How many of [`sample_commands`] format 2 knew.
    const SAMPLE_COMMANDS_V2: usize = 9;

    fn applied(commands: Vec<Command>) -> Metadata {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, view) = ControllerStateMachine::open(dir.path().join("md")).unwrap();
        for (i, c) in commands.into_iter().enumerate() {
            apply(&mut sm, i as u64 + 1, c);
        }
        view.snapshot()
    }

    /// Metadata files and snapshots written by format 2 (before consumer
    /// offsets) still load, as the same metadata with no offsets.
    #[test]
    fn metadata_of_format_2_still_loads() {
        let old = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/metadata-v2.bin"),
        )
        .unwrap();
        let mut samples = Vec::new();
        let mut rest = old.as_slice();
        while let [a, b, c, d, tail @ ..] = rest {
            let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
            samples.push(decode_metadata(&tail[..len]).unwrap());
            rest = &tail[len..];
        }
        let mut commands = sample_commands();
        commands.truncate(SAMPLE_COMMANDS_V2);
        assert_eq!(samples, vec![Metadata::default(), applied(commands)]);
    }

    #[test]
    fn partitions_are_added_where_a_new_topic_would_put_them() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, view) = with_nodes(dir.path(), 3);
        let created = apply(
            &mut sm,
            4,
            Command::CreateTopic {
                spec: TopicSpec {
                    partitions: 2,
                    replication: 2,
                    ..TopicSpec::new("t")
                },
                created_ms: 1,
                live: None,
            },
        );
        let CommandResult::TopicCreated(before) = created else {
            panic!("{created:?}")
        };
        let add = |count, live: Option<Vec<u64>>| Command::AddPartitions {
            topic: "t".into(),
            count,
            live,
        };
        let CommandResult::TopicCreated(after) = apply(&mut sm, 5, add(2, None)) else {
            panic!("not added")
        };
        assert_eq!(after.spec.partitions, 4);
        assert_eq!(after.assignments[..2], before.assignments[..]);
        // The same rotation a 4-partition topic of this id would have had.
        let fresh = view.with(|md| {
            md.added_partitions("t", 1, None)
                .map(|a| a[0].replicas.clone())
                .unwrap()
        });
        assert_eq!(fresh.len(), 2);
        for (i, a) in after.assignments.iter().enumerate() {
            assert_eq!(a.partition, i as u32);
            assert_eq!(a.replicas.len(), 2);
        }
        // Placed on live nodes only; bad counts and unknown topics refused.
        let CommandResult::TopicCreated(live_only) = apply(&mut sm, 6, add(1, Some(vec![2, 3])))
        else {
            panic!("not added")
        };
        assert!(
            live_only.assignments[4]
                .replicas
                .iter()
                .all(|n| [2, 3].contains(n))
        );
        assert!(matches!(
            apply(&mut sm, 7, add(0, None)),
            CommandResult::Rejected(WireError::InvalidArgument { .. })
        ));
        assert!(matches!(
            apply(&mut sm, 8, add(1, Some(vec![1]))),
            CommandResult::Rejected(WireError::InvalidArgument { .. })
        ));
        assert!(matches!(
            apply(
                &mut sm,
                9,
                add(sluice_proto::limits::TOPIC_PARTITIONS_MAX, None)
            ),
            CommandResult::Rejected(WireError::InvalidArgument { .. })
        ));
        assert_eq!(view.snapshot().topics["t"].info.spec.partitions, 5);
    }

    #[test]
    fn group_owners_move_one_generation_at_a_time_and_fence_commits() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, view) = ControllerStateMachine::open(dir.path().join("md")).unwrap();
        let mut index = 0;
        let mut apply = |sm: &mut ControllerStateMachine, c| {
            index += 1;
            apply(sm, index, c)
        };
        apply(
            &mut sm,
            Command::RegisterNode(NodeRecord {
                id: 1,
                addr: "127.0.0.1:9003".into(),
                incarnation: None,
            }),
        );
        for t in ["orders", "other"] {
            apply(
                &mut sm,
                Command::CreateTopic {
                    spec: TopicSpec {
                        partitions: 2,
                        ..TopicSpec::new(t)
                    },
                    created_ms: 1,
                    live: None,
                },
            );
        }
        let owners = |generation, topic: &str, list: &[(u32, &str)]| Command::SetGroupOwners {
            group: "g".into(),
            topic: topic.into(),
            generation,
            owners: list.iter().map(|(p, m)| (*p, m.to_string())).collect(),
            sessions: list.iter().map(|(_, m)| (m.to_string(), 1_000)).collect(),
        };
        let rejected = |r: CommandResult| matches!(r, CommandResult::Rejected(_));
        // A first generation other than 1, or a partition the topic lacks: refused.
        assert!(rejected(apply(&mut sm, owners(2, "orders", &[(0, "a")]))));
        assert!(rejected(apply(&mut sm, owners(1, "orders", &[(2, "a")]))));
        assert_eq!(
            apply(&mut sm, owners(1, "orders", &[(0, "a"), (1, "a")])),
            CommandResult::Done
        );
        // The same write again is done; a stale or skipped generation is not.
        assert_eq!(
            apply(&mut sm, owners(1, "orders", &[(0, "a"), (1, "a")])),
            CommandResult::Done
        );
        assert!(rejected(apply(&mut sm, owners(1, "orders", &[(0, "b")]))));
        assert!(rejected(apply(&mut sm, owners(3, "orders", &[(0, "b")]))));
        // One topic per group.
        assert!(rejected(apply(&mut sm, owners(2, "other", &[]))));
        assert_eq!(
            apply(&mut sm, owners(2, "orders", &[(0, "a"), (1, "b")])),
            CommandResult::Done
        );
        let commit = |partition, member: Option<&str>| Command::CommitOffset {
            commit: sluice_proto::OffsetCommit {
                consumer: "g".into(),
                topic: "orders".into(),
                partition,
                offset: 0,
                session: 1,
                sequence: 0,
                state: None,
                member: member.map(str::to_string),
            },
            committed_ms: 1,
            topic_id: 1,
        };
        assert_eq!(apply(&mut sm, commit(1, Some("b"))), CommandResult::Done);
        // Partition 1 moved from a to b: a is fenced; no member at all is refused.
        assert!(matches!(
            apply(&mut sm, commit(1, Some("a"))),
            CommandResult::Rejected(WireError::FencedMember { .. })
        ));
        assert!(rejected(apply(&mut sm, commit(0, None))));
        // Listed: partition 0 owned by a with nothing committed, 1 by b at 0.
        let listed: Vec<_> = view
            .snapshot()
            .consumer_offsets(Some("g"), None)
            .into_iter()
            .map(|o| (o.partition, o.offset, o.owner))
            .collect();
        assert_eq!(
            listed,
            vec![(0, None, Some("a".into())), (1, Some(0), Some("b".into()))]
        );
        // A group with members is not deleted; without, it is, offsets and all.
        assert!(rejected(apply(
            &mut sm,
            Command::DeleteConsumer {
                consumer: "g".into(),
                topic: None
            }
        )));
        apply(&mut sm, owners(3, "orders", &[]));
        assert_eq!(
            apply(
                &mut sm,
                Command::DeleteConsumer {
                    consumer: "g".into(),
                    topic: None
                }
            ),
            CommandResult::Done
        );
        assert!(view.snapshot().groups.is_empty() && view.snapshot().consumers.is_empty());
    }

    #[test]
    fn offsets_are_checked_at_apply_fenced_by_session_and_go_with_their_topic() {
        let commit = |consumer: &str, partition, offset, session, sequence| Command::CommitOffset {
            commit: sluice_proto::OffsetCommit {
                consumer: consumer.into(),
                topic: "orders".into(),
                partition,
                offset,
                session,
                sequence,
                state: None,
                member: None,
            },
            committed_ms: 5,
            topic_id: 1,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("controller.bin");
        let (mut sm, view) = ControllerStateMachine::open(path.clone()).unwrap();
        let mut index = 0;
        let mut apply = |sm: &mut ControllerStateMachine, c| {
            index += 1;
            apply(sm, index, c)
        };
        assert_eq!(
            apply(&mut sm, commit("a", 0, 1, 1, 1)),
            CommandResult::Rejected(WireError::UnknownTopic {
                topic: "orders".into()
            })
        );
        apply(
            &mut sm,
            Command::RegisterNode(NodeRecord {
                id: 1,
                addr: "127.0.0.1:9003".into(),
                incarnation: None,
            }),
        );
        apply(
            &mut sm,
            Command::CreateTopic {
                spec: TopicSpec {
                    partitions: 2,
                    ..TopicSpec::new("orders")
                },
                created_ms: 1,
                live: None,
            },
        );
        assert!(matches!(
            apply(&mut sm, commit("a", 2, 1, 1, 1)),
            CommandResult::Rejected(WireError::UnknownPartition { partition: 2, .. })
        ));
        assert!(matches!(
            apply(&mut sm, commit("Bad Name", 0, 1, 1, 1)),
            CommandResult::Rejected(WireError::InvalidArgument { .. })
        ));
        let mut too_big = commit("a", 0, 10, 1, 5);
        if let Command::CommitOffset { commit, .. } = &mut too_big {
            commit.state = Some(vec![0; sluice_proto::limits::CONSUMER_STATE_BYTES_MAX + 1]);
        }
        assert!(matches!(
            apply(&mut sm, too_big),
            CommandResult::Rejected(WireError::InvalidArgument { .. })
        ));
        // Checked against a topic of the same name deleted since: refused.
        let mut old_topic = commit("a", 0, 10, 1, 5);
        if let Command::CommitOffset { topic_id, .. } = &mut old_topic {
            *topic_id = 7;
        }
        assert!(matches!(
            apply(&mut sm, old_topic),
            CommandResult::Rejected(WireError::InvalidArgument { .. })
        ));
        assert_eq!(
            apply(&mut sm, commit("a", 0, 10, 1, 5)),
            CommandResult::Done
        );
        // Older commit of the same session: refused, the offset stands.
        assert!(matches!(
            apply(&mut sm, commit("a", 0, 3, 1, 4)),
            CommandResult::Rejected(WireError::InvalidArgument { .. })
        ));
        // A new session may move it anywhere, back included.
        assert_eq!(apply(&mut sm, commit("a", 0, 2, 9, 0)), CommandResult::Done);
        assert_eq!(apply(&mut sm, commit("b", 1, 4, 3, 0)), CommandResult::Done);
        let offsets = |md: &Metadata, c: Option<&str>| -> Vec<(String, u32, u64)> {
            md.consumer_offsets(c, None)
                .into_iter()
                .map(|o| (o.consumer, o.partition, o.offset.unwrap()))
                .collect()
        };
        assert_eq!(
            offsets(&view.snapshot(), Some("a")),
            vec![("a".into(), 0, 2)]
        );
        assert_eq!(offsets(&view.snapshot(), None).len(), 2);
        // They survive a restart (sync) and travel in snapshots.
        sm.sync().unwrap();
        assert_eq!(
            decode_metadata(&sm.snapshot().unwrap()).unwrap(),
            view.snapshot()
        );
        let (_, reopened) = ControllerStateMachine::open(path).unwrap();
        assert_eq!(reopened.snapshot(), view.snapshot());
        // Deleting: by topic, then unknown.
        assert_eq!(
            apply(
                &mut sm,
                Command::DeleteConsumer {
                    consumer: "a".into(),
                    topic: Some("orders".into())
                }
            ),
            CommandResult::Done
        );
        assert!(matches!(
            apply(
                &mut sm,
                Command::DeleteConsumer {
                    consumer: "a".into(),
                    topic: None
                }
            ),
            CommandResult::Rejected(WireError::UnknownConsumer { .. })
        ));
        // A deleted topic takes its offsets along.
        apply(
            &mut sm,
            Command::DeleteTopic {
                name: "orders".into(),
            },
        );
        assert!(view.snapshot().consumers.is_empty());
    }

    /// Commands in the Raft log and the metadata file and snapshots of an
    /// earlier build stay readable, byte for byte (see
    /// `sluice_fuzzing::golden`).
    #[test]
    fn golden_commands_and_metadata() {
        let commands = sample_commands();
        sluice_fuzzing::golden::check(
            env!("CARGO_MANIFEST_DIR"),
            "commands",
            &commands,
            encode,
            decode::<Command>,
        );
        let md = applied(commands);
        assert!(!md.topics.is_empty() && !md.recent_requests.is_empty());
        assert!(!md.consumers.is_empty());
        sluice_fuzzing::golden::check(
            env!("CARGO_MANIFEST_DIR"),
            "metadata",
            &[Metadata::default(), md],
            encode_metadata,
            decode_metadata,
        );
        // Commands added since, in a file of their own.
        let placement = [
            Command::AddPartitions {
                topic: "orders".into(),
                count: 2,
                live: Some(vec![1, 2]),
            },
            Command::CreateTopicAssigned {
                spec: TopicSpec {
                    partitions: 2,
                    replication: 2,
                    ..TopicSpec::new("placed")
                },
                created_ms: 1_700_000_000_002,
                assignments: vec![
                    PartitionAssignment {
                        partition: 0,
                        replicas: vec![2, 1],
                    },
                    PartitionAssignment {
                        partition: 1,
                        replicas: vec![1, 2],
                    },
                ],
            },
        ];
        sluice_fuzzing::golden::check(
            env!("CARGO_MANIFEST_DIR"),
            "commands-placement",
            &placement,
            encode,
            decode::<Command>,
        );
    }

    /// Topics with settings (compression): the command that creates them and
    /// metadata format 4, which stores the settings after format 3's fields,
    /// held still byte for byte. Metadata without settings is still written
    /// as format 3 (or 2), and deleting the topic drops its settings.
    #[test]
    fn topic_settings_are_kept_in_format_4_and_leave_with_their_topic() {
        use sluice_proto::TopicCompression;
        let gzip = TopicSettingsV1 {
            compression: TopicCompression::Gzip,
        };
        let settings_commands = vec![
            Command::CreateTopicWith {
                spec: TopicSpec {
                    partitions: 2,
                    ..TopicSpec::new("zipped")
                },
                created_ms: 1_700_000_000_003,
                assignments: None,
                live: Some(vec![1, 2]),
                settings: gzip,
            },
            Command::CreateTopicWith {
                spec: TopicSpec::new("placed-lz4"),
                created_ms: 1_700_000_000_004,
                assignments: Some(vec![PartitionAssignment {
                    partition: 0,
                    replicas: vec![2],
                }]),
                live: None,
                settings: TopicSettingsV1 {
                    compression: TopicCompression::Lz4,
                },
            },
        ];
        sluice_fuzzing::golden::check(
            env!("CARGO_MANIFEST_DIR"),
            "commands-settings",
            &settings_commands,
            encode,
            decode::<Command>,
        );
        let mut commands = sample_commands();
        commands.extend(settings_commands);
        let md = applied(commands);
        assert_eq!(md.topic_settings_of("zipped"), gzip.into());
        assert_eq!(
            md.topic_settings_of("placed-lz4").compression,
            TopicCompression::Lz4
        );
        assert_eq!(md.topic_settings_of("orders"), TopicSettings::default());
        assert_eq!(&encode_metadata(&md)[4..6], &4u16.to_be_bytes());
        sluice_fuzzing::golden::check(
            env!("CARGO_MANIFEST_DIR"),
            "metadata-v4",
            std::slice::from_ref(&md),
            encode_metadata,
            decode_metadata,
        );
        // Without settings, the format the previous release reads.
        let mut without = md.clone();
        without.topic_settings.clear();
        assert_eq!(&encode_metadata(&without)[4..6], &3u16.to_be_bytes());
        assert_eq!(
            decode_metadata(&encode_metadata(&without)).unwrap(),
            without
        );
        // Deleted, the topic's settings go; created again, it has none.
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, view) = with_nodes(dir.path(), 2);
        let create = |compression| Command::CreateTopicWith {
            spec: TopicSpec::new("again"),
            created_ms: 1,
            assignments: None,
            live: None,
            settings: TopicSettingsV1 { compression },
        };
        apply(&mut sm, 10, create(TopicCompression::Zstd));
        assert_eq!(view.snapshot().topic_settings.len(), 1);
        apply(
            &mut sm,
            11,
            Command::DeleteTopic {
                name: "again".into(),
            },
        );
        assert!(view.snapshot().topic_settings.is_empty());
        apply(
            &mut sm,
            12,
            Command::CreateTopic {
                spec: TopicSpec::new("again"),
                created_ms: 2,
                live: None,
            },
        );
        assert_eq!(
            view.snapshot().topic_settings_of("again"),
            TopicSettings::default()
        );
        // A name that is taken is refused with nothing changed.
        let before = view.snapshot();
        let refused = apply(&mut sm, 13, create(TopicCompression::Gzip));
        assert!(matches!(
            refused,
            CommandResult::Rejected(WireError::TopicExists { .. })
        ));
        assert_eq!(view.snapshot().topic_settings, before.topic_settings);
    }

    /// Settings in their current shape (key hash, system topic) come in
    /// `CreateTopicV2` and are kept in format 5, byte for byte; a plain
    /// deletion refuses a system topic, a forced one deletes it.
    #[test]
    fn system_topics_and_key_hashes_are_kept_in_format_5_and_deleted_only_forcibly() {
        use sluice_proto::{KeyHash, TopicCompression};
        let system = TopicSettings {
            compression: TopicCompression::Any,
            key_hash: KeyHash::SipHash24,
            system: true,
        };
        let commands_v2 = vec![
            Command::CreateTopicV2 {
                spec: TopicSpec::new("audit"),
                created_ms: 1_700_000_000_005,
                assignments: None,
                live: Some(vec![1, 2]),
                settings: system.clone(),
            },
            Command::CreateTopicV2 {
                spec: TopicSpec::new("hashed"),
                created_ms: 1_700_000_000_006,
                assignments: None,
                live: Some(vec![1, 2]),
                settings: TopicSettings::for_new_topic(),
            },
            Command::DeleteTopic {
                name: "audit".into(),
            },
        ];
        sluice_fuzzing::golden::check(
            env!("CARGO_MANIFEST_DIR"),
            "commands-settings-v2",
            &commands_v2,
            encode,
            decode::<Command>,
        );
        let mut commands = sample_commands();
        commands.extend(commands_v2);
        let md = applied(commands);
        // The plain deletion was refused.
        assert_eq!(md.topic_settings_of("audit"), system);
        assert_eq!(md.topic_settings_of("hashed").key_hash, KeyHash::SipHash24);
        assert_eq!(md.topic_settings_of("orders"), TopicSettings::default());
        assert_eq!(&encode_metadata(&md)[4..6], &5u16.to_be_bytes());
        sluice_fuzzing::golden::check(
            env!("CARGO_MANIFEST_DIR"),
            "metadata-v5",
            std::slice::from_ref(&md),
            encode_metadata,
            decode_metadata,
        );
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, view) = with_nodes(dir.path(), 2);
        apply(
            &mut sm,
            10,
            Command::CreateTopicV2 {
                spec: TopicSpec::new("audit"),
                created_ms: 1,
                assignments: None,
                live: None,
                settings: system,
            },
        );
        let refused = apply(
            &mut sm,
            11,
            Command::DeleteTopic {
                name: "audit".into(),
            },
        );
        assert_eq!(
            refused,
            CommandResult::Rejected(WireError::SystemTopic {
                topic: "audit".into()
            })
        );
        assert!(view.snapshot().topics.contains_key("audit"));
        let forced = apply(
            &mut sm,
            12,
            Command::DeleteTopicForced {
                name: "audit".into(),
            },
        );
        assert_eq!(forced, CommandResult::Done);
        assert!(view.snapshot().topics.is_empty() && view.snapshot().topic_settings.is_empty());
    }

    /// A topic placed by the caller: created as asked when every partition
    /// is placed once, in order, on distinct registered nodes; refused (and
    /// nothing changed) otherwise.
    #[test]
    fn a_topic_is_created_where_the_caller_places_it_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, view) = with_nodes(dir.path(), 3);
        let spec = TopicSpec {
            partitions: 2,
            replication: 2,
            ..TopicSpec::new("placed")
        };
        let place = |maps: &[(u32, &[u64])]| -> Vec<PartitionAssignment> {
            maps.iter()
                .map(|&(partition, replicas)| PartitionAssignment {
                    partition,
                    replicas: replicas.to_vec(),
                })
                .collect()
        };
        let mut index = 3;
        let mut create = |assignments| {
            index += 1;
            apply(
                &mut sm,
                index,
                Command::CreateTopicAssigned {
                    spec: spec.clone(),
                    created_ms: 1,
                    assignments,
                },
            )
        };
        for (maps, why) in [
            (
                &[(0, &[1, 2][..])][..],
                "1 partition(s) placed for a topic of 2",
            ),
            (
                &[(1, &[1, 2][..]), (0, &[2, 3][..])][..],
                "partition 1 is placed where partition 0 belongs",
            ),
            (
                &[(0, &[1][..]), (1, &[2, 3][..])][..],
                "partition 0 has 1 replica(s)",
            ),
            (
                &[(0, &[1, 1][..]), (1, &[2, 3][..])][..],
                "names node 1 twice",
            ),
            (
                &[(0, &[1, 2][..]), (1, &[2, 9][..])][..],
                "names node 9, which is not in the cluster",
            ),
        ] {
            match create(place(maps)) {
                CommandResult::Rejected(e) => assert!(e.to_string().contains(why), "{e}"),
                other => panic!("{maps:?}: {other:?}"),
            }
            assert!(view.snapshot().topics.is_empty());
        }
        let created = create(place(&[(0, &[3, 1]), (1, &[2, 3])]));
        let CommandResult::TopicCreated(info) = created else {
            panic!("{created:?}")
        };
        assert_eq!(info.assignments, place(&[(0, &[3, 1]), (1, &[2, 3])]));
        assert_eq!(view.snapshot().topics["placed"].info, info);
        match create(place(&[(0, &[3, 1]), (1, &[2, 3])])) {
            CommandResult::Rejected(WireError::TopicExists { .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fuzz_commands_and_metadata_from_the_leader() {
        // Commands arrive in log entries from the leader; metadata in its
        // snapshots and in this node's own file.
        let commands: Vec<Vec<u8>> = [
            Command::AddAcl(grant("alice", "orders")),
            Command::Once {
                id: [1, 2],
                command: Box::new(Command::DeleteTopic { name: "t".into() }),
            },
            Command::CreateTopic {
                spec: TopicSpec::new("t"),
                created_ms: 1,
                live: Some(vec![1, 2]),
            },
            Command::ReassignPartition {
                topic: "t".into(),
                partition: 0,
                replicas: vec![2, 3],
            },
        ]
        .iter()
        .map(encode)
        .collect();
        sluice_fuzzing::run("controller::Command", &commands, |bytes| {
            let _ = decode::<Command>(bytes);
        });
        let mut md = Metadata::default();
        md.acls.insert(grant("alice", "orders"));
        md.removed.insert(4);
        sluice_fuzzing::run("controller::Metadata", &[encode_metadata(&md)], |bytes| {
            let _ = decode_metadata(bytes);
        });
    }

    #[test]
    fn metadata_without_consumers_is_written_as_format_2_for_a_downgrade() {
        let mut md = Metadata {
            last_index: 3,
            ..Metadata::default()
        };
        md.removed.insert(2);
        let bytes = encode_metadata(&md);
        assert_eq!(&bytes[4..6], &2u16.to_be_bytes());
        assert_eq!(decode_metadata(&bytes).unwrap(), md);
        md.groups
            .insert("g".into(), crate::metadata::GroupRecord::default());
        let bytes = encode_metadata(&md);
        assert_eq!(&bytes[4..6], &3u16.to_be_bytes());
        assert_eq!(decode_metadata(&bytes).unwrap(), md);
        md.topic_settings.insert(1, TopicSettings::default());
        let bytes = encode_metadata(&md);
        assert_eq!(&bytes[4..6], &4u16.to_be_bytes());
        assert_eq!(decode_metadata(&bytes).unwrap(), md);
        md.topic_settings.insert(2, TopicSettings::for_new_topic());
        let bytes = encode_metadata(&md);
        assert_eq!(&bytes[4..6], &5u16.to_be_bytes());
        assert_eq!(decode_metadata(&bytes).unwrap(), md);
        md.connectors.insert("c".into(), sample_connector("c"));
        let bytes = encode_metadata(&md);
        assert_eq!(
            &bytes[4..6],
            &crate::metadata_format::METADATA_FORMAT.to_be_bytes()
        );
        assert_eq!(decode_metadata(&bytes).unwrap(), md);
    }

    fn sample_connector(name: &str) -> sluice_proto::ConnectorRecord {
        sluice_proto::ConnectorRecord {
            spec: sluice_proto::ConnectorSpec {
                name: name.into(),
                config: format!(
                    "name: {name}\ntype: http\ntopic: t\ndirection: source\n\
                     parameters:\n  endpoint: http://127.0.0.1:8080/\n"
                ),
            },
            node: 1,
            created_ms: 1_700_000_000_007,
            generation: 0,
        }
    }

    /// Connector commands and metadata format 6 (connectors after format
    /// 5's fields), byte for byte.
    #[test]
    fn golden_connector_commands_and_metadata_format_6() {
        let commands = vec![
            Command::CreateConnector(sample_connector("cat-facts")),
            Command::CreateConnector(sample_connector("dogs")),
            Command::MoveConnector {
                name: "cat-facts".into(),
                generation: 0,
                node: 2,
            },
            Command::DeleteConnector {
                name: "dogs".into(),
            },
        ];
        sluice_fuzzing::golden::check(
            env!("CARGO_MANIFEST_DIR"),
            "commands-connectors",
            &commands,
            encode,
            decode::<Command>,
        );
        let mut all = sample_commands();
        all.extend(commands);
        let md = applied(all);
        assert_eq!(md.connectors.len(), 1);
        assert_eq!(md.connectors["cat-facts"].node, 2);
        assert_eq!(md.connectors["cat-facts"].generation, 1);
        assert_eq!(&encode_metadata(&md)[4..6], &6u16.to_be_bytes());
        sluice_fuzzing::golden::check(
            env!("CARGO_MANIFEST_DIR"),
            "metadata-v6",
            std::slice::from_ref(&md),
            encode_metadata,
            decode_metadata,
        );
    }

    #[test]
    fn corrupt_or_future_metadata_is_refused_with_its_reason() {
        let good = encode_metadata(&Metadata::default());
        let mut future = good.clone();
        future[4..6].copy_from_slice(&99u16.to_be_bytes());
        let err = decode_metadata(&future).unwrap_err();
        assert!(err.contains("format 99"), "{err}");
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode_metadata(&trailing).unwrap_err().contains("trailing"));
        assert!(decode_metadata(b"SLMD").is_err());
        // A length claiming petabytes is refused, not allocated.
        let mut huge = good[..6].to_vec();
        huge.extend_from_slice(&[0, 0, 0, 0xff, 0, 0, 0, 0, 0, 0, 0x40]);
        assert!(decode_metadata(&huge).is_err());
        for len in 0..good.len() {
            let _ = decode_metadata(&good[..len]);
        }
    }

    #[test]
    fn topics_are_validated_at_apply_and_survive_sync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("controller.bin");
        let (mut sm, view) = ControllerStateMachine::open(path.clone()).unwrap();
        let node = NodeRecord {
            id: 1,
            addr: "127.0.0.1:9003".into(),
            incarnation: None,
        };
        assert_eq!(
            apply(&mut sm, 1, Command::RegisterNode(node)),
            CommandResult::Done
        );
        let create = |name: &str, r| Command::CreateTopic {
            live: None,
            spec: TopicSpec {
                replication: r,
                partitions: 2,
                ..TopicSpec::new(name)
            },
            created_ms: 5,
        };
        assert!(matches!(
            apply(&mut sm, 2, create("a", 1)),
            CommandResult::TopicCreated(_)
        ));
        assert_eq!(
            apply(&mut sm, 3, create("a", 1)),
            CommandResult::Rejected(WireError::TopicExists { topic: "a".into() })
        );
        assert!(matches!(
            apply(&mut sm, 4, create("b", 2)),
            CommandResult::Rejected(WireError::InvalidArgument { .. })
        ));
        // A replayed index changes nothing.
        assert_eq!(
            apply(&mut sm, 2, Command::DeleteTopic { name: "a".into() }),
            CommandResult::Done
        );
        assert!(view.snapshot().topics.contains_key("a"));
        sm.sync().unwrap();
        let (_, reloaded) = ControllerStateMachine::open(path).unwrap();
        let md = reloaded.snapshot();
        assert_eq!(md.last_index, 4);
        assert_eq!(md.topics["a"].info.assignments.len(), 2);
        assert_eq!(md.topics["a"].id, 1);
    }
}
