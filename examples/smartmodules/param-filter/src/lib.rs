//! Keeps the records whose value contains the text of the parameter `key`
//! (`-e key=z`); without it, the letter `a`.

use std::sync::OnceLock;

use sluice_smartmodule::{Error, Record, Result, SmartModuleExtraParams, smartmodule};

static NEEDLE: OnceLock<String> = OnceLock::new();

#[smartmodule(init)]
fn init(params: SmartModuleExtraParams) -> Result<()> {
    let mut needle = "a".to_string();
    for (key, value) in params.iter() {
        match key {
            "key" => needle = value.to_string(),
            other => return Err(Error::msg(format!("unknown parameter `{other}`; use key=TEXT"))),
        }
    }
    NEEDLE
        .set(needle)
        .map_err(|_| Error::msg("init ran twice"))
}

#[smartmodule(filter)]
pub fn filter(record: &Record) -> Result<bool> {
    let value = std::str::from_utf8(record.value.as_ref())?;
    Ok(value.contains(NEEDLE.get().map_or("a", String::as_str)))
}
