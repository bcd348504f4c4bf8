//! The partition replicas this node runs, kept in line with the controller's
//! metadata by a reconciler: a partition assigned to this node is started
//! (its log opened and checked, its Raft group started and, if new,
//! initialized), a partition whose topic was deleted is stopped and its data
//! removed.
//!
//! A replica whose segments hold less than, or other than, its replicated
//! state says (found when its log is opened, or by its state machine while it
//! re-applies its Raft log) is not started, or is taken out of the running
//! set: it neither serves, nor votes, nor leads until its segments have been
//! copied from another replica in the background (`crate::repair`); then it
//! starts like after any restart.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use sluice_controller::{Metadata, MetadataView};
use sluice_proto::{NodeId, WireError};
use sluice_raft::{Group, GroupConfig, LogDb, Quiescence, partition_group};
use sluice_storage::LogConfig;
use tokio::sync::watch;

use crate::data_dir::DataDir;
use crate::log_copy::SharedLogSource;
use crate::partition::{OpenError, Partition};
use crate::repair::{self, Damage, RepairError, RepairJob, RepairPaths, Repaired, ReplicaName};
use crate::timeouts::{RECOVERY_TIMEOUT, REPLICA_RETRY_INTERVAL, STOPPED_REPLICA_RESTART_BACKOFF};

/// (topic id, partition index): topic ids are never reused, names may be.
type Key = (u32, u32);

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

/// The node's `base` for partition groups, with the partitions' kept log
/// (and the test override of [`LOG_ENTRIES_ENV`]).
fn partition_group_config(base: GroupConfig) -> GroupConfig {
    let default = GroupConfig {
        entries_kept_after_snapshot: PARTITION_LOG_KEPT_ENTRIES,
        ..base
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

/// Where a replica that is not running because its segments need a repair
/// stands. Kept for the node's lifetime (or until the partition leaves the
/// node): the damage is not looked for again on every retry, which would
/// read the whole partition each time.
enum RepairState {
    /// Damage found; a copy is tried on the reconciler's passes from `retry_at`.
    Damaged {
        damage: Damage,
        detected: Instant,
        retry_at: Instant,
        /// Why the last attempt did not repair it.
        error: Option<String>,
    },
    /// A copy runs in the background.
    Copying {
        damage: Damage,
        detected: Instant,
        cancelled: Arc<AtomicBool>,
    },
    /// Copied: the replica starts again; forgotten once it serves.
    Repaired {
        detected: Instant,
        repaired: Repaired,
    },
    /// Damaged again right after a repair: its Raft log and the other
    /// replicas disagree. Stays stopped until the node restarts.
    Failed { error: String },
}

/// What the reconciler does with a replica it wants but does not run.
enum Step {
    Start,
    Wait,
    Copy { damage: Damage, detected: Instant },
}

/// Why a replica did not start.
enum StartError {
    /// Its segments need a repair first.
    Damaged(Damage),
    Failed(String),
}

/// A partition replica this node holds, as the metadata places it.
struct Located {
    /// (topic id, partition): the key of the running replicas.
    key: (u32, u32),
    topic: String,
}

pub(crate) struct Replicas {
    node: NodeId,
    db: Arc<LogDb>,
    data_dir: DataDir,
    running: RwLock<HashMap<Key, Partition>>,
    /// The metadata version the running set last matched.
    reconciled: watch::Sender<u64>,
    /// How this node's groups reach their peers (heartbeats coalesced).
    raft: Arc<dyn sluice_raft::RaftTransport>,
    /// Lets idle partition groups sleep; `None` when the node turned it off.
    quiescence: Option<Quiescence>,
    /// The node's settings for every partition group (each replica adds
    /// its own `vote_only_as_member`).
    group_base: GroupConfig,
    /// Rotates the replica named in redirects for partitions not hosted here.
    redirects: std::sync::atomic::AtomicUsize,
    /// Where replicas installing a snapshot copy their batches from.
    log_source: SharedLogSource,
    /// Replicas kept stopped because their segments need a repair.
    repairs: Arc<Mutex<HashMap<Key, RepairState>>>,
    /// Wakes the reconciler when a repair has finished its copy.
    repair_done: Arc<tokio::sync::Notify>,
    /// When each replica was last restarted because its Raft group had
    /// stopped, and how many times (for the log).
    restarts: Mutex<HashMap<Key, (Instant, u64)>>,
}

impl Replicas {
    /// The node's quiescence, if it lets idle groups sleep.
    pub(crate) fn quiescence(&self) -> Option<&Quiescence> {
        self.quiescence.as_ref()
    }

    pub(crate) fn new(
        node: NodeId,
        db: Arc<LogDb>,
        data_dir: DataDir,
        raft: Arc<dyn sluice_raft::RaftTransport>,
        log_source: SharedLogSource,
        quiescence: Option<Quiescence>,
        group_base: GroupConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            log_source,
            quiescence,
            group_base,
            node,
            db,
            data_dir,
            running: RwLock::new(HashMap::new()),
            reconciled: watch::channel(0).0,
            raft,
            redirects: std::sync::atomic::AtomicUsize::new(0),
            repairs: Arc::default(),
            repair_done: Arc::default(),
            restarts: Mutex::default(),
        })
    }

    fn repairs(&self) -> std::sync::MutexGuard<'_, HashMap<Key, RepairState>> {
        self.repairs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why a replica this node hosts is not running, for the client.
    fn not_running_reason(&self, key: Key) -> String {
        let node = self.node;
        match self.repairs().get(&key) {
            None => "its replica is still starting on this node".into(),
            Some(RepairState::Damaged { damage, error, .. }) => format!(
                "its replica on node {node} stays stopped until its damaged segments are \
                 repaired ({}); read from another replica",
                error.clone().unwrap_or_else(|| damage.to_string())
            ),
            Some(RepairState::Copying {
                damage, detected, ..
            }) => format!(
                "its replica on node {node} is being repaired ({damage}, found {}s ago; its \
                 segments are being copied from another replica); read from another replica",
                detected.elapsed().as_secs()
            ),
            Some(RepairState::Repaired { .. }) => {
                format!("its replica on node {node} was repaired and is starting")
            }
            Some(RepairState::Failed { error }) => {
                format!("its replica on node {node} stopped: {error}")
            }
        }
    }

    /// The running replica of `topic`/`partition`, or why there is none.
    pub(crate) fn get(
        &self,
        md: &Metadata,
        topic: &str,
        partition: u32,
    ) -> Result<Partition, WireError> {
        self.running_at(self.locate(md, topic, partition)?)
    }

    /// [`Replicas::get`] reading only what it needs of the node's metadata
    /// copy, under its lock: the produce path's way, which must not copy
    /// the whole metadata (modules' code included) per batch.
    pub(crate) fn get_in(
        &self,
        view: &sluice_controller::MetadataView,
        topic: &str,
        partition: u32,
    ) -> Result<Partition, WireError> {
        // `locate` takes no lock of its own, so none is taken under the view's.
        let located = view.with(|md| self.locate(md, topic, partition))?;
        self.running_at(located)
    }

    /// Where `topic`/`partition` is, by the metadata: its key among the
    /// running replicas if this node holds one, else `NotLeader` naming a
    /// replica to ask. Takes no lock.
    fn locate(&self, md: &Metadata, topic: &str, partition: u32) -> Result<Located, WireError> {
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
        Ok(Located {
            key: (record.id, partition),
            topic: topic.to_string(),
        })
    }

    fn running_at(&self, located: Located) -> Result<Partition, WireError> {
        let running = self.running.read().unwrap_or_else(|p| p.into_inner());
        let found = running.get(&located.key).cloned();
        drop(running);
        found.ok_or_else(|| WireError::Unavailable {
            what: format!("partition {}/{}", located.topic, located.key.1),
            reason: self.not_running_reason(located.key),
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
                _ = tokio::time::sleep(REPLICA_RETRY_INTERVAL) => {}
                _ = self.repair_done.notified() => {}
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
        self.take_out_damaged().await;
        self.take_out_stopped().await;
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
        // A partition that left this node needs no repair here any more.
        self.repairs().retain(|key, state| {
            let keep = wanted.contains_key(key);
            if let (false, RepairState::Copying { cancelled, .. }) = (keep, state) {
                cancelled.store(true, Ordering::Release);
            }
            keep
        });
        self.restarts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|key, _| wanted.contains_key(key));
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
            let running = self
                .running
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .cloned();
            if let Some(p) = running {
                if p.is_ready()
                    && matches!(self.repairs().get(&key), Some(RepairState::Repaired { .. }))
                {
                    self.repairs().remove(&key);
                }
                continue;
            }
            let spec = &record.info.spec;
            let config = LogConfig {
                segment_size_bytes: spec.segment_size_bytes,
                retention_bytes: spec.retention_bytes,
                retention_ms: spec.retention_ms,
                compression: md.topic_settings_of(&spec.name).compression.stored(),
                ..LogConfig::default()
            };
            let paths = RepairPaths {
                dir: self.data_dir.partition(&spec.name, key.0, key.1),
                staging: self.data_dir.partition_repair(&spec.name, key.0, key.1),
                quarantine: self.data_dir.quarantine(),
            };
            let name = ReplicaName {
                topic: spec.name.clone(),
                partition: key.1,
                node: self.node,
            };
            // Every other node holding the partition can give a copy: its
            // segments hold committed entries only.
            let mut sources: Vec<NodeId> = Vec::new();
            let leaving = record.moving.get(&key.1).into_iter().flatten();
            for &n in assignment.replicas.iter().chain(leaving) {
                if n != self.node && !sources.contains(&n) {
                    sources.push(n);
                }
            }
            let repair = |damage, detected| {
                self.begin_repair(
                    key,
                    name.clone(),
                    paths.clone(),
                    config.clone(),
                    sources.clone(),
                    damage,
                    detected,
                )
            };
            match self.repair_step(key) {
                Step::Start => {}
                Step::Wait => continue,
                Step::Copy { damage, detected } => {
                    repair(damage, detected);
                    continue;
                }
            }
            // Only a partition's first replica set is created by a replica;
            // after a reassignment the group exists and its leader adds nodes.
            let reassigned = record.reassigned.contains(&key.1);
            let role = GroupRole {
                creates_group: !reassigned && assignment.replicas.first() == Some(&self.node),
                reassigned,
                replicas: &assignment.replicas,
            };
            match self
                .start(key, &spec.name, &paths, config.clone(), role, md)
                .await
            {
                Ok(p) => {
                    tracing::info!(topic = %spec.name, partition = key.1, "partition replica started");
                    self.running
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(key, p);
                }
                Err(StartError::Damaged(damage)) => {
                    self.record_damage(key, &name, damage);
                    if let Step::Copy { damage, detected } = self.repair_step(key) {
                        repair(damage, detected);
                    }
                }
                Err(StartError::Failed(e)) => {
                    tracing::error!(topic = %spec.name, partition = key.1, dir = %paths.dir.display(), error = %e, "partition replica failed to start")
                }
            }
        }
    }

    /// Takes running replicas whose state machine found their segments
    /// differ from their Raft log (their group stopped) out of the running
    /// set, to be repaired like a replica found damaged at start.
    async fn take_out_damaged(&self) {
        let damaged: Vec<(Key, Partition, Damage)> = {
            let running = self.running.read().unwrap_or_else(|p| p.into_inner());
            running
                .iter()
                .filter_map(|(k, p)| p.damage.take().map(|d| (*k, p.clone(), d)))
                .collect()
        };
        for (key, partition, damage) in damaged {
            self.running
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            partition.group.shutdown().await;
            let name = ReplicaName {
                topic: partition.topic.clone(),
                partition: key.1,
                node: self.node,
            };
            self.record_damage(key, &name, damage);
        }
    }

    /// Takes running replicas whose Raft group failed for another reason
    /// than damage (a storage error, a snapshot install that could not copy
    /// its batches; not a shutdown) out of the running set; the same pass
    /// starts them again from their data on disk, as a node restart would.
    /// Left alone, such a replica served nothing until its node restarted:
    /// the fault suite found one after a pause of the node it was copying a
    /// snapshot from. At most one restart per replica per
    /// [`STOPPED_REPLICA_RESTART_BACKOFF`].
    async fn take_out_stopped(&self) {
        let stopped: Vec<(Key, Partition, String)> = {
            let running = self.running.read().unwrap_or_else(|p| p.into_inner());
            running
                .iter()
                .filter(|(_, p)| !p.damage.is_set())
                .filter_map(|(k, p)| {
                    // A group shut down (the node stopping) is stopped too,
                    // but only a failed one is restarted.
                    let status = p.group.status();
                    let reason = status.stopped.filter(|_| status.failed)?;
                    Some((*k, p.clone(), reason))
                })
                .collect()
        };
        let now = Instant::now();
        for (key, partition, reason) in stopped {
            let restarts = {
                let mut restarts = self.restarts.lock().unwrap_or_else(|p| p.into_inner());
                let entry = restarts.entry(key).or_insert((now, 0));
                if entry.1 > 0 && now.duration_since(entry.0) < STOPPED_REPLICA_RESTART_BACKOFF {
                    continue;
                }
                *entry = (now, entry.1 + 1);
                entry.1
            };
            tracing::error!(
                topic = %partition.topic, partition = key.1, reason = %reason, restarts,
                "the replica's Raft group stopped; restarting the replica from its data on disk"
            );
            self.running
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            partition.group.shutdown().await;
        }
    }

    /// Notes that `key`'s segments need a repair. If they were repaired
    /// since the replica last served, they cannot be made consistent here:
    /// the replica stays stopped for good (until the node restarts).
    fn record_damage(&self, key: Key, name: &ReplicaName, damage: Damage) {
        let mut repairs = self.repairs();
        if let Some(RepairState::Repaired { repaired, .. }) = repairs.get(&key) {
            let error = RepairError::Unrepairable {
                name: name.clone(),
                damage: Box::new(damage),
                from: repaired.from,
                start: repaired.start_offset,
                end: repaired.end_offset,
                quarantined: repaired.quarantined.clone(),
            };
            tracing::error!(partition = %format_args!("{}/{}", name.topic, name.partition), "{error}");
            repairs.insert(
                key,
                RepairState::Failed {
                    error: error.to_string(),
                },
            );
            return;
        }
        tracing::error!(
            partition = %format_args!("{}/{}", name.topic, name.partition),
            offset = damage.offset(),
            "{name}: {damage}; the replica stays stopped (it neither serves nor votes) and its \
             segments are repaired from another replica"
        );
        let now = Instant::now();
        repairs.insert(
            key,
            RepairState::Damaged {
                damage,
                detected: now,
                retry_at: now,
                error: None,
            },
        );
    }

    fn repair_step(&self, key: Key) -> Step {
        match self.repairs().get(&key) {
            None | Some(RepairState::Repaired { .. }) => Step::Start,
            Some(RepairState::Copying { .. } | RepairState::Failed { .. }) => Step::Wait,
            Some(RepairState::Damaged {
                damage,
                detected,
                retry_at,
                ..
            }) if Instant::now() >= *retry_at => Step::Copy {
                damage: damage.clone(),
                detected: *detected,
            },
            Some(RepairState::Damaged { .. }) => Step::Wait,
        }
    }

    /// Starts copying `key`'s segments from `sources` in the background, or,
    /// with no source (a single replica), says why the replica stays stopped
    /// and leaves its files alone.
    #[allow(clippy::too_many_arguments)]
    fn begin_repair(
        &self,
        key: Key,
        name: ReplicaName,
        paths: RepairPaths,
        config: LogConfig,
        sources: Vec<NodeId>,
        damage: Damage,
        detected: Instant,
    ) {
        if sources.is_empty() {
            let error = RepairError::NoSource {
                name: name.clone(),
                damage: Box::new(damage.clone()),
                dir: paths.dir.clone(),
            };
            tracing::error!(partition = %format_args!("{}/{}", name.topic, name.partition), "{error}");
            self.repairs().insert(
                key,
                RepairState::Damaged {
                    damage,
                    detected,
                    retry_at: Instant::now() + REPLICA_RETRY_INTERVAL,
                    error: Some(error.to_string()),
                },
            );
            return;
        }
        let cancelled = Arc::new(AtomicBool::new(false));
        self.repairs().insert(
            key,
            RepairState::Copying {
                damage: damage.clone(),
                detected,
                cancelled: cancelled.clone(),
            },
        );
        let job = RepairJob {
            name,
            group: partition_group(key.0, key.1),
            paths,
            config,
            sources,
            source: self.log_source.clone(),
            damage: damage.clone(),
            cancelled,
        };
        let (repairs, done) = (self.repairs.clone(), self.repair_done.clone());
        tokio::spawn(async move {
            let outcome = tokio::task::spawn_blocking(move || job.run()).await;
            let mut repairs = repairs.lock().unwrap_or_else(|p| p.into_inner());
            if !matches!(repairs.get(&key), Some(RepairState::Copying { .. })) {
                // The partition left this node meanwhile.
                return;
            }
            let error = match outcome {
                Ok(Ok(repaired)) => {
                    repairs.insert(key, RepairState::Repaired { detected, repaired });
                    drop(repairs);
                    // Start it now rather than at the next retry.
                    done.notify_one();
                    return;
                }
                Ok(Err(e)) => {
                    tracing::error!(partition = key.1, "{e}");
                    e.to_string()
                }
                Err(e) => {
                    tracing::error!(partition = key.1, error = %e, "the repair task failed");
                    format!("the repair task failed: {e}")
                }
            };
            repairs.insert(
                key,
                RepairState::Damaged {
                    damage,
                    detected,
                    retry_at: Instant::now() + REPLICA_RETRY_INTERVAL,
                    error: Some(error),
                },
            );
        });
    }

    async fn start(
        &self,
        key: Key,
        topic: &str,
        paths: &RepairPaths,
        config: LogConfig,
        role: GroupRole<'_>,
        md: &Metadata,
    ) -> Result<Partition, StartError> {
        let GroupRole {
            creates_group,
            reassigned,
            replicas,
        } = role;
        let group_id = partition_group(key.0, key.1);
        // Opening reads every stored batch (and scans the active segment):
        // file I/O, on the blocking pool.
        let opened = {
            let (paths, topic, node) = (paths.clone(), topic.to_string(), self.node);
            let source = self.log_source.clone();
            tokio::task::spawn_blocking(move || {
                repair::finish_interrupted(&paths).map_err(|e| {
                    StartError::Failed(format!(
                        "cannot finish or drop the interrupted repair in {}: {e}",
                        paths.staging.display()
                    ))
                })?;
                Partition::open_checked(&paths.dir, &topic, key.1, config, node, group_id, source)
                    .map_err(|e| match e {
                        OpenError::Damaged(damage) => StartError::Damaged(damage),
                        OpenError::Storage(e) => StartError::Failed(e.to_string()),
                    })
            })
            .await
            .map_err(|e| StartError::Failed(format!("opening the log failed: {e}")))?
        };
        let (sm, log, end_rx) = opened?;
        let damage = sm.damage_slot();
        let consumers = sm.consumers_view();
        let transport = self.raft.clone();
        // A follower further behind than the kept log catches up through a
        // snapshot and a copy of the segments (`crate::log_copy`).
        let config = GroupConfig {
            // A replica joining an existing group starts with an empty log:
            // it must not vote before the leader has made it a voter.
            vote_only_as_member: reassigned && !creates_group,
            ..partition_group_config(self.group_base.clone())
        };
        // Starting re-applies the committed entries the node still knows of:
        // a replay that finds other batches than its entries' stops the start.
        let group = Group::start(self.db.clone(), self.node, group_id, sm, &config, transport)
            .await
            .map_err(|e| match damage.take() {
                Some(d) => StartError::Damaged(d),
                None => StartError::Failed(e.to_string()),
            })?;
        if let Some(q) = &self.quiescence {
            group.quiesce_with(q).await;
        }
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
                return Err(StartError::Failed(e.to_string()));
            }
        }
        let repaired = match self.repairs().get(&key) {
            Some(RepairState::Repaired { detected, repaired }) => {
                Some((*detected, repaired.clone()))
            }
            _ => None,
        };
        // Serve no read before the committed tail is re-applied: a consumer
        // must never see a shorter log after a restart than before it. The
        // wait runs in the background because the group must already answer
        // Raft RPCs, or a follower could never recover.
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (g, flag, name) = (group.clone(), ready.clone(), format!("{topic}/{}", key.1));
        tokio::spawn(async move {
            loop {
                let waited = Instant::now();
                if g.wait_for_recovery(RECOVERY_TIMEOUT).await {
                    break;
                }
                // A wait that ends before its timeout without recovery
                // means the group stopped (a replay mismatch, a shutdown):
                // it never recovers, and waiting again would spin.
                if waited.elapsed() < RECOVERY_TIMEOUT / 2 {
                    tracing::warn!(partition = %name, "replica stopped before it recovered");
                    return;
                }
                tracing::warn!(partition = %name, "replica not recovered after {RECOVERY_TIMEOUT:?}; still waiting");
            }
            flag.store(true, std::sync::atomic::Ordering::Release);
            if let Some((detected, r)) = repaired {
                tracing::info!(
                    partition = %name, source = r.from, batches = r.batches, bytes = r.bytes,
                    copy_ms = r.elapsed.as_millis() as u64,
                    repair_ms = detected.elapsed().as_millis() as u64,
                    "repaired replica serves again (repair_ms: from finding the damage to serving)"
                );
            }
        });
        Ok(Partition {
            topic: topic.to_string(),
            index: key.1,
            group,
            log,
            end_rx,
            ready,
            damage,
            consumers,
            proposal_order: Arc::default(),
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
        if !keep_vote {
            // The topic is gone: so is the point of its damaged copies.
            repair::remove_quarantined(&self.data_dir.quarantine(), &dir);
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
