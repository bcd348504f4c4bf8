//! Consumer offsets and consumer groups on the wire: commits, the
//! offsets nodes report, and a group member's heartbeat and assignment.

use serde::{Deserialize, Serialize};

/// How a consumer group's partitions are spread over its members.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AssignmentStrategy {
    /// Members (by id) take contiguous ranges of partitions.
    Range,
    /// Partitions are dealt to members (by id) in turn.
    RoundRobin,
    /// Each member keeps what it reads, up to its fair share; only the
    /// excess moves (fewest partitions change hands on a rebalance).
    #[default]
    Sticky,
}

/// See [`Request::GroupHeartbeat`](crate::Request::GroupHeartbeat).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupHeartbeat {
    pub group: String,
    pub topic: String,
    /// Picked at random by each member when it starts; never reused.
    pub member: String,
    pub strategy: AssignmentStrategy,
    /// How long the coordinator waits for the next heartbeat before it
    /// drops the member and gives its partitions to others. The member
    /// stops reading by itself when it has had no answer for as long.
    pub session_timeout_ms: u64,
    /// The partitions the member reads now: what it was assigned, less
    /// what it has stopped reading (and committed) since.
    pub owned: Vec<u32>,
    /// The generation of the last answer the member acted on (0 before
    /// any). A partition missing from `owned` is taken as given up only if
    /// this is the group's current generation: a heartbeat delayed in the
    /// network, sent before the member was given a partition, must not
    /// take it away while the member reads it.
    pub generation: u64,
}

/// The coordinator's answer to a [`GroupHeartbeat`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupAssignment {
    /// Bumped at every change of which member owns which partition.
    pub generation: u64,
    /// The partitions the member may read. One it owns but is not given
    /// must be stopped (and its position committed) before the member's
    /// next heartbeat; only then does another member get it.
    pub assigned: Vec<u32>,
    /// How many members the group has, as the coordinator sees them.
    pub members: u32,
    /// The group's committed offset in each partition the member starts
    /// (assigned, and not listed as owned) that has one, as the partition's
    /// leader answered the coordinator's fence: every commit accepted before
    /// it is in.
    pub committed: Vec<(u32, u64)>,
    /// The SmartModule state committed with those offsets, where there is
    /// one (an aggregate's accumulator to resume with).
    pub states: Vec<(u32, serde_bytes::ByteBuf)>,
}

/// The position a consumer commits in one partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetCommit {
    pub consumer: String,
    pub topic: String,
    pub partition: u32,
    /// The next offset the consumer will read: one past the last record it
    /// processed. At most the partition's end.
    pub offset: u64,
    /// The committing session (random, picked by each consumer when it
    /// starts) and the commit's number within it. The partition refuses a
    /// commit numbered below the last it applied from the same session, so
    /// a commit delayed in the network (the client gave up on it and sent a
    /// newer one) cannot move the offset back. A new session may move it
    /// anywhere: that is a consumer starting over.
    pub session: u64,
    pub sequence: u64,
    /// The consumer's SmartModule state as of `offset`: an aggregate's
    /// accumulator, which a consumer resuming here starts from instead of
    /// the module's initial value. At most
    /// [`CONSUMER_STATE_BYTES_MAX`](crate::limits::CONSUMER_STATE_BYTES_MAX).
    #[serde(with = "serde_bytes")]
    pub state: Option<Vec<u8>>,
    /// The committing group member (`None` outside consumer groups). Its
    /// commit is refused once the partition was given to a member at a
    /// later generation than the commit's (see [`Request::CommitOffsetAt`](crate::Request::CommitOffsetAt)),
    /// so a member that lost the partition cannot move the offset.
    pub member: Option<String>,
}

/// A committed offset as `sluice consumer list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerOffset {
    pub consumer: String,
    pub topic: String,
    pub partition: u32,
    /// `None` for a partition a group member owns but has not committed in.
    pub offset: Option<u64>,
    /// When the commit was proposed (ms since the Unix epoch, by the
    /// partition leader's clock).
    pub committed_ms: i64,
    /// The SmartModule state committed with the offset (see [`OffsetCommit`]).
    #[serde(with = "serde_bytes")]
    pub state: Option<Vec<u8>>,
    /// For a consumer group: the member that owns the partition now.
    pub owner: Option<String>,
}

/// One partition's committed offsets as its leader holds them (see
/// [`Request::LeaderConsumers`](crate::Request::LeaderConsumers)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedPartitionOffsets {
    pub topic: String,
    pub partition: u32,
    /// The leader's term and applied Raft index: of two nodes that both
    /// answer as leader (one deposed), the newer one is believed.
    pub term: u64,
    pub applied_index: u64,
    pub offsets: Vec<ConsumerOffset>,
}
