//! Errors of the Raft layer, free of openraft types so callers can match on
//! them without importing openraft.

use crate::{GroupId, NodeId};

#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    #[error("cannot open the Raft log database at {path}: {reason}")]
    OpenDb { path: String, reason: String },
    #[error("Raft group {group} failed to start: {reason}")]
    Start { group: GroupId, reason: String },
    #[error("Raft group {group} failed to initialize its membership: {reason}")]
    Initialize { group: GroupId, reason: String },
    #[error("Raft log storage of group {group} failed while {action}: {reason}")]
    Storage {
        group: GroupId,
        action: &'static str,
        reason: String,
    },
}

/// Why a proposed command was not applied.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("node {node} is not the leader of group {group}")]
    NotLeader {
        group: GroupId,
        node: NodeId,
        leader: Option<NodeId>,
    },
    #[error("Raft group {group} stopped: {reason}")]
    Stopped { group: GroupId, reason: String },
    #[error(
        "node {node} proposed an entry to Raft group {group} that was not committed within {after:?}: a majority of its replicas did not answer"
    )]
    Uncommitted {
        group: GroupId,
        node: NodeId,
        after: std::time::Duration,
    },
    #[error(
        "node {node} leads Raft group {group} but could not confirm its lease with a majority of the replicas within {after:?}"
    )]
    Unconfirmed {
        group: GroupId,
        node: NodeId,
        after: std::time::Duration,
    },
}

impl WriteError {
    /// The error a client sees, naming what was written to (`what`).
    pub fn into_wire(self, what: impl Into<String>) -> sluice_proto::WireError {
        use sluice_proto::WireError;
        match self {
            WriteError::NotLeader { node, leader, .. } => WireError::NotLeader {
                node,
                what: what.into(),
                leader,
            },
            WriteError::Stopped { reason, .. } => WireError::Unavailable {
                what: what.into(),
                reason,
            },
            WriteError::Uncommitted { node, after, .. } => WireError::Unavailable {
                what: what.into(),
                reason: format!(
                    "node {node}, its leader, could not commit the change within {after:?} (a majority of its replicas did not answer; it may still be applied once they do)"
                ),
            },
            WriteError::Unconfirmed { node, after, .. } => WireError::Unavailable {
                what: what.into(),
                reason: format!(
                    "node {node}, its leader, has not heard from a majority of its replicas for {after:?}; the change was not taken"
                ),
            },
        }
    }
}
