//! The producer's bookkeeping per partition: batches filling, waiting and
//! on the wire (see [`super::Batcher`] for how they move).

use std::collections::VecDeque;
use std::time::Duration;

use sluice_proto::{ProducerSeq, Record};
use tokio::time::Instant;

use super::Reply;
use crate::error::Result;
use crate::timeouts::PRODUCER_BACKOFF_MIN;

pub(super) struct Batch {
    pub(super) records: Vec<Record>,
    pub(super) replies: Vec<Reply>,
    pub(super) bytes: usize,
    /// When it is sent at the latest (its linger over).
    pub(super) deadline: Instant,
    /// When its first record came: its delivery timeout counts from here,
    /// time spent waiting to be sent included (as Kafka's
    /// `delivery.timeout.ms`).
    pub(super) created: Instant,
}

/// What may have changed since the batcher last looked at its lanes, and so
/// which lanes [`Batcher::pump`](super::Batcher::pump) visits. A new record
/// changes only its own partition: every other lane is as the last look left
/// it, since only an outcome (a freed slot, a resend, a restart) or time (a
/// lingering batch due, a pause over, a waiting batch expired) can change
/// one. Visiting only that lane keeps a record's cost independent of the
/// partition count (every lane on every record took 3% of the machine
/// producing into 64 partitions).
#[derive(Clone, Copy, Debug)]
pub(super) enum Changed {
    Lane(u32),
    All,
}

/// A numbered batch on the wire (or waiting to be resent) and not yet
/// acknowledged.
pub(super) struct Sent {
    pub(super) producer: ProducerSeq,
    pub(super) records: Vec<Record>,
    pub(super) replies: Vec<Reply>,
    /// The attempt whose failure counts: a failure of an earlier attempt
    /// (still on the wire when this one started) is not news. Any attempt's
    /// success counts: a batch is written once, at one offset.
    pub(super) attempt: u32,
    /// Waiting to be sent again.
    pub(super) resend: bool,
    /// The batch's [`Batch::created`].
    pub(super) created: Instant,
}

/// Outcome of one attempt at sending a batch.
pub(super) struct Outcome {
    pub(super) partition: u32,
    pub(super) producer: ProducerSeq,
    pub(super) attempt: u32,
    pub(super) result: Result<u64>,
}

/// Batches of one partition: the one still filling, the full ones waiting for
/// a slot, and the numbered ones on the wire.
pub(super) struct Lane {
    pub(super) open: Option<Batch>,
    pub(super) closed: VecDeque<Batch>,
    /// Sent and not yet acknowledged, in sequence order.
    pub(super) sent: VecDeque<Sent>,
    /// The identity under which this partition deduplicates our batches:
    /// the producer's id, unless the lane had to start afresh (see
    /// [`Batcher::fail_from`]).
    pub(super) producer_id: u64,
    /// Number of the next batch sent to this partition (idempotence).
    pub(super) next_sequence: u64,
    /// Nothing is sent to this partition before then (backoff after a failure).
    pub(super) paused_until: Option<Instant>,
    pub(super) backoff: Duration,
    /// A batch failed for good: start afresh once the earlier ones are resolved.
    pub(super) restart: bool,
    /// Why the last attempt failed, since the last success: named when a
    /// batch waiting behind the retries expires.
    pub(super) last_error: Option<String>,
}

impl Lane {
    pub(super) fn new(producer_id: u64) -> Self {
        Self {
            open: None,
            closed: VecDeque::new(),
            sent: VecDeque::new(),
            producer_id,
            next_sequence: 0,
            paused_until: None,
            backoff: PRODUCER_BACKOFF_MIN,
            restart: false,
            last_error: None,
        }
    }

    /// When this lane needs the batcher's attention without an outcome:
    /// its lingering batch becomes due, its pause ends, or its oldest
    /// waiting batch expires (`expiry` after it was created).
    pub(super) fn next_wake(&self, now: Instant, expiry: Duration) -> Option<Instant> {
        let oldest_waiting = self.closed.front().or(self.open.as_ref());
        [
            self.open.as_ref().map(|b| b.deadline),
            self.paused_until,
            oldest_waiting.map(|b| b.created + expiry),
        ]
        .into_iter()
        .flatten()
        .filter(|t| *t > now)
        .min()
    }
}
