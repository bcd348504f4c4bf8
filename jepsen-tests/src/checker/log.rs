//! Checks of what reads returned against what sends did, per partition.
//!
//! Values are unique, so a value read names the one send that could have
//! written it; offsets are the partition's version order, so two values at one
//! offset, or one value at two offsets, are violations on their own.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::anomaly::{Anomaly, ReadAt, Seen};
use super::view::{LogView, Obs};
use crate::history::{NodeId, Offset, Outcome, PartitionId};

/// Groups observations by a key, keeping the completions and nodes per value.
fn seen_by_value<'h>(obs: &[&Obs<'h>]) -> Vec<Seen> {
    let mut by_value: BTreeMap<&str, (BTreeSet<u64>, BTreeSet<NodeId>)> = BTreeMap::new();
    for o in obs {
        let e = by_value.entry(o.value).or_default();
        e.0.insert(o.op);
        e.1.extend(o.node);
    }
    by_value
        .into_iter()
        .map(|(value, (ops, nodes))| Seen {
            value: value.to_string(),
            ops: ops.into_iter().collect(),
            nodes: nodes.into_iter().collect(),
        })
        .collect()
}

/// Two different values at one offset of a partition, across every read on every node.
pub(crate) fn inconsistent_offsets(v: &LogView<'_>) -> Vec<Anomaly> {
    let mut at: BTreeMap<(PartitionId, Offset), Vec<&Obs<'_>>> = BTreeMap::new();
    for o in &v.obs {
        at.entry((o.partition, o.offset)).or_default().push(o);
    }
    at.into_iter()
        .filter_map(|((partition, offset), obs)| {
            let values = seen_by_value(&obs);
            (values.len() > 1).then_some(Anomaly::InconsistentOffset {
                partition,
                offset,
                values,
            })
        })
        .collect()
}

/// Offsets a value was read at, and the completions that read it.
type Placements = (BTreeSet<Offset>, BTreeSet<u64>);

/// One value at two or more offsets of a partition.
pub(crate) fn duplicates(v: &LogView<'_>) -> Vec<Anomaly> {
    let mut at: BTreeMap<(PartitionId, &str), Placements> = BTreeMap::new();
    for o in &v.obs {
        let e = at.entry((o.partition, o.value)).or_default();
        e.0.insert(o.offset);
        e.1.insert(o.op);
    }
    at.into_iter()
        .filter(|(_, (offsets, _))| offsets.len() > 1)
        .map(|((partition, value), (offsets, ops))| Anomaly::Duplicate {
            partition,
            value: value.to_string(),
            offsets: offsets.into_iter().collect(),
            ops: ops.into_iter().collect(),
        })
        .collect()
}

/// Reads grouped by (partition, offset, value), with the completions that returned them.
fn reads_grouped<'a, 'h>(
    obs: impl Iterator<Item = &'a Obs<'h>>,
) -> BTreeMap<(PartitionId, Offset, &'h str), Vec<u64>>
where
    'h: 'a,
{
    let mut at: BTreeMap<(PartitionId, Offset, &str), BTreeSet<u64>> = BTreeMap::new();
    for o in obs {
        at.entry((o.partition, o.offset, o.value))
            .or_default()
            .insert(o.op);
    }
    at.into_iter()
        .map(|(k, ops)| (k, ops.into_iter().collect()))
        .collect()
}

/// A value read that no send to that partition ever invoked.
pub(crate) fn phantoms(v: &LogView<'_>) -> Vec<Anomaly> {
    let unsent = v.obs.iter().filter(|o| {
        v.sends
            .get(o.value)
            .is_none_or(|s| s.partition != o.partition)
    });
    reads_grouped(unsent)
        .into_iter()
        .map(|((partition, offset, value), ops)| Anomaly::Phantom {
            partition,
            offset,
            value: value.to_string(),
            ops,
        })
        .collect()
}

/// A value read whose send definitely failed.
pub(crate) fn aborted_reads(v: &LogView<'_>) -> Vec<Anomaly> {
    let failed = v.obs.iter().filter(|o| {
        v.sends
            .get(o.value)
            .is_some_and(|s| s.partition == o.partition && s.outcome == Outcome::Fail)
    });
    reads_grouped(failed)
        .into_iter()
        .map(|((partition, offset, value), ops)| Anomaly::AbortedRead {
            partition,
            offset,
            value: value.to_string(),
            send_op: v.sends[value].invoke_op,
            ops,
        })
        .collect()
}

/// A send acknowledged at offset `o` while reads show another value at `o`,
/// the value at another offset, or another send acknowledged at `o` too.
pub(crate) fn ack_mismatches(v: &LogView<'_>) -> Vec<Anomaly> {
    let mut reads_at: BTreeMap<(PartitionId, Offset), Vec<&Obs<'_>>> = BTreeMap::new();
    let mut reads_of: BTreeMap<(PartitionId, &str), Vec<&Obs<'_>>> = BTreeMap::new();
    for o in &v.obs {
        reads_at.entry((o.partition, o.offset)).or_default().push(o);
        reads_of.entry((o.partition, o.value)).or_default().push(o);
    }
    let mut acks_at: BTreeMap<(PartitionId, Offset), Vec<ReadAt>> = BTreeMap::new();
    for s in v.acked() {
        if let Some(offset) = s.offset {
            acks_at
                .entry((s.partition, offset))
                .or_default()
                .push(ReadAt {
                    offset,
                    value: s.value.to_string(),
                    op: s.complete_op.unwrap_or(s.invoke_op),
                });
        }
    }
    let read_at = |o: &&Obs<'_>| ReadAt {
        offset: o.offset,
        value: o.value.to_string(),
        op: o.op,
    };

    let mut out = Vec::new();
    for s in v.acked() {
        let Some(offset) = s.offset else { continue };
        let key = (s.partition, offset);
        let other_values_at_offset: Vec<ReadAt> = reads_at
            .get(&key)
            .into_iter()
            .flatten()
            .filter(|o| o.value != s.value)
            .map(read_at)
            .collect();
        let value_at_other_offsets: Vec<ReadAt> = reads_of
            .get(&(s.partition, s.value))
            .into_iter()
            .flatten()
            .filter(|o| o.offset != offset)
            .map(read_at)
            .collect();
        let other_acks_at_offset: Vec<ReadAt> = acks_at
            .get(&key)
            .into_iter()
            .flatten()
            .filter(|a| a.value != s.value)
            .cloned()
            .collect();
        if other_values_at_offset.is_empty()
            && value_at_other_offsets.is_empty()
            && other_acks_at_offset.is_empty()
        {
            continue;
        }
        out.push(Anomaly::AckMismatch {
            partition: s.partition,
            value: s.value.to_string(),
            offset,
            send_op: s.complete_op.unwrap_or(s.invoke_op),
            other_values_at_offset,
            value_at_other_offsets,
            other_acks_at_offset,
        });
    }
    out
}

/// Acknowledged sends absent from the final read of every node. Only
/// partitions whose final reads all succeeded are judged (a missing final read
/// makes the run `unknown` instead).
pub(crate) fn lost_writes(v: &LogView<'_>) -> Vec<Anomaly> {
    let mut finals: BTreeMap<PartitionId, HashSet<&str>> = BTreeMap::new();
    for (p, nodes) in &v.finals {
        let set = finals.entry(*p).or_default();
        for log in nodes.values() {
            set.extend(log.records.iter().map(|r| r.value.as_str()));
        }
    }
    v.acked()
        .filter(|s| v.finals_complete(s.partition))
        .filter(|s| !finals[&s.partition].contains(s.value))
        .map(|s| Anomaly::LostWrite {
            partition: s.partition,
            value: s.value.to_string(),
            offset: s.offset.unwrap_or_default(),
            send_op: s.complete_op.unwrap_or(s.invoke_op),
        })
        .collect()
}

/// What became of the sends whose outcome was unknown (`info`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Indeterminate {
    /// Read somewhere: the send did take effect.
    pub recovered: u64,
    /// Never read: may or may not have happened; not counted as lost.
    pub unknown: u64,
}

/// Counts `info` sends that some read returned (recovered) and the others (unknown).
pub(crate) fn indeterminate_sends(v: &LogView<'_>) -> Indeterminate {
    let read: HashSet<(PartitionId, &str)> = v.obs.iter().map(|o| (o.partition, o.value)).collect();
    let mut out = Indeterminate::default();
    for s in v.sends.values().filter(|s| s.outcome == Outcome::Info) {
        if read.contains(&(s.partition, s.value)) {
            out.recovered += 1;
        } else {
            out.unknown += 1;
        }
    }
    out
}
