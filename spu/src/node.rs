//! Wiring of a node: the one place that knows every part.

use std::sync::Arc;
use std::time::Duration;

use sluice_controller::Controller;
use sluice_raft::LogDb;
use sluice_transport::{CertKeyPair, ClientAuth, Connector, PeerIdentity, TlsError};

use crate::config::NodeConfig;
use crate::data_dir::DataDir;
pub use crate::node_error::NodeError;
use crate::peers::Peers;
use crate::replicas::Replicas;
use crate::services::Services;
use crate::shared::Shared;
use crate::timeouts::{CONTROLLER_START_WAIT, PEER_CONNECT_TIMEOUT};

/// A running node.
pub struct Node {
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
}

impl Node {
    /// Starts everything and returns once the node serves requests: its
    /// data dir claimed, its certificate checked and its port bound before
    /// any state is touched, then the Raft log, the controller, the
    /// replicas, serving, the controller leader awaited, and the background
    /// tasks.
    pub async fn start(config: NodeConfig) -> Result<Self, NodeError> {
        let data_dir = DataDir::claim(&config.data_dir, &config.cluster_id, config.id)?;
        let (endpoint, peers) = bind(&config, &data_dir)?;
        let mut db_options = crate::fsync_journal::from_env(data_dir.root(), &data_dir.raft())
            .map_err(|source| NodeError::FsyncJournal {
                dir: data_dir.root().to_path_buf(),
                source,
            })?;
        db_options.write_buffer_bytes = crate::fsync_journal::raft_write_buffer_from_env()
            .map_err(|reason| NodeError::Refused { reason })?;
        // Before the Raft log opens, so a crash point can land in its replay too.
        match sluice_crashpoints::init(data_dir.root()) {
            Ok(Some(file)) => tracing::warn!(
                file = %file.display(),
                "{} is set: this node aborts at the crash point written to that file \
                 (fault suite only); unset it outside the fault suite",
                sluice_crashpoints::FILE_ENV
            ),
            Ok(None) => {}
            Err(source) => {
                return Err(NodeError::CrashFile {
                    dir: data_dir.root().to_path_buf(),
                    source,
                });
            }
        }
        let db = LogDb::open_with(&data_dir.raft(), db_options)?;
        tokio::spawn(stop_on_write_failure(
            db.write_failure(),
            data_dir.root().to_path_buf(),
        ));
        let others: Vec<String> = config
            .peers
            .iter()
            .filter(|p| p.id != config.id)
            .map(|p| p.addr.clone())
            .collect();
        crate::membership::check_identity(
            config.id,
            &data_dir,
            &peers,
            &others,
            config.join.as_deref(),
        )
        .await?;
        // Every group of the node (the controller's too) reaches its peers
        // through one transport that sends heartbeats to a node together.
        let raft: Arc<dyn sluice_raft::RaftTransport> = Arc::new(sluice_raft::Coalescing::new(
            Arc::new(peers.clone()),
            sluice_raft::timeouts::HEARTBEAT_COALESCE_WINDOW,
        ));
        let controller = Controller::start(
            db.clone(),
            config.id,
            data_dir.controller_state(),
            raft.clone(),
        )
        .await?;
        let log_source = Arc::new(crate::log_copy::PeerLogSource {
            peers: peers.clone(),
            metadata: controller.view().clone(),
            runtime: tokio::runtime::Handle::current(),
        });
        let quiescence = config.quiesce_idle_groups.then(|| {
            sluice_raft::Quiescence::start(config.id, raft.clone(), config.quiesce_config())
        });
        if let Some(q) = &quiescence {
            controller.quiesce_with(q).await;
            // Weak: the hook must not keep the database open past the node.
            let idle_db = Arc::downgrade(&db);
            q.on_all_asleep(move || settle_idle(idle_db.upgrade().as_deref()));
        }
        let replicas = Replicas::new(
            config.id,
            db.clone(),
            data_dir.clone(),
            raft,
            log_source,
            quiescence,
            config.partition_group_config(),
        );
        let audit = crate::audit_log::AuditLog::new(config.audit_topic);
        let connector_launch = crate::connectors::launch(&config, &data_dir);
        let services = Arc::new(Services::new(
            config, controller, replicas, db, peers, data_dir,
        ));
        let shared = Arc::new(Shared {
            services,
            groups: Default::default(),
            audit,
            connectors: Default::default(),
            connector_launch,
        });
        // Serve before anything waits on other nodes: they need our votes.
        tokio::spawn(crate::server::serve(endpoint.clone(), shared.clone()));
        join_or_form(&shared).await?;
        spawn_background(&shared);
        let config = &shared.config;
        tracing::info!(
            node = config.id, listen = %config.listen, data_dir = %config.data_dir.display(),
            "node is serving"
        );
        Ok(Self { shared, endpoint })
    }

    /// Resolves (with the reason) when the node must stop on its own:
    /// unregistered from the cluster, or refused by it.
    pub async fn fatal(&self) -> String {
        let mut rx = self.shared.fatal();
        match rx.wait_for(|r| r.is_some()).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => std::future::pending().await,
        }
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
        if let Err(e) = self.shared.db.flush() {
            tracing::error!(error = %e, "final WAL flush failed");
        }
        self.endpoint.wait_idle().await;
        tracing::info!(node = self.shared.config.id, "node stopped");
    }
}

/// Loads the node's certificate (which must name this node: peers authorize
/// node-only requests by the id in it) and the cluster CA, binds the QUIC
/// server (a port in use fails before any state is touched), and makes the
/// client side for peers.
fn bind(config: &NodeConfig, data_dir: &DataDir) -> Result<(quinn::Endpoint, Peers), NodeError> {
    let tls_dir = data_dir.tls();
    let tls_err = |source| NodeError::Tls {
        dir: tls_dir.clone(),
        source,
    };
    let identity = CertKeyPair::load(&tls_dir, "node").map_err(tls_err)?;
    match identity.identity() {
        Ok(PeerIdentity::Node(id)) if id == config.id => {}
        named => {
            let named = match named {
                Ok(other) => format!("names {other}"),
                Err(e) => e.to_string(),
            };
            return Err(NodeError::Refused {
                reason: format!(
                    "{}/node.pem is not node {}'s certificate ({named}); issue it with \
                     `sluice cluster ca issue --dir CA_DIR --node-id {} --out {} --force`",
                    tls_dir.display(),
                    config.id,
                    config.id,
                    tls_dir.display()
                ),
            });
        }
    }
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
    let server_config =
        sluice_transport::server_config(&identity, &ca_pem, auth).map_err(NodeError::TlsConfig)?;
    if let Some(why) = sluice_transport::tls::clock_outside_validity(&identity, &ca_pem) {
        // Not fatal: the clock may be set right while the node runs, and it
        // then connects; until then the operator must hear it plainly.
        tracing::error!("{why}");
        eprintln!("error: {why}");
    }
    let endpoint = sluice_transport::bind_node_server(config.listen, server_config, &identity)?;
    let client_config =
        sluice_transport::peer_client_config(&ca_pem, &identity).map_err(NodeError::TlsConfig)?;
    // Dial peers from the listen address, so node-to-node traffic carries
    // it as its source (firewall rules between nodes can then match it).
    let peers = Peers::new(
        Connector::with_local_ip(
            client_config,
            PEER_CONNECT_TIMEOUT,
            Some(config.listen.ip()),
        ),
        config.append_streams,
    );
    Ok((endpoint, peers))
}

/// Joins a running cluster (`--join`: never creates a controller group), or
/// creates the controller group if this node is the first initial voter;
/// then waits (bounded) for a controller leader and its recovered metadata.
async fn join_or_form(shared: &Arc<Shared>) -> Result<(), NodeError> {
    let (config, controller) = (&shared.config, &shared.controller);
    if let Some(via) = &config.join {
        crate::membership::join(shared, via).await?;
    } else {
        let voters = config.initial_voters();
        if voters.first().map(|v| v.0) == Some(config.id) {
            controller.bootstrap(&voters).await?;
        }
    }
    let wait = CONTROLLER_START_WAIT;
    match controller.wait_for_leader(wait).await {
        Some(leader) => {
            if !controller.wait_for_recovery(wait).await {
                tracing::warn!("controller metadata did not finish recovering within {wait:?}");
            }
            tracing::info!(leader, "controller leader known");
        }
        None => {
            tracing::warn!("no controller leader within {wait:?}; serving while the cluster forms")
        }
    }
    Ok(())
}

/// Exit status of a node that stopped because its Raft log database could
/// not write (`EX_IOERR` of sysexits.h).
pub const EXIT_STORAGE_FAILED: i32 = 74;

/// Ends the process at the Raft log database's first failed write or fsync
/// (see `sluice_raft`'s `log_store::failure`): fail-stop, since nothing this
/// node has not made durable was acknowledged, and going on would mean
/// writing to a database in an unknown state. `_exit`, not `exit`: no
/// destructor or `atexit` handler runs while RocksDB's threads are live, as
/// after a SIGKILL.
async fn stop_on_write_failure(
    mut failed: tokio::sync::watch::Receiver<Option<String>>,
    dir: std::path::PathBuf,
) {
    let reason = match failed.wait_for(Option::is_some).await {
        Ok(reason) => reason.clone().unwrap_or_default(),
        // The database is gone: the node stopped anyway.
        Err(_) => return,
    };
    let message = format!(
        "this node stops: its Raft log database could not write ({reason}). What it \
         acknowledged is durable and nothing else was acknowledged. Free disk space or fix \
         the disk under {}, then start the node again (`sluice cluster start` restarts the \
         stopped nodes of a local cluster)",
        dir.display()
    );
    tracing::error!("{message}");
    eprintln!("{message}");
    // SAFETY: `_exit` ends the process at once; nothing is left half done
    // that a SIGKILL would not also leave.
    unsafe { libc::_exit(EXIT_STORAGE_FAILED) }
}

/// The node's background tasks: the replica reconciler, metrics (a port in
/// use is reported and the node serves without them: observability must not
/// cost the node its service), membership upkeep, seed topics, leadership
/// balance and moves, the audit trail, retention.
fn spawn_background(shared: &Arc<Shared>) {
    let config = &shared.config;
    tokio::spawn(
        shared
            .replicas
            .clone()
            .run_reconciler(shared.controller.view().clone()),
    );
    if let Some(listen) = config.metrics_listen {
        match crate::metrics::install(listen) {
            Ok(()) => {
                tracing::info!(%listen, "serving metrics at http://{listen}/metrics");
                tokio::spawn(crate::sampler::sample(
                    shared.services.clone(),
                    shared.connectors.clone(),
                    shared.connector_launch.clone(),
                ));
            }
            Err(e) => tracing::error!(
                %listen, error = %e,
                "cannot serve metrics; the node runs without them (free the port or \
                 change `metrics_listen`)"
            ),
        }
    }
    tokio::spawn(crate::membership::maintain(shared.clone()));
    if !config.seed_topics.is_empty() {
        tokio::spawn(crate::server::seed_topics(shared.clone()));
    }
    tokio::spawn(crate::membership::drive_reassignments(shared.clone()));
    if let Some(events) = shared.audit.take_receiver() {
        tokio::spawn(crate::audit_writer::run(shared.services.clone(), events));
    }
    tokio::spawn(crate::connectors::run(
        config.id,
        shared.controller.clone(),
        shared.connectors.clone(),
        shared.connector_launch.clone(),
    ));
    let retention = shared.replicas.clone();
    let every = Duration::from_secs(config.retention_check_secs.max(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let r = retention.clone();
            let _ = tokio::task::spawn_blocking(move || r.enforce_retention()).await;
        }
    });
}

/// Memtable bytes an idle node keeps rather than writing them out: below
/// this (one or two of RocksDB's ~1 MB arena blocks, mostly untouched) a
/// flush would buy little memory for its table file, its fsyncs and, turn
/// after turn, the compactions of many tiny files (a node that turns idle
/// after each of a few sparse writes).
const IDLE_MEMTABLE_BYTES_KEPT: u64 = 2 * 1024 * 1024;

/// What a node does each time it turns idle (every partition group asleep):
/// write the Raft database's memtables out if they hold more than
/// [`IDLE_MEMTABLE_BYTES_KEPT`], then give freed memory back. Both cost an
/// idle node nothing after: they run once per turn to idle.
fn settle_idle(db: Option<&LogDb>) {
    if let Some(db) = db
        && db.memtable_bytes() > IDLE_MEMTABLE_BYTES_KEPT
        && let Err(e) = db.write_out_memtables()
    {
        tracing::warn!(error = %e, "could not write the Raft log's memtables out on turning idle");
    }
    give_back_freed_memory();
}

/// Gives the free pages of the C heap back to the system. RocksDB allocates
/// from glibc's malloc (the binary's jemalloc is prefixed, see
/// `cli/src/main.rs`), whose arenas keep what it freed: about 50 MB a node
/// after 200,000 records (BENCHMARKS.md, session 30). Run when every
/// partition group of the node has fallen asleep, so an idle node pays for
/// it once (a walk of glibc's free lists, not timed).
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only returns free memory of glibc's heap to the
    // system; it takes glibc's own arena locks and touches no live memory.
    unsafe {
        libc::malloc_trim(0);
    }
}
