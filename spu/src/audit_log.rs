//! The cluster's audit trail as a system topic, [`AUDIT_TOPIC`].
//!
//! Every node writes what `authz::audit` logs (each denial, and each
//! administrative request a client made) into one topic as JSON records, so
//! the trail of the whole cluster is in one ordered place that survives the
//! node's log files and is read with `sluice consume sluice-audit -B`
//! (Redpanda's `_redpanda.audit_log` and Confluent's audit-log topic do the
//! same). It is a system topic: `topic list` leaves it out, a plain `topic
//! delete` refuses it.
//!
//! The controller leader creates the topic when it is missing (at the first
//! check after it leads, and again after a forced deletion). Recording an
//! event never waits: events go into a bounded queue
//! ([`AUDIT_QUEUE_EVENTS_MAX`]) that one task per node drains in batches,
//! written through the partition's leader with an idempotent producer id,
//! so a batch retried after a lost answer is written once. When the queue is
//! full, or a batch cannot be written within [`AUDIT_WRITE_DEADLINE`], the
//! events are dropped and counted (`sluice_audit_events_dropped_total`, and
//! a warning): an unreachable audit partition never holds up the requests
//! it audits. The `sluice::audit` log lines are written either way.
//!
//! This module is the queue, which every part may record into; the task
//! that writes it, above the parts it writes through, is
//! `crate::audit_writer`.

use serde::Serialize;
use tokio::sync::mpsc;

#[cfg(doc)]
use crate::timeouts::AUDIT_WRITE_DEADLINE;

/// Target of the audit trail's log lines: `RUST_LOG=sluice::audit=info`
/// keeps it alone.
pub(crate) const AUDIT_TARGET: &str = "sluice::audit";
/// The system topic holding the audit trail.
pub const AUDIT_TOPIC: &str = "sluice-audit";
/// Events waiting to be written, per node; more are dropped and counted.
pub(crate) const AUDIT_QUEUE_EVENTS_MAX: usize = 4096;
/// Events written in one produce batch.
pub(crate) const AUDIT_BATCH_EVENTS_MAX: usize = 256;
/// Redirects to another replica followed by one attempt.
pub(crate) const AUDIT_WRITE_HOPS_MAX: usize = 3;
/// The trail's retention in bytes (and in time, `AUDIT_RETENTION`), and
/// its segments' size.
pub(crate) const AUDIT_RETENTION_BYTES: u64 = 1024 * 1024 * 1024;
pub(crate) const AUDIT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Replicas of the audit partition, or every node if fewer.
pub(crate) const AUDIT_REPLICATION_MAX: u32 = 3;

/// Events written to the audit topic, counter.
pub const AUDIT_EVENTS_WRITTEN: &str = "sluice_audit_events_written_total";
/// Events dropped (queue full, or the topic not writable in time), counter.
pub const AUDIT_EVENTS_DROPPED: &str = "sluice_audit_events_dropped_total";

/// One audited request, as its JSON record says it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct AuditEvent {
    /// When the node decided, ms since the epoch.
    pub time_ms: i64,
    /// The node that served the request.
    pub node: u64,
    pub principal: String,
    pub remote: String,
    /// The request's name, e.g. "create topic".
    pub request: String,
    /// What it changes (a topic, a module, an ACL entry).
    pub detail: String,
    /// "allowed" or "denied": whether the request was authorized (an
    /// allowed change may still fail, e.g. on a name that is taken).
    pub authorization: &'static str,
    /// Why it was denied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The node's handle on its audit writer.
pub(crate) struct AuditLog {
    /// The node's `audit_topic` setting: off, nothing is queued or written.
    enabled: bool,
    tx: mpsc::Sender<AuditEvent>,
    rx: std::sync::Mutex<Option<mpsc::Receiver<AuditEvent>>>,
}

impl AuditLog {
    pub(crate) fn new(enabled: bool) -> Self {
        let (tx, rx) = mpsc::channel(AUDIT_QUEUE_EVENTS_MAX);
        Self {
            enabled,
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
        }
    }

    /// Queues `event` for the audit topic, or drops and counts it if the
    /// queue is full. Never waits.
    pub(crate) fn record(&self, event: AuditEvent) {
        if !self.enabled {
            return;
        }
        if self.tx.try_send(event).is_err() {
            metrics::counter!(AUDIT_EVENTS_DROPPED).increment(1);
            tracing::warn!(
                target: AUDIT_TARGET,
                queued = AUDIT_QUEUE_EVENTS_MAX,
                "audit queue full: an event was dropped from the audit topic (its log line stays)"
            );
        }
    }

    /// The queue's receiving end, once, for `crate::audit_writer::run`; none when the audit
    /// trail goes to the log only (said so in the log).
    pub(crate) fn take_receiver(&self) -> Option<mpsc::Receiver<AuditEvent>> {
        if !self.enabled {
            tracing::info!(
                "the audit trail goes to the log only (audit_topic = false): no {AUDIT_TOPIC} topic"
            );
            return None;
        }
        self.rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_instead_of_waiting() {
        let log = AuditLog::new(true);
        let event = AuditEvent {
            time_ms: 1,
            node: 1,
            principal: "alice".into(),
            remote: "127.0.0.1:5000".into(),
            request: "create topic".into(),
            detail: "topic \"t\"".into(),
            authorization: "allowed",
            error: None,
        };
        for _ in 0..AUDIT_QUEUE_EVENTS_MAX + 10 {
            log.record(event.clone());
        }
        let mut rx = log.take_receiver().unwrap();
        let mut queued = 0;
        while rx.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, AUDIT_QUEUE_EVENTS_MAX);
        assert!(log.take_receiver().is_none());
        // Turned off, nothing is queued.
        let off = AuditLog::new(false);
        off.record(event.clone());
        assert!(off.take_receiver().is_none());
        let json: serde_json::Value = serde_json::to_value(&event).unwrap();
        assert_eq!(json["principal"], "alice");
        assert_eq!(json["authorization"], "allowed");
        assert!(json.get("error").is_none());
    }
}
