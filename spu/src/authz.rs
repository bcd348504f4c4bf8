//! Who may do what: every request is checked here before any handler runs.
//!
//! The peer's identity comes from its certificate, read once per connection
//! ([`Principal::of`]); the permissions come from the ACL entries in this
//! node's copy of the controller metadata and the node's `super_users`.
//!
//! - Node-only requests (Raft, joining, replica copies, reassignment
//!   completion) need a node certificate; a client certificate, whatever
//!   its permissions, is refused.
//! - A node may make every request: nodes forward clients' metadata
//!   changes to the controller leader after authorizing them where the
//!   client connected, so the leader sees the forwarding node.
//! - A super user, or a principal granted `admin` on the cluster, may make
//!   every client request.
//! - Anyone else needs the grant the request names: produce or consume on
//!   the topic, register or use on the SmartModule. Lists show only what the
//!   principal holds a grant on.
//!
//! Every denial and every administrative request leaves one `sluice::audit`
//! log line naming the principal, the operation and the resource.

use std::net::SocketAddr;

use sluice_controller::Metadata;
use sluice_proto::{
    ANONYMOUS_PRINCIPAL, AclEntry, MetadataChange, Operation, Request, ResourceKind,
    ResourcePattern, Response, SmartModuleSource, WireError,
};
use sluice_transport::PeerIdentity;

use crate::audit_log::AUDIT_TARGET;

/// Who is on the other end of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Principal {
    Node(u64),
    Client(String),
    /// No certificate, on a node that admits such peers.
    Anonymous,
    /// A certificate that names no usable identity: refused everything,
    /// with this reason.
    Unidentified(String),
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Node(id) => write!(f, "node {id}"),
            Principal::Client(name) => f.write_str(name),
            Principal::Anonymous => f.write_str(ANONYMOUS_PRINCIPAL),
            Principal::Unidentified(_) => f.write_str("an unidentified peer"),
        }
    }
}

impl Principal {
    /// The principal a connection's verified certificate names.
    pub(crate) fn of(connection: &quinn::Connection) -> Principal {
        match sluice_transport::peer_identity(connection) {
            None => Principal::Anonymous,
            Some(Ok(PeerIdentity::Node(id))) => Principal::Node(id),
            Some(Ok(PeerIdentity::Client(name))) => Principal::Client(name),
            Some(Err(e)) => Principal::Unidentified(e.to_string()),
        }
    }

    /// The name ACL entries use for this principal.
    fn acl_name(&self) -> Option<&str> {
        match self {
            Principal::Client(name) => Some(name),
            Principal::Anonymous => Some(ANONYMOUS_PRINCIPAL),
            Principal::Node(_) | Principal::Unidentified(_) => None,
        }
    }
}

/// A principal's standing, resolved against one metadata copy.
pub(crate) struct Access<'a> {
    principal: &'a Principal,
    md: &'a Metadata,
    /// Node, super user or `admin` grant: every client request allowed.
    all: bool,
}

/// The ACL entries of `principal`: entries are ordered by principal first,
/// so this is a range of the set, not a scan of every entry.
fn entries_of<'m>(md: &'m Metadata, principal: &str) -> impl Iterator<Item = &'m AclEntry> {
    let first = AclEntry {
        principal: principal.to_owned(),
        operation: Operation::ALL[0],
        resource: ResourcePattern::Cluster,
    };
    let principal = first.principal.clone();
    md.acls
        .range(first..)
        .take_while(move |e| e.principal == principal)
}

impl<'a> Access<'a> {
    pub(crate) fn new(principal: &'a Principal, md: &'a Metadata, super_users: &[String]) -> Self {
        let all = match principal {
            Principal::Node(_) => true,
            Principal::Client(name) if super_users.iter().any(|s| s == name) => true,
            Principal::Client(_) | Principal::Anonymous => {
                let name = principal.acl_name().unwrap_or_default();
                entries_of(md, name)
                    .any(|e| e.grants(name, Operation::Admin, ResourceKind::Cluster, ""))
            }
            Principal::Unidentified(_) => false,
        };
        Self { principal, md, all }
    }

    /// Whether the principal holds `operation` on `kind`/`name`.
    fn holds(&self, operation: Operation, kind: ResourceKind, name: &str) -> bool {
        if self.all {
            return true;
        }
        let Some(principal) = self.principal.acl_name() else {
            return false;
        };
        entries_of(self.md, principal).any(|e| e.grants(principal, operation, kind, name))
    }

    fn require(&self, operation: Operation, resource: ResourcePattern) -> Result<(), WireError> {
        let (kind, name) = match &resource {
            ResourcePattern::Cluster => (ResourceKind::Cluster, ""),
            ResourcePattern::Topic(n) | ResourcePattern::TopicPrefix(n) => {
                (ResourceKind::Topic, n.as_str())
            }
            ResourcePattern::SmartModule(n) | ResourcePattern::SmartModulePrefix(n) => {
                (ResourceKind::SmartModule, n.as_str())
            }
        };
        if self.holds(operation, kind, name) {
            Ok(())
        } else {
            Err(WireError::Denied {
                principal: self.principal.to_string(),
                operation,
                resource,
            })
        }
    }

    /// Whether the principal may see a topic at all (in lists, descriptions).
    fn sees_topic(&self, name: &str) -> bool {
        self.holds(Operation::Produce, ResourceKind::Topic, name)
            || self.holds(Operation::Consume, ResourceKind::Topic, name)
    }

    fn sees_smartmodule(&self, name: &str) -> bool {
        self.holds(Operation::Use, ResourceKind::SmartModule, name)
            || self.holds(Operation::Register, ResourceKind::SmartModule, name)
    }

    /// Checks `request` before it is served.
    pub(crate) fn authorize(&self, request: &Request) -> Result<(), WireError> {
        if let Principal::Unidentified(reason) = self.principal {
            return Err(WireError::Unauthenticated {
                reason: reason.clone(),
            });
        }
        if let Some(what) = node_only(request) {
            return match (self.principal, request) {
                (Principal::Node(me), Request::JoinCluster { id, .. }) if me != id => {
                    Err(WireError::Unauthenticated {
                        reason: format!(
                            "node {me}'s certificate cannot announce node {id}; each node joins with its own certificate"
                        ),
                    })
                }
                (Principal::Node(_), _) => Ok(()),
                (other, _) => Err(WireError::Unauthenticated {
                    reason: format!(
                        "{what} is a request between nodes and {other} is not a node; only a node certificate issued by the cluster CA may send it"
                    ),
                }),
            };
        }
        let topic = |name: &str| ResourcePattern::Topic(name.to_owned());
        let module = |name: &str| ResourcePattern::SmartModule(name.to_owned());
        match request {
            // Lists are filtered (see `filter`). A topic asked for by name
            // shows its layout (partitions, leaders), which producers and
            // consumers need before their first request; its records and
            // settings changes stay behind the grants below, so a denial
            // names the operation the caller was after.
            Request::ClusterStatus
            | Request::ListTopics
            | Request::ListPartitions { .. }
            | Request::DescribeTopic { .. }
            | Request::DescribeTopicSettings { .. }
            | Request::DescribeTopicSettingsV2 { .. }
            | Request::ListTopicsV2 { .. }
            | Request::ListPartitionsV2 { .. }
            | Request::ListSmartModules => Ok(()),
            Request::Produce(p) => self.require(Operation::Produce, topic(&p.topic)),
            Request::ProduceCompressed(p)
            | Request::ProduceWithHeaders(p)
            | Request::ProduceAt { batch: p, .. } => {
                self.require(Operation::Produce, topic(&p.topic))
            }
            Request::Fetch(f) | Request::FetchWith { fetch: f, .. } => {
                self.require(Operation::Consume, topic(&f.topic))?;
                for invocation in &f.smartmodules {
                    match &invocation.module {
                        SmartModuleSource::Registered(name) => {
                            self.require(Operation::Use, module(name))?
                        }
                        // Running one's own code is registering it for a while.
                        SmartModuleSource::AdHoc { name, .. } => {
                            self.require(Operation::Register, module(name))?
                        }
                    }
                }
                Ok(())
            }
            Request::CreateSmartModule { name, .. } | Request::DeleteSmartModule { name } => {
                self.require(Operation::Register, module(name))
            }
            Request::DescribeSmartModule { name } | Request::DownloadSmartModule { name } => {
                if self.sees_smartmodule(name) {
                    Ok(())
                } else {
                    self.require(Operation::Use, module(name))
                }
            }
            Request::CreateTopic(_)
            | Request::CreateTopicAssigned { .. }
            | Request::CreateTopicWith { .. }
            | Request::CreateTopicV2 { .. }
            | Request::DeleteTopic { .. }
            | Request::DeleteTopicForced { .. }
            | Request::AddPartitions { .. }
            | Request::UnregisterNode { .. }
            | Request::ReassignPartition { .. }
            | Request::AddAcl(_)
            | Request::RemoveAcl(_)
            | Request::ListAcls
            // Connectors run with their node's identity: admins only.
            | Request::CreateConnector(_)
            | Request::DeleteConnector { .. }
            | Request::ListConnectors { .. }
            | Request::ConnectorLogs { .. } => self.require(Operation::Admin, ResourcePattern::Cluster),
            // Committing where one stands in a topic is part of reading it.
            Request::CommitOffset(c) | Request::CommitOffsetAt { commit: c, .. } => {
                self.require(Operation::Consume, topic(&c.topic))
            }
            // Filtered to the topics the principal sees (see `filter`).
            Request::ListConsumers { .. } => Ok(()),
            Request::GroupHeartbeat(hb) => self.require(Operation::Consume, topic(&hb.topic)),
            // And the random member id, which only the member knows (lists
            // show its first 8 characters).
            Request::LeaveGroup { topic: name, .. } => {
                self.require(Operation::Consume, topic(name))
            }
            Request::DeleteConsumer {
                topic: Some(name), ..
            } => self.require(Operation::Consume, topic(name)),
            // On every topic at once: only an admin.
            Request::DeleteConsumer { topic: None, .. } => {
                self.require(Operation::Admin, ResourcePattern::Cluster)
            }
            Request::Once { change, .. } => match change {
                MetadataChange::CreateSmartModule { name, .. }
                | MetadataChange::DeleteSmartModule { name } => {
                    self.require(Operation::Register, module(name))
                }
                MetadataChange::CreateTopic(_)
                | MetadataChange::CreateTopicAssigned { .. }
                | MetadataChange::CreateTopicWith { .. }
                | MetadataChange::CreateTopicV2 { .. }
                | MetadataChange::DeleteTopic { .. }
                | MetadataChange::DeleteTopicForced { .. }
                | MetadataChange::AddPartitions { .. }
                | MetadataChange::UnregisterNode { .. }
                | MetadataChange::ReassignPartition { .. }
                | MetadataChange::AddAcl(_)
                | MetadataChange::RemoveAcl(_)
                | MetadataChange::CreateConnector(_)
                | MetadataChange::DeleteConnector { .. } => {
                    self.require(Operation::Admin, ResourcePattern::Cluster)
                }
                MetadataChange::CommitOffset(c) => {
                    self.require(Operation::Consume, topic(&c.topic))
                }
                MetadataChange::DeleteConsumer {
                    topic: Some(name), ..
                } => self.require(Operation::Consume, topic(name)),
                MetadataChange::DeleteConsumer { topic: None, .. } => {
                    self.require(Operation::Admin, ResourcePattern::Cluster)
                }
            },
            // Handled by `node_only` above.
            Request::Raft(_)
            | Request::JoinCluster { .. }
            | Request::NodeIncarnation { .. }
            | Request::ReadReplicaLog { .. }
            | Request::FinishReassignment { .. }
            | Request::FenceConsumer { .. }
            | Request::LeaderConsumers { .. }
            | Request::ForgetConsumer { .. }
            | Request::ConnectorsHere { .. }
            | Request::ConnectorLogsHere { .. } => Ok(()),
        }
    }

    /// Removes from `response` to `request` what the principal may not
    /// see: in lists, topics and SmartModules it holds no grant on; nodes'
    /// operational details (data directory, pid) unless it is an admin.
    pub(crate) fn filter(&self, request: &RequestShape, response: &mut Response) {
        if self.all {
            return;
        }
        match response {
            Response::Topics(topics) => topics.retain(|t| self.sees_topic(&t.spec.name)),
            Response::Partitions(partitions) if *request == RequestShape::List => {
                partitions.retain(|p| self.sees_topic(&p.topic))
            }
            Response::SmartModules(modules) => modules.retain(|m| self.sees_smartmodule(&m.name)),
            Response::Consumers(offsets) => offsets.retain(|o| self.sees_topic(&o.topic)),
            Response::ClusterStatus(status) => {
                for node in &mut status.nodes {
                    node.data_dir = String::new();
                    node.pid = 0;
                }
            }
            _ => {}
        }
    }
}

/// Whether [`Access::filter`] may remove anything from `response`: a caller
/// on the produce path skips reading the metadata for the others.
pub(crate) fn may_hide_something(response: &Response) -> bool {
    matches!(
        response,
        Response::Topics(_)
            | Response::Partitions(_)
            | Response::SmartModules(_)
            | Response::ClusterStatus(_)
            | Response::Consumers(_)
    )
}

/// What [`Access::filter`] needs to know of a request once it is consumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestShape {
    /// A list of everything of a kind.
    List,
    /// Anything else (a named resource, a change).
    Other,
}

impl RequestShape {
    pub(crate) fn of(request: &Request) -> Self {
        match request {
            Request::ListTopics
            | Request::ListTopicsV2 { .. }
            | Request::ListSmartModules
            | Request::ListPartitions { topic: None }
            | Request::ListPartitionsV2 { topic: None, .. } => RequestShape::List,
            _ => RequestShape::Other,
        }
    }
}

/// What a node-only request is called in a refusal; `None` for client requests.
fn node_only(request: &Request) -> Option<&'static str> {
    match request {
        Request::Raft(_) => Some("a Raft message"),
        Request::JoinCluster { .. } => Some("joining the cluster"),
        Request::NodeIncarnation { .. } => Some("a node incarnation query"),
        Request::ReadReplicaLog { .. } => Some("copying a replica's log"),
        Request::FinishReassignment { .. } => Some("finishing a reassignment"),
        Request::FenceConsumer { .. } => Some("fencing a consumer group in a partition"),
        Request::LeaderConsumers { .. } => Some("reading the offsets of led partitions"),
        Request::ForgetConsumer { .. } => Some("forgetting a consumer in led partitions"),
        Request::ConnectorsHere { .. } => Some("reporting the connectors a node runs"),
        Request::ConnectorLogsHere { .. } => Some("reading a connector's log on its node"),
        _ => None,
    }
}

/// Writes the audit line of a request: every denial, and every
/// administrative request a client made (nodes forwarding them are not
/// audited twice). Returns the same as an event for the audit topic (see
/// `crate::audit_log`), if there was anything to audit.
pub(crate) fn audit(
    node: u64,
    principal: &Principal,
    remote: SocketAddr,
    request: &Request,
    verdict: &Result<(), WireError>,
) -> Option<crate::audit_log::AuditEvent> {
    let what = request.name();
    let event = |detail: String, error: Option<&WireError>| crate::audit_log::AuditEvent {
        time_ms: sluice_proto::now_ms(),
        node,
        principal: principal.to_string(),
        remote: remote.to_string(),
        request: what.to_string(),
        detail,
        authorization: if error.is_some() { "denied" } else { "allowed" },
        error: error.map(|e| e.to_string()),
    };
    match verdict {
        Err(error) => {
            tracing::warn!(
                target: AUDIT_TARGET,
                %principal, %remote, request = what, %error,
                "denied"
            );
            Some(event(administrative_detail(request), Some(error)))
        }
        // Changes of the cluster's shape or permissions are audited even when allowed.
        // Offset commits are routine (every few seconds per consumer), not
        // changes of the cluster's shape: they would drown the audit log.
        Ok(())
            if request.is_metadata_change()
                && !is_offset_commit(request)
                && !matches!(principal, Principal::Node(_)) =>
        {
            let detail = administrative_detail(request);
            tracing::info!(
                target: AUDIT_TARGET,
                %principal, %remote, request = what, detail = ?detail,
                "allowed"
            );
            Some(event(detail, None))
        }
        Ok(()) => None,
    }
}

fn is_offset_commit(request: &Request) -> bool {
    matches!(
        request,
        Request::CommitOffset(_)
            | Request::CommitOffsetAt { .. }
            | Request::Once {
                change: MetadataChange::CommitOffset(_),
                ..
            }
    )
}

/// What an administrative request changes, for its audit line (never the
/// SmartModule's code).
fn administrative_detail(request: &Request) -> String {
    match request {
        Request::Once { change, .. } => change_detail(change),
        Request::CreateSmartModule { name, wasm } => {
            format!("smartmodule {name:?} ({} bytes)", wasm.len())
        }
        // Admin requests are few and small (a module is the big one,
        // above); no other request is copied (a denied produce batch may
        // be megabytes, and denials may come fast).
        other if other.is_metadata_change() => other
            .clone()
            .into_metadata_change()
            .map(|change| change_detail(&change))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn change_detail(change: &MetadataChange) -> String {
    match change {
        MetadataChange::CreateTopic(spec) => format!("topic {:?}", spec.name),
        MetadataChange::CreateConnector(spec) => {
            format!(
                "connector {:?} ({} bytes of file)",
                spec.name,
                spec.config.len()
            )
        }
        MetadataChange::DeleteConnector { name } => format!("connector {name:?}"),
        MetadataChange::CreateTopicAssigned { spec, assignments } => {
            format!("topic {:?} placed on {assignments:?}", spec.name)
        }
        MetadataChange::CreateTopicWith {
            spec,
            assignments,
            settings,
        } => format!(
            "topic {:?} with compression {}{}",
            spec.name,
            settings.compression,
            assignments
                .as_ref()
                .map(|a| format!(" placed on {a:?}"))
                .unwrap_or_default()
        ),
        MetadataChange::CreateTopicV2 {
            spec,
            assignments,
            settings,
        } => format!(
            "{}topic {:?} with compression {}, key hash {}{}",
            if settings.system { "system " } else { "" },
            spec.name,
            settings.compression,
            settings.key_hash,
            assignments
                .as_ref()
                .map(|a| format!(" placed on {a:?}"))
                .unwrap_or_default()
        ),
        MetadataChange::DeleteTopic { name } => format!("topic {name:?}"),
        MetadataChange::DeleteTopicForced { name } => format!("topic {name:?}, forced"),
        MetadataChange::CreateSmartModule { name, wasm } => {
            format!("smartmodule {name:?} ({} bytes)", wasm.len())
        }
        MetadataChange::DeleteSmartModule { name } => format!("smartmodule {name:?}"),
        MetadataChange::UnregisterNode { id } => format!("node {id}"),
        MetadataChange::ReassignPartition {
            topic,
            partition,
            replicas,
        } => format!("partition {topic}/{partition} to nodes {replicas:?}"),
        MetadataChange::AddAcl(entry) | MetadataChange::RemoveAcl(entry) => entry.to_string(),
        MetadataChange::CommitOffset(c) => format!(
            "consumer {:?} at offset {} of {}/{}",
            c.consumer, c.offset, c.topic, c.partition
        ),
        MetadataChange::AddPartitions { topic, count } => {
            format!("{count} partition(s) to topic {topic:?}")
        }
        MetadataChange::DeleteConsumer { consumer, topic } => match topic {
            Some(t) => format!("consumer {consumer:?} on topic {t:?}"),
            None => format!("consumer {consumer:?} on every topic"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proto::{FetchRequest, ProduceRequest, ReadFrom, StartOffset};

    fn grant(principal: &str, operation: Operation, resource: ResourcePattern) -> AclEntry {
        AclEntry {
            principal: principal.into(),
            operation,
            resource,
        }
    }

    fn produce(topic: &str) -> Request {
        Request::Produce(ProduceRequest {
            topic: topic.into(),
            partition: 0,
            records: Vec::new(),
            producer: None,
        })
    }

    fn fetch(topic: &str, modules: Vec<SmartModuleSource>) -> Request {
        Request::Fetch(FetchRequest {
            topic: topic.into(),
            partition: 0,
            start: StartOffset::Beginning,
            end_offset: None,
            max_records: None,
            follow: false,
            max_bytes: 0,
            read_from: ReadFrom::Leader,
            replica: None,
            smartmodules: modules
                .into_iter()
                .map(|module| sluice_proto::SmartModuleInvocation {
                    module,
                    kind: None,
                    params: Default::default(),
                    initial: None,
                })
                .collect(),
        })
    }

    fn access_of<'a>(principal: &'a Principal, md: &'a Metadata) -> Access<'a> {
        Access::new(principal, md, &[])
    }

    #[test]
    fn consumer_offsets_follow_the_topic_grants() {
        let mut md = Metadata::default();
        md.acls.insert(grant(
            "alice",
            Operation::Consume,
            ResourcePattern::Topic("audit".into()),
        ));
        let alice = Principal::Client("alice".into());
        let access = Access::new(&alice, &md, &[]);
        let commit = |topic: &str| sluice_proto::OffsetCommit {
            consumer: "app".into(),
            topic: topic.into(),
            partition: 0,
            offset: 1,
            session: 1,
            sequence: 1,
            state: None,
            member: None,
        };
        assert!(
            access
                .authorize(&Request::CommitOffset(commit("audit")))
                .is_ok()
        );
        assert!(
            access
                .authorize(&Request::Once {
                    id: Default::default(),
                    change: MetadataChange::CommitOffset(commit("audit")),
                })
                .is_ok()
        );
        let denied = access
            .authorize(&Request::CommitOffset(commit("payroll")))
            .unwrap_err();
        assert!(matches!(
            denied,
            WireError::Denied {
                operation: Operation::Consume,
                ..
            }
        ));
        let delete = |topic: Option<&str>| Request::DeleteConsumer {
            consumer: "app".into(),
            topic: topic.map(str::to_string),
        };
        assert!(access.authorize(&delete(Some("audit"))).is_ok());
        assert!(access.authorize(&delete(Some("payroll"))).is_err());
        // Every topic at once: admins only.
        assert!(matches!(
            access.authorize(&delete(None)),
            Err(WireError::Denied {
                operation: Operation::Admin,
                ..
            })
        ));
        // A list shows only the offsets of topics the principal sees.
        let offset = |topic: &str| sluice_proto::ConsumerOffset {
            consumer: "app".into(),
            topic: topic.into(),
            partition: 0,
            offset: Some(1),
            committed_ms: 0,
            state: None,
            owner: None,
        };
        let request = Request::ListConsumers {
            consumer: None,
            topic: None,
        };
        assert!(access.authorize(&request).is_ok());
        let mut listed = Response::Consumers(vec![offset("audit"), offset("payroll")]);
        access.filter(&RequestShape::of(&request), &mut listed);
        assert_eq!(listed, Response::Consumers(vec![offset("audit")]));
    }

    #[test]
    fn grants_allow_exactly_what_they_name() {
        let mut md = Metadata::default();
        md.acls.insert(grant(
            "alice",
            Operation::Produce,
            ResourcePattern::TopicPrefix("orders-".into()),
        ));
        md.acls.insert(grant(
            "alice",
            Operation::Consume,
            ResourcePattern::Topic("audit".into()),
        ));
        md.acls.insert(grant(
            "alice",
            Operation::Use,
            ResourcePattern::SmartModule("redact".into()),
        ));
        let alice = Principal::Client("alice".into());
        let access = Access::new(&alice, &md, &[]);
        assert!(access.authorize(&produce("orders-eu")).is_ok());
        let denied = access.authorize(&produce("audit")).unwrap_err();
        assert_eq!(
            denied,
            WireError::Denied {
                principal: "alice".into(),
                operation: Operation::Produce,
                resource: ResourcePattern::Topic("audit".into()),
            }
        );
        assert!(access.authorize(&fetch("audit", vec![])).is_ok());
        assert!(
            access
                .authorize(&fetch(
                    "audit",
                    vec![SmartModuleSource::Registered("redact".into())]
                ))
                .is_ok()
        );
        // Another module, or code of one's own, needs its own grant.
        for module in [
            SmartModuleSource::Registered("other".into()),
            SmartModuleSource::AdHoc {
                name: "redact".into(),
                wasm: vec![0; 8],
            },
        ] {
            assert!(access.authorize(&fetch("audit", vec![module])).is_err());
        }
        for admin_only in [
            Request::DeleteTopic {
                name: "orders-eu".into(),
            },
            Request::ListAcls,
            Request::Once {
                id: Default::default(),
                change: MetadataChange::UnregisterNode { id: 3 },
            },
        ] {
            assert!(matches!(
                access.authorize(&admin_only),
                Err(WireError::Denied {
                    operation: Operation::Admin,
                    ..
                })
            ));
        }
        // Principals whose names extend alice's share none of her grants.
        for other in ["alice2", "alic", "alice.x"] {
            md.acls.insert(grant(
                other,
                Operation::Consume,
                ResourcePattern::Topic("payroll".into()),
            ));
        }
        assert!(
            access_of(&alice, &md)
                .authorize(&fetch("payroll", vec![]))
                .is_err()
        );
        // Another principal holds nothing.
        let bob = Principal::Client("bob".into());
        assert!(
            Access::new(&bob, &md, &[])
                .authorize(&produce("orders-eu"))
                .is_err()
        );
        // Super users and admin grants hold everything a client may ask.
        assert!(
            Access::new(&bob, &md, &["bob".into()])
                .authorize(&Request::ListAcls)
                .is_ok()
        );
        md.acls
            .insert(grant("bob", Operation::Admin, ResourcePattern::Cluster));
        assert!(Access::new(&bob, &md, &[]).authorize(&produce("x")).is_ok());
    }

    #[test]
    fn node_only_requests_need_a_node_certificate() {
        let md = Metadata::default();
        let join = |id| Request::JoinCluster {
            id,
            addr: "127.0.0.1:1".into(),
            incarnation: "x".into(),
        };
        let read = Request::ReadReplicaLog {
            group: 1,
            from_offset: 0,
            max_bytes: 1,
        };
        for principal in [
            Principal::Client("root".into()),
            Principal::Anonymous,
            Principal::Unidentified("no identity".into()),
        ] {
            let access = Access::new(&principal, &md, &["root".into()]);
            for request in [join(2), read.clone(), Request::NodeIncarnation { id: 1 }] {
                assert!(
                    matches!(
                        access.authorize(&request),
                        Err(WireError::Unauthenticated { .. })
                    ),
                    "{principal:?} {request:?}"
                );
            }
        }
        let node = Principal::Node(2);
        let access = Access::new(&node, &md, &[]);
        assert!(access.authorize(&join(2)).is_ok());
        assert!(access.authorize(&read).is_ok());
        let err = access.authorize(&join(3)).unwrap_err().to_string();
        assert!(err.contains("cannot announce node 3"), "{err}");
    }

    #[test]
    fn lists_show_only_what_the_principal_holds_a_grant_on() {
        let mut md = Metadata::default();
        md.acls.insert(grant(
            "alice",
            Operation::Consume,
            ResourcePattern::Topic("mine".into()),
        ));
        let alice = Principal::Client("alice".into());
        let access = Access::new(&alice, &md, &[]);
        let info = |name: &str| sluice_proto::TopicInfo {
            spec: sluice_proto::TopicSpec::new(name),
            created_ms: 0,
            assignments: Vec::new(),
        };
        let mut response = Response::Topics(vec![info("mine"), info("theirs")]);
        access.filter(&RequestShape::List, &mut response);
        assert_eq!(response, Response::Topics(vec![info("mine")]));
        let partition = |topic: &str| sluice_proto::PartitionStatus {
            topic: topic.into(),
            partition: 0,
            leader: None,
            replicas: Vec::new(),
            start_offset: 0,
            committed_offset: 0,
            end_offset: 0,
            size_bytes: 0,
            leaving: Vec::new(),
        };
        let mut listed = Response::Partitions(vec![partition("mine"), partition("theirs")]);
        access.filter(&RequestShape::List, &mut listed);
        assert_eq!(listed, Response::Partitions(vec![partition("mine")]));
        // Asked for by name, a topic's layout is shown: a producer needs it
        // before its first batch, and the batch itself is what is refused.
        let mut named = Response::Partitions(vec![partition("theirs")]);
        access.filter(&RequestShape::Other, &mut named);
        assert_eq!(named, Response::Partitions(vec![partition("theirs")]));
        assert!(access.authorize(&produce("theirs")).is_err());
        // Where nodes keep their data and which process runs them is for admins.
        let status = || {
            Response::ClusterStatus(sluice_proto::ClusterStatus {
                cluster_id: "c".into(),
                controller_leader: Some(1),
                nodes: vec![sluice_proto::NodeStatus {
                    id: 1,
                    advertised_addr: "127.0.0.1:9003".into(),
                    listen_addr: "127.0.0.1:9003".into(),
                    data_dir: "/var/lib/sluice".into(),
                    pid: 4242,
                    role: "controller-leader".into(),
                    healthy: true,
                    version: "0.1.0".into(),
                    uptime_ms: 1,
                }],
            })
        };
        let mut seen = status();
        access.filter(&RequestShape::Other, &mut seen);
        let Response::ClusterStatus(seen) = seen else {
            unreachable!()
        };
        assert_eq!(
            (seen.nodes[0].data_dir.as_str(), seen.nodes[0].pid),
            ("", 0)
        );
        let admin = Principal::Client("root".into());
        let mut full = status();
        Access::new(&admin, &md, &["root".into()]).filter(&RequestShape::Other, &mut full);
        assert_eq!(full, status());
    }

    #[test]
    fn principal_bounds_agree_between_certificates_and_acls() {
        assert_eq!(
            sluice_transport::tls::PRINCIPAL_NAME_BYTES_MAX,
            sluice_proto::limits::ACL_PRINCIPAL_BYTES_MAX
        );
        // No certificate may name the anonymous principal.
        assert!(sluice_transport::check_principal_name(ANONYMOUS_PRINCIPAL).is_err());
    }
}
