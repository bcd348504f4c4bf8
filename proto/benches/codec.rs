//! Micro-benchmarks of the one codec: encoding and decoding the two frames that
//! carry records (a produce request and a fetch response), 100 records each.
//!
//! ```sh
//! cargo bench -p sluice-proto --bench codec
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice_proto::codec::{decode, encode};
use sluice_proto::{ConsumerRecord, ProduceRequest, Record, Request, Response};

/// Records per frame.
const RECORDS: usize = 100;
/// Value sizes (records carry no key): a small event and a typical 1 KiB record.
const SIZES: [(usize, &str); 2] = [(100, "100B"), (1024, "1KiB")];
/// A fixed timestamp so every run encodes the same bytes.
const TIMESTAMP_MS: i64 = 1_700_000_000_000;

/// A value of `size` bytes that is not all one byte (varied but deterministic).
fn value(size: usize, seed: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + ((i + seed) % 26) as u8).collect()
}

fn produce_request(size: usize) -> Request {
    let records = (0..RECORDS)
        .map(|i| Record {
            key: None,
            value: value(size, i),
            timestamp_ms: TIMESTAMP_MS + i as i64,
            headers: Vec::new(),
        })
        .collect();
    Request::Produce(ProduceRequest {
        topic: "bench-topic".into(),
        partition: 3,
        records,
        producer: None,
    })
}

fn records_response(size: usize) -> Response {
    let records = (0..RECORDS)
        .map(|i| ConsumerRecord {
            partition: 3,
            offset: 1_000_000 + i as u64,
            key: None,
            value: value(size, i),
            timestamp_ms: TIMESTAMP_MS + i as i64,
            headers: Vec::new(),
        })
        .collect();
    Response::Records {
        records,
        high_watermark: 1_000_000 + RECORDS as u64,
    }
}

fn bench_produce(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec/produce_request");
    group.throughput(Throughput::Elements(RECORDS as u64));
    for (size, label) in SIZES {
        let request = produce_request(size);
        let frame = encode(&request).expect("encode");
        group.bench_with_input(BenchmarkId::new("encode", label), &request, |b, req| {
            b.iter(|| encode(black_box(req)).expect("encode"))
        });
        group.bench_with_input(BenchmarkId::new("decode", label), &frame, |b, frame| {
            b.iter(|| decode::<Request>(black_box(frame)).expect("decode"))
        });
        assert_eq!(decode::<Request>(&frame).expect("decode"), request);
    }
    group.finish();
}

fn bench_records(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec/records_response");
    group.throughput(Throughput::Elements(RECORDS as u64));
    for (size, label) in SIZES {
        let response = records_response(size);
        let frame = encode(&response).expect("encode");
        group.bench_with_input(BenchmarkId::new("encode", label), &response, |b, resp| {
            b.iter(|| encode(black_box(resp)).expect("encode"))
        });
        group.bench_with_input(BenchmarkId::new("decode", label), &frame, |b, frame| {
            b.iter(|| decode::<Response>(black_box(frame)).expect("decode"))
        });
        // What a consumer does: the records read where the frame holds them.
        group.bench_with_input(
            BenchmarkId::new("decode_in_place", label),
            &frame,
            |b, frame| {
                b.iter(|| {
                    sluice_proto::codec::decode_records_ref(black_box(frame))
                        .expect("decode")
                        .expect("records")
                        .0
                        .len()
                })
            },
        );
        assert_eq!(decode::<Response>(&frame).expect("decode"), response);
    }
    group.finish();
}

/// Short runs: the whole suite should finish in a couple of minutes.
fn short() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = short();
    targets = bench_produce, bench_records
}
criterion_main!(benches);
