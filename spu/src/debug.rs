//! Fault switches for tests, honoured only by debug builds.
//!
//! `SLUICE_DEBUG_DROP_PRODUCE_ACKS=N` drops the answer to every Nth produce
//! request whose batch was committed: the client sees a lost connection and
//! resends, which is exactly the case the idempotent producer exists for
//! (the resend must not write the batch twice).
//!
//! `SLUICE_DEBUG_FAIL_SNAPSHOT_INSTALLS=N` fails the node's first N snapshot
//! installs at once, as an install whose source stayed silent past its
//! retries fails: the replica's group stops and the reconciler must restart
//! it (`cli/tests/it/membership.rs`).

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

pub const FAIL_INSTALLS_ENV: &str = "SLUICE_DEBUG_FAIL_SNAPSHOT_INSTALLS";

static INSTALLS_TO_FAIL: LazyLock<AtomicU64> = LazyLock::new(|| {
    let n = std::env::var(FAIL_INSTALLS_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if n > 0 && cfg!(debug_assertions) {
        tracing::warn!(
            "{FAIL_INSTALLS_ENV}={n}: failing the first {n} snapshot installs (test only)"
        );
        AtomicU64::new(n)
    } else {
        if n > 0 {
            tracing::warn!("{FAIL_INSTALLS_ENV} is ignored: release builds never fail on purpose");
        }
        AtomicU64::new(0)
    }
});

/// The injected failure of [`FAIL_INSTALLS_ENV`] while installs are left to
/// fail, else `Ok`.
pub(crate) fn injected_install_failure() -> std::io::Result<()> {
    let failed = INSTALLS_TO_FAIL
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok();
    if failed {
        return Err(std::io::Error::other(format!(
            "{FAIL_INSTALLS_ENV}: this snapshot install fails on purpose"
        )));
    }
    Ok(())
}
