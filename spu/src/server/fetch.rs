//! Clients' fetches: a stream of record frames from one partition, through
//! the fetch's SmartModule chain when it names one (run off the async
//! workers), following new commits when asked. Segments are read on the
//! fetch's task, under the partition log's read lock (a `pread` of at most
//! `FETCH_RESPONSE_BYTES_MAX`, from the page cache once warm).

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

use crate::partition::Partition;
use crate::shared::Shared;
use crate::transforms::Transforms;

use super::fetch_cursor::FetchCursor;
use super::{respond, respond_sized};

/// Shows the chain's `look_back` functions the partition's last records
/// (`lookback`, counted back from `end`, never before `start`), chunk by
/// chunk off the async workers, before the stream's first record. Refused
/// when no module of the chain has such a function: the option would do
/// nothing, and saying so beats silence.
async fn look_back(
    partition: &Partition,
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
        let batches = partition
            .read_batches_off_worker(at, FETCH_RESPONSE_BYTES_MAX)
            .await?;
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

/// A fetch that passed its checks, ready to stream.
struct Opened {
    partition: Partition,
    /// The first offset to send.
    first: u64,
    /// The partition's committed end when the fetch started.
    end: u64,
    /// The fetch's modules, loaded, initialised and shown the records to
    /// look back at.
    transforms: Option<Transforms>,
}

/// What a step of the stream leaves to do.
enum Flow {
    /// Go on: read more, or wait for commits.
    Continue,
    /// The stream's last frame is sent.
    Ended,
}

/// Streams records: `FetchStarted`, then `Records` frames as data is (or
/// becomes) committed, then `FetchEnd` unless following. A following fetch
/// sleeps on the partition's end-offset watch: a commit wakes it at once.
/// What to read next, and how much, is [`FetchCursor`]'s (tested without
/// I/O); this loop reads, runs the modules and writes.
pub(super) async fn serve_fetch(
    node: &Shared,
    req: FetchRequest,
    options: Vec<FetchOption>,
    send: &mut SendStream,
) -> Result<(), FrameError> {
    let opened = match open(node, &req, options).await {
        Ok(o) => o,
        Err(e) => return respond(send, &Response::Error(e)).await,
    };
    respond(
        send,
        &Response::FetchStarted {
            partition: req.partition,
            start_offset: opened.first,
            end_offset: opened.end,
        },
    )
    .await?;
    let partition = opened.partition;
    let mut transforms = opened.transforms;
    let max_bytes = (req.max_bytes as usize).clamp(1, FETCH_RESPONSE_BYTES_MAX);
    let mut cursor = FetchCursor::new(opened.first, req.max_records, req.end_offset);
    let mut end_rx = partition.end_rx.clone();
    // A chunk read (from this offset) while the modules ran over the one before.
    let mut read_ahead = None;
    loop {
        // A long fetch never holds its worker thread: it yields whenever
        // tokio's cooperative budget is spent, even if every write went
        // straight into QUIC's buffer (a fetch that spun here once took
        // its worker, and two took the node).
        tokio::task::consume_budget().await;
        if cursor.done() {
            let next_offset = cursor.next();
            return respond(send, &Response::FetchEnd { next_offset }).await;
        }
        let high_watermark = *end_rx.borrow_and_update();
        if cursor.behind(high_watermark) {
            let chunk = Chunk {
                req: &req,
                partition: &partition,
                high_watermark,
                max_bytes,
            };
            let flow = match transforms.take() {
                None => chunk.send_plain(&mut cursor, send).await?,
                Some(t) => {
                    let (flow, back) = chunk
                        .send_through_modules(t, &mut cursor, &mut read_ahead, send)
                        .await?;
                    transforms = back;
                    flow
                }
            };
            match flow {
                Flow::Continue => continue,
                Flow::Ended => return Ok(()),
            }
        }
        if !req.follow {
            let next_offset = cursor.next();
            return respond(send, &Response::FetchEnd { next_offset }).await;
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

/// The checks a fetch passes before its stream starts (this node's replica,
/// its state and role, the start offset), then its modules loaded and
/// initialised, so a bad module or bad parameters reach the consumer before
/// any record.
async fn open(
    node: &Shared,
    req: &FetchRequest,
    options: Vec<FetchOption>,
) -> Result<Opened, WireError> {
    let mut lookback = None;
    for option in options {
        match option {
            FetchOption::Lookback(l) => lookback = Some(l),
        }
    }
    // Only what is needed, read under the metadata's lock: a copy of all
    // of it would copy every registered module's code per fetch.
    let asks_here = req.replica == Some(node.config.id);
    let not_here = asks_here.then(|| {
        node.controller.view().with(|md| {
            let record = md.topic(&req.topic).ok()?;
            let a = record.info.assignments.get(req.partition as usize)?;
            let leaving = record.moving.get(&req.partition);
            let here = a.replicas.contains(&node.config.id)
                || leaving.is_some_and(|l| l.contains(&node.config.id));
            (!here).then(|| a.replicas.clone())
        })
    });
    if let Some(Some(replicas)) = not_here {
        // Asked for this node's copy, which does not exist: no retry helps.
        return Err(WireError::InvalidArgument {
            what: "--replica".into(),
            reason: format!(
                "node {} holds no replica of {}/{}; its replicas are on nodes {:?}",
                node.config.id, req.topic, req.partition, replicas
            ),
        });
    }
    let partition = node
        .replicas
        .get_in(node.controller.view(), &req.topic, req.partition)?;
    check_role(node, req, &partition)?;
    let (start, end, _) = partition.offsets();
    let first = match req.start {
        StartOffset::Beginning => start,
        StartOffset::End => end,
        StartOffset::FromEnd(n) => end.saturating_sub(n).max(start),
        StartOffset::Absolute(o) if o < start || o > end => {
            return Err(WireError::OffsetOutOfRange {
                topic: req.topic.clone(),
                partition: req.partition,
                requested: o,
                start,
                end,
            });
        }
        StartOffset::Absolute(o) => o,
    };
    let mut transforms = load_modules(node, req).await?;
    if let Some(lookback) = lookback {
        transforms = look_back(&partition, transforms, lookback, start, end).await?;
    }
    Ok(Opened {
        partition,
        first,
        end,
        transforms,
    })
}

/// Whether this replica may serve the fetch: running, in the role asked
/// for (leader or follower), and done re-applying its log after a restart.
fn check_role(node: &Shared, req: &FetchRequest, partition: &Partition) -> Result<(), WireError> {
    let status = partition.group.status();
    let what = || format!("partition {}/{}", req.topic, req.partition);
    if let Some(reason) = status.stopped {
        // A stopped replica's log is frozen: serving it would look like a
        // healthy, caught-up replica to the consumer.
        return Err(WireError::Unavailable {
            what: what(),
            reason: format!("its replica on node {} stopped: {reason}", node.config.id),
        });
    }
    match req.read_from {
        ReadFrom::Leader if !status.is_leader => {
            return Err(WireError::NotLeader {
                node: node.config.id,
                what: what(),
                leader: status.leader,
            });
        }
        ReadFrom::Follower if status.is_leader => {
            return Err(WireError::Unavailable {
                what: what(),
                reason: format!(
                    "node {} leads it and a follower was asked for",
                    node.config.id
                ),
            });
        }
        _ => {}
    }
    if !partition.is_ready() {
        return Err(WireError::Unavailable {
            what: what(),
            reason: "its replica is re-applying its log after a restart".into(),
        });
    }
    Ok(())
}

/// The fetch's SmartModule chain, built off the async workers from this
/// node's own copy of the module store; `None` without modules.
async fn load_modules(node: &Shared, req: &FetchRequest) -> Result<Option<Transforms>, WireError> {
    if req.smartmodules.is_empty() {
        return Ok(None);
    }
    let invocations = node
        .controller
        .view()
        .with(|md| crate::transforms::resolve(md, req.smartmodules.clone()))?;
    let engine = node.engine()?;
    match tokio::task::spawn_blocking(move || Transforms::build(&engine, invocations)).await {
        Ok(built) => built.map(Some),
        Err(join) => Err(WireError::SmartModule {
            module: "chain".into(),
            offset: None,
            reason: format!("loading the SmartModules failed: {join}"),
        }),
    }
}

/// A chunk read already (from this offset) or being read.
type ReadAhead = Option<(u64, Result<Vec<StoredBatch>, WireError>)>;

/// One step of a stream: a chunk of the partition read and sent.
struct Chunk<'a> {
    req: &'a FetchRequest,
    partition: &'a Partition,
    /// The committed end the step reads up to.
    high_watermark: u64,
    max_bytes: usize,
}

impl Chunk<'_> {
    /// Plain records go out as they lie in the stored batches: no copy of
    /// each into a record of its own before encoding.
    async fn send_plain(
        &self,
        cursor: &mut FetchCursor,
        send: &mut SendStream,
    ) -> Result<Flow, FrameError> {
        let next = cursor.next();
        let batches = match self
            .partition
            .read_batches_off_worker(next, self.max_bytes)
            .await
        {
            Ok(b) => b,
            Err(e) => return self.end_with(send, Response::Error(e)).await,
        };
        let Some(end) = batches.last().map(StoredBatch::end_offset) else {
            let next_offset = next;
            return self
                .end_with(send, Response::FetchEnd { next_offset })
                .await;
        };
        let until = cursor.plain_until(end);
        let mut records = Vec::new();
        let walked = StoredBatch::for_each_in(&batches, next, until, |r| {
            records.push(ConsumerRecordRef {
                partition: self.req.partition,
                offset: r.offset,
                key: r.key,
                value: r.value,
                timestamp_ms: r.timestamp_ms,
                headers: r.headers,
            })
        });
        if let Err(e) = walked {
            let e = self.partition.read_error(e);
            return self.end_with(send, Response::Error(e)).await;
        }
        cursor.sent_plain(until, records.len() as u64);
        crate::metrics::consumed(&self.req.topic, self.req.partition, &records);
        self.send_records(&records, send).await?;
        Ok(Flow::Continue)
    }

    /// Whole stored batches through the chain: the first module reads the
    /// records where they lie, none is copied out for it. The modules run
    /// off the async workers while this task reads the next chunk, so
    /// reading and running them use both cores. Gives the chain back unless
    /// the stream ended.
    async fn send_through_modules(
        &self,
        mut t: Transforms,
        cursor: &mut FetchCursor,
        read_ahead: &mut ReadAhead,
        send: &mut SendStream,
    ) -> Result<(Flow, Option<Transforms>), FrameError> {
        let from = cursor.next();
        let read = match read_ahead.take() {
            Some((at, read)) if at == from => read,
            _ => {
                self.partition
                    .read_batches_off_worker(from, self.max_bytes)
                    .await
            }
        };
        let batches = match read {
            Ok(b) => b,
            Err(e) => return Ok((self.end_with(send, Response::Error(e)).await?, None)),
        };
        let Some(end) = batches.last().map(StoredBatch::end_offset) else {
            let next_offset = from;
            let flow = self
                .end_with(send, Response::FetchEnd { next_offset })
                .await?;
            return Ok((flow, None));
        };
        // Resume after the last record read, whatever the modules keep.
        let until = cursor.modules_until(end);
        let partition_id = self.req.partition;
        let running = tokio::task::spawn_blocking(move || {
            let applied = t.apply(partition_id, &batches, from, until);
            (t, applied)
        });
        // The next chunk is read while the modules run, both on the
        // blocking pool.
        let ahead = async {
            match cursor.read_ahead_from(until, self.high_watermark) {
                Some(at) => Some((
                    at,
                    self.partition
                        .read_batches_off_worker(at, self.max_bytes)
                        .await,
                )),
                None => None,
            }
        };
        let (ran, ahead) = tokio::join!(running, ahead);
        *read_ahead = ahead;
        let (t, (mut records, failure)) = match ran {
            Ok((t, Ok(applied))) => (t, applied),
            Ok((_, Err(e))) => {
                let e = self.partition.read_error(e);
                return Ok((self.end_with(send, Response::Error(e)).await?, None));
            }
            Err(join) => {
                let e = WireError::SmartModule {
                    module: "chain".into(),
                    offset: None,
                    reason: format!("the SmartModule thread failed: {join}"),
                };
                return Ok((self.end_with(send, Response::Error(e)).await?, None));
            }
        };
        cursor.took_from_modules(until, &mut records, |r| r.offset);
        let records: Vec<_> = records.iter().map(ConsumerRecord::borrowed).collect();
        crate::metrics::consumed(&self.req.topic, self.req.partition, &records);
        self.send_records(&records, send).await?;
        if let Some(e) = failure {
            // The consumer got everything before the failing record.
            return Ok((self.end_with(send, Response::Error(e)).await?, None));
        }
        Ok((Flow::Continue, Some(t)))
    }

    async fn send_records(
        &self,
        records: &[ConsumerRecordRef<'_>],
        send: &mut SendStream,
    ) -> Result<(), FrameError> {
        for (chunk, size) in frame_slices(records) {
            let frame = RecordsRef {
                records: chunk,
                high_watermark: self.high_watermark,
            };
            respond_sized(send, &frame, size + RECORDS_FRAME_OVERHEAD_BYTES).await?;
        }
        Ok(())
    }

    /// Sends the stream's last frame.
    async fn end_with(&self, send: &mut SendStream, last: Response) -> Result<Flow, FrameError> {
        respond(send, &last).await?;
        Ok(Flow::Ended)
    }
}

/// Room in a records frame's buffer for what is not records (version,
/// variant, high watermark, count).
const RECORDS_FRAME_OVERHEAD_BYTES: usize = 64;

/// Splits records into response frames under the fetch limit (a single
/// stored batch may exceed the requested size, a module's output far more),
/// each with the bytes its records may take encoded (to size its buffer).
fn frame_slices<'r, 'a>(
    records: &'r [ConsumerRecordRef<'a>],
) -> impl Iterator<Item = (&'r [ConsumerRecordRef<'a>], usize)> {
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
        Some((chunk, bytes))
    })
}
