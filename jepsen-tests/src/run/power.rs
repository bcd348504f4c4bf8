//! Power loss without a lossy file system: a node started with
//! `SLUICE_FSYNC_JOURNAL=1` writes down what it made durable in
//! `<data dir>/fsync-journal.jsonl`; after SIGKILL the suite cuts every file
//! back to that, as a power failure would have.
//!
//! The journal (a contract with the node, JSON lines):
//! ```text
//! {"watch":"/abs/dir","suffix":".log"}  files with this suffix in this dir that no
//!                                       "path" line names were never synced: emptied
//! {"path":"/abs/file","len":N}          the file was synced at length N (last line wins)
//! ```
//! A file is only ever shortened, never extended. A torn last line (the node
//! was killed while writing it) is ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// The journal's file name in a node's data dir.
pub const JOURNAL_FILE: &str = "fsync-journal.jsonl";

#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    Watch { watch: PathBuf, suffix: String },
    Synced { path: PathBuf, len: u64 },
}

/// What a journal says is durable.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Journal {
    /// Directories whose unnamed files with the suffix were never synced.
    pub watches: Vec<(PathBuf, String)>,
    /// The last synced length of each named file.
    pub synced: BTreeMap<PathBuf, u64>,
}

impl Journal {
    pub fn parse(text: &str) -> Journal {
        let mut j = Journal::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Line>(line) {
                Ok(Line::Watch { watch, suffix }) => {
                    if !j.watches.contains(&(watch.clone(), suffix.clone())) {
                        j.watches.push((watch, suffix));
                    }
                }
                Ok(Line::Synced { path, len }) => {
                    j.synced.insert(path, len);
                }
                Err(_) => {} // torn last line
            }
        }
        j
    }

    /// Reads the journal of the node whose data dir is `dir`; `None` if the
    /// node keeps none (it was not started with the journal switch).
    pub fn read(dir: &Path) -> anyhow::Result<Option<Journal>> {
        let path = dir.join(JOURNAL_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(Journal::parse(&text))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }
}

/// What [`lose_unsynced`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Loss {
    pub files_cut: u64,
    pub bytes_lost: u64,
}

fn cut(path: &Path, len: u64, loss: &mut Loss) -> anyhow::Result<()> {
    let current = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot stat {}", path.display())),
    };
    if current <= len {
        return Ok(());
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    file.set_len(len)
        .with_context(|| format!("cannot truncate {}", path.display()))?;
    loss.files_cut += 1;
    loss.bytes_lost += current - len;
    Ok(())
}

/// Cuts every file the journal knows back to its synced length, and empties
/// unsynced files of watched directories. The node must be dead.
pub fn lose_unsynced(journal: &Journal) -> anyhow::Result<Loss> {
    let mut loss = Loss::default();
    for (path, len) in &journal.synced {
        cut(path, *len, &mut loss)?;
    }
    for (dir, suffix) in &journal.watches {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let named = journal.synced.contains_key(&path);
            let matches = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(suffix.as_str()));
            if matches && !named && entry.file_type().is_ok_and(|t| t.is_file()) {
                cut(&path, 0, &mut loss)?;
            }
        }
    }
    Ok(loss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_cut_to_their_synced_length_and_never_extended() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("raft")).unwrap();
        let synced = d.join("raft/000007.log");
        let unsynced = d.join("raft/000008.log");
        let other = d.join("raft/OPTIONS");
        let segment = d.join("seg.log");
        let short = d.join("short.index");
        std::fs::write(&synced, vec![1u8; 100]).unwrap();
        std::fs::write(&unsynced, vec![2u8; 50]).unwrap();
        std::fs::write(&other, vec![3u8; 10]).unwrap();
        std::fs::write(&segment, vec![4u8; 80]).unwrap();
        std::fs::write(&short, vec![5u8; 5]).unwrap();
        let text = format!(
            "{{\"watch\":{:?},\"suffix\":\".log\"}}\n\
             {{\"path\":{:?},\"len\":10}}\n\
             {{\"path\":{:?},\"len\":60}}\n\
             {{\"path\":{:?},\"len\":64}}\n\
             {{\"path\":{:?},\"len\":20}}\n\
             {{\"path\":{:?},\"len\":9\n",
            d.join("raft"),
            synced,
            synced,
            segment,
            short,
            segment,
        );
        let j = Journal::parse(&text);
        assert_eq!(j.synced[&synced], 60, "the last line for a path wins");
        assert_eq!(j.synced[&segment], 64, "a torn line is ignored");
        let loss = lose_unsynced(&j).unwrap();
        assert_eq!(std::fs::metadata(&synced).unwrap().len(), 60);
        assert_eq!(std::fs::metadata(&unsynced).unwrap().len(), 0);
        assert_eq!(std::fs::metadata(&other).unwrap().len(), 10);
        assert_eq!(std::fs::metadata(&segment).unwrap().len(), 64);
        assert_eq!(std::fs::metadata(&short).unwrap().len(), 5);
        assert_eq!(
            loss,
            Loss {
                files_cut: 3,
                bytes_lost: 40 + 50 + 16
            }
        );
    }

    #[test]
    fn no_journal_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Journal::read(dir.path()).unwrap(), None);
    }
}
