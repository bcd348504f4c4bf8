//! The replicas of one seed: real [`LogDb`]s in temp dirs, real [`Group`]s,
//! and a simulated network between them that loses, delays (and so
//! reorders) and cuts messages, and that a crashed node can neither send on
//! nor answer through.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sluice_proto::RaftRpc;

use super::ledger::{Ledger, Rec};
use super::schedule::Rng;
use crate::{CallError, CallFuture, Group, GroupConfig, GroupId, LogDb, NodeId, RaftTransport};

/// The group every replica runs (not 0, so a key prefix bug would show).
pub(super) const GROUP: GroupId = 42;

/// A node that is running.
struct Up {
    group: Group<Rec>,
    db: Arc<LogDb>,
    rec: Rec,
}

#[derive(Default)]
struct Slot {
    up: Option<Up>,
    /// Raised at every crash: an answer computed by an earlier incarnation
    /// is never delivered (a crashed node sends nothing).
    incarnation: u64,
    /// Crashing or restarting: no other crash may start.
    busy: bool,
}

struct NetState {
    slots: BTreeMap<NodeId, Slot>,
    /// Directed links that lose every message.
    cut: BTreeSet<(NodeId, NodeId)>,
    drop_percent: u64,
    delay_max_ms: u64,
    rng: Rng,
}

/// The simulated network, and the registry of running nodes.
pub(super) struct Net {
    state: Mutex<NetState>,
    /// Whether groups stream their appends (`super::stream`) or send them
    /// one by one: half the seeds each.
    streams: bool,
}

/// What happens to one message.
pub(super) enum Fate {
    /// Never arrives: the caller times out.
    Lost,
    /// The destination is down: refused at once, as a closed port is.
    Refused,
    Delayed(Duration),
}

impl Net {
    fn lock(&self) -> MutexGuard<'_, NetState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn fate(&self, from: NodeId, to: NodeId) -> Fate {
        let mut s = self.lock();
        let down = |node: NodeId| s.slots.get(&node).is_none_or(|slot| slot.up.is_none());
        // A crashed node's openraft runs on until it is shut down; what it
        // sends meanwhile never leaves the machine.
        if down(from) {
            return Fate::Lost;
        }
        if down(to) {
            return Fate::Refused;
        }
        if s.cut.contains(&(from, to)) {
            return Fate::Lost;
        }
        let (drop, delay_max) = (s.drop_percent, s.delay_max_ms);
        if s.rng.percent(drop) {
            return Fate::Lost;
        }
        Fate::Delayed(Duration::from_millis(s.rng.between(0, delay_max)))
    }

    pub(super) fn incarnation(&self, node: NodeId) -> u64 {
        self.lock().slots.get(&node).map_or(0, |s| s.incarnation)
    }

    fn group(&self, node: NodeId) -> Option<Group<Rec>> {
        let s = self.lock();
        s.slots.get(&node)?.up.as_ref().map(|u| u.group.clone())
    }

    /// The receiver's group and incarnation for a message from `from` that
    /// arrives at `to` now: a link cut while the message travelled loses it
    /// (never returns), and a node that crashed after sending sent it all
    /// the same.
    pub(super) async fn reachable(
        &self,
        from: NodeId,
        to: NodeId,
    ) -> Result<(Group<Rec>, u64), String> {
        let arrived = {
            let s = self.lock();
            let cut = s.cut.contains(&(from, to));
            let receiver = s.slots.get(&to).and_then(|slot| {
                let up = slot.up.as_ref()?;
                Some((up.group.clone(), slot.incarnation))
            });
            (!cut).then_some(receiver)
        };
        match arrived {
            None => std::future::pending().await,
            Some(None) => Err("down".into()),
            Some(Some(found)) => Ok(found),
        }
    }

    pub(super) fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.lock().cut.contains(&(from, to))
    }

    /// The longest the weather delays a message now.
    pub(super) fn delay_max(&self) -> Duration {
        Duration::from_millis(self.lock().delay_max_ms)
    }

    /// A message's way from `from` to `to`: refused by a node that is down,
    /// lost (never returns: the sender's deadline ends the wait), or delayed.
    pub(super) async fn travel(&self, from: NodeId, to: NodeId) -> Result<(), String> {
        match self.fate(from, to) {
            Fate::Refused => Err("down".into()),
            Fate::Lost => std::future::pending().await,
            Fate::Delayed(d) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
        }
    }

    /// Delivers `rpc` from `from` to `to` through the simulated network.
    async fn deliver(&self, from: NodeId, to: NodeId, rpc: RaftRpc) -> Result<Vec<u8>, String> {
        let sender = self.incarnation(from);
        self.travel(from, to).await?;
        let (group, receiver) = self.reachable(from, to).await?;
        let answer = group.handle_rpc(rpc.kind, &rpc.payload).await;
        drop(group);
        // The answer leaves the receiver now, if it is still the same
        // process; it reaches the sender if that one still runs.
        if self.incarnation(to) != receiver {
            return std::future::pending().await;
        }
        match self.fate(to, from) {
            Fate::Lost | Fate::Refused => std::future::pending().await,
            Fate::Delayed(d) => tokio::time::sleep(d).await,
        }
        if self.incarnation(from) != sender {
            return std::future::pending().await;
        }
        Ok(answer)
    }
}

/// One node's side of the network.
struct Link {
    net: Arc<Net>,
    from: NodeId,
}

impl RaftTransport for Link {
    fn open_append_stream(
        &self,
        target: NodeId,
        addr: String,
        _group: GroupId,
        timeout: Duration,
    ) -> crate::AppendStreamFuture {
        let (net, from) = (self.net.clone(), self.from);
        Box::pin(async move {
            if !net.streams {
                return Ok(None);
            }
            match tokio::time::timeout(timeout, net.open_stream(from, target)).await {
                Ok(Ok(stream)) => Ok(Some(stream)),
                Ok(Err(reason)) => Err(super::stream::unreachable(target, &addr, reason)),
                Err(_) => Err(super::stream::unreachable(
                    target,
                    &addr,
                    "timed out".into(),
                )),
            }
        })
    }

    fn call(&self, target: NodeId, addr: String, rpc: RaftRpc, timeout: Duration) -> CallFuture {
        let (net, from) = (self.net.clone(), self.from);
        Box::pin(async move {
            let unreachable = |reason: String| CallError::Unreachable {
                node: target,
                addr: addr.clone(),
                reason,
            };
            match tokio::time::timeout(timeout, net.deliver(from, target, rpc)).await {
                Ok(Ok(answer)) => Ok(answer),
                Ok(Err(reason)) => Err(unreachable(reason)),
                Err(_) => Err(unreachable("timed out".into())),
            }
        })
    }
}

/// What a stopped node left behind, for its restart.
pub(super) struct Down {
    node: NodeId,
    rec: Rec,
    cut: Option<crate::log_store::PowerCut>,
}

impl Down {
    /// The log indexes a power cut lost (none for a kill).
    pub(super) fn lost_indexes(&self) -> Option<(u64, u64)> {
        let cut = self.cut.as_ref()?;
        cut.lost()
            .into_iter()
            .find(|(group, _, _)| *group == GROUP)
            .map(|(_, first, last)| (first, last))
    }

    /// What a power cut lost ("" for a kill).
    pub(super) fn lost(&self) -> String {
        self.cut
            .as_ref()
            .map_or(String::new(), |c| format!(" ({})", c.describe()))
    }
}

/// The replicas of one seed.
pub(super) struct Cluster {
    pub(super) nodes: Vec<NodeId>,
    net: Arc<Net>,
    dirs: BTreeMap<NodeId, tempfile::TempDir>,
    config: GroupConfig,
    ledger: Arc<Ledger>,
    trace: Mutex<Vec<(Instant, String)>>,
}

impl Cluster {
    /// Starts every node, initializes the group on the first and waits for
    /// a leader.
    pub(super) async fn start(
        seed: u64,
        nodes: &[NodeId],
        weather: (u64, u64),
        config: GroupConfig,
        ledger: Arc<Ledger>,
    ) -> Result<Arc<Self>, String> {
        let net = Arc::new(Net {
            state: Mutex::new(NetState {
                slots: nodes.iter().map(|n| (*n, Slot::default())).collect(),
                cut: BTreeSet::new(),
                drop_percent: weather.0,
                delay_max_ms: weather.1,
                rng: Rng::derive(seed, 1),
            }),
            streams: seed.is_multiple_of(2),
        });
        let mut dirs = BTreeMap::new();
        for n in nodes {
            dirs.insert(*n, tempfile::tempdir().map_err(|e| e.to_string())?);
        }
        let cluster = Arc::new(Self {
            nodes: nodes.to_vec(),
            net,
            dirs,
            config,
            ledger: ledger.clone(),
            trace: Mutex::new(Vec::new()),
        });
        match cluster.form(&ledger).await {
            Ok(()) => Ok(cluster),
            Err(e) => {
                // The nodes that did start must close their databases
                // before the temp dirs go.
                cluster.shutdown().await;
                Err(e)
            }
        }
    }

    /// Starts every node, initializes the group on the first and waits for
    /// its leader.
    async fn form(&self, ledger: &Arc<Ledger>) -> Result<(), String> {
        for n in &self.nodes {
            let db = LogDb::open(self.dirs[n].path()).map_err(|e| e.to_string())?;
            self.run(*n, db, Rec::new(*n, ledger.clone())).await?;
        }
        let members: Vec<(NodeId, String)> = self
            .nodes
            .iter()
            .map(|n| (*n, format!("node-{n}")))
            .collect();
        let first = self
            .group(self.nodes[0])
            .ok_or("the first node is not up")?;
        first
            .initialize(&members)
            .await
            .map_err(|e| e.to_string())?;
        first
            .wait_for_leader(Duration::from_secs(10))
            .await
            .ok_or("no leader elected at start")?;
        Ok(())
    }

    async fn run(&self, node: NodeId, db: Arc<LogDb>, rec: Rec) -> Result<(), String> {
        let transport = Arc::new(Link {
            net: self.net.clone(),
            from: node,
        });
        let group = Group::start(
            db.clone(),
            node,
            GROUP,
            rec.clone(),
            &self.config,
            transport,
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut s = self.net.lock();
        let slot = s.slots.entry(node).or_default();
        slot.up = Some(Up { group, db, rec });
        slot.busy = false;
        Ok(())
    }

    pub(super) fn note(&self, what: String) {
        self.trace
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((Instant::now(), what));
    }

    pub(super) fn trace(&self) -> Vec<(Instant, String)> {
        self.trace.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn group(&self, node: NodeId) -> Option<Group<Rec>> {
        self.net.group(node)
    }

    pub(super) fn is_up(&self, node: NodeId) -> bool {
        self.net.group(node).is_some()
    }

    /// The leader of the highest term among the nodes that are up.
    pub(super) fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter_map(|n| Some((*n, self.group(*n)?.status())))
            .filter(|(_, s)| s.is_leader)
            .max_by_key(|(_, s)| s.term)
            .map(|(n, _)| n)
    }

    pub(super) fn set_weather(&self, drop_percent: u64, delay_max_ms: u64) {
        let mut s = self.net.lock();
        s.drop_percent = drop_percent;
        s.delay_max_ms = delay_max_ms;
    }

    pub(super) fn cut(&self, from: NodeId, to: NodeId) {
        self.net.lock().cut.insert((from, to));
    }

    pub(super) fn heal(&self) {
        self.net.lock().cut.clear();
    }

    pub(super) fn hold_syncs(&self, node: NodeId, hold: Duration) -> bool {
        let s = self.net.lock();
        match s.slots.get(&node).and_then(|slot| slot.up.as_ref()) {
            Some(up) => {
                up.db.hold_syncs(hold);
                true
            }
            None => false,
        }
    }

    /// Arms `node`'s power cut at its next delete of log entries (see
    /// `LogDb::cut_power_at_next_delete`) and waits up to `wait` for it.
    /// Whether it happened; the caller crashes the node either way.
    pub(super) async fn cut_power_at_next_delete(&self, node: NodeId, wait: Duration) -> bool {
        let db = {
            let s = self.net.lock();
            match s.slots.get(&node).and_then(|slot| slot.up.as_ref()) {
                Some(up) => up.db.clone(),
                None => return false,
            }
        };
        db.cut_power_at_next_delete();
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline {
            if db.power_cut_at_delete_came() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        db.power_cut_at_delete_came()
    }

    /// Stops `node` at once: off the network, its state machine frozen and,
    /// for a power loss, its database's durable part fixed. Then shuts its
    /// group down. None if it is down already or being crashed.
    pub(super) async fn crash(&self, node: NodeId, power_loss: bool) -> Option<Down> {
        let up = {
            let mut s = self.net.lock();
            let slot = s.slots.get_mut(&node)?;
            if slot.busy || slot.up.is_none() {
                return None;
            }
            slot.busy = true;
            slot.incarnation += 1;
            slot.up.take()?
        };
        let Up { group, db, rec } = up;
        let rec = rec.crash();
        let cut = if power_loss {
            Some(db.cut_power())
        } else {
            // A killed process does not sit in a slow fsync.
            db.hold_syncs(Duration::ZERO);
            None
        };
        group.shutdown().await;
        drop(group);
        // Closing may wait for the syncer thread: not on a tokio worker,
        // where it would stall the other replicas and the fault schedule.
        let _ = tokio::task::spawn_blocking(move || drop(db)).await;
        Some(Down { node, rec, cut })
    }

    /// Starts a crashed node again from what its disk kept.
    pub(super) async fn restart(&self, down: Down) -> Result<(), String> {
        let Down { node, rec, cut } = down;
        let dir = self.dirs[&node].path().to_path_buf();
        // Opening and repairing read and fsync: on the blocking pool, like
        // closing (see `crash`).
        let reopen = tokio::task::spawn_blocking(move || {
            // The old handles go once openraft's tasks have let go of them.
            let deadline = Instant::now() + Duration::from_secs(10);
            let db = loop {
                match LogDb::open(&dir) {
                    Ok(db) => break db,
                    Err(e) if Instant::now() > deadline => {
                        return Err(format!("node {node} cannot reopen its database: {e}"));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            };
            if let Some(cut) = &cut {
                db.restore_after_power_cut(cut)
                    .map_err(|e| format!("node {node}: {e}"))?;
            }
            Ok(db)
        });
        let db = reopen
            .await
            .map_err(|e| format!("node {node}: reopening panicked: {e}"))??;
        self.run(node, db, rec).await
    }

    /// Records a power cut in the ledger; returns how many acknowledged
    /// entries it lost.
    pub(super) fn power_cut(&self, down: &Down) -> usize {
        self.ledger.power_cut(down.lost_indexes())
    }

    /// Index -> command applied, per node that is up.
    pub(super) fn applied(&self) -> BTreeMap<NodeId, BTreeMap<u64, u64>> {
        let s = self.net.lock();
        s.slots
            .iter()
            .filter_map(|(n, slot)| Some((*n, slot.up.as_ref()?.rec.applied())))
            .collect()
    }

    /// Each running node's view of the group, and the leader's view of its
    /// followers: what a convergence failure is diagnosed from.
    pub(super) fn describe(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| match self.group(*n) {
                None => format!("node {n}: down"),
                Some(g) => {
                    let s = g.status();
                    let lag = g
                        .replication_lag()
                        .map_or(String::new(), |lag| format!(", entries behind: {lag:?}"));
                    format!(
                        "node {n}: term {}, leader {:?}, last log {:?}, applied {:?}{}{lag}",
                        s.term,
                        s.leader,
                        s.last_log_index,
                        s.last_applied_index,
                        s.stopped
                            .map_or(String::new(), |e| format!(", stopped: {e}")),
                    )
                }
            })
            .collect()
    }

    /// Why a running node's group stopped, if one did.
    pub(super) fn stopped(&self) -> Vec<(NodeId, String)> {
        self.nodes
            .iter()
            .filter_map(|n| Some((*n, self.group(*n)?.status().stopped?)))
            .collect()
    }

    /// Stops every node and closes its database.
    pub(super) async fn shutdown(&self) {
        let ups: Vec<Up> = {
            let mut s = self.net.lock();
            s.slots
                .values_mut()
                .filter_map(|slot| slot.up.take())
                .collect()
        };
        for up in &ups {
            up.group.shutdown().await;
        }
        drop(ups);
    }
}
