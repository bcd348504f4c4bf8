//! A log-linear histogram with the API openraft 0.10 compiles against.
//!
//! Why this exists: openraft 0.10.0-alpha.37 creates a few histograms in every
//! `Raft::new` (runtime statistics, kept even with its `runtime-stats` feature
//! off). The crates.io `base2histogram` 0.2.3 builds, on first use, lookup
//! tables for all sixteen bucket widths it supports: 26.8 MB written once per
//! process, 24 MB of a Sluice node's ~58 MB idle RSS, although only one width
//! (a few KB) is ever used. This crate replaces it through `[patch.crates-io]`
//! in the workspace manifest. It is written for Sluice, not copied: it keeps
//! the public names and signatures openraft uses (`Histogram`, `record`,
//! `record_n`, `percentile_stats`, `PercentileStats`, `AsciiChart`) and
//! computes bucket indices arithmetically, so it needs no tables at all, and a
//! histogram allocates its buckets only once it records a value.
//!
//! Bucketing: values below [`LINEAR_LIMIT`] get a bucket each; above, each
//! power of two is split into [`SUB_BUCKETS`] equal parts, so a reported
//! percentile is the lower bound of a bucket at most 25% narrower than the
//! value it stands for.
//!
//! Remove this crate (and the patch entry) once upstream builds its tables
//! lazily or openraft stops creating histograms it does not expose.

mod chart;
mod histogram;

pub use chart::{AsciiChart, DetailedChart};
pub use histogram::{Histogram, PercentileStats};

/// Number of sub-buckets each power of two above the linear range is split
/// into (2 bits of precision after the leading one).
pub const SUB_BUCKETS: u64 = 4;

/// Values below this get one bucket each.
pub const LINEAR_LIMIT: u64 = 2 * SUB_BUCKETS;
