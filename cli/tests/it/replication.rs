//! Several nodes: partitions replicated by Raft across real node processes.

use std::time::Duration;

use crate::harness::{
    Env, lines, log_difference, partition_leader as leader, produce_across_leader_kill, sample,
    scrape, wait_until, wait_until_replicas_caught_up,
};

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
    let second = lines(3_000, "during");
    produce_across_leader_kill(
        &env,
        "replicated",
        &[],
        &second,
        (4096, Duration::from_millis(5)),
        Duration::from_millis(100),
    );

    // The killed node comes back and catches up; the log holds every
    // acknowledged record exactly once, in order: a batch whose answer died
    // with the leader is re-sent under the same producer sequence and
    // recognised by the new leader.
    env.start();
    let consumed = env.ok(&["consume", "replicated", "-B", "-d"]);
    let expected = first.clone() + &second;
    assert!(
        consumed == expected,
        "the log differs from the acknowledged records: {}",
        log_difference(&consumed, &expected)
    );

    // The restarted node catches up: asked on the leader, every replica's
    // lag reaches zero entries.
    wait_until_replicas_caught_up(&env, "replicated", Duration::from_secs(20));

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

#[test]
fn a_controller_leader_without_its_followers_says_so_instead_of_hanging() {
    let env = Env::started_with(3);
    let leader = controller_leader(&env);
    let followers: Vec<u64> = (1..=3).filter(|&n| n != leader).collect();
    for &n in &followers {
        env.signal(n, libc::SIGSTOP);
    }
    // The leader takes the change but cannot commit it: the client hears why
    // (before this, it waited for its own 30 s timeout and said "timed out").
    let err = env.fails(&["topic", "create", "cut-off"], b"");
    assert!(
        err.contains(&format!("node {leader}, its leader, ")) && err.contains("majority"),
        "{err}"
    );
    // Once the followers are back, the cluster takes changes again. The
    // proposal may or may not survive (a follower elected first drops it), so
    // creating the topic again either succeeds or finds it there, once.
    for &n in &followers {
        env.signal(n, libc::SIGCONT);
    }
    wait_until(Duration::from_secs(20), || {
        let out = env.run(&["topic", "create", "cut-off"], b"");
        out.status.success() || String::from_utf8_lossy(&out.stderr).contains("already exists")
    });
    let list = env.ok(&["topic", "list"]);
    assert_eq!(list.matches("cut-off").count(), 1, "{list}");
}

/// A change sent to a node that is not the controller leader is forwarded to
/// the leader; when that leader has lost its majority the forward fails
/// within a bound (the leader's commit deadline plus the forward's slack),
/// naming the leader, instead of waiting for the heal or the client's timeout.
#[test]
fn a_change_forwarded_to_a_controller_leader_without_its_majority_fails_within_a_bound() {
    // Three controller voters and node 4, a learner that forwards changes.
    let env = Env::started_with(4);
    let leader = controller_leader(&env);
    assert!(leader <= 3, "a voter leads: {leader}");
    let followers: Vec<u64> = (1..=3).filter(|&n| n != leader).collect();
    for &n in &followers {
        env.signal(n, libc::SIGSTOP);
    }
    let learner = format!("127.0.0.1:{}", env.port + 3);
    let started = std::time::Instant::now();
    let err = env.fails(
        &["topic", "create", "forwarded", "--endpoint", &learner],
        b"",
    );
    let waited = started.elapsed();
    for &n in &followers {
        env.signal(n, libc::SIGCONT);
    }
    assert!(
        err.contains(&format!("node {leader}")) && err.contains("majority"),
        "{err}"
    );
    // The client's own timeout is 30 s: the answer must come from the bound.
    assert!(
        waited < Duration::from_secs(25),
        "answered after {waited:?}: {err}"
    );

    // A leader that does not answer at all (stopped, with one follower, so
    // that the other cannot be elected): the forward's own deadline (or the
    // connect deadline, if the connection must be made anew) answers.
    let leader = {
        let mut leader = 0;
        wait_until(Duration::from_secs(20), || {
            let out = env.run(&["cluster", "status", "-O", "json"], b"");
            let status: serde_json::Value =
                serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
            leader = status["controller_leader"].as_u64().unwrap_or(0);
            (1..=3).contains(&leader)
        });
        leader
    };
    let stopped = [leader, (1..=3).find(|&n| n != leader).unwrap()];
    for &n in &stopped {
        env.signal(n, libc::SIGSTOP);
    }
    let started = std::time::Instant::now();
    let err = env.fails(&["topic", "create", "silent", "--endpoint", &learner], b"");
    let waited = started.elapsed();
    for &n in &stopped {
        env.signal(n, libc::SIGCONT);
    }
    // Leadership may have moved between the status read and the stop (the
    // first part's pause can end in a late election): the learner names
    // whichever stopped node it takes for the leader.
    assert!(
        stopped.iter().any(|n| err.contains(&format!("node {n} ")))
            && (err.contains("did not answer within") || err.contains("cannot reach")),
        "{err}"
    );
    assert!(
        waited < Duration::from_secs(25),
        "answered after {waited:?}: {err}"
    );
}

#[test]
fn a_client_of_one_node_lists_the_leader_and_offsets_of_partitions_it_does_not_host() {
    use sluice_client::Client;

    let env = Env::started_with(3);
    // One replica each: every node holds some partitions and not the others.
    env.ok(&["topic", "create", "single", "-p", "3"]);
    for p in 0..3u32 {
        let records = lines(p as usize + 1, "r");
        env.ok_with_input(
            &["produce", "single", "-p", &p.to_string()],
            records.as_bytes(),
        );
    }
    let ca = std::fs::read_to_string(env.home.path().join("local/ca/ca.pem")).unwrap();
    // The first node only: it is the client's bootstrap node.
    let endpoint = format!("127.0.0.1:{}", env.port);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let partitions = rt.block_on(async {
        let client = Client::connect(&endpoint, &ca, Some(env.admin_identity()))
            .await
            .unwrap();
        client.list_partitions(Some("single")).await.unwrap()
    });
    let hosted_elsewhere = partitions
        .iter()
        .filter(|p| p.replicas.iter().all(|r| r.node != 1))
        .count();
    assert!(
        hosted_elsewhere > 0,
        "node 1 hosts every partition: {partitions:?}"
    );
    for p in &partitions {
        let replica = p.replicas[0].node;
        assert_eq!(p.leader, Some(replica), "{p:?}");
        assert_eq!(p.committed_offset, u64::from(p.partition) + 1, "{p:?}");
    }
}

/// A write to an idle partition whose leader died is taken as soon as the
/// writer finds the leader gone: the write sent to a follower (a fresh CLI
/// tries the nodes in turn), or the client asking the followers whom they
/// follow while its request to the leader goes unanswered, makes each
/// follower ask the leader's node at once instead of waiting for its
/// background probes (every 5 s here, so they would wake the group only
/// after about 17 s: longer than the write may take).
#[test]
fn a_write_to_a_sleeping_partition_whose_leader_died_makes_its_followers_ask_at_once() {
    let env = Env::with_ports_for(3);
    let port = env.port.to_string();
    env.ok(&[
        "cluster",
        "start",
        "--local",
        "--spus",
        "3",
        "--port",
        &port,
        "--quiesce-probe",
        "5s",
    ]);
    env.ok(&["topic", "create", "doubted", "-r", "3"]);
    env.ok_with_input(&["produce", "doubted"], b"before\n");
    let metric = |node: u64, name: &str, labels: &[&str]| {
        scrape(env.port + node as u16 - 1)
            .and_then(|body| sample(&body, name, labels))
            .unwrap_or(0.0)
    };
    // The controller's group and the partition's, on every node.
    wait_until(Duration::from_secs(30), || {
        (1..=3).all(|n| metric(n, "sluice_raft_groups_asleep", &[]) == 2.0)
    });
    let old = leader(&env, "doubted");
    env.kill(old);

    env.ok_with_input(
        &["produce", "doubted", "--delivery-timeout", "10s"],
        b"after\n",
    );
    let doubted = r#"why="its doubted leader's node did not answer""#;
    let woken: f64 = (1..=3)
        .filter(|n| *n != old)
        .map(|n| metric(n, "sluice_raft_group_wakes_total", &[doubted]))
        .sum();
    assert!(woken >= 1.0, "no follower woke on asking the dead leader");
    assert_eq!(
        env.ok(&["consume", "doubted", "-B", "-d"]),
        "before\nafter\n"
    );
}
