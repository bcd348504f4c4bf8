//! Quiescence on three real replicas (openraft, RocksDB) wired in process:
//! an idle group stops sending heartbeats, wakes for a write, fails over
//! when its leader dies, and is not unseated by a follower's restart.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_proto::{RaftRpc, RaftRpcKind};

use crate::tests::{Sum, reopen};
use crate::{
    CallError, CallFuture, Group, GroupConfig, LogDb, NodeId, QuiesceConfig, Quiescence,
    RaftTransport,
};

const GROUP: u64 = 11;

/// Routes a group's RPCs to that node's replica and leader probes to that
/// node's [`Quiescence`]; counts what it carried; a node marked down
/// neither sends nor answers.
#[derive(Default)]
struct Net {
    groups: Mutex<HashMap<NodeId, Group<Sum>>>,
    nodes: Mutex<HashMap<NodeId, Quiescence>>,
    down: Mutex<HashSet<NodeId>>,
    sent: Mutex<HashMap<(NodeId, RaftRpcKind), usize>>,
    /// How many more messages of each kind are lost (answered unreachable).
    lose: Mutex<HashMap<RaftRpcKind, usize>>,
}

/// One node's end of the [`Net`].
struct Endpoint {
    from: NodeId,
    net: Arc<Net>,
}

impl RaftTransport for Endpoint {
    fn call(&self, target: NodeId, addr: String, rpc: RaftRpc, _timeout: Duration) -> CallFuture {
        let net = self.net.clone();
        let from = self.from;
        Box::pin(async move {
            let down = {
                let down = net.down.lock().unwrap();
                down.contains(&from) || down.contains(&target)
            };
            let unreachable = CallError::Unreachable {
                node: target,
                addr,
                reason: "down".into(),
            };
            let lost = match net.lose.lock().unwrap().get_mut(&rpc.kind) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            };
            if down || lost {
                return Err(unreachable);
            }
            *net.sent
                .lock()
                .unwrap()
                .entry((from, rpc.kind))
                .or_default() += 1;
            if matches!(rpc.kind, RaftRpcKind::LeaderProbe | RaftRpcKind::PeerProbe) {
                let node = net.nodes.lock().unwrap().get(&target).cloned();
                return node
                    .map(|q| match rpc.kind {
                        RaftRpcKind::PeerProbe => q.answer_peer_probe(&rpc.payload),
                        _ => q.answer_probe(&rpc.payload),
                    })
                    .ok_or(unreachable);
            }
            let group = net.groups.lock().unwrap().get(&target).cloned();
            let group = group.ok_or(unreachable)?;
            Ok(group.handle_rpc(rpc.kind, &rpc.payload).await)
        })
    }
}

/// Short enough that a test sees several rounds in a second; election
/// timeouts long enough that a loaded machine does not start elections of
/// its own, so every election seen is quiescence's doing.
fn configs() -> (GroupConfig, QuiesceConfig) {
    let group = GroupConfig {
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 600,
        election_timeout_max_ms: 900,
        ..Default::default()
    };
    let quiesce = QuiesceConfig {
        sweep_interval: Duration::from_millis(100),
        idle_for: Duration::from_millis(300),
        probe_interval: Duration::from_millis(50),
        probe_timeout: Duration::from_millis(200),
        request_timeout: Duration::from_millis(200),
        leader_silence: Duration::from_millis(300),
        recheck_fresh: Duration::from_millis(50),
        recheck_timeout: Duration::from_millis(200),
        recheck_silence: Duration::from_millis(300),
    };
    (group, quiesce)
}

struct Cluster {
    net: Arc<Net>,
    dirs: Vec<tempfile::TempDir>,
    states: HashMap<NodeId, Sum>,
}

impl Cluster {
    async fn start() -> Self {
        Self::start_with(configs().1).await
    }

    async fn start_with(quiesce: QuiesceConfig) -> Self {
        let net = Arc::new(Net::default());
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut cluster = Self {
            net,
            dirs,
            states: HashMap::new(),
        };
        for node in 1..=3 {
            let q = Quiescence::start(node, cluster.endpoint(node), quiesce.clone());
            cluster.net.nodes.lock().unwrap().insert(node, q);
            let db = LogDb::open(cluster.dirs[node as usize - 1].path()).unwrap();
            cluster.start_replica(node, db).await;
        }
        let members: Vec<(NodeId, String)> = (1..=3).map(|i| (i, format!("node-{i}"))).collect();
        let first = cluster.group(1);
        first.initialize(&members).await.unwrap();
        first
            .wait_for_leader(Duration::from_secs(10))
            .await
            .unwrap();
        cluster
    }

    fn endpoint(&self, node: NodeId) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            from: node,
            net: self.net.clone(),
        })
    }

    async fn start_replica(&mut self, node: NodeId, db: Arc<LogDb>) {
        let state = Sum::default();
        let group = Group::start(
            db,
            node,
            GROUP,
            state.clone(),
            &configs().0,
            self.endpoint(node),
        )
        .await
        .unwrap();
        let q = self.net.nodes.lock().unwrap()[&node].clone();
        group.quiesce_with(&q).await;
        self.net.groups.lock().unwrap().insert(node, group);
        self.states.insert(node, state);
    }

    fn group(&self, node: NodeId) -> Group<Sum> {
        self.net.groups.lock().unwrap()[&node].clone()
    }

    fn alive(&self) -> Vec<NodeId> {
        let down = self.net.down.lock().unwrap();
        (1..=3).filter(|n| !down.contains(n)).collect()
    }

    fn leader(&self) -> Option<NodeId> {
        self.alive()
            .into_iter()
            .find(|n| self.group(*n).status().is_leader)
    }

    fn term(&self, node: NodeId) -> u64 {
        self.group(node).status().term
    }

    fn all_asleep(&self) -> bool {
        self.alive().iter().all(|n| self.group(*n).is_asleep())
    }

    fn sum(&self, node: NodeId) -> u64 {
        self.states[&node].0.lock().unwrap().0
    }

    fn sent_by(&self, node: NodeId, kind: RaftRpcKind) -> usize {
        let sent = self.net.sent.lock().unwrap();
        sent.get(&(node, kind)).copied().unwrap_or(0)
    }

    fn sent(&self, kind: RaftRpcKind) -> usize {
        let sent = self.net.sent.lock().unwrap();
        sent.iter()
            .filter(|((_, k), _)| *k == kind)
            .map(|(_, n)| n)
            .sum()
    }

    async fn write_anywhere(&self, value: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            for node in self.alive() {
                if self
                    .group(node)
                    .write(value.to_be_bytes().to_vec())
                    .await
                    .is_ok()
                {
                    return;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no replica took the write"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn shutdown(self) {
        let groups: Vec<_> = self.net.groups.lock().unwrap().drain().collect();
        for (_, g) in groups {
            g.shutdown().await;
        }
        self.net.nodes.lock().unwrap().clear();
    }
}

async fn wait(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "{what}: not in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_group_sleeps_sends_no_heartbeats_and_wakes_for_a_write() {
    let c = Cluster::start().await;
    for i in 1..=10u64 {
        c.write_anywhere(i).await;
    }
    wait("every replica asleep", || c.all_asleep()).await;
    let leader = c.leader().expect("a leader");
    let term = c.term(leader);

    let appends = c.sent(RaftRpcKind::AppendEntries);
    let probes = c.sent(RaftRpcKind::PeerProbe);
    let probes_of_3 = c.sent_by(3, RaftRpcKind::PeerProbe);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        c.sent(RaftRpcKind::AppendEntries),
        appends,
        "a sleeping group sent appends (heartbeats)"
    );
    assert!(
        c.sent(RaftRpcKind::PeerProbe) > probes + 10,
        "the followers stopped watching their leader"
    );
    // One probe per node pair: node 3 is the higher id of both of its
    // pairs, and its peers' probes tell it all it needs (whether it leads
    // or follows), so it sends none, but for a round its peers were late in
    // on a loaded machine (then it probes, rather than miss its leader).
    let all = c.sent(RaftRpcKind::PeerProbe) - probes;
    let of_3 = c.sent_by(3, RaftRpcKind::PeerProbe) - probes_of_3;
    assert!(
        of_3 * 4 < all,
        "node 3 sent {of_3} of {all} probes although its peers' probes covered it"
    );
    assert!(c.all_asleep());

    // A write wakes it, commits everywhere, and the group sleeps again, all
    // under the same leader. Asleep for more than an election timeout, the
    // leader's lease has expired: the write renews it with a heartbeat
    // round of its own instead of waiting for the resumed ticks.
    let renewals = c.group(leader).lease_renewals();
    c.group(leader)
        .write(100u64.to_be_bytes().to_vec())
        .await
        .unwrap();
    assert!(
        c.group(leader).lease_renewals() > renewals,
        "the write did not renew the sleeping leader's lease"
    );
    wait("every replica applied the write", || {
        (1..=3).all(|n| c.sum(n) == 155)
    })
    .await;
    wait("asleep again", || c.all_asleep()).await;
    assert_eq!(c.leader(), Some(leader));
    assert!((1..=3).all(|n| c.term(n) == term), "an election happened");
    c.shutdown().await;
}

/// A leadership transfer whose request is lost (or refused: a target that
/// has not flushed the leader's last entry) must still happen: openraft's
/// leader stops proposing and heartbeating once it asks, and with the
/// members asleep (the probes still say its node leads) nothing else ended
/// its term, so it took no writes for good. It asks again
/// (`Group::transfer_leader`); without that this test times out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_leader_transfer_is_asked_again_until_leadership_moves() {
    let c = Cluster::start().await;
    c.write_anywhere(1).await;
    wait("the group sleeps", || c.all_asleep()).await;
    let old = c.leader().unwrap();
    let to = (1..=3).find(|n| *n != old).unwrap();
    // openraft sends the request to every voter: both copies are lost.
    c.net
        .lose
        .lock()
        .unwrap()
        .insert(RaftRpcKind::TransferLeader, 2);
    let other = (1..=3).find(|n| *n != old && *n != to).unwrap();
    let campaigns = c.sent_by(other, RaftRpcKind::PreVote) + c.sent_by(other, RaftRpcKind::Vote);
    c.group(old).transfer_leader(to).await.unwrap();
    // Asked again, the request reaches the target, which takes over. The
    // other member serves its copy asleep and wakes for the new leader's
    // heartbeat: woken by the request (before session 33) it found its
    // election timer run out and campaigned in the same millisecond as the
    // target, and won about half the time (RELIABILITY.md).
    wait("the target leads", || c.leader() == Some(to)).await;
    assert!(
        c.sent_by(old, RaftRpcKind::TransferLeader) >= 1,
        "leadership moved without a transfer request delivered"
    );
    assert_eq!(
        c.sent_by(other, RaftRpcKind::PreVote) + c.sent_by(other, RaftRpcKind::Vote),
        campaigns,
        "the member the transfer does not name campaigned"
    );
    let new = c.leader().unwrap();
    c.group(new)
        .write(2u64.to_be_bytes().to_vec())
        .await
        .unwrap();
    wait("every replica applies it", || {
        (1..=3).all(|n| c.sum(n) == 3)
    })
    .await;
    c.shutdown().await;
}

/// A transfer whose target died before it took over: the member the
/// request does not name sleeps through it, so what wakes it is its
/// leader's node no longer saying it leads once the handover has been
/// pending for `LEADER_TRANSFER_CONFIRM_WINDOW`; it then wins an election
/// and takes writes. (Kept asleep with nothing else, it would sleep on under
/// a leader that takes no writes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_to_a_dead_member_ends_with_another_member_leading() {
    let c = Cluster::start().await;
    c.write_anywhere(1).await;
    wait("the group sleeps", || c.all_asleep()).await;
    let old = c.leader().unwrap();
    let to = (1..=3).find(|n| *n != old).unwrap();
    let other = (1..=3).find(|n| *n != old && *n != to).unwrap();
    c.net.down.lock().unwrap().insert(to);
    let asked = std::time::Instant::now();
    c.group(old).transfer_leader(to).await.unwrap();
    wait("the other member leads", || c.leader() == Some(other)).await;
    assert!(
        asked.elapsed() >= crate::timeouts::LEADER_TRANSFER_CONFIRM_WINDOW,
        "the other member took over before the target had its chance ({:?})",
        asked.elapsed()
    );
    c.group(other)
        .write(2u64.to_be_bytes().to_vec())
        .await
        .unwrap();
    wait("the survivors apply it", || {
        c.alive().iter().all(|n| c.sum(*n) == 3)
    })
    .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_group_elects_a_new_leader_when_its_leader_node_dies() {
    let c = Cluster::start().await;
    c.write_anywhere(1).await;
    wait("every replica asleep", || c.all_asleep()).await;
    let old = c.leader().expect("a leader");
    let term = c.term(old);
    c.net.down.lock().unwrap().insert(old);

    wait("a new leader among the others", || {
        c.leader().is_some_and(|l| l != old)
    })
    .await;
    let new = c.leader().unwrap();
    assert!(c.term(new) > term);
    c.write_anywhere(2).await;
    wait("the survivors applied both writes", || {
        c.alive().iter().all(|n| c.sum(*n) == 3)
    })
    .await;
    c.shutdown().await;
}

/// A node's all-asleep hook runs when its groups have all fallen asleep,
/// not while one is awake, and again after a write woke them and they slept
/// again: the node turning idle is when it gives memory back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_is_told_each_time_all_its_groups_fall_asleep() {
    let c = Cluster::start().await;
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for node in 1..=3 {
        let q = c.net.nodes.lock().unwrap()[&node].clone();
        let calls = calls.clone();
        q.on_all_asleep(move || {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
    }
    let count = || calls.load(std::sync::atomic::Ordering::SeqCst);
    c.write_anywhere(1).await;
    wait("every replica asleep", || c.all_asleep()).await;
    wait("every node told", || count() >= 3).await;
    // Asleep, the sweeps have stopped: nothing more to tell.
    let told = count();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(), told, "a node asleep all along was told again");
    c.write_anywhere(2).await;
    wait("every replica asleep again", || {
        c.all_asleep() && count() >= told + 3
    })
    .await;
    c.shutdown().await;
}

/// Background probes too rare to act within a test: a sleeping group's dead
/// leader can only be found out in time by a recheck.
fn rare_probes() -> QuiesceConfig {
    QuiesceConfig {
        probe_interval: Duration::from_secs(60),
        probe_timeout: Duration::from_secs(1),
        leader_silence: Duration::from_secs(300),
        ..configs().1
    }
}

/// A cluster with [`rare_probes`], written once and asleep: it, its
/// leader, that leader's term and a follower.
async fn asleep_with_rare_probes() -> (Cluster, NodeId, u64, NodeId) {
    let c = Cluster::start_with(rare_probes()).await;
    c.write_anywhere(1).await;
    wait("every replica asleep", || c.all_asleep()).await;
    let leader = c.leader().expect("a leader");
    let term = c.term(leader);
    let follower = (1..=3).find(|n| *n != leader).unwrap();
    (c, leader, term, follower)
}

/// A client whose write to a sleeping partition's dead leader goes
/// unanswered asks the other replicas whom they follow; the one asked
/// rechecks the leader at once, wakes and campaigns, and the other member,
/// asked for its pre-vote, rechecks too and grants. With background probes
/// this rare, nothing else would elect a new leader within the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_doubted_dead_leader_of_a_sleeping_group_is_found_out_at_once() {
    let (c, old, term, asked) = asleep_with_rare_probes().await;
    c.net.down.lock().unwrap().insert(old);
    // Past `recheck_silence`: the confirmation at falling asleep is that old.
    tokio::time::sleep(Duration::from_millis(400)).await;
    c.group(asked).recheck_sleeping_leader();

    wait("a new leader among the others", || {
        c.leader().is_some_and(|l| l != old)
    })
    .await;
    assert!(c.term(c.leader().unwrap()) > term);
    c.write_anywhere(2).await;
    wait("the survivors applied both writes", || {
        c.alive().iter().all(|n| c.sum(*n) == 3)
    })
    .await;
    c.shutdown().await;
}

/// Doubts about a live leader cost one question however many come at once,
/// and wake nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doubts_about_a_live_sleeping_leader_cost_one_question_and_wake_nothing() {
    let (c, _, term, follower) = asleep_with_rare_probes().await;
    // Past `recheck_fresh`: the confirmation at falling asleep is stale.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let probes = c.sent_by(follower, RaftRpcKind::PeerProbe);
    for _ in 0..5 {
        c.group(follower).recheck_sleeping_leader();
    }
    wait("the leader was asked", || {
        c.sent_by(follower, RaftRpcKind::PeerProbe) > probes
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        c.sent_by(follower, RaftRpcKind::PeerProbe),
        probes + 1,
        "five doubts at once are one question"
    );
    assert!(c.all_asleep(), "a doubt about a live leader woke a group");
    assert!((1..=3).all(|n| c.term(n) == term));
    c.shutdown().await;
}

/// One unanswered question wakes nothing while the leader's node confirmed
/// the group within `recheck_silence`: a leader slow to answer once is not
/// unseated (each member woken so would grant the votes a sleeping one
/// refuses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_lost_recheck_before_the_silence_wakes_nothing() {
    let (c, _, term, follower) = asleep_with_rare_probes().await;
    // Past `recheck_fresh` (50 ms), well within `recheck_silence` (300 ms).
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.net.lose.lock().unwrap().insert(RaftRpcKind::PeerProbe, 1);
    c.group(follower).recheck_sleeping_leader();
    wait("the question was lost", || {
        c.net.lose.lock().unwrap()[&RaftRpcKind::PeerProbe] == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(c.all_asleep(), "one lost question woke a group");
    assert!((1..=3).all(|n| c.term(n) == term));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_follower_does_not_unseat_its_sleeping_leader() {
    let mut c = Cluster::start().await;
    c.write_anywhere(5).await;
    wait("every replica asleep", || c.all_asleep()).await;
    let leader = c.leader().expect("a leader");
    let term = c.term(leader);
    let follower = (1..=3).find(|n| *n != leader).unwrap();

    let old = c.net.groups.lock().unwrap().remove(&follower).unwrap();
    old.shutdown().await;
    drop(old);
    let db = reopen(c.dirs[follower as usize - 1].path()).await;
    c.start_replica(follower, db).await;
    assert!(
        c.group(follower).is_asleep(),
        "a replica restarted under a committed vote starts asleep"
    );
    // Without a write, it still learns what its leader has committed, so it
    // recovers and may serve reads: it asks the sleeping leader for a
    // heartbeat (before, it waited for the next write, for ever if none came).
    assert!(
        c.group(follower)
            .wait_for_recovery(Duration::from_secs(3))
            .await,
        "a restarted replica of a sleeping group never recovered"
    );

    // Longer than the restarted replica's lease and election timeout (up to
    // 1.8 s) and the leader's silence allowance.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(c.leader(), Some(leader));
    assert!(
        (1..=3).all(|n| c.term(n) == term),
        "the restart unseated the leader"
    );
    c.write_anywhere(6).await;
    wait("every replica applied both writes", || {
        c.group(follower).status().last_applied_index == c.group(leader).status().last_applied_index
            && c.sum(leader) == 11
    })
    .await;
    c.shutdown().await;
}

/// A member that wakes while its leader is alive (its node was paused, or
/// too loaded to hear the probe answers in time) campaigns at once: it has
/// heard nothing for longer than an election timeout. Its sleeping peers
/// had heard nothing for as long, so openraft alone would grant its
/// pre-vote and the election would unseat a live leader; with a thousand
/// groups that was an election storm that never settled. The leader and
/// the other member refuse instead, and the leader's heartbeats bring the
/// member back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_woken_by_mistake_does_not_unseat_its_sleeping_leader() {
    let c = Cluster::start().await;
    c.write_anywhere(4).await;
    wait("every replica asleep", || c.all_asleep()).await;
    let leader = c.leader().expect("a leader");
    let term = c.term(leader);
    let woken = (1..=3).find(|n| *n != leader).unwrap();
    // Asleep for longer than any lease and election timeout (up to 0.9 s).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pre_votes = c.sent_by(woken, RaftRpcKind::PreVote);
    crate::quiesce::Sleeper::wake(&c.group(woken), "a test");

    wait("the woken member campaigned", || {
        c.sent_by(woken, RaftRpcKind::PreVote) > pre_votes
    })
    .await;
    wait("every replica asleep again", || c.all_asleep()).await;
    assert_eq!(c.leader(), Some(leader));
    assert!(
        (1..=3).all(|n| c.term(n) == term),
        "a member woken by mistake unseated its live leader"
    );
    c.write_anywhere(5).await;
    wait("every replica applied both writes", || {
        (1..=3).all(|n| c.sum(n) == 9)
    })
    .await;
    c.shutdown().await;
}

/// A heartbeat that a member is still serving when its leader's request to
/// sleep puts it to sleep (both travel in one batch, served side by side)
/// leaves it asleep. Before, the heartbeat woke it once served; every member
/// so woken then ran its election timer against a leader that slept, and
/// unseated it (a 64-partition topic's groups held elections as they fell
/// asleep after its creation and between a producer's writes). One thread, so the heartbeat is surely still being
/// served (its answer cannot come before this test yields) when the request
/// to sleep is served.
#[tokio::test(flavor = "current_thread")]
async fn a_heartbeat_served_while_its_member_falls_asleep_does_not_wake_it() {
    use openraft::raft::AppendEntriesRequest;

    use crate::TypeConfig;
    use crate::log_store::{decode, encode};
    use crate::network::Answer;

    let c = Cluster::start().await;
    c.write_anywhere(1).await;
    wait("every replica asleep", || c.all_asleep()).await;
    let leader = c.leader().expect("a leader");
    let (vote, last, _, _) = c.group(leader).quiesce_point().await.unwrap();
    let heartbeat = encode(&AppendEntriesRequest::<TypeConfig> {
        vote,
        prev_log_id: last,
        entries: Vec::new(),
        leader_commit: last,
    })
    .unwrap();
    let member = (1..=3).find(|n| *n != leader).unwrap();
    let g = c.group(member);
    crate::quiesce::Sleeper::wake(&g, "a test");
    let mut served = std::pin::pin!(g.handle_rpc(RaftRpcKind::AppendEntries, &heartbeat));
    assert!(futures::poll!(&mut served).is_pending());
    let agreed: Answer<()> = decode(
        &g.handle_rpc(RaftRpcKind::Quiesce, &encode(&(vote, last)).unwrap())
            .await,
    )
    .unwrap();
    agreed.expect("the member agrees to sleep");
    assert!(g.is_asleep());
    let answered: Answer<openraft::raft::AppendEntriesResponse<TypeConfig>> =
        decode(&served.await).unwrap();
    assert!(answered.unwrap().is_success());
    assert!(
        g.is_asleep(),
        "a heartbeat of the leader it sleeps under woke the member"
    );
    c.shutdown().await;
}

/// A group whose follower's node is down sleeps without it (before, no
/// group with a replica on a dead node could sleep, and with a thousand of
/// them the survivors' heartbeats alone took every core); when the node is
/// back the leader wakes, catches it up and the group sleeps with it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_sleeps_without_a_dead_member_and_catches_it_up_when_it_returns() {
    let c = Cluster::start().await;
    c.write_anywhere(1).await;
    wait("every replica asleep", || c.all_asleep()).await;
    let leader = c.leader().expect("a leader");
    let term = c.term(leader);
    let down = (1..=3).find(|n| *n != leader).unwrap();
    c.net.down.lock().unwrap().insert(down);

    c.group(leader)
        .write(2u64.to_be_bytes().to_vec())
        .await
        .unwrap();
    wait("the live replicas asleep without the dead one", || {
        c.all_asleep()
    })
    .await;
    let appends = c.sent_by(leader, RaftRpcKind::AppendEntries);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        c.sent_by(leader, RaftRpcKind::AppendEntries),
        appends,
        "a leader asleep without a dead member kept heartbeating"
    );
    assert_eq!(c.sum(down), 1, "the dead member took a write");

    c.net.down.lock().unwrap().remove(&down);
    wait("the returning member caught up", || c.sum(down) == 3).await;
    wait("every replica asleep again", || c.all_asleep()).await;
    assert_eq!(c.leader(), Some(leader));
    assert!(
        (1..=3).all(|n| c.term(n) == term),
        "the member's return unseated the leader"
    );
    c.shutdown().await;
}

/// Writes land at intervals around the idle threshold, so sweeps keep
/// deciding to sleep just as a write arrives. A member left awake next to
/// a sleeping leader would time out and start an election.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_racing_sleep_never_cause_an_election() {
    let c = Cluster::start().await;
    c.write_anywhere(1).await;
    let leader = c.leader().expect("a leader");
    let term = c.term(leader);
    let mut expected = 1;
    for i in 0..16u64 {
        // 250 to 475 ms: on both sides of `idle_for` (300 ms) plus a sweep.
        tokio::time::sleep(Duration::from_millis(250 + (i * 15))).await;
        c.group(leader)
            .write(i.to_be_bytes().to_vec())
            .await
            .unwrap();
        expected += i;
    }
    // Longer than an election timeout after the last write.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(c.leader(), Some(leader));
    assert!(
        (1..=3).all(|n| c.term(n) == term),
        "a write racing a sleep caused an election"
    );
    wait("every replica applied every write", || {
        (1..=3).all(|n| c.sum(n) == expected)
    })
    .await;
    c.shutdown().await;
}

/// A probe is answered from this node's own groups only, and a hostile or
/// broken one gets a specific refusal rather than work proportional to
/// what it names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_probe_names_only_groups_led_here_and_refuses_oversized_or_garbled_ones() {
    use crate::log_store::{decode, encode};
    use crate::network::Answer;
    let c = Cluster::start().await;
    c.write_anywhere(1).await;
    let leader = c.leader().expect("a leader");
    let follower = (1..=3).find(|n| *n != leader).unwrap();
    let probe = |node: NodeId, ids: &Vec<u64>| {
        let q = c.net.nodes.lock().unwrap()[&node].clone();
        decode::<Answer<Vec<u64>>>(&q.answer_probe(&encode(ids).unwrap())).unwrap()
    };
    assert_eq!(probe(leader, &vec![GROUP, 999]), Ok(vec![GROUP]));
    assert_eq!(probe(follower, &vec![GROUP]), Ok(vec![]));

    let too_many: Vec<u64> = (0..5_000).collect();
    let refused = probe(leader, &too_many).unwrap_err();
    assert!(
        refused.contains("5000 groups") && refused.contains("at most"),
        "{refused}"
    );
    let q = c.net.nodes.lock().unwrap()[&leader].clone();
    let garbled = decode::<Answer<Vec<u64>>>(&q.answer_probe(&[0xff; 3])).unwrap();
    assert!(garbled.unwrap_err().contains("undecodable leader probe"));
    let garbled = decode::<Answer<Vec<u64>>>(&q.answer_peer_probe(&[0xff; 3])).unwrap();
    assert!(garbled.unwrap_err().contains("undecodable peer probe"));
    c.shutdown().await;
}

/// A peer probe answers what it asks and is taken at its word for what it
/// says it leads: a group asleep under its sender stays asleep while the
/// sender names it, and wakes once the sender leaves it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_probe_confirms_the_groups_its_sender_leads_and_wakes_the_others() {
    use crate::log_store::{decode, encode};
    use crate::network::Answer;
    #[derive(serde::Serialize)]
    struct Probe {
        from: NodeId,
        asks: Vec<u64>,
        leads: Vec<u64>,
    }
    let c = Cluster::start().await;
    c.write_anywhere(1).await;
    wait("every replica asleep", || c.all_asleep()).await;
    let leader = c.leader().expect("a leader");
    let follower = (1..=3).find(|n| *n != leader).unwrap();
    let q = c.net.nodes.lock().unwrap()[&follower].clone();
    let send = |leads: Vec<u64>| {
        let probe = Probe {
            from: leader,
            asks: vec![GROUP, 999],
            leads,
        };
        decode::<Answer<Vec<u64>>>(&q.answer_peer_probe(&encode(&probe).unwrap())).unwrap()
    };
    // The follower leads none of what it is asked about.
    assert_eq!(send(vec![GROUP]), Ok(vec![]));
    assert!(c.group(follower).is_asleep());
    // Its leader no longer names the group: it wakes (and, its leader
    // being alive, goes back to sleep later).
    assert_eq!(send(vec![]), Ok(vec![]));
    assert!(!c.group(follower).is_asleep(), "the group slept on");

    let oversized = Probe {
        from: leader,
        asks: vec![],
        leads: (0..5_000).collect(),
    };
    let refused = decode::<Answer<Vec<u64>>>(&q.answer_peer_probe(&encode(&oversized).unwrap()))
        .unwrap()
        .unwrap_err();
    assert!(
        refused.contains("5000 groups") && refused.contains("at most"),
        "{refused}"
    );
    c.shutdown().await;
}
