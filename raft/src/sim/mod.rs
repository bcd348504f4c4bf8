//! A seeded randomized simulation of the replication core: several replicas
//! of one group, each on a real [`crate::LogDb`] in a temp dir with the real
//! [`crate::Group`] and state-machine adapter, under network faults, crashes
//! and power cuts, checked for the three things Raft promises Sluice.
//!
//! Why: the hand-made regression tests pin the bugs we already know (a power
//! cut leader reusing log ids, `tests.rs`); this looks for the next one by
//! combining faults no one thought to write down, on every CI run.
//!
//! One seed:
//! 1. [`schedule::Schedule::generate`] draws the whole fault schedule from
//!    the seed before anything runs: 3 or 5 replicas, message loss and delay
//!    (delays reorder messages), partitions and one-way cuts that heal later,
//!    slow fsyncs on one node, process kills, and power cuts, in particular
//!    of a leader whose own fsyncs lag behind its followers' (the fault that
//!    made openraft's leader restore reuse log ids).
//! 2. The replicas start and elect a leader; clients write fresh commands
//!    through whichever node leads (following `NotLeader` hints, giving up
//!    on a write after [`WRITE_TIMEOUT`]); the state machine ([`ledger::Rec`])
//!    answers with the index it applied the command at.
//! 3. The schedule runs for [`schedule::FAULT_PHASE`]. A power cut uses the
//!    log store's test-only durability model (`log_store/power_loss.rs`):
//!    the node loses every log entry and the commit point that no completed
//!    WAL fsync covered, and the state machine loses what it had not synced;
//!    at every other cut, deletes of log entries no fsync covered (a purge's
//!    range delete, a truncation) come undone. Half the cuts of any node
//!    wait for its next such delete and fall right after it: the window a
//!    cut at a random moment seldom meets, where a follower's undone purge
//!    once left a log openraft refused to start (session 39's bug: with its
//!    fix reverted at 8aa3c3f, seeds 4000-4149 found it at seed 4076).
//! 4. Then the network heals, fsyncs are released, every node is up, one more
//!    write goes through the leader and the replicas must converge within
//!    [`CONVERGE_WITHIN`].
//!
//! Checked: (1) no two replicas, and no replica before and after a restart,
//! ever apply different commands at one index (checked at every apply and
//! snapshot install); (2) every acknowledged write is, after the quiet
//! phase, applied on every replica at the index its client was told; (3) no
//! command is applied at two indexes. Also: no running replica's group
//! stopped, and the replicas' states end equal.
//!
//! Running: `cargo test -p sluice-raft sim` runs [`DEFAULT_SEEDS`] seeds of
//! both tests below, [`parallel`] at a time (each seed on its own tokio
//! runtime): about 18 s in a debug build on the 2-core dev VM, 80-90 seeds
//! per minute (about 30 one at a time). `SLUICE_SIM_SEEDS=<count>` runs more
//! (from `SLUICE_SIM_FIRST_SEED`, default 0), `SLUICE_SIM_SEED=<seed>` one,
//! `SLUICE_SIM_PARALLEL=<n>` sets how many at once. A failure prints the seed,
//! its schedule, what happened when (which node each role resolved to, what
//! each power cut lost) and the command that replays it;
//! `SLUICE_SIM_VERBOSE=1` prints that for every seed, and
//! `SLUICE_SIM_OPENRAFT_LOG=<file>` records openraft's own debug log
//! ([`openraft_log`]).
//!
//! Replay is not exact. The schedule is a pure function of the seed, but it
//! runs against real time: openraft draws its own election timeouts, tokio
//! schedules tasks as it likes and fsyncs take what the disk takes, so which
//! node leads when a fault fires, and which messages a delay reorders,
//! differ from run to run (the trace shows what each run resolved). Measured
//! on the 2-core VM with leader restore on, seeds 0-29 five times each: a
//! run that failed failed again on 84 % of the replays of its seed, and
//! 53 % of all runs failed (some seeds 5 of 5, some 0 of 5); with the
//! election timeout range 100-150 ms instead of [`group_config`]'s 100-101,
//! 72 % and 43 %. A narrow range takes some of openraft's randomness out;
//! real time and scheduling keep the rest. So replay a failing seed a few
//! times, and read its trace rather than expect the same interleaving.
//! Tokio's paused clock is not used (not tried): it jumps ahead whenever
//! every task waits, and here tasks wait on RocksDB's fsyncs and the syncer
//! thread, which take real time, so timeouts would fire during fsyncs.
//!
//! Found so far: with leader restore on, the bug it was built for, in 1.8 to
//! 6.4 s of a CI run (after 3 to 9 seeds, 10 runs of 10); with it off,
//! nothing in seeds 0-573 and 600-699, of which about 29 % cut the power of
//! a node holding acknowledged writes it had not fsynced (the fault the old
//! configuration failed on). Also found (not a safety bug, hence
//! [`CONVERGE_WITHIN`]): when a follower's answer to an InstallSnapshot is
//! lost, the leader sends that follower nothing more for 30 s (`network.rs`'s
//! minimum snapshot timeout); heartbeats keep it from electing, so the group
//! runs a replica short all that while.
//!
//! Limits: one group per node (the fsync model is per group, but group
//! commit across groups is not exercised); no membership changes; no
//! duplicated or corrupted messages; delays are bounded by the schedule's
//! weather (up to 25 ms, against a 20 ms RPC timeout: late answers are
//! common); clients talk to nodes directly, never across the simulated
//! network; one power cut model (see its limits in
//! `log_store/power_loss.rs`); time is real, so a loaded machine runs fewer
//! writes per seed (the seeds of the two tests share the machine). The
//! checks themselves never depend on timing; only convergence has a deadline,
//! a generous one.

mod cluster;
mod ledger;
mod openraft_log;
mod schedule;
mod stream;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use cluster::Cluster;
use ledger::Ledger;
use schedule::{FAULT_PHASE, Fault, Rng, Schedule, Target};

use crate::{GroupConfig, NodeId, WriteError};

/// Seeds a plain `cargo test` runs: about 18 s for both tests together on
/// the 2-core dev VM (the leader-restore check stops at its first finding),
/// and at ~50 % of seeds finding that bug, far more than it needs.
const DEFAULT_SEEDS: u64 = 24;
/// How long a client waits for one write before it counts it as unknown.
const WRITE_TIMEOUT: Duration = Duration::from_millis(400);
/// Concurrent clients per seed.
const CLIENTS: u64 = 2;
/// How long after the faults the replicas have to agree. Above 30 s: a
/// follower whose answer to an InstallSnapshot is lost gets nothing more
/// until the leader's snapshot call times out, and `network.rs` gives
/// snapshot calls at least 30 s (seen: seeds 94 and 208, rarely: the answer
/// must be lost). Such a seed passes, slowly; its summary shows how long
/// convergence took.
const CONVERGE_WITHIN: Duration = Duration::from_secs(45);

/// Fast timing so a seed sees many elections in little real time, and a
/// narrow election timeout range so openraft's own randomness changes less
/// from one replay of a seed to the next. Frequent snapshots so purges and
/// snapshot installs happen under faults.
fn group_config(leader_restore: bool) -> GroupConfig {
    GroupConfig {
        heartbeat_interval_ms: 20,
        election_timeout_min_ms: 100,
        election_timeout_max_ms: 101,
        snapshot_every_entries: 40,
        entries_kept_after_snapshot: 10,
        vote_only_as_member: false,
        // Skipped heartbeats under faults too, within the fast elections
        // (20 + 20 + a 4 ms tick < 100).
        heartbeat_skip_after_ack_ms: 20,
        unsafe_leader_restore_for_tests: leader_restore,
    }
}

/// Which seeds to run, from the environment.
fn seeds() -> Vec<u64> {
    let var = |name: &str| {
        std::env::var(name).ok().map(|v| {
            v.trim()
                .parse::<u64>()
                .unwrap_or_else(|e| panic!("{name}={v}: {e}"))
        })
    };
    if let Some(seed) = var("SLUICE_SIM_SEED") {
        return vec![seed];
    }
    let first = var("SLUICE_SIM_FIRST_SEED").unwrap_or(0);
    let count = var("SLUICE_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
    (first..first + count).collect()
}

/// `SLUICE_SIM_VERBOSE=1`: print every seed's schedule and trace, not only
/// a failing one's (with `-- --nocapture`).
fn verbose() -> bool {
    std::env::var("SLUICE_SIM_VERBOSE").is_ok_and(|v| v == "1")
}

/// What one seed did.
struct Outcome {
    seed: u64,
    leader_restore: bool,
    schedule: Schedule,
    /// When the fault phase began: the zero of the schedule, the trace and
    /// the violations.
    zero: Instant,
    trace: Vec<(Instant, String)>,
    violations: Vec<(Instant, String)>,
    /// Writes acknowledged, of unknown outcome, refused.
    counts: (usize, u64, u64),
    /// From the end of the faults until the replicas agreed, if they did.
    converged_after: Option<Duration>,
    /// Power cuts, and those that lost writes acknowledged before the cut.
    power_cuts: (u64, u64),
    took: Duration,
}

/// `at` as signed milliseconds since `zero`.
fn since(zero: Instant, at: Instant) -> String {
    match at.checked_duration_since(zero) {
        Some(d) => format!("{:>5} ms", d.as_millis()),
        None => format!("{:>5} ms", -(zero.duration_since(at).as_millis() as i64)),
    }
}

impl Outcome {
    fn failed(&self) -> bool {
        !self.violations.is_empty()
    }

    fn summary(&self) -> String {
        let (acked, unknown, refused) = self.counts;
        let converged = self.converged_after.map_or(String::new(), |d| {
            format!(", converged {} ms after the faults", d.as_millis())
        });
        let (cuts, cuts_acked) = self.power_cuts;
        format!(
            "seed {} ({} nodes, leader restore {}): {} in {} ms{converged}; writes: {acked} \
             acknowledged, {unknown} unknown, {refused} refused; {cuts} power cuts, \
             {cuts_acked} of them cut acknowledged entries from the replica's log",
            self.seed,
            self.schedule.nodes.len(),
            if self.leader_restore { "on" } else { "off" },
            if self.failed() { "FAILED" } else { "ok" },
            self.took.as_millis(),
        )
    }

    fn report(&self, test: &str) -> String {
        let mut out = format!("simulation {}\nviolations:\n", self.summary());
        for (at, v) in &self.violations {
            out += &format!("  {}  {v}\n", since(self.zero, *at));
        }
        let panics = PANICS.lock().unwrap_or_else(|p| p.into_inner());
        if !panics.is_empty() {
            // Seeds run side by side, so a panic cannot be pinned on one.
            out += "panics in this process so far (any seed running at the time):\n";
            for p in panics.iter() {
                out += &format!("  {p}\n");
            }
        }
        drop(panics);
        out += &format!("{}\nwhat happened:\n", self.schedule);
        for (at, line) in &self.trace {
            out += &format!("  {}  {line}\n", since(self.zero, *at));
        }
        out += &format!(
            "replay (the same faults at the same times; openraft's and tokio's timing vary, \
             so not always the same outcome):\n  SLUICE_SIM_SEED={} cargo test -p sluice-raft \
             --lib sim::{test} -- --nocapture\n",
            self.seed
        );
        out
    }
}

fn run_seed(seed: u64, leader_restore: bool) -> Outcome {
    if let Ok(path) = std::env::var("SLUICE_SIM_OPENRAFT_LOG") {
        openraft_log::Log::install(&path);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let outcome = runtime.block_on(simulate(seed, leader_restore));
    // A fresh runtime per seed: nothing of one seed runs into the next.
    runtime.shutdown_timeout(Duration::from_secs(5));
    openraft_log::Log::flush();
    outcome
}

async fn simulate(seed: u64, leader_restore: bool) -> Outcome {
    let started = Instant::now();
    let schedule = Schedule::generate(seed);
    let ledger = Ledger::new();
    let outcome = |zero, trace, converged_after, ledger: &Ledger| Outcome {
        seed,
        leader_restore,
        schedule: schedule.clone(),
        zero,
        trace,
        violations: ledger.violations(),
        counts: ledger.counts(),
        converged_after,
        power_cuts: ledger.power_cuts(),
        took: started.elapsed(),
    };
    let cluster = match Cluster::start(
        seed,
        &schedule.nodes,
        schedule.weather,
        group_config(leader_restore),
        ledger.clone(),
    )
    .await
    {
        Ok(cluster) => cluster,
        Err(e) => {
            ledger.violation(format!("the group did not start: {e}"));
            return outcome(started, Vec::new(), None, &ledger);
        }
    };
    cluster.note(format!(
        "started; node {:?} leads; appends {}",
        cluster.leader(),
        if seed.is_multiple_of(2) {
            "streamed"
        } else {
            "one by one"
        }
    ));

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let rng = Rng::derive(seed, 10 + i);
            tokio::spawn(client(cluster.clone(), ledger.clone(), stop.clone(), rng))
        })
        .collect();

    let zero = Instant::now();
    let mut restarts = execute(&cluster, &schedule).await;
    cluster.heal();
    cluster.set_weather(0, 0);
    for n in &cluster.nodes {
        cluster.hold_syncs(*n, Duration::ZERO);
    }
    while let Some(done) = restarts.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => ledger.violation(e),
            Err(e) => ledger.violation(format!("a crash or restart panicked: {e}")),
        }
    }
    cluster.note("faults over: healed, calm, fsyncs released, every node up".into());
    let calm = Instant::now();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        if let Err(e) = c.await {
            ledger.violation(format!("a client panicked: {e}"));
        }
    }

    // With a violation found already, converging would only take time.
    let mut converged_after = None;
    if !ledger.has_violations() && settle(&cluster, &ledger).await {
        converged_after = Some(calm.elapsed());
    }
    if !ledger.has_violations() {
        check_final(&cluster, &ledger);
    }
    cluster.shutdown().await;
    outcome(zero, cluster.trace(), converged_after, &ledger)
}

/// Runs the schedule's faults at their times; returns the crash-and-restart
/// tasks still running at the end of the fault phase.
async fn execute(cluster: &Arc<Cluster>, schedule: &Schedule) -> JoinSet<Result<(), String>> {
    let phase = tokio::time::Instant::now();
    let mut held: Option<NodeId> = None;
    let mut restarts = JoinSet::new();
    for event in &schedule.events {
        tokio::time::sleep_until(phase + event.at).await;
        let resolve = |target: Target| match target {
            Target::Node(n) => n,
            Target::Leader { or } => cluster.leader().unwrap_or(or),
            Target::Held { or } => held.unwrap_or(or),
        };
        match event.fault.clone() {
            Fault::Weather {
                drop_percent,
                delay_max_ms,
            } => {
                cluster.set_weather(drop_percent, delay_max_ms);
                cluster.note(format!(
                    "messages lost {drop_percent}%, delayed up to {delay_max_ms} ms"
                ));
            }
            Fault::Isolate(target) => {
                let n = resolve(target);
                for m in cluster.nodes.iter().filter(|m| **m != n) {
                    cluster.cut(n, *m);
                    cluster.cut(*m, n);
                }
                cluster.note(format!("node {n} isolated"));
            }
            Fault::CutOneWay { from, to } => {
                cluster.cut(from, to);
                cluster.note(format!("link {from} -> {to} cut"));
            }
            Fault::Heal => {
                cluster.heal();
                cluster.note("every link healed".into());
            }
            Fault::HoldSyncs { target, ms } => {
                let n = resolve(target);
                if ms > 0 {
                    held = Some(n);
                }
                let up = cluster.hold_syncs(n, Duration::from_millis(ms));
                cluster.note(format!(
                    "node {n}: group commits wait {ms} ms{}",
                    if up { "" } else { " (node down: no effect)" }
                ));
            }
            Fault::PowerLoss {
                target, down_ms, ..
            }
            | Fault::Kill { target, down_ms } => {
                let power_loss = matches!(event.fault, Fault::PowerLoss { .. });
                let at_delete = matches!(
                    event.fault,
                    Fault::PowerLoss {
                        at_delete: true,
                        ..
                    }
                );
                let n = resolve(target);
                let cluster = cluster.clone();
                restarts.spawn(async move {
                    let t0 = tokio::time::Instant::now();
                    let mut what = if power_loss { "power cut" } else { "killed" };
                    if at_delete {
                        what = if cluster
                            .cut_power_at_next_delete(n, schedule::AT_DELETE_WAIT)
                            .await
                        {
                            "power cut at a delete"
                        } else {
                            "power cut (no delete came)"
                        };
                    }
                    let Some(down) = cluster.crash(n, power_loss).await else {
                        cluster.note(format!("node {n} not {what}: already down"));
                        return Ok(());
                    };
                    let acked = cluster.power_cut(&down);
                    let acked = if acked > 0 {
                        format!(", {acked} of them acknowledged writes")
                    } else {
                        String::new()
                    };
                    cluster.note(format!(
                        "node {n} {what}{}{acked}; back in {down_ms} ms",
                        down.lost()
                    ));
                    tokio::time::sleep_until(t0 + Duration::from_millis(down_ms)).await;
                    cluster.restart(down).await?;
                    cluster.note(format!("node {n} restarted"));
                    Ok(())
                });
            }
        }
    }
    tokio::time::sleep_until(phase + FAULT_PHASE).await;
    restarts
}

/// Writes fresh commands through whichever node leads until told to stop.
async fn client(cluster: Arc<Cluster>, ledger: Arc<Ledger>, stop: Arc<AtomicBool>, mut rng: Rng) {
    let mut hint: Option<NodeId> = None;
    while !stop.load(Ordering::Relaxed) {
        let target = hint
            .take()
            .filter(|n| cluster.is_up(*n))
            .or_else(|| cluster.leader())
            .unwrap_or_else(|| {
                let i = rng.between(0, cluster.nodes.len() as u64 - 1) as usize;
                cluster.nodes[i]
            });
        let Some(group) = cluster.group(target) else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let command = ledger.new_command();
        let write = group.write(command.to_be_bytes().to_vec());
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(answer)) => match <[u8; 8]>::try_from(answer) {
                Ok(index) => {
                    ledger.acked(command, u64::from_be_bytes(index), target);
                    hint = Some(target);
                }
                Err(answer) => ledger.violation(format!(
                    "command {command}: node {target} answered {answer:?}, not an index"
                )),
            },
            // Refused before it was proposed: no entry exists.
            Ok(Err(WriteError::NotLeader { leader, .. })) => {
                ledger.refused();
                // No leader known: an election is on, give it a moment.
                let pause = if leader.is_some() { 1 } else { 10 };
                hint = leader;
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            Ok(Err(WriteError::Stopped { .. })) => {
                ledger.unknown();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(_) => ledger.unknown(),
        }
        tokio::time::sleep(Duration::from_millis(rng.between(0, 3))).await;
    }
}

/// After the faults: one write through a leader (which commits everything
/// before it in its term), then waits until the replicas agree and hold
/// every acknowledged write (true), or [`CONVERGE_WITHIN`] passes.
async fn settle(cluster: &Cluster, ledger: &Ledger) -> bool {
    let deadline = Instant::now() + CONVERGE_WITHIN;
    loop {
        if let Some(leader) = cluster.leader()
            && let Some(group) = cluster.group(leader)
        {
            // A fresh command per attempt: an attempt that timed out may
            // still commit, and a resent command would then apply twice.
            let command = ledger.new_command();
            let write = group.write(command.to_be_bytes().to_vec());
            if let Ok(Ok(answer)) = tokio::time::timeout(WRITE_TIMEOUT, write).await
                && let Ok(index) = <[u8; 8]>::try_from(answer)
            {
                ledger.acked(command, u64::from_be_bytes(index), leader);
                cluster.note(format!("final write committed by leader {leader}"));
                break;
            }
        }
        if Instant::now() > deadline {
            ledger.violation(format!(
                "no leader committed a write within {CONVERGE_WITHIN:?} after the faults ended"
            ));
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let acked = ledger.acknowledged();
    loop {
        let applied = cluster.applied();
        let all_hold_acked = applied
            .values()
            .all(|a| acked.iter().all(|(c, i, _)| a.get(i) == Some(c)));
        let first = applied.values().next();
        let equal = applied.values().all(|a| Some(a) == first);
        if applied.len() == cluster.nodes.len() && all_hold_acked && equal {
            cluster.note("replicas converged".into());
            return true;
        }
        if Instant::now() > deadline || ledger.has_violations() {
            for line in cluster.describe() {
                cluster.note(format!("not converged: {line}"));
            }
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Invariant 2 and the end state: every replica holds every acknowledged
/// write where its client was told, the replicas hold the same, and none
/// stopped.
fn check_final(cluster: &Cluster, ledger: &Ledger) {
    for (node, why) in cluster.stopped() {
        ledger.violation(format!("node {node}'s group stopped: {why}"));
    }
    let applied = cluster.applied();
    for n in &cluster.nodes {
        if !applied.contains_key(n) {
            ledger.violation(format!("node {n} is not running at the end"));
        }
    }
    for (command, index, by) in ledger.acknowledged() {
        for (node, a) in &applied {
            if a.get(&index) != Some(&command) {
                ledger.violation(format!(
                    "acknowledged write lost: command {command}, acknowledged by node {by} at \
                     index {index}, is not on node {node}, which holds {:?} there",
                    a.get(&index)
                ));
            }
        }
    }
    let mut states = applied.iter();
    if let Some((first, reference)) = states.next() {
        for (node, a) in states {
            if a != reference {
                ledger.violation(format!(
                    "replicas did not converge: node {first} {}, node {node} {}; first \
                     difference at index {:?}",
                    describe(reference),
                    describe(a),
                    first_difference(reference, a)
                ));
            }
        }
    }
}

fn describe(applied: &BTreeMap<u64, u64>) -> String {
    format!(
        "holds {} commands up to index {:?}",
        applied.len(),
        applied.last_key_value().map(|(i, _)| *i)
    )
}

fn first_difference(a: &BTreeMap<u64, u64>, b: &BTreeMap<u64, u64>) -> Option<u64> {
    a.keys()
        .chain(b.keys())
        .filter(|i| a.get(i) != b.get(i))
        .min()
        .copied()
}

/// Runs `seeds` on [`parallel`] threads, each seed on its own runtime,
/// until all ran or one fails; returns what ran, by seed. Seeds mostly wait
/// (on timers, fsyncs, the network), so running a few at once multiplies
/// seeds per minute for little CPU.
fn run_seeds(seeds: &[u64], leader_restore: bool, test: &str) -> Vec<Outcome> {
    record_panics();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let done = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..parallel().min(seeds.len()) {
            scope.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let Some(seed) = seeds.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        return;
                    };
                    let outcome = run_seed(*seed, leader_restore);
                    eprintln!("{}", outcome.summary());
                    if verbose() && !outcome.failed() {
                        eprintln!("{}", outcome.report(test));
                    }
                    if outcome.failed() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    done.lock().unwrap_or_else(|p| p.into_inner()).push(outcome);
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|p| p.into_inner());
    done.sort_by_key(|o| o.seed);
    done
}

/// Every panic's message and place, kept for the failure report: openraft
/// turns a panic in a group's core task into a bare "panicked" error, and the
/// assertion that explains it would otherwise be only on stderr (lost when a
/// long hunt's output is not kept).
static PANICS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
/// The first this many panics are kept (the first is the one that explains).
const PANICS_KEPT_MAX: usize = 32;

/// Installs the recorder of [`PANICS`] once; the default hook still prints.
fn record_panics() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current()
                .name()
                .unwrap_or("unnamed")
                .to_string();
            let line = format!("thread {thread}: {info}");
            let mut panics = PANICS.lock().unwrap_or_else(|p| p.into_inner());
            if panics.len() < PANICS_KEPT_MAX {
                panics.push(line.replace('\n', " "));
            }
            drop(panics);
            previous(info);
        }));
    });
}

/// `SLUICE_SIM_PARALLEL`: seeds run at once (default 3).
fn parallel() -> usize {
    std::env::var("SLUICE_SIM_PARALLEL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1)
}

/// Replicas agree, keep every acknowledged write and apply each command
/// once, whatever the seed's faults (leader restore off, as in production).
#[test]
fn replicas_agree_under_faults_and_power_cuts() {
    const TEST: &str = "replicas_agree_under_faults_and_power_cuts";
    let started = Instant::now();
    let outcomes = run_seeds(&seeds(), false, TEST);
    if let Some(failed) = outcomes.iter().find(|o| o.failed()) {
        panic!("{}", failed.report(TEST));
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{} seeds passed in {secs:.1} s ({:.0} seeds per minute)",
        outcomes.len(),
        outcomes.len() as f64 * 60.0 / secs
    );
}

/// The simulation can find a real bug: with openraft's leader restore on
/// (the configuration that lost acknowledged writes in the power-cut fault
/// runs), some seed within the CI budget breaks an invariant. If this fails,
/// the simulation has lost its teeth (faults no longer reach the log store,
/// or checks no longer see divergence), not the product. With
/// `SLUICE_SIM_SEED` it only reports whether that seed found it this time.
#[test]
fn the_simulation_finds_the_leader_restore_bug() {
    const TEST: &str = "the_simulation_finds_the_leader_restore_bug";
    let started = Instant::now();
    let seeds = seeds();
    let outcomes = run_seeds(&seeds, true, TEST);
    let secs = started.elapsed().as_secs_f64();
    match outcomes.iter().find(|o| o.failed()) {
        Some(found) => eprintln!(
            "found after {} seed(s) in {secs:.1} s:\n{}",
            outcomes.len(),
            found.report(TEST)
        ),
        // One seed finds it in about half its runs: replaying one is a
        // question, not a check.
        None if std::env::var("SLUICE_SIM_SEED").is_ok() => eprintln!(
            "with leader restore on, seed {:?} found no violation this time",
            seeds
        ),
        None => panic!(
            "with leader restore on, no violation in {} seeds ({secs:.1} s): the simulation no \
             longer finds the bug it was built to find",
            seeds.len()
        ),
    }
}

/// The power-cut model end to end, on one replica that needs its own fsync
/// to commit: entries written while its fsyncs are held back are lost by a
/// power cut and kept by a kill; acknowledged ones are kept by both.
#[test]
fn a_power_cut_loses_exactly_the_entries_no_fsync_covered() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        for power_loss in [true, false] {
            let ledger = Ledger::new();
            let cluster = Cluster::start(0, &[1], (0, 0), group_config(false), ledger.clone())
                .await
                .unwrap();
            let group = cluster.group(1).unwrap();
            for command in 1..=5u64 {
                group.write(command.to_be_bytes().to_vec()).await.unwrap();
            }
            let before = group.status().last_log_index.unwrap();
            cluster.hold_syncs(1, Duration::from_secs(30));
            let pending: Vec<_> = (6..=8u64)
                .map(|c| {
                    let group = group.clone();
                    tokio::spawn(async move { group.write(c.to_be_bytes().to_vec()).await })
                })
                .collect();
            let deadline = Instant::now() + Duration::from_secs(10);
            while group.status().last_log_index != Some(before + 3) {
                assert!(
                    Instant::now() < deadline,
                    "the held writes were never written"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            drop(group);
            let down = cluster.crash(1, power_loss).await.unwrap();
            if power_loss {
                assert_eq!(
                    down.lost(),
                    format!(
                        " (group 42: log kept up to {before}, lost {}..={})",
                        before + 1,
                        before + 3
                    )
                );
            } else {
                assert_eq!(down.lost(), "");
            }
            for write in pending {
                assert!(
                    write.await.unwrap().is_err(),
                    "a held write was acknowledged"
                );
            }
            cluster.restart(down).await.unwrap();
            let group = cluster.group(1).unwrap();
            group
                .wait_for_leader(Duration::from_secs(10))
                .await
                .unwrap();
            // A write in the new term commits what the log kept.
            group.write(9u64.to_be_bytes().to_vec()).await.unwrap();
            // The held writes were proposed concurrently, in any order.
            let mut applied: Vec<u64> = cluster.applied()[&1].values().copied().collect();
            applied.sort_unstable();
            let expected: Vec<u64> = if power_loss {
                vec![1, 2, 3, 4, 5, 9]
            } else {
                vec![1, 2, 3, 4, 5, 6, 7, 8, 9]
            };
            assert_eq!(applied, expected, "power loss: {power_loss}");
            assert!(!ledger.has_violations(), "{:?}", ledger.violations());
            cluster.shutdown().await;
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
}
