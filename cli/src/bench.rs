//! `sluice bench produce | consume`: throughput and latency against a running
//! cluster, through the same client and code paths users have. Latencies go
//! into an HDR histogram (microsecond resolution); `-O json` for machines.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use serde::Serialize;
use sluice_client::proto::limits::FETCH_RESPONSE_BYTES_DEFAULT;
use sluice_client::proto::{FetchRequest, ReadFrom, Record, StartOffset, TopicSpec};
use sluice_client::{ClientError, ProducerConfig};
use tokio::sync::Mutex;

use crate::Globals;
use crate::output::OutputFormat;
use crate::units::{parse_duration, parse_nonzero_size};

/// Acknowledgements one bench producer waits for at once.
const ACKS_WAITING_MAX: usize = 65_536;
/// Default of `bench produce --window`: NATS's clients' default of pending
/// asynchronous publishes, so that the two measure latency alike. In one
/// noisy sweep (BENCHMARKS.md) it kept one partition's throughput and cut
/// its ack p50 from 224-375 ms (no window) to 16-22 ms.
const PRODUCE_WINDOW_RECORDS_DEFAULT: usize = 256;
/// Acknowledgements counted before the progress bar moves (it is shared by
/// every producer; moving it per record would cost at 100,000 records/s).
const PROGRESS_STEP_RECORDS: u64 = 256;

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Produce records and measure acknowledged throughput and ack latency.
    Produce(ProduceBench),
    /// Read a topic from the beginning and measure throughput.
    Consume(Box<ConsumeBench>),
}

#[derive(Debug, Args)]
pub struct ProduceBench {
    /// Topic to write to; created with --partitions/--replication if absent.
    #[arg(long, default_value = "bench")]
    pub topic: String,
    #[arg(long, default_value_t = 100_000)]
    pub records: u64,
    #[arg(long, value_parser = parse_nonzero_size, default_value = "1KiB")]
    pub record_size: usize,
    #[arg(long, default_value_t = 1)]
    pub partitions: u32,
    #[arg(long, default_value_t = 1)]
    pub replication: u32,
    /// Concurrent producers, each with its own batching and in-flight window.
    #[arg(long, default_value_t = 1)]
    pub producers: u32,
    /// Largest batch, in bytes of keys and values. Large by default so that
    /// a whole `--window` of 1 KiB records fits one batch (BENCHMARKS.md,
    /// "Fewer, larger batches").
    #[arg(long, value_parser = parse_nonzero_size, default_value = "256KiB")]
    pub batch_size: usize,
    /// How long a record may wait for others to fill its batch (0: sent
    /// when its partition has a free slot; batches grow while none is free).
    #[arg(long, value_parser = parse_duration, default_value = "0ms")]
    pub linger: Duration,
    /// Records each producer lets wait for their ack; `send` waits for an
    /// ack beyond it (NATS's clients stop at 256 pending publishes). 0: only
    /// the producer's buffer bounds them (32 MiB, Kafka's `buffer.memory`),
    /// and ack latency at full speed is mostly that queue.
    #[arg(long, default_value_t = PRODUCE_WINDOW_RECORDS_DEFAULT)]
    pub window: usize,
    /// Batches each producer keeps on the wire at once, across partitions
    /// (the client library's `max_in_flight`). With `--window` bounding the
    /// records in flight, fewer slots mean fewer, fuller batches, so fewer
    /// Raft rounds: 1 measured best at 1, 8 and 64 partitions
    /// (BENCHMARKS.md, "Fewer, larger batches").
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_in_flight: u16,
    /// How long a batch may be retried before its records fail (default:
    /// the producer's `delivery_timeout`, 30 s); the run stops at the first
    /// record that fails, saying why.
    #[arg(long, value_parser = parse_duration)]
    pub delivery_timeout: Option<Duration>,
    /// Send at this many records/s in all (for latency at a fixed load);
    /// default: as fast as acknowledgements allow.
    #[arg(long, value_name = "RECORDS_PER_SEC")]
    pub rate: Option<u64>,
    #[arg(short = 'O', long = "output", value_enum, default_value = "table")]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ConsumeBench {
    #[arg(long, default_value = "bench")]
    pub topic: String,
    #[arg(short = 'p', long, default_value_t = 0)]
    pub partition: u32,
    /// Stop after this many records (default: everything stored now).
    #[arg(long)]
    pub records: Option<u64>,
    #[arg(long, value_enum, value_name = "leader|follower|any")]
    pub read_from: Option<crate::consume::ReadFromArg>,
    #[command(flatten)]
    pub smartmodules: crate::smartmodule_flags::SmartModuleArgs,
    #[arg(short = 'O', long = "output", value_enum, default_value = "table")]
    pub output: OutputFormat,
}

/// What a run measured; field names are a stable interface.
#[derive(Debug, Serialize)]
struct Report {
    what: &'static str,
    records: u64,
    bytes: u64,
    seconds: f64,
    records_per_second: f64,
    megabytes_per_second: f64,
    /// Produce: send-to-ack latency per record. Consume: wait per fetched batch.
    latency_us: Percentiles,
    /// Produce: acknowledged records per partition, and how even they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    partitions: Option<PartitionSpread>,
}

/// How a produce run's records spread over the topic's partitions.
#[derive(Debug, Serialize)]
struct PartitionSpread {
    /// Acknowledged records, by partition (every partition of the topic,
    /// those that got none included).
    records: std::collections::BTreeMap<u32, u64>,
    /// The busiest partition's records over the mean: 1.0 is perfectly even.
    max_over_mean: f64,
}

impl PartitionSpread {
    fn of(partitions: u32, counts: &std::collections::HashMap<u32, u64>) -> Self {
        let records: std::collections::BTreeMap<u32, u64> = (0..partitions.max(1))
            .map(|p| (p, counts.get(&p).copied().unwrap_or(0)))
            .collect();
        let total: u64 = records.values().sum();
        let max = records.values().copied().max().unwrap_or(0);
        let mean = total as f64 / records.len() as f64;
        Self {
            records,
            max_over_mean: if mean > 0.0 { max as f64 / mean } else { 0.0 },
        }
    }

    fn line(&self) -> String {
        let min = self.records.values().copied().min().unwrap_or(0);
        let max = self.records.values().copied().max().unwrap_or(0);
        format!(
            "partitions: {}, records per partition min {min}, max {max} (max/mean {:.2})\n",
            self.records.len(),
            self.max_over_mean
        )
    }
}

#[derive(Debug, Serialize)]
struct Percentiles {
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        Self {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

fn print(report: &Report, output: OutputFormat) -> anyhow::Result<()> {
    use std::io::Write;
    match output {
        OutputFormat::Table => {
            let l = &report.latency_us;
            let ms = |us: u64| us as f64 / 1000.0;
            let mut text = format!(
                "{}: {} records ({:.1} MB) in {:.2} s: {:.0} records/s, {:.1} MB/s\nlatency: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms\n",
                report.what,
                report.records,
                report.bytes as f64 / 1e6,
                report.seconds,
                report.records_per_second,
                report.megabytes_per_second,
                ms(l.p50),
                ms(l.p99),
                ms(l.p999),
                ms(l.max)
            );
            if let Some(spread) = &report.partitions {
                text += &spread.line();
            }
            // A closed stdout (`| head -1`) is not an error worth a panic.
            match std::io::stdout().lock().write_all(text.as_bytes()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(()),
            }
        }
        other => crate::output::print_structured(report, other),
    }
}

fn report(
    what: &'static str,
    records: u64,
    bytes: u64,
    elapsed: Duration,
    h: &Histogram<u64>,
) -> Report {
    let seconds = elapsed.as_secs_f64().max(1e-9);
    Report {
        what,
        records,
        bytes,
        seconds,
        records_per_second: records as f64 / seconds,
        megabytes_per_second: bytes as f64 / seconds / 1e6,
        latency_us: Percentiles::of(h),
        partitions: None,
    }
}

pub async fn run(cmd: BenchCmd, globals: &Globals) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Produce(args) => produce(args, globals).await,
        BenchCmd::Consume(args) => consume(*args, globals).await,
    }
}

async fn produce(args: ProduceBench, globals: &Globals) -> anyhow::Result<()> {
    let client = crate::connect(globals).await?;
    let spec = TopicSpec {
        partitions: args.partitions,
        replication: args.replication,
        ..TopicSpec::new(&args.topic)
    };
    // Created only if missing: every create, even a refused one, is a
    // replicated controller entry. An existing topic keeps its own
    // partition count, which may differ from the flag's.
    let partitions = match client.describe_topic(&args.topic).await {
        Ok(existing) => existing.spec.partitions,
        Err(_) => {
            match client.create_topic(spec).await {
                Ok(_)
                | Err(ClientError::Server(sluice_client::proto::WireError::TopicExists {
                    ..
                })) => {}
                Err(e) => return Err(e).context("cannot create the bench topic"),
            }
            args.partitions
        }
    };
    let per_producer = args.records / u64::from(args.producers.max(1));
    let progress = crate::progress::counter(
        per_producer * u64::from(args.producers.max(1)),
        "records acknowledged",
    );
    let latencies = Arc::new(Mutex::new(histogram()));
    let counts = Arc::new(Mutex::new(std::collections::HashMap::<u32, u64>::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.producers.max(1) {
        let config = ProducerConfig {
            batch_size_bytes: args.batch_size,
            linger: args.linger,
            max_in_flight: usize::from(args.max_in_flight),
            delivery_timeout: args
                .delivery_timeout
                .unwrap_or(ProducerConfig::default().delivery_timeout),
            ..ProducerConfig::default()
        };
        let producer = client.producer(&args.topic, config).await?;
        let (latencies, counts, size) = (latencies.clone(), counts.clone(), args.record_size);
        let window = args.window;
        let progress = progress.clone();
        // Each producer's share of the rate, as the gap between two sends.
        let gap = args
            .rate
            .filter(|r| *r > 0)
            .map(|r| Duration::from_secs_f64(f64::from(args.producers.max(1)) / r as f64));
        tasks.push(tokio::spawn(async move {
            // Acks are awaited as they come, beside the sending loop, so a
            // record's latency ends when its ack arrives, not when we look.
            let (tx, mut rx) = tokio::sync::mpsc::channel::<(
                Instant,
                sluice_client::DeliveryFuture,
                Option<tokio::sync::OwnedSemaphorePermit>,
            )>(ACKS_WAITING_MAX);
            let window = (window > 0).then(|| Arc::new(tokio::sync::Semaphore::new(window)));
            let waiter = tokio::spawn(async move {
                let mut local = histogram();
                let mut by_partition = std::collections::HashMap::<u32, u64>::new();
                let mut unshown = 0;
                while let Some((sent, ack, permit)) = rx.recv().await {
                    let stored = ack
                        .await
                        .context("bench produce stopped at a record that was not acknowledged")?;
                    drop(permit);
                    local.saturating_record(sent.elapsed().as_micros() as u64);
                    *by_partition.entry(stored.partition).or_default() += 1;
                    unshown += 1;
                    if unshown == PROGRESS_STEP_RECORDS {
                        progress.inc(unshown);
                        unshown = 0;
                    }
                }
                progress.inc(unshown);
                latencies.lock().await.add(&local).expect("same bounds");
                let mut counts = counts.lock().await;
                for (p, n) in by_partition {
                    *counts.entry(p).or_default() += n;
                }
                anyhow::Ok(())
            });
            let mut next = Instant::now();
            for _ in 0..per_producer {
                if let Some(gap) = gap {
                    tokio::time::sleep_until(next.into()).await;
                    next += gap;
                }
                let permit = match &window {
                    Some(w) => Some(w.clone().acquire_owned().await?),
                    None => None,
                };
                let sent = Instant::now();
                let delivery = producer.send(Record::new(vec![b'x'; size])).await?;
                if tx.send((sent, delivery, permit)).await.is_err() {
                    // The ack task stopped at a record that was not
                    // acknowledged: its error ends the run, which would
                    // otherwise go on sending records that fail one
                    // delivery timeout after another (every node down).
                    waiter.await.context("the ack task failed")??;
                    anyhow::bail!("the ack task ended before every record was acknowledged");
                }
            }
            producer.flush().await?;
            drop(tx);
            waiter.await.context("the ack task failed")?
        }));
    }
    for t in tasks {
        t.await.context("a producer task failed")??;
    }
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    let records = per_producer * u64::from(args.producers.max(1));
    let h = latencies.lock().await;
    let mut measured = report(
        "produce",
        records,
        records * args.record_size as u64,
        elapsed,
        &h,
    );
    measured.partitions = Some(PartitionSpread::of(partitions, &*counts.lock().await));
    print(&measured, args.output)
}

async fn consume(args: ConsumeBench, globals: &Globals) -> anyhow::Result<()> {
    let client = crate::connect(globals).await?;
    let read_from = match args.read_from {
        Some(crate::consume::ReadFromArg::Follower) => ReadFrom::Follower,
        Some(crate::consume::ReadFromArg::Any) => ReadFrom::Any,
        _ => ReadFrom::Leader,
    };
    let request = FetchRequest {
        topic: args.topic.clone(),
        partition: args.partition,
        start: StartOffset::Beginning,
        end_offset: None,
        max_records: args.records,
        follow: false,
        max_bytes: FETCH_RESPONSE_BYTES_DEFAULT as u32,
        read_from,
        replica: None,
        smartmodules: args.smartmodules.chain()?,
    };
    let progress = crate::progress::spinner("consuming");
    let mut h = histogram();
    let started = Instant::now();
    let mut fetch = client.fetch(request).await?;
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut waited = Instant::now();
    // Records are counted where the frames hold them (`next_batch_with`):
    // what is measured is the cluster and the wire, not copies in this client.
    while let Some((n, size)) = fetch
        .next_batch_with(|batch| {
            let size: usize = batch.iter().map(|r| r.size_bytes()).sum();
            (batch.len() as u64, size as u64)
        })
        .await?
    {
        h.saturating_record(waited.elapsed().as_micros() as u64);
        records += n;
        bytes += size;
        waited = Instant::now();
    }
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    print(&report("consume", records, bytes, elapsed, &h), args.output)
}
