//! Clients' requests about where consumers stand: committed offsets (each
//! in its partition's own Raft group, `crate::consumers`) and consumer
//! groups (`crate::groups`, coordinated by the controller's leader).

use sluice_proto::{Response, WireError};

use sluice_controller::Controller;

use crate::shared::Shared;

/// Commits a consumer's offset, with its member's group generation when it
/// reads as part of a group.
pub(super) async fn commit(
    node: &Shared,
    commit: sluice_proto::OffsetCommit,
    generation: Option<u64>,
) -> Result<Response, WireError> {
    crate::consumers::commit_offset(node, commit, generation).await?;
    Ok(Response::OffsetCommitted)
}

pub(super) async fn list(
    node: &Shared,
    consumer: Option<String>,
    topic: Option<String>,
) -> Result<Response, WireError> {
    Ok(Response::Consumers(
        crate::consumers::list(node, consumer.as_deref(), topic.as_deref()).await?,
    ))
}

/// Deletes a consumer's offsets (in `topic`, or everywhere), refused while
/// its group has members.
pub(super) async fn delete(
    node: &Shared,
    controller: &Controller,
    consumer: String,
    topic: Option<String>,
) -> Result<Response, WireError> {
    node.groups.drop_dead_owners(node, &consumer).await?;
    // The controller first: it refuses while the group has members
    // (this node not leading it, the request goes to its leader,
    // which then does the rest), and drops the group's record and
    // any offsets an earlier release kept there.
    let in_controller = match controller
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

pub(super) async fn heartbeat(
    node: &Shared,
    hb: sluice_proto::GroupHeartbeat,
) -> Result<Response, WireError> {
    Ok(Response::GroupAssignment(
        node.groups.heartbeat(node, hb).await?,
    ))
}

pub(super) async fn leave(
    node: &Shared,
    group: &str,
    topic: &str,
    member: &str,
) -> Result<Response, WireError> {
    node.groups.leave(node, group, topic, member).await?;
    Ok(Response::GroupLeft)
}
