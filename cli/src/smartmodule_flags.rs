//! The SmartModule flags shared by `consume` (and later `produce`):
//! `--filter/--map/--filter-map/--array-map/--aggregate X`, `--smartmodule
//! NAME`, `--smartmodule-path PATH`, `-e key=value`, `--initial V`.
//!
//! X is a path to a `.wasm` file (sent with the request: an ad-hoc module) or
//! the name of a registered module. Several modules apply in the order they
//! appear on the command line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use sluice_client::proto::{SmartModuleInvocation, SmartModuleKind, SmartModuleSource};

#[derive(Debug, Args, Default, Clone)]
pub struct SmartModuleArgs {
    /// Keep only the records this filter module accepts (a .wasm path or a registered name).
    #[arg(long, value_name = "MODULE")]
    pub filter: Vec<String>,
    /// Transform each record with this map module.
    #[arg(long, value_name = "MODULE")]
    pub map: Vec<String>,
    /// Filter and transform with this filter-map module.
    #[arg(long = "filter-map", value_name = "MODULE")]
    pub filter_map: Vec<String>,
    /// Turn each record into zero or more with this array-map module.
    #[arg(long = "array-map", value_name = "MODULE")]
    pub array_map: Vec<String>,
    /// Fold records into a running value with this aggregate module.
    #[arg(long, value_name = "MODULE")]
    pub aggregate: Vec<String>,
    /// A registered module of any kind (the kind is read from the module).
    #[arg(long, value_name = "NAME")]
    pub smartmodule: Vec<String>,
    /// A .wasm file of any kind (the kind is read from the module).
    #[arg(long = "smartmodule-path", value_name = "PATH")]
    pub smartmodule_path: Vec<PathBuf>,
    /// A parameter for the modules, `key=value` (repeatable).
    #[arg(short = 'e', long = "params", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Initial accumulator of an aggregate module.
    #[arg(long, visible_alias = "aggregate-initial", value_name = "VALUE")]
    pub initial: Option<String>,
    /// A transforms file (Fluvio's YAML: `transforms: [{uses: NAME, with: {k: v}}]`),
    /// applied after the module flags.
    #[arg(
        short = 't',
        long,
        visible_alias = "transforms-file",
        value_name = "FILE"
    )]
    pub transforms: Option<PathBuf>,
    /// One transform as JSON, `{"uses": NAME, "with": {...}}` (repeatable), applied
    /// after the transforms file.
    #[arg(
        long = "transforms-line",
        visible_alias = "transform",
        value_name = "JSON"
    )]
    pub transforms_line: Vec<String>,
    /// Where each module flag's values stand on the command line, per flag
    /// in [`FLAGS`]' order: clap's derive API keeps a field's values but
    /// not how they interleave with another field's, so
    /// [`SmartModuleArgs::note_order`] reads the indices from the matches.
    #[arg(skip)]
    order: Option<[Vec<usize>; 7]>,
}

/// One entry of a transforms file or line.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Transform {
    uses: String,
    #[serde(default)]
    with: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TransformsFile {
    transforms: Vec<Transform>,
}

impl Transform {
    /// The module it names, as written.
    pub(crate) fn uses(&self) -> &str {
        &self.uses
    }

    /// Its `with` section, for a transform the caller reads itself.
    pub(crate) fn into_with(self) -> BTreeMap<String, serde_yaml::Value> {
        self.with
    }

    /// The invocation: `uses` resolves like a module flag's value (a path or
    /// a registered name); `with` values become the module's parameters
    /// (strings as they are, anything structured as JSON text).
    pub(crate) fn invocation(
        self,
        initial: &Option<String>,
        base: &Path,
    ) -> anyhow::Result<SmartModuleInvocation> {
        let mut params = BTreeMap::new();
        for (key, value) in self.with {
            let text = match value {
                serde_yaml::Value::String(s) => s,
                serde_yaml::Value::Number(n) => n.to_string(),
                serde_yaml::Value::Bool(b) => b.to_string(),
                serde_yaml::Value::Null => String::new(),
                other => serde_json::to_string(&other).with_context(|| {
                    format!(
                        "parameter {key:?} of {} cannot be written as JSON",
                        self.uses
                    )
                })?,
            };
            params.insert(key, text);
        }
        Ok(SmartModuleInvocation {
            module: transform_source(&self.uses, base)?,
            kind: None,
            params,
            initial: initial.as_ref().map(|v| v.as_bytes().to_vec()),
        })
    }
}

/// The flags as `(clap id, kind)`; `None` means "the module's own kind".
const FLAGS: [(&str, Option<SmartModuleKind>); 7] = [
    ("filter", Some(SmartModuleKind::Filter)),
    ("map", Some(SmartModuleKind::Map)),
    ("filter_map", Some(SmartModuleKind::FilterMap)),
    ("array_map", Some(SmartModuleKind::ArrayMap)),
    ("aggregate", Some(SmartModuleKind::Aggregate)),
    ("smartmodule", None),
    ("smartmodule_path", None),
];

impl SmartModuleArgs {
    /// Records where the module flags stand on the command line, from the
    /// matches of the (sub)command these arguments were parsed from.
    pub fn note_order(&mut self, matches: &clap::ArgMatches) {
        self.order = Some(FLAGS.map(|(id, _)| {
            matches
                .indices_of(id)
                .map(Iterator::collect)
                .unwrap_or_default()
        }));
    }

    /// The chain, in command-line order, with each module's bytes read if it
    /// is a file.
    pub fn chain(&self) -> anyhow::Result<Vec<SmartModuleInvocation>> {
        let params = parse_params(&self.params)?;
        let given: [Vec<String>; 7] = [
            self.filter.clone(),
            self.map.clone(),
            self.filter_map.clone(),
            self.array_map.clone(),
            self.aggregate.clone(),
            self.smartmodule.clone(),
            self.smartmodule_path
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
        ];
        let mut ordered: Vec<(usize, usize, &str)> = Vec::new();
        for (slot, values) in given.iter().enumerate() {
            if values.is_empty() {
                continue;
            }
            let Some(positions) = self.order.as_ref().map(|o| &o[slot]) else {
                bail!(
                    "internal error: the order of the module flags was not read from the command line"
                );
            };
            for (i, value) in values.iter().enumerate() {
                let at = positions.get(i).copied().unwrap_or(usize::MAX);
                ordered.push((at, slot, value));
            }
        }
        ordered.sort_by_key(|(at, slot, _)| (*at, *slot));
        let transforms = self.transforms_chain()?;
        if ordered.is_empty() && !transforms.is_empty() {
            if !params.is_empty() {
                bail!(
                    "-e/--params apply to module flags; give a transform's parameters in its `with`"
                );
            }
            return Ok(transforms);
        }
        if ordered.is_empty() {
            if !params.is_empty() {
                bail!(
                    "-e/--params given without a SmartModule (--filter, --map, --smartmodule, ...)"
                );
            }
            if self.initial.is_some() {
                bail!("--initial given without an aggregate SmartModule");
            }
            return Ok(Vec::new());
        }
        let mut chain: Vec<SmartModuleInvocation> = ordered
            .into_iter()
            .map(|(_, slot, value)| {
                let (flag, kind) = FLAGS[slot];
                let module = if flag == "smartmodule" {
                    SmartModuleSource::Registered(value.to_string())
                } else if flag == "smartmodule_path" {
                    ad_hoc(Path::new(value))?
                } else {
                    source(value)?
                };
                Ok(SmartModuleInvocation {
                    module,
                    kind,
                    params: params.clone(),
                    initial: self.initial.as_ref().map(|v| v.as_bytes().to_vec()),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        chain.extend(transforms);
        Ok(chain)
    }

    /// The transforms file's entries, then each `--transforms-line`.
    fn transforms_chain(&self) -> anyhow::Result<Vec<SmartModuleInvocation>> {
        let mut entries = Vec::new();
        if let Some(path) = &self.transforms {
            let file = read_transforms_file(path)?;
            // Module files named in it are looked for beside it.
            let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
            entries.extend(file.transforms.into_iter().map(|t| (t, base.clone())));
        }
        for line in &self.transforms_line {
            let t: Transform = serde_json::from_str(line).with_context(|| {
                format!("--transforms-line {line:?} is not {{\"uses\": NAME, \"with\": {{...}}}}")
            })?;
            entries.push((t, PathBuf::new()));
        }
        entries
            .into_iter()
            .map(|(t, base)| t.invocation(&self.initial, &base))
            .collect()
    }
}

/// The first four bytes of every WebAssembly module.
const WASM_MAGIC: &[u8] = b"\0asm";

/// A path to a `.wasm` file (or any existing file) is an ad-hoc module, a `.rs` file is
/// compiled on the fly into one; anything else names a registered module.
fn source(value: &str) -> anyhow::Result<SmartModuleSource> {
    let path = Path::new(value);
    if value.ends_with(".rs") {
        let wasm = crate::smartmodule_dev::compile_inline(path)?;
        let name = path
            .file_name()
            .map_or_else(|| value.to_string(), |n| n.to_string_lossy().into_owned());
        return Ok(SmartModuleSource::AdHoc { name, wasm });
    }
    if value.ends_with(".wasm") || path.is_file() {
        ad_hoc(path)
    } else {
        Ok(SmartModuleSource::Registered(value.to_string()))
    }
}

/// Largest transforms file read: real ones are a few hundred bytes.
const TRANSFORMS_FILE_BYTES_MAX: u64 = 64 * 1024;
/// Deepest nesting of `[` and `{` in a transforms file: the YAML parser's
/// time grows with it (64 KiB of `[` took seconds), and parameters are
/// shallow.
const TRANSFORMS_FILE_FLOW_DEPTH_MAX: usize = 32;

fn read_transforms_file(path: &Path) -> anyhow::Result<TransformsFile> {
    let what = || format!("transforms file {}", path.display());
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", what()))?
        .len();
    if size > TRANSFORMS_FILE_BYTES_MAX {
        bail!(
            "{} is {size} bytes, over the limit of {TRANSFORMS_FILE_BYTES_MAX}: a transforms file lists modules and their parameters; pass large data another way",
            what()
        );
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", what()))?;
    let depth = flow_depth(&text);
    if depth > TRANSFORMS_FILE_FLOW_DEPTH_MAX {
        bail!(
            "{} nests [ and {{ {depth} deep, over the limit of {TRANSFORMS_FILE_FLOW_DEPTH_MAX}",
            what()
        );
    }
    serde_yaml::from_str(&text).with_context(|| {
        format!(
            "{} is not a transforms file (transforms: [{{uses: NAME, with: {{...}}}}])",
            path.display()
        )
    })
}

/// The deepest nesting of YAML flow collections (`[`, `{`) outside quotes
/// and comments. A cheap upper bound checked before parsing.
fn flow_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut quote = None;
    let mut comment = false;
    let mut previous = '\n';
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            _ if comment => comment = c != '\n',
            (Some('"'), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') if previous.is_whitespace() => comment = true,
            (None, '[' | '{') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (None, ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        previous = c;
    }
    deepest
}

/// Where a transforms entry's module comes from. Unlike a module flag, a
/// file that names `../../etc/passwd` must not make the CLI upload that
/// file: a `.wasm` (or `.rs`) entry is a path inside the directory of the
/// transforms file (the current directory for `--transforms-line`), and
/// anything else is the name of a registered module, never a file.
fn transform_source(uses: &str, base: &Path) -> anyhow::Result<SmartModuleSource> {
    if !(uses.ends_with(".wasm") || uses.ends_with(".rs")) {
        return Ok(SmartModuleSource::Registered(uses.to_string()));
    }
    let relative = Path::new(uses);
    let inside = relative.components().all(|c| {
        matches!(
            c,
            std::path::Component::Normal(_) | std::path::Component::CurDir
        )
    });
    if !inside {
        bail!(
            "transform `uses: {uses}` points outside the transforms file's directory; name a module file beside it (e.g. `uses: filters/even.wasm`) or a registered module"
        );
    }
    source(&base.join(relative).display().to_string())
}

fn ad_hoc(path: &Path) -> anyhow::Result<SmartModuleSource> {
    let wasm = std::fs::read(path)
        .with_context(|| format!("cannot read SmartModule file {}", path.display()))?;
    if !wasm.starts_with(WASM_MAGIC) {
        bail!(
            "{} is not a WebAssembly module (its first bytes are not \\0asm); build one with `sluice smart-module build`",
            path.display()
        );
    }
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok(SmartModuleSource::AdHoc { name, wasm })
}

/// `key=value` pairs; a repeated key is an error rather than a silent overwrite.
pub fn parse_params(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut params = BTreeMap::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("parameter {pair:?} is not key=value");
        };
        if key.is_empty() {
            bail!("parameter {pair:?} has an empty key");
        }
        if params.insert(key.to_string(), value.to_string()).is_some() {
            bail!("parameter {key:?} is given twice");
        }
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The arguments as `sluice consume` would parse them from `line`.
    fn parsed(line: &[&str]) -> SmartModuleArgs {
        use clap::{CommandFactory, FromArgMatches, Parser};
        #[derive(Parser)]
        struct Consume {
            topic: String,
            #[command(flatten)]
            modules: SmartModuleArgs,
        }
        let matches = Consume::command()
            .try_get_matches_from(std::iter::once(&"consume").chain(line))
            .unwrap();
        let mut args = Consume::from_arg_matches(&matches).unwrap().modules;
        args.note_order(&matches);
        args
    }

    #[test]
    fn modules_apply_in_command_line_order() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f.wasm");
        let m = dir.path().join("m.wasm");
        std::fs::write(&f, b"\0asm-f").unwrap();
        std::fs::write(&m, b"\0asm-m").unwrap();
        let (f, m) = (f.display().to_string(), m.display().to_string());
        let chain = parsed(&[
            "t",
            "--map",
            &m,
            "--smartmodule",
            "registered",
            &format!("--filter={f}"),
            "-e",
            "a=1",
        ])
        .chain()
        .unwrap();
        let kinds: Vec<_> = chain.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            [
                Some(SmartModuleKind::Map),
                None,
                Some(SmartModuleKind::Filter)
            ]
        );
        assert_eq!(
            chain[0].module,
            SmartModuleSource::AdHoc {
                name: "m.wasm".into(),
                wasm: b"\0asm-m".to_vec()
            }
        );
        assert_eq!(
            chain[1].module,
            SmartModuleSource::Registered("registered".into())
        );
        assert_eq!(chain[2].params["a"], "1");
    }

    #[test]
    fn transforms_files_and_lines_follow_the_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.yaml");
        std::fs::write(
            &file,
            "transforms:\n  - uses: first\n    with:\n      n: 3\n      spec:\n        - a: 1\n  - uses: second\n",
        )
        .unwrap();
        let transforms = file.display().to_string();
        let chain = parsed(&[
            "t",
            "-t",
            &transforms,
            "--transforms-line",
            r#"{"uses": "third", "with": {"on": true}}"#,
            "--smartmodule",
            "flagged",
        ])
        .chain()
        .unwrap();
        let names: Vec<_> = chain.iter().map(|c| c.module.name().to_string()).collect();
        assert_eq!(names, ["flagged", "first", "second", "third"]);
        assert_eq!(chain[1].params["n"], "3");
        assert_eq!(chain[1].params["spec"], r#"[{"a":1}]"#);
        assert_eq!(chain[3].params["on"], "true");
        let bad = SmartModuleArgs {
            transforms_line: vec!["{\"use\": \"x\"}".into()],
            ..Default::default()
        };
        assert!(bad.chain().is_err(), "a misspelt key is refused");
    }

    #[test]
    fn a_transforms_file_cannot_upload_files_outside_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("mods")).unwrap();
        std::fs::write(dir.path().join("mods/ok.wasm"), b"\0asm\x01\0\0\0").unwrap();
        std::fs::write(dir.path().join("secret"), b"password").unwrap();
        std::fs::write(dir.path().join("notwasm.wasm"), b"password").unwrap();
        let chain_of = |yaml: &str| {
            let file = dir.path().join("t.yaml");
            std::fs::write(&file, yaml).unwrap();
            SmartModuleArgs {
                transforms: Some(file),
                ..Default::default()
            }
            .chain()
        };
        let chain = chain_of("transforms:\n  - uses: mods/ok.wasm\n  - uses: secret\n").unwrap();
        assert!(matches!(chain[0].module, SmartModuleSource::AdHoc { .. }));
        // A name that happens to be a file beside it is still a registered name.
        assert_eq!(
            chain[1].module,
            SmartModuleSource::Registered("secret".into())
        );
        for escape in ["../../etc/passwd.wasm", "/etc/x.wasm", "mods/../../x.wasm"] {
            let err = chain_of(&format!("transforms:\n  - uses: {escape}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("outside the transforms file's directory"),
                "{err}"
            );
        }
        let err = chain_of("transforms:\n  - uses: notwasm.wasm\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a WebAssembly module"), "{err}");
    }

    #[test]
    fn deep_or_huge_transforms_files_are_refused_before_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.yaml");
        let args = SmartModuleArgs {
            transforms: Some(file.clone()),
            ..Default::default()
        };
        std::fs::write(&file, format!("transforms: {}", "[".repeat(40_000))).unwrap();
        let err = args.chain().unwrap_err().to_string();
        assert!(err.contains("nests [ and { 40000 deep"), "{err}");
        std::fs::write(&file, " ".repeat(TRANSFORMS_FILE_BYTES_MAX as usize + 1)).unwrap();
        let err = args.chain().unwrap_err().to_string();
        assert!(err.contains("over the limit"), "{err}");
        // Brackets in quotes and comments do not count.
        assert_eq!(flow_depth("a: '[[[[' # [[[[\nb: \"{{\\\"\"\nc: [[1]]"), 2);
    }

    #[test]
    fn module_flags_need_their_order_from_the_command_line() {
        let unordered = SmartModuleArgs {
            filter: vec!["registered".into()],
            ..Default::default()
        };
        let err = unordered.chain().unwrap_err().to_string();
        assert!(err.contains("order of the module flags"), "{err}");
        // Two flags of one kind around another keep their places.
        let chain = parsed(&[
            "t",
            "--smartmodule",
            "a",
            "--filter",
            "b",
            "--smartmodule",
            "c",
        ])
        .chain()
        .unwrap();
        let names: Vec<_> = chain.iter().map(|c| c.module.name().to_string()).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn bad_flags_are_refused() {
        assert!(parse_params(&["novalue".into()]).is_err());
        assert!(parse_params(&["a=1".into(), "a=2".into()]).is_err());
        assert!(parsed(&["t", "-e", "a=1"]).chain().is_err());
        let err = parsed(&["t", "--filter", "/nonexistent/x.wasm"])
            .chain()
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("cannot read SmartModule file"),
            "{err:#}"
        );
    }
}
