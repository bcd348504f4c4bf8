//! A running Raft group: start, initialize, propose, observe, stop.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use openraft::error::ForwardReason;
use openraft::raft::SnapshotResponse;
use openraft::{BasicNode, Config, ServerState, SnapshotPolicy};
use sluice_proto::RaftRpcKind;

use crate::log_store::{decode, encode};

use crate::error::{RaftError, WriteError};
use crate::group_config::LOG_STAGE_BATCHES_KEPT;
use crate::log_store::{GroupLog, LogDb};
use crate::network::{Answer, Network, RaftTransport, SnapshotRequest, snapshot_beyond_vote};
use crate::state_machine::{Adapter, ReplicatedState};
use crate::timeouts::{
    LEADER_TRANSFER_ATTEMPTS_MAX, LEADER_TRANSFER_RETRY, LEASE_WAIT, LIVENESS_WAIT,
    STATE_POLL_INTERVAL,
};
use crate::{Bytes, GroupConfig, GroupId, NodeId, TypeConfig};

/// What a group looks like from this node right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupStatus {
    pub leader: Option<NodeId>,
    pub is_leader: bool,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub last_applied_index: Option<u64>,
    /// Why the group stopped (a storage failure, a snapshot it could not
    /// install, a shutdown), if it did: its state is then frozen and must
    /// not be served.
    pub stopped: Option<String>,
    /// Whether it stopped by failing (a storage error or a panic of its
    /// core), not by being shut down: only such a group is worth
    /// restarting.
    pub failed: bool,
}

/// A Raft group replicating a [`ReplicatedState`].
pub struct Group<S: ReplicatedState> {
    raft: openraft::Raft<TypeConfig, Adapter<S>>,
    id: GroupId,
    node: NodeId,
    vote_only_as_member: bool,
    sleep: Arc<SleepState>,
    /// Shared with the group's network: see [`Group::renew_lease`].
    lease_wanted: Arc<AtomicBool>,
}

impl<S: ReplicatedState> Clone for Group<S> {
    fn clone(&self) -> Self {
        Self {
            raft: self.raft.clone(),
            id: self.id,
            node: self.node,
            vote_only_as_member: self.vote_only_as_member,
            sleep: self.sleep.clone(),
            lease_wanted: self.lease_wanted.clone(),
        }
    }
}

mod append_stream;
mod sleep;

use sleep::SleepState;

type Vote = openraft::alias::VoteOf<TypeConfig>;
type LogId = openraft::alias::LogIdOf<TypeConfig>;

impl<S: ReplicatedState> Group<S> {
    /// Starts the group on this node, recovering its log and vote from `db`.
    pub async fn start(
        db: Arc<LogDb>,
        node: NodeId,
        id: GroupId,
        state: S,
        config: &GroupConfig,
        transport: Arc<dyn RaftTransport>,
    ) -> Result<Self, RaftError> {
        let start_err = |reason: String| RaftError::Start { group: id, reason };
        // Off in every build but the simulation's demonstration (below).
        #[cfg(not(test))]
        let leader_restore = false;
        #[cfg(test)]
        let leader_restore = config.unsafe_leader_restore_for_tests;
        let raft_config = Config {
            cluster_name: format!("group-{id}"),
            heartbeat_interval: config.heartbeat_interval_ms,
            election_timeout_min: config.election_timeout_min_ms,
            election_timeout_max: config.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every_entries),
            max_in_snapshot_log_to_keep: config.entries_kept_after_snapshot,
            // Under writes a follower's acknowledged appends prove what a
            // heartbeat would (it is alive and follows this leader) and
            // extend the leader's lease from their sending time, so its
            // heartbeat is skipped (BENCHMARKS.md: with 64 busy partitions
            // and small batches, about a tenth less CPU per record). They
            // resume once the group idles.
            heartbeat_min_interval: Some(config.heartbeat_skip_after_ack_ms),
            // A node cut off from its group (isolated, paused) keeps timing
            // out; without Pre-Vote each timeout raised its term, and on its
            // return that term unseated the working leader again and again
            // (seen as metadata writes stalled for 10+ s after a partition
            // healed). With it, a node raises its term only once a majority
            // says it would vote for it.
            enable_pre_vote: Some(true),
            // openraft's default lets a node that led before a restart lead
            // again at once, in the same term, without an election. That is
            // safe only if the commit index is durable and the state machine
            // is flushed on apply; neither holds here (see below). Worse, a
            // power loss can cut a leader's log tail that it had sent before
            // its own fsync completed: restored, it numbers new entries from
            // its shortened log and reuses log ids (same term, same leader,
            // same index) that a follower still holds with other payloads.
            // Followers compare ids only, so they keep and apply the old
            // payloads: replicas diverge and acknowledged writes are lost
            // (seen in the power-loss fault runs, seed 6). Off, a restarted
            // leader must win an election in a new term, so every entry it
            // writes has an id no other replica can hold.
            enable_leader_restore: Some(leader_restore),
            // openraft keeps, per group, a ring of the times each recent
            // batch of entries reached each of six stages (proposed ...
            // applied), for its runtime statistics, which nothing here
            // reads. At its default of 1,024 batches that is six 24 KiB
            // buffers, about 147 KiB of a replica's 190 (BENCHMARKS.md,
            // "What an idle replica holds"): the largest part of what an
            // idle partition costs. A few batches keep the statistics
            // meaningful for whoever looks at them in a debugger.
            log_stage_capacity: Some(LOG_STAGE_BATCHES_KEPT),
            // The other defaults we rely on, and why each is safe here:
            // - `allow_log_reversion` (false): a follower acknowledges only
            //   fsynced entries, so its acknowledged log never goes backwards;
            //   if it does, that is a bug to stop on, not to paper over.
            // - `save_committed` is not synced (`GroupLog`): with leader
            //   restore off, a restarted node learns the commit point from a
            //   leader elected after the restart, never from its own disk.
            // - the state machine is not flushed on apply: the adapter
            //   persists its applied point only after `ReplicatedState::sync`
            //   and the log is purged only up to that point, so everything
            //   after it is re-applied from the log.
            // - a leader counts its own entries toward a commit when openraft
            //   hears from `IOFlushed`, which `GroupLog::append` completes only
            //   after the WAL fsync that covers them.
            ..Default::default()
        };
        let raft_config = Arc::new(
            raft_config
                .validate()
                .map_err(|e| start_err(e.to_string()))?,
        );
        let adapter = Adapter::new(db.clone(), id, state).map_err(|e| start_err(e.to_string()))?;
        let log = GroupLog::new(db, id);
        let lease_wanted = Arc::new(AtomicBool::new(false));
        let raft = openraft::Raft::new(
            node,
            raft_config,
            Network::new(id, transport, lease_wanted.clone()),
            log,
            adapter,
        )
        .await
        .map_err(|e| start_err(e.to_string()))?;
        Ok(Self {
            raft,
            id,
            node,
            vote_only_as_member: config.vote_only_as_member,
            sleep: Arc::default(),
            lease_wanted,
        })
    }

    pub fn id(&self) -> GroupId {
        self.id
    }

    /// Makes `members` (id, address) the group's first membership, if the group
    /// has none yet. Idempotent: a group that already has a membership (e.g.
    /// after a restart) keeps it.
    pub async fn initialize(&self, members: &[(NodeId, String)]) -> Result<(), RaftError> {
        if self
            .raft
            .is_initialized()
            .await
            .map_err(|e| self.init_err(e.to_string()))?
        {
            return Ok(());
        }
        let members: BTreeMap<NodeId, BasicNode> = members
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr.clone())))
            .collect();
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(e)
                if e.api_error().is_some_and(|api| {
                    matches!(api, openraft::error::InitializeError::NotAllowed(_))
                }) =>
            {
                Ok(())
            }
            Err(e) => Err(self.init_err(e.to_string())),
        }
    }

    fn init_err(&self, reason: String) -> RaftError {
        RaftError::Initialize {
            group: self.id,
            reason,
        }
    }

    /// Proposes `command`; returns the state machine's response once the
    /// entry is committed (durable on a majority) and applied.
    ///
    /// A leader that was just elected refuses writes until its lease is
    /// confirmed by a round of heartbeats; such a refusal is retried here for
    /// a short while instead of sending the client elsewhere for nothing.
    pub async fn write(&self, command: Vec<u8>) -> Result<Vec<u8>, WriteError> {
        // Woken before, and again after: a sweep that read the group as idle
        // just before this write was appended may have put it to sleep while
        // the write woke its followers.
        self.wake_if_leader("a write");
        let result = self.write_once(command).await;
        self.wake_if_leader("a write");
        if self.lease_wanted.load(Ordering::Relaxed) {
            self.lease_wanted.store(false, Ordering::Relaxed);
        }
        result
    }

    async fn write_once(&self, command: Vec<u8>) -> Result<Vec<u8>, WriteError> {
        let deadline = tokio::time::Instant::now() + LEASE_WAIT;
        let command = Bytes(Arc::new(command));
        loop {
            let started = std::time::Instant::now();
            let error = match self.raft.client_write(command.clone()).await {
                Ok(resp) => {
                    metrics::histogram!(crate::RAFT_WRITE_SECONDS)
                        .record(started.elapsed().as_secs_f64());
                    return Ok(Arc::unwrap_or_clone(resp.data.0));
                }
                Err(e) => e,
            };
            let Some(fwd) = error.forward_to_leader() else {
                return Err(WriteError::Stopped {
                    group: self.id,
                    reason: error.to_string(),
                });
            };
            let leader = fwd.leader_id;
            let just_elected = leader.is_none() && self.status().is_leader;
            if just_elected && tokio::time::Instant::now() < deadline {
                if fwd.reason == ForwardReason::LeaseExpired {
                    self.renew_lease().await;
                } else {
                    tokio::time::sleep(STATE_POLL_INTERVAL).await;
                }
                continue;
            }
            // A writer came to a follower, perhaps because it cannot reach
            // the leader: if the group sleeps here, ask the leader's node now
            // (a dead one is replaced before the writer's next tries).
            self.recheck_sleeping_leader();
            return Err(WriteError::NotLeader {
                group: self.id,
                node: self.node,
                leader,
            });
        }
    }

    /// A leader refuses writes while its lease has expired: no majority has
    /// acknowledged it within the last election timeout. Every group that
    /// slept is in that state when a write wakes it, and waiting for the
    /// heartbeats its resumed ticks send cost such a write 20-30 ms
    /// (BENCHMARKS.md, "A write to a sleeping partition"). So this sends a
    /// heartbeat round now, past the coalescing window (`lease_wanted`,
    /// cleared when the write is done), and waits until a
    /// majority's acknowledgement shows in the metrics, or
    /// [`STATE_POLL_INTERVAL`] passes.
    async fn renew_lease(&self) {
        self.lease_wanted.store(true, Ordering::Relaxed);
        self.sleep.lease_renewals.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(crate::RAFT_LEASE_RENEWALS).increment(1);
        let mut rx = self.raft.metrics();
        let acked = rx.borrow_watched().last_quorum_acked;
        if self.raft.trigger().heartbeat().await.is_err() {
            return;
        }
        let renewed = async {
            while rx.changed().await.is_ok() {
                if rx.borrow_watched().last_quorum_acked != acked {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(STATE_POLL_INTERVAL, renewed).await;
    }

    /// How many writes on this replica renewed its lease first.
    #[cfg(test)]
    pub(crate) fn lease_renewals(&self) -> u64 {
        self.sleep.lease_renewals.load(Ordering::Relaxed)
    }

    /// Whether this replica leads its group now ([`GroupStatus::is_leader`]
    /// without copying the rest of the status: loops over every replica of
    /// a node ask this twice a second).
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow_watched().state == ServerState::Leader
    }

    pub fn status(&self) -> GroupStatus {
        let m = self.raft.metrics().borrow_watched().clone();
        GroupStatus {
            leader: m.current_leader,
            is_leader: m.state == ServerState::Leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            last_applied_index: m.last_applied.map(|id| id.index),
            stopped: m.running_state.as_ref().err().map(|e| e.to_string()),
            failed: matches!(
                m.running_state.as_ref(),
                Err(openraft::error::Fatal::StorageError(_) | openraft::error::Fatal::Panicked)
            ),
        }
    }

    /// The last log id of the newest snapshot this replica holds.
    #[cfg(test)]
    pub(crate) fn snapshot_last_log_id(&self) -> Option<openraft::alias::LogIdOf<TypeConfig>> {
        self.raft.metrics().borrow_watched().snapshot
    }

    /// Waits until the group has a leader, or `timeout` passes.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<NodeId> {
        let mut rx = self.raft.metrics();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let m = rx.borrow_watched();
                // A candidate may already name itself; only a real leader counts.
                match m.current_leader {
                    Some(l) if l != self.node || m.state == ServerState::Leader => return Some(l),
                    _ => {}
                }
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return None;
            }
        }
    }

    /// Waits until this replica has re-applied everything the group had
    /// committed that its durable log holds (after a restart), so reads see
    /// at least the pre-restart state. False on timeout.
    pub async fn wait_for_recovery(&self, timeout: Duration) -> bool {
        self.raft.wait_for_recovery(Some(timeout)).await.is_ok()
    }

    /// Serves a Raft RPC from another replica of this group; the answer is
    /// encoded for `crate::network` on the calling side. Wakes the group
    /// unless the RPC is quiescence's own, an empty append of the leader
    /// the group fell asleep under (see `crate::quiesce`), or a leadership
    /// transfer to another member.
    ///
    /// A transfer to another member is served asleep: openraft lifts this
    /// member's lease on the leader, so it grants the target's vote at once,
    /// and the target's first heartbeat wakes it. Woken by the request, it
    /// found its election timer run out while it slept and campaigned in
    /// the same millisecond as the target, and the old leader, handing
    /// over, granted both; with openraft's leader ids (several candidates
    /// per term, the higher node id preferred) the target lost about half
    /// such races (RELIABILITY.md, session 27's transfer).
    pub async fn handle_rpc(&self, kind: RaftRpcKind, payload: &[u8]) -> Vec<u8> {
        match kind {
            RaftRpcKind::Quiesce => {
                let answer = self.handle_quiesce(payload).await;
                return encode(&answer).unwrap_or_default();
            }
            RaftRpcKind::LeaderProbe | RaftRpcKind::PeerProbe | RaftRpcKind::Batch => {
                let answer: Answer<()> =
                    Err(format!("a {kind:?} is for a node, not for one group"));
                return encode(&answer).unwrap_or_default();
            }
            RaftRpcKind::AppendStream => {
                let answer: Answer<()> = Err(
                    "an AppendStream opens a stream of appends; it is served by \
                     Group::serve_append_stream, not as one RPC"
                        .to_string(),
                );
                return encode(&answer).unwrap_or_default();
            }
            RaftRpcKind::CommitWanted => {
                // Waking is all it takes: the heartbeats that resume carry
                // the commit. A replica that does not lead ignores it.
                self.wake_if_leader("a member asked for the commit");
                let answer: Answer<()> = Ok(());
                return encode(&answer).unwrap_or_default();
            }
            _ => {}
        }
        if kind == RaftRpcKind::PreVote
            && let Some(refusal) = self.refuse_pre_vote_while_asleep(payload).await
        {
            return refusal;
        }
        let heartbeat = kind == RaftRpcKind::AppendEntries;
        let quiet = (heartbeat && self.is_sleepers_heartbeat(payload))
            || (kind == RaftRpcKind::TransferLeader && self.is_transfer_to_another(payload));
        let answer = self.serve_rpc(kind, payload).await;
        // Asked again once served: a request to sleep served meanwhile (the
        // two travel in one batch, served side by side) may have put the
        // group to sleep under this very heartbeat's leader. Waking for it
        // left the member awake under a leader that then slept, so its
        // election timer fired and it unseated the leader: groups of a
        // 64-partition topic held elections while they fell asleep (after
        // the topic's creation, between a producer's writes).
        let quiet = quiet || (heartbeat && self.is_sleepers_heartbeat(payload));
        if !quiet {
            self.wake_up("a Raft message");
        }
        answer
    }

    async fn serve_rpc(&self, kind: RaftRpcKind, payload: &[u8]) -> Vec<u8> {
        async fn answer<T: serde::Serialize, E: std::fmt::Display>(r: Result<T, E>) -> Vec<u8> {
            let a: Answer<T> = r.map_err(|e| e.to_string());
            encode(&a).unwrap_or_default()
        }
        let bad = |e: std::io::Error| {
            let a: Answer<()> = Err(format!("undecodable {kind:?} request: {e}"));
            encode(&a).unwrap_or_default()
        };
        match kind {
            RaftRpcKind::AppendEntries => match self.admit_append(payload) {
                Ok(req) => answer(self.raft.append_entries(req).await).await,
                Err(refusal) => answer(Err::<(), String>(refusal)).await,
            },
            // A pre-vote is answered as the vote itself would be (a replica
            // that does not vote yet refuses both) but changes nothing here.
            RaftRpcKind::Vote | RaftRpcKind::PreVote => match decode(payload) {
                Ok(_) if self.vote_only_as_member && !self.members().0.contains(&self.node) => {
                    let refusal: Result<(), String> = Err(format!(
                        "node {} is not a voter of group {} in its own view yet; it does not vote",
                        self.node, self.id
                    ));
                    answer(refusal).await
                }
                Ok(req) if kind == RaftRpcKind::PreVote => {
                    answer(self.raft.pre_vote(req).await).await
                }
                Ok(req) => answer(self.raft.vote(req).await).await,
                Err(e) => bad(e),
            },
            RaftRpcKind::TransferLeader => match decode(payload) {
                Ok(req) => answer(self.raft.handle_transfer_leader(req).await).await,
                Err(e) => bad(e),
            },
            RaftRpcKind::Quiesce
            | RaftRpcKind::LeaderProbe
            | RaftRpcKind::PeerProbe
            | RaftRpcKind::Batch
            | RaftRpcKind::AppendStream
            | RaftRpcKind::CommitWanted => {
                let a: Answer<()> = Err(format!("{kind:?} is served by handle_rpc"));
                encode(&a).unwrap_or_default()
            }
            RaftRpcKind::InstallSnapshot => match decode::<SnapshotRequest>(payload) {
                // openraft asserts (and its core task dies) on a snapshot
                // whose last log id is beyond its sender's vote. A fault run
                // saw one: a deposed leader's replication stream sent the
                // snapshot it had built since, as a follower of the next
                // term, under its old vote (how: `Peer::full_snapshot`,
                // which no longer sends one). Refused here too, for senders
                // of older builds; the current leader catches this replica up.
                Ok((vote, meta, _)) if snapshot_beyond_vote(&vote, &meta) => {
                    let refusal: Result<(), String> = Err(format!(
                        "a snapshot up to {:?} cannot come from a leader with vote {vote:?}; refused",
                        meta.last_log_id
                    ));
                    tracing::warn!(group = self.id, last = ?meta.last_log_id, ?vote,
                        "refused a snapshot beyond its sender's vote");
                    answer(refusal).await
                }
                Ok((vote, meta, _)) if self.log_holds_snapshot(&vote, &meta).await => {
                    tracing::debug!(
                        group = self.id, last = ?meta.last_log_id,
                        "the log already holds the snapshot's last entry; keeping the log"
                    );
                    let kept: Result<SnapshotResponse<TypeConfig>, String> =
                        Ok(SnapshotResponse { vote });
                    answer(kept).await
                }
                Ok((vote, meta, data)) => {
                    let snapshot = openraft::Snapshot {
                        meta,
                        snapshot: data.into_vec(),
                    };
                    answer(self.raft.install_full_snapshot(vote, snapshot).await).await
                }
                Err(e) => bad(e),
            },
        }
    }

    /// Whether this replica follows the leader that sent a snapshot and its
    /// log already holds the snapshot's last entry: then the snapshot is
    /// answered as installed without installing it, and the log is kept.
    ///
    /// This is the Raft paper's InstallSnapshot rule 6 (§7), and the reason
    /// it is applied here rather than left to openraft: 0.10.0-alpha.37
    /// installs such a snapshot anyway and, when the follower had already
    /// appended entries past it for the same leader, moves its log-I/O
    /// cursor backwards (`core/raft_core.rs`, `run_state_machine`). A debug
    /// build stops the group on an assertion (`io_progress.rs:126`, the
    /// simulation's open anomaly); a release build goes on with the cursor
    /// moved back. A leader sends such a snapshot when a follower's append
    /// answer was lost and it has since purged the entries it would resend
    /// (test `a_snapshot_below_the_submitted_log_of_the_same_leader_is_taken_in_stride`).
    ///
    /// Safe: the snapshot's last entry is committed, so no leader ever
    /// truncates it; by log matching, the log up to it equals the leader's,
    /// and the replica applies it from its own log once it learns the
    /// commit point. The check runs inside openraft's core, so the vote and
    /// the log it reads are one consistent state.
    async fn log_holds_snapshot(
        &self,
        vote: &openraft::alias::VoteOf<TypeConfig>,
        meta: &openraft::alias::SnapshotMetaOf<TypeConfig>,
    ) -> bool {
        let Some(last) = meta.last_log_id else {
            return false;
        };
        let vote = *vote;
        self.raft
            .with_raft_state(move |st| {
                st.vote_ref() == &vote && st.log_ids.get(last.index) == Some(last)
            })
            .await
            .unwrap_or(false)
    }

    /// Adds `node` as a non-voting member that receives the log (used for
    /// controller learners: every node holds the whole metadata).
    pub async fn add_learner(&self, node: NodeId, addr: String) -> Result<(), WriteError> {
        self.wake_if_leader("a membership or leadership change");
        let result = self
            .raft
            .add_learner(node, BasicNode::new(addr), false)
            .await;
        self.management_result(result)
    }

    /// Adds `node` as a learner and waits until it has caught up with the
    /// leader's log (by entries or by a snapshot). Only the leader can do it.
    pub async fn add_learner_and_wait(&self, node: NodeId, addr: String) -> Result<(), WriteError> {
        self.wake_if_leader("a membership or leadership change");
        let result = self
            .raft
            .add_learner(node, BasicNode::new(addr), true)
            .await;
        self.management_result(result)
    }

    /// Makes `voters` the group's voters (each must already be a member);
    /// members left out are removed from the group. Goes through joint
    /// consensus, so a majority of the old and of the new set must agree.
    pub async fn change_voters(&self, voters: BTreeSet<NodeId>) -> Result<(), WriteError> {
        self.wake_if_leader("a membership or leadership change");
        let result = self.raft.change_membership(voters, false).await;
        self.management_result(result)
    }

    /// On the leader: hands leadership to voter `to` (it campaigns at once
    /// with the leader's blessing); ignored elsewhere.
    ///
    /// openraft's leader stops proposing and heartbeating once it asks, and
    /// stays so in its term until another node leads. A request lost, or
    /// refused by a target that had not yet flushed the leader's last entry,
    /// left a group whose members slept (trusting the probes that say the
    /// leader's node leads it) with a leader that took no writes for good:
    /// a membership smoke run found a partition's move stuck so. So while
    /// this node still leads in the same term it asks again every
    /// [`LEADER_TRANSFER_RETRY`], up to [`LEADER_TRANSFER_ATTEMPTS_MAX`] times.
    ///
    /// The members the request does not name stay asleep (see
    /// [`Self::handle_rpc`]), and this leader keeps telling them it leads
    /// for [`crate::timeouts::LEADER_TRANSFER_CONFIRM_WINDOW`]; after that
    /// they wake and elect one of themselves, so a target that died does not
    /// leave the group with a leader that takes no writes.
    pub async fn transfer_leader(&self, to: NodeId) -> Result<(), WriteError> {
        self.wake_if_leader("a membership or leadership change");
        let term = self.status().term;
        self.handing_over_in(term);
        self.ask_transfer(to).await?;
        let group = self.clone();
        tokio::spawn(async move {
            for attempt in 1..=LEADER_TRANSFER_ATTEMPTS_MAX {
                tokio::time::sleep(LEADER_TRANSFER_RETRY).await;
                let status = group.status();
                if !status.is_leader || status.term != term {
                    return;
                }
                tracing::warn!(
                    group = group.id,
                    to,
                    attempt,
                    "leadership not taken over yet; asking again"
                );
                group.wake_if_leader("a membership or leadership change");
                if group.ask_transfer(to).await.is_err() {
                    return;
                }
            }
            tracing::error!(
                group = group.id,
                to,
                "node {to} has not taken leadership over after {LEADER_TRANSFER_ATTEMPTS_MAX} requests; \
                 this leader takes no writes until another member wins an election"
            );
        });
        Ok(())
    }

    async fn ask_transfer(&self, to: NodeId) -> Result<(), WriteError> {
        self.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|e| WriteError::Stopped {
                group: self.id,
                reason: e.to_string(),
            })
    }

    /// Removes learners (not voters) from the group.
    pub async fn remove_learners(&self, learners: BTreeSet<NodeId>) -> Result<(), WriteError> {
        self.wake_if_leader("a membership or leadership change");
        let result = self
            .raft
            .change_membership(openraft::ChangeMembers::RemoveNodes(learners), false)
            .await;
        self.management_result(result)
    }

    fn management_result<T>(
        &self,
        result: Result<
            T,
            openraft::errors::RaftError<TypeConfig, openraft::errors::ClientWriteError<TypeConfig>>,
        >,
    ) -> Result<(), WriteError> {
        result.map(|_| ()).map_err(|e| match e.forward_to_leader() {
            Some(fwd) => WriteError::NotLeader {
                group: self.id,
                node: self.node,
                leader: fwd.leader_id,
            },
            None => WriteError::Stopped {
                group: self.id,
                reason: e.to_string(),
            },
        })
    }

    /// Whether this replica still leads: a majority acknowledged it after
    /// the call began (a read index, not the lease a cut-off leader still
    /// believes in), and it has applied everything committed before. False
    /// when it does not lead or `timeout` passes. Wakes a sleeping group.
    pub async fn confirm_leadership(&self, timeout: Duration) -> bool {
        self.wake_if_leader("a leadership check");
        let read = self
            .raft
            .ensure_linearizable(openraft::raft::ReadPolicy::ReadIndex);
        matches!(tokio::time::timeout(timeout, read).await, Ok(Ok(_)))
    }

    /// Entries this replica's Raft log holds, not yet purged after a
    /// snapshot. It grows past the snapshot policy's bound while a leader
    /// keeps entries a follower is being sent (openraft postpones the purge),
    /// so it shows what a slow or dead replica costs its leader.
    pub fn log_entries_held(&self) -> u64 {
        let m = self.raft.metrics().borrow_watched().clone();
        let last = m.last_log_index.unwrap_or(0);
        match m.purged {
            Some(purged) => last.saturating_sub(purged.index),
            // Nothing purged: index 0 (the initial membership) onwards.
            None => m.last_log_index.map_or(0, |l| l + 1),
        }
    }

    /// On the leader: for each member, how many entries of the leader's log
    /// it has not confirmed (`None` if never heard from). `None` elsewhere.
    pub fn replication_lag(&self) -> Option<BTreeMap<NodeId, Option<u64>>> {
        let m = self.raft.metrics().borrow_watched().clone();
        let last = m.last_log_index.unwrap_or(0);
        let replication = m.replication?;
        Some(
            replication
                .into_iter()
                .map(|(node, matched)| (node, matched.map(|id| last.saturating_sub(id.index))))
                .collect(),
        )
    }

    /// Whether node `node` is this one, or was heard from by the node's
    /// quiescence (a probe sent or answered) within `window`. A cheap
    /// "certainly live" that wakes nothing; `false` proves nothing (nodes
    /// with no sleeping group between them do not probe each other): ask
    /// [`Self::live_members_now`] then.
    pub fn peer_heard_within(&self, node: NodeId, window: Duration) -> bool {
        node == self.node
            || self
                .quiescence()
                .is_some_and(|q| q.heard_within(node, window))
    }

    /// [`Self::live_members`], first making sure the heartbeats it reads are
    /// current: a leader that sleeps (quiescence) sends none, so the last
    /// ones are as old as its sleep and say nothing about the members now.
    /// The group is woken and given up to `LIVENESS_WAIT` for every member
    /// to acknowledge a heartbeat within `window`; a member that has not by
    /// then is not live. (Topic creation places replicas on live nodes only;
    /// it saw every follower as dead after the controller's group slept.)
    pub async fn live_members_now(&self, window: Duration) -> Option<Vec<NodeId>> {
        if !self.leads() {
            return None;
        }
        self.wake_if_leader("member liveness asked for");
        let deadline = Instant::now() + LIVENESS_WAIT;
        while Instant::now() < deadline && self.has_stale_heartbeat(window) {
            tokio::time::sleep(STATE_POLL_INTERVAL).await;
        }
        self.live_members(window)
    }

    /// On the leader: whether a member's last acknowledged heartbeat is older
    /// than `window`, or missing.
    fn has_stale_heartbeat(&self, window: Duration) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        !self.silent_members(&m, window).is_empty()
    }

    /// On the leader (from its metrics `m`): the members, itself excepted,
    /// whose last acknowledged heartbeat is older than `window`, or who
    /// never acknowledged one. Empty elsewhere.
    fn silent_members(
        &self,
        m: &openraft::RaftMetrics<TypeConfig>,
        window: Duration,
    ) -> Vec<NodeId> {
        use openraft::Instant as _;
        let Some(heartbeats) = &m.heartbeat else {
            return Vec::new();
        };
        heartbeats
            .iter()
            .filter(|(node, last)| {
                **node != self.node && last.as_ref().is_none_or(|t| t.elapsed() > window)
            })
            .map(|(node, _)| *node)
            .collect()
    }

    /// On the leader: itself and the members that acknowledged a heartbeat
    /// within `window`. `None` elsewhere (only the leader knows). The
    /// figures are only as fresh as the last heartbeats: see
    /// [`Self::live_members_now`].
    pub fn live_members(&self, window: Duration) -> Option<Vec<NodeId>> {
        let m = self.raft.metrics().borrow_watched().clone();
        if m.state != ServerState::Leader {
            return None;
        }
        let silent = self.silent_members(&m, window);
        let mut live: Vec<NodeId> = m
            .heartbeat?
            .into_keys()
            .filter(|node| *node != self.node && !silent.contains(node))
            .collect();
        live.push(self.node);
        live.sort_unstable();
        Some(live)
    }

    /// The voters and learners of the group's current membership.
    pub fn members(&self) -> (Vec<NodeId>, Vec<NodeId>) {
        let m = self.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let learners: Vec<NodeId> = membership.learner_ids().collect();
        (voters, learners)
    }

    /// Stops the group's tasks; its log and state stay on disk.
    pub async fn shutdown(&self) {
        if let Some(q) = self.quiescence() {
            q.deregister(self.id);
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(group = self.id, error = %e, "Raft group did not shut down cleanly");
        }
    }
}
