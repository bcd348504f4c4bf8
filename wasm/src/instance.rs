//! One stream's sandbox: a store with capped memory, the module's exports, and the calls
//! that move batches across the boundary, every copy bounds-checked.

use crate::module::{
    EXPORT_ALLOC, EXPORT_CURRENT_OFFSET, EXPORT_DEALLOC, EXPORT_INIT, EXPORT_LOOK_BACK,
    EXPORT_MEMORY, EXPORT_PANIC_MESSAGE, EXPORT_PARAMS,
};
use crate::record::BatchInput;
use crate::{Engine, Module, Record, SmartModuleError, SmartModuleKind};
use sluice_smartmodule::abi::{self, AbiResult, Decoder, RawRecord};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use wasmtime::{Memory, Store, TypedFunc};

/// Longest panic message copied out of a module.
const PANIC_MESSAGE_BYTES_MAX: usize = 4096;

/// Per-store state: the resource limiter, which also remembers that it refused a growth so
/// that the trap that follows is reported as a memory limit rather than a crash.
pub(crate) struct HostState {
    memory_limit_bytes: usize,
    table_elements_max: usize,
    memory_limit_hit: bool,
}

impl wasmtime::ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit_bytes {
            self.memory_limit_hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_elements_max)
    }

    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        sluice_proto::limits::SMARTMODULE_MEMORIES_MAX as usize
    }

    fn tables(&self) -> usize {
        sluice_proto::limits::SMARTMODULE_TABLES_MAX as usize
    }
}

/// A store with the engine's limits installed.
pub(crate) fn new_store(engine: &Engine) -> Store<HostState> {
    let config = &engine.inner.config;
    let mut store = Store::new(
        &engine.inner.wasmtime,
        HostState {
            memory_limit_bytes: config.memory_limit_bytes,
            table_elements_max: config.table_elements_max,
            memory_limit_hit: false,
        },
    );
    store.limiter(|s| s as &mut dyn wasmtime::ResourceLimiter);
    store.epoch_deadline_trap();
    store.set_epoch_deadline(config.deadline_ticks());
    store
}

/// The module's exports, typed.
pub(crate) struct Exports {
    memory: Memory,
    alloc: TypedFunc<u32, u32>,
    dealloc: TypedFunc<(u32, u32), ()>,
    transform: TypedFunc<(u32, u32), u64>,
    params: Option<TypedFunc<(u32, u32), u64>>,
    init: Option<TypedFunc<(u32, u32), u64>>,
    look_back: Option<TypedFunc<(u32, u32), u64>>,
    current_offset: Option<TypedFunc<(), i64>>,
    panic_message: Option<TypedFunc<(), u64>>,
}

impl Exports {
    /// Looks up every export the ABI needs, with its type.
    pub(crate) fn resolve(
        instance: &wasmtime::Instance,
        store: &mut Store<HostState>,
        compiled: &crate::module::Compiled,
        module: &str,
    ) -> Result<Self, SmartModuleError> {
        let kind = compiled.kind;
        let missing =
            |export: &str, ty: &str, e: wasmtime::Error| SmartModuleError::MissingExport {
                module: module.to_owned(),
                export: export.to_owned(),
                problem: format!("is missing or not `{ty}`: {e:#}"),
            };
        let memory = instance
            .get_memory(&mut *store, EXPORT_MEMORY)
            .ok_or_else(|| SmartModuleError::MissingExport {
                module: module.to_owned(),
                export: EXPORT_MEMORY.into(),
                problem: "is missing or not a memory".into(),
            })?;
        let call = "(i32, i32) -> i64";
        let optional = |store: &mut Store<HostState>, present: bool, export: &str| {
            if present {
                instance
                    .get_typed_func::<(u32, u32), u64>(store, export)
                    .map(Some)
                    .map_err(|e| missing(export, call, e))
            } else {
                Ok(None)
            }
        };
        Ok(Self {
            memory,
            alloc: instance
                .get_typed_func(&mut *store, EXPORT_ALLOC)
                .map_err(|e| missing(EXPORT_ALLOC, "(i32) -> i32", e))?,
            dealloc: instance
                .get_typed_func(&mut *store, EXPORT_DEALLOC)
                .map_err(|e| missing(EXPORT_DEALLOC, "(i32, i32)", e))?,
            transform: instance
                .get_typed_func(&mut *store, kind.export_name())
                .map_err(|e| missing(kind.export_name(), call, e))?,
            params: optional(store, compiled.has_params, EXPORT_PARAMS)?,
            init: optional(store, compiled.has_init, EXPORT_INIT)?,
            look_back: optional(store, compiled.has_look_back, EXPORT_LOOK_BACK)?,
            current_offset: instance
                .get_typed_func(&mut *store, EXPORT_CURRENT_OFFSET)
                .ok(),
            panic_message: instance
                .get_typed_func(&mut *store, EXPORT_PANIC_MESSAGE)
                .ok(),
        })
    }
}

/// Counters of one instance's work (records in and out, calls, time inside the module).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstanceStats {
    /// Batch calls made.
    pub calls: u64,
    /// Records given to the module.
    pub records_in: u64,
    /// Records it returned.
    pub records_out: u64,
    /// Wall-clock time spent in calls.
    pub busy: Duration,
}

/// The outcome of a batch that may have failed part way: the outputs of the records before
/// the failure, then the failure.
#[derive(Debug, Default)]
pub struct Processed {
    /// Outputs, in order.
    pub outputs: Vec<Record>,
    /// Why processing stopped early, if it did.
    pub error: Option<SmartModuleError>,
}

/// A module instantiated for one stream. Not shared between threads; `Send`, so it can move
/// to the blocking thread that runs it.
pub struct Instance {
    module: Module,
    store: Store<HostState>,
    exports: Exports,
    /// The aggregate's accumulator, carried from batch to batch.
    accumulator: Vec<u8>,
    /// Set after a trap, a timeout or an ABI violation: the guest's state is suspect.
    poisoned: Option<String>,
    stats: InstanceStats,
    /// Kept to re-run the records before a trap on a fresh instance.
    params: BTreeMap<String, String>,
}

impl Instance {
    pub(crate) fn new(
        module: Module,
        params: &BTreeMap<String, String>,
        accumulator: Vec<u8>,
    ) -> Result<Self, SmartModuleError> {
        let mut store = new_store(&module.engine);
        let c = &module.compiled;
        let instance = match c.pre.instantiate(&mut store) {
            Ok(i) => i,
            Err(e) if store.data().memory_limit_hit => {
                drop(e);
                return Err(SmartModuleError::MemoryLimit {
                    module: module.name().to_owned(),
                    offset: None,
                    limit: module.engine.inner.config.memory_limit_bytes,
                });
            }
            Err(e) => {
                return Err(SmartModuleError::Init {
                    module: module.name().to_owned(),
                    message: format!("cannot instantiate: {e:#}"),
                });
            }
        };
        let exports = Exports::resolve(&instance, &mut store, c, module.name())?;
        let mut this = Self {
            module,
            store,
            exports,
            accumulator,
            poisoned: None,
            stats: InstanceStats::default(),
            params: params.clone(),
        };
        this.init(params)?;
        Ok(this)
    }

    /// Delivers the parameters: to the params parser, then to init. A module with neither
    /// accepts no parameter at all, so a typo is not silently ignored.
    fn init(&mut self, params: &BTreeMap<String, String>) -> Result<(), SmartModuleError> {
        let (p, i) = (self.exports.params.clone(), self.exports.init.clone());
        if p.is_none() && i.is_none() {
            if let Some(key) = params.keys().next() {
                return Err(self.init_error(format!(
                    "unknown parameter `{key}`: this module takes no parameters"
                )));
            }
            return Ok(());
        }
        let encoded = abi::encode_params(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        for func in [p, i].into_iter().flatten() {
            let out = self.call(func, encoded.len(), |dst| dst.copy_from_slice(&encoded))?;
            match abi::decode_result(&out) {
                Ok(AbiResult::Ok(_)) => {}
                Ok(AbiResult::Err { message, .. }) => return Err(self.init_error(message)),
                Err(e) => return Err(self.abi_error(format!("init result: {e}"))),
            }
        }
        Ok(())
    }

    fn init_error(&self, message: String) -> SmartModuleError {
        SmartModuleError::Init {
            module: self.module.name().to_owned(),
            message,
        }
    }

    fn abi_error(&mut self, reason: String) -> SmartModuleError {
        self.poisoned = Some(reason.clone());
        SmartModuleError::Abi {
            module: self.module.name().to_owned(),
            reason,
        }
    }

    /// The module this instance runs.
    pub fn module(&self) -> &Module {
        &self.module
    }

    /// The aggregate's current accumulator (empty for other kinds).
    pub fn accumulator(&self) -> &[u8] {
        &self.accumulator
    }

    /// What this instance has done so far.
    pub fn stats(&self) -> InstanceStats {
        self.stats
    }

    /// After a trap, a timeout or a memory limit at record N the guest's
    /// memory (and the outputs in it) is lost; the records before N did not
    /// fail, so they are run again on a fresh instance that starts from the
    /// same accumulator, and the consumer still gets everything before N.
    fn salvage(&self, records: &[RawRecord<'_>], error: &SmartModuleError) -> Vec<Record> {
        let Some(failed_at) = error.offset() else {
            return Vec::new();
        };
        let before: Vec<RawRecord<'_>> = records
            .iter()
            .filter(|r| r.offset < failed_at)
            .copied()
            .collect();
        if before.is_empty() {
            return Vec::new();
        }
        match Instance::new(self.module.clone(), &self.params, self.accumulator.clone()) {
            Ok(mut fresh) => {
                let p = fresh.process_raw(&before);
                if p.error.is_none() {
                    p.outputs
                } else {
                    Vec::new()
                }
            }
            Err(_) => Vec::new(),
        }
    }

    /// Runs one batch; on failure, the outputs of the records before the failing one are
    /// dropped (use [`Instance::process_partial`] to keep them).
    pub fn process(&mut self, records: &[Record]) -> Result<Vec<Record>, SmartModuleError> {
        let p = self.process_partial(records);
        match p.error {
            None => Ok(p.outputs),
            Some(e) => Err(e),
        }
    }

    /// Runs one batch in one call. When the module returns an error for a record, the
    /// outputs of the records before it are kept. After a trap, a timeout or a memory
    /// limit the module's memory is lost: the records before the failing one are run
    /// again on a fresh instance (see `salvage`), and this instance refuses further
    /// batches with [`SmartModuleError::Poisoned`].
    pub fn process_partial(&mut self, records: &[Record]) -> Processed {
        let raw: Vec<RawRecord<'_>> = records.iter().map(Record::raw).collect();
        self.process_raw(&raw)
    }

    /// [`Instance::process_partial`] over records borrowed from wherever they
    /// lie (e.g. a stored batch), so the caller need not copy each one out.
    pub fn process_raw(&mut self, records: &[RawRecord<'_>]) -> Processed {
        if let Some(cause) = &self.poisoned {
            return Processed {
                outputs: Vec::new(),
                error: Some(SmartModuleError::Poisoned {
                    module: self.module.name().to_owned(),
                    cause: cause.clone(),
                }),
            };
        }
        if records.is_empty() {
            return Processed::default();
        }
        let kind = self.module.kind();
        let accumulator = std::mem::take(&mut self.accumulator);
        let input = BatchInput {
            accumulator: (kind == SmartModuleKind::Aggregate).then_some(accumulator.as_slice()),
            records,
        };
        let started = Instant::now();
        let result = self.call(self.exports.transform.clone(), input.len(), |dst| {
            input.write(dst)
        });
        self.accumulator = accumulator;
        self.stats.calls += 1;
        self.stats.records_in += records.len() as u64;
        self.stats.busy += started.elapsed();
        let out = match result {
            Ok(out) => out,
            Err(e) => {
                let outputs = self.salvage(records, &e);
                return Processed {
                    outputs,
                    error: Some(e),
                };
            }
        };
        let processed = match self.decode_output(&out) {
            Ok(p) => p,
            Err(e) => {
                return Processed {
                    outputs: Vec::new(),
                    error: Some(e),
                };
            }
        };
        self.stats.records_out += processed.outputs.len() as u64;
        if kind == SmartModuleKind::Aggregate
            && let Some(last) = processed.outputs.last()
        {
            self.accumulator.clone_from(&last.value);
        }
        processed
    }

    /// Shows the module `records` (the partition's last ones, oldest first)
    /// through its `look_back` function, so it can rebuild what it keeps
    /// before the stream's first record; nothing comes out. A module without
    /// one ignores them. Its error, trap or timeout fails the stream as a
    /// batch's would, naming the record.
    pub fn look_back(&mut self, records: &[RawRecord<'_>]) -> Result<(), SmartModuleError> {
        let Some(func) = self.exports.look_back.clone() else {
            return Ok(());
        };
        if let Some(cause) = &self.poisoned {
            return Err(SmartModuleError::Poisoned {
                module: self.module.name().to_owned(),
                cause: cause.clone(),
            });
        }
        if records.is_empty() {
            return Ok(());
        }
        let input = BatchInput {
            accumulator: None,
            records,
        };
        let started = Instant::now();
        let result = self.call(func, input.len(), |dst| input.write(dst));
        self.stats.calls += 1;
        self.stats.records_in += records.len() as u64;
        self.stats.busy += started.elapsed();
        match abi::decode_result(&result?) {
            Ok(AbiResult::Ok(_)) => Ok(()),
            Ok(AbiResult::Err { offset, message }) => Err(SmartModuleError::Transform {
                module: self.module.name().to_owned(),
                offset,
                message: format!("look_back: {message}"),
            }),
            Err(e) => Err(self.abi_error(format!("look_back result: {e}"))),
        }
    }

    fn decode_output(&mut self, out: &[u8]) -> Result<Processed, SmartModuleError> {
        let payload = match abi::decode_result(out) {
            Ok(AbiResult::Ok(payload)) => payload,
            Ok(AbiResult::Err { message, .. }) => {
                return Err(self.abi_error(format!("module rejected its input: {message}")));
            }
            Err(e) => return Err(self.abi_error(format!("output: {e}"))),
        };
        let mut d = Decoder::new(payload);
        let decoded = (|| {
            let records = d.records()?;
            let error = match d.u8("failure tag")? {
                0 => None,
                1 => Some((
                    d.i64("failure offset")?,
                    String::from_utf8_lossy(d.bytes("failure message")?).into_owned(),
                )),
                _ => {
                    return Err(abi::DecodeError {
                        what: "failure tag",
                        at: 0,
                    });
                }
            };
            d.end()?;
            Ok((records, error))
        })();
        let (records, failure) = decoded.map_err(|e| self.abi_error(format!("output: {e}")))?;
        Ok(Processed {
            outputs: records.iter().map(Record::from_raw).collect(),
            error: failure.map(|(offset, message)| SmartModuleError::Transform {
                module: self.module.name().to_owned(),
                offset,
                message,
            }),
        })
    }

    /// Has `write_input` write the `input_len` bytes of the input straight
    /// into a buffer the module allocates (no copy of it on this side first),
    /// calls `func`, and copies its output out.
    fn call(
        &mut self,
        func: TypedFunc<(u32, u32), u64>,
        input_len: usize,
        write_input: impl FnOnce(&mut [u8]),
    ) -> Result<Vec<u8>, SmartModuleError> {
        let deadline_ticks = self.module.engine.inner.config.deadline_ticks();
        self.store.set_epoch_deadline(deadline_ticks);
        let len = u32::try_from(input_len).map_err(|_| SmartModuleError::MemoryLimit {
            module: self.module.name().to_owned(),
            offset: None,
            limit: self.module.engine.inner.config.memory_limit_bytes,
        })?;
        let ptr = match self.exports.alloc.call(&mut self.store, len) {
            Ok(p) => p,
            Err(e) => return Err(self.fault(e)),
        };
        self.check_bounds(ptr, len, "input buffer from sluice_alloc")?;
        let start = ptr as usize;
        write_input(&mut self.exports.memory.data_mut(&mut self.store)[start..start + input_len]);
        let packed = match func.call(&mut self.store, (ptr, len)) {
            Ok(p) => p,
            Err(e) => return Err(self.fault(e)),
        };
        let (out_ptr, out_len) = ((packed >> 32) as u32, packed as u32);
        let max = self.module.engine.inner.config.output_bytes_max;
        if out_len as usize > max {
            self.poisoned = Some(format!("output of {out_len} bytes"));
            return Err(SmartModuleError::OutputTooLarge {
                module: self.module.name().to_owned(),
                bytes: out_len as usize,
                max,
            });
        }
        self.check_bounds(out_ptr, out_len, "output buffer")?;
        let mut out = vec![0u8; out_len as usize];
        self.exports
            .memory
            .read(&self.store, out_ptr as usize, &mut out)
            .map_err(|e| self.abi_error(format!("reading the output: {e}")))?;
        if let Err(e) = self
            .exports
            .dealloc
            .call(&mut self.store, (out_ptr, out_len))
        {
            return Err(self.fault(e));
        }
        Ok(out)
    }

    /// Fails unless `[ptr, ptr + len)` lies inside the module's memory.
    fn check_bounds(&mut self, ptr: u32, len: u32, what: &str) -> Result<(), SmartModuleError> {
        let size = self.exports.memory.data_size(&self.store);
        let end = u64::from(ptr) + u64::from(len);
        if end > size as u64 {
            return Err(self.abi_error(format!(
                "{what} [{ptr}, {end}) lies outside the module's {size} bytes of memory"
            )));
        }
        Ok(())
    }

    /// Turns a trap into the error that says what happened, asking the module (under a fresh
    /// deadline) which record it was on and what its panic said. Poisons the instance.
    fn fault(&mut self, err: wasmtime::Error) -> SmartModuleError {
        let module = self.module.name().to_owned();
        let config = &self.module.engine.inner.config;
        let (limit, deadline) = (config.memory_limit_bytes, config.call_deadline);
        let ticks = config.deadline_ticks();
        let interrupted = err.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt);
        self.store.set_epoch_deadline(ticks);
        let offset = self
            .exports
            .current_offset
            .clone()
            .and_then(|f| f.call(&mut self.store, ()).ok())
            .filter(|o| *o >= 0);
        let error = if self.store.data().memory_limit_hit {
            SmartModuleError::MemoryLimit {
                module,
                offset,
                limit,
            }
        } else if interrupted {
            SmartModuleError::Timeout {
                module,
                offset,
                deadline,
            }
        } else {
            let message = self.panic_message().unwrap_or_else(|| format!("{err:#}"));
            SmartModuleError::Trap {
                module,
                offset,
                message,
            }
        };
        self.poisoned = Some(error.to_string());
        error
    }

    fn panic_message(&mut self) -> Option<String> {
        let packed = self
            .exports
            .panic_message
            .clone()?
            .call(&mut self.store, ())
            .ok()?;
        let (ptr, len) = ((packed >> 32) as usize, (packed as u32) as usize);
        if len == 0 {
            return None;
        }
        let data = self.exports.memory.data(&self.store);
        let bytes = data.get(ptr..ptr.checked_add(len)?)?;
        let bytes = &bytes[..bytes.len().min(PANIC_MESSAGE_BYTES_MAX)];
        Some(String::from_utf8_lossy(bytes).into_owned())
    }
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("module", &self.module)
            .field("poisoned", &self.poisoned)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}
