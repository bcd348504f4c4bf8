//! Connectors this node runs (`sluice connector create`): one process
//! each, `sluice connector run` of the node's own executable, supervised.
//!
//! A process, not a task: a connector that blocks, loops or crashes cannot
//! take the node or the other connectors with it, and the code that runs
//! it is the code `connector run` runs in the foreground. Each connector
//! has a directory under the node's data dir, `connectors/NAME/`, holding
//! its file (`config.yaml`; a file source keeps its position beside it),
//! its log (`connector.log`, rotated at [`LOG_FILE_BYTES_MAX`]) and the
//! counts the process writes about itself (`status.json`).
//!
//! The process connects to this node as the node (its certificate), so it
//! may produce and consume wherever its file says: only an admin may
//! create a connector (`crate::authz`). It exits when the node does
//! (`--exit-with-parent`), so a connector moved away from a node that was
//! killed does not run twice for long.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sluice_proto::{ConnectorRecord, ConnectorRuntime, ConnectorTally, NodeId};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::timeouts::{
    CONNECTOR_HEALTHY_RUN, CONNECTOR_PLACEMENT_INTERVAL, CONNECTOR_RECONCILE_INTERVAL,
    CONNECTOR_RESTART_BACKOFF_MAX, CONNECTOR_RESTART_BACKOFF_MIN,
};

/// A connector's log is rotated (to `connector.log.1`, replacing the one
/// before) when it passes this size, so a node keeps at most twice it.
pub(crate) const LOG_FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// Bytes of the last line a process logged kept for `describe`.
const LAST_LINE_BYTES_MAX: usize = 512;
/// Largest `status.json` read: it holds a handful of counts.
const STATUS_FILE_BYTES_MAX: u64 = 64 * 1024;

/// How the node's connector processes reach it.
#[derive(Clone, Debug)]
pub(crate) struct Launch {
    /// The `sluice` executable (the node's own).
    pub program: PathBuf,
    /// This node's address, as a client dials it.
    pub endpoint: String,
    /// The node's TLS directory (`ca.pem`, `node.pem`, `node.key`).
    pub tls: PathBuf,
    /// `<data dir>/connectors`.
    pub root: PathBuf,
}

/// The connectors running on this node, by name.
#[derive(Default)]
pub(crate) struct Supervisor {
    running: Mutex<BTreeMap<String, Supervised>>,
    /// Stopped connectors whose directory could not be removed yet: a
    /// stopped task's process is killed only once the runtime drops the
    /// task, so it may still be writing its log or counts there while the
    /// directory is removed (then "directory not empty"). Tried again at
    /// every reconcile; at most `CONNECTORS_MAX` names.
    leftover: Mutex<std::collections::BTreeSet<String>>,
}

struct Supervised {
    record: ConnectorRecord,
    status: Arc<Mutex<ConnectorRuntime>>,
    /// Aborted when the connector leaves this node: the process goes with
    /// it (`kill_on_drop`).
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Supervisor {
    /// Starts the connectors `mine` names that do not run yet, and stops
    /// those that no longer are this node's (deleted, or moved away).
    fn reconcile(&self, launch: &Launch, mine: BTreeMap<String, ConnectorRecord>) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut stopped = Vec::new();
        running.retain(|name, s| {
            let keep = mine.get(name).is_some_and(|r| r.spec == s.record.spec);
            if !keep {
                tracing::info!(connector = %name, "connector stopped here");
                stopped.push(name.clone());
            }
            keep
        });
        // Its process is killed as its task is dropped; its directory (file,
        // logs, counts, a file source's position) goes too, so a node keeps
        // nothing of connectors it no longer runs. Before any start below: a
        // connector created again under the name starts afresh.
        let mut leftover = self.leftover.lock().unwrap_or_else(|p| p.into_inner());
        leftover.extend(stopped);
        leftover.retain(|name| {
            if running.contains_key(name) {
                return false;
            }
            let dir = launch.root.join(name);
            match tokio::task::block_in_place(|| std::fs::remove_dir_all(&dir)) {
                Ok(()) => false,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => {
                    tracing::warn!(connector = %name, dir = %dir.display(), error = %e,
                        "cannot remove a stopped connector's directory yet; trying again at the next reconcile");
                    true
                }
            }
        });
        while leftover.len() > sluice_proto::limits::CONNECTORS_MAX {
            leftover.pop_first();
        }
        drop(leftover);
        for (name, record) in mine {
            if running.contains_key(&name) {
                continue;
            }
            tracing::info!(connector = %name, generation = record.generation, "connector starting here");
            let status = Arc::new(Mutex::new(ConnectorRuntime {
                name: name.clone(),
                state: "starting".into(),
                ..Default::default()
            }));
            let task = tokio::spawn(supervise(launch.clone(), record.clone(), status.clone()));
            running.insert(
                name,
                Supervised {
                    record,
                    status,
                    task,
                },
            );
        }
    }

    /// What the supervisor knows of the connectors named (all when
    /// `names` is empty) that run here, with each process's own counts.
    pub(crate) async fn here(&self, launch: &Launch, names: &[String]) -> Vec<ConnectorRuntime> {
        let mut out: Vec<ConnectorRuntime> = {
            let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            running
                .iter()
                .filter(|(name, _)| names.is_empty() || names.contains(name))
                .map(|(_, s)| s.status.lock().unwrap_or_else(|p| p.into_inner()).clone())
                .collect()
        };
        for runtime in &mut out {
            let path = launch.root.join(&runtime.name).join("status.json");
            if let Some(tally) = read_tally(&path).await {
                runtime.tally = tally;
            }
        }
        out
    }
}

/// The counts a connector process last wrote, if readable.
async fn read_tally(path: &Path) -> Option<ConnectorTally> {
    let file = tokio::fs::File::open(path).await.ok()?;
    let mut bytes = Vec::new();
    file.take(STATUS_FILE_BYTES_MAX)
        .read_to_end(&mut bytes)
        .await
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The end of connector `name`'s log on this node: at most `max_bytes`,
/// from the rotated file too when the current one is shorter.
pub(crate) async fn log_tail(launch: &Launch, name: &str, max_bytes: usize) -> String {
    let dir = launch.root.join(name);
    let current = tail_of(&dir.join("connector.log"), max_bytes).await;
    let mut text = if current.len() < max_bytes {
        tail_of(&dir.join("connector.log.1"), max_bytes - current.len()).await
    } else {
        Vec::new()
    };
    text.extend_from_slice(&current);
    String::from_utf8_lossy(&text).into_owned()
}

async fn tail_of(path: &Path, max_bytes: usize) -> Vec<u8> {
    use tokio::io::AsyncSeekExt;
    let Ok(mut file) = tokio::fs::File::open(path).await else {
        return Vec::new();
    };
    let len = file.metadata().await.map_or(0, |m| m.len());
    let start = len.saturating_sub(max_bytes as u64);
    if file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    let _ = file.take(max_bytes as u64).read_to_end(&mut bytes).await;
    bytes
}

/// Runs connector `record` until aborted: starts its process, logs what
/// it prints, and starts it again after it ends, backing off.
async fn supervise(launch: Launch, record: ConnectorRecord, status: Arc<Mutex<ConnectorRuntime>>) {
    let name = record.spec.name.clone();
    let dir = launch.root.join(&name);
    let set = |f: &dyn Fn(&mut ConnectorRuntime)| {
        f(&mut status.lock().unwrap_or_else(|p| p.into_inner()))
    };
    let mut backoff = CONNECTOR_RESTART_BACKOFF_MIN;
    loop {
        let started = Instant::now();
        set(&|s| {
            s.state = "starting".into();
            s.started_ms = sluice_proto::now_ms();
            s.pid = 0;
            s.tally = ConnectorTally::default();
        });
        let ended = match run_once(&launch, &record, &dir, &status).await {
            Ok(ended) => ended,
            Err(e) => {
                tracing::warn!(connector = %name, error = %e, "cannot start the connector's process");
                format!("could not start: {e}")
            }
        };
        tracing::warn!(connector = %name, ended = %ended, "connector process ended");
        if started.elapsed() >= CONNECTOR_HEALTHY_RUN {
            backoff = CONNECTOR_RESTART_BACKOFF_MIN;
        }
        set(&|s| {
            s.pid = 0;
            s.last_exit = Some(ended.clone());
            s.state = format!("waiting {}s to restart", backoff.as_secs());
        });
        tokio::time::sleep(backoff).await;
        set(&|s| s.restarts += 1);
        backoff = (backoff * 2).min(CONNECTOR_RESTART_BACKOFF_MAX);
    }
}

/// One run of the connector's process, to its end: what ended it, with
/// the last line it logged.
async fn run_once(
    launch: &Launch,
    record: &ConnectorRecord,
    dir: &Path,
    status: &Mutex<ConnectorRuntime>,
) -> std::io::Result<String> {
    tokio::fs::create_dir_all(dir).await?;
    let config = dir.join("config.yaml");
    tokio::fs::write(&config, &record.spec.config).await?;
    let mut child = tokio::process::Command::new(&launch.program)
        .arg("connector")
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--status-file")
        .arg(dir.join("status.json"))
        .arg("--exit-with-parent")
        .arg("--endpoint")
        .arg(&launch.endpoint)
        .arg("--ca-cert")
        .arg(launch.tls.join("ca.pem"))
        .arg("--client-cert")
        .arg(launch.tls.join("node.pem"))
        .arg("--client-key")
        .arg(launch.tls.join("node.key"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    {
        let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
        s.pid = child.id().unwrap_or(0);
        s.state = "running".into();
    }
    let log = Arc::new(tokio::sync::Mutex::new(LogFile::open(dir).await?));
    let last_line = Arc::new(Mutex::new(String::new()));
    let out = copy_to_log(child.stdout.take(), log.clone(), last_line.clone());
    let err = copy_to_log(child.stderr.take(), log.clone(), last_line.clone());
    let (exit, (), ()) = tokio::join!(child.wait(), out, err);
    let exit = exit?;
    let last = last_line.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(if last.is_empty() {
        exit.to_string()
    } else {
        format!("{exit}; its last line: {last}")
    })
}

/// Appends what `from` prints to the connector's log, and keeps its last
/// complete line.
async fn copy_to_log(
    from: Option<impl AsyncRead + Unpin>,
    log: Arc<tokio::sync::Mutex<LogFile>>,
    last_line: Arc<Mutex<String>>,
) {
    let Some(mut from) = from else { return };
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if let Some(line) = last_complete_line(chunk) {
            *last_line.lock().unwrap_or_else(|p| p.into_inner()) = line;
        }
        if let Err(e) = log.lock().await.write(chunk).await {
            tracing::warn!(error = %e, "cannot write a connector's log");
        }
    }
}

/// The last newline-terminated line of `chunk`, cut to
/// [`LAST_LINE_BYTES_MAX`].
fn last_complete_line(chunk: &[u8]) -> Option<String> {
    let end = chunk.iter().rposition(|b| *b == b'\n')?;
    let body = &chunk[..end];
    let start = body.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let line = &body[start..];
    let line = &line[..line.len().min(LAST_LINE_BYTES_MAX)];
    let line = String::from_utf8_lossy(line).trim().to_string();
    (!line.is_empty()).then_some(line)
}

/// A connector's log file, rotated once it passes [`LOG_FILE_BYTES_MAX`].
struct LogFile {
    dir: PathBuf,
    file: tokio::fs::File,
    len: u64,
}

impl LogFile {
    async fn open(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join("connector.log");
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await?;
        let len = file.metadata().await?.len();
        Ok(Self {
            dir: dir.to_path_buf(),
            file,
            len,
        })
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.len >= LOG_FILE_BYTES_MAX {
            let path = self.dir.join("connector.log");
            tokio::fs::rename(&path, self.dir.join("connector.log.1")).await?;
            *self = Self::open(&self.dir).await?;
        }
        self.file.write_all(bytes).await?;
        // A tokio file hands writes to the blocking pool and returns: flushed,
        // the bytes are in the file before `connector logs` reads it or the
        // next rotation renames it.
        self.file.flush().await?;
        self.len += bytes.len() as u64;
        Ok(())
    }
}

/// The node's connectors: runs those the metadata gives this node, at
/// every metadata change and every [`CONNECTOR_RECONCILE_INTERVAL`]; and,
/// while this node leads the controller, moves connectors off nodes it no
/// longer hears from.
pub(crate) async fn run(
    me: NodeId,
    controller: sluice_controller::Controller,
    supervisor: Arc<Supervisor>,
    launch: Launch,
) {
    let view = controller.view().clone();
    let mut changes = view.subscribe();
    let mut placement = tokio::time::interval(CONNECTOR_PLACEMENT_INTERVAL);
    placement.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mine = view.with(|md| {
            md.connectors
                .iter()
                .filter(|(_, c)| c.node == me)
                .map(|(n, c)| (n.clone(), c.clone()))
                .collect()
        });
        supervisor.reconcile(&launch, mine);
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep(CONNECTOR_RECONCILE_INTERVAL) => {}
            _ = placement.tick() => {
                match controller.move_connectors_off_silent_nodes().await {
                    Ok(moves) => for (name, from, to) in moves {
                        tracing::info!(connector = %name, from, to, "connector moved off a node the controller no longer hears from");
                    },
                    Err(e) => tracing::warn!(error = %e, "cannot move connectors off silent nodes"),
                }
            }
        }
    }
}

/// Where this node's connector processes live and how they dial it.
pub(crate) fn launch(config: &crate::NodeConfig, data_dir: &crate::data_dir::DataDir) -> Launch {
    let mut listen = config.listen;
    if listen.ip().is_unspecified() {
        listen.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Launch {
        program: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("sluice")),
        endpoint: listen.to_string(),
        tls: data_dir.tls(),
        root: data_dir.root().join("connectors"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_complete_line_is_kept_and_cut() {
        assert_eq!(last_complete_line(b"a\nb\nc"), Some("b".into()));
        assert_eq!(last_complete_line(b"only part"), None);
        assert_eq!(last_complete_line(b"x\n"), Some("x".into()));
        let long = format!("{}\n", "y".repeat(2_000));
        assert_eq!(
            last_complete_line(long.as_bytes()).map(|l| l.len()),
            Some(LAST_LINE_BYTES_MAX)
        );
    }

    #[tokio::test]
    async fn a_log_is_rotated_past_its_size_and_its_tail_spans_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogFile::open(dir.path()).await.unwrap();
        let line = vec![b'a'; 1024 * 1024];
        for _ in 0..5 {
            log.write(&line).await.unwrap();
        }
        log.write(b"after\n").await.unwrap();
        let current = std::fs::metadata(dir.path().join("connector.log"))
            .unwrap()
            .len();
        let old = std::fs::metadata(dir.path().join("connector.log.1"))
            .unwrap()
            .len();
        assert_eq!(current, 1024 * 1024 + 6);
        assert_eq!(old, LOG_FILE_BYTES_MAX);
        let launch = Launch {
            program: PathBuf::new(),
            endpoint: String::new(),
            tls: PathBuf::new(),
            root: dir.path().parent().unwrap().to_path_buf(),
        };
        let name = dir.path().file_name().unwrap().to_str().unwrap();
        let tail = log_tail(&launch, name, 2 * 1024 * 1024).await;
        assert_eq!(tail.len(), 2 * 1024 * 1024);
        assert!(tail.ends_with("aaaafter\n"));
    }
}
