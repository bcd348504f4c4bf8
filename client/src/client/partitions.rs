//! The cluster-wide partition list.
//!
//! A node knows the live state of a partition (its leader, committed offset,
//! replica lag) only if it holds a replica of it: for every other partition
//! it can name the replicas from the metadata but answers "no leader" and
//! zero offsets. So [`Client::list_partitions`] starts from one node's list
//! (which has every partition of the metadata) and then replaces each entry
//! by the view of the node that leads the partition, the one node that knows
//! its committed offset and every follower's lag. Nodes are asked at once,
//! and one that does not answer in [`LEADER_VIEW_TIMEOUT`] is skipped: its
//! partitions keep the first node's view rather than failing the list.

use std::net::SocketAddr;

use sluice_proto::{NodeId, PartitionStatus, Request, Response};

use super::Client;
use crate::error::Result;
use crate::timeouts::LEADER_VIEW_TIMEOUT;

impl Client {
    /// Live state of the partitions of `topic`, or of every topic: each
    /// partition as its leader sees it (see the module docs), or with no
    /// leader while it has none or its leader cannot be reached.
    pub async fn list_partitions(&self, topic: Option<&str>) -> Result<Vec<PartitionStatus>> {
        let request = Request::ListPartitions {
            topic: topic.map(str::to_string),
        };
        self.partitions_by_leaders(request).await
    }

    /// The answer to `request` (a partition list) of one node, then each
    /// partition as its leader answers the same request.
    pub(super) async fn partitions_by_leaders(
        &self,
        request: Request,
    ) -> Result<Vec<PartitionStatus>> {
        let mut partitions = match self.admin(request.clone()).await? {
            Response::Partitions(partitions) => partitions,
            other => return Err(self.unexpected("list partitions", &other)),
        };
        // Without the cluster status there is nobody else to ask: the first
        // node's view is still an answer.
        let Ok(status) = self.cluster_status().await else {
            return Ok(partitions);
        };
        let nodes: Vec<(NodeId, SocketAddr)> = status
            .nodes
            .iter()
            .filter_map(|n| Some((n.id, n.advertised_addr.parse().ok()?)))
            .collect();
        let request = &request;
        let views = nodes.iter().map(|&(node, addr)| async move {
            let ask = self.exchange(addr, request, "list partitions");
            match tokio::time::timeout(LEADER_VIEW_TIMEOUT, ask).await {
                Ok(Ok((Response::Partitions(view), _))) => (node, view),
                _ => (node, Vec::new()),
            }
        });
        for (node, view) in futures::future::join_all(views).await {
            merge_leader_view(&mut partitions, node, view);
        }
        Ok(partitions)
    }
}

/// Replaces the entries of `partitions` that `node` leads by its own view.
fn merge_leader_view(partitions: &mut [PartitionStatus], node: NodeId, view: Vec<PartitionStatus>) {
    for led in view.into_iter().filter(|p| p.leader == Some(node)) {
        if let Some(slot) = partitions
            .iter_mut()
            .find(|p| p.topic == led.topic && p.partition == led.partition)
        {
            *slot = led;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(topic: &str, partition: u32, leader: Option<NodeId>, end: u64) -> PartitionStatus {
        PartitionStatus {
            topic: topic.into(),
            partition,
            leader,
            replicas: Vec::new(),
            start_offset: 0,
            committed_offset: end,
            end_offset: end,
            size_bytes: 0,
            leaving: Vec::new(),
        }
    }

    #[test]
    fn only_a_partitions_leader_replaces_its_entry() {
        let mut list = vec![status("t", 0, None, 0), status("t", 1, Some(1), 5)];
        // Node 2 leads partition 0 and follows (with a stale view) partition 1.
        merge_leader_view(
            &mut list,
            2,
            vec![status("t", 0, Some(2), 7), status("t", 1, Some(1), 3)],
        );
        assert_eq!(list[0], status("t", 0, Some(2), 7));
        assert_eq!(list[1], status("t", 1, Some(1), 5));
        // A view naming another node as leader changes nothing.
        merge_leader_view(&mut list, 3, vec![status("t", 0, Some(2), 9)]);
        assert_eq!(list[0].committed_offset, 7);
    }
}
