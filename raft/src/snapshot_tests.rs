//! A follower that gets a snapshot from the leader it follows, below
//! entries it already appended from that leader, keeps its log and the
//! group goes on (the simulation's `io_progress.rs:126` anomaly; see
//! `Group::log_holds_snapshot`).
//!
//! Deterministic: one real replica (node 2: real RocksDB log, real `Group`
//! and adapter) of a three-voter group {1, 2, 3}; the test plays leader 1
//! (term 1) by handing RPCs to `Group::handle_rpc` as the transport does.
//! Nodes 1 and 3 are unreachable from node 2, so it cannot start an
//! election (pre-vote needs a quorum) and the term stays 1.
//!
//! The state it builds is one the simulation reaches by timing:
//! 1. leader 1 sends node 2 entries 0..=10 with commit 3; node 2 appends
//!    them (its log I/O submitted for leader 1 is at 10, its commit at 3).
//!    In the simulation the answer is lost, so the leader's view of node 2
//!    stays low.
//! 2. the leader commits 6 with node 3, snapshots at 6 and purges below
//!    its view of node 2, so it sends node 2 that snapshot before any
//!    heartbeat carrying a commit of 6 or more reaches node 2.
//! 3. openraft 0.10.0-alpha.37 would install it, submitting log I/O at 6
//!    after 10 (`core/raft_core.rs`, `run_state_machine`): in a debug build
//!    the assertion "expect submitted:(by:<T1-N1:Q>, T1-N1.10) <
//!    new_submitted:(by:<T1-N1:Q>, T1-N1.6)" stops the group; this test
//!    failed so before the fix.
//!
//! What must hold: the snapshot is answered without stopping the group,
//! entries 7..=10 are kept and applied once commit 10 is known (the sum of
//! the commands 1..=10 is 55).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::impls::leader_id_adv::LeaderId;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, Membership, SnapshotMeta, StoredMembership, Vote,
};
use sluice_proto::{RaftRpc, RaftRpcKind};

use crate::log_store::{decode, encode};
use crate::network::{Answer, SnapshotRequest};
use crate::tests::Sum;
use crate::{
    Bytes, CallError, CallFuture, Group, GroupConfig, LogDb, NodeId, RaftTransport, TypeConfig,
};

const GROUP: u64 = 77;
const TERM: u64 = 1;
const LEADER: NodeId = 1;
const ME: NodeId = 2;

/// Node 2 reaches nobody: the leader is played by the test.
struct Nowhere;

impl RaftTransport for Nowhere {
    fn call(&self, target: NodeId, addr: String, _rpc: RaftRpc, _timeout: Duration) -> CallFuture {
        Box::pin(async move {
            Err(CallError::Unreachable {
                node: target,
                addr,
                reason: "played by the test".into(),
            })
        })
    }
}

fn lid(index: u64) -> LogIdOf<TypeConfig> {
    LogId::new(
        LeaderId {
            term: TERM,
            node_id: LEADER,
        },
        index,
    )
}

fn vote() -> VoteOf<TypeConfig> {
    Vote::new_committed(TERM, LEADER)
}

fn membership() -> Membership<NodeId, BasicNode> {
    let voters: BTreeSet<NodeId> = [1, 2, 3].into();
    let nodes: BTreeMap<NodeId, BasicNode> = (1..=3)
        .map(|n| (n, BasicNode::new(format!("node-{n}"))))
        .collect();
    Membership::new(vec![voters], nodes).unwrap()
}

/// Entry 0 is the membership; entry i > 0 carries command i.
fn entries(range: RangeInclusive<u64>) -> Vec<EntryOf<TypeConfig>> {
    range
        .map(|i| Entry {
            log_id: lid(i),
            payload: if i == 0 {
                EntryPayload::Membership(membership())
            } else {
                EntryPayload::Normal(Bytes(Arc::new(i.to_be_bytes().to_vec())))
            },
        })
        .collect()
}

async fn append(
    group: &Group<Sum>,
    prev: Option<u64>,
    range: Option<RangeInclusive<u64>>,
    commit: u64,
) -> Answer<AppendEntriesResponse<TypeConfig>> {
    let req = AppendEntriesRequest::<TypeConfig> {
        vote: vote(),
        prev_log_id: prev.map(lid),
        entries: range.map(entries).unwrap_or_default(),
        leader_commit: Some(lid(commit)),
    };
    let payload = encode(&req).unwrap();
    let call = group.handle_rpc(RaftRpcKind::AppendEntries, &payload);
    let bytes = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("the append is answered");
    decode(&bytes).unwrap()
}

/// Node 2's replica of the group, reaching nobody.
async fn replica(db: Arc<LogDb>, sum: Sum) -> Group<Sum> {
    Group::start(
        db,
        ME,
        GROUP,
        sum,
        &GroupConfig::default(),
        Arc::new(Nowhere),
    )
    .await
    .unwrap()
}

async fn wait(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "{what}: not in time");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_below_the_submitted_log_of_the_same_leader_is_taken_in_stride() {
    let dir = tempfile::tempdir().unwrap();
    let db = LogDb::open(dir.path()).unwrap();
    let sum = Sum::default();
    let group = replica(db, sum.clone()).await;

    // 1. Leader T1-N1 replicates entries 0..=10 while only 3 is committed.
    //    The answer comes once the entries are fsynced, so the AppendEntries
    //    I/O (T1-N1, T1-N1.10) has been submitted (and flushed) by now.
    let answer = append(&group, None, Some(0..=10), 3).await;
    assert!(matches!(answer, Ok(ref r) if r.is_success()), "{answer:?}");
    // Metrics follow the answer, not before it.
    wait("the log's end at 10", || {
        group.status().last_log_index == Some(10)
    })
    .await;
    wait("applying up to the commit point 3", || {
        group.status().last_applied_index == Some(3)
    })
    .await;

    // 2. The same leader sends a snapshot at 6: above the commit point
    //    node 2 knows (3), below the log I/O it submitted (10).
    let meta = SnapshotMeta {
        last_log_id: Some(lid(6)),
        last_membership: StoredMembership::new(Some(lid(0)), membership()),
    };
    let snapshot_sum: u64 = (1..=6).sum();
    let request: SnapshotRequest = (
        vote(),
        meta,
        serde_bytes::ByteBuf::from(snapshot_sum.to_be_bytes().to_vec()),
    );
    let payload = encode(&request).unwrap();
    let call = group.handle_rpc(RaftRpcKind::InstallSnapshot, &payload);
    // Without the fix, openraft's core panicked here in a debug build (see
    // the module doc) and the answer was an error.
    let bytes = tokio::time::timeout(Duration::from_secs(5), call).await;
    let answer: Option<Answer<SnapshotResponse<TypeConfig>>> =
        bytes.ok().map(|b| decode(&b).unwrap());
    let stopped = group.status().stopped;
    assert!(
        matches!(answer, Some(Ok(_))) && stopped.is_none(),
        "installing a snapshot below the submitted log stopped the group: answer {answer:?}, \
         stopped: {stopped:?} (see stderr for openraft's io_progress.rs:126 assertion)"
    );

    // 3. A heartbeat tells node 2 that 10 is committed: it applies 7..=10
    //    from the entries it kept past the snapshot.
    let answer = append(&group, Some(10), None, 10).await;
    assert!(matches!(answer, Ok(ref r) if r.is_success()), "{answer:?}");
    wait("applying up to 10", || {
        group.status().last_applied_index == Some(10)
    })
    .await;
    assert_eq!(sum.0.lock().unwrap().0, (1..=10).sum::<u64>());
    group.shutdown().await;
}

/// A snapshot whose last log id is beyond its sender's vote (a deposed
/// leader's stream sending what it built since, as seen in a fault run) is
/// refused; openraft would assert on it and stop the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_beyond_its_senders_vote_is_refused_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let db = LogDb::open(dir.path()).unwrap();
    let group = replica(db, Sum::default()).await;
    let answer = append(&group, None, Some(0..=10), 3).await;
    assert!(matches!(answer, Ok(ref r) if r.is_success()), "{answer:?}");
    let later = LogId::new(
        LeaderId {
            term: TERM + 1,
            node_id: LEADER,
        },
        12,
    );
    let request: SnapshotRequest = (
        vote(),
        SnapshotMeta {
            last_log_id: Some(later),
            last_membership: StoredMembership::new(Some(lid(0)), membership()),
        },
        serde_bytes::ByteBuf::from(0u64.to_be_bytes().to_vec()),
    );
    let payload = encode(&request).unwrap();
    let bytes = tokio::time::timeout(
        Duration::from_secs(5),
        group.handle_rpc(RaftRpcKind::InstallSnapshot, &payload),
    )
    .await
    .expect("answered");
    let answer: Answer<SnapshotResponse<TypeConfig>> = decode(&bytes).unwrap();
    assert!(
        matches!(&answer, Err(e) if e.contains("refused")),
        "{answer:?}"
    );
    assert_eq!(group.status().stopped, None);
    // The group still takes its leader's entries.
    let answer = append(&group, Some(10), None, 10).await;
    assert!(matches!(answer, Ok(ref r) if r.is_success()), "{answer:?}");
    group.shutdown().await;
}

/// An append whose entries are of a later leader than its vote (no correct
/// leader sends one; openraft would take it silently) is refused, and the
/// replica goes on taking its leader's entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_with_entries_beyond_its_vote_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = LogDb::open(dir.path()).unwrap();
    let group = replica(db, Sum::default()).await;
    let answer = append(&group, None, Some(0..=3), 3).await;
    assert!(matches!(answer, Ok(ref r) if r.is_success()), "{answer:?}");
    // Metrics follow the answer, not before it: wait for them to say 3, so
    // that the check after the refusal reads a settled value.
    wait("the log's end at 3", || {
        group.status().last_log_index == Some(3)
    })
    .await;
    let later = LogId::new(
        LeaderId {
            term: TERM + 1,
            node_id: 3,
        },
        4,
    );
    let req = AppendEntriesRequest::<TypeConfig> {
        vote: vote(),
        prev_log_id: Some(lid(3)),
        entries: vec![Entry {
            log_id: later,
            payload: EntryPayload::Normal(Bytes(Arc::new(4u64.to_be_bytes().to_vec()))),
        }],
        leader_commit: Some(lid(3)),
    };
    let bytes = tokio::time::timeout(
        Duration::from_secs(5),
        group.handle_rpc(RaftRpcKind::AppendEntries, &encode(&req).unwrap()),
    )
    .await
    .expect("answered");
    let answer: Answer<AppendEntriesResponse<TypeConfig>> = decode(&bytes).unwrap();
    assert!(
        matches!(&answer, Err(e) if e.contains("refused")),
        "{answer:?}"
    );
    assert_eq!(group.status().last_log_index, Some(3), "nothing appended");
    let answer = append(&group, Some(3), Some(4..=5), 5).await;
    assert!(matches!(answer, Ok(ref r) if r.is_success()), "{answer:?}");
    wait("the log's end at 5", || {
        group.status().last_log_index == Some(5)
    })
    .await;
    group.shutdown().await;
}

/// A leader's append stream gets what a lone append gets: appends are
/// answered in order once durable, an append carrying entries beyond its
/// vote is refused and ends the stream, so does a frame that is no append,
/// and the replica goes on taking its leader's entries on the next stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_stream_is_checked_append_by_append() {
    use futures::StreamExt;
    use openraft::raft::StreamAppendResult;
    let dir = tempfile::tempdir().unwrap();
    let db = LogDb::open(dir.path()).unwrap();
    let group = replica(db, Sum::default()).await;
    let request =
        |prev: Option<u64>, range: RangeInclusive<u64>| AppendEntriesRequest::<TypeConfig> {
            vote: vote(),
            prev_log_id: prev.map(lid),
            entries: entries(range),
            leader_commit: prev.map(lid),
        };
    let later = LogId::new(
        LeaderId {
            term: TERM + 1,
            node_id: 3,
        },
        4,
    );
    let beyond = AppendEntriesRequest::<TypeConfig> {
        vote: vote(),
        prev_log_id: Some(lid(3)),
        entries: vec![Entry {
            log_id: later,
            payload: EntryPayload::Blank,
        }],
        leader_commit: Some(lid(3)),
    };
    let serve = async |frames: Vec<Vec<u8>>| -> Vec<Answer<StreamAppendResult<TypeConfig>>> {
        let answers = group.serve_append_stream(futures::stream::iter(frames));
        let answers = tokio::time::timeout(Duration::from_secs(5), answers.collect::<Vec<_>>());
        let answers = answers.await.expect("the stream is answered");
        answers.iter().map(|a| decode(a).unwrap()).collect()
    };
    let answers = serve(vec![
        encode(&request(None, 0..=1)).unwrap(),
        encode(&request(Some(1), 2..=3)).unwrap(),
        encode(&beyond).unwrap(),
        encode(&request(Some(3), 4..=4)).unwrap(),
    ])
    .await;
    assert_eq!(answers.len(), 3, "{answers:?}");
    assert_eq!(answers[0], Ok(Ok(Some(lid(1)))));
    assert_eq!(answers[1], Ok(Ok(Some(lid(3)))));
    assert!(
        matches!(&answers[2], Err(e) if e.contains("refused")),
        "{answers:?}"
    );
    wait("the log's end at 3", || {
        group.status().last_log_index == Some(3)
    })
    .await;

    let answers = serve(vec![b"not an append".to_vec()]).await;
    assert!(
        matches!(&answers[..], [Err(e)] if e.contains("undecodable")),
        "{answers:?}"
    );

    let answers = serve(vec![encode(&request(Some(3), 4..=5)).unwrap()]).await;
    assert_eq!(answers, [Ok(Ok(Some(lid(5))))]);
    // The answer says the entries are durable; the metrics that `status`
    // reads are published after it, by openraft's core.
    wait("the log's end at 5", || {
        group.status().last_log_index == Some(5)
    })
    .await;
    group.shutdown().await;
}
