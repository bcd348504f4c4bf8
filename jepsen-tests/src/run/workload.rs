//! The log workload: writers append unique values one at a time, consumers
//! follow each partition from its leader and from each replica, a watcher
//! records leader changes, and after the heal every node is drained.
//!
//! Outcomes follow the history rules: `ok` only with the acknowledged offset,
//! `fail` only when the cluster definitely did not write (it refused before
//! anything could be proposed), `info` otherwise (a timeout, a lost connection,
//! or an error that can follow a proposal). A writer whose send ends `info`
//! retires that process id and its producer id, and goes on with fresh ones.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use sluice_client::config::{ClientConfig, Profile};
use sluice_client::proto::{
    ConsumerRecord, FetchRequest, ProducerSeq, ReadFrom, Record as WireRecord, StartOffset,
    TopicSpec, WireError, limits::FETCH_RESPONSE_BYTES_DEFAULT,
};
use sluice_client::{Client, ClientError, ConnectOptions};
use tokio::time::{Instant, sleep, timeout};

use super::recorder::Recorder;
use super::rng::Rng;
use crate::history::{Call, FinalRead, LeaderEvent, NodeId, ReadCall, Record, SendCall};

/// How long one send may keep retrying (same producer sequence) before it is `info`.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// A consumer's poll waits this long for records before it returns none.
const POLL_IDLE: Duration = Duration::from_secs(4);
/// Deadline of one request (the client's default is 30 s, far too long here).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// What the workload tasks share.
pub struct Ctx {
    pub rec: Arc<Recorder>,
    pub home: PathBuf,
    pub topic: String,
    pub partitions: u32,
    pub seed: u64,
    /// How writers send their batches: the topic's codec (a topic with a
    /// compression type takes that codec only), or uncompressed.
    pub codec: sluice_client::proto::Compression,
    stop: AtomicBool,
    /// Last observed leader per group (`None`: the controller).
    leaders: Mutex<BTreeMap<Option<u32>, NodeId>>,
}

impl Ctx {
    pub fn new(
        rec: Arc<Recorder>,
        home: PathBuf,
        topic: &str,
        partitions: u32,
        seed: u64,
        codec: sluice_client::proto::Compression,
    ) -> Self {
        Ctx {
            rec,
            home,
            topic: topic.to_string(),
            partitions,
            seed,
            codec,
            stop: AtomicBool::new(false),
            leaders: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The leader of partition 0 as last observed.
    pub fn leader(&self) -> Option<NodeId> {
        self.leaders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&Some(0))
            .copied()
    }
}

/// A client for the run's cluster (profile "local" of the run's home), with
/// short deadlines so a dead node costs seconds, not half a minute.
pub async fn connect(home: &std::path::Path) -> anyhow::Result<Client> {
    connect_to(home, None).await
}

/// [`connect`], to `endpoint` instead of the profile's (e.g. one node only).
pub async fn connect_to(home: &std::path::Path, endpoint: Option<&str>) -> anyhow::Result<Client> {
    let config = ClientConfig::load(home)?;
    let (name, profile) = config
        .profile(Some("local"))
        .with_context(|| format!("no profile \"local\" in {}", home.display()))?;
    let ca_path = Profile::resolve(home, &profile.ca_cert);
    let ca = std::fs::read_to_string(&ca_path)
        .with_context(|| format!("cannot read {}", ca_path.display()))?;
    let options = ConnectOptions {
        profile: Some(name.to_string()),
        ca_source: ca_path.display().to_string(),
        request_timeout: REQUEST_TIMEOUT,
        connect_timeout: Duration::from_secs(1),
    };
    let identity = match (&profile.client_cert, &profile.client_key) {
        (Some(cert), Some(key)) => {
            let read = |path: &std::path::Path| {
                let path = Profile::resolve(home, path);
                std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))
            };
            Some(sluice_client::CertKeyPair {
                cert_pem: read(cert)?,
                key_pem: read(key)?,
            })
        }
        _ => None,
    };
    let endpoint = endpoint.unwrap_or(&profile.endpoint);
    Ok(Client::connect_with(endpoint, &ca, identity, options).await?)
}

/// Creates the workload's topic, retrying while the cluster settles.
pub async fn create_topic(
    ctx: &Ctx,
    replication: u32,
    compression: sluice_client::proto::TopicCompression,
    segment_bytes: Option<u64>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = async {
            let client = connect(&ctx.home).await?;
            let mut spec = TopicSpec::new(ctx.topic.as_str());
            spec.partitions = ctx.partitions;
            spec.replication = replication;
            if let Some(bytes) = segment_bytes {
                spec.segment_size_bytes = bytes;
            }
            // As `topic create` makes it (the key hash of new topics).
            let settings = sluice_client::proto::TopicSettings {
                compression,
                ..sluice_client::proto::TopicSettings::for_new_topic()
            };
            client.create_topic_with(spec, None, settings).await?;
            // Wait until every partition has a leader.
            for _ in 0..100 {
                let ps = client.list_partitions(Some(&ctx.topic)).await?;
                if ps.len() == ctx.partitions as usize && ps.iter().all(|p| p.leader.is_some()) {
                    return anyhow::Ok(());
                }
                sleep(Duration::from_millis(100)).await;
            }
            anyhow::bail!("partitions of {} got no leader", ctx.topic)
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) if e.to_string().contains("already exists") => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(e).context("cannot create the workload topic");
            }
            Err(_) => sleep(Duration::from_millis(500)).await,
        }
    }
}

enum SendOutcome {
    Ok(u64),
    /// Definitely not written; `true` if the producer id must be replaced (the
    /// partition refuses its sequence, e.g. it forgot the producer).
    Fail(String, bool),
    Info(String),
}

/// Whether an error may come after the batch was proposed (so it may be written).
fn maybe_written(e: &ClientError) -> bool {
    match e {
        // The handshake failed: nothing was sent.
        ClientError::NoNode { .. } => false,
        ClientError::Server(w) => !matches!(
            w,
            WireError::UnknownTopic { .. }
                | WireError::UnknownPartition { .. }
                | WireError::InvalidArgument { .. }
                | WireError::RecordTooLarge { .. }
                | WireError::MalformedRequest { .. }
                | WireError::UnsupportedVersion { .. }
                | WireError::SequenceReused { .. }
        ),
        ClientError::RecordTooLarge { .. } | ClientError::InvalidConfig { .. } => false,
        _ => true,
    }
}

/// One send: retried with the same producer sequence (the partition answers a
/// retry of a written batch with its original offset) until [`SEND_TIMEOUT`].
async fn send_one(
    client: &Client,
    topic: &str,
    partition: u32,
    value: &str,
    seq: ProducerSeq,
    codec: sluice_client::proto::Compression,
) -> SendOutcome {
    let deadline = Instant::now() + SEND_TIMEOUT;
    let mut maybe_sent = false;
    let mut last = String::from("no attempt");
    let mut backoff = Duration::from_millis(50);
    loop {
        let now = Instant::now();
        if now >= deadline {
            return if maybe_sent {
                SendOutcome::Info(format!("no answer within {SEND_TIMEOUT:?}: {last}"))
            } else {
                SendOutcome::Fail(
                    format!("no node reachable within {SEND_TIMEOUT:?}: {last}"),
                    false,
                )
            };
        }
        let record = with_headers_if_odd(WireRecord::new(value.as_bytes().to_vec()), value);
        let attempt = client.produce_compressed(topic, partition, vec![record], Some(seq), codec);
        match timeout(deadline - now, attempt).await {
            Ok(Ok(r)) => return SendOutcome::Ok(r.base_offset),
            Ok(Err(ClientError::Server(e @ WireError::OutOfOrderSequence { .. }))) => {
                // Only one batch is ever in flight, so the partition does not
                // know (or no longer remembers) this producer: this batch was
                // not written, and no later one of this producer id can be.
                return if maybe_sent {
                    SendOutcome::Info(e.to_string())
                } else {
                    SendOutcome::Fail(e.to_string(), true)
                };
            }
            Ok(Err(ClientError::Server(e @ WireError::SequenceReused { .. }))) => {
                // Other records hold this (producer, sequence); an earlier
                // attempt of this very batch would have been answered as a
                // resend (same records). So it was not written, and the
                // producer id is spoilt: the workload's ids never collide, so
                // this is a finding worth seeing in the history.
                return SendOutcome::Fail(e.to_string(), true);
            }
            Ok(Err(e)) => {
                let written = maybe_written(&e);
                if !e.is_retriable() {
                    return if written || maybe_sent {
                        SendOutcome::Info(e.to_string())
                    } else {
                        SendOutcome::Fail(e.to_string(), false)
                    };
                }
                maybe_sent |= written;
                last = e.to_string();
            }
            Err(_) => {
                maybe_sent = true;
                last = "request still pending".into();
            }
        }
        sleep(backoff.min(deadline.saturating_duration_since(Instant::now()))).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

/// Bits of a producer id below the writer's number (see [`ProducerIds`]).
pub const PRODUCER_ID_LOW_BITS: u32 = 48;

/// The most writers a run may have: each needs its own value of the top
/// `64 - PRODUCER_ID_LOW_BITS` bits of its producer ids, and 0 is kept for
/// producers that are not writers.
pub const MAX_WRITERS: u32 = (1 << (64 - PRODUCER_ID_LOW_BITS)) - 1;

/// The generator of writer `w` (its partitions and producer ids), derived from
/// the run's seed by hashing, so that no two writers draw the same stream
/// shifted by a few draws (they used to, and then two writers could draw the
/// same producer id: the partition took one writer's batches for resends of
/// the other's and the checker reported anomalies the server did not cause).
pub fn writer_rng(seed: u64, w: u32) -> Rng {
    Rng::derive(seed, "log-writer", u64::from(w))
}

/// The producer ids of one writer, distinct by construction: the writer's
/// number plus one in the top bits (so two writers' ids never meet, whatever
/// their generators draw, and no writer's id is 0 in those bits), random low
/// bits from the writer's generator (so ids vary with the seed, as real
/// clients' do), and a draw this writer already used is drawn again (a writer
/// must never take back a retired id: the partition would answer its new
/// batches as resends of the old ones).
pub struct ProducerIds {
    prefix: u64,
    used: HashSet<u64>,
}

impl ProducerIds {
    /// The ids of writer `w` (`w < MAX_WRITERS`, which [`crate::run::run`] checks).
    pub fn new(w: u32) -> Self {
        assert!(
            w < MAX_WRITERS,
            "writer {w}: at most {MAX_WRITERS} writers have producer ids of their own"
        );
        ProducerIds {
            prefix: (u64::from(w) + 1) << PRODUCER_ID_LOW_BITS,
            used: HashSet::new(),
        }
    }

    /// A fresh id, its low bits from `draw` (the writer's generator).
    pub fn next(&mut self, mut draw: impl FnMut() -> u64) -> u64 {
        loop {
            let id = self.prefix | (draw() & ((1 << PRODUCER_ID_LOW_BITS) - 1));
            if self.used.insert(id) {
                return id;
            }
        }
    }
}

/// Writer `w`: values `"w<w>-<counter>"`, one send at a time, to random partitions.
pub async fn writer(ctx: Arc<Ctx>, w: u32) {
    let mut rng = writer_rng(ctx.seed, w);
    let mut ids = ProducerIds::new(w);
    let mut counter = 0u64;
    while !ctx.stopped() {
        let client = match connect(&ctx.home).await {
            Ok(c) => c,
            Err(_) => {
                sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        // A fresh process and producer id; both retire together on `info`.
        let process = ctx.rec.new_process();
        let mut producer_id = ids.next(|| rng.next_u64());
        // The next sequence per partition: 0, 1, 2, ... with no gap, so a batch
        // that definitely failed gives its number to the next one.
        let mut seqs: HashMap<u32, u64> = HashMap::new();
        while !ctx.stopped() {
            let value = format!("w{w}-{counter}");
            counter += 1;
            let partition = rng.index(ctx.partitions as usize) as u32;
            let seq = seqs.entry(partition).or_insert(0);
            let call = |offset| {
                Call::Send(SendCall {
                    value: value.clone(),
                    partition,
                    offset,
                })
            };
            ctx.rec.invoke(process, call(None), None);
            let seq = ProducerSeq {
                producer_id,
                sequence: *seq,
            };
            match send_one(&client, &ctx.topic, partition, &value, seq, ctx.codec).await {
                SendOutcome::Ok(offset) => {
                    ctx.rec.ok(process, call(Some(offset)), None);
                    *seqs.entry(partition).or_insert(0) += 1;
                }
                SendOutcome::Fail(e, renew) => {
                    ctx.rec.fail(process, call(None), None, e);
                    if renew {
                        producer_id = ids.next(|| rng.next_u64());
                        seqs.clear();
                    }
                    // A refusal comes back at once: do not spin on it.
                    sleep(Duration::from_millis(100)).await;
                }
                SendOutcome::Info(e) => {
                    ctx.rec.info(process, call(None), None, e);
                    break;
                }
            }
        }
        client.close().await;
    }
}

/// Who a consumer reads from.
#[derive(Debug, Clone, Copy)]
pub enum ReadMode {
    /// The partition's leader, wherever it is.
    Leader,
    /// This node's replica, whatever its role.
    Replica(NodeId),
}

/// Odd writers' records carry a header naming their value, even writers'
/// none, so every run writes batches of both formats (with headers: its own
/// Raft command and segment format) through the same faults.
fn with_headers_if_odd(record: WireRecord, value: &str) -> WireRecord {
    if odd_writer(value) {
        record.header("sent", value)
    } else {
        record
    }
}

/// Whether `value` (`w<writer>-<n>`) is an odd writer's.
fn odd_writer(value: &str) -> bool {
    value
        .strip_prefix('w')
        .and_then(|rest| rest.split('-').next())
        .and_then(|w| w.parse::<u64>().ok())
        .is_some_and(|w| w % 2 == 1)
}

/// The records read, as the history keeps them. A record whose headers are
/// not what its writer sent (see [`with_headers_if_odd`]) is kept with its
/// headers appended to its value: a value no writer sent, which the checker
/// reports, so headers lost or damaged under faults do not pass unseen.
fn records(batch: &[ConsumerRecord]) -> Vec<Record> {
    batch
        .iter()
        .map(|r| {
            let value = String::from_utf8_lossy(&r.value);
            let expected: Vec<sluice_client::proto::RecordHeader> = if odd_writer(&value) {
                vec![sluice_client::proto::RecordHeader::new(
                    "sent",
                    r.value.clone(),
                )]
            } else {
                Vec::new()
            };
            if r.headers == expected {
                Record::new(r.offset, value)
            } else {
                Record::new(r.offset, format!("{value} with headers {:?}", r.headers))
            }
        })
        .collect()
}

fn fetch_request(
    topic: &str,
    partition: u32,
    start: StartOffset,
    follow: bool,
    mode: ReadMode,
) -> FetchRequest {
    FetchRequest {
        topic: topic.to_string(),
        partition,
        start,
        end_offset: None,
        max_records: None,
        follow,
        max_bytes: FETCH_RESPONSE_BYTES_DEFAULT as u32,
        read_from: match mode {
            ReadMode::Leader => ReadFrom::Leader,
            ReadMode::Replica(_) => ReadFrom::Any,
        },
        replica: match mode {
            ReadMode::Leader => None,
            ReadMode::Replica(n) => Some(u64::from(n)),
        },
        smartmodules: Vec::new(),
    }
}

fn poll(partition: u32, offset: u64, records: Option<Vec<Record>>) -> Call {
    Call::Poll(ReadCall {
        partition,
        offset,
        records,
    })
}

/// A consumer of one partition: a following fetch, each batch one `poll`. A
/// stream that breaks is a failed poll (reads have no effect, so `fail` is
/// exact) and is reopened from the next offset, keeping the process: its polls
/// must keep increasing.
///
/// A replica consumer whose node no longer holds the partition (it moved)
/// goes on, same process, with a replica of the partition's new assignment.
pub async fn consumer(ctx: Arc<Ctx>, partition: u32, mut mode: ReadMode) {
    let process = ctx.rec.new_process();
    let mut node = match mode {
        ReadMode::Leader => None,
        ReadMode::Replica(n) => Some(n),
    };
    let mut next = 0u64;
    let mut client: Option<Client> = None;
    while !ctx.stopped() {
        let c = match &client {
            Some(c) => c.clone(),
            None => match connect(&ctx.home).await {
                Ok(c) => {
                    client = Some(c.clone());
                    c
                }
                Err(_) => {
                    sleep(Duration::from_millis(300)).await;
                    continue;
                }
            },
        };
        let mut from = next;
        ctx.rec.invoke(process, poll(partition, from, None), node);
        let req = fetch_request(
            &ctx.topic,
            partition,
            StartOffset::Absolute(next),
            true,
            mode,
        );
        let mut stream = match timeout(REQUEST_TIMEOUT * 2, c.fetch(req)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                ctx.rec
                    .fail(process, poll(partition, from, None), node, e.to_string());
                if e.is_retriable() {
                    client = None;
                }
                if let Some(n) = follow_the_partition(&c, &ctx, partition, node).await {
                    mode = ReadMode::Replica(n);
                    node = Some(n);
                }
                sleep(Duration::from_millis(300)).await;
                continue;
            }
            Err(_) => {
                ctx.rec.fail(
                    process,
                    poll(partition, from, None),
                    node,
                    "opening the fetch timed out".into(),
                );
                if let Some(n) = follow_the_partition(&c, &ctx, partition, node).await {
                    mode = ReadMode::Replica(n);
                    node = Some(n);
                }
                client = None;
                continue;
            }
        };
        // The stream's reads are not cancel-safe: a task pumps them into a channel.
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let pump = tokio::spawn(async move {
            loop {
                let batch = stream.next_batch().await;
                let end = !matches!(batch, Ok(Some(_)));
                if tx.send(batch).await.is_err() || end {
                    return;
                }
            }
        });
        let mut invoked = true;
        loop {
            if !invoked {
                if ctx.stopped() {
                    break;
                }
                from = next;
                ctx.rec.invoke(process, poll(partition, from, None), node);
            }
            invoked = false;
            match timeout(POLL_IDLE, rx.recv()).await {
                Ok(Some(Ok(Some(batch)))) => {
                    let rs = records(&batch);
                    ctx.rec.ok(process, poll(partition, from, Some(rs)), node);
                    if let Some(last) = batch.last() {
                        next = last.offset + 1;
                    }
                }
                Ok(Some(Ok(None))) | Ok(None) => {
                    ctx.rec.fail(
                        process,
                        poll(partition, from, None),
                        node,
                        "the fetch ended".into(),
                    );
                    break;
                }
                Ok(Some(Err(e))) => {
                    ctx.rec
                        .fail(process, poll(partition, from, None), node, e.to_string());
                    break;
                }
                Err(_) => {
                    // Nothing new for a while: say so, and reopen in case the
                    // serving node is gone or no longer leads.
                    ctx.rec
                        .ok(process, poll(partition, from, Some(Vec::new())), node);
                    break;
                }
            }
        }
        pump.abort();
    }
}

/// For a replica consumer on `node`: if the partition's assignment no longer
/// has `node`, a node that it has (one per partition, so the consumers spread).
async fn follow_the_partition(
    client: &Client,
    ctx: &Ctx,
    partition: u32,
    node: Option<NodeId>,
) -> Option<NodeId> {
    let node = node?;
    let info = timeout(REQUEST_TIMEOUT, client.describe_topic(&ctx.topic))
        .await
        .ok()?
        .ok()?;
    let mut replicas: Vec<NodeId> = info
        .assignments
        .get(partition as usize)?
        .replicas
        .iter()
        .map(|r| *r as NodeId)
        .collect();
    if replicas.is_empty() || replicas.contains(&node) {
        return None;
    }
    replicas.sort_unstable();
    Some(replicas[partition as usize % replicas.len()])
}

/// Records leader changes of each partition and of the controller, once a second.
pub async fn observe_leaders(ctx: Arc<Ctx>) {
    let mut client: Option<Client> = None;
    while !ctx.stopped() {
        if client.is_none() {
            client = connect(&ctx.home).await.ok();
        }
        if let Some(c) = &client {
            let mut seen: Vec<(Option<u32>, NodeId)> = Vec::new();
            match timeout(REQUEST_TIMEOUT, c.list_partitions(Some(&ctx.topic))).await {
                Ok(Ok(ps)) => seen.extend(
                    ps.iter()
                        .filter_map(|p| Some((Some(p.partition), p.leader? as NodeId))),
                ),
                _ => client = None,
            }
            if let Some(c) = &client
                && let Ok(Ok(s)) = timeout(REQUEST_TIMEOUT, c.cluster_status()).await
                && let Some(l) = s.controller_leader
            {
                seen.push((None, l as NodeId));
            }
            for (group, leader) in seen {
                let changed = {
                    let mut leaders = ctx.leaders.lock().unwrap_or_else(|p| p.into_inner());
                    leaders.insert(group, leader) != Some(leader)
                };
                if changed {
                    ctx.rec.nemesis(Call::Leader(LeaderEvent {
                        partition: group,
                        leader: Some(leader),
                        term: None,
                    }));
                }
            }
        }
        sleep(Duration::from_secs(1)).await;
    }
}

/// What a node answered when asked for its whole log of a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaLog {
    Records(Vec<Record>),
    /// The node holds no replica of the partition, by its metadata: it says
    /// the partition lives elsewhere ("not leader" of a replica read means
    /// "not a replica") or that the topic does not exist. No log, not an
    /// empty one; whether that is right is for the caller to judge against the
    /// partition's assignment.
    NotReplica(String),
    /// The node does not know the topic at all. The workload never deletes
    /// its topic, so after the heal this means the node lost the topic's
    /// metadata with its log: it is recorded as an empty log, and any
    /// acknowledged write is then reported lost.
    TopicGone(String),
}

/// Every record of `partition` on `node`'s replica, from offset 0.
///
/// A node that holds no replica answers at once that it holds none.
pub async fn read_all(
    client: &Client,
    topic: &str,
    partition: u32,
    node: NodeId,
) -> Result<ReplicaLog, ClientError> {
    let req = fetch_request(
        topic,
        partition,
        StartOffset::Beginning,
        false,
        ReadMode::Replica(node),
    );
    let mut stream = match client.fetch(req).await {
        Ok(s) => s,
        Err(ClientError::Server(e @ WireError::UnknownTopic { .. })) => {
            return Ok(ReplicaLog::TopicGone(e.to_string()));
        }
        Err(ClientError::Server(e @ WireError::NotLeader { .. })) => {
            return Ok(ReplicaLog::NotReplica(e.to_string()));
        }
        // The node says outright that it holds no replica of the partition.
        Err(ClientError::Server(e @ WireError::InvalidArgument { .. }))
            if e.to_string().contains("holds no replica") =>
        {
            return Ok(ReplicaLog::NotReplica(e.to_string()));
        }
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    while let Some(batch) = stream.next_batch().await? {
        out.extend(records(&batch));
    }
    Ok(ReplicaLog::Records(out))
}

/// The nodes holding a replica of each partition: its assignment, plus the
/// replicas a running move has not yet dropped. `None` while some partition is
/// still moving and `settled` is asked for, or the cluster does not answer.
pub async fn holders(
    client: &Client,
    ctx: &Ctx,
    settled: bool,
) -> Option<BTreeMap<u32, BTreeSet<NodeId>>> {
    let ps = timeout(
        REQUEST_TIMEOUT * 2,
        client.list_partitions(Some(&ctx.topic)),
    )
    .await
    .ok()?
    .ok()?;
    let mut out = BTreeMap::new();
    for p in ps {
        if settled && !p.leaving.is_empty() {
            return None;
        }
        let nodes = p
            .replicas
            .iter()
            .map(|r| r.node)
            .chain(p.leaving.iter().copied())
            .map(|n| n as NodeId)
            .collect();
        out.insert(p.partition, nodes);
    }
    (out.len() == ctx.partitions as usize).then_some(out)
}

/// Waits until no partition is moving and, for every partition, every node
/// holding a replica returns the same number of records (the replicas caught
/// up after the heal), or `within` passes. The reads here are not recorded;
/// [`final_reads`] follows.
pub async fn converge(ctx: &Ctx, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(client) = connect(&ctx.home).await {
            let mut all_equal = false;
            if let Some(holders) = holders(&client, ctx, true).await {
                all_equal = true;
                'parts: for (p, nodes) in &holders {
                    let mut lens = Vec::new();
                    for &n in nodes {
                        match timeout(
                            Duration::from_secs(10),
                            read_all(&client, &ctx.topic, *p, n),
                        )
                        .await
                        {
                            Ok(Ok(ReplicaLog::Records(rs))) => lens.push(rs.len()),
                            _ => {
                                all_equal = false;
                                break 'parts;
                            }
                        }
                    }
                    if lens.windows(2).any(|w| w[0] != w[1]) {
                        all_equal = false;
                        break;
                    }
                }
            }
            client.close().await;
            if all_equal {
                return true;
            }
        }
        if Instant::now() > deadline {
            return false;
        }
        sleep(Duration::from_secs(1)).await;
    }
}

/// The recorded drain: every partition read from offset 0 on every node, all
/// at once. A node in the partition's final assignment must return its log; a
/// node outside it must say it holds no replica (recorded `not_replica`, which
/// the checkers do not take for an empty log). A node outside it that still
/// serves a copy is asked again, then its copy is recorded as its log.
pub async fn final_reads(ctx: &Arc<Ctx>, nodes: &[NodeId]) {
    let mut holders_now = None;
    for _ in 0..10 {
        if let Ok(client) = connect(&ctx.home).await {
            holders_now = holders(&client, ctx, false).await;
            client.close().await;
        }
        if holders_now.is_some() {
            break;
        }
        sleep(Duration::from_secs(1)).await;
    }
    let holders_now = Arc::new(holders_now);
    let mut reads = tokio::task::JoinSet::new();
    for &n in nodes {
        for p in 0..ctx.partitions {
            let holder = holders_now
                .as_ref()
                .as_ref()
                .map(|h| h.get(&p).is_some_and(|s| s.contains(&n)));
            reads.spawn(final_read(ctx.clone(), n, p, holder));
        }
    }
    while reads.join_next().await.is_some() {}
}

/// Says on the console that a node lost the topic (the history records the
/// empty log; this is for the person reading the run's output).
fn note_topic_gone(_ctx: &Ctx, n: NodeId, p: u32, why: &str) {
    eprintln!(
        "final read of partition {p} on node {n}: the node lost the topic ({why}); recorded as an empty log"
    );
}

/// One recorded drain of `p` on `n`; `holder`: whether the final assignment
/// has a replica of `p` on `n` (`None`: the assignment is unknown).
async fn final_read(ctx: Arc<Ctx>, n: NodeId, p: u32, holder: Option<bool>) {
    let process = ctx.rec.new_drain_process();
    let call = |records, not_replica| {
        Call::FinalRead(FinalRead {
            partition: p,
            records,
            not_replica,
        })
    };
    ctx.rec.invoke(process, call(None, false), Some(n));
    let mut client: Option<Client> = None;
    let mut last = String::new();
    let mut copy = None;
    for _ in 0..3 {
        if client.is_none() {
            match connect(&ctx.home).await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    last = format!("{e:#}");
                    sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let Some(c) = &client else { continue };
        match timeout(Duration::from_secs(15), read_all(c, &ctx.topic, p, n)).await {
            Ok(Ok(ReplicaLog::Records(rs))) if holder != Some(false) => {
                ctx.rec.ok(process, call(Some(rs), false), Some(n));
                return;
            }
            Ok(Ok(ReplicaLog::Records(rs))) => {
                // A copy the node was about to delete: ask again.
                copy = Some(rs);
                sleep(Duration::from_secs(1)).await;
                continue;
            }
            Ok(Ok(ReplicaLog::TopicGone(why))) => {
                note_topic_gone(&ctx, n, p, &why);
                ctx.rec.ok(process, call(Some(Vec::new()), false), Some(n));
                return;
            }
            Ok(Ok(ReplicaLog::NotReplica(_))) if holder == Some(false) => {
                ctx.rec.ok(process, call(None, true), Some(n));
                return;
            }
            Ok(Ok(ReplicaLog::NotReplica(why))) => {
                last = match holder {
                    Some(_) => format!(
                        "node {n} holds a replica of partition {p} by the final assignment, yet answered: {why}"
                    ),
                    None => {
                        format!("the final assignment is unknown, and node {n} answered: {why}")
                    }
                }
            }
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "the read took over 15 s".into(),
        }
        client = None;
        sleep(Duration::from_secs(1)).await;
    }
    if let Some(rs) = copy {
        ctx.rec.ok(process, call(Some(rs), false), Some(n));
        return;
    }
    ctx.rec.info(process, call(None, false), Some(n), last);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finds a value two generators share among their first draws: an
    /// open-addressing table keyed by the values' top bits (they are uniform),
    /// reused across calls (each call's entries carry its round, so nothing is
    /// cleared). Sorting or a `HashSet` took tens of seconds for the
    /// 80 million draws below in a debug build; this takes about two.
    struct SharedValues {
        /// (value, round, stream) per slot; a slot of another round is empty.
        slots: Vec<(u64, u32, u32)>,
        round: u32,
    }

    impl SharedValues {
        fn new() -> Self {
            SharedValues {
                slots: Vec::new(),
                round: 0,
            }
        }

        /// The first value drawn by two of `streams` within their first
        /// `draws` draws, with the two streams' indexes.
        fn first(&mut self, streams: &[Rng], draws: usize) -> Option<(usize, usize, u64)> {
            let bits = (2 * streams.len() * draws)
                .next_power_of_two()
                .trailing_zeros();
            if self.slots.len() != 1 << bits {
                self.slots = vec![(0, 0, 0); 1 << bits];
                self.round = 0;
            }
            self.round += 1;
            let mask = (1usize << bits) - 1;
            for (k, s) in streams.iter().enumerate() {
                let mut s = s.clone();
                for _ in 0..draws {
                    let v = s.next_u64();
                    let mut i = (v >> (64 - bits)) as usize;
                    loop {
                        let (held, round, by) = self.slots[i];
                        if round != self.round {
                            self.slots[i] = (v, self.round, k as u32);
                            break;
                        }
                        if held == v {
                            return Some((by as usize, k, v));
                        }
                        i = (i + 1) & mask;
                    }
                }
            }
            None
        }
    }

    /// The regression test of the writer-seeding bug: writer `w` was seeded
    /// with `seed ^ (w + 1) * GAMMA`, SplitMix64's own increment, so its
    /// stream was often writer 0's shifted by a few draws (for seed 0, writer
    /// 1's first draw was writer 0's second; 602 of the seeds below had two
    /// writers sharing a value), and after reconnects two writers could draw
    /// the same producer id. Every value a writer draws may become (the low
    /// bits of) a producer id, so no two of 8 writers may share any of their
    /// first 10,000 draws, for seeds 0 to 999.
    #[test]
    fn writers_never_draw_the_same_value() {
        const WRITERS: u32 = 8;
        const DRAWS: usize = 10_000;
        let mut shared = SharedValues::new();
        // The check must catch the old seeding, or it proves nothing.
        let old: Vec<Rng> = (0..WRITERS)
            .map(|w| Rng::new((u64::from(w) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)))
            .collect();
        let mut w0 = old[0].clone();
        w0.next_u64();
        let second_of_writer_0 = w0.next_u64();
        assert_eq!(
            shared.first(&old[..2], DRAWS),
            Some((0, 1, second_of_writer_0)),
            "the check misses writer 1 of seed 0 drawing writer 0's second value first"
        );
        for seed in 0..1000u64 {
            let writers: Vec<Rng> = (0..WRITERS).map(|w| writer_rng(seed, w)).collect();
            if let Some((a, b, v)) = shared.first(&writers, DRAWS) {
                panic!("seed {seed}: writers {a} and {b} both draw {v:#x}");
            }
        }
    }

    /// Every stream of one run, the schedule's (the seed's own), the writers'
    /// and the SmartModule workers', is its own: none shares a value with
    /// another in its first draws.
    #[test]
    fn the_streams_of_a_run_are_all_distinct() {
        let mut shared = SharedValues::new();
        for seed in 0..200u64 {
            let mut streams = vec![Rng::new(seed)];
            streams.extend((0..8).map(|w| writer_rng(seed, w)));
            streams.extend((0..8).map(|w| crate::run::smartmodule::worker_rng(seed, w)));
            if let Some((a, b, v)) = shared.first(&streams, 1_000) {
                panic!("seed {seed}: streams {a} and {b} both draw {v:#x}");
            }
        }
    }

    #[test]
    fn producer_ids_of_two_writers_never_meet_and_none_comes_back() {
        // The same draws for both writers: their ids still differ, by the top bits.
        let draws = [5u64, 5, u64::MAX, 5 | (1 << 60), 9];
        let ids_of = |w: u32| {
            let mut ids = ProducerIds::new(w);
            let mut d = draws.iter().copied();
            (0..3)
                .map(|_| ids.next(|| d.next().expect("ran out of draws")))
                .collect::<Vec<u64>>()
        };
        let low = (1u64 << PRODUCER_ID_LOW_BITS) - 1;
        let (a, b) = (ids_of(0), ids_of(7));
        // 5 drawn again is redrawn; u64::MAX keeps only its low bits; and
        // 5 | 1 << 60 is 5 again once its high bits are dropped, so redrawn.
        assert_eq!(a, vec![1 << 48 | 5, 1 << 48 | low, 1 << 48 | 9]);
        assert_eq!(b, vec![8 << 48 | 5, 8 << 48 | low, 8 << 48 | 9]);
        // The largest writer number still has ids of its own, above all others.
        let mut last = ProducerIds::new(MAX_WRITERS - 1);
        assert_eq!(
            last.next(|| 0) >> PRODUCER_ID_LOW_BITS,
            u64::from(MAX_WRITERS)
        );
        // And a writer's ids replay with its seed.
        let run = |seed| {
            let mut rng = writer_rng(seed, 3);
            let mut ids = ProducerIds::new(3);
            (0..4)
                .map(|_| ids.next(|| rng.next_u64()))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(11), run(11));
        assert_ne!(run(11), run(12));
    }

    #[test]
    #[should_panic(expected = "at most 65535 writers")]
    fn a_writer_beyond_the_id_space_is_refused() {
        ProducerIds::new(MAX_WRITERS);
    }

    #[test]
    fn records_whose_headers_differ_from_what_their_writer_sent_read_as_values_never_sent() {
        let read = |value: &str, sent_headers: bool| ConsumerRecord {
            partition: 0,
            offset: 4,
            key: None,
            value: value.as_bytes().to_vec(),
            timestamp_ms: 0,
            headers: if sent_headers {
                with_headers_if_odd(WireRecord::new(value.as_bytes().to_vec()), "w1-0").headers
            } else {
                Vec::new()
            },
        };
        // As sent: odd writers with the header, even writers without.
        let sent = with_headers_if_odd(WireRecord::new(b"w3-7".to_vec()), "w3-7");
        assert_eq!(sent.headers.len(), 1);
        assert!(
            with_headers_if_odd(WireRecord::new(b"w2-7".to_vec()), "w2-7")
                .headers
                .is_empty()
        );
        let ok = records(&[read("w1-0", true), read("w2-5", false)]);
        assert_eq!(ok[0].value, "w1-0");
        assert_eq!(ok[1].value, "w2-5");
        // Lost, or present where none was sent: another value.
        let bad = records(&[read("w1-0", false), read("w2-5", true)]);
        assert!(
            bad[0].value.starts_with("w1-0 with headers"),
            "{:?}",
            bad[0]
        );
        assert!(
            bad[1].value.starts_with("w2-5 with headers"),
            "{:?}",
            bad[1]
        );
    }
}
