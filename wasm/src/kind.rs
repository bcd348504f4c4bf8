//! The kinds of SmartModule, each identified by the name of its one transform export.

use std::fmt;
use std::str::FromStr;

/// What a module does with each record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SmartModuleKind {
    /// Keeps or drops each record.
    Filter,
    /// Replaces each record's key and value.
    Map,
    /// Drops or replaces each record.
    FilterMap,
    /// Turns each record into zero or more records.
    ArrayMap,
    /// Folds each record into an accumulator and emits the accumulator.
    Aggregate,
}

impl SmartModuleKind {
    /// Every kind.
    pub const ALL: [SmartModuleKind; 5] = [
        Self::Filter,
        Self::Map,
        Self::FilterMap,
        Self::ArrayMap,
        Self::Aggregate,
    ];

    /// Name of the module export that implements this kind.
    pub fn export_name(self) -> &'static str {
        match self {
            Self::Filter => "sluice_filter",
            Self::Map => "sluice_map",
            Self::FilterMap => "sluice_filter_map",
            Self::ArrayMap => "sluice_array_map",
            Self::Aggregate => "sluice_aggregate",
        }
    }

    /// The kind whose export is named `export`.
    pub fn from_export_name(export: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.export_name() == export)
    }

    /// Name as written on the command line (`filter-map`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Filter => "filter",
            Self::Map => "map",
            Self::FilterMap => "filter-map",
            Self::ArrayMap => "array-map",
            Self::Aggregate => "aggregate",
        }
    }
}

impl fmt::Display for SmartModuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SmartModuleKind {
    type Err = String;

    /// Accepts `filter-map` and `filter_map` alike.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.replace('_', "-");
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("unknown SmartModule kind `{s}`: expected filter, map, filter-map, array-map or aggregate")
            })
    }
}

/// The kind as the wire types name it (requests, the registry).
impl From<SmartModuleKind> for sluice_proto::SmartModuleKind {
    fn from(kind: SmartModuleKind) -> Self {
        match kind {
            SmartModuleKind::Filter => Self::Filter,
            SmartModuleKind::Map => Self::Map,
            SmartModuleKind::FilterMap => Self::FilterMap,
            SmartModuleKind::ArrayMap => Self::ArrayMap,
            SmartModuleKind::Aggregate => Self::Aggregate,
        }
    }
}

impl From<sluice_proto::SmartModuleKind> for SmartModuleKind {
    fn from(kind: sluice_proto::SmartModuleKind) -> Self {
        match kind {
            sluice_proto::SmartModuleKind::Filter => Self::Filter,
            sluice_proto::SmartModuleKind::Map => Self::Map,
            sluice_proto::SmartModuleKind::FilterMap => Self::FilterMap,
            sluice_proto::SmartModuleKind::ArrayMap => Self::ArrayMap,
            sluice_proto::SmartModuleKind::Aggregate => Self::Aggregate,
        }
    }
}
