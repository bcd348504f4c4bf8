//! Convergence of the SmartModule store (a replicated map name -> module bytes).
//!
//! Order is the history's index order (the recorder's single clock). An
//! operation that did not definitely fail may have taken effect at any point
//! between its invocation and its completion (or, without a completion, any
//! time later), which is what the "could have followed" tests below encode.
//! Lists taken during the run may be stale (a node serves its own replica), so
//! presence and absence are judged on the final lists only; a phantom module is
//! wrong in any list.

use std::collections::{BTreeMap, BTreeSet};

use super::anomaly::Anomaly;
use crate::history::{Call, History, NodeId, Outcome};

/// A create or delete, with the history indexes bounding when it could act.
#[derive(Debug, Clone)]
struct Change<'h> {
    name: &'h str,
    /// `Some` for creates.
    hash: Option<&'h str>,
    outcome: Outcome,
    invoke: u64,
    /// Completion index; `u64::MAX` when the history ended first.
    end: u64,
}

/// One successful list: node, history index of its completion, name -> hash.
#[derive(Debug)]
struct Listing<'h> {
    node: Option<NodeId>,
    op: u64,
    is_final: bool,
    modules: BTreeMap<&'h str, &'h str>,
}

#[derive(Debug, Default)]
pub(crate) struct SmView<'h> {
    changes: Vec<Change<'h>>,
    listings: Vec<Listing<'h>>,
    /// Whether the history has any SmartModule operation at all.
    pub any: bool,
    /// Nodes whose final list was invoked but did not succeed.
    pub failed_finals: BTreeSet<NodeId>,
}

impl<'h> SmView<'h> {
    pub fn new(h: &'h History) -> Self {
        let mut v = SmView::default();
        for pair in h.pairs() {
            let invoke = h.invoke(pair).index;
            let end = h.completion(pair).map_or(u64::MAX, |op| op.index);
            match h.result_call(pair) {
                Call::SmCreate(c) => v.changes.push(Change {
                    name: &c.name,
                    hash: Some(&c.hash),
                    outcome: pair.outcome,
                    invoke,
                    end,
                }),
                Call::SmDelete(d) => v.changes.push(Change {
                    name: &d.name,
                    hash: None,
                    outcome: pair.outcome,
                    invoke,
                    end,
                }),
                Call::SmList(l) => {
                    let node = h.node_of(pair);
                    if pair.outcome != Outcome::Ok {
                        if let (true, Some(n)) = (l.is_final, node) {
                            v.failed_finals.insert(n);
                        }
                        continue;
                    }
                    if let (true, Some(n)) = (l.is_final, node) {
                        v.failed_finals.remove(&n);
                    }
                    v.listings.push(Listing {
                        node,
                        op: end,
                        is_final: l.is_final,
                        modules: l
                            .modules
                            .iter()
                            .flatten()
                            .map(|m| (m.name.as_str(), m.hash.as_str()))
                            .collect(),
                    });
                }
                _ => continue,
            }
            v.any = true;
        }
        v
    }

    /// The last successful final list of each node.
    fn finals(&self) -> BTreeMap<NodeId, &Listing<'h>> {
        self.listings
            .iter()
            .filter(|l| l.is_final)
            .filter_map(|l| l.node.map(|n| (n, l)))
            .collect()
    }

    pub fn has_finals(&self) -> bool {
        self.listings.iter().any(|l| l.is_final)
    }

    fn creates(&self) -> impl Iterator<Item = &Change<'h>> {
        self.changes.iter().filter(|c| c.hash.is_some())
    }

    fn deletes(&self) -> impl Iterator<Item = &Change<'h>> {
        self.changes.iter().filter(|c| c.hash.is_none())
    }
}

/// Every acknowledged create is in every node's final list with its hash,
/// unless a delete or another create of the name could have followed it.
pub(crate) fn missing(v: &SmView<'_>) -> Vec<Anomaly> {
    let finals = v.finals();
    let mut out = Vec::new();
    for c in v.creates().filter(|c| c.outcome == Outcome::Ok) {
        let hash = c.hash.unwrap_or_default();
        for (&node, list) in &finals {
            let found = list.modules.get(c.name).copied();
            if found == Some(hash) {
                continue;
            }
            let explained = match found {
                None => v
                    .deletes()
                    .any(|d| d.name == c.name && d.outcome != Outcome::Fail && d.end > c.invoke),
                Some(other) => v.creates().any(|c2| {
                    c2.name == c.name
                        && c2.hash == Some(other)
                        && c2.outcome != Outcome::Fail
                        && c2.end > c.invoke
                }),
            };
            if !explained {
                out.push(Anomaly::SmMissing {
                    name: c.name.to_string(),
                    hash: hash.to_string(),
                    create_op: c.end,
                    node,
                    found_hash: found.map(str::to_string),
                    list_op: list.op,
                });
            }
        }
    }
    out
}

/// Nothing whose deletion was acknowledged is in a final list, unless a create
/// of that name could have followed the delete.
pub(crate) fn reappeared(v: &SmView<'_>) -> Vec<Anomaly> {
    let finals = v.finals();
    let mut out = Vec::new();
    for d in v.deletes().filter(|d| d.outcome == Outcome::Ok) {
        let recreated = v
            .creates()
            .any(|c| c.name == d.name && c.outcome != Outcome::Fail && c.end > d.invoke);
        if recreated {
            continue;
        }
        for (&node, list) in &finals {
            if let Some(hash) = list.modules.get(d.name) {
                out.push(Anomaly::SmReappeared {
                    name: d.name.to_string(),
                    hash: hash.to_string(),
                    delete_op: d.end,
                    node,
                    list_op: list.op,
                });
            }
        }
    }
    out
}

/// No list (final or not) shows a module (name and hash) that no create
/// invoked, or whose every create definitely failed. Reported once per module.
pub(crate) fn phantoms(v: &SmView<'_>) -> Vec<Anomaly> {
    let mut reported = BTreeSet::new();
    let mut out = Vec::new();
    for list in &v.listings {
        for (&name, &hash) in &list.modules {
            let creates: Vec<&Change<'_>> = v
                .creates()
                .filter(|c| c.name == name && c.hash == Some(hash))
                .collect();
            if creates.iter().any(|c| c.outcome != Outcome::Fail) {
                continue;
            }
            if reported.insert((name, hash)) {
                out.push(Anomaly::SmPhantom {
                    name: name.to_string(),
                    hash: hash.to_string(),
                    node: list.node,
                    list_op: list.op,
                    failed_creates: creates.iter().map(|c| c.end).collect(),
                });
            }
        }
    }
    out
}

/// All nodes' final lists are equal.
pub(crate) fn divergent(v: &SmView<'_>) -> Vec<Anomaly> {
    let finals = v.finals();
    let names: BTreeSet<&str> = finals
        .values()
        .flat_map(|l| l.modules.keys().copied())
        .collect();
    names
        .into_iter()
        .filter_map(|name| {
            let hashes: BTreeMap<NodeId, Option<String>> = finals
                .iter()
                .map(|(&n, l)| (n, l.modules.get(name).map(|h| h.to_string())))
                .collect();
            let first = hashes.values().next();
            let agree = hashes.values().all(|h| Some(h) == first);
            (!agree).then(|| Anomaly::SmDivergent {
                name: name.to_string(),
                hashes,
            })
        })
        .collect()
}

/// Every post-heal consume through a module the node listed succeeded and let
/// through exactly the values expected of the module.
pub(crate) fn unusable(h: &History) -> Vec<Anomaly> {
    let mut out = Vec::new();
    for pair in h.pairs() {
        let Call::SmConsume(c) = h.result_call(pair) else {
            continue;
        };
        let Some(node) = h.node_of(pair) else {
            continue;
        };
        let done = h.completion(pair);
        let op = done.map_or(h.invoke(pair).index, |o| o.index);
        let got: Option<Vec<String>> = match (pair.outcome, &c.records) {
            (Outcome::Ok, Some(rs)) => Some(rs.iter().map(|r| r.value.clone()).collect()),
            _ => None,
        };
        if got.as_ref() == Some(&c.expect) {
            continue;
        }
        let error = match &got {
            Some(_) => None,
            None => Some(
                done.and_then(|o| o.error.clone())
                    .unwrap_or_else(|| "no completion".into()),
            ),
        };
        out.push(Anomaly::SmUnusable {
            module: c.module.clone(),
            node,
            op,
            expected: c.expect.clone(),
            got,
            error,
        });
    }
    out
}
