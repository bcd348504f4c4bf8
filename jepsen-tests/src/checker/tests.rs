//! One hand-written history per anomaly kind, each of which must make exactly
//! that kind fire, plus the verdict rules (valid / invalid / unknown).

use super::*;
use crate::history::{HistoryBuilder, OpType, Process};

const NODES: [u32; 3] = [1, 2, 3];

/// A fault window around `n` sends by process 1, acknowledged at offsets 0..n
/// of partition 0. Returns the log they make, as (offset, value).
fn base(b: &mut HistoryBuilder, n: u64) -> Vec<(u64, String)> {
    b.leader(Some(0), 1).fault_start("kill", &[1]);
    let mut log = Vec::new();
    for i in 0..n {
        let v = format!("w1-{i}");
        b.send_ok(1, &v, 0, i);
        log.push((i, v));
    }
    b.fault_stop("kill", &[1]).leader(Some(0), 2);
    log
}

/// The same final read of partition 0 on every node.
fn finals(b: &mut HistoryBuilder, log: &[(u64, &str)]) {
    for n in NODES {
        b.final_read(n, 0, log);
    }
}

fn refs(log: &[(u64, String)]) -> Vec<(u64, &str)> {
    log.iter().map(|(o, v)| (*o, v.as_str())).collect()
}

/// Asserts that every anomaly is of `kind`, that there are `count` of them,
/// and that the verdict is invalid.
fn assert_only(h: &History, kind: &str, count: usize) -> Vec<Anomaly> {
    let found = anomalies(h);
    let kinds: Vec<&str> = found.iter().map(Anomaly::kind).collect();
    assert!(
        kinds.iter().all(|k| *k == kind) && kinds.len() == count,
        "expected {count} x {kind}, got {found:#?}"
    );
    let r = check(h);
    assert_eq!(r.valid, Validity::Invalid);
    assert_eq!(r.anomalies[kind].count, count as u64);
    assert_eq!(r.anomaly_count(), count as u64);
    found
}

#[test]
fn clean_history_is_valid() {
    let mut b = HistoryBuilder::new();
    let log = base(&mut b, 12);
    let r = refs(&log);
    b.poll_ok(2, 2, 0, 0, &r[..6]).poll_ok(2, 2, 0, 6, &r[6..]);
    b.read_ok(3, 3, 0, 4, &r[4..8]);
    finals(&mut b, &r);
    let h = b.build().unwrap();

    assert!(anomalies(&h).is_empty(), "{:#?}", anomalies(&h));
    let res = check(&h);
    assert_eq!(res.valid, Validity::Valid, "{:?}", res.unknown_reasons);
    assert!(res.unknown_reasons.is_empty());
    assert_eq!(res.ops.invoke, 12 + 3 + 3);
    assert_eq!(res.ops.ok, 18);
    assert_eq!(res.ops_by_f["send"].ok, 12);
    assert_eq!(res.faults["kill"], 1);
    assert_eq!(res.leader_changes, 1);
    assert_eq!((res.lost, res.duplicated), (0, 0));
    assert_eq!(res.nodes, vec![1, 2, 3]);
    assert_eq!(res.latency_ms.samples, 12);
    assert_eq!(res.latency_ms.send_p50, Some(1));
    // All sends were invoked during the fault window.
    assert_eq!(res.availability.during_faults.invoked, 12);
    assert_eq!(res.availability.during_faults.ok_pct, Some(100.0));
    assert_eq!(res.availability.outside_faults.invoked, 3);
}

#[test]
fn inconsistent_offset() {
    let mut b = HistoryBuilder::new();
    let mut log = base(&mut b, 2);
    b.send_info(8, "w8-0", 0).send_info(9, "w9-0", 0);
    log.push((2, "w8-0".into()));
    let r = refs(&log);
    // Node 2 serves another value at offset 2 than the final logs hold.
    b.poll_ok(2, 2, 0, 0, &[r[0], r[1], (2, "w9-0")]);
    finals(&mut b, &r);
    let found = assert_only(&b.build().unwrap(), "inconsistent_offset", 1);
    let Anomaly::InconsistentOffset {
        partition,
        offset,
        values,
    } = &found[0]
    else {
        unreachable!()
    };
    assert_eq!((*partition, *offset), (0, 2));
    let vs: Vec<&str> = values.iter().map(|s| s.value.as_str()).collect();
    assert_eq!(vs, ["w8-0", "w9-0"]);
    assert_eq!(values[1].nodes, [2]);
}

#[test]
fn duplicate() {
    let mut b = HistoryBuilder::new();
    let mut log = base(&mut b, 2);
    b.send_info(8, "w8-0", 0);
    log.push((2, "w8-0".into()));
    log.push((3, "w8-0".into()));
    finals(&mut b, &refs(&log));
    let found = assert_only(&b.build().unwrap(), "duplicate", 1);
    assert!(
        matches!(&found[0], Anomaly::Duplicate { value, offsets, .. }
        if value == "w8-0" && offsets == &[2, 3])
    );
    assert_eq!(check(&b.build().unwrap()).duplicated, 1);
}

#[test]
fn phantom() {
    let mut b = HistoryBuilder::new();
    let mut log = base(&mut b, 2);
    log.push((2, "ghost-1".into()));
    finals(&mut b, &refs(&log));
    let found = assert_only(&b.build().unwrap(), "phantom", 1);
    assert!(
        matches!(&found[0], Anomaly::Phantom { value, offset: 2, ops, .. }
        if value == "ghost-1" && ops.len() == 3)
    );
}

#[test]
fn aborted_read() {
    let mut b = HistoryBuilder::new();
    let mut log = base(&mut b, 2);
    b.send_fail(7, "w7-0", 0);
    log.push((2, "w7-0".into()));
    finals(&mut b, &refs(&log));
    let found = assert_only(&b.build().unwrap(), "aborted_read", 1);
    assert!(matches!(&found[0], Anomaly::AbortedRead { value, offset: 2, .. } if value == "w7-0"));
}

#[test]
fn ack_offset_mismatch() {
    let mut b = HistoryBuilder::new();
    let mut log = base(&mut b, 2);
    b.send_info(8, "w8-0", 0).send_ok(1, "w1-2", 0, 2);
    // Acknowledged at 2, but the log holds it at 3 and another value at 2.
    log.push((2, "w8-0".into()));
    log.push((3, "w1-2".into()));
    finals(&mut b, &refs(&log));
    let found = assert_only(&b.build().unwrap(), "ack_mismatch", 1);
    let Anomaly::AckMismatch {
        value,
        offset,
        other_values_at_offset,
        value_at_other_offsets,
        other_acks_at_offset,
        ..
    } = &found[0]
    else {
        unreachable!()
    };
    assert_eq!((value.as_str(), *offset), ("w1-2", 2));
    assert_eq!(other_values_at_offset.len(), 3); // one per node
    assert!(other_values_at_offset.iter().all(|r| r.value == "w8-0"));
    assert!(value_at_other_offsets.iter().all(|r| r.offset == 3));
    assert!(other_acks_at_offset.is_empty());
}

#[test]
fn two_acks_at_one_offset_are_an_ack_mismatch() {
    let mut b = HistoryBuilder::new();
    let log = base(&mut b, 2);
    // Two concurrent sends both acknowledged at offset 2 (no read shows it).
    b.send_invoke(5, "w5-0", 0).send_invoke(6, "w6-0", 0);
    b.send_complete(5, OpType::Ok, "w5-0", 0, 2)
        .send_complete(6, OpType::Ok, "w6-0", 0, 2);
    let mut log = log;
    log.push((2, "w5-0".into()));
    log.push((3, "w6-0".into()));
    finals(&mut b, &refs(&log));
    let found = assert_only(&b.build().unwrap(), "ack_mismatch", 2);
    assert!(found.iter().any(
        |a| matches!(a, Anomaly::AckMismatch { value, other_acks_at_offset, .. }
        if value == "w5-0" && other_acks_at_offset[0].value == "w6-0")
    ));
}

#[test]
fn lost_write() {
    let mut b = HistoryBuilder::new();
    let log = base(&mut b, 3);
    // w1-2 was acknowledged at 2, but no node has it after the heal.
    finals(&mut b, &refs(&log[..2]));
    let h = b.build().unwrap();
    let found = assert_only(&h, "lost_write", 1);
    assert!(matches!(&found[0], Anomaly::LostWrite { value, offset: 2, .. } if value == "w1-2"));
    assert_eq!(check(&h).lost, 1);
}

#[test]
fn prefix_violation() {
    let mut b = HistoryBuilder::new();
    let log = base(&mut b, 3);
    let r = refs(&log);
    b.final_read(1, 0, &r).final_read(2, 0, &r);
    // Node 3 has a hole at offset 1: not a prefix of the others.
    b.final_read(3, 0, &[r[0], r[2]]);
    let found = assert_only(&b.build().unwrap(), "prefix_violation", 1);
    assert!(matches!(&found[0], Anomaly::PrefixViolation {
        node: 3, reference_node: 1, position: 1, expected: Some(e), found, ..
    } if e.offset == 1 && found.offset == 2));
}

#[test]
fn unconverged() {
    let mut b = HistoryBuilder::new();
    let log = base(&mut b, 3);
    let r = refs(&log);
    b.final_read(1, 0, &r).final_read(2, 0, &r);
    b.final_read(3, 0, &r[..2]);
    let found = assert_only(&b.build().unwrap(), "unconverged", 1);
    assert!(matches!(
        &found[0],
        Anomaly::Unconverged {
            node: 3,
            length: 2,
            reference_length: 3,
            ..
        }
    ));
}

#[test]
fn non_monotonic_poll() {
    let mut b = HistoryBuilder::new();
    let log = base(&mut b, 3);
    let r = refs(&log);
    // Consumer 2 got offsets 0..3, then offset 1 again.
    b.poll_ok(2, 2, 0, 0, &r).poll_ok(2, 2, 0, 1, &r[1..2]);
    // Another consumer's polls are independent of consumer 2's.
    b.poll_ok(3, 3, 0, 0, &r);
    finals(&mut b, &r);
    let found = assert_only(&b.build().unwrap(), "non_monotonic_poll", 1);
    assert!(matches!(
        &found[0],
        Anomaly::NonMonotonicPoll {
            process: Process::Client(2),
            previous_offset: 2,
            offset: 1,
            ..
        }
    ));
}

#[test]
fn non_monotonic_within_one_read() {
    let mut b = HistoryBuilder::new();
    let log = base(&mut b, 3);
    let r = refs(&log);
    // Separate reads may go back; records within one read may not.
    b.read_ok(2, 2, 0, 2, &r[2..])
        .read_ok(2, 2, 0, 0, &[r[0], r[2], r[1]]);
    finals(&mut b, &r);
    let found = assert_only(&b.build().unwrap(), "non_monotonic_poll", 1);
    assert!(matches!(
        &found[0],
        Anomaly::NonMonotonicPoll {
            previous_offset: 2,
            offset: 1,
            ..
        }
    ));
}

#[test]
fn realtime_violation() {
    let mut b = HistoryBuilder::new();
    b.fault_start("pause", &[2]);
    // w1-0 is acknowledged at 1 before w2-0 is invoked, which gets offset 0.
    b.send_ok(1, "w1-0", 0, 1).send_ok(2, "w2-0", 0, 0);
    b.fault_stop("pause", &[2]);
    finals(&mut b, &[(0, "w2-0"), (1, "w1-0")]);
    let found = assert_only(&b.build().unwrap(), "realtime_violation", 1);
    assert!(
        matches!(&found[0], Anomaly::RealtimeViolation { earlier, later, .. }
        if earlier.value == "w1-0" && later.value == "w2-0")
    );
}

#[test]
fn concurrent_sends_may_take_either_order() {
    let mut b = HistoryBuilder::new();
    b.fault_start("pause", &[2]);
    b.send_invoke(1, "w1-0", 0).send_invoke(2, "w2-0", 0);
    b.send_complete(1, OpType::Ok, "w1-0", 0, 1)
        .send_complete(2, OpType::Ok, "w2-0", 0, 0);
    b.fault_stop("pause", &[2]);
    finals(&mut b, &[(0, "w2-0"), (1, "w1-0")]);
    assert!(anomalies(&b.build().unwrap()).is_empty());
}

/// SmartModule histories run on nodes 1 and 2 with one fault.
fn sm_base(b: &mut HistoryBuilder) {
    b.fault_start("partition", &[1])
        .fault_stop("partition", &[1]);
}

#[test]
fn sm_missing() {
    let mut b = HistoryBuilder::new();
    sm_base(&mut b);
    b.sm_create(1, OpType::Ok, "m1", "h1");
    b.sm_final_list(1, &[]).sm_final_list(2, &[]);
    let found = assert_only(&b.build().unwrap(), "sm_missing", 2);
    assert!(
        matches!(&found[0], Anomaly::SmMissing { name, found_hash: None, node: 1, .. } if name == "m1")
    );
}

#[test]
fn sm_missing_with_another_hash() {
    let mut b = HistoryBuilder::new();
    sm_base(&mut b);
    b.sm_create(1, OpType::Ok, "m1", "h1");
    b.sm_final_list(1, &[("m1", "h1")]);
    // Node 2 has bytes nobody registered under that name: missing + phantom + divergent.
    b.sm_final_list(2, &[("m1", "h2")]);
    let kinds: Vec<&str> = anomalies(&b.build().unwrap())
        .iter()
        .map(Anomaly::kind)
        .collect();
    assert_eq!(kinds, ["sm_missing", "sm_phantom", "sm_divergent"]);
}

#[test]
fn sm_deleted_module_reappears() {
    let mut b = HistoryBuilder::new();
    sm_base(&mut b);
    b.sm_create(1, OpType::Ok, "m1", "h1")
        .sm_delete(1, OpType::Ok, "m1");
    b.sm_final_list(1, &[("m1", "h1")])
        .sm_final_list(2, &[("m1", "h1")]);
    assert_only(&b.build().unwrap(), "sm_reappeared", 2);
}

#[test]
fn sm_delete_then_recreate_is_fine() {
    let mut b = HistoryBuilder::new();
    sm_base(&mut b);
    b.sm_create(1, OpType::Ok, "m1", "h1")
        .sm_delete(1, OpType::Ok, "m1")
        .sm_create(1, OpType::Ok, "m1", "h2");
    b.sm_final_list(1, &[("m1", "h2")])
        .sm_final_list(2, &[("m1", "h2")]);
    assert!(anomalies(&b.build().unwrap()).is_empty());
}

#[test]
fn sm_phantom() {
    let mut b = HistoryBuilder::new();
    sm_base(&mut b);
    b.sm_create(1, OpType::Fail, "y", "hy");
    b.sm_list(1, 1, false, &[("x", "hx")]);
    b.sm_final_list(1, &[("x", "hx"), ("y", "hy")])
        .sm_final_list(2, &[("x", "hx"), ("y", "hy")]);
    let found = assert_only(&b.build().unwrap(), "sm_phantom", 2);
    assert!(
        matches!(&found[0], Anomaly::SmPhantom { name, failed_creates, .. }
        if name == "x" && failed_creates.is_empty())
    );
    assert!(
        matches!(&found[1], Anomaly::SmPhantom { name, failed_creates, .. }
        if name == "y" && failed_creates.len() == 1)
    );
}

#[test]
fn sm_divergent() {
    let mut b = HistoryBuilder::new();
    sm_base(&mut b);
    // An info create may or may not have happened, but not on one node only.
    b.sm_create(1, OpType::Info, "m1", "h1");
    b.sm_final_list(1, &[("m1", "h1")]).sm_final_list(2, &[]);
    let found = assert_only(&b.build().unwrap(), "sm_divergent", 1);
    assert!(matches!(&found[0], Anomaly::SmDivergent { hashes, .. }
        if hashes[&1].as_deref() == Some("h1") && hashes[&2].is_none()));
}

#[test]
fn sm_unusable() {
    let mut b = HistoryBuilder::new();
    sm_base(&mut b);
    b.sm_create(1, OpType::Ok, "m1", "h1");
    b.sm_final_list(1, &[("m1", "h1")])
        .sm_final_list(2, &[("m1", "h1")]);
    // Node 1 runs the filter; node 2 cannot, and a third consume lets through
    // a value the filter drops.
    b.sm_consume(1, "m1", &["apple-0"], Some(&["apple-0"]));
    b.sm_consume(2, "m1", &["apple-0"], None);
    b.sm_consume(2, "m1", &["apple-0"], Some(&["apple-0", "plum-1"]));
    let found = assert_only(&b.build().unwrap(), "sm_unusable", 2);
    assert!(matches!(
        &found[0],
        Anomaly::SmUnusable {
            node: 2,
            got: None,
            error: Some(_),
            ..
        }
    ));
    assert!(
        matches!(&found[1], Anomaly::SmUnusable { node: 2, got: Some(g), error: None, .. }
        if g.len() == 2)
    );
}

#[test]
fn sm_consumes_that_work_are_valid() {
    let mut b = HistoryBuilder::new();
    sm_base(&mut b);
    b.sm_create(1, OpType::Ok, "m1", "h1");
    b.sm_final_list(1, &[("m1", "h1")])
        .sm_final_list(2, &[("m1", "h1")]);
    b.sm_consume(1, "m1", &["apple-0"], Some(&["apple-0"]))
        .sm_consume(2, "m1", &["apple-0"], Some(&["apple-0"]));
    assert!(anomalies(&b.build().unwrap()).is_empty());
}

#[test]
fn info_send_then_read_is_recovered_not_lost() {
    let mut b = HistoryBuilder::new();
    let mut log = base(&mut b, 12);
    b.send_info(9, "w9-0", 0);
    log.push((12, "w9-0".into()));
    finals(&mut b, &refs(&log));
    let r = check(&b.build().unwrap());
    assert_eq!(r.valid, Validity::Valid, "{r:#?}");
    assert_eq!(r.lost, 0);
    assert_eq!(
        r.indeterminate_sends,
        Indeterminate {
            recovered: 1,
            unknown: 0
        }
    );
}

#[test]
fn info_send_never_read_is_unknown_not_lost() {
    let mut b = HistoryBuilder::new();
    let log = base(&mut b, 12);
    b.send_info(9, "w9-0", 0);
    // A send left without completion when the history ends is info too.
    b.send_invoke(10, "w10-0", 0);
    finals(&mut b, &refs(&log));
    let r = check(&b.build().unwrap());
    assert_eq!(r.valid, Validity::Valid, "{r:#?}");
    assert_eq!(r.lost, 0);
    assert_eq!(
        r.indeterminate_sends,
        Indeterminate {
            recovered: 0,
            unknown: 2
        }
    );
}

#[test]
fn missing_final_read_is_unknown() {
    let mut b = HistoryBuilder::new();
    let log = base(&mut b, 12);
    let r = refs(&log);
    b.final_read(1, 0, &r).final_read(2, 0, &r);
    b.final_read_info(3, 0);
    let res = check(&b.build().unwrap());
    assert_eq!(res.valid, Validity::Unknown);
    assert!(res.unknown_reasons.iter().any(|w| w.contains("node 3")));

    // Node 3 is named by the nemesis but never drained at all.
    let mut b = HistoryBuilder::new();
    let log = base(&mut b, 12);
    b.fault_start("pause", &[3]).fault_stop("pause", &[3]);
    let r = refs(&log);
    b.final_read(1, 0, &r).final_read(2, 0, &r);
    let res = check(&b.build().unwrap());
    assert_eq!(res.valid, Validity::Unknown);
    assert_eq!(res.unknown_reasons, ["no final read from node 3"]);
}

/// A membership move: partition 0 moved from nodes 1, 2, 3 to 2, 3, 4.
fn moved(b: &mut HistoryBuilder, n: u64) -> Vec<(u64, String)> {
    let log = base(b, n);
    b.fault_start("membership", &[2, 3, 4])
        .fault_stop("membership", &[2, 3, 4]);
    log
}

#[test]
fn a_node_that_left_a_partition_is_no_empty_log() {
    let mut b = HistoryBuilder::new();
    let log = moved(&mut b, 12);
    let r = refs(&log);
    b.final_read_not_replica(1, 0);
    for n in [2, 3, 4] {
        b.final_read(n, 0, &r);
    }
    let h = b.build().unwrap();
    assert!(anomalies(&h).is_empty(), "{:#?}", anomalies(&h));
    let res = check(&h);
    assert_eq!(res.valid, Validity::Valid, "{:?}", res.unknown_reasons);
    assert_eq!(res.nodes, vec![1, 2, 3, 4]);

    // Recorded as an empty log instead, the same answer would be a lagging replica.
    let mut b = HistoryBuilder::new();
    let log = moved(&mut b, 12);
    let r = refs(&log);
    b.final_read(1, 0, &[]);
    for n in [2, 3, 4] {
        b.final_read(n, 0, &r);
    }
    assert_only(&b.build().unwrap(), "unconverged", 1);
}

#[test]
fn a_write_only_the_leaving_node_had_is_lost() {
    // The holders lack w1-11; the node that left is not asked to vouch for it.
    let mut b = HistoryBuilder::new();
    let log = moved(&mut b, 12);
    let r = refs(&log);
    b.final_read_not_replica(1, 0);
    for n in [2, 3, 4] {
        b.final_read(n, 0, &r[..11]);
    }
    let found = assert_only(&b.build().unwrap(), "lost_write", 1);
    assert!(matches!(&found[0], Anomaly::LostWrite { value, .. } if value == "w1-11"));
}

#[test]
fn a_partition_no_node_holds_is_unknown() {
    let mut b = HistoryBuilder::new();
    base(&mut b, 12);
    for n in NODES {
        b.final_read_not_replica(n, 0);
    }
    let res = check(&b.build().unwrap());
    assert_eq!(res.valid, Validity::Unknown);
    assert_eq!(res.lost, 0);
    assert_eq!(
        res.unknown_reasons,
        ["no final read of partition 0 on any node"]
    );
}

#[test]
fn no_final_read_at_all_is_unknown_and_proves_no_loss() {
    let mut b = HistoryBuilder::new();
    base(&mut b, 12);
    let res = check(&b.build().unwrap());
    assert_eq!(res.valid, Validity::Unknown);
    assert_eq!(res.lost, 0);
    assert!(
        res.unknown_reasons
            .iter()
            .any(|w| w.contains("no final read of partition 0"))
    );
}

#[test]
fn zero_faults_is_unknown() {
    let mut b = HistoryBuilder::new();
    let mut log = Vec::new();
    for i in 0..12 {
        let v = format!("w1-{i}");
        b.send_ok(1, &v, 0, i);
        log.push((i, v));
    }
    finals(&mut b, &refs(&log));
    let res = check(&b.build().unwrap());
    assert_eq!(res.valid, Validity::Unknown);
    assert_eq!(
        res.unknown_reasons,
        ["no fault was injected: not a fault test"]
    );
}

/// A crash point that was never reached left the node alone: it counts apart,
/// and a run whose only faults were such is no fault test.
#[test]
fn a_crash_point_not_reached_is_no_fault() {
    let run = |reached: bool| {
        let mut b = HistoryBuilder::new();
        let mut log = Vec::new();
        b.fault_start("crash_at", &[2]);
        for i in 0..12 {
            let v = format!("w1-{i}");
            b.send_ok(1, &v, 0, i);
            log.push((i, v));
        }
        let detail = if reached {
            "node 2 aborted at raft-wal-synced after 1s; restarted"
        } else {
            "snapshot-synced not reached within 3s; node left running"
        };
        b.fault_stop_saying("crash_at", &[2], detail);
        finals(&mut b, &refs(&log));
        check(&b.build().unwrap())
    };
    let missed = run(false);
    assert_eq!(missed.valid, Validity::Unknown);
    assert_eq!(
        missed.unknown_reasons,
        ["no fault was injected: not a fault test"]
    );
    assert_eq!(
        missed.faults,
        std::collections::BTreeMap::from([("crash_at_not_reached".to_string(), 1)])
    );
    let hit = run(true);
    assert_eq!(hit.valid, Validity::Valid, "{:?}", hit.unknown_reasons);
    assert_eq!(
        hit.faults,
        std::collections::BTreeMap::from([("crash_at".to_string(), 1)])
    );
}

/// A clock step that no target node saw (none asked for the time) counts
/// apart from those that were seen, beside them in one run.
#[test]
fn a_clock_step_no_node_saw_is_no_fault() {
    let mut b = HistoryBuilder::new();
    let mut log = Vec::new();
    for (step, detail) in [
        "offsets not reached within 3s (no target asked for the time); clocks set right",
        "offsets seen by node(s) [2]; clocks set right",
    ]
    .into_iter()
    .enumerate()
    {
        b.fault_start("clock", &[2]);
        for i in 0..6 {
            let offset = step as u64 * 6 + i;
            let v = format!("w1-{offset}");
            b.send_ok(1, &v, 0, offset);
            log.push((offset, v));
        }
        b.fault_stop_saying("clock", &[2], detail);
    }
    finals(&mut b, &refs(&log));
    let r = check(&b.build().unwrap());
    assert_eq!(r.valid, Validity::Valid, "{:?}", r.unknown_reasons);
    assert_eq!(
        r.faults,
        std::collections::BTreeMap::from([
            ("clock".to_string(), 1),
            ("clock_not_reached".to_string(), 1)
        ])
    );
}

/// Reads that succeed do not make up for writes that all failed.
#[test]
fn a_run_whose_sends_all_failed_is_unknown() {
    let mut b = HistoryBuilder::new();
    let log = base(&mut b, 12);
    finals(&mut b, &refs(&log));
    let h = b.build().unwrap();
    assert_eq!(check(&h).valid, Validity::Valid);
    let opts = CheckOptions {
        min_ops: 100,
        ..CheckOptions::default()
    };
    // 12 acknowledged sends, 20 needed (a fifth of 100); plenty of ops otherwise.
    let res = check_with(&h, &opts);
    assert!(
        res.unknown_reasons
            .iter()
            .any(|r| r == "too few writes: 12 of 12 sends acknowledged, at least 20 needed"),
        "{:?}",
        res.unknown_reasons
    );
}

#[test]
fn too_few_ops_or_unavailable_nemesis_is_unknown() {
    let mut b = HistoryBuilder::new();
    let log = base(&mut b, 3);
    finals(&mut b, &refs(&log));
    let res = check(&b.build().unwrap());
    assert_eq!(res.valid, Validity::Unknown);
    assert!(res.unknown_reasons[0].starts_with("too few operations"));

    let mut b = HistoryBuilder::new();
    let log = base(&mut b, 12);
    b.fault_unavailable("partition", "nft: permission denied");
    finals(&mut b, &refs(&log));
    let res = check(&b.build().unwrap());
    assert_eq!(res.valid, Validity::Unknown);
    assert_eq!(
        res.nemesis_unavailable,
        ["partition: nft: permission denied"]
    );
}

#[test]
fn an_anomaly_beats_unknown() {
    // No faults and no final read from node 3, but a phantom read: invalid.
    let mut b = HistoryBuilder::new();
    b.send_ok(1, "w1-0", 0, 0);
    b.poll_ok(2, 3, 0, 0, &[(0, "w1-0"), (1, "ghost")]);
    b.final_read(1, 0, &[(0, "w1-0")]);
    let res = check(&b.build().unwrap());
    assert_eq!(res.valid, Validity::Invalid);
    assert!(!res.unknown_reasons.is_empty());
}

#[test]
fn availability_latency_and_recovery() {
    let mut b = HistoryBuilder::new();
    b.at(0).send_ok(1, "w1-0", 0, 0); // outside: ok
    b.at(100).fault_start("partition", &[1]);
    b.at(110).send_invoke(1, "w1-1", 0);
    b.at(150).send_complete(1, OpType::Fail, "w1-1", 0, 0); // during: fail
    b.at(160).send_ok(1, "w1-2", 0, 1); // during: ok (1 ms)
    b.at(200).fault_stop("partition", &[1]);
    b.at(230).send_invoke(1, "w1-3", 0);
    b.at(250).send_complete(1, OpType::Ok, "w1-3", 0, 2); // recovered 50 ms after heal
    let h = b.build().unwrap();
    let windows = figures::fault_windows(&h);
    assert_eq!(windows, [(100, 200)]);
    let a = figures::availability(&h, &windows);
    assert_eq!((a.during_faults.invoked, a.during_faults.ok), (2, 1));
    assert_eq!(a.during_faults.ok_pct, Some(50.0));
    assert_eq!(a.outside_faults.ok_pct, Some(100.0));
    let l = figures::latency(&h);
    assert_eq!((l.send_p50, l.send_p99, l.samples), (Some(1), Some(20), 3));
    assert_eq!(figures::recovery(&h, &windows), [Some(50)]);
}

#[test]
fn leader_changes_count_per_group() {
    let mut b = HistoryBuilder::new();
    b.leader(Some(0), 1)
        .leader(Some(0), 1)
        .leader(Some(1), 2)
        .leader(Some(0), 3)
        .leader(None, 1)
        .leader(None, 2);
    assert_eq!(figures::leader_changes(&b.build().unwrap()), 2);
}

#[test]
fn results_json_has_every_kind_and_a_three_state_verdict() {
    let mut b = HistoryBuilder::new();
    let log = base(&mut b, 12);
    finals(&mut b, &refs(&log));
    let res = check(&b.build().unwrap());
    let json = serde_json::to_value(&res).unwrap();
    assert_eq!(json["valid"], serde_json::json!(true));
    for k in KINDS {
        assert_eq!(json["anomalies"][k]["count"], 0, "{k}");
    }
    for key in [
        "ops",
        "faults",
        "lost",
        "duplicated",
        "leader_changes",
        "availability",
        "latency_ms",
        "recovery_ms",
    ] {
        assert!(json.get(key).is_some(), "{key}");
    }
    let back: CheckResult = serde_json::from_value(json).unwrap();
    assert_eq!(back, res);

    let unknown = serde_json::to_value(Validity::Unknown).unwrap();
    assert_eq!(unknown, serde_json::json!("unknown"));
    assert_eq!(
        serde_json::to_value(Validity::Invalid).unwrap(),
        serde_json::json!(false)
    );
}

/// A group history over `base`'s log of 4 records: member `a` reads
/// offsets 0-1, `b` takes over for 2-3, and a final drain by `c`.
fn group_base(b: &mut HistoryBuilder) -> Vec<(u64, String)> {
    let log = base(b, 4);
    let r = refs(&log);
    b.group_assign(20, "a", &[0])
        .group_poll(20, "a", 0, &r[..2], false);
    b.group_offsets(22, &[(0, 2)]);
    b.group_assign(21, "b", &[0])
        .group_poll(21, "b", 0, &r[2..], false);
    b.group_offsets(22, &[(0, 4)]);
    log
}

#[test]
fn a_clean_group_history_is_valid() {
    let mut b = HistoryBuilder::new();
    let log = group_base(&mut b);
    let r = refs(&log);
    b.group_assign(23, "c", &[0])
        .group_poll(23, "c", 0, &[], true);
    finals(&mut b, &r);
    let h = b.build().unwrap();
    assert!(anomalies(&h).is_empty(), "{:#?}", anomalies(&h));
    assert_eq!(check(&h).valid, Validity::Valid);
    // `a` given the partition back after `b` read it: no anomaly either.
    let mut b2 = HistoryBuilder::new();
    let log = group_base(&mut b2);
    let r = refs(&log);
    b2.group_assign(20, "a", &[0])
        .group_poll(20, "a", 0, &r[3..], false);
    b2.group_poll(23, "c", 0, &[], true);
    finals(&mut b2, &r);
    assert!(anomalies(&b2.build().unwrap()).is_empty());
}

#[test]
fn a_record_no_member_was_handed_is_skipped() {
    let mut b = HistoryBuilder::new();
    let log = base(&mut b, 4);
    let r = refs(&log);
    b.group_assign(20, "a", &[0])
        .group_poll(20, "a", 0, &[r[0], r[1], r[3]], false);
    b.group_poll(20, "a", 0, &[], true);
    finals(&mut b, &r);
    let found = assert_only(&b.build().unwrap(), "group_skipped", 1);
    assert!(matches!(&found[0], Anomaly::GroupSkipped { offset: 2, .. }));
}

#[test]
fn an_undrained_group_makes_the_run_unknown() {
    let mut b = HistoryBuilder::new();
    let log = group_base(&mut b);
    finals(&mut b, &refs(&log));
    let r = check(&b.build().unwrap());
    assert_eq!(r.valid, Validity::Unknown);
    assert!(
        r.unknown_reasons
            .iter()
            .any(|u| u.contains("did not drain")),
        "{:?}",
        r.unknown_reasons
    );
}

#[test]
fn a_member_reading_on_after_another_took_over_is_concurrent() {
    let mut b = HistoryBuilder::new();
    let log = group_base(&mut b);
    let r = refs(&log);
    // `a` is handed more of partition 0 after `b` was, never given it again.
    b.group_poll(20, "a", 0, &r[2..3], false);
    b.group_poll(23, "c", 0, &[], true);
    finals(&mut b, &r);
    assert_only(&b.build().unwrap(), "group_concurrent_read", 1);
}

#[test]
fn a_committed_offset_going_back_is_a_regression() {
    let mut b = HistoryBuilder::new();
    let log = group_base(&mut b);
    let r = refs(&log);
    b.group_offsets(22, &[(0, 3)]);
    b.group_poll(23, "c", 0, &[], true);
    finals(&mut b, &r);
    let found = assert_only(&b.build().unwrap(), "group_offset_regressed", 1);
    assert!(matches!(
        &found[0],
        Anomaly::GroupOffsetRegressed { from: 4, to: 3, .. }
    ));
}
