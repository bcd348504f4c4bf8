//! Clients' requests about the cluster's configuration: topics, their
//! partitions and settings, SmartModules, ACLs, nodes leaving and
//! partitions moving. Changes go through the controller (a node that does
//! not lead it passes them on: `super::propose_anywhere`); a change that
//! creates partitions answers once they are writable here.

use sluice_proto::{PartitionStatus, ReplicaStatus, Response, WireError};

use sluice_controller::Controller;

use crate::shared::Shared;
use crate::timeouts::{RECONCILE_WAIT, SEED_TOPICS_RETRY_INTERVAL, SEED_TOPICS_WAIT};

/// Creates a topic (with its replicas placed by the caller, and settings,
/// when given), answering once its partitions are writable.
pub(super) async fn create_topic(
    node: &Shared,
    controller: &Controller,
    spec: sluice_proto::TopicSpec,
    assignments: Option<Vec<sluice_proto::PartitionAssignment>>,
    settings: Option<sluice_proto::TopicSettings>,
) -> Result<Response, WireError> {
    if spec.name == crate::audit_log::AUDIT_TOPIC && !settings.as_ref().is_some_and(|s| s.system) {
        return Err(WireError::InvalidArgument {
            what: "topic name".into(),
            reason: format!(
                "{:?} is the cluster's audit topic, a system topic the cluster creates; pick \
                 another name",
                spec.name
            ),
        });
    }
    let info = match (assignments, settings) {
        (None, None) => controller.create_topic(spec).await?,
        (Some(assignments), None) => controller.create_topic_assigned(spec, assignments).await?,
        (assignments, Some(settings)) => {
            controller
                .create_topic_with(spec, assignments, settings)
                .await?
        }
    };
    Ok(Response::TopicCreated(writable(node, info).await))
}

/// A topic's settings: in their current shape (`v2`), or in the first
/// shape for a client of an earlier release (which reads only the
/// compression from them).
pub(super) fn topic_settings(node: &Shared, name: &str, v2: bool) -> Result<Response, WireError> {
    node.controller.view().with(|md| {
        md.topic(name)?;
        let settings = md.topic_settings_of(name);
        Ok(if v2 {
            Response::TopicSettingsV2(settings)
        } else {
            Response::TopicSettings(sluice_proto::TopicSettingsV1 {
                compression: settings.compression,
            })
        })
    })
}

/// Adds `count` partitions to `topic`, answering once the new ones are
/// writable.
pub(super) async fn add_partitions(
    node: &Shared,
    controller: &Controller,
    topic: &str,
    count: u32,
) -> Result<Response, WireError> {
    let info = controller.add_partitions(topic, count).await?;
    let added: Vec<u32> = info
        .assignments
        .iter()
        .skip((info.spec.partitions - count) as usize)
        .map(|a| a.partition)
        .collect();
    wait_for_leaders(node, topic, &added).await;
    Ok(Response::Topic(info))
}

/// Deletes a topic; `forced`, a system topic too.
pub(super) async fn delete_topic(
    node: &Shared,
    controller: &Controller,
    name: &str,
    forced: bool,
) -> Result<Response, WireError> {
    if forced {
        controller.delete_topic_forced(name).await?;
    } else {
        controller.delete_topic(name).await?;
    }
    wait_reconciled(node, RECONCILE_WAIT).await;
    Ok(Response::TopicDeleted)
}

/// The system topics (`system`) or the others.
pub(super) fn list_topics(node: &Shared, system: bool) -> Response {
    let md = node.metadata();
    Response::Topics(
        md.topics
            .values()
            .filter(|t| md.is_system_topic(t.id) == system)
            .map(|t| t.info.clone())
            .collect(),
    )
}

pub(super) fn describe_topic(node: &Shared, name: &str) -> Result<Response, WireError> {
    Ok(Response::Topic(node.metadata().topic(name)?.info.clone()))
}

pub(super) async fn create_smartmodule(
    node: &Shared,
    controller: &Controller,
    name: String,
    wasm: Vec<u8>,
) -> Result<Response, WireError> {
    let info = crate::transforms::register(node, controller, name, wasm).await?;
    Ok(Response::SmartModuleCreated(info))
}

pub(super) fn list_smartmodules(node: &Shared) -> Response {
    Response::SmartModules(
        node.metadata()
            .smartmodules
            .values()
            .map(|m| m.info.clone())
            .collect(),
    )
}

pub(super) fn describe_smartmodule(node: &Shared, name: &str) -> Result<Response, WireError> {
    Ok(Response::SmartModule(
        node.metadata().smartmodule(name)?.info.clone(),
    ))
}

pub(super) async fn delete_smartmodule(
    controller: &Controller,
    name: &str,
) -> Result<Response, WireError> {
    controller.delete_smartmodule(name).await?;
    Ok(Response::SmartModuleDeleted)
}

pub(super) fn download_smartmodule(node: &Shared, name: &str) -> Result<Response, WireError> {
    let md = node.metadata();
    let record = md.smartmodule(name)?;
    Ok(Response::SmartModuleWasm {
        info: record.info.clone(),
        wasm: record.wasm.clone(),
    })
}

pub(super) async fn unregister_node(
    controller: &Controller,
    id: u64,
) -> Result<Response, WireError> {
    controller.unregister_node(id).await?;
    Ok(Response::NodeUnregistered)
}

/// Starts moving a partition to `replicas`, answering once this node's
/// replicas follow the new assignment.
pub(super) async fn reassign_partition(
    node: &Shared,
    controller: &Controller,
    topic: &str,
    partition: u32,
    replicas: Vec<u64>,
) -> Result<Response, WireError> {
    let assignment = controller
        .reassign_partition(topic, partition, replicas)
        .await?;
    wait_reconciled(node, RECONCILE_WAIT).await;
    Ok(Response::PartitionReassigned(assignment))
}

pub(super) async fn add_acl(
    controller: &Controller,
    entry: sluice_proto::AclEntry,
) -> Result<Response, WireError> {
    controller.add_acl(entry).await?;
    Ok(Response::AclAdded)
}

pub(super) async fn remove_acl(
    controller: &Controller,
    entry: sluice_proto::AclEntry,
) -> Result<Response, WireError> {
    controller.remove_acl(entry).await?;
    Ok(Response::AclRemoved)
}

pub(super) fn list_acls(node: &Shared) -> Response {
    Response::Acls(
        node.controller
            .view()
            .with(|md| md.acls.iter().cloned().collect()),
    )
}

/// `info`, a topic just created, once its partitions are writable, so a
/// produce right after `topic create` succeeds.
async fn writable(node: &Shared, info: sluice_proto::TopicInfo) -> sluice_proto::TopicInfo {
    let partitions: Vec<u32> = info.assignments.iter().map(|a| a.partition).collect();
    wait_for_leaders(node, &info.spec.name, &partitions).await;
    info
}

/// Waits until this node runs its replicas of `partitions` of `topic` and
/// each has a leader, all within one [`RECONCILE_WAIT`] in total. The waits
/// run side by side: one after the other, a topic of a thousand partitions
/// took longer than the client's deadline to be answered (although created
/// at once), and the client's retry was refused.
async fn wait_for_leaders(node: &Shared, topic: &str, partitions: &[u32]) {
    let deadline = tokio::time::Instant::now() + RECONCILE_WAIT;
    wait_reconciled(node, RECONCILE_WAIT).await;
    let md = node.metadata();
    let waits = partitions
        .iter()
        .filter_map(|partition| node.replicas.get(&md, topic, *partition).ok())
        .map(|p| async move {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            p.group.wait_for_leader(left).await.is_some()
        });
    let elected = futures::future::join_all(waits).await;
    let waiting = elected.iter().filter(|e| !**e).count();
    if waiting > 0 {
        tracing::warn!(
            topic,
            waiting,
            "partitions without a leader yet; answering anyway"
        );
    }
}

async fn wait_reconciled(node: &Shared, timeout: std::time::Duration) {
    let version = *node.controller.view().subscribe().borrow();
    if !node.replicas.wait_reconciled(version, timeout).await {
        tracing::warn!(version, "replicas did not follow the metadata in time");
    }
}

/// The partitions of `topic`, or of every system topic (`system`) or
/// every other one.
pub(super) fn list_partitions(
    node: &Shared,
    topic: Option<&str>,
    system: bool,
) -> Result<Response, WireError> {
    let md = node.metadata();
    if let Some(t) = topic {
        md.topic(t)?;
    }
    let mut out = Vec::new();
    for record in md.topics.values().filter(|r| match topic {
        Some(t) => r.info.spec.name == t,
        None => md.is_system_topic(r.id) == system,
    }) {
        for a in &record.info.assignments {
            let name = &record.info.spec.name;
            let local = node.replicas.get(&md, name, a.partition).ok();
            let (leader, start, end, size) = match &local {
                Some(p) => {
                    if topic.is_some() {
                        // A client asking about one topic's leaders is often
                        // one whose request to a leader goes unanswered
                        // (`client::leader_watch`): a sleeping replica asks
                        // its leader's node at once whether it still leads.
                        p.group.recheck_sleeping_leader();
                    }
                    let (start, end, size) = p.offsets();
                    (p.group.status().leader, start, end, size)
                }
                None => (None, 0, 0, 0),
            };
            let lags = local
                .and_then(|p| p.group.replication_lag())
                .unwrap_or_default();
            out.push(PartitionStatus {
                topic: name.clone(),
                partition: a.partition,
                leader,
                replicas: a
                    .replicas
                    .iter()
                    .map(|&n| ReplicaStatus {
                        node: n,
                        lag_entries: lags.get(&n).copied().flatten(),
                    })
                    .collect(),
                start_offset: start,
                committed_offset: end,
                end_offset: end,
                size_bytes: size,
                leaving: record.moving.get(&a.partition).cloned().unwrap_or_default(),
            });
        }
    }
    Ok(Response::Partitions(out))
}

/// Creates the topics of `node.config.seed_topics` that the metadata lacks,
/// once this node leads the controller (every node of a read-only cluster
/// runs this; the leader's creates are the ones that land, the others
/// find them there). Gives up after [`SEED_TOPICS_WAIT`].
pub(crate) async fn seed_topics(node: std::sync::Arc<Shared>) {
    let deadline = tokio::time::Instant::now() + SEED_TOPICS_WAIT;
    while tokio::time::Instant::now() < deadline {
        // Read under the view's lock: no copy of the whole metadata.
        let missing: Vec<sluice_proto::TopicSpec> = node.controller.view().with(|md| {
            node.config
                .seed_topics
                .iter()
                .filter(|s| md.topic(&s.name).is_err())
                .cloned()
                .collect()
        });
        if missing.is_empty() {
            return;
        }
        if node.controller.is_leader() {
            for spec in missing {
                let name = spec.name.clone();
                let settings = sluice_proto::TopicSettings::for_new_topic();
                match node
                    .controller
                    .create_topic_with(spec, None, settings)
                    .await
                {
                    Ok(_) => tracing::info!(topic = %name, "created a topic of the read-only file"),
                    Err(WireError::TopicExists { .. }) => {}
                    Err(e) => {
                        tracing::warn!(topic = %name, error = %e, "cannot create a topic of the read-only file yet")
                    }
                }
            }
        }
        tokio::time::sleep(SEED_TOPICS_RETRY_INTERVAL).await;
    }
    tracing::error!(
        "the topics of the read-only file are still not all created after {SEED_TOPICS_WAIT:?}; \
         check that a majority of the controller's voters runs"
    );
}
