//! [`Producer`]: batching, partitioning, bounded in-flight requests and
//! retries, so callers can hand over records one at a time at full speed.
//!
//! Records are grouped per partition into batches, sent when a batch reaches
//! `batch_size_bytes` or when its first record has waited `linger` (and a
//! slot is free; until then it keeps filling). Each partition has up to
//! `max_in_flight_per_partition` batches on the wire, numbered, and the
//! partition writes them in number order only, so order is kept, retries
//! included (see `Batcher`); at most `max_in_flight` are on the wire across
//! partitions; when too many full batches wait, or the records not yet
//! acknowledged take `buffer_bytes` (Kafka's `buffer.memory`),
//! [`Producer::send`] waits (backpressure) instead of buffering without bound.
//! Failed batches are retried with exponential backoff while the error is
//! retriable (no leader, node unavailable, connection lost, overtaken by a
//! later batch), until `delivery_timeout` after the batch's first record
//! came; batches waiting behind them expire by the same clock, so every
//! `send` is answered in bounded time even when the cluster takes nothing.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use sluice_proto::limits::{
    PRODUCE_BATCH_RECORDS_MAX, PRODUCE_BATCH_SIZE_BYTES_MAX, PRODUCER_IN_FLIGHT_PER_PARTITION_MAX,
    RECORD_OVERHEAD_BYTES_MAX, RECORD_SIZE_BYTES_DEFAULT, RECORD_SIZE_BYTES_MAX,
};
use sluice_proto::{Compression, KeyHash, ProducerSeq, Record, TopicSettings, WireError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;

mod lane;

use lane::{Batch, Changed, Lane, Outcome, Sent};

use crate::client::{Client, check_record_size};
use crate::error::{ClientError, Result};
use crate::partitioner::{CustomPartitioner, Keyless};
use crate::timeouts::{
    DELIVERY_TIMEOUT_DEFAULT, PRODUCER_BACKOFF_MAX, PRODUCER_BACKOFF_MIN, REQUEST_TIMEOUT,
};

/// How a [`Producer`] batches and sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerConfig {
    /// A batch is sent once it holds this many bytes of keys and values
    /// (capped by the protocol's batch limit).
    pub batch_size_bytes: usize,
    /// How long a record may wait for companions before its batch is sent.
    /// Zero sends a record at once when its partition has a free slot; while
    /// it has none, records gather into the next batch anyway.
    pub linger: Duration,
    /// Batches on the wire at once across partitions; when about twice as
    /// many full ones wait, `send` waits.
    pub max_in_flight: usize,
    /// Batches on the wire at once to one partition, 1 to
    /// [`PRODUCER_IN_FLIGHT_PER_PARTITION_MAX`], counted from the oldest
    /// unacknowledged one (the partition remembers that many per producer to
    /// recognise resends). 1 sends the next batch only once the previous one
    /// is acknowledged.
    pub max_in_flight_per_partition: usize,
    /// Send every record to this partition instead of choosing one.
    pub partition: Option<u32>,
    /// Where records without a key go (keyed ones go by their key's hash).
    pub keyless: Keyless,
    /// Chooses every record's partition instead of the key hash and
    /// `keyless` (not with `partition`).
    pub partitioner: Option<CustomPartitioner>,
    /// How long after its first record came a batch may keep being retried
    /// before its records fail, time waiting to be sent included (Kafka's
    /// `delivery.timeout.ms`; at least the linger). Zero: no retries
    /// (at-most-once), and a batch waits to be sent for at most its linger
    /// plus one request's time.
    pub delivery_timeout: Duration,
    /// How batches travel: `None` follows the topic's compression type (its
    /// codec, or uncompressed for `any` and `none`), read when the producer
    /// is created; a codec the topic does not take is refused by the node.
    pub compression: Option<Compression>,
    /// Bytes of records (keys, values and a fixed overhead each) the
    /// producer holds between `send` and their acknowledgement or failure;
    /// `send` waits while a record would not fit. At least
    /// [`ProducerConfig::max_request_size_bytes`] plus the overhead, so any
    /// record the producer takes can go.
    pub buffer_bytes: usize,
    /// The largest record `send` takes, counting its key, value, headers and
    /// [`RECORD_OVERHEAD_BYTES_MAX`] of framing (Kafka's
    /// `max.request.size`, Fluvio's `--max-request-size`); a larger one is
    /// refused before anything is sent. Default
    /// [`RECORD_SIZE_BYTES_DEFAULT`]; above the cluster's own limit,
    /// [`RECORD_SIZE_BYTES_MAX`] plus the overhead, that limit applies.
    pub max_request_size_bytes: usize,
}

/// Default of [`ProducerConfig::buffer_bytes`], Kafka's `buffer.memory` default.
pub const PRODUCER_BUFFER_BYTES_DEFAULT: usize = 32 * 1024 * 1024;

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            batch_size_bytes: 16 * 1024,
            linger: Duration::ZERO,
            max_in_flight: 5,
            max_in_flight_per_partition: PRODUCER_IN_FLIGHT_PER_PARTITION_MAX,
            partition: None,
            keyless: Keyless::Sticky,
            partitioner: None,
            delivery_timeout: DELIVERY_TIMEOUT_DEFAULT,
            buffer_bytes: PRODUCER_BUFFER_BYTES_DEFAULT,
            compression: None,
            max_request_size_bytes: RECORD_SIZE_BYTES_DEFAULT,
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

/// Where a record's outcome goes, with the record's share of the
/// producer's buffer: given back when the outcome is sent (or the reply is
/// dropped), so the buffer counts every record until it is settled.
struct Reply {
    tx: oneshot::Sender<Result<RecordMetadata>>,
    _buffered: OwnedSemaphorePermit,
}

impl Reply {
    fn send(self, outcome: Result<RecordMetadata>) {
        let _ = self.tx.send(outcome);
    }
}

/// A record's share of [`ProducerConfig::buffer_bytes`].
fn buffer_cost(record: &Record) -> usize {
    record.size_bytes() + RECORD_OVERHEAD_BYTES_MAX
}

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
    partitioner: Option<CustomPartitioner>,
    /// How the topic places keyed records (a setting of the topic).
    key_hash: KeyHash,
    tx: mpsc::Sender<Command>,
    /// Bytes of records sent but not settled: see [`ProducerConfig::buffer_bytes`].
    buffer: Arc<Semaphore>,
    /// [`ProducerConfig::max_request_size_bytes`], capped by the cluster's limit.
    max_request_bytes: usize,
}

impl Producer {
    pub(crate) async fn new(client: Client, topic: &str, config: ProducerConfig) -> Result<Self> {
        if config.batch_size_bytes == 0 {
            return Err(invalid("batch size must be at least 1 byte"));
        }
        if config.max_in_flight == 0 {
            return Err(invalid("max_in_flight must be at least 1"));
        }
        if config.max_request_size_bytes <= RECORD_OVERHEAD_BYTES_MAX {
            return Err(invalid(&format!(
                "max_request_size_bytes must be above {RECORD_OVERHEAD_BYTES_MAX} (one record's framing)"
            )));
        }
        let record_max = config
            .max_request_size_bytes
            .min(RECORD_SIZE_BYTES_MAX + RECORD_OVERHEAD_BYTES_MAX);
        if config.buffer_bytes < record_max || config.buffer_bytes > u32::MAX as usize {
            return Err(invalid(&format!(
                "buffer_bytes must be {record_max} (the largest record, max_request_size_bytes) to {}",
                u32::MAX
            )));
        }
        if !(1..=PRODUCER_IN_FLIGHT_PER_PARTITION_MAX).contains(&config.max_in_flight_per_partition)
        {
            return Err(invalid(&format!(
                "max_in_flight_per_partition must be 1 to {PRODUCER_IN_FLIGHT_PER_PARTITION_MAX}"
            )));
        }
        if config.partition.is_some() && config.partitioner.is_some() {
            return Err(invalid("give a fixed partition or a partitioner, not both"));
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
        let settings = match client.topic_settings(topic).await {
            Ok(settings) => settings,
            // A node of a release without topic settings cannot answer:
            // its topics take uncompressed batches and hash keys with FNV-1a.
            Err(ClientError::Server(WireError::MalformedRequest { reason })) => {
                tracing::debug!(%reason, topic, "no topic settings; the defaults apply");
                TopicSettings::default()
            }
            // Keys would land on the wrong partitions without the topic's key hash.
            Err(e) => return Err(e),
        };
        let compression = config
            .compression
            .unwrap_or_else(|| settings.compression.stored());
        // Room for a few batches per in-flight slot, so `send` rarely waits
        // unless the cluster really is the bottleneck.
        let (tx, rx) = mpsc::channel(1024);
        // One outcome per batch on the wire, and at most `max_in_flight` are.
        let (done_tx, done_rx) = mpsc::channel(config.max_in_flight);
        let batcher = Batcher {
            client,
            topic: topic.to_string(),
            producer_id: random_producer_id(),
            batch_bytes: config.batch_size_bytes.min(PRODUCE_BATCH_SIZE_BYTES_MAX),
            compression,
            sticky: 0,
            round_robin: 0,
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
            partitioner: config.partitioner.clone(),
            key_hash: settings.key_hash,
            tx,
            buffer: Arc::new(Semaphore::new(config.buffer_bytes)),
            max_request_bytes: record_max,
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

    /// How the topic places keyed records: `key_hash().partition(key,
    /// partitions())` is where this producer sends a record with `key`
    /// (unless a fixed partition or a [`Partitioner`](crate::Partitioner) decides).
    pub fn key_hash(&self) -> KeyHash {
        self.key_hash
    }

    /// Queues `record`; waits while the producer is at its in-flight limit
    /// or its buffer (`buffer_bytes`) is full. The returned future resolves
    /// with the record's offset. Records over the size limit are refused
    /// here, before anything is sent.
    pub async fn send(&self, record: Record) -> Result<DeliveryFuture> {
        check_record_size(&self.topic, &record)?;
        if buffer_cost(&record) > self.max_request_bytes {
            return Err(ClientError::RecordTooLarge {
                topic: self.topic.clone(),
                size_bytes: buffer_cost(&record),
                max_bytes: self.max_request_bytes,
            });
        }
        // Checked above: a record's cost fits the buffer and a u32.
        let cost = u32::try_from(buffer_cost(&record)).unwrap_or(u32::MAX);
        let buffered = self
            .buffer
            .clone()
            .acquire_many_owned(cost)
            .await
            .map_err(|_| self.closed())?;
        let partition = match &self.partitioner {
            Some(custom) => {
                let chosen =
                    custom
                        .0
                        .partition(record.key.as_deref(), &record.value, self.partitions);
                if chosen >= self.partitions {
                    return Err(ClientError::InvalidConfig {
                        what: "partitioner",
                        reason: format!(
                            "it chose partition {chosen} of topic {:?}, which has {}",
                            self.topic, self.partitions
                        ),
                    });
                }
                Some(chosen)
            }
            None => self.fixed_partition.or_else(|| {
                record
                    .key
                    .as_deref()
                    .map(|key| self.key_hash.partition(key, self.partitions))
            }),
        };
        let (tx, rx) = oneshot::channel();
        let reply = Reply {
            tx,
            _buffered: buffered,
        };
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

/// The background task owning the batches.
///
/// Pipelining with order: a partition may have up to
/// `max_in_flight_per_partition` numbered batches on the wire; the partition
/// appends a batch only if its number follows the last one it wrote from us,
/// answers a resent one with its original offsets, and rejects one that
/// overtook a missing predecessor (`OutOfOrderSequence`) without writing it.
/// So when an attempt fails with a retriable error, this task resends that
/// batch and every later unacknowledged batch of the partition, in order,
/// and sends no new batch before them. The resends start once the failed
/// batch is the oldest unacknowledged one (an earlier batch still on the wire
/// may fail too, and then everything goes again from there), after a backoff
/// unless the failure was only being overtaken. Failures of attempts already
/// superseded are ignored; the success of any attempt is taken (a batch is
/// written once, at one offset). Records of one partition are thus stored in
/// the order they were sent, each batch once.
///
/// A batch that fails for good (not retriable, or out of time) fails with
/// every later batch of its partition, since none of them may be written
/// before it; the partition's batches then start afresh under a new producer
/// id once the earlier ones are resolved. Likewise when the partition has
/// forgotten the producer (it remembers a bounded number) and refuses its
/// oldest unacknowledged batch.
///
/// Batches of one partition that are sent together are driven by one task
/// that polls them in sequence order, so their QUIC streams open and carry
/// their requests in that order; the node also holds an overtaking batch
/// briefly for its predecessor (`ProposalOrder` in the node). Both only make
/// rejections rare; the partition's rule is what keeps the order.
///
/// Linger: a batch is sent when it is full or its first record has waited
/// `linger`, as soon as a slot is free; while no slot is free it keeps
/// filling. With a zero linger a record is sent at once when a slot is free
/// and otherwise rides with the records that arrive while the partition's
/// slots are busy, so batches grow with the load instead of queueing.
struct Batcher {
    client: Client,
    topic: String,
    /// Random id under which this producer's batches are deduplicated.
    producer_id: u64,
    config: ProducerConfig,
    /// How batches travel (the configured codec, or the topic's).
    compression: Compression,
    batch_bytes: usize,
    /// Partition keyless records go to; moves on each time its batch is
    /// closed, so keyless records spread round-robin, one batch at a time.
    sticky: u32,
    /// The next partition of a keyless record under [`Keyless::RoundRobin`].
    round_robin: u32,
    partitions: u32,
    lanes: BTreeMap<u32, Lane>,
    /// Numbered, unacknowledged batches across partitions.
    in_flight: usize,
    /// Closed batches not yet sent, across partitions; bounded for backpressure.
    queued: usize,
    done_tx: mpsc::Sender<Outcome>,
    flush_waiters: Vec<oneshot::Sender<()>>,
}

impl Batcher {
    fn queued_max(&self) -> usize {
        self.config.max_in_flight * 2
    }

    fn idle(&self) -> bool {
        self.in_flight == 0 && self.queued == 0 && self.lanes.values().all(|l| l.open.is_none())
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Command>, mut done_rx: mpsc::Receiver<Outcome>) {
        let mut closing = false;
        let mut changed = Changed::All;
        let mut wake_at = None;
        loop {
            self.pump(changed);
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
            wake_at = match changed {
                Changed::All => self.next_wake(),
                // Every other lane's time is still in `wake_at` (a stale
                // one, its batch since sent, wakes the loop once for nothing).
                Changed::Lane(partition) => {
                    let now = Instant::now();
                    let expiry = self.waiting_expiry();
                    let lane = self
                        .lanes
                        .get(&partition)
                        .and_then(|l| l.next_wake(now, expiry));
                    wake_at.filter(|t| *t > now).into_iter().chain(lane).min()
                }
            };
            changed = tokio::select! {
                command = rx.recv(), if accept => match command {
                    Some(Command::Send { record, partition, reply }) => {
                        Changed::Lane(self.add(record, partition, reply))
                    }
                    Some(Command::Flush(done)) => {
                        self.close_all();
                        self.flush_waiters.push(done);
                        Changed::All
                    }
                    None => {
                        self.close_all();
                        closing = true;
                        Changed::All
                    }
                },
                Some(outcome) = done_rx.recv() => {
                    self.on_outcome(outcome);
                    Changed::All
                }
                () = sleep_until(wake_at), if wake_at.is_some() => Changed::All,
            };
            // A lane's time that passed while a record came in still needs
            // the look at every lane its timer would have given.
            if wake_at.is_some_and(|t| t <= Instant::now()) {
                changed = Changed::All;
            }
        }
    }

    /// When a lingering batch becomes due or a paused partition resumes.
    /// A due batch that waits for a slot needs no timer: an outcome frees it.
    fn next_wake(&self) -> Option<Instant> {
        let now = Instant::now();
        let expiry = self.waiting_expiry();
        self.lanes
            .values()
            .filter_map(|l| l.next_wake(now, expiry))
            .min()
    }

    /// Adds a record to its partition's open batch; returns the partition.
    fn add(&mut self, record: Record, partition: Option<u32>, reply: Reply) -> u32 {
        let partition = match (partition, self.config.keyless) {
            (Some(p), _) => p,
            (None, Keyless::Sticky) => self.sticky,
            (None, Keyless::RoundRobin) => {
                let p = self.round_robin;
                self.round_robin = (p + 1) % self.partitions.max(1);
                p
            }
        };
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
        let producer_id = self.producer_id;
        let lane = self
            .lanes
            .entry(partition)
            .or_insert_with(|| Lane::new(producer_id));
        let batch = lane.open.get_or_insert_with(|| Batch {
            records: Vec::new(),
            replies: Vec::new(),
            bytes: 0,
            deadline: Instant::now() + linger,
            created: Instant::now(),
        });
        batch.records.push(record);
        batch.replies.push(reply);
        batch.bytes += size;
        if batch.bytes >= self.batch_bytes || batch.records.len() >= PRODUCE_BATCH_RECORDS_MAX {
            self.close(partition);
        }
        partition
    }

    /// Closes the open batch of `partition`: it is sent when a slot is free.
    fn close(&mut self, partition: u32) {
        let Some(lane) = self.lanes.get_mut(&partition) else {
            return;
        };
        let Some(batch) = lane.open.take() else {
            return;
        };
        lane.closed.push_back(batch);
        self.queued += 1;
        self.rotate_sticky(partition);
    }

    fn rotate_sticky(&mut self, partition: u32) {
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

    /// Sends what may go: resends first (in sequence order), then closed
    /// batches and due open ones while the partition and the producer have
    /// free slots.
    fn pump(&mut self, changed: Changed) {
        let now = Instant::now();
        match changed {
            Changed::Lane(partition) => self.pump_lane(partition, now),
            Changed::All => {
                let partitions: Vec<u32> = self.lanes.keys().copied().collect();
                for partition in partitions {
                    self.pump_lane(partition, now);
                }
            }
        }
    }

    /// [`Batcher::pump`] for one partition.
    fn pump_lane(&mut self, partition: u32, now: Instant) {
        self.expire_waiting(partition, now);
        let mut round = Vec::new();
        let Some(lane) = self.lanes.get_mut(&partition) else {
            return;
        };
        if lane.paused_until.is_some_and(|t| t > now) {
            return;
        }
        lane.paused_until = None;
        // Resends start once the oldest unacknowledged batch is among
        // them: while an earlier batch is still on the wire, it may yet
        // fail, and then everything after it goes again anyway.
        if lane.sent.front().is_some_and(|s| s.resend) {
            for sent in lane.sent.iter_mut().filter(|s| s.resend) {
                sent.resend = false;
                round.push((sent.producer, sent.attempt, sent.records.clone()));
            }
        }
        if lane.restart && lane.sent.is_empty() {
            // Earlier batches may have failed without being written, so
            // later numbers would be refused as out of order: carry on
            // under a new identity, from 0.
            lane.restart = false;
            lane.producer_id = random_producer_id();
            lane.next_sequence = 0;
        }
        // New batches go after the resends, never before them.
        let resends_wait = lane.sent.iter().any(|s| s.resend);
        let window = self.config.max_in_flight_per_partition as u64;
        // The bound is on the span of numbers from the oldest
        // unacknowledged batch, not only on their count: the partition
        // recognises a resend only among the producer's last few written
        // batches, and batches after an unacknowledged one may be written
        // and acknowledged while it is resent.
        while !lane.restart
            && !resends_wait
            && lane
                .sent
                .front()
                .is_none_or(|s| lane.next_sequence - s.producer.sequence < window)
            && self.in_flight < self.config.max_in_flight
        {
            let batch = if let Some(batch) = lane.closed.pop_front() {
                self.queued -= 1;
                batch
            } else if lane.open.as_ref().is_some_and(|b| b.deadline <= now) {
                let batch = lane.open.take().expect("checked");
                if partition == self.sticky && self.config.partition.is_none() {
                    self.sticky = (self.sticky + 1) % self.partitions;
                }
                batch
            } else {
                break;
            };
            // Numbered when first sent; every resend carries the same number.
            let producer = ProducerSeq {
                producer_id: lane.producer_id,
                sequence: lane.next_sequence,
            };
            lane.next_sequence += 1;
            self.in_flight += 1;
            round.push((producer, 0, batch.records.clone()));
            lane.sent.push_back(Sent {
                producer,
                records: batch.records,
                replies: batch.replies,
                attempt: 0,
                resend: false,
                created: batch.created,
            });
        }
        if !round.is_empty() {
            self.send_round(partition, round);
        }
    }

    /// How long a batch may wait to be sent: its delivery timeout (at least
    /// its linger). A zero timeout means no retries (at-most-once), not "fail
    /// whatever waits for a slot": such batches wait their linger plus one
    /// request's time.
    fn waiting_expiry(&self) -> Duration {
        let ProducerConfig {
            delivery_timeout,
            linger,
            ..
        } = self.config;
        if delivery_timeout.is_zero() {
            linger + REQUEST_TIMEOUT
        } else {
            delivery_timeout.max(linger)
        }
    }

    /// Fails the batches of `partition` still waiting to be sent whose
    /// [`Batcher::waiting_expiry`] has passed since their first record came
    /// (behind earlier batches that are being retried, or a paused
    /// partition), so that every `send` is answered within about its delivery
    /// timeout, even while the cluster takes nothing. Never sent, they carry
    /// no sequence number, so the partition's order is not touched.
    fn expire_waiting(&mut self, partition: u32, now: Instant) {
        let expiry = self.waiting_expiry();
        let Some(lane) = self.lanes.get_mut(&partition) else {
            return;
        };
        let mut expired = Vec::new();
        while lane
            .closed
            .front()
            .is_some_and(|b| b.created + expiry <= now)
        {
            expired.extend(lane.closed.pop_front());
            self.queued -= 1;
        }
        let open_expired = lane
            .open
            .as_ref()
            .is_some_and(|b| b.created + expiry <= now);
        if open_expired {
            expired.extend(lane.open.take());
        }
        if expired.is_empty() {
            return;
        }
        let behind = lane.last_error.clone();
        let topic = &self.topic;
        tracing::debug!(%topic, partition, batches = expired.len(), "batches expired before they could be sent");
        for batch in expired {
            let error = Arc::new(ClientError::NotSent {
                waited: now - batch.created,
                behind: behind.clone(),
            });
            for reply in batch.replies {
                reply.send(Err(ClientError::Delivery {
                    topic: topic.clone(),
                    partition,
                    attempts: 0,
                    source: error.clone(),
                }));
            }
        }
        if open_expired {
            self.rotate_sticky(partition);
        }
    }

    /// Sends batches of one partition from one task that polls them in
    /// sequence order: each opens its stream and writes its request before
    /// the next one starts, so they leave in order (tasks spawned one per
    /// batch could start in any order).
    fn send_round(&self, partition: u32, round: Vec<(ProducerSeq, u32, Vec<Record>)>) {
        let client = self.client.clone();
        let topic = self.topic.clone();
        let done = self.done_tx.clone();
        let codec = self.compression;
        tokio::spawn(async move {
            let mut attempts: futures::stream::FuturesUnordered<_> = round
                .into_iter()
                .map(|(producer, attempt, records)| {
                    let (client, topic) = (&client, &topic);
                    async move {
                        let result = client
                            .produce_compressed(topic, partition, records, Some(producer), codec)
                            .await
                            .map(|produced| produced.base_offset);
                        Outcome {
                            partition,
                            producer,
                            attempt,
                            result,
                        }
                    }
                })
                .collect();
            while let Some(outcome) = futures::StreamExt::next(&mut attempts).await {
                let _ = done.send(outcome).await;
            }
        });
    }

    fn on_outcome(&mut self, outcome: Outcome) {
        let Outcome {
            partition,
            producer,
            attempt,
            result,
        } = outcome;
        let Some(lane) = self.lanes.get_mut(&partition) else {
            return;
        };
        // Already acknowledged, failed, or renumbered since: nothing to learn.
        let Some(pos) = lane.sent.iter().position(|s| s.producer == producer) else {
            return;
        };
        let error = match result {
            Ok(base_offset) => {
                let sent = lane.sent.remove(pos).expect("found above");
                self.in_flight -= 1;
                lane.backoff = PRODUCER_BACKOFF_MIN;
                lane.last_error = None;
                for (i, reply) in sent.replies.into_iter().enumerate() {
                    let offset = base_offset + i as u64;
                    reply.send(Ok(RecordMetadata { partition, offset }));
                }
                return;
            }
            Err(_) if attempt != lane.sent[pos].attempt => return,
            Err(error) => error,
        };
        let now = Instant::now();
        lane.last_error = Some(error.to_string());
        let sent = &lane.sent[pos];
        let topic = &self.topic;
        if !error.is_retriable()
            || now + lane.backoff >= sent.created + self.config.delivery_timeout
        {
            self.fail_from(partition, pos, error);
            return;
        }
        let out_of_order = match error.wire_error() {
            Some(WireError::OutOfOrderSequence { last_sequence, .. }) => Some(*last_sequence),
            _ => None,
        };
        if pos == 0 && out_of_order == Some(None) {
            // Every earlier batch is acknowledged, yet the partition does not
            // know us: it forgot this producer (it keeps a bounded number).
            // This batch was refused, so later ones were not written either;
            // renumber them from 0 under a new identity and send them again
            // at once. (The one gap: had an earlier attempt of this batch
            // been written and the producer then forgotten, which takes
            // 10,000 other producers writing to the partition in between,
            // the batch would be written twice.)
            tracing::debug!(%topic, partition, "the partition forgot this producer; starting afresh");
            lane.producer_id = random_producer_id();
            for (sequence, sent) in (0u64..).zip(lane.sent.iter_mut()) {
                sent.producer = ProducerSeq {
                    producer_id: lane.producer_id,
                    sequence,
                };
                sent.attempt += 1;
                sent.resend = true;
            }
            lane.next_sequence = lane.sent.len() as u64;
            return;
        }
        // This batch and every later one (which the partition refuses as out
        // of order, or recognises if it was written) go again, in order.
        for sent in lane.sent.iter_mut().skip(pos) {
            sent.attempt += 1;
            sent.resend = true;
        }
        // Overtaken behind a batch still on the wire: nothing is wrong with
        // the partition, so no backoff; the resend waits for that batch. Nor
        // when a new leader is known already: the resend goes to it.
        let leader_known = matches!(error, ClientError::LeaderMoved { .. });
        let backoff =
            (!leader_known && (out_of_order.is_none() || pos == 0)).then_some(lane.backoff);
        tracing::debug!(%topic, partition, sequence = producer.sequence, error = %error, ?backoff, "resending from this batch on");
        if let Some(backoff) = backoff {
            lane.paused_until = Some(now + backoff);
            lane.backoff = (backoff * 2).min(PRODUCER_BACKOFF_MAX);
        }
    }

    /// Batch `pos` of `partition` failed for good: it and every later batch
    /// of the partition fail (a later one cannot be written before it), and
    /// the partition starts afresh once the earlier ones are resolved.
    fn fail_from(&mut self, partition: u32, pos: usize, error: ClientError) {
        let lane = self.lanes.get_mut(&partition).expect("caller found it");
        let error = Arc::new(error);
        let topic = &self.topic;
        tracing::debug!(%topic, partition, %error, "batch failed");
        for sent in lane.sent.drain(pos..) {
            self.in_flight -= 1;
            for reply in sent.replies {
                reply.send(Err(ClientError::Delivery {
                    topic: topic.clone(),
                    partition,
                    attempts: sent.attempt + 1,
                    source: error.clone(),
                }));
            }
        }
        lane.restart = true;
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
