//! SmartModules run in this process, before records are sent (a producer's
//! chain). Only with the `smartmodules` feature, which brings in the
//! WebAssembly engine; a plain client stays light.

use sluice_proto::{Record, SmartModuleInvocation, SmartModuleSource};
use sluice_wasm::{Chain, Engine, EngineConfig};

use crate::{Client, ClientError};

/// A chain of modules loaded in this process.
pub struct LocalChain {
    chain: Chain,
    /// Position of the next record, given to modules as its offset (a
    /// record has no offset before the cluster assigns one).
    position: i64,
}

fn error(e: impl std::fmt::Display) -> ClientError {
    ClientError::SmartModule {
        reason: e.to_string(),
    }
}

impl LocalChain {
    /// Loads every module (downloading registered ones from the cluster),
    /// checks kinds and instantiates with the parameters: all problems show
    /// before a record is read.
    pub async fn load(
        client: &Client,
        invocations: Vec<SmartModuleInvocation>,
    ) -> Result<Self, ClientError> {
        let mut sources = Vec::with_capacity(invocations.len());
        for inv in invocations {
            let (name, wasm) = match &inv.module {
                SmartModuleSource::AdHoc { name, wasm } => (name.clone(), wasm.clone()),
                SmartModuleSource::Registered(name) => {
                    (name.clone(), client.download_smartmodule(name).await?.1)
                }
            };
            sources.push((inv, name, wasm));
        }
        tokio::task::spawn_blocking(move || {
            let engine = Engine::new(EngineConfig::default()).map_err(error)?;
            let mut instances = Vec::with_capacity(sources.len());
            for (inv, name, wasm) in sources {
                let module = engine.load(&wasm).map_err(error)?.named(name);
                if let Some(kind) = inv.kind {
                    module.expect_kind(kind).map_err(error)?;
                }
                instances.push(module.instantiate(inv.params, inv.initial).map_err(error)?);
            }
            Ok(Self {
                chain: Chain::new(instances),
                position: 0,
            })
        })
        .await
        .map_err(error)?
    }

    /// Whether a module of the chain is an aggregate (its accumulator is
    /// state this process holds, not the records).
    pub fn has_aggregate(&self) -> bool {
        self.chain
            .instances()
            .iter()
            .any(|i| i.module().kind() == sluice_wasm::SmartModuleKind::Aggregate)
    }

    /// Runs the chain over `records` and returns what the modules produce.
    /// Blocking: call it from a blocking context (`block_in_place`,
    /// `spawn_blocking`) in async code.
    /// Modules do not see headers; each output keeps those of the input it
    /// came from (outputs keep their input's position).
    pub fn apply(&mut self, records: Vec<Record>) -> Result<Vec<Record>, ClientError> {
        let first = self.position;
        let mut headers = Vec::with_capacity(records.len());
        let input: Vec<sluice_wasm::Record> = records
            .into_iter()
            .map(|r| {
                let offset = self.position;
                self.position += 1;
                headers.push(r.headers);
                sluice_wasm::Record {
                    offset,
                    timestamp_ms: r.timestamp_ms,
                    key: r.key,
                    value: r.value,
                }
            })
            .collect();
        let out = self.chain.process(&input).map_err(error)?;
        Ok(out
            .into_iter()
            .map(|r| Record {
                headers: r
                    .offset
                    .checked_sub(first)
                    .and_then(|i| usize::try_from(i).ok())
                    .and_then(|i| headers.get(i).cloned())
                    .unwrap_or_default(),
                key: r.key,
                value: r.value,
                timestamp_ms: r.timestamp_ms,
            })
            .collect())
    }
}
