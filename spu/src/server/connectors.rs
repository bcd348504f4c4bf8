//! Clients' requests about connectors (`sluice connector ...`): creating
//! and deleting go through the controller; lists and logs come from the
//! nodes that run them (`crate::connectors`), asked by the node that took
//! the request.

use std::collections::BTreeMap;

use sluice_controller::Controller;
use sluice_proto::limits::CONNECTOR_LOG_ANSWER_BYTES_MAX;
use sluice_proto::{
    ConnectorInfo, ConnectorRecord, ConnectorRuntime, ConnectorSpec, NodeId, Request, Response,
    WireError,
};

use crate::shared::Shared;
use crate::timeouts::CONNECTORS_HERE_WAIT;

pub(super) async fn create(
    controller: &Controller,
    spec: ConnectorSpec,
) -> Result<Response, WireError> {
    let record = controller.create_connector(spec).await?;
    Ok(Response::ConnectorCreated(record))
}

pub(super) async fn delete(controller: &Controller, name: &str) -> Result<Response, WireError> {
    controller.delete_connector(name).await?;
    Ok(Response::ConnectorDeleted)
}

/// Every connector (or the one named) with what its node reports; a node
/// that does not answer within [`CONNECTORS_HERE_WAIT`] leaves its
/// connectors' runtime empty. Files are shown with their credentials
/// hidden (`super::redact`).
pub(super) async fn list(node: &Shared, name: Option<String>) -> Result<Response, WireError> {
    let records: Vec<ConnectorRecord> = node.controller.view().with(|md| {
        md.connectors
            .values()
            .filter(|c| name.as_ref().is_none_or(|n| *n == c.spec.name))
            .cloned()
            .collect()
    });
    if let Some(name) = &name
        && records.is_empty()
    {
        return Err(WireError::unknown_connector(name));
    }
    let mut by_node: BTreeMap<NodeId, Vec<String>> = BTreeMap::new();
    for r in &records {
        by_node.entry(r.node).or_default().push(r.spec.name.clone());
    }
    let asks = by_node
        .into_iter()
        .map(|(id, names)| async move { (id, runtimes_on(node, id, names).await) });
    let answers: BTreeMap<NodeId, Vec<ConnectorRuntime>> =
        futures::future::join_all(asks).await.into_iter().collect();
    let infos = records
        .into_iter()
        .map(|record| {
            let runtime = answers
                .get(&record.node)
                .and_then(|rs| rs.iter().find(|r| r.name == record.spec.name))
                .cloned();
            let mut record = record;
            record.spec.config = super::redact::credentials_hidden(&record.spec.config);
            ConnectorInfo { record, runtime }
        })
        .collect();
    Ok(Response::Connectors(infos))
}

/// What node `id` reports of the connectors `names`: empty if it does not
/// answer in time.
async fn runtimes_on(node: &Shared, id: NodeId, names: Vec<String>) -> Vec<ConnectorRuntime> {
    if id == node.config.id {
        return node.connectors.here(&node.connector_launch, &names).await;
    }
    let Some(addr) = node
        .controller
        .view()
        .with(|md| md.nodes.get(&id).map(|n| n.addr.clone()))
    else {
        return Vec::new();
    };
    let question = Request::ConnectorsHere { names };
    let ask = node.peers.request(&addr, &question, CONNECTORS_HERE_WAIT);
    match ask.await {
        Ok(Response::ConnectorsHere(runtimes)) => runtimes,
        Ok(_) => {
            tracing::debug!(
                node = id,
                "a node answered a connector status question oddly"
            );
            Vec::new()
        }
        Err(e) => {
            tracing::debug!(node = id, error = %e, "no connector status from a node");
            Vec::new()
        }
    }
}

/// A peer's question: the connectors this node runs.
pub(super) async fn here(node: &Shared, names: Vec<String>) -> Response {
    Response::ConnectorsHere(node.connectors.here(&node.connector_launch, &names).await)
}

/// The end of a connector's log, from the node that runs it.
pub(super) async fn logs(node: &Shared, name: &str, max_bytes: u32) -> Result<Response, WireError> {
    let max = (max_bytes as usize).min(CONNECTOR_LOG_ANSWER_BYTES_MAX);
    let Some(runs_on) = node
        .controller
        .view()
        .with(|md| md.connectors.get(name).map(|c| c.node))
    else {
        return Err(WireError::unknown_connector(name));
    };
    if runs_on == node.config.id {
        return Ok(logs_here(node, name, max).await);
    }
    let unavailable = |reason: String| WireError::Unavailable {
        what: format!("connector {name:?}'s log"),
        reason,
    };
    let addr = node
        .controller
        .view()
        .with(|md| md.nodes.get(&runs_on).map(|n| n.addr.clone()))
        .ok_or_else(|| unavailable(format!("node {runs_on} has no known address")))?;
    let ask = Request::ConnectorLogsHere {
        name: name.to_string(),
        max_bytes: max as u32,
    };
    match node.peers.request(&addr, &ask, CONNECTORS_HERE_WAIT).await {
        Ok(Response::Error(e)) => Err(e),
        Ok(answer) => Ok(answer),
        Err(e) => Err(unavailable(format!(
            "node {runs_on} at {addr}, which runs it: {e}"
        ))),
    }
}

/// The end of a connector's log as this node holds it.
/// The name is checked again: it becomes a path.
pub(super) async fn logs_here(node: &Shared, name: &str, max_bytes: usize) -> Response {
    if let Err(reason) = sluice_proto::limits::validate_connector_name(name) {
        return Response::Error(WireError::InvalidArgument {
            what: "connector name".into(),
            reason,
        });
    }
    let max = max_bytes.min(CONNECTOR_LOG_ANSWER_BYTES_MAX);
    Response::ConnectorLogs {
        text: crate::connectors::log_tail(&node.connector_launch, name, max).await,
    }
}
