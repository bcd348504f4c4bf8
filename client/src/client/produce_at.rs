//! Conditional appends ([`Client::produce_at`]): a batch written only if
//! the partition ends where the writer believes, so that a writer that may
//! run twice (a derived topic's copy) writes each record once.

use sluice_proto::{CompressedProduce, Compression, ProduceResponse, Record, Request};

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
}
