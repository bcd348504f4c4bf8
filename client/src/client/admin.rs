//! The cluster's administration: its status, topics and where their
//! partitions are placed, SmartModules, ACLs and nodes. Each call is one metadata
//! request, retried by `Client::admin` within the admin retry budget.

use sluice_proto::{
    ClusterStatus, PartitionAssignment, Request, Response, SmartModuleInfo, TopicInfo, TopicSpec,
};

use super::Client;
use crate::error::Result;

impl Client {
    /// Node status and the controller leader.
    pub async fn cluster_status(&self) -> Result<ClusterStatus> {
        match self.admin(Request::ClusterStatus).await? {
            Response::ClusterStatus(status) => Ok(status),
            other => Err(self.unexpected("cluster status", &other)),
        }
    }

    /// Creates a topic with the settings a topic gets without options
    /// ([`TopicSettings::for_new_topic`](sluice_proto::TopicSettings::for_new_topic));
    /// the spec is checked locally first.
    pub async fn create_topic(&self, spec: TopicSpec) -> Result<TopicInfo> {
        let settings = sluice_proto::TopicSettings::for_new_topic();
        self.create_topic_with(spec, None, settings).await
    }

    /// Creates a topic whose replicas `assignments` places (one per
    /// partition, in order; the first replica of each starts its group and
    /// usually leads first), as [`Client::create_topic`] otherwise.
    pub async fn create_topic_assigned(
        &self,
        spec: TopicSpec,
        assignments: Vec<sluice_proto::PartitionAssignment>,
    ) -> Result<TopicInfo> {
        let settings = sluice_proto::TopicSettings::for_new_topic();
        self.create_topic_with(spec, Some(assignments), settings)
            .await
    }

    /// Adds `count` partitions to `topic`; returns the topic as it is now.
    /// Producers created before keep the partition count they read (keys
    /// map to partitions by that count until they are created again).
    pub async fn add_partitions(&self, topic: &str, count: u32) -> Result<TopicInfo> {
        let request = Request::AddPartitions {
            topic: topic.to_string(),
            count,
        };
        match self.admin(request).await? {
            Response::Topic(info) | Response::TopicCreated(info) => Ok(info),
            other => Err(self.unexpected("add partitions", &other)),
        }
    }

    /// Deletes a topic and its data.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        match self
            .admin(Request::DeleteTopic {
                name: name.to_string(),
            })
            .await?
        {
            Response::TopicDeleted => Ok(()),
            other => Err(self.unexpected("delete topic", &other)),
        }
    }

    /// Registers a SmartModule under `name`; the cluster validates it (valid
    /// wasm, one transform export, supported ABI) and replicates it to every SPU.
    pub async fn create_smartmodule(&self, name: &str, wasm: Vec<u8>) -> Result<SmartModuleInfo> {
        match self
            .admin(Request::CreateSmartModule {
                name: name.to_string(),
                wasm,
            })
            .await?
        {
            Response::SmartModuleCreated(info) => Ok(info),
            other => Err(self.unexpected("create SmartModule", &other)),
        }
    }

    /// Every registered SmartModule.
    pub async fn list_smartmodules(&self) -> Result<Vec<SmartModuleInfo>> {
        match self.admin(Request::ListSmartModules).await? {
            Response::SmartModules(list) => Ok(list),
            other => Err(self.unexpected("list SmartModules", &other)),
        }
    }

    /// One registered SmartModule.
    pub async fn describe_smartmodule(&self, name: &str) -> Result<SmartModuleInfo> {
        match self
            .admin(Request::DescribeSmartModule {
                name: name.to_string(),
            })
            .await?
        {
            Response::SmartModule(info) => Ok(info),
            other => Err(self.unexpected("describe SmartModule", &other)),
        }
    }

    /// Removes a registered SmartModule. Streams already using it keep their
    /// instance until they end; new streams cannot use it.
    pub async fn delete_smartmodule(&self, name: &str) -> Result<()> {
        match self
            .admin(Request::DeleteSmartModule {
                name: name.to_string(),
            })
            .await?
        {
            Response::SmartModuleDeleted => Ok(()),
            other => Err(self.unexpected("delete SmartModule", &other)),
        }
    }

    /// A registered module's code (to run it in this process, e.g. in a producer).
    pub async fn download_smartmodule(&self, name: &str) -> Result<(SmartModuleInfo, Vec<u8>)> {
        match self
            .admin(Request::DownloadSmartModule {
                name: name.to_string(),
            })
            .await?
        {
            Response::SmartModuleWasm { info, wasm } => Ok((info, wasm)),
            other => Err(self.unexpected("download SmartModule", &other)),
        }
    }

    /// Every topic.
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>> {
        match self.admin(Request::ListTopics).await? {
            Response::Topics(topics) => Ok(topics),
            other => Err(self.unexpected("list topics", &other)),
        }
    }

    /// One topic.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicInfo> {
        match self
            .admin(Request::DescribeTopic {
                name: name.to_string(),
            })
            .await?
        {
            Response::Topic(info) => Ok(info),
            other => Err(self.unexpected("describe topic", &other)),
        }
    }

    /// Moves a partition to a new replica set. Returns once the controller
    /// has recorded it; the move itself (new replicas catching up, the group
    /// switching voters, old replicas deleting their copy) continues in the
    /// cluster: `leaving` in [`Client::list_partitions`] empties when done.
    pub async fn reassign_partition(
        &self,
        topic: &str,
        partition: u32,
        replicas: Vec<u64>,
    ) -> Result<PartitionAssignment> {
        let request = Request::ReassignPartition {
            topic: topic.to_string(),
            partition,
            replicas,
        };
        match self.admin(request).await? {
            Response::PartitionReassigned(a) => Ok(a),
            other => Err(self.unexpected("reassign partition", &other)),
        }
    }

    /// Grants a permission (`sluice acl add`); needs admin.
    pub async fn add_acl(&self, entry: sluice_proto::AclEntry) -> Result<()> {
        match self.admin(Request::AddAcl(entry)).await? {
            Response::AclAdded => Ok(()),
            other => Err(self.unexpected("add ACL", &other)),
        }
    }

    /// Withdraws a permission (`sluice acl remove`); needs admin.
    pub async fn remove_acl(&self, entry: sluice_proto::AclEntry) -> Result<()> {
        match self.admin(Request::RemoveAcl(entry)).await? {
            Response::AclRemoved => Ok(()),
            other => Err(self.unexpected("remove ACL", &other)),
        }
    }

    /// Every ACL entry of the cluster (`sluice acl list`); needs admin.
    pub async fn list_acls(&self) -> Result<Vec<sluice_proto::AclEntry>> {
        match self.request(Request::ListAcls).await? {
            Response::Acls(entries) => Ok(entries),
            other => Err(self.unexpected("list ACLs", &other)),
        }
    }
}
