//! Writing a produce batch through this node: checked against the topic's
//! limits and settings, proposed to its partition's Raft group by the
//! leader, and acknowledged once committed (or answered as its producer
//! sequence was before, for a retry). Clients' produce requests come here
//! from `crate::server`; the node's own writers (`crate::audit_log`) too,
//! so a record of theirs takes the path a client's takes.

use sluice_proto::limits::{
    PRODUCE_BATCH_RECORDS_MAX, PRODUCE_BATCH_SIZE_BYTES_MAX, RECORD_SIZE_BYTES_MAX,
    RECORD_TIMESTAMP_AHEAD_MS_MAX,
};
use sluice_proto::{Compression, ProduceRequest, ProduceResponse, Response, WireError};

use crate::partition::{AppendOutcome, PartitionCommand, decode, encode};
use crate::services::Services;

/// A batch of records sent as they are.
pub(crate) async fn plain(node: &Services, produce: ProduceRequest) -> Result<Response, WireError> {
    produce_batch(node, produce, Compression::None, None)
        .await
        .map(Response::Produced)
}

/// A batch whose records' encoding the producer compressed, or whose
/// records carry headers: `expand`ed under the node's bound (see
/// `crate::compressed`), then written as any batch sent with its codec.
pub(crate) async fn expanded(
    node: &Services,
    produce: sluice_proto::CompressedProduce,
    expand: fn(sluice_proto::CompressedProduce) -> Result<ProduceRequest, WireError>,
) -> Result<Response, WireError> {
    let codec = produce.compression;
    produce_batch(node, expand(produce)?, codec, None)
        .await
        .map(Response::Produced)
}

/// A batch written only if the partition ends at `expected_offset` (see
/// `Request::ProduceAt`); its records as in `ProduceWithHeaders`.
pub(crate) async fn at(
    node: &Services,
    batch: sluice_proto::CompressedProduce,
    expected_offset: u64,
) -> Result<Response, WireError> {
    if batch.producer.is_some() {
        return Err(WireError::InvalidArgument {
            what: "produce at offset".into(),
            reason: "a batch written at an offset carries no producer sequence".into(),
        });
    }
    let codec = batch.compression;
    let request = crate::compressed::expand_with_headers(batch)?;
    produce_batch(node, request, codec, Some(expected_offset))
        .await
        .map(Response::Produced)
}

/// The state machine judged a batch by its producer sequence, but the
/// batch carried none: a bug, reported rather than panicked on.
fn outcome_without_producer(what: String, verdict: &str) -> WireError {
    WireError::Storage {
        what,
        reason: format!(
            "the partition called a batch without a producer id {verdict}; this is a bug, please report it"
        ),
    }
}

/// Checks a batch against the topic's compression type and the batch and
/// record limits; returns its size in bytes.
fn check_batch(
    node: &Services,
    req: &ProduceRequest,
    codec: Compression,
) -> Result<usize, WireError> {
    let invalid = |reason: String| WireError::InvalidArgument {
        what: "produce batch".into(),
        reason,
    };
    let setting = node
        .controller
        .view()
        .with(|md| md.topic_settings_of(&req.topic).compression);
    crate::compressed::check_topic_takes(&req.topic, setting, codec)?;
    if req.records.is_empty() {
        return Err(invalid("it holds no record".into()));
    }
    if req.records.len() > PRODUCE_BATCH_RECORDS_MAX {
        return Err(invalid(format!(
            "{} records exceed the limit of {PRODUCE_BATCH_RECORDS_MAX}",
            req.records.len()
        )));
    }
    let mut total = 0;
    let latest_ms = sluice_proto::now_ms().saturating_add(RECORD_TIMESTAMP_AHEAD_MS_MAX);
    for (index, r) in req.records.iter().enumerate() {
        if r.timestamp_ms > latest_ms {
            return Err(invalid(format!(
                "record {index} is stamped {} ms, more than {RECORD_TIMESTAMP_AHEAD_MS_MAX} ms ahead of node {}'s clock ({} ms); the producer's clock or timestamps, or this node's clock, is wrong: check both (such a record would keep its segment from expiring)",
                r.timestamp_ms,
                node.config.id,
                latest_ms - RECORD_TIMESTAMP_AHEAD_MS_MAX
            )));
        }
        sluice_proto::headers::check_owned(&r.headers).map_err(|e| {
            invalid(format!(
                "record {index}: {e}; send headers with names of 1 to {} bytes, at most {} per record",
                sluice_proto::limits::RECORD_HEADER_KEY_BYTES_MAX,
                sluice_proto::limits::RECORD_HEADERS_MAX
            ))
        })?;
        let size_bytes = r.size_bytes();
        if size_bytes > RECORD_SIZE_BYTES_MAX {
            return Err(WireError::RecordTooLarge {
                index,
                size_bytes,
                max_bytes: RECORD_SIZE_BYTES_MAX,
            });
        }
        total += size_bytes;
    }
    if total > PRODUCE_BATCH_SIZE_BYTES_MAX {
        return Err(invalid(format!(
            "{total} bytes exceed the limit of {PRODUCE_BATCH_SIZE_BYTES_MAX}"
        )));
    }
    Ok(total)
}

/// Writes one batch sent with `codec` (already expanded if compressed),
/// only at `expected` when given.
async fn produce_batch(
    node: &Services,
    req: ProduceRequest,
    codec: Compression,
    expected: Option<u64>,
) -> Result<ProduceResponse, WireError> {
    let total = check_batch(node, &req, codec)?;
    let partition = node
        .replicas
        .get_in(node.controller.view(), &req.topic, req.partition)?;
    let record_count = req.records.len() as u32;
    let command = encode(&match expected {
        None => PartitionCommand::append(req.records, req.producer),
        Some(expected_offset) => PartitionCommand::AppendAt {
            records: req.records,
            expected_offset,
        },
    });
    let what = || format!("partition {}/{}", req.topic, req.partition);
    let started = std::time::Instant::now();
    // In sequence order per producer, as far as the leader can tell.
    let response = partition
        .proposal_order
        .write(&partition.group, command, req.producer)
        .await
        .map_err(|e| e.into_wire(what()))?;
    metrics::histogram!(crate::metrics::PRODUCE_SECONDS).record(started.elapsed().as_secs_f64());
    let outcome = decode::<AppendOutcome>(&response);
    // A resend's records were counted when first appended.
    if let Ok(AppendOutcome::Appended { .. }) = outcome {
        let (records, bytes) = (u64::from(record_count), total as u64);
        crate::metrics::produced(&req.topic, req.partition, records, bytes);
    }
    match outcome {
        Ok(AppendOutcome::Appended { base_offset } | AppendOutcome::Retry { base_offset }) => {
            Ok(ProduceResponse {
                partition: req.partition,
                base_offset,
                record_count,
            })
        }
        Ok(AppendOutcome::NotAt { end_offset }) => Err(WireError::NotAtOffset {
            topic: req.topic.clone(),
            partition: req.partition,
            expected_offset: expected.unwrap_or_default(),
            end_offset,
        }),
        Ok(AppendOutcome::Failed { reason }) => Err(WireError::Storage {
            what: what(),
            reason,
        }),
        Ok(AppendOutcome::Stale { last_sequence }) => {
            let Some(p) = req.producer else {
                return Err(outcome_without_producer(what(), "stale"));
            };
            Err(WireError::StaleBatch {
                producer_id: p.producer_id,
                sequence: p.sequence,
                last_sequence,
            })
        }
        Ok(AppendOutcome::OutOfOrder { last_sequence }) => {
            let Some(p) = req.producer else {
                return Err(outcome_without_producer(what(), "out of order"));
            };
            tracing::debug!(
                topic = %req.topic, partition = req.partition, producer = format_args!("{:x}", p.producer_id),
                sequence = p.sequence, ?last_sequence, "rejected a batch that overtook its predecessor"
            );
            Err(WireError::OutOfOrderSequence {
                producer_id: p.producer_id,
                sequence: p.sequence,
                last_sequence,
            })
        }
        Ok(AppendOutcome::SequenceReused { base_offset }) => {
            let Some(p) = req.producer else {
                return Err(WireError::Storage {
                    what: what(),
                    reason: "a batch without a producer id was answered as a reused sequence"
                        .into(),
                });
            };
            tracing::warn!(
                topic = %req.topic, partition = req.partition, producer = format_args!("{:x}", p.producer_id),
                sequence = p.sequence, offset = base_offset,
                "refused a batch whose producer id and sequence were already written with other records"
            );
            Err(WireError::SequenceReused {
                topic: req.topic.clone(),
                partition: req.partition,
                producer_id: p.producer_id,
                sequence: p.sequence,
                offset: base_offset,
            })
        }
        Ok(AppendOutcome::Replayed) => Err(WireError::Storage {
            what: what(),
            reason: "a fresh proposal was answered as a replay".into(),
        }),
        Ok(
            other @ (AppendOutcome::OffsetCommitted
            | AppendOutcome::Refused { .. }
            | AppendOutcome::Fenced { .. }
            | AppendOutcome::Forgotten { .. }),
        ) => Err(WireError::Storage {
            what: what(),
            reason: format!("a batch was answered as a consumer command ({other:?})"),
        }),
        Err(reason) => Err(WireError::Storage {
            what: what(),
            reason,
        }),
    }
}
