//! Every timer of a Raft group and of quiescence, in one place, with the
//! relations between them checked when the crate compiles.
//!
//! [`crate::GroupConfig`] and [`crate::QuiesceConfig`] take their defaults
//! from here (a node may override some per group); the other deadlines are
//! fixed. A test of the workspace (`cli/tests/it/tidy.rs`) keeps `Duration`
//! constants and literals out of the rest of `raft/src` (tests and the
//! simulation excepted).

use std::time::Duration;

/// A leader heartbeats each follower this often.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(50);
/// A follower that has heard nothing for the leader's lease (the maximum)
/// plus a sampled election timeout between these two starts an election:
/// 450-600 ms, after 9 or more missed heartbeats.
pub const ELECTION_TIMEOUT_MIN: Duration = Duration::from_millis(150);
pub const ELECTION_TIMEOUT_MAX: Duration = Duration::from_millis(300);

/// How long a write waits for a newly elected leader's lease.
pub(crate) const LEASE_WAIT: Duration = Duration::from_secs(3);
/// How long [`crate::Group::live_members_now`] waits for members to
/// acknowledge a heartbeat: a few heartbeat intervals and round trips, so a
/// woken leader hears from every live member, while a dead one costs its
/// caller at most this much.
pub(crate) const LIVENESS_WAIT: Duration = Duration::from_millis(500);
/// How often a waiting caller looks again at a group's state (a leader just
/// elected, members' heartbeats).
pub(crate) const STATE_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// A snapshot may be large: its transfer gets at least this long, more than
/// any other RPC.
pub(crate) const SNAPSHOT_RPC_MIN: Duration = Duration::from_secs(30);
/// The slowest a follower may take in an AppendEntries (receive, decode,
/// write to its log, fsync, answer) before its leader gives up on the RPC:
/// openraft gives each one a deadline of about a heartbeat interval whatever
/// it carries, and a 16 MiB record took longer than that to land on a
/// follower, so the RPC failed and was sent again forever (the partition
/// took no more writes). An RPC gets its deadline plus its payload at this
/// rate, which only a stalled follower is slower than.
pub(crate) const APPEND_BYTES_PER_SEC_MIN: u64 = 8 * 1024 * 1024;

/// How long a group's append stream to a follower stays open with nothing
/// to send (`network::pipeline`): long enough that a partition taking a
/// write every few seconds keeps its stream, short enough that the streams
/// of groups gone idle are soon closed (a node keeps a bounded number open
/// to each other node).
pub const APPEND_STREAM_IDLE: Duration = Duration::from_secs(5);

/// How recently a group's append stream must have been parked (its session
/// ended with every append answered, `network::pipeline`) for the next
/// session to that follower to take it over: half of
/// [`APPEND_STREAM_IDLE`], after which a transport closes a stream that
/// carries nothing, so a stream taken over is not being closed at the same
/// moment.
pub const PARKED_REUSE_WINDOW: Duration =
    Duration::from_millis(APPEND_STREAM_IDLE.as_millis() as u64 / 2);

/// The deadline of an AppendEntries of `payload_bytes`: openraft's `base`
/// plus the payload at [`APPEND_BYTES_PER_SEC_MIN`].
pub(crate) fn append_entries_deadline(base: Duration, payload_bytes: usize) -> Duration {
    base + Duration::from_secs_f64(payload_bytes as f64 / APPEND_BYTES_PER_SEC_MIN as f64)
}

/// A leader skips the heartbeat to a follower that acknowledged a request
/// (an append or a heartbeat) sent within this long: under writes the
/// appends say all a heartbeat says, and refresh the leader's lease from
/// their own sending time (openraft's `heartbeat_min_interval`).
pub const HEARTBEAT_SKIP_AFTER_ACK: Duration = HEARTBEAT_INTERVAL;

/// How long heartbeats bound for one node are gathered before they are sent
/// together (`crate::Coalescing`): a small part of the interval, so a
/// heartbeat arrives about as soon as alone.
pub const HEARTBEAT_COALESCE_WINDOW: Duration = Duration::from_millis(5);

/// Quiescence (see `crate::quiesce`): how often a node looks for idle groups
/// that it leads (half the idle period, so a group sleeps within 1.5 of it).
pub const QUIESCE_SWEEP_INTERVAL: Duration = Duration::from_millis(150);
/// How long a group must have taken no new entry before it may sleep. 2 s
/// until waking a group cost a write 20-30 ms (its leader's lease had to be
/// renewed by the resumed ticks); since a write renews it at once, sleeping
/// after 300 ms made producing into 64 and 256 partitions 1.07x and 1.16x
/// as fast at 0.91x and 0.83x the CPU per record (BENCHMARKS.md, "Sleeping
/// sooner"): groups that sticky producers leave for a few hundred
/// milliseconds no longer heartbeat meanwhile.
pub const QUIESCE_IDLE_FOR: Duration = Duration::from_millis(300);
/// How long a leader that asked for a leadership transfer waits for it
/// before asking again (see `Group::transfer_leader`).
pub const LEADER_TRANSFER_RETRY: Duration = Duration::from_secs(1);
/// How many times it asks again before it gives up and says so.
pub const LEADER_TRANSFER_ATTEMPTS_MAX: u32 = 30;
/// How long a leader handing its leadership over still tells the members
/// asleep under it that it leads (see `Group::transfer_leader`): long
/// enough for the first request and two more to reach a live target, which
/// campaigns within milliseconds of one; after that, the members wake and
/// elect whoever they can, so a target that died does not leave the group
/// without a leader that takes writes.
pub const LEADER_TRANSFER_CONFIRM_WINDOW: Duration = Duration::from_secs(3);

/// How often a node asks the leaders of its sleeping groups whether they
/// still lead them, in the background. 150 ms until session 29: the probes
/// were then two thirds of an idle cluster's CPU (0.019 cores for 64 idle
/// partitions against 0.0087 at 500 ms, BENCHMARKS.md), and a doubted leader
/// is now asked at once ([`QUIESCE_RECHECK_FRESH`]), so the interval no
/// longer sets how soon a write finds a dead leader of an idle partition.
/// 600 ms until session 37, when 64 idle partitions measured 0.011-0.013
/// cores at 600 ms against 0.008-0.009 at 1 s (BENCHMARKS.md, session 37):
/// the probes and their acknowledgements are most of what an idle cluster
/// sends. What a longer interval costs is how soon a partition that nobody
/// writes to or reads replaces a dead leader by itself (the silence below).
pub const QUIESCE_PROBE_INTERVAL: Duration = Duration::from_millis(900);
/// Deadline of one background probe (twice the interval, as a set
/// interval gets).
pub const QUIESCE_PROBE_TIMEOUT: Duration = Duration::from_millis(1_800);
/// Deadline of one quiesce request. Short, not the probes' deadline: a
/// sweep asks 16 groups at a time and the next sweep waits for it, so
/// requests to a member that just died (it is left out once silent for
/// the leader silence) hold the sweeps up to this each.
pub const QUIESCE_REQUEST_TIMEOUT: Duration = Duration::from_millis(300);
/// A sleeping group wakes once its leader's node has not confirmed it for
/// this long, whether or not anyone needs it (10/3 of the probe interval).
pub const QUIESCE_LEADER_SILENCE: Duration = Duration::from_millis(3_000);
/// A sleeping group's leader doubted by a client or a campaigning member
/// (`crate::Quiescence::recheck`) is asked at once unless its node confirmed
/// the group within this.
pub const QUIESCE_RECHECK_FRESH: Duration = Duration::from_millis(150);
/// Deadline of that question.
pub const QUIESCE_RECHECK_TIMEOUT: Duration = Duration::from_millis(300);
/// A doubted group wakes when its leader's node did not answer the question
/// and has confirmed nothing for this long: the silence that woke a
/// sleeping group before session 29, when probes went every 150 ms. One late
/// answer alone must not wake it: the fault suite's partition runs (64
/// sparsely written partitions, debug builds) saw twice the leader changes
/// while a single unanswered question of 150 ms woke the group, each woken
/// member granting the votes a sleeping one refuses.
pub const QUIESCE_RECHECK_SILENCE: Duration = Duration::from_millis(500);

const fn ms(d: Duration) -> u128 {
    d.as_millis()
}

// What must hold between them.
const _: () = {
    // Gathering heartbeats delays each by a small part of the interval.
    assert!(10 * ms(HEARTBEAT_COALESCE_WINDOW) <= ms(HEARTBEAT_INTERVAL));
    // A follower misses several heartbeats before it campaigns.
    assert!(ms(ELECTION_TIMEOUT_MIN) >= 3 * ms(HEARTBEAT_INTERVAL));
    assert!(ms(ELECTION_TIMEOUT_MAX) > ms(ELECTION_TIMEOUT_MIN));
    // A write waits out a whole election (lease plus timeout) and more.
    assert!(ms(LEASE_WAIT) > 2 * (ms(ELECTION_TIMEOUT_MAX) + ms(ELECTION_TIMEOUT_MAX)));
    // A liveness check hears several heartbeats.
    assert!(ms(LIVENESS_WAIT) >= 5 * ms(HEARTBEAT_INTERVAL));
    assert!(ms(STATE_POLL_INTERVAL) < ms(HEARTBEAT_INTERVAL));
    // With heartbeats skipped after acknowledged appends, a follower still
    // hears from its leader (a heartbeat, plus a tick of openraft's loop:
    // 13/64 of the interval) before its shortest election timeout.
    assert!(
        ms(HEARTBEAT_SKIP_AFTER_ACK) + ms(HEARTBEAT_INTERVAL) + ms(HEARTBEAT_INTERVAL) * 13 / 64
            < ms(ELECTION_TIMEOUT_MIN)
    );
    // A sleeping follower whose leader is doubted finds a dead one out no
    // later than an awake follower would miss it (lease + the longest
    // election timeout). Undoubted, it probes the leader more than once
    // within the silence that wakes it, each probe ending in it.
    assert!(ms(QUIESCE_RECHECK_SILENCE) <= 2 * ms(ELECTION_TIMEOUT_MAX));
    assert!(ms(QUIESCE_RECHECK_FRESH) + ms(QUIESCE_RECHECK_TIMEOUT) <= ms(QUIESCE_RECHECK_SILENCE));
    assert!(2 * ms(QUIESCE_PROBE_INTERVAL) < ms(QUIESCE_LEADER_SILENCE));
    assert!(ms(QUIESCE_PROBE_TIMEOUT) < ms(QUIESCE_LEADER_SILENCE));
    // A group is idle for longer than a sweep comes around.
    assert!(ms(QUIESCE_IDLE_FOR) > ms(QUIESCE_SWEEP_INTERVAL));
    // A parked append stream is taken over well before a transport closes
    // it as idle.
    assert!(2 * ms(PARKED_REUSE_WINDOW) <= ms(APPEND_STREAM_IDLE));
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_append_gets_time_for_its_bytes_and_a_small_one_keeps_its_deadline() {
        let base = HEARTBEAT_INTERVAL;
        assert!(append_entries_deadline(base, 1024) < base + Duration::from_millis(1));
        let largest = sluice_proto::limits::FRAME_SIZE_BYTES_MAX;
        let deadline = append_entries_deadline(base, largest);
        assert!(deadline >= base + Duration::from_secs(4), "{deadline:?}");
        assert!(deadline < ELECTION_TIMEOUT_MIN * 40, "{deadline:?}");
    }
}
