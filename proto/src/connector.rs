//! Connectors the cluster runs (`sluice connector create`): what a client
//! sends, what the controller stores, and what a node reports about the
//! connectors it supervises.
//!
//! The connector's file travels as its text: the node that runs it reads it
//! with the same parser as `sluice connector run`, so a file means the same
//! thing in the foreground and in the cluster.

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// A connector as a client asks for it: its name and its file (YAML, the
/// seed documents' format or Fluvio's).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorSpec {
    pub name: String,
    pub config: String,
}

/// A connector as the controller's metadata holds it: the node chosen to
/// run it, moved (with `generation` + 1) when that node stops answering.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorRecord {
    pub spec: ConnectorSpec,
    pub node: NodeId,
    pub created_ms: i64,
    /// 0 when created, + 1 at every move: a move proposed against an older
    /// placement is refused, so two controller leaders cannot both move it.
    pub generation: u64,
}

/// What `connector list` and `describe` show: the stored record and, when
/// its node answered, what that node's supervisor knows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorInfo {
    pub record: ConnectorRecord,
    /// `None` when the connector's node did not answer (it is then moved
    /// once the controller's leader stops hearing from it).
    pub runtime: Option<ConnectorRuntime>,
}

/// A supervised connector process on its node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorRuntime {
    pub name: String,
    /// "running", "starting", or "waiting Ns to restart".
    pub state: String,
    /// The running process's id (0 when none runs).
    pub pid: u32,
    /// Times the process was started again after it ended.
    pub restarts: u64,
    /// When the current (or last) process started.
    pub started_ms: i64,
    /// How the last process ended, with the last line it logged.
    pub last_exit: Option<String>,
    /// The process's own counts since it started (see [`ConnectorTally`]).
    pub tally: ConnectorTally,
}

/// Counts a connector process reports about itself, since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorTally {
    /// Polls of a source's endpoint or file.
    pub polls: u64,
    /// Records read: from the source (before SmartModules), or from the
    /// topic by a sink.
    pub records_in: u64,
    /// Records written: acknowledged by the cluster (source), or written
    /// to the sink's target.
    pub records_out: u64,
    /// Records a source's SmartModules dropped.
    pub dropped: u64,
    /// Failed polls or writes, each retried.
    pub failures: u64,
    /// A sink's records not yet read: the partitions' ends minus what it
    /// read, when it last looked. `None` for sources, and until measured.
    pub lag: Option<u64>,
    pub updated_ms: i64,
}
