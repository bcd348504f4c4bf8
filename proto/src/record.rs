//! Records as producers send them and consumers receive them.
//!
//! Keys and values are encoded as byte strings (`serde_bytes`): one length
//! and one copy, instead of serde's default of one element per byte.
//!
//! A record's headers (see [`crate::headers`]) travel as one byte string,
//! the same bytes a stored batch keeps, so a node serves them without
//! decoding them. The types here serialize with their headers; messages
//! whose encoding was fixed before headers existed hold their records in the
//! [`v1`] shape, which has no place for them and refuses to encode a record
//! that has some (see `Request::ProduceWithHeaders` and
//! `Response::RecordsWithHeaders` for the messages that carry them).

use crate::headers::{HeadersRef, RecordHeader};
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
    /// Name/value pairs beside the key and value, in the order given (a
    /// name may repeat), as Kafka's record headers: metadata a consumer
    /// reads without parsing the value (trace ids, content types, origins).
    #[serde(with = "crate::headers::blob")]
    pub headers: Vec<RecordHeader>,
}

impl Record {
    /// A record with no key, stamped with the current wall-clock time.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Self {
            key: None,
            value: value.into(),
            timestamp_ms: now_ms(),
            headers: Vec::new(),
        }
    }

    /// A keyed record, stamped with the current wall-clock time.
    pub fn with_key(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            key: Some(key.into()),
            value: value.into(),
            timestamp_ms: now_ms(),
            headers: Vec::new(),
        }
    }

    /// The same record with one more header (after those it has).
    ///
    /// ```
    /// use sluice_proto::Record;
    /// let record = Record::new("payload")
    ///     .header("trace-id", "4bf92f35")
    ///     .header("content-type", "application/json");
    /// assert_eq!(record.headers[1].key, "content-type");
    /// ```
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push(RecordHeader::new(key, value));
        self
    }

    /// Bytes this record counts against size limits: key, value and the
    /// headers' encoding (names, values and their lengths).
    pub fn size_bytes(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len)
            + self.value.len()
            + crate::headers::encoded_len(&self.headers)
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
    /// The headers the producer gave the record (see [`Record::headers`]).
    #[serde(with = "crate::headers::blob")]
    pub headers: Vec<RecordHeader>,
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
            headers: HeadersRef::listed(&self.headers),
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
    #[serde(borrow)]
    pub headers: HeadersRef<'a>,
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
            headers: self.headers.to_vec(),
        }
    }

    /// Bytes this record counts against size limits (key, value, headers).
    pub fn size_bytes(&self) -> usize {
        self.key.map_or(0, <[u8]>::len) + self.value.len() + self.headers.encoded_len()
    }
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The shape records had on the wire and in Raft entries before headers:
/// key, value and timestamp. The messages fixed then keep it, so a peer of an
/// earlier release still reads what this one sends without headers.
/// Encoding a record that has headers in this shape is an error, never a
/// silent loss: a sender picks the message with headers instead.
pub mod v1 {
    use super::{ConsumerRecord, ConsumerRecordRef, Record};
    use crate::headers::HeadersRef;
    use serde::ser::{Error as _, SerializeSeq};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Plain<'a> {
        #[serde(with = "serde_bytes", borrow)]
        key: Option<&'a [u8]>,
        #[serde(with = "serde_bytes", borrow)]
        value: &'a [u8],
        timestamp_ms: i64,
    }

    #[derive(Serialize, Deserialize)]
    struct PlainConsumer<'a> {
        partition: u32,
        offset: u64,
        #[serde(with = "serde_bytes", borrow)]
        key: Option<&'a [u8]>,
        #[serde(with = "serde_bytes", borrow)]
        value: &'a [u8],
        timestamp_ms: i64,
    }

    const HAS_HEADERS: &str =
        "a record with headers cannot be encoded in a message without a place for them";

    /// Decodes a sequence of `P` straight into `T`s, without a vector of
    /// `P` in between (a records frame holds thousands).
    fn seq_into<'de, D, P, T, F>(d: D, convert: F) -> Result<Vec<T>, D::Error>
    where
        D: Deserializer<'de>,
        P: Deserialize<'de>,
        F: Fn(P) -> T,
    {
        struct Seq<P, F>(F, std::marker::PhantomData<P>);
        impl<'de, P: Deserialize<'de>, T, F: Fn(P) -> T> serde::de::Visitor<'de> for Seq<P, F> {
            type Value = Vec<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sequence of records")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<T>, A::Error> {
                // The count comes from the peer: it sizes nothing beyond a
                // few pages until the records are there.
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(p) = seq.next_element::<P>()? {
                    out.push((self.0)(p));
                }
                Ok(out)
            }
        }
        d.deserialize_seq(Seq(convert, std::marker::PhantomData))
    }

    /// `#[serde(with = "v1")]` for a `Vec<Record>`.
    pub fn serialize<S: Serializer>(records: &[Record], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(records.len()))?;
        for r in records {
            if !r.headers.is_empty() {
                return Err(S::Error::custom(HAS_HEADERS));
            }
            seq.serialize_element(&Plain {
                key: r.key.as_deref(),
                value: &r.value,
                timestamp_ms: r.timestamp_ms,
            })?;
        }
        seq.end()
    }

    /// `#[serde(with = "v1")]` for a `Vec<Record>`: every record without headers.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Record>, D::Error> {
        seq_into(d, |p: Plain<'_>| Record {
            key: p.key.map(<[u8]>::to_vec),
            value: p.value.to_vec(),
            timestamp_ms: p.timestamp_ms,
            headers: Vec::new(),
        })
    }

    /// A batch of records in this shape as a value of its own (the payload
    /// of a `CompressedProduce`).
    #[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Records(#[serde(with = "self")] pub Vec<Record>);

    /// Consumer records in this shape; one with headers is an error.
    fn serialize_refs<'a, S: Serializer>(
        records: impl ExactSizeIterator<Item = ConsumerRecordRef<'a>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(records.len()))?;
        for r in records {
            if !r.headers.is_empty() {
                return Err(S::Error::custom(HAS_HEADERS));
            }
            seq.serialize_element(&PlainConsumer {
                partition: r.partition,
                offset: r.offset,
                key: r.key,
                value: r.value,
                timestamp_ms: r.timestamp_ms,
            })?;
        }
        seq.end()
    }

    /// `#[serde(with = "v1::consumer")]` for a `Vec<ConsumerRecord>`.
    pub mod consumer {
        use super::*;

        pub fn serialize<S: Serializer>(
            records: &[ConsumerRecord],
            s: S,
        ) -> Result<S::Ok, S::Error> {
            serialize_refs(records.iter().map(ConsumerRecord::borrowed), s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Vec<ConsumerRecord>, D::Error> {
            seq_into(d, |p: PlainConsumer<'_>| ConsumerRecord {
                partition: p.partition,
                offset: p.offset,
                key: p.key.map(<[u8]>::to_vec),
                value: p.value.to_vec(),
                timestamp_ms: p.timestamp_ms,
                headers: Vec::new(),
            })
        }
    }

    /// `#[serde(with = "v1::borrowed")]` for a `[ConsumerRecordRef]`.
    pub mod borrowed {
        use super::*;

        pub fn serialize<S: Serializer>(
            records: &[ConsumerRecordRef<'_>],
            s: S,
        ) -> Result<S::Ok, S::Error> {
            serialize_refs(records.iter().copied(), s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Vec<ConsumerRecordRef<'de>>, D::Error> {
            seq_into(d, |p: PlainConsumer<'de>| ConsumerRecordRef {
                partition: p.partition,
                offset: p.offset,
                key: p.key,
                value: p.value,
                timestamp_ms: p.timestamp_ms,
                headers: HeadersRef::EMPTY,
            })
        }
    }
}
