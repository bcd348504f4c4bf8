//! Crate boundaries of ARCHITECTURE.md, checked against `cargo metadata` so a
//! stray dependency fails the build instead of eroding the layering.

use std::collections::{BTreeMap, BTreeSet};

/// Declared (direct, non-dev) dependencies of every workspace crate.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_string())
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

#[test]
fn crates_keep_their_boundaries() {
    let deps = dependencies();
    let uses = |krate: &str, dep: &str| deps[krate].contains(dep);
    for server in [
        "sluice-spu",
        "sluice-raft",
        "sluice-storage",
        "sluice-controller",
    ] {
        assert!(
            !uses("sluice-client", server),
            "the client crate must not depend on {server}"
        );
    }
    for (krate, list) in &deps {
        if krate != "sluice-raft" {
            assert!(
                !list.contains("openraft"),
                "{krate}: only sluice-raft imports openraft"
            );
        }
        if krate != "sluice-wasm" {
            assert!(
                !list.contains("wasmtime"),
                "{krate}: only sluice-wasm imports wasmtime"
            );
        }
    }
    for heavy in ["tokio", "quinn", "rocksdb", "wasmtime"] {
        assert!(
            !uses("sluice-proto", heavy),
            "the wire types must not depend on {heavy}"
        );
        assert!(
            !uses("sluice-storage", heavy),
            "storage must not depend on {heavy}"
        );
        assert!(
            !uses("sluice-smartmodule", heavy),
            "the SDK must not depend on {heavy}"
        );
    }
    assert!(!uses("sluice-storage", "sluice-raft") && !uses("sluice-storage", "sluice-transport"));
    // The Raft layer talks to peers through its `RaftTransport` trait; the
    // node supplies QUIC.
    assert!(
        !uses("sluice-raft", "sluice-transport"),
        "sluice-raft must not depend on the QUIC transport"
    );
    // The transport moves bytes; of Sluice it knows only the limits.
    for (krate, list) in &deps {
        if krate == "sluice-transport" {
            let ours: Vec<&String> = list
                .iter()
                .filter(|d| d.starts_with("sluice-") && *d != "sluice-proto")
                .collect();
            assert!(ours.is_empty(), "sluice-transport depends on {ours:?}");
        }
    }
}
