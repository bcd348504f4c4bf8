//! The engine: one wasmtime engine, its epoch ticker and the cache of compiled modules.

use crate::budget::{self, ModuleFigures};
use crate::module::{Compiled, Module, short_hash};
use crate::{EngineConfig, SmartModuleError};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Loads and runs SmartModules. Cheap to clone; clones share the cache and the ticker.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<EngineInner>,
}

pub(crate) struct EngineInner {
    pub(crate) wasmtime: wasmtime::Engine,
    pub(crate) config: EngineConfig,
    cache: Mutex<Cache>,
    /// Bounds how many compiles run at once and how many loads wait for one.
    slots: Arc<CompileSlots>,
    /// Compiles started (cache hits, followers of a compile and refusals before compiling do
    /// not count).
    compiles: AtomicU64,
    /// Called on the compile thread before each compile: lets the tests hold compiles open.
    #[cfg(test)]
    pub(crate) compile_hook: Mutex<Option<CompileHook>>,
    /// Kept for its `Drop`, which stops the thread when the last handle goes.
    _ticker: Ticker,
}

type Hash = [u8; 32];

#[cfg(test)]
type CompileHook = Arc<dyn Fn(Hash) + Send + Sync>;

#[derive(Default)]
struct Cache {
    modules: HashMap<Hash, Arc<Compiled>>,
    order: VecDeque<Hash>,
    /// Compiles under way, by hash, until their compile thread ends. A load of a hash in here
    /// waits for that compile instead of starting another: one compile per module however
    /// many streams ask for it, while different modules compile independently (no lock is
    /// held while compiling).
    in_flight: HashMap<Hash, Arc<Flight>>,
    /// Hashes of modules whose compile overran `compile_time_max` and then failed, most
    /// recent last, at most `cache_modules_max`: they are refused at once, so resending one
    /// cannot occupy a compile slot again. (One that overran and then succeeded is cached
    /// like any other: the work is done, serving it costs nothing.)
    failed_late: VecDeque<Hash>,
}

/// One compile, awaited by every load of its module: the first one's (the leader, which
/// stops waiting after `compile_time_max`) and those that came during it.
#[derive(Default)]
struct Flight {
    /// Set once: the compile's result, or `CompileTimeout` when the leader stopped waiting
    /// first (the compile goes on, and its landing still updates the cache).
    result: Mutex<Option<Result<Arc<Compiled>, SmartModuleError>>>,
    done: Condvar,
    /// Loads that joined the leader's (for the tests).
    followers: AtomicU64,
}

impl Flight {
    /// Waits for the result until `deadline`; `None` if there is none by then.
    fn wait(&self, deadline: Option<Instant>) -> Option<Result<Arc<Compiled>, SmartModuleError>> {
        let mut result = self.result.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(r) = result.as_ref() {
                return Some(r.clone());
            }
            result = match deadline {
                None => self.done.wait(result).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return None;
                    }
                    self.done
                        .wait_timeout(result, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// Sets the result unless one is set; returns the one that stands.
    fn resolve(
        &self,
        result: Result<Arc<Compiled>, SmartModuleError>,
    ) -> Result<Arc<Compiled>, SmartModuleError> {
        let mut slot = self.result.lock().unwrap_or_else(|e| e.into_inner());
        let stands = slot.get_or_insert(result).clone();
        drop(slot);
        self.done.notify_all();
        stands
    }
}

/// What a load does about a module that is not cached.
enum Role {
    /// Compile it.
    Lead(Arc<Flight>),
    /// Wait for the compile under way.
    Follow(Arc<Flight>),
}

/// The duty to end a flight: update the cache, remove the flight, resolve it. Held by the
/// leader until the compile thread starts, then by that thread. Dropped without landing (an
/// early return, a panic, a thread that could not start) it lands an error, so no load waits
/// forever and the hash can be loaded again.
struct Landing {
    engine: Engine,
    hash: Hash,
    flight: Arc<Flight>,
    landed: bool,
}

impl Landing {
    fn land(mut self, result: Result<Arc<Compiled>, SmartModuleError>) {
        self.landed = true;
        self.publish(result);
    }

    fn publish(&self, result: Result<Arc<Compiled>, SmartModuleError>) {
        let inner = &self.engine.inner;
        let mut cache = inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        // Locked (after the cache, as everywhere) until the result is set, so that the leader
        // cannot give up between this check and the setting.
        let mut slot = self.flight.result.lock().unwrap_or_else(|e| e.into_inner());
        let overdue = matches!(*slot, Some(Err(SmartModuleError::CompileTimeout { .. })));
        let keep = inner.config.cache_modules_max.max(1);
        match &result {
            Ok(compiled) => {
                while cache.order.len() >= keep {
                    if let Some(old) = cache.order.pop_front() {
                        cache.modules.remove(&old);
                    }
                }
                cache.order.push_back(self.hash);
                cache.modules.insert(self.hash, Arc::clone(compiled));
            }
            Err(_) if overdue => {
                while cache.failed_late.len() >= keep {
                    cache.failed_late.pop_front();
                }
                cache.failed_late.push_back(self.hash);
            }
            // Cheap to find again (a refusal before compiling, or a compile within budget).
            Err(_) => {}
        }
        cache.in_flight.remove(&self.hash);
        // Resolved under the cache lock: a load that finds the flight gone finds the cache
        // updated.
        slot.get_or_insert(result);
        drop(slot);
        drop(cache);
        self.flight.done.notify_all();
    }
}

impl Drop for Landing {
    fn drop(&mut self) {
        if !self.landed {
            self.publish(Err(SmartModuleError::Engine {
                reason: format!(
                    "compiling SmartModule {} failed unexpectedly (the compile panicked or its thread could not start)",
                    short_hash(&self.hash)
                ),
            }));
        }
    }
}

/// Compile slots: at most `running_max` compiles at once, at most `waiting_max` loads
/// waiting for a slot.
struct CompileSlots {
    state: Mutex<SlotState>,
    freed: Condvar,
    running_max: usize,
    waiting_max: usize,
}

#[derive(Default)]
struct SlotState {
    running: usize,
    waiting: usize,
}

/// A compile slot, given back when dropped (when the compile ends, even one whose load
/// stopped waiting for it).
struct Permit(Arc<CompileSlots>);

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        state.running -= 1;
        drop(state);
        // Every waiter rechecks: one whose wait timed out meanwhile must not swallow the
        // wake-up another needs.
        self.0.freed.notify_all();
    }
}

impl CompileSlots {
    fn acquire(
        self: &Arc<Self>,
        module: &str,
        wait_max: Duration,
    ) -> Result<Permit, SmartModuleError> {
        let busy = |reason: String| SmartModuleError::Busy {
            module: module.to_owned(),
            reason,
        };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.running < self.running_max {
            state.running += 1;
            return Ok(Permit(Arc::clone(self)));
        }
        if state.waiting >= self.waiting_max {
            return Err(busy(format!(
                "{} compiles running and {} waiting, the most it allows",
                state.running, state.waiting
            )));
        }
        state.waiting += 1;
        let deadline = Instant::now() + wait_max;
        loop {
            let now = Instant::now();
            if state.running < self.running_max || now >= deadline {
                break;
            }
            state = self
                .freed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        state.waiting -= 1;
        if state.running < self.running_max {
            state.running += 1;
            return Ok(Permit(Arc::clone(self)));
        }
        Err(busy(format!(
            "no compile slot freed within {wait_max:?} ({} running)",
            state.running
        )))
    }
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
            // One thread per compile: `compiles_concurrent_max` then bounds the cores that
            // compiling takes (rayon would spread every compile over all of them).
            .parallel_compilation(false)
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
        let slots = Arc::new(CompileSlots {
            state: Mutex::new(SlotState::default()),
            freed: Condvar::new(),
            running_max: config.compiles_concurrent_max.max(1),
            waiting_max: config.compile_queue_max,
        });
        Ok(Self {
            inner: Arc::new(EngineInner {
                wasmtime,
                config,
                cache: Mutex::new(Cache::default()),
                slots,
                compiles: AtomicU64::new(0),
                #[cfg(test)]
                compile_hook: Mutex::new(None),
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
    ///
    /// Before compiling, the module must fit the pre-compile budget
    /// ([`ModuleFigures::measure`]: size, functions, locals... each bound a constant of
    /// `sluice_proto::limits`), else [`SmartModuleError::OverLimit`]. Loads of a module being
    /// compiled wait for that compile; other modules compile independently, at most
    /// `compiles_concurrent_max` at once ([`SmartModuleError::Busy`] when the queue is full
    /// or the wait too long), each within `compile_time_max`
    /// ([`SmartModuleError::CompileTimeout`]). Blocks: call it from a blocking thread.
    pub fn load(&self, bytes: &[u8]) -> Result<Module, SmartModuleError> {
        let hash: Hash = Sha256::digest(bytes).into();
        let name = short_hash(&hash);
        budget::check_size(&name, bytes)?;
        let role = {
            let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = cache.modules.get(&hash) {
                return Ok(Module::new(self.clone(), Arc::clone(c)));
            }
            if cache.failed_late.contains(&hash) {
                return Err(self.timeout(name));
            }
            match cache.in_flight.get(&hash) {
                Some(flight) => Role::Follow(Arc::clone(flight)),
                None => {
                    let flight = Arc::new(Flight::default());
                    cache.in_flight.insert(hash, Arc::clone(&flight));
                    Role::Lead(flight)
                }
            }
        };
        let compiled = match role {
            // The leader resolves the flight by its deadline at the latest.
            Role::Follow(flight) => {
                flight.followers.fetch_add(1, Ordering::Relaxed);
                flight.wait(None).unwrap_or_else(|| Err(self.timeout(name)))
            }
            Role::Lead(flight) => self.lead(hash, name, bytes, flight),
        };
        Ok(Module::new(self.clone(), compiled?))
    }

    fn timeout(&self, module: String) -> SmartModuleError {
        SmartModuleError::CompileTimeout {
            module,
            budget: self.inner.config.compile_time_max,
        }
    }

    /// Checks the budget, takes a compile slot, compiles on a thread of its own and waits for
    /// it at most `compile_time_max`.
    fn lead(
        &self,
        hash: Hash,
        name: String,
        bytes: &[u8],
        flight: Arc<Flight>,
    ) -> Result<Arc<Compiled>, SmartModuleError> {
        let landing = Landing {
            engine: self.clone(),
            hash,
            flight: Arc::clone(&flight),
            landed: false,
        };
        let config = &self.inner.config;
        let permit = match ModuleFigures::measure(&name, bytes)
            .and_then(|_| self.inner.slots.acquire(&name, config.compile_wait_max))
        {
            Ok(permit) => permit,
            Err(e) => {
                landing.land(Err(e.clone()));
                return Err(e);
            }
        };
        let bytes = bytes.to_vec();
        self.inner.compiles.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + config.compile_time_max;
        std::thread::Builder::new()
            .name("sluice-wasm-compile".into())
            .spawn(move || {
                // Given back after the landing (locals drop in reverse order).
                let _slot = permit;
                #[cfg(test)]
                landing.engine.run_compile_hook(hash);
                let compiled = Compiled::compile(&landing.engine, hash, &bytes).map(Arc::new);
                landing.land(compiled);
            })
            .map_err(|e| SmartModuleError::Engine {
                reason: format!("cannot start a thread to compile SmartModule {name}: {e}"),
            })?;
        match flight.wait(Some(deadline)) {
            Some(result) => result,
            // The compile goes on (it cannot be stopped) and lands in the cache when it ends;
            // this load, and those waiting with it, stop waiting now.
            None => flight.resolve(Err(self.timeout(name))),
        }
    }

    #[cfg(test)]
    fn run_compile_hook(&self, hash: Hash) {
        let hook = self
            .inner
            .compile_hook
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(hook) = hook {
            hook(hash);
        }
    }

    /// How many compiles this engine has started: cache hits, loads that waited for another
    /// load's compile of the same module, and modules refused before compiling do not count.
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

#[cfg(test)]
impl Engine {
    /// Sets the hook every compile thread calls before compiling.
    fn set_compile_hook(&self, hook: impl Fn([u8; 32]) + Send + Sync + 'static) {
        *self
            .inner
            .compile_hook
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(hook));
    }

    /// Loads that joined the compile of `hash` under way (0 if none is).
    fn followers(&self, hash: &Hash) -> u64 {
        let cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .in_flight
            .get(hash)
            .map_or(0, |f| f.followers.load(Ordering::Relaxed))
    }

    /// Compiles running and loads waiting for a slot.
    fn slots(&self) -> (usize, usize) {
        let state = self
            .inner
            .slots
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        (state.running, state.waiting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testwasm::{I32, TYPE_VOID, WasmBuilder, op};
    use sluice_proto::limits::SMARTMODULE_SIZE_BYTES_MAX;
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Waits until `cond` holds, for at most 10 s; returns whether it did.
    fn eventually(cond: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        cond()
    }

    fn engine(config: EngineConfig) -> Engine {
        Engine::new(config).unwrap()
    }

    fn module(salt: u64) -> Vec<u8> {
        WasmBuilder::smartmodule(salt).encode()
    }

    fn hash(bytes: &[u8]) -> Hash {
        Sha256::digest(bytes).into()
    }

    /// A compile bomb in the shape that took seconds per KiB: 50,000 locals, 6,000 of them
    /// live through 20 nested loops. Compiled, it would take minutes.
    fn locals_bomb() -> Vec<u8> {
        let mut code = Vec::new();
        for _ in 0..20 {
            code.extend_from_slice(&op::LOOP);
        }
        for i in 0..6_000 {
            op::local_get(i, &mut code);
            op::i32_const(1, &mut code);
            code.push(op::I32_ADD);
            op::local_set(i, &mut code);
        }
        for _ in 0..20 {
            op::local_get(0, &mut code);
            op::br_if(0, &mut code);
            code.push(op::END);
        }
        let mut b = WasmBuilder::smartmodule(0);
        b.function(TYPE_VOID, &[(50_000, I32)], code);
        b.encode()
    }

    #[test]
    fn a_locals_bomb_is_refused_quickly_without_compiling() {
        let e = engine(EngineConfig::default());
        let bomb = locals_bomb();
        let started = Instant::now();
        let err = e.load(&bomb).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(
            matches!(
                err,
                SmartModuleError::OverLimit {
                    limit: crate::ModuleLimit::LocalsPerFunction,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!err.is_retriable());
        assert_eq!(e.compile_count(), 0);
        // The engine still compiles what fits.
        e.load(&module(1)).unwrap();
        assert_eq!(e.compile_count(), 1);
    }

    #[test]
    fn a_module_over_the_size_limit_is_refused() {
        let e = engine(EngineConfig::default());
        let mut b = WasmBuilder::smartmodule(0);
        b.padding(12 * 1024 * 1024);
        let err = e.load(&b.encode()).unwrap_err();
        assert!(
            matches!(
                err,
                SmartModuleError::OverLimit { limit: crate::ModuleLimit::SizeBytes, found, .. }
                    if found > SMARTMODULE_SIZE_BYTES_MAX as u64
            ),
            "{err:?}"
        );
        assert_eq!(e.compile_count(), 0);
    }

    #[test]
    fn different_modules_compile_at_the_same_time() {
        let e = engine(EngineConfig {
            compiles_concurrent_max: 2,
            ..EngineConfig::default()
        });
        // Each compile waits (up to 10 s) for the other to be under way too.
        let running = Arc::new(AtomicUsize::new(0));
        let overlapped = Arc::new(AtomicUsize::new(0));
        {
            let (running, overlapped) = (Arc::clone(&running), Arc::clone(&overlapped));
            e.set_compile_hook(move |_| {
                running.fetch_add(1, Ordering::SeqCst);
                if eventually(|| running.load(Ordering::SeqCst) >= 2) {
                    overlapped.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        let loads: Vec<_> = [1, 2]
            .map(|salt| {
                let e = e.clone();
                std::thread::spawn(move || e.load(&module(salt)).map(|m| m.hash()))
            })
            .into_iter()
            .collect();
        let hashes: Vec<_> = loads
            .into_iter()
            .map(|t| t.join().unwrap().unwrap())
            .collect();
        assert_ne!(hashes[0], hashes[1]);
        assert_eq!(
            overlapped.load(Ordering::SeqCst),
            2,
            "both compiles ran at once"
        );
        assert_eq!(e.compile_count(), 2);
        assert_eq!(e.cached_modules(), 2);
    }

    #[test]
    fn the_same_module_loaded_by_two_threads_compiles_once() {
        let e = engine(EngineConfig::default());
        let bytes = module(7);
        let h = hash(&bytes);
        // The compile waits until the second load has joined it.
        {
            let e2 = e.clone();
            e.set_compile_hook(move |hash| {
                assert!(eventually(|| e2.followers(&hash) == 1));
            });
        }
        let loads: Vec<_> = (0..2)
            .map(|_| {
                let (e, bytes) = (e.clone(), bytes.clone());
                std::thread::spawn(move || e.load(&bytes).unwrap())
            })
            .collect();
        let modules: Vec<_> = loads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(e.compile_count(), 1);
        assert!(Arc::ptr_eq(&modules[0].compiled, &modules[1].compiled));
        assert_eq!(e.followers(&h), 0, "the flight is gone");
        e.load(&bytes).unwrap();
        assert_eq!(e.compile_count(), 1, "then the cache answers");
        *e.inner.compile_hook.lock().unwrap() = None; // breaks the engine -> hook -> engine cycle
    }

    #[test]
    fn loads_beyond_the_slots_wait_in_a_bounded_queue_then_are_refused_as_busy() {
        let e = engine(EngineConfig {
            compiles_concurrent_max: 1,
            compile_queue_max: 1,
            compile_wait_max: Duration::from_millis(300),
            ..EngineConfig::default()
        });
        // The compile of module 1 holds its slot until released.
        let (release, released) = mpsc::channel::<()>();
        let released = Mutex::new(released);
        let held = hash(&module(1));
        e.set_compile_hook(move |hash| {
            if hash == held {
                let _ = released.lock().unwrap().recv();
            }
        });
        let first = {
            let e = e.clone();
            std::thread::spawn(move || e.load(&module(1)))
        };
        assert!(eventually(|| e.slots() == (1, 0)));
        // Module 2 waits for the slot; module 3 finds the queue full and is refused at once.
        let second = {
            let e = e.clone();
            std::thread::spawn(move || e.load(&module(2)))
        };
        assert!(eventually(|| e.slots() == (1, 1)));
        let started = Instant::now();
        let err = e.load(&module(3)).unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(250));
        assert!(matches!(err, SmartModuleError::Busy { .. }), "{err:?}");
        assert!(err.is_retriable());
        assert!(err.to_string().contains("retry"), "{err}");
        // Module 2 gives up after its wait.
        let err = second.join().unwrap().unwrap_err();
        assert!(matches!(err, SmartModuleError::Busy { .. }), "{err:?}");
        release.send(()).unwrap();
        first.join().unwrap().unwrap();
        // A slot is free again: the refused modules load now.
        e.load(&module(2)).unwrap();
        e.load(&module(3)).unwrap();
        assert!(eventually(|| e.slots() == (0, 0)));
        assert_eq!(e.compile_count(), 3);
    }

    #[test]
    fn a_compile_over_its_time_budget_is_refused_and_goes_on_holding_its_slot() {
        let e = engine(EngineConfig {
            compiles_concurrent_max: 1,
            compile_wait_max: Duration::from_millis(100),
            compile_time_max: Duration::from_millis(200),
            ..EngineConfig::default()
        });
        // Compiles of modules 1 and 3 hold on until released. Module 3 is invalid (its
        // function returns an i64 where its type says i32): it passes the budget and fails
        // in wasmtime.
        let (release, released) = mpsc::channel::<()>();
        let released = Mutex::new(released);
        let mut b = WasmBuilder::smartmodule(3);
        let mut code = Vec::new();
        op::i64_const(0, &mut code);
        b.function(0, &[], code);
        let invalid = b.encode();
        let slow = [hash(&module(1)), hash(&invalid)];
        e.set_compile_hook(move |hash| {
            if slow.contains(&hash) {
                let _ = released.lock().unwrap().recv();
            }
        });
        let started = Instant::now();
        let err = e.load(&module(1)).unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(
            matches!(err, SmartModuleError::CompileTimeout { budget, .. } if budget == Duration::from_millis(200)),
            "{err:?}"
        );
        assert!(!err.is_retriable());
        // Sent again while it still compiles, it is refused at once, without a second compile.
        let started = Instant::now();
        let err = e.load(&module(1)).unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(150));
        assert!(
            matches!(err, SmartModuleError::CompileTimeout { .. }),
            "{err:?}"
        );
        assert_eq!(e.compile_count(), 1);
        // The compile still holds the only slot.
        assert_eq!(e.slots().0, 1);
        let err = e.load(&module(2)).unwrap_err();
        assert!(matches!(err, SmartModuleError::Busy { .. }), "{err:?}");
        // Once it ends, its success is cached: the work is done.
        release.send(()).unwrap();
        assert!(eventually(|| e.slots() == (0, 0)));
        e.load(&module(1)).unwrap();
        assert_eq!(e.compile_count(), 1);

        // One that fails after overrunning the budget is refused at once from then on.
        let err = e.load(&invalid).unwrap_err();
        assert!(
            matches!(err, SmartModuleError::CompileTimeout { .. }),
            "{err:?}"
        );
        release.send(()).unwrap();
        assert!(eventually(|| e.slots() == (0, 0)));
        let started = Instant::now();
        let err = e.load(&invalid).unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(150));
        assert!(
            matches!(err, SmartModuleError::CompileTimeout { .. }),
            "{err:?}"
        );
        assert_eq!(e.compile_count(), 2);
        // Within budget, the same invalid module is simply invalid, and not remembered.
        let quick = engine(EngineConfig::default());
        let err = quick.load(&invalid).unwrap_err();
        assert!(matches!(err, SmartModuleError::NotWasm { .. }), "{err:?}");
        quick.load(&invalid).unwrap_err();
        assert_eq!(quick.compile_count(), 2);
    }

    #[test]
    fn a_compile_that_panics_fails_its_load_and_frees_its_slot() {
        let e = engine(EngineConfig {
            compiles_concurrent_max: 1,
            ..EngineConfig::default()
        });
        let doomed = hash(&module(1));
        e.set_compile_hook(move |hash| assert_ne!(hash, doomed, "test: this compile panics"));
        let err = e.load(&module(1)).unwrap_err();
        assert!(err.to_string().contains("panicked"), "{err}");
        assert!(eventually(|| e.slots() == (0, 0)));
        e.load(&module(2)).unwrap();
    }
}
