//! The test-only fsync journal and the deliberately unsafe "no fsync" mode.
//!
//! A power failure loses whatever the file system had not made durable. This
//! machine has no file system that can simulate that (no LazyFS), so a node
//! started with `SLUICE_FSYNC_JOURNAL=1` writes down what it made durable, and
//! the fault suite truncates files to that after a SIGKILL. The journal is
//! `<data dir>/fsync-journal.jsonl`, JSON lines (contract shared with
//! `jepsen-tests`):
//!
//! ```text
//! {"watch":"/abs/raft","suffix":".log"}   every file with this suffix in this dir
//!                                           that no "path" line names was never synced
//! {"path":"/abs/file","len":4096}          the first len bytes of file are durable
//! ```
//!
//! Each record is exactly what one fsync covered: the file's length read
//! *before* the fsync started (bytes appended while it ran may not be on disk).
//! The RocksDB WAL files (`raft/*.log`) are recorded at each WAL fsync the node
//! asks for; segment and index files at each of their fsyncs, and at creation
//! with length 0. RocksDB syncs its own SST, MANIFEST and CURRENT files, which
//! the journal leaves alone. The journal outlives restarts: a WAL file left by
//! an earlier run keeps the length that run's last fsync covered (whatever RocksDB
//! replays from it at open goes to SST files, which it syncs itself).
//!
//! `SLUICE_DEBUG_UNSAFE_NO_FSYNC=1` (honoured by debug builds only) makes the
//! node acknowledge writes without ever fsyncing them, which is exactly the bug
//! Jepsen found in NATS JetStream; the fault suite must report such a node
//! invalid.
//!
//! `SLUICE_DEBUG_RAFT_WRITE_BUFFER_BYTES=N` gives the Raft database's
//! memtables N bytes (at least 64 KiB) instead of 64 MiB, so its WAL moves
//! to a new file every N bytes and a full disk reaches the Raft log within
//! seconds (the fault suite's disk-full runs, `--raft-write-buffer`). Not
//! unsafe, only slower: honoured by every build, with a warning.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sluice_raft::LogDbOptions;
use sluice_storage::durability::SyncObserver;

pub const JOURNAL_ENV: &str = "SLUICE_FSYNC_JOURNAL";
pub const NO_FSYNC_ENV: &str = "SLUICE_DEBUG_UNSAFE_NO_FSYNC";
pub const RAFT_WRITE_BUFFER_ENV: &str = "SLUICE_DEBUG_RAFT_WRITE_BUFFER_BYTES";
/// The smallest memtable [`RAFT_WRITE_BUFFER_ENV`] may ask for.
const RAFT_WRITE_BUFFER_BYTES_MIN: usize = 64 * 1024;
pub const JOURNAL_FILE: &str = "fsync-journal.jsonl";

/// Appends to the journal; shared by the storage observer and the WAL hook.
pub struct FsyncJournal {
    file: Mutex<File>,
    raft_dir: PathBuf,
}

impl FsyncJournal {
    fn open(data_dir: &Path, raft_dir: &Path) -> std::io::Result<Arc<Self>> {
        let path = data_dir.join(JOURNAL_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let raft_dir = std::path::absolute(raft_dir)?;
        let journal = Arc::new(Self {
            file: Mutex::new(file),
            raft_dir: raft_dir.clone(),
        });
        journal.line(&serde_json::json!({"watch": raft_dir, "suffix": ".log"}));
        Ok(journal)
    }

    fn line(&self, value: &serde_json::Value) {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        // The journal is written without fsync: the suite reads it after SIGKILL,
        // when the kernel still has every byte the process wrote.
        if let Err(e) = writeln!(file, "{value}") {
            tracing::error!(error = %e, "cannot write the fsync journal");
        }
    }

    fn synced_len(&self, path: &Path, len: u64) {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        self.line(&serde_json::json!({"path": path, "len": len}));
    }

    /// The current length of every WAL file: read right before a WAL fsync,
    /// recorded by [`Self::wal_synced`] once it succeeded.
    fn wal_lengths(&self) -> Vec<(PathBuf, u64)> {
        let Ok(entries) = std::fs::read_dir(&self.raft_dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|entry| entry.path().extension().is_some_and(|e| e == "log"))
            .filter_map(|entry| Some((entry.path(), entry.metadata().ok()?.len())))
            .collect()
    }

    fn wal_synced(&self, covered: &[(PathBuf, u64)]) {
        for (path, len) in covered {
            self.synced_len(path, *len);
        }
    }
}

impl SyncObserver for FsyncJournal {
    fn created(&self, path: &Path) {
        self.synced_len(path, 0);
    }

    fn synced(&self, path: &Path, len: u64) {
        self.synced_len(path, len);
    }
}

/// Reads the two durability switches and sets up storage and the Raft
/// database accordingly. Returns the options to open the database with.
pub fn from_env(data_dir: &Path, raft_dir: &Path) -> std::io::Result<LogDbOptions> {
    let mut options = LogDbOptions::default();
    if flag(NO_FSYNC_ENV) {
        if cfg!(debug_assertions) {
            tracing::warn!(
                "{NO_FSYNC_ENV} is set: this node acknowledges writes WITHOUT fsync and loses them on a power failure (fault-suite self-test only)"
            );
            options.unsafe_skip_fsync = true;
            sluice_storage::durability::set_unsafe_skip_fsync(true);
        } else {
            tracing::warn!("{NO_FSYNC_ENV} is ignored: release builds always fsync");
        }
    }
    if flag(JOURNAL_ENV) {
        let journal = FsyncJournal::open(data_dir, raft_dir)?;
        // Honoured by release builds too: the fault suite's campaigns test
        // the release binary. It is never trimmed, so say so loudly.
        tracing::warn!(
            file = %data_dir.join(JOURNAL_FILE).display(),
            "{JOURNAL_ENV} is set: recording every fsync in a test-only journal that grows \
             with each one and is never trimmed; unset it outside the fault suite"
        );
        sluice_storage::durability::install_observer(journal.clone());
        options.on_sync = Some(Arc::new(move || {
            let covered = journal.wal_lengths();
            let journal = journal.clone();
            Box::new(move || journal.wal_synced(&covered))
        }));
    }
    Ok(options)
}

/// The Raft database's memtable size [`RAFT_WRITE_BUFFER_ENV`] asks for, if
/// set; a value it cannot take is refused, naming the variable.
pub fn raft_write_buffer_from_env() -> Result<Option<usize>, String> {
    let Ok(value) = std::env::var(RAFT_WRITE_BUFFER_ENV) else {
        return Ok(None);
    };
    let bytes = parse_raft_write_buffer(&value)?;
    tracing::warn!(
        "{RAFT_WRITE_BUFFER_ENV}={bytes}: the Raft database flushes its memtables every \
         {bytes} bytes (test only: slower, and its WAL changes files often)"
    );
    Ok(Some(bytes))
}

fn parse_raft_write_buffer(value: &str) -> Result<usize, String> {
    value
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|b| *b >= RAFT_WRITE_BUFFER_BYTES_MIN)
        .ok_or_else(|| {
            format!(
                "{RAFT_WRITE_BUFFER_ENV}={value:?} is not a byte count of at least \
                 {RAFT_WRITE_BUFFER_BYTES_MIN}; unset it, or give one such as 65536"
            )
        })
}

fn flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raft_write_buffer_is_a_byte_count_of_at_least_64_kib() {
        assert_eq!(parse_raft_write_buffer("65536"), Ok(65536));
        assert_eq!(parse_raft_write_buffer(" 1048576\n"), Ok(1 << 20));
        for bad in ["65535", "0", "64k", "", "-1"] {
            let e = parse_raft_write_buffer(bad).unwrap_err();
            assert!(
                e.contains(RAFT_WRITE_BUFFER_ENV) && e.contains("at least 65536"),
                "{bad}: {e}"
            );
        }
    }
}
