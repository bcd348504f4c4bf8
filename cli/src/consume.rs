//! `sluice consume TOPIC`: read records from one or all partitions.
//!
//! The node pushes records as they are committed (no polling). Without a
//! start flag the consumer starts at the current end and follows, like
//! Fluvio; `-d` stops at the end instead. A consumer that loses its node
//! resumes after the last record it printed, so nothing is skipped or
//! printed twice.
//!
//! With `-c NAME` the consumer's position is committed to the cluster
//! (after the records are written to stdout) and the next run with the
//! same name resumes there; start flags apply only to partitions where
//! NAME has committed nothing.

use std::io::Write;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use sluice_client::Client;
use sluice_client::proto::limits::FETCH_RESPONSE_BYTES_DEFAULT;
use sluice_client::proto::{
    AssignmentStrategy, ConsumerRecord, FetchRequest, ReadFrom, SmartModuleInvocation, StartOffset,
};
use tokio::sync::mpsc;

use crate::Globals;
use crate::output::rfc3339_ms;

/// How long a consumer keeps trying to resume after losing its node.

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Topic to read.
    pub topic: String,
    /// Partition to read; repeat for several (`-p 0 -p 2`). Without it,
    /// every partition of the topic, as with -A.
    #[arg(short = 'p', long, value_name = "N", conflicts_with = "all_partitions")]
    pub partition: Vec<u32>,
    /// Read every partition at once, interleaving their records (what
    /// consume does without -p; Fluvio's spelling).
    #[arg(short = 'A', long)]
    pub all_partitions: bool,
    /// Start at the first stored record.
    #[arg(short = 'B', long, group = "start_at")]
    pub beginning: bool,
    /// Start N records before the end (default 10), then follow.
    #[arg(short = 'T', long, value_name = "N", group = "start_at", num_args = 0..=1, default_missing_value = "10")]
    pub tail: Option<u64>,
    /// Read the first N records (default 10).
    #[arg(short = 'H', long, value_name = "N", group = "start_at", num_args = 0..=1, default_missing_value = "10")]
    pub head: Option<u64>,
    /// Start at this offset; a negative N starts N records before the end;
    /// `earliest` (or `beginning`) is the first stored record, `latest` (or
    /// `end`) the next one to be written.
    #[arg(
        short = 'o',
        long,
        value_name = "N|earliest|latest",
        group = "start_at",
        allow_negative_numbers = true,
        value_parser = parse_offset
    )]
    pub offset: Option<OffsetArg>,
    /// Start at this absolute offset.
    #[arg(long, value_name = "N", group = "start_at")]
    pub start: Option<u64>,
    /// Stop after this offset (inclusive).
    #[arg(long, value_name = "N")]
    pub end: Option<u64>,
    /// Stop at the current end instead of waiting for new records.
    #[arg(short = 'd', long)]
    pub disable_continuous: bool,
    /// Print the key too, as `[key] value` (`[null]` for none).
    #[arg(short = 'k', long)]
    pub key_value: bool,
    /// Print each record with this template; placeholders: {{offset}}, {{key}},
    /// {{value}}, {{partition}}, {{timestamp}} (ms), {{time}} (RFC 3339),
    /// {{headers}} (NAME=VALUE,...), {{header:NAME}} (the last NAME's value).
    #[arg(short = 'F', long, value_name = "TEMPLATE")]
    pub format: Option<String>,
    /// How to print records.
    #[arg(short = 'O', long = "output", value_enum, default_value = "dynamic")]
    pub output: ConsumeOutput,
    /// Print JSON records as a table with this table format's columns
    /// (`sluice table-format create`); implies -O table.
    #[arg(long, value_name = "NAME", conflicts_with = "format")]
    pub table_format: Option<String>,
    /// Which replica serves the records: the leader, a follower, or any;
    /// every replica serves committed records only. Default: leader, or any
    /// with --replica.
    #[arg(long, value_enum, value_name = "leader|follower|any")]
    pub read_from: Option<ReadFromArg>,
    /// Read from this SPU's replica of the partition.
    #[arg(long, value_name = "SPU_ID")]
    pub replica: Option<u64>,
    /// Record bytes per response from the node (default 1 MiB). A record
    /// larger than this still comes, alone. More than the nodes send at once
    /// (8 MiB) is taken as 8 MiB, with a note.
    #[arg(short = 'b', long = "maxbytes", value_name = "SIZE", value_parser = parse_max_bytes, conflicts_with = "group")]
    pub max_bytes: Option<u32>,
    /// Accepted for Fluvio's scripts and changes nothing: every replica
    /// serves committed records only, so there is nothing uncommitted to read.
    #[arg(long, value_enum, value_name = "read_committed|read_uncommitted")]
    pub isolation: Option<crate::produce::Isolation>,
    /// Commit this consumer's position under NAME and resume from it next
    /// time (start flags then apply only where NAME has no offset yet).
    #[arg(short = 'c', long, value_name = "NAME")]
    pub consumer: Option<String>,
    /// When to commit: auto (every 5 s while records flow, and on exit) or
    /// manual (once, on exit: at the end of a -d read, on Ctrl-C, or when
    /// stdout closes).
    #[arg(long, value_enum, default_value = "auto", requires = "consumer")]
    pub commit_mode: CommitModeArg,
    /// Read as a member of consumer group GROUP: the group's members split
    /// the topic's partitions and each resumes where the group committed
    /// (start flags apply where it committed nothing). Follows until Ctrl-C,
    /// then commits and leaves the group.
    #[arg(
        short = 'g',
        long,
        value_name = "GROUP",
        conflicts_with_all = ["consumer", "partition", "all_partitions", "replica", "disable_continuous", "head", "end"]
    )]
    pub group: Option<String>,
    /// A group member not heard from for this long is dropped and its
    /// partitions move to the others (1s to 5m).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, requires = "group")]
    pub session_timeout: std::time::Duration,
    /// How the group spreads partitions over its members.
    #[arg(long, value_enum, default_value = "sticky", requires = "group")]
    pub assignment: AssignmentArg,
    /// Before the stream starts, show the SmartModules' look_back functions
    /// the partition's last N records (at most 100,000), so a module can
    /// rebuild what it keeps (the last value seen, the keys already met...).
    #[arg(long, value_name = "N", conflicts_with = "group")]
    pub lookback_last: Option<u64>,
    /// Of the records looked back at, only those stamped within this long
    /// of now, e.g. 1h (alone: every record that recent, up to 100,000).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, conflicts_with = "group")]
    pub lookback_age: Option<std::time::Duration>,
    #[command(flatten)]
    pub smartmodules: crate::smartmodule_flags::SmartModuleArgs,
}

/// `--assignment` of `consume -g`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignmentArg {
    /// Members keep what they read, up to their fair share.
    Sticky,
    /// Contiguous ranges of partitions per member.
    Range,
    /// Partitions dealt to members in turn.
    RoundRobin,
}

/// `--commit-mode` of `consume`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitModeArg {
    Auto,
    Manual,
}

/// `--read-from` of `consume`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFromArg {
    Leader,
    Follower,
    Any,
}

/// `-O` of `consume`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeOutput {
    /// The value as text (same as `text`).
    Dynamic,
    /// The value as text, one record per line.
    Text,
    /// One JSON object per record and line.
    Json,
    /// The value's bytes unchanged, followed by a newline.
    Raw,
    /// JSON records as rows: the columns of --table-format, or else the
    /// first record's keys.
    Table,
    /// Fluvio's interactive, updating table: refused with a pointer to
    /// `table` (this command line prints a stream, it has no screen view).
    FullTable,
}

/// `--offset`: a number (negative: from the end) or a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetArg {
    At(i64),
    Earliest,
    Latest,
}

fn parse_offset(text: &str) -> Result<OffsetArg, String> {
    match text.to_ascii_lowercase().as_str() {
        "earliest" | "beginning" | "first" => Ok(OffsetArg::Earliest),
        "latest" | "end" | "last" => Ok(OffsetArg::Latest),
        number => number.parse().map(OffsetArg::At).map_err(|_| {
            format!(
                "{text:?} is not an offset: give a number (negative counts back from the end), earliest or latest"
            )
        }),
    }
}

fn parse_max_bytes(text: &str) -> Result<u32, String> {
    use sluice_client::proto::limits::FETCH_RESPONSE_BYTES_MAX;
    let n = crate::units::parse_size(text)?;
    if n == 0 {
        return Err(format!(
            "{text} is out of range: give at least 1 byte (e.g. 64KiB)"
        ));
    }
    if n > FETCH_RESPONSE_BYTES_MAX as u64 {
        // A budget, not a promise (a larger record comes anyway): as much
        // as a node sends in one response is the most that can be meant.
        eprintln!(
            "note: --maxbytes {text} is above the {FETCH_RESPONSE_BYTES_MAX} bytes a node sends \
             in one response; reading with {FETCH_RESPONSE_BYTES_MAX}"
        );
        return Ok(FETCH_RESPONSE_BYTES_MAX as u32);
    }
    Ok(n as u32)
}

/// Which partitions to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partitions {
    /// These, each once, in the order given.
    Listed(Vec<u32>),
    /// Every partition of the topic.
    All,
}

impl Partitions {
    /// The partitions to read of a topic of `count` partitions; a listed
    /// one the topic does not have is an error naming what it has.
    pub fn resolve(&self, topic: &str, count: u32) -> anyhow::Result<Vec<u32>> {
        match self {
            Partitions::All => Ok((0..count).collect()),
            Partitions::Listed(listed) => {
                if let Some(missing) = listed.iter().find(|p| **p >= count) {
                    bail!(
                        "topic {topic} has no partition {missing}: it has {count}, numbered 0 to {}",
                        count.saturating_sub(1)
                    );
                }
                Ok(listed.clone())
            }
        }
    }
}

/// The checked form of [`ConsumeArgs`].
#[derive(Debug, Clone)]
pub struct ConsumeConfig {
    pub topic: String,
    pub partitions: Partitions,
    pub start: StartOffset,
    pub end_offset: Option<u64>,
    /// Records to read per partition (`-H`).
    pub max_records: Option<u64>,
    pub follow: bool,
    pub render: Render,
    pub read_from: ReadFrom,
    pub replica: Option<u64>,
    /// Applied in the SPU, in order, before records leave it.
    pub smartmodules: Vec<SmartModuleInvocation>,
    /// Commit the position under this name, and when.
    pub consumer: Option<(String, sluice_client::CommitMode)>,
    /// Read as a member of this consumer group.
    pub group: Option<(String, sluice_client::GroupConfig)>,
    /// Record bytes per response.
    pub max_bytes: u32,
    /// `--lookback-last` / `--lookback-age`.
    pub lookback: Option<sluice_client::proto::Lookback>,
}

impl ConsumeArgs {
    /// The checked configuration; `home` holds the table formats.
    pub fn config(self, home: &std::path::Path) -> anyhow::Result<ConsumeConfig> {
        let (start, max_records) = resolve_start(&self)?;
        if let (Some(end), StartOffset::Absolute(start)) = (self.end, start)
            && end < start
        {
            bail!("--end {end} is before the start offset {start}");
        }
        if self.output == ConsumeOutput::FullTable {
            bail!(
                "-O full-table is Fluvio's interactive screen view, which Sluice does not have; \
                 use -O table (with --table-format NAME for chosen columns): it prints every \
                 record as a row"
            );
        }
        let render = match (self.format, self.table_format) {
            (_, Some(name)) => {
                let format = crate::table_format::TableFormat::load(home, &name)?;
                Render::Table(std::sync::Arc::new(
                    crate::table_format::TableRender::from_format(&format),
                ))
            }
            (Some(template), None) => Render::Template(parse_template(&template)?),
            (None, None) => match self.output {
                ConsumeOutput::Table | ConsumeOutput::FullTable => {
                    Render::Table(Default::default())
                }
                ConsumeOutput::Json => Render::Json,
                ConsumeOutput::Raw => Render::Raw,
                ConsumeOutput::Dynamic | ConsumeOutput::Text if self.key_value => Render::KeyValue,
                ConsumeOutput::Dynamic | ConsumeOutput::Text => Render::Value,
            },
        };
        Ok(ConsumeConfig {
            topic: self.topic,
            partitions: if self.all_partitions || self.partition.is_empty() {
                Partitions::All
            } else {
                let mut listed = Vec::new();
                for p in self.partition {
                    if !listed.contains(&p) {
                        listed.push(p);
                    }
                }
                Partitions::Listed(listed)
            },
            start,
            end_offset: self.end,
            max_records,
            follow: !self.disable_continuous,
            render,
            read_from: match (self.read_from, self.replica) {
                (Some(ReadFromArg::Leader), _) => ReadFrom::Leader,
                (Some(ReadFromArg::Follower), _) => ReadFrom::Follower,
                (Some(ReadFromArg::Any), _) | (None, Some(_)) => ReadFrom::Any,
                (None, None) => ReadFrom::Leader,
            },
            replica: self.replica,
            consumer: match self.consumer {
                Some(name) => {
                    sluice_client::proto::limits::validate_consumer_name(&name)
                        .map_err(|reason| anyhow::anyhow!("invalid consumer name: {reason}"))?;
                    Some((
                        name,
                        match self.commit_mode {
                            CommitModeArg::Auto => sluice_client::CommitMode::default(),
                            CommitModeArg::Manual => sluice_client::CommitMode::Manual,
                        },
                    ))
                }
                None => None,
            },
            max_bytes: self
                .max_bytes
                .unwrap_or(FETCH_RESPONSE_BYTES_DEFAULT as u32),
            group: match self.group {
                Some(name) => {
                    sluice_client::proto::limits::validate_consumer_name(&name).map_err(
                        |reason| anyhow::anyhow!("invalid consumer group name: {reason}"),
                    )?;
                    Some((
                        name,
                        sluice_client::GroupConfig {
                            session_timeout: self.session_timeout,
                            heartbeat_interval: (self.session_timeout / 4)
                                .min(crate::timeouts::GROUP_HEARTBEAT_INTERVAL_MAX),
                            strategy: match self.assignment {
                                AssignmentArg::Sticky => AssignmentStrategy::Sticky,
                                AssignmentArg::Range => AssignmentStrategy::Range,
                                AssignmentArg::RoundRobin => AssignmentStrategy::RoundRobin,
                            },
                            ..Default::default()
                        },
                    ))
                }
                None => None,
            },
            lookback: match (self.lookback_last, self.lookback_age) {
                (None, None) => None,
                (last, age) => Some(sluice_client::proto::Lookback {
                    last: last.unwrap_or(0),
                    age_ms: age.map(|a| u64::try_from(a.as_millis()).unwrap_or(u64::MAX)),
                }),
            },
            smartmodules: self.smartmodules.chain()?,
        })
    }
}

/// Where to start and how many records to read, from the start flags.
/// No flag means the current end (only new records), as in Fluvio.
pub fn resolve_start(args: &ConsumeArgs) -> anyhow::Result<(StartOffset, Option<u64>)> {
    Ok(if args.beginning {
        (StartOffset::Beginning, None)
    } else if let Some(n) = args.tail {
        (StartOffset::FromEnd(n), None)
    } else if let Some(n) = args.head {
        if n == 0 {
            bail!("--head needs at least 1 record");
        }
        (StartOffset::Beginning, Some(n))
    } else if let Some(offset) = args.offset {
        match offset {
            OffsetArg::Earliest => (StartOffset::Beginning, None),
            OffsetArg::Latest => (StartOffset::End, None),
            OffsetArg::At(n) if n >= 0 => (StartOffset::Absolute(n as u64), None),
            OffsetArg::At(n) => (StartOffset::FromEnd(n.unsigned_abs()), None),
        }
    } else if let Some(start) = args.start {
        (StartOffset::Absolute(start), None)
    } else {
        (StartOffset::End, None)
    })
}

/// One piece of a `-F` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Text(String),
    Offset,
    Key,
    Value,
    Partition,
    Timestamp,
    Time,
    /// `{{headers}}`: every header as `NAME=VALUE`, comma-separated.
    Headers,
    /// `{{header:NAME}}`: the value of the last header named NAME (empty
    /// when there is none).
    Header(String),
}

/// How one record is printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Render {
    Template(Vec<Segment>),
    Value,
    KeyValue,
    Json,
    Raw,
    /// JSON records as table rows (shared: it prints its header once).
    Table(std::sync::Arc<crate::table_format::TableRender>),
}

/// Parses a `-F` template; `{{ name }}` placeholders may contain spaces.
/// Unknown placeholders are refused so a typo does not print literally.
pub fn parse_template(template: &str) -> anyhow::Result<Vec<Segment>> {
    let mut segments = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            segments.push(Segment::Text(rest[..open].to_string()));
        }
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            bail!("unclosed placeholder in --format {template:?}: write {{{{name}}}}");
        };
        segments.push(match after[..close].trim() {
            "offset" => Segment::Offset,
            "key" => Segment::Key,
            "value" => Segment::Value,
            "partition" => Segment::Partition,
            "timestamp" => Segment::Timestamp,
            "time" => Segment::Time,
            "headers" => Segment::Headers,
            other => match other.strip_prefix("header:") {
                Some(name) if !name.trim().is_empty() => Segment::Header(name.trim().to_string()),
                _ => bail!(
                    "unknown placeholder {{{{{other}}}}} in --format; use offset, key, value, partition, timestamp, time, headers or header:NAME"
                ),
            },
        });
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        segments.push(Segment::Text(rest.to_string()));
    }
    Ok(segments)
}

impl Render {
    /// Appends `record`, newline included, to `out`.
    pub fn render(&self, record: &ConsumerRecord, out: &mut Vec<u8>) {
        match self {
            Render::Template(segments) => {
                for segment in segments {
                    match segment {
                        Segment::Text(text) => out.extend_from_slice(text.as_bytes()),
                        Segment::Offset => {
                            out.extend_from_slice(record.offset.to_string().as_bytes())
                        }
                        Segment::Key => {
                            out.extend_from_slice(record.key.as_deref().unwrap_or(b"null"))
                        }
                        Segment::Value => out.extend_from_slice(&record.value),
                        Segment::Partition => {
                            out.extend_from_slice(record.partition.to_string().as_bytes())
                        }
                        Segment::Timestamp => {
                            out.extend_from_slice(record.timestamp_ms.to_string().as_bytes())
                        }
                        Segment::Time => {
                            out.extend_from_slice(rfc3339_ms(record.timestamp_ms).as_bytes())
                        }
                        Segment::Headers => {
                            for (i, h) in record.headers.iter().enumerate() {
                                if i > 0 {
                                    out.push(b',');
                                }
                                out.extend_from_slice(h.key.as_bytes());
                                out.push(b'=');
                                out.extend_from_slice(&h.value);
                            }
                        }
                        Segment::Header(name) => {
                            if let Some(h) = record.headers.iter().rev().find(|h| &h.key == name) {
                                out.extend_from_slice(&h.value);
                            }
                        }
                    }
                }
            }
            Render::Value => {
                out.extend_from_slice(String::from_utf8_lossy(&record.value).as_bytes())
            }
            Render::KeyValue => {
                out.push(b'[');
                out.extend_from_slice(
                    record
                        .key
                        .as_deref()
                        .map_or("null".into(), String::from_utf8_lossy)
                        .as_bytes(),
                );
                out.extend_from_slice(b"] ");
                out.extend_from_slice(String::from_utf8_lossy(&record.value).as_bytes());
            }
            Render::Json => {
                let mut json = serde_json::json!({
                    "partition": record.partition,
                    "offset": record.offset,
                    "key": record.key.as_deref().map(String::from_utf8_lossy),
                    "value": String::from_utf8_lossy(&record.value),
                    "timestamp": record.timestamp_ms,
                });
                // Only when there are some: a record without headers prints
                // as it did before they existed.
                if !record.headers.is_empty() {
                    json["headers"] = record
                        .headers
                        .iter()
                        .map(|h| {
                            serde_json::json!({
                                "key": h.key,
                                "value": String::from_utf8_lossy(&h.value),
                            })
                        })
                        .collect();
                }
                out.extend_from_slice(json.to_string().as_bytes());
            }
            Render::Raw => out.extend_from_slice(&record.value),
            // Ends its rows itself.
            Render::Table(table) => return table.render(&record.value, out),
        }
        out.push(b'\n');
    }
}

pub async fn run(args: ConsumeArgs, globals: &Globals) -> anyhow::Result<()> {
    let config = args.config(&globals.home)?;
    if config.lookback.is_some() && config.smartmodules.is_empty() {
        anyhow::bail!(
            "--lookback-last and --lookback-age show records to a SmartModule's look_back \
             function: give the module too (--smartmodule NAME, --filter PATH, ...)"
        );
    }
    let client = crate::connect(globals).await?;
    let topic = crate::suggest::describe_topic(&client, &config.topic).await?;
    if let Some((name, group)) = &config.group {
        let group = sluice_client::GroupConfig {
            start: config.start,
            read_from: config.read_from,
            smartmodules: config.smartmodules.clone(),
            // The accumulator moves with the partition, member to member.
            checkpoint_aggregate: ends_with_aggregate(&client, &config).await?,
            ..group.clone()
        };
        return run_member(&client, &config, name, group).await;
    }
    let partitions = config
        .partitions
        .resolve(&config.topic, topic.spec.partitions)?;
    let committer = match &config.consumer {
        Some((name, mode)) => Some(
            sluice_client::OffsetCommitter::open(&client, name, &config.topic, *mode)
                .await
                .with_context(|| format!("cannot read the offsets of consumer {name}"))?,
        ),
        None => None,
    };
    // Where retention already deleted records a named consumer had not
    // read, it resumes at the oldest one left, and says what it missed.
    let mut first_kept = std::collections::BTreeMap::new();
    if committer
        .as_ref()
        .is_some_and(|c| partitions.iter().any(|p| c.committed(*p).is_some()))
    {
        for p in client.list_partitions(Some(&config.topic)).await? {
            if p.leader.is_some() {
                first_kept.insert(p.partition, p.start_offset);
            }
        }
    }
    // An aggregate at the end of the chain emits its accumulator with each
    // record: a named consumer commits it with the offset and resumes the
    // aggregate from it, as if it had never stopped.
    let checkpoints_state =
        config.consumer.is_some() && ends_with_aggregate(&client, &config).await?;
    let (tx, mut rx) = mpsc::channel::<anyhow::Result<Vec<ConsumerRecord>>>(16);
    for partition in partitions {
        let mut smartmodules = config.smartmodules.clone();
        if checkpoints_state
            && let (Some(state), Some(last)) = (
                committer
                    .as_ref()
                    .and_then(|c| c.committed_state(partition)),
                smartmodules.last_mut(),
            )
        {
            last.initial = Some(state.to_vec());
        }
        let start = match committer.as_ref().and_then(|c| c.committed(partition)) {
            Some(committed) => {
                let kept = first_kept.get(&partition).copied().unwrap_or(0);
                let (offset, missed) = resume_at(committed, kept);
                if let Some(missed) = missed {
                    eprintln!(
                        "warning: consumer {}: records {missed} of {}/{partition} were deleted (retention) before it read them; resuming at {offset}",
                        config.consumer.as_ref().map_or("", |(n, _)| n.as_str()),
                        config.topic,
                    );
                }
                tracing::info!(partition, offset, "resuming at the committed offset");
                StartOffset::Absolute(offset)
            }
            None => config.start,
        };
        tokio::spawn(read_partition(
            client.clone(),
            config.clone(),
            partition,
            start,
            smartmodules,
            tx.clone(),
        ));
    }
    drop(tx);
    let print = async {
        let mut out = Vec::new();
        while let Some(batch) = rx.recv().await {
            let batch = batch?;
            out.clear();
            for record in &batch {
                config.render.render(record, &mut out);
            }
            if !write_out(&out)? {
                break; // stdout closed (e.g. `| head`): stop quietly.
            }
            // Written out: only now is the position past these records.
            if let Some(c) = &committer {
                for record in &batch {
                    c.processed(record.partition, record.offset);
                }
                if checkpoints_state {
                    // The last record of each partition carries its accumulator.
                    let mut seen = std::collections::BTreeSet::new();
                    for record in batch.iter().rev() {
                        if seen.insert(record.partition) {
                            c.processed_with_state(
                                record.partition,
                                record.offset,
                                record.value.clone(),
                            );
                        }
                    }
                }
            }
        }
        anyhow::Ok(())
    };
    let result = tokio::select! {
        result = print => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    if let (Some(c), Some((name, _))) = (committer, &config.consumer) {
        // Even after an error: what was printed is processed.
        c.close().await.with_context(|| {
            format!(
                "the records printed were not committed for consumer {name}; its next run prints them again"
            )
        })?;
    }
    result
}

/// `consume -g GROUP`: prints what the group gives this member until
/// Ctrl-C or a closed stdout, then commits and leaves the group.
async fn run_member(
    client: &Client,
    config: &ConsumeConfig,
    name: &str,
    group: sluice_client::GroupConfig,
) -> anyhow::Result<()> {
    use sluice_client::GroupEvent;
    use std::io::IsTerminal;
    let mut member = sluice_client::GroupConsumer::join(client, name, &config.topic, group)
        .await
        .with_context(|| format!("cannot join consumer group {name}"))?;
    let tell = std::io::stderr().is_terminal();
    let print = async {
        let mut out = Vec::new();
        while let Some(event) = member.next_event().await {
            match event.with_context(|| format!("cannot read {} as group {name}", config.topic))? {
                GroupEvent::Records(batch) => {
                    out.clear();
                    for record in &batch {
                        config.render.render(record, &mut out);
                    }
                    if !write_out(&out)? {
                        break;
                    }
                    for record in &batch {
                        member.processed(record);
                    }
                }
                GroupEvent::Assigned(p) if tell => {
                    eprintln!("group {name}: reading partitions {p:?}")
                }
                GroupEvent::Revoked(p) if tell => {
                    eprintln!("group {name}: gave up partitions {p:?}")
                }
                GroupEvent::Assigned(_) | GroupEvent::Revoked(_) => {}
            }
        }
        anyhow::Ok(())
    };
    let result = tokio::select! {
        result = print => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    member.leave().await.with_context(|| {
        format!(
            "could not commit and leave group {name}; its partitions move after the session timeout"
        )
    })?;
    result
}

/// Whether the consumer's SmartModule chain ends with an aggregate, whose
/// output records are its accumulator. A registered module given without
/// its kind (`--smartmodule NAME`) is looked up; an ad-hoc one given that
/// way (`--smartmodule-path`) is not known here, so it is not checkpointed
/// (`--aggregate PATH` is).
async fn ends_with_aggregate(client: &Client, config: &ConsumeConfig) -> anyhow::Result<bool> {
    use sluice_client::proto::{SmartModuleKind, SmartModuleSource};
    let Some(last) = config.smartmodules.last() else {
        return Ok(false);
    };
    Ok(match (&last.kind, &last.module) {
        (Some(kind), _) => *kind == SmartModuleKind::Aggregate,
        (None, SmartModuleSource::Registered(name)) => {
            client.describe_smartmodule(name).await?.kind == SmartModuleKind::Aggregate
        }
        (None, SmartModuleSource::AdHoc { name, .. }) => {
            tracing::debug!(module = %name, "the module's kind is read in the SPU: an aggregate's state is not committed with the offset; give it as --aggregate to have it committed");
            false
        }
    })
}

/// Where a named consumer that committed `committed` resumes in a
/// partition whose oldest record is at `first_kept`: there, or at the oldest
/// record if retention deleted the ones it had not read (then also the
/// range it missed, for a warning).
fn resume_at(committed: u64, first_kept: u64) -> (u64, Option<String>) {
    if committed < first_kept {
        (
            first_kept,
            Some(format!("{committed} to {}", first_kept - 1)),
        )
    } else {
        (committed, None)
    }
}

/// Reads one partition into `tx`, resuming after the last record sent when
/// the node is lost or leadership moves.
async fn read_partition(
    client: Client,
    config: ConsumeConfig,
    partition: u32,
    start: StartOffset,
    smartmodules: Vec<SmartModuleInvocation>,
    tx: mpsc::Sender<anyhow::Result<Vec<ConsumerRecord>>>,
) {
    let request = FetchRequest {
        topic: config.topic.clone(),
        partition,
        start,
        end_offset: config.end_offset,
        max_records: config.max_records,
        follow: config.follow,
        max_bytes: config.max_bytes,
        read_from: config.read_from,
        replica: config.replica,
        smartmodules,
    };
    let options = config
        .lookback
        .map(sluice_client::proto::FetchOption::Lookback)
        .into_iter()
        .collect();
    // The consumer resumes by itself after a node loss, without gap or repeat.
    let mut consumer = client.consume_with(request, options);
    loop {
        let item =
            match consumer.next_batch().await {
                Ok(Some(batch)) => Ok(batch),
                Ok(None) => return,
                Err(e) => Err(anyhow::Error::new(e)
                    .context(format!("cannot read {}/{partition}", config.topic))),
            };
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            return;
        }
    }
}

/// Writes to stdout; `Ok(false)` when stdout is closed.
fn write_out(bytes: &[u8]) -> anyhow::Result<bool> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("cannot write to stdout"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: ConsumeArgs,
    }

    fn config(argv: &[&str]) -> anyhow::Result<ConsumeConfig> {
        Wrap::try_parse_from(std::iter::once("consume").chain(argv.iter().copied()))?
            .args
            .config(std::path::Path::new("/nonexistent"))
    }

    fn record(key: Option<&str>, value: &[u8]) -> ConsumerRecord {
        ConsumerRecord {
            partition: 1,
            offset: 42,
            key: key.map(|k| k.as_bytes().to_vec()),
            value: value.to_vec(),
            timestamp_ms: 1_700_000_000_123,
            headers: Vec::new(),
        }
    }

    fn rendered(render: &Render, record: &ConsumerRecord) -> String {
        let mut out = Vec::new();
        render.render(record, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn start_offsets() {
        let start = |argv: &[&str]| {
            let c = config(argv).unwrap();
            (c.start, c.max_records, c.follow)
        };
        assert_eq!(start(&["t"]), (StartOffset::End, None, true));
        assert_eq!(start(&["t", "-B"]), (StartOffset::Beginning, None, true));
        assert_eq!(
            start(&["t", "-B", "-d"]),
            (StartOffset::Beginning, None, false)
        );
        assert_eq!(
            start(&["t", "-T", "5"]),
            (StartOffset::FromEnd(5), None, true)
        );
        assert_eq!(start(&["t", "-T"]), (StartOffset::FromEnd(10), None, true));
        assert_eq!(
            start(&["t", "-H", "3"]),
            (StartOffset::Beginning, Some(3), true)
        );
        assert_eq!(
            start(&["t", "-o", "7"]),
            (StartOffset::Absolute(7), None, true)
        );
        assert_eq!(
            start(&["t", "-o", "-2"]),
            (StartOffset::FromEnd(2), None, true)
        );
        assert_eq!(
            start(&["t", "--offset=-2"]),
            (StartOffset::FromEnd(2), None, true)
        );
        assert_eq!(
            start(&["t", "--start", "9"]),
            (StartOffset::Absolute(9), None, true)
        );
        assert!(
            config(&["t", "-B", "-o", "3"]).is_err(),
            "start flags are exclusive"
        );
        assert!(config(&["t", "-p", "1", "-A"]).is_err());
        assert!(config(&["t", "--start", "9", "--end", "3"]).is_err());
        assert!(config(&["t", "-H", "0"]).is_err());
    }

    #[test]
    fn partitions_and_end() {
        let c = config(&["t", "-A", "--end", "4"]).unwrap();
        assert_eq!(c.partitions, Partitions::All);
        assert_eq!(c.end_offset, Some(4));
        // Without -p, every partition (as Fluvio and kcat read).
        assert_eq!(config(&["t"]).unwrap().partitions, Partitions::All);
        assert_eq!(
            config(&["t", "-p", "3"]).unwrap().partitions,
            Partitions::Listed(vec![3])
        );
        let several = config(&["t", "-p", "2", "-p", "0", "-p", "2"]).unwrap();
        assert_eq!(several.partitions, Partitions::Listed(vec![2, 0]));
        assert_eq!(several.partitions.resolve("t", 3).unwrap(), vec![2, 0]);
        let err = several.partitions.resolve("t", 2).unwrap_err().to_string();
        assert!(
            err.contains("no partition 2") && err.contains("numbered 0 to 1"),
            "{err}"
        );
        assert_eq!(Partitions::All.resolve("t", 3).unwrap(), vec![0, 1, 2]);
        assert!(config(&["t", "-p", "1", "-A"]).is_err());
    }

    #[test]
    fn consumer_names_and_commit_modes() {
        assert_eq!(config(&["t"]).unwrap().consumer, None);
        assert_eq!(
            config(&["t", "-c", "billing"]).unwrap().consumer,
            Some(("billing".into(), sluice_client::CommitMode::default()))
        );
        assert_eq!(
            config(&["t", "--consumer", "b", "--commit-mode", "manual"])
                .unwrap()
                .consumer,
            Some(("b".into(), sluice_client::CommitMode::Manual))
        );
        // A commit mode without a consumer to commit for is a mistake.
        assert!(config(&["t", "--commit-mode", "manual"]).is_err());
        let err = config(&["t", "-c", "Bad Name"]).unwrap_err().to_string();
        assert!(err.contains("invalid consumer name"), "{err}");
    }

    #[test]
    fn max_bytes_and_isolation() {
        assert_eq!(
            config(&["t"]).unwrap().max_bytes,
            FETCH_RESPONSE_BYTES_DEFAULT as u32
        );
        assert_eq!(config(&["t", "-b", "64KiB"]).unwrap().max_bytes, 65536);
        assert_eq!(config(&["t", "--maxbytes", "100"]).unwrap().max_bytes, 100);
        for bad in ["0", "lots"] {
            assert!(config(&["t", "-b", bad]).is_err(), "{bad}");
        }
        assert_eq!(
            config(&["t", "--maxbytes", "16000000"]).unwrap().max_bytes,
            sluice_client::proto::limits::FETCH_RESPONSE_BYTES_MAX as u32
        );
        assert!(config(&["t", "-b", "1KiB", "-g", "g"]).is_err());
        for level in ["read_committed", "read_uncommitted", "read-committed"] {
            assert!(config(&["t", "--isolation", level]).is_ok(), "{level}");
        }
        assert!(config(&["t", "--isolation", "dirty"]).is_err());
    }

    #[test]
    fn fluvio_spellings_of_the_transforms_flags() {
        let line = config(&["t", "--transform", r#"{"uses": "x", "with": {"k": "v"}}"#]).unwrap();
        assert_eq!(line.smartmodules.len(), 1);
        assert_eq!(line.smartmodules[0].module.name(), "x");
        assert_eq!(line.smartmodules[0].params["k"], "v");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.yaml");
        std::fs::write(&file, "transforms:\n  - uses: y\n").unwrap();
        let from_file = config(&["t", "--transforms-file", file.to_str().unwrap()]).unwrap();
        assert_eq!(from_file.smartmodules[0].module.name(), "y");
    }

    #[test]
    fn a_consumer_whose_records_retention_deleted_resumes_at_the_oldest_left() {
        assert_eq!(resume_at(7, 0), (7, None));
        assert_eq!(resume_at(7, 7), (7, None));
        assert_eq!(resume_at(3, 10), (10, Some("3 to 9".into())));
    }

    #[test]
    fn offset_words() {
        let start = |argv: &[&str]| config(argv).unwrap().start;
        assert_eq!(start(&["t", "-o", "earliest"]), StartOffset::Beginning);
        assert_eq!(
            start(&["t", "--offset", "Beginning"]),
            StartOffset::Beginning
        );
        assert_eq!(start(&["t", "-o", "latest"]), StartOffset::End);
        assert_eq!(start(&["t", "-o", "7"]), StartOffset::Absolute(7));
        assert_eq!(start(&["t", "-o", "-3"]), StartOffset::FromEnd(3));
        let err = config(&["t", "-o", "soon"]).unwrap_err().to_string();
        assert!(err.contains("earliest or latest"), "{err}");
    }

    #[test]
    fn templates() {
        let segments = parse_template("{{offset}} {{ key }}={{value}}!").unwrap();
        assert_eq!(
            segments,
            vec![
                Segment::Offset,
                Segment::Text(" ".into()),
                Segment::Key,
                Segment::Text("=".into()),
                Segment::Value,
                Segment::Text("!".into()),
            ]
        );
        let render = Render::Template(segments);
        assert_eq!(rendered(&render, &record(Some("k"), b"v")), "42 k=v!\n");
        assert_eq!(rendered(&render, &record(None, b"v")), "42 null=v!\n");
        let render =
            Render::Template(parse_template("{{partition}} {{timestamp}} {{time}}").unwrap());
        assert_eq!(
            rendered(&render, &record(None, b"v")),
            "1 1700000000123 2023-11-14T22:13:20.123Z\n"
        );
        assert!(
            parse_template("{{nope}}")
                .unwrap_err()
                .to_string()
                .contains("nope")
        );
        assert!(parse_template("{{offset").is_err());
        assert_eq!(
            parse_template("plain").unwrap(),
            vec![Segment::Text("plain".into())]
        );
    }

    #[test]
    fn output_modes() {
        let keyed = record(Some("k"), b"hello");
        let plain = record(None, b"hello");
        assert_eq!(rendered(&config(&["t"]).unwrap().render, &keyed), "hello\n");
        let kv = config(&["t", "-k"]).unwrap().render;
        assert_eq!(rendered(&kv, &keyed), "[k] hello\n");
        assert_eq!(rendered(&kv, &plain), "[null] hello\n");
        let json = config(&["t", "-O", "json"]).unwrap().render;
        let line: serde_json::Value =
            serde_json::from_str(rendered(&json, &keyed).trim_end()).unwrap();
        assert_eq!(line["offset"], 42);
        assert_eq!(line["key"], "k");
        assert_eq!(line["value"], "hello");
        assert_eq!(line["partition"], 1);
        let raw = config(&["t", "-O", "raw"]).unwrap().render;
        let mut out = Vec::new();
        raw.render(&record(None, &[0xff, 0x00]), &mut out);
        assert_eq!(out, vec![0xff, 0x00, b'\n']);
        let format = config(&["t", "-k", "-F", "{{value}}"]).unwrap().render;
        assert_eq!(rendered(&format, &keyed), "hello\n", "-F wins over -k");
    }
}
