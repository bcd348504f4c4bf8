//! `results.json`: the verdict of a run and the figures it reports.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::anomaly::Anomaly;
use super::figures::{Availability, Latency, OpCounts};
use super::log::Indeterminate;
use crate::history::{NodeId, PartitionId};

/// The verdict. On disk `true`, `false` or `"unknown"`, so a script can test
/// `valid == true` without knowing the third state exists and still be safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// No anomaly, and the run was conclusive.
    Valid,
    /// At least one anomaly.
    Invalid,
    /// No anomaly, but the run proves too little (see `unknown_reasons`).
    Unknown,
}

impl Serialize for Validity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Validity::Valid => s.serialize_bool(true),
            Validity::Invalid => s.serialize_bool(false),
            Validity::Unknown => s.serialize_str("unknown"),
        }
    }
}

impl<'de> Deserialize<'de> for Validity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Bool(true) => Ok(Validity::Valid),
            serde_json::Value::Bool(false) => Ok(Validity::Invalid),
            serde_json::Value::String(s) if s == "unknown" => Ok(Validity::Unknown),
            other => Err(D::Error::custom(format!(
                "valid must be true, false or \"unknown\", not {other}"
            ))),
        }
    }
}

impl std::fmt::Display for Validity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Validity::Valid => "valid",
            Validity::Invalid => "INVALID",
            Validity::Unknown => "unknown",
        })
    }
}

/// How many anomalies of one kind, with the first few as evidence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnomalySummary {
    pub count: u64,
    pub examples: Vec<Anomaly>,
}

/// The content of `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub valid: Validity,
    /// Why the verdict is `unknown` (also filled when it is `false`).
    pub unknown_reasons: Vec<String>,
    pub nodes: Vec<NodeId>,
    pub partitions: Vec<PartitionId>,
    pub duration_ms: u64,
    /// Client operations by outcome (workload and final drain).
    pub ops: OpCounts,
    /// The same by `f` (`sm_list_final` for the final lists).
    pub ops_by_f: BTreeMap<String, OpCounts>,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u64>,
    /// Faults that could not be injected (each makes the run `unknown`).
    pub nemesis_unavailable: Vec<String>,
    /// Every kind of [`super::KINDS`], with its count (all must be 0).
    pub anomalies: BTreeMap<String, AnomalySummary>,
    /// Acknowledged sends found in no node's final read.
    pub lost: u64,
    /// Values found at more than one offset of a partition.
    pub duplicated: u64,
    /// `info` sends: read (recovered) or never read (unknown, not lost).
    pub indeterminate_sends: Indeterminate,
    pub leader_changes: u64,
    pub availability: Availability,
    pub latency_ms: Latency,
    /// Per heal: ms until the first send invoked after it was acknowledged.
    pub recovery_ms: Vec<Option<u64>>,
}

impl CheckResult {
    /// Total number of anomalies of every kind.
    pub fn anomaly_count(&self) -> u64 {
        self.anomalies.values().map(|s| s.count).sum()
    }

    /// Writes `results.json` (pretty-printed) into `dir`.
    pub fn write_json(&self, dir: &Path) -> std::io::Result<std::path::PathBuf> {
        let path = dir.join("results.json");
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&path, text + "\n")?;
        Ok(path)
    }
}
