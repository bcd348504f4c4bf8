//! Golden files: bytes an earlier build wrote, kept in the repository, that
//! every later build must read back as the same values and write again
//! byte for byte.
//!
//! Why: a format change that a round-trip test cannot see (a field
//! reordered, an integer widened, a new encoder that differs from the old
//! one in one corner) would make an upgraded node misread its own disk or
//! its peers. A golden file is written once, deliberately, and then only
//! read. A file holds a list of samples, each a big-endian `u32` length and
//! that many bytes.
//!
//! Writing: `SLUICE_GOLDEN_WRITE=1 cargo test golden` (re)writes the files of
//! the tests it runs. Do it only for a new file, or when the format changes
//! on purpose, with its version bumped and the old version's reader kept.

use std::fmt::Debug;
use std::path::{Path, PathBuf};

/// Set to write the golden files instead of checking them.
pub const WRITE_ENV: &str = "SLUICE_GOLDEN_WRITE";

/// `<crate>/tests/golden/<name>.bin`.
pub fn path(manifest_dir: &str, name: &str) -> PathBuf {
    Path::new(manifest_dir)
        .join("tests")
        .join("golden")
        .join(format!("{name}.bin"))
}

/// Checks `samples` against the golden file `name` of the crate at
/// `manifest_dir`: each sample encodes to the bytes the file holds for it,
/// and those bytes decode to a value that prints like the sample (`Debug`
/// stands in for equality, which not every type has).
pub fn check<T: Debug>(
    manifest_dir: &str,
    name: &str,
    samples: &[T],
    encode: impl Fn(&T) -> Vec<u8>,
    decode: impl Fn(&[u8]) -> Result<T, String>,
) {
    let file = path(manifest_dir, name);
    let encoded: Vec<Vec<u8>> = samples.iter().map(&encode).collect();
    if std::env::var_os(WRITE_ENV).is_some() {
        let mut out = Vec::new();
        for bytes in &encoded {
            let len = u32::try_from(bytes.len()).expect("a golden sample is below 4 GiB");
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(bytes);
        }
        std::fs::create_dir_all(file.parent().expect("golden files live in a directory")).unwrap();
        std::fs::write(&file, out).unwrap();
        eprintln!("wrote {} ({} samples)", file.display(), samples.len());
        return;
    }
    let golden = std::fs::read(&file).unwrap_or_else(|e| {
        panic!(
            "cannot read golden file {}: {e}; a new one is written with {WRITE_ENV}=1",
            file.display()
        )
    });
    let stored = split(&golden).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert_eq!(
        stored.len(),
        samples.len(),
        "{} holds {} samples, the test has {}",
        file.display(),
        stored.len(),
        samples.len()
    );
    for (i, ((sample, bytes), old)) in samples.iter().zip(&encoded).zip(stored).enumerate() {
        let decoded = decode(old)
            .unwrap_or_else(|e| panic!("{} sample {i} no longer decodes: {e}", file.display()));
        assert_eq!(
            format!("{decoded:?}"),
            format!("{sample:?}"),
            "{} sample {i} decodes to another value",
            file.display()
        );
        assert!(
            bytes.as_slice() == old,
            "{} sample {i} ({sample:?}) now encodes differently:\n  golden {}\n  now    {}",
            file.display(),
            crate::hex(old),
            crate::hex(bytes)
        );
    }
}

/// The samples of a golden file.
fn split(mut bytes: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes
            .split_first_chunk::<4>()
            .ok_or_else(|| format!("a length cut short after {} samples", out.len()))?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err(format!("sample {} is cut short", out.len()));
        }
        let (sample, rest) = rest.split_at(len);
        out.push(sample);
        bytes = rest;
    }
    Ok(out)
}
