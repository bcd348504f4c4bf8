//! Raft logs and votes of every group of a node, in one RocksDB database.
//!
//! One database per node (not per group) so that one WAL fsync makes the
//! appends of every group durable at once: a dedicated syncer thread collects
//! the flush callbacks that arrive while it is syncing and completes them all
//! with the next `flush_wal(true)`. That is the group commit that lets records/s
//! far exceed fsyncs/s.
//!
//! Keys: column family `logs` holds `group (u64 BE) ++ index (u64 BE)` -> entry;
//! `meta` holds `group (u64 BE) ++ name` -> value. Big-endian keeps each
//! group's entries contiguous and ordered.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};
use rocksdb::{ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch};
use serde::{Serialize, de::DeserializeOwned};

use crate::{GroupId, RaftError, TypeConfig};

mod failure;
#[cfg(test)]
mod power_loss;
use failure::WriteFailure;
#[cfg(test)]
pub(crate) use power_loss::PowerCut;

const CF_LOGS: &str = "logs";
const CF_META: &str = "meta";
const META_VOTE: &[u8] = b"vote";
const META_COMMITTED: &[u8] = b"committed";
const META_LAST_PURGED: &[u8] = b"last_purged";

type SyncCallback = Box<dyn FnOnce(io::Result<()>) + Send>;

/// Watches WAL fsyncs (for the test-only fsync journal). Called right before
/// each fsync, it notes what that fsync will cover (the WAL files' lengths at
/// that moment) and returns what to do once the fsync has succeeded. Lengths
/// read after the fsync would count bytes written meanwhile as durable, which
/// a real power cut does not.
pub type SyncObserver = Arc<dyn Fn() -> Box<dyn FnOnce() + Send> + Send + Sync>;

/// How the database makes writes durable. The defaults are the only safe ones.
#[derive(Clone, Default)]
pub struct LogDbOptions {
    /// Called around every WAL fsync (the group commit and each synced
    /// metadata write): the node uses it to keep the test-only fsync journal
    /// that lets the fault suite simulate a power loss.
    pub on_sync: Option<SyncObserver>,
    /// Acknowledge without ever fsyncing. Loses acknowledged writes on a power
    /// failure: only for showing that the fault suite notices.
    pub unsafe_skip_fsync: bool,
    /// Memtable size of each column family, if not RocksDB's 64 MiB. Test
    /// only: the WAL moves to a new file at every memtable flush, and the
    /// current file's space is reserved ahead (about 1.1 memtables), so with
    /// the default a full disk reaches the Raft log only after tens of
    /// megabytes more are written; the fault suite's disk-full runs set a
    /// small one to reach it within their holds.
    pub write_buffer_bytes: Option<usize>,
}

impl std::fmt::Debug for LogDbOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogDbOptions")
            .field("on_sync", &self.on_sync.is_some())
            .field("unsafe_skip_fsync", &self.unsafe_skip_fsync)
            .field("write_buffer_bytes", &self.write_buffer_bytes)
            .finish()
    }
}

/// The node's Raft database, shared by all its groups.
/// Log entries at least this big keep their bytes in blob files (see
/// [`logs_options`]).
const BLOB_MIN_BYTES: u64 = 4096;

/// Options of the column family holding every group's log entries.
///
/// Entries carry produce batches (up to megabytes each) and a partition keeps
/// thousands after a snapshot, so the family holds gigabytes; keys of all
/// groups interleave, so nearly every compaction overlaps the whole of level
/// 1 and, with values in the tree, rewrote gigabytes each time (measured:
/// 0.6-0.9 CPU seconds per compaction per node at 35-56k retained entries,
/// all nodes at once, throughput halving meanwhile). With big values in blob
/// files, compactions move keys and blob references only; a blob file goes
/// when the entries in it have all been purged (and blob GC relocates the few
/// survivors of old files).
fn logs_options() -> Options {
    let mut o = Options::default();
    o.set_enable_blob_files(true);
    o.set_min_blob_size(BLOB_MIN_BYTES);
    o.set_blob_file_size(64 * 1024 * 1024);
    o.set_enable_blob_gc(true);
    // As the tree's own files are (RocksDB's default): fewer bytes to write
    // on a disk that three replicas share on a single-host cluster.
    o.set_blob_compression_type(rocksdb::DBCompressionType::Snappy);
    o
}

/// WAL kept on disk before RocksDB flushes memtables to let old WAL files go.
const WAL_TOTAL_BYTES_MAX: u64 = 128 * 1024 * 1024;

pub struct LogDb {
    db: Arc<DB>,
    sync_tx: Option<mpsc::Sender<SyncCallback>>,
    syncer: Option<std::thread::JoinHandle<()>>,
    fsyncs: Arc<AtomicU64>,
    options: LogDbOptions,
    /// Latched at the first failed write or fsync (see `failure`).
    failure: Arc<WriteFailure>,
    /// What a power cut would keep (`power_loss`).
    #[cfg(test)]
    power: Arc<power_loss::PowerModel>,
}

impl Drop for LogDb {
    /// Stops the syncer and waits for it, so the database is closed when the
    /// last handle goes: RocksDB must not be open while the process exits.
    fn drop(&mut self) {
        drop(self.sync_tx.take());
        if let Some(t) = self.syncer.take() {
            let _ = t.join();
        }
    }
}

impl LogDb {
    /// Opens (creating if needed) the database in `dir` and starts its syncer.
    pub fn open(dir: &Path) -> Result<Arc<Self>, RaftError> {
        Self::open_with(dir, LogDbOptions::default())
    }

    /// [`LogDb::open`] with non-default durability options.
    pub fn open_with(dir: &Path, options: LogDbOptions) -> Result<Arc<Self>, RaftError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // A WAL file is deleted only once every column family's data in it is
        // flushed, and the small `meta` family rarely fills a memtable: without
        // a cap, RocksDB keeps ~1.5 GB of WAL (its default cap) that a restart
        // replays. Past this size it flushes the families holding the oldest WAL.
        opts.set_max_total_wal_size(WAL_TOTAL_BYTES_MAX);
        // RocksDB's own info log (`LOG`, next to the database) is written
        // only for fatal errors. It logs an error exactly when the disk is
        // full, and in the RocksDB build Debian ships (assertions on), a
        // write to that log after one it could not complete aborts the
        // process (`sync_without_flush_called_`): a full disk killed the
        // node from inside RocksDB, before the node could stop cleanly (see
        // `log_store::failure`). The errors RocksDB returns, the node logs
        // itself.
        opts.set_log_level(rocksdb::LogLevel::Fatal);
        let (mut logs, mut meta) = (logs_options(), Options::default());
        if let Some(bytes) = options.write_buffer_bytes {
            logs.set_write_buffer_size(bytes);
            meta.set_write_buffer_size(bytes);
        }
        let cfs = [
            ColumnFamilyDescriptor::new(CF_LOGS, logs),
            ColumnFamilyDescriptor::new(CF_META, meta),
        ];
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(|e| RaftError::OpenDb {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let db = Arc::new(db);
        let fsyncs = Arc::new(AtomicU64::new(0));
        let (sync_tx, sync_rx) = mpsc::channel::<SyncCallback>();
        let failure = Arc::new(WriteFailure::new());
        let (sync_db, sync_count, sync_options) = (db.clone(), fsyncs.clone(), options.clone());
        let sync_failure = failure.clone();
        #[cfg(test)]
        let power = Arc::new(power_loss::PowerModel::default());
        #[cfg(test)]
        let sync_power = power.clone();
        let syncer = std::thread::Builder::new()
            .name("raft-wal-sync".into())
            .spawn(move || {
                run_syncer(
                    &sync_db,
                    &sync_count,
                    &sync_options,
                    &sync_failure,
                    &sync_rx,
                    #[cfg(test)]
                    &sync_power,
                )
            })
            .map_err(|e| RaftError::OpenDb {
                path: dir.display().to_string(),
                reason: format!("cannot start the WAL sync thread: {e}"),
            })?;
        Ok(Arc::new(Self {
            db,
            sync_tx: Some(sync_tx),
            syncer: Some(syncer),
            fsyncs,
            options,
            failure,
            #[cfg(test)]
            power,
        }))
    }

    /// Tells the first failed write or fsync (`Some(what failed)`): the
    /// database takes no more writes from then on, and the node must stop.
    pub fn write_failure(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.failure.subscribe()
    }

    /// Fsyncs the WAL now (at shutdown; appends are already durable when acknowledged).
    pub fn flush(&self) -> Result<(), RaftError> {
        sync_wal(
            &self.db,
            &self.options,
            &self.failure,
            #[cfg(test)]
            &self.power,
        )
        .map_err(|e| RaftError::Storage {
            group: crate::CONTROLLER_GROUP,
            action: "flushing the WAL",
            reason: e.to_string(),
        })
    }

    /// Writes both families' memtables out to table files and lets their
    /// memory go. Called when the node turns idle: a memtable otherwise keeps
    /// every small entry written since its last flush (log entries under
    /// `BLOB_MIN_BYTES`, their deletions, the groups' metadata) in memory
    /// until it reaches RocksDB's 64 MB default, which a quiet node never
    /// does: 22 MB a node after 200,000 records into 64 partitions
    /// (BENCHMARKS.md, sessions 30-31). Durability does not change: the
    /// entries were already fsynced in the WAL, RocksDB syncs the table files
    /// it writes, and a failure here is latched like any failed write (a
    /// failed flush leaves RocksDB refusing writes until reopened).
    pub fn write_out_memtables(&self) -> Result<(), RaftError> {
        let mut options = rocksdb::FlushOptions::default();
        options.set_wait(true);
        // Alone: a flush may sync the WAL files it closes.
        self.failure
            .sync("writing the memtables out", || {
                self.db.flush_cf_opt(self.cf(CF_LOGS), &options)?;
                self.db.flush_cf_opt(self.cf(CF_META), &options)
            })
            .map_err(|e| RaftError::Storage {
                group: crate::CONTROLLER_GROUP,
                action: "writing the memtables out",
                reason: e.to_string(),
            })
    }

    /// Bytes both families' memtables have taken (RocksDB allocates them in
    /// blocks of about 1 MB, touched as entries fill them).
    pub fn memtable_bytes(&self) -> u64 {
        [CF_LOGS, CF_META]
            .iter()
            .filter_map(|name| {
                self.db
                    .property_int_value_cf(self.cf(name), "rocksdb.cur-size-all-mem-tables")
                    .ok()
                    .flatten()
            })
            .sum()
    }

    /// WAL fsyncs performed so far (for measuring group commit).
    pub fn fsync_count(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// Deletes every log entry and metadata value of `group`.
    pub fn destroy_group(&self, group: GroupId) -> Result<(), RaftError> {
        self.destroy_group_inner(group, false)
    }

    /// Deletes the log and state of `group` but keeps its vote (term and
    /// candidate voted for): a replica moved off this node may be moved back
    /// later, and must not vote twice in a term it already voted in.
    pub fn destroy_group_keep_vote(&self, group: GroupId) -> Result<(), RaftError> {
        self.destroy_group_inner(group, true)
    }

    fn destroy_group_inner(&self, group: GroupId, keep_vote: bool) -> Result<(), RaftError> {
        let err = |e: io::Error| RaftError::Storage {
            group,
            action: "deleting the group",
            reason: e.to_string(),
        };
        let (logs, meta) = (self.cf(CF_LOGS), self.cf(CF_META));
        self.failure
            .write("deleting a group's log", || {
                self.db
                    .delete_range_cf(logs, log_key(group, 0), log_key(group, u64::MAX))?;
                self.db.delete_cf(logs, log_key(group, u64::MAX))
            })
            .map_err(err)?;
        let vote: &[&[u8]] = if keep_vote { &[] } else { &[META_VOTE] };
        for name in vote.iter().copied().chain([
            META_COMMITTED,
            META_LAST_PURGED,
            crate::state_machine::META_APPLIED,
        ]) {
            self.failure
                .write("deleting a group's state", || {
                    self.db.delete_cf(meta, meta_key(group, name))
                })
                .map_err(err)?;
        }
        Ok(())
    }

    /// What a power cut leaves of `group` when its entries after `index`
    /// had not been fsynced: they are gone, and so is the (never synced)
    /// commit point.
    #[cfg(test)]
    pub(crate) fn lose_log_after(&self, group: GroupId, index: u64) {
        let logs = self.cf(CF_LOGS);
        self.db
            .delete_range_cf(logs, log_key(group, index + 1), log_key(group, u64::MAX))
            .unwrap();
        self.db
            .delete_cf(self.cf(CF_META), meta_key(group, META_COMMITTED))
            .unwrap();
        self.db.flush_wal(true).unwrap();
    }

    /// Cuts the power of this node (`power_loss`): every later write fails and
    /// no later fsync counts. Returns what survives, for
    /// [`LogDb::restore_after_power_cut`] on the reopened database.
    #[cfg(test)]
    pub(crate) fn cut_power(&self) -> PowerCut {
        self.power.cut()
    }

    /// Cuts this node's power right after its next delete of log entries,
    /// undoing that delete (`power_loss`); [`LogDb::power_cut_at_delete_came`] tells
    /// when it happened.
    #[cfg(test)]
    pub(crate) fn cut_power_at_next_delete(&self) {
        self.power.cut_at_next_delete()
    }

    #[cfg(test)]
    pub(crate) fn power_cut_at_delete_came(&self) -> bool {
        self.power.cut_at_delete_came()
    }

    /// Makes every later group commit of this database wait `hold` before
    /// its fsync (zero ends it): a slow disk, during which this node's log
    /// tail is volatile while other replicas may already hold it.
    #[cfg(test)]
    pub(crate) fn hold_syncs(&self, hold: std::time::Duration) {
        self.power.hold_syncs(hold)
    }

    /// On the database reopened after `cut`: deletes what the cut lost (log
    /// entries above the durable index, an unsynced commit point) and fsyncs
    /// the rest, which the model then counts as durable.
    #[cfg(test)]
    pub(crate) fn restore_after_power_cut(&self, cut: &PowerCut) -> io::Result<()> {
        let (logs, meta) = (self.cf(CF_LOGS), self.cf(CF_META));
        for cut in &cut.groups {
            let (group, durable, committed) = (&cut.group, &cut.durable, &cut.committed);
            let from = durable.map_or(0, |index| index + 1);
            self.db
                .delete_range_cf(logs, log_key(*group, from), log_key(*group, u64::MAX))
                .map_err(io_err)?;
            self.db
                .delete_cf(logs, log_key(*group, u64::MAX))
                .map_err(io_err)?;
            // A commit point above the surviving log would name entries that
            // are gone; it cannot be durable without them (it is written
            // after them), so the model never keeps one.
            let committed = match committed {
                Some(bytes) => {
                    let point: Option<LogIdOf<TypeConfig>> = decode(bytes)?;
                    match point {
                        Some(id) if Some(id.index()) > *durable => None,
                        _ => Some(bytes),
                    }
                }
                None => None,
            };
            let key = meta_key(*group, META_COMMITTED);
            match committed {
                Some(bytes) => self.db.put_cf(meta, key, bytes),
                None => self.db.delete_cf(meta, key),
            }
            .map_err(io_err)?;
            // What undone deletes had removed (all within `durable`).
            for (index, bytes) in &cut.restored {
                self.db
                    .put_cf(logs, log_key(*group, *index), bytes)
                    .map_err(io_err)?;
            }
        }
        self.db.flush_wal(true).map_err(io_err)
    }

    /// Stores `bytes` as entry `index` of `group` and a metadata value, with
    /// no regard for their format: neighbours that a group's reads and
    /// deletes must never touch.
    #[cfg(test)]
    pub(crate) fn put_foreign_keys(&self, group: GroupId, index: u64, bytes: &[u8]) {
        self.db
            .put_cf(self.cf(CF_LOGS), log_key(group, index), bytes)
            .unwrap();
        for name in [META_VOTE, META_COMMITTED, META_LAST_PURGED] {
            self.db
                .put_cf(self.cf(CF_META), meta_key(group, name), bytes)
                .unwrap();
        }
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column families are created at open")
    }

    pub(crate) fn get_meta<T: DeserializeOwned>(
        &self,
        group: GroupId,
        name: &[u8],
    ) -> io::Result<Option<T>> {
        let bytes = self
            .db
            .get_cf(self.cf(CF_META), meta_key(group, name))
            .map_err(io_err)?;
        bytes.map(|b| decode(&b)).transpose()
    }

    pub(crate) fn put_meta<T: Serialize>(
        &self,
        group: GroupId,
        name: &[u8],
        value: &T,
        sync: bool,
    ) -> io::Result<()> {
        let value = encode(value)?;
        #[cfg(test)]
        let writing = self.power.writing(&self.db, group)?;
        self.failure
            .write("saving Raft state (vote, commit, applied)", || {
                self.db
                    .put_cf(self.cf(CF_META), meta_key(group, name), &value)
            })?;
        #[cfg(test)]
        writing.put_meta(name, &value);
        // A synced put is a put and then the WAL fsync, which covers it and
        // everything written before it (RocksDB's WAL is one sequential file).
        if sync {
            sync_wal(
                &self.db,
                &self.options,
                &self.failure,
                #[cfg(test)]
                &self.power,
            )?;
        }
        Ok(())
    }

    /// Fsyncs the WAL on the syncer thread, together with whatever else is waiting.
    fn sync_async(&self, done: SyncCallback) {
        let sent = match &self.sync_tx {
            Some(tx) => tx.send(done).map_err(|mpsc::SendError(done)| done),
            None => Err(done),
        };
        if let Err(done) = sent {
            done(Err(io::Error::other("the WAL sync thread has stopped")));
        }
    }
}

/// Completes flush callbacks in batches: everything queued while one fsync ran
/// is covered by the next one.
fn run_syncer(
    db: &DB,
    count: &AtomicU64,
    options: &LogDbOptions,
    failure: &WriteFailure,
    rx: &mpsc::Receiver<SyncCallback>,
    #[cfg(test)] power: &power_loss::PowerModel,
) {
    while let Ok(first) = rx.recv() {
        #[cfg(test)]
        power.hold_back();
        let mut waiting = vec![first];
        waiting.extend(rx.try_iter());
        let result = sync_wal(
            db,
            options,
            failure,
            #[cfg(test)]
            power,
        );
        count.fetch_add(1, Ordering::Relaxed);
        for done in waiting {
            done(
                result
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| io::Error::new(e.kind(), e.to_string())),
            );
        }
    }
}

/// fsyncs the WAL (unless told not to) and reports it.
fn sync_wal(
    db: &DB,
    options: &LogDbOptions,
    failure: &WriteFailure,
    #[cfg(test)] power: &power_loss::PowerModel,
) -> io::Result<()> {
    if options.unsafe_skip_fsync {
        // Still hand the bytes to the OS, as a node that "syncs later" would.
        return failure.sync("writing the WAL", || db.flush_wal(false));
    }
    let covered = options.on_sync.as_ref().map(|observe| observe());
    #[cfg(test)]
    let note = power.note();
    // Timed inside: the wait for running writes to end is not the fsync's.
    failure.sync("fsyncing the WAL", || {
        let started = std::time::Instant::now();
        let synced = db.flush_wal(true);
        metrics::histogram!(crate::WAL_FSYNC_SECONDS).record(started.elapsed().as_secs_f64());
        synced
    })?;
    #[cfg(test)]
    if !power.synced(note) {
        return Err(io::Error::other(
            "the power was cut before the fsync returned (simulated)",
        ));
    }
    if let Some(record) = covered {
        record();
    }
    sluice_crashpoints::hit(sluice_crashpoints::RAFT_WAL_SYNCED);
    Ok(())
}

/// The log's end for openraft: its `last` entry, unless that lies at or
/// below the purge point, which then is the end. Entries at or below the
/// purge point count as purged, whatever is left of them: `purge` makes its
/// marker durable before the range delete, which a crash may lose. When the
/// purge went past the log's end (a snapshot installed on a follower behind
/// it), such leftovers are all the log holds, and reporting the last of them
/// made openraft refuse to start the group ("inverted log order"; the fault
/// suite's power cuts across snapshot points, session 39). Compared by index,
/// not as log ids (which order by term first): a leftover of a later term
/// than the snapshot's last entry (a deposed leader's uncommitted tail, which
/// the snapshot passed without conflict) is still below the purge point.
fn log_end(
    last: Option<LogIdOf<TypeConfig>>,
    purged: Option<LogIdOf<TypeConfig>>,
) -> Option<LogIdOf<TypeConfig>> {
    match (last, purged) {
        (Some(last), Some(purged)) if last.index() <= purged.index() => Some(purged),
        (last, purged) => last.or(purged),
    }
}

fn log_key(group: GroupId, index: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&group.to_be_bytes());
    k[8..].copy_from_slice(&index.to_be_bytes());
    k
}

fn meta_key(group: GroupId, name: &[u8]) -> Vec<u8> {
    let mut k = group.to_be_bytes().to_vec();
    k.extend_from_slice(name);
    k
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Raft RPCs arrive from the network and entries from disk: decoding never
/// believes a length beyond what one frame can hold (an entry claiming 2^50
/// bytes once made the decoder allocate, and abort the node, before reading
/// it).
const DECODE_BYTES_MAX: usize = sluice_proto::limits::FRAME_SIZE_BYTES_MAX;

pub(crate) fn encode<T: Serialize>(v: &T) -> io::Result<Vec<u8>> {
    sluice_proto::encoding::to_vec(v)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

pub(crate) fn decode<T: DeserializeOwned>(b: &[u8]) -> io::Result<T> {
    sluice_proto::encoding::from_slice(b, DECODE_BYTES_MAX)
        .map(|(v, _)| v)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

/// One group's view of the [`LogDb`]: openraft's log storage and log reader.
#[derive(Clone)]
pub struct GroupLog {
    db: Arc<LogDb>,
    group: GroupId,
}

impl GroupLog {
    pub(crate) fn new(db: Arc<LogDb>, group: GroupId) -> Self {
        Self { db, group }
    }

    /// Deletes entries at or below `purged` that a crash kept: `purge` makes
    /// its marker durable before its range delete, so a power cut can leave
    /// them. Nothing reads them (openraft never asks below the purge point,
    /// and `get_log_state` counts them as purged), but until the next purge
    /// they would only take space. The delete is not synced: losing it again
    /// leaves the same harmless state for the next start.
    fn drop_leftovers(&self, purged: u64) -> Result<(), io::Error> {
        let cf = self.db.cf(CF_LOGS);
        let from = log_key(self.group, 0);
        let first = match self
            .db
            .db
            .iterator_cf(cf, IteratorMode::From(&from, Direction::Forward))
            .next()
        {
            Some(item) => item.map_err(io_err)?.0,
            None => return Ok(()),
        };
        if first[..8] != self.group.to_be_bytes() {
            return Ok(());
        }
        let first = u64::from_be_bytes(first[8..16].try_into().expect("16-byte key"));
        if first > purged {
            return Ok(());
        }
        tracing::info!(
            group = self.group,
            first,
            purged,
            "deleting log entries a crash left below the purge point"
        );
        #[cfg(test)]
        let mut writing = self.db.power.writing(&self.db.db, self.group)?;
        #[cfg(test)]
        writing.deleting(0, purged)?;
        self.db
            .failure
            .write("deleting entries left below the purge point", || {
                self.db.db.delete_range_cf(
                    cf,
                    log_key(self.group, 0),
                    log_key(self.group, purged + 1),
                )
            })?;
        #[cfg(test)]
        writing.purged(purged);
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for GroupLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<EntryOf<TypeConfig>>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => *x + 1,
            Bound::Unbounded => 0,
        };
        let from = log_key(self.group, start);
        let iter = self.db.db.iterator_cf(
            self.db.cf(CF_LOGS),
            IteratorMode::From(&from, Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter {
            let (key, value) = item.map_err(io_err)?;
            if key[..8] != self.group.to_be_bytes() {
                break;
            }
            let index = u64::from_be_bytes(key[8..16].try_into().expect("16-byte key"));
            if !range.contains(&index) {
                break;
            }
            out.push(decode(&value)?);
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<TypeConfig>>, io::Error> {
        self.db.get_meta(self.group, META_VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for GroupLog {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged: Option<LogIdOf<TypeConfig>> =
            self.db.get_meta(self.group, META_LAST_PURGED)?;
        if let Some(purged) = &last_purged {
            self.drop_leftovers(purged.index())?;
        }
        let from = log_key(self.group, u64::MAX);
        let mut iter = self.db.db.iterator_cf(
            self.db.cf(CF_LOGS),
            IteratorMode::From(&from, Direction::Reverse),
        );
        let last = match iter.next() {
            Some(item) => {
                let (key, value) = item.map_err(io_err)?;
                if key[..8] == self.group.to_be_bytes() {
                    let entry: EntryOf<TypeConfig> = decode(&value)?;
                    Some(entry.log_id())
                } else {
                    None
                }
            }
            None => None,
        };
        Ok(LogState {
            last_log_id: log_end(last, last_purged),
            last_purged_log_id: last_purged,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<TypeConfig>) -> Result<(), io::Error> {
        self.db.put_meta(self.group, META_VOTE, vote, true)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogIdOf<TypeConfig>>,
    ) -> Result<(), io::Error> {
        // Not synced: losing it only means re-discovering the commit point.
        self.db
            .put_meta(self.group, META_COMMITTED, &committed, false)
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<TypeConfig>>, io::Error> {
        Ok(self
            .db
            .get_meta::<Option<LogIdOf<TypeConfig>>>(self.group, META_COMMITTED)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = EntryOf<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let started = std::time::Instant::now();
        let mut batch = WriteBatch::default();
        let cf = self.db.cf(CF_LOGS);
        #[cfg(test)]
        let mut last = None;
        for entry in entries {
            batch.put_cf(cf, log_key(self.group, entry.index()), encode(&entry)?);
            #[cfg(test)]
            {
                last = Some(entry.index());
            }
        }
        #[cfg(test)]
        let writing = self.db.power.writing(&self.db.db, self.group)?;
        // Written (readable) now; durable when the syncer's next fsync completes.
        self.db
            .failure
            .write("appending log entries", || self.db.db.write(batch))?;
        #[cfg(test)]
        writing.appended(last);
        sluice_crashpoints::hit(sluice_crashpoints::RAFT_LOG_WRITTEN);
        self.db.sync_async(Box::new(move |res| {
            metrics::histogram!(crate::RAFT_LOG_APPEND_SECONDS)
                .record(started.elapsed().as_secs_f64());
            callback.io_completed(res)
        }));
        Ok(())
    }

    async fn truncate_after(
        &mut self,
        last_log_id: Option<LogIdOf<TypeConfig>>,
    ) -> Result<(), io::Error> {
        let kept = last_log_id.map(|id| id.index());
        let start = kept.map_or(0, |index| index + 1);
        let cf = self.db.cf(CF_LOGS);
        #[cfg(test)]
        let mut writing = self.db.power.writing(&self.db.db, self.group)?;
        #[cfg(test)]
        writing.deleting(start, u64::MAX)?;
        self.db.failure.write("truncating the log", || {
            self.db.db.delete_range_cf(
                cf,
                log_key(self.group, start),
                log_key(self.group, u64::MAX),
            )?;
            self.db.db.delete_cf(cf, log_key(self.group, u64::MAX))
        })?;
        #[cfg(test)]
        writing.truncated(kept);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogIdOf<TypeConfig>) -> Result<(), io::Error> {
        // Record the purge point first: entries at or below it are ignored by
        // openraft even if the range delete below is lost in a crash.
        self.db
            .put_meta(self.group, META_LAST_PURGED, &log_id, true)?;
        sluice_crashpoints::hit(sluice_crashpoints::RAFT_PURGE_MARKED);
        let cf = self.db.cf(CF_LOGS);
        // Purging the head leaves the last index alone: only the cut matters.
        #[cfg(test)]
        let mut writing = self.db.power.writing(&self.db.db, self.group)?;
        #[cfg(test)]
        writing.deleting(0, log_id.index())?;
        self.db.failure.write("purging the log", || {
            self.db.db.delete_range_cf(
                cf,
                log_key(self.group, 0),
                log_key(self.group, log_id.index() + 1),
            )
        })?;
        #[cfg(test)]
        writing.purged(log_id.index());
        Ok(())
    }
}

#[cfg(test)]
mod memtable_tests {
    use super::*;

    /// Bytes the memtables of the family `name` hold now.
    fn family_memtable_bytes(db: &LogDb, name: &str) -> u64 {
        db.db
            .property_int_value_cf(db.cf(name), "rocksdb.cur-size-all-mem-tables")
            .unwrap()
            .unwrap()
    }

    #[test]
    fn writing_the_memtables_out_frees_them_and_keeps_every_entry() {
        let dir = tempfile::tempdir().unwrap();
        let db = LogDb::open(dir.path()).unwrap();
        // Entries under the blob threshold stay in the memtable.
        let value = vec![7u8; 1024];
        for index in 1..=2_000 {
            db.put_foreign_keys(5, index, &value);
        }
        let before = family_memtable_bytes(&db, CF_LOGS);
        assert!(before > 2_000 * 1024, "memtable holds {before} bytes");
        db.write_out_memtables().unwrap();
        let (logs, meta) = (
            family_memtable_bytes(&db, CF_LOGS),
            family_memtable_bytes(&db, CF_META),
        );
        assert!(db.memtable_bytes() < 64 * 1024);
        // An empty memtable keeps its first arena block only.
        assert!(logs < 64 * 1024, "logs memtable still holds {logs} bytes");
        assert!(meta < 64 * 1024, "meta memtable still holds {meta} bytes");
        for index in [1, 1_000, 2_000] {
            let got = db.db.get_cf(db.cf(CF_LOGS), log_key(5, index)).unwrap();
            assert_eq!(got.as_deref(), Some(&value[..]), "entry {index}");
        }
        // And after a reopen.
        drop(db);
        let db = LogDb::open(dir.path()).unwrap();
        let got = db.db.get_cf(db.cf(CF_LOGS), log_key(5, 2_000)).unwrap();
        assert_eq!(got.as_deref(), Some(&value[..]));
    }
}

#[cfg(test)]
mod purge_tests {
    use openraft::impls::leader_id_adv::LeaderId;
    use openraft::vote::RaftLeaderId;
    use openraft::{Entry, EntryPayload, LogId};

    use super::*;

    fn log_id(index: u64) -> LogIdOf<TypeConfig> {
        term_log_id(3, index)
    }

    fn term_log_id(term: u64, index: u64) -> LogIdOf<TypeConfig> {
        LogId::new(LeaderId::<u64, u64>::new(term, 1), index)
    }

    /// The log's end is the purge point while every entry left lies at or
    /// below its index, whatever their terms: a leftover of a later term than
    /// the purge point's is no newer entry (log ids order by term first).
    #[test]
    fn the_log_ends_at_the_purge_point_by_index() {
        let purged = Some(term_log_id(5, 10));
        for last in [term_log_id(3, 5), term_log_id(7, 5), term_log_id(5, 10)] {
            assert_eq!(log_end(Some(last), purged), purged);
        }
        assert_eq!(log_end(None, purged), purged);
        let beyond = Some(term_log_id(5, 11));
        assert_eq!(log_end(beyond, purged), beyond);
        assert_eq!(log_end(beyond, None), beyond);
        assert_eq!(log_end(None, None), None);
    }

    fn put_entry(db: &LogDb, group: GroupId, index: u64) {
        put_entry_of(db, group, 3, index)
    }

    fn put_entry_of(db: &LogDb, group: GroupId, term: u64, index: u64) {
        let entry: EntryOf<TypeConfig> = Entry {
            log_id: term_log_id(term, index),
            payload: EntryPayload::Blank,
        };
        db.db
            .put_cf(
                db.cf(CF_LOGS),
                log_key(group, index),
                encode(&entry).unwrap(),
            )
            .unwrap();
    }

    /// What a power cut left on a follower that had entries 1-5 and then
    /// installed a snapshot up to 10: the purge's marker, durable, and not
    /// its range delete.
    #[tokio::test]
    async fn entries_left_below_the_purge_point_count_as_purged() {
        let dir = tempfile::tempdir().unwrap();
        let db = LogDb::open(dir.path()).unwrap();
        for index in 1..=5 {
            put_entry(&db, 7, index);
        }
        db.put_meta(7, META_LAST_PURGED, &log_id(10), true).unwrap();
        let state = GroupLog::new(db.clone(), 7).get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(10)));
        assert_eq!(state.last_log_id, Some(log_id(10)));
        // ...and are gone once the log state has been read: nothing else
        // would delete them before the next purge.
        let mut log = GroupLog::new(db.clone(), 7);
        assert!(log.try_get_log_entries(0..=10).await.unwrap().is_empty());
        // The log's end stays at the purge point without them.
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(10)));
    }

    /// A deposed leader's uncommitted entries 1-5 (term 7) that a follower
    /// kept when it installed a snapshot up to 10 of an earlier term (5),
    /// left by a power cut below the durable purge marker.
    #[tokio::test]
    async fn leftovers_of_a_later_term_than_the_purge_point_count_as_purged() {
        let dir = tempfile::tempdir().unwrap();
        let db = LogDb::open(dir.path()).unwrap();
        for index in 1..=5 {
            put_entry_of(&db, 7, 7, index);
        }
        db.put_meta(7, META_LAST_PURGED, &term_log_id(5, 10), true)
            .unwrap();
        let mut log = GroupLog::new(db, 7);
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(term_log_id(5, 10)));
        assert_eq!(state.last_log_id, Some(term_log_id(5, 10)));
        assert!(log.try_get_log_entries(0..).await.unwrap().is_empty());
    }

    /// Entries above the purge point still make the log's end, and only
    /// those at or below it are deleted.
    #[tokio::test]
    async fn entries_above_the_purge_point_stay() {
        let dir = tempfile::tempdir().unwrap();
        let db = LogDb::open(dir.path()).unwrap();
        for index in 1..=5 {
            put_entry(&db, 7, index);
        }
        // Another group's entries on either side of group 7's keys.
        put_entry(&db, 6, 9);
        put_entry(&db, 8, 1);
        db.put_meta(7, META_LAST_PURGED, &log_id(3), true).unwrap();
        let mut log = GroupLog::new(db.clone(), 7);
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(5)));
        let left: Vec<u64> = log
            .try_get_log_entries(0..)
            .await
            .unwrap()
            .iter()
            .map(|e| e.index())
            .collect();
        assert_eq!(left, vec![4, 5]);
        for (group, index) in [(6, 9), (8, 1)] {
            let got = db.db.get_cf(db.cf(CF_LOGS), log_key(group, index)).unwrap();
            assert!(got.is_some(), "group {group}'s entry {index} was deleted");
        }
    }
}
