//! The services every part of a node uses: its settings, the controller's
//! view and proposals, the partition replicas, the Raft log database, the
//! connections to its peers, its data directory, the SmartModule engine,
//! and the way to ask the node to stop.
//!
//! The node's parts (consumer groups, the audit writer, connectors,
//! metrics, SmartModule chains, committed offsets) take these and nothing
//! of one another: what a request handler needs beyond them lives in
//! `crate::shared::Shared`, above the parts, so no part can reach another
//! through the node.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use sluice_controller::{Controller, Metadata};
use sluice_proto::{ClusterStatus, NodeStatus, WireError};
use sluice_raft::LogDb;

use crate::config::NodeConfig;
use crate::data_dir::DataDir;
use crate::peers::Peers;
use crate::replicas::Replicas;

pub(crate) struct Services {
    pub config: NodeConfig,
    pub controller: Controller,
    pub replicas: Arc<Replicas>,
    pub db: Arc<LogDb>,
    pub peers: Peers,
    pub started: Instant,
    pub data_dir: DataDir,
    /// Runs consumers' SmartModules; compiled modules are cached by content.
    /// Started on first use (see [`Services::engine`]).
    engine: OnceLock<Arc<sluice_wasm::Engine>>,
    /// Set when the node must stop (unregistered, or refused by the cluster).
    fatal: tokio::sync::watch::Sender<Option<String>>,
}

impl Services {
    pub(crate) fn new(
        config: NodeConfig,
        controller: Controller,
        replicas: Arc<Replicas>,
        db: Arc<LogDb>,
        peers: Peers,
        data_dir: DataDir,
    ) -> Self {
        Services {
            config,
            controller,
            replicas,
            db,
            peers,
            started: Instant::now(),
            data_dir,
            engine: OnceLock::new(),
            fatal: tokio::sync::watch::channel(None).0,
        }
    }

    /// Asks the node's owner to stop it, for `reason`.
    pub(crate) fn fail(&self, reason: String) {
        self.fatal.send_replace(Some(reason));
    }

    /// Why the node must stop, once it must (see [`Services::fail`]).
    pub(crate) fn fatal(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.fatal.subscribe()
    }

    /// The SmartModule engine, started the first time a module is
    /// registered or run: a node whose consumers use none never pays for
    /// the compiler's memory or the epoch ticker's wake-ups. Two first
    /// callers at once may both build one; the loser's is dropped.
    pub(crate) fn engine(&self) -> Result<Arc<sluice_wasm::Engine>, WireError> {
        if let Some(engine) = self.engine.get() {
            return Ok(engine.clone());
        }
        let engine =
            sluice_wasm::Engine::new(sluice_wasm::EngineConfig::default()).map_err(|e| {
                tracing::error!(error = %e, "cannot start the SmartModule engine");
                WireError::Unavailable {
                    what: "the SmartModule engine".into(),
                    reason: format!("node {} cannot start it: {e}", self.config.id),
                }
            })?;
        Ok(self.engine.get_or_init(|| Arc::new(engine)).clone())
    }

    pub(crate) fn metadata(&self) -> Metadata {
        self.controller.view().snapshot()
    }

    pub(crate) fn cluster_status(&self) -> ClusterStatus {
        let md = self.metadata();
        let leader = self.controller.leader();
        let (voters, _) = self.controller.members();
        let nodes = md
            .nodes
            .values()
            .map(|n| {
                let me = n.id == self.config.id;
                NodeStatus {
                    id: n.id,
                    advertised_addr: n.addr.clone(),
                    listen_addr: if me {
                        self.config.listen.to_string()
                    } else {
                        String::new()
                    },
                    data_dir: if me {
                        self.config.data_dir.display().to_string()
                    } else {
                        String::new()
                    },
                    pid: if me { std::process::id() } else { 0 },
                    role: if leader == Some(n.id) {
                        "controller-leader"
                    } else if voters.contains(&n.id) {
                        "controller-voter"
                    } else {
                        "controller-learner"
                    }
                    .into(),
                    healthy: me,
                    version: env!("CARGO_PKG_VERSION").into(),
                    uptime_ms: if me {
                        self.started.elapsed().as_millis() as u64
                    } else {
                        0
                    },
                }
            })
            .collect();
        ClusterStatus {
            cluster_id: self.config.cluster_id.clone(),
            controller_leader: leader,
            nodes,
        }
    }
}
