//! The nodes a client knows, and one request to one of them: the order the
//! bootstrap nodes are tried in, which answered last, which failed to a
//! moment ago, and what is reported when none answers.

use std::net::SocketAddr;

use sluice_proto::{Request, Response};

use super::Client;
use crate::error::{ClientError, Result};
use crate::timeouts::UNREACHABLE_FOR;

impl Client {
    pub(super) fn bootstrap(&self) -> SocketAddr {
        self.inner.nodes.lock().unwrap_or_else(|p| p.into_inner())[0]
    }

    /// The known nodes in the order [`Self::exchange_bootstrap`] tries them:
    /// the preferred order (stable), with nodes that just failed moved last.
    pub(super) fn bootstrap_candidates(&self) -> Vec<SocketAddr> {
        let mut candidates = self.known_nodes();
        candidates.sort_by_key(|a| self.recently_unreachable(*a));
        candidates
    }

    pub(super) fn known_nodes(&self) -> Vec<SocketAddr> {
        self.inner
            .nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Makes `addr` the node this client talks to first.
    pub(super) fn promote(&self, addr: SocketAddr) {
        let mut nodes = self.inner.nodes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = nodes.iter().position(|a| *a == addr) {
            let a = nodes.remove(i);
            nodes.insert(0, a);
        }
    }

    pub(super) fn learn(&self, addr: SocketAddr) {
        let mut nodes = self.inner.nodes.lock().unwrap_or_else(|p| p.into_inner());
        if !nodes.contains(&addr) {
            nodes.push(addr);
        }
    }

    /// [`Self::exchange`] with the first node that answers, starting with the
    /// bootstrap node: one dead node does not make the cluster unreachable.
    ///
    /// A node that took the request and then fell silent (the connection
    /// lost, no answer in time) may have acted on it. A write of records is
    /// then not sent to the next node: that could write it twice, and its
    /// caller, told it may be written, decides (with a producer sequence it
    /// resends safely). Other requests go on to the next node, and if none
    /// answers the error is that first uncertain one, not a later "no node
    /// answers", which would say nothing was sent (a fault run's writer
    /// took a written record for a failed one: RELIABILITY.md, session 26).
    pub(super) async fn exchange_bootstrap(
        &self,
        request: &Request,
        what: &'static str,
    ) -> Result<(Response, quinn::RecvStream)> {
        let mut unsent = None;
        let mut uncertain = None;
        for addr in self.bootstrap_candidates() {
            match self.exchange(addr, request, what).await {
                Err(e) if is_unreachable(&e) => {
                    let sent = !matches!(e, ClientError::NoNode { .. });
                    if sent && request.appends_records() {
                        return Err(e);
                    }
                    tracing::debug!(%addr, error = %e, "node unreachable, trying the next one");
                    if !sent {
                        unsent = Some(e);
                    } else if uncertain.is_none() {
                        uncertain = Some(e);
                    }
                }
                result => {
                    self.promote(addr);
                    return result;
                }
            }
        }
        Err(uncertain
            .or(unsent)
            .expect("a client knows at least one node"))
    }

    /// One request on a fresh stream of the connection to `addr`; returns the
    /// first response frame and the stream for any further ones.
    pub(super) async fn exchange(
        &self,
        addr: SocketAddr,
        request: &Request,
        what: &'static str,
    ) -> Result<(Response, quinn::RecvStream)> {
        let timeout = self.inner.request_timeout;
        let result =
            match tokio::time::timeout(timeout, self.exchange_inner(addr, request, what)).await {
                Ok(result) => result,
                Err(_) => Err(ClientError::Timeout {
                    endpoint: self.endpoint_name(addr),
                    what,
                    after: timeout,
                }),
            };
        let mut unreachable = self
            .inner
            .unreachable
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match &result {
            Err(e) if is_unreachable(e) => {
                unreachable.insert(addr, tokio::time::Instant::now() + UNREACHABLE_FOR);
            }
            _ => {
                unreachable.remove(&addr);
            }
        }
        result
    }

    /// Has `addr` tried last for a while, as if it had failed to answer.
    pub(super) fn mark_unreachable(&self, addr: SocketAddr) {
        self.inner
            .unreachable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(addr, tokio::time::Instant::now() + UNREACHABLE_FOR);
    }

    /// Whether `addr` failed to answer a moment ago.
    pub(super) fn recently_unreachable(&self, addr: SocketAddr) -> bool {
        let unreachable = self
            .inner
            .unreachable
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        unreachable
            .get(&addr)
            .is_some_and(|until| tokio::time::Instant::now() < *until)
    }
}

/// Errors after which another node may well answer.
pub(super) fn is_unreachable(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::NoNode { .. }
            | ClientError::ConnectionLost { .. }
            | ClientError::Timeout { .. }
    )
}
