//! The controller's deadlines, with the relations to Raft's timers that
//! must hold checked when the crate compiles. A test of the workspace
//! (`cli/tests/it/tidy.rs`) keeps `Duration` constants and literals out of
//! the rest of `controller/src`.

use std::time::Duration;

use sluice_raft::timeouts::{ELECTION_TIMEOUT_MAX, HEARTBEAT_INTERVAL, QUIESCE_PROBE_INTERVAL};

/// A node the controller leader has not heard from for this long is left out
/// of new partition assignments.
pub(crate) const LIVENESS_WINDOW: Duration = Duration::from_secs(3);

/// How long a proposed metadata change may wait to be committed before its
/// proposer is told so. A controller leader cut off from the other voters
/// still believes it leads (nothing tells it that they elected another), so
/// without this the change would wait for the client's own timeout with no
/// word of why. Far above a healthy commit (milliseconds to hundreds of ms
/// when fsync stalls), well under clients' request timeouts (30 s). Only the
/// controller has it: a partition's writers are idempotent producers that
/// resend on their own schedule.
pub const COMMIT_WAIT_MAX: Duration = Duration::from_secs(5);

const _: () = {
    // A live node is one that answered a heartbeat within the window: it
    // spans many heartbeats and more than an election.
    assert!(LIVENESS_WINDOW.as_millis() >= 10 * HEARTBEAT_INTERVAL.as_millis());
    assert!(LIVENESS_WINDOW.as_millis() > 2 * ELECTION_TIMEOUT_MAX.as_millis());
    // At the default probe interval, a connector's live node is heard from
    // by the probes between nodes several times within the window, so an
    // idle cluster's connector check need not wake the controller's group.
    assert!(LIVENESS_WINDOW.as_millis() >= 3 * QUIESCE_PROBE_INTERVAL.as_millis());
    // A change waits out a leader election (lease plus timeout) several
    // times over before its proposer is told it did not commit.
    assert!(COMMIT_WAIT_MAX.as_millis() >= 4 * 2 * ELECTION_TIMEOUT_MAX.as_millis());
};
