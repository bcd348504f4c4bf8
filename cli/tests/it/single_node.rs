//! Durability and delivery on one node.

use std::time::Duration;

use crate::harness::{Env, last_segment, lines};

#[test]
fn sigkill_after_acknowledged_produce_loses_nothing() {
    let env = Env::started();
    env.ok(&["topic", "create", "events"]);
    let input = lines(10_000, "event");
    env.ok_with_input(&["produce", "events"], input.as_bytes());
    env.kill_node();
    env.start();
    let consumed = env.ok(&["consume", "events", "-B", "-d"]);
    assert_eq!(
        consumed, input,
        "after SIGKILL and restart the log must hold exactly the acknowledged records"
    );
}

#[test]
fn corrupt_segment_tail_is_repaired_without_losing_acknowledged_records() {
    let env = Env::started();
    env.ok(&["topic", "create", "orders"]);
    let input = lines(2_000, "order");
    env.ok_with_input(&["produce", "orders"], input.as_bytes());
    env.kill_node();

    // Flip a byte inside the last batch and leave a torn half-written batch after it.
    let segment = last_segment(&env.partition_dir("orders"));
    let mut bytes = std::fs::read(&segment).unwrap();
    let len = bytes.len();
    bytes[len - 10] ^= 0xff;
    bytes.extend_from_slice(b"SLB\x01torn-write");
    std::fs::write(&segment, &bytes).unwrap();

    env.start();
    let consumed = env.ok(&["consume", "orders", "-B", "-d"]);
    assert_eq!(consumed, input);
    let log = std::fs::read_to_string(env.node_dir().join("node.log")).unwrap();
    assert!(
        log.contains("repaired a torn or corrupt segment tail"),
        "the repair is logged:\n{log}"
    );
    assert!(
        log.contains(&segment.display().to_string()),
        "the log names the file"
    );
}

#[test]
fn a_following_consumer_receives_a_record_produced_after_it_started() {
    let env = Env::started();
    env.ok(&["topic", "create", "live"]);
    env.ok_with_input(&["produce", "live"], b"first\n");
    let (mut consumer, rx) = env.follow(&["consume", "live", "-B"]);
    // The first record proves the consumer is connected and following.
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)).unwrap(), "first");
    env.ok_with_input(&["produce", "live"], b"second\n");
    let got = rx.recv_timeout(Duration::from_secs(10));
    consumer.kill().unwrap();
    consumer.wait().unwrap();
    assert_eq!(got.unwrap(), "second");
}

#[test]
fn topics_and_data_survive_shutdown_and_start() {
    let env = Env::started();
    env.ok(&["topic", "create", "keep", "-p", "2"]);
    env.ok_with_input(&["produce", "keep", "-p", "1"], b"a\nb\nc\n");
    env.ok(&["cluster", "shutdown"]);
    let err = env.fails(&["topic", "list"], b"");
    assert!(err.contains("sluice cluster start --local"), "{err}");

    env.start();
    let listed = env.ok(&["topic", "list"]);
    assert!(listed.contains("keep"), "{listed}");
    assert_eq!(
        env.ok(&["consume", "keep", "-p", "1", "-B", "-d"]),
        "a\nb\nc\n"
    );
    assert_eq!(env.ok(&["consume", "keep", "-p", "0", "-B", "-d"]), "");
    // New records continue at the next offset.
    env.ok_with_input(&["produce", "keep", "-p", "1"], b"d\n");
    assert_eq!(
        env.ok(&[
            "consume",
            "keep",
            "-p",
            "1",
            "-o",
            "3",
            "-d",
            "-F",
            "{{offset}}:{{value}}"
        ]),
        "3:d\n"
    );
    // Fluvio's spellings: `cluster resume` after a shutdown, `delete --force`.
    env.ok(&["cluster", "shutdown"]);
    env.ok(&["cluster", "resume"]);
    assert!(env.ok(&["topic", "list"]).contains("keep"));
    env.ok(&["cluster", "delete", "--force"]);
    let err = env.fails(&["cluster", "resume"], b"");
    assert!(err.contains("no local cluster"), "{err}");
}

#[test]
fn bench_reports_what_it_produced_and_consumed() {
    let env = Env::started();
    let produced: serde_json::Value = serde_json::from_str(&env.ok(&[
        "bench",
        "produce",
        "--records",
        "2000",
        "--record-size",
        "100",
        "--producers",
        "2",
        "--topic",
        "spread",
        "--partitions",
        "3",
        "-O",
        "json",
    ]))
    .unwrap();
    assert_eq!(produced["records"], 2000);
    // Every partition listed, the acknowledged records all counted, and
    // records without keys spread over all three.
    let spread = &produced["partitions"];
    let per_partition: Vec<u64> = ["0", "1", "2"]
        .iter()
        .map(|p| spread["records"][p].as_u64().unwrap())
        .collect();
    assert_eq!(per_partition.iter().sum::<u64>(), 2000, "{spread}");
    assert!(per_partition.iter().all(|n| *n > 0), "{spread}");
    let max_over_mean = spread["max_over_mean"].as_f64().unwrap();
    assert!((1.0..=3.0).contains(&max_over_mean), "{spread}");
    let consumed: serde_json::Value = serde_json::from_str(&env.ok(&[
        "bench", "consume", "--topic", "spread", "-p", "1", "-O", "json",
    ]))
    .unwrap();
    assert_eq!(consumed["records"], per_partition[1]);
    assert_eq!(consumed["bytes"], per_partition[1] * 100);
    // Without a window, only the producer's buffer bounds what waits.
    let table = env.ok(&[
        "bench",
        "produce",
        "--records",
        "300",
        "--topic",
        "table",
        "--partitions",
        "3",
        "--window",
        "0",
    ]);
    assert!(
        table.contains("partitions: 3, records per partition min"),
        "{table}"
    );
    assert!(produced["records_per_second"].as_f64().unwrap() > 0.0);
    assert!(
        produced["latency_us"]["p99"].as_u64().unwrap()
            >= produced["latency_us"]["p50"].as_u64().unwrap()
    );
}

#[test]
fn bench_produce_stops_with_the_reason_when_its_records_cannot_be_delivered() {
    let env = Env::started();
    env.ok(&["topic", "create", "doomed"]);
    // Far more records than it sends before the node dies.
    let bench = env
        .command(&[
            "bench",
            "produce",
            "--topic",
            "doomed",
            "--records",
            "100000000",
            "--delivery-timeout",
            "2s",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    env.kill_node();
    // It gave up within its delivery timeout plus a request's, instead of
    // sending record after record into nothing.
    let out = crate::harness::wait_for_exit(bench, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("not acknowledged") && stderr.contains("doomed/0"),
        "{stderr}"
    );
}

#[test]
fn produce_stops_reading_at_the_first_record_the_cluster_did_not_take() {
    use std::io::Write;

    let env = Env::started();
    env.ok(&["topic", "create", "gone"]);
    let mut produce = env
        .command(&["produce", "gone", "--delivery-timeout", "2s"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // An input that never ends: lines as long as produce takes them.
    let mut input = produce.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let mut n = 0u64;
        while writeln!(input, "line-{n}").is_ok() {
            n += 1;
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    env.kill_node();
    let out = crate::harness::wait_for_exit(produce, Duration::from_secs(60));
    feeder.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("were not acknowledged by topic \"gone\" (first failure: line")
            && stderr.contains("reading stopped after line"),
        "{stderr}"
    );
}

/// Sends `record_size`-byte records with `config` to a node paused with
/// SIGSTOP until `send` blocks, then resumes it: how many `send` accepted,
/// and how many the topic holds afterwards.
fn accepted_while_paused(
    config: sluice_client::ProducerConfig,
    record_size: usize,
) -> (usize, usize) {
    use sluice_client::proto::Record;

    let env = Env::started();
    env.ok(&["topic", "create", "bp"]);
    let pid = env.node_pid();
    let rt = crate::harness::runtime();
    let accepted = rt.block_on(async {
        let client = env.admin_client().await;
        let producer = client.producer("bp", config).await.unwrap();
        // The node stops answering: nothing is acknowledged any more.
        // SAFETY: pausing the node process this test started.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        let mut deliveries = Vec::new();
        loop {
            let send = producer.send(Record::new(vec![b'x'; record_size]));
            match tokio::time::timeout(Duration::from_millis(500), send).await {
                Ok(delivery) => deliveries.push(delivery.unwrap()),
                Err(_) => break, // `send` waits: the bound is reached.
            }
            assert!(deliveries.len() < 100_000, "send never blocked");
        }
        let accepted = deliveries.len();
        // SAFETY: resuming it.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        producer.flush().await.unwrap();
        for d in deliveries {
            d.await.unwrap();
        }
        accepted
    });
    let stored = env.ok(&["consume", "bp", "-B", "-d"]).lines().count();
    (accepted, stored)
}

#[test]
fn every_send_is_answered_within_its_delivery_timeout_while_the_cluster_takes_nothing() {
    use sluice_client::proto::Record;
    use sluice_client::{ClientError, ProducerConfig};

    let env = Env::started();
    env.ok(&["topic", "create", "stuck"]);
    let pid = env.node_pid();
    let rt = crate::harness::runtime();
    let (errors, took) = rt.block_on(async {
        let client = env.admin_client().await;
        let config = ProducerConfig {
            batch_size_bytes: 1024,
            max_in_flight: 1,
            delivery_timeout: Duration::from_secs(2),
            ..ProducerConfig::default()
        };
        let producer = client.producer("stuck", config).await.unwrap();
        // The node stops answering: one batch goes on the wire and is
        // retried, the others wait behind it.
        // SAFETY: pausing the node process this test started.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        let started = std::time::Instant::now();
        let mut deliveries = Vec::new();
        for _ in 0..12 {
            deliveries.push(producer.send(Record::new(vec![b'x'; 900])).await.unwrap());
        }
        let mut errors = Vec::new();
        for delivery in deliveries {
            let outcome = tokio::time::timeout(Duration::from_secs(30), delivery)
                .await
                .expect("a record was not answered");
            errors.push(outcome.expect_err("acknowledged by a paused node"));
        }
        let took = started.elapsed();
        // SAFETY: resuming it.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        (errors, took)
    });
    // Batches that never left expired by the same clock as the one being
    // retried, instead of each getting a fresh timeout once its turn came
    // (12 batches, one at a time: about 25 s before).
    assert!(
        took < Duration::from_secs(15),
        "the last record was answered after {took:?}"
    );
    let waited = errors
        .iter()
        .filter(|e| {
            matches!(e, ClientError::Delivery { source, attempts: 0, .. }
                if matches!(**source, ClientError::NotSent { .. }))
        })
        .count();
    assert!(waited > 0, "{errors:?}");
    let shown = errors.last().unwrap().to_string();
    assert!(shown.contains("stuck/0"), "{shown}");
}

#[test]
fn a_producer_faster_than_the_cluster_blocks_instead_of_buffering_without_bound() {
    let config = sluice_client::ProducerConfig {
        max_in_flight: 2,
        ..sluice_client::ProducerConfig::default()
    };
    let (accepted, stored) = accepted_while_paused(config, 1024);
    // The queue (1,024 records) plus a few batches of 16 KiB: bounded, not
    // everything the loop could have pushed.
    assert!(
        accepted > 0 && accepted < 2_000,
        "{accepted} records accepted while the node was paused"
    );
    assert_eq!(
        stored, accepted,
        "every accepted record is delivered once the node resumes"
    );
}

#[test]
fn a_producer_holds_at_most_its_buffer_in_bytes() {
    // Large records: the record-count bounds alone would let 1,000 of them
    // (500 MiB) pile up; the byte bound lets three.
    let config = sluice_client::ProducerConfig {
        buffer_bytes: 2 * 1024 * 1024,
        ..sluice_client::ProducerConfig::default()
    };
    let (accepted, stored) = accepted_while_paused(config, 512 * 1024);
    assert_eq!(accepted, 3, "records accepted while the node was paused");
    assert_eq!(stored, accepted);
}

/// Sends record `i` to partition `i` (its key is the number).
struct KeyIsPartition;

impl sluice_client::Partitioner for KeyIsPartition {
    fn partition(&self, key: Option<&[u8]>, _value: &[u8], _partitions: u32) -> u32 {
        std::str::from_utf8(key.unwrap()).unwrap().parse().unwrap()
    }
}

#[test]
fn lingering_batches_of_several_partitions_each_leave_when_their_linger_ends() {
    use sluice_client::proto::Record;
    use sluice_client::{CustomPartitioner, ProducerConfig};

    let env = Env::started();
    env.ok(&["topic", "create", "lingering", "--partitions", "3"]);
    let linger = Duration::from_millis(300);
    let rt = crate::harness::runtime();
    let acked = rt.block_on(async {
        let client = env.admin_client().await;
        let config = ProducerConfig {
            linger,
            partitioner: Some(CustomPartitioner::new(KeyIsPartition)),
            ..ProducerConfig::default()
        };
        let producer = client.producer("lingering", config).await.unwrap();
        // One record a partition, 100 ms apart: each lane's batch comes due
        // at its own time, while the other lanes are still filling. No
        // flush: only the producer's timers send them.
        let mut deliveries = Vec::new();
        for partition in 0..3 {
            let sent = tokio::time::Instant::now();
            let record = Record::with_key(partition.to_string(), format!("r{partition}"));
            deliveries.push((sent, producer.send(record).await.unwrap()));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut acked = Vec::new();
        for (sent, delivery) in deliveries {
            let meta = tokio::time::timeout(Duration::from_secs(10), delivery)
                .await
                .expect("a lingering batch was never sent")
                .unwrap();
            acked.push((meta.partition, sent.elapsed()));
        }
        acked
    });
    for (i, (partition, waited)) in acked.into_iter().enumerate() {
        assert_eq!(partition, i as u32);
        assert!(
            waited >= linger,
            "record {i} acknowledged after {waited:?}, before its linger"
        );
    }
}

#[test]
fn small_response_sizes_still_deliver_every_record_and_fluvio_flags_are_accepted() {
    let env = Env::started();
    env.ok(&["topic", "create", "sized"]);
    let records: String = (0..10).map(|i| format!("{i:0>100}\n")).collect();
    env.ok_with_input(
        &[
            "produce",
            "sized",
            "--delivery-semantic",
            "at-most-once",
            "--isolation",
            "read_committed",
        ],
        records.as_bytes(),
    );
    // Responses of at most 150 bytes: records of 100 bytes come one or so at
    // a time, and one larger than the bound comes alone.
    for max in ["150", "1"] {
        assert_eq!(
            env.ok(&[
                "consume",
                "sized",
                "-B",
                "-d",
                "-b",
                max,
                "--isolation",
                "read_uncommitted"
            ]),
            records
        );
    }
    let err = env.fails(&["consume", "sized", "-B", "-d", "--maxbytes", "0"], b"");
    assert!(err.contains("out of range"), "{err}");
}

/// A custom partitioner decides each record's partition (here: by the
/// value's first digit, whatever the key), and one that names a partition
/// the topic lacks fails that `send` with the figures.
#[test]
fn a_custom_partitioner_places_every_record() {
    use sluice_client::proto::Record;
    use sluice_client::{CustomPartitioner, Partitioner, ProducerConfig};

    struct ByFirstDigit;
    impl Partitioner for ByFirstDigit {
        fn partition(&self, _key: Option<&[u8]>, value: &[u8], partitions: u32) -> u32 {
            u32::from(value.first().map_or(0, |b| b.wrapping_sub(b'0'))) % (partitions + 1)
        }
    }

    let env = Env::started();
    env.ok(&["topic", "create", "placed", "-p", "3"]);
    let rt = crate::harness::runtime();
    let refused = rt.block_on(async {
        let client = env.admin_client().await;
        let config = ProducerConfig {
            partitioner: Some(CustomPartitioner::new(ByFirstDigit)),
            ..ProducerConfig::default()
        };
        let producer = client.producer("placed", config).await.unwrap();
        let mut deliveries = Vec::new();
        for value in ["0-a", "1-b", "2-c", "0-d", "1-e"] {
            let record = Record::with_key("same-key", value);
            deliveries.push(producer.send(record).await.unwrap());
        }
        producer.flush().await.unwrap();
        for d in deliveries {
            d.await.unwrap();
        }
        // Partition 3 of a 3-partition topic: refused before anything is sent.
        match producer.send(Record::new("3-x")).await {
            Ok(_) => panic!("partition 3 of 3 was accepted"),
            Err(e) => e.to_string(),
        }
    });
    assert!(
        refused.contains("chose partition 3 of topic \"placed\", which has 3"),
        "{refused}"
    );
    for (p, want) in [("0", "0-a\n0-d\n"), ("1", "1-b\n1-e\n"), ("2", "2-c\n")] {
        assert_eq!(env.ok(&["consume", "placed", "-p", p, "-B", "-d"]), want);
    }
}

/// One consumer over every partition of a topic: each record once, each
/// partition's in offset order, and the stream ends when every partition's
/// read has ended.
#[test]
fn a_topic_is_read_as_one_stream_over_its_partitions() {
    use futures::StreamExt;
    use sluice_client::proto::FetchRequest;

    let env = Env::started();
    env.ok(&["topic", "create", "wide", "-p", "3"]);
    env.ok_with_input(
        &["produce", "wide"],
        crate::harness::lines(30, "w").as_bytes(),
    );
    let rt = crate::harness::runtime();
    let (all, two) = rt.block_on(async {
        let client = env.admin_client().await;
        let all: Vec<_> = client
            .consume_topic(FetchRequest::new("wide", 0))
            .await
            .unwrap()
            .into_stream()
            .map(|r| r.unwrap())
            .collect()
            .await;
        let two: Vec<_> = client
            .consume_many(vec![
                FetchRequest::new("wide", 0),
                FetchRequest::new("wide", 2).max_records(1),
            ])
            .into_stream()
            .map(|r| r.unwrap())
            .collect()
            .await;
        (all, two)
    });
    let mut values: Vec<String> = all
        .iter()
        .map(|r| String::from_utf8(r.value.clone()).unwrap())
        .collect();
    values.sort();
    let mut want: Vec<String> = (0..30).map(|i| format!("w-{i}")).collect();
    want.sort();
    assert_eq!(values, want, "every record once");
    for p in 0..3 {
        let offsets: Vec<u64> = all
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| r.offset)
            .collect();
        assert_eq!(
            offsets,
            (0..10).collect::<Vec<_>>(),
            "partition {p} in order"
        );
    }
    assert_eq!(two.iter().filter(|r| r.partition == 0).count(), 10);
    assert_eq!(two.iter().filter(|r| r.partition == 2).count(), 1);
    assert_eq!(two.len(), 11);
}

/// A client given a dead node first reaches the cluster through the next
/// one. (How long the dead one delays it, the stagger between dials, is
/// shown with paused time in `client/src/client/nodes.rs`.)
#[test]
fn a_client_whose_first_endpoint_is_dead_reaches_the_cluster_through_the_next() {
    use sluice_client::{ConnectOptions, proto::Record};

    let env = Env::started();
    env.ok(&["topic", "create", "dialed"]);
    // Bound and never read: datagrams to it are neither answered nor
    // refused, as with a node that died.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    crate::harness::runtime().block_on(async {
        let endpoints = format!("127.0.0.1:{dead_port},127.0.0.1:{}", env.port);
        let client = sluice_client::Client::connect_with(
            &endpoints,
            &env.ca_pem(),
            Some(env.admin_identity()),
            ConnectOptions::default(),
        )
        .await
        .unwrap();
        client
            .produce("dialed", 0, vec![Record::new(b"through".to_vec())])
            .await
            .unwrap();
    });
    drop(dead);
    assert_eq!(env.ok(&["consume", "dialed", "-B", "-d"]), "through\n");
}
