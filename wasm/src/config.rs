//! Limits and knobs of the engine, with safe defaults.

use std::time::Duration;

/// How the engine runs modules. Every limit has a default suitable for a serving node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Wall-clock time one call into a module may take (a batch, an init) before it is
    /// interrupted with [`SmartModuleError::Timeout`](crate::SmartModuleError::Timeout).
    pub call_deadline: Duration,
    /// Period of the ticker thread that advances wasmtime's epoch; the deadline is honoured
    /// to within one tick (never early).
    pub epoch_tick: Duration,
    /// Linear memory one instance may hold; growing past it is
    /// [`SmartModuleError::MemoryLimit`](crate::SmartModuleError::MemoryLimit).
    pub memory_limit_bytes: usize,
    /// Largest output buffer a call may return (an array-map can multiply its input).
    pub output_bytes_max: usize,
    /// Table elements one instance may hold (function pointers of the guest).
    pub table_elements_max: usize,
    /// Compiled modules kept in the cache; the oldest is dropped beyond this.
    pub cache_modules_max: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            call_deadline: Duration::from_secs(1),
            epoch_tick: Duration::from_millis(10),
            memory_limit_bytes: 64 * 1024 * 1024,
            output_bytes_max: 16 * 1024 * 1024,
            table_elements_max: 100_000,
            cache_modules_max: 64,
        }
    }
}

impl EngineConfig {
    /// Epoch ticks that make up `call_deadline`, rounded up, plus one because the current
    /// tick may be almost over when the deadline is set.
    pub(crate) fn deadline_ticks(&self) -> u64 {
        let tick = self.epoch_tick.as_nanos().max(1);
        let ticks = self.call_deadline.as_nanos().div_ceil(tick);
        u64::try_from(ticks).unwrap_or(u64::MAX - 1).max(1) + 1
    }
}
