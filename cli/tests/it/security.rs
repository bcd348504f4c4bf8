//! Who may talk to a node, and what each principal may do: mutual TLS with
//! identities in certificates, node-only requests, ACLs and their audit trail.

use sluice_proto::{RaftRpc, RaftRpcKind, Request, Response, WireError, codec};
use sluice_transport::CertKeyPair;

use std::time::Duration;

use crate::harness::{Env, wait_until};

/// A connection to node 1 presenting `identity` (none: no certificate).
async fn connect_as(
    env: &Env,
    identity: Option<&CertKeyPair>,
) -> Result<sluice_transport::Connection, String> {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", env.port).parse().unwrap();
    let config = sluice_transport::client_config(&env.ca_pem(), identity).unwrap();
    let connection = sluice_transport::Connector::new(config)
        .connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    Ok(connection)
}

/// Sends `request` on a stream of its own; the response, or why none came.
async fn ask(
    connection: &sluice_transport::Connection,
    request: &Request,
) -> Result<Response, String> {
    let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
    sluice_transport::write_frame(&mut send, &codec::encode(request).unwrap())
        .await
        .map_err(|e| e.to_string())?;
    let _ = send.finish();
    match sluice_transport::read_frame(&mut recv, 1 << 20).await {
        Ok(Some(frame)) => codec::decode(&frame).map_err(|e| e.to_string()),
        Ok(None) => Err("the stream ended without a response".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn only_certified_peers_connect_and_only_nodes_make_node_requests() {
    let env = Env::started();
    env.ok(&["topic", "create", "t"]);
    env.ok_with_input(&["produce", "t"], b"kept\n");
    let status_before = env.ok(&["cluster", "status", "-O", "json"]);
    let leader_before: serde_json::Value = serde_json::from_str(&status_before).unwrap();
    runtime().block_on(async {
        // No certificate: the handshake fails, or the node closes the
        // connection at once (TLS 1.3 lets the client finish first).
        match connect_as(&env, None).await {
            Err(e) => assert!(e.contains("TLS"), "{e}"),
            Ok(connection) => {
                let answer = ask(&connection, &Request::ListTopics).await;
                assert!(
                    answer.is_err(),
                    "a peer without certificate was served: {answer:?}"
                );
            }
        }

        // A certificate of another cluster's CA: refused alike.
        let stranger = sluice_transport::ClusterCa::generate("other")
            .unwrap()
            .issue_node(1, &[], &[])
            .unwrap();
        if let Ok(connection) = connect_as(&env, Some(&stranger)).await {
            assert!(ask(&connection, &Request::ListTopics).await.is_err());
        }

        // The admin client certificate is a client's, not a node's: every
        // node-only request is refused before it is even decoded, so a
        // forged vote changes no term.
        let admin = env.admin_identity();
        let connection = connect_as(&env, Some(&admin)).await.unwrap();
        let vote = Request::Raft(RaftRpc {
            group: 0,
            kind: RaftRpcKind::Vote,
            payload: vec![0; 64],
        });
        let node_only = [
            vote,
            Request::JoinCluster {
                id: 9,
                addr: "127.0.0.1:1".into(),
                incarnation: "forged".into(),
            },
            Request::NodeIncarnation { id: 1 },
            Request::ReadReplicaLog {
                group: 1,
                from_offset: 0,
                max_bytes: 1024,
            },
            Request::FinishReassignment {
                topic: "t".into(),
                partition: 0,
                replicas: vec![1],
            },
        ];
        for request in &node_only {
            match ask(&connection, request).await {
                Ok(Response::Error(WireError::Unauthenticated { reason })) => {
                    assert!(reason.contains("not a node"), "{reason}")
                }
                other => panic!("{} was not refused: {other:?}", request.name()),
            }
        }
        // The connection and the node still serve the admin.
        assert!(matches!(
            ask(&connection, &Request::ListTopics).await,
            Ok(Response::Topics(t)) if t.len() == 1
        ));
    });
    let status_after: serde_json::Value =
        serde_json::from_str(&env.ok(&["cluster", "status", "-O", "json"])).unwrap();
    assert_eq!(
        status_after["controller_leader"], leader_before["controller_leader"],
        "the forged requests moved the controller"
    );
    assert_eq!(env.ok(&["consume", "t", "-B", "-d"]), "kept\n");
    let log = std::fs::read_to_string(env.node_dir().join("node.log")).unwrap();
    assert!(
        log.contains("sluice::audit") && log.contains("denied") && log.contains("raft rpc"),
        "no audit line for the refused vote:\n{}",
        env.node_log_tail()
    );
}

#[test]
fn acls_grant_exactly_what_they_name_and_denials_say_how_to_fix_them() {
    let env = Env::started();
    env.ok(&["topic", "create", "orders"]);
    env.ok(&["topic", "create", "payroll"]);
    env.ok_with_input(&["produce", "payroll"], b"salary\n");

    // A second principal, with its own profile, as an operator would issue it.
    let client_dir = env.home.path().join("alice");
    let endpoint = format!("127.0.0.1:{}", env.port);
    let ca_dir = env.home.path().join("local/ca");
    let issued = env.ok(&[
        "cluster",
        "ca",
        "issue",
        "--dir",
        ca_dir.to_str().unwrap(),
        "--client",
        "alice",
        "--out",
        client_dir.to_str().unwrap(),
        "--save-profile",
        "alice",
        "--endpoints",
        &endpoint,
    ]);
    assert!(issued.contains("sluice acl add"), "{issued}");
    fn with_profile<'a>(profile: &'a str, args: &[&'a str]) -> Vec<&'a str> {
        [&["--profile", profile], args].concat()
    }
    let as_alice = |args: &[&'static str]| with_profile("alice", args);
    let as_admin = |args: &[&'static str]| with_profile("local", args);

    // Nothing is granted yet: the denial names principal, operation and
    // resource, and the command that grants it.
    let err = env.fails(&as_alice(&["produce", "orders"]), b"x\n");
    assert!(
        err.contains(
            "alice may not produce on topic \"orders\"; an admin can grant it with \
             `sluice acl add --principal alice --operation produce --topic orders`"
        ),
        "{err}"
    );
    assert!(
        env.ok(&as_alice(&["topic", "list"])).contains("no topics"),
        "alice sees topics she holds nothing on"
    );

    env.ok(&as_admin(&[
        "acl",
        "add",
        "--principal",
        "alice",
        "--operation",
        "produce",
        "--topic",
        "orders",
    ]));
    env.ok(&as_admin(&[
        "acl",
        "add",
        "--principal",
        "alice",
        "--operation",
        "consume",
        "--topic-prefix",
        "ord",
    ]));
    env.ok_with_input(&as_alice(&["produce", "orders"]), b"first\n");
    assert_eq!(
        env.ok(&as_alice(&["consume", "orders", "-B", "-d"])),
        "first\n"
    );
    let listed = env.ok(&as_alice(&["topic", "list"]));
    assert!(
        listed.contains("orders") && !listed.contains("payroll"),
        "{listed}"
    );

    // What was not granted stays refused.
    for (args, needle) in [
        (
            vec!["consume", "payroll", "-B", "-d"],
            "alice may not consume on topic \"payroll\"",
        ),
        (
            vec!["topic", "create", "mine"],
            "alice may not admin on cluster",
        ),
        (
            vec!["topic", "delete", "orders"],
            "alice may not admin on cluster",
        ),
        (vec!["acl", "list"], "alice may not admin on cluster"),
        (
            vec![
                "acl",
                "add",
                "--principal",
                "alice",
                "--operation",
                "admin",
                "--cluster",
            ],
            "alice may not admin on cluster",
        ),
    ] {
        let err = env.fails(&as_alice(&args), b"");
        assert!(err.contains(needle), "`{}`: {err}", args.join(" "));
    }

    let listed = env.ok(&as_admin(&["acl", "list", "-O", "json"]));
    let entries: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(entries.as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(entries[0]["principal"], "alice");

    // Withdrawn, it is refused again (on every node's next request).
    env.ok(&as_admin(&[
        "acl",
        "remove",
        "--principal",
        "alice",
        "--operation",
        "produce",
        "--topic",
        "orders",
    ]));
    wait_until(std::time::Duration::from_secs(10), || {
        !env.run(&as_alice(&["produce", "orders"]), b"late\n")
            .status
            .success()
    });
    let err = env.fails(
        &as_admin(&[
            "acl",
            "remove",
            "--principal",
            "alice",
            "--operation",
            "produce",
            "--topic",
            "orders",
        ]),
        b"",
    );
    assert!(err.contains("sluice acl list"), "{err}");

    // Nothing granted leaked into the data.
    assert_eq!(
        env.ok(&as_admin(&["consume", "payroll", "-B", "-d"])),
        "salary\n"
    );
    assert_eq!(
        env.ok(&as_admin(&["consume", "orders", "-B", "-d"])),
        "first\n"
    );

    // Every denial and every administrative request is in the audit trail.
    let log = std::fs::read_to_string(env.node_dir().join("node.log")).unwrap();
    let audit: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("sluice::audit"))
        .collect();
    assert!(
        audit.iter().any(|l| l.contains("denied")
            && l.contains("principal=alice")
            && l.contains("payroll")),
        "{audit:#?}"
    );
    assert!(
        audit.iter().any(|l| l.contains("allowed")
            && l.contains("principal=admin")
            && l.contains("add ACL")),
        "{audit:#?}"
    );
    // And in the cluster's audit topic, one JSON record per event (the
    // events of the first seconds wait for the topic to be created).
    let mut trail = String::new();
    wait_until(Duration::from_secs(30), || {
        // Until the topic exists, the consumer fails.
        let out = env.run(&as_admin(&["consume", "sluice-audit", "-B", "-d"]), b"");
        trail = String::from_utf8(out.stdout).unwrap();
        trail.contains("\"principal\":\"alice\"") && trail.contains("add ACL")
    });
    let events: Vec<serde_json::Value> = trail
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events.iter().any(|e| e["principal"] == "alice"
            && e["authorization"] == "denied"
            && e["request"] == "fetch"
            && e["error"].as_str().unwrap().contains("payroll")),
        "{trail}"
    );
    assert!(
        events.iter().any(|e| e["principal"] == "admin"
            && e["authorization"] == "allowed"
            && e["request"] == "add ACL"
            && e["node"] == 1),
        "{trail}"
    );
    // Alice, who holds no grant on it, cannot read it.
    let err = env.fails(&as_alice(&["consume", "sluice-audit", "-B", "-d"]), b"");
    assert!(err.contains("alice may not consume"), "{err}");
}

#[test]
fn a_node_refuses_to_start_with_a_certificate_that_names_someone_else() {
    let env = Env::new();
    let ca = sluice_transport::ClusterCa::generate("c1").unwrap();
    for (issued, named) in [
        (ca.issue_node(2, &[], &[]).unwrap(), "names node 2"),
        (ca.issue_client("admin").unwrap(), "names admin"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        issued.save(&tls, "node").unwrap();
        std::fs::write(tls.join("ca.pem"), ca.cert_pem()).unwrap();
        let out = env.run(
            &[
                "node",
                "run",
                "--id",
                "1",
                "--cluster-id",
                "c1",
                "--data-dir",
                &dir.path().display().to_string(),
                "--listen",
                &format!("127.0.0.1:{}", crate::harness::free_udp_port()),
            ],
            b"",
        );
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("is not node 1's certificate") && err.contains(named),
            "{err}"
        );
        assert!(
            err.contains("--node-id 1"),
            "says how to issue the right one: {err}"
        );
    }
}

/// A node with `--log-file` writes its log there, including why it could
/// not start (stderr may go elsewhere, as `cluster start` arranges), and a
/// bound too small for a line is refused before the node starts.
#[test]
fn a_node_logs_to_its_log_file_including_why_it_did_not_start() {
    let env = Env::new();
    let ca = sluice_transport::ClusterCa::generate("c1").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    ca.issue_node(2, &[], &[])
        .unwrap()
        .save(&tls, "node")
        .unwrap();
    std::fs::write(tls.join("ca.pem"), ca.cert_pem()).unwrap();
    let log = dir.path().join("node.log");
    let port = format!("127.0.0.1:{}", crate::harness::free_udp_port());
    let data_dir = dir.path().display().to_string();
    let log_file = log.display().to_string();
    let args = |max: &'static str| {
        [
            "node",
            "run",
            "--id",
            "1",
            "--cluster-id",
            "c1",
            "--data-dir",
            &data_dir,
            "--listen",
            &port,
            "--log-file",
            &log_file,
            "--log-file-max-size",
            max,
        ]
        .map(str::to_string)
    };
    let run = |args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        env.run(&args, b"")
    };
    let out = run(&args("1MiB"));
    assert!(!out.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("node failed") && text.contains("is not node 1's certificate"),
        "{text}"
    );

    let out = run(&args("1KiB"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--log-file-max-size") && err.contains("64KiB"),
        "{err}"
    );
}
