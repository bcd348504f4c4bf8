//! Records as the engine exchanges them with its callers, and their ABI encoding.
//!
//! A plain struct of the engine's own rather than a wire type: the engine does not depend
//! on the protocol crate, and callers convert at their edge.

use sluice_smartmodule::abi::RawRecord;

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

/// A batch as the ABI encodes it, preceded by the aggregate's accumulator if
/// there is one; written straight into the module's memory
/// ([`BatchInput::write`]) rather than built first and copied there.
pub(crate) struct BatchInput<'a, 'r> {
    pub accumulator: Option<&'a [u8]>,
    pub records: &'a [RawRecord<'r>],
}

impl BatchInput<'_, '_> {
    /// The encoding's exact length in bytes.
    pub fn len(&self) -> usize {
        let records: usize = self
            .records
            .iter()
            .map(|r| 8 + 8 + 1 + 4 + r.key.map_or(0, |k| k.len() + 4) + r.value.len())
            .sum();
        self.accumulator.map_or(0, |a| 4 + a.len()) + 4 + records
    }

    /// Writes the encoding (the same bytes as `abi::Encoder` would) into `dst`.
    ///
    /// # Panics
    /// If `dst` is not [`Self::len`] bytes long.
    pub fn write(&self, dst: &mut [u8]) {
        assert_eq!(
            dst.len(),
            self.len(),
            "batch input buffer of the wrong size"
        );
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            dst[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        let len32 = |n: usize| {
            u32::try_from(n)
                .expect("checked by the caller")
                .to_le_bytes()
        };
        if let Some(acc) = self.accumulator {
            put(&len32(acc.len()));
            put(acc);
        }
        put(&len32(self.records.len()));
        for r in self.records {
            put(&r.offset.to_le_bytes());
            put(&r.timestamp.to_le_bytes());
            match r.key {
                Some(key) => {
                    put(&[1]);
                    put(&len32(key.len()));
                    put(key);
                }
                None => put(&[0]),
            }
            put(&len32(r.value.len()));
            put(r.value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_smartmodule::abi::Encoder;

    #[test]
    fn a_batch_written_in_place_is_what_the_encoder_writes() {
        let records = [
            RawRecord {
                offset: 7,
                timestamp: -1,
                key: Some(b"key"),
                value: b"value",
            },
            RawRecord {
                offset: 8,
                timestamp: 1 << 40,
                key: None,
                value: b"",
            },
            RawRecord {
                offset: 9,
                timestamp: 3,
                key: Some(b""),
                value: &[0xff; 300],
            },
        ];
        for accumulator in [None, Some(&b"acc"[..]), Some(&b""[..])] {
            let mut e = Encoder::new();
            if let Some(acc) = accumulator {
                e.bytes(acc);
            }
            e.count(records.len());
            for r in &records {
                e.record(*r);
            }
            let expected = e.finish();
            let input = BatchInput {
                accumulator,
                records: &records,
            };
            assert_eq!(input.len(), expected.len());
            let mut dst = vec![0xaa; input.len()];
            input.write(&mut dst);
            assert_eq!(dst, expected);
        }
    }
}
