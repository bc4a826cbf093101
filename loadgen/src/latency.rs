//! Latency histograms: their bounds, recording past them, and the summary a report shows.
//!
//! Latencies are kept in nanoseconds in an HdrHistogram (3 significant digits) and shown in
//! microseconds.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::config::MAX_DURATION;

/// Highest latency the histograms hold, ns: the longest a measured message can wait (a
/// year of `--duration` plus a year of `--udp-timeout`, see `config::MAX_DURATION`) and a
/// minute to spare. A library caller can go past it; such values are counted
/// ([`crate::stats::ThreadStats::saturated`]) and reported, never dropped silently.
pub(crate) const MAX_LATENCY_NS: u64 = (2 * MAX_DURATION.as_secs() + 60) * 1_000_000_000;

/// A new latency histogram: ns, 1 ns to [`MAX_LATENCY_NS`], 3 significant digits.
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("constant bounds are valid")
}

/// Adds `h` into `total`, both made by [`new_histogram`]. It cannot fail: with the same
/// bounds on both sides, and every value recorded within them ([`record_into`]
/// saturates), `h`'s largest value fits `total`. So the `expect` states an invariant;
/// nothing is ever dropped here.
pub(crate) fn add_into(total: &mut Histogram<u64>, h: &Histogram<u64>) {
    total
        .add(h)
        .expect("histograms from new_histogram share their bounds");
}

/// Records `value` in `hist`; past the histogram's range it is recorded as the highest
/// value and counted in `saturated`.
pub(crate) fn record_into(hist: &mut Histogram<u64>, value: u64, saturated: &mut u64) {
    if hist.record(value).is_err() {
        *saturated += 1;
        hist.saturating_record(value);
    }
}

/// Latency summary in microseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub(crate) struct Latency {
    /// Smallest.
    pub(crate) min: f64,
    /// Median.
    pub(crate) p50: f64,
    /// 90th percentile.
    pub(crate) p90: f64,
    /// 99th percentile.
    pub(crate) p99: f64,
    /// 99.9th percentile.
    pub(crate) p999: f64,
    /// 99.99th percentile.
    pub(crate) p9999: f64,
    /// Largest.
    pub(crate) max: f64,
    /// Mean.
    pub(crate) mean: f64,
}

impl Latency {
    /// Summary of a ns histogram.
    pub(crate) fn of(h: &Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / 1000.0;
        let q = |p: f64| us(h.value_at_quantile(p));
        Latency {
            min: us(h.min()),
            p50: q(0.50),
            p90: q(0.90),
            p99: q(0.99),
            p999: q(0.999),
            p9999: q(0.9999),
            max: us(h.max()),
            mean: h.mean().round() / 1000.0,
        }
    }

    /// The two text lines under `label` ("latency us", "connect us").
    pub(crate) fn text(&self, label: &str, t: &mut String) {
        let _ = writeln!(
            t,
            "  {label:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "min", "p50", "p90", "p99", "p99.9", "p99.99", "max", "mean"
        );
        let _ = writeln!(
            t,
            "               {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            self.min, self.p50, self.p90, self.p99, self.p999, self.p9999, self.max, self.mean
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A latency past the histogram's range is recorded as its maximum and counted, not
    /// lost; the range covers the longest run the command line allows.
    #[test]
    fn saturation_is_counted() {
        let mut h = new_histogram();
        let mut saturated = 0;
        let year = 365 * 24 * 3600 * 1_000_000_000u64;
        record_into(&mut h, 2 * year, &mut saturated);
        assert_eq!((saturated, h.len()), (0, 1));
        record_into(&mut h, u64::MAX / 2, &mut saturated);
        assert_eq!((saturated, h.len()), (1, 2));
        // The saturated value still adds into a total (the collector's invariant).
        let mut total = new_histogram();
        add_into(&mut total, &h);
        add_into(&mut total, &h);
        assert_eq!((total.len(), total.max()), (4, h.max()));
    }
}
