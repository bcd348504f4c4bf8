//! A record holding a JSON object becomes one record per value, in the
//! order of the keys (sorted), each value re-serialized as JSON
//! (`{"a": "Apple"}` gives `"Apple"`).

use sluice_smartmodule::{Record, RecordData, Result, smartmodule};

#[smartmodule(array_map)]
pub fn array_map(record: &Record) -> Result<Vec<(Option<RecordData>, RecordData)>> {
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(record.value.as_ref())?;
    object
        .into_iter()
        .map(|(_, value)| Ok((None, serde_json::to_string(&value)?.into())))
        .collect()
}
