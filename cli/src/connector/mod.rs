//! `sluice connector run --config FILE`: a connector run in the
//! foreground, for development and as the process a node runs for each
//! connector of the cluster (`connector create`, see [`cluster`]).
//!
//! A source reads from outside the cluster and produces to a topic through
//! the idempotent producer, after the SmartModules its file names (every
//! kind, registered names or `.wasm` files, with parameters): records a
//! module drops never leave this process. Sources: `http` (polls an
//! endpoint every `interval`, see [`http`], or reads one answer as a stream,
//! see [`http_stream`]) and `file` (tails a file, see [`file`](mod@file)). A sink
//! reads a topic as the consumer named after it, the modules applied by the
//! node, and commits after each batch is written: `file` (appends to a
//! file) and `sql` (rows of a SQLite or PostgreSQL table, see [`sql`]). A
//! derived topic's copy is [`derive`](mod@derive). Both file formats of the seed
//! documents and of Fluvio are read, see [`config`].

pub mod cluster;
pub mod config;
pub mod derive;
pub mod file;
pub mod http;
pub mod http_stream;
pub mod sql;
mod status;
pub mod tls;
pub mod yaml;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use sluice_client::proto::{Record, TopicSpec, WireError};
use sluice_client::{ProducerConfig, transform::LocalChain};

use crate::Globals;
use config::{ConnectorConfig, Kind, Source};

#[derive(Debug, Subcommand)]
pub enum ConnectorCmd {
    /// Run a connector in the foreground until Ctrl-C (or --max-polls).
    Run(RunArgs),
    /// Have the cluster run a connector: on a live node, restarted when it
    /// ends, moved when its node stops answering.
    Create(cluster::CreateArgs),
    /// The connectors the cluster runs: node, state, records in and out.
    List(crate::OutputArgs),
    /// One connector: where it runs, its counts, its last exit, its file.
    Describe(cluster::NameArgs),
    /// The end of a connector's log, from the node that runs it.
    Logs(cluster::LogsArgs),
    /// Stop a connector and forget it.
    Delete(cluster::NameArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The connector's file (the seed's format or Fluvio's, YAML).
    #[arg(long, value_name = "PATH")]
    pub config: PathBuf,
    /// Stop after this many polls of the source (default: run until Ctrl-C).
    #[arg(long, value_name = "N")]
    pub max_polls: Option<u64>,
    /// Stop once this many records were written (a sink) or sent (a
    /// source; the last batch is sent whole) (default: run until Ctrl-C).
    #[arg(long, value_name = "N")]
    pub max_records: Option<u64>,
    /// Write the connector's counts to this file (JSON), as they change:
    /// how a node's supervisor learns them.
    #[arg(long, value_name = "PATH", hide = true)]
    pub status_file: Option<PathBuf>,
    /// Exit when the process that started this one ends (a node running
    /// the connector): a connector moved away from a killed node must not
    /// keep running there.
    #[arg(long, hide = true)]
    pub exit_with_parent: bool,
}

use crate::timeouts::CONNECTOR_FAILURE_BACKOFF_MAX as FAILURE_BACKOFF_MAX;

pub async fn run(cmd: ConnectorCmd, globals: &Globals) -> anyhow::Result<()> {
    match cmd {
        ConnectorCmd::Run(args) => {
            if args.exit_with_parent {
                status::exit_with_parent();
            }
            let config = ConnectorConfig::read(&args.config)?;
            let client = crate::connect(globals).await?;
            match config.kind {
                Kind::Sink(ref sink) => run_sink(&args, &config, sink, &client).await,
                Kind::Derived { ref from } => run_derived(&args, &config, from, &client).await,
                Kind::Source(_) => run_source(args, config, client).await,
            }
        }
        ConnectorCmd::Create(args) => cluster::create(args, globals).await,
        ConnectorCmd::List(out) => cluster::list(out, globals).await,
        ConnectorCmd::Describe(args) => cluster::describe(args, globals).await,
        ConnectorCmd::Logs(args) => cluster::logs(args, globals).await,
        ConnectorCmd::Delete(args) => cluster::delete(args, globals).await,
    }
}

/// A source's next records: one per http answer, one per file line.
enum Running {
    Http(http::HttpSource),
    HttpStream(http_stream::Stream),
    File(file::Tail),
}

impl Running {
    async fn poll(&mut self, name: &str) -> anyhow::Result<Vec<Vec<u8>>> {
        match self {
            Running::Http(source) => source.poll().await.map(|v| vec![v]),
            Running::HttpStream(stream) => stream.poll().await,
            Running::File(tail) => {
                let (lines, notes) = tail.poll().await?;
                for note in notes {
                    eprintln!("connector {name}: {note}");
                }
                Ok(lines)
            }
        }
    }

    /// The last poll's records are stored.
    fn acknowledged(&mut self) -> anyhow::Result<()> {
        match self {
            Running::Http(_) | Running::HttpStream(_) => Ok(()),
            Running::File(tail) => tail.acknowledged(),
        }
    }

    fn interval(&self) -> Duration {
        match self {
            Running::Http(source) => source.interval,
            Running::HttpStream(stream) => stream.interval(),
            Running::File(tail) => tail.interval(),
        }
    }
}

async fn run_source(
    args: RunArgs,
    config: ConnectorConfig,
    client: sluice_client::Client,
) -> anyhow::Result<()> {
    if config.create_topic {
        match client.create_topic(TopicSpec::new(&config.topic)).await {
            Ok(_) => eprintln!(
                "connector {}: created topic {:?}",
                config.name, config.topic
            ),
            Err(e) if matches!(e.wire_error(), Some(WireError::TopicExists { .. })) => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot create topic {:?}", config.topic));
            }
        }
    }
    let producer = client
        .producer(&config.topic, ProducerConfig::default())
        .await
        .with_context(|| {
            format!(
                "connector {}: cannot produce to topic {:?} (create it, or set create_topic: true)",
                config.name, config.topic
            )
        })?;
    let mut chain = if config.transforms.is_empty() {
        None
    } else {
        Some(
            LocalChain::load(&client, config.transforms.clone())
                .await
                .with_context(|| {
                    format!("connector {}: cannot load its SmartModules", config.name)
                })?,
        )
    };
    let mut source = match config.kind {
        Kind::Source(Source::Http(http)) if http.stream.is_some() => {
            Running::HttpStream(http_stream::Stream::new(http))
        }
        Kind::Source(Source::Http(http)) => Running::Http(http),
        Kind::Source(Source::File(file)) => Running::File(file::Tail::new(file)?),
        Kind::Sink(_) | Kind::Derived { .. } => unreachable!("run in run_sink, run_derived"),
    };
    let mut status = status::StatusFile::new(args.status_file.clone());
    let mut polls = 0u64;
    let (mut sent, mut dropped, mut failures) = (0u64, 0u64, 0u64);
    let mut reported = (0u64, 0u64, 0u64);
    let mut wait = Duration::ZERO;
    loop {
        if args.max_polls.is_some_and(|max| polls >= max)
            || args.max_records.is_some_and(|max| sent >= max)
        {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        polls += 1;
        match source.poll(&config.name).await {
            Ok(values) => {
                let read = values.len() as u64;
                status.tally.records_in += read;
                let input: Vec<Record> = values.into_iter().map(Record::new).collect();
                let records = match &mut chain {
                    None => input,
                    Some(chain) => tokio::task::block_in_place(|| chain.apply(input))
                        .with_context(|| {
                            format!("connector {}: a SmartModule failed", config.name)
                        })?,
                };
                dropped += read.saturating_sub(records.len() as u64);
                let mut deliveries = Vec::with_capacity(records.len());
                for record in records {
                    deliveries.push(
                        producer.send(record).await.with_context(|| {
                            format!("connector {}: cannot produce", config.name)
                        })?,
                    );
                }
                for delivery in deliveries {
                    delivery.await.with_context(|| {
                        format!("connector {}: a record was not stored", config.name)
                    })?;
                    sent += 1;
                }
                // Only now may the source move on for good.
                source.acknowledged()?;
                wait = source.interval();
            }
            Err(e) => {
                failures += 1;
                // Retried: an endpoint that is down for a while must not
                // end the connector, only slow it.
                let interval = source.interval();
                wait = (wait.max(interval) * 2).min(FAILURE_BACKOFF_MAX.max(interval));
                tracing::warn!(connector = %config.name, error = %format!("{e:#}"), ?wait, "poll failed");
                eprintln!(
                    "connector {}: poll failed: {e:#}; next try in {wait:?}",
                    config.name
                );
            }
        }
        // A line when something happened, and one at the end: a source
        // polled every 100 ms with nothing new would print ten a second.
        status.tally.polls = polls;
        (
            status.tally.records_out,
            status.tally.dropped,
            status.tally.failures,
        ) = (sent, dropped, failures);
        status.write().await;
        let tally = (sent, dropped, failures);
        if tally != reported || args.max_polls.is_some_and(|max| polls >= max) {
            reported = tally;
            eprintln!(
                "connector {}: {polls} poll(s), {sent} record(s) sent, {dropped} dropped by SmartModules, {failures} failure(s)",
                config.name
            );
        }
    }
    producer.flush().await?;
    Ok(())
}

/// Where a running sink writes.
enum Target<'a> {
    File(file::SinkFile),
    Sql(&'a sql::SqlSink, sql::Writer),
}

impl Target<'_> {
    /// Writes a batch durably (fsynced file, committed transaction);
    /// returns the records written and skipped.
    async fn write(
        &mut self,
        batch: &[sluice_client::proto::ConsumerRecord],
    ) -> anyhow::Result<(u64, u64)> {
        match self {
            Target::File(out) => {
                let values: Vec<&[u8]> = batch.iter().map(|r| r.value.as_slice()).collect();
                out.write(&values).await?;
                Ok((batch.len() as u64, 0))
            }
            Target::Sql(sink, writer) => {
                let values: Vec<(u32, u64, &[u8])> = batch
                    .iter()
                    .map(|r| (r.partition, r.offset, r.value.as_slice()))
                    .collect();
                writer.write_batch(sink, &values).await
            }
        }
    }
}

/// Reads every partition of the topic from where the consumer named after
/// the connector committed (the start, the first time), writes each batch
/// durably (appended to the file and fsynced, or one transaction of rows),
/// then commits: at least once.
async fn run_sink(
    args: &RunArgs,
    config: &ConnectorConfig,
    sink: &config::Sink,
    client: &sluice_client::Client,
) -> anyhow::Result<()> {
    use sluice_client::proto::{FetchRequest, StartOffset};
    let name = &config.name;
    let info = client
        .describe_topic(&config.topic)
        .await
        .with_context(|| format!("connector {name}: cannot read topic {:?}", config.topic))?;
    let committer = sluice_client::OffsetCommitter::open(
        client,
        name,
        &config.topic,
        sluice_client::CommitMode::Manual,
    )
    .await
    .with_context(|| format!("connector {name}: cannot read its committed offsets"))?;
    let requests = (0..info.spec.partitions)
        .map(|p| {
            let start = committer
                .committed(p)
                .map_or(StartOffset::Beginning, StartOffset::Absolute);
            let mut request = FetchRequest::new(&config.topic, p).start(start).follow();
            request.smartmodules = config.transforms.clone();
            request
        })
        .collect();
    let mut consumer = client.consume_many(requests);
    let (mut out, into) = match sink {
        config::Sink::File(f) => (
            Target::File(file::SinkFile::open(f).await?),
            f.path.display().to_string(),
        ),
        config::Sink::Sql(s) => {
            let writer = sql::Writer::open(s)
                .await
                .with_context(|| format!("connector {name}: cannot write its table"))?;
            (
                Target::Sql(s, writer),
                format!("table {:?} of {}", s.table, s.database),
            )
        }
    };
    let (mut written, mut skipped) = (0u64, 0u64);
    let mut status = status::StatusFile::new(args.status_file.clone());
    let mut read_to: std::collections::BTreeMap<u32, u64> = (0..info.spec.partitions)
        .map(|p| (p, committer.committed(p).unwrap_or(0)))
        .collect();
    eprintln!(
        "connector {name}: writing topic {:?} to {into}",
        config.topic
    );
    while args.max_records.is_none_or(|max| written < max) {
        let batch = tokio::select! {
            batch = consumer.next_batch() => batch,
            _ = tokio::signal::ctrl_c() => break,
        };
        let Some(batch) = batch.with_context(|| format!("connector {name}: cannot read"))? else {
            break;
        };
        let (wrote, skips) = out.write(&batch).await?;
        for r in &batch {
            committer.processed(r.partition, r.offset);
        }
        committer
            .commit()
            .await
            .with_context(|| format!("connector {name}: cannot commit its offsets"))?;
        status.tally.records_in += batch.len() as u64;
        (written, skipped) = (written + wrote, skipped + skips);
        for r in &batch {
            read_to.insert(r.partition, r.offset + 1);
        }
        status.tally.records_out = written;
        status.tally.failures = skipped;
        if status.lag_due() {
            status.tally.lag = sink_lag(client, &config.topic, &read_to).await;
        }
        status.write().await;
        eprintln!("connector {name}: {written} record(s) written, {skipped} skipped");
    }
    committer.close().await?;
    Ok(())
}

/// Records of `topic` committed but not yet read, by the positions in
/// `read_to`; `None` if the partitions cannot be listed now.
async fn sink_lag(
    client: &sluice_client::Client,
    topic: &str,
    read_to: &std::collections::BTreeMap<u32, u64>,
) -> Option<u64> {
    let partitions = client.list_partitions(Some(topic)).await.ok()?;
    Some(
        partitions
            .iter()
            .map(|p| {
                let at = read_to.get(&p.partition).copied().unwrap_or(0);
                p.committed_offset.saturating_sub(at)
            })
            .sum(),
    )
}

/// Copies topic `from` into the connector's topic (see [`derive`](mod@derive)) until
/// Ctrl-C or a failure, writing the counts to the status file as they move.
async fn run_derived(
    args: &RunArgs,
    config: &ConnectorConfig,
    from: &str,
    client: &sluice_client::Client,
) -> anyhow::Result<()> {
    use std::sync::atomic::Ordering;
    let name = &config.name;
    let counts = std::sync::Arc::new(derive::Counts::default());
    eprintln!(
        "connector {name}: deriving topic {:?} from {from:?}",
        config.topic
    );
    let copy = derive::run(
        client,
        name,
        from,
        &config.topic,
        &config.transforms,
        counts.clone(),
    );
    let mut copy = std::pin::pin!(copy);
    let mut status = status::StatusFile::new(args.status_file.clone());
    let mut reported = (0, 0);
    loop {
        let tick = tokio::time::sleep(crate::timeouts::CONNECTOR_STATUS_INTERVAL);
        tokio::select! {
            done = &mut copy => return done,
            _ = tokio::signal::ctrl_c() => return Ok(()),
            () = tick => {}
        }
        let c = &counts;
        status.tally.records_in = c.records_in.load(Ordering::Relaxed);
        status.tally.records_out = c.records_out.load(Ordering::Relaxed);
        status.tally.dropped = c.dropped.load(Ordering::Relaxed);
        status.tally.failures = c.refused.load(Ordering::Relaxed);
        status.write().await;
        let now = (status.tally.records_in, status.tally.records_out);
        if now != reported {
            reported = now;
            eprintln!(
                "connector {name}: {} record(s) read, {} written, {} dropped by SmartModules, \
                 {} append(s) found the topic moved on",
                now.0, now.1, status.tally.dropped, status.tally.failures
            );
        }
    }
}
