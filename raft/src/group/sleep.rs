//! A group's side of quiescence (see [`crate::quiesce`]): falling asleep and
//! waking, the quiesce handshake, and what a sleeping replica answers for
//! itself instead of waking.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest, VoteResponse};
use sluice_proto::RaftRpcKind;

use super::{Group, LogId, Vote};
use crate::log_store::{decode, encode};
use crate::network::Answer;
use crate::quiesce::{self, Quiescence, Sleeper};
use crate::state_machine::ReplicatedState;
use crate::timeouts::LEADER_TRANSFER_CONFIRM_WINDOW;
use crate::{NodeId, TypeConfig};

/// A group's quiescence (see [`crate::quiesce`]): whether its ticks are off.
#[derive(Default)]
pub(super) struct SleepState {
    pub(super) asleep: AtomicBool,
    /// Bumped by every wake; a fall asleep that began before a wake it did
    /// not see is abandoned.
    pub(super) epoch: AtomicU64,
    /// Serializes falling asleep and waking; holds the vote the group fell
    /// asleep under.
    pub(super) vote: Mutex<Option<Vote>>,
    /// On a leader: the last log id seen by a sweep and since when.
    pub(super) idle: Mutex<Option<(Option<LogId>, Instant)>>,
    pub(super) quiescence: OnceLock<Weak<quiesce::Inner>>,
    /// Writes that renewed the leader's lease first ([`Group::renew_lease`]).
    pub(super) lease_renewals: AtomicU64,
    /// On a leader that asked to hand its leadership over: the term it
    /// asked in, and since when ([`Group::transfer_leader`]).
    pub(super) handover: Mutex<Option<(u64, Instant)>>,
}

/// What a member answers a quiesce request with: the leader's vote and the
/// last log id every member must hold, committed.
type QuiesceRequest = (Vote, Option<LogId>);

impl<S: ReplicatedState> Group<S> {
    /// Lets the group sleep while idle (see `crate::quiesce`). A replica
    /// that starts under a committed vote of another leader starts asleep,
    /// watched through that leader: a leader that quiesced while this
    /// replica was down sends it nothing, and its election timer would
    /// otherwise unseat it.
    pub async fn quiesce_with(&self, quiescence: &Quiescence) {
        if self.sleep.quiescence.set(quiescence.downgrade()).is_err() {
            return;
        }
        quiescence.register(self.id, Arc::new(self.clone()));
        let epoch = self.sleep.epoch.load(Ordering::SeqCst);
        // Read in the core: right after a start the metrics may not show the
        // recovered vote yet.
        let recovered = self
            .raft
            .with_raft_state(|st| {
                let vote = *st.vote_ref();
                let leader = vote.leader_id().node_id;
                let addr = st
                    .membership_state
                    .effective()
                    .membership()
                    .get_node(&leader)
                    .map(|n| n.addr.clone());
                (vote, leader, addr)
            })
            .await;
        if let Ok((vote, leader, Some(addr))) = recovered
            && vote.is_committed()
            && leader != self.node
        {
            self.fall_asleep(epoch, vote, Some((leader, addr)));
        }
    }

    pub(super) fn quiescence(&self) -> Option<Quiescence> {
        quiesce::upgrade(self.sleep.quiescence.get()?)
    }

    pub(super) fn member_addr(&self, node: NodeId) -> Option<String> {
        let m = self.raft.metrics().borrow_watched().clone();
        m.membership_config
            .membership()
            .get_node(&node)
            .map(|n| n.addr.clone())
    }

    /// Someone has a reason to doubt this group's leader: a client whose
    /// request to it goes unanswered asks this node whom it follows, or
    /// sends this node a write meant for the leader. If the
    /// group sleeps here as a follower, its leader's node is asked at once
    /// unless it confirmed the group just now, and the group wakes (and
    /// elects) if that node no longer leads it, or does not answer and has
    /// been silent for 500 ms (see `Quiescence::recheck`). Returns at
    /// once; does nothing for an awake group, whose election timer watches
    /// its leader already.
    pub fn recheck_sleeping_leader(&self) {
        if self.is_asleep()
            && let Some(q) = self.quiescence()
        {
            q.recheck(self.id);
        }
    }

    /// Whether the group sleeps on this node (its ticks are off).
    pub fn is_asleep(&self) -> bool {
        self.sleep.asleep.load(Ordering::SeqCst)
    }

    /// Turns ticks off unless a wake came after `epoch` was read; a follower
    /// (`watch` names its leader) is then watched through its leader's node.
    pub(super) fn fall_asleep(
        &self,
        epoch: u64,
        vote: Vote,
        watch: Option<(NodeId, String)>,
    ) -> bool {
        let mut slept_under = self.sleep.vote.lock().unwrap();
        self.sleep.asleep.store(true, Ordering::SeqCst);
        if self.sleep.epoch.load(Ordering::SeqCst) != epoch {
            self.sleep.asleep.store(false, Ordering::SeqCst);
            return false;
        }
        self.raft.runtime_config().tick(false);
        *slept_under = Some(vote);
        if let (Some((leader, addr)), Some(q)) = (watch, self.quiescence()) {
            q.watch(self.id, leader, addr);
        }
        tracing::debug!(group = self.id, "group asleep");
        true
    }

    /// Turns ticks back on if they are off. Cheap when awake: one atomic
    /// increment and one load.
    pub(super) fn wake_up(&self, why: &'static str) {
        self.sleep.epoch.fetch_add(1, Ordering::SeqCst);
        if !self.sleep.asleep.load(Ordering::SeqCst) {
            return;
        }
        let mut slept_under = self.sleep.vote.lock().unwrap();
        if self.sleep.asleep.swap(false, Ordering::SeqCst) {
            self.raft.runtime_config().tick(true);
            *slept_under = None;
            *self.sleep.idle.lock().unwrap() = None;
            if let Some(q) = self.quiescence() {
                q.unwatch(self.id);
                q.woke();
            }
            metrics::counter!(crate::RAFT_GROUP_WAKES, "why" => why).increment(1);
            tracing::debug!(group = self.id, why, "group awake");
        }
    }

    /// Wakes the group if this replica leads it: it is about to be asked
    /// for work. A follower is not woken, as its election timer would then
    /// run against a leader that may be asleep.
    pub(super) fn wake_if_leader(&self, why: &'static str) {
        if self.is_asleep() && self.leads() {
            self.wake_up(why);
        } else {
            self.sleep.epoch.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Notes that this leader asked, in `term`, to hand its leadership
    /// over; a retry in the same term keeps the first ask's time.
    pub(super) fn handing_over_in(&self, term: u64) {
        let mut handover = self.sleep.handover.lock().unwrap();
        if handover.is_none_or(|(asked_in, _)| asked_in != term) {
            *handover = Some((term, Instant::now()));
        }
    }

    /// How long this replica, still leading in the term it asked in, has
    /// been handing its leadership over, if it is.
    fn handing_over_for(&self) -> Option<std::time::Duration> {
        let (term, since) = (*self.sleep.handover.lock().unwrap())?;
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        (m.state == ServerState::Leader && m.current_term == term).then(|| since.elapsed())
    }

    /// Whether this replica leads its group as far as the members asleep
    /// under it should know: it leads, and has not been handing over for
    /// longer than [`LEADER_TRANSFER_CONFIRM_WINDOW`] (a target that never
    /// took over; the members then wake and elect one of themselves).
    fn leads_for_sleepers(&self) -> bool {
        self.leads()
            && self
                .handing_over_for()
                .is_none_or(|d| d < LEADER_TRANSFER_CONFIRM_WINDOW)
    }

    /// Whether `payload` asks this replica, asleep, to let another member
    /// take its group's leadership over, from the leader it fell asleep
    /// under: served without waking (see [`Group::handle_rpc`]).
    pub(super) fn is_transfer_to_another(&self, payload: &[u8]) -> bool {
        if !self.is_asleep() {
            return false;
        }
        let Some(vote) = *self.sleep.vote.lock().unwrap() else {
            return false;
        };
        decode::<TransferLeaderRequest<TypeConfig>>(payload)
            .is_ok_and(|req| *req.to_node_id() != self.node && *req.from_leader() == vote)
    }

    /// Whether this replica leads a running group: a leader whose core
    /// stopped (a storage failure) must not keep its followers asleep.
    pub(super) fn leads(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        m.state == ServerState::Leader && m.running_state.is_ok()
    }

    /// Vote, last log id, committed log id and role, read inside openraft's
    /// core, so they are one consistent state.
    pub(crate) async fn quiesce_point(
        &self,
    ) -> Option<(Vote, Option<LogId>, Option<LogId>, ServerState)> {
        self.raft
            .with_raft_state(|st| {
                (
                    *st.vote_ref(),
                    st.log_ids.last().copied(),
                    st.local_committed().copied(),
                    st.server_state,
                )
            })
            .await
            .ok()
    }

    /// On a member: agrees to sleep if it holds exactly what the leader
    /// holds (same vote, same last log id, all of it committed).
    pub(super) async fn handle_quiesce(&self, payload: &[u8]) -> Result<(), String> {
        let (vote, last): QuiesceRequest =
            decode(payload).map_err(|e| format!("undecodable quiesce request: {e}"))?;
        let epoch = self.sleep.epoch.load(Ordering::SeqCst);
        let (my_vote, my_last, committed, state) = self
            .quiesce_point()
            .await
            .ok_or_else(|| format!("group {} is stopping", self.id))?;
        if my_vote != vote || my_last != last || committed != last {
            return Err(format!(
                "not caught up: vote {my_vote:?}, last {my_last:?}, committed {committed:?}; \
                 the leader has vote {vote:?}, last {last:?}"
            ));
        }
        if !matches!(state, ServerState::Follower | ServerState::Learner) {
            return Err(format!("a {state:?} does not sleep on request"));
        }
        let leader = vote.leader_id().node_id;
        let addr = self
            .member_addr(leader)
            .ok_or_else(|| format!("leader {leader} is not a member"))?;
        if self.is_asleep() || self.fall_asleep(epoch, vote, Some((leader, addr))) {
            Ok(())
        } else {
            Err("woken while falling asleep".into())
        }
    }

    /// On the leader: puts the group to sleep once it has taken no entry for
    /// `idle_for`, every member holds and has committed all of it, and every
    /// member agreed to sleep.
    ///
    /// Members that have not acknowledged a heartbeat for `leader_silence`
    /// (a dead or cut-off node) are left out, as long as the others and this
    /// leader are a majority of the voters: before, no group with a replica
    /// on a dead node could sleep, so one node down out of three with 1,000
    /// partitions kept every group awake on the other two, their heartbeats
    /// alone took both cores, and elections of the dead node's groups timed
    /// out for ever (RELIABILITY.md, "Elections after a pause"). Such a
    /// group is woken when the missing member's node is heard from again
    /// ([`Quiescence::member_back`]), so it catches that member up.
    async fn try_sleep_as_leader(&self, q: &Quiescence) {
        let config = q.config();
        // A leader handing over stays awake: its retries and the target's
        // campaign need it.
        if self.handing_over_for().is_some() {
            return;
        }
        let m = self.raft.metrics().borrow_watched().clone();
        if m.state != ServerState::Leader {
            return;
        }
        let last = m.last_log_index;
        let now = Instant::now();
        {
            let mut idle = self.sleep.idle.lock().unwrap();
            let last_id = m.last_applied.filter(|a| Some(a.index) == last);
            match &*idle {
                Some((seen, since)) if *seen == last_id && last_id.is_some() => {
                    if now.duration_since(*since) < config.idle_for {
                        return;
                    }
                }
                _ => {
                    *idle = Some((last_id, now));
                    return;
                }
            }
        }
        let membership = m.membership_config.membership();
        if membership.get_joint_config().len() != 1 {
            return;
        }
        let Some(replication) = &m.replication else {
            return;
        };
        let missing = self.silent_members(&m, config.leader_silence);
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let present = voters.iter().filter(|v| !missing.contains(v)).count();
        if present * 2 <= voters.len() {
            return;
        }
        let caught_up = replication
            .iter()
            .filter(|(id, _)| !missing.contains(id))
            .all(|(_, matched)| matched.map(|id| id.index) == last);
        if !caught_up {
            return;
        }
        let members: Vec<(NodeId, String)> = membership
            .nodes()
            .filter(|(id, _)| **id != self.node && !missing.contains(id))
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        let epoch = self.sleep.epoch.load(Ordering::SeqCst);
        let Some((vote, last_id, committed, ServerState::Leader)) = self.quiesce_point().await
        else {
            return;
        };
        if committed != last_id || !vote.is_committed() {
            return;
        }
        let Ok(payload) = encode(&(vote, last_id)) else {
            return;
        };
        let asks = members.into_iter().map(|(member, addr)| {
            let rpc = sluice_proto::RaftRpc {
                group: self.id,
                kind: RaftRpcKind::Quiesce,
                payload: payload.clone(),
            };
            // Nothing waits on it: it may wait for other groups' requests
            // to that node (a sweep asks many groups at once).
            let call = q
                .transport()
                .call_heartbeat(member, addr, rpc, config.request_timeout);
            async move {
                match call.await {
                    Ok(bytes) => decode::<Answer<()>>(&bytes)
                        .map_err(|e| e.to_string())
                        .and_then(|a| a),
                    Err(e) => Err(e.to_string()),
                }
            }
        });
        let answers = futures::future::join_all(asks).await;
        if let Some(Err(reason)) = answers.iter().find(|a| a.is_err()) {
            tracing::debug!(group = self.id, reason, "a member did not agree to sleep");
            return;
        }
        // Nothing may have been appended while the members were asked.
        let unchanged = matches!(self.quiesce_point().await,
            Some((v, l, _, ServerState::Leader)) if v == vote && l == last_id);
        if unchanged && self.fall_asleep(epoch, vote, None) && !missing.is_empty() {
            tracing::debug!(
                group = self.id,
                ?missing,
                "group asleep without silent members"
            );
            q.sleeps_without(self.id, missing);
        }
    }

    /// Answers a pre-vote that reaches this replica while its group sleeps,
    /// if the answer must be no; `None` lets openraft answer (and the group
    /// wake) as for any other message.
    ///
    /// openraft refuses a pre-vote while it believes a leader alive: on a
    /// follower, for an election timeout after the leader's last message; on
    /// the leader, while a majority acknowledged it that recently. A group
    /// that slept has heard nothing for longer than that, so every member
    /// would grant, and one member that wakes for a bad reason (its node
    /// was paused, or too loaded to hear the probe answers in time) unseated
    /// a leader that was alive: after a 5 s pause of one of three nodes
    /// holding 1,000 idle partitions, every group woke and the elections
    /// that followed kept two cores busy for minutes, half the partitions
    /// without a leader (BENCHMARKS.md, "Elections after a pause"). Here the
    /// knowledge that the sleeping group still has is used instead:
    /// - its leader refuses and wakes, so its heartbeats reach the member
    ///   that campaigns, which then follows it again;
    /// - a follower refuses while its leader's node confirmed, within
    ///   `leader_silence`, that it still leads the group, and stays asleep.
    ///
    /// Refusing a vote never breaks safety. A leadership transfer, which the
    /// leader asked for, is never refused here; a leader that died is not
    /// confirmed for long, and then its followers wake and grant.
    pub(super) async fn refuse_pre_vote_while_asleep(&self, payload: &[u8]) -> Option<Vec<u8>> {
        if !self.is_asleep() {
            return None;
        }
        let request: VoteRequest<TypeConfig> = decode(payload).ok()?;
        if request.leadership_transfer {
            return None;
        }
        let (vote, last, _, state) = self.quiesce_point().await?;
        let refuse = if state == ServerState::Leader {
            self.leads()
        } else {
            // A campaigning member doubts the leader: while refusing on the
            // strength of a confirmation that is not fresh, ask the leader's
            // node again, so that a dead one is found out by this member too
            // and a later try of the candidate's is granted.
            self.quiescence().is_some_and(|q| {
                let confirmed = q.leader_confirmed_recently(self.id);
                if confirmed {
                    q.recheck(self.id);
                }
                confirmed
            })
        };
        if !refuse {
            return None;
        }
        tracing::debug!(group = self.id, candidate = ?request.vote, leads = state == ServerState::Leader,
            "refused a pre-vote: the group sleeps under a live leader");
        if state == ServerState::Leader {
            self.wake_up("a member campaigned while its leader slept");
            // Heartbeat now rather than at the next tick: the member is
            // counting down to its next campaign.
            let _ = self.raft.trigger().heartbeat().await;
        }
        let answer: Answer<VoteResponse<TypeConfig>> = Ok(VoteResponse::new(vote, last, false));
        encode(&answer).ok()
    }

    /// Whether `payload` is an append without entries under the vote this
    /// group fell asleep under: a heartbeat of its own leader, which a
    /// sleeping member need not wake for.
    pub(super) fn is_sleepers_heartbeat(&self, payload: &[u8]) -> bool {
        self.is_asleep()
            && decode::<AppendEntriesRequest<TypeConfig>>(payload)
                .is_ok_and(|req| self.is_sleepers_append(req.entries.is_empty(), &req.vote))
    }

    /// [`Self::is_sleepers_heartbeat`] for an append already decoded: one
    /// with (`empty`) or without entries, under `vote`.
    pub(super) fn is_sleepers_append(&self, empty: bool, vote: &Vote) -> bool {
        if !empty || !self.is_asleep() {
            return false;
        }
        *self.sleep.vote.lock().unwrap() == Some(*vote)
    }
}

impl<S: ReplicatedState> Sleeper for Group<S> {
    fn wake(&self, why: &'static str) {
        self.wake_up(why);
    }

    fn leads(&self) -> bool {
        self.leads_for_sleepers()
    }

    fn asleep(&self) -> bool {
        self.is_asleep()
    }

    fn try_sleep(&self, quiescence: &Quiescence) -> futures::future::BoxFuture<'_, ()> {
        let q = quiescence.clone();
        Box::pin(async move { self.try_sleep_as_leader(&q).await })
    }

    fn followers(&self) -> Vec<(NodeId, String)> {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        m.membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| **id != self.node)
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect()
    }

    fn wants_commit(&self) -> bool {
        // The condition `wait_for_recovery` waits for, negated.
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        m.cluster_committed.as_ref().map(|c| c.index()) < m.last_log_index
    }
}
