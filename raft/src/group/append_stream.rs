//! A follower's side of pipelined replication (`crate::network::pipeline`):
//! a leader's appends for this group arrive in log order on one stream and
//! go to openraft's `Raft::stream_append` in that order, which takes the next
//! while the earlier ones are being written and answers each, in order, once
//! it is durable.
//!
//! Each append gets what [`Group::handle_rpc`] gives one that comes alone:
//! an append carrying entries of a later leader than its vote's is refused
//! (and ends the stream), and the group wakes for it unless it is an empty
//! append of the leader the group sleeps under, asked both before and after
//! it is served.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use openraft::raft::{AppendEntriesRequest, StreamAppendResult};

use super::{Group, Vote};
use crate::log_store::{decode, encode};
use crate::network::{Answer, entries_beyond_vote};
use crate::{ReplicatedState, TypeConfig};

/// An append handed to openraft, kept until its answer to decide whether
/// the group wakes for it.
struct Fed {
    quiet: bool,
    empty: bool,
    vote: Vote,
}

impl<S: ReplicatedState> Group<S> {
    /// Serves a leader's append stream: `requests` are encoded appends in
    /// log order; the returned stream yields one encoded
    /// `Answer<StreamAppendResult>` per request, in order, and ends after
    /// the first that is not a success (a conflict, a higher vote, a refused
    /// or undecodable append), or when `requests` ends and all are answered.
    ///
    /// At most openraft's pipeline holds unanswered appends; the caller
    /// bounds what it reads ahead of the answers.
    pub fn serve_append_stream(
        &self,
        requests: impl Stream<Item = Vec<u8>> + Send + 'static,
    ) -> impl Stream<Item = Vec<u8>> + Send + 'static {
        let fed: Arc<Mutex<VecDeque<Fed>>> = Default::default();
        let refusal: Arc<Mutex<Option<String>>> = Default::default();
        let input = {
            let (group, fed, refusal) = (self.clone(), fed.clone(), refusal.clone());
            requests.scan((), move |_, payload| {
                let admitted = group.admit_append(&payload).inspect(|request| {
                    let quiet = group.is_sleepers_append(request.entries.is_empty(), &request.vote);
                    fed.lock().unwrap().push_back(Fed {
                        quiet,
                        empty: request.entries.is_empty(),
                        vote: request.vote,
                    });
                });
                let next = match admitted {
                    Ok(request) => Some(request),
                    Err(reason) => {
                        *refusal.lock().unwrap() = Some(reason);
                        None
                    }
                };
                std::future::ready(next)
            })
        };
        let group = self.clone();
        let answers = self.raft.stream_append(input).map(move |answer| {
            if let Some(f) = fed.lock().unwrap().pop_front() {
                // Asked again once served, as `handle_rpc` does.
                if !(f.quiet || group.is_sleepers_append(f.empty, &f.vote)) {
                    group.wake_up("a Raft message");
                }
            }
            let answer: Answer<StreamAppendResult<TypeConfig>> =
                answer.map_err(|fatal| fatal.to_string());
            encode(&answer).unwrap_or_default()
        });
        let refused = futures::stream::once(async move { refusal.lock().unwrap().take() })
            .filter_map(|reason| {
                let answer = reason.map(|reason| {
                    let a: Answer<StreamAppendResult<TypeConfig>> = Err(reason);
                    encode(&a).unwrap_or_default()
                });
                std::future::ready(answer)
            });
        answers.chain(refused)
    }

    /// Decodes an append, alone or on a stream, and refuses one that
    /// carries entries of a later leader than its vote's. No leader writes
    /// those: openraft's log streams cannot send such a request (they
    /// re-check their leadership after reading the log), but openraft would
    /// accept one without a word, so a peer's bug is refused here rather
    /// than becoming this replica's log.
    pub(super) fn admit_append(
        &self,
        payload: &[u8],
    ) -> Result<AppendEntriesRequest<TypeConfig>, String> {
        let request: AppendEntriesRequest<TypeConfig> = decode(payload).map_err(|e| {
            format!(
                "undecodable AppendEntries request for group {}: {e}",
                self.id
            )
        })?;
        if entries_beyond_vote(&request) {
            tracing::warn!(group = self.id, vote = ?request.vote,
                "refused an append carrying entries beyond its sender's vote");
            return Err(format!(
                "an append under vote {:?} carries entries of a later leader (up to {:?}); refused",
                request.vote,
                request.entries.last().map(|e| e.log_id)
            ));
        }
        Ok(request)
    }
}
