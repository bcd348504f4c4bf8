//! The node's side of the network between nodes: requests to other nodes over
//! QUIC, with this node's certificate as client identity (mutual TLS between
//! nodes), through the same exchange clients use (`sluice_transport::exchange`).

use std::net::SocketAddr;
use std::time::Duration;

use sluice_proto::{RaftRpc, Request, Response};
use sluice_raft::{CallError, CallFuture, NodeId, RaftTransport};
use sluice_transport::{Connector, ExchangeError, TransportError};

/// Why a request to another node got no answer. The messages leave the node
/// and its address to the caller, which names them in its own context.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerError {
    /// The node's address names no host we can find.
    #[error("cannot resolve its address: {0}")]
    Resolve(String),
    /// No connection to the node could be made.
    #[error(transparent)]
    Connect(#[from] TransportError),
    /// The connection was there but the request or its answer was lost.
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    /// The node did not answer within the caller's deadline.
    #[error("no answer within {0:?}")]
    NoAnswer(Duration),
}

/// Sends requests to other nodes; shared by Raft and by request forwarding.
#[derive(Clone)]
pub(crate) struct Peers {
    connector: Connector,
}

impl Peers {
    pub(crate) fn new(connector: Connector) -> Self {
        Self { connector }
    }

    /// Sends one request to the node at `addr` and returns its one response
    /// (a node's refusal, `Response::Error`, is an answer too), or gives up
    /// after `deadline`.
    pub(crate) async fn request(
        &self,
        addr: &str,
        request: &Request,
        deadline: Duration,
    ) -> Result<Response, PeerError> {
        let ask = async {
            let target = resolve(addr).await?;
            let connection = self.connector.connect(target).await?;
            let (response, _) = sluice_transport::exchange(&connection, request).await?;
            Ok(response)
        };
        tokio::time::timeout(deadline, ask)
            .await
            .unwrap_or(Err(PeerError::NoAnswer(deadline)))
    }
}

async fn resolve(addr: &str) -> Result<SocketAddr, PeerError> {
    if let Ok(a) = addr.parse() {
        return Ok(a);
    }
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| PeerError::Resolve(e.to_string()))?
        .next()
        .ok_or_else(|| PeerError::Resolve(format!("{addr} names no address")))
}

impl RaftTransport for Peers {
    fn call(&self, target: NodeId, addr: String, rpc: RaftRpc, timeout: Duration) -> CallFuture {
        let peers = self.clone();
        Box::pin(async move {
            let (kind, started) = (rpc.kind, std::time::Instant::now());
            let answer = peers.request(&addr, &Request::Raft(rpc), timeout).await;
            let ok = matches!(answer, Ok(Response::Raft { .. }));
            crate::metrics::raft_rpc(kind, ok, started.elapsed());
            match answer {
                Err(e) => Err(CallError::Unreachable {
                    node: target,
                    addr,
                    reason: e.to_string(),
                }),
                Ok(Response::Raft { payload }) => Ok(payload),
                Ok(Response::Error(e)) => Err(CallError::Remote {
                    node: target,
                    reason: e.to_string(),
                }),
                Ok(other) => Err(CallError::Remote {
                    node: target,
                    reason: format!("unexpected answer {other:?}"),
                }),
            }
        })
    }
}
