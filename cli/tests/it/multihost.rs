//! A multi-host cluster as an operator builds it: a CA and per-node
//! certificates from `sluice cluster ca`, one TOML file per node, each node
//! started with `sluice node run --config` on its own "host" (a network
//! namespace), and the CLI pointed at all three through a saved profile.
//!
//! Network: the three node namespaces hang off a bridge that lives in a
//! fourth namespace of its own, through veth pairs created directly inside
//! those namespaces, so nothing of the host's network configuration is
//! touched and nothing is reachable from outside. The nodes still use
//! loopback addresses (127.0.100.1-3), as the project's tests do: inside each
//! node namespace the catch-all `local 127.0.0.0/8` route of `lo` is removed
//! (only 127.0.0.1 stays local) and `route_localnet` lets 127/8 packets cross
//! the veth. Both settings are per namespace and vanish with it.
//!
//! Needs root and iproute2's `ip`; without them the test says why it skipped.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::harness::{SLUICE, lines};

/// Every node listens on the same port: each has its own namespace.
const PORT: u16 = 9003;
const NODES: u64 = 3;

fn node_addr(i: u64) -> String {
    format!("127.0.100.{i}:{PORT}")
}

/// Why this test cannot run here, if it cannot.
fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Some(format!(
            "creating network namespaces needs root (running as uid {euid})"
        ));
    }
    if let Err(e) = Command::new("ip").arg("-V").output() {
        return Some(format!("`ip` (iproute2) cannot be run: {e}"));
    }
    None
}

/// The namespaces and node processes of the test; removed on drop, also
/// when an assertion fails halfway.
struct Hosts {
    /// Node namespaces (index i - 1 is node i), then the bridge namespace.
    namespaces: Vec<String>,
    /// Node processes (index i - 1 is node i); `None` once killed.
    nodes: Vec<Option<Child>>,
    work: PathBuf,
}

impl Hosts {
    fn node_ns(&self, i: u64) -> &str {
        &self.namespaces[i as usize - 1]
    }

    /// Creates the namespaces and the network between them, or says why
    /// namespaces cannot be created here (e.g. a container without
    /// CAP_SYS_ADMIN), which counts as a reason to skip.
    fn create(work: &Path) -> Result<Self, String> {
        let pid = std::process::id();
        let mut hosts = Hosts {
            namespaces: Vec::new(),
            nodes: Vec::new(),
            work: work.to_path_buf(),
        };
        let bridge_ns = format!("sluice-{pid}-br");
        let out = Command::new("ip")
            .args(["netns", "add", &bridge_ns])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "`ip netns add` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        hosts.namespaces.push(bridge_ns.clone());
        for i in 1..=NODES {
            let ns = format!("sluice-{pid}-n{i}");
            ip(&["netns", "add", &ns]);
            // Keep the bridge namespace last, whatever the order of creation.
            hosts.namespaces.insert(i as usize - 1, ns);
        }
        ip(&["-n", &bridge_ns, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &bridge_ns, "link", "set", "br0", "up"]);
        for i in 1..=NODES {
            let ns = hosts.node_ns(i).to_string();
            // Interface names are at most 15 bytes; pids have at most 7 digits.
            let (veth, port) = (format!("sl{pid}v{i}"), format!("sl{pid}p{i}"));
            ip(&[
                "link", "add", &veth, "netns", &ns, "type", "veth", "peer", "name", &port, "netns",
                &bridge_ns,
            ]);
            ip(&["-n", &bridge_ns, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &bridge_ns, "link", "set", &port, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&[
                "-n",
                &ns,
                "route",
                "del",
                "local",
                "127.0.0.0/8",
                "dev",
                "lo",
                "table",
                "local",
            ]);
            let sysctl = format!(
                "echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet && \
                 echo 1 > /proc/sys/net/ipv4/conf/{veth}/route_localnet"
            );
            ip(&["netns", "exec", &ns, "sh", "-c", &sysctl]);
            let cidr = format!("127.0.100.{i}/24");
            ip(&["-n", &ns, "addr", "add", &cidr, "dev", &veth]);
            ip(&["-n", &ns, "link", "set", &veth, "up"]);
        }
        Ok(hosts)
    }

    /// Starts node `i` in its namespace, logging to `node-i.log`.
    fn start_node(&mut self, i: u64) {
        let config = self.work.join(format!("node-{i}.toml"));
        let log = File::create(self.log_path(i)).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", self.node_ns(i), SLUICE, "node", "run"])
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.nodes.push(Some(child));
    }

    /// SIGKILLs node `i` (`ip netns exec` execs the node, so the child is it).
    fn kill_node(&mut self, i: u64) {
        if let Some(mut child) = self.nodes[i as usize - 1].take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn log_path(&self, i: u64) -> PathBuf {
        self.work.join(format!("node-{i}.log"))
    }

    fn logs(&self) -> String {
        (1..=NODES)
            .map(|i| {
                let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                format!(
                    "--- node {i} ---\n{}",
                    lines[lines.len().saturating_sub(10)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Runs a client command from node 1's host with the test's SLUICE_HOME.
    fn cli(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = Command::new("ip")
            .args(["netns", "exec", self.node_ns(1), SLUICE])
            .args(args)
            .env("SLUICE_HOME", self.work.join("home"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str], stdin: &[u8]) -> String {
        let out = self.cli(args, stdin);
        assert!(
            out.status.success(),
            "`sluice {}` failed: {}\nnode logs:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Reads the whole partition from node `replica`'s copy, retrying until
    /// it holds `expected` (a follower applies commits a moment later).
    fn assert_replica_holds(&self, topic: &str, replica: u64, expected: &str) {
        let replica_arg = replica.to_string();
        let args = ["consume", topic, "-B", "-d", "--replica", &replica_arg];
        let mut last = String::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let out = self.cli(&args, b"");
            last = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && last == expected {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "replica {replica} of {topic} holds {} line(s), expected {}\nnode logs:\n{}",
            last.lines().count(),
            expected.lines().count(),
            self.logs()
        );
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for child in self.nodes.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Deleting a namespace deletes its end of every veth, and the bridge
        // with the bridge namespace.
        for ns in &self.namespaces {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Runs `ip ARGS`, which must succeed.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Runs `sluice ARGS` in the test's own namespace (no network needed).
fn sluice(args: &[&str], home: &Path) -> Output {
    Command::new(SLUICE)
        .args(args)
        .env("SLUICE_HOME", home)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn sluice_ok(args: &[&str], home: &Path) -> String {
    let out = sluice(args, home);
    assert!(
        out.status.success(),
        "`sluice {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The node config file an operator writes, every field spelt out.
fn node_config(i: u64, cluster_id: &str, data_dir: &Path) -> String {
    let peers: String = (1..=NODES)
        .map(|p| format!("\n[[peers]]\nid = {p}\naddr = \"{}\"\n", node_addr(p)))
        .collect();
    format!(
        "id = {i}\n\
         cluster_id = \"{cluster_id}\"\n\
         data_dir = \"{}\"\n\
         listen = \"{addr}\"\n\
         advertised = \"{addr}\"\n\
         require_client_cert = true\n\
         super_users = [\"ops\"]\n\
         controller_voters = 3\n\
         retention_check_secs = 30\n{peers}",
        data_dir.display(),
        addr = node_addr(i),
    )
}

#[test]
fn three_nodes_in_three_network_namespaces() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped three_nodes_in_three_network_namespaces: {reason}");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let home = dir.join("home");

    // The operator's steps: CA, one certificate per node, one per client.
    let ca = dir.join("ca");
    let ca_arg = ca.to_str().unwrap();
    let cluster_id = sluice_ok(&["cluster", "ca", "create", "--dir", ca_arg], &home)
        .trim()
        .to_string();
    assert!(!cluster_id.is_empty());
    let again = sluice(&["cluster", "ca", "create", "--dir", ca_arg], &home);
    assert!(
        !again.status.success() && String::from_utf8_lossy(&again.stderr).contains("--force"),
        "a second `ca create` must refuse to replace the CA"
    );
    for i in 1..=NODES {
        let data_dir = dir.join(format!("node-{i}"));
        let tls = data_dir.join("tls");
        let (id, host) = (i.to_string(), format!("127.0.100.{i}"));
        let issue = [
            "cluster",
            "ca",
            "issue",
            "--dir",
            ca_arg,
            "--node-id",
            &id,
            "--host",
            &host,
            "--out",
            tls.to_str().unwrap(),
        ];
        sluice_ok(&issue, &home);
        if i == 1 {
            let again = sluice(&issue, &home);
            assert!(
                !again.status.success()
                    && String::from_utf8_lossy(&again.stderr).contains("already exists"),
                "a second `ca issue` must refuse to replace the node key"
            );
        }
        std::fs::write(
            dir.join(format!("node-{i}.toml")),
            node_config(i, &cluster_id, &data_dir),
        )
        .unwrap();
    }
    let endpoints: Vec<String> = (1..=NODES).map(node_addr).collect();
    sluice_ok(
        &[
            "cluster",
            "ca",
            "issue",
            "--dir",
            ca_arg,
            "--client",
            "ops",
            "--out",
            dir.join("client").to_str().unwrap(),
            "--save-profile",
            "multihost",
            "--endpoints",
            &endpoints.join(","),
        ],
        &home,
    );

    let mut hosts = match Hosts::create(dir) {
        Ok(hosts) => hosts,
        Err(reason) => {
            eprintln!("skipped three_nodes_in_three_network_namespaces: {reason}");
            return;
        }
    };
    for i in 1..=NODES {
        hosts.start_node(i);
    }

    // The cluster forms across the bridge: three healthy nodes, a controller leader.
    let mut status = serde_json::Value::Null;
    let formed = {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let out = hosts.cli(&["cluster", "status", "-O", "json"], b"");
            if out.status.success() {
                status = serde_json::from_slice(&out.stdout).unwrap();
                let nodes = status["nodes"].as_array().cloned().unwrap_or_default();
                if !status["controller_leader"].is_null()
                    && nodes.len() == NODES as usize
                    && nodes.iter().all(|n| n["healthy"] == true)
                {
                    break true;
                }
            }
            if std::time::Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    assert!(
        formed,
        "the cluster did not form: {status}\nnode logs:\n{}",
        hosts.logs()
    );
    let mut addrs: Vec<String> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["advertised_addr"].as_str().unwrap().to_string())
        .collect();
    addrs.sort();
    assert_eq!(
        addrs, endpoints,
        "nodes advertise their namespace addresses"
    );

    hosts.ok(&["topic", "create", "spread", "-r", "3"], b"");
    let first = lines(200, "first");
    hosts.ok(&["produce", "spread"], first.as_bytes());
    for replica in 1..=NODES {
        hosts.assert_replica_holds("spread", replica, &first);
    }

    // Lose the partition leader's host: writes and reads go on.
    let parts: serde_json::Value =
        serde_json::from_str(&hosts.ok(&["partition", "list", "spread", "-O", "json"], b""))
            .unwrap();
    let leader = parts[0]["leader"]
        .as_u64()
        .unwrap_or_else(|| panic!("no leader in {parts}"));
    hosts.kill_node(leader);
    let second = lines(200, "second");
    hosts.ok(&["produce", "spread"], second.as_bytes());
    let all = first + &second;
    assert!(
        hosts.ok(&["consume", "spread", "-B", "-d"], b"") == all,
        "the log after the failover differs from the acknowledged records"
    );
    for replica in (1..=NODES).filter(|r| *r != leader) {
        hosts.assert_replica_holds("spread", replica, &all);
    }
}
