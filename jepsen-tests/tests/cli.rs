//! The `check` command end to end: exit status by verdict, and results.json.

use std::path::Path;
use std::process::Command;

use jepsen_tests::history::HistoryBuilder;

fn run_check(history: &Path, out: &Path) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_jepsen-tests"))
        .arg("check")
        .arg(history)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    (
        o.status.code().unwrap(),
        String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr),
    )
}

/// 12 acknowledged sends under a kill fault, drained on nodes 1 and 2;
/// `drop_last` leaves the last send out of the final logs (a lost write).
fn history(drop_last: bool, faults: bool) -> HistoryBuilder {
    let mut b = HistoryBuilder::new();
    if faults {
        b.fault_start("kill", &[2]);
    }
    let mut log = Vec::new();
    for i in 0..12 {
        let v = format!("w1-{i}");
        b.send_ok(1, &v, 0, i);
        log.push((i, v));
    }
    if faults {
        b.fault_stop("kill", &[2]);
    }
    if drop_last {
        log.pop();
    }
    let log: Vec<(u64, &str)> = log.iter().map(|(o, v)| (*o, v.as_str())).collect();
    b.final_read(1, 0, &log).final_read(2, 0, &log);
    b
}

fn results(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap()
}

#[test]
fn exit_status_and_results_follow_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    let out = dir.path().join("out");

    history(false, true)
        .build()
        .unwrap()
        .write_jsonl(&path)
        .unwrap();
    let (code, text) = run_check(&path, &out);
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("verdict: valid"), "{text}");
    assert_eq!(results(&out)["valid"], serde_json::json!(true));

    history(true, true)
        .build()
        .unwrap()
        .write_jsonl(&path)
        .unwrap();
    let (code, text) = run_check(&path, &out);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("lost_write: 1"), "{text}");
    let r = results(&out);
    assert_eq!(r["valid"], serde_json::json!(false));
    assert_eq!(r["lost"], 1);
    assert_eq!(
        r["anomalies"]["lost_write"]["examples"][0]["value"],
        "w1-11"
    );

    history(false, false)
        .build()
        .unwrap()
        .write_jsonl(&path)
        .unwrap();
    let (code, text) = run_check(&path, &out);
    assert_eq!(code, 2, "{text}");
    assert_eq!(results(&out)["valid"], serde_json::json!("unknown"));

    std::fs::write(&path, "{not json\n").unwrap();
    let (code, text) = run_check(&path, &out);
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("history line 1"), "{text}");
}
