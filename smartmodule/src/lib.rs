//! SDK for writing Sluice SmartModules.
//!
//! A SmartModule is a Rust function compiled to `wasm32-unknown-unknown` that Sluice runs on
//! every record of a stream, inside the cluster or the producer. Annotate one function with
//! [`smartmodule`] and say its kind:
//!
//! ```ignore
//! use sluice_smartmodule::{smartmodule, Record, Result};
//!
//! #[smartmodule(filter)]
//! pub fn filter(record: &Record) -> Result<bool> {
//!     let string = std::str::from_utf8(record.value.as_ref())?;
//!     Ok(string.contains('a'))
//! }
//! ```
//!
//! | kind | signature |
//! | --- | --- |
//! | `filter` | `fn(&Record) -> Result<bool>` |
//! | `map` | `fn(&Record) -> Result<(Option<RecordData>, RecordData)>` |
//! | `filter_map` | `fn(&Record) -> Result<Option<(Option<RecordData>, RecordData)>>` |
//! | `array_map` | `fn(&Record) -> Result<Vec<(Option<RecordData>, RecordData)>>` |
//! | `aggregate` | `fn(RecordData, &Record) -> Result<RecordData>` (accumulator first) |
//! | `init` | `fn(SmartModuleExtraParams) -> Result<()>` (once per stream, optional) |
//! | `look_back` | `fn(&Record) -> Result<()>` (optional: shown the partition's last records before the stream, `consume --lookback-last N`) |
//!
//! Modules written for Fluvio's SDK build with the crate name changed: `eyre!`,
//! `SmartModuleRecord`, [`SmartModuleInitError`] and the `dataplane::smartmodule` paths
//! are here under the same names.
//!
//! Add `params` (`#[smartmodule(map, params)]`) to receive a second argument `&Opts`, where
//! `Opts: Default` derives [`SmartOpt`]: each `-e key=value` of the consumer sets the field
//! `key` by `FromStr`; an unknown key or a value that does not parse stops the stream before
//! any record flows.
//!
//! ## What survives, and what is lost
//!
//! An instance of a module serves one stream (one consumer of one partition) and is dropped
//! when the stream ends: statics, globals and anything else a module keeps in its memory are
//! lost then, and a consumer that reconnects (after a node failure, or a restart of its own)
//! gets a fresh instance whose `init` runs again. The one state that survives is an
//! aggregate's accumulator: the host keeps it, not the module, and a named consumer
//! (`sluice consume -c NAME`, or the client's `OffsetCommitter`) whose chain ends with the
//! aggregate commits it with each offset, so its next run starts the aggregate from the
//! accumulator as of that offset instead of `--initial`; in a consumer group
//! (`sluice consume -g GROUP`) the accumulator moves with the partition to whichever member
//! reads it next. Keep whatever must survive in the
//! accumulator (at most 8 KiB with an offset); an unnamed consumer starts from `--initial`
//! every time.
//!
//! The exports the macros generate and the byte layout they exchange with the host are
//! described in `ABI.md` beside this crate and in [`abi`]. This crate depends on nothing
//! but its macros, so it builds for wasm32 quickly and offline.

pub mod abi;
mod error;
mod guest;
mod record;

pub use error::{Error, Result};
pub use record::{Record, RecordData, SmartModuleRecord};
pub use sluice_smartmodule_derive::{SmartOpt, smartmodule};

use std::collections::BTreeMap;

/// The `-e key=value` parameters of a stream, as given to an `init` function.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SmartModuleExtraParams {
    inner: BTreeMap<String, String>,
}

impl SmartModuleExtraParams {
    /// The value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&String> {
        self.inner.get(key)
    }

    /// Every parameter, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.inner.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether no parameter was given.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.inner.len()
    }
}

impl From<BTreeMap<String, String>> for SmartModuleExtraParams {
    fn from(inner: BTreeMap<String, String>) -> Self {
        Self { inner }
    }
}

/// A parameters struct built from the stream's `-e key=value` map; derive it with
/// `#[derive(SmartOpt)]` on a struct that implements `Default` and whose fields implement
/// `FromStr`.
pub trait SmartOpt: Sized {
    /// Starts from `Default` and sets one field per parameter; the error names the key.
    fn from_params(params: &SmartModuleExtraParams) -> std::result::Result<Self, String>;
}

/// Why an `init` function refused its parameters; `?` or `.into()` turns it
/// into an [`Error`]. The name and variant are those of Fluvio's SDK, so its
/// modules build here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmartModuleInitError {
    /// A parameter the module needs was not given (`-e key=value`).
    MissingParam(String),
}

impl std::fmt::Display for SmartModuleInitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SmartModuleInitError::MissingParam(key) => {
                write!(f, "Missing param {key}: give it with -e {key}=VALUE")
            }
        }
    }
}

impl std::error::Error for SmartModuleInitError {}

/// An [`Error`] from a format string: `Err(eyre!("no key {}", k))`. Named as
/// in Fluvio's SDK (which re-exports the `eyre` crate's macro), so modules
/// written for it build here; no `eyre` crate is involved.
#[macro_export]
macro_rules! eyre {
    ($($arg:tt)*) => {
        $crate::Error::msg(::std::format!($($arg)*))
    };
}

/// The paths Fluvio's SDK offers its types under
/// (`dataplane::smartmodule::{SmartModuleExtraParams, SmartModuleInitError}`),
/// for modules written against it.
pub mod dataplane {
    pub mod smartmodule {
        pub use crate::{
            Record, RecordData, SmartModuleExtraParams, SmartModuleInitError, SmartModuleRecord,
        };
    }

    pub mod record {
        pub use crate::{Record, RecordData};
    }
}

/// What the macros expand to; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::guest::*;
}
