//! The controller: the cluster's metadata (nodes, topics, partition
//! assignments) as a state machine replicated by a Raft group.
//!
//! [`Metadata`] is the state; [`Command`]s change it, and only through
//! the `apply` of [`ControllerStateMachine`], which is deterministic: validation that
//! depends on the state (does the topic exist? are there enough nodes?) happens
//! at apply time, so every replica reaches the same verdict. Readers get a
//! [`MetadataView`]: a shared, read-only view plus a change notification.
//!
//! The controller does not know about QUIC, segments or WASM.

mod connectors;
mod metadata;
mod metadata_format;
mod state_machine;
mod timeouts;

pub use metadata::{GroupRecord, Metadata, NodeRecord, SmartModuleRecord, TopicRecord};
pub use state_machine::{Command, CommandResult, ControllerStateMachine, MetadataView};

use std::sync::Arc;
use std::time::Duration;

use sluice_proto::RaftRpcKind;
use sluice_proto::{NodeId, PartitionAssignment, TopicInfo, TopicSpec, WireError};
use sluice_raft::{
    CONTROLLER_GROUP, Group, GroupConfig, LogDb, RaftError, RaftTransport, WriteError,
};

pub use timeouts::COMMIT_WAIT_MAX;
use timeouts::LIVENESS_WINDOW;

/// The controller group as seen from one node.
#[derive(Clone)]
pub struct Controller {
    group: Group<ControllerStateMachine>,
    view: MetadataView,
    /// This node.
    node: NodeId,
    /// The id of the `Request::Once` this handle serves, if any (see
    /// [`Controller::once`]): every change proposed through it is tagged
    /// with it, so a retried or late-forwarded copy of the request is not
    /// applied twice.
    request_id: Option<sluice_proto::RequestId>,
}

impl Controller {
    /// Starts this node's replica of the controller group, recovering the
    /// metadata from `state_path` and the Raft log.
    pub async fn start(
        db: Arc<LogDb>,
        node: NodeId,
        state_path: std::path::PathBuf,
        transport: Arc<dyn RaftTransport>,
    ) -> Result<Self, ControllerError> {
        let (sm, view) = ControllerStateMachine::open(state_path)?;
        let config = GroupConfig {
            snapshot_every_entries: 200,
            ..Default::default()
        };
        let group = Group::start(db, node, CONTROLLER_GROUP, sm, &config, transport).await?;
        Ok(Self {
            group,
            view,
            node,
            request_id: None,
        })
    }

    /// Lets the controller's group sleep while no metadata changes (see
    /// `sluice_raft::Quiescence`): an idle cluster's controller then sends
    /// no heartbeats, and its nodes watch its leader with the probes they
    /// send for sleeping partition groups anyway.
    pub async fn quiesce_with(&self, quiescence: &sluice_raft::Quiescence) {
        self.group.quiesce_with(quiescence).await;
    }

    /// A request for the controller's leader is about to be passed on to it:
    /// if the group sleeps here, its leader's node is asked at once whether
    /// it still leads (`sluice_raft::Group::recheck_sleeping_leader`).
    pub fn recheck_sleeping_leader(&self) {
        self.group.recheck_sleeping_leader();
    }

    /// This controller, for serving the `Request::Once` of `id`: what is
    /// proposed through the handle returned is applied at most once per
    /// id. The node's request handler passes it to whatever serves the
    /// request's change.
    pub fn once(&self, id: sluice_proto::RequestId) -> Controller {
        Controller {
            request_id: Some(id),
            ..self.clone()
        }
    }

    /// Gives a new controller group its first voters; no effect if the group
    /// already has members (e.g. after a restart).
    pub async fn bootstrap(&self, voters: &[(NodeId, String)]) -> Result<(), ControllerError> {
        self.group.initialize(voters).await?;
        Ok(())
    }

    /// Adds a node as a learner of the controller group, so it holds the
    /// whole metadata without voting. Only the leader can do it.
    pub async fn add_learner(&self, node: NodeId, addr: String) -> Result<(), WireError> {
        self.group
            .add_learner(node, addr)
            .await
            .map_err(write_error)
    }

    /// Voters and learners of the controller group.
    pub fn members(&self) -> (Vec<NodeId>, Vec<NodeId>) {
        self.group.members()
    }

    pub fn is_leader(&self) -> bool {
        self.group.status().is_leader
    }

    /// Serves a Raft RPC for the controller group.
    pub async fn handle_rpc(&self, kind: RaftRpcKind, payload: &[u8]) -> Vec<u8> {
        self.group.handle_rpc(kind, payload).await
    }

    /// Serves a leader's append stream for the controller group (see
    /// `sluice_raft::Group::serve_append_stream`).
    pub fn serve_append_stream(
        &self,
        requests: impl futures::Stream<Item = Vec<u8>> + Send + 'static,
    ) -> impl futures::Stream<Item = Vec<u8>> + Send + 'static {
        self.group.serve_append_stream(requests)
    }

    pub fn view(&self) -> &MetadataView {
        &self.view
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.group.status().leader
    }

    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<NodeId> {
        self.group.wait_for_leader(timeout).await
    }

    /// Waits until the metadata includes everything committed before a restart.
    pub async fn wait_for_recovery(&self, timeout: Duration) -> bool {
        self.group.wait_for_recovery(timeout).await
    }

    pub async fn register_node(&self, record: NodeRecord) -> Result<(), WireError> {
        self.propose(Command::RegisterNode(record))
            .await
            .map(|_| ())
    }

    /// Records a node that announced itself (with its data-dir incarnation)
    /// and makes it a learner of the controller group if it is not a member.
    /// The learner catches up in the background.
    pub async fn join(
        &self,
        id: NodeId,
        addr: String,
        incarnation: String,
    ) -> Result<(), WireError> {
        self.register_node(NodeRecord {
            id,
            addr: addr.clone(),
            incarnation: Some(incarnation),
        })
        .await?;
        let (voters, learners) = self.members();
        if !voters.contains(&id) && !learners.contains(&id) {
            self.add_learner(id, addr).await?;
        }
        Ok(())
    }

    /// Removes a node from the metadata (refused while it holds replicas)
    /// and then from the controller group: a voter is replaced by the
    /// lowest-id learner, if there is one, so the group keeps its size.
    pub async fn unregister_node(&self, id: NodeId) -> Result<(), WireError> {
        self.propose(Command::UnregisterNode { id }).await?;
        self.drop_removed_members().await
    }

    /// Takes unregistered nodes out of the controller group (after
    /// [`Self::unregister_node`], or when a leader change interrupted it).
    pub async fn drop_removed_members(&self) -> Result<(), WireError> {
        let removed = self.view.with(|md| md.removed.clone());
        let (voters, learners) = self.members();
        let gone_voters: Vec<NodeId> = voters
            .iter()
            .copied()
            .filter(|v| removed.contains(v))
            .collect();
        if !gone_voters.is_empty() {
            let mut next: std::collections::BTreeSet<NodeId> = voters
                .iter()
                .copied()
                .filter(|v| !removed.contains(v))
                .collect();
            let mut spare = learners.iter().copied().filter(|l| !removed.contains(l));
            for _ in &gone_voters {
                if let Some(l) = spare.next() {
                    next.insert(l);
                }
            }
            if next.is_empty() {
                return Err(WireError::InvalidArgument {
                    what: "the controller group".into(),
                    reason: "removing this node would leave it without voters".into(),
                });
            }
            self.group.change_voters(next).await.map_err(write_error)?;
        }
        let gone_learners: std::collections::BTreeSet<NodeId> = self
            .members()
            .1
            .into_iter()
            .filter(|l| removed.contains(l))
            .collect();
        if !gone_learners.is_empty() {
            self.group
                .remove_learners(gone_learners)
                .await
                .map_err(write_error)?;
        }
        Ok(())
    }

    pub async fn reassign_partition(
        &self,
        topic: &str,
        partition: u32,
        replicas: Vec<NodeId>,
    ) -> Result<sluice_proto::PartitionAssignment, WireError> {
        match self
            .propose(Command::ReassignPartition {
                topic: topic.to_string(),
                partition,
                replicas,
            })
            .await?
        {
            CommandResult::Reassigned(a) => Ok(a),
            other => Err(unexpected(other)),
        }
    }

    pub async fn finish_reassignment(
        &self,
        topic: &str,
        partition: u32,
        replicas: Vec<NodeId>,
    ) -> Result<(), WireError> {
        self.propose(Command::FinishReassignment {
            topic: topic.to_string(),
            partition,
            replicas,
        })
        .await
        .map(|_| ())
    }

    pub async fn create_topic(&self, spec: TopicSpec) -> Result<TopicInfo, WireError> {
        spec.validate()?;
        let created_ms = sluice_proto::now_ms();
        let live = self.group.live_members_now(LIVENESS_WINDOW).await;
        // Checked here, not in `apply`: a bound on what a node should carry
        // is no reason for replicas to disagree on an entry, nor for a node
        // of a later release to refuse one an earlier release accepted.
        self.view.with(|md| {
            if retry_or_exists(md, &spec) {
                return Ok(());
            }
            let assignments = md.assign(&spec, live.as_deref())?;
            md.check_replica_capacity(&spec.name, &assignments)
        })?;
        match self
            .propose(Command::CreateTopic {
                spec,
                created_ms,
                live,
            })
            .await?
        {
            CommandResult::TopicCreated(info) => Ok(info),
            other => Err(unexpected(other)),
        }
    }

    /// Creates a topic whose replicas the caller placed (see
    /// `Metadata::check_assignments`); the per-node replica bound is checked
    /// here, as for [`Self::create_topic`].
    pub async fn create_topic_assigned(
        &self,
        spec: TopicSpec,
        assignments: Vec<PartitionAssignment>,
    ) -> Result<TopicInfo, WireError> {
        spec.validate()?;
        self.view.with(|md| {
            if retry_or_exists(md, &spec) {
                return Ok(());
            }
            md.check_assignments(&spec, &assignments)?;
            md.check_replica_capacity(&spec.name, &assignments)
        })?;
        match self
            .propose(Command::CreateTopicAssigned {
                spec,
                created_ms: sluice_proto::now_ms(),
                assignments,
            })
            .await?
        {
            CommandResult::TopicCreated(info) => Ok(info),
            other => Err(unexpected(other)),
        }
    }

    /// Creates a topic with settings beyond its spec, placed by the caller
    /// (checked as in [`Self::create_topic_assigned`]) or, without
    /// `assignments`, as [`Self::create_topic`] places one.
    pub async fn create_topic_with(
        &self,
        spec: TopicSpec,
        assignments: Option<Vec<PartitionAssignment>>,
        settings: sluice_proto::TopicSettings,
    ) -> Result<TopicInfo, WireError> {
        spec.validate()?;
        let live = match assignments {
            Some(_) => None,
            None => self.group.live_members_now(LIVENESS_WINDOW).await,
        };
        self.view.with(|md| {
            if retry_or_exists(md, &spec) {
                return Ok(());
            }
            let placed = match &assignments {
                Some(given) => md.check_assignments(&spec, given).map(|()| given.clone()),
                None => md.assign(&spec, live.as_deref()),
            }?;
            md.check_replica_capacity(&spec.name, &placed)
        })?;
        let created_ms = sluice_proto::now_ms();
        // Settings the first shape holds go in the command an earlier
        // release also applies.
        let command = match settings.to_v1() {
            Some(settings) => Command::CreateTopicWith {
                spec,
                created_ms,
                assignments,
                live,
                settings,
            },
            None => Command::CreateTopicV2 {
                spec,
                created_ms,
                assignments,
                live,
                settings,
            },
        };
        match self.propose(command).await? {
            CommandResult::TopicCreated(info) => Ok(info),
            other => Err(unexpected(other)),
        }
    }

    /// Stores a connector and places it on the live node running the
    /// fewest (see `connectors::choose_node`). The caller checked its file.
    pub async fn create_connector(
        &self,
        spec: sluice_proto::ConnectorSpec,
    ) -> Result<sluice_proto::ConnectorRecord, WireError> {
        sluice_proto::limits::validate_connector_name(&spec.name).map_err(|reason| {
            WireError::InvalidArgument {
                what: "connector name".into(),
                reason,
            }
        })?;
        if spec.config.len() > sluice_proto::limits::CONNECTOR_CONFIG_BYTES_MAX {
            return Err(WireError::InvalidArgument {
                what: "connector file".into(),
                reason: format!(
                    "{} bytes, above the limit of {}",
                    spec.config.len(),
                    sluice_proto::limits::CONNECTOR_CONFIG_BYTES_MAX
                ),
            });
        }
        let live = self.group.live_members_now(LIVENESS_WINDOW).await;
        let record = self.view.with(|md| {
            let record = sluice_proto::ConnectorRecord {
                node: connectors::choose_node(md, live.as_deref())?,
                spec,
                created_ms: sluice_proto::now_ms(),
                generation: 0,
            };
            connectors::check_new(md, &record).map(|_| record)
        })?;
        let name = record.spec.name.clone();
        self.propose(Command::CreateConnector(record)).await?;
        self.view
            .with(|md| md.connectors.get(&name).cloned())
            .ok_or_else(|| WireError::unknown_connector(&name))
    }

    pub async fn delete_connector(&self, name: &str) -> Result<(), WireError> {
        self.propose(Command::DeleteConnector {
            name: name.to_string(),
        })
        .await
        .map(|_| ())
    }

    /// On the leader: moves every connector whose node it has not heard
    /// from within the liveness window to a live node. Returns the moves
    /// made, as (connector, from, to).
    pub async fn move_connectors_off_silent_nodes(
        &self,
    ) -> Result<Vec<(String, NodeId, NodeId)>, WireError> {
        if !self.is_leader() || self.view.with(|md| md.connectors.is_empty()) {
            return Ok(Vec::new());
        }
        // Every connector's node heard from by the probes that watch
        // sleeping groups: none is stranded, and the group need not wake to
        // read its heartbeats (it did every few seconds, so a cluster with
        // connectors never slept). Moves are decided on heartbeats only.
        let nodes: Vec<NodeId> = self
            .view
            .with(|md| md.connectors.values().map(|c| c.node).collect());
        if nodes
            .iter()
            .all(|node| self.group.peer_heard_within(*node, LIVENESS_WINDOW))
        {
            return Ok(Vec::new());
        }
        let Some(live) = self.group.live_members_now(LIVENESS_WINDOW).await else {
            return Ok(Vec::new());
        };
        let stranded: Vec<(String, NodeId, u64)> = self.view.with(|md| {
            md.connectors
                .values()
                .filter(|c| !live.contains(&c.node))
                .map(|c| (c.spec.name.clone(), c.node, c.generation))
                .collect()
        });
        let mut moved = Vec::new();
        for (name, from, generation) in stranded {
            let to = self
                .view
                .with(|md| connectors::choose_node(md, Some(&live)))?;
            self.propose_as(
                None,
                Command::MoveConnector {
                    name: name.clone(),
                    generation,
                    node: to,
                },
            )
            .await?;
            moved.push((name, from, to));
        }
        Ok(moved)
    }

    /// Registers a module that the caller has validated.
    pub async fn create_smartmodule(&self, record: SmartModuleRecord) -> Result<(), WireError> {
        self.propose(Command::CreateSmartModule(record))
            .await
            .map(|_| ())
    }

    pub async fn delete_smartmodule(&self, name: &str) -> Result<(), WireError> {
        self.propose(Command::DeleteSmartModule {
            name: name.to_string(),
        })
        .await
        .map(|_| ())
    }

    /// Grants a permission (see [`sluice_proto::acl`]).
    pub async fn add_acl(&self, entry: sluice_proto::AclEntry) -> Result<(), WireError> {
        self.propose(Command::AddAcl(entry)).await.map(|_| ())
    }

    /// Withdraws a permission.
    pub async fn remove_acl(&self, entry: sluice_proto::AclEntry) -> Result<(), WireError> {
        self.propose(Command::RemoveAcl(entry)).await.map(|_| ())
    }

    /// Records which member of consumer group `group` owns which partition,
    /// as generation `generation` (the current one plus one, or the write
    /// is refused: two coordinators never both move a group on).
    pub async fn set_group_owners(
        &self,
        group: &str,
        topic: &str,
        generation: u64,
        owners: std::collections::BTreeMap<u32, String>,
        sessions: std::collections::BTreeMap<String, u64>,
    ) -> Result<(), WireError> {
        let command = Command::SetGroupOwners {
            group: group.to_string(),
            topic: topic.to_string(),
            generation,
            owners,
            sessions,
        };
        // Never under the at-most-once id of the request that caused it
        // (a `consumer delete` first drops dead owners, then deletes: with
        // one id, the delete would be answered as the owners' change and
        // never applied). The generation check makes it safe to repeat.
        self.propose_as(None, command).await.map(|_| ())
    }

    /// Whether this node still leads the controller, confirmed by a
    /// majority, with everything committed before applied.
    pub async fn confirm_leadership(&self, timeout: Duration) -> bool {
        self.group.confirm_leadership(timeout).await
    }

    /// The controller's term while this node leads it.
    pub fn leader_term(&self) -> Option<u64> {
        let status = self.group.status();
        status.is_leader.then_some(status.term)
    }

    /// Forgets a consumer's offsets kept here by earlier releases (on
    /// `topic` or on every topic) and, if it names a consumer group without
    /// members, the group.
    pub async fn delete_consumer(
        &self,
        consumer: &str,
        topic: Option<&str>,
    ) -> Result<(), WireError> {
        self.propose(Command::DeleteConsumer {
            consumer: consumer.to_string(),
            topic: topic.map(str::to_string),
        })
        .await
        .map(|_| ())
    }

    /// Adds `count` partitions to `topic`, on live nodes.
    pub async fn add_partitions(&self, topic: &str, count: u32) -> Result<TopicInfo, WireError> {
        let live = self.group.live_members_now(LIVENESS_WINDOW).await;
        // Like topic creation: the per-node bound is checked when proposed.
        self.view.with(|md| {
            let added = md.added_partitions(topic, count, live.as_deref())?;
            md.check_replica_capacity(topic, &added)
        })?;
        match self
            .propose(Command::AddPartitions {
                topic: topic.to_string(),
                count,
                live,
            })
            .await?
        {
            CommandResult::TopicCreated(info) => Ok(info),
            other => Err(unexpected(other)),
        }
    }

    /// Deletes a topic; a system topic is refused ([`WireError::SystemTopic`]).
    pub async fn delete_topic(&self, name: &str) -> Result<(), WireError> {
        self.propose(Command::DeleteTopic {
            name: name.to_string(),
        })
        .await
        .map(|_| ())
    }

    /// Deletes a topic, a system topic included.
    pub async fn delete_topic_forced(&self, name: &str) -> Result<(), WireError> {
        self.propose(Command::DeleteTopicForced {
            name: name.to_string(),
        })
        .await
        .map(|_| ())
    }

    /// Proposes `command`, tagged with this handle's request id, if any.
    async fn propose(&self, command: Command) -> Result<CommandResult, WireError> {
        self.propose_as(self.request_id, command).await
    }

    async fn propose_as(
        &self,
        request_id: Option<sluice_proto::RequestId>,
        command: Command,
    ) -> Result<CommandResult, WireError> {
        // A change that came in a `Request::Once` is applied at most once.
        let command = match request_id {
            Some(id) => Command::Once {
                id,
                command: Box::new(command),
            },
            None => command,
        };
        let bytes = state_machine::encode(&command);
        let node = self.node;
        let response = match tokio::time::timeout(COMMIT_WAIT_MAX, self.group.write(bytes)).await {
            Ok(Ok(response)) => response,
            // Leading without a lease confirmed by the other voters: the
            // group refused the change after waiting for one.
            Ok(Err(WriteError::NotLeader { leader: None, .. })) if self.is_leader() => {
                return Err(WireError::Unavailable {
                    what: "the controller".into(),
                    reason: format!(
                        "node {node}, its leader, has not heard from a majority of the voters for seconds; the change was not taken"
                    ),
                });
            }
            Ok(Err(e)) => return Err(write_error(e)),
            Err(_) => {
                tracing::warn!(after = ?COMMIT_WAIT_MAX, "a metadata change was not committed in time; is a majority of the controller voters reachable?");
                return Err(WireError::Unavailable {
                    what: "the controller".into(),
                    reason: format!(
                        "node {node}, its leader, could not commit the change within {COMMIT_WAIT_MAX:?} (a majority of the voters did not answer; it may still be applied once they do)"
                    ),
                });
            }
        };
        match state_machine::decode::<CommandResult>(&response) {
            Ok(CommandResult::Rejected(e)) => Err(e),
            Ok(result) => Ok(result),
            Err(reason) => Err(WireError::Storage {
                what: "the controller's response".into(),
                reason,
            }),
        }
    }

    pub async fn shutdown(&self) {
        self.group.shutdown().await;
    }
}

fn write_error(e: WriteError) -> WireError {
    e.into_wire("the controller")
}

/// Whether a topic of `spec`'s name exists already: then the checks made
/// before proposing a creation are skipped and the command decides. A
/// retried request (`Request::Once`, e.g. after the client's deadline passed
/// while the node waited for the new partitions' leaders) is answered with
/// its first result, any other with "Topic already exists"; checked as a new
/// topic, a retry was refused for the replicas its own first try had placed.
fn retry_or_exists(md: &Metadata, spec: &TopicSpec) -> bool {
    md.topics.contains_key(&spec.name)
}

fn unexpected(result: CommandResult) -> WireError {
    WireError::Storage {
        what: "the controller".into(),
        reason: format!("unexpected command result {result:?}"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Raft(#[from] RaftError),
    #[error("cannot load the controller state from {path}: {reason}")]
    Load { path: String, reason: String },
}
