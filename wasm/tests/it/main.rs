//! End-to-end tests of the engine against real modules built from `examples/smartmodules`.

mod build;
mod faults;
mod kinds;
mod load;
mod params;

use sluice_wasm::{Engine, EngineConfig, Instance, Module, Record};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// A fresh engine with default limits (an empty cache, for tests that count compilations).
pub fn engine() -> Engine {
    Engine::new(EngineConfig::default()).expect("engine")
}

/// One engine with default limits shared by the tests, so each module compiles once per run
/// (cranelift is slow in a debug build).
pub fn shared_engine() -> Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(engine).clone()
}

/// Loads the example module `name` (crate name with `-`).
pub fn load(engine: &Engine, name: &str) -> Module {
    engine
        .load(&build::module_bytes(name))
        .unwrap_or_else(|e| panic!("load {name}: {e}"))
        .named(name)
}

/// Instantiates `name` with no parameters.
pub fn instance(engine: &Engine, name: &str) -> Instance {
    load(engine, name)
        .instantiate(BTreeMap::new(), None)
        .unwrap_or_else(|e| panic!("instantiate {name}: {e}"))
}

/// Records with offsets from 0 and the given values.
pub fn records(values: &[&str]) -> Vec<Record> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| Record::new(i as i64, 1_700_000_000_000 + i as i64, v.as_bytes()))
        .collect()
}

/// The values of `records` as strings.
pub fn values(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8(r.value.clone()).expect("utf-8"))
        .collect()
}

/// A parameter map.
pub fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
