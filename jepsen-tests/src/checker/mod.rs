//! The checkers: pure functions over a [`History`], each returning the
//! [`Anomaly`]s it proves, and [`check`], which runs them all and computes the
//! figures of `results.json`.
//!
//! Every checker can fail, and each has a unit test with a history that makes
//! it fail (see `tests.rs`): a checker that cannot fail proves nothing.

mod anomaly;
pub(crate) mod figures;
mod group;
mod log;
mod order;
mod pipeline;
mod replicas;
mod result;
mod smartmodule;
mod view;

#[cfg(test)]
mod tests;

pub use anomaly::{Anomaly, KINDS, ReadAt, Seen};
pub use figures::{Availability, Latency, OpCounts, Period};
pub use log::Indeterminate;
pub use order::monotonic_polls;
pub use result::{AnomalySummary, CheckResult, Validity};

use std::collections::BTreeMap;

use crate::history::History;
use smartmodule::SmView;
use view::LogView;

/// Two different values at one offset of a partition, across reads and nodes.
pub fn inconsistent_offsets(h: &History) -> Vec<Anomaly> {
    log::inconsistent_offsets(&LogView::new(h))
}

/// One value at two or more offsets of a partition.
pub fn duplicates(h: &History) -> Vec<Anomaly> {
    log::duplicates(&LogView::new(h))
}

/// A value read that no send to that partition ever invoked.
pub fn phantoms(h: &History) -> Vec<Anomaly> {
    log::phantoms(&LogView::new(h))
}

/// A value read whose send definitely failed.
pub fn aborted_reads(h: &History) -> Vec<Anomaly> {
    log::aborted_reads(&LogView::new(h))
}

/// A send acknowledged at an offset that reads (or other acks) contradict.
pub fn ack_mismatches(h: &History) -> Vec<Anomaly> {
    log::ack_mismatches(&LogView::new(h))
}

/// Acknowledged sends absent from every node's final read.
pub fn lost_writes(h: &History) -> Vec<Anomaly> {
    log::lost_writes(&LogView::new(h))
}

/// `info` sends that were read (recovered) or never read (unknown, not lost).
pub fn indeterminate_sends(h: &History) -> Indeterminate {
    log::indeterminate_sends(&LogView::new(h))
}

/// Every node's final log is a prefix of the longest, and equal to it.
pub fn prefix(h: &History) -> Vec<Anomaly> {
    replicas::prefix(&LogView::new(h))
}

/// Acknowledged-before-invoked sends get increasing offsets.
pub fn realtime(h: &History) -> Vec<Anomaly> {
    order::realtime(&LogView::new(h))
}

/// SmartModule store: acknowledged creates present with their hash, deletes
/// not undone, no phantom modules, final lists equal on every node.
pub fn smartmodule_store(h: &History) -> Vec<Anomaly> {
    sm_anomalies(h, &SmView::new(h))
}

/// A node that could not run a module it listed, after the heal.
pub fn smartmodule_unusable(h: &History) -> Vec<Anomaly> {
    smartmodule::unusable(h)
}

fn sm_anomalies(h: &History, v: &SmView<'_>) -> Vec<Anomaly> {
    let mut out = smartmodule::missing(v);
    out.extend(smartmodule::reappeared(v));
    out.extend(smartmodule::phantoms(v));
    out.extend(smartmodule::divergent(v));
    out.extend(smartmodule::unusable(h));
    out
}

fn log_anomalies(h: &History, v: &LogView<'_>) -> Vec<Anomaly> {
    let mut out = log::inconsistent_offsets(v);
    out.extend(log::duplicates(v));
    out.extend(log::phantoms(v));
    out.extend(log::aborted_reads(v));
    out.extend(log::ack_mismatches(v));
    out.extend(log::lost_writes(v));
    out.extend(replicas::prefix(v));
    out.extend(order::monotonic_polls(h));
    out.extend(order::realtime(v));
    out
}

fn group_anomalies(log: &LogView<'_>, v: &group::GroupView<'_>) -> Vec<Anomaly> {
    let mut out = group::skipped(log, v);
    out.extend(group::concurrent(v));
    out.extend(group::offsets_regressed(v));
    out
}

/// Consumer group: no record skipped, one reader per partition at a time,
/// committed offsets never going back.
pub fn group(h: &History) -> Vec<Anomaly> {
    group_anomalies(&LogView::new(h), &group::GroupView::new(h))
}

/// Every anomaly of every checker, in [`KINDS`] order.
pub fn anomalies(h: &History) -> Vec<Anomaly> {
    let log = LogView::new(h);
    let mut out = log_anomalies(h, &log);
    out.extend(sm_anomalies(h, &SmView::new(h)));
    out.extend(group_anomalies(&log, &group::GroupView::new(h)));
    out.extend(pipeline::anomalies(h));
    out
}

/// What makes a run conclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOptions {
    /// Fewer successful workload operations than this makes the run `unknown`:
    /// a history that barely exercised the system proves little. A run that
    /// wrote also needs a fifth as many acknowledged sends.
    pub min_ops: u64,
    /// Examples kept per anomaly kind in the result.
    pub max_examples: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            min_ops: 10,
            max_examples: 5,
        }
    }
}

/// Runs every checker with the default [`CheckOptions`].
pub fn check(h: &History) -> CheckResult {
    check_with(h, &CheckOptions::default())
}

/// Runs every checker and computes the figures of `results.json`.
pub fn check_with(h: &History, opts: &CheckOptions) -> CheckResult {
    let log_view = LogView::new(h);
    let sm_view = SmView::new(h);
    let group_view = group::GroupView::new(h);
    let mut found = log_anomalies(h, &log_view);
    found.extend(sm_anomalies(h, &sm_view));
    found.extend(group_anomalies(&log_view, &group_view));
    found.extend(pipeline::anomalies(h));

    let (ops, ops_by_f) = figures::op_counts(h);
    let faults = figures::faults(h);
    let nemesis_unavailable = figures::unavailable(h);
    let windows = figures::fault_windows(h);
    let nodes = figures::nodes(h);

    let mut unknown_reasons = Vec::new();
    if !figures::any_injected(&faults) {
        unknown_reasons.push("no fault was injected: not a fault test".to_string());
    }
    for u in &nemesis_unavailable {
        unknown_reasons.push(format!("nemesis could not run: {u}"));
    }
    let ok = figures::workload_ok(h);
    if ok < opts.min_ops {
        unknown_reasons.push(format!(
            "too few operations: {ok} succeeded, at least {} needed",
            opts.min_ops
        ));
    }
    // Reads and polls alone prove nothing about lost writes: a run whose
    // sends (nearly) all failed, e.g. every batch refused, is not a
    // durability test however many reads succeeded. A fifth of `min_ops`.
    let (sent, acked) = figures::sends(h);
    let acked_needed = (opts.min_ops / 5).max(1);
    if sent > 0 && acked < acked_needed {
        unknown_reasons.push(format!(
            "too few writes: {acked} of {sent} sends acknowledged, at least {acked_needed} needed"
        ));
    }
    for (node, partition) in &log_view.failed_finals {
        unknown_reasons.push(format!(
            "final read of partition {partition} on node {node} did not succeed"
        ));
    }
    for p in &log_view.partitions {
        if !log_view.finals.contains_key(p) {
            unknown_reasons.push(format!("no final read of partition {p} on any node"));
        }
    }
    let drained = figures::drained_nodes(h);
    for n in nodes.difference(&drained) {
        unknown_reasons.push(format!("no final read from node {n}"));
    }
    if group_view.any {
        for p in &log_view.partitions {
            if !group_view.drained.contains(p) {
                unknown_reasons.push(format!(
                    "the consumer group did not drain partition {p} after the heal"
                ));
            }
        }
    }
    if sm_view.any && !sm_view.has_finals() {
        unknown_reasons.push("no final SmartModule list on any node".to_string());
    }
    for n in &sm_view.failed_finals {
        unknown_reasons.push(format!(
            "final SmartModule list on node {n} did not succeed"
        ));
    }

    let valid = if !found.is_empty() {
        Validity::Invalid
    } else if !unknown_reasons.is_empty() {
        Validity::Unknown
    } else {
        Validity::Valid
    };

    let mut by_kind: BTreeMap<String, AnomalySummary> = KINDS
        .iter()
        .map(|k| (k.to_string(), AnomalySummary::default()))
        .collect();
    for a in &found {
        let s = by_kind.entry(a.kind().to_string()).or_default();
        s.count += 1;
        if s.examples.len() < opts.max_examples {
            s.examples.push(a.clone());
        }
    }
    let count = |kind: &str| by_kind.get(kind).map_or(0, |s| s.count);

    CheckResult {
        valid,
        unknown_reasons,
        nodes: nodes.into_iter().collect(),
        partitions: log_view.partitions.iter().copied().collect(),
        duration_ms: figures::duration_ms(h),
        ops,
        ops_by_f,
        faults,
        nemesis_unavailable,
        lost: count("lost_write"),
        duplicated: count("duplicate"),
        indeterminate_sends: log::indeterminate_sends(&log_view),
        leader_changes: figures::leader_changes(h),
        availability: figures::availability(h, &windows),
        latency_ms: figures::latency(h),
        recovery_ms: figures::recovery(h, &windows),
        anomalies: by_kind,
    }
}
