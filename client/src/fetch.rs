//! [`FetchStream`]: the records of one partition as the node pushes them.

use futures::Stream;
use sluice_proto::limits::FRAME_SIZE_BYTES_MAX;
use sluice_proto::{ConsumerRecord, ConsumerRecordRef, Response, codec};

use crate::client::{decode_response, response_name};
use crate::error::{ClientError, Result};

/// An open fetch on one partition. The node pushes batches on its own (no
/// polling); with a following fetch the stream only ends on error or when
/// dropped. Dropping it stops the fetch on the node.
#[derive(Debug)]
pub struct FetchStream {
    endpoint: String,
    recv: quinn::RecvStream,
    partition: u32,
    start_offset: u64,
    end_offset_at_start: u64,
    high_watermark: u64,
    next_offset: u64,
    done: bool,
}

impl FetchStream {
    pub(crate) fn new(
        endpoint: String,
        recv: quinn::RecvStream,
        partition: u32,
        start_offset: u64,
        end_offset: u64,
    ) -> Self {
        Self {
            endpoint,
            recv,
            partition,
            start_offset,
            end_offset_at_start: end_offset,
            high_watermark: end_offset,
            next_offset: start_offset,
            done: false,
        }
    }

    /// The partition read.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The first offset delivered, as the node resolved the requested start.
    pub fn start_offset(&self) -> u64 {
        self.start_offset
    }

    /// The partition's end offset when the fetch started.
    pub fn end_offset_at_start(&self) -> u64 {
        self.end_offset_at_start
    }

    /// The latest committed end offset the node reported.
    pub fn high_watermark(&self) -> u64 {
        self.high_watermark
    }

    /// Where to resume reading: after the last record delivered (or the
    /// node's `next_offset` once the fetch has ended).
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// The next batch of records; `Ok(None)` once a non-following fetch has
    /// reached its end. Empty batches are skipped.
    pub async fn next_batch(&mut self) -> Result<Option<Vec<ConsumerRecord>>> {
        self.next_batch_with(|records| {
            records
                .iter()
                .map(ConsumerRecordRef::to_owned_record)
                .collect()
        })
        .await
    }

    /// Like [`next_batch`](Self::next_batch), but hands `f` the records
    /// where the received frame holds them, and returns what `f` returns:
    /// no allocation or copy per record, for consumers that look at each
    /// record once (count, checksum, forward, parse into their own types).
    ///
    /// ```no_run
    /// # async fn run(mut fetch: sluice_client::FetchStream) -> sluice_client::Result<()> {
    /// let mut bytes = 0;
    /// while let Some(n) = fetch.next_batch_with(|records| records.len()).await? {
    ///     bytes += n;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn next_batch_with<R>(
        &mut self,
        f: impl FnOnce(&[ConsumerRecordRef<'_>]) -> R,
    ) -> Result<Option<R>> {
        loop {
            if self.done {
                return Ok(None);
            }
            let frame =
                match sluice_transport::read_frame(&mut self.recv, FRAME_SIZE_BYTES_MAX).await {
                    Ok(Some(frame)) => frame,
                    Ok(None) => {
                        self.done = true;
                        return Err(
                            self.lost("the node ended the fetch without saying it was done".into())
                        );
                    }
                    Err(e) => {
                        self.done = true;
                        return Err(self.lost(e.to_string()));
                    }
                };
            // Records, the common case, are read in place; anything else
            // (and any frame that fails to decode, for the error) goes
            // through the owned decoder.
            if let Ok(Some((records, high_watermark))) = codec::decode_records_ref(&frame) {
                self.high_watermark = self.high_watermark.max(high_watermark);
                if let Some(last) = records.last() {
                    self.next_offset = last.offset + 1;
                }
                if records.is_empty() {
                    continue;
                }
                return Ok(Some(f(&records)));
            }
            let response = match decode_response(&self.endpoint, "fetch", &frame) {
                Ok(response) => response,
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            };
            match response {
                Response::FetchEnd { next_offset } => {
                    self.next_offset = next_offset;
                    self.done = true;
                    // The node finishes the stream after this frame.
                    sluice_transport::read_end_if_arrived(&mut self.recv);
                    return Ok(None);
                }
                other => {
                    self.done = true;
                    return Err(ClientError::Protocol {
                        endpoint: self.endpoint.clone(),
                        what: "fetch",
                        reason: format!(
                            "unexpected answer {} in a fetch stream",
                            response_name(&other)
                        ),
                    });
                }
            }
        }
    }

    /// The records one by one, as a [`Stream`].
    pub fn into_stream(self) -> impl Stream<Item = Result<ConsumerRecord>> + Send + Unpin {
        let batches = futures::stream::unfold(self, |mut fetch| async move {
            match fetch.next_batch().await {
                Ok(Some(batch)) => Some((Ok(batch), fetch)),
                Ok(None) => None,
                Err(e) => Some((Err(e), fetch)),
            }
        });
        Box::pin(futures::StreamExt::flat_map(batches, |batch| {
            let items: Vec<Result<ConsumerRecord>> = match batch {
                Ok(records) => records.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(items)
        }))
    }

    fn lost(&self, reason: String) -> ClientError {
        ClientError::ConnectionLost {
            endpoint: self.endpoint.clone(),
            what: "fetch",
            reason,
        }
    }
}
