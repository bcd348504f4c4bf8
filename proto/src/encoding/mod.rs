//! The binary encoding of every Sluice byte format: wire frames, Raft
//! entries and RPCs, controller commands and metadata, partition commands,
//! snapshots and producer tables. One encoding, owned here, so that what a
//! node writes and what it reads cannot drift apart.
//!
//! It is a serde data format, byte for byte the one Sluice wrote with
//! bincode 2's standard configuration before this module replaced it (the
//! crate is unmaintained, RUSTSEC-2025-0141; the golden files under each
//! crate's `tests/golden/` hold the two equal):
//!
//! - integers wider than a byte are varints: a value up to 250 is one byte,
//!   larger ones a marker byte (251, 252, 253, 254) and then the value as a
//!   little-endian `u16`, `u32`, `u64` or `u128`; signed integers are
//!   zigzagged first; `u8`/`i8` are one byte, floats little-endian;
//! - `bool` and an `Option`'s tag are a byte 0 or 1; a `char` is its UTF-8;
//! - strings, byte strings, sequences and maps are a varint length, then the
//!   bytes or the elements (a map's as key, value, ...);
//! - structs and tuples are their fields in order, without names or a count;
//! - an enum is its variant index as a varint, then the variant's fields.
//!
//! Nothing describes itself, so a type that needs `deserialize_any`
//! (untagged or flattened serde attributes) is refused.
//!
//! Decoding is written for hostile input: it reads only the bytes given, up
//! to a limit the caller names; a length is checked against the bytes left
//! before anything is allocated or looped over; nesting deeper than
//! [`DEPTH_MAX`] is refused; every failure is an error naming the byte
//! where it happened, never a panic.

mod de;
mod ser;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

/// Deepest nesting of sequences, maps, structs, enums and options a decode
/// accepts. Sluice's types have no recursion and nest a dozen levels at
/// most; a deeper input is hostile or corrupt, and refusing it keeps a
/// decoder's stack use bounded whatever the bytes say.
pub const DEPTH_MAX: usize = 64;

/// A value serde could not encode: a sequence or map without a known length,
/// or a type's own `Serialize` error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EncodeError(String);

/// Bytes that are not an encoding of the type asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (at byte {offset})")]
pub struct DecodeError {
    /// Where in the input the decoder stood when it gave up.
    pub offset: usize,
    pub reason: String,
}

/// `value`'s encoding.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(64);
    append_to(&mut out, value)?;
    Ok(out)
}

/// Appends `value`'s encoding to `out` (after a header the caller wrote, say).
pub fn append_to<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), EncodeError> {
    value.serialize(&mut ser::Encoder { out })
}

/// Decodes a `T` from the front of `bytes`, reading at most `limit_bytes`
/// of them, and returns it with the number of bytes it took. Borrowed
/// fields (`&str`, `&[u8]`) point into `bytes`.
pub fn from_slice<'de, T: Deserialize<'de>>(
    bytes: &'de [u8],
    limit_bytes: usize,
) -> Result<(T, usize), DecodeError> {
    let mut decoder = de::Decoder::new(bytes, limit_bytes);
    let decoded = T::deserialize(&mut decoder);
    decoder.finish(decoded)
}

/// Decodes a `T` that must take all of `bytes` (at most `limit_bytes`):
/// bytes left over mean the writer and this build disagree on the type.
pub fn from_slice_whole<'de, T: Deserialize<'de>>(
    bytes: &'de [u8],
    limit_bytes: usize,
) -> Result<T, DecodeError> {
    let (value, used) = from_slice(bytes, limit_bytes)?;
    if used != bytes.len() {
        return Err(DecodeError {
            offset: used,
            reason: format!("{} bytes follow the value", bytes.len() - used),
        });
    }
    Ok(value)
}
