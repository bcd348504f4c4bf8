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
use sluice_proto::{ConsumerRecord, ProducerSeq, Record, WireError};
use sluice_raft::{Group, ReplicatedState};
use sluice_storage::{LogConfig, PartitionLog, StorageError};
use tokio::sync::watch;

use crate::producers::{ProducerTable, Verdict};

/// A command in a partition's Raft log.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum PartitionCommand {
    Append {
        records: Vec<Record>,
        producer: Option<ProducerSeq>,
    },
}

/// What applying a [`PartitionCommand`] returns to the proposer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum AppendOutcome {
    Appended {
        base_offset: u64,
    },
    /// The entry was already in the segments (re-applied after a restart).
    Replayed,
    /// The producer's last batch sent again: not appended twice.
    Retry {
        base_offset: u64,
    },
    /// Older than the producer's last batch: already written.
    Stale {
        last_sequence: u64,
    },
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
    producers: ProducerTable,
    end_tx: watch::Sender<u64>,
    name: String,
}

impl PartitionStateMachine {
    fn stop(&self, index: u64, what: String) -> io::Error {
        tracing::error!(partition = %self.name, index, "{what}; stopping the replica");
        io::Error::other(format!("partition {}: {what}", self.name))
    }
}

impl ReplicatedState for PartitionStateMachine {
    /// Appends a committed batch, or recognises it as a producer's retry.
    ///
    /// After a restart, entries are re-applied from the last synced point:
    /// those at or below `producers.applied_index` are fully reflected
    /// already; those whose batch is in the segments (`index <=
    /// last_entry_id`) only rebuild the producer table and the offset cursor.
    fn apply(&mut self, index: u64, command: &[u8]) -> io::Result<Vec<u8>> {
        if index <= self.producers.applied_index {
            return Ok(encode(&AppendOutcome::Replayed));
        }
        let (records, producer) = match decode::<PartitionCommand>(command) {
            // Deterministic: every replica decodes the same bytes the same way.
            Err(reason) => {
                self.producers.applied_index = index;
                let reason = format!("undecodable command: {reason}");
                return Ok(encode(&AppendOutcome::Failed { reason }));
            }
            Ok(PartitionCommand::Append { records, producer }) => (records, producer),
        };
        self.producers.applied_index = index;
        match self.producers.verdict(producer) {
            Verdict::Retry { base_offset } => {
                return Ok(encode(&AppendOutcome::Retry { base_offset }));
            }
            Verdict::Stale { last_sequence } => {
                return Ok(encode(&AppendOutcome::Stale { last_sequence }));
            }
            Verdict::New => {}
        }
        let base_offset = self.producers.next_offset;
        self.producers.next_offset += records.len() as u64;
        self.producers.record(producer, base_offset, index);
        let mut log = write_lock(&self.log);
        if log.last_entry_id().is_some_and(|last| index <= last) {
            // Re-applied after a restart: the batch survived in the segment.
            return Ok(encode(&AppendOutcome::Replayed));
        }
        // A failed append stops the group (the error goes up to Raft): going
        // on without this batch would give every later record another offset
        // than the one it gets when the log is replayed.
        let appended_at = log
            .append(index, &records)
            .map_err(|e| self.stop(index, format!("append failed: {e}")))?;
        if appended_at != base_offset {
            return Err(self.stop(
                index,
                format!("segments end at offset {appended_at} but the replicated state expects {base_offset}"),
            ));
        }
        let end = log.end_offset();
        drop(log);
        self.end_tx.send_replace(end);
        Ok(encode(&AppendOutcome::Appended { base_offset }))
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut log = write_lock(&self.log);
        log.sync().map_err(io::Error::other)?;
        // Saved after the segments it describes are durable.
        self.producers.save(log.dir())
    }

    fn snapshot(&mut self) -> io::Result<Vec<u8>> {
        // Only where this replica's log stands: a replica too far behind for
        // the Raft log would need the segments themselves, which no snapshot
        // carries yet (see `install_snapshot`).
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
                "partition {}: this replica fell behind the leader's kept log and would need a segment transfer, which is not built yet; the replica stops",
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
        let producers = ProducerTable::load(dir).map_err(|source| StorageError::Io {
            op: "load the producer table",
            path: ProducerTable::path(dir),
            source,
        })?;
        let (end_tx, end_rx) = watch::channel(log.end_offset());
        let log = Arc::new(RwLock::new(log));
        let sm = PartitionStateMachine {
            log: log.clone(),
            producers,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn append(records: &[&str], producer: Option<(u64, u64)>) -> Vec<u8> {
        encode(&PartitionCommand::Append {
            records: records.iter().map(|r| Record::new(r.as_bytes())).collect(),
            producer: producer.map(|(producer_id, sequence)| ProducerSeq {
                producer_id,
                sequence,
            }),
        })
    }

    fn apply(sm: &mut PartitionStateMachine, index: u64, command: &[u8]) -> AppendOutcome {
        decode(&sm.apply(index, command).unwrap()).unwrap()
    }

    fn open(dir: &Path) -> PartitionStateMachine {
        Partition::open_log(dir, "t", 0, LogConfig::default())
            .unwrap()
            .0
    }

    #[test]
    fn a_retried_batch_is_written_once_even_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = open(dir.path());
        assert!(matches!(
            apply(&mut sm, 1, &append(&["a", "b"], Some((7, 0)))),
            AppendOutcome::Appended { base_offset: 0 }
        ));
        assert!(matches!(
            apply(&mut sm, 2, &append(&["c"], Some((7, 1)))),
            AppendOutcome::Appended { base_offset: 2 }
        ));
        // The answer to entry 2 was lost; the producer sends it again.
        assert!(matches!(
            apply(&mut sm, 3, &append(&["c"], Some((7, 1)))),
            AppendOutcome::Retry { base_offset: 2 }
        ));
        assert!(matches!(
            apply(&mut sm, 4, &append(&["b"], Some((7, 0)))),
            AppendOutcome::Stale { last_sequence: 1 }
        ));
        sm.sync().unwrap();
        // Entry 5 reaches the segments but no synced point follows: a crash.
        assert!(matches!(
            apply(&mut sm, 5, &append(&["d", "e"], Some((7, 2)))),
            AppendOutcome::Appended { base_offset: 3 }
        ));
        drop(sm);

        // Replay from the synced point rebuilds the table from the Raft log.
        let mut sm = open(dir.path());
        for (i, c) in [
            (3, append(&["c"], Some((7, 1)))),
            (4, append(&["b"], Some((7, 0)))),
        ] {
            assert!(matches!(apply(&mut sm, i, &c), AppendOutcome::Replayed));
        }
        assert!(matches!(
            apply(&mut sm, 5, &append(&["d", "e"], Some((7, 2)))),
            AppendOutcome::Replayed
        ));
        assert!(matches!(
            apply(&mut sm, 6, &append(&["d", "e"], Some((7, 2)))),
            AppendOutcome::Retry { base_offset: 3 }
        ));
        assert!(matches!(
            apply(&mut sm, 7, &append(&["f"], None)),
            AppendOutcome::Appended { base_offset: 5 }
        ));
        let values: Vec<Vec<u8>> = read_lock(&sm.log)
            .read(0, 1 << 20)
            .unwrap()
            .into_iter()
            .map(|r| r.value)
            .collect();
        assert_eq!(
            values,
            [b"a", b"b", b"c", b"d", b"e", b"f"].map(|v| v.to_vec())
        );
    }
}
