//! The sql sink's rows into a SQLite file (SQLite compiled in): bools as
//! 0/1, JSON as its text. Calls block; the caller runs them with
//! `block_in_place`.

use std::path::Path;

use anyhow::{Context, bail};
use rusqlite::types::Value;

use super::{Cell, Column, SqlSink};

/// SQLite's numbered parameter.
pub fn hole(position: usize, _: &Column) -> String {
    format!("?{position}")
}

fn value(cell: &Cell) -> Value {
    match cell {
        Cell::Null => Value::Null,
        Cell::Int(i) => Value::Integer(*i),
        Cell::Float(f) => Value::Real(*f),
        Cell::Text(t) | Cell::Json(t) => Value::Text(t.clone()),
        Cell::Bool(b) => Value::Integer(i64::from(*b)),
    }
}

/// Opens the database at `path` and checks that the table has every column.
pub fn open(sink: &SqlSink, path: &Path) -> anyhow::Result<rusqlite::Connection> {
    if !path.is_file() {
        bail!(
            "database {} does not exist; create it and table {:?} first",
            path.display(),
            sink.table
        );
    }
    let conn = rusqlite::Connection::open(path)
        .with_context(|| format!("cannot open database {}", path.display()))?;
    conn.busy_timeout(crate::timeouts::SQL_BUSY_WAIT)?;
    let mut info = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
    let have: Vec<String> = info
        .query_map([&sink.table], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    drop(info);
    if have.is_empty() {
        bail!(
            "table {:?} does not exist in {}; create it first",
            sink.table,
            path.display()
        );
    }
    super::check_columns(sink, &have)?;
    Ok(conn)
}

/// Writes `rows` (each with its record's partition and offset) in one
/// transaction.
pub fn write(
    sink: &SqlSink,
    conn: &mut rusqlite::Connection,
    rows: &[(u32, u64, Vec<Cell>)],
) -> anyhow::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(&sink.statement(hole))?;
        for (partition, offset, row) in rows {
            stmt.execute(rusqlite::params_from_iter(row.iter().map(value)))
                .with_context(|| {
                    format!(
                        "cannot write the record at {partition}/{offset} into {:?}",
                        sink.table
                    )
                })?;
        }
    }
    tx.commit().context("cannot commit the transaction")
}
