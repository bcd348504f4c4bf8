//! [`OffsetCommitter`]: where a named consumer stands in a topic, committed
//! to the cluster so that the next run resumes there.
//!
//! Offsets are stored by each partition's own Raft group (the client sends
//! a commit to the partition's leader), one per (consumer, partition). A
//! committed offset is the next one to read: one past the last record
//! processed. Committing after processing gives at-least-once delivery: a
//! crash between the two repeats the records since the last commit, never
//! skips one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use sluice_proto::limits::validate_consumer_name;
use sluice_proto::{OffsetCommit, WireError};
use tokio::task::JoinHandle;

use crate::timeouts::AUTO_COMMIT_INTERVAL_DEFAULT;
use crate::{Client, ClientError, Result};

/// When an [`OffsetCommitter`] commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitMode {
    /// In the background every `interval` (only partitions whose position
    /// moved), and on [`OffsetCommitter::close`].
    Auto { interval: Duration },
    /// Only when [`OffsetCommitter::commit`], [`OffsetCommitter::commit_async`]
    /// or [`OffsetCommitter::close`] is called.
    Manual,
}

impl Default for CommitMode {
    fn default() -> Self {
        CommitMode::Auto {
            interval: AUTO_COMMIT_INTERVAL_DEFAULT,
        }
    }
}

/// Tracks a named consumer's position in each partition of one topic and
/// commits it. Cheap to share by reference; dropping it stops auto-commits
/// without a last commit (call [`Self::close`] for that).
pub struct OffsetCommitter {
    shared: Arc<Shared>,
    auto: Option<JoinHandle<()>>,
}

struct Shared {
    client: Client,
    consumer: String,
    topic: String,
    /// Numbers this committer's commits apart from any other's.
    session: u64,
    /// The group member committing, for a consumer group's offsets.
    member: Option<String>,
    /// For a group member: the generation of the coordinator's last answer
    /// it acted on, sent with each commit (see `Client::commit_offset_at`).
    generation: std::sync::atomic::AtomicU64,
    /// What was committed when the committer opened: where to resume, and
    /// the SmartModule state to resume with.
    resume: BTreeMap<u32, (u64, Option<Vec<u8>>)>,
    positions: Mutex<Positions>,
    /// Held for the whole of a commit, so commits go out one after the
    /// other, in number order; holds the next commit number.
    sending: tokio::sync::Mutex<u64>,
}

#[derive(Default)]
struct Positions {
    /// Next offset to read, per partition, as processed so far, and the
    /// SmartModule state as of it.
    current: BTreeMap<u32, (u64, Option<Vec<u8>>)>,
    /// What the cluster holds, as far as this committer knows.
    committed: BTreeMap<u32, u64>,
    /// For a group member: the partitions it was given and still holds
    /// (only those are tracked and committed).
    allowed: BTreeSet<u32>,
}

impl OffsetCommitter {
    /// Reads what `consumer` committed on `topic` (nothing for a new name)
    /// and starts committing in `mode`.
    pub async fn open(
        client: &Client,
        consumer: &str,
        topic: &str,
        mode: CommitMode,
    ) -> Result<Self> {
        Self::open_as(client, consumer, topic, mode, None).await
    }

    /// [`Self::open`] for `member` of the consumer group named `consumer`.
    pub(crate) async fn open_as(
        client: &Client,
        consumer: &str,
        topic: &str,
        mode: CommitMode,
        member: Option<String>,
    ) -> Result<Self> {
        validate_consumer_name(consumer).map_err(|reason| {
            ClientError::Server(WireError::InvalidArgument {
                what: "consumer name".into(),
                reason,
            })
        })?;
        let resume: BTreeMap<u32, (u64, Option<Vec<u8>>)> = client
            .consumer_offsets(Some(consumer), Some(topic))
            .await?
            .into_iter()
            .filter(|o| o.topic == topic)
            .filter_map(|o| Some((o.partition, (o.offset?, o.state))))
            .collect();
        let shared = Arc::new(Shared {
            client: client.clone(),
            consumer: consumer.to_string(),
            topic: topic.to_string(),
            session: sluice_proto::new_request_id()[0],
            member,
            generation: std::sync::atomic::AtomicU64::new(0),
            positions: Mutex::new(Positions {
                current: resume.clone(),
                committed: resume.iter().map(|(p, (o, _))| (*p, *o)).collect(),
                allowed: BTreeSet::new(),
            }),
            resume,
            sending: tokio::sync::Mutex::new(0),
        });
        let auto = match mode {
            CommitMode::Manual => None,
            CommitMode::Auto { interval } => {
                let shared = shared.clone();
                Some(tokio::spawn(async move {
                    let mut tick = tokio::time::interval(interval);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    tick.tick().await;
                    loop {
                        tick.tick().await;
                        if let Err(e) = shared.commit().await {
                            // The next tick commits the then current positions.
                            tracing::warn!(consumer = %shared.consumer, topic = %shared.topic, error = %e, "auto-commit failed; retrying at the next interval");
                        }
                    }
                }))
            }
        };
        Ok(Self { shared, auto })
    }

    /// The offset `partition` resumes at: what was committed when this
    /// committer opened, `None` if nothing was.
    pub fn committed(&self, partition: u32) -> Option<u64> {
        self.shared.resume.get(&partition).map(|(o, _)| *o)
    }

    /// The SmartModule state committed with [`Self::committed`]'s offset
    /// (an aggregate's accumulator to resume with), if any.
    pub fn committed_state(&self, partition: u32) -> Option<&[u8]> {
        self.shared.resume.get(&partition)?.1.as_deref()
    }

    /// Marks the record at `offset` of `partition` as processed: the
    /// position becomes `offset + 1` (positions never move back). The
    /// state, if one was given, stays as it was.
    pub fn processed(&self, partition: u32, offset: u64) {
        self.advance(partition, offset, None);
    }

    /// [`Self::processed`], with the SmartModule state as of that record
    /// (an aggregate's output is its accumulator): committed with the
    /// offset, so that a consumer resuming there resumes the aggregate too.
    pub fn processed_with_state(&self, partition: u32, offset: u64, state: Vec<u8>) {
        self.advance(partition, offset, Some(state));
    }

    fn advance(&self, partition: u32, offset: u64, state: Option<Vec<u8>>) {
        let mut positions = self.shared.lock();
        let next = offset.saturating_add(1);
        // A group member commits only the partitions it was given (and has
        // not given up since); a lone consumer, any it reads.
        if self.shared.member.is_some() && !positions.allowed.contains(&partition) {
            return;
        }
        let at = positions.current.entry(partition).or_insert((next, None));
        if next >= at.0 {
            at.0 = next;
            if state.is_some() {
                at.1 = state;
            }
        }
    }

    /// Starts tracking `partition` at `offset` as committed (a group member
    /// given a partition, at the offset the group committed).
    pub(crate) fn rebase(&self, partition: u32, offset: Option<u64>) {
        let mut positions = self.shared.lock();
        positions.allowed.insert(partition);
        match offset {
            Some(offset) => {
                positions.current.insert(partition, (offset, None));
                positions.committed.insert(partition, offset);
            }
            None => {
                positions.current.remove(&partition);
                positions.committed.remove(&partition);
            }
        }
    }

    /// Where this committer stands in `partition` (processed, committed or
    /// not) and the SmartModule state as of there, if it tracks it.
    pub(crate) fn resume_point(&self, partition: u32) -> Option<(u64, Option<Vec<u8>>)> {
        self.shared.lock().current.get(&partition).cloned()
    }

    /// Stops tracking `partition` (a group member that gave it up): it is
    /// committed no more.
    pub(crate) fn forget(&self, partition: u32) {
        let mut positions = self.shared.lock();
        positions.allowed.remove(&partition);
        positions.current.remove(&partition);
        positions.committed.remove(&partition);
    }

    /// Whether `partition` is tracked (for a group member: given, and not
    /// given up or fenced since).
    pub(crate) fn holds(&self, partition: u32) -> bool {
        self.shared.lock().allowed.contains(&partition)
    }

    /// The position in `partition`: the next offset to read.
    pub fn position(&self, partition: u32) -> Option<u64> {
        self.shared.lock().current.get(&partition).map(|(o, _)| *o)
    }

    /// A group member acts on an answer of generation `generation`: its
    /// commits carry it from now on.
    pub(crate) fn set_generation(&self, generation: u64) {
        self.shared
            .generation
            .store(generation, std::sync::atomic::Ordering::Release);
    }

    /// Commits every position that moved since its last commit; returns
    /// how many partitions it committed. A failure on one partition does
    /// not keep the others from being committed: the first error is
    /// returned after all were tried. A group member's partition whose
    /// commit is refused because it moved to another member is forgotten.
    pub async fn commit(&self) -> Result<usize> {
        self.shared.commit().await
    }

    /// [`Self::commit`] in the background; await the handle for the result.
    pub fn commit_async(&self) -> JoinHandle<Result<usize>> {
        let shared = self.shared.clone();
        tokio::spawn(async move { shared.commit().await })
    }

    /// Stops auto-commits and commits the current positions.
    pub async fn close(mut self) -> Result<usize> {
        if let Some(task) = self.auto.take() {
            task.abort();
        }
        self.shared.commit().await
    }
}

impl Drop for OffsetCommitter {
    fn drop(&mut self) {
        if let Some(task) = self.auto.take() {
            task.abort();
        }
    }
}

/// Commits of one committer in flight at once (one per partition).
const COMMITS_IN_FLIGHT_MAX: usize = 64;

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Positions> {
        self.positions.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn commit(&self) -> Result<usize> {
        let mut next_sequence = self.sending.lock().await;
        let moved: Vec<(u32, u64, Option<Vec<u8>>)> = {
            let positions = self.lock();
            positions
                .current
                .iter()
                .filter(|(p, (at, _))| positions.committed.get(p) != Some(at))
                .map(|(p, (at, state))| (*p, *at, state.clone()))
                .collect()
        };
        // Each partition's commit goes to that partition's leader and is
        // checked there alone (its order within the session is per
        // partition), so the partitions' commits travel at once; they are
        // numbered in order before they leave.
        let generation = self.generation.load(std::sync::atomic::Ordering::Acquire);
        let sends = moved.iter().map(|(partition, offset, state)| {
            let sequence = *next_sequence;
            *next_sequence += 1;
            let commit = OffsetCommit {
                consumer: self.consumer.clone(),
                topic: self.topic.clone(),
                partition: *partition,
                offset: *offset,
                session: self.session,
                sequence,
                state: state.clone(),
                member: self.member.clone(),
            };
            async move {
                let result = if self.member.is_some() {
                    self.client.commit_offset_at(commit, generation).await
                } else {
                    self.client.commit_offset(commit).await
                };
                (*partition, *offset, result)
            }
        });
        let results: Vec<_> = futures::stream::iter(sends.collect::<Vec<_>>())
            .buffer_unordered(COMMITS_IN_FLIGHT_MAX)
            .collect()
            .await;
        let mut first_error = None;
        let mut committed = 0;
        for (partition, offset, result) in results {
            match result {
                Ok(()) => {
                    self.lock().committed.insert(partition, offset);
                    committed += 1;
                }
                Err(e) => {
                    if let ClientError::Server(WireError::FencedMember { .. }) = &e {
                        let mut positions = self.lock();
                        positions.allowed.remove(&partition);
                        positions.current.remove(&partition);
                        positions.committed.remove(&partition);
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(committed),
        }
    }
}
