//! Sluice's SmartModule engine: the only crate that imports wasmtime.
//!
//! [`Engine::load`] validates a module (valid wasm, no imports, exactly one transform export,
//! a supported ABI version, the required exports) and caches its compiled code by the
//! SHA-256 of its bytes, so every stream using the same module shares one compilation.
//! Compiling costs out of proportion to a module's size and cannot be interrupted, so a load
//! first checks the pre-compile budget ([`ModuleFigures`]: size, functions, locals, loop
//! nesting... bounded by `sluice_proto::limits`), then compiles on a thread of its own: at
//! most `compiles_concurrent_max` at once, loads of the same module waiting for one compile,
//! a bounded queue ([`SmartModuleError::Busy`], retriable) and a bounded wait
//! ([`SmartModuleError::CompileTimeout`]).
//! [`Module::instantiate`] gives a stream its own sandbox ([`Instance`]): its own memory
//! (capped), its parameters (checked by the module's init before any record flows) and,
//! for aggregates, its accumulator. [`Instance::process`] runs one batch in one call,
//! under a wall-clock deadline enforced by epoch interruption. [`Chain`] applies several
//! instances in order.
//!
//! The engine is **synchronous**: a call blocks its thread for up to the deadline. Async
//! callers run it on a blocking pool or a dedicated thread (`tokio::task::spawn_blocking`),
//! never on a reactor thread. Instances are `Send`, not shared: one per stream.
//!
//! The byte-level contract with modules is `smartmodule/ABI.md`; its encoding is shared
//! with the SDK through `sluice_smartmodule::abi`.

mod budget;
mod chain;
mod config;
mod engine;
mod error;
mod instance;
mod module;
mod record;
#[cfg(test)]
mod testwasm;

pub use budget::{ModuleFigures, ModuleLimit};
pub use chain::Chain;
pub use config::EngineConfig;
pub use engine::Engine;
pub use error::SmartModuleError;
pub use instance::{Instance, InstanceStats, Processed};
pub use module::Module;
pub use record::{InputRecord, OutputRecord, Record};
/// The one definition of the kinds (the wire's, the CLI's and the engine's).
pub use sluice_proto::SmartModuleKind;
pub use sluice_smartmodule::abi::{ABI_VERSION, RawRecord};
