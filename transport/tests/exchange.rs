//! The shared request/response exchange against a node stand-in that answers
//! well, not at all, with garbage, or with an oversized frame.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use sluice_proto::limits::FRAME_SIZE_BYTES_MAX;
use sluice_proto::{Request, Response, codec};
use sluice_transport::endpoint::{self, connect};
use sluice_transport::{
    ClientAuth, ClusterCa, ExchangeError, FrameError, bind_server, client_config, exchange,
    read_frame, server_config, write_frame,
};

const TIMEOUT: Duration = Duration::from_secs(5);

/// Answers `NodeIncarnation { id }` by `id`: 1 with `Joined`, 2 by finishing
/// the stream without a frame, 3 with bytes that are no `Response`, 4 with a
/// length prefix past the frame limit.
fn spawn_node_stand_in(endpoint: quinn::Endpoint) {
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                let Ok(connection) = incoming.await else {
                    return;
                };
                while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                    let frame = read_frame(&mut recv, FRAME_SIZE_BYTES_MAX).await.unwrap();
                    let request: Request = codec::decode(&frame.unwrap()).unwrap();
                    let Request::NodeIncarnation { id } = request else {
                        panic!("the stand-in only knows NodeIncarnation");
                    };
                    match id {
                        1 => {
                            let answer = codec::encode(&Response::Joined).unwrap();
                            write_frame(&mut send, &answer).await.unwrap();
                        }
                        2 => {}
                        3 => write_frame(&mut send, b"\x00\x01not a response")
                            .await
                            .unwrap(),
                        _ => send.write_all(&u32::MAX.to_be_bytes()).await.unwrap(),
                    }
                    send.finish().unwrap();
                }
            });
        }
    });
}

async fn connection_to_stand_in() -> quinn::Connection {
    let ca = ClusterCa::generate("test-cluster").unwrap();
    let node = ca
        .issue_node(1, &[], &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
        .unwrap();
    let cfg = server_config(&node, ca.cert_pem(), ClientAuth::Optional).unwrap();
    let server = bind_server(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), cfg).unwrap();
    let addr = server.local_addr().unwrap();
    spawn_node_stand_in(server);
    let endpoint = endpoint::client_endpoint(addr).unwrap();
    let cfg = client_config(ca.cert_pem(), None).unwrap();
    connect(&endpoint, cfg, addr, TIMEOUT).await.unwrap()
}

async fn ask(connection: &quinn::Connection, id: u64) -> Result<Response, ExchangeError> {
    let request = Request::NodeIncarnation { id };
    tokio::time::timeout(TIMEOUT, exchange(connection, &request))
        .await
        .expect("the stand-in answers at once")
        .map(|(response, _)| response)
}

#[tokio::test]
async fn an_answer_is_decoded_and_each_failure_has_its_own_error() {
    let connection = connection_to_stand_in().await;
    assert!(matches!(ask(&connection, 1).await, Ok(Response::Joined)));
    let unanswered = ask(&connection, 2).await.unwrap_err();
    assert!(
        matches!(unanswered, ExchangeError::Unanswered),
        "{unanswered:?}"
    );
    assert!(unanswered.to_string().contains("without answering"));
    let garbage = ask(&connection, 3).await.unwrap_err();
    assert!(matches!(garbage, ExchangeError::Decode(_)), "{garbage:?}");
    let huge = ask(&connection, 4).await.unwrap_err();
    assert!(
        matches!(huge, ExchangeError::Frame(FrameError::TooLarge { .. })),
        "{huge:?}"
    );
    // Each failure was on its own stream: the connection still serves.
    assert!(matches!(ask(&connection, 1).await, Ok(Response::Joined)));
}

#[tokio::test]
async fn a_closed_connection_fails_to_open_a_stream() {
    let connection = connection_to_stand_in().await;
    connection.close(0u32.into(), b"done");
    let error = ask(&connection, 1).await.unwrap_err();
    assert!(matches!(error, ExchangeError::Open(_)), "{error:?}");
}
