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
    // Every node answers for itself: pid, data dir, online.
    let status: serde_json::Value =
        serde_json::from_str(&env.ok(&["cluster", "status", "-O", "json"])).unwrap();
    let nodes = status["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    assert!(
        nodes
            .iter()
            .all(|n| n["healthy"] == true && n["pid"].as_u64().unwrap() > 0),
        "{status}"
    );
    let spus: serde_json::Value =
        serde_json::from_str(&env.ok(&["cluster", "spu", "list", "-O", "json"])).unwrap();
    let held: u64 = spus
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["partitions_held"].as_u64().unwrap())
        .sum();
    let led: u64 = spus
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["partitions_led"].as_u64())
        .sum();
    assert_eq!(
        (held, led),
        (3, 1),
        "one partition, three replicas, one leader: {spus}"
    );
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

#[test]
fn a_following_consumer_survives_the_loss_of_the_replica_it_reads_from() {
    use std::time::Duration;

    let env = Env::started_with(3);
    env.ok(&["topic", "create", "feed", "-r", "3"]);
    let first = lines(100, "a");
    env.ok_with_input(&["produce", "feed"], first.as_bytes());

    // A follower read goes to the first replica (in assignment order) that
    // is not the leader: that is the one to kill.
    let described: serde_json::Value =
        serde_json::from_str(&env.ok(&["topic", "describe", "feed", "-O", "json"])).unwrap();
    let replicas: Vec<u64> = described["assignments"][0]["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_u64().unwrap())
        .collect();
    let old_leader = leader(&env, "feed");
    let serving = *replicas.iter().find(|r| **r != old_leader).unwrap();

    let (mut consumer, rx) = env.follow(&["consume", "feed", "-B", "--read-from", "follower"]);
    let mut got = Vec::new();
    while got.len() < 100 {
        got.push(
            rx.recv_timeout(Duration::from_secs(20))
                .expect("the first records arrive"),
        );
    }

    env.kill(serving);
    let second = lines(100, "b");
    env.ok_with_input(&["produce", "feed"], second.as_bytes());
    while got.len() < 200 {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => got.push(line),
            Err(_) => break,
        }
    }
    consumer.kill().unwrap();
    consumer.wait().unwrap();
    let expected: Vec<String> = first
        .lines()
        .chain(second.lines())
        .map(String::from)
        .collect();
    assert!(
        got == expected,
        "the consumer got {} records, expected 200 without gap or repeat",
        got.len()
    );
}

/// The controller leader, from `cluster status -O json`.
fn controller_leader(env: &Env) -> u64 {
    let status: serde_json::Value =
        serde_json::from_str(&env.ok(&["cluster", "status", "-O", "json"])).unwrap();
    status["controller_leader"]
        .as_u64()
        .expect("a controller leader")
}

#[test]
fn metadata_stays_available_while_a_majority_of_controller_voters_lives() {
    // Three voters: one (the leader) may go.
    let env = Env::started_with(3);
    env.kill(controller_leader(&env));
    env.ok(&["topic", "create", "after-one-loss"]);
    assert!(env.ok(&["topic", "list"]).contains("after-one-loss"));

    // Five voters: two (the leader among them) may go.
    let env = Env::started_with_controllers(5, 5);
    let first = controller_leader(&env);
    env.kill(first);
    let second = if first == 5 { 4 } else { 5 };
    env.kill(second);
    // New partitions go to the nodes the controller hears from, so an RF=3
    // topic created now takes writes at once.
    env.ok(&["topic", "create", "after-two-losses", "-r", "3", "-p", "2"]);
    assert!(env.ok(&["topic", "list"]).contains("after-two-losses"));
    for p in ["0", "1"] {
        env.ok_with_input(&["produce", "after-two-losses", "-p", p], b"still here\n");
        assert_eq!(
            env.ok(&["consume", "after-two-losses", "-p", p, "-B", "-d"]),
            "still here\n"
        );
    }
    let err = env.fails(&["topic", "create", "too-wide", "-r", "4"], b"");
    assert!(
        err.contains("3 of the cluster's 5 node(s) are reachable"),
        "{err}"
    );
    env.ok(&["topic", "delete", "after-two-losses"]);
    assert!(!env.ok(&["topic", "list"]).contains("after-two-losses"));
}
