//! Quiescence: an idle group stops ticking, so it costs no CPU and sends no
//! messages until it has work again.
//!
//! Every running openraft group ticks: its leader sends a heartbeat to each
//! follower every 50 ms and each follower runs an election timer. With
//! hundreds of idle partitions that is thousands of messages a second doing
//! nothing (issue 15). As CockroachDB's quiescence and TiKV's hibernating
//! regions do, a leader whose group has been idle for a while (every member
//! holds and has committed its whole log) asks each member to stop ticking
//! ([`RaftRpcKind::Quiesce`]), and stops its own ticks once all agreed.
//!
//! A follower that stops ticking no longer notices by itself that its leader
//! died, so each node watches the leaders of its sleeping groups at node
//! level instead: one [`RaftRpcKind::PeerProbe`] per node pair every
//! [`QuiesceConfig::probe_interval`], whatever the number of groups. It
//! serves both directions of the pair: it names the groups the sender sleeps
//! in under the receiver (the answer says which the receiver still leads)
//! and the groups the sender leads with the receiver as a member (so the
//! receiver learns that its leader there is alive and still leads them).
//! Of two nodes that both have a reason to probe, the one with the lower id
//! does; the other probes only when it has not heard a probe from its peer
//! for [`probe_heard_window`], so a dead or old-build peer is still watched.
//! A group whose leader node says it no longer leads it, or has not been
//! heard from for [`QuiesceConfig::leader_silence`], wakes and runs its
//! election timer again (it has heard nothing for long, so it campaigns at
//! once). Probing once per pair rather than once per direction halves what
//! an idle cluster sends (issue 15: idle partitions must cost almost
//! nothing). Nodes of an older build send [`RaftRpcKind::LeaderProbe`],
//! which is still answered.
//!
//! The background probes are rare (900 ms; the silence that wakes a group
//! 3 s) because whoever needs a sleeping group's leader says so first: a
//! write sent to a follower, a client asking a follower whom it follows
//! while its request to the leader goes unanswered, a member asking for a
//! pre-vote. Each makes the follower recheck the leader at once
//! ([`Quiescence::recheck`]), so a dead leader of an idle partition is
//! replaced about as soon as an awake one would be, and the interval could
//! go from 150 to 600 ms and then to 900 ms (probing every 150 ms was two
//! thirds of an idle cluster's CPU: BENCHMARKS.md, sessions 29 and 37).
//!
//! Safety does not depend on any of this: ticks only drive heartbeats and
//! election timeouts, never what is committed. The rules below are for
//! liveness, so that no member sleeps while another waits for heartbeats:
//! - a group wakes on every write, membership change or leader transfer its
//!   leader is asked for, and on every Raft RPC it receives except an empty
//!   append of the leader it fell asleep under (the heartbeat of a leader
//!   that woke up without anything to send, harmless to sleep through) and
//!   quiescence's own messages;
//! - a member falls asleep only if its vote, last log id and committed log id
//!   are exactly the leader's, and a leader only after every member agreed;
//! - a wake and a fall asleep that race are ordered by an epoch counter: a
//!   fall asleep started before any wake it did not see is abandoned.
//!
//! A replica that starts (a restart) under a committed vote of another
//! leader starts asleep and watched: it wakes as soon as that leader is gone
//! or sends it anything new, instead of timing out and unseating a leader
//! that quiesced while it was down. Such a replica has not heard what its
//! leader committed, which it needs before it may serve reads
//! (`Group::wait_for_recovery`), and a sleeping leader sends it nothing: so
//! while it wants the commit, each probe round that finds its leader alive
//! also sends the leader a [`RaftRpcKind::CommitWanted`], which wakes the
//! leader; its heartbeats carry the commit, and the group sleeps again once
//! idle. (Without it, the fault suite found a restarted replica of an idle
//! partition that never served reads again.)

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use serde::{Deserialize, Serialize};
use sluice_proto::{RaftRpc, RaftRpcKind};

use crate::log_store::{decode, encode};
use crate::network::{Answer, RaftTransport};
use crate::{GroupId, NodeId};

/// How quiescence times itself.
#[derive(Clone, Debug)]
pub struct QuiesceConfig {
    /// How often the node looks for idle groups that it leads.
    pub sweep_interval: Duration,
    /// How long a group must have taken no new entry before it may sleep.
    pub idle_for: Duration,
    /// How often a node asks the leaders of its sleeping groups whether
    /// they still lead them.
    pub probe_interval: Duration,
    /// Deadline of one background probe.
    pub probe_timeout: Duration,
    /// Deadline of one quiesce request: a member that has not agreed by
    /// then keeps the group awake until a later sweep.
    pub request_timeout: Duration,
    /// A sleeping group wakes once its leader's node has not confirmed it
    /// for this long, whether or not anyone needs it.
    pub leader_silence: Duration,
    /// A doubted leader (see `Quiescence::recheck`) whose node confirmed
    /// the group this recently is not asked again.
    pub recheck_fresh: Duration,
    /// Deadline of the probe that rechecks a doubted leader.
    pub recheck_timeout: Duration,
    /// A doubted group whose recheck got no answer wakes only if its leader's
    /// node has confirmed nothing for this long; otherwise the next doubt
    /// asks again.
    pub recheck_silence: Duration,
}

impl Default for QuiesceConfig {
    fn default() -> Self {
        Self {
            sweep_interval: crate::timeouts::QUIESCE_SWEEP_INTERVAL,
            idle_for: crate::timeouts::QUIESCE_IDLE_FOR,
            probe_interval: crate::timeouts::QUIESCE_PROBE_INTERVAL,
            probe_timeout: crate::timeouts::QUIESCE_PROBE_TIMEOUT,
            request_timeout: crate::timeouts::QUIESCE_REQUEST_TIMEOUT,
            leader_silence: crate::timeouts::QUIESCE_LEADER_SILENCE,
            recheck_fresh: crate::timeouts::QUIESCE_RECHECK_FRESH,
            recheck_timeout: crate::timeouts::QUIESCE_RECHECK_TIMEOUT,
            recheck_silence: crate::timeouts::QUIESCE_RECHECK_SILENCE,
        }
    }
}

/// Most group ids one probe may name: more groups than a node may hold
/// replicas of (`PARTITION_REPLICAS_PER_NODE_MAX`) would be a bug or a
/// hostile peer.
const PROBE_GROUPS_MAX: usize = sluice_proto::limits::PARTITION_REPLICAS_PER_NODE_MAX + 1;

/// What a group does for quiescence; implemented by every `Group`.
pub(crate) trait Sleeper: Send + Sync + 'static {
    /// Wakes the group if it sleeps (its ticks resume).
    fn wake(&self, why: &'static str);
    /// Whether this replica leads its group now.
    fn leads(&self) -> bool;
    /// Whether the group sleeps on this node.
    fn asleep(&self) -> bool;
    /// On a leader: puts the group to sleep if it has been idle long enough
    /// and every member agrees. Does nothing elsewhere.
    fn try_sleep(&self, quiescence: &Quiescence) -> BoxFuture<'_, ()>;
    /// Whether this replica has yet to hear what its leader has committed up
    /// to its own log's end (it restarted): until it has, it cannot recover
    /// and serve reads, and a sleeping leader sends it nothing by itself.
    fn wants_commit(&self) -> bool;
    /// The group's other members (voters and learners) and their addresses.
    fn followers(&self) -> Vec<(NodeId, String)>;
}

/// The payload of a [`RaftRpcKind::PeerProbe`]; the answer is an
/// `Answer<Vec<GroupId>>`: of `asks`, the groups the receiver leads.
#[derive(Debug, Serialize, Deserialize)]
struct PeerProbe {
    /// The sending node.
    from: NodeId,
    /// Groups asleep on the sender whose leader it believes the receiver is.
    asks: Vec<GroupId>,
    /// Every group the sender leads that has the receiver as a member,
    /// asleep or not: the receiver may sleep in any of them (a follower
    /// sleeps through its leader's empty heartbeats).
    leads: Vec<GroupId>,
}

/// How recently a probe from a peer must have come for this node to skip
/// its own probe of that peer: one and a half probe intervals, so that one
/// late probe does not set both nodes probing.
pub(crate) fn probe_heard_window(config: &QuiesceConfig) -> Duration {
    config.probe_interval * 3 / 2
}

/// A sleeping follower, watched through its leader's node.
struct Watch {
    leader: NodeId,
    addr: String,
    /// When the leader last confirmed it leads the group (or the group fell
    /// asleep).
    confirmed: Instant,
    group: Arc<dyn Sleeper>,
}

pub(crate) struct Inner {
    /// This node.
    node: NodeId,
    transport: Arc<dyn RaftTransport>,
    config: QuiesceConfig,
    /// When a [`RaftRpcKind::PeerProbe`] last came from each node.
    heard: Mutex<HashMap<NodeId, Instant>>,
    /// When each node last answered a probe of this node's. Not in `heard`:
    /// that one says a peer probes, so this node need not.
    answered: Mutex<HashMap<NodeId, Instant>>,
    /// Every group of this node taking part (the controller's does not).
    groups: Mutex<HashMap<GroupId, Arc<dyn Sleeper>>>,
    /// Groups asleep here as followers, by group.
    watched: Mutex<HashMap<GroupId, Watch>>,
    /// Groups this node leads that fell asleep without some members (silent
    /// when the group slept), and those members: woken when any of them is
    /// heard from again.
    missing: Mutex<HashMap<GroupId, Vec<NodeId>>>,
    /// Leader nodes being rechecked now, with the groups doubted meanwhile
    /// (at most [`PROBE_GROUPS_MAX`] each): one recheck per node at a time.
    rechecking: Mutex<HashMap<NodeId, BTreeSet<GroupId>>>,
    /// Told when a group wakes or joins: the sweeps, which only put groups
    /// to sleep, stop while every group sleeps and resume on this.
    woke: Arc<tokio::sync::Notify>,
    /// Run each time every group has fallen asleep (see
    /// [`Quiescence::on_all_asleep`]).
    all_asleep_hook: Mutex<Option<AllAsleepHook>>,
    /// Ends the background task when the last handle goes.
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// What a node does once all its groups sleep ([`Quiescence::on_all_asleep`]).
type AllAsleepHook = Arc<dyn Fn() + Send + Sync>;

/// The node-wide side of quiescence: finds idle groups this node leads and
/// watches the leaders of the groups sleeping here. One per node; cheap to
/// clone.
#[derive(Clone)]
pub struct Quiescence(Arc<Inner>);

impl Quiescence {
    /// Starts the quiescence task of node `node`; it stops when every handle
    /// is dropped.
    pub fn start(node: NodeId, transport: Arc<dyn RaftTransport>, config: QuiesceConfig) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let inner = Arc::new(Inner {
            node,
            transport,
            config,
            heard: Mutex::default(),
            answered: Mutex::default(),
            groups: Mutex::default(),
            watched: Mutex::default(),
            missing: Mutex::default(),
            rechecking: Mutex::default(),
            woke: Arc::default(),
            all_asleep_hook: Mutex::default(),
            _stop: stop,
        });
        tokio::spawn(run(Arc::downgrade(&inner), inner.woke.clone(), stopped));
        Self(inner)
    }

    pub(crate) fn config(&self) -> &QuiesceConfig {
        &self.0.config
    }

    pub(crate) fn transport(&self) -> &Arc<dyn RaftTransport> {
        &self.0.transport
    }

    pub(crate) fn downgrade(&self) -> Weak<Inner> {
        Arc::downgrade(&self.0)
    }

    pub(crate) fn register(&self, id: GroupId, group: Arc<dyn Sleeper>) {
        self.0.groups.lock().unwrap().insert(id, group);
        self.0.woke.notify_one();
    }

    /// Runs `hook` on a blocking thread each time every group of this node
    /// has fallen asleep after some were awake (and once at the first sweep
    /// that finds them all asleep): the moment a node turns idle, when work
    /// such as giving freed memory back to the system is done once and
    /// costs the idle node nothing after.
    pub fn on_all_asleep(&self, hook: impl Fn() + Send + Sync + 'static) {
        *self.0.all_asleep_hook.lock().unwrap() = Some(Arc::new(hook));
    }

    /// A group of this node woke (its ticks resumed): sweeps resume.
    pub(crate) fn woke(&self) {
        self.0.woke.notify_one();
    }

    pub(crate) fn deregister(&self, id: GroupId) {
        self.0.groups.lock().unwrap().remove(&id);
        self.unwatch(id);
    }

    /// Starts watching group `id`, asleep here, through its leader.
    pub(crate) fn watch(&self, id: GroupId, leader: NodeId, addr: String) {
        let Some(group) = self.0.groups.lock().unwrap().get(&id).cloned() else {
            return;
        };
        let watch = Watch {
            leader,
            addr,
            confirmed: Instant::now(),
            group,
        };
        self.0.watched.lock().unwrap().insert(id, watch);
    }

    /// Group `id` woke: it is no longer watched or waiting for members.
    pub(crate) fn unwatch(&self, id: GroupId) {
        self.0.watched.lock().unwrap().remove(&id);
        self.0.missing.lock().unwrap().remove(&id);
    }

    /// Group `id`, led here, fell asleep without `members` (silent then).
    pub(crate) fn sleeps_without(&self, id: GroupId, members: Vec<NodeId>) {
        self.0.missing.lock().unwrap().insert(id, members);
    }

    /// Node `node` was heard from: wakes the groups led here that fell
    /// asleep without it, so their leaders catch it up (it may have missed
    /// entries, or restarted) and they sleep again with it.
    fn member_back(&self, node: NodeId) {
        let to_wake: Vec<Arc<dyn Sleeper>> = {
            let missing = self.0.missing.lock().unwrap();
            if missing.is_empty() {
                return;
            }
            let groups = self.0.groups.lock().unwrap();
            missing
                .iter()
                .filter(|(_, members)| members.contains(&node))
                .filter_map(|(id, _)| groups.get(id).cloned())
                .collect()
        };
        if !to_wake.is_empty() {
            tracing::debug!(
                node,
                groups = to_wake.len(),
                "a member missing from sleeping groups is back"
            );
        }
        // Woken outside the locks: a wake unwatches the group.
        for group in to_wake {
            group.wake("a member that was missing is back");
        }
    }

    /// Whether group `id` sleeps here as a follower whose leader's node
    /// confirmed, within [`QuiesceConfig::leader_silence`], that it still
    /// leads it (see `Group::refuse_pre_vote_while_asleep`).
    pub(crate) fn leader_confirmed_recently(&self, id: GroupId) -> bool {
        self.0
            .watched
            .lock()
            .unwrap()
            .get(&id)
            .is_some_and(|w| w.confirmed.elapsed() <= self.0.config.leader_silence)
    }

    /// Someone doubts the leader of group `id`, asleep here as a follower: a
    /// writer sent this node what the leader should take, a client whose
    /// request to that leader goes unanswered asks this node whom it
    /// follows, or another member campaigns. Unless the leader's
    /// node confirmed the group within [`QuiesceConfig::recheck_fresh`], this
    /// asks that node now, with the short deadline
    /// [`QuiesceConfig::recheck_timeout`], instead of waiting for the next
    /// probe round, and wakes the group if the node no longer leads it, or
    /// does not answer and has confirmed nothing for
    /// [`QuiesceConfig::recheck_silence`] (the next doubt asks again if it
    /// has not been that long). So a dead leader of an idle group is found out as
    /// soon as anyone needs it, and the background probes may be slow
    /// (issue 15: idle partitions must cost almost nothing). One recheck per
    /// leader node runs at a time; groups doubted meanwhile join it.
    pub(crate) fn recheck(&self, id: GroupId) {
        let doubted = self
            .0
            .watched
            .lock()
            .unwrap()
            .get(&id)
            .filter(|w| w.confirmed.elapsed() > self.0.config.recheck_fresh)
            .map(|w| (w.leader, w.addr.clone()));
        let Some((leader, addr)) = doubted else {
            return;
        };
        {
            let mut rechecking = self.0.rechecking.lock().unwrap();
            if let Some(ids) = rechecking.get_mut(&leader) {
                if ids.len() < PROBE_GROUPS_MAX {
                    ids.insert(id);
                }
                return;
            }
            rechecking.insert(leader, BTreeSet::from([id]));
        }
        let q = self.clone();
        tokio::spawn(async move { q.recheck_now(leader, addr).await });
    }

    /// The probe of [`Quiescence::recheck`]: a whole probe of `leader`, so
    /// its answer confirms every group asleep here under it, but only the
    /// doubted groups wake if it fails.
    async fn recheck_now(&self, leader: NodeId, addr: String) {
        let out = outgoing(self).remove(&leader).unwrap_or_default();
        let timeout = self.0.config.recheck_timeout;
        let answer = send_probe(self, leader, addr, &out, timeout).await;
        let doubted = self
            .0
            .rechecking
            .lock()
            .unwrap()
            .remove(&leader)
            .unwrap_or_default();
        if answer.is_ok() {
            self.0
                .answered
                .lock()
                .unwrap()
                .insert(leader, Instant::now());
            self.member_back(leader);
        }
        let mut to_wake = Vec::new();
        {
            let mut watched = self.0.watched.lock().unwrap();
            let unanswered = take_answer(&mut watched, leader, &out.asks, &answer, &mut to_wake);
            let silence = self.0.config.recheck_silence;
            for id in unanswered.into_iter().filter(|id| doubted.contains(id)) {
                if let Some(w) = watched
                    .get(&id)
                    .filter(|w| w.confirmed.elapsed() >= silence)
                {
                    to_wake.push((w.group.clone(), "its doubted leader's node did not answer"));
                }
            }
        }
        if let Err(e) = &answer {
            tracing::debug!(leader, doubted = doubted.len(), error = %e,
                "a doubted leader of sleeping groups did not answer");
        }
        // Woken outside the lock: a wake unwatches the group.
        for (group, why) in to_wake {
            group.wake(why);
        }
    }

    /// How many of this node's groups sleep now (for the node's metrics).
    pub fn asleep_count(&self) -> usize {
        let groups: Vec<_> = self.0.groups.lock().unwrap().values().cloned().collect();
        groups.iter().filter(|g| g.asleep()).count()
    }

    /// Answers another node's [`RaftRpcKind::LeaderProbe`]: of the groups it
    /// names, those this node leads.
    pub fn answer_probe(&self, payload: &[u8]) -> Vec<u8> {
        let answer: Answer<Vec<GroupId>> = match decode::<Vec<GroupId>>(payload) {
            Ok(ids) if ids.len() > PROBE_GROUPS_MAX => Err(format!(
                "a leader probe names {} groups; at most {PROBE_GROUPS_MAX} are allowed",
                ids.len()
            )),
            Ok(ids) => Ok(self.led_of(ids)),
            Err(e) => Err(format!("undecodable leader probe: {e}")),
        };
        encode(&answer).unwrap_or_default()
    }

    /// Answers another node's [`RaftRpcKind::PeerProbe`] (of the groups it
    /// asks about, those this node leads) and takes in what it says: its
    /// groups asleep here under it are confirmed, or woken if it no longer
    /// leads them.
    pub fn answer_peer_probe(&self, payload: &[u8]) -> Vec<u8> {
        let answer: Answer<Vec<GroupId>> = match decode::<PeerProbe>(payload) {
            Ok(p) if p.asks.len() > PROBE_GROUPS_MAX || p.leads.len() > PROBE_GROUPS_MAX => {
                Err(format!(
                    "a peer probe names {} and {} groups; at most {PROBE_GROUPS_MAX} each are allowed",
                    p.asks.len(),
                    p.leads.len()
                ))
            }
            Ok(p) => {
                self.heard_from(p.from, &p.leads);
                Ok(self.led_of(p.asks))
            }
            Err(e) => Err(format!("undecodable peer probe: {e}")),
        };
        encode(&answer).unwrap_or_default()
    }

    /// Of `ids`, the groups this node leads.
    fn led_of(&self, ids: Vec<GroupId>) -> Vec<GroupId> {
        let groups = self.0.groups.lock().unwrap();
        ids.into_iter()
            .filter(|id| groups.get(id).is_some_and(|g| g.leads()))
            .collect()
    }

    /// Node `from` says it leads `leads` (all of its groups this node is a
    /// member of): the groups asleep here under it are confirmed if named,
    /// woken otherwise.
    fn heard_from(&self, from: NodeId, leads: &[GroupId]) {
        let now = Instant::now();
        self.0.heard.lock().unwrap().insert(from, now);
        self.member_back(from);
        let leads: std::collections::HashSet<GroupId> = leads.iter().copied().collect();
        let mut to_wake = Vec::new();
        for (id, w) in self.0.watched.lock().unwrap().iter_mut() {
            if w.leader != from {
                continue;
            }
            if leads.contains(id) {
                w.confirmed = now;
            } else {
                to_wake.push(w.group.clone());
            }
        }
        // Woken outside the lock: a wake unwatches the group.
        for group in to_wake {
            group.wake("its leader no longer leads it");
        }
    }

    /// Whether node `node` sent this node a probe, or answered one of its
    /// probes, within `window`: a live node, seen without waking any group.
    /// Nodes that share no sleeping group with this one exchange no probes,
    /// and are never heard from this way.
    pub fn heard_within(&self, node: NodeId, window: Duration) -> bool {
        let recent = |map: &Mutex<HashMap<NodeId, Instant>>| {
            map.lock()
                .unwrap()
                .get(&node)
                .is_some_and(|at| at.elapsed() <= window)
        };
        recent(&self.0.heard) || recent(&self.0.answered)
    }

    /// Whether a probe from `peer` came recently enough that this node
    /// need not probe it (see the module's documentation).
    fn covered_by(&self, peer: NodeId, now: Instant) -> bool {
        peer < self.0.node
            && self.0.heard.lock().unwrap().get(&peer).is_some_and(|at| {
                now.saturating_duration_since(*at) <= probe_heard_window(&self.0.config)
            })
    }
}

/// The node's quiescence, from the weak handle a group holds (so that a
/// group never keeps it alive).
pub(crate) fn upgrade(weak: &Weak<Inner>) -> Option<Quiescence> {
    weak.upgrade().map(Quiescence)
}

/// The node's quiescence loop: sweeps for idle groups to put to sleep, and
/// probes the leaders of the groups asleep here. While every group sleeps
/// there is nothing to sweep, and the sweep timer (every 150 ms) stops
/// until a group wakes or joins (`woke`): stopping it took 64 idle
/// partitions from 0.0090 to 0.0068 cores of the cluster (BENCHMARKS.md).
async fn run(
    inner: Weak<Inner>,
    woke: Arc<tokio::sync::Notify>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let Some(config) = inner.upgrade().map(|i| i.config.clone()) else {
        return;
    };
    let mut sweep = tokio::time::interval(config.sweep_interval);
    let mut probe = tokio::time::interval(config.probe_interval);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut all_asleep = false;
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = sweep.tick(), if !all_asleep => {
                let Some(q) = inner.upgrade().map(Quiescence) else { return };
                all_asleep = sweep_leaders(&q).await;
                if all_asleep && let Some(hook) = q.0.all_asleep_hook.lock().unwrap().clone() {
                    tokio::task::spawn_blocking(move || hook());
                }
            }
            // A wake since the sweep's walk left a permit: no wake is missed.
            _ = woke.notified(), if all_asleep => {
                all_asleep = false;
                sweep.reset();
            }
            _ = probe.tick() => {
                let Some(q) = inner.upgrade().map(Quiescence) else { return };
                probe_leaders(&q).await;
            }
        }
    }
}

/// Most groups put to sleep at once, so a node with a thousand idle groups
/// does not send a thousand quiesce rounds in one burst.
const SWEEP_CONCURRENCY: usize = 16;

/// Puts to sleep the idle groups led here that may sleep; returns whether
/// every group of this node sleeps now.
async fn sweep_leaders(q: &Quiescence) -> bool {
    let groups: Vec<Arc<dyn Sleeper>> = q.0.groups.lock().unwrap().values().cloned().collect();
    let mut candidates = groups.iter().filter(|g| !g.asleep() && g.leads());
    let mut running = FuturesUnordered::new();
    loop {
        while running.len() < SWEEP_CONCURRENCY {
            match candidates.next() {
                Some(g) => running.push(g.try_sleep(q)),
                None => break,
            }
        }
        if running.next().await.is_none() {
            break;
        }
    }
    drop(running);
    groups.iter().all(|g| g.asleep())
}

/// What one probe round sends one peer.
#[derive(Default)]
struct Outgoing {
    addr: String,
    asks: Vec<GroupId>,
    leads: Vec<GroupId>,
    /// Whether anything sleeps that this probe is for: a group asleep here
    /// under the peer, or one this node leads asleep with the peer in it.
    needed: bool,
}

/// What each peer needs to be sent this round, before skipping the peers
/// whose own probe covered it.
fn outgoing(q: &Quiescence) -> BTreeMap<NodeId, Outgoing> {
    let mut peers: BTreeMap<NodeId, Outgoing> = BTreeMap::new();
    let entry = |peers: &mut BTreeMap<NodeId, Outgoing>, peer: NodeId, addr: &str| {
        let out = peers.entry(peer).or_default();
        if out.addr.is_empty() {
            out.addr = addr.to_string();
        }
    };
    for (id, w) in q.0.watched.lock().unwrap().iter() {
        entry(&mut peers, w.leader, &w.addr);
        let out = peers.get_mut(&w.leader).expect("just added");
        out.asks.push(*id);
        out.needed = true;
    }
    let groups: Vec<(GroupId, Arc<dyn Sleeper>)> =
        q.0.groups
            .lock()
            .unwrap()
            .iter()
            .map(|(id, g)| (*id, g.clone()))
            .collect();
    for (id, group) in groups {
        if !group.leads() {
            continue;
        }
        let asleep = group.asleep();
        for (peer, addr) in group.followers() {
            entry(&mut peers, peer, &addr);
            let out = peers.get_mut(&peer).expect("just added");
            out.leads.push(id);
            out.needed |= asleep;
        }
    }
    peers
}

/// Sends `peer` the probe `out` with deadline `timeout`; its answer is, of
/// `out.asks`, the groups the peer leads.
async fn send_probe(
    q: &Quiescence,
    peer: NodeId,
    addr: String,
    out: &Outgoing,
    timeout: Duration,
) -> Answer<Vec<GroupId>> {
    let probe = PeerProbe {
        from: q.0.node,
        asks: out.asks.clone(),
        leads: out.leads.clone(),
    };
    let payload = encode(&probe).map_err(|e| e.to_string())?;
    let rpc = RaftRpc {
        group: crate::CONTROLLER_GROUP,
        kind: RaftRpcKind::PeerProbe,
        payload,
    };
    match q.0.transport.call(peer, addr, rpc, timeout).await {
        Ok(bytes) => decode::<Answer<Vec<GroupId>>>(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|a| a),
        Err(e) => Err(e.to_string()),
    }
}

/// Takes in `leader`'s answer to a probe that asked about `ids`: a group
/// it still leads is confirmed, one it no longer leads is put in `to_wake`.
/// Returns the groups, still asleep here under `leader`, that the probe
/// failed to get an answer for.
fn take_answer(
    watched: &mut HashMap<GroupId, Watch>,
    leader: NodeId,
    ids: &[GroupId],
    answer: &Answer<Vec<GroupId>>,
    to_wake: &mut Vec<(Arc<dyn Sleeper>, &'static str)>,
) -> Vec<GroupId> {
    let now = Instant::now();
    let mut unanswered = Vec::new();
    for &id in ids {
        let Some(w) = watched.get_mut(&id).filter(|w| w.leader == leader) else {
            continue;
        };
        match answer {
            Ok(led) if led.contains(&id) => w.confirmed = now,
            Ok(_) => to_wake.push((w.group.clone(), "its leader no longer leads it")),
            Err(e) => {
                tracing::debug!(group = id, leader, error = %e,
                    "no answer from the leader of a sleeping group");
                unanswered.push(id);
            }
        }
    }
    unanswered
}

async fn probe_leaders(q: &Quiescence) {
    let now = Instant::now();
    let mut peers = outgoing(q);
    peers.retain(|peer, out| out.needed && !q.covered_by(*peer, now));
    let timeout = q.0.config.probe_timeout;
    let probes = peers.into_iter().map(|(leader, out)| async move {
        let answer = send_probe(q, leader, out.addr.clone(), &out, timeout).await;
        (leader, out.asks, answer)
    });
    let results = futures::future::join_all(probes).await;
    for (peer, _, answer) in &results {
        if answer.is_ok() {
            q.0.answered.lock().unwrap().insert(*peer, Instant::now());
            q.member_back(*peer);
        }
    }
    let now = Instant::now();
    let mut to_wake: Vec<(Arc<dyn Sleeper>, &'static str)> = Vec::new();
    {
        let mut watched = q.0.watched.lock().unwrap();
        for (leader, ids, answer) in results {
            // Those unanswered wake below once silent for long enough.
            take_answer(&mut watched, leader, &ids, &answer, &mut to_wake);
        }
        // Every watch not confirmed for `leader_silence` wakes: those whose
        // probe failed above, and those of covered peers, confirmed (or
        // not) by the peers' own probes (a peer that stopped probing is
        // probed again next round).
        for (id, w) in watched.iter() {
            if now.duration_since(w.confirmed) > q.0.config.leader_silence
                && !to_wake.iter().any(|(g, _)| Arc::ptr_eq(g, &w.group))
            {
                tracing::debug!(
                    group = id,
                    leader = w.leader,
                    "the leader of a sleeping group has not been heard from"
                );
                to_wake.push((w.group.clone(), "its leader's node is silent"));
            }
        }
    }
    // Woken outside the lock: a wake unwatches the group.
    for (group, why) in to_wake {
        group.wake(why);
    }
    // A member that restarted while its group slept holds the whole log but
    // has not heard the leader's commit; it asks the leader, which wakes and
    // heartbeats (and later sleeps again). Asked again each round until heard.
    let recent = probe_heard_window(&q.0.config);
    let wanting: Vec<(GroupId, NodeId, String)> = {
        let watched = q.0.watched.lock().unwrap();
        watched
            .iter()
            .filter(|(_, w)| now.duration_since(w.confirmed) <= recent && w.group.wants_commit())
            .map(|(id, w)| (*id, w.leader, w.addr.clone()))
            .collect()
    };
    let asks = wanting.into_iter().map(|(group, leader, addr)| async move {
        let rpc = RaftRpc {
            group,
            kind: RaftRpcKind::CommitWanted,
            payload: Vec::new(),
        };
        if let Err(e) = q.0.transport.call(leader, addr, rpc, timeout).await {
            tracing::debug!(group, leader, error = %e, "asking the leader for its commit failed");
        }
    });
    futures::future::join_all(asks).await;
}
