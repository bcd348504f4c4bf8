//! The node's side of the Raft network: RPCs to other nodes over QUIC, with
//! this node's certificate as client identity (mutual TLS between nodes).

use std::net::SocketAddr;
use std::time::Duration;

use sluice_proto::limits::FRAME_SIZE_BYTES_MAX;
use sluice_proto::{RaftRpc, Request, Response, codec};
use sluice_raft::{CallError, CallFuture, NodeId, RaftTransport};
use sluice_transport::{Connector, read_frame, write_frame};

/// Sends requests to other nodes; shared by Raft and by request forwarding.
#[derive(Clone)]
pub(crate) struct Peers {
    connector: Connector,
}

impl Peers {
    pub(crate) fn new(connector: Connector) -> Self {
        Self { connector }
    }

    /// Sends one request to the node at `addr` and returns its one response.
    pub(crate) async fn request(&self, addr: &str, request: &Request) -> Result<Response, String> {
        let target = resolve(addr).await?;
        let conn = self
            .connector
            .connect(target)
            .await
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
            let bytes = codec::encode(request).map_err(|e| e.to_string())?;
            write_frame(&mut send, &bytes)
                .await
                .map_err(|e| e.to_string())?;
            let _ = send.finish();
            let frame = read_frame(&mut recv, FRAME_SIZE_BYTES_MAX)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "the node closed the stream without answering".to_string())?;
            // The answer is the stream's last frame (see `read_end_if_arrived`).
            sluice_transport::read_end_if_arrived(&mut recv);
            codec::decode::<Response>(&frame).map_err(|e| e.to_string())
        };
        exchange.await
    }
}

async fn resolve(addr: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = addr.parse() {
        return Ok(a);
    }
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr} resolves to no address"))
}

impl RaftTransport for Peers {
    fn call(&self, target: NodeId, addr: String, rpc: RaftRpc, timeout: Duration) -> CallFuture {
        let peers = self.clone();
        Box::pin(async move {
            let unreachable = |reason: String| CallError::Unreachable {
                node: target,
                addr: addr.clone(),
                reason,
            };
            let (kind, started) = (rpc.kind, std::time::Instant::now());
            let answer =
                tokio::time::timeout(timeout, peers.request(&addr, &Request::Raft(rpc))).await;
            let ok = matches!(answer, Ok(Ok(Response::Raft { .. })));
            crate::metrics::raft_rpc(kind, ok, started.elapsed());
            match answer {
                Err(_) => Err(unreachable(format!("no answer within {timeout:?}"))),
                Ok(Err(reason)) => Err(unreachable(reason)),
                Ok(Ok(Response::Raft { payload })) => Ok(payload),
                Ok(Ok(Response::Error(e))) => Err(CallError::Remote {
                    node: target,
                    reason: e.to_string(),
                }),
                Ok(Ok(other)) => Err(CallError::Remote {
                    node: target,
                    reason: format!("unexpected answer {other:?}"),
                }),
            }
        })
    }
}
