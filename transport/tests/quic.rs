//! End-to-end tests over real QUIC connections on 127.0.0.1.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use sluice_transport::endpoint::{self, connect};
use sluice_transport::{
    CertKeyPair, ClientAuth, ClusterCa, Connector, FrameError, TlsError, TransportError,
    bind_server, client_config, read_frame, server_config, write_frame, write_frame_owned,
    write_frame_parts,
};

const MAX_FRAME: usize = 4 * 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(5);

fn localhost() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

fn pki() -> (ClusterCa, CertKeyPair) {
    let ca = ClusterCa::generate("test-cluster").unwrap();
    let node = ca
        .issue_node(1, &[], &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
        .unwrap();
    (ca, node)
}

fn server(ca: &ClusterCa, node: &CertKeyPair, auth: ClientAuth) -> (quinn::Endpoint, SocketAddr) {
    let cfg = server_config(node, ca.cert_pem(), auth).unwrap();
    let endpoint = bind_server(localhost(), cfg).unwrap();
    let addr = endpoint.local_addr().unwrap();
    (endpoint, addr)
}

/// Accepts connections forever; every bidi stream echoes each frame back
/// prefixed with "echo:" and finishes when the client does.
fn spawn_echo_server(endpoint: quinn::Endpoint) {
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                let Ok(connection) = incoming.await else {
                    return;
                };
                while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                    tokio::spawn(async move {
                        while let Some(frame) = read_frame(&mut recv, MAX_FRAME).await.unwrap() {
                            write_frame_parts(&mut send, &[b"echo:", &frame])
                                .await
                                .unwrap();
                        }
                        send.finish().unwrap();
                    });
                }
            });
        }
    });
}

async fn client(
    ca_pem: &str,
    identity: Option<&CertKeyPair>,
    addr: SocketAddr,
) -> quinn::Connection {
    let endpoint = endpoint::client_endpoint(addr).unwrap();
    let cfg = client_config(ca_pem, identity).unwrap();
    connect(&endpoint, cfg, addr, TIMEOUT).await.unwrap()
}

#[tokio::test]
async fn frames_flow_both_ways_on_one_and_many_streams() {
    let (ca, node) = pki();
    let (endpoint, addr) = server(&ca, &node, ClientAuth::Optional);
    spawn_echo_server(endpoint);
    let connection = client(ca.cert_pem(), None, addr).await;

    // Several frames on one stream, including an empty and a large one.
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    let big = vec![7u8; 1024 * 1024];
    let payloads: Vec<&[u8]> = vec![b"one", b"", b"three", &big];
    for payload in &payloads {
        write_frame(&mut send, payload).await.unwrap();
        let echoed = read_frame(&mut recv, MAX_FRAME).await.unwrap().unwrap();
        assert_eq!(&echoed[..5], b"echo:");
        assert_eq!(&echoed[5..], *payload);
        // The same frames handed over without a copy (large ones in two chunks).
        write_frame_owned(&mut send, payload.to_vec())
            .await
            .unwrap();
        let echoed = read_frame(&mut recv, MAX_FRAME).await.unwrap().unwrap();
        assert_eq!(&echoed[..5], b"echo:");
        assert_eq!(&echoed[5..], *payload);
    }
    send.finish().unwrap();
    assert!(read_frame(&mut recv, MAX_FRAME).await.unwrap().is_none());

    // Many concurrent streams on the same connection.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200u32 {
        let connection = connection.clone();
        tasks.spawn(async move {
            let (mut send, mut recv) = connection.open_bi().await.unwrap();
            for j in 0..3u32 {
                let msg = format!("stream {i} frame {j}");
                write_frame(&mut send, msg.as_bytes()).await.unwrap();
                let echoed = read_frame(&mut recv, MAX_FRAME).await.unwrap().unwrap();
                assert_eq!(echoed, format!("echo:{msg}").into_bytes());
            }
            send.finish().unwrap();
            assert!(read_frame(&mut recv, MAX_FRAME).await.unwrap().is_none());
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
}

#[tokio::test]
async fn client_trusting_another_ca_is_refused() {
    let (ca, node) = pki();
    let (endpoint, addr) = server(&ca, &node, ClientAuth::Optional);
    spawn_echo_server(endpoint);
    let other = ClusterCa::generate("other-cluster").unwrap();
    let client_endpoint = endpoint::client_endpoint(addr).unwrap();
    let cfg = client_config(other.cert_pem(), None).unwrap();
    let err = connect(&client_endpoint, cfg, addr, TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::Tls { addr: a, .. } if a == addr),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains(&addr.to_string()), "{message}");
    assert!(message.contains("cluster CA"), "{message}");
}

#[tokio::test]
async fn required_client_auth_demands_a_ca_issued_certificate() {
    let (ca, node) = pki();
    let (endpoint, addr) = server(&ca, &node, ClientAuth::Required);
    let server_endpoint = endpoint.clone();
    spawn_echo_server(endpoint);

    // Without a certificate: either the handshake fails, or (TLS 1.3 lets the
    // client finish first) the server closes the connection with a TLS alert.
    let client_endpoint = endpoint::client_endpoint(addr).unwrap();
    let cfg = client_config(ca.cert_pem(), None).unwrap();
    match connect(&client_endpoint, cfg, addr, TIMEOUT).await {
        Err(err) => assert!(matches!(err, TransportError::Tls { .. }), "{err:?}"),
        Ok(connection) => {
            let reason = tokio::time::timeout(TIMEOUT, connection.closed())
                .await
                .unwrap();
            assert!(endpoint::is_tls_failure(&reason), "{reason:?}");
        }
    }

    // A certificate from another CA is refused too.
    let other = ClusterCa::generate("other-cluster").unwrap();
    let stranger = other.issue_client("intruder").unwrap();
    let cfg = client_config(ca.cert_pem(), Some(&stranger)).unwrap();
    match connect(&client_endpoint, cfg, addr, TIMEOUT).await {
        Err(err) => assert!(matches!(err, TransportError::Tls { .. }), "{err:?}"),
        Ok(connection) => {
            let reason = tokio::time::timeout(TIMEOUT, connection.closed())
                .await
                .unwrap();
            assert!(endpoint::is_tls_failure(&reason), "{reason:?}");
        }
    }

    // With a CA-issued certificate the connection works.
    let client_cert = ca.issue_client("client-1").unwrap();
    let connection = client(ca.cert_pem(), Some(&client_cert), addr).await;
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    write_frame(&mut send, b"hello").await.unwrap();
    let echoed = read_frame(&mut recv, MAX_FRAME).await.unwrap().unwrap();
    assert_eq!(echoed, b"echo:hello");
    drop(server_endpoint);
}

/// Opens a raw stream to a server whose single handler reports what
/// `read_frame` returned for the bytes written.
async fn read_frame_result(raw: &[u8], max: usize) -> Result<Option<Vec<u8>>, FrameError> {
    let (ca, node) = pki();
    let (endpoint, addr) = server(&ca, &node, ClientAuth::Optional);
    let server_task = tokio::spawn(async move {
        let connection = endpoint.accept().await.unwrap().await.unwrap();
        let (_send, mut recv) = connection.accept_bi().await.unwrap();
        let result = read_frame(&mut recv, max).await;
        (result, connection)
    });
    let connection = client(ca.cert_pem(), None, addr).await;
    let (mut send, _recv) = connection.open_bi().await.unwrap();
    // A stream is only announced to the peer once data or FIN is sent.
    send.write_all(raw).await.unwrap();
    send.finish().unwrap();
    let (result, _server_connection) = tokio::time::timeout(TIMEOUT, server_task)
        .await
        .unwrap()
        .unwrap();
    result
}

#[tokio::test]
async fn read_frame_checks_size_and_truncation() {
    // A 4 GiB length prefix is refused before any allocation.
    let err = read_frame_result(&[0xff, 0xff, 0xff, 0xff], 1024)
        .await
        .unwrap_err();
    assert!(
        matches!(err, FrameError::TooLarge { size, max: 1024 } if size == u64::from(u32::MAX)),
        "{err:?}"
    );

    // Payload cut short.
    let mut raw = 100u32.to_be_bytes().to_vec();
    raw.extend_from_slice(&[1; 10]);
    let err = read_frame_result(&raw, 1024).await.unwrap_err();
    assert!(
        matches!(
            err,
            FrameError::Truncated {
                expected: 100,
                received: 10
            }
        ),
        "{err:?}"
    );

    // Length prefix cut short.
    let err = read_frame_result(&[0, 0], 1024).await.unwrap_err();
    assert!(
        matches!(
            err,
            FrameError::Truncated {
                expected: 4,
                received: 2
            }
        ),
        "{err:?}"
    );

    // A frame exactly at the limit is fine.
    let mut raw = 3u32.to_be_bytes().to_vec();
    raw.extend_from_slice(b"abc");
    assert_eq!(read_frame_result(&raw, 3).await.unwrap().unwrap(), b"abc");
}

#[tokio::test]
async fn binding_a_used_address_reports_addr_in_use() {
    let (ca, node) = pki();
    let (_endpoint, addr) = server(&ca, &node, ClientAuth::Optional);
    let cfg = server_config(&node, ca.cert_pem(), ClientAuth::Optional).unwrap();
    let err = bind_server(addr, cfg).unwrap_err();
    assert!(
        matches!(err, TransportError::AddrInUse { addr: a } if a == addr),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains(&addr.to_string()), "{message}");
    assert!(message.contains("pick another port"), "{message}");
}

#[tokio::test]
async fn connector_reuses_and_reconnects() {
    let (ca, node) = pki();
    let (endpoint, addr) = server(&ca, &node, ClientAuth::Optional);
    let (conn_tx, mut conn_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let connection = incoming.await.unwrap();
            conn_tx.send(connection.clone()).unwrap();
            tokio::spawn(async move {
                while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                    let frame = read_frame(&mut recv, MAX_FRAME).await.unwrap().unwrap();
                    write_frame(&mut send, &frame).await.unwrap();
                    send.finish().unwrap();
                }
            });
        }
    });

    let connector = Connector::new(client_config(ca.cert_pem(), None).unwrap());
    let first = connector.connect(addr).await.unwrap();
    let again = connector.clone().connect(addr).await.unwrap();
    assert_eq!(first.stable_id(), again.stable_id());
    let server_side = conn_rx.recv().await.unwrap();

    // The server closes the connection; once the client has noticed, the
    // connector dials a fresh one.
    server_side.close(0u32.into(), b"bye");
    tokio::time::timeout(TIMEOUT, first.closed()).await.unwrap();
    let fresh = connector.connect(addr).await.unwrap();
    assert_ne!(fresh.stable_id(), first.stable_id());
    let (mut send, mut recv) = fresh.open_bi().await.unwrap();
    write_frame(&mut send, b"ping").await.unwrap();
    assert_eq!(
        read_frame(&mut recv, MAX_FRAME).await.unwrap().unwrap(),
        b"ping"
    );
    assert!(conn_rx.recv().await.is_some());

    // Connection errors name the address.
    connector.close_all().await;
    let unused = {
        let socket = std::net::UdpSocket::bind(localhost()).unwrap();
        socket.local_addr().unwrap()
    };
    let short = Connector::with_timeout(
        client_config(ca.cert_pem(), None).unwrap(),
        Duration::from_millis(300),
    );
    let err = short.connect(unused).await.unwrap_err();
    assert!(err.to_string().contains(&unused.to_string()), "{err}");
}

#[test]
fn ca_and_certificates_survive_save_and_load() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClusterCa::generate("prod-7").unwrap();
    ca.save(dir.path()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let loaded = ClusterCa::load(dir.path()).unwrap();
    assert_eq!(loaded.cluster_id(), "prod-7");
    assert_eq!(loaded.cert_pem(), ca.cert_pem());

    let node = loaded.issue_node(2, &[], &[]).unwrap();
    node.save(dir.path(), "node-2").unwrap();
    assert_eq!(CertKeyPair::load(dir.path(), "node-2").unwrap(), node);

    // Missing files name the path.
    let err = ClusterCa::load(dir.path().join("nope")).unwrap_err();
    assert!(matches!(err, TlsError::ReadFile { .. }), "{err:?}");
    assert!(err.to_string().contains("nope"), "{err}");

    // A key from another CA is detected.
    let other = tempfile::tempdir().unwrap();
    ClusterCa::generate("prod-8")
        .unwrap()
        .save(other.path())
        .unwrap();
    std::fs::copy(other.path().join("ca.key"), dir.path().join("ca.key")).unwrap();
    let err = ClusterCa::load(dir.path()).unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
}

#[tokio::test]
async fn certificates_from_a_loaded_ca_verify_against_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClusterCa::generate("reload").unwrap();
    ca.save(dir.path()).unwrap();
    let loaded = ClusterCa::load(dir.path()).unwrap();
    let node = loaded.issue_node(3, &[], &[]).unwrap();
    let client_cert = loaded.issue_client("client-3").unwrap();
    let (endpoint, addr) = server(&ca, &node, ClientAuth::Required);
    spawn_echo_server(endpoint);
    let connection = client(ca.cert_pem(), Some(&client_cert), addr).await;
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    write_frame(&mut send, b"x").await.unwrap();
    assert_eq!(
        read_frame(&mut recv, MAX_FRAME).await.unwrap().unwrap(),
        b"echo:x"
    );
}

#[tokio::test]
async fn the_server_learns_who_connected_and_a_client_certificate_cannot_serve() {
    let (ca, node) = pki();
    let (endpoint, addr) = server(&ca, &node, ClientAuth::Required);
    let accepted = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..2 {
            let connection = endpoint.accept().await.unwrap().await.unwrap();
            seen.push(sluice_transport::peer_identity(&connection));
        }
        seen
    });
    let alice = ca.issue_client("alice").unwrap();
    let _a = client(ca.cert_pem(), Some(&alice), addr).await;
    let node_2 = ca.issue_node(2, &[], &[]).unwrap();
    let _b = client(ca.cert_pem(), Some(&node_2), addr).await;
    let seen = accepted.await.unwrap();
    assert_eq!(
        seen,
        vec![
            Some(Ok(sluice_transport::PeerIdentity::Client("alice".into()))),
            Some(Ok(sluice_transport::PeerIdentity::Node(2))),
        ]
    );

    // A listener that presents a client certificate is refused by clients:
    // the certificate names no server and is not valid for serving.
    let (impostor, impostor_addr) = server(&ca, &alice, ClientAuth::Required);
    spawn_echo_server(impostor);
    let client_endpoint = endpoint::client_endpoint(impostor_addr).unwrap();
    let cfg = client_config(ca.cert_pem(), Some(&node_2)).unwrap();
    let err = connect(&client_endpoint, cfg, impostor_addr, TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Tls { .. }), "{err:?}");
}

/// One request and its answer, each its stream's only frame, the way the
/// client and the nodes exchange them; `read_end` says whether each side
/// notes the stream's end before dropping it. Returns the STOP_SENDING
/// frames the two sides sent.
async fn stop_sendings_of_one_exchange(read_end: bool) -> (u64, u64) {
    let (ca, node) = pki();
    let (endpoint, addr) = server(&ca, &node, ClientAuth::Optional);
    let (server_conn_tx, server_conn_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let connection = endpoint.accept().await.unwrap().await.unwrap();
        let (mut send, mut recv) = connection.accept_bi().await.unwrap();
        let request = read_frame(&mut recv, MAX_FRAME).await.unwrap().unwrap();
        if read_end {
            // The FIN may trail the frame by a moment on a loaded machine.
            let deadline = tokio::time::Instant::now() + TIMEOUT;
            while !sluice_transport::read_end_if_arrived(&mut recv) {
                assert!(tokio::time::Instant::now() < deadline, "no FIN");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        write_frame_parts(&mut send, &[b"answer to ", &request])
            .await
            .unwrap();
        send.finish().unwrap();
        drop(recv);
        let _ = send.stopped().await;
        server_conn_tx.send(connection).unwrap();
    });
    let connection = client(ca.cert_pem(), None, addr).await;
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    write_frame(&mut send, b"a request").await.unwrap();
    send.finish().unwrap();
    let answer = read_frame(&mut recv, MAX_FRAME).await.unwrap().unwrap();
    assert_eq!(answer, b"answer to a request");
    if read_end {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while !sluice_transport::read_end_if_arrived(&mut recv) {
            assert!(tokio::time::Instant::now() < deadline, "no FIN");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    drop(recv);
    let server_conn = server_conn_rx.await.unwrap();
    // Let whatever was queued go out.
    tokio::time::sleep(Duration::from_millis(100)).await;
    (
        connection.stats().frame_tx.stop_sending,
        server_conn.stats().frame_tx.stop_sending,
    )
}

/// A receive side dropped before its end was read makes quinn send
/// STOP_SENDING, FIN or not, often in a packet of its own: noting the end
/// first (`read_end_if_arrived`) spares that on both sides of every request.
#[tokio::test]
async fn a_stream_read_to_its_end_is_dropped_without_stop_sending() {
    assert_eq!(stop_sendings_of_one_exchange(false).await, (1, 1));
    assert_eq!(stop_sendings_of_one_exchange(true).await, (0, 0));
}

/// One run of a node's listener, in a runtime of its own so that it can die
/// the way a killed process does: every task dropped, nothing sent.
struct ListenerRun {
    runtime: tokio::runtime::Runtime,
}

impl ListenerRun {
    fn start(ca: &ClusterCa, node: &CertKeyPair, addr: SocketAddr) -> (Self, SocketAddr) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let cfg = server_config(node, ca.cert_pem(), ClientAuth::Optional).unwrap();
        let endpoint = {
            let _inside = runtime.enter();
            sluice_transport::bind_node_server(addr, cfg, node).unwrap()
        };
        let addr = endpoint.local_addr().unwrap();
        runtime.spawn(async move { spawn_echo_server(endpoint) });
        (Self { runtime }, addr)
    }

    /// Drops every task of the run without letting it send anything, and
    /// returns once they are gone (its socket closed).
    async fn kill(self) {
        let runtime = self.runtime;
        tokio::task::spawn_blocking(move || runtime.shutdown_timeout(TIMEOUT))
            .await
            .unwrap();
    }
}

async fn echo_once(connection: &quinn::Connection) -> Result<Vec<u8>, String> {
    let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
    write_frame(&mut send, b"are you there?")
        .await
        .map_err(|e| e.to_string())?;
    let _ = send.finish();
    read_frame(&mut recv, MAX_FRAME)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "no answer".to_string())
}

/// What ends a node-to-node connection whose listener was killed and
/// started again on the same address with `next_identity`.
async fn end_of_a_connection_to_a_restarted_listener(
    ca: &ClusterCa,
    node: &CertKeyPair,
    next_identity: &CertKeyPair,
) -> quinn::ConnectionError {
    let (first, addr) = ListenerRun::start(ca, node, localhost());
    let config = sluice_transport::peer_client_config(ca.cert_pem(), node).unwrap();
    let connection = connect(
        &endpoint::client_endpoint(addr).unwrap(),
        config,
        addr,
        TIMEOUT,
    )
    .await
    .unwrap();
    assert_eq!(
        echo_once(&connection).await.unwrap(),
        b"echo:are you there?"
    );
    first.kill().await;
    let (second, _) = ListenerRun::start(ca, next_identity, addr);
    // The next request reaches the new run, which knows nothing of it.
    assert!(echo_once(&connection).await.is_err());
    let reason = tokio::time::timeout(TIMEOUT, connection.closed())
        .await
        .expect("the connection ends within its idle timeout in any case");
    second.kill().await;
    reason
}

#[tokio::test]
async fn a_restarted_node_resets_the_connections_of_its_previous_run() {
    let (ca, node) = pki();
    // Same key in both runs: the new run's stateless reset carries the
    // token the old run issued, so the client believes it.
    let reason = end_of_a_connection_to_a_restarted_listener(&ca, &node, &node).await;
    assert!(
        matches!(reason, quinn::ConnectionError::Reset),
        "expected a stateless reset, got {reason:?}"
    );
    // Another key (what every run had with quinn's default, random one):
    // the reset is not believed and the connection lingers until its idle
    // timeout ends it.
    let other = ca
        .issue_node(1, &[], &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
        .unwrap();
    let reason = end_of_a_connection_to_a_restarted_listener(&ca, &node, &other).await;
    assert!(
        matches!(reason, quinn::ConnectionError::TimedOut),
        "expected an idle timeout, got {reason:?}"
    );
}
