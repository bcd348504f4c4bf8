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

/// Largest encoded Raft RPC sent in one frame, leaving room for the envelope.
const RAFT_RPC_BYTES_MAX: usize = sluice_proto::limits::FRAME_SIZE_BYTES_MAX - 1024 * 1024;

impl Peer {
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        kind: RaftRpcKind,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallFailure> {
        let payload = encode(request).map_err(|e| CallFailure::Local(e.to_string()))?;
        self.call_encoded(kind, payload, timeout).await
    }

    async fn call_encoded<Resp: DeserializeOwned>(
        &self,
        kind: RaftRpcKind,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Resp, CallFailure> {
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

    /// Sends the entries in as many RPCs as it takes to keep each under the
    /// frame limit (openraft bounds entries per RPC by count, not bytes, and
    /// a produce batch may be megabytes): each part continues from the last
    /// entry of the previous one, so the follower sees an ordinary sequence
    /// of appends. The first answer that is not a success is returned as is.
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let local = |e: std::io::Error| RPCError::Network(NetworkError::from_string(e.to_string()));
        let mut parts = std::collections::VecDeque::from([rpc]);
        let mut answer = AppendEntriesResponse::Success;
        while let Some(part) = parts.pop_front() {
            let payload = encode(&part).map_err(local)?;
            if payload.len() > RAFT_RPC_BYTES_MAX && part.entries.len() > 1 {
                let (first, second) = split(part);
                parts.push_front(second);
                parts.push_front(first);
                continue;
            }
            answer = self
                .call_encoded(RaftRpcKind::AppendEntries, payload, option.hard_ttl())
                .await
                .map_err(CallFailure::into_rpc_error)?;
            if !answer.is_success() {
                return Ok(answer);
            }
        }
        Ok(answer)
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

    /// Sent like a vote; a peer that cannot be reached is an error, never a
    /// grant, so an isolated node cannot gather a quorum of them.
    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RaftRpcKind::PreVote, &rpc, option.hard_ttl())
            .await
            .map_err(CallFailure::into_rpc_error)
    }

    async fn transfer_leader(
        &mut self,
        req: openraft::raft::TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<openraft::raft::TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RaftRpcKind::TransferLeader, &req, option.hard_ttl())
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
        let request: SnapshotRequest = (
            vote,
            snapshot.meta,
            serde_bytes::ByteBuf::from(snapshot.snapshot),
        );
        // A snapshot may be large: give it more time than a heartbeat.
        let timeout = option.hard_ttl().max(Duration::from_secs(30));
        self.call(RaftRpcKind::InstallSnapshot, &request, timeout)
            .await
            .map_err(CallFailure::into_streaming_error)
    }
}

/// What an InstallSnapshot RPC carries.
pub(crate) type SnapshotRequest = (
    VoteOf<TypeConfig>,
    SnapshotMetaOf<TypeConfig>,
    serde_bytes::ByteBuf,
);

/// Splits an append into two that, sent in order, have the same effect.
fn split(
    mut rpc: AppendEntriesRequest<TypeConfig>,
) -> (
    AppendEntriesRequest<TypeConfig>,
    AppendEntriesRequest<TypeConfig>,
) {
    use openraft::entry::RaftEntry;
    let tail = rpc.entries.split_off(rpc.entries.len() / 2);
    let second = AppendEntriesRequest {
        vote: rpc.vote,
        prev_log_id: rpc.entries.last().map(|e| e.log_id()),
        entries: tail,
        leader_commit: rpc.leader_commit,
    };
    (rpc, second)
}

#[cfg(test)]
mod tests {
    use openraft::entry::RaftEntry;
    use openraft::impls::leader_id_adv::LeaderId;
    use openraft::vote::RaftLeaderId;
    use openraft::{Entry, EntryPayload, LogId, Vote};

    use super::*;

    #[test]
    fn a_split_append_chains_its_parts() {
        let log_id = |i| LogId::new(LeaderId::<u64, u64>::new(1, 1), i);
        let entries = (3..=7)
            .map(|i| Entry {
                log_id: log_id(i),
                payload: EntryPayload::Blank,
            })
            .collect();
        let rpc = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new(1, 1),
            prev_log_id: Some(log_id(2)),
            entries,
            leader_commit: Some(log_id(6)),
        };
        let (a, b) = split(rpc);
        let index = |r: &AppendEntriesRequest<TypeConfig>| {
            r.entries.iter().map(|e| e.index()).collect::<Vec<_>>()
        };
        assert_eq!(index(&a), [3, 4]);
        assert_eq!(index(&b), [5, 6, 7]);
        assert_eq!(a.prev_log_id, Some(log_id(2)));
        assert_eq!(
            b.prev_log_id,
            Some(log_id(4)),
            "the second part continues after the first"
        );
        assert_eq!(
            (a.leader_commit, b.leader_commit),
            (Some(log_id(6)), Some(log_id(6)))
        );
    }
}
