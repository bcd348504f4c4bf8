//! Keeps the records whose value contains the letter `a`.

use sluice_smartmodule::{Record, Result, smartmodule};

#[smartmodule(filter)]
pub fn filter(record: &Record) -> Result<bool> {
    let string = std::str::from_utf8(record.value.as_ref())?;
    Ok(string.contains('a'))
}
