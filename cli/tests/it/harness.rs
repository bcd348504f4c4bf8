//! Starting, stopping and driving a local cluster from tests.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// A private SLUICE_HOME with a local cluster on its own port.
pub struct Env {
    pub home: tempfile::TempDir,
    pub port: u16,
}

impl Env {
    pub fn new() -> Self {
        Self {
            home: tempfile::tempdir().unwrap(),
            port: free_udp_port(),
        }
    }

    /// Starts (or resumes) the local cluster.
    pub fn started() -> Self {
        let env = Self::new();
        env.start();
        env
    }

    pub fn start(&self) {
        self.ok(&[
            "cluster",
            "start",
            "--local",
            "--port",
            &self.port.to_string(),
        ]);
    }

    /// Starts a local cluster of `spus` nodes whose `controllers` lowest ids vote.
    pub fn started_with_controllers(spus: u32, controllers: u32) -> Self {
        let env = Self {
            home: tempfile::tempdir().unwrap(),
            port: free_udp_ports(spus as u16),
        };
        let (spus, port, controllers) = (
            spus.to_string(),
            env.port.to_string(),
            controllers.to_string(),
        );
        env.ok(&[
            "cluster",
            "start",
            "--local",
            "--spus",
            &spus,
            "--port",
            &port,
            "--controllers",
            &controllers,
        ]);
        env
    }

    /// Starts a local cluster of `spus` nodes on consecutive ports.
    pub fn started_with(spus: u32) -> Self {
        let env = Self {
            home: tempfile::tempdir().unwrap(),
            port: free_udp_ports(spus as u16),
        };
        let (spus, port) = (spus.to_string(), env.port.to_string());
        env.ok(&[
            "cluster", "start", "--local", "--spus", &spus, "--port", &port,
        ]);
        env
    }

    /// Starts (or resumes, or grows) a local cluster of `spus` nodes on
    /// consecutive ports with extra environment variables for the nodes (test
    /// switches such as `SLUICE_DEBUG_DROP_PRODUCE_ACKS`); panics on failure.
    pub fn start_with_env(&self, spus: u32, vars: &[(&str, &str)]) {
        let out = self
            .command(&[
                "cluster",
                "start",
                "--local",
                "--spus",
                &spus.to_string(),
                "--port",
                &self.port.to_string(),
            ])
            .envs(vars.iter().copied())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cluster start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A fresh environment with room for `spus` nodes on consecutive ports.
    pub fn with_ports_for(spus: u16) -> Self {
        Self {
            home: tempfile::tempdir().unwrap(),
            port: free_udp_ports(spus),
        }
    }

    pub fn node_dir_of(&self, node: u64) -> PathBuf {
        self.home.path().join("local").join(format!("node-{node}"))
    }

    /// The process id of node `node`, from its pid file.
    pub fn pid_of(&self, node: u64) -> i32 {
        std::fs::read_to_string(self.node_dir_of(node).join("node.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// SIGKILLs node `node` and waits until it is gone.
    pub fn kill(&self, node: u64) {
        let pid = self.pid_of(node);
        // SAFETY: signalling a node process this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        wait_until(
            Duration::from_secs(10),
            || unsafe { libc::kill(pid, 0) } != 0,
        );
    }

    /// Sends `signal` (SIGSTOP, SIGCONT, ...) to node `node`.
    pub fn signal(&self, node: u64, signal: i32) {
        let pid = self.pid_of(node);
        // SAFETY: signalling a node process this test started.
        assert_eq!(
            unsafe { libc::kill(pid, signal) },
            0,
            "cannot signal node {node}"
        );
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(SLUICE);
        c.args(args)
            .env("SLUICE_HOME", self.home.path())
            .env_remove("RUST_LOG");
        c
    }

    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_with_input(args, b"")
    }

    pub fn ok_with_input(&self, args: &[&str], stdin: &[u8]) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "`sluice {}` failed: {}\nstdout: {}\nnode log: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
            self.node_log_tail()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command that must fail; returns its stderr.
    pub fn fails(&self, args: &[&str], stdin: &[u8]) -> String {
        let out = self.run(args, stdin);
        assert!(
            !out.status.success(),
            "`sluice {}` should have failed",
            args.join(" ")
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// Starts a long-running command (a following consumer) whose stdout
    /// lines arrive on the returned channel. The child is killed when its
    /// handle is dropped, so a test that fails does not leave it running.
    pub fn follow(&self, args: &[&str]) -> (Followed, std::sync::mpsc::Receiver<String>) {
        use std::io::BufRead;
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                if tx.send(line.unwrap()).is_err() {
                    return;
                }
            }
        });
        (Followed(child), rx)
    }

    /// The cluster CA certificate (PEM) of the local cluster.
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.home.path().join("local/ca/ca.pem")).unwrap()
    }

    /// The admin client certificate `cluster start --local` issued.
    pub fn admin_identity(&self) -> sluice_transport::CertKeyPair {
        sluice_transport::CertKeyPair::load(self.home.path().join("local/admin"), "client").unwrap()
    }

    pub fn node_dir(&self) -> PathBuf {
        self.node_dir_of(1)
    }

    /// The client library connected to node 1 as the cluster's admin.
    pub async fn admin_client(&self) -> sluice_client::Client {
        let endpoint = format!("127.0.0.1:{}", self.port);
        sluice_client::Client::connect(&endpoint, &self.ca_pem(), Some(self.admin_identity()))
            .await
            .unwrap()
    }

    pub fn node_pid(&self) -> i32 {
        self.pid_of(1)
    }

    pub fn node_log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.node_dir().join("node.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// SIGKILLs the node and waits until it is gone.
    pub fn kill_node(&self) {
        let pid = self.node_pid();
        // SAFETY: signalling a child process we started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        wait_until(
            Duration::from_secs(10),
            || unsafe { libc::kill(pid, 0) } != 0,
        );
    }

    /// The segment directory of `topic`'s partition 0 (topic ids start at 1).
    pub fn partition_dir(&self, topic: &str) -> PathBuf {
        self.partition_dir_of(1, topic)
    }

    /// The segment directory of `topic`'s partition 0 on node `node`.
    pub fn partition_dir_of(&self, node: u64, topic: &str) -> PathBuf {
        let parts = self.node_dir_of(node).join("partitions");
        std::fs::read_dir(&parts)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                name.starts_with(&format!("{topic}-")) && name.ends_with("-0")
            })
            .unwrap_or_else(|| panic!("no partition dir for {topic} in {}", parts.display()))
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for node in 1..=7 {
            let Ok(pid) = std::fs::read_to_string(self.node_dir_of(node).join("node.pid")) else {
                continue;
            };
            if let Ok(pid) = pid.trim().parse::<i32>() {
                // SAFETY: best-effort cleanup of our own children.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// Where test clusters take their ports: below Linux's ephemeral range
/// (32768 and up by default), so that no client socket of another test,
/// which the kernel numbers from that range, can take a port between the
/// check here and the node's bind (a node of one test once failed to start
/// with "address already in use" that way).
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;
/// Ports handed out by this process so far, past a start that differs by
/// process: two tests of this process never get the same port.
static NEXT_TEST_PORT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The first of `n` consecutive free UDP ports on 127.0.0.1 whose TCP twins
/// are free too (a local cluster serves metrics over TCP on its nodes' QUIC
/// port numbers), never handed out before by this process.
pub fn free_udp_ports(n: u16) -> u16 {
    use std::sync::atomic::Ordering;
    let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
    let offset = std::process::id() % span;
    for _ in 0..1_000 {
        let taken = NEXT_TEST_PORT.fetch_add(u32::from(n), Ordering::Relaxed);
        let first = (offset + taken) % span;
        if first + u32::from(n) > span {
            continue;
        }
        let first = TEST_PORTS.start + first as u16;
        if (first..first + n).all(port_is_free) {
            return first;
        }
    }
    panic!("no {n} consecutive free UDP ports in {TEST_PORTS:?}");
}

/// One port, as [`free_udp_ports`].
pub fn free_udp_port() -> u16 {
    free_udp_ports(1)
}

fn port_is_free(port: u16) -> bool {
    std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The output of `child` once it exits; kills it and fails the test if it
/// is still running after `timeout`.
pub fn wait_for_exit(mut child: std::process::Child, timeout: Duration) -> std::process::Output {
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {timeout:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// A multi-threaded runtime for a test that drives the client library.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn lines(n: usize, prefix: &str) -> String {
    (0..n).map(|i| format!("{prefix}-{i}\n")).collect()
}

/// The segment files in `dir`, oldest first.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}

pub fn last_segment(dir: &Path) -> PathBuf {
    segments(dir).pop().expect("a segment file")
}

/// The leader of partition 0 of `topic`, from `partition list -O json`,
/// waiting up to 10 s for one to be known: right after a node restarts, or
/// on a loaded machine, a listing can fall in an election or miss the
/// leader's own answer, and shows no leader for a moment.
pub fn partition_leader(env: &Env, topic: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = env.ok(&["partition", "list", topic, "-O", "json"]);
        let parts: serde_json::Value = serde_json::from_str(&out).unwrap();
        if let Some(leader) = parts[0]["leader"].as_u64() {
            return leader;
        }
        assert!(Instant::now() < deadline, "no leader within 10 s: {out}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `sluice produce topic extra...` fed `records` in `chunk`-byte pieces
/// `pause` apart, SIGKILLs the partition's leader `kill_after` into it, and
/// checks that the producer still acknowledged everything and another node
/// took over. Returns the killed node.
pub fn produce_across_leader_kill(
    env: &Env,
    topic: &str,
    extra: &[&str],
    records: &str,
    (chunk, pause): (usize, Duration),
    kill_after: Duration,
) -> u64 {
    let mut args = vec!["produce", topic];
    args.extend_from_slice(extra);
    let mut producer = env
        .command(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = producer.stdin.take().unwrap();
    let old = partition_leader(env, topic);
    let feed = {
        let records = records.to_string();
        // A producer that stops early closes its stdin: the feed then ends
        // with the error, and the producer's own words are what to show.
        std::thread::spawn(move || -> std::io::Result<()> {
            for piece in records.as_bytes().chunks(chunk) {
                stdin.write_all(piece)?;
                std::thread::sleep(pause);
            }
            Ok(())
        })
    };
    std::thread::sleep(kill_after);
    env.kill(old);
    let fed = feed.join().unwrap();
    let out = producer.wait_with_output().unwrap();
    assert!(
        out.status.success() && fed.is_ok(),
        "producer failed ({}; feeding its stdin: {fed:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(partition_leader(env, topic), old, "a new leader took over");
    old
}

/// Waits until the leader of partition 0 of `topic` (asked directly) sees
/// all three replicas with no lag.
pub fn wait_until_replicas_caught_up(env: &Env, topic: &str, timeout: Duration) {
    let leader = partition_leader(env, topic);
    let endpoint = format!("127.0.0.1:{}", env.port as u64 + leader - 1);
    wait_until(timeout, || {
        let out = env.ok(&[
            "partition",
            "list",
            topic,
            "-O",
            "json",
            "--endpoint",
            &endpoint,
        ]);
        let parts: serde_json::Value = serde_json::from_str(&out).unwrap();
        let replicas = parts[0]["replicas"].as_array().unwrap().clone();
        replicas.len() == 3
            && replicas
                .iter()
                .all(|r| r["lag_entries"].as_u64() == Some(0))
    });
}

/// Why `log` is not `expected`, line by line.
pub fn log_difference(log: &str, expected: &str) -> String {
    let mut counts = std::collections::HashMap::new();
    for line in log.lines() {
        *counts.entry(line).or_insert(0) += 1;
    }
    let duplicated = counts.values().filter(|c| **c > 1).count();
    let lost = expected.lines().filter(|l| !counts.contains_key(l)).count();
    let first_misplaced = log.lines().zip(expected.lines()).position(|(a, b)| a != b);
    format!(
        "{lost} lost, {duplicated} duplicated, first difference at line {first_misplaced:?} (of {} read, {} expected)",
        log.lines().count(),
        expected.lines().count()
    )
}

/// `GET /metrics` on 127.0.0.1:`port`; the body, or `None` if not served.
pub fn scrape(port: u16) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    // HTTP/1.0: the answer is the body up to the close, never chunked.
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200").then(|| body.to_owned())
}

/// The value of the sample of `name` whose labels include every one of
/// `labels` (`key="value"`), if there is one.
pub fn sample(body: &str, name: &str, labels: &[&str]) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// A child process started by [`Env::follow`]: SIGKILLed on drop (a no-op
/// once it was waited for).
pub struct Followed(pub std::process::Child);

impl std::ops::Deref for Followed {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Followed {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Followed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Path of the example SmartModule `name`, built to wasm32 once per test run.
pub fn module(name: &str) -> String {
    crate::wasm_build::module_path(name).display().to_string()
}
