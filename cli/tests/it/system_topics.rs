//! System topics (the cluster's audit trail; `--system` on topic and
//! partition commands) and where keyed records land: what Fluvio's own CLI
//! tests check of these, checked here in our words.

use std::time::Duration;

use crate::harness::{Env, wait_until};

/// The names `topic list --system -O json` prints.
fn system_topics(env: &Env) -> Vec<String> {
    let listed: serde_json::Value =
        serde_json::from_str(&env.ok(&["topic", "list", "--system", "-O", "json"])).unwrap();
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn system_topics_are_listed_apart_and_deleted_only_by_force() {
    let env = Env::started_with(2);
    // The cluster creates its audit topic by itself, on both nodes.
    wait_until(Duration::from_secs(30), || {
        system_topics(&env) == ["sluice-audit"]
    });
    let described = env.ok(&["topic", "describe", "sluice-audit"]);
    for line in ["replication       2", "system            yes"] {
        assert!(described.contains(line), "{line:?} in {described}");
    }
    env.ok(&["topic", "create", "orders"]);
    // Its name is the cluster's.
    let taken = env.fails(&["topic", "create", "sluice-audit"], b"");
    assert!(taken.contains("the cluster's audit topic"), "{taken}");
    let created = env.ok(&["topic", "create", "internal", "--system"]);
    assert_eq!(created, "topic \"internal\" created\n");
    // Plain lists show the others only; --system the system topics only.
    assert_eq!(system_topics(&env), ["internal", "sluice-audit"]);
    let listed = env.ok(&["topic", "list"]);
    assert!(
        listed.contains("orders") && !listed.contains("internal"),
        "{listed}"
    );
    let partitions = env.ok(&["partition", "list"]);
    assert!(!partitions.contains("sluice-audit"), "{partitions}");
    let system_partitions = env.ok(&["partition", "list", "--system"]);
    assert!(
        system_partitions.contains("internal")
            && system_partitions.contains("sluice-audit")
            && !system_partitions.contains("orders"),
        "{system_partitions}"
    );

    // A plain deletion is refused with Fluvio's phrase and what to do; so
    // is --system without a terminal to confirm on, unless --force.
    let refused = env.fails(&["topic", "delete", "internal"], b"");
    assert!(
        refused.contains("system topic 'internal' can only be deleted forcibly")
            && refused.contains("--system --force"),
        "{refused}"
    );
    let unconfirmed = env.fails(&["topic", "delete", "internal", "--system"], b"");
    assert!(unconfirmed.contains("add --force"), "{unconfirmed}");
    assert_eq!(system_topics(&env), ["internal", "sluice-audit"]);
    assert_eq!(
        env.ok(&["topic", "delete", "internal", "--system", "--force"]),
        "system topic \"internal\" deleted\n"
    );
    // --system --force on an ordinary topic is an ordinary deletion.
    assert_eq!(
        env.ok(&["topic", "delete", "orders", "-s", "-f"]),
        "topic \"orders\" deleted\n"
    );

    // Deleted by force, the audit topic comes back, empty, and records again.
    env.ok(&["topic", "delete", "sluice-audit", "--system", "--force"]);
    wait_until(Duration::from_secs(30), || {
        system_topics(&env) == ["sluice-audit"]
    });
    env.ok(&["topic", "create", "after"]);
    wait_until(Duration::from_secs(30), || {
        env.ok(&["consume", "sluice-audit", "-B", "-d"])
            .contains("topic \\\"after\\\"")
    });
}

#[test]
fn keyed_records_land_on_the_partitions_fluvio_would_pick() {
    let env = Env::started();
    env.ok(&["topic", "create", "keyed", "-p", "2"]);
    let described = env.ok(&["topic", "describe", "keyed"]);
    assert!(
        described.contains("key-hash          siphash"),
        "{described}"
    );
    for key in ["1", "2", "4", "8"] {
        env.ok_with_input(
            &["produce", "keyed", "--key-separator", ":"],
            format!("{key}:{key}\n").as_bytes(),
        );
    }
    // Where Fluvio's producer (SipHash-2-4 of the key) puts these keys: the
    // placement its CLI tests read back.
    assert_eq!(
        env.ok(&["consume", "keyed", "-p", "0", "-B", "-d"]),
        "1\n2\n"
    );
    assert_eq!(
        env.ok(&["consume", "keyed", "-p", "1", "-B", "-d"]),
        "4\n8\n"
    );
}

#[test]
fn without_the_audit_topic_the_trail_stays_in_the_log() {
    let env = Env::new();
    let port = env.port.to_string();
    env.ok(&[
        "cluster",
        "start",
        "--local",
        "--port",
        &port,
        "--no-audit-topic",
    ]);
    env.ok(&["topic", "create", "orders"]);
    // Past the first check that would have created it, and its retries.
    std::thread::sleep(Duration::from_secs(8));
    assert!(system_topics(&env).is_empty());
    let log = env.node_log_tail();
    assert!(
        log.contains("sluice::audit") && log.contains("topic \\\"orders\\\""),
        "{log}"
    );
}
