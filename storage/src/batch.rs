//! Encoding and decoding of one batch: the unit written by one `append`.
//!
//! A batch is what the caller wrote in one go (one replicated-log entry), so it is also
//! the unit of atomicity on disk: after a crash a batch is either entirely present with
//! a matching checksum or it is cut off. Layout, all integers little-endian:
//!
//! ```text
//!  0..3   magic "SLB"        recognises a batch boundary
//!  3      format version     lets a later format coexist with this one
//!  4..8   crc32              over bytes 8..48 and the payload
//!  8..16  base offset        offset of the first record
//! 16..24  entry id           caller's id of the write (replicated-log index)
//! 24..28  record count       > 0
//! 28..36  first timestamp    of the first record; record timestamps are deltas to it
//! 36..44  max timestamp      largest record timestamp: retention by age needs it
//! 44..48  payload length
//! 48..    payload            the records
//! ```
//!
//! The magic and version sit before the CRC so that a reader can tell "not a batch at
//! all" from "a damaged batch". Inside the payload each record is:
//!
//! ```text
//! varint  zigzag(timestamp - first timestamp)
//! varint  0 = no key, n + 1 = key of n bytes   (keeps "absent" apart from "empty")
//! bytes   key
//! varint  value length
//! bytes   value
//! ```
//!
//! Offsets are implicit (base offset + position in the batch), which keeps the payload
//! small and makes non-contiguous offsets inside a batch unrepresentable.
//!
//! Format version 2 is the same header over a compressed payload (a topic with a
//! compression setting): one byte naming the codec (its position in
//! [`Compression::ALL`]), a `u32` of the records' encoded length, then those
//! records compressed with `sluice-compress`. The CRC covers the stored (compressed)
//! bytes, so damage is found before anything is expanded; the records inside are
//! checked against the header exactly as in version 1. Version 1 is still written for
//! uncompressed batches, so a log of a topic without compression stays readable by
//! releases that know only version 1.
//!
//! Format versions 3 and 4 are versions 1 and 2 with each record's headers
//! after its value:
//!
//! ```text
//! varint  headers length (0 = none)
//! bytes   headers, in `sluice_proto::headers`' encoding (checked when read)
//! ```
//!
//! They are written only for a batch of which some record has headers, so a
//! topic whose producers never set any stays readable by earlier releases.

use crate::error::{Defect, StorageError};
use sluice_proto::{Compression, HeadersRef, Record};
use std::borrow::Cow;
use std::path::PathBuf;

/// Size of the fixed batch header.
pub(crate) const HEADER_LEN: usize = 48;
/// First three bytes of every batch.
pub(crate) const MAGIC: [u8; 3] = *b"SLB";
/// Format version of an uncompressed batch.
pub(crate) const VERSION: u8 = 1;
/// Format version of a batch whose payload is compressed.
pub(crate) const VERSION_COMPRESSED: u8 = 2;
/// [`VERSION`] with each record's headers.
pub(crate) const VERSION_HEADERS: u8 = 3;
/// [`VERSION_COMPRESSED`] with each record's headers.
pub(crate) const VERSION_COMPRESSED_HEADERS: u8 = 4;

/// Whether batches of format `version` keep records' headers.
fn has_headers(version: u8) -> bool {
    version == VERSION_HEADERS || version == VERSION_COMPRESSED_HEADERS
}

/// Whether the payload of a batch of format `version` is compressed.
fn is_compressed(version: u8) -> bool {
    version == VERSION_COMPRESSED || version == VERSION_COMPRESSED_HEADERS
}
/// Codec byte and records length in front of a compressed payload.
const COMPRESSED_PREFIX_LEN: usize = 5;
/// Most bytes a compressed payload may expand to: a batch is one produce
/// request's records, which fit one frame.
const EXPANDED_PAYLOAD_MAX: usize = sluice_proto::limits::FRAME_SIZE_BYTES_MAX;
/// Largest payload the 32-bit length field can describe.
pub(crate) const MAX_PAYLOAD: u64 = u32::MAX as u64;

/// The parsed fixed part of a batch. Keeps the raw bytes because the CRC covers them.
#[derive(Debug, Clone)]
pub(crate) struct BatchHeader {
    raw: [u8; HEADER_LEN],
    pub version: u8,
    pub crc: u32,
    pub base_offset: u64,
    pub entry_id: u64,
    pub record_count: u32,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    pub payload_len: u32,
}

impl BatchHeader {
    /// Parses and sanity-checks a header. `bytes` must hold at least `HEADER_LEN` bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, Defect> {
        if bytes.len() < HEADER_LEN {
            return Err(Defect::ShortHeader {
                available: bytes.len() as u64,
                needed: HEADER_LEN as u64,
            });
        }
        let mut raw = [0u8; HEADER_LEN];
        raw.copy_from_slice(&bytes[..HEADER_LEN]);
        if raw[0..3] != MAGIC {
            return Err(Defect::BadMagic {
                found: [raw[0], raw[1], raw[2]],
            });
        }
        if !(VERSION..=VERSION_COMPRESSED_HEADERS).contains(&raw[3]) {
            return Err(Defect::UnsupportedVersion { found: raw[3] });
        }
        let header = BatchHeader {
            version: raw[3],
            crc: u32::from_le_bytes(raw[4..8].try_into().expect("4 bytes")),
            base_offset: u64::from_le_bytes(raw[8..16].try_into().expect("8 bytes")),
            entry_id: u64::from_le_bytes(raw[16..24].try_into().expect("8 bytes")),
            record_count: u32::from_le_bytes(raw[24..28].try_into().expect("4 bytes")),
            first_timestamp: i64::from_le_bytes(raw[28..36].try_into().expect("8 bytes")),
            max_timestamp: i64::from_le_bytes(raw[36..44].try_into().expect("8 bytes")),
            payload_len: u32::from_le_bytes(raw[44..48].try_into().expect("4 bytes")),
            raw,
        };
        if header.record_count == 0 {
            return Err(Defect::EmptyBatch);
        }
        if header
            .base_offset
            .checked_add(u64::from(header.record_count))
            .is_none()
        {
            return Err(Defect::OffsetOverflow {
                base_offset: header.base_offset,
                record_count: header.record_count,
            });
        }
        Ok(header)
    }

    /// The header as stored (for copying a batch byte for byte).
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// Offset following the last record of the batch (checked at parse time).
    pub fn end_offset(&self) -> u64 {
        self.base_offset + u64::from(self.record_count)
    }

    /// Header plus payload: the distance to the next batch.
    pub fn total_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.payload_len)
    }

    /// Checks the CRC over the header fields after it and the payload.
    pub fn verify_crc(&self, payload: &[u8]) -> Result<(), Defect> {
        let computed = checksum(&self.raw[8..], payload);
        if computed == self.crc {
            Ok(())
        } else {
            Err(Defect::CrcMismatch {
                stored: self.crc,
                computed,
            })
        }
    }
}

fn checksum(header_tail: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header_tail);
    hasher.update(payload);
    hasher.finalize()
}

/// Why a batch could not be encoded; the caller adds the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLarge {
    pub payload_len: u64,
}

/// Encodes `records` (non-empty) as one batch starting at `base_offset`, its
/// payload compressed with `compression` (format 2) unless that is `None`.
pub(crate) fn encode(
    base_offset: u64,
    entry_id: u64,
    records: &[Record],
    compression: Compression,
) -> Result<Vec<u8>, TooLarge> {
    debug_assert!(!records.is_empty());
    let first_timestamp = records.first().map_or(0, |r| r.timestamp_ms);
    let max_timestamp = records.iter().map(|r| r.timestamp_ms).max().unwrap_or(0);
    let headers = records.iter().any(|r| !r.headers.is_empty());
    let estimate: usize = records.iter().map(|r| r.size_bytes() + 4 * 10).sum();
    let mut buf = Vec::with_capacity(HEADER_LEN + estimate);
    buf.resize(HEADER_LEN, 0);
    for record in records {
        put_varint(
            &mut buf,
            zigzag(record.timestamp_ms.wrapping_sub(first_timestamp)),
        );
        match &record.key {
            None => put_varint(&mut buf, 0),
            Some(key) => {
                put_varint(&mut buf, key.len() as u64 + 1);
                buf.extend_from_slice(key);
            }
        }
        put_varint(&mut buf, record.value.len() as u64);
        buf.extend_from_slice(&record.value);
        if headers {
            put_varint(
                &mut buf,
                sluice_proto::headers::encoded_len(&record.headers) as u64,
            );
            sluice_proto::headers::encode_into(&mut buf, &record.headers);
        }
    }
    let mut version = if headers { VERSION_HEADERS } else { VERSION };
    if compression != Compression::None {
        let expanded = buf.len() - HEADER_LEN;
        if expanded > EXPANDED_PAYLOAD_MAX {
            return Err(TooLarge {
                payload_len: expanded as u64,
            });
        }
        let packed = sluice_compress::compress(compression, &buf[HEADER_LEN..]);
        buf.truncate(HEADER_LEN);
        buf.push(codec_byte(compression));
        buf.extend_from_slice(&(expanded as u32).to_le_bytes());
        buf.extend_from_slice(&packed);
        version = if headers {
            VERSION_COMPRESSED_HEADERS
        } else {
            VERSION_COMPRESSED
        };
    }
    let payload_len = (buf.len() - HEADER_LEN) as u64;
    if payload_len > MAX_PAYLOAD || records.len() > u32::MAX as usize {
        return Err(TooLarge { payload_len });
    }
    buf[0..3].copy_from_slice(&MAGIC);
    buf[3] = version;
    buf[8..16].copy_from_slice(&base_offset.to_le_bytes());
    buf[16..24].copy_from_slice(&entry_id.to_le_bytes());
    buf[24..28].copy_from_slice(&(records.len() as u32).to_le_bytes());
    buf[28..36].copy_from_slice(&first_timestamp.to_le_bytes());
    buf[36..44].copy_from_slice(&max_timestamp.to_le_bytes());
    buf[44..48].copy_from_slice(&(payload_len as u32).to_le_bytes());
    let crc = checksum(&buf[8..HEADER_LEN], &buf[HEADER_LEN..]);
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(buf)
}

/// One record as it lies in the payload, borrowed.
pub(crate) struct RawRecord<'a> {
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    pub headers: HeadersRef<'a>,
}

fn codec_byte(codec: Compression) -> u8 {
    Compression::ALL
        .iter()
        .position(|c| *c == codec)
        .expect("every codec is listed") as u8
}

/// The records' encoding inside a CRC-checked payload: the payload itself
/// (format 1), or its compressed records expanded (format 2), bounded by the
/// length the payload states and by [`EXPANDED_PAYLOAD_MAX`].
pub(crate) fn expand<'a>(header: &BatchHeader, payload: &'a [u8]) -> Result<Cow<'a, [u8]>, Defect> {
    if !is_compressed(header.version) {
        return Ok(Cow::Borrowed(payload));
    }
    let Some((prefix, packed)) = payload.split_first_chunk::<COMPRESSED_PREFIX_LEN>() else {
        return Err(Defect::Compression {
            detail: "shorter than its codec and length",
        });
    };
    let codec = *Compression::ALL
        .get(usize::from(prefix[0]))
        .ok_or(Defect::Compression {
            detail: "unknown codec",
        })?;
    let stated = u32::from_le_bytes(prefix[1..5].try_into().expect("4 bytes")) as usize;
    if stated > EXPANDED_PAYLOAD_MAX {
        return Err(Defect::Compression {
            detail: "states a length past the largest batch",
        });
    }
    let expanded = sluice_compress::decompress(codec, packed, stated).map_err(|e| match e {
        sluice_compress::DecompressError::Corrupt { .. } => Defect::Compression {
            detail: "its codec refuses the data",
        },
        sluice_compress::DecompressError::TooLarge { .. } => Defect::Compression {
            detail: "expands past its stated length",
        },
    })?;
    if expanded.len() != stated {
        return Err(Defect::Compression {
            detail: "expands to less than its stated length",
        });
    }
    Ok(Cow::Owned(expanded))
}

/// A stored batch read whole (CRC checked), for readers that look at its
/// records in place instead of copying each one out.
#[derive(Debug)]
pub struct StoredBatch {
    header: BatchHeader,
    /// The records' encoding: expanded already if the batch is compressed.
    payload: Vec<u8>,
    /// Where it was read, for the error if its records are malformed.
    path: PathBuf,
    position: u64,
}

/// A record of a [`StoredBatch`], borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    /// Checked to decode when read.
    pub headers: HeadersRef<'a>,
}

impl StoredBatch {
    /// A batch from its header and CRC-checked stored payload, expanded if
    /// compressed (a payload that does not expand is [`StorageError::Corrupt`]).
    pub(crate) fn new(
        header: BatchHeader,
        payload: Vec<u8>,
        path: PathBuf,
        position: u64,
    ) -> Result<Self, StorageError> {
        let payload = match expand(&header, &payload) {
            Ok(Cow::Borrowed(_)) => payload,
            Ok(Cow::Owned(expanded)) => expanded,
            Err(reason) => {
                return Err(StorageError::Corrupt {
                    path,
                    position,
                    reason,
                });
            }
        };
        Ok(Self {
            header,
            payload,
            path,
            position,
        })
    }

    /// Offset of the first record.
    pub fn base_offset(&self) -> u64 {
        self.header.base_offset
    }

    /// Offset following the last record.
    pub fn end_offset(&self) -> u64 {
        self.header.end_offset()
    }

    /// The caller's id of the write that stored this batch (see
    /// [`crate::PartitionLog::append`]): lets a caller re-applying its writes
    /// check that the batch it skips is the one that write stored.
    pub fn entry_id(&self) -> u64 {
        self.header.entry_id
    }

    /// Calls `f` for each record of `batches` with an offset in
    /// `from..until`, in order. A batch whose records do not match its header
    /// (CRC-checked, so written that way) is [`StorageError::Corrupt`], named
    /// by file and position; `f` may have seen some of its records.
    pub fn for_each_in<'a>(
        batches: &'a [StoredBatch],
        from: u64,
        until: u64,
        mut f: impl FnMut(RecordRef<'a>),
    ) -> Result<(), StorageError> {
        for batch in batches {
            let base = batch.header.base_offset;
            for_each_record(&batch.header, &batch.payload, |i, raw| {
                let offset = base + u64::from(i);
                if (from..until).contains(&offset) {
                    f(RecordRef {
                        offset,
                        timestamp_ms: raw.timestamp_ms,
                        key: raw.key,
                        value: raw.value,
                        headers: raw.headers,
                    });
                }
            })
            .map_err(|reason| StorageError::Corrupt {
                path: batch.path.clone(),
                position: batch.position,
                reason,
            })?;
        }
        Ok(())
    }

    /// What the batch counts against a read's byte budget: its key and value
    /// bytes plus a per-record allowance for offset, lengths and timestamp
    /// (counting only payloads would let a read of tiny records outgrow any
    /// response frame).
    /// For a compressed batch, the length its records expand to (as the
    /// stored payload states it; checked when expanded).
    pub(crate) fn budget_bytes(header: &BatchHeader, payload: &[u8]) -> usize {
        let records_len = match payload.get(1..COMPRESSED_PREFIX_LEN) {
            Some(len) if is_compressed(header.version) => {
                u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize
            }
            _ => header.payload_len as usize,
        };
        records_len + header.record_count as usize * sluice_proto::limits::RECORD_OVERHEAD_BYTES_MAX
    }
}

/// Walks the records of a payload whose CRC has been verified, checking that the
/// encoding is consistent with the header (count, max timestamp, exact length).
///
/// The walk is shared by recovery (which only validates) and reads (which copy out).
pub(crate) fn for_each_record<'a>(
    header: &BatchHeader,
    payload: &'a [u8],
    mut f: impl FnMut(u32, RawRecord<'a>),
) -> Result<(), Defect> {
    let mut cursor = Cursor {
        buf: payload,
        pos: 0,
    };
    let mut max_seen = i64::MIN;
    for i in 0..header.record_count {
        let delta = unzigzag(cursor.varint()?);
        let timestamp_ms = header.first_timestamp.wrapping_add(delta);
        let key = match cursor.varint()? {
            0 => None,
            n => Some(cursor.bytes(n - 1)?),
        };
        let value_len = cursor.varint()?;
        let value = cursor.bytes(value_len)?;
        let headers = if has_headers(header.version) {
            let len = cursor.varint()?;
            HeadersRef::parse(cursor.bytes(len)?).map_err(|_| Defect::MalformedPayload {
                detail: "a record's headers do not decode",
            })?
        } else {
            HeadersRef::EMPTY
        };
        max_seen = max_seen.max(timestamp_ms);
        f(
            i,
            RawRecord {
                timestamp_ms,
                key,
                value,
                headers,
            },
        );
    }
    if cursor.pos != payload.len() {
        return Err(Defect::MalformedPayload {
            detail: "bytes left over after the last record",
        });
    }
    if max_seen != header.max_timestamp {
        return Err(Defect::MalformedPayload {
            detail: "max timestamp in header does not match the records",
        });
    }
    Ok(())
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn varint(&mut self) -> Result<u64, Defect> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(Defect::MalformedPayload {
                    detail: "varint runs past the end of the payload",
                });
            };
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Defect::MalformedPayload {
            detail: "varint longer than 10 bytes",
        })
    }

    fn bytes(&mut self, len: u64) -> Result<&'a [u8], Defect> {
        let remaining = (self.buf.len() - self.pos) as u64;
        if len > remaining {
            return Err(Defect::MalformedPayload {
                detail: "field length runs past the end of the payload",
            });
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok(&self.buf[start..self.pos])
    }
}

fn put_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proto::ConsumerRecord;

    fn rec(key: Option<&[u8]>, value: &[u8], ts: i64) -> Record {
        Record {
            key: key.map(<[u8]>::to_vec),
            value: value.to_vec(),
            timestamp_ms: ts,
            headers: Vec::new(),
        }
    }

    fn decode_all(bytes: &[u8]) -> Vec<ConsumerRecord> {
        let header = BatchHeader::parse(bytes).unwrap();
        let payload = &bytes[HEADER_LEN..];
        assert_eq!(payload.len(), header.payload_len as usize);
        header.verify_crc(payload).unwrap();
        decode_all_unchecked(&header, payload)
            .into_iter()
            .map(|r| ConsumerRecord { partition: 7, ..r })
            .collect()
    }

    /// A batch as `StoredBatch::new` would take it: payload expanded.
    fn decode_stored(bytes: &[u8]) -> Vec<ConsumerRecord> {
        let header = BatchHeader::parse(bytes).unwrap();
        let payload = expand(&header, &bytes[HEADER_LEN..]).unwrap();
        decode_all_unchecked(&header, &payload)
    }

    fn decode_all_unchecked(header: &BatchHeader, payload: &[u8]) -> Vec<ConsumerRecord> {
        let mut out = Vec::new();
        for_each_record(header, payload, |i, r| {
            out.push(ConsumerRecord {
                partition: 0,
                offset: header.base_offset + u64::from(i),
                key: r.key.map(<[u8]>::to_vec),
                value: r.value.to_vec(),
                timestamp_ms: r.timestamp_ms,
                headers: r.headers.to_vec(),
            })
        })
        .unwrap();
        out
    }

    /// Batches of formats 1 and 3 as an earlier build stored them stay
    /// readable and are written again byte for byte (see
    /// `sluice_fuzzing::golden`). Compressed formats are left out: their
    /// bytes are the codec library's, which may change between its versions.
    #[test]
    fn golden_batch_formats() {
        let samples = vec![
            vec![rec(Some(b"k"), &[9; 40], -5), rec(None, b"", i64::MAX)],
            vec![
                rec(None, b"plain", 1_700_000_000_000),
                Record {
                    timestamp_ms: 1_700_000_000_001,
                    ..Record::new(b"headed".to_vec())
                        .header("traceparent", "00-4bf92f35-01")
                        .header("empty", "")
                        .header("bin", vec![0, 0x80, 0xff])
                },
            ],
        ];
        let encode = |records: &Vec<Record>| encode(7, 3, records, Compression::None).unwrap();
        let decode = |bytes: &[u8]| -> Result<Vec<Record>, String> {
            let header = BatchHeader::parse(bytes).map_err(|e| e.to_string())?;
            let payload = &bytes[HEADER_LEN..];
            header.verify_crc(payload).map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            for_each_record(&header, payload, |_, r| {
                out.push(Record {
                    key: r.key.map(<[u8]>::to_vec),
                    value: r.value.to_vec(),
                    timestamp_ms: r.timestamp_ms,
                    headers: r.headers.to_vec(),
                })
            })
            .map_err(|e| e.to_string())?;
            Ok(out)
        };
        assert_eq!(encode(&samples[0])[3], VERSION);
        assert_eq!(encode(&samples[1])[3], VERSION_HEADERS);
        sluice_fuzzing::golden::check(
            env!("CARGO_MANIFEST_DIR"),
            "batches",
            &samples,
            encode,
            decode,
        );
    }

    #[test]
    fn headers_are_kept_by_formats_3_and_4_and_only_batches_with_headers_use_them() {
        let records = vec![
            rec(None, b"plain", 1),
            Record {
                timestamp_ms: 2,
                ..Record::new(b"headed".to_vec())
                    .header("trace", "abc")
                    .header("trace", vec![0xff; 200])
            },
            rec(Some(b"k"), b"", 3),
        ];
        for (codec, with, without) in [
            (Compression::None, VERSION_HEADERS, VERSION),
            (
                Compression::Zstd,
                VERSION_COMPRESSED_HEADERS,
                VERSION_COMPRESSED,
            ),
        ] {
            let bytes = encode(10, 1, &records, codec).unwrap();
            assert_eq!(bytes[3], with, "{codec}");
            let out = decode_stored(&bytes);
            assert_eq!(out.len(), 3);
            for (got, want) in out.iter().zip(&records) {
                assert_eq!(
                    (&got.key, &got.value, got.timestamp_ms, &got.headers),
                    (&want.key, &want.value, want.timestamp_ms, &want.headers)
                );
            }
            let plain = encode(10, 1, &[rec(None, b"x", 1)], codec).unwrap();
            assert_eq!(plain[3], without, "{codec}");
        }
        // Headers that do not decode, under a matching CRC (as a bug would
        // write them), are a malformed payload, not a panic or a skip.
        let mut bytes = encode(0, 1, &records[1..2], Compression::None).unwrap();
        let at = bytes
            .windows(5)
            .position(|w| w == b"trace")
            .expect("the header's name is stored as is");
        bytes[at - 1] = 0xfd;
        let crc = checksum(&bytes[8..HEADER_LEN], &bytes[HEADER_LEN..]);
        bytes[4..8].copy_from_slice(&crc.to_le_bytes());
        let header = BatchHeader::parse(&bytes).unwrap();
        assert_eq!(
            for_each_record(&header, &bytes[HEADER_LEN..], |_, _| {}),
            Err(Defect::MalformedPayload {
                detail: "a record's headers do not decode"
            })
        );
    }

    #[test]
    fn round_trip_keeps_absent_and_empty_keys_apart() {
        let records = vec![
            rec(None, b"a", 100),
            rec(Some(b""), b"", 50),
            rec(Some(b"key"), b"value", i64::MAX),
            rec(None, b"", i64::MIN),
        ];
        let bytes = encode(42, 9, &records, Compression::None).unwrap();
        let header = BatchHeader::parse(&bytes).unwrap();
        assert_eq!(header.base_offset, 42);
        assert_eq!(header.entry_id, 9);
        assert_eq!(header.record_count, 4);
        assert_eq!(header.first_timestamp, 100);
        assert_eq!(header.max_timestamp, i64::MAX);
        assert_eq!(header.end_offset(), 46);
        let out = decode_all(&bytes);
        assert_eq!(out.len(), 4);
        for (i, (got, want)) in out.iter().zip(&records).enumerate() {
            assert_eq!(got.partition, 7);
            assert_eq!(got.offset, 42 + i as u64);
            assert_eq!(got.key, want.key);
            assert_eq!(got.value, want.value);
            assert_eq!(got.timestamp_ms, want.timestamp_ms);
        }
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let bytes = encode(
            3,
            4,
            &[rec(Some(b"k"), b"hello", 5), rec(None, b"x", 6)],
            Compression::None,
        )
        .unwrap();
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x10;
            let detected = match BatchHeader::parse(&damaged) {
                Err(_) => true,
                Ok(h) => {
                    let end = (HEADER_LEN + h.payload_len as usize).min(damaged.len());
                    h.payload_len as usize != damaged.len() - HEADER_LEN
                        || h.verify_crc(&damaged[HEADER_LEN..end]).is_err()
                }
            };
            assert!(detected, "flip at byte {i} not detected");
        }
    }

    #[test]
    fn header_checks() {
        let bytes = encode(0, 1, &[rec(None, b"v", 1)], Compression::None).unwrap();
        assert!(matches!(
            BatchHeader::parse(&bytes[..10]),
            Err(Defect::ShortHeader { available: 10, .. })
        ));
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert!(matches!(
            BatchHeader::parse(&bad),
            Err(Defect::BadMagic { .. })
        ));
        let mut bad = bytes.clone();
        bad[3] = 5;
        assert_eq!(
            BatchHeader::parse(&bad).unwrap_err(),
            Defect::UnsupportedVersion { found: 5 }
        );
    }

    #[test]
    fn varints_and_zigzag() {
        for v in [0i64, 1, -1, 63, -64, 64, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        for v in [0u64, 127, 128, 300, u64::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            let mut c = Cursor { buf: &buf, pos: 0 };
            assert_eq!(c.varint().unwrap(), v);
            assert_eq!(c.pos, buf.len());
        }
    }
}
