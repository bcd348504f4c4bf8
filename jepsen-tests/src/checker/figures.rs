//! The figures every run reports besides its anomalies: operations by outcome,
//! faults by kind, leader changes, availability during and outside faults,
//! send latency and the time to recover after each heal.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::history::{Call, History, NodeId, Outcome, Pair, PartitionId};

/// Operations by outcome. An invocation without completion counts as `info`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpCounts {
    pub invoke: u64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
}

impl OpCounts {
    fn add(&mut self, outcome: Outcome) {
        self.invoke += 1;
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::Fail => self.fail += 1,
            Outcome::Info => self.info += 1,
        }
    }
}

/// Counts client operations, in all and by `f`.
pub(crate) fn op_counts(h: &History) -> (OpCounts, BTreeMap<String, OpCounts>) {
    let mut all = OpCounts::default();
    let mut by_f: BTreeMap<String, OpCounts> = BTreeMap::new();
    for pair in h.pairs() {
        all.add(pair.outcome);
        by_f.entry(f_name(h, pair)).or_default().add(pair.outcome);
    }
    (all, by_f)
}

fn f_name(h: &History, pair: &Pair) -> String {
    match &h.invoke(pair).call {
        Call::SmList(l) if l.is_final => "sm_list_final".into(),
        call => call.f().into(),
    }
}

/// Client operations of the workload, i.e. not the post-heal drain.
fn workload(h: &History) -> impl Iterator<Item = &Pair> {
    h.pairs().iter().filter(|p| !h.invoke(p).call.is_final())
}

/// Successful workload operations, for the "too few operations" rule.
pub(crate) fn workload_ok(h: &History) -> u64 {
    workload(h).filter(|p| p.outcome == Outcome::Ok).count() as u64
}

/// Sends of the workload: invoked, and acknowledged.
pub(crate) fn sends(h: &History) -> (u64, u64) {
    let sends: Vec<_> = workload(h)
        .filter(|p| h.invoke(p).call.f() == "send")
        .collect();
    let acked = sends.iter().filter(|p| p.outcome == Outcome::Ok).count();
    (sends.len() as u64, acked as u64)
}

/// The suffix under which [`faults`] counts the steps of a kind that never
/// touched a node (`crash_at_not_reached`: a crash point not passed;
/// `clock_not_reached`: no target asked for the time): not faults.
pub(crate) const NOT_REACHED_SUFFIX: &str = "_not_reached";

/// What a nemesis's stop detail says when its fault was not reached within
/// the hold (the nemesis writes it with this very constant).
pub(crate) const NOT_REACHED: &str = " not reached within ";

/// Faults injected, by kind (number of `start` events), but for steps whose
/// stop says they were not reached, counted apart as `KIND_not_reached`.
pub(crate) fn faults(h: &History) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    let mut not_reached: BTreeMap<String, u64> = BTreeMap::new();
    for op in h.nemesis_events() {
        match &op.call {
            Call::Start(e) => *out.entry(e.fault.clone()).or_default() += 1,
            Call::Stop(e) if e.detail.as_deref().is_some_and(|d| d.contains(NOT_REACHED)) => {
                *not_reached.entry(e.fault.clone()).or_default() += 1;
            }
            _ => {}
        }
    }
    for (kind, missed) in not_reached {
        if let Some(n) = out.get_mut(&kind) {
            *n = n.saturating_sub(missed);
            if *n == 0 {
                out.remove(&kind);
            }
        }
        out.insert(format!("{kind}{NOT_REACHED_SUFFIX}"), missed);
    }
    out
}

/// Whether `faults` (from [`faults`]) holds a fault that was injected.
pub(crate) fn any_injected(faults: &BTreeMap<String, u64>) -> bool {
    faults.keys().any(|k| !k.ends_with(NOT_REACHED_SUFFIX))
}

/// Faults that could not be injected, with why.
pub(crate) fn unavailable(h: &History) -> Vec<String> {
    h.nemesis_events()
        .filter_map(|op| match &op.call {
            Call::Unavailable(e) => Some(match &e.detail {
                Some(d) => format!("{}: {d}", e.fault),
                None => e.fault.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// Times (ms) during which at least one fault was active: `[start, end)`.
/// A fault never stopped lasts until the end of the history.
pub(crate) fn fault_windows(h: &History) -> Vec<(u64, u64)> {
    let mut active: HashMap<&str, u64> = HashMap::new();
    let mut windows = Vec::new();
    let mut open: Option<u64> = None;
    for op in h.nemesis_events() {
        match &op.call {
            Call::Start(e) => {
                *active.entry(e.fault.as_str()).or_default() += 1;
                open.get_or_insert(op.time_ms);
            }
            Call::Stop(e) => {
                if let Some(n) = active.get_mut(e.fault.as_str()) {
                    *n = n.saturating_sub(1);
                }
                if active.values().all(|n| *n == 0)
                    && let Some(start) = open.take()
                {
                    windows.push((start, op.time_ms));
                }
            }
            _ => {}
        }
    }
    if let Some(start) = open {
        let end = h.ops().last().map_or(start, |op| op.time_ms) + 1;
        windows.push((start, end));
    }
    windows
}

/// Leader changes seen in `leader` events: per group (partition or controller),
/// each observation of a leader different from the previous one observed.
pub(crate) fn leader_changes(h: &History) -> u64 {
    let mut last: HashMap<Option<PartitionId>, NodeId> = HashMap::new();
    let mut changes = 0;
    for op in h.nemesis_events() {
        if let Call::Leader(e) = &op.call
            && let Some(leader) = e.leader
            && last
                .insert(e.partition, leader)
                .is_some_and(|prev| prev != leader)
        {
            changes += 1;
        }
    }
    changes
}

/// Share of workload operations that succeeded, among those invoked in a period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Period {
    pub invoked: u64,
    pub ok: u64,
    /// `ok / invoked` in percent; `None` when nothing was invoked.
    pub ok_pct: Option<f64>,
}

/// Availability during faults and outside them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Availability {
    pub during_faults: Period,
    pub outside_faults: Period,
}

/// Classifies each workload operation by its invocation time: an operation
/// started while a fault was active measures availability under that fault,
/// even if it completed after the heal.
pub(crate) fn availability(h: &History, windows: &[(u64, u64)]) -> Availability {
    let mut a = Availability::default();
    for pair in workload(h) {
        let t = h.invoke(pair).time_ms;
        let period = if windows.iter().any(|(s, e)| *s <= t && t < *e) {
            &mut a.during_faults
        } else {
            &mut a.outside_faults
        };
        period.invoked += 1;
        period.ok += u64::from(pair.outcome == Outcome::Ok);
    }
    for p in [&mut a.during_faults, &mut a.outside_faults] {
        p.ok_pct = (p.invoked > 0).then(|| 100.0 * p.ok as f64 / p.invoked as f64);
    }
    a
}

/// Latency of acknowledged sends, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latency {
    pub samples: u64,
    pub send_p50: Option<u64>,
    pub send_p99: Option<u64>,
}

/// The `q`-th percentile (nearest rank) of sorted samples.
fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn send_latencies(h: &History) -> Vec<u64> {
    let mut l: Vec<u64> = workload(h)
        .filter(|p| p.outcome == Outcome::Ok && matches!(h.invoke(p).call, Call::Send(_)))
        .filter_map(|p| Some(h.completion(p)?.time_ms - h.invoke(p).time_ms))
        .collect();
    l.sort_unstable();
    l
}

pub(crate) fn latency(h: &History) -> Latency {
    let l = send_latencies(h);
    Latency {
        samples: l.len() as u64,
        send_p50: percentile(&l, 50.0),
        send_p99: percentile(&l, 99.0),
    }
}

/// For each heal (end of a fault window), the time until the first send
/// invoked at or after it was acknowledged; `None` if none was.
pub(crate) fn recovery(h: &History, windows: &[(u64, u64)]) -> Vec<Option<u64>> {
    let history_end = h.ops().last().map_or(0, |op| op.time_ms);
    windows
        .iter()
        .filter(|(_, heal)| *heal <= history_end)
        .map(|&(_, heal)| {
            workload(h)
                .filter(|p| p.outcome == Outcome::Ok && matches!(h.invoke(p).call, Call::Send(_)))
                .filter(|p| h.invoke(p).time_ms >= heal)
                .filter_map(|p| h.completion(p).map(|c| c.time_ms - heal))
                .min()
        })
        .collect()
}

/// Every node the history names (clients' nodes, final reads, nemesis targets, leaders).
pub(crate) fn nodes(h: &History) -> BTreeSet<NodeId> {
    let mut out = BTreeSet::new();
    for op in h.ops() {
        out.extend(op.node);
        match &op.call {
            Call::Start(e) | Call::Stop(e) | Call::Unavailable(e) => out.extend(&e.nodes),
            Call::Leader(e) => out.extend(e.leader),
            _ => {}
        }
    }
    out
}

/// Nodes with at least one successful final read or final SmartModule list.
pub(crate) fn drained_nodes(h: &History) -> BTreeSet<NodeId> {
    h.pairs()
        .iter()
        .filter(|p| p.outcome == Outcome::Ok && h.invoke(p).call.is_final())
        .filter_map(|p| h.node_of(p))
        .collect()
}

/// Duration of the history in ms (first to last event).
pub(crate) fn duration_ms(h: &History) -> u64 {
    match (h.ops().first(), h.ops().last()) {
        (Some(a), Some(b)) => b.time_ms - a.time_ms,
        _ => 0,
    }
}
