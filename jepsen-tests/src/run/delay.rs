//! Late packets: the UDP packets into the target nodes are held in user
//! space for a while before the kernel may deliver them, each for its own
//! time, so they also arrive out of order. The kernel here has no `netem`,
//! and nftables has no `queue` statement in it, so the packets are sent to
//! a netfilter queue by an iptables (legacy) `NFQUEUE` rule on the input
//! hook of the run's namespace, and a thread of this process, bound to
//! that queue, gives each its verdict (accept) once its time has come.
//!
//! Every request then meets what a slow or congested network does to it:
//! answers after the deadline, retransmissions that overtake their
//! original, a request that runs long after its client gave up. The rule
//! has `--queue-bypass`, so a packet meets no queue if the thread is gone.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::netns;
use super::rng::Rng;

/// The netfilter queue the rules send packets to.
const QUEUE_NUM: u16 = 7;

/// Most packets the kernel keeps waiting for their verdict; past it, a
/// packet goes through undelayed (fail-open), never dropped: this fault
/// delays, `loss` drops.
const QUEUE_LEN_MAX: u32 = 20_000;

/// Least and largest base delay of a step, in ms: from a busy switch to a
/// long-haul link, past the nodes' 50 ms Raft deadlines at the top.
pub const DELAY_MS_MIN: u64 = 2;
pub const DELAY_MS_MAX: u64 = 120;

/// How long the thread sleeps at most between looks at the queue.
const POLL_STEP: Duration = Duration::from_millis(1);

/// How long the thread goes on letting packets through once told to stop:
/// a packet that met the rules just before they were removed can reach the
/// queue just after, and closing the queue would drop it (this fault
/// delays; `loss` drops).
const DRAIN: Duration = Duration::from_millis(20);

/// The iptables that reaches the kernel's legacy tables (`iptables-nft`
/// would need the nftables `queue` statement this kernel lacks).
const IPTABLES: &str = "iptables-legacy";

/// Whether late packets can be injected here (the namespace aside).
pub fn available() -> Result<(), String> {
    match Command::new(IPTABLES).arg("--version").output() {
        Ok(out) if out.status.success() => Ok(()),
        _ => Err(format!(
            "{IPTABLES} is missing (apt-get install iptables): late packets go through an \
             NFQUEUE rule"
        )),
    }
}

/// What a step did: packets held, and the most held at once.
#[derive(Debug, Default, Clone, Copy)]
pub struct Held {
    pub packets: u64,
    pub most_at_once: usize,
}

/// The thread holding packets, and the rules feeding it.
pub struct Delayer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<Held>>>,
}

/// A packet's delay: the step's base and up to half of it again at random
/// (so packets of one flow overtake each other).
fn packet_delay(base_ms: u64, rng: &mut Rng) -> Duration {
    let jitter_us = rng.range(0, base_ms * 1_000 / 2 + 1);
    Duration::from_micros(base_ms * 1_000 + jitter_us)
}

impl Delayer {
    /// Binds the queue, starts the thread, then adds the rules that send it
    /// the UDP packets into `targets` (in the current namespace).
    pub fn start(targets: &[Ipv4Addr], base_ms: u64, seed: u64) -> anyhow::Result<Delayer> {
        let mut queue = nfq::Queue::open().context("cannot open a netfilter queue socket")?;
        queue
            .bind(QUEUE_NUM)
            .context("cannot bind the netfilter queue")?;
        queue.set_fail_open(QUEUE_NUM, true)?;
        queue.set_queue_max_len(QUEUE_NUM, QUEUE_LEN_MAX)?;
        // Only the verdict is needed, not the packet.
        queue.set_copy_range(QUEUE_NUM, 0)?;
        queue.set_nonblocking(true);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("late-packets".into())
                .spawn(move || hold_packets(queue, base_ms, seed, &stop))?
        };
        let delayer = Delayer {
            stop,
            thread: Some(thread),
        };
        for ip in targets {
            netns::run(Command::new(IPTABLES).args([
                "-w",
                "-I",
                "INPUT",
                "-p",
                "udp",
                "-d",
                &format!("{ip}/32"),
                "-j",
                "NFQUEUE",
                "--queue-num",
                &QUEUE_NUM.to_string(),
                "--queue-bypass",
            ]))?;
        }
        Ok(delayer)
    }

    /// Removes the rules, then lets every packet still held go.
    pub fn stop(mut self) -> anyhow::Result<Held> {
        self.finish()
    }

    /// [`Delayer::stop`]'s work, once (again: nothing held).
    fn finish(&mut self) -> anyhow::Result<Held> {
        let Some(thread) = self.thread.take() else {
            return Ok(Held::default());
        };
        let flushed = heal();
        self.stop.store(true, Ordering::Relaxed);
        let held = thread
            .join()
            .map_err(|_| anyhow::anyhow!("the late-packet thread panicked"))?;
        flushed?;
        held
    }
}

impl Drop for Delayer {
    /// A step that ended early (its rules half added) still heals.
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Removes every late-packet rule (the chain holds no other).
pub fn heal() -> anyhow::Result<()> {
    netns::run(Command::new(IPTABLES).args(["-w", "-F", "INPUT"]))
}

/// The thread: takes packets off the queue, each with its due time, and
/// gives each its verdict when due; once told to stop, lets them all go,
/// and any that still arrive for [`DRAIN`].
fn hold_packets(
    mut queue: nfq::Queue,
    base_ms: u64,
    seed: u64,
    stop: &AtomicBool,
) -> anyhow::Result<Held> {
    let mut rng = Rng::new(seed);
    // Each packet under its due time (and its number, to keep ties apart).
    let mut waiting: BTreeMap<(Instant, u64), nfq::Message> = BTreeMap::new();
    let mut held = Held::default();
    let mut stopped_at: Option<Instant> = None;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if stopping && stopped_at.is_none() {
            stopped_at = Some(Instant::now());
        }
        loop {
            match queue.recv() {
                Ok(mut msg) => {
                    msg.set_verdict(nfq::Verdict::Accept);
                    let due = Instant::now() + packet_delay(base_ms, &mut rng);
                    waiting.insert((due, held.packets), msg);
                    held.packets += 1;
                    held.most_at_once = held.most_at_once.max(waiting.len());
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e).context("cannot read the netfilter queue"),
            }
        }
        let now = Instant::now();
        while let Some(entry) = waiting.first_entry() {
            if entry.key().0 > now && !stopping {
                break;
            }
            queue
                .verdict(entry.remove())
                .context("cannot give a held packet its verdict")?;
        }
        if stopped_at.is_some_and(|at| at.elapsed() >= DRAIN) {
            let _ = queue.unbind(QUEUE_NUM);
            return Ok(held);
        }
        let next = waiting
            .first_key_value()
            .map_or(POLL_STEP, |((due, _), _)| {
                due.saturating_duration_since(now)
            });
        std::thread::sleep(next.min(POLL_STEP));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_waits_its_base_and_at_most_half_again() {
        let mut rng = Rng::new(3);
        let delays: Vec<Duration> = (0..1_000).map(|_| packet_delay(40, &mut rng)).collect();
        assert!(
            delays
                .iter()
                .all(|d| { *d >= Duration::from_millis(40) && *d <= Duration::from_millis(60) })
        );
        // Spread enough that packets sent a few ms apart overtake each other.
        let max = delays.iter().max().unwrap();
        let min = delays.iter().min().unwrap();
        assert!(*max - *min > Duration::from_millis(15), "{min:?}..{max:?}");
    }
}
