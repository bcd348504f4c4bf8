//! Micro-benchmarks of the partition log: appending batches and reading a log
//! back sequentially, in a temporary directory.
//!
//! Nothing here fsyncs: `append` writes into the page cache (the caller's
//! replicated log is what makes a write durable), `sync` is never called and
//! segments never roll (rolling fsyncs the closed segment). The figures are
//! the cost of encoding, CRC, index upkeep and the `write`/`pread` syscalls,
//! not of the disk.
//!
//! ```sh
//! cargo bench -p sluice-storage --bench segment
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use sluice_proto::Record;
use sluice_storage::{LogConfig, PartitionLog};
use tempfile::TempDir;

/// Records per appended batch.
const BATCH: usize = 100;
/// Value sizes (records carry no key).
const SIZES: [(usize, &str); 2] = [(100, "100B"), (1024, "1KiB")];
/// Records in the log the read benchmark scans.
const PREFILLED: u64 = 100_000;
/// Bytes per `read` call, as a fetch asks for.
const READ_BYTES: usize = 1 << 20;
/// The append benchmark starts a new log once this much was written, to keep
/// the temporary directory (and the page cache) small; the reset is not timed.
const APPEND_LOG_BYTES_MAX: u64 = 64 << 20;

fn batch(size: usize) -> Vec<Record> {
    (0..BATCH)
        .map(|i| Record {
            key: None,
            value: (0..size).map(|j| b'a' + ((i + j) % 26) as u8).collect(),
            timestamp_ms: 1_700_000_000_000 + i as i64,
            headers: Vec::new(),
        })
        .collect()
}

/// A new, empty log in a new temporary directory (dropped with it).
fn new_log() -> (TempDir, PartitionLog) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = PartitionLog::open(dir.path(), 0, LogConfig::default()).expect("open log");
    (dir, log)
}

fn bench_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("log/append_batch_of_100");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (size, label) in SIZES {
        let records = batch(size);
        group.bench_with_input(
            BenchmarkId::from_parameter(label),
            &records,
            |b, records| {
                b.iter_custom(|iters| {
                    let mut timed = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        // Untimed: a fresh log for each run of appends.
                        let (dir, mut log) = new_log();
                        let mut entry_id = 0u64;
                        let started = Instant::now();
                        while left > 0 && log.size_bytes() < APPEND_LOG_BYTES_MAX {
                            entry_id += 1;
                            left -= 1;
                            black_box(log.append(entry_id, black_box(records)).expect("append"));
                        }
                        timed += started.elapsed();
                        drop((log, dir));
                    }
                    timed
                })
            },
        );
    }
    group.finish();
}

fn bench_read(c: &mut Criterion) {
    let mut group = c.benchmark_group("log/read_all_100k_by_1MiB");
    // One iteration reads the whole log: a few tens of ms, so every sample runs
    // the same number of iterations instead of criterion's linear ramp.
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(PREFILLED));
    for (size, label) in SIZES {
        let (_dir, mut log) = new_log();
        let records = batch(size);
        for entry_id in 1..=PREFILLED / BATCH as u64 {
            log.append(entry_id, &records).expect("append");
        }
        assert_eq!(log.end_offset(), PREFILLED);
        group.bench_with_input(BenchmarkId::from_parameter(label), &log, |b, log| {
            b.iter(|| {
                let mut from = log.start_offset();
                let mut read = 0usize;
                while from < log.end_offset() {
                    let out = log.read(from, READ_BYTES).expect("read");
                    from = out
                        .last()
                        .expect("a read below the end returns records")
                        .offset
                        + 1;
                    read += out.len();
                    black_box(out);
                }
                assert_eq!(read as u64, PREFILLED);
            })
        });
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
    targets = bench_append, bench_read
}
criterion_main!(benches);
