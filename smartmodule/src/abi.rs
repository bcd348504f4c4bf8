//! The byte layout that crosses the boundary between a SmartModule and the host.
//!
//! Both sides use this one module, so the guest's encoder and the host's decoder cannot
//! drift apart. The full contract (exports, calling sequence, ownership of buffers) is in
//! `smartmodule/ABI.md`; this file is only the encoding.
//!
//! All integers are little-endian. The decoder treats its input as hostile: every length
//! is checked against the bytes that remain, and counts never size an allocation beyond
//! what the remaining bytes could hold, so a corrupt buffer yields a [`DecodeError`],
//! never a panic or a huge allocation.
//!
//! ```text
//! batch     = count:u32 record*count
//! record    = offset:i64 timestamp:i64 key value
//! key       = 0:u8 | 1:u8 bytes
//! value     = bytes
//! bytes     = len:u32 u8*len
//! params    = count:u32 (bytes bytes)*count          -- key, value (UTF-8)
//! agg input = bytes batch                             -- accumulator, then the records
//! result    = 0:u8 payload | 1:u8 offset:i64 bytes    -- Ok(payload) | Err(offset, UTF-8 message)
//! transform payload = batch failure                   -- outputs of the records before any failure
//! failure   = 0:u8 | 1:u8 offset:i64 bytes            -- none | the record's offset and the message
//! ```

/// Version of this ABI. A module reports it through its `sluice_abi_version` export and
/// the host refuses modules whose version it does not support.
pub const ABI_VERSION: u32 = 1;

/// Offset reported in an error that no particular record caused (init, params).
pub const NO_OFFSET: i64 = -1;

/// Tag of a successful result.
pub const RESULT_OK: u8 = 0;
/// Tag of a failed result.
pub const RESULT_ERR: u8 = 1;

/// The smallest encoded record: offset, timestamp, key tag, value length.
const RECORD_BYTES_MIN: usize = 8 + 8 + 1 + 4;
/// The smallest encoded parameter: two empty strings.
const PARAM_BYTES_MIN: usize = 4 + 4;

/// A record as it appears on the wire, borrowing its bytes from the buffer it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRecord<'a> {
    /// Offset of the record in its partition (outputs keep their input's offset).
    pub offset: i64,
    /// Milliseconds since the Unix epoch, as stored with the record.
    pub timestamp: i64,
    /// Optional key.
    pub key: Option<&'a [u8]>,
    /// Value.
    pub value: &'a [u8],
}

/// Why a buffer could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// What was being read when the buffer ran out or held an impossible value.
    pub what: &'static str,
    /// Byte position in the buffer.
    pub at: usize,
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "malformed buffer: bad {} at byte {}", self.what, self.at)
    }
}

impl std::error::Error for DecodeError {}

/// Appends little-endian primitives and length-prefixed byte strings to a buffer.
#[derive(Debug, Default)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// An empty encoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// An encoder that reserves `capacity` bytes up front.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
        }
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    /// Appends a `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends an `i64`.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends a length-prefixed byte string.
    ///
    /// # Panics
    /// If `bytes` is 4 GiB or longer, which a 32-bit guest cannot hold anyway.
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        let len = u32::try_from(bytes.len()).expect("byte string longer than u32::MAX");
        self.u32(len);
        self.buf.extend_from_slice(bytes);
        self
    }

    /// Appends a batch header for `count` records.
    pub fn count(&mut self, count: usize) -> &mut Self {
        let count = u32::try_from(count).expect("more than u32::MAX items");
        self.u32(count)
    }

    /// Appends one record.
    pub fn record(&mut self, r: RawRecord<'_>) -> &mut Self {
        self.i64(r.offset).i64(r.timestamp);
        match r.key {
            Some(key) => self.u8(1).bytes(key),
            None => self.u8(0),
        };
        self.bytes(r.value)
    }

    /// Overwrites the `u32` written earlier at byte `at` (a count not known in advance).
    ///
    /// # Panics
    /// If `at + 4` is past the end of what was written.
    pub fn patch_u32(&mut self, at: usize, v: u32) {
        self.buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    /// Number of bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The encoded bytes so far.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// The encoded bytes.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads what [`Encoder`] wrote, checking every length against the bytes that remain.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    /// A decoder over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError { what, at: self.pos });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    /// Reads a `u32`.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads an `i64`.
    pub fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_le_bytes(a))
    }

    /// Reads a length-prefixed byte string.
    pub fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let at = self.pos;
        let len = self.u32(what)? as usize;
        self.take(len, what).map_err(|_| DecodeError { what, at })
    }

    /// Reads a count of items each at least `item_bytes_min` long, refusing counts that the
    /// remaining bytes could not hold.
    pub fn count(
        &mut self,
        item_bytes_min: usize,
        what: &'static str,
    ) -> Result<usize, DecodeError> {
        let at = self.pos;
        let count = self.u32(what)? as usize;
        if count.saturating_mul(item_bytes_min) > self.remaining() {
            return Err(DecodeError { what, at });
        }
        Ok(count)
    }

    /// Reads one record.
    pub fn record(&mut self) -> Result<RawRecord<'a>, DecodeError> {
        let offset = self.i64("record offset")?;
        let timestamp = self.i64("record timestamp")?;
        let at = self.pos;
        let key = match self.u8("record key tag")? {
            0 => None,
            1 => Some(self.bytes("record key")?),
            _ => {
                return Err(DecodeError {
                    what: "record key tag",
                    at,
                });
            }
        };
        let value = self.bytes("record value")?;
        Ok(RawRecord {
            offset,
            timestamp,
            key,
            value,
        })
    }

    /// Reads a whole batch of records.
    pub fn records(&mut self) -> Result<Vec<RawRecord<'a>>, DecodeError> {
        let count = self.count(RECORD_BYTES_MIN, "record count")?;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(self.record()?);
        }
        Ok(out)
    }

    /// Reads a parameter map as (key, value) pairs of UTF-8 strings.
    pub fn params(&mut self) -> Result<Vec<(&'a str, &'a str)>, DecodeError> {
        let count = self.count(PARAM_BYTES_MIN, "parameter count")?;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let at = self.pos;
            let k = self.bytes("parameter key")?;
            let v = self.bytes("parameter value")?;
            match (core::str::from_utf8(k), core::str::from_utf8(v)) {
                (Ok(k), Ok(v)) => out.push((k, v)),
                _ => {
                    return Err(DecodeError {
                        what: "parameter (not UTF-8)",
                        at,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Fails unless every byte was read: trailing garbage means the two sides disagree.
    pub fn end(&self) -> Result<(), DecodeError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(DecodeError {
                what: "trailing bytes",
                at: self.pos,
            })
        }
    }
}

/// A decoded `result` buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbiResult<'a> {
    /// The call succeeded; the payload's layout depends on the call.
    Ok(&'a [u8]),
    /// The module reported an error for the record at `offset` ([`NO_OFFSET`] if none).
    Err {
        /// Offset of the record that failed.
        offset: i64,
        /// The module's message.
        message: String,
    },
}

/// Decodes a `result` buffer.
pub fn decode_result(buf: &[u8]) -> Result<AbiResult<'_>, DecodeError> {
    let mut d = Decoder::new(buf);
    match d.u8("result tag")? {
        RESULT_OK => Ok(AbiResult::Ok(&buf[1..])),
        RESULT_ERR => {
            let offset = d.i64("error offset")?;
            let message = String::from_utf8_lossy(d.bytes("error message")?).into_owned();
            d.end()?;
            Ok(AbiResult::Err { offset, message })
        }
        _ => Err(DecodeError {
            what: "result tag",
            at: 0,
        }),
    }
}

/// Encodes an error `result`.
pub fn encode_error(offset: i64, message: &str) -> Vec<u8> {
    let mut e = Encoder::with_capacity(1 + 8 + 4 + message.len());
    e.u8(RESULT_ERR).i64(offset).bytes(message.as_bytes());
    e.finish()
}

/// Encodes a parameter map.
pub fn encode_params<'k>(params: impl ExactSizeIterator<Item = (&'k str, &'k str)>) -> Vec<u8> {
    let mut e = Encoder::new();
    e.count(params.len());
    for (k, v) in params {
        e.bytes(k.as_bytes()).bytes(v.as_bytes());
    }
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_what_a_module_hands_back() {
        // A module's output is written by untrusted code: the host decodes
        // it with these, so no output may make them panic or over-allocate.
        let mut out = Encoder::new();
        out.u8(RESULT_OK).count(2);
        for (i, key) in [(1i64, Some(&b"k"[..])), (2, None)] {
            out.record(RawRecord {
                offset: i,
                timestamp: i * 10,
                key,
                value: b"value",
            });
        }
        let mut params = Encoder::new();
        params.count(1).bytes(b"key").bytes(b"value");
        let seeds = vec![out.finish(), encode_error(3, "bad record"), params.finish()];
        sluice_fuzzing::run("smartmodule::abi", &seeds, |bytes| {
            let _ = decode_result(bytes);
            if let Some(rest) = bytes.get(1..) {
                let _ = Decoder::new(rest).records();
            }
            let _ = Decoder::new(bytes).params();
        });
    }

    #[test]
    fn records_round_trip() {
        let recs = [
            RawRecord {
                offset: 7,
                timestamp: -1,
                key: Some(b"k"),
                value: b"hello",
            },
            RawRecord {
                offset: 8,
                timestamp: 5,
                key: None,
                value: b"",
            },
        ];
        let mut e = Encoder::new();
        e.count(recs.len());
        for r in recs {
            e.record(r);
        }
        let buf = e.finish();
        let mut d = Decoder::new(&buf);
        assert_eq!(d.records().unwrap(), recs);
        d.end().unwrap();
    }

    #[test]
    fn every_truncation_is_an_error() {
        let mut e = Encoder::new();
        e.count(1).record(RawRecord {
            offset: 1,
            timestamp: 2,
            key: Some(b"key"),
            value: b"value",
        });
        let buf = e.finish();
        for cut in 0..buf.len() {
            assert!(Decoder::new(&buf[..cut]).records().is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn huge_count_is_refused_without_allocating() {
        let buf = u32::MAX.to_le_bytes();
        assert!(Decoder::new(&buf).records().is_err());
        assert!(Decoder::new(&buf).params().is_err());
    }

    #[test]
    fn results_round_trip() {
        let err = encode_error(42, "boom");
        assert_eq!(
            decode_result(&err).unwrap(),
            AbiResult::Err {
                offset: 42,
                message: "boom".into()
            }
        );
        assert_eq!(decode_result(&[0, 1, 2]).unwrap(), AbiResult::Ok(&[1, 2]));
        assert!(decode_result(&[9]).is_err());
        assert!(decode_result(&[]).is_err());
    }

    #[test]
    fn params_round_trip() {
        let buf = encode_params([("a", "1"), ("b", "")].into_iter());
        assert_eq!(
            Decoder::new(&buf).params().unwrap(),
            vec![("a", "1"), ("b", "")]
        );
    }
}
