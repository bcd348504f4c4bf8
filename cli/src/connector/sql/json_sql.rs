//! Fluvio's form of the sql sink's mapping: a last transform
//!
//! ```yaml
//! transforms:
//!   - uses: infinyon/json-sql@0.2.1
//!     with:
//!       mapping:
//!         table: target_table
//!         operation: upsert            # optional: insert (the default) or upsert
//!         unique-columns: [device_id]  # with upsert
//!         map-columns:
//!           device_id: {json-key: device.device_id, value: {type: int, required: true}}
//!           record: {json-key: "$", value: {type: jsonb}}
//! ```
//!
//! In Fluvio a SmartModule turns each record into an insert the sink runs;
//! here the sink maps records itself (`super::SqlSink::row`), so the mapping
//! is read into the `sql` section's keys (`table`, `columns`, `mode`,
//! `key`) and checked there like one written directly.

use std::collections::BTreeMap;

use anyhow::bail;
use serde_yaml::Value;

use crate::connector::yaml::text;

/// The name a transform gives to mean this mapping (a `@VERSION` may follow).
pub const MODULE: &str = "infinyon/json-sql";

/// Whether a transform's `uses` names the json-sql mapping.
pub fn is_json_sql(uses: &str) -> bool {
    uses.split('@').next() == Some(MODULE)
}

/// Puts the mapping of a json-sql transform's `with` into the keys of the
/// sql section, which must not map rows itself.
pub fn merge(
    section: &mut BTreeMap<String, Value>,
    mut with: BTreeMap<String, Value>,
) -> anyhow::Result<()> {
    const AT: &str = "transforms[json-sql].with.mapping";
    for key in ["table", "columns", "mode", "key"] {
        if section.contains_key(key) {
            bail!(
                "sql.{key} and a {MODULE} transform both map rows: keep one (the transform's \
                 mapping, or sql.table and sql.columns)"
            );
        }
    }
    let mapping = match with.remove("mapping") {
        Some(Value::Mapping(m)) => m,
        // Fluvio's CLI also takes the mapping as JSON text.
        Some(Value::String(json)) => {
            serde_yaml::from_str(&json).map_err(|e| anyhow::anyhow!("{AT}: not a mapping: {e}"))?
        }
        Some(_) => bail!("{AT}: expected {{table, map-columns}}"),
        None => bail!(
            "{AT} is required: {{table: TABLE, map-columns: {{COLUMN: {{json-key, value: {{type}}}}}}}}"
        ),
    };
    if let Some(key) = with.keys().next() {
        bail!("transforms[json-sql].with.{key}: not a parameter of {MODULE} (mapping)");
    }
    for (key, value) in mapping {
        let key = text(&key, AT)?;
        match key.as_str() {
            "table" => {
                section.insert("table".into(), value);
            }
            "operation" => {
                section.insert("mode".into(), value);
            }
            "unique-columns" | "unique_columns" => {
                section.insert("key".into(), value);
            }
            "map-columns" | "map_columns" => {
                let Value::Mapping(columns) = value else {
                    bail!("{AT}.map-columns: expected COLUMN: {{json-key, value: {{type}}}}");
                };
                let mut ours = serde_yaml::Mapping::new();
                for (name, spec) in columns {
                    let column = text(&name, &format!("{AT}.map-columns"))?;
                    ours.insert(name, column_spec(&column, spec)?);
                }
                section.insert("columns".into(), Value::Mapping(ours));
            }
            other => bail!(
                "{AT}.{other}: not a key of the mapping (table, map-columns, operation, unique-columns)"
            ),
        }
    }
    if !section.contains_key("table") {
        bail!("{AT}.table is required: the table the rows go to");
    }
    Ok(())
}

/// `{json-key, value: {type, default, required}}` as our column's keys.
fn column_spec(column: &str, spec: Value) -> anyhow::Result<Value> {
    let at = format!("transforms[json-sql].with.mapping.map-columns.{column}");
    let Value::Mapping(spec) = spec else {
        bail!("{at}: expected {{json-key: KEY, value: {{type: TYPE}}}}");
    };
    let mut ours = serde_yaml::Mapping::new();
    for (key, value) in spec {
        match text(&key, &at)?.as_str() {
            "json-key" | "json_key" => {
                ours.insert("json-key".into(), value);
            }
            "value" => {
                let Value::Mapping(value) = value else {
                    bail!("{at}.value: expected {{type, default, required}}");
                };
                for (k, v) in value {
                    let k = text(&k, &format!("{at}.value"))?;
                    if !matches!(k.as_str(), "type" | "default" | "required") {
                        bail!("{at}.value.{k}: not a key of a value (type, default, required)");
                    }
                    ours.insert(k.into(), v);
                }
            }
            other => bail!("{at}.{other}: not a key of a mapped column (json-key, value)"),
        }
    }
    Ok(Value::Mapping(ours))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fluvios_mapping_becomes_the_sections_keys() {
        let with: BTreeMap<String, Value> = serde_yaml::from_str(
            "mapping:\n  table: target_table\n  operation: upsert\n  unique-columns: [device_id]\n  \
             map-columns:\n    device_id: {json-key: device.device_id, value: {type: int, required: true}}\n    \
             device_type: {json-key: device.type, value: {type: text, default: mobile}}\n    \
             record: {json-key: \"$\", value: {type: jsonb, required: true}}\n",
        )
        .unwrap();
        let mut section: BTreeMap<String, Value> =
            serde_yaml::from_str("url: sqlite:///tmp/x.db\n").unwrap();
        merge(&mut section, with).unwrap();
        let sink =
            crate::connector::sql::sql_sink(section, "sql", std::path::Path::new("/")).unwrap();
        assert_eq!(sink.table, "target_table");
        assert_eq!(
            sink.mode,
            crate::connector::sql::Mode::Upsert {
                key: vec!["device_id".into()]
            }
        );
        let row = sink.row(br#"{"device": {"device_id": 3}}"#).unwrap();
        use crate::connector::sql::Cell;
        assert_eq!(row[0], Cell::Int(3));
        assert_eq!(row[1], Cell::Text("mobile".into()));
        assert!(matches!(&row[2], Cell::Json(j) if j.contains("device_id")));
    }

    #[test]
    fn a_mapping_given_twice_or_misspelt_is_refused() {
        let with = |yaml: &str| -> BTreeMap<String, Value> { serde_yaml::from_str(yaml).unwrap() };
        let mut section: BTreeMap<String, Value> =
            serde_yaml::from_str("url: x.db\ntable: t\n").unwrap();
        let e = merge(&mut section, with("mapping: {table: t, map-columns: {}}\n")).unwrap_err();
        assert!(e.to_string().contains("both map rows"), "{e}");
        for (yaml, expected) in [
            ("{}\n", "mapping is required"),
            ("mapping: {tabel: t}\n", "mapping.tabel"),
            (
                "mapping: {table: t, map-columns: {a: {json-key: a, vaule: {}}}}\n",
                "map-columns.a.vaule",
            ),
            (
                "mapping: {table: t, map-columns: {a: {value: {typ: int}}}}\n",
                "value.typ",
            ),
        ] {
            let mut section = BTreeMap::new();
            let e = merge(&mut section, with(yaml)).unwrap_err().to_string();
            assert!(e.contains(expected), "{yaml}: {e}");
        }
        assert!(is_json_sql("infinyon/json-sql@0.2.1") && is_json_sql("infinyon/json-sql"));
        assert!(!is_json_sql("infinyon/jolt@0.4.1"));
    }
}
