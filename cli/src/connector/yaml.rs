//! Reading a connector file's values: what every section's parser shares.

use anyhow::bail;

/// A scalar of the file as text (`key` names it in the error).
pub fn text(value: &serde_yaml::Value, key: &str) -> anyhow::Result<String> {
    match value {
        serde_yaml::Value::String(s) => Ok(s.clone()),
        serde_yaml::Value::Number(n) => Ok(n.to_string()),
        serde_yaml::Value::Bool(b) => Ok(b.to_string()),
        _ => bail!("{key}: expected a text, found {value:?}"),
    }
}
