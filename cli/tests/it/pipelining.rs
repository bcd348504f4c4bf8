//! An idempotent producer with several batches per partition in flight: the
//! partition writes them in sequence order, once each, across a failover.

use std::time::Duration;

use std::io::Write;
use std::process::Stdio;

use crate::harness::{
    Env, lines, log_difference, produce_across_leader_kill, wait_until_replicas_caught_up,
};

#[test]
fn pipelined_batches_survive_a_leader_kill_in_order_and_exactly_once() {
    let env = Env::with_ports_for(3);
    // Besides the kill, every 40th committed produce goes unanswered (debug
    // builds only): resends of written batches while later ones are in flight
    // and acknowledged.
    env.start_with_env(3, &[("SLUICE_DEBUG_DROP_PRODUCE_ACKS", "40")]);
    env.ok(&["topic", "create", "pipelined", "-r", "3"]);
    // Small batches sent without lingering, fed faster than one batch per
    // round trip: the producer keeps several batches of the partition on the
    // wire (up to five), so the leader kill below catches some in flight,
    // some of them written and unacknowledged, some not written.
    let records = lines(20_000, "pipelined");
    produce_across_leader_kill(
        &env,
        "pipelined",
        &["--batch-size", "300B", "--linger", "0ms"],
        &records,
        (2048, Duration::from_millis(3)),
        Duration::from_millis(200),
    );

    // The killed node comes back; every replica holds every record exactly
    // once, in the order sent.
    env.start();
    wait_until_replicas_caught_up(&env, "pipelined", Duration::from_secs(30));
    for node in 1..=3 {
        let replica = node.to_string();
        let read = env.ok(&["consume", "pipelined", "-B", "-d", "--replica", &replica]);
        assert!(
            read == records,
            "replica {node} differs from the records sent: {}",
            log_difference(&read, &records)
        );
    }
}

/// Idempotent producers writing to one partition at once, each with several
/// batches in flight and some acknowledgements dropped (so some batches are
/// resent after they were written): every replica holds each producer's
/// records once each, in the order that producer sent them.
#[test]
fn concurrent_producers_are_each_stored_once_in_order() {
    const PRODUCERS: usize = 6;
    const RECORDS: usize = 3_000;
    let env = Env::with_ports_for(3);
    env.start_with_env(3, &[("SLUICE_DEBUG_DROP_PRODUCE_ACKS", "50")]);
    env.ok(&["topic", "create", "shared", "-r", "3"]);
    // Small batches without lingering, each producer keeping up to five on
    // the wire: batches of different producers interleave in the Raft log.
    let children: Vec<_> = (0..PRODUCERS)
        .map(|i| {
            let mut child = env
                .command(&[
                    "produce",
                    "shared",
                    "--batch-size",
                    "200B",
                    "--linger",
                    "0ms",
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let input = lines(RECORDS, &format!("producer-{i}"));
            let mut stdin = child.stdin.take().unwrap();
            std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
            child
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a producer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    wait_until_replicas_caught_up(&env, "shared", Duration::from_secs(30));
    for node in 1..=3 {
        let replica = node.to_string();
        let read = env.ok(&["consume", "shared", "-B", "-d", "--replica", &replica]);
        assert_eq!(read.lines().count(), PRODUCERS * RECORDS, "replica {node}");
        for i in 0..PRODUCERS {
            let prefix = format!("producer-{i}");
            let mine: String = read
                .lines()
                .filter(|l| l.starts_with(&format!("{prefix}-")))
                .map(|l| format!("{l}\n"))
                .collect();
            let sent = lines(RECORDS, &prefix);
            assert!(
                mine == sent,
                "replica {node}, {prefix}: {}",
                log_difference(&mine, &sent)
            );
        }
    }
}
