//! Reading and writing a history as JSON lines (one [`Op`] per line).
//!
//! JSON lines rather than one JSON document so the runner can append while the
//! run goes on and a history cut short by a crash is still readable up to its
//! last complete line.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

use super::{History, HistoryError, Op};

impl History {
    /// Reads and validates a JSON-lines history file. Blank lines are skipped.
    pub fn read_jsonl(path: impl AsRef<Path>) -> Result<Self, HistoryError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| HistoryError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_reader(file).map_err(|e| match e {
            HistoryError::Read { source, .. } => HistoryError::Read {
                path: path.to_path_buf(),
                source,
            },
            other => other,
        })
    }

    /// Reads and validates a JSON-lines history from any reader.
    pub fn from_reader(reader: impl Read) -> Result<Self, HistoryError> {
        let mut ops = Vec::new();
        for (n, line) in BufReader::new(reader).lines().enumerate() {
            let line = line.map_err(|source| HistoryError::Read {
                path: "<reader>".into(),
                source,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            let op: Op = serde_json::from_str(&line).map_err(|source| HistoryError::Parse {
                line: n + 1,
                source,
            })?;
            ops.push(op);
        }
        History::new(ops)
    }

    /// Parses a JSON-lines history held in a string (handy in tests).
    pub fn from_jsonl_str(text: &str) -> Result<Self, HistoryError> {
        Self::from_reader(text.as_bytes())
    }

    /// Writes the history as JSON lines to `path` (created or truncated).
    pub fn write_jsonl(&self, path: impl AsRef<Path>) -> Result<(), HistoryError> {
        let path = path.as_ref();
        let wrap = |source| HistoryError::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut out = BufWriter::new(File::create(path).map_err(wrap)?);
        self.to_writer(&mut out).map_err(wrap)?;
        out.flush().map_err(wrap)
    }

    /// Writes the history as JSON lines to any writer.
    pub fn to_writer(&self, mut out: impl Write) -> std::io::Result<()> {
        for op in self.ops() {
            serde_json::to_writer(&mut out, op)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }
}
