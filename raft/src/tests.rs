//! A group with a counting state machine, on a real RocksDB, across restarts.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::collections::{BTreeMap, HashMap};

use sluice_proto::RaftRpc;

use crate::{
    CallError, CallFuture, Group, GroupConfig, LogDb, NodeId, RaftTransport, ReplicatedState,
};

/// Routes RPCs to groups in this process by node id: the QUIC hop is the
/// SPU's business and is tested there; this exercises the Raft layer alone.
#[derive(Default, Clone)]
struct InProcess(Arc<Mutex<HashMap<NodeId, Group<Sum>>>>, Arc<StreamCounts>);

/// What the append streams of an [`InProcess`] network carried.
#[derive(Default)]
pub(crate) struct StreamCounts {
    pub(crate) opened: AtomicUsize,
    pub(crate) appends: AtomicUsize,
    /// The most appends one stream had unanswered at once.
    pub(crate) most_unanswered: AtomicUsize,
}

impl InProcess {
    /// Node `target`'s group, unless it is down.
    fn group(&self, target: NodeId, addr: String) -> Result<Group<Sum>, CallError> {
        let group = self.0.lock().unwrap().get(&target).cloned();
        group.ok_or(CallError::Unreachable {
            node: target,
            addr,
            reason: "down".into(),
        })
    }
}

impl RaftTransport for InProcess {
    fn call(&self, target: NodeId, addr: String, rpc: RaftRpc, _timeout: Duration) -> CallFuture {
        let group = self.group(target, addr);
        Box::pin(async move { Ok(group?.handle_rpc(rpc.kind, &rpc.payload).await) })
    }

    /// A stream served by the target's group, as the node serves one that
    /// arrives over QUIC (see `serve_append_stream`).
    fn open_append_stream(
        &self,
        target: NodeId,
        addr: String,
        _group: crate::GroupId,
        _timeout: Duration,
    ) -> crate::AppendStreamFuture {
        let (group, counts) = (self.group(target, addr), self.1.clone());
        Box::pin(async move { Ok(Some(serve_in_process(&group?, counts))) })
    }
}

/// An append stream to `group`, served by a task of this process, counted
/// in `counts`.
pub(crate) fn serve_in_process<S: ReplicatedState>(
    group: &Group<S>,
    counts: Arc<StreamCounts>,
) -> crate::AppendStream {
    use futures::StreamExt;
    let (requests, incoming) =
        tokio::sync::mpsc::channel::<Vec<u8>>(crate::APPEND_STREAM_IN_FLIGHT_MAX);
    let (answer, answers) = tokio::sync::mpsc::channel(crate::APPEND_STREAM_IN_FLIGHT_MAX);
    counts.opened.fetch_add(1, Ordering::SeqCst);
    let unanswered = Arc::new(AtomicUsize::new(0));
    let input = {
        let (counts, unanswered) = (counts.clone(), unanswered.clone());
        let mut incoming = incoming;
        futures::stream::poll_fn(move |cx| incoming.poll_recv(cx)).inspect(move |_| {
            counts.appends.fetch_add(1, Ordering::SeqCst);
            let now = unanswered.fetch_add(1, Ordering::SeqCst) + 1;
            counts.most_unanswered.fetch_max(now, Ordering::SeqCst);
        })
    };
    let served = group.serve_append_stream(input);
    tokio::spawn(async move {
        let mut served = std::pin::pin!(served);
        while let Some(bytes) = served.next().await {
            unanswered.fetch_sub(1, Ordering::SeqCst);
            if answer.send(Ok(bytes)).await.is_err() {
                return;
            }
        }
    });
    crate::AppendStream { requests, answers }
}

/// Sums the u64 commands; remembers every index applied, to check
/// idempotence, and the command applied at each index, to compare replicas.
#[derive(Clone, Default)]
pub(crate) struct Sum(
    pub(crate) Arc<Mutex<(u64, u64, Vec<u64>)>>,
    pub(crate) Arc<Mutex<BTreeMap<u64, u64>>>,
); // (sum, last index, applied indexes), index -> command

impl ReplicatedState for Sum {
    fn apply(&mut self, index: u64, command: &[u8]) -> io::Result<Vec<u8>> {
        let mut s = self.0.lock().unwrap();
        if index <= s.1 {
            return Ok(s.0.to_be_bytes().to_vec());
        }
        let value = u64::from_be_bytes(command[..8].try_into().unwrap());
        s.0 += value;
        s.1 = index;
        s.2.push(index);
        self.1.lock().unwrap().insert(index, value);
        Ok(s.0.to_be_bytes().to_vec())
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn snapshot(&mut self) -> io::Result<Vec<u8>> {
        Ok(self.0.lock().unwrap().0.to_be_bytes().to_vec())
    }
    fn install_snapshot(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.lock().unwrap().0 = u64::from_be_bytes(data.try_into().unwrap());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_voter_commits_and_recovers_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = GroupConfig {
        snapshot_every_entries: 20,
        entries_kept_after_snapshot: 5,
        ..Default::default()
    };
    let members = [(1, "127.0.0.1:1".to_string())];
    {
        let db = LogDb::open(dir.path()).unwrap();
        let group = Group::start(
            db.clone(),
            1,
            7,
            Sum::default(),
            &config,
            Arc::new(InProcess::default()),
        )
        .await
        .unwrap();
        group.initialize(&members).await.unwrap();
        assert_eq!(group.wait_for_leader(Duration::from_secs(5)).await, Some(1));
        let mut last = Vec::new();
        for i in 1..=50u64 {
            last = group.write(i.to_be_bytes().to_vec()).await.unwrap();
        }
        assert_eq!(last, (50 * 51 / 2u64).to_be_bytes().to_vec());
        assert!(db.fsync_count() > 0);
        group.shutdown().await;
    }
    // A fresh state (as if nothing was persisted since the last snapshot
    // point) gets every entry after that point re-applied from the log.
    let db = reopen(dir.path()).await;
    let fresh = Sum::default();
    let group = Group::start(
        db,
        1,
        7,
        fresh.clone(),
        &config,
        Arc::new(InProcess::default()),
    )
    .await
    .unwrap();
    group.initialize(&members).await.unwrap();
    assert_eq!(group.wait_for_leader(Duration::from_secs(5)).await, Some(1));
    let resp = group.write(1000u64.to_be_bytes().to_vec()).await.unwrap();
    let sum = u64::from_be_bytes(resp.try_into().unwrap());
    let reapplied = fresh.0.lock().unwrap().2.clone();
    assert!(!reapplied.is_empty());
    // Only entries after the synced snapshot point were replayed into the
    // fresh state, so the sum covers exactly those commands plus 1000.
    assert!(sum > 1000 && sum < 1000 + 50 * 51 / 2, "sum {sum}");
    group.shutdown().await;
}

/// Opens the database again once the previous instance's background threads
/// have let go of RocksDB's lock (in production a restart is a new process).
pub(crate) async fn reopen(path: &std::path::Path) -> Arc<LogDb> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match LogDb::open(path) {
            Ok(db) => return db,
            Err(e) if std::time::Instant::now() > deadline => panic!("{e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Three replicas of group `id` on their own databases, wired by `net`, with
/// a leader elected. The temp dirs must outlive the groups.
struct Three {
    id: u64,
    net: InProcess,
    states: HashMap<NodeId, Sum>,
    leader: NodeId,
    dirs: Vec<tempfile::TempDir>,
}

impl Three {
    async fn start(id: u64) -> Self {
        let net = InProcess::default();
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut states = HashMap::new();
        for (i, dir) in (1..=3u64).zip(&dirs) {
            let state = Sum::default();
            let db = LogDb::open(dir.path()).unwrap();
            let transport = Arc::new(net.clone());
            let group = Group::start(db, i, id, state.clone(), &GroupConfig::default(), transport)
                .await
                .unwrap();
            net.0.lock().unwrap().insert(i, group);
            states.insert(i, state);
        }
        let members: Vec<(NodeId, String)> = (1..=3).map(|i| (i, format!("node-{i}"))).collect();
        let first = net.0.lock().unwrap()[&1].clone();
        first.initialize(&members).await.unwrap();
        let leader = first
            .wait_for_leader(Duration::from_secs(10))
            .await
            .unwrap();
        Self {
            id,
            net,
            states,
            leader,
            dirs,
        }
    }

    /// Stops every replica (a power loss of the whole group), lets `damage`
    /// change each node's database as the loss would have, and starts them
    /// all again with fresh states (nothing of theirs was synced), which
    /// re-apply what their logs hold.
    async fn restart_all(&mut self, damage: impl Fn(NodeId, &LogDb)) {
        let groups: Vec<_> = self.net.0.lock().unwrap().drain().collect();
        for (_, g) in &groups {
            g.shutdown().await;
        }
        drop(groups);
        let mut dbs = Vec::new();
        for (i, dir) in (1..=3u64).zip(&self.dirs) {
            let db = reopen(dir.path()).await;
            damage(i, &db);
            dbs.push((i, db));
        }
        for (i, db) in dbs {
            let state = Sum::default();
            let transport = Arc::new(self.net.clone());
            let group = Group::start(
                db,
                i,
                self.id,
                state.clone(),
                &GroupConfig::default(),
                transport,
            )
            .await
            .unwrap();
            self.net.0.lock().unwrap().insert(i, group);
            self.states.insert(i, state);
        }
    }

    /// Writes `command` through whichever replica leads, retrying while
    /// leadership settles.
    async fn write_anywhere(&self, command: u64) -> Vec<u8> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            for node in 1..=3 {
                if let Ok(resp) = self.group(node).write(command.to_be_bytes().to_vec()).await {
                    return resp;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no replica took the write"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Index -> command, as applied by `node`.
    fn applied(&self, node: NodeId) -> BTreeMap<u64, u64> {
        self.states[&node].1.lock().unwrap().clone()
    }

    fn group(&self, node: NodeId) -> Group<Sum> {
        self.net.0.lock().unwrap()[&node].clone()
    }

    fn sum(&self, node: NodeId) -> u64 {
        self.states[&node].0.lock().unwrap().0
    }

    /// Closes every database before the process exits.
    async fn shutdown(self) {
        let groups: Vec<_> = self.net.0.lock().unwrap().drain().map(|(_, g)| g).collect();
        for g in groups {
            g.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_replicate_and_survive_the_loss_of_the_leader() {
    let three = Three::start(9).await;
    let leader = three.group(three.leader);
    for i in 1..=10u64 {
        leader.write(i.to_be_bytes().to_vec()).await.unwrap();
    }
    // Every replica applies the committed entries.
    wait(|| [1, 2, 3].iter().all(|n| three.sum(*n) == 55)).await;

    // The leader goes away; the other two elect a new one and keep committing.
    three.net.0.lock().unwrap().remove(&three.leader);
    leader.shutdown().await;
    let rest: Vec<NodeId> = (1..=3).filter(|n| *n != three.leader).collect();
    let survivor = three.group(rest[0]);
    let mut new_leader = None;
    for _ in 0..100 {
        match survivor.wait_for_leader(Duration::from_secs(5)).await {
            Some(l) if l != three.leader => {
                new_leader = Some(l);
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let new_leader = new_leader.expect("a new leader is elected");
    three
        .group(new_leader)
        .write(100u64.to_be_bytes().to_vec())
        .await
        .unwrap();
    wait(|| rest.iter().all(|n| three.sum(*n) == 155)).await;
    three.shutdown().await;
}

/// Writes from several tasks at once reach the followers on append
/// streams, several appends on the wire at a time, and every replica
/// applies the same commands at the same indexes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_are_pipelined_on_streams_and_replicas_agree() {
    let three = Three::start(12).await;
    let leader = three.group(three.leader);
    let writers: Vec<_> = (0..8u64)
        .map(|w| {
            let leader = leader.clone();
            tokio::spawn(async move {
                for i in 0..40u64 {
                    leader
                        .write((w * 1000 + i).to_be_bytes().to_vec())
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let total: u64 = (0..8u64)
        .map(|w| (0..40u64).map(|i| w * 1000 + i).sum::<u64>())
        .sum();
    wait(|| [1, 2, 3].iter().all(|n| three.sum(*n) == total)).await;
    assert_eq!(three.applied(1), three.applied(2));
    assert_eq!(three.applied(1), three.applied(3));
    let counts = &three.net.1;
    assert!(
        counts.opened.load(Ordering::SeqCst) >= 2,
        "a stream per follower"
    );
    assert!(counts.appends.load(Ordering::SeqCst) > 0);
    let most = counts.most_unanswered.load(Ordering::SeqCst);
    assert!(
        most > 1,
        "appends went one at a time (at most {most} unanswered)"
    );
    assert!(
        most <= crate::APPEND_STREAM_IN_FLIGHT_MAX,
        "{most} unanswered"
    );
    three.shutdown().await;
}

/// Catch-up through a transport that refuses frames over the protocol limit,
/// with entries of several MiB (that an append never exceeds a frame is what
/// `network::tests` checks of the split itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_catches_up_on_multi_megabyte_entries() {
    let three = Three::start(11).await;
    let leader = three.group(three.leader);
    let away = (1..=3).find(|n| *n != three.leader).unwrap();
    let parked = three.net.0.lock().unwrap().remove(&away).unwrap();
    for i in 1..=4u64 {
        let mut command = i.to_be_bytes().to_vec();
        command.resize(6 * 1024 * 1024, 0);
        leader.write(command).await.unwrap();
    }
    three.net.0.lock().unwrap().insert(away, parked);
    wait(|| three.sum(away) == 10).await;
    three.shutdown().await;
}

async fn wait(mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "condition not met in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Regression test for the power-loss divergence (fault runs, seed 6): a
/// leader whose log tail was never fsynced loses it in a power cut while its
/// followers keep it; everything restarts. openraft's leader restore let the
/// old leader carry on in the same term, number new entries from its short
/// log and reuse log ids that the followers held with other payloads, which
/// they kept: a committed write was lost and the replicas applied different
/// commands at the same index. Every replica must apply the same command at
/// every index, and keep every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_lost_its_unsynced_tail_never_reuses_log_ids() {
    let mut three = Three::start(13).await;
    let old_leader = three.leader;
    let leader = three.group(old_leader);
    for i in 1..=20u64 {
        leader.write(i.to_be_bytes().to_vec()).await.unwrap();
    }
    wait(|| [1, 2, 3].iter().all(|n| three.sum(*n) == 210)).await;
    let last = leader.status().last_log_index.unwrap();
    let kept = last - 5;

    // The leader's last five entries (acknowledged: the followers had
    // fsynced them) were not yet durable on the leader when power went.
    three
        .restart_all(|node, db| {
            if node == old_leader {
                db.lose_log_after(13, kept);
            }
        })
        .await;
    three.write_anywhere(1000).await;

    let applied_1000 = |n: NodeId| three.applied(n).values().any(|v| *v == 1000);
    // Not `wait`: when replicas diverge, some never apply the new write, and
    // the comparison below says how they differ.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while ![1, 2, 3].iter().all(|n| applied_1000(*n)) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let logs: Vec<BTreeMap<u64, u64>> = (1..=3).map(|n| three.applied(n)).collect();
    let indexes: std::collections::BTreeSet<u64> =
        logs.iter().flat_map(|l| l.keys().copied()).collect();
    for index in indexes {
        let seen: Vec<Option<&u64>> = logs.iter().map(|l| l.get(&index)).collect();
        assert!(
            seen.windows(2).all(|w| w[0] == w[1]),
            "replicas applied different commands at index {index}: {seen:?} (old leader {old_leader})"
        );
    }
    for log in &logs {
        let mut values: Vec<u64> = log.values().copied().collect();
        values.sort_unstable();
        let expected: Vec<u64> = (1..=20).chain([1000]).collect();
        assert_eq!(
            values, expected,
            "every acknowledged write, once, on every replica"
        );
    }
    three.shutdown().await;
}

/// openraft's storage conformance suite, run against the RocksDB log store
/// and the state-machine adapter exactly as groups use them.
mod conformance {
    use openraft::testing::log::{StoreBuilder, Suite};
    use openraft::{ErrorSubject, ErrorVerb, StorageError};

    use super::Sum;
    use crate::TypeConfig;
    use crate::log_store::{GroupLog, LogDb};
    use crate::state_machine::Adapter;

    /// A fresh database per case; the temp dir is the guard, dropped after
    /// the store and state machine (which close the database).
    struct Rocks;

    impl StoreBuilder<TypeConfig, GroupLog, Adapter<Sum>, tempfile::TempDir> for Rocks {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, GroupLog, Adapter<Sum>), StorageError<TypeConfig>> {
            let store_err = |e: std::io::Error| {
                StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, e)
            };
            let dir = tempfile::tempdir().map_err(store_err)?;
            let db = LogDb::open(dir.path()).map_err(|e| store_err(std::io::Error::other(e)))?;
            // A group id other than 0, with a neighbour group's keys around
            // it, so that range reads and deletes must stay within the group.
            let group = 5;
            for neighbour in [group - 1, group + 1] {
                for index in [0, 3, 100, u64::MAX] {
                    db.put_foreign_keys(neighbour, index, b"not an entry of group 5");
                }
            }
            let adapter = Adapter::new(db.clone(), group, Sum::default()).map_err(store_err)?;
            Ok((dir, GroupLog::new(db, group), adapter))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_rocksdb_log_store_passes_openraft_storage_suite() {
        Suite::test_all(Rocks).await.unwrap();
    }
}

/// An entry (or any Raft payload) that claims more bytes than a frame can
/// hold is refused before anything is allocated for it: the same claim in an
/// AppendEntries from the network aborted the node.
#[test]
fn a_payload_claiming_petabytes_is_refused_not_allocated() {
    // A varint: 0xFD then a little-endian u64 length of 2^50.
    let mut claim = vec![0xFD];
    claim.extend_from_slice(&(1u64 << 50).to_le_bytes());
    let err = crate::log_store::decode::<crate::Bytes>(&claim).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    // A real payload just over the frame limit is refused as well.
    let big = crate::Bytes(Arc::new(vec![
        7;
        sluice_proto::limits::FRAME_SIZE_BYTES_MAX + 1
    ]));
    let encoded = sluice_proto::encoding::to_vec(&big).unwrap();
    assert!(crate::log_store::decode::<crate::Bytes>(&encoded).is_err());
}

/// [`Sum`] whose snapshot points' fsyncs (the [`ReplicatedState::begin_sync`]
/// job) wait until the test opens `gate`, counting the jobs started.
#[derive(Clone, Default)]
struct SlowSync {
    sum: Sum,
    gate: Arc<(Mutex<bool>, std::sync::Condvar)>,
    jobs: Arc<std::sync::atomic::AtomicUsize>,
}

impl ReplicatedState for SlowSync {
    fn apply(&mut self, index: u64, command: &[u8]) -> io::Result<Vec<u8>> {
        self.sum.apply(index, command)
    }
    fn sync(&mut self) -> io::Result<()> {
        unreachable!("the adapter syncs snapshot points through begin_sync")
    }
    fn begin_sync(&mut self) -> io::Result<crate::SyncJob> {
        self.jobs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let gate = self.gate.clone();
        Ok(Box::new(move || {
            let (open, changed) = &*gate;
            let mut open = open.lock().unwrap();
            while !*open {
                open = changed.wait(open).unwrap();
            }
            Ok(())
        }))
    }
    fn snapshot(&mut self) -> io::Result<Vec<u8>> {
        self.sum.snapshot()
    }
    fn install_snapshot(&mut self, data: &[u8]) -> io::Result<()> {
        self.sum.install_snapshot(data)
    }
}

/// A snapshot point's fsyncs run outside the state's lock: writes go on
/// committing and applying while they take long (they stalled every write
/// of the partition for their length, the p99 of acks at a steady rate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_on_while_a_snapshot_point_is_made_durable() {
    let dir = tempfile::tempdir().unwrap();
    let config = GroupConfig {
        snapshot_every_entries: 10,
        entries_kept_after_snapshot: 5,
        ..Default::default()
    };
    let db = LogDb::open(dir.path()).unwrap();
    let state = SlowSync::default();
    let group = Group::start(
        db,
        1,
        7,
        state.clone(),
        &config,
        Arc::new(InProcess::default()),
    )
    .await
    .unwrap();
    group
        .initialize(&[(1, "127.0.0.1:1".to_string())])
        .await
        .unwrap();
    assert_eq!(group.wait_for_leader(Duration::from_secs(5)).await, Some(1));
    // Opens the gate however the test ends, so that a failure is reported
    // instead of the runtime waiting for the held job forever.
    struct OpenOnDrop(Arc<(Mutex<bool>, std::sync::Condvar)>);
    impl Drop for OpenOnDrop {
        fn drop(&mut self) {
            *self.0.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
            self.0.1.notify_all();
        }
    }
    let open_gate = OpenOnDrop(state.gate.clone());
    // Each write commits and applies within a second, also once the first
    // snapshot point's job is running (held at the gate until the end).
    let write = |i: u64| {
        let group = &group;
        async move {
            let written = tokio::time::timeout(
                Duration::from_secs(1),
                group.write(i.to_be_bytes().to_vec()),
            )
            .await;
            assert!(
                written.is_ok(),
                "write {i} waited for the snapshot point's fsyncs"
            );
        }
    };
    for i in 1..=15u64 {
        write(i).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while state.jobs.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot point began"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in 16..=40u64 {
        write(i).await;
    }
    assert_eq!(state.sum.0.lock().unwrap().0, 40 * 41 / 2);
    drop(open_gate);
    group.shutdown().await;
}

/// [`Sum`], except that applying the command 13 fails, as a disk failure
/// of a real state would.
#[derive(Clone, Default)]
struct FailsOn13(Sum);

impl ReplicatedState for FailsOn13 {
    fn apply(&mut self, index: u64, command: &[u8]) -> io::Result<Vec<u8>> {
        if command[..8] == 13u64.to_be_bytes() {
            return Err(io::Error::other("cannot record 13"));
        }
        self.0.apply(index, command)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.0.sync()
    }
    fn snapshot(&mut self) -> io::Result<Vec<u8>> {
        self.0.snapshot()
    }
    fn install_snapshot(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.install_snapshot(data)
    }
}

/// A group stopped by a failure says so (`failed`), one shut down does not:
/// the node restarts the first kind of replica and must leave the second
/// alone (a restart racing a node's shutdown would outlive it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_group_and_a_shut_down_one_are_told_apart() {
    async fn start(dir: std::path::PathBuf) -> Group<FailsOn13> {
        let members = [(1, "127.0.0.1:1".to_string())];
        let db = LogDb::open(&dir).unwrap();
        let group = Group::start(
            db,
            1,
            7,
            FailsOn13::default(),
            &GroupConfig::default(),
            Arc::new(InProcess::default()),
        )
        .await
        .unwrap();
        group.initialize(&members).await.unwrap();
        assert_eq!(group.wait_for_leader(Duration::from_secs(5)).await, Some(1));
        group
    }
    let dir = tempfile::tempdir().unwrap();
    let group = start(dir.path().join("failing")).await;
    group.write(1u64.to_be_bytes().to_vec()).await.unwrap();
    assert!(group.write(13u64.to_be_bytes().to_vec()).await.is_err());
    let status = group.status();
    assert!(status.stopped.is_some() && status.failed, "{status:?}");
    group.shutdown().await;

    let group = start(dir.path().join("stopping")).await;
    group.write(1u64.to_be_bytes().to_vec()).await.unwrap();
    assert_eq!(group.status().stopped, None);
    group.shutdown().await;
    let status = group.status();
    assert!(status.stopped.is_some() && !status.failed, "{status:?}");
}
