//! Fewer, fuller Raft entries: the produce batches that reach a partition's
//! leader while [`PROPOSALS_IN_FLIGHT_MAX`] of its proposals are in flight
//! wait, and go into the next entry together (`PartitionCommand::AppendMany`).
//!
//! Why: a Raft entry costs about the same whatever it carries (openraft's
//! bookkeeping, a RocksDB write, replication, apply, a segment batch and an
//! index entry on every replica), and when producers spread over many
//! partitions each batch gets small: at 64 partitions an entry carried about
//! 3 records where at one it carried 50, and the cluster's CPU per record
//! was 3.4 times as high (BENCHMARKS.md, "Throughput as partitions grow").
//! Coalescing makes entries as full as the load allows, without a linger:
//! at low load a batch finds a free slot and is proposed at once, alone.
//!
//! Order: batches are proposed in the order they were queued (the proposer
//! hands each entry to Raft before it takes the next), and a producer's
//! batches are queued in sequence order as far as the leader can tell
//! (`crate::partition::ProposalOrder`). What is written is decided when the
//! entry is applied, the same way on every replica.
//!
//! Bounds: an entry holds at most [`ENTRY_BATCHES_MAX`] batches and
//! [`ENTRY_BYTES_MAX`] bytes of records (a larger single batch goes alone);
//! the queue holds at most one batch per produce request being served,
//! which the server bounds per connection and node.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use sluice_proto::limits::PRODUCE_BATCH_RECORDS_MAX;
use sluice_proto::{ProducerSeq, Record};
use sluice_raft::{Group, WriteError};
use tokio::sync::{Notify, oneshot};

use crate::partition::{
    AppendOutcome, AppendOutcomes, DECODE_BYTES_MAX, PartitionCommand, PartitionStateMachine,
    SubBatch, decode, encode,
};

/// Proposals of one partition in flight at once. Each one is a Raft round
/// (an fsync on the leader and on a majority); while they are out, batches
/// gather for the next. One would leave the leader idle while an entry
/// travels; more make entries smaller again.
pub(crate) const PROPOSALS_IN_FLIGHT_MAX: usize = 2;
/// Bytes of records (keys and values) that batches proposed together may
/// hold; a single batch above it is proposed alone. Well inside a Raft
/// message (`FRAME_SIZE_BYTES_MAX`), and small enough that one entry does
/// not hold up the followers' appends of other groups.
pub(crate) const ENTRY_BYTES_MAX: usize = 1024 * 1024;
/// Batches proposed together in one entry at most.
pub(crate) const ENTRY_BATCHES_MAX: usize = 256;

/// A batch waiting to be proposed, and where its outcome goes.
struct Pending {
    records: Vec<Record>,
    producer: Option<ProducerSeq>,
    bytes: usize,
    reply: oneshot::Sender<Result<AppendOutcome, WriteError>>,
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<Pending>,
    /// Whether a proposer task is running (it exits when nothing is queued
    /// or in flight, so an idle partition has none).
    running: bool,
    /// Off (`coalesce_proposals = false` in the node's configuration): every
    /// batch is an entry of its own and is proposed at once, as before
    /// coalescing existed (the baseline of `scripts/bench-scale.sh`).
    off: bool,
}

/// Proposes one partition's produce batches, coalescing those that wait.
#[derive(Default)]
pub(crate) struct Proposer {
    queue: Mutex<Queue>,
    /// Woken when a batch is queued while the proposer task runs.
    queued: Notify,
}

impl Proposer {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a batch of `bytes` bytes of records for `group`'s next entry
    /// and returns where its outcome arrives. Synchronous, so that the
    /// order of calls is the order of the entries.
    pub(crate) fn enqueue(
        self: &Arc<Self>,
        group: &Group<PartitionStateMachine>,
        batch: (Vec<Record>, Option<ProducerSeq>, usize),
        coalesce: bool,
    ) -> oneshot::Receiver<Result<AppendOutcome, WriteError>> {
        let (records, producer, bytes) = batch;
        let (reply, outcome) = oneshot::channel();
        let mut queue = self.queue();
        queue.off = !coalesce;
        queue.pending.push_back(Pending {
            records,
            producer,
            bytes,
            reply,
        });
        if queue.running {
            self.queued.notify_one();
        } else {
            queue.running = true;
            tokio::spawn(self.clone().drive(group.clone()));
        }
        outcome
    }

    /// Proposes queued batches while fewer than [`PROPOSALS_IN_FLIGHT_MAX`]
    /// proposals are out, until nothing is queued or in flight.
    async fn drive(self: Arc<Self>, group: Group<PartitionStateMachine>) {
        let mut in_flight = FuturesUnordered::new();
        loop {
            let slots = match self.queue().off {
                true => usize::MAX,
                false => PROPOSALS_IN_FLIGHT_MAX,
            };
            while in_flight.len() < slots {
                let Some(entry) = self.take() else { break };
                let mut proposal = Box::pin(propose(group.clone(), entry));
                // The first poll hands the entry to Raft: here, in queue
                // order, before the next entry is taken.
                if let Poll::Pending = futures::poll!(proposal.as_mut()) {
                    in_flight.push(proposal);
                }
            }
            if in_flight.is_empty() {
                let mut queue = self.queue();
                if queue.pending.is_empty() {
                    queue.running = false;
                    return;
                }
                continue;
            }
            let queued = self.queued.notified();
            tokio::select! {
                _ = in_flight.next() => {}
                _ = queued, if in_flight.len() < slots => {}
            }
        }
    }

    /// The batches of the next entry: the oldest queued one, and those
    /// behind it while they fit the entry's bounds.
    fn take(&self) -> Option<Vec<Pending>> {
        let mut queue = self.queue();
        let first = queue.pending.pop_front()?;
        let (mut bytes, mut records) = (first.bytes, first.records.len());
        let mut entry = vec![first];
        let batches_max = if queue.off { 1 } else { ENTRY_BATCHES_MAX };
        while let Some(next) = queue.pending.front() {
            if entry.len() >= batches_max
                || bytes + next.bytes > ENTRY_BYTES_MAX
                || records + next.records.len() > PRODUCE_BATCH_RECORDS_MAX
            {
                break;
            }
            bytes += next.bytes;
            records += next.records.len();
            entry.extend(queue.pending.pop_front());
        }
        Some(entry)
    }
}

/// Proposes `entry` as one Raft entry and answers each of its batches.
async fn propose(group: Group<PartitionStateMachine>, mut entry: Vec<Pending>) {
    crate::metrics::proposed(entry.len());
    if entry.len() == 1 {
        let Pending {
            records,
            producer,
            reply,
            ..
        } = entry.remove(0);
        let command = encode(&PartitionCommand::Append { records, producer });
        let outcome = group.write(command).await.map(|answer| decode_one(&answer));
        let _ = reply.send(outcome);
        return;
    }
    let mut replies = Vec::with_capacity(entry.len());
    let batches = entry
        .into_iter()
        .map(|p| {
            replies.push(p.reply);
            SubBatch {
                records: p.records,
                producer: p.producer,
            }
        })
        .collect();
    let command = encode(&PartitionCommand::AppendMany { batches });
    match group.write(command).await {
        Ok(answer) => {
            let outcomes = decode_many(&answer, replies.len());
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// The state machine's answer to an `Append`.
fn decode_one(answer: &[u8]) -> AppendOutcome {
    decode::<AppendOutcome>(answer).unwrap_or_else(|e| AppendOutcome::Failed {
        reason: format!("undecodable answer of the partition: {e}"),
    })
}

/// The state machine's answer to an `AppendMany` of `n` batches: one
/// outcome each, or one for all (an entry the state machine did not judge
/// batch by batch: undecodable, or re-applied).
fn decode_many(answer: &[u8], n: usize) -> Vec<AppendOutcome> {
    let whole = |limit| {
        sluice_proto::encoding::from_slice_whole::<AppendOutcomes>(answer, limit)
            .map_err(|e| e.to_string())
    };
    match whole(DECODE_BYTES_MAX) {
        Ok(outcomes) if outcomes.len() == n => outcomes,
        Ok(outcomes) => vec![
            AppendOutcome::Failed {
                reason: format!(
                    "the partition answered {} outcomes for {n} batches; this is a bug, please report it",
                    outcomes.len()
                ),
            };
            n
        ],
        Err(_) => {
            let one =
                sluice_proto::encoding::from_slice_whole::<AppendOutcome>(answer, DECODE_BYTES_MAX)
                    .unwrap_or_else(|e| AppendOutcome::Failed {
                        reason: format!("undecodable answer of the partition: {e}"),
                    });
            vec![one; n]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(proposer: &Proposer, batches: &[(usize, usize)]) {
        let mut queue = proposer.queue();
        for &(records, bytes) in batches {
            let record = Record {
                key: None,
                value: Vec::new(),
                timestamp_ms: 0,
            };
            queue.pending.push_back(Pending {
                records: vec![record; records],
                producer: None,
                bytes,
                reply: oneshot::channel().0,
            });
        }
    }

    fn entries(proposer: &Proposer) -> Vec<usize> {
        std::iter::from_fn(|| proposer.take().map(|e| e.len())).collect()
    }

    #[test]
    fn waiting_batches_share_entries_within_the_bounds() {
        let proposer = Proposer::default();
        assert!(proposer.take().is_none());
        // Small batches: as many as an entry may hold, then the rest.
        queue(&proposer, &vec![(1, 100); ENTRY_BATCHES_MAX + 3]);
        assert_eq!(entries(&proposer), [ENTRY_BATCHES_MAX, 3]);
        // By bytes: a batch that would pass the bound starts the next
        // entry, and one larger than the bound goes alone.
        let half = ENTRY_BYTES_MAX / 2;
        queue(
            &proposer,
            &[
                (1, half),
                (1, half),
                (1, 1),
                (1, ENTRY_BYTES_MAX * 4),
                (1, 1),
            ],
        );
        assert_eq!(entries(&proposer), [2, 1, 1, 1]);
        // By records: never more than one batch may hold.
        let records = PRODUCE_BATCH_RECORDS_MAX / 2 + 1;
        queue(&proposer, &[(records, 10), (records, 10)]);
        assert_eq!(entries(&proposer), [1, 1]);
    }
}
