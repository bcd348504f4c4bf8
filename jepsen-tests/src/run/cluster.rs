//! The cluster as a black box: node processes started and restarted with
//! `sluice cluster start --local`, signalled by pid (from `node-i/node.pid`).
//!
//! This process makes itself a child subreaper, so the nodes (whose parent,
//! `sluice cluster start`, exits at once) become its children: it reaps the
//! ones it kills, and a killed node never lingers as a zombie that still
//! answers `kill(pid, 0)`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::history::NodeId;

/// How long `sluice cluster start` may take (it waits for a controller leader).
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// How the cluster of a run is started.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub sluice_bin: PathBuf,
    /// `SLUICE_HOME` of the run (client profile "local").
    pub home: PathBuf,
    /// `--data-dir`: node i lives in `data/node-i`.
    pub data_dir: PathBuf,
    pub nodes: u32,
    pub port: u16,
    /// Node i's address (`--hosts`), or 127.0.0.1 for all when `None`.
    pub hosts: Option<Vec<Ipv4Addr>>,
    /// Extra environment of the nodes (they inherit it from `cluster start`).
    pub env: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct Cluster {
    pub spec: ClusterSpec,
}

/// Makes this process the reaper of its orphaned descendants (the nodes).
pub fn become_subreaper() {
    // SAFETY: prctl with an integer argument; failure only means nodes are
    // reaped by init instead.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

/// Sends `sig` to `pid`.
fn signal(pid: i32, sig: i32) -> bool {
    // SAFETY: plain signal delivery to a pid checked to be one of our nodes.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// Reaps `pid` if it is a dead child of ours; harmless otherwise.
fn reap(pid: i32) {
    let mut status = 0;
    // SAFETY: WNOHANG never blocks; a pid that is not our child gives ECHILD.
    unsafe {
        libc::waitpid(pid, &mut status, libc::WNOHANG);
    }
}

/// The pid in `dir/node.pid` if that process is alive and is the node of `dir`
/// (a zombie or a recycled pid has another, or no, command line).
pub fn running_pid(dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(dir.join("node.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    String::from_utf8_lossy(&cmdline)
        .contains(&*dir.to_string_lossy())
        .then_some(pid)
}

impl Cluster {
    pub fn new(spec: ClusterSpec) -> Self {
        Cluster { spec }
    }

    pub fn node_dir(&self, i: NodeId) -> PathBuf {
        self.spec.data_dir.join(format!("node-{i}"))
    }

    pub fn ip(&self, i: NodeId) -> Ipv4Addr {
        self.spec
            .hosts
            .as_ref()
            .and_then(|h| h.get(i as usize - 1).copied())
            .unwrap_or(Ipv4Addr::LOCALHOST)
    }

    pub fn port(&self, i: NodeId) -> u16 {
        self.spec.port + (i as u16 - 1)
    }

    pub fn addr(&self, i: NodeId) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.ip(i)), self.port(i))
    }

    pub fn ids(&self) -> Vec<NodeId> {
        (1..=self.spec.nodes).collect()
    }

    pub fn pid(&self, i: NodeId) -> Option<i32> {
        running_pid(&self.node_dir(i))
    }

    /// Runs `sluice cluster start --local`: creates the cluster the first
    /// time, and afterwards restarts every node that is not running.
    pub async fn start(&self) -> anyhow::Result<()> {
        let s = &self.spec;
        let mut cmd = tokio::process::Command::new(&s.sluice_bin);
        cmd.args(["cluster", "start", "--local"])
            .arg("--spus")
            .arg(s.nodes.to_string())
            .arg("--data-dir")
            .arg(&s.data_dir)
            .arg("--port")
            .arg(s.port.to_string());
        if let Some(hosts) = &s.hosts {
            let list: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
            cmd.arg("--hosts").arg(list.join(","));
        }
        cmd.env("SLUICE_HOME", &s.home)
            .envs(s.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(START_TIMEOUT, cmd.output())
            .await
            .with_context(|| format!("`sluice cluster start` took over {START_TIMEOUT:?}"))?
            .with_context(|| format!("cannot run {}", s.sluice_bin.display()))?;
        if !out.status.success() {
            bail!(
                "`sluice cluster start --local` failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Whether every node process is alive.
    pub fn all_running(&self) -> bool {
        self.ids().iter().all(|i| self.pid(*i).is_some())
    }

    /// SIGKILLs node `i` and waits until it is gone (it can write nothing more).
    pub async fn kill(&self, i: NodeId) -> anyhow::Result<()> {
        let Some(pid) = self.pid(i) else {
            return Ok(());
        };
        signal(pid, libc::SIGKILL);
        self.wait_gone(i, pid, Duration::from_secs(10)).await
    }

    /// Stops node `i` cleanly (SIGTERM), killing it if it takes over 10 s.
    pub async fn stop(&self, i: NodeId) -> anyhow::Result<()> {
        let Some(pid) = self.pid(i) else {
            return Ok(());
        };
        signal(pid, libc::SIGCONT);
        signal(pid, libc::SIGTERM);
        if self
            .wait_gone(i, pid, Duration::from_secs(10))
            .await
            .is_err()
        {
            return self.kill(i).await;
        }
        Ok(())
    }

    /// Waits up to `timeout` for node `i`'s process `pid` to end by itself
    /// (reaping it); whether it did.
    pub async fn exited_within(&self, i: NodeId, pid: i32, timeout: Duration) -> bool {
        self.wait_gone(i, pid, timeout).await.is_ok()
    }

    async fn wait_gone(&self, i: NodeId, pid: i32, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            reap(pid);
            if self.pid(i) != Some(pid) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("node {i} (pid {pid}) is still running after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`) to node `i`; false if it is not running.
    pub fn pause(&self, i: NodeId, stop: bool) -> bool {
        match self.pid(i) {
            Some(pid) => signal(pid, if stop { libc::SIGSTOP } else { libc::SIGCONT }),
            None => false,
        }
    }

    /// Kills every node now (end of run, error, panic or ctrl-c).
    pub fn kill_all_now(&self) {
        kill_all_in(&self.spec.data_dir, self.spec.nodes);
    }
}

/// Kills the nodes of the cluster in `data_dir` by pid, and reaps them.
pub fn kill_all_in(data_dir: &Path, nodes: u32) {
    for i in 1..=nodes {
        let dir = data_dir.join(format!("node-{i}"));
        if let Some(pid) = running_pid(&dir) {
            signal(pid, libc::SIGKILL);
            for _ in 0..100 {
                reap(pid);
                if running_pid(&dir) != Some(pid) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all_now();
    }
}
