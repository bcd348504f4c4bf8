//! A partition replica: its segment log, the state machine that appends
//! committed batches to it, and the notification consumers wait on.
//!
//! Offsets are assigned here, when a committed Raft entry is applied, never
//! when a batch is proposed. The segment files are the state machine's state;
//! they are not fsynced per batch (the Raft log is), only when the Raft layer
//! asks for a synced point before purging its log.

use std::io;
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use sluice_proto::{ConsumerRecord, Record, WireError};
use sluice_raft::{Group, ReplicatedState};
use sluice_storage::{LogConfig, PartitionLog, StorageError};
use tokio::sync::watch;

/// A command in a partition's Raft log.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum PartitionCommand {
    Append { records: Vec<Record> },
}

/// What applying a [`PartitionCommand`] returns to the proposer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum AppendOutcome {
    Appended {
        base_offset: u64,
    },
    /// The entry was already in the segments (re-applied after a restart).
    Replayed,
    Failed {
        reason: String,
    },
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(v, bincode::config::standard()).expect("partition types encode")
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    bincode::serde::decode_from_slice(b, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| e.to_string())
}

/// Shared between the state machine (writer) and fetch handlers (readers).
pub(crate) type SharedLog = Arc<RwLock<PartitionLog>>;

pub(crate) fn read_lock(log: &SharedLog) -> std::sync::RwLockReadGuard<'_, PartitionLog> {
    log.read().unwrap_or_else(|p| p.into_inner())
}

fn write_lock(log: &SharedLog) -> std::sync::RwLockWriteGuard<'_, PartitionLog> {
    log.write().unwrap_or_else(|p| p.into_inner())
}

pub(crate) struct PartitionStateMachine {
    log: SharedLog,
    end_tx: watch::Sender<u64>,
    name: String,
}

impl ReplicatedState for PartitionStateMachine {
    fn apply(&mut self, index: u64, command: &[u8]) -> io::Result<Vec<u8>> {
        let records = match decode::<PartitionCommand>(command) {
            // Deterministic: every replica decodes the same bytes the same way.
            Err(reason) => {
                let reason = format!("undecodable command: {reason}");
                return Ok(encode(&AppendOutcome::Failed { reason }));
            }
            Ok(PartitionCommand::Append { records }) => records,
        };
        let mut log = write_lock(&self.log);
        if log.last_entry_id().is_some_and(|last| index <= last) {
            // Re-applied after a restart: the batch survived in the segment.
            return Ok(encode(&AppendOutcome::Replayed));
        }
        // A failed append stops the group (the error goes up to Raft): going
        // on without this batch would give every later record another offset
        // than the one it gets when the log is replayed.
        let base_offset = log.append(index, &records).map_err(|e| {
            tracing::error!(partition = %self.name, index, error = %e, "append failed; stopping the replica");
            io::Error::other(format!("partition {}: {e}", self.name))
        })?;
        let end = log.end_offset();
        drop(log);
        self.end_tx.send_replace(end);
        Ok(encode(&AppendOutcome::Appended { base_offset }))
    }

    fn sync(&mut self) -> io::Result<()> {
        write_lock(&self.log).sync().map_err(io::Error::other)
    }

    fn snapshot(&mut self) -> io::Result<Vec<u8>> {
        // Replicas catch up from segments, which the replication work adds;
        // the snapshot records where this replica's log stands.
        let log = read_lock(&self.log);
        Ok(encode(&(
            log.start_offset(),
            log.end_offset(),
            log.last_entry_id(),
        )))
    }

    fn install_snapshot(&mut self, _data: &[u8]) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "partition {}: installing a snapshot needs segment transfer, which single-replica partitions never use",
                self.name
            ),
        ))
    }
}

/// A running replica of one partition on this node.
#[derive(Clone)]
pub(crate) struct Partition {
    pub topic: String,
    pub index: u32,
    pub group: Group<PartitionStateMachine>,
    pub log: SharedLog,
    pub end_rx: watch::Receiver<u64>,
    /// Set once the replica has re-applied its committed log after start.
    pub ready: Arc<std::sync::atomic::AtomicBool>,
}

impl Partition {
    /// Opens the segment log in `dir` (repairing a torn tail) and builds the
    /// state machine around it.
    pub(crate) fn open_log(
        dir: &Path,
        topic: &str,
        index: u32,
        config: LogConfig,
    ) -> Result<(PartitionStateMachine, SharedLog, watch::Receiver<u64>), StorageError> {
        let (log, report) = PartitionLog::open(dir, index, config)?;
        if let Some(t) = &report.truncated {
            tracing::warn!(
                topic, partition = index, path = %t.path.display(), position = t.position,
                bytes_removed = t.bytes_removed, reason = %t.reason,
                "repaired a torn or corrupt segment tail; committed entries are re-applied from the Raft log"
            );
        }
        let (end_tx, end_rx) = watch::channel(log.end_offset());
        let log = Arc::new(RwLock::new(log));
        let sm = PartitionStateMachine {
            log: log.clone(),
            end_tx,
            name: format!("{topic}/{index}"),
        };
        Ok((sm, log, end_rx))
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn offsets(&self) -> (u64, u64, u64) {
        let log = read_lock(&self.log);
        (log.start_offset(), log.end_offset(), log.size_bytes())
    }

    /// Reads committed records from `from`, at most about `max_bytes`.
    pub(crate) fn read(
        &self,
        from: u64,
        max_bytes: usize,
    ) -> Result<Vec<ConsumerRecord>, WireError> {
        let log = read_lock(&self.log);
        log.read(from, max_bytes).map_err(|e| match e {
            StorageError::OffsetOutOfRange {
                requested,
                start,
                end,
                ..
            } => WireError::OffsetOutOfRange {
                topic: self.topic.clone(),
                partition: self.index,
                requested,
                start,
                end,
            },
            other => WireError::Storage {
                what: format!("partition {}/{}", self.topic, self.index),
                reason: other.to_string(),
            },
        })
    }
}
