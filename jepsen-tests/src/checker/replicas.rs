//! The prefix property of the nodes' final logs.
//!
//! Replicas of a Raft log may lag but never disagree: after the heal every
//! node's log of a partition must be a prefix of the longest one, and since the
//! runner drains only once the cluster has converged, equal to it.

use super::anomaly::{Anomaly, ReadAt};
use super::view::LogView;
use crate::history::Record;

fn read_at(r: &Record, op: u64) -> ReadAt {
    ReadAt {
        offset: r.offset,
        value: r.value.clone(),
        op,
    }
}

/// Every node's final log is a prefix of the longest (`prefix_violation`), and
/// equal to it (`unconverged`).
pub(crate) fn prefix(v: &LogView<'_>) -> Vec<Anomaly> {
    let mut out = Vec::new();
    for (&partition, logs) in &v.finals {
        // The longest log is the reference; ties go to the lowest node id.
        let Some((&reference_node, reference)) = logs
            .iter()
            .max_by(|a, b| a.1.records.len().cmp(&b.1.records.len()).then(b.0.cmp(a.0)))
        else {
            continue;
        };
        for (&node, log) in logs {
            if node == reference_node {
                continue;
            }
            let diverges = log
                .records
                .iter()
                .zip(reference.records)
                .position(|(mine, theirs)| mine != theirs);
            if let Some(position) = diverges {
                out.push(Anomaly::PrefixViolation {
                    partition,
                    node,
                    reference_node,
                    position,
                    expected: Some(read_at(&reference.records[position], reference.op)),
                    found: read_at(&log.records[position], log.op),
                });
            } else if log.records.len() < reference.records.len() {
                out.push(Anomaly::Unconverged {
                    partition,
                    node,
                    length: log.records.len(),
                    reference_node,
                    reference_length: reference.records.len(),
                    op: log.op,
                });
            }
        }
    }
    out
}
