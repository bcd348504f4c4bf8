//! The Raft network of a group.
//!
//! Today every group has exactly one voter (the node itself), so openraft
//! never sends an RPC: a single voter elects itself and commits alone. The
//! QUIC transport for replication between nodes is the replication issue's
//! work; until it exists, any attempt to reach another node fails with an
//! explicit `Unreachable` naming the target, rather than pretending to work.

use std::future::Future;

use openraft::alias::{SnapshotOf, VoteOf};
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, RaftNetworkV2};

use crate::{GroupId, NodeId, TypeConfig};

pub(crate) struct Network {
    pub(crate) group: GroupId,
}

pub(crate) struct Peer {
    group: GroupId,
    target: NodeId,
    addr: String,
}

impl Peer {
    fn unreachable(&self) -> Unreachable<TypeConfig> {
        let msg = format!(
            "group {}: node {} at {} cannot be reached: replication between nodes is not built yet",
            self.group, self.target, self.addr
        );
        Unreachable::new(&std::io::Error::other(msg))
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        Peer {
            group: self.group,
            target,
            addr: node.addr.clone(),
        }
    }
}

impl RaftNetworkV2<TypeConfig> for Peer {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(self.unreachable()))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(self.unreachable()))
    }

    async fn full_snapshot(
        &mut self,
        _vote: VoteOf<TypeConfig>,
        _snapshot: SnapshotOf<TypeConfig, Vec<u8>>,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        Err(StreamingError::Unreachable(self.unreachable()))
    }
}
