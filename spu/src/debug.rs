//! Fault switches for tests, honoured only by debug builds.
//!
//! `SLUICE_DEBUG_DROP_PRODUCE_ACKS=N` drops the answer to every Nth produce
//! request whose batch was committed: the client sees a lost connection and
//! resends, which is exactly the case the idempotent producer exists for
//! (the resend must not write the batch twice).

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

pub const DROP_ACKS_ENV: &str = "SLUICE_DEBUG_DROP_PRODUCE_ACKS";

static DROP_EVERY: LazyLock<Option<u64>> = LazyLock::new(|| {
    let n = std::env::var(DROP_ACKS_ENV)
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    if n == 0 {
        return None;
    }
    if cfg!(debug_assertions) {
        tracing::warn!(
            "{DROP_ACKS_ENV}={n}: dropping the answer to every {n}th committed produce (test only)"
        );
        Some(n)
    } else {
        tracing::warn!("{DROP_ACKS_ENV} is ignored: release builds always answer");
        None
    }
});

static PRODUCES: AtomicU64 = AtomicU64::new(0);

/// Whether the answer to this committed produce is to be dropped.
pub(crate) fn drop_this_ack() -> bool {
    match *DROP_EVERY {
        Some(n) => PRODUCES.fetch_add(1, Ordering::Relaxed) % n == n - 1,
        None => false,
    }
}
