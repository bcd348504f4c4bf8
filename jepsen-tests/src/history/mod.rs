//! The history of a run: every client operation (its invocation and its
//! completion) and every nemesis event, in the order the recorder saw them.
//!
//! On disk a history is JSON lines, one [`Op`] per line (see `README.md`):
//!
//! ```text
//! {"index":7,"time_ms":1203,"process":2,"type":"invoke","f":"send","value":{"value":"w2-5","partition":0},"node":1}
//! {"index":9,"time_ms":1210,"process":2,"type":"ok","f":"send","value":{"value":"w2-5","partition":0,"offset":41},"node":1}
//! ```
//!
//! # Rules the checkers rely on
//! - `index` strictly increases and `time_ms` never decreases along the file.
//! - A client process runs one operation at a time: an `invoke` is followed by
//!   exactly one completion (`ok`, `fail` or `info`) of the same `f` from the
//!   same process, before that process invokes again.
//! - `fail` means the operation definitely did not take effect (the server
//!   rejected it); `info` means it may or may not have (a timeout, a lost
//!   connection). An invocation left without completion at the end of the
//!   history counts as `info`.
//! - **A process that gets `info` is retired**: it never invokes again; the
//!   runner continues with a fresh process id. Because the outcome of an `info`
//!   operation is open forever, a process reused after it would make every later
//!   per-process argument (one operation at a time, monotonic polls) unsound.
//!   [`History::new`] rejects a history that breaks this rule.
//! - Send values are unique (`"<writer>-<counter>"`): one value is invoked once,
//!   so a value read identifies the one send that wrote it.
//! - Nemesis events (and leader observations) come from the process
//!   `"nemesis"` and are always `type: "info"`, with no invocation.

mod builder;
mod jsonl;
mod ops;
mod validate;

pub use builder::HistoryBuilder;
pub use ops::{
    Call, FinalRead, GroupAssign, GroupOffsets, GroupPoll, LeaderEvent, Module, NemesisEvent,
    NodeId, Offset, Op, OpType, PartitionId, PipelineRead, Process, ReadCall, Record, SendCall,
    SmConsume, SmCreate, SmDelete, SmList,
};
pub use validate::{Outcome, Pair};

use std::path::PathBuf;

/// Why a history could not be read or is not well formed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot read history file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write history file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("history line {line}: not a valid operation: {source}")]
    Parse {
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("history op {index}: {reason}")]
    Malformed { index: u64, reason: String },
}

impl HistoryError {
    pub(crate) fn malformed(index: u64, reason: impl Into<String>) -> Self {
        HistoryError::Malformed {
            index,
            reason: reason.into(),
        }
    }
}

/// A validated history: the operations in file order, and each client
/// invocation paired with its completion.
#[derive(Debug, Clone, Default)]
pub struct History {
    ops: Vec<Op>,
    pairs: Vec<Pair>,
}

impl History {
    /// Validates `ops` against the rules in the module documentation and pairs
    /// every invocation with its completion.
    pub fn new(ops: Vec<Op>) -> Result<Self, HistoryError> {
        let pairs = validate::pair(&ops)?;
        Ok(History { ops, pairs })
    }

    /// All operations (client and nemesis), in history order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Client invocations with their completions, in invocation order.
    pub fn pairs(&self) -> &[Pair] {
        &self.pairs
    }

    /// The invocation of a pair.
    pub fn invoke(&self, pair: &Pair) -> &Op {
        &self.ops[pair.invoke]
    }

    /// The completion of a pair, if the history has one.
    pub fn completion(&self, pair: &Pair) -> Option<&Op> {
        pair.completion.map(|i| &self.ops[i])
    }

    /// The nemesis-process events (faults and leader observations), in order.
    pub fn nemesis_events(&self) -> impl Iterator<Item = &Op> {
        self.ops.iter().filter(|op| op.process == Process::Nemesis)
    }
}

impl History {
    /// The node that served a pair: the completion's `node`, else the invocation's.
    pub fn node_of(&self, pair: &Pair) -> Option<NodeId> {
        self.completion(pair)
            .and_then(|op| op.node)
            .or(self.invoke(pair).node)
    }

    /// The call carrying the results of a pair (the completion's, else the invocation's).
    pub fn result_call(&self, pair: &Pair) -> &Call {
        &self.completion(pair).unwrap_or(self.invoke(pair)).call
    }
}

#[cfg(test)]
mod tests;
