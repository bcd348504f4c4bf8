//! A seed's fault schedule, drawn in full before anything runs, so that it is
//! a pure function of the seed: the same seed always plans the same faults at
//! the same offsets. Which node a role-based target ("the leader") names is
//! only known when the fault fires; the run's trace records it.

use std::fmt;
use std::time::Duration;

use crate::NodeId;

/// How long faults are injected; then the network heals, every node is up
/// again and the group must converge.
pub(super) const FAULT_PHASE: Duration = Duration::from_millis(1500);

/// How long a power cut at a delete waits for one before it cuts anyway.
pub(super) const AT_DELETE_WAIT: Duration = Duration::from_millis(400);

/// SplitMix64: small, and stable across releases (a dependency's generator
/// could change its stream and silently change what a seed replays).
#[derive(Clone, Debug)]
pub(super) struct Rng(u64);

/// SplitMix64's increment.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// MurmurHash3's 64-bit finalizer (a bijection).
fn fmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    z = (z ^ (z >> 33)).wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    z ^ (z >> 33)
}

impl Rng {
    /// Stream `stream` of `seed`: the streams of one seed (schedule, network,
    /// each client) start at unrelated states, so drawing more from one never
    /// shifts another.
    pub(super) fn derive(seed: u64, stream: u64) -> Rng {
        Rng(fmix64(fmix64(seed) ^ fmix64(stream.wrapping_add(GAMMA))))
    }

    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub(super) fn between(&mut self, lo: u64, hi: u64) -> u64 {
        debug_assert!(lo <= hi);
        lo + self.next() % (hi - lo + 1)
    }

    pub(super) fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }
}

/// Whom a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Target {
    Node(NodeId),
    /// The node that leads when the fault fires (the highest term's leader
    /// among the nodes that are up), or `or` if none does.
    Leader {
        or: NodeId,
    },
    /// The node whose fsyncs the schedule last held back ([`Fault::HoldSyncs`]),
    /// or `or` if none: how an episode crashes the very leader it slowed.
    Held {
        or: NodeId,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Fault {
    /// Every message is lost with this probability and otherwise delayed by
    /// up to `delay_max_ms` (which reorders messages that overtake others).
    Weather {
        drop_percent: u64,
        delay_max_ms: u64,
    },
    /// Cuts every link to and from the target.
    Isolate(Target),
    /// Cuts the link from `from` to `to` only.
    CutOneWay { from: NodeId, to: NodeId },
    /// Restores every link.
    Heal,
    /// Every group-commit fsync of the target waits `ms` first (0 ends it):
    /// its log tail stays volatile while the followers fsync theirs.
    HoldSyncs { target: Target, ms: u64 },
    /// Cuts the target's power: it loses every log entry and the commit
    /// point that no completed fsync covered, and restarts `down_ms` later.
    /// With `at_delete`, the cut waits (up to `AT_DELETE_WAIT`) for the
    /// target's next delete of log entries and undoes it (see the power
    /// model in `log_store/power_loss.rs`).
    PowerLoss {
        target: Target,
        down_ms: u64,
        at_delete: bool,
    },
    /// Kills the target's process (what it wrote survives in the page
    /// cache) and restarts it `down_ms` later.
    Kill { target: Target, down_ms: u64 },
}

#[derive(Clone, Debug)]
pub(super) struct Event {
    pub(super) at: Duration,
    pub(super) fault: Fault,
}

#[derive(Clone, Debug)]
pub(super) struct Schedule {
    pub(super) seed: u64,
    pub(super) nodes: Vec<NodeId>,
    /// Fsyncs and group commits happen; messages are lost with this
    /// probability and delayed up to this much from the start.
    pub(super) weather: (u64, u64),
    /// Sorted by time.
    pub(super) events: Vec<Event>,
}

impl Schedule {
    pub(super) fn generate(seed: u64) -> Self {
        let mut rng = Rng::derive(seed, 0);
        let mut at_delete_rng = Rng::derive(seed, 2);
        let count = if rng.percent(25) { 5 } else { 3 };
        let nodes: Vec<NodeId> = (1..=count).collect();
        let node = |rng: &mut Rng| rng.between(1, count);
        let weather = (rng.between(0, 3), rng.between(0, 8));
        let phase = FAULT_PHASE.as_millis() as u64;
        let mut events = Vec::new();
        let mut push = |at: u64, fault: Fault| {
            events.push(Event {
                at: Duration::from_millis(at),
                fault,
            })
        };
        let mut t = rng.between(50, 150);
        while t < phase {
            let or = node(&mut rng);
            let anyone = |rng: &mut Rng| {
                if rng.percent(50) {
                    Target::Leader { or }
                } else {
                    Target::Node(node(rng))
                }
            };
            match rng.next() % 100 {
                // The fault that made a power-cut leader reuse log ids: its
                // fsyncs lag, the followers acknowledge its tail, power goes
                // before its own fsync, and it is back before an election.
                0..=34 => {
                    let hold = rng.between(60, 300);
                    push(
                        t,
                        Fault::HoldSyncs {
                            target: Target::Leader { or },
                            ms: hold,
                        },
                    );
                    let down_ms = rng.between(0, 150);
                    push(
                        t + rng.between(20, hold),
                        Fault::PowerLoss {
                            target: Target::Held { or },
                            down_ms,
                            at_delete: false,
                        },
                    );
                }
                35..=49 => {
                    let target = anyone(&mut rng);
                    let down_ms = rng.between(0, 400);
                    // Drawn from a stream of its own, so the schedules
                    // seeds planned before it are unchanged otherwise.
                    let at_delete = at_delete_rng.percent(50);
                    push(
                        t,
                        Fault::PowerLoss {
                            target,
                            down_ms,
                            at_delete,
                        },
                    );
                }
                50..=57 => {
                    let target = anyone(&mut rng);
                    let down_ms = rng.between(0, 400);
                    push(t, Fault::Kill { target, down_ms });
                }
                58..=72 => {
                    push(t, Fault::Isolate(anyone(&mut rng)));
                    push(t + rng.between(100, 600), Fault::Heal);
                }
                73..=82 => {
                    let from = node(&mut rng);
                    let to = (from - 1 + rng.between(1, count - 1)) % count + 1;
                    push(t, Fault::CutOneWay { from, to });
                    push(t + rng.between(100, 500), Fault::Heal);
                }
                83..=92 => push(
                    t,
                    Fault::Weather {
                        drop_percent: rng.between(0, 15),
                        delay_max_ms: rng.between(0, 25),
                    },
                ),
                // A slow disk is a node's, not a role's: the same node
                // recovers.
                _ => {
                    let target = Target::Node(node(&mut rng));
                    push(
                        t,
                        Fault::HoldSyncs {
                            target,
                            ms: rng.between(10, 150),
                        },
                    );
                    push(
                        t + rng.between(100, 400),
                        Fault::HoldSyncs { target, ms: 0 },
                    );
                }
            }
            t += rng.between(60, 300);
        }
        // The end of the phase heals everything anyway.
        events.retain(|e| e.at < FAULT_PHASE);
        events.sort_by_key(|e| e.at);
        Schedule {
            seed,
            nodes,
            weather,
            events,
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "schedule of seed {} ({} nodes; messages lost {}%, delayed up to {} ms at start):",
            self.seed,
            self.nodes.len(),
            self.weather.0,
            self.weather.1
        )?;
        for e in &self.events {
            writeln!(f, "  {:>5} ms  {:?}", e.at.as_millis(), e.fault)?;
        }
        write!(
            f,
            "  {:>5} ms  heal, calm, release fsyncs, every node up; quiet until converged",
            FAULT_PHASE.as_millis()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_plans_the_same_faults_and_seeds_differ() {
        let plan = |seed| format!("{}", Schedule::generate(seed));
        assert_eq!(plan(7), plan(7));
        let distinct: std::collections::BTreeSet<String> = (0..20).map(plan).collect();
        assert_eq!(distinct.len(), 20, "20 seeds, 20 different schedules");
    }

    #[test]
    fn one_way_cuts_join_two_different_nodes() {
        for seed in 0..200 {
            let s = Schedule::generate(seed);
            for e in &s.events {
                if let Fault::CutOneWay { from, to } = e.fault {
                    assert_ne!(from, to, "seed {seed}");
                    assert!(
                        s.nodes.contains(&from) && s.nodes.contains(&to),
                        "seed {seed}"
                    );
                }
            }
        }
    }
}
