//! Every message a node or client decodes from a peer, fed mutated frames
//! for a bounded time (see `sluice-fuzzing`): no input panics, hangs or
//! allocates beyond what the frame holds.

use sluice_proto::*;

fn record(i: u8) -> Record {
    Record {
        key: i.is_multiple_of(2).then(|| vec![i; 3]),
        value: vec![i; 5],
        timestamp_ms: i64::from(i) * 1_000,
    }
}

fn spec() -> TopicSpec {
    TopicSpec {
        retention_ms: Some(60_000),
        retention_bytes: Some(1 << 20),
        ..TopicSpec::new("orders")
    }
}

fn fetch() -> FetchRequest {
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

fn acl() -> AclEntry {
    AclEntry {
        principal: "alice".into(),
        operation: Operation::Consume,
        resource: ResourcePattern::TopicPrefix("ord".into()),
    }
}

fn requests() -> Vec<Request> {
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
        Request::CreateTopic(spec()).once(),
        Request::ReadReplicaLog {
            group: 3,
            from_offset: 100,
            max_bytes: 1 << 20,
        },
        Request::AddAcl(acl()),
        Request::RemoveAcl(acl()).once(),
        Request::ListAcls,
    ]
}

fn responses() -> Vec<Response> {
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

#[test]
fn fuzz_requests() {
    let seeds: Vec<Vec<u8>> = requests()
        .iter()
        .map(|r| codec::encode(r).unwrap())
        .collect();
    sluice_fuzzing::run("proto::Request", &seeds, |frame| {
        if let Ok(request) = codec::decode::<Request>(frame) {
            // Whatever decodes re-encodes, and to a frame that decodes alike.
            let again = codec::encode(&request).unwrap();
            assert_eq!(codec::decode::<Request>(&again).unwrap(), request);
        }
    });
}

#[test]
fn fuzz_responses() {
    let seeds: Vec<Vec<u8>> = responses()
        .iter()
        .map(|r| codec::encode(r).unwrap())
        .collect();
    sluice_fuzzing::run("proto::Response", &seeds, |frame| {
        let owned = codec::decode::<Response>(frame);
        // The borrowing decoder of record frames agrees with the owned one.
        if let Ok(Some((records, high_watermark))) = codec::decode_records_ref(frame) {
            match owned {
                Ok(Response::Records {
                    records: owned_records,
                    high_watermark: owned_hw,
                }) => {
                    assert_eq!(high_watermark, owned_hw);
                    assert_eq!(records.len(), owned_records.len());
                }
                other => panic!("decode_records_ref accepted what decode read as {other:?}"),
            }
        }
    });
}
