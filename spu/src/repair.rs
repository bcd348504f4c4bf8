//! Self-repair of a replica whose segments hold less than, or other than,
//! what its replicated state says they hold.
//!
//! A partition's segments are its state machine's state; the producer table
//! saved beside them at each synced point (`crate::producers`) records how far
//! they reached then (`next_offset`, entry `applied_index`), and the node's
//! Raft log holds every entry after that point. So a replica can tell at open
//! that its files were damaged (truncated, bits flipped, a segment cut short)
//! where a crash cannot have done it: the segments end before the synced
//! point, or a stored batch cannot be read ([`check`]). A replay that finds a
//! stored batch other than the one its Raft entry appended
//! (`crate::partition::SegmentsMismatch`) is the same kind of damage, found
//! later ([`DamageSlot`]).
//!
//! Such a replica must not be written to (each later batch would get another
//! offset here than on the other replicas) and must not serve. Its Raft log,
//! in RocksDB, is not what was damaged, so the repair replaces the segments
//! only, before the replica's Raft group starts (so it neither votes nor leads
//! meanwhile): a new log is assembled in a staging directory from another
//! replica's batches, copied byte for byte with their entry ids
//! (`crate::log_copy`), at least up to the synced point; the damaged directory
//! is moved to the node's quarantine directory (kept for diagnosis, at most
//! [`QUARANTINE_KEPT`] per partition) and the copy takes its place, with the
//! replica's own producer table (it describes the synced point, which its Raft
//! log continues). The group then starts as after any restart, and its replay
//! checks every re-applied entry against the copied batches.
//!
//! A partition with no other replica cannot be repaired: its files are left in
//! place, untouched, and the replica stays stopped with an error that says
//! what to do ([`RepairError::NoSource`]).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sluice_proto::NodeId;
use sluice_storage::{DamagedBatch, LogConfig, PartitionLog, StorageError};

use crate::log_copy::SharedLogSource;
use crate::partition::Stage;
use crate::producers::ProducerTable;
use crate::timeouts::REPLICA_RETRY_INTERVAL;

/// Quarantined directories kept per partition; a repair that would keep more
/// deletes the oldest. They are for diagnosis, and the newest damage is the
/// one to look at; without a bound, a disk that keeps damaging one replica
/// would fill up with copies of it.
pub(crate) const QUARANTINE_KEPT: usize = 3;

/// A partition replica, as errors and logs name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReplicaName {
    pub topic: String,
    pub partition: u32,
    pub node: NodeId,
}

impl fmt::Display for ReplicaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "partition {}/{} on node {}",
            self.topic, self.partition, self.node
        )
    }
}

/// How a replica's segments differ from its replicated state.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum Damage {
    /// The segments end before the point they had reached when last synced:
    /// records the Raft log may no longer hold are gone.
    #[error(
        "its segments end at offset {end}, but its producer table, saved when they were last \
         synced (Raft entry {applied_index}), says they held records up to offset {synced_end}"
    )]
    Short {
        end: u64,
        synced_end: u64,
        applied_index: u64,
    },
    /// A stored batch cannot be read (CRC, framing, offsets, a segment cut short).
    #[error(
        "its batch at offset {} cannot be read ({} at byte {}: {})",
        .0.offset, .0.path.display(), .0.position, .0.reason
    )]
    Unreadable(DamagedBatch),
    /// Re-applying the Raft log found another batch (or none) where an
    /// entry's batch belongs.
    #[error("Raft entry {index} ({stage}) belongs at offset {expected}, but {found}")]
    Replay {
        index: u64,
        stage: Stage,
        expected: u64,
        found: String,
    },
}

impl Damage {
    /// The offset from which this replica's segments cannot be trusted.
    pub(crate) fn offset(&self) -> u64 {
        match self {
            Damage::Short { end, .. } => *end,
            Damage::Unreadable(batch) => batch.offset,
            Damage::Replay { expected, .. } => *expected,
        }
    }
}

/// Where a replica's state machine reports damage it finds while applying
/// (a replay mismatch), for the reconciler to read after the state machine
/// has moved into its Raft group (or died with a group that failed to start).
#[derive(Clone, Default)]
pub(crate) struct DamageSlot(Arc<Mutex<Option<Damage>>>);

impl DamageSlot {
    /// Keeps the first damage reported: later ones follow from it.
    pub(crate) fn record(&self, damage: Damage) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(damage);
    }

    pub(crate) fn is_set(&self) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    pub(crate) fn take(&self) -> Option<Damage> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Checks an opened log against the producer table saved with it: reads
/// every stored batch (rewriting damaged indexes on the way, which loses
/// nothing) and compares the end with the synced point. `Ok(Some(_))` means
/// the replica must be repaired before its group starts.
pub(crate) fn check(
    name: &ReplicaName,
    log: &mut PartitionLog,
    table: &ProducerTable,
) -> Result<Option<Damage>, StorageError> {
    let report = log.verify()?;
    for path in &report.rebuilt_indexes {
        tracing::warn!(
            partition = %format_args!("{}/{}", name.topic, name.partition),
            path = %path.display(),
            "rewrote a segment index that disagreed with its segment (nothing was lost)"
        );
    }
    if let Some(batch) = report.damage {
        return Ok(Some(Damage::Unreadable(batch)));
    }
    let end = log.end_offset();
    if end < table.next_offset {
        return Ok(Some(Damage::Short {
            end,
            synced_end: table.next_offset,
            applied_index: table.applied_index,
        }));
    }
    Ok(None)
}

/// The directories a repair of one partition works with, all under the
/// node's data dir (one file system, so the moves are renames).
#[derive(Debug, Clone)]
pub(crate) struct RepairPaths {
    /// The partition's directory: segments and producer table.
    pub dir: PathBuf,
    /// Where the new copy is assembled before it replaces `dir`.
    pub staging: PathBuf,
    /// Where damaged directories go, as `<dir name>.<unix seconds>`.
    pub quarantine: PathBuf,
}

/// Finishes or drops a repair that a crash interrupted, before the
/// partition's directory is opened. A staging directory holding a producer
/// table is a complete copy (the table is written last); if the partition's
/// directory is gone, the crash came between the two renames and the copy is
/// moved into place. Any other staging directory is an unfinished copy.
pub(crate) fn finish_interrupted(paths: &RepairPaths) -> io::Result<()> {
    if !paths.staging.exists() {
        return Ok(());
    }
    let complete = ProducerTable::path(&paths.staging).exists();
    if complete && !paths.dir.exists() {
        if let Some(parent) = paths.dir.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::rename(&paths.staging, &paths.dir)?;
        sync_parent(&paths.dir)?;
        tracing::warn!(
            dir = %paths.dir.display(),
            "finished a repair that a restart interrupted: the copied segments took their place"
        );
    } else {
        std::fs::remove_dir_all(&paths.staging)?;
        tracing::info!(
            staging = %paths.staging.display(),
            "removed the copy of a repair that a restart interrupted"
        );
    }
    Ok(())
}

/// One repair: what to copy, from whom, and where.
pub(crate) struct RepairJob {
    pub name: ReplicaName,
    /// The partition's Raft group (what other nodes serve its log under).
    pub group: u64,
    pub paths: RepairPaths,
    pub config: LogConfig,
    /// Other replicas of the partition, in the order they are tried.
    pub sources: Vec<NodeId>,
    pub source: SharedLogSource,
    /// What was found, for the messages.
    pub damage: Damage,
    /// Set when the partition is no longer wanted here: the copy stops.
    pub cancelled: Arc<AtomicBool>,
}

/// What a finished repair did.
#[derive(Debug, Clone)]
pub(crate) struct Repaired {
    pub from: NodeId,
    pub batches: u64,
    pub bytes: u64,
    pub start_offset: u64,
    pub end_offset: u64,
    /// Where the damaged directory was moved.
    pub quarantined: PathBuf,
    pub elapsed: Duration,
}

/// Why one source did not give a usable copy.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SourceFailure {
    #[error("node {node} did not send its log: {error}")]
    Unreachable { node: NodeId, error: io::Error },
    #[error(
        "node {node} holds offsets {start}..{end} only, short of offset {needed} (it may be \
         behind, or recovering itself)"
    )]
    Short {
        node: NodeId,
        start: u64,
        end: u64,
        needed: u64,
    },
    #[error("node {node}'s batch at offset {offset} was refused: {error}")]
    BadBatch {
        node: NodeId,
        offset: u64,
        error: StorageError,
    },
}

/// The failures of every source tried, for one message.
#[derive(Debug)]
pub(crate) struct Failures(pub Vec<SourceFailure>);

impl fmt::Display for Failures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, failure) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{failure}")?;
        }
        Ok(())
    }
}

/// Why a replica was not repaired (it stays stopped; nothing was moved
/// unless the message says so).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RepairError {
    #[error(
        "{name}: {damage}. The partition has no other replica to copy from, so the replica \
         stays stopped and its files are left in place, untouched, in {}. Restore that \
         directory from a backup and restart the node, or accept the loss of the partition's \
         records: delete and re-create the topic",
        dir.display()
    )]
    NoSource {
        name: ReplicaName,
        damage: Box<Damage>,
        dir: PathBuf,
    },
    #[error(
        "{name}: {damage}. No other replica gave a copy reaching offset {needed} ({failures}). \
         The replica stays stopped (it neither serves nor votes), its files are untouched, and \
         the copy is tried again every {}s: bring another replica of the partition back, or \
         move the partition off node {} (`sluice partition reassign`)",
        retry.as_secs(), name.node
    )]
    NoCopy {
        name: ReplicaName,
        damage: Box<Damage>,
        needed: u64,
        failures: Failures,
        retry: Duration,
    },
    #[error("{name}: cannot {op} {}: {error}", path.display())]
    Io {
        name: ReplicaName,
        op: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    #[error("{name}: cannot write the copy in {}: {error}", path.display())]
    Storage {
        name: ReplicaName,
        path: PathBuf,
        error: StorageError,
    },
    #[error("{name}: repair abandoned: the partition is no longer assigned to this node")]
    Cancelled { name: ReplicaName },
    /// Damaged again right after a repair: the replica's Raft log and the
    /// other replicas' segments disagree.
    #[error(
        "{name}: {damage}, right after its segments were copied from node {from} (offsets \
         {start}..{end}; the damaged ones are in {}). Its Raft log and the other replicas' \
         segments disagree, so neither can be trusted here: the replica stays stopped until \
         the node restarts, and never serves or votes. Move the partition off node {} \
         (`sluice partition reassign`), or remove node {}'s data dir and let it rejoin under \
         a new --id with --join",
        quarantined.display(), name.node, name.node
    )]
    Unrepairable {
        name: ReplicaName,
        damage: Box<Damage>,
        from: NodeId,
        start: u64,
        end: u64,
        quarantined: PathBuf,
    },
}

impl RepairJob {
    /// Copies the log from the first source that can give it, then puts the
    /// copy in place of the damaged directory (which is quarantined).
    /// Blocking: file and network I/O (run it on the blocking pool).
    pub(crate) fn run(&self) -> Result<Repaired, RepairError> {
        let started = Instant::now();
        let dir = &self.paths.dir;
        let table = ProducerTable::load(dir).map_err(|error| RepairError::Io {
            name: self.name.clone(),
            op: "load the producer table",
            path: ProducerTable::path(dir),
            error,
        })?;
        let needed = table.next_offset;
        tracing::warn!(
            partition = %format_args!("{}/{}", self.name.topic, self.name.partition),
            damage = %self.damage, needed, sources = ?self.sources,
            "repairing the replica: copying its segments from another replica"
        );
        let mut failures = Vec::new();
        for &from in &self.sources {
            match self.copy_from(from, &table)? {
                Ok((batches, bytes, start_offset, end_offset)) => {
                    let quarantined = self.swap()?;
                    let repaired = Repaired {
                        from,
                        batches,
                        bytes,
                        start_offset,
                        end_offset,
                        quarantined,
                        elapsed: started.elapsed(),
                    };
                    tracing::info!(
                        partition = %format_args!("{}/{}", self.name.topic, self.name.partition),
                        source = from, batches, bytes, start_offset, end_offset,
                        quarantined = %repaired.quarantined.display(),
                        repair_ms = repaired.elapsed.as_millis() as u64,
                        "replica repaired: its segments were copied from another replica"
                    );
                    return Ok(repaired);
                }
                Err(failure) => {
                    tracing::warn!(
                        partition = %format_args!("{}/{}", self.name.topic, self.name.partition),
                        error = %failure, "this source cannot repair the replica; trying the next"
                    );
                    failures.push(failure);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.paths.staging);
        Err(RepairError::NoCopy {
            name: self.name.clone(),
            damage: Box::new(self.damage.clone()),
            needed,
            failures: Failures(failures),
            retry: REPLICA_RETRY_INTERVAL,
        })
    }

    /// Assembles a copy of `from`'s log in the staging directory, from the
    /// source's first offset (its retention decides where the copy starts)
    /// at least to the synced point, then saves `table` there, last: a
    /// staging directory with a table is complete. Returns the batches and
    /// bytes copied and the copy's offsets, or why this source cannot serve.
    #[allow(clippy::type_complexity)]
    fn copy_from(
        &self,
        from: NodeId,
        table: &ProducerTable,
    ) -> Result<Result<(u64, u64, u64, u64), SourceFailure>, RepairError> {
        let staging = &self.paths.staging;
        let storage = |error| RepairError::Storage {
            name: self.name.clone(),
            path: staging.clone(),
            error,
        };
        match std::fs::remove_dir_all(staging) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(self.io("remove the old copy", staging, e));
            }
            _ => {}
        }
        let (mut log, _) = PartitionLog::open(staging, self.name.partition, self.config.clone())
            .map_err(storage)?;
        let needed = table.next_offset;
        let (mut batches, mut bytes) = (0u64, 0u64);
        loop {
            let end = log.end_offset();
            // Past the synced point the copy must hold a batch, or the
            // replay (whose cursor is the synced point) would append where
            // the copy does not end.
            if end >= needed && (end == needed || log.last_entry_id().is_some()) {
                break;
            }
            if self.cancelled.load(Ordering::Acquire) {
                return Err(RepairError::Cancelled {
                    name: self.name.clone(),
                });
            }
            let chunk = match self.source.read(from, self.group, end) {
                Ok(chunk) => chunk,
                Err(error) => {
                    return Ok(Err(SourceFailure::Unreachable { node: from, error }));
                }
            };
            if chunk.batches.is_empty() {
                if log.last_entry_id().is_none() && chunk.start_offset > end {
                    // The source's retention deleted the first offsets:
                    // the copy starts where the source's log does.
                    log.reset(chunk.start_offset).map_err(storage)?;
                    continue;
                }
                return Ok(Err(SourceFailure::Short {
                    node: from,
                    start: chunk.start_offset,
                    end,
                    needed,
                }));
            }
            for batch in &chunk.batches {
                let offset = log.end_offset();
                if let Err(error) = log.append_raw(batch) {
                    return Ok(Err(SourceFailure::BadBatch {
                        node: from,
                        offset,
                        error,
                    }));
                }
                batches += 1;
                bytes += batch.len() as u64;
            }
        }
        log.sync().map_err(storage)?;
        let offsets = (log.start_offset(), log.end_offset());
        drop(log);
        table
            .save(staging)
            .map_err(|e| self.io("save the producer table in", staging, e))?;
        Ok(Ok((batches, bytes, offsets.0, offsets.1)))
    }

    /// Moves the damaged directory to the quarantine and the copy into its
    /// place, durably, and drops the oldest quarantined copies beyond
    /// [`QUARANTINE_KEPT`]. Returns where the damaged directory went.
    fn swap(&self) -> Result<PathBuf, RepairError> {
        if self.cancelled.load(Ordering::Acquire) {
            let _ = std::fs::remove_dir_all(&self.paths.staging);
            return Err(RepairError::Cancelled {
                name: self.name.clone(),
            });
        }
        let RepairPaths {
            dir,
            staging,
            quarantine,
        } = &self.paths;
        std::fs::create_dir_all(quarantine)
            .map_err(|e| self.io("create the quarantine directory", quarantine, e))?;
        let name = dir_name(dir);
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut target = quarantine.join(format!("{name}.{stamp}"));
        let mut n = 1;
        while target.exists() {
            target = quarantine.join(format!("{name}.{stamp}-{n}"));
            n += 1;
        }
        std::fs::rename(dir, &target).map_err(|e| self.io("quarantine", dir, e))?;
        sync_dir(quarantine).map_err(|e| self.io("sync", quarantine, e))?;
        tracing::warn!(
            partition = %format_args!("{}/{}", self.name.topic, self.name.partition),
            quarantined = %target.display(),
            "moved the damaged segments to the quarantine directory, for diagnosis"
        );
        std::fs::rename(staging, dir).map_err(|e| self.io("move the copy to", dir, e))?;
        sync_parent(dir).map_err(|e| self.io("sync the parent of", dir, e))?;
        sync_parent(staging).map_err(|e| self.io("sync the parent of", staging, e))?;
        // The files were made durable under their staging paths; the
        // durability observer (the fault suite's fsync journal) must learn
        // them under these, or it would take older records of the same
        // names, the damaged files', for what is durable here.
        PartitionLog::open(dir, self.name.partition, self.config.clone())
            .and_then(|(mut log, _)| log.sync_every_file())
            .map_err(|error| RepairError::Storage {
                name: self.name.clone(),
                path: dir.clone(),
                error,
            })?;
        for old in quarantined(quarantine, &name)
            .map_err(|e| self.io("list", quarantine, e))?
            .into_iter()
            .rev()
            .skip(QUARANTINE_KEPT)
        {
            match std::fs::remove_dir_all(&old) {
                Ok(()) => tracing::info!(
                    path = %old.display(), kept = QUARANTINE_KEPT,
                    "removed the oldest quarantined copy of the partition"
                ),
                Err(e) => tracing::warn!(
                    path = %old.display(), error = %e,
                    "could not remove an old quarantined copy of the partition"
                ),
            }
        }
        Ok(target)
    }

    fn io(&self, op: &'static str, path: &Path, error: io::Error) -> RepairError {
        RepairError::Io {
            name: self.name.clone(),
            op,
            path: path.to_path_buf(),
            error,
        }
    }
}

fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The quarantined copies of the partition whose directory is named `name`,
/// oldest first (`<name>.<unix seconds>[-<n>]`).
pub(crate) fn quarantined(quarantine: &Path, name: &str) -> io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(quarantine) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let prefix = format!("{name}.");
    let mut found = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let file_name = dir_name(&path);
        let Some(stamp) = file_name.strip_prefix(&prefix) else {
            continue;
        };
        let (secs, n) = stamp.split_once('-').unwrap_or((stamp, "0"));
        if let (Ok(secs), Ok(n)) = (secs.parse::<u64>(), n.parse::<u64>()) {
            found.push(((secs, n), path));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// Removes the quarantined copies of a partition whose topic was deleted.
pub(crate) fn remove_quarantined(quarantine: &Path, dir: &Path) {
    let name = dir_name(dir);
    let Ok(old) = quarantined(quarantine, &name) else {
        return;
    };
    for path in old {
        if let Err(e) = std::fs::remove_dir_all(&path) {
            tracing::warn!(path = %path.display(), error = %e, "could not remove a quarantined copy of a deleted partition");
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_copy::{LogSource, RemoteBatches};
    use crate::partition::{Partition, read_lock};
    use sluice_proto::Record;
    use std::collections::HashMap;

    fn name() -> ReplicaName {
        ReplicaName {
            topic: "orders".into(),
            partition: 1,
            node: 2,
        }
    }

    fn config() -> LogConfig {
        LogConfig {
            segment_size_bytes: 2048,
            ..LogConfig::default()
        }
    }

    fn records(i: u64) -> Vec<Record> {
        (0..1 + i % 3)
            .map(|j| Record {
                key: None,
                value: format!("record-{i}-{j}-{}", "x".repeat(30)).into_bytes(),
                timestamp_ms: 1_700_000_000_000 + i as i64,
                headers: Vec::new(),
            })
            .collect()
    }

    /// Writes `entries` batches (entry ids 1..=entries) to the log in `dir`,
    /// syncs, and saves a producer table at that point, as a replica's sync does.
    fn write_replica(dir: &Path, entries: u64) -> ProducerTable {
        let (mut log, _) = PartitionLog::open(dir, 1, config()).unwrap();
        for i in 1..=entries {
            log.append(i, &records(i)).unwrap();
        }
        log.sync().unwrap();
        let mut table = ProducerTable::default();
        (table.applied_index, table.next_offset) = (entries, log.end_offset());
        table.save(dir).unwrap();
        table
    }

    fn open_and_check(dir: &Path) -> Option<Damage> {
        let (mut log, _) = PartitionLog::open(dir, 1, config()).unwrap();
        let table = ProducerTable::load(dir).unwrap();
        check(&name(), &mut log, &table).unwrap()
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.sort();
        logs
    }

    fn all(dir: &Path) -> Vec<Vec<u8>> {
        let (log, _) = PartitionLog::open(dir, 1, config()).unwrap();
        log.read_raw(log.start_offset(), usize::MAX).unwrap()
    }

    #[test]
    fn a_log_cut_below_its_synced_point_needs_a_repair_naming_the_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let table = write_replica(dir.path(), 40);
        assert!(segment_files(dir.path()).len() > 2);
        assert_eq!(open_and_check(dir.path()), None, "an intact replica");
        // The last segment loses its second half.
        let last = segment_files(dir.path()).pop().unwrap();
        let len = std::fs::metadata(&last).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&last)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        let damage = open_and_check(dir.path()).expect("repair needed");
        let Damage::Short {
            end,
            synced_end,
            applied_index,
        } = damage
        else {
            panic!("{damage:?}");
        };
        assert!(end < table.next_offset);
        assert_eq!((synced_end, applied_index), (table.next_offset, 40));
        let text = damage.to_string();
        for part in [
            format!("end at offset {end}"),
            format!("up to offset {}", table.next_offset),
            "Raft entry 40".to_string(),
        ] {
            assert!(text.contains(&part), "{part:?} missing from {text}");
        }
    }

    #[test]
    fn a_flipped_bit_in_a_closed_segment_needs_a_repair() {
        let dir = tempfile::tempdir().unwrap();
        write_replica(dir.path(), 40);
        let first = segment_files(dir.path()).remove(0);
        let mut bytes = std::fs::read(&first).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x10;
        std::fs::write(&first, bytes).unwrap();
        match open_and_check(dir.path()) {
            Some(Damage::Unreadable(batch)) => {
                assert_eq!(batch.path, first);
                assert!(batch.position <= middle as u64);
            }
            other => panic!("{other:?}"),
        }
    }

    impl PartialEq for Damage {
        fn eq(&self, other: &Self) -> bool {
            self.to_string() == other.to_string()
        }
    }

    /// Serves the logs of other replicas in this process, as a peer
    /// answers `ReadReplicaLog`, in small chunks so copies take several.
    #[derive(Default)]
    struct Peers(Mutex<HashMap<NodeId, PartitionLog>>);

    impl LogSource for Peers {
        fn read(&self, source: NodeId, _group: u64, from: u64) -> io::Result<RemoteBatches> {
            let logs = self.0.lock().unwrap();
            let Some(log) = logs.get(&source) else {
                return Err(io::Error::other(format!("node {source} is down")));
            };
            crate::log_copy::read_for_copy(log, from, 700).map_err(io::Error::other)
        }
    }

    fn paths(root: &Path) -> RepairPaths {
        RepairPaths {
            dir: root.join("partitions/orders-7-1"),
            staging: root.join("repair/orders-7-1"),
            quarantine: root.join("quarantine"),
        }
    }

    fn job(root: &Path, sources: Vec<NodeId>, peers: Arc<Peers>, damage: Damage) -> RepairJob {
        RepairJob {
            name: name(),
            group: 7,
            paths: paths(root),
            config: config(),
            sources,
            source: peers,
            damage,
            cancelled: Arc::default(),
        }
    }

    /// A healthy replica (node 3) with `entries` batches, retention applied
    /// as `retention_bytes` says, registered with `peers`.
    fn healthy(peers: &Peers, root: &Path, entries: u64, retention_bytes: Option<u64>) {
        let dir = root.join("node-3");
        let (mut log, _) = PartitionLog::open(
            &dir,
            1,
            LogConfig {
                retention_bytes,
                ..config()
            },
        )
        .unwrap();
        for i in 1..=entries {
            log.append(i, &records(i)).unwrap();
        }
        log.enforce_retention(0).unwrap();
        peers.0.lock().unwrap().insert(3, log);
    }

    #[test]
    fn a_repair_copies_a_healthy_replica_keeps_the_table_and_quarantines_the_damage() {
        let root = tempfile::tempdir().unwrap();
        let p = paths(root.path());
        let table = write_replica(&p.dir, 40);
        let peers = Arc::new(Peers::default());
        // The healthy replica is further along (it applied 60 entries).
        healthy(&peers, root.path(), 60, None);
        let last = segment_files(&p.dir).pop().unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&last)
            .unwrap()
            .set_len(10)
            .unwrap();
        let damage = open_and_check(&p.dir).expect("damaged");
        // What the repair finds (opening cut the torn tail, and logged it).
        let damaged_bytes = std::fs::read(&last).unwrap();

        // Node 1 is down; node 3 answers.
        let repaired = job(root.path(), vec![1, 3], peers.clone(), damage)
            .run()
            .unwrap();
        assert_eq!(repaired.from, 3);
        assert_eq!(repaired.start_offset, 0);
        assert!(repaired.end_offset >= table.next_offset);
        assert!(repaired.batches > 1 && repaired.bytes > 0);

        // The copy is the healthy replica's log, batch for batch, up to
        // where it stopped; the table is the replica's own.
        let copied = all(&p.dir);
        let source = {
            let logs = peers.0.lock().unwrap();
            logs[&3].read_raw(0, usize::MAX).unwrap()
        };
        assert_eq!(copied[..], source[..copied.len()]);
        assert_eq!(ProducerTable::load(&p.dir).unwrap(), table);
        assert_eq!(open_and_check(&p.dir), None);
        assert!(!p.staging.exists());

        // The damaged files are kept, as they were.
        assert!(repaired.quarantined.starts_with(&p.quarantine));
        let kept = repaired.quarantined.join(last.file_name().unwrap());
        assert_eq!(std::fs::read(kept).unwrap(), damaged_bytes);
        assert_eq!(
            quarantined(&p.quarantine, "orders-7-1").unwrap(),
            vec![repaired.quarantined.clone()]
        );

        // The replica replays its Raft log over the copy: entries after the
        // synced point are found where they belong, then new ones append.
        let (mut sm, log, _) = Partition::open_log(
            &p.dir,
            "orders",
            1,
            config(),
            2,
            7,
            Arc::new(Peers::default()),
        )
        .unwrap();
        use sluice_raft::ReplicatedState;
        for i in 41..=61 {
            let command = crate::partition::encode(&crate::partition::PartitionCommand::Append {
                records: records(i),
                producer: None,
            });
            sm.apply(i, &command).unwrap();
        }
        let end = read_lock(&log).end_offset();
        let expected: u64 = (1..=61).map(|i| records(i).len() as u64).sum();
        assert_eq!(end, expected);
    }

    /// Remembers the last durable length reported for each path, as the
    /// fault suite's fsync journal does.
    #[derive(Default)]
    struct Durable(Mutex<HashMap<PathBuf, u64>>);

    impl sluice_storage::durability::SyncObserver for Durable {
        fn created(&self, path: &Path) {
            self.0.lock().unwrap().insert(path.to_path_buf(), 0);
        }
        fn synced(&self, path: &Path, len: u64) {
            self.0.lock().unwrap().insert(path.to_path_buf(), len);
        }
    }

    #[test]
    fn a_repaired_copy_is_reported_durable_under_its_final_paths() {
        let durable = Arc::new(Durable::default());
        assert!(
            sluice_storage::durability::install_observer(durable.clone()),
            "only this test installs the process's observer"
        );
        let root = tempfile::tempdir().unwrap();
        let p = paths(root.path());
        write_replica(&p.dir, 40);
        let peers = Arc::new(Peers::default());
        healthy(&peers, root.path(), 40, None);
        std::fs::remove_file(segment_files(&p.dir).pop().unwrap()).unwrap();
        let damage = open_and_check(&p.dir).expect("damaged");
        job(root.path(), vec![3], peers, damage).run().unwrap();
        // Each segment and index file is durable, whole, under the name it
        // has now: the records of the damaged files of the same names (and
        // of the staging paths) do not count.
        let records = durable.0.lock().unwrap();
        let mut files = 0;
        for entry in std::fs::read_dir(&p.dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "log" || e == "index") {
                let len = std::fs::metadata(&path).unwrap().len();
                assert_eq!(records.get(&path), Some(&len), "{}", path.display());
                files += 1;
            }
        }
        assert!(files > 4, "{files} files");
    }

    #[test]
    fn a_repair_starts_the_copy_where_the_source_retention_left_its_log() {
        let root = tempfile::tempdir().unwrap();
        let p = paths(root.path());
        let table = write_replica(&p.dir, 40);
        let peers = Arc::new(Peers::default());
        healthy(&peers, root.path(), 60, Some(1500));
        let source_start = peers.0.lock().unwrap()[&3].start_offset();
        assert!(source_start > 0, "retention must have deleted something");
        std::fs::remove_file(segment_files(&p.dir).pop().unwrap()).unwrap();
        let damage = open_and_check(&p.dir).expect("damaged");
        let repaired = job(root.path(), vec![3], peers, damage).run().unwrap();
        assert_eq!(repaired.start_offset, source_start);
        assert!(repaired.end_offset >= table.next_offset);
        let (log, _) = PartitionLog::open(&p.dir, 1, config()).unwrap();
        assert_eq!(log.start_offset(), source_start);
        assert!(log.last_entry_id().is_some());
    }

    #[test]
    fn without_a_source_that_reaches_the_synced_point_nothing_is_moved() {
        let root = tempfile::tempdir().unwrap();
        let p = paths(root.path());
        write_replica(&p.dir, 40);
        let peers = Arc::new(Peers::default());
        // The only other replica is behind the synced point.
        healthy(&peers, root.path(), 10, None);
        let last = segment_files(&p.dir).pop().unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&last)
            .unwrap()
            .set_len(0)
            .unwrap();
        let before = std::fs::read_dir(&p.dir).unwrap().count();
        let damage = open_and_check(&p.dir).expect("damaged");
        let err = job(root.path(), vec![1, 3], peers, damage)
            .run()
            .unwrap_err();
        let RepairError::NoCopy { failures, .. } = &err else {
            panic!("{err}");
        };
        assert!(matches!(
            failures.0[..],
            [
                SourceFailure::Unreachable { node: 1, .. },
                SourceFailure::Short { node: 3, .. }
            ]
        ));
        let text = err.to_string();
        for part in [
            "partition orders/1 on node 2",
            "node 1 is down",
            "node 3 holds offsets 0..",
            "stays stopped",
            "bring another replica",
        ] {
            assert!(text.contains(part), "{part:?} missing from {text}");
        }
        assert_eq!(std::fs::read_dir(&p.dir).unwrap().count(), before);
        assert!(!p.quarantine.exists());
        assert!(!p.staging.exists());
    }

    #[test]
    fn quarantined_copies_beyond_the_bound_are_removed_oldest_first() {
        let root = tempfile::tempdir().unwrap();
        let p = paths(root.path());
        std::fs::create_dir_all(&p.quarantine).unwrap();
        for old in [
            "orders-7-1.100",
            "orders-7-1.200-1",
            "orders-7-1.200",
            "orders-7-10.50",
        ] {
            std::fs::create_dir_all(p.quarantine.join(old)).unwrap();
        }
        write_replica(&p.dir, 40);
        let peers = Arc::new(Peers::default());
        healthy(&peers, root.path(), 40, None);
        std::fs::remove_file(segment_files(&p.dir).pop().unwrap()).unwrap();
        let damage = open_and_check(&p.dir).expect("damaged");
        let repaired = job(root.path(), vec![3], peers, damage).run().unwrap();
        let names: Vec<String> = quarantined(&p.quarantine, "orders-7-1")
            .unwrap()
            .iter()
            .map(|p| dir_name(p))
            .collect();
        assert_eq!(names.len(), QUARANTINE_KEPT);
        assert_eq!(names[..2], ["orders-7-1.200", "orders-7-1.200-1"]);
        assert_eq!(names[2], dir_name(&repaired.quarantined));
        // Another partition's copies are not counted or touched.
        assert!(p.quarantine.join("orders-7-10.50").exists());
    }

    #[test]
    fn a_repair_interrupted_between_its_renames_is_finished_and_an_unfinished_copy_dropped() {
        let root = tempfile::tempdir().unwrap();
        let p = paths(root.path());
        // A complete copy, the damaged directory already quarantined.
        write_replica(&p.staging, 5);
        finish_interrupted(&p).unwrap();
        assert!(!p.staging.exists());
        assert_eq!(ProducerTable::load(&p.dir).unwrap().applied_index, 5);
        // An unfinished copy (no table yet) next to the damaged directory.
        let (mut log, _) = PartitionLog::open(&p.staging, 1, config()).unwrap();
        log.append(1, &records(1)).unwrap();
        drop(log);
        finish_interrupted(&p).unwrap();
        assert!(!p.staging.exists());
        assert_eq!(ProducerTable::load(&p.dir).unwrap().applied_index, 5);
    }
}
