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
    /// Compiled modules kept in the cache; the oldest is dropped beyond this. Also how many
    /// hashes of modules whose compile overran `compile_time_max` and then failed are
    /// remembered (and refused at once, without compiling again).
    pub cache_modules_max: usize,
    /// Compiles that may run at once. Each runs on one thread (wasmtime's parallel
    /// compilation is off), so this is also the most cores compiling takes from the node;
    /// the default, half the cores (at least one), leaves the rest to serving.
    pub compiles_concurrent_max: usize,
    /// Loads that may wait for a compile slot; one more is refused at once as
    /// [`Busy`](crate::SmartModuleError::Busy) (retriable), so a burst of distinct modules
    /// cannot pile up blocking threads and their bytes.
    pub compile_queue_max: usize,
    /// How long a load waits for a compile slot before giving up as
    /// [`Busy`](crate::SmartModuleError::Busy).
    pub compile_wait_max: Duration,
    /// How long a load waits for its compile; past it the load (and those waiting with it)
    /// fails with [`CompileTimeout`](crate::SmartModuleError::CompileTimeout). wasmtime
    /// offers no way to stop a compile once started (no fuel or deadline applies to
    /// compilation), so this bounds the *wait*, not the work: the compile runs to its end on
    /// its own thread, holding its slot (so abandoned compiles cannot pile up); loads of the
    /// same module meanwhile fail at once; if it succeeds it is cached like any other (the
    /// work is done), if it fails the module is refused at once from then on. What bounds
    /// the work is the pre-compile budget (`sluice_proto::limits`,
    /// [`ModuleFigures`](crate::ModuleFigures)): the worst module it admits was measured at
    /// about half of this default. With the default `compile_wait_max`, a load answers
    /// within 20 s, before a client's 30 s request timeout.
    pub compile_time_max: Duration,
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
            compiles_concurrent_max: std::thread::available_parallelism()
                .map_or(1, |n| n.get() / 2)
                .max(1),
            compile_queue_max: 8,
            compile_wait_max: Duration::from_secs(10),
            compile_time_max: Duration::from_secs(10),
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

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proto::limits;

    /// A module the budget accepts can always be instantiated under the default limits.
    #[test]
    fn the_default_limits_admit_what_the_budget_accepts() {
        let c = EngineConfig::default();
        assert!(c.memory_limit_bytes as u64 >= limits::SMARTMODULE_MEMORY_INITIAL_BYTES_MAX);
        assert!(c.table_elements_max as u64 >= limits::SMARTMODULE_TABLE_INITIAL_ELEMENTS_MAX);
        assert!(c.compiles_concurrent_max >= 1);
        assert!(c.compile_queue_max >= 1);
    }
}
