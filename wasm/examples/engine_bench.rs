//! Records/s through the engine next to the same logic as a native closure,
//! and the cost of opening a stream with an uncached vs a cached module.
//! Figures, not assertions.
//!
//! ```sh
//! cargo build --release --target wasm32-unknown-unknown --manifest-path examples/smartmodules/Cargo.toml
//! cargo run --release -p sluice-wasm --example engine_bench -- examples/smartmodules/target/wasm32-unknown-unknown/release
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sluice_wasm::{Engine, EngineConfig, Record};

const BATCH: usize = 1000;

fn records(size: usize, batch: usize) -> Vec<Record> {
    (0..batch)
        .map(|i| {
            // One record in ten contains an 'a' (what hello-filter keeps);
            // every tenth has an SSN for the scrubbing map to mask.
            let mut v = vec![b'x'; size];
            if i % 10 == 0 {
                v[size / 2] = b'a';
                v[..11].copy_from_slice(b"123-45-6789");
            }
            Record::new(i as i64, 0, v)
        })
        .collect()
}

/// Runs `f` over batches for about a second; returns records per second.
fn rate(mut f: impl FnMut(&[Record]) -> usize, input: &[Record]) -> f64 {
    let started = Instant::now();
    let mut n = 0usize;
    let mut kept = 0usize;
    while started.elapsed() < Duration::from_secs(1) {
        kept += f(input);
        n += input.len();
    }
    std::hint::black_box(kept);
    n as f64 / started.elapsed().as_secs_f64()
}

fn native_scrub(v: &[u8]) -> Vec<u8> {
    let mut out = v.to_vec();
    let mut i = 0;
    while i + 11 <= out.len() {
        let w = &out[i..i + 11];
        let is_ssn = w.iter().enumerate().all(|(j, b)| {
            if j == 3 || j == 6 {
                *b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
        if is_ssn {
            out[i..i + 11].copy_from_slice(b"***-**-****");
            i += 11;
        } else {
            i += 1;
        }
    }
    out
}

fn main() {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("the directory of the built example modules"),
    );
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let (filter_wasm, map_wasm) = (read("hello_filter.wasm"), read("ssn_scrub.wasm"));

    let engine = Engine::new(EngineConfig::default()).unwrap();
    let t = Instant::now();
    let filter = engine.load(&filter_wasm).unwrap();
    let uncached = t.elapsed();
    let t = Instant::now();
    let _again = engine.load(&filter_wasm).unwrap();
    let cached = t.elapsed();
    let t = Instant::now();
    let _instance = filter.instantiate(BTreeMap::new(), None).unwrap();
    let instantiate = t.elapsed();
    println!(
        "stream open: load uncached {uncached:.2?}, load cached {cached:.2?}, instantiate {instantiate:.2?}"
    );

    let map = engine.load(&map_wasm).unwrap();
    for size in [100, 1024] {
        let input = records(size, BATCH);
        let mut f = filter.instantiate(BTreeMap::new(), None).unwrap();
        let wasm_filter = rate(|b| f.process(b).unwrap().len(), &input);
        let native_filter = rate(
            |b| b.iter().filter(|r| r.value.contains(&b'a')).count(),
            &input,
        );
        let mut m = map.instantiate(BTreeMap::new(), None).unwrap();
        let wasm_map = rate(|b| m.process(b).unwrap().len(), &input);
        let native_map = rate(
            |b| {
                b.iter()
                    .map(|r| native_scrub(&r.value))
                    .filter(|v| !v.is_empty())
                    .count()
            },
            &input,
        );
        println!(
            "{size:>5} B records, batches of {BATCH}: filter {:.2} M rec/s (native {:.2} M, ratio {:.2}); map {:.2} M rec/s (native {:.2} M, ratio {:.2})",
            wasm_filter / 1e6,
            native_filter / 1e6,
            native_filter / wasm_filter,
            wasm_map / 1e6,
            native_map / 1e6,
            native_map / wasm_map
        );
    }
}
