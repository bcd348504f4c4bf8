//! Record headers against real nodes: given by `produce --header` or the
//! client crate, they are replicated, stored (compressed or not), survive a
//! restart, pass through SmartModules with the records they belong to, and
//! come back to consumers in every output form.

use crate::harness::{Env, module};

fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

#[test]
fn headers_go_from_producer_to_consumer_through_replication_compression_modules_and_restarts() {
    let env = Env::started_with(2);
    env.ok(&["topic", "create", "h", "-r", "2"]);
    env.ok(&[
        "topic",
        "create",
        "hz",
        "-r",
        "2",
        "--compression-type",
        "zstd",
    ]);
    for topic in ["h", "hz"] {
        env.ok_with_input(
            &[
                "produce",
                topic,
                "--header",
                "trace=abc",
                "--header",
                "ct=text/plain",
                "--header",
                "trace=a=b",
            ],
            b"12345\nnot digits\n",
        );
        // A batch without headers is stored the earlier way, beside them.
        env.ok_with_input(&["produce", topic], b"plain\n");
    }
    let check = |topic: &str, extra: &[&str]| {
        let mut args = vec!["consume", topic, "-B", "-d", "-O", "json"];
        args.extend_from_slice(extra);
        let records = json_lines(&env.ok(&args));
        assert_eq!(records.len(), 3, "{topic}: {records:?}");
        for r in &records[..2] {
            assert_eq!(
                r["headers"],
                serde_json::json!([
                    {"key": "trace", "value": "abc"},
                    {"key": "ct", "value": "text/plain"},
                    {"key": "trace", "value": "a=b"},
                ]),
                "{topic}: {r}"
            );
        }
        assert!(records[2].get("headers").is_none(), "{topic}: {records:?}");
        let formatted = env.ok(&[
            "consume",
            topic,
            "-B",
            "-d",
            "--format",
            "{{value}}|{{header:trace}}|{{header:none}}|{{headers}}",
        ]);
        assert_eq!(
            formatted,
            "12345|a=b||trace=abc,ct=text/plain,trace=a=b\n\
             not digits|a=b||trace=abc,ct=text/plain,trace=a=b\n\
             plain|||\n",
            "{topic}"
        );
    };
    check("h", &[]);
    check("hz", &[]);
    // Served by the follower too (its copy came by Raft, not by the produce).
    check("h", &["--read-from", "follower"]);
    // A SmartModule's outputs keep the headers of the records they came from.
    let filtered = json_lines(&env.ok(&[
        "consume",
        "h",
        "-B",
        "-d",
        "-O",
        "json",
        "--filter",
        &module("digits-filter"),
    ]));
    assert_eq!(filtered.len(), 2, "{filtered:?}");
    assert_eq!(filtered[0]["value"], "not digits");
    assert_eq!(filtered[0]["headers"][1]["value"], "text/plain");
    assert!(filtered[1].get("headers").is_none(), "{filtered:?}");
    // Both nodes read their segments and Raft logs back after a restart.
    env.kill(1);
    env.kill(2);
    env.start_with_env(2, &[]);
    check("h", &[]);
    check("hz", &[]);
}

#[test]
fn the_client_crate_sends_and_reads_headers_and_bad_headers_are_refused() {
    use sluice_proto::{FetchRequest, Record, RecordHeader};
    let env = Env::started();
    env.ok(&["topic", "create", "t"]);
    // Bad flags are refused before anything is sent, naming the fix.
    let e = env.fails(&["produce", "t", "--header", "no-equals"], b"x\n");
    assert!(e.contains("NAME=VALUE"), "{e}");
    let e = env.fails(&["produce", "t", "--header", "=v"], b"x\n");
    assert!(e.contains("empty name"), "{e}");
    let long = format!("--header={}=v", "n".repeat(300));
    let e = env.fails(&["produce", "t", &long], b"x\n");
    assert!(e.contains("over the limit of 256"), "{e}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let endpoint = format!("127.0.0.1:{}", env.port);
        let client =
            sluice_client::Client::connect(&endpoint, &env.ca_pem(), Some(env.admin_identity()))
                .await
                .unwrap();
        let records = vec![
            Record::new("one").header("k", vec![0u8, 1, 2]),
            Record::with_key("key", "two"),
        ];
        let produced = client.produce("t", 0, records.clone()).await.unwrap();
        assert_eq!(produced.base_offset, 0);
        // Refused by the client before a round trip, and by the node when
        // a client skips the check (a hand-built request).
        let empty_name = Record::new("x").header("", "v");
        let e = client
            .produce("t", 0, vec![empty_name.clone()])
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty name"), "{e}");
        let encoded = sluice_proto::encoding::to_vec(&vec![empty_name]).unwrap();
        let hand_built =
            sluice_proto::Request::ProduceWithHeaders(sluice_proto::CompressedProduce {
                topic: "t".into(),
                partition: 0,
                compression: sluice_proto::Compression::None,
                records: encoded,
                producer: None,
            });
        let e = client.request(hand_built).await.unwrap_err().to_string();
        assert!(e.contains("record 0") && e.contains("empty name"), "{e}");
        let mut fetch = client.fetch(FetchRequest::new("t", 0)).await.unwrap();
        let got = fetch.next_batch().await.unwrap().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0].headers,
            vec![RecordHeader::new("k", vec![0u8, 1, 2])]
        );
        assert!(got[1].headers.is_empty());
        // Read in place: the borrowed headers are the same.
        let mut fetch = client.fetch(FetchRequest::new("t", 0)).await.unwrap();
        let last = fetch
            .next_batch_with(|records| {
                records
                    .iter()
                    .map(|r| r.headers.last("k").map(<[u8]>::to_vec))
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(last, vec![Some(vec![0, 1, 2]), None]);
    });
}
