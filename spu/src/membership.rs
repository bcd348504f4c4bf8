//! Who belongs to the cluster, and moving partitions between nodes.
//!
//! - Identity: every data dir has a random incarnation. A node whose data
//!   dir is new asks its peers what the cluster knows about its id before it
//!   starts any Raft group: an id that already ran with another data dir lost
//!   its data, and a voter with an empty log could elect a stale leader, so
//!   such a node refuses to start. Every node then announces its incarnation
//!   to the controller, which refuses a mismatch for good.
//! - Joining: a node started with `--join ADDR` announces itself there; the
//!   controller leader records it and makes it a learner of the controller
//!   group, so it receives the whole metadata.
//! - Leader balancing: a leader hands its partition to the preferred replica
//!   (the first of the assignment) once that replica has caught up.
//! - Reassignment: the leader of a partition whose assignment changed adds
//!   the new replicas as learners, waits for them to catch up, switches the
//!   group's voters to the new set, then tells the controller, and only then
//!   do the replicas left out delete their copy.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use sluice_controller::NodeRecord;
use sluice_proto::{NodeId, NodeIncarnation, Request, Response, WireError};

use crate::data_dir::DataDir;
use crate::node_error::NodeError;
use crate::peers::Peers;
use crate::shared::Shared;
use crate::timeouts::{
    BALANCE_BACKOFF, CATCH_UP_POLL_INTERVAL, CATCH_UP_TIMEOUT, JOIN_TIMEOUT, MEMBERSHIP_TICK,
    STARTUP_ASK_TIMEOUT,
};

/// Written into the data dir of a node that was unregistered.
pub const UNREGISTERED_MARKER: &str = "UNREGISTERED";

/// A preferred replica at most this many entries behind gets the leadership.
const BALANCE_MAX_LAG: u64 = 8;

/// Refuses to start a node whose data dir is new while the cluster already
/// knows its id from an earlier data dir (or unregistered it). Peers that do
/// not answer are skipped: at first formation none of them runs yet.
pub(crate) async fn check_identity(
    id: NodeId,
    data_dir: &DataDir,
    peers: &Peers,
    addrs: &[String],
    join: Option<&str>,
) -> Result<(), NodeError> {
    if data_dir.root().join(UNREGISTERED_MARKER).exists() {
        return Err(NodeError::Refused {
            reason: format!(
                "node {id} was unregistered from its cluster (see {}); ids are never reused: start a node with a new --id, a new data dir and --join",
                data_dir.root().join(UNREGISTERED_MARKER).display()
            ),
        });
    }
    if !data_dir.is_fresh() {
        return Ok(());
    }
    let mut targets: Vec<String> = addrs.to_vec();
    if let Some(j) = join {
        targets.push(j.to_string());
    }
    let asks = targets.iter().map(|addr| async move {
        let request = Request::NodeIncarnation { id };
        let answer = peers.request(addr, &request, STARTUP_ASK_TIMEOUT).await;
        (addr.clone(), answer)
    });
    let mut join_reached = false;
    for (addr, answer) in futures::future::join_all(asks).await {
        let known = match answer {
            Ok(Response::NodeIncarnation(known)) => known,
            Ok(other) => {
                tracing::debug!(%addr, ?other, "unexpected answer about our identity");
                continue;
            }
            Err(e) => {
                tracing::debug!(%addr, error = %e, "peer not reachable for the identity check");
                continue;
            }
        };
        if join == Some(addr.as_str()) {
            join_reached = true;
        }
        if let Some(reason) = refusal(id, &known) {
            // Leave the directory fresh, so the check runs again next time.
            let _ = std::fs::remove_file(data_dir.root().join("node.toml"));
            return Err(NodeError::Refused {
                reason: format!("{reason} (according to the node at {addr})"),
            });
        }
    }
    if let Some(j) = join
        && !join_reached
    {
        let _ = std::fs::remove_file(data_dir.root().join("node.toml"));
        return Err(NodeError::Refused {
            reason: format!(
                "cannot reach {j} (--join) to join the cluster; check the address and that the node runs"
            ),
        });
    }
    Ok(())
}

fn refusal(id: NodeId, known: &NodeIncarnation) -> Option<String> {
    if known.removed {
        return Some(format!(
            "node id {id} was unregistered from this cluster and ids are never reused; start this node with a new --id and --join"
        ));
    }
    known.incarnation.as_ref().map(|old| {
        format!(
            "node id {id} already ran in this cluster with another data dir (incarnation {old}), and this data dir is new: its data was wiped or the id belongs to another node; a node that lost its data must not vote under its old id: start it with a new --id and --join"
        )
    })
}

/// Announces a node started with `--join` until the controller leader has
/// recorded it (a learner of the controller from then on).
pub(crate) async fn join(node: &Shared, via: &str) -> Result<(), NodeError> {
    let request = Request::JoinCluster {
        id: node.config.id,
        addr: node.config.advertised_addr(),
        incarnation: node.data_dir.incarnation().to_string(),
    };
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    loop {
        let answer = node.peers.request(via, &request, STARTUP_ASK_TIMEOUT).await;
        let reason = match answer {
            Ok(Response::Joined) => {
                tracing::info!(%via, "joined the cluster");
                return Ok(());
            }
            Ok(Response::Error(e)) if !e.is_retriable() => {
                return Err(NodeError::Refused {
                    reason: format!("the cluster refused the join: {e}"),
                });
            }
            Ok(other) => format!("{other:?}"),
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() > deadline {
            return Err(NodeError::Refused {
                reason: format!("could not join through {via} within {JOIN_TIMEOUT:?}: {reason}"),
            });
        }
        tracing::info!(%via, %reason, "join not done yet; retrying");
        tokio::time::sleep(MEMBERSHIP_TICK).await;
    }
}

/// Runs until the node stops: keeps this node's own record right (or stops
/// the node when the cluster refuses it), and while this node leads the
/// controller, registers the initial cluster's nodes, makes non-voters
/// learners and takes unregistered nodes out of the controller group.
pub(crate) async fn maintain(node: Arc<Shared>) {
    let config = &node.config;
    let mut wanted: Vec<(u64, String)> = config
        .peers
        .iter()
        .map(|p| (p.id, p.addr.clone()))
        .collect();
    if !wanted.iter().any(|(id, _)| *id == config.id) {
        wanted.push((config.id, config.advertised_addr()));
    }
    let mut tick = tokio::time::interval(MEMBERSHIP_TICK);
    loop {
        tick.tick().await;
        let md = node.metadata();
        if md.removed.contains(&config.id) {
            // Remembered in the data dir, so the node refuses to start again.
            let marker = node.data_dir.root().join(UNREGISTERED_MARKER);
            if let Err(e) = std::fs::write(&marker, b"unregistered from the cluster\n") {
                tracing::warn!(file = %marker.display(), error = %e, "cannot mark the data dir as unregistered");
            }
            node.fail(format!(
                "node {} was unregistered from the cluster (`sluice cluster spu unregister`)",
                config.id
            ));
            return;
        }
        if let Err(e) = announce_self(&node).await {
            if !e.is_retriable() {
                node.fail(format!("the cluster refused this node: {e}"));
                return;
            }
            tracing::debug!(error = %e, "cannot announce this node yet");
        }
        if !node.controller.is_leader() {
            continue;
        }
        for (id, addr) in &wanted {
            if md.removed.contains(id) {
                continue;
            }
            if md.nodes.get(id).map(|n| &n.addr) != Some(addr)
                && let Err(e) = node
                    .controller
                    .register_node(NodeRecord {
                        id: *id,
                        addr: addr.clone(),
                        incarnation: None,
                    })
                    .await
            {
                tracing::warn!(node = id, error = %e, "cannot register node yet");
            }
            let (voters, learners) = node.controller.members();
            if !voters.contains(id) && !learners.contains(id) {
                match node.controller.add_learner(*id, addr.clone()).await {
                    Ok(()) => tracing::info!(node = id, "added node as controller learner"),
                    Err(e) => {
                        tracing::warn!(node = id, error = %e, "cannot add controller learner yet")
                    }
                }
            }
        }
        let (voters, learners) = node.controller.members();
        if voters
            .iter()
            .chain(&learners)
            .any(|n| md.removed.contains(n))
            && let Err(e) = node.controller.drop_removed_members().await
        {
            tracing::warn!(error = %e, "cannot take unregistered nodes out of the controller yet");
        }
    }
}

/// Makes sure the controller has this node's incarnation on record.
async fn announce_self(node: &Shared) -> Result<(), WireError> {
    let (id, mine) = (node.config.id, node.data_dir.incarnation());
    let recorded = node.controller.view().with(|md| {
        md.nodes
            .get(&id)
            .map(|n| (n.incarnation.clone(), n.addr.clone()))
    });
    let addr = node.config.advertised_addr();
    if recorded == Some((Some(mine.to_string()), addr.clone())) {
        return Ok(());
    }
    let request = Request::JoinCluster {
        id,
        addr,
        incarnation: mine.to_string(),
    };
    crate::server::propose_anywhere(node, request).await?;
    tracing::info!(
        incarnation = mine,
        "the cluster recorded this node's data dir"
    );
    Ok(())
}

/// Drives reassignments of the partitions this node leads; runs until the
/// node stops. Each move runs in its own task (catching up can take long).
pub(crate) async fn drive_reassignments(node: Arc<Shared>) {
    let busy: Arc<Mutex<HashSet<(String, u32)>>> = Arc::default();
    let mut last_transfer: HashMap<(String, u32), tokio::time::Instant> = HashMap::new();
    let mut tick = tokio::time::interval(MEMBERSHIP_TICK);
    loop {
        tick.tick().await;
        let md = node.metadata();
        for p in node.replicas.all() {
            balance_leader(&node, &md, &p, &mut last_transfer).await;
            if !p.group.is_leader() {
                continue;
            }
            let Some(record) = md.topics.get(&p.topic) else {
                continue;
            };
            let Some(assignment) = record.info.assignments.get(p.index as usize) else {
                continue;
            };
            let target: BTreeSet<NodeId> = assignment.replicas.iter().copied().collect();
            let (voters, _) = p.group.members();
            let voters: BTreeSet<NodeId> = voters.into_iter().collect();
            let moving = record.moving.contains_key(&p.index);
            if voters == target && !moving {
                continue;
            }
            let key = (p.topic.clone(), p.index);
            if !busy
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.clone())
            {
                continue;
            }
            let addrs: Vec<(NodeId, Option<String>)> = target
                .iter()
                .map(|n| (*n, md.nodes.get(n).map(|r| r.addr.clone())))
                .collect();
            let (node, busy) = (node.clone(), busy.clone());
            tokio::spawn(async move {
                if let Err(e) = move_partition(&node, &p, &target, &addrs).await {
                    tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "partition move not finished; will retry");
                }
                busy.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
            });
        }
    }
}

/// Leaders are balanced by giving each partition's leadership to its
/// preferred replica (the first of its assignment, rotated across partitions
/// at creation) whenever that replica is a voter that has caught up. Without
/// this, a node that restarts after a failover would lead nothing until the
/// next failure.
async fn balance_leader(
    node: &Shared,
    md: &sluice_controller::Metadata,
    p: &crate::partition::Partition,
    last_transfer: &mut HashMap<(String, u32), tokio::time::Instant>,
) {
    if !p.group.is_leader() {
        return;
    }
    let Some(record) = md.topics.get(&p.topic) else {
        return;
    };
    if record.moving.contains_key(&p.index) {
        return;
    }
    let Some(&preferred) = record
        .info
        .assignments
        .get(p.index as usize)
        .and_then(|a| a.replicas.first())
    else {
        return;
    };
    if preferred == node.config.id || !p.group.members().0.contains(&preferred) {
        return;
    }
    let caught_up = p
        .group
        .replication_lag()
        .and_then(|lags| lags.get(&preferred).copied().flatten())
        .is_some_and(|lag| lag <= BALANCE_MAX_LAG);
    let key = (p.topic.clone(), p.index);
    let recently = last_transfer
        .get(&key)
        .is_some_and(|t| t.elapsed() < BALANCE_BACKOFF);
    if !caught_up || recently {
        return;
    }
    last_transfer.insert(key, tokio::time::Instant::now());
    tracing::info!(topic = %p.topic, partition = p.index, to = preferred, "handing leadership to the preferred replica");
    if let Err(e) = p.group.transfer_leader(preferred).await {
        tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "leader transfer failed");
    }
}

/// One attempt at moving partition `p` (led here) to `target`.
async fn move_partition(
    node: &Shared,
    p: &crate::partition::Partition,
    target: &BTreeSet<NodeId>,
    addrs: &[(NodeId, Option<String>)],
) -> Result<(), String> {
    let (voters, learners) = p.group.members();
    for (n, addr) in addrs {
        if voters.contains(n) {
            continue;
        }
        if !learners.contains(n) {
            let addr = addr
                .clone()
                .ok_or_else(|| format!("node {n} has no known address"))?;
            tracing::info!(topic = %p.topic, partition = p.index, node = n, "adding a new replica; waiting for it to catch up");
            tokio::time::timeout(CATCH_UP_TIMEOUT, p.group.add_learner_and_wait(*n, addr))
                .await
                .map_err(|_| format!("node {n} did not catch up within {CATCH_UP_TIMEOUT:?}"))?
                .map_err(|e| e.to_string())?;
        }
        // The leader's view of a node that held this replica before may be
        // stale: promote only once the node has confirmed entries close to
        // the end of the log.
        let deadline = tokio::time::Instant::now() + CATCH_UP_TIMEOUT;
        loop {
            let lag = p
                .group
                .replication_lag()
                .and_then(|l| l.get(n).copied().flatten());
            if lag.is_some_and(|l| l <= BALANCE_MAX_LAG) {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "node {n} is still {lag:?} entries behind after {CATCH_UP_TIMEOUT:?}"
                ));
            }
            tokio::time::sleep(CATCH_UP_POLL_INTERVAL).await;
        }
        tracing::info!(topic = %p.topic, partition = p.index, node = n, "new replica caught up");
    }
    let current: BTreeSet<NodeId> = p.group.members().0.into_iter().collect();
    if &current != target {
        p.group
            .change_voters(target.clone())
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(topic = %p.topic, partition = p.index, voters = ?target, "partition now runs on its new replica set");
    }
    let request = Request::FinishReassignment {
        topic: p.topic.clone(),
        partition: p.index,
        replicas: target.iter().copied().collect(),
    };
    // The assignment lists replicas in the order the user gave; the controller
    // compares sets, see `FinishReassignment`.
    crate::server::propose_anywhere(node, request)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
