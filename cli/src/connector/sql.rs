//! The sql sink: JSON records of a topic written as rows of a table, one
//! transaction per batch, committed as the connector's consumer after the
//! transaction: at least once, and exactly once in effect with `mode:
//! upsert` (a batch written again after a crash updates the same rows).
//!
//! ```yaml
//! apiVersion: 0.1.0
//! meta: {name: readings-sink, type: sql-sink, topic: readings}
//! sql:
//!   url: sqlite:///var/lib/app/readings.db   # or a path ending .db / .sqlite
//!   table: readings
//!   mode: upsert              # or insert (the default)
//!   key: [device_id]          # upsert: the columns of the table's unique key
//!   skip_invalid: false       # true: a record that does not map is counted and skipped
//!   columns:
//!     device_id: {json-key: device.id, type: int, required: true}
//!     temp: {json-key: temp, type: float, default: "0"}
//!     raw: {json-key: "$", type: json}
//! ```
//!
//! Types: `int`, `float`, `text`, `bool` (stored 0/1), `json` (the value's
//! JSON text). A column whose key is missing (or null) takes its default,
//! else NULL, unless `required`. The table must exist with those columns:
//! the sink checks it before it reads a record. SQLite only in this
//! release; a `postgres://` url is refused saying so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rusqlite::types::Value as SqlValue;

use super::config::text;

/// A column's type in the mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    Int,
    Float,
    Text,
    Bool,
    Json,
}

/// One column of the table and where its value comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub name: String,
    /// The path of keys in the record's JSON object; empty: the whole value.
    pub json_key: Vec<String>,
    pub kind: ColumnType,
    pub required: bool,
    pub default: Option<SqlValue>,
}

/// Insert every record, or update the row with the same key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Insert,
    Upsert { key: Vec<String> },
}

/// A checked sql sink section.
#[derive(Clone, Debug, PartialEq)]
pub struct SqlSink {
    pub database: PathBuf,
    pub table: String,
    pub mode: Mode,
    pub columns: Vec<Column>,
    pub skip_invalid: bool,
}

fn identifier(what: &str, name: &str) -> anyhow::Result<String> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        bail!("{what} {name:?}: use 1 to 63 letters, digits and '_', not starting with a digit");
    }
    Ok(name.to_string())
}

/// The sql sink of a section's keys (see the module documentation).
pub fn sql_sink(
    mut keys: BTreeMap<String, serde_yaml::Value>,
    section: &str,
    base: &Path,
) -> anyhow::Result<SqlSink> {
    let mut take = |k: &str| keys.remove(k).or_else(|| keys.remove(&k.replace('_', "-")));
    let Some(url) = take("url") else {
        bail!("{section}.url is required: sqlite:///PATH/TO/FILE.db");
    };
    let url = text(&url, &format!("{section}.url"))?;
    let database = if let Some(path) = url.strip_prefix("sqlite://") {
        PathBuf::from(path)
    } else if let Some(path) = url.strip_prefix("sqlite:") {
        PathBuf::from(path)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        bail!(
            "{section}.url: PostgreSQL is not supported by this release's sql sink; use SQLite (sqlite:///PATH)"
        );
    } else if url.ends_with(".db") || url.ends_with(".sqlite") {
        PathBuf::from(&url)
    } else {
        bail!("{section}.url {url:?}: expected sqlite:///PATH (or a path ending .db or .sqlite)");
    };
    let database = base.join(database);
    let Some(table) = take("table") else {
        bail!("{section}.table is required: the table the rows go to");
    };
    let table = identifier(
        &format!("{section}.table"),
        &text(&table, &format!("{section}.table"))?,
    )?;
    let mode = match take("mode")
        .map(|m| text(&m, &format!("{section}.mode")))
        .transpose()?
        .as_deref()
    {
        None | Some("insert") => Mode::Insert,
        Some("upsert") => Mode::Upsert { key: Vec::new() },
        Some(other) => bail!("{section}.mode {other:?}: use insert or upsert"),
    };
    let key: Vec<String> = match take("key") {
        None => Vec::new(),
        Some(serde_yaml::Value::Sequence(items)) => items
            .iter()
            .map(|k| {
                identifier(
                    &format!("{section}.key"),
                    &text(k, &format!("{section}.key"))?,
                )
            })
            .collect::<anyhow::Result<_>>()?,
        Some(one) => vec![identifier(
            &format!("{section}.key"),
            &text(&one, &format!("{section}.key"))?,
        )?],
    };
    let skip_invalid = match take("skip_invalid") {
        None => false,
        Some(serde_yaml::Value::Bool(b)) => b,
        Some(other) => bail!("{section}.skip_invalid: expected true or false, found {other:?}"),
    };
    let columns = match take("columns") {
        Some(serde_yaml::Value::Mapping(map)) => map
            .iter()
            .map(|(name, spec)| column(section, name, spec))
            .collect::<anyhow::Result<Vec<_>>>()?,
        _ => bail!(
            "{section}.columns is required: COLUMN: {{json-key: KEY, type: int|float|text|bool|json}}"
        ),
    };
    if columns.is_empty() {
        bail!("{section}.columns names no column");
    }
    if let Some(k) = keys.keys().next() {
        bail!(
            "{section}.{k}: not a parameter of the sql sink (url, table, mode, key, skip_invalid, columns)"
        );
    }
    let mode = match mode {
        Mode::Insert if !key.is_empty() => bail!("{section}.key is for mode: upsert"),
        Mode::Insert => Mode::Insert,
        Mode::Upsert { .. } => {
            if key.is_empty() {
                bail!(
                    "{section}.key is required with mode: upsert: the columns of the table's unique key"
                );
            }
            for k in &key {
                if !columns.iter().any(|c| &c.name == k) {
                    bail!("{section}.key: {k:?} is not one of the columns");
                }
            }
            Mode::Upsert { key }
        }
    };
    Ok(SqlSink {
        database,
        table,
        mode,
        columns,
        skip_invalid,
    })
}

fn column(
    section: &str,
    name: &serde_yaml::Value,
    spec: &serde_yaml::Value,
) -> anyhow::Result<Column> {
    let name = identifier(
        &format!("{section}.columns"),
        &text(name, &format!("{section}.columns"))?,
    )?;
    let at = format!("{section}.columns.{name}");
    let serde_yaml::Value::Mapping(spec) = spec else {
        bail!("{at}: expected {{json-key: KEY, type: TYPE}}");
    };
    let mut spec: BTreeMap<String, serde_yaml::Value> = spec
        .iter()
        .map(|(k, v)| Ok((text(k, &at)?.replace('_', "-"), v.clone())))
        .collect::<anyhow::Result<_>>()?;
    let json_key = match spec.remove("json-key") {
        Some(k) => text(&k, &format!("{at}.json-key"))?,
        None => name.clone(),
    };
    let json_key = if json_key == "$" {
        Vec::new()
    } else {
        json_key.split('.').map(str::to_string).collect()
    };
    let kind = match spec
        .remove("type")
        .map(|t| text(&t, &format!("{at}.type")))
        .transpose()?
        .as_deref()
    {
        Some("int" | "integer" | "bigint") => ColumnType::Int,
        Some("float" | "real" | "double") => ColumnType::Float,
        None | Some("text" | "string" | "varchar") => ColumnType::Text,
        Some("bool" | "boolean") => ColumnType::Bool,
        Some("json" | "jsonb") => ColumnType::Json,
        Some(other) => bail!("{at}.type {other:?}: use int, float, text, bool or json"),
    };
    let required = match spec.remove("required") {
        None => false,
        Some(serde_yaml::Value::Bool(b)) => b,
        Some(other) => bail!("{at}.required: expected true or false, found {other:?}"),
    };
    let default = spec
        .remove("default")
        .map(|d| {
            let d = text(&d, &format!("{at}.default"))?;
            let json = serde_json::from_str(&d).unwrap_or(serde_json::Value::String(d.clone()));
            convert(&json, kind).map_err(|e| anyhow::anyhow!("{at}.default {d:?}: {e}"))
        })
        .transpose()?;
    if let Some(k) = spec.keys().next() {
        bail!("{at}.{k}: not a parameter of a column (json-key, type, required, default)");
    }
    Ok(Column {
        name,
        json_key,
        kind,
        required,
        default,
    })
}

/// `value` as a column of `kind`.
fn convert(value: &serde_json::Value, kind: ColumnType) -> Result<SqlValue, String> {
    use serde_json::Value as J;
    Ok(match (kind, value) {
        (ColumnType::Json, v) => SqlValue::Text(v.to_string()),
        (ColumnType::Int, J::Number(n)) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => return Err(format!("{n} is not a 64-bit integer")),
        },
        (ColumnType::Int, J::String(s)) => SqlValue::Integer(
            s.trim()
                .parse()
                .map_err(|_| format!("{s:?} is not an integer"))?,
        ),
        (ColumnType::Float, J::Number(n)) => SqlValue::Real(n.as_f64().unwrap_or(f64::NAN)),
        (ColumnType::Float, J::String(s)) => SqlValue::Real(
            s.trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a number"))?,
        ),
        (ColumnType::Bool, J::Bool(b)) => SqlValue::Integer(i64::from(*b)),
        (ColumnType::Bool, J::String(s)) if s == "true" || s == "false" => {
            SqlValue::Integer(i64::from(s == "true"))
        }
        (ColumnType::Text, J::String(s)) => SqlValue::Text(s.clone()),
        (ColumnType::Text, J::Number(_) | J::Bool(_)) => SqlValue::Text(value.to_string()),
        (kind, other) => return Err(format!("{other} cannot be stored as {kind:?}")),
    })
}

impl SqlSink {
    /// The row of one record's value, or why it has none.
    pub fn row(&self, value: &[u8]) -> Result<Vec<SqlValue>, String> {
        let json: serde_json::Value =
            serde_json::from_slice(value).map_err(|e| format!("not JSON: {e}"))?;
        self.columns
            .iter()
            .map(|c| {
                let found = c
                    .json_key
                    .iter()
                    .try_fold(&json, |v, k| v.get(k))
                    .filter(|v| !v.is_null());
                match (found, &c.default) {
                    (Some(v), _) => {
                        convert(v, c.kind).map_err(|e| format!("column {}: {e}", c.name))
                    }
                    (None, Some(d)) => Ok(d.clone()),
                    (None, None) if c.required => Err(format!(
                        "column {}: the record has no {}",
                        c.name,
                        if c.json_key.is_empty() {
                            "value".to_string()
                        } else {
                            format!("key {:?}", c.json_key.join("."))
                        }
                    )),
                    (None, None) => Ok(SqlValue::Null),
                }
            })
            .collect()
    }

    /// The statement that writes one row.
    pub fn statement(&self) -> String {
        let names: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("\"{}\"", c.name))
            .collect();
        let holes: Vec<String> = (1..=self.columns.len()).map(|i| format!("?{i}")).collect();
        let mut sql = format!(
            "INSERT INTO \"{}\" ({}) VALUES ({})",
            self.table,
            names.join(", "),
            holes.join(", ")
        );
        if let Mode::Upsert { key } = &self.mode {
            let key: Vec<String> = key.iter().map(|k| format!("\"{k}\"")).collect();
            let set: Vec<String> = self
                .columns
                .iter()
                .filter(|c| !key.contains(&format!("\"{}\"", c.name)))
                .map(|c| format!("\"{0}\" = excluded.\"{0}\"", c.name))
                .collect();
            if set.is_empty() {
                sql.push_str(&format!(" ON CONFLICT ({}) DO NOTHING", key.join(", ")));
            } else {
                sql.push_str(&format!(
                    " ON CONFLICT ({}) DO UPDATE SET {}",
                    key.join(", "),
                    set.join(", ")
                ));
            }
        }
        sql
    }

    /// Opens the database and checks that the table has every column.
    pub fn open(&self) -> anyhow::Result<rusqlite::Connection> {
        if !self.database.is_file() {
            bail!(
                "database {} does not exist; create it and table {:?} first",
                self.database.display(),
                self.table
            );
        }
        let conn = rusqlite::Connection::open(&self.database)
            .with_context(|| format!("cannot open database {}", self.database.display()))?;
        conn.busy_timeout(crate::timeouts::SQL_BUSY_WAIT)?;
        let mut info = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
        let have: Vec<String> = info
            .query_map([&self.table], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        drop(info);
        if have.is_empty() {
            bail!(
                "table {:?} does not exist in {}; create it first",
                self.table,
                self.database.display()
            );
        }
        for c in &self.columns {
            if !have.contains(&c.name) {
                bail!(
                    "table {:?} has no column {:?} (it has {}); add it or fix the mapping",
                    self.table,
                    c.name,
                    have.join(", ")
                );
            }
        }
        Ok(conn)
    }
}

/// Writes the rows of `values` (record offsets beside them, for errors) in
/// one transaction; returns how many were written and how many skipped.
pub fn write_batch(
    sink: &SqlSink,
    conn: &mut rusqlite::Connection,
    values: &[(u32, u64, &[u8])],
) -> anyhow::Result<(u64, u64)> {
    let tx = conn.transaction()?;
    let (mut written, mut skipped) = (0, 0);
    {
        let mut stmt = tx.prepare_cached(&sink.statement())?;
        for (partition, offset, value) in values {
            match sink.row(value) {
                Ok(row) => {
                    stmt.execute(rusqlite::params_from_iter(row))
                        .with_context(|| {
                            format!(
                                "cannot write the record at {partition}/{offset} into {:?}",
                                sink.table
                            )
                        })?;
                    written += 1;
                }
                Err(why) if sink.skip_invalid => {
                    eprintln!("record at {partition}/{offset} skipped: {why}");
                    skipped += 1;
                }
                Err(why) => bail!(
                    "the record at partition {partition} offset {offset} does not map to a row: {why} \
                     (fix the record or the mapping, or set skip_invalid: true)"
                ),
            }
        }
    }
    tx.commit().context("cannot commit the transaction")?;
    Ok((written, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(extra: &str) -> anyhow::Result<SqlSink> {
        let yaml = format!(
            "url: sqlite:///tmp/x.db\ntable: readings\ncolumns:\n  device_id: {{json-key: device.id, type: int, required: true}}\n  temp: {{type: float, default: \"0\"}}\n  raw: {{json-key: \"$\", type: json}}\n{extra}"
        );
        let keys: BTreeMap<String, serde_yaml::Value> = serde_yaml::from_str(&yaml).unwrap();
        sql_sink(keys, "sql", Path::new("/"))
    }

    #[test]
    fn records_map_to_rows_by_the_column_mapping() {
        let s = sink("").unwrap();
        let row = s.row(br#"{"device": {"id": 7}, "temp": 21.5}"#).unwrap();
        assert_eq!(row[0], SqlValue::Integer(7));
        assert_eq!(row[1], SqlValue::Real(21.5));
        assert!(matches!(&row[2], SqlValue::Text(t) if t.contains("\"temp\":21.5")));
        // Missing: the default; required and missing: an error naming it.
        assert_eq!(
            s.row(br#"{"device": {"id": 7}}"#).unwrap()[1],
            SqlValue::Real(0.0)
        );
        let e = s.row(br#"{"temp": 1}"#).unwrap_err();
        assert!(e.contains("device.id"), "{e}");
        assert!(s.row(b"not json").unwrap_err().contains("not JSON"));
        assert!(
            s.row(br#"{"device": {"id": "x"}}"#)
                .unwrap_err()
                .contains("not an integer")
        );
    }

    #[test]
    fn upsert_updates_the_other_columns_on_its_key() {
        let s = sink("mode: upsert\nkey: [device_id]\n").unwrap();
        assert_eq!(
            s.statement(),
            "INSERT INTO \"readings\" (\"device_id\", \"temp\", \"raw\") VALUES (?1, ?2, ?3) \
             ON CONFLICT (\"device_id\") DO UPDATE SET \"temp\" = excluded.\"temp\", \"raw\" = excluded.\"raw\""
        );
    }

    #[test]
    fn a_bad_section_is_refused_naming_the_field() {
        for (extra, expected) in [
            ("mode: upsert\n", "sql.key is required"),
            ("mode: merge\n", "sql.mode"),
            ("key: [device_id]\n", "sql.key is for mode: upsert"),
            ("mode: upsert\nkey: [nope]\n", "not one of the columns"),
            ("tabel: x\n", "sql.tabel"),
        ] {
            let e = sink(extra).unwrap_err().to_string();
            assert!(e.contains(expected), "{extra:?}: {e}");
        }
        let keys: BTreeMap<String, serde_yaml::Value> =
            serde_yaml::from_str("url: postgres://h/db\ntable: t\ncolumns: {a: {}}\n").unwrap();
        let e = sql_sink(keys, "sql", Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("PostgreSQL"), "{e}");
    }
}
