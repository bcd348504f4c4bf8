//! Commit notices that ride on the next append instead of a round of their
//! own.
//!
//! openraft's replication stream to a follower sends an AppendEntries as soon
//! as the leader's commit index moves, even when it carries no entry: after
//! every append the follower acknowledges, the leader commits, and the next
//! request is an empty one that only says so. Under load that is half of a
//! partition's Raft rounds: with 64 busy partitions each entry cost about 4.6
//! RPCs, two of them such notices (BENCHMARKS.md, "Where the cost is
//! instead"), each a QUIC round trip, a wake-up of the follower's group and
//! an apply of its own.
//!
//! [`hold_commit_notices`] sits between that stream and the network: an
//! entry-less request (a commit notice) is held back for at most
//! [`crate::timeouts::COMMIT_NOTICE_DELAY`]; if the stream produces another
//! request within that time, the notice is dropped and the next request goes
//! instead. Nothing is lost by dropping it: a later request carries the
//! leader's commit as it is when that request is made (never older), the
//! same `prev_log_id` or a later one, and the same vote, so the follower
//! learns everything the notice said from it; openraft counts the dropped
//! notice as acknowledged when the later one is (its place in the in-flight
//! queue ends at or before the later one's), and the time it records for the
//! leader's lease is the later request's, which only makes the lease shorter.
//!
//! What it costs: a follower learns of a commit up to that delay later when
//! no entry follows, so a read served by a follower (and a follower's apply)
//! may lag by as much more. Safety does not depend on when followers learn of
//! commits: the leader acknowledges a write once a majority holds it. The
//! first request of a stream is never held (it establishes where the
//! follower stands), and a zero delay turns this off.

use std::time::Duration;

use futures::stream::{BoxStream, Stream, StreamExt};
use openraft::raft::AppendEntriesRequest;
use tokio::time::Instant;

use crate::TypeConfig;

type Request = AppendEntriesRequest<TypeConfig>;

/// The requests of `input`, with each entry-less one after the first held
/// back for at most `delay` and dropped when another request comes within
/// that time (see the module's doc). Notices that follow each other while
/// one is held replace it, the first one's deadline kept, so a stream of
/// notices still sends one every `delay`.
pub(crate) fn hold_commit_notices<S>(input: S, delay: Duration) -> BoxStream<'static, Request>
where
    S: Stream<Item = Request> + Send + Unpin + 'static,
{
    let state = Holding {
        input,
        delay,
        first: true,
        held: None,
        ended: false,
    };
    futures::stream::unfold(state, Holding::next).boxed()
}

struct Holding<S> {
    input: S,
    delay: Duration,
    /// No request went yet: the next one is sent whatever it carries.
    first: bool,
    /// A commit notice waiting for a request to ride on, and when it must go.
    held: Option<(Request, Instant)>,
    /// The input has ended: send what is held, then end.
    ended: bool,
}

impl<S> Holding<S>
where
    S: Stream<Item = Request> + Send + Unpin + 'static,
{
    async fn next(mut self) -> Option<(Request, Self)> {
        loop {
            let Some((notice, deadline)) = self.held.take() else {
                if self.ended {
                    return None;
                }
                let request = self.input.next().await?;
                match self.hold(request, None) {
                    Some(send) => return Some((send, self)),
                    None => continue,
                }
            };
            // `next` on a stream loses nothing when its future is dropped:
            // a request being made when the deadline passes comes next time.
            match tokio::time::timeout_at(deadline, self.input.next()).await {
                Err(_elapsed) => return Some((notice, self)),
                Ok(None) => {
                    self.ended = true;
                    return Some((notice, self));
                }
                Ok(Some(request)) => {
                    // The notice is dropped: `request` says all it said.
                    if let Some(send) = self.hold(request, Some(deadline)) {
                        return Some((send, self));
                    }
                }
            }
        }
    }

    /// Holds `request` if it is a commit notice that may wait (until
    /// `deadline`, or `delay` from now); otherwise returns it to be sent.
    fn hold(&mut self, request: Request, deadline: Option<Instant>) -> Option<Request> {
        let first = std::mem::replace(&mut self.first, false);
        if first || !request.entries.is_empty() || self.delay.is_zero() {
            return Some(request);
        }
        let deadline = deadline.unwrap_or_else(|| Instant::now() + self.delay);
        self.held = Some((request, deadline));
        None
    }
}

#[cfg(test)]
mod tests {
    use openraft::impls::leader_id_adv::LeaderId;
    use openraft::vote::RaftLeaderId;
    use openraft::{Entry, EntryPayload, LogId, Vote};
    use tokio::sync::mpsc;
    use self::channel::Receiver;

    use super::*;

    const DELAY: Duration = Duration::from_millis(20);

    fn log_id(i: u64) -> LogId<LeaderId<u64, u64>> {
        LogId::new(LeaderId::<u64, u64>::new(1, 1), i)
    }

    /// An append after `prev` carrying entries `prev+1..=last` (none when
    /// `last == prev`: a commit notice), with the leader's commit at `commit`.
    fn append(prev: u64, last: u64, commit: u64) -> Request {
        Request {
            vote: Vote::new_committed(1, 1),
            prev_log_id: Some(log_id(prev)),
            entries: (prev + 1..=last)
                .map(|i| Entry {
                    log_id: log_id(i),
                    payload: EntryPayload::Blank,
                })
                .collect(),
            leader_commit: Some(log_id(commit)),
        }
    }

    /// What the network sees: (prev, entries, commit) per request.
    fn sent(r: &Request) -> (u64, usize, u64) {
        (
            r.prev_log_id.unwrap().index,
            r.entries.len(),
            r.leader_commit.unwrap().index,
        )
    }

    mod channel {
        //! A channel's receiver as a stream (what openraft's generator is
        //! to the network: requests made one by one, when they are due).
        use std::pin::Pin;
        use std::task::{Context, Poll};

        pub struct Receiver<T>(pub tokio::sync::mpsc::UnboundedReceiver<T>);

        impl<T> futures::Stream for Receiver<T> {
            type Item = T;
            fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
                self.0.poll_recv(cx)
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_notice_followed_by_an_append_within_the_delay_is_dropped() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut out = hold_commit_notices(Receiver(rx), DELAY);
        tx.send(append(0, 3, 0)).unwrap();
        assert_eq!(sent(&out.next().await.unwrap()), (0, 3, 0));
        // The leader commits 3: a notice. Entries 4..=5 follow 5 ms later.
        tx.send(append(3, 3, 3)).unwrap();
        let tx2 = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            tx2.send(append(3, 5, 3)).unwrap();
        });
        let started = Instant::now();
        let next = out.next().await.unwrap();
        assert_eq!(sent(&next), (3, 2, 3), "the append goes, carrying the commit");
        assert_eq!(started.elapsed(), Duration::from_millis(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_notice_with_nothing_after_it_goes_after_the_delay() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut out = hold_commit_notices(Receiver(rx), DELAY);
        tx.send(append(0, 1, 0)).unwrap();
        out.next().await.unwrap();
        tx.send(append(1, 1, 1)).unwrap();
        let started = Instant::now();
        assert_eq!(sent(&out.next().await.unwrap()), (1, 0, 1));
        assert_eq!(started.elapsed(), DELAY);
        // Input ends with a notice held: it still goes, then the end.
        tx.send(append(1, 1, 1)).unwrap();
        drop(tx);
        assert_eq!(sent(&out.next().await.unwrap()), (1, 0, 1));
        assert!(out.next().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn notices_in_a_row_keep_the_first_deadline_and_the_newest_commit() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut out = hold_commit_notices(Receiver(rx), DELAY);
        tx.send(append(0, 4, 0)).unwrap();
        out.next().await.unwrap();
        let tx2 = tx.clone();
        tokio::spawn(async move {
            for commit in 1..=4 {
                tx2.send(append(4, 4, commit)).unwrap();
                tokio::time::sleep(Duration::from_millis(8)).await;
            }
        });
        let started = Instant::now();
        // Notices at 0, 8 and 16 ms are merged; the 20 ms deadline sends the
        // newest (commit 3), and the one at 24 ms is held anew.
        assert_eq!(sent(&out.next().await.unwrap()), (4, 0, 3));
        assert_eq!(started.elapsed(), DELAY);
        assert_eq!(sent(&out.next().await.unwrap()), (4, 0, 4));
        assert_eq!(started.elapsed(), Duration::from_millis(24) + DELAY);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_request_and_a_zero_delay_hold_nothing() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut out = hold_commit_notices(Receiver(rx), DELAY);
        tx.send(append(2, 2, 2)).unwrap();
        let started = Instant::now();
        assert_eq!(sent(&out.next().await.unwrap()), (2, 0, 2));
        assert_eq!(started.elapsed(), Duration::ZERO, "a stream's first request");

        let (tx, rx) = mpsc::unbounded_channel();
        let mut out = hold_commit_notices(Receiver(rx), Duration::ZERO);
        tx.send(append(0, 2, 0)).unwrap();
        tx.send(append(2, 2, 2)).unwrap();
        tx.send(append(2, 3, 2)).unwrap();
        let mut all = Vec::new();
        for _ in 0..3 {
            all.push(sent(&out.next().await.unwrap()));
        }
        assert_eq!(all, [(0, 2, 0), (2, 0, 2), (2, 1, 2)]);
        assert_eq!(started.elapsed(), Duration::ZERO, "nothing waited");
    }
}
