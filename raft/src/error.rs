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
        }
    }
}
