//! Append streams over the simulated network (`crate::network::pipeline`),
//! as the node's QUIC streams behave: ordered, each append delayed by the
//! weather but never overtaking the one before; a message the weather drops
//! is sent again (QUIC retransmits), so it only comes later; a cut link or a
//! crash of either end ends the stream (its connection is gone), and an
//! answer reaches its sender only if that is still the same process.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::cluster::{Fate, Net};
use crate::{APPEND_STREAM_IN_FLIGHT_MAX, AppendStream, CallError, NodeId};

/// How often a stream's serving side looks whether its node crashed, so a
/// crashed node's group is let go (its database must close for the restart).
const CRASH_CHECK: Duration = Duration::from_millis(10);

/// One direction of a stream: `(sent at, payload)` in, delivered in order.
type Wire = mpsc::Receiver<(Instant, Vec<u8>)>;

/// Messages one direction of a simulated stream holds: more than a stream
/// ever has unanswered (a split append's parts included), so a sender never
/// waits on it.
const WIRE_MESSAGES_MAX: usize = 4 * APPEND_STREAM_IN_FLIGHT_MAX;

impl Net {
    /// Opens a stream of `from`'s appends to `to`'s replica.
    pub(super) async fn open_stream(
        self: &Arc<Self>,
        from: NodeId,
        to: NodeId,
    ) -> Result<AppendStream, String> {
        let sender = self.incarnation(from);
        self.travel(from, to).await?;
        let (group, receiver) = self.reachable(from, to).await?;
        let (requests, mut incoming) = mpsc::channel::<Vec<u8>>(APPEND_STREAM_IN_FLIGHT_MAX);
        let (answer, answers) = mpsc::channel(APPEND_STREAM_IN_FLIGHT_MAX);
        let (outbound, wire_out) = mpsc::channel(WIRE_MESSAGES_MAX);
        let (inbound, wire_in) = mpsc::channel(WIRE_MESSAGES_MAX);
        let (arrived, arrivals) = mpsc::channel::<Vec<u8>>(APPEND_STREAM_IN_FLIGHT_MAX);
        // The sender's side: what it sends leaves now, unless it crashed.
        let net = self.clone();
        tokio::spawn(async move {
            while let Some(payload) = incoming.recv().await {
                if net.incarnation(from) != sender
                    || outbound.send((Instant::now(), payload)).await.is_err()
                {
                    return;
                }
            }
        });
        // The receiver's side: the appends that arrive go to the group.
        let net = self.clone();
        tokio::spawn(async move {
            net.carry(from, to, wire_out, |payload| {
                let arrived = arrived.clone();
                async move { arrived.send(payload).await.is_ok() }
            })
            .await
        });
        let net = self.clone();
        let mut input = arrivals;
        let served =
            group.serve_append_stream(futures::stream::poll_fn(move |cx| input.poll_recv(cx)));
        drop(group);
        tokio::spawn(async move {
            let mut served = std::pin::pin!(served);
            loop {
                let next = tokio::time::timeout(CRASH_CHECK, served.next());
                let crashed = net.incarnation(to) != receiver;
                match next.await {
                    _ if crashed => return,
                    Err(_) => continue,
                    Ok(None) => return,
                    Ok(Some(bytes)) => {
                        if net.incarnation(to) != receiver
                            || inbound.send((Instant::now(), bytes)).await.is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        // The answers' way back: they reach the sender if it still runs.
        let net = self.clone();
        tokio::spawn(async move {
            net.carry(to, from, wire_in, |bytes| {
                let (answer, net) = (answer.clone(), net.clone());
                async move { net.incarnation(from) == sender && answer.send(Ok(bytes)).await.is_ok() }
            })
            .await
        });
        Ok(AppendStream { requests, answers })
    }

    /// Delivers what travels from `from` to `to`, in order, each message
    /// after its own delay but never before the one ahead of it; ends when
    /// the link is cut, the receiver is down, or `deliver` says so.
    async fn carry<F, Fut>(&self, from: NodeId, to: NodeId, mut wire: Wire, deliver: F)
    where
        F: Fn(Vec<u8>) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let mut last = Instant::now();
        while let Some((sent, payload)) = wire.recv().await {
            let delay = match self.fate(from, to) {
                Fate::Refused => return,
                Fate::Delayed(d) => d,
                // Sent again: it arrives, later.
                Fate::Lost => self.delay_max() * 2,
            };
            last = last.max(sent + delay);
            tokio::time::sleep_until(last).await;
            if self.is_cut(from, to) || !deliver(payload).await {
                return;
            }
        }
    }
}

/// The error a stream that could not be opened gives.
pub(super) fn unreachable(target: NodeId, addr: &str, reason: String) -> CallError {
    CallError::Unreachable {
        node: target,
        addr: addr.to_string(),
        reason,
    }
}
