//! The fault schedule: which faults a run injects, when, and for how long,
//! drawn from the run's seed so `--seed N` replays the same schedule.
//!
//! `--nemesis` is a comma-separated list of `family[:variant]`; a family alone
//! means all its variants. Each step of the schedule picks one of the listed
//! variants. Which node is "one" or which nodes form a majority is drawn when
//! the step runs, from a generator the schedule forked for that step, so it
//! replays too; only "leader" depends on what the cluster says at that moment.

use std::fmt;
use std::time::Duration;

use anyhow::bail;

use super::rng::Rng;
use crate::history::NodeId;

/// Which nodes a kill, pause or power loss hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    One,
    /// The leader of partition 0 as last observed (a random node if unknown).
    Leader,
    Minority,
    Majority,
    All,
}

/// The shape of a network partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// One node cannot talk to any other, both ways.
    IsolateOne,
    /// The leader of partition 0 is isolated.
    IsolateLeader,
    /// A minority and a majority, both ways.
    Halves,
    /// A minority's packets do not reach the majority; the majority's reach it.
    OneWay,
    /// Two sides that cannot talk, and one node that talks to both.
    Bridge,
    /// Every node sees a majority, but no two nodes the same majority (4+ nodes;
    /// with fewer it is a bridge).
    Ring,
}

/// How a segment or index file of a stopped minority node is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    Truncate,
    BitFlip,
}

/// One kind of fault the nemesis can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Kill(Target),
    Pause(Target),
    Partition(Cut),
    PowerLoss(Target),
    Corruption(Damage),
    /// Pause one node and kill another at the same time.
    PauseKill,
    /// A partition and, inside it, a killed node.
    PartKill(Cut),
    /// A random partition moved to another set of 3 nodes (4+ nodes).
    Membership,
    /// A move, and during it a random node killed (restarted after the hold).
    MembershipKill,
    /// A share of the packets into and out of the target nodes dropped at
    /// random (theirs with each other and with clients alike), the share
    /// drawn per step between [`LOSS_PERCENT_MIN`] and [`LOSS_PERCENT_MAX`]:
    /// every exchange then meets retransmissions, late answers and deadlines
    /// that expire with the request possibly applied.
    Loss(Target),
    /// A node (one at random, or the leader) aborts at a named crash point
    /// ([`sluice_crashpoints::POINTS`]), then half the time also loses what
    /// it had not fsynced, and is restarted after the hold.
    CrashAt(&'static str),
    /// The target nodes' disks filled (a ballast file as large as the room
    /// left on each node's own tmpfs), emptied after the hold; a node that
    /// stopped meanwhile (its Raft log could not write) is started again.
    DiskFull(Target),
    /// The target nodes' wall clocks stepped, each by its own offset (from
    /// tens of ms to years, either way: `clock::draw_offset_ms`), and set
    /// right after the hold; their monotonic clocks run true (see
    /// `run/clock.rs`). Nothing that decides what is kept may depend on a
    /// node's wall clock.
    Clock(Target),
    /// The UDP packets into the target nodes (from peers and clients) held
    /// back, each by the step's base delay (drawn between
    /// [`crate::run::delay::DELAY_MS_MIN`] and `DELAY_MS_MAX`) and up to
    /// half of it again, so they also arrive out of order.
    Delay(Target),
    /// The disks of the target nodes' Raft logs filled (each node's Raft log
    /// lives on a tmpfs of its own for this), emptied after the hold; a node
    /// that stopped meanwhile is started again. `disk-full` fills the disk of
    /// everything else, where the partitions' segments, which grow in steps
    /// the WAL does not (RocksDB reserves WAL room ahead), run out first and
    /// stop their replicas before the Raft log meets the full disk.
    LogDiskFull(Target),
}

/// Least share of packets, in percent, a `loss` step drops.
pub const LOSS_PERCENT_MIN: u64 = 5;
/// Largest share of packets, in percent, a `loss` step drops: more than a
/// third each way leaves the workload too few successful operations to
/// judge (the verdict would be `unknown`).
pub const LOSS_PERCENT_MAX: u64 = 35;

impl Fault {
    /// Whether it needs network rules (a network namespace and nftables).
    pub fn needs_network(&self) -> bool {
        matches!(
            self,
            Fault::Partition(_) | Fault::PartKill(_) | Fault::Loss(_) | Fault::Delay(_)
        )
    }

    /// Whether it needs each node's data on a file system of its own.
    pub fn needs_disks(&self) -> bool {
        matches!(self, Fault::DiskFull(_) | Fault::LogDiskFull(_))
    }

    /// Whether it needs each node's Raft log on a file system of its own.
    pub fn needs_log_disk(&self) -> bool {
        matches!(self, Fault::LogDiskFull(_))
    }

    /// Whether it needs the nodes started with libfaketime.
    pub fn needs_clock(&self) -> bool {
        matches!(self, Fault::Clock(_))
    }

    /// Whether it moves partitions between nodes (it needs 4+ nodes).
    pub fn is_membership(&self) -> bool {
        matches!(self, Fault::Membership | Fault::MembershipKill)
    }

    /// Its family, as `--nemesis` names it (one of [`FAMILIES`]).
    pub fn family(&self) -> &'static str {
        match self {
            Fault::Kill(_) => "kill",
            Fault::Pause(_) => "pause",
            Fault::Partition(_) => "partition",
            Fault::PowerLoss(_) => "power-loss",
            Fault::Corruption(_) => "corruption",
            Fault::PauseKill => "pause-kill",
            Fault::PartKill(_) => "part-kill",
            Fault::Membership => "membership",
            Fault::MembershipKill => "membership-kill",
            Fault::Loss(_) => "loss",
            Fault::CrashAt(_) => "crash-at",
            Fault::DiskFull(_) => "disk-full",
            Fault::Clock(_) => "clock",
            Fault::Delay(_) => "delay",
            Fault::LogDiskFull(_) => "log-disk-full",
        }
    }
}

/// Every nemesis family, in the order `--nemesis all` lists them (the order
/// matters: a step picks its fault by index, so reordering would change
/// every recorded seed's schedule; a family added later goes last, and
/// changes `all`'s schedules from then on: [`ADDED_IN_SESSION_27`] came
/// then, so a `run --nemesis all --seed S` recorded before replays with
/// `--nemesis all-before-loss`, one recorded before [`ADDED_IN_SESSION_28`]
/// with `--nemesis all-before-clock`, and one recorded before
/// [`ADDED_IN_SESSION_35`] with `--nemesis all-before-log-disk`).
pub const FAMILIES: [&str; 15] = [
    "kill",
    "pause",
    "partition",
    "power-loss",
    "corruption",
    "pause-kill",
    "part-kill",
    "membership",
    "membership-kill",
    "loss",
    "crash-at",
    "disk-full",
    "clock",
    "delay",
    "log-disk-full",
];

/// The families `all-before-loss` leaves out: `all` as seeds recorded before
/// session 27 used it.
pub const ADDED_IN_SESSION_27: [&str; 3] = ["loss", "crash-at", "disk-full"];

/// The families `all-before-clock` leaves out (and `all-before-loss` too).
pub const ADDED_IN_SESSION_28: [&str; 2] = ["clock", "delay"];

/// The family `all-before-log-disk` leaves out (and the older aliases too).
pub const ADDED_IN_SESSION_35: [&str; 1] = ["log-disk-full"];

/// Each alias of an older `all`, with the families added since it: an alias
/// leaves out its own additions and every later one.
const OLDER_ALLS: [(&str, &[&str]); 3] = [
    ("all-before-loss", &ADDED_IN_SESSION_27),
    ("all-before-clock", &ADDED_IN_SESSION_28),
    ("all-before-log-disk", &ADDED_IN_SESSION_35),
];

/// The families an `all` alias means on `nodes` nodes (`all`, or one of
/// `OLDER_ALLS`), or `None` if `item` is none.
pub fn all_alias(item: &str, nodes: u32) -> Option<Vec<&'static str>> {
    let mut listed = families(nodes);
    if item == "all" {
        return Some(listed);
    }
    let since = OLDER_ALLS.iter().position(|(alias, _)| *alias == item)?;
    for (_, added) in &OLDER_ALLS[since..] {
        listed.retain(|f| !added.contains(f));
    }
    Some(listed)
}

/// The families `--nemesis all` means on `nodes` nodes: every one of
/// [`FAMILIES`] but the membership changes below [`MEMBERSHIP_MIN_NODES`].
pub fn families(nodes: u32) -> Vec<&'static str> {
    FAMILIES
        .iter()
        .copied()
        .filter(|f| nodes >= MEMBERSHIP_MIN_NODES || !f.starts_with("membership"))
        .collect()
}

/// The fewest nodes a membership change needs: a replica set of 3 and a node
/// outside it to move to.
pub const MEMBERSHIP_MIN_NODES: u32 = 4;

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::One => "one",
            Target::Leader => "leader",
            Target::Minority => "minority",
            Target::Majority => "majority",
            Target::All => "all",
        })
    }
}

impl fmt::Display for Cut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cut::IsolateOne => "isolate-one",
            Cut::IsolateLeader => "isolate-leader",
            Cut::Halves => "halves",
            Cut::OneWay => "one-way",
            Cut::Bridge => "bridge",
            Cut::Ring => "ring",
        })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Kill(t) => write!(f, "kill:{t}"),
            Fault::Pause(t) => write!(f, "pause:{t}"),
            Fault::Partition(c) => write!(f, "partition:{c}"),
            Fault::PowerLoss(t) => write!(f, "power-loss:{t}"),
            Fault::Corruption(Damage::Truncate) => f.write_str("corruption:truncate"),
            Fault::Corruption(Damage::BitFlip) => f.write_str("corruption:bitflip"),
            Fault::PauseKill => f.write_str("pause-kill"),
            Fault::PartKill(c) => write!(f, "part-kill:{c}"),
            Fault::Membership => f.write_str("membership"),
            Fault::MembershipKill => f.write_str("membership-kill"),
            Fault::Loss(t) => write!(f, "loss:{t}"),
            Fault::CrashAt(point) => write!(f, "crash-at:{point}"),
            Fault::DiskFull(t) => write!(f, "disk-full:{t}"),
            Fault::Clock(t) => write!(f, "clock:{t}"),
            Fault::Delay(t) => write!(f, "delay:{t}"),
            Fault::LogDiskFull(t) => write!(f, "log-disk-full:{t}"),
        }
    }
}

const TARGETS: [Target; 4] = [Target::One, Target::Leader, Target::Majority, Target::All];
const CUTS: [Cut; 6] = [
    Cut::IsolateOne,
    Cut::IsolateLeader,
    Cut::Halves,
    Cut::OneWay,
    Cut::Bridge,
    Cut::Ring,
];

fn target(v: &str) -> Option<Target> {
    Some(match v {
        "one" => Target::One,
        "leader" => Target::Leader,
        "minority" => Target::Minority,
        "majority" => Target::Majority,
        "all" => Target::All,
        _ => return None,
    })
}

fn cut(v: &str) -> Option<Cut> {
    CUTS.iter().copied().find(|c| c.to_string() == v)
}

/// Parses `--nemesis`: e.g. `kill,pause:leader,partition:halves`, or `all`
/// (every fault a cluster of `nodes` allows: membership changes need
/// [`MEMBERSHIP_MIN_NODES`]; named explicitly with fewer nodes they are
/// `unavailable` at run time, which makes the verdict unknown).
pub fn parse_nemesis(list: &str, nodes: u32) -> anyhow::Result<Vec<Fault>> {
    let mut out: Vec<Fault> = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (family, variant) = match item.split_once(':') {
            Some((f, v)) => (f, Some(v)),
            None => (item, None),
        };
        let bad = || {
            anyhow::anyhow!(
                "unknown nemesis {item:?}: use kill, pause, power-loss [:one|leader|minority|majority|all], \
                 partition, part-kill [:isolate-one|isolate-leader|halves|one-way|bridge|ring], \
                 corruption [:truncate|bitflip], pause-kill, membership, membership-kill, \
                 loss [:one|leader|minority|majority|all], crash-at [:POINT: {}], \
                 disk-full [:one|leader|minority|majority|all], \
                 clock [:one|leader|minority|majority|all], \
                 delay [:one|leader|minority|majority|all], \
                 log-disk-full [:one|leader|minority|majority|all], \
                 or all (all-before-log-disk: as before session 35, all-before-clock: \
                 before 28, all-before-loss: before 27)",
                crash_point_names()
            )
        };
        let targets = |v: Option<&str>| -> anyhow::Result<Vec<Target>> {
            match v {
                None => Ok(TARGETS.to_vec()),
                Some(v) => Ok(vec![target(v).ok_or_else(bad)?]),
            }
        };
        let cuts = |v: Option<&str>| -> anyhow::Result<Vec<Cut>> {
            match v {
                None => Ok(CUTS.to_vec()),
                Some(v) => Ok(vec![cut(v).ok_or_else(bad)?]),
            }
        };
        let faults: Vec<Fault> = match family {
            "kill" => targets(variant)?.into_iter().map(Fault::Kill).collect(),
            "pause" => targets(variant)?.into_iter().map(Fault::Pause).collect(),
            "power-loss" => targets(variant)?
                .into_iter()
                .map(Fault::PowerLoss)
                .collect(),
            "partition" => cuts(variant)?.into_iter().map(Fault::Partition).collect(),
            "part-kill" => cuts(variant)?.into_iter().map(Fault::PartKill).collect(),
            "corruption" => match variant {
                None => vec![
                    Fault::Corruption(Damage::Truncate),
                    Fault::Corruption(Damage::BitFlip),
                ],
                Some("truncate") => vec![Fault::Corruption(Damage::Truncate)],
                Some("bitflip") => vec![Fault::Corruption(Damage::BitFlip)],
                Some(_) => return Err(bad()),
            },
            "pause-kill" if variant.is_none() => vec![Fault::PauseKill],
            "membership" if variant.is_none() => vec![Fault::Membership],
            "membership-kill" if variant.is_none() => vec![Fault::MembershipKill],
            "loss" => targets(variant)?.into_iter().map(Fault::Loss).collect(),
            "disk-full" => targets(variant)?.into_iter().map(Fault::DiskFull).collect(),
            "clock" => targets(variant)?.into_iter().map(Fault::Clock).collect(),
            "delay" => targets(variant)?.into_iter().map(Fault::Delay).collect(),
            "log-disk-full" => targets(variant)?
                .into_iter()
                .map(Fault::LogDiskFull)
                .collect(),
            "crash-at" => match variant {
                None => sluice_crashpoints::POINTS
                    .iter()
                    .map(|p| Fault::CrashAt(p.name))
                    .collect(),
                Some(v) => vec![Fault::CrashAt(
                    sluice_crashpoints::point(v).ok_or_else(bad)?.name,
                )],
            },
            "all" | "all-before-log-disk" | "all-before-clock" | "all-before-loss"
                if variant.is_none() =>
            {
                let listed = all_alias(family, nodes).unwrap_or_default();
                let mut all = parse_nemesis(&listed.join(","), nodes)?;
                all.retain(|f| !out.contains(f));
                all
            }
            _ => return Err(bad()),
        };
        for f in faults {
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    if out.is_empty() {
        bail!("--nemesis names no fault; e.g. --nemesis kill,pause");
    }
    Ok(out)
}

/// The crash points' names, `|`-separated, for messages.
pub fn crash_point_names() -> String {
    sluice_crashpoints::POINTS
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join("|")
}

/// One fault of the schedule.
#[derive(Debug, Clone)]
pub struct Step {
    /// When it starts, from the start of the workload.
    pub at: Duration,
    /// How long it lasts before the heal.
    pub hold: Duration,
    pub fault: Fault,
    /// Seed of this step's own choices (nodes, files, bytes).
    pub seed: u64,
}

/// Quiet time before the first fault, so the history shows the healthy cluster.
pub const WARMUP: Duration = Duration::from_secs(3);
/// Quiet time after the last heal, so recovery is measured.
pub const COOLDOWN: Duration = Duration::from_secs(4);

/// The schedule of a run of `duration`: faults of 2-6 s separated by 1.5-4 s of
/// quiet, from [`WARMUP`] until [`COOLDOWN`] before the end.
pub fn schedule(faults: &[Fault], duration: Duration, seed: u64) -> Vec<Step> {
    let mut rng = Rng::new(seed);
    let end = duration.saturating_sub(COOLDOWN).as_millis() as u64;
    let mut t = WARMUP.as_millis() as u64;
    let mut steps = Vec::new();
    if faults.is_empty() {
        return steps;
    }
    loop {
        let fault = *rng.pick(faults);
        let hold = rng.range(2_000, 6_000);
        let gap = rng.range(1_500, 4_000);
        let seed = rng.next_u64();
        if t + hold > end {
            // Squeeze in a short fault rather than none at all.
            if steps.is_empty() && t + 1_000 <= end {
                steps.push(Step {
                    at: Duration::from_millis(t),
                    hold: Duration::from_millis(end - t),
                    fault,
                    seed,
                });
            }
            break;
        }
        steps.push(Step {
            at: Duration::from_millis(t),
            hold: Duration::from_millis(hold),
            fault,
            seed,
        });
        t += hold + gap;
    }
    steps
}

/// The nodes a [`Target`] names among `1..=n`.
pub fn targets(target: Target, n: u32, leader: Option<NodeId>, rng: &mut Rng) -> Vec<NodeId> {
    let mut all: Vec<NodeId> = (1..=n).collect();
    rng.shuffle(&mut all);
    let count = match target {
        Target::One => 1,
        Target::Leader => {
            return vec![leader.filter(|l| (1..=n).contains(l)).unwrap_or(all[0])];
        }
        Target::Minority => ((n - 1) / 2).max(1),
        Target::Majority => n / 2 + 1,
        Target::All => n,
    } as usize;
    let mut picked = all[..count.min(all.len())].to_vec();
    picked.sort_unstable();
    picked
}

/// The directed links a [`Cut`] severs among nodes `1..=n`: `(from, to)` means
/// packets from `from` do not reach `to`. Also a short description.
pub fn cut_links(
    cut: Cut,
    n: u32,
    leader: Option<NodeId>,
    rng: &mut Rng,
) -> (Vec<(NodeId, NodeId)>, String) {
    let mut order: Vec<NodeId> = (1..=n).collect();
    rng.shuffle(&mut order);
    let both = |a: &[NodeId], b: &[NodeId]| -> Vec<(NodeId, NodeId)> {
        let mut links = Vec::new();
        for &x in a {
            for &y in b {
                links.push((x, y));
                links.push((y, x));
            }
        }
        links
    };
    let sorted = |v: &[NodeId]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v
    };
    let minority = ((n - 1) / 2).max(1) as usize;
    match cut {
        Cut::IsolateOne | Cut::IsolateLeader => {
            let x = match (cut, leader) {
                (Cut::IsolateLeader, Some(l)) if (1..=n).contains(&l) => l,
                _ => order[0],
            };
            let rest: Vec<NodeId> = (1..=n).filter(|y| *y != x).collect();
            (both(&[x], &rest), format!("{x} isolated from {rest:?}"))
        }
        Cut::Halves => {
            let (a, b) = order.split_at(minority);
            (both(a, b), format!("{:?} | {:?}", sorted(a), sorted(b)))
        }
        Cut::OneWay => {
            let (a, b) = order.split_at(minority);
            let links = a
                .iter()
                .flat_map(|&x| b.iter().map(move |&y| (x, y)))
                .collect();
            (
                links,
                format!("{:?} -/-> {:?} (the other way works)", sorted(a), sorted(b)),
            )
        }
        Cut::Ring if n >= 4 => {
            // Ring order; each node talks to those within `reach` positions.
            let reach = (n / 2).div_ceil(2) as usize;
            let len = order.len();
            let mut links = Vec::new();
            for i in 0..len {
                for j in 0..len {
                    let d = i.abs_diff(j);
                    let d = d.min(len - d);
                    if d > reach {
                        links.push((order[i], order[j]));
                    }
                }
            }
            (
                links,
                format!("ring {order:?}, each node reaches {reach} on each side"),
            )
        }
        Cut::Bridge | Cut::Ring => {
            let mid = order.len() / 2;
            let (left, rest) = order.split_at(mid);
            let (bridge, right) = rest.split_at(1);
            (
                both(left, right),
                format!(
                    "{:?} | {:?}, bridged by {}",
                    sorted(left),
                    sorted(right),
                    bridge[0]
                ),
            )
        }
    }
}

/// A replica set of `size` nodes among `1..=n` other than `current` (as a
/// set), drawn uniformly; sorted. `None` when no other set exists.
pub fn other_replica_set(
    current: &[NodeId],
    n: u32,
    size: usize,
    rng: &mut Rng,
) -> Option<Vec<NodeId>> {
    let mut now = current.to_vec();
    now.sort_unstable();
    let mut sets: Vec<Vec<NodeId>> = Vec::new();
    // Every subset of 1..=n (n <= 7) of the right size, in bitmask order.
    for mask in 0u32..(1 << n) {
        if mask.count_ones() as usize != size {
            continue;
        }
        let set: Vec<NodeId> = (1..=n).filter(|i| mask & (1 << (i - 1)) != 0).collect();
        if set != now {
            sets.push(set);
        }
    }
    (!sets.is_empty()).then(|| rng.pick(&sets).clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn a_seed_replays_its_schedule() {
        let faults = parse_nemesis("kill,pause,partition", 3).unwrap();
        let d = Duration::from_secs(60);
        let a = schedule(&faults, d, 42);
        let b = schedule(&faults, d, 42);
        assert!(a.len() >= 5, "{a:?}");
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert_ne!(format!("{a:?}"), format!("{:?}", schedule(&faults, d, 43)));
        for w in a.windows(2) {
            assert!(w[0].at + w[0].hold < w[1].at, "faults overlap: {w:?}");
        }
        let last = a.last().unwrap();
        assert!(last.at + last.hold <= d - COOLDOWN);
    }

    /// CI's smoke matrix relies on it (tests/smoke.rs, `power_loss_of_all_twice`):
    /// `--nemesis power-loss --duration 30 --seed 6` cuts the power of one
    /// node, then of all nodes twice, the two less than 10 s apart — the
    /// schedule that exposed lost acknowledged writes.
    #[test]
    fn seed_6_loses_all_power_twice_within_10_s() {
        let faults = parse_nemesis("power-loss", 3).unwrap();
        let s = schedule(&faults, Duration::from_secs(30), 6);
        let kinds: Vec<String> = s.iter().map(|s| s.fault.to_string()).collect();
        assert_eq!(
            kinds,
            ["power-loss:one", "power-loss:all", "power-loss:all"],
            "{s:?}"
        );
        assert!(s[2].at - s[1].at < Duration::from_secs(10), "{s:?}");
    }

    #[test]
    fn short_runs_still_get_a_fault() {
        let faults = parse_nemesis("kill:one", 3).unwrap();
        let s = schedule(&faults, Duration::from_secs(10), 1);
        assert_eq!(s.len(), 1, "{s:?}");
    }

    #[test]
    fn nemesis_lists_parse_and_bad_names_are_refused() {
        assert_eq!(
            parse_nemesis("kill:leader,pause-kill", 3).unwrap(),
            vec![Fault::Kill(Target::Leader), Fault::PauseKill]
        );
        assert_eq!(parse_nemesis("kill", 3).unwrap().len(), 4);
        assert!(parse_nemesis("all", 3).unwrap().len() > 20);
        assert!(parse_nemesis("kill:sideways", 3).is_err());
        assert!(parse_nemesis("teleport", 3).is_err());
        assert!(parse_nemesis("", 3).is_err());
        assert!(parse_nemesis("membership:fast", 4).is_err());
    }

    #[test]
    fn membership_parses_and_all_includes_it_only_with_four_nodes() {
        assert_eq!(
            parse_nemesis("membership,membership-kill", 4).unwrap(),
            vec![Fault::Membership, Fault::MembershipKill]
        );
        // Named explicitly it stays (and is unavailable at run time).
        assert_eq!(
            parse_nemesis("membership", 3).unwrap(),
            vec![Fault::Membership]
        );
        let all3 = parse_nemesis("all", 3).unwrap();
        assert!(!all3.iter().any(Fault::is_membership), "{all3:?}");
        let all4 = parse_nemesis("all", 4).unwrap();
        assert!(all4.contains(&Fault::Membership), "{all4:?}");
        assert!(all4.contains(&Fault::MembershipKill), "{all4:?}");
        assert_eq!(Fault::MembershipKill.to_string(), "membership-kill");
    }

    /// `all` is the union of the families, in their order, and every fault
    /// belongs to a listed family that parses back to it.
    #[test]
    fn all_is_every_family_in_order() {
        for nodes in [3, 4] {
            let all = parse_nemesis("all", nodes).unwrap();
            let mut union = Vec::new();
            for f in families(nodes) {
                let faults = parse_nemesis(f, nodes).unwrap();
                assert!(faults.iter().all(|x| x.family() == f), "{f}: {faults:?}");
                union.extend(faults);
            }
            assert_eq!(all, union, "{nodes} nodes");
            for f in &all {
                assert!(FAMILIES.contains(&f.family()), "{f}");
                let variant = parse_nemesis(&f.to_string(), nodes).unwrap();
                assert_eq!(variant, vec![*f]);
            }
        }
        assert_eq!(families(3).len(), FAMILIES.len() - 2);
        assert_eq!(families(4), FAMILIES.to_vec());
        // The order of `all` is part of every recorded seed's schedule:
        // `all-before-loss` is `all` as seeds recorded before `loss` used it.
        let before = parse_nemesis("all-before-loss", 3).unwrap();
        assert_eq!(before[0], Fault::Kill(Target::One));
        assert_eq!(before[4], Fault::Pause(Target::One));
        assert_eq!(before.last(), Some(&Fault::PartKill(Cut::Ring)));
        let all = parse_nemesis("all", 3).unwrap();
        assert_eq!(all[..before.len()], before[..]);
        let added = parse_nemesis("loss,crash-at,disk-full,clock,delay,log-disk-full", 3).unwrap();
        assert_eq!(all[before.len()..], added[..]);
        assert_eq!(all.last(), Some(&Fault::LogDiskFull(Target::All)));
        let before_clock = parse_nemesis("all-before-clock", 3).unwrap();
        assert_eq!(all[..before_clock.len()], before_clock[..]);
        assert_eq!(before_clock.last(), Some(&Fault::DiskFull(Target::All)));
        let before_log_disk = parse_nemesis("all-before-log-disk", 3).unwrap();
        assert_eq!(all[..before_log_disk.len()], before_log_disk[..]);
        assert_eq!(before_log_disk.last(), Some(&Fault::Delay(Target::All)));
        assert_eq!(before_log_disk.len() + 4, all.len());
    }

    /// A seed recorded with `--nemesis all` before `loss` existed gets the
    /// schedule it had with `all-before-loss` (seed 3006's pause-kill run
    /// of session 26 was a campaign entry, so its replay names the family;
    /// this pins the alias itself).
    #[test]
    fn all_before_loss_replays_the_old_all() {
        let d = Duration::from_secs(30);
        let old: Vec<Fault> = FAMILIES[..FAMILIES.len()
            - ADDED_IN_SESSION_27.len()
            - ADDED_IN_SESSION_28.len()
            - ADDED_IN_SESSION_35.len()]
            .iter()
            .filter(|f| !f.starts_with("membership"))
            .flat_map(|f| parse_nemesis(f, 3).unwrap())
            .collect();
        let before = parse_nemesis("all-before-loss", 3).unwrap();
        assert_eq!(before, old);
        assert_eq!(
            format!("{:?}", schedule(&before, d, 77)),
            format!("{:?}", schedule(&old, d, 77))
        );
        assert!(parse_nemesis("all-before-loss:x", 3).is_err());
        assert_eq!(
            parse_nemesis("loss:leader", 3).unwrap(),
            vec![Fault::Loss(Target::Leader)]
        );
        assert!(Fault::Loss(Target::One).needs_network());
        assert_eq!(
            parse_nemesis("crash-at:raft-wal-synced", 3).unwrap(),
            vec![Fault::CrashAt(sluice_crashpoints::RAFT_WAL_SYNCED)]
        );
        assert_eq!(
            parse_nemesis("crash-at", 3).unwrap().len(),
            sluice_crashpoints::POINTS.len()
        );
        let e = parse_nemesis("crash-at:nowhere", 3)
            .unwrap_err()
            .to_string();
        assert!(e.contains("segment-appended"), "{e}");
        assert!(!Fault::CrashAt(sluice_crashpoints::SEGMENT_ROLLED).needs_network());
        assert_eq!(
            parse_nemesis("disk-full:one", 3).unwrap(),
            vec![Fault::DiskFull(Target::One)]
        );
        assert!(Fault::DiskFull(Target::One).needs_disks());
        assert_eq!(
            parse_nemesis("log-disk-full:leader", 3).unwrap(),
            vec![Fault::LogDiskFull(Target::Leader)]
        );
        assert!(Fault::LogDiskFull(Target::One).needs_disks());
        assert!(!Fault::Loss(Target::One).needs_disks());
    }

    #[test]
    fn targets_have_the_right_sizes() {
        let mut rng = Rng::new(3);
        assert_eq!(targets(Target::Majority, 5, None, &mut rng).len(), 3);
        assert_eq!(targets(Target::Minority, 5, None, &mut rng).len(), 2);
        assert_eq!(targets(Target::All, 3, None, &mut rng), vec![1, 2, 3]);
        assert_eq!(targets(Target::Leader, 3, Some(2), &mut rng), vec![2]);
    }

    #[test]
    fn a_move_goes_to_another_set_of_the_same_size() {
        let mut rng = Rng::new(5);
        let mut seen = BTreeSet::new();
        for _ in 0..50 {
            let set = other_replica_set(&[3, 1, 2], 4, 3, &mut rng).unwrap();
            assert_eq!(set.len(), 3);
            assert_ne!(set, vec![1, 2, 3]);
            assert!(set.windows(2).all(|w| w[0] < w[1]), "{set:?}");
            assert!(set.iter().all(|i| (1..=4).contains(i)));
            seen.insert(set);
        }
        // All three other sets of 4 nodes come up.
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert_eq!(other_replica_set(&[1, 2, 3], 3, 3, &mut rng), None);
        let a = other_replica_set(&[1, 2, 3], 5, 3, &mut Rng::new(8));
        assert_eq!(a, other_replica_set(&[1, 2, 3], 5, 3, &mut Rng::new(8)));
    }

    /// Who each node can still send to.
    fn reach(links: &[(NodeId, NodeId)], n: u32) -> Vec<BTreeSet<NodeId>> {
        let cut: BTreeSet<_> = links.iter().copied().collect();
        (1..=n)
            .map(|a| {
                (1..=n)
                    .filter(|b| a == *b || !cut.contains(&(a, *b)))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn cuts_sever_what_they_say() {
        let mut rng = Rng::new(9);
        let (links, _) = cut_links(Cut::IsolateLeader, 3, Some(2), &mut rng);
        assert_eq!(reach(&links, 3)[1], BTreeSet::from([2]));

        let (links, _) = cut_links(Cut::OneWay, 3, None, &mut rng);
        assert_eq!(links.len(), 2);
        let (from, _) = links[0];
        assert!(links.iter().all(|(a, _)| *a == from));

        let (links, d) = cut_links(Cut::Bridge, 3, None, &mut rng);
        let r = reach(&links, 3);
        assert_eq!(r.iter().filter(|s| s.len() == 3).count(), 1, "{d}");

        // Ring of 5: every node reaches a majority (itself included), and the
        // majorities differ.
        let (links, d) = cut_links(Cut::Ring, 5, None, &mut rng);
        let r = reach(&links, 5);
        assert!(r.iter().all(|s| s.len() == 3), "{d}: {r:?}");
        let distinct: BTreeSet<_> = r.iter().collect();
        assert_eq!(distinct.len(), 5);
    }
}
