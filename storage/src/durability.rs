//! Every fsync of a segment or index file goes through here, so that a fault
//! test can learn what reached the disk and simulate a power loss afterwards.
//!
//! Two process-wide switches, both off in production:
//! - an [`SyncObserver`] told about each file created and each fsync (with the
//!   length that is now durable). The node installs one that writes the test-only
//!   fsync journal (`SLUICE_FSYNC_JOURNAL=1`); `jepsen-tests` then truncates
//!   files to their synced length after a SIGKILL, which is what a power loss
//!   does to a file system's unsynced pages.
//! - "skip fsync", set only by debug builds of the node for the deliberately
//!   broken mode that shows the fault suite can fail.
//!
//! Process-wide rather than per log because a node is one process and every
//! partition log in it must report to the same journal from the first file it
//! creates; threading an option through every `PartitionLog::open` would gain
//! nothing.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// Learns what the storage layer made durable.
pub trait SyncObserver: Send + Sync {
    /// A file was created (or emptied): nothing of it is durable yet.
    fn created(&self, path: &Path);
    /// The first `len` bytes of `path` are durable.
    fn synced(&self, path: &Path, len: u64);
}

static OBSERVER: OnceLock<Arc<dyn SyncObserver>> = OnceLock::new();
static SKIP_FSYNC: AtomicBool = AtomicBool::new(false);

/// Installs the process's observer. Only the first call has an effect (returns false after).
pub fn install_observer(observer: Arc<dyn SyncObserver>) -> bool {
    OBSERVER.set(observer).is_ok()
}

/// Makes every storage fsync a no-op. Unsafe for data: acknowledged writes can be
/// lost on a power failure. Exists so the fault suite can prove it notices.
pub fn set_unsafe_skip_fsync(skip: bool) {
    SKIP_FSYNC.store(skip, Ordering::Relaxed);
}

pub(crate) fn created(path: &Path) {
    if let Some(o) = OBSERVER.get() {
        o.created(path);
    }
}

/// `sync_data` on a regular file, reported to the observer.
pub(crate) fn sync_file(file: &File, path: &Path) -> std::io::Result<()> {
    if SKIP_FSYNC.load(Ordering::Relaxed) {
        return Ok(());
    }
    // The length is read before the fsync: bytes appended while it runs may
    // or may not be covered, so the journal must not count them (a power cut
    // is at least this harsh).
    let covered = match OBSERVER.get() {
        Some(_) => Some(file.metadata()?.len()),
        None => None,
    };
    file.sync_data()?;
    if let (Some(o), Some(len)) = (OBSERVER.get(), covered) {
        o.synced(path, len);
    }
    Ok(())
}

/// Asks the kernel to start writing `len` bytes of `file` from `offset` to
/// disk, without waiting and without any promise of durability (nothing is
/// reported to the observer): it spreads the writes that a later fsync
/// would otherwise do all at once (see `crate::segment::WRITEBACK_BYTES`).
/// A failure only loses that spreading, so it is logged, not returned.
pub(crate) fn start_writeback(file: &File, path: &Path, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: a plain syscall on an open descriptor this `File` owns;
        // it reads no memory of ours.
        let rc = unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
        };
        if rc != 0 {
            tracing::debug!(
                path = %path.display(),
                error = %std::io::Error::last_os_error(),
                "could not start writing a segment back"
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, path, offset, len);
}

/// `sync_all` on a directory (makes new and removed entries durable).
pub(crate) fn sync_dir(dir: &File) -> std::io::Result<()> {
    if SKIP_FSYNC.load(Ordering::Relaxed) {
        return Ok(());
    }
    dir.sync_all()
}
