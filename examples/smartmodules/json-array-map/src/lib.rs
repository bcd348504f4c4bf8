//! A record holding a JSON array becomes one record per element (each element re-serialized).

use sluice_smartmodule::{Record, RecordData, Result, smartmodule};

#[smartmodule(array_map)]
pub fn array_map(record: &Record) -> Result<Vec<(Option<RecordData>, RecordData)>> {
    let array: Vec<serde_json::Value> = serde_json::from_slice(record.value.as_ref())?;
    array
        .into_iter()
        .map(|element| Ok((None, serde_json::to_string(&element)?.into())))
        .collect()
}
