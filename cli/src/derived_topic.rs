//! `topic create B --from A [--transforms FILE]`: a derived topic. B gets
//! A's partitions (and its replication unless `-r` says otherwise), and a
//! connector named B, run by the cluster, copies every record of A through
//! the transforms into the same partition of B, exactly once (see
//! `crate::connector::derive`). `connector describe B` shows it;
//! `connector delete B` stops the derivation and keeps B.

use std::path::Path;

use anyhow::{Context, bail};
use sluice_client::Client;
use sluice_client::proto::{TopicSettings, TopicSpec};

/// The connector file of B's derivation from `from`, with the
/// `transforms` list of `transforms_file` (if any) as it is written there.
fn connector_file(
    name: &str,
    from: &str,
    transforms_file: Option<&Path>,
) -> anyhow::Result<String> {
    let transforms = match transforms_file {
        None => serde_yaml::Value::Sequence(Vec::new()),
        Some(path) => {
            let text = crate::small_file::read(
                path,
                sluice_client::proto::limits::CONNECTOR_CONFIG_BYTES_MAX as u64,
                "transforms file",
            )?;
            let value: serde_yaml::Value = serde_yaml::from_str(&text)
                .with_context(|| format!("transforms file {}: not YAML", path.display()))?;
            match value.get("transforms") {
                Some(list @ serde_yaml::Value::Sequence(_)) => list.clone(),
                _ => bail!(
                    "transforms file {}: expected `transforms: [{{uses: MODULE, with: {{...}}}}]`",
                    path.display()
                ),
            }
        }
    };
    let mut file = serde_yaml::Mapping::new();
    let text = |s: &str| serde_yaml::Value::String(s.to_string());
    let mut meta = serde_yaml::Mapping::new();
    meta.insert(text("name"), text(name));
    meta.insert(text("type"), text("derived-topic"));
    meta.insert(text("topic"), text(name));
    let mut derived = serde_yaml::Mapping::new();
    derived.insert(text("from"), text(from));
    file.insert(text("apiVersion"), text("0.1.0"));
    file.insert(text("meta"), serde_yaml::Value::Mapping(meta));
    file.insert(text("derived"), serde_yaml::Value::Mapping(derived));
    file.insert(text("transforms"), transforms);
    serde_yaml::to_string(&serde_yaml::Value::Mapping(file))
        .context("cannot write the connector file")
}

/// Creates topic `spec` derived from `from`: the topic, then its
/// connector; if the connector is refused, the topic is deleted again.
pub async fn create(
    client: &Client,
    mut spec: TopicSpec,
    replication_given: bool,
    settings: TopicSettings,
    from: &str,
    transforms_file: Option<&Path>,
) -> anyhow::Result<String> {
    let name = spec.name.clone();
    let text = connector_file(&name, from, transforms_file)?;
    let base = transforms_file
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    let connector = crate::connector::cluster::checked_text(&text, base, "the derivation")?;
    let source = client
        .describe_topic(from)
        .await
        .with_context(|| format!("cannot derive topic {name:?} from {from:?}"))?;
    spec.partitions = source.spec.partitions;
    if !replication_given {
        spec.replication = source.spec.replication;
    }
    client
        .create_topic_with(spec, None, settings)
        .await
        .with_context(|| format!("cannot create topic {name:?}"))?;
    match client.create_connector(connector).await {
        Ok(record) => Ok(format!(
            "topic {name:?} created, derived from {from:?} by connector {name:?} on node {}\n",
            record.node
        )),
        Err(e) => {
            let undone = client.delete_topic(&name).await;
            let note = match undone {
                Ok(()) => "the topic was deleted again".to_string(),
                Err(d) => format!("and deleting the topic again failed too ({d}); delete it"),
            };
            Err(anyhow::Error::new(e)
                .context(format!("cannot start the derivation of {name:?} ({note})")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_derivation_file_carries_the_transforms_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t.yaml");
        std::fs::write(&t, "transforms:\n  - uses: upper\n    with: {k: v}\n").unwrap();
        let text = connector_file("b", "a", Some(&t)).unwrap();
        let config = crate::connector::config::ConnectorConfig::parse(&text, dir.path()).unwrap();
        assert_eq!(config.name, "b");
        assert_eq!(config.topic, "b");
        assert!(matches!(
            config.kind,
            crate::connector::config::Kind::Derived { ref from } if from == "a"
        ));
        assert_eq!(config.transforms.len(), 1);
        std::fs::write(&t, "uses: upper\n").unwrap();
        let e = connector_file("b", "a", Some(&t)).unwrap_err();
        assert!(e.to_string().contains("expected `transforms:"), "{e}");
    }
}
