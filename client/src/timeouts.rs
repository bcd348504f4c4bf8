//! Every deadline, interval and backoff of the client, in one place, with
//! the relations between them checked when the crate compiles, and the one
//! backoff the retry loops share ([`Backoff`]). A test of the workspace
//! (`cli/tests/it/tidy.rs`) keeps `Duration` constants and literals out of
//! the rest of `client/src`.

use std::time::Duration;

use sluice_proto::limits::{GROUP_SESSION_TIMEOUT_MS_MAX, GROUP_SESSION_TIMEOUT_MS_MIN};

// Requests.

/// How long one request may take (connecting excluded) before it is given up.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long admin calls keep retrying while the cluster says "not now"
/// (e.g. the controller is electing a leader right after `cluster start`).
/// Opening a fetch and committing an offset retry as long.
pub const ADMIN_RETRY_BUDGET: Duration = Duration::from_secs(10);
/// First and longest pause between those retries (doubling in between).
pub(crate) const RETRY_BACKOFF_FIRST: Duration = Duration::from_millis(50);
pub(crate) const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long a client's dial of one bootstrap node goes on alone before the
/// next node is dialed beside it: a handshake on a live node takes a few
/// milliseconds, one to a dead node lasts the whole connect timeout.
pub(crate) const DIAL_STAGGER: Duration = Duration::from_millis(250);
/// How long a node that did not answer is tried last.
pub(crate) const UNREACHABLE_FOR: Duration = Duration::from_secs(2);
/// How long one node's view of its partitions may take.
pub(crate) const LEADER_VIEW_TIMEOUT: Duration = Duration::from_secs(2);

// Watching a partition's leader (`client/leader_watch.rs`).

/// How long a request waits for its answer before the client starts asking
/// the other replicas about the leader: well above a healthy ack (a few ms),
/// below the election timeout, so the first probe can already see the result.
pub(crate) const LEADER_PROBE_AFTER: Duration = Duration::from_millis(250);
/// How long the connection must have received nothing before a probe: more
/// than the keep-alive interval, so a live idle peer is never suspected.
pub(crate) const LEADER_SILENCE: Duration = Duration::from_millis(250);
/// How often the connection is looked at, and at most how often probed.
pub(crate) const LEADER_PROBE_EVERY: Duration = Duration::from_millis(50);
/// A request this old has the replicas probed even though its connection is
/// alive (a leader cut off from its followers), every
/// [`LEADER_OVERDUE_PROBE_EVERY`].
pub(crate) const LEADER_OVERDUE: Duration = Duration::from_secs(1);
pub(crate) const LEADER_OVERDUE_PROBE_EVERY: Duration = Duration::from_millis(500);
/// How long one probe waits for a node's answer; a node that does not answer
/// this fast tells nothing about the leader anyway.
pub(crate) const LEADER_PROBE_TIMEOUT: Duration = Duration::from_millis(300);

// Producing.

/// How long a record may wait for its acknowledgement, retries included.
pub(crate) const DELIVERY_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// Pauses before a partition's batches are resent after a retriable error.
pub(crate) const PRODUCER_BACKOFF_MIN: Duration = Duration::from_millis(50);
pub(crate) const PRODUCER_BACKOFF_MAX: Duration = Duration::from_secs(2);

// Consuming.

/// How long one interruption may last before the consumer gives up.
pub const RESUME_BUDGET: Duration = Duration::from_secs(30);
/// First and longest pause between a consumer's attempts to resume.
pub(crate) const RESUME_BACKOFF_FIRST: Duration = Duration::from_millis(100);
pub(crate) const RESUME_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How often an auto-committing consumer commits (Kafka's default too).
pub const AUTO_COMMIT_INTERVAL_DEFAULT: Duration = Duration::from_secs(5);

// Consumer groups.

/// A member's session timeout and heartbeat interval unless configured.
pub(crate) const GROUP_SESSION_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
pub(crate) const GROUP_HEARTBEAT_INTERVAL_DEFAULT: Duration = Duration::from_secs(1);
/// First pause between a member's attempts at its first heartbeat.
pub(crate) const GROUP_JOIN_BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// How long a revoked partition waits for its handed-out records to be
/// processed before it is committed as it stands (later records repeat);
/// at most a quarter of the session timeout.
pub(crate) const REVOKE_WAIT_MAX: Duration = Duration::from_secs(5);
/// How often that wait looks at what was processed.
pub(crate) const REVOKE_POLL_INTERVAL: Duration = Duration::from_millis(10);

const fn ms(d: Duration) -> u128 {
    d.as_millis()
}

// What must hold between them.
const _: () = {
    // Several retries fit in a retry budget.
    assert!(4 * ms(RETRY_BACKOFF_MAX) <= ms(ADMIN_RETRY_BUDGET));
    assert!(ms(RETRY_BACKOFF_FIRST) < ms(RETRY_BACKOFF_MAX));
    assert!(ms(UNREACHABLE_FOR) < ms(ADMIN_RETRY_BUDGET));
    // A dead bootstrap node delays the next dial by less than its timeout.
    assert!(ms(DIAL_STAGGER) < ms(sluice_transport::endpoint::DEFAULT_CONNECT_TIMEOUT));
    // A record's delivery may last at least one whole request.
    assert!(ms(DELIVERY_TIMEOUT_DEFAULT) >= ms(REQUEST_TIMEOUT));
    assert!(ms(PRODUCER_BACKOFF_MIN) < ms(PRODUCER_BACKOFF_MAX));
    assert!(4 * ms(RESUME_BACKOFF_MAX) <= ms(RESUME_BUDGET));
    // The leader watch looks more often than it waits, and a probe ends
    // before a request counts as overdue.
    assert!(ms(LEADER_PROBE_EVERY) < ms(LEADER_PROBE_AFTER));
    assert!(ms(LEADER_PROBE_EVERY) < ms(LEADER_SILENCE));
    assert!(ms(LEADER_PROBE_TIMEOUT) < ms(LEADER_OVERDUE));
    assert!(ms(LEADER_OVERDUE_PROBE_EVERY) <= ms(LEADER_OVERDUE));
    // A group's defaults are within what nodes accept, and a member
    // heartbeats several times per session.
    assert!(ms(GROUP_SESSION_TIMEOUT_DEFAULT) >= GROUP_SESSION_TIMEOUT_MS_MIN as u128);
    assert!(ms(GROUP_SESSION_TIMEOUT_DEFAULT) <= GROUP_SESSION_TIMEOUT_MS_MAX as u128);
    assert!(3 * ms(GROUP_HEARTBEAT_INTERVAL_DEFAULT) <= ms(GROUP_SESSION_TIMEOUT_DEFAULT));
    assert!(ms(GROUP_JOIN_BACKOFF_FIRST) < ms(RETRY_BACKOFF_MAX));
    assert!(ms(REVOKE_POLL_INTERVAL) < ms(REVOKE_WAIT_MAX));
    // An auto-commit comes more than once per default session.
    assert!(ms(AUTO_COMMIT_INTERVAL_DEFAULT) < ms(GROUP_SESSION_TIMEOUT_DEFAULT));
};

/// A pause that doubles after each wait up to a bound: the one backoff of
/// the client's retry loops.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    first: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(first: Duration, max: Duration) -> Self {
        Self {
            next: first,
            first,
            max,
        }
    }

    /// The pause the next [`Self::wait`] takes.
    pub(crate) fn next(&self) -> Duration {
        self.next
    }

    /// Sleeps for the current pause, then doubles it (up to the bound).
    pub(crate) async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.max);
    }

    /// Back to the first pause (after a success).
    pub(crate) fn reset(&mut self) {
        self.next = self.first;
    }
}
