//! `sluice produce TOPIC`: records from stdin or a file, one per line (or
//! the whole input as one with `--raw`), batched by the client's producer.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::ProgressBar;
use sluice_client::proto::limits::{
    RECORD_OVERHEAD_BYTES_MAX, RECORD_SIZE_BYTES_DEFAULT, RECORD_SIZE_BYTES_MAX,
};
use sluice_client::proto::{Record, RecordHeader};
use sluice_client::transform::LocalChain;
use sluice_client::{ClientError, DeliveryFuture, Producer, ProducerConfig};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};
use tokio::sync::mpsc;

use crate::Globals;
use crate::units::{parse_duration, parse_nonzero_size};

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Topic to write to.
    pub topic: String,
    /// Read records from this file instead of stdin (shows progress on a terminal).
    #[arg(short = 'f', long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Send the whole input as one record instead of one record per line.
    #[arg(long, conflicts_with = "key_separator")]
    pub raw: bool,
    /// Key of every record.
    #[arg(long, value_name = "K", conflicts_with = "key_separator")]
    pub key: Option<String>,
    /// Split each line at the first SEP into key and value.
    #[arg(long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// Send every record to this partition (default: by key hash, else round-robin per batch).
    #[arg(short = 'p', long, value_name = "N")]
    pub partition: Option<u32>,
    /// How long a record may wait for others to fill its batch. With the
    /// default 0, a record leaves at once when its partition has a free
    /// in-flight slot; while it has none, records gather into the next batch.
    #[arg(long, value_parser = parse_duration, default_value = "0ms", value_name = "DURATION")]
    pub linger: Duration,
    /// Bytes of records per batch.
    #[arg(long, value_parser = parse_nonzero_size, default_value = "16KiB", value_name = "SIZE")]
    pub batch_size: usize,
    /// at-least-once (the default): a batch that fails is resent until
    /// `delivery timeout` (30 s); the producer is idempotent, so a resent
    /// batch is stored once. at-most-once: never resent; a failure fails
    /// its records at once (they may or may not be stored).
    #[arg(long, value_enum, default_value = "at-least-once")]
    pub delivery_semantic: DeliverySemantic,
    /// With at-least-once: how long after a record is read it may wait and
    /// be resent before it fails (Kafka's `delivery.timeout.ms`; default
    /// 30 s). At the first record that fails, produce stops reading its
    /// input and says where.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub delivery_timeout: Option<Duration>,
    /// Where records without a key go: round-robin, the next partition for
    /// every record (Fluvio's behaviour, the default here); sticky, one
    /// partition until its batch closes (full, or sent when its linger
    /// passes): fuller batches, the client library's default.
    #[arg(long, value_enum, default_value = "round-robin")]
    pub keyless: KeylessArg,
    /// Accepted for Fluvio's scripts and changes nothing: a record is
    /// acknowledged only once committed (on a majority of replicas, fsynced),
    /// and consumers only ever see committed records.
    #[arg(long, value_enum, value_name = "read_committed|read_uncommitted")]
    pub isolation: Option<Isolation>,
    /// The largest record this producer sends, framing included, and the
    /// most bytes of one batch (Fluvio's flag; default 1 MiB, as Fluvio's
    /// and Kafka's): a larger record is refused before anything is sent. The
    /// cluster's own limit (records and batches of 16 MiB) still applies
    /// when this is larger.
    #[arg(long, value_parser = parse_nonzero_size, value_name = "SIZE")]
    pub max_request_size: Option<usize>,
    /// Send batches compressed: none, gzip, snappy, lz4 or zstd. Default:
    /// the topic's compression type (uncompressed for `any`). A topic whose
    /// type is a codec takes that codec only.
    #[arg(long, value_parser = sluice_client::proto::Compression::parse, value_name = "CODEC")]
    pub compression: Option<sluice_client::proto::Compression>,
    /// Give every record this header (repeat for more, in order; a name may
    /// repeat). Consumers see them with `-O json` or `{{header:NAME}}` in
    /// `--format`. SmartModules do not see headers; their outputs keep their
    /// input's.
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse_header)]
    pub headers: Vec<RecordHeader>,
    /// SmartModules applied here, in the producer, before records are sent.
    #[command(flatten)]
    pub smartmodules: crate::smartmodule_flags::SmartModuleArgs,
}

/// One `--header NAME=VALUE`, checked against the cluster's bounds.
fn parse_header(arg: &str) -> Result<RecordHeader, String> {
    let Some((name, value)) = arg.split_once('=') else {
        return Err(format!(
            "{arg:?} has no '='; write the header as NAME=VALUE (e.g. --header trace-id=4bf92f35)"
        ));
    };
    let header = RecordHeader::new(name, value);
    sluice_client::proto::headers::check_owned(std::slice::from_ref(&header))
        .map_err(|e| e.to_string())?;
    Ok(header)
}

/// `--delivery-semantic` of `produce`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliverySemantic {
    #[value(alias = "AtLeastOnce")]
    AtLeastOnce,
    #[value(alias = "AtMostOnce")]
    AtMostOnce,
}

/// `--keyless` of `produce`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeylessArg {
    RoundRobin,
    Sticky,
}

/// `--isolation` of `produce` and `consume` (Fluvio's spellings).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    #[value(name = "read_committed", aliases = ["read-committed", "ReadCommitted"])]
    ReadCommitted,
    #[value(name = "read_uncommitted", aliases = ["read-uncommitted", "ReadUncommitted"])]
    ReadUncommitted,
}

/// Where records come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Stdin,
    File(PathBuf),
}

/// How each record gets its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keying {
    None,
    /// `--key K`: the same key on every record.
    Fixed(Vec<u8>),
    /// `--key-separator SEP`: the line up to the first SEP.
    Separator(Vec<u8>),
}

/// The checked form of [`ProduceArgs`].
#[derive(Debug, Clone)]
pub struct ProduceConfig {
    pub topic: String,
    pub source: Source,
    pub raw: bool,
    pub keying: Keying,
    pub producer: ProducerConfig,
    pub smartmodules: Vec<sluice_client::proto::SmartModuleInvocation>,
    /// `--max-request-size` (else [`RECORD_SIZE_BYTES_DEFAULT`]): records
    /// above it are refused here.
    pub max_request_bytes: usize,
    /// Whether `--max-request-size` was given (for the error's wording).
    pub max_request_size_given: bool,
    /// `--header`: given to every record.
    pub headers: Vec<RecordHeader>,
}

impl ProduceArgs {
    pub fn config(self) -> anyhow::Result<ProduceConfig> {
        let keying = match (self.key, self.key_separator) {
            (Some(key), None) => Keying::Fixed(key.into_bytes()),
            (None, Some(sep)) if sep.is_empty() => bail!("--key-separator must not be empty"),
            (None, Some(sep)) => Keying::Separator(sep.into_bytes()),
            (None, None) => Keying::None,
            (Some(_), Some(_)) => bail!("--key and --key-separator cannot be used together"),
        };
        if self.headers.len() > sluice_client::proto::limits::RECORD_HEADERS_MAX {
            bail!(
                "{} --header flags exceed the limit of {} headers per record",
                self.headers.len(),
                sluice_client::proto::limits::RECORD_HEADERS_MAX
            );
        }
        Ok(ProduceConfig {
            topic: self.topic,
            source: self.file.map_or(Source::Stdin, Source::File),
            raw: self.raw,
            keying,
            max_request_bytes: self.max_request_size.unwrap_or(RECORD_SIZE_BYTES_DEFAULT),
            max_request_size_given: self.max_request_size.is_some(),
            headers: self.headers,
            producer: ProducerConfig {
                batch_size_bytes: self
                    .max_request_size
                    .map_or(self.batch_size, |max| self.batch_size.min(max)),
                linger: self.linger,
                partition: self.partition,
                keyless: match self.keyless {
                    KeylessArg::RoundRobin => sluice_client::Keyless::RoundRobin,
                    KeylessArg::Sticky => sluice_client::Keyless::Sticky,
                },
                delivery_timeout: match (self.delivery_semantic, self.delivery_timeout) {
                    (DeliverySemantic::AtLeastOnce, None) => {
                        ProducerConfig::default().delivery_timeout
                    }
                    (DeliverySemantic::AtLeastOnce, Some(timeout)) if !timeout.is_zero() => timeout,
                    (DeliverySemantic::AtLeastOnce, Some(_)) => bail!(
                        "--delivery-timeout 0 would fail every record that has to be resent; \
                         for that ask for --delivery-semantic at-most-once"
                    ),
                    (DeliverySemantic::AtMostOnce, None) => Duration::ZERO,
                    (DeliverySemantic::AtMostOnce, Some(_)) => bail!(
                        "--delivery-timeout bounds resends, and at-most-once never resends: \
                         drop one of the two"
                    ),
                },
                compression: self.compression,
                max_request_size_bytes: self.max_request_size.unwrap_or(RECORD_SIZE_BYTES_DEFAULT),
                ..ProducerConfig::default()
            },
            smartmodules: self.smartmodules.chain()?,
        })
    }
}

/// Splits `line` at the first `separator` into key and value.
pub fn split_key(
    line: &[u8],
    separator: &[u8],
    line_number: u64,
) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    match line.windows(separator.len()).position(|w| w == separator) {
        Some(at) => Ok((line[..at].to_vec(), line[at + separator.len()..].to_vec())),
        None => bail!(
            "line {line_number} has no key separator {:?}; every line must look like KEY{}VALUE",
            String::from_utf8_lossy(separator),
            String::from_utf8_lossy(separator)
        ),
    }
}

/// The record for one input line (or the whole input with `--raw`).
pub fn make_record(keying: &Keying, data: Vec<u8>, line_number: u64) -> anyhow::Result<Record> {
    Ok(match keying {
        Keying::None => Record::new(data),
        Keying::Fixed(key) => Record::with_key(key.clone(), data),
        Keying::Separator(sep) => {
            let (key, value) = split_key(&data, sep, line_number)?;
            Record::with_key(key, value)
        }
    })
}

/// Refuses a record above `--max-request-size` (its bytes and its framing,
/// as Fluvio's producer counts it), before anything is sent.
fn check_request_size(config: &ProduceConfig, record: &Record) -> anyhow::Result<()> {
    let size = record.size_bytes() + RECORD_OVERHEAD_BYTES_MAX;
    let max = config.max_request_bytes;
    if size > max {
        bail!(
            "exceeded maximum request size: record of {size} bytes (with {RECORD_OVERHEAD_BYTES_MAX} of framing) exceeds the limit of {max} bytes of --max-request-size{}; \
             raise it (the cluster takes records up to {RECORD_SIZE_BYTES_MAX} bytes), or split the input into smaller records",
            if config.max_request_size_given {
                ""
            } else {
                " (the default)"
            }
        );
    }
    Ok(())
}

/// Acknowledgement tally kept by a background task while records are sent.
#[derive(Debug, Default)]
struct Tally {
    acknowledged: u64,
    failed: u64,
    first_error: Option<(u64, ClientError)>,
}

pub async fn run(args: ProduceArgs, globals: &Globals) -> anyhow::Result<()> {
    let config = args.config()?;
    let (reader, length): (Box<dyn AsyncBufRead + Unpin + Send>, Option<u64>) = match &config.source
    {
        Source::Stdin => (
            Box::new(tokio::io::BufReader::new(tokio::io::stdin())),
            None,
        ),
        Source::File(path) => {
            let file = tokio::fs::File::open(path)
                .await
                .with_context(|| format!("cannot open {}", path.display()))?;
            let length = file.metadata().await.ok().map(|m| m.len());
            (Box::new(tokio::io::BufReader::new(file)), length)
        }
    };
    let interactive =
        config.source == Source::Stdin && std::io::stdin().is_terminal() && !config.raw;

    let client = crate::connect(globals).await?;
    let producer = match client
        .producer(&config.topic, config.producer.clone())
        .await
    {
        Ok(producer) => producer,
        Err(e) => return Err(crate::suggest::topic_hint(&client, &config.topic, e).await),
    };
    let mut chain = if config.smartmodules.is_empty() {
        None
    } else {
        Some(LocalChain::load(&client, config.smartmodules.clone()).await?)
    };

    let progress = match length {
        Some(length) => crate::progress::bytes(length),
        None => ProgressBar::hidden(),
    };

    // Deliveries are awaited by a separate task so sending waits for acks
    // only when this many are outstanding (the producer's own buffer bounds
    // them in bytes first).
    let (tx, mut rx) = mpsc::channel::<(u64, DeliveryFuture)>(DELIVERIES_WAITING_MAX);
    // Set at the first record that failed for good (retried for the whole
    // delivery timeout, or refused): reading stops there, instead of sending
    // the rest of an endless input into a cluster that takes none of it.
    let failed = Arc::new(AtomicBool::new(false));
    let tally = tokio::spawn({
        let failed = failed.clone();
        async move {
            let mut tally = Tally::default();
            while let Some((line, delivery)) = rx.recv().await {
                match delivery.await {
                    Ok(_) => tally.acknowledged += 1,
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        tally.failed += 1;
                        tally.first_error.get_or_insert((line, e));
                    }
                }
            }
            tally
        }
    });

    let sent = if config.raw {
        send_raw(reader, &config, &producer, &mut chain, &tx, &progress)
            .await
            .map(|n| (n, true))
    } else {
        send_lines(
            reader,
            &config,
            &producer,
            &mut chain,
            (&tx, &failed),
            &progress,
            interactive,
        )
        .await
    };
    // Deliver what was read even if reading stopped on an error.
    let flushed = producer.flush().await;
    drop(tx);
    progress.finish_and_clear();
    let tally = tally.await.context("the acknowledgement task failed")?;
    let (total, read_all) = sent?;
    flushed?;
    tracing::debug!(total, acknowledged = tally.acknowledged, "produce finished");
    if let Some((line, error)) = tally.first_error {
        let at = if config.raw {
            String::new()
        } else {
            format!(" (first failure: line {line})")
        };
        let stopped = if !read_all {
            format!("; reading stopped after line {total}, the rest of the input was not sent")
        } else {
            String::new()
        };
        return Err(anyhow::Error::new(error).context(format!(
            "{} of {total} records were not acknowledged by topic {:?}{at}{stopped}",
            tally.failed, config.topic
        )));
    }
    Ok(())
}

type Deliveries = mpsc::Sender<(u64, DeliveryFuture)>;

/// Acknowledgements `sluice produce` waits for at once.
const DELIVERIES_WAITING_MAX: usize = 65_536;

/// The records to send for one input record: itself, or what the producer's
/// SmartModules make of it (run in place: they block).
fn transformed(chain: &mut Option<LocalChain>, record: Record) -> anyhow::Result<Vec<Record>> {
    match chain {
        None => Ok(vec![record]),
        Some(chain) => Ok(tokio::task::block_in_place(|| chain.apply(vec![record]))?),
    }
}

async fn send_raw(
    mut reader: Box<dyn AsyncBufRead + Unpin + Send>,
    config: &ProduceConfig,
    producer: &Producer,
    chain: &mut Option<LocalChain>,
    deliveries: &Deliveries,
    progress: &ProgressBar,
) -> anyhow::Result<u64> {
    let mut data = Vec::new();
    // One byte past the limit is enough to refuse it: a huge input is not
    // read whole only to be refused.
    (&mut reader)
        .take(config.max_request_bytes as u64 + 1)
        .read_to_end(&mut data)
        .await
        .context("cannot read the input")?;
    if data.len() > config.max_request_bytes {
        bail!(
            "exceeded maximum request size: the input is more than the limit of {} bytes of --max-request-size{}; \
             raise it (the cluster takes records up to {RECORD_SIZE_BYTES_MAX} bytes), or produce it line by line without --raw",
            config.max_request_bytes,
            if config.max_request_size_given {
                ""
            } else {
                " (the default)"
            }
        );
    }
    progress.inc(data.len() as u64);
    let mut record = make_record(&config.keying, data, 1)?;
    record.headers.clone_from(&config.headers);
    check_request_size(config, &record)?;
    for record in transformed(chain, record)? {
        let delivery = producer.send(record).await?;
        let _ = deliveries.send((1, delivery)).await;
    }
    Ok(1)
}

/// Sends the input line by line; returns how many lines were read and
/// whether that was all of them (false: a delivery had failed, see `run`).
async fn send_lines(
    mut reader: Box<dyn AsyncBufRead + Unpin + Send>,
    config: &ProduceConfig,
    producer: &Producer,
    chain: &mut Option<LocalChain>,
    (deliveries, failed): (&Deliveries, &AtomicBool),
    progress: &ProgressBar,
    interactive: bool,
) -> anyhow::Result<(u64, bool)> {
    let mut line_number = 0u64;
    let mut buf = Vec::new();
    loop {
        if failed.load(Ordering::Relaxed) {
            return Ok((line_number, false));
        }
        if interactive {
            eprint!("> ");
        }
        buf.clear();
        let read = reader
            .read_until(b'\n', &mut buf)
            .await
            .context("cannot read the input")?;
        if read == 0 {
            return Ok((line_number, true));
        }
        progress.inc(read as u64);
        line_number += 1;
        let line = strip_newline(&buf).to_vec();
        let mut record = make_record(&config.keying, line, line_number)?;
        record.headers.clone_from(&config.headers);
        check_request_size(config, &record)
            .with_context(|| format!("line {line_number} was not sent"))?;
        let records = transformed(chain, record)
            .with_context(|| format!("line {line_number} was not sent"))?;
        for record in records {
            let delivery = match producer.send(record).await {
                Ok(delivery) => delivery,
                Err(e @ ClientError::RecordTooLarge { .. }) => {
                    return Err(
                        anyhow::Error::new(e).context(format!("line {line_number} was not sent"))
                    );
                }
                Err(e) => return Err(e.into()),
            };
            if interactive {
                producer.flush().await?;
                match delivery.await {
                    Ok(_) => eprintln!("Ok!"),
                    Err(e) => eprintln!("error: {}", e),
                }
            } else {
                let _ = deliveries.send((line_number, delivery)).await;
            }
        }
    }
}

/// A line without its `\n` or `\r\n`.
fn strip_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: ProduceArgs,
    }

    fn config(argv: &[&str]) -> anyhow::Result<ProduceConfig> {
        Wrap::try_parse_from(std::iter::once("produce").chain(argv.iter().copied()))?
            .args
            .config()
    }

    #[test]
    fn delivery_semantics_and_isolation() {
        let resent = config(&["t"]).unwrap().producer.delivery_timeout;
        assert_eq!(resent, ProducerConfig::default().delivery_timeout);
        let once = config(&["t", "--delivery-semantic", "at-most-once"]).unwrap();
        assert_eq!(once.producer.delivery_timeout, Duration::ZERO);
        // Fluvio's spellings too.
        let fluvio = config(&["t", "--delivery-semantic", "AtMostOnce"]).unwrap();
        assert_eq!(fluvio.producer.delivery_timeout, Duration::ZERO);
        let bounded = config(&["t", "--delivery-timeout", "5s"]).unwrap();
        assert_eq!(bounded.producer.delivery_timeout, Duration::from_secs(5));
        for bad in [
            &["t", "--delivery-timeout", "0s"][..],
            &[
                "t",
                "--delivery-semantic",
                "at-most-once",
                "--delivery-timeout",
                "5s",
            ],
        ] {
            let e = config(bad).unwrap_err().to_string();
            assert!(e.contains("at-most-once"), "{e}");
        }
        let capped = config(&["t", "--max-request-size", "1000", "--batch-size", "1MiB"]).unwrap();
        assert_eq!(
            (capped.producer.batch_size_bytes, capped.max_request_bytes),
            (1000, 1000)
        );
        // A record counts with its framing, as Fluvio counts it.
        let fits = 1000 - RECORD_OVERHEAD_BYTES_MAX;
        let big = Record::new(vec![b'x'; fits + 1]);
        let e = check_request_size(&capped, &big).unwrap_err().to_string();
        assert!(
            e.contains("exceeded maximum request size") && e.contains("limit of 1000 bytes"),
            "{e}"
        );
        check_request_size(&capped, &Record::new(vec![b'x'; fits])).unwrap();
        // Without the flag, Fluvio's and Kafka's 1 MiB.
        let default = config(&["t"]).unwrap();
        assert_eq!(default.max_request_bytes, RECORD_SIZE_BYTES_DEFAULT);
        assert_eq!(
            default.producer.max_request_size_bytes,
            RECORD_SIZE_BYTES_DEFAULT
        );
        let e = check_request_size(
            &default,
            &Record::new(vec![b'x'; RECORD_SIZE_BYTES_DEFAULT]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("(the default)"), "{e}");
        let fluvio = config(&["t", "--delivery-semantic", "AtLeastOnce"]).unwrap();
        assert_eq!(fluvio.producer.delivery_timeout, resent);
        assert!(config(&["t", "--delivery-semantic", "exactly-twice"]).is_err());
        assert!(config(&["t", "--isolation", "read_uncommitted"]).is_ok());
        assert!(config(&["t", "--isolation", "sometimes"]).is_err());
        let zipped = config(&["t", "--compression", "zstd"]).unwrap();
        assert_eq!(
            zipped.producer.compression,
            Some(sluice_client::proto::Compression::Zstd)
        );
        assert_eq!(config(&["t"]).unwrap().producer.compression, None);
        assert!(config(&["t", "--compression", "brotli"]).is_err());
    }

    #[test]
    fn key_separator_splits_at_the_first_one() {
        assert_eq!(
            split_key(b"k=v=w", b"=", 1).unwrap(),
            (b"k".to_vec(), b"v=w".to_vec())
        );
        assert_eq!(
            split_key(b"a::b", b"::", 1).unwrap(),
            (b"a".to_vec(), b"b".to_vec())
        );
        assert_eq!(
            split_key(b"=v", b"=", 1).unwrap(),
            (Vec::new(), b"v".to_vec())
        );
        let err = split_key(b"no separator", b"=", 7).unwrap_err().to_string();
        assert!(err.contains("line 7"), "{err}");
    }

    #[test]
    fn records_get_their_keys() {
        let r = make_record(&Keying::Separator(b":".to_vec()), b"user:hello".to_vec(), 1).unwrap();
        assert_eq!(
            (r.key.as_deref(), r.value.as_slice()),
            (Some(&b"user"[..]), &b"hello"[..])
        );
        let r = make_record(&Keying::Fixed(b"k".to_vec()), b"v".to_vec(), 1).unwrap();
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(
            make_record(&Keying::None, b"v".to_vec(), 1).unwrap().key,
            None
        );
    }

    #[test]
    fn newlines_are_stripped() {
        assert_eq!(strip_newline(b"a\r\n"), b"a");
        assert_eq!(strip_newline(b"a\n"), b"a");
        assert_eq!(strip_newline(b"a"), b"a");
    }

    #[test]
    fn flags_become_a_config() {
        let c = config(&[
            "t",
            "--key-separator",
            ":",
            "-p",
            "2",
            "--linger",
            "5ms",
            "--batch-size",
            "1MiB",
        ])
        .unwrap();
        assert_eq!(c.keying, Keying::Separator(b":".to_vec()));
        assert_eq!(c.producer.partition, Some(2));
        assert_eq!(c.producer.linger, Duration::from_millis(5));
        assert_eq!(c.producer.batch_size_bytes, 1 << 20);
        assert_eq!(c.source, Source::Stdin);
        let c = config(&["t", "-f", "in.txt", "--raw", "--key", "k"]).unwrap();
        assert!(c.raw);
        assert_eq!(c.source, Source::File("in.txt".into()));
        assert!(config(&["t", "--key", "k", "--key-separator", ":"]).is_err());
        assert!(config(&["t", "--raw", "--key-separator", ":"]).is_err());
        assert!(config(&["t", "--key-separator", ""]).is_err());
        assert!(config(&["t", "--batch-size", "0"]).is_err());
    }
}
