//! Connectors in the metadata: where each runs, and the three changes
//! (create, delete, move) the controller applies to them.
//!
//! Placement is the proposer's choice (the controller leader, with the
//! nodes it heard from recently), carried in the command, so every replica
//! applies the same placement. A move names the generation it replaces:
//! a leader deposed mid-move cannot move a connector its successor moved.

use sluice_proto::limits::CONNECTORS_MAX;
use sluice_proto::{ConnectorRecord, NodeId, WireError};

use crate::{CommandResult, Metadata};

/// The node a new (or moved) connector should run on: of `live` (every
/// registered node when the leader does not know who is live), the one
/// running the fewest connectors, the lowest id on a tie.
pub(crate) fn choose_node(md: &Metadata, live: Option<&[NodeId]>) -> Result<NodeId, WireError> {
    let candidates: Vec<NodeId> = match live {
        Some(live) => live
            .iter()
            .copied()
            .filter(|id| md.nodes.contains_key(id))
            .collect(),
        None => md.nodes.keys().copied().collect(),
    };
    candidates
        .into_iter()
        .min_by_key(|id| {
            (
                md.connectors.values().filter(|c| c.node == *id).count(),
                *id,
            )
        })
        .ok_or_else(|| WireError::Unavailable {
            what: "a node to run the connector".into(),
            reason: "the controller hears from no node".into(),
        })
}

/// Checks a new connector against the store (name free, room left).
/// Creating the same connector again (a script re-running its setup) is
/// not an error: `Ok(false)`.
pub(crate) fn check_new(md: &Metadata, record: &ConnectorRecord) -> Result<bool, WireError> {
    if let Some(existing) = md.connectors.get(&record.spec.name) {
        if existing.spec == record.spec {
            return Ok(false);
        }
        return Err(WireError::InvalidArgument {
            what: "connector".into(),
            reason: format!(
                "a connector named {:?} exists with another file; delete it first \
                 (`sluice connector delete {}`) or pick another name",
                record.spec.name, record.spec.name
            ),
        });
    }
    if md.connectors.len() >= CONNECTORS_MAX {
        return Err(WireError::InvalidArgument {
            what: "connector".into(),
            reason: format!(
                "the cluster runs {CONNECTORS_MAX} connectors, its limit; delete one first"
            ),
        });
    }
    Ok(true)
}

pub(crate) fn create(md: &mut Metadata, record: ConnectorRecord) -> CommandResult {
    match check_new(md, &record) {
        Ok(true) => {
            md.connectors.insert(record.spec.name.clone(), record);
            CommandResult::Done
        }
        Ok(false) => CommandResult::Done,
        Err(e) => CommandResult::Rejected(e),
    }
}

pub(crate) fn delete(md: &mut Metadata, name: String) -> CommandResult {
    match md.connectors.remove(&name) {
        Some(_) => CommandResult::Done,
        None => CommandResult::Rejected(WireError::unknown_connector(&name)),
    }
}

/// Moves `name` to `node` if it is still at `generation`.
pub(crate) fn move_to(
    md: &mut Metadata,
    name: &str,
    generation: u64,
    node: NodeId,
) -> CommandResult {
    if !md.nodes.contains_key(&node) {
        return CommandResult::Rejected(WireError::InvalidArgument {
            what: "connector move".into(),
            reason: format!("node {node} is not registered"),
        });
    }
    match md.connectors.get_mut(name) {
        Some(c) if c.generation == generation => {
            c.node = node;
            c.generation += 1;
            CommandResult::Done
        }
        Some(c) => CommandResult::Rejected(WireError::InvalidArgument {
            what: "connector move".into(),
            reason: format!(
                "connector {name:?} moved meanwhile (generation {}, not {generation})",
                c.generation
            ),
        }),
        None => CommandResult::Rejected(WireError::unknown_connector(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proto::ConnectorSpec;

    fn cluster() -> Metadata {
        let mut md = Metadata::default();
        for id in 1..=3 {
            md.nodes.insert(
                id,
                crate::NodeRecord {
                    id,
                    addr: format!("127.0.0.1:{id}"),
                    incarnation: None,
                },
            );
        }
        md
    }

    fn record(name: &str, node: NodeId) -> ConnectorRecord {
        ConnectorRecord {
            spec: ConnectorSpec {
                name: name.into(),
                config: format!("name: {name}\n"),
            },
            node,
            created_ms: 0,
            generation: 0,
        }
    }

    #[test]
    fn new_connectors_go_to_the_live_node_running_fewest() {
        let mut md = cluster();
        assert_eq!(choose_node(&md, None), Ok(1));
        assert_eq!(create(&mut md, record("a", 1)), CommandResult::Done);
        assert_eq!(choose_node(&md, None), Ok(2));
        assert_eq!(choose_node(&md, Some(&[1, 3])), Ok(3));
        assert_eq!(choose_node(&md, Some(&[1])), Ok(1));
        // A live id the metadata does not know is no candidate.
        assert!(choose_node(&md, Some(&[9])).is_err());
    }

    #[test]
    fn a_name_is_taken_once_and_the_same_file_again_changes_nothing() {
        let mut md = cluster();
        assert_eq!(create(&mut md, record("a", 1)), CommandResult::Done);
        // The same file again (wherever the proposer would place it).
        assert_eq!(create(&mut md, record("a", 2)), CommandResult::Done);
        assert_eq!(md.connectors["a"].node, 1);
        let mut other = record("a", 2);
        other.spec.config.push_str("topic: t\n");
        let CommandResult::Rejected(e) = create(&mut md, other) else {
            panic!("another file under a taken name was accepted")
        };
        assert!(e.to_string().contains("exists with another file"), "{e}");
        assert_eq!(delete(&mut md, "a".into()), CommandResult::Done);
        assert!(matches!(
            delete(&mut md, "a".into()),
            CommandResult::Rejected(_)
        ));
    }

    #[test]
    fn a_move_applies_only_to_the_generation_it_names() {
        let mut md = cluster();
        create(&mut md, record("a", 1));
        assert_eq!(move_to(&mut md, "a", 0, 2), CommandResult::Done);
        assert_eq!(
            (md.connectors["a"].node, md.connectors["a"].generation),
            (2, 1)
        );
        // A second leader's move, decided on generation 0: refused.
        assert!(matches!(
            move_to(&mut md, "a", 0, 3),
            CommandResult::Rejected(_)
        ));
        assert_eq!(md.connectors["a"].node, 2);
        assert!(matches!(
            move_to(&mut md, "a", 1, 9),
            CommandResult::Rejected(_)
        ));
    }

    #[test]
    fn the_store_holds_at_most_its_limit() {
        let mut md = cluster();
        for i in 0..CONNECTORS_MAX {
            assert_eq!(
                create(&mut md, record(&format!("c{i}"), 1)),
                CommandResult::Done
            );
        }
        let CommandResult::Rejected(e) = create(&mut md, record("one-more", 1)) else {
            panic!("past the limit")
        };
        assert!(e.to_string().contains("its limit"), "{e}");
    }
}
