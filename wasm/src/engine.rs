//! The engine: one wasmtime engine, its epoch ticker and the cache of compiled modules.

use crate::module::{Compiled, Module};
use crate::{EngineConfig, SmartModuleError};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Loads and runs SmartModules. Cheap to clone; clones share the cache and the ticker.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<EngineInner>,
}

pub(crate) struct EngineInner {
    pub(crate) wasmtime: wasmtime::Engine,
    pub(crate) config: EngineConfig,
    cache: Mutex<Cache>,
    /// Held while compiling, so two streams loading the same new module compile it once.
    compiling: Mutex<()>,
    compiles: AtomicU64,
    /// Kept for its `Drop`, which stops the thread when the last handle goes.
    _ticker: Ticker,
}

#[derive(Default)]
struct Cache {
    modules: HashMap<[u8; 32], Arc<Compiled>>,
    order: VecDeque<[u8; 32]>,
}

/// The thread that advances the epoch, stopped when the engine is dropped.
struct Ticker {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Engine {
    /// An engine with `config`; starts the epoch ticker thread.
    pub fn new(config: EngineConfig) -> Result<Self, SmartModuleError> {
        let mut wt = wasmtime::Config::new();
        wt.epoch_interruption(true)
            .cranelift_opt_level(wasmtime::OptLevel::Speed)
            // No host threads inside modules, no 64-bit memories: keep the sandbox simple.
            .wasm_memory64(false);
        let wasmtime = wasmtime::Engine::new(&wt).map_err(|e| SmartModuleError::Engine {
            reason: e.to_string(),
        })?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread = {
            let stop = Arc::clone(&stop);
            let engine = wasmtime.clone();
            let tick = config.epoch_tick;
            std::thread::Builder::new()
                .name("sluice-wasm-epoch".into())
                .spawn(move || {
                    let (lock, cv) = &*stop;
                    let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                    while !*stopped {
                        stopped = cv
                            .wait_timeout(stopped, tick)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| SmartModuleError::Engine {
                    reason: format!("cannot start the epoch ticker thread: {e}"),
                })?
        };
        Ok(Self {
            inner: Arc::new(EngineInner {
                wasmtime,
                config,
                cache: Mutex::new(Cache::default()),
                compiling: Mutex::new(()),
                compiles: AtomicU64::new(0),
                _ticker: Ticker {
                    stop,
                    thread: Some(thread),
                },
            }),
        })
    }

    /// The configuration this engine runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Validates and compiles `bytes`, or returns the cached compilation of the same bytes.
    /// The module is named by its hash until [`Module::named`] gives it a name.
    pub fn load(&self, bytes: &[u8]) -> Result<Module, SmartModuleError> {
        let hash: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(c) = self.cached(&hash) {
            return Ok(Module::new(self.clone(), c));
        }
        let _compiling = self
            .inner
            .compiling
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(c) = self.cached(&hash) {
            return Ok(Module::new(self.clone(), c));
        }
        let compiled = Arc::new(Compiled::compile(self, hash, bytes)?);
        self.inner.compiles.fetch_add(1, Ordering::Relaxed);
        let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        while cache.order.len() >= self.inner.config.cache_modules_max.max(1) {
            if let Some(old) = cache.order.pop_front() {
                cache.modules.remove(&old);
            }
        }
        cache.order.push_back(hash);
        cache.modules.insert(hash, Arc::clone(&compiled));
        Ok(Module::new(self.clone(), compiled))
    }

    fn cached(&self, hash: &[u8; 32]) -> Option<Arc<Compiled>> {
        let cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.modules.get(hash).cloned()
    }

    /// How many modules this engine has compiled (cache hits do not count).
    pub fn compile_count(&self) -> u64 {
        self.inner.compiles.load(Ordering::Relaxed)
    }

    /// How many compiled modules the cache holds.
    pub fn cached_modules(&self) -> usize {
        let cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.modules.len()
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.inner.config)
            .field("compiles", &self.compile_count())
            .finish_non_exhaustive()
    }
}
