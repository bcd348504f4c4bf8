//! `sluice cluster ...`: start, inspect, stop and delete a local cluster.
//!
//! A local cluster lives in one root directory (default `$SLUICE_HOME/local`):
//!
//! ```text
//! cluster.toml     cluster id, node count, first port
//! ca/              the cluster CA (ca.pem, ca.key): only here, never in a node dir
//! node-<i>/        node i's data dir (see sluice_spu::DataDir), node.log (+ node.log.1,
//!                  bounded: see `logfile`), node.stderr (panics), node.pid
//! ```
//! `$SLUICE_HOME/local-cluster.toml` remembers the root, so `status`,
//! `shutdown` and `delete` find it; profile "local" in `config.toml` points
//! clients at node 1 with the cluster CA.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::timeouts::{NODE_PROBE_TIMEOUT, NODE_STOP_POLL, NODE_STOP_TIMEOUT};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use sluice_client::config::ClientConfig;
use sluice_client::proto::{ClusterStatus, NodeStatus};
use sluice_transport::PeerIdentity;

use crate::{Globals, OutputArgs, OutputFormat};

mod start;
mod unregister;
use start::start;

const PROFILE: &str = "local";
/// Where `cluster start --local` keeps the admin client certificate the
/// local profile presents (under the cluster's root directory).
const ADMIN_DIR: &str = "admin";
/// The principal of that certificate: a super user of every node by default.
const ADMIN_PRINCIPAL: &str = "admin";
const MAX_LOCAL_SPUS: u32 = 7;

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Start a cluster: today a local one, node processes on 127.0.0.1 in the background.
    Start(StartArgs),
    /// Show the cluster's nodes and controller leader.
    Status(OutputArgs),
    /// Stop the local cluster, keeping its data.
    Shutdown,
    /// Start the local cluster again after `cluster shutdown`, as it was
    /// (its nodes, ports and data); the same as `cluster start --local`.
    Resume,
    /// Stop the local cluster and remove its data.
    Delete {
        /// Accepted for Fluvio's scripts: delete never asks anyway.
        #[arg(long)]
        force: bool,
    },
    /// SPUs: id, address, status, partitions led and held.
    #[command(subcommand)]
    Spu(SpuCmd),
    /// The cluster CA and node/client certificates of a multi-host cluster.
    #[command(subcommand)]
    Ca(crate::cert::CaCmd),
}

#[derive(Debug, Subcommand)]
pub enum SpuCmd {
    /// List the SPUs of the cluster.
    #[command(visible_alias = "ls")]
    List(OutputArgs),
    /// Remove an SPU from the cluster for good, after its partitions were
    /// moved away (`sluice partition reassign`; the system topics' replicas
    /// are moved by this command). Its id is never reused; the node stops
    /// by itself.
    Unregister {
        /// The SPU's id.
        #[arg(long)]
        id: u64,
    },
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Start node processes on this machine. (A cluster across machines is
    /// started with `sluice node run` on each; see README.md.)
    #[arg(long)]
    pub local: bool,
    /// Number of nodes (SPUs), each its own process. Given for a running
    /// cluster with more nodes than it has, the new nodes join it.
    #[arg(long, default_value_t = 1)]
    pub spus: u32,
    /// Where the cluster keeps its data (default: $SLUICE_HOME/local).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Controller voters (the lowest node ids); the other nodes are learners.
    /// Default: min(N, 3).
    #[arg(long, value_name = "N")]
    pub controllers: Option<u32>,
    /// Port of node 1 (node i listens on PORT + i - 1), on 127.0.0.1.
    #[arg(long, default_value_t = 9003)]
    pub port: u16,
    /// One IP address per node (node i listens on the i-th): e.g. distinct loopback
    /// addresses inside a network namespace, so faults can be injected between nodes.
    #[arg(long, value_delimiter = ',', value_name = "IP,IP,...")]
    pub hosts: Vec<IpAddr>,
    /// Do not serve Prometheus metrics. By default node i serves them at
    /// http://IP:PORT/metrics over TCP, PORT being its QUIC (UDP) port.
    #[arg(long)]
    pub no_metrics: bool,
    /// Keep every Raft group (partitions and the controller) ticking even while idle (nodes run
    /// with `--no-quiesce`). By default an idle group sleeps: no heartbeats
    /// until it is written to again.
    #[arg(long)]
    pub no_quiesce: bool,
    /// How long a Raft group must take no entry before it sleeps (default
    /// 300ms, at least 100ms); passed to every node (`node run --quiesce-idle`).
    #[arg(long, value_name = "DURATION", value_parser = crate::node::parse_quiesce_idle, conflicts_with = "no_quiesce")]
    pub quiesce_idle: Option<std::time::Duration>,
    /// How often nodes probe each other for the leaders of their sleeping
    /// groups (default 900ms; 50ms to 5s); passed to every node (`node run
    /// --quiesce-probe`). Longer: an idle cluster sends less, and an idle
    /// partition's dead leader is noticed later (after 10/3 of it) unless a
    /// writer's unanswered request makes its followers ask it at once.
    #[arg(long, value_name = "DURATION", value_parser = crate::node::parse_quiesce_probe, conflicts_with = "no_quiesce")]
    pub quiesce_probe: Option<std::time::Duration>,
    /// Send every heartbeat, even to followers that just acknowledged an
    /// append; passed to every node (`node run --no-heartbeat-skip`).
    #[arg(long)]
    pub no_heartbeat_skip: bool,
    /// Send each Raft append alone, one at a time per follower; passed to
    /// every node (`node run --no-append-streams`).
    #[arg(long)]
    pub no_append_streams: bool,
    /// Keep the audit trail in the nodes' logs only, not in the system topic
    /// `sluice-audit`; passed to every node (`node run --no-audit-topic`).
    #[arg(long)]
    pub no_audit_topic: bool,
    /// Start read-only (Fluvio's `--read-only`): the topics of this Fluvio
    /// metadata file (JSON) are created when missing, and every change of the
    /// metadata from clients is refused ("permission denied"); records
    /// flow. Kept for later starts of the same cluster.
    #[arg(long, value_name = "FILE")]
    pub read_only: Option<PathBuf>,
    /// Start a cluster that was started read-only as an ordinary one again
    /// (its topics stay; changes are accepted).
    #[arg(long, conflicts_with = "read_only")]
    pub read_write: bool,
}

/// What `cluster.toml` in the cluster root records.
#[derive(Debug, Serialize, Deserialize)]
struct LocalCluster {
    cluster_id: String,
    spus: u32,
    port: u16,
    #[serde(default = "three")]
    controllers: u32,
    /// Node i's IP address is `hosts[i - 1]`; empty means 127.0.0.1 for all.
    #[serde(default)]
    hosts: Vec<IpAddr>,
    /// The nodes that formed the cluster (they start with `--peer`); nodes
    /// added later start with `--join`. `None`: all of them.
    #[serde(default)]
    initial_spus: Option<u32>,
    /// The metadata file a read-only cluster's nodes start with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    read_only: Option<PathBuf>,
}

impl LocalCluster {
    fn initial(&self) -> u32 {
        self.initial_spus.unwrap_or(self.spus)
    }
}

fn three() -> u32 {
    3
}

/// `$SLUICE_HOME/local-cluster.toml`: where the local cluster's root is.
#[derive(Debug, Serialize, Deserialize)]
struct Pointer {
    root: PathBuf,
}

pub async fn run(cmd: ClusterCmd, globals: &Globals) -> anyhow::Result<()> {
    match cmd {
        ClusterCmd::Start(args) => start(args, globals).await,
        ClusterCmd::Status(out) => status(out, globals).await,
        ClusterCmd::Shutdown => {
            let root = local_root(&globals.home)?;
            let (stopped, id) = shutdown(&root).await?;
            println!(
                "Stopped {stopped} node(s) of local cluster {id}; data kept in {}",
                root.display()
            );
            Ok(())
        }
        ClusterCmd::Delete { force: _ } => delete(globals).await,
        ClusterCmd::Resume => {
            let root = globals.home.join("local");
            if !root.join("cluster.toml").exists() {
                bail!(
                    "there is no local cluster in {} to resume: start one with `sluice cluster start --local`",
                    root.display()
                );
            }
            let args = StartArgs {
                local: true,
                spus: 1,
                data_dir: None,
                controllers: None,
                port: 9003,
                hosts: Vec::new(),
                no_metrics: false,
                no_quiesce: false,
                quiesce_idle: None,
                quiesce_probe: None,
                no_heartbeat_skip: false,
                no_append_streams: false,
                no_audit_topic: false,
                read_only: None,
                read_write: false,
            };
            start(args, globals).await
        }
        ClusterCmd::Spu(SpuCmd::List(out)) => spu_list(out, globals).await,
        ClusterCmd::Spu(SpuCmd::Unregister { id }) => unregister::unregister(globals, id).await,
        ClusterCmd::Ca(cmd) => crate::cert::run(cmd, globals).await,
    }
}

fn pointer_path(home: &Path) -> PathBuf {
    home.join("local-cluster.toml")
}

fn local_root(home: &Path) -> anyhow::Result<PathBuf> {
    let path = pointer_path(home);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(toml::from_str::<Pointer>(&text)
            .with_context(|| format!("invalid {}", path.display()))?
            .root),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "no local cluster in {}: start one with `sluice cluster start --local`",
                home.display()
            )
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Whether `<dir>/<stem>.pem` (with its key) exists and names `identity`.
fn names(dir: &Path, stem: &str, identity: &PeerIdentity) -> bool {
    sluice_transport::CertKeyPair::load(dir, stem)
        .ok()
        .and_then(|pair| pair.identity().ok())
        .as_ref()
        == Some(identity)
}

fn node_dir(root: &Path, i: u32) -> PathBuf {
    root.join(format!("node-{i}"))
}

fn new_cluster_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("local-{:x}{:04x}", nanos, std::process::id() & 0xffff)
}

/// The last `n` lines of a log file, for error messages.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The pid of the node whose data dir is `dir`, if that process is alive.
fn running_pid(dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(dir.join("node.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: signal 0 only checks that the process exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    // Guard against pid reuse: the process must be a node of this data dir.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let ours = String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy());
    (alive && ours).then_some(pid)
}

/// Asks every node of the cluster about itself (each answers with its own
/// pid, data dir and uptime), so the view does not depend on which node the
/// profile reached; a node that does not answer within a second is offline.
pub(crate) async fn probe_nodes(
    globals: &Globals,
) -> anyhow::Result<(
    ClusterStatus,
    Vec<(NodeStatus, Option<sluice_client::Client>)>,
)> {
    let client = crate::connect(globals).await?;
    let status = client.cluster_status().await?;
    let probes = status.nodes.iter().map(|n| async move {
        let answer = tokio::time::timeout(NODE_PROBE_TIMEOUT, async {
            let c = crate::connect_node(globals, &n.advertised_addr).await?;
            let own = c.cluster_status().await.ok()?;
            let me = own.nodes.into_iter().find(|m| m.id == n.id && m.healthy)?;
            Some((me, c))
        })
        .await
        .ok()
        .flatten();
        match answer {
            Some((me, c)) => (
                NodeStatus {
                    role: n.role.clone(),
                    ..me
                },
                Some(c),
            ),
            None => (
                NodeStatus {
                    healthy: false,
                    ..n.clone()
                },
                None,
            ),
        }
    });
    let nodes = futures::future::join_all(probes).await;
    Ok((status, nodes))
}

async fn status(out: OutputArgs, globals: &Globals) -> anyhow::Result<()> {
    let (mut status, nodes) = probe_nodes(globals).await?;
    status.nodes = nodes.into_iter().map(|(n, _)| n).collect();
    match out.output {
        OutputFormat::Table => {
            println!("Cluster {}", status.cluster_id);
            let rows: Vec<Vec<String>> = status
                .nodes
                .iter()
                .map(|n| {
                    vec![
                        n.id.to_string(),
                        n.advertised_addr.clone(),
                        n.role.clone(),
                        if n.healthy { "online" } else { "offline" }.into(),
                        if n.pid == 0 {
                            "-".into()
                        } else {
                            n.pid.to_string()
                        },
                        if n.data_dir.is_empty() {
                            "-".into()
                        } else {
                            n.data_dir.clone()
                        },
                    ]
                })
                .collect();
            crate::output::print_table(
                &["ID", "ADDRESS", "ROLE", "HEALTH", "PID", "DATA-DIR"],
                &rows,
            );
        }
        other => crate::output::print_structured(&status, other)?,
    }
    Ok(())
}

/// An SPU as `cluster spu list -O json` prints it.
#[derive(Debug, Serialize)]
struct SpuOut {
    id: u64,
    address: String,
    status: &'static str,
    /// Partitions this SPU leads now (asked of the SPU itself).
    partitions_led: Option<u64>,
    /// Partition replicas assigned to this SPU.
    partitions_held: u64,
    /// The id again where Fluvio's JSON has it (`.spec.spuId`), for its scripts.
    spec: SpuSpecOut,
}

#[derive(Debug, Serialize)]
struct SpuSpecOut {
    #[serde(rename = "spuId")]
    spu_id: u64,
}

async fn spu_list(out: OutputArgs, globals: &Globals) -> anyhow::Result<()> {
    let (_, nodes) = probe_nodes(globals).await?;
    let client = crate::connect(globals).await?;
    let topics = client.list_topics().await?;
    let mut spus = Vec::new();
    for (node, c) in nodes {
        let held = topics
            .iter()
            .flat_map(|t| &t.assignments)
            .filter(|a| a.replicas.contains(&node.id))
            .count() as u64;
        let led = match &c {
            Some(c) => c
                .list_partitions(None)
                .await
                .ok()
                .map(|ps| ps.iter().filter(|p| p.leader == Some(node.id)).count() as u64),
            None => None,
        };
        spus.push(SpuOut {
            spec: SpuSpecOut { spu_id: node.id },
            id: node.id,
            address: node.advertised_addr,
            status: if node.healthy { "online" } else { "offline" },
            partitions_led: led,
            partitions_held: held,
        });
    }
    match out.output {
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = spus
                .iter()
                .map(|s| {
                    vec![
                        s.id.to_string(),
                        s.address.clone(),
                        s.status.to_string(),
                        s.partitions_led.map_or("-".into(), |l| l.to_string()),
                        s.partitions_held.to_string(),
                    ]
                })
                .collect();
            crate::output::print_table(&["ID", "ADDRESS", "STATUS", "LED", "HELD"], &rows);
            Ok(())
        }
        other => crate::output::print_structured(&spus, other),
    }
}

/// Stops the local cluster's running nodes; returns how many it stopped and
/// the cluster's id.
async fn shutdown(root: &Path) -> anyhow::Result<(u32, String)> {
    let meta: LocalCluster = toml::from_str(&std::fs::read_to_string(root.join("cluster.toml"))?)?;
    let progress = crate::progress::spinner("stopping local cluster");
    let mut stopped = 0;
    for i in 1..=meta.spus {
        let dir = node_dir(root, i);
        let Some(pid) = running_pid(&dir) else {
            continue;
        };
        // SAFETY: plain signal delivery to a pid we checked is our node.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + NODE_STOP_TIMEOUT;
        while running_pid(&dir).is_some() {
            if Instant::now() > deadline {
                tracing::warn!(node = i, pid, "node did not stop in time; killing it");
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            tokio::time::sleep(NODE_STOP_POLL).await;
        }
        let _ = std::fs::remove_file(dir.join("node.pid"));
        stopped += 1;
    }
    progress.finish_and_clear();
    Ok((stopped, meta.cluster_id))
}

async fn delete(globals: &Globals) -> anyhow::Result<()> {
    let root = local_root(&globals.home)?;
    let stopped = if root.join("cluster.toml").exists() {
        shutdown(&root).await?.0
    } else {
        0
    };
    std::fs::remove_dir_all(&root).with_context(|| format!("cannot remove {}", root.display()))?;
    let _ = std::fs::remove_file(pointer_path(&globals.home));
    let mut config = ClientConfig::load(&globals.home)?;
    config.remove_profile(PROFILE);
    config.save(&globals.home)?;
    println!(
        "Stopped {stopped} node(s) and deleted the local cluster with its data in {}",
        root.display()
    );
    Ok(())
}
