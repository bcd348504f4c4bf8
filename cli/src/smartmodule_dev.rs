//! `smart-module generate | build | test`: writing a SmartModule without a cluster.
//!
//! `generate` makes a standalone cargo project that depends on this checkout's SDK by path,
//! so it builds offline and always speaks the ABI of the engine this `sluice` carries.
//! `build` runs the user's own cargo (their toolchain, their caches) and prints where the
//! `.wasm` landed. `test` runs a `.wasm` through the same engine the SPU uses, so a module
//! that behaves here behaves the same on a node.

use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use clap::Args;
use sluice_wasm::{Engine, EngineConfig, Record, SmartModuleKind};

/// The SDK of the checkout this binary was built from. A compile-time path rather than one
/// derived from the executable's location, which says nothing reliable about where the
/// sources are (installed copies, `target/` layouts, symlinks).
const DEFAULT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../smartmodule");

/// Package name the SDK directory must declare, so a wrong `--sdk-path` fails here and not
/// halfway through the user's first build.
const SDK_PACKAGE: &str = "sluice-smartmodule";

const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Records handed to the module per call by `test`: large files stream through in bounded
/// memory, and outputs appear as they are produced.
const TEST_BATCH: usize = 1000;

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Name of the project directory and of its cargo package (a letter, then letters,
    /// digits, `-` or `_`).
    pub name: String,
    /// What the module does with each record (`filter_map` and `array_map`, the SDK's
    /// attribute names, are accepted too).
    #[arg(long, value_parser = kind_parser())]
    pub kind: SmartModuleKind,
    /// Give the module parameters (`-e key=value` when consuming) through a `SmartOpt` struct.
    #[arg(long)]
    pub with_params: bool,
    /// Directory in which to create the project (as DIR/NAME).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub destination: PathBuf,
    /// The SDK to build against: the `smartmodule/` directory of a Sluice checkout. Defaults
    /// to the checkout this `sluice` was built from.
    #[arg(long, value_name = "PATH")]
    pub sdk_path: Option<PathBuf>,
}

/// `--kind`: the kinds' own names, listed in `--help` and completions.
fn kind_parser() -> impl clap::builder::TypedValueParser<Value = SmartModuleKind> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    let names = SmartModuleKind::ALL.map(|k| {
        let name = PossibleValue::new(k.as_str());
        match k.attribute_name() {
            same if same == k.as_str() => name,
            other => name.alias(other),
        }
    });
    PossibleValuesParser::new(names).try_map(|name| name.parse::<SmartModuleKind>())
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The project directory, holding its Cargo.toml.
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Build without using the network (cargo's `--offline`); also set by
    /// CARGO_NET_OFFLINE=true.
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The compiled module; its kind is read from it.
    #[arg(long = "wasm-file", value_name = "PATH")]
    pub wasm_file: PathBuf,
    /// One input record with this value.
    #[arg(long, value_name = "TEXT", conflicts_with = "file")]
    pub text: Option<String>,
    /// One input record per line of this file. Without --text or --file, lines are read
    /// from stdin.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Key of every input record (none by default).
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// Print each output record as `[key] value` (`[null]` when it has no key).
    #[arg(short = 'k', long = "key-value")]
    pub key_value: bool,
    /// A parameter for the module, `key=value` (repeatable).
    #[arg(short = 'e', long = "params", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Initial accumulator of an aggregate module (empty by default).
    #[arg(
        long = "aggregate-initial",
        visible_alias = "initial",
        value_name = "VALUE"
    )]
    pub aggregate_initial: Option<String>,
    /// A record already in the topic (repeatable, oldest first): with
    /// --lookback-last, what the module's look_back function is shown
    /// before the input records.
    #[arg(long = "record", value_name = "TEXT", requires = "lookback_last")]
    pub records: Vec<String>,
    /// Show the last N --record values to the module's look_back function
    /// first, as `consume --lookback-last N` shows a partition's last records.
    #[arg(long, value_name = "N")]
    pub lookback_last: Option<u64>,
}

// ---------------------------------------------------------------------------------------
// generate
// ---------------------------------------------------------------------------------------

pub fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    check_package_name(&args.name)?;
    let sdk = locate_sdk(args.sdk_path.as_deref())?;
    let kind = args.kind;
    let dir = args.destination.join(&args.name);
    if dir.symlink_metadata().is_ok() {
        bail!(
            "{} already exists; choose another name or --destination, or remove it first",
            dir.display()
        );
    }
    std::fs::create_dir_all(&args.destination)
        .with_context(|| format!("cannot create {}", args.destination.display()))?;
    // `create_dir`, not `create_dir_all`: it fails if the directory appeared meanwhile, so
    // an existing project is never written into.
    std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let files = project_files(&args.name, kind, args.with_params, &sdk);
    if let Err(e) = write_files(&dir, &files) {
        // Half a project would only be refused by the next `generate` of the same name.
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    let params = if args.with_params {
        " with parameters"
    } else {
        ""
    };
    println!(
        "Created {kind} SmartModule project `{}`{params} in {}",
        args.name,
        dir.display()
    );
    println!(
        "Build it with:  sluice smart-module build {}",
        dir.display()
    );
    println!(
        "Try it with:    sluice smart-module test --wasm-file <the printed .wasm> --text '...'"
    );
    Ok(())
}

/// Cargo's own rule, checked first so a bad name fails before any file is written rather
/// than at the first build.
fn check_package_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.len() <= 64;
    if !ok {
        bail!(
            "{name:?} cannot name a cargo package; use a letter followed by letters, digits, `-` or `_` (at most 64)"
        );
    }
    Ok(())
}

/// The SDK directory, canonical (the generated Cargo.toml must not depend on the current
/// directory), after checking that it really is the SDK.
fn locate_sdk(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let (path, what_to_do) = match given {
        Some(p) => (
            p.to_path_buf(),
            "pass the smartmodule/ directory of a Sluice checkout to --sdk-path",
        ),
        None => (
            PathBuf::from(DEFAULT_SDK),
            "this sluice was built from a checkout that is no longer there; pass the smartmodule/ directory of a Sluice checkout with --sdk-path",
        ),
    };
    let dir = std::fs::canonicalize(&path).map_err(|e| {
        anyhow::anyhow!(
            "no SmartModule SDK at {}: {e}; {what_to_do}",
            path.display()
        )
    })?;
    let manifest = dir.join("Cargo.toml");
    let name = std::fs::read_to_string(&manifest)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|t| t.get("package")?.get("name")?.as_str().map(str::to_owned));
    if name.as_deref() != Some(SDK_PACKAGE) {
        bail!(
            "{} does not hold the SmartModule SDK (no Cargo.toml for package `{SDK_PACKAGE}`); {what_to_do}",
            dir.display()
        );
    }
    Ok(dir)
}

fn write_files(dir: &Path, files: &[(&str, String)]) -> anyhow::Result<()> {
    for (relative, text) in files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Every file of a new project, as (path relative to the project, contents).
fn project_files(
    name: &str,
    kind: SmartModuleKind,
    with_params: bool,
    sdk: &Path,
) -> Vec<(&'static str, String)> {
    vec![
        ("Cargo.toml", cargo_toml(name, sdk)),
        (".cargo/config.toml", CARGO_CONFIG.to_owned()),
        (".gitignore", "/target\n".to_owned()),
        ("src/lib.rs", lib_rs(name, kind, with_params)),
        ("README.md", readme(name, kind, with_params)),
    ]
}

fn cargo_toml(name: &str, sdk: &Path) -> String {
    // Through toml's serializer so a path with quotes or backslashes stays one valid string.
    let sdk = toml::Value::String(sdk.display().to_string());
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# A SmartModule is a WebAssembly library with no `main`.
crate-type = ["cdylib"]

[dependencies]
# The SDK of the Sluice checkout that generated this project, by path: the project builds
# offline and speaks the ABI of that checkout's engine.
sluice-smartmodule = {{ path = {sdk} }}

[profile.release]
# Small modules that compile quickly; a panic aborts on wasm32 anyway, and the host reports
# its message.
opt-level = "s"
panic = "abort"
debug = false
strip = "debuginfo"

# This project is a workspace of its own, so it builds even when created inside another one.
[workspace]
"#
    )
}

const CARGO_CONFIG: &str = r#"# A SmartModule only makes sense as WebAssembly: plain `cargo build` in this directory
# targets wasm32 without needing `--target`.
[build]
target = "wasm32-unknown-unknown"
"#;

fn readme(name: &str, kind: SmartModuleKind, with_params: bool) -> String {
    let lib = name.replace('-', "_");
    let (sample, params) = sample_usage(kind, with_params);
    let initial = if kind == SmartModuleKind::Aggregate {
        " --aggregate-initial 0"
    } else {
        ""
    };
    let params_section = if with_params {
        format!(
            "\nThe module takes parameters, the fields of its `SmartOpt` struct in `src/lib.rs`:\n\
             give them with `-e key=value` (to `test` and to `consume`), for example `{params}`.\n\
             An unknown key or a value that does not parse stops the stream before any record flows.\n"
        )
    } else {
        String::new()
    };
    let consume_params = if with_params {
        format!(" {params}")
    } else {
        String::new()
    };
    format!(
        r#"# {name}

A Sluice SmartModule of kind `{kind}`, made by `sluice smart-module generate`.
The transform is in `src/lib.rs`.
{params_section}
## Build

    sluice smart-module build

compiles it to `wasm32-unknown-unknown` (install that target once with
`rustup target add wasm32-unknown-unknown`) and prints the path of the module, normally
`target/wasm32-unknown-unknown/release/{lib}.wasm`.

## Try it without a cluster

    sluice smart-module test --wasm-file target/wasm32-unknown-unknown/release/{lib}.wasm{initial} --text '{sample}'{consume_params}

`--file FILE` feeds one record per line instead.

## Use it

    sluice consume TOPIC --{flag} target/wasm32-unknown-unknown/release/{lib}.wasm{consume_params}

or register it once and use it by name:

    sluice smart-module create {name} --wasm-file target/wasm32-unknown-unknown/release/{lib}.wasm
    sluice consume TOPIC --{flag} {name}{consume_params}
"#,
        flag = kind.as_str(),
    )
}

/// A sample input for the README and the `-e` flags that exercise the module's parameters.
fn sample_usage(kind: SmartModuleKind, with_params: bool) -> (&'static str, &'static str) {
    match (kind, with_params) {
        (SmartModuleKind::Filter, _) => ("banana", "-e contains=an"),
        (SmartModuleKind::Map, _) => ("hello", "-e prefix=greeting: -e uppercase=false"),
        (SmartModuleKind::FilterMap, _) => ("21", "-e factor=3"),
        (SmartModuleKind::ArrayMap, false) => ("one two three", ""),
        (SmartModuleKind::ArrayMap, true) => ("one,two,three", "-e separator=;"),
        (SmartModuleKind::Aggregate, _) => ("5", "-e skip_invalid=true"),
    }
}

fn lib_rs(name: &str, kind: SmartModuleKind, with_params: bool) -> String {
    let body = match (kind, with_params) {
        (SmartModuleKind::Filter, false) => FILTER,
        (SmartModuleKind::Filter, true) => FILTER_PARAMS,
        (SmartModuleKind::Map, false) => MAP,
        (SmartModuleKind::Map, true) => MAP_PARAMS,
        (SmartModuleKind::FilterMap, false) => FILTER_MAP,
        (SmartModuleKind::FilterMap, true) => FILTER_MAP_PARAMS,
        (SmartModuleKind::ArrayMap, false) => ARRAY_MAP,
        (SmartModuleKind::ArrayMap, true) => ARRAY_MAP_PARAMS,
        (SmartModuleKind::Aggregate, false) => AGGREGATE,
        (SmartModuleKind::Aggregate, true) => AGGREGATE_PARAMS,
    };
    format!("//! {name}: a Sluice SmartModule ({kind}).\n//!\n{body}")
}

const FILTER: &str = r#"//! Keeps the records whose value contains the letter `a` and drops the others.

use sluice_smartmodule::{Record, Result, smartmodule};

#[smartmodule(filter)]
pub fn filter(record: &Record) -> Result<bool> {
    let value = std::str::from_utf8(record.value.as_ref())?;
    Ok(value.contains('a'))
}
"#;

const FILTER_PARAMS: &str = r#"//! Keeps the records whose value contains the text of the `contains` parameter
//! (`-e contains=...`, `a` by default) and drops the others.

use sluice_smartmodule::{Record, Result, SmartOpt, smartmodule};

/// The module's parameters: each `-e key=value` sets the field `key`, parsed with `FromStr`;
/// fields not given keep their `Default`.
#[derive(SmartOpt)]
pub struct FilterOpts {
    contains: String,
}

impl Default for FilterOpts {
    fn default() -> Self {
        Self {
            contains: "a".to_owned(),
        }
    }
}

#[smartmodule(filter, params)]
pub fn filter(record: &Record, params: &FilterOpts) -> Result<bool> {
    let value = std::str::from_utf8(record.value.as_ref())?;
    Ok(value.contains(params.contains.as_str()))
}
"#;

const MAP: &str = r#"//! Turns each record's value to upper case; the key is kept.

use sluice_smartmodule::{Record, RecordData, Result, smartmodule};

#[smartmodule(map)]
pub fn map(record: &Record) -> Result<(Option<RecordData>, RecordData)> {
    let value = std::str::from_utf8(record.value.as_ref())?;
    Ok((record.key.clone(), value.to_uppercase().into()))
}
"#;

const MAP_PARAMS: &str = r#"//! Rewrites each record's value: upper case unless `-e uppercase=false`, preceded by the
//! `prefix` parameter (`-e prefix=...`, empty by default). The key is kept.

use sluice_smartmodule::{Record, RecordData, Result, SmartOpt, smartmodule};

/// The module's parameters: each `-e key=value` sets the field `key`, parsed with `FromStr`;
/// fields not given keep their `Default`.
#[derive(SmartOpt)]
pub struct MapOpts {
    prefix: String,
    uppercase: bool,
}

impl Default for MapOpts {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            uppercase: true,
        }
    }
}

#[smartmodule(map, params)]
pub fn map(record: &Record, params: &MapOpts) -> Result<(Option<RecordData>, RecordData)> {
    let value = std::str::from_utf8(record.value.as_ref())?;
    let value = if params.uppercase {
        value.to_uppercase()
    } else {
        value.to_owned()
    };
    Ok((record.key.clone(), format!("{}{value}", params.prefix).into()))
}
"#;

const FILTER_MAP: &str = r#"//! Keeps the records whose value is an integer, doubled; drops the others.

use sluice_smartmodule::{Error, Record, RecordData, Result, smartmodule};

#[smartmodule(filter_map)]
pub fn filter_map(record: &Record) -> Result<Option<(Option<RecordData>, RecordData)>> {
    let value = std::str::from_utf8(record.value.as_ref())?;
    let Ok(n) = value.trim().parse::<i64>() else {
        return Ok(None);
    };
    let doubled = n
        .checked_mul(2)
        .ok_or_else(|| Error::msg(format!("{n} doubled overflows an i64")))?;
    Ok(Some((record.key.clone(), doubled.to_string().into())))
}
"#;

const FILTER_MAP_PARAMS: &str = r#"//! Keeps the records whose value is an integer, multiplied by the `factor` parameter
//! (`-e factor=...`, 2 by default); drops the others.

use sluice_smartmodule::{Error, Record, RecordData, Result, SmartOpt, smartmodule};

/// The module's parameters: each `-e key=value` sets the field `key`, parsed with `FromStr`;
/// fields not given keep their `Default`.
#[derive(SmartOpt)]
pub struct FilterMapOpts {
    factor: i64,
}

impl Default for FilterMapOpts {
    fn default() -> Self {
        Self { factor: 2 }
    }
}

#[smartmodule(filter_map, params)]
pub fn filter_map(
    record: &Record,
    params: &FilterMapOpts,
) -> Result<Option<(Option<RecordData>, RecordData)>> {
    let value = std::str::from_utf8(record.value.as_ref())?;
    let Ok(n) = value.trim().parse::<i64>() else {
        return Ok(None);
    };
    let product = n
        .checked_mul(params.factor)
        .ok_or_else(|| Error::msg(format!("{n} times {} overflows an i64", params.factor)))?;
    Ok(Some((record.key.clone(), product.to_string().into())))
}
"#;

const ARRAY_MAP: &str = r#"//! Splits each record's value into words: one output record per word, with the input's key.

use sluice_smartmodule::{Record, RecordData, Result, smartmodule};

#[smartmodule(array_map)]
pub fn array_map(record: &Record) -> Result<Vec<(Option<RecordData>, RecordData)>> {
    let value = std::str::from_utf8(record.value.as_ref())?;
    Ok(value
        .split_whitespace()
        .map(|word| (record.key.clone(), word.into()))
        .collect())
}
"#;

const ARRAY_MAP_PARAMS: &str = r#"//! Splits each record's value at the `separator` parameter (`-e separator=...`, `,` by
//! default): one output record per non-empty, trimmed piece, with the input's key.

use sluice_smartmodule::{Error, Record, RecordData, Result, SmartOpt, smartmodule};

/// The module's parameters: each `-e key=value` sets the field `key`, parsed with `FromStr`;
/// fields not given keep their `Default`.
#[derive(SmartOpt)]
pub struct ArrayMapOpts {
    separator: String,
}

impl Default for ArrayMapOpts {
    fn default() -> Self {
        Self {
            separator: ",".to_owned(),
        }
    }
}

#[smartmodule(array_map, params)]
pub fn array_map(
    record: &Record,
    params: &ArrayMapOpts,
) -> Result<Vec<(Option<RecordData>, RecordData)>> {
    if params.separator.is_empty() {
        return Err(Error::msg("the separator parameter must not be empty"));
    }
    let value = std::str::from_utf8(record.value.as_ref())?;
    Ok(value
        .split(params.separator.as_str())
        .map(str::trim)
        .filter(|piece| !piece.is_empty())
        .map(|piece| (record.key.clone(), piece.into()))
        .collect())
}
"#;

const AGGREGATE: &str = r#"//! The running sum of integer values. Each output is the sum so far; the sum starts at
//! the consumer's `--aggregate-initial` (empty means 0).

use sluice_smartmodule::{Error, Record, RecordData, Result, smartmodule};

#[smartmodule(aggregate)]
pub fn aggregate(accumulator: RecordData, record: &Record) -> Result<RecordData> {
    let sum = std::str::from_utf8(accumulator.as_ref())?.trim();
    let sum: i64 = if sum.is_empty() { 0 } else { sum.parse()? };
    let n: i64 = std::str::from_utf8(record.value.as_ref())?.trim().parse()?;
    let sum = sum
        .checked_add(n)
        .ok_or_else(|| Error::msg("the sum overflows an i64"))?;
    Ok(sum.to_string().into())
}
"#;

const AGGREGATE_PARAMS: &str = r#"//! The running sum of integer values. Each output is the sum so far; the sum starts at
//! the consumer's `--aggregate-initial` (empty means 0). A value that is not an integer
//! stops the stream, unless `-e skip_invalid=true`, which leaves the sum unchanged.

use sluice_smartmodule::{Error, Record, RecordData, Result, SmartOpt, smartmodule};

/// The module's parameters: each `-e key=value` sets the field `key`, parsed with `FromStr`;
/// fields not given keep their `Default`.
#[derive(Default, SmartOpt)]
pub struct AggregateOpts {
    skip_invalid: bool,
}

#[smartmodule(aggregate, params)]
pub fn aggregate(
    accumulator: RecordData,
    record: &Record,
    params: &AggregateOpts,
) -> Result<RecordData> {
    let sum = std::str::from_utf8(accumulator.as_ref())?.trim();
    let sum: i64 = if sum.is_empty() { 0 } else { sum.parse()? };
    let value = std::str::from_utf8(record.value.as_ref())?.trim();
    let n: i64 = match value.parse() {
        Ok(n) => n,
        Err(_) if params.skip_invalid => return Ok(sum.to_string().into()),
        Err(e) => return Err(e.into()),
    };
    let sum = sum
        .checked_add(n)
        .ok_or_else(|| Error::msg("the sum overflows an i64"))?;
    Ok(sum.to_string().into())
}
"#;

// ---------------------------------------------------------------------------------------
// build
// ---------------------------------------------------------------------------------------

pub fn build(args: BuildArgs) -> anyhow::Result<()> {
    let dir = &args.path;
    if !dir.is_dir() {
        bail!(
            "{} is not a directory; pass the directory of a SmartModule project",
            dir.display()
        );
    }
    if !dir.join("Cargo.toml").is_file() {
        bail!(
            "{} is not a cargo project (no Cargo.toml); pass the directory of a SmartModule project, such as one made by `sluice smart-module generate`",
            dir.display()
        );
    }
    let cargo = cargo_program();
    // Metadata first: it is quick, and a project that cannot produce a .wasm is refused
    // before a long build.
    let metadata = cargo_metadata(&cargo, dir, args.offline)?;
    let modules = wasm_outputs(&metadata, dir)?;
    check_wasm_target(dir)?;

    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--release", "--target", WASM_TARGET])
        .current_dir(dir)
        .stdin(Stdio::null());
    if args.offline {
        cmd.arg("--offline");
    }
    let status = cmd.status().map_err(|e| cargo_spawn_error(&cargo, e))?;
    if !status.success() {
        bail!(
            "cargo build failed (its messages are above); fix the project and run `sluice smart-module build` again"
        );
    }
    let mut missing = Vec::new();
    for wasm in &modules {
        if wasm.is_file() {
            println!("{}", wasm.display());
        } else {
            missing.push(wasm.display().to_string());
        }
    }
    if !missing.is_empty() {
        bail!(
            "cargo reported success but did not produce {}; check the project's [lib] and build settings",
            missing.join(", ")
        );
    }
    Ok(())
}

/// The cargo that ran us if any (cargo sets `CARGO` for the programs it runs, as cargo
/// subcommands expect), else the one on PATH.
fn cargo_program() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

fn cargo_spawn_error(cargo: &std::ffi::OsStr, e: io::Error) -> anyhow::Error {
    if e.kind() == io::ErrorKind::NotFound {
        anyhow::anyhow!(
            "cargo ({}) was not found; install Rust from https://rustup.rs or put cargo on PATH",
            cargo.to_string_lossy()
        )
    } else {
        anyhow::anyhow!("cannot run {}: {e}", cargo.to_string_lossy())
    }
}

fn cargo_metadata(
    cargo: &std::ffi::OsStr,
    dir: &Path,
    offline: bool,
) -> anyhow::Result<serde_json::Value> {
    let mut cmd = Command::new(cargo);
    cmd.args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped());
    if offline {
        cmd.arg("--offline");
    }
    let out = cmd.output().map_err(|e| cargo_spawn_error(cargo, e))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!(
            "cargo cannot read the project in {}: {}; fix its Cargo.toml",
            dir.display(),
            stderr.trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("cargo metadata printed something that is not JSON")
}

/// Where the `.wasm` of each cdylib the build makes will be: the package of `dir`'s own
/// Cargo.toml, or every member when it is a virtual workspace manifest.
fn wasm_outputs(metadata: &serde_json::Value, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let target_dir = metadata["target_directory"]
        .as_str()
        .context("cargo metadata has no target_directory")?;
    let release = Path::new(target_dir).join(WASM_TARGET).join("release");
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
    let own_manifest = std::fs::canonicalize(dir.join("Cargo.toml")).ok();
    let own: Vec<&serde_json::Value> = packages
        .iter()
        .filter(|p| {
            let manifest = p["manifest_path"].as_str().map(Path::new);
            manifest.and_then(|m| std::fs::canonicalize(m).ok()) == own_manifest
        })
        .collect();
    let chosen: Vec<&serde_json::Value> = if own.is_empty() {
        packages.iter().collect()
    } else {
        own
    };
    let mut outputs = Vec::new();
    for package in chosen {
        for target in package["targets"].as_array().into_iter().flatten() {
            let is_cdylib = target["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"));
            if let (true, Some(name)) = (is_cdylib, target["name"].as_str()) {
                outputs.push(release.join(format!("{}.wasm", name.replace('-', "_"))));
            }
        }
    }
    if outputs.is_empty() {
        bail!(
            "the project in {} builds no WebAssembly module; add `[lib] crate-type = [\"cdylib\"]` to its Cargo.toml",
            dir.display()
        );
    }
    Ok(outputs)
}

/// Refuses early, with the command that fixes it, when the toolchain the project would use
/// has no wasm32 standard library; cargo's own error for that is long and cryptic. Skipped
/// when rustc cannot be asked: cargo will then say what is wrong.
fn check_wasm_target(dir: &Path) -> anyhow::Result<()> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(out) = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    else {
        return Ok(());
    };
    if !out.status.success() {
        return Ok(());
    }
    let libdir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !libdir.is_empty() && !Path::new(&libdir).is_dir() {
        bail!(
            "the Rust target {WASM_TARGET} is not installed; add it with `rustup target add {WASM_TARGET}` and build again"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// test
// ---------------------------------------------------------------------------------------

pub fn test(args: TestArgs) -> anyhow::Result<()> {
    let params = crate::smartmodule_flags::parse_params(&args.params)?;
    let bytes = std::fs::read(&args.wasm_file)
        .with_context(|| format!("cannot read {}", args.wasm_file.display()))?;
    let engine = Engine::new(EngineConfig::default())?;
    let module = engine
        .load(&bytes)?
        .named(args.wasm_file.display().to_string());
    if args.aggregate_initial.is_some() && module.kind() != SmartModuleKind::Aggregate {
        bail!(
            "--aggregate-initial applies to aggregate modules only, and {} is a {}; drop the flag",
            module.name(),
            module.kind()
        );
    }
    let mut instance =
        module.instantiate(params, args.aggregate_initial.map(String::into_bytes))?;
    let timestamp_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let key = args.key.map(String::into_bytes);
    // The topic's history: offsets 0.. are the --record values; the input follows.
    let history: Vec<Record> = args
        .records
        .into_iter()
        .enumerate()
        .map(|(i, value)| Record {
            offset: i as i64,
            timestamp_ms,
            key: key.clone(),
            value: value.into_bytes(),
        })
        .collect();
    if let Some(last) = args.lookback_last {
        if !module.has_look_back() {
            bail!(
                "{} has no look_back function (#[smartmodule(look_back)]); drop --lookback-last",
                module.name()
            );
        }
        let skip = history
            .len()
            .saturating_sub(usize::try_from(last).unwrap_or(usize::MAX));
        let shown: Vec<_> = history[skip..].iter().map(Record::raw).collect();
        instance.look_back(&shown)?;
    }

    // --text is one record even if it holds newlines; files and stdin are one per line.
    let mut values: Box<dyn Iterator<Item = io::Result<Vec<u8>>>> = match (args.text, &args.file) {
        (Some(text), _) => Box::new(std::iter::once(Ok(text.into_bytes()))),
        (None, Some(path)) => Box::new(lines(Box::new(io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
        )))),
        (None, None) => Box::new(lines(Box::new(io::stdin().lock()))),
    };

    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut offset = history.len() as i64;
    loop {
        let mut batch = Vec::with_capacity(TEST_BATCH);
        for value in values.by_ref().take(TEST_BATCH) {
            let value = value.context("cannot read the input records")?;
            batch.push(Record {
                offset,
                timestamp_ms,
                key: key.clone(),
                value,
            });
            offset += 1;
        }
        if batch.is_empty() {
            break;
        }
        let processed = instance.process_partial(&batch);
        // The outputs before a failing record are shown, as a consumer would receive them.
        if let Err(e) = print_records(&mut out, &processed.outputs, args.key_value) {
            // A reader that went away (`| head`) has seen all it wanted.
            return if e.kind() == io::ErrorKind::BrokenPipe {
                Ok(())
            } else {
                Err(e.into())
            };
        }
        if let Some(e) = processed.error {
            let _ = out.flush();
            return Err(e.into());
        }
    }
    if let Err(e) = out.flush()
        && e.kind() != io::ErrorKind::BrokenPipe
    {
        return Err(e.into());
    }
    Ok(())
}

/// The lines of `input` without their `\n` or `\r\n`, as bytes: a record need not be UTF-8.
fn lines(mut input: Box<dyn BufRead>) -> impl Iterator<Item = io::Result<Vec<u8>>> {
    std::iter::from_fn(move || {
        let mut line = Vec::new();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => None,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                }
                Some(Ok(line))
            }
            Err(e) => Some(Err(e)),
        }
    })
}

fn print_records(out: &mut impl Write, records: &[Record], key_value: bool) -> io::Result<()> {
    for r in records {
        if key_value {
            out.write_all(b"[")?;
            out.write_all(r.key.as_deref().unwrap_or(b"null"))?;
            out.write_all(b"] ")?;
        }
        out.write_all(&r.value)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

// inline modules
// ---------------------------------------------------------------------------------------

/// Compiles a SmartModule given as one Rust source file (`--filter my_filter.rs`) and
/// returns its WebAssembly. The file becomes the `lib.rs` of a project under
/// `$SLUICE_HOME/inline-modules/`, built against this checkout's SDK; the result is cached
/// by the source's content, so using the same file again does not rebuild. Cargo's own
/// progress shows on stderr while it builds.
pub fn compile_inline(source: &Path) -> anyhow::Result<Vec<u8>> {
    use std::hash::{Hash, Hasher};
    let code = std::fs::read_to_string(source)
        .with_context(|| format!("cannot read inline SmartModule {}", source.display()))?;
    let sdk = locate_sdk(None)?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (code.as_str(), sdk.as_path(), env!("CARGO_PKG_VERSION")).hash(&mut hasher);
    let key = format!("{:016x}-{}", hasher.finish(), code.len());
    let root = sluice_client::config::sluice_home().join("inline-modules");
    let cached = root.join(format!("{key}.wasm"));
    if let Ok(wasm) = std::fs::read(&cached) {
        return Ok(wasm);
    }
    let project = root.join(&key);
    write_files(
        &project,
        &[
            ("Cargo.toml", cargo_toml("inline_module", &sdk)),
            (".cargo/config.toml", CARGO_CONFIG.to_owned()),
            ("src/lib.rs", code),
        ],
    )?;
    eprintln!("compiling inline SmartModule {}", source.display());
    let cargo = cargo_program();
    let build = |offline: bool| -> anyhow::Result<bool> {
        let mut cmd = Command::new(&cargo);
        cmd.args(["build", "--release", "--quiet", "--target", WASM_TARGET])
            // Its own target dir per source: two consumers compiling different
            // files at once never read each other's output.
            .arg("--target-dir")
            .arg(project.join("target"))
            .current_dir(&project)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET");
        if offline {
            cmd.arg("--offline");
        }
        Ok(cmd
            .status()
            .map_err(|e| cargo_spawn_error(&cargo, e))?
            .success())
    };
    // Offline first: the SDK needs nothing from the network; online only if a module's
    // own `use` of another crate needs it.
    if !build(true)? && !build(false)? {
        bail!(
            "the inline SmartModule {} does not compile (cargo's messages are above); fix it and try again",
            source.display()
        );
    }
    let built = project
        .join("target")
        .join(WASM_TARGET)
        .join("release/inline_module.wasm");
    let wasm = std::fs::read(&built)
        .with_context(|| format!("cargo did not produce {}", built.display()))?;
    // Into place atomically: a concurrent reader sees the whole module or none.
    let tmp = cached.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, &wasm).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &cached).with_context(|| format!("cannot write {}", cached.display()))?;
    Ok(wasm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_follow_cargo() {
        for good in ["f", "my-filter", "my_map2"] {
            check_package_name(good).unwrap();
        }
        for bad in ["", "2fast", "with space", "a/b", "../x", "é"] {
            assert!(check_package_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_default_sdk_is_this_checkout() {
        let sdk = locate_sdk(None).unwrap();
        assert!(sdk.join("src/lib.rs").is_file());
        let err = locate_sdk(Some(Path::new(env!("CARGO_MANIFEST_DIR"))))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not hold the SmartModule SDK"), "{err}");
    }

    #[test]
    fn lines_drop_their_terminators_only() {
        let input: Box<dyn BufRead> = Box::new(io::Cursor::new(b"a\r\n\nb\nc".to_vec()));
        let got: Vec<Vec<u8>> = lines(input).map(Result::unwrap).collect();
        assert_eq!(got, [b"a".to_vec(), vec![], b"b".to_vec(), b"c".to_vec()]);
    }
}
