//! Running sum of integer records; the accumulator starts at `--initial` (empty means 0).

use sluice_smartmodule::{Record, RecordData, Result, smartmodule};

#[smartmodule(aggregate)]
pub fn aggregate(accumulator: RecordData, record: &Record) -> Result<RecordData> {
    let acc = std::str::from_utf8(accumulator.as_ref())?.trim();
    let acc: i64 = if acc.is_empty() { 0 } else { acc.parse()? };
    let n: i64 = std::str::from_utf8(record.value.as_ref())?.trim().parse()?;
    Ok((acc + n).to_string().into())
}
