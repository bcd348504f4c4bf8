//! One segment: a file of consecutive batches plus its sparse offset index.
//!
//! A partition log is a sequence of segments so that old data can be dropped a whole
//! file at a time (retention is an `unlink`, not a rewrite) and so that recovery after a
//! crash only has to scan the last, still-growing segment: older ones were fsynced when
//! they were closed and can be trusted after a cheap consistency check.

use crate::batch::{self, BatchHeader, HEADER_LEN, StoredBatch};
use crate::error::{Defect, StorageError, io_err};
use crate::index::{IndexEntry, IndexState, OffsetIndex};
use crate::log::{SegmentInfo, TruncatedTail};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// File extension of segment data files.
pub(crate) const LOG_EXT: &str = "log";
/// File extension of segment index files.
pub(crate) const INDEX_EXT: &str = "index";

/// `<dir>/<base offset, 20 digits>.log`: zero-padding makes lexical order offset order.
pub(crate) fn log_path(dir: &Path, base_offset: u64) -> PathBuf {
    dir.join(format!("{base_offset:020}.{LOG_EXT}"))
}

pub(crate) fn index_path(dir: &Path, base_offset: u64) -> PathBuf {
    dir.join(format!("{base_offset:020}.{INDEX_EXT}"))
}

/// Where a scan of batches stands: the next byte position and offset it expects, and
/// what it learned from the batches before.
#[derive(Debug, Clone, Copy)]
struct ScanState {
    pos: u64,
    next_offset: u64,
    last_entry_id: Option<u64>,
    max_timestamp: Option<i64>,
}

/// Result of a scan: how far it got, and the defect that stopped it if it did not
/// reach the limit.
struct ScanEnd {
    state: ScanState,
    defect: Option<Defect>,
}

/// Reads and checks the batch header at `pos`, given that valid data ends at `limit`.
fn read_header(
    file: &File,
    path: &Path,
    pos: u64,
    limit: u64,
) -> Result<Result<BatchHeader, Defect>, StorageError> {
    let available = limit.saturating_sub(pos);
    if available < HEADER_LEN as u64 {
        return Ok(Err(Defect::ShortHeader {
            available,
            needed: HEADER_LEN as u64,
        }));
    }
    let mut buf = [0u8; HEADER_LEN];
    file.read_exact_at(&mut buf, pos)
        .map_err(io_err("read segment", path))?;
    Ok(BatchHeader::parse(&buf))
}

/// Reads the payload of the batch whose header is at `pos` and checks its CRC.
fn read_payload(
    file: &File,
    path: &Path,
    header: &BatchHeader,
    pos: u64,
    limit: u64,
) -> Result<Result<Vec<u8>, Defect>, StorageError> {
    let start = pos + HEADER_LEN as u64;
    let available = limit.saturating_sub(start);
    let needed = u64::from(header.payload_len);
    if available < needed {
        return Ok(Err(Defect::ShortPayload { available, needed }));
    }
    let payload = crate::pread::read_new_at(file, header.payload_len as usize, start)
        .map_err(io_err("read segment", path))?;
    Ok(header.verify_crc(&payload).map(|()| payload))
}

/// Reads the batch at `state.pos` and checks it completely. The checksum is checked
/// before the offset and entry-id order so that a damaged header is reported as
/// damage, not as a misplaced batch.
fn check_batch(
    file: &File,
    path: &Path,
    state: &ScanState,
    limit: u64,
) -> Result<Result<BatchHeader, Defect>, StorageError> {
    let header = match read_header(file, path, state.pos, limit)? {
        Ok(header) => header,
        Err(defect) => return Ok(Err(defect)),
    };
    let payload = match read_payload(file, path, &header, state.pos, limit)? {
        Ok(payload) => payload,
        Err(defect) => return Ok(Err(defect)),
    };
    if header.base_offset != state.next_offset {
        return Ok(Err(Defect::NonContiguousOffset {
            expected: state.next_offset,
            found: header.base_offset,
        }));
    }
    if let Some(previous) = state.last_entry_id
        && header.entry_id <= previous
    {
        return Ok(Err(Defect::EntryIdNotIncreasing {
            previous,
            found: header.entry_id,
        }));
    }
    let records = match batch::expand(&header, &payload) {
        Ok(records) => records,
        Err(defect) => return Ok(Err(defect)),
    };
    Ok(batch::for_each_record(&header, &records, |_, _| {}).map(|()| header))
}

/// Walks batches from `state` until `limit` or the first defect, checking everything a
/// batch must satisfy: header, length, CRC, record encoding, contiguous offsets and
/// increasing entry ids. `on_batch` sees each good batch with the state after it.
fn scan(
    file: &File,
    path: &Path,
    mut state: ScanState,
    limit: u64,
    mut on_batch: impl FnMut(u64, &BatchHeader, &ScanState) -> Result<(), StorageError>,
) -> Result<ScanEnd, StorageError> {
    while state.pos < limit {
        let header = match check_batch(file, path, &state, limit)? {
            Ok(header) => header,
            Err(defect) => {
                return Ok(ScanEnd {
                    state,
                    defect: Some(defect),
                });
            }
        };
        let pos = state.pos;
        state = ScanState {
            pos: pos + header.total_len(),
            next_offset: header.end_offset(),
            last_entry_id: Some(header.entry_id),
            max_timestamp: Some(
                state
                    .max_timestamp
                    .map_or(header.max_timestamp, |m| m.max(header.max_timestamp)),
            ),
        };
        on_batch(pos, &header, &state)?;
    }
    Ok(ScanEnd {
        state,
        defect: None,
    })
}

/// The index plus the bookkeeping that decides when the next entry is due. Kept apart
/// from the segment's file so a scan can borrow the file while this is updated.
#[derive(Debug)]
struct IndexWriter {
    index: OffsetIndex,
    bytes_since_entry: u64,
}

/// The one rule that decides which batches get an index entry: the segment's
/// first, and then the first after at least `interval` bytes of batches since
/// the last entry. Appends, rebuilds and [`Segment::verify_closed`] all go
/// through it, so a rebuilt index equals the original and a verified one is
/// compared with exactly what it should hold.
fn index_entry_due(
    entries: u64,
    bytes_since_entry: u64,
    rel_offset: u64,
    pos: u64,
    running_max_timestamp: i64,
    interval: u32,
) -> Option<IndexEntry> {
    let due = entries == 0 || bytes_since_entry >= u64::from(interval);
    // Appends roll segments before positions or relative offsets outgrow 32 bits;
    // a file written otherwise simply gets no entries past that point (reads then
    // walk from the last entry), rather than wrong ones.
    match (due, u32::try_from(rel_offset), u32::try_from(pos)) {
        (true, Ok(rel_offset), Ok(position)) => Some(IndexEntry {
            rel_offset,
            position,
            max_timestamp: running_max_timestamp,
        }),
        _ => None,
    }
}

impl IndexWriter {
    /// Indexes the batch at `pos` if [`index_entry_due`] says so.
    fn note_batch(
        &mut self,
        rel_offset: u64,
        pos: u64,
        batch_len: u64,
        running_max_timestamp: i64,
        interval: u32,
    ) -> Result<(), StorageError> {
        if let Some(entry) = index_entry_due(
            self.index.len(),
            self.bytes_since_entry,
            rel_offset,
            pos,
            running_max_timestamp,
            interval,
        ) {
            self.index.append(entry)?;
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += batch_len;
        Ok(())
    }
}

/// One open segment.
#[derive(Debug)]
pub(crate) struct Segment {
    base_offset: u64,
    path: PathBuf,
    file: File,
    /// Bytes of batches in the file. For the active segment this is the append position
    /// (anything beyond it is a failed write that the next append overwrites).
    size: u64,
    /// Offset after the last good batch.
    end_offset: u64,
    last_entry_id: Option<u64>,
    max_timestamp: Option<i64>,
    writer: IndexWriter,
    /// Bytes up to which the kernel was asked to start writing the file
    /// back (see [`WRITEBACK_BYTES`]).
    written_back: u64,
}

/// Appended bytes after which the kernel is asked to start writing a
/// segment's data to disk, without waiting for it (`sync_file_range`). Left
/// to the kernel's own schedule (30 s), the dirty pages piled up between a
/// partition's snapshot points, and the fsync there wrote them all at once:
/// on ext4 every other fsync of the disk (each write's WAL fsync) waited for
/// it, a quarter of a second of stalled acks every 5,000 entries at 1,000
/// records/s. A mebibyte is a few hundred records here.
pub(crate) const WRITEBACK_BYTES: u64 = 1024 * 1024;

/// What [`Segment::verify_closed`] found.
pub(crate) enum ClosedCheck {
    /// Every batch is readable and the segment ends where the next starts.
    Intact {
        /// The index disagreed with the batches and was rewritten.
        index_rebuilt: bool,
    },
    /// The first batch that cannot be used: it should start at `offset`, at
    /// byte `position` of the file.
    Damaged {
        offset: u64,
        position: u64,
        reason: Defect,
    },
}

/// What opening a closed segment had to do.
pub(crate) struct ClosedOpen {
    pub segment: Segment,
    pub index_rebuilt: bool,
}

impl Segment {
    /// Creates a new, empty segment starting at `base_offset` (at roll, or for a new log).
    pub fn create(dir: &Path, base_offset: u64) -> Result<Self, StorageError> {
        let path = log_path(dir, base_offset);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io_err("create segment", &path))?;
        crate::durability::created(&path);
        let index = OffsetIndex::create(&index_path(dir, base_offset))?;
        Ok(Segment {
            base_offset,
            path,
            file,
            size: 0,
            end_offset: base_offset,
            last_entry_id: None,
            max_timestamp: None,
            writer: IndexWriter {
                index,
                bytes_since_entry: 0,
            },
            written_back: 0,
        })
    }

    fn open_file(
        dir: &Path,
        base_offset: u64,
        write: bool,
    ) -> Result<(PathBuf, File, u64), StorageError> {
        let path = log_path(dir, base_offset);
        let file = OpenOptions::new()
            .read(true)
            .write(write)
            .open(&path)
            .map_err(io_err("open segment", &path))?;
        let size = file
            .metadata()
            .map_err(io_err("stat segment", &path))?
            .len();
        Ok((path, file, size))
    }

    /// Opens the last segment of a log: scans every batch, cuts the file at the first
    /// defect (a write torn by a crash) and rebuilds the index from the scan.
    ///
    /// `prev_entry_id` is the last entry id of the segments before, so that a batch
    /// whose entry id goes backwards is treated as damage too.
    pub fn open_active(
        dir: &Path,
        base_offset: u64,
        prev_entry_id: Option<u64>,
        index_interval: u32,
    ) -> Result<(Self, Option<TruncatedTail>), StorageError> {
        let (path, file, file_len) = Self::open_file(dir, base_offset, true)?;
        let mut writer = IndexWriter {
            index: OffsetIndex::create(&index_path(dir, base_offset))?,
            bytes_since_entry: 0,
        };
        let start = ScanState {
            pos: 0,
            next_offset: base_offset,
            last_entry_id: prev_entry_id,
            max_timestamp: None,
        };
        let end = scan(&file, &path, start, file_len, |pos, header, after| {
            writer.note_batch(
                header.base_offset - base_offset,
                pos,
                header.total_len(),
                after.max_timestamp.unwrap_or(header.max_timestamp),
                index_interval,
            )
        })?;
        let mut truncated = None;
        if let Some(reason) = end.defect {
            let position = end.state.pos;
            let bytes_removed = file_len - position;
            tracing::warn!(
                path = %path.display(),
                position,
                bytes_removed,
                %reason,
                "truncating damaged tail of active segment"
            );
            file.set_len(position)
                .map_err(io_err("truncate segment", &path))?;
            crate::durability::sync_file(&file, &path).map_err(io_err("fsync segment", &path))?;
            truncated = Some(TruncatedTail {
                path: path.clone(),
                position,
                reason,
                bytes_removed,
            });
        }
        let segment = Segment {
            base_offset,
            path,
            file,
            size: end.state.pos,
            end_offset: end.state.next_offset,
            last_entry_id: end.state.last_entry_id.filter(|_| end.state.pos > 0),
            max_timestamp: end.state.max_timestamp,
            writer,
            written_back: end.state.pos,
        };
        Ok((segment, truncated))
    }

    /// Opens a closed (fsynced, no longer written) segment. Trusts its index if it is
    /// consistent with the file; otherwise rebuilds it from a full scan. `next_base` is
    /// the base offset of the following segment, where this one must end.
    ///
    /// Damage inside a closed segment is not repaired (it is not a torn write, and
    /// cutting it would lose later data): it is logged, and reads reaching it fail
    /// with [`StorageError::Corrupt`].
    pub fn open_closed(
        dir: &Path,
        base_offset: u64,
        next_base: u64,
        index_interval: u32,
    ) -> Result<ClosedOpen, StorageError> {
        let (path, file, size) = Self::open_file(dir, base_offset, false)?;
        let (index, state) = OffsetIndex::open(&index_path(dir, base_offset))?;
        let mut segment = Segment {
            base_offset,
            path,
            file,
            size,
            end_offset: base_offset,
            last_entry_id: None,
            max_timestamp: None,
            writer: IndexWriter {
                index,
                bytes_since_entry: 0,
            },
            written_back: size,
        };
        let problem = match state {
            IndexState::Missing => Some("index file missing".to_string()),
            IndexState::Ragged => Some("index length is not a whole number of entries".to_string()),
            IndexState::Present => segment.check_index(next_base)?,
        };
        let Some(problem) = problem else {
            return Ok(ClosedOpen {
                segment,
                index_rebuilt: false,
            });
        };
        tracing::warn!(
            path = %segment.writer.index.path().display(),
            %problem,
            "rebuilding segment index"
        );
        segment.writer.index.clear()?;
        let start = ScanState {
            pos: 0,
            next_offset: base_offset,
            last_entry_id: None,
            max_timestamp: None,
        };
        let writer = &mut segment.writer;
        let end = scan(
            &segment.file,
            &segment.path,
            start,
            size,
            |pos, header, after| {
                writer.note_batch(
                    header.base_offset - base_offset,
                    pos,
                    header.total_len(),
                    after.max_timestamp.unwrap_or(header.max_timestamp),
                    index_interval,
                )
            },
        )?;
        segment.writer.index.sync()?;
        if let Some(reason) = &end.defect {
            tracing::warn!(
                path = %segment.path.display(),
                position = end.state.pos,
                %reason,
                "closed segment is damaged; reads reaching this position will fail"
            );
        } else if end.state.next_offset != next_base {
            tracing::warn!(
                path = %segment.path.display(),
                segment_end = end.state.next_offset,
                next_base,
                "closed segment does not end where the next segment starts"
            );
        }
        segment.end_offset = end.state.next_offset;
        segment.last_entry_id = end.state.last_entry_id;
        segment.max_timestamp = end.state.max_timestamp;
        Ok(ClosedOpen {
            segment,
            index_rebuilt: true,
        })
    }

    /// Checks a closed segment's index against its file without reading the whole
    /// file: entries must be ordered and in bounds, the first must point at the first
    /// batch, and the batches from the last entry on must scan cleanly to exactly the
    /// end of the file and the next segment's base offset. On success fills in the
    /// segment's end offset, last entry id and max timestamp. Returns the problem found.
    fn check_index(&mut self, next_base: u64) -> Result<Option<String>, StorageError> {
        let entries = self.writer.index.read_all()?;
        if self.size == 0 {
            return Ok(
                (!entries.is_empty()).then(|| "index has entries but segment is empty".to_string())
            );
        }
        let Some(first) = entries.first() else {
            return Ok(Some("index is empty but segment is not".to_string()));
        };
        if first.rel_offset != 0 || first.position != 0 {
            return Ok(Some(
                "first index entry does not point at the first batch".to_string(),
            ));
        }
        for pair in entries.windows(2) {
            if pair[1].rel_offset <= pair[0].rel_offset
                || pair[1].position <= pair[0].position
                || pair[1].max_timestamp < pair[0].max_timestamp
            {
                return Ok(Some("index entries are not increasing".to_string()));
            }
        }
        let last = *entries.last().expect("non-empty");
        if u64::from(last.position) >= self.size {
            return Ok(Some(format!(
                "index entry points at byte {} beyond the segment size {}",
                last.position, self.size
            )));
        }
        match read_header(&self.file, &self.path, 0, self.size)? {
            Ok(h) if h.base_offset == self.base_offset => {}
            Ok(h) => {
                return Ok(Some(format!(
                    "first batch has base offset {}, expected {}",
                    h.base_offset, self.base_offset
                )));
            }
            Err(defect) => return Ok(Some(format!("first batch unreadable: {defect}"))),
        }
        let start = ScanState {
            pos: u64::from(last.position),
            next_offset: self.base_offset + u64::from(last.rel_offset),
            last_entry_id: None,
            max_timestamp: Some(last.max_timestamp),
        };
        let end = scan(&self.file, &self.path, start, self.size, |_, _, _| Ok(()))?;
        if let Some(defect) = end.defect {
            return Ok(Some(format!(
                "batch at byte {} after the last index entry: {defect}",
                end.state.pos
            )));
        }
        if end.state.next_offset != next_base {
            return Ok(Some(format!(
                "segment ends at offset {} but the next segment starts at {next_base}",
                end.state.next_offset
            )));
        }
        self.end_offset = end.state.next_offset;
        self.last_entry_id = end.state.last_entry_id;
        self.max_timestamp = end.state.max_timestamp;
        Ok(None)
    }

    /// Reads every batch of this closed segment (header, CRC, record encoding,
    /// contiguous offsets, entry ids above `prev_entry_id`, the last segment's
    /// before it) and checks that it ends exactly where the next segment starts,
    /// at `next_base`. Then compares the index with the entries these batches
    /// call for and rewrites it if they differ: the index is derived from the
    /// file, so a damaged one is repaired here without losing anything.
    ///
    /// `open_closed` trusts a closed segment after a cheap check (its first
    /// batch and the batches after its last index entry); this is the full
    /// check, for a caller that must know the whole segment is readable.
    pub fn verify_closed(
        &mut self,
        next_base: u64,
        prev_entry_id: Option<u64>,
        index_interval: u32,
    ) -> Result<ClosedCheck, StorageError> {
        let base = self.base_offset;
        let start = ScanState {
            pos: 0,
            next_offset: base,
            last_entry_id: prev_entry_id,
            max_timestamp: None,
        };
        let mut expected = Vec::new();
        let mut bytes_since_entry = 0u64;
        let end = scan(
            &self.file,
            &self.path,
            start,
            self.size,
            |pos, header, after| {
                if let Some(entry) = index_entry_due(
                    expected.len() as u64,
                    bytes_since_entry,
                    header.base_offset - base,
                    pos,
                    after.max_timestamp.unwrap_or(header.max_timestamp),
                    index_interval,
                ) {
                    expected.push(entry);
                    bytes_since_entry = 0;
                }
                bytes_since_entry += header.total_len();
                Ok(())
            },
        )?;
        if let Some(reason) = end.defect {
            return Ok(ClosedCheck::Damaged {
                offset: end.state.next_offset,
                position: end.state.pos,
                reason,
            });
        }
        if end.state.next_offset != next_base {
            return Ok(ClosedCheck::Damaged {
                offset: end.state.next_offset.min(next_base),
                position: self.size,
                reason: Defect::SegmentGap {
                    segment_end: end.state.next_offset,
                    next_base,
                },
            });
        }
        if self.writer.index.read_all()? == expected {
            return Ok(ClosedCheck::Intact {
                index_rebuilt: false,
            });
        }
        tracing::warn!(
            path = %self.writer.index.path().display(),
            "segment index disagrees with its segment; rewriting it"
        );
        self.writer.index.clear()?;
        for entry in expected {
            self.writer.index.append(entry)?;
        }
        self.writer.index.sync()?;
        Ok(ClosedCheck::Intact {
            index_rebuilt: true,
        })
    }

    pub fn base_offset(&self) -> u64 {
        self.base_offset
    }

    pub fn end_offset(&self) -> u64 {
        self.end_offset
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn last_entry_id(&self) -> Option<u64> {
        self.last_entry_id
    }

    pub fn max_timestamp(&self) -> Option<i64> {
        self.max_timestamp
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn index_path(&self) -> &Path {
        self.writer.index.path()
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    pub fn info(&self, active: bool) -> SegmentInfo {
        SegmentInfo {
            base_offset: self.base_offset,
            end_offset: self.end_offset,
            record_count: self.end_offset - self.base_offset,
            path: self.path.clone(),
            size_bytes: self.size,
            max_timestamp_ms: self.max_timestamp,
            active,
        }
    }

    /// Writes an encoded batch (whose base offset is this segment's end offset) at the
    /// end of the segment and indexes it if due. On failure the in-memory state is
    /// unchanged, so the next append writes over whatever partial bytes were left.
    pub fn append(&mut self, batch: &[u8], index_interval: u32) -> Result<(), StorageError> {
        let header = BatchHeader::parse(batch).expect("batch encoded by this crate");
        debug_assert_eq!(header.base_offset, self.end_offset);
        let pos = self.size;
        let max_timestamp = self
            .max_timestamp
            .map_or(header.max_timestamp, |m| m.max(header.max_timestamp));
        let result = self
            .file
            .write_all_at(batch, pos)
            .map_err(io_err("write segment", &self.path))
            .and_then(|()| {
                self.writer.note_batch(
                    header.base_offset - self.base_offset,
                    pos,
                    batch.len() as u64,
                    max_timestamp,
                    index_interval,
                )
            });
        if let Err(error) = result {
            // Best effort: drop the partial bytes so a crash now does not leave them for
            // recovery to puzzle over. Recovery would cut them anyway.
            let _ = self.file.set_len(pos);
            return Err(error);
        }
        self.size += batch.len() as u64;
        self.end_offset = header.end_offset();
        self.last_entry_id = Some(header.entry_id);
        self.max_timestamp = Some(max_timestamp);
        if self.size - self.written_back >= WRITEBACK_BYTES {
            let from = self.written_back;
            crate::durability::start_writeback(&self.file, &self.path, from, self.size - from);
            self.written_back = self.size;
        }
        Ok(())
    }

    /// fsyncs the data file and the index.
    pub fn sync(&self) -> Result<(), StorageError> {
        crate::durability::sync_file(&self.file, &self.path)
            .map_err(io_err("fsync segment", &self.path))?;
        self.writer.index.sync()
    }

    /// Second handles on the segment's file and its index's, which
    /// [`Self::sync`] fsyncs: appends write through to the files (nothing is
    /// buffered here), so fsyncing these later covers every byte appended
    /// before this call.
    pub(crate) fn handles(&self) -> Result<Vec<(File, PathBuf)>, StorageError> {
        let file = self
            .file
            .try_clone()
            .map_err(io_err("open another handle on the segment", &self.path))?;
        Ok(vec![(file, self.path.clone()), self.writer.index.handle()?])
    }

    /// Visits, in order, every batch of this segment that holds an offset >=
    /// `from`, with its payload read; `visit` returns whether to stop. The
    /// offsets must be contiguous. Returns the offset after the last batch
    /// examined and whether `visit` stopped the walk.
    fn walk_from(
        &self,
        from: u64,
        mut visit: impl FnMut(&BatchHeader, Vec<u8>, u64) -> Result<bool, StorageError>,
    ) -> Result<ReadStop, StorageError> {
        let (mut pos, mut expected) = if from > self.base_offset {
            let rel = u32::try_from(from - self.base_offset).unwrap_or(u32::MAX);
            match self.writer.index.lookup(rel)? {
                Some(entry) => (
                    u64::from(entry.position),
                    self.base_offset + u64::from(entry.rel_offset),
                ),
                None => (0, self.base_offset),
            }
        } else {
            (0, self.base_offset)
        };
        while pos < self.size {
            let header = read_header(&self.file, &self.path, pos, self.size)?
                .map_err(|d| self.corrupt(pos, d))?;
            if header.base_offset != expected {
                return Err(self.corrupt(
                    pos,
                    Defect::NonContiguousOffset {
                        expected,
                        found: header.base_offset,
                    },
                ));
            }
            if header.end_offset() > from {
                let payload = read_payload(&self.file, &self.path, &header, pos, self.size)?
                    .map_err(|d| self.corrupt(pos, d))?;
                if visit(&header, payload, pos)? {
                    return Ok(ReadStop::Budget);
                }
            }
            pos += header.total_len();
            expected = header.end_offset();
        }
        Ok(ReadStop::EndOfSegment {
            next_offset: expected,
        })
    }

    fn corrupt(&self, position: u64, reason: Defect) -> StorageError {
        StorageError::Corrupt {
            path: self.path.clone(),
            position,
            reason,
        }
    }

    /// Collects the batches stored in this segment from the one holding
    /// `from` on, whole (CRC checked), while their bytes stay within
    /// `max_bytes` (the first batch of the whole read is always taken).
    /// `bytes` is the running total across segments
    /// ([`StoredBatch::budget_bytes`]). Returns whether the budget stopped the
    /// read, or the offset after the segment's last batch.
    pub fn read_batches_into(
        &self,
        from: u64,
        max_bytes: usize,
        bytes: &mut usize,
        out: &mut Vec<StoredBatch>,
    ) -> Result<ReadStop, StorageError> {
        self.walk_from(from, |header, payload, pos| {
            let batch_bytes = StoredBatch::budget_bytes(header, &payload);
            if !out.is_empty() && bytes.saturating_add(batch_bytes) > max_bytes {
                return Ok(true);
            }
            out.push(StoredBatch::new(
                header.clone(),
                payload,
                self.path.clone(),
                pos,
            )?);
            *bytes = bytes.saturating_add(batch_bytes);
            Ok(*bytes >= max_bytes)
        })
    }

    /// Like [`Segment::read_batches_into`], but collects whole batches as stored (header
    /// and payload, CRC checked), for copying them to another replica.
    /// `bytes` counts batch bytes.
    pub fn read_raw_into(
        &self,
        from: u64,
        max_bytes: usize,
        bytes: &mut usize,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<ReadStop, StorageError> {
        self.walk_from(from, |header, payload, pos| {
            header
                .verify_crc(&payload)
                .map_err(|d| self.corrupt(pos, d))?;
            let len = header.total_len() as usize;
            if !out.is_empty() && bytes.saturating_add(len) > max_bytes {
                return Ok(true);
            }
            let mut batch = Vec::with_capacity(len);
            batch.extend_from_slice(header.raw());
            batch.extend_from_slice(&payload);
            out.push(batch);
            *bytes = bytes.saturating_add(len);
            Ok(*bytes >= max_bytes)
        })
    }

    /// Builds the error for a closed segment whose batches end at `segment_end` while
    /// the next segment starts at `next_base`.
    pub fn gap_error(&self, segment_end: u64, next_base: u64) -> StorageError {
        StorageError::Corrupt {
            path: self.path.clone(),
            position: self.size,
            reason: Defect::SegmentGap {
                segment_end,
                next_base,
            },
        }
    }

    /// Deletes the segment's files (retention). The open handles stay valid until the
    /// segment is dropped, so a failure leaves the segment fully usable in memory.
    pub fn remove_files(&self) -> Result<(), StorageError> {
        std::fs::remove_file(&self.path).map_err(io_err("remove segment", &self.path))?;
        let index_path = self.writer.index.path();
        match std::fs::remove_file(index_path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io("remove index", index_path, e)),
        }
    }
}

/// Why `Segment::read_batches_into` (or `read_raw_into`) returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadStop {
    /// The byte budget is used up: the read is complete.
    Budget,
    /// All batches of the segment were examined; the next one should start at
    /// `next_offset` in the following segment.
    EndOfSegment { next_offset: u64 },
}
