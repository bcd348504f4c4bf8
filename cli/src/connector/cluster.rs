//! `connector create | list | describe | logs | delete`: connectors the
//! cluster runs, each on a node the controller picks (and moves when that
//! node stops answering), supervised there (see `sluice-spu`'s
//! `connectors`).
//!
//! The file is checked here, with the parser `connector run` uses, before
//! it is sent: a typo is refused naming its field, not found later in a
//! log. What only makes sense on this machine is refused too: a module
//! given as a `.wasm` file (register it), a relative `ca_file`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use sluice_client::proto::{ConnectorInfo, ConnectorSpec, SmartModuleSource};

use super::config::{ConnectorConfig, Kind, Sink};
use crate::output::{OutputFormat, print_structured, print_table, rfc3339_ms};
use crate::{Globals, OutputArgs};

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The connector's file (the seed's format or Fluvio's, YAML).
    #[arg(long, value_name = "PATH")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    /// The connector's name.
    pub name: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The connector's name.
    pub name: String,
    /// Print at most the last N bytes of its log.
    #[arg(long, value_name = "N", default_value_t = 64 * 1024)]
    pub tail_bytes: u32,
}

/// Reads and checks a connector file for the cluster: its name and text.
pub fn checked_spec(path: &Path) -> anyhow::Result<ConnectorSpec> {
    let text = crate::small_file::read(
        path,
        sluice_client::proto::limits::CONNECTOR_CONFIG_BYTES_MAX as u64,
        "connector file",
    )?;
    let base = path.parent().unwrap_or(Path::new("."));
    checked_text(&text, base, &format!("connector file {}", path.display()))
}

/// Checks the text of a connector file (`what` names it in errors; `base`
/// is where its relative paths start) for the cluster.
pub fn checked_text(text: &str, base: &Path, what: &str) -> anyhow::Result<ConnectorSpec> {
    let config = ConnectorConfig::parse(text, base).with_context(|| what.to_string())?;
    for t in &config.transforms {
        if let SmartModuleSource::AdHoc { name, .. } = &t.module {
            bail!(
                "{what}: the module {name:?} is a file here; the cluster runs connectors with \
                 registered modules: `sluice smart-module create NAME --wasm-file {name}`, then \
                 name NAME in the file"
            );
        }
    }
    let yaml: serde_yaml::Value = serde_yaml::from_str(text).context("not YAML")?;
    if let Some(ca) = find_key(&yaml, &["ca_file", "ca-file"])
        && !Path::new(&ca).is_absolute()
    {
        bail!(
            "{what}: ca_file {ca:?} is relative; on the node that runs the connector give the \
             PEM file's absolute path"
        );
    }
    if let Kind::Sink(Sink::Sql(sink)) = &config.kind
        && let Some(ca) = sink.database.root_cert()
        && !ca.is_absolute()
    {
        bail!(
            "{what}: sslrootcert {ca:?} is relative; on the node that runs the connector give \
             the PEM file's absolute path"
        );
    }
    Ok(ConnectorSpec {
        name: config.name,
        config: text.to_string(),
    })
}

/// The first string value under any of `keys`, at any depth.
fn find_key(value: &serde_yaml::Value, keys: &[&str]) -> Option<String> {
    match value {
        serde_yaml::Value::Mapping(map) => map.iter().find_map(|(k, v)| {
            if k.as_str().is_some_and(|k| keys.contains(&k)) {
                v.as_str().map(str::to_string)
            } else {
                find_key(v, keys)
            }
        }),
        serde_yaml::Value::Sequence(items) => items.iter().find_map(|v| find_key(v, keys)),
        _ => None,
    }
}

pub async fn create(args: CreateArgs, globals: &Globals) -> anyhow::Result<()> {
    let spec = checked_spec(&args.config)?;
    let client = crate::connect(globals).await?;
    let name = spec.name.clone();
    let record = client
        .create_connector(spec)
        .await
        .with_context(|| format!("cannot create connector {name:?}"))?;
    println!(
        "connector \"{name}\" created; it runs on node {}",
        record.node
    );
    Ok(())
}

/// A connector as printed with `-O json|yaml`; field names are a stable
/// interface.
#[derive(Debug, Serialize)]
struct ConnectorOut {
    name: String,
    node: u64,
    state: String,
    pid: u32,
    restarts: u64,
    records_in: u64,
    records_out: u64,
    dropped: u64,
    failures: u64,
    lag: Option<u64>,
    created: String,
    last_exit: Option<String>,
    config: String,
}

impl From<&ConnectorInfo> for ConnectorOut {
    fn from(c: &ConnectorInfo) -> Self {
        let runtime = c.runtime.clone().unwrap_or_default();
        let t = &runtime.tally;
        Self {
            name: c.record.spec.name.clone(),
            node: c.record.node,
            state: match &c.runtime {
                Some(r) => r.state.clone(),
                None => format!("unknown (node {} did not answer)", c.record.node),
            },
            pid: runtime.pid,
            restarts: runtime.restarts,
            records_in: t.records_in,
            records_out: t.records_out,
            dropped: t.dropped,
            failures: t.failures,
            lag: t.lag,
            created: rfc3339_ms(c.record.created_ms),
            last_exit: runtime.last_exit.clone(),
            config: c.record.spec.config.clone(),
        }
    }
}

pub async fn list(out: OutputArgs, globals: &Globals) -> anyhow::Result<()> {
    let client = crate::connect(globals).await?;
    let list: Vec<ConnectorOut> = client
        .list_connectors(None)
        .await?
        .iter()
        .map(Into::into)
        .collect();
    match out.output {
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|c| {
                    vec![
                        c.name.clone(),
                        c.node.to_string(),
                        c.state.clone(),
                        c.records_in.to_string(),
                        c.records_out.to_string(),
                        c.failures.to_string(),
                        c.restarts.to_string(),
                    ]
                })
                .collect();
            let header = ["NAME", "NODE", "STATE", "IN", "OUT", "FAILURES", "RESTARTS"];
            print_table(&header, &rows);
            Ok(())
        }
        other => print_structured(&list, other),
    }
}

pub async fn describe(args: NameArgs, globals: &Globals) -> anyhow::Result<()> {
    let client = crate::connect(globals).await?;
    let found = client.list_connectors(Some(&args.name)).await?;
    let Some(info) = found.first() else {
        bail!("no connector is named {:?}", args.name);
    };
    let out = ConnectorOut::from(info);
    match args.output.output {
        OutputFormat::Table => {
            let lag = out.lag.map_or("-".to_string(), |l| l.to_string());
            let rows = [
                ("name", out.name.clone()),
                ("node", out.node.to_string()),
                ("state", out.state.clone()),
                ("pid", out.pid.to_string()),
                ("restarts", out.restarts.to_string()),
                ("records in", out.records_in.to_string()),
                ("records out", out.records_out.to_string()),
                ("dropped by SmartModules", out.dropped.to_string()),
                ("failures", out.failures.to_string()),
                ("lag", lag),
                ("created", out.created.clone()),
                (
                    "last exit",
                    out.last_exit.clone().unwrap_or_else(|| "-".into()),
                ),
            ];
            for (key, value) in rows {
                println!("{key:<24} {value}");
            }
            println!("config:\n{}", out.config.trim_end());
            Ok(())
        }
        other => print_structured(&out, other),
    }
}

pub async fn logs(args: LogsArgs, globals: &Globals) -> anyhow::Result<()> {
    let client = crate::connect(globals).await?;
    let text = client.connector_logs(&args.name, args.tail_bytes).await?;
    crate::output::write_stdout(text.as_bytes())
}

pub async fn delete(args: NameArgs, globals: &Globals) -> anyhow::Result<()> {
    let client = crate::connect(globals).await?;
    client.delete_connector(&args.name).await?;
    println!("connector \"{}\" deleted", args.name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA file the node reads is named by an absolute path: a relative
    /// one would start from the node's own directory, not the user's.
    #[test]
    fn a_sql_sinks_ca_file_must_be_named_absolutely() {
        let sink = |url: &str| {
            format!(
                "apiVersion: 0.1.0\nmeta: {{name: s, type: sql-sink, topic: t}}\n\
                 sql:\n  url: \"{url}\"\n  table: t\n  columns: {{a: {{}}}}\n"
            )
        };
        let base = Path::new("/");
        let e = checked_text(
            &sink("postgres://h/d?sslmode=verify-full&sslrootcert=ca.pem"),
            base,
            "s.yml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sslrootcert \"ca.pem\" is relative"), "{e}");
        checked_text(
            &sink("postgres://h/d?sslmode=verify-full&sslrootcert=/etc/ca.pem"),
            base,
            "s.yml",
        )
        .unwrap();
        checked_text(&sink("postgres://h/d"), base, "s.yml").unwrap();
    }
}
