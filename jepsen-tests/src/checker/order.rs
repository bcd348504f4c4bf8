//! Order checks: consumers never see offsets go backwards, and offsets respect
//! real time (an acknowledged send precedes every send invoked after it).

use std::collections::{BTreeMap, HashMap};

use super::anomaly::{Anomaly, ReadAt};
use super::view::LogView;
use crate::history::{Call, History, Offset, Outcome, PartitionId, Process};

/// Offsets strictly increase within each `poll` and `read` response, and across
/// all polls of one consumer process on one partition. Retiring a process after
/// `info` is what makes the cross-poll rule sound: a fresh consumer starts anew.
pub fn monotonic_polls(h: &History) -> Vec<Anomaly> {
    // (process, partition) -> (last offset, history index of the poll that returned it)
    let mut last: HashMap<(Process, PartitionId), (Offset, u64)> = HashMap::new();
    let mut out = Vec::new();
    for pair in h.pairs() {
        if pair.outcome != Outcome::Ok {
            continue;
        }
        let Some(done) = h.completion(pair) else {
            continue;
        };
        let (r, across) = match &done.call {
            Call::Poll(r) => (r, true),
            Call::Read(r) => (r, false),
            _ => continue,
        };
        let key = (done.process, r.partition);
        let mut prev = if across {
            last.get(&key).copied()
        } else {
            None
        };
        for rec in r.records.iter().flatten() {
            if let Some((previous_offset, previous_op)) = prev
                && rec.offset <= previous_offset
            {
                out.push(Anomaly::NonMonotonicPoll {
                    process: done.process,
                    partition: r.partition,
                    previous_offset,
                    previous_op,
                    offset: rec.offset,
                    op: done.index,
                });
            }
            prev = Some((rec.offset, done.index));
        }
        if let (true, Some(p)) = (across, prev) {
            last.insert(key, p);
        }
    }
    out
}

/// If send A was acknowledged before send B was invoked (both to one
/// partition), then offset(A) < offset(B). One sweep over the history in index
/// order keeps, per partition, the highest offset acknowledged so far; each
/// send compares its own offset with that high-water mark as of its invocation.
pub(crate) fn realtime(v: &LogView<'_>) -> Vec<Anomaly> {
    enum Event<'h> {
        Invoke(&'h str),
        Ack(&'h str),
    }
    let mut events: Vec<(u64, Event<'_>)> = Vec::new();
    for s in v.acked() {
        events.push((s.invoke_op, Event::Invoke(s.value)));
        if let Some(c) = s.complete_op {
            events.push((c, Event::Ack(s.value)));
        }
    }
    events.sort_by_key(|(index, _)| *index);

    let mut high: BTreeMap<PartitionId, ReadAt> = BTreeMap::new();
    let mut before_invoke: HashMap<&str, ReadAt> = HashMap::new();
    let mut out = Vec::new();
    for (_, event) in events {
        match event {
            Event::Invoke(value) => {
                let s = &v.sends[value];
                if let Some(h) = high.get(&s.partition) {
                    before_invoke.insert(value, h.clone());
                }
            }
            Event::Ack(value) => {
                let s = &v.sends[value];
                let Some(offset) = s.offset else { continue };
                let me = ReadAt {
                    offset,
                    value: value.to_string(),
                    op: s.complete_op.unwrap_or(s.invoke_op),
                };
                if let Some(earlier) = before_invoke.get(value)
                    && offset <= earlier.offset
                {
                    out.push(Anomaly::RealtimeViolation {
                        partition: s.partition,
                        earlier: earlier.clone(),
                        later: me.clone(),
                    });
                }
                let entry = high.entry(s.partition).or_insert_with(|| me.clone());
                if me.offset > entry.offset {
                    *entry = me;
                }
            }
        }
    }
    out
}
