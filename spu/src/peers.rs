//! The node's side of the Raft network: RPCs to other nodes over QUIC, with
//! this node's certificate as client identity (mutual TLS between nodes).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sluice_proto::limits::FRAME_SIZE_BYTES_MAX;
use sluice_proto::{RaftRpc, Request, Response, codec};
use sluice_raft::{CallError, CallFuture, NodeId, RaftTransport};
use sluice_transport::{Connector, read_frame, write_frame};

use crate::raft_batch::{BatchEnd, Lanes};

/// Sends requests to other nodes; shared by Raft and by request forwarding.
#[derive(Clone)]
pub(crate) struct Peers {
    connector: Connector,
    /// Raft RPCs to each peer, batched (see [`crate::raft_batch`]).
    lanes: Arc<Lanes>,
}

impl Peers {
    pub(crate) fn new(connector: Connector) -> Self {
        Self {
            connector,
            lanes: Arc::default(),
        }
    }

    /// The same connections without the lanes: what a lane's own task
    /// sends with (holding the lanes would keep every lane alive for ever).
    pub(crate) fn without_lanes(&self) -> Self {
        Self {
            connector: self.connector.clone(),
            lanes: Arc::default(),
        }
    }

    /// Sends `request` to the node at `addr` and hands every response frame
    /// of its stream to `on_answer` until that returns `Ok(true)` (all
    /// answered) or an error, or the stream ends (an error: answers are
    /// missing).
    pub(crate) async fn exchange(
        &self,
        addr: &str,
        request: &Request,
        mut on_answer: impl FnMut(Response) -> Result<bool, BatchEnd>,
    ) -> Result<(), BatchEnd> {
        let failed = |e: String| BatchEnd::Failed(e);
        let target = resolve(addr).await.map_err(failed)?;
        let conn = self
            .connector
            .connect(target)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| failed(e.to_string()))?;
        let bytes = codec::encode(request).map_err(|e| failed(e.to_string()))?;
        write_frame(&mut send, &bytes)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let _ = send.finish();
        loop {
            let frame = read_frame(&mut recv, FRAME_SIZE_BYTES_MAX)
                .await
                .map_err(|e| failed(e.to_string()))?
                .ok_or_else(|| {
                    failed("the node closed the stream before answering every RPC".into())
                })?;
            let response = codec::decode::<Response>(&frame).map_err(|e| failed(e.to_string()))?;
            if on_answer(response)? {
                return Ok(());
            }
        }
    }

    /// One Raft RPC on a stream of its own.
    pub(crate) async fn call_one(
        &self,
        target: NodeId,
        addr: String,
        rpc: RaftRpc,
        timeout: Duration,
    ) -> Result<Vec<u8>, CallError> {
        let unreachable = |reason: String| CallError::Unreachable {
            node: target,
            addr: addr.clone(),
            reason,
        };
        let (kind, started) = (rpc.kind, std::time::Instant::now());
        let answer = tokio::time::timeout(timeout, self.request(&addr, &Request::Raft(rpc))).await;
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
    /// Small RPCs travel in the lane to `target`, batched with other
    /// groups'; big ones and snapshots on a stream of their own.
    fn call(&self, target: NodeId, addr: String, rpc: RaftRpc, timeout: Duration) -> CallFuture {
        let peers = self.clone();
        Box::pin(async move {
            if crate::raft_batch::batchable(&rpc) {
                let lanes = peers.lanes.clone();
                lanes.call(&peers, target, addr, rpc, timeout).await
            } else {
                peers.call_one(target, addr, rpc, timeout).await
            }
        })
    }
}
