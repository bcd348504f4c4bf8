//! The Raft network of a group: openraft's RPCs, encoded by this crate and
//! carried by a [`RaftTransport`] that the node provides (QUIC, in the SPU).
//!
//! The transport is injected so this crate needs no QUIC: it only encodes an
//! RPC, hands it over with a deadline, and decodes the answer. Every call has a
//! deadline (openraft's hard TTL for the RPC): a partition can swallow a
//! response on an open connection, and a call that never returns would stall
//! replication to that peer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openraft::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, RaftNetworkV2};
use serde::{Serialize, de::DeserializeOwned};
use sluice_proto::{RaftRpc, RaftRpcKind};

use crate::log_store::{decode, encode};
use crate::{GroupId, NodeId, TypeConfig};

/// Why a call to another node failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The node could not be reached or did not answer in time.
    #[error("node {node} at {addr} is unreachable: {reason}")]
    Unreachable {
        node: NodeId,
        addr: String,
        reason: String,
    },
    /// The node answered with an error.
    #[error("node {node} refused the RPC: {reason}")]
    Remote { node: NodeId, reason: String },
}

pub type CallFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, CallError>> + Send>>;

/// How Raft RPCs reach other nodes. Implemented by the node over QUIC.
pub trait RaftTransport: Send + Sync + 'static {
    /// Sends `rpc` to node `target` at `addr` and returns the answer's
    /// payload, failing after `timeout`.
    fn call(&self, target: NodeId, addr: String, rpc: RaftRpc, timeout: Duration) -> CallFuture;
}

pub(crate) struct Network {
    pub(crate) group: GroupId,
    pub(crate) transport: Arc<dyn RaftTransport>,
}

pub(crate) struct Peer {
    group: GroupId,
    target: NodeId,
    addr: String,
    transport: Arc<dyn RaftTransport>,
}

/// What a node answers to an RPC: the openraft response or its error as text.
pub(crate) type Answer<T> = Result<T, String>;

impl Peer {
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        kind: RaftRpcKind,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallFailure> {
        let payload = encode(request).map_err(|e| CallFailure::Local(e.to_string()))?;
        let rpc = RaftRpc {
            group: self.group,
            kind,
            payload,
        };
        let bytes = self
            .transport
            .call(self.target, self.addr.clone(), rpc, timeout)
            .await
            .map_err(CallFailure::Call)?;
        let answer: Answer<Resp> = decode(&bytes).map_err(|e| CallFailure::Local(e.to_string()))?;
        answer.map_err(|reason| {
            CallFailure::Call(CallError::Remote {
                node: self.target,
                reason,
            })
        })
    }
}

enum CallFailure {
    Call(CallError),
    Local(String),
}

impl CallFailure {
    fn into_rpc_error(self) -> RPCError<TypeConfig> {
        match self {
            CallFailure::Call(e @ CallError::Unreachable { .. }) => {
                RPCError::Unreachable(Unreachable::from_string(e.to_string()))
            }
            CallFailure::Call(e) => RPCError::Network(NetworkError::from_string(e.to_string())),
            CallFailure::Local(reason) => RPCError::Network(NetworkError::from_string(reason)),
        }
    }
    fn into_streaming_error(self) -> StreamingError<TypeConfig> {
        match self.into_rpc_error() {
            RPCError::Unreachable(u) => StreamingError::Unreachable(u),
            RPCError::Network(n) => StreamingError::Network(n),
            other => StreamingError::Network(NetworkError::from_string(other.to_string())),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        Peer {
            group: self.group,
            target,
            addr: node.addr.clone(),
            transport: self.transport.clone(),
        }
    }
}

impl RaftNetworkV2<TypeConfig> for Peer {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RaftRpcKind::AppendEntries, &rpc, option.hard_ttl())
            .await
            .map_err(CallFailure::into_rpc_error)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RaftRpcKind::Vote, &rpc, option.hard_ttl())
            .await
            .map_err(CallFailure::into_rpc_error)
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, Vec<u8>>,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let request: SnapshotRequest = (vote, snapshot.meta, snapshot.snapshot);
        // A snapshot may be large: give it more time than a heartbeat.
        let timeout = option.hard_ttl().max(Duration::from_secs(30));
        self.call(RaftRpcKind::InstallSnapshot, &request, timeout)
            .await
            .map_err(CallFailure::into_streaming_error)
    }
}

/// What an InstallSnapshot RPC carries.
pub(crate) type SnapshotRequest = (VoteOf<TypeConfig>, SnapshotMetaOf<TypeConfig>, Vec<u8>);
