//! The one error type of the storage crate, and the description of a damaged batch.
//!
//! Every variant carries what the caller needs to act on it or to tell an operator
//! where to look: the partition for requests that were refused, the file and byte
//! position for damage found on disk, the path and the operation for I/O failures.
//! There is deliberately no catch-all string variant: a new failure mode gets its own
//! variant so callers can match on it.

use std::io;
use std::path::{Path, PathBuf};

/// Why a batch on disk cannot be used.
///
/// The same description serves two purposes: at open, a defect in the active segment
/// marks where the torn tail starts (and it is cut off there); while reading, a defect
/// is reported to the caller inside [`StorageError::Corrupt`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Defect {
    /// Fewer bytes than a batch header remain before the end of the data.
    #[error("short header: {available} of {needed} header bytes present")]
    ShortHeader { available: u64, needed: u64 },
    /// The header announces more payload than the file holds.
    #[error("short payload: {available} of {needed} payload bytes present")]
    ShortPayload { available: u64, needed: u64 },
    /// The header does not start with the batch magic: not a batch boundary, or garbage.
    #[error("bad magic {found:02x?}")]
    BadMagic { found: [u8; 3] },
    /// A batch written by a format this code does not understand.
    #[error("unsupported batch format version {found}")]
    UnsupportedVersion { found: u8 },
    /// Header fields or payload do not match the stored checksum.
    #[error("crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    /// The batch does not start where the previous one ended.
    #[error("non-contiguous offsets: expected base offset {expected}, found {found}")]
    NonContiguousOffset { expected: u64, found: u64 },
    /// Entry ids must strictly increase from batch to batch.
    #[error("entry id {found} does not follow previous entry id {previous}")]
    EntryIdNotIncreasing { previous: u64, found: u64 },
    /// A batch header announcing zero records (never written by this code).
    #[error("batch has no records")]
    EmptyBatch,
    /// Base offset plus record count does not fit in 64 bits.
    #[error("offset overflow: base offset {base_offset} + {record_count} records")]
    OffsetOverflow { base_offset: u64, record_count: u32 },
    /// The checksum matched but the record encoding inside the payload is inconsistent.
    #[error("malformed payload: {detail}")]
    MalformedPayload { detail: &'static str },
    /// A compressed batch (format 2) whose payload cannot be expanded: an
    /// unknown codec, data its codec refuses, or a length other than stated.
    #[error("compressed payload: {detail}")]
    Compression { detail: &'static str },
    /// A closed segment ends before (or after) the offset the next segment starts at,
    /// so some offsets have no batch.
    #[error("segment ends at offset {segment_end} but the next segment starts at {next_base}")]
    SegmentGap { segment_end: u64, next_base: u64 },
}

/// Errors returned by the storage crate.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An operating-system call failed; `op` says which step (open, read, fsync, ...).
    #[error("I/O error during {op} of {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A read asked for an offset that is not stored: either already removed by
    /// retention (`requested < start`) or not written yet (`requested > end`).
    #[error(
        "offset {requested} out of range for partition {partition}: stored offsets are {start}..{end}"
    )]
    OffsetOutOfRange {
        partition: u32,
        requested: u64,
        start: u64,
        end: u64,
    },

    /// A batch that should be intact (in a closed segment, or below the recovered end
    /// of the active one) is damaged. The location lets an operator inspect the file.
    #[error("corrupt batch in {} at byte {position}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: Defect,
    },

    /// `append` was called with an entry id that is not above the last stored one:
    /// the write is already in the log (or the caller is confused about ordering).
    #[error(
        "entry id {entry_id} is not above last entry id {last_entry_id} of partition {partition}"
    )]
    EntryIdNotIncreasing {
        partition: u32,
        entry_id: u64,
        last_entry_id: u64,
    },

    /// `append` was called with no records; a batch always holds at least one.
    #[error("empty batch appended to partition {partition}")]
    EmptyBatch { partition: u32 },

    /// The encoded batch does not fit the on-disk format (payload length and record
    /// count are 32-bit).
    #[error(
        "batch for partition {partition} too large: {size} bytes / {records} records (limit {limit} bytes)"
    )]
    BatchTooLarge {
        partition: u32,
        size: u64,
        records: usize,
        limit: u64,
    },

    /// A batch copied from another replica does not continue this log, or is
    /// damaged: nothing was written.
    #[error("copied batch rejected by partition {partition}: {reason}")]
    BadCopiedBatch { partition: u32, reason: String },

    /// Assigning offsets to the batch would overflow 64 bits.
    #[error(
        "offset overflow in partition {partition}: end offset {end_offset} + {records} records"
    )]
    OffsetOverflow {
        partition: u32,
        end_offset: u64,
        records: usize,
    },
}

impl StorageError {
    /// Wraps an `io::Error` with the file it concerns and the step that failed.
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        StorageError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Shorthand for mapping I/O results: `file.sync_data().map_err(io_err("fsync", &path))`.
pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> StorageError + 'a {
    move |source| StorageError::io(op, path, source)
}
