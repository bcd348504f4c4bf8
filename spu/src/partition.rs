//! A partition replica: its segment log, the state machine that appends
//! committed batches to it, and the notification consumers wait on.
//!
//! Offsets are assigned here, when a committed Raft entry is applied, never
//! when a batch is proposed. The segment files are the state machine's state;
//! they are not fsynced per batch (the Raft log is), only when the Raft layer
//! asks for a synced point before purging its log.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use sluice_proto::{NodeId, ProducerSeq, Record, WireError};
use sluice_raft::{Group, ReplicatedState, WriteError};
use sluice_storage::{LogConfig, PartitionLog, StorageError, StoredBatch};
use tokio::sync::watch;

use crate::log_copy::{PartitionSnapshot, SharedLogSource};
use crate::offsets::{CommitEntry, ConsumerTable, Place};
use crate::producers::{ProducerTable, SentBatch, Verdict};
use crate::repair::{Damage, DamageSlot, ReplicaName};
use crate::timeouts::{
    REORDER_HINT_TTL, REORDER_WAIT, SNAPSHOT_COPY_BACKOFF_MAX, SNAPSHOT_COPY_BACKOFF_MIN,
    SNAPSHOT_COPY_RETRY_FOR,
};

/// A command in a partition's Raft log.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum PartitionCommand {
    /// A batch none of whose records has headers (the shape earlier
    /// releases read; see [`PartitionCommand::append`]).
    Append {
        #[serde(with = "sluice_proto::record::v1")]
        records: Vec<Record>,
        producer: Option<ProducerSeq>,
    },
    /// A consumer's position in this partition (`crate::offsets`).
    CommitOffset(CommitEntry),
    /// A consumer group's coordinator gives the partition to a member in
    /// `generation`: earlier generations' commits are refused from now on.
    FenceConsumer { consumer: String, generation: u64 },
    /// `consumer delete`.
    ForgetConsumer { consumer: String },
    /// A batch of which some record has headers: applied as
    /// [`PartitionCommand::Append`]. A replica of an earlier release cannot
    /// decode it (it fails the entry, the same on each such replica), which
    /// is why a batch without headers keeps the older command.
    AppendWithHeaders {
        records: Vec<Record>,
        producer: Option<ProducerSeq>,
    },
    /// A batch appended only if the partition ends at `expected_offset`
    /// when the entry is applied (`Request::ProduceAt`), the same verdict
    /// on every replica; else [`AppendOutcome::NotAt`], nothing written.
    AppendAt {
        records: Vec<Record>,
        expected_offset: u64,
    },
}

impl PartitionCommand {
    /// The command that appends `records`: [`PartitionCommand::Append`]
    /// unless some record has headers.
    pub(crate) fn append(records: Vec<Record>, producer: Option<ProducerSeq>) -> Self {
        if records.iter().all(|r| r.headers.is_empty()) {
            Self::Append { records, producer }
        } else {
            Self::AppendWithHeaders { records, producer }
        }
    }
}

/// What applying a [`PartitionCommand`] returns to the proposer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum AppendOutcome {
    Appended {
        base_offset: u64,
    },
    /// The entry was already in the segments (re-applied after a restart).
    Replayed,
    /// One of the producer's last batches sent again: not appended twice.
    Retry {
        base_offset: u64,
    },
    /// Older than the producer's remembered batches: already written.
    Stale {
        last_sequence: u64,
    },
    /// Past the producer's next batch: not written (see `crate::producers`).
    OutOfOrder {
        last_sequence: Option<u64>,
    },
    Failed {
        reason: String,
    },
    /// The number of one of the producer's last written batches (the one at
    /// `base_offset`) on other records: not written (see `crate::producers`).
    SequenceReused {
        base_offset: u64,
    },
    /// A [`PartitionCommand::CommitOffset`] stored.
    OffsetCommitted,
    /// A consumer command refused, the same way on every replica.
    Refused {
        error: WireError,
    },
    /// A [`PartitionCommand::FenceConsumer`] applied: the group's committed
    /// offset and state here, if any.
    Fenced {
        offset: Option<u64>,
        state: Option<serde_bytes::ByteBuf>,
    },
    /// A [`PartitionCommand::ForgetConsumer`] applied: whether the
    /// consumer was known here.
    Forgotten {
        found: bool,
    },
    /// A [`PartitionCommand::AppendAt`] found the partition ending at
    /// `end_offset`, not where it expected: not written.
    NotAt {
        end_offset: u64,
    },
}

/// Partition commands and outcomes travel in one frame (in Raft entries
/// from the leader): a length beyond it is refused before allocating.
pub(crate) const DECODE_BYTES_MAX: usize = sluice_proto::limits::FRAME_SIZE_BYTES_MAX;

pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    sluice_proto::encoding::to_vec(v).expect("partition types encode")
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    sluice_proto::encoding::from_slice(b, DECODE_BYTES_MAX)
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
    topic: String,
    partition: u32,
    /// This node and the partition's group: a snapshot names its source.
    node: sluice_proto::NodeId,
    group: u64,
    /// Where a replica that installs a snapshot copies the batches it lacks.
    source: SharedLogSource,
    /// Where a [`SegmentsMismatch`] is reported for the reconciler, which
    /// repairs the replica's segments (`crate::repair`).
    damage: DamageSlot,
    /// A copy of the committed offsets (`producers.consumers`) for readers,
    /// updated entry by entry as commands apply.
    consumers_view: ConsumersView,
    /// How long an install keeps asking for a chunk its source does not
    /// send ([`SNAPSHOT_COPY_RETRY_FOR`]; shorter in tests).
    copy_retry_for: std::time::Duration,
}

/// The committed offsets of a replica as last applied, for readers outside
/// its state machine (`consumer list`).
pub(crate) type ConsumersView = Arc<RwLock<ConsumerTable>>;

/// An entry whose batch the segments do not hold, or cannot take, at the
/// offset the replicated state assigns it. Offsets are assigned when an
/// entry is applied, so a replay must reach, entry by entry, the offsets the
/// first apply gave, and an append must land where the producer table's
/// cursor stands. If not, the segments and the Raft log (with the table
/// saved at the last synced point) of this replica describe different
/// partitions, and every later record would get another offset here than on
/// the other replicas (a consumer reading from here would see acknowledged
/// records at the wrong offsets, or miss them).
///
/// The replica stops, and the node rebuilds its segments from another replica
/// (`crate::repair`) before starting it again.
#[derive(Debug, thiserror::Error)]
#[error(
    "partition {topic}/{partition} on node {node}: Raft entry {index} ({stage}) has a batch of \
     {records} records that belongs at offset {expected}, but {found}. This replica's segments \
     differ from its Raft log (damaged, or left by another history of the partition); applying \
     on would put records at other offsets than the other replicas do, so the replica stops \
     (and writes nothing) and the node copies its segments from another replica. If none can \
     give them, move the partition off node {node} (`sluice partition reassign`), or remove \
     node {node}'s data dir and let it rejoin under a new --id with --join"
)]
pub(crate) struct SegmentsMismatch {
    pub topic: String,
    pub partition: u32,
    pub node: NodeId,
    /// The Raft index of the entry being applied.
    pub index: u64,
    pub stage: Stage,
    /// Where the replicated state puts the entry's batch.
    pub expected: u64,
    /// Records the entry's batch holds.
    pub records: usize,
    pub found: Found,
}

/// Whether the entry's batch was being appended or skipped as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Stage {
    #[error("re-applied after a restart, its batch already stored")]
    Replay,
    #[error("applied, its batch to be appended")]
    Append,
}

/// What the segments hold where an entry's batch belongs.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Found {
    #[error("the segments end at offset {end}")]
    SegmentsEnd { end: u64 },
    #[error("the batch stored there is entry {entry_id}'s, at offsets {base_offset}..{end_offset}")]
    OtherBatch {
        entry_id: u64,
        base_offset: u64,
        end_offset: u64,
    },
    #[error("the batch stored there holds other records (the first differs at offset {offset})")]
    OtherRecords { offset: u64 },
    #[error("the batch stored there cannot be read: {0}")]
    Unreadable(StorageError),
}

impl PartitionStateMachine {
    /// Where this state machine reports damage it finds while applying.
    pub(crate) fn consumers_view(&self) -> ConsumersView {
        self.consumers_view.clone()
    }

    /// Copies `consumer`'s entry (present or gone) to the readers' view.
    fn publish(&self, consumer: &str) {
        let entry = self.producers.consumers.entry(consumer).cloned();
        let mut view = self
            .consumers_view
            .write()
            .unwrap_or_else(|p| p.into_inner());
        view.set_entry(consumer, entry);
    }

    /// Copies the whole table to the readers' view (after it was replaced).
    fn publish_all(&self) {
        let mut view = self
            .consumers_view
            .write()
            .unwrap_or_else(|p| p.into_inner());
        *view = self.producers.consumers.clone();
    }

    pub(crate) fn damage_slot(&self) -> DamageSlot {
        self.damage.clone()
    }

    /// One chunk of the snapshot source's log from `from`, asked for again
    /// with growing pauses while the source does not answer, for up to
    /// [`SNAPSHOT_COPY_RETRY_FOR`]. An error here fails the install and stops
    /// the group (openraft treats it as a storage failure); the fault suite
    /// found a replica stopped so for good by one pause of its source, before
    /// these retries and the reconciler's restart of stopped replicas.
    fn read_chunk_retrying(
        &self,
        snap: &PartitionSnapshot,
        from: u64,
    ) -> io::Result<crate::log_copy::RemoteBatches> {
        crate::debug::injected_install_failure()?;
        let started = std::time::Instant::now();
        let mut pause = SNAPSHOT_COPY_BACKOFF_MIN;
        loop {
            match self.source.read(snap.source, snap.group, from) {
                Ok(chunk) => return Ok(chunk),
                Err(e) if started.elapsed() + pause < self.copy_retry_for => {
                    tracing::warn!(
                        partition = %self.name, source = snap.source, from, error = %e,
                        retry_in_ms = pause.as_millis() as u64,
                        "installing a snapshot: the source sent no batches; asking again"
                    );
                    crate::log_copy::pause_blocking(pause);
                    pause = (pause * 2).min(SNAPSHOT_COPY_BACKOFF_MAX);
                }
                Err(e) => {
                    return Err(io::Error::other(format!(
                        "partition {}: cannot copy the snapshot's batches from node {} \
                         (offset {from}, tried for {} ms): {e}",
                        self.name,
                        snap.source,
                        started.elapsed().as_millis()
                    )));
                }
            }
        }
    }

    fn stop(&self, index: u64, what: String) -> io::Error {
        tracing::error!(partition = %self.name, index, "{what}; stopping the replica");
        io::Error::other(format!("partition {}: {what}", self.name))
    }

    fn mismatch(
        &self,
        index: u64,
        stage: Stage,
        expected: u64,
        records: usize,
        found: Found,
    ) -> SegmentsMismatch {
        let e = SegmentsMismatch {
            topic: self.topic.clone(),
            partition: self.partition,
            node: self.node,
            index,
            stage,
            expected,
            records,
            found,
        };
        tracing::error!(partition = %self.name, index, "{e}");
        self.damage.record(Damage::Replay {
            index,
            stage,
            expected,
            found: e.found.to_string(),
        });
        e
    }

    /// Checks that the batch the segments hold for entry `index`, which a
    /// replay skips, is the one the entry appended: it starts at `expected`
    /// (where this replay has got to), carries the entry's id and holds
    /// `records`, timestamps included (they come from the same Raft entry).
    ///
    /// A batch that retention has deleted since cannot be checked; the
    /// offsets of the batches after it still are.
    fn check_replayed(
        &self,
        log: &PartitionLog,
        index: u64,
        expected: u64,
        records: &[Record],
    ) -> Result<(), SegmentsMismatch> {
        let mismatch = |found| self.mismatch(index, Stage::Replay, expected, records.len(), found);
        if expected < log.start_offset() {
            return Ok(());
        }
        let end = log.end_offset();
        if expected >= end {
            return Err(mismatch(Found::SegmentsEnd { end }));
        }
        // At most the batch holding `expected`: a budget of 0 bytes still
        // returns the first batch.
        let batches = log
            .read_batches(expected, 0)
            .map_err(|e| mismatch(Found::Unreadable(e)))?;
        let Some(batch) = batches.first() else {
            return Err(mismatch(Found::SegmentsEnd { end }));
        };
        if batch.base_offset() != expected
            || batch.entry_id() != index
            || batch.end_offset() - batch.base_offset() != records.len() as u64
        {
            return Err(mismatch(Found::OtherBatch {
                entry_id: batch.entry_id(),
                base_offset: batch.base_offset(),
                end_offset: batch.end_offset(),
            }));
        }
        let mut differs = None;
        StoredBatch::for_each_in(&batches[..1], expected, batch.end_offset(), |stored| {
            let sent = &records[(stored.offset - expected) as usize];
            let same = stored.key == sent.key.as_deref()
                && stored.value == sent.value.as_slice()
                && stored.timestamp_ms == sent.timestamp_ms
                && stored.headers == sluice_proto::HeadersRef::listed(&sent.headers);
            if !same && differs.is_none() {
                differs = Some(stored.offset);
            }
        })
        .map_err(|e| mismatch(Found::Unreadable(e)))?;
        match differs {
            Some(offset) => Err(mismatch(Found::OtherRecords { offset })),
            None => Ok(()),
        }
    }
}

impl PartitionStateMachine {
    /// Applies a command about consumer offsets (`crate::offsets`); the
    /// partition's end is the one the entries before it left.
    fn apply_consumer_command(&mut self, command: PartitionCommand) -> AppendOutcome {
        let at = Place {
            topic: &self.topic,
            partition: self.partition,
        };
        let table = &mut self.producers.consumers;
        let refused = |error| AppendOutcome::Refused { error };
        let (outcome, consumer) = match command {
            PartitionCommand::Append { .. }
            | PartitionCommand::AppendWithHeaders { .. }
            | PartitionCommand::AppendAt { .. } => {
                unreachable!("appends are applied by the caller")
            }
            PartitionCommand::CommitOffset(commit) => {
                let consumer = commit.consumer.clone();
                match table.commit(&at, commit, self.producers.next_offset) {
                    Ok(()) => (AppendOutcome::OffsetCommitted, consumer),
                    Err(e) => (refused(e), consumer),
                }
            }
            PartitionCommand::FenceConsumer {
                consumer,
                generation,
            } => match table.fence(&at, consumer.clone(), generation) {
                Ok(committed) => {
                    let outcome = AppendOutcome::Fenced {
                        offset: committed.as_ref().map(|c| c.offset),
                        state: committed.and_then(|c| c.state),
                    };
                    (outcome, consumer)
                }
                Err(e) => (refused(e), consumer),
            },
            PartitionCommand::ForgetConsumer { consumer } => {
                let found = table.forget(&consumer);
                (AppendOutcome::Forgotten { found }, consumer)
            }
        };
        self.publish(&consumer);
        outcome
    }
}

impl ReplicatedState for PartitionStateMachine {
    /// Appends a committed batch, recognises it as a producer's resend, or
    /// rejects it as out of order (see `crate::producers` for the rule).
    ///
    /// After a restart, entries are re-applied from the last synced point:
    /// those at or below `producers.applied_index` are fully reflected
    /// already; those whose batch is in the segments (`index <=
    /// last_entry_id`) only rebuild the producer table and the offset cursor,
    /// after checking that the batch is stored where the cursor says
    /// ([`SegmentsMismatch`] stops the replica otherwise). A batch is appended
    /// only where the table's cursor stands (likewise).
    fn apply(&mut self, index: u64, command: &[u8]) -> io::Result<Vec<u8>> {
        if index <= self.producers.applied_index {
            return Ok(encode(&AppendOutcome::Replayed));
        }
        let (records, producer, expected) = match decode::<PartitionCommand>(command) {
            // Deterministic: every replica decodes the same bytes the same way.
            Err(reason) => {
                self.producers.applied_index = index;
                let reason = format!("undecodable command: {reason}");
                return Ok(encode(&AppendOutcome::Failed { reason }));
            }
            Ok(
                PartitionCommand::Append { records, producer }
                | PartitionCommand::AppendWithHeaders { records, producer },
            ) => (records, producer, None),
            Ok(PartitionCommand::AppendAt {
                records,
                expected_offset,
            }) => (records, None, Some(expected_offset)),
            Ok(other) => {
                self.producers.applied_index = index;
                return Ok(encode(&self.apply_consumer_command(other)));
            }
        };
        // Judged by the offset cursor, which every replica and every replay
        // of this entry holds alike.
        if let Some(expected) = expected
            && expected != self.producers.next_offset
        {
            self.producers.applied_index = index;
            let end_offset = self.producers.next_offset;
            return Ok(encode(&AppendOutcome::NotAt { end_offset }));
        }
        // Digested from the entry's bytes: the same on every replica and replay.
        let sent = SentBatch::new(producer, &records);
        let outcome = match self.producers.verdict(sent) {
            Verdict::New => None,
            Verdict::Retry { base_offset } => Some(AppendOutcome::Retry { base_offset }),
            Verdict::SequenceReused { base_offset } => {
                Some(AppendOutcome::SequenceReused { base_offset })
            }
            Verdict::Stale { last_sequence } => Some(AppendOutcome::Stale { last_sequence }),
            Verdict::OutOfOrder { last_sequence } => {
                Some(AppendOutcome::OutOfOrder { last_sequence })
            }
        };
        if let Some(outcome) = outcome {
            self.producers.applied_index = index;
            return Ok(encode(&outcome));
        }
        let base_offset = self.producers.next_offset;
        let mut log = write_lock(&self.log);
        let replayed = log.last_entry_id().is_some_and(|last| index <= last);
        if replayed {
            // Re-applied after a restart: the batch survived in the segment.
            self.check_replayed(&log, index, base_offset, &records)
                .map_err(io::Error::other)?;
        } else {
            // Checked before appending: a batch appended at another offset
            // would stay in the segments of a replica that stops, so that
            // every start (the reconciler retries every few seconds, and
            // each start replays the log) skipped it as stored and appended
            // the next entry's batch after it, one more batch at a wrong
            // offset each time.
            let end = log.end_offset();
            if end != base_offset {
                let found = Found::SegmentsEnd { end };
                let e = self.mismatch(index, Stage::Append, base_offset, records.len(), found);
                return Err(io::Error::other(e));
            }
            // A failed append stops the group (the error goes up to Raft):
            // going on without this batch would give every later record
            // another offset than the one it gets when the log is replayed.
            let appended_at = log
                .append(index, &records)
                .map_err(|e| self.stop(index, format!("append failed: {e}")))?;
            debug_assert_eq!(appended_at, base_offset, "checked above");
            sluice_crashpoints::hit(sluice_crashpoints::SEGMENT_APPENDED);
        }
        // The table moves only once the batch is in place: after an error
        // above the replica stops, and a sync that still saves the table
        // (a snapshot being built) must not record this entry as applied,
        // or the next start would skip it instead of stopping again.
        self.producers.applied_index = index;
        self.producers.next_offset += records.len() as u64;
        self.producers.record(sent, base_offset, index);
        if replayed {
            return Ok(encode(&AppendOutcome::Replayed));
        }
        let end = log.end_offset();
        drop(log);
        self.end_tx.send_replace(end);
        Ok(encode(&AppendOutcome::Appended { base_offset }))
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut log = write_lock(&self.log);
        log.sync().map_err(io::Error::other)?;
        sluice_crashpoints::hit(sluice_crashpoints::SYNC_POINT_SYNCED);
        // Saved after the segments it describes are durable.
        self.producers.save(log.dir())
    }

    /// Captures the segment files to fsync and the producer table as they
    /// are now; the job fsyncs them and then saves that table, while this
    /// partition goes on taking writes and serving reads (a snapshot point
    /// every 5,000 entries held both for the fsyncs' length: a quarter of a
    /// second at 1,000 records/s, the p99 of every ack).
    fn begin_sync(&mut self) -> io::Result<sluice_raft::SyncJob> {
        let (point, dir) = {
            let log = read_lock(&self.log);
            let point = log.sync_point().map_err(io::Error::other)?;
            (point, log.dir().to_path_buf())
        };
        let table = self.producers.encode();
        Ok(Box::new(move || {
            point.sync().map_err(io::Error::other)?;
            sluice_crashpoints::hit(sluice_crashpoints::SYNC_POINT_SYNCED);
            // Saved after the segments it describes are durable.
            crate::producers::ProducerTable::save_encoded(&dir, &table)
        }))
    }

    /// Where this replica's log stands and the producer table at that point;
    /// a replica that installs it copies the batches it lacks from this node.
    fn snapshot(&mut self) -> io::Result<Vec<u8>> {
        let log = read_lock(&self.log);
        Ok(encode(&PartitionSnapshot {
            source: self.node,
            group: self.group,
            start_offset: log.start_offset(),
            end_offset: log.end_offset(),
            last_entry_id: log.last_entry_id(),
            producers: self.producers.encode(),
        }))
    }

    /// Copies the batches this replica lacks from the snapshot's source
    /// (restarting the log at the source's start offset when retention there
    /// deleted what this replica would continue from), makes them durable,
    /// and takes over the snapshot's producer table.
    fn install_snapshot(&mut self, data: &[u8]) -> io::Result<()> {
        let bad = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
        let snap: PartitionSnapshot = decode(data).map_err(bad)?;
        let table = ProducerTable::decode(&snap.producers).map_err(bad)?;
        let log = read_lock(&self.log);
        let end = log.end_offset();
        tracing::info!(
            partition = %self.name, source = snap.source, local_end = end,
            target_start = snap.start_offset, target_end = snap.end_offset,
            "installing a snapshot: copying the missing batches from the source replica"
        );
        // The log restarts at the source's start only once the first chunk
        // from there is in hand: an install that fails before (its source
        // silent) leaves the segments as they were, and the replica's
        // restart replays its Raft log over them; restarted empty, the
        // replay would find no batch where the producer table points and
        // call the replica damaged.
        let mut reset_to = (end < snap.start_offset).then_some(snap.start_offset);
        drop(log);
        let started = std::time::Instant::now();
        let mut copied = 0u64;
        loop {
            let from = reset_to.unwrap_or_else(|| read_lock(&self.log).end_offset());
            if from >= snap.end_offset {
                break;
            }
            // The log is not locked while the chunk travels: readers of this
            // partition (fetches, status requests) run on the node's async
            // workers, and a worker waiting for the lock could be the one
            // this very call needs, which deadlocked a node. Only this state
            // machine appends to the log, so it cannot change meanwhile.
            let chunk = self.read_chunk_retrying(&snap, from)?;
            if chunk.batches.is_empty() {
                return Err(io::Error::other(format!(
                    "partition {}: node {} sent no batch from offset {from} (its log starts at {})",
                    self.name, snap.source, chunk.start_offset
                )));
            }
            let mut log = write_lock(&self.log);
            if let Some(start) = reset_to.take() {
                log.reset(start)
                    .map_err(|e| self.stop(0, format!("cannot restart the log: {e}")))?;
            }
            for batch in &chunk.batches {
                log.append_raw(batch)
                    .map_err(|e| io::Error::other(format!("partition {}: {e}", self.name)))?;
                copied += batch.len() as u64;
            }
            drop(log);
            sluice_crashpoints::hit(sluice_crashpoints::SNAPSHOT_CHUNK_COPIED);
        }
        let mut log = write_lock(&self.log);
        if let Some(start) = reset_to {
            // Nothing to copy: the source's log is empty from its start on.
            log.reset(start)
                .map_err(|e| self.stop(0, format!("cannot restart the log: {e}")))?;
        }
        log.sync().map_err(io::Error::other)?;
        sluice_crashpoints::hit(sluice_crashpoints::SNAPSHOT_SYNCED);
        if table.applied_index > self.producers.applied_index {
            self.producers = table;
            self.producers.save(log.dir())?;
            self.publish_all();
        }
        let end = log.end_offset();
        drop(log);
        self.end_tx.send_replace(end);
        tracing::info!(
            partition = %self.name, bytes = copied, end_offset = end,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "snapshot installed"
        );
        Ok(())
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
    /// Set when the state machine found its segments differ from its Raft
    /// log (its group then stops): the reconciler takes the replica out and
    /// repairs it.
    pub damage: DamageSlot,
    /// Committed consumer offsets as applied here.
    pub consumers: ConsumersView,
    /// The order this replica, as leader, proposes producers' batches in.
    pub proposal_order: Arc<ProposalOrder>,
}

/// Why a replica's log was not handed to its Raft group.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The segments hold less than, or other than, the replicated state
    /// says: the replica must be repaired first (`crate::repair`).
    #[error("the replica needs a repair: {0}")]
    Damaged(Damage),
}

impl Partition {
    /// Opens the segment log in `dir` (repairing a torn tail) and builds the
    /// state machine around it.
    pub(crate) fn open_log(
        dir: &Path,
        topic: &str,
        index: u32,
        config: LogConfig,
        node: sluice_proto::NodeId,
        group: u64,
        source: SharedLogSource,
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
        let consumers_view = Arc::new(RwLock::new(producers.consumers.clone()));
        let sm = PartitionStateMachine {
            log: log.clone(),
            producers,
            end_tx,
            name: format!("{topic}/{index}"),
            topic: topic.to_string(),
            partition: index,
            node,
            group,
            source,
            damage: DamageSlot::default(),
            consumers_view,
            copy_retry_for: SNAPSHOT_COPY_RETRY_FOR,
        };
        Ok((sm, log, end_rx))
    }

    /// [`Self::open_log`], then checks the segments against the producer
    /// table saved with them (every batch readable, nothing missing below
    /// the synced point: `crate::repair::check`). A replica that fails the
    /// check must not start its group: applying on would write at offsets
    /// the other replicas do not use.
    pub(crate) fn open_checked(
        dir: &Path,
        topic: &str,
        index: u32,
        config: LogConfig,
        node: sluice_proto::NodeId,
        group: u64,
        source: SharedLogSource,
    ) -> Result<(PartitionStateMachine, SharedLog, watch::Receiver<u64>), OpenError> {
        let opened = Self::open_log(dir, topic, index, config, node, group, source)?;
        let name = ReplicaName {
            topic: topic.to_string(),
            partition: index,
            node,
        };
        let damage = crate::repair::check(&name, &mut write_lock(&opened.1), &opened.0.producers)?;
        match damage {
            Some(damage) => Err(OpenError::Damaged(damage)),
            None => Ok(opened),
        }
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn offsets(&self) -> (u64, u64, u64) {
        let log = read_lock(&self.log);
        (log.start_offset(), log.end_offset(), log.size_bytes())
    }

    /// Committed records from `from` on, at most about `max_bytes`, as whole
    /// stored batches from the one holding `from` (the caller skips the
    /// records before it): they are encoded or handed to SmartModules where
    /// they lie, without copying each record out. Read on the blocking pool:
    /// a segment read, and the wait for the log's lock, never hold a tokio
    /// worker (the node's other streams go on meanwhile).
    pub(crate) async fn read_batches_off_worker(
        &self,
        from: u64,
        max_bytes: usize,
    ) -> Result<Vec<StoredBatch>, WireError> {
        let log = self.log.clone();
        let read =
            tokio::task::spawn_blocking(move || read_lock(&log).read_batches(from, max_bytes))
                .await;
        match read {
            Ok(batches) => batches.map_err(|e| self.read_error(e)),
            Err(join) => Err(WireError::Storage {
                what: format!("partition {}/{}", self.topic, self.index),
                reason: format!("the read of its segments did not finish: {join}"),
            }),
        }
    }

    /// A storage error of a read of this partition, as the consumer sees it.
    pub(crate) fn read_error(&self, e: StorageError) -> WireError {
        match e {
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
        }
    }
}

/// Producers whose next sequence a leader keeps per partition before dropping
/// those idle longer than [`REORDER_HINT_TTL`].
const REORDER_HINTS_MAX: usize = 10_000;

/// Puts a pipelining producer's batches into the partition's Raft log in
/// sequence order, on the leader, as far as it can tell.
///
/// A producer may have several batches of one partition in flight, each on
/// its own QUIC stream, and every stream is served by its own task: two
/// batches sent back to back can reach [`Group::write`] in either order. The
/// state machine would then reject the overtaking batch as out of order
/// (correctly, but the producer would have to resend it and every batch
/// after it). So on the leader, a batch whose sequence is past the next one
/// expected from its producer waits, up to [`REORDER_WAIT`], for its
/// predecessor to be proposed; and proposing (handing the entry to Raft,
/// which numbers entries in the order they are handed over) happens under a
/// lock together with advancing the expected sequence, so the waiting batch
/// goes in right behind its predecessor.
///
/// This is a hint, not the rule: it is per node, not replicated, forgotten on
/// restart and after a leader change, and a batch is proposed anyway when its
/// wait is over. Order and exactly-once are decided when the entry is applied
/// (`crate::producers`), the same way on every replica.
#[derive(Default)]
pub(crate) struct ProposalOrder {
    /// Producer id to (next sequence expected, when it was last set).
    next: Mutex<HashMap<u64, (u64, tokio::time::Instant)>>,
    /// Woken each time a batch of some producer is proposed.
    proposed: tokio::sync::Notify,
}

impl ProposalOrder {
    fn next(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (u64, tokio::time::Instant)>> {
        self.next.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `p` is past the batch expected next from its producer.
    fn overtook(&self, p: ProducerSeq) -> bool {
        match self.next().get(&p.producer_id) {
            Some(&(expected, at)) => p.sequence > expected && at.elapsed() < REORDER_HINT_TTL,
            // Not seen here: a new producer starts at 0, and its first
            // batches are the ones most likely to arrive together. (If this
            // node just became leader, a producer further along waits once,
            // for nothing.)
            None => p.sequence > 0,
        }
    }

    /// Proposes `command` (a batch `producer` sent) on `group` and returns the
    /// state machine's answer; see the type's documentation for the order.
    pub(crate) async fn write(
        &self,
        group: &Group<PartitionStateMachine>,
        command: Vec<u8>,
        producer: Option<ProducerSeq>,
    ) -> Result<Vec<u8>, WriteError> {
        let Some(p) = producer else {
            return group.write(command).await;
        };
        let deadline = tokio::time::Instant::now() + REORDER_WAIT;
        loop {
            let notified = self.proposed.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before looking, so a proposal in between is not missed.
            notified.as_mut().enable();
            if !self.overtook(p) {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                tracing::debug!(
                    producer = format_args!("{:x}", p.producer_id),
                    sequence = p.sequence,
                    "the previous batch did not arrive in time; proposing anyway"
                );
                break;
            }
        }
        // `Group::write` hands the entry to Raft when first polled (into a
        // FIFO-fair channel: if it is full, the place in line is taken then),
        // so that first poll happens under the lock that advances the
        // expected sequence. Later polls only wait for the outcome.
        let mut write = std::pin::pin!(group.write(command));
        let mut handed_over = false;
        std::future::poll_fn(|cx| {
            if handed_over {
                return write.as_mut().poll(cx);
            }
            handed_over = true;
            let mut next = self.next();
            let now = tokio::time::Instant::now();
            // A resend restarts from its sequence: the producer resends the
            // batches after it in order.
            next.insert(p.producer_id, (p.sequence + 1, now));
            if next.len() > REORDER_HINTS_MAX {
                next.retain(|_, (_, at)| now.duration_since(*at) < REORDER_HINT_TTL);
            }
            let poll = write.as_mut().poll(cx);
            drop(next);
            self.proposed.notify_waiters();
            poll
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records of `values`, stamped alike every time: a Raft entry is
    /// re-applied from the same bytes, and the replay check compares
    /// timestamps too.
    fn records(values: &[&str]) -> Vec<Record> {
        values
            .iter()
            .map(|v| Record {
                key: None,
                value: v.as_bytes().to_vec(),
                timestamp_ms: 1_700_000_000_000,
                headers: Vec::new(),
            })
            .collect()
    }

    fn append(values: &[&str], producer: Option<(u64, u64)>) -> Vec<u8> {
        encode(&PartitionCommand::Append {
            records: records(values),
            producer: producer.map(|(producer_id, sequence)| ProducerSeq {
                producer_id,
                sequence,
            }),
        })
    }

    fn apply(sm: &mut PartitionStateMachine, index: u64, command: &[u8]) -> AppendOutcome {
        decode(&sm.apply(index, command).unwrap()).unwrap()
    }

    /// Serves batches from logs in this process, by node id: the same reads
    /// a peer answers over QUIC, without the network.
    #[derive(Default)]
    struct LocalSources(Mutex<HashMap<u64, SharedLog>>);

    impl crate::log_copy::LogSource for LocalSources {
        fn read(
            &self,
            source: u64,
            _group: u64,
            from: u64,
        ) -> io::Result<crate::log_copy::RemoteBatches> {
            let logs = self.0.lock().unwrap();
            let log = read_lock(logs.get(&source).expect("source registered"));
            Ok(crate::log_copy::RemoteBatches {
                start_offset: log.start_offset(),
                batches: log.read_raw(from, 1000).map_err(io::Error::other)?,
            })
        }
    }

    fn small_segments() -> LogConfig {
        LogConfig {
            segment_size_bytes: 2048,
            ..LogConfig::default()
        }
    }

    fn open_as(dir: &Path, node: u64, sources: Arc<LocalSources>) -> PartitionStateMachine {
        let (sm, log, _) =
            Partition::open_log(dir, "t", 0, small_segments(), node, 1, sources.clone()).unwrap();
        sources.0.lock().unwrap().insert(node, log);
        sm
    }

    fn open(dir: &Path) -> PartitionStateMachine {
        open_as(dir, 1, Arc::default())
    }

    #[test]
    fn a_replica_installing_a_snapshot_copies_the_segments_and_the_producer_table() {
        let sources = Arc::new(LocalSources::default());
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut leader = open_as(a_dir.path(), 1, sources.clone());
        let batch = |i: u64| {
            append(
                &[&format!("record-{i}-{}", "x".repeat(40))],
                Some((7, i - 1)),
            )
        };
        for i in 1..=120u64 {
            apply(&mut leader, i, &batch(i));
        }
        let snapshot = leader.snapshot().unwrap();
        let mut follower = open_as(b_dir.path(), 2, sources.clone());
        follower.install_snapshot(&snapshot).unwrap();
        let all = |sm: &PartitionStateMachine| {
            let log = read_lock(&sm.log);
            assert!(log.segments().len() > 2, "the copy must cross segments");
            log.read(0, usize::MAX).unwrap()
        };
        assert_eq!(all(&follower), all(&leader));
        // The producer table came along, digests included: a resend of the
        // last batch is recognised, other records under its number are
        // refused, and the next batch gets the same offset on both.
        assert!(matches!(
            apply(&mut follower, 121, &batch(120)),
            AppendOutcome::Retry { base_offset: 119 }
        ));
        assert!(matches!(
            apply(&mut follower, 122, &append(&["dup"], Some((7, 119)))),
            AppendOutcome::SequenceReused { base_offset: 119 }
        ));
        apply(&mut leader, 121, &batch(120));
        apply(&mut leader, 122, &append(&["dup"], Some((7, 119))));
        for sm in [&mut leader, &mut follower] {
            assert!(matches!(
                apply(sm, 123, &append(&["next"], Some((7, 120)))),
                AppendOutcome::Appended { base_offset: 120 }
            ));
        }
        // And it all survives a restart of the follower.
        drop(follower);
        let follower = open_as(b_dir.path(), 2, sources);
        assert_eq!(read_lock(&follower.log).end_offset(), 121);
    }

    /// A source that fails its first `failures` reads, as a paused or
    /// restarting node does, then serves from `inner`.
    struct Flaky {
        inner: Arc<LocalSources>,
        failures: std::sync::atomic::AtomicU32,
    }

    impl crate::log_copy::LogSource for Flaky {
        fn read(
            &self,
            source: u64,
            group: u64,
            from: u64,
        ) -> io::Result<crate::log_copy::RemoteBatches> {
            use std::sync::atomic::Ordering;
            if self
                .failures
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(io::Error::other("connection lost"));
            }
            self.inner.read(source, group, from)
        }
    }

    #[test]
    fn an_install_whose_source_is_briefly_unreachable_asks_again_and_completes() {
        let sources = Arc::new(LocalSources::default());
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut leader = open_as(a_dir.path(), 1, sources.clone());
        for i in 1..=30u64 {
            apply(
                &mut leader,
                i,
                &append(&[&format!("r{i}")], Some((7, i - 1))),
            );
        }
        let flaky = Arc::new(Flaky {
            inner: sources.clone(),
            failures: 3.into(),
        });
        let (mut follower, _, _) =
            Partition::open_log(b_dir.path(), "t", 0, small_segments(), 2, 1, flaky.clone())
                .unwrap();
        let started = std::time::Instant::now();
        follower
            .install_snapshot(&leader.snapshot().unwrap())
            .expect("three failed reads are within the retries");
        assert_eq!(flaky.failures.load(std::sync::atomic::Ordering::Acquire), 0);
        // Three pauses: 100, 200 and 400 ms.
        assert!(started.elapsed() >= std::time::Duration::from_millis(700));
        let all = |sm: &PartitionStateMachine| read_lock(&sm.log).read(0, usize::MAX).unwrap();
        assert_eq!(all(&follower), all(&leader));
    }

    /// A replica far behind (its end below the source's start) keeps its
    /// segments when the install fails before any batch arrived: the log
    /// restarts at the source's start only once a chunk from there is in
    /// hand, so the replica's restart replays its Raft log over intact
    /// segments instead of finding them empty and damaged.
    #[test]
    fn an_install_that_gets_no_batch_leaves_a_lagging_log_as_it_was() {
        let sources = Arc::new(LocalSources::default());
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let config = LogConfig {
            retention_bytes: Some(1),
            ..small_segments()
        };
        let (mut leader, log, _) =
            Partition::open_log(a_dir.path(), "t", 0, config, 1, 1, sources.clone()).unwrap();
        sources.0.lock().unwrap().insert(1, log);
        let command = |i: u64| append(&[&format!("record-{i}-{}", "x".repeat(60))], None);
        for i in 1..=80 {
            apply(&mut leader, i, &command(i));
        }
        write_lock(&leader.log).enforce_retention(0).unwrap();
        let start = read_lock(&leader.log).start_offset();
        assert!(start > 2, "retention must delete the head");
        let snapshot = leader.snapshot().unwrap();

        let silent = Arc::new(Flaky {
            inner: sources.clone(),
            failures: u32::MAX.into(),
        });
        let (mut follower, _, _) =
            Partition::open_log(b_dir.path(), "t", 0, small_segments(), 2, 1, silent).unwrap();
        follower.copy_retry_for = std::time::Duration::from_millis(300);
        for i in 1..=2 {
            apply(&mut follower, i, &command(i));
        }
        let before = read_lock(&follower.log).read(0, usize::MAX).unwrap();
        assert_eq!(before.len(), 2);
        let e = follower.install_snapshot(&snapshot).unwrap_err();
        assert!(
            e.to_string().contains("cannot copy the snapshot's batches"),
            "{e}"
        );
        let log = read_lock(&follower.log);
        assert_eq!(log.start_offset(), 0, "the log was not restarted");
        assert_eq!(log.read(0, usize::MAX).unwrap(), before);
        drop(log);

        // With a source that answers, the same install restarts the log at
        // the source's start and copies it.
        let (mut follower, _, _) =
            Partition::open_log(b_dir.path(), "t", 0, small_segments(), 2, 1, sources).unwrap();
        follower.install_snapshot(&snapshot).unwrap();
        let all = |sm: &PartitionStateMachine| read_lock(&sm.log).read(start, usize::MAX).unwrap();
        assert_eq!(read_lock(&follower.log).start_offset(), start);
        assert_eq!(all(&follower), all(&leader));
    }

    #[test]
    fn committed_offsets_are_checked_at_apply_survive_a_restart_and_travel_in_snapshots() {
        let sources = Arc::new(LocalSources::default());
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut leader = open_as(a_dir.path(), 1, sources.clone());
        let commit = |consumer: &str, offset, sequence| {
            encode(&PartitionCommand::CommitOffset(CommitEntry {
                consumer: consumer.into(),
                offset,
                session: 9,
                sequence,
                state: Some(serde_bytes::ByteBuf::from(vec![offset as u8])),
                member: None,
                committed_ms: 5,
            }))
        };
        let offset_of = |sm: &PartitionStateMachine, c: &str| {
            let view = sm.consumers_view();
            let view = view.read().unwrap();
            view.committed(Some(c)).next().map(|(_, o)| o.offset)
        };
        apply(&mut leader, 1, &append(&["a", "b", "c"], None));
        // The end is the state machine's own: 3 is fine, 4 is past it.
        assert!(matches!(
            apply(&mut leader, 2, &commit("app", 3, 0)),
            AppendOutcome::OffsetCommitted
        ));
        let AppendOutcome::Refused { error } = apply(&mut leader, 3, &commit("app", 4, 1)) else {
            panic!("a commit past the end was stored")
        };
        assert!(error.to_string().contains("past the end of t/0"), "{error}");
        // The group fence answers the committed offset and state.
        let fence = encode(&PartitionCommand::FenceConsumer {
            consumer: "app".into(),
            generation: 2,
        });
        let AppendOutcome::Fenced { offset, state } = apply(&mut leader, 4, &fence) else {
            panic!("not fenced")
        };
        assert_eq!(
            (offset, state.map(|s| s.into_vec())),
            (Some(3), Some(vec![3]))
        );
        apply(&mut leader, 5, &commit("other", 1, 0));
        assert_eq!(offset_of(&leader, "app"), Some(3));

        // A restart from the last synced point re-applies what came after.
        leader.sync().unwrap();
        apply(&mut leader, 6, &commit("late", 2, 0));
        drop(leader);
        let mut leader = open_as(a_dir.path(), 1, sources.clone());
        assert_eq!(
            offset_of(&leader, "late"),
            None,
            "not synced: re-applied from the log"
        );
        assert!(matches!(
            apply(&mut leader, 5, &commit("other", 1, 0)),
            AppendOutcome::Replayed
        ));
        apply(&mut leader, 6, &commit("late", 2, 0));
        assert_eq!(offset_of(&leader, "late"), Some(2));
        assert_eq!(offset_of(&leader, "app"), Some(3));

        // A replica that installs a snapshot gets the offsets and the fence.
        let snapshot = leader.snapshot().unwrap();
        let mut follower = open_as(b_dir.path(), 2, sources.clone());
        follower.install_snapshot(&snapshot).unwrap();
        assert_eq!(offset_of(&follower, "app"), Some(3));
        let AppendOutcome::Refused { error } = apply(&mut follower, 7, &commit("app", 1, 5)) else {
            panic!("a plain commit under a fenced group's name was stored")
        };
        assert!(error.to_string().contains("is a consumer group"), "{error}");
        let forget = encode(&PartitionCommand::ForgetConsumer {
            consumer: "app".into(),
        });
        assert!(matches!(
            apply(&mut follower, 8, &forget),
            AppendOutcome::Forgotten { found: true }
        ));
        assert_eq!(offset_of(&follower, "app"), None);
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
            apply(&mut sm, 4, &append(&["a", "b"], Some((7, 0)))),
            AppendOutcome::Retry { base_offset: 0 }
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
            (4, append(&["a", "b"], Some((7, 0)))),
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

    fn append_at(values: &[&str], expected_offset: u64) -> Vec<u8> {
        encode(&PartitionCommand::AppendAt {
            records: records(values),
            expected_offset,
        })
    }

    /// The offset check is made when the entry is applied, from the offset
    /// cursor: two writers that both believed the partition ended at 2
    /// cannot both write, and a replay judges each entry as before.
    #[test]
    fn a_conditional_append_is_written_only_at_its_offset_even_on_replay() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = open(dir.path());
        apply(&mut sm, 1, &append(&["a", "b"], None));
        assert!(matches!(
            apply(&mut sm, 2, &append_at(&["c"], 2)),
            AppendOutcome::Appended { base_offset: 2 }
        ));
        // The other writer's append, decided on the same end.
        assert!(matches!(
            apply(&mut sm, 3, &append_at(&["c'"], 2)),
            AppendOutcome::NotAt { end_offset: 3 }
        ));
        assert!(matches!(
            apply(&mut sm, 4, &append_at(&["d"], 3)),
            AppendOutcome::Appended { base_offset: 3 }
        ));
        assert_eq!(values(&sm), ["a", "b", "c", "d"]);
        drop(sm);
        // No synced point: every entry is applied again after a restart.
        let mut sm = open(dir.path());
        apply(&mut sm, 1, &append(&["a", "b"], None));
        apply(&mut sm, 2, &append_at(&["c"], 2));
        assert!(matches!(
            apply(&mut sm, 3, &append_at(&["c'"], 2)),
            AppendOutcome::NotAt { end_offset: 3 }
        ));
        apply(&mut sm, 4, &append_at(&["d"], 3));
        assert!(matches!(
            apply(&mut sm, 5, &append_at(&["e"], 4)),
            AppendOutcome::Appended { base_offset: 4 }
        ));
        assert_eq!(values(&sm), ["a", "b", "c", "d", "e"]);
    }

    fn values(sm: &PartitionStateMachine) -> Vec<String> {
        read_lock(&sm.log)
            .read(0, 1 << 20)
            .unwrap()
            .into_iter()
            .map(|r| String::from_utf8(r.value).unwrap())
            .collect()
    }

    #[test]
    fn pipelined_batches_are_stored_in_sequence_order_once_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = open(dir.path());
        let outcome = |sm: &mut PartitionStateMachine, index, values: &[&str], s| {
            apply(sm, index, &append(values, Some((9, s))))
        };
        assert!(matches!(
            outcome(&mut sm, 1, &["a"], 0),
            AppendOutcome::Appended { base_offset: 0 }
        ));
        // Batch 1 failed on its way; batches 2 and 3 overtook it.
        assert!(matches!(
            outcome(&mut sm, 2, &["c"], 2),
            AppendOutcome::OutOfOrder {
                last_sequence: Some(0)
            }
        ));
        assert!(matches!(
            outcome(&mut sm, 3, &["d", "e"], 3),
            AppendOutcome::OutOfOrder {
                last_sequence: Some(0)
            }
        ));
        // The producer resends 1, 2 and 3 in order.
        assert!(matches!(
            outcome(&mut sm, 4, &["b"], 1),
            AppendOutcome::Appended { base_offset: 1 }
        ));
        assert!(matches!(
            outcome(&mut sm, 5, &["c"], 2),
            AppendOutcome::Appended { base_offset: 2 }
        ));
        sm.sync().unwrap();
        assert!(matches!(
            outcome(&mut sm, 6, &["d", "e"], 3),
            AppendOutcome::Appended { base_offset: 3 }
        ));
        drop(sm);

        // A crash after entry 6: replay from the synced point (entry 5).
        let mut sm = open(dir.path());
        assert!(matches!(
            outcome(&mut sm, 6, &["d", "e"], 3),
            AppendOutcome::Replayed
        ));
        // Acknowledgements of 1..=3 were lost: all three are resent, and one
        // that overtakes them is refused without being written.
        assert!(matches!(
            outcome(&mut sm, 7, &["f"], 4 + 1),
            AppendOutcome::OutOfOrder {
                last_sequence: Some(3)
            }
        ));
        for (index, values, s, offset) in [
            (8, &["b"][..], 1, 1),
            (9, &["c"][..], 2, 2),
            (10, &["d", "e"][..], 3, 3),
        ] {
            match outcome(&mut sm, index, values, s) {
                AppendOutcome::Retry { base_offset } => assert_eq!(base_offset, offset),
                other => panic!("batch {s}: {other:?}"),
            }
        }
        assert!(matches!(
            outcome(&mut sm, 11, &["f"], 4),
            AppendOutcome::Appended { base_offset: 5 }
        ));
        assert_eq!(values(&sm), ["a", "b", "c", "d", "e", "f"]);
    }
    #[test]
    fn other_records_under_a_written_sequence_are_refused_and_the_resend_still_answered() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = open(dir.path());
        let entries = [
            append(&["a", "b"], Some((7, 0))),
            append(&["c"], Some((7, 1))),
            // Another producer with the same id numbers its first batch 1 too.
            append(&["intruder"], Some((7, 1))),
            // The genuine resend of batch 1 (its answer was lost).
            append(&["c"], Some((7, 1))),
            append(&["d"], Some((7, 2))),
        ];
        let outcomes = |sm: &mut PartitionStateMachine, from: u64| -> Vec<String> {
            (from..=entries.len() as u64)
                .map(|i| format!("{:?}", apply(sm, i, &entries[i as usize - 1])))
                .collect()
        };
        let first = outcomes(&mut sm, 1);
        assert_eq!(
            first,
            [
                "Appended { base_offset: 0 }",
                "Appended { base_offset: 2 }",
                "SequenceReused { base_offset: 2 }",
                "Retry { base_offset: 2 }",
                "Appended { base_offset: 3 }",
            ]
        );
        assert_eq!(values(&sm), ["a", "b", "c", "d"]);

        // Every replica, and a replay after a crash, judges the same.
        let other = tempfile::tempdir().unwrap();
        assert_eq!(outcomes(&mut open(other.path()), 1), first);
        drop(sm);
        let mut sm = open(dir.path());
        assert_eq!(
            outcomes(&mut sm, 1)[2..],
            [
                "SequenceReused { base_offset: 2 }",
                "Retry { base_offset: 2 }",
                "Replayed"
            ]
        );
        assert_eq!(values(&sm), ["a", "b", "c", "d"]);
    }

    /// Writes batches into the segment log in `dir` directly, as a replica
    /// would have stored them (each `(entry id, values)`).
    fn store(dir: &Path, batches: &[(u64, &[&str])]) {
        let (mut log, _) = PartitionLog::open(dir, 0, small_segments()).unwrap();
        for (entry_id, values) in batches {
            log.append(*entry_id, &records(values)).unwrap();
        }
        log.sync().unwrap();
    }

    /// Re-applies `command` as entry `index` and returns the replay error.
    fn replay_error(
        sm: &mut PartitionStateMachine,
        index: u64,
        command: &[u8],
    ) -> (SegmentsMismatch, String) {
        let err = sm
            .apply(index, command)
            .expect_err("the replay must stop the replica");
        let text = err.to_string();
        let inner = err
            .into_inner()
            .expect("carries the mismatch")
            .downcast::<SegmentsMismatch>()
            .expect("a SegmentsMismatch");
        (*inner, text)
    }

    #[test]
    fn a_replayed_entry_whose_batch_sits_elsewhere_stops_the_replica() {
        let dir = tempfile::tempdir().unwrap();
        // Entry 2's batch is missing from the segments: entry 3's sits
        // where entry 2's should.
        store(dir.path(), &[(1, &["a"]), (3, &["c"])]);
        let mut sm = open(dir.path());
        assert!(matches!(
            apply(&mut sm, 1, &append(&["a"], None)),
            AppendOutcome::Replayed
        ));
        let (e, text) = replay_error(&mut sm, 2, &append(&["b"], None));
        assert_eq!((e.topic.as_str(), e.partition, e.node), ("t", 0, 1));
        assert_eq!((e.index, e.expected, e.records), (2, 1, 1));
        assert!(
            matches!(
                e.found,
                Found::OtherBatch {
                    entry_id: 3,
                    base_offset: 1,
                    end_offset: 2
                }
            ),
            "{:?}",
            e.found
        );
        for part in [
            "partition t/0 on node 1",
            "Raft entry 2 (re-applied after a restart",
            "belongs at offset 1",
            "entry 3's, at offsets 1..2",
            "sluice partition reassign",
        ] {
            assert!(text.contains(part), "{part:?} missing from {text}");
        }
        // Nothing was appended or skipped over.
        assert_eq!(values(&sm), ["a", "c"]);
        // And the reconciler learns of it, to repair the segments.
        match sm.damage_slot().take() {
            Some(Damage::Replay {
                index: 2,
                stage: Stage::Replay,
                expected: 1,
                found,
            }) => assert!(found.contains("entry 3's"), "{found}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_replayed_entry_with_other_records_or_past_the_segments_stops_the_replica() {
        // Same entry id at the same offset, other records.
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), &[(1, &["a", "b"]), (2, &["c"])]);
        let mut sm = open(dir.path());
        let (e, _) = replay_error(&mut sm, 1, &append(&["a", "x"], Some((5, 0))));
        assert!(
            matches!(e.found, Found::OtherRecords { offset: 1 }),
            "{:?}",
            e.found
        );
        // The same keys, values and times with headers the stored ones lack.
        let mut headed = records(&["a", "b"]);
        headed[1]
            .headers
            .push(sluice_proto::RecordHeader::new("h", "1"));
        let command = encode(&PartitionCommand::append(headed, None));
        let (e, _) = replay_error(&mut open(dir.path()), 1, &command);
        assert!(
            matches!(e.found, Found::OtherRecords { offset: 1 }),
            "{:?}",
            e.found
        );
        // Same entry id at the same offset, one record more.
        let (e, _) = replay_error(&mut open(dir.path()), 1, &append(&["a", "b", "c"], None));
        assert!(
            matches!(
                e.found,
                Found::OtherBatch {
                    entry_id: 1,
                    base_offset: 0,
                    end_offset: 2
                }
            ),
            "{:?}",
            e.found
        );

        // A saved table that puts the replay past the segments' end.
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), &[(1, &["a"]), (2, &["b"])]);
        let mut table = ProducerTable::default();
        (table.applied_index, table.next_offset) = (1, 5);
        table.save(dir.path()).unwrap();
        let (e, text) = replay_error(&mut open(dir.path()), 2, &append(&["b"], None));
        assert_eq!(e.expected, 5);
        assert!(
            matches!(e.found, Found::SegmentsEnd { end: 2 }),
            "{:?}",
            e.found
        );
        assert!(text.contains("the segments end at offset 2"), "{text}");
    }

    #[test]
    fn a_replay_over_segments_that_retention_deleted_checks_what_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            retention_bytes: Some(1),
            ..small_segments()
        };
        let open = || {
            let (sm, _, _) = Partition::open_log(
                dir.path(),
                "t",
                0,
                config.clone(),
                1,
                1,
                Arc::new(LocalSources::default()),
            )
            .unwrap();
            sm
        };
        let command = |i: u64| append(&[&format!("record-{i}-{}", "x".repeat(60))], None);
        let mut sm = open();
        apply(&mut sm, 1, &command(1));
        sm.sync().unwrap();
        for i in 2..=80 {
            apply(&mut sm, i, &command(i));
        }
        let report = write_lock(&sm.log).enforce_retention(0).unwrap();
        assert!(
            !report.deleted.is_empty(),
            "retention must delete something"
        );
        let start = read_lock(&sm.log).start_offset();
        assert!(start > 1);
        drop(sm);

        // A crash: entries 2..=80 are re-applied; those whose batches
        // retention deleted cannot be checked, the others are.
        let mut sm = open();
        for i in 2..=80 {
            assert!(matches!(
                apply(&mut sm, i, &command(i)),
                AppendOutcome::Replayed
            ));
        }
        assert!(matches!(
            apply(&mut sm, 81, &command(81)),
            AppendOutcome::Appended { base_offset: 80 }
        ));
        // And a wrong batch among those still stored is caught: entries
        // 2..=start were at offsets 1..start, which retention deleted.
        drop(sm);
        let mut sm = open();
        for i in 2..=start {
            assert!(matches!(
                apply(&mut sm, i, &command(i)),
                AppendOutcome::Replayed
            ));
        }
        let (e, _) = replay_error(&mut sm, start + 1, &append(&["not what was written"], None));
        assert_eq!(e.expected, start);
        assert!(
            matches!(e.found, Found::OtherRecords { offset } if offset == start),
            "{:?}",
            e.found
        );
    }

    #[test]
    fn a_replica_whose_segments_lost_synced_records_stops_without_appending_again_and_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = open(dir.path());
        for i in 1..=3 {
            apply(&mut sm, i, &append(&[&format!("r{i}")], None));
        }
        sm.sync().unwrap();
        drop(sm);
        // Corruption in synced data: the last stored batch is damaged, and
        // opening the log cuts it off; the table, saved at the synced
        // point, expects the next batch at offset 3.
        let segment = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "log"))
            .expect("a segment file");
        let mut bytes = std::fs::read(&segment).unwrap();
        *bytes.last_mut().unwrap() ^= 0xFF;
        std::fs::write(&segment, bytes).unwrap();

        // Each start of the replica (the reconciler retries every 5 s)
        // applies entry 4 again: the same refusal, and nothing written.
        for _ in 0..3 {
            let mut sm = open(dir.path());
            assert_eq!(read_lock(&sm.log).end_offset(), 2);
            let err = sm
                .apply(4, &append(&["r4"], None))
                .expect_err("the replica must stop");
            let e = err
                .into_inner()
                .unwrap()
                .downcast::<SegmentsMismatch>()
                .unwrap();
            assert_eq!((e.index, e.stage, e.expected), (4, Stage::Append, 3));
            assert!(
                matches!(e.found, Found::SegmentsEnd { end: 2 }),
                "{:?}",
                e.found
            );
            assert_eq!(values(&sm), ["r1", "r2"]);
            // A snapshot being built may still sync the stopped replica:
            // the entry must not be saved as applied, or the next start
            // would skip it and append entry 5's batch at offset 2.
            sm.sync().unwrap();
        }
    }
}
