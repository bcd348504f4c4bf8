//! The typed operations of a history and their JSON shape.
//!
//! On disk an operation is a flat object (`index`, `time_ms`, `process`,
//! `type`, `f`, `value`, `node`, optional `error`); in memory `f` and `value`
//! become one [`Call`] variant so a checker cannot read a send's value as a
//! poll's. The conversion goes through [`RawOp`], which keeps the file format
//! exactly as documented and gives parse errors that name the operation.

use serde::{Deserialize, Serialize};

/// A Sluice node id, as the runner numbers them (node i listens on 127.0.0.(10+i)).
pub type NodeId = u32;
/// A partition of the workload's topic.
pub type PartitionId = u32;
/// An offset in a partition's log.
pub type Offset = u64;

/// Who performed an operation: a numbered client process, or the nemesis
/// (which also records leader observations). On disk: a number, or `"nemesis"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Process {
    Client(u64),
    Nemesis,
}

impl Serialize for Process {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Process::Client(p) => s.serialize_u64(*p),
            Process::Nemesis => s.serialize_str("nemesis"),
        }
    }
}

impl<'de> Deserialize<'de> for Process {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) if n.as_u64().is_some() => {
                Ok(Process::Client(n.as_u64().unwrap_or_default()))
            }
            serde_json::Value::String(s) if s == "nemesis" => Ok(Process::Nemesis),
            other => Err(D::Error::custom(format!(
                "process must be a non-negative number or \"nemesis\", not {other}"
            ))),
        }
    }
}

impl std::fmt::Display for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Process::Client(p) => write!(f, "{p}"),
            Process::Nemesis => f.write_str("nemesis"),
        }
    }
}

/// The `type` of an operation line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpType {
    /// The client is about to issue the request.
    Invoke,
    /// The request took effect; the value carries the result.
    Ok,
    /// The request definitely did not take effect (the server rejected it).
    Fail,
    /// Unknown whether the request took effect (timeout, lost connection).
    /// Also the type of every nemesis event.
    Info,
}

/// One record of a partition: `[offset, value]` on disk.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "(Offset, String)", into = "(Offset, String)")]
pub struct Record {
    pub offset: Offset,
    pub value: String,
}

impl Record {
    pub fn new(offset: Offset, value: impl Into<String>) -> Self {
        Record {
            offset,
            value: value.into(),
        }
    }
}

impl From<(Offset, String)> for Record {
    fn from((offset, value): (Offset, String)) -> Self {
        Record { offset, value }
    }
}

impl From<Record> for (Offset, String) {
    fn from(r: Record) -> Self {
        (r.offset, r.value)
    }
}

/// `send`: produce one unique value to a partition. `offset` is present on `ok` only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendCall {
    pub value: String,
    pub partition: PartitionId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<Offset>,
}

/// `poll` (a consumer's continuing stream) or `read` (a one-off fetch): records
/// of a partition from `offset` on, served by the op's `node`. `records` is
/// present on `ok` only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadCall {
    pub partition: PartitionId,
    pub offset: Offset,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<Vec<Record>>,
}

/// `final_read`: after the heal, the whole log of a partition drained from
/// offset 0 on the op's `node` alone. An `ok` carries either `records`, or
/// `not_replica: true`: the node definitely holds no replica of the partition
/// (a partition moved away from it, or never assigned to it), which is no log
/// at all, not an empty one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalRead {
    pub partition: PartitionId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<Vec<Record>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_replica: bool,
}

/// `sm_create`: register a SmartModule; `hash` is the SHA-256 of its bytes, hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmCreate {
    pub name: String,
    pub hash: String,
}

/// `sm_delete`: remove a SmartModule by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmDelete {
    pub name: String,
}

/// `sm_list`: the SmartModules the op's `node` knows. `final: true` marks the
/// list taken on every node after the heal, which the convergence checks use.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SmList {
    #[serde(default, rename = "final", skip_serializing_if = "std::ops::Not::not")]
    pub is_final: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modules: Option<Vec<Module>>,
}

/// One SmartModule as listed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Module {
    pub name: String,
    pub hash: String,
}

/// `sm_consume`: after the heal, partition `partition` of `topic` read from
/// offset 0 on the op's `node` alone through the registered SmartModule
/// `module` (run by that node from its own copy of the store). `expect` is
/// what the module must let through; `records` is present on `ok` only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmConsume {
    pub module: String,
    pub topic: String,
    pub partition: PartitionId,
    pub expect: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<Vec<Record>>,
}

/// `group_poll`: records of `partition` that consumer-group `member` was
/// handed (its application saw them), in order. `records` on `ok` only.
/// `final: true` marks the drain after the heal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupPoll {
    pub member: String,
    pub partition: PartitionId,
    #[serde(default, rename = "final", skip_serializing_if = "std::ops::Not::not")]
    pub is_final: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<Vec<Record>>,
}

/// `group_assign`: consumer-group `member` was given `partitions` (its
/// application saw the event, before any record of them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupAssign {
    pub member: String,
    pub partitions: Vec<PartitionId>,
}

/// `group_offsets`: the group's committed offsets as listed, `[partition,
/// offset]` pairs (`ok` only).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GroupOffsets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offsets: Option<Vec<(PartitionId, Offset)>>,
}

/// `pipeline_read`: after the heal, one partition of the pipeline's source
/// topic and of the topic derived from it, read whole from their leaders
/// (`ok` only): `source` as `[offset, value]`, `derived` as `[offset,
/// value, source offset]` (the record's `sluice-source-offset` header;
/// `null` if it has none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineRead {
    pub partition: PartitionId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Vec<Record>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derived: Option<Vec<(Offset, String, Option<Offset>)>>,
}

/// A nemesis event: `fault` is the kind (`kill`, `pause`, `partition`,
/// `power_loss`, `corruption`, `membership`, `clock`, ...), `nodes` its targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NemesisEvent {
    pub fault: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A leader observation: who leads a partition's group (`partition` absent:
/// the controller group), as the runner saw it at that time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<PartitionId>,
    pub leader: Option<NodeId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
}

/// What an operation does (`f`) with its arguments and results (`value`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", content = "value", rename_all = "snake_case")]
pub enum Call {
    Send(SendCall),
    Poll(ReadCall),
    Read(ReadCall),
    FinalRead(FinalRead),
    SmCreate(SmCreate),
    SmDelete(SmDelete),
    SmList(SmList),
    SmConsume(SmConsume),
    GroupPoll(GroupPoll),
    GroupAssign(GroupAssign),
    GroupOffsets(GroupOffsets),
    PipelineRead(PipelineRead),
    /// Nemesis: a fault begins.
    Start(NemesisEvent),
    /// Nemesis: a fault ends (healed).
    Stop(NemesisEvent),
    /// Nemesis: a fault could not be injected (no privileges, missing tool);
    /// the run cannot be `valid`.
    Unavailable(NemesisEvent),
    /// Nemesis: a leader observation.
    Leader(LeaderEvent),
}

impl Call {
    /// The `f` name as written in the history.
    pub fn f(&self) -> &'static str {
        match self {
            Call::Send(_) => "send",
            Call::Poll(_) => "poll",
            Call::Read(_) => "read",
            Call::FinalRead(_) => "final_read",
            Call::SmCreate(_) => "sm_create",
            Call::SmDelete(_) => "sm_delete",
            Call::SmList(_) => "sm_list",
            Call::SmConsume(_) => "sm_consume",
            Call::GroupPoll(_) => "group_poll",
            Call::GroupAssign(_) => "group_assign",
            Call::GroupOffsets(_) => "group_offsets",
            Call::PipelineRead(_) => "pipeline_read",
            Call::Start(_) => "start",
            Call::Stop(_) => "stop",
            Call::Unavailable(_) => "unavailable",
            Call::Leader(_) => "leader",
        }
    }

    /// Whether only the nemesis process may record this call.
    pub fn is_nemesis(&self) -> bool {
        matches!(
            self,
            Call::Start(_) | Call::Stop(_) | Call::Unavailable(_) | Call::Leader(_)
        )
    }

    /// Whether this is part of the post-heal drain (not of the workload under
    /// faults): final reads, final SmartModule lists and SmartModule consumes.
    pub fn is_final(&self) -> bool {
        match self {
            Call::FinalRead(_) | Call::SmConsume(_) | Call::PipelineRead(_) => true,
            Call::SmList(l) => l.is_final,
            Call::GroupPoll(g) => g.is_final,
            _ => false,
        }
    }
}

/// One line of a history.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawOp")]
pub struct Op {
    /// Position in the history; strictly increasing.
    pub index: u64,
    /// Milliseconds since the run started (monotonic clock of the runner).
    pub time_ms: u64,
    pub process: Process,
    pub kind: OpType,
    pub call: Call,
    /// The node the client talked to (or the node a final read drained).
    pub node: Option<NodeId>,
    /// The error text of a `fail` or `info`, for humans; checkers ignore it.
    pub error: Option<String>,
}

/// The on-disk shape of an [`Op`], as read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOp {
    index: u64,
    time_ms: u64,
    process: Process,
    #[serde(rename = "type")]
    kind: OpType,
    f: String,
    #[serde(default)]
    value: serde_json::Value,
    #[serde(default)]
    node: Option<NodeId>,
    #[serde(default)]
    error: Option<String>,
}

impl TryFrom<RawOp> for Op {
    type Error = serde_json::Error;

    fn try_from(raw: RawOp) -> Result<Self, Self::Error> {
        let value = match raw.value {
            serde_json::Value::Null => serde_json::Value::Object(Default::default()),
            v => v,
        };
        let call = serde_json::from_value(serde_json::json!({ "f": raw.f, "value": value }))?;
        Ok(Op {
            index: raw.index,
            time_ms: raw.time_ms,
            process: raw.process,
            kind: raw.kind,
            call,
            node: raw.node,
            error: raw.error,
        })
    }
}

/// The on-disk shape of an [`Op`], as written: borrowed, with the fields (and
/// each value's fields) in the documented order.
#[derive(Serialize)]
struct RawOpOut<'a> {
    index: u64,
    time_ms: u64,
    process: Process,
    #[serde(rename = "type")]
    kind: OpType,
    f: &'static str,
    value: ValueRef<'a>,
    node: Option<NodeId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// A [`Call`]'s value without its tag.
#[derive(Serialize)]
#[serde(untagged)]
enum ValueRef<'a> {
    Send(&'a SendCall),
    Read(&'a ReadCall),
    FinalRead(&'a FinalRead),
    SmCreate(&'a SmCreate),
    SmDelete(&'a SmDelete),
    SmList(&'a SmList),
    SmConsume(&'a SmConsume),
    GroupPoll(&'a GroupPoll),
    GroupAssign(&'a GroupAssign),
    GroupOffsets(&'a GroupOffsets),
    PipelineRead(&'a PipelineRead),
    Nemesis(&'a NemesisEvent),
    Leader(&'a LeaderEvent),
}

impl Serialize for Op {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let value = match &self.call {
            Call::Send(v) => ValueRef::Send(v),
            Call::Poll(v) | Call::Read(v) => ValueRef::Read(v),
            Call::FinalRead(v) => ValueRef::FinalRead(v),
            Call::SmCreate(v) => ValueRef::SmCreate(v),
            Call::SmDelete(v) => ValueRef::SmDelete(v),
            Call::SmList(v) => ValueRef::SmList(v),
            Call::SmConsume(v) => ValueRef::SmConsume(v),
            Call::GroupPoll(v) => ValueRef::GroupPoll(v),
            Call::GroupAssign(v) => ValueRef::GroupAssign(v),
            Call::GroupOffsets(v) => ValueRef::GroupOffsets(v),
            Call::PipelineRead(v) => ValueRef::PipelineRead(v),
            Call::Start(v) | Call::Stop(v) | Call::Unavailable(v) => ValueRef::Nemesis(v),
            Call::Leader(v) => ValueRef::Leader(v),
        };
        RawOpOut {
            index: self.index,
            time_ms: self.time_ms,
            process: self.process,
            kind: self.kind,
            f: self.call.f(),
            value,
            node: self.node,
            error: self.error.as_deref(),
        }
        .serialize(s)
    }
}
