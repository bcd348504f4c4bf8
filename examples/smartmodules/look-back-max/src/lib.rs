//! Keeps each record whose value (a number) is above every number seen
//! before it: a running maximum. Its `look_back` function is shown the
//! partition's last records when the stream starts (`consume
//! --lookback-last N`), so a stream that starts at the end of the topic
//! still knows the maximum so far instead of passing the first record it
//! meets.

use std::sync::atomic::{AtomicI64, Ordering};

use sluice_smartmodule::{Result, SmartModuleRecord, eyre, smartmodule};

static MAX: AtomicI64 = AtomicI64::new(i64::MIN);

fn number(record: &SmartModuleRecord) -> Result<i64> {
    let text = std::str::from_utf8(record.value.as_ref())?;
    text.trim()
        .parse()
        .map_err(|e| eyre!("{text:?} is not a number: {e}"))
}

#[smartmodule(filter)]
pub fn filter(record: &SmartModuleRecord) -> Result<bool> {
    let n = number(record)?;
    Ok(MAX.fetch_max(n, Ordering::Relaxed) < n)
}

#[smartmodule(look_back)]
pub fn look_back(record: &SmartModuleRecord) -> Result<()> {
    MAX.fetch_max(number(record)?, Ordering::Relaxed);
    Ok(())
}
