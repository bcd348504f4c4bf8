//! `jetstream-bench produce | consume`: what `sluice bench produce | consume`
//! measures, against NATS JetStream, printing the same JSON fields
//! (`records`, `seconds`, `records_per_second`, `latency_us`), so that
//! `scripts/bench-peers.sh` can set the two side by side.
//!
//! The mapping: a Sluice topic of N partitions is N JetStream streams
//! (`<topic>-<i>`, subject `<topic>.<i>`, file storage, the same replica
//! count); producers spread records over them round-robin, each keeping at
//! most `--in-flight` publishes awaiting their ack (NATS's own client default
//! for asynchronous publishing is 256). A record's latency runs from the
//! moment it is handed to the client to its ack, as in `sluice bench`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, stream::StorageType};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::{Mutex, Semaphore};

#[derive(Parser)]
struct Cli {
    /// The JetStream cluster (any of its servers).
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    url: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Publish and measure acknowledged throughput and ack latency.
    Produce {
        #[arg(long, default_value = "bench")]
        topic: String,
        #[arg(long, default_value_t = 100_000)]
        records: u64,
        #[arg(long, default_value_t = 1024)]
        record_size: usize,
        /// Streams standing in for partitions.
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        #[arg(long, default_value_t = 3)]
        replication: usize,
        #[arg(long, default_value_t = 4)]
        producers: u32,
        /// Publishes awaiting their ack, per producer.
        #[arg(long, default_value_t = 256)]
        in_flight: usize,
    },
    /// Delete the streams `produce` made for a topic.
    Delete {
        #[arg(long, default_value = "bench")]
        topic: String,
        #[arg(long, default_value_t = 1)]
        partitions: u32,
    },
    /// Read one stream from its start and measure throughput.
    Consume {
        #[arg(long, default_value = "bench")]
        topic: String,
        /// Which stream (`<topic>-<partition>`).
        #[arg(long, default_value_t = 0)]
        partition: u32,
    },
}

#[derive(Serialize)]
struct Report {
    what: &'static str,
    records: u64,
    bytes: u64,
    seconds: f64,
    records_per_second: f64,
    megabytes_per_second: f64,
    latency_us: Percentiles,
}

#[derive(Serialize)]
struct Percentiles {
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

fn report(
    what: &'static str,
    records: u64,
    bytes: u64,
    took: Duration,
    h: &Histogram<u64>,
) -> Report {
    let seconds = took.as_secs_f64().max(1e-9);
    Report {
        what,
        records,
        bytes,
        seconds,
        records_per_second: records as f64 / seconds,
        megabytes_per_second: bytes as f64 / seconds / 1e6,
        latency_us: Percentiles {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        },
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let client = async_nats::connect(&cli.url)
        .await
        .with_context(|| format!("cannot reach NATS at {}", cli.url))?;
    let js = jetstream::new(client);
    let report = match cli.cmd {
        Cmd::Produce {
            topic,
            records,
            record_size,
            partitions,
            replication,
            producers,
            in_flight,
        } => {
            produce(
                &js,
                &topic,
                records,
                record_size,
                partitions,
                replication,
                producers,
                in_flight,
            )
            .await?
        }
        Cmd::Consume { topic, partition } => consume(&js, &topic, partition).await?,
        Cmd::Delete { topic, partitions } => {
            for p in 0..partitions {
                js.delete_stream(format!("{topic}-{p}"))
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot delete stream {topic}-{p}: {e}"))?;
            }
            return Ok(());
        }
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn produce(
    js: &jetstream::Context,
    topic: &str,
    records: u64,
    record_size: usize,
    partitions: u32,
    replication: usize,
    producers: u32,
    in_flight: usize,
) -> anyhow::Result<Report> {
    for p in 0..partitions {
        js.get_or_create_stream(jetstream::stream::Config {
            name: format!("{topic}-{p}"),
            subjects: vec![format!("{topic}.{p}")],
            num_replicas: replication,
            storage: StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("cannot create stream {topic}-{p}: {e}"))?;
    }
    let latencies = Arc::new(Mutex::new(histogram()));
    let per_producer = records / u64::from(producers.max(1));
    let payload = bytes::Bytes::from(vec![b'x'; record_size]);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..producers.max(1) {
        let (js, latencies, payload, topic) = (
            js.clone(),
            latencies.clone(),
            payload.clone(),
            topic.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let window = Arc::new(Semaphore::new(in_flight));
            let mut acks = Vec::with_capacity(per_producer as usize);
            for i in 0..per_producer {
                let permit = window.clone().acquire_owned().await?;
                let partition = (u64::from(w) + i) % u64::from(partitions);
                let sent = Instant::now();
                let ack = js
                    .publish(format!("{topic}.{partition}"), payload.clone())
                    .await
                    .map_err(|e| anyhow::anyhow!("publish: {e}"))?;
                acks.push(tokio::spawn(async move {
                    let result = ack.await.map(|_| sent.elapsed());
                    drop(permit);
                    result
                }));
            }
            let mut local = histogram();
            for ack in acks {
                let took = ack.await?.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
                local.saturating_record(took.as_micros() as u64);
            }
            latencies.lock().await.add(&local).expect("same bounds");
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let took = started.elapsed();
    let total = per_producer * u64::from(producers.max(1));
    let h = latencies.lock().await;
    Ok(report(
        "produce",
        total,
        total * record_size as u64,
        took,
        &h,
    ))
}

async fn consume(js: &jetstream::Context, topic: &str, partition: u32) -> anyhow::Result<Report> {
    let name = format!("{topic}-{partition}");
    let mut stream = js
        .get_stream(&name)
        .await
        .map_err(|e| anyhow::anyhow!("no stream {name}: {e}"))?;
    let stored = stream
        .info()
        .await
        .map_err(|e| anyhow::anyhow!("stream info: {e}"))?
        .state
        .messages;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await
        .map_err(|e| anyhow::anyhow!("consumer: {e}"))?;
    let started = Instant::now();
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| anyhow::anyhow!("messages: {e}"))?;
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut waits = histogram();
    let mut waited = Instant::now();
    while records < stored {
        let message = messages
            .next()
            .await
            .context("the stream ended early")?
            .map_err(|e| anyhow::anyhow!("read: {e}"))?;
        waits.saturating_record(waited.elapsed().as_micros() as u64);
        waited = Instant::now();
        records += 1;
        bytes += message.payload.len() as u64;
    }
    Ok(report("consume", records, bytes, started.elapsed(), &waits))
}
