//! Builds the example modules to wasm32 once per test run and hands out their bytes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("wasm/ has a parent")
}

/// Builds every example (one cargo invocation: they share a small workspace) and returns
/// the directory holding the `.wasm` files.
fn wasm_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target"))
            .join("smartmodules");
        let manifest = repo_root().join("examples/smartmodules/Cargo.toml");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let build = |offline: bool| {
            let mut cmd = Command::new(&cargo);
            cmd.args([
                "build",
                "--release",
                "--workspace",
                "--target",
                "wasm32-unknown-unknown",
            ])
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target_dir)
            // The test's own build settings must not leak into the guest build.
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET");
            if offline {
                cmd.arg("--offline");
            }
            cmd.status().expect("run cargo").success()
        };
        // Offline first (the dependencies are usually cached), the network only if needed.
        assert!(
            build(true) || build(false),
            "building examples/smartmodules failed"
        );
        target_dir.join("wasm32-unknown-unknown/release")
    })
}

/// Where the compiled example `name` is (`ssn-scrub` -> `ssn_scrub.wasm`).
pub fn module_path(name: &str) -> PathBuf {
    wasm_dir().join(format!("{}.wasm", name.replace('-', "_")))
}

/// The compiled bytes of example `name`.
pub fn module_bytes(name: &str) -> Vec<u8> {
    let path = module_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}
