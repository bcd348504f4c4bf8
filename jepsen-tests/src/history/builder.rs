//! Building histories by hand: the checkers' unit tests are small histories
//! written with this, one per anomaly, so each reads like the scenario it tests.

use super::{
    Call, FinalRead, History, HistoryError, LeaderEvent, Module, NemesisEvent, NodeId, Offset, Op,
    OpType, PartitionId, Process, ReadCall, Record, SendCall, SmConsume, SmCreate, SmDelete,
    SmList,
};

/// Appends operations with consecutive indexes; the clock advances 1 ms per
/// operation unless set with [`HistoryBuilder::at`].
#[derive(Debug, Default)]
pub struct HistoryBuilder {
    ops: Vec<Op>,
    time_ms: u64,
    next_drain_process: u64,
}

/// Process ids of the post-heal drain, far above the workload's.
const DRAIN_PROCESS_BASE: u64 = 1_000_000;

fn records(rs: &[(Offset, &str)]) -> Vec<Record> {
    rs.iter().map(|(o, v)| Record::new(*o, *v)).collect()
}

impl HistoryBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the clock for the next operation (it never goes back).
    pub fn at(&mut self, time_ms: u64) -> &mut Self {
        self.time_ms = self.time_ms.max(time_ms);
        self
    }

    /// Appends one operation.
    pub fn push(
        &mut self,
        process: Process,
        kind: OpType,
        call: Call,
        node: Option<NodeId>,
    ) -> &mut Self {
        let index = self.ops.len() as u64;
        self.ops.push(Op {
            index,
            time_ms: self.time_ms,
            process,
            kind,
            call,
            node,
            error: None,
        });
        self.time_ms += 1;
        self
    }

    /// Invokes `call` by client `process` on `node`.
    pub fn invoke(&mut self, process: u64, node: NodeId, call: Call) -> &mut Self {
        self.push(Process::Client(process), OpType::Invoke, call, Some(node))
    }

    /// Completes the open operation of `process` with `kind` and result `call`.
    pub fn complete(&mut self, process: u64, kind: OpType, call: Call) -> &mut Self {
        let node = self
            .ops
            .iter()
            .rev()
            .find(|op| op.process == Process::Client(process))
            .and_then(|op| op.node);
        self.push(Process::Client(process), kind, call, node)
    }

    /// Consumer-group `member` (process `process`) handed `rs` of `partition`.
    pub fn group_poll(
        &mut self,
        process: u64,
        member: &str,
        partition: PartitionId,
        rs: &[(Offset, &str)],
        is_final: bool,
    ) -> &mut Self {
        let call = |records| {
            Call::GroupPoll(crate::history::GroupPoll {
                member: member.into(),
                partition,
                is_final,
                records,
            })
        };
        self.invoke(process, 1, call(None))
            .complete(process, OpType::Ok, call(Some(records(rs))))
    }

    /// Consumer-group `member` given `partitions`.
    pub fn group_assign(
        &mut self,
        process: u64,
        member: &str,
        partitions: &[PartitionId],
    ) -> &mut Self {
        let call = Call::GroupAssign(crate::history::GroupAssign {
            member: member.into(),
            partitions: partitions.to_vec(),
        });
        self.invoke(process, 1, call.clone())
            .complete(process, OpType::Ok, call)
    }

    /// The group's committed offsets as listed.
    pub fn group_offsets(&mut self, process: u64, offsets: &[(PartitionId, Offset)]) -> &mut Self {
        let call = |offsets| Call::GroupOffsets(crate::history::GroupOffsets { offsets });
        self.invoke(process, 1, call(None)).complete(
            process,
            OpType::Ok,
            call(Some(offsets.to_vec())),
        )
    }

    /// Invokes a send of `value` to `partition`.
    pub fn send_invoke(&mut self, process: u64, value: &str, partition: PartitionId) -> &mut Self {
        self.invoke(process, 1, send(value, partition, None))
    }

    /// Completes a send: `offset` is used for `ok` only.
    pub fn send_complete(
        &mut self,
        process: u64,
        kind: OpType,
        value: &str,
        partition: PartitionId,
        offset: Offset,
    ) -> &mut Self {
        let offset = (kind == OpType::Ok).then_some(offset);
        self.complete(process, kind, send(value, partition, offset))
    }

    /// A send acknowledged at `offset`.
    pub fn send_ok(
        &mut self,
        process: u64,
        value: &str,
        partition: PartitionId,
        offset: Offset,
    ) -> &mut Self {
        self.send_invoke(process, value, partition).send_complete(
            process,
            OpType::Ok,
            value,
            partition,
            offset,
        )
    }

    /// A send that definitely failed.
    pub fn send_fail(&mut self, process: u64, value: &str, partition: PartitionId) -> &mut Self {
        self.send_invoke(process, value, partition).send_complete(
            process,
            OpType::Fail,
            value,
            partition,
            0,
        )
    }

    /// A send whose outcome is unknown (the process is retired after it).
    pub fn send_info(&mut self, process: u64, value: &str, partition: PartitionId) -> &mut Self {
        self.send_invoke(process, value, partition).send_complete(
            process,
            OpType::Info,
            value,
            partition,
            0,
        )
    }

    /// A consumer poll of `partition` from `from` on `node` that returned `rs`.
    pub fn poll_ok(
        &mut self,
        process: u64,
        node: NodeId,
        partition: PartitionId,
        from: Offset,
        rs: &[(Offset, &str)],
    ) -> &mut Self {
        let call = |records| {
            Call::Poll(ReadCall {
                partition,
                offset: from,
                records,
            })
        };
        self.invoke(process, node, call(None)).complete(
            process,
            OpType::Ok,
            call(Some(records(rs))),
        )
    }

    /// A one-off read of `partition` from `from` on `node` that returned `rs`.
    pub fn read_ok(
        &mut self,
        process: u64,
        node: NodeId,
        partition: PartitionId,
        from: Offset,
        rs: &[(Offset, &str)],
    ) -> &mut Self {
        let call = |records| {
            Call::Read(ReadCall {
                partition,
                offset: from,
                records,
            })
        };
        self.invoke(process, node, call(None)).complete(
            process,
            OpType::Ok,
            call(Some(records(rs))),
        )
    }

    fn drain_process(&mut self) -> u64 {
        self.next_drain_process += 1;
        DRAIN_PROCESS_BASE + self.next_drain_process
    }

    /// The post-heal drain of `partition` on `node`, which returned `rs`.
    pub fn final_read(
        &mut self,
        node: NodeId,
        partition: PartitionId,
        rs: &[(Offset, &str)],
    ) -> &mut Self {
        let p = self.drain_process();
        let call = |records| {
            Call::FinalRead(FinalRead {
                partition,
                records,
                not_replica: false,
            })
        };
        self.invoke(p, node, call(None))
            .complete(p, OpType::Ok, call(Some(records(rs))))
    }

    /// The post-heal drain of `partition` on `node`, which answered that it
    /// holds no replica of it.
    pub fn final_read_not_replica(&mut self, node: NodeId, partition: PartitionId) -> &mut Self {
        let p = self.drain_process();
        let call = |not_replica| {
            Call::FinalRead(FinalRead {
                partition,
                records: None,
                not_replica,
            })
        };
        self.invoke(p, node, call(false))
            .complete(p, OpType::Ok, call(true))
    }

    /// A post-heal drain of `partition` on `node` that timed out.
    pub fn final_read_info(&mut self, node: NodeId, partition: PartitionId) -> &mut Self {
        let p = self.drain_process();
        let call = Call::FinalRead(FinalRead {
            partition,
            records: None,
            not_replica: false,
        });
        self.invoke(p, node, call.clone())
            .complete(p, OpType::Info, call)
    }

    /// A SmartModule registration ending with `kind`.
    pub fn sm_create(&mut self, process: u64, kind: OpType, name: &str, hash: &str) -> &mut Self {
        let call = Call::SmCreate(SmCreate {
            name: name.into(),
            hash: hash.into(),
        });
        self.invoke(process, 1, call.clone())
            .complete(process, kind, call)
    }

    /// A SmartModule deletion ending with `kind`.
    pub fn sm_delete(&mut self, process: u64, kind: OpType, name: &str) -> &mut Self {
        let call = Call::SmDelete(SmDelete { name: name.into() });
        self.invoke(process, 1, call.clone())
            .complete(process, kind, call)
    }

    /// A SmartModule list on `node` that returned `modules` (name, hash).
    pub fn sm_list(
        &mut self,
        process: u64,
        node: NodeId,
        is_final: bool,
        modules: &[(&str, &str)],
    ) -> &mut Self {
        let process = if is_final {
            self.drain_process()
        } else {
            process
        };
        let list = |modules| Call::SmList(SmList { is_final, modules });
        let modules = modules
            .iter()
            .map(|(name, hash)| Module {
                name: (*name).into(),
                hash: (*hash).into(),
            })
            .collect();
        self.invoke(process, node, list(None))
            .complete(process, OpType::Ok, list(Some(modules)))
    }

    /// A post-heal consume through `module` on `node`, expecting `expect`:
    /// `Some(values)` read (`ok`), or `None` (`fail`).
    pub fn sm_consume(
        &mut self,
        node: NodeId,
        module: &str,
        expect: &[&str],
        got: Option<&[&str]>,
    ) -> &mut Self {
        let process = self.drain_process();
        let call = |records| {
            Call::SmConsume(SmConsume {
                module: module.into(),
                topic: "sm".into(),
                partition: 0,
                expect: expect.iter().map(|v| (*v).to_string()).collect(),
                records,
            })
        };
        self.invoke(process, node, call(None));
        match got {
            Some(values) => {
                let records = values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Record::new(i as u64, *v))
                    .collect();
                self.complete(process, OpType::Ok, call(Some(records)))
            }
            None => self.complete(process, OpType::Fail, call(None)),
        }
    }

    /// The final SmartModule list of `node` after the heal.
    pub fn sm_final_list(&mut self, node: NodeId, modules: &[(&str, &str)]) -> &mut Self {
        self.sm_list(0, node, true, modules)
    }

    fn nemesis(&mut self, call: Call) -> &mut Self {
        self.push(Process::Nemesis, OpType::Info, call, None)
    }

    /// A fault of kind `fault` begins on `nodes`.
    pub fn fault_start(&mut self, fault: &str, nodes: &[NodeId]) -> &mut Self {
        self.nemesis(Call::Start(event(fault, nodes)))
    }

    /// A fault of kind `fault` ends.
    pub fn fault_stop(&mut self, fault: &str, nodes: &[NodeId]) -> &mut Self {
        self.nemesis(Call::Stop(event(fault, nodes)))
    }

    /// A fault of kind `fault` ends, with the nemesis's description.
    pub fn fault_stop_saying(&mut self, fault: &str, nodes: &[NodeId], detail: &str) -> &mut Self {
        let mut e = event(fault, nodes);
        e.detail = Some(detail.into());
        self.nemesis(Call::Stop(e))
    }

    /// A fault of kind `fault` could not be injected.
    pub fn fault_unavailable(&mut self, fault: &str, why: &str) -> &mut Self {
        let mut e = event(fault, &[]);
        e.detail = Some(why.into());
        self.nemesis(Call::Unavailable(e))
    }

    /// The runner saw `leader` leading `partition` (`None`: the controller).
    pub fn leader(&mut self, partition: Option<PartitionId>, leader: NodeId) -> &mut Self {
        self.nemesis(Call::Leader(LeaderEvent {
            partition,
            leader: Some(leader),
            term: None,
        }))
    }

    /// The operations so far, unvalidated (to write deliberately broken histories).
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Validates and returns the history.
    pub fn build(&self) -> Result<History, HistoryError> {
        History::new(self.ops.clone())
    }
}

fn send(value: &str, partition: PartitionId, offset: Option<Offset>) -> Call {
    Call::Send(SendCall {
        value: value.into(),
        partition,
        offset,
    })
}

fn event(fault: &str, nodes: &[NodeId]) -> NemesisEvent {
    NemesisEvent {
        fault: fault.into(),
        nodes: nodes.to_vec(),
        detail: None,
    }
}
