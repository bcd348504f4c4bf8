//! `sluice node run`: one node in the foreground, until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use sluice_spu::{Node, NodeConfig};

#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// Run one node in the foreground until SIGTERM or Ctrl-C.
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Node configuration file (TOML, the fields of the flags below); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// This node's id: unique in the cluster, never reused.
    #[arg(long)]
    pub id: Option<u64>,
    /// The cluster this node belongs to (its data dir must belong to it too).
    #[arg(long)]
    pub cluster_id: Option<String>,
    /// Where the node keeps its data; TLS material is read from its `tls/` folder.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on (QUIC/UDP).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Address others use to reach this node (default: the listen address).
    #[arg(long)]
    pub advertise: Option<String>,
    /// A node of the initial cluster, `ID=HOST:PORT` (repeat for each, this one included).
    /// The three lowest ids become the controller's voters.
    #[arg(long = "peer", value_name = "ID=HOST:PORT")]
    pub peers: Vec<sluice_spu::PeerAddr>,
    /// How many of the initial nodes (lowest ids first) vote in the controller group.
    #[arg(long, value_name = "N")]
    pub controller_voters: Option<usize>,
    /// Join a running cluster through any of its nodes, `HOST:PORT` (for a
    /// node added after the cluster formed; give it a new --id).
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "peers")]
    pub join: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (TCP); off unless given.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Keep idle Raft groups (partitions and the controller) ticking (heartbeats every 50 ms) instead
    /// of letting them sleep until written to (`quiesce_idle_groups`).
    #[arg(long)]
    pub no_quiesce: bool,
    /// How long a Raft group must take no entry before it sleeps (default
    /// 300ms; at least 100ms), e.g. 2s: groups written now and then stay
    /// awake, heartbeating, between writes (`quiesce_idle_ms`).
    #[arg(long, value_name = "DURATION", value_parser = parse_quiesce_idle, conflicts_with = "no_quiesce")]
    pub quiesce_idle: Option<std::time::Duration>,
    /// How often nodes probe each other for the leaders of their sleeping
    /// groups (default 900ms; 50ms to 5s): unless a client or a member
    /// doubts it first (then it is asked at once), a sleeping group's dead
    /// leader is noticed after 10/3 of it; an idle cluster sends about this
    /// much less often (`quiesce_probe_ms`). Give every node the same.
    #[arg(long, value_name = "DURATION", value_parser = parse_quiesce_probe, conflicts_with = "no_quiesce")]
    pub quiesce_probe: Option<std::time::Duration>,
    /// Send every heartbeat of a partition leader, even to followers that
    /// just acknowledged an append (`skip_heartbeats_under_writes = false`;
    /// the baseline of benchmarks).
    #[arg(long)]
    pub no_heartbeat_skip: bool,
    /// Send a Raft leader's appends to each follower one at a time instead
    /// of streaming them, several on the wire at once (`append_streams =
    /// false`; the baseline of benchmarks).
    #[arg(long)]
    pub no_append_streams: bool,
    /// Keep the audit trail in the log only, not in the system topic
    /// `sluice-audit` (`audit_topic = false`). Give every node the same.
    #[arg(long)]
    pub no_audit_topic: bool,
    /// Run read-only: create the topics of this Fluvio metadata file (JSON)
    /// when missing, and refuse every change of the metadata from clients.
    #[arg(long, value_name = "FILE")]
    pub read_only: Option<PathBuf>,
    /// Write the log to FILE instead of stderr, bounded: past
    /// --log-file-max-size it moves to FILE.1 (replacing it) and starts anew.
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// The most one log file holds (a node keeps at most twice this); at
    /// least 64KiB.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_log_size)]
    pub log_file_max_size: u64,
}

fn parse_log_size(text: &str) -> Result<u64, String> {
    let bytes = crate::units::parse_size(text)?;
    if bytes < crate::logfile::LOG_FILE_BYTES_MIN {
        return Err(format!(
            "{text:?} is below the smallest log file bound, {} bytes (64KiB)",
            crate::logfile::LOG_FILE_BYTES_MIN
        ));
    }
    Ok(bytes)
}

/// Turns the flags (over the optional file) into a complete [`NodeConfig`].
fn resolve(args: RunArgs) -> anyhow::Result<NodeConfig> {
    let file: Option<NodeConfig> = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read node config {}", path.display()))?;
            Some(
                toml::from_str(&text)
                    .with_context(|| format!("invalid node config {}", path.display()))?,
            )
        }
        None => None,
    };
    let missing = |flag: &str| {
        anyhow::anyhow!("{flag} is required (as a flag or in the --config file) to run a node")
    };
    let base = file.as_ref();
    Ok(NodeConfig {
        id: args
            .id
            .or(base.map(|c| c.id))
            .ok_or_else(|| missing("--id"))?,
        cluster_id: args
            .cluster_id
            .or(base.map(|c| c.cluster_id.clone()))
            .ok_or_else(|| missing("--cluster-id"))?,
        data_dir: args
            .data_dir
            .or(base.map(|c| c.data_dir.clone()))
            .ok_or_else(|| missing("--data-dir"))?,
        listen: args
            .listen
            .or(base.map(|c| c.listen))
            .ok_or_else(|| missing("--listen"))?,
        advertised: args.advertise.or(base.and_then(|c| c.advertised.clone())),
        require_client_cert: base.is_none_or(|c| c.require_client_cert),
        super_users: base.map_or_else(sluice_spu::default_super_users, |c| c.super_users.clone()),
        retention_check_secs: base.map_or(30, |c| c.retention_check_secs),
        metrics_listen: args.metrics_listen.or(base.and_then(|c| c.metrics_listen)),
        quiesce_idle_groups: !args.no_quiesce && base.is_none_or(|c| c.quiesce_idle_groups),
        quiesce_idle_ms: args
            .quiesce_idle
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .or(base.and_then(|c| c.quiesce_idle_ms)),
        quiesce_probe_ms: args
            .quiesce_probe
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .or(base.and_then(|c| c.quiesce_probe_ms)),
        skip_heartbeats_under_writes: !args.no_heartbeat_skip
            && base.is_none_or(|c| c.skip_heartbeats_under_writes),
        append_streams: !args.no_append_streams && base.is_none_or(|c| c.append_streams),
        audit_topic: !args.no_audit_topic && base.is_none_or(|c| c.audit_topic),
        read_only: args.read_only.is_some() || base.is_some_and(|c| c.read_only),
        seed_topics: match &args.read_only {
            Some(path) => crate::read_only::topics(path)?,
            None => base.map(|c| c.seed_topics.clone()).unwrap_or_default(),
        },
        controller_voters: args
            .controller_voters
            .or(base.map(|c| c.controller_voters))
            .unwrap_or(3),
        join: args.join.or(base.and_then(|c| c.join.clone())),
        peers: if args.peers.is_empty() {
            base.map(|c| c.peers.clone()).unwrap_or_default()
        } else {
            args.peers
        },
    })
}

pub async fn run(cmd: NodeCmd) -> anyhow::Result<()> {
    let NodeCmd::Run(args) = cmd;
    // With a log file, a failure to start is logged there too: stderr may
    // go to another file (`cluster start` sends it to node.stderr).
    let logs_to_file = args.log_file.is_some();
    let result = run_node(args).await;
    if let (Err(e), true) = (&result, logs_to_file) {
        tracing::error!(error = %crate::error_chain(e), "node failed");
    }
    result
}

async fn run_node(args: RunArgs) -> anyhow::Result<()> {
    let config = resolve(args)?;
    let id = config.id;
    let node = Node::start(config)
        .await
        .with_context(|| format!("node {id} failed to start"))?;
    let fatal = tokio::select! {
        () = wait_for_stop_signal() => None,
        reason = node.fatal() => Some(reason),
    };
    match &fatal {
        None => tracing::info!(node = id, "stop signal received, shutting down"),
        Some(reason) => tracing::error!(node = id, %reason, "node must stop"),
    }
    node.shutdown().await;
    // Everything is durable now. Leave without running C++ static destructors:
    // RocksDB's background threads may still touch its globals while they are
    // torn down, which crashes an exiting process (seen as "pthread lock:
    // Invalid argument" or SIGSEGV after a clean shutdown).
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    if let Some(reason) = &fatal {
        eprintln!("Error: node {id} stopped: {reason}");
    }
    let code = if fatal.is_some() { 1 } else { 0 };
    // SAFETY: _exit ends the process at once; nothing after it runs.
    unsafe { libc::_exit(code) }
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// `--quiesce-idle`: a duration of at least `QUIESCE_IDLE_MS_MIN`.
pub fn parse_quiesce_idle(text: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e} (e.g. 300ms)"))?;
    let min = std::time::Duration::from_millis(sluice_spu::QUIESCE_IDLE_MS_MIN);
    if d < min {
        return Err(format!("{text} is below the minimum of {min:?}"));
    }
    Ok(d)
}

/// `--quiesce-probe`: a duration between `QUIESCE_PROBE_MS_MIN` and
/// `QUIESCE_PROBE_MS_MAX`.
pub fn parse_quiesce_probe(text: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e} (e.g. 500ms)"))?;
    let min = std::time::Duration::from_millis(sluice_spu::QUIESCE_PROBE_MS_MIN);
    let max = std::time::Duration::from_millis(sluice_spu::QUIESCE_PROBE_MS_MAX);
    if d < min || d > max {
        return Err(format!(
            "{text} is outside the allowed range of {min:?} to {max:?}"
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiesce_probe_takes_durations_within_its_range() {
        assert_eq!(
            parse_quiesce_probe("500ms").unwrap(),
            std::time::Duration::from_millis(500)
        );
        for bad in ["10ms", "6s"] {
            let err = parse_quiesce_probe(bad).unwrap_err();
            assert!(err.contains("outside the allowed range"), "{err}");
        }
        assert!(
            parse_quiesce_probe("soon")
                .unwrap_err()
                .contains("e.g. 500ms")
        );
    }

    #[test]
    fn quiesce_idle_takes_durations_from_its_minimum() {
        assert_eq!(
            parse_quiesce_idle("300ms").unwrap(),
            std::time::Duration::from_millis(300)
        );
        assert!(
            parse_quiesce_idle("50ms")
                .unwrap_err()
                .contains("below the minimum")
        );
        assert!(
            parse_quiesce_idle("soon")
                .unwrap_err()
                .contains("e.g. 300ms")
        );
    }
}
