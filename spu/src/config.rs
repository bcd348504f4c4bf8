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
    /// Require client certificates signed by the cluster CA (mutual TLS).
    #[serde(default)]
    pub require_client_cert: bool,
    /// Seconds between retention passes over all partitions.
    #[serde(default = "default_retention_interval")]
    pub retention_check_secs: u64,
}

fn default_retention_interval() -> u64 {
    30
}

impl NodeConfig {
    pub fn advertised_addr(&self) -> String {
        self.advertised
            .clone()
            .unwrap_or_else(|| self.listen.to_string())
    }
}
