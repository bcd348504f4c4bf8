//! `sluice topic create --config FILE`: a topic described in Fluvio's topic
//! file format (YAML), so that a Fluvio user's files work unchanged.
//!
//! ```yaml
//! version: 0.1.0
//! meta:
//!   name: my-topic
//! partition:
//!   count: 3
//!   replication: 2
//!   max-size: 10 GB          # oldest segments deleted beyond it
//!   ignore-rack-assignment: true
//! retention:
//!   time: 7d
//!   segment-size: 1 GiB
//! ```
//!
//! Keys are accepted in kebab-case and in snake_case (Fluvio's own examples
//! use both). `partition.maps` places the replicas (as
//! `--replica-assignment` does; it then sets the partition count and the
//! replication factor). `compression.type` is the topic's compression type
//! (as `--compression-type`). What Sluice cannot do is refused by name
//! rather than ignored: deduplication, mirroring. An unknown key is an error
//! with its line, so a typo does not silently create a topic with defaults.

use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;
use sluice_client::proto::{PartitionAssignment, TopicCompression, TopicSettings, TopicSpec};

use crate::units::{parse_duration, parse_size};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct TopicFile {
    /// Fluvio writes 0.1.0; any version of this shape is read.
    #[serde(default)]
    #[allow(dead_code)]
    version: Option<serde_yaml::Value>,
    meta: Meta,
    #[serde(default)]
    partition: PartitionSection,
    #[serde(default)]
    retention: RetentionSection,
    #[serde(default)]
    compression: Option<CompressionSection>,
    #[serde(default)]
    deduplication: Option<serde_yaml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct PartitionSection {
    count: Option<u32>,
    replication: Option<u32>,
    #[serde(alias = "max_size")]
    max_size: Option<Size>,
    /// Sluice has no racks, so there is no rack assignment to ignore.
    #[serde(alias = "ignore_rack_assignment")]
    #[allow(dead_code)]
    ignore_rack_assignment: Option<bool>,
    maps: Option<Vec<ReplicaMap>>,
}

/// One partition's replicas, as Fluvio's replica assignment files and topic
/// files give them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaMap {
    pub id: u32,
    pub replicas: Vec<u64>,
    /// Fluvio's mirroring; refused.
    #[serde(default)]
    mirror: Option<serde_json::Value>,
}

/// A topic to create: its spec and, when the caller places the replicas,
/// where (one assignment per partition, in partition order).
#[derive(Debug, PartialEq, Eq)]
pub struct TopicPlan {
    pub spec: TopicSpec,
    pub assignments: Option<Vec<PartitionAssignment>>,
    pub settings: TopicSettings,
}

/// Bytes a topic file may hold.
pub const TOPIC_FILE_BYTES_MAX: u64 = 64 * 1024;

/// Bytes a replica assignment file may hold.
pub const ASSIGNMENT_FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// Reads `--replica-assignment FILE`: Fluvio's JSON list of `{"id": N,
/// "replicas": [node, ...]}`.
pub fn read_assignment(path: &Path) -> anyhow::Result<Vec<ReplicaMap>> {
    let text = crate::small_file::read(path, ASSIGNMENT_FILE_BYTES_MAX, "replica assignment file")?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "replica assignment file {}: expected a JSON list of {{\"id\": PARTITION, \
             \"replicas\": [NODE, ...]}}",
            path.display()
        )
    })
}

/// `spec` placed by `maps`: the partition count and replication factor
/// become theirs (every partition must have as many replicas), and the
/// assignments are sorted by partition; the controller checks the rest
/// (each partition once, distinct registered nodes).
pub fn placed(mut spec: TopicSpec, mut maps: Vec<ReplicaMap>) -> anyhow::Result<TopicPlan> {
    if maps.is_empty() {
        bail!("the replica assignment places no partition; give at least one");
    }
    if let Some(m) = maps.iter().find(|m| m.mirror.is_some()) {
        bail!(
            "partition {}: mirroring is not supported; remove `mirror` from the replica assignment",
            m.id
        );
    }
    maps.sort_by_key(|m| m.id);
    let replication = maps[0].replicas.len();
    if let Some(m) = maps.iter().find(|m| m.replicas.len() != replication) {
        bail!(
            "partition {} has {} replica(s) and partition {} has {replication}; every partition \
             needs as many",
            m.id,
            m.replicas.len(),
            maps[0].id
        );
    }
    spec.partitions = u32::try_from(maps.len()).unwrap_or(u32::MAX);
    spec.replication = u32::try_from(replication).unwrap_or(u32::MAX);
    let assignments = maps
        .into_iter()
        .map(|m| PartitionAssignment {
            partition: m.id,
            replicas: m.replicas,
        })
        .collect();
    Ok(TopicPlan {
        spec,
        assignments: Some(assignments),
        settings: TopicSettings::for_new_topic(),
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RetentionSection {
    time: Option<String>,
    #[serde(alias = "segment_size")]
    segment_size: Option<Size>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompressionSection {
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// A size as Fluvio writes it: `10 KB`, `2.0 KiB`, or a number of bytes.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    fn bytes(&self, key: &str) -> anyhow::Result<u64> {
        match self {
            Size::Bytes(b) => Ok(*b),
            Size::Text(t) => parse_size(t).map_err(|e| anyhow::anyhow!("{key}: {e}")),
        }
    }
}

/// The largest a partition may grow, as `--max-partition-size` and a topic
/// file's `partition.max-size` give it: at least [`MAX_PARTITION_SIZE_MIN`]
/// and at least one segment (retention deletes whole closed segments, so a
/// bound below one segment could never be met). The messages begin as
/// Fluvio's do, for scripts that match on them.
pub fn check_max_partition_size(max: u64, segment_size: u64) -> anyhow::Result<()> {
    if max < MAX_PARTITION_SIZE_MIN {
        bail!(
            "max_partition_size {max} is less than minimum {MAX_PARTITION_SIZE_MIN}: give at least \
             {MAX_PARTITION_SIZE_MIN} bytes (e.g. --max-partition-size 10GiB)"
        );
    }
    if max < segment_size {
        bail!(
            "max_partition_size {max} is less than segment size {segment_size}: retention deletes \
             whole segments, so a partition holds at least one; raise the maximum or lower \
             --segment-size"
        );
    }
    Ok(())
}

/// Smallest `--max-partition-size` (Fluvio's minimum too).
pub const MAX_PARTITION_SIZE_MIN: u64 = 2048;

/// Reads the topic file at `path` (checked like the flags are).
pub fn read(path: &Path) -> anyhow::Result<TopicPlan> {
    let text = crate::small_file::read(path, TOPIC_FILE_BYTES_MAX, "topic file")?;
    parse(&text).with_context(|| format!("topic file {}", path.display()))
}

fn parse(text: &str) -> anyhow::Result<TopicPlan> {
    let file: TopicFile = serde_yaml::from_str(text).context(
        "not a topic file: expected YAML with meta.name and optional partition, retention and \
         compression sections",
    )?;
    let compression = match file.compression.and_then(|c| c.kind) {
        Some(kind) => {
            TopicCompression::parse(&kind).map_err(|e| anyhow::anyhow!("compression.type: {e}"))?
        }
        None => TopicCompression::Any,
    };
    if file.deduplication.is_some() {
        bail!(
            "deduplication: Sluice has no deduplication filter on topics; idempotent producers \
             already write each batch once. Remove the deduplication section"
        );
    }
    let mut spec = TopicSpec::new(file.meta.name.trim());
    spec.partitions = file.partition.count.unwrap_or(1);
    spec.replication = file.partition.replication.unwrap_or(1);
    if let Some(size) = &file.retention.segment_size {
        spec.segment_size_bytes = size.bytes("retention.segment-size")?;
    }
    if let Some(time) = &file.retention.time {
        let d = parse_duration(time).map_err(|e| anyhow::anyhow!("retention.time: {e}"))?;
        spec.retention_ms = Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    }
    if let Some(size) = &file.partition.max_size {
        let max = size.bytes("partition.max-size")?;
        check_max_partition_size(max, spec.segment_size_bytes).context("partition.max-size")?;
        spec.retention_bytes = Some(max);
    }
    let mut plan = match file.partition.maps {
        Some(maps) => placed(spec, maps).context("partition.maps")?,
        None => TopicPlan {
            spec,
            assignments: None,
            settings: TopicSettings::for_new_topic(),
        },
    };
    plan.settings.compression = compression;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fluvio_topic_file_reads_in_either_key_spelling() {
        let kebab = "version: 0.1.0\nmeta:\n  name: events\npartition:\n  count: 3\n  \
                     replication: 2\n  max-size: 10 KB\n  ignore-rack-assignment: true\n\
                     retention:\n  time: 2m\n  segment-size: 2.0 KB\ncompression:\n  type: Any\n";
        let spec = parse(kebab).unwrap().spec;
        assert_eq!(
            (spec.name.as_str(), spec.partitions, spec.replication),
            ("events", 3, 2)
        );
        assert_eq!(spec.retention_bytes, Some(10_000));
        assert_eq!(spec.segment_size_bytes, 2_000);
        assert_eq!(spec.retention_ms, Some(120_000));
        let snake = kebab
            .replace("max-size", "max_size")
            .replace("segment-size", "segment_size")
            .replace("ignore-rack-assignment", "ignore_rack_assignment");
        assert_eq!(parse(&snake).unwrap().spec, spec);
        assert_eq!(
            parse(&kebab.replace("type: Any", "type: Lz4"))
                .unwrap()
                .settings
                .compression,
            TopicCompression::Lz4
        );
        // Only a name: Fluvio's defaults, which are ours.
        let minimal = parse("meta:\n  name: small\n").unwrap();
        assert_eq!(minimal.spec, TopicSpec::new("small"));
        assert_eq!(minimal.assignments, None);
        assert_eq!(minimal.settings, TopicSettings::for_new_topic());
        // Replica maps set the count and the replication factor.
        let placed = parse(
            "meta:\n  name: p\npartition:\n  count: 7\n  maps:\n  - id: 1\n    replicas: [3, 1]\n  \
             - id: 0\n    replicas: [1, 2]\n",
        )
        .unwrap();
        assert_eq!((placed.spec.partitions, placed.spec.replication), (2, 2));
        assert_eq!(
            placed.assignments.unwrap(),
            [
                PartitionAssignment {
                    partition: 0,
                    replicas: vec![1, 2]
                },
                PartitionAssignment {
                    partition: 1,
                    replicas: vec![3, 1]
                },
            ]
        );
    }

    #[test]
    fn what_sluice_cannot_do_is_refused_by_name() {
        let with = |extra: &str| parse(&format!("meta:\n  name: t\n{extra}")).unwrap_err();
        let e = format!("{:#}", with("compression:\n  type: Brotli\n"));
        assert!(
            e.contains("compression.type: unknown compression type"),
            "{e}"
        );
        let e = format!("{:#}", with("deduplication:\n  bounds:\n    count: 100\n"));
        assert!(e.contains("deduplication"), "{e}");
        let e = format!(
            "{:#}",
            with(
                "partition:\n  maps:\n  - id: 0\n    replicas: [1, 2]\n  - id: 1\n    replicas: [1]\n"
            )
        );
        assert!(
            e.contains("partition 1 has 1 replica(s) and partition 0 has 2"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            with("partition:\n  maps:\n  - id: 0\n    replicas: [1]\n    mirror: {}\n")
        );
        assert!(e.contains("mirroring is not supported"), "{e}");
        // A typo is an error, not a default.
        let e = format!("{:#}", with("partition:\n  cuont: 3\n"));
        assert!(e.contains("unknown field `cuont`"), "{e}");
        let e = format!("{:#}", with("partition:\n  max-size: 10\n"));
        assert!(
            e.contains("max_partition_size 10 is less than minimum 2048"),
            "{e}"
        );
        let e = format!("{:#}", with("partition:\n  max-size: 10 parsecs\n"));
        assert!(e.contains("partition.max-size"), "{e}");
        let e = format!("{:#}", parse("name: t\n").unwrap_err());
        assert!(e.contains("meta.name"), "{e}");
    }

    #[test]
    fn the_maximum_partition_size_holds_a_segment() {
        assert!(check_max_partition_size(2048, 1024).is_ok());
        let e = check_max_partition_size(2048, 3072)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("max_partition_size 2048 is less than segment size 3072"),
            "{e}"
        );
    }
}
