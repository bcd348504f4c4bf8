//! Raft RPCs between nodes: what crosses the wire for the `raft` crate, which
//! encodes their payloads itself (`Request::Raft`, `Response::Raft`).

use serde::{Deserialize, Serialize};

/// A Raft RPC between two replicas of one group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftRpc {
    pub group: u64,
    pub kind: RaftRpcKind,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RaftRpcKind {
    AppendEntries,
    Vote,
    InstallSnapshot,
    /// The leader hands leadership to a caught-up voter (leader balancing).
    TransferLeader,
    /// Would the peer vote for this candidate at the next term? Asked before
    /// a node raises its term (Raft's Pre-Vote), so a node that was cut off
    /// does not come back with a term that unseats a working leader.
    PreVote,
    /// The leader of an idle group asks a member to stop ticking (quiescence,
    /// `sluice_raft::Quiescence`). Added after the variants above, so their
    /// encoding is unchanged; a node of an older build refuses it and its
    /// groups simply stay awake.
    Quiesce,
    /// Node to node, not for one group (`group` is ignored): of the groups
    /// named in the payload, which the receiving node leads. Sent by a node
    /// for the groups that sleep on it, instead of a heartbeat per group.
    LeaderProbe,
    /// A sleeping member that does not know what its leader has committed (it
    /// restarted while the group slept) asks the leader to wake and send it
    /// a heartbeat, which carries the commit; until then the member cannot
    /// serve reads. Ignored by a replica that does not lead.
    CommitWanted,
    /// Node to node, not for one group (`group` is ignored): a
    /// [`RaftRpcKind::LeaderProbe`] that also serves the other direction of
    /// the node pair. It names the groups the sender sleeps in under the
    /// receiver (the answer says which the receiver leads) and the groups the
    /// sender leads with the receiver as a member, so the receiver learns its
    /// sleeping groups' leader is alive without a probe of its own: one probe
    /// per node pair instead of one per direction. A node of an older build
    /// refuses it; its groups then wake, as they would for a silent leader.
    PeerProbe,
    /// Node to node, not for one group (`group` is ignored): several Raft
    /// RPCs for the receiver's groups (heartbeats gathered over a few
    /// milliseconds, `sluice_raft::Coalescing`), each served as if it had
    /// come alone and answered in order. A node of an older build refuses
    /// it; the sender then sends them one by one.
    Batch,
    /// Opens a group's append stream (`sluice_raft`'s pipelined
    /// replication): the stream's later frames are `AppendEntries` RPCs of
    /// the same group, in log order, answered in order while later ones are
    /// on the wire. The opening frame's payload is empty; it is answered
    /// with an empty success before any append. A node of an older build
    /// refuses it; the sender then sends its appends one by one.
    AppendStream,
}
