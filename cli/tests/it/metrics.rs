//! The Prometheus endpoint of a real node: figures that move with the work
//! done, and a node that serves without metrics when their port is taken.

use std::time::Duration;

use crate::harness::{Env, module, sample, scrape, wait_until};

#[test]
fn the_metrics_endpoint_counts_the_work_done() {
    let env = Env::started();
    env.ok(&["topic", "create", "metered"]);
    let partition = ["topic=\"metered\"", "partition=\"0\""];
    let mut before = String::new();
    wait_until(Duration::from_secs(10), || {
        before = scrape(env.port).unwrap_or_default();
        before.contains("sluice_wal_fsync_seconds_count")
    });
    let fsyncs = |body: &str| sample(body, "sluice_wal_fsync_seconds_count", &[]).unwrap_or(0.0);
    assert_eq!(
        sample(&before, "sluice_partition_records_in_total", &partition),
        None
    );

    let input: String = (0..20).map(|i| format!("record-{i:02}\n")).collect();
    env.ok_with_input(&["produce", "metered"], input.as_bytes());
    let read = env.ok(&["consume", "metered", "-B", "-d"]);
    assert_eq!(read.lines().count(), 20, "{read}");

    // Counters move at once; offsets and leadership are sampled every 2 s,
    // one gauge after another, so a scrape can land between two of them:
    // wait for both.
    let mut after = String::new();
    wait_until(Duration::from_secs(10), || {
        after = scrape(env.port).unwrap_or_default();
        sample(&after, "sluice_partition_end_offset", &partition) == Some(20.0)
            && sample(&after, "sluice_partition_is_leader", &partition).is_some()
    });
    let value = |name| sample(&after, name, &partition);
    assert_eq!(
        value("sluice_partition_records_in_total"),
        Some(20.0),
        "{after}"
    );
    // 20 values of 9 bytes each.
    assert_eq!(value("sluice_partition_bytes_in_total"), Some(180.0));
    assert_eq!(value("sluice_partition_records_out_total"), Some(20.0));
    assert_eq!(value("sluice_partition_bytes_out_total"), Some(180.0));
    assert_eq!(value("sluice_partition_is_leader"), Some(1.0));
    assert!(fsyncs(&after) > fsyncs(&before), "produce fsyncs the WAL");
    // Where a produce spent its time: the request, its Raft write, the apply.
    let count = |name, labels: &[&str]| sample(&after, name, labels).unwrap_or(0.0);
    let produced = count("sluice_request_seconds_count", &["kind=\"produce\""]);
    assert!(produced >= 1.0, "{after}");
    assert_eq!(count("sluice_produce_seconds_count", &[]), produced);
    assert!(count("sluice_raft_write_seconds_count", &[]) >= produced);
    assert!(count("sluice_raft_apply_seconds_count", &[]) >= produced);
    // The produce's entries were appended and made durable (openraft may
    // put several entries into one append, so this counts appends, not
    // entries).
    let appends =
        |body: &str| sample(body, "sluice_raft_log_append_seconds_count", &[]).unwrap_or(0.0);
    assert!(appends(&after) > appends(&before), "{after}");
    assert!(sample(&after, "sluice_process_resident_memory_bytes", &[]).unwrap() > 1e6);
    assert!(
        sample(&after, "sluice_quic_connections", &[]).is_some(),
        "{after}"
    );
    env.ok(&["cluster", "shutdown"]);
}

#[test]
fn a_node_whose_metrics_port_is_taken_serves_without_them() {
    let env = Env::new();
    let _taken = std::net::TcpListener::bind(("127.0.0.1", env.port)).unwrap();
    env.start();
    env.ok(&["topic", "create", "unmetered"]);
    env.ok_with_input(&["produce", "unmetered"], b"still served\n");
    let log = std::fs::read_to_string(env.node_dir().join("node.log")).unwrap();
    assert!(
        log.contains("cannot serve metrics; the node runs without them"),
        "{log}"
    );
    let started = env.ok(&["cluster", "shutdown"]);
    drop(started);
}

/// An idle cluster's controller group sleeps like a partition's (no
/// heartbeats), a topic created while it sleeps still finds every node
/// live, and when the node leading it dies the others notice through their
/// leader probes, elect another, and metadata changes go on.
#[test]
fn an_idle_controller_sleeps_and_still_fails_over() {
    let env = Env::started_with(3);
    let asleep = |node: u16| {
        scrape(env.port + node)
            .and_then(|body| sample(&body, "sluice_raft_groups_asleep", &[]))
            .unwrap_or(0.0)
    };
    // No topic: the only group is the controller's.
    wait_until(Duration::from_secs(20), || (0..3).all(|n| asleep(n) == 1.0));
    // Liveness of nodes is read from the controller leader's heartbeats,
    // which a sleeping leader does not send: creating a topic wakes it and
    // waits for fresh ones, instead of finding every other node dead.
    std::thread::sleep(Duration::from_secs(4));
    env.ok(&["topic", "create", "while-asleep", "-r", "3"]);

    let status = |env: &Env| -> serde_json::Value {
        serde_json::from_str(&env.ok(&["cluster", "status", "-O", "json"])).unwrap()
    };
    let leader = status(&env)["controller_leader"].as_u64().unwrap();
    env.kill(leader);
    // A metadata change needs a controller leader: the CLI's own retries
    // find the new one once the survivors have elected it.
    env.ok(&["topic", "create", "after-failover"]);
    let now = status(&env)["controller_leader"].as_u64().unwrap();
    assert_ne!(now, leader, "the dead node still leads the controller");
    env.ok_with_input(&["produce", "after-failover"], b"kept\n");
    assert_eq!(env.ok(&["consume", "after-failover", "-B", "-d"]), "kept\n");
}

/// Connectors do not keep an idle cluster awake: the controller's leader
/// learns that each connector's node is live from the probes that watch
/// sleeping groups, and wakes no group to ask (it woke its own every 3 s,
/// `member liveness asked for`). The move off a silent node, which still
/// reads heartbeats, is `connectors::the_cluster_runs_a_connector_moves_it_off_a_killed_node_and_stops_it_when_deleted`.
#[test]
fn an_idle_cluster_with_a_connector_sleeps() {
    let env = Env::started_with(3);
    env.ok(&["topic", "create", "a", "-r", "3"]);
    env.ok_with_input(&["produce", "a"], b"one\n");
    env.ok(&["topic", "create", "b", "--from", "a"]);
    let asleep = |node: u16| {
        scrape(env.port + node)
            .and_then(|body| sample(&body, "sluice_raft_groups_asleep", &[]))
            .unwrap_or(0.0)
    };
    // Each node: the controller's group, the audit trail's partition, a/0
    // and b/0. Probes start once a group sleeps: a second for the first
    // answers to be in.
    wait_until(Duration::from_secs(30), || (0..3).all(|n| asleep(n) == 4.0));
    std::thread::sleep(Duration::from_secs(1));
    let liveness_wakes = || -> Vec<f64> {
        (0..3)
            .map(|n| {
                scrape(env.port + n)
                    .and_then(|body| {
                        sample(
                            &body,
                            "sluice_raft_group_wakes_total",
                            &["why=\"member liveness asked for\""],
                        )
                    })
                    .unwrap_or(0.0)
            })
            .collect()
    };
    let before = liveness_wakes();
    // More than two placement rounds (`CONNECTOR_PLACEMENT_INTERVAL`, 3 s).
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(
        liveness_wakes(),
        before,
        "the controller woke to check liveness"
    );
    assert!((0..3).all(|n| asleep(n) == 4.0), "a group is awake");
    let listed = env.ok(&["connector", "list"]);
    assert!(listed.contains("running"), "{listed}");
}

/// A registered filter run by consumers: its calls, records in and out and
/// busy time are counted under its name; a module that fails counts an error.
#[test]
fn smartmodules_are_metered_by_name() {
    let env = Env::started();
    env.ok(&["topic", "create", "words"]);
    env.ok_with_input(&["produce", "words"], b"apple\nplum\nbanana\nfig\n");
    let filter = module("hello-filter");
    env.ok(&["smart-module", "create", "has-a", "--wasm-file", &filter]);
    // hello-filter keeps the records with an `a`.
    assert_eq!(
        env.ok(&["consume", "words", "-B", "-d", "--smartmodule", "has-a"]),
        "apple\nbanana\n"
    );
    let panics = module("test-panic");
    env.fails(
        &[
            "consume", "words", "-B", "-d", "--filter", &panics, "-e", "at=1",
        ],
        b"",
    );
    let module = ["module=\"has-a\""];
    let mut body = String::new();
    wait_until(Duration::from_secs(10), || {
        body = scrape(env.port).unwrap_or_default();
        sample(&body, "sluice_smartmodule_records_out_total", &module) == Some(2.0)
    });
    assert_eq!(
        sample(&body, "sluice_smartmodule_records_in_total", &module),
        Some(4.0),
        "{body}"
    );
    assert!(sample(&body, "sluice_smartmodule_calls_total", &module).unwrap() >= 1.0);
    assert!(sample(&body, "sluice_smartmodule_busy_microseconds_total", &module).unwrap() > 0.0);
    assert!(
        sample(&body, "sluice_smartmodule_errors_total", &[]).unwrap_or(0.0) >= 1.0,
        "{body}"
    );
}

/// A partition's leader replicates to its followers on append streams
/// (pipelined replication): the nodes count streams opened and none
/// refused, a partition written now and then keeps its streams from one
/// write to the next, and what was produced reads back whole from every
/// replica.
#[test]
fn replication_travels_on_append_streams() {
    let env = Env::started_with(3);
    env.ok(&["topic", "create", "streamed", "-r", "3"]);
    let input: String = (0..200).map(|i| format!("record-{i:03}\n")).collect();
    env.ok_with_input(&["produce", "streamed"], input.as_bytes());
    let streams = |outcome: &str| -> f64 {
        let label = format!("outcome=\"{outcome}\"");
        (0..3)
            .filter_map(|n| scrape(env.port + n))
            .filter_map(|body| sample(&body, "sluice_raft_append_streams_total", &[&label]))
            .sum()
    };
    assert!(streams("opened") >= 1.0, "no append stream was opened");
    assert_eq!(streams("refused"), 0.0);
    // A write now and then: openraft starts a session per append (the
    // entries, then the commit) to each of two followers, so at least 4
    // streams a write if sessions did not take over the last one's.
    let opened = streams("opened");
    let mut more = String::new();
    for i in 0..10 {
        let line = format!("later-{i}\n");
        env.ok_with_input(&["produce", "streamed"], line.as_bytes());
        more.push_str(&line);
    }
    let reopened = streams("opened") - opened;
    assert!(
        reopened < 10.0,
        "{reopened} streams opened for 10 writes: sessions do not take over parked streams"
    );
    let input = input + &more;
    for node in 1..=3 {
        let read = env.ok(&[
            "consume",
            "streamed",
            "-B",
            "-d",
            "--replica",
            &node.to_string(),
        ]);
        assert_eq!(read, input, "replica on node {node}");
    }
}
