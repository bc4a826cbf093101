//! A fixed-bucket histogram made of relaxed atomics, cheap enough to record
//! on every turn of the loop.
//!
//! Buckets double in width: bucket 0 counts the value 0, bucket `i` counts
//! values in `(2^(i-2), 2^(i-1)]`, and the last bucket everything larger
//! (Prometheus's `+Inf`). Finding the bucket is one `leading_zeros`, so
//! recording is two relaxed atomic adds (the bucket and the sum), with no
//! lock and no allocation; several reactors may record into one histogram.
//! The count is not stored: it is the sum of the buckets, which also keeps
//! it consistent with them in a scrape that races a recording.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// `B` buckets in all: `B - 1` finite upper bounds `0, 1, 2, 4, ...,
/// 2^(B-3)`, then `+Inf`.
#[derive(Debug)]
pub(crate) struct Log2Histogram<const B: usize> {
    /// Observations per bucket (not cumulative).
    buckets: [AtomicU64; B],
    /// Sum of the recorded `sum` values (their unit may be finer than the
    /// buckets', see [`Log2Histogram::record`]).
    sum: AtomicU64,
}

impl<const B: usize> Default for Log2Histogram<B> {
    fn default() -> Self {
        Log2Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
        }
    }
}

impl<const B: usize> Log2Histogram<B> {
    /// The upper bound of finite bucket `i` (`i < B - 1`).
    pub(crate) fn bound(i: usize) -> u64 {
        if i == 0 {
            0
        } else {
            1 << (i - 1)
        }
    }

    /// The bucket `value` falls in: the first whose bound is `>= value`.
    fn index(value: u64) -> usize {
        let i = match value {
            0 => 0,
            // ceil(log2(value)) + 1: 1 -> 1, 2 -> 2, 3..=4 -> 3, 5..=8 -> 4.
            v => (u64::BITS - (v - 1).leading_zeros()) as usize + 1,
        };
        i.min(B - 1)
    }

    /// Counts one observation of `value` (which picks the bucket) and adds
    /// `sum` to the sum. They differ when the sum keeps a finer unit than
    /// the buckets (turn durations: microsecond buckets, nanosecond sum).
    #[inline]
    pub(crate) fn record(&self, value: u64, sum: u64) {
        self.buckets[Self::index(value)].fetch_add(1, Relaxed);
        self.sum.fetch_add(sum, Relaxed);
    }

    /// The histogram now, for exposition.
    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: (0..B - 1).map(Self::bound).collect(),
            counts: self.buckets.iter().map(|b| b.load(Relaxed)).collect(),
            sum: self.sum.load(Relaxed),
        }
    }
}

/// A copy of a histogram: plain numbers, in the histogram's own units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HistogramSnapshot {
    /// Finite upper bounds, ascending.
    pub(crate) bounds: Vec<u64>,
    /// Observations per bucket, not cumulative; one more than `bounds`
    /// (the last is `+Inf`).
    pub(crate) counts: Vec<u64>,
    pub(crate) sum: u64,
}

impl HistogramSnapshot {
    /// All observations.
    pub(crate) fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_lands_in_the_first_bucket_whose_bound_holds_it() {
        type H = Log2Histogram<6>; // bounds 0, 1, 2, 4, 8, then +Inf
        let bounds: Vec<u64> = (0..5).map(H::bound).collect();
        assert_eq!(bounds, [0, 1, 2, 4, 8]);
        let cases = [(0, 0), (1, 1), (2, 2), (3, 3), (4, 3), (5, 4), (8, 4)];
        for (value, bucket) in cases {
            assert_eq!(H::index(value), bucket, "value {value}");
        }
        for big in [9, 1000, u64::MAX] {
            assert_eq!(H::index(big), 5, "value {big} goes to +Inf");
        }
    }

    #[test]
    fn snapshot_counts_and_sums() {
        let h = Log2Histogram::<6>::default();
        h.record(0, 0);
        h.record(3, 3);
        h.record(4, 4000);
        h.record(100, 100);
        let s = h.snapshot();
        assert_eq!(s.bounds, [0, 1, 2, 4, 8]);
        assert_eq!(s.counts, [1, 0, 0, 2, 0, 1]);
        assert_eq!(s.count(), 4);
        assert_eq!(s.sum, 4103);
    }
}
