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

use std::io;
use std::sync::OnceLock;

use tokio::sync::watch;

/// The latch; one per database, shared with its syncer thread.
pub(crate) struct WriteFailure {
    first: OnceLock<String>,
    tx: watch::Sender<Option<String>>,
}

impl WriteFailure {
    pub(crate) fn new() -> Self {
        Self {
            first: OnceLock::new(),
            tx: watch::channel(None).0,
        }
    }

    /// Runs the write or fsync `f` (described by `action`, e.g. "appending
    /// log entries") unless one already failed; latches its failure.
    pub(crate) fn write<T>(
        &self,
        action: &str,
        f: impl FnOnce() -> Result<T, rocksdb::Error>,
    ) -> io::Result<T> {
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
}
