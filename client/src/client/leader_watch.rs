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

use sluice_proto::{NodeId, Request, Response};

use super::Client;
use crate::error::{ClientError, Result};
use crate::timeouts::{
    LEADER_OVERDUE, LEADER_OVERDUE_PROBE_EVERY, LEADER_PROBE_AFTER, LEADER_PROBE_EVERY,
    LEADER_PROBE_TIMEOUT, LEADER_SILENCE,
};

impl Client {
    /// Waits for `exchange`, a request sent to `addr`, the leader this client
    /// knows for `topic`/`partition`, and gives it up once the partition's
    /// other replicas follow another leader (see the module docs).
    pub(super) async fn watch_leader<T>(
        &self,
        topic: &str,
        partition: u32,
        addr: SocketAddr,
        what: &'static str,
        exchange: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let probe = async {
            let received = || {
                self.inner
                    .connector
                    .cached(addr)
                    .map(|c| c.stats().udp_rx.datagrams)
            };
            let started = tokio::time::Instant::now();
            let (mut last, mut last_change) = (received(), started);
            let mut last_probe: Option<tokio::time::Instant> = None;
            tokio::time::sleep(LEADER_PROBE_AFTER).await;
            loop {
                let now = received();
                if now != last {
                    (last, last_change) = (now, tokio::time::Instant::now());
                }
                let silent = last_change.elapsed() >= LEADER_SILENCE;
                let overdue = started.elapsed() >= LEADER_OVERDUE
                    && last_probe.is_none_or(|t| t.elapsed() >= LEADER_OVERDUE_PROBE_EVERY);
                if silent || overdue {
                    last_probe = Some(tokio::time::Instant::now());
                    if let Some(found) = self.leader_elsewhere(topic, partition, addr).await {
                        return found;
                    }
                }
                tokio::time::sleep(LEADER_PROBE_EVERY).await;
            }
        };
        tokio::select! {
            biased;
            result = exchange => result,
            (leader, leader_addr) = probe => {
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
