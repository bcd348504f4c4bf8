//! Test module: never returns, so the host's deadline must stop it.

use sluice_smartmodule::{Record, Result, smartmodule};

#[smartmodule(filter)]
pub fn filter(record: &Record) -> Result<bool> {
    let mut n = record.offset();
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
