//! Pipelined replication: a group's appends to one follower travel on one
//! ordered stream, each sent as soon as openraft has it, while the earlier
//! ones are still on the wire.
//!
//! Why: openraft keeps one append in flight per follower unless the network
//! streams them (`RaftNetworkV2::stream_append`). An entry proposed while
//! an append was on the wire waited for its answer, and an append that only
//! carried the new commit took a round trip of its own, so a leader's write
//! took about two append round trips (BENCHMARKS.md, session 35).
//!
//! How: the transport opens an ordered channel to the follower for the group
//! ([`RaftTransport::open_append_stream`], one QUIC stream in the node). The
//! follower hands the appends to openraft in the order they arrive
//! (`Group::serve_append_stream`) and answers each, in order; openraft's
//! follower takes an append only if it continues its log, so the order is
//! what makes the pipeline safe, and the stream keeps it end to end.
//!
//! Bounds: at most [`APPEND_STREAM_IN_FLIGHT_MAX`] appends and
//! [`APPEND_STREAM_BYTES_IN_FLIGHT_MAX`] bytes unanswered (a larger append
//! goes alone); appends wait in the session while the stream has no room,
//! with the deadlines running. The oldest one is due within the deadline a
//! lone append would get
//! ([`crate::timeouts::append_entries_deadline`]), counted from the later of
//! its sending and the previous answer, and a late answer ends the stream as
//! unreachable. A stream with nothing to send for
//! [`crate::timeouts::APPEND_STREAM_IDLE`] ends; openraft then starts another
//! session, which opens a stream only when it has an append, so idle groups
//! hold none.
//!
//! Heartbeats: openraft's heartbeat worker hands each heartbeat over as a
//! session of its own, one append without entries and then the end. Such a
//! session, and any whose only append tells the follower nothing new (no
//! entries, a commit it was sent already), goes the way heartbeats go
//! without streams: gathered with other groups' for the same node
//! ([`crate::Coalescing`]), or at once while a write waits on the lease. It
//! takes no stream. Sent on streams, heartbeats had opened one each (about
//! 3,000 for 100,000 records at 64 partitions), then, once streams were
//! kept, one per group and follower (half of the 256 opened), holding
//! stream permits meant for replication; and none was gathered
//! (BENCHMARKS.md, sessions 38 and 39).
//!
//! Reuse: a replication session lasts while openraft has appends for the
//! follower, and ends when openraft starts another (a new leader's round, a
//! retry after an error) or the stream idles. A session that ends with
//! every append answered parks its stream on the group's `Peer`, and the
//! next session to that follower takes it over if it is still open and was
//! parked less than [`crate::timeouts::PARKED_REUSE_WINDOW`] ago. The
//! follower cannot tell the sessions apart, nor need it: its appends arrive
//! in order on one stream either way, each checked alone. A session that
//! ends any other way (an append unanswered, a conflict, a failure, idle)
//! parks nothing, and its stream is closed as before. A transport closes a
//! stream that carries nothing for as long as a session would stay idle, so
//! a parked stream nobody takes costs only that while.
//!
//! A transport without streams, or one at its limit of streams to the node,
//! answers `None`: the session then sends its appends one by one, as before,
//! until a pause or for that long at most, and the next session asks again.

use std::collections::VecDeque;
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};
use openraft::base::{BoxFuture, BoxStream};
use openraft::error::{NetworkError, RPCError, Unreachable};
use openraft::network::RPCOption;
use openraft::network::stream_append_sequential;
use openraft::raft::{AppendEntriesRequest, StreamAppendResult};
use tokio::time::Instant;

use super::{Answer, AppendStream, CallError, CallFailure, Parts, Peer};
use crate::TypeConfig;
use crate::log_store::decode;

/// Most appends of one stream sent and not yet answered (the parts of one
/// split append may go past it). Enough to cover a follower's fsync at the
/// rates a partition takes (a few appends arrive during one); a bound so a
/// slow follower holds a bounded number of encoded appends, on both sides,
/// for each group it follows.
pub const APPEND_STREAM_IN_FLIGHT_MAX: usize = 16;

/// Most bytes of appends one stream has sent and not yet had answered (an
/// append larger than this goes alone): the follower keeps each append's
/// bytes reserved in its connection's budget until it answers, and that
/// budget is shared by every group between the two nodes.
pub const APPEND_STREAM_BYTES_IN_FLIGHT_MAX: usize = 8 * 1024 * 1024;

/// A stream whose session ended with every append answered, kept on the
/// group's `Peer` for the next session to that follower.
pub(crate) struct Parked {
    stream: AppendStream,
    at: Instant,
}

impl Parked {
    /// The stream, if the next session may take it over: recently parked,
    /// and neither of its ends closed since (the follower ended it, its
    /// connection went, or the transport closed it as idle).
    fn take_over(self) -> Option<AppendStream> {
        let open = !self.stream.requests.is_closed() && !self.stream.answers.is_closed();
        (open && self.at.elapsed() < crate::timeouts::PARKED_REUSE_WINDOW).then_some(self.stream)
    }
}

type Item = Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>;
type Output<'s> = Result<BoxStream<'s, Item>, RPCError<TypeConfig>>;

/// `Peer::stream_append`: waits for the session's first append, then opens
/// a stream for it, or sends the session's appends one by one when the
/// transport opens none.
pub(super) fn stream_append<'s, S>(
    peer: &'s mut Peer,
    input: S,
    option: RPCOption,
) -> BoxFuture<'s, Output<'s>>
where
    S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
{
    Box::pin(async move {
        let mut input: BoxStream<'static, AppendEntriesRequest<TypeConfig>> = Box::pin(input);
        let Some(first) = input.next().await else {
            let none: BoxStream<'s, Item> = Box::pin(futures::stream::empty());
            return Ok(none);
        };
        if tells_nothing_new(peer, &first) {
            // Ready at once if openraft has more, or if this was all of a
            // heartbeat's session; otherwise (a replication session waiting
            // for entries) the stream goes on as it would have.
            match input.next().now_or_never() {
                Some(None) => {
                    // openraft's streams must not be asked again once ended.
                    let heartbeat = futures::stream::once(std::future::ready(first));
                    return stream_append_sequential(peer, heartbeat, option).await;
                }
                Some(Some(second)) => {
                    input =
                        Box::pin(futures::stream::once(std::future::ready(second)).chain(input));
                }
                None => {}
            }
        }
        let parked = peer.parked.take().and_then(Parked::take_over);
        let opened = match parked {
            Some(stream) => Ok(Some(stream)),
            None => {
                peer.transport
                    .open_append_stream(
                        peer.target,
                        peer.addr.clone(),
                        peer.group,
                        option.hard_ttl(),
                    )
                    .await
            }
        };
        match opened {
            Ok(Some(stream)) => {
                let mut pipeline = Pipeline {
                    peer,
                    input: Some(input),
                    stream: Some(stream),
                    outbox: VecDeque::new(),
                    pending: VecDeque::new(),
                    pending_bytes: 0,
                    progress: Instant::now(),
                    last_sent: Instant::now(),
                    option,
                    done: false,
                };
                pipeline.enqueue(first)?;
                let answers = futures::stream::unfold(pipeline, |mut p| async move {
                    let item = p.next().await?;
                    Some((item, p))
                });
                let answers: BoxStream<'s, Item> = Box::pin(answers);
                Ok(answers)
            }
            Ok(None) => {
                let again = futures::stream::once(std::future::ready(first)).chain(input);
                stream_append_sequential(peer, for_a_while(again), option).await
            }
            Err(e) => Err(CallFailure::Call(e).into_rpc_error()),
        }
    })
}

/// Whether `request` is a heartbeat in all but name: no entries, and a
/// commit the follower was sent already.
fn tells_nothing_new(peer: &Peer, request: &AppendEntriesRequest<TypeConfig>) -> bool {
    request.entries.is_empty()
        && peer
            .commit_sent
            .carried(request.leader_commit.as_ref().map(|c| c.index))
}

/// openraft's appends for a session that sends them one by one, ended at a
/// pause of [`crate::timeouts::APPEND_STREAM_IDLE`] or once the session is
/// that old (never in the middle of an append): the next session asks for
/// a stream again, so a group that found no stream free, or a peer that
/// refused streams before its upgrade, is not one by one for good.
fn for_a_while<S>(input: S) -> BoxStream<'static, AppendEntriesRequest<TypeConfig>>
where
    S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
{
    let idle = crate::timeouts::APPEND_STREAM_IDLE;
    let until = Instant::now() + idle;
    Box::pin(futures::stream::unfold(
        (input, true),
        move |(mut input, first)| async move {
            if !first && Instant::now() >= until {
                return None;
            }
            let next = tokio::time::timeout(idle, input.next()).await.ok()??;
            Some((next, (input, false)))
        },
    ))
}

/// An append sent on the stream and not yet answered.
struct Sent {
    at: Instant,
    bytes: usize,
    /// How long its answer may take (see the module's documentation).
    budget: Duration,
}

struct Pipeline<'s, S> {
    peer: &'s mut Peer,
    /// openraft's appends; `None` once it ended.
    input: Option<S>,
    /// `None` once parked on the peer, at the end.
    stream: Option<AppendStream>,
    /// Encoded appends (or parts of one) not yet handed to the stream.
    outbox: VecDeque<Vec<u8>>,
    pending: VecDeque<Sent>,
    pending_bytes: usize,
    /// When the last answer arrived (or the stream opened).
    progress: Instant,
    last_sent: Instant,
    option: RPCOption,
    done: bool,
}

enum Step {
    Answer(Option<Result<Vec<u8>, CallError>>),
    Overdue,
    Input(Option<AppendEntriesRequest<TypeConfig>>),
    Room(Option<tokio::sync::mpsc::OwnedPermit<Vec<u8>>>),
    Idle,
}

impl<S> Pipeline<'_, S>
where
    S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
{
    /// The next answer, in order; `None` when the stream is over (openraft's
    /// appends ended and all were answered, it was idle, or it failed).
    async fn next(&mut self) -> Option<Item> {
        loop {
            if self.done {
                return None;
            }
            let may_take = self.input.is_some()
                && self.outbox.is_empty()
                && self.pending.len() < APPEND_STREAM_IN_FLIGHT_MAX;
            let may_send = self.outbox.front().is_some_and(|next| {
                self.pending.is_empty()
                    || self.pending_bytes + next.len() <= APPEND_STREAM_BYTES_IN_FLIGHT_MAX
            });
            if self.pending.is_empty() && self.outbox.is_empty() && !may_take {
                // openraft's appends ended and every one was answered.
                self.park();
                return None;
            }
            let due = self
                .pending
                .front()
                .map(|head| head.at.max(self.progress) + head.budget);
            let idle_at = (self.pending.is_empty() && self.outbox.is_empty())
                .then(|| self.progress.max(self.last_sent) + crate::timeouts::APPEND_STREAM_IDLE);
            let waiting = !self.pending.is_empty();
            let Self { stream, input, .. } = self;
            let stream = stream.as_mut()?;
            let room = stream.requests.clone();
            let step = tokio::select! {
                biased;
                answer = stream.answers.recv(), if waiting => Step::Answer(answer),
                _ = at(due) => Step::Overdue,
                permit = room.reserve_owned(), if may_send => Step::Room(permit.ok()),
                request = next_of(input), if may_take => Step::Input(request),
                _ = at(idle_at) => Step::Idle,
            };
            match step {
                Step::Answer(answer) => return Some(self.answered(answer)),
                Step::Overdue => {
                    self.done = true;
                    let head = self.pending.front().map_or(Duration::ZERO, |s| s.budget);
                    return Some(Err(self.unreachable(format!(
                        "an append on the stream got no answer within {head:?} \
                         ({} unanswered)",
                        self.pending.len()
                    ))));
                }
                Step::Room(None) => {
                    self.done = true;
                    return Some(Err(self.unreachable("the append stream closed".to_string())));
                }
                Step::Room(Some(permit)) => self.send(permit),
                Step::Input(None) => self.input = None,
                Step::Input(Some(request)) => {
                    if let Err(e) = self.enqueue(request) {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
                Step::Idle => {
                    self.done = true;
                    return None;
                }
            }
        }
    }

    /// Leaves the stream on the peer for its next session (see the module's
    /// documentation); only called with every append answered.
    fn park(&mut self) {
        self.done = true;
        if let Some(stream) = self.stream.take() {
            self.peer.parked = Some(Parked {
                stream,
                at: Instant::now(),
            });
        }
    }

    /// Encodes an append for the outbox, in as many parts as it takes to
    /// keep each under the frame limit (see `Peer::append_entries`); each
    /// part is answered.
    fn enqueue(
        &mut self,
        request: AppendEntriesRequest<TypeConfig>,
    ) -> Result<(), RPCError<TypeConfig>> {
        let local = |e: std::io::Error| RPCError::Network(NetworkError::from_string(e.to_string()));
        let mut parts = Parts::of(request);
        while let Some(next) = parts.next_part() {
            let (part, payload) = next.map_err(local)?;
            // The heartbeats that follow need not carry this commit again.
            self.peer
                .commit_sent
                .carries(part.leader_commit.as_ref().map(|c| c.index));
            self.outbox.push_back(payload);
        }
        Ok(())
    }

    /// Hands the outbox's next append to the stream, where `permit` holds
    /// it room.
    fn send(&mut self, permit: tokio::sync::mpsc::OwnedPermit<Vec<u8>>) {
        let Some(payload) = self.outbox.pop_front() else {
            return;
        };
        let bytes = payload.len();
        let budget = crate::timeouts::append_entries_deadline(self.option.hard_ttl(), bytes);
        permit.send(payload);
        let at = Instant::now();
        self.last_sent = at;
        self.pending_bytes += bytes;
        self.pending.push_back(Sent { at, bytes, budget });
    }

    fn answered(&mut self, answer: Option<Result<Vec<u8>, CallError>>) -> Item {
        if let Some(sent) = self.pending.pop_front() {
            self.pending_bytes -= sent.bytes;
        }
        self.progress = Instant::now();
        let bytes = match answer {
            Some(Ok(bytes)) => bytes,
            Some(Err(e)) => {
                self.done = true;
                return Err(CallFailure::Call(e).into_rpc_error());
            }
            None => {
                self.done = true;
                return Err(self.unreachable(format!(
                    "the append stream ended with {} appends unanswered",
                    self.pending.len() + 1
                )));
            }
        };
        match decode::<Answer<StreamAppendResult<TypeConfig>>>(&bytes) {
            Ok(Ok(result)) => {
                // After a conflict or a higher vote the follower takes no
                // more from this stream.
                self.done = result.is_err();
                Ok(result)
            }
            Ok(Err(reason)) => {
                self.done = true;
                Err(CallFailure::Call(CallError::Remote {
                    node: self.peer.target,
                    reason,
                })
                .into_rpc_error())
            }
            Err(e) => {
                self.done = true;
                Err(RPCError::Network(NetworkError::from_string(format!(
                    "undecodable answer on the append stream: {e}"
                ))))
            }
        }
    }

    fn unreachable(&self, reason: String) -> RPCError<TypeConfig> {
        let e = CallError::Unreachable {
            node: self.peer.target,
            addr: self.peer.addr.clone(),
            reason,
        };
        RPCError::Unreachable(Unreachable::from_string(e.to_string()))
    }
}

/// Ready at `time`; never without one.
async fn at(time: Option<Instant>) {
    match time {
        Some(time) => tokio::time::sleep_until(time).await,
        None => std::future::pending().await,
    }
}

async fn next_of<S: Stream + Unpin>(input: &mut Option<S>) -> Option<S::Item> {
    match input {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use openraft::impls::leader_id_adv::LeaderId;
    use openraft::raft::StreamAppendError;
    use openraft::vote::RaftLeaderId;
    use openraft::{Entry, EntryPayload, LogId, RaftNetworkV2, Vote};
    use sluice_proto::RaftRpc;
    use tokio::sync::{Mutex, mpsc};

    use super::*;
    use crate::log_store::encode;
    use crate::network::{AppendStreamFuture, CallFuture, RaftTransport};

    fn log_id(i: u64) -> openraft::alias::LogIdOf<TypeConfig> {
        LogId::new(LeaderId::<u64, u64>::new(1, 1), i)
    }

    fn append(index: u64) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: Some(log_id(index - 1)),
            entries: vec![Entry {
                log_id: log_id(index),
                payload: EntryPayload::Blank,
            }],
            leader_commit: None,
        }
    }

    /// A transport whose streams end in the test: it gets the requests and
    /// writes the answers. Without streams, it answers every lone append
    /// with a success and counts them.
    #[derive(Default)]
    struct Hand {
        streams: bool,
        opened: Mutex<Option<(mpsc::Receiver<Vec<u8>>, AnswerTx)>>,
        /// Streams opened.
        opens: AtomicUsize,
        lone: AtomicUsize,
        /// RPCs handed over as heartbeats (`call_heartbeat`).
        heartbeats: AtomicUsize,
    }

    type AnswerTx = mpsc::Sender<Result<Vec<u8>, CallError>>;

    impl RaftTransport for Hand {
        fn call(&self, _: crate::NodeId, _: String, _: RaftRpc, _: Duration) -> CallFuture {
            self.lone.fetch_add(1, Ordering::SeqCst);
            let ok: Answer<openraft::raft::AppendEntriesResponse<TypeConfig>> =
                Ok(openraft::raft::AppendEntriesResponse::Success);
            let bytes = encode(&ok).unwrap();
            Box::pin(async move { Ok(bytes) })
        }

        fn call_heartbeat(
            &self,
            t: crate::NodeId,
            a: String,
            r: RaftRpc,
            d: Duration,
        ) -> CallFuture {
            self.heartbeats.fetch_add(1, Ordering::SeqCst);
            self.call(t, a, r, d)
        }

        fn open_append_stream(
            &self,
            _: crate::NodeId,
            _: String,
            _: crate::GroupId,
            _: Duration,
        ) -> AppendStreamFuture {
            if !self.streams {
                return Box::pin(async { Ok(None) });
            }
            self.opens.fetch_add(1, Ordering::SeqCst);
            let (requests, incoming) = mpsc::channel(APPEND_STREAM_IN_FLIGHT_MAX);
            let (answer, answers) = mpsc::channel(APPEND_STREAM_IN_FLIGHT_MAX);
            *self.opened.try_lock().unwrap() = Some((incoming, answer));
            Box::pin(async move { Ok(Some(AppendStream { requests, answers })) })
        }
    }

    fn peer(transport: Arc<Hand>) -> Peer {
        Peer {
            group: 1,
            target: 2,
            addr: "node-2".into(),
            transport,
            lease_wanted: Arc::default(),
            commit_sent: Arc::default(),
            parked: None,
        }
    }

    /// A peer whose transport opens streams that end in the test, and the
    /// option openraft gives a replication session (a 50 ms heartbeat).
    fn streamed() -> (Arc<Hand>, Peer, RPCOption) {
        let hand = Arc::new(Hand {
            streams: true,
            ..Default::default()
        });
        let peer = peer(hand.clone());
        (hand, peer, RPCOption::new(Duration::from_millis(50)))
    }

    fn answer(result: StreamAppendResult<TypeConfig>) -> Result<Vec<u8>, CallError> {
        let a: Answer<StreamAppendResult<TypeConfig>> = Ok(result);
        Ok(encode(&a).unwrap())
    }

    /// openraft's appends: `n` of them, then nothing more for a long while
    /// (a replication session waits for new entries).
    fn appends(n: u64) -> impl Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin {
        futures::stream::iter((1..=n).map(append)).chain(futures::stream::pending())
    }

    #[tokio::test(start_paused = true)]
    async fn appends_leave_before_earlier_ones_are_answered_and_answers_keep_their_order() {
        let (hand, mut peer, option) = streamed();
        let mut answers = peer.stream_append(appends(3), option).await.unwrap();
        // Nothing is answered yet: all three are on the wire.
        let (mut incoming, answer_tx) = hand.opened.lock().await.take().unwrap();
        let next = tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..3 {
                got.push(incoming.recv().await.unwrap());
            }
            for i in 1..=3 {
                answer_tx.send(answer(Ok(Some(log_id(i))))).await.unwrap();
            }
            (got, answer_tx)
        });
        for i in 1..=3 {
            let got = answers.next().await.unwrap().unwrap();
            assert_eq!(got, Ok(Some(log_id(i))));
        }
        let (sent, _answer_tx) = next.await.unwrap();
        assert_eq!(sent.len(), 3);
        // With nothing more to send, the stream ends after its idle time.
        let started = Instant::now();
        assert!(answers.next().await.is_none());
        assert!(started.elapsed() >= crate::timeouts::APPEND_STREAM_IDLE);
        assert_eq!(hand.lone.load(Ordering::SeqCst), 0);
    }

    /// The test's end of the stream a session writes to: the appends as
    /// the follower gets them, and where it answers.
    type FarEnd = (mpsc::Receiver<Vec<u8>>, AnswerTx);

    /// Runs one session of openraft's appends `range` (ending once sent, as
    /// openraft's sessions do) on `peer`, answering each on the stream's far
    /// end with `reply`: the end of a stream the session opened replaces
    /// `far`. Returns the session's answers and the indexes the follower
    /// got, in order.
    async fn session(
        hand: &Hand,
        peer: &mut Peer,
        far: &mut Option<FarEnd>,
        range: std::ops::RangeInclusive<u64>,
        reply: impl Fn(u64) -> StreamAppendResult<TypeConfig>,
    ) -> (Vec<StreamAppendResult<TypeConfig>>, Vec<u64>) {
        let option = RPCOption::new(Duration::from_millis(50));
        let input = futures::stream::iter(range.clone().map(append));
        let answers = peer.stream_append(input, option).await.unwrap();
        if let Some(opened) = hand.opened.lock().await.take() {
            *far = Some(opened);
        }
        let (incoming, answer_tx) = far.as_mut().unwrap();
        let follower = async {
            let mut got = Vec::new();
            for _ in range.clone() {
                let bytes = incoming.recv().await.unwrap();
                let request: AppendEntriesRequest<TypeConfig> = decode(&bytes).unwrap();
                let index = request.entries[0].log_id.index;
                got.push(index);
                answer_tx.send(answer(reply(index))).await.unwrap();
                if reply(index).is_err() {
                    break;
                }
            }
            got
        };
        let leader = answers.map(|a| a.unwrap()).collect::<Vec<_>>();
        tokio::join!(leader, follower)
    }

    fn ok(index: u64) -> StreamAppendResult<TypeConfig> {
        Ok(Some(log_id(index)))
    }

    /// Every answer of one session of `input` on `peer`, to its end.
    async fn all_answers<S>(peer: &mut Peer, input: S, option: RPCOption) -> Vec<Item>
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
    {
        peer.stream_append(input, option)
            .await
            .unwrap()
            .collect()
            .await
    }

    /// An append without entries after `index`, carrying `commit`.
    fn empty(index: u64, commit: Option<u64>) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: Some(log_id(index)),
            entries: vec![],
            leader_commit: commit.map(log_id),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_heartbeats_session_goes_with_the_heartbeats_and_takes_no_stream() {
        let (hand, mut peer, option) = streamed();
        peer.commit_sent.carries(Some(4));
        // As openraft's heartbeat worker sends it: one append, then the end.
        let input = futures::stream::once(std::future::ready(empty(5, Some(4))));
        let answers = all_answers(&mut peer, input, option).await;
        assert_eq!(answers.len(), 1);
        assert!(matches!(answers[0], Ok(Ok(_))), "{answers:?}");
        assert_eq!(hand.heartbeats.load(Ordering::SeqCst), 1);
        assert_eq!(hand.opens.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_append_with_a_new_commit_goes_on_the_stream() {
        let (hand, mut peer, option) = streamed();
        peer.commit_sent.carries(Some(3));
        let input = futures::stream::once(std::future::ready(empty(5, Some(4))));
        let answers = peer.stream_append(input, option).await.unwrap();
        let (mut incoming, answer_tx) = hand.opened.lock().await.take().unwrap();
        let follower = tokio::spawn(async move {
            let sent: AppendEntriesRequest<TypeConfig> =
                decode(&incoming.recv().await.unwrap()).unwrap();
            answer_tx.send(answer(ok(5))).await.unwrap();
            sent.leader_commit
        });
        let answers = answers.map(|a| a.unwrap()).collect::<Vec<_>>().await;
        assert_eq!(answers, vec![ok(5)]);
        assert_eq!(follower.await.unwrap(), Some(log_id(4)));
        assert_eq!(hand.heartbeats.load(Ordering::SeqCst), 0);
    }

    /// The follower's side of a stream: takes `n` appends, answering each
    /// with a success, and gives back what each continued from and carried.
    fn follower(
        mut incoming: mpsc::Receiver<Vec<u8>>,
        answer_tx: AnswerTx,
        n: usize,
    ) -> tokio::task::JoinHandle<Vec<(u64, usize)>> {
        tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..n {
                let request: AppendEntriesRequest<TypeConfig> =
                    decode(&incoming.recv().await.unwrap()).unwrap();
                let prev = request.prev_log_id.map_or(0, |id| id.index);
                let last = request.entries.last().map_or(prev, |e| e.log_id.index);
                got.push((prev, request.entries.len()));
                answer_tx.send(answer(ok(last))).await.unwrap();
            }
            got
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_with_more_after_an_empty_append_streams_them_all_in_order() {
        let (hand, mut peer, option) = streamed();
        peer.commit_sent.carries(Some(1));
        // Ready together (nothing new in the first), then a pause: none may
        // be lost or reordered by the look ahead.
        let input = futures::stream::iter([empty(1, Some(1)), append(2), append(3)])
            .chain(futures::stream::pending());
        let mut answers = peer.stream_append(input, option).await.unwrap();
        let (incoming, answer_tx) = hand.opened.lock().await.take().unwrap();
        let far = follower(incoming, answer_tx, 3);
        for i in 1..=3 {
            assert_eq!(answers.next().await.unwrap().unwrap(), ok(i));
        }
        assert_eq!(far.await.unwrap(), vec![(1, 0), (1, 1), (2, 1)]);
        assert_eq!(hand.heartbeats.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_waiting_after_an_empty_append_keeps_its_stream_and_sends_what_comes() {
        let (hand, mut peer, option) = streamed();
        peer.commit_sent.carries(Some(1));
        // openraft's replication session: nothing new, then entries later.
        let (more, input) = mpsc::channel(4);
        let input = futures::stream::once(std::future::ready(empty(1, Some(1)))).chain(
            futures::stream::unfold(input, |mut rx| async move {
                rx.recv().await.map(|request| (request, rx))
            }),
        );
        let mut answers = peer.stream_append(Box::pin(input), option).await.unwrap();
        let (incoming, answer_tx) = hand.opened.lock().await.take().unwrap();
        let far = follower(incoming, answer_tx, 2);
        assert_eq!(answers.next().await.unwrap().unwrap(), ok(1));
        more.send(append(2)).await.unwrap();
        assert_eq!(answers.next().await.unwrap().unwrap(), ok(2));
        assert_eq!(far.await.unwrap(), vec![(1, 0), (1, 1)]);
        assert_eq!(hand.heartbeats.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_that_ends_answered_leaves_its_stream_to_the_next() {
        let (hand, mut peer, _) = streamed();
        let mut far = None;
        // Three sessions, one stream, the appends in order.
        let (answers, got) = session(&hand, &mut peer, &mut far, 1..=1, ok).await;
        assert_eq!((answers, got), (vec![ok(1)], vec![1]));
        let (answers, got) = session(&hand, &mut peer, &mut far, 2..=3, ok).await;
        assert_eq!((answers, got), (vec![ok(2), ok(3)], vec![2, 3]));
        let (answers, got) = session(&hand, &mut peer, &mut far, 4..=4, ok).await;
        assert_eq!((answers, got), (vec![ok(4)], vec![4]));
        assert_eq!(hand.opens.load(Ordering::SeqCst), 1);

        // A session that ends in a conflict leaves nothing: the next opens
        // a stream of its own.
        let conflict = |i| Err(StreamAppendError::Conflict(log_id(i)));
        let (answers, _) = session(&hand, &mut peer, &mut far, 5..=5, conflict).await;
        assert_eq!(answers, vec![conflict(5)]);
        let (answers, _) = session(&hand, &mut peer, &mut far, 5..=5, ok).await;
        assert_eq!(answers, vec![ok(5)]);
        assert_eq!(hand.opens.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_parked_stream_is_not_taken_over_once_stale_or_closed() {
        let (hand, mut peer, _) = streamed();
        let mut far = None;
        session(&hand, &mut peer, &mut far, 1..=1, ok).await;
        // Parked for the whole reuse window: the next session opens anew.
        tokio::time::sleep(crate::timeouts::PARKED_REUSE_WINDOW).await;
        session(&hand, &mut peer, &mut far, 2..=2, ok).await;
        assert_eq!(hand.opens.load(Ordering::SeqCst), 2);
        // Its far end went (the follower ended the stream): anew again.
        far = None;
        let (answers, got) = session(&hand, &mut peer, &mut far, 3..=3, ok).await;
        assert_eq!((answers, got), (vec![ok(3)], vec![3]));
        assert_eq!(hand.opens.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn an_append_left_unanswered_ends_the_stream_as_unreachable() {
        let (hand, mut peer, option) = streamed();
        let mut answers = peer.stream_append(appends(2), option).await.unwrap();
        let _held = hand.opened.lock().await.take().unwrap();
        let started = Instant::now();
        match answers.next().await {
            Some(Err(RPCError::Unreachable(_))) => {}
            other => panic!("expected unreachable, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(answers.next().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_conflict_ends_the_stream_after_the_answers_before_it() {
        let (hand, mut peer, option) = streamed();
        let mut answers = peer.stream_append(appends(3), option).await.unwrap();
        let (_incoming, answer_tx) = hand.opened.lock().await.take().unwrap();
        answer_tx.send(answer(Ok(Some(log_id(1))))).await.unwrap();
        let conflict = Err(StreamAppendError::Conflict(log_id(2)));
        answer_tx.send(answer(conflict.clone())).await.unwrap();
        assert_eq!(answers.next().await.unwrap().unwrap(), Ok(Some(log_id(1))));
        assert_eq!(answers.next().await.unwrap().unwrap(), conflict);
        assert!(answers.next().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn appends_past_the_bytes_in_flight_wait_for_answers() {
        let (hand, mut peer, option) = streamed();
        let big =
            |index| {
                let mut request = append(index);
                request.entries[0].payload = EntryPayload::Normal(crate::Bytes(Arc::new(vec![
                7;
                APPEND_STREAM_BYTES_IN_FLIGHT_MAX / 2 + 1
            ])));
                request
            };
        let input = futures::stream::iter([big(1), big(2)]).chain(futures::stream::pending());
        let mut answers = peer.stream_append(input, option).await.unwrap();
        let (mut incoming, answer_tx) = hand.opened.lock().await.take().unwrap();
        let first = tokio::spawn(async move {
            let first = incoming.recv().await.unwrap();
            // The second would take the stream past its bytes in flight.
            let early = tokio::time::timeout(Duration::from_millis(20), incoming.recv()).await;
            (first.len(), early.is_err(), incoming)
        });
        let next = answers.next();
        let (next, checked) = tokio::join!(next, async {
            let (len, held, incoming) = first.await.unwrap();
            answer_tx.send(answer(Ok(Some(log_id(1))))).await.unwrap();
            (len, held, incoming, answer_tx)
        });
        let (len, held, mut incoming, _answer_tx) = checked;
        assert!(len > APPEND_STREAM_BYTES_IN_FLIGHT_MAX / 2);
        assert!(held, "the second append left before the first was answered");
        assert_eq!(next.unwrap().unwrap(), Ok(Some(log_id(1))));
        // Answered: the second leaves (the stream is driven by asking it
        // for its next answer).
        tokio::select! {
            biased;
            got = incoming.recv() => assert!(got.is_some()),
            other = answers.next() => panic!("{other:?} before the second append left"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_sending_one_by_one_ends_at_a_pause_to_ask_for_a_stream_again() {
        let hand = Arc::new(Hand::default());
        let mut peer = peer(hand.clone());
        let option = RPCOption::new(Duration::from_millis(50));
        let started = Instant::now();
        let answers: Vec<_> = peer
            .stream_append(appends(2), option)
            .await
            .unwrap()
            .collect()
            .await;
        assert_eq!(answers.len(), 2, "{answers:?}");
        assert_eq!(hand.lone.load(Ordering::SeqCst), 2);
        assert!(started.elapsed() >= crate::timeouts::APPEND_STREAM_IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_transport_without_streams_sends_the_appends_one_by_one() {
        let hand = Arc::new(Hand::default());
        let mut peer = peer(hand.clone());
        let option = RPCOption::new(Duration::from_millis(50));
        let input = futures::stream::iter((1..=3).map(append));
        let answers = all_answers(&mut peer, input, option).await;
        assert_eq!(answers.len(), 3);
        assert!(
            answers.iter().all(|a| matches!(a, Ok(Ok(_)))),
            "{answers:?}"
        );
        assert_eq!(hand.lone.load(Ordering::SeqCst), 3);
    }
}
