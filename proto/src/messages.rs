//! Requests and responses between clients and nodes.
//!
//! One request per QUIC bidirectional stream. Every request gets exactly one
//! response frame, except [`Request::Fetch`], whose stream carries a sequence
//! of [`Response::Records`] frames and ends with [`Response::FetchEnd`] or a
//! [`Response::Error`].

use serde::{Deserialize, Serialize};

use crate::{
    ConsumerOffset, ConsumerRecord, ConsumerRecordRef, GroupAssignment, GroupHeartbeat,
    LedPartitionOffsets, MetadataChange, NodeId, OffsetCommit, RaftRpc, Record, RequestId,
    SmartModuleKind, TopicSettings, TopicSettingsV1, WireError,
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    ClusterStatus,
    CreateTopic(TopicSpec),
    DeleteTopic {
        name: String,
    },
    ListTopics,
    DescribeTopic {
        name: String,
    },
    ListPartitions {
        topic: Option<String>,
    },
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    /// Node to node: a Raft RPC for one group (the payload is the Raft layer's own encoding).
    Raft(RaftRpc),
    /// Register a SmartModule; the node validates it before proposing it.
    CreateSmartModule {
        name: String,
        #[serde(with = "serde_bytes")]
        wasm: Vec<u8>,
    },
    ListSmartModules,
    DescribeSmartModule {
        name: String,
    },
    DeleteSmartModule {
        name: String,
    },
    /// The module's code, for running it outside the cluster (in a producer).
    DownloadSmartModule {
        name: String,
    },
    /// A node announces itself (at first start, or joining a running cluster):
    /// the controller records its address and data-dir incarnation and makes
    /// it a learner of the controller group. Refused for an id that was
    /// unregistered or that already ran with another data dir.
    JoinCluster {
        id: NodeId,
        addr: String,
        incarnation: String,
    },
    /// What this node's copy of the metadata says about node `id`; answered
    /// locally. A node with a new data dir asks before it starts voting.
    NodeIncarnation {
        id: NodeId,
    },
    /// Removes a node from the cluster for good (`cluster spu unregister`).
    /// Refused while it still holds partition replicas.
    UnregisterNode {
        id: NodeId,
    },
    /// Moves a partition to a new replica set (`partition reassign`): new
    /// replicas catch up as learners, then the partition's group switches
    /// membership, then the replicas left out delete their copy.
    ReassignPartition {
        topic: String,
        partition: u32,
        replicas: Vec<NodeId>,
    },
    /// Sent by a partition leader once its group runs with the new replica
    /// set of a reassignment, so the replicas left out may delete their copy.
    FinishReassignment {
        topic: String,
        partition: u32,
        replicas: Vec<NodeId>,
    },
    /// A metadata change applied at most once however often it is sent: the
    /// client picks `id` once per operation and keeps it across its retries
    /// (and nodes keep it when they forward), and the controller answers a
    /// repeated id with the first outcome instead of applying it again.
    /// Without it, a create retried after a timeout, or forwarded late by a
    /// node that lost leadership, could undo a later delete.
    ///
    /// It carries a [`MetadataChange`], not a request: no request type
    /// contains another (a frame of nested `Once`s once overflowed a
    /// worker's stack, and a `Once` around a Raft RPC reached an `unreachable!`).
    Once {
        id: RequestId,
        change: MetadataChange,
    },
    /// Node to node: whole stored batches of a partition replica's log from
    /// `from_offset` on, for a replica catching up from a snapshot.
    ReadReplicaLog {
        group: u64,
        from_offset: u64,
        max_bytes: u32,
    },
    /// Grants a permission (`sluice acl add`); admin only.
    AddAcl(crate::AclEntry),
    /// Withdraws a permission (`sluice acl remove`); admin only.
    RemoveAcl(crate::AclEntry),
    /// Every ACL entry (`sluice acl list`); admin only.
    ListAcls,
    /// Records where consumer `consumer` stands in a partition: the offset
    /// of the next record it will read. Stored in the partition's own Raft
    /// group (see ARCHITECTURE.md): the partition's leader takes it, and any
    /// other node passes it there. A group member's commit should be a
    /// [`Request::CommitOffsetAt`].
    CommitOffset(OffsetCommit),
    /// Committed offsets, of one consumer or of all (on one topic, or on
    /// all), gathered from the leaders of the partitions. SmartModule
    /// states are included only for one consumer on one topic (what a
    /// resuming consumer needs), which bounds the answer's size.
    ListConsumers {
        consumer: Option<String>,
        topic: Option<String>,
    },
    /// Forgets a consumer's committed offsets (on one topic, or on all).
    DeleteConsumer {
        consumer: String,
        topic: Option<String>,
    },
    /// A consumer-group member says it is alive and which partitions it
    /// reads; the answer says which it may read. Its first heartbeat joins
    /// the group. Served by the controller leader (any node forwards it).
    GroupHeartbeat(GroupHeartbeat),
    /// A member leaves its group at once (after committing), instead of
    /// being dropped when its session times out.
    LeaveGroup {
        group: String,
        topic: String,
        member: String,
    },
    /// Adds `count` partitions to a topic (`topic add-partition`); existing
    /// partitions and their records stay as they are.
    AddPartitions {
        topic: String,
        count: u32,
    },
    /// Creates a topic whose replicas the caller places (`topic create
    /// --replica-assignment`): one assignment per partition, in partition
    /// order, each naming `spec.replication` distinct registered nodes (the
    /// first starts the partition's Raft group, so it usually leads first).
    CreateTopicAssigned {
        spec: TopicSpec,
        assignments: Vec<PartitionAssignment>,
    },
    /// Creates a topic with settings beyond its spec (compression), placed
    /// by the caller (as [`Request::CreateTopicAssigned`]) or by the
    /// controller.
    CreateTopicWith {
        spec: TopicSpec,
        assignments: Option<Vec<PartitionAssignment>>,
        settings: TopicSettingsV1,
    },
    /// A topic's settings beyond its spec; answered from the node's copy of
    /// the metadata.
    DescribeTopicSettings {
        name: String,
    },
    /// A produce batch whose records travel compressed (see
    /// [`CompressedProduce`]).
    ProduceCompressed(CompressedProduce),
    /// A [`Request::Fetch`] with options that did not exist when
    /// `FetchRequest`'s encoding was fixed; answered exactly as a fetch.
    FetchWith {
        fetch: FetchRequest,
        options: Vec<FetchOption>,
    },
    /// A group member's [`Request::CommitOffset`], with the generation of
    /// the coordinator's last answer the member acted on: the partition
    /// refuses it once it has been given to a member at a later generation
    /// (see [`Request::FenceConsumer`]), so a member that lost the partition
    /// cannot move its offset.
    CommitOffsetAt {
        commit: OffsetCommit,
        generation: u64,
    },
    /// Between nodes: the consumer-group coordinator, before a member
    /// starts reading `partition` in `generation`, has the partition's
    /// leader refuse the group's commits of earlier generations from then
    /// on, and learns the committed offset to start from (answered with
    /// [`Response::ConsumerFenced`]).
    FenceConsumer {
        consumer: String,
        topic: String,
        partition: u32,
        generation: u64,
    },
    /// Between nodes: the committed offsets in the partitions this node
    /// leads (of `consumer` or all, on `topic` or all), answered with
    /// [`Response::LeaderConsumers`]; a node answering
    /// [`Request::ListConsumers`] asks every node.
    LeaderConsumers {
        consumer: Option<String>,
        topic: Option<String>,
    },
    /// Between nodes: forget `consumer`'s offsets in the partitions this
    /// node leads (on `topic` or all); answered with
    /// [`Response::ConsumerForgotten`].
    ForgetConsumer {
        consumer: String,
        topic: Option<String>,
    },
    /// A produce batch of which some record has headers: `records` is the
    /// encoding of the batch's `Vec<Record>` with their headers (not the
    /// [`crate::record::v1`] shape of [`Request::Produce`] and
    /// [`Request::ProduceCompressed`]), compressed with `compression` unless
    /// that is `None`. A client sends a batch without headers the earlier
    /// way, so it still reaches a node of an earlier release.
    ProduceWithHeaders(CompressedProduce),
    /// Creates a topic with settings in their current shape (key hash,
    /// system topic); otherwise as [`Request::CreateTopicWith`], which a
    /// cluster of an earlier release also understands.
    CreateTopicV2 {
        spec: TopicSpec,
        assignments: Option<Vec<PartitionAssignment>>,
        settings: TopicSettings,
    },
    /// A topic's settings in their current shape, answered with
    /// [`Response::TopicSettingsV2`] from the node's copy of the metadata.
    DescribeTopicSettingsV2 {
        name: String,
    },
    /// Deletes a topic even if it is a system topic (`topic delete
    /// --system --force`); [`Request::DeleteTopic`] refuses those.
    DeleteTopicForced {
        name: String,
    },
    /// The system topics, or the others ([`Request::ListTopics`] lists the
    /// others, as before system topics existed).
    ListTopicsV2 {
        system: bool,
    },
    /// [`Request::ListPartitions`] of system topics (`system`) or of the
    /// others; a named topic is listed whichever it is.
    ListPartitionsV2 {
        topic: Option<String>,
        system: bool,
    },
    /// Stores a connector and has a live node run it (`connector create`).
    CreateConnector(crate::ConnectorSpec),
    /// Stops a connector and forgets it.
    DeleteConnector {
        name: String,
    },
    /// Every connector, or one, with what its node reports about it.
    ListConnectors {
        name: Option<String>,
    },
    /// The end of a connector's log, at most `max_bytes`; passed on to the
    /// node that runs it.
    ConnectorLogs {
        name: String,
        max_bytes: u32,
    },
    /// Node to node: what this node's supervisor knows of the connectors it
    /// runs (all of them, or those named).
    ConnectorsHere {
        names: Vec<String>,
    },
    /// Node to node: [`Request::ConnectorLogs`] answered from this node's
    /// own files, never passed on.
    ConnectorLogsHere {
        name: String,
        max_bytes: u32,
    },
    /// A batch written only if the partition ends at `expected_offset` when
    /// it is applied (else [`WireError::NotAtOffset`], nothing written):
    /// how a derived topic's copy writes each record once whatever runs
    /// twice. `batch` is as in [`Request::ProduceWithHeaders`]; no producer
    /// sequence (the offset check subsumes it).
    ProduceAt {
        batch: CompressedProduce,
        expected_offset: u64,
    },
}

/// An option of [`Request::FetchWith`]. New options are new variants, so a
/// node of an earlier release refuses what it does not know instead of
/// misreading it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FetchOption {
    /// Before the stream starts, the modules of the chain that have a
    /// `look_back` function see the partition's last records (see
    /// [`Lookback`]), so they can rebuild what they keep.
    Lookback(Lookback),
}

/// Which records a module's `look_back` sees: the last `last` records of the
/// partition when the stream starts (at most
/// [`LOOKBACK_RECORDS_MAX`](crate::limits::LOOKBACK_RECORDS_MAX)), and of
/// those only the ones stamped within `age_ms` of the node's clock, if given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lookback {
    pub last: u64,
    pub age_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Error(WireError),
    ClusterStatus(ClusterStatus),
    TopicCreated(TopicInfo),
    TopicDeleted,
    Topics(Vec<TopicInfo>),
    Topic(TopicInfo),
    Partitions(Vec<PartitionStatus>),
    Produced(ProduceResponse),
    /// The resolved first offset of a fetch, sent before any record so a client
    /// knows where it stands even when no record follows yet.
    FetchStarted {
        partition: u32,
        start_offset: u64,
        end_offset: u64,
    },
    /// Records of a fetch, none with headers (the shape earlier releases
    /// read); see [`Response::RecordsWithHeaders`].
    Records {
        #[serde(with = "crate::record::v1::consumer")]
        records: Vec<ConsumerRecord>,
        high_watermark: u64,
    },
    /// A non-following fetch reached its end; `next_offset` is where to resume.
    FetchEnd {
        next_offset: u64,
    },
    /// The answer to a [`Request::Raft`], encoded by the Raft layer.
    Raft {
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    SmartModuleCreated(SmartModuleInfo),
    SmartModules(Vec<SmartModuleInfo>),
    SmartModule(SmartModuleInfo),
    SmartModuleDeleted,
    SmartModuleWasm {
        info: SmartModuleInfo,
        #[serde(with = "serde_bytes")]
        wasm: Vec<u8>,
    },
    Joined,
    NodeIncarnation(NodeIncarnation),
    NodeUnregistered,
    PartitionReassigned(PartitionAssignment),
    ReassignmentFinished,
    /// Batches as stored (header and payload), from the one holding the
    /// requested offset; `start_offset` is the source log's first offset.
    ReplicaLog {
        start_offset: u64,
        batches: Vec<serde_bytes::ByteBuf>,
    },
    AclAdded,
    AclRemoved,
    Acls(Vec<crate::AclEntry>),
    OffsetCommitted,
    Consumers(Vec<ConsumerOffset>),
    ConsumerDeleted,
    GroupAssignment(GroupAssignment),
    GroupLeft,
    TopicSettings(TopicSettingsV1),
    /// See [`Request::FenceConsumer`]: the group's committed offset in the
    /// partition (and the SmartModule state committed with it), if any.
    ConsumerFenced {
        offset: Option<u64>,
        state: Option<serde_bytes::ByteBuf>,
    },
    /// See [`Request::LeaderConsumers`]: one entry per partition the node
    /// leads in the asked scope, with or without offsets.
    LeaderConsumers(Vec<LedPartitionOffsets>),
    /// See [`Request::ForgetConsumer`]: the partitions the node leads in
    /// the asked scope, and how many of them held offsets of the consumer.
    ConsumerForgotten {
        partitions: Vec<(String, u32)>,
        forgotten: u32,
    },
    /// [`Response::Records`] of which some record has headers. A node sends
    /// it only for such records, so a consumer of an earlier release reads a
    /// partition without headers as before, and fails on one with headers
    /// (it cannot show them) instead of dropping them unseen.
    RecordsWithHeaders {
        records: Vec<ConsumerRecord>,
        high_watermark: u64,
    },
    /// See [`Request::DescribeTopicSettingsV2`].
    TopicSettingsV2(TopicSettings),
    ConnectorCreated(crate::ConnectorRecord),
    ConnectorDeleted,
    Connectors(Vec<crate::ConnectorInfo>),
    ConnectorLogs {
        text: String,
    },
    ConnectorsHere(Vec<crate::ConnectorRuntime>),
}

/// [`Response::Records`] made of borrowed records: encodes to exactly the
/// same bytes (a test checks it), so the consumer decodes it as that.
#[derive(Debug)]
pub struct RecordsRef<'a> {
    pub records: &'a [ConsumerRecordRef<'a>],
    pub high_watermark: u64,
}

/// Position of `Records` among [`Response`]'s variants, as serde numbers them.
pub(crate) const RESPONSE_RECORDS_INDEX: u32 = 9;
/// Position of `RecordsWithHeaders` among [`Response`]'s variants.
pub(crate) const RESPONSE_RECORDS_WITH_HEADERS_INDEX: u32 = 35;

impl Serialize for RecordsRef<'_> {
    /// As [`Response::Records`] when no record has headers, else as
    /// [`Response::RecordsWithHeaders`].
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStructVariant;
        struct V1<'a, 'r>(&'a [ConsumerRecordRef<'r>]);
        impl Serialize for V1<'_, '_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                crate::record::v1::borrowed::serialize(self.0, s)
            }
        }
        if self.records.iter().all(|r| r.headers.is_empty()) {
            let mut v =
                s.serialize_struct_variant("Response", RESPONSE_RECORDS_INDEX, "Records", 2)?;
            v.serialize_field("records", &V1(self.records))?;
            v.serialize_field("high_watermark", &self.high_watermark)?;
            v.end()
        } else {
            let mut v = s.serialize_struct_variant(
                "Response",
                RESPONSE_RECORDS_WITH_HEADERS_INDEX,
                "RecordsWithHeaders",
                2,
            )?;
            v.serialize_field("records", self.records)?;
            v.serialize_field("high_watermark", &self.high_watermark)?;
            v.end()
        }
    }
}

impl Request {
    /// The request's name in messages and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Request::ClusterStatus => "cluster status",
            Request::CreateTopic(_) => "create topic",
            Request::DeleteTopic { .. } => "delete topic",
            Request::ListTopics => "list topics",
            Request::DescribeTopic { .. } => "describe topic",
            Request::ListPartitions { .. } => "list partitions",
            Request::Produce(_) => "produce",
            Request::Fetch(_) => "fetch",
            Request::Raft(_) => "raft rpc",
            Request::CreateSmartModule { .. } => "create SmartModule",
            Request::ListSmartModules => "list SmartModules",
            Request::DescribeSmartModule { .. } => "describe SmartModule",
            Request::DeleteSmartModule { .. } => "delete SmartModule",
            Request::DownloadSmartModule { .. } => "download SmartModule",
            Request::JoinCluster { .. } => "join cluster",
            Request::NodeIncarnation { .. } => "node incarnation",
            Request::UnregisterNode { .. } => "unregister node",
            Request::ReassignPartition { .. } => "reassign partition",
            Request::FinishReassignment { .. } => "finish reassignment",
            Request::ReadReplicaLog { .. } => "read replica log",
            Request::AddAcl(_) => "add ACL",
            Request::RemoveAcl(_) => "remove ACL",
            Request::ListAcls => "list ACLs",
            Request::CommitOffset(_) => "commit offset",
            Request::ListConsumers { .. } => "list consumers",
            Request::DeleteConsumer { .. } => "delete consumer",
            Request::GroupHeartbeat(_) => "group heartbeat",
            Request::LeaveGroup { .. } => "leave group",
            Request::AddPartitions { .. } => "add partitions",
            Request::CreateTopicAssigned { .. } => "create topic",
            Request::CreateTopicWith { .. } => "create topic",
            Request::DescribeTopicSettings { .. } => "describe topic settings",
            Request::ProduceCompressed(_) => "produce",
            Request::FetchWith { .. } => "fetch",
            Request::CommitOffsetAt { .. } => "commit offset",
            Request::FenceConsumer { .. } => "fence consumer",
            Request::LeaderConsumers { .. } => "list led partitions' consumers",
            Request::ForgetConsumer { .. } => "forget consumer",
            Request::ProduceWithHeaders(_) => "produce",
            Request::CreateTopicV2 { .. } => "create topic",
            Request::DescribeTopicSettingsV2 { .. } => "describe topic settings",
            Request::DeleteTopicForced { .. } => "delete system topic",
            Request::ListTopicsV2 { .. } => "list topics",
            Request::ListPartitionsV2 { .. } => "list partitions",
            Request::CreateConnector(_) => "create connector",
            Request::DeleteConnector { .. } => "delete connector",
            Request::ListConnectors { .. } => "list connectors",
            Request::ConnectorLogs { .. } => "connector logs",
            Request::ConnectorsHere { .. } => "connectors here",
            Request::ConnectorLogsHere { .. } => "connector logs here",
            Request::ProduceAt { .. } => "produce at offset",
            Request::Once { change, .. } => change.name(),
        }
    }

    /// Whether this request appends records to a partition: sent again
    /// after an answer was lost, it may write them twice (unless it carries
    /// a producer sequence or an expected offset, which only its sender
    /// knows to rely on).
    pub fn appends_records(&self) -> bool {
        matches!(
            self,
            Request::Produce(_)
                | Request::ProduceCompressed(_)
                | Request::ProduceWithHeaders(_)
                | Request::ProduceAt { .. }
        )
    }

    /// Whether this request changes the cluster's metadata (in a `Once` or not).
    pub fn is_metadata_change(&self) -> bool {
        matches!(
            self,
            Request::CreateTopic(_)
                | Request::DeleteTopic { .. }
                | Request::CreateSmartModule { .. }
                | Request::DeleteSmartModule { .. }
                | Request::UnregisterNode { .. }
                | Request::ReassignPartition { .. }
                | Request::AddAcl(_)
                | Request::RemoveAcl(_)
                | Request::DeleteConsumer { .. }
                | Request::AddPartitions { .. }
                | Request::CreateTopicAssigned { .. }
                | Request::CreateTopicWith { .. }
                | Request::CreateTopicV2 { .. }
                | Request::DeleteTopicForced { .. }
                | Request::CreateConnector(_)
                | Request::DeleteConnector { .. }
                | Request::Once { .. }
        )
    }
}

/// What one node's metadata says about a node id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIncarnation {
    /// The id is registered.
    pub known: bool,
    /// The data-dir incarnation it registered with (`None`: listed in the
    /// initial cluster but never started).
    pub incarnation: Option<String>,
    /// The id was unregistered: it can never be used again.
    pub removed: bool,
}

/// A registered SmartModule as `smart-module list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmartModuleInfo {
    pub name: String,
    pub kind: SmartModuleKind,
    pub size_bytes: u64,
    /// SHA-256 of the module's bytes, hex.
    pub hash: String,
    pub created_ms: i64,
}

/// What a user asks for when creating a topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    pub replication: u32,
    pub retention_ms: Option<u64>,
    pub retention_bytes: Option<u64>,
    pub segment_size_bytes: u64,
}

impl TopicSpec {
    pub const SEGMENT_SIZE_BYTES_DEFAULT: u64 = 1024 * 1024 * 1024;

    /// A spec with the defaults `sluice topic create NAME` uses.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            partitions: 1,
            replication: 1,
            retention_ms: None,
            retention_bytes: None,
            segment_size_bytes: Self::SEGMENT_SIZE_BYTES_DEFAULT,
        }
    }

    /// Checks the spec against the protocol limits; the message names the field.
    pub fn validate(&self) -> Result<(), WireError> {
        use crate::limits::*;
        let invalid = |what: &str, reason: String| WireError::InvalidArgument {
            what: what.to_string(),
            reason,
        };
        validate_topic_name(&self.name).map_err(|r| invalid("topic name", r))?;
        if self.partitions == 0 || self.partitions > TOPIC_PARTITIONS_MAX {
            return Err(invalid(
                "partition count",
                format!(
                    "{} partitions requested; a topic needs 1 to {TOPIC_PARTITIONS_MAX}",
                    self.partitions
                ),
            ));
        }
        if self.replication == 0 {
            return Err(invalid(
                "replication factor",
                "0 requested; a topic needs at least 1 replica".into(),
            ));
        }
        if self.segment_size_bytes < SEGMENT_SIZE_BYTES_MIN {
            return Err(invalid(
                "segment size",
                format!(
                    "{} bytes requested; the minimum is {SEGMENT_SIZE_BYTES_MIN}",
                    self.segment_size_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// A topic as the controller knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    pub spec: TopicSpec,
    pub created_ms: i64,
    pub assignments: Vec<PartitionAssignment>,
}

/// Which nodes hold a partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionAssignment {
    pub partition: u32,
    pub replicas: Vec<NodeId>,
}

/// Live state of one partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionStatus {
    pub topic: String,
    pub partition: u32,
    pub leader: Option<NodeId>,
    pub replicas: Vec<ReplicaStatus>,
    /// First offset still stored (moves with retention).
    pub start_offset: u64,
    /// Offsets below this are committed and readable.
    pub committed_offset: u64,
    /// Next offset the leader will assign.
    pub end_offset: u64,
    pub size_bytes: u64,
    /// Replicas a running reassignment is moving the partition away from:
    /// they keep their copy until the new replica set has taken over.
    pub leaving: Vec<NodeId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub node: NodeId,
    /// Raft entries (produce batches) this replica has not yet confirmed to
    /// the leader; `None` when the answering node does not lead the partition
    /// or has not heard from the replica.
    pub lag_entries: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub cluster_id: String,
    pub controller_leader: Option<NodeId>,
    pub nodes: Vec<NodeStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: NodeId,
    /// Address clients and peers connect to.
    pub advertised_addr: String,
    pub listen_addr: String,
    pub data_dir: String,
    pub pid: u32,
    /// E.g. "controller-leader", "controller-voter".
    pub role: String,
    pub healthy: bool,
    pub version: String,
    pub uptime_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProduceRequest {
    pub topic: String,
    pub partition: u32,
    /// In the shape without headers (a batch with headers travels as
    /// [`Request::ProduceWithHeaders`]).
    #[serde(with = "crate::record::v1")]
    pub records: Vec<Record>,
    /// Set by an idempotent producer: a retried batch carries the same
    /// sequence and is written once.
    pub producer: Option<ProducerSeq>,
}

/// A produce batch whose records travel compressed: `records` is the
/// codec's encoding of the batch's `Vec<Record>` (in the
/// [`crate::record::v1`] shape, except in [`Request::ProduceWithHeaders`]), compressed with
/// `compression` by `sluice-compress`. The node expands it (bounded by the
/// batch limits) and handles it as a [`ProduceRequest`]; a topic whose
/// compression setting does not accept `compression` refuses it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompressedProduce {
    pub topic: String,
    pub partition: u32,
    pub compression: crate::Compression,
    #[serde(with = "serde_bytes")]
    pub records: Vec<u8>,
    pub producer: Option<ProducerSeq>,
}

/// Identifies a batch of an idempotent producer: its id (random, chosen by
/// the producer) and the batch's number among those it sent to this partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerSeq {
    pub producer_id: u64,
    pub sequence: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProduceResponse {
    pub partition: u32,
    /// Offset of the first record of the batch; the others follow contiguously.
    pub base_offset: u64,
    pub record_count: u32,
}

/// Where a fetch starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartOffset {
    /// The first stored offset.
    Beginning,
    /// The current end: only records committed from now on.
    End,
    /// This exact offset.
    Absolute(u64),
    /// N records before the current end (clamped to the beginning).
    FromEnd(u64),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRequest {
    pub topic: String,
    pub partition: u32,
    pub start: StartOffset,
    /// Last offset to deliver, inclusive (`--end`).
    pub end_offset: Option<u64>,
    /// Stop after this many records (`--head`).
    pub max_records: Option<u64>,
    /// Keep the stream open and push records as they are committed, instead
    /// of ending at the current end.
    pub follow: bool,
    /// Record payload bytes per response frame (clamped to the protocol limit).
    pub max_bytes: u32,
    /// Which replica may serve the fetch; every replica serves only
    /// committed records.
    pub read_from: ReadFrom,
    /// Read from this node's replica (`--replica`); the client routes there.
    pub replica: Option<NodeId>,
    /// SmartModules the serving node applies, in order, before records
    /// leave it.
    pub smartmodules: Vec<SmartModuleInvocation>,
}

/// Builds a fetch from defaults: `FetchRequest::new("t", 0)` reads partition
/// 0 of `t` from its start to its current end, from the leader, 1 MiB per
/// response, no modules; each method changes one thing:
///
/// ```
/// use sluice_proto::{FetchRequest, ReadFrom, SmartModuleInvocation};
/// let request = FetchRequest::new("clicks", 2)
///     .from_end()
///     .follow()
///     .read_from(ReadFrom::Any)
///     .smartmodule(SmartModuleInvocation::registered("bots-out").param("min", "3"));
/// assert!(request.follow && request.smartmodules.len() == 1);
/// ```
impl FetchRequest {
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        Self {
            topic: topic.into(),
            partition,
            start: StartOffset::Beginning,
            end_offset: None,
            max_records: None,
            follow: false,
            max_bytes: crate::limits::FETCH_RESPONSE_BYTES_DEFAULT as u32,
            read_from: ReadFrom::Leader,
            replica: None,
            smartmodules: Vec::new(),
        }
    }

    /// Start here (the default is [`StartOffset::Beginning`]).
    pub fn start(mut self, start: StartOffset) -> Self {
        self.start = start;
        self
    }

    /// Start at the current end: only records committed from now on.
    pub fn from_end(self) -> Self {
        self.start(StartOffset::End)
    }

    /// Start at this offset.
    pub fn from_offset(self, offset: u64) -> Self {
        self.start(StartOffset::Absolute(offset))
    }

    /// Start `n` records before the current end.
    pub fn last(self, n: u64) -> Self {
        self.start(StartOffset::FromEnd(n))
    }

    /// Keep the stream open and receive records as they are committed.
    pub fn follow(mut self) -> Self {
        self.follow = true;
        self
    }

    /// Stop after the record at this offset (inclusive).
    pub fn until(mut self, last_offset: u64) -> Self {
        self.end_offset = Some(last_offset);
        self
    }

    /// Stop after this many records.
    pub fn max_records(mut self, n: u64) -> Self {
        self.max_records = Some(n);
        self
    }

    /// Record bytes per response (clamped by the node to its limit).
    pub fn max_bytes(mut self, bytes: u32) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Which replica may serve it.
    pub fn read_from(mut self, read_from: ReadFrom) -> Self {
        self.read_from = read_from;
        self
    }

    /// Read from this node's replica.
    pub fn replica(mut self, node: NodeId) -> Self {
        self.replica = Some(node);
        self
    }

    /// Apply this module after the ones already added.
    pub fn smartmodule(mut self, invocation: SmartModuleInvocation) -> Self {
        self.smartmodules.push(invocation);
        self
    }
}

/// Builders of an invocation: a registered module or the module's code,
/// then its parameters, kind and initial accumulator.
impl SmartModuleInvocation {
    /// The module registered in the cluster as `name`, of its own kind.
    pub fn registered(name: impl Into<String>) -> Self {
        Self::of(SmartModuleSource::Registered(name.into()))
    }

    /// A module sent with the request (`wasm`), called `name` in messages.
    pub fn ad_hoc(name: impl Into<String>, wasm: Vec<u8>) -> Self {
        Self::of(SmartModuleSource::AdHoc {
            name: name.into(),
            wasm,
        })
    }

    fn of(module: SmartModuleSource) -> Self {
        Self {
            module,
            kind: None,
            params: Default::default(),
            initial: None,
        }
    }

    /// Refuse the module unless it is of this kind.
    pub fn kind(mut self, kind: SmartModuleKind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// One `-e key=value` parameter.
    pub fn param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.insert(key.into(), value.into());
        self
    }

    /// The aggregate's starting accumulator.
    pub fn initial(mut self, accumulator: impl Into<Vec<u8>>) -> Self {
        self.initial = Some(accumulator.into());
        self
    }
}

/// One SmartModule of a consumer's chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmartModuleInvocation {
    pub module: SmartModuleSource,
    /// The kind the user asked for (`--filter`, `--map`...); `None` takes the
    /// module's own (`--smartmodule`, `--smartmodule-path`).
    pub kind: Option<SmartModuleKind>,
    /// `-e key=value` parameters.
    pub params: std::collections::BTreeMap<String, String>,
    /// Initial accumulator of an aggregate (`--initial`).
    pub initial: Option<Vec<u8>>,
}

/// Where a SmartModule's code comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SmartModuleSource {
    /// A module registered in the cluster under this name.
    Registered(String),
    /// The module itself (an ad-hoc `.wasm` file), with a name for messages.
    AdHoc {
        name: String,
        #[serde(with = "serde_bytes")]
        wasm: Vec<u8>,
    },
}

impl SmartModuleSource {
    pub fn name(&self) -> &str {
        match self {
            SmartModuleSource::Registered(name) | SmartModuleSource::AdHoc { name, .. } => name,
        }
    }
}

/// Which replicas of a partition may serve a fetch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadFrom {
    /// Only the leader (sees a record as soon as it is committed).
    #[default]
    Leader,
    /// Only a follower (spreads read load; lags the leader slightly).
    Follower,
    /// Whichever replica is asked.
    Any,
}

#[cfg(test)]
mod once_tests {

    #[test]
    fn a_fetch_built_from_defaults_is_what_a_hand_filled_one_was() {
        let built = FetchRequest::new("t", 3);
        assert_eq!(
            built,
            FetchRequest {
                topic: "t".into(),
                partition: 3,
                start: StartOffset::Beginning,
                end_offset: None,
                max_records: None,
                follow: false,
                max_bytes: crate::limits::FETCH_RESPONSE_BYTES_DEFAULT as u32,
                read_from: ReadFrom::Leader,
                replica: None,
                smartmodules: Vec::new(),
            }
        );
        let full = built
            .last(5)
            .follow()
            .until(99)
            .max_records(7)
            .max_bytes(100)
            .read_from(ReadFrom::Follower)
            .replica(2)
            .smartmodule(
                SmartModuleInvocation::ad_hoc("sum", vec![0, 97])
                    .kind(SmartModuleKind::Aggregate)
                    .param("k", "v")
                    .initial("10"),
            );
        assert_eq!(full.start, StartOffset::FromEnd(5));
        assert!(full.follow);
        assert_eq!(
            (full.end_offset, full.max_records, full.max_bytes),
            (Some(99), Some(7), 100)
        );
        assert_eq!(
            (full.read_from, full.replica),
            (ReadFrom::Follower, Some(2))
        );
        let m = &full.smartmodules[0];
        assert_eq!(m.module.name(), "sum");
        assert_eq!(m.kind, Some(SmartModuleKind::Aggregate));
        assert_eq!(m.params["k"], "v");
        assert_eq!(m.initial.as_deref(), Some(&b"10"[..]));
        assert_eq!(
            FetchRequest::new("t", 0).from_offset(4).start,
            StartOffset::Absolute(4)
        );
        assert_eq!(FetchRequest::new("t", 0).from_end().start, StartOffset::End);
    }
    use super::*;
    use crate::codec::{decode, encode};

    #[test]
    fn every_metadata_change_round_trips_through_its_request() {
        let acl = crate::AclEntry {
            principal: "a".into(),
            operation: crate::Operation::Admin,
            resource: crate::ResourcePattern::Cluster,
        };
        for change in [
            MetadataChange::CreateTopic(TopicSpec::new("t")),
            MetadataChange::DeleteTopic { name: "t".into() },
            MetadataChange::CreateSmartModule {
                name: "m".into(),
                wasm: vec![0, 1],
            },
            MetadataChange::DeleteSmartModule { name: "m".into() },
            MetadataChange::UnregisterNode { id: 3 },
            MetadataChange::ReassignPartition {
                topic: "t".into(),
                partition: 1,
                replicas: vec![1, 2],
            },
            MetadataChange::AddAcl(acl.clone()),
            MetadataChange::RemoveAcl(acl),
        ] {
            let request = change.clone().into_request();
            assert!(request.is_metadata_change());
            assert_eq!(request.name(), change.name());
            assert_eq!(request.into_metadata_change(), Ok(change.clone()));
            let once = Request::Once { id: [1, 2], change };
            assert_eq!(decode::<Request>(&encode(&once).unwrap()).unwrap(), once);
        }
        assert_eq!(Request::ListTopics.once(), Request::ListTopics);
    }

    /// A frame of 100,000 `Once` prefixes (as nested `Once`s were encoded
    /// when one could carry another; the attack overflowed a worker's
    /// stack) is refused at the second prefix: a `Once` carries a change,
    /// and no change is a `Once`.
    #[test]
    fn repeated_once_prefixes_are_refused_without_recursing() {
        let framed = encode(&Request::Once {
            id: [0, 0],
            change: MetadataChange::DeleteTopic { name: "t".into() },
        })
        .unwrap();
        let change =
            crate::encoding::to_vec(&MetadataChange::DeleteTopic { name: "t".into() }).unwrap();
        let prefix = framed[2..framed.len() - change.len()].to_vec();
        let mut frame = framed[..2].to_vec();
        for _ in 0..100_000 {
            frame.extend_from_slice(&prefix);
        }
        frame.extend_from_slice(&change);
        let err = decode::<Request>(&frame).unwrap_err().to_string();
        // The second prefix's tag is read as a change's and is none.
        assert!(err.contains("expected variant index"), "{err}");
    }
}
