//! Heartbeats of many groups to one node, sent together.
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
//! messages), [`Coalescing`] gathers the heartbeats bound for one node for
//! [`crate::timeouts::HEARTBEAT_COALESCE_WINDOW`] and sends them as one
//! [`RaftRpcKind::Batch`]; the receiver serves each as if it had come alone
//! ([`serve_batch`]) and answers them together. Each heartbeat keeps its own
//! deadline and its own answer, so openraft sees no difference.
//!
//! Only heartbeats (appends without entries) are gathered: appends carrying
//! entries are few per group under writes (heartbeats are then skipped) and
//! their latency is the produce latency. A node of an older build refuses a
//! batch; its heartbeats are then sent one by one, as before.

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

type Reply = oneshot::Sender<Result<Vec<u8>, CallError>>;

struct Waiting {
    rpc: RaftRpc,
    deadline: tokio::time::Instant,
    reply: Reply,
}

#[derive(Default)]
struct Queue {
    addr: String,
    waiting: Vec<Waiting>,
    /// Whether a send of this queue is already scheduled.
    scheduled: bool,
}

struct Inner {
    transport: Arc<dyn RaftTransport>,
    window: Duration,
    queues: Mutex<HashMap<NodeId, Queue>>,
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
        }))
    }
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
        let (reply, answer) = oneshot::channel();
        let deadline = tokio::time::Instant::now() + timeout;
        let schedule = {
            let mut queues = self.0.queues.lock().unwrap();
            let queue = queues.entry(target).or_default();
            queue.addr = addr.clone();
            queue.waiting.push(Waiting {
                rpc,
                deadline,
                reply,
            });
            !std::mem::replace(&mut queue.scheduled, true)
        };
        if schedule {
            let inner = self.0.clone();
            tokio::spawn(async move {
                tokio::time::sleep(inner.window).await;
                send_queue(&inner, target).await;
            });
        }
        Box::pin(async move {
            match tokio::time::timeout_at(deadline, answer).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(CallError::Unreachable {
                    node: target,
                    addr,
                    reason: "the heartbeat's batch was dropped".into(),
                }),
                Err(_) => Err(CallError::Unreachable {
                    node: target,
                    addr,
                    reason: format!("no answer within {timeout:?}"),
                }),
            }
        })
    }
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
                        reason: format!("could not encode a heartbeat batch: {e}"),
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
                        "a batch of {} heartbeats got {} answers",
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
    #[derive(Default)]
    struct Echo {
        old: bool,
        requests: AtomicUsize,
        batches: AtomicUsize,
    }

    impl RaftTransport for Echo {
        fn call(&self, target: NodeId, _: String, rpc: RaftRpc, _: Duration) -> CallFuture {
            self.requests.fetch_add(1, Ordering::SeqCst);
            let old = self.old;
            if rpc.kind == RaftRpcKind::Batch {
                self.batches.fetch_add(1, Ordering::SeqCst);
            }
            Box::pin(async move {
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
}
