//! Keeps the even integers and halves them; other integers are dropped.

use sluice_smartmodule::{Record, RecordData, Result, smartmodule};

#[smartmodule(filter_map)]
pub fn filter_map(record: &Record) -> Result<Option<(Option<RecordData>, RecordData)>> {
    let n: i64 = std::str::from_utf8(record.value.as_ref())?.trim().parse()?;
    Ok((n % 2 == 0).then(|| (record.key.clone(), (n / 2).to_string().into())))
}
