//! The everyday commands a Fluvio or Kafka user types besides produce and
//! consume: profiles, version, shell completions, and what a node logs.

use crate::harness::{Env, SLUICE};

#[test]
fn profiles_are_listed_switched_and_deleted() {
    let env = Env::started();
    let list = env.ok(&["profile", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with('*') && l.contains("local")),
        "{list}"
    );
    assert_eq!(env.ok(&["profile", "current"]).trim(), "local");

    // A second profile, as another cluster's `start` or a hand edit adds it.
    let home = env.home.path();
    let mut config = sluice_client::config::ClientConfig::load(home).unwrap();
    let (_, local) = config.profile(Some("local")).unwrap();
    let other = sluice_client::config::Profile {
        endpoint: "127.0.0.1:1".into(),
        ..local.clone()
    };
    config.set_profile("other", other.clone());
    config.set_profile("third", other);
    config.save(home).unwrap();

    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["profile", "list", "-O", "json"])).unwrap();
    let names: Vec<(&str, bool)> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["current"].as_bool().unwrap()))
        .collect();
    assert_eq!(names, [("local", true), ("other", false), ("third", false)]);

    assert!(
        env.ok(&["profile", "switch", "other"])
            .contains("switched to profile other")
    );
    assert_eq!(env.ok(&["profile", "current"]).trim(), "other");
    // The current profile is the one commands use: `other` reaches nothing.
    let err = env.fails(&["topic", "list"], b"");
    assert!(err.contains("127.0.0.1:1"), "{err}");
    env.ok(&["topic", "list", "--profile", "local"]);

    let err = env.fails(&["profile", "switch", "nope"], b"");
    assert!(
        err.contains("no profile \"nope\"") && err.contains("profiles: local, other, third"),
        "{err}"
    );
    let deleted = env.ok(&["profile", "delete", "other"]);
    assert!(deleted.contains("which was current"), "{deleted}");
    let err = env.fails(&["profile", "current"], b"");
    assert!(
        err.contains("no current profile") && err.contains("profile switch"),
        "{err}"
    );
    env.ok(&["profile", "switch", "local"]);
    env.ok(&["topic", "list"]);
    let err = env.fails(&["profile", "delete", "other"], b"");
    assert!(err.contains("no profile \"other\""), "{err}");
}

#[test]
fn version_names_the_commit_and_the_build() {
    let out = std::process::Command::new(SLUICE)
        .args(["version", "-O", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    let commit = v["commit"].as_str().unwrap();
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{commit}"
    );
    assert_eq!(v["build_profile"], "debug");
    assert_eq!(v["protocol_version"], sluice_proto::PROTOCOL_VERSION);
    let text = std::process::Command::new(SLUICE)
        .arg("version")
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.starts_with(&format!("sluice {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
}

#[test]
fn completions_cover_every_command_for_each_shell() {
    for (shell, marker) in [
        ("bash", "_sluice()"),
        ("zsh", "#compdef sluice"),
        ("fish", "complete -c sluice"),
    ] {
        let out = std::process::Command::new(SLUICE)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(
            script.contains(marker),
            "{shell}: {}",
            &script[..script.len().min(300)]
        );
        for command in ["produce", "consume", "profile", "smart-module", "acl"] {
            assert!(
                script.contains(command),
                "{shell} completions lack {command}"
            );
        }
    }
    let out = std::process::Command::new(SLUICE)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        !out.status.success() && err.contains("possible values"),
        "{err}"
    );
}

#[test]
fn nodes_log_their_own_progress_and_only_openraft_warnings_by_default() {
    let env = Env::started();
    env.ok(&["topic", "create", "logged"]);
    let log = std::fs::read_to_string(env.node_dir().join("node.log")).unwrap();
    assert!(log.contains(" INFO "), "{log}");
    let openraft_info: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" INFO openraft") || l.contains(" DEBUG openraft"))
        .collect();
    assert!(openraft_info.is_empty(), "{openraft_info:?}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let env = Env::new();
    env.ok(&[
        "cluster",
        "start",
        "--local",
        "--port",
        &env.port.to_string(),
        "--log-format",
        "json",
    ]);
    env.ok(&["topic", "create", "logged"]);
    let log = std::fs::read_to_string(env.node_dir().join("node.log")).unwrap();
    let mut lines = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
        lines += 1;
    }
    assert!(lines > 0, "the node logged nothing");
}

#[test]
fn growing_and_deleting_a_local_cluster_say_what_happened() {
    let env = Env::with_ports_for(2);
    let port = env.port.to_string();
    env.ok(&["cluster", "start", "--local", "--port", &port]);
    let out = env
        .command(&[
            "cluster", "start", "--local", "--spus", "2", "--port", &port,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("Adding node 2 to it"), "{said}");
    assert!(
        said.contains("the controller keeps its 1 voter(s)") && said.contains("--spus 2"),
        "{said}"
    );
    let deleted = env.ok(&["cluster", "delete"]);
    assert!(
        deleted.contains("Stopped 2 node(s) and deleted the local cluster with its data"),
        "{deleted}"
    );
    assert!(!deleted.contains("data kept"), "{deleted}");
}

#[test]
fn an_endpoint_with_certificate_flags_needs_no_profile() {
    let env = Env::started();
    env.ok(&["topic", "create", "flags"]);
    let config = sluice_client::config::ClientConfig::load(env.home.path()).unwrap();
    let (_, local) = config.profile(Some("local")).unwrap();
    let file = |p: &std::path::Path| {
        sluice_client::config::Profile::resolve(env.home.path(), p)
            .display()
            .to_string()
    };
    let (ca, cert, key) = (
        file(&local.ca_cert),
        file(local.client_cert.as_ref().unwrap()),
        file(local.client_key.as_ref().unwrap()),
    );
    let endpoint = local.endpoint.clone();
    // Another home, with no profile at all.
    let elsewhere = Env::new();
    let listed = elsewhere.ok(&[
        "topic",
        "list",
        "--endpoint",
        &endpoint,
        "--ca-cert",
        &ca,
        "--client-cert",
        &cert,
        "--client-key",
        &key,
    ]);
    assert!(listed.contains("flags"), "{listed}");
    // Without a client certificate the node, which requires one, refuses.
    let err = elsewhere.fails(
        &["topic", "list", "--endpoint", &endpoint, "--ca-cert", &ca],
        b"",
    );
    assert!(err.contains("certificate"), "{err}");
    let err = elsewhere.fails(
        &[
            "topic",
            "list",
            "--endpoint",
            &endpoint,
            "--ca-cert",
            &ca,
            "--client-cert",
            &cert,
        ],
        b"",
    );
    assert!(err.contains("--client-key"), "{err}");
    let err = elsewhere.fails(&["topic", "list", "--endpoint", &endpoint], b"");
    assert!(err.contains("--ca-cert"), "{err}");
    // `--key` stays a record's key.
    env.ok_with_input(&["produce", "flags", "--key", "k"], b"v\n");
    let read = env.ok(&["consume", "flags", "-B", "-d", "-k"]);
    assert!(read.contains('k') && read.contains('v'), "{read}");
}

/// `topic create` as Fluvio's scripts use it: a topic file (`--config`),
/// `--max-partition-size`, and `--dry-run`, which checks against the
/// cluster and creates nothing.
#[test]
fn topics_are_created_from_a_fluvio_topic_file_and_checked_by_a_dry_run() {
    let env = Env::started_with(2);
    let file = env.home.path().join("events.yaml");
    std::fs::write(
        &file,
        "version: 0.1.0\nmeta:\n  name: from-file\npartition:\n  count: 2\n  max_size: 10 KB\n  \
         replication: 2\n  ignore_rack_assignment: true\nretention:\n  time: 2m\n  \
         segment_size: 2.0 KB\ncompression:\n  type: Any\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    env.ok(&["topic", "create", "--config", path]);
    let topic: serde_json::Value =
        serde_json::from_str(&env.ok(&["topic", "describe", "from-file", "-O", "json"])).unwrap();
    assert_eq!(
        (
            &topic["partitions"],
            &topic["replication"],
            &topic["retention_bytes"],
            &topic["retention_ms"],
            &topic["segment_size_bytes"],
        ),
        (
            &serde_json::json!(2),
            &serde_json::json!(2),
            &serde_json::json!(10_000),
            &serde_json::json!(120_000),
            &serde_json::json!(2_000),
        )
    );
    // The file names the topic, so a name (or any topic flag) is refused.
    for extra in [&["other"][..], &["--max-partition-size", "2Ki"]] {
        let mut args = vec!["topic", "create", "--config", path, "--dry-run"];
        args.extend(extra);
        let e = env.fails(&args, b"");
        assert!(
            e.contains("the argument '--config <PATH>' cannot be used with"),
            "{e}"
        );
    }

    // A dry run passes where a create would, and creates nothing.
    let out = env.ok(&[
        "topic",
        "create",
        "dry",
        "--max-partition-size",
        "10Gb",
        "--dry-run",
    ]);
    assert!(out.contains("nothing was created"), "{out}");
    let e = env.fails(&["topic", "describe", "dry"], b"");
    assert!(e.contains("Topic not found"), "{e}");
    // It fails where a create would: a taken name, too few nodes, bad sizes.
    let e = env.fails(&["topic", "create", "from-file", "--dry-run"], b"");
    assert!(e.contains("Topic already exists"), "{e}");
    let e = env.fails(&["topic", "create", "wide", "-r", "3", "--dry-run"], b"");
    assert!(
        e.contains("needs 3 healthy nodes and the cluster has 2 of 2"),
        "{e}"
    );
    let e = env.fails(
        &[
            "topic",
            "create",
            "tiny",
            "--max-partition-size",
            "10",
            "--dry-run",
        ],
        b"",
    );
    assert!(
        e.contains("max_partition_size 10 is less than minimum 2048"),
        "{e}"
    );
    let e = env.fails(
        &[
            "topic",
            "create",
            "small",
            "--segment-size",
            "3 Ki",
            "--max-partition-size",
            "2 Ki",
            "--dry-run",
        ],
        b"",
    );
    assert!(
        e.contains("max_partition_size 2048 is less than segment size 3072"),
        "{e}"
    );
    let e = env.fails(&["topic", "create", " ", "--dry-run"], b"");
    assert!(e.contains("Topic name is required"), "{e}");
    // --max-partition-size is retention by size, as Fluvio means it.
    env.ok(&["topic", "create", "bounded", "--max-partition-size", "2GiB"]);
    let topic: serde_json::Value =
        serde_json::from_str(&env.ok(&["topic", "describe", "bounded", "-O", "json"])).unwrap();
    assert_eq!(topic["retention_bytes"], 2u64 << 30);
}

/// `profile export` writes a profile with its certificates inline, and a
/// client pointed at that file by `SLUICE_PROFILE_PATH` (or Fluvio's
/// `FLV_PROFILE_PATH`) reaches the cluster with no home directory of its own.
#[test]
fn an_exported_profile_is_enough_to_reach_the_cluster() {
    let env = Env::started();
    env.ok(&["topic", "create", "exported"]);
    let elsewhere = tempfile::tempdir().unwrap();
    for (format, var) in [
        ("toml", "SLUICE_PROFILE_PATH"),
        ("json", "FLV_PROFILE_PATH"),
    ] {
        let text = env.ok(&["profile", "export", "-O", format]);
        assert!(
            text.contains("endpoint") && text.contains("BEGIN CERTIFICATE"),
            "{text}"
        );
        let file = elsewhere.path().join(format!("profile.{format}"));
        std::fs::write(&file, &text).unwrap();
        let out = env
            .command(&["topic", "list"])
            .env("SLUICE_HOME", elsewhere.path())
            .env(var, &file)
            .output()
            .unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("exported"),
            "{format}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A file that is not an exported profile says what it lacks.
    let bad = elsewhere.path().join("bad.toml");
    std::fs::write(&bad, "endpoint = \"127.0.0.1:1\"\n").unwrap();
    let out = env
        .command(&["topic", "list"])
        .env("SLUICE_PROFILE_PATH", &bad)
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && e.contains("missing field `tls`"),
        "{e}"
    );
    let e = env.fails(&["profile", "export", "nope"], b"");
    assert!(e.contains("no profile \"nope\""), "{e}");
}

/// `topic create --replica-assignment FILE` (Fluvio's JSON) places each
/// partition's replicas where the file says, the partitions take writes,
/// and a file naming an unknown node or a partition twice is refused with
/// nothing created.
#[test]
fn replicas_go_where_an_assignment_file_places_them() {
    let env = Env::started_with(3);
    let dir = env.home.path();
    let file = dir.join("assign.json");
    std::fs::write(
        &file,
        r#"[{"id": 1, "replicas": [1, 3]}, {"id": 0, "replicas": [3, 2]}]"#,
    )
    .unwrap();
    let path = file.to_str().unwrap();
    // Fluvio's scripts read node ids from `.spec.spuId`.
    let spus: serde_json::Value =
        serde_json::from_str(&env.ok(&["cluster", "spu", "list", "-O", "json"])).unwrap();
    let ids: Vec<u64> = spus
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["spec"]["spuId"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3]);
    let out = env.ok(&[
        "topic",
        "create",
        "placed",
        "--replica-assignment",
        path,
        "--dry-run",
    ]);
    assert!(out.contains("2 partition(s) x 2 replica(s)"), "{out}");
    env.ok(&["topic", "create", "placed", "--replica-assignment", path]);
    let topic: serde_json::Value =
        serde_json::from_str(&env.ok(&["topic", "describe", "placed", "-O", "json"])).unwrap();
    assert_eq!(
        topic["assignments"],
        serde_json::json!([
            {"partition": 0, "replicas": [3, 2]},
            {"partition": 1, "replicas": [1, 3]},
        ])
    );
    for p in ["0", "1"] {
        env.ok_with_input(
            &["produce", "placed", "-p", p],
            format!("to {p}\n").as_bytes(),
        );
    }
    let read = env.ok(&["consume", "placed", "-B", "-d"]);
    assert_eq!(read.lines().count(), 2, "{read}");

    let bad = |json: &str| {
        std::fs::write(&file, json).unwrap();
        env.fails(
            &["topic", "create", "bad", "--replica-assignment", path],
            b"",
        )
    };
    let e = bad(r#"[{"id": 0, "replicas": [1, 9]}]"#);
    assert!(
        e.contains("names node 9, which is not in the cluster"),
        "{e}"
    );
    let e = bad(r#"[{"id": 0, "replicas": [1, 2]}, {"id": 0, "replicas": [2, 3]}]"#);
    assert!(
        e.contains("partition 0 is placed where partition 1 belongs"),
        "{e}"
    );
    let e = bad(r#"{"id": 0}"#);
    assert!(e.contains("expected a JSON list"), "{e}");
    let e = env.fails(
        &[
            "topic",
            "create",
            "bad",
            "-p",
            "2",
            "--replica-assignment",
            path,
        ],
        b"",
    );
    assert!(e.contains("cannot be used with"), "{e}");
    let e = env.fails(&["topic", "describe", "bad"], b"");
    assert!(e.contains("Topic not found"), "{e}");
}

/// `table-format create | list | delete` with Fluvio's file and messages,
/// and `consume --table-format` printing JSON records as rows of its columns.
#[test]
fn table_formats_print_json_records_as_rows() {
    let env = Env::started();
    let file = env.home.path().join("orders-table.yml");
    std::fs::write(
        &file,
        "name: orders\ninputFormat: \"JSON\"\ncolumns:\n  - keyPath: \"id\"\n    headerLabel: \
         ID\n  - keyPath: \"customer.name\"\n  - keyPath: \"note\"\n    display: false\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    env.ok(&["table-format", "create", "--config", path]);
    let e = env.fails(&["table-format", "create", "--config", path], b"");
    assert!(e.contains("TableFormat already exists"), "{e}");
    let list = env.ok(&["table-format", "list"]);
    assert!(
        list.contains("orders") && list.contains("id, customer.name, note"),
        "{list}"
    );

    env.ok(&["topic", "create", "orders"]);
    env.ok_with_input(
        &["produce", "orders"],
        b"{\"id\": 7, \"customer\": {\"name\": \"ann\"}, \"note\": \"hidden\"}\n{\"id\": 8}\n",
    );
    let table = env.ok(&["consume", "orders", "-B", "-d", "--table-format", "orders"]);
    assert_eq!(table, "ID  customer.name\n7   ann\n8\n");
    // Without a format: the first record's keys, in key order.
    let derived = env.ok(&["consume", "orders", "-B", "-d", "-O", "table"]);
    assert!(derived.starts_with("customer  id  note\n"), "{derived}");
    let e = env.fails(&["consume", "orders", "-B", "-d", "-O", "full-table"], b"");
    assert!(e.contains("use -O table"), "{e}");

    env.ok(&["table-format", "delete", "orders"]);
    let e = env.fails(&["table-format", "delete", "orders"], b"");
    assert!(e.contains("TableFormat not found"), "{e}");
    let e = env.fails(
        &["consume", "orders", "-d", "--table-format", "orders"],
        b"",
    );
    assert!(e.contains("TableFormat not found"), "{e}");
}

/// `cluster start --read-only FILE` (Fluvio's metadata file): its topics
/// exist when the start returns, records flow, named consumers commit, and
/// every change of the metadata is refused with "permission denied" — also
/// after the cluster is shut down and resumed.
#[test]
fn a_read_only_cluster_keeps_its_files_topics_and_refuses_changes() {
    let env = Env::with_ports_for(2);
    let file = env.home.path().join("metadata.json");
    std::fs::write(
        &file,
        r#"{"topics": [{"apiVersion": "fluvio.infinyon.com/v2", "kind": "Topic",
            "metadata": {"name": "my-topic"},
            "spec": {"replicas": {"computed": {"partitions": 2, "replicationFactor": 2,
            "ignoreRackAssignment": false}}}}]}"#,
    )
    .unwrap();
    let port = env.port.to_string();
    let start = |extra: &[&str]| {
        let mut args = vec![
            "cluster", "start", "--local", "--spus", "2", "--port", &port,
        ];
        args.extend(extra);
        env.ok(&args)
    };
    let out = start(&["--read-only", file.to_str().unwrap()]);
    assert!(out.contains("Read-only: topics from"), "{out}");
    let refused = |args: &[&str]| {
        let e = env.fails(args, b"");
        assert!(e.contains("permission denied"), "{args:?}: {e}");
    };
    let check = || {
        refused(&["topic", "create", "other-topic"]);
        refused(&["topic", "delete", "my-topic"]);
        refused(&["topic", "add-partition", "my-topic"]);
        refused(&[
            "smart-module",
            "create",
            "m",
            "--wasm-file",
            &crate::harness::module("hello-filter"),
        ]);
        let described: serde_json::Value =
            serde_json::from_str(&env.ok(&["topic", "describe", "my-topic", "-O", "json"]))
                .unwrap();
        assert_eq!(
            (&described["partitions"], &described["replication"]),
            (&2.into(), &2.into())
        );
    };
    check();
    env.ok_with_input(&["produce", "my-topic", "-p", "1"], b"kept\n");
    assert_eq!(
        env.ok(&["consume", "my-topic", "-B", "-d", "-c", "reader"]),
        "kept\n"
    );
    env.ok(&["consumer", "delete", "reader"]);

    // The mode changes only with every node stopped.
    let e = env.fails(
        &[
            "cluster",
            "start",
            "--local",
            "--spus",
            "2",
            "--port",
            &port,
            "--read-write",
        ],
        b"",
    );
    assert!(e.contains("stop it first"), "{e}");
    // Resumed: still read-only, the file read again.
    env.ok(&["cluster", "shutdown"]);
    start(&[]);
    check();
    assert_eq!(env.ok(&["consume", "my-topic", "-B", "-d"]), "kept\n");
    // Started read-write: an ordinary cluster again, its topic kept.
    env.ok(&["cluster", "shutdown"]);
    let out = start(&["--read-write"]);
    assert!(!out.contains("Read-only"), "{out}");
    env.ok(&["topic", "create", "other-topic"]);
    assert_eq!(env.ok(&["consume", "my-topic", "-B", "-d"]), "kept\n");
}

/// Records without a key: `produce` spreads them round-robin, one record
/// per partition in turn (Fluvio's behaviour, scripts rely on it);
/// `--keyless sticky` keeps a partition until its batch closes.
#[test]
fn keyless_records_go_round_robin_unless_sticky() {
    let env = Env::started();
    env.ok(&["topic", "create", "spread", "-p", "3"]);
    env.ok_with_input(
        &["produce", "spread"],
        crate::harness::lines(6, "r").as_bytes(),
    );
    for (p, want) in [
        ("0", "r-0\nr-3\n"),
        ("1", "r-1\nr-4\n"),
        ("2", "r-2\nr-5\n"),
    ] {
        assert_eq!(
            env.ok(&["consume", "spread", "-p", p, "-B", "-d"]),
            want,
            "partition {p}"
        );
    }
    env.ok(&["topic", "create", "stuck", "-p", "3"]);
    env.ok_with_input(
        &["produce", "stuck", "--keyless", "sticky", "--linger", "2s"],
        crate::harness::lines(6, "s").as_bytes(),
    );
    let counts: Vec<usize> = ["0", "1", "2"]
        .iter()
        .map(|p| {
            env.ok(&["consume", "stuck", "-p", p, "-B", "-d"])
                .lines()
                .count()
        })
        .collect();
    assert_eq!(counts.iter().sum::<usize>(), 6);
    // Within one linger, the six fill one batch of one partition.
    assert!(counts.contains(&6), "one batch, one partition: {counts:?}");
}
