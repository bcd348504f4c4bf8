//! Self-repair: a replica whose segment files were damaged while its node was
//! down does not serve them; it copies the partition from a healthy replica
//! and serves again, or, with no other replica, stays stopped and says why.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::{
    Env, lines, log_difference, partition_leader, segments, wait_until,
    wait_until_replicas_caught_up,
};

/// Cuts `path` to half its length; returns the new length.
fn cut_in_half(path: &Path) -> u64 {
    let len = std::fs::metadata(path).unwrap().len() / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
    len
}

fn node_log(env: &Env, node: u64) -> String {
    std::fs::read_to_string(env.node_dir_of(node).join("node.log")).unwrap_or_default()
}

#[test]
fn a_follower_whose_segment_was_cut_copies_the_partition_and_serves_it_again() {
    let env = Env::with_ports_for(3);
    // Synced points every 20 entries: the producer table saved beside the
    // segments records how far they reached, and the Raft log before that
    // point is purged, so the lost records cannot come back from it.
    let start = || env.start_with_env(3, &[("SLUICE_PARTITION_LOG_ENTRIES", "20:5")]);
    start();
    env.ok(&[
        "topic",
        "create",
        "healed",
        "-r",
        "3",
        "--segment-size",
        "4KiB",
    ]);
    let mut expected = lines(400, "healed-with-some-padding-to-fill-segments");
    env.ok_with_input(
        &["produce", "healed", "--batch-size", "100"],
        expected.as_bytes(),
    );
    wait_until_replicas_caught_up(&env, "healed", Duration::from_secs(30));
    let leader = partition_leader(&env, "healed");
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    let dir = env.partition_dir_of(follower, "healed");
    wait_until(Duration::from_secs(20), || {
        dir.join("producers.v3.bin").exists()
    });

    env.kill(follower);
    // The oldest segment (long closed and synced) loses its second half:
    // records the follower's Raft log no longer holds.
    let first = segments(&dir).remove(0);
    assert!(segments(&dir).len() > 2, "the log must span segments");
    let cut_to = cut_in_half(&first);
    start();

    // The follower comes back and serves, from its own replica, exactly the
    // records the leader serves.
    let replica = follower.to_string();
    let read_replica = || {
        env.run(
            &["consume", "healed", "-B", "-d", "--replica", &replica],
            b"",
        )
        .stdout
    };
    wait_until(Duration::from_secs(60), || {
        read_replica() == expected.as_bytes()
    });
    let from_leader = env.ok(&["consume", "healed", "-B", "-d"]);
    assert!(
        from_leader == expected,
        "the leader's log differs from the acknowledged records: {}",
        log_difference(&from_leader, &expected)
    );

    // The damaged files are kept for diagnosis, as the repair found them.
    let quarantine = env.node_dir_of(follower).join("quarantine");
    let kept: Vec<PathBuf> = std::fs::read_dir(&quarantine)
        .unwrap_or_else(|e| panic!("no quarantine dir {}: {e}", quarantine.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let dir_name = dir.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        kept[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&format!("{dir_name}.")),
        "{kept:?}"
    );
    let kept_first = kept[0].join(first.file_name().unwrap());
    assert_eq!(std::fs::metadata(&kept_first).unwrap().len(), cut_to);
    // And the repair, with where it copied from and how long it took, is in
    // the node's log.
    let log = node_log(&env, follower);
    for part in [
        "cannot be read",
        "replica repaired",
        "repaired replica serves again",
        "repair_ms",
    ] {
        assert!(
            log.contains(part),
            "{part:?} missing from node {follower}'s log"
        );
    }

    // It keeps replicating.
    env.ok_with_input(&["produce", "healed"], b"after the repair\n");
    expected.push_str("after the repair\n");
    wait_until(Duration::from_secs(20), || {
        read_replica() == expected.as_bytes()
    });
}

#[test]
fn a_single_replica_whose_segments_lost_synced_records_stays_stopped_and_untouched() {
    let env = Env::new();
    let start = || env.start_with_env(1, &[("SLUICE_PARTITION_LOG_ENTRIES", "20:5")]);
    start();
    env.ok(&["topic", "create", "alone", "--segment-size", "4KiB"]);
    env.ok_with_input(
        &["produce", "alone", "--batch-size", "100"],
        lines(400, "alone-with-some-padding-to-fill-segments").as_bytes(),
    );
    let dir = env.partition_dir("alone");
    wait_until(Duration::from_secs(20), || {
        dir.join("producers.v3.bin").exists()
    });
    env.kill_node();
    let first = segments(&dir).remove(0);
    let cut_to = cut_in_half(&first);
    start();

    wait_until(Duration::from_secs(30), || {
        node_log(&env, 1).contains("has no other replica to copy from")
    });
    let err = env.fails(&["consume", "alone", "-B", "-d", "--replica", "1"], b"");
    for part in [
        "partition alone/0 on node 1",
        "cannot be read",
        "no other replica",
        "stays stopped",
        "Restore",
    ] {
        assert!(err.contains(part), "{part:?} missing from {err}");
    }
    // Nothing was moved or rewritten.
    assert_eq!(std::fs::metadata(&first).unwrap().len(), cut_to);
    assert!(!env.node_dir().join("quarantine").exists());
}
