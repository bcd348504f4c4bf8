//! A running Raft group: start, initialize, propose, observe, stop.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::{BasicNode, Config, ServerState, SnapshotPolicy};

use crate::error::{RaftError, WriteError};
use crate::log_store::{GroupLog, LogDb};
use crate::network::Network;
use crate::state_machine::{Adapter, ReplicatedState};
use crate::{Bytes, GroupId, NodeId, TypeConfig};

/// Timing and compaction settings of a group.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot (sync the state machine, purge the log) after this many entries.
    pub snapshot_every_entries: u64,
    /// Entries kept in the log after a snapshot, for lagging followers.
    pub entries_kept_after_snapshot: u64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            snapshot_every_entries: 5_000,
            entries_kept_after_snapshot: 1_000,
        }
    }
}

/// What a group looks like from this node right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupStatus {
    pub leader: Option<NodeId>,
    pub is_leader: bool,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub last_applied_index: Option<u64>,
}

/// A Raft group replicating a [`ReplicatedState`].
pub struct Group<S: ReplicatedState> {
    raft: openraft::Raft<TypeConfig, Adapter<S>>,
    id: GroupId,
    node: NodeId,
}

impl<S: ReplicatedState> Clone for Group<S> {
    fn clone(&self) -> Self {
        Self {
            raft: self.raft.clone(),
            id: self.id,
            node: self.node,
        }
    }
}

impl<S: ReplicatedState> Group<S> {
    /// Starts the group on this node, recovering its log and vote from `db`.
    pub async fn start(
        db: Arc<LogDb>,
        node: NodeId,
        id: GroupId,
        state: S,
        config: &GroupConfig,
    ) -> Result<Self, RaftError> {
        let start_err = |reason: String| RaftError::Start { group: id, reason };
        let raft_config = Config {
            cluster_name: format!("group-{id}"),
            heartbeat_interval: config.heartbeat_interval_ms,
            election_timeout_min: config.election_timeout_min_ms,
            election_timeout_max: config.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every_entries),
            max_in_snapshot_log_to_keep: config.entries_kept_after_snapshot,
            ..Default::default()
        };
        let raft_config = Arc::new(
            raft_config
                .validate()
                .map_err(|e| start_err(e.to_string()))?,
        );
        let adapter = Adapter::new(db.clone(), id, state).map_err(|e| start_err(e.to_string()))?;
        let log = GroupLog::new(db, id);
        let raft = openraft::Raft::new(node, raft_config, Network { group: id }, log, adapter)
            .await
            .map_err(|e| start_err(e.to_string()))?;
        Ok(Self { raft, id, node })
    }

    pub fn id(&self) -> GroupId {
        self.id
    }

    /// Makes `members` (id, address) the group's first membership, if the group
    /// has none yet. Idempotent: a group that already has a membership (e.g.
    /// after a restart) keeps it.
    pub async fn initialize(&self, members: &[(NodeId, String)]) -> Result<(), RaftError> {
        if self
            .raft
            .is_initialized()
            .await
            .map_err(|e| self.init_err(e.to_string()))?
        {
            return Ok(());
        }
        let members: BTreeMap<NodeId, BasicNode> = members
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr.clone())))
            .collect();
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(e)
                if e.api_error().is_some_and(|api| {
                    matches!(api, openraft::error::InitializeError::NotAllowed(_))
                }) =>
            {
                Ok(())
            }
            Err(e) => Err(self.init_err(e.to_string())),
        }
    }

    fn init_err(&self, reason: String) -> RaftError {
        RaftError::Initialize {
            group: self.id,
            reason,
        }
    }

    /// Proposes `command`; returns the state machine's response once the
    /// entry is committed (durable on a majority) and applied.
    pub async fn write(&self, command: Vec<u8>) -> Result<Vec<u8>, WriteError> {
        match self.raft.client_write(Bytes(command)).await {
            Ok(resp) => Ok(resp.data.0),
            Err(e) => match e.forward_to_leader() {
                Some(fwd) => Err(WriteError::NotLeader {
                    group: self.id,
                    node: self.node,
                    leader: fwd.leader_id,
                }),
                None => Err(WriteError::Stopped {
                    group: self.id,
                    reason: e.to_string(),
                }),
            },
        }
    }

    pub fn status(&self) -> GroupStatus {
        let m = self.raft.metrics().borrow_watched().clone();
        GroupStatus {
            leader: m.current_leader,
            is_leader: m.state == ServerState::Leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            last_applied_index: m.last_applied.map(|id| id.index),
        }
    }

    /// Waits until the group has a leader, or `timeout` passes.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<NodeId> {
        let mut rx = self.raft.metrics();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(leader) = rx.borrow_watched().current_leader {
                return Some(leader);
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return None;
            }
        }
    }

    /// Waits until this replica has re-applied everything the group had
    /// committed that its durable log holds (after a restart), so reads see
    /// at least the pre-restart state. False on timeout.
    pub async fn wait_for_recovery(&self, timeout: Duration) -> bool {
        self.raft.wait_for_recovery(Some(timeout)).await.is_ok()
    }

    /// Stops the group's tasks; its log and state stay on disk.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(group = self.id, error = %e, "Raft group did not shut down cleanly");
        }
    }
}
