//! Consumer groups: no record skipped, one member at a time per partition,
//! committed offsets that never go back.
//!
//! Ground truth is the partitions' final logs (the log checkers prove them
//! right). The group reads from the beginning, so every record of a final
//! log must reach some member; the drain after the heal (`final: true`
//! polls) reads up to the end, so "not yet read" cannot excuse a gap.

use std::collections::{BTreeMap, BTreeSet};

use super::anomaly::Anomaly;
use super::view::LogView;
use crate::history::{Call, History, Offset, Outcome, PartitionId};

/// What the group ops of a history say.
#[derive(Default)]
pub(crate) struct GroupView<'h> {
    /// Whether the history has group ops at all.
    pub any: bool,
    /// partition -> (offset, value) -> history indexes of the polls that had it.
    pub delivered: BTreeMap<PartitionId, BTreeMap<(Offset, &'h str), Vec<u64>>>,
    /// Partitions with a successful final (drain) poll.
    pub drained: BTreeSet<PartitionId>,
    /// partition -> (op, member, is an assignment) in history order.
    pub timeline: BTreeMap<PartitionId, Vec<(u64, &'h str, bool)>>,
    /// (op, [(partition, offset)]) of each successful offsets listing.
    pub offsets: Vec<(u64, &'h [(PartitionId, Offset)])>,
}

impl<'h> GroupView<'h> {
    pub fn new(h: &'h History) -> Self {
        let mut v = GroupView::default();
        for pair in h.pairs() {
            if pair.outcome != Outcome::Ok {
                if matches!(
                    h.invoke(pair).call,
                    Call::GroupPoll(_) | Call::GroupAssign(_) | Call::GroupOffsets(_)
                ) {
                    v.any = true;
                }
                continue;
            }
            let op = h.completion(pair).map_or(0, |o| o.index);
            match h.result_call(pair) {
                Call::GroupPoll(g) => {
                    v.any = true;
                    if g.is_final {
                        v.drained.insert(g.partition);
                    }
                    let seen = v.delivered.entry(g.partition).or_default();
                    for r in g.records.as_deref().unwrap_or_default() {
                        seen.entry((r.offset, r.value.as_str()))
                            .or_default()
                            .push(op);
                    }
                    v.timeline
                        .entry(g.partition)
                        .or_default()
                        .push((op, g.member.as_str(), false));
                }
                Call::GroupAssign(a) => {
                    v.any = true;
                    for p in &a.partitions {
                        v.timeline
                            .entry(*p)
                            .or_default()
                            .push((op, a.member.as_str(), true));
                    }
                }
                Call::GroupOffsets(o) => {
                    v.any = true;
                    v.offsets
                        .push((op, o.offsets.as_deref().unwrap_or_default()));
                }
                _ => {}
            }
        }
        for t in v.timeline.values_mut() {
            t.sort_unstable();
        }
        v.offsets.sort_unstable_by_key(|(op, _)| *op);
        v
    }
}

/// Records of a drained partition's final log that no member was handed.
pub(crate) fn skipped(log: &LogView<'_>, v: &GroupView<'_>) -> Vec<Anomaly> {
    let mut out = Vec::new();
    for p in &v.drained {
        let Some(longest) = log
            .finals
            .get(p)
            .and_then(|m| m.values().max_by_key(|f| f.records.len()))
        else {
            continue;
        };
        let seen = v.delivered.get(p);
        for r in longest.records {
            if !seen.is_some_and(|s| s.contains_key(&(r.offset, r.value.as_str()))) {
                out.push(Anomaly::GroupSkipped {
                    partition: *p,
                    offset: r.offset,
                    value: r.value.clone(),
                    final_op: longest.op,
                });
            }
        }
    }
    out
}

/// A member handed records of a partition after another member was, with
/// no new assignment of the partition to it in between: two members read
/// it at once.
pub(crate) fn concurrent(v: &GroupView<'_>) -> Vec<Anomaly> {
    let mut out = Vec::new();
    for (p, timeline) in &v.timeline {
        // member -> op of its latest assignment of `p`
        let mut assigned: BTreeMap<&str, u64> = BTreeMap::new();
        // member -> op of its latest delivery of `p`
        let mut delivered: BTreeMap<&str, u64> = BTreeMap::new();
        for &(op, member, is_assign) in timeline {
            if is_assign {
                assigned.insert(member, op);
                continue;
            }
            // This member delivered before (at `i`), another one since (at
            // `j`), and this one again now, not given the partition anew
            // after `j`: it kept reading while the other did.
            if let Some(&i) = delivered.get(member) {
                let reassigned = assigned.get(member).copied().unwrap_or(0);
                if let Some((other, &j)) = delivered
                    .iter()
                    .find(|(m, j)| **m != member && **j > i && **j < op && reassigned < **j)
                {
                    out.push(Anomaly::GroupConcurrentRead {
                        partition: *p,
                        members: vec![member.to_string(), other.to_string()],
                        ops: vec![i, j, op],
                    });
                    break;
                }
            }
            delivered.insert(member, op);
        }
    }
    out
}

/// A committed offset listed lower than an earlier listing of it.
pub(crate) fn offsets_regressed(v: &GroupView<'_>) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let mut last: BTreeMap<PartitionId, (Offset, u64)> = BTreeMap::new();
    for (op, offsets) in &v.offsets {
        for &(p, offset) in *offsets {
            if let Some(&(before, before_op)) = last.get(&p)
                && offset < before
            {
                out.push(Anomaly::GroupOffsetRegressed {
                    partition: p,
                    from: before,
                    to: offset,
                    ops: vec![before_op, *op],
                });
            }
            last.insert(p, (offset, *op));
        }
    }
    out
}
