//! One valid value of every message kind, shared by the fuzz targets (as
//! seeds) and the golden files (as samples).
#![allow(dead_code)]

use sluice_proto::*;

pub fn record(i: u8) -> Record {
    Record {
        key: i.is_multiple_of(2).then(|| vec![i; 3]),
        value: vec![i; 5],
        timestamp_ms: i64::from(i) * 1_000,
        headers: Vec::new(),
    }
}

pub fn spec() -> TopicSpec {
    TopicSpec {
        retention_ms: Some(60_000),
        retention_bytes: Some(1 << 20),
        ..TopicSpec::new("orders")
    }
}

pub fn fetch() -> FetchRequest {
    FetchRequest {
        topic: "orders".into(),
        partition: 1,
        start: StartOffset::Absolute(7),
        end_offset: Some(u64::MAX),
        max_records: Some(10),
        follow: true,
        max_bytes: 1 << 20,
        read_from: ReadFrom::Follower,
        replica: Some(2),
        smartmodules: vec![
            SmartModuleInvocation {
                module: SmartModuleSource::Registered("redact".into()),
                kind: Some(SmartModuleKind::Map),
                params: [("k".to_string(), "v".to_string())].into(),
                initial: Some(vec![1, 2]),
            },
            SmartModuleInvocation {
                module: SmartModuleSource::AdHoc {
                    name: "mine".into(),
                    wasm: b"\0asm\x01\0\0\0".to_vec(),
                },
                kind: None,
                params: Default::default(),
                initial: None,
            },
        ],
    }
}

pub fn acl() -> AclEntry {
    AclEntry {
        principal: "alice".into(),
        operation: Operation::Consume,
        resource: ResourcePattern::TopicPrefix("ord".into()),
    }
}

pub fn requests() -> Vec<Request> {
    vec![
        Request::ClusterStatus,
        Request::CreateTopic(spec()),
        Request::DeleteTopic { name: "t".into() },
        Request::ListTopics,
        Request::DescribeTopic { name: "t".into() },
        Request::ListPartitions {
            topic: Some("t".into()),
        },
        Request::Produce(ProduceRequest {
            topic: "orders".into(),
            partition: 0,
            records: (0..4).map(record).collect(),
            producer: Some(ProducerSeq {
                producer_id: u64::MAX,
                sequence: 3,
            }),
        }),
        // Every width of varint: lengths of 300 and 70,000 bytes, negative
        // and extreme timestamps, the largest producer id.
        Request::Produce(ProduceRequest {
            topic: "wide".into(),
            partition: u32::MAX,
            records: vec![
                Record {
                    key: Some(vec![0xfb; 300]),
                    value: vec![7; 70_000],
                    timestamp_ms: -5,
                    headers: Vec::new(),
                },
                Record {
                    key: None,
                    value: Vec::new(),
                    timestamp_ms: i64::MIN,
                    headers: Vec::new(),
                },
                Record {
                    key: None,
                    value: vec![0xff],
                    timestamp_ms: i64::MAX,
                    headers: Vec::new(),
                },
            ],
            producer: Some(ProducerSeq {
                producer_id: 1 << 40,
                sequence: 65_536,
            }),
        }),
        Request::Fetch(fetch()),
        Request::Raft(RaftRpc {
            group: 9,
            kind: RaftRpcKind::AppendEntries,
            payload: vec![0, 1, 2, 3, 0xfb],
        }),
        Request::CreateSmartModule {
            name: "m".into(),
            wasm: b"\0asm\x01\0\0\0".to_vec(),
        },
        Request::JoinCluster {
            id: 4,
            addr: "127.0.0.1:9003".into(),
            incarnation: "abc".into(),
        },
        Request::ReassignPartition {
            topic: "t".into(),
            partition: 1,
            replicas: vec![1, 2, 3],
        },
        Request::Once {
            id: [1, u64::MAX],
            change: MetadataChange::CreateTopic(spec()),
        },
        Request::ReadReplicaLog {
            group: 3,
            from_offset: 100,
            max_bytes: 1 << 20,
        },
        Request::AddAcl(acl()),
        Request::Once {
            id: [300, 70_000],
            change: MetadataChange::RemoveAcl(acl()),
        },
        Request::ListAcls,
    ]
}

pub fn responses() -> Vec<Response> {
    let info = TopicInfo {
        spec: spec(),
        created_ms: 5,
        assignments: vec![PartitionAssignment {
            partition: 0,
            replicas: vec![1, 2],
        }],
    };
    vec![
        Response::Error(WireError::Denied {
            principal: "alice".into(),
            operation: Operation::Produce,
            resource: ResourcePattern::Topic("t".into()),
        }),
        Response::Error(WireError::OffsetOutOfRange {
            topic: "t".into(),
            partition: 0,
            requested: 9,
            start: 0,
            end: 3,
        }),
        Response::Topics(vec![info.clone()]),
        Response::Records {
            records: (0..3)
                .map(|i| ConsumerRecord {
                    partition: 0,
                    offset: u64::from(i),
                    key: Some(vec![i]),
                    value: vec![i; 4],
                    timestamp_ms: 1,
                    headers: Vec::new(),
                })
                .collect(),
            high_watermark: 3,
        },
        Response::FetchStarted {
            partition: 0,
            start_offset: 0,
            end_offset: 9,
        },
        Response::Produced(ProduceResponse {
            partition: 0,
            base_offset: 10,
            record_count: 2,
        }),
        Response::ReplicaLog {
            start_offset: 0,
            batches: vec![serde_bytes::ByteBuf::from(vec![1, 2, 3])],
        },
        Response::Acls(vec![acl()]),
        Response::TopicCreated(info),
    ]
}

/// Records with headers, and the messages that carry them (added after the
/// samples above, whose encodings are fixed by golden files).
pub fn records_with_headers() -> Vec<Record> {
    vec![
        record(1)
            .header("traceparent", "00-4bf92f35-01")
            .header("empty", ""),
        record(2),
        Record {
            timestamp_ms: 1_700_000_000_000,
            ..Record::new(vec![0xff; 3]).header("bin", vec![0, 1, 2, 250, 251, 255])
        },
    ]
}

pub fn requests_with_headers() -> Vec<Request> {
    let records = records_with_headers();
    let encoded = sluice_proto::encoding::to_vec(&records).unwrap();
    vec![Request::ProduceWithHeaders(
        sluice_proto::CompressedProduce {
            topic: "headed".into(),
            partition: 1,
            compression: sluice_proto::Compression::None,
            records: encoded,
            producer: Some(sluice_proto::ProducerSeq {
                producer_id: 5,
                sequence: 6,
            }),
        },
    )]
}

pub fn responses_with_headers() -> Vec<Response> {
    let records = records_with_headers()
        .into_iter()
        .enumerate()
        .map(|(i, r)| ConsumerRecord {
            partition: 1,
            offset: 40 + i as u64,
            key: r.key,
            value: r.value,
            timestamp_ms: r.timestamp_ms,
            headers: r.headers,
        })
        .collect();
    vec![Response::RecordsWithHeaders {
        records,
        high_watermark: 43,
    }]
}
