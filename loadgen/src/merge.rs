//! `loadgen merge`: one report from the interval logs of several runs or machines, with a
//! verdict: PASS only if every run (shard) passed and none is missing or cut short
//! ([`crate::merged`]).
//!
//! Histograms are **added**, never their percentiles averaged: the p99 of two machines is
//! the p99 of all their messages together, which no average of two p99s gives. The merged
//! duration of the shards of one run is their common measured window (so the rate is the
//! combined rate); logs of separate runs one after another add up (the union of their
//! intervals in wall-clock time).

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry, LogIteratorError};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;

use crate::collect::WIRE_COMMENT;
use crate::endline::EndLine;
use crate::merged::{Input, Merged};
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
    /// Each interval's start (as `spans`) and message count.
    pub counts: Vec<(f64, u64)>,
    /// Wire bytes per message, if loadgen wrote the log.
    pub wire_bytes: Option<usize>,
    /// The end line loadgen writes last, if it is there.
    pub end: Option<EndLine>,
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
    let mut counts = Vec::new();
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
                counts.push((start, h.len()));
            }
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let end = EndLine::find(&text).map_err(|e| input_err(path, e))?;
    // A run that failed before measuring (nothing connected) logs only its end line.
    if spans.is_empty() && end.is_none() {
        return Err(input_err(path, "no interval histograms in it"));
    }
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
        counts,
        wire_bytes,
        end,
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

/// Merges the logs into one report with a verdict (no settings and no error counts: the
/// logs carry latencies and each run's verdict, not its counters).
pub fn merge_files(paths: &[PathBuf]) -> Result<Report, Error> {
    let mut total = Histogram::<u64>::new(3).map_err(|e| Error::Worker(e.to_string()))?;
    let mut spans = Vec::new();
    let mut counts = Vec::new();
    let mut inputs = Vec::new();
    let mut wire: Option<Option<usize>> = None;
    for path in paths {
        let log = read_log(path)?;
        inputs.push(Input {
            path: path.clone(),
            messages: log.histogram.len(),
            end: log.end.clone(),
        });
        counts.extend(log.counts);
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
    let merged = Merged::check(&inputs, &counts);
    let seconds = match merged.common {
        Some((start, end)) => end - start,
        None => union_length(&mut spans),
    };
    Ok(Report {
        settings: None,
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
