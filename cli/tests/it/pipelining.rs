//! An idempotent producer with several batches per partition in flight: the
//! partition writes them in sequence order, once each, across a failover.

use std::process::Stdio;

use crate::harness::{Env, lines};

/// The leader of partition 0 of `topic`, from `partition list -O json`.
fn leader(env: &Env, topic: &str) -> u64 {
    let out = env.ok(&["partition", "list", topic, "-O", "json"]);
    let parts: serde_json::Value = serde_json::from_str(&out).unwrap();
    parts[0]["leader"]
        .as_u64()
        .unwrap_or_else(|| panic!("no leader in {out}"))
}

/// Why `log` is not `expected`, line by line.
fn difference(log: &str, expected: &str) -> String {
    let mut counts = std::collections::HashMap::new();
    for line in log.lines() {
        *counts.entry(line).or_insert(0) += 1;
    }
    let duplicated = counts.values().filter(|c| **c > 1).count();
    let lost = expected.lines().filter(|l| !counts.contains_key(l)).count();
    let first_misplaced = log.lines().zip(expected.lines()).position(|(a, b)| a != b);
    format!(
        "{lost} lost, {duplicated} duplicated, first difference at line {first_misplaced:?} (of {} read, {} expected)",
        log.lines().count(),
        expected.lines().count()
    )
}

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
    let mut producer = env
        .command(&[
            "produce",
            "pipelined",
            "--batch-size",
            "300B",
            "--linger",
            "0ms",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = producer.stdin.take().unwrap();
    let old = leader(&env, "pipelined");
    let feed = {
        let records = records.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            for chunk in records.as_bytes().chunks(2048) {
                stdin.write_all(chunk).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(3));
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(200));
    env.kill(old);
    feed.join().unwrap();
    let out = producer.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "producer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(leader(&env, "pipelined"), old, "a new leader took over");

    // The killed node comes back; every replica holds every record exactly
    // once, in the order sent.
    env.start();
    let now_leader = leader(&env, "pipelined");
    let endpoint = format!("127.0.0.1:{}", env.port as u64 + now_leader - 1);
    crate::harness::wait_until(std::time::Duration::from_secs(30), || {
        let out = env.ok(&[
            "partition",
            "list",
            "pipelined",
            "-O",
            "json",
            "--endpoint",
            &endpoint,
        ]);
        let parts: serde_json::Value = serde_json::from_str(&out).unwrap();
        let replicas = parts[0]["replicas"].as_array().unwrap().clone();
        replicas.len() == 3
            && replicas
                .iter()
                .all(|r| r["lag_entries"].as_u64() == Some(0))
    });
    for node in 1..=3 {
        let replica = node.to_string();
        let read = env.ok(&["consume", "pipelined", "-B", "-d", "--replica", &replica]);
        assert!(
            read == records,
            "replica {node} differs from the records sent: {}",
            difference(&read, &records)
        );
    }
}
