//! The kinds of SmartModule: the one definition every crate uses, on the wire
//! (requests, the registry), in the engine (each kind is identified by the
//! name of its one transform export), on the command line and in connector
//! files.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a module does with each record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// Every kind, in the order help texts list them.
    pub const ALL: [SmartModuleKind; 5] = [
        Self::Filter,
        Self::Map,
        Self::FilterMap,
        Self::ArrayMap,
        Self::Aggregate,
    ];

    /// Name as written on the command line and in files (`filter-map`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Filter => "filter",
            Self::Map => "map",
            Self::FilterMap => "filter-map",
            Self::ArrayMap => "array-map",
            Self::Aggregate => "aggregate",
        }
    }

    /// Name of the SDK's attribute (`#[smartmodule(filter_map)]`), also the
    /// key of Fluvio's connector files.
    pub fn attribute_name(self) -> &'static str {
        match self {
            Self::Filter => "filter",
            Self::Map => "map",
            Self::FilterMap => "filter_map",
            Self::ArrayMap => "array_map",
            Self::Aggregate => "aggregate",
        }
    }

    /// Name of the module export that implements this kind: the ABI between
    /// the SDK's attribute macros and the engine.
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
}

impl fmt::Display for SmartModuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SmartModuleKind {
    type Err = String;

    /// Accepts `filter-map` and `filter_map` alike (the SDK's attribute names
    /// and Fluvio's connector keys use `_`).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_from_its_names() {
        for kind in SmartModuleKind::ALL {
            assert_eq!(kind.as_str().parse::<SmartModuleKind>(), Ok(kind));
            assert_eq!(kind.attribute_name().parse(), Ok(kind));
            assert_eq!(kind.as_str().replace('-', "_"), kind.attribute_name());
            assert_eq!(
                SmartModuleKind::from_export_name(kind.export_name()),
                Some(kind)
            );
        }
        assert!(
            "filtre"
                .parse::<SmartModuleKind>()
                .unwrap_err()
                .contains("filter-map")
        );
        assert_eq!(SmartModuleKind::from_export_name("sluice_other"), None);
    }

    #[test]
    fn the_wire_form_of_each_kind_stays_the_same() {
        // The kinds cross the wire and sit in the controller's state: their
        // encoding is their declaration order, so a new kind goes last.
        let encoded: Vec<Vec<u8>> = SmartModuleKind::ALL
            .iter()
            .map(|k| crate::encoding::to_vec(k).unwrap())
            .collect();
        let ordinals: Vec<Vec<u8>> = (0u32..5)
            .map(|i| crate::encoding::to_vec(&i).unwrap())
            .collect();
        assert_eq!(encoded, ordinals);
    }
}
