//! The sql sink's rows into PostgreSQL, over its wire protocol
//! (tokio-postgres), over TLS when the url's `sslmode` asks for it
//! (`require`, `verify-ca`, `verify-full`; see `postgres_tls`), else in the
//! clear: then reach the server on loopback, a private network or its Unix
//! socket (`postgres:///DB?host=/var/run/postgresql`).
//!
//! Every value is sent as text and cast by the server to the column's type
//! (`$1::text::integer`), so one mapping type serves many column types (an
//! `int` into `smallint` or `numeric`, a `text` into `timestamptz`, `uuid`
//! or an enum) and a value the column cannot hold is refused by the server
//! naming the type. The rows of a batch are sent pipelined in one
//! transaction: one round trip per batch, not per row.

use std::collections::BTreeMap;
use std::str::FromStr;

use anyhow::{Context, bail};
use tokio_postgres::Socket;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::types::ToSql;

use super::{Cell, Database, SqlSink, postgres_tls};
use crate::timeouts::{SQL_CONNECT_TIMEOUT, SQL_WRITE_TIMEOUT};

/// The database a `postgres://` url (or libpq `key=value` string) names,
/// refused if this sink cannot reach it as it asks.
pub fn database(url: &str) -> Result<Database, String> {
    let (rest, tls) = postgres_tls::split(url)?;
    let config =
        tokio_postgres::Config::from_str(&rest).map_err(|e| format!("{e}: {}", source(&e)))?;
    let over_socket = config
        .get_hosts()
        .iter()
        .any(|h| matches!(h, tokio_postgres::config::Host::Unix(_)));
    if tls.mode != postgres_tls::Mode::Plain && over_socket {
        return Err(
            "TLS over a Unix socket: PostgreSQL does not use TLS there; connect over TCP \
             (host=NAME) for TLS, or use sslmode=disable on the socket"
                .to_string(),
        );
    }
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(dir) => dir.display().to_string(),
        })
        .collect();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let shown = format!(
        "PostgreSQL database {:?} on {}:{port}{} ({})",
        config.get_dbname().unwrap_or("(the user's)"),
        if hosts.is_empty() {
            "localhost".to_string()
        } else {
            hosts.join(",")
        },
        config
            .get_user()
            .map(|u| format!(" as {u}"))
            .unwrap_or_default(),
        tls.mode.shown(),
    );
    Ok(Database::Postgres {
        url: url.to_string(),
        shown,
    })
}

/// The cause under a tokio-postgres error, whose own text is only its kind
/// ("db error").
fn source(e: &tokio_postgres::Error) -> String {
    std::error::Error::source(e)
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// A connection with the sink's statement prepared.
pub struct Writer {
    client: tokio_postgres::Client,
    statement: tokio_postgres::Statement,
    shown: String,
}

impl Writer {
    /// Connects, checks that the table has every column of the mapping, and
    /// prepares the statement with each column's cast.
    pub async fn open(sink: &SqlSink, url: &str, shown: &str) -> anyhow::Result<Self> {
        let (rest, tls) = postgres_tls::split(url)
            .map_err(|e| anyhow::anyhow!("cannot read the url of {shown}: {e}"))?;
        let mut config = tokio_postgres::Config::from_str(&rest)
            .with_context(|| format!("cannot read the url of {shown}"))?;
        config.connect_timeout(SQL_CONNECT_TIMEOUT);
        let client = match postgres_tls::connector(&tls)
            .with_context(|| format!("cannot set up TLS to {shown}"))?
        {
            Some(tls) => connect(&config, tls, shown).await?,
            None => connect(&config, tokio_postgres::NoTls, shown).await?,
        };
        let found = client
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, NULL) FROM pg_attribute a \
                 WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attnum",
                &[&format!("\"{}\"", sink.table)],
            )
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot read the columns of {:?} in {shown}: {e} {}",
                    sink.table,
                    source(&e)
                )
            })?;
        let types: BTreeMap<String, String> = found
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect();
        if types.is_empty() {
            bail!(
                "table {:?} does not exist in {shown}; create it first",
                sink.table
            );
        }
        let have: Vec<String> = found.iter().map(|r| r.get::<_, String>(0)).collect();
        super::check_columns(sink, &have)?;
        let sql = sink
            .statement(|position, column| format!("${position}::text::{}", types[&column.name]));
        let statement = client.prepare(&sql).await.map_err(|e| {
            anyhow::anyhow!("{shown} refused the statement {sql:?}: {e} {}", source(&e))
        })?;
        Ok(Writer {
            client,
            statement,
            shown: shown.to_string(),
        })
    }

    /// Writes `rows` (each with its record's partition and offset) in one
    /// transaction, pipelined; the first row the server refuses fails the
    /// batch, naming its record, and nothing of it is written.
    pub async fn write(
        &mut self,
        sink: &SqlSink,
        rows: &[(u32, u64, Vec<Cell>)],
    ) -> anyhow::Result<()> {
        let shown = self.shown.clone();
        let work = async {
            let tx =
                self.client.transaction().await.map_err(|e| {
                    anyhow::anyhow!("cannot begin a transaction: {e} {}", source(&e))
                })?;
            let (shared, statement) = (&tx, &self.statement);
            let writes = rows.iter().map(|(partition, offset, row)| async move {
                let texts: Vec<Option<String>> = row.iter().map(text).collect();
                let params: Vec<&(dyn ToSql + Sync)> =
                    texts.iter().map(|t| t as &(dyn ToSql + Sync)).collect();
                shared.execute(statement, &params).await.map_err(|e| {
                    anyhow::anyhow!(
                        "cannot write the record at {partition}/{offset} into {:?}: {e} {}",
                        sink.table,
                        source(&e)
                    )
                })
            });
            futures::future::try_join_all(writes).await?;
            tx.commit()
                .await
                .map_err(|e| anyhow::anyhow!("cannot commit the transaction: {e} {}", source(&e)))
        };
        tokio::time::timeout(SQL_WRITE_TIMEOUT, work)
            .await
            .with_context(|| {
                format!(
                    "{shown} did not take a batch of {} row(s) within {:?}",
                    rows.len(),
                    SQL_WRITE_TIMEOUT
                )
            })?
            .with_context(|| format!("in {shown}"))
    }
}

/// A connection made with `tls`, its protocol driven by a task of its own.
async fn connect<T>(
    config: &tokio_postgres::Config,
    tls: T,
    shown: &str,
) -> anyhow::Result<tokio_postgres::Client>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = config.connect(tls).await.map_err(|e| {
        let hint = postgres_tls::hint(&e)
            .map(|h| format!("; {h}"))
            .unwrap_or_default();
        anyhow::anyhow!("cannot connect to {shown}: {e} {}{hint}", source(&e))
    })?;
    let named = shown.to_string();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("the connection to {named} ended: {e} {}", source(&e));
        }
    });
    Ok(client)
}

/// A value as the text PostgreSQL reads for it.
fn text(cell: &Cell) -> Option<String> {
    match cell {
        Cell::Null => None,
        Cell::Int(i) => Some(i.to_string()),
        Cell::Float(f) if f.is_nan() => Some("NaN".to_string()),
        Cell::Float(f) if f.is_infinite() => {
            Some(if *f > 0.0 { "Infinity" } else { "-Infinity" }.to_string())
        }
        Cell::Float(f) => Some(f.to_string()),
        Cell::Text(t) | Cell::Json(t) => Some(t.clone()),
        Cell::Bool(b) => Some(b.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_written_as_the_text_postgres_reads() {
        assert_eq!(text(&Cell::Null), None);
        assert_eq!(text(&Cell::Int(-7)).as_deref(), Some("-7"));
        assert_eq!(text(&Cell::Float(21.5)).as_deref(), Some("21.5"));
        assert_eq!(text(&Cell::Float(f64::NAN)).as_deref(), Some("NaN"));
        assert_eq!(
            text(&Cell::Float(f64::NEG_INFINITY)).as_deref(),
            Some("-Infinity")
        );
        assert_eq!(text(&Cell::Bool(true)).as_deref(), Some("true"));
        assert_eq!(
            text(&Cell::Json("{\"a\":1}".into())).as_deref(),
            Some("{\"a\":1}")
        );
    }
}
