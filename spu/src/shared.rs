//! What the request handlers (`crate::server`) and the node's membership
//! driver hold: the node's [`Services`], and the state of the parts that
//! requests reach (consumer groups, the audit queue, the connectors).
//! The parts themselves take only the services.

use std::sync::Arc;

use crate::services::Services;

pub(crate) struct Shared {
    pub services: Arc<Services>,
    /// Consumer-group membership, while this node leads the controller.
    pub groups: crate::groups::Coordinator,
    /// Events for the audit topic (see `crate::audit_log`).
    pub audit: crate::audit_log::AuditLog,
    /// The connectors this node runs, and how their processes reach it.
    pub connectors: Arc<crate::connectors::Supervisor>,
    pub connector_launch: crate::connectors::Launch,
}

/// A handler reads the services as if they were its own fields
/// (`node.config`, `node.controller`) and hands `&Shared` to a part that
/// takes `&Services`.
impl std::ops::Deref for Shared {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.services
    }
}
