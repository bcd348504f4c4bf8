//! Test module: allocates 1 MiB after 1 MiB without bound, so the memory limit must stop it.

use sluice_smartmodule::{Record, Result, smartmodule};

#[smartmodule(filter)]
pub fn filter(_record: &Record) -> Result<bool> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}
