//! Parsing of sizes (`16KiB`, `1GiB`, `1MB`) and durations (`10ms`, `7d`)
//! given on the command line.

use std::time::Duration;

/// Parses a byte size: a number (decimals allowed) followed by an optional
/// unit, case-insensitive: `B`, decimal `K`/`KB`, `M`/`MB`, `G`/`GB`,
/// `T`/`TB` (powers of 1000) or binary `KiB`, `MiB`, `GiB`, `TiB` (powers of
/// 1024). Spaces between number and unit are allowed.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let help = "use a number with an optional unit, e.g. 16KiB, 1GiB or 1MB";
    if number.is_empty() {
        return Err(format!("{text:?} is not a size: {help}"));
    }
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size: {help}"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        other => return Err(format!("unknown size unit {other:?} in {text:?}: {help}")),
    };
    let bytes = number * multiplier as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("size {text:?} is too large"));
    }
    if bytes.fract() != 0.0 {
        return Err(format!("size {text:?} is not a whole number of bytes"));
    }
    Ok(bytes as u64)
}

/// Parses a duration such as `10ms`, `30s`, `7d` or `1h 30m` (humantime).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration ({e}): use e.g. 10ms, 30s, 7d or 1h30m"))
}

/// A size that must fit in `usize` and be at least one byte, e.g. a batch size.
pub fn parse_nonzero_size(text: &str) -> Result<usize, String> {
    let bytes = parse_size(text)?;
    if bytes == 0 {
        return Err(format!("size {text:?} must be at least 1 byte"));
    }
    usize::try_from(bytes).map_err(|_| format!("size {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16KiB"), Ok(16 * 1024));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("1mb"), Ok(1_000_000));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("1.5 KiB"), Ok(1536));
        assert_eq!(parse_size(" 2k "), Ok(2000));
        assert!(parse_size("").is_err());
        assert!(parse_size("KiB").is_err());
        assert!(
            parse_size("12XB")
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert!(parse_size("0.3B").is_err());
        assert!(parse_size("99999999999TiB").is_err());
        assert!(parse_nonzero_size("0").is_err());
        assert_eq!(parse_nonzero_size("1"), Ok(1));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5_400)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
