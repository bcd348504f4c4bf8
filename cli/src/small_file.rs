//! Reading the small files commands take (topic files, assignment and
//! metadata files, table formats): whole, as text, and never more than a
//! stated bound, so a wrong path (a log, a device) fails with a clear error
//! instead of filling memory.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};

/// The text of `path` (`what` names it in errors), refused past `max_bytes`.
pub fn read(path: &Path, max_bytes: u64, what: &str) -> anyhow::Result<String> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    let mut text = String::new();
    // One byte past the bound tells a file that is too large.
    file.take(max_bytes + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {what} {} as text", path.display()))?;
    if text.len() as u64 > max_bytes {
        bail!(
            "{what} {} holds more than {max_bytes} bytes, the most such a file may",
            path.display()
        );
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_past_its_bound_is_refused_and_one_within_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.yaml");
        std::fs::write(&path, "x".repeat(10)).unwrap();
        assert_eq!(read(&path, 10, "topic file").unwrap(), "x".repeat(10));
        let e = read(&path, 9, "topic file").unwrap_err().to_string();
        assert!(e.contains("holds more than 9 bytes"), "{e}");
        let e = format!(
            "{:#}",
            read(&dir.path().join("none"), 9, "topic file").unwrap_err()
        );
        assert!(e.contains("cannot read topic file"), "{e}");
    }
}
