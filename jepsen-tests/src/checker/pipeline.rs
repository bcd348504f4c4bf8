//! The pipeline workload: a topic derived from the log workload's topic
//! (`topic create B --from A` with an upper-casing map), read whole after
//! the heal (`pipeline_read`). Every partition of B must hold exactly the
//! records of the same partition of A, mapped, in A's order: each output
//! naming the offset of its source record (`sluice-source-offset`), each
//! source record once.

use std::collections::BTreeMap;

use crate::history::{Call, History, Offset, OpType, PartitionId};

use super::anomaly::Anomaly;

/// What the derivation makes of a source value (the `uppercase-map` example).
pub fn mapped(value: &str) -> String {
    value.to_uppercase()
}

/// The last `ok` pipeline read of each partition, with its history index.
fn last_reads(h: &History) -> BTreeMap<PartitionId, (u64, &crate::history::PipelineRead)> {
    let mut out = BTreeMap::new();
    for op in h.ops() {
        if op.kind != OpType::Ok {
            continue;
        }
        if let Call::PipelineRead(r) = &op.call {
            out.insert(r.partition, (op.index, r));
        }
    }
    out
}

/// Every way the derived topic differs from its source, per partition.
pub fn anomalies(h: &History) -> Vec<Anomaly> {
    let mut out = Vec::new();
    for (partition, (op, read)) in last_reads(h) {
        let (Some(source), Some(derived)) = (&read.source, &read.derived) else {
            continue;
        };
        out.extend(partition_anomalies(partition, op, source, derived));
    }
    out
}

fn partition_anomalies(
    partition: PartitionId,
    op: u64,
    source: &[crate::history::Record],
    derived: &[(Offset, String, Option<Offset>)],
) -> Vec<Anomaly> {
    let mut out = Vec::new();
    // Twice: one source offset behind two records of B.
    let mut seen: BTreeMap<Offset, Vec<Offset>> = BTreeMap::new();
    for (offset, _, from) in derived {
        if let Some(from) = from {
            seen.entry(*from).or_default().push(*offset);
        }
    }
    for (from, offsets) in &seen {
        if offsets.len() > 1 {
            out.push(Anomaly::PipelineDuplicate {
                partition,
                source_offset: *from,
                derived_offsets: offsets.clone(),
                op,
            });
        }
    }
    // Position by position: B is A mapped, in order.
    for (i, expected) in source.iter().enumerate() {
        let want = (expected.offset, mapped(&expected.value));
        match derived.get(i) {
            Some((_, value, from)) if *from == Some(want.0) && *value == want.1 => {}
            Some((at, value, from)) => {
                out.push(Anomaly::PipelineMismatch {
                    partition,
                    position: i,
                    expected_source_offset: want.0,
                    expected_value: want.1,
                    derived_offset: *at,
                    derived_value: value.clone(),
                    derived_source_offset: *from,
                    op,
                });
                break;
            }
            None => {
                out.push(Anomaly::PipelineLost {
                    partition,
                    source_offset: want.0,
                    value: expected.value.clone(),
                    missing: source.len() - i,
                    op,
                });
                break;
            }
        }
    }
    if derived.len() > source.len() && out.is_empty() {
        let (at, value, from) = &derived[source.len()];
        out.push(Anomaly::PipelineMismatch {
            partition,
            position: source.len(),
            expected_source_offset: Offset::MAX,
            expected_value: String::new(),
            derived_offset: *at,
            derived_value: value.clone(),
            derived_source_offset: *from,
            op,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Record;

    fn source(values: &[&str]) -> Vec<Record> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Record::new(i as u64, *v))
            .collect()
    }

    fn derived(rows: &[(u64, &str, u64)]) -> Vec<(Offset, String, Option<Offset>)> {
        rows.iter()
            .map(|(at, v, from)| (*at, v.to_string(), Some(*from)))
            .collect()
    }

    #[test]
    fn an_exact_derivation_has_no_anomaly() {
        let a = source(&["w0-1", "w1-1"]);
        let b = derived(&[(0, "W0-1", 0), (1, "W1-1", 1)]);
        assert!(partition_anomalies(0, 9, &a, &b).is_empty());
    }

    #[test]
    fn lost_duplicated_reordered_and_foreign_records_are_each_found() {
        let a = source(&["w0-1", "w1-1", "w2-1"]);
        let lost = partition_anomalies(0, 9, &a, &derived(&[(0, "W0-1", 0)]));
        assert!(
            matches!(
                lost[..],
                [Anomaly::PipelineLost {
                    source_offset: 1,
                    missing: 2,
                    ..
                }]
            ),
            "{lost:?}"
        );
        let twice = partition_anomalies(
            0,
            9,
            &a,
            &derived(&[
                (0, "W0-1", 0),
                (1, "W0-1", 0),
                (2, "W1-1", 1),
                (3, "W2-1", 2),
            ]),
        );
        assert!(twice.iter().any(|x| matches!(
            x,
            Anomaly::PipelineDuplicate {
                source_offset: 0,
                ..
            }
        )));
        let swapped = partition_anomalies(
            0,
            9,
            &a,
            &derived(&[(0, "W1-1", 1), (1, "W0-1", 0), (2, "W2-1", 2)]),
        );
        assert!(matches!(
            swapped[..],
            [Anomaly::PipelineMismatch { position: 0, .. }]
        ));
        let unmapped = partition_anomalies(0, 9, &a, &derived(&[(0, "w0-1", 0)]));
        assert!(matches!(unmapped[..], [Anomaly::PipelineMismatch { .. }]));
        let extra = partition_anomalies(
            0,
            9,
            &source(&["w0-1"]),
            &derived(&[(0, "W0-1", 0), (1, "X", 5)]),
        );
        assert!(matches!(
            extra[..],
            [Anomaly::PipelineMismatch { position: 1, .. }]
        ));
    }
}
