//! `smart-module generate | build | test`: authoring modules without a cluster. Generated
//! projects are built for real, offline, against this checkout's SDK.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::harness::SLUICE;

use crate::wasm_build as build;

/// One target dir for every generated project, kept between runs: the SDK and its macros
/// compile once, and each project then builds in a few seconds. Projects of different tests
/// have different names, so their `.wasm` files do not collide.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("smartmodule-projects")
}

fn sluice(args: &[&str]) -> Command {
    let mut c = Command::new(SLUICE);
    c.args(args)
        .env("CARGO_TARGET_DIR", target_dir())
        .env("CARGO_NET_OFFLINE", "true")
        // The test's own build settings must not leak into the guest build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

fn run(mut cmd: Command, stdin: Option<&[u8]>) -> Output {
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run sluice");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().expect("wait for sluice")
}

/// Runs `sluice args` and returns its stdout; fails the test if it fails.
fn ok(args: &[&str]) -> String {
    let out = run(sluice(args), None);
    assert!(
        out.status.success(),
        "sluice {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `sluice args`, expects it to fail, and returns (stdout, stderr).
fn fails_with(cmd: Command, args: &[&str]) -> (String, String) {
    let out = run(cmd, None);
    assert!(
        !out.status.success(),
        "sluice {args:?} succeeded:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn fails(args: &[&str]) -> String {
    fails_with(sluice(args), args).1
}

/// Generates `name` under `parent` and builds it; returns the project dir and the `.wasm`.
fn generate_and_build(parent: &Path, name: &str, kind: &str, params: bool) -> (PathBuf, String) {
    let parent_s = parent.to_str().unwrap();
    let mut args = vec![
        "smart-module",
        "generate",
        name,
        "--kind",
        kind,
        "--destination",
        parent_s,
    ];
    if params {
        args.push("--with-params");
    }
    ok(&args);
    let dir = parent.join(name);
    let printed = ok(&["smart-module", "build", dir.to_str().unwrap()]);
    let wasm = printed.trim().to_owned();
    assert!(
        wasm.ends_with(&format!("{}.wasm", name.replace('-', "_"))),
        "build printed {printed:?}"
    );
    assert!(Path::new(&wasm).is_file(), "{wasm} missing");
    (dir, wasm)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn every_kind_generates_a_project_that_builds_and_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();

    // The layout: a standalone cdylib on the path SDK, targeting wasm32 by default.
    let (dir, wasm) = generate_and_build(t, "dev-filter-params", "filter", true);
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let sdk = std::fs::canonicalize(Path::new(env!("CARGO_MANIFEST_DIR")).join("../smartmodule"))
        .unwrap();
    assert!(manifest.contains("crate-type = [\"cdylib\"]"), "{manifest}");
    assert!(manifest.contains("\n[workspace]\n"), "{manifest}");
    assert!(
        manifest.contains(&format!("path = \"{}\"", sdk.display())),
        "{manifest}"
    );
    let config = std::fs::read_to_string(dir.join(".cargo/config.toml")).unwrap();
    assert!(config.contains("target = \"wasm32-unknown-unknown\""));
    assert!(dir.join("README.md").is_file());
    let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
    assert!(lib.contains("#[derive(SmartOpt)]") && lib.contains("#[smartmodule(filter, params)]"));

    let lines = write(t, "fruit.txt", "banana\nplum\nmango\ncherry\n");
    assert_eq!(
        ok(&["sm", "test", "--wasm-file", &wasm, "--file", &lines]),
        "banana\nmango\n"
    );
    assert_eq!(
        ok(&[
            "sm",
            "test",
            "--wasm-file",
            &wasm,
            "--file",
            &lines,
            "-e",
            "contains=rr"
        ]),
        "cherry\n"
    );
    let err = fails(&[
        "sm",
        "test",
        "--wasm-file",
        &wasm,
        "--text",
        "a",
        "-e",
        "nope=1",
    ]);
    assert!(err.contains("init failed") && err.contains("nope"), "{err}");

    // Each other template compiles and does what its comment says.
    let numbers = write(t, "numbers.txt", "21\nx\n4\n");
    let cases: &[(&str, &str, bool, &[&str], &str)] = &[
        (
            "dev-filter",
            "filter",
            false,
            &["--text", "banana"],
            "banana\n",
        ),
        (
            "dev-map",
            "map",
            false,
            &["--text", "hello", "--key", "k", "-k"],
            "[k] HELLO\n",
        ),
        (
            "dev-map-params",
            "map",
            true,
            &[
                "--text",
                "hello",
                "-e",
                "prefix=> ",
                "-e",
                "uppercase=false",
            ],
            "> hello\n",
        ),
        (
            "dev-filter-map",
            "filter-map",
            false,
            &["--file", &numbers],
            "42\n8\n",
        ),
        (
            "dev-filter-map-params",
            "filter_map",
            true,
            &["--file", &numbers, "-e", "factor=3"],
            "63\n12\n",
        ),
        (
            "dev-array-map",
            "array-map",
            false,
            &["--text", "one two  three", "-k"],
            "[null] one\n[null] two\n[null] three\n",
        ),
        (
            "dev-array-map-params",
            "array-map",
            true,
            &["--text", "a; b;;c", "-e", "separator=;"],
            "a\nb\nc\n",
        ),
        (
            "dev-aggregate",
            "aggregate",
            false,
            &["--text", "5", "--aggregate-initial", "10"],
            "15\n",
        ),
        (
            "dev-aggregate-params",
            "aggregate",
            true,
            &[
                "--file",
                &numbers,
                "-e",
                "skip_invalid=true",
                "--initial",
                "1",
            ],
            "22\n22\n26\n",
        ),
    ];
    let mut built = std::collections::HashMap::new();
    for (name, kind, params, test_args, expected) in cases {
        let (_, wasm) = generate_and_build(t, name, kind, *params);
        let mut args = vec!["sm", "test", "--wasm-file", &wasm];
        args.extend_from_slice(test_args);
        assert_eq!(&ok(&args), expected, "{name} with {test_args:?}");
        built.insert(*name, wasm);
    }

    // A module error at record N: the outputs before it, then the engine's message.
    let args = [
        "sm",
        "test",
        "--wasm-file",
        &built["dev-aggregate-params"],
        "--file",
        &numbers,
    ];
    let (stdout, stderr) = fails_with(sluice(&args), &args);
    assert_eq!(stdout, "21\n");
    assert!(
        stderr.contains("error at offset 1") && stderr.contains("invalid digit"),
        "{stderr}"
    );
}

#[test]
fn generate_and_build_refuse_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let dest = t.to_str().unwrap();

    // An existing directory is never written into.
    std::fs::create_dir(t.join("taken")).unwrap();
    std::fs::write(t.join("taken/keep.txt"), "mine").unwrap();
    let err = fails(&[
        "sm",
        "generate",
        "taken",
        "--kind",
        "map",
        "--destination",
        dest,
    ]);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        std::fs::read_dir(t.join("taken")).unwrap().count(),
        1,
        "the existing directory was touched"
    );

    let err = fails(&[
        "sm",
        "generate",
        "../escape",
        "--kind",
        "map",
        "--destination",
        dest,
    ]);
    assert!(err.contains("cannot name a cargo package"), "{err}");
    let err = fails(&[
        "sm",
        "generate",
        "x",
        "--kind",
        "sideways",
        "--destination",
        dest,
    ]);
    assert!(err.contains("sideways"), "{err}");

    // An SDK path that is not the SDK is refused before anything is written.
    let err = fails(&[
        "sm",
        "generate",
        "no-sdk",
        "--kind",
        "filter",
        "--destination",
        dest,
        "--sdk-path",
        dest,
    ]);
    assert!(
        err.contains("does not hold the SmartModule SDK") && err.contains("--sdk-path"),
        "{err}"
    );
    assert!(!t.join("no-sdk").exists());

    // build: not a project, no cargo, no wasm32 target.
    let err = fails(&["sm", "build", dest]);
    assert!(err.contains("is not a cargo project"), "{err}");
    let missing = t.join("missing");
    let err = fails(&["sm", "build", missing.to_str().unwrap()]);
    assert!(err.contains("is not a directory"), "{err}");

    ok(&[
        "sm",
        "generate",
        "dev-refused",
        "--kind",
        "filter",
        "--destination",
        dest,
    ]);
    let project = t.join("dev-refused");
    let project = project.to_str().unwrap();
    let args = ["sm", "build", project];
    let mut cmd = sluice(&args);
    cmd.env("CARGO", t.join("no-such-cargo"));
    let (_, err) = fails_with(cmd, &args);
    assert!(
        err.contains("was not found") && err.contains("rustup"),
        "{err}"
    );

    // A rustc whose toolchain has no wasm32 standard library (the real one for the rest).
    let fake = t.join("fake-rustc");
    std::fs::write(
        &fake,
        "#!/bin/sh\nif [ \"$1\" = --print ]; then echo /nonexistent/wasm32/lib; else exec rustc \"$@\"; fi\n",
    )
    .unwrap();
    let mut perms = std::fs::metadata(&fake).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&fake, perms).unwrap();
    let mut cmd = sluice(&args);
    cmd.env("RUSTC", &fake);
    let (_, err) = fails_with(cmd, &args);
    assert!(
        err.contains("rustup target add wasm32-unknown-unknown"),
        "{err}"
    );
}

#[test]
fn test_runs_an_example_module() {
    let tmp = tempfile::tempdir().unwrap();
    let digits = build::module_path("digits-filter");
    let digits = digits.to_str().unwrap();

    // One record per line, a blank line included; the all-digit ones are dropped.
    let mixed = write(tmp.path(), "mixed.txt", "123\nabc\n\n45a\n678\r\nx9\n");
    assert_eq!(
        ok(&["sm", "test", "--wasm-file", digits, "--file", &mixed]),
        "abc\n45a\nx9\n"
    );
    // Without --text or --file, stdin.
    let out = run(
        sluice(&["smartmodule", "test", "--wasm-file", digits]),
        Some(b"12\nab\n"),
    );
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ab\n");
    // --text is one record, newlines and all.
    assert_eq!(
        ok(&["sm", "test", "--wasm-file", digits, "--text", "1\n2"]),
        "1\n2\n"
    );

    // A module without params refuses any.
    let err = fails(&[
        "sm",
        "test",
        "--wasm-file",
        digits,
        "--text",
        "a",
        "-e",
        "k=v",
    ]);
    assert!(
        err.contains("takes no parameters") && err.contains("`k`"),
        "{err}"
    );
    let err = fails(&[
        "sm",
        "test",
        "--wasm-file",
        digits,
        "--text",
        "a",
        "-e",
        "novalue",
    ]);
    assert!(err.contains("not key=value"), "{err}");
    let err = fails(&[
        "sm",
        "test",
        "--wasm-file",
        digits,
        "--text",
        "a",
        "--initial",
        "0",
    ]);
    assert!(err.contains("aggregate modules only"), "{err}");

    // Not a module at all.
    let junk = write(tmp.path(), "junk.wasm", "not wasm");
    let err = fails(&["sm", "test", "--wasm-file", &junk, "--text", "a"]);
    assert!(err.contains("not a valid WebAssembly module"), "{err}");
    let err = fails(&["sm", "test", "--wasm-file", "/no/such.wasm", "--text", "a"]);
    assert!(err.contains("cannot read /no/such.wasm"), "{err}");

    // A module error at record N (sum-aggregate on a non-number): what came before, then
    // the error naming the offset.
    let sum = build::module_path("sum-aggregate");
    let numbers = write(tmp.path(), "numbers.txt", "1\n2\nthree\n4\n");
    let args = [
        "sm",
        "test",
        "--wasm-file",
        sum.to_str().unwrap(),
        "--file",
        &numbers,
    ];
    let (stdout, stderr) = fails_with(sluice(&args), &args);
    assert_eq!(stdout, "1\n3\n");
    assert!(stderr.contains("error at offset 2"), "{stderr}");
}
