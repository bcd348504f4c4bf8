//! `--read-only FILE` of `cluster start` and `node run`: the topics of a
//! Fluvio metadata file (`{"topics": [{"metadata": {"name"}, "spec":
//! {"replicas": {"computed": {"partitions", "replicationFactor"}}}}]}`,
//! what Fluvio's `cluster start --read-only` reads), created when missing;
//! the nodes then refuse every change of the metadata from clients.

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::Value;
use sluice_client::proto::TopicSpec;

/// Bytes a read-only metadata file may hold.
pub const METADATA_FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// Reads the topics of the metadata file at `path`.
pub fn topics(path: &Path) -> anyhow::Result<Vec<TopicSpec>> {
    let text = crate::small_file::read(path, METADATA_FILE_BYTES_MAX, "read-only metadata file")?;
    parse(&text).with_context(|| format!("read-only metadata file {}", path.display()))
}

fn parse(text: &str) -> anyhow::Result<Vec<TopicSpec>> {
    let doc: Value = serde_json::from_str(text).context("not JSON")?;
    let Some(topics) = doc.get("topics").and_then(Value::as_array) else {
        bail!("expected an object with a `topics` list");
    };
    topics
        .iter()
        .enumerate()
        .map(|(i, t)| topic(t).with_context(|| format!("topics[{i}]")))
        .collect()
}

fn topic(t: &Value) -> anyhow::Result<TopicSpec> {
    let Some(name) = t.pointer("/metadata/name").and_then(Value::as_str) else {
        bail!("no metadata.name");
    };
    let spec = t.get("spec").cloned().unwrap_or(Value::Null);
    if let Some(keys) = spec.as_object() {
        for key in keys.keys() {
            if !matches!(key.as_str(), "replicas" | "storage" | "cleanupPolicy") {
                bail!(
                    "topic {name:?}: spec.{key} is not supported (Sluice reads replicas, storage \
                     and cleanupPolicy)"
                );
            }
        }
    }
    let Some(computed) = spec.pointer("/replicas/computed") else {
        bail!(
            "topic {name:?}: only spec.replicas.computed (partitions, replicationFactor) is \
             supported"
        );
    };
    let number = |v: Option<&Value>, what: &str| -> anyhow::Result<Option<u64>> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .with_context(|| format!("topic {name:?}: {what} is not a whole number")),
        }
    };
    let mut out = TopicSpec::new(name);
    if let Some(p) = number(computed.get("partitions"), "partitions")? {
        out.partitions = u32::try_from(p).unwrap_or(u32::MAX);
    }
    if let Some(r) = number(computed.get("replicationFactor"), "replicationFactor")? {
        out.replication = u32::try_from(r).unwrap_or(u32::MAX);
    }
    if let Some(s) = number(spec.pointer("/storage/segmentSize"), "storage.segmentSize")? {
        out.segment_size_bytes = s;
    }
    out.retention_bytes = number(
        spec.pointer("/storage/maxPartitionSize"),
        "storage.maxPartitionSize",
    )?;
    out.retention_ms = number(
        spec.pointer("/cleanupPolicy/segment/timeInSeconds"),
        "cleanupPolicy.segment.timeInSeconds",
    )?
    .map(|s| s.saturating_mul(1000));
    out.validate().with_context(|| format!("topic {name:?}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fluvios_metadata_file_gives_topics_and_what_it_cannot_is_named() {
        let specs = parse(
            r#"{"topics": [{"apiVersion": "fluvio.infinyon.com/v2", "kind": "Topic",
                "metadata": {"name": "my-topic"},
                "spec": {"replicas": {"computed": {"partitions": 2, "replicationFactor": 1,
                "ignoreRackAssignment": false}}, "storage": {"segmentSize": 4096}}}]}"#,
        )
        .unwrap();
        assert_eq!(
            specs,
            [TopicSpec {
                partitions: 2,
                segment_size_bytes: 4096,
                ..TopicSpec::new("my-topic")
            }]
        );
        for (text, why) in [
            ("[]", "a `topics` list"),
            (r#"{"topics": [{"spec": {}}]}"#, "no metadata.name"),
            (
                r#"{"topics": [{"metadata": {"name": "t"}, "spec": {"replicas": {"assigned": []}}}]}"#,
                "only spec.replicas.computed",
            ),
            (
                r#"{"topics": [{"metadata": {"name": "t"}, "spec": {"compressionType": "Lz4"}}]}"#,
                "spec.compressionType is not supported",
            ),
            (
                r#"{"topics": [{"metadata": {"name": "T"}, "spec": {"replicas": {"computed": {}}}}]}"#,
                "topic name",
            ),
        ] {
            let e = format!("{:#}", parse(text).unwrap_err());
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
