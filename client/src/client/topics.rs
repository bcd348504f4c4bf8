//! Topics with settings beyond their spec (compression, key hash, system
//! topics), asked in the requests that carry the settings' current shape.
//!
//! A cluster of an earlier release cannot decode those requests and answers
//! `MalformedRequest`; these calls then fall back on the requests it knows,
//! which carry what it can hold (compression only: its topics hash keys
//! with FNV-1a and it has no system topics).

use sluice_proto::{PartitionAssignment, PartitionStatus, WireError};
use sluice_proto::{Request, Response, TopicInfo, TopicSettings, TopicSettingsV1, TopicSpec};

use super::Client;
use crate::error::{ClientError, Result};

/// Whether `e` is a node failing to decode a request of a later release.
fn not_understood(e: &ClientError) -> bool {
    matches!(e, ClientError::Server(WireError::MalformedRequest { .. }))
}

impl Client {
    /// Creates a topic with `settings`, placed by `assignments` (as
    /// [`Client::create_topic_assigned`]) or by the cluster; the spec is
    /// checked locally first. [`TopicSettings::for_new_topic`] is what a
    /// topic created without options gets.
    pub async fn create_topic_with(
        &self,
        spec: TopicSpec,
        assignments: Option<Vec<PartitionAssignment>>,
        settings: TopicSettings,
    ) -> Result<TopicInfo> {
        spec.validate().map_err(ClientError::Server)?;
        let request = Request::CreateTopicV2 {
            spec: spec.clone(),
            assignments: assignments.clone(),
            settings: settings.clone(),
        };
        let response = match self.admin(request).await {
            Err(e) if not_understood(&e) && !settings.system => {
                tracing::debug!(
                    "the cluster predates key hash settings; creating the topic as it can"
                );
                let request = Request::CreateTopicWith {
                    spec,
                    assignments,
                    settings: TopicSettingsV1 {
                        compression: settings.compression,
                    },
                };
                self.admin(request).await?
            }
            other => other?,
        };
        match response {
            Response::TopicCreated(info) | Response::Topic(info) => Ok(info),
            other => Err(self.unexpected("create topic", &other)),
        }
    }

    /// A topic's settings beyond its spec.
    pub async fn topic_settings(&self, name: &str) -> Result<TopicSettings> {
        let request = Request::DescribeTopicSettingsV2 {
            name: name.to_string(),
        };
        let response = match self.admin(request).await {
            Err(e) if not_understood(&e) => {
                let request = Request::DescribeTopicSettings {
                    name: name.to_string(),
                };
                self.admin(request).await?
            }
            other => other?,
        };
        match response {
            Response::TopicSettingsV2(settings) => Ok(settings),
            Response::TopicSettings(v1) => Ok(v1.into()),
            other => Err(self.unexpected("describe topic settings", &other)),
        }
    }

    /// Deletes a topic even if it is a system topic (a plain
    /// [`Client::delete_topic`] of one is refused with
    /// [`WireError::SystemTopic`]).
    pub async fn delete_topic_forced(&self, name: &str) -> Result<()> {
        let request = Request::DeleteTopicForced {
            name: name.to_string(),
        };
        match self.admin(request).await? {
            Response::TopicDeleted => Ok(()),
            other => Err(self.unexpected("delete topic", &other)),
        }
    }

    /// The system topics (the cluster's own, such as its audit trail);
    /// [`Client::list_topics`] lists the others. A cluster of an earlier
    /// release has none.
    pub async fn list_system_topics(&self) -> Result<Vec<TopicInfo>> {
        match self.admin(Request::ListTopicsV2 { system: true }).await {
            Ok(Response::Topics(topics)) => Ok(topics),
            Ok(other) => Err(self.unexpected("list topics", &other)),
            Err(e) if not_understood(&e) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The partitions of the system topics, each as its leader sees it (as
    /// [`Client::list_partitions`] lists the others').
    pub async fn list_system_partitions(&self) -> Result<Vec<PartitionStatus>> {
        let request = Request::ListPartitionsV2 {
            topic: None,
            system: true,
        };
        match self.partitions_by_leaders(request).await {
            Err(e) if not_understood(&e) => Ok(Vec::new()),
            other => other,
        }
    }
}
