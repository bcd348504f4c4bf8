//! Everything that can go wrong with a SmartModule, each variant naming the module and, when
//! a record caused it, that record's offset.

use crate::{ModuleLimit, SmartModuleKind};
use std::time::Duration;

/// An error of the SmartModule engine. `module` is the module's name, or `sha256:` and the
/// first 12 hex digits of its hash when it has none.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmartModuleError {
    /// The bytes are not a WebAssembly module wasmtime accepts.
    #[error("SmartModule {module}: not a valid WebAssembly module: {reason}")]
    NotWasm { module: String, reason: String },
    /// The module is over a bound of the pre-compile budget (`sluice_proto::limits`, named
    /// by `limit`); it was refused before any compiling. `function` is the index, among the
    /// functions the module defines, of the function the figure is about.
    #[error(
        "SmartModule {module}: {found} {limit}{} exceed the limit of {max} ({constant}); refused before compiling",
        in_function(*function), max = limit.max(), constant = limit.constant()
    )]
    OverLimit {
        module: String,
        limit: ModuleLimit,
        found: u64,
        function: Option<u32>,
    },
    /// The node is already compiling as many modules as it allows and as many more wait for
    /// their turn, or this one waited past its bound. Retriable: nothing is wrong with the
    /// module.
    #[error(
        "SmartModule {module}: not compiled, the node is busy compiling other modules ({reason}); retry later"
    )]
    Busy { module: String, reason: String },
    /// Compiling took longer than the engine's budget (`compile_time_max`). The compile goes
    /// on in the background (it cannot be stopped): if it succeeds, a later load finds the
    /// module compiled; if it fails, the module is refused at once from then on.
    #[error(
        "SmartModule {module}: not compiled within the budget of {budget:?} (the compile goes on: if it succeeds, a later load finds it compiled); make the module smaller or simpler"
    )]
    CompileTimeout { module: String, budget: Duration },
    /// The module imports something; SmartModules run with no host functions at all.
    #[error(
        "SmartModule {module}: imports `{import}`, but SmartModules may not import anything{}",
        import_hint(import)
    )]
    Imports { module: String, import: String },
    /// None of the transform exports (`sluice_filter`, `sluice_map`, ...) is present.
    #[error(
        "SmartModule {module}: no transform export (expected one of sluice_filter, sluice_map, sluice_filter_map, sluice_array_map, sluice_aggregate); was it built with #[smartmodule(...)]?"
    )]
    NoTransformExport { module: String },
    /// More than one transform export: the module's kind would be ambiguous.
    #[error("SmartModule {module}: several transform exports ({}); a module has exactly one", found.join(", "))]
    SeveralTransformExports { module: String, found: Vec<String> },
    /// A required export is missing or has the wrong type.
    #[error("SmartModule {module}: export `{export}` {problem}")]
    MissingExport {
        module: String,
        export: String,
        problem: String,
    },
    /// The module was built against an ABI version this engine does not run.
    #[error(
        "SmartModule {module}: ABI version {found} is not supported (this engine runs version {supported})"
    )]
    UnsupportedAbi {
        module: String,
        found: u32,
        supported: u32,
    },
    /// The module is of another kind than the caller asked for (`--filter` given a map).
    #[error("SmartModule {module} is a {found}, not a {expected}")]
    KindMismatch {
        module: String,
        expected: SmartModuleKind,
        found: SmartModuleKind,
    },
    /// Parameters were rejected or the module's init failed; no record was processed.
    #[error("SmartModule {module}: init failed: {message}")]
    Init { module: String, message: String },
    /// The module's function returned an error for the record at `offset`.
    #[error("SmartModule {module}: error at offset {offset}: {message}")]
    Transform {
        module: String,
        offset: i64,
        message: String,
    },
    /// The module trapped (a panic, an out-of-bounds access...) while processing the record
    /// at `offset` (if it was processing one).
    #[error("SmartModule {module}: trapped{}: {message}", at_offset(*offset))]
    Trap {
        module: String,
        offset: Option<i64>,
        message: String,
    },
    /// A call ran past the deadline (typically an infinite loop) and was interrupted.
    #[error("SmartModule {module}: interrupted after the deadline of {deadline:?}{}", at_offset(*offset))]
    Timeout {
        module: String,
        offset: Option<i64>,
        deadline: Duration,
    },
    /// The module tried to grow its memory past the limit.
    #[error("SmartModule {module}: memory limit of {limit} bytes exceeded{}", at_offset(*offset))]
    MemoryLimit {
        module: String,
        offset: Option<i64>,
        limit: usize,
    },
    /// A call returned more bytes than the engine accepts.
    #[error("SmartModule {module}: output of {bytes} bytes exceeds the maximum of {max}")]
    OutputTooLarge {
        module: String,
        bytes: usize,
        max: usize,
    },
    /// The module broke the ABI: a buffer outside its memory, or bytes that do not decode.
    #[error("SmartModule {module}: broke the ABI: {reason}")]
    Abi { module: String, reason: String },
    /// The instance failed earlier and its memory can no longer be trusted.
    #[error("SmartModule {module}: instance unusable after an earlier failure: {cause}")]
    Poisoned { module: String, cause: String },
    /// wasmtime could not be set up with the requested configuration.
    #[error("SmartModule engine: {reason}")]
    Engine { reason: String },
}

fn in_function(function: Option<u32>) -> String {
    function.map_or_else(String::new, |f| format!(" (function {f})"))
}

fn at_offset(offset: Option<i64>) -> String {
    offset.map_or_else(String::new, |o| format!(" at offset {o}"))
}

impl SmartModuleError {
    /// Offset of the record that caused the error, if one did.
    pub fn offset(&self) -> Option<i64> {
        match self {
            Self::Transform { offset, .. } => Some(*offset),
            Self::Trap { offset, .. }
            | Self::Timeout { offset, .. }
            | Self::MemoryLimit { offset, .. } => *offset,
            _ => None,
        }
    }

    /// The same error naming the module `name` (e.g. its registry name or file path) rather
    /// than its hash: [`Engine::load`](crate::Engine::load) knows modules by hash only.
    pub fn named(mut self, name: &str) -> Self {
        match &mut self {
            Self::NotWasm { module, .. }
            | Self::OverLimit { module, .. }
            | Self::Busy { module, .. }
            | Self::CompileTimeout { module, .. }
            | Self::Imports { module, .. }
            | Self::NoTransformExport { module }
            | Self::SeveralTransformExports { module, .. }
            | Self::MissingExport { module, .. }
            | Self::UnsupportedAbi { module, .. }
            | Self::KindMismatch { module, .. }
            | Self::Init { module, .. }
            | Self::Transform { module, .. }
            | Self::Trap { module, .. }
            | Self::Timeout { module, .. }
            | Self::MemoryLimit { module, .. }
            | Self::OutputTooLarge { module, .. }
            | Self::Abi { module, .. }
            | Self::Poisoned { module, .. } => *module = name.to_owned(),
            Self::Engine { .. } => {}
        }
        self
    }

    /// Whether the same request may succeed later: only a busy engine; every other error is
    /// about the module, its parameters or its records.
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::Busy { .. })
    }
}

/// What an import says about how the module was built, for [`SmartModuleError::Imports`].
fn import_hint(import: &str) -> &'static str {
    if import == "env::copy_records" {
        // The host function Fluvio's SDK calls to hand back its output.
        "; it was built with Fluvio's SDK (smdk): rebuild it with Sluice's, depending on \
         `sluice-smartmodule` instead of `fluvio-smartmodule` (`sluice smart-module generate` \
         makes such a project), for the target wasm32-unknown-unknown"
    } else if import.starts_with("wasi_") {
        "; it was built for WASI (e.g. wasm32-wasip1, as Fluvio's smdk does): build it for \
         wasm32-unknown-unknown with Sluice's SDK"
    } else {
        ""
    }
}
