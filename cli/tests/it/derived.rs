//! Derived topics (`topic create B --from A --transforms F`): B holds A's
//! records as the chain maps them, exactly once and in order per
//! partition, across the kill of the node running the copy and with a
//! second copy running beside it.

use std::time::Duration;

use crate::harness::{Env, module, wait_until};

/// The values of `topic`'s partition `p`, from its start.
fn values(env: &Env, topic: &str, p: u32) -> Vec<String> {
    let out = env.run(&["consume", topic, "-p", &p.to_string(), "-B", "-d"], b"");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// What B's partition must hold: A's values with an `a`, upper-cased.
fn expected(a: &[String]) -> Vec<String> {
    a.iter()
        .filter(|v| v.contains('a'))
        .map(|v| v.to_uppercase())
        .collect()
}

fn produce(env: &Env, p: u32, from: usize, to: usize) {
    let lines: String = (from..to)
        .map(|i| {
            if i % 3 == 0 {
                format!("dog {i}\n")
            } else {
                format!("a cat {i}\n")
            }
        })
        .collect();
    env.ok_with_input(&["produce", "a", "-p", &p.to_string()], lines.as_bytes());
}

fn settled(env: &Env) -> bool {
    (0..2).all(|p| values(env, "b", p) == expected(&values(env, "a", p)))
}

fn assert_exact(env: &Env) {
    for p in 0..2 {
        let (a, b) = (values(env, "a", p), values(env, "b", p));
        assert_eq!(
            b,
            expected(&a),
            "partition {p}: b is not exactly a's records mapped"
        );
    }
}

#[test]
fn a_derived_topic_holds_its_sources_records_mapped_once_across_a_kill_and_a_second_copy() {
    let env = Env::started_with(3);
    env.ok(&[
        "smart-module",
        "create",
        "has-a",
        "--wasm-file",
        &module("hello-filter"),
    ]);
    env.ok(&[
        "smart-module",
        "create",
        "upper",
        "--wasm-file",
        &module("uppercase-map"),
    ]);
    env.ok(&["topic", "create", "a", "-p", "2", "-r", "3"]);
    for p in 0..2 {
        produce(&env, p, 0, 60);
    }
    let t = env.home.path().join("t.yaml");
    std::fs::write(&t, "transforms:\n  - uses: has-a\n  - uses: upper\n").unwrap();
    let out = env.ok(&[
        "topic",
        "create",
        "b",
        "--from",
        "a",
        "--transforms",
        &t.display().to_string(),
    ]);
    assert!(out.contains("derived from \"a\""), "{out}");
    let info: serde_json::Value =
        serde_json::from_str(&env.ok(&["topic", "describe", "b", "-O", "json"])).unwrap();
    assert_eq!(info["partitions"], 2, "{info}");
    wait_until(Duration::from_secs(30), || settled(&env));
    assert_exact(&env);

    // A second copy beside the cluster's, as a node cut off from the
    // controller would keep running: every append is conditional on B's
    // end, so each record is still written once.
    let d: serde_json::Value =
        serde_json::from_str(&env.ok(&["connector", "describe", "b", "-O", "json"])).unwrap();
    let file = env.home.path().join("b.yml");
    std::fs::write(&file, d["config"].as_str().unwrap()).unwrap();
    let mut second = env
        .command(&["connector", "run", "--config", &file.display().to_string()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for round in 0..4 {
        for p in 0..2 {
            produce(&env, p, 100 + round * 20, 120 + round * 20);
        }
    }
    wait_until(Duration::from_secs(30), || settled(&env));
    assert_exact(&env);

    // The node running the cluster's copy dies while records arrive: the
    // second copy maps them at once, and the cluster's copy moves (after the
    // controller's liveness window) and finds B already caught up.
    let node = d["node"].as_u64().unwrap();
    env.kill(node);
    for p in 0..2 {
        produce(&env, p, 300, 360);
    }
    second.kill().unwrap();
    let _ = second.wait();
    wait_until(Duration::from_secs(60), || {
        let d: serde_json::Value =
            serde_json::from_str(&env.ok(&["connector", "describe", "b", "-O", "json"])).unwrap();
        d["node"].as_u64() != Some(node)
    });
    // With the second copy gone, only the moved copy can map these.
    for p in 0..2 {
        produce(&env, p, 360, 380);
    }
    wait_until(Duration::from_secs(60), || settled(&env));
    assert_exact(&env);

    // Stopping the derivation keeps B.
    env.ok(&["connector", "delete", "b"]);
    std::thread::sleep(Duration::from_secs(1));
    for p in 0..2 {
        produce(&env, p, 400, 410);
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        values(&env, "b", 0).len(),
        expected(&values(&env, "a", 0)[..]).len() - 7
    );
}

#[test]
fn a_derivation_that_cannot_run_is_refused_and_leaves_no_topic() {
    let env = Env::started();
    env.ok(&["topic", "create", "a"]);
    let e = env.fails(&["topic", "create", "b", "--from", "nope"], b"");
    assert!(e.contains("nope"), "{e}");
    let t = env.home.path().join("t.yaml");
    std::fs::write(&t, "uses: x\n").unwrap();
    let e = env.fails(
        &[
            "topic",
            "create",
            "b",
            "--from",
            "a",
            "--transforms",
            &t.display().to_string(),
        ],
        b"",
    );
    assert!(e.contains("transforms"), "{e}");
    let e = env.fails(&["topic", "create", "a", "--from", "a"], b"");
    assert!(e.contains("itself") || e.contains("exists"), "{e}");
    let listed = env.ok(&["topic", "list", "-O", "json"]);
    assert!(!listed.contains("\"b\""), "{listed}");
}

/// `topic delete` with connectors about: a derived topic goes with its
/// derivation; a topic a connector still reads (a derivation's source, a
/// sink's input) stays, and the refusal names the connector and what to do.
#[test]
fn deleting_a_derived_topic_stops_its_derivation_and_a_topic_in_use_is_kept() {
    let env = Env::started();
    env.ok(&["topic", "create", "a"]);
    env.ok_with_input(&["produce", "a"], b"one\ntwo\n");
    env.ok(&["topic", "create", "b", "--from", "a"]);
    let sink = env.home.path().join("out.yml");
    std::fs::write(
        &sink,
        format!(
            "apiVersion: 0.1.0\nmeta: {{name: out, type: file-sink, topic: a}}\n\
             file: {{path: {}}}\n",
            env.home.path().join("out.txt").display()
        ),
    )
    .unwrap();
    env.ok(&[
        "connector",
        "create",
        "--config",
        &sink.display().to_string(),
    ]);

    let e = env.fails(&["topic", "delete", "a"], b"");
    assert!(
        e.contains("topic \"a\" is in use")
            && e.contains("connector \"b\" derives topic \"b\" from it")
            && e.contains("connector \"out\" reads it")
            && e.contains("sluice connector delete NAME"),
        "{e}"
    );
    let out = env.ok(&["topic", "delete", "b"]);
    assert!(
        out.contains("topic \"b\" deleted")
            && out.contains("connector \"b\", which derived it from \"a\", deleted"),
        "{out}"
    );
    let listed = env.ok(&["connector", "list"]);
    assert!(!listed.contains("b ") && listed.contains("out"), "{listed}");
    let e = env.fails(&["topic", "delete", "a"], b"");
    assert!(
        e.contains("connector \"out\" reads it") && !e.contains("\"b\""),
        "{e}"
    );
    env.ok(&["connector", "delete", "out"]);
    env.ok(&["topic", "delete", "a"]);
    let topics = env.ok(&["topic", "list", "-O", "json"]);
    assert!(
        !topics.contains("\"a\"") && !topics.contains("\"b\""),
        "{topics}"
    );
}
