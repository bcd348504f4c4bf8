//! `sluice connector run --config FILE`: a source connector run in the
//! foreground, for development (issue 19 adds connectors the cluster runs).
//!
//! A connector reads from outside the cluster and produces to a topic
//! through the idempotent producer, after the SmartModules its file names
//! (every kind, registered names or `.wasm` files, with parameters): records
//! a module drops never leave this process. The only type so far is `http`
//! (a source polling an endpoint every `interval`, see [`http`]). Both file
//! formats of the seed documents and of Fluvio are read, see [`config`].

pub mod config;
pub mod http;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use sluice_client::proto::{Record, TopicSpec, WireError};
use sluice_client::{ProducerConfig, transform::LocalChain};

use crate::Globals;
use config::{ConnectorConfig, Source};

#[derive(Debug, Subcommand)]
pub enum ConnectorCmd {
    /// Run a connector in the foreground until Ctrl-C (or --max-polls).
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The connector's file (the seed's format or Fluvio's, YAML).
    #[arg(long, value_name = "PATH")]
    pub config: PathBuf,
    /// Stop after this many polls of the source (default: run until Ctrl-C).
    #[arg(long, value_name = "N")]
    pub max_polls: Option<u64>,
}

/// How long a failing source waits before its next try at most; it starts
/// at the connector's interval and doubles per failure in a row.
const FAILURE_BACKOFF_MAX: Duration = Duration::from_secs(300);

pub async fn run(cmd: ConnectorCmd, globals: &Globals) -> anyhow::Result<()> {
    match cmd {
        ConnectorCmd::Run(args) => run_source(args, globals).await,
    }
}

async fn run_source(args: RunArgs, globals: &Globals) -> anyhow::Result<()> {
    let config = ConnectorConfig::read(&args.config)?;
    let client = crate::connect(globals).await?;
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
    let Source::Http(source) = &config.source;
    let mut polls = 0u64;
    let (mut sent, mut dropped, mut failures) = (0u64, 0u64, 0u64);
    let mut wait = Duration::ZERO;
    loop {
        if args.max_polls.is_some_and(|max| polls >= max) {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        polls += 1;
        match source.poll().await {
            Ok(value) => {
                let record = Record::new(value);
                let records = match &mut chain {
                    None => vec![record],
                    Some(chain) => tokio::task::block_in_place(|| chain.apply(vec![record]))
                        .with_context(|| {
                            format!("connector {}: a SmartModule failed", config.name)
                        })?,
                };
                if records.is_empty() {
                    dropped += 1;
                }
                for record in records {
                    producer
                        .send(record)
                        .await
                        .with_context(|| format!("connector {}: cannot produce", config.name))?
                        .await
                        .with_context(|| {
                            format!("connector {}: a record was not stored", config.name)
                        })?;
                    sent += 1;
                }
                wait = source.interval;
            }
            Err(e) => {
                failures += 1;
                // Retried: an endpoint that is down for a while must not
                // end the connector, only slow it.
                wait =
                    (wait.max(source.interval) * 2).min(FAILURE_BACKOFF_MAX.max(source.interval));
                tracing::warn!(connector = %config.name, error = %format!("{e:#}"), ?wait, "poll failed");
                eprintln!(
                    "connector {}: poll failed: {e:#}; next try in {wait:?}",
                    config.name
                );
            }
        }
        eprintln!(
            "connector {}: {polls} poll(s), {sent} record(s) sent, {dropped} dropped by SmartModules, {failures} failure(s)",
            config.name
        );
    }
    producer.flush().await?;
    Ok(())
}
