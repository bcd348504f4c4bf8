//! `sluice table-format create | list | describe | delete` and the table
//! that `consume -O table` (or `--table-format NAME`) prints JSON records as.
//!
//! A table format names the columns to show of JSON records, in Fluvio's file
//! format:
//!
//! ```yaml
//! name: orders
//! inputFormat: JSON
//! columns:
//!   - keyPath: id            # a dotted path into the record's JSON object
//!     headerLabel: ID        # default: the key path
//!   - keyPath: customer.name
//!   - keyPath: internal
//!     display: false         # kept in the format, not printed
//! ```
//!
//! Formats are kept with the client, under `$SLUICE_HOME/table-formats/`,
//! not in the cluster (unlike Fluvio's): they say how this command line
//! prints records and nothing else, so they need no replicated metadata;
//! another machine needs its own copy (`create --config` the same file).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use clap::Subcommand;
use serde::{Deserialize, Serialize};

use crate::output::{self, Table};
use crate::{Globals, OutputArgs};

/// Columns a table format may have.
pub const TABLE_FORMAT_COLUMNS_MAX: usize = 64;
/// Bytes a table format file may hold.
pub const TABLE_FORMAT_FILE_BYTES_MAX: u64 = 64 * 1024;
/// Table formats one home directory may keep.
pub const TABLE_FORMATS_MAX: usize = 1024;
/// Characters of one printed cell before it is cut (with `…`), so one huge
/// value does not wreck every row after it.
const CELL_CHARS_MAX: usize = 64;

#[derive(Debug, Subcommand)]
pub enum TableFormatCmd {
    /// Keep a table format from a file (Fluvio's YAML: name, inputFormat, columns).
    Create {
        #[arg(long, value_name = "PATH")]
        config: PathBuf,
    },
    /// List the table formats kept here.
    #[command(alias = "ls")]
    List(OutputArgs),
    /// Show a table format's columns.
    Describe {
        name: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Forget a table format.
    #[command(alias = "rm")]
    Delete { name: String },
}

/// A table format, as its file gives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TableFormat {
    pub name: String,
    /// Only `JSON` (records are JSON objects).
    #[serde(default = "json")]
    pub input_format: String,
    pub columns: Vec<Column>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Column {
    /// Dotted path to the value in the record's JSON object.
    pub key_path: String,
    /// Header; the key path by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_label: Option<String>,
    /// Whether the column is printed (default: yes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<bool>,
    /// Fluvio's interactive `full-table` view updates rows by it; the
    /// streaming table here prints every record, so it is kept and shown only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_key: Option<bool>,
}

fn json() -> String {
    "JSON".into()
}

impl TableFormat {
    /// Parses and checks a table format file's text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let format: TableFormat = serde_yaml::from_str(text).context(
            "not a table format: expected YAML with name, inputFormat (JSON) and columns \
             (each with keyPath; optional headerLabel, display, primaryKey)",
        )?;
        sluice_client::proto::limits::validate_table_format_name(&format.name)
            .map_err(anyhow::Error::msg)?;
        if !format.input_format.eq_ignore_ascii_case("json") {
            bail!(
                "inputFormat {:?}: only JSON records can be shown as a table",
                format.input_format
            );
        }
        if format.columns.is_empty() || format.columns.len() > TABLE_FORMAT_COLUMNS_MAX {
            bail!(
                "{} columns: a table format has 1 to {TABLE_FORMAT_COLUMNS_MAX}",
                format.columns.len()
            );
        }
        if let Some(c) = format
            .columns
            .iter()
            .find(|c| c.key_path.is_empty() || c.key_path.split('.').any(str::is_empty))
        {
            bail!(
                "column keyPath {:?}: give dotted keys, e.g. customer.name",
                c.key_path
            );
        }
        Ok(format)
    }

    fn dir(home: &Path) -> PathBuf {
        home.join("table-formats")
    }

    fn path(home: &Path, name: &str) -> PathBuf {
        Self::dir(home).join(format!("{name}.yaml"))
    }

    /// The table format called `name` kept in `home`.
    pub fn load(home: &Path, name: &str) -> anyhow::Result<Self> {
        sluice_client::proto::limits::validate_table_format_name(name)
            .map_err(anyhow::Error::msg)?;
        let path = Self::path(home, name);
        if !path.exists() {
            bail!(
                "TableFormat not found: no table format {name:?} in {}; create it with \
                 `sluice table-format create --config FILE`",
                Self::dir(home).display()
            );
        }
        let text =
            crate::small_file::read(&path, TABLE_FORMAT_FILE_BYTES_MAX, "table format file")?;
        Self::parse(&text).with_context(|| format!("table format file {}", path.display()))
    }

    fn list(home: &Path) -> anyhow::Result<Vec<Self>> {
        let dir = Self::dir(home);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
        };
        let mut formats = Vec::new();
        for entry in entries {
            let path = entry?.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".yaml"))
            else {
                continue;
            };
            formats.push(Self::load(home, name)?);
        }
        formats.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(formats)
    }
}

#[derive(Serialize)]
struct FormatRow {
    name: String,
    input_format: String,
    columns: Vec<String>,
}

pub fn run(cmd: TableFormatCmd, globals: &Globals) -> anyhow::Result<()> {
    let home = &globals.home;
    match cmd {
        TableFormatCmd::Create { config } => {
            let text =
                crate::small_file::read(&config, TABLE_FORMAT_FILE_BYTES_MAX, "table format file")?;
            let format = TableFormat::parse(&text)
                .with_context(|| format!("table format file {}", config.display()))?;
            let path = TableFormat::path(home, &format.name);
            if path.exists() {
                bail!(
                    "TableFormat already exists: {:?}; delete it first (`sluice table-format \
                     delete {}`) or pick another name",
                    format.name,
                    format.name
                );
            }
            if TableFormat::list(home)?.len() >= TABLE_FORMATS_MAX {
                bail!("{TABLE_FORMATS_MAX} table formats are kept already; delete some first");
            }
            std::fs::create_dir_all(TableFormat::dir(home))?;
            // Written whole under a temporary name, then renamed: a reader
            // never sees half a file.
            let tmp = path.with_extension("yaml.tmp");
            std::fs::write(&tmp, serde_yaml::to_string(&format)?)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            std::fs::rename(&tmp, &path)?;
            output::write_stdout(format!("table-format \"{}\" created\n", format.name).as_bytes())
        }
        TableFormatCmd::List(out) => {
            let rows: Vec<FormatRow> = TableFormat::list(home)?
                .into_iter()
                .map(|f| FormatRow {
                    columns: f.columns.iter().map(|c| c.key_path.clone()).collect(),
                    name: f.name,
                    input_format: f.input_format,
                })
                .collect();
            output::print(out.output, &rows, || {
                if rows.is_empty() {
                    return "no table formats; create one with `sluice table-format create \
                            --config FILE`\n"
                        .into();
                }
                let mut table = Table::new(&["NAME", "INPUT", "COLUMNS"]);
                for r in &rows {
                    table.row(vec![
                        r.name.clone(),
                        r.input_format.clone(),
                        r.columns.join(", "),
                    ]);
                }
                table.render()
            })
        }
        TableFormatCmd::Describe { name, output: out } => {
            let format = TableFormat::load(home, &name)?;
            output::print(out.output, &format, || {
                let mut table = Table::new(&["KEY-PATH", "HEADER", "DISPLAY", "PRIMARY-KEY"]);
                for c in &format.columns {
                    table.row(vec![
                        c.key_path.clone(),
                        c.header_label.clone().unwrap_or_else(|| c.key_path.clone()),
                        c.display.unwrap_or(true).to_string(),
                        c.primary_key.unwrap_or(false).to_string(),
                    ]);
                }
                table.render()
            })
        }
        TableFormatCmd::Delete { name } => {
            TableFormat::load(home, &name)?;
            let path = TableFormat::path(home, &name);
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot delete {}", path.display()))?;
            output::write_stdout(format!("table-format \"{name}\" deleted\n").as_bytes())
        }
    }
}

/// Prints JSON records as rows of a table: the columns of a table format,
/// or else the first record's top-level keys (in key order). The header
/// comes before the first row; each cell is padded to its header's width
/// (rows stream, so later widths are not known).
#[derive(Debug, Default)]
pub struct TableRender {
    /// (key path, header) of each printed column; set by the format or by
    /// the first record.
    columns: OnceLock<Vec<(Vec<String>, String)>>,
    header_printed: AtomicBool,
}

/// Two renders are alike when they print the same columns (the header's
/// state is not part of what they are).
impl PartialEq for TableRender {
    fn eq(&self, other: &Self) -> bool {
        self.columns.get() == other.columns.get()
    }
}

impl Eq for TableRender {}

impl TableRender {
    pub fn from_format(format: &TableFormat) -> Self {
        let columns: Vec<(Vec<String>, String)> = format
            .columns
            .iter()
            .filter(|c| c.display.unwrap_or(true))
            .map(|c| {
                let path: Vec<String> = c.key_path.split('.').map(str::to_string).collect();
                let header = c.header_label.clone().unwrap_or_else(|| c.key_path.clone());
                (path, header)
            })
            .collect();
        Self {
            columns: OnceLock::from(columns),
            header_printed: AtomicBool::new(false),
        }
    }

    /// Appends the row of `value` (and the header before the first row) to
    /// `out`, newline included. A record that is not a JSON object is
    /// printed as its text on a row of its own.
    pub fn render(&self, value: &[u8], out: &mut Vec<u8>) {
        let object = serde_json::from_slice::<serde_json::Value>(value)
            .ok()
            .filter(serde_json::Value::is_object);
        let Some(object) = object else {
            out.extend_from_slice(String::from_utf8_lossy(value).as_bytes());
            out.push(b'\n');
            return;
        };
        let columns = self.columns.get_or_init(|| {
            object
                .as_object()
                .map(|o| o.keys().map(|k| (vec![k.clone()], k.clone())).collect())
                .unwrap_or_default()
        });
        if !self.header_printed.swap(true, Ordering::Relaxed) {
            let header: Vec<&str> = columns.iter().map(|(_, h)| h.as_str()).collect();
            out.extend_from_slice(header.join("  ").as_bytes());
            out.push(b'\n');
        }
        let cells: Vec<String> = columns
            .iter()
            .map(|(path, header)| {
                let cell = path
                    .iter()
                    .try_fold(&object, |v, key| v.get(key))
                    .map(|v| match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .unwrap_or_default();
                let cell = match cell.chars().nth(CELL_CHARS_MAX) {
                    Some(_) => cell.chars().take(CELL_CHARS_MAX - 1).collect::<String>() + "…",
                    None => cell,
                };
                format!("{cell:<width$}", width = header.chars().count())
            })
            .collect();
        out.extend_from_slice(cells.join("  ").trim_end().as_bytes());
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLUVIO_STYLE: &str = "name: testtable\ninputFormat: \"JSON\"\ncolumns:\n  - keyPath: \
                                \"key2\"\n    display: true\n  - keyPath: \"key1\"\n";

    #[test]
    fn a_fluvio_table_format_file_parses_and_bad_ones_say_why() {
        let f = TableFormat::parse(FLUVIO_STYLE).unwrap();
        assert_eq!(f.name, "testtable");
        assert_eq!(f.columns.len(), 2);
        for (text, why) in [
            ("name: t\ncolumns: []\n", "0 columns"),
            (
                "name: t\ninputFormat: CSV\ncolumns:\n  - keyPath: a\n",
                "only JSON",
            ),
            ("name: t\ncolumns:\n  - keyPath: a..b\n", "dotted keys"),
            ("name: T!\ncolumns:\n  - keyPath: a\n", "table format"),
            (
                "name: t\ncolumns:\n  - keypath: a\n",
                "unknown field `keypath`",
            ),
        ] {
            let e = format!("{:#}", TableFormat::parse(text).unwrap_err());
            assert!(e.contains(why), "{text:?}: {e}");
        }
    }

    fn rows(render: &TableRender, values: &[&str]) -> String {
        let mut out = Vec::new();
        for v in values {
            render.render(v.as_bytes(), &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn records_become_rows_of_the_formats_columns_or_the_first_records_keys() {
        let format = TableFormat::parse(
            "name: t\ncolumns:\n  - keyPath: id\n    headerLabel: ID\n  - keyPath: who.name\n  \
             - keyPath: secret\n    display: false\n",
        )
        .unwrap();
        let table = rows(
            &TableRender::from_format(&format),
            &[
                r#"{"id": 1, "who": {"name": "ann"}, "secret": "x"}"#,
                r#"{"id": "b", "who": {}}"#,
                "not json",
            ],
        );
        assert_eq!(table, "ID  who.name\n1   ann\nb\nnot json\n");
        let derived = rows(
            &TableRender::default(),
            &[r#"{"b": 2, "a": "x"}"#, r#"{"a": [1], "c": 3}"#],
        );
        assert_eq!(derived, "a  b\nx  2\n[1]\n");
    }
}
