//! The on-disk format and the well-formedness rules.

use super::*;

/// The example of README.md, line for line: the documented format must parse.
const README_EXAMPLE: &str = r#"
{"index":0,"time_ms":0,"process":"nemesis","type":"info","f":"leader","value":{"partition":0,"leader":1},"node":null}
{"index":1,"time_ms":5,"process":1,"type":"invoke","f":"send","value":{"value":"w1-0","partition":0},"node":1}
{"index":2,"time_ms":9,"process":1,"type":"ok","f":"send","value":{"value":"w1-0","partition":0,"offset":0},"node":1}
{"index":3,"time_ms":10,"process":"nemesis","type":"info","f":"start","value":{"fault":"pause","nodes":[1]},"node":null}
{"index":4,"time_ms":11,"process":1,"type":"invoke","f":"send","value":{"value":"w1-1","partition":0},"node":1}
{"index":5,"time_ms":12,"process":2,"type":"invoke","f":"poll","value":{"partition":0,"offset":0},"node":2}
{"index":6,"time_ms":14,"process":2,"type":"ok","f":"poll","value":{"partition":0,"offset":0,"records":[[0,"w1-0"]]},"node":2}
{"index":7,"time_ms":3011,"process":1,"type":"info","f":"send","value":{"value":"w1-1","partition":0},"node":1,"error":"timeout after 3s"}
{"index":8,"time_ms":3020,"process":"nemesis","type":"info","f":"stop","value":{"fault":"pause","nodes":[1]},"node":null}
{"index":9,"time_ms":3021,"process":3,"type":"invoke","f":"sm_create","value":{"name":"upper","hash":"9f86d0"},"node":2}
{"index":10,"time_ms":3030,"process":3,"type":"ok","f":"sm_create","value":{"name":"upper","hash":"9f86d0"},"node":2}
{"index":11,"time_ms":3040,"process":4,"type":"invoke","f":"sm_delete","value":{"name":"old"},"node":2}
{"index":12,"time_ms":3041,"process":4,"type":"fail","f":"sm_delete","value":{"name":"old"},"node":2,"error":"no such SmartModule"}
{"index":13,"time_ms":4000,"process":100,"type":"invoke","f":"final_read","value":{"partition":0},"node":1}
{"index":14,"time_ms":4003,"process":100,"type":"ok","f":"final_read","value":{"partition":0,"records":[[0,"w1-0"],[1,"w1-1"]]},"node":1}
{"index":15,"time_ms":4004,"process":101,"type":"invoke","f":"sm_list","value":{"final":true},"node":1}
{"index":16,"time_ms":4005,"process":101,"type":"ok","f":"sm_list","value":{"final":true,"modules":[{"name":"upper","hash":"9f86d0"}]},"node":1}
"#;

#[test]
fn readme_example_parses_and_pairs() {
    let h = History::from_jsonl_str(README_EXAMPLE).unwrap();
    assert_eq!(h.ops().len(), 17);
    assert_eq!(h.pairs().len(), 7);
    let send = &h.pairs()[1];
    assert_eq!(send.outcome, Outcome::Info);
    assert_eq!(
        h.completion(send).unwrap().error.as_deref(),
        Some("timeout after 3s")
    );
    assert!(matches!(
        &h.ops()[14].call,
        Call::FinalRead(FinalRead { records: Some(r), .. }) if r[1] == Record::new(1, "w1-1")
    ));
    assert_eq!(h.nemesis_events().count(), 3);
}

#[test]
fn jsonl_round_trip() {
    let h = History::from_jsonl_str(README_EXAMPLE).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    h.write_jsonl(&path).unwrap();
    let back = History::read_jsonl(&path).unwrap();
    assert_eq!(back.ops(), h.ops());
    // Writing is canonical: the written text reads back to the same text.
    let mut a = Vec::new();
    let mut b = Vec::new();
    h.to_writer(&mut a).unwrap();
    back.to_writer(&mut b).unwrap();
    assert_eq!(a, b);
    let first = String::from_utf8(a).unwrap();
    let first = first.lines().nth(1).unwrap();
    assert_eq!(
        first,
        r#"{"index":1,"time_ms":5,"process":1,"type":"invoke","f":"send","value":{"value":"w1-0","partition":0},"node":1}"#
    );
}

fn err(text: &str) -> String {
    History::from_jsonl_str(text).unwrap_err().to_string()
}

#[test]
fn parse_errors_name_the_line() {
    let e = err(
        "\n{\"index\":0,\"time_ms\":0,\"process\":1,\"type\":\"invoke\",\"f\":\"teleport\",\"value\":{},\"node\":1}",
    );
    assert!(e.starts_with("history line 2"), "{e}");
    assert!(e.contains("teleport"), "{e}");
    let e = err(
        r#"{"index":0,"time_ms":0,"process":"bob","type":"invoke","f":"send","value":{"value":"a","partition":0},"node":1}"#,
    );
    assert!(e.contains("nemesis"), "{e}");
}

#[test]
fn a_retired_process_may_not_invoke_again() {
    let mut b = HistoryBuilder::new();
    b.send_info(1, "w1-0", 0).send_invoke(1, "w1-1", 0);
    let e = b.build().unwrap_err().to_string();
    assert!(e.contains("retired"), "{e}");
}

#[test]
fn malformed_histories_are_rejected() {
    // Completion without invocation.
    let mut b = HistoryBuilder::new();
    b.send_complete(1, OpType::Ok, "w1-0", 0, 0);
    assert!(b.build().is_err());
    // Two operations open in one process.
    let mut b = HistoryBuilder::new();
    b.send_invoke(1, "w1-0", 0).send_invoke(1, "w1-1", 0);
    assert!(b.build().is_err());
    // A value sent twice.
    let mut b = HistoryBuilder::new();
    b.send_ok(1, "w1-0", 0, 0).send_ok(2, "w1-0", 0, 1);
    assert!(b.build().unwrap_err().to_string().contains("twice"));
    // A completion of another value than invoked.
    let mut b = HistoryBuilder::new();
    b.send_invoke(1, "w1-0", 0)
        .send_complete(1, OpType::Ok, "w1-9", 0, 0);
    assert!(b.build().is_err());
    // An ok send without its offset.
    let mut b = HistoryBuilder::new();
    b.send_invoke(1, "w1-0", 0);
    b.complete(
        1,
        OpType::Ok,
        Call::Send(SendCall {
            value: "w1-0".into(),
            partition: 0,
            offset: None,
        }),
    );
    assert!(
        b.build()
            .unwrap_err()
            .to_string()
            .contains("without offset")
    );
    // not_replica is an ok final read's whole answer: no records with it, and
    // never on a read that did not succeed.
    let fr = |records: Option<Vec<Record>>, not_replica| {
        Call::FinalRead(FinalRead {
            partition: 0,
            records,
            not_replica,
        })
    };
    for (kind, done) in [
        (OpType::Ok, fr(Some(Vec::new()), true)),
        (OpType::Info, fr(None, true)),
        (OpType::Ok, fr(None, false)),
    ] {
        let mut b = HistoryBuilder::new();
        b.invoke(900, 1, fr(None, false)).complete(900, kind, done);
        assert!(b.build().is_err());
    }
    let mut b = HistoryBuilder::new();
    b.final_read_not_replica(1, 0);
    let h = b.build().unwrap();
    let mut text = Vec::new();
    h.to_writer(&mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains(r#""value":{"partition":0,"not_replica":true}"#),
        "{text}"
    );
    assert_eq!(History::from_jsonl_str(&text).unwrap().ops(), h.ops());
    // Index going back.
    let mut b = HistoryBuilder::new();
    b.send_ok(1, "w1-0", 0, 0);
    let mut ops = b.ops().to_vec();
    ops[1].index = 0;
    assert!(History::new(ops).is_err());
    // A client recording a nemesis event, and the nemesis invoking.
    let mut b = HistoryBuilder::new();
    b.fault_start("kill", &[1]);
    let mut ops = b.ops().to_vec();
    ops[0].process = Process::Client(1);
    assert!(History::new(ops.clone()).is_err());
    ops[0].process = Process::Nemesis;
    ops[0].kind = OpType::Invoke;
    assert!(History::new(ops).is_err());
}
