//! `topic create B --from A [--transforms FILE]`: a derived topic. B gets
//! A's partitions (and its replication unless `-r` says otherwise), and a
//! connector named B, run by the cluster, copies every record of A through
//! the transforms into the same partition of B, exactly once (see
//! `crate::connector::derive`). `connector describe B` shows it;
//! `connector delete B` stops the derivation and keeps B; `topic delete B`
//! deletes both. A topic other connectors name (a derivation's source, a
//! sink's input, a source's output) is not deleted under them: see
//! [`connectors_naming`].

use std::path::Path;

use anyhow::{Context, bail};
use sluice_client::Client;
use sluice_client::proto::{TopicSettings, TopicSpec};

use crate::connector::config::{ConnectorConfig, Role, TopicsNamed};

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

/// The connectors that name a topic: the one deriving it, which goes with
/// it, and the others, which keep it from being deleted (each would fail
/// and restart for as long as it exists; a derivation would also start
/// afresh into a new topic of the same name).
#[derive(Debug, Default)]
pub struct Users {
    /// The connector deriving it, and its source.
    pub derivation: Option<(String, String)>,
    pub others: Vec<TopicsNamed>,
}

impl Users {
    /// Why the topic is not deleted, if it is not.
    pub fn refusal(&self, topic: &str) -> Option<String> {
        if self.others.is_empty() {
            return None;
        }
        let uses: Vec<String> = self
            .others
            .iter()
            .map(|n| match &n.role {
                Role::Source => format!("connector {:?} writes into it", n.connector),
                Role::Sink => format!("connector {:?} reads it", n.connector),
                Role::Derivation { .. } => format!(
                    "connector {:?} derives topic {:?} from it",
                    n.connector, n.topic
                ),
            })
            .collect();
        Some(format!(
            "topic {topic:?} is in use: {}; delete {} first (`sluice connector delete NAME`, or \
             `sluice topic delete NAME` for a derived topic and its derivation), then the topic",
            uses.join(", "),
            if uses.len() == 1 { "it" } else { "them" }
        ))
    }
}

/// Which connectors of the cluster name topic `name`. A node that refuses
/// the listing (no right to list connectors, or a release without them)
/// leaves nothing to check: the deletion is judged on its own. A file this
/// build cannot read is passed over.
pub async fn connectors_naming(client: &Client, name: &str) -> anyhow::Result<Users> {
    let connectors = match client.list_connectors(None).await {
        Ok(list) => list,
        Err(e) if e.wire_error().is_some() => return Ok(Users::default()),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot list the connectors that might use {name:?}"));
        }
    };
    let mut users = Users::default();
    for info in connectors {
        let Ok(named) = ConnectorConfig::topics_named(&info.record.spec.config) else {
            continue;
        };
        match &named.role {
            Role::Derivation { from } if named.topic == name => {
                users.derivation = Some((named.connector.clone(), from.clone()));
            }
            Role::Derivation { from } if from == name => users.others.push(named),
            _ if named.topic == name => users.others.push(named),
            _ => {}
        }
    }
    Ok(users)
}
