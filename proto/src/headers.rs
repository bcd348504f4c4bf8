//! Record headers and their one encoding.
//!
//! A record's headers are encoded once, by the producer's side of the
//! protocol, into a byte string: each header in order as its name (a
//! string) then its value (a byte string), in [`crate::encoding`], with no
//! count in front (so no headers is no bytes). The same bytes travel in a
//! produce request, in the partition's Raft entry, in the stored batch and in
//! a fetch response: a node checks them when they arrive
//! ([`HeadersRef::parse`]) and from then on copies them as they are.
//!
//! Bounds ([`crate::limits`]): at most [`RECORD_HEADERS_MAX`] headers, names
//! of 1 to [`RECORD_HEADER_KEY_BYTES_MAX`] bytes of UTF-8; the encoding's
//! bytes count against the record's size ([`crate::Record::size_bytes`]),
//! so frame and batch budgets hold whatever the headers are.

use crate::limits::{RECORD_HEADER_KEY_BYTES_MAX, RECORD_HEADERS_MAX};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One header of a record: a name and a value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecordHeader {
    pub key: String,
    pub value: Vec<u8>,
}

impl RecordHeader {
    pub fn new(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// Why a record's headers were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the headers' bytes do not decode: {0}")]
    Malformed(String),
    #[error("{count} headers exceed the limit of {RECORD_HEADERS_MAX} per record")]
    TooMany { count: usize },
    #[error("header {index} has an empty name; every header needs a name")]
    EmptyKey { index: usize },
    #[error(
        "header {index}'s name is {len} bytes, over the limit of {RECORD_HEADER_KEY_BYTES_MAX}"
    )]
    KeyTooLong { index: usize, len: usize },
}

/// The encoding of one header, borrowed.
type Entry<'a> = (&'a str, &'a serde_bytes::Bytes);

/// Bytes `headers` take encoded.
pub fn encoded_len(headers: &[RecordHeader]) -> usize {
    headers
        .iter()
        .map(|h| varint_len(h.key.len()) + h.key.len() + varint_len(h.value.len()) + h.value.len())
        .sum()
}

/// Appends the encoding of `headers` to `out`.
pub fn encode_into(out: &mut Vec<u8>, headers: &[RecordHeader]) {
    for h in headers {
        let entry: Entry<'_> = (&h.key, serde_bytes::Bytes::new(&h.value));
        crate::encoding::append_to(out, &entry).expect("a string and bytes always encode");
    }
}

/// Checks `headers` against the limits a node enforces (the encoding alone
/// cannot say a name is empty).
pub fn check(headers: HeadersRef<'_>) -> Result<(), HeaderError> {
    for (index, (key, _)) in headers.iter().enumerate() {
        if key.is_empty() {
            return Err(HeaderError::EmptyKey { index });
        }
        if key.len() > RECORD_HEADER_KEY_BYTES_MAX {
            return Err(HeaderError::KeyTooLong {
                index,
                len: key.len(),
            });
        }
    }
    Ok(())
}

/// [`check`] for owned headers.
pub fn check_owned(headers: &[RecordHeader]) -> Result<(), HeaderError> {
    if headers.len() > RECORD_HEADERS_MAX {
        return Err(HeaderError::TooMany {
            count: headers.len(),
        });
    }
    check(HeadersRef::listed(headers))
}

/// A record's headers, borrowed: as encoded in a frame or a stored batch
/// (checked to decode, at most [`RECORD_HEADERS_MAX`], names UTF-8, when
/// made, so reading them cannot fail), or an owned record's list.
#[derive(Clone, Copy)]
pub struct HeadersRef<'a> {
    repr: Repr<'a>,
}

#[derive(Clone, Copy)]
enum Repr<'a> {
    Encoded(&'a [u8]),
    Listed(&'a [RecordHeader]),
}

impl Default for HeadersRef<'_> {
    fn default() -> Self {
        HeadersRef::EMPTY
    }
}

impl PartialEq for HeadersRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for HeadersRef<'_> {}

impl<'a> HeadersRef<'a> {
    /// No headers.
    pub const EMPTY: HeadersRef<'static> = HeadersRef {
        repr: Repr::Encoded(&[]),
    };

    /// Headers from their encoding, checked.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, HeaderError> {
        let mut rest = bytes;
        let mut count = 0;
        while !rest.is_empty() {
            count += 1;
            if count > RECORD_HEADERS_MAX {
                return Err(HeaderError::TooMany { count });
            }
            let (_, used) =
                crate::encoding::from_slice::<Entry<'_>>(rest, rest.len()).map_err(|e| {
                    HeaderError::Malformed(format!(
                        "header {}: {e}, {} bytes into them",
                        count - 1,
                        bytes.len() - rest.len()
                    ))
                })?;
            rest = &rest[used..];
        }
        Ok(Self {
            repr: Repr::Encoded(bytes),
        })
    }

    /// An owned record's headers, borrowed.
    pub fn listed(headers: &'a [RecordHeader]) -> Self {
        Self {
            repr: Repr::Listed(headers),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self.repr {
            Repr::Encoded(bytes) => bytes.is_empty(),
            Repr::Listed(list) => list.is_empty(),
        }
    }

    /// Bytes of the encoding (what the headers count against a record's size).
    pub fn encoded_len(&self) -> usize {
        match self.repr {
            Repr::Encoded(bytes) => bytes.len(),
            Repr::Listed(list) => encoded_len(list),
        }
    }

    /// Name and value of each header, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        let (mut rest, list) = match self.repr {
            Repr::Encoded(bytes) => (bytes, &[][..]),
            Repr::Listed(list) => (&[][..], list),
        };
        let decoded = std::iter::from_fn(move || {
            // Checked when made: every entry decodes. Stop rather than panic
            // should that ever not hold.
            let ((key, value), used) =
                crate::encoding::from_slice::<Entry<'a>>(rest, rest.len()).ok()?;
            rest = &rest[used..];
            Some((key, value.as_ref()))
        });
        decoded.chain(list.iter().map(|h| (h.key.as_str(), h.value.as_slice())))
    }

    /// The value of the last header named `key` (a later header overrides
    /// an earlier one of the same name, as Kafka's `lastHeader`).
    pub fn last(&self, key: &str) -> Option<&'a [u8]> {
        self.iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .last()
    }

    /// An owned copy.
    pub fn to_vec(&self) -> Vec<RecordHeader> {
        match self.repr {
            Repr::Listed(list) => list.to_vec(),
            Repr::Encoded(_) => self.iter().map(|(k, v)| RecordHeader::new(k, v)).collect(),
        }
    }
}

impl std::fmt::Debug for HeadersRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(v).into_owned())),
            )
            .finish()
    }
}

impl Serialize for HeadersRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.repr {
            Repr::Encoded(bytes) => s.serialize_bytes(bytes),
            Repr::Listed(list) => blob::serialize(list, s),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for HeadersRef<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: &'de [u8] = serde_bytes::deserialize(d)?;
        HeadersRef::parse(bytes).map_err(serde::de::Error::custom)
    }
}

/// `#[serde(with = "crate::headers::blob")]` for a `Vec<RecordHeader>`: the
/// same bytes as a [`HeadersRef`] of them.
pub mod blob {
    use super::*;

    pub fn serialize<S: Serializer>(headers: &[RecordHeader], s: S) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::with_capacity(encoded_len(headers));
        encode_into(&mut bytes, headers);
        s.serialize_bytes(&bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<RecordHeader>, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(d)?;
        Ok(HeadersRef::parse(&bytes)
            .map_err(serde::de::Error::custom)?
            .to_vec())
    }
}

fn varint_len(n: usize) -> usize {
    // `crate::encoding`'s varint: one byte up to 250, else a marker and the
    // value as a u16, u32 or u64.
    match n as u64 {
        0..=250 => 1,
        251..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<RecordHeader> {
        vec![
            RecordHeader::new("trace-id", "4bf92f35"),
            RecordHeader::new("ct", Vec::new()),
            RecordHeader::new("big", vec![7; 300]),
            RecordHeader::new("trace-id", "second"),
        ]
    }

    #[test]
    fn headers_round_trip_through_their_encoding_with_its_length_known_ahead() {
        let headers = sample();
        let mut bytes = Vec::new();
        encode_into(&mut bytes, &headers);
        assert_eq!(bytes.len(), encoded_len(&headers));
        let parsed = HeadersRef::parse(&bytes).unwrap();
        assert_eq!(parsed.to_vec(), headers);
        assert_eq!(parsed.last("trace-id"), Some(&b"second"[..]));
        assert_eq!(parsed.last("none"), None);
        assert!(HeadersRef::parse(&[]).unwrap().is_empty());
        let long_name = vec![RecordHeader::new("k".repeat(300), "v")];
        assert_eq!(encoded_len(&long_name), 3 + 300 + 1 + 1);
    }

    #[test]
    fn damaged_or_excessive_headers_are_refused_with_the_reason() {
        let mut bytes = Vec::new();
        encode_into(&mut bytes, &sample());
        for cut in 1..bytes.len() {
            if let Ok(h) = HeadersRef::parse(&bytes[..cut]) {
                // A cut between two headers is a shorter valid list.
                assert!(h.iter().count() < 4, "cut at {cut}");
            }
        }
        assert!(matches!(
            HeadersRef::parse(&[2, 0xff, 0xfe, 0]),
            Err(HeaderError::Malformed(_))
        ));
        let many = vec![RecordHeader::new("k", "v"); RECORD_HEADERS_MAX + 1];
        let mut bytes = Vec::new();
        encode_into(&mut bytes, &many);
        assert!(matches!(
            HeadersRef::parse(&bytes),
            Err(HeaderError::TooMany { .. })
        ));
        assert_eq!(
            check_owned(&[RecordHeader::new("a", "1"), RecordHeader::new("", "2")]),
            Err(HeaderError::EmptyKey { index: 1 })
        );
        let long = "n".repeat(RECORD_HEADER_KEY_BYTES_MAX + 1);
        assert!(matches!(
            check_owned(&[RecordHeader::new(long, "")]),
            Err(HeaderError::KeyTooLong { index: 0, .. })
        ));
        assert!(check_owned(&sample()).is_ok());
    }
}
