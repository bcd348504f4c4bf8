//! The Raft layer's decoders, fed mutated input for a bounded time (see
//! `sluice-fuzzing`): RPCs a peer sends, the answers it returns, and log
//! entries and metadata read back from disk.

use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::impls::leader_id_adv::LeaderId;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::vote::RaftLeaderId;
use openraft::{Entry, EntryPayload, LogId, SnapshotMeta, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::log_store::{decode, encode};
use crate::network::{Answer, SnapshotRequest};
use crate::{Bytes, TypeConfig};

fn log_id(term: u64, index: u64) -> LogIdOf<TypeConfig> {
    LogId::new(LeaderId::<u64, u64>::new(term, 1), index)
}

fn entries() -> Vec<EntryOf<TypeConfig>> {
    (3..=6)
        .map(|i| Entry {
            log_id: log_id(2, i),
            payload: if i % 2 == 0 {
                EntryPayload::Blank
            } else {
                EntryPayload::Normal(Bytes(std::sync::Arc::new(vec![i as u8; 7])))
            },
        })
        .collect()
}

fn append_request() -> AppendEntriesRequest<TypeConfig> {
    AppendEntriesRequest {
        vote: vote(),
        prev_log_id: Some(log_id(2, 2)),
        entries: entries(),
        leader_commit: Some(log_id(2, 4)),
    }
}

fn vote() -> VoteOf<TypeConfig> {
    Vote::new(3, 2)
}

/// Decodes `T` from each input; whatever decodes must encode again.
fn target<T: Serialize + DeserializeOwned>(name: &str, seeds: Vec<Vec<u8>>) {
    sluice_fuzzing::run(name, &seeds, |input| {
        if let Ok(value) = decode::<T>(input) {
            encode(&value).expect("a decoded value encodes");
        }
    });
}

#[test]
fn fuzz_rpcs_from_peers() {
    let append = append_request();
    let empty = AppendEntriesRequest::<TypeConfig> {
        vote: vote(),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    };
    target::<AppendEntriesRequest<TypeConfig>>(
        "raft::AppendEntries",
        vec![encode(&append).unwrap(), encode(&empty).unwrap()],
    );
    let request = VoteRequest::<TypeConfig>::new(vote(), Some(log_id(2, 9)));
    target::<VoteRequest<TypeConfig>>("raft::Vote", vec![encode(&request).unwrap()]);
    let snapshot: SnapshotRequest = (
        vote(),
        SnapshotMeta {
            last_log_id: Some(log_id(2, 9)),
            ..Default::default()
        },
        serde_bytes::ByteBuf::from(vec![5; 40]),
    );
    target::<SnapshotRequest>("raft::InstallSnapshot", vec![encode(&snapshot).unwrap()]);
}

#[test]
fn fuzz_answers_from_peers() {
    let appended: Answer<AppendEntriesResponse<TypeConfig>> = Ok(AppendEntriesResponse::Success);
    let refused: Answer<AppendEntriesResponse<TypeConfig>> = Err("no".into());
    let higher: Answer<AppendEntriesResponse<TypeConfig>> =
        Ok(AppendEntriesResponse::HigherVote(vote()));
    target::<Answer<AppendEntriesResponse<TypeConfig>>>(
        "raft::AppendEntries answer",
        vec![
            encode(&appended).unwrap(),
            encode(&refused).unwrap(),
            encode(&higher).unwrap(),
        ],
    );
    let voted: Answer<VoteResponse<TypeConfig>> =
        Ok(VoteResponse::new(vote(), Some(log_id(2, 9)), true));
    target::<Answer<VoteResponse<TypeConfig>>>("raft::Vote answer", vec![encode(&voted).unwrap()]);
    let installed: Answer<SnapshotResponse<TypeConfig>> = Ok(SnapshotResponse { vote: vote() });
    target::<Answer<SnapshotResponse<TypeConfig>>>(
        "raft::InstallSnapshot answer",
        vec![encode(&installed).unwrap()],
    );
}

#[test]
fn fuzz_what_is_read_back_from_disk() {
    target::<EntryOf<TypeConfig>>(
        "raft::log entry",
        entries().iter().map(|e| encode(e).unwrap()).collect(),
    );
    target::<Option<LogIdOf<TypeConfig>>>(
        "raft::log id",
        vec![encode(&Some(log_id(4, 100))).unwrap()],
    );
    target::<Option<VoteOf<TypeConfig>>>("raft::vote", vec![encode(&Some(vote())).unwrap()]);
}

/// Checks `samples` against the golden file `name` (see
/// `sluice_fuzzing::golden`) with this crate's codec.
fn golden<T: Serialize + DeserializeOwned + std::fmt::Debug>(name: &str, samples: &[T]) {
    sluice_fuzzing::golden::check(
        env!("CARGO_MANIFEST_DIR"),
        name,
        samples,
        |v| encode(v).unwrap(),
        |b| decode(b).map_err(|e| e.to_string()),
    );
}

/// Log entries, votes and committed points stay readable from the disk of
/// an earlier build, and RPCs from a peer of the same protocol version.
#[test]
fn golden_log_and_rpcs() {
    let mut stored = entries();
    let voters = [1u64, 2, 3]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>();
    let nodes =
        [1u64, 2, 3, 4].map(|id| (id, openraft::BasicNode::new(format!("127.0.0.1:900{id}"))));
    stored.push(Entry {
        log_id: log_id(u64::MAX >> 1, 70_000),
        payload: EntryPayload::Membership(
            openraft::Membership::new(
                vec![voters],
                nodes
                    .into_iter()
                    .collect::<std::collections::BTreeMap<_, _>>(),
            )
            .unwrap(),
        ),
    });
    golden("log-entries", &stored);
    golden(
        "log-ids",
        &[None, Some(log_id(4, 100)), Some(log_id(300, 1 << 33))],
    );
    golden(
        "votes",
        &[None, Some(vote()), Some(Vote::new_committed(1 << 20, 3))],
    );
    golden("append-entries", &[append_request()]);
    golden(
        "vote-requests",
        &[VoteRequest::<TypeConfig>::new(vote(), Some(log_id(2, 9)))],
    );
    golden(
        "append-answers",
        &[
            Ok(AppendEntriesResponse::<TypeConfig>::Success),
            Err("no".to_string()),
            Ok(AppendEntriesResponse::HigherVote(vote())),
            Ok(AppendEntriesResponse::Conflict),
        ],
    );
    let snapshot: SnapshotRequest = (
        vote(),
        SnapshotMeta {
            last_log_id: Some(log_id(2, 9)),
            ..Default::default()
        },
        serde_bytes::ByteBuf::from(vec![5; 40]),
    );
    golden("install-snapshot", &[snapshot]);
}
