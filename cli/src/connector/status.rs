//! What a connector run by a node tells that node: its counts, in a JSON
//! file the node's supervisor reads (`--status-file`), and its end when
//! the node ends (`--exit-with-parent`).

use std::path::PathBuf;
use std::time::Instant;

use sluice_client::proto::ConnectorTally;

use crate::timeouts::{CONNECTOR_LAG_INTERVAL, CONNECTOR_PARENT_CHECK_INTERVAL};

/// The counts, written whole (a temporary file renamed over the last) when
/// they changed; nothing without `--status-file`.
pub struct StatusFile {
    path: Option<PathBuf>,
    pub tally: ConnectorTally,
    written: Option<ConnectorTally>,
    lag_measured: Option<Instant>,
}

impl StatusFile {
    pub fn new(path: Option<PathBuf>) -> Self {
        Self {
            path,
            tally: ConnectorTally::default(),
            written: None,
            lag_measured: None,
        }
    }

    /// Whether a sink should measure its lag now (every
    /// [`CONNECTOR_LAG_INTERVAL`], and only for a node).
    pub fn lag_due(&mut self) -> bool {
        let due = self.path.is_some()
            && self
                .lag_measured
                .is_none_or(|at| at.elapsed() >= CONNECTOR_LAG_INTERVAL);
        if due {
            self.lag_measured = Some(Instant::now());
        }
        due
    }

    pub async fn write(&mut self) {
        let Some(path) = &self.path else { return };
        let mut now = self.tally.clone();
        if self.written.as_ref().is_some_and(|w| {
            let mut w = w.clone();
            w.updated_ms = now.updated_ms;
            w == now
        }) {
            return;
        }
        now.updated_ms = sluice_client::proto::now_ms();
        let Ok(json) = serde_json::to_vec(&now) else {
            return;
        };
        let tmp = path.with_extension("json.tmp");
        let written = async {
            tokio::fs::write(&tmp, &json).await?;
            tokio::fs::rename(&tmp, path).await
        };
        match written.await {
            Ok(()) => self.written = Some(now),
            // The counts are for show: a full disk must not stop the data.
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the connector's status")
            }
        }
    }
}

/// Exits this process once its parent (the node that started it) ends:
/// the orphan's parent becomes another process.
pub fn exit_with_parent() {
    let parent = std::os::unix::process::parent_id();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(CONNECTOR_PARENT_CHECK_INTERVAL).await;
            if std::os::unix::process::parent_id() != parent {
                eprintln!("connector: the node that ran it (pid {parent}) ended; stopping");
                std::process::exit(3);
            }
        }
    });
}
