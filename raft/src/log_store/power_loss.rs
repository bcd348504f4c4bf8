//! Test-only model of what a power cut leaves of a node's Raft database, so
//! that the simulation (`crate::sim`) can cut a replica's power in-process.
//!
//! Why a model: RocksDB writes go to its WAL through the page cache, and a
//! process that stops in-process (or is killed) keeps all of them; only a power
//! cut loses what no completed WAL fsync covered. The bug this exists for (a
//! leader whose unsynced tail was replicated before its own fsync) needs
//! exactly that loss, on one node, while the others keep running.
//!
//! The model, per group, in log indexes (each group's log is a contiguous
//! range of keys, so "what survives" is "everything up to an index"):
//! - `written`: the last index the database holds now. Appends raise it,
//!   truncations lower it.
//! - Right before every WAL fsync (the syncer's group commit and each synced
//!   metadata write: the vote, the purge point, the applied point) the model
//!   takes a *note* of every group's `written` and commit point. RocksDB's WAL
//!   is one sequential log, so once that fsync has returned, everything the
//!   note saw is durable: `durable` rises to the noted index. Reading after
//!   the fsync instead would count writes made during it, which a real cut
//!   can lose.
//! - A truncation lowers `durable` to the kept index at once, and caps what
//!   any note taken before it may later raise `durable` to: entries removed
//!   after a note are not durable whatever that fsync covered.
//! - An append's flush callback (what lets openraft acknowledge it) runs only
//!   after the fsync and after the note is applied, so an entry a replica has
//!   acknowledged is always within `durable`: the model never loses what the
//!   real store promised to keep.
//! - Every write takes the model's lock around the RocksDB write and its
//!   bookkeeping, so a cut falls before or after a write, never inside.
//! - [`PowerModel::cut`] is the cut: from then on every write fails and no
//!   fsync counts. The database is then closed and reopened, and
//!   `LogDb::restore_after_power_cut` deletes every entry above `durable` and
//!   puts back the last commit point an fsync covered (none if none did, or
//!   if it lies above `durable`). The vote, the purge point and the applied
//!   point are only ever written synced; they are kept as they are. An
//!   fsync that returns after the cut reports a failure: for the model it
//!   never completed, so nothing it covers may be acknowledged.
//! - A delete of log entries (a truncation, or a purge's range delete after
//!   its synced marker) that no fsync has covered yet may come undone: a real
//!   cut keeps a prefix of the WAL, and the delete may lie beyond it. The
//!   model keeps what each such delete removed (the entries that were durable
//!   then) until an fsync covers it, and a cut either keeps every uncovered
//!   delete or undoes them all (everything after the last covered write is
//!   past the prefix), half the cuts each way: a truncated tail of an old
//!   term, or entries below a synced purge point, come back (put back by
//!   `restore_after_power_cut`). [`PowerModel::cut_at_next_delete`] makes
//!   the cut fall right after a delete and undo it. (Session 39: a purge
//!   undone so left a follower that openraft refused to start; the fault
//!   suite's real power cuts found it before this model could.)
//!
//! Limits (each makes the model lose no more than some real cut could, but
//! explore fewer of the states a real cut can leave):
//! - A synced metadata write whose fsync was still running at the cut is kept,
//!   as if the cut came just after it.
//! - Only writes made through this database handle are tracked: at open,
//!   everything in the database counts as durable (true after a process crash,
//!   and after `restore_after_power_cut`, which fsyncs what it leaves).
//! - RocksDB's own files (memtable flushes to SST and blob files, MANIFEST)
//!   are not modelled: a flush that made an unsynced entry durable is
//!   ignored, so the model may drop an entry a real disk would have kept,
//!   never one the replica acknowledged. Torn or corrupt WAL records are not
//!   modelled either (RocksDB's recovery drops a torn tail, which the model's
//!   cut at a write boundary stands for).
//! - `destroy_group` and the other test helpers write around the model.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rocksdb::{DB, Direction, IteratorMode};

use super::{CF_LOGS, CF_META, META_COMMITTED, io_err, log_key, meta_key};
use crate::GroupId;

/// One group's log as the model sees it.
#[derive(Debug, Default)]
struct GroupDisk {
    /// Last index in the database now.
    written: Option<u64>,
    /// Last index such that the entries up to it are durable in their
    /// current form.
    durable: Option<u64>,
    /// The commit point's encoded value in the database now, and the last
    /// one an fsync covered (with the note it came from: fsyncs of different
    /// threads may return out of order, and an older note covers less).
    committed_written: Option<Vec<u8>>,
    committed_durable: Option<Vec<u8>>,
    committed_note: u64,
    /// (sequence number, kept index) of each truncation, to cap notes taken
    /// before it. Kept for the database's life: a test sees a handful.
    truncations: Vec<(u64, Option<u64>)>,
    /// Deletes no fsync has covered yet, oldest first: a cut may undo them.
    uncovered_deletes: Vec<UncoveredDelete>,
}

/// A delete of log entries made after the last fsync that returned, with
/// what it removed.
#[derive(Debug)]
struct UncoveredDelete {
    seq: u64,
    /// Every removed entry: (index, stored bytes).
    removed: Vec<(u64, Vec<u8>)>,
    /// The last index durable just before the delete in the WAL: `durable`
    /// then (a truncation lowers it), raised by an fsync noted before the
    /// delete that returns after it. Undoing the delete puts back the removed
    /// entries up to here.
    durable_before: Option<u64>,
    /// What it was, for the cut's description.
    what: String,
}

#[derive(Debug, Default)]
struct Disk {
    cut: bool,
    /// Orders notes, truncations and purges.
    seq: u64,
    /// The latest note whose fsync returned: every write before it is durable.
    covered_seq: u64,
    /// Whether the cut undoes uncovered deletes, when a test decides.
    undo_at_cut: Option<bool>,
    /// Cut the power right after the next delete of log entries (see
    /// [`PowerModel::cut_at_next_delete`]), and whether that happened.
    cut_at_delete: bool,
    cut_by_delete: bool,
    groups: HashMap<GroupId, GroupDisk>,
}

/// What one fsync covers, noted right before it starts.
pub(super) struct Note {
    seq: u64,
    groups: Vec<(GroupId, Option<u64>, Option<Vec<u8>>)>,
}

/// What survived a power cut, per group written since the database opened.
#[derive(Debug)]
pub(crate) struct PowerCut {
    pub(super) groups: Vec<CutGroup>,
}

#[derive(Debug)]
pub(super) struct CutGroup {
    pub(super) group: GroupId,
    /// The last index written, and the last one that survives.
    pub(super) written: Option<u64>,
    pub(super) durable: Option<u64>,
    /// The last index that survives of what was written since the last
    /// undone delete (or since the open): what the cut lost starts above it.
    pub(super) lost_above: Option<u64>,
    /// The commit point an fsync covered (encoded), if any.
    pub(super) committed: Option<Vec<u8>>,
    /// Entries an undone delete had removed, to put back: (index, bytes).
    pub(super) restored: Vec<(u64, Vec<u8>)>,
    /// The deletes the cut undid, described.
    pub(super) undone: Vec<String>,
}

impl PowerCut {
    /// The log indexes the cut lost, per group: `(group, first, last)`.
    pub(crate) fn lost(&self) -> Vec<(GroupId, u64, u64)> {
        self.groups
            .iter()
            .filter_map(|g| {
                let written = g.written?;
                let first = g.lost_above.map_or(0, |d| d + 1);
                (first <= written).then_some((g.group, first, written))
            })
            .collect()
    }

    /// What the cut lost, e.g. `group 42: log kept up to 7, lost 8..=11`.
    pub(crate) fn describe(&self) -> String {
        let show = |i: Option<u64>| i.map_or("nothing".to_string(), |i| i.to_string());
        let groups: Vec<String> = self
            .groups
            .iter()
            .map(|g| {
                let lost = match (g.lost_above, g.written) {
                    (d, w) if w <= d => "nothing lost".to_string(),
                    (d, Some(w)) => format!("lost {}..={w}", d.map_or(0, |d| d + 1)),
                    (_, None) => "nothing lost".to_string(),
                };
                let undone = if g.undone.is_empty() {
                    String::new()
                } else {
                    format!(", undid {}", g.undone.join(" and "))
                };
                format!(
                    "group {}: log kept up to {}, {lost}{undone}",
                    g.group,
                    show(g.durable)
                )
            })
            .collect();
        if groups.is_empty() {
            return "no log writes since the database opened".into();
        }
        groups.join("; ")
    }
}

/// The durability model of one open database.
#[derive(Default)]
pub(crate) struct PowerModel {
    disk: Mutex<Disk>,
    /// How long the syncer waits before each group commit, in ms.
    hold_ms: AtomicU64,
}

/// A write in progress: holds the model's lock, so a cut cannot fall
/// between the RocksDB write and its bookkeeping.
pub(super) struct Writing<'a> {
    disk: MutexGuard<'a, Disk>,
    db: &'a DB,
    group: GroupId,
    /// What the delete about to be made removes (see [`Writing::deleting`]).
    removing: Vec<(u64, Vec<u8>)>,
}

impl PowerModel {
    fn lock(&self) -> MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a write of `group`, or refuses it once the power is cut.
    pub(super) fn writing<'a>(&'a self, db: &'a DB, group: GroupId) -> io::Result<Writing<'a>> {
        let mut disk = self.lock();
        if disk.cut {
            return Err(io::Error::other("the power is cut (simulated)"));
        }
        if let std::collections::hash_map::Entry::Vacant(new) = disk.groups.entry(group) {
            new.insert(on_disk(db, group)?);
        }
        Ok(Writing {
            disk,
            db,
            group,
            removing: Vec::new(),
        })
    }

    /// Makes every later group commit wait `hold` before its fsync (zero
    /// ends it): a slow disk on one node, during which its log tail stays
    /// volatile while other replicas may already hold it.
    pub(crate) fn hold_syncs(&self, hold: Duration) {
        self.hold_ms
            .store(hold.as_millis() as u64, Ordering::Relaxed);
    }

    /// Called by the syncer before collecting a group commit.
    pub(super) fn hold_back(&self) {
        let start = Instant::now();
        loop {
            let hold = Duration::from_millis(self.hold_ms.load(Ordering::Relaxed));
            if start.elapsed() >= hold || self.lock().cut {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub(super) fn note(&self) -> Note {
        let mut disk = self.lock();
        disk.seq += 1;
        Note {
            seq: disk.seq,
            groups: disk
                .groups
                .iter()
                .map(|(g, d)| (*g, d.written, d.committed_written.clone()))
                .collect(),
        }
    }

    /// The fsync taken after `note` has returned successfully. False if the
    /// power was cut meanwhile: for the model it never completed, and its
    /// callers must not report it durable.
    pub(super) fn synced(&self, note: Note) -> bool {
        let mut disk = self.lock();
        if disk.cut {
            return false;
        }
        let covered_seq = disk.covered_seq.max(note.seq);
        disk.covered_seq = covered_seq;
        for (group, written, _) in &note.groups {
            let Some(d) = disk.groups.get_mut(group) else {
                continue;
            };
            // A delete made after the note but before this fsync returned:
            // in the WAL it follows what the note saw, which is durable now.
            for u in d.uncovered_deletes.iter_mut().filter(|u| u.seq > note.seq) {
                let cap = d
                    .truncations
                    .iter()
                    .filter(|(seq, _)| *seq > note.seq && *seq < u.seq)
                    .map(|(_, kept)| *kept)
                    .min();
                let covered = match cap {
                    Some(cap) => (*written).min(cap),
                    None => *written,
                };
                u.durable_before = u.durable_before.max(covered);
            }
        }
        for d in disk.groups.values_mut() {
            d.uncovered_deletes.retain(|u| u.seq > covered_seq);
        }
        for (group, written, committed) in note.groups {
            let Some(d) = disk.groups.get_mut(&group) else {
                continue;
            };
            let cap = d
                .truncations
                .iter()
                .filter(|(seq, _)| *seq > note.seq)
                .map(|(_, kept)| *kept)
                .min();
            let covered = match cap {
                Some(cap) => written.min(cap),
                None => written,
            };
            d.durable = d.durable.max(covered);
            if note.seq > d.committed_note {
                d.committed_note = note.seq;
                d.committed_durable = committed;
            }
        }
        true
    }

    /// Makes the cut undo every uncovered delete (`true`) or keep them all.
    #[cfg(test)]
    fn undo_at_cut(&self, undo: bool) {
        self.lock().undo_at_cut = Some(undo);
    }

    /// Cuts the power right after the next delete of log entries (a
    /// truncation or a purge's range delete), and makes that cut undo it:
    /// the state a crash in that window leaves, which a cut at a random
    /// moment seldom meets (the next group commit covers the delete within
    /// milliseconds). The caller then takes [`PowerModel::cut`]'s account
    /// once [`PowerModel::cut_at_delete_came`] says so.
    pub(crate) fn cut_at_next_delete(&self) {
        self.lock().cut_at_delete = true;
    }

    /// Whether the cut [`PowerModel::cut_at_next_delete`] armed happened.
    pub(crate) fn cut_at_delete_came(&self) -> bool {
        self.lock().cut_by_delete
    }

    /// Cuts the power: nothing written or synced from now on counts.
    /// Deletes no fsync covered are undone at every other cut (by the
    /// parity of the model's sequence, which timing decides).
    pub(crate) fn cut(&self) -> PowerCut {
        let mut disk = self.lock();
        disk.cut = true;
        let undo = disk.undo_at_cut.unwrap_or(disk.seq % 2 == 1);
        let mut groups: Vec<_> = disk
            .groups
            .iter()
            .map(|(g, d)| {
                let mut cut = CutGroup {
                    group: *g,
                    written: d.written,
                    durable: d.durable,
                    lost_above: d.durable,
                    committed: d.committed_durable.clone(),
                    restored: Vec::new(),
                    undone: Vec::new(),
                };
                if undo {
                    // Newest first: the log as it was before the oldest.
                    for u in d.uncovered_deletes.iter().rev() {
                        cut.durable = cut.durable.max(u.durable_before);
                        cut.restored.extend(
                            u.removed
                                .iter()
                                .filter(|(index, _)| Some(*index) <= u.durable_before)
                                .cloned(),
                        );
                        cut.undone.push(u.what.clone());
                    }
                    cut.undone.reverse();
                }
                cut
            })
            .collect();
        groups.sort_by_key(|g| g.group);
        PowerCut { groups }
    }
}

impl Writing<'_> {
    fn group(&mut self) -> &mut GroupDisk {
        self.disk
            .groups
            .get_mut(&self.group)
            .expect("added by PowerModel::writing")
    }

    /// Entries up to `last` were written (not yet synced).
    pub(super) fn appended(mut self, last: Option<u64>) {
        if let Some(last) = last {
            let g = self.group();
            g.written = g.written.max(Some(last));
        }
    }

    /// Reads the entries from `first` to `last`, right before a delete of
    /// that range removes them: a cut may undo it.
    pub(super) fn deleting(&mut self, first: u64, last: u64) -> io::Result<()> {
        let logs = self.db.cf_handle(CF_LOGS).expect("created at open");
        let from = log_key(self.group, first);
        for item in self
            .db
            .iterator_cf(logs, IteratorMode::From(&from, Direction::Forward))
        {
            let (key, value) = item.map_err(io_err)?;
            if key[..8] != self.group.to_be_bytes() {
                break;
            }
            let index = u64::from_be_bytes(key[8..16].try_into().expect("16-byte key"));
            if index > last {
                break;
            }
            self.removing.push((index, value.to_vec()));
        }
        Ok(())
    }

    /// Records the delete [`Writing::deleting`] read for as not yet covered.
    fn uncovered(&mut self, seq: u64, durable_before: Option<u64>, what: String) {
        let removed = std::mem::take(&mut self.removing);
        self.group().uncovered_deletes.push(UncoveredDelete {
            seq,
            removed,
            durable_before,
            what,
        });
        if self.disk.cut_at_delete && !self.disk.cut {
            self.disk.cut = true;
            self.disk.cut_by_delete = true;
            self.disk.undo_at_cut = Some(true);
        }
    }

    /// Entries after `kept` were deleted.
    pub(super) fn truncated(mut self, kept: Option<u64>) {
        self.disk.seq += 1;
        let seq = self.disk.seq;
        let g = self.group();
        let durable_before = g.durable;
        g.written = g.written.min(kept);
        g.durable = g.durable.min(kept);
        g.truncations.push((seq, kept));
        let what = match kept {
            Some(kept) => format!("the truncation after {kept}"),
            None => "the truncation of the whole log".to_string(),
        };
        self.uncovered(seq, durable_before, what);
    }

    /// Entries up to `through` were deleted (a purge, after its synced marker).
    pub(super) fn purged(mut self, through: u64) {
        self.disk.seq += 1;
        let seq = self.disk.seq;
        let durable = self.group().durable;
        self.uncovered(seq, durable, format!("the purge through {through}"));
    }

    /// Metadata `name` was set to `value`. Only the commit point is written
    /// unsynced; every other value is synced, and kept by a cut even while
    /// its fsync runs (see the module's limits), so the deletes before it in
    /// the WAL are kept too.
    pub(super) fn put_meta(mut self, name: &[u8], value: &[u8]) {
        if name == META_COMMITTED {
            self.group().committed_written = Some(value.to_vec());
        } else {
            for d in self.disk.groups.values_mut() {
                d.uncovered_deletes.clear();
            }
        }
    }
}

/// What `group` holds on disk at the first write since the database opened:
/// all of it counts as durable (see the module's limits).
fn on_disk(db: &DB, group: GroupId) -> io::Result<GroupDisk> {
    let logs = db.cf_handle(CF_LOGS).expect("created at open");
    let meta = db.cf_handle(CF_META).expect("created at open");
    let from = log_key(group, u64::MAX);
    let mut iter = db.iterator_cf(logs, IteratorMode::From(&from, Direction::Reverse));
    let last = match iter.next() {
        Some(item) => {
            let (key, _) = item.map_err(io_err)?;
            (key[..8] == group.to_be_bytes())
                .then(|| u64::from_be_bytes(key[8..16].try_into().expect("16-byte key")))
        }
        None => None,
    };
    let committed = db
        .get_cf(meta, meta_key(group, META_COMMITTED))
        .map_err(io_err)?;
    Ok(GroupDisk {
        written: last,
        durable: last,
        committed_written: committed.clone(),
        committed_durable: committed,
        ..GroupDisk::default()
    })
}

#[cfg(test)]
mod tests {
    use std::ops::RangeInclusive;
    use std::path::Path;
    use std::sync::Arc;

    use openraft::impls::leader_id_adv::LeaderId;
    use openraft::storage::{IOFlushed, RaftLogStorage};
    use openraft::type_config::TypeConfigExt;
    use openraft::vote::RaftLeaderId;
    use openraft::{Entry, EntryPayload, LogId};

    use super::super::{GroupLog, LogDb, decode};
    use super::*;
    use crate::TypeConfig;
    use openraft::alias::{EntryOf, LogIdOf};

    const GROUP: GroupId = 7;

    fn log_id(term: u64, index: u64) -> LogIdOf<TypeConfig> {
        LogId::new(LeaderId::<u64, u64>::new(term, 1), index)
    }

    /// Appends blank entries of `term`; waits for their fsync if `synced`.
    async fn append(db: &Arc<LogDb>, term: u64, indexes: RangeInclusive<u64>, synced: bool) {
        let entries: Vec<EntryOf<TypeConfig>> = indexes
            .map(|index| Entry {
                log_id: log_id(term, index),
                payload: EntryPayload::Blank,
            })
            .collect();
        let (tx, rx) = TypeConfig::oneshot();
        let mut log = GroupLog::new(db.clone(), GROUP);
        log.append(entries, IOFlushed::signal(tx)).await.unwrap();
        if synced {
            rx.await.unwrap().unwrap();
        }
    }

    /// A database in a fresh temporary directory.
    fn fresh() -> (tempfile::TempDir, Arc<LogDb>) {
        let dir = tempfile::tempdir().unwrap();
        let db = LogDb::open(dir.path()).unwrap();
        (dir, db)
    }

    /// Deletes the group's entries after `kept` (of term 1), unsynced.
    async fn truncate_after(db: &Arc<LogDb>, kept: u64) {
        GroupLog::new(db.clone(), GROUP)
            .truncate_after(Some(log_id(1, kept)))
            .await
            .unwrap();
    }

    /// (index, term) of every entry the database holds for the group.
    fn stored(db: &LogDb) -> Vec<(u64, u64)> {
        let from = log_key(GROUP, 0);
        db.db
            .iterator_cf(
                db.cf(CF_LOGS),
                IteratorMode::From(&from, Direction::Forward),
            )
            .map(|item| item.unwrap())
            .take_while(|(key, _)| key[..8] == GROUP.to_be_bytes())
            .map(|(_, value)| {
                let entry: EntryOf<TypeConfig> = decode(&value).unwrap();
                (entry.log_id.index, entry.log_id.leader_id.term)
            })
            .collect()
    }

    /// Cuts the power of `db` (undoing uncovered deletes or not), reopens
    /// the database and applies the cut: what the disk kept.
    fn cut_and_reopen(db: Arc<LogDb>, dir: &Path, undo: bool) -> (Arc<LogDb>, String) {
        db.power.undo_at_cut(undo);
        let cut = db.cut_power();
        drop(db);
        let db = LogDb::open(dir).unwrap();
        db.restore_after_power_cut(&cut).unwrap();
        (db, cut.describe())
    }

    fn terms(term: u64, indexes: RangeInclusive<u64>) -> Vec<(u64, u64)> {
        indexes.map(|index| (index, term)).collect()
    }

    #[tokio::test]
    async fn a_purge_no_fsync_covered_may_come_undone() {
        for undo in [true, false] {
            let (dir, db) = fresh();
            append(&db, 1, 1..=10, true).await;
            // The marker is synced, its range delete is not.
            GroupLog::new(db.clone(), GROUP)
                .purge(log_id(1, 6))
                .await
                .unwrap();
            let (db, described) = cut_and_reopen(db, dir.path(), undo);
            if undo {
                assert_eq!(stored(&db), terms(1, 1..=10));
                assert!(
                    described.ends_with("undid the purge through 6"),
                    "{described}"
                );
            } else {
                assert_eq!(stored(&db), terms(1, 7..=10));
                assert!(!described.contains("undid"), "{described}");
            }
            // Either way the log starts after the purge point, and the
            // leftovers go once openraft has read the log's state.
            let state = GroupLog::new(db.clone(), GROUP)
                .get_log_state()
                .await
                .unwrap();
            assert_eq!(state.last_purged_log_id, Some(log_id(1, 6)));
            assert_eq!(state.last_log_id, Some(log_id(1, 10)));
            assert_eq!(stored(&db), terms(1, 7..=10));
        }
    }

    #[tokio::test]
    async fn a_purge_an_fsync_covered_stays() {
        let (dir, db) = fresh();
        append(&db, 1, 1..=10, true).await;
        GroupLog::new(db.clone(), GROUP)
            .purge(log_id(1, 6))
            .await
            .unwrap();
        append(&db, 1, 11..=11, true).await;
        let (db, described) = cut_and_reopen(db, dir.path(), true);
        assert_eq!(stored(&db), terms(1, 7..=11));
        assert!(!described.contains("undid"), "{described}");
    }

    #[tokio::test]
    async fn a_truncation_no_fsync_covered_may_come_undone() {
        for undo in [true, false] {
            let (dir, db) = fresh();
            append(&db, 1, 1..=10, true).await;
            // A new leader's entries replace the tail; no fsync completes.
            db.hold_syncs(Duration::from_secs(30));
            truncate_after(&db, 5).await;
            append(&db, 2, 6..=7, false).await;
            let (db, described) = cut_and_reopen(db, dir.path(), undo);
            if undo {
                // The log as it was before the truncation: a prefix of the
                // WAL that ends before it.
                assert_eq!(stored(&db), terms(1, 1..=10));
                assert!(
                    described
                        .contains("log kept up to 10, lost 6..=7, undid the truncation after 5"),
                    "{described}"
                );
            } else {
                assert_eq!(stored(&db), terms(1, 1..=5));
                assert!(
                    described.contains("kept up to 5, lost 6..=7"),
                    "{described}"
                );
            }
        }
    }

    /// An fsync noted before a truncation that returns after it: in the WAL
    /// the truncated entries precede the truncation and that fsync covered
    /// them, so undoing the truncation puts them back.
    #[tokio::test]
    async fn undoing_a_truncation_puts_back_what_an_fsync_started_before_it_covered() {
        let (dir, db) = fresh();
        append(&db, 1, 1..=5, true).await;
        db.hold_syncs(Duration::from_secs(30));
        append(&db, 1, 6..=10, false).await;
        let note = db.power.note();
        truncate_after(&db, 5).await;
        db.db.flush_wal(true).unwrap();
        assert!(db.power.synced(note));
        let (db, described) = cut_and_reopen(db, dir.path(), true);
        assert_eq!(stored(&db), terms(1, 1..=10));
        assert!(
            described.contains("undid the truncation after 5"),
            "{described}"
        );
    }

    /// A synced metadata write (a vote) is kept by a cut even while its
    /// fsync runs, and the deletes before it in the WAL with it.
    #[tokio::test]
    async fn a_delete_before_a_kept_metadata_write_stays() {
        let (dir, db) = fresh();
        append(&db, 1, 1..=10, true).await;
        db.hold_syncs(Duration::from_secs(30));
        truncate_after(&db, 5).await;
        // Written as the synced vote is, short of its fsync.
        db.put_meta(GROUP, super::super::META_VOTE, &7u64, false)
            .unwrap();
        let (db, described) = cut_and_reopen(db, dir.path(), true);
        assert_eq!(stored(&db), terms(1, 1..=5));
        assert!(!described.contains("undid"), "{described}");
    }
}
