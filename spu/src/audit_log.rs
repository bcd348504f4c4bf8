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

use std::sync::Arc;

use serde::Serialize;
use sluice_proto::{
    KeyHash, ProduceRequest, ProducerSeq, Record, Request, Response, TopicCompression,
    TopicSettings, TopicSpec, WireError,
};
use tokio::sync::mpsc;

use crate::node::Shared;
use crate::timeouts::{
    AUDIT_RETENTION, AUDIT_TOPIC_CHECK_INTERVAL, AUDIT_WRITE_DEADLINE, AUDIT_WRITE_RETRY_INTERVAL,
};

/// The system topic holding the audit trail.
pub const AUDIT_TOPIC: &str = "sluice-audit";
/// Events waiting to be written, per node; more are dropped and counted.
pub(crate) const AUDIT_QUEUE_EVENTS_MAX: usize = 4096;
/// Events written in one produce batch.
const AUDIT_BATCH_EVENTS_MAX: usize = 256;
/// Redirects to another replica followed by one attempt.
const AUDIT_WRITE_HOPS_MAX: usize = 3;
/// The trail's retention in bytes (and in time, `AUDIT_RETENTION`), and
/// its segments' size.
const AUDIT_RETENTION_BYTES: u64 = 1024 * 1024 * 1024;
const AUDIT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Replicas of the audit partition, or every node if fewer.
const AUDIT_REPLICATION_MAX: u32 = 3;

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
                target: crate::authz::AUDIT_TARGET,
                queued = AUDIT_QUEUE_EVENTS_MAX,
                "audit queue full: an event was dropped from the audit topic (its log line stays)"
            );
        }
    }

    /// The queue's receiving end, once (for [`run`]).
    fn take_receiver(&self) -> Option<mpsc::Receiver<AuditEvent>> {
        self.rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// The spec of the audit topic in a cluster of `nodes` registered nodes.
fn audit_topic_spec(nodes: usize) -> TopicSpec {
    let replication = u32::try_from(nodes)
        .unwrap_or(u32::MAX)
        .clamp(1, AUDIT_REPLICATION_MAX);
    TopicSpec {
        partitions: 1,
        replication,
        retention_ms: Some(AUDIT_RETENTION.as_millis() as u64),
        retention_bytes: Some(AUDIT_RETENTION_BYTES),
        segment_size_bytes: AUDIT_SEGMENT_BYTES,
        ..TopicSpec::new(AUDIT_TOPIC)
    }
}

fn audit_topic_settings() -> TopicSettings {
    TopicSettings {
        compression: TopicCompression::Any,
        key_hash: KeyHash::FOR_NEW_TOPICS,
        system: true,
    }
}

/// The node's audit writer: writes the queued events, while a task of its
/// own creates the topic whenever this node leads the controller and the
/// topic is missing (a batch waiting for it is retried meanwhile).
pub(crate) async fn run(node: Arc<Shared>) {
    if !node.audit.enabled {
        tracing::info!(
            "the audit trail goes to the log only (audit_topic = false): no {AUDIT_TOPIC} topic"
        );
        return;
    }
    let Some(mut rx) = node.audit.take_receiver() else {
        return;
    };
    let keeper = node.clone();
    tokio::spawn(async move {
        let mut check = tokio::time::interval(AUDIT_TOPIC_CHECK_INTERVAL);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is at once: give the other nodes of a cluster being
        // formed a check interval to register, so the topic gets their replicas.
        check.tick().await;
        loop {
            check.tick().await;
            ensure_topic(&keeper).await;
        }
    });
    let mut writer = Writer::new();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < AUDIT_BATCH_EVENTS_MAX {
            match rx.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        writer.write(&node, batch).await;
    }
}

/// Creates the audit topic if this node leads the controller and it is
/// missing.
async fn ensure_topic(node: &Shared) {
    if !node.controller.is_leader() {
        return;
    }
    let Some(nodes) = node
        .controller
        .view()
        .with(|md| (!md.topics.contains_key(AUDIT_TOPIC)).then_some(md.nodes.len()))
    else {
        return;
    };
    let spec = audit_topic_spec(nodes);
    match node
        .controller
        .create_topic_with(spec, None, audit_topic_settings())
        .await
    {
        Ok(info) => tracing::info!(
            topic = AUDIT_TOPIC,
            replication = info.spec.replication,
            "created the audit topic"
        ),
        Err(WireError::TopicExists { .. }) => {}
        Err(error) => tracing::warn!(
            topic = AUDIT_TOPIC, %error,
            "cannot create the audit topic; trying again in {AUDIT_TOPIC_CHECK_INTERVAL:?}"
        ),
    }
}

/// Writes batches of events as one idempotent producer.
struct Writer {
    producer_id: u64,
    sequence: u64,
}

impl Writer {
    fn new() -> Self {
        Self {
            producer_id: sluice_proto::new_request_id()[0],
            sequence: 0,
        }
    }

    fn next_seq(&self) -> ProducerSeq {
        ProducerSeq {
            producer_id: self.producer_id,
            sequence: self.sequence,
        }
    }

    /// Writes `events` through the audit partition's leader, retrying
    /// until [`AUDIT_WRITE_DEADLINE`]; drops and counts them after that.
    async fn write(&mut self, node: &Shared, events: Vec<AuditEvent>) {
        let count = events.len() as u64;
        let foreign = node.controller.view().with(|md| {
            md.topic(AUDIT_TOPIC)
                .ok()
                .filter(|t| !md.is_system_topic(t.id))
                .map(|t| t.id)
        });
        if let Some(id) = foreign {
            // A topic of that name made by an earlier release, which did
            // not reserve it: never write the trail into someone's topic.
            metrics::counter!(AUDIT_EVENTS_DROPPED).increment(count);
            tracing::warn!(
                target: crate::authz::AUDIT_TARGET,
                events = count, topic = AUDIT_TOPIC, topic_id = id,
                "a topic that is not a system topic has the audit topic's name; events dropped \
                 from it (their log lines stay): copy that topic's records elsewhere and delete \
                 it, and the cluster creates its audit topic"
            );
            return;
        }
        let records: Vec<Record> = events
            .iter()
            .map(|e| {
                let value = serde_json::to_vec(e).expect("an audit event always encodes");
                Record::new(value)
            })
            .collect();
        let mut request = ProduceRequest {
            topic: AUDIT_TOPIC.into(),
            partition: 0,
            records,
            producer: Some(self.next_seq()),
        };
        let deadline = tokio::time::Instant::now() + AUDIT_WRITE_DEADLINE;
        let mut last_error;
        loop {
            // A partition write has no deadline of its own (a leader cut
            // off from its followers waits), so each attempt gets what is
            // left of the batch's.
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let attempt = tokio::time::timeout(left, write_through_leader(node, &request));
            let outcome = attempt.await.unwrap_or_else(|_| {
                Err(WireError::Unavailable {
                    what: format!("the leader of {AUDIT_TOPIC}"),
                    reason: format!("no answer within {AUDIT_WRITE_DEADLINE:?}"),
                })
            });
            match outcome {
                Ok(()) => {
                    self.sequence += 1;
                    metrics::counter!(AUDIT_EVENTS_WRITTEN).increment(count);
                    return;
                }
                // Not written, and the partition does not know where this
                // producer stands (the topic was deleted and created again,
                // or it forgot the producer): go on as a new producer.
                Err(e @ WireError::OutOfOrderSequence { .. }) => {
                    *self = Writer::new();
                    request.producer = Some(self.next_seq());
                    last_error = e;
                }
                Err(e) => last_error = e,
            }
            if tokio::time::Instant::now() + AUDIT_WRITE_RETRY_INTERVAL >= deadline {
                break;
            }
            tokio::time::sleep(AUDIT_WRITE_RETRY_INTERVAL).await;
        }
        // The batch may or may not be in the log: the next one starts a new
        // producer, so that it is not refused as out of order.
        *self = Writer::new();
        metrics::counter!(AUDIT_EVENTS_DROPPED).increment(count);
        tracing::warn!(
            target: crate::authz::AUDIT_TARGET,
            events = count, error = %last_error,
            "cannot write to the audit topic within {AUDIT_WRITE_DEADLINE:?}; events dropped from it (their log lines stay)"
        );
    }
}

/// Sends `request` to this node, then to the replica each answer points to.
async fn write_through_leader(node: &Shared, request: &ProduceRequest) -> Result<(), WireError> {
    let unreachable = |reason: String| WireError::Unavailable {
        what: format!("the leader of {AUDIT_TOPIC}"),
        reason,
    };
    let mut answer = crate::server::produce_here(node, request.clone()).await;
    for _ in 0..AUDIT_WRITE_HOPS_MAX {
        let leader = match &answer {
            Ok(_) => return Ok(()),
            Err(WireError::NotLeader {
                leader: Some(leader),
                ..
            }) if *leader != node.config.id => *leader,
            Err(e) => return Err(e.clone()),
        };
        let addr = node
            .controller
            .view()
            .with(|md| md.nodes.get(&leader).map(|n| n.addr.clone()))
            .ok_or_else(|| unreachable(format!("node {leader} has no known address")))?;
        answer = match node
            .peers
            .request(&addr, &Request::Produce(request.clone()))
            .await
            .map_err(unreachable)?
        {
            Response::Error(e) => Err(e),
            other => Ok(other),
        };
    }
    answer.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_topic_is_a_bounded_system_topic_on_up_to_three_nodes() {
        for (nodes, replication) in [(0, 1), (1, 1), (2, 2), (3, 3), (7, 3)] {
            let spec = audit_topic_spec(nodes);
            assert_eq!(spec.replication, replication);
            spec.validate().unwrap();
            assert!(spec.retention_bytes.is_some() && spec.retention_ms.is_some());
        }
        assert!(audit_topic_settings().system);
    }

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
        assert!(off.take_receiver().unwrap().try_recv().is_err());
        let json: serde_json::Value = serde_json::to_value(&event).unwrap();
        assert_eq!(json["principal"], "alice");
        assert_eq!(json["authorization"], "allowed");
        assert!(json.get("error").is_none());
    }
}
