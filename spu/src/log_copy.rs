//! Catching up a replica that fell behind the leader's kept Raft log: the
//! partition's snapshot names where the source's segments stand, and the
//! follower copies the missing batches from the source node byte for byte
//! (CRC checked, offsets and entry ids preserved), then resumes from the Raft
//! log. This is the "segment transfer" of a new replica moved onto a node.
//! A replica whose own segments were damaged copies them through the same
//! reads before its group starts (`crate::repair`).
//!
//! The copy runs inside the state machine's `install_snapshot`, which the
//! Raft layer calls synchronously; the network calls go through the node's
//! runtime with `block_in_place`, so the other tasks keep running.

use std::io;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sluice_controller::MetadataView;
use sluice_proto::{NodeId, Request, Response};

use crate::peers::Peers;
use crate::timeouts::LOG_COPY_CHUNK_TIMEOUT;

/// What a partition snapshot carries: where the source's log stands, and the
/// replicated producer table at that point.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PartitionSnapshot {
    /// The node whose segments this describes (the one that sent it).
    pub source: NodeId,
    pub group: u64,
    pub start_offset: u64,
    pub end_offset: u64,
    pub last_entry_id: Option<u64>,
    /// The encoded `ProducerTable`.
    #[serde(with = "serde_bytes")]
    pub producers: Vec<u8>,
}

/// A chunk of another replica's log.
pub(crate) struct RemoteBatches {
    pub start_offset: u64,
    pub batches: Vec<Vec<u8>>,
}

/// Reads batches of a partition's log from another node.
pub(crate) trait LogSource: Send + Sync {
    /// Batches of `group`'s log on node `source` from offset `from` on.
    fn read(&self, source: NodeId, group: u64, from: u64) -> io::Result<RemoteBatches>;
}

/// [`LogSource`] over the node's QUIC peers; addresses from the metadata.
pub(crate) struct PeerLogSource {
    pub peers: Peers,
    pub metadata: MetadataView,
    pub runtime: tokio::runtime::Handle,
}

/// Bytes of batches asked for per request (well below the frame limit).
pub(crate) const COPY_CHUNK_BYTES: u32 = 4 * 1024 * 1024;

impl LogSource for PeerLogSource {
    fn read(&self, source: NodeId, group: u64, from: u64) -> io::Result<RemoteBatches> {
        let addr = self
            .metadata
            .with(|md| md.nodes.get(&source).map(|n| n.addr.clone()))
            .ok_or_else(|| io::Error::other(format!("node {source} has no known address")))?;
        let request = Request::ReadReplicaLog {
            group,
            from_offset: from,
            max_bytes: COPY_CHUNK_BYTES,
        };
        let call = self.peers.request(&addr, &request, LOG_COPY_CHUNK_TIMEOUT);
        let response = if on_multi_thread_runtime() {
            tokio::task::block_in_place(|| self.runtime.block_on(call))
        } else {
            self.runtime.block_on(call)
        };
        match response {
            Ok(Response::ReplicaLog {
                start_offset,
                batches,
            }) => Ok(RemoteBatches {
                start_offset,
                batches: batches.into_iter().map(|b| b.into_vec()).collect(),
            }),
            Ok(Response::Error(e)) => Err(io::Error::other(format!(
                "node {source} refused to send its log: {e}"
            ))),
            Ok(other) => Err(io::Error::other(format!(
                "unexpected answer from node {source}: {other:?}"
            ))),
            Err(e) => Err(io::Error::other(format!("node {source} at {addr}: {e}"))),
        }
    }
}

fn on_multi_thread_runtime() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

/// Sleeps the calling thread (a state machine call is synchronous), telling
/// the runtime first when it is one of its workers, so its other tasks move
/// to another thread meanwhile.
pub(crate) fn pause_blocking(pause: std::time::Duration) {
    if on_multi_thread_runtime() {
        tokio::task::block_in_place(|| std::thread::sleep(pause));
    } else {
        std::thread::sleep(pause);
    }
}

/// What a replica answers to `ReadReplicaLog`: its batches from `from` on
/// (whole, CRC checked, at most about `max_bytes` but at least one when
/// `from` is below its end) and where its log starts. Asked for offsets its
/// retention deleted, it answers with no batch and its start offset (rather
/// than an error), so a replica copying the log from the beginning learns
/// where to restart its own (`crate::repair`).
pub(crate) fn read_for_copy(
    log: &sluice_storage::PartitionLog,
    from: u64,
    max_bytes: usize,
) -> Result<RemoteBatches, sluice_storage::StorageError> {
    let start_offset = log.start_offset();
    let batches = if from < start_offset {
        Vec::new()
    } else {
        log.read_raw(from, max_bytes)?
    };
    Ok(RemoteBatches {
        start_offset,
        batches,
    })
}

/// Shared handle the state machine keeps.
pub(crate) type SharedLogSource = Arc<dyn LogSource>;
