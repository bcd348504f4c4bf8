//! The task that writes the audit queue (`crate::audit_log`) into the
//! audit topic, through the partition's leader, and creates the topic when
//! this node leads the controller and it is missing.

use std::sync::Arc;

use sluice_proto::{
    KeyHash, ProduceRequest, ProducerSeq, Record, Request, Response, TopicCompression,
    TopicSettings, TopicSpec, WireError,
};
use tokio::sync::mpsc;

use crate::audit_log::{
    AUDIT_BATCH_EVENTS_MAX, AUDIT_EVENTS_DROPPED, AUDIT_EVENTS_WRITTEN, AUDIT_REPLICATION_MAX,
    AUDIT_RETENTION_BYTES, AUDIT_SEGMENT_BYTES, AUDIT_TOPIC, AUDIT_WRITE_HOPS_MAX, AuditEvent,
};
use crate::services::Services;
use crate::timeouts::{
    AUDIT_RETENTION, AUDIT_TOPIC_CHECK_INTERVAL, AUDIT_WRITE_DEADLINE, AUDIT_WRITE_RETRY_INTERVAL,
};

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
pub(crate) async fn run(node: Arc<Services>, mut rx: mpsc::Receiver<AuditEvent>) {
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
async fn ensure_topic(node: &Services) {
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
    async fn write(&mut self, node: &Services, events: Vec<AuditEvent>) {
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
                target: crate::audit_log::AUDIT_TARGET,
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
            target: crate::audit_log::AUDIT_TARGET,
            events = count, error = %last_error,
            "cannot write to the audit topic within {AUDIT_WRITE_DEADLINE:?}; events dropped from it (their log lines stay)"
        );
    }
}

/// Sends `request` to this node, then to the replica each answer points to.
async fn write_through_leader(node: &Services, request: &ProduceRequest) -> Result<(), WireError> {
    let unreachable = |reason: String| WireError::Unavailable {
        what: format!("the leader of {AUDIT_TOPIC}"),
        reason,
    };
    let mut answer = crate::produce::plain(node, request.clone()).await;
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
        // The caller bounds the whole write by the same deadline.
        let produce = Request::Produce(request.clone());
        answer = match node
            .peers
            .request(&addr, &produce, AUDIT_WRITE_DEADLINE)
            .await
            .map_err(|e| unreachable(format!("node {leader} at {addr}: {e}")))?
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
}
