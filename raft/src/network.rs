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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

mod pipeline;

pub use pipeline::APPEND_STREAM_IN_FLIGHT_MAX;

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

/// A group's open append stream to one replica (see `network::pipeline`):
/// encoded appends go in, in log order, and their answers come out in the
/// same order while later appends are on the wire. A stream may outlive the
/// replication session that opened it (parked for the next one), so a
/// transport should end one that has every append answered and nothing
/// sent for [`crate::timeouts::APPEND_STREAM_IDLE`], closing both channels:
/// the node's does (`spu/src/peers.rs`).
pub struct AppendStream {
    /// Encoded `AppendEntriesRequest`s. Dropping it ends the stream.
    pub requests: tokio::sync::mpsc::Sender<Vec<u8>>,
    /// One encoded answer per request, in order; after an error, nothing.
    pub answers: tokio::sync::mpsc::Receiver<Result<Vec<u8>, CallError>>,
}

/// What opening an append stream gives: `Ok(None)` when the transport or
/// the node does not carry them (an older build) or has as many open to
/// that node as it allows; the group then sends its appends one by one.
pub type AppendStreamFuture =
    Pin<Box<dyn Future<Output = Result<Option<AppendStream>, CallError>> + Send>>;

/// How Raft RPCs reach other nodes. Implemented by the node over QUIC.
pub trait RaftTransport: Send + Sync + 'static {
    /// Sends `rpc` to node `target` at `addr` and returns the answer's
    /// payload, failing after `timeout`.
    fn call(&self, target: NodeId, addr: String, rpc: RaftRpc, timeout: Duration) -> CallFuture;

    /// Like [`call`](Self::call), for a heartbeat (an append without
    /// entries) or another RPC that may wait a few milliseconds (a request
    /// to sleep), which a transport may send together with others bound for
    /// the same node ([`crate::Coalescing`]).
    fn call_heartbeat(
        &self,
        target: NodeId,
        addr: String,
        rpc: RaftRpc,
        timeout: Duration,
    ) -> CallFuture {
        self.call(target, addr, rpc, timeout)
    }

    /// Like [`call`](Self::call), for an append carrying entries, which a
    /// transport may send together with others bound for the same node
    /// while earlier ones are on the wire ([`crate::Coalescing`]).
    fn call_append(
        &self,
        target: NodeId,
        addr: String,
        rpc: RaftRpc,
        timeout: Duration,
    ) -> CallFuture {
        self.call(target, addr, rpc, timeout)
    }

    /// Opens an append stream for `group` to node `target` at `addr`,
    /// failing after `timeout` (see [`AppendStream`]). Transports that
    /// carry none keep this default, and groups send appends one by one.
    fn open_append_stream(
        &self,
        target: NodeId,
        addr: String,
        group: GroupId,
        timeout: Duration,
    ) -> AppendStreamFuture {
        let _ = (target, addr, group, timeout);
        Box::pin(async { Ok(None) })
    }
}

/// How a transport may carry an RPC (see [`RaftTransport`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Alone,
    Heartbeat,
    Append,
}

pub(crate) struct Network {
    pub(crate) group: GroupId,
    pub(crate) transport: Arc<dyn RaftTransport>,
    /// Set by the group while a write waits for its leader's lease to be
    /// renewed (see `Group::renew_lease`): heartbeats then go at once
    /// instead of waiting out the coalescing window, since a write waits
    /// on their answers.
    pub(crate) lease_wanted: Arc<AtomicBool>,
    /// Per follower, the commit index the group's appends have carried to it.
    commits_sent: std::collections::HashMap<NodeId, Arc<CommitSent>>,
}

impl Network {
    pub(crate) fn new(
        group: GroupId,
        transport: Arc<dyn RaftTransport>,
        lease_wanted: Arc<AtomicBool>,
    ) -> Self {
        Self {
            group,
            transport,
            lease_wanted,
            commits_sent: Default::default(),
        }
    }
}

/// The highest commit index (plus one, 0 for none) an append of a group has
/// carried to one follower, shared by the clients openraft makes for that
/// follower (its replication stream's and its heartbeat worker's).
///
/// openraft's replication stream sends an append without entries to tell a
/// follower of a new commit, and sends nothing else to it until that append
/// is answered. Such an append looks like a heartbeat; sent through the
/// heartbeat window, it held the follower's next entries up to the window's
/// length (at 1,000 single-record writes a second, ack p50 went from about
/// 1.4 ms to 7 ms). An append without entries that carries a commit the
/// follower has not been sent is therefore routed as an append; one that
/// tells nothing new is a heartbeat.
#[derive(Default)]
pub(crate) struct CommitSent(AtomicU64);

impl CommitSent {
    /// Records that an append carries `commit`; returns whether no append
    /// had carried it (or a later one) before.
    fn carries(&self, commit: Option<u64>) -> bool {
        let mark = Self::mark(commit);
        self.0.fetch_max(mark, Ordering::Relaxed) < mark
    }

    /// Whether an append carried `commit` (or a later one) already; records
    /// nothing.
    fn carried(&self, commit: Option<u64>) -> bool {
        self.0.load(Ordering::Relaxed) >= Self::mark(commit)
    }

    /// `commit` as the stored mark: its index plus one, 0 for none.
    fn mark(commit: Option<u64>) -> u64 {
        commit.map_or(0, |index| index + 1)
    }
}

pub(crate) struct Peer {
    group: GroupId,
    target: NodeId,
    addr: String,
    transport: Arc<dyn RaftTransport>,
    lease_wanted: Arc<AtomicBool>,
    commit_sent: Arc<CommitSent>,
    /// The append stream the last replication session ended on with every
    /// append answered, kept for the next session (see `pipeline`).
    parked: Option<pipeline::Parked>,
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
        self.send_encoded(kind, payload, timeout, Route::Alone)
            .await
    }

    /// Sends an encoded RPC; a heartbeat or an append may travel with
    /// others (see [`RaftTransport::call_heartbeat`] and
    /// [`RaftTransport::call_append`]).
    async fn send_encoded<Resp: DeserializeOwned>(
        &self,
        kind: RaftRpcKind,
        payload: Vec<u8>,
        timeout: Duration,
        route: Route,
    ) -> Result<Resp, CallFailure> {
        let rpc = RaftRpc {
            group: self.group,
            kind,
            payload,
        };
        let (target, addr) = (self.target, self.addr.clone());
        let call = match route {
            // A write waits on this heartbeat's answer: no window for it.
            Route::Heartbeat if self.lease_wanted.load(Ordering::Relaxed) => {
                self.transport.call(target, addr, rpc, timeout)
            }
            Route::Heartbeat => self.transport.call_heartbeat(target, addr, rpc, timeout),
            Route::Append => self.transport.call_append(target, addr, rpc, timeout),
            Route::Alone => self.transport.call(target, addr, rpc, timeout),
        };
        let bytes = call.await.map_err(CallFailure::Call)?;
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
            lease_wanted: self.lease_wanted.clone(),
            commit_sent: self.commits_sent.entry(target).or_default().clone(),
            parked: None,
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
    /// A part that fails to arrive after earlier parts were appended makes
    /// the answer a partial success up to them: the leader then knows what
    /// the follower holds instead of believing it holds nothing new (a stale
    /// view of a follower is what makes a leader send a snapshot the
    /// follower does not need; see `Group::log_holds_snapshot`).
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        use openraft::entry::RaftEntry;
        let local = |e: std::io::Error| RPCError::Network(NetworkError::from_string(e.to_string()));
        let mut parts = Parts::of(rpc);
        let mut answer = AppendEntriesResponse::Success;
        // The last log id a part brought the follower to, once one arrived.
        let mut matched = None;
        while let Some(next) = parts.next_part() {
            let (part, payload) = next.map_err(local)?;
            let last = part.entries.last().map(|e| e.log_id()).or(part.prev_log_id);
            let payload_len = payload.len();
            let news = self
                .commit_sent
                .carries(part.leader_commit.as_ref().map(|c| c.index()));
            let route = if part.entries.is_empty() && !news {
                Route::Heartbeat
            } else {
                Route::Append
            };
            answer = match self
                .send_encoded(
                    RaftRpcKind::AppendEntries,
                    payload,
                    crate::timeouts::append_entries_deadline(option.hard_ttl(), payload_len),
                    route,
                )
                .await
            {
                Ok(answer) => answer,
                Err(_) if matched.is_some() => {
                    return Ok(AppendEntriesResponse::PartialSuccess(matched.flatten()));
                }
                Err(e) => return Err(e.into_rpc_error()),
            };
            if !answer.is_success() {
                return Ok(answer);
            }
            matched = Some(last);
        }
        Ok(answer)
    }

    /// Pipelined when the transport opens an append stream to the target
    /// (see [`pipeline`]); one by one otherwise.
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> openraft::base::BoxFuture<
        's,
        Result<
            openraft::base::BoxStream<
                's,
                Result<openraft::raft::StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>,
            >,
            RPCError<TypeConfig>,
        >,
    >
    where
        S: futures::Stream<Item = AppendEntriesRequest<TypeConfig>>
            + OptionalSend
            + Unpin
            + 'static,
    {
        pipeline::stream_append(self, input, option)
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

    /// Sends a whole snapshot, unless the stream was cancelled or the
    /// snapshot is beyond the vote it would be sent under.
    ///
    /// openraft's snapshot transmitter reads the newest snapshot afresh on
    /// every attempt and, after a network error, retries without looking at
    /// its cancellation. A leader that stepped down keeps such a stream alive
    /// for a while; meanwhile, as a follower of the next term, it may build a
    /// snapshot holding that term's entries, which the stream would then send
    /// under the old vote, and a receiver still at that vote would install
    /// entries newer than the leader it believes in (openraft asserts on it).
    /// So a cancelled stream sends nothing and ends, and a snapshot beyond
    /// the sender's vote is never sent (receivers refuse it too).
    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, Vec<u8>>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        if snapshot_beyond_vote(&vote, &snapshot.meta) {
            return Err(StreamingError::Closed(ReplicationClosed::new(format!(
                "the snapshot up to {:?} is beyond this stream's vote {vote:?}: \
                 its leader has stepped down",
                snapshot.meta.last_log_id
            ))));
        }
        let request: SnapshotRequest = (
            vote,
            snapshot.meta,
            serde_bytes::ByteBuf::from(snapshot.snapshot),
        );
        // A snapshot may be large: give it more time than a heartbeat.
        let timeout = option.hard_ttl().max(crate::timeouts::SNAPSHOT_RPC_MIN);
        let call = self.call(RaftRpcKind::InstallSnapshot, &request, timeout);
        // Cancellation first: a stream already cancelled must not send.
        tokio::select! {
            biased;
            closed = cancel => Err(StreamingError::Closed(closed)),
            answer = call => answer.map_err(CallFailure::into_streaming_error),
        }
    }
}

/// Whether an append carries an entry of a later leader than its vote's.
pub(crate) fn entries_beyond_vote(rpc: &AppendEntriesRequest<TypeConfig>) -> bool {
    rpc.entries
        .iter()
        .any(|e| e.log_id.leader_id > *rpc.vote.leader_id())
}

/// Whether a snapshot holds entries of a later leader than `vote`'s: no
/// leader holding `vote` can have sent it (see `Peer::full_snapshot`).
pub(crate) fn snapshot_beyond_vote(
    vote: &VoteOf<TypeConfig>,
    meta: &SnapshotMetaOf<TypeConfig>,
) -> bool {
    meta.last_log_id
        .is_some_and(|last| last.leader_id > *vote.leader_id())
}

/// What an InstallSnapshot RPC carries.
pub(crate) type SnapshotRequest = (
    VoteOf<TypeConfig>,
    SnapshotMetaOf<TypeConfig>,
    serde_bytes::ByteBuf,
);

/// An append's parts, each encoded under the frame limit, one at a time:
/// an append too large for a frame is split in halves, each continuing from
/// the last entry of the one before, so the follower sees an ordinary
/// sequence of appends.
pub(crate) struct Parts(std::collections::VecDeque<AppendEntriesRequest<TypeConfig>>);

impl Parts {
    pub(crate) fn of(rpc: AppendEntriesRequest<TypeConfig>) -> Self {
        Self(std::collections::VecDeque::from([rpc]))
    }

    /// The next part and its encoding.
    pub(crate) fn next_part(
        &mut self,
    ) -> Option<std::io::Result<(AppendEntriesRequest<TypeConfig>, Vec<u8>)>> {
        while let Some(part) = self.0.pop_front() {
            let payload = match encode(&part) {
                Ok(payload) => payload,
                Err(e) => return Some(Err(e)),
            };
            if payload.len() > RAFT_RPC_BYTES_MAX && part.entries.len() > 1 {
                let (first, second) = split(part);
                self.0.push_front(second);
                self.0.push_front(first);
                continue;
            }
            return Some(Ok((part, payload)));
        }
        None
    }
}

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
    use crate::Bytes;

    /// Answers the first call with a success and fails every later one.
    struct FirstOnly(std::sync::atomic::AtomicUsize);

    impl RaftTransport for FirstOnly {
        fn call(&self, target: NodeId, addr: String, _rpc: RaftRpc, _t: Duration) -> CallFuture {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                if n == 0 {
                    let ok: Answer<AppendEntriesResponse<TypeConfig>> =
                        Ok(AppendEntriesResponse::Success);
                    Ok(encode(&ok).unwrap())
                } else {
                    Err(CallError::Unreachable {
                        node: target,
                        addr,
                        reason: "cut after the first part".into(),
                    })
                }
            })
        }
    }

    #[tokio::test]
    async fn a_split_append_cut_after_its_first_part_is_a_partial_success() {
        let log_id = |i| LogId::new(LeaderId::<u64, u64>::new(1, 1), i);
        // Two entries that do not fit one frame together.
        let big = || Bytes(Arc::new(vec![7; RAFT_RPC_BYTES_MAX / 2 + 1]));
        let rpc = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(1, 1),
            prev_log_id: Some(log_id(2)),
            entries: vec![
                Entry {
                    log_id: log_id(3),
                    payload: EntryPayload::Normal(big()),
                },
                Entry {
                    log_id: log_id(4),
                    payload: EntryPayload::Normal(big()),
                },
            ],
            leader_commit: Some(log_id(2)),
        };
        let mut peer = Peer {
            group: 1,
            target: 2,
            addr: "node-2".into(),
            transport: Arc::new(FirstOnly(Default::default())),
            lease_wanted: Arc::default(),
            commit_sent: Arc::default(),
            parked: None,
        };
        let option = RPCOption::new(Duration::from_secs(1));
        let answer = peer
            .append_entries(rpc.clone(), option.clone())
            .await
            .unwrap();
        assert_eq!(
            answer,
            AppendEntriesResponse::PartialSuccess(Some(log_id(3)))
        );
        // Nothing arrived: an error, as before.
        let mut peer = Peer {
            transport: Arc::new(FirstOnly(1.into())),
            ..peer
        };
        assert!(peer.append_entries(rpc, option).await.is_err());
    }

    /// Answers every append with a success and notes how each was routed.
    #[derive(Default)]
    struct Routes(std::sync::Mutex<Vec<&'static str>>);

    impl Routes {
        fn answer(&self, route: &'static str) -> CallFuture {
            self.0.lock().unwrap().push(route);
            let ok: Answer<AppendEntriesResponse<TypeConfig>> = Ok(AppendEntriesResponse::Success);
            let bytes = encode(&ok).unwrap();
            Box::pin(async move { Ok(bytes) })
        }
    }

    impl RaftTransport for Routes {
        fn call(&self, _: NodeId, _: String, _: RaftRpc, _: Duration) -> CallFuture {
            self.answer("alone")
        }
        fn call_heartbeat(&self, _: NodeId, _: String, _: RaftRpc, _: Duration) -> CallFuture {
            self.answer("heartbeat")
        }
        fn call_append(&self, _: NodeId, _: String, _: RaftRpc, _: Duration) -> CallFuture {
            self.answer("append")
        }
    }

    #[tokio::test]
    async fn an_append_that_only_carries_a_new_commit_skips_the_heartbeat_window() {
        let log_id = |i| LogId::new(LeaderId::<u64, u64>::new(1, 1), i);
        let append = |entries: Vec<u64>, commit: Option<u64>| AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(1, 1),
            prev_log_id: Some(log_id(2)),
            entries: entries
                .into_iter()
                .map(|i| Entry {
                    log_id: log_id(i),
                    payload: EntryPayload::Blank,
                })
                .collect(),
            leader_commit: commit.map(log_id),
        };
        let transport = Arc::new(Routes::default());
        let mut network = Network::new(1, transport.clone(), Arc::default());
        let node = BasicNode::new("node-2");
        // The replication stream's client and the heartbeat worker's, as openraft makes them.
        let mut stream = network.new_client(2, &node).await;
        let mut heartbeat = network.new_client(2, &node).await;
        let mut other_follower = network.new_client(3, &node).await;
        let option = || RPCOption::new(Duration::from_secs(1));
        let send = async |peer: &mut Peer, rpc| {
            peer.append_entries(rpc, option()).await.unwrap();
        };
        send(&mut stream, append(vec![3], Some(2))).await;
        // Entry 3 committed: the stream tells the follower without entries.
        send(&mut stream, append(vec![], Some(3))).await;
        // The heartbeat worker's next heartbeat tells nothing new.
        send(&mut heartbeat, append(vec![], Some(3))).await;
        // A commit no append has carried yet, found by the heartbeat worker.
        send(&mut heartbeat, append(vec![], Some(4))).await;
        send(&mut stream, append(vec![], Some(4))).await;
        // Each follower has its own record of what it was told.
        send(&mut other_follower, append(vec![], Some(4))).await;
        send(&mut other_follower, append(vec![], None)).await;
        assert_eq!(
            *transport.0.lock().unwrap(),
            [
                "append",
                "append",
                "heartbeat",
                "append",
                "heartbeat",
                "append",
                "heartbeat"
            ]
        );
    }

    /// Counts calls and answers each with a snapshot response.
    #[derive(Default)]
    struct Counting(std::sync::atomic::AtomicUsize);

    impl RaftTransport for Counting {
        fn call(&self, _target: NodeId, _addr: String, rpc: RaftRpc, _t: Duration) -> CallFuture {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                let (vote, _, _): SnapshotRequest = decode(&rpc.payload).unwrap();
                let ok: Answer<SnapshotResponse<TypeConfig>> = Ok(SnapshotResponse { vote });
                Ok(encode(&ok).unwrap())
            })
        }
    }

    /// A snapshot up to index 9 written by the leader of `term` (node `term`).
    fn snapshot_of_term(term: u64) -> SnapshotOf<TypeConfig, Vec<u8>> {
        openraft::Snapshot {
            meta: openraft::SnapshotMeta {
                last_log_id: Some(LogId::new(LeaderId::<u64, u64>::new(term, term), 9)),
                last_membership: Default::default(),
            },
            snapshot: vec![1, 2, 3],
        }
    }

    /// Sends `snapshot` under the vote of term 4's leader; returns the
    /// outcome and how many calls reached the transport.
    async fn send_snapshot(
        snapshot: SnapshotOf<TypeConfig, Vec<u8>>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
    ) -> (Result<(), String>, usize) {
        let transport = Arc::new(Counting::default());
        let mut peer = Peer {
            group: 1,
            target: 2,
            addr: "node-2".into(),
            transport: transport.clone(),
            lease_wanted: Arc::default(),
            commit_sent: Arc::default(),
            parked: None,
        };
        let option = RPCOption::new(Duration::from_secs(1));
        let outcome = peer
            .full_snapshot(Vote::new_committed(4, 4), snapshot, cancel, option)
            .await
            .map(drop)
            .map_err(|e| match e {
                StreamingError::Closed(c) => format!("closed: {c}"),
                other => format!("other: {other}"),
            });
        (
            outcome,
            transport.0.load(std::sync::atomic::Ordering::SeqCst),
        )
    }

    #[tokio::test]
    async fn a_snapshot_within_the_vote_is_sent() {
        let (outcome, calls) = send_snapshot(snapshot_of_term(4), std::future::pending()).await;
        assert_eq!((outcome, calls), (Ok(()), 1));
    }

    #[tokio::test]
    async fn a_cancelled_snapshot_stream_sends_nothing() {
        let stepped_down = std::future::ready(ReplicationClosed::new("leader stepped down"));
        let (outcome, calls) = send_snapshot(snapshot_of_term(4), stepped_down).await;
        assert!(outcome.unwrap_err().starts_with("closed:"));
        assert_eq!(calls, 0, "a cancelled stream must not send");
    }

    #[tokio::test]
    async fn a_snapshot_beyond_the_streams_vote_is_not_sent() {
        // Term 4's leader stepped down and, as term 5's follower, built a
        // snapshot holding term 5's entries; its old stream must not send it.
        let (outcome, calls) = send_snapshot(snapshot_of_term(5), std::future::pending()).await;
        let refusal = outcome.unwrap_err();
        assert!(
            refusal.starts_with("closed:") && refusal.contains("beyond"),
            "{refusal}"
        );
        assert_eq!(calls, 0);
    }

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
