//! How a node is configured: from a TOML file and/or command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything a node needs to start. TLS material is read from the data
/// directory's `tls/` folder (`node.pem`, `node.key`, `ca.pem`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeConfig {
    /// This node's id, unique in the cluster and never reused.
    pub id: u64,
    /// The cluster this node belongs to; the data dir must belong to it too.
    pub cluster_id: String,
    pub data_dir: PathBuf,
    /// Address the QUIC server binds.
    pub listen: SocketAddr,
    /// Address others use to reach this node (default: `listen`).
    pub advertised: Option<String>,
    /// Require client certificates signed by the cluster CA (mutual TLS),
    /// the default. `false` admits peers without one as the `anonymous`
    /// principal, which holds only what ACLs grant it.
    #[serde(default = "yes")]
    pub require_client_cert: bool,
    /// Client principals allowed every client request, whatever the ACLs
    /// say (Kafka's `super.users`); default `["admin"]`, the principal of
    /// the certificate `cluster start --local` issues into the profile.
    #[serde(default = "default_super_users")]
    pub super_users: Vec<String>,
    /// The nodes of the cluster when it is first formed (including this one),
    /// as etcd's "initial cluster": the lowest ids (up to 3) become the
    /// controller's voters, the others its learners. Empty: a one-node cluster.
    #[serde(default)]
    pub peers: Vec<PeerAddr>,
    /// Address of any node of a running cluster to join (a node added after
    /// the cluster formed). The node announces itself there, becomes a
    /// learner of the controller group and then takes partition replicas
    /// moved to it (`sluice partition reassign`).
    #[serde(default)]
    pub join: Option<String>,
    /// How many of the initial nodes vote in the controller group (the
    /// others are learners that hold the metadata without voting). Three by
    /// default: a majority survives one failure; five survive two.
    #[serde(default = "default_controller_voters")]
    pub controller_voters: usize,
    /// Where to serve Prometheus metrics (`GET /metrics`, plain HTTP over
    /// TCP); none by default. `cluster start --local` gives node i the TCP
    /// port of the same number as its QUIC (UDP) port.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Seconds between retention passes over all partitions.
    #[serde(default = "default_retention_interval")]
    pub retention_check_secs: u64,
    /// Let idle Raft groups (partitions, controller) stop ticking (`sluice_raft::Quiescence`):
    /// no heartbeats while nothing is written, one leader probe per peer
    /// node instead. On by default; `false` keeps every group ticking (an
    /// escape hatch, and the baseline of `scripts/bench-idle.sh`).
    #[serde(default = "yes")]
    pub quiesce_idle_groups: bool,
    /// How long (ms) a group must have taken no entry before it may sleep
    /// (default 2,000; at least [`QUIESCE_IDLE_MS_MIN`]). Shorter lets
    /// groups touched now and then sleep between their writes, at the cost
    /// of more wake-ups.
    #[serde(default)]
    pub quiesce_idle_ms: Option<u64>,
    /// How often (ms) nodes probe each other for the leaders of their
    /// sleeping groups (default 150; between [`QUIESCE_PROBE_MS_MIN`] and
    /// [`QUIESCE_PROBE_MS_MAX`]). A sleeping group wakes once its leader has
    /// not been heard from for 10/3 of it (500 ms by default), so this trades
    /// how soon an idle partition fails over for what an idle cluster costs
    /// (BENCHMARKS.md, "Idle partitions asleep"). Set it alike on every node.
    #[serde(default)]
    pub quiesce_probe_ms: Option<u64>,
    /// Skip a partition leader's heartbeat to a follower that acknowledged
    /// an append within the last heartbeat interval (on by default; `false`
    /// sends every heartbeat, the baseline of benchmarks). Under writes
    /// most heartbeats of busy partitions are skipped; an idle group
    /// heartbeats (or sleeps) as before.
    #[serde(default = "yes")]
    pub skip_heartbeats_under_writes: bool,
    /// Stream a partition leader's appends to each follower, several on the
    /// wire at once (`sluice_raft`'s pipelined replication; on by default).
    /// `false` sends each append alone and waits for its answer before the
    /// next (the baseline of benchmarks, and an escape hatch).
    #[serde(default = "yes")]
    pub append_streams: bool,
    /// Refuse every client request that changes the metadata (topics,
    /// partitions, SmartModules, ACLs, nodes): the cluster keeps the topics
    /// of `seed_topics`, and records flow (Fluvio's `--read-only` cluster).
    /// Consumer offsets still commit: they are the readers' progress.
    #[serde(default)]
    pub read_only: bool,
    /// Topics the controller leader creates when they are missing (`node run
    /// --read-only FILE`).
    #[serde(default)]
    pub seed_topics: Vec<sluice_proto::TopicSpec>,
    /// Write the audit trail (each denial, each administrative request of a
    /// client) into the system topic `sluice-audit` too, which this node
    /// creates while it leads the controller and the topic is missing. On by
    /// default; `false` leaves the `sluice::audit` log lines only. Give every
    /// node the same.
    #[serde(default = "yes")]
    pub audit_topic: bool,
}

/// Shortest `quiesce_idle_ms`: below it a group would sleep between the
/// entries of one busy stream and wake for each.
pub const QUIESCE_IDLE_MS_MIN: u64 = 100;
/// Shortest `quiesce_probe_ms`: probing faster than a heartbeat would cost
/// more than the heartbeats quiescence saves.
pub const QUIESCE_PROBE_MS_MIN: u64 = 50;
/// Longest `quiesce_probe_ms`: a sleeping group's dead leader that nobody
/// doubts is then noticed after about 17 s.
pub const QUIESCE_PROBE_MS_MAX: u64 = 5_000;

fn yes() -> bool {
    true
}

/// The super users of a node whose configuration names none.
pub fn default_super_users() -> Vec<String> {
    vec!["admin".to_string()]
}

fn default_controller_voters() -> usize {
    3
}

fn default_retention_interval() -> u64 {
    30
}

impl NodeConfig {
    /// What every partition group of this node starts with.
    pub(crate) fn partition_group_config(&self) -> sluice_raft::GroupConfig {
        let defaults = sluice_raft::GroupConfig::default();
        sluice_raft::GroupConfig {
            heartbeat_skip_after_ack_ms: if self.skip_heartbeats_under_writes {
                defaults.heartbeat_skip_after_ack_ms
            } else {
                0
            },
            ..defaults
        }
    }
    /// Quiescence's timers: the defaults, or the node's idle period with sweeps
    /// at least twice per period, and its probe interval with the silence and
    /// probe deadline in the default proportions (10/3 and 2 intervals).
    pub(crate) fn quiesce_config(&self) -> sluice_raft::QuiesceConfig {
        let defaults = sluice_raft::QuiesceConfig::default();
        let mut quiesce = match self.quiesce_idle_ms {
            Some(ms) => {
                let idle_for =
                    std::time::Duration::from_millis(ms.max(crate::config::QUIESCE_IDLE_MS_MIN));
                sluice_raft::QuiesceConfig {
                    idle_for,
                    sweep_interval: defaults.sweep_interval.min(idle_for / 2),
                    ..defaults
                }
            }
            None => defaults,
        };
        if let Some(ms) = self.quiesce_probe_ms {
            let interval = std::time::Duration::from_millis(ms.clamp(
                crate::config::QUIESCE_PROBE_MS_MIN,
                crate::config::QUIESCE_PROBE_MS_MAX,
            ));
            quiesce.probe_interval = interval;
            quiesce.leader_silence = interval * 10 / 3;
            quiesce.probe_timeout = interval * 2;
        }
        quiesce
    }

    pub fn advertised_addr(&self) -> String {
        self.advertised
            .clone()
            .unwrap_or_else(|| self.listen.to_string())
    }
}

/// A node of the initial cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerAddr {
    pub id: u64,
    pub addr: String,
}

impl std::str::FromStr for PeerAddr {
    type Err = String;

    /// Parses `ID=HOST:PORT`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (id, addr) = s
            .split_once('=')
            .ok_or_else(|| format!("peer {s:?} is not ID=HOST:PORT"))?;
        let id = id
            .trim()
            .parse()
            .map_err(|_| format!("peer {s:?}: {id:?} is not a node id"))?;
        if addr.trim().is_empty() {
            return Err(format!("peer {s:?} has no address"));
        }
        Ok(Self {
            id,
            addr: addr.trim().to_string(),
        })
    }
}

impl NodeConfig {
    /// Controller voters of a new cluster: the `controller_voters` lowest
    /// peer ids (all of them if fewer), or this node alone.
    pub fn initial_voters(&self) -> Vec<(u64, String)> {
        let mut peers = self.peers.clone();
        if !peers.iter().any(|p| p.id == self.id) {
            peers.push(PeerAddr {
                id: self.id,
                addr: self.advertised_addr(),
            });
        }
        peers.sort_by_key(|p| p.id);
        peers
            .into_iter()
            .take(self.controller_voters.max(1))
            .map(|p| (p.id, p.addr))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(extra: &str) -> NodeConfig {
        toml::from_str(&format!(
            "id = 1\ncluster_id = \"c\"\ndata_dir = \"/tmp/x\"\nlisten = \"127.0.0.1:1\"\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn the_probe_interval_sets_the_silence_and_deadline_in_proportion_and_within_bounds() {
        let defaults = sluice_raft::QuiesceConfig::default();
        let unset = node("").quiesce_config();
        assert_eq!(unset.probe_interval, defaults.probe_interval);
        assert_eq!(unset.leader_silence, defaults.leader_silence);
        // The defaults keep the proportions a set interval gets.
        assert_eq!(defaults.leader_silence, defaults.probe_interval * 10 / 3);
        assert_eq!(defaults.probe_timeout, defaults.probe_interval * 2);

        let slow = node("quiesce_probe_ms = 600").quiesce_config();
        assert_eq!(slow.probe_interval.as_millis(), 600);
        assert_eq!(slow.leader_silence.as_millis(), 2_000);
        assert_eq!(slow.probe_timeout.as_millis(), 1_200);
        assert_eq!(slow.idle_for, defaults.idle_for);

        let clamped = node("quiesce_probe_ms = 1").quiesce_config();
        assert_eq!(
            clamped.probe_interval.as_millis(),
            u128::from(QUIESCE_PROBE_MS_MIN)
        );
        let clamped = node("quiesce_probe_ms = 3600000").quiesce_config();
        assert_eq!(
            clamped.probe_interval.as_millis(),
            u128::from(QUIESCE_PROBE_MS_MAX)
        );
    }
}
