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
//!   point are only ever written synced; they are kept as they are.
//!
//! Limits (each makes the model lose no more than some real cut could, but
//! explore fewer of the states a real cut can leave):
//! - Deleted data never comes back. A real cut can undo a truncation or a
//!   purge whose delete no fsync covered (a truncated tail of an old term, or
//!   entries below the synced purge point, reappear); the model always keeps
//!   the delete. Both are states openraft must handle, only this one is run.
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
}

#[derive(Debug, Default)]
struct Disk {
    cut: bool,
    /// Orders notes and truncations.
    seq: u64,
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
    /// The commit point an fsync covered (encoded), if any.
    pub(super) committed: Option<Vec<u8>>,
}

impl PowerCut {
    /// The log indexes the cut lost, per group: `(group, first, last)`.
    pub(crate) fn lost(&self) -> Vec<(GroupId, u64, u64)> {
        self.groups
            .iter()
            .filter_map(|g| {
                let written = g.written?;
                let first = g.durable.map_or(0, |d| d + 1);
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
                let lost = match (g.durable, g.written) {
                    (d, w) if w <= d => "nothing lost".to_string(),
                    (d, Some(w)) => format!("lost {}..={w}", d.map_or(0, |d| d + 1)),
                    (_, None) => "nothing lost".to_string(),
                };
                format!(
                    "group {}: log kept up to {}, {lost}",
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
    group: GroupId,
}

impl PowerModel {
    fn lock(&self) -> MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a write of `group`, or refuses it once the power is cut.
    pub(super) fn writing(&self, db: &DB, group: GroupId) -> io::Result<Writing<'_>> {
        let mut disk = self.lock();
        if disk.cut {
            return Err(io::Error::other("the power is cut (simulated)"));
        }
        if let std::collections::hash_map::Entry::Vacant(new) = disk.groups.entry(group) {
            new.insert(on_disk(db, group)?);
        }
        Ok(Writing { disk, group })
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

    /// The fsync taken after `note` has returned successfully.
    pub(super) fn synced(&self, note: Note) {
        let mut disk = self.lock();
        if disk.cut {
            // It completed after the cut: for the model, it never did.
            return;
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
    }

    /// Cuts the power: nothing written or synced from now on counts.
    pub(crate) fn cut(&self) -> PowerCut {
        let mut disk = self.lock();
        disk.cut = true;
        let mut groups: Vec<_> = disk
            .groups
            .iter()
            .map(|(g, d)| CutGroup {
                group: *g,
                written: d.written,
                durable: d.durable,
                committed: d.committed_durable.clone(),
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

    /// Entries after `kept` were deleted.
    pub(super) fn truncated(mut self, kept: Option<u64>) {
        self.disk.seq += 1;
        let seq = self.disk.seq;
        let g = self.group();
        g.written = g.written.min(kept);
        g.durable = g.durable.min(kept);
        g.truncations.push((seq, kept));
    }

    /// Metadata `name` was set to `value` (only the unsynced commit point
    /// matters: every other value is written synced).
    pub(super) fn put_meta(mut self, name: &[u8], value: &[u8]) {
        if name == META_COMMITTED {
            self.group().committed_written = Some(value.to_vec());
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
