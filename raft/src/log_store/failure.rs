//! The Raft database stops writing at its first failed write or fsync.
//!
//! A write or WAL fsync that fails (a full disk, an I/O error) leaves the
//! database in a state this node cannot vouch for: the entries of that write
//! may be half in the WAL, and the fsync may or may not have covered what
//! came before. Retrying would risk acknowledging entries that are not
//! durable, and RocksDB itself keeps the error: its WAL writer refuses every
//! later sync (the build Debian ships asserts, aborting the process with
//! `sync_without_flush_called_`, the first time the disk-full fault was tried).
//! So the first failure is latched: every later write and fsync is refused
//! with it, without reaching RocksDB, and the node, told through
//! [`WriteFailure::subscribe`], stops (fail-stop: what it acknowledged is
//! durable, what it did not was never acknowledged) with an error that
//! says what failed and what to do. Reads go on until it stops.
//!
//! The latch alone left a race: the first write to fail does so inside
//! RocksDB, which marks that WAL file's writer failed before the error comes
//! back to be latched, and a WAL fsync that reaches such a writer before it
//! was ever synced (a WAL file just started, the usual place for a full disk
//! to show: the file before it had its space reserved ahead) trips the same
//! assertion. An fsync started in that gap, or running while the write
//! failed, aborted the node (`cargo test -p sluice --test it disk_full`, with
//! 1 MiB memtables: once in 23 runs; RELIABILITY.md). So writes and fsyncs are ordered
//! too: writes run side by side, an fsync runs alone ([`WriteFailure::sync`]),
//! and a failed write is latched before the next fsync may start. What it
//! costs: a write that comes while an fsync runs waits for it, where it used
//! to be written meanwhile (its durability waited for that fsync and the
//! next either way); it waits off the runtime's worker, whose other tasks
//! go on.

use std::io;
use std::sync::{LockResult, OnceLock, PoisonError, RwLock, TryLockError, TryLockResult};

use tokio::sync::watch;

/// Runs `wait` (a wait for an fsync, or for writes, to end) so that it does
/// not hold up the other tasks of a runtime worker it may be called on:
/// openraft's appends run on the node's runtime, which has a worker per
/// core, and an fsync that stalls (tens of ms on a slow disk) would
/// otherwise stop heartbeats and elections' answers with it.
fn wait_outside_the_runtime<T>(wait: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}

/// A lock guard from `tried` (a `try_*` attempt), or else from `wait` (the
/// blocking call) run off the runtime's worker. A poisoned lock guards no
/// data here (only the order), so its guard is taken as it is.
fn take<G>(tried: TryLockResult<G>, wait: impl FnOnce() -> LockResult<G>) -> G {
    match tried {
        Ok(guard) => guard,
        Err(TryLockError::Poisoned(e)) => e.into_inner(),
        Err(TryLockError::WouldBlock) => {
            wait_outside_the_runtime(|| wait().unwrap_or_else(PoisonError::into_inner))
        }
    }
}

/// The latch; one per database, shared with its syncer thread.
pub(crate) struct WriteFailure {
    first: OnceLock<String>,
    tx: watch::Sender<Option<String>>,
    /// Held shared by writes, alone by fsyncs (see the module's documentation).
    order: RwLock<()>,
}

impl WriteFailure {
    pub(crate) fn new() -> Self {
        Self {
            first: OnceLock::new(),
            tx: watch::channel(None).0,
            order: RwLock::new(()),
        }
    }

    /// Runs the write `f` (described by `action`, e.g. "appending log
    /// entries") unless a write or fsync already failed, beside other
    /// writes but never during an fsync; latches its failure.
    pub(crate) fn write<T>(
        &self,
        action: &str,
        f: impl FnOnce() -> Result<T, rocksdb::Error>,
    ) -> io::Result<T> {
        let _beside_writes = take(self.order.try_read(), || self.order.read());
        self.run(action, f)
    }

    /// Runs the fsync (or anything else that may sync the WAL, such as a
    /// memtable flush) `f` unless a write or fsync already failed, while no
    /// write runs; latches its failure.
    pub(crate) fn sync<T>(
        &self,
        action: &str,
        f: impl FnOnce() -> Result<T, rocksdb::Error>,
    ) -> io::Result<T> {
        // A synced metadata write (a vote, a snapshot's applied point) calls
        // this on a runtime worker too.
        let _alone = take(self.order.try_write(), || self.order.write());
        self.run(action, f)
    }

    fn run<T>(&self, action: &str, f: impl FnOnce() -> Result<T, rocksdb::Error>) -> io::Result<T> {
        if let Some(first) = self.first.get() {
            return Err(io::Error::other(format!(
                "the Raft log database refuses writes since an earlier one failed: {first}"
            )));
        }
        f().map_err(|e| {
            let reason = format!("{action} failed: {e}");
            if self.first.set(reason.clone()).is_ok() {
                tracing::error!(
                    "the Raft log database could not write ({reason}); \
                     it takes no more writes and the node stops"
                );
                self.tx.send_replace(Some(reason.clone()));
            }
            io::Error::other(reason)
        })
    }

    /// Whether a write failed, and the first failure.
    #[cfg(test)]
    pub(crate) fn first(&self) -> Option<&str> {
        self.first.get().map(String::as_str)
    }

    /// Watches for the first failure (`Some(reason)` once it happened).
    pub(crate) fn subscribe(&self) -> watch::Receiver<Option<String>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing() -> Result<(), rocksdb::Error> {
        // The only way to build a rocksdb::Error: make RocksDB fail.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-a-dir");
        std::fs::write(&path, b"a file where a database directory should be").unwrap();
        rocksdb::DB::open_default(&path).map(|_| ())
    }

    #[test]
    fn the_first_failure_refuses_every_later_write_and_is_told_once() {
        let f = WriteFailure::new();
        let mut rx = f.subscribe();
        assert_eq!(f.write("first", || Ok::<_, rocksdb::Error>(1)).unwrap(), 1);
        assert!(f.first().is_none());
        let e = f.write("appending log entries", failing).unwrap_err();
        assert!(
            e.to_string().starts_with("appending log entries failed: "),
            "{e}"
        );
        assert!(rx.has_changed().unwrap());
        let told = rx.borrow_and_update().clone().unwrap();
        assert!(told.starts_with("appending log entries failed"), "{told}");
        // Later writes never run, and say why.
        let mut ran = false;
        let e = f
            .write("fsyncing the WAL", || {
                ran = true;
                Ok(())
            })
            .unwrap_err();
        assert!(!ran);
        assert!(
            e.to_string().contains(
                "refuses writes since an earlier one failed: appending log entries failed"
            ),
            "{e}"
        );
        // A second failure does not replace the first.
        let _ = f.write("other", failing);
        assert!(!rx.has_changed().unwrap());
        assert!(f.first().unwrap().starts_with("appending log entries"));
    }

    #[test]
    fn an_fsync_never_runs_during_a_write() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, mpsc};
        let f = Arc::new(WriteFailure::new());
        let writing = Arc::new(AtomicBool::new(false));
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let write = std::thread::spawn({
            let (f, writing) = (f.clone(), writing.clone());
            move || {
                f.write("appending log entries", || {
                    writing.store(true, Ordering::SeqCst);
                    entered_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                    writing.store(false, Ordering::SeqCst);
                    Ok::<_, rocksdb::Error>(())
                })
                .unwrap();
            }
        });
        entered.recv().unwrap();
        let sync = std::thread::spawn({
            let (f, writing) = (f.clone(), writing.clone());
            move || {
                f.sync("fsyncing the WAL", || {
                    Ok::<_, rocksdb::Error>(writing.load(Ordering::SeqCst))
                })
                .unwrap()
            }
        });
        // Time for the fsync to overtake the write, were it allowed to.
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !sync.is_finished(),
            "the fsync ran while a write was running"
        );
        release.send(()).unwrap();
        write.join().unwrap();
        assert!(!sync.join().unwrap(), "the fsync saw a write running");
    }

    #[test]
    fn a_write_that_fails_is_latched_before_a_waiting_fsync_runs() {
        use std::sync::{Arc, mpsc};
        let f = Arc::new(WriteFailure::new());
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let write = std::thread::spawn({
            let f = f.clone();
            move || {
                let _ = f.write("appending log entries", || {
                    entered_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                    failing()
                });
            }
        });
        entered.recv().unwrap();
        let sync = std::thread::spawn({
            let f = f.clone();
            move || {
                let mut ran = false;
                let result = f.sync("fsyncing the WAL", || {
                    ran = true;
                    Ok::<_, rocksdb::Error>(())
                });
                (ran, result.map_err(|e| e.to_string()))
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        release.send(()).unwrap();
        write.join().unwrap();
        let (ran, result) = sync.join().unwrap();
        assert!(!ran, "an fsync ran after a write failed");
        assert!(
            result
                .unwrap_err()
                .contains("refuses writes since an earlier one failed"),
        );
    }
}
