//! `sluice cluster spu unregister`: a node leaves for good once it holds no
//! replica. The replicas of topics the user made are the user's to move
//! (`partition reassign`: where they go is a choice); those of the system
//! topics (the audit trail) are moved here first, to a node that holds
//! none of that partition, or dropped from its replica set if every node
//! already holds one, so that removing a node takes one command as before.

use anyhow::Context;
use sluice_client::proto::PartitionStatus;

use crate::Globals;

/// Moves the system topics' replicas off node `id` (unless it still holds
/// replicas of other topics: then the unregistration fails naming them),
/// then unregisters it.
pub(super) async fn unregister(globals: &Globals, id: u64) -> anyhow::Result<()> {
    let client = crate::connect(globals).await?;
    let holds_user_replicas = client
        .list_topics()
        .await?
        .iter()
        .flat_map(|t| &t.assignments)
        .any(|a| a.replicas.contains(&id));
    if !holds_user_replicas {
        let nodes: Vec<u64> = client
            .cluster_status()
            .await?
            .nodes
            .iter()
            .map(|n| n.id)
            .collect();
        for p in client.list_system_partitions().await? {
            if let Some(replicas) = replicas_without(&p, id, &nodes) {
                let what = format!("{}/{}", p.topic, p.partition);
                println!("moving system topic partition {what} off SPU {id} first");
                crate::partition::reassign(
                    globals,
                    &p.topic,
                    p.partition,
                    replicas,
                    false,
                    crate::timeouts::SYSTEM_REPLICA_MOVE_TIMEOUT,
                )
                .await
                .with_context(|| format!("cannot move {what} off SPU {id}"))?;
            }
        }
    }
    client
        .unregister_node(id)
        .await
        .with_context(|| format!("cannot unregister SPU {id}"))?;
    println!("SPU {id} unregistered; it stops by itself and its id is never reused");
    Ok(())
}

/// The replica set of `p` without node `id`, with the first of `nodes`
/// that holds no replica of it in its place (if any): `None` if `id` holds
/// none, or no other node can take it. A partition whose only replica is
/// `id` goes to another node.
fn replicas_without(p: &PartitionStatus, id: u64, nodes: &[u64]) -> Option<Vec<u64>> {
    let current: Vec<u64> = p.replicas.iter().map(|r| r.node).collect();
    if !current.contains(&id) {
        return None;
    }
    let mut kept: Vec<u64> = current.iter().copied().filter(|n| *n != id).collect();
    if let Some(spare) = nodes.iter().find(|n| **n != id && !current.contains(n)) {
        kept.push(*spare);
    }
    (!kept.is_empty()).then_some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_client::proto::ReplicaStatus;

    fn partition(replicas: &[u64]) -> PartitionStatus {
        PartitionStatus {
            topic: "sluice-audit".into(),
            partition: 0,
            leader: replicas.first().copied(),
            replicas: replicas
                .iter()
                .map(|&node| ReplicaStatus {
                    node,
                    lag_entries: None,
                })
                .collect(),
            start_offset: 0,
            committed_offset: 0,
            end_offset: 0,
            size_bytes: 0,
            leaving: Vec::new(),
        }
    }

    #[test]
    fn a_leaving_nodes_system_replica_goes_to_a_node_without_one_or_is_dropped() {
        // A spare node takes its place.
        assert_eq!(
            replicas_without(&partition(&[1, 2, 3]), 1, &[1, 2, 3, 4]),
            Some(vec![2, 3, 4])
        );
        // Every other node holds one: the set shrinks.
        assert_eq!(
            replicas_without(&partition(&[1, 2, 3]), 3, &[1, 2, 3]),
            Some(vec![1, 2])
        );
        // Its only replica moves.
        assert_eq!(
            replicas_without(&partition(&[4]), 4, &[1, 4]),
            Some(vec![1])
        );
        // A node that holds none has nothing to move.
        assert_eq!(replicas_without(&partition(&[1, 2]), 4, &[1, 2, 4]), None);
        // The last node of the cluster cannot hand it to anyone.
        assert_eq!(replicas_without(&partition(&[1]), 1, &[1]), None);
    }
}
