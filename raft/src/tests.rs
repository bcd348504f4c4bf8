//! A group with a counting state machine, on a real RocksDB, across restarts.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{Group, GroupConfig, LogDb, ReplicatedState};

/// Sums the u64 commands; remembers every index applied, to check idempotence.
#[derive(Clone, Default)]
struct Sum(Arc<Mutex<(u64, u64, Vec<u64>)>>); // (sum, last index, applied indexes)

impl ReplicatedState for Sum {
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8> {
        let mut s = self.0.lock().unwrap();
        if index <= s.1 {
            return s.0.to_be_bytes().to_vec();
        }
        s.0 += u64::from_be_bytes(command.try_into().unwrap());
        s.1 = index;
        s.2.push(index);
        s.0.to_be_bytes().to_vec()
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
        let group = Group::start(db.clone(), 1, 7, Sum::default(), &config)
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
    let group = Group::start(db, 1, 7, fresh.clone(), &config)
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
async fn reopen(path: &std::path::Path) -> Arc<LogDb> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match LogDb::open(path) {
            Ok(db) => return db,
            Err(e) if std::time::Instant::now() > deadline => panic!("{e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
