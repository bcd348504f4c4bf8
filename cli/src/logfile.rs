//! A node's log file, bounded in size.
//!
//! Why: a node logs a warning for every heartbeat a peer does not answer. A
//! local cluster of 1,000 partitions whose nodes overloaded one another once
//! wrote 14 GB of such lines per node in three hours and filled the disk,
//! after which RocksDB's writes failed on every node of the machine. Nothing a
//! peer does may grow a file without limit, so the log has a named bound:
//! when the next line would take `node.log` past `max_bytes`, the file is
//! renamed to `node.log.1` (replacing the previous one) and a new `node.log`
//! starts. A node keeps at most twice `max_bytes` of log.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// The smallest bound accepted: one long line must fit.
pub const LOG_FILE_BYTES_MIN: u64 = 64 << 10;

/// A size-bounded log file with one rotated predecessor.
#[derive(Debug)]
pub struct BoundedLogFile {
    path: PathBuf,
    rotated: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    file: File,
    /// Bytes in the current file, counted from its size when opened.
    written: u64,
}

impl BoundedLogFile {
    /// Opens (appending to) the log at `path`; its rotated copy is
    /// `path` with `.1` appended.
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<Self> {
        let file = open_append(path)?;
        let written = file.metadata()?.len();
        let mut rotated = path.as_os_str().to_owned();
        rotated.push(".1");
        Ok(Self {
            path: path.to_path_buf(),
            rotated: PathBuf::from(rotated),
            max_bytes: max_bytes.max(LOG_FILE_BYTES_MIN),
            state: Mutex::new(State { file, written }),
        })
    }

    /// Writes one formatted event, rotating first if it would not fit.
    fn write_event(&self, buf: &[u8]) -> io::Result<()> {
        let mut state = self.lock();
        if state.written > 0 && state.written + buf.len() as u64 > self.max_bytes {
            self.rotate(&mut state);
        }
        // A single line longer than the bound is cut to it, not refused:
        // losing the tail of one line is better than losing the line.
        let cut = buf.len().min(self.max_bytes as usize);
        state.file.write_all(&buf[..cut])?;
        state.written += cut as u64;
        Ok(())
    }

    /// Moves the current file aside and starts a new one. If the rename or
    /// the new file fails (a full or read-only disk), the current file is
    /// emptied instead, so the bound holds whatever the disk does.
    fn rotate(&self, state: &mut State) {
        let renamed =
            std::fs::rename(&self.path, &self.rotated).and_then(|()| open_append(&self.path));
        match renamed {
            Ok(file) => state.file = file,
            Err(_) => {
                let _ = state.file.set_len(0);
            }
        }
        state.written = 0;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the file usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// What `tracing_subscriber` writes one event through: the fmt layer formats
/// an event into one buffer and writes it with one `write_all`, so each
/// `write` here is a whole event and rotation never splits a line.
pub struct EventWriter<'a>(&'a BoundedLogFile);

impl Write for EventWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_event(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.lock().file.flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BoundedLogFile {
    type Writer = EventWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(i: usize) -> Vec<u8> {
        format!("{i:07} {}\n", "x".repeat(1000)).into_bytes()
    }

    #[test]
    fn the_log_rotates_at_its_bound_and_keeps_one_predecessor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.log");
        let log = BoundedLogFile::open(&path, LOG_FILE_BYTES_MIN).unwrap();
        let per_line = line(0).len() as u64;
        let lines = 5 * (LOG_FILE_BYTES_MIN / per_line) as usize;
        for i in 0..lines {
            log.write_event(&line(i)).unwrap();
        }
        let current = std::fs::read(&path).unwrap();
        let rotated = std::fs::read(dir.path().join("node.log.1")).unwrap();
        assert!(current.len() as u64 <= LOG_FILE_BYTES_MIN);
        assert!(rotated.len() as u64 <= LOG_FILE_BYTES_MIN);
        assert!(
            rotated.len() as u64 > LOG_FILE_BYTES_MIN - per_line,
            "a rotated file is full up to its last whole line"
        );
        // Only two files, the newest line last, and every line whole.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 2);
        let text = String::from_utf8(current).unwrap();
        assert!(text.ends_with(&String::from_utf8(line(lines - 1)).unwrap()));
        for text in [text, String::from_utf8(rotated).unwrap()] {
            assert!(text.lines().all(|l| l.len() as u64 == per_line - 1));
        }
    }

    #[test]
    fn reopening_counts_what_the_file_already_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.log");
        let per_line = line(0).len() as u64;
        let fit = (LOG_FILE_BYTES_MIN / per_line) as usize;
        {
            let log = BoundedLogFile::open(&path, LOG_FILE_BYTES_MIN).unwrap();
            for i in 0..fit {
                log.write_event(&line(i)).unwrap();
            }
        }
        assert!(!dir.path().join("node.log.1").exists());
        // A restarted node appends; the first line past the bound rotates.
        let log = BoundedLogFile::open(&path, LOG_FILE_BYTES_MIN).unwrap();
        log.write_event(&line(fit)).unwrap();
        assert!(dir.path().join("node.log.1").exists());
        assert_eq!(std::fs::read(&path).unwrap(), line(fit));
    }

    #[test]
    fn a_line_longer_than_the_bound_is_cut_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.log");
        let log = BoundedLogFile::open(&path, LOG_FILE_BYTES_MIN).unwrap();
        log.write_event(&vec![b'y'; 3 * LOG_FILE_BYTES_MIN as usize])
            .unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), LOG_FILE_BYTES_MIN);
    }
}
