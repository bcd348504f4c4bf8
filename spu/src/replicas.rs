//! The partition replicas this node runs, kept in line with the controller's
//! metadata by a reconciler: a partition assigned to this node is started
//! (its log opened, its Raft group started and, if new, initialized), a
//! partition whose topic was deleted is stopped and its data removed.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sluice_controller::{Metadata, MetadataView};
use sluice_proto::{NodeId, WireError};
use sluice_raft::{Group, GroupConfig, LogDb, partition_group};
use sluice_storage::LogConfig;
use tokio::sync::watch;

use crate::data_dir::DataDir;
use crate::log_copy::SharedLogSource;
use crate::partition::Partition;
use crate::peers::Peers;

/// (topic id, partition index): topic ids are never reused, names may be.
type Key = (u32, u32);

const RECOVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Raft entries (produce batches) a partition keeps after a snapshot point,
/// for followers a little behind. One further behind gets a snapshot and
/// copies segments (`log_copy`), which is faster than replaying the log, so
/// the tail need not be long: it is disk (up to 5,000 batches of produce
/// data) held in RocksDB next to the segments.
const PARTITION_LOG_KEPT_ENTRIES: u64 = 5_000;
/// How a starting replica relates to its partition's Raft group.
struct GroupRole<'a> {
    /// It creates the group's first membership (first replica of a new partition).
    creates_group: bool,
    /// The partition was moved at least once: the group may predate this replica.
    reassigned: bool,
    replicas: &'a [NodeId],
}

/// Overrides the partition groups' snapshot interval and kept log, as
/// `SNAPSHOT_EVERY:KEPT` entries (tests use small values to make replicas
/// catch up through a snapshot and segment copy).
const LOG_ENTRIES_ENV: &str = "SLUICE_PARTITION_LOG_ENTRIES";

fn partition_group_config() -> GroupConfig {
    let default = GroupConfig {
        entries_kept_after_snapshot: PARTITION_LOG_KEPT_ENTRIES,
        ..GroupConfig::default()
    };
    let Ok(value) = std::env::var(LOG_ENTRIES_ENV) else {
        return default;
    };
    let parsed = value
        .split_once(':')
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
    match parsed {
        Some((every, kept)) => GroupConfig {
            snapshot_every_entries: every,
            entries_kept_after_snapshot: kept,
            ..default
        },
        None => {
            tracing::warn!(%value, "{LOG_ENTRIES_ENV} is not SNAPSHOT_EVERY:KEPT; ignored");
            default
        }
    }
}

/// How often the reconciler retries replicas that failed to start.
const RETRY_INTERVAL: Duration = Duration::from_secs(5);

pub(crate) struct Replicas {
    node: NodeId,
    db: Arc<LogDb>,
    data_dir: DataDir,
    running: RwLock<HashMap<Key, Partition>>,
    /// The metadata version the running set last matched.
    reconciled: watch::Sender<u64>,
    peers: Peers,
    /// Rotates the replica named in redirects for partitions not hosted here.
    redirects: std::sync::atomic::AtomicUsize,
    /// Where replicas installing a snapshot copy their batches from.
    log_source: SharedLogSource,
}

impl Replicas {
    pub(crate) fn new(
        node: NodeId,
        db: Arc<LogDb>,
        data_dir: DataDir,
        peers: Peers,
        log_source: SharedLogSource,
    ) -> Arc<Self> {
        Arc::new(Self {
            log_source,
            node,
            db,
            data_dir,
            running: RwLock::new(HashMap::new()),
            reconciled: watch::channel(0).0,
            peers,
            redirects: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// The running replica of `topic`/`partition`, or why there is none.
    pub(crate) fn get(
        &self,
        md: &Metadata,
        topic: &str,
        partition: u32,
    ) -> Result<Partition, WireError> {
        let record = md.topic(topic)?;
        let partitions = record.info.spec.partitions;
        if partition >= partitions {
            return Err(WireError::UnknownPartition {
                topic: topic.to_string(),
                partition,
                partitions,
            });
        }
        let replicas = record
            .info
            .assignments
            .get(partition as usize)
            .map(|a| &a.replicas);
        if let Some(replicas) = replicas.filter(|r| !r.contains(&self.node)) {
            // Not hosted here: send the client to a replica, which knows the
            // leader; a different one each time, so a dead replica cannot
            // absorb every retry.
            let turn = self
                .redirects
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(WireError::NotLeader {
                node: self.node,
                what: format!("partition {topic}/{partition}"),
                leader: replicas.get(turn % replicas.len().max(1)).copied(),
            });
        }
        let running = self.running.read().unwrap_or_else(|p| p.into_inner());
        running
            .get(&(record.id, partition))
            .cloned()
            .ok_or_else(|| WireError::Unavailable {
                what: format!("partition {topic}/{partition}"),
                reason: "its replica is still starting on this node".into(),
            })
    }

    /// The running replica whose Raft group is `group` (for Raft RPCs).
    pub(crate) fn by_group(&self, group: u64) -> Option<Partition> {
        let key = ((group >> 32) as u32, group as u32);
        self.running
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned()
    }

    pub(crate) fn all(&self) -> Vec<Partition> {
        let running = self.running.read().unwrap_or_else(|p| p.into_inner());
        running.values().cloned().collect()
    }

    /// Follows the metadata until the node stops.
    pub(crate) async fn run_reconciler(self: Arc<Self>, view: MetadataView) {
        let mut changes = view.subscribe();
        loop {
            let version = *changes.borrow_and_update();
            let md = view.snapshot();
            self.reconcile(&md).await;
            self.reconciled.send_replace(version);
            // Wake on a change, or after a while to retry replicas that failed to start.
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(RETRY_INTERVAL) => {}
            }
        }
    }

    /// Waits until the running set reflects metadata version `version`.
    pub(crate) async fn wait_reconciled(&self, version: u64, timeout: Duration) -> bool {
        let mut rx = self.reconciled.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|v| *v >= version))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    async fn reconcile(&self, md: &Metadata) {
        let mut wanted = HashMap::new();
        for record in md.topics.values() {
            for a in &record.info.assignments {
                // A replica being moved away keeps running until the new
                // replica set has taken over (the move is finished).
                let leaving = record
                    .moving
                    .get(&a.partition)
                    .is_some_and(|l| l.contains(&self.node));
                if a.replicas.contains(&self.node) || leaving {
                    wanted.insert((record.id, a.partition), (record, a));
                }
            }
        }
        let stale: Vec<(Key, Partition)> = {
            let running = self.running.read().unwrap_or_else(|p| p.into_inner());
            running
                .iter()
                .filter(|(k, _)| !wanted.contains_key(k))
                .map(|(k, p)| (*k, p.clone()))
                .collect()
        };
        for (key, partition) in stale {
            // Moved away (the topic lives on): keep the group's vote.
            let moved = md.topics.values().any(|r| r.id == key.0);
            self.stop_and_remove(key, partition, moved).await;
        }
        for (key, (record, assignment)) in wanted {
            if self
                .running
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(&key)
            {
                continue;
            }
            let spec = &record.info.spec;
            let config = LogConfig {
                segment_size_bytes: spec.segment_size_bytes,
                retention_bytes: spec.retention_bytes,
                retention_ms: spec.retention_ms,
                ..LogConfig::default()
            };
            let dir = self.data_dir.partition(&spec.name, key.0, key.1);
            // Only a partition's first replica set is created by a replica;
            // after a reassignment the group exists and its leader adds nodes.
            let reassigned = record.reassigned.contains(&key.1);
            let role = GroupRole {
                creates_group: !reassigned && assignment.replicas.first() == Some(&self.node),
                reassigned,
                replicas: &assignment.replicas,
            };
            match self.start(key, &spec.name, &dir, config, role, md).await {
                Ok(p) => {
                    tracing::info!(topic = %spec.name, partition = key.1, "partition replica started");
                    self.running
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(key, p);
                }
                Err(e) => {
                    tracing::error!(topic = %spec.name, partition = key.1, dir = %dir.display(), error = %e, "partition replica failed to start")
                }
            }
        }
    }

    async fn start(
        &self,
        key: Key,
        topic: &str,
        dir: &std::path::Path,
        config: LogConfig,
        role: GroupRole<'_>,
        md: &Metadata,
    ) -> Result<Partition, String> {
        let GroupRole {
            creates_group,
            reassigned,
            replicas,
        } = role;
        let group_id = partition_group(key.0, key.1);
        let (sm, log, end_rx) = Partition::open_log(
            dir,
            topic,
            key.1,
            config,
            self.node,
            group_id,
            self.log_source.clone(),
        )
        .map_err(|e| e.to_string())?;
        let transport = Arc::new(self.peers.clone());
        // A follower further behind than the kept log catches up through a
        // snapshot and a copy of the segments (`crate::log_copy`).
        let config = GroupConfig {
            // A replica joining an existing group starts with an empty log:
            // it must not vote before the leader has made it a voter.
            vote_only_as_member: reassigned && !creates_group,
            ..partition_group_config()
        };
        let group = Group::start(self.db.clone(), self.node, group_id, sm, &config, transport)
            .await
            .map_err(|e| e.to_string())?;
        // The first replica creates the group's membership; the others are
        // brought in by its leader.
        if creates_group {
            let members: Vec<(NodeId, String)> = replicas
                .iter()
                .filter_map(|id| md.nodes.get(id).map(|n| (*id, n.addr.clone())))
                .collect();
            if let Err(e) = group.initialize(&members).await {
                // Never leave a second Raft instance behind for the retry.
                group.shutdown().await;
                return Err(e.to_string());
            }
        }
        // Serve no read before the committed tail is re-applied: a consumer
        // must never see a shorter log after a restart than before it. The
        // wait runs in the background because the group must already answer
        // Raft RPCs, or a follower could never recover.
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (g, flag, name) = (group.clone(), ready.clone(), format!("{topic}/{}", key.1));
        tokio::spawn(async move {
            while !g.wait_for_recovery(RECOVERY_TIMEOUT).await {
                tracing::warn!(partition = %name, "replica not recovered after {RECOVERY_TIMEOUT:?}; still waiting");
            }
            flag.store(true, std::sync::atomic::Ordering::Release);
        });
        Ok(Partition {
            topic: topic.to_string(),
            index: key.1,
            group,
            log,
            end_rx,
            ready,
        })
    }

    async fn stop_and_remove(&self, key: Key, partition: Partition, keep_vote: bool) {
        self.running
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        partition.group.shutdown().await;
        let dir = read_dir_of(&partition);
        let destroyed = if keep_vote {
            self.db.destroy_group_keep_vote(partition.group.id())
        } else {
            self.db.destroy_group(partition.group.id())
        };
        if let Err(e) = destroyed {
            tracing::warn!(topic = %partition.topic, partition = key.1, error = %e, "could not delete the Raft log of a deleted partition");
        }
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "could not delete the segments of a deleted partition");
        }
        tracing::info!(topic = %partition.topic, partition = key.1, "partition replica removed");
    }

    /// Applies retention to every partition (called periodically).
    pub(crate) fn enforce_retention(&self) {
        let now = sluice_proto::now_ms();
        for p in self.all() {
            let mut log = p.log.write().unwrap_or_else(|e| e.into_inner());
            match log.enforce_retention(now) {
                Ok(report) if !report.deleted.is_empty() => tracing::info!(
                    topic = %p.topic, partition = p.index, segments = report.deleted.len(),
                    start_offset = log.start_offset(), "retention deleted old segments"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(topic = %p.topic, partition = p.index, error = %e, "retention failed")
                }
            }
        }
    }

    /// Fsyncs every partition's segments (at shutdown).
    pub(crate) fn sync_all(&self) {
        for p in self.all() {
            if let Err(e) = p.log.write().unwrap_or_else(|e| e.into_inner()).sync() {
                tracing::error!(topic = %p.topic, partition = p.index, error = %e, "sync at shutdown failed");
            }
        }
    }
}

fn read_dir_of(p: &Partition) -> std::path::PathBuf {
    crate::partition::read_lock(&p.log).dir().to_path_buf()
}
