//! Every deadline, interval and wait of a node, in one place, with the
//! relations between them checked when the crate compiles.
//!
//! Raft's own timers (heartbeat, election, quiescence) are in
//! `sluice_raft::timeouts`, checked against these below; the controller's
//! commit deadline is `sluice_controller::COMMIT_WAIT_MAX`; the QUIC ones are
//! `sluice_transport`'s. Values are `Duration`s, so their unit
//! is in their type; a name says what waits (`*_WAIT`, `*_TIMEOUT`: how long
//! before giving up) or what repeats (`*_INTERVAL`, `*_TICK`). A test of the
//! workspace (`cli/tests/it/tidy.rs`) keeps `Duration` constants of the node
//! here, and nowhere else in `spu/src`.

use std::time::Duration;

use sluice_controller::COMMIT_WAIT_MAX;
use sluice_raft::timeouts::{ELECTION_TIMEOUT_MAX, HEARTBEAT_INTERVAL};

// Between nodes.

/// How long a node waits to connect to a peer before calling it unreachable.
pub(crate) const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How much longer than a commit may take a change forwarded to the
/// controller's leader may go unanswered (connecting, sending, the leader's
/// own work).
pub(crate) const FORWARD_SLACK: Duration = Duration::from_secs(2);
/// How long a node keeps a peer's append stream (`sluice_raft`'s pipelined
/// replication) open with no append arriving: well past the sender's own
/// idle close (`sluice_raft::timeouts::APPEND_STREAM_IDLE`), so the sender
/// closes first, yet a stream whose sender vanished is let go.
pub(crate) const APPEND_STREAM_SERVE_IDLE: Duration = Duration::from_secs(30);
/// How long a node remembers that a peer refused an append stream (an
/// older build) and sends it appends one by one without asking again.
pub(crate) const APPEND_STREAM_REFUSAL_MEMORY: Duration = Duration::from_secs(60);
/// A question to a peer while a node starts gets this long.
pub(crate) const STARTUP_ASK_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a joining node keeps trying to announce itself.
pub(crate) const JOIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node waits at start for the controller to have a leader, and
/// then for its own copy of the metadata to recover, before it serves anyway
/// (saying so).
pub(crate) const CONTROLLER_START_WAIT: Duration = Duration::from_secs(10);

// Partitions.

/// How long a replica may take to re-apply its committed log after a start
/// before the reconciler reports it as not ready.
pub(crate) const RECOVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the reconciler retries replicas that failed to start, and
/// repairs that found no source.
pub(crate) const REPLICA_RETRY_INTERVAL: Duration = Duration::from_secs(5);
/// How long one chunk of a replica's log copied from a peer may take.
pub(crate) const LOG_COPY_CHUNK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a replica installing a snapshot keeps asking for a chunk its
/// source did not send (a paused or restarting node, a lost connection)
/// before the install fails (no new try starts after it; one under way may
/// take up to [`LOG_COPY_CHUNK_TIMEOUT`], though a silent peer's connection
/// is usually gone within the transport's 1 s idle timeout). A failed install stops the replica's Raft
/// group, which the reconciler then restarts
/// ([`STOPPED_REPLICA_RESTART_BACKOFF`]); retrying here first spares that
/// for outages of a few seconds.
pub(crate) const SNAPSHOT_COPY_RETRY_FOR: Duration = Duration::from_secs(10);
/// The first wait between two tries of a chunk; it doubles up to
/// [`SNAPSHOT_COPY_BACKOFF_MAX`].
pub(crate) const SNAPSHOT_COPY_BACKOFF_MIN: Duration = Duration::from_millis(100);
pub(crate) const SNAPSHOT_COPY_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A replica whose Raft group stopped (a storage error, an install that
/// could not copy its snapshot's batches) is restarted from its data on
/// disk, at most once per this long, so a failure that repeats costs a
/// restart every few seconds and not a busy loop.
pub(crate) const STOPPED_REPLICA_RESTART_BACKOFF: Duration = Duration::from_secs(5);
/// How long a batch that overtook its producer's previous batch waits on the
/// leader for it before being proposed anyway (and, if the predecessor is
/// still missing when it is applied, rejected as out of order).
pub(crate) const REORDER_WAIT: Duration = Duration::from_millis(20);
/// A producer the leader has not proposed for in this long is not waited
/// for: its entry may date from an earlier term of this node's leadership.
pub(crate) const REORDER_HINT_TTL: Duration = Duration::from_secs(2);

// Membership and reassignment.

/// How often membership and reassignments are checked.
pub(crate) const MEMBERSHIP_TICK: Duration = Duration::from_millis(500);
/// How often a reassignment looks at a new replica's lag while it catches up.
pub(crate) const CATCH_UP_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// A new replica gets this long to catch up before the move is retried.
pub(crate) const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(300);
/// At most one leadership hand-over per partition this often (a preferred
/// replica that cannot keep it must not make leadership flap).
pub(crate) const BALANCE_BACKOFF: Duration = Duration::from_secs(15);

// Admin requests.

/// How long an admin change waits for this node's replicas to follow it.
pub(crate) const RECONCILE_WAIT: Duration = Duration::from_secs(15);
/// How long a node tries to create the topics of its read-only file, and
/// how often.
pub(crate) const SEED_TOPICS_WAIT: Duration = Duration::from_secs(120);
pub(crate) const SEED_TOPICS_RETRY_INTERVAL: Duration = Duration::from_millis(200);

// Consumer offsets and groups.

/// How long one node may take to answer for the partitions it leads, or a
/// partition's leader to apply a group fence.
pub(crate) const OFFSETS_PEER_WAIT: Duration = Duration::from_secs(5);
/// How long a led partition's leadership check may take before an offsets
/// listing leaves the partition out (its caller then reports it as without
/// a leader).
pub(crate) const PARTITION_LEADERSHIP_CHECK_WAIT: Duration = Duration::from_secs(2);
/// How long the group coordinator's check that it still leads the
/// controller may take.
pub(crate) const CONTROLLER_LEADERSHIP_CHECK_WAIT: Duration = Duration::from_secs(2);

// Metrics.

/// How often partition and node state is sampled into gauges.
pub const METRICS_SAMPLE_INTERVAL: Duration = Duration::from_secs(2);

// Connectors (`crate::connectors`).

/// How often a node compares the connectors it runs with those the
/// metadata gives it (it also does at every metadata change).
pub(crate) const CONNECTOR_RECONCILE_INTERVAL: Duration = Duration::from_secs(5);
/// How often the controller's leader looks for connectors whose node it no
/// longer hears from, to move them.
pub(crate) const CONNECTOR_PLACEMENT_INTERVAL: Duration = Duration::from_secs(3);
/// First and longest wait before a connector process that ended is
/// started again; the wait doubles at each end in a row.
pub(crate) const CONNECTOR_RESTART_BACKOFF_MIN: Duration = Duration::from_secs(1);
pub(crate) const CONNECTOR_RESTART_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A process that ran this long before it ended starts the backoff afresh.
pub(crate) const CONNECTOR_HEALTHY_RUN: Duration = Duration::from_secs(60);
/// How long `connector list` waits for the nodes running connectors.
pub(crate) const CONNECTORS_HERE_WAIT: Duration = Duration::from_secs(3);

// What must hold between them.
// The audit topic (`crate::audit_log`).

/// How often the controller leader checks that the audit topic exists (and
/// how long after it starts leading it first does).
pub(crate) const AUDIT_TOPIC_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// How long a batch of audit events is retried (leader changes, elections,
/// the topic being created) before its events are dropped.
pub(crate) const AUDIT_WRITE_DEADLINE: Duration = Duration::from_secs(15);
/// Pause between two attempts at a batch of audit events.
pub(crate) const AUDIT_WRITE_RETRY_INTERVAL: Duration = Duration::from_millis(200);
/// How long the audit topic keeps events (it is also bounded in bytes).
pub(crate) const AUDIT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

const _: () = {
    // Events recorded before the audit topic exists wait for its creation.
    assert!(AUDIT_TOPIC_CHECK_INTERVAL.as_millis() * 2 < AUDIT_WRITE_DEADLINE.as_millis());
    assert!(AUDIT_WRITE_RETRY_INTERVAL.as_millis() * 10 <= AUDIT_WRITE_DEADLINE.as_millis());
    // A node answering for the partitions it leads checks each leadership
    // first: the asker must wait longer than those checks take.
    assert!(PARTITION_LEADERSHIP_CHECK_WAIT.as_millis() < OFFSETS_PEER_WAIT.as_millis());
    // A group heartbeat forwarded to the coordinator starts with its check
    // that it leads the controller: the forwarder waits longer than that.
    assert!(
        CONTROLLER_LEADERSHIP_CHECK_WAIT.as_millis()
            < COMMIT_WAIT_MAX.as_millis() + FORWARD_SLACK.as_millis()
    );
    // A sender closes its idle append stream before the node drops it.
    assert!(
        sluice_raft::timeouts::APPEND_STREAM_IDLE.as_millis() * 2
            <= APPEND_STREAM_SERVE_IDLE.as_millis()
    );
    // A reordered batch waits far less than its hint lives.
    assert!(REORDER_WAIT.as_millis() * 10 <= REORDER_HINT_TTL.as_millis());
    // A start-time question is one of several within a join.
    assert!(STARTUP_ASK_TIMEOUT.as_millis() * 10 <= JOIN_TIMEOUT.as_millis());
    // A failing chunk is tried several times before an install gives up.
    assert!(SNAPSHOT_COPY_BACKOFF_MAX.as_millis() * 5 <= SNAPSHOT_COPY_RETRY_FOR.as_millis());
    assert!(SNAPSHOT_COPY_BACKOFF_MIN.as_millis() < SNAPSHOT_COPY_BACKOFF_MAX.as_millis());
    // A catch-up is polled many times before it is given up.
    assert!(CATCH_UP_POLL_INTERVAL.as_millis() * 100 <= CATCH_UP_TIMEOUT.as_millis());
    // Seed topics are retried many times within their wait.
    assert!(SEED_TOPICS_RETRY_INTERVAL.as_millis() * 100 <= SEED_TOPICS_WAIT.as_millis());
    // Leadership hand-overs are rarer than membership checks.
    assert!(MEMBERSHIP_TICK.as_millis() < BALANCE_BACKOFF.as_millis());
    // A leadership check (a read index: one heartbeat round) may outlast an
    // election, and a sleeping group's wake-up with it.
    assert!(PARTITION_LEADERSHIP_CHECK_WAIT.as_millis() >= 2 * ELECTION_TIMEOUT_MAX.as_millis());
    assert!(CONTROLLER_LEADERSHIP_CHECK_WAIT.as_millis() >= 2 * ELECTION_TIMEOUT_MAX.as_millis());
    // The shortest quiescence a node may be configured with still outlasts
    // a few heartbeats, so a busy stream does not sleep between entries.
    assert!(crate::config::QUIESCE_IDLE_MS_MIN as u128 >= 2 * HEARTBEAT_INTERVAL.as_millis());
    // Restarts back off, and a healthy run outlasts the longest backoff.
    assert!(CONNECTOR_RESTART_BACKOFF_MIN.as_millis() < CONNECTOR_RESTART_BACKOFF_MAX.as_millis());
    assert!(CONNECTOR_HEALTHY_RUN.as_millis() >= CONNECTOR_RESTART_BACKOFF_MAX.as_millis());
};
