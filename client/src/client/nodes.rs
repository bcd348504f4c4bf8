//! The nodes a client knows, and one request to one of them: the order the
//! bootstrap nodes are tried in, which answered last, which failed to a
//! moment ago, and what is reported when none answers.

use std::net::SocketAddr;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use sluice_proto::{Request, Response};

use super::Client;
use crate::error::{ClientError, Result};
use crate::timeouts::{DIAL_STAGGER, UNREACHABLE_FOR};

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

    /// Dials `candidates` in order and returns the first that connects (see
    /// [`first_to_connect`]); those that cannot be reached are tried last
    /// for a while.
    pub(super) async fn dial_first(&self, candidates: Vec<SocketAddr>) -> Result<SocketAddr> {
        first_to_connect(
            candidates,
            DIAL_STAGGER,
            is_unreachable,
            |addr| async move {
                let result = self.connection(addr).await.map(drop);
                if let Err(e) = &result
                    && is_unreachable(e)
                {
                    tracing::debug!(%addr, error = %e, "node unreachable, dialing the next one");
                    self.mark_unreachable(addr);
                }
                (addr, result)
            },
        )
        .await
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
    /// A node that refuses the handshake got nothing either: the next one is
    /// asked (see [`first_to_connect`] for why), and its refusal is the error
    /// if no node answers and none may have acted.
    pub(super) async fn exchange_bootstrap(
        &self,
        request: &Request,
        what: &'static str,
    ) -> Result<(Response, quinn::RecvStream)> {
        let mut unsent = None;
        let mut uncertain = None;
        let mut refused = None;
        for addr in self.bootstrap_candidates() {
            match self.exchange(addr, request, what).await {
                Err(e @ ClientError::TlsMismatch { .. }) => {
                    tracing::debug!(%addr, error = %e, "node refused the handshake, trying the next one");
                    refused.get_or_insert(e);
                }
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
            .or(refused)
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

/// Dials `candidates` in order and returns the first that connects. A dial
/// still going after `stagger` gets the next candidate dialed beside it
/// ("happy eyeballs"), and one that fails gets the next dialed at once: a
/// dead first node, whose handshake ends only at the connect timeout (a
/// datagram to a dead node is simply lost), costs a fresh CLI `stagger`, not
/// the whole timeout. An error `unreachable` does not accept (a refused
/// handshake) also gets the next dialed at once: with a CA that does not
/// match, every node gives it, but a node whose own clock lies outside its
/// certificate's validity refuses alone, and a client that stopped there
/// could not reach a cluster whose other nodes were fine (the fault suite's
/// clock steps, session 40). The dials that lose are dropped, which
/// abandons their handshakes. With no candidate connecting, the first
/// refusal is returned (it says more than a timeout), else the last error.
async fn first_to_connect<A, E, F, Fut>(
    candidates: Vec<A>,
    stagger: std::time::Duration,
    unreachable: impl Fn(&E) -> bool,
    mut dial: F,
) -> std::result::Result<A, E>
where
    F: FnMut(A) -> Fut,
    Fut: std::future::Future<Output = (A, std::result::Result<(), E>)>,
{
    let mut rest = candidates.into_iter();
    let mut dialing = FuturesUnordered::new();
    let mut last = None;
    let mut refused = None;
    loop {
        if dialing.is_empty() {
            match rest.next() {
                Some(addr) => dialing.push(dial(addr)),
                None => break,
            }
        }
        let more = rest.len() > 0;
        tokio::select! {
            Some((addr, result)) = dialing.next() => match result {
                Ok(()) => return Ok(addr),
                Err(e) if unreachable(&e) => last = Some(e),
                Err(e) => {
                    refused.get_or_insert(e);
                }
            },
            () = tokio::time::sleep(stagger), if more => {
                if let Some(addr) = rest.next() {
                    dialing.push(dial(addr));
                }
            }
        }
    }
    Err(refused.or(last).expect("at least one candidate was dialed"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::{Instant, sleep};

    use super::first_to_connect;

    const STAGGER: Duration = Duration::from_millis(250);
    const HANDSHAKE: Duration = Duration::from_millis(5);
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

    /// A pretend cluster: `dead` nodes time out, `refusing` ones fail at
    /// once with an error that is not about reaching them, the rest connect
    /// after a handshake. Returns the winner, when each node was dialed
    /// (virtual time since the start) and when the answer came.
    async fn dial(
        nodes: Vec<u8>,
        dead: &[u8],
        refusing: &[u8],
    ) -> (Result<u8, &'static str>, Vec<(u8, Duration)>, Duration) {
        let start = Instant::now();
        let dialed = std::sync::Mutex::new(Vec::new());
        let result = first_to_connect(
            nodes,
            STAGGER,
            |e: &&str| *e == "unreachable",
            |n| {
                dialed.lock().unwrap().push((n, start.elapsed()));
                let (dead, refusing) = (dead.contains(&n), refusing.contains(&n));
                async move {
                    if dead {
                        sleep(CONNECT_TIMEOUT).await;
                        (n, Err("unreachable"))
                    } else if refusing {
                        (n, Err("bad certificate"))
                    } else {
                        sleep(HANDSHAKE).await;
                        (n, Ok(()))
                    }
                }
            },
        )
        .await;
        (result, dialed.into_inner().unwrap(), start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_live_first_node_is_the_only_one_dialed() {
        let (result, dialed, took) = dial(vec![1, 2, 3], &[], &[]).await;
        assert_eq!(result, Ok(1));
        assert_eq!(dialed, vec![(1, Duration::ZERO)]);
        assert_eq!(took, HANDSHAKE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_first_node_costs_the_stagger_not_its_connect_timeout() {
        let (result, dialed, took) = dial(vec![1, 2, 3], &[1], &[]).await;
        assert_eq!(result, Ok(2));
        assert_eq!(dialed, vec![(1, Duration::ZERO), (2, STAGGER)]);
        assert_eq!(took, STAGGER + HANDSHAKE);
    }

    #[tokio::test(start_paused = true)]
    async fn dead_nodes_each_add_a_stagger_and_all_dead_gives_the_last_error() {
        let (result, dialed, _) = dial(vec![1, 2, 3], &[1, 2], &[]).await;
        assert_eq!(result, Ok(3));
        assert_eq!(dialed.last(), Some(&(3, 2 * STAGGER)));
        let (result, dialed, took) = dial(vec![1, 2], &[1, 2], &[]).await;
        assert_eq!(result, Err("unreachable"));
        assert_eq!(dialed.len(), 2);
        assert_eq!(took, STAGGER + CONNECT_TIMEOUT);
    }

    /// One node refusing the handshake (its clock outside its certificate's
    /// validity) does not keep the client from the others, and costs no
    /// stagger: the next is dialed at once.
    #[tokio::test(start_paused = true)]
    async fn a_refusing_node_is_passed_over_at_once() {
        let (result, dialed, took) = dial(vec![1, 2, 3], &[], &[1]).await;
        assert_eq!(result, Ok(2));
        assert_eq!(dialed, vec![(1, Duration::ZERO), (2, Duration::ZERO)]);
        assert_eq!(took, HANDSHAKE);
    }

    /// With every node refusing (a CA that does not match) the refusal is
    /// the error, also when some other node was unreachable.
    #[tokio::test(start_paused = true)]
    async fn no_node_connecting_gives_the_first_refusal() {
        let (result, dialed, _) = dial(vec![1, 2, 3], &[], &[1, 2, 3]).await;
        assert_eq!(result, Err("bad certificate"));
        assert_eq!(dialed.len(), 3);
        let (result, _, _) = dial(vec![1, 2, 3], &[3], &[1, 2]).await;
        assert_eq!(result, Err("bad certificate"));
    }
}
