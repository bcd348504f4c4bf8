//! Errors a node reports to a client. They travel over the wire, so they are
//! plain data; each variant carries the identifiers the reader needs and its
//! message says what failed, on what, and what to do.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum WireError {
    // Each message that Fluvio scripts match on begins with Fluvio's phrase.
    #[error(
        "Topic not found: topic {topic:?} not found (no topic has that name); list topics with `sluice topic list`"
    )]
    UnknownTopic { topic: String },
    #[error("topic {topic:?} has no partition {partition} (it has {partitions})")]
    UnknownPartition {
        topic: String,
        partition: u32,
        partitions: u32,
    },
    #[error("Topic already exists: {topic:?}; pick another name or delete it first")]
    TopicExists { topic: String },
    #[error("invalid {what}: {reason}")]
    InvalidArgument { what: String, reason: String },
    #[error(
        "exceeded maximum request size: record of {size_bytes} bytes at index {index} of the batch exceeds the limit of {max_bytes} bytes; split or shrink it"
    )]
    RecordTooLarge {
        index: usize,
        size_bytes: usize,
        max_bytes: usize,
    },
    #[error(
        "offset {requested} is out of range for {topic}/{partition}: records are stored from {start} to {end} (exclusive); use -B, -T N or an offset in range"
    )]
    OffsetOutOfRange {
        topic: String,
        partition: u32,
        requested: u64,
        start: u64,
        end: u64,
    },
    #[error(
        "this request speaks protocol version {client} but the node speaks version {server}; use a `sluice` binary of the same release as the cluster"
    )]
    UnsupportedVersion { client: u16, server: u16 },
    #[error("malformed request: {reason}")]
    MalformedRequest { reason: String },
    #[error("node {node} does not lead {what}{}", leader.map(|l| format!("; node {l} does")).unwrap_or_default())]
    NotLeader {
        node: u64,
        what: String,
        leader: Option<u64>,
    },
    #[error(
        "batch {sequence} of producer {producer_id:x} is older than its last written batch {last_sequence}: it was already written"
    )]
    StaleBatch {
        producer_id: u64,
        sequence: u64,
        last_sequence: u64,
    },
    #[error("SmartModule {name:?} already exists; delete it first or pick another name")]
    SmartModuleExists { name: String },
    #[error(
        "SmartModule not found: SmartModule {name} was not found (none is registered under that name); list them with `sluice smart-module list`"
    )]
    UnknownSmartModule { name: String },
    /// `reason` is the engine's full message (it names the module and, when
    /// a record caused it, the offset); the fields are for programs.
    #[error("{reason}")]
    SmartModule {
        module: String,
        offset: Option<u64>,
        reason: String,
    },
    #[error("{what} is not available right now: {reason}; retry shortly")]
    Unavailable { what: String, reason: String },
    #[error("storage failure on {what}: {reason}")]
    Storage { what: String, reason: String },
    /// An idempotent producer's batch arrived before its predecessor was
    /// written (it had several batches in flight and an earlier one failed or
    /// was overtaken). It was not written; the producer resends it, after the
    /// earlier ones, in order. `last_sequence` is the producer's last written
    /// batch on this partition, `None` if the partition does not know (or no
    /// longer remembers) the producer.
    #[error(
        "batch {sequence} of producer {producer_id:x} arrived out of order (last written: {}); it was not written and will be resent after its predecessors",
        last_sequence.map_or_else(|| "none".to_string(), |s| s.to_string())
    )]
    OutOfOrderSequence {
        producer_id: u64,
        sequence: u64,
        last_sequence: Option<u64>,
    },
    /// An idempotent producer's batch carries the number of one of its
    /// producer's last written batches (the one at `offset`) but other
    /// records: two producers share an id, or one numbered two batches
    /// alike. Answering it as a resend would acknowledge records that are
    /// not in the log, so it was not written, and resending it cannot help.
    /// (Added last: the variants before it keep their encoding.)
    #[error(
        "producer {producer_id:x} reused sequence {sequence} on {topic}/{partition} for other records than the batch written with it at offset {offset}; this batch was not written. A producer id must not be shared: start a new producer (a new id) for these records"
    )]
    SequenceReused {
        topic: String,
        partition: u32,
        producer_id: u64,
        sequence: u64,
        offset: u64,
    },
    /// The request's principal lacks the permission it needs. `principal`
    /// is who the node took the peer to be (a client certificate's name, or
    /// `anonymous`), so a wrong certificate shows here. `resource` is the
    /// one resource the request needed (exact name, or the cluster).
    #[error(
        "{principal} may not {operation} on {resource}; {}",
        grant_hint(principal, *operation, resource)
    )]
    Denied {
        principal: String,
        operation: crate::Operation,
        resource: crate::ResourcePattern,
    },
    /// The peer is not a principal the node can authorize: its certificate
    /// names no identity, or a client asked for what only nodes may do.
    #[error("request refused: {reason}")]
    Unauthenticated { reason: String },
    /// No offset is committed under this consumer name (on this topic, if
    /// one was named). (Added last: the variants before it keep their encoding.)
    #[error(
        "Consumer not found: {consumer:?} has no committed offset{}; list consumers with `sluice consumer list`",
        topic.as_ref().map(|t| format!(" on topic {t:?}")).unwrap_or_default()
    )]
    UnknownConsumer {
        consumer: String,
        topic: Option<String>,
    },
    /// A consumer-group member the group no longer counts on (its session
    /// timed out, or the partition moved to another member): it must stop
    /// reading and rejoin. (Added last: the variants before it keep their encoding.)
    #[error(
        "member {member} of consumer group {group:?} is fenced: {reason}; it stops reading and rejoins"
    )]
    FencedMember {
        group: String,
        member: String,
        reason: String,
    },
    /// A metadata change sent to a cluster that runs read-only (its nodes
    /// started with `--read-only`: topics come from a file, nothing changes
    /// them). (Added last: the variants before it keep their encoding.)
    #[error(
        "permission denied: {what} changes the cluster's metadata, and this cluster runs \
         read-only (its topics come from the file its nodes were started with); produce to and \
         consume from its topics, or restart its nodes read-write (`cluster start --local \
         --read-write`, or `read_only = false` in a node's configuration) to change them"
    )]
    ReadOnly { what: String },
    /// A plain deletion of a system topic (one the cluster itself writes,
    /// such as its audit trail). Fluvio's phrase first: scripts match on it.
    /// (Added last: the variants before it keep their encoding.)
    #[error(
        "system topic '{topic}' can only be deleted forcibly: the cluster writes it (a new one \
         is started when it is gone); delete it with `sluice topic delete {topic} --system --force`"
    )]
    SystemTopic { topic: String },
    /// A [`Request::ProduceAt`](crate::Request::ProduceAt) found the
    /// partition ending elsewhere: another writer (or this one's earlier
    /// attempt) appended first. Nothing was written. (Added last.)
    #[error(
        "partition {topic}/{partition} ends at offset {end_offset}, not {expected_offset}: \
         another write came first and nothing was written; read the partition's end and \
         write again from there"
    )]
    NotAtOffset {
        topic: String,
        partition: u32,
        expected_offset: u64,
        end_offset: u64,
    },
}

/// What to do about a [`WireError::Denied`].
fn grant_hint(
    principal: &str,
    operation: crate::Operation,
    resource: &crate::ResourcePattern,
) -> String {
    use crate::ResourcePattern as R;
    let flags = match resource {
        R::Cluster => "--cluster".to_string(),
        R::Topic(name) => format!("--topic {name}"),
        R::TopicPrefix(prefix) => format!("--topic-prefix {prefix}"),
        R::SmartModule(name) => format!("--smartmodule {name}"),
        R::SmartModulePrefix(prefix) => format!("--smartmodule-prefix {prefix}"),
    };
    format!(
        "an admin can grant it with `sluice acl add --principal {principal} --operation {operation} {flags}`"
    )
}

impl WireError {
    /// A connector of that name is not in the cluster's metadata (the
    /// controller and the nodes answer it alike).
    pub fn unknown_connector(name: &str) -> Self {
        WireError::InvalidArgument {
            what: "connector".into(),
            reason: format!("no connector is named {name:?}; see `sluice connector list`"),
        }
    }

    /// Whether a client may retry the same request (possibly elsewhere) and
    /// expect a different outcome.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            WireError::NotLeader { .. }
                | WireError::Unavailable { .. }
                | WireError::OutOfOrderSequence { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denial_names_principal_operation_resource_and_the_grant() {
        let e = WireError::Denied {
            principal: "alice".into(),
            operation: crate::Operation::Produce,
            resource: crate::ResourcePattern::Topic("orders".into()),
        };
        assert!(!e.is_retriable());
        assert_eq!(
            e.to_string(),
            "alice may not produce on topic \"orders\"; an admin can grant it with \
             `sluice acl add --principal alice --operation produce --topic orders`"
        );
    }

    #[test]
    fn a_reused_sequence_is_final_and_says_what_to_do() {
        let e = WireError::SequenceReused {
            topic: "orders".into(),
            partition: 3,
            producer_id: 0xab,
            sequence: 17,
            offset: 1200,
        };
        // Resending the same records under the same number meets the same
        // refusal: a client that retried it would retry forever.
        assert!(!e.is_retriable());
        let text = e.to_string();
        for part in [
            "producer ab",
            "sequence 17",
            "orders/3",
            "offset 1200",
            "new producer",
        ] {
            assert!(text.contains(part), "{part:?} missing from {text:?}");
        }
    }
}
