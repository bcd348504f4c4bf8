//! Disk corruption of a stopped node: one segment (`.log`) or index (`.index`)
//! file of one of its partition replicas is truncated or has one bit flipped.
//! A correct node notices (CRCs, tail repair) and never serves or votes with
//! the damaged data; the suite then checks nothing acknowledged was lost.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::rng::Rng;
use super::schedule::Damage;

/// Segment and index files under `<node dir>/partitions/*/`, sorted.
pub fn candidate_files(node_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(parts) = std::fs::read_dir(node_dir.join("partitions")) else {
        return out;
    };
    for part in parts.flatten() {
        let Ok(files) = std::fs::read_dir(part.path()) else {
            continue;
        };
        for f in files.flatten() {
            let p = f.path();
            let ext = p.extension().and_then(|e| e.to_str());
            let size = f.metadata().map_or(0, |m| m.len());
            if matches!(ext, Some("log" | "index")) && size > 0 {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Damages one file of `node_dir` (the node must be stopped); returns what was done.
pub fn corrupt(node_dir: &Path, damage: Damage, rng: &mut Rng) -> anyhow::Result<String> {
    let files = candidate_files(node_dir);
    if files.is_empty() {
        bail!(
            "no non-empty segment or index file in {}",
            node_dir.display()
        );
    }
    let path = rng.pick(&files).clone();
    let len = std::fs::metadata(&path)
        .with_context(|| format!("cannot stat {}", path.display()))?
        .len();
    match damage {
        Damage::Truncate => {
            let to = rng.range(0, len);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            f.set_len(to)
                .with_context(|| format!("cannot truncate {}", path.display()))?;
            Ok(format!(
                "truncated {} from {len} to {to} bytes",
                path.display()
            ))
        }
        Damage::BitFlip => {
            let mut bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let at = rng.index(bytes.len());
            let bit = rng.range(0, 8) as u8;
            bytes[at] ^= 1 << bit;
            std::fs::write(&path, &bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(format!(
                "flipped bit {bit} of byte {at} of {} ({len} bytes)",
                path.display()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damage_changes_exactly_what_it_says() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("partitions/t-1-0");
        std::fs::create_dir_all(&part).unwrap();
        let seg = part.join("00000000000000000000.log");
        std::fs::write(&seg, vec![0u8; 64]).unwrap();
        std::fs::write(part.join("producers.bin"), b"x").unwrap();
        assert_eq!(candidate_files(dir.path()), vec![seg.clone()]);

        let what = corrupt(dir.path(), Damage::BitFlip, &mut Rng::new(5)).unwrap();
        let bytes = std::fs::read(&seg).unwrap();
        assert_eq!(bytes.len(), 64);
        let ones: u32 = bytes.iter().map(|b| b.count_ones()).sum();
        assert_eq!(ones, 1, "{what}");

        corrupt(dir.path(), Damage::Truncate, &mut Rng::new(5)).unwrap();
        assert!(std::fs::metadata(&seg).unwrap().len() < 64);
    }
}
