//! Test module: passes records through, but panics on the record at offset `-e at=N`.
//! Reads its parameter in an `init` function, so it also exercises `#[smartmodule(init)]`.

use sluice_smartmodule::{Error, Record, Result, SmartModuleExtraParams, smartmodule};
use std::sync::atomic::{AtomicI64, Ordering};

static PANIC_AT: AtomicI64 = AtomicI64::new(i64::MIN);

#[smartmodule(init)]
fn init(params: SmartModuleExtraParams) -> Result<()> {
    for (key, value) in params.iter() {
        match key {
            "at" => PANIC_AT.store(value.parse()?, Ordering::Relaxed),
            other => return Err(Error::msg(format!("unknown parameter `{other}`"))),
        }
    }
    Ok(())
}

#[smartmodule(filter)]
pub fn filter(record: &Record) -> Result<bool> {
    if record.offset() == PANIC_AT.load(Ordering::Relaxed) {
        panic!("record {} is cursed", record.offset());
    }
    Ok(true)
}
