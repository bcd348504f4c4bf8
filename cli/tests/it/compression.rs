//! Topic compression against real nodes: a topic's compression type decides
//! which producer batches it takes and how its replicas store them; readers
//! (consumers, SmartModules, a restarted node, a replica catching up) see
//! the records as produced.

use crate::harness::{Env, module, segments};

/// Bytes of the segment files of `topic`'s partition 0 on `node`.
fn stored_bytes(env: &Env, node: u64, topic: &str) -> u64 {
    segments(&env.partition_dir_of(node, topic))
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

/// Lines alike enough to compress, as JSON events usually are.
fn events(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"event\":\"click\",\"page\":\"/items/{}\",\"n\":{i}}}\n",
                i % 40
            )
        })
        .collect()
}

#[test]
fn compressed_topics_store_compressed_and_read_back_as_produced() {
    let env = Env::started_with(2);
    let input = events(3000);
    env.ok(&["topic", "create", "plain", "-r", "2"]);
    env.ok_with_input(&["produce", "plain"], input.as_bytes());
    assert_eq!(env.ok(&["consume", "plain", "-B", "-d"]), input);
    let plain = stored_bytes(&env, 1, "plain");
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("z-{codec}");
        env.ok(&[
            "topic",
            "create",
            &topic,
            "-r",
            "2",
            "--compression-type",
            codec,
        ]);
        let described: serde_json::Value =
            serde_json::from_str(&env.ok(&["topic", "describe", &topic, "-O", "json"])).unwrap();
        assert_eq!(described["compression_type"], codec);
        // No --compression: the producer follows the topic.
        env.ok_with_input(&["produce", &topic], input.as_bytes());
        assert_eq!(env.ok(&["consume", &topic, "-B", "-d"]), input, "{codec}");
        // Both replicas store it compressed.
        for node in [1, 2] {
            let stored = stored_bytes(&env, node, &topic);
            assert!(
                stored * 2 < plain,
                "{codec} on node {node}: {stored} bytes stored against {plain} uncompressed"
            );
        }
    }
    // A topic that names a codec takes that codec only.
    let e = env.fails(
        &["produce", "z-snappy", "--compression", "lz4"],
        b"abcdefgh\n",
    );
    assert!(
        e.contains("takes snappy-compressed batches only") && e.contains("--compression snappy"),
        "{e}"
    );
    let e = env.fails(
        &["produce", "z-gzip", "--compression", "none"],
        b"abcdefgh\n",
    );
    assert!(e.contains("sent uncompressed"), "{e}");
    // `any` takes every codec (and stores uncompressed); `none` takes none.
    env.ok(&["topic", "create", "anything", "--compression-type", "any"]);
    for codec in ["gzip", "snappy", "lz4", "zstd", "none"] {
        env.ok_with_input(
            &["produce", "anything", "--compression", codec],
            format!("sent {codec}\n").as_bytes(),
        );
    }
    assert_eq!(
        env.ok(&["consume", "anything", "-B", "-d"]),
        "sent gzip\nsent snappy\nsent lz4\nsent zstd\nsent none\n"
    );
    env.ok(&["topic", "create", "raw", "--compression-type", "none"]);
    env.fails(&["produce", "raw", "--compression", "zstd"], b"x\n");
    env.ok_with_input(&["produce", "raw"], b"x\n");
    // SmartModules see the records expanded.
    env.ok_with_input(&["produce", "z-zstd"], b"12345\nnot digits\n");
    let kept = env.ok(&[
        "consume",
        "z-zstd",
        "-o",
        "3000",
        "-d",
        "--filter",
        &module("digits-filter"),
    ]);
    assert_eq!(kept, "not digits\n");
    // After a restart, each node reads its compressed segments back.
    env.kill(1);
    env.kill(2);
    env.start_with_env(2, &[]);
    let all = env.ok(&["consume", "z-lz4", "-B", "-d"]);
    assert_eq!(all, input);
    // Bad names are refused before anything is sent.
    let e = env.fails(
        &["topic", "create", "bad", "--compression-type", "brotli"],
        b"",
    );
    assert!(e.contains("any, none, gzip, snappy, lz4 or zstd"), "{e}");
    let e = env.fails(&["produce", "plain", "--compression", "any"], b"x\n");
    assert!(e.contains("none, gzip, snappy, lz4 or zstd"), "{e}");
}
