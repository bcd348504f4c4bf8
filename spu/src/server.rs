//! The QUIC server: one request per bidirectional stream, decoded with the
//! proto codec and dispatched to the node's handlers.
//!
//! A malformed, oversized or wrong-version frame fails its own stream with an
//! error response; the connection and the node carry on.

use std::sync::Arc;
use std::time::Duration;

use quinn::{RecvStream, SendStream};
use sluice_proto::limits::{
    CONNECTION_IDLE_DEADLINE_MS, FETCH_RESPONSE_BYTES_MAX, FRAME_SIZE_BYTES_MAX,
    LOOKBACK_RECORDS_MAX, PRODUCE_BATCH_RECORDS_MAX, PRODUCE_BATCH_SIZE_BYTES_MAX,
    RECORD_OVERHEAD_BYTES_MAX, RECORD_SIZE_BYTES_MAX, RECORD_TIMESTAMP_AHEAD_MS_MAX,
    REQUEST_BODY_STALL_DEADLINE_MS, REQUEST_READ_DEADLINE_MS,
};
use sluice_proto::{
    CodecError, Compression, ConsumerRecord, ConsumerRecordRef, FetchOption, FetchRequest,
    PROTOCOL_VERSION, PartitionStatus, ProduceRequest, ProduceResponse, RaftRpc, RaftRpcKind,
    ReadFrom, RecordsRef, ReplicaStatus, Request, Response, StartOffset, WireError, codec,
};
use sluice_storage::StoredBatch;
use sluice_transport::{FrameError, read_frame_body, read_frame_len, write_frame};

use crate::admission::{Admission, ConnectionSlot, Reservation};
use crate::authz::{self, Access, Principal};
use crate::node::Shared;
use crate::partition::{AppendOutcome, PartitionCommand, decode, encode};
use crate::timeouts::{
    FORWARD_SLACK, RECONCILE_WAIT, SEED_TOPICS_RETRY_INTERVAL, SEED_TOPICS_WAIT,
};
use crate::transforms::Transforms;

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
    let deadline = Duration::from_millis(REQUEST_READ_DEADLINE_MS);
    let read = tokio::time::timeout(deadline, read_request(&mut recv, &peer.slot)).await;
    // Held until the request is served: its bytes stay in memory that long.
    let (request, _reservation) = match read {
        Ok(Ok(Some(read))) => read,
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
    authz::audit(&peer.principal, peer.remote, &request, &verdict);
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
        Request::Fetch(fetch) => serve_fetch(&node, fetch, Vec::new(), &mut send).await,
        Request::FetchWith { fetch, options } => {
            serve_fetch(&node, fetch, options, &mut send).await
        }
        Request::Raft(rpc) => {
            let response = serve_raft(&node, rpc).await;
            respond(&mut send, &response).await
        }
        other => {
            let is_produce = matches!(
                other,
                Request::Produce(_)
                    | Request::ProduceCompressed(_)
                    | Request::ProduceWithHeaders(_)
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
            respond(&mut send, &response).await
        }
    };
    match result {
        Ok(()) => {
            let _ = send.finish();
        }
        Err(e) => tracing::debug!(error = %e, "response not delivered"),
    }
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
    respond_with(send, response).await
}

/// [`respond`] with anything that encodes as a [`Response`] (e.g. [`RecordsRef`]).
async fn respond_with(
    send: &mut SendStream,
    response: &impl serde::Serialize,
) -> Result<(), FrameError> {
    let bytes = codec::encode(response).unwrap_or_else(|e| {
        codec::encode(&Response::Error(WireError::Storage {
            what: "a response".into(),
            reason: e.to_string(),
        }))
        .expect("an error response always encodes")
    });
    debug_assert_eq!(codec::peek_version(&bytes), Ok(PROTOCOL_VERSION));
    write_frame(send, &bytes).await
}

/// `info`, a topic just created, once its partitions are writable, so a
/// produce right after `topic create` succeeds.
async fn writable(node: &Shared, info: sluice_proto::TopicInfo) -> sluice_proto::TopicInfo {
    wait_reconciled(node).await;
    for a in &info.assignments {
        if let Ok(p) = node
            .replicas
            .get(&node.metadata(), &info.spec.name, a.partition)
        {
            p.group.wait_for_leader(RECONCILE_WAIT).await;
        }
    }
    info
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

/// Creates the topics of `node.config.seed_topics` that the metadata lacks,
/// once this node leads the controller (every node of a read-only cluster
/// runs this; the leader's creates are the ones that land, the others
/// find them there). Gives up after [`SEED_TOPICS_WAIT`].
pub(crate) async fn seed_topics(node: std::sync::Arc<Shared>) {
    let deadline = tokio::time::Instant::now() + SEED_TOPICS_WAIT;
    while tokio::time::Instant::now() < deadline {
        // Read under the view's lock: no copy of the whole metadata.
        let missing: Vec<sluice_proto::TopicSpec> = node.controller.view().with(|md| {
            node.config
                .seed_topics
                .iter()
                .filter(|s| md.topic(&s.name).is_err())
                .cloned()
                .collect()
        });
        if missing.is_empty() {
            return;
        }
        if node.controller.is_leader() {
            for spec in missing {
                let name = spec.name.clone();
                match node.controller.create_topic(spec).await {
                    Ok(_) => tracing::info!(topic = %name, "created a topic of the read-only file"),
                    Err(WireError::TopicExists { .. }) => {}
                    Err(e) => {
                        tracing::warn!(topic = %name, error = %e, "cannot create a topic of the read-only file yet")
                    }
                }
            }
        }
        tokio::time::sleep(SEED_TOPICS_RETRY_INTERVAL).await;
    }
    tracing::error!(
        "the topics of the read-only file are still not all created after {SEED_TOPICS_WAIT:?}; \
         check that a majority of the controller's voters runs"
    );
}

async fn handle(node: &Shared, request: Request) -> Result<Response, WireError> {
    match request {
        Request::ClusterStatus => Ok(Response::ClusterStatus(node.cluster_status())),
        Request::CreateTopic(spec) => {
            let info = node.controller.create_topic(spec).await?;
            Ok(Response::TopicCreated(writable(node, info).await))
        }
        Request::CreateTopicAssigned { spec, assignments } => {
            let info = node
                .controller
                .create_topic_assigned(spec, assignments)
                .await?;
            Ok(Response::TopicCreated(writable(node, info).await))
        }
        Request::CreateTopicWith {
            spec,
            assignments,
            settings,
        } => {
            let info = node
                .controller
                .create_topic_with(spec, assignments, settings)
                .await?;
            Ok(Response::TopicCreated(writable(node, info).await))
        }
        Request::DescribeTopicSettings { name } => node.controller.view().with(|md| {
            md.topic(&name)?;
            Ok(Response::TopicSettings(md.topic_settings_of(&name)))
        }),
        Request::ProduceCompressed(produce) => {
            let codec = produce.compression;
            let produce = crate::compressed::expand(produce)?;
            produce_batch(node, produce, codec)
                .await
                .map(Response::Produced)
        }
        Request::ProduceWithHeaders(produce) => {
            let codec = produce.compression;
            let produce = crate::compressed::expand_with_headers(produce)?;
            produce_batch(node, produce, codec)
                .await
                .map(Response::Produced)
        }
        Request::AddPartitions { topic, count } => {
            let info = node.controller.add_partitions(&topic, count).await?;
            wait_reconciled(node).await;
            // The new partitions are writable before the answer.
            for a in info
                .assignments
                .iter()
                .skip((info.spec.partitions - count) as usize)
            {
                if let Ok(p) = node.replicas.get(&node.metadata(), &topic, a.partition) {
                    p.group.wait_for_leader(RECONCILE_WAIT).await;
                }
            }
            Ok(Response::Topic(info))
        }
        Request::DeleteTopic { name } => {
            node.controller.delete_topic(&name).await?;
            wait_reconciled(node).await;
            Ok(Response::TopicDeleted)
        }
        Request::ListTopics => Ok(Response::Topics(
            node.metadata()
                .topics
                .values()
                .map(|t| t.info.clone())
                .collect(),
        )),
        Request::DescribeTopic { name } => {
            Ok(Response::Topic(node.metadata().topic(&name)?.info.clone()))
        }
        Request::ListPartitions { topic } => list_partitions(node, topic.as_deref()),
        Request::CreateSmartModule { name, wasm } => {
            let info = crate::transforms::register(node, name, wasm).await?;
            Ok(Response::SmartModuleCreated(info))
        }
        Request::ListSmartModules => Ok(Response::SmartModules(
            node.metadata()
                .smartmodules
                .values()
                .map(|m| m.info.clone())
                .collect(),
        )),
        Request::DescribeSmartModule { name } => Ok(Response::SmartModule(
            node.metadata().smartmodule(&name)?.info.clone(),
        )),
        Request::DeleteSmartModule { name } => {
            node.controller.delete_smartmodule(&name).await?;
            Ok(Response::SmartModuleDeleted)
        }
        Request::DownloadSmartModule { name } => {
            let md = node.metadata();
            let record = md.smartmodule(&name)?;
            Ok(Response::SmartModuleWasm {
                info: record.info.clone(),
                wasm: record.wasm.clone(),
            })
        }
        Request::Produce(produce) => produce_batch(node, produce, Compression::None)
            .await
            .map(Response::Produced),
        Request::JoinCluster {
            id,
            addr,
            incarnation,
        } => {
            node.controller.join(id, addr, incarnation).await?;
            Ok(Response::Joined)
        }
        Request::NodeIncarnation { id } => Ok(Response::NodeIncarnation(
            node.controller.view().with(|md| md.incarnation_of(id)),
        )),
        Request::UnregisterNode { id } => {
            node.controller.unregister_node(id).await?;
            Ok(Response::NodeUnregistered)
        }
        Request::ReassignPartition {
            topic,
            partition,
            replicas,
        } => {
            let assignment = node
                .controller
                .reassign_partition(&topic, partition, replicas)
                .await?;
            wait_reconciled(node).await;
            Ok(Response::PartitionReassigned(assignment))
        }
        Request::Once { id, change } => {
            let inner = Box::pin(handle(node, change.into_request()));
            sluice_controller::Controller::with_request_id(id, inner).await
        }
        Request::ReadReplicaLog {
            group,
            from_offset,
            max_bytes,
        } => {
            let p = node
                .replicas
                .by_group(group)
                .ok_or_else(|| WireError::Unavailable {
                    what: format!("Raft group {group}"),
                    reason: format!("node {} does not run a replica of it", node.config.id),
                })?;
            if let Some(reason) = p.group.status().stopped {
                // A replica whose group stopped may hold segments that differ
                // from the partition's log: nobody copies from it.
                return Err(WireError::Unavailable {
                    what: format!("partition {}/{}", p.topic, p.index),
                    reason: format!("its replica on node {} stopped: {reason}", node.config.id),
                });
            }
            let max = (max_bytes as usize).min(crate::log_copy::COPY_CHUNK_BYTES as usize);
            let log = p.log.clone();
            let copy = tokio::task::spawn_blocking(move || {
                crate::log_copy::read_for_copy(&crate::partition::read_lock(&log), from_offset, max)
            })
            .await
            .map_err(|e| WireError::Storage {
                what: format!("partition {}/{}", p.topic, p.index),
                reason: e.to_string(),
            })?
            .map_err(|e| WireError::Storage {
                what: format!("partition {}/{}", p.topic, p.index),
                reason: e.to_string(),
            })?;
            Ok(Response::ReplicaLog {
                start_offset: copy.start_offset,
                batches: copy
                    .batches
                    .into_iter()
                    .map(serde_bytes::ByteBuf::from)
                    .collect(),
            })
        }
        Request::FinishReassignment {
            topic,
            partition,
            replicas,
        } => {
            node.controller
                .finish_reassignment(&topic, partition, replicas)
                .await?;
            Ok(Response::ReassignmentFinished)
        }
        Request::AddAcl(entry) => {
            node.controller.add_acl(entry).await?;
            Ok(Response::AclAdded)
        }
        Request::RemoveAcl(entry) => {
            node.controller.remove_acl(entry).await?;
            Ok(Response::AclRemoved)
        }
        Request::ListAcls => Ok(Response::Acls(
            node.controller
                .view()
                .with(|md| md.acls.iter().cloned().collect()),
        )),
        Request::CommitOffset(commit) => {
            crate::consumers::commit_offset(node, commit, None).await?;
            Ok(Response::OffsetCommitted)
        }
        Request::CommitOffsetAt { commit, generation } => {
            crate::consumers::commit_offset(node, commit, Some(generation)).await?;
            Ok(Response::OffsetCommitted)
        }
        Request::ListConsumers { consumer, topic } => Ok(Response::Consumers(
            crate::consumers::list(node, consumer.as_deref(), topic.as_deref()).await?,
        )),
        Request::DeleteConsumer { consumer, topic } => {
            node.groups.drop_dead_owners(node, &consumer).await?;
            // The controller first: it refuses while the group has members
            // (this node not leading it, the request goes to its leader,
            // which then does the rest), and drops the group's record and
            // any offsets an earlier release kept there.
            let in_controller = match node
                .controller
                .delete_consumer(&consumer, topic.as_deref())
                .await
            {
                Ok(()) => true,
                Err(WireError::UnknownConsumer { .. }) => false,
                Err(e) => return Err(e),
            };
            let forgotten = crate::consumers::forget(node, &consumer, topic.as_deref()).await?;
            if forgotten == 0 && !in_controller {
                return Err(WireError::UnknownConsumer { consumer, topic });
            }
            Ok(Response::ConsumerDeleted)
        }
        Request::FenceConsumer {
            consumer,
            topic,
            partition,
            generation,
        } => {
            let (offset, state) =
                crate::consumers::fence_here(node, &consumer, &topic, partition, generation)
                    .await?;
            Ok(Response::ConsumerFenced {
                offset,
                state: state.map(serde_bytes::ByteBuf::from),
            })
        }
        Request::LeaderConsumers { consumer, topic } => Ok(Response::LeaderConsumers(
            crate::consumers::leader_consumers(node, consumer.as_deref(), topic.as_deref()).await,
        )),
        Request::ForgetConsumer { consumer, topic } => {
            let (partitions, forgotten) =
                crate::consumers::forget_here(node, &consumer, topic.as_deref()).await?;
            Ok(Response::ConsumerForgotten {
                partitions,
                forgotten,
            })
        }
        Request::GroupHeartbeat(hb) => Ok(Response::GroupAssignment(
            node.groups.heartbeat(node, hb).await?,
        )),
        Request::LeaveGroup {
            group,
            topic,
            member,
        } => {
            node.groups.leave(node, &group, &topic, &member).await?;
            Ok(Response::GroupLeft)
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
    );
    let copy = forwardable.then(|| request.clone());
    match (handle(node, request).await, copy) {
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
    match tokio::time::timeout(wait, node.peers.request(&addr, request)).await {
        Ok(Ok(response)) => response,
        Ok(Err(reason)) => Response::Error(WireError::Unavailable {
            what: "the controller".into(),
            reason: format!("cannot reach its leader, node {leader} at {addr}: {reason}"),
        }),
        Err(_) => Response::Error(WireError::Unavailable {
            what: "the controller".into(),
            reason: format!("its leader, node {leader} at {addr}, did not answer within {wait:?}"),
        }),
    }
}

/// Hands a Raft RPC to the group it is for.
async fn serve_raft(node: &Shared, rpc: RaftRpc) -> Response {
    let payload = if rpc.kind == RaftRpcKind::LeaderProbe {
        match node.replicas.quiescence() {
            Some(q) => q.answer_probe(&rpc.payload),
            None => {
                return Response::Error(WireError::Unavailable {
                    what: "leader probes".into(),
                    reason: format!(
                        "node {} keeps every group awake (quiesce_idle_groups = false)",
                        node.config.id
                    ),
                });
            }
        }
    } else if rpc.group == sluice_raft::CONTROLLER_GROUP {
        node.controller.handle_rpc(rpc.kind, &rpc.payload).await
    } else if let Some(p) = node.replicas.by_group(rpc.group) {
        p.group.handle_rpc(rpc.kind, &rpc.payload).await
    } else {
        return Response::Error(WireError::Unavailable {
            what: format!("Raft group {}", rpc.group),
            reason: format!("node {} does not run a replica of it (yet)", node.config.id),
        });
    };
    Response::Raft { payload }
}

async fn wait_reconciled(node: &Shared) {
    let version = *node.controller.view().subscribe().borrow();
    if !node.replicas.wait_reconciled(version, RECONCILE_WAIT).await {
        tracing::warn!(version, "replicas did not follow the metadata in time");
    }
}

fn list_partitions(node: &Shared, topic: Option<&str>) -> Result<Response, WireError> {
    let md = node.metadata();
    if let Some(t) = topic {
        md.topic(t)?;
    }
    let mut out = Vec::new();
    for record in md
        .topics
        .values()
        .filter(|r| topic.is_none_or(|t| r.info.spec.name == t))
    {
        for a in &record.info.assignments {
            let name = &record.info.spec.name;
            let local = node.replicas.get(&md, name, a.partition).ok();
            let (leader, start, end, size) = match &local {
                Some(p) => {
                    let (start, end, size) = p.offsets();
                    (p.group.status().leader, start, end, size)
                }
                None => (None, 0, 0, 0),
            };
            let lags = local
                .and_then(|p| p.group.replication_lag())
                .unwrap_or_default();
            out.push(PartitionStatus {
                topic: name.clone(),
                partition: a.partition,
                leader,
                replicas: a
                    .replicas
                    .iter()
                    .map(|&n| ReplicaStatus {
                        node: n,
                        lag_entries: lags.get(&n).copied().flatten(),
                    })
                    .collect(),
                start_offset: start,
                committed_offset: end,
                end_offset: end,
                size_bytes: size,
                leaving: record.moving.get(&a.partition).cloned().unwrap_or_default(),
            });
        }
    }
    Ok(Response::Partitions(out))
}

/// The state machine judged a batch by its producer sequence, but the
/// batch carried none: a bug, reported rather than panicked on.
fn outcome_without_producer(what: String, verdict: &str) -> WireError {
    WireError::Storage {
        what,
        reason: format!(
            "the partition called a batch without a producer id {verdict}; this is a bug, please report it"
        ),
    }
}

/// Writes one batch sent with `codec` (already expanded if compressed).
async fn produce_batch(
    node: &Shared,
    req: ProduceRequest,
    codec: Compression,
) -> Result<ProduceResponse, WireError> {
    let invalid = |reason: String| WireError::InvalidArgument {
        what: "produce batch".into(),
        reason,
    };
    let setting = node
        .controller
        .view()
        .with(|md| md.topic_settings_of(&req.topic).compression);
    crate::compressed::check_topic_takes(&req.topic, setting, codec)?;
    if req.records.is_empty() {
        return Err(invalid("it holds no record".into()));
    }
    if req.records.len() > PRODUCE_BATCH_RECORDS_MAX {
        return Err(invalid(format!(
            "{} records exceed the limit of {PRODUCE_BATCH_RECORDS_MAX}",
            req.records.len()
        )));
    }
    let mut total = 0;
    let latest_ms = sluice_proto::now_ms().saturating_add(RECORD_TIMESTAMP_AHEAD_MS_MAX);
    for (index, r) in req.records.iter().enumerate() {
        if r.timestamp_ms > latest_ms {
            return Err(invalid(format!(
                "record {index} is stamped {} ms, more than {RECORD_TIMESTAMP_AHEAD_MS_MAX} ms ahead of node {}'s clock ({} ms); fix the producer's clock or timestamps (such a record would keep its segment from expiring)",
                r.timestamp_ms,
                node.config.id,
                latest_ms - RECORD_TIMESTAMP_AHEAD_MS_MAX
            )));
        }
        sluice_proto::headers::check_owned(&r.headers).map_err(|e| {
            invalid(format!(
                "record {index}: {e}; send headers with names of 1 to {} bytes, at most {} per record",
                sluice_proto::limits::RECORD_HEADER_KEY_BYTES_MAX,
                sluice_proto::limits::RECORD_HEADERS_MAX
            ))
        })?;
        let size_bytes = r.size_bytes();
        if size_bytes > RECORD_SIZE_BYTES_MAX {
            return Err(WireError::RecordTooLarge {
                index,
                size_bytes,
                max_bytes: RECORD_SIZE_BYTES_MAX,
            });
        }
        total += size_bytes;
    }
    if total > PRODUCE_BATCH_SIZE_BYTES_MAX {
        return Err(invalid(format!(
            "{total} bytes exceed the limit of {PRODUCE_BATCH_SIZE_BYTES_MAX}"
        )));
    }
    let partition = node
        .replicas
        .get(&node.metadata(), &req.topic, req.partition)?;
    let record_count = req.records.len() as u32;
    let command = encode(&PartitionCommand::append(req.records, req.producer));
    let what = || format!("partition {}/{}", req.topic, req.partition);
    // In sequence order per producer, as far as the leader can tell.
    let response = partition
        .proposal_order
        .write(&partition.group, command, req.producer)
        .await
        .map_err(|e| e.into_wire(what()))?;
    let outcome = decode::<AppendOutcome>(&response);
    // A resend's records were counted when first appended.
    if let Ok(AppendOutcome::Appended { .. }) = outcome {
        let (records, bytes) = (u64::from(record_count), total as u64);
        crate::metrics::produced(&req.topic, req.partition, records, bytes);
    }
    match outcome {
        Ok(AppendOutcome::Appended { base_offset } | AppendOutcome::Retry { base_offset }) => {
            Ok(ProduceResponse {
                partition: req.partition,
                base_offset,
                record_count,
            })
        }
        Ok(AppendOutcome::Failed { reason }) => Err(WireError::Storage {
            what: what(),
            reason,
        }),
        Ok(AppendOutcome::Stale { last_sequence }) => {
            let Some(p) = req.producer else {
                return Err(outcome_without_producer(what(), "stale"));
            };
            Err(WireError::StaleBatch {
                producer_id: p.producer_id,
                sequence: p.sequence,
                last_sequence,
            })
        }
        Ok(AppendOutcome::OutOfOrder { last_sequence }) => {
            let Some(p) = req.producer else {
                return Err(outcome_without_producer(what(), "out of order"));
            };
            tracing::debug!(
                topic = %req.topic, partition = req.partition, producer = format_args!("{:x}", p.producer_id),
                sequence = p.sequence, ?last_sequence, "rejected a batch that overtook its predecessor"
            );
            Err(WireError::OutOfOrderSequence {
                producer_id: p.producer_id,
                sequence: p.sequence,
                last_sequence,
            })
        }
        Ok(AppendOutcome::SequenceReused { base_offset }) => {
            let Some(p) = req.producer else {
                return Err(WireError::Storage {
                    what: what(),
                    reason: "a batch without a producer id was answered as a reused sequence"
                        .into(),
                });
            };
            tracing::warn!(
                topic = %req.topic, partition = req.partition, producer = format_args!("{:x}", p.producer_id),
                sequence = p.sequence, offset = base_offset,
                "refused a batch whose producer id and sequence were already written with other records"
            );
            Err(WireError::SequenceReused {
                topic: req.topic.clone(),
                partition: req.partition,
                producer_id: p.producer_id,
                sequence: p.sequence,
                offset: base_offset,
            })
        }
        Ok(AppendOutcome::Replayed) => Err(WireError::Storage {
            what: what(),
            reason: "a fresh proposal was answered as a replay".into(),
        }),
        Ok(
            other @ (AppendOutcome::OffsetCommitted
            | AppendOutcome::Refused { .. }
            | AppendOutcome::Fenced { .. }
            | AppendOutcome::Forgotten { .. }),
        ) => Err(WireError::Storage {
            what: what(),
            reason: format!("a batch was answered as a consumer command ({other:?})"),
        }),
        Err(reason) => Err(WireError::Storage {
            what: what(),
            reason,
        }),
    }
}

/// Streams records: `FetchStarted`, then `Records` frames as data is (or
/// becomes) committed, then `FetchEnd` unless following. A following fetch
/// sleeps on the partition's end-offset watch: a commit wakes it at once.
/// Shows the chain's `look_back` functions the partition's last records
/// (`lookback`, counted back from `end`, never before `start`), chunk by
/// chunk off the async workers, before the stream's first record. Refused
/// when no module of the chain has such a function: the option would do
/// nothing, and saying so beats silence.
async fn look_back(
    partition: &crate::partition::Partition,
    transforms: Option<Transforms>,
    lookback: sluice_proto::Lookback,
    start: u64,
    end: u64,
) -> Result<Option<Transforms>, WireError> {
    let refuse = |reason: &str| WireError::InvalidArgument {
        what: "--lookback".into(),
        reason: reason.into(),
    };
    let Some(mut t) = transforms else {
        return Err(refuse(
            "looking back needs a SmartModule with a look_back function; give one with \
             --smartmodule or --filter (and the others)",
        ));
    };
    if !t.has_look_back() {
        return Err(refuse(
            "none of the SmartModules of this stream has a look_back function \
             (#[smartmodule(look_back)]); remove --lookback-last/--lookback-age or use a module \
             that has one",
        ));
    }
    let last = match (lookback.last, lookback.age_ms) {
        (0, Some(_)) => LOOKBACK_RECORDS_MAX,
        (n, _) => n.min(LOOKBACK_RECORDS_MAX),
    };
    let min_timestamp_ms = lookback
        .age_ms
        .map(|age| sluice_proto::now_ms().saturating_sub(i64::try_from(age).unwrap_or(i64::MAX)));
    let mut at = end.saturating_sub(last).max(start);
    while at < end {
        let batches = partition.read_batches(at, FETCH_RESPONSE_BYTES_MAX)?;
        let Some(chunk_end) = batches.last().map(StoredBatch::end_offset) else {
            break;
        };
        let (from, until) = (at, chunk_end.min(end));
        let (back, result) = tokio::task::spawn_blocking(move || {
            let result = t.look_back(&batches, from, until, min_timestamp_ms);
            (t, result)
        })
        .await
        .map_err(|join| WireError::SmartModule {
            module: "chain".into(),
            offset: None,
            reason: format!("the SmartModule thread failed: {join}"),
        })?;
        t = back;
        result.map_err(|e| partition.read_error(e))??;
        at = until;
    }
    Ok(Some(t))
}

async fn serve_fetch(
    node: &Shared,
    req: FetchRequest,
    options: Vec<FetchOption>,
    send: &mut SendStream,
) -> Result<(), FrameError> {
    let mut lookback = None;
    for option in options {
        match option {
            FetchOption::Lookback(l) => lookback = Some(l),
        }
    }
    let md = node.metadata();
    if req.replica == Some(node.config.id)
        && let Ok(record) = md.topic(&req.topic)
        && let Some(a) = record.info.assignments.get(req.partition as usize)
        && !a.replicas.contains(&node.config.id)
        && !record
            .moving
            .get(&req.partition)
            .is_some_and(|l| l.contains(&node.config.id))
    {
        // Asked for this node's copy, which does not exist: no retry helps.
        let e = WireError::InvalidArgument {
            what: "--replica".into(),
            reason: format!(
                "node {} holds no replica of {}/{}; its replicas are on nodes {:?}",
                node.config.id, req.topic, req.partition, a.replicas
            ),
        };
        return respond(send, &Response::Error(e)).await;
    }
    let partition = match node.replicas.get(&md, &req.topic, req.partition) {
        Ok(p) => p,
        Err(e) => return respond(send, &Response::Error(e)).await,
    };
    let status = partition.group.status();
    let what = || format!("partition {}/{}", req.topic, req.partition);
    if let Some(reason) = status.stopped {
        // A stopped replica's log is frozen: serving it would look like a
        // healthy, caught-up replica to the consumer.
        let e = WireError::Unavailable {
            what: what(),
            reason: format!("its replica on node {} stopped: {reason}", node.config.id),
        };
        return respond(send, &Response::Error(e)).await;
    }
    match req.read_from {
        ReadFrom::Leader if !status.is_leader => {
            let e = WireError::NotLeader {
                node: node.config.id,
                what: what(),
                leader: status.leader,
            };
            return respond(send, &Response::Error(e)).await;
        }
        ReadFrom::Follower if status.is_leader => {
            let e = WireError::Unavailable {
                what: what(),
                reason: format!(
                    "node {} leads it and a follower was asked for",
                    node.config.id
                ),
            };
            return respond(send, &Response::Error(e)).await;
        }
        _ => {}
    }
    if !partition.is_ready() {
        let e = WireError::Unavailable {
            what: format!("partition {}/{}", req.topic, req.partition),
            reason: "its replica is re-applying its log after a restart".into(),
        };
        return respond(send, &Response::Error(e)).await;
    }
    let (start, end, _) = partition.offsets();
    let first = match req.start {
        StartOffset::Beginning => start,
        StartOffset::End => end,
        StartOffset::FromEnd(n) => end.saturating_sub(n).max(start),
        StartOffset::Absolute(o) if o < start || o > end => {
            let e = WireError::OffsetOutOfRange {
                topic: req.topic,
                partition: req.partition,
                requested: o,
                start,
                end,
            };
            return respond(send, &Response::Error(e)).await;
        }
        StartOffset::Absolute(o) => o,
    };
    // Modules are loaded and initialised before the stream starts, so a bad
    // module or bad parameters reach the consumer before any record.
    let mut transforms = None;
    if !req.smartmodules.is_empty() {
        // Registered modules come from this node's own copy of the store.
        let invocations =
            match crate::transforms::resolve(&node.metadata(), req.smartmodules.clone()) {
                Ok(i) => i,
                Err(e) => return respond(send, &Response::Error(e)).await,
            };
        let engine = match node.engine() {
            Ok(engine) => engine,
            Err(e) => return respond(send, &Response::Error(e)).await,
        };
        match tokio::task::spawn_blocking(move || Transforms::build(&engine, invocations)).await {
            Ok(Ok(t)) => transforms = Some(t),
            Ok(Err(e)) => return respond(send, &Response::Error(e)).await,
            Err(join) => {
                let e = WireError::SmartModule {
                    module: "chain".into(),
                    offset: None,
                    reason: format!("loading the SmartModules failed: {join}"),
                };
                return respond(send, &Response::Error(e)).await;
            }
        }
    }
    if let Some(lookback) = lookback {
        match look_back(&partition, transforms.take(), lookback, start, end).await {
            Ok(t) => transforms = t,
            Err(e) => return respond(send, &Response::Error(e)).await,
        }
    }
    respond(
        send,
        &Response::FetchStarted {
            partition: req.partition,
            start_offset: first,
            end_offset: end,
        },
    )
    .await?;
    let max_bytes = (req.max_bytes as usize).clamp(1, FETCH_RESPONSE_BYTES_MAX);
    let mut next = first;
    let mut remaining = req.max_records;
    let mut end_rx = partition.end_rx.clone();
    // A chunk read (from this offset) while the modules ran over the one before.
    let mut read_ahead = None;
    loop {
        // A long fetch never holds its worker thread: it yields whenever
        // tokio's cooperative budget is spent, even if every write went
        // straight into QUIC's buffer (a fetch that spun here once took
        // its worker, and two took the node).
        tokio::task::consume_budget().await;
        let done = remaining == Some(0) || req.end_offset.is_some_and(|last| next > last);
        if done {
            return respond(send, &Response::FetchEnd { next_offset: next }).await;
        }
        let high_watermark = *end_rx.borrow_and_update();
        if next < high_watermark && transforms.is_none() {
            // Plain records go out as they lie in the stored batches: no
            // copy of each into a record of its own before encoding.
            let batches = match partition.read_batches(next, max_bytes) {
                Ok(b) => b,
                Err(e) => return respond(send, &Response::Error(e)).await,
            };
            let Some(end) = batches.last().map(StoredBatch::end_offset) else {
                return respond(send, &Response::FetchEnd { next_offset: next }).await;
            };
            let mut until = req
                .end_offset
                .map_or(end, |last| end.min(last.saturating_add(1)));
            if let Some(n) = remaining {
                // Offsets are contiguous: the next `n` records end here.
                until = until.min(next.saturating_add(n));
            }
            let mut records = Vec::new();
            let walked = StoredBatch::for_each_in(&batches, next, until, |r| {
                records.push(ConsumerRecordRef {
                    partition: req.partition,
                    offset: r.offset,
                    key: r.key,
                    value: r.value,
                    timestamp_ms: r.timestamp_ms,
                    headers: r.headers,
                })
            });
            if let Err(e) = walked {
                let e = partition.read_error(e);
                return respond(send, &Response::Error(e)).await;
            }
            if let Some(n) = remaining.as_mut() {
                *n -= records.len() as u64;
            }
            crate::metrics::consumed(&req.topic, req.partition, &records);
            next = until;
            for chunk in frame_slices(&records) {
                let frame = RecordsRef {
                    records: chunk,
                    high_watermark,
                };
                respond_with(send, &frame).await?;
            }
            continue;
        }
        if next < high_watermark
            && let Some(mut t) = transforms.take()
        {
            // Whole stored batches: the first module reads the records where
            // they lie, none is copied out for it.
            let read = match read_ahead.take() {
                Some((from, read)) if from == next => read,
                _ => partition.read_batches(next, max_bytes),
            };
            let batches = match read {
                Ok(b) => b,
                Err(e) => return respond(send, &Response::Error(e)).await,
            };
            let Some(end) = batches.last().map(StoredBatch::end_offset) else {
                return respond(send, &Response::FetchEnd { next_offset: next }).await;
            };
            let from = next;
            // Resume after the last record read, whatever the modules keep.
            next = req
                .end_offset
                .map_or(end, |last| end.min(last.saturating_add(1)));
            let until = next;
            let partition_id = req.partition;
            let running = tokio::task::spawn_blocking(move || {
                let applied = t.apply(partition_id, &batches, from, until);
                (t, applied)
            });
            // Read the next chunk meanwhile, on this task: reading and
            // running the modules then use both cores.
            if next < high_watermark && req.end_offset.is_none_or(|last| next <= last) {
                read_ahead = Some((next, partition.read_batches(next, max_bytes)));
            }
            let (mut records, failure) = match running.await {
                Ok((t, Ok(applied))) => {
                    transforms = Some(t);
                    applied
                }
                Ok((_, Err(e))) => {
                    return respond(send, &Response::Error(partition.read_error(e))).await;
                }
                Err(join) => {
                    let e = WireError::SmartModule {
                        module: "chain".into(),
                        offset: None,
                        reason: format!("the SmartModule thread failed: {join}"),
                    };
                    return respond(send, &Response::Error(e)).await;
                }
            };
            if let Some(n) = remaining.as_mut() {
                let keep = (*n).min(records.len() as u64) as usize;
                if keep < records.len() {
                    // Resume where delivery stopped, not after what was read.
                    next = records[keep].offset;
                }
                records.truncate(keep);
                *n -= records.len() as u64;
            }
            let records: Vec<_> = records.iter().map(ConsumerRecord::borrowed).collect();
            crate::metrics::consumed(&req.topic, req.partition, &records);
            for chunk in frame_slices(&records) {
                let frame = RecordsRef {
                    records: chunk,
                    high_watermark,
                };
                respond_with(send, &frame).await?;
            }
            if let Some(e) = failure {
                // The consumer got everything before the failing record.
                return respond(send, &Response::Error(e)).await;
            }
            continue;
        }
        if !req.follow {
            return respond(send, &Response::FetchEnd { next_offset: next }).await;
        }
        tokio::select! {
            changed = end_rx.changed() => if changed.is_err() {
                let e = WireError::Unavailable {
                    what: format!("partition {}/{}", req.topic, req.partition),
                    reason: "its replica stopped on this node".into(),
                };
                return respond(send, &Response::Error(e)).await;
            },
            _ = send.stopped() => return Ok(()),
        }
    }
}

/// Splits records into response frames under the fetch limit (a single
/// stored batch may exceed the requested size, a module's output far more).
fn frame_slices<'r, 'a>(
    records: &'r [ConsumerRecordRef<'a>],
) -> impl Iterator<Item = &'r [ConsumerRecordRef<'a>]> {
    let mut rest = records;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let mut n = 0;
        for r in rest {
            let size = r.size_bytes() + RECORD_OVERHEAD_BYTES_MAX;
            if n > 0 && bytes + size > FETCH_RESPONSE_BYTES_MAX {
                break;
            }
            bytes += size;
            n += 1;
        }
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}
