//! The QUIC server: one request per bidirectional stream, decoded with the
//! proto codec and dispatched to the node's handlers.
//!
//! A malformed, oversized or wrong-version frame fails its own stream with an
//! error response; the connection and the node carry on.
//!
//! This module admits connections, reads, authorizes and answers requests;
//! the handlers live by audience and concern: what clients send about
//! records (`produce`, `fetch`) and consumer progress (`consumers`), what
//! they send about the cluster's configuration (`admin`), and what only
//! nodes send each other (`peer`, refused to any other principal by
//! `crate::authz`).

mod admin;
mod append_stream;
mod connectors;
mod consumers;
mod fetch;
mod fetch_cursor;
mod peer;
mod redact;

pub(crate) use admin::seed_topics;

use std::sync::Arc;
use std::time::Duration;

use quinn::{RecvStream, SendStream};
use sluice_proto::limits::{
    CONNECTION_IDLE_DEADLINE_MS, FRAME_SIZE_BYTES_MAX, REQUEST_BODY_STALL_DEADLINE_MS,
    REQUEST_READ_DEADLINE_MS,
};
use sluice_proto::{
    CodecError, PROTOCOL_VERSION, RaftRpcKind, Request, Response, WireError, codec,
};
use sluice_transport::{FrameError, read_frame_body, read_frame_len, write_frame_owned};

use crate::admission::{Admission, ConnectionSlot, Reservation};
use crate::authz::{self, Access, Principal};
use sluice_controller::Controller;

use crate::shared::Shared;
use crate::timeouts::FORWARD_SLACK;

pub(crate) async fn serve(endpoint: quinn::Endpoint, node: Arc<Shared>) {
    let admission = Admission::new();
    while let Some(incoming) = endpoint.accept().await {
        let remote = incoming.remote_address();
        // Counted before the handshake, so refusing costs the node nothing.
        let slot = match admission.admit(remote.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                tracing::warn!(%remote, %refusal, "connection refused");
                incoming.refuse();
                continue;
            }
        };
        let node = node.clone();
        tokio::spawn(async move {
            match incoming.await {
                Ok(conn) => serve_connection(conn, node, slot).await,
                Err(e) => tracing::debug!(%remote, error = %e, "handshake failed"),
            }
        });
    }
}

/// Application close code of a connection closed after
/// [`CONNECTION_IDLE_DEADLINE_MS`] with no request under way.
const IDLE_CLOSE_CODE: u32 = 0;

async fn serve_connection(conn: quinn::Connection, node: Arc<Shared>, slot: ConnectionSlot) {
    let remote = conn.remote_address();
    let _live = crate::metrics::Live::new(crate::metrics::QUIC_CONNECTIONS);
    let principal = Arc::new(Principal::of(&conn));
    let slot = Arc::new(slot);
    tracing::debug!(%remote, %principal, "peer connected");
    let idle_deadline = Duration::from_millis(CONNECTION_IDLE_DEADLINE_MS);
    // Streams of this connection still being served: a connection with a
    // follow consumer open is not idle, however long it goes without a new stream.
    let open = Arc::new(());
    loop {
        match tokio::time::timeout(idle_deadline, conn.accept_bi()).await {
            Ok(Ok((send, recv))) => {
                let peer = Peer {
                    principal: principal.clone(),
                    remote,
                    slot: slot.clone(),
                    _open: open.clone(),
                };
                tokio::spawn(serve_stream(send, recv, node.clone(), peer));
            }
            Ok(Err(e)) => {
                tracing::debug!(%remote, reason = %e, "connection closed");
                return;
            }
            Err(_) if Arc::strong_count(&open) == 1 => {
                tracing::debug!(%remote, %principal, "closing an idle connection");
                conn.close(IDLE_CLOSE_CODE.into(), b"idle");
                return;
            }
            Err(_) => {}
        }
    }
}

/// Who sent a stream's request, from where, and what it may hold.
struct Peer {
    principal: Arc<Principal>,
    remote: std::net::SocketAddr,
    slot: Arc<ConnectionSlot>,
    /// Counts this stream as open on its connection while it is served.
    _open: Arc<()>,
}

async fn serve_stream(mut send: SendStream, mut recv: RecvStream, node: Arc<Shared>, peer: Peer) {
    let _live = crate::metrics::Live::new(crate::metrics::QUIC_STREAMS_OPEN);
    let opened = std::time::Instant::now();
    let deadline = Duration::from_millis(REQUEST_READ_DEADLINE_MS);
    let read = tokio::time::timeout(deadline, read_request(&mut recv, &peer.slot)).await;
    // Held until the request is served: its bytes stay in memory that long.
    let (request, _reservation) = match read {
        Ok(Ok(Some(read))) => {
            // A request is its stream's only frame, but for an append
            // stream's opening: its end usually came with it (see
            // `read_end_if_arrived`).
            if !opens_append_stream(&read.0) {
                sluice_transport::read_end_if_arrived(&mut recv);
            }
            read
        }
        Ok(Ok(None)) => return,
        Err(_) => {
            tracing::debug!(remote = %peer.remote, ?deadline, "request not received in time");
            let _ = recv.stop(0u32.into());
            let error = WireError::MalformedRequest {
                reason: format!(
                    "the request frame did not arrive within {deadline:?} of the stream's opening"
                ),
            };
            let _ = respond(&mut send, &Response::Error(error)).await;
            let _ = send.finish();
            return;
        }
        Ok(Err(error)) => {
            tracing::warn!(error = %error, remote = %peer.remote, "rejected a request");
            let _ = respond(&mut send, &Response::Error(error)).await;
            let _ = send.finish();
            return;
        }
    };
    let verdict = node
        .controller
        .view()
        .with(|md| Access::new(&peer.principal, md, &node.config.super_users).authorize(&request));
    if let Some(event) = authz::audit(
        node.config.id,
        &peer.principal,
        peer.remote,
        &request,
        &verdict,
    ) {
        node.audit.record(event);
    }
    let verdict = verdict.and_then(|()| match node.config.read_only {
        true => read_only_check(&request),
        false => Ok(()),
    });
    if let Err(error) = verdict {
        if respond(&mut send, &Response::Error(error)).await.is_ok() {
            let _ = send.finish();
        }
        return;
    }
    let result = match request {
        Request::Fetch(fetch) => fetch::serve_fetch(&node, fetch, Vec::new(), &mut send).await,
        Request::FetchWith { fetch, options } => {
            fetch::serve_fetch(&node, fetch, options, &mut send).await
        }
        Request::Raft(rpc) if rpc.kind == RaftRpcKind::AppendStream => {
            append_stream::serve(&node, rpc.group, send, recv, &peer.slot).await;
            return;
        }
        Request::Raft(rpc) => {
            let response = peer::serve_raft(&node, rpc).await;
            respond(&mut send, &response).await
        }
        other => {
            let kind = other.name();
            let is_produce = matches!(
                other,
                Request::Produce(_)
                    | Request::ProduceCompressed(_)
                    | Request::ProduceWithHeaders(_)
                    | Request::ProduceAt { .. }
            );
            let shape = authz::RequestShape::of(&other);
            let mut response = propose_anywhere(&node, other)
                .await
                .unwrap_or_else(Response::Error);
            if authz::may_hide_something(&response) {
                node.controller.view().with(|md| {
                    Access::new(&peer.principal, md, &node.config.super_users)
                        .filter(&shape, &mut response)
                });
            }
            if is_produce
                && matches!(response, Response::Produced(_))
                && crate::debug::drop_this_ack()
            {
                // The batch is committed; the client never learns it.
                tracing::warn!("debug: dropped the acknowledgement of a committed produce");
                let _ = send.reset(0u32.into());
                return;
            }
            let answered = respond(&mut send, &response).await;
            crate::metrics::request_served(kind, opened.elapsed());
            answered
        }
    };
    match result {
        Ok(()) => {
            let _ = send.finish();
        }
        Err(e) => tracing::debug!(error = %e, "response not delivered"),
    }
}

fn opens_append_stream(request: &Request) -> bool {
    matches!(request, Request::Raft(rpc) if rpc.kind == RaftRpcKind::AppendStream)
}

/// Reads and decodes a stream's request, first reserving its size in the
/// connection's and the node's budgets (waiting for room if need be).
async fn read_request(
    recv: &mut RecvStream,
    slot: &ConnectionSlot,
) -> Result<Option<(Request, Reservation)>, WireError> {
    let malformed = |e: FrameError| match e {
        FrameError::TooLarge { size, max } => WireError::MalformedRequest {
            reason: format!("frame of {size} bytes exceeds the limit of {max} bytes"),
        },
        other => WireError::MalformedRequest {
            reason: other.to_string(),
        },
    };
    let Some(len) = read_frame_len(recv, FRAME_SIZE_BYTES_MAX)
        .await
        .map_err(malformed)?
    else {
        return Ok(None);
    };
    let reservation = slot.reserve(len).await;
    let stall = Duration::from_millis(REQUEST_BODY_STALL_DEADLINE_MS);
    let frame = read_frame_body(recv, len, Some(stall))
        .await
        .map_err(malformed)?;
    codec::decode::<Request>(&frame)
        .map(|request| Some((request, reservation)))
        .map_err(|e| match e {
            CodecError::VersionMismatch { peer, ours } => WireError::UnsupportedVersion {
                client: peer,
                server: ours,
            },
            other => WireError::MalformedRequest {
                reason: other.to_string(),
            },
        })
}

async fn respond(send: &mut SendStream, response: &Response) -> Result<(), FrameError> {
    respond_sized(send, response, codec::ENCODE_BUFFER_BYTES_DEFAULT).await
}

/// [`respond`] with anything that encodes as a [`Response`] (e.g. a
/// [`RecordsRef`] frame), encoding into a buffer of about its size
/// (`size_hint` bytes).
async fn respond_sized(
    send: &mut SendStream,
    response: &impl serde::Serialize,
    size_hint: usize,
) -> Result<(), FrameError> {
    let bytes = codec::encode_sized(response, size_hint).unwrap_or_else(|e| {
        codec::encode(&Response::Error(WireError::Storage {
            what: "a response".into(),
            reason: e.to_string(),
        }))
        .expect("an error response always encodes")
    });
    debug_assert_eq!(codec::peek_version(&bytes), Ok(PROTOCOL_VERSION));
    write_frame_owned(send, bytes).await
}

/// On a read-only node, a client's change of the cluster's configuration is
/// refused; reads, produce, consumer offsets and node-to-node requests go on.
fn read_only_check(request: &Request) -> Result<(), WireError> {
    use sluice_proto::MetadataChange as C;
    // Every metadata change but the readers' own progress; a change added
    // later is refused until it is listed here.
    let progress = match request {
        Request::Once { change, .. } => {
            matches!(change, C::CommitOffset(_) | C::DeleteConsumer { .. })
        }
        other => matches!(
            other,
            Request::CommitOffset(_) | Request::DeleteConsumer { .. }
        ),
    };
    if request.is_metadata_change() && !progress {
        return Err(WireError::ReadOnly {
            what: request.name().to_string(),
        });
    }
    Ok(())
}

/// Serves a request answered by one response (a fetch and a Raft RPC have
/// a stream of their own: [`serve_stream`]), one arm per kind, by audience.
/// Metadata changes go through `controller`: the node's, or one serving a
/// `Request::Once` (its changes applied at most once per request id).
async fn handle(
    node: &Shared,
    controller: &Controller,
    request: Request,
) -> Result<Response, WireError> {
    match request {
        // Clients: records in.
        Request::Produce(p) => crate::produce::plain(node, p).await,
        Request::ProduceCompressed(p) => {
            crate::produce::expanded(node, p, crate::compressed::expand).await
        }
        Request::ProduceAt {
            batch,
            expected_offset,
        } => crate::produce::at(node, batch, expected_offset).await,
        Request::ProduceWithHeaders(p) => {
            crate::produce::expanded(node, p, crate::compressed::expand_with_headers).await
        }
        // Clients: where consumers stand, and consumer groups.
        Request::CommitOffset(commit) => consumers::commit(node, commit, None).await,
        Request::CommitOffsetAt { commit, generation } => {
            consumers::commit(node, commit, Some(generation)).await
        }
        Request::ListConsumers { consumer, topic } => consumers::list(node, consumer, topic).await,
        Request::DeleteConsumer { consumer, topic } => {
            consumers::delete(node, controller, consumer, topic).await
        }
        Request::GroupHeartbeat(hb) => consumers::heartbeat(node, hb).await,
        Request::LeaveGroup {
            group,
            topic,
            member,
        } => consumers::leave(node, &group, &topic, &member).await,
        // Clients: the cluster's configuration.
        Request::ClusterStatus => Ok(Response::ClusterStatus(node.cluster_status())),
        Request::CreateTopic(spec) => admin::create_topic(node, controller, spec, None, None).await,
        Request::CreateTopicAssigned { spec, assignments } => {
            admin::create_topic(node, controller, spec, Some(assignments), None).await
        }
        Request::CreateTopicWith {
            spec,
            assignments,
            settings,
        } => admin::create_topic(node, controller, spec, assignments, Some(settings.into())).await,
        Request::CreateTopicV2 {
            spec,
            assignments,
            settings,
        } => admin::create_topic(node, controller, spec, assignments, Some(settings)).await,
        Request::DescribeTopicSettings { name } => admin::topic_settings(node, &name, false),
        Request::DescribeTopicSettingsV2 { name } => admin::topic_settings(node, &name, true),
        Request::AddPartitions { topic, count } => {
            admin::add_partitions(node, controller, &topic, count).await
        }
        Request::DeleteTopic { name } => admin::delete_topic(node, controller, &name, false).await,
        Request::DeleteTopicForced { name } => {
            admin::delete_topic(node, controller, &name, true).await
        }
        Request::ListTopics => Ok(admin::list_topics(node, false)),
        Request::ListTopicsV2 { system } => Ok(admin::list_topics(node, system)),
        Request::DescribeTopic { name } => admin::describe_topic(node, &name),
        Request::ListPartitions { topic } => admin::list_partitions(node, topic.as_deref(), false),
        Request::ListPartitionsV2 { topic, system } => {
            admin::list_partitions(node, topic.as_deref(), system)
        }
        Request::CreateSmartModule { name, wasm } => {
            admin::create_smartmodule(node, controller, name, wasm).await
        }
        Request::ListSmartModules => Ok(admin::list_smartmodules(node)),
        Request::DescribeSmartModule { name } => admin::describe_smartmodule(node, &name),
        Request::DeleteSmartModule { name } => admin::delete_smartmodule(controller, &name).await,
        Request::DownloadSmartModule { name } => admin::download_smartmodule(node, &name),
        Request::UnregisterNode { id } => admin::unregister_node(controller, id).await,
        Request::ReassignPartition {
            topic,
            partition,
            replicas,
        } => admin::reassign_partition(node, controller, &topic, partition, replicas).await,
        Request::AddAcl(entry) => admin::add_acl(controller, entry).await,
        Request::RemoveAcl(entry) => admin::remove_acl(controller, entry).await,
        Request::ListAcls => Ok(admin::list_acls(node)),
        Request::CreateConnector(spec) => connectors::create(controller, spec).await,
        Request::DeleteConnector { name } => connectors::delete(controller, &name).await,
        Request::ListConnectors { name } => connectors::list(node, name).await,
        Request::ConnectorLogs { name, max_bytes } => {
            connectors::logs(node, &name, max_bytes).await
        }
        // A metadata change sent with a request id, so that a retry is
        // answered as the first was.
        Request::Once { id, change } => {
            Box::pin(handle(node, &controller.once(id), change.into_request())).await
        }
        // Nodes only.
        Request::JoinCluster {
            id,
            addr,
            incarnation,
        } => peer::join(node, id, addr, incarnation).await,
        Request::NodeIncarnation { id } => Ok(peer::incarnation(node, id)),
        Request::ReadReplicaLog {
            group,
            from_offset,
            max_bytes,
        } => peer::read_replica_log(node, group, from_offset, max_bytes).await,
        Request::FinishReassignment {
            topic,
            partition,
            replicas,
        } => peer::finish_reassignment(node, &topic, partition, replicas).await,
        Request::FenceConsumer {
            consumer,
            topic,
            partition,
            generation,
        } => peer::fence_consumer(node, &consumer, &topic, partition, generation).await,
        Request::LeaderConsumers { consumer, topic } => {
            Ok(peer::leader_consumers(node, consumer, topic).await)
        }
        Request::ForgetConsumer { consumer, topic } => {
            peer::forget_consumer(node, &consumer, topic).await
        }
        Request::ConnectorsHere { names } => Ok(connectors::here(node, names).await),
        Request::ConnectorLogsHere { name, max_bytes } => {
            match connectors::logs_here(node, &name, max_bytes as usize).await {
                Response::Error(e) => Err(e),
                answer => Ok(answer),
            }
        }
        Request::Fetch(_) | Request::FetchWith { .. } | Request::Raft(_) => {
            Err(WireError::MalformedRequest {
                reason: "fetch and Raft requests open a stream of their own; they cannot be nested"
                    .into(),
            })
        }
    }
}

/// Handles a request here; a metadata change that reached a node other than
/// the controller leader is passed on to the leader, so clients (and nodes)
/// may send it to any node.
pub(crate) async fn propose_anywhere(
    node: &Shared,
    request: Request,
) -> Result<Response, WireError> {
    // Every metadata change is (a `Once` carries one), and so are the
    // node-to-controller requests.
    let forwardable = matches!(
        request,
        Request::Once { .. }
            | Request::CreateTopic(_)
            | Request::DeleteTopic { .. }
            | Request::CreateSmartModule { .. }
            | Request::DeleteSmartModule { .. }
            | Request::JoinCluster { .. }
            | Request::UnregisterNode { .. }
            | Request::ReassignPartition { .. }
            | Request::FinishReassignment { .. }
            | Request::AddAcl(_)
            | Request::RemoveAcl(_)
            | Request::DeleteConsumer { .. }
            | Request::GroupHeartbeat(_)
            | Request::LeaveGroup { .. }
            | Request::AddPartitions { .. }
            | Request::CreateTopicAssigned { .. }
            | Request::CreateTopicWith { .. }
            | Request::CreateTopicV2 { .. }
            | Request::DeleteTopicForced { .. }
            | Request::CreateConnector(_)
            | Request::DeleteConnector { .. }
    );
    let copy = forwardable.then(|| request.clone());
    match (handle(node, &node.controller, request).await, copy) {
        (
            Err(WireError::NotLeader {
                leader: Some(leader),
                ..
            }),
            Some(request),
        ) => match forward_to_controller_leader(node, leader, &request).await {
            Response::Error(e) => Err(e),
            other => Ok(other),
        },
        (result, _) => result,
    }
}

async fn forward_to_controller_leader(node: &Shared, leader: u64, request: &Request) -> Response {
    // If the controller's group sleeps here, its leader may have died since
    // it was last heard from: ask its node now rather than at the next
    // probe round, so a dead one is replaced while this request waits.
    node.controller.recheck_sleeping_leader();
    let Some(addr) = node
        .controller
        .view()
        .with(|md| md.nodes.get(&leader).map(|n| n.addr.clone()))
    else {
        return Response::Error(WireError::Unavailable {
            what: "the controller".into(),
            reason: format!("its leader, node {leader}, has no known address yet"),
        });
    };
    // The leader answers within its commit deadline, so a longer silence
    // means it is gone or stalled: say so instead of holding the client.
    let wait = sluice_controller::COMMIT_WAIT_MAX + FORWARD_SLACK;
    match node.peers.request(&addr, request, wait).await {
        Ok(response) => response,
        Err(reason) => Response::Error(WireError::Unavailable {
            what: "the controller".into(),
            reason: format!("cannot reach its leader, node {leader} at {addr}: {reason}"),
        }),
    }
}
