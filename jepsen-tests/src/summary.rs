//! The one-screen summary printed after a check: the verdict first, then the
//! figures every run reports, then the first example of each anomaly kind.

use std::fmt::Write;

use crate::checker::{CheckResult, Period};

fn pct(p: &Period) -> String {
    match p.ok_pct {
        Some(v) => format!("{v:.1}% ok of {}", p.invoked),
        None => "no ops".to_string(),
    }
}

fn ms(v: Option<u64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v} ms"))
}

/// Renders the summary of `r` (no trailing newline handling needed by callers).
pub fn render(r: &CheckResult) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        s,
        "verdict: {}   ({} anomalies)",
        r.valid,
        r.anomaly_count()
    );
    for why in &r.unknown_reasons {
        let _ = writeln!(s, "  unknown: {why}");
    }
    let _ = writeln!(
        s,
        "nodes {:?}, partitions {:?}, {} ms",
        r.nodes, r.partitions, r.duration_ms
    );
    let _ = writeln!(
        s,
        "ops: {} invoked, {} ok, {} fail, {} info",
        r.ops.invoke, r.ops.ok, r.ops.fail, r.ops.info
    );
    let faults: Vec<String> = r.faults.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(
        s,
        "faults: {}",
        if faults.is_empty() {
            "none".to_string()
        } else {
            faults.join(", ")
        }
    );
    let _ = writeln!(
        s,
        "leader changes: {}   lost: {}   duplicated: {}   info sends: {} recovered, {} unknown",
        r.leader_changes,
        r.lost,
        r.duplicated,
        r.indeterminate_sends.recovered,
        r.indeterminate_sends.unknown
    );
    let _ = writeln!(
        s,
        "availability: during faults {}, outside {}",
        pct(&r.availability.during_faults),
        pct(&r.availability.outside_faults)
    );
    let _ = writeln!(
        s,
        "send latency: p50 {}, p99 {} ({} samples)",
        ms(r.latency_ms.send_p50),
        ms(r.latency_ms.send_p99),
        r.latency_ms.samples
    );
    let recovery: Vec<String> = r.recovery_ms.iter().map(|v| ms(*v)).collect();
    if !recovery.is_empty() {
        let _ = writeln!(s, "recovery after heal: {}", recovery.join(", "));
    }
    let _ = writeln!(s, "anomalies:");
    for (kind, a) in &r.anomalies {
        if a.count == 0 {
            continue;
        }
        let example = a
            .examples
            .first()
            .and_then(|e| serde_json::to_string(e).ok())
            .unwrap_or_default();
        let example: String = example.chars().take(160).collect();
        let _ = writeln!(s, "  {kind}: {}   e.g. {example}", a.count);
    }
    if r.anomaly_count() == 0 {
        let _ = writeln!(s, "  none");
    }
    s
}
