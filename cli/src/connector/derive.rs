//! A derived topic (`sluice topic create B --from A --transforms F`): a
//! connector that reads every partition of A, runs each record through the
//! chain of modules, and appends the outputs to the same partition of B.
//!
//! Exactly once, with no state of its own: every output carries the offset
//! of the record of A it came from (header [`SOURCE_OFFSET_HEADER`]), the
//! outputs of one input go in one append, and every append is conditional
//! on B's end (`Request::ProduceAt`): it is written only if the partition
//! still ends where the runner believes. A runner that starts (again, or on
//! another node after a move) reads B's last record to learn where it
//! stands; one whose append is refused (another runner, or its own retried
//! append, got there first) reads it again. So two runners at once (a node
//! cut off from the controller still running its copy) cannot both write a
//! record, and a crash between an append and anything else loses nothing.
//! Inputs the chain drops leave no trace in B: after a restart they are read
//! and dropped again, which changes nothing.
//!
//! The chain runs here, one input at a time (what its outputs are must be
//! known per input), so an aggregate, whose accumulator would start afresh
//! after every restart, is refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};
use sluice_client::proto::limits::{PRODUCE_BATCH_RECORDS_MAX, RECORD_SIZE_BYTES_DEFAULT};
use sluice_client::proto::{
    FetchRequest, Record, RecordHeader, SmartModuleInvocation, StartOffset, WireError,
};
use sluice_client::transform::LocalChain;
use sluice_client::{Client, ClientError};

use crate::timeouts::DERIVE_RETRY_WAIT;

/// The header naming the offset, in the source topic's same partition, of
/// the record an output came from (decimal text).
pub const SOURCE_OFFSET_HEADER: &str = "sluice-source-offset";

/// Bytes of outputs one conditional append carries at most (more go in the
/// next append, never splitting one input's outputs).
const APPEND_BYTES_MAX: usize = 4 * RECORD_SIZE_BYTES_DEFAULT;

/// Counts of all partitions together, for the connector's status.
#[derive(Default)]
pub struct Counts {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    pub dropped: AtomicU64,
    /// Appends refused because B had moved on (then read again).
    pub refused: AtomicU64,
}

/// Where a partition of B stands: the next offset of A to read, and B's end.
#[derive(Debug, PartialEq, Eq)]
struct Position {
    next_input: Option<u64>,
    end: u64,
}

/// Copies every partition of `from` into `to` through `transforms` until
/// one partition's copy fails (the process then ends, and its supervisor
/// starts it again).
pub async fn run(
    client: &Client,
    name: &str,
    from: &str,
    to: &str,
    transforms: &[SmartModuleInvocation],
    counts: Arc<Counts>,
) -> anyhow::Result<()> {
    let source = client
        .describe_topic(from)
        .await
        .with_context(|| format!("connector {name}: cannot read its source topic {from:?}"))?;
    let target = client
        .describe_topic(to)
        .await
        .with_context(|| format!("connector {name}: cannot read its topic {to:?}"))?;
    if source.spec.partitions != target.spec.partitions {
        bail!(
            "connector {name}: topic {to:?} has {} partitions and {from:?} {}; a derived topic \
             has its source's partitions (partition p from partition p)",
            target.spec.partitions,
            source.spec.partitions
        );
    }
    let mut copies = tokio::task::JoinSet::new();
    for partition in 0..source.spec.partitions {
        let chain = LocalChain::load(client, transforms.to_vec())
            .await
            .with_context(|| format!("connector {name}: cannot load its SmartModules"))?;
        if chain.has_aggregate() {
            bail!(
                "connector {name}: an aggregate cannot derive a topic (its accumulator would \
                 start afresh at every restart); use filter, map, filter-map or array-map"
            );
        }
        let copy = Copy {
            client: client.clone(),
            from: from.to_string(),
            to: to.to_string(),
            partition,
            chain,
            counts: counts.clone(),
        };
        copies.spawn(copy.run());
    }
    while let Some(done) = copies.join_next().await {
        done.context("a partition's copy panicked")??;
    }
    Ok(())
}

/// One partition's copy.
struct Copy {
    client: Client,
    from: String,
    to: String,
    partition: u32,
    chain: LocalChain,
    counts: Arc<Counts>,
}

impl Copy {
    async fn run(mut self) -> anyhow::Result<()> {
        loop {
            let at = match self.position().await {
                Ok(at) => at,
                Err(e) if transient(&e) => {
                    eprintln!(
                        "reading where {}/{} stands failed ({e:#}); again",
                        self.to, self.partition
                    );
                    tokio::time::sleep(DERIVE_RETRY_WAIT).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let start = at
                .next_input
                .map_or(StartOffset::Beginning, StartOffset::Absolute);
            let request = FetchRequest::new(&self.from, self.partition)
                .start(start)
                .follow();
            let mut input = self.client.consume(request);
            let mut end = at.end;
            'read: loop {
                let Some(batch) = input
                    .next_batch()
                    .await
                    .with_context(|| format!("cannot read {}/{}", self.from, self.partition))?
                else {
                    return Ok(());
                };
                let groups = self.outputs(batch)?;
                for chunk in chunks(groups) {
                    let n = chunk.len() as u64;
                    match self
                        .client
                        .produce_at(&self.to, self.partition, end, chunk)
                        .await
                    {
                        Ok(_) => {
                            end += n;
                            self.counts.records_out.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(ClientError::Server(WireError::NotAtOffset { .. })) => {
                            self.counts.refused.fetch_add(1, Ordering::Relaxed);
                            break 'read;
                        }
                        // The leader moved or did not answer: whether the
                        // append was written is unknown, and B's end says.
                        Err(e) if e.is_retriable() => {
                            self.counts.refused.fetch_add(1, Ordering::Relaxed);
                            eprintln!(
                                "appending to {}/{} failed ({e}); reading where it stands again",
                                self.to, self.partition
                            );
                            tokio::time::sleep(DERIVE_RETRY_WAIT).await;
                            break 'read;
                        }
                        Err(e) => {
                            return Err(e).with_context(|| {
                                format!("cannot append to {}/{}", self.to, self.partition)
                            });
                        }
                    }
                }
            }
        }
    }

    /// Each input's outputs (possibly none), stamped with its offset.
    fn outputs(
        &mut self,
        batch: Vec<sluice_client::proto::ConsumerRecord>,
    ) -> anyhow::Result<Vec<Vec<Record>>> {
        let mut groups = Vec::with_capacity(batch.len());
        self.counts
            .records_in
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        for r in batch {
            let offset = r.offset;
            let input = Record {
                key: r.key,
                value: r.value,
                timestamp_ms: r.timestamp_ms,
                headers: r.headers,
            };
            let mut outputs = tokio::task::block_in_place(|| self.chain.apply(vec![input]))
                .with_context(|| {
                    format!(
                        "a SmartModule failed on {}/{} offset {offset}",
                        self.from, self.partition
                    )
                })?;
            if outputs.is_empty() {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            for o in &mut outputs {
                o.headers.retain(|h| h.key != SOURCE_OFFSET_HEADER);
                o.headers.push(RecordHeader {
                    key: SOURCE_OFFSET_HEADER.into(),
                    value: offset.to_string().into_bytes(),
                });
            }
            groups.push(outputs);
        }
        Ok(groups)
    }

    /// Where this partition of B stands, from its last record.
    async fn position(&self) -> anyhow::Result<Position> {
        let (to, p) = (&self.to, self.partition);
        let end = self
            .client
            .list_partitions(Some(to))
            .await
            .with_context(|| format!("cannot list the partitions of {to:?}"))?
            .into_iter()
            .find(|s| s.partition == p)
            .map(|s| s.committed_offset)
            .with_context(|| format!("topic {to:?} has no partition {p}"))?;
        if end == 0 {
            return Ok(Position {
                next_input: None,
                end,
            });
        }
        let request = FetchRequest::new(to, p).start(StartOffset::Absolute(end - 1));
        let mut last = self.client.consume(request);
        let batch = last
            .next_batch()
            .await
            .with_context(|| format!("cannot read the last record of {to}/{p}"))?
            .unwrap_or_default();
        let Some(record) = batch.into_iter().find(|r| r.offset == end - 1) else {
            bail!(
                "{to}/{p} ends at offset {end} but its last record cannot be read (removed by \
                 retention?); the derivation cannot tell where it stands"
            );
        };
        let source = record
            .headers
            .iter()
            .find(|h| h.key == SOURCE_OFFSET_HEADER)
            .and_then(|h| std::str::from_utf8(&h.value).ok()?.parse::<u64>().ok());
        let Some(source) = source else {
            bail!(
                "{to}/{p}: the record at offset {} was not derived from {:?} (it has no {} \
                 header); a derived topic takes records from its derivation only",
                end - 1,
                self.from,
                SOURCE_OFFSET_HEADER
            );
        };
        Ok(Position {
            next_input: Some(source + 1),
            end,
        })
    }
}

/// Whether `e` is a client error worth trying again (no leader, no answer).
fn transient(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<ClientError>()
            .is_some_and(ClientError::is_retriable)
    })
}

/// Groups of outputs gathered into appends of at most [`APPEND_BYTES_MAX`]
/// and [`PRODUCE_BATCH_RECORDS_MAX`] records; one group is never split
/// (a larger group goes alone).
fn chunks(groups: Vec<Vec<Record>>) -> Vec<Vec<Record>> {
    let mut out: Vec<Vec<Record>> = Vec::new();
    let mut bytes = 0usize;
    for group in groups {
        let size: usize = group.iter().map(Record::size_bytes).sum();
        let fits = out.last().is_some_and(|last| {
            bytes + size <= APPEND_BYTES_MAX
                && last.len() + group.len() <= PRODUCE_BATCH_RECORDS_MAX
        });
        if fits {
            bytes += size;
            out.last_mut().expect("checked").extend(group);
        } else {
            bytes = size;
            out.push(group);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(n: usize, size: usize) -> Vec<Record> {
        (0..n).map(|_| Record::new(vec![b'x'; size])).collect()
    }

    #[test]
    fn appends_gather_groups_and_never_split_one() {
        let small = chunks(vec![group(2, 10), group(1, 10), group(3, 10)]);
        assert_eq!(small.iter().map(Vec::len).collect::<Vec<_>>(), vec![6]);
        let big = APPEND_BYTES_MAX / 2 + 1;
        let split = chunks(vec![group(1, big), group(1, big), group(2, 10)]);
        assert_eq!(split.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 3]);
        // A group above the bound goes alone, whole.
        let alone = chunks(vec![group(1, 10), group(5, big), group(1, 10)]);
        assert_eq!(
            alone.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![1, 5, 1]
        );
    }
}
