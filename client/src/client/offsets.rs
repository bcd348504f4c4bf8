//! Committed consumer offsets: commits sent to each partition's leader
//! (retried while it has none), and the lists and deletions the controller
//! answers.

use sluice_proto::{Request, Response};

use super::{ADMIN_RETRY_BUDGET, Backoff, Client, RETRY_BACKOFF_FIRST, RETRY_BACKOFF_MAX};
use crate::error::{ClientError, Result};

impl Client {
    /// Stores where a consumer stands in a partition (see
    /// [`OffsetCommit`](sluice_proto::OffsetCommit)); an
    /// [`OffsetCommitter`](crate::OffsetCommitter) numbers and sends these
    /// for you. Not wrapped in an at-most-once id: setting an offset twice
    /// to the same value changes nothing, and the commit's own session and
    /// number keep a late copy from moving it back.
    ///
    /// Sent to the partition's leader, which stores it in the partition's
    /// own replicated log.
    pub async fn commit_offset(&self, commit: sluice_proto::OffsetCommit) -> Result<()> {
        let route = (commit.topic.clone(), commit.partition);
        self.commit_routed(route, Request::CommitOffset(commit))
            .await
    }

    /// A consumer-group member's [`Self::commit_offset`]: `generation` is
    /// that of the coordinator's last answer the member acted on, and the
    /// partition refuses the commit (`FencedMember`) once it was given to a
    /// member in a later generation.
    pub async fn commit_offset_at(
        &self,
        commit: sluice_proto::OffsetCommit,
        generation: u64,
    ) -> Result<()> {
        let route = (commit.topic.clone(), commit.partition);
        self.commit_routed(route, Request::CommitOffsetAt { commit, generation })
            .await
    }

    /// Sends a commit to the leader of its partition, retrying while there
    /// is none (within the admin retry budget).
    async fn commit_routed(&self, route: (String, u32), request: Request) -> Result<()> {
        let deadline = tokio::time::Instant::now() + ADMIN_RETRY_BUDGET;
        let mut backoff = Backoff::new(RETRY_BACKOFF_FIRST, RETRY_BACKOFF_MAX);
        loop {
            let route = Some((route.0.as_str(), route.1));
            match self.routed(route, &request, "commit offset").await {
                Ok((Response::OffsetCommitted, _)) => return Ok(()),
                Ok((other, _)) => return Err(self.unexpected("commit offset", &other)),
                Err(ClientError::Server(e))
                    if e.is_retriable()
                        && tokio::time::Instant::now() + backoff.next() < deadline =>
                {
                    tracing::debug!(error = %e, ?backoff, "retrying an offset commit");
                    backoff.wait().await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Committed offsets of `consumer` (or of every consumer) on `topic`
    /// (or on every topic); each names its topic and partition. SmartModule
    /// states come only for one consumer on one topic.
    pub async fn consumer_offsets(
        &self,
        consumer: Option<&str>,
        topic: Option<&str>,
    ) -> Result<Vec<sluice_proto::ConsumerOffset>> {
        let request = Request::ListConsumers {
            consumer: consumer.map(str::to_string),
            topic: topic.map(str::to_string),
        };
        match self.retrying(request).await? {
            Response::Consumers(offsets) => Ok(offsets),
            other => Err(self.unexpected("list consumers", &other)),
        }
    }

    /// Forgets a consumer's committed offsets, on `topic` or on every topic:
    /// it starts where its start flags say next time.
    pub async fn delete_consumer(&self, consumer: &str, topic: Option<&str>) -> Result<()> {
        let request = Request::DeleteConsumer {
            consumer: consumer.to_string(),
            topic: topic.map(str::to_string),
        };
        match self.admin(request).await? {
            Response::ConsumerDeleted => Ok(()),
            other => Err(self.unexpected("delete consumer", &other)),
        }
    }

    pub async fn unregister_node(&self, id: u64) -> Result<()> {
        match self.admin(Request::UnregisterNode { id }).await? {
            Response::NodeUnregistered => Ok(()),
            other => Err(self.unexpected("unregister node", &other)),
        }
    }
}
