//! Compression codecs for batches of records: what a producer sends
//! compressed, and what a topic with a compression setting keeps in its
//! segments.
//!
//! Why one crate: the client compresses, the node decompresses what a client
//! sent and compresses what it stores, and storage expands what it reads.
//! All of them must agree on the exact byte layout of each codec, so it is
//! defined here once. The codec *names* are wire types and live in
//! `sluice_proto::compression`.
//!
//! Every decompression is bounded: the caller names the most bytes it will
//! accept, and a stream that would expand past it (a "zip bomb", or a corrupt
//! length) is refused before more than that is allocated.
//!
//! Layouts (all self-contained, no framing of ours around them except lz4's
//! length):
//! - gzip: RFC 1952, one member, default level.
//! - snappy: the raw block format (its header carries the length).
//! - lz4: a little-endian `u32` of the uncompressed length, then one lz4
//!   block.
//! - zstd: one zstd frame, level 3.

use std::io::Read;

pub use sluice_proto::Compression;

/// zstd's default level: a good ratio at a speed close to lz4's on records.
const ZSTD_LEVEL: i32 = 3;

/// Why bytes could not be decompressed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecompressError {
    #[error("{codec} data is corrupt: {reason}")]
    Corrupt { codec: Compression, reason: String },
    #[error("{codec} data expands to more than {limit} bytes, the most accepted here")]
    TooLarge { codec: Compression, limit: usize },
}

/// `input` compressed with `codec` (`Compression::None` copies it).
pub fn compress(codec: Compression, input: &[u8]) -> Vec<u8> {
    match codec {
        Compression::None => input.to_vec(),
        Compression::Gzip => {
            use std::io::Write;
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder
                .write_all(input)
                .expect("writing to a Vec cannot fail");
            encoder.finish().expect("writing to a Vec cannot fail")
        }
        Compression::Snappy => snap::raw::Encoder::new()
            .compress_vec(input)
            .expect("snappy compresses any input below 4 GiB"),
        Compression::Lz4 => {
            let len = u32::try_from(input.len()).expect("batches are far below 4 GiB");
            let mut out = len.to_le_bytes().to_vec();
            out.extend_from_slice(&lz4_flex::block::compress(input));
            out
        }
        Compression::Zstd => {
            zstd::bulk::compress(input, ZSTD_LEVEL).expect("zstd compresses into a Vec")
        }
    }
}

/// `input` decompressed with `codec`, refused if it would expand to more
/// than `limit` bytes or is not valid data of that codec.
pub fn decompress(
    codec: Compression,
    input: &[u8],
    limit: usize,
) -> Result<Vec<u8>, DecompressError> {
    let corrupt = |reason: String| DecompressError::Corrupt { codec, reason };
    let too_large = || DecompressError::TooLarge { codec, limit };
    match codec {
        Compression::None => {
            if input.len() > limit {
                return Err(too_large());
            }
            Ok(input.to_vec())
        }
        Compression::Gzip => {
            read_bounded(flate2::read::GzDecoder::new(input), limit).map_err(|e| match e {
                Bounded::TooLarge => too_large(),
                Bounded::Io(e) => corrupt(e.to_string()),
            })
        }
        Compression::Snappy => {
            let claimed = snap::raw::decompress_len(input).map_err(|e| corrupt(e.to_string()))?;
            if claimed > limit {
                return Err(too_large());
            }
            snap::raw::Decoder::new()
                .decompress_vec(input)
                .map_err(|e| corrupt(e.to_string()))
        }
        Compression::Lz4 => {
            let Some((len, block)) = input.split_first_chunk::<4>() else {
                return Err(corrupt("shorter than its 4-byte length".into()));
            };
            let claimed = u32::from_le_bytes(*len) as usize;
            if claimed > limit {
                return Err(too_large());
            }
            let out =
                lz4_flex::block::decompress(block, claimed).map_err(|e| corrupt(e.to_string()))?;
            if out.len() != claimed {
                return Err(corrupt(format!(
                    "{} bytes where its length says {claimed}",
                    out.len()
                )));
            }
            Ok(out)
        }
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(input)
                .map_err(|e| corrupt(e.to_string()))?;
            read_bounded(decoder.single_frame(), limit).map_err(|e| match e {
                Bounded::TooLarge => too_large(),
                Bounded::Io(e) => corrupt(e.to_string()),
            })
        }
    }
}

enum Bounded {
    TooLarge,
    Io(std::io::Error),
}

/// Reads `reader` to its end, but never more than `limit + 1` bytes.
fn read_bounded(reader: impl Read, limit: usize) -> Result<Vec<u8>, Bounded> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(Bounded::Io)?;
    if out.len() > limit {
        return Err(Bounded::TooLarge);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..50_000u32)
            .flat_map(|i| format!("record {} says {}\n", i, i % 7).into_bytes())
            .collect()
    }

    #[test]
    fn every_codec_round_trips_and_shrinks_text() {
        let input = sample();
        for codec in Compression::ALL {
            let packed = compress(codec, &input);
            if codec != Compression::None {
                assert!(packed.len() * 3 < input.len(), "{codec}: {}", packed.len());
            }
            assert_eq!(
                decompress(codec, &packed, input.len()).unwrap(),
                input,
                "{codec}"
            );
            assert_eq!(
                decompress(codec, &compress(codec, b""), 0).unwrap(),
                b"",
                "{codec}"
            );
        }
    }

    #[test]
    fn expansion_past_the_limit_is_refused() {
        // 4 MiB of zeros compress to a few KB: a bomb for a 1 MiB limit.
        let zeros = vec![0u8; 4 << 20];
        for codec in Compression::ALL {
            let packed = compress(codec, &zeros);
            assert_eq!(
                decompress(codec, &packed, 1 << 20),
                Err(DecompressError::TooLarge {
                    codec,
                    limit: 1 << 20
                }),
                "{codec}"
            );
            // Exactly at the limit is fine.
            assert_eq!(decompress(codec, &packed, 4 << 20).unwrap().len(), 4 << 20);
        }
        // lz4 and snappy say their length up front: a lying header is
        // refused before anything is allocated for it.
        let mut lying = u32::MAX.to_le_bytes().to_vec();
        lying.extend_from_slice(&[0; 8]);
        assert!(matches!(
            decompress(Compression::Lz4, &lying, 1 << 20),
            Err(DecompressError::TooLarge { .. })
        ));
    }

    #[test]
    fn garbage_and_truncated_data_are_corrupt_not_a_panic() {
        let input = sample();
        for codec in Compression::ALL
            .into_iter()
            .filter(|c| *c != Compression::None)
        {
            let packed = compress(codec, &input);
            let cut = &packed[..packed.len() / 2];
            assert!(
                matches!(
                    decompress(codec, cut, 1 << 24),
                    Err(DecompressError::Corrupt { .. })
                ),
                "{codec} truncated"
            );
            let garbage: Vec<u8> = (0..200u8).map(|b| b.wrapping_mul(37)).collect();
            let err = decompress(codec, &garbage, 1 << 24);
            assert!(err.is_err(), "{codec} garbage");
            let text = err.unwrap_err().to_string();
            assert!(text.starts_with(codec.name()), "{text}");
        }
    }
}
