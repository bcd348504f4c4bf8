//! Each node's data directory on a tmpfs of its own, for the `disk-full`
//! nemesis: filling one node's disk (a ballast file as large as the room
//! left) must not fill the others', as it would on the shared disk of the
//! run's directory.
//!
//! Mounted before the cluster's first start (a node takes an empty
//! directory for its own), unmounted when the run ends. tmpfs lives in
//! memory, so its content is copied back into the run's directory first:
//! an invalid run keeps its data for inspection as any other run does.
//! tmpfs ignores fsync; the power-loss nemesis cuts files back to what the
//! nodes' fsync journal says was synced all the same. Each node's
//! `node.stderr` is a link to `node-i.stderr` beside the mount, so that
//! what a node says as it stops for a full disk is kept.
//!
//! For the `log-disk-full` nemesis each node's Raft log gets a tmpfs of its
//! own too, beside the node's ([`log_disk`]): the node's `raft` is a link to
//! `log/` on it, and that disk alone is filled, so the Raft log meets a full
//! disk while the segments still have room.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use super::netns::run;

/// Room of each node's tmpfs (it takes memory only as it fills).
pub const TMPFS_SIZE: &str = "1g";
/// Room of each node's Raft log tmpfs, when it has one.
pub const LOG_TMPFS_SIZE: &str = "256m";

/// The ballast files a full disk holds, at the root of a node's directory:
/// this prefix and a number.
pub const BALLAST: &str = "nemesis-ballast";

/// Room [`fill`] may leave: the node's next writes take it.
const LEFT_MAX: u64 = 1024 * 1024;
/// Ballast files [`fill`] makes at most.
const BALLAST_FILES_MAX: usize = 20;

/// The mounted node directories; unmounted (their content kept) on drop.
pub struct Disks {
    dirs: Vec<PathBuf>,
}

/// The directory beside node directory `node_dir` whose tmpfs holds the
/// node's Raft log, when [`Disks::mount`] gave it one.
pub fn log_disk(node_dir: &Path) -> PathBuf {
    let mut name = node_dir.file_name().unwrap_or_default().to_os_string();
    name.push("-log");
    node_dir.with_file_name(name)
}

impl Disks {
    /// Mounts a tmpfs on `data/node-i` for each of the `nodes` nodes and, if
    /// `log_apart`, another for each node's Raft log ([`log_disk`]).
    pub fn mount(data: &Path, nodes: u32, log_apart: bool) -> anyhow::Result<Self> {
        let mut disks = Disks { dirs: Vec::new() };
        for i in 1..=nodes {
            let dir = data.join(format!("node-{i}"));
            disks.mount_one(&dir, TMPFS_SIZE)?;
            // What a node says when it stops (its disk full, say) must not
            // need room on that disk: its stderr lives next to the tmpfs.
            std::os::unix::fs::symlink(format!("../node-{i}.stderr"), dir.join("node.stderr"))
                .context("cannot link the node's stderr out of its tmpfs")?;
            if log_apart {
                let log = log_disk(&dir);
                disks.mount_one(&log, LOG_TMPFS_SIZE)?;
                // The ballast goes beside `log/`, not among RocksDB's files.
                std::fs::create_dir(log.join("log"))
                    .with_context(|| format!("cannot create {}/log", log.display()))?;
                // Relative, so the run's directory can move with it.
                let target = Path::new("..")
                    .join(log.file_name().unwrap_or_default())
                    .join("log");
                std::os::unix::fs::symlink(target, dir.join("raft"))
                    .context("cannot link the node's Raft log to its own tmpfs")?;
            }
        }
        Ok(disks)
    }

    fn mount_one(&mut self, dir: &Path, size: &str) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir))
        .context("a tmpfs per node (needs root)")?;
        self.dirs.push(dir.to_path_buf());
        Ok(())
    }

    /// The mounted directories (for the ctrl-c handler).
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.dirs.clone()
    }
}

impl Drop for Disks {
    /// Copies each node's data out of its tmpfs, unmounts it and puts the
    /// copy where the node's data was. The nodes must be stopped.
    fn drop(&mut self) {
        for dir in &self.dirs {
            let kept = dir.with_extension("kept");
            let copied = run(Command::new("cp").arg("-a").arg(dir).arg(&kept));
            let _ = free(&kept);
            unmount(dir);
            if let Err(e) = copied.and_then(|()| {
                std::fs::remove_dir(dir)?;
                std::fs::rename(&kept, dir)?;
                Ok(())
            }) {
                eprintln!("the data of {} is not kept: {e:#}", dir.display());
            }
        }
    }
}

/// Unmounts `dir` (lazily: a process still in it does not keep it mounted).
pub fn unmount(dir: &Path) {
    let _ = Command::new("umount").arg("-l").arg(dir).status();
}

/// Fills the file system of `dir` with ballast files until less than
/// `LEFT_MAX` is left (the node writes meanwhile, so a file as large as
/// the room `df` saw may no longer fit: it asks for half as much then, and
/// goes round for the rest). Returns the ballast's size.
pub fn fill(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    let mut ask = None;
    for k in 0..BALLAST_FILES_MAX {
        let room = free_bytes(dir)?;
        if room < LEFT_MAX {
            return Ok(total);
        }
        let bytes = ask.unwrap_or(room).min(room);
        let file = dir.join(format!("{BALLAST}-{k}"));
        match run(Command::new("fallocate")
            .args(["-l", &bytes.to_string()])
            .arg(&file))
        {
            Ok(()) => {
                total += bytes;
                ask = None;
            }
            Err(_) => {
                let _ = std::fs::remove_file(&file);
                ask = Some(bytes / 2);
            }
        }
    }
    bail!(
        "{} still has {} bytes free after {BALLAST_FILES_MAX} ballast files",
        dir.display(),
        free_bytes(dir)?
    )
}

/// Deletes the ballast [`fill`] left in `dir`.
pub fn free(dir: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(BALLAST))
        {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot delete {}", path.display()))?;
        }
    }
    Ok(())
}

/// Bytes an unprivileged writer could still allocate on the file system
/// holding `dir`.
fn free_bytes(dir: &Path) -> anyhow::Result<u64> {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .context("cannot run df")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .with_context(|| format!("cannot read df's answer for {}", dir.display()))
}
