//! Records as the engine exchanges them with its callers, and their ABI encoding.
//!
//! A plain struct of the engine's own rather than a wire type: the engine does not depend
//! on the protocol crate, and callers convert at their edge.

use sluice_smartmodule::abi::{Encoder, RawRecord};

/// A record going into or coming out of a module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// Offset in the partition; outputs keep the offset of the input they came from.
    pub offset: i64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Optional key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Vec<u8>,
}

/// A record given to [`Instance::process`](crate::Instance::process).
pub type InputRecord = Record;
/// A record returned by [`Instance::process`](crate::Instance::process).
pub type OutputRecord = Record;

impl Record {
    /// A record with no key.
    pub fn new(offset: i64, timestamp_ms: i64, value: impl Into<Vec<u8>>) -> Self {
        Self {
            offset,
            timestamp_ms,
            key: None,
            value: value.into(),
        }
    }

    /// The same record with `key`.
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The record borrowed as the ABI encodes it.
    pub fn raw(&self) -> RawRecord<'_> {
        RawRecord {
            offset: self.offset,
            timestamp: self.timestamp_ms,
            key: self.key.as_deref(),
            value: &self.value,
        }
    }

    pub(crate) fn from_raw(r: &RawRecord<'_>) -> Self {
        Self {
            offset: r.offset,
            timestamp_ms: r.timestamp,
            key: r.key.map(<[u8]>::to_vec),
            value: r.value.to_vec(),
        }
    }
}

/// Encodes a batch, preceded by the aggregate's accumulator if there is one.
pub(crate) fn encode_batch(accumulator: Option<&[u8]>, records: &[RawRecord<'_>]) -> Vec<u8> {
    let size: usize = records
        .iter()
        .map(|r| 8 + 8 + 1 + 4 + r.key.map_or(0, |k| k.len() + 4) + r.value.len())
        .sum();
    let mut e = Encoder::with_capacity(size + 8 + accumulator.map_or(0, <[u8]>::len));
    if let Some(acc) = accumulator {
        e.bytes(acc);
    }
    e.count(records.len());
    for r in records {
        e.record(*r);
    }
    e.finish()
}
