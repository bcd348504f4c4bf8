//! Wiring of a node: the one place that knows every part.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_controller::{Controller, ControllerError, Metadata, NodeRecord};
use sluice_proto::{ClusterStatus, NodeStatus};
use sluice_raft::{LogDb, RaftError};
use sluice_transport::{CertKeyPair, ClientAuth, TlsError, TransportError};

use crate::config::NodeConfig;
use crate::data_dir::{DataDir, DataDirError};
use crate::replicas::Replicas;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error(
        "cannot load the node's TLS material from {dir}: {source}; `sluice cluster start --local` creates it"
    )]
    Tls { dir: PathBuf, source: TlsError },
    #[error("cannot configure TLS: {0}")]
    TlsConfig(TlsError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Raft(#[from] RaftError),
    #[error(transparent)]
    Controller(#[from] ControllerError),
    #[error("the controller elected no leader within {0:?}")]
    NoControllerLeader(Duration),
    #[error("cannot register node {node} with the controller: {reason}")]
    Register { node: u64, reason: String },
}

/// State shared by the request handlers.
pub(crate) struct Shared {
    pub config: NodeConfig,
    pub controller: Controller,
    pub replicas: Arc<Replicas>,
    pub db: Arc<LogDb>,
    pub started: Instant,
}

impl Shared {
    pub(crate) fn metadata(&self) -> Metadata {
        self.controller.view().snapshot()
    }

    pub(crate) fn cluster_status(&self) -> ClusterStatus {
        let md = self.metadata();
        let leader = self.controller.leader();
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
                    } else {
                        "controller-voter"
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

/// A running node.
pub struct Node {
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
}

impl Node {
    /// Starts everything and returns once the node serves requests.
    pub async fn start(config: NodeConfig) -> Result<Self, NodeError> {
        let data_dir = DataDir::claim(&config.data_dir, &config.cluster_id, config.id)?;
        let tls_dir = data_dir.tls();
        let tls_err = |source| NodeError::Tls {
            dir: tls_dir.clone(),
            source,
        };
        let identity = CertKeyPair::load(&tls_dir, "node").map_err(tls_err)?;
        let ca_pem = std::fs::read_to_string(tls_dir.join("ca.pem")).map_err(|e| {
            tls_err(TlsError::ReadFile {
                path: tls_dir.join("ca.pem"),
                source: e,
            })
        })?;
        let auth = if config.require_client_cert {
            ClientAuth::Required
        } else {
            ClientAuth::Optional
        };
        let server_config = sluice_transport::server_config(&identity, &ca_pem, auth)
            .map_err(NodeError::TlsConfig)?;
        // Bind first: a port in use should fail before any state is touched.
        let endpoint = sluice_transport::bind_server(config.listen, server_config)?;

        let db = LogDb::open(&data_dir.raft())?;
        let controller =
            Controller::start(db.clone(), config.id, data_dir.controller_state()).await?;
        let addr = config.advertised_addr();
        controller.bootstrap(config.id, addr.clone()).await?;
        let wait = Duration::from_secs(10);
        if controller.wait_for_leader(wait).await.is_none() {
            return Err(NodeError::NoControllerLeader(wait));
        }
        if !controller.wait_for_recovery(wait).await {
            tracing::warn!("controller metadata did not finish recovering within {wait:?}");
        }
        let known = controller
            .view()
            .with(|md| md.nodes.get(&config.id).map(|n| n.addr.clone()));
        if known.as_deref() != Some(addr.as_str()) {
            controller
                .register_node(NodeRecord {
                    id: config.id,
                    addr: addr.clone(),
                })
                .await
                .map_err(|e| NodeError::Register {
                    node: config.id,
                    reason: e.to_string(),
                })?;
        }

        let replicas = Replicas::new(config.id, addr, db.clone(), data_dir.clone());
        tokio::spawn(replicas.clone().run_reconciler(controller.view().clone()));
        let retention = replicas.clone();
        let every = Duration::from_secs(config.retention_check_secs.max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let r = retention.clone();
                let _ = tokio::task::spawn_blocking(move || r.enforce_retention()).await;
            }
        });

        let shared = Arc::new(Shared {
            config,
            controller,
            replicas,
            db,
            started: Instant::now(),
        });
        tokio::spawn(crate::server::serve(endpoint.clone(), shared.clone()));
        tracing::info!(
            node = shared.config.id, listen = %shared.config.listen, data_dir = %shared.config.data_dir.display(),
            "node is serving"
        );
        Ok(Self { shared, endpoint })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.endpoint.local_addr()
    }

    /// WAL fsyncs so far (for measuring group commit).
    pub fn fsync_count(&self) -> u64 {
        self.shared.db.fsync_count()
    }

    /// Stops serving, stops the Raft groups and fsyncs the partitions.
    pub async fn shutdown(self) {
        self.endpoint.close(0u32.into(), b"node shutting down");
        for p in self.shared.replicas.all() {
            p.group.shutdown().await;
        }
        self.shared.controller.shutdown().await;
        self.shared.replicas.sync_all();
        self.endpoint.wait_idle().await;
        tracing::info!(node = self.shared.config.id, "node stopped");
    }
}
