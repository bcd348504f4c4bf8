//! A leader that steps down while its snapshot stream to a follower is
//! retrying must not send that follower a snapshot of the next term under
//! its old vote (the corruption smoke run's "snapshot beyond its sender's
//! vote"; see `Peer::full_snapshot`).
//!
//! One real replica, node 1 (real RocksDB log, real `Group` and openraft);
//! the test plays nodes 2 and 3 through the transport and node 1's RPCs:
//! 1. node 3 grants node 1 its votes and accepts its entries, so node 1
//!    leads term 1 and commits; node 1 snapshots often and keeps no log
//!    behind its snapshot. Node 2 answers every append with a conflict, so
//!    node 1 streams it a snapshot; the transport holds that send.
//! 2. node 3 wins term 2 (with node 2) and replicates entries of term 2 to
//!    node 1, which steps down, applies them and snapshots.
//! 3. the held send then fails as a refusal does. openraft 0.10.0-alpha.37
//!    retries at once, reading the newest snapshot (term 2's) and sending it
//!    under the stream's vote of term 1: the mechanism of the smoke run.
//!
//! What must hold: no snapshot reaches the transport whose last log id is
//! beyond the vote it is sent under.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::alias::{LogIdOf, VoteOf};
use openraft::impls::leader_id_adv::LeaderId;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest, VoteResponse};
use openraft::vote::RaftLeaderId;
use openraft::{Entry, EntryPayload, LogId, Vote};
use sluice_proto::{RaftRpc, RaftRpcKind};
use tokio::sync::watch;

use crate::log_store::{decode, encode};
use crate::network::{Answer, SnapshotRequest};
use crate::tests::Sum;
use crate::{
    Bytes, CallError, CallFuture, Group, GroupConfig, LogDb, NodeId, RaftTransport, TypeConfig,
};

const GROUP: u64 = 78;

/// A snapshot send as node 2 saw it: the vote it came under and the
/// snapshot's last log id.
type Sent = (VoteOf<TypeConfig>, Option<LogIdOf<TypeConfig>>);

#[derive(Default)]
struct Played {
    /// Node 3 grants votes (until node 1 must stay a follower).
    node3_votes: std::sync::atomic::AtomicBool,
    /// Node 2 answers appends (once node 1 has purged its log).
    node2_reachable: std::sync::atomic::AtomicBool,
    /// (vote, snapshot's last log id) of every snapshot sent to node 2.
    snapshots: Mutex<Vec<Sent>>,
}

struct Transport {
    played: Arc<Played>,
    /// Flips to true to let the held snapshot send fail.
    release: watch::Receiver<bool>,
}

fn reply<T: serde::Serialize>(answer: T) -> Result<Vec<u8>, CallError> {
    let ok: Answer<T> = Ok(answer);
    Ok(encode(&ok).unwrap())
}

impl RaftTransport for Transport {
    fn call(&self, target: NodeId, addr: String, rpc: RaftRpc, _timeout: Duration) -> CallFuture {
        let played = self.played.clone();
        let mut release = self.release.clone();
        Box::pin(async move {
            let unreachable = || CallError::Unreachable {
                node: target,
                addr: addr.clone(),
                reason: "played by the test".into(),
            };
            match (target, rpc.kind) {
                (3, RaftRpcKind::PreVote | RaftRpcKind::Vote) => {
                    if !played.node3_votes.load(std::sync::atomic::Ordering::SeqCst) {
                        return Err(unreachable());
                    }
                    let req: VoteRequest<TypeConfig> = decode(&rpc.payload).unwrap();
                    reply(VoteResponse::<TypeConfig>::new(req.vote, None, true))
                }
                (3, RaftRpcKind::AppendEntries) => {
                    reply(AppendEntriesResponse::<TypeConfig>::Success)
                }
                (2, RaftRpcKind::AppendEntries) => {
                    let req: AppendEntriesRequest<TypeConfig> = decode(&rpc.payload).unwrap();
                    // Node 2 holds nothing: any append after an entry
                    // conflicts, so node 1 must send it a snapshot.
                    let reachable = played
                        .node2_reachable
                        .load(std::sync::atomic::Ordering::SeqCst);
                    if !reachable || req.prev_log_id.is_none() {
                        Err(unreachable())
                    } else if req.prev_log_id.is_some() {
                        reply(AppendEntriesResponse::<TypeConfig>::Conflict)
                    } else {
                        unreachable!()
                    }
                }
                (2, RaftRpcKind::InstallSnapshot) => {
                    let (vote, meta, _): SnapshotRequest = decode(&rpc.payload).unwrap();
                    let first = {
                        let mut sent = played.snapshots.lock().unwrap();
                        sent.push((vote, meta.last_log_id));
                        sent.len() == 1
                    };
                    if first {
                        // Held until node 1 has stepped down and snapshotted
                        // term 2's entries.
                        let _ = release.wait_for(|r| *r).await;
                    }
                    Err(CallError::Remote {
                        node: 2,
                        reason: "refused (played)".into(),
                    })
                }
                _ => Err(unreachable()),
            }
        })
    }
}

async fn wait(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "{what}: not in time");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Hands node 1 an RPC from the played node 3 and decodes the answer.
async fn from_node3<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
    node1: &Group<Sum>,
    kind: RaftRpcKind,
    req: &Req,
) -> Answer<Resp> {
    let payload = encode(req).unwrap();
    let bytes = tokio::time::timeout(Duration::from_secs(5), node1.handle_rpc(kind, &payload))
        .await
        .expect("node 1 answers");
    decode(&bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_sends_no_snapshot_beyond_its_vote() {
    let dir = tempfile::tempdir().unwrap();
    let db = LogDb::open(dir.path()).unwrap();
    let played = Arc::new(Played::default());
    played
        .node3_votes
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (release_tx, release) = watch::channel(false);
    let config = GroupConfig {
        snapshot_every_entries: 5,
        entries_kept_after_snapshot: 0,
        ..Default::default()
    };
    let transport = Transport {
        played: played.clone(),
        release,
    };
    let node1 = Group::start(db, 1, GROUP, Sum::default(), &config, Arc::new(transport))
        .await
        .unwrap();
    let members: Vec<(NodeId, String)> = (1..=3).map(|n| (n, format!("node-{n}"))).collect();
    node1.initialize(&members).await.unwrap();

    // 1. Node 1 leads term 1 with node 3 and streams node 2 a snapshot.
    wait("node 1 leads", || node1.status().is_leader).await;
    let term1 = node1.status().term;
    for i in 1..=12u64 {
        node1.write(i.to_be_bytes().to_vec()).await.unwrap();
    }
    wait("node 1 snapshots and purges its log", || {
        node1.snapshot_last_log_id().is_some_and(|l| l.index >= 9)
    })
    .await;
    played
        .node2_reachable
        .store(true, std::sync::atomic::Ordering::SeqCst);
    wait("a snapshot send to node 2", || {
        !played.snapshots.lock().unwrap().is_empty()
    })
    .await;
    let (first_vote, first_last) = played.snapshots.lock().unwrap()[0];
    assert_eq!(first_vote.leader_id().term, term1);
    assert!(first_last.is_some_and(|l| l.leader_id.term == term1));

    // 2. Node 3 wins term 2 (with node 2's vote) and replicates to node 1,
    //    which steps down and follows.
    played
        .node3_votes
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let status = node1.status();
    let last = LogId::new(
        LeaderId::<u64, u64>::new(term1, 1),
        status.last_log_index.unwrap(),
    );
    let term2 = term1 + 1;
    let entries = (1..=6)
        .map(|k| Entry {
            log_id: LogId::new(LeaderId::<u64, u64>::new(term2, 3), last.index + k),
            payload: EntryPayload::Normal(Bytes(Arc::new(100u64.to_be_bytes().to_vec()))),
        })
        .collect::<Vec<_>>();
    let top = entries.last().unwrap().log_id;
    let append: Answer<AppendEntriesResponse<TypeConfig>> = from_node3(
        &node1,
        RaftRpcKind::AppendEntries,
        &AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(term2, 3),
            prev_log_id: Some(last),
            entries,
            leader_commit: Some(top),
        },
    )
    .await;
    assert!(matches!(&append, Ok(r) if r.is_success()), "{append:?}");
    // (Metrics trail the answer a little.)
    wait("node 1 steps down", || !node1.status().is_leader).await;
    wait("node 1 snapshots term 2's entries", || {
        node1
            .snapshot_last_log_id()
            .is_some_and(|l| l.leader_id.term == term2)
    })
    .await;

    // 3. The held send fails; whatever the old stream does next, it must
    //    not send term 2's snapshot under term 1's vote.
    release_tx.send(true).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = played.snapshots.lock().unwrap().clone();
    for (vote, last) in &sent {
        assert!(
            !last.is_some_and(|l| l.leader_id > *vote.leader_id()),
            "node 1 sent a snapshot up to {last:?} under vote {vote:?}; all sent: {sent:?}"
        );
    }
    assert_eq!(node1.status().stopped, None);
    node1.shutdown().await;
}
