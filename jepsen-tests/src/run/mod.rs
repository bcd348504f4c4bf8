//! `jepsen-tests run`: one run against a real cluster.
//!
//! 1. Enter a fresh network namespace (when root), then start the async runtime.
//! 2. Start `N` nodes with `sluice cluster start --local` (the fsync journal on).
//! 3. Create the topic; start writers, consumers and the leader watcher.
//! 4. Run the seeded fault schedule; then heal everything.
//! 5. Wait for the replicas to converge; read every partition from offset 0 on
//!    every node; check the history; write `history.jsonl`, `results.json`,
//!    `summary.txt`; kill the nodes; delete the namespace.
//!
//! The nodes are killed by pid and the namespace deleted on every way out:
//! normal end, error (drop guards), panic (unwinding runs the same guards) and
//! ctrl-c / SIGTERM (a signal task does it, then exits).

pub mod clock;
pub mod cluster;
pub mod corrupt;
pub mod delay;
pub mod disks;
pub mod firewall;
pub mod group;
pub mod nemesis;
pub mod netns;
pub mod pipeline;
pub mod power;
pub mod recorder;
pub mod rng;
pub mod schedule;
pub mod smartmodule;
pub mod workload;

use sluice_client::proto::TopicCompression;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::checker::{CheckOptions, CheckResult, check_with};
use crate::history::{History, NodeId};
use cluster::{Cluster, ClusterSpec};
use schedule::Fault;
use workload::{Ctx, ReadMode};

/// `run --min-ops` unless told otherwise: a run of a minute does far more, so
/// fewer means the cluster was mostly unavailable (the offline `check`
/// defaults lower, for small hand-made histories).
pub const MIN_OPS_DEFAULT: u64 = 50;

/// Everything a run needs; `replay()` gives the command that repeats it.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub workload: String,
    /// The `--nemesis` list as given.
    pub nemesis: String,
    pub duration: Duration,
    pub seed: u64,
    pub nodes: u32,
    pub out: PathBuf,
    pub writers: u32,
    pub partitions: u32,
    /// Start the nodes with `SLUICE_DEBUG_UNSAFE_NO_FSYNC=1` (the suite's self-test).
    pub unsafe_no_fsync: bool,
    /// The `sluice` binary (`SLUICE_BIN`, else next to this executable).
    pub sluice_bin: PathBuf,
    pub min_ops: u64,
    /// The workload topic's compression type (its replicas store batches
    /// compressed with that codec, and the writers send them so).
    pub compression: TopicCompression,
    /// `EVERY:KEPT`: the partition groups' snapshot interval and kept log, in
    /// entries (the nodes get it as `SLUICE_PARTITION_LOG_ENTRIES`); `None`
    /// leaves the nodes' default.
    pub log_entries: Option<String>,
    /// The nodes' Raft memtable size in bytes (they get it as
    /// `SLUICE_DEBUG_RAFT_WRITE_BUFFER_BYTES`); `None` leaves their default.
    pub raft_write_buffer: Option<u64>,
}

/// The node variable `--log-entries` sets (read by `spu/src/replicas.rs`).
const LOG_ENTRIES_ENV: &str = "SLUICE_PARTITION_LOG_ENTRIES";
/// The node variable `--raft-write-buffer` sets (read by
/// `spu/src/fsync_journal.rs`).
const RAFT_WRITE_BUFFER_ENV: &str = "SLUICE_DEBUG_RAFT_WRITE_BUFFER_BYTES";
/// The smallest `--raft-write-buffer` a node takes.
const RAFT_WRITE_BUFFER_BYTES_MIN: u64 = 64 * 1024;

/// What a node logs each time a group's snapshot point is durable
/// (`raft/src/state_machine.rs`).
const SNAPSHOT_POINT_LINE: &str = "synced snapshot point";

impl RunConfig {
    /// The `jepsen-tests run` options that repeat this run (same seed, same
    /// schedule), `--out` aside: what `soak` and `campaign` pass to each run
    /// they start, and what [`RunConfig::replay`] prints.
    pub fn run_args(&self) -> Vec<String> {
        let mut a: Vec<String> = [
            ("--workload", self.workload.clone()),
            ("--nemesis", self.nemesis.clone()),
            ("--duration", self.duration.as_secs().to_string()),
            ("--seed", self.seed.to_string()),
            ("--nodes", self.nodes.to_string()),
            ("--writers", self.writers.to_string()),
            ("--partitions", self.partitions.to_string()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_string(), v])
        .collect();
        // Only when it is not the default, so the usual replay stays short;
        // it changes the verdict, so a replay must carry it.
        if self.min_ops != MIN_OPS_DEFAULT {
            a.extend(["--min-ops".to_string(), self.min_ops.to_string()]);
        }
        if self.unsafe_no_fsync {
            a.push("--unsafe-no-fsync".into());
        }
        if self.compression != TopicCompression::Any {
            a.extend(["--compression".to_string(), self.compression.to_string()]);
        }
        if let Some(e) = &self.log_entries {
            a.extend(["--log-entries".to_string(), e.clone()]);
        }
        if let Some(b) = self.raft_write_buffer {
            a.extend(["--raft-write-buffer".to_string(), b.to_string()]);
        }
        a
    }

    /// Checks the options a run refuses (node and writer counts, the nemesis
    /// and workload lists); returns the faults and workloads they name.
    pub fn validate(&self) -> anyhow::Result<(Vec<Fault>, Workloads)> {
        if self.nodes < 1 || self.nodes > 7 {
            bail!("--nodes {} is out of range: 1 to 7", self.nodes);
        }
        if self.writers > workload::MAX_WRITERS {
            bail!(
                "--writers {} is out of range: at most {} (each writer has producer ids of its own)",
                self.writers,
                workload::MAX_WRITERS
            );
        }
        if let Some(e) = &self.log_entries {
            parse_log_entries(e)?;
        }
        if let Some(b) = self.raft_write_buffer
            && b < RAFT_WRITE_BUFFER_BYTES_MIN
        {
            bail!(
                "--raft-write-buffer {b} is below the {RAFT_WRITE_BUFFER_BYTES_MIN} bytes a node \
                 takes; give at least that"
            );
        }
        let faults = schedule::parse_nemesis(&self.nemesis, self.nodes)?;
        let workloads = parse_workload(&self.workload)?;
        Ok((faults, workloads))
    }

    /// The command line that replays this run (same seed, same schedule), into
    /// a fresh directory beside this run's (a directory holds one run).
    pub fn replay(&self) -> String {
        format!(
            "jepsen-tests run {} --out {}-replay",
            self.run_args().join(" "),
            self.out.display()
        )
    }
}

/// The workload topic's segment size in runs with crash points: a segment
/// rolls every few seconds at the workload's rate.
const CRASH_AT_SEGMENT_BYTES: u64 = 16 * 1024;

/// The workload topic's segment size: small when a node may be told to
/// crash as one rolls (the default, 1 GiB, never rolls in a run).
fn segment_bytes(faults: &[Fault]) -> Option<u64> {
    faults
        .iter()
        .any(|f| matches!(f, Fault::CrashAt(_)))
        .then_some(CRASH_AT_SEGMENT_BYTES)
}

/// The Raft memtable size the nodes of a run get: `--raft-write-buffer`,
/// or for a run with `log-disk-full` without it, the smallest a node takes:
/// with the nodes' default the WAL file in use has tens of megabytes
/// reserved ahead, and no step would reach the Raft log within its hold.
fn raft_write_buffer(cfg: &RunConfig, faults: &[Fault]) -> Option<u64> {
    cfg.raft_write_buffer.or_else(|| {
        faults
            .iter()
            .any(Fault::needs_log_disk)
            .then_some(RAFT_WRITE_BUFFER_BYTES_MIN)
    })
}

/// What the nodes of a run get in their environment, and why wall clocks
/// cannot be set if the run asks for it and they cannot (runs with the
/// `clock` nemesis start every node with libfaketime preloaded).
fn node_env(cfg: &RunConfig, faults: &[Fault]) -> (Vec<(String, String)>, Option<String>) {
    let mut env = vec![("SLUICE_FSYNC_JOURNAL".to_string(), "1".to_string())];
    let mut clock_unavailable = None;
    if faults.iter().any(Fault::needs_clock) {
        match clock::library() {
            Ok(library) => env.extend(clock::node_env(&library)),
            Err(why) => clock_unavailable = Some(why),
        }
    }
    if faults.iter().any(|f| matches!(f, Fault::CrashAt(_))) {
        env.push((
            sluice_crashpoints::FILE_ENV.into(),
            nemesis::CRASH_FILE.into(),
        ));
    }
    if cfg.unsafe_no_fsync {
        env.push(("SLUICE_DEBUG_UNSAFE_NO_FSYNC".into(), "1".into()));
    }
    if let Some(e) = &cfg.log_entries {
        env.push((LOG_ENTRIES_ENV.into(), e.clone()));
    }
    if let Some(b) = raft_write_buffer(cfg, faults) {
        env.push((RAFT_WRITE_BUFFER_ENV.into(), b.to_string()));
    }
    if std::env::var_os("RUST_LOG").is_none() {
        env.push(("RUST_LOG".into(), "info".into()));
    }
    (env, clock_unavailable)
}

/// A schedule step as results.json lists it: start, hold, fault.
fn describe_step(s: &schedule::Step) -> String {
    format!(
        "{:.1}s +{:.1}s {}",
        s.at.as_secs_f64(),
        s.hold.as_secs_f64(),
        s.fault
    )
}

/// `EVERY:KEPT` as two entry counts, EVERY at least 1 (a node would refuse
/// or ignore anything else, and the run would test the default unawares).
fn parse_log_entries(value: &str) -> anyhow::Result<(u64, u64)> {
    let parsed = value
        .split_once(':')
        .and_then(|(a, b)| Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?)));
    match parsed {
        Some((every, kept)) if every >= 1 => Ok((every, kept)),
        _ => bail!(
            "--log-entries {value:?} is not EVERY:KEPT (two entry counts, EVERY at least 1, e.g. 200:50)"
        ),
    }
}

/// Where the `sluice` binary is: `$SLUICE_BIN`, else beside this executable
/// (`target/debug/sluice` for `target/debug/jepsen-tests` and for test
/// binaries in `target/debug/deps/`).
pub fn find_sluice() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("SLUICE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("cannot find the current executable")?;
    let mut dir = exe.parent().map(Path::to_path_buf);
    while let Some(d) = dir {
        let candidate = d.join("sluice");
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent().map(Path::to_path_buf);
        if dir.as_ref().is_some_and(|p| p.join("Cargo.lock").exists()) {
            break;
        }
    }
    bail!(
        "cannot find the sluice binary next to {}: build it (cargo build -p sluice-cli) or set SLUICE_BIN",
        exe.display()
    )
}

/// The run's facts in `results.json` besides the checker's.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub seed: u64,
    pub workload: String,
    pub nemesis: String,
    pub nodes: u32,
    pub partitions: u32,
    pub writers: u32,
    pub duration_s: u64,
    pub network_namespace: Option<String>,
    pub unsafe_no_fsync: bool,
    /// `--log-entries`, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_entries: Option<String>,
    /// `--raft-write-buffer`, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raft_write_buffer: Option<u64>,
    /// Snapshot points the nodes made durable, counted in their logs (a
    /// lower bound: a node's log is bounded and its oldest lines go).
    pub snapshot_points: u64,
    pub schedule: Vec<String>,
    /// Problems the nemesis met (failed restarts, rules that did not apply).
    pub nemesis_problems: Vec<String>,
    /// Whether every node had the same log length (and the same SmartModule
    /// store) before the final reads.
    pub converged: bool,
    /// What the workload saw besides the history (e.g. a node listing a
    /// SmartModule hash its bytes do not have).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub workload_problems: Vec<String>,
    /// Replicas that found their segments damaged, copied them from another
    /// replica and served again (from the nodes' logs), in the order logged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repairs: Vec<Repair>,
    pub replay: String,
}

/// One self-repair of a replica, as its node logged it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Repair {
    pub node: NodeId,
    pub partition: String,
    /// From finding the damage to serving again.
    pub repair_ms: u64,
}

/// The line a node logs when a repaired replica serves again
/// (`spu/src/replicas.rs`), and the fields read from it.
const REPAIRED_LINE: &str = "repaired replica serves again";

/// The self-repairs in one node's log text.
fn repairs_in_log(node: NodeId, log: &str) -> Vec<Repair> {
    let field = |line: &str, name: &str| -> Option<String> {
        let start = line.find(&format!(" {name}="))? + name.len() + 2;
        let rest = &line[start..];
        let value = rest.split(' ').next()?;
        Some(value.trim_matches('"').to_string())
    };
    log.lines()
        .filter(|l| l.contains(REPAIRED_LINE))
        .filter_map(|l| {
            Some(Repair {
                node,
                partition: field(l, "partition")?,
                repair_ms: field(l, "repair_ms")?.parse().ok()?,
            })
        })
        .collect()
}

/// What is left of each node's log (read once, for every question asked of
/// them): a log is bounded, older lines may have moved to node.log.1 and
/// the oldest are gone.
fn node_logs(cluster: &Cluster, nodes: &[NodeId]) -> Vec<(NodeId, String)> {
    nodes
        .iter()
        .map(|&n| {
            let dir = cluster.node_dir(n);
            let log = ["node.log.1", "node.log"]
                .iter()
                .filter_map(|name| std::fs::read_to_string(dir.join(name)).ok())
                .collect();
            (n, log)
        })
        .collect()
}

/// The self-repairs every node of the run logged.
fn repairs_of(logs: &[(NodeId, String)]) -> Vec<Repair> {
    logs.iter()
        .flat_map(|(n, log)| repairs_in_log(*n, log))
        .collect()
}

/// The snapshot points in the nodes' logs.
fn snapshot_points_of(logs: &[(NodeId, String)]) -> u64 {
    logs.iter()
        .map(|(_, log)| {
            log.lines()
                .filter(|l| l.contains(SNAPSHOT_POINT_LINE))
                .count() as u64
        })
        .sum()
}

#[derive(Serialize)]
struct Results<'a> {
    #[serde(flatten)]
    result: &'a CheckResult,
    run: &'a RunInfo,
}

/// What the ctrl-c handler must clean up.
struct Cleanup {
    data_dir: PathBuf,
    nodes: u32,
    netns: Option<String>,
    /// Node directories on a tmpfs of their own (`disks`).
    mounts: Vec<PathBuf>,
}

static CLEANUP: Mutex<Option<Cleanup>> = Mutex::new(None);

fn cleanup_on_signal() {
    let c = CLEANUP.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(c) = c {
        cluster::kill_all_in(&c.data_dir, c.nodes);
        for dir in &c.mounts {
            disks::unmount(dir);
        }
        if let Some(ns) = c.netns {
            let _ = std::process::Command::new("ip")
                .args(["netns", "delete", &ns])
                .status();
        }
    }
}

/// On ctrl-c or SIGTERM: kills the nodes, deletes the namespace and exits.
async fn cleanup_when_interrupted() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let term = async {
        match &mut term {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    eprintln!("interrupted: killing the nodes and deleting the namespace");
    cleanup_on_signal();
    std::process::exit(130);
}

/// Runs one test and returns its verdict; see the module documentation.
/// Must be called before any other thread exists (it may enter a namespace).
pub fn run(cfg: &RunConfig) -> anyhow::Result<(CheckResult, RunInfo)> {
    let (faults, workloads) = cfg.validate()?;
    let sm_base = if workloads.smartmodule {
        Some(smartmodule::hello_filter()?)
    } else {
        None
    };
    let data = cfg.out.join("data");
    if data.exists() {
        bail!(
            "{} already holds a run; pick a fresh --out directory",
            cfg.out.display()
        );
    }
    std::fs::create_dir_all(&cfg.out)
        .with_context(|| format!("cannot create {}", cfg.out.display()))?;
    let out = std::path::absolute(&cfg.out)?;
    cluster::become_subreaper();

    // Namespace first: every thread and child created later lives in it.
    let mut network_unavailable = None;
    let ns_name = format!("sluice-jt-{}", std::process::id());
    let netns = match netns::Netns::create_and_enter(&ns_name) {
        Ok(ns) => Some(ns),
        Err(e) => {
            network_unavailable = Some(format!("{e:#}"));
            None
        }
    };
    if netns.is_some()
        && let Err(e) = firewall::init()
    {
        network_unavailable = Some(format!("{e:#}"));
    }
    // Each node's data on a tmpfs of its own when a disk is to be filled.
    let mut disks_unavailable = None;
    let disks = faults
        .iter()
        .any(Fault::needs_disks)
        .then(|| {
            let log_apart = faults.iter().any(Fault::needs_log_disk);
            disks::Disks::mount(&out.join("data"), cfg.nodes, log_apart)
        })
        .and_then(|mounted| {
            mounted
                .map_err(|e| disks_unavailable = Some(format!("{e:#}")))
                .ok()
        });
    *CLEANUP.lock().unwrap_or_else(|p| p.into_inner()) = Some(Cleanup {
        data_dir: out.join("data"),
        nodes: cfg.nodes,
        netns: netns.as_ref().map(|n| n.name().to_string()),
        mounts: disks.as_ref().map_or_else(Vec::new, disks::Disks::dirs),
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(run_async(
        cfg,
        workloads,
        sm_base,
        &out,
        &faults,
        netns.as_ref().map(|n| n.name().to_string()),
        network_unavailable,
        disks_unavailable,
    ));
    runtime.shutdown_timeout(Duration::from_secs(2));
    CLEANUP.lock().unwrap_or_else(|p| p.into_inner()).take();
    if disks.is_some() {
        // Whatever way the run ended, no node may hold its tmpfs.
        cluster::kill_all_in(&out.join("data"), cfg.nodes);
        drop(disks);
    }
    drop(netns);
    result
}

/// A free base port for `n` nodes on 127.0.0.1 (outside a namespace other
/// programs share the ports).
fn free_port(n: u32) -> anyhow::Result<u16> {
    let pid = std::process::id();
    for k in 0..200u32 {
        let base = 20_000 + ((pid.wrapping_mul(7) + k * 13) % 5_000) * 8;
        let free = (0..n)
            .all(|i| std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, (base + i) as u16)).is_ok());
        if free {
            return Ok(base as u16);
        }
    }
    bail!("no free UDP port range for {n} nodes")
}

/// Each partition's end after the heal, as its leader lists it.
/// After the heal and the final reads: the readers of the log workload's
/// topic that need draining (the pipeline's derived topic, the consumer
/// group); returns the problems met.
async fn drain_log_readers(ctx: &Arc<Ctx>, workloads: Workloads) -> Vec<String> {
    let mut problems = Vec::new();
    if workloads.pipeline {
        eprintln!("[{:>6} ms] reading the pipeline's topics", ctx.rec.now_ms());
        if !pipeline::drain(ctx).await {
            eprintln!("warning: the derived topic did not catch up with its source");
            problems.push("the derived topic did not catch up with its source".into());
        }
    }
    if workloads.group {
        eprintln!("[{:>6} ms] draining the consumer group", ctx.rec.now_ms());
        let ends = group_ends(ctx).await;
        if let Err(why) = group::drain(ctx, &ends).await {
            eprintln!("warning: the consumer group did not drain every partition: {why}");
            problems.push(format!("the consumer group's drain: {why}"));
        }
    }
    problems
}

async fn group_ends(ctx: &Ctx) -> std::collections::BTreeMap<u32, u64> {
    let mut ends = std::collections::BTreeMap::new();
    if let Ok(client) = workload::connect(&ctx.home).await
        && let Ok(parts) = client.list_partitions(Some(&ctx.topic)).await
    {
        for p in parts {
            ends.insert(p.partition, p.end_offset);
        }
    }
    ends
}

/// Which workloads a run has (`--workload`, comma-separated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workloads {
    pub log: bool,
    pub smartmodule: bool,
    /// A consumer group reading the log workload's topic (needs `log`).
    pub group: bool,
    /// A topic derived from the log workload's by a cluster-run connector
    /// (needs `log`), checked after the heal.
    pub pipeline: bool,
}

/// Parses `--workload`: `log`, `smartmodule`, or both (`log,smartmodule`).
pub fn parse_workload(s: &str) -> anyhow::Result<Workloads> {
    let mut w = Workloads {
        log: false,
        smartmodule: false,
        group: false,
        pipeline: false,
    };
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "log" => w.log = true,
            "smartmodule" => w.smartmodule = true,
            "group" => w.group = true,
            "pipeline" => w.pipeline = true,
            other => {
                bail!(
                    "unknown workload {other:?}: use log, smartmodule, group or pipeline (with log), or several (log,group)"
                )
            }
        }
    }
    if w.group && !w.log {
        bail!("--workload group reads what the log workload writes: use log,group");
    }
    if w.pipeline && !w.log {
        bail!("--workload pipeline derives a topic from the log workload's: use log,pipeline");
    }
    if !w.log && !w.smartmodule {
        bail!("--workload names no workload: use log, smartmodule, or both");
    }
    Ok(w)
}

#[allow(clippy::too_many_arguments)]
async fn run_async(
    cfg: &RunConfig,
    workloads: Workloads,
    sm_base: Option<Vec<u8>>,
    out: &Path,
    faults: &[Fault],
    netns: Option<String>,
    network_unavailable: Option<String>,
    disks_unavailable: Option<String>,
) -> anyhow::Result<(CheckResult, RunInfo)> {
    tokio::spawn(cleanup_when_interrupted());

    let home = out.join("home");
    std::fs::create_dir_all(&home)?;
    let in_ns = netns.is_some();
    let (env, clock_unavailable) = node_env(cfg, faults);
    let spec = ClusterSpec {
        sluice_bin: cfg.sluice_bin.clone(),
        home: home.clone(),
        data_dir: out.join("data"),
        nodes: cfg.nodes,
        port: if in_ns { 9000 } else { free_port(cfg.nodes)? },
        hosts: in_ns.then(|| (1..=cfg.nodes).map(netns::node_ip).collect()),
        env,
    };
    let cluster = Arc::new(Cluster::new(spec));
    eprintln!(
        "starting {} node(s) in {} ({})",
        cfg.nodes,
        out.join("data").display(),
        match &netns {
            Some(ns) => format!("network namespace {ns}"),
            None => "host network, 127.0.0.1".into(),
        }
    );
    cluster.start().await.context("cannot start the cluster")?;

    let rec = Arc::new(recorder::Recorder::create(&out.join("history.jsonl"))?);
    let ctx = Arc::new(Ctx::new(
        rec.clone(),
        home.clone(),
        "jepsen",
        cfg.partitions,
        cfg.seed,
        cfg.compression.stored(),
    ));
    workload::create_topic(
        &ctx,
        cfg.nodes.min(3),
        cfg.compression,
        segment_bytes(faults),
    )
    .await?;
    let sm_ctx = sm_base.map(|b| Arc::new(smartmodule::SmCtx::new(b)));
    if let Some(sm) = &sm_ctx {
        smartmodule::setup(&ctx, sm, cfg.nodes.min(3)).await?;
    }
    if workloads.pipeline {
        pipeline::setup(&ctx, cfg.nodes.min(3)).await?;
    }

    let steps = schedule::schedule(faults, cfg.duration, cfg.seed);
    let nem = Arc::new(nemesis::Nemesis::new(
        cluster.clone(),
        rec.clone(),
        ctx.clone(),
        network_unavailable.clone(),
        disks_unavailable.clone(),
        clock_unavailable.clone(),
    ));
    for (why, needs) in [
        (
            &network_unavailable,
            Fault::needs_network as fn(&Fault) -> bool,
        ),
        (&disks_unavailable, Fault::needs_disks),
        (&clock_unavailable, Fault::needs_clock),
    ] {
        if let Some(why) = why {
            for f in faults.iter().filter(|f| needs(f)) {
                nem.unavailable(f.family(), why);
            }
        }
    }
    if faults.iter().any(Fault::is_membership) {
        nem.membership_available();
    }

    eprintln!(
        "workload {} for {:?}, seed {}, {} fault(s) scheduled",
        cfg.workload,
        cfg.duration,
        cfg.seed,
        steps.len()
    );
    let t0 = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(workload::observe_leaders(ctx.clone())));
    if let Some(sm) = &sm_ctx {
        for w in 0..cfg.writers {
            tasks.push(tokio::spawn(smartmodule::worker(
                ctx.clone(),
                sm.clone(),
                w,
            )));
        }
    }
    let log_partitions = if workloads.log { cfg.partitions } else { 0 };
    if workloads.log {
        for w in 0..cfg.writers {
            tasks.push(tokio::spawn(workload::writer(ctx.clone(), w)));
        }
    }
    for p in 0..log_partitions {
        tasks.push(tokio::spawn(workload::consumer(
            ctx.clone(),
            p,
            ReadMode::Leader,
        )));
        // One replica consumer per partition, on a node that varies with p.
        let node = p % cfg.nodes + 1;
        tasks.push(tokio::spawn(workload::consumer(
            ctx.clone(),
            p,
            ReadMode::Replica(node),
        )));
    }
    if workloads.group {
        for s in 0..group::MEMBERS {
            tasks.push(tokio::spawn(group::slot(ctx.clone(), s)));
        }
        tasks.push(tokio::spawn(group::sampler(ctx.clone())));
    }
    let nemesis_task = {
        let nem = nem.clone();
        let steps = steps.clone();
        tokio::spawn(async move { nem.run(&steps, t0).await })
    };
    tokio::time::sleep_until(t0 + cfg.duration).await;
    ctx.stop();
    if tokio::time::timeout(Duration::from_secs(60), nemesis_task)
        .await
        .is_err()
    {
        eprintln!("warning: the nemesis did not finish its last step in time");
    }
    for t in tasks {
        // A send in flight ends within its timeout; then the writer stops.
        let abort = t.abort_handle();
        if tokio::time::timeout(workload::SEND_TIMEOUT * 2, t)
            .await
            .is_err()
        {
            abort.abort();
        }
    }

    eprintln!(
        "[{:>6} ms] healing, waiting for the replicas to converge",
        rec.now_ms()
    );
    nem.heal_all().await;
    let nodes = cluster.ids();
    let mut converged = true;
    if workloads.log {
        converged = workload::converge(&ctx, Duration::from_secs(60)).await;
        if !converged {
            eprintln!("warning: the replicas did not converge within 60 s");
        }
        eprintln!("[{:>6} ms] final reads on every node", rec.now_ms());
        workload::final_reads(&ctx, &nodes).await;
    }
    let mut workload_problems = drain_log_readers(&ctx, workloads).await;
    if let Some(sm) = &sm_ctx {
        let addrs: Vec<_> = nodes.iter().map(|&n| (n, cluster.addr(n))).collect();
        if !smartmodule::converge(&ctx, &addrs, Duration::from_secs(60)).await {
            converged = false;
            eprintln!("warning: the SmartModule stores did not converge within 60 s");
        }
        eprintln!(
            "[{:>6} ms] final SmartModule lists and consumes on every node",
            rec.now_ms()
        );
        let listed = smartmodule::final_lists(&ctx, &addrs, &mut workload_problems).await;
        smartmodule::final_consumes(&ctx, sm, &addrs, &listed).await;
        // For diagnosis: when each node's copy was registered, against the
        // history's clock (time_ms 0 = run_start_epoch_ms).
        let report = serde_json::json!({
            "run_start_epoch_ms": rec.start_epoch_ms(),
            "nodes": listed,
        });
        std::fs::write(
            out.join("smartmodules-final.json"),
            serde_json::to_string_pretty(&report)? + "\n",
        )
        .context("cannot write smartmodules-final.json")?;
    }
    cluster.kill_all_now();
    let logs = node_logs(&cluster, &nodes);
    let (repairs, snapshot_points) = (repairs_of(&logs), snapshot_points_of(&logs));

    let ops = rec.finish()?;
    let history = History::new(ops).context("the recorded history is malformed (a runner bug)")?;
    let result = check_with(
        &history,
        &CheckOptions {
            min_ops: cfg.min_ops,
            ..CheckOptions::default()
        },
    );
    let info = RunInfo {
        seed: cfg.seed,
        workload: cfg.workload.clone(),
        nemesis: cfg.nemesis.clone(),
        nodes: cfg.nodes,
        partitions: cfg.partitions,
        writers: cfg.writers,
        duration_s: cfg.duration.as_secs(),
        network_namespace: netns,
        unsafe_no_fsync: cfg.unsafe_no_fsync,
        log_entries: cfg.log_entries.clone(),
        raft_write_buffer: raft_write_buffer(cfg, faults),
        snapshot_points,
        schedule: steps.iter().map(describe_step).collect(),
        nemesis_problems: nem
            .problems
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
        converged,
        workload_problems,
        repairs,
        replay: cfg.replay(),
    };
    let text = serde_json::to_string_pretty(&Results {
        result: &result,
        run: &info,
    })?;
    std::fs::write(out.join("results.json"), text + "\n")
        .with_context(|| format!("cannot write results.json in {}", out.display()))?;
    Ok((result, info))
}

/// The run's lines of the summary, after the checker's.
pub fn render_run(info: &RunInfo) -> String {
    let mut s = format!(
        "run: workload {}, nemesis {}, {} node(s), {} s, seed {}{}\n",
        info.workload,
        info.nemesis,
        info.nodes,
        info.duration_s,
        info.seed,
        if info.unsafe_no_fsync {
            " (nodes WITHOUT fsync: self-test)"
        } else {
            ""
        }
    );
    s.push_str(&format!(
        "snapshot points made durable: {} (log entries {})\n",
        info.snapshot_points,
        info.log_entries
            .as_deref()
            .unwrap_or("at the nodes' default")
    ));
    if !info.converged {
        s.push_str("replicas did not converge before the final reads\n");
    }
    for p in &info.nemesis_problems {
        s.push_str(&format!("nemesis problem: {p}\n"));
    }
    for p in &info.workload_problems {
        s.push_str(&format!("workload problem: {p}\n"));
    }
    if !info.repairs.is_empty() {
        let each: Vec<String> = info
            .repairs
            .iter()
            .map(|r| format!("{} on node {} in {} ms", r.partition, r.node, r.repair_ms))
            .collect();
        s.push_str(&format!(
            "self-repairs: {} ({})\n",
            info.repairs.len(),
            each.join(", ")
        ));
    }
    s.push_str(&format!("replay: {}\n", info.replay));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_repairs_are_read_from_the_node_log() {
        let log = "2026-12-03T15:38:30.2Z  INFO sluice_spu::replicas: replica repaired partition=\"jepsen/0\" source=2\n\
            2026-12-03T15:38:31.4Z  INFO sluice_spu::replicas: repaired replica serves again (repair_ms: from finding the damage to serving) partition=\"jepsen/0\" source=2 batches=40 bytes=9000 copy_ms=205 repair_ms=1412\n\
            2026-12-03T15:38:32.0Z  INFO sluice_spu::replicas: repaired replica serves again (repair_ms: from finding the damage to serving) partition=jepsen/1 source=3 batches=1 bytes=10 copy_ms=5 repair_ms=90\n";
        assert_eq!(
            repairs_in_log(3, log),
            vec![
                Repair {
                    node: 3,
                    partition: "jepsen/0".into(),
                    repair_ms: 1412
                },
                Repair {
                    node: 3,
                    partition: "jepsen/1".into(),
                    repair_ms: 90
                },
            ]
        );
        assert!(repairs_in_log(1, "nothing repaired here\n").is_empty());
    }

    fn config() -> RunConfig {
        RunConfig {
            workload: "log".into(),
            nemesis: "power-loss".into(),
            duration: Duration::from_secs(30),
            seed: 6,
            nodes: 3,
            out: PathBuf::from("/tmp/jt"),
            writers: 4,
            partitions: 2,
            unsafe_no_fsync: false,
            sluice_bin: PathBuf::from("sluice"),
            min_ops: MIN_OPS_DEFAULT,
            compression: TopicCompression::Any,
            log_entries: None,
            raft_write_buffer: None,
        }
    }

    /// The replay names every option that shapes the run, `--min-ops` and
    /// `--unsafe-no-fsync` only when they are not the default.
    #[test]
    fn the_replay_repeats_every_option() {
        let c = config();
        assert_eq!(
            c.replay(),
            "jepsen-tests run --workload log --nemesis power-loss --duration 30 --seed 6 \
             --nodes 3 --writers 4 --partitions 2 --out /tmp/jt-replay"
        );
        let c = RunConfig {
            min_ops: 7,
            unsafe_no_fsync: true,
            compression: TopicCompression::Zstd,
            log_entries: Some("200:50".into()),
            raft_write_buffer: Some(65536),
            ..config()
        };
        assert!(
            c.replay().ends_with(
                "--partitions 2 --min-ops 7 --unsafe-no-fsync --compression zstd --log-entries 200:50 \
                 --raft-write-buffer 65536 --out /tmp/jt-replay"
            ),
            "{}",
            c.replay()
        );
    }

    #[test]
    fn options_a_run_refuses_are_refused_before_it_starts() {
        assert!(config().validate().is_ok());
        let e = |c: RunConfig| format!("{:#}", c.validate().unwrap_err());
        assert!(
            e(RunConfig {
                nodes: 8,
                ..config()
            })
            .contains("--nodes 8")
        );
        assert!(
            e(RunConfig {
                writers: workload::MAX_WRITERS + 1,
                ..config()
            })
            .contains("--writers 65536")
        );
        assert!(
            e(RunConfig {
                nemesis: "teleport".into(),
                ..config()
            })
            .contains("teleport")
        );
        assert!(
            e(RunConfig {
                workload: "bank".into(),
                ..config()
            })
            .contains("bank")
        );
        for bad in ["200", "0:50", "x:1", "200:-1"] {
            assert!(
                e(RunConfig {
                    log_entries: Some(bad.into()),
                    ..config()
                })
                .contains(&format!("--log-entries {bad:?} is not EVERY:KEPT")),
                "{bad}"
            );
        }
        assert!(
            RunConfig {
                log_entries: Some("200:50".into()),
                ..config()
            }
            .validate()
            .is_ok()
        );
        assert!(
            e(RunConfig {
                raft_write_buffer: Some(4096),
                ..config()
            })
            .contains("--raft-write-buffer 4096 is below")
        );
        assert!(
            RunConfig {
                raft_write_buffer: Some(RAFT_WRITE_BUFFER_BYTES_MIN),
                ..config()
            }
            .validate()
            .is_ok()
        );
    }

    /// A run with `log-disk-full` gives its nodes the smallest Raft
    /// memtables unless told otherwise; other runs keep the nodes' default.
    #[test]
    fn a_log_disk_full_run_reaches_the_raft_log_unless_told_otherwise() {
        let log = schedule::parse_nemesis("kill,log-disk-full:one", 3).unwrap();
        let plain = schedule::parse_nemesis("kill,disk-full", 3).unwrap();
        assert_eq!(
            raft_write_buffer(&config(), &log),
            Some(RAFT_WRITE_BUFFER_BYTES_MIN)
        );
        assert_eq!(raft_write_buffer(&config(), &plain), None);
        let told = RunConfig {
            raft_write_buffer: Some(1 << 20),
            ..config()
        };
        assert_eq!(raft_write_buffer(&told, &log), Some(1 << 20));
        let (env, _) = node_env(&config(), &log);
        assert!(
            env.contains(&(RAFT_WRITE_BUFFER_ENV.to_string(), "65536".to_string())),
            "{env:?}"
        );
    }
}
