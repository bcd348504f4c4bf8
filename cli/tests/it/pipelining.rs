//! An idempotent producer with several batches per partition in flight: the
//! partition writes them in sequence order, once each, across a failover.

use std::time::Duration;

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
