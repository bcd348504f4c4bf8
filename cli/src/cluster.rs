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

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use crate::timeouts::{
    CLUSTER_READY_POLL, CLUSTER_READY_TIMEOUT, NODE_PROBE_TIMEOUT, NODE_STOP_POLL,
    NODE_STOP_TIMEOUT,
};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use sluice_client::config::{ClientConfig, Profile};
use sluice_client::proto::{ClusterStatus, NodeStatus};
use sluice_transport::{ClusterCa, PeerIdentity};

use crate::{Globals, OutputArgs, OutputFormat};

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
    /// moved away (`sluice partition reassign`). Its id is never reused; the
    /// node stops by itself.
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
    /// 2s, at least 100ms); passed to every node (`node run --quiesce-idle`).
    #[arg(long, value_name = "DURATION", value_parser = crate::node::parse_quiesce_idle, conflicts_with = "no_quiesce")]
    pub quiesce_idle: Option<std::time::Duration>,
    /// Send every heartbeat, even to followers that just acknowledged an
    /// append; passed to every node (`node run --no-heartbeat-skip`).
    #[arg(long)]
    pub no_heartbeat_skip: bool,
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
                no_heartbeat_skip: false,
                read_only: None,
                read_write: false,
            };
            start(args, globals).await
        }
        ClusterCmd::Spu(SpuCmd::List(out)) => spu_list(out, globals).await,
        ClusterCmd::Spu(SpuCmd::Unregister { id }) => {
            let client = crate::connect(globals).await?;
            client
                .unregister_node(id)
                .await
                .with_context(|| format!("cannot unregister SPU {id}"))?;
            println!("SPU {id} unregistered; it stops by itself and its id is never reused");
            Ok(())
        }
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

async fn start(args: StartArgs, globals: &Globals) -> anyhow::Result<()> {
    if !args.local {
        bail!(
            "only local clusters can be started so far: add --local (multi-host nodes run with `sluice node run`)"
        );
    }
    if !(1..=MAX_LOCAL_SPUS).contains(&args.spus) {
        bail!(
            "--spus {} is out of range: a local cluster has 1 to {MAX_LOCAL_SPUS} nodes",
            args.spus
        );
    }
    let home = &globals.home;
    let args_metrics = !args.no_metrics;
    let root = match args.data_dir {
        Some(dir) => std::path::absolute(&dir)
            .with_context(|| format!("bad --data-dir {}", dir.display()))?,
        None => home.join("local"),
    };
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    // The local cluster's directory holds the CA's private key and every
    // node's data: its owner's alone.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {} to its owner", root.display()))?;
    }
    let meta_path = root.join("cluster.toml");
    let cluster = match std::fs::read_to_string(&meta_path) {
        Ok(text) => {
            let mut c: LocalCluster = toml::from_str(&text)
                .with_context(|| format!("invalid {}", meta_path.display()))?;
            eprintln!(
                "Resuming local cluster {} from {}",
                c.cluster_id,
                root.display()
            );
            if args.spus > c.spus {
                // Growing: the new nodes join the running cluster.
                if !c.hosts.is_empty() {
                    if args.hosts.len() != args.spus as usize
                        || args.hosts[..c.hosts.len()] != c.hosts[..]
                    {
                        bail!(
                            "this cluster's nodes have their own IPs ({}): to grow it to {} nodes, repeat them and add one per new node with --hosts",
                            c.hosts
                                .iter()
                                .map(IpAddr::to_string)
                                .collect::<Vec<_>>()
                                .join(","),
                            args.spus
                        );
                    }
                    c.hosts = args.hosts.clone();
                }
                let added = if args.spus == c.spus + 1 {
                    format!("node {}", args.spus)
                } else {
                    format!("nodes {} to {}", c.spus + 1, args.spus)
                };
                eprintln!("Adding {added} to it");
                if c.controllers < args.spus.min(3) {
                    eprintln!(
                        "warning: the controller keeps its {} voter(s) (nodes 1 to {}); the new \
                         nodes hold the metadata as learners but do not vote, so the cluster does \
                         not survive the loss of {}. The voters are fixed when a cluster is \
                         created: for {} voters, create it with `--spus {}` (or `--controllers`).",
                        c.controllers,
                        c.controllers,
                        if c.controllers == 1 {
                            "node 1".to_string()
                        } else {
                            "a majority of them".to_string()
                        },
                        args.spus.min(3),
                        args.spus
                    );
                }
                c.initial_spus.get_or_insert(c.spus);
                c.spus = args.spus;
                std::fs::write(&meta_path, toml::to_string(&c)?)
                    .with_context(|| format!("cannot write {}", meta_path.display()))?;
            }
            c
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let controllers = args.controllers.unwrap_or(args.spus.min(3));
            if !(1..=args.spus).contains(&controllers) {
                bail!(
                    "--controllers {controllers} is out of range: 1 to the {} node(s) of the cluster",
                    args.spus
                );
            }
            if !args.hosts.is_empty() && args.hosts.len() != args.spus as usize {
                bail!(
                    "--hosts names {} address(es) but --spus is {}: give one address per node",
                    args.hosts.len(),
                    args.spus
                );
            }
            let c = LocalCluster {
                cluster_id: new_cluster_id(),
                spus: args.spus,
                port: args.port,
                controllers,
                hosts: args.hosts.clone(),
                initial_spus: Some(args.spus),
                read_only: None,
            };
            std::fs::write(&meta_path, toml::to_string(&c)?)
                .with_context(|| format!("cannot write {}", meta_path.display()))?;
            c
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", meta_path.display())),
    };
    // A read-only file given now is checked before any node starts, and
    // kept for the cluster's later starts.
    let mut cluster = cluster;
    // Nodes take the mode when they start: switching it while some run
    // would leave the cluster half read-only.
    if (args.read_only.is_some() || args.read_write)
        && (1..=cluster.spus).any(|i| running_pid(&node_dir(&root, i)).is_some())
    {
        bail!(
            "--read-only and --read-write apply when nodes start, and some nodes of this cluster \
             run: stop it first (`sluice cluster shutdown`), then start it with the flag"
        );
    }
    if args.read_write && cluster.read_only.take().is_some() {
        std::fs::write(&meta_path, toml::to_string(&cluster)?)
            .with_context(|| format!("cannot write {}", meta_path.display()))?;
    }
    if let Some(file) = &args.read_only {
        let file = std::path::absolute(file)
            .with_context(|| format!("bad --read-only {}", file.display()))?;
        crate::read_only::topics(&file)?;
        cluster.read_only = Some(file);
        std::fs::write(&meta_path, toml::to_string(&cluster)?)
            .with_context(|| format!("cannot write {}", meta_path.display()))?;
    }
    let read_only_topics = match &cluster.read_only {
        Some(file) => crate::read_only::topics(file)?,
        None => Vec::new(),
    };
    // Resuming starts the nodes that are not running (e.g. after a crash).
    // Unregistered nodes never start again.
    let active: Vec<u32> = (1..=cluster.spus)
        .filter(|i| {
            !node_dir(&root, *i)
                .join(sluice_spu::UNREGISTERED_MARKER)
                .exists()
        })
        .collect();
    let stopped: Vec<u32> = active
        .iter()
        .copied()
        .filter(|i| running_pid(&node_dir(&root, *i)).is_none())
        .collect();
    if stopped.is_empty() {
        bail!(
            "all {} node(s) of the local cluster are already running; see `sluice cluster status`",
            cluster.spus
        );
    }
    let ip_of = |i: u32| {
        cluster
            .hosts
            .get(i as usize - 1)
            .copied()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    };
    let addr_of =
        |i: u32| SocketAddr::new(ip_of(i), (cluster.port as u32 + i - 1) as u16).to_string();
    let peers: Vec<String> = (1..=cluster.initial())
        .map(|i| format!("{i}={}", addr_of(i)))
        .collect();
    // A node added later joins through a node that runs (or will run) now.
    let join_via = |me: u32| {
        active
            .iter()
            .copied()
            .filter(|&i| i != me)
            .find(|&i| running_pid(&node_dir(&root, i)).is_some())
            .or_else(|| {
                active
                    .iter()
                    .copied()
                    .find(|&i| i != me && i <= cluster.initial())
            })
            .map(addr_of)
    };

    let ca_dir = root.join("ca");
    let ca = if ca_dir.join("ca.pem").exists() {
        ClusterCa::load(&ca_dir)
            .with_context(|| format!("cannot load the cluster CA from {}", ca_dir.display()))?
    } else {
        let ca = ClusterCa::generate(&cluster.cluster_id)?;
        ca.save(&ca_dir)
            .with_context(|| format!("cannot save the cluster CA in {}", ca_dir.display()))?;
        ca
    };

    let exe = std::env::current_exe().context("cannot find the sluice executable")?;
    let progress = crate::progress::spinner("starting local cluster");
    let mut children = Vec::new();
    for &i in &stopped {
        let dir = node_dir(&root, i);
        let tls = dir.join("tls");
        // Issued once; reissued if it names no node (a release before
        // certificates carried identities), since nodes now require one.
        if !names(&tls, "node", &PeerIdentity::Node(u64::from(i))) {
            let ips = [ip_of(i)];
            ca.issue_node(u64::from(i), &[], &ips)?.save(&tls, "node")?;
            std::fs::write(tls.join("ca.pem"), ca.cert_pem())?;
        }
        let listen = addr_of(i);
        // The node writes its log to node.log itself, bounded; stderr only
        // carries what comes before logging starts or outside it (a panic's
        // default report), so it has its own file.
        let log_path = dir.join("node.log");
        let stderr_path = dir.join("node.stderr");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_path)
            .with_context(|| format!("cannot open {}", stderr_path.display()))?;
        let child = tokio::process::Command::new(&exe)
            .args([
                "node",
                "run",
                "--id",
                &i.to_string(),
                "--cluster-id",
                &cluster.cluster_id,
                "--listen",
                &listen,
                "--controller-voters",
                &cluster.controllers.to_string(),
            ])
            .arg("--data-dir")
            .arg(&dir)
            .args(if i <= cluster.initial() {
                peers
                    .iter()
                    .flat_map(|p| ["--peer".to_string(), p.clone()])
                    .collect()
            } else {
                match join_via(i) {
                    Some(via) => vec!["--join".to_string(), via],
                    None => bail!("node {i} has no running node to join through"),
                }
            })
            // RUST_LOG, when set, is inherited; otherwise the node's own
            // default applies (`NODE_LOG_FILTER_DEFAULT`).
            .args(["--log-format", globals.log_format.as_str()])
            .arg("--log-file")
            .arg(&log_path)
            .args(if args_metrics {
                vec!["--metrics-listen".to_string(), listen.clone()]
            } else {
                vec![]
            })
            .args(args.no_quiesce.then_some("--no-quiesce"))
            .args(args.no_heartbeat_skip.then_some("--no-heartbeat-skip"))
            .args(
                args.quiesce_idle
                    .map(|d| vec!["--quiesce-idle".to_string(), format!("{}ms", d.as_millis())])
                    .unwrap_or_default(),
            )
            .args(
                cluster
                    .read_only
                    .iter()
                    .flat_map(|f| [std::ffi::OsString::from("--read-only"), f.into()]),
            )
            .stdin(Stdio::null())
            .stdout(stderr.try_clone()?)
            .stderr(stderr)
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .with_context(|| format!("cannot start node {i}"))?;
        let pid = child.id().unwrap_or_default();
        std::fs::write(dir.join("node.pid"), pid.to_string())?;
        children.push((i, child, log_path));
    }

    let admin_dir = root.join(ADMIN_DIR);
    if !names(
        &admin_dir,
        "client",
        &PeerIdentity::Client(ADMIN_PRINCIPAL.into()),
    ) {
        ca.issue_client(ADMIN_PRINCIPAL)?
            .save(&admin_dir, "client")
            .with_context(|| {
                format!(
                    "cannot save the admin certificate in {}",
                    admin_dir.display()
                )
            })?;
    }
    let mut config = ClientConfig::load(home)?;
    config.set_profile(
        PROFILE,
        Profile {
            // Every node: the client fails over to the next when one is down.
            endpoint: active
                .iter()
                .copied()
                .map(addr_of)
                .collect::<Vec<_>>()
                .join(","),
            ca_cert: ca_dir.join("ca.pem"),
            client_cert: Some(admin_dir.join("client.pem")),
            client_key: Some(admin_dir.join("client.key")),
        },
    );
    config.set_current(PROFILE);
    config.save(home)?;
    std::fs::write(
        pointer_path(home),
        toml::to_string(&Pointer { root: root.clone() })?,
    )?;

    let deadline = Instant::now() + CLUSTER_READY_TIMEOUT;
    loop {
        for (i, child, log_path) in &mut children {
            if let Some(exit) = child.try_wait()? {
                progress.finish_and_clear();
                let _ = std::fs::remove_file(node_dir(&root, *i).join("node.pid"));
                let stderr_path = log_path.with_extension("stderr");
                bail!(
                    "node {i} exited ({exit}) while starting; last lines of {}:\n{}\nand of {}:\n{}",
                    log_path.display(),
                    tail(log_path, 8),
                    stderr_path.display(),
                    tail(&stderr_path, 4)
                );
            }
        }
        // Ready when the metadata lists every node and each started node
        // answers by itself with a controller leader known.
        let ready = match sluice_client::Client::from_profile(home, Some(PROFILE), None).await {
            Ok(client) => client
                .cluster_status()
                .await
                .is_ok_and(|s| s.controller_leader.is_some() && s.nodes.len() == active.len()),
            Err(_) => false,
        } && futures::future::join_all(stopped.iter().map(|&i| async move {
            let addr = addr_of(i);
            let client =
                sluice_client::Client::from_profile(home, Some(PROFILE), Some(&addr)).await;
            match client {
                Ok(c) => c
                    .cluster_status()
                    .await
                    .is_ok_and(|s| s.controller_leader.is_some()),
                Err(_) => false,
            }
        }))
        .await
        .into_iter()
        .all(|ok| ok);
        if ready {
            break;
        }
        if Instant::now() > deadline {
            progress.finish_and_clear();
            bail!(
                "the local cluster did not become ready within {CLUSTER_READY_TIMEOUT:?}; see the logs in {}",
                root.display()
            );
        }
        tokio::time::sleep(CLUSTER_READY_POLL).await;
    }
    if !read_only_topics.is_empty() {
        // The controller leader creates them; wait until they are there.
        let client = sluice_client::Client::from_profile(home, Some(PROFILE), None).await?;
        loop {
            let have: Vec<String> = client
                .list_topics()
                .await
                .map(|ts| ts.into_iter().map(|t| t.spec.name).collect())
                .unwrap_or_default();
            if read_only_topics.iter().all(|t| have.contains(&t.name)) {
                break;
            }
            if Instant::now() > deadline {
                progress.finish_and_clear();
                bail!(
                    "the topics of the read-only file were not all created within \
                     {CLUSTER_READY_TIMEOUT:?}; see the logs in {}",
                    root.display()
                );
            }
            tokio::time::sleep(CLUSTER_READY_POLL).await;
        }
    }
    progress.finish_and_clear();
    if let Some(file) = &cluster.read_only {
        println!(
            "Read-only: topics from {} ({}); changes of the metadata are refused",
            file.display(),
            read_only_topics
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!(
        "Local cluster {} is running: {} node(s), profile \"{PROFILE}\" -> {}, data in {}",
        cluster.cluster_id,
        cluster.spus,
        addr_of(1),
        root.display()
    );
    if args_metrics && !stopped.is_empty() {
        let urls: Vec<String> = stopped
            .iter()
            .map(|&i| format!("http://{}/metrics", addr_of(i)))
            .collect();
        println!("Metrics (Prometheus): {}", urls.join(" "));
    }
    Ok(())
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
