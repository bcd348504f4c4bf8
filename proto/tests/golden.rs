//! The wire format held still: frames of every message kind as an earlier
//! build wrote them (`tests/golden/`) must decode to the same messages and
//! be written again byte for byte (see `sluice_fuzzing::golden`).

mod samples;

use sluice_proto::{Request, Response, codec};

#[test]
fn golden_request_frames() {
    sluice_fuzzing::golden::check(
        env!("CARGO_MANIFEST_DIR"),
        "requests",
        &samples::requests(),
        |r| codec::encode(r).unwrap(),
        |b| codec::decode::<Request>(b).map_err(|e| e.to_string()),
    );
}

#[test]
fn golden_response_frames() {
    sluice_fuzzing::golden::check(
        env!("CARGO_MANIFEST_DIR"),
        "responses",
        &samples::responses(),
        |r| codec::encode(r).unwrap(),
        |b| codec::decode::<Response>(b).map_err(|e| e.to_string()),
    );
}

/// Requests added since `requests.bin` was written, in a file of their own.
#[test]
fn golden_topic_placement_requests() {
    use sluice_proto::{PartitionAssignment, TopicSpec};
    let spec = TopicSpec {
        partitions: 1,
        replication: 2,
        ..TopicSpec::new("placed")
    };
    let assignments = vec![PartitionAssignment {
        partition: 0,
        replicas: vec![3, 1],
    }];
    let requests = [
        Request::CreateTopicAssigned {
            spec: spec.clone(),
            assignments: assignments.clone(),
        },
        Request::CreateTopicAssigned { spec, assignments }.once(),
    ];
    // `once` draws a random request id: fixed here so the bytes are stable.
    let requests = requests.map(|r| match r {
        Request::Once { change, .. } => Request::Once { id: [7, 8], change },
        other => other,
    });
    sluice_fuzzing::golden::check(
        env!("CARGO_MANIFEST_DIR"),
        "requests-placement",
        &requests,
        |r| codec::encode(r).unwrap(),
        |b| codec::decode::<Request>(b).map_err(|e| e.to_string()),
    );
}

/// Requests and answers of topic settings and compressed produce, added
/// since, in files of their own.
#[test]
fn golden_topic_settings_and_compressed_produce() {
    use sluice_proto::{
        CompressedProduce, Compression, PartitionAssignment, ProducerSeq, TopicCompression,
        TopicSettingsV1, TopicSpec,
    };
    let settings = TopicSettingsV1 {
        compression: TopicCompression::Zstd,
    };
    let requests = [
        Request::CreateTopicWith {
            spec: TopicSpec::new("zipped"),
            assignments: None,
            settings,
        },
        Request::CreateTopicWith {
            spec: TopicSpec::new("placed"),
            assignments: Some(vec![PartitionAssignment {
                partition: 0,
                replicas: vec![2],
            }]),
            settings,
        },
        Request::Once {
            id: [9, 10],
            change: sluice_proto::MetadataChange::CreateTopicWith {
                spec: TopicSpec::new("once"),
                assignments: None,
                settings,
            },
        },
        Request::DescribeTopicSettings {
            name: "zipped".into(),
        },
        Request::ProduceCompressed(CompressedProduce {
            topic: "zipped".into(),
            partition: 3,
            compression: Compression::Lz4,
            records: vec![1, 2, 3, 4],
            producer: Some(ProducerSeq {
                producer_id: 77,
                sequence: 5,
            }),
        }),
    ];
    sluice_fuzzing::golden::check(
        env!("CARGO_MANIFEST_DIR"),
        "requests-settings",
        &requests,
        |r| codec::encode(r).unwrap(),
        |b| codec::decode::<Request>(b).map_err(|e| e.to_string()),
    );
    let responses: Vec<Response> = TopicCompression::ALL
        .into_iter()
        .map(|compression| Response::TopicSettings(TopicSettingsV1 { compression }))
        .collect();
    sluice_fuzzing::golden::check(
        env!("CARGO_MANIFEST_DIR"),
        "responses-settings",
        &responses,
        |r| codec::encode(r).unwrap(),
        |b| codec::decode::<Response>(b).map_err(|e| e.to_string()),
    );
}

/// A fetch with options (look back), added since, in a file of its own.
#[test]
fn golden_fetch_with_options() {
    use sluice_proto::{FetchOption, Lookback};
    let requests = [
        Request::FetchWith {
            fetch: samples::fetch(),
            options: vec![FetchOption::Lookback(Lookback {
                last: 10,
                age_ms: None,
            })],
        },
        Request::FetchWith {
            fetch: samples::fetch(),
            options: vec![FetchOption::Lookback(Lookback {
                last: 0,
                age_ms: Some(3_600_000),
            })],
        },
    ];
    sluice_fuzzing::golden::check(
        env!("CARGO_MANIFEST_DIR"),
        "requests-fetch-options",
        &requests,
        |r| codec::encode(r).unwrap(),
        |b| codec::decode::<Request>(b).map_err(|e| e.to_string()),
    );
}

/// Consumer offsets kept by the partitions' own groups: a member's commit
/// with its generation, and the requests between nodes that fence, list
/// and forget them, added since, in files of their own.
#[test]
fn golden_partition_offsets() {
    use sluice_proto::{ConsumerOffset, LedPartitionOffsets, OffsetCommit};
    let commit = OffsetCommit {
        consumer: "g".into(),
        topic: "t".into(),
        partition: 2,
        offset: 42,
        session: 7,
        sequence: 3,
        state: Some(vec![1, 2, 3]),
        member: Some("m1".into()),
    };
    let requests = [
        Request::CommitOffsetAt {
            commit,
            generation: 5,
        },
        Request::FenceConsumer {
            consumer: "g".into(),
            topic: "t".into(),
            partition: 2,
            generation: 6,
        },
        Request::LeaderConsumers {
            consumer: Some("g".into()),
            topic: None,
        },
        Request::ForgetConsumer {
            consumer: "g".into(),
            topic: Some("t".into()),
        },
    ];
    sluice_fuzzing::golden::check(
        env!("CARGO_MANIFEST_DIR"),
        "requests-partition-offsets",
        &requests,
        |r| codec::encode(r).unwrap(),
        |b| codec::decode::<Request>(b).map_err(|e| e.to_string()),
    );
    let responses = [
        Response::ConsumerFenced {
            offset: Some(42),
            state: Some(serde_bytes::ByteBuf::from(vec![9])),
        },
        Response::ConsumerFenced {
            offset: None,
            state: None,
        },
        Response::LeaderConsumers(vec![LedPartitionOffsets {
            topic: "t".into(),
            partition: 2,
            term: 3,
            applied_index: 99,
            offsets: vec![ConsumerOffset {
                consumer: "g".into(),
                topic: "t".into(),
                partition: 2,
                offset: Some(42),
                committed_ms: 1_700_000_000_000,
                state: None,
                owner: None,
            }],
        }]),
        Response::ConsumerForgotten {
            partitions: vec![("t".into(), 0), ("t".into(), 2)],
            forgotten: 1,
        },
    ];
    sluice_fuzzing::golden::check(
        env!("CARGO_MANIFEST_DIR"),
        "responses-partition-offsets",
        &responses,
        |r| codec::encode(r).unwrap(),
        |b| codec::decode::<Response>(b).map_err(|e| e.to_string()),
    );
}

/// Records with headers: the produce request and the fetch response that
/// carry them, added since, in files of their own.
#[test]
fn golden_record_headers() {
    sluice_fuzzing::golden::check(
        env!("CARGO_MANIFEST_DIR"),
        "requests-headers",
        &samples::requests_with_headers(),
        |r| codec::encode(r).unwrap(),
        |b| codec::decode::<Request>(b).map_err(|e| e.to_string()),
    );
    sluice_fuzzing::golden::check(
        env!("CARGO_MANIFEST_DIR"),
        "responses-headers",
        &samples::responses_with_headers(),
        |r| codec::encode(r).unwrap(),
        |b| codec::decode::<Response>(b).map_err(|e| e.to_string()),
    );
}

/// The Raft RPC kinds added after `requests.bin` was written (quiescence's,
/// the per-pair probe and heartbeat batches), in a file of their own: each
/// variant's place in the enum is its encoding, so one inserted before them
/// would make an older node misread them.
#[test]
fn golden_raft_rpc_kinds() {
    use sluice_proto::{RaftRpc, RaftRpcKind};
    let requests = [
        RaftRpcKind::Quiesce,
        RaftRpcKind::LeaderProbe,
        RaftRpcKind::CommitWanted,
        RaftRpcKind::PeerProbe,
        RaftRpcKind::Batch,
    ]
    .map(|kind| {
        Request::Raft(RaftRpc {
            group: 4_294_967_377,
            kind,
            payload: vec![1, 2, 3],
        })
    });
    sluice_fuzzing::golden::check(
        env!("CARGO_MANIFEST_DIR"),
        "requests-raft-kinds",
        &requests,
        |r| codec::encode(r).unwrap(),
        |b| codec::decode::<Request>(b).map_err(|e| e.to_string()),
    );
}

/// The opening of a Raft append stream (pipelined replication), added
/// after the kinds above, in a file of its own.
#[test]
fn golden_raft_append_stream_kind() {
    use sluice_proto::{RaftRpc, RaftRpcKind};
    let requests = [Request::Raft(RaftRpc {
        group: 4_294_967_377,
        kind: RaftRpcKind::AppendStream,
        payload: Vec::new(),
    })];
    sluice_fuzzing::golden::check(
        env!("CARGO_MANIFEST_DIR"),
        "requests-raft-append-stream",
        &requests,
        |r| codec::encode(r).unwrap(),
        |b| codec::decode::<Request>(b).map_err(|e| e.to_string()),
    );
}

/// Topic settings in their second shape (key hash, system topics) and the
/// requests added with them, in files of their own.
#[test]
fn golden_topic_settings_v2() {
    use sluice_proto::{KeyHash, TopicCompression, TopicSettings, TopicSpec, WireError};
    let settings = TopicSettings {
        compression: TopicCompression::Lz4,
        key_hash: KeyHash::SipHash24,
        system: true,
    };
    let requests = [
        Request::CreateTopicV2 {
            spec: TopicSpec::new("audit"),
            assignments: None,
            settings: settings.clone(),
        },
        Request::Once {
            id: [11, 12],
            change: sluice_proto::MetadataChange::CreateTopicV2 {
                spec: TopicSpec::new("once"),
                assignments: None,
                settings: TopicSettings::for_new_topic(),
            },
        },
        Request::DescribeTopicSettingsV2 {
            name: "audit".into(),
        },
        Request::DeleteTopicForced {
            name: "audit".into(),
        },
        Request::Once {
            id: [13, 14],
            change: sluice_proto::MetadataChange::DeleteTopicForced {
                name: "audit".into(),
            },
        },
        Request::ListTopicsV2 { system: true },
        Request::ListPartitionsV2 {
            topic: None,
            system: true,
        },
    ];
    sluice_fuzzing::golden::check(
        env!("CARGO_MANIFEST_DIR"),
        "requests-settings-v2",
        &requests,
        |r| codec::encode(r).unwrap(),
        |b| codec::decode::<Request>(b).map_err(|e| e.to_string()),
    );
    let responses = [
        Response::TopicSettingsV2(settings),
        Response::TopicSettingsV2(TopicSettings::default()),
        Response::Error(WireError::SystemTopic {
            topic: "audit".into(),
        }),
    ];
    sluice_fuzzing::golden::check(
        env!("CARGO_MANIFEST_DIR"),
        "responses-settings-v2",
        &responses,
        |r| codec::encode(r).unwrap(),
        |b| codec::decode::<Response>(b).map_err(|e| e.to_string()),
    );
}

/// Connector requests and answers (`sluice connector create|list|logs|
/// delete`, and the node-to-node questions behind them).
#[test]
fn golden_connectors() {
    use sluice_proto::{
        ConnectorInfo, ConnectorRecord, ConnectorRuntime, ConnectorSpec, ConnectorTally,
        MetadataChange,
    };
    let spec = ConnectorSpec {
        name: "cat-facts".into(),
        config: "name: cat-facts\ntype: http\ntopic: cat-facts\n".into(),
    };
    let record = ConnectorRecord {
        spec: spec.clone(),
        node: 2,
        created_ms: 1_700_000_000_000,
        generation: 1,
    };
    let requests = [
        Request::CreateConnector(spec.clone()),
        Request::Once {
            id: [15, 16],
            change: MetadataChange::CreateConnector(spec),
        },
        Request::Once {
            id: [17, 18],
            change: MetadataChange::DeleteConnector {
                name: "cat-facts".into(),
            },
        },
        Request::DeleteConnector {
            name: "cat-facts".into(),
        },
        Request::ListConnectors { name: None },
        Request::ListConnectors {
            name: Some("cat-facts".into()),
        },
        Request::ConnectorLogs {
            name: "cat-facts".into(),
            max_bytes: 65_536,
        },
        Request::ConnectorsHere {
            names: vec!["cat-facts".into()],
        },
        Request::ConnectorLogsHere {
            name: "cat-facts".into(),
            max_bytes: 1024,
        },
    ];
    sluice_fuzzing::golden::check(
        env!("CARGO_MANIFEST_DIR"),
        "requests-connectors",
        &requests,
        |r| codec::encode(r).unwrap(),
        |b| codec::decode::<Request>(b).map_err(|e| e.to_string()),
    );
    let runtime = ConnectorRuntime {
        name: "cat-facts".into(),
        state: "running".into(),
        pid: 4242,
        restarts: 3,
        started_ms: 1_700_000_000_500,
        last_exit: Some("exit status: 1; its last line: cannot connect".into()),
        tally: ConnectorTally {
            polls: 10,
            records_in: 9,
            records_out: 7,
            dropped: 2,
            failures: 1,
            lag: Some(5),
            updated_ms: 1_700_000_001_000,
        },
    };
    let responses = [
        Response::ConnectorCreated(record.clone()),
        Response::ConnectorDeleted,
        Response::Connectors(vec![
            ConnectorInfo {
                record: record.clone(),
                runtime: Some(runtime.clone()),
            },
            ConnectorInfo {
                record,
                runtime: None,
            },
        ]),
        Response::ConnectorLogs {
            text: "connector cat-facts: 1 poll(s)\n".into(),
        },
        Response::ConnectorsHere(vec![runtime]),
    ];
    sluice_fuzzing::golden::check(
        env!("CARGO_MANIFEST_DIR"),
        "responses-connectors",
        &responses,
        |r| codec::encode(r).unwrap(),
        |b| codec::decode::<Response>(b).map_err(|e| e.to_string()),
    );
}

/// Conditional appends (`Request::ProduceAt`, a derived topic's writes) and
/// their refusal.
#[test]
fn golden_produce_at() {
    use sluice_proto::{CompressedProduce, Compression, ProduceResponse, WireError};
    let records = vec![sluice_proto::Record {
        timestamp_ms: 1_700_000_000_000,
        ..sluice_proto::Record::new(b"A CAT".to_vec()).header("sluice-source-offset", "7")
    }];
    let requests = [Request::ProduceAt {
        batch: CompressedProduce {
            topic: "b".into(),
            partition: 1,
            compression: Compression::None,
            records: sluice_proto::encoding::to_vec(&records).unwrap(),
            producer: None,
        },
        expected_offset: 41,
    }];
    sluice_fuzzing::golden::check(
        env!("CARGO_MANIFEST_DIR"),
        "requests-produce-at",
        &requests,
        |r| codec::encode(r).unwrap(),
        |b| codec::decode::<Request>(b).map_err(|e| e.to_string()),
    );
    let responses = [
        Response::Produced(ProduceResponse {
            partition: 1,
            base_offset: 41,
            record_count: 1,
        }),
        Response::Error(WireError::NotAtOffset {
            topic: "b".into(),
            partition: 1,
            expected_offset: 41,
            end_offset: 42,
        }),
    ];
    sluice_fuzzing::golden::check(
        env!("CARGO_MANIFEST_DIR"),
        "responses-produce-at",
        &responses,
        |r| codec::encode(r).unwrap(),
        |b| codec::decode::<Response>(b).map_err(|e| e.to_string()),
    );
}
