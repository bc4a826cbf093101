//! `loadgen merge`: one report from the interval logs of several runs or machines.
//!
//! Histograms are **added**, never their percentiles averaged: the p99 of two machines is
//! the p99 of all their messages together, which no average of two p99s gives. The merged
//! duration is the union of the logged intervals in wall-clock time, so logs of machines
//! that ran at the same time give their common span (and the combined rate), while logs of
//! runs one after another add up.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry, LogIteratorError};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;

use crate::collect::WIRE_COMMENT;
use crate::report::Report;
use crate::verify::ErrorCounts;
use crate::Error;

/// What one `.hlog` file holds.
#[derive(Debug)]
pub struct LogContents {
    /// Sum of its interval histograms.
    pub histogram: Histogram<u64>,
    /// Each interval as (start, end) in seconds since the epoch (or since the log's start
    /// when it has no BaseTime).
    pub spans: Vec<(f64, f64)>,
    /// Wire bytes per message, if loadgen wrote the log.
    pub wire_bytes: Option<usize>,
}

fn input_err(path: &Path, reason: impl ToString) -> Error {
    Error::Input {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Reads one interval log.
pub fn read_log(path: &Path) -> Result<LogContents, Error> {
    let bytes = std::fs::read(path).map_err(|e| input_err(path, crate::io_text(&e)))?;
    let mut histogram = Histogram::<u64>::new(3).map_err(|e| input_err(path, e))?;
    let mut deserializer = Deserializer::new();
    let mut base = 0.0;
    let mut spans = Vec::new();
    for entry in IntervalLogIterator::new(&bytes) {
        let entry = entry.map_err(|LogIteratorError::ParseError { offset }| {
            input_err(
                path,
                format!("not an HdrHistogram interval log (parse error at byte {offset})"),
            )
        })?;
        match entry {
            LogEntry::BaseTime(t) => base = t.as_secs_f64(),
            LogEntry::StartTime(_) => {}
            LogEntry::Interval(ilh) => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(ilh.encoded_histogram())
                    .map_err(|e| input_err(path, format!("bad base64: {e}")))?;
                let h: Histogram<u64> = deserializer
                    .deserialize(&mut raw.as_slice())
                    .map_err(|e| input_err(path, format!("bad histogram: {e}")))?;
                histogram
                    .add(&h)
                    .map_err(|e| input_err(path, format!("cannot add a histogram: {e}")))?;
                let start = base + ilh.start_timestamp().as_secs_f64();
                spans.push((start, start + ilh.duration().as_secs_f64()));
            }
        }
    }
    if spans.is_empty() {
        return Err(input_err(path, "no interval histograms in it"));
    }
    let text = String::from_utf8_lossy(&bytes);
    let wire_bytes = text
        .lines()
        .find_map(|l| {
            l.strip_prefix('#')
                .and_then(|l| l.strip_prefix(WIRE_COMMENT))
        })
        .and_then(|n| n.trim().parse().ok());
    Ok(LogContents {
        histogram,
        spans,
        wire_bytes,
    })
}

/// Length of the union of intervals, in seconds.
pub fn union_length(spans: &mut [(f64, f64)]) -> f64 {
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

/// Merges the logs into one report (no settings, no error counts and no verdict: logs hold
/// latencies only).
pub fn merge_files(paths: &[PathBuf]) -> Result<Report, Error> {
    let mut total = Histogram::<u64>::new(3).map_err(|e| Error::Worker(e.to_string()))?;
    let mut spans = Vec::new();
    let mut wire: Option<Option<usize>> = None;
    for path in paths {
        let log = read_log(path)?;
        total
            .add(&log.histogram)
            .map_err(|e| input_err(path, format!("cannot add its histogram: {e}")))?;
        spans.extend(log.spans);
        // MB/s only when every log agrees on the message size.
        wire = Some(match wire {
            None => log.wire_bytes,
            Some(w) if w == log.wire_bytes => w,
            Some(_) => None,
        });
    }
    Ok(Report {
        settings: None,
        duration: Duration::from_secs_f64(union_length(&mut spans)),
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
