//! Access control: who may do what to which resource.
//!
//! Modelled on Kafka's ACLs, cut down to what Sluice needs: an entry grants
//! one principal one operation on a resource pattern (a topic or SmartModule
//! name, or a name prefix, or the cluster itself). Everything not granted is
//! denied; there are no deny entries, so the order of entries never matters.
//! The entries live in the controller's replicated metadata; every node
//! checks each request against its copy before acting on it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The principal of peers that presented no certificate, on a listener that
/// admits them (`require_client_cert = false`). It holds what ACLs grant it
/// and nothing else; no client certificate may carry this name.
pub const ANONYMOUS_PRINCIPAL: &str = "anonymous";

/// What a request does, as far as permissions go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Operation {
    /// Everything on the cluster: topics, partitions, nodes, ACLs,
    /// SmartModules (on the [`ResourceKind::Cluster`] resource).
    Admin,
    /// Append records to a topic.
    Produce,
    /// Read records of a topic.
    Consume,
    /// Register or delete a SmartModule, or run an ad-hoc module of that name.
    Register,
    /// Run or download a registered SmartModule.
    Use,
}

impl Operation {
    /// Every operation, in the order `--help` lists them.
    pub const ALL: [Operation; 5] = [
        Operation::Admin,
        Operation::Produce,
        Operation::Consume,
        Operation::Register,
        Operation::Use,
    ];

    /// The name users type (`--operation produce`).
    pub fn name(self) -> &'static str {
        match self {
            Operation::Admin => "admin",
            Operation::Produce => "produce",
            Operation::Consume => "consume",
            Operation::Register => "register",
            Operation::Use => "use",
        }
    }

    /// The kind of resource this operation applies to.
    pub fn resource_kind(self) -> ResourceKind {
        match self {
            Operation::Admin => ResourceKind::Cluster,
            Operation::Produce | Operation::Consume => ResourceKind::Topic,
            Operation::Register | Operation::Use => ResourceKind::SmartModule,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Operation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Operation::ALL
            .into_iter()
            .find(|op| op.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown operation {s:?}; use one of {}",
                    Operation::ALL.map(Operation::name).join(", ")
                )
            })
    }
}

/// The kinds of resource permissions are granted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ResourceKind {
    Cluster,
    Topic,
    SmartModule,
}

impl ResourceKind {
    pub fn name(self) -> &'static str {
        match self {
            ResourceKind::Cluster => "cluster",
            ResourceKind::Topic => "topic",
            ResourceKind::SmartModule => "smartmodule",
        }
    }
}

/// Which resources an entry covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ResourcePattern {
    /// The cluster itself (what [`Operation::Admin`] is granted on).
    Cluster,
    /// The topic of exactly this name.
    Topic(String),
    /// Every topic whose name starts with this prefix (`""`: every topic).
    TopicPrefix(String),
    /// The SmartModule of exactly this name.
    SmartModule(String),
    /// Every SmartModule whose name starts with this prefix (`""`: all).
    SmartModulePrefix(String),
}

impl ResourcePattern {
    pub fn kind(&self) -> ResourceKind {
        match self {
            ResourcePattern::Cluster => ResourceKind::Cluster,
            ResourcePattern::Topic(_) | ResourcePattern::TopicPrefix(_) => ResourceKind::Topic,
            ResourcePattern::SmartModule(_) | ResourcePattern::SmartModulePrefix(_) => {
                ResourceKind::SmartModule
            }
        }
    }

    /// Whether the resource `kind`/`name` falls under this pattern.
    pub fn covers(&self, kind: ResourceKind, name: &str) -> bool {
        if self.kind() != kind {
            return false;
        }
        match self {
            ResourcePattern::Cluster => true,
            ResourcePattern::Topic(exact) | ResourcePattern::SmartModule(exact) => exact == name,
            ResourcePattern::TopicPrefix(prefix) | ResourcePattern::SmartModulePrefix(prefix) => {
                name.starts_with(prefix.as_str())
            }
        }
    }
}

impl fmt::Display for ResourcePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResourcePattern::Cluster => f.write_str("cluster"),
            ResourcePattern::Topic(name) => write!(f, "topic {name:?}"),
            ResourcePattern::TopicPrefix(prefix) => write!(f, "topics {prefix:?}*"),
            ResourcePattern::SmartModule(name) => write!(f, "smartmodule {name:?}"),
            ResourcePattern::SmartModulePrefix(prefix) => write!(f, "smartmodules {prefix:?}*"),
        }
    }
}

/// One grant: `principal` may perform `operation` on `resource`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclEntry {
    /// A client principal (its certificate's name) or [`ANONYMOUS_PRINCIPAL`].
    pub principal: String,
    pub operation: Operation,
    pub resource: ResourcePattern,
}

impl AclEntry {
    /// Whether this entry lets `principal` perform `operation` on `kind`/`name`.
    pub fn grants(
        &self,
        principal: &str,
        operation: Operation,
        kind: ResourceKind,
        name: &str,
    ) -> bool {
        self.principal == principal
            && self.operation == operation
            && self.resource.covers(kind, name)
    }

    /// Checks that the operation applies to the resource's kind and that the
    /// names are within the limits; the message says what to pass instead.
    pub fn validate(&self) -> Result<(), String> {
        use crate::limits::{ACL_PRINCIPAL_BYTES_MAX, RESOURCE_NAME_BYTES_MAX};
        if self.principal.is_empty() || self.principal.len() > ACL_PRINCIPAL_BYTES_MAX {
            return Err(format!(
                "principal must be 1 to {ACL_PRINCIPAL_BYTES_MAX} bytes (the name in the client certificate)"
            ));
        }
        let expected = self.operation.resource_kind();
        if self.resource.kind() != expected {
            let hint = match expected {
                ResourceKind::Cluster => "--cluster",
                ResourceKind::Topic => "--topic NAME or --topic-prefix PREFIX",
                ResourceKind::SmartModule => "--smartmodule NAME or --smartmodule-prefix PREFIX",
            };
            return Err(format!(
                "operation {} applies to a {}, not to {}; pass {hint}",
                self.operation,
                expected.name(),
                self.resource
            ));
        }
        let name = match &self.resource {
            ResourcePattern::Cluster => "",
            ResourcePattern::Topic(n)
            | ResourcePattern::TopicPrefix(n)
            | ResourcePattern::SmartModule(n)
            | ResourcePattern::SmartModulePrefix(n) => n,
        };
        if name.len() > RESOURCE_NAME_BYTES_MAX {
            return Err(format!(
                "resource name of {} bytes exceeds the limit of {RESOURCE_NAME_BYTES_MAX}",
                name.len()
            ));
        }
        if matches!(
            self.resource,
            ResourcePattern::Topic(_) | ResourcePattern::SmartModule(_)
        ) && name.is_empty()
        {
            return Err("an exact resource name cannot be empty; use a prefix for many".into());
        }
        Ok(())
    }
}

impl fmt::Display for AclEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} may {} on {}",
            self.principal, self.operation, self.resource
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(operation: Operation, resource: ResourcePattern) -> AclEntry {
        AclEntry {
            principal: "alice".into(),
            operation,
            resource,
        }
    }

    #[test]
    fn prefixes_cover_names_that_start_with_them_and_nothing_else() {
        let e = entry(
            Operation::Produce,
            ResourcePattern::TopicPrefix("orders-".into()),
        );
        assert!(e.grants(
            "alice",
            Operation::Produce,
            ResourceKind::Topic,
            "orders-eu"
        ));
        assert!(!e.grants("alice", Operation::Produce, ResourceKind::Topic, "orders"));
        assert!(!e.grants(
            "alice",
            Operation::Consume,
            ResourceKind::Topic,
            "orders-eu"
        ));
        assert!(!e.grants("bob", Operation::Produce, ResourceKind::Topic, "orders-eu"));
        // A topic prefix never covers a SmartModule of the same name.
        assert!(!e.grants(
            "alice",
            Operation::Produce,
            ResourceKind::SmartModule,
            "orders-eu"
        ));
        let exact = entry(Operation::Consume, ResourcePattern::Topic("orders".into()));
        assert!(exact.grants("alice", Operation::Consume, ResourceKind::Topic, "orders"));
        assert!(!exact.grants(
            "alice",
            Operation::Consume,
            ResourceKind::Topic,
            "orders-eu"
        ));
    }

    #[test]
    fn an_operation_must_match_its_resource_kind() {
        let err = entry(Operation::Admin, ResourcePattern::Topic("t".into()))
            .validate()
            .unwrap_err();
        assert!(err.contains("--cluster"), "{err}");
        let err = entry(Operation::Use, ResourcePattern::TopicPrefix(String::new()))
            .validate()
            .unwrap_err();
        assert!(err.contains("--smartmodule"), "{err}");
        assert!(
            entry(Operation::Admin, ResourcePattern::Cluster)
                .validate()
                .is_ok()
        );
        assert!(
            entry(Operation::Produce, ResourcePattern::Topic(String::new()))
                .validate()
                .is_err()
        );
    }

    #[test]
    fn operations_parse_from_their_names() {
        for op in Operation::ALL {
            assert_eq!(op.name().parse::<Operation>(), Ok(op));
        }
        let err = "write".parse::<Operation>().unwrap_err();
        assert!(err.contains("produce"), "{err}");
    }
}
