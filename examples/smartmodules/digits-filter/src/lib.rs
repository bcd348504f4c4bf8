//! Seed 004: keeps only the messages that are not all digits.

use sluice_smartmodule::{Record, Result, smartmodule};

#[smartmodule(filter)]
pub fn filter(record: &Record) -> Result<bool> {
    let message = std::str::from_utf8(record.value.as_ref())?;
    Ok(!message.chars().all(char::is_numeric))
}
