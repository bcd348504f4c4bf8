//! Records as a SmartModule sees them.
//!
//! `Record` has public `key` and `value` fields *and* accessor methods, so code written
//! against either style of Fluvio's SDK (`record.value.as_ref()`, `record.key.clone()`,
//! `record.value()`) compiles unchanged.

use std::fmt;

/// The bytes of a key or a value.
///
/// Inside a batch call, the key and value of the record handed to the module
/// are *lent*: they point into the batch the host wrote into the module's
/// memory, so reading a record copies nothing (a 1 KiB value would otherwise
/// be copied once more than it is scanned). Cloning lent bytes copies them
/// into an owned buffer, so nothing lent outlives the call: code outside
/// this module only ever sees a lent value through the `&Record` of the
/// current call.
#[derive(Default)]
pub struct RecordData(Repr);

#[derive(Default)]
enum Repr {
    #[default]
    Empty,
    Owned(Vec<u8>),
    /// Bytes of the batch being processed (see `Record::lend`).
    Lent {
        ptr: *const u8,
        len: usize,
    },
}

// SAFETY: lent bytes are immutable and, by `Record::lend`'s contract, alive
// for as long as any reference to the `RecordData` holding them; sharing
// them or a reference across threads is then no different from sharing a
// `&[u8]`. Owned bytes are a `Vec<u8>`.
unsafe impl Send for RecordData {}
unsafe impl Sync for RecordData {}

impl RecordData {
    /// The bytes as UTF-8, if they are.
    pub fn as_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(self.as_ref())
    }

    /// The bytes as UTF-8, with invalid sequences replaced.
    pub fn as_utf8_lossy_string(&self) -> String {
        String::from_utf8_lossy(self.as_ref()).into_owned()
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.as_ref().len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.as_ref().is_empty()
    }

    /// The owned bytes (a copy if they were lent).
    pub fn into_vec(self) -> Vec<u8> {
        match self.0 {
            Repr::Owned(v) => v,
            _ => self.as_ref().to_vec(),
        }
    }

    /// Bytes lent by the caller, valid while `self` is reachable.
    ///
    /// # Safety
    /// `bytes` must stay alive and unchanged until this value is dropped or
    /// overwritten, and no `&RecordData` to it may outlive them.
    unsafe fn lent(bytes: &[u8]) -> Self {
        Self(Repr::Lent {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        })
    }
}

impl AsRef<[u8]> for RecordData {
    fn as_ref(&self) -> &[u8] {
        match &self.0 {
            Repr::Empty => &[],
            Repr::Owned(v) => v,
            // SAFETY: `lent`'s contract keeps the bytes alive while `self` is.
            Repr::Lent { ptr, len } => unsafe { std::slice::from_raw_parts(*ptr, *len) },
        }
    }
}

impl Clone for RecordData {
    /// Always an owned copy: a clone may be kept past the batch call.
    fn clone(&self) -> Self {
        match &self.0 {
            Repr::Empty => Self(Repr::Empty),
            _ => Self(Repr::Owned(self.as_ref().to_vec())),
        }
    }
}

impl PartialEq for RecordData {
    fn eq(&self, other: &Self) -> bool {
        self.as_ref() == other.as_ref()
    }
}

impl Eq for RecordData {}

impl std::hash::Hash for RecordData {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_ref().hash(state);
    }
}

impl From<Vec<u8>> for RecordData {
    fn from(v: Vec<u8>) -> Self {
        Self(Repr::Owned(v))
    }
}

impl From<&[u8]> for RecordData {
    fn from(v: &[u8]) -> Self {
        Self(Repr::Owned(v.to_vec()))
    }
}

impl From<String> for RecordData {
    fn from(v: String) -> Self {
        Self(Repr::Owned(v.into_bytes()))
    }
}

impl From<&str> for RecordData {
    fn from(v: &str) -> Self {
        Self(Repr::Owned(v.as_bytes().to_vec()))
    }
}

impl From<RecordData> for Vec<u8> {
    fn from(v: RecordData) -> Self {
        v.into_vec()
    }
}

impl fmt::Debug for RecordData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(self.as_ref()) {
            Ok(s) => write!(f, "{s:?}"),
            Err(_) => write!(f, "{:?}", self.as_ref()),
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

    /// A record whose key and value are lent from `raw` (no copy).
    ///
    /// # Safety
    /// The bytes `raw` points into must outlive the returned record and
    /// every reference to it; hand it to module code only as `&Record`, so
    /// that the only way to keep its data is to clone it (an owned copy).
    pub(crate) unsafe fn lend(raw: &crate::abi::RawRecord<'_>) -> Self {
        // SAFETY: the caller's contract is `RecordData::lent`'s.
        unsafe {
            Self {
                key: raw.key.map(|k| RecordData::lent(k)),
                value: RecordData::lent(raw.value),
                offset: raw.offset,
                timestamp: raw.timestamp,
            }
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
