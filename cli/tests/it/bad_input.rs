//! Bad input gets a clear error, and the node keeps serving.

use crate::harness::{Env, free_udp_port};

#[test]
fn errors_without_a_running_cluster() {
    let env = Env::new();
    let err = env.fails(&["topic", "list"], b"");
    assert!(
        err.contains("sluice cluster start --local"),
        "says how to start one: {err}"
    );

    let taken = std::net::UdpSocket::bind(("127.0.0.1", env.port)).unwrap();
    let err = env.fails(
        &[
            "cluster",
            "start",
            "--local",
            "--port",
            &env.port.to_string(),
        ],
        b"",
    );
    assert!(
        err.contains("already in use"),
        "names the port problem: {err}"
    );
    drop(taken);
}

#[test]
fn bad_requests_get_clear_errors_and_lose_nothing() {
    let env = Env::started();
    env.ok(&["topic", "create", "t"]);
    env.ok_with_input(&["produce", "t"], b"one\ntwo\nthree\n");

    // Errors begin with Fluvio's phrase (scripts match on it) and go on
    // with ours; a name one typo away from a topic is offered.
    let err = env.fails(&["produce", "missing"], b"x\n");
    assert!(
        err.contains("Topic not found: topic \"missing\" not found"),
        "{err}"
    );
    assert!(!err.contains("did you mean"), "nothing is close: {err}");
    let err = env.fails(&["consume", "missing", "-B", "-d"], b"");
    assert!(err.contains("Topic not found"), "{err}");
    let err = env.fails(&["consume", "tt", "-B", "-d"], b"");
    assert!(err.contains("did you mean \"t\""), "{err}");
    let err = env.fails(&["produce", "tx"], b"x\n");
    assert!(err.contains("did you mean \"t\""), "{err}");
    let err = env.fails(&["consume", "t", "-p", "0", "-p", "3", "-d"], b"");
    assert!(err.contains("topic t has no partition 3"), "{err}");
    let err = env.fails(&["consume", "t", "-o", "soon", "-d"], b"");
    assert!(err.contains("earliest or latest"), "{err}");
    assert_eq!(
        env.ok(&["consume", "t", "-o", "earliest", "-d"]),
        "one\ntwo\nthree\n"
    );

    let err = env.fails(&["topic", "create", "t"], b"");
    assert!(err.contains("Topic already exists"), "{err}");

    let err = env.fails(&["topic", "create", "zero", "-p", "0"], b"");
    assert!(err.contains("partition count"), "{err}");

    let big = vec![b'x'; 2 * 1024 * 1024];
    let err = env.fails(&["produce", "t"], &[big.as_slice(), b"\n"].concat());
    assert!(
        err.contains("exceeded maximum request size") && err.contains("limit"),
        "{err}"
    );

    let err = env.fails(&["consume", "t", "-o", "1000", "-d"], b"");
    assert!(err.contains("out of range"), "{err}");

    // A data dir that belongs to this cluster cannot be claimed by another one.
    let dir = env.node_dir();
    let out = env.run(
        &[
            "node",
            "run",
            "--id",
            "1",
            "--cluster-id",
            "another-cluster",
            "--data-dir",
            &dir.display().to_string(),
            "--listen",
            &format!("127.0.0.1:{}", free_udp_port()),
        ],
        b"",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("belongs to cluster"), "{err}");

    // Nothing was lost and the node still serves.
    assert_eq!(env.ok(&["consume", "t", "-B", "-d"]), "one\ntwo\nthree\n");
}

#[test]
fn a_frame_of_another_protocol_version_fails_only_its_stream() {
    use sluice_proto::{PROTOCOL_VERSION, Request, Response, WireError, codec};
    let env = Env::started();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conn = raw_connection(&env).await;
        let ask = |frame: Vec<u8>| ask_raw(conn.clone(), frame);
        let mut foreign = (PROTOCOL_VERSION + 41).to_be_bytes().to_vec();
        foreign.extend_from_slice(b"a request from the future");
        assert_eq!(
            ask(foreign).await,
            Response::Error(WireError::UnsupportedVersion {
                client: PROTOCOL_VERSION + 41,
                server: PROTOCOL_VERSION
            })
        );
        let garbage = [PROTOCOL_VERSION.to_be_bytes().as_slice(), &[0xff; 32]].concat();
        assert!(matches!(
            ask(garbage).await,
            Response::Error(WireError::MalformedRequest { .. })
        ));
        // The same connection keeps working.
        let ok = ask(codec::encode(&Request::ClusterStatus).unwrap()).await;
        assert!(matches!(ok, Response::ClusterStatus(_)), "{ok:?}");
    });
}

/// Hostile requests from a client that reached the port: each gets a clear
/// error (or ends), the node stays up, and nothing is lost.
#[test]
fn hostile_frames_neither_crash_nor_spin_the_node() {
    use sluice_proto::{Request, Response, WireError, codec};
    let env = Env::started();
    env.ok(&["topic", "create", "t"]);
    env.ok_with_input(&["produce", "t"], b"one\ntwo\n");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conn = raw_connection(&env).await;
        let ask = |frame: Vec<u8>| ask_raw(conn.clone(), frame);
        let malformed = |r: Response, what: &str| match r {
            Response::Error(WireError::MalformedRequest { reason }) => {
                assert!(reason.contains(what), "{reason}")
            }
            other => panic!("expected a malformed-request error, got {other:?}"),
        };
        // 100,000 Once prefixes in one frame (nested Onces overflowed a
        // worker's stack when a Once could carry a request).
        let once = codec::encode(&Request::Once {
            id: [0, 0],
            change: sluice_proto::MetadataChange::DeleteTopic { name: "t".into() },
        })
        .unwrap();
        let delete_t = codec::encode(&Request::DeleteTopic { name: "t".into() }).unwrap();
        // DeleteTopic's body without its variant index is the change's fields.
        let fields = &delete_t[3..];
        let prefix = &once[2..once.len() - fields.len() - 1];
        let mut nested = once[..2].to_vec();
        for _ in 0..100_000 {
            nested.extend_from_slice(prefix);
        }
        nested.extend_from_slice(&once[once.len() - fields.len() - 1..]);
        // The second prefix's tag is read as a change's, and is none.
        malformed(ask(nested).await, "expected variant index");
        let ok = ask(codec::encode(&Request::ListTopics).unwrap()).await;
        assert!(matches!(ok, Response::Topics(_)), "{ok:?}");
    });
    // The last offset there is (`last + 1` wrapped to 0 and spun a worker).
    assert_eq!(
        env.ok(&["consume", "t", "-B", "-d", "--end", &u64::MAX.to_string()]),
        "one\ntwo\n"
    );
    // Nothing was lost and the node still serves.
    assert_eq!(env.ok(&["consume", "t", "-B", "-d"]), "one\ntwo\n");
}

/// The node's address space, in KiB (`VmSize` in /proc).
fn vm_size_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmSize:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// 500 streams that each send a frame header announcing almost 16 MiB and
/// then nothing: the node must not reserve what the headers announce (1,000
/// of them grew it by 16 GB of address space), and it keeps serving.
#[test]
fn frame_headers_alone_do_not_reserve_memory() {
    use sluice_proto::{Request, Response, codec};
    let env = Env::started();
    let pid = env.node_pid();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conn = raw_connection(&env).await;
        let ask = |frame: Vec<u8>| ask_raw(conn.clone(), frame);
        // Warm up whatever a first request allocates, then measure.
        ask(codec::encode(&Request::ListTopics).unwrap()).await;
        let before = vm_size_kib(pid);
        let announced = (sluice_proto::limits::FRAME_SIZE_BYTES_MAX - 1) as u32;
        let mut held = Vec::new();
        // Below the streams a connection may have open (the next would wait).
        for _ in 0..500 {
            let (mut send, recv) = conn.open_bi().await.unwrap();
            send.write_all(&announced.to_be_bytes()).await.unwrap();
            held.push((send, recv));
        }
        // Another connection is served at once. (On this one, requests wait
        // behind the frames that hold its byte budget: see tests/it/limits.rs.)
        let other = raw_connection(&env).await;
        let ok = ask_raw(other, codec::encode(&Request::ListTopics).unwrap()).await;
        assert!(matches!(ok, Response::Topics(_)), "{ok:?}");
        let grown_mib = vm_size_kib(pid).saturating_sub(before) / 1024;
        // 500 x 16 MiB reserved would be 8,000 MiB.
        assert!(
            grown_mib < 1_000,
            "the node's address space grew by {grown_mib} MiB"
        );
        drop(held);
    });
}

/// A QUIC connection to node 1 of `env`, for sending frames by hand.
pub(crate) async fn raw_connection(env: &Env) -> sluice_transport::Connection {
    let ca = std::fs::read_to_string(env.home.path().join("local/ca/ca.pem")).unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", env.port).parse().unwrap();
    let identity = env.admin_identity();
    let connector = sluice_transport::Connector::new(
        sluice_transport::client_config(&ca, Some(&identity)).unwrap(),
    );
    connector.connect(addr).await.unwrap()
}

/// Sends one frame on a stream of its own and decodes the answer.
pub(crate) async fn ask_raw(
    conn: sluice_transport::Connection,
    frame: Vec<u8>,
) -> sluice_proto::Response {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    sluice_transport::write_frame(&mut send, &frame)
        .await
        .unwrap();
    send.finish().unwrap();
    let reply = sluice_transport::read_frame(&mut recv, 1 << 20)
        .await
        .unwrap()
        .unwrap();
    sluice_proto::codec::decode(&reply).unwrap()
}

/// A record stamped far ahead of the node's clock would keep its segment
/// (and every later one) from expiring by time: refused, naming the record.
#[test]
fn records_stamped_far_in_the_future_are_refused() {
    use sluice_proto::Record;
    let env = Env::started();
    env.ok(&["topic", "create", "t"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let endpoint = format!("127.0.0.1:{}", env.port);
        let client =
            sluice_client::Client::connect(&endpoint, &env.ca_pem(), Some(env.admin_identity()))
                .await
                .unwrap();
        let now = sluice_proto::now_ms();
        let record = |timestamp_ms| Record {
            key: None,
            value: b"v".to_vec(),
            timestamp_ms,
            headers: Vec::new(),
        };
        let err = client
            .produce("t", 0, vec![record(now), record(i64::MAX)])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("record 1 is stamped") && err.contains("ahead"),
            "{err}"
        );
        // A few minutes of clock skew is fine.
        client
            .produce("t", 0, vec![record(now + 5 * 60 * 1000)])
            .await
            .unwrap();
    });
    assert_eq!(env.ok(&["consume", "t", "-B", "-d"]), "v\n");
}
