//! A consumer's SmartModule chain, run in the SPU before records leave it.
//!
//! Building (compiling, or fetching from the engine's cache, then
//! instantiating with the consumer's parameters) and applying both block, so
//! the fetch handler runs them on tokio's blocking pool: a slow or looping
//! module holds one blocking thread until its epoch deadline, never the
//! reactor that serves every other stream.

use sluice_proto::{
    ConsumerRecord, SmartModuleInvocation, SmartModuleKind, SmartModuleSource, WireError,
};
use sluice_wasm::{Chain, Engine, Record, SmartModuleError};

pub(crate) struct Transforms {
    chain: Chain,
    /// Names of the modules, in order, for error messages.
    names: Vec<String>,
}

fn wire_error(module: &str, e: &SmartModuleError) -> WireError {
    WireError::SmartModule {
        module: module.to_string(),
        offset: e.offset().and_then(|o| u64::try_from(o).ok()),
        reason: e.to_string(),
    }
}

fn engine_kind(kind: SmartModuleKind) -> sluice_wasm::SmartModuleKind {
    match kind {
        SmartModuleKind::Filter => sluice_wasm::SmartModuleKind::Filter,
        SmartModuleKind::Map => sluice_wasm::SmartModuleKind::Map,
        SmartModuleKind::FilterMap => sluice_wasm::SmartModuleKind::FilterMap,
        SmartModuleKind::ArrayMap => sluice_wasm::SmartModuleKind::ArrayMap,
        SmartModuleKind::Aggregate => sluice_wasm::SmartModuleKind::Aggregate,
    }
}

impl Transforms {
    /// Loads, checks and instantiates every module; any problem (not wasm,
    /// wrong kind, bad parameters, failing init) is reported here, before a
    /// single record flows. Blocking.
    pub(crate) fn build(
        engine: &Engine,
        invocations: Vec<SmartModuleInvocation>,
    ) -> Result<Self, WireError> {
        let mut instances = Vec::with_capacity(invocations.len());
        let mut names = Vec::with_capacity(invocations.len());
        for inv in invocations {
            let name = inv.module.name().to_string();
            let wasm = match inv.module {
                SmartModuleSource::AdHoc { wasm, .. } => wasm,
                SmartModuleSource::Registered(_) => {
                    return Err(WireError::SmartModule {
                        module: name.clone(),
                        offset: None,
                        reason: format!(
                            "SmartModule {name}: no module is registered under this name (the cluster's registry is not built yet); pass the path of a .wasm file instead"
                        ),
                    });
                }
            };
            let module = engine
                .load(&wasm)
                .map_err(|e| wire_error(&name, &e))?
                .named(name.clone());
            if let Some(kind) = inv.kind {
                module
                    .expect_kind(engine_kind(kind))
                    .map_err(|e| wire_error(&name, &e))?;
            }
            let instance = module
                .instantiate(inv.params, inv.initial)
                .map_err(|e| wire_error(&name, &e))?;
            instances.push(instance);
            names.push(name);
        }
        Ok(Self {
            chain: Chain::new(instances),
            names,
        })
    }

    /// Runs the chain over records read from the log; returns what came out
    /// (in order) and, if a module failed, the error for the records after.
    /// Blocking.
    pub(crate) fn apply(
        &mut self,
        partition: u32,
        records: &[ConsumerRecord],
    ) -> (Vec<ConsumerRecord>, Option<WireError>) {
        let input: Vec<Record> = records
            .iter()
            .map(|r| Record {
                offset: r.offset as i64,
                timestamp_ms: r.timestamp_ms,
                key: r.key.clone(),
                value: r.value.clone(),
            })
            .collect();
        let processed = self.chain.process_partial(&input);
        let outputs = processed
            .outputs
            .into_iter()
            .map(|r| ConsumerRecord {
                partition,
                offset: r.offset.max(0) as u64,
                key: r.key,
                value: r.value,
                timestamp_ms: r.timestamp_ms,
            })
            .collect();
        let error = processed.error.map(|e| {
            // The chain reports which module failed by its name in the message.
            let module = self.names.join(" | ");
            wire_error(&module, &e)
        });
        (outputs, error)
    }
}
