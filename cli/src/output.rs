//! Output of list and describe commands: aligned tables for people, JSON and
//! YAML of stable structs for scripts.

use std::io::Write;

use anyhow::Context;
use serde::Serialize;

/// `-O/--output` of list and describe commands.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// Aligned columns.
    #[default]
    Table,
    /// Pretty-printed JSON.
    Json,
    /// YAML.
    Yaml,
}

/// A table: a header row and data rows, printed with columns aligned on the
/// widest cell (two spaces between columns, no trailing spaces).
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row. Control characters in cells are shown escaped: names and
    /// values come from the cluster, and a terminal would otherwise obey the
    /// escape sequences a topic or SmartModule name might hide.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.iter().map(|c| printable(c).into_owned()).collect());
    }

    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate().take(columns) {
                if i + 1 < columns {
                    let pad = widths[i] - cell.chars().count();
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad + 2));
                } else {
                    line.push_str(cell);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `text` with control characters (ESC, BEL, CR, backspace, C1 codes...)
/// written as Rust escapes, so printing it cannot steer a terminal.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Prints `value` as JSON or YAML, or the table `table()` builds.
pub fn print<T: Serialize>(
    format: OutputFormat,
    value: &T,
    table: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    let text = match format {
        OutputFormat::Table => table(),
        OutputFormat::Json => {
            let mut text = serde_json::to_string_pretty(value).context("cannot encode JSON")?;
            text.push('\n');
            text
        }
        OutputFormat::Yaml => serde_yaml::to_string(value).context("cannot encode YAML")?,
    };
    write_stdout(text.as_bytes())
}

/// Prints an aligned table (lead's helper for `cluster status` and friends).
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut table = Table::new(header);
    for row in rows {
        table.row(row.clone());
    }
    // A closed stdout is nothing to report here.
    let _ = write_stdout(table.render().as_bytes());
}

/// Prints `value` as JSON or YAML; `Table` falls back to JSON since there
/// is no table for an arbitrary value.
pub fn print_structured<T: Serialize>(value: &T, format: OutputFormat) -> anyhow::Result<()> {
    let format = if format == OutputFormat::Table {
        OutputFormat::Json
    } else {
        format
    };
    print(format, value, String::new)
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
pub fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to stdout")
        }
        _ => Ok(()),
    }
}

/// Milliseconds since the epoch as RFC 3339 (UTC, millisecond precision).
pub fn rfc3339_ms(timestamp_ms: i64) -> String {
    let time = std::time::UNIX_EPOCH
        + std::time::Duration::from_millis(u64::try_from(timestamp_ms).unwrap_or(0));
    humantime::format_rfc3339_millis(time).to_string()
}

/// Bytes in the largest binary unit that keeps the number whole-ish, e.g. `1 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_cells_cannot_carry_terminal_escapes() {
        let mut table = Table::new(&["NAME"]);
        table.row(vec!["evil\u{1b}]0;owned\u{7}\r\u{9b}2J".into()]);
        let text = table.render();
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(text.contains("evil\\u{1b}]0;owned"), "{text}");
        assert_eq!(printable("plain"), "plain");
    }

    #[test]
    fn table_aligns_columns() {
        let mut table = Table::new(&["NAME", "PARTITIONS"]);
        table.row(vec!["a-long-name".into(), "1".into()]);
        table.row(vec!["b".into(), "12".into()]);
        assert_eq!(
            table.render(),
            "NAME         PARTITIONS\na-long-name  1\nb            12\n"
        );
    }

    #[test]
    fn bytes_and_times_for_people() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1024 * 1024 * 1024), "1 GiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
