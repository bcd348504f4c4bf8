//! Noticing a dead partition leader before the connection times out.
//!
//! A request in flight to a killed node gets no answer and no error until the
//! QUIC idle timeout closes the connection (a second): the kernel drops the
//! packets, and nothing tells the client. The partition's other replicas
//! notice sooner: they elect a new leader 450-600 ms after the last
//! heartbeat (`GroupConfig` in the raft crate). So while a request to a partition's leader is unanswered,
//! the client asks the other nodes whom they follow, and once one names
//! another node it gives the request up as [`ClientError::LeaderMoved`]
//! (retriable) and points the partition at the new leader. Produce requests
//! are safe to resend: an idempotent producer's batch is written once.
//!
//! The probe runs while the connection to the leader is silent: a live
//! node's packets (answers to other requests, acknowledgements, keep-alives
//! every 200 ms) keep arriving however slow its answer, so a busy cluster
//! sees no probes. A leader that is alive but cut off from its followers
//! (which elect another) is only noticed by a slower probe, every 500 ms once
//! a request is a second old. A leader that is merely slow is left alone
//! either way: its followers still name it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};

use sluice_proto::{NodeId, Request, Response};

use super::Client;
use crate::error::{ClientError, Result};
use crate::timeouts::{
    LEADER_OVERDUE, LEADER_OVERDUE_PROBE_EVERY, LEADER_PROBE_AFTER, LEADER_PROBE_EVERY,
    LEADER_PROBE_TIMEOUT, LEADER_SILENCE,
};

impl Client {
    /// Waits for `exchange`, a request to the leader this client knows for
    /// `topic`/`partition`, sent to the node `target` names (which changes
    /// as the request follows redirects), and gives it up once the
    /// partition's other replicas follow another leader (see the module
    /// docs). A redirect starts the silence anew: a request that a live node
    /// sent on to a dead leader (named until the election ends) waits on a
    /// handshake that only the connect timeout ends, and is watched there.
    pub(super) async fn watch_leader<T>(
        &self,
        topic: &str,
        partition: u32,
        target: &Mutex<(SocketAddr, tokio::time::Instant)>,
        what: &'static str,
        exchange: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let current = || *target.lock().unwrap_or_else(PoisonError::into_inner);
        let probe = async {
            let received = |addr| {
                self.inner
                    .connector
                    .cached(addr)
                    .map(|c| c.stats().udp_rx.datagrams)
            };
            let started = tokio::time::Instant::now();
            let mut silence = Silence::new(current(), received);
            let mut last_probe: Option<tokio::time::Instant> = None;
            tokio::time::sleep(LEADER_PROBE_AFTER).await;
            loop {
                let silent = silence.observe(current(), received) >= LEADER_SILENCE;
                let addr = silence.addr;
                let overdue = started.elapsed() >= LEADER_OVERDUE
                    && last_probe.is_none_or(|t| t.elapsed() >= LEADER_OVERDUE_PROBE_EVERY);
                if silent || overdue {
                    last_probe = Some(tokio::time::Instant::now());
                    if let Some(found) = self.leader_elsewhere(topic, partition, addr).await {
                        return (found, addr);
                    }
                }
                tokio::time::sleep(LEADER_PROBE_EVERY).await;
            }
        };
        tokio::select! {
            biased;
            result = exchange => result,
            ((leader, leader_addr), addr) = probe => {
                tracing::debug!(%topic, partition, stalled = %addr, leader, %leader_addr,
                    "request unanswered while the partition elected a new leader; giving it up");
                self.leaders()
                    .insert((topic.to_string(), partition), leader_addr);
                self.mark_unreachable(addr);
                Err(ClientError::LeaderMoved {
                    endpoint: self.endpoint_name(addr),
                    what,
                    topic: topic.to_string(),
                    partition,
                    leader,
                })
            }
        }
    }

    /// Asks every known node but `stalled` which node leads the partition;
    /// returns the first leader named that is not at `stalled`, with its
    /// address.
    async fn leader_elsewhere(
        &self,
        topic: &str,
        partition: u32,
        stalled: SocketAddr,
    ) -> Option<(NodeId, SocketAddr)> {
        let others = self.known_nodes().into_iter().filter(|a| *a != stalled);
        let asks = others.map(|node| async move {
            let ask = async {
                let request = Request::ListPartitions {
                    topic: Some(topic.to_string()),
                };
                let (response, _) = self.exchange(node, &request, "leader probe").await.ok()?;
                let Response::Partitions(partitions) = response else {
                    return None;
                };
                let leader = partitions
                    .iter()
                    .find(|p| p.partition == partition)
                    .and_then(|p| p.leader)?;
                let (response, _) = self
                    .exchange(node, &Request::ClusterStatus, "leader probe")
                    .await
                    .ok()?;
                let Response::ClusterStatus(status) = response else {
                    return None;
                };
                let leader_addr = status
                    .nodes
                    .iter()
                    .find(|n| n.id == leader)
                    .and_then(|n| n.advertised_addr.parse::<SocketAddr>().ok())?;
                (leader_addr != stalled).then_some((leader, leader_addr))
            };
            tokio::time::timeout(LEADER_PROBE_TIMEOUT, ask)
                .await
                .ok()
                .flatten()
        });
        futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .next()
    }
}

/// How long the node a request waits on has been silent: since its
/// connection last received a datagram, or since the request was sent there
/// (redirected), whichever is later. Without an open connection (a
/// handshake under way) nothing is received, so the silence runs from the
/// moment the request went there.
struct Silence {
    addr: SocketAddr,
    received: Option<u64>,
    since: tokio::time::Instant,
}

impl Silence {
    /// `target`: where the request is and since when; `received`: the
    /// datagrams a node's open connection has received so far.
    fn new(
        target: (SocketAddr, tokio::time::Instant),
        received: impl Fn(SocketAddr) -> Option<u64>,
    ) -> Self {
        let (addr, since) = target;
        Self {
            addr,
            received: received(addr),
            since,
        }
    }

    fn observe(
        &mut self,
        target: (SocketAddr, tokio::time::Instant),
        received: impl Fn(SocketAddr) -> Option<u64>,
    ) -> std::time::Duration {
        if target.0 != self.addr {
            *self = Self::new(target, &received);
        }
        let now = received(self.addr);
        if now != self.received {
            (self.received, self.since) = (now, tokio::time::Instant::now());
        }
        self.since.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::time::{Instant, advance};

    use super::Silence;

    const STEP: Duration = Duration::from_millis(100);

    fn at(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[tokio::test(start_paused = true)]
    async fn a_datagram_ends_the_silence_and_a_redirect_restarts_it() {
        let (live, dead) = (at(1), at(2));
        let sent = Instant::now();
        let mut silence = Silence::new((live, sent), |_| Some(7));
        advance(3 * STEP).await;
        assert_eq!(silence.observe((live, sent), |_| Some(7)), 3 * STEP);
        assert_eq!(silence.observe((live, sent), |_| Some(8)), Duration::ZERO);
        // Sent on to the dead leader 2 steps ago, no connection to it yet:
        // silent since then, whatever the live node still sends.
        advance(STEP).await;
        let redirected = Instant::now();
        advance(2 * STEP).await;
        let received = |a: SocketAddr| (a == live).then_some(9);
        assert_eq!(silence.observe((dead, redirected), received), 2 * STEP);
        advance(STEP).await;
        assert_eq!(silence.observe((dead, redirected), received), 3 * STEP);
    }
}
