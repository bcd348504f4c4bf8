//! Records as producers send them and consumers receive them.
//!
//! Keys and values are encoded as byte strings (`serde_bytes`): one length
//! and one copy, instead of serde's default of one element per byte.

use serde::{Deserialize, Serialize};

/// One record as a producer hands it over: the offset is not known yet, it is
/// assigned when the partition applies the committed Raft entry that carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Optional key; records with the same key go to the same partition.
    #[serde(with = "serde_bytes")]
    pub key: Option<Vec<u8>>,
    /// The payload.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Milliseconds since the Unix epoch, set by the producer.
    pub timestamp_ms: i64,
}

impl Record {
    /// A record with no key, stamped with the current wall-clock time.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Self {
            key: None,
            value: value.into(),
            timestamp_ms: now_ms(),
        }
    }

    /// A keyed record, stamped with the current wall-clock time.
    pub fn with_key(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            key: Some(key.into()),
            value: value.into(),
            timestamp_ms: now_ms(),
        }
    }

    /// Bytes this record counts against size limits (key + value).
    pub fn size_bytes(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len) + self.value.len()
    }
}

/// A record read back from a partition: what the consumer sees.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerRecord {
    pub partition: u32,
    pub offset: u64,
    #[serde(with = "serde_bytes")]
    pub key: Option<Vec<u8>>,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    pub timestamp_ms: i64,
}

impl ConsumerRecord {
    /// The record as a [`ConsumerRecordRef`], for encoding with borrowed ones.
    pub fn borrowed(&self) -> ConsumerRecordRef<'_> {
        ConsumerRecordRef {
            partition: self.partition,
            offset: self.offset,
            key: self.key.as_deref(),
            value: &self.value,
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// A [`ConsumerRecord`] borrowing its bytes (from a stored batch, or from a
/// received frame). It serializes exactly like one, so a node encodes records
/// read from its log without first copying each into a record of its own,
/// and a consumer can read them where the frame holds them
/// ([`crate::codec::decode_records_ref`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerRecordRef<'a> {
    pub partition: u32,
    pub offset: u64,
    #[serde(with = "serde_bytes", borrow)]
    pub key: Option<&'a [u8]>,
    #[serde(with = "serde_bytes", borrow)]
    pub value: &'a [u8],
    pub timestamp_ms: i64,
}

impl ConsumerRecordRef<'_> {
    /// An owned copy.
    pub fn to_owned_record(&self) -> ConsumerRecord {
        ConsumerRecord {
            partition: self.partition,
            offset: self.offset,
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.to_vec(),
            timestamp_ms: self.timestamp_ms,
        }
    }

    /// Bytes this record counts against size limits (key + value).
    pub fn size_bytes(&self) -> usize {
        self.key.map_or(0, <[u8]>::len) + self.value.len()
    }
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
