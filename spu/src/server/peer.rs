//! Requests only nodes send each other (`crate::authz` refuses them to any
//! other principal): Raft RPCs, joining the cluster, copying a replica's
//! log, finishing a partition's move, and the consumer-offset work a group
//! coordinator asks of partition leaders.

use sluice_proto::{RaftRpc, RaftRpcKind, Response, WireError};

use crate::shared::Shared;

pub(super) async fn join(
    node: &Shared,
    id: u64,
    addr: String,
    incarnation: String,
) -> Result<Response, WireError> {
    node.controller.join(id, addr, incarnation).await?;
    Ok(Response::Joined)
}

pub(super) fn incarnation(node: &Shared, id: u64) -> Response {
    Response::NodeIncarnation(node.controller.view().with(|md| md.incarnation_of(id)))
}

/// Up to `max_bytes` (at most a copy chunk) of the stored batches of the
/// replica of `group` here, from `from_offset`, for a replica that
/// installs a snapshot (`crate::log_copy`). A replica whose group stopped
/// is never copied from.
pub(super) async fn read_replica_log(
    node: &Shared,
    group: u64,
    from_offset: u64,
    max_bytes: u32,
) -> Result<Response, WireError> {
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
    let storage_error = |reason: String| WireError::Storage {
        what: format!("partition {}/{}", p.topic, p.index),
        reason,
    };
    let copy = tokio::task::spawn_blocking(move || {
        crate::log_copy::read_for_copy(&crate::partition::read_lock(&log), from_offset, max)
    })
    .await
    .map_err(|e| storage_error(e.to_string()))?
    .map_err(|e| storage_error(e.to_string()))?;
    Ok(Response::ReplicaLog {
        start_offset: copy.start_offset,
        batches: copy
            .batches
            .into_iter()
            .map(serde_bytes::ByteBuf::from)
            .collect(),
    })
}

pub(super) async fn finish_reassignment(
    node: &Shared,
    topic: &str,
    partition: u32,
    replicas: Vec<u64>,
) -> Result<Response, WireError> {
    node.controller
        .finish_reassignment(topic, partition, replicas)
        .await?;
    Ok(Response::ReassignmentFinished)
}

/// On a partition's leader, for the group coordinator: fences the group's
/// earlier generations out of the partition and answers its committed offset.
pub(super) async fn fence_consumer(
    node: &Shared,
    consumer: &str,
    topic: &str,
    partition: u32,
    generation: u64,
) -> Result<Response, WireError> {
    let (offset, state) =
        crate::consumers::fence_here(node, consumer, topic, partition, generation).await?;
    Ok(Response::ConsumerFenced {
        offset,
        state: state.map(serde_bytes::ByteBuf::from),
    })
}

pub(super) async fn leader_consumers(
    node: &Shared,
    consumer: Option<String>,
    topic: Option<String>,
) -> Response {
    Response::LeaderConsumers(
        crate::consumers::leader_consumers(node, consumer.as_deref(), topic.as_deref()).await,
    )
}

pub(super) async fn forget_consumer(
    node: &Shared,
    consumer: &str,
    topic: Option<String>,
) -> Result<Response, WireError> {
    let (partitions, forgotten) =
        crate::consumers::forget_here(node, consumer, topic.as_deref()).await?;
    Ok(Response::ConsumerForgotten {
        partitions,
        forgotten,
    })
}

/// Hands a Raft RPC to the group it is for; a batch of them to each.
pub(super) async fn serve_raft(node: &Shared, rpc: RaftRpc) -> Response {
    if rpc.kind == RaftRpcKind::Batch {
        let payload = sluice_raft::serve_batch(&rpc.payload, |one| async move {
            match serve_one_raft(node, one).await {
                Response::Raft { payload } => Ok(payload),
                Response::Error(e) => Err(e.to_string()),
                other => Err(format!("unexpected answer to a Raft RPC: {other:?}")),
            }
        })
        .await;
        return Response::Raft { payload };
    }
    serve_one_raft(node, rpc).await
}

/// Hands one Raft RPC (not a batch) to the group it is for.
async fn serve_one_raft(node: &Shared, rpc: RaftRpc) -> Response {
    let payload = if matches!(rpc.kind, RaftRpcKind::LeaderProbe | RaftRpcKind::PeerProbe) {
        match node.replicas.quiescence() {
            Some(q) if rpc.kind == RaftRpcKind::PeerProbe => q.answer_peer_probe(&rpc.payload),
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
        return Response::Error(no_replica(node, rpc.group));
    };
    Response::Raft { payload }
}

/// The refusal of a Raft RPC (or append stream) for a group this node runs
/// no replica of.
pub(super) fn no_replica(node: &Shared, group: u64) -> WireError {
    WireError::Unavailable {
        what: format!("Raft group {group}"),
        reason: format!("node {} does not run a replica of it (yet)", node.config.id),
    }
}
