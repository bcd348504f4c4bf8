//! Crate boundaries of ARCHITECTURE.md, checked against `cargo metadata` so a
//! stray dependency fails the build instead of eroding the layering.

use std::collections::{BTreeMap, BTreeSet};

/// Declared (direct, non-dev) dependencies of every workspace crate.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    packages()
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

/// Every workspace crate and the workspace crates it depends on, directly or
/// through others (normal, non-optional dependencies): ARCHITECTURE.md's
/// layering, whole. A new edge anywhere fails `layers_are_exactly_these`
/// until it is added here, where a reviewer sees it.
const LAYERS: &[(&str, &[&str])] = &[
    ("base2histogram", &[]),
    ("sluice-fuzzing", &[]),
    ("sluice-proto", &[]),
    ("sluice-compress", &["sluice-proto"]),
    ("sluice-smartmodule-derive", &[]),
    ("sluice-smartmodule", &["sluice-smartmodule-derive"]),
    ("sluice-storage", &["sluice-compress", "sluice-proto"]),
    ("sluice-transport", &["sluice-proto"]),
    ("sluice-raft", &["sluice-proto"]),
    ("sluice-controller", &["sluice-proto", "sluice-raft"]),
    (
        "sluice-wasm",
        &[
            "sluice-proto",
            "sluice-smartmodule",
            "sluice-smartmodule-derive",
        ],
    ),
    // SmartModules in the producer are an optional feature (`smartmodules`).
    (
        "sluice-client",
        &["sluice-compress", "sluice-proto", "sluice-transport"],
    ),
    (
        "sluice-spu",
        &[
            "sluice-compress",
            "sluice-controller",
            "sluice-proto",
            "sluice-raft",
            "sluice-smartmodule",
            "sluice-smartmodule-derive",
            "sluice-storage",
            "sluice-transport",
            "sluice-wasm",
        ],
    ),
    (
        "sluice",
        &[
            "sluice-client",
            "sluice-compress",
            "sluice-controller",
            "sluice-proto",
            "sluice-raft",
            "sluice-smartmodule",
            "sluice-smartmodule-derive",
            "sluice-spu",
            "sluice-storage",
            "sluice-transport",
            "sluice-wasm",
        ],
    ),
    (
        "jepsen-tests",
        &[
            "sluice-client",
            "sluice-compress",
            "sluice-proto",
            "sluice-transport",
        ],
    ),
];

/// `cargo metadata` of the workspace's own packages.
fn packages() -> Vec<serde_json::Value> {
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
    meta["packages"].as_array().unwrap().clone()
}

#[test]
fn layers_are_exactly_these() {
    let packages = packages();
    let ours: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    // Direct, normal, non-optional edges between workspace crates.
    let direct: BTreeMap<String, Vec<String>> = packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null() && d["optional"] != true)
                .map(|d| d["name"].as_str().unwrap().to_string())
                .filter(|d| ours.contains(d))
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect();
    let closure = |start: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = direct[start].clone();
        while let Some(next) = todo.pop() {
            if seen.insert(next.clone()) {
                todo.extend(direct[&next].iter().cloned());
            }
        }
        seen
    };
    let allowed: BTreeMap<&str, BTreeSet<String>> = LAYERS
        .iter()
        .map(|(k, deps)| (*k, deps.iter().map(|d| d.to_string()).collect()))
        .collect();
    for krate in &ours {
        let Some(expected) = allowed.get(krate.as_str()) else {
            panic!("{krate} is not in LAYERS (cli/tests/it/tidy.rs): place it in the layering");
        };
        let found = closure(krate);
        assert_eq!(
            &found, expected,
            "{krate} depends on these workspace crates (directly or through others); \
             LAYERS says otherwise"
        );
    }
    for (krate, _) in LAYERS {
        assert!(ours.contains(*krate), "LAYERS names {krate}, which is gone");
    }
}

/// Declared dependencies that no source file of their crate names:
/// `(crate, dependency, why it stays)`.
const UNNAMED_DEPENDENCIES: &[(&str, &str, &str)] = &[];

#[test]
fn every_dependency_is_used() {
    let mut unused = Vec::new();
    for p in packages() {
        let name = p["name"].as_str().unwrap();
        let dir = std::path::Path::new(p["manifest_path"].as_str().unwrap())
            .parent()
            .unwrap()
            .to_path_buf();
        // A normal dependency must be named by the crate's own code (its
        // `src/`), a build dependency by `build.rs`, a dev-dependency
        // anywhere (tests, benches, examples, `src/` tests).
        let sources = |under: &std::path::Path| {
            let mut text = String::new();
            let mut stack = vec![under.to_path_buf()];
            while let Some(d) = stack.pop() {
                let Ok(entries) = std::fs::read_dir(&d) else {
                    continue;
                };
                for entry in entries {
                    let path = entry.unwrap().path();
                    let file = path.file_name().unwrap().to_string_lossy().to_string();
                    if path.is_dir() {
                        // Nested packages are checked as their own.
                        if file != "target" && !path.join("Cargo.toml").exists() {
                            stack.push(path);
                        }
                    } else if file.ends_with(".rs") {
                        text += &std::fs::read_to_string(&path).unwrap();
                    }
                }
            }
            text
        };
        let everything = sources(&dir);
        let own = sources(&dir.join("src"));
        let build = std::fs::read_to_string(dir.join("build.rs")).unwrap_or_default();
        for d in p["dependencies"].as_array().unwrap() {
            let text = match d["kind"].as_str() {
                None => &own,
                Some("build") => &build,
                Some(_) => &everything,
            };
            let dep = d["rename"]
                .as_str()
                .or(d["name"].as_str())
                .unwrap()
                .replace('-', "_");
            let named = text.match_indices(&dep).any(|(at, _)| {
                let before = text[..at].chars().next_back();
                let after = text[at + dep.len()..].chars().next();
                let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
                !word(before) && !word(after)
            });
            let excused = UNNAMED_DEPENDENCIES
                .iter()
                .any(|(k, x, _)| *k == name && x.replace('-', "_") == dep);
            if !named && !excused {
                unused.push(format!("{name} -> {dep}"));
            }
        }
    }
    assert!(
        unused.is_empty(),
        "dependencies that no source of their crate names (remove them, or list them with a \
         reason in UNNAMED_DEPENDENCIES): {unused:?}"
    );
}

/// Deadlines and intervals live in each layer's `timeouts.rs`, where the
/// relations between them are checked when the crate compiles: no other
/// file of that crate's `src/` declares a `Duration` constant or writes one
/// as a literal outside its tests.
const TIMEOUT_MODULES: &[&str] = &[
    "cli/src",
    "spu/src",
    "raft/src",
    "client/src",
    "controller/src",
    "transport/src",
];

/// Files (under those) left out, with why.
const TIMEOUT_EXCEPTIONS: &[(&str, &str)] = &[
    (
        "raft/src/sim",
        "the seeded simulation: test code, its own schedule",
    ),
    (
        "raft/src/log_store/power_loss.rs",
        "the test-only power-cut model's polling step, not a deadline of a node",
    ),
];

#[test]
fn deadlines_live_in_each_layers_timeouts_module() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let literal = duration_literal();
    let mut found = Vec::new();
    for dir in TIMEOUT_MODULES {
        assert!(
            root.join(dir).join("timeouts.rs").exists(),
            "{dir}/timeouts.rs is missing"
        );
        let mut stack = vec![root.join(dir)];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                let rel = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                if TIMEOUT_EXCEPTIONS.iter().any(|(e, _)| rel == *e) {
                    continue;
                }
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let name = path.file_name().unwrap().to_string_lossy().to_string();
                if !name.ends_with(".rs")
                    || name == "timeouts.rs"
                    || name == "tests.rs"
                    || name.ends_with("_tests.rs")
                {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                // Tests sit at the end of a file, after `#[cfg(test)]`.
                let code = text.split("#[cfg(test)]\nmod").next().unwrap();
                for (n, line) in code.lines().enumerate() {
                    let line = line.trim();
                    if line.starts_with("//") {
                        continue;
                    }
                    let constant = line.contains("const ") && line.contains("Duration");
                    if constant || literal(line) {
                        found.push(format!("{rel}:{}: {line}", n + 1));
                    }
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "deadlines outside their layer's timeouts.rs (move them there, named, with the \
         relations they must keep): {found:#?}"
    );
}

/// Whether `line` builds a `Duration` from a number written in it.
fn duration_literal() -> impl Fn(&str) -> bool {
    |line: &str| {
        [
            "Duration::from_secs(",
            "Duration::from_millis(",
            "Duration::from_micros(",
        ]
        .iter()
        .any(|call| {
            line.match_indices(call).any(|(at, _)| {
                line[at + call.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_digit())
            })
        })
    }
}
