//! Micro-benchmarks of the SmartModule engine: one batch of 1,000 records through
//! an instance of an example module, a filter (`hello-filter`, keeps values
//! containing 'a') and a map (`ssn-scrub`, masks SSNs).
//!
//! The modules are built from `examples/smartmodules` on the first run (the
//! same helper as the integration tests), then loaded once; only
//! `Instance::process` is timed.
//!
//! ```sh
//! cargo bench -p sluice-wasm --bench engine
//! ```

#[allow(dead_code)] // The helper's `module_path` is for the tests.
#[path = "../tests/it/build.rs"]
mod build;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice_wasm::{Engine, EngineConfig, Record};

/// Records per batch.
const BATCH: usize = 1000;
/// Value sizes (records carry no key).
const SIZES: [(usize, &str); 2] = [(100, "100B"), (1024, "1KiB")];

/// `BATCH` UTF-8 values of `size` bytes. Every other one ends with an 'a', so the
/// filter keeps half and scans every value to its end; every value holds one
/// SSN in its middle for the map to mask.
fn batch(size: usize) -> Vec<Record> {
    const SSN: &[u8] = b"123-45-6789";
    (0..BATCH)
        .map(|i| {
            let mut value: Vec<u8> = (0..size).map(|j| b'b' + ((i + j) % 25) as u8).collect();
            let mid = size / 2 - SSN.len() / 2;
            value[mid..mid + SSN.len()].copy_from_slice(SSN);
            if i % 2 == 0 {
                value[size - 1] = b'a';
            }
            Record::new(i as i64, 1_700_000_000_000, value)
        })
        .collect()
}

fn bench_modules(c: &mut Criterion) {
    let engine = Engine::new(EngineConfig::default()).expect("engine");
    let mut group = c.benchmark_group("engine/batch_of_1000");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, expected_out) in [("hello-filter", BATCH / 2), ("ssn-scrub", BATCH)] {
        let module = engine
            .load(&build::module_bytes(name))
            .unwrap_or_else(|e| panic!("load {name}: {e}"))
            .named(name);
        for (size, label) in SIZES {
            let records = batch(size);
            let mut instance = module
                .instantiate(BTreeMap::new(), None)
                .unwrap_or_else(|e| panic!("instantiate {name}: {e}"));
            let out = instance.process(&records).expect("process");
            assert_eq!(out.len(), expected_out, "{name} kept an unexpected number");
            if name == "ssn-scrub" {
                assert!(out[0].value.windows(11).any(|w| w == b"***-**-****"));
            }
            group.bench_with_input(BenchmarkId::new(name, label), &records, |b, records| {
                b.iter(|| instance.process(black_box(records)).expect("process"))
            });
        }
    }
    group.finish();
}

/// Short runs: the whole suite should finish in a couple of minutes.
fn short() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = short();
    targets = bench_modules
}
criterion_main!(benches);
