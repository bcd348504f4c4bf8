//! Connectors the cluster runs (`sluice connector create|list|describe|
//! logs|delete`). Only an admin may manage them: a connector runs with
//! its node's identity.

use sluice_proto::{ConnectorInfo, ConnectorRecord, ConnectorSpec, Request, Response};

use super::Client;
use crate::error::Result;

impl Client {
    /// Stores a connector (its name and its file's text); the cluster
    /// starts it on a live node and answers with where.
    pub async fn create_connector(&self, spec: ConnectorSpec) -> Result<ConnectorRecord> {
        match self.admin(Request::CreateConnector(spec)).await? {
            Response::ConnectorCreated(record) => Ok(record),
            other => Err(self.unexpected("create connector", &other)),
        }
    }

    /// Every connector (or the one named), with what its node reports.
    pub async fn list_connectors(&self, name: Option<&str>) -> Result<Vec<ConnectorInfo>> {
        let request = Request::ListConnectors {
            name: name.map(str::to_string),
        };
        match self.retrying(request).await? {
            Response::Connectors(list) => Ok(list),
            other => Err(self.unexpected("list connectors", &other)),
        }
    }

    /// The end of a connector's log, at most `max_bytes`.
    pub async fn connector_logs(&self, name: &str, max_bytes: u32) -> Result<String> {
        let request = Request::ConnectorLogs {
            name: name.to_string(),
            max_bytes,
        };
        match self.retrying(request).await? {
            Response::ConnectorLogs { text } => Ok(text),
            other => Err(self.unexpected("connector logs", &other)),
        }
    }

    /// Stops a connector and forgets it.
    pub async fn delete_connector(&self, name: &str) -> Result<()> {
        match self
            .admin(Request::DeleteConnector {
                name: name.to_string(),
            })
            .await?
        {
            Response::ConnectorDeleted => Ok(()),
            other => Err(self.unexpected("delete connector", &other)),
        }
    }
}
