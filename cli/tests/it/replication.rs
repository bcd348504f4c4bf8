//! Several nodes: partitions replicated by Raft across real node processes.

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

#[test]
fn killing_the_partition_leader_during_produce_loses_no_acknowledged_record() {
    let env = Env::started_with(3);
    env.ok(&["topic", "create", "replicated", "-r", "3"]);
    let first = lines(1_000, "before");
    env.ok_with_input(&["produce", "replicated"], first.as_bytes());

    // Kill the leader while a producer is writing: the producer must carry
    // on against the new leader and every record must be acknowledged.
    let old = leader(&env, "replicated");
    let second = lines(3_000, "during");
    let mut producer = env
        .command(&["produce", "replicated"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = producer.stdin.take().unwrap();
    let feed = {
        let second = second.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            for chunk in second.as_bytes().chunks(4096) {
                stdin.write_all(chunk).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(100));
    env.kill(old);
    feed.join().unwrap();
    let out = producer.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "producer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(leader(&env, "replicated"), old, "a new leader took over");

    // The killed node comes back and catches up; the log holds every
    // acknowledged record exactly once, in order: a batch whose answer died
    // with the leader is re-sent under the same producer sequence and
    // recognised by the new leader.
    env.start();
    let consumed = env.ok(&["consume", "replicated", "-B", "-d"]);
    let expected = first.clone() + &second;
    if consumed != expected {
        let mut counts = std::collections::HashMap::new();
        for line in consumed.lines() {
            *counts.entry(line).or_insert(0) += 1;
        }
        let duplicated = counts.values().filter(|c| **c > 1).count();
        let lost = expected.lines().filter(|l| !counts.contains_key(l)).count();
        panic!(
            "the log differs from the acknowledged records: {lost} lost, {duplicated} duplicated, order or content otherwise"
        );
    }

    // The restarted node catches up: asked on the leader, every replica's
    // lag reaches zero entries.
    let now_leader = leader(&env, "replicated");
    let endpoint = format!("127.0.0.1:{}", env.port as u64 + now_leader - 1);
    crate::harness::wait_until(std::time::Duration::from_secs(20), || {
        let out = env.ok(&[
            "partition",
            "list",
            "replicated",
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

    // Every replica serves the same log (follower reads serve committed
    // records from the follower's own copy).
    for node in 1..=3 {
        let replica = node.to_string();
        let read = env.ok(&["consume", "replicated", "-B", "-d", "--replica", &replica]);
        assert!(
            read == expected,
            "replica {node} differs from the acknowledged log"
        );
    }
    let from_follower = env.ok(&[
        "consume",
        "replicated",
        "-B",
        "-d",
        "--read-from",
        "follower",
    ]);
    assert!(
        from_follower == expected,
        "a follower read differs from the acknowledged log"
    );
}
