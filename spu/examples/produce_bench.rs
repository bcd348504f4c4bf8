//! Produce throughput, request latency and fsyncs of one node, measured
//! in-process over real QUIC (the node and the client share the process, not
//! the code path). Figures, not assertions.
//!
//! ```sh
//! cargo run --release -p sluice-spu --example produce_bench -- \
//!     --records 200000 --batch 100 --concurrency 8 --size 1024
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use sluice_client::Client;
use sluice_proto::{Record, TopicSpec};
use sluice_spu::{Node, NodeConfig};
use sluice_transport::ClusterCa;

struct Args {
    records: usize,
    batch: usize,
    concurrency: usize,
    size: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        records: 100_000,
        batch: 100,
        concurrency: 8,
        size: 1024,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value: usize = it
            .next()
            .and_then(|v| v.parse().ok())
            .expect("flags take a number");
        match flag.as_str() {
            "--records" => a.records = value,
            "--batch" => a.batch = value,
            "--concurrency" => a.concurrency = value,
            "--size" => a.size = value,
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args();
    let dir = tempfile::tempdir()?;
    let ca = ClusterCa::generate("bench")?;
    ca.issue_node(1, &[], &[IpAddr::V4(Ipv4Addr::LOCALHOST)])?
        .save(dir.path().join("tls"), "node")?;
    std::fs::write(dir.path().join("tls/ca.pem"), ca.cert_pem())?;
    let config = NodeConfig {
        id: 1,
        cluster_id: "bench".into(),
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse()?,
        advertised: None,
        require_client_cert: true,
        super_users: sluice_spu::default_super_users(),
        retention_check_secs: 3600,
        metrics_listen: None,
        quiesce_idle_groups: true,
        quiesce_idle_ms: None,
        quiesce_probe_ms: None,
        skip_heartbeats_under_writes: true,
        append_streams: true,
        audit_topic: true,
        read_only: false,
        seed_topics: Vec::new(),
        controller_voters: 1,
        peers: Vec::new(),
        join: None,
    };
    let node = Node::start(config).await?;
    let addr = node.local_addr()?;
    let admin = ca.issue_client("admin")?;
    let client = Client::connect(&addr.to_string(), ca.cert_pem(), Some(admin)).await?;
    client.create_topic(TopicSpec::new("bench")).await?;

    let value = vec![b'x'; args.size];
    let batches = args.records.div_ceil(args.batch);
    let fsyncs_before = node.fsync_count();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..args.concurrency {
        let (client, value) = (client.clone(), value.clone());
        let (batch, concurrency) = (args.batch, args.concurrency);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut seq = 0u64;
            for _ in (worker..batches).step_by(concurrency) {
                let records: Vec<Record> = (0..batch)
                    .map(|_| {
                        // Unique, so the check below can find losses and duplicates.
                        let mut v = value.clone();
                        let id = format!("{worker}-{seq}");
                        seq += 1;
                        v[..id.len()].copy_from_slice(id.as_bytes());
                        Record::new(v)
                    })
                    .collect();
                let t = Instant::now();
                client.produce("bench", 0, records).await?;
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = started.elapsed();
    let fsyncs = node.fsync_count() - fsyncs_before;
    latencies.sort();
    let records = batches * args.batch;
    let secs = elapsed.as_secs_f64();
    println!(
        "records={records} size={}B batch={} concurrency={} elapsed={:.2}s",
        args.size, args.batch, args.concurrency, secs
    );
    println!(
        "throughput: {:.0} records/s, {:.1} MB/s",
        records as f64 / secs,
        (records * args.size) as f64 / secs / 1e6
    );
    println!(
        "ack latency per request: p50={:.2?} p99={:.2?} max={:.2?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().unwrap()
    );
    println!(
        "WAL fsyncs: {fsyncs} ({:.0}/s), records per fsync: {:.1}",
        fsyncs as f64 / secs,
        records as f64 / fsyncs.max(1) as f64
    );
    verify(&client, records).await?;
    client.close().await;
    node.shutdown().await;
    // As `sluice node run` does: skip RocksDB's static destructors at exit.
    // SAFETY: everything is flushed; nothing after this runs.
    unsafe { libc::_exit(0) }
}

/// Reads the partition back: every acknowledged record exactly once, offsets contiguous.
async fn verify(client: &Client, expected: usize) -> anyhow::Result<()> {
    let mut stream = client
        .fetch(sluice_proto::FetchRequest {
            topic: "bench".into(),
            partition: 0,
            start: sluice_proto::StartOffset::Beginning,
            end_offset: None,
            max_records: None,
            follow: false,
            max_bytes: 1 << 20,
            read_from: sluice_proto::ReadFrom::Leader,
            replica: None,
            smartmodules: Vec::new(),
        })
        .await?;
    let mut seen = std::collections::HashSet::new();
    let mut next = 0;
    while let Some(batch) = stream.next_batch().await? {
        for r in batch {
            anyhow::ensure!(
                r.offset == next,
                "offset gap: expected {next}, got {}",
                r.offset
            );
            next += 1;
            let id = r
                .value
                .split(|b| *b == b'x')
                .next()
                .unwrap_or_default()
                .to_vec();
            anyhow::ensure!(seen.insert(id), "duplicate record at offset {}", r.offset);
        }
    }
    anyhow::ensure!(
        seen.len() == expected,
        "read {} records, produced {expected}",
        seen.len()
    );
    println!("verified: {expected} records, each once, offsets 0..{next} contiguous");
    Ok(())
}
