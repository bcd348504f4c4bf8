//! Everything that can go wrong with a SmartModule, each variant naming the module and, when
//! a record caused it, that record's offset.

use crate::SmartModuleKind;
use std::time::Duration;

/// An error of the SmartModule engine. `module` is the module's name, or `sha256:` and the
/// first 12 hex digits of its hash when it has none.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmartModuleError {
    /// The bytes are not a WebAssembly module wasmtime accepts.
    #[error("SmartModule {module}: not a valid WebAssembly module: {reason}")]
    NotWasm { module: String, reason: String },
    /// The module imports something; SmartModules run with no host functions at all.
    #[error("SmartModule {module}: imports `{import}`, but SmartModules may not import anything")]
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
}
