//! Named consumers (`consume -c NAME`): committed offsets that a later run
//! resumes from, on a real cluster, across the restart of every node.

use std::time::Duration;

use crate::harness::{Env, lines, module, wait_until};

fn sorted(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text.lines().map(str::to_string).collect();
    v.sort();
    v
}

/// (partition, offset, lag) of each committed offset of `name`, by partition.
fn described(env: &Env, name: &str) -> Vec<(u64, u64, Option<u64>)> {
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["consumer", "describe", name, "-O", "json"])).unwrap();
    let mut out: Vec<_> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["partition"].as_u64().unwrap(),
                o["next_offset"].as_u64().unwrap(),
                o["lag"].as_u64(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_named_consumer_resumes_after_its_commits_even_after_every_node_restarts() {
    let env = Env::started_with(3);
    env.ok(&["topic", "create", "orders", "-p", "2", "-r", "3"]);
    env.ok_with_input(&["produce", "orders", "-p", "0"], lines(6, "a").as_bytes());
    env.ok_with_input(&["produce", "orders", "-p", "1"], lines(4, "b").as_bytes());

    // A first run reads everything and commits where it stopped.
    let first = env.ok(&["consume", "orders", "-B", "-d", "-c", "billing"]);
    let mut all = sorted(&(lines(6, "a") + &lines(4, "b")));
    assert_eq!(sorted(&first), all);
    assert_eq!(
        described(&env, "billing"),
        vec![(0, 6, Some(0)), (1, 4, Some(0))]
    );
    // Fluvio's fields too: `consumer_id`, and `offset` as the last record
    // processed (one before where the consumer resumes).
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["consumer", "list", "-O", "json"])).unwrap();
    let fluvio: Vec<_> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["consumer_id"].as_str().unwrap().to_string(),
                o["partition"].as_u64(),
                o["offset"].as_u64(),
            )
        })
        .collect();
    assert!(
        fluvio.contains(&("billing".into(), Some(0), Some(5))),
        "{fluvio:?}"
    );
    assert!(
        fluvio.contains(&("billing".into(), Some(1), Some(3))),
        "{fluvio:?}"
    );
    // The next run prints only what came since, whatever its start flag.
    env.ok_with_input(&["produce", "orders", "-p", "0"], b"a-new\n");
    assert_eq!(described(&env, "billing")[0], (0, 6, Some(1)), "lag");
    assert_eq!(
        env.ok(&["consume", "orders", "-B", "-d", "-c", "billing"]),
        "a-new\n"
    );
    // Another name has its own position: two records of partition 0.
    assert_eq!(
        env.ok(&["consume", "orders", "-p", "0", "-H", "2", "-c", "audit"]),
        "a-0\na-1\n"
    );

    // Every node restarts: the offsets are in the replicated metadata.
    env.ok(&["cluster", "shutdown"]);
    env.start_with_env(3, &[]);
    env.ok_with_input(&["produce", "orders", "-p", "1"], b"b-new\n");
    assert_eq!(
        env.ok(&["consume", "orders", "-B", "-d", "-c", "billing"]),
        "b-new\n"
    );
    assert_eq!(
        env.ok(&["consume", "orders", "-p", "0", "-d", "-c", "audit"]),
        "a-2\na-3\na-4\na-5\na-new\n"
    );
    let listed = env.ok(&["consumer", "list"]);
    assert!(
        listed.contains("billing") && listed.contains("audit"),
        "{listed}"
    );

    // Deleted, the name starts over where its start flag says.
    assert_eq!(
        env.ok(&["consumer", "delete", "billing", "--topic", "orders"]),
        "consumer \"billing\" on topic \"orders\" and partition \"0\" deleted\n\
         consumer \"billing\" on topic \"orders\" and partition \"1\" deleted\n"
    );
    all.extend(["a-new".to_string(), "b-new".to_string()]);
    all.sort();
    assert_eq!(
        sorted(&env.ok(&["consume", "orders", "-B", "-d", "-c", "billing"])),
        all
    );
    // Deleting the topic takes its offsets along.
    env.ok(&["topic", "delete", "orders"]);
    assert_eq!(env.ok(&["consumer", "list"]), "No consumers found\n");
}

#[test]
fn a_following_consumer_commits_as_it_goes_and_a_killed_one_resumes_there() {
    let env = Env::started();
    env.ok(&["topic", "create", "feed"]);
    let (mut child, rx) = env.follow(&["consume", "feed", "-c", "tail"]);
    // The consumer starts at the end; nothing is committed until it has
    // printed something.
    std::thread::sleep(Duration::from_secs(1));
    env.ok_with_input(&["produce", "feed"], lines(3, "x").as_bytes());
    for expected in ["x-0", "x-1", "x-2"] {
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), expected);
    }
    // Auto-commit (every 5 s) records the position while it runs.
    wait_until(Duration::from_secs(15), || {
        env.run(&["consumer", "describe", "tail", "-O", "json"], b"")
            .stdout
            .windows(16)
            .any(|w| w == b"\"next_offset\": 3")
    });
    // Killed without a chance to commit on exit: the next run resumes at
    // the last auto-commit, so nothing printed is lost and nothing skipped.
    child.kill().unwrap();
    child.wait().unwrap();
    env.ok_with_input(&["produce", "feed"], b"y\n");
    assert_eq!(env.ok(&["consume", "feed", "-d", "-c", "tail"]), "y\n");
}

#[test]
fn bad_consumer_names_unknown_consumers_and_commits_past_the_end_are_refused() {
    use sluice_client::proto::OffsetCommit;

    let env = Env::started();
    env.ok(&["topic", "create", "t", "-p", "2"]);
    env.ok_with_input(&["produce", "t", "-p", "0"], lines(5, "r").as_bytes());

    let err = env.fails(&["consume", "t", "-c", "Not_A_Name", "-d"], b"");
    assert!(err.contains("invalid consumer name"), "{err}");
    let err = env.fails(&["consumer", "describe", "nobody"], b"");
    assert!(
        err.contains("Consumer not found") && err.contains("nobody"),
        "{err}"
    );
    let err = env.fails(&["consumer", "delete", "nobody"], b"");
    assert!(err.contains("Consumer not found"), "{err}");
    let err = env.fails(&["consume", "t", "--commit-mode", "manual", "-d"], b"");
    assert!(err.contains("--consumer"), "{err}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = env.admin_client().await;
        let commit = |partition, offset, sequence| OffsetCommit {
            consumer: "app".into(),
            topic: "t".into(),
            partition,
            offset,
            session: 1,
            sequence,
            state: None,
            member: None,
        };
        // At the end is fine; past it is not, and nothing is stored.
        client.commit_offset(commit(0, 5, 1)).await.unwrap();
        let err = client.commit_offset(commit(0, 6, 2)).await.unwrap_err();
        assert!(err.to_string().contains("past the end"), "{err}");
        let err = client.commit_offset(commit(2, 0, 3)).await.unwrap_err();
        assert!(err.to_string().contains("no partition 2"), "{err}");
        // A late commit of the same session does not move the offset back.
        client.commit_offset(commit(0, 4, 0)).await.unwrap_err();
        let stored = client.consumer_offsets(Some("app"), None).await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!((stored[0].partition, stored[0].offset), (0, Some(5)));
        // The committer reads it back and commits only what moved.
        let committer = sluice_client::OffsetCommitter::open(
            &client,
            "app",
            "t",
            sluice_client::CommitMode::Manual,
        )
        .await
        .unwrap();
        assert_eq!(committer.committed(0), Some(5));
        assert_eq!(committer.committed(1), None);
        assert_eq!(committer.commit().await.unwrap(), 0);
        committer.processed(0, 2); // behind the position: ignored
        assert_eq!(committer.position(0), Some(5));
        assert_eq!(committer.commit().await.unwrap(), 0);
    });
}

#[test]
fn an_aggregate_resumes_from_the_accumulator_committed_with_the_offset() {
    let env = Env::started();
    env.ok(&["topic", "create", "numbers"]);
    env.ok_with_input(&["produce", "numbers"], b"1\n2\n3\n");
    let sum = module("sum-aggregate");
    let run = |name: &str| {
        env.ok(&[
            "consume",
            "numbers",
            "-B",
            "-d",
            "-c",
            name,
            "--aggregate",
            &sum,
            "--initial",
            "10",
        ])
    };
    assert_eq!(run("sum"), "11\n13\n16\n");
    env.ok_with_input(&["produce", "numbers"], b"4\n5\n");
    // Resumed: the running sum goes on from 16, not from --initial.
    assert_eq!(run("sum"), "20\n25\n");
    // The same as one uninterrupted read.
    assert_eq!(
        env.ok(&[
            "consume",
            "numbers",
            "-B",
            "-d",
            "--aggregate",
            &sum,
            "--initial",
            "10"
        ]),
        "11\n13\n16\n20\n25\n"
    );
    // A registered aggregate named without its kind is checkpointed too.
    env.ok(&["smart-module", "create", "sum", "--wasm-file", &sum]);
    let registered = |env: &Env| {
        env.ok(&[
            "consume",
            "numbers",
            "-B",
            "-d",
            "-c",
            "reg",
            "--smartmodule",
            "sum",
        ])
    };
    assert_eq!(registered(&env), "1\n3\n6\n10\n15\n");
    env.ok_with_input(&["produce", "numbers"], b"6\n");
    assert_eq!(registered(&env), "21\n");
}

/// Lines printed so far by a following member (`{{partition}}:{{offset}}`).
fn drain(rx: &std::sync::mpsc::Receiver<String>, into: &mut Vec<String>) {
    while let Ok(line) = rx.try_recv() {
        into.push(line);
    }
}

/// Owner of each partition of group `g`, from `consumer describe`.
fn owners(env: &Env, group: &str) -> Vec<Option<String>> {
    let out = env.run(&["consumer", "describe", group, "-O", "json"], b"");
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return Vec::new();
    };
    let mut rows: Vec<(u64, Option<String>)> = json
        .as_array()
        .map(|a| {
            a.iter()
                .map(|o| {
                    (
                        o["partition"].as_u64().unwrap(),
                        o["owner"].as_str().map(str::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    rows.sort();
    rows.into_iter().map(|(_, o)| o).collect()
}

#[test]
fn a_group_of_three_splits_six_partitions_and_a_killed_member_s_move_without_a_skip() {
    let env = Env::started();
    env.ok(&["topic", "create", "jobs", "-p", "6"]);
    let produce_round = |round: &str| {
        for p in 0..6 {
            let records = lines(10, &format!("{round}{p}"));
            env.ok_with_input(
                &["produce", "jobs", "-p", &p.to_string()],
                records.as_bytes(),
            );
        }
    };
    produce_round("a");
    let member = || {
        env.follow(&[
            "consume",
            "jobs",
            "-g",
            "workers",
            "-B",
            "--session-timeout",
            "3s",
            "-F",
            "{{partition}}:{{offset}}:{{value}}",
        ])
    };
    let mut members: Vec<_> = (0..3).map(|_| member()).collect();
    let mut printed: Vec<Vec<String>> = vec![Vec::new(); 3];
    // Each record of the first round is printed once in all (nobody
    // crashed: each member commits what it printed before giving a
    // partition up), and the partitions end up two per member.
    let distinct_owners = |o: &[Option<String>]| {
        let mut v: Vec<&String> = o.iter().flatten().collect();
        v.sort();
        v.dedup();
        v.len()
    };
    wait_until(Duration::from_secs(30), || {
        for (i, (_, rx)) in members.iter().enumerate() {
            drain(rx, &mut printed[i]);
        }
        let o = owners(&env, "workers");
        printed.iter().map(Vec::len).sum::<usize>() >= 60
            && o.len() == 6
            && o.iter().all(Option::is_some)
            && distinct_owners(&o) == 3
    });
    let o = owners(&env, "workers");
    for owner in o.iter().flatten() {
        assert_eq!(
            o.iter().flatten().filter(|x| *x == owner).count(),
            2,
            "{o:?}"
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    for (i, (_, rx)) in members.iter().enumerate() {
        drain(rx, &mut printed[i]);
    }
    let mut all: Vec<String> = printed.iter().flatten().cloned().collect();
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(
        before, 60,
        "a record of round a was printed twice: {printed:?}"
    );
    assert_eq!(all.len(), 60);

    // A member is killed: its partitions move to the others within the
    // session timeout, and every record of the next round is printed by
    // the survivors (its uncommitted ones again, at least once).
    let (mut victim, _) = members.remove(0);
    printed.remove(0);
    victim.kill().unwrap();
    victim.wait().unwrap();
    produce_round("b");
    let round_b: Vec<String> = (0..6)
        .flat_map(|p| (0..10).map(move |i| format!("{p}:{}:b{p}-{i}", 10 + i)))
        .collect();
    wait_until(Duration::from_secs(30), || {
        for (i, (_, rx)) in members.iter().enumerate() {
            drain(rx, &mut printed[i]);
        }
        let seen: std::collections::BTreeSet<&String> = printed.iter().flatten().collect();
        round_b.iter().all(|r| seen.contains(r))
    });
    let o = owners(&env, "workers");
    assert_eq!(distinct_owners(&o), 2, "{o:?}");
    for (mut child, _) in members {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    // All dead: once their session timed out, the group can be deleted
    // (before, its owners might still be reading).
    let err = env.fails(&["consumer", "delete", "workers"], b"");
    assert!(err.contains("stop them first"), "{err}");
    std::thread::sleep(Duration::from_secs(4));
    env.ok(&["consumer", "delete", "workers"]);
    assert_eq!(env.ok(&["consumer", "list"]), "No consumers found\n");
}

#[test]
fn a_member_that_leaves_hands_its_partitions_over_at_once_and_groups_keep_their_topic() {
    let env = Env::started();
    env.ok(&["topic", "create", "tasks", "-p", "2"]);
    env.ok(&["topic", "create", "other"]);
    let member = |env: &Env| {
        env.follow(&[
            "consume",
            "tasks",
            "-g",
            "crew",
            "-B",
            "--session-timeout",
            "60s",
            "--assignment",
            "range",
        ])
    };
    let (mut first, _rx1) = member(&env);
    wait_until(Duration::from_secs(20), || {
        let o = owners(&env, "crew");
        o.len() == 2 && o.iter().all(Option::is_some)
    });
    let (_second, rx2) = member(&env);
    wait_until(Duration::from_secs(20), || {
        let o = owners(&env, "crew");
        o.len() == 2 && o[0].is_some() && o[1].is_some() && o[0] != o[1]
    });
    // SIGINT: the first member commits and leaves; with a 60 s session
    // timeout, only its leaving can move its partition this soon.
    // SAFETY: signalling a child this test started.
    unsafe { libc::kill(first.id() as i32, libc::SIGINT) };
    assert!(first.wait().unwrap().success());
    wait_until(Duration::from_secs(10), || {
        let o = owners(&env, "crew");
        o.len() == 2 && o[0].is_some() && o[0] == o[1]
    });
    env.ok_with_input(&["produce", "tasks", "-p", "0"], b"late\n");
    assert_eq!(rx2.recv_timeout(Duration::from_secs(10)).unwrap(), "late");
    // The group reads `tasks`: joining it for another topic is refused.
    let err = env.fails(&["consume", "other", "-g", "crew"], b"");
    assert!(err.contains("consumes topic \"tasks\""), "{err}");
    // A group with members is not deleted.
    let err = env.fails(&["consumer", "delete", "crew"], b"");
    assert!(err.contains("stop them first"), "{err}");
}

#[test]
fn a_group_keeps_reading_when_the_coordinator_and_partition_leaders_die() {
    let env = Env::started_with(3);
    env.ok(&["topic", "create", "events", "-p", "4", "-r", "3"]);
    let produce_round = |round: &str| {
        for p in 0..4 {
            let records = lines(5, &format!("{round}{p}"));
            env.ok_with_input(
                &["produce", "events", "-p", &p.to_string()],
                records.as_bytes(),
            );
        }
    };
    produce_round("a");
    let members: Vec<_> = (0..2)
        .map(|_| {
            env.follow(&[
                "consume",
                "events",
                "-g",
                "pipeline",
                "-B",
                "--session-timeout",
                "5s",
            ])
        })
        .collect();
    let mut printed = Vec::new();
    let expect = |round: &str| -> Vec<String> {
        (0..4)
            .flat_map(|p| (0..5).map(move |i| format!("{round}{p}-{i}")))
            .collect()
    };
    let all_seen = |printed: &[String], round: &str| {
        let seen: std::collections::BTreeSet<&String> = printed.iter().collect();
        expect(round).iter().all(|r| seen.contains(r))
    };
    wait_until(Duration::from_secs(30), || {
        for (_, rx) in &members {
            drain(rx, &mut printed);
        }
        all_seen(&printed, "a")
    });
    // The node leading the controller (the group's coordinator) dies; it
    // also leads some partitions.
    let status: serde_json::Value =
        serde_json::from_str(&env.ok(&["cluster", "status", "-O", "json"])).unwrap();
    let coordinator = status["controller_leader"].as_u64().unwrap();
    env.kill(coordinator);
    produce_round("b");
    wait_until(Duration::from_secs(60), || {
        for (_, rx) in &members {
            drain(rx, &mut printed);
        }
        all_seen(&printed, "b")
    });
}

#[test]
fn the_client_s_group_consumer_streams_its_assignment_then_records() {
    use futures::StreamExt;
    use sluice_client::{GroupConfig, GroupConsumer, GroupEvent};

    let env = Env::started();
    env.ok(&["topic", "create", "stream", "-p", "2"]);
    env.ok_with_input(&["produce", "stream", "-p", "1"], b"one\ntwo\n");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = env.admin_client().await;
        let config = GroupConfig {
            start: sluice_client::proto::StartOffset::Beginning,
            ..GroupConfig::default()
        };
        let member = GroupConsumer::join(&client, "streamers", "stream", config)
            .await
            .unwrap();
        let mut events = member.into_stream();
        let first = events.next().await.unwrap().unwrap();
        assert_eq!(first, GroupEvent::Assigned(vec![0, 1]));
        let mut values = Vec::new();
        while values.len() < 2 {
            let event = tokio::time::timeout(Duration::from_secs(10), events.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if let GroupEvent::Records(batch) = event {
                assert!(batch.iter().all(|r| r.partition == 1));
                values.extend(batch.into_iter().map(|r| r.value));
            }
        }
        assert_eq!(values, vec![b"one".to_vec(), b"two".to_vec()]);
        // A member of another topic's group name: refused when joining.
        let err = GroupConsumer::join(&client, "streamers", "nope", GroupConfig::default())
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("Topic not found"), "{err}");
    });
}

#[test]
fn partitions_added_to_a_topic_are_written_read_and_taken_up_by_a_group() {
    let env = Env::started();
    env.ok(&["topic", "create", "grow", "-p", "2"]);
    let member = |env: &Env| {
        env.follow(&[
            "consume",
            "grow",
            "-g",
            "growers",
            "-B",
            "--session-timeout",
            "3s",
        ])
    };
    let (_a, rx_a) = member(&env);
    let (_b, rx_b) = member(&env);
    let all_owned = |n: usize| {
        let o = owners(&env, "growers");
        o.len() == n && o.iter().all(Option::is_some)
    };
    wait_until(Duration::from_secs(20), || all_owned(2));
    let added = env.ok(&["topic", "add-partition", "grow", "-c", "2"]);
    let lines: Vec<&str> = added.lines().collect();
    assert_eq!(
        lines[..2],
        [
            "added new partitions to topic: \"grow\"",
            "PARTITION  SPU  REPLICAS"
        ]
    );
    // One row per new partition: its number, then the SPU that starts it.
    for (line, partition) in lines[2..].iter().zip(["2", "3"]) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[0], partition, "{added}");
        assert!(cells[1].parse::<u64>().is_ok(), "{added}");
    }
    assert_eq!(lines.len(), 4, "{added}");
    // The new partitions take records at once, and the group takes them up.
    env.ok_with_input(&["produce", "grow", "-p", "3"], b"late\n");
    assert_eq!(
        env.ok(&["consume", "grow", "-p", "3", "-B", "-d"]),
        "late\n"
    );
    wait_until(Duration::from_secs(20), || all_owned(4));
    let mut printed = Vec::new();
    wait_until(Duration::from_secs(20), || {
        drain(&rx_a, &mut printed);
        drain(&rx_b, &mut printed);
        printed.iter().any(|l| l == "late")
    });
    let listed: serde_json::Value =
        serde_json::from_str(&env.ok(&["partition", "list", "grow", "-O", "json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 4);
    let err = env.fails(&["topic", "add-partition", "grow", "-c", "0"], b"");
    assert!(err.contains("add 1 to"), "{err}");
    let err = env.fails(&["topic", "add-partition", "nope"], b"");
    assert!(err.contains("Topic not found"), "{err}");
}

#[test]
fn an_aggregate_moves_with_its_partition_from_member_to_member() {
    let env = Env::started();
    env.ok(&["topic", "create", "sums"]);
    env.ok_with_input(&["produce", "sums"], b"1\n2\n3\n");
    let sum = module("sum-aggregate");
    let member = |env: &Env| {
        env.follow(&[
            "consume",
            "sums",
            "-g",
            "adders",
            "-B",
            "--aggregate",
            &sum,
            "--session-timeout",
            "3s",
        ])
    };
    let (mut first, rx) = member(&env);
    for expected in ["1", "3", "6"] {
        assert_eq!(rx.recv_timeout(Duration::from_secs(20)).unwrap(), expected);
    }
    // Ctrl-C: it commits (offset 3, accumulator 6) and leaves.
    // SAFETY: signalling a child this test started.
    unsafe { libc::kill(first.id() as i32, libc::SIGINT) };
    assert!(first.wait().unwrap().success());
    env.ok_with_input(&["produce", "sums"], b"4\n");
    // Another member picks the partition up: the sum goes on from 6.
    let (_second, rx) = member(&env);
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)).unwrap(), "10");
}

/// The generation fence, through the wire requests a member sends: once a
/// partition was given to another member, the member that lost it cannot
/// move its offset, and the new one starts from the last accepted commit.
#[test]
fn a_member_that_lost_its_partition_cannot_move_the_offset_the_next_one_starts_from() {
    use sluice_client::proto::{
        AssignmentStrategy, GroupHeartbeat, OffsetCommit, Request, Response, WireError,
    };

    let env = Env::started();
    env.ok(&["topic", "create", "t", "-p", "1"]);
    env.ok_with_input(&["produce", "t", "-p", "0"], lines(10, "r").as_bytes());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = env.admin_client().await;
        let heartbeat = |member: &str, owned: Vec<u32>, generation| {
            Request::GroupHeartbeat(GroupHeartbeat {
                group: "g".into(),
                topic: "t".into(),
                member: member.into(),
                strategy: AssignmentStrategy::Range,
                session_timeout_ms: 1_000,
                owned,
                generation,
            })
        };
        let commit = |member: &str, session, sequence, offset| OffsetCommit {
            consumer: "g".into(),
            topic: "t".into(),
            partition: 0,
            offset,
            session,
            sequence,
            state: None,
            member: Some(member.into()),
        };
        // A partition whose fence did not finish within the coordinator's
        // budget is held back until the member's next heartbeat.
        let join = |member: &'static str| {
            let client = client.clone();
            async move {
                let mut generation = 0;
                for _ in 0..50 {
                    let Response::GroupAssignment(a) = client
                        .request(heartbeat(member, vec![], generation))
                        .await
                        .unwrap()
                    else {
                        panic!("no assignment")
                    };
                    if !a.assigned.is_empty() {
                        return a;
                    }
                    generation = a.generation;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                panic!("{member} was given nothing in 50 heartbeats")
            }
        };
        let first = join("member-one").await;
        assert_eq!(first.assigned, vec![0]);
        assert!(first.committed.is_empty());
        client
            .commit_offset_at(commit("member-one", 1, 0, 4), first.generation)
            .await
            .unwrap();
        // member-one goes silent past its session timeout; member-two joins
        // and is given the partition, fenced at the new generation.
        tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
        let second = join("member-two").await;
        assert_eq!(second.assigned, vec![0]);
        assert!(second.generation > first.generation);
        assert_eq!(second.committed, vec![(0, 4)]);
        // member-one wakes up and commits further, under its generation:
        // refused by the partition, and the offset stays.
        let err = client
            .commit_offset_at(commit("member-one", 1, 1, 8), first.generation)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                sluice_client::ClientError::Server(WireError::FencedMember { .. })
            ),
            "{err}"
        );
        let stored = client.consumer_offsets(Some("g"), Some("t")).await.unwrap();
        assert_eq!(stored[0].offset, Some(4));
        // A plain consumer cannot write under the group's name either.
        let plain = OffsetCommit {
            member: None,
            ..commit("x", 9, 0, 9)
        };
        let err = client.commit_offset(plain).await.unwrap_err();
        assert!(err.to_string().contains("is a consumer group"), "{err}");
        client
            .commit_offset_at(commit("member-two", 2, 0, 6), second.generation)
            .await
            .unwrap();
        let stored = client.consumer_offsets(Some("g"), Some("t")).await.unwrap();
        assert_eq!(stored[0].offset, Some(6));
    });
}
