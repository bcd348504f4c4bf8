//! The recorder: every task of a run appends operations here, in the order it
//! sees them, with times from one monotonic clock. Each line also goes to
//! `history.jsonl` at once, so a run that dies half-way leaves a readable history.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use anyhow::Context;

use crate::history::{Call, NodeId, Op, OpType, Process};

/// Process ids of the post-heal drain, far above the workload's (as in the builder).
const DRAIN_PROCESS_BASE: u64 = 1_000_000;

pub struct Recorder {
    start: Instant,
    /// `start` on the wall clock, ms since the epoch.
    start_epoch_ms: u64,
    state: Mutex<State>,
    next_process: AtomicU64,
    next_drain_process: AtomicU64,
}

struct State {
    ops: Vec<Op>,
    file: BufWriter<File>,
    write_error: Option<String>,
}

impl Recorder {
    /// Records into `path` (created or truncated).
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let start_epoch_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Ok(Recorder {
            start: Instant::now(),
            start_epoch_ms,
            state: Mutex::new(State {
                ops: Vec::new(),
                file: BufWriter::new(file),
                write_error: None,
            }),
            next_process: AtomicU64::new(1),
            next_drain_process: AtomicU64::new(DRAIN_PROCESS_BASE + 1),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Milliseconds since the run started.
    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// When the run started on the wall clock (ms since the epoch), to place
    /// the nodes' timestamps on the history's clock.
    pub fn start_epoch_ms(&self) -> u64 {
        self.start_epoch_ms
    }

    /// A fresh client process id (a process that got `info` is never reused).
    pub fn new_process(&self) -> u64 {
        self.next_process.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh process id for one read of the post-heal drain.
    pub fn new_drain_process(&self) -> u64 {
        self.next_drain_process.fetch_add(1, Ordering::Relaxed)
    }

    fn push(
        &self,
        process: Process,
        kind: OpType,
        call: Call,
        node: Option<NodeId>,
        error: Option<String>,
    ) {
        let mut s = self.state();
        // Taken under the lock, so times never decrease along the history.
        let time_ms = self.now_ms();
        let op = Op {
            index: s.ops.len() as u64,
            time_ms,
            process,
            kind,
            call,
            node,
            error,
        };
        let line = serde_json::to_string(&op).map(|l| l + "\n");
        let written = match line {
            Ok(line) => s.file.write_all(line.as_bytes()),
            Err(e) => Err(std::io::Error::other(e)),
        };
        if let Err(e) = written {
            s.write_error.get_or_insert(e.to_string());
        }
        s.ops.push(op);
    }

    pub fn invoke(&self, process: u64, call: Call, node: Option<NodeId>) {
        self.push(Process::Client(process), OpType::Invoke, call, node, None);
    }

    pub fn ok(&self, process: u64, call: Call, node: Option<NodeId>) {
        self.push(Process::Client(process), OpType::Ok, call, node, None);
    }

    pub fn fail(&self, process: u64, call: Call, node: Option<NodeId>, error: String) {
        self.push(
            Process::Client(process),
            OpType::Fail,
            call,
            node,
            Some(error),
        );
    }

    pub fn info(&self, process: u64, call: Call, node: Option<NodeId>, error: String) {
        self.push(
            Process::Client(process),
            OpType::Info,
            call,
            node,
            Some(error),
        );
    }

    /// A nemesis event (start, stop, unavailable, leader); flushed at once, since
    /// these are what a reader of a cut-short history most wants to see.
    pub fn nemesis(&self, call: Call) {
        self.push(Process::Nemesis, OpType::Info, call, None, None);
        let mut s = self.state();
        if let Err(e) = s.file.flush() {
            s.write_error.get_or_insert(e.to_string());
        }
    }

    /// Flushes the file and returns every operation recorded.
    pub fn finish(&self) -> anyhow::Result<Vec<Op>> {
        let mut s = self.state();
        s.file.flush().context("cannot write history.jsonl")?;
        if let Some(e) = &s.write_error {
            anyhow::bail!("cannot write history.jsonl: {e}");
        }
        Ok(s.ops.clone())
    }
}
