//! [`GroupConsumer`]: one member of a consumer group, reading the partitions
//! the group's coordinator gives it and committing its position in each.
//!
//! The member heartbeats to the coordinator (the controller's leader; any
//! node forwards) every [`GroupConfig::heartbeat_interval`]. Each answer
//! lists the partitions it may read: it starts a reader for each new one at
//! the group's committed offset, and for each one taken away it stops the
//! reader, waits (a bounded time) until the records already handed out were
//! processed, commits, forgets the partition, and only then says, in its next
//! heartbeat, that it no longer reads it; the coordinator then gives it to
//! another member. A member that has had no answer for its session timeout
//! stops reading everything (the coordinator has dropped it by then) and
//! rejoins. Delivery is at least once: a crashed member's partitions resume
//! at its last commit.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_proto::limits::FETCH_RESPONSE_BYTES_DEFAULT;
use sluice_proto::{
    AssignmentStrategy, ConsumerRecord, FetchRequest, GroupHeartbeat, ReadFrom, Request, Response,
    SmartModuleInvocation, StartOffset,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

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
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            session_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
            strategy: AssignmentStrategy::default(),
            commit: CommitMode::default(),
            start: StartOffset::End,
            read_from: ReadFrom::Leader,
            smartmodules: Vec::new(),
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

/// How long a revoked partition waits for its handed-out records to be
/// processed before it is committed as it stands (later records repeat).
const REVOKE_WAIT_MAX: Duration = Duration::from_secs(5);

/// One member of a consumer group; dropping it stops it without a last
/// commit or a goodbye (its partitions move after the session timeout):
/// call [`Self::leave`] to hand them over at once.
pub struct GroupConsumer {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Result<GroupEvent>>,
    task: Option<JoinHandle<()>>,
    /// The records of the last event, processed when the next is asked for.
    last: Vec<(u32, u64)>,
}

struct Shared {
    client: Client,
    group: String,
    topic: String,
    member: String,
    config: GroupConfig,
    committer: OffsetCommitter,
    tx: mpsc::Sender<Result<GroupEvent>>,
    readers: tokio::sync::Mutex<BTreeMap<u32, JoinHandle<()>>>,
    progress: Mutex<BTreeMap<u32, Progress>>,
}

/// Per partition: the last offset handed out, the last processed.
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
        let (tx, rx) = mpsc::channel(16);
        let shared = Arc::new(Shared {
            client: client.clone(),
            group: group.to_string(),
            topic: topic.to_string(),
            member,
            config,
            committer,
            tx,
            readers: Default::default(),
            progress: Default::default(),
        });
        // The first heartbeat here, so a wrong topic or group fails `join`.
        let first = shared.heartbeat().await?;
        let task = tokio::spawn(run(shared.clone(), first));
        Ok(Self {
            shared,
            rx,
            task: Some(task),
            last: Vec::new(),
        })
    }

    /// This member's id, as `sluice consumer describe` shows owners.
    pub fn member_id(&self) -> &str {
        &self.shared.member
    }

    /// The next event; the records of the previous one count as processed.
    /// Records of a partition this member gave up are not handed out once
    /// it has (they were read before, and its next reader reads them again
    /// from the committed offset).
    pub async fn next_event(&mut self) -> Option<Result<GroupEvent>> {
        for (p, o) in std::mem::take(&mut self.last) {
            self.shared.processed(p, o);
        }
        loop {
            let mut event = self.rx.recv().await?;
            if let Ok(GroupEvent::Records(records)) = &mut event {
                let progress = self.shared.progress.lock().unwrap_or_else(|p| p.into_inner());
                records.retain(|r| progress.contains_key(&r.partition));
                drop(progress);
                if records.is_empty() {
                    continue;
                }
                self.last = records.iter().map(|r| (r.partition, r.offset)).collect();
            }
            return Some(event);
        }
    }

    /// Marks `record` processed now (instead of at the next event).
    pub fn processed(&self, record: &ConsumerRecord) {
        self.shared.processed(record.partition, record.offset);
    }

    /// Commits the positions of the partitions this member reads.
    pub async fn commit(&self) -> Result<usize> {
        self.shared.committer.commit().await
    }

    /// Stops reading, commits, and leaves the group: its partitions go to
    /// the other members at once.
    pub async fn leave(mut self) -> Result<()> {
        for (p, o) in std::mem::take(&mut self.last) {
            self.shared.processed(p, o);
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let all: Vec<u32> = self.shared.readers.lock().await.keys().copied().collect();
        // The records still queued will not be read: do not wait for them.
        self.rx.close();
        self.shared.revoke(&all, Duration::ZERO).await;
        let request = Request::LeaveGroup {
            group: self.shared.group.clone(),
            member: self.shared.member.clone(),
        };
        match self.shared.client.request(request).await? {
            Response::GroupLeft => Ok(()),
            other => Err(ClientError::Protocol {
                endpoint: self.shared.client.endpoint().to_string(),
                what: "leave group",
                reason: format!("unexpected answer {other:?}"),
            }),
        }
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Ok(readers) = self.shared.readers.try_lock() {
            readers.values().for_each(JoinHandle::abort);
        }
    }
}

impl Shared {
    fn processed(&self, partition: u32, offset: u64) {
        if let Some(entry) = self
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&partition)
        {
            entry.1 = entry.1.max(Some(offset));
        }
        self.committer.processed(partition, offset);
    }

    async fn heartbeat(&self) -> Result<sluice_proto::GroupAssignment> {
        let owned = self.readers.lock().await.keys().copied().collect();
        let request = Request::GroupHeartbeat(GroupHeartbeat {
            group: self.group.clone(),
            topic: self.topic.clone(),
            member: self.member.clone(),
            strategy: self.config.strategy,
            session_timeout_ms: self.config.session_timeout.as_millis() as u64,
            owned,
        });
        match self.client.request(request).await? {
            Response::GroupAssignment(a) => Ok(a),
            other => Err(ClientError::Protocol {
                endpoint: self.client.endpoint().to_string(),
                what: "group heartbeat",
                reason: format!("unexpected answer {other:?}"),
            }),
        }
    }

    /// Stops reading `partitions`, waits up to `wait` for what was handed
    /// out to be processed, commits, and forgets them.
    async fn revoke(&self, partitions: &[u32], wait: Duration) {
        let mut readers = self.readers.lock().await;
        for p in partitions {
            if let Some(reader) = readers.remove(p) {
                reader.abort();
            }
        }
        drop(readers);
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline && !self.caught_up(partitions) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Err(e) = self.committer.commit().await {
            tracing::warn!(group = %self.group, error = %e, "could not commit before giving partitions up; their next reader repeats records");
        }
        let mut progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        for p in partitions {
            self.committer.forget(*p);
            progress.remove(p);
        }
    }

    fn caught_up(&self, partitions: &[u32]) -> bool {
        let progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        partitions
            .iter()
            .all(|p| progress.get(p).is_none_or(|(handed, done)| handed <= done))
    }

    /// Starts reading `partition` where the group committed.
    async fn assign(self: &Arc<Self>, partition: u32) -> Result<()> {
        let committed = self
            .client
            .consumer_offsets(Some(&self.group))
            .await?
            .into_iter()
            .find(|o| o.topic == self.topic && o.partition == partition)
            .and_then(|o| o.offset);
        let start = match committed {
            Some(offset) => {
                self.committer.rebase(partition, offset);
                StartOffset::Absolute(offset)
            }
            None => {
                self.committer.forget(partition);
                self.config.start
            }
        };
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
            smartmodules: self.config.smartmodules.clone(),
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
                        if me.tx.send(Ok(GroupEvent::Records(batch))).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = me.tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        });
        self.readers.lock().await.insert(partition, reader);
        Ok(())
    }
}

/// Heartbeats and follows the assignment until the member is dropped.
async fn run(shared: Arc<Shared>, first: sluice_proto::GroupAssignment) {
    let mut answer: Result<sluice_proto::GroupAssignment> = Ok(first);
    let mut last_ok = tokio::time::Instant::now();
    loop {
        let sent = tokio::time::Instant::now();
        let mut again_at_once = false;
        match answer {
            Ok(assignment) => {
                last_ok = sent;
                let assigned: BTreeSet<u32> = assignment.assigned.into_iter().collect();
                let owned: BTreeSet<u32> = shared.readers.lock().await.keys().copied().collect();
                let gone: Vec<u32> = owned.difference(&assigned).copied().collect();
                let new: Vec<u32> = assigned.difference(&owned).copied().collect();
                if !gone.is_empty() {
                    shared.revoke(&gone, REVOKE_WAIT_MAX).await;
                    tracing::info!(group = %shared.group, partitions = ?gone, "partitions revoked");
                    if shared.tx.send(Ok(GroupEvent::Revoked(gone))).await.is_err() {
                        return;
                    }
                    // Say so now: another member is waiting for them.
                    again_at_once = true;
                }
                let mut started = Vec::new();
                for p in new {
                    match shared.assign(p).await {
                        Ok(()) => started.push(p),
                        Err(e) => {
                            tracing::warn!(group = %shared.group, partition = p, error = %e, "cannot start reading an assigned partition; retrying at the next heartbeat")
                        }
                    }
                }
                if !started.is_empty() {
                    tracing::info!(group = %shared.group, partitions = ?started, "partitions assigned");
                    if shared
                        .tx
                        .send(Ok(GroupEvent::Assigned(started)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
            Err(e) if !e.is_retriable() => {
                let _ = shared.tx.send(Err(e)).await;
                return;
            }
            Err(e) => {
                tracing::warn!(group = %shared.group, error = %e, "group heartbeat failed");
                if last_ok.elapsed() > shared.config.session_timeout {
                    // The coordinator has dropped this member: stop reading
                    // before another member starts on these partitions.
                    let all: Vec<u32> = shared.readers.lock().await.keys().copied().collect();
                    if !all.is_empty() {
                        shared.revoke(&all, Duration::ZERO).await;
                        tracing::warn!(group = %shared.group, "no answer from the coordinator within the session timeout: stopped reading, rejoining");
                        if shared.tx.send(Ok(GroupEvent::Revoked(all))).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
        if !again_at_once {
            tokio::time::sleep(shared.config.heartbeat_interval).await;
        }
        let wait = shared.config.session_timeout;
        answer = match tokio::time::timeout(wait, shared.heartbeat()).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout {
                endpoint: shared.client.endpoint().to_string(),
                what: "group heartbeat",
                after: wait,
            }),
        };
    }
}
