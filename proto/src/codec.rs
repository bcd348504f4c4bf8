//! The one codec: how a message becomes the bytes of a frame and back.
//!
//! A frame payload is a big-endian `u16` protocol version followed by the
//! [`encoding`](crate::encoding) of the message. The version comes
//! first and never moves, so a peer speaking another version is recognised and
//! told so instead of failing to decode garbage. Decoding is bounded by
//! [`FRAME_SIZE_BYTES_MAX`]: nothing is allocated beyond what the frame holds.

use serde::{Serialize, de::DeserializeOwned};

use crate::limits::FRAME_SIZE_BYTES_MAX;

/// The protocol version this build speaks. Bump on any incompatible change of
/// a type in this crate.
///
/// 2: requests are authorized (ACL requests, [`WireError::Denied`](crate::WireError::Denied)).
pub const PROTOCOL_VERSION: u16 = 2;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error(
        "the peer speaks protocol version {peer} but this build speaks version {ours}; use a `sluice` binary of the same release as the cluster"
    )]
    VersionMismatch { peer: u16, ours: u16 },
    #[error("frame of {len} bytes is too short to hold a protocol version")]
    TooShort { len: usize },
    #[error("malformed {what} frame: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("{what} does not fit in a frame: {reason}")]
    Encode { what: &'static str, reason: String },
}

/// The buffer [`encode`] starts with: most messages are small.
pub const ENCODE_BUFFER_BYTES_DEFAULT: usize = 64;

/// Encodes `msg` as a frame payload (version + body).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, CodecError> {
    encode_sized(msg, ENCODE_BUFFER_BYTES_DEFAULT)
}

/// [`encode`] into a buffer of `capacity` bytes to begin with: a sender that
/// knows about how large the message is (a frame of records) saves the
/// buffer's regrowth and its copies.
pub fn encode_sized<T: Serialize>(msg: &T, capacity: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(capacity);
    out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    crate::encoding::append_to(&mut out, msg).map_err(|e| CodecError::Encode {
        what: std::any::type_name::<T>(),
        reason: e.to_string(),
    })?;
    Ok(out)
}

/// Reads the protocol version of a frame payload without decoding the body.
pub fn peek_version(frame: &[u8]) -> Result<u16, CodecError> {
    match frame {
        [a, b, ..] => Ok(u16::from_be_bytes([*a, *b])),
        _ => Err(CodecError::TooShort { len: frame.len() }),
    }
}

/// Decodes a frame payload, checking the version first. Trailing bytes after
/// the message are an error: they mean the peer and we disagree on the type.
pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, CodecError> {
    let body = body(frame)?;
    let what = short_type_name::<T>();
    let decoded = crate::encoding::from_slice(body, FRAME_SIZE_BYTES_MAX);
    whole_message(what, body, decoded)
}

/// The message bytes of a frame payload, once its version is ours.
fn body(frame: &[u8]) -> Result<&[u8], CodecError> {
    let version = peek_version(frame)?;
    if version != PROTOCOL_VERSION {
        return Err(CodecError::VersionMismatch {
            peer: version,
            ours: PROTOCOL_VERSION,
        });
    }
    Ok(&frame[2..])
}

/// The decoded message, provided it used all of `body`: trailing bytes mean
/// the peer and we disagree on the type.
fn whole_message<T>(
    what: &'static str,
    body: &[u8],
    decoded: Result<(T, usize), crate::encoding::DecodeError>,
) -> Result<T, CodecError> {
    let (msg, used) = decoded.map_err(|e| CodecError::Malformed {
        what,
        reason: e.to_string(),
    })?;
    if used != body.len() {
        return Err(CodecError::Malformed {
            what,
            reason: format!("{} trailing bytes after the message", body.len() - used),
        });
    }
    Ok(msg)
}

/// The records of a [`Response::Records`](crate::Response::Records) frame,
/// keys and values borrowed from it, and its high watermark; `Ok(None)` when
/// the frame holds another response (decode that with [`decode`]). A consumer
/// that only looks at each record once saves a copy and an allocation per
/// record this way.
pub fn decode_records_ref(
    frame: &[u8],
) -> Result<Option<(Vec<crate::ConsumerRecordRef<'_>>, u64)>, CodecError> {
    use crate::messages::{RESPONSE_RECORDS_INDEX, RESPONSE_RECORDS_WITH_HEADERS_INDEX};
    let body = body(frame)?;
    // The variant index is a varint: one byte below 251.
    const { assert!(RESPONSE_RECORDS_INDEX < 251 && RESPONSE_RECORDS_WITH_HEADERS_INDEX < 251) };
    /// `Records`' fields: its records have no headers.
    #[derive(serde::Deserialize)]
    struct Plain<'a>(
        #[serde(with = "crate::record::v1::borrowed", borrow)] Vec<crate::ConsumerRecordRef<'a>>,
        u64,
    );
    // A struct variant's fields follow the index as a tuple would.
    match body.split_first() {
        Some((&index, fields)) if u32::from(index) == RESPONSE_RECORDS_INDEX => {
            let decoded = crate::encoding::from_slice::<Plain<'_>>(fields, FRAME_SIZE_BYTES_MAX)
                .map(|(Plain(records, hw), used)| ((records, hw), used));
            whole_message("Records", fields, decoded).map(Some)
        }
        Some((&index, fields)) if u32::from(index) == RESPONSE_RECORDS_WITH_HEADERS_INDEX => {
            let decoded = crate::encoding::from_slice(fields, FRAME_SIZE_BYTES_MAX);
            whole_message("RecordsWithHeaders", fields, decoded).map(Some)
        }
        _ => Ok(None),
    }
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Request, Response, StartOffset};

    /// Borrowed records as `RecordsRef` encodes them, and the owned response
    /// that encodes to the same bytes.
    fn both_ways(owned: Vec<crate::ConsumerRecord>, with_headers: bool) {
        let borrowed: Vec<_> = owned.iter().map(crate::ConsumerRecord::borrowed).collect();
        let high_watermark = 1 << 41;
        let by_ref = encode(&crate::RecordsRef {
            records: &borrowed,
            high_watermark,
        })
        .unwrap();
        let response = if with_headers {
            Response::RecordsWithHeaders {
                records: owned.clone(),
                high_watermark,
            }
        } else {
            Response::Records {
                records: owned.clone(),
                high_watermark,
            }
        };
        assert_eq!(by_ref, encode(&response).unwrap());
        assert_eq!(decode::<Response>(&by_ref).unwrap(), response);
        let (read, hw) = decode_records_ref(&by_ref).unwrap().unwrap();
        assert_eq!(hw, high_watermark);
        let copied: Vec<_> = read.iter().map(|r| r.to_owned_record()).collect();
        assert_eq!(copied, owned);
    }

    #[test]
    fn records_with_headers_travel_in_their_own_response_and_come_back_whole() {
        let plain = crate::ConsumerRecord {
            partition: 0,
            offset: 1,
            key: None,
            value: b"v".to_vec(),
            timestamp_ms: 9,
            headers: Vec::new(),
        };
        let mut headed = plain.clone();
        headed.offset = 2;
        headed.headers = vec![
            crate::RecordHeader::new("trace", "abc"),
            crate::RecordHeader::new("trace", ""),
        ];
        both_ways(vec![plain.clone(), headed.clone()], true);
        both_ways(vec![plain.clone()], false);
        // The shape without headers refuses one that has them, rather
        // than dropping them.
        let refused = encode(&Response::Records {
            records: vec![headed.clone()],
            high_watermark: 3,
        });
        assert!(refused.is_err(), "{refused:?}");
        let request = Request::Produce(crate::ProduceRequest {
            topic: "t".into(),
            partition: 0,
            records: vec![crate::Record::new("x").header("h", "1")],
            producer: None,
        });
        assert!(encode(&request).is_err());
        // Where the variant lies is what `RecordsRef` and
        // `decode_records_ref` assume.
        let frame = encode(&Response::RecordsWithHeaders {
            records: vec![headed],
            high_watermark: 3,
        })
        .unwrap();
        assert_eq!(
            u32::from(frame[2]),
            crate::messages::RESPONSE_RECORDS_WITH_HEADERS_INDEX
        );
        // Damaged headers inside a frame are a malformed frame.
        let mut damaged = frame.clone();
        let at = damaged
            .windows(5)
            .position(|w| w == b"trace")
            .expect("the header's name is in the frame");
        damaged[at - 1] = 200;
        assert!(decode_records_ref(&damaged).is_err());
        assert!(decode::<Response>(&damaged).is_err());
    }

    #[test]
    fn borrowed_records_encode_exactly_as_owned_ones() {
        let owned = vec![
            crate::ConsumerRecord {
                partition: 2,
                offset: 7,
                key: None,
                value: vec![1; 300],
                timestamp_ms: -5,
                headers: Vec::new(),
            },
            crate::ConsumerRecord {
                partition: 2,
                offset: 1 << 40,
                key: Some(b"key".to_vec()),
                value: Vec::new(),
                timestamp_ms: 1_700_000_000_000,
                headers: Vec::new(),
            },
        ];
        both_ways(owned, false);
    }

    #[test]
    fn records_decode_borrowed_from_the_frame_and_other_responses_are_left_alone() {
        let owned = vec![
            crate::ConsumerRecord {
                partition: 1,
                offset: 300,
                key: Some(b"k".to_vec()),
                value: vec![9; 1024],
                timestamp_ms: 5,
                headers: Vec::new(),
            },
            crate::ConsumerRecord {
                partition: 1,
                offset: 301,
                key: None,
                value: Vec::new(),
                timestamp_ms: -1,
                headers: Vec::new(),
            },
        ];
        let frame = encode(&Response::Records {
            records: owned.clone(),
            high_watermark: 302,
        })
        .unwrap();
        let (records, high_watermark) = decode_records_ref(&frame).unwrap().unwrap();
        assert_eq!(high_watermark, 302);
        let copied: Vec<_> = records.iter().map(|r| r.to_owned_record()).collect();
        assert_eq!(copied, owned);
        // The value lies in the frame itself.
        let frame_bytes = frame.as_ptr_range();
        assert!(frame_bytes.contains(&records[0].value.as_ptr()));

        let other = encode(&Response::FetchEnd { next_offset: 3 }).unwrap();
        assert_eq!(decode_records_ref(&other), Ok(None));
        let mut trailing = frame.clone();
        trailing.push(0);
        assert!(matches!(
            decode_records_ref(&trailing),
            Err(CodecError::Malformed { .. })
        ));
        let mut cut = frame;
        cut.truncate(cut.len() - 10);
        assert!(matches!(
            decode_records_ref(&cut),
            Err(CodecError::Malformed { .. })
        ));
    }

    #[test]
    fn round_trip() {
        let req = Request::Fetch(crate::FetchRequest {
            topic: "t".into(),
            partition: 3,
            start: StartOffset::FromEnd(5),
            end_offset: Some(9),
            max_records: None,
            follow: true,
            max_bytes: 1024,
            read_from: crate::ReadFrom::Follower,
            replica: Some(2),
            smartmodules: vec![crate::SmartModuleInvocation {
                module: crate::SmartModuleSource::AdHoc {
                    name: "f.wasm".into(),
                    wasm: vec![0, 97, 115, 109],
                },
                kind: Some(crate::SmartModuleKind::Filter),
                params: [("k".to_string(), "v".to_string())].into(),
                initial: None,
            }],
        });
        let bytes = encode(&req).unwrap();
        assert_eq!(decode::<Request>(&bytes).unwrap(), req);
    }

    #[test]
    fn other_version_is_recognised() {
        let mut bytes = encode(&Response::TopicDeleted).unwrap();
        bytes[0..2].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(
            decode::<Response>(&bytes),
            Err(CodecError::VersionMismatch {
                peer: 7,
                ours: PROTOCOL_VERSION
            })
        );
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let mut bytes = PROTOCOL_VERSION.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0xff; 40]);
        assert!(matches!(
            decode::<Request>(&bytes),
            Err(CodecError::Malformed { .. })
        ));
        assert_eq!(
            decode::<Request>(&[1]),
            Err(CodecError::TooShort { len: 1 })
        );
    }

    #[test]
    fn huge_declared_length_does_not_allocate() {
        // A length prefix claiming 2^60 bytes must fail on the limit, not allocate.
        let mut bytes = PROTOCOL_VERSION.to_be_bytes().to_vec();
        bytes.push(7); // `Request::Fetch`, whose topic string then claims 2^60 bytes
        bytes.extend_from_slice(&[0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(decode::<Request>(&bytes).is_err());
    }
}
