//! What one peer may hold of a node: connections per source address, request
//! bytes per connection, and time to deliver a request. Each bound is
//! pushed past from outside; the node refuses or slows the peer, keeps its
//! memory within the bound and goes on serving everyone else.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use sluice_proto::limits::{
    CONNECTIONS_PER_SOURCE_IP_MAX, FRAME_SIZE_BYTES_MAX, REQUEST_BODY_STALL_DEADLINE_MS,
    REQUEST_BYTES_PER_CONNECTION_MAX, REQUEST_READ_DEADLINE_MS,
};
use sluice_proto::{Request, Response, WireError, codec};

use crate::harness::Env;

fn node_addr(env: &Env) -> SocketAddr {
    format!("127.0.0.1:{}", env.port).parse().unwrap()
}

fn connector(env: &Env, local_ip: Option<IpAddr>) -> sluice_transport::Connector {
    let identity = env.admin_identity();
    let config = sluice_transport::client_config(&env.ca_pem(), Some(&identity)).unwrap();
    sluice_transport::Connector::with_local_ip(config, Duration::from_secs(5), local_ip)
}

/// Lists topics on a stream of its own.
async fn list_topics(conn: &sluice_transport::Connection) -> Result<Response, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let frame = codec::encode(&Request::ListTopics).unwrap();
    sluice_transport::write_frame(&mut send, &frame)
        .await
        .map_err(|e| e.to_string())?;
    let _ = send.finish();
    let reply = sluice_transport::read_frame(&mut recv, 1 << 20)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no response")?;
    codec::decode(&reply).map_err(|e| e.to_string())
}

/// The node's resident memory, in MiB (`VmRSS`).
fn resident_mib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024
}

#[test]
fn one_source_address_holds_a_bounded_share_of_the_connections() {
    let env = Env::started();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let addr = node_addr(&env);
        // A source address of its own: the CLI's connections (from
        // 127.0.0.1, some still open until the node's idle deadline on a
        // loaded machine) must not count against the limit measured here.
        let source: IpAddr = "127.0.0.3".parse().unwrap();
        let mut held = Vec::new();
        for _ in 0..CONNECTIONS_PER_SOURCE_IP_MAX {
            // One connector per connection: a connector caches one per address.
            let conn = connector(&env, Some(source)).connect(addr).await.unwrap();
            held.push(conn);
        }
        // Whether the handshake fails or the connection dies right after,
        // no request is served on a connection beyond the limit.
        let refused = match connector(&env, Some(source)).connect(addr).await {
            Err(e) => e.to_string(),
            Ok(conn) => list_topics(&conn).await.unwrap_err(),
        };
        assert!(!refused.is_empty());
        // Another source address is served, and so are the held connections.
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let conn = connector(&env, Some(other)).connect(addr).await.unwrap();
        assert!(matches!(list_topics(&conn).await, Ok(Response::Topics(_))));
        assert!(matches!(
            list_topics(&held[0]).await,
            Ok(Response::Topics(_))
        ));
        // A closed connection gives its slot back.
        let last = held.pop().unwrap();
        last.close(0u32.into(), b"done");
        drop(last);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(conn) = connector(&env, None).connect(addr).await
                && matches!(list_topics(&conn).await, Ok(Response::Topics(_)))
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the closed connection's slot was not given back"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    env.ok(&["topic", "create", "after"]);
}

/// Streams that send all of a frame but its last byte would make a node
/// without a budget hold every body. Here one connection's frames may hold
/// only `REQUEST_BYTES_PER_CONNECTION_MAX` (plus what QUIC's windows
/// buffer), the node serves other connections meanwhile, and streams that
/// stall are answered with a deadline error.
#[test]
fn a_connection_holds_at_most_its_request_budget_and_stalled_streams_end() {
    let env = Env::started();
    let pid = env.node_pid();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let addr = node_addr(&env);
        let hog = connector(&env, None).connect(addr).await.unwrap();
        assert!(matches!(list_topics(&hog).await, Ok(Response::Topics(_))));
        let before = resident_mib(pid);

        // A stream that stops inside its header is answered at the read
        // deadline; one that stops after its header, at the body's stall
        // deadline (it holds room in the budget meanwhile).
        let stalled = |prefix: Vec<u8>| {
            let hog = hog.clone();
            tokio::spawn(async move {
                let (mut send, mut recv) = hog.open_bi().await.unwrap();
                send.write_all(&prefix).await.unwrap();
                let opened = tokio::time::Instant::now();
                let reply = sluice_transport::read_frame(&mut recv, 1 << 20).await;
                drop(send);
                (reply, opened.elapsed())
            })
        };
        let partial_header = stalled(vec![0, 0]);
        let header_only = stalled(100u32.to_be_bytes().to_vec());
        // Both streams are open before the big frames take the budget.
        tokio::time::sleep(Duration::from_millis(200)).await;

        // 40 streams of almost 16 MiB each, all but the last byte: 600 MiB
        // offered, of which the node may hold its budget.
        let announced = FRAME_SIZE_BYTES_MAX - 1;
        let body = vec![0xA5u8; announced - 1];
        let mut writers = Vec::new();
        for _ in 0..40 {
            let (mut send, recv) = hog.open_bi().await.unwrap();
            let body = body.clone();
            writers.push(tokio::spawn(async move {
                let _ = send.write_all(&(announced as u32).to_be_bytes()).await;
                let _ = send.write_all(&body).await;
                // Keep the stream open, its frame one byte short.
                tokio::time::sleep(Duration::from_secs(60)).await;
                drop((send, recv));
            }));
        }
        // Let the writers push what flow control and the budget allow.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let grown = resident_mib(pid).saturating_sub(before);
        let budget_mib = (REQUEST_BYTES_PER_CONNECTION_MAX / (1024 * 1024)) as u64;
        // The budget, QUIC's receive window (32 MiB) and slack for the
        // allocator; holding every body would be 600 MiB.
        assert!(
            grown < budget_mib + 32 + 150,
            "the node grew by {grown} MiB while one connection offered 600 MiB"
        );

        // Meanwhile another connection is served at once.
        let other = connector(&env, Some("127.0.0.3".parse().unwrap()))
            .connect(addr)
            .await
            .unwrap();
        let answered = tokio::time::timeout(Duration::from_secs(5), list_topics(&other)).await;
        assert!(
            matches!(answered, Ok(Ok(Response::Topics(_)))),
            "{answered:?}"
        );

        let error_of = |reply: Result<Option<Vec<u8>>, sluice_transport::FrameError>| match reply
            .map(|f| f.map(|f| codec::decode::<Response>(&f)))
        {
            Ok(Some(Ok(Response::Error(WireError::MalformedRequest { reason })))) => reason,
            other => panic!("a stalled stream got {other:?}"),
        };
        let (reply, after) = header_only.await.unwrap();
        let reason = error_of(reply);
        assert!(reason.contains("stopped sending"), "{reason}");
        let stall = Duration::from_millis(REQUEST_BODY_STALL_DEADLINE_MS);
        assert!(
            after < stall + Duration::from_secs(10),
            "answered after {after:?}"
        );
        let wait = Duration::from_millis(REQUEST_READ_DEADLINE_MS) + Duration::from_secs(10);
        let (reply, after) = tokio::time::timeout(wait, partial_header)
            .await
            .expect("the stream stalled in its header was never answered")
            .unwrap();
        let reason = error_of(reply);
        assert!(reason.contains("did not arrive within"), "{reason}");
        assert!(after >= Duration::from_millis(REQUEST_READ_DEADLINE_MS));
        for writer in writers {
            writer.abort();
        }
    });
    env.ok(&["topic", "create", "after"]);
}

/// Text like Fluvio's CLI tests produce (`yes abcdefghijklmnopqrstuvwxyz |
/// head -c N`): lines of the alphabet, cut at `len` bytes.
fn alphabet_text(len: usize) -> Vec<u8> {
    b"abcdefghijklmnopqrstuvwxyz\n"
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

/// Records past the producer's default 1 MiB go once `--max-request-size`
/// raises it, up to the cluster's own limit, as one record (larger than a
/// batch, compressed or not), replicated and read back whole, also after a
/// restart; past the given size or the cluster's limit they are refused by
/// name before anything is sent.
#[test]
fn records_up_to_the_cluster_limit_go_when_the_producer_allows_them() {
    use sluice_proto::limits::RECORD_SIZE_BYTES_MAX;
    let env = Env::started_with(2);
    env.ok(&["topic", "create", "big", "-r", "2"]);
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, len: usize| {
        let path = dir.path().join(name);
        std::fs::write(&path, alphabet_text(len)).unwrap();
        path.to_str().unwrap().to_string()
    };
    let small = file("small", 2_500_000);
    let big = file("big", 15_000_000);
    // Fluvio's flags: a batch size below the record, a request size far
    // above the cluster's limit (which then applies), gzip.
    for path in [&small, &big] {
        env.ok(&[
            "produce",
            "big",
            "--batch-size",
            "5000000",
            "--max-request-size",
            "100000000",
            "--file",
            path,
            "--raw",
            "--compression",
            "gzip",
        ]);
    }
    // Uncompressed too, and at the edge of a given request size.
    let edge = file("edge", 14_999_000);
    env.ok(&[
        "produce",
        "big",
        "--max-request-size",
        "15000000",
        "--file",
        &edge,
        "--raw",
    ]);
    let e = env.fails(
        &[
            "produce",
            "big",
            "--max-request-size",
            "15000000",
            "--file",
            &big,
            "--raw",
        ],
        b"",
    );
    assert!(
        e.contains("exceeded maximum request size") && e.contains("limit of 15000000 bytes"),
        "{e}"
    );
    // Without the flag, the producer's default of 1 MiB.
    let e = env.fails(&["produce", "big", "--file", &small, "--raw"], b"");
    assert!(e.contains("(the default)"), "{e}");
    // Past the cluster's limit whatever the flag says.
    let past = file("past", RECORD_SIZE_BYTES_MAX + 1);
    let e = env.fails(
        &[
            "produce",
            "big",
            "--max-request-size",
            "100000000",
            "--file",
            &past,
            "--raw",
        ],
        b"",
    );
    assert!(
        e.contains("exceeded maximum request size")
            && e.contains(&format!("limit of {RECORD_SIZE_BYTES_MAX} bytes")),
        "{e}"
    );
    let expected: Vec<usize> = vec![2_500_000, 15_000_000, 14_999_000];
    let read_back = |extra: &[&str]| {
        let mut args = vec!["consume", "big", "-B", "-d", "-O", "json"];
        args.extend_from_slice(extra);
        let out = env.ok(&args);
        let values: Vec<String> = out
            .lines()
            .map(|l| {
                let record: serde_json::Value = serde_json::from_str(l).unwrap();
                record["value"].as_str().unwrap().to_string()
            })
            .collect();
        let lens: Vec<usize> = values.iter().map(String::len).collect();
        assert_eq!(lens, expected, "{extra:?}");
        for (value, len) in values.iter().zip(&expected) {
            assert!(value.as_bytes() == alphabet_text(*len), "{extra:?}: {len}");
        }
    };
    read_back(&[]);
    read_back(&["--read-from", "follower"]);
    env.kill(1);
    env.kill(2);
    env.start_with_env(2, &[]);
    read_back(&[]);
}
