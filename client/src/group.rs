//! [`GroupConsumer`]: one member of a consumer group, reading the partitions
//! the group's coordinator gives it and committing its position in each.
//!
//! The member heartbeats to the coordinator (the controller's leader; any
//! node forwards) every [`GroupConfig::heartbeat_interval`]. Each answer
//! lists the partitions it may read, with the group's committed offset in
//! each: it starts a reader for each new one there, and for each one taken
//! away it stops the reader, waits (a bounded time) until the records
//! already handed out were processed, commits, forgets the partition, and
//! only then says, in its next heartbeat, that it no longer reads it; the
//! coordinator then gives it to another member. A partition whose commit
//! failed for a reason other than fencing stays reported as held (its reader
//! stopped) and is committed again at the next answer.
//!
//! A member that has had no answer for [`FENCE_FRACTION`] of its session
//! timeout, counted from when it sent the last heartbeat that was answered,
//! stops reading everything: the coordinator drops it only after the whole
//! timeout counted from when it received that heartbeat, so the member stops
//! first. Its later commits are refused. Delivery is at least once: a
//! crashed member's partitions resume at its last commit.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_proto::limits::FETCH_RESPONSE_BYTES_DEFAULT;
use sluice_proto::{
    AssignmentStrategy, ConsumerRecord, FetchRequest, GroupAssignment, GroupHeartbeat, ReadFrom,
    Request, Response, SmartModuleInvocation, StartOffset,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::timeouts::{
    Backoff, GROUP_HEARTBEAT_INTERVAL_DEFAULT, GROUP_JOIN_BACKOFF_FIRST,
    GROUP_SESSION_TIMEOUT_DEFAULT, RETRY_BACKOFF_MAX, REVOKE_POLL_INTERVAL, REVOKE_WAIT_MAX,
};
use crate::{Client, ClientError, CommitMode, OffsetCommitter, Result};

/// How a member joins and reads.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// The coordinator drops a member it has not heard from for this long
    /// (1 s to 5 min).
    pub session_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub strategy: AssignmentStrategy,
    pub commit: CommitMode,
    /// Where to start in a partition the group has committed nothing in.
    pub start: StartOffset,
    pub read_from: ReadFrom,
    pub smartmodules: Vec<SmartModuleInvocation>,
    /// The last of `smartmodules` is an aggregate: its output is its
    /// accumulator, committed with each offset, and a member given the
    /// partition (this one or another) resumes the aggregate from it.
    pub checkpoint_aggregate: bool,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            session_timeout: GROUP_SESSION_TIMEOUT_DEFAULT,
            heartbeat_interval: GROUP_HEARTBEAT_INTERVAL_DEFAULT,
            strategy: AssignmentStrategy::default(),
            commit: CommitMode::default(),
            start: StartOffset::End,
            read_from: ReadFrom::Leader,
            smartmodules: Vec::new(),
            checkpoint_aggregate: false,
        }
    }
}

/// What a member sees.
#[derive(Debug, PartialEq, Eq)]
pub enum GroupEvent {
    /// These partitions are now read by this member.
    Assigned(Vec<u32>),
    /// These were taken away (their positions were committed first).
    Revoked(Vec<u32>),
    Records(Vec<ConsumerRecord>),
}

/// The share of the session timeout after which a member that has had no
/// answer stops reading (the coordinator waits for the whole of it).
pub const FENCE_FRACTION: f64 = 0.75;

/// One member of a consumer group; dropping it stops it without a last
/// commit or a goodbye (its partitions move after the session timeout):
/// call [`Self::leave`] to hand them over at once.
pub struct GroupConsumer {
    shared: Arc<Shared>,
    /// Assignment changes and errors: few (at most two per heartbeat), so
    /// never blocking the heartbeat loop behind a slow application.
    control: mpsc::UnboundedReceiver<Result<GroupEvent>>,
    records: mpsc::Receiver<Result<GroupEvent>>,
    task: Option<JoinHandle<()>>,
    /// The records of the last event, processed when the next is asked for
    /// (with their values where they are an aggregate's state).
    last: Vec<(u32, u64, Option<Vec<u8>>)>,
}

struct Shared {
    client: Client,
    group: String,
    topic: String,
    member: String,
    config: GroupConfig,
    committer: OffsetCommitter,
    control: mpsc::UnboundedSender<Result<GroupEvent>>,
    records: mpsc::Sender<Result<GroupEvent>>,
    /// Partitions held: a running reader, or `None` once stopped while the
    /// commit that releases it has not gone through.
    readers: tokio::sync::Mutex<BTreeMap<u32, Option<JoinHandle<()>>>>,
    /// Per held partition: the last offset handed out, the last processed.
    progress: Mutex<BTreeMap<u32, Progress>>,
    /// The generation of the last answer acted on.
    generation: Mutex<u64>,
}

type Progress = (Option<u64>, Option<u64>);

impl GroupConsumer {
    /// Joins `group` (created by its first member) to read `topic`.
    pub async fn join(
        client: &Client,
        group: &str,
        topic: &str,
        config: GroupConfig,
    ) -> Result<Self> {
        let member = format!("{:016x}", sluice_proto::new_request_id()[0]);
        let committer =
            OffsetCommitter::open_as(client, group, topic, config.commit, Some(member.clone()))
                .await?;
        let (control_tx, control) = mpsc::unbounded_channel();
        let (records_tx, records) = mpsc::channel(16);
        let shared = Arc::new(Shared {
            client: client.clone(),
            group: group.to_string(),
            topic: topic.to_string(),
            member,
            config,
            committer,
            control: control_tx,
            records: records_tx,
            readers: Default::default(),
            progress: Default::default(),
            generation: Mutex::new(0),
        });
        // The first heartbeat here, so a wrong topic or group fails `join`;
        // one that gets no answer in time (a node just restarted, an
        // election) is retried for up to `ADMIN_RETRY_BUDGET`.
        let deadline = Instant::now() + crate::ADMIN_RETRY_BUDGET;
        let mut backoff = Backoff::new(GROUP_JOIN_BACKOFF_FIRST, RETRY_BACKOFF_MAX);
        let (first, sent) = loop {
            let sent = Instant::now();
            match shared.heartbeat().await {
                Ok(answer) => break (answer, sent),
                Err(e) if e.is_retriable() && Instant::now() + backoff.next() < deadline => {
                    tracing::debug!(group, error = %e, "first group heartbeat failed; retrying");
                    backoff.wait().await;
                }
                Err(e) => return Err(e),
            }
        };
        let task = tokio::spawn(run(shared.clone(), first, sent));
        Ok(Self {
            shared,
            control,
            records,
            task: Some(task),
            last: Vec::new(),
        })
    }

    /// This member's id. Keep it to yourself: it is all a `LeaveGroup`
    /// needs besides a consume grant (lists show its first 8 characters).
    pub fn member_id(&self) -> &str {
        &self.shared.member
    }

    /// The next event; the records of the previous one count as processed.
    /// Records of a partition this member gave up are not handed out once
    /// it has (its next reader reads them again from the committed offset).
    pub async fn next_event(&mut self) -> Option<Result<GroupEvent>> {
        for (p, o, state) in std::mem::take(&mut self.last) {
            self.shared.processed(p, o, state);
        }
        loop {
            let mut event = tokio::select! {
                biased;
                Some(event) = self.control.recv() => event,
                Some(event) = self.records.recv() => event,
                else => return None,
            };
            if let Ok(GroupEvent::Records(records)) = &mut event {
                let progress = self
                    .shared
                    .progress
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                records.retain(|r| progress.contains_key(&r.partition));
                drop(progress);
                if records.is_empty() {
                    continue;
                }
                let keep = self.shared.config.checkpoint_aggregate;
                self.last = records
                    .iter()
                    .map(|r| (r.partition, r.offset, keep.then(|| r.value.clone())))
                    .collect();
            }
            return Some(event);
        }
    }

    /// The events as a stream (each item after the first marks the
    /// previous batch processed, as [`Self::next_event`] does). The
    /// member keeps running while the stream lives; dropping it is a crash,
    /// not a goodbye (see [`Self::leave`]).
    pub fn into_stream(self) -> impl futures::Stream<Item = Result<GroupEvent>> + Send + Unpin {
        Box::pin(futures::stream::unfold(self, |mut member| async move {
            let event = member.next_event().await?;
            Some((event, member))
        }))
    }

    /// Marks `record` processed now (instead of at the next event).
    pub fn processed(&self, record: &ConsumerRecord) {
        let state = self
            .shared
            .config
            .checkpoint_aggregate
            .then(|| record.value.clone());
        self.shared
            .processed(record.partition, record.offset, state);
    }

    /// Commits the positions of the partitions this member reads.
    pub async fn commit(&self) -> Result<usize> {
        self.shared.committer.commit().await
    }

    /// Stops reading, commits what was processed (records handed out by
    /// the last event count only if [`Self::processed`] was called for
    /// them), and leaves the group: its partitions go to the others at once.
    pub async fn leave(mut self) -> Result<()> {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let all: Vec<u32> = self.shared.readers.lock().await.keys().copied().collect();
        self.records.close();
        self.shared.revoke(&all, Duration::ZERO).await;
        let request = Request::LeaveGroup {
            group: self.shared.group.clone(),
            topic: self.shared.topic.clone(),
            member: self.shared.member.clone(),
        };
        match self.shared.client.request(request).await? {
            Response::GroupLeft => Ok(()),
            other => Err(self.shared.unexpected("leave group", &other)),
        }
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Ok(readers) = self.shared.readers.try_lock() {
            readers.values().flatten().for_each(JoinHandle::abort);
        }
    }
}

impl Shared {
    fn unexpected(&self, what: &'static str, other: &Response) -> ClientError {
        ClientError::Protocol {
            endpoint: self.client.endpoint().to_string(),
            what,
            reason: format!("unexpected answer {other:?}"),
        }
    }

    fn processed(&self, partition: u32, offset: u64, state: Option<Vec<u8>>) {
        if let Some(entry) = self
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&partition)
        {
            entry.1 = entry.1.max(Some(offset));
        }
        match state {
            Some(state) => self
                .committer
                .processed_with_state(partition, offset, state),
            None => self.committer.processed(partition, offset),
        }
    }

    /// A quarter of the session timeout: the longest any one step of the
    /// heartbeat loop may take, so it keeps heartbeating in time.
    fn step_bound(&self) -> Duration {
        self.config.session_timeout / 4
    }

    async fn heartbeat(&self) -> Result<GroupAssignment> {
        let owned = self.readers.lock().await.keys().copied().collect();
        let generation = *self.generation.lock().unwrap_or_else(|p| p.into_inner());
        let request = Request::GroupHeartbeat(GroupHeartbeat {
            group: self.group.clone(),
            topic: self.topic.clone(),
            member: self.member.clone(),
            strategy: self.config.strategy,
            session_timeout_ms: self.config.session_timeout.as_millis() as u64,
            owned,
            generation,
        });
        let wait = self.step_bound();
        match tokio::time::timeout(wait, self.client.request(request)).await {
            Ok(Ok(Response::GroupAssignment(a))) => Ok(a),
            Ok(Ok(other)) => Err(self.unexpected("group heartbeat", &other)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClientError::Timeout {
                endpoint: self.client.endpoint().to_string(),
                what: "group heartbeat",
                after: wait,
            }),
        }
    }

    /// Stops reading `partitions`, waits up to `wait` for what was handed
    /// out to be processed, commits, and forgets those whose commit went
    /// through (or was refused because they moved on); the others stay
    /// held, stopped, for the next try. Returns the ones given up.
    async fn revoke(&self, partitions: &[u32], wait: Duration) -> Vec<u32> {
        {
            let mut readers = self.readers.lock().await;
            for p in partitions {
                if let Some(Some(reader)) = readers.get_mut(p).map(Option::take) {
                    reader.abort();
                }
            }
        }
        let deadline = Instant::now() + wait.min(self.step_bound());
        while Instant::now() < deadline && !self.caught_up(partitions) {
            tokio::time::sleep(REVOKE_POLL_INTERVAL).await;
        }
        let failed = match tokio::time::timeout(self.step_bound(), self.committer.commit()).await {
            Ok(Ok(_)) => false,
            Ok(Err(ClientError::Server(sluice_proto::WireError::FencedMember { .. }))) => false,
            Ok(Err(e)) => {
                tracing::warn!(group = %self.group, error = %e, "could not commit partitions being given up; keeping them until it can");
                true
            }
            Err(_) => true,
        };
        // After a failed commit, only those that moved on (forgotten by the
        // committer when it was refused) are given up.
        let mut given_up = Vec::new();
        let mut readers = self.readers.lock().await;
        let mut progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        for p in partitions {
            if failed && self.committer.holds(*p) {
                continue;
            }
            self.committer.forget(*p);
            progress.remove(p);
            readers.remove(p);
            given_up.push(*p);
        }
        given_up
    }

    fn caught_up(&self, partitions: &[u32]) -> bool {
        let progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        partitions
            .iter()
            .all(|p| progress.get(p).is_none_or(|(handed, done)| handed <= done))
    }

    /// Starts reading `partition` from `committed` (the group's offset
    /// there, as the coordinator sent it), or from the configured start;
    /// an aggregate resumes from `state`, committed with that offset.
    async fn assign(
        self: &Arc<Self>,
        partition: u32,
        committed: Option<u64>,
        state: Option<Vec<u8>>,
    ) {
        self.committer.rebase(partition, committed);
        self.start_reader(partition, committed, state).await;
    }

    /// Starts reading `partition` at `from` (where the config's start says
    /// if `None`), an aggregate resuming from `state` where there is one.
    async fn start_reader(
        self: &Arc<Self>,
        partition: u32,
        from: Option<u64>,
        state: Option<Vec<u8>>,
    ) {
        let committed = from;
        let mut smartmodules = self.config.smartmodules.clone();
        if self.config.checkpoint_aggregate
            && committed.is_some()
            && let (Some(state), Some(last)) = (state, smartmodules.last_mut())
        {
            last.initial = Some(state);
        }
        let start = committed.map_or(self.config.start, StartOffset::Absolute);
        self.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(partition, (None, None));
        let request = FetchRequest {
            topic: self.topic.clone(),
            partition,
            start,
            end_offset: None,
            max_records: None,
            follow: true,
            max_bytes: FETCH_RESPONSE_BYTES_DEFAULT as u32,
            read_from: self.config.read_from,
            replica: None,
            smartmodules,
        };
        let me = self.clone();
        let reader = tokio::spawn(async move {
            let mut consumer = me.client.consume(request);
            loop {
                match consumer.next_batch().await {
                    Ok(Some(batch)) => {
                        if let Some(last) = batch.last()
                            && let Some(entry) = me
                                .progress
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_mut(&partition)
                        {
                            entry.0 = Some(last.offset);
                        }
                        if me
                            .records
                            .send(Ok(GroupEvent::Records(batch)))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = me.control.send(Err(e));
                        return;
                    }
                }
            }
        });
        self.readers.lock().await.insert(partition, Some(reader));
    }

    /// Acts on an answer: gives up what it no longer lists, starts what is
    /// new. Returns whether something was given up (the coordinator waits
    /// to hear it).
    async fn apply(self: &Arc<Self>, answer: GroupAssignment) -> bool {
        let assigned: BTreeSet<u32> = answer.assigned.iter().copied().collect();
        let held: BTreeMap<u32, bool> = self
            .readers
            .lock()
            .await
            .iter()
            .map(|(p, r)| (*p, r.is_some()))
            .collect();
        let gone: Vec<u32> = held
            .keys()
            .filter(|p| !assigned.contains(p))
            .copied()
            .collect();
        let mut released = false;
        if !gone.is_empty() {
            let given_up = self.revoke(&gone, REVOKE_WAIT_MAX).await;
            if !given_up.is_empty() {
                tracing::info!(group = %self.group, partitions = ?given_up, "partitions given up");
                let _ = self.control.send(Ok(GroupEvent::Revoked(given_up)));
                released = true;
            }
        }
        // After the partitions given up were committed (under the last
        // generation they were held in: a partition already given to
        // another member refuses that), before those this answer starts:
        // they were fenced at its generation, and refuse older ones.
        self.committer.set_generation(answer.generation);
        let committed: BTreeMap<u32, u64> = answer.committed.into_iter().collect();
        let mut states: BTreeMap<u32, Vec<u8>> = answer
            .states
            .into_iter()
            .map(|(p, s)| (p, s.into_vec()))
            .collect();
        // Stopped for a release that has not gone through, and given back,
        // or new: read from the group's offset.
        let start: Vec<u32> = assigned
            .iter()
            .filter(|p| held.get(p) != Some(&true))
            .copied()
            .collect();
        if !start.is_empty() {
            tracing::info!(group = %self.group, partitions = ?start, "partitions assigned");
            // Said before any of their records can be handed out (events
            // come before records), so the application sees it first.
            let _ = self.control.send(Ok(GroupEvent::Assigned(start.clone())));
        }
        for p in &start {
            // Stopped for a release that did not go through, and given back:
            // this member owned it all along (the coordinator fenced it for
            // nobody else), so it goes on from its own position, which may
            // be past the last commit that got through.
            let own = (held.get(p) == Some(&false))
                .then(|| self.committer.resume_point(*p))
                .flatten();
            match own {
                Some((offset, state)) => self.start_reader(*p, Some(offset), state).await,
                None => {
                    self.assign(*p, committed.get(p).copied(), states.remove(p))
                        .await
                }
            }
        }
        *self.generation.lock().unwrap_or_else(|p| p.into_inner()) = answer.generation;
        released
    }

    /// Stops reading everything: the coordinator has dropped this member.
    async fn fence(&self) {
        let all: Vec<u32> = {
            let mut readers = self.readers.lock().await;
            readers.values().flatten().for_each(JoinHandle::abort);
            std::mem::take(&mut *readers).into_keys().collect()
        };
        if all.is_empty() {
            return;
        }
        let mut progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        for p in &all {
            self.committer.forget(*p);
            progress.remove(p);
        }
        drop(progress);
        *self.generation.lock().unwrap_or_else(|p| p.into_inner()) = 0;
        tracing::warn!(group = %self.group, "no answer from the coordinator within the session timeout: stopped reading; rejoining");
        let _ = self.control.send(Ok(GroupEvent::Revoked(all)));
    }
}

/// Heartbeats and follows the assignment until the member is dropped.
async fn run(shared: Arc<Shared>, first: GroupAssignment, first_sent: Instant) {
    let fence_after = shared.config.session_timeout.mul_f64(FENCE_FRACTION);
    let mut answer: Result<GroupAssignment> = Ok(first);
    let mut sent = first_sent;
    let mut last_ok = first_sent;
    loop {
        let mut again_at_once = false;
        match answer {
            Ok(assignment) => {
                last_ok = sent;
                again_at_once = shared.apply(assignment).await;
            }
            Err(e) if !e.is_retriable() => {
                shared.fence().await;
                let _ = shared.control.send(Err(e));
                return;
            }
            Err(e) => tracing::warn!(group = %shared.group, error = %e, "group heartbeat failed"),
        }
        if last_ok.elapsed() > fence_after {
            shared.fence().await;
        }
        if !again_at_once {
            tokio::time::sleep(shared.config.heartbeat_interval).await;
        }
        sent = Instant::now();
        answer = shared.heartbeat().await;
    }
}
