//! Concatenates the values seen so far: the accumulator starts at
//! `--initial` (empty by default) and each record's value is appended.

use sluice_smartmodule::{Record, RecordData, Result, smartmodule};

#[smartmodule(aggregate)]
pub fn aggregate(accumulator: RecordData, record: &Record) -> Result<RecordData> {
    let mut out = accumulator.as_ref().to_vec();
    out.extend_from_slice(record.value.as_ref());
    Ok(out.into())
}
