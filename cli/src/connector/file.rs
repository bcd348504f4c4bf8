//! The file source and the file sink.
//!
//! The source tails a file: every complete line appended to it becomes one
//! record (its newline dropped). It survives rotation (the path now names
//! another file: the old one is read to its end, then the new one from its
//! start) and truncation (read again from the start), and remembers where it
//! stands in a position file, written (then fsynced and renamed into place)
//! only after the records before it were acknowledged: a restart resumes
//! there, so a line is sent at least once and, unless the connector dies
//! between an acknowledgement and the position's write, exactly once. A file
//! rotated while the connector is stopped is not looked for: the lines
//! appended to it after the connector stopped are not read (the new file is
//! read from its start).
//!
//! The sink appends each record's value and a newline to a file, fsyncs it,
//! then commits its position as the consumer named after the connector: a
//! restart resumes after the last record written (at least once: a crash
//! between the fsync and the commit writes those records again).

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sluice_client::proto::limits::{RECORD_OVERHEAD_BYTES_MAX, RECORD_SIZE_BYTES_DEFAULT};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Longest line sent as one record: what a producer takes by default. A
/// longer line is sent in pieces of this size (and said so on stderr), never
/// held whole: the source holds at most this much of a line.
pub const LINE_BYTES_MAX: usize = RECORD_SIZE_BYTES_DEFAULT - RECORD_OVERHEAD_BYTES_MAX;
/// Bytes read from the file in one poll: a file far ahead of the connector
/// is sent in steps, each acknowledged and remembered before the next.
const READ_BYTES_PER_POLL_MAX: usize = 4 * 1024 * 1024;

/// Where a new source starts when it has no position yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The whole file.
    Beginning,
    /// Only lines appended from now on.
    End,
}

/// A file source, as its connector file describes it.
#[derive(Debug)]
pub struct FileSource {
    pub path: PathBuf,
    pub interval: Duration,
    pub start_at: StartAt,
    /// Where the position is kept (default: beside the connector file).
    pub position_file: PathBuf,
}

/// Where the source stands: which file (by device and inode, so a rotated
/// file is told from its successor) and how far into it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub device: u64,
    pub inode: u64,
    pub offset: u64,
}

/// The file source's running state.
pub struct Tail {
    source: FileSource,
    /// The file being read, with its identity.
    open: Option<(tokio::fs::File, Position)>,
    /// Bytes of a line not yet ended by a newline (at most [`LINE_BYTES_MAX`]).
    partial: Vec<u8>,
    /// Where the next poll's records end, once acknowledged.
    pending: Option<Position>,
    /// What the position file holds.
    saved: Option<Position>,
}

fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

impl Tail {
    /// Opens the source at its saved position, or where `start_at` says.
    pub fn new(source: FileSource) -> anyhow::Result<Self> {
        let saved = read_position(&source.position_file)?;
        Ok(Self {
            source,
            open: None,
            partial: Vec::new(),
            pending: saved,
            saved,
        })
    }

    /// The lines appended since the last poll (each one record's value), and
    /// a note per line that had to be cut. Call [`Self::acknowledged`] once
    /// they are stored.
    pub async fn poll(&mut self) -> anyhow::Result<(Vec<Vec<u8>>, Vec<String>)> {
        let path = &self.source.path;
        let meta = match tokio::fs::metadata(path).await {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.open.is_some() => {
                // Rotated away and not yet replaced: finish the old file
                // (its last line may end without a newline).
                let (mut lines, notes) = self.read_open().await?;
                if lines.is_empty() {
                    lines = self.flush_partial();
                }
                return Ok((lines, notes));
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", path.display()));
            }
        };
        let (device, inode) = identity(&meta);
        match &self.open {
            Some((_, at)) if (at.device, at.inode) == (device, inode) => {
                if meta.len() < at.offset {
                    // Truncated in place: what is there now is new.
                    eprintln!(
                        "{} shrank below the position read ({} < {}): reading it from its start",
                        path.display(),
                        meta.len(),
                        at.offset
                    );
                    self.reopen(device, inode, 0).await?;
                }
            }
            Some(_) => {
                // Rotated: the rest of the old file first, then the new one.
                let (mut lines, notes) = self.read_open().await?;
                if lines.is_empty() {
                    lines = self.flush_partial();
                }
                if !lines.is_empty() {
                    return Ok((lines, notes));
                }
                self.reopen(device, inode, 0).await?;
            }
            None => {
                let offset = match self.pending {
                    Some(saved) if (saved.device, saved.inode) == (device, inode) => {
                        saved.offset.min(meta.len())
                    }
                    // A saved position in another file: that file was
                    // rotated away while the connector was stopped.
                    Some(_) => 0,
                    None => match self.source.start_at {
                        StartAt::Beginning => 0,
                        StartAt::End => meta.len(),
                    },
                };
                self.reopen(device, inode, offset).await?;
            }
        }
        self.read_open().await
    }

    async fn reopen(&mut self, device: u64, inode: u64, offset: u64) -> anyhow::Result<()> {
        let path = &self.source.path;
        let mut file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("cannot open {}", path.display()))?;
        file.seek(SeekFrom::Start(offset)).await?;
        let at = Position {
            device,
            inode,
            offset,
        };
        self.open = Some((file, at));
        self.partial.clear();
        self.pending = Some(at);
        Ok(())
    }

    /// Complete lines from the open file's position on.
    async fn read_open(&mut self) -> anyhow::Result<(Vec<Vec<u8>>, Vec<String>)> {
        let Some((file, at)) = self.open.as_mut() else {
            return Ok((Vec::new(), Vec::new()));
        };
        // Where the unfinished line (if any) starts in the file.
        let base = at.offset - self.partial.len() as u64;
        let mut buf = std::mem::take(&mut self.partial);
        let before = buf.len();
        (&mut *file)
            .take(READ_BYTES_PER_POLL_MAX as u64)
            .read_to_end(&mut buf)
            .await
            .with_context(|| format!("cannot read {}", self.source.path.display()))?;
        at.offset += (buf.len() - before) as u64;
        let (lines, cut, unfinished) = split_lines(&buf);
        let notes = (0..cut)
            .map(|_| format!("a line longer than {LINE_BYTES_MAX} bytes was sent in pieces"))
            .collect();
        self.partial = buf[buf.len() - unfinished..].to_vec();
        // An unfinished line is read again after a restart.
        self.pending = Some(Position {
            offset: base + (buf.len() - unfinished) as u64,
            ..*at
        });
        Ok((lines, notes))
    }

    /// The bytes of a line the old file ended without a newline, as a
    /// record (nothing more will be appended to a rotated file).
    fn flush_partial(&mut self) -> Vec<Vec<u8>> {
        if self.partial.is_empty() {
            return Vec::new();
        }
        if let (Some((_, at)), Some(pending)) = (&self.open, self.pending.as_mut()) {
            pending.offset = at.offset;
        }
        vec![std::mem::take(&mut self.partial)]
    }

    /// The records of the last poll are stored: remember where they end.
    pub fn acknowledged(&mut self) -> anyhow::Result<()> {
        if let Some(at) = self.pending
            && self.saved != Some(at)
        {
            write_position(&self.source.position_file, at)?;
            self.saved = Some(at);
        }
        Ok(())
    }

    pub fn interval(&self) -> Duration {
        self.source.interval
    }
}

/// The records in `buf`: its complete lines (newlines dropped), lines
/// longer than [`LINE_BYTES_MAX`] cut into pieces of it (counted), and how
/// many bytes at its end belong to a line not finished yet (at most
/// [`LINE_BYTES_MAX`]: more is sent as a piece).
fn split_lines(buf: &[u8]) -> (Vec<Vec<u8>>, usize, usize) {
    let mut lines = Vec::new();
    let mut cut = 0;
    let mut rest = buf;
    loop {
        let (line, ended) = match rest.iter().position(|b| *b == b'\n') {
            Some(nl) => (&rest[..nl], true),
            None => (rest, false),
        };
        let mut line = line;
        if line.len() > LINE_BYTES_MAX {
            cut += 1;
            while line.len() > LINE_BYTES_MAX {
                lines.push(line[..LINE_BYTES_MAX].to_vec());
                line = &line[LINE_BYTES_MAX..];
            }
        }
        if !ended {
            return (lines, cut, line.len());
        }
        lines.push(line.to_vec());
        rest = &rest[rest.iter().position(|b| *b == b'\n').expect("ended") + 1..];
    }
}

fn read_position(path: &Path) -> anyhow::Result<Option<Position>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).with_context(|| {
            format!(
                "position file {} is damaged; delete it to start over (parameters.from says where)",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes `at` to `path` so that a crash leaves the old position or the new
/// one, never a torn file: a temporary file, fsynced, renamed over it.
fn write_position(path: &Path, at: Position) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("position.tmp");
    let mut file = std::fs::File::create(&tmp)
        .with_context(|| format!("cannot write the position file {}", tmp.display()))?;
    file.write_all(&serde_json::to_vec(&at)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot write the position file {}", path.display()))?;
    if let Some(dir) = path.parent()
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// A file sink, as its connector file describes it.
#[derive(Debug)]
pub struct FileSink {
    pub path: PathBuf,
}

/// An open sink file.
pub struct SinkFile {
    file: tokio::fs::File,
    path: PathBuf,
}

impl SinkFile {
    pub async fn open(sink: &FileSink) -> anyhow::Result<Self> {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&sink.path)
            .await
            .with_context(|| format!("cannot open {} for appending", sink.path.display()))?;
        Ok(Self {
            file,
            path: sink.path.clone(),
        })
    }

    /// Appends each value and a newline, then fsyncs: on return they are on disk.
    pub async fn write(&mut self, values: &[&[u8]]) -> anyhow::Result<()> {
        let mut out = Vec::with_capacity(values.iter().map(|v| v.len() + 1).sum());
        for v in values {
            out.extend_from_slice(v);
            out.push(b'\n');
        }
        self.file
            .write_all(&out)
            .await
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        self.file
            .sync_data()
            .await
            .with_context(|| format!("cannot fsync {}", self.path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(dir: &Path, start_at: StartAt) -> FileSource {
        FileSource {
            path: dir.join("app.log"),
            interval: Duration::from_millis(100),
            start_at,
            position_file: dir.join("app.position"),
        }
    }

    fn append(path: &Path, text: &[u8]) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text).unwrap();
    }

    async fn poll(tail: &mut Tail) -> Vec<String> {
        let (lines, _) = tail.poll().await.unwrap();
        tail.acknowledged().unwrap();
        lines
            .into_iter()
            .map(|l| String::from_utf8(l).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn lines_are_read_once_across_partial_writes_restarts_rotation_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, b"one\ntwo\nthr");
        let mut tail = Tail::new(source(dir.path(), StartAt::Beginning)).unwrap();
        assert_eq!(poll(&mut tail).await, ["one", "two"]);
        assert!(poll(&mut tail).await.is_empty());
        append(&log, b"ee\n");
        assert_eq!(poll(&mut tail).await, ["three"]);
        append(&log, b"four\nfi");
        assert_eq!(poll(&mut tail).await, ["four"]);
        // A restart resumes after the last acknowledged line, the
        // unfinished one included again.
        drop(tail);
        let mut tail = Tail::new(source(dir.path(), StartAt::Beginning)).unwrap();
        append(&log, b"ve\n");
        assert_eq!(poll(&mut tail).await, ["five"]);
        // Rotation: the old file's last lines, then the new file's.
        append(&log, b"six\n");
        std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
        append(&log, b"seven\n");
        let mut seen = poll(&mut tail).await;
        seen.extend(poll(&mut tail).await);
        assert_eq!(seen, ["six", "seven"]);
        // Truncated in place: read from the start again.
        std::fs::write(&log, b"").unwrap();
        assert!(poll(&mut tail).await.is_empty());
        append(&log, b"eight\n");
        assert_eq!(poll(&mut tail).await, ["eight"]);
        // Not acknowledged: a restart sends it again (at least once).
        append(&log, b"nine\n");
        let (lines, _) = tail.poll().await.unwrap();
        assert_eq!(lines, [b"nine".to_vec()]);
        drop(tail);
        let mut tail = Tail::new(source(dir.path(), StartAt::Beginning)).unwrap();
        assert_eq!(poll(&mut tail).await, ["nine"]);
    }

    #[tokio::test]
    async fn a_new_source_may_start_at_the_end_and_long_lines_go_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, b"old\n");
        let mut tail = Tail::new(source(dir.path(), StartAt::End)).unwrap();
        assert!(poll(&mut tail).await.is_empty());
        let long = vec![b'x'; LINE_BYTES_MAX + 10];
        append(&log, &long);
        append(&log, b"\nnext\n");
        let (lines, notes) = tail.poll().await.unwrap();
        assert_eq!(lines.len(), 3, "{notes:?}");
        assert_eq!(lines[0].len(), LINE_BYTES_MAX);
        assert_eq!(lines[1], vec![b'x'; 10]);
        assert_eq!(lines[2], b"next");
        assert_eq!(notes.len(), 1);
        std::fs::write(dir.path().join("app.position"), b"{not json").unwrap();
        let Err(e) = Tail::new(source(dir.path(), StartAt::End)) else {
            panic!("a damaged position file must be refused");
        };
        assert!(format!("{e:#}").contains("delete it"), "{e:#}");
    }
}
