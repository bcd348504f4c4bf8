//! Text rendering of several histograms, one block per series: a row per
//! non-empty bucket with a bar scaled to that series' largest bucket.

use std::fmt;

use crate::Histogram;

/// Width of the longest bar, in characters.
const BAR_WIDTH: u64 = 40;

/// Named histograms to be drawn together.
#[derive(Debug, Clone, Default)]
pub struct AsciiChart {
    series: Vec<(String, Histogram)>,
}

impl AsciiChart {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a series; series are drawn in the order they were added.
    pub fn add(mut self, name: impl Into<String>, histogram: Histogram) -> Self {
        self.series.push((name.into(), histogram));
        self
    }

    /// A rendering with one row per non-empty bucket of every series.
    pub fn detailed(&self) -> DetailedChart<'_> {
        DetailedChart { chart: self }
    }
}

/// See [`AsciiChart::detailed`].
pub struct DetailedChart<'a> {
    chart: &'a AsciiChart,
}

impl fmt::Display for DetailedChart<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, histogram) in &self.chart.series {
            writeln!(f, "{name} (n={})", histogram.count())?;
            let tallest = histogram
                .buckets()
                .map(|(_, _, count)| count)
                .max()
                .unwrap_or(0);
            for (low, high, count) in histogram.buckets() {
                // At least one mark for any non-empty bucket.
                let bar = (count.saturating_mul(BAR_WIDTH) / tallest).max(1) as usize;
                let share = count as f64 * 100.0 / histogram.count() as f64;
                writeln!(
                    f,
                    "  {low:>10} - {high:<10} {:<width$} {count} ({share:.1}%)",
                    "#".repeat(bar),
                    width = BAR_WIDTH as usize,
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_series_gets_a_row_per_non_empty_bucket_with_bars_scaled_to_its_tallest() {
        let mut fast = Histogram::new();
        fast.record_n(3, 30);
        fast.record_n(100, 10);
        let mut slow = Histogram::new();
        slow.record(5000);
        let text = AsciiChart::new()
            .add("fast", fast)
            .add("slow", slow)
            .detailed()
            .to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(lines[0], "fast (n=40)");
        assert!(
            lines[1].contains(&"#".repeat(40)) && lines[1].ends_with("30 (75.0%)"),
            "{text}"
        );
        assert!(lines[2].contains("96 - 111"), "{text}");
        assert!(lines[2].contains(&format!("{} ", "#".repeat(13))), "{text}");
        assert_eq!(lines[3], "slow (n=1)");
        assert!(lines[4].ends_with("1 (100.0%)"), "{text}");
    }
}
