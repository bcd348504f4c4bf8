//! A consumer's SmartModule chain, run in the SPU before records leave it.
//!
//! Building (compiling, or fetching from the engine's cache, then
//! instantiating with the consumer's parameters) and applying both block, so
//! the fetch handler runs them on tokio's blocking pool: a slow or looping
//! module holds one blocking thread until its epoch deadline, never the
//! reactor that serves every other stream.

use std::collections::HashMap;

use sluice_controller::{Metadata, SmartModuleRecord};
use sluice_proto::limits::SMARTMODULE_CHAIN_LEN_MAX;
use sluice_proto::{
    ConsumerRecord, HeadersRef, SmartModuleInfo, SmartModuleInvocation, SmartModuleSource,
    WireError,
};
use sluice_storage::{StorageError, StoredBatch};
use sluice_wasm::{Chain, Engine, InstanceStats, Module, RawRecord, SmartModuleError};

use crate::services::Services;

/// Replaces registered names by the modules' code from `md` (this node's
/// replica of the SmartModule store).
pub(crate) fn resolve(
    md: &Metadata,
    invocations: Vec<SmartModuleInvocation>,
) -> Result<Vec<SmartModuleInvocation>, WireError> {
    invocations
        .into_iter()
        .map(|mut inv| {
            if let SmartModuleSource::Registered(name) = &inv.module {
                let record = md.smartmodule(name)?;
                inv.module = SmartModuleSource::AdHoc {
                    name: name.clone(),
                    wasm: record.wasm.clone(),
                };
            }
            Ok(inv)
        })
        .collect()
}

/// Validates a module (within the pre-compile budget, valid wasm, exactly one
/// transform export, supported ABI) and registers it through `controller`
/// (the node's, or one serving a `Request::Once`).
pub(crate) async fn register(
    node: &Services,
    controller: &sluice_controller::Controller,
    name: String,
    wasm: Vec<u8>,
) -> Result<SmartModuleInfo, WireError> {
    let invalid = |reason: String| WireError::InvalidArgument {
        what: "SmartModule".into(),
        reason,
    };
    sluice_proto::limits::validate_smartmodule_name(&name).map_err(invalid)?;
    let engine = node.engine()?;
    let (checked_name, bytes) = (name.clone(), wasm.clone());
    // The engine checks the size and the rest of the pre-compile budget, the same for a
    // module registered here as for one a consumer sends ad hoc (`Transforms::build`).
    let module = tokio::task::spawn_blocking(move || load(&engine, &checked_name, &bytes))
        .await
        .map_err(|e| invalid(format!("validation failed: {e}")))??;
    let info = SmartModuleInfo {
        name,
        kind: module.kind(),
        size_bytes: wasm.len() as u64,
        hash: module.hash_hex(),
        created_ms: sluice_proto::now_ms(),
    };
    controller
        .create_smartmodule(SmartModuleRecord {
            info: info.clone(),
            wasm,
        })
        .await?;
    Ok(info)
}

pub(crate) struct Transforms {
    chain: Chain,
    /// Names of the modules, in order, for error messages and metrics.
    names: Vec<String>,
    /// Each module's counters as last reported to the metrics.
    reported: Vec<InstanceStats>,
}

fn wire_error(module: &str, e: &SmartModuleError) -> WireError {
    if let SmartModuleError::Busy { reason, .. } = e {
        // Retriable: nothing is wrong with the module.
        return WireError::Unavailable {
            what: format!("compiling SmartModule {module}"),
            reason: reason.clone(),
        };
    }
    WireError::SmartModule {
        module: module.to_string(),
        offset: e.offset().and_then(|o| u64::try_from(o).ok()),
        reason: e.to_string(),
    }
}

/// Loads (checks the budget, compiles or finds in the cache) the module `name`. Blocking.
fn load(engine: &Engine, name: &str, wasm: &[u8]) -> Result<Module, WireError> {
    engine
        .load(wasm)
        .map(|m| m.named(name))
        .map_err(|e| wire_error(name, &e.named(name)))
}

/// The records with offsets in `from..until` of `batches` (stamped at or
/// after `min_timestamp_ms`, if given), borrowed where they lie; the
/// headers of those that have some go into `headers`, by offset, if given
/// (modules do not see them).
fn raw_records<'a>(
    batches: &'a [StoredBatch],
    from: u64,
    until: u64,
    min_timestamp_ms: Option<i64>,
    mut headers: Option<&mut HashMap<u64, HeadersRef<'a>>>,
) -> Result<Vec<RawRecord<'a>>, StorageError> {
    let mut input = Vec::new();
    StoredBatch::for_each_in(batches, from, until, |r| {
        if let Some(headers) = headers.as_mut()
            && !r.headers.is_empty()
        {
            headers.insert(r.offset, r.headers);
        }
        if min_timestamp_ms.is_none_or(|min| r.timestamp_ms >= min) {
            input.push(RawRecord {
                offset: r.offset as i64,
                timestamp: r.timestamp_ms,
                key: r.key,
                value: r.value,
            })
        }
    })?;
    Ok(input)
}

impl Transforms {
    /// Loads, checks and instantiates every module; any problem (not wasm,
    /// wrong kind, bad parameters, failing init) is reported here, before a
    /// single record flows. Blocking.
    pub(crate) fn build(
        engine: &Engine,
        invocations: Vec<SmartModuleInvocation>,
    ) -> Result<Self, WireError> {
        // Each module of a chain may cost a compile, one after the other on this thread.
        if invocations.len() > SMARTMODULE_CHAIN_LEN_MAX {
            return Err(WireError::InvalidArgument {
                what: "SmartModule chain".into(),
                reason: format!(
                    "{} modules exceed the limit of {SMARTMODULE_CHAIN_LEN_MAX}",
                    invocations.len()
                ),
            });
        }
        let mut instances = Vec::with_capacity(invocations.len());
        let mut names = Vec::with_capacity(invocations.len());
        for inv in invocations {
            let name = inv.module.name().to_string();
            let wasm = match inv.module {
                SmartModuleSource::AdHoc { wasm, .. } => wasm,
                // `resolve` has replaced every name by its code already.
                SmartModuleSource::Registered(name) => {
                    return Err(WireError::UnknownSmartModule { name });
                }
            };
            let module = load(engine, &name, &wasm)?;
            if let Some(kind) = inv.kind {
                module
                    .expect_kind(kind)
                    .map_err(|e| wire_error(&name, &e))?;
            }
            let instance = module
                .instantiate(inv.params, inv.initial)
                .map_err(|e| wire_error(&name, &e))?;
            instances.push(instance);
            names.push(name);
        }
        Ok(Self {
            reported: vec![InstanceStats::default(); instances.len()],
            chain: Chain::new(instances),
            names,
        })
    }

    /// Runs the chain over the records with offsets in `from..until` of
    /// `batches` (read whole from the log: the first module reads the records
    /// where they lie, none is copied out first); returns what came out (in
    /// order) and, if a module failed, the error for the records after. A
    /// malformed batch fails the whole call, before any module runs.
    /// Blocking.
    pub(crate) fn apply(
        &mut self,
        partition: u32,
        batches: &[StoredBatch],
        from: u64,
        until: u64,
    ) -> Result<(Vec<ConsumerRecord>, Option<WireError>), StorageError> {
        // Modules do not see headers (the ABI has no place for them); each
        // output keeps those of the input it came from, found by the offset
        // it keeps.
        let mut headers = HashMap::new();
        let input = raw_records(batches, from, until, None, Some(&mut headers))?;
        let processed = self.chain.process_raw(&input);
        self.report(processed.error.is_some());
        let outputs = processed
            .outputs
            .into_iter()
            .map(|r| {
                let offset = r.offset.max(0) as u64;
                ConsumerRecord {
                    partition,
                    offset,
                    key: r.key,
                    value: r.value,
                    timestamp_ms: r.timestamp_ms,
                    headers: headers.get(&offset).map_or_else(Vec::new, |h| h.to_vec()),
                }
            })
            .collect();
        // The engine's message names the module that failed; the field lists
        // the chain for programs.
        let error = processed
            .error
            .map(|e| wire_error(&self.names.join(" | "), &e));
        Ok((outputs, error))
    }

    /// Whether any module of the chain has a `look_back` function.
    pub(crate) fn has_look_back(&self) -> bool {
        self.chain.has_look_back()
    }

    /// Shows the records with offsets in `from..until` of `batches` stamped
    /// at or after `min_timestamp_ms` to the modules' `look_back` functions
    /// (see [`sluice_proto::Lookback`]). Blocking.
    pub(crate) fn look_back(
        &mut self,
        batches: &[StoredBatch],
        from: u64,
        until: u64,
        min_timestamp_ms: Option<i64>,
    ) -> Result<Result<(), WireError>, StorageError> {
        let input = raw_records(batches, from, until, min_timestamp_ms, None)?;
        let result = self.chain.look_back_raw(&input);
        self.report(result.is_err());
        Ok(result.map_err(|e| wire_error(&self.names.join(" | "), &e)))
    }

    /// Hands each module's work since the last report to the metrics; a
    /// failed batch is counted against the last module it reached (a chain
    /// stops at the module that fails).
    fn report(&mut self, failed: bool) {
        let mut batch = Vec::with_capacity(self.names.len());
        for ((instance, name), last) in self
            .chain
            .instances()
            .iter()
            .zip(&self.names)
            .zip(&mut self.reported)
        {
            let now = instance.stats();
            let delta = InstanceStats {
                calls: now.calls.saturating_sub(last.calls),
                records_in: now.records_in.saturating_sub(last.records_in),
                records_out: now.records_out.saturating_sub(last.records_out),
                busy: now.busy.saturating_sub(last.busy),
            };
            *last = now;
            if delta.calls > 0 {
                batch.push((name.clone(), delta));
            }
        }
        let failed = failed
            .then(|| batch.last().map(|(name, _)| name.clone()))
            .flatten();
        crate::metrics::smartmodule_batch(&batch, failed.as_deref());
    }
}
