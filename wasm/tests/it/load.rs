//! Validation at load, the kind check, and the compile cache.

use crate::{build, engine, load};
use sluice_wasm::{ModuleFigures, ModuleLimit, SmartModuleError, SmartModuleKind};

#[test]
fn non_wasm_bytes_are_rejected() {
    let e = engine();
    let err = e.load(b"#!/bin/sh\necho not a module\n").unwrap_err();
    assert!(matches!(err, SmartModuleError::NotWasm { .. }), "{err:?}");
    let err = e.load(b"\0asm\x01\0\0\0garbage").unwrap_err();
    assert!(matches!(err, SmartModuleError::NotWasm { .. }), "{err:?}");
    assert_eq!(e.compile_count(), 0);
}

/// A minimal valid module: a memory and a function, but no transform export.
const NO_TRANSFORM: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
    0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
    0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
    0x05, 0x03, 0x01, 0x00, 0x01, // memory section: one memory, min 1 page
    0x07, 0x11, 0x02, // export section, 2 exports
    0x06, b'm', b'e', b'm', b'o', b'r', b'y', 0x02, 0x00, // "memory" memory 0
    0x04, b'n', b'o', b'o', b'p', 0x00, 0x00, // "noop" func 0
    0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // code section: empty body
];

#[test]
fn wasm_without_a_transform_export_is_rejected() {
    let e = engine();
    let err = e.load(NO_TRANSFORM).unwrap_err();
    assert!(
        matches!(err, SmartModuleError::NoTransformExport { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("#[smartmodule"), "{err}");
}

#[test]
fn kind_mismatch_is_reported() {
    let e = engine();
    let m = load(&e, "ssn-scrub");
    m.expect_kind(SmartModuleKind::Map).unwrap();
    let err = m.expect_kind(SmartModuleKind::Filter).unwrap_err();
    assert_eq!(
        err.to_string(),
        "SmartModule ssn-scrub is a map, not a filter"
    );
}

#[test]
fn same_bytes_compile_once() {
    let e = engine();
    let bytes = build::module_bytes("hello-filter");
    let a = e.load(&bytes).unwrap();
    let b = e.load(&bytes).unwrap();
    assert_eq!(e.compile_count(), 1);
    assert_eq!(a.hash(), b.hash());
    assert_eq!(a.hash_hex().len(), 64);
    assert!(a.name().starts_with("sha256:"), "{}", a.name());
    e.load(&build::module_bytes("digits-filter")).unwrap();
    assert_eq!(e.compile_count(), 2);
    assert_eq!(e.cached_modules(), 2);
    // Clones of the engine share the cache.
    e.clone().load(&bytes).unwrap();
    assert_eq!(e.compile_count(), 2);
}

/// Every example, as the SDK's release profile builds it, fits the pre-compile budget with a
/// wide margin: each figure is at most a quarter of its bound (the memory count is exactly
/// one, its bound). The figures are printed for `sluice_proto::limits`' table.
#[test]
fn every_example_fits_the_budget_with_a_wide_margin() {
    for name in [
        "hello-filter",
        "log-level-filter",
        "digits-filter",
        "ssn-scrub",
        "user-events",
        "json-array-map",
        "even-filter-map",
        "sum-aggregate",
        "uppercase-map",
        "param-filter",
        "concat-aggregate",
        "object-values",
        "fluvio-init-filter",
        "look-back-max",
        "test-panic",
        "test-loop",
        "test-grow",
    ] {
        let figures = ModuleFigures::measure(name, &build::module_bytes(name))
            .unwrap_or_else(|e| panic!("{e}"));
        eprintln!("{name}: {figures:?}");
        for limit in ModuleLimit::ALL {
            let (found, max) = (figures.get(limit), limit.max());
            if limit == ModuleLimit::Memories {
                assert_eq!(found, 1, "{name}");
            } else {
                assert!(
                    found.saturating_mul(4) <= max,
                    "{name}: {found} {limit} is within a factor 4 of {} ({max})",
                    limit.constant()
                );
            }
        }
    }
}
