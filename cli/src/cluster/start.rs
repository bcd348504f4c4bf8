//! `sluice cluster start --local`, in the order it runs: the cluster's root
//! directory, its `cluster.toml` (created, resumed or grown), the read-only
//! mode, the CA, one process per stopped node, the admin profile, and the
//! wait until every node answers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, bail};
use sluice_client::config::{ClientConfig, Profile};
use sluice_client::proto::TopicSpec;
use sluice_transport::{ClusterCa, PeerIdentity};

use super::{
    ADMIN_DIR, ADMIN_PRINCIPAL, LocalCluster, MAX_LOCAL_SPUS, PROFILE, Pointer, StartArgs,
    new_cluster_id, node_dir, pointer_path, running_pid, tail,
};
use crate::Globals;
use crate::timeouts::{CLUSTER_READY_POLL, CLUSTER_READY_TIMEOUT};

pub(super) async fn start(args: StartArgs, globals: &Globals) -> anyhow::Result<()> {
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
    let root = prepare_root(&args, home)?;
    let meta_path = root.join("cluster.toml");
    let mut cluster = match std::fs::read_to_string(&meta_path) {
        Ok(text) => resume(&args, &meta_path, &text, &root)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(&args, &meta_path)?,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", meta_path.display())),
    };
    let read_only_topics = apply_read_mode(&args, &mut cluster, &root, &meta_path)?;
    let layout = Layout::new(root, cluster)?;
    let ca = load_or_create_ca(&layout)?;

    let exe = std::env::current_exe().context("cannot find the sluice executable")?;
    let progress = crate::progress::spinner("starting local cluster");
    let mut children = Vec::new();
    for &i in &layout.stopped {
        children.push(spawn_node(&layout, i, &ca, &exe, &args, globals)?);
    }
    save_admin_profile(&layout, &ca, home)?;

    let deadline = Instant::now() + CLUSTER_READY_TIMEOUT;
    let ready = async {
        wait_ready(&layout, &mut children, home, deadline).await?;
        if !read_only_topics.is_empty() {
            wait_for_topics(&layout, &read_only_topics, home, deadline).await?;
        }
        anyhow::Ok(())
    };
    let ready = ready.await;
    progress.finish_and_clear();
    ready?;
    report(&layout, &args, &read_only_topics);
    Ok(())
}

/// The cluster's root directory, created and restricted to its owner: it
/// holds the CA's private key and every node's data.
fn prepare_root(args: &StartArgs, home: &Path) -> anyhow::Result<PathBuf> {
    let root = match &args.data_dir {
        Some(dir) => {
            std::path::absolute(dir).with_context(|| format!("bad --data-dir {}", dir.display()))?
        }
        None => home.join("local"),
    };
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {} to its owner", root.display()))?;
    }
    Ok(root)
}

fn save_cluster(cluster: &LocalCluster, meta_path: &Path) -> anyhow::Result<()> {
    std::fs::write(meta_path, toml::to_string(cluster)?)
        .with_context(|| format!("cannot write {}", meta_path.display()))
}

/// An existing cluster, grown when `--spus` asks for more nodes than it has
/// (the new nodes join the running cluster).
fn resume(
    args: &StartArgs,
    meta_path: &Path,
    text: &str,
    root: &Path,
) -> anyhow::Result<LocalCluster> {
    let mut c: LocalCluster =
        toml::from_str(text).with_context(|| format!("invalid {}", meta_path.display()))?;
    eprintln!(
        "Resuming local cluster {} from {}",
        c.cluster_id,
        root.display()
    );
    if args.spus <= c.spus {
        return Ok(c);
    }
    if !c.hosts.is_empty() {
        if args.hosts.len() != args.spus as usize || args.hosts[..c.hosts.len()] != c.hosts[..] {
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
    save_cluster(&c, meta_path)?;
    Ok(c)
}

/// A new cluster's `cluster.toml`, from the flags.
fn create(args: &StartArgs, meta_path: &Path) -> anyhow::Result<LocalCluster> {
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
    save_cluster(&c, meta_path)?;
    Ok(c)
}

/// Applies `--read-only FILE` / `--read-write` (only while no node runs:
/// nodes take the mode when they start, and switching it while some run
/// would leave the cluster half read-only). A read-only file given now is
/// checked before any node starts and kept for the cluster's later starts.
/// Returns the topics the read-only file declares.
fn apply_read_mode(
    args: &StartArgs,
    cluster: &mut LocalCluster,
    root: &Path,
    meta_path: &Path,
) -> anyhow::Result<Vec<TopicSpec>> {
    if (args.read_only.is_some() || args.read_write)
        && (1..=cluster.spus).any(|i| running_pid(&node_dir(root, i)).is_some())
    {
        bail!(
            "--read-only and --read-write apply when nodes start, and some nodes of this cluster \
             run: stop it first (`sluice cluster shutdown`), then start it with the flag"
        );
    }
    if args.read_write && cluster.read_only.take().is_some() {
        save_cluster(cluster, meta_path)?;
    }
    if let Some(file) = &args.read_only {
        let file = std::path::absolute(file)
            .with_context(|| format!("bad --read-only {}", file.display()))?;
        crate::read_only::topics(&file)?;
        cluster.read_only = Some(file);
        save_cluster(cluster, meta_path)?;
    }
    match &cluster.read_only {
        Some(file) => crate::read_only::topics(file),
        None => Ok(Vec::new()),
    }
}

/// Which nodes exist, which are to start now, and where each listens.
struct Layout {
    root: PathBuf,
    cluster: LocalCluster,
    /// Every node not unregistered (unregistered nodes never start again).
    active: Vec<u32>,
    /// The active nodes not running: the ones this command starts (resuming
    /// starts the nodes that are not running, e.g. after a crash).
    stopped: Vec<u32>,
}

impl Layout {
    fn new(root: PathBuf, cluster: LocalCluster) -> anyhow::Result<Self> {
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
        Ok(Self {
            root,
            cluster,
            active,
            stopped,
        })
    }

    fn ip_of(&self, i: u32) -> IpAddr {
        self.cluster
            .hosts
            .get(i as usize - 1)
            .copied()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    fn addr_of(&self, i: u32) -> String {
        SocketAddr::new(self.ip_of(i), (self.cluster.port as u32 + i - 1) as u16).to_string()
    }

    /// The `--peer` flags of the nodes that formed the cluster.
    fn peer_flags(&self) -> Vec<String> {
        (1..=self.cluster.initial())
            .flat_map(|i| ["--peer".to_string(), format!("{i}={}", self.addr_of(i))])
            .collect()
    }

    /// The node a node added later joins through: one that runs, else one
    /// of the first nodes (which start now).
    fn join_via(&self, me: u32) -> Option<String> {
        self.active
            .iter()
            .copied()
            .filter(|&i| i != me)
            .find(|&i| running_pid(&node_dir(&self.root, i)).is_some())
            .or_else(|| {
                self.active
                    .iter()
                    .copied()
                    .find(|&i| i != me && i <= self.cluster.initial())
            })
            .map(|i| self.addr_of(i))
    }
}

fn load_or_create_ca(layout: &Layout) -> anyhow::Result<ClusterCa> {
    let ca_dir = layout.root.join("ca");
    if ca_dir.join("ca.pem").exists() {
        return ClusterCa::load(&ca_dir)
            .with_context(|| format!("cannot load the cluster CA from {}", ca_dir.display()));
    }
    let ca = ClusterCa::generate(&layout.cluster.cluster_id)?;
    ca.save(&ca_dir)
        .with_context(|| format!("cannot save the cluster CA in {}", ca_dir.display()))?;
    Ok(ca)
}

/// A node process being started, and where it logs.
type Starting = (u32, tokio::process::Child, PathBuf);

/// Starts node `i` in its own process group (so a ctrl-c of this command
/// does not stop it), with its certificate issued first if it has none
/// naming it; records its pid. The node runs in its data directory, so
/// what a node writes by a relative name (a core dump, a crash-point or
/// test-clock file named by the environment all nodes inherit) is its own.
fn spawn_node(
    layout: &Layout,
    i: u32,
    ca: &ClusterCa,
    exe: &Path,
    args: &StartArgs,
    globals: &Globals,
) -> anyhow::Result<Starting> {
    let cluster = &layout.cluster;
    let dir = node_dir(&layout.root, i);
    let dir = std::path::absolute(&dir)
        .with_context(|| format!("bad node directory {}", dir.display()))?;
    let tls = dir.join("tls");
    // Issued once; reissued if it names no node (a release before
    // certificates carried identities), since nodes now require one.
    if !super::names(&tls, "node", &PeerIdentity::Node(u64::from(i))) {
        let ips = [layout.ip_of(i)];
        ca.issue_node(u64::from(i), &[], &ips)?.save(&tls, "node")?;
        std::fs::write(tls.join("ca.pem"), ca.cert_pem())?;
    }
    let listen = layout.addr_of(i);
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
    let membership = if i <= cluster.initial() {
        layout.peer_flags()
    } else {
        match layout.join_via(i) {
            Some(via) => vec!["--join".to_string(), via],
            None => bail!("node {i} has no running node to join through"),
        }
    };
    let child = tokio::process::Command::new(exe)
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
        .args(membership)
        // RUST_LOG, when set, is inherited; otherwise the node's own
        // default applies (`NODE_LOG_FILTER_DEFAULT`).
        .args(["--log-format", globals.log_format.as_str()])
        .arg("--log-file")
        .arg(&log_path)
        .args(if args.no_metrics {
            vec![]
        } else {
            vec!["--metrics-listen".to_string(), listen.clone()]
        })
        .args(args.no_quiesce.then_some("--no-quiesce"))
        .args(args.no_heartbeat_skip.then_some("--no-heartbeat-skip"))
        .args(args.no_append_streams.then_some("--no-append-streams"))
        .args(args.no_audit_topic.then_some("--no-audit-topic"))
        .args(
            args.quiesce_idle
                .map(|d| vec!["--quiesce-idle".to_string(), format!("{}ms", d.as_millis())])
                .unwrap_or_default(),
        )
        .args(
            args.quiesce_probe
                .map(|d| {
                    vec![
                        "--quiesce-probe".to_string(),
                        format!("{}ms", d.as_millis()),
                    ]
                })
                .unwrap_or_default(),
        )
        .args(
            cluster
                .read_only
                .iter()
                .flat_map(|f| [std::ffi::OsString::from("--read-only"), f.into()]),
        )
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(stderr.try_clone()?)
        .stderr(stderr)
        .process_group(0)
        .kill_on_drop(false)
        .spawn()
        .with_context(|| format!("cannot start node {i}"))?;
    let pid = child.id().unwrap_or_default();
    std::fs::write(dir.join("node.pid"), pid.to_string())?;
    Ok((i, child, log_path))
}

/// The admin client certificate (issued once) and profile "local", made the
/// current one, listing every node so the client fails over to the next
/// when one is down; and the pointer to this cluster's root.
fn save_admin_profile(layout: &Layout, ca: &ClusterCa, home: &Path) -> anyhow::Result<()> {
    let admin_dir = layout.root.join(ADMIN_DIR);
    if !super::names(
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
            endpoint: layout
                .active
                .iter()
                .map(|&i| layout.addr_of(i))
                .collect::<Vec<_>>()
                .join(","),
            ca_cert: layout.root.join("ca").join("ca.pem"),
            client_cert: Some(admin_dir.join("client.pem")),
            client_key: Some(admin_dir.join("client.key")),
        },
    );
    config.set_current(PROFILE);
    config.save(home)?;
    std::fs::write(
        pointer_path(home),
        toml::to_string(&Pointer {
            root: layout.root.clone(),
        })?,
    )?;
    Ok(())
}

/// Waits until the metadata lists every node and each started node answers
/// by itself with a controller leader known; fails with the tail of its
/// logs if a node exits meanwhile.
async fn wait_ready(
    layout: &Layout,
    children: &mut [Starting],
    home: &Path,
    deadline: Instant,
) -> anyhow::Result<()> {
    loop {
        for (i, child, log_path) in children.iter_mut() {
            if let Some(exit) = child.try_wait()? {
                let _ = std::fs::remove_file(node_dir(&layout.root, *i).join("node.pid"));
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
        let listed = match sluice_client::Client::from_profile(home, Some(PROFILE), None).await {
            Ok(client) => client.cluster_status().await.is_ok_and(|s| {
                s.controller_leader.is_some() && s.nodes.len() == layout.active.len()
            }),
            Err(_) => false,
        };
        // Each started node asked only once the cluster lists them all (as
        // before), or at the deadline, to name the ones that never answer.
        let late = Instant::now() > deadline;
        let answered = if listed || late {
            started_nodes_answer(layout, home).await
        } else {
            Vec::new()
        };
        if listed && answered.iter().all(|ok| *ok) {
            return Ok(());
        }
        if late {
            // Name the started nodes that never answered, with their last
            // words (a clock outside the certificates' validity, a peer
            // refusing them...), rather than only where the logs are.
            let silent: Vec<String> = layout
                .stopped
                .iter()
                .zip(&answered)
                .filter(|(_, ok)| !**ok)
                .map(|(i, _)| {
                    let dir = node_dir(&layout.root, *i);
                    let (log, stderr) = (dir.join("node.log"), dir.join("node.stderr"));
                    format!(
                        "node {i}, last lines of {}:\n{}\nand of {}:\n{}",
                        log.display(),
                        tail(&log, 3),
                        stderr.display(),
                        tail(&stderr, 2)
                    )
                })
                .collect();
            bail!(
                "the local cluster did not become ready within {CLUSTER_READY_TIMEOUT:?}{}; see the logs in {}",
                if silent.is_empty() {
                    String::new()
                } else {
                    format!(
                        ": no answer with a controller leader from {}\n",
                        silent.join("\n")
                    )
                },
                layout.root.display()
            );
        }
        tokio::time::sleep(CLUSTER_READY_POLL).await;
    }
}

/// Whether each node this command started answers with a controller
/// leader, in the order of `layout.stopped`.
async fn started_nodes_answer(layout: &Layout, home: &Path) -> Vec<bool> {
    futures::future::join_all(layout.stopped.iter().map(|&i| async move {
        let addr = layout.addr_of(i);
        match sluice_client::Client::from_profile(home, Some(PROFILE), Some(&addr)).await {
            Ok(c) => c
                .cluster_status()
                .await
                .is_ok_and(|s| s.controller_leader.is_some()),
            Err(_) => false,
        }
    }))
    .await
}

/// Waits until the controller leader has created the read-only file's topics.
async fn wait_for_topics(
    layout: &Layout,
    topics: &[TopicSpec],
    home: &Path,
    deadline: Instant,
) -> anyhow::Result<()> {
    let client = sluice_client::Client::from_profile(home, Some(PROFILE), None).await?;
    loop {
        let have: Vec<String> = client
            .list_topics()
            .await
            .map(|ts| ts.into_iter().map(|t| t.spec.name).collect())
            .unwrap_or_default();
        if topics.iter().all(|t| have.contains(&t.name)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the topics of the read-only file were not all created within \
                 {CLUSTER_READY_TIMEOUT:?}; see the logs in {}",
                layout.root.display()
            );
        }
        tokio::time::sleep(CLUSTER_READY_POLL).await;
    }
}

fn report(layout: &Layout, args: &StartArgs, read_only_topics: &[TopicSpec]) {
    let cluster = &layout.cluster;
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
        layout.addr_of(1),
        layout.root.display()
    );
    if !args.no_metrics {
        let urls: Vec<String> = layout
            .stopped
            .iter()
            .map(|&i| format!("http://{}/metrics", layout.addr_of(i)))
            .collect();
        println!("Metrics (Prometheus): {}", urls.join(" "));
    }
}
