//! Sluice partition storage: an append-only log of record batches per partition,
//! split into segment files with a sparse offset index and a CRC per batch.
//!
//! This crate knows only files and records. Replication, networking and transforms
//! live elsewhere; the one hook for them is the `entry_id` stored with each batch, an
//! opaque increasing id (the replicated-log index of the write) that lets the caller
//! find out after a crash which writes already reached the log.
//!
//! Layout of a partition directory:
//!
//! ```text
//! 00000000000000000000.log     batches with offsets 0..N
//! 00000000000000000000.index   sparse index: relative offset -> byte position
//! 0000000000000000000N.log     next segment, named by its base offset
//! 0000000000000000000N.index
//! ```
//!
//! The batch format is described in `batch.rs`, the index format in `index.rs`.

mod batch;
pub mod durability;
mod error;
#[cfg(test)]
mod fuzz_tests;
mod index;
mod log;
mod pread;
mod segment;

pub use batch::{RecordRef, StoredBatch};
pub use error::{Defect, StorageError};
pub use log::{
    DamagedBatch, DeletedSegment, LogConfig, PartitionLog, RecoveryReport, RetentionReason,
    RetentionReport, SegmentInfo, SyncPoint, TruncatedTail, VerifyReport,
};
