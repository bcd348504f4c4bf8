//! The node's side of the network between nodes: requests to other nodes over
//! QUIC, with this node's certificate as client identity (mutual TLS between
//! nodes), through the same exchange clients use (`sluice_transport::exchange`).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quinn::{RecvStream, SendStream};
use sluice_proto::limits::{APPEND_STREAMS_PER_PEER_MAX, FRAME_SIZE_BYTES_MAX};
use sluice_proto::{RaftRpc, RaftRpcKind, Request, Response, WireError, codec};
use sluice_raft::{
    APPEND_STREAM_IN_FLIGHT_MAX, AppendStream, AppendStreamFuture, CallError, CallFuture, NodeId,
    RaftTransport,
};
use sluice_transport::{Connector, ExchangeError, TransportError, read_frame, write_frame_owned};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::timeouts::APPEND_STREAM_REFUSAL_MEMORY;
use sluice_raft::timeouts::APPEND_STREAM_IDLE;

/// Why a request to another node got no answer. The messages leave the node
/// and its address to the caller, which names them in its own context.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerError {
    /// The node's address names no host we can find.
    #[error("cannot resolve its address: {0}")]
    Resolve(String),
    /// No connection to the node could be made.
    #[error(transparent)]
    Connect(#[from] TransportError),
    /// The connection was there but the request or its answer was lost.
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    /// The node did not answer within the caller's deadline.
    #[error("no answer within {0:?}")]
    NoAnswer(Duration),
}

/// Sends requests to other nodes; shared by Raft and by request forwarding.
#[derive(Clone)]
pub(crate) struct Peers {
    connector: Connector,
    /// Whether Raft appends may stream (the node's `append_streams`).
    append_streams: bool,
    streams: Arc<Mutex<StreamBook>>,
}

/// The Raft append streams this node has to each other node (see
/// `sluice_raft`'s pipelined replication).
#[derive(Default)]
struct StreamBook {
    /// At most `APPEND_STREAMS_PER_PEER_MAX` permits per node.
    open: HashMap<NodeId, Arc<Semaphore>>,
    /// Nodes that refused a stream (an older build), until when.
    refused_until: HashMap<NodeId, Instant>,
}

impl Peers {
    pub(crate) fn new(connector: Connector, append_streams: bool) -> Self {
        Self {
            connector,
            append_streams,
            streams: Default::default(),
        }
    }

    /// A connection to the node at `addr`.
    async fn connect(&self, addr: &str) -> Result<sluice_transport::Connection, PeerError> {
        let target = resolve(addr).await?;
        Ok(self.connector.connect(target).await?)
    }

    /// A permit for one more append stream to `target`, unless it refused
    /// them lately or all its permits are out.
    /// `Err` names why not, as [`crate::metrics::RAFT_APPEND_STREAMS`] counts it.
    fn stream_permit(&self, target: NodeId) -> Result<OwnedSemaphorePermit, &'static str> {
        let mut book = self.streams.lock().unwrap();
        if let Some(until) = book.refused_until.get(&target) {
            if Instant::now() < *until {
                return Err("refused");
            }
            book.refused_until.remove(&target);
        }
        let open = book
            .open
            .entry(target)
            .or_insert_with(|| Arc::new(Semaphore::new(APPEND_STREAMS_PER_PEER_MAX)));
        open.clone().try_acquire_owned().map_err(|_| "at_limit")
    }

    fn stream_refused(&self, target: NodeId) {
        let until = Instant::now() + APPEND_STREAM_REFUSAL_MEMORY;
        let mut book = self.streams.lock().unwrap();
        book.refused_until.insert(target, until);
    }

    /// Sends one request to the node at `addr` and returns its one response
    /// (a node's refusal, `Response::Error`, is an answer too), or gives up
    /// after `deadline`.
    pub(crate) async fn request(
        &self,
        addr: &str,
        request: &Request,
        deadline: Duration,
    ) -> Result<Response, PeerError> {
        let ask = async {
            let connection = self.connect(addr).await?;
            let (response, _) = sluice_transport::exchange(&connection, request).await?;
            Ok(response)
        };
        tokio::time::timeout(deadline, ask)
            .await
            .unwrap_or(Err(PeerError::NoAnswer(deadline)))
    }
}

async fn resolve(addr: &str) -> Result<SocketAddr, PeerError> {
    if let Ok(a) = addr.parse() {
        return Ok(a);
    }
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| PeerError::Resolve(e.to_string()))?
        .next()
        .ok_or_else(|| PeerError::Resolve(format!("{addr} names no address")))
}

impl RaftTransport for Peers {
    fn call(&self, target: NodeId, addr: String, rpc: RaftRpc, timeout: Duration) -> CallFuture {
        let peers = self.clone();
        Box::pin(async move {
            let (kind, started) = (rpc.kind, std::time::Instant::now());
            let answer = peers.request(&addr, &Request::Raft(rpc), timeout).await;
            let ok = matches!(answer, Ok(Response::Raft { .. }));
            crate::metrics::raft_rpc(kind, ok, started.elapsed());
            match answer {
                Err(e) => Err(unreachable(target, &addr, e.to_string())),
                Ok(Response::Raft { payload }) => Ok(payload),
                Ok(Response::Error(e)) => Err(CallError::Remote {
                    node: target,
                    reason: e.to_string(),
                }),
                Ok(other) => Err(CallError::Remote {
                    node: target,
                    reason: format!("unexpected answer {other:?}"),
                }),
            }
        })
    }

    /// Opens a stream, sends its opening frame and leaves two tasks to
    /// carry it: one writes the appends, one reads the answers. No round
    /// trip is waited for: the appends follow the opening at once, and the
    /// opening's answer comes first (a refusal ends the stream, and the
    /// node is not asked again for a while).
    fn open_append_stream(
        &self,
        target: NodeId,
        addr: String,
        group: u64,
        timeout: Duration,
    ) -> AppendStreamFuture {
        if !self.append_streams {
            return Box::pin(async { Ok(None) });
        }
        let peers = self.clone();
        Box::pin(async move {
            let permit = match peers.stream_permit(target) {
                Ok(permit) => permit,
                Err(outcome) => {
                    crate::metrics::append_stream(outcome);
                    return Ok(None);
                }
            };
            let open = async {
                let connection = peers.connect(&addr).await?;
                let (mut send, recv) = connection.open_bi().await.map_err(ExchangeError::Open)?;
                let opening = Request::Raft(RaftRpc {
                    group,
                    kind: RaftRpcKind::AppendStream,
                    payload: Vec::new(),
                });
                let bytes = codec::encode(&opening).map_err(ExchangeError::Encode)?;
                write_frame_owned(&mut send, bytes)
                    .await
                    .map_err(ExchangeError::Frame)?;
                Ok::<_, PeerError>((send, recv))
            };
            let (send, recv) = match tokio::time::timeout(timeout, open).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return Err(unreachable(target, &addr, e.to_string())),
                Err(_) => {
                    return Err(unreachable(
                        target,
                        &addr,
                        format!("no stream within {timeout:?}"),
                    ));
                }
            };
            let (requests, outgoing) = mpsc::channel(APPEND_STREAM_IN_FLIGHT_MAX);
            let (answer, answers) = mpsc::channel(APPEND_STREAM_IN_FLIGHT_MAX);
            let sent = Arc::new(Mutex::new(VecDeque::new()));
            // Held while either end runs: the stream is open until both are done.
            let permit = Arc::new(permit);
            tokio::spawn(write_appends(
                send,
                group,
                outgoing,
                sent.clone(),
                permit.clone(),
            ));
            let reader = Reader {
                peers,
                target,
                addr,
                sent,
                _permit: permit,
            };
            tokio::spawn(reader.read_answers(recv, answer));
            crate::metrics::append_stream("opened");
            Ok(Some(AppendStream { requests, answers }))
        })
    }
}

fn unreachable(node: NodeId, addr: &str, reason: String) -> CallError {
    CallError::Unreachable {
        node,
        addr: addr.to_string(),
        reason,
    }
}

/// Writes a stream's appends as they come, each an ordinary Raft request.
/// When the group drops its end, finishes the stream if every append was
/// answered, and resets it otherwise: the follower then stops serving what
/// nobody waits for any more. A stream with every append answered and
/// nothing more to write for [`APPEND_STREAM_IDLE`] is finished too: a
/// group parks its stream between openraft's sessions
/// (`sluice_raft::network` pipeline), and one parked and never taken over
/// must not hold its permit for long.
async fn write_appends(
    mut send: SendStream,
    group: u64,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
    sent: Arc<Mutex<VecDeque<std::time::Instant>>>,
    _permit: Arc<OwnedSemaphorePermit>,
) {
    loop {
        let payload = match tokio::time::timeout(APPEND_STREAM_IDLE, outgoing.recv()).await {
            Ok(Some(payload)) => payload,
            Ok(None) => break,
            Err(_) if sent.lock().unwrap().is_empty() => break,
            Err(_) => continue,
        };
        let append = Request::Raft(RaftRpc {
            group,
            kind: RaftRpcKind::AppendEntries,
            payload,
        });
        let bytes = match codec::encode(&append) {
            Ok(bytes) => bytes,
            Err(e) => {
                // The group keeps each append under the frame limit.
                tracing::warn!(group, error = %e, "could not encode an append; ending its stream");
                let _ = send.reset(0u32.into());
                return;
            }
        };
        sent.lock().unwrap().push_back(std::time::Instant::now());
        if write_frame_owned(&mut send, bytes).await.is_err() {
            return;
        }
    }
    if sent.lock().unwrap().is_empty() {
        let _ = send.finish();
    } else {
        let _ = send.reset(0u32.into());
    }
}

/// The reading end of an append stream; holds its permit while it lives.
struct Reader {
    peers: Peers,
    target: NodeId,
    addr: String,
    /// When each append still unanswered was written, in order.
    sent: Arc<Mutex<VecDeque<std::time::Instant>>>,
    _permit: Arc<OwnedSemaphorePermit>,
}

impl Reader {
    /// Hands each answer to the group, in order, until the stream ends,
    /// fails, or the group drops its end.
    async fn read_answers(
        self,
        mut recv: RecvStream,
        answer: mpsc::Sender<Result<Vec<u8>, CallError>>,
    ) {
        let mut opened = false;
        loop {
            let frame = tokio::select! {
                frame = read_frame(&mut recv, FRAME_SIZE_BYTES_MAX) => frame,
                _ = answer.closed() => {
                    let _ = recv.stop(0u32.into());
                    return;
                }
            };
            let response = match frame.map(|f| f.map(|f| codec::decode::<Response>(&f))) {
                Ok(None) => return,
                Ok(Some(Ok(response))) => response,
                Ok(Some(Err(e))) => {
                    let reason = format!("undecodable answer on an append stream: {e}");
                    let _ = answer.send(Err(self.remote(reason))).await;
                    return;
                }
                Err(e) => {
                    let lost = unreachable(self.target, &self.addr, e.to_string());
                    let _ = answer.send(Err(lost)).await;
                    return;
                }
            };
            let payload = match response {
                Response::Raft { payload } => payload,
                Response::Error(
                    e @ (WireError::MalformedRequest { .. } | WireError::UnsupportedVersion { .. }),
                ) if !opened => {
                    tracing::info!(node = self.target, error = %e,
                        "a node refused an append stream; sending it appends one by one");
                    self.peers.stream_refused(self.target);
                    let reason = format!("does not serve append streams: {e}");
                    let _ = answer.send(Err(self.remote(reason))).await;
                    return;
                }
                Response::Error(e) => {
                    let _ = answer.send(Err(self.remote(e.to_string()))).await;
                    return;
                }
                other => {
                    let reason = format!("unexpected answer on an append stream: {other:?}");
                    let _ = answer.send(Err(self.remote(reason))).await;
                    return;
                }
            };
            if !opened {
                opened = true;
                continue;
            }
            if let Some(at) = self.sent.lock().unwrap().pop_front() {
                crate::metrics::raft_rpc(RaftRpcKind::AppendEntries, true, at.elapsed());
            }
            if answer.send(Ok(payload)).await.is_err() {
                let _ = recv.stop(0u32.into());
                return;
            }
        }
    }

    fn remote(&self, reason: String) -> CallError {
        CallError::Remote {
            node: self.target,
            reason,
        }
    }
}
