//! The sparse offset index kept beside each segment (`<base offset>.index`).
//!
//! Without an index a read from offset N would have to walk every batch header from the
//! start of the segment. With one entry every `index_interval_bytes` of log, a read
//! binary-searches the index for the last indexed batch at or before N and walks at most
//! about one interval of headers from there.
//!
//! Each entry is 16 bytes, little-endian:
//!
//! ```text
//! 0..4   offset of the batch relative to the segment's base offset
//! 4..8   byte position of the batch in the segment file
//! 8..16  largest record timestamp of all batches up to and including this one
//! ```
//!
//! The running maximum timestamp lets `open` learn a closed segment's max timestamp (for
//! retention by age) from the last entry plus a short scan of the batches after it,
//! instead of reading the whole segment. The first batch of a segment is always
//! indexed, so a non-empty segment has a non-empty index.
//!
//! The index is searched on disk with positional reads rather than held in memory: a
//! 1 GiB segment has up to 256 Ki entries, and a broker holds many segments.

use crate::error::{StorageError, io_err};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Size of one index entry on disk.
pub(crate) const ENTRY_LEN: u64 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub rel_offset: u32,
    pub position: u32,
    pub max_timestamp: i64,
}

impl IndexEntry {
    fn encode(&self) -> [u8; ENTRY_LEN as usize] {
        let mut buf = [0u8; ENTRY_LEN as usize];
        buf[0..4].copy_from_slice(&self.rel_offset.to_le_bytes());
        buf[4..8].copy_from_slice(&self.position.to_le_bytes());
        buf[8..16].copy_from_slice(&self.max_timestamp.to_le_bytes());
        buf
    }

    fn decode(buf: &[u8]) -> Self {
        IndexEntry {
            rel_offset: u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")),
            position: u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes")),
            max_timestamp: i64::from_le_bytes(buf[8..16].try_into().expect("8 bytes")),
        }
    }
}

/// An open index file. The entry count and the last entry are cached; everything else
/// is read from the file on demand.
#[derive(Debug)]
pub(crate) struct OffsetIndex {
    path: PathBuf,
    file: File,
    entries: u64,
    last: Option<IndexEntry>,
}

/// What `open` found on disk, so the segment can decide whether to trust it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IndexState {
    /// The file did not exist and was created empty.
    Missing,
    /// The file's length is not a whole number of entries (torn write or damage).
    Ragged,
    /// A whole number of entries; contents still to be checked against the segment.
    Present,
}

impl OffsetIndex {
    /// Opens the index at `path`, creating an empty one if absent.
    pub fn open(path: &Path) -> Result<(Self, IndexState), StorageError> {
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err("open index", path))?;
        if !existed {
            crate::durability::created(path);
        }
        let len = file.metadata().map_err(io_err("stat index", path))?.len();
        let state = if !existed {
            IndexState::Missing
        } else if len % ENTRY_LEN != 0 {
            IndexState::Ragged
        } else {
            IndexState::Present
        };
        let mut index = OffsetIndex {
            path: path.to_path_buf(),
            file,
            entries: len / ENTRY_LEN,
            last: None,
        };
        if index.entries > 0 {
            index.last = Some(index.entry(index.entries - 1)?);
        }
        Ok((index, state))
    }

    /// Creates (or empties) the index at `path`.
    pub fn create(path: &Path) -> Result<Self, StorageError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(io_err("create index", path))?;
        crate::durability::created(path);
        Ok(OffsetIndex {
            path: path.to_path_buf(),
            file,
            entries: 0,
            last: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> u64 {
        self.entries
    }

    /// Reads entry `i` (< len).
    pub fn entry(&self, i: u64) -> Result<IndexEntry, StorageError> {
        let mut buf = [0u8; ENTRY_LEN as usize];
        self.file
            .read_exact_at(&mut buf, i * ENTRY_LEN)
            .map_err(io_err("read index", &self.path))?;
        Ok(IndexEntry::decode(&buf))
    }

    /// Reads every entry; used to validate an index against its segment at open.
    pub fn read_all(&self) -> Result<Vec<IndexEntry>, StorageError> {
        let mut buf = vec![0u8; (self.entries * ENTRY_LEN) as usize];
        self.file
            .read_exact_at(&mut buf, 0)
            .map_err(io_err("read index", &self.path))?;
        Ok(buf
            .chunks_exact(ENTRY_LEN as usize)
            .map(IndexEntry::decode)
            .collect())
    }

    /// The last entry whose relative offset is <= `rel_offset`, if any.
    pub fn lookup(&self, rel_offset: u32) -> Result<Option<IndexEntry>, StorageError> {
        if let Some(last) = self.last
            && last.rel_offset <= rel_offset
        {
            return Ok(Some(last));
        }
        // Invariant: entries [0, lo) are <= rel_offset, entries [hi, len) are > it.
        let (mut lo, mut hi) = (0u64, self.entries);
        let mut found = None;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let entry = self.entry(mid)?;
            if entry.rel_offset <= rel_offset {
                found = Some(entry);
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(found)
    }

    /// Appends an entry. Positional write at the cached length, so a failed earlier write
    /// that left a partial entry is simply overwritten.
    pub fn append(&mut self, entry: IndexEntry) -> Result<(), StorageError> {
        self.file
            .write_all_at(&entry.encode(), self.entries * ENTRY_LEN)
            .map_err(io_err("write index", &self.path))?;
        self.entries += 1;
        self.last = Some(entry);
        Ok(())
    }

    /// Drops every entry (before a rebuild).
    pub fn clear(&mut self) -> Result<(), StorageError> {
        self.file
            .set_len(0)
            .map_err(io_err("truncate index", &self.path))?;
        self.entries = 0;
        self.last = None;
        Ok(())
    }

    pub fn sync(&self) -> Result<(), StorageError> {
        crate::durability::sync_file(&self.file, &self.path)
            .map_err(io_err("fsync index", &self.path))
    }

    /// A second handle on the index file, to fsync it later (see
    /// `crate::log::SyncPoint`).
    pub(crate) fn handle(&self) -> Result<(File, PathBuf), StorageError> {
        let file = self
            .file
            .try_clone()
            .map_err(io_err("open another handle on the index", &self.path))?;
        Ok((file, self.path.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(rel: u32, pos: u32) -> IndexEntry {
        IndexEntry {
            rel_offset: rel,
            position: pos,
            max_timestamp: i64::from(rel) * 10,
        }
    }

    #[test]
    fn lookup_finds_last_entry_at_or_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut index = OffsetIndex::create(&path).unwrap();
        assert_eq!(index.lookup(5).unwrap(), None);
        for i in 0..100u32 {
            index.append(entry(i * 10, i * 1000)).unwrap();
        }
        assert_eq!(index.lookup(0).unwrap(), Some(entry(0, 0)));
        assert_eq!(index.lookup(9).unwrap(), Some(entry(0, 0)));
        assert_eq!(index.lookup(10).unwrap(), Some(entry(10, 1000)));
        assert_eq!(index.lookup(555).unwrap(), Some(entry(550, 55000)));
        assert_eq!(index.lookup(u32::MAX).unwrap(), Some(entry(990, 99000)));

        drop(index);
        let (index, state) = OffsetIndex::open(&path).unwrap();
        assert_eq!(state, IndexState::Present);
        assert_eq!(index.len(), 100);
        assert_eq!(index.entry(99).unwrap(), entry(990, 99000));
        assert_eq!(index.read_all().unwrap().len(), 100);
        assert_eq!(index.lookup(123).unwrap(), Some(entry(120, 12000)));
    }

    #[test]
    fn open_reports_missing_and_ragged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let (mut index, state) = OffsetIndex::open(&path).unwrap();
        assert_eq!(state, IndexState::Missing);
        index.append(entry(0, 0)).unwrap();
        index.append(entry(1, 100)).unwrap();
        drop(index);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(ENTRY_LEN * 2 - 3).unwrap();
        let (mut index, state) = OffsetIndex::open(&path).unwrap();
        assert_eq!(state, IndexState::Ragged);
        assert_eq!(index.len(), 1);
        assert_eq!(index.entry(0).unwrap(), entry(0, 0));
        index.clear().unwrap();
        assert_eq!(index.len(), 0);
        assert_eq!(index.lookup(3).unwrap(), None);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }
}
