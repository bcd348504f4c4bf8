//! Seed 000: masks every social security number (`ddd-dd-dddd`) as `***-**-****`.
//!
//! A hand-written matcher instead of the `regex` crate keeps the module small and the build
//! offline-safe; it matches exactly what `\d{3}-\d{2}-\d{4}` matches (ASCII digits).

use sluice_smartmodule::{Record, RecordData, Result, smartmodule};

/// The SSN layout: `d` is an ASCII digit, `-` a literal hyphen.
const PATTERN: &[u8] = b"ddd-dd-dddd";
const MASK: &[u8] = b"***-**-****";

fn matches_at(bytes: &[u8], at: usize) -> bool {
    bytes.len() - at >= PATTERN.len()
        && PATTERN.iter().zip(&bytes[at..]).all(|(p, b)| match p {
            b'd' => b.is_ascii_digit(),
            _ => p == b,
        })
}

/// Replaces every non-overlapping SSN, scanning left to right like `replace_all`.
pub fn scrub(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if matches_at(bytes, i) {
            out.extend_from_slice(MASK);
            i += PATTERN.len();
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

#[smartmodule(map)]
pub fn map(record: &Record) -> Result<(Option<RecordData>, RecordData)> {
    let key = record.key.clone();
    let string = std::str::from_utf8(record.value.as_ref())?;
    let output = scrub(string.as_bytes());
    Ok((key, output.into()))
}
