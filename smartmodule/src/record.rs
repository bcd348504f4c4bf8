//! Records as a SmartModule sees them.
//!
//! `Record` has public `key` and `value` fields *and* accessor methods, so code written
//! against either style of Fluvio's SDK (`record.value.as_ref()`, `record.key.clone()`,
//! `record.value()`) compiles unchanged.

use std::fmt;

/// The bytes of a key or a value.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct RecordData(Vec<u8>);

impl RecordData {
    /// The bytes as UTF-8, if they are.
    pub fn as_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.0)
    }

    /// The bytes as UTF-8, with invalid sequences replaced.
    pub fn as_utf8_lossy_string(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The owned bytes.
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

impl AsRef<[u8]> for RecordData {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for RecordData {
    fn from(v: Vec<u8>) -> Self {
        Self(v)
    }
}

impl From<&[u8]> for RecordData {
    fn from(v: &[u8]) -> Self {
        Self(v.to_vec())
    }
}

impl From<String> for RecordData {
    fn from(v: String) -> Self {
        Self(v.into_bytes())
    }
}

impl From<&str> for RecordData {
    fn from(v: &str) -> Self {
        Self(v.as_bytes().to_vec())
    }
}

impl From<RecordData> for Vec<u8> {
    fn from(v: RecordData) -> Self {
        v.0
    }
}

impl fmt::Debug for RecordData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) => write!(f, "{s:?}"),
            Err(_) => write!(f, "{:?}", self.0),
        }
    }
}

/// One record of the stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// Optional key.
    pub key: Option<RecordData>,
    /// Value.
    pub value: RecordData,
    offset: i64,
    timestamp: i64,
}

/// Fluvio's newer SDK names the argument type `SmartModuleRecord`; both names work here.
pub type SmartModuleRecord = Record;

impl Record {
    /// A record at `offset` with `timestamp` (milliseconds since the Unix epoch), e.g. for tests.
    pub fn new(
        offset: i64,
        timestamp: i64,
        key: Option<RecordData>,
        value: impl Into<RecordData>,
    ) -> Self {
        Self {
            key,
            value: value.into(),
            offset,
            timestamp,
        }
    }

    /// Overwrites this record with `raw`, reusing its buffers.
    pub(crate) fn refill(&mut self, raw: &crate::abi::RawRecord<'_>) {
        self.offset = raw.offset;
        self.timestamp = raw.timestamp;
        self.value.0.clear();
        self.value.0.extend_from_slice(raw.value);
        match (raw.key, &mut self.key) {
            (None, key) => *key = None,
            (Some(new), Some(key)) => {
                key.0.clear();
                key.0.extend_from_slice(new);
            }
            (Some(new), key @ None) => *key = Some(RecordData::from(new)),
        }
    }

    /// The key, if any.
    pub fn key(&self) -> Option<&RecordData> {
        self.key.as_ref()
    }

    /// The value.
    pub fn value(&self) -> &RecordData {
        &self.value
    }

    /// Offset of the record in its partition.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// Timestamp in milliseconds since the Unix epoch.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }
}
