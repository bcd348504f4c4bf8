//! [`Producer`]: batching, partitioning, bounded in-flight requests and
//! retries, so callers can hand over records one at a time at full speed.
//!
//! Records are grouped per partition into batches, closed when a batch reaches
//! `batch_size_bytes` or when its first record has waited `linger`. Each
//! partition has at most one batch on the wire (so order is kept, retries
//! included), and at most `max_in_flight` are on the wire across partitions;
//! when too many closed batches wait, [`Producer::send`] waits
//! (backpressure) instead of buffering without bound.
//! Failed batches are retried with exponential backoff while the error is
//! retriable (no leader, node unavailable, connection lost), until
//! `delivery_timeout`.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use sluice_proto::limits::{PRODUCE_BATCH_RECORDS_MAX, PRODUCE_BATCH_SIZE_BYTES_MAX};
use sluice_proto::{ProducerSeq, Record, WireError};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::client::{Client, check_record_size};
use crate::error::{ClientError, Result};

/// How a [`Producer`] batches and sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerConfig {
    /// A batch is sent once it holds this many bytes of keys and values
    /// (capped by the protocol's batch limit).
    pub batch_size_bytes: usize,
    /// How long a record may wait for companions before its batch is sent.
    pub linger: Duration,
    /// Batches on the wire at once across partitions (one per partition at
    /// most, to keep order); when about twice as many wait, `send` waits.
    pub max_in_flight: usize,
    /// Send every record to this partition instead of choosing one.
    pub partition: Option<u32>,
    /// How long a batch may keep being retried before its records fail.
    pub delivery_timeout: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            batch_size_bytes: 16 * 1024,
            linger: Duration::from_millis(10),
            max_in_flight: 5,
            partition: None,
            delivery_timeout: Duration::from_secs(30),
        }
    }
}

/// Where an acknowledged record was stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordMetadata {
    pub partition: u32,
    pub offset: u64,
}

/// Resolves when the record is acknowledged (durable on a majority of the
/// partition's replicas) or has definitely failed.
#[derive(Debug)]
pub struct DeliveryFuture {
    topic: String,
    rx: oneshot::Receiver<Result<RecordMetadata>>,
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.rx.poll_unpin(cx).map(|result| {
            result.unwrap_or_else(|_| {
                Err(ClientError::ProducerClosed {
                    topic: self.topic.clone(),
                })
            })
        })
    }
}

type Reply = oneshot::Sender<Result<RecordMetadata>>;

enum Command {
    Send {
        record: Record,
        partition: Option<u32>,
        reply: Reply,
    },
    Flush(oneshot::Sender<()>),
}

/// A batching producer for one topic. Cheap to clone; clones share batches.
/// When the last clone is dropped, pending records are still sent (as long
/// as the runtime lives); call [`Producer::flush`] to wait for them.
#[derive(Clone, Debug)]
pub struct Producer {
    topic: String,
    partitions: u32,
    fixed_partition: Option<u32>,
    tx: mpsc::Sender<Command>,
}

impl Producer {
    pub(crate) async fn new(client: Client, topic: &str, config: ProducerConfig) -> Result<Self> {
        if config.batch_size_bytes == 0 {
            return Err(invalid("batch size must be at least 1 byte"));
        }
        if config.max_in_flight == 0 {
            return Err(invalid("max_in_flight must be at least 1"));
        }
        let info = client.describe_topic(topic).await?;
        let partitions = info.spec.partitions.max(1);
        if let Some(partition) = config.partition
            && partition >= partitions
        {
            return Err(ClientError::Server(WireError::UnknownPartition {
                topic: topic.to_string(),
                partition,
                partitions,
            }));
        }
        // Room for a few batches per in-flight slot, so `send` rarely waits
        // unless the cluster really is the bottleneck.
        let (tx, rx) = mpsc::channel(1024);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let batcher = Batcher {
            client,
            topic: topic.to_string(),
            producer_id: random_producer_id(),
            batch_bytes: config.batch_size_bytes.min(PRODUCE_BATCH_SIZE_BYTES_MAX),
            sticky: 0,
            partitions,
            lanes: BTreeMap::new(),
            in_flight: 0,
            queued: 0,
            done_tx,
            flush_waiters: Vec::new(),
            config: config.clone(),
        };
        tokio::spawn(batcher.run(rx, done_rx));
        Ok(Self {
            topic: topic.to_string(),
            partitions,
            fixed_partition: config.partition,
            tx,
        })
    }

    /// The topic written to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The topic's partition count when the producer was created.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Queues `record`; waits only when the producer is at its in-flight
    /// limit. The returned future resolves with the record's offset.
    /// Records over the size limit are refused here, before anything is sent.
    pub async fn send(&self, record: Record) -> Result<DeliveryFuture> {
        check_record_size(&self.topic, &record)?;
        let partition = self.fixed_partition.or_else(|| {
            record
                .key
                .as_deref()
                .map(|key| partition_for_key(key, self.partitions))
        });
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Send {
                record,
                partition,
                reply,
            })
            .await
            .map_err(|_| self.closed())?;
        Ok(DeliveryFuture {
            topic: self.topic.clone(),
            rx,
        })
    }

    /// Sends everything queued and waits until every batch sent so far is
    /// acknowledged or has failed (the per-record futures tell which).
    pub async fn flush(&self) -> Result<()> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Command::Flush(done))
            .await
            .map_err(|_| self.closed())?;
        rx.await.map_err(|_| self.closed())
    }

    fn closed(&self) -> ClientError {
        ClientError::ProducerClosed {
            topic: self.topic.clone(),
        }
    }
}

fn invalid(reason: &str) -> ClientError {
    ClientError::InvalidConfig {
        what: "producer configuration",
        reason: reason.to_string(),
    }
}

/// The partition of a keyed record: FNV-1a of the key modulo the partition
/// count. FNV-1a is stable across processes and releases (unlike std's
/// randomly seeded hasher), so a key always lands on the same partition.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    fnv1a(key) % partitions.max(1)
}

/// 32-bit FNV-1a.
pub fn fnv1a(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for &b in bytes {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

struct Batch {
    records: Vec<Record>,
    replies: Vec<Reply>,
    bytes: usize,
    deadline: Instant,
}

/// Batches of one partition: the one still filling, the closed ones waiting
/// for their turn, and whether one is on the wire.
#[derive(Default)]
struct Lane {
    open: Option<Batch>,
    closed: VecDeque<Batch>,
    busy: bool,
    /// Number of the next batch sent to this partition (idempotence).
    next_sequence: u64,
}

/// The background task owning the batches.
///
/// A partition has at most one batch on the wire, so records reach the log
/// in the order they were sent even when a batch is retried; while it is in
/// flight the next batch keeps filling, so throughput adapts to latency.
/// `max_in_flight` bounds the batches on the wire across partitions.
struct Batcher {
    client: Client,
    topic: String,
    /// Random id under which this producer's batches are deduplicated.
    producer_id: u64,
    config: ProducerConfig,
    batch_bytes: usize,
    /// Partition keyless records go to; moves on each time its batch is
    /// closed, so keyless records spread round-robin, one batch at a time.
    sticky: u32,
    partitions: u32,
    lanes: BTreeMap<u32, Lane>,
    in_flight: usize,
    /// Closed batches not yet sent, across partitions; bounded for backpressure.
    queued: usize,
    done_tx: mpsc::UnboundedSender<u32>,
    flush_waiters: Vec<oneshot::Sender<()>>,
}

impl Batcher {
    fn queued_max(&self) -> usize {
        self.config.max_in_flight * 2
    }

    fn idle(&self) -> bool {
        self.in_flight == 0 && self.queued == 0 && self.lanes.values().all(|l| l.open.is_none())
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Command>,
        mut done_rx: mpsc::UnboundedReceiver<u32>,
    ) {
        let mut closing = false;
        loop {
            self.pump();
            if !self.flush_waiters.is_empty() && self.idle() {
                for waiter in self.flush_waiters.drain(..) {
                    let _ = waiter.send(());
                }
            }
            if closing && self.idle() {
                return;
            }
            // Stop taking records while too much waits or a flush is pending:
            // that is the producer's backpressure.
            let accept =
                !closing && self.flush_waiters.is_empty() && self.queued < self.queued_max();
            let next_deadline = self
                .lanes
                .values()
                .filter_map(|l| l.open.as_ref())
                .map(|b| b.deadline)
                .min();
            tokio::select! {
                command = rx.recv(), if accept => match command {
                    Some(Command::Send { record, partition, reply }) => self.add(record, partition, reply),
                    Some(Command::Flush(done)) => {
                        self.close_all();
                        self.flush_waiters.push(done);
                    }
                    None => {
                        self.close_all();
                        closing = true;
                    }
                },
                Some(partition) = done_rx.recv() => {
                    self.in_flight -= 1;
                    if let Some(lane) = self.lanes.get_mut(&partition) {
                        lane.busy = false;
                    }
                }
                () = sleep_until(next_deadline), if next_deadline.is_some() => {
                    let now = Instant::now();
                    let due: Vec<u32> = self
                        .lanes
                        .iter()
                        .filter(|(_, l)| l.open.as_ref().is_some_and(|b| b.deadline <= now))
                        .map(|(p, _)| *p)
                        .collect();
                    for partition in due {
                        self.close(partition);
                    }
                }
            }
        }
    }

    fn add(&mut self, record: Record, partition: Option<u32>, reply: Reply) {
        let partition = partition.unwrap_or(self.sticky);
        let size = record.size_bytes();
        let full = |b: &Batch| {
            b.bytes + size > self.batch_bytes.max(size)
                || b.records.len() >= PRODUCE_BATCH_RECORDS_MAX
        };
        if self
            .lanes
            .get(&partition)
            .and_then(|l| l.open.as_ref())
            .is_some_and(full)
        {
            self.close(partition);
        }
        let linger = self.config.linger;
        let lane = self.lanes.entry(partition).or_default();
        let batch = lane.open.get_or_insert_with(|| Batch {
            records: Vec::new(),
            replies: Vec::new(),
            bytes: 0,
            deadline: Instant::now() + linger,
        });
        batch.records.push(record);
        batch.replies.push(reply);
        batch.bytes += size;
        if batch.bytes >= self.batch_bytes || batch.records.len() >= PRODUCE_BATCH_RECORDS_MAX {
            self.close(partition);
        }
    }

    /// Closes the open batch of `partition`: it is sent when its turn comes.
    fn close(&mut self, partition: u32) {
        let Some(lane) = self.lanes.get_mut(&partition) else {
            return;
        };
        let Some(batch) = lane.open.take() else {
            return;
        };
        lane.closed.push_back(batch);
        self.queued += 1;
        if partition == self.sticky && self.config.partition.is_none() {
            self.sticky = (self.sticky + 1) % self.partitions;
        }
    }

    fn close_all(&mut self) {
        let partitions: Vec<u32> = self.lanes.keys().copied().collect();
        for partition in partitions {
            self.close(partition);
        }
    }

    /// Starts sending closed batches of idle partitions while slots are free.
    fn pump(&mut self) {
        for (&partition, lane) in self.lanes.iter_mut() {
            if self.in_flight >= self.config.max_in_flight {
                return;
            }
            if lane.busy {
                continue;
            }
            let Some(batch) = lane.closed.pop_front() else {
                continue;
            };
            lane.busy = true;
            // Numbered when first sent; every retry of it carries the same number.
            let producer = ProducerSeq {
                producer_id: self.producer_id,
                sequence: lane.next_sequence,
            };
            lane.next_sequence += 1;
            self.queued -= 1;
            self.in_flight += 1;
            let client = self.client.clone();
            let topic = self.topic.clone();
            let delivery_timeout = self.config.delivery_timeout;
            let done = self.done_tx.clone();
            tokio::spawn(async move {
                send_with_retries(client, topic, partition, batch, producer, delivery_timeout)
                    .await;
                let _ = done.send(partition);
            });
        }
    }
}

async fn send_with_retries(
    client: Client,
    topic: String,
    partition: u32,
    batch: Batch,
    producer: ProducerSeq,
    delivery_timeout: Duration,
) {
    let deadline = Instant::now() + delivery_timeout;
    let mut backoff = Duration::from_millis(50);
    let mut attempts = 0u32;
    let outcome = loop {
        attempts += 1;
        match client
            .produce_as(&topic, partition, batch.records.clone(), Some(producer))
            .await
        {
            Ok(produced) => break Ok(produced.base_offset),
            Err(e) if e.is_retriable() && Instant::now() + backoff < deadline => {
                tracing::debug!(%topic, partition, attempts, error = %e, ?backoff, "retrying produce");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(e) => break Err(Arc::new(e)),
        }
    };
    match outcome {
        Ok(base_offset) => {
            for (i, reply) in batch.replies.into_iter().enumerate() {
                let offset = base_offset + i as u64;
                let _ = reply.send(Ok(RecordMetadata { partition, offset }));
            }
        }
        Err(error) => {
            tracing::debug!(%topic, partition, attempts, %error, "batch failed");
            for reply in batch.replies {
                let _ = reply.send(Err(ClientError::Delivery {
                    topic: topic.clone(),
                    partition,
                    attempts,
                    source: error.clone(),
                }));
            }
        }
    }
}

/// A producer id unlikely to collide with any other producer's: std's
/// randomly keyed hasher over the time, the process and a counter.
fn random_producer_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => futures::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_reference_values() {
        // Reference values of 32-bit FNV-1a.
        assert_eq!(fnv1a(b""), 0x811c_9dc5);
        assert_eq!(fnv1a(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn keys_map_to_stable_partitions() {
        for partitions in 1..8 {
            let p = partition_for_key(b"user-42", partitions);
            assert!(p < partitions);
            assert_eq!(p, partition_for_key(b"user-42", partitions));
        }
        assert_eq!(partition_for_key(b"x", 0), 0);
    }
}
