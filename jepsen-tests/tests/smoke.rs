//! The CI smoke matrix: short runs of `jepsen-tests run` against real clusters,
//! one nemesis each (packet loss, crash points, full disks and full Raft log
//! disks among them),
//! with fixed seeds (membership on 4 nodes, the rest on 3),
//! two whole-cluster power losses less than 10 s apart (seed 6),
//! the SmartModule-store workload under kills and partitions; a consumer group
//! reading the log under kills and partitions; a derived topic under kills
//! and pauses; and the self-test, a deliberately broken
//! cluster (no fsync) under power loss, which the suite must call invalid.
//!
//! One cluster at a time (the machine has 2 cores and timing matters), so the
//! tests take a lock. A failed run's directory is kept under the target's tmp
//! dir; its path and summary are in the failure message.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

const DURATION_S: &str = "30";

struct Run {
    code: i32,
    results: serde_json::Value,
    output: String,
    dir: PathBuf,
}

impl Run {
    fn faults(&self) -> u64 {
        self.results["faults"]
            .as_object()
            .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum())
    }

    fn describe(&self) -> String {
        format!(
            "exit {} in {}\n{}",
            self.code,
            self.dir.display(),
            self.output
        )
    }

    /// Deletes the run's directory (only once its assertions passed).
    fn passed(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(name: &str, seed: u64, extra: &[&str]) -> Run {
    run_sized(name, seed, 3, DURATION_S, extra)
}

fn run_sized(name: &str, seed: u64, nodes: u32, duration_s: &str, extra: &[&str]) -> Run {
    let _one = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("jepsen-smoke")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_jepsen-tests"))
        .args([
            "run",
            "--duration",
            duration_s,
            "--nodes",
            &nodes.to_string(),
        ])
        .args(["--seed", &seed.to_string()])
        .args(extra)
        .arg("--out")
        .arg(&dir)
        .output()
        .expect("cannot start jepsen-tests");
    let output =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let results = std::fs::read_to_string(dir.join("results.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        results,
        output,
        dir,
    };
    println!("--- {name} ---\n{}", run.describe());
    run
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The verdict is `valid` and the process said so (exit 0).
fn assert_valid(r: &Run) {
    assert_eq!(
        r.results["valid"],
        serde_json::json!(true),
        "{}",
        r.describe()
    );
    assert_eq!(r.code, 0, "{}", r.describe());
}

/// Without root there is no namespace and no nftables, so partitions cannot
/// run: the verdict must be "unknown", never "valid".
fn assert_unknown_without_root(r: &Run) {
    assert_eq!(
        r.results["valid"],
        serde_json::json!("unknown"),
        "{}",
        r.describe()
    );
}

/// `r` if this process is root; without root, checks that the run came out
/// `unknown` (the faults it names need root) and deletes it.
fn root_only(r: Run) -> Option<Run> {
    if is_root() {
        return Some(r);
    }
    assert_unknown_without_root(&r);
    r.passed();
    None
}

fn assert_valid_with_faults(r: Run, kind: &str) {
    assert_valid(&r);
    assert!(
        r.results["faults"][kind].as_u64().unwrap_or(0) > 0,
        "no {kind} fault injected: {}",
        r.describe()
    );
    assert!(r.faults() > 0);
    assert!(
        r.results["ops"]["ok"].as_u64().unwrap_or(0) > 100,
        "{}",
        r.describe()
    );
    r.passed();
}

#[test]
fn kill() {
    assert_valid_with_faults(run("kill", 1, &["--nemesis", "kill"]), "kill");
}

#[test]
fn pause() {
    assert_valid_with_faults(run("pause", 2, &["--nemesis", "pause"]), "pause");
}

#[test]
fn partition() {
    let r = run("partition", 3, &["--nemesis", "partition"]);
    if is_root() {
        assert_valid_with_faults(r, "partition");
    } else {
        assert_unknown_without_root(&r);
        println!(
            "partition nemesis unavailable (not root): {}",
            r.results["unknown_reasons"]
        );
        r.passed();
    }
}

/// Packets lost at random: 5-35% of those into and out of one node, the
/// leader, a majority or all nodes (clients' packets too), so requests and
/// answers are retransmitted, arrive late or not before their deadline.
/// The rules must have dropped packets: a loss that dropped none tested
/// nothing.
#[test]
fn loss() {
    let r = run("loss", 12, &["--nemesis", "loss"]);
    if is_root() {
        let dropped = packets_counted(&r, "loss");
        assert!(
            !dropped.is_empty() && dropped.iter().all(|d| *d > 0),
            "a loss step dropped no packet ({dropped:?}): {}",
            r.describe()
        );
        assert_valid_with_faults(r, "loss");
    } else {
        assert_unknown_without_root(&r);
        r.passed();
    }
}

/// Crashes exactly between two steps that must survive one (a batch in its
/// segment but not answered, the WAL synced but openraft not told, a
/// snapshot point's segments synced but not its producer table, a purge
/// marked but not done, a snapshot copied but not its table...), half of
/// them followed by the loss of what was not fsynced, with snapshot points
/// every 200 entries and small segments so the periodic points are passed.
/// Most steps must have crashed where they said: a crash point never
/// reached tests nothing.
#[test]
fn crash_at() {
    let r = run(
        "crash-at",
        2,
        &["--nemesis", "crash-at", "--log-entries", "200:50"],
    );
    let stops = stop_details(&r, "crash_at");
    let crashed = stops.iter().filter(|d| d.contains(" aborted at ")).count();
    assert!(
        crashed >= 3 && crashed * 3 >= stops.len() * 2,
        "{crashed} of {} crash-at steps crashed ({stops:?}): {}",
        stops.len(),
        r.describe()
    );
    assert_valid_with_faults(r, "crash_at");
}

/// Full disks: each node's data on a tmpfs of its own, the target nodes'
/// filled with ballast for the hold. Replicas that cannot write their
/// segments stop and start again once there is room; a node whose Raft log
/// cannot write stops, says so, and is started again. The nodes' Raft
/// memtables are 64 KiB (`--raft-write-buffer`), so their WAL changes files
/// often enough for a step to reach the Raft log (with the default, the WAL
/// file in use has tens of megabytes reserved and no step does). Every step
/// must have filled a disk (its stop names the ballast's size).
#[test]
fn disk_full() {
    let Some(r) = root_only(run(
        "disk-full",
        1,
        &["--nemesis", "disk-full", "--raft-write-buffer", "65536"],
    )) else {
        return;
    };
    let stops = stop_details(&r, "disk_full");
    assert!(
        !stops.is_empty() && stops.iter().all(|d| d.starts_with("ballast of node ")),
        "a disk-full step filled no disk ({stops:?}): {}",
        r.describe()
    );
    assert_valid_with_faults(r, "disk_full");
}

/// Full Raft log disks: each node's Raft log on a tmpfs of its own, the
/// target nodes' filled for the hold while their segments keep room. A
/// node whose Raft log cannot write stops, says so (the nemesis checks its
/// stderr), and is started again once the ballast is gone; what it
/// acknowledged must all be there. At least one step must have stopped a
/// node: a step that never reached the Raft log tested nothing new.
#[test]
fn log_disk_full() {
    // The nodes' Raft memtables are 64 KiB without asking (the runner's
    // default for this nemesis), so the WAL changes files within a hold.
    let Some(r) = root_only(run("log-disk-full", 1, &["--nemesis", "log-disk-full"])) else {
        return;
    };
    let stops = stop_details(&r, "log_disk_full");
    assert!(
        stops.iter().any(|d| d.contains("had stopped")),
        "no log-disk-full step stopped a node ({stops:?}): {}",
        r.describe()
    );
    assert_valid_with_faults(r, "log_disk_full");
}

/// Steps the wall clocks of one node, the leader, a majority or all, each
/// by its own offset (tens of ms to years, either way; libfaketime, the
/// monotonic clock left true), then sets them right. At least two steps
/// must have been seen by a node (it asked for the time during the hold; a
/// follower may not, and its step counts apart): a clock no node read
/// tested nothing.
#[test]
fn clock() {
    let r = run("clock", 1, &["--nemesis", "clock"]);
    let stops = stop_details(&r, "clock");
    let seen = stops
        .iter()
        .filter(|d| d.starts_with("offsets seen by node"))
        .count();
    assert!(
        seen >= 2,
        "{seen} of {} clock steps were seen by a node ({stops:?}): {}",
        stops.len(),
        r.describe()
    );
    assert_valid_with_faults(r, "clock");
}

/// Holds back the packets into one node, the leader, a majority or all
/// (peers' and clients' alike), each by the step's base delay (2-120 ms)
/// and up to half of it again, so they arrive late and out of order. Every
/// step must have held packets back: a delay that held none tested nothing.
#[test]
fn delay() {
    let Some(r) = root_only(run("delay", 1, &["--nemesis", "delay"])) else {
        return;
    };
    let held = packets_counted(&r, "delay");
    assert!(
        !held.is_empty() && held.iter().all(|n| *n > 0),
        "a delay step held no packet back ({held:?}): {}",
        r.describe()
    );
    assert_valid_with_faults(r, "delay");
}

/// The details of the history's nemesis `stop` events of `fault`.
fn stop_details(r: &Run, fault: &str) -> Vec<String> {
    let text = std::fs::read_to_string(r.dir.join("history.jsonl"))
        .unwrap_or_else(|e| panic!("no history: {e}: {}", r.describe()));
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|op| {
            op["process"] == "nemesis" && op["f"] == "stop" && op["value"]["fault"] == fault
        })
        .filter_map(|op| op["value"]["detail"].as_str().map(str::to_string))
        .collect()
}

/// The packets each healed `fault` step's rules dropped or held back (its
/// stop's detail says "N packets dropped" or "N packets held back").
fn packets_counted(r: &Run, fault: &str) -> Vec<u64> {
    stop_details(r, fault)
        .iter()
        .filter_map(|detail| {
            let words: Vec<&str> = detail.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "packets")?;
            words.get(at.checked_sub(1)?)?.parse().ok()
        })
        .collect()
}

#[test]
fn power_loss() {
    assert_valid_with_faults(
        run("power-loss", 4, &["--nemesis", "power-loss"]),
        "power_loss",
    );
}

/// Power losses while partition groups make a snapshot point every 200
/// entries and purge their logs behind it (the default, 5,000, is never
/// reached by a short run): what a restarted node rebuilds from its last
/// snapshot point, its segments and the Raft log still holds every
/// acknowledged write, on every replica.
#[test]
fn power_loss_across_snapshot_points() {
    let r = run(
        "power-loss-snapshots",
        11,
        &["--nemesis", "power-loss", "--log-entries", "200:50"],
    );
    let points = r.results["run"]["snapshot_points"].as_u64().unwrap_or(0);
    assert!(
        points >= 3,
        "only {points} snapshot point(s) in the node logs: {}",
        r.describe()
    );
    assert_valid_with_faults(r, "power_loss");
}

/// When the history's nemesis cut the power of every one of `nodes` nodes
/// (ms since the start), from the run's `history.jsonl`.
fn power_losses_of_all(r: &Run, nodes: u64) -> Vec<u64> {
    let text = std::fs::read_to_string(r.dir.join("history.jsonl"))
        .unwrap_or_else(|e| panic!("no history: {e}: {}", r.describe()));
    let all: Vec<u64> = (1..=nodes).collect();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|op| {
            op["process"] == "nemesis"
                && op["f"] == "start"
                && op["value"]["fault"] == "power_loss"
                && op["value"]["nodes"] == serde_json::json!(all)
        })
        .filter_map(|op| op["time_ms"].as_u64())
        .collect()
}

/// Two whole-cluster power losses close together, after a single node's:
/// seed 6 schedules power-loss:one, then power-loss:all twice less than 10 s
/// apart (the unit test `seed_6_loses_all_power_twice_within_10_s` pins that
/// schedule). This run once lost acknowledged writes: what the second power
/// loss finds on disk must still hold everything acknowledged before the first.
#[test]
fn power_loss_of_all_twice() {
    let r = run(
        "power-loss-all-twice",
        6,
        &[
            "--nemesis",
            "power-loss",
            "--writers",
            "4",
            "--partitions",
            "2",
        ],
    );
    // The schedule is the one meant, as planned and as injected.
    let planned: Vec<String> = r.results["run"]["schedule"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str()?.split_whitespace().last().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        planned,
        ["power-loss:one", "power-loss:all", "power-loss:all"],
        "{}",
        r.describe()
    );
    let all = power_losses_of_all(&r, 3);
    assert!(
        all.windows(2).any(|w| w[1] - w[0] < 10_000),
        "no two power losses of all nodes within 10 s (at {all:?} ms): {}",
        r.describe()
    );
    assert!(
        r.results["faults"]["power_loss"].as_u64().unwrap_or(0) >= 3,
        "{}",
        r.describe()
    );
    assert_valid_with_faults(r, "power_loss");
}

/// Partitions moved between 4 nodes, with and without a node killed during
/// the move: no acknowledged write lost, every holder's log the same.
/// Segments truncated or bit-flipped on a stopped minority node: the
/// damaged replicas copy their partition from another replica and serve
/// again, and nothing acknowledged is lost. Synced points every 200 entries
/// (`--log-entries`, default 5,000) so that damage lands below
/// one within a short run: above it, the Raft log re-applies what was cut and
/// no copy is needed.
#[test]
fn corruption_is_repaired_from_another_replica() {
    let r = run_sized(
        "corruption",
        12,
        3,
        "60",
        &["--nemesis", "corruption", "--log-entries", "200:50"],
    );
    let repairs = r.results["run"]["repairs"]
        .as_array()
        .map_or(0, |a| a.len());
    assert!(repairs > 0, "no replica repaired itself: {}", r.describe());
    assert_valid_with_faults(r, "corruption");
}

#[test]
fn membership() {
    let r = run_sized(
        "membership",
        6,
        4,
        "40",
        &["--nemesis", "membership,membership-kill"],
    );
    let moves = r.results["faults"]["membership"].as_u64().unwrap_or(0);
    assert!(moves >= 3, "only {moves} move(s): {}", r.describe());
    assert_valid_with_faults(r, "membership");
}

/// The SmartModule store under kills and partitions: every acknowledged
/// registration on every node with its bytes' hash, no deleted module back,
/// no phantom, and every node runs a module from its own copy.
///
/// This run once found `sm_reappeared`: a create stuck at an isolated
/// controller leader was forwarded again after the heal, after its
/// acknowledged delete. Metadata changes now carry a request id the
/// controller applies at most once (`Request::Once`).
#[test]
fn smartmodule_store() {
    let r = run(
        "smartmodule",
        8,
        &[
            "--workload",
            "smartmodule",
            "--nemesis",
            "kill,partition",
            "--writers",
            "8",
        ],
    );
    let ok_of = |f: &str| r.results["ops_by_f"][f]["ok"].as_u64().unwrap_or(0);
    assert!(
        ok_of("sm_create") > 0,
        "no create succeeded: {}",
        r.describe()
    );
    assert!(
        ok_of("sm_delete") > 0,
        "no delete succeeded: {}",
        r.describe()
    );
    assert!(r.faults() > 0, "no fault injected: {}", r.describe());
    assert!(
        r.results["faults"]["kill"].as_u64().unwrap_or(0) > 0,
        "no kill injected: {}",
        r.describe()
    );
    if is_root() {
        assert_valid(&r);
        assert_eq!(ok_of("sm_list_final"), 3, "{}", r.describe());
        assert_eq!(ok_of("sm_consume"), 3, "{}", r.describe());
    } else {
        assert_unknown_without_root(&r);
    }
    r.passed();
}

/// A consumer group reads the log while members come and go (leave, or
/// crash) and nodes are killed and cut off: no record skipped, no partition
/// read by two members at once, no committed offset going back.
#[test]
fn consumer_group() {
    let r = run(
        "group",
        9,
        &["--workload", "log,group", "--nemesis", "kill,partition"],
    );
    let ok_of = |f: &str| r.results["ops_by_f"][f]["ok"].as_u64().unwrap_or(0);
    assert!(ok_of("group_poll") > 0, "no member read: {}", r.describe());
    assert!(
        ok_of("group_assign") > 3,
        "members did not come and go: {}",
        r.describe()
    );
    assert!(ok_of("group_offsets") > 0, "{}", r.describe());
    if is_root() {
        assert_valid(&r);
    } else {
        assert_unknown_without_root(&r);
    }
    r.passed();
}

/// A topic derived from the log (a cluster-run connector upper-casing each
/// record) while nodes are killed and paused: a paused node's copy keeps
/// running beside the one the controller moves elsewhere, and the derived
/// topic must still hold each record once, in order.
#[test]
fn pipeline() {
    let r = run(
        "pipeline",
        10,
        &["--workload", "log,pipeline", "--nemesis", "kill,pause"],
    );
    let ok_of = |f: &str| r.results["ops_by_f"][f]["ok"].as_u64().unwrap_or(0);
    assert_eq!(ok_of("pipeline_read"), 2, "{}", r.describe());
    assert!(
        r.results["run"]["workload_problems"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{}",
        r.describe()
    );
    assert_valid_with_faults(r, "kill");
}

/// Nodes that acknowledge without fsync, all losing power: acknowledged writes
/// vanish, and the suite must say so.
#[test]
fn a_node_that_skips_fsync_is_caught() {
    let r = run(
        "broken-no-fsync",
        5,
        &["--nemesis", "power-loss:all", "--unsafe-no-fsync"],
    );
    assert_eq!(
        r.results["valid"],
        serde_json::json!(false),
        "{}",
        r.describe()
    );
    assert_eq!(r.code, 1, "{}", r.describe());
    assert!(
        r.results["lost"].as_u64().unwrap_or(0) > 0,
        "{}",
        r.describe()
    );
    assert!(r.results["faults"]["power_loss"].as_u64().unwrap_or(0) > 0);
    r.passed();
}
