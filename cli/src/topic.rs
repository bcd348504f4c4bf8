//! `sluice topic create | list | describe | delete`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use sluice_client::proto::{TopicCompression, TopicInfo, TopicSettings, TopicSpec, WireError};

use crate::output::{self, Table, human_bytes, rfc3339_ms};
use crate::topic_file::TopicPlan;
use crate::units::{parse_duration, parse_size};
use crate::{Globals, OutputArgs};

#[derive(Debug, Subcommand)]
pub enum TopicCmd {
    /// Create a topic.
    Create(CreateArgs),
    /// List all topics (the system topics with --system).
    #[command(alias = "ls")]
    List {
        /// List the system topics (the cluster's own: its audit trail)
        /// instead of the others.
        #[arg(short = 's', long)]
        system: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show a topic's settings and partition assignment.
    Describe {
        /// Topic name.
        name: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Add partitions to a topic (its records stay where they are; new
    /// keys may map to other partitions from then on; consumer groups
    /// rebalance onto them).
    AddPartition {
        /// Topic name.
        name: String,
        /// How many partitions to add.
        #[arg(short = 'c', long, default_value_t = 1)]
        count: u32,
    },
    /// Delete topics and their data.
    #[command(alias = "rm")]
    Delete {
        /// Topic names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Delete system topics too (after asking, unless --force): the
        /// cluster starts a new, empty one.
        #[arg(short = 's', long)]
        system: bool,
        /// With --system: do not ask.
        #[arg(short = 'f', long)]
        force: bool,
        /// Go on with the other names when one cannot be deleted (the
        /// command still fails at the end).
        #[arg(short = 'c', long)]
        continue_on_error: bool,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Read the topic from a Fluvio topic file (YAML: meta.name; partition.count,
    /// replication, max-size; retention.time, segment-size) instead of the
    /// name and the topic flags.
    // Its conflicts are checked in `spec`, so that the message names
    // --config first whatever the order on the command line (Fluvio's
    // scripts match on that).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Topic name: lowercase letters, digits and '-' (a --config file names
    /// the topic instead).
    #[arg(required_unless_present = "config")]
    pub name: Option<String>,
    /// Number of partitions [default: 1].
    #[arg(short = 'p', long)]
    pub partitions: Option<u32>,
    /// Replicas of each partition (at most the number of SPUs) [default: 1].
    #[arg(short = 'r', long)]
    pub replication: Option<u32>,
    /// Delete segments older than this, e.g. 7d or 12h (default: keep forever).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub retention_time: Option<Duration>,
    /// Delete the oldest segments beyond this size per partition, e.g. 10GiB.
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub retention_bytes: Option<u64>,
    /// The largest a partition may grow, e.g. 10GiB: Fluvio's name for
    /// --retention-bytes (the oldest segments are deleted beyond it). At
    /// least 2048 bytes and one segment.
    #[arg(long, value_parser = parse_size, value_name = "SIZE", conflicts_with = "retention_bytes")]
    pub max_partition_size: Option<u64>,
    /// Size at which a partition's log rolls to a new segment, e.g. 1GiB
    /// [default: 1GiB].
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub segment_size: Option<u64>,
    /// Place the replicas yourself: a JSON file listing, per partition,
    /// `{"id": PARTITION, "replicas": [NODE, ...]}` (Fluvio's format). It sets
    /// the partition count and the replication factor.
    #[arg(short = 'f', long, value_name = "FILE", conflicts_with_all = ["partitions", "replication"])]
    pub replica_assignment: Option<PathBuf>,
    /// Which producer batches the topic takes and how it stores them: any
    /// (the default: any codec, stored uncompressed), none, gzip, snappy,
    /// lz4 or zstd (that codec only, and stored compressed with it).
    /// Producers follow the topic's type unless told otherwise.
    #[arg(long = "compression-type", alias = "compression", value_name = "TYPE",
          value_parser = TopicCompression::parse)]
    pub compression_type: Option<TopicCompression>,
    /// Check that the topic could be created (its settings, that the name is
    /// free, that the cluster has enough nodes for its replicas), print it,
    /// and create nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Create a system topic: listed only by `topic list --system`, deleted
    /// only by `topic delete --system`.
    #[arg(short = 's', long)]
    pub system: bool,
    /// Derive the topic from topic SOURCE: a connector the cluster runs
    /// copies every record of SOURCE, through --transforms, into the same
    /// partition of this topic, exactly once. The topic gets SOURCE's
    /// partitions (and its replication unless -r is given).
    #[arg(long, value_name = "SOURCE", conflicts_with_all = ["config", "partitions", "replica_assignment", "dry_run", "system"])]
    pub from: Option<String>,
    /// With --from: the SmartModules to apply, a YAML file
    /// `transforms: [{uses: MODULE, with: {key: value}}]` (registered modules).
    #[arg(short = 't', long, value_name = "FILE", requires = "from")]
    pub transforms: Option<PathBuf>,
}

impl CreateArgs {
    /// The flags (or the --config file) as a plan, its spec checked against
    /// the protocol's limits so a bad value fails before connecting.
    pub fn plan(&self) -> anyhow::Result<TopicPlan> {
        let mut plan = match &self.config {
            Some(path) => {
                if let Some(flag) = self.flag_besides_config() {
                    anyhow::bail!(
                        "the argument '--config <PATH>' cannot be used with '{flag}': the file \
                         describes the whole topic; give either the file or the name and flags"
                    );
                }
                crate::topic_file::read(path)?
            }
            None => {
                let spec = self.spec_from_flags()?;
                let mut plan = match &self.replica_assignment {
                    Some(path) => {
                        crate::topic_file::placed(spec, crate::topic_file::read_assignment(path)?)?
                    }
                    None => TopicPlan {
                        spec,
                        assignments: None,
                        settings: TopicSettings::for_new_topic(),
                    },
                };
                plan.settings.compression = self.compression_type.unwrap_or_default();
                plan
            }
        };
        plan.settings.system = self.system;
        let spec = &plan.spec;
        if spec.name.trim().is_empty() {
            anyhow::bail!(
                "Topic name is required: give one (lowercase letters, digits and '-'), or a \
                 --config file whose meta.name names it"
            );
        }
        spec.validate()
            .with_context(|| format!("cannot create topic {:?}", spec.name))?;
        Ok(plan)
    }

    /// The first name or topic flag given along with --config.
    fn flag_besides_config(&self) -> Option<&'static str> {
        [
            (self.name.is_some(), "[NAME]"),
            (self.partitions.is_some(), "--partitions <PARTITIONS>"),
            (self.replication.is_some(), "--replication <REPLICATION>"),
            (self.retention_time.is_some(), "--retention-time <DURATION>"),
            (self.retention_bytes.is_some(), "--retention-bytes <SIZE>"),
            (
                self.max_partition_size.is_some(),
                "--max-partition-size <SIZE>",
            ),
            (self.segment_size.is_some(), "--segment-size <SIZE>"),
            (
                self.replica_assignment.is_some(),
                "--replica-assignment <FILE>",
            ),
            (self.compression_type.is_some(), "--compression-type <TYPE>"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }

    fn spec_from_flags(&self) -> anyhow::Result<TopicSpec> {
        let defaults = TopicSpec::new(self.name.clone().unwrap_or_default());
        let segment_size = self.segment_size.unwrap_or(defaults.segment_size_bytes);
        let retention_ms = self
            .retention_time
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        if let Some(max) = self.max_partition_size {
            crate::topic_file::check_max_partition_size(max, segment_size)?;
        }
        Ok(TopicSpec {
            partitions: self.partitions.unwrap_or(defaults.partitions),
            replication: self.replication.unwrap_or(defaults.replication),
            retention_ms,
            retention_bytes: self.retention_bytes.or(self.max_partition_size),
            segment_size_bytes: segment_size,
            ..defaults
        })
    }
}

/// What `topic create --dry-run` checks against the cluster, besides the
/// spec's own limits: the name is free, and enough nodes are healthy to
/// hold a partition's replicas. (The controller checks again, and also each
/// node's replica bound, when the topic is created.)
async fn dry_run(
    client: &sluice_client::Client,
    globals: &Globals,
    spec: &TopicSpec,
    assignments: Option<&[sluice_client::proto::PartitionAssignment]>,
    settings: &TopicSettings,
) -> anyhow::Result<String> {
    match client.describe_topic(&spec.name).await {
        Ok(_) => {
            return Err(WireError::TopicExists {
                topic: spec.name.clone(),
            }
            .into());
        }
        Err(e) if matches!(e.wire_error(), Some(WireError::UnknownTopic { .. })) => {}
        Err(e) => return Err(e).context("cannot check whether the topic exists"),
    }
    // Each node is asked about itself, as `cluster status` does: a node's
    // view of the others can lag (an idle controller sleeps).
    let (_, nodes) = crate::cluster::probe_nodes(globals).await?;
    for a in assignments.unwrap_or_default() {
        if let Some(missing) = a
            .replicas
            .iter()
            .find(|r| !nodes.iter().any(|(n, _)| n.id == **r))
        {
            anyhow::bail!(
                "cannot create topic {:?}: partition {} names node {missing}, which is not in the \
                 cluster (see `sluice cluster spu list`)",
                spec.name,
                a.partition
            );
        }
    }
    let healthy = nodes.iter().filter(|(n, _)| n.healthy).count();
    if (spec.replication as usize) > healthy {
        anyhow::bail!(
            "cannot create topic {:?}: replication {} needs {} healthy nodes and the cluster has \
             {healthy} of {}; lower -r or start more nodes",
            spec.name,
            spec.replication,
            spec.replication,
            nodes.len()
        );
    }
    Ok(format!(
        "dry run: topic {:?} can be created ({} partition(s) x {} replica(s), segments of {}, \
         retention {} / {}, compression type {}); nothing was created\n",
        spec.name,
        spec.partitions,
        spec.replication,
        human_bytes(spec.segment_size_bytes),
        retention_time(spec.retention_ms),
        retention_bytes(spec.retention_bytes),
        settings.compression,
    ))
}

/// A topic as printed with `-O json|yaml`; field names are a stable interface.
#[derive(Debug, Serialize)]
pub struct TopicOut {
    pub name: String,
    pub partitions: u32,
    pub replication: u32,
    pub retention_ms: Option<u64>,
    pub retention_bytes: Option<u64>,
    pub segment_size_bytes: u64,
    /// Shown by `describe` (a list would need one more request per topic).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression_type: Option<String>,
    /// How producers place keyed records (`describe` only, as above).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_hash: Option<String>,
    /// A system topic (`describe` only, as above).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub system: bool,
    pub created: String,
    pub assignments: Vec<AssignmentOut>,
}

#[derive(Debug, Serialize)]
pub struct AssignmentOut {
    pub partition: u32,
    pub replicas: Vec<u64>,
}

impl From<&TopicInfo> for TopicOut {
    fn from(info: &TopicInfo) -> Self {
        Self {
            name: info.spec.name.clone(),
            partitions: info.spec.partitions,
            replication: info.spec.replication,
            retention_ms: info.spec.retention_ms,
            retention_bytes: info.spec.retention_bytes,
            segment_size_bytes: info.spec.segment_size_bytes,
            compression_type: None,
            key_hash: None,
            system: false,
            created: rfc3339_ms(info.created_ms),
            assignments: info
                .assignments
                .iter()
                .map(|a| AssignmentOut {
                    partition: a.partition,
                    replicas: a.replicas.clone(),
                })
                .collect(),
        }
    }
}

pub async fn run(cmd: TopicCmd, globals: &Globals) -> anyhow::Result<()> {
    match cmd {
        TopicCmd::Create(args) => {
            let TopicPlan {
                spec,
                assignments,
                settings,
            } = args.plan()?;
            let client = crate::connect(globals).await?;
            if let Some(from) = &args.from {
                let replication_given = args.replication.is_some();
                let done = crate::derived_topic::create(
                    &client,
                    spec,
                    replication_given,
                    settings,
                    from,
                    args.transforms.as_deref(),
                )
                .await?;
                return output::write_stdout(done.as_bytes());
            }
            if args.dry_run {
                let checked =
                    dry_run(&client, globals, &spec, assignments.as_deref(), &settings).await?;
                return output::write_stdout(checked.as_bytes());
            }
            let name = spec.name.clone();
            client
                .create_topic_with(spec, assignments, settings)
                .await?;
            output::write_stdout(format!("topic {name:?} created\n").as_bytes())
        }
        TopicCmd::AddPartition { name, count } => {
            let client = crate::connect(globals).await?;
            let info = client
                .add_partitions(&name, count)
                .await
                .with_context(|| format!("cannot add partitions to topic {name}"))?;
            // Fluvio's lines: the topic, then each new partition and the
            // SPU that starts it (its first replica), then all its replicas.
            let mut table = Table::new(&["PARTITION", "SPU", "REPLICAS"]);
            for a in info
                .assignments
                .iter()
                .skip((info.spec.partitions - count) as usize)
            {
                let replicas: Vec<String> = a.replicas.iter().map(u64::to_string).collect();
                table.row(vec![
                    a.partition.to_string(),
                    a.replicas.first().map_or("-".into(), u64::to_string),
                    replicas.join(","),
                ]);
            }
            output::write_stdout(
                format!(
                    "added new partitions to topic: {name:?}\n{}",
                    table.render()
                )
                .as_bytes(),
            )
        }
        TopicCmd::List {
            system,
            output: out,
        } => {
            let client = crate::connect(globals).await?;
            let mut topics = if system {
                client.list_system_topics().await?
            } else {
                client.list_topics().await?
            };
            topics.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
            let rows: Vec<TopicOut> = topics.iter().map(TopicOut::from).collect();
            output::print(out.output, &rows, || match (system, rows.is_empty()) {
                (true, true) => "no system topics (the cluster creates its audit topic, \
                                 sluice-audit, within seconds of forming)\n"
                    .into(),
                _ => list_table(&rows),
            })
        }
        TopicCmd::Describe { name, output: out } => {
            let client = crate::connect(globals).await?;
            let mut topic = TopicOut::from(&crate::suggest::describe_topic(&client, &name).await?);
            let settings = client
                .topic_settings(&name)
                .await
                .with_context(|| format!("cannot read the settings of topic {name:?}"))?;
            topic.compression_type = Some(settings.compression.to_string());
            topic.key_hash = Some(settings.key_hash.to_string());
            topic.system = settings.system;
            output::print(out.output, &topic, || describe_table(&topic))
        }
        TopicCmd::Delete {
            names,
            system,
            force,
            continue_on_error,
        } => {
            let client = crate::connect(globals).await?;
            let mut failed = 0;
            for name in names {
                match delete(&client, &name, system, force).await {
                    Ok(said) => output::write_stdout(said.as_bytes())?,
                    Err(e) if continue_on_error => {
                        failed += 1;
                        eprintln!("topic {name:?} delete failed with: {e:#}");
                    }
                    Err(e) => return Err(e),
                }
            }
            if failed > 0 {
                anyhow::bail!("{failed} topic(s) could not be deleted; see the errors above");
            }
            Ok(())
        }
    }
}

/// Deletes topic `name`; a system topic only with `system` (and after
/// asking, unless `force`). Returns what to print.
async fn delete(
    client: &sluice_client::Client,
    name: &str,
    system: bool,
    force: bool,
) -> anyhow::Result<String> {
    let users = crate::derived_topic::connectors_naming(client, name).await?;
    if let Some(refusal) = users.refusal(name) {
        anyhow::bail!(refusal);
    }
    match client.delete_topic(name).await {
        Ok(()) => {
            let Some((connector, from)) = &users.derivation else {
                return Ok(format!("topic {name:?} deleted\n"));
            };
            client.delete_connector(connector).await.with_context(|| {
                format!(
                    "topic {name:?} was deleted, but not connector {connector:?}, which derived \
                     it; delete it with `sluice connector delete {connector}`"
                )
            })?;
            Ok(format!(
                "topic {name:?} deleted\nconnector {connector:?}, which derived it from {from:?}, deleted\n"
            ))
        }
        Err(e) if system && matches!(e.wire_error(), Some(WireError::SystemTopic { .. })) => {
            if !force && !confirm_system_deletion(name)? {
                return Ok("Aborted\n".into());
            }
            client.delete_topic_forced(name).await?;
            Ok(format!("system topic {name:?} deleted\n"))
        }
        Err(e) => Err(e.into()),
    }
}

/// Asks on the terminal whether to delete system topic `name`; without a
/// terminal, refuses and says how to go on.
fn confirm_system_deletion(name: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "system topic '{name}' is deleted only when confirmed, and there is no terminal to \
             ask on; add --force to delete it"
        );
    }
    eprint!(
        "You are trying to delete the system topic '{name}': the cluster writes it, and starts \
         a new, empty one. Proceed? (y/n) "
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim().to_lowercase().as_str(), "y" | "yes"))
}

fn retention_time(ms: Option<u64>) -> String {
    ms.map_or("-".into(), |ms| {
        humantime::format_duration(Duration::from_millis(ms)).to_string()
    })
}

fn retention_bytes(bytes: Option<u64>) -> String {
    bytes.map_or("-".into(), human_bytes)
}

fn list_table(topics: &[TopicOut]) -> String {
    if topics.is_empty() {
        return "no topics; create one with `sluice topic create NAME`\n".into();
    }
    let mut table = Table::new(&[
        "NAME",
        "PARTITIONS",
        "REPLICATION",
        "RETENTION-TIME",
        "RETENTION-BYTES",
        "SEGMENT-SIZE",
        "CREATED",
    ]);
    for t in topics {
        table.row(vec![
            t.name.clone(),
            t.partitions.to_string(),
            t.replication.to_string(),
            retention_time(t.retention_ms),
            retention_bytes(t.retention_bytes),
            human_bytes(t.segment_size_bytes),
            t.created.clone(),
        ]);
    }
    table.render()
}

fn describe_table(t: &TopicOut) -> String {
    let mut fields = Table::new(&["FIELD", "VALUE"]);
    for (field, value) in [
        ("name", t.name.clone()),
        ("partitions", t.partitions.to_string()),
        ("replication", t.replication.to_string()),
        ("retention-time", retention_time(t.retention_ms)),
        ("retention-bytes", retention_bytes(t.retention_bytes)),
        ("segment-size", human_bytes(t.segment_size_bytes)),
        (
            "compression-type",
            t.compression_type.clone().unwrap_or_else(|| "-".into()),
        ),
        ("key-hash", t.key_hash.clone().unwrap_or_else(|| "-".into())),
        ("system", if t.system { "yes" } else { "no" }.into()),
        ("created", t.created.clone()),
    ] {
        fields.row(vec![field.into(), value]);
    }
    let mut out = fields.render();
    if !t.assignments.is_empty() {
        let mut assignments = Table::new(&["PARTITION", "REPLICAS"]);
        for a in &t.assignments {
            let replicas: Vec<String> = a.replicas.iter().map(u64::to_string).collect();
            assignments.row(vec![a.partition.to_string(), replicas.join(",")]);
        }
        out.push('\n');
        out.push_str(&assignments.render());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(subcommand)]
        cmd: TopicCmd,
    }

    fn create(args: &[&str]) -> anyhow::Result<TopicSpec> {
        let argv = ["t", "create"].iter().chain(args).copied();
        match Wrap::try_parse_from(argv)?.cmd {
            TopicCmd::Create(args) => args.plan().map(|p| p.spec),
            _ => unreachable!(),
        }
    }

    #[test]
    fn create_flags_become_a_spec() {
        let spec = create(&[
            "orders",
            "-p",
            "3",
            "-r",
            "2",
            "--retention-time",
            "7d",
            "--retention-bytes",
            "10GiB",
            "--segment-size",
            "16MiB",
        ])
        .unwrap();
        assert_eq!(spec.partitions, 3);
        assert_eq!(spec.replication, 2);
        assert_eq!(spec.retention_ms, Some(7 * 86_400_000));
        assert_eq!(spec.retention_bytes, Some(10 << 30));
        assert_eq!(spec.segment_size_bytes, 16 << 20);

        let spec = create(&["plain"]).unwrap();
        assert_eq!(spec, TopicSpec::new("plain"));
    }

    #[test]
    fn bad_create_flags_fail_before_connecting() {
        assert!(
            create(&["Bad_Name"])
                .unwrap_err()
                .to_string()
                .contains("Bad_Name")
        );
        assert!(create(&["t", "-p", "0"]).is_err());
        assert!(create(&["t", "--retention-time", "soon"]).is_err());
    }
}
