//! The anomalies the checkers report. Each carries its evidence (partition,
//! offsets, values and the history indexes of the operations involved) so a
//! report can be verified by reading the named lines of `history.jsonl`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::history::{NodeId, Offset, PartitionId, Process};

/// A value and where it was seen (history indexes of the completions, nodes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub value: String,
    pub ops: Vec<u64>,
    pub nodes: Vec<NodeId>,
}

/// A value read at an offset, by the completion at history index `op`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadAt {
    pub offset: Offset,
    pub value: String,
    pub op: u64,
}

/// One safety violation found in a history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Anomaly {
    /// Two different values at one offset of a partition, across all reads
    /// (polls, reads, final reads) on all nodes.
    InconsistentOffset {
        partition: PartitionId,
        offset: Offset,
        values: Vec<Seen>,
    },
    /// One value at two or more offsets of a partition (the idempotent
    /// producer must make this impossible).
    Duplicate {
        partition: PartitionId,
        value: String,
        offsets: Vec<Offset>,
        ops: Vec<u64>,
    },
    /// A value read that no send to this partition ever invoked.
    Phantom {
        partition: PartitionId,
        offset: Offset,
        value: String,
        ops: Vec<u64>,
    },
    /// A value read whose send definitely failed.
    AbortedRead {
        partition: PartitionId,
        offset: Offset,
        value: String,
        send_op: u64,
        ops: Vec<u64>,
    },
    /// A send acknowledged at `offset` while reads show another value there,
    /// the value at another offset, or another send was acknowledged there too.
    AckMismatch {
        partition: PartitionId,
        value: String,
        offset: Offset,
        send_op: u64,
        #[serde(skip_serializing_if = "Vec::is_empty", default)]
        other_values_at_offset: Vec<ReadAt>,
        #[serde(skip_serializing_if = "Vec::is_empty", default)]
        value_at_other_offsets: Vec<ReadAt>,
        #[serde(skip_serializing_if = "Vec::is_empty", default)]
        other_acks_at_offset: Vec<ReadAt>,
    },
    /// An acknowledged send found in no node's final read of its partition.
    LostWrite {
        partition: PartitionId,
        value: String,
        offset: Offset,
        send_op: u64,
    },
    /// A node's final log is not a prefix of the longest final log: at
    /// position `position` it holds `found` where the longest holds `expected`.
    PrefixViolation {
        partition: PartitionId,
        node: NodeId,
        reference_node: NodeId,
        position: usize,
        expected: Option<ReadAt>,
        found: ReadAt,
    },
    /// A node's final log is a strict prefix of the longest: the cluster had
    /// not converged although the runner drains only after waiting for it.
    Unconverged {
        partition: PartitionId,
        node: NodeId,
        length: usize,
        reference_node: NodeId,
        reference_length: usize,
        op: u64,
    },
    /// Within one consumer process's polls of a partition (or within one read's
    /// records), an offset that does not exceed the one before it.
    NonMonotonicPoll {
        process: Process,
        partition: PartitionId,
        previous_offset: Offset,
        previous_op: u64,
        offset: Offset,
        op: u64,
    },
    /// Send `earlier` was acknowledged before send `later` was invoked, yet
    /// `later` got the lower (or same) offset.
    RealtimeViolation {
        partition: PartitionId,
        earlier: ReadAt,
        later: ReadAt,
    },
    /// An acknowledged SmartModule registration absent from a node's final
    /// list, or present there with another hash, with no later delete or
    /// re-registration to explain it.
    SmMissing {
        name: String,
        hash: String,
        create_op: u64,
        node: NodeId,
        found_hash: Option<String>,
        list_op: u64,
    },
    /// A SmartModule whose deletion was acknowledged is in a node's final
    /// list although no registration of that name could have followed.
    SmReappeared {
        name: String,
        hash: String,
        delete_op: u64,
        node: NodeId,
        list_op: u64,
    },
    /// A listed SmartModule (name and hash) that no registration invoked, or
    /// whose every registration definitely failed (`failed_creates`).
    SmPhantom {
        name: String,
        hash: String,
        node: Option<NodeId>,
        list_op: u64,
        failed_creates: Vec<u64>,
    },
    /// The nodes' final SmartModule lists disagree about `name`.
    SmDivergent {
        name: String,
        /// node -> hash listed there (`None`: absent).
        hashes: BTreeMap<NodeId, Option<String>>,
    },
    /// After the heal, a node listed SmartModule `module` yet could not run
    /// it over a partition it holds (the consume did not succeed: `error`),
    /// or running it let through other values than `expected` (`got`).
    SmUnusable {
        module: String,
        node: NodeId,
        op: u64,
        expected: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        got: Option<Vec<String>>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        error: Option<String>,
    },
    /// A record of a partition's final log that no member of the consumer
    /// group was handed, although the group drained the partition.
    GroupSkipped {
        partition: PartitionId,
        offset: Offset,
        value: String,
        final_op: u64,
    },
    /// Two members of the group handed records of one partition in
    /// interleaved order (the first again after the second, with no new
    /// assignment): both read it at once. `ops`: first member's delivery,
    /// the other's, the first's again.
    GroupConcurrentRead {
        partition: PartitionId,
        members: Vec<String>,
        ops: Vec<u64>,
    },
    /// The group's committed offset of a partition went back.
    GroupOffsetRegressed {
        partition: PartitionId,
        from: Offset,
        to: Offset,
        ops: Vec<u64>,
    },
    /// A record of the pipeline's source topic with no output in the
    /// derived topic after the heal (`missing`: how many from it on).
    PipelineLost {
        partition: PartitionId,
        source_offset: Offset,
        value: String,
        missing: usize,
        op: u64,
    },
    /// One record of the source behind two records of the derived topic.
    PipelineDuplicate {
        partition: PartitionId,
        source_offset: Offset,
        derived_offsets: Vec<Offset>,
        op: u64,
    },
    /// At `position`, the derived topic holds another record than the
    /// source's record there, mapped (out of order, unmapped, or foreign).
    PipelineMismatch {
        partition: PartitionId,
        position: usize,
        expected_source_offset: Offset,
        expected_value: String,
        derived_offset: Offset,
        derived_value: String,
        derived_source_offset: Option<Offset>,
        op: u64,
    },
}

/// The kinds of [`Anomaly`], in report order.
pub const KINDS: &[&str] = &[
    "inconsistent_offset",
    "duplicate",
    "phantom",
    "aborted_read",
    "ack_mismatch",
    "lost_write",
    "prefix_violation",
    "unconverged",
    "non_monotonic_poll",
    "realtime_violation",
    "sm_missing",
    "sm_reappeared",
    "sm_phantom",
    "sm_divergent",
    "sm_unusable",
    "group_skipped",
    "group_concurrent_read",
    "group_offset_regressed",
    "pipeline_lost",
    "pipeline_duplicate",
    "pipeline_mismatch",
];

impl Anomaly {
    /// The kind's name as in `results.json` (one of [`KINDS`]).
    pub fn kind(&self) -> &'static str {
        match self {
            Anomaly::InconsistentOffset { .. } => "inconsistent_offset",
            Anomaly::Duplicate { .. } => "duplicate",
            Anomaly::Phantom { .. } => "phantom",
            Anomaly::AbortedRead { .. } => "aborted_read",
            Anomaly::AckMismatch { .. } => "ack_mismatch",
            Anomaly::LostWrite { .. } => "lost_write",
            Anomaly::PrefixViolation { .. } => "prefix_violation",
            Anomaly::Unconverged { .. } => "unconverged",
            Anomaly::NonMonotonicPoll { .. } => "non_monotonic_poll",
            Anomaly::RealtimeViolation { .. } => "realtime_violation",
            Anomaly::SmMissing { .. } => "sm_missing",
            Anomaly::SmReappeared { .. } => "sm_reappeared",
            Anomaly::SmPhantom { .. } => "sm_phantom",
            Anomaly::SmDivergent { .. } => "sm_divergent",
            Anomaly::SmUnusable { .. } => "sm_unusable",
            Anomaly::GroupSkipped { .. } => "group_skipped",
            Anomaly::GroupConcurrentRead { .. } => "group_concurrent_read",
            Anomaly::GroupOffsetRegressed { .. } => "group_offset_regressed",
            Anomaly::PipelineLost { .. } => "pipeline_lost",
            Anomaly::PipelineDuplicate { .. } => "pipeline_duplicate",
            Anomaly::PipelineMismatch { .. } => "pipeline_mismatch",
        }
    }
}
