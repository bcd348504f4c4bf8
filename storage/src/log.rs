//! The partition log: an ordered list of segments, the last of which (the active
//! segment) receives appends.
//!
//! Invariants kept by every method taking `&mut self`:
//! - there is always at least one segment, the last one is the active segment;
//! - segments are sorted by base offset and each starts where the previous one ends;
//! - only the active segment is ever written; closed segments were fsynced at roll.
//!
//! Reads take `&self` and use positional reads, so a caller can put the log behind an
//! `RwLock` and serve many readers while one writer appends.

use crate::batch::{self, StoredBatch};
use crate::error::{Defect, StorageError, io_err};
use crate::segment::{ClosedCheck, INDEX_EXT, LOG_EXT, ReadStop, Segment};
use sluice_proto::{Compression, ConsumerRecord, Record};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Tuning of a partition log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A segment is closed and a new one started when the next batch would make it
    /// larger than this. Smaller segments make retention finer-grained; larger ones mean
    /// fewer files. Capped internally at 4 GiB (index positions are 32-bit).
    pub segment_size_bytes: u64,
    /// Delete the oldest closed segments while the log is larger than this.
    pub retention_bytes: Option<u64>,
    /// Delete closed segments whose newest record is older than this.
    pub retention_ms: Option<u64>,
    /// Bytes of batches between two index entries: smaller means faster seeks and a
    /// bigger index.
    pub index_interval_bytes: u32,
    /// How new batches' records are stored (the topic's compression
    /// setting); batches already written keep theirs, and every format reads
    /// back alike.
    pub compression: Compression,
}

impl Default for LogConfig {
    /// 1 GiB segments, no retention limits, an index entry every 4 KiB.
    fn default() -> Self {
        LogConfig {
            segment_size_bytes: 1 << 30,
            retention_bytes: None,
            retention_ms: None,
            index_interval_bytes: 4096,
            compression: Compression::None,
        }
    }
}

/// The damaged tail cut off the active segment at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncatedTail {
    /// The segment file that was truncated.
    pub path: PathBuf,
    /// Byte position of the first bad batch: the new length of the file.
    pub position: u64,
    /// What was wrong with that batch.
    pub reason: Defect,
    /// How many bytes were cut.
    pub bytes_removed: u64,
}

/// What `PartitionLog::open` found and repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The torn tail removed from the active segment, if any.
    pub truncated: Option<TruncatedTail>,
    /// Next offset to be assigned after recovery.
    pub end_offset: u64,
    /// Entry id of the last batch kept: the caller re-applies writes after this one.
    pub last_entry_id: Option<u64>,
    /// Number of segments in the log.
    pub segments: usize,
    /// Index files of closed segments that were missing or inconsistent and rebuilt.
    pub rebuilt_indexes: Vec<PathBuf>,
    /// Index files without a segment file (left by an interrupted delete), removed.
    pub removed_orphans: Vec<PathBuf>,
}

/// The first unusable batch [`PartitionLog::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedBatch {
    /// The offset the batch should start at: every offset from here to the
    /// end of its segment is unreadable.
    pub offset: u64,
    /// The segment file, and the byte where the damage starts.
    pub path: PathBuf,
    pub position: u64,
    pub reason: Defect,
}

/// What [`PartitionLog::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    /// Index files of closed segments that disagreed with their segment and
    /// were rewritten (nothing was lost: an index is derived from its segment).
    pub rebuilt_indexes: Vec<PathBuf>,
    /// The first batch that cannot be read, if any.
    pub damage: Option<DamagedBatch>,
}

/// Description of one segment, for monitoring and for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Offset of the first record in the segment; also its file name.
    pub base_offset: u64,
    /// Offset after the last record in the segment.
    pub end_offset: u64,
    /// Records in the segment (`end_offset - base_offset`).
    pub record_count: u64,
    /// Path of the segment's data file.
    pub path: PathBuf,
    /// Size of the data file in bytes.
    pub size_bytes: u64,
    /// Largest record timestamp in the segment, `None` if it is empty.
    pub max_timestamp_ms: Option<i64>,
    /// Whether this is the segment receiving appends.
    pub active: bool,
}

/// Why retention deleted a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionReason {
    /// Its newest record was older than `retention_ms`.
    Age,
    /// The log was larger than `retention_bytes`.
    Size,
}

/// One segment deleted by retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedSegment {
    pub segment: SegmentInfo,
    pub reason: RetentionReason,
}

/// What `enforce_retention` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    /// Deleted segments, oldest first.
    pub deleted: Vec<DeletedSegment>,
    /// Bytes of segment files deleted.
    pub bytes_freed: u64,
    /// First offset still stored after retention.
    pub start_offset: u64,
}

/// The stored log of one partition.
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    partition: u32,
    config: LogConfig,
    /// Never empty; the last one is the active segment.
    segments: Vec<Segment>,
    /// Entry id of the last batch written, kept here because the segment holding it is
    /// not necessarily the active one (right after a roll).
    last_entry_id: Option<u64>,
}

/// Parses `<20 digits>.<ext>` into a base offset and extension.
fn parse_file_name(path: &Path) -> Option<(u64, &str)> {
    let ext = path.extension()?.to_str()?;
    let stem = path.file_stem()?.to_str()?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, ext))
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .map_err(io_err("open directory", dir))
        .and_then(|d| crate::durability::sync_dir(&d).map_err(io_err("fsync directory", dir)))
}

/// Files to fsync and the directory, captured by [`PartitionLog::sync_point`].
pub struct SyncPoint {
    files: Vec<(File, PathBuf)>,
    dir: PathBuf,
}

impl SyncPoint {
    /// fsyncs the captured files and the directory (reported to the
    /// durability observer as any fsync of the log's).
    pub fn sync(self) -> Result<(), StorageError> {
        for (file, path) in &self.files {
            crate::durability::sync_file(file, path).map_err(io_err("fsync", path))?;
        }
        sync_dir(&self.dir)
    }
}

impl PartitionLog {
    /// Opens (creating if absent) the log in `dir`, recovering the tail.
    ///
    /// Closed segments are checked cheaply through their index (rebuilt if missing or
    /// inconsistent); the active segment is scanned completely, because a crash can
    /// have torn its last write. The scan stops at the first bad batch and the file is
    /// cut there: everything after a torn write is unreliable, and the caller re-applies
    /// the writes after [`RecoveryReport::last_entry_id`].
    pub fn open(
        dir: &Path,
        partition: u32,
        config: LogConfig,
    ) -> Result<(Self, RecoveryReport), StorageError> {
        std::fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        let mut bases = Vec::new();
        let mut index_files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_err("read directory", dir))? {
            let path = entry.map_err(io_err("read directory", dir))?.path();
            match parse_file_name(&path) {
                Some((base, LOG_EXT)) => bases.push(base),
                Some((base, INDEX_EXT)) => index_files.push((base, path)),
                _ => {}
            }
        }
        bases.sort_unstable();

        let mut removed_orphans = Vec::new();
        for (base, path) in index_files {
            if bases.binary_search(&base).is_err() {
                tracing::warn!(path = %path.display(), "removing index file without a segment");
                std::fs::remove_file(&path).map_err(io_err("remove index", &path))?;
                removed_orphans.push(path);
            }
        }

        let interval = config.index_interval_bytes;
        let mut segments = Vec::with_capacity(bases.len().max(1));
        let mut rebuilt_indexes = Vec::new();
        let mut truncated = None;
        if bases.is_empty() {
            segments.push(Segment::create(dir, 0)?);
            sync_dir(dir)?;
        } else {
            for pair in bases.windows(2) {
                let opened = Segment::open_closed(dir, pair[0], pair[1], interval)?;
                if opened.index_rebuilt {
                    rebuilt_indexes.push(opened.segment.index_path().to_path_buf());
                }
                segments.push(opened.segment);
            }
            let prev_entry_id = segments.iter().rev().find_map(Segment::last_entry_id);
            let active_base = *bases.last().expect("non-empty");
            let (active, cut) = Segment::open_active(dir, active_base, prev_entry_id, interval)?;
            truncated = cut;
            segments.push(active);
        }

        let last_entry_id = segments.iter().rev().find_map(Segment::last_entry_id);
        let log = PartitionLog {
            dir: dir.to_path_buf(),
            partition,
            config,
            segments,
            last_entry_id,
        };
        let report = RecoveryReport {
            truncated,
            end_offset: log.end_offset(),
            last_entry_id,
            segments: log.segments.len(),
            rebuilt_indexes,
            removed_orphans,
        };
        tracing::debug!(
            dir = %log.dir.display(),
            partition,
            start_offset = log.start_offset(),
            end_offset = report.end_offset,
            segments = report.segments,
            "opened partition log"
        );
        Ok((log, report))
    }

    /// The partition this log stores (copied into every [`ConsumerRecord`]).
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The directory holding the segment files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("a log always has an active segment")
    }

    /// Appends `records` as ONE batch at the current end offset; returns the base offset.
    ///
    /// `entry_id` is an opaque, strictly increasing id of the write that produced the
    /// batch (the caller uses its replicated-log index). It is stored in the batch
    /// header so that a caller re-applying writes after a crash can skip those already
    /// present ([`last_entry_id`](Self::last_entry_id)). Errors if `entry_id` is not
    /// above the last one or `records` is empty.
    ///
    /// The batch is written but not fsynced: durability comes from the caller's
    /// replicated log until it calls [`sync`](Self::sync).
    pub fn append(&mut self, entry_id: u64, records: &[Record]) -> Result<u64, StorageError> {
        let partition = self.partition;
        if records.is_empty() {
            return Err(StorageError::EmptyBatch { partition });
        }
        if let Some(last_entry_id) = self.last_entry_id
            && entry_id <= last_entry_id
        {
            return Err(StorageError::EntryIdNotIncreasing {
                partition,
                entry_id,
                last_entry_id,
            });
        }
        let base_offset = self.end_offset();
        let count = records.len() as u64;
        if base_offset.checked_add(count).is_none() {
            return Err(StorageError::OffsetOverflow {
                partition,
                end_offset: base_offset,
                records: records.len(),
            });
        }
        let encoded = batch::encode(base_offset, entry_id, records, self.config.compression)
            .map_err(|e| StorageError::BatchTooLarge {
                partition,
                size: e.payload_len,
                records: records.len(),
                limit: batch::MAX_PAYLOAD,
            })?;

        let active = self.active();
        let max_size = self.config.segment_size_bytes.min(u64::from(u32::MAX));
        let too_big = active.size() + encoded.len() as u64 > max_size;
        // Relative offsets in the index are 32-bit.
        let too_many = base_offset + count - active.base_offset() > u64::from(u32::MAX);
        if !active.is_empty() && (too_big || too_many) {
            self.roll(base_offset)?;
        }

        let interval = self.config.index_interval_bytes;
        self.segments
            .last_mut()
            .expect("a log always has an active segment")
            .append(&encoded, interval)?;
        self.last_entry_id = Some(entry_id);
        Ok(base_offset)
    }

    /// Closes the active segment and starts a new one at `base_offset`. The closed
    /// segment and its index are fsynced now, because `open` only scans the active
    /// segment and trusts closed ones.
    fn roll(&mut self, base_offset: u64) -> Result<(), StorageError> {
        self.active().sync()?;
        let segment = Segment::create(&self.dir, base_offset)?;
        sync_dir(&self.dir)?;
        tracing::debug!(
            partition = self.partition,
            closed = %self.active().path().display(),
            base_offset,
            "rolled segment"
        );
        self.segments.push(segment);
        sluice_crashpoints::hit(sluice_crashpoints::SEGMENT_ROLLED);
        Ok(())
    }

    /// Entry id of the last batch in the log, `None` if nothing was ever appended.
    pub fn last_entry_id(&self) -> Option<u64> {
        self.last_entry_id
    }

    /// First offset still stored (moves forward with retention).
    pub fn start_offset(&self) -> u64 {
        self.segments[0].base_offset()
    }

    /// Next offset to assign (= high watermark of stored data).
    pub fn end_offset(&self) -> u64 {
        self.active().end_offset()
    }

    /// Records with offset >= `from`, copied out of the batches
    /// [`read_batches`](Self::read_batches) returns for the same arguments (records
    /// before `from` inside the first batch are skipped), so at least one record
    /// whatever `max_bytes` is when `from` is below the end.
    ///
    /// `from == end_offset()` returns nothing (the consumer is caught up);
    /// `from < start_offset()` or `from > end_offset()` is
    /// [`StorageError::OffsetOutOfRange`].
    pub fn read(&self, from: u64, max_bytes: usize) -> Result<Vec<ConsumerRecord>, StorageError> {
        let batches = self.read_batches(from, max_bytes)?;
        let mut out = Vec::new();
        StoredBatch::for_each_in(&batches, from, u64::MAX, |r| {
            out.push(ConsumerRecord {
                partition: self.partition,
                offset: r.offset,
                key: r.key.map(<[u8]>::to_vec),
                value: r.value.to_vec(),
                timestamp_ms: r.timestamp_ms,
                headers: r.headers.to_vec(),
            })
        })?;
        Ok(out)
    }

    /// Whole batches (CRC checked) from the one holding `from` on, while
    /// their records stay within about `max_bytes` (at least one batch when
    /// `from` is below the end); the caller skips records before `from`.
    /// Same range rules as [`read`](Self::read), without copying each record.
    pub fn read_batches(
        &self,
        from: u64,
        max_bytes: usize,
    ) -> Result<Vec<StoredBatch>, StorageError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        self.walk_segments(from, |segment| {
            segment.read_batches_into(from, max_bytes, &mut bytes, &mut out)
        })?;
        Ok(out)
    }

    /// Whole batches as stored (header and payload, CRC checked) from the one
    /// holding `from` on, while their bytes stay within `max_bytes` (at least
    /// one batch when `from` is below the end): what a replica that fell
    /// behind copies with [`append_raw`](Self::append_raw). Same range rules
    /// as [`read`](Self::read).
    pub fn read_raw(&self, from: u64, max_bytes: usize) -> Result<Vec<Vec<u8>>, StorageError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        self.walk_segments(from, |segment| {
            segment.read_raw_into(from, max_bytes, &mut bytes, &mut out)
        })?;
        Ok(out)
    }

    /// Runs `read` on the segment holding `from` and the following ones until
    /// it reports its budget used up or the log ends; checks the range first
    /// and that consecutive segments continue each other.
    fn walk_segments(
        &self,
        from: u64,
        mut read: impl FnMut(&Segment) -> Result<ReadStop, StorageError>,
    ) -> Result<(), StorageError> {
        let (start, end) = (self.start_offset(), self.end_offset());
        if from < start || from > end {
            return Err(StorageError::OffsetOutOfRange {
                partition: self.partition,
                requested: from,
                start,
                end,
            });
        }
        if from == end {
            return Ok(());
        }
        let mut i = self.segments.partition_point(|s| s.base_offset() <= from) - 1;
        loop {
            let segment = &self.segments[i];
            match read(segment)? {
                ReadStop::Budget => return Ok(()),
                ReadStop::EndOfSegment { next_offset } => {
                    let Some(next) = self.segments.get(i + 1) else {
                        return Ok(());
                    };
                    if next_offset != next.base_offset() {
                        return Err(segment.gap_error(next_offset, next.base_offset()));
                    }
                    i += 1;
                }
            }
        }
    }

    /// Appends a batch copied byte for byte from another replica's
    /// [`read_raw`](Self::read_raw). It must be intact (CRC), start at this
    /// log's end offset, carry an entry id above the last one and hold records
    /// that decode as its header says; otherwise
    /// nothing is written. Returns the batch's end offset.
    pub fn append_raw(&mut self, batch: &[u8]) -> Result<u64, StorageError> {
        let partition = self.partition;
        let bad = |reason: String| StorageError::BadCopiedBatch { partition, reason };
        let header = batch::BatchHeader::parse(batch).map_err(|d| bad(d.to_string()))?;
        if batch.len() as u64 != header.total_len() {
            return Err(bad(format!(
                "{} bytes given but the header describes {}",
                batch.len(),
                header.total_len()
            )));
        }
        let payload = &batch[batch::HEADER_LEN..];
        header.verify_crc(payload).map_err(|d| bad(d.to_string()))?;
        // The records too, as `open` would check them: a batch that passes
        // its CRC but does not decode must not get into the log.
        batch::expand(&header, payload)
            .and_then(|records| batch::for_each_record(&header, &records, |_, _| {}))
            .map_err(|d| bad(d.to_string()))?;
        if header.base_offset != self.end_offset() {
            return Err(bad(format!(
                "it starts at offset {} but the log ends at {}",
                header.base_offset,
                self.end_offset()
            )));
        }
        if let Some(last) = self.last_entry_id
            && header.entry_id <= last
        {
            return Err(StorageError::EntryIdNotIncreasing {
                partition,
                entry_id: header.entry_id,
                last_entry_id: last,
            });
        }
        let active = self.active();
        let max_size = self.config.segment_size_bytes.min(u64::from(u32::MAX));
        let too_big = active.size() + batch.len() as u64 > max_size;
        let too_many = header.end_offset() - active.base_offset() > u64::from(u32::MAX);
        if !active.is_empty() && (too_big || too_many) {
            self.roll(header.base_offset)?;
        }
        let interval = self.config.index_interval_bytes;
        self.segments
            .last_mut()
            .expect("a log always has an active segment")
            .append(batch, interval)?;
        self.last_entry_id = Some(header.entry_id);
        Ok(header.end_offset())
    }

    /// Reads every stored batch and checks every index, so that a caller can
    /// know, before serving the log, that each offset it holds can be read.
    ///
    /// [`open`](Self::open) scans only the active segment (where a crash tears
    /// writes) and trusts closed segments after a cheap check of their ends;
    /// damage inside a closed segment (a flipped bit, a file cut short by
    /// something other than a crash) shows only when a read reaches it. This
    /// reads each closed segment whole (CRC, record encoding, contiguous
    /// offsets, increasing entry ids, and that it ends where the next segment
    /// starts) and rewrites any index that disagrees with its segment. The
    /// active segment was read whole by `open`. Costs one sequential read of
    /// the closed segments.
    ///
    /// Stops at the first damaged batch (what follows it in its segment
    /// cannot be located reliably); I/O failures are errors.
    pub fn verify(&mut self) -> Result<VerifyReport, StorageError> {
        let mut report = VerifyReport::default();
        let interval = self.config.index_interval_bytes;
        let mut prev_entry_id = None;
        for i in 0..self.segments.len().saturating_sub(1) {
            let next_base = self.segments[i + 1].base_offset();
            let segment = &mut self.segments[i];
            match segment.verify_closed(next_base, prev_entry_id, interval)? {
                ClosedCheck::Intact { index_rebuilt } => {
                    if index_rebuilt {
                        report
                            .rebuilt_indexes
                            .push(segment.index_path().to_path_buf());
                    }
                }
                ClosedCheck::Damaged {
                    offset,
                    position,
                    reason,
                } => {
                    report.damage = Some(DamagedBatch {
                        offset,
                        path: segment.path().to_path_buf(),
                        position,
                        reason,
                    });
                    return Ok(report);
                }
            }
            prev_entry_id = segment.last_entry_id().or(prev_entry_id);
        }
        Ok(report)
    }

    /// Empties the log and restarts it at `start_offset` (a replica about to
    /// copy a log whose older segments the source already deleted).
    pub fn reset(&mut self, start_offset: u64) -> Result<(), StorageError> {
        let fresh = Segment::create(&self.dir, start_offset)?;
        for segment in std::mem::replace(&mut self.segments, vec![fresh]) {
            if segment.base_offset() != start_offset {
                segment.remove_files()?;
            }
        }
        self.last_entry_id = None;
        sync_dir(&self.dir)
    }

    /// What [`Self::sync`] would make durable now, to be made durable later
    /// without holding the log: the active segment's and its index's files
    /// (second handles) and the directory. Closed segments were fsynced when
    /// they were closed, so after [`SyncPoint::sync`] everything appended
    /// before this call is durable, while appends and reads went on during
    /// the fsyncs (a partition's snapshot point stalled its writes for a
    /// quarter of a second when they waited for them).
    pub fn sync_point(&self) -> Result<SyncPoint, StorageError> {
        Ok(SyncPoint {
            files: self.active().handles()?,
            dir: self.dir.clone(),
        })
    }

    /// fsyncs the active segment, its index and the directory. Callers call this before
    /// discarding whatever else could rebuild the data (e.g. before purging a
    /// replicated log). Closed segments were already fsynced when they were closed.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.active().sync()?;
        sync_dir(&self.dir)
    }

    /// fsyncs every segment and index file, closed ones included, and the
    /// directory. [`sync`](Self::sync) is enough for a log written here (closed
    /// segments were fsynced when they were closed); this is for a log whose
    /// files were moved into this directory from another one (a replica's
    /// repaired copy), so that the durability observer learns each file's
    /// durable length under the path it has now.
    pub fn sync_every_file(&mut self) -> Result<(), StorageError> {
        for segment in &self.segments {
            segment.sync()?;
        }
        sync_dir(&self.dir)
    }

    /// Deletes whole closed segments, oldest first: those whose newest record is older
    /// than `now_ms - retention_ms`, then more while the log is larger than
    /// `retention_bytes`. Only a prefix of the log is ever deleted, so the stored
    /// offsets stay contiguous and [`start_offset`](Self::start_offset) moves forward.
    ///
    /// Never deleted: the active segment, and the segment holding the last batch (which
    /// differs from the active one right after a roll), because `open` learns
    /// [`last_entry_id`](Self::last_entry_id) from it.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<RetentionReport, StorageError> {
        let last_with_data = self.segments.iter().rposition(|s| !s.is_empty());
        let protected = last_with_data.unwrap_or(self.segments.len() - 1);
        let cutoff = self.config.retention_ms.map(|ms| {
            let ms = i64::try_from(ms).unwrap_or(i64::MAX);
            now_ms.saturating_sub(ms)
        });
        let mut deleted = Vec::new();
        let mut bytes_freed = 0;
        let mut total = self.size_bytes();
        while deleted.len() < protected {
            let oldest = &self.segments[0];
            let too_old =
                cutoff.is_some_and(|cutoff| oldest.max_timestamp().is_none_or(|t| t < cutoff));
            let too_big = self
                .config
                .retention_bytes
                .is_some_and(|limit| total > limit);
            let reason = if too_old {
                RetentionReason::Age
            } else if too_big {
                RetentionReason::Size
            } else {
                break;
            };
            oldest.remove_files()?;
            let segment = self.segments.remove(0);
            tracing::info!(
                partition = self.partition,
                path = %segment.path().display(),
                base_offset = segment.base_offset(),
                end_offset = segment.end_offset(),
                ?reason,
                "retention deleted segment"
            );
            total -= segment.size();
            bytes_freed += segment.size();
            deleted.push(DeletedSegment {
                segment: segment.info(false),
                reason,
            });
        }
        if !deleted.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(RetentionReport {
            deleted,
            bytes_freed,
            start_offset: self.start_offset(),
        })
    }

    /// Bytes of segment data files (indexes not counted); what `retention_bytes` limits.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(Segment::size).sum()
    }

    /// The segments, oldest first; the last one is the active segment.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let last = self.segments.len() - 1;
        self.segments
            .iter()
            .enumerate()
            .map(|(i, s)| s.info(i == last))
            .collect()
    }

    /// Deletes every file of the log and the directory (the partition was deleted or
    /// moved away).
    pub fn destroy(self) -> Result<(), StorageError> {
        let dir = self.dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir).map_err(io_err("remove directory", &dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::HEADER_LEN;
    use std::fs::OpenOptions;
    use std::io::Write;

    const P: u32 = 3;

    fn small() -> LogConfig {
        LogConfig {
            segment_size_bytes: 1024,
            retention_bytes: None,
            retention_ms: None,
            index_interval_bytes: 100,
            compression: Compression::None,
        }
    }

    fn rec(i: u64) -> Record {
        Record {
            key: Some(format!("k{i}").into_bytes()),
            value: format!("value-{i}").into_bytes(),
            timestamp_ms: 1_000 + i as i64,
            headers: Vec::new(),
        }
    }

    fn open(dir: &Path, config: LogConfig) -> (PartitionLog, RecoveryReport) {
        PartitionLog::open(dir, P, config).unwrap()
    }

    #[test]
    fn a_log_copied_batch_by_batch_is_identical_and_bad_copies_are_refused() {
        let (src_dir, dst_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (mut src, _) = open(src_dir.path(), small());
        fill(&mut src, 10, 60);
        assert!(src.segments().len() > 2, "the copy must cross segments");
        // The copy starts where the destination ends, in bounded chunks.
        let (mut dst, _) = open(dst_dir.path(), small());
        dst.reset(src.start_offset()).unwrap();
        while dst.end_offset() < src.end_offset() {
            let batches = src.read_raw(dst.end_offset(), 300).unwrap();
            assert!(!batches.is_empty());
            for b in &batches {
                dst.append_raw(b).unwrap();
            }
        }
        assert_eq!(dst.last_entry_id(), src.last_entry_id());
        let all = |log: &PartitionLog| log.read(log.start_offset(), usize::MAX).unwrap();
        assert_eq!(all(&dst), all(&src));
        drop(dst);
        // It survives a reopen, like any log.
        let (dst, _) = open(dst_dir.path(), small());
        assert_eq!(all(&dst), all(&src));

        let other_dir = tempfile::tempdir().unwrap();
        let (mut other, _) = open(other_dir.path(), small());
        let first = src.read_raw(src.start_offset(), 1).unwrap().remove(0);
        let mut flipped = first.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        assert!(matches!(
            other.append_raw(&flipped),
            Err(StorageError::BadCopiedBatch { .. })
        ));
        let second = src.read_raw(1, 1).unwrap().remove(0);
        let err = other.append_raw(&second).unwrap_err().to_string();
        assert!(err.contains("but the log ends at 0"), "{err}");
        other.append_raw(&first).unwrap();
        assert!(matches!(
            other.append_raw(&first),
            Err(StorageError::BadCopiedBatch { .. })
        ));
        assert_eq!(other.end_offset(), 1);
    }

    #[test]
    fn reset_restarts_an_empty_log_at_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), small());
        fill(&mut log, 1, 30);
        log.reset(500).unwrap();
        assert_eq!((log.start_offset(), log.end_offset()), (500, 500));
        assert_eq!(log.last_entry_id(), None);
        drop(log);
        let (log, _) = open(dir.path(), small());
        assert_eq!((log.start_offset(), log.end_offset()), (500, 500));
        assert_eq!(log.segments().len(), 1);
    }

    /// Appends `batches` batches of 1..=4 records with consecutive entry ids starting at
    /// `first_entry`; returns the records in offset order.
    #[test]
    fn reads_in_small_budgets_from_inside_batches_return_every_record_once() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), small());
        let all = fill(&mut log, 1, 60);
        assert!(log.segments().len() > 2, "the read must cross segments");
        // Chunk after chunk from inside a batch: whole batches come back,
        // the first holding `from`, and the records from `from` on are the
        // ones appended, in order, each once.
        let mut from = 5;
        while from < log.end_offset() {
            let batches = log.read_batches(from, 200).unwrap();
            assert!(batches[0].base_offset() <= from && from < batches[0].end_offset());
            let records = log.read(from, 200).unwrap();
            let end = batches.last().unwrap().end_offset();
            assert_eq!(records.last().unwrap().offset + 1, end, "from {from}");
            assert_records(&records, &all[from as usize..end as usize], from);
            from = end;
        }
        // An upper bound cuts inside a batch.
        let batches = log.read_batches(0, usize::MAX).unwrap();
        let mut offsets = Vec::new();
        StoredBatch::for_each_in(&batches, 3, 10, |r| offsets.push(r.offset)).unwrap();
        assert_eq!(offsets, (3..10).collect::<Vec<_>>());
        assert!(matches!(
            log.read_batches(log.end_offset() + 1, 10),
            Err(StorageError::OffsetOutOfRange { .. })
        ));
    }

    fn fill(log: &mut PartitionLog, first_entry: u64, batches: u64) -> Vec<Record> {
        let mut all = Vec::new();
        for b in 0..batches {
            let n = 1 + (b % 4);
            let start = log.end_offset();
            let records: Vec<_> = (start..start + n).map(rec).collect();
            assert_eq!(log.append(first_entry + b, &records).unwrap(), start);
            all.extend(records);
        }
        all
    }

    fn assert_records(got: &[ConsumerRecord], want: &[Record], first_offset: u64) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(g.partition, P);
            assert_eq!(g.offset, first_offset + i as u64);
            assert_eq!(g.key, w.key);
            assert_eq!(g.value, w.value);
            assert_eq!(g.timestamp_ms, w.timestamp_ms);
        }
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }

    fn flip_byte(path: &Path, position: u64) {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[position as usize] ^= 0x55;
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn log_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<PartitionLog>();
        assert_send_sync::<StorageError>();
    }

    #[test]
    fn new_log_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (log, report) = open(dir.path(), LogConfig::default());
        assert_eq!(report.truncated, None);
        assert_eq!(report.end_offset, 0);
        assert_eq!(report.last_entry_id, None);
        assert_eq!(report.segments, 1);
        assert_eq!((log.start_offset(), log.end_offset()), (0, 0));
        assert_eq!(log.last_entry_id(), None);
        assert_eq!(log.size_bytes(), 0);
        assert!(log.read(0, 100).unwrap().is_empty());
        assert!(dir.path().join("00000000000000000000.log").exists());
        assert!(dir.path().join("00000000000000000000.index").exists());
    }

    #[test]
    fn round_trip_keeps_keys_none_empty_some() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), LogConfig::default());
        let records = vec![
            Record {
                key: None,
                value: b"no key".to_vec(),
                timestamp_ms: 5,
                headers: Vec::new(),
            },
            Record {
                key: Some(Vec::new()),
                value: Vec::new(),
                timestamp_ms: -7,
                headers: Vec::new(),
            },
            Record {
                key: Some(b"key".to_vec()),
                value: vec![0xff; 300],
                timestamp_ms: i64::MAX,
                headers: Vec::new(),
            },
        ];
        assert_eq!(log.append(1, &records).unwrap(), 0);
        assert_eq!(log.append(2, &records[..1]).unwrap(), 3);
        assert_eq!(log.end_offset(), 4);
        assert_eq!(log.last_entry_id(), Some(2));
        let got = log.read(0, usize::MAX).unwrap();
        assert_records(&got[..3], &records, 0);
        assert_records(&got[3..], &records[..1], 3);
    }

    #[test]
    fn offsets_contiguous_across_batches_and_rolls() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), small());
        let all = fill(&mut log, 1, 150);
        let segments = log.segments();
        assert!(
            segments.len() > 5,
            "expected several rolls, got {}",
            segments.len()
        );
        for pair in segments.windows(2) {
            assert_eq!(pair[0].end_offset, pair[1].base_offset);
            assert!(!pair[0].active);
            assert!(pair[0].size_bytes <= 1024);
        }
        assert!(segments.last().unwrap().active);
        assert_eq!(segments[0].base_offset, 0);
        assert_eq!(segments.last().unwrap().end_offset, all.len() as u64);
        assert_eq!(
            segments.iter().map(|s| s.record_count).sum::<u64>(),
            all.len() as u64
        );
        assert_eq!(
            log.size_bytes(),
            segments.iter().map(|s| s.size_bytes).sum::<u64>()
        );
        for s in &segments {
            assert_eq!(std::fs::metadata(&s.path).unwrap().len(), s.size_bytes);
        }

        assert_records(&log.read(0, usize::MAX).unwrap(), &all, 0);
        // From every offset, including the middle of batches and segment boundaries.
        for from in 0..all.len() as u64 {
            let got = log.read(from, 1).unwrap();
            assert!(!got.is_empty());
            assert_records(&got, &all[from as usize..from as usize + got.len()], from);
            let rest = log.read(from, usize::MAX).unwrap();
            assert_records(&rest, &all[from as usize..], from);
        }
    }

    #[test]
    fn oversized_batch_gets_its_own_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), small());
        log.append(1, &[rec(0)]).unwrap();
        let big = Record {
            key: None,
            value: vec![7; 5000],
            timestamp_ms: 1,
            headers: Vec::new(),
        };
        assert_eq!(log.append(2, std::slice::from_ref(&big)).unwrap(), 1);
        log.append(3, &[rec(2)]).unwrap();
        let segments = log.segments();
        assert_eq!(
            segments
                .iter()
                .map(|s| (s.base_offset, s.end_offset))
                .collect::<Vec<_>>(),
            vec![(0, 1), (1, 2), (2, 3)]
        );
        assert!(segments[1].size_bytes > 5000);
        assert_eq!(log.read(1, 0).unwrap()[0].value, big.value);
        drop(log);
        let (log, report) = open(dir.path(), small());
        assert_eq!(report.truncated, None);
        assert_eq!(log.read(0, usize::MAX).unwrap().len(), 3);
    }

    #[test]
    fn read_from_middle_of_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), LogConfig::default());
        let records: Vec<_> = (0..10).map(rec).collect();
        log.append(1, &records).unwrap();
        log.append(2, &records[..2]).unwrap();
        let got = log.read(6, usize::MAX).unwrap();
        assert_records(&got[..4], &records[6..], 6);
        assert_records(&got[4..], &records[..2], 10);
    }

    #[test]
    fn max_bytes_takes_whole_batches_and_at_least_one() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), LogConfig::default());
        let batch: Vec<_> = (0..3)
            .map(|_| Record {
                key: None,
                value: vec![1; 10],
                timestamp_ms: 0,
                headers: Vec::new(),
            })
            .collect();
        for entry in 1..=4 {
            log.append(entry, &batch).unwrap();
        }
        let count = |from, max| log.read(from, max).unwrap().len();
        // A batch counts its stored payload (per record: three one-byte
        // varints and the 10 value bytes) plus the per-record wire allowance.
        let b = 3 * (3 + 10 + sluice_proto::limits::RECORD_OVERHEAD_BYTES_MAX);
        assert_eq!(count(0, 0), 3, "first batch always whole");
        assert_eq!(count(0, 1), 3);
        assert_eq!(count(0, b), 3);
        assert_eq!(count(0, 2 * b - 1), 3);
        assert_eq!(count(0, 2 * b), 6);
        assert_eq!(count(0, 1000), 12);
        assert_eq!(count(1, 20), 2, "the rest of the first batch");
        // A first batch entered in the middle still counts whole.
        assert_eq!(count(1, 2 * b - 1), 2);
        assert_eq!(count(1, 2 * b), 5);
        assert_eq!(count(11, 0), 1);
        assert_eq!(count(12, 0), 0);
    }

    #[test]
    fn offset_out_of_range() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), LogConfig::default());
        fill(&mut log, 1, 3);
        let end = log.end_offset();
        assert!(log.read(end, 10).unwrap().is_empty());
        match log.read(end + 1, 10) {
            Err(StorageError::OffsetOutOfRange {
                partition,
                requested,
                start,
                end: e,
            }) => assert_eq!((partition, requested, start, e), (P, end + 1, 0, end)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn entry_ids_must_increase_and_batches_be_non_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), LogConfig::default());
        assert!(matches!(
            log.append(1, &[]),
            Err(StorageError::EmptyBatch { partition: P })
        ));
        log.append(5, &[rec(0)]).unwrap();
        for bad in [5, 3, 0] {
            match log.append(bad, &[rec(1)]) {
                Err(StorageError::EntryIdNotIncreasing {
                    partition: P,
                    entry_id,
                    last_entry_id: 5,
                }) => assert_eq!(entry_id, bad),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(log.end_offset(), 1);
        log.append(9, &[rec(1)]).unwrap();
        drop(log);
        let (mut log, report) = open(dir.path(), LogConfig::default());
        assert_eq!(report.last_entry_id, Some(9));
        assert!(log.append(9, &[rec(2)]).is_err());
        assert_eq!(log.append(10, &[rec(2)]).unwrap(), 2);
    }

    #[test]
    fn reopen_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), small());
        let mut all = fill(&mut log, 1, 60);
        let segments = log.segments();
        log.sync().unwrap();
        drop(log);

        let (mut log, report) = open(dir.path(), small());
        assert_eq!(report.truncated, None);
        assert!(report.rebuilt_indexes.is_empty());
        assert_eq!(report.end_offset, all.len() as u64);
        assert_eq!(report.last_entry_id, Some(60));
        assert_eq!(report.segments, segments.len());
        assert_eq!(log.segments(), segments);
        assert_records(&log.read(0, usize::MAX).unwrap(), &all, 0);

        all.extend(fill(&mut log, 61, 20));
        assert_records(&log.read(0, usize::MAX).unwrap(), &all, 0);
    }

    /// A log whose active segment holds several batches, closed segments before it, and
    /// a last two-record batch whose position is known.
    struct TailSetup {
        all: Vec<Record>,
        active_path: PathBuf,
        /// Byte position and length of the last batch in the active segment.
        position: u64,
        len: u64,
        /// Entry id of the batch before the last one.
        prev_entry_id: u64,
    }

    fn log_with_active_batches(dir: &Path) -> TailSetup {
        let config = LogConfig {
            segment_size_bytes: 600,
            ..small()
        };
        let (mut log, _) = open(dir, config);
        let mut all = fill(&mut log, 1, 20);
        let mut entry = 20;
        // Make sure the active segment has batches and room for the last one.
        loop {
            let active = log.segments().pop().unwrap();
            if active.size_bytes > 0 && active.size_bytes + 150 <= 600 {
                break;
            }
            entry += 1;
            let r = rec(log.end_offset());
            log.append(entry, std::slice::from_ref(&r)).unwrap();
            all.push(r);
        }
        assert!(log.segments().len() >= 2);
        let before = log.segments().pop().unwrap().size_bytes;
        let last = vec![rec(all.len() as u64), rec(all.len() as u64 + 1)];
        log.append(entry + 1, &last).unwrap();
        all.extend(last);
        let active = log.segments().pop().unwrap();
        assert!(
            active.size_bytes > before,
            "last batch must land in the same segment"
        );
        TailSetup {
            all,
            active_path: active.path,
            position: before,
            len: active.size_bytes - before,
            prev_entry_id: entry,
        }
    }

    #[test]
    fn truncated_tail_at_every_byte_of_last_batch() {
        let template = tempfile::tempdir().unwrap();
        let TailSetup {
            all,
            active_path,
            position,
            len,
            prev_entry_id,
        } = log_with_active_batches(template.path());
        let file_name = active_path.file_name().unwrap().to_owned();
        let kept = all.len() - 2;
        for cut in position..position + len {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(template.path(), dir.path());
            let path = dir.path().join(&file_name);
            OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(cut)
                .unwrap();

            let (mut log, report) = open(dir.path(), small());
            if cut == position {
                assert_eq!(report.truncated, None);
            } else {
                let tail = report.truncated.expect("torn batch must be cut");
                assert_eq!(tail.path, path);
                assert_eq!(tail.position, position);
                assert_eq!(tail.bytes_removed, cut - position);
                let short = cut - position < HEADER_LEN as u64;
                assert!(
                    matches!(
                        (short, &tail.reason),
                        (true, Defect::ShortHeader { .. }) | (false, Defect::ShortPayload { .. })
                    ),
                    "cut {cut}: {:?}",
                    tail.reason
                );
            }
            assert_eq!(std::fs::metadata(&path).unwrap().len(), position);
            assert_eq!(report.end_offset, kept as u64);
            assert_eq!(report.last_entry_id, Some(prev_entry_id));
            assert_records(&log.read(0, usize::MAX).unwrap(), &all[..kept], 0);
            assert_eq!(
                log.append(prev_entry_id + 1, &[rec(99)]).unwrap(),
                kept as u64
            );
            assert_eq!(log.read(kept as u64, 1).unwrap()[0].value, rec(99).value);
        }
    }

    #[test]
    fn flipped_payload_byte_cuts_exactly_that_batch() {
        let template = tempfile::tempdir().unwrap();
        let TailSetup {
            all,
            active_path,
            position,
            len,
            prev_entry_id,
        } = log_with_active_batches(template.path());
        let file_name = active_path.file_name().unwrap().to_owned();
        for flip in [
            position + HEADER_LEN as u64,
            position + len - 1,
            position + 4,
            position + 8,
            position + 20,
        ] {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(template.path(), dir.path());
            let path = dir.path().join(&file_name);
            flip_byte(&path, flip);
            let (mut log, report) = open(dir.path(), small());
            let tail = report.truncated.expect("damaged batch must be cut");
            assert!(
                matches!(tail.reason, Defect::CrcMismatch { .. }),
                "{:?}",
                tail.reason
            );
            assert_eq!((tail.position, tail.bytes_removed), (position, len));
            let kept = all.len() - 2;
            assert_eq!(log.end_offset(), kept as u64);
            assert_eq!(log.last_entry_id(), Some(prev_entry_id));
            assert_records(&log.read(0, usize::MAX).unwrap(), &all[..kept], 0);
            assert_eq!(
                log.append(prev_entry_id + 1, &[rec(1)]).unwrap(),
                kept as u64
            );
        }
    }

    #[test]
    fn damage_earlier_in_active_segment_cuts_from_there() {
        let dir = tempfile::tempdir().unwrap();
        let TailSetup {
            all, active_path, ..
        } = log_with_active_batches(dir.path());
        let active_base = all.len() as u64
            - open(dir.path(), small())
                .0
                .segments()
                .last()
                .unwrap()
                .record_count;
        // Damage the first batch of the active segment: everything in it goes.
        flip_byte(&active_path, HEADER_LEN as u64 + 1);
        let (log, report) = open(dir.path(), small());
        let tail = report.truncated.unwrap();
        assert_eq!(tail.position, 0);
        assert_eq!(log.end_offset(), active_base);
        assert_records(
            &log.read(0, usize::MAX).unwrap(),
            &all[..active_base as usize],
            0,
        );
        // The entry id comes from the closed segment before.
        assert!(log.last_entry_id().is_some());
    }

    #[test]
    fn garbage_and_misplaced_batches_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), LogConfig::default());
        fill(&mut log, 1, 3);
        let end = log.end_offset();
        let path = log.segments()[0].path.clone();
        let size = log.size_bytes();
        drop(log);

        let append_raw = |bytes: &[u8]| {
            let mut f = OpenOptions::new().append(true).open(&path).unwrap();
            f.write_all(bytes).unwrap();
        };
        let reopen = || {
            let (log, report) = open(dir.path(), LogConfig::default());
            assert_eq!(log.end_offset(), end);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
            report.truncated.unwrap().reason
        };

        append_raw(&[0u8; 100]);
        assert!(matches!(reopen(), Defect::BadMagic { .. }));

        // A well-formed batch at the wrong offset.
        append_raw(&batch::encode(end + 5, 10, &[rec(0)], Compression::None).unwrap());
        assert_eq!(
            reopen(),
            Defect::NonContiguousOffset {
                expected: end,
                found: end + 5
            }
        );

        // A well-formed batch whose entry id goes backwards.
        append_raw(&batch::encode(end, 2, &[rec(0)], Compression::None).unwrap());
        assert_eq!(
            reopen(),
            Defect::EntryIdNotIncreasing {
                previous: 3,
                found: 2
            }
        );
    }

    #[test]
    fn missing_or_bad_index_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), small());
        let all = fill(&mut log, 1, 60);
        let segments = log.segments();
        drop(log);
        let index_of = |s: &SegmentInfo| s.path.with_extension("index");
        let originals: Vec<Vec<u8>> = segments
            .iter()
            .map(|s| std::fs::read(index_of(s)).unwrap())
            .collect();

        std::fs::remove_file(index_of(&segments[0])).unwrap();
        std::fs::write(index_of(&segments[1]), b"garbage, not a multiple of 16").unwrap();
        std::fs::write(index_of(&segments[2]), vec![0xab; 32]).unwrap();
        std::fs::remove_file(index_of(segments.last().unwrap())).unwrap();

        let (log, report) = open(dir.path(), small());
        assert_eq!(report.truncated, None);
        assert_eq!(
            report.rebuilt_indexes,
            segments[..3].iter().map(index_of).collect::<Vec<_>>()
        );
        for (s, original) in segments.iter().zip(&originals) {
            assert_eq!(
                &std::fs::read(index_of(s)).unwrap(),
                original,
                "{}",
                s.path.display()
            );
        }
        assert_eq!(log.segments(), segments);
        for from in 0..all.len() as u64 {
            assert_eq!(log.read(from, 1).unwrap()[0].offset, from);
        }
        drop(log);
        let (_, report) = open(dir.path(), small());
        assert!(report.rebuilt_indexes.is_empty());
    }

    #[test]
    fn orphan_index_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), small());
        fill(&mut log, 1, 3);
        drop(log);
        let orphan = dir.path().join("00000000000000099999.index");
        std::fs::write(&orphan, [0u8; 16]).unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"left alone").unwrap();
        let (_, report) = open(dir.path(), small());
        assert_eq!(report.removed_orphans, vec![orphan.clone()]);
        assert!(!orphan.exists());
        assert!(dir.path().join("notes.txt").exists());
    }

    #[test]
    fn corrupt_closed_segment_is_reported_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), small());
        let all = fill(&mut log, 1, 60);
        let first = log.segments()[0].clone();
        drop(log);
        // Damage the payload of the first batch of the first (closed) segment.
        flip_byte(&first.path, HEADER_LEN as u64 + 2);
        let (log, report) = open(dir.path(), small());
        assert_eq!(report.truncated, None, "closed segments are never cut");
        assert_eq!(log.end_offset(), all.len() as u64);
        match log.read(0, usize::MAX) {
            Err(StorageError::Corrupt {
                path,
                position,
                reason,
            }) => {
                assert_eq!(path, first.path);
                assert_eq!(position, 0);
                assert!(matches!(reason, Defect::CrcMismatch { .. }));
            }
            other => panic!("unexpected {other:?}"),
        }
        // Data after the damage is still served.
        let later = first.end_offset;
        assert_eq!(log.read(later, 1).unwrap()[0].offset, later);
    }

    #[test]
    fn verify_finds_damage_that_open_trusts_in_a_closed_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), small());
        let all = fill(&mut log, 1, 60);
        let segments = log.segments();
        assert!(segments.len() > 3);
        assert_eq!(log.verify().unwrap(), VerifyReport::default());
        drop(log);
        // A bit in the middle of the second (closed) segment: `open` checks
        // only its ends, so it does not see it.
        let damaged = &segments[1];
        flip_byte(&damaged.path, damaged.size_bytes / 2);
        let (mut log, report) = open(dir.path(), small());
        assert_eq!(report.truncated, None);
        assert_eq!(log.end_offset(), all.len() as u64);
        let found = log.verify().unwrap().damage.expect("the damage is found");
        assert_eq!(found.path, damaged.path);
        assert!(
            (damaged.base_offset..damaged.end_offset).contains(&found.offset),
            "{found:?} outside {damaged:?}"
        );
        assert!(found.position <= damaged.size_bytes / 2, "{found:?}");
        // A read from there indeed fails, and one before it does not.
        assert!(log.read(found.offset, usize::MAX).is_err());
        assert!(log.read(damaged.base_offset, 1).is_ok() || found.offset == damaged.base_offset);

        // A segment cut short leaves offsets without a batch before the next
        // segment.
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), small());
        fill(&mut log, 1, 60);
        let first = log.segments()[0].clone();
        drop(log);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&first.path)
            .unwrap();
        file.set_len(first.size_bytes / 2).unwrap();
        let (mut log, _) = open(dir.path(), small());
        let found = log.verify().unwrap().damage.expect("the cut is found");
        assert_eq!(found.path, first.path);
        assert!(found.offset < first.end_offset, "{found:?}");
    }

    #[test]
    fn verify_rewrites_an_index_entry_that_open_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), small());
        let all = fill(&mut log, 1, 60);
        let first = log.segments()[0].clone();
        drop(log);
        let index_path = first.path.with_extension("index");
        let original = std::fs::read(&index_path).unwrap();
        assert!(original.len() >= 3 * 16, "the index needs a middle entry");
        // Entry 1 claims its batch starts one offset later: still in order,
        // so `open` keeps the index, and a read through that entry fails.
        let entry =
            |b: &[u8], i: usize| u32::from_le_bytes(b[i * 16..i * 16 + 4].try_into().unwrap());
        assert!(entry(&original, 1) + 1 < entry(&original, 2));
        let mut bad = original.clone();
        bad[16..20].copy_from_slice(&(entry(&original, 1) + 1).to_le_bytes());
        std::fs::write(&index_path, &bad).unwrap();
        let (mut log, report) = open(dir.path(), small());
        assert!(report.rebuilt_indexes.is_empty(), "open trusts it");
        let through_bad_entry = u64::from(entry(&original, 1)) + 1;
        assert!(log.read(through_bad_entry, 1).is_err());

        let report = log.verify().unwrap();
        assert_eq!(report.damage, None);
        assert_eq!(report.rebuilt_indexes, vec![index_path.clone()]);
        assert_eq!(std::fs::read(&index_path).unwrap(), original);
        for from in 0..all.len() as u64 {
            assert_eq!(log.read(from, 1).unwrap()[0].offset, from);
        }
        assert_eq!(log.verify().unwrap(), VerifyReport::default());
    }

    #[test]
    fn retention_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            retention_bytes: Some(3000),
            ..small()
        };
        let (mut log, _) = open(dir.path(), config.clone());
        let all = fill(&mut log, 1, 120);
        let before = log.segments();
        let total = log.size_bytes();
        assert!(total > 3000);

        let report = log.enforce_retention(0).unwrap();
        assert!(!report.deleted.is_empty());
        assert!(
            report
                .deleted
                .iter()
                .all(|d| d.reason == RetentionReason::Size)
        );
        let deleted: Vec<_> = report.deleted.iter().map(|d| d.segment.clone()).collect();
        assert_eq!(deleted, before[..deleted.len()]);
        assert_eq!(
            report.bytes_freed,
            deleted.iter().map(|s| s.size_bytes).sum::<u64>()
        );
        assert!(log.size_bytes() <= 3000);
        assert!(
            log.size_bytes() + deleted.last().unwrap().size_bytes > 3000,
            "deleted only what was needed"
        );
        assert!(
            deleted
                .iter()
                .all(|s| !s.path.exists() && !s.path.with_extension("index").exists())
        );

        let start = log.start_offset();
        assert_eq!(report.start_offset, start);
        assert_eq!(start, deleted.last().unwrap().end_offset);
        assert!(matches!(
            log.read(0, 10),
            Err(StorageError::OffsetOutOfRange { start: s, .. }) if s == start
        ));
        assert_records(
            &log.read(start, usize::MAX).unwrap(),
            &all[start as usize..],
            start,
        );
        assert!(log.enforce_retention(0).unwrap().deleted.is_empty());

        drop(log);
        let (log, _) = open(dir.path(), config);
        assert_eq!(log.start_offset(), start);
        assert_eq!(log.end_offset(), all.len() as u64);
    }

    #[test]
    fn retention_by_age_deletes_old_prefix_but_never_active() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            retention_ms: Some(1_000),
            ..small()
        };
        let (mut log, _) = open(dir.path(), config);
        let value = vec![0u8; 400];
        let mut entry = 0;
        let mut put = |log: &mut PartitionLog, ts: i64| {
            entry += 1;
            log.append(
                entry,
                &[Record {
                    key: None,
                    value: value.clone(),
                    timestamp_ms: ts,
                    headers: Vec::new(),
                }],
            )
            .unwrap();
        };
        // Two batches per segment: segments [100,200] [300,10_000] [400,500] [600]
        for ts in [100, 200, 300, 10_000, 400, 500, 600] {
            put(&mut log, ts);
        }
        let before = log.segments();
        assert_eq!(before.len(), 4);
        assert_eq!(
            before
                .iter()
                .map(|s| s.max_timestamp_ms)
                .collect::<Vec<_>>(),
            vec![Some(200), Some(10_000), Some(500), Some(600)]
        );

        // Cutoff 550: the first segment is old; the second is not (10_000) and blocks
        // the third even though it is old; the active one is never deleted.
        let report = log.enforce_retention(1_550).unwrap();
        assert_eq!(report.deleted.len(), 1);
        assert_eq!(report.deleted[0].reason, RetentionReason::Age);
        assert_eq!(report.deleted[0].segment.base_offset, 0);
        assert_eq!(report.start_offset, 2);

        let report = log.enforce_retention(100_000).unwrap();
        assert_eq!(report.deleted.len(), 2);
        assert_eq!(log.segments().len(), 1);
        assert_eq!(log.start_offset(), 6);
        assert_eq!(log.read(6, 10).unwrap().len(), 1);

        // Max timestamps survive a reopen (they come from the index).
        drop(log);
        let (log, _) = open(dir.path(), small());
        assert_eq!(log.segments()[0].max_timestamp_ms, Some(600));
    }

    #[test]
    fn empty_active_segment_after_crash_during_roll() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), small());
        let all = fill(&mut log, 1, 10);
        let end = log.end_offset();
        drop(log);
        // A roll created the next segment, then the process died before writing to it.
        std::fs::File::create(dir.path().join(format!("{end:020}.log"))).unwrap();
        let config = LogConfig {
            retention_bytes: Some(0),
            ..small()
        };
        let (mut log, report) = open(dir.path(), config);
        assert_eq!(report.truncated, None);
        assert_eq!(report.last_entry_id, Some(10));
        assert_eq!(log.end_offset(), end);
        assert_eq!(log.segments().last().unwrap().size_bytes, 0);
        assert_records(&log.read(0, usize::MAX).unwrap(), &all, 0);
        // Retention keeps the segment holding the last batch.
        log.enforce_retention(0).unwrap();
        drop(log);
        let (mut log, report) = open(dir.path(), small());
        assert_eq!(report.last_entry_id, Some(10));
        assert_eq!(log.append(11, &[rec(end)]).unwrap(), end);
    }

    #[test]
    fn destroy_removes_the_directory() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("topic-0");
        let (mut log, _) = open(&dir, small());
        fill(&mut log, 1, 30);
        assert!(log.segments().len() > 1);
        log.destroy().unwrap();
        assert!(!dir.exists());
    }

    /// Records alike enough to compress well, as real ones usually are.
    fn text(i: u64) -> Record {
        Record {
            key: i
                .is_multiple_of(3)
                .then(|| format!("user-{}", i % 10).into_bytes()),
            value: format!(
                "{{\"event\":\"click\",\"page\":\"/items/{}\",\"n\":{i}}}",
                i % 50
            )
            .into_bytes(),
            timestamp_ms: 5_000 + i as i64,
            headers: Vec::new(),
        }
    }

    #[test]
    fn compressed_logs_read_back_recover_copy_and_take_less_disk() {
        let plain_dir = tempfile::tempdir().unwrap();
        let (mut plain, _) = open(plain_dir.path(), LogConfig::default());
        let batches: Vec<Vec<Record>> = (0..40u64)
            .map(|b| (0..50).map(|i| text(b * 50 + i)).collect())
            .collect();
        for (i, b) in batches.iter().enumerate() {
            plain.append(i as u64 + 1, b).unwrap();
        }
        let expected = plain.read(0, usize::MAX).unwrap();
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let config = LogConfig {
                compression: codec,
                segment_size_bytes: 16 * 1024,
                ..LogConfig::default()
            };
            let dir = tempfile::tempdir().unwrap();
            let (mut log, _) = open(dir.path(), config.clone());
            for (i, b) in batches.iter().enumerate() {
                log.append(i as u64 + 1, b).unwrap();
            }
            assert_eq!(log.read(0, usize::MAX).unwrap(), expected, "{codec}");
            // A read from the middle of a batch, under a small budget, starts there.
            assert_eq!(log.read(1234, 1).unwrap()[0], expected[1234], "{codec}");
            assert!(
                log.size_bytes() * 2 < plain.size_bytes(),
                "{codec}: {} stored against {} uncompressed",
                log.size_bytes(),
                plain.size_bytes()
            );
            // Reopened: the active segment is scanned, records checked.
            drop(log);
            let (mut log, report) = open(dir.path(), config.clone());
            assert!(report.truncated.is_none(), "{codec}: {report:?}");
            assert_eq!(log.read(0, usize::MAX).unwrap(), expected, "{codec}");
            assert!(log.verify().unwrap().damage.is_none(), "{codec}");
            // Copied byte for byte to a replica that stores uncompressed:
            // the copy keeps the compressed batches and reads the same.
            let copy_dir = tempfile::tempdir().unwrap();
            let (mut copy, _) = open(copy_dir.path(), LogConfig::default());
            let mut from = 0;
            while from < log.end_offset() {
                for raw in log.read_raw(from, 64 * 1024).unwrap() {
                    from = copy.append_raw(&raw).unwrap();
                }
            }
            assert_eq!(copy.read(0, usize::MAX).unwrap(), expected, "{codec}");
        }
    }

    #[test]
    fn a_compressed_batch_that_does_not_expand_is_corruption_named_by_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            compression: Compression::Lz4,
            ..LogConfig::default()
        };
        let (mut log, _) = open(dir.path(), config);
        log.append(1, &(0..20).map(text).collect::<Vec<_>>())
            .unwrap();
        // A batch with a valid CRC whose payload names a codec that does not
        // exist: written by nothing, but found on disk it must not panic.
        let mut raw = log.read_raw(0, usize::MAX).unwrap().remove(0);
        raw[16..24].copy_from_slice(&2u64.to_le_bytes());
        raw[8..16].copy_from_slice(&20u64.to_le_bytes());
        raw[batch::HEADER_LEN] = 200;
        let crc = {
            let mut h = crc32fast::Hasher::new();
            h.update(&raw[8..]);
            h.finalize()
        };
        raw[4..8].copy_from_slice(&crc.to_le_bytes());
        log.append_raw(&raw).unwrap_err();
        // append_raw checks the records too; so does a read of a log that has one.
        let seg = log.segments().last().unwrap().path.clone();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&seg)
            .unwrap()
            .write_all(&raw)
            .unwrap();
        drop(log);
        let (log, report) = open(dir.path(), LogConfig::default());
        let tail = report.truncated.expect("the bad batch is cut at open");
        assert!(
            matches!(
                tail.reason,
                Defect::Compression {
                    detail: "unknown codec"
                }
            ),
            "{:?}",
            tail.reason
        );
        assert_eq!(log.end_offset(), 20);
    }
}
