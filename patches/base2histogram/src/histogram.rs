//! The histogram itself: counts per log-linear bucket, plus the exact
//! minimum and maximum so percentiles never leave the observed range.

use std::fmt;
use std::marker::PhantomData;

use crate::{LINEAR_LIMIT, SUB_BUCKETS};

/// log2(SUB_BUCKETS): bits kept after a value's leading one.
const SUB_BITS: u32 = SUB_BUCKETS.trailing_zeros();

/// Bit position of the leading one of the smallest non-linear value.
const FIRST_LOG_BIT: u32 = LINEAR_LIMIT.trailing_zeros();

/// Bucket count for the whole `u64` range.
pub(crate) const BUCKETS: usize =
    LINEAR_LIMIT as usize + (64 - FIRST_LOG_BIT as usize) * SUB_BUCKETS as usize;

/// Percentiles of a histogram, in the histogram's unit. All zero when empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PercentileStats {
    pub samples: u64,
    pub p0_1: u64,
    pub p1: u64,
    pub p5: u64,
    pub p10: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
}

impl fmt::Display for PercentileStats {
    /// One line, e.g. `n=40 p50=3 p90=96 p99=96 p99.9=96`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "n={} p50={} p90={} p99={} p99.9={}",
            self.samples, self.p50, self.p90, self.p99, self.p99_9
        )
    }
}

/// Counts of `u64` samples in log-linear buckets.
///
/// `T` is accepted for source compatibility with upstream's labelled
/// histograms; this implementation has no labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram<T = ()> {
    /// Count per bucket index; only as long as the highest index recorded,
    /// so an unused histogram owns no heap memory.
    counts: Vec<u64>,
    samples: u64,
    min: u64,
    max: u64,
    _label: PhantomData<T>,
}

impl<T> Default for Histogram<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Histogram<T> {
    pub fn new() -> Self {
        Self {
            counts: Vec::new(),
            samples: 0,
            min: u64::MAX,
            max: 0,
            _label: PhantomData,
        }
    }

    /// Records one sample.
    #[inline]
    pub fn record(&mut self, value: u64) {
        self.record_n(value, 1);
    }

    /// Records `n` samples of the same value.
    pub fn record_n(&mut self, value: u64, n: u64) {
        if n == 0 {
            return;
        }
        let index = bucket_index(value);
        if self.counts.len() <= index {
            self.counts.resize(index + 1, 0);
        }
        self.counts[index] = self.counts[index].saturating_add(n);
        self.samples = self.samples.saturating_add(n);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Number of samples recorded.
    pub fn count(&self) -> u64 {
        self.samples
    }

    pub fn is_empty(&self) -> bool {
        self.samples == 0
    }

    /// Smallest sample, if any.
    pub fn min(&self) -> Option<u64> {
        (!self.is_empty()).then_some(self.min)
    }

    /// Largest sample, if any.
    pub fn max(&self) -> Option<u64> {
        (!self.is_empty()).then_some(self.max)
    }

    /// The value at quantile `q` (0.0..=1.0): the lower bound of the bucket
    /// holding the sample of that rank, kept within the observed minimum and
    /// maximum. Zero for an empty histogram.
    pub fn percentile(&self, q: f64) -> u64 {
        if self.is_empty() {
            return 0;
        }
        let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
        // The rank (1-based) of the sample at quantile q.
        let rank = ((q * self.samples as f64).ceil() as u64).clamp(1, self.samples);
        let mut seen = 0u64;
        for (index, &count) in self.counts.iter().enumerate() {
            seen = seen.saturating_add(count);
            if seen >= rank {
                return bucket_lower_bound(index).clamp(self.min, self.max);
            }
        }
        self.max
    }

    pub fn percentile_stats(&self) -> PercentileStats {
        PercentileStats {
            samples: self.samples,
            p0_1: self.percentile(0.001),
            p1: self.percentile(0.01),
            p5: self.percentile(0.05),
            p10: self.percentile(0.10),
            p50: self.percentile(0.50),
            p90: self.percentile(0.90),
            p99: self.percentile(0.99),
            p99_9: self.percentile(0.999),
        }
    }

    /// Non-empty buckets as `(lowest value, highest value, count)`, in order.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, count)| **count > 0)
            .map(|(index, &count)| (bucket_lower_bound(index), bucket_upper_bound(index), count))
    }
}

/// Index of the bucket holding `value`.
#[inline]
pub(crate) fn bucket_index(value: u64) -> usize {
    if value < LINEAR_LIMIT {
        return value as usize;
    }
    let leading_bit = 63 - value.leading_zeros();
    let sub = (value >> (leading_bit - SUB_BITS)) & (SUB_BUCKETS - 1);
    LINEAR_LIMIT as usize
        + (leading_bit - FIRST_LOG_BIT) as usize * SUB_BUCKETS as usize
        + sub as usize
}

/// Smallest value that falls into bucket `index`.
pub(crate) fn bucket_lower_bound(index: usize) -> u64 {
    let index = index as u64;
    if index < LINEAR_LIMIT {
        return index;
    }
    let above = index - LINEAR_LIMIT;
    let leading_bit = FIRST_LOG_BIT as u64 + above / SUB_BUCKETS;
    let sub = above % SUB_BUCKETS;
    (SUB_BUCKETS + sub) << (leading_bit - SUB_BITS as u64)
}

/// Largest value that falls into bucket `index`.
pub(crate) fn bucket_upper_bound(index: usize) -> u64 {
    if index + 1 >= BUCKETS {
        u64::MAX
    } else {
        bucket_lower_bound(index + 1) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bucket_holds_exactly_the_values_between_its_bounds() {
        assert_eq!(bucket_index(u64::MAX), BUCKETS - 1);
        for index in 0..BUCKETS {
            let low = bucket_lower_bound(index);
            let high = bucket_upper_bound(index);
            assert!(low <= high, "bucket {index}: {low} > {high}");
            assert_eq!(bucket_index(low), index, "lower bound of bucket {index}");
            assert_eq!(bucket_index(high), index, "upper bound of bucket {index}");
            if index > 0 {
                assert_eq!(
                    bucket_upper_bound(index - 1) + 1,
                    low,
                    "gap before bucket {index}"
                );
            }
        }
    }

    #[test]
    fn a_bucket_is_at_most_a_quarter_of_its_lower_bound_wide() {
        for value in (0..100_000u64).chain([u64::MAX / 3, u64::MAX - 1]) {
            let index = bucket_index(value);
            let low = bucket_lower_bound(index);
            assert!(low <= value);
            assert!(value - low <= low / 4, "value {value} in bucket from {low}");
        }
    }

    #[test]
    fn percentiles_follow_the_recorded_distribution() {
        let mut h = Histogram::<()>::new();
        for v in 1..=1000u64 {
            h.record(v);
        }
        let stats = h.percentile_stats();
        assert_eq!(stats.samples, 1000);
        assert_eq!(stats.p0_1, 1);
        assert_eq!(stats.p1, 10);
        // p50 = 500 lies in the bucket [448, 511]; p99 = 990 in [896, 1023].
        assert_eq!(stats.p50, 448);
        assert_eq!(stats.p99, 896);
        assert!(stats.p10 <= stats.p50 && stats.p50 <= stats.p90 && stats.p90 <= stats.p99_9);
        assert_eq!(
            stats.to_string(),
            "n=1000 p50=448 p90=896 p99=896 p99.9=896"
        );
        assert_eq!(h.min(), Some(1));
        assert_eq!(h.max(), Some(1000));
    }

    #[test]
    fn record_n_weighs_like_repeated_records_and_clamps_to_observed_values() {
        let mut once = Histogram::<()>::new();
        let mut repeated = Histogram::<()>::new();
        once.record_n(700, 3);
        once.record_n(5, 0);
        for _ in 0..3 {
            repeated.record(700);
        }
        assert_eq!(once, repeated);
        // 700 falls in [640, 767], but no sample was below 700.
        assert_eq!(once.percentile(0.5), 700);
    }

    #[test]
    fn an_empty_histogram_owns_no_buckets_and_reports_zeros() {
        let h = Histogram::<()>::default();
        assert!(h.counts.capacity() == 0);
        assert_eq!(h.percentile_stats(), PercentileStats::default());
        assert_eq!(h.buckets().count(), 0);
    }
}
