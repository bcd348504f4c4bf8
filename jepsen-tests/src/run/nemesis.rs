//! The nemesis: runs the schedule against the real node processes and records
//! each fault's `start` (before it is injected) and `stop` (once it is healed:
//! a killed node is running again, a paused one continued, the rules flushed).
//!
//! A fault that cannot be injected here (no network namespace, nft missing, a
//! `sluice` build without the fsync journal) is recorded as `unavailable` once,
//! which makes the verdict `unknown`: a run must never look valid for faults it
//! did not inject.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_client::Client;
use tokio::time::{Instant, sleep, sleep_until, timeout};

use super::clock;
use super::cluster::Cluster;
use super::corrupt::corrupt;
use super::delay;
use super::disks;
use super::firewall;
use super::power::{Journal, lose_unsynced};
use super::recorder::Recorder;
use super::rng::Rng;
use super::schedule::{
    Cut, Fault, LOSS_PERCENT_MAX, LOSS_PERCENT_MIN, MEMBERSHIP_MIN_NODES, Step, Target, cut_links,
    other_replica_set, targets,
};
use super::workload::{self, Ctx};
use crate::history::{Call, NemesisEvent, NodeId};

pub struct Nemesis {
    pub cluster: Arc<Cluster>,
    pub rec: Arc<Recorder>,
    pub ctx: Arc<Ctx>,
    /// Why partitions cannot be injected, if they cannot.
    pub network_unavailable: Option<String>,
    /// Why disks cannot be filled, if they cannot (no tmpfs per node).
    pub disks_unavailable: Option<String>,
    /// Why clocks cannot be set, if they cannot (no libfaketime).
    pub clock_unavailable: Option<String>,
    reported: Mutex<BTreeSet<&'static str>>,
    /// Problems met while injecting or healing, for the run's summary.
    pub problems: Mutex<Vec<String>>,
}

/// The crash-point file of each node, in its data directory (the nodes get
/// [`sluice_crashpoints::FILE_ENV`] naming it in runs with `crash-at`).
pub const CRASH_FILE: &str = "crash-at";

/// What a node's stderr says when its clock lies outside its certificate's
/// validity (`sluice_transport::tls::clock_outside_validity`).
const CLOCK_OUTSIDE_VALIDITY: &str = "this node's clock reads ";

/// How long after its heal a move may take before the nemesis stops waiting
/// (the move goes on; the final convergence waits for it).
const MOVE_WAIT: Duration = Duration::from_secs(20);

fn event(fault: &str, nodes: &[NodeId], detail: String) -> NemesisEvent {
    NemesisEvent {
        fault: fault.to_string(),
        nodes: nodes.to_vec(),
        detail: Some(detail),
    }
}

impl Nemesis {
    pub fn new(
        cluster: Arc<Cluster>,
        rec: Arc<Recorder>,
        ctx: Arc<Ctx>,
        network_unavailable: Option<String>,
        disks_unavailable: Option<String>,
        clock_unavailable: Option<String>,
    ) -> Self {
        Nemesis {
            cluster,
            rec,
            ctx,
            network_unavailable,
            disks_unavailable,
            clock_unavailable,
            reported: Mutex::new(BTreeSet::new()),
            problems: Mutex::new(Vec::new()),
        }
    }

    fn start(&self, fault: &str, nodes: &[NodeId], detail: String) {
        eprintln!(
            "[{:>6} ms] nemesis: start {fault} {nodes:?}: {detail}",
            self.rec.now_ms()
        );
        self.rec.nemesis(Call::Start(event(fault, nodes, detail)));
    }

    fn stop(&self, fault: &str, nodes: &[NodeId], detail: String) {
        eprintln!(
            "[{:>6} ms] nemesis: stop {fault} {nodes:?}: {detail}",
            self.rec.now_ms()
        );
        self.rec.nemesis(Call::Stop(event(fault, nodes, detail)));
    }

    /// Records once per kind that `fault` could not be injected, and why.
    pub fn unavailable(&self, fault: &'static str, why: &str) {
        let first = self
            .reported
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fault);
        if first {
            eprintln!("nemesis: {fault} unavailable: {why}");
            self.rec
                .nemesis(Call::Unavailable(event(fault, &[], why.to_string())));
        }
    }

    fn problem(&self, what: String) {
        eprintln!("nemesis: {what}");
        self.problems
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(what);
    }

    /// Runs `steps`, each at its time from `t0`.
    pub async fn run(&self, steps: &[Step], t0: Instant) {
        for step in steps {
            sleep_until(t0 + step.at).await;
            let mut rng = Rng::new(step.seed);
            self.inject(step.fault, step.hold, &mut rng).await;
        }
    }

    async fn inject(&self, fault: Fault, hold: Duration, rng: &mut Rng) {
        let n = self.cluster.spec.nodes;
        let leader = self.ctx.leader();
        let label = fault.to_string();
        match fault {
            Fault::Kill(t) => {
                let nodes = targets(t, n, leader, rng);
                self.start("kill", &nodes, label);
                self.kill(&nodes).await;
                sleep(hold).await;
                let d = self.restart().await;
                self.stop("kill", &nodes, d);
            }
            Fault::Pause(t) => {
                let nodes = targets(t, n, leader, rng);
                self.start("pause", &nodes, label);
                for i in &nodes {
                    self.cluster.pause(*i, true);
                }
                sleep(hold).await;
                for i in &nodes {
                    self.cluster.pause(*i, false);
                }
                self.stop("pause", &nodes, "continued".into());
            }
            Fault::Partition(cut) => {
                let Some((links, d)) = self.cut(cut, leader, rng) else {
                    return;
                };
                let nodes = involved(&links);
                self.start("partition", &nodes, format!("{label}: {d}"));
                let dropped = self.hold_partition(&links, hold).await;
                let healed = self.heal();
                self.stop(
                    "partition",
                    &nodes,
                    format!("{healed}; {dropped} packets dropped"),
                );
            }
            Fault::PowerLoss(t) => {
                let nodes = targets(t, n, leader, rng);
                if let Some(i) = nodes
                    .iter()
                    .find(|i| matches!(Journal::read(&self.cluster.node_dir(**i)), Ok(None)))
                {
                    self.unavailable(
                        "power_loss",
                        &format!(
                            "node {i} keeps no {} (this sluice build does not support SLUICE_FSYNC_JOURNAL)",
                            super::power::JOURNAL_FILE
                        ),
                    );
                    return;
                }
                self.start("power_loss", &nodes, label);
                self.kill(&nodes).await;
                let mut lost = Vec::new();
                for i in &nodes {
                    let dir = self.cluster.node_dir(*i);
                    match Journal::read(&dir).and_then(|j| lose_unsynced(&j.unwrap_or_default())) {
                        Ok(loss) => lost.push(format!(
                            "node {i}: {} file(s) cut, {} bytes lost",
                            loss.files_cut, loss.bytes_lost
                        )),
                        Err(e) => self.problem(format!("power loss of node {i}: {e:#}")),
                    }
                }
                sleep(hold).await;
                let d = self.restart().await;
                self.stop("power_loss", &nodes, format!("{}; {d}", lost.join(", ")));
            }
            Fault::Corruption(damage) => {
                let nodes = targets(Target::Minority, n, leader, rng);
                let i = *rng.pick(&nodes);
                self.start("corruption", &[i], label);
                if let Err(e) = self.cluster.stop(i).await {
                    self.problem(format!("cannot stop node {i}: {e:#}"));
                }
                let what = match corrupt(&self.cluster.node_dir(i), damage, rng) {
                    Ok(w) => w,
                    Err(e) => format!("nothing damaged: {e:#}"),
                };
                sleep(hold).await;
                let d = self.restart().await;
                self.stop("corruption", &[i], format!("{what}; {d}"));
            }
            Fault::PauseKill => {
                let mut order: Vec<NodeId> = (1..=n).collect();
                rng.shuffle(&mut order);
                let (paused, killed) = (order[0], order[order.len().min(2) - 1]);
                self.start("pause", &[paused], label.clone());
                self.cluster.pause(paused, true);
                if killed != paused {
                    self.start("kill", &[killed], label);
                    self.kill(&[killed]).await;
                }
                sleep(hold).await;
                self.cluster.pause(paused, false);
                self.stop("pause", &[paused], "continued".into());
                if killed != paused {
                    let d = self.restart().await;
                    self.stop("kill", &[killed], d);
                }
            }
            Fault::PartKill(cut) => {
                let Some((links, d)) = self.cut(cut, leader, rng) else {
                    return;
                };
                let nodes = involved(&links);
                let killed = *rng.pick(&nodes);
                self.start("partition", &nodes, format!("{label}: {d}"));
                self.start("kill", &[killed], label);
                let hold_net = self.hold_partition(&links, hold);
                let kill = async {
                    self.kill(&[killed]).await;
                };
                let (dropped, ()) = tokio::join!(hold_net, kill);
                let healed = self.heal();
                self.stop(
                    "partition",
                    &nodes,
                    format!("{healed}; {dropped} packets dropped"),
                );
                let d = self.restart().await;
                self.stop("kill", &[killed], d);
            }
            Fault::Membership | Fault::MembershipKill => {
                self.membership(fault, hold, rng).await;
            }
            Fault::Loss(t) => self.loss(t, hold, rng).await,
            Fault::CrashAt(point) => self.crash_at(point, hold, rng).await,
            Fault::Clock(t) => self.clock(t, hold, rng).await,
            Fault::Delay(t) => self.delay(t, hold, rng).await,
            Fault::DiskFull(t) => self.disk_full(t, false, hold, rng).await,
            Fault::LogDiskFull(t) => self.disk_full(t, true, hold, rng).await,
        }
    }

    /// Drops a share of the packets into and out of `target`'s nodes for
    /// `hold` (see [`Fault::Loss`]).
    async fn loss(&self, t: Target, hold: Duration, rng: &mut Rng) {
        let n = self.cluster.spec.nodes;
        let leader = self.ctx.leader();
        let label = Fault::Loss(t).to_string();
        if let Some(why) = &self.network_unavailable {
            self.unavailable("loss", why);
            return;
        }
        let nodes = targets(t, n, leader, rng);
        let percent = rng.range(LOSS_PERCENT_MIN, LOSS_PERCENT_MAX + 1);
        self.start(
            "loss",
            &nodes,
            format!("{label}: {percent}% of the packets into and out of {nodes:?} dropped"),
        );
        let rules = firewall::loss_rules(&nodes, percent, |i| self.cluster.ip(i));
        let dropped = self.hold_rules(&rules, hold).await;
        let healed = self.heal();
        self.stop(
            "loss",
            &nodes,
            format!("{healed}; {dropped} packets dropped"),
        );
    }

    /// Steps the wall clocks of `t`'s nodes, each by its own offset, for
    /// `hold`, then sets them right; half the time the first target is also
    /// killed and started again under its wrong clock (as after a reboot
    /// with a bad hardware clock: years off, it cannot even check its peers'
    /// certificates until the clock is right). A target that asked for no
    /// wall-clock time during the hold never saw its offset (told by the
    /// clock file's access time, [`clock::read_since`]); a step no target
    /// saw is said to be not reached, and counts apart (no fault).
    async fn clock(&self, t: Target, hold: Duration, rng: &mut Rng) {
        if let Some(why) = &self.clock_unavailable {
            self.unavailable("clock", why);
            return;
        }
        let nodes = targets(t, self.cluster.spec.nodes, self.ctx.leader(), rng);
        let offsets: Vec<i64> = nodes.iter().map(|_| clock::draw_offset_ms(rng)).collect();
        let restarted = (rng.range(0, 2) == 1).then_some(nodes[0]);
        let said: Vec<String> = nodes
            .iter()
            .zip(&offsets)
            .map(|(i, ms)| format!("node {i} {}", clock::describe(*ms)))
            .collect();
        let then = restarted.map_or(String::new(), |i| format!("; node {i} restarted under it"));
        self.start(
            "clock",
            &nodes,
            format!(
                "{}: wall clock of {}{then}",
                Fault::Clock(t),
                said.join(", ")
            ),
        );
        let started = Instant::now();
        let mut written = Vec::new();
        for (i, ms) in nodes.iter().zip(&offsets) {
            match clock::set(&self.cluster.node_dir(*i), *ms) {
                Ok(at) => written.push((*i, at)),
                Err(e) => self.problem(format!("cannot set node {i}'s clock: {e:#}")),
            }
        }
        let mut restart = String::new();
        if let Some(i) = restarted {
            self.kill(&[i]).await;
            restart = format!("; node {i} {}", self.start_under_clock(i).await);
        }
        sleep_until(started + hold).await;
        let saw: Vec<NodeId> = written
            .iter()
            .filter(|(i, at)| clock::read_since(&self.cluster.node_dir(*i), *at))
            .map(|(i, _)| *i)
            .collect();
        for i in &nodes {
            if let Err(e) = clock::set(&self.cluster.node_dir(*i), 0) {
                self.problem(format!("cannot set node {i}'s clock right: {e:#}"));
            }
        }
        // Each node takes its true time back when it next reads the file.
        sleep(clock::REREAD).await;
        let detail = if saw.is_empty() {
            format!(
                "offsets{}{hold:?} (no target asked for the time){restart}; clocks set right",
                crate::checker::figures::NOT_REACHED
            )
        } else {
            format!("offsets seen by node(s) {saw:?}{restart}; clocks set right")
        };
        self.stop("clock", &nodes, detail);
    }

    /// Holds back the UDP packets into `t`'s nodes for `hold`, each by the
    /// step's base delay and up to half of it again ([`delay`]); then lets
    /// the held ones go.
    async fn delay(&self, t: Target, hold: Duration, rng: &mut Rng) {
        if let Some(why) = &self.network_unavailable {
            self.unavailable("delay", why);
            return;
        }
        if let Err(why) = delay::available() {
            self.unavailable("delay", &why);
            return;
        }
        let nodes = targets(t, self.cluster.spec.nodes, self.ctx.leader(), rng);
        let base_ms = rng.range(delay::DELAY_MS_MIN, delay::DELAY_MS_MAX + 1);
        let seed = rng.next_u64();
        self.start(
            "delay",
            &nodes,
            format!(
                "{}: packets into {nodes:?} held {base_ms}-{} ms",
                Fault::Delay(t),
                base_ms + base_ms / 2
            ),
        );
        let ips: Vec<_> = nodes.iter().map(|i| self.cluster.ip(*i)).collect();
        let delayer = match delay::Delayer::start(&ips, base_ms, seed) {
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(format!("cannot hold packets back: {e:#}"));
                None
            }
        };
        sleep(hold).await;
        let detail = match delayer.map(delay::Delayer::stop) {
            Some(Ok(held)) => format!(
                "healed; {} packets held back, at most {} at once",
                held.packets, held.most_at_once
            ),
            Some(Err(e)) => {
                self.problem(format!("cannot let the held packets go: {e:#}"));
                format!("heal failed: {e:#}")
            }
            None => "nothing held".to_string(),
        };
        self.stop("delay", &nodes, detail);
    }

    /// Starts node `i` again under its wrong clock. A node whose clock lies
    /// outside its certificate's validity says so on its stderr and cannot
    /// become ready (no handshake succeeds) until the clock is right: that
    /// start is what the fault is, not a problem, and is not waited out.
    async fn start_under_clock(&self, i: NodeId) -> String {
        let stderr = self.cluster.node_dir(i).join("node.stderr");
        let said = || {
            std::fs::read_to_string(&stderr)
                .map(|t| t.matches(CLOCK_OUTSIDE_VALIDITY).count())
                .unwrap_or(0)
        };
        let before = said();
        let outside = async {
            while said() == before {
                sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::select! {
            started = self.cluster.start() => match started {
                Ok(()) => "restarted".into(),
                Err(e) => {
                    self.problem(format!("cannot start node {i} under its clock: {e:#}"));
                    self.restart().await
                }
            },
            () = outside => "started, and said its clock is outside its certificate's validity \
                (it joins once the clock is right)"
                .into(),
        }
    }

    /// Fills the disks of `t`'s nodes for `hold` (their Raft logs' own disks
    /// if `log`: [`Fault::LogDiskFull`]), then empties them and starts again
    /// the nodes that stopped: a node stops only when its Raft log cannot
    /// write, and must have said so (anything else is a crash, reported as a
    /// nemesis problem).
    async fn disk_full(&self, t: Target, log: bool, hold: Duration, rng: &mut Rng) {
        let (step, fault) = if log {
            ("log_disk_full", Fault::LogDiskFull(t))
        } else {
            ("disk_full", Fault::DiskFull(t))
        };
        let disk = |dir: std::path::PathBuf| if log { disks::log_disk(&dir) } else { dir };
        if let Some(why) = &self.disks_unavailable {
            self.unavailable(step, why);
            return;
        }
        let nodes = targets(t, self.cluster.spec.nodes, self.ctx.leader(), rng);
        let said = |i: NodeId| said_it_stops(&self.cluster.node_dir(i));
        let before: Vec<usize> = nodes.iter().map(|i| said(*i)).collect();
        self.start(step, &nodes, fault.to_string());
        let mut filled = Vec::new();
        for i in &nodes {
            match disks::fill(&disk(self.cluster.node_dir(*i))) {
                Ok(bytes) => filled.push(format!("node {i}: {} MB", bytes / 1_000_000)),
                Err(e) => self.problem(format!("cannot fill node {i}'s disk: {e:#}")),
            }
        }
        sleep(hold).await;
        for i in &nodes {
            if let Err(e) = disks::free(&disk(self.cluster.node_dir(*i))) {
                self.problem(format!("cannot empty node {i}'s disk: {e:#}"));
            }
        }
        let stopped: Vec<NodeId> = nodes
            .iter()
            .copied()
            .filter(|i| self.cluster.pid(*i).is_none())
            .collect();
        for (i, before) in nodes.iter().zip(before) {
            if stopped.contains(i) && said(*i) == before {
                self.problem(format!(
                    "node {i} ended on a full disk without saying its Raft log could not write \
                     (see its node.stderr)"
                ));
            }
        }
        let d = if stopped.is_empty() {
            "no node stopped".to_string()
        } else {
            format!(
                "node(s) {stopped:?} had stopped (their Raft log could not write); {}",
                self.restart().await
            )
        };
        self.stop(
            step,
            &nodes,
            format!("ballast of {} removed; {d}", filled.join(", ")),
        );
    }

    /// Arms `point` in one node's crash file (a random node or the leader),
    /// waits up to `hold` for the node to abort there, then (half the time)
    /// cuts its files back to what it had fsynced, and restarts it once the
    /// hold is over. A point not reached within the hold is disarmed and
    /// said so. A point only a restarted replica passes (a snapshot's
    /// install) is armed in a node killed for half the hold, while the
    /// others write and purge their logs past it, and restarted armed.
    async fn crash_at(&self, point: &'static str, hold: Duration, rng: &mut Rng) {
        use sluice_crashpoints::Frequency;
        let n = self.cluster.spec.nodes;
        let target = if rng.range(0, 2) == 0 {
            Target::One
        } else {
            Target::Leader
        };
        let i = targets(target, n, self.ctx.leader(), rng)[0];
        let frequency = sluice_crashpoints::point(point).map(|p| p.frequency);
        let nth = match frequency {
            Some(Frequency::EveryWrite) => rng.range(1, 301),
            Some(Frequency::Periodic) => rng.range(1, 3),
            Some(Frequency::Rare) | None => 1,
        };
        let power = rng.range(0, 2) == 1;
        let dir = self.cluster.node_dir(i);
        let file = dir.join(CRASH_FILE);
        if !file.exists() {
            self.unavailable(
                "crash_at",
                &format!(
                    "node {i} has no {} (this sluice build does not support {})",
                    file.display(),
                    sluice_crashpoints::FILE_ENV
                ),
            );
            return;
        }
        let then = if power {
            ", then loses what it had not fsynced"
        } else {
            ""
        };
        self.start(
            "crash_at",
            &[i],
            format!("crash-at:{point}: node {i} aborts at hit {nth} of {point}{then}"),
        );
        let started = Instant::now();
        let restarted_armed = frequency == Some(Frequency::Rare);
        let before = aborts_logged(&dir, point);
        if restarted_armed {
            self.kill(&[i]).await;
            sleep(hold / 2).await;
        }
        if let Err(e) = write_crash_file(&file, &format!("{point} {nth}\n")) {
            self.problem(format!("cannot arm {}: {e:#}", file.display()));
        }
        let mut start_failed = String::new();
        if restarted_armed {
            // Not `restart`: the node may abort while it starts (an install
            // at start), and must not be started again still armed.
            if let Err(e) = self.cluster.start().await {
                start_failed = format!("; its start ended: {e:#}");
            }
        }
        // The node's own word says it crashed there (its stderr), not only
        // that its process is gone.
        let deadline = started + hold;
        while aborts_logged(&dir, point) == before && Instant::now() < deadline {
            sleep(Duration::from_millis(20)).await;
        }
        if let Err(e) = write_crash_file(&file, "") {
            self.problem(format!("cannot disarm {}: {e:#}", file.display()));
        }
        // A hit between the deadline and the disarming still aborted.
        let crashed = aborts_logged(&dir, point) > before;
        if let Some(pid) = self.cluster.pid(i)
            && crashed
            && !self
                .cluster
                .exited_within(i, pid, Duration::from_secs(5))
                .await
        {
            self.problem(format!(
                "node {i} said it aborted at {point} but is still running"
            ));
        }
        if !crashed {
            let d = if self.cluster.all_running() {
                String::new()
            } else {
                format!("; {}", self.restart().await)
            };
            self.stop(
                "crash_at",
                &[i],
                format!(
                    "{point}{}{hold:?}{}{start_failed}{d}",
                    crate::checker::figures::NOT_REACHED,
                    if restarted_armed {
                        " (node killed and restarted armed)"
                    } else {
                        "; node left running"
                    }
                ),
            );
            return;
        }
        let after = started.elapsed();
        let killed_first = if restarted_armed {
            format!(" (killed, restarted armed after {:?})", hold / 2)
        } else {
            String::new()
        };
        let mut detail = format!("node {i} aborted at {point} after {after:?}{killed_first}");
        if power {
            match Journal::read(&dir).and_then(|j| lose_unsynced(&j.unwrap_or_default())) {
                Ok(loss) => detail.push_str(&format!(
                    "; power cut: {} file(s) cut, {} bytes lost",
                    loss.files_cut, loss.bytes_lost
                )),
                Err(e) => self.problem(format!("power loss of node {i}: {e:#}")),
            }
        }
        sleep(hold.saturating_sub(after)).await;
        let d = self.restart().await;
        self.stop("crash_at", &[i], format!("{detail}; {d}"));
    }

    /// Whether partitions can be moved (4+ nodes); records `unavailable` if not.
    pub fn membership_available(&self) -> bool {
        let n = self.cluster.spec.nodes;
        if n >= MEMBERSHIP_MIN_NODES {
            return true;
        }
        self.unavailable(
            "membership",
            &format!(
                "a move needs at least {MEMBERSHIP_MIN_NODES} nodes (a replica set of 3 and a node outside it); this run has {n}"
            ),
        );
        false
    }

    /// Moves a random partition to another set of nodes of the same size,
    /// again and again until `hold` is over; for `membership-kill`, one move
    /// and during it a random node killed, restarted after `hold`. Each move's
    /// `stop` comes once it is done (no replica leaving, the new set in
    /// place), or [`MOVE_WAIT`] after the heal.
    async fn membership(&self, fault: Fault, hold: Duration, rng: &mut Rng) {
        if !self.membership_available() {
            return;
        }
        let healed_at = Instant::now() + hold;
        if fault == Fault::MembershipKill {
            self.move_once(fault, healed_at, rng).await;
            return;
        }
        // Moves are quick (well under a second when healthy): one after the
        // other until the hold is over, each its own fault.
        loop {
            self.move_once(fault, healed_at, rng).await;
            if Instant::now() + Duration::from_millis(500) >= healed_at {
                return;
            }
        }
    }

    /// One move (see [`Nemesis::membership`]); `healed_at`: when a killed node
    /// is restarted.
    async fn move_once(&self, fault: Fault, healed_at: Instant, rng: &mut Rng) {
        let n = self.cluster.spec.nodes;
        // Every draw before anything the cluster says, so a replay draws the same.
        let partition = rng.index(self.ctx.partitions as usize) as u32;
        let victim = rng.index(n as usize) as NodeId + 1;
        // A healthy move takes 0.2-1.5 s: the kill lands inside it.
        let kill_after = Duration::from_millis(rng.range(0, 400));
        let set_seed = rng.next_u64();

        let label = fault.to_string();
        let client = match workload::connect(&self.ctx.home).await {
            Ok(c) => c,
            Err(e) => {
                self.problem(format!("membership: cannot connect: {e:#}"));
                return;
            }
        };
        let current = match self.assignment(&client, partition).await {
            Ok(c) => c,
            Err(e) => {
                self.problem(format!(
                    "membership: cannot read the assignment of partition {partition}: {e}"
                ));
                client.close().await;
                return;
            }
        };
        let Some(target) = other_replica_set(&current, n, current.len(), &mut Rng::new(set_seed))
        else {
            self.problem(format!(
                "membership: no other replica set for partition {partition} (now {current:?})"
            ));
            client.close().await;
            return;
        };
        let mut involved: Vec<NodeId> = current.iter().chain(&target).copied().collect();
        involved.sort_unstable();
        involved.dedup();
        self.start(
            "membership",
            &involved,
            format!("{label}: partition {partition}: {current:?} -> {target:?}"),
        );
        let requested_at = Instant::now();
        let replicas: Vec<u64> = target.iter().map(|i| u64::from(*i)).collect();
        let requested = timeout(
            Duration::from_secs(15),
            client.reassign_partition(&self.ctx.topic, partition, replicas),
        )
        .await;
        let requested = match requested {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer within 15 s".to_string()),
        };
        if fault == Fault::MembershipKill {
            sleep(kill_after).await;
            self.start(
                "kill",
                &[victim],
                format!("{label}: during the move of partition {partition}"),
            );
            self.kill(&[victim]).await;
            sleep_until(healed_at).await;
            let d = self.restart().await;
            self.stop("kill", &[victim], d);
        }
        let outcome = match requested {
            Ok(()) => {
                let wait_until = healed_at.max(Instant::now()) + MOVE_WAIT;
                match self.wait_moved(partition, &target, wait_until).await {
                    Ok(()) => format!(
                        "moved: partition {partition} on {target:?}, seen done {} ms after the request",
                        requested_at.elapsed().as_millis(),
                    ),
                    Err(last) => {
                        self.problem(format!(
                            "membership: partition {partition} still moving to {target:?} {MOVE_WAIT:?} after the heal: {last}"
                        ));
                        format!("still moving after {MOVE_WAIT:?}: {last}")
                    }
                }
            }
            Err(e) => {
                self.problem(format!(
                    "membership: the move of partition {partition} to {target:?} was refused: {e}"
                ));
                format!("refused: {e}")
            }
        };
        client.close().await;
        self.stop("membership", &involved, outcome);
    }

    /// The replica set of `partition` (sorted), from the topic's assignment.
    async fn assignment(&self, client: &Client, partition: u32) -> Result<Vec<NodeId>, String> {
        let info = timeout(
            Duration::from_secs(15),
            client.describe_topic(&self.ctx.topic),
        )
        .await
        .map_err(|_| "no answer within 15 s".to_string())?
        .map_err(|e| e.to_string())?;
        let mut replicas: Vec<NodeId> = info
            .assignments
            .get(partition as usize)
            .ok_or_else(|| format!("the topic has no partition {partition}"))?
            .replicas
            .iter()
            .map(|r| *r as NodeId)
            .collect();
        replicas.sort_unstable();
        Ok(replicas)
    }

    /// Waits until `partition` runs on `target` with no replica leaving, or
    /// `deadline`; on timeout, the last state seen.
    async fn wait_moved(
        &self,
        partition: u32,
        target: &[NodeId],
        deadline: Instant,
    ) -> Result<(), String> {
        let mut last = String::from("no answer");
        let mut client: Option<Client> = None;
        loop {
            if client.is_none() {
                client = workload::connect(&self.ctx.home).await.ok();
            }
            if let Some(c) = &client {
                match timeout(
                    Duration::from_secs(3),
                    c.list_partitions(Some(&self.ctx.topic)),
                )
                .await
                {
                    Ok(Ok(ps)) => {
                        if let Some(p) = ps.iter().find(|p| p.partition == partition) {
                            let mut now: Vec<NodeId> =
                                p.replicas.iter().map(|r| r.node as NodeId).collect();
                            now.sort_unstable();
                            if now == target && p.leaving.is_empty() {
                                c.close().await;
                                return Ok(());
                            }
                            last = format!(
                                "replicas {now:?}, leaving {:?}, leader {:?}",
                                p.leaving, p.leader
                            );
                        }
                    }
                    Ok(Err(e)) => last = e.to_string(),
                    Err(_) => {
                        last = "listing the partitions took over 3 s".into();
                        client = None;
                    }
                }
            }
            if Instant::now() >= deadline {
                if let Some(c) = client {
                    c.close().await;
                }
                return Err(last);
            }
            sleep(Duration::from_millis(200)).await;
        }
    }

    fn cut(
        &self,
        cut: Cut,
        leader: Option<NodeId>,
        rng: &mut Rng,
    ) -> Option<(Vec<(NodeId, NodeId)>, String)> {
        if let Some(why) = &self.network_unavailable {
            self.unavailable("partition", why);
            return None;
        }
        Some(cut_links(cut, self.cluster.spec.nodes, leader, rng))
    }

    /// Keeps `links` severed for `hold`. Returns how many packets the rules
    /// dropped (read from their counters just before the heal).
    async fn hold_partition(&self, links: &[(NodeId, NodeId)], hold: Duration) -> u64 {
        let rules = firewall::rules(links, |i| self.cluster.ip(i));
        self.hold_rules(&rules, hold).await
    }

    /// Keeps the chain's `rules` for `hold`. Returns how many packets they
    /// dropped (read from their counters just before the heal).
    async fn hold_rules(&self, rules: &[String], hold: Duration) -> u64 {
        if let Err(e) = firewall::apply(rules) {
            self.problem(format!("cannot apply the nemesis's rules: {e:#}"));
        }
        sleep(hold).await;
        match firewall::dropped() {
            Ok(n) => n,
            Err(e) => {
                self.problem(format!("cannot read the nemesis rules' counters: {e:#}"));
                0
            }
        }
    }

    fn heal(&self) -> String {
        match firewall::heal() {
            Ok(()) => "healed".into(),
            Err(e) => {
                self.problem(format!("cannot heal the partition: {e:#}"));
                format!("heal failed: {e:#}")
            }
        }
    }

    async fn kill(&self, nodes: &[NodeId]) {
        for i in nodes {
            if let Err(e) = self.cluster.kill(*i).await {
                self.problem(format!("cannot kill node {i}: {e:#}"));
            }
        }
    }

    /// Starts every node that is not running; describes the outcome.
    async fn restart(&self) -> String {
        for attempt in 1..=3 {
            if self.cluster.all_running() {
                return "all nodes running".into();
            }
            match self.cluster.start().await {
                Ok(()) => return "restarted".into(),
                Err(e) => {
                    self.problem(format!("restart attempt {attempt} failed: {e:#}"));
                    sleep(Duration::from_secs(1)).await;
                }
            }
        }
        if self.cluster.all_running() {
            "all nodes running (the cluster was slow to become ready)".into()
        } else {
            "restart failed; see the node logs".into()
        }
    }

    /// Ends every fault: continues paused nodes, flushes the rules, restarts
    /// stopped nodes.
    pub async fn heal_all(&self) {
        for i in self.cluster.ids() {
            self.cluster.pause(i, false);
        }
        if self.network_unavailable.is_none()
            && let Err(e) = firewall::heal()
        {
            self.problem(format!("cannot flush the partition rules: {e:#}"));
        }
        if !self.cluster.all_running() {
            let d = self.restart().await;
            eprintln!("final heal: {d}");
        }
    }
}

/// How many times node `dir`'s stderr says it stopped because its Raft log
/// could not write (the node's own words, `spu/src/node.rs`).
fn said_it_stops(dir: &std::path::Path) -> usize {
    std::fs::read_to_string(dir.join("node.stderr"))
        .map(|text| {
            text.matches("this node stops: its Raft log database could not write")
                .count()
        })
        .unwrap_or(0)
}

/// How many times node `dir`'s stderr says it aborted at `point`.
fn aborts_logged(dir: &std::path::Path, point: &str) -> usize {
    let needle = format!("crash point {point} reached");
    std::fs::read_to_string(dir.join("node.stderr"))
        .map(|text| text.matches(&needle).count())
        .unwrap_or(0)
}

/// Replaces a node's crash file with `text` by a rename, so the node sees a
/// new file (see `sluice_crashpoints`) even within its clock's granularity.
fn write_crash_file(file: &std::path::Path, text: &str) -> std::io::Result<()> {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, file)
}

fn involved(links: &[(NodeId, NodeId)]) -> Vec<NodeId> {
    let set: BTreeSet<NodeId> = links.iter().flat_map(|(a, b)| [*a, *b]).collect();
    set.into_iter().collect()
}
