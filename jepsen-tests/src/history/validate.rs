//! Well-formedness of a history and the pairing of invocations with completions.
//!
//! The checkers assume the rules of the module documentation of
//! [`crate::history`]; checking them once here keeps every checker simple and
//! turns a broken recorder into a clear error instead of a false anomaly.

use std::collections::{HashMap, HashSet};

use super::{Call, HistoryError, Op, OpType, Process};

/// How a client operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Ok,
    /// Definitely did not take effect.
    Fail,
    /// May or may not have taken effect: an `info` completion, or none at all
    /// (the history ended first).
    Info,
}

/// A client invocation and its completion, as positions in [`super::History::ops`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    pub invoke: usize,
    pub completion: Option<usize>,
    pub outcome: Outcome,
}

/// Checks the history rules and pairs every invocation with its completion.
pub(super) fn pair(ops: &[Op]) -> Result<Vec<Pair>, HistoryError> {
    let mut pairs: Vec<Pair> = Vec::new();
    // process -> position in `pairs` of its outstanding invocation
    let mut open: HashMap<u64, usize> = HashMap::new();
    let mut retired: HashSet<u64> = HashSet::new();
    let mut send_values: HashSet<&str> = HashSet::new();
    let mut last: Option<&Op> = None;

    for (pos, op) in ops.iter().enumerate() {
        let bad = |reason: String| Err(HistoryError::malformed(op.index, reason));
        if let Some(prev) = last {
            if op.index <= prev.index {
                return bad(format!("index does not increase (previous {})", prev.index));
            }
            if op.time_ms < prev.time_ms {
                return bad(format!(
                    "time_ms goes back from {} to {}",
                    prev.time_ms, op.time_ms
                ));
            }
        }
        last = Some(op);

        let process = match op.process {
            Process::Nemesis => {
                if op.kind != OpType::Info || !op.call.is_nemesis() {
                    return bad(format!(
                        "the nemesis records only info events (start, stop, unavailable, \
                         leader), not {:?} {}",
                        op.kind,
                        op.call.f()
                    ));
                }
                continue;
            }
            Process::Client(p) => p,
        };
        if op.call.is_nemesis() {
            return bad(format!(
                "client process {process} records nemesis f {}",
                op.call.f()
            ));
        }
        if retired.contains(&process) {
            return bad(format!(
                "process {process} got info earlier and is retired; use a fresh process id"
            ));
        }

        match op.kind {
            OpType::Invoke => {
                if open.contains_key(&process) {
                    return bad(format!(
                        "process {process} invokes while its previous operation is open"
                    ));
                }
                match &op.call {
                    Call::Send(s) if !send_values.insert(s.value.as_str()) => {
                        return bad(format!("send value {:?} invoked twice", s.value));
                    }
                    Call::FinalRead(_) if op.node.is_none() => {
                        return bad("final_read without node".into());
                    }
                    Call::SmList(l) if l.is_final && op.node.is_none() => {
                        return bad("final sm_list without node".into());
                    }
                    Call::SmConsume(_) if op.node.is_none() => {
                        return bad("sm_consume without node".into());
                    }
                    _ => {}
                }
                open.insert(process, pairs.len());
                pairs.push(Pair {
                    invoke: pos,
                    completion: None,
                    outcome: Outcome::Info,
                });
            }
            kind => {
                let Some(p) = open.remove(&process) else {
                    return bad(format!("process {process} completes without an invocation"));
                };
                let invoke = &ops[pairs[p].invoke];
                if let Err(reason) = same_call(&invoke.call, &op.call) {
                    return bad(format!(
                        "completion does not match invocation {}: {reason}",
                        invoke.index
                    ));
                }
                if kind == OpType::Ok
                    && let Some(missing) = missing_result(&op.call)
                {
                    return bad(format!("ok {} without {missing}", op.call.f()));
                }
                if let Call::FinalRead(r) = &op.call
                    && r.not_replica
                    && (kind != OpType::Ok || r.records.is_some())
                {
                    return bad(
                        "not_replica is only an ok final_read's answer, and carries no records"
                            .into(),
                    );
                }
                pairs[p].completion = Some(pos);
                pairs[p].outcome = match kind {
                    OpType::Ok => Outcome::Ok,
                    OpType::Fail => Outcome::Fail,
                    _ => {
                        retired.insert(process);
                        Outcome::Info
                    }
                };
            }
        }
    }
    Ok(pairs)
}

/// A completion must be of the same `f` and the same arguments as its invocation.
fn same_call(invoke: &Call, done: &Call) -> Result<(), String> {
    let same = match (invoke, done) {
        (Call::Send(a), Call::Send(b)) => a.value == b.value && a.partition == b.partition,
        (Call::Poll(a), Call::Poll(b)) | (Call::Read(a), Call::Read(b)) => {
            a.partition == b.partition && a.offset == b.offset
        }
        (Call::FinalRead(a), Call::FinalRead(b)) => a.partition == b.partition,
        (Call::SmCreate(a), Call::SmCreate(b)) => a == b,
        (Call::SmDelete(a), Call::SmDelete(b)) => a == b,
        (Call::SmList(a), Call::SmList(b)) => a.is_final == b.is_final,
        (Call::GroupPoll(a), Call::GroupPoll(b)) => {
            a.member == b.member && a.partition == b.partition && a.is_final == b.is_final
        }
        (Call::GroupOffsets(_), Call::GroupOffsets(_)) => true,
        (Call::PipelineRead(a), Call::PipelineRead(b)) => a.partition == b.partition,
        (Call::GroupAssign(a), Call::GroupAssign(b)) => a == b,
        (Call::SmConsume(a), Call::SmConsume(b)) => {
            a.module == b.module
                && a.topic == b.topic
                && a.partition == b.partition
                && a.expect == b.expect
        }
        _ => return Err(format!("f {} completes f {}", done.f(), invoke.f())),
    };
    if same {
        Ok(())
    } else {
        Err("different arguments".into())
    }
}

/// The result field an `ok` completion must carry, if it is missing.
fn missing_result(call: &Call) -> Option<&'static str> {
    match call {
        Call::Send(s) if s.offset.is_none() => Some("offset"),
        Call::Poll(r) | Call::Read(r) if r.records.is_none() => Some("records"),
        Call::FinalRead(r) if r.records.is_none() && !r.not_replica => {
            Some("records (or not_replica)")
        }
        Call::SmList(l) if l.modules.is_none() => Some("modules"),
        Call::SmConsume(c) if c.records.is_none() => Some("records"),
        Call::GroupPoll(g) if g.records.is_none() => Some("records"),
        Call::GroupOffsets(g) if g.offsets.is_none() => Some("offsets"),
        Call::PipelineRead(r) if r.source.is_none() || r.derived.is_none() => {
            Some("source and derived")
        }
        _ => None,
    }
}
