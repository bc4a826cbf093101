//! `loadgen merge`: one report from the interval logs of several runs or machines, with a
//! verdict: PASS only if every run (shard) passed and none is missing or cut short
//! (`merged.rs`).
//!
//! Histograms are **added**, never their percentiles averaged: the p99 of two machines is
//! the p99 of all their messages together, which no average of two p99s gives. The merged
//! duration of the shards of one run is their common measured window (so the rate is the
//! combined rate); logs of separate runs one after another add up (the union of their
//! intervals in wall-clock time).

use std::path::PathBuf;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::hlog::HlogError;
use crate::merged::{Input, Merged};
use crate::report::Report;
use crate::verify::ErrorCounts;
use crate::Error;

/// Length of the union of intervals, in seconds.
pub(crate) fn union_length(spans: &mut [(f64, f64)]) -> f64 {
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut total = 0.0;
    let mut current: Option<(f64, f64)> = None;
    for &(s, e) in spans.iter() {
        current = match current {
            Some((cs, ce)) if s <= ce => Some((cs, ce.max(e))),
            Some((cs, ce)) => {
                total += ce - cs;
                Some((s, e))
            }
            None => Some((s, e)),
        };
    }
    total + current.map_or(0.0, |(s, e)| e - s)
}

/// Merges the logs into one report with a verdict (no settings and no error counts: the
/// logs carry latencies and each run's verdict, not its counters).
pub fn merge_files(paths: &[PathBuf]) -> Result<Report, Error> {
    let mut total = Histogram::<u64>::new(3).expect("3 significant digits are valid");
    let mut spans = Vec::new();
    let mut counts = Vec::new();
    let mut inputs = Vec::new();
    let mut wire: Option<Option<usize>> = None;
    for path in paths {
        let input_err = |source| Error::Input {
            path: path.clone(),
            source,
        };
        let log = crate::hlog::read(path).map_err(input_err)?;
        inputs.push(Input {
            path: path.clone(),
            messages: log.histogram.len(),
            end: log.end.clone(),
        });
        counts.extend(log.counts);
        total
            .add(&log.histogram)
            .map_err(|e| input_err(HlogError::Add(e)))?;
        spans.extend(log.spans);
        // MB/s only when every log agrees on the message size.
        wire = Some(match wire {
            None => log.wire_bytes,
            Some(w) if w == log.wire_bytes => w,
            Some(_) => None,
        });
    }
    let merged = Merged::check(&inputs, &counts);
    let seconds = match merged.common {
        Some((start, end)) => end - start,
        None => union_length(&mut spans),
    };
    Ok(Report {
        config: None,
        outputs: crate::settings::Outputs::default(),
        started_at: None,
        late_start: None,
        merged: Some(merged),
        duration: Duration::from_secs_f64(seconds.max(0.0)),
        wire_bytes: wire.flatten(),
        histogram: total,
        errors: ErrorCounts::default(),
        connections: None,
        sent: 0,
        schedule: None,
        saturated: 0,
        first_error: None,
        conn_error: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Overlapping intervals count once; disjoint ones add up.
    #[test]
    fn union_of_spans() {
        let mut s = vec![(10.0, 11.0), (0.0, 1.0), (0.5, 2.0), (1.5, 1.7)];
        assert!((union_length(&mut s) - 3.0).abs() < 1e-9);
        assert_eq!(union_length(&mut []), 0.0);
    }
}
