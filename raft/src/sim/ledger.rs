//! What the replicas applied and what the clients were told, and the checks
//! on them.
//!
//! Every command is a fresh u64 (a client's retry is a new command), so a
//! command seen at two indexes is Raft committing one entry twice, not a
//! client resending it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::log_store::{decode, encode};
use crate::{NodeId, ReplicatedState};

/// Violations kept per seed (the first ones tell the story).
const VIOLATIONS_MAX: usize = 20;

/// Shared by every replica of one seed and its clients; outlives crashes.
pub(super) struct Ledger {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The first command applied at each index, and by whom.
    at: BTreeMap<u64, (u64, NodeId)>,
    /// The index each command was applied at, and by whom.
    index_of: HashMap<u64, (u64, NodeId)>,
    /// (command, index it was applied at, node that answered).
    acked: Vec<(u64, u64, NodeId)>,
    acked_commands: HashMap<u64, u64>,
    /// Power cuts, and those that lost log indexes at which a write had been
    /// acknowledged before the cut.
    power_cuts: (u64, u64),
    /// Writes whose outcome the client never learned (timeout, crash).
    unknown: u64,
    /// Writes refused before they were proposed (not the leader).
    refused: u64,
    next_command: u64,
    violations: Vec<(Instant, String)>,
    /// (node, index, command) of each divergence reported, so a replica
    /// re-applying the same wrong entry after a restart is reported once.
    reported: HashSet<(NodeId, u64, u64)>,
}

impl Ledger {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn new_command(&self) -> u64 {
        let mut inner = self.lock();
        inner.next_command += 1;
        inner.next_command
    }

    pub(super) fn acked(&self, command: u64, index: u64, node: NodeId) {
        let mut inner = self.lock();
        inner.acked.push((command, index, node));
        inner.acked_commands.insert(command, index);
    }

    /// A power cut lost log indexes `lost` (if any) on one replica; returns
    /// at how many of them a write had been acknowledged (so the lost entry
    /// was that committed write). Losing those is what Raft must survive (a
    /// majority holds them), and what leader restore did not.
    pub(super) fn power_cut(&self, lost: Option<(u64, u64)>) -> usize {
        let mut inner = self.lock();
        let acked = lost.map_or(0, |(first, last)| {
            inner
                .acked
                .iter()
                .filter(|(_, i, _)| (first..=last).contains(i))
                .count()
        });
        inner.power_cuts.0 += 1;
        inner.power_cuts.1 += u64::from(acked > 0);
        acked
    }

    /// Power cuts, and those that cut acknowledged entries from the replica.
    pub(super) fn power_cuts(&self) -> (u64, u64) {
        self.lock().power_cuts
    }

    pub(super) fn unknown(&self) {
        self.lock().unknown += 1;
    }

    pub(super) fn refused(&self) {
        self.lock().refused += 1;
    }

    pub(super) fn acknowledged(&self) -> Vec<(u64, u64, NodeId)> {
        self.lock().acked.clone()
    }

    /// Writes acknowledged, of unknown outcome, refused.
    pub(super) fn counts(&self) -> (usize, u64, u64) {
        let inner = self.lock();
        (inner.acked.len(), inner.unknown, inner.refused)
    }

    pub(super) fn violation(&self, what: String) {
        let mut inner = self.lock();
        if inner.violations.len() < VIOLATIONS_MAX {
            inner.violations.push((Instant::now(), what));
        }
    }

    pub(super) fn violations(&self) -> Vec<(Instant, String)> {
        self.lock().violations.clone()
    }

    pub(super) fn has_violations(&self) -> bool {
        !self.lock().violations.is_empty()
    }

    /// `node` applied `command` at `index` (or holds it there from a
    /// snapshot): checks invariants 1 (one command per index, across replicas
    /// and across a replica's restarts) and 3 (one index per command).
    fn observe(&self, node: NodeId, index: u64, command: u64) {
        let mut problems = Vec::new();
        {
            let mut inner = self.lock();
            match inner.at.get(&index) {
                Some(&(first, by)) if first != command => {
                    if inner.reported.insert((node, index, command)) {
                        let acked = |c: u64| {
                            if inner.acked_commands.get(&c) == Some(&index) {
                                " (acknowledged)"
                            } else {
                                ""
                            }
                        };
                        problems.push(format!(
                            "index {index}: node {node} applied command {command}{}, node {by} \
                             had applied command {first}{} there",
                            acked(command),
                            acked(first)
                        ))
                    }
                }
                Some(_) => {}
                None => {
                    inner.at.insert(index, (command, node));
                }
            }
            match inner.index_of.get(&command) {
                Some(&(first, by)) if first != index => problems.push(format!(
                    "command {command} applied twice: at index {index} by node {node}, at \
                     index {first} by node {by}"
                )),
                Some(_) => {}
                None => {
                    inner.index_of.insert(command, (index, node));
                }
            }
        }
        for p in problems {
            self.violation(p);
        }
    }
}

/// A replica's state: index -> command of every command applied. What it
/// last synced survives a crash; the rest is lost with it, as the
/// [`ReplicatedState`] contract allows (openraft re-applies it from the log).
#[derive(Clone)]
pub(super) struct Rec {
    node: NodeId,
    state: Arc<Mutex<RecState>>,
    ledger: Arc<Ledger>,
}

struct RecState {
    live: BTreeMap<u64, u64>,
    synced: BTreeMap<u64, u64>,
    /// False from the crash on: a stopped replica applies and syncs nothing.
    powered: bool,
}

fn down() -> io::Error {
    io::Error::other("the replica is down (simulated crash)")
}

impl Rec {
    pub(super) fn new(node: NodeId, ledger: Arc<Ledger>) -> Self {
        Self::with(node, ledger, BTreeMap::new())
    }

    fn with(node: NodeId, ledger: Arc<Ledger>, live: BTreeMap<u64, u64>) -> Self {
        Self {
            node,
            state: Arc::new(Mutex::new(RecState {
                synced: live.clone(),
                live,
                powered: true,
            })),
            ledger,
        }
    }

    fn lock(&self) -> MutexGuard<'_, RecState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops this replica's state at the crash; returns a fresh state for
    /// the restarted replica holding what this one had synced.
    pub(super) fn crash(&self) -> Rec {
        let mut s = self.lock();
        s.powered = false;
        Self::with(self.node, self.ledger.clone(), s.synced.clone())
    }

    /// Index -> command of everything applied.
    pub(super) fn applied(&self) -> BTreeMap<u64, u64> {
        self.lock().live.clone()
    }
}

impl ReplicatedState for Rec {
    /// Answers with the index, so a client knows where its write landed.
    fn apply(&mut self, index: u64, command: &[u8]) -> io::Result<Vec<u8>> {
        let command = u64::from_be_bytes(
            command
                .try_into()
                .map_err(|_| io::Error::other("a command is 8 bytes"))?,
        );
        let mut s = self.lock();
        if !s.powered {
            return Err(down());
        }
        // Checked even when skipped below: what is re-applied after a
        // restart must be what was applied before it.
        self.ledger.observe(self.node, index, command);
        if s.live
            .last_key_value()
            .is_none_or(|(last, _)| index > *last)
        {
            s.live.insert(index, command);
        }
        Ok(index.to_be_bytes().to_vec())
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut s = self.lock();
        if !s.powered {
            return Err(down());
        }
        s.synced = s.live.clone();
        Ok(())
    }

    fn snapshot(&mut self) -> io::Result<Vec<u8>> {
        let entries: Vec<(u64, u64)> = self.lock().live.iter().map(|(i, c)| (*i, *c)).collect();
        encode(&entries)
    }

    fn install_snapshot(&mut self, data: &[u8]) -> io::Result<()> {
        let entries: Vec<(u64, u64)> = decode(data)?;
        let mut s = self.lock();
        if !s.powered {
            return Err(down());
        }
        for (index, command) in &entries {
            self.ledger.observe(self.node, *index, *command);
        }
        s.live = entries.into_iter().collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(rec: &mut Rec, index: u64, command: u64) {
        rec.apply(index, &command.to_be_bytes()).unwrap();
    }

    #[test]
    fn the_ledger_flags_two_commands_at_one_index_and_one_command_at_two() {
        let ledger = Ledger::new();
        let (mut a, mut b) = (Rec::new(1, ledger.clone()), Rec::new(2, ledger.clone()));
        apply(&mut a, 1, 10);
        apply(&mut b, 1, 10);
        assert!(!ledger.has_violations(), "{:?}", ledger.violations());
        apply(&mut a, 2, 11);
        apply(&mut b, 2, 12);
        apply(&mut b, 3, 10);
        let found: Vec<String> = ledger.violations().into_iter().map(|(_, v)| v).collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("index 2: node 2 applied command 12, node 1"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("command 10 applied twice: at index 3"),
            "{found:?}"
        );
    }

    #[test]
    fn a_crashed_replica_keeps_what_it_synced_and_is_checked_against_its_past() {
        let ledger = Ledger::new();
        let mut rec = Rec::new(1, ledger.clone());
        apply(&mut rec, 1, 10);
        rec.sync().unwrap();
        apply(&mut rec, 2, 11);
        let mut restarted = rec.crash();
        assert!(
            rec.clone().apply(3, &12u64.to_be_bytes()).is_err(),
            "a crashed replica applies nothing"
        );
        assert_eq!(restarted.applied(), BTreeMap::from([(1, 10)]));
        // Re-applying index 2 with another command is a divergence, even on
        // one replica.
        apply(&mut restarted, 2, 13);
        assert_eq!(ledger.violations().len(), 1, "{:?}", ledger.violations());
    }
}
