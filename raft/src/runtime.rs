//! The async runtime openraft runs on: tokio's, except for its bounded
//! channels, which here hold no buffer while they are empty.
//!
//! Why: openraft opens four bounded channels per group (API calls, snapshot
//! installs, notifications, state-machine commands). Tokio's bounded channel
//! allocates a block of 32 message slots when it is made and keeps one for
//! as long as it lives: with openraft's message types about 35 KB per group,
//! a third of the 0.11 MB an idle replica kept (BENCHMARKS.md, session 31).
//! The channel here queues messages in a `VecDeque` that it lets go whenever
//! the queue empties, so a sleeping group's channels hold their shared state
//! only. A message costs one lock, and the buffer's allocation when it
//! arrives at an empty queue: a Raft round sends a handful per group.
//!
//! Everything else (tasks, timers, watch and oneshot channels, mutexes) is
//! tokio's, through openraft's own [`TokioRuntime`]. openraft-rt's conformance
//! suite runs against this runtime (`runtime::tests`).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use openraft::async_runtime::{
    AsyncRuntime, Mpsc, MpscReceiver, MpscSender, MpscWeakSender, SendError, TryRecvError,
};
use openraft::{OptionalSend, TokioRuntime};
use tokio::sync::{Notify, Semaphore};

/// Tokio's runtime with [`LazyMpsc`] as its bounded channel.
#[derive(Debug)]
pub struct SluiceRuntime(TokioRuntime);

type Tokio = TokioRuntime;

impl AsyncRuntime for SluiceRuntime {
    type JoinError = <Tokio as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <Tokio as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <Tokio as AsyncRuntime>::Sleep;
    type Instant = <Tokio as AsyncRuntime>::Instant;
    type TimeoutError = <Tokio as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = <Tokio as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = <Tokio as AsyncRuntime>::ThreadLocalRng;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        Tokio::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        Tokio::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        Tokio::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        Tokio::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        Tokio::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        Tokio::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        Tokio::thread_rng()
    }

    type Mpsc = LazyMpsc;
    type Watch = <Tokio as AsyncRuntime>::Watch;
    type Oneshot = <Tokio as AsyncRuntime>::Oneshot;
    type Mutex<T: OptionalSend + 'static> = <Tokio as AsyncRuntime>::Mutex<T>;

    fn new(threads: usize) -> Self {
        Self(Tokio::new(threads))
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.0.block_on(future)
    }
}

/// A bounded multi-producer, single-consumer channel whose queue holds no
/// memory while it is empty (see the module's comment).
pub struct LazyMpsc;

struct Shared<T> {
    state: Mutex<State<T>>,
    /// One permit per free place in the queue: a sender waits here while the
    /// channel is full. Closed when the receiver goes.
    free: Semaphore,
    /// Wakes the receiver: a message was queued, or the last sender went.
    arrived: Notify,
}

struct State<T> {
    queue: VecDeque<T>,
    /// Live [`LazySender`]s (weak ones do not count): none left ends the
    /// receiver's wait.
    senders: usize,
    receiver_gone: bool,
}

impl<T> Shared<T> {
    fn state(&self) -> MutexGuard<'_, State<T>> {
        // No code panics while holding the lock but an allocation failure,
        // which aborts; a poisoned lock still holds a consistent queue.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sending half of a [`LazyMpsc`] channel.
pub struct LazySender<T>(Arc<Shared<T>>);

/// A sender that does not keep the channel open.
pub struct LazyWeakSender<T>(Arc<Shared<T>>);

/// The receiving half of a [`LazyMpsc`] channel.
pub struct LazyReceiver<T>(Arc<Shared<T>>);

impl Mpsc for LazyMpsc {
    type Sender<T: OptionalSend> = LazySender<T>;
    type Receiver<T: OptionalSend> = LazyReceiver<T>;
    type WeakSender<T: OptionalSend> = LazyWeakSender<T>;

    /// A channel of `buffer` places (more than zero, as tokio's).
    fn channel<T: OptionalSend>(buffer: usize) -> (LazySender<T>, LazyReceiver<T>) {
        assert!(
            buffer > 0,
            "a bounded channel needs room for at least one message"
        );
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                senders: 1,
                receiver_gone: false,
            }),
            free: Semaphore::new(buffer.min(Semaphore::MAX_PERMITS)),
            arrived: Notify::new(),
        });
        (LazySender(shared.clone()), LazyReceiver(shared))
    }
}

impl<T> Clone for LazySender<T> {
    fn clone(&self) -> Self {
        self.0.state().senders += 1;
        Self(self.0.clone())
    }
}

impl<T> Drop for LazySender<T> {
    fn drop(&mut self) {
        let last = {
            let mut state = self.0.state();
            state.senders -= 1;
            state.senders == 0
        };
        if last {
            self.0.arrived.notify_one();
        }
    }
}

impl<T: OptionalSend> MpscSender<LazyMpsc, T> for LazySender<T> {
    async fn send(&self, msg: T) -> Result<(), SendError<T>> {
        match self.0.free.acquire().await {
            // The receiver gives the place back when it takes the message.
            Ok(place) => place.forget(),
            Err(_closed) => return Err(SendError(msg)),
        }
        {
            let mut state = self.0.state();
            if state.receiver_gone {
                return Err(SendError(msg));
            }
            state.queue.push_back(msg);
        }
        self.0.arrived.notify_one();
        Ok(())
    }

    fn downgrade(&self) -> LazyWeakSender<T> {
        LazyWeakSender(self.0.clone())
    }
}

impl<T> Clone for LazyWeakSender<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: OptionalSend> MpscWeakSender<LazyMpsc, T> for LazyWeakSender<T> {
    fn upgrade(&self) -> Option<LazySender<T>> {
        let mut state = self.0.state();
        if state.senders == 0 {
            return None;
        }
        state.senders += 1;
        Some(LazySender(self.0.clone()))
    }
}

impl<T> LazyReceiver<T> {
    fn take(&self) -> Result<T, TryRecvError> {
        let mut state = self.0.state();
        match state.queue.pop_front() {
            Some(msg) => {
                if state.queue.is_empty() {
                    // The point of this channel: an empty queue holds nothing.
                    state.queue = VecDeque::new();
                }
                drop(state);
                self.0.free.add_permits(1);
                Ok(msg)
            }
            None if state.senders == 0 => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }
}

impl<T: OptionalSend> MpscReceiver<T> for LazyReceiver<T> {
    async fn recv(&mut self) -> Option<T> {
        loop {
            // A notification sent between `take` and the wait is kept
            // (`notify_one` stores a permit), so none is lost; a stale one
            // costs one more look.
            match self.take() {
                Ok(msg) => return Some(msg),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => self.0.arrived.notified().await,
            }
        }
    }

    fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.take()
    }
}

impl<T> Drop for LazyReceiver<T> {
    /// Senders fail from now on, and queued messages are dropped now, not
    /// when the last sender goes: a message may carry a responder that its
    /// caller is waiting on.
    fn drop(&mut self) {
        let queued = {
            let mut state = self.0.state();
            state.receiver_gone = true;
            std::mem::take(&mut state.queue)
        };
        self.0.free.close();
        drop(queued);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_passes_openraft_rts_conformance_suite() {
        openraft_rt::testing::Suite::<SluiceRuntime>::test_all();
    }

    /// Capacity of the queue's buffer now.
    fn buffered_places<T>(rx: &LazyReceiver<T>) -> usize {
        rx.0.state().queue.capacity()
    }

    #[tokio::test]
    async fn an_emptied_channel_lets_its_buffer_go() {
        let (tx, mut rx) = LazyMpsc::channel::<[u8; 200]>(1024);
        assert_eq!(buffered_places(&rx), 0, "a new channel allocates nothing");
        for _ in 0..100 {
            tx.send([7; 200]).await.unwrap();
        }
        assert!(buffered_places(&rx) >= 100);
        for _ in 0..99 {
            rx.recv().await.unwrap();
        }
        assert!(buffered_places(&rx) >= 100, "kept while messages wait");
        rx.recv().await.unwrap();
        assert_eq!(buffered_places(&rx), 0, "let go once empty");
    }

    #[tokio::test]
    async fn a_full_channel_makes_its_sender_wait_until_a_message_is_taken() {
        let (tx, mut rx) = LazyMpsc::channel::<u32>(2);
        tx.send(1).await.unwrap();
        tx.send(2).await.unwrap();
        let mut third = Box::pin(tx.send(3));
        assert!(
            futures::poll!(third.as_mut()).is_pending(),
            "the channel is full"
        );
        assert_eq!(rx.recv().await, Some(1));
        third.await.unwrap();
        assert_eq!(rx.try_recv().ok(), Some(2));
        assert_eq!(rx.try_recv().ok(), Some(3));
    }

    #[tokio::test]
    async fn a_dropped_receiver_fails_waiting_senders_and_drops_what_was_queued() {
        let (tx, rx) = LazyMpsc::channel::<Arc<()>>(1);
        let queued = Arc::new(());
        tx.send(queued.clone()).await.unwrap();
        let mut waiting = Box::pin(tx.send(Arc::new(())));
        assert!(
            futures::poll!(waiting.as_mut()).is_pending(),
            "the channel is full"
        );
        drop(rx);
        assert!(waiting.await.is_err(), "the waiting send failed");
        assert_eq!(
            Arc::strong_count(&queued),
            1,
            "the queued message was dropped"
        );
        assert!(tx.send(Arc::new(())).await.is_err());
    }
}
