//! A group's timing and compaction settings, with defaults from
//! `crate::timeouts`.

use crate::timeouts::{ELECTION_TIMEOUT_MAX, ELECTION_TIMEOUT_MIN, HEARTBEAT_INTERVAL};

/// Timing and compaction settings of a group.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot (sync the state machine, purge the log) after this many entries.
    pub snapshot_every_entries: u64,
    /// Entries kept in the log after a snapshot, for lagging followers.
    pub entries_kept_after_snapshot: u64,
    /// Grant votes only while this node is a voter in the group's latest
    /// membership as this replica knows it. For a replica that (re)joins an
    /// existing group with an empty log: until the leader has given it a
    /// configuration naming it a voter, its empty log would let a stale
    /// candidate win (an amnesiac voter). Off for replicas of a new group,
    /// which vote before any configuration reaches them.
    pub vote_only_as_member: bool,
    /// Skip a follower's heartbeat when it acknowledged a request sent
    /// within this long (0 sends every heartbeat): see
    /// `timeouts::HEARTBEAT_SKIP_AFTER_ACK`. Together with the heartbeat
    /// interval it must stay below the shortest election timeout (openraft
    /// refuses the configuration otherwise).
    pub heartbeat_skip_after_ack_ms: u64,
    /// Test builds only: start with openraft's leader restore on, the
    /// configuration that lost acknowledged writes after a power cut (see
    /// `enable_leader_restore` in [`Group::start`]), so that the simulation
    /// (`sim`) can show it still finds that bug. Never set it otherwise.
    #[cfg(test)]
    pub unsafe_leader_restore_for_tests: bool,
}

impl Default for GroupConfig {
    /// The timers of `crate::timeouts`. openraft starts an election once a
    /// follower has heard nothing for the leader's lease (the maximum
    /// election timeout) plus a sampled election timeout: 450-600 ms, after
    /// 9 or more missed heartbeats. That is most of what a producer waits
    /// when a leader dies (failover target: 1 s); heartbeats of awake idle
    /// groups cost 20 small messages per second per follower.
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: HEARTBEAT_INTERVAL.as_millis() as u64,
            election_timeout_min_ms: ELECTION_TIMEOUT_MIN.as_millis() as u64,
            election_timeout_max_ms: ELECTION_TIMEOUT_MAX.as_millis() as u64,
            snapshot_every_entries: 5_000,
            entries_kept_after_snapshot: 1_000,
            vote_only_as_member: false,
            heartbeat_skip_after_ack_ms: crate::timeouts::HEARTBEAT_SKIP_AFTER_ACK.as_millis()
                as u64,
            #[cfg(test)]
            unsafe_leader_restore_for_tests: false,
        }
    }
}

/// How many recent batches of entries openraft's per-group runtime
/// statistics remember (its `log_stage_capacity`; default 1,024). Nothing
/// here reads those statistics, and at the default they were most of an idle
/// replica's memory (see `Group::start`).
pub(crate) const LOG_STAGE_BATCHES_KEPT: u64 = 8;
