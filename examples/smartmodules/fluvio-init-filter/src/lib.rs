//! A filter in the style of modules written for Fluvio's SDK, to show they
//! build here with only the crate name changed: errors made with `eyre!`,
//! `SmartModuleExtraParams` and `SmartModuleInitError` taken from
//! `dataplane::smartmodule`, `SmartModuleRecord` as the record type. Keeps
//! the records whose value contains the parameter `key`, which is required.

use std::sync::OnceLock;

use sluice_smartmodule::{
    Result, SmartModuleRecord,
    dataplane::smartmodule::{SmartModuleExtraParams, SmartModuleInitError},
    eyre, smartmodule,
};

static NEEDLE: OnceLock<String> = OnceLock::new();

#[smartmodule(init)]
fn init(params: SmartModuleExtraParams) -> Result<()> {
    match params.get("key") {
        Some(key) => NEEDLE
            .set(key.clone())
            .map_err(|old| eyre!("the key is set already (to {old:?})")),
        None => Err(SmartModuleInitError::MissingParam("key".to_string()).into()),
    }
}

#[smartmodule(filter)]
pub fn filter(record: &SmartModuleRecord) -> Result<bool> {
    let value = std::str::from_utf8(record.value.as_ref())?;
    let needle = NEEDLE
        .get()
        .ok_or_else(|| eyre!("init did not run: no key to look for"))?;
    Ok(value.contains(needle.as_str()))
}
