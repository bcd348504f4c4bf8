//! Produce requests on their way to a partition's leader: the one routed
//! send every produce shape takes ([`Client::produce_to_leader`]), and
//! conditional appends ([`Client::produce_at`]): a batch written only if the
//! partition ends where the writer believes, so that a writer that may run
//! twice (a derived topic's copy) writes each record once.

use std::sync::Mutex;

use sluice_proto::{CompressedProduce, Compression, ProduceResponse, Record, Request, Response};

use super::{Client, check_record_size};
use crate::error::Result;

impl Client {
    /// Appends `records` to `topic`/`partition` only if it ends at
    /// `expected_offset` when the batch is applied. A partition that ends
    /// elsewhere answers [`sluice_proto::WireError::NotAtOffset`] (in
    /// [`crate::ClientError::Server`]) and nothing is written: another
    /// writer, or this one's own earlier attempt whose answer was lost,
    /// came first; read the partition's end and go on from there.
    pub async fn produce_at(
        &self,
        topic: &str,
        partition: u32,
        expected_offset: u64,
        records: Vec<Record>,
    ) -> Result<ProduceResponse> {
        for record in &records {
            check_record_size(topic, record)?;
        }
        let encoded = sluice_proto::encoding::to_vec(&records).expect("records always encode");
        let request = Request::ProduceAt {
            batch: CompressedProduce {
                topic: topic.to_string(),
                partition,
                compression: Compression::None,
                records: encoded,
                producer: None,
            },
            expected_offset,
        };
        self.produce_to_leader(topic, partition, &request, "produce at offset")
            .await
    }

    /// Sends a produce `request` (of any shape) to the partition's leader,
    /// watching for its death, and returns where the batch was written.
    pub(crate) async fn produce_to_leader(
        &self,
        topic: &str,
        partition: u32,
        request: &Request,
        what: &'static str,
    ) -> Result<ProduceResponse> {
        // Where the request is: first the known leader, else the first node
        // `routed_via` tries, then wherever redirects lead. If that node
        // dies, the request stays unanswered until the connection times out
        // (or its handshake does), unless the other replicas say so first.
        let first = self
            .leaders()
            .get(&(topic.to_string(), partition))
            .copied()
            .unwrap_or_else(|| self.bootstrap_candidates()[0]);
        let target = Mutex::new((first, tokio::time::Instant::now()));
        let exchange = self.routed_via(Some((topic, partition)), request, what, Some(&target));
        let (response, _) = self
            .watch_leader(topic, partition, &target, what, exchange)
            .await?;
        match response {
            Response::Produced(produced) => Ok(produced),
            other => Err(self.unexpected(what, &other)),
        }
    }
}
