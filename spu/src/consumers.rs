//! Committed consumer offsets: the checks a node makes before passing a
//! commit to the controller, which stores it in the replicated metadata.
//!
//! Why here and not in the controller's state machine: only a node holding
//! the partition knows its end, and a commit past the end would make a
//! consumer skip records not yet written. The end only grows, so a commit
//! found at or below it once stays valid.

use std::time::Duration;

use sluice_proto::limits::{CONSUMER_STATE_BYTES_MAX, validate_consumer_name};
use sluice_proto::{OffsetCommit, Request, Response, WireError};

use crate::node::Shared;

/// How long asking a replica for the partition's end may take.
const END_QUERY_WAIT: Duration = Duration::from_secs(3);

/// Checks `commit` and stores it through the controller.
pub(crate) async fn commit_offset(node: &Shared, commit: OffsetCommit) -> Result<(), WireError> {
    validate_consumer_name(&commit.consumer).map_err(|reason| WireError::InvalidArgument {
        what: "consumer name".into(),
        reason,
    })?;
    if let Some(state) = &commit.state
        && state.len() > CONSUMER_STATE_BYTES_MAX
    {
        return Err(WireError::InvalidArgument {
            what: "offset commit".into(),
            reason: format!(
                "its SmartModule state is {} bytes; at most {CONSUMER_STATE_BYTES_MAX} are kept with an offset",
                state.len()
            ),
        });
    }
    // Another node leads the controller: the commit is passed to it
    // (`server::propose_anywhere`) before any check, which it makes itself.
    if let Some(leader) = node.controller.leader().filter(|l| *l != node.config.id) {
        return Err(WireError::NotLeader {
            node: node.config.id,
            what: "the controller".into(),
            leader: Some(leader),
        });
    }
    let topic_id = check_within_end(node, &commit.topic, commit.partition, commit.offset).await?;
    node.controller.commit_offset(commit, topic_id).await
}

/// Whether `offset` is at most the end of `topic`/`partition`: this node's
/// replica answers if it has come that far, else the partition's other
/// replicas are asked (each reports its own end; the leader's is the end).
/// Returns the id of the topic checked.
async fn check_within_end(
    node: &Shared,
    topic: &str,
    partition: u32,
    offset: u64,
) -> Result<u32, WireError> {
    // Read under the view's lock, not copied: the metadata holds every
    // registered SmartModule's code, and commits come every few seconds.
    let (topic_id, peers) = node.controller.view().with(|md| {
        let record = md.topic(topic)?;
        let Some(assignment) = record.info.assignments.get(partition as usize) else {
            return Err(WireError::UnknownPartition {
                topic: topic.to_string(),
                partition,
                partitions: record.info.spec.partitions,
            });
        };
        let peers: Vec<(u64, String)> = assignment
            .replicas
            .iter()
            .filter(|&&n| n != node.config.id)
            .filter_map(|n| md.nodes.get(n).map(|r| (*n, r.addr.clone())))
            .collect();
        Ok((record.id, peers))
    })?;
    let local = node
        .replicas
        .by_group(sluice_raft::partition_group(topic_id, partition));
    let mut highest_end = None;
    let mut leader_end = None;
    if let Some(p) = local {
        let end = p.offsets().1;
        if offset <= end {
            return Ok(topic_id);
        }
        if p.group.status().is_leader {
            return Err(past_end(topic, partition, offset, end));
        }
        highest_end = Some(end);
    }
    let mut unreachable = Vec::new();
    for (replica, addr) in &peers {
        let ask = Request::ListPartitions {
            topic: Some(topic.to_string()),
        };
        let answer = tokio::time::timeout(END_QUERY_WAIT, node.peers.request(addr, &ask)).await;
        // (its end, whether it is the partition's leader)
        let end = match answer {
            Ok(Ok(Response::Partitions(all))) => all
                .into_iter()
                .find(|p| p.partition == partition && p.leader.is_some())
                .map(|p| (p.end_offset, p.leader == Some(*replica))),
            _ => None,
        };
        match end {
            Some((end, _)) if offset <= end => return Ok(topic_id),
            // Only the leader's end is the partition's: a follower may lag.
            Some((end, true)) => leader_end = Some(end),
            Some((end, false)) => highest_end = highest_end.max(Some(end)),
            None => unreachable.push(*replica),
        }
    }
    if let Some(end) = leader_end {
        return Err(past_end(topic, partition, offset, end));
    }
    match highest_end {
        Some(end) => Err(WireError::Unavailable {
            what: format!("partition {topic}/{partition}"),
            reason: format!(
                "offset {offset} is past what its replicas that answered hold ({end}), and its leader did not answer"
            ),
        }),
        None => Err(WireError::Unavailable {
            what: format!("partition {topic}/{partition}"),
            reason: format!(
                "no replica told its end to check the commit against (asked nodes {unreachable:?})"
            ),
        }),
    }
}

fn past_end(topic: &str, partition: u32, offset: u64, end: u64) -> WireError {
    WireError::InvalidArgument {
        what: "offset commit".into(),
        reason: format!(
            "offset {offset} is past the end of {topic}/{partition}, which is {end}: \
             a consumer commits the offset after the last record it processed, at most the end"
        ),
    }
}
