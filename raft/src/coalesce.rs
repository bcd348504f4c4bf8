//! Raft RPCs of many groups to one node, sent together.
//!
//! Every awake group's leader heartbeats each follower every
//! [`crate::timeouts::HEARTBEAT_INTERVAL`], each heartbeat its own request.
//! With a thousand groups starting at once (a new topic of a thousand
//! partitions, before any of them can sleep) that is tens of thousands of
//! requests a second per node; a QUIC round trip costs about half a
//! millisecond of CPU here, so nodes fell behind, heartbeats missed their
//! deadlines, groups held elections, and the cluster never settled (found
//! measuring issue 15's 1,000-partition case). As multi-Raft systems do
//! (CockroachDB coalesces heartbeats per node pair, TiKV batches its Raft
//! messages), [`Coalescing`] gathers the heartbeats (and requests to sleep,
//! which a sweep sends for many groups at once) bound for one node for
//! [`crate::timeouts::HEARTBEAT_COALESCE_WINDOW`] and sends them as one
//! [`RaftRpcKind::Batch`]; the receiver serves each as if it had come alone
//! ([`serve_batch`]) and answers them together. Each RPC keeps its own
//! deadline and its own answer, so openraft sees no difference.
//!
//! Appends carrying entries are not held back: their latency is the produce
//! latency. They go through a lane per node that keeps at most
//! [`APPEND_BATCHES_IN_FLIGHT`] requests on the wire; an append that finds
//! the lane full waits for the next request, which carries every append
//! (and heartbeat) waiting for that node by then. One group keeps one
//! append in flight per follower and gathers the entries that arrive
//! meanwhile into its next one; the lane does the same across groups.
//! Unloaded, the lane is empty and an append leaves at once. Measured
//! (BENCHMARKS.md, session 21): producing into 64 partitions took 14% fewer
//! requests, but throughput and CPU per record did not move beyond the
//! noise: at that load few appends find the lane full.
//!
//! A node of an older build refuses a batch; what it carried is then sent
//! one by one, as before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use sluice_proto::{RaftRpc, RaftRpcKind};
use tokio::sync::oneshot;

use crate::NodeId;
use crate::log_store::{decode, encode};
use crate::network::{Answer, CallError, CallFuture, RaftTransport};

/// Most RPCs one batch carries: a node holds at most
/// `PARTITION_REPLICAS_PER_NODE_MAX` replicas, so more in one window would
/// be a bug or a hostile peer (a receiver refuses such a batch).
pub const BATCH_RPCS_MAX: usize = sluice_proto::limits::PARTITION_REPLICAS_PER_NODE_MAX + 1;

/// Most requests of appends with entries on the wire to one node at once
/// (see the module's documentation): one, as a group keeps per follower,
/// would make every append wait for the request before it; two let the
/// next batch travel while the follower fsyncs the last.
pub const APPEND_BATCHES_IN_FLIGHT: usize = 2;

/// Most bytes of RPCs one request of the append lane carries: a larger
/// append travels alone, so a batch's answer (which waits for every RPC in
/// it) is never held up by a megabyte-sized neighbour's transfer.
pub const APPEND_BATCH_BYTES_MAX: usize = 1024 * 1024;

type Reply = oneshot::Sender<Result<Vec<u8>, CallError>>;

struct Waiting {
    rpc: RaftRpc,
    deadline: tokio::time::Instant,
    reply: Reply,
}

impl Waiting {
    /// `rpc`, due within `timeout`, and where its answer will arrive.
    fn new(
        rpc: RaftRpc,
        timeout: Duration,
    ) -> (Self, oneshot::Receiver<Result<Vec<u8>, CallError>>) {
        let (reply, answer) = oneshot::channel();
        let deadline = tokio::time::Instant::now() + timeout;
        let waiting = Self {
            rpc,
            deadline,
            reply,
        };
        (waiting, answer)
    }
}

#[derive(Default)]
struct Queue {
    addr: String,
    waiting: Vec<Waiting>,
    /// Whether a send of this queue is already scheduled.
    scheduled: bool,
}

/// The appends with entries bound for one node.
#[derive(Default)]
struct Lane {
    addr: String,
    waiting: Vec<Waiting>,
    /// Requests of this lane on the wire, at most
    /// [`APPEND_BATCHES_IN_FLIGHT`].
    in_flight: usize,
}

struct Inner {
    transport: Arc<dyn RaftTransport>,
    window: Duration,
    /// Heartbeats waiting for their window, per node.
    queues: Mutex<HashMap<NodeId, Queue>>,
    /// Appends with entries, per node.
    lanes: Mutex<HashMap<NodeId, Lane>>,
}

/// A [`RaftTransport`] that sends heartbeats bound for the same node
/// together (see the module's documentation); everything else passes
/// through. One per node, shared by all its groups.
#[derive(Clone)]
pub struct Coalescing(Arc<Inner>);

impl Coalescing {
    /// Wraps `transport`, gathering heartbeats for `window`.
    pub fn new(transport: Arc<dyn RaftTransport>, window: Duration) -> Self {
        Self(Arc::new(Inner {
            transport,
            window,
            queues: Mutex::default(),
            lanes: Mutex::default(),
        }))
    }
}

/// Waits for the answer `answer` brings, until `deadline`.
fn answer_by(
    target: NodeId,
    addr: String,
    timeout: Duration,
    deadline: tokio::time::Instant,
    answer: oneshot::Receiver<Result<Vec<u8>, CallError>>,
) -> CallFuture {
    Box::pin(async move {
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(CallError::Unreachable {
                node: target,
                addr,
                reason: "the RPC's batch was dropped".into(),
            }),
            Err(_) => Err(CallError::Unreachable {
                node: target,
                addr,
                reason: format!("no answer within {timeout:?}"),
            }),
        }
    })
}

impl RaftTransport for Coalescing {
    fn call(&self, target: NodeId, addr: String, rpc: RaftRpc, timeout: Duration) -> CallFuture {
        self.0.transport.call(target, addr, rpc, timeout)
    }

    fn call_heartbeat(
        &self,
        target: NodeId,
        addr: String,
        rpc: RaftRpc,
        timeout: Duration,
    ) -> CallFuture {
        let (waiting, answer) = Waiting::new(rpc, timeout);
        let deadline = waiting.deadline;
        let schedule = {
            let mut queues = self.0.queues.lock().unwrap();
            let queue = queues.entry(target).or_default();
            queue.addr = addr.clone();
            queue.waiting.push(waiting);
            !std::mem::replace(&mut queue.scheduled, true)
        };
        if schedule {
            let inner = self.0.clone();
            tokio::spawn(async move {
                tokio::time::sleep(inner.window).await;
                send_queue(&inner, target).await;
            });
        }
        answer_by(target, addr, timeout, deadline, answer)
    }

    fn call_append(
        &self,
        target: NodeId,
        addr: String,
        rpc: RaftRpc,
        timeout: Duration,
    ) -> CallFuture {
        if rpc.payload.len() > APPEND_BATCH_BYTES_MAX {
            return self.0.transport.call(target, addr, rpc, timeout);
        }
        let (waiting, answer) = Waiting::new(rpc, timeout);
        let deadline = waiting.deadline;
        let start = {
            let mut lanes = self.0.lanes.lock().unwrap();
            let lane = lanes.entry(target).or_default();
            lane.addr = addr.clone();
            lane.waiting.push(waiting);
            let start = lane.in_flight < APPEND_BATCHES_IN_FLIGHT;
            lane.in_flight += usize::from(start);
            start
        };
        if start {
            let inner = self.0.clone();
            tokio::spawn(async move { drain_lane(&inner, target).await });
        }
        answer_by(target, addr, timeout, deadline, answer)
    }

    /// An append stream already sends each append at once while earlier
    /// ones are on the wire: it goes around the lane.
    fn open_append_stream(
        &self,
        target: NodeId,
        addr: String,
        group: crate::GroupId,
        timeout: Duration,
    ) -> crate::network::AppendStreamFuture {
        self.0
            .transport
            .open_append_stream(target, addr, group, timeout)
    }
}

/// One of a lane's senders: sends what waits in the lane for `target`, as
/// long as something does, then leaves the lane one sender fewer. What an
/// append finds waiting when it is sent goes with it: the other groups'
/// appends and the heartbeats gathered for that node.
async fn drain_lane(inner: &Arc<Inner>, target: NodeId) {
    loop {
        let (addr, chunk) = {
            let mut lanes = inner.lanes.lock().unwrap();
            let Some(lane) = lanes.get_mut(&target) else {
                return;
            };
            // Nobody waits any longer for an answer whose caller gave up.
            lane.waiting.retain(|w| !w.reply.is_closed());
            if lane.waiting.is_empty() {
                lane.in_flight -= 1;
                return;
            }
            (lane.addr.clone(), take_chunk(&mut lane.waiting))
        };
        let chunk = with_heartbeats(inner, target, chunk);
        send_batch(inner, target, addr, chunk).await;
    }
}

/// Takes from the front of `waiting` what one request may carry: at least
/// one RPC, at most [`BATCH_RPCS_MAX`] of them and
/// [`APPEND_BATCH_BYTES_MAX`] bytes.
fn take_chunk(waiting: &mut Vec<Waiting>) -> Vec<Waiting> {
    let mut bytes = 0;
    let mut n = 0;
    for w in waiting.iter() {
        bytes += w.rpc.payload.len();
        if n > 0 && (n == BATCH_RPCS_MAX || bytes > APPEND_BATCH_BYTES_MAX) {
            break;
        }
        n += 1;
    }
    waiting.drain(..n).collect()
}

/// Adds to `chunk` the heartbeats waiting for `target`'s window, as many as
/// the request may still carry: they would otherwise be a request of their
/// own a few milliseconds later.
fn with_heartbeats(inner: &Arc<Inner>, target: NodeId, mut chunk: Vec<Waiting>) -> Vec<Waiting> {
    let room = BATCH_RPCS_MAX.saturating_sub(chunk.len());
    if room == 0 {
        return chunk;
    }
    let mut queues = inner.queues.lock().unwrap();
    if let Some(queue) = queues.get_mut(&target) {
        let n = queue.waiting.len().min(room);
        chunk.extend(queue.waiting.drain(..n));
    }
    chunk
}

/// Sends what waits for `target`, in batches of at most [`BATCH_RPCS_MAX`].
async fn send_queue(inner: &Arc<Inner>, target: NodeId) {
    let (addr, waiting) = {
        let mut queues = inner.queues.lock().unwrap();
        let Some(queue) = queues.get_mut(&target) else {
            return;
        };
        queue.scheduled = false;
        (queue.addr.clone(), std::mem::take(&mut queue.waiting))
    };
    let mut sends = Vec::new();
    let mut waiting = waiting.into_iter().peekable();
    while waiting.peek().is_some() {
        let chunk: Vec<Waiting> = waiting.by_ref().take(BATCH_RPCS_MAX).collect();
        sends.push(send_batch(inner, target, addr.clone(), chunk));
    }
    futures::future::join_all(sends).await;
}

/// Sends `chunk` as one batch (or alone, if it is one) and hands each its
/// answer. A batch the peer refuses as a whole (an older build) is sent
/// again one by one.
fn send_batch(
    inner: &Arc<Inner>,
    target: NodeId,
    addr: String,
    chunk: Vec<Waiting>,
) -> BoxFuture<'static, ()> {
    let transport = inner.transport.clone();
    Box::pin(async move {
        let now = tokio::time::Instant::now();
        let latest = chunk.iter().map(|w| w.deadline).max().unwrap_or(now);
        let timeout = latest.saturating_duration_since(now);
        if chunk.len() == 1 {
            let Some(w) = chunk.into_iter().next() else {
                return;
            };
            let result = transport.call(target, addr, w.rpc, timeout).await;
            let _ = w.reply.send(result);
            return;
        }
        let (rpcs, replies): (Vec<RaftRpc>, Vec<(Reply, tokio::time::Instant)>) = chunk
            .into_iter()
            .map(|w| (w.rpc, (w.reply, w.deadline)))
            .unzip();
        let payload = match encode(&rpcs) {
            Ok(payload) => payload,
            Err(e) => {
                for (reply, _) in replies {
                    let _ = reply.send(Err(CallError::Remote {
                        node: target,
                        reason: format!("could not encode a batch of Raft RPCs: {e}"),
                    }));
                }
                return;
            }
        };
        let batch = RaftRpc {
            group: crate::CONTROLLER_GROUP,
            kind: RaftRpcKind::Batch,
            payload,
        };
        match transport.call(target, addr.clone(), batch, timeout).await {
            Ok(bytes) => match decode::<Answer<Vec<Answer<Vec<u8>>>>>(&bytes) {
                Ok(Ok(answers)) if answers.len() == replies.len() => {
                    for ((reply, _), answer) in replies.into_iter().zip(answers) {
                        let _ = reply.send(answer.map_err(|reason| CallError::Remote {
                            node: target,
                            reason,
                        }));
                    }
                }
                Ok(Ok(answers)) => {
                    let reason = format!(
                        "a batch of {} Raft RPCs got {} answers",
                        replies.len(),
                        answers.len()
                    );
                    for (reply, _) in replies {
                        let _ = reply.send(Err(CallError::Remote {
                            node: target,
                            reason: reason.clone(),
                        }));
                    }
                }
                // Refused as a whole: one by one, as an older node expects.
                Ok(Err(_)) | Err(_) => one_by_one(&transport, target, &addr, rpcs, replies).await,
            },
            Err(CallError::Remote { .. }) => {
                one_by_one(&transport, target, &addr, rpcs, replies).await
            }
            Err(e) => {
                let reason = e.to_string();
                for (reply, _) in replies {
                    let _ = reply.send(Err(CallError::Unreachable {
                        node: target,
                        addr: addr.clone(),
                        reason: reason.clone(),
                    }));
                }
            }
        }
    })
}

/// Sends each RPC on its own, each within its own deadline.
async fn one_by_one(
    transport: &Arc<dyn RaftTransport>,
    target: NodeId,
    addr: &str,
    rpcs: Vec<RaftRpc>,
    replies: Vec<(Reply, tokio::time::Instant)>,
) {
    let sends = rpcs
        .into_iter()
        .zip(replies)
        .map(|(rpc, (reply, deadline))| {
            let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
            let call = transport.call(target, addr.to_string(), rpc, timeout);
            async move {
                let _ = reply.send(call.await);
            }
        });
    futures::future::join_all(sends).await;
}

/// Serves a [`RaftRpcKind::Batch`] on the receiving node: decodes its RPCs
/// (at most [`BATCH_RPCS_MAX`], none of them a batch), serves them all at
/// once with `serve`, and encodes their answers in order. `serve` answers
/// one RPC with its payload or the reason it was refused.
pub async fn serve_batch<F, Fut>(payload: &[u8], serve: F) -> Vec<u8>
where
    F: Fn(RaftRpc) -> Fut,
    Fut: std::future::Future<Output = Answer<Vec<u8>>>,
{
    let answer: Answer<Vec<Answer<Vec<u8>>>> = match decode::<Vec<RaftRpc>>(payload) {
        Ok(rpcs) if rpcs.len() > BATCH_RPCS_MAX => Err(format!(
            "a batch of {} Raft RPCs; at most {BATCH_RPCS_MAX} are allowed",
            rpcs.len()
        )),
        Ok(rpcs) if rpcs.iter().any(|r| r.kind == RaftRpcKind::Batch) => {
            Err("a batch may not hold another batch".to_string())
        }
        Ok(rpcs) => Ok(futures::future::join_all(rpcs.into_iter().map(serve)).await),
        Err(e) => Err(format!("undecodable batch of Raft RPCs: {e}")),
    };
    encode(&answer).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Answers each RPC with its group id; counts the requests it carried;
    /// refuses batches if `old`, as a node of an older build does.
    /// With a `gate`, each request waits for a permit before it is
    /// answered (a follower busy with its fsync).
    #[derive(Default)]
    struct Echo {
        old: bool,
        requests: AtomicUsize,
        batches: AtomicUsize,
        /// How many RPCs each request carried, in order.
        carried: Mutex<Vec<usize>>,
        gate: Option<Arc<tokio::sync::Semaphore>>,
    }

    impl RaftTransport for Echo {
        fn call(&self, target: NodeId, _: String, rpc: RaftRpc, _: Duration) -> CallFuture {
            self.requests.fetch_add(1, Ordering::SeqCst);
            let old = self.old;
            let carried = if rpc.kind == RaftRpcKind::Batch {
                self.batches.fetch_add(1, Ordering::SeqCst);
                decode::<Vec<RaftRpc>>(&rpc.payload).map_or(0, |rpcs| rpcs.len())
            } else {
                1
            };
            self.carried.lock().unwrap().push(carried);
            let gate = self.gate.clone();
            Box::pin(async move {
                if let Some(gate) = gate {
                    gate.acquire().await.unwrap().forget();
                }
                match rpc.kind {
                    RaftRpcKind::Batch if old => Err(CallError::Remote {
                        node: target,
                        reason: "undecodable request".into(),
                    }),
                    RaftRpcKind::Batch => Ok(serve_batch(&rpc.payload, |one| async move {
                        if one.group == 13 {
                            Err("group 13 is not here".to_string())
                        } else {
                            Ok(one.group.to_le_bytes().to_vec())
                        }
                    })
                    .await),
                    _ => Ok(rpc.group.to_le_bytes().to_vec()),
                }
            })
        }
    }

    fn heartbeat(group: u64) -> RaftRpc {
        RaftRpc {
            group,
            kind: RaftRpcKind::AppendEntries,
            payload: vec![1, 2, 3],
        }
    }

    async fn send_all(
        transport: &Coalescing,
        groups: std::ops::Range<u64>,
    ) -> Vec<Result<u64, String>> {
        let calls = groups.map(|g| {
            transport.call_heartbeat(2, "node-2".into(), heartbeat(g), Duration::from_secs(5))
        });
        futures::future::join_all(calls)
            .await
            .into_iter()
            .map(|r| {
                r.map(|bytes| u64::from_le_bytes(bytes.try_into().unwrap()))
                    .map_err(|e| e.to_string())
            })
            .collect()
    }

    #[tokio::test]
    async fn heartbeats_to_one_node_travel_together_and_each_gets_its_own_answer() {
        let echo = Arc::new(Echo::default());
        let transport = Coalescing::new(echo.clone(), Duration::from_millis(20));
        let answers = send_all(&transport, 10..20).await;
        for (g, answer) in (10..20).zip(&answers) {
            if g == 13 {
                assert!(
                    answer
                        .as_ref()
                        .unwrap_err()
                        .contains("group 13 is not here")
                );
            } else {
                assert_eq!(answer, &Ok(g));
            }
        }
        assert_eq!(
            echo.requests.load(Ordering::SeqCst),
            1,
            "one request for ten heartbeats"
        );
        assert_eq!(echo.batches.load(Ordering::SeqCst), 1);
        // Anything else is not held back.
        let vote = RaftRpc {
            kind: RaftRpcKind::Vote,
            ..heartbeat(7)
        };
        let answer = transport
            .call(2, "node-2".into(), vote, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(answer, 7u64.to_le_bytes());
        assert_eq!(echo.batches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_node_that_refuses_batches_gets_the_heartbeats_one_by_one() {
        let echo = Arc::new(Echo {
            old: true,
            ..Echo::default()
        });
        let transport = Coalescing::new(echo.clone(), Duration::from_millis(20));
        let answers = send_all(&transport, 10..15).await;
        assert_eq!(answers, (10..15).map(Ok).collect::<Vec<_>>());
        // The refused batch, then each on its own.
        assert_eq!(echo.requests.load(Ordering::SeqCst), 1 + 5);
    }

    #[tokio::test]
    async fn a_batch_too_large_or_nested_is_refused_whole() {
        let refused = |rpcs: Vec<RaftRpc>| async move {
            let bytes = serve_batch(&encode(&rpcs).unwrap(), |_| async { Ok(Vec::new()) }).await;
            decode::<Answer<Vec<Answer<Vec<u8>>>>>(&bytes)
                .unwrap()
                .unwrap_err()
        };
        let too_many: Vec<RaftRpc> = (0..BATCH_RPCS_MAX as u64 + 1).map(heartbeat).collect();
        assert!(refused(too_many).await.contains("at most"));
        let nested = vec![RaftRpc {
            kind: RaftRpcKind::Batch,
            ..heartbeat(1)
        }];
        assert!(refused(nested).await.contains("may not hold another batch"));
        let garbled = serve_batch(&[0xff; 3], |_| async { Ok(Vec::new()) }).await;
        let garbled = decode::<Answer<Vec<Answer<Vec<u8>>>>>(&garbled).unwrap();
        assert!(garbled.unwrap_err().contains("undecodable batch"));
    }

    fn append(group: u64) -> RaftRpc {
        RaftRpc {
            payload: vec![7; 1000],
            ..heartbeat(group)
        }
    }

    async fn answers(calls: Vec<CallFuture>) -> Vec<u64> {
        futures::future::join_all(calls)
            .await
            .into_iter()
            .map(|r| u64::from_le_bytes(r.unwrap().try_into().unwrap()))
            .collect()
    }

    #[tokio::test]
    async fn appends_that_find_the_lane_full_leave_together_with_the_next_request() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let echo = Arc::new(Echo {
            gate: Some(gate.clone()),
            ..Echo::default()
        });
        // Heartbeats would wait an hour for their window.
        let transport = Coalescing::new(echo.clone(), Duration::from_secs(3600));
        let call = |g| transport.call_append(2, "node-2".into(), append(g), Duration::from_secs(5));
        // Appends that come one after the other go at once, each alone,
        // until the lane is full.
        let mut calls = Vec::new();
        for g in 0..APPEND_BATCHES_IN_FLIGHT {
            calls.push(call(g as u64));
            let sent = async {
                while echo.requests.load(Ordering::SeqCst) <= g {
                    tokio::task::yield_now().await;
                }
            };
            tokio::time::timeout(Duration::from_secs(5), sent)
                .await
                .expect("an append on a lane with room is sent at once");
        }
        // These wait for a request to come back; a heartbeat joins them.
        calls.extend((20..30).map(call));
        calls.push(transport.call_heartbeat(
            2,
            "node-2".into(),
            heartbeat(40),
            Duration::from_secs(5),
        ));
        tokio::task::yield_now().await;
        assert_eq!(
            echo.requests.load(Ordering::SeqCst),
            APPEND_BATCHES_IN_FLIGHT
        );
        gate.add_permits(100);
        let expected: Vec<u64> = (0..APPEND_BATCHES_IN_FLIGHT as u64)
            .chain(20..30)
            .chain([40])
            .collect();
        assert_eq!(answers(calls).await, expected);
        let carried = echo.carried.lock().unwrap().clone();
        let mut first = vec![1; APPEND_BATCHES_IN_FLIGHT];
        first.push(11);
        assert_eq!(carried, first, "ten appends and a heartbeat in one request");
    }

    #[tokio::test]
    async fn an_append_on_an_empty_lane_leaves_at_once_and_a_large_one_alone() {
        let echo = Arc::new(Echo::default());
        let transport = Coalescing::new(echo.clone(), Duration::from_secs(3600));
        let one = transport.call_append(2, "node-2".into(), append(5), Duration::from_secs(5));
        assert_eq!(answers(vec![one]).await, [5]);
        let large = RaftRpc {
            payload: vec![0; APPEND_BATCH_BYTES_MAX + 1],
            ..heartbeat(6)
        };
        let large = transport.call_append(2, "node-2".into(), large, Duration::from_secs(5));
        assert_eq!(answers(vec![large]).await, [6]);
        assert_eq!(*echo.carried.lock().unwrap(), [1, 1]);
        assert_eq!(echo.batches.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_request_of_the_lane_carries_at_most_its_bytes_and_always_one_rpc() {
        let (reply, _answer) = oneshot::channel();
        let mut waiting = vec![Waiting {
            rpc: RaftRpc {
                payload: vec![0; APPEND_BATCH_BYTES_MAX * 2],
                ..heartbeat(1)
            },
            deadline: tokio::time::Instant::now(),
            reply,
        }];
        for g in 2..6 {
            let (reply, _answer) = oneshot::channel();
            waiting.push(Waiting {
                rpc: RaftRpc {
                    payload: vec![0; APPEND_BATCH_BYTES_MAX / 3],
                    ..heartbeat(g)
                },
                deadline: tokio::time::Instant::now(),
                reply,
            });
        }
        let groups = |chunk: Vec<Waiting>| chunk.iter().map(|w| w.rpc.group).collect::<Vec<_>>();
        assert_eq!(groups(take_chunk(&mut waiting)), [1]);
        assert_eq!(groups(take_chunk(&mut waiting)), [2, 3, 4]);
        assert_eq!(groups(take_chunk(&mut waiting)), [5]);
        assert!(waiting.is_empty());
    }
}
