//! The Prometheus text exposition format, version 0.0.4: what a scrape of
//! `GET /metrics` returns.
//!
//! The format is a few lines per metric:
//!
//! ```text
//! # HELP echoloop_accepted_total TCP connections accepted.
//! # TYPE echoloop_accepted_total counter
//! echoloop_accepted_total 42
//! ```
//!
//! and, for a histogram, one cumulative `_bucket{le="..."}` line per upper
//! bound, ending with `le="+Inf"`, then `_sum` and `_count`. We write it by
//! hand: it is this short, our figures already live in our own atomics, and
//! the `prometheus-client` crate only writes the OpenMetrics variant (a
//! different content type, `# EOF` terminator, counter families named without
//! `_total`). `promtool check metrics` checks the output in the tests.

use std::fmt::Write;

use super::histogram::HistogramSnapshot;
use crate::stats::{Field, Kind};

/// The `Content-Type` of a 0.0.4 exposition.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric name starts with this.
const PREFIX: &str = "echoloop_";

/// A histogram to export, with how many of its units make one exported
/// unit (Prometheus wants base units: seconds, not microseconds).
pub(crate) struct Exported {
    /// The name after `echoloop_`.
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    pub(crate) snapshot: HistogramSnapshot,
    /// Bucket bounds are divided by this (1e6 for microseconds).
    pub(crate) bound_unit: f64,
    /// The sum is divided by this (1e9 for nanoseconds).
    pub(crate) sum_unit: f64,
}

/// Renders the counters and gauges of `fields`, then `histograms`.
pub(crate) fn render(fields: &[Field], histograms: &[Exported]) -> String {
    let mut out = String::with_capacity(4096);
    for field in fields {
        let (suffix, kind) = match field.kind {
            Kind::Counter => ("_total", "counter"),
            Kind::Gauge => ("", "gauge"),
        };
        // Prometheus wants base units (and promtool refuses abbreviated
        // ones): a figure the stats line keeps in microseconds (`_us`) is
        // exported in seconds.
        if let Some(base) = field.name.strip_suffix("_us") {
            let name = format!("{PREFIX}{base}_seconds{suffix}");
            header(&mut out, &name, field.help, kind);
            let _ = writeln!(out, "{name} {}", field.value as f64 / 1e6);
            continue;
        }
        let name = format!("{PREFIX}{}{suffix}", field.name);
        header(&mut out, &name, field.help, kind);
        let _ = writeln!(out, "{name} {}", field.value);
    }
    for h in histograms {
        histogram(&mut out, h);
    }
    out
}

fn histogram(out: &mut String, h: &Exported) {
    let name = format!("{PREFIX}{}", h.name);
    header(out, &name, h.help, "histogram");
    // Buckets are cumulative: each counts every observation up to its bound.
    let mut cumulative = 0u64;
    for (bound, count) in h.snapshot.bounds.iter().zip(&h.snapshot.counts) {
        cumulative += count;
        // Dividing (not multiplying by 1e-6) is correctly rounded, so the
        // shortest form prints: 0.000002, not 0.0000020000000000000004.
        let le = *bound as f64 / h.bound_unit;
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let total = h.snapshot.count();
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
    let sum = h.snapshot.sum as f64 / h.sum_unit;
    let _ = writeln!(out, "{name}_sum {sum}");
    let _ = writeln!(out, "{name}_count {total}");
}

/// `# HELP` and `# TYPE`. Help text escapes backslash and newline, as the
/// format requires.
fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let help = help.trim().replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &'static str, help: &'static str, kind: Kind, value: u64) -> Field {
        Field {
            name,
            help,
            kind,
            value,
        }
    }

    #[test]
    fn counters_get_total_and_gauges_do_not() {
        let text = render(
            &[
                field("accepted", " TCP connections accepted.", Kind::Counter, 7),
                field("active", " Open now.", Kind::Gauge, 2),
            ],
            &[],
        );
        assert_eq!(
            text,
            "# HELP echoloop_accepted_total TCP connections accepted.\n\
             # TYPE echoloop_accepted_total counter\n\
             echoloop_accepted_total 7\n\
             # HELP echoloop_active Open now.\n\
             # TYPE echoloop_active gauge\n\
             echoloop_active 2\n"
        );
    }

    /// A figure kept in microseconds is exported in seconds, the base unit.
    #[test]
    fn microsecond_fields_are_exported_in_seconds() {
        let text = render(&[field("max_turn_us", " Longest.", Kind::Gauge, 1500)], &[]);
        assert_eq!(
            text,
            "# HELP echoloop_max_turn_seconds Longest.\n\
             # TYPE echoloop_max_turn_seconds gauge\n\
             echoloop_max_turn_seconds 0.0015\n"
        );
    }

    #[test]
    fn help_escapes_backslash_and_newline() {
        let text = render(&[field("x", " a\\b\nc", Kind::Counter, 0)], &[]);
        assert!(
            text.contains("# HELP echoloop_x_total a\\\\b\\nc\n"),
            "{text}"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_scaled() {
        let h = Exported {
            name: "turn_seconds",
            help: "Turn time.",
            snapshot: HistogramSnapshot {
                bounds: vec![0, 1, 2],
                counts: vec![1, 0, 3, 2],
                sum: 1_500_000_000,
            },
            bound_unit: 1e6,
            sum_unit: 1e9,
        };
        let text = render(&[], &[h]);
        let expected = "# HELP echoloop_turn_seconds Turn time.\n\
                        # TYPE echoloop_turn_seconds histogram\n\
                        echoloop_turn_seconds_bucket{le=\"0\"} 1\n\
                        echoloop_turn_seconds_bucket{le=\"0.000001\"} 1\n\
                        echoloop_turn_seconds_bucket{le=\"0.000002\"} 4\n\
                        echoloop_turn_seconds_bucket{le=\"+Inf\"} 6\n\
                        echoloop_turn_seconds_sum 1.5\n\
                        echoloop_turn_seconds_count 6\n";
        assert_eq!(text, expected);
    }
}
