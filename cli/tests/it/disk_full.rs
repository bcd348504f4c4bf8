//! Nodes whose disk fills up, in the two places a node writes: its Raft log
//! database and its partitions' segments.
//!
//! - The Raft log database's first failed write stops the node, with an
//!   error that says what failed and what to do (it used to end in a
//!   RocksDB assertion, `sync_without_flush_called_`, from RocksDB's own
//!   info log on the full disk); started again once space is freed, it
//!   catches up.
//! - A segment that cannot be written stops that replica (retried every few
//!   seconds); once space is freed it starts again and catches up, the node
//!   never stopping.
//!
//! Either way nothing acknowledged is lost. Needs root (the full part of
//! node 2's data goes on a tmpfs of its own, filled with a ballast file);
//! skipped otherwise, saying why.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{Env, wait_until_replicas_caught_up};

/// Room of the tmpfs.
const TMPFS_BYTES: &str = "200m";
/// Most records written into a full disk before its node must have noticed.
const ROUNDS_MAX: usize = 40;
const RECORDS_PER_ROUND: usize = 2_000;
/// The node's test switch for the size of its Raft database's memtables
/// (`spu/src/fsync_journal.rs`).
const RAFT_WRITE_BUFFER_ENV: &str = "SLUICE_DEBUG_RAFT_WRITE_BUFFER_BYTES";

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    (euid != 0).then(|| format!("mounting a tmpfs needs root (running as uid {euid})"))
}

/// The tmpfs; unmounted on drop, also when an assertion fails halfway.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `n` records of about 1 KiB, each its own line starting with `prefix`.
fn records(n: usize, prefix: &str) -> String {
    let pad = "x".repeat(1_000);
    (0..n).map(|i| format!("{prefix}{i}-{pad}\n")).collect()
}

fn running(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid, 0) == 0 };
    exists
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// A 3-node cluster with one RF=3 topic `t` whose node 2 keeps `sub` (a
/// directory of its data dir) on a tmpfs of its own, and is restarted on it
/// with the environment `vars`.
struct Setup {
    env: Env,
    disk: PathBuf,
    _mount: Mount,
    pid: i32,
}

impl Setup {
    fn new(sub: &str, vars: &[(&str, &str)]) -> Self {
        let env = Env::started_with(3);
        env.ok(&["topic", "create", "t", "--replication", "3"]);
        env.kill(2);
        let disk = env.home.path().join("node-2-disk");
        std::fs::create_dir(&disk).unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_BYTES}"), "tmpfs"])
            .arg(&disk));
        let mount = Mount(disk.clone());
        let dir = env.node_dir_of(2).join(sub);
        run(Command::new("cp").arg("-a").arg(&dir).arg(disk.join(sub)));
        std::fs::remove_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(disk.join(sub), &dir).unwrap();
        env.start_with_env(3, vars);
        let pid = env.pid_of(2);
        Self {
            env,
            disk,
            _mount: mount,
            pid,
        }
    }

    /// Writes a ballast file until the tmpfs says it is full.
    ///
    /// Written rather than sized from `df` up front: node 2 keeps writing
    /// (it may be catching up), so a size measured a moment earlier can
    /// already be too big, and an `fallocate` of it fails whole. Running
    /// out of room is the goal here, so ENOSPC ends the fill instead.
    fn fill(&self) {
        use std::io::Write;
        let mut ballast = std::fs::File::create(self.disk.join("ballast")).unwrap();
        for chunk in [1 << 20, 4 << 10] {
            let bytes = vec![0x5a_u8; chunk];
            loop {
                match ballast.write_all(&bytes) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                    Err(e) => panic!("writing the ballast: {e}"),
                }
            }
        }
    }

    fn free(&self) {
        std::fs::remove_file(self.disk.join("ballast")).unwrap();
    }

    /// Writes rounds of records (all acknowledged) until `noticed` says node
    /// 2 met the full disk; returns how many were written.
    fn write_until(&self, what: &str, noticed: impl Fn(&Self) -> bool) -> usize {
        let mut sent = 0;
        for round in 0..ROUNDS_MAX {
            if noticed(self) {
                return sent;
            }
            self.env.ok_with_input(
                &["produce", "t"],
                records(RECORDS_PER_ROUND, &format!("r{round}-")).as_bytes(),
            );
            sent += RECORDS_PER_ROUND;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !noticed(self) {
            assert!(
                Instant::now() < deadline,
                "{what}: not seen after {sent} records on a full disk; node 2's log ends:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        sent
    }

    fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.env.node_dir_of(2).join("node.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        tail.join("\n")
    }

    /// Every record written is read back, once node 2 has caught up.
    fn all_there(&self, sent: usize) {
        wait_until_replicas_caught_up(&self.env, "t", Duration::from_secs(60));
        let read = self.env.ok(&["consume", "t", "-B", "-d"]);
        assert_eq!(read.lines().count(), sent, "acknowledged records missing");
    }
}

#[test]
fn a_node_whose_raft_log_disk_fills_stops_cleanly_and_catches_up_once_restarted() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    // With its default 64 MiB memtables, RocksDB reserves about 70 MB ahead
    // for the WAL file in use, so the full disk showed only after most of
    // `ROUNDS_MAX` rounds' 80 MB, near the bound. 1 MiB memtables move the
    // WAL to a new file every megabyte: the same failed write, within the
    // first rounds.
    let s = Setup::new("raft", &[(RAFT_WRITE_BUFFER_ENV, "1048576")]);
    s.fill();
    let mut sent = s.write_until("node 2 stopping", |s| !running(s.pid));
    // Its stderr is on the full disk too: what it could write of it.
    let stderr = std::fs::read_to_string(s.env.node_dir_of(2).join("node.stderr")).unwrap();
    assert!(
        stderr.contains("this node stops: its Raft log database could not write")
            && stderr.contains("No space left on device")
            && stderr.contains("Free disk space"),
        "node 2 did not say why it stopped: {stderr}\nits log ends:\n{}",
        s.log_tail()
    );
    assert!(!stderr.contains("Assertion"), "{stderr}");
    // The other two go on taking writes.
    s.env
        .ok_with_input(&["produce", "t"], records(1_000, "after-").as_bytes());
    sent += 1_000;
    s.free();
    s.env.start_with_env(3, &[]);
    s.all_there(sent);
}

#[test]
fn a_replica_whose_segment_disk_fills_stops_and_catches_up_once_space_is_back() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let s = Setup::new("partitions", &[]);
    s.fill();
    let log = s.env.node_dir_of(2).join("node.log");
    let stopped = |_: &Setup| {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("No space left on device (os error 28); stopping the replica partition=t/0")
    };
    let sent = s.write_until("node 2's replica stopping", stopped);
    assert!(running(s.pid), "node 2 stopped: {}", s.log_tail());
    s.free();
    s.all_there(sent);
    assert!(running(s.pid), "node 2 stopped: {}", s.log_tail());
}
