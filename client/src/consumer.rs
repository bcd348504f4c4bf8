//! [`Consumer`]: a partition's records as a stream that survives the loss of
//! the node serving it.
//!
//! A fetch stream ends with an error when its node dies or leadership moves.
//! The consumer then opens a new fetch from the offset after the last record
//! it delivered (an absolute offset, so nothing is skipped or repeated), on
//! whichever replica the request's `read_from` allows, retrying with backoff
//! for up to [`RESUME_BUDGET`] per interruption.

use futures::Stream;
use sluice_proto::{ConsumerRecord, FetchRequest, StartOffset};
use tokio::sync::mpsc;

use crate::timeouts::{Backoff, RESUME_BACKOFF_FIRST, RESUME_BACKOFF_MAX, RESUME_BUDGET};
use crate::{Client, ClientError, Result};

/// Batches of records read by background tasks (one per partition read);
/// dropping the consumer stops them.
pub struct Consumer {
    rx: mpsc::Receiver<Result<Vec<ConsumerRecord>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Consumer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Consumer {
    pub(crate) fn start(
        client: Client,
        request: FetchRequest,
        options: Vec<sluice_proto::FetchOption>,
    ) -> Self {
        Self::start_many(client, vec![request], options)
    }

    /// Reads each of `requests` on its own task (each resumed as
    /// [`Consumer`] resumes one), their batches coming out as they arrive:
    /// each partition's in order, partitions interleaved. Ends once every
    /// read has ended; an error of one read is passed on and the others go on.
    pub(crate) fn start_many(
        client: Client,
        requests: Vec<FetchRequest>,
        options: Vec<sluice_proto::FetchOption>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(16);
        let tasks = requests
            .into_iter()
            .map(|request| tokio::spawn(run(client.clone(), request, options.clone(), tx.clone())))
            .collect();
        Self { rx, tasks }
    }

    /// The next batch; `None` when a non-following read reached its end.
    pub async fn next_batch(&mut self) -> Result<Option<Vec<ConsumerRecord>>> {
        self.rx.recv().await.transpose()
    }

    /// One record at a time.
    pub fn into_stream(self) -> impl Stream<Item = Result<ConsumerRecord>> + Send + Unpin {
        Box::pin(futures::stream::unfold(
            (self, Vec::new().into_iter()),
            |(mut consumer, mut pending)| async move {
                loop {
                    if let Some(record) = pending.next() {
                        return Some((Ok(record), (consumer, pending)));
                    }
                    match consumer.next_batch().await {
                        Ok(Some(batch)) => pending = batch.into_iter(),
                        Ok(None) => return None,
                        Err(e) => return Some((Err(e), (consumer, Vec::new().into_iter()))),
                    }
                }
            },
        ))
    }
}

/// Reads `request`, resuming after interruptions. `options` go with every
/// attempt: a resumed stream's modules are new instances, so they look back
/// again (from the partition's end then).
async fn run(
    client: Client,
    mut request: FetchRequest,
    options: Vec<sluice_proto::FetchOption>,
    tx: mpsc::Sender<Result<Vec<ConsumerRecord>>>,
) {
    let mut backoff = Backoff::new(RESUME_BACKOFF_FIRST, RESUME_BACKOFF_MAX);
    let mut resume_deadline: Option<tokio::time::Instant> = None;
    loop {
        let mut fetch = match client.fetch_with(request.clone(), options.clone()).await {
            Ok(fetch) => fetch,
            Err(e)
                if e.is_retriable()
                    && resume_deadline.is_some_and(|d| tokio::time::Instant::now() < d) =>
            {
                backoff.wait().await;
                continue;
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        backoff.reset();
        // From here on the start is absolute: where this fetch began.
        request.start = StartOffset::Absolute(fetch.start_offset());
        loop {
            match fetch.next_batch().await {
                Ok(Some(batch)) => {
                    if let Some(last) = batch.last() {
                        request.start = StartOffset::Absolute(last.offset + 1);
                    }
                    if let Some(n) = request.max_records.as_mut() {
                        *n = n.saturating_sub(batch.len() as u64);
                    }
                    let done = request.max_records == Some(0);
                    if tx.send(Ok(batch)).await.is_err() || done {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) if is_interruption(&e) => {
                    tracing::warn!(topic = %request.topic, partition = request.partition, error = %e, "fetch interrupted; resuming");
                    resume_deadline = Some(tokio::time::Instant::now() + RESUME_BUDGET);
                    break;
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    }
}

/// Errors after which the same read may continue elsewhere.
fn is_interruption(e: &ClientError) -> bool {
    e.is_retriable()
}
