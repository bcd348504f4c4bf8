//! Clients' fetches: a stream of record frames from one partition, read
//! from its segments off the async workers, through the fetch's
//! SmartModule chain when it names one, following new commits when asked.

use quinn::SendStream;
use sluice_proto::limits::{
    FETCH_RESPONSE_BYTES_MAX, LOOKBACK_RECORDS_MAX, RECORD_OVERHEAD_BYTES_MAX,
};
use sluice_proto::{
    ConsumerRecord, ConsumerRecordRef, FetchOption, FetchRequest, ReadFrom, RecordsRef, Response,
    StartOffset, WireError,
};
use sluice_storage::StoredBatch;
use sluice_transport::FrameError;

use crate::node::Shared;
use crate::transforms::Transforms;

use super::{respond, respond_with};

/// Shows the chain's `look_back` functions the partition's last records
/// (`lookback`, counted back from `end`, never before `start`), chunk by
/// chunk off the async workers, before the stream's first record. Refused
/// when no module of the chain has such a function: the option would do
/// nothing, and saying so beats silence.
async fn look_back(
    partition: &crate::partition::Partition,
    transforms: Option<Transforms>,
    lookback: sluice_proto::Lookback,
    start: u64,
    end: u64,
) -> Result<Option<Transforms>, WireError> {
    let refuse = |reason: &str| WireError::InvalidArgument {
        what: "--lookback".into(),
        reason: reason.into(),
    };
    let Some(mut t) = transforms else {
        return Err(refuse(
            "looking back needs a SmartModule with a look_back function; give one with \
             --smartmodule or --filter (and the others)",
        ));
    };
    if !t.has_look_back() {
        return Err(refuse(
            "none of the SmartModules of this stream has a look_back function \
             (#[smartmodule(look_back)]); remove --lookback-last/--lookback-age or use a module \
             that has one",
        ));
    }
    let last = match (lookback.last, lookback.age_ms) {
        (0, Some(_)) => LOOKBACK_RECORDS_MAX,
        (n, _) => n.min(LOOKBACK_RECORDS_MAX),
    };
    let min_timestamp_ms = lookback
        .age_ms
        .map(|age| sluice_proto::now_ms().saturating_sub(i64::try_from(age).unwrap_or(i64::MAX)));
    let mut at = end.saturating_sub(last).max(start);
    while at < end {
        let batches = partition.read_batches(at, FETCH_RESPONSE_BYTES_MAX)?;
        let Some(chunk_end) = batches.last().map(StoredBatch::end_offset) else {
            break;
        };
        let (from, until) = (at, chunk_end.min(end));
        let (back, result) = tokio::task::spawn_blocking(move || {
            let result = t.look_back(&batches, from, until, min_timestamp_ms);
            (t, result)
        })
        .await
        .map_err(|join| WireError::SmartModule {
            module: "chain".into(),
            offset: None,
            reason: format!("the SmartModule thread failed: {join}"),
        })?;
        t = back;
        result.map_err(|e| partition.read_error(e))??;
        at = until;
    }
    Ok(Some(t))
}

/// Streams records: `FetchStarted`, then `Records` frames as data is (or
/// becomes) committed, then `FetchEnd` unless following. A following fetch
/// sleeps on the partition's end-offset watch: a commit wakes it at once.
pub(super) async fn serve_fetch(
    node: &Shared,
    req: FetchRequest,
    options: Vec<FetchOption>,
    send: &mut SendStream,
) -> Result<(), FrameError> {
    let mut lookback = None;
    for option in options {
        match option {
            FetchOption::Lookback(l) => lookback = Some(l),
        }
    }
    let md = node.metadata();
    if req.replica == Some(node.config.id)
        && let Ok(record) = md.topic(&req.topic)
        && let Some(a) = record.info.assignments.get(req.partition as usize)
        && !a.replicas.contains(&node.config.id)
        && !record
            .moving
            .get(&req.partition)
            .is_some_and(|l| l.contains(&node.config.id))
    {
        // Asked for this node's copy, which does not exist: no retry helps.
        let e = WireError::InvalidArgument {
            what: "--replica".into(),
            reason: format!(
                "node {} holds no replica of {}/{}; its replicas are on nodes {:?}",
                node.config.id, req.topic, req.partition, a.replicas
            ),
        };
        return respond(send, &Response::Error(e)).await;
    }
    let partition = match node.replicas.get(&md, &req.topic, req.partition) {
        Ok(p) => p,
        Err(e) => return respond(send, &Response::Error(e)).await,
    };
    let status = partition.group.status();
    let what = || format!("partition {}/{}", req.topic, req.partition);
    if let Some(reason) = status.stopped {
        // A stopped replica's log is frozen: serving it would look like a
        // healthy, caught-up replica to the consumer.
        let e = WireError::Unavailable {
            what: what(),
            reason: format!("its replica on node {} stopped: {reason}", node.config.id),
        };
        return respond(send, &Response::Error(e)).await;
    }
    match req.read_from {
        ReadFrom::Leader if !status.is_leader => {
            let e = WireError::NotLeader {
                node: node.config.id,
                what: what(),
                leader: status.leader,
            };
            return respond(send, &Response::Error(e)).await;
        }
        ReadFrom::Follower if status.is_leader => {
            let e = WireError::Unavailable {
                what: what(),
                reason: format!(
                    "node {} leads it and a follower was asked for",
                    node.config.id
                ),
            };
            return respond(send, &Response::Error(e)).await;
        }
        _ => {}
    }
    if !partition.is_ready() {
        let e = WireError::Unavailable {
            what: format!("partition {}/{}", req.topic, req.partition),
            reason: "its replica is re-applying its log after a restart".into(),
        };
        return respond(send, &Response::Error(e)).await;
    }
    let (start, end, _) = partition.offsets();
    let first = match req.start {
        StartOffset::Beginning => start,
        StartOffset::End => end,
        StartOffset::FromEnd(n) => end.saturating_sub(n).max(start),
        StartOffset::Absolute(o) if o < start || o > end => {
            let e = WireError::OffsetOutOfRange {
                topic: req.topic,
                partition: req.partition,
                requested: o,
                start,
                end,
            };
            return respond(send, &Response::Error(e)).await;
        }
        StartOffset::Absolute(o) => o,
    };
    // Modules are loaded and initialised before the stream starts, so a bad
    // module or bad parameters reach the consumer before any record.
    let mut transforms = None;
    if !req.smartmodules.is_empty() {
        // Registered modules come from this node's own copy of the store.
        let invocations =
            match crate::transforms::resolve(&node.metadata(), req.smartmodules.clone()) {
                Ok(i) => i,
                Err(e) => return respond(send, &Response::Error(e)).await,
            };
        let engine = match node.engine() {
            Ok(engine) => engine,
            Err(e) => return respond(send, &Response::Error(e)).await,
        };
        match tokio::task::spawn_blocking(move || Transforms::build(&engine, invocations)).await {
            Ok(Ok(t)) => transforms = Some(t),
            Ok(Err(e)) => return respond(send, &Response::Error(e)).await,
            Err(join) => {
                let e = WireError::SmartModule {
                    module: "chain".into(),
                    offset: None,
                    reason: format!("loading the SmartModules failed: {join}"),
                };
                return respond(send, &Response::Error(e)).await;
            }
        }
    }
    if let Some(lookback) = lookback {
        match look_back(&partition, transforms.take(), lookback, start, end).await {
            Ok(t) => transforms = t,
            Err(e) => return respond(send, &Response::Error(e)).await,
        }
    }
    respond(
        send,
        &Response::FetchStarted {
            partition: req.partition,
            start_offset: first,
            end_offset: end,
        },
    )
    .await?;
    let max_bytes = (req.max_bytes as usize).clamp(1, FETCH_RESPONSE_BYTES_MAX);
    let mut next = first;
    let mut remaining = req.max_records;
    let mut end_rx = partition.end_rx.clone();
    // A chunk read (from this offset) while the modules ran over the one before.
    let mut read_ahead = None;
    loop {
        // A long fetch never holds its worker thread: it yields whenever
        // tokio's cooperative budget is spent, even if every write went
        // straight into QUIC's buffer (a fetch that spun here once took
        // its worker, and two took the node).
        tokio::task::consume_budget().await;
        let done = remaining == Some(0) || req.end_offset.is_some_and(|last| next > last);
        if done {
            return respond(send, &Response::FetchEnd { next_offset: next }).await;
        }
        let high_watermark = *end_rx.borrow_and_update();
        if next < high_watermark && transforms.is_none() {
            // Plain records go out as they lie in the stored batches: no
            // copy of each into a record of its own before encoding.
            let batches = match partition.read_batches(next, max_bytes) {
                Ok(b) => b,
                Err(e) => return respond(send, &Response::Error(e)).await,
            };
            let Some(end) = batches.last().map(StoredBatch::end_offset) else {
                return respond(send, &Response::FetchEnd { next_offset: next }).await;
            };
            let mut until = req
                .end_offset
                .map_or(end, |last| end.min(last.saturating_add(1)));
            if let Some(n) = remaining {
                // Offsets are contiguous: the next `n` records end here.
                until = until.min(next.saturating_add(n));
            }
            let mut records = Vec::new();
            let walked = StoredBatch::for_each_in(&batches, next, until, |r| {
                records.push(ConsumerRecordRef {
                    partition: req.partition,
                    offset: r.offset,
                    key: r.key,
                    value: r.value,
                    timestamp_ms: r.timestamp_ms,
                    headers: r.headers,
                })
            });
            if let Err(e) = walked {
                let e = partition.read_error(e);
                return respond(send, &Response::Error(e)).await;
            }
            if let Some(n) = remaining.as_mut() {
                *n -= records.len() as u64;
            }
            crate::metrics::consumed(&req.topic, req.partition, &records);
            next = until;
            for chunk in frame_slices(&records) {
                let frame = RecordsRef {
                    records: chunk,
                    high_watermark,
                };
                respond_with(send, &frame).await?;
            }
            continue;
        }
        if next < high_watermark
            && let Some(mut t) = transforms.take()
        {
            // Whole stored batches: the first module reads the records where
            // they lie, none is copied out for it.
            let read = match read_ahead.take() {
                Some((from, read)) if from == next => read,
                _ => partition.read_batches(next, max_bytes),
            };
            let batches = match read {
                Ok(b) => b,
                Err(e) => return respond(send, &Response::Error(e)).await,
            };
            let Some(end) = batches.last().map(StoredBatch::end_offset) else {
                return respond(send, &Response::FetchEnd { next_offset: next }).await;
            };
            let from = next;
            // Resume after the last record read, whatever the modules keep.
            next = req
                .end_offset
                .map_or(end, |last| end.min(last.saturating_add(1)));
            let until = next;
            let partition_id = req.partition;
            let running = tokio::task::spawn_blocking(move || {
                let applied = t.apply(partition_id, &batches, from, until);
                (t, applied)
            });
            // Read the next chunk meanwhile, on this task: reading and
            // running the modules then use both cores.
            if next < high_watermark && req.end_offset.is_none_or(|last| next <= last) {
                read_ahead = Some((next, partition.read_batches(next, max_bytes)));
            }
            let (mut records, failure) = match running.await {
                Ok((t, Ok(applied))) => {
                    transforms = Some(t);
                    applied
                }
                Ok((_, Err(e))) => {
                    return respond(send, &Response::Error(partition.read_error(e))).await;
                }
                Err(join) => {
                    let e = WireError::SmartModule {
                        module: "chain".into(),
                        offset: None,
                        reason: format!("the SmartModule thread failed: {join}"),
                    };
                    return respond(send, &Response::Error(e)).await;
                }
            };
            if let Some(n) = remaining.as_mut() {
                let keep = (*n).min(records.len() as u64) as usize;
                if keep < records.len() {
                    // Resume where delivery stopped, not after what was read.
                    next = records[keep].offset;
                }
                records.truncate(keep);
                *n -= records.len() as u64;
            }
            let records: Vec<_> = records.iter().map(ConsumerRecord::borrowed).collect();
            crate::metrics::consumed(&req.topic, req.partition, &records);
            for chunk in frame_slices(&records) {
                let frame = RecordsRef {
                    records: chunk,
                    high_watermark,
                };
                respond_with(send, &frame).await?;
            }
            if let Some(e) = failure {
                // The consumer got everything before the failing record.
                return respond(send, &Response::Error(e)).await;
            }
            continue;
        }
        if !req.follow {
            return respond(send, &Response::FetchEnd { next_offset: next }).await;
        }
        tokio::select! {
            changed = end_rx.changed() => if changed.is_err() {
                let e = WireError::Unavailable {
                    what: format!("partition {}/{}", req.topic, req.partition),
                    reason: "its replica stopped on this node".into(),
                };
                return respond(send, &Response::Error(e)).await;
            },
            _ = send.stopped() => return Ok(()),
        }
    }
}

/// Splits records into response frames under the fetch limit (a single
/// stored batch may exceed the requested size, a module's output far more).
fn frame_slices<'r, 'a>(
    records: &'r [ConsumerRecordRef<'a>],
) -> impl Iterator<Item = &'r [ConsumerRecordRef<'a>]> {
    let mut rest = records;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let mut n = 0;
        for r in rest {
            let size = r.size_bytes() + RECORD_OVERHEAD_BYTES_MAX;
            if n > 0 && bytes + size > FETCH_RESPONSE_BYTES_MAX {
                break;
            }
            bytes += size;
            n += 1;
        }
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}
