//! Crash points: named places in the write, sync, snapshot and purge paths
//! where a node can be told to abort, so the fault suite crashes it exactly
//! between two steps that must survive a crash (a batch in its segment but
//! not yet answered, the WAL synced but openraft not yet told, a snapshot
//! half copied), instead of wherever a SIGKILL happens to land.
//!
//! A node started with [`FILE_ENV`] set (a path, relative ones under the
//! node's data directory) watches that file: when it holds `POINT NTH`, the
//! node aborts at the NTH [`hit`] of POINT counted from when the file was
//! written (or from the start, if it was armed then: a point only a
//! restarted replica passes, such as a snapshot's install), printing which
//! to stderr first. An empty file arms nothing; the node creates it empty
//! at start if it is missing, which is how the suite tells a node that
//! honours the switch. `abort` ends the process at once, as SIGKILL does: what
//! the process wrote stays in the page cache, and the suite may then cut
//! every file back to what was fsynced (a power loss at that point).
//!
//! Without the variable [`hit`] is one atomic load. With it, each hit of any
//! point reads the file's modification time (a `stat`): test-only, and the
//! node says so loudly at start.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

/// The environment variable naming the file that arms crash points.
pub const FILE_ENV: &str = "SLUICE_CRASH_FILE";

/// One crash point: its name (what the file names), where it is, and how
/// often a busy node passes it, for the suite to draw an NTH that is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub name: &'static str,
    pub place: &'static str,
    pub frequency: Frequency,
}

/// How often a node under the fault suite's workload passes a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frequency {
    /// With every write (hundreds a second).
    EveryWrite,
    /// At every snapshot point (every few hundred entries with
    /// `--log-entries 200:50`) or segment roll (small segments).
    Periodic,
    /// Only when a lagging replica is sent a snapshot.
    Rare,
}

/// A batch appended to a partition's segment (not fsynced; its Raft entry
/// is), before the writer's answer leaves the state machine.
pub const SEGMENT_APPENDED: &str = "segment-appended";
/// A segment closed and fsynced and its successor created, before any batch
/// goes into the new one.
pub const SEGMENT_ROLLED: &str = "segment-rolled";
/// A snapshot point's segment files fsynced, before the producer table that
/// describes them is saved.
pub const SYNC_POINT_SYNCED: &str = "sync-point-synced";
/// A chunk of batches copied from a snapshot's source into the log (not
/// fsynced), before the rest is copied.
pub const SNAPSHOT_CHUNK_COPIED: &str = "snapshot-chunk-copied";
/// A snapshot's batches all copied and fsynced, before its producer table
/// is saved.
pub const SNAPSHOT_SYNCED: &str = "snapshot-synced";
/// Raft entries written to the log database (not yet fsynced), before the
/// sync that makes them durable.
pub const RAFT_LOG_WRITTEN: &str = "raft-log-written";
/// The log database's WAL fsynced, before openraft hears that the entries it
/// covers are durable (so before any of them is acknowledged or voted on).
pub const RAFT_WAL_SYNCED: &str = "raft-wal-synced";
/// A purge's new first index saved, before the entries below it are deleted.
pub const RAFT_PURGE_MARKED: &str = "raft-purge-marked";

/// Every crash point.
pub const POINTS: [Point; 8] = [
    Point {
        name: SEGMENT_APPENDED,
        place: "a batch appended to its segment, before the writer is answered",
        frequency: Frequency::EveryWrite,
    },
    Point {
        name: SEGMENT_ROLLED,
        place: "a segment closed and its successor created, before the next batch",
        frequency: Frequency::Periodic,
    },
    Point {
        name: SYNC_POINT_SYNCED,
        place: "a snapshot point's segments fsynced, before its producer table is saved",
        frequency: Frequency::Periodic,
    },
    Point {
        name: SNAPSHOT_CHUNK_COPIED,
        place: "a chunk of a snapshot copied, before the rest",
        frequency: Frequency::Rare,
    },
    Point {
        name: SNAPSHOT_SYNCED,
        place: "a snapshot copied and fsynced, before its producer table is saved",
        frequency: Frequency::Rare,
    },
    Point {
        name: RAFT_LOG_WRITTEN,
        place: "Raft entries written, before their fsync",
        frequency: Frequency::EveryWrite,
    },
    Point {
        name: RAFT_WAL_SYNCED,
        place: "the Raft WAL fsynced, before openraft is told",
        frequency: Frequency::EveryWrite,
    },
    Point {
        name: RAFT_PURGE_MARKED,
        place: "a purge's first index saved, before the entries below it are deleted",
        frequency: Frequency::Periodic,
    },
];

/// The point named `name`, if there is one.
pub fn point(name: &str) -> Option<&'static Point> {
    POINTS.iter().find(|p| p.name == name)
}

/// What the file arms: a point and the hit (1-based) to abort at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Armed {
    pub point: &'static str,
    pub nth: u64,
}

/// Parses the file's text: empty (only whitespace) arms nothing; otherwise
/// `POINT NTH` with a known point and NTH >= 1.
pub fn parse(text: &str) -> Result<Option<Armed>, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words[..] {
        [] => Ok(None),
        [name, nth] => {
            let point = point(name).ok_or_else(|| {
                let names: Vec<&str> = POINTS.iter().map(|p| p.name).collect();
                format!(
                    "unknown crash point {name:?}; the points are {}",
                    names.join(", ")
                )
            })?;
            let nth: u64 = nth
                .parse()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| format!("{nth:?} is not a hit count of 1 or more"))?;
            Ok(Some(Armed {
                point: point.name,
                nth,
            }))
        }
        _ => Err(format!(
            "{text:?} is not `POINT NTH` (e.g. `{RAFT_WAL_SYNCED} 3`)"
        )),
    }
}

/// Set once [`init`] found the variable: the only thing [`hit`] reads otherwise.
static ENABLED: AtomicBool = AtomicBool::new(false);
static WATCH: OnceLock<Mutex<Watch>> = OnceLock::new();

/// The armed file as last read.
struct Watch {
    path: PathBuf,
    version: Option<Version>,
    armed: Option<Armed>,
    hits: u64,
}

/// What tells one writing of the file from the next: its inode (a writer
/// that replaces it by a rename makes a new one), modification time (coarse:
/// two writes a few milliseconds apart may share it) and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    inode: u64,
    modified: Option<SystemTime>,
    len: u64,
}

/// Reads [`FILE_ENV`]; if set, creates the file empty if it is missing
/// (relative paths under `data_dir`) and starts watching it. Returns the file's path when crash
/// points are on, for the node to warn about. Calling it twice keeps the
/// first file.
pub fn init(data_dir: &Path) -> std::io::Result<Option<PathBuf>> {
    let Some(value) = std::env::var_os(FILE_ENV).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let path = data_dir.join(value);
    if !path.exists() {
        std::fs::write(&path, b"")?;
    }
    // Read at the first hit, as any later version is.
    let watch = Watch {
        version: None,
        path: path.clone(),
        armed: None,
        hits: 0,
    };
    if WATCH.set(Mutex::new(watch)).is_ok() {
        ENABLED.store(true, Ordering::Release);
    }
    Ok(Some(path))
}

fn version(path: &Path) -> Option<Version> {
    let m = std::fs::metadata(path).ok()?;
    Some(Version {
        inode: m.ino(),
        modified: m.modified().ok(),
        len: m.len(),
    })
}

/// Passes the crash point `name`: aborts the process if the watched file
/// arms it and this is the armed hit. `name` must be one of [`POINTS`].
pub fn hit(name: &'static str) {
    if !ENABLED.load(Ordering::Acquire) {
        return;
    }
    debug_assert!(point(name).is_some(), "unknown crash point {name}");
    let Some(watch) = WATCH.get() else { return };
    let mut w = watch.lock().unwrap_or_else(|p| p.into_inner());
    let now = version(&w.path);
    if now != w.version {
        w.version = now;
        w.hits = 0;
        w.armed = match std::fs::read_to_string(&w.path).map(|t| parse(&t)) {
            Ok(Ok(armed)) => armed,
            Ok(Err(e)) => {
                eprintln!("crash points: {}: {e}; nothing armed", w.path.display());
                None
            }
            // Removed or unreadable: nothing armed.
            Err(_) => None,
        };
    }
    let Some(nth) = w.armed.as_ref().filter(|a| a.point == name).map(|a| a.nth) else {
        return;
    };
    w.hits += 1;
    if w.hits >= nth {
        eprintln!(
            "crash point {name} reached (hit {} as {} asked): aborting",
            w.hits,
            w.path.display()
        );
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_names_a_known_point_and_a_hit() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse(" \n").unwrap(), None);
        assert_eq!(
            parse("raft-wal-synced 3\n").unwrap(),
            Some(Armed {
                point: RAFT_WAL_SYNCED,
                nth: 3
            })
        );
        let e = parse("raft-wal 3").unwrap_err();
        assert!(
            e.contains("unknown crash point") && e.contains(SEGMENT_ROLLED),
            "{e}"
        );
        assert!(
            parse("raft-wal-synced 0")
                .unwrap_err()
                .contains("1 or more")
        );
        assert!(parse("raft-wal-synced").unwrap_err().contains("POINT NTH"));
        assert!(parse("raft-wal-synced 1 2").is_err());
    }

    #[test]
    fn every_point_is_listed_once_with_its_place() {
        for (i, p) in POINTS.iter().enumerate() {
            assert!(!p.place.is_empty());
            assert_eq!(point(p.name), Some(p));
            assert!(
                POINTS[i + 1..].iter().all(|q| q.name != p.name),
                "{}",
                p.name
            );
        }
    }

    /// Set in the child process of [`an_armed_point_aborts_at_its_nth_hit`].
    const CHILD_ENV: &str = "SLUICE_CRASHPOINTS_TEST_CHILD";

    /// The child's side: nothing armed, then `segment-appended 3` armed by a
    /// rename (as the fault suite writes it); two hits return, the third
    /// aborts. Returns at once in an ordinary test run.
    #[test]
    fn child_process_side() {
        let Some(dir) = std::env::var_os(CHILD_ENV) else {
            return;
        };
        let dir = PathBuf::from(dir);
        let path = init(&dir).unwrap().expect("the variable is set");
        for p in POINTS {
            hit(p.name);
        }
        assert_eq!(std::fs::read(&path).unwrap(), b"", "init creates it empty");
        let tmp = dir.join("armed.tmp");
        std::fs::write(&tmp, format!("{SEGMENT_APPENDED} 3")).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        hit(RAFT_WAL_SYNCED);
        hit(SEGMENT_APPENDED);
        hit(SEGMENT_APPENDED);
        println!("survived 2 hits");
        hit(SEGMENT_APPENDED);
        println!("survived the third");
    }

    /// Runs [`child_process_side`] in a child process on `dir`.
    fn child(dir: &Path) -> std::process::Output {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "tests::child_process_side", "--nocapture"])
            .env(CHILD_ENV, dir)
            .env(FILE_ENV, "crash-at")
            .output()
            .unwrap()
    }

    #[test]
    fn an_armed_point_aborts_at_its_nth_hit() {
        use std::os::unix::process::ExitStatusExt;
        let dir = tempfile::tempdir().unwrap();
        let out = child(dir.path());
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.signal(),
            Some(SIGABRT),
            "{:?}\n{stdout}\n{stderr}",
            out.status
        );
        assert!(stdout.contains("survived 2 hits"), "{stdout}");
        assert!(!stdout.contains("survived the third"), "{stdout}");
        assert!(
            stderr.contains("crash point segment-appended reached (hit 3"),
            "{stderr}"
        );
        assert!(dir.path().join("crash-at").exists());

        // Armed before the start: counted from the first hit.
        std::fs::write(dir.path().join("crash-at"), "raft-purge-marked 1").unwrap();
        let out = child(dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.signal(), Some(SIGABRT), "{stderr}");
        assert!(
            stderr.contains("crash point raft-purge-marked reached (hit 1"),
            "{stderr}"
        );
    }

    /// SIGABRT's number on Linux.
    const SIGABRT: i32 = 6;
}
