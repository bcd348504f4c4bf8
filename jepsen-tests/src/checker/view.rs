//! Indexes over a history that the log checkers share: every send by value,
//! every record any read returned, and each node's final log per partition.
//!
//! Offsets are the version order of a partition, so these flat indexes are all
//! the checkers need; nothing here searches over orderings.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::history::{Call, History, NodeId, Offset, Outcome, PartitionId, Record};

/// A send operation and how it ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Send<'h> {
    pub value: &'h str,
    pub partition: PartitionId,
    pub outcome: Outcome,
    /// The acknowledged offset (`ok` only).
    pub offset: Option<Offset>,
    /// History index of the invocation.
    pub invoke_op: u64,
    /// History index of the completion, if any.
    pub complete_op: Option<u64>,
}

/// One record returned by one read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Obs<'h> {
    pub partition: PartitionId,
    pub offset: Offset,
    pub value: &'h str,
    /// History index of the read's completion.
    pub op: u64,
    pub node: Option<NodeId>,
}

/// One node's final log of one partition.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FinalLog<'h> {
    pub op: u64,
    pub records: &'h [Record],
}

#[derive(Debug, Default)]
pub(crate) struct LogView<'h> {
    pub sends: HashMap<&'h str, Send<'h>>,
    /// Sends in invocation order.
    pub send_order: Vec<&'h str>,
    pub obs: Vec<Obs<'h>>,
    /// partition -> node -> the last successful final read.
    pub finals: BTreeMap<PartitionId, BTreeMap<NodeId, FinalLog<'h>>>,
    /// (node, partition) final reads that were invoked but did not succeed.
    pub failed_finals: BTreeSet<(NodeId, PartitionId)>,
    /// (node, partition) final reads answered "not a replica": the node holds
    /// no log of the partition (not even an empty one), so it is in no check
    /// of the final logs.
    pub not_replicas: BTreeSet<(NodeId, PartitionId)>,
    /// Every partition named by a send, read or final read.
    pub partitions: BTreeSet<PartitionId>,
}

impl<'h> LogView<'h> {
    pub fn new(h: &'h History) -> Self {
        let mut v = LogView::default();
        for pair in h.pairs() {
            let node = h.node_of(pair);
            let complete_op = h.completion(pair).map(|op| op.index);
            match (&h.invoke(pair).call, h.result_call(pair)) {
                (Call::Send(s), Call::Send(done)) => {
                    v.partitions.insert(s.partition);
                    v.send_order.push(&s.value);
                    v.sends.insert(
                        &s.value,
                        Send {
                            value: &s.value,
                            partition: s.partition,
                            outcome: pair.outcome,
                            offset: if pair.outcome == Outcome::Ok {
                                done.offset
                            } else {
                                None
                            },
                            invoke_op: h.invoke(pair).index,
                            complete_op,
                        },
                    );
                }
                (Call::Poll(r), Call::Poll(done)) | (Call::Read(r), Call::Read(done)) => {
                    v.partitions.insert(r.partition);
                    if pair.outcome == Outcome::Ok {
                        v.observe(r.partition, done.records.as_deref(), complete_op, node);
                    }
                }
                (Call::FinalRead(r), Call::FinalRead(done)) => {
                    v.partitions.insert(r.partition);
                    let Some(node) = node else { continue };
                    if pair.outcome != Outcome::Ok {
                        v.failed_finals.insert((node, r.partition));
                        continue;
                    }
                    v.failed_finals.remove(&(node, r.partition));
                    if done.not_replica {
                        v.not_replicas.insert((node, r.partition));
                        continue;
                    }
                    let records = done.records.as_deref().unwrap_or_default();
                    v.observe(r.partition, Some(records), complete_op, Some(node));
                    v.finals.entry(r.partition).or_default().insert(
                        node,
                        FinalLog {
                            op: complete_op.unwrap_or_default(),
                            records,
                        },
                    );
                }
                _ => {}
            }
        }
        v
    }

    fn observe(
        &mut self,
        partition: PartitionId,
        records: Option<&'h [Record]>,
        op: Option<u64>,
        node: Option<NodeId>,
    ) {
        let op = op.unwrap_or_default();
        for r in records.unwrap_or_default() {
            self.obs.push(Obs {
                partition,
                offset: r.offset,
                value: &r.value,
                op,
                node,
            });
        }
    }

    /// Whether every final read invoked for `partition` succeeded and there is
    /// at least one: only then can absence from the final logs prove a loss.
    pub fn finals_complete(&self, partition: PartitionId) -> bool {
        self.finals.get(&partition).is_some_and(|m| !m.is_empty())
            && !self.failed_finals.iter().any(|(_, p)| *p == partition)
    }

    /// Acknowledged sends in invocation order.
    pub fn acked(&self) -> impl Iterator<Item = &Send<'h>> {
        self.send_order
            .iter()
            .filter_map(|v| self.sends.get(v))
            .filter(|s| s.outcome == Outcome::Ok)
    }
}
