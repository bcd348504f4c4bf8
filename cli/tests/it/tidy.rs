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
    // The crash points' names, shared by the nodes and the fault suite.
    ("sluice-crashpoints", &[]),
    ("sluice-compress", &["sluice-proto"]),
    ("sluice-smartmodule-derive", &[]),
    ("sluice-smartmodule", &["sluice-smartmodule-derive"]),
    (
        "sluice-storage",
        &["sluice-compress", "sluice-crashpoints", "sluice-proto"],
    ),
    ("sluice-transport", &["sluice-proto"]),
    ("sluice-raft", &["sluice-crashpoints", "sluice-proto"]),
    (
        "sluice-controller",
        &["sluice-crashpoints", "sluice-proto", "sluice-raft"],
    ),
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
            "sluice-crashpoints",
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
            "sluice-crashpoints",
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
            "sluice-crashpoints",
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

/// Length budgets for code outside tests: a file of a crate's `src/` holds
/// at most `FILE_LINES_MAX` lines before its test module, a function at most
/// `FUNCTION_LINES_MAX` lines (signature to closing brace). Past them a file
/// or a function stops being read as one thing: split it by concern.
const FILE_LINES_MAX: usize = 1_000;
const FUNCTION_LINES_MAX: usize = 150;

/// What is over budget today, each at a ceiling of its present length (so
/// it can shrink, never grow) and with why it is one piece or how it will
/// be split: `(file, function or "" for the file, lines at most, why)`.
/// An entry that is back under budget fails the test: remove it.
const LENGTH_EXCEPTIONS: &[(&str, &str, usize, &str)] = &[
    (
        "spu/src/groups.rs",
        "heartbeat",
        260,
        "the group coordinator's heartbeat: join, fences, assignment and answer in one \
         critical section on the group's state",
    ),
    (
        "jepsen-tests/src/run/mod.rs",
        "run_async",
        251,
        "a fault run from start to report, phase by phase; test harness code",
    ),
    (
        "controller/src/state_machine.rs",
        "execute",
        190,
        "the apply of every metadata command: one arm each",
    ),
];

#[test]
fn files_and_functions_keep_their_length_budgets() {
    let mut over = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut check = |rel: &str, function: &str, lines: usize, over: &mut Vec<String>| {
        let (budget, name) = if function.is_empty() {
            (FILE_LINES_MAX, rel.to_string())
        } else {
            (FUNCTION_LINES_MAX, format!("{rel}: fn {function}"))
        };
        let exception = LENGTH_EXCEPTIONS
            .iter()
            .find(|(f, func, _, _)| *f == rel && *func == function);
        match exception {
            Some((_, _, ceiling, _)) => {
                seen.insert((rel.to_string(), function.to_string()));
                if lines > *ceiling {
                    over.push(format!(
                        "{name}: {lines} lines, past its ceiling of {ceiling}"
                    ));
                } else if lines <= budget {
                    over.push(format!(
                        "{name}: {lines} lines, within the budget of {budget}: remove its exception"
                    ));
                }
            }
            None if lines > budget => {
                over.push(format!(
                    "{name}: {lines} lines, past the budget of {budget}"
                ));
            }
            None => {}
        }
    };
    for file in workspace_sources().iter().filter(|f| !f.test_only) {
        let lines: Vec<&str> = file.text.lines().collect();
        let end = code_end(&lines);
        check(&file.rel, "", end, &mut over);
        for (function, length) in functions(&lines[..end]) {
            check(&file.rel, &function, length, &mut over);
        }
    }
    for (file, function, _, _) in LENGTH_EXCEPTIONS {
        assert!(
            seen.contains(&(file.to_string(), function.to_string())),
            "LENGTH_EXCEPTIONS names {file} {function}, which no longer exists: remove it"
        );
    }
    assert!(
        over.is_empty(),
        "over the length budgets (split by concern, or list with why in LENGTH_EXCEPTIONS): \
         {over:#?}"
    );
}

/// A Rust file under a workspace crate's `src/`.
struct SourceFile {
    /// Its path from the workspace root.
    rel: String,
    text: String,
    /// Test-only code: the seeded simulation, `tests` directories,
    /// `tests.rs` and `*_tests.rs` files.
    test_only: bool,
}

/// Every Rust file under the `src/` of every workspace crate.
fn workspace_sources() -> Vec<SourceFile> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap();
    let mut files = Vec::new();
    for package in packages() {
        let manifest = std::path::PathBuf::from(package["manifest_path"].as_str().unwrap());
        let mut stack = vec![(manifest.parent().unwrap().join("src"), false)];
        while let Some((dir, test_only)) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    let tests = path.ends_with("sim") || path.ends_with("tests");
                    stack.push((path, test_only || tests));
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") {
                    continue;
                }
                let name = path.file_name().unwrap().to_string_lossy().to_string();
                files.push(SourceFile {
                    rel: path
                        .strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .to_string(),
                    text: std::fs::read_to_string(&path).unwrap(),
                    test_only: test_only || name == "tests.rs" || name.ends_with("_tests.rs"),
                });
            }
        }
    }
    files
}

/// Where a file's code ends: at its test module (`#[cfg(test)]` then `mod`).
fn code_end(lines: &[&str]) -> usize {
    (0..lines.len())
        .find(|&i| {
            lines[i].starts_with("#[cfg(test)]")
                && lines.get(i + 1).is_some_and(|l| l.starts_with("mod "))
        })
        .unwrap_or(lines.len())
}

/// Each function with a body in `lines` and its length in lines, from its
/// `fn` line to the closing brace at the indentation it starts with (what
/// rustfmt writes).
fn functions(lines: &[&str]) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let code = line.trim_start();
        let indent = &line[..line.len() - code.len()];
        let mut words = code.split_whitespace().peekable();
        // Qualifiers before `fn`: visibility, const, async, unsafe, extern "C".
        while let Some(w) = words.peek() {
            if w.starts_with("pub") || ["const", "async", "unsafe", "extern", "\"C\""].contains(w) {
                words.next();
            } else {
                break;
            }
        }
        // A one-line function (`fn f() -> u8 { 1 }`) is short by definition.
        if words.next() != Some("fn") || code.trim_end().ends_with('}') {
            continue;
        }
        let Some(name) = words.next().map(|w| {
            w.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()
                .unwrap_or("")
                .to_string()
        }) else {
            continue;
        };
        // The signature ends at the first line ending in `{` (a body) or `;`
        // (a declaration, skipped).
        let Some(open) = (i..lines.len()).find(|&j| {
            let t = lines[j].trim_end();
            t.ends_with('{') || t.ends_with(';')
        }) else {
            continue;
        };
        if !lines[open].trim_end().ends_with('{') {
            continue;
        }
        let close = format!("{indent}}}");
        if let Some(end) = (open + 1..lines.len()).find(|&j| lines[j] == close) {
            found.push((name, end - i + 1));
        }
    }
    found
}

/// Unbounded channels: a queue that a peer, a client or a slow reader can
/// grow without limit is how a node runs out of memory. Every channel of a
/// crate's `src/` is bounded except these, each with why it cannot grow
/// with what others send: `(file, why)`.
const UNBOUNDED_CHANNELS: &[(&str, &str)] = &[(
    "client/src/group.rs",
    "a group member's assignment events for its own application: a few per heartbeat of \
     this member (seconds apart), never records, and the application's loop drains them",
)];

#[test]
fn channels_are_bounded() {
    let mut found = Vec::new();
    let mut listed_and_seen = std::collections::BTreeSet::new();
    for file in workspace_sources() {
        let lines: Vec<&str> = file.text.lines().collect();
        for (n, line) in lines[..code_end(&lines)].iter().enumerate() {
            let unbounded = ["unbounded_channel", "mpsc::unbounded", "UnboundedSender"]
                .iter()
                .any(|word| line.contains(word));
            if !unbounded || line.trim_start().starts_with("//") {
                continue;
            }
            if UNBOUNDED_CHANNELS.iter().any(|(f, _)| *f == file.rel) {
                listed_and_seen.insert(file.rel.clone());
            } else {
                found.push(format!("{}:{}: {}", file.rel, n + 1, line.trim()));
            }
        }
    }
    for (file, _) in UNBOUNDED_CHANNELS {
        assert!(
            listed_and_seen.contains(*file),
            "UNBOUNDED_CHANNELS lists {file}, which has none any more: remove it"
        );
    }
    assert!(
        found.is_empty(),
        "unbounded channels (bound them and say what happens when full, or list them with why \
         in UNBOUNDED_CHANNELS): {found:#?}"
    );
}

/// The node's files that may hold `Shared` (the handlers' state: consumer
/// groups, the audit queue, the connectors): the wiring, the request
/// handlers and the membership driver, which proposes through them (and the
/// crate root, which declares the module). Every
/// other part takes `&Services` (ARCHITECTURE.md, `spu/`).
const SHARED_HOLDERS: &[&str] = &[
    "spu/src/lib.rs",
    "spu/src/node.rs",
    "spu/src/shared.rs",
    "spu/src/membership.rs",
    "spu/src/server/",
];

#[test]
fn the_nodes_parts_take_services_not_the_handlers_state() {
    let mut found = Vec::new();
    for file in workspace_sources() {
        if !file.rel.starts_with("spu/src/")
            || SHARED_HOLDERS.iter().any(|h| file.rel.starts_with(h))
        {
            continue;
        }
        let lines: Vec<&str> = file.text.lines().collect();
        for (n, line) in lines[..code_end(&lines)].iter().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let names_shared = code
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .any(|word| word == "Shared" || word == "shared");
            if names_shared {
                found.push(format!("{}:{}: {}", file.rel, n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "a part of the node reaches for `Shared`; give it `&Services` (and, explicitly, the \
         state it needs) instead: {found:#?}"
    );
}
