//! Adapts a [`ReplicatedState`] (Sluice's own, openraft-free trait) to
//! openraft's state machine.
//!
//! The adapter keeps openraft's bookkeeping (last applied log id, membership)
//! and persists it only at *synced* points: after the state machine has made
//! everything it applied durable. After a crash the adapter reports that point
//! as applied, openraft re-applies the entries after it, and the state machine
//! skips those it already holds. So a state machine never has to fsync on
//! apply, and never loses a committed entry.

use std::io;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StoredMembership};

use crate::log_store::LogDb;
use crate::{Bytes, GroupId, TypeConfig};

pub(crate) const META_APPLIED: &[u8] = b"applied";

/// A deterministic state machine replicated by a [`crate::Group`].
///
/// Implementations must be deterministic (same commands in the same order give
/// the same state and responses) and idempotent by index: after a restart,
/// commands at or below the highest index the state already holds may be
/// applied again and must then change nothing.
pub trait ReplicatedState: Send + 'static {
    /// Applies the committed `command` at log `index`; the returned bytes go
    /// back to the proposer. An error means the state could not record a
    /// committed command (e.g. a disk failure): the group stops rather than
    /// skip it, because every later command's result would differ on replay.
    fn apply(&mut self, index: u64, command: &[u8]) -> io::Result<Vec<u8>>;
    /// Makes everything applied so far durable. Called before the Raft log
    /// entries covering it are discarded.
    fn sync(&mut self) -> io::Result<()>;
    /// [`Self::sync`] in two steps: what must become durable is captured
    /// now, while applies wait, and the returned job makes it durable later,
    /// while applies go on (it must not touch the state, only what it
    /// captured). A state whose sync is slow (fsyncs of a partition's
    /// segments) implements it, so that a snapshot point does not stall
    /// every write for as long as the disk takes. The default syncs now.
    fn begin_sync(&mut self) -> io::Result<SyncJob> {
        self.sync()?;
        Ok(Box::new(|| Ok(())))
    }
    /// The state as bytes, for a replica that catches up from a snapshot.
    fn snapshot(&mut self) -> io::Result<Vec<u8>>;
    /// Replaces the state with a snapshot made by [`Self::snapshot`].
    fn install_snapshot(&mut self, data: &[u8]) -> io::Result<()>;
}

/// The second step of [`ReplicatedState::begin_sync`].
pub type SyncJob = Box<dyn FnOnce() -> io::Result<()> + Send>;

type Applied = (Option<LogIdOf<TypeConfig>>, StoredMembershipOf<TypeConfig>);

struct Inner<S> {
    state: S,
    last_applied: Option<LogIdOf<TypeConfig>>,
    membership: StoredMembershipOf<TypeConfig>,
}

pub(crate) struct Adapter<S> {
    inner: Arc<Mutex<Inner<S>>>,
    /// Held from a snapshot point's capture until its applied point is
    /// saved, and while a snapshot is installed: an installed state's
    /// applied point must never be overwritten by an older point whose
    /// fsyncs were still running.
    syncing: Arc<Mutex<()>>,
    db: Arc<LogDb>,
    group: GroupId,
}

impl<S: ReplicatedState> Adapter<S> {
    pub(crate) fn new(db: Arc<LogDb>, group: GroupId, state: S) -> io::Result<Self> {
        let (last_applied, membership) = db
            .get_meta::<Applied>(group, META_APPLIED)?
            .unwrap_or_default();
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                state,
                last_applied,
                membership,
            })),
            syncing: Arc::default(),
            db,
            group,
        })
    }

    /// The state, for applying entries. The lock is held for long only while
    /// a snapshot is installed or a state without [`ReplicatedState::begin_sync`]
    /// syncs (fsyncs: up to hundreds of ms on a busy disk); a tokio worker
    /// that waited for it then would stall every other task on it
    /// (heartbeats of every group, QUIC), so a contended lock is waited for
    /// with the worker handed over to the runtime.
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<S>> {
        lock_handing_over(&self.inner)
    }

    fn builder(&self) -> Builder<S> {
        Builder {
            inner: self.inner.clone(),
            syncing: self.syncing.clone(),
            db: self.db.clone(),
            group: self.group,
        }
    }
}

/// Locks `mutex`, waiting with the tokio worker handed over to the runtime
/// when it is contended (see [`Adapter::lock`]).
fn lock_handing_over<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.try_lock() {
        Ok(guard) => guard,
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => {
            let wait = || mutex.lock().unwrap_or_else(|p| p.into_inner());
            let multi_thread = tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
            if multi_thread {
                tokio::task::block_in_place(wait)
            } else {
                wait()
            }
        }
    }
}

pub(crate) struct Builder<S> {
    inner: Arc<Mutex<Inner<S>>>,
    syncing: Arc<Mutex<()>>,
    db: Arc<LogDb>,
    group: GroupId,
}

impl<S: ReplicatedState> RaftSnapshotBuilder<TypeConfig> for Builder<S> {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TypeConfig, Vec<u8>>, io::Error> {
        // Syncing fsyncs: on the blocking pool, not on a tokio worker. The
        // state is locked only to capture the point (applies wait that
        // long); its fsyncs run after, while entries are applied.
        let (inner, syncing) = (self.inner.clone(), self.syncing.clone());
        let (db, group) = (self.db.clone(), self.group);
        let synced = tokio::task::spawn_blocking(move || {
            let _syncing = syncing.lock().unwrap_or_else(|p| p.into_inner());
            let (job, data, applied) = {
                let mut inner = inner.lock().unwrap_or_else(|p| p.into_inner());
                let job = inner.state.begin_sync()?;
                let data = inner.state.snapshot()?;
                let applied: Applied = (inner.last_applied, inner.membership.clone());
                (job, data, applied)
            };
            job()?;
            db.put_meta(group, META_APPLIED, &applied, true)?;
            Ok::<_, io::Error>((
                SnapshotMeta {
                    last_log_id: applied.0,
                    last_membership: applied.1,
                },
                data,
            ))
        });
        let (meta, data) = synced.await.map_err(io::Error::other)??;
        // At info: one line per snapshot interval (5,000 entries by default),
        // and the fault suite counts these lines to know its faults met
        // snapshot points at all.
        tracing::info!(group = self.group, last = ?meta.last_log_id, "synced snapshot point");
        Ok(openraft::Snapshot {
            meta,
            snapshot: data,
        })
    }
}

impl<S: ReplicatedState> RaftStateMachine<TypeConfig> for Adapter<S> {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = Builder<S>;

    async fn applied_state(&mut self) -> Result<Applied, io::Error> {
        let inner = self.lock();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures::Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>>
            + Unpin
            + OptionalSend,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let started = std::time::Instant::now();
            let response = {
                let mut inner = self.lock();
                let index = entry.log_id.index;
                let response = match entry.payload {
                    EntryPayload::Blank => Vec::new(),
                    EntryPayload::Normal(Bytes(command)) => inner.state.apply(index, &command)?,
                    EntryPayload::Membership(m) => {
                        inner.membership = StoredMembership::new(Some(entry.log_id), m);
                        Vec::new()
                    }
                };
                inner.last_applied = Some(entry.log_id);
                response
            };
            metrics::histogram!(crate::RAFT_APPLY_SECONDS).record(started.elapsed().as_secs_f64());
            if let Some(responder) = responder {
                responder.send(Bytes(std::sync::Arc::new(response)));
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.builder()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<TypeConfig>,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let _syncing = lock_handing_over(&self.syncing);
        let mut inner = self.lock();
        inner.state.install_snapshot(&snapshot)?;
        inner.state.sync()?;
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        let applied: Applied = (inner.last_applied, inner.membership.clone());
        self.db.put_meta(self.group, META_APPLIED, &applied, true)
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<TypeConfig, Vec<u8>>>, io::Error> {
        let Some((last_log_id, last_membership)) =
            self.db.get_meta::<Applied>(self.group, META_APPLIED)?
        else {
            return Ok(None);
        };
        // The snapshot data is made from the live state, which is at or past
        // the synced point: replicas receiving it skip what they re-apply.
        let data = self.lock().state.snapshot()?;
        Ok(Some(openraft::Snapshot {
            meta: SnapshotMeta {
                last_log_id,
                last_membership,
            },
            snapshot: data,
        }))
    }
}
