//! Multi-Raft batching: the Raft RPCs this node's groups send one peer node
//! travel together, many groups' appends in one QUIC stream and one frame.
//!
//! Why: every partition is a Raft group of its own, and a node leading 20 of
//! them sent 20 separate streams (each a frame to encode, encrypt, send and
//! answer) to each follower for every round of appends and heartbeats. Past
//! a few partitions that per-message cost, not the records, bounded what the
//! cluster could carry. Multi-Raft systems (TiKV, CockroachDB) batch per node
//! pair for the same reason.
//!
//! How: each peer node has a lane, a queue and a task. The task takes what is
//! queued (up to [`RAFT_BATCH_RPCS_MAX`] RPCs) and sends it as one
//! [`Request::RaftBatch`], keeping at most [`RAFT_BATCHES_IN_FLIGHT_MAX`]
//! batches in flight. It never waits to fill a batch: an RPC alone on an idle
//! lane leaves at once, and batches grow only when RPCs arrive faster than the
//! peer answers (the queue fills while the in-flight bound holds the task).
//! The peer answers each RPC as its group finishes it, so a slow group
//! delays no other. Each caller keeps its own deadline.
//!
//! Big RPCs (over [`RAFT_BATCH_RPC_BYTES_MAX`]) and snapshots go alone, as
//! before, and so does everything to a peer that refuses batches (a node of
//! an older release, which cannot decode the request), once it has refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_proto::limits::{FRAME_SIZE_BYTES_MAX, RAFT_BATCH_RPC_BYTES_MAX, RAFT_BATCH_RPCS_MAX};
use sluice_proto::{RaftRpc, RaftRpcKind, Request, Response, WireError};
use sluice_raft::{CallError, NodeId};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::peers::Peers;

/// Batches one lane keeps in flight to its peer. More would add nothing but
/// smaller batches; fewer would put one group's fsync wait in front of
/// others' heartbeats.
pub(crate) const RAFT_BATCHES_IN_FLIGHT_MAX: usize = 4;
/// RPCs waiting in one lane. A caller finding it full waits for room (its
/// own deadline still applies): Raft traffic to a peer cannot queue without
/// bound behind a peer that stopped answering.
pub(crate) const RAFT_LANE_QUEUE_MAX: usize = 1024;

/// What a caller gets back: the RPC's answer payload or why there is none.
type Reply = Result<Vec<u8>, CallError>;

struct Queued {
    rpc: RaftRpc,
    /// When the caller stops waiting.
    deadline: Instant,
    reply: oneshot::Sender<Reply>,
}

/// The lanes of one node, one per peer (node id and address).
#[derive(Default)]
pub(crate) struct Lanes {
    lanes: Mutex<HashMap<(NodeId, String), Lane>>,
}

#[derive(Clone)]
struct Lane {
    queue: mpsc::Sender<Queued>,
    /// Set once the peer refused a batch: it gets single RPCs from then on.
    refuses_batches: Arc<AtomicBool>,
}

/// Whether an RPC may travel in a batch.
pub(crate) fn batchable(rpc: &RaftRpc) -> bool {
    rpc.kind != RaftRpcKind::InstallSnapshot && rpc.payload.len() <= RAFT_BATCH_RPC_BYTES_MAX
}

impl Lanes {
    /// Queues `rpc` on the lane to `target` and waits for its answer, at
    /// most `timeout` from now (the time spent queued included).
    pub(crate) async fn call(
        &self,
        peers: &Peers,
        target: NodeId,
        addr: String,
        rpc: RaftRpc,
        timeout: Duration,
    ) -> Reply {
        let unreachable = |reason: String| CallError::Unreachable {
            node: target,
            addr: addr.clone(),
            reason,
        };
        let lane = self.lane(peers, target, &addr);
        if lane.refuses_batches.load(Ordering::Relaxed) {
            return peers.call_one(target, addr.clone(), rpc, timeout).await;
        }
        let (reply, answer) = oneshot::channel();
        let queued = Queued {
            rpc,
            deadline: Instant::now() + timeout,
            reply,
        };
        let wait = async {
            lane.queue
                .send(queued)
                .await
                .map_err(|_| unreachable("the lane to the node stopped".into()))?;
            answer
                .await
                .map_err(|_| unreachable("the batch carrying the RPC was dropped".into()))?
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(reply) => reply,
            Err(_) => Err(unreachable(format!("no answer within {timeout:?}"))),
        }
    }

    fn lane(&self, peers: &Peers, target: NodeId, addr: &str) -> Lane {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        lanes
            .entry((target, addr.to_string()))
            .or_insert_with(|| {
                let (queue, rx) = mpsc::channel(RAFT_LANE_QUEUE_MAX);
                let lane = Lane {
                    queue,
                    refuses_batches: Arc::new(AtomicBool::new(false)),
                };
                tokio::spawn(drive(
                    peers.without_lanes(),
                    target,
                    addr.to_string(),
                    rx,
                    lane.refuses_batches.clone(),
                ));
                lane
            })
            .clone()
    }
}

/// A lane's task: takes what is queued, a batch at a time, and sends it.
async fn drive(
    peers: Peers,
    target: NodeId,
    addr: String,
    mut queue: mpsc::Receiver<Queued>,
    refuses_batches: Arc<AtomicBool>,
) {
    let in_flight = Arc::new(Semaphore::new(RAFT_BATCHES_IN_FLIGHT_MAX));
    while let Some(first) = queue.recv().await {
        // Waiting here for a slot is what lets the next batch fill.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        let mut bytes = batch[0].rpc.payload.len();
        // Room for the envelope: the frame of a full batch stays below the limit.
        let bytes_max = FRAME_SIZE_BYTES_MAX / 2;
        while batch.len() < RAFT_BATCH_RPCS_MAX && bytes + RAFT_BATCH_RPC_BYTES_MAX <= bytes_max {
            match queue.try_recv() {
                Ok(next) => {
                    bytes += next.rpc.payload.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        // Callers that gave up need no answer.
        batch.retain(|q| !q.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let (peers, addr, refuses) = (peers.clone(), addr.clone(), refuses_batches.clone());
        tokio::spawn(async move {
            send(&peers, target, &addr, batch, &refuses).await;
            drop(permit);
        });
    }
}

/// Sends one batch and hands each answer to its caller as it arrives.
async fn send(
    peers: &Peers,
    target: NodeId,
    addr: &str,
    batch: Vec<Queued>,
    refuses_batches: &AtomicBool,
) {
    crate::metrics::raft_batch(batch.len());
    if batch.len() == 1 || refuses_batches.load(Ordering::Relaxed) {
        return send_singly(peers, target, addr, batch).await;
    }
    // The batch lives as long as its most patient caller.
    let deadline = batch
        .iter()
        .map(|q| q.deadline)
        .max()
        .expect("a batch is not empty");
    let deadlines: Vec<Instant> = batch.iter().map(|q| q.deadline).collect();
    let started = Instant::now();
    let kinds: Vec<RaftRpcKind> = batch.iter().map(|q| q.rpc.kind).collect();
    let (rpcs, mut replies): (Vec<RaftRpc>, Vec<Option<oneshot::Sender<Reply>>>) =
        batch.into_iter().map(|q| (q.rpc, Some(q.reply))).unzip();
    let request = Request::RaftBatch(rpcs);
    let mut answered = 0;
    let outcome = tokio::time::timeout_at(
        deadline.into(),
        peers.exchange(addr, &request, |response| {
            let (index, reply) = match response {
                Response::RaftBatchAnswer { index, payload } => (index, Ok(payload)),
                Response::RaftBatchRefused { index, error } => (
                    index,
                    Err(CallError::Remote {
                        node: target,
                        reason: error.to_string(),
                    }),
                ),
                Response::Error(error) => return Err(BatchEnd::Refused(error)),
                other => {
                    return Err(BatchEnd::Failed(format!(
                        "unexpected answer to a Raft batch: {other:?}"
                    )));
                }
            };
            let i = index as usize;
            match replies.get_mut(i).and_then(Option::take) {
                Some(tx) => {
                    crate::metrics::raft_rpc(kinds[i], reply.is_ok(), started.elapsed());
                    let _ = tx.send(reply);
                    answered += 1;
                    Ok(answered == replies.len())
                }
                None => Err(BatchEnd::Failed(format!(
                    "the node answered RPC {index} of the batch twice or out of range"
                ))),
            }
        }),
    )
    .await;
    let reason = match outcome {
        Ok(Ok(())) => return,
        Ok(Err(BatchEnd::Refused(WireError::MalformedRequest { reason }))) if answered == 0 => {
            // An older node cannot decode a batch: from now on it gets
            // single RPCs, starting with these.
            tracing::info!(node = target, %addr, %reason, "the node refuses Raft batches; sending it single RPCs");
            refuses_batches.store(true, Ordering::Relaxed);
            let Request::RaftBatch(rpcs) = request else {
                unreachable!("the request was built as a batch above")
            };
            let again = rpcs
                .into_iter()
                .zip(deadlines)
                .zip(replies)
                .filter_map(|((rpc, deadline), reply)| {
                    reply.map(|reply| Queued {
                        rpc,
                        deadline,
                        reply,
                    })
                })
                .collect();
            return send_singly(peers, target, addr, again).await;
        }
        Ok(Err(BatchEnd::Refused(error))) => format!("the node refused the batch: {error}"),
        Ok(Err(BatchEnd::Failed(reason))) => reason,
        Err(_) => format!("no answer within {:?}", deadline - started),
    };
    for (kind, reply) in kinds.into_iter().zip(replies) {
        if let Some(tx) = reply {
            crate::metrics::raft_rpc(kind, false, started.elapsed());
            let _ = tx.send(Err(CallError::Unreachable {
                node: target,
                addr: addr.to_string(),
                reason: reason.clone(),
            }));
        }
    }
}

/// How a batch's stream ended early.
pub(crate) enum BatchEnd {
    /// The node answered the whole batch with an error.
    Refused(WireError),
    /// The stream broke or carried something else.
    Failed(String),
}

/// Sends each RPC of `batch` on its own stream, concurrently.
async fn send_singly(peers: &Peers, target: NodeId, addr: &str, batch: Vec<Queued>) {
    futures::future::join_all(batch.into_iter().map(|q| async move {
        let left = q.deadline.saturating_duration_since(Instant::now());
        let reply = peers.call_one(target, addr.to_string(), q.rpc, left).await;
        let _ = q.reply.send(reply);
    }))
    .await;
}
