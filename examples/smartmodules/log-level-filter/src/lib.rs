//! Keeps the log lines of level `error`. Each record's value is a JSON
//! object, parsed and checked in full (every field, nested ones included,
//! not only `level`), as a filter over structured records does: the module
//! that does real work in `scripts/bench-filter.sh` (`MODULE=log-level-filter`),
//! next to `hello-filter`, which only looks for a letter. A value that is not
//! a JSON object with a string `level` is an error naming the record.

use serde::Deserialize;
use sluice_smartmodule::{Record, Result, smartmodule};
use std::borrow::Cow;

#[derive(Deserialize)]
struct LogLine<'a> {
    /// Borrowed from the record unless it holds escapes.
    #[serde(borrow)]
    level: Cow<'a, str>,
}

#[smartmodule(filter)]
pub fn filter(record: &Record) -> Result<bool> {
    let line: LogLine = serde_json::from_slice(record.value.as_ref())?;
    Ok(line.level == "error")
}
