//! A connector's file, in either of two formats:
//!
//! ```yaml
//! # The seed documents' format
//! name: cat-facts-connector
//! type: http
//! topic: cat-facts
//! create_topic: true
//! direction: source
//! parameters:
//!   endpoint: http://127.0.0.1:8080/fact   # or https://, with ca_file: PEM
//!   interval: 30            # seconds, or a duration such as 10s
//!   filter: my-filter       # or map, filter_map, array_map, aggregate: a module
//! ```
//!
//! ```yaml
//! # Fluvio's current format
//! apiVersion: 0.1.0
//! meta:
//!   version: 0.2.5
//!   name: cat-facts
//!   type: http-source
//!   topic: cat-facts
//! http:
//!   endpoint: http://127.0.0.1:8080/fact
//!   interval: 10s
//!   method: GET               # and headers: ["Name: value"], body: TEXT
//!   output_parts: body        # or full: status, headers and body as JSON
//! transforms:
//!   - uses: my-filter
//!     with: {key: value}
//! ```
//!
//! Unknown keys are errors naming the key (a typo must not silently change
//! what the connector does); so are types and directions not built yet.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use sluice_client::proto::{SmartModuleInvocation, SmartModuleKind, SmartModuleSource};

use super::file::{FileSink, FileSource, StartAt};
use super::http::{Endpoint, HttpSource, Output};
use super::sql::json_sql;
use super::yaml::text;

/// Largest connector file read.
const CONNECTOR_FILE_BYTES_MAX: u64 = 64 * 1024;
use crate::timeouts::CONNECTOR_POLL_INTERVAL_MIN as POLL_INTERVAL_MIN;

/// A connector, checked.
#[derive(Debug)]
pub struct ConnectorConfig {
    pub name: String,
    pub topic: String,
    pub create_topic: bool,
    pub kind: Kind,
    /// Applied in order to every record: before it is produced (a source),
    /// or by the node before it leaves the cluster (a sink).
    pub transforms: Vec<SmartModuleInvocation>,
}

/// Which way records go.
#[derive(Debug)]
pub enum Kind {
    Source(Source),
    Sink(Sink),
    /// A derived topic: every record of topic `from`, through the
    /// transforms, into the connector's topic (see `super::derive`).
    Derived {
        from: String,
    },
}

/// Where a sink's records go.
#[derive(Debug)]
pub enum Sink {
    File(FileSink),
    Sql(super::sql::SqlSink),
}

/// Where records come from.
#[derive(Debug)]
pub enum Source {
    Http(HttpSource),
    File(FileSource),
}

impl ConnectorConfig {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = crate::small_file::read(path, CONNECTOR_FILE_BYTES_MAX, "connector file")?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&text, &base).with_context(|| format!("connector file {}", path.display()))
    }

    /// `base`: where module files named in the file are looked for.
    pub fn parse(text: &str, base: &Path) -> anyhow::Result<Self> {
        let value: serde_yaml::Value = serde_yaml::from_str(text).context("not YAML")?;
        let fluvio = value.get("apiVersion").is_some() || value.get("meta").is_some();
        if fluvio {
            let file: FluvioFile = serde_yaml::from_value(value).context(
                "not a connector file of Fluvio's format (apiVersion, meta, http, transforms)",
            )?;
            file.checked(base)
        } else {
            let file: SeedFile = serde_yaml::from_value(value).context(
                "not a connector file (name, type, topic, direction, parameters; or Fluvio's \
                 apiVersion/meta format)",
            )?;
            file.checked(base)
        }
    }
}

/// The topics a connector file names, as [`ConnectorConfig::topics_named`]
/// reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicsNamed {
    pub connector: String,
    /// The topic it writes (a source, a derived topic) or reads (a sink).
    pub topic: String,
    pub role: Role,
}

/// What a connector does with the topics it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Writes records into its topic.
    Source,
    /// Reads its topic.
    Sink,
    /// Writes its topic with the records of `from` (`topic create B --from A`).
    Derivation { from: String },
}

impl ConnectorConfig {
    /// The connector's name and the topics it names, read without checking
    /// the rest of the file or opening any file it names (a file stored in
    /// the cluster names files of the node that runs it).
    pub fn topics_named(text: &str) -> anyhow::Result<TopicsNamed> {
        let value: serde_yaml::Value = serde_yaml::from_str(text).context("not YAML")?;
        if value.get("apiVersion").is_some() || value.get("meta").is_some() {
            let file: FluvioFile = serde_yaml::from_value(value).context("not Fluvio's format")?;
            let role = match file.meta.kind.as_str() {
                "derived-topic" => Role::Derivation {
                    from: file
                        .derived
                        .as_ref()
                        .and_then(|d| d.get("from"))
                        .and_then(serde_yaml::Value::as_str)
                        .context("a derived-topic without derived.from")?
                        .to_string(),
                },
                kind if kind.ends_with("-sink") => Role::Sink,
                _ => Role::Source,
            };
            Ok(TopicsNamed {
                connector: file.meta.name,
                topic: file.meta.topic,
                role,
            })
        } else {
            let file: SeedFile = serde_yaml::from_value(value).context("not a connector file")?;
            let role = if file.direction() == "sink" {
                Role::Sink
            } else {
                Role::Source
            };
            Ok(TopicsNamed {
                connector: file.name,
                topic: file.topic,
                role,
            })
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedFile {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    topic: String,
    #[serde(default, alias = "create-topic")]
    create_topic: bool,
    #[serde(default)]
    direction: Option<String>,
    #[serde(default)]
    parameters: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FluvioFile {
    #[allow(dead_code)]
    api_version: Option<serde_yaml::Value>,
    meta: FluvioMeta,
    #[serde(default)]
    http: Option<BTreeMap<String, serde_yaml::Value>>,
    #[serde(default)]
    file: Option<BTreeMap<String, serde_yaml::Value>>,
    /// `sql-sink`'s section (see `super::sql`).
    #[serde(default)]
    sql: Option<BTreeMap<String, serde_yaml::Value>>,
    /// `derived-topic`'s section: `from`, the source topic.
    #[serde(default)]
    derived: Option<BTreeMap<String, serde_yaml::Value>>,
    #[serde(default)]
    transforms: Vec<crate::smartmodule_flags::Transform>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FluvioMeta {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    topic: String,
    /// The connector package's version; one implementation here.
    #[allow(dead_code)]
    version: Option<serde_yaml::Value>,
    #[serde(default, alias = "create-topic")]
    create_topic: bool,
}

fn check_name(name: &str) -> anyhow::Result<()> {
    sluice_client::proto::limits::validate_connector_name(name).map_err(anyhow::Error::msg)
}

impl SeedFile {
    /// Each type's one direction unless the file says; a file runs either way.
    fn direction(&self) -> &str {
        let natural = if self.kind == "sql" { "sink" } else { "source" };
        self.direction.as_deref().unwrap_or(natural)
    }

    fn checked(self, base: &Path) -> anyhow::Result<ConnectorConfig> {
        check_name(&self.name)?;
        let direction = self.direction().to_string();
        let direction = direction.as_str();
        if direction != "source" && direction != "sink" {
            bail!("direction {direction:?}: use source or sink");
        }
        match (self.kind.as_str(), direction) {
            ("http" | "file", "source") | ("file" | "sql", "sink") => {}
            ("http", _) => bail!("type http runs as a source only (direction: source)"),
            ("sql", _) => bail!("type sql runs as a sink only (direction: sink)"),
            (other, _) => bail!("type {other:?}: the connector types are: http, file, sql"),
        }
        let mut params = self.parameters;
        // Module parameters of the seed's format: `filter: NAME` and the other kinds.
        let mut transforms = Vec::new();
        let keys = SmartModuleKind::ALL
            .into_iter()
            .flat_map(|kind| [(kind.attribute_name(), kind), (kind.as_str(), kind)]);
        for (key, kind) in keys {
            if let Some(value) = params.remove(key) {
                let name = text(&value, &format!("parameters.{key}"))?;
                transforms.push(SmartModuleInvocation {
                    module: module_source(&name, base)?,
                    kind: Some(kind),
                    params: Default::default(),
                    initial: None,
                });
            }
        }
        let kind = match (self.kind.as_str(), direction) {
            ("http", _) => Kind::Source(Source::Http(http_source(params, "parameters", base)?)),
            (_, "source") => Kind::Source(Source::File(file_source(
                params,
                "parameters",
                &self.name,
                base,
            )?)),
            ("sql", _) => Kind::Sink(Sink::Sql(super::sql::sql_sink(params, "parameters", base)?)),
            _ => Kind::Sink(Sink::File(file_sink(params, "parameters", base)?)),
        };
        Ok(ConnectorConfig {
            kind,
            name: self.name,
            topic: self.topic,
            create_topic: self.create_topic,
            transforms,
        })
    }
}

impl FluvioFile {
    fn checked(mut self, base: &Path) -> anyhow::Result<ConnectorConfig> {
        check_name(&self.meta.name)?;
        let kind = match self.meta.kind.as_str() {
            "http-source" => {
                let Some(http) = self.http else {
                    bail!("an http-source needs an `http` section with at least `endpoint`");
                };
                Kind::Source(Source::Http(http_source(http, "http", base)?))
            }
            "file-source" | "file-sink" => {
                let Some(file) = self.file else {
                    bail!(
                        "a {} needs a `file` section with at least `path`",
                        self.meta.kind
                    );
                };
                if self.meta.kind == "file-source" {
                    Kind::Source(Source::File(file_source(
                        file,
                        "file",
                        &self.meta.name,
                        base,
                    )?))
                } else {
                    Kind::Sink(Sink::File(file_sink(file, "file", base)?))
                }
            }
            "sql-sink" => {
                let Some(mut sql) = self.sql.take() else {
                    bail!("a sql-sink needs a `sql` section with url, table and columns");
                };
                if self
                    .transforms
                    .last()
                    .is_some_and(|t| json_sql::is_json_sql(t.uses()))
                {
                    let mapping = self.transforms.pop().map(|t| t.into_with());
                    json_sql::merge(&mut sql, mapping.unwrap_or_default())?;
                }
                Kind::Sink(Sink::Sql(super::sql::sql_sink(sql, "sql", base)?))
            }
            "derived-topic" => {
                let mut section = self.derived.unwrap_or_default();
                let Some(from) = section.remove("from") else {
                    bail!(
                        "a derived-topic needs a `derived` section with `from`: the source topic"
                    );
                };
                if let Some(key) = section.keys().next() {
                    bail!("derived.{key}: not a parameter of a derived topic (from)");
                }
                let from = text(&from, "derived.from")?;
                sluice_client::proto::limits::validate_topic_name(&from)
                    .map_err(|e| anyhow::anyhow!("derived.from: {e}"))?;
                if from == self.meta.topic {
                    bail!("derived.from: a topic cannot be derived from itself");
                }
                Kind::Derived { from }
            }
            other => bail!(
                "meta.type {other:?}: the connector types are: http-source, file-source, \
                 file-sink, sql-sink, derived-topic"
            ),
        };
        if let Some(t) = self
            .transforms
            .iter()
            .find(|t| json_sql::is_json_sql(t.uses()))
        {
            bail!(
                "transforms: {} is the sql sink's mapping of records to rows; it goes last in a \
                 sql-sink's transforms",
                t.uses()
            );
        }
        let transforms = self
            .transforms
            .into_iter()
            .map(|t| t.invocation(&None, base))
            .collect::<anyhow::Result<_>>()?;
        Ok(ConnectorConfig {
            kind,
            name: self.meta.name,
            topic: self.meta.topic,
            create_topic: self.meta.create_topic,
            transforms,
        })
    }
}

fn module_source(name: &str, base: &Path) -> anyhow::Result<SmartModuleSource> {
    let path = base.join(name);
    if name.ends_with(".wasm") || path.is_file() {
        let wasm = std::fs::read(&path)
            .with_context(|| format!("cannot read the module {}", path.display()))?;
        Ok(SmartModuleSource::AdHoc {
            name: name.to_string(),
            wasm,
        })
    } else {
        Ok(SmartModuleSource::Registered(name.to_string()))
    }
}

/// `30` (seconds) or a duration such as `10s`, at least [`POLL_INTERVAL_MIN`].
fn interval(
    value: Option<serde_yaml::Value>,
    key: &str,
    default: Duration,
) -> anyhow::Result<Duration> {
    let interval = match value {
        None => default,
        Some(serde_yaml::Value::Number(n)) => {
            let seconds = n
                .as_f64()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .with_context(|| format!("{key}: {n} is not a number of seconds"))?;
            Duration::from_secs_f64(seconds)
        }
        Some(v) => {
            let t = text(&v, key)?;
            humantime::parse_duration(&t)
                .with_context(|| format!("{key}: {t:?} is not a duration (e.g. 10s)"))?
        }
    };
    if interval < POLL_INTERVAL_MIN {
        bail!("{key} {interval:?} is below the minimum of {POLL_INTERVAL_MIN:?}");
    }
    Ok(interval)
}

/// The file source of a section's keys: `path` (required), `interval`
/// (default 1 s), `from: beginning|end` (where a new source starts; default
/// beginning), `position_file` (default `NAME.position` beside the
/// connector file).
fn file_source(
    mut keys: BTreeMap<String, serde_yaml::Value>,
    section: &str,
    name: &str,
    base: &Path,
) -> anyhow::Result<FileSource> {
    let path = match keys.remove("path") {
        Some(v) => base.join(text(&v, &format!("{section}.path"))?),
        None => bail!("{section}.path is required: the file to tail"),
    };
    let interval = interval(
        keys.remove("interval"),
        &format!("{section}.interval"),
        crate::timeouts::FILE_POLL_INTERVAL_DEFAULT,
    )?;
    let start_at = match keys.remove("from") {
        None => StartAt::Beginning,
        Some(v) => match text(&v, &format!("{section}.from"))?.as_str() {
            "beginning" => StartAt::Beginning,
            "end" => StartAt::End,
            other => bail!("{section}.from {other:?}: use beginning or end"),
        },
    };
    let position_file = match keys
        .remove("position_file")
        .or_else(|| keys.remove("position-file"))
    {
        Some(v) => base.join(text(&v, &format!("{section}.position_file"))?),
        None => base.join(format!("{name}.position")),
    };
    if let Some(key) = keys.keys().next() {
        bail!(
            "{section}.{key}: not a parameter of the file source (path, interval, from, \
             position_file)"
        );
    }
    Ok(FileSource {
        path,
        interval,
        start_at,
        position_file,
    })
}

/// The file sink of a section's keys: `path` (required).
fn file_sink(
    mut keys: BTreeMap<String, serde_yaml::Value>,
    section: &str,
    base: &Path,
) -> anyhow::Result<FileSink> {
    let path = match keys.remove("path") {
        Some(v) => base.join(text(&v, &format!("{section}.path"))?),
        None => bail!("{section}.path is required: the file records are appended to"),
    };
    if let Some(key) = keys.keys().next() {
        bail!("{section}.{key}: not a parameter of the file sink (path)");
    }
    Ok(FileSink { path })
}

/// The http source of a section's keys (`section` names them in errors).
fn http_source(
    mut keys: BTreeMap<String, serde_yaml::Value>,
    section: &str,
    base: &Path,
) -> anyhow::Result<HttpSource> {
    let mut take = |key: &str| keys.remove(key);
    let endpoint = match take("endpoint") {
        Some(v) => Endpoint::parse(&text(&v, &format!("{section}.endpoint"))?)
            .with_context(|| format!("{section}.endpoint"))?,
        None => bail!("{section}.endpoint is required (e.g. http://127.0.0.1:8080/path)"),
    };
    let interval = interval(
        take("interval"),
        &format!("{section}.interval"),
        crate::timeouts::HTTP_POLL_INTERVAL_DEFAULT,
    )?;
    let method = match take("method") {
        Some(v) => text(&v, &format!("{section}.method"))?.to_ascii_uppercase(),
        None => "GET".to_string(),
    };
    if !matches!(
        method.as_str(),
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD"
    ) {
        bail!("{section}.method {method:?}: use GET, POST, PUT, PATCH, DELETE or HEAD");
    }
    let mut headers = Vec::new();
    if let Some(v) = take("headers") {
        let serde_yaml::Value::Sequence(list) = v else {
            bail!("{section}.headers: expected a list of \"Name: value\" texts");
        };
        for item in list {
            let line = text(&item, &format!("{section}.headers"))?;
            let Some((name, value)) = line.split_once(':') else {
                bail!("{section}.headers: {line:?} is not \"Name: value\"");
            };
            let (name, value) = (name.trim(), value.trim());
            if name.is_empty()
                || name.bytes().any(|b| !b.is_ascii_graphic())
                || value.contains(['\r', '\n'])
            {
                bail!("{section}.headers: {line:?} is not a valid header");
            }
            headers.push((name.to_string(), value.to_string()));
        }
    }
    let body = take("body")
        .map(|v| text(&v, &format!("{section}.body")))
        .transpose()?;
    let output = match take("output_parts").or_else(|| take("output-parts")) {
        None => Output::Body,
        Some(v) => match text(&v, &format!("{section}.output_parts"))?.as_str() {
            "body" => Output::Body,
            "full" => Output::Full,
            other => bail!("{section}.output_parts {other:?}: use body or full"),
        },
    };
    // Fluvio's `output_type: text|json` only says how the parts are laid
    // out; both are taken, the layout here is fixed (see `Output`).
    take("output_type");
    let stream = match take("stream") {
        None | Some(serde_yaml::Value::Bool(false)) => false,
        Some(serde_yaml::Value::Bool(true)) => true,
        Some(other) => bail!("{section}.stream: expected true or false, found {other:?}"),
    };
    let delimiter = take("delimiter")
        .map(|v| text(&v, &format!("{section}.delimiter")))
        .transpose()?;
    let stream = match (stream, delimiter) {
        (true, Some(d)) if d.is_empty() => bail!("{section}.delimiter is empty"),
        (true, Some(d)) => Some(d.into_bytes()),
        (true, None) => Some(b"\n".to_vec()),
        (false, Some(_)) => bail!("{section}.delimiter is for a streaming source (stream: true)"),
        (false, None) => None,
    };
    if stream.is_some() && output == Output::Full {
        bail!(
            "{section}.output_parts: full is for polling; a stream's records are pieces of one body"
        );
    }
    let ca_file = take("ca_file")
        .or_else(|| take("ca-file"))
        .map(|v| text(&v, &format!("{section}.ca_file")).map(|t| base.join(t)))
        .transpose()?;
    if let Some(key) = keys.keys().next() {
        bail!(
            "{section}.{key}: not a parameter of the http source (endpoint, interval, method, \
             headers, body, output_parts, ca_file, stream, delimiter)"
        );
    }
    let tls = match (endpoint.is_tls(), &ca_file) {
        (true, ca) => Some(
            super::http::tls_config(ca.as_deref()).with_context(|| format!("{section}.ca_file"))?,
        ),
        (false, Some(_)) => {
            bail!("{section}.ca_file is for https:// endpoints; {endpoint} is plain http")
        }
        (false, None) => None,
    };
    Ok(HttpSource {
        endpoint,
        interval,
        method,
        headers,
        body,
        output,
        tls,
        stream,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_topics_a_file_names_are_read_without_checking_the_rest() {
        let named = |text: &str| ConnectorConfig::topics_named(text).unwrap();
        assert_eq!(
            named("name: c\ntype: sql\ntopic: t\nparameters: {url: nowhere}\n"),
            TopicsNamed {
                connector: "c".into(),
                topic: "t".into(),
                role: Role::Sink
            }
        );
        assert_eq!(
            named("name: c\ntype: file\ntopic: t\ndirection: sink\n").role,
            Role::Sink
        );
        // The CA file is on the node that runs it: not opened here.
        assert_eq!(
            named("name: c\ntype: http\ntopic: t\nparameters: {ca_file: /nowhere.pem}\n").role,
            Role::Source
        );
        assert_eq!(
            named("apiVersion: 0.1.0\nmeta: {name: b, type: derived-topic, topic: b}\nderived: {from: a}\n")
                .role,
            Role::Derivation { from: "a".into() }
        );
        assert_eq!(
            named(
                "apiVersion: 0.1.0\nmeta: {name: o, type: file-sink, topic: a}\nfile: {path: /x}\n"
            )
            .role,
            Role::Sink
        );
        let e = ConnectorConfig::topics_named(
            "apiVersion: 0.1.0\nmeta: {name: b, type: derived-topic, topic: b}\n",
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("derived.from"), "{e:#}");
    }

    fn parse(text: &str) -> anyhow::Result<ConnectorConfig> {
        ConnectorConfig::parse(text, Path::new("/nonexistent"))
    }

    #[test]
    fn the_seed_file_reads_as_written() {
        let c = parse(
            "name: cat-facts-connector\ntype: http\ntopic: cat-facts\ncreate_topic: true\n\
             direction: source\nparameters:\n  endpoint: http://127.0.0.1:8080/fact\n  \
             interval: 30\n  filter: my-filter\n",
        )
        .unwrap();
        assert_eq!(
            (c.name.as_str(), c.topic.as_str()),
            ("cat-facts-connector", "cat-facts")
        );
        assert!(c.create_topic);
        let Kind::Source(Source::Http(h)) = &c.kind else {
            panic!("an http source: {:?}", c.kind);
        };
        assert_eq!(h.interval, Duration::from_secs(30));
        assert_eq!(h.method, "GET");
        assert_eq!(h.endpoint.to_string(), "http://127.0.0.1:8080/fact");
        assert_eq!(c.transforms.len(), 1);
        assert_eq!(c.transforms[0].module.name(), "my-filter");
        assert_eq!(c.transforms[0].kind, Some(SmartModuleKind::Filter));
    }

    #[test]
    fn fluvios_format_reads_with_transforms_and_http_settings() {
        let c = parse(
            "apiVersion: 0.1.0\nmeta:\n  version: 0.2.5\n  name: cat-facts\n  type: http-source\n  \
             topic: cat-facts\nhttp:\n  endpoint: \"http://localhost/fact\"\n  interval: 10s\n  \
             method: post\n  headers: [\"X-Token: abc\"]\n  body: '{\"q\": 1}'\n  \
             output_parts: full\n  output_type: json\ntransforms:\n  - uses: my-map\n    \
             with:\n      field: fact\n",
        )
        .unwrap();
        let Kind::Source(Source::Http(h)) = &c.kind else {
            panic!("an http source: {:?}", c.kind);
        };
        assert_eq!(h.interval, Duration::from_secs(10));
        assert_eq!(h.method, "POST");
        assert_eq!(h.headers, [("X-Token".to_string(), "abc".to_string())]);
        assert_eq!(h.body.as_deref(), Some("{\"q\": 1}"));
        assert_eq!(h.output, Output::Full);
        assert_eq!(c.transforms[0].module.name(), "my-map");
        assert_eq!(c.transforms[0].params["field"], "fact");
        assert!(!c.create_topic);
    }

    #[test]
    fn file_sources_and_sinks_read_in_both_formats() {
        let c = ConnectorConfig::parse(
            "name: logs\ntype: file\ntopic: t\nparameters: {path: app.log, interval: 2s, from: end}\n",
            Path::new("/base"),
        )
        .unwrap();
        let Kind::Source(Source::File(f)) = &c.kind else {
            panic!("a file source: {:?}", c.kind);
        };
        assert_eq!(f.path, Path::new("/base/app.log"));
        assert_eq!(f.interval, Duration::from_secs(2));
        assert_eq!(f.start_at, StartAt::End);
        assert_eq!(f.position_file, Path::new("/base/logs.position"));
        let c = ConnectorConfig::parse(
            "apiVersion: 0.1.0\nmeta: {name: out, type: file-sink, topic: t}\nfile: {path: /tmp/o.txt}\n\
             transforms:\n  - uses: my-filter\n",
            Path::new("/base"),
        )
        .unwrap();
        let Kind::Sink(Sink::File(sink)) = &c.kind else {
            panic!("a file sink: {:?}", c.kind);
        };
        assert_eq!(sink.path, Path::new("/tmp/o.txt"));
        assert_eq!(c.transforms.len(), 1);
    }

    #[test]
    fn mistakes_are_refused_naming_the_field() {
        let seed = |params: &str| {
            parse(&format!(
                "name: c\ntype: http\ntopic: t\nparameters:\n  endpoint: http://h/\n{params}"
            ))
        };
        for (params, want) in [
            ("  interval: 0.01\n", "below the minimum"),
            ("  interval: soon\n", "is not a duration"),
            ("  method: FETCH\n", "use GET, POST"),
            ("  headers: [\"no colon\"]\n", "is not \"Name: value\""),
            ("  output_parts: most\n", "use body or full"),
            (
                "  endpoit: http://h/\n",
                "parameters.endpoit: not a parameter",
            ),
        ] {
            let e = format!("{:#}", seed(params).unwrap_err());
            assert!(e.contains(want), "{params}: {e}");
        }
        for (file, want) in [
            (
                "name: c\ntype: kafka\ntopic: t\nparameters: {endpoint: http://h/}\n",
                "connector types are: http",
            ),
            (
                "name: c\ntype: http\ntopic: t\ndirection: sink\n",
                "runs as a source only",
            ),
            (
                "name: c\ntype: http\ntopic: t\nparameters: {}\n",
                "endpoint is required",
            ),
            (
                "name: C!\ntype: http\ntopic: t\nparameters: {endpoint: http://h/}\n",
                "lowercase",
            ),
            (
                "name: c\ntype: http\ntopic: t\nparamters: {}\n",
                "unknown field `paramters`",
            ),
            (
                "name: c\ntype: http\ntopic: t\nparameters: {endpoint: https://h/, ca_file: none.pem}\n",
                "parameters.ca_file",
            ),
            (
                "name: c\ntype: http\ntopic: t\nparameters: {endpoint: http://h/, ca_file: ca.pem}\n",
                "is for https:// endpoints",
            ),
            (
                "name: c\ntype: http\ntopic: t\nparameters: {endpoint: ftp://h/}\n",
                "http://",
            ),
            (
                "apiVersion: 0.1.0\nmeta: {name: c, type: kafka-sink, topic: t}\n",
                "http-source, file-source, file-sink, sql-sink, derived-topic",
            ),
            (
                "apiVersion: 0.1.0\nmeta: {name: c, type: sql-sink, topic: t}\n",
                "needs a `sql` section",
            ),
            (
                "name: c\ntype: sql\ntopic: t\nparameters: {url: sqlite:x.db, table: t}\n",
                "parameters.columns is required",
            ),
            (
                "apiVersion: 0.1.0\nmeta: {name: c, type: http-source, topic: t}\n",
                "needs an `http` section",
            ),
            (
                "name: c\ntype: file\ntopic: t\nparameters: {}\n",
                "parameters.path is required",
            ),
            (
                "name: c\ntype: file\ntopic: t\nparameters: {path: a.log, from: middle}\n",
                "use beginning or end",
            ),
            (
                "name: c\ntype: file\ntopic: t\ndirection: sink\nparameters: {path: o, from: end}\n",
                "parameters.from: not a parameter of the file sink",
            ),
            (
                "name: c\ntype: file\ntopic: t\ndirection: up\nparameters: {path: o}\n",
                "use source or sink",
            ),
            (
                "apiVersion: 0.1.0\nmeta: {name: c, type: file-sink, topic: t}\n",
                "needs a `file` section",
            ),
        ] {
            let e = format!("{:#}", parse(file).unwrap_err());
            assert!(e.contains(want), "{file}: {e}");
        }
    }
}
