//! The sql sink: JSON records of a topic written as rows of a table, one
//! transaction per batch, committed as the connector's consumer after the
//! transaction: at least once, and exactly once in effect with `mode:
//! upsert` (a batch written again after a crash updates the same rows).
//!
//! ```yaml
//! apiVersion: 0.1.0
//! meta: {name: readings-sink, type: sql-sink, topic: readings}
//! sql:
//!   url: sqlite:///var/lib/app/readings.db   # or postgres://USER@HOST:PORT/DB
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
//! Types: `int`, `float`, `text`, `bool`, `json` (the value's JSON text),
//! with Fluvio's json-sql names for them (`int4`, `bigint`, `float8`,
//! `jsonb`, ...); its `numeric`, `date`, `time`, `timestamp`, `uuid` and
//! `bytea` are text that the database converts. A column whose key is
//! missing (or null) takes its default, else NULL, unless `required`. The
//! table must exist with those columns: the sink checks it before it reads a
//! record. Fluvio's form of the mapping, a last transform `uses:
//! infinyon/json-sql` with `with: {mapping: {table, map-columns}}`, is read
//! by [`json_sql`] into the same [`SqlSink`].
//!
//! Where rows go is [`sqlite`] (a file, SQLite compiled in) or [`postgres`]
//! (a server, over its wire protocol); both write one batch in one
//! transaction through [`Writer`].

pub mod json_sql;
mod postgres;
mod postgres_tls;
mod sqlite;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::bail;

use super::yaml::text;

/// One value of a row, as the mapping made it; each database stores it in
/// its own way (SQLite: bools as 0/1, JSON as text; PostgreSQL: converted by
/// the server to the column's type).
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
    /// JSON text.
    Json(String),
}

/// Where the rows go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file, which must exist.
    Sqlite(PathBuf),
    /// A PostgreSQL server: the url as given (it may hold a password, so it is
    /// never printed) and how to name it in messages.
    Postgres { url: String, shown: String },
}

impl Database {
    /// The CA file a PostgreSQL url names (`sslrootcert`), if any.
    pub fn root_cert(&self) -> Option<PathBuf> {
        match self {
            Database::Sqlite(_) => None,
            Database::Postgres { url, .. } => postgres_tls::split(url).ok()?.1.root_cert,
        }
    }
}

impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "{}", path.display()),
            Database::Postgres { shown, .. } => f.write_str(shown),
        }
    }
}

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
    pub default: Option<Cell>,
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
    pub database: Database,
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
        bail!(
            "{section}.url is required: sqlite:///PATH/TO/FILE.db or postgres://USER@HOST:PORT/DB"
        );
    };
    let url = text(&url, &format!("{section}.url"))?;
    let database = if let Some(path) = url.strip_prefix("sqlite://") {
        Database::Sqlite(base.join(path))
    } else if let Some(path) = url.strip_prefix("sqlite:") {
        Database::Sqlite(base.join(path))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        postgres::database(&url).map_err(|e| anyhow::anyhow!("{section}.url: {e}"))?
    } else if url.ends_with(".db") || url.ends_with(".sqlite") {
        Database::Sqlite(base.join(&url))
    } else {
        bail!(
            "{section}.url: expected sqlite:///PATH (or a path ending .db or .sqlite) or postgres://USER@HOST:PORT/DB"
        );
    };
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
    {
        None => ColumnType::Text,
        Some(name) => column_type(&name).ok_or_else(|| {
            anyhow::anyhow!("{at}.type {name:?}: use int, float, text, bool or json")
        })?,
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

/// The column type a mapping names: ours, and the SQL names Fluvio's
/// json-sql module takes. Types without a JSON counterpart (numbers of
/// arbitrary precision, dates, times, uuids, bytes) travel as text, which
/// PostgreSQL converts to the column's type and SQLite stores.
pub fn column_type(name: &str) -> Option<ColumnType> {
    Some(match name.to_ascii_lowercase().as_str() {
        "int" | "integer" | "bigint" | "int8" | "int4" | "int2" | "smallint" => ColumnType::Int,
        "float" | "real" | "double" | "float4" | "float8" | "double precision"
        | "doubleprecision" => ColumnType::Float,
        "text" | "string" | "varchar" | "decimal" | "numeric" | "date" | "time" | "timestamp"
        | "timestamptz" | "uuid" | "bytes" | "bytea" => ColumnType::Text,
        "bool" | "boolean" => ColumnType::Bool,
        "json" | "jsonb" => ColumnType::Json,
        _ => return None,
    })
}

/// `value` as a column of `kind`.
fn convert(value: &serde_json::Value, kind: ColumnType) -> Result<Cell, String> {
    use serde_json::Value as J;
    Ok(match (kind, value) {
        (ColumnType::Json, v) => Cell::Json(v.to_string()),
        (ColumnType::Int, J::Number(n)) => match n.as_i64() {
            Some(i) => Cell::Int(i),
            None => return Err(format!("{n} is not a 64-bit integer")),
        },
        (ColumnType::Int, J::String(s)) => Cell::Int(
            s.trim()
                .parse()
                .map_err(|_| format!("{s:?} is not an integer"))?,
        ),
        (ColumnType::Float, J::Number(n)) => Cell::Float(n.as_f64().unwrap_or(f64::NAN)),
        (ColumnType::Float, J::String(s)) => Cell::Float(
            s.trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a number"))?,
        ),
        (ColumnType::Bool, J::Bool(b)) => Cell::Bool(*b),
        (ColumnType::Bool, J::String(s)) if s == "true" || s == "false" => Cell::Bool(s == "true"),
        (ColumnType::Text, J::String(s)) => Cell::Text(s.clone()),
        (ColumnType::Text, J::Number(_) | J::Bool(_)) => Cell::Text(value.to_string()),
        (kind, other) => return Err(format!("{other} cannot be stored as {kind:?}")),
    })
}

impl SqlSink {
    /// The row of one record's value, or why it has none.
    pub fn row(&self, value: &[u8]) -> Result<Vec<Cell>, String> {
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
                    (None, None) => Ok(Cell::Null),
                }
            })
            .collect()
    }

    /// The statement that writes one row, its values written as `hole`
    /// says for the column at each position (from 1).
    pub fn statement(&self, hole: impl Fn(usize, &Column) -> String) -> String {
        let names: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("\"{}\"", c.name))
            .collect();
        let holes: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| hole(i + 1, c))
            .collect();
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
}

/// Fails naming the first column of the mapping that the table, whose
/// columns are `have`, lacks.
fn check_columns(sink: &SqlSink, have: &[String]) -> anyhow::Result<()> {
    for c in &sink.columns {
        if !have.contains(&c.name) {
            bail!(
                "table {:?} has no column {:?} (it has {}); add it or fix the mapping",
                sink.table,
                c.name,
                have.join(", ")
            );
        }
    }
    Ok(())
}

/// An open connection to the sink's database.
pub enum Writer {
    Sqlite(rusqlite::Connection),
    Postgres(postgres::Writer),
}

impl Writer {
    /// Connects to the sink's database and checks that its table has every
    /// column of the mapping, before a record is read.
    pub async fn open(sink: &SqlSink) -> anyhow::Result<Self> {
        match &sink.database {
            Database::Sqlite(path) => {
                tokio::task::block_in_place(|| sqlite::open(sink, path)).map(Writer::Sqlite)
            }
            Database::Postgres { url, shown } => postgres::Writer::open(sink, url, shown)
                .await
                .map(Writer::Postgres),
        }
    }

    /// Writes the rows of `values` (partition and offset beside each, for
    /// errors) in one transaction; returns how many were written and how many
    /// skipped (`skip_invalid`). A record that does not map, or that the
    /// database refuses, fails the whole batch, naming the record.
    pub async fn write_batch(
        &mut self,
        sink: &SqlSink,
        values: &[(u32, u64, &[u8])],
    ) -> anyhow::Result<(u64, u64)> {
        let mut rows = Vec::with_capacity(values.len());
        let mut skipped = 0;
        for (partition, offset, value) in values {
            match sink.row(value) {
                Ok(row) => rows.push((*partition, *offset, row)),
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
        match self {
            Writer::Sqlite(conn) => {
                tokio::task::block_in_place(|| sqlite::write(sink, conn, &rows))?;
            }
            Writer::Postgres(writer) => writer.write(sink, &rows).await?,
        }
        Ok((rows.len() as u64, skipped))
    }
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
        assert_eq!(row[0], Cell::Int(7));
        assert_eq!(row[1], Cell::Float(21.5));
        assert!(matches!(&row[2], Cell::Json(t) if t.contains("\"temp\":21.5")));
        // Missing: the default; required and missing: an error naming it.
        assert_eq!(
            s.row(br#"{"device": {"id": 7}}"#).unwrap()[1],
            Cell::Float(0.0)
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
            s.statement(sqlite::hole),
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
            serde_yaml::from_str("url: mysql://h/db\ntable: t\ncolumns: {a: {}}\n").unwrap();
        let e = sql_sink(keys, "sql", Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("postgres://"), "{e}");
    }

    #[test]
    fn a_postgres_url_is_named_without_its_password() {
        let keys: BTreeMap<String, serde_yaml::Value> = serde_yaml::from_str(
            "url: postgres://app:secret@127.0.0.1:5433/metrics\ntable: t\ncolumns: {a: {}}\n",
        )
        .unwrap();
        let s = sql_sink(keys, "sql", Path::new("/")).unwrap();
        let shown = s.database.to_string();
        assert!(
            shown.contains("metrics") && shown.contains("5433"),
            "{shown}"
        );
        assert!(!shown.contains("secret"), "{shown}");
        for (url, expected) in [
            ("postgres://h:notaport/db", "invalid"),
            (
                "postgres://h/db?sslmode=verify",
                "sslmode=verify: not a mode",
            ),
            (
                "postgres:///db?host=/run/postgresql&sslmode=verify-full",
                "TLS over a Unix socket",
            ),
        ] {
            let keys: BTreeMap<String, serde_yaml::Value> =
                serde_yaml::from_str(&format!("url: {url}\ntable: t\ncolumns: {{a: {{}}}}\n"))
                    .unwrap();
            let e = sql_sink(keys, "sql", Path::new("/"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("sql.url") && e.contains(expected), "{url}: {e}");
        }
    }
}
