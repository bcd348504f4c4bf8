//! `sluice connector run`: an http source against an endpoint the test
//! serves on loopback, with a SmartModule between the endpoint and the
//! topic; a file source and a file sink. `connector create` and the rest:
//! the same source run by the cluster, moved off a killed node.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::harness::{Env, module};

/// Serves `answers` in turn (then the last one again), one per connection,
/// counting requests; the odd ones chunked, to exercise both framings.
fn serve(answers: Vec<(u16, &'static str)>) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let served = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let n = served.fetch_add(1, Ordering::SeqCst);
            let (status, body) = answers[n.min(answers.len() - 1)];
            let answer = if n % 2 == 1 {
                format!(
                    "HTTP/1.1 {status} X\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                    body.len()
                )
            } else {
                format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            };
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    (port, count)
}

/// The seed's connector file, as written, with a local endpoint (and a
/// faster interval).
fn seed_file(env: &Env, port: u16) -> std::path::PathBuf {
    let file = env.home.path().join("cat-facts-connector.yml");
    std::fs::write(
        &file,
        format!(
            "name: cat-facts-connector\ntype: http\ntopic: cat-facts\ncreate_topic: true\n\
             direction: source\nparameters:\n  endpoint: http://127.0.0.1:{port}/fact\n  \
             interval: 0.2\n  filter: has-a\n"
        ),
    )
    .unwrap();
    file
}

#[test]
fn an_http_source_polls_filters_and_produces() {
    let env = Env::started();
    let filter = module("hello-filter");
    env.ok(&["smart-module", "create", "has-a", "--wasm-file", &filter]);
    let (port, requests) = serve(vec![
        (200, "cats nap"),
        (200, "dogs run"),
        (503, "busy"),
        (200, "a cat purrs"),
    ]);
    // The seed's file, as written, with a local endpoint.
    let file = seed_file(&env, port);
    let out = env
        .command(&[
            "connector",
            "run",
            "--config",
            &file.display().to_string(),
            "--max-polls",
            "4",
        ])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(requests.load(Ordering::SeqCst), 4);
    assert!(log.contains("created topic \"cat-facts\""), "{log}");
    assert!(
        log.contains("answered 503"),
        "the failure is reported: {log}"
    );
    assert!(
        log.contains("4 poll(s), 2 record(s) sent, 1 dropped by SmartModules, 1 failure(s)"),
        "{log}"
    );
    // "dogs run" has no `a`: the module dropped it before it left.
    assert_eq!(
        env.ok(&["consume", "cat-facts", "-B", "-d"]),
        "cats nap\na cat purrs\n"
    );

    // Fluvio's format, the whole response as JSON.
    let (port, _) = serve(vec![(200, "hello")]);
    let file = env.home.path().join("fluvio-style.yml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: 0.1.0\nmeta:\n  version: 0.2.5\n  name: full\n  type: http-source\n  \
             topic: full\n  create-topic: true\nhttp:\n  endpoint: http://127.0.0.1:{port}/\n  \
             interval: 1s\n  output_parts: full\n"
        ),
    )
    .unwrap();
    env.ok(&[
        "connector",
        "run",
        "--config",
        &file.display().to_string(),
        "--max-polls",
        "1",
    ]);
    let record: serde_json::Value =
        serde_json::from_str(env.ok(&["consume", "full", "-B", "-d"]).trim()).unwrap();
    assert_eq!(record["status"], 200);
    assert_eq!(record["body"], "hello");
    assert_eq!(record["headers"]["content-length"], "5");

    // A topic that does not exist, without create_topic: a clear error.
    std::fs::write(
        &file,
        "name: nowhere\ntype: http\ntopic: missing\nparameters:\n  endpoint: http://127.0.0.1:9/\n",
    )
    .unwrap();
    let e = env.fails(
        &["connector", "run", "--config", &file.display().to_string()],
        b"",
    );
    assert!(e.contains("create_topic: true"), "{e}");
}

/// A file source tails a log (partial lines, a restart, a rotation) into a
/// topic, a SmartModule dropping some lines; a file sink writes the topic
/// back out, resuming after a restart where it committed. Each line arrives
/// once.
#[test]
fn a_file_source_and_a_file_sink_carry_lines_once_across_restarts_and_rotation() {
    let env = Env::started();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let append = |text: &str| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    let source = dir.path().join("source.yaml");
    std::fs::write(
        &source,
        format!(
            "name: app-logs\ntype: file\ntopic: logs\ncreate_topic: true\nparameters:\n  \
             path: app.log\n  interval: 100ms\n  filter: {}\n",
            module("digits-filter")
        ),
    )
    .unwrap();
    let run_source = |polls: &str| {
        env.ok(&[
            "connector",
            "run",
            "--config",
            &source.display().to_string(),
            "--max-polls",
            polls,
        ])
    };
    append("one\n123\ntwo\nthr");
    run_source("1");
    // Resumes after what it sent; the unfinished line is read whole.
    append("ee\n");
    run_source("1");
    // Rotated while it runs: the old file's last line, then the new file.
    let mut running = env
        .command(&[
            "connector",
            "run",
            "--config",
            &source.display().to_string(),
            "--max-polls",
            "30",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    append("four\n");
    std::thread::sleep(Duration::from_millis(400));
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    append("five\n");
    assert!(running.wait().unwrap().success());
    assert!(dir.path().join("app-logs.position").exists());
    // `digits-filter` keeps what is not all digits.
    assert_eq!(
        env.ok(&["consume", "logs", "-B", "-d"]),
        "one\ntwo\nthree\nfour\nfive\n"
    );

    let out = dir.path().join("out.txt");
    let sink = dir.path().join("sink.yaml");
    std::fs::write(
        &sink,
        "apiVersion: 0.1.0\nmeta: {name: logs-out, type: file-sink, topic: logs}\n\
         file: {path: out.txt}\n",
    )
    .unwrap();
    let run_sink = |records: &str| {
        env.ok(&[
            "connector",
            "run",
            "--config",
            &sink.display().to_string(),
            "--max-records",
            records,
        ])
    };
    run_sink("5");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "one\ntwo\nthree\nfour\nfive\n"
    );
    // The next run starts after its committed offset.
    append("six\n");
    run_source("1");
    run_sink("1");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "one\ntwo\nthree\nfour\nfive\nsix\n"
    );
    let consumers = env.ok(&["consumer", "list"]);
    assert!(consumers.contains("logs-out"), "{consumers}");
}

/// An `https://` endpoint: the source checks the server's certificate
/// against the connector's `ca_file` and polls over TLS; a certificate from
/// another CA is refused and the connector goes on retrying.
#[test]
fn an_http_source_polls_an_https_endpoint_and_refuses_a_certificate_it_cannot_check() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use std::sync::Arc as StdArc;
    let ca_params = {
        let mut p = CertificateParams::default();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p
    };
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let server_config = StdArc::new(
        rustls::ServerConfig::builder_with_provider(StdArc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![server_cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
        )
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let Ok(conn) = rustls::ServerConnection::new(server_config.clone()) else {
                return;
            };
            let mut tls = rustls::StreamOwned::new(conn, stream);
            let mut request = [0u8; 4096];
            if tls.read(&mut request).is_err() {
                continue; // a client that refused the certificate
            }
            let n = count.fetch_add(1, Ordering::SeqCst);
            let body = format!("secure fact {n}");
            let _ = write!(
                tls,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });

    let env = Env::started();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
    let file = dir.path().join("tls.yaml");
    std::fs::write(
        &file,
        format!(
            "name: tls-facts\ntype: http\ntopic: facts\ncreate_topic: true\nparameters:\n  \
             endpoint: https://localhost:{port}/fact\n  interval: 100ms\n  ca_file: ca.pem\n"
        ),
    )
    .unwrap();
    let run = |polls: &str| {
        env.run(
            &[
                "connector",
                "run",
                "--config",
                &file.display().to_string(),
                "--max-polls",
                polls,
            ],
            b"",
        )
    };
    let out = run("2");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        env.ok(&["consume", "facts", "-B", "-d"]),
        "secure fact 0\nsecure fact 1\n"
    );
    // Another CA: the handshake fails, counted and retried, nothing sent.
    let other_key = KeyPair::generate().unwrap();
    let other = ca_params.self_signed(&other_key).unwrap();
    std::fs::write(dir.path().join("ca.pem"), other.pem()).unwrap();
    let out = run("1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("TLS with https://localhost") && stderr.contains("1 failure(s)"),
        "{stderr}"
    );
    assert_eq!(served.load(Ordering::SeqCst), 2);
}

/// The records of `topic` read from its start (none if it cannot be read).
fn records_of(env: &Env, topic: &str) -> Vec<String> {
    let out = env.run(&["consume", topic, "-B", "-d"], b"");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn describe(env: &Env, name: &str) -> serde_json::Value {
    serde_json::from_str(&env.ok(&["connector", "describe", name, "-O", "json"])).unwrap()
}

#[test]
fn the_cluster_runs_a_connector_moves_it_off_a_killed_node_and_stops_it_when_deleted() {
    let env = crate::harness::Env::started_with(3);
    let filter = module("hello-filter");
    env.ok(&["smart-module", "create", "has-a", "--wasm-file", &filter]);
    // Replicated, so the records outlive the node the test kills.
    env.ok(&["topic", "create", "cat-facts", "-r", "3"]);
    let (port, requests) = serve(vec![
        (200, "a cat naps"),
        (200, "dogs run"),
        (200, "a cat naps"),
    ]);
    let file = seed_file(&env, port);
    // A credential in the file: kept to run the connector, hidden when shown.
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("  headers: [\"Authorization: Bearer sekrit-token\"]\n");
    std::fs::write(&file, text).unwrap();
    let created = env.ok(&[
        "connector",
        "create",
        "--config",
        &file.display().to_string(),
    ]);
    let first: u64 = created
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no node in {created:?}"));
    assert!(
        created.contains("connector \"cat-facts-connector\" created"),
        "{created}"
    );
    // The module ran on the node: every record has an `a` ("dogs run" was dropped).
    crate::harness::wait_until(Duration::from_secs(30), || {
        records_of(&env, "cat-facts").len() >= 3
    });
    assert!(
        records_of(&env, "cat-facts")
            .iter()
            .all(|r| r == "a cat naps")
    );
    let d = describe(&env, "cat-facts-connector");
    assert_eq!(d["node"], first, "{d}");
    let shown = d["config"].as_str().unwrap();
    assert!(
        shown.contains("Authorization: ***") && !shown.contains("sekrit"),
        "{shown}"
    );
    crate::harness::wait_until(Duration::from_secs(15), || {
        let d = describe(&env, "cat-facts-connector");
        d["state"] == "running"
            && d["records_out"].as_u64() >= Some(2)
            && d["dropped"].as_u64() >= Some(1)
    });
    let listed: serde_json::Value =
        serde_json::from_str(&env.ok(&["connector", "list", "-O", "json"])).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let log = env.ok(&["connector", "logs", "cat-facts-connector"]);
    assert!(log.contains("record(s) sent"), "{log}");
    // Its node's metrics say the same (the metrics port is the node's QUIC port).
    let label = ["connector=\"cat-facts-connector\""];
    crate::harness::wait_until(Duration::from_secs(15), || {
        crate::harness::scrape(env.port + first as u16 - 1).is_some_and(|body| {
            crate::harness::sample(&body, "sluice_connector_running", &label) == Some(1.0)
                && crate::harness::sample(&body, "sluice_connector_records_out", &label)
                    .is_some_and(|n| n >= 2.0)
        })
    });

    // Its node dies: the controller moves it, and records keep coming.
    env.kill(first);
    crate::harness::wait_until(Duration::from_secs(45), || {
        let out = env.run(
            &["connector", "describe", "cat-facts-connector", "-O", "json"],
            b"",
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .is_ok_and(|d| d["node"] != first && d["state"] == "running")
    });
    let before = records_of(&env, "cat-facts").len();
    crate::harness::wait_until(Duration::from_secs(30), || {
        records_of(&env, "cat-facts").len() >= before + 3
    });

    // Deleted: it stops on its node, and nothing else (such as the killed
    // node's process, had it outlived its node) writes any more; its node
    // keeps nothing of it.
    let d = describe(&env, "cat-facts-connector");
    let second = d["node"].as_u64().unwrap();
    let dir = env
        .node_dir_of(second)
        .join("connectors/cat-facts-connector");
    let stored = std::fs::read_to_string(dir.join("config.yaml")).unwrap();
    assert!(stored.contains("Bearer sekrit-token"), "{stored}");
    env.ok(&["connector", "delete", "cat-facts-connector"]);
    crate::harness::wait_until(Duration::from_secs(10), || !dir.exists());
    let polls = requests.load(Ordering::SeqCst);
    let stored = records_of(&env, "cat-facts").len();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        requests.load(Ordering::SeqCst),
        polls,
        "polled after its deletion"
    );
    assert_eq!(records_of(&env, "cat-facts").len(), stored);
    let e = env.fails(&["connector", "describe", "cat-facts-connector"], b"");
    assert!(e.contains("no connector is named"), "{e}");
}

#[test]
fn connector_create_refuses_a_file_the_cluster_could_not_run() {
    let env = crate::harness::Env::started();
    let dir = env.home.path();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let cases = [
        (
            write("t.yml", "name: c\ntype: ftp\ntopic: t\ndirection: source\n"),
            "ftp",
        ),
        (
            write(
                "p.yml",
                "name: c\ntype: http\ntopic: t\nparameters: {endpoint: http://h/, intervl: 3}\n",
            ),
            "intervl",
        ),
        (
            {
                std::fs::copy(module("hello-filter"), dir.join("f.wasm")).unwrap();
                write(
                    "w.yml",
                    "name: c\ntype: http\ntopic: t\nparameters: {endpoint: http://h/, filter: f.wasm}\n",
                )
            },
            "smart-module create",
        ),
        (
            write(
                "n.yml",
                "name: Bad Name\ntype: http\ntopic: t\nparameters: {endpoint: http://h/}\n",
            ),
            "connector name",
        ),
    ];
    for (file, expected) in cases {
        let e = env.fails(&["connector", "create", "--config", &file], b"");
        assert!(e.contains(expected), "{file}: {e}");
    }
    let listed = env.ok(&["connector", "list", "-O", "json"]);
    assert_eq!(listed.trim(), "[]");
    let e = env.fails(&["connector", "logs", "nothing-here"], b"");
    assert!(e.contains("no connector is named"), "{e}");
}

fn sql_file(env: &Env, name: &str, table: &str, mode: &str, extra: &str) -> String {
    let db = env.home.path().join("readings.db");
    let file = env.home.path().join(format!("{name}.yml"));
    std::fs::write(
        &file,
        format!(
            "apiVersion: 0.1.0\nmeta:\n  name: {name}\n  type: sql-sink\n  topic: readings\nsql:\n  \
             url: sqlite://{}\n  table: {table}\n  {mode}\n  columns:\n    device_id: {{json-key: \
             device.id, type: int, required: true}}\n    temp: {{type: float, default: \"0\"}}\n{extra}",
            db.display()
        ),
    )
    .unwrap();
    file.display().to_string()
}

#[test]
fn a_sql_sink_writes_json_records_as_rows_and_resumes_after_its_commit() {
    let env = Env::started();
    let db = env.home.path().join("readings.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE latest (device_id INTEGER PRIMARY KEY, temp REAL);
         CREATE TABLE history (device_id INTEGER, temp REAL);",
    )
    .unwrap();
    env.ok(&["topic", "create", "readings"]);
    env.ok_with_input(
        &["produce", "readings"],
        b"{\"device\": {\"id\": 1}, \"temp\": 20.5}\n{\"device\": {\"id\": 2}}\n{\"device\": {\"id\": 1}, \"temp\": 22}\n",
    );
    let rows = |table: &str| -> Vec<(i64, f64)> {
        let mut q = conn
            .prepare(&format!(
                "SELECT device_id, temp FROM {table} ORDER BY rowid"
            ))
            .unwrap();
        q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    // Upsert: one row per device, the latest reading.
    let latest = sql_file(
        &env,
        "latest-sink",
        "latest",
        "mode: upsert\n  key: [device_id]",
        "",
    );
    env.ok(&[
        "connector",
        "run",
        "--config",
        &latest,
        "--max-records",
        "3",
    ]);
    let mut got = rows("latest");
    got.sort_by_key(|r| r.0);
    assert_eq!(got, [(1, 22.0), (2, 0.0)]);
    // Insert, in two runs: the second resumes after the first's commit, so
    // no record is written twice.
    let history = sql_file(&env, "history-sink", "history", "mode: insert", "");
    env.ok(&[
        "connector",
        "run",
        "--config",
        &history,
        "--max-records",
        "3",
    ]);
    env.ok_with_input(
        &["produce", "readings"],
        b"{\"device\": {\"id\": 3}, \"temp\": \"19\"}\n",
    );
    env.ok(&[
        "connector",
        "run",
        "--config",
        &history,
        "--max-records",
        "1",
    ]);
    assert_eq!(rows("history"), [(1, 20.5), (2, 0.0), (1, 22.0), (3, 19.0)]);

    // A record that does not map stops the sink, naming it; skip_invalid
    // counts it and goes on.
    env.ok_with_input(
        &["produce", "readings"],
        b"not json\n{\"device\": {\"id\": 4}}\n",
    );
    let e = env.fails(
        &[
            "connector",
            "run",
            "--config",
            &history,
            "--max-records",
            "2",
        ],
        b"",
    );
    assert!(e.contains("offset 4") && e.contains("not JSON"), "{e}");
    assert_eq!(rows("history").len(), 4, "the failed batch was rolled back");
    let skipping = sql_file(
        &env,
        "history-sink",
        "history",
        "mode: insert\n  skip_invalid: true",
        "",
    );
    let out = env.run(
        &[
            "connector",
            "run",
            "--config",
            &skipping,
            "--max-records",
            "1",
        ],
        b"",
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("1 skipped"), "{log}");
    assert_eq!(rows("history").last(), Some(&(4, 0.0)));

    // A table that does not exist is refused before any record is read.
    let missing = sql_file(&env, "nope-sink", "nope", "mode: insert", "");
    let e = env.fails(
        &[
            "connector",
            "run",
            "--config",
            &missing,
            "--max-records",
            "1",
        ],
        b"",
    );
    assert!(e.contains("table \"nope\" does not exist"), "{e}");
}
