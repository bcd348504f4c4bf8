//! Upper-cases each record's value (ASCII and Unicode alike); the key is kept.

use sluice_smartmodule::{Record, RecordData, Result, smartmodule};

#[smartmodule(map)]
pub fn map(record: &Record) -> Result<(Option<RecordData>, RecordData)> {
    let value = std::str::from_utf8(record.value.as_ref())?;
    Ok((record.key.clone(), value.to_uppercase().into()))
}
