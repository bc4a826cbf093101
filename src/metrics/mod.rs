//! Prometheus metrics (`--metrics ADDR`), served by the reactor itself.
//!
//! What is exported:
//! - every figure of [`crate::stats`]: a counter as `echoloop_<name>_total`,
//!   one marked `: gauge` (open connections, bytes pending in output
//!   buffers, paused connections) as `echoloop_<name>`. The list comes from
//!   the `counters!` macro, so a figure added there is exported too;
//! - two histograms of the loop itself, [`LoopMetrics`]: events per poll
//!   batch, and how long one turn of the loop took.
//!
//! With several reactors every one records into the same atomics, and the
//! first one serves the endpoint: one scrape reports the sum.
//!
//! Files: `histogram.rs` (lock-free buckets), `exposition.rs` (the text
//! format), `http.rs` (requests and responses as bytes), `endpoint.rs` (the
//! listener and scrape connections in the reactor's loop).

use std::sync::Arc;
use std::time::Duration;

use mio::net::TcpListener;

mod endpoint;
mod exposition;
mod histogram;
mod http;

pub(crate) use endpoint::Endpoint;
use exposition::Exported;
use histogram::Log2Histogram;

/// Histograms of the loop, recorded once per turn when metrics are on.
#[derive(Debug, Default)]
pub(crate) struct LoopMetrics {
    /// Events one `poll` returned: bounds 0, 1, 2, 4, ..., 1024 (the
    /// reactor takes at most 1024 events per poll).
    poll_events: Log2Histogram<13>,
    /// Time from `poll` returning to the end of the turn, in microseconds:
    /// bounds 0, 1 us, 2 us, ..., 2^20 us (about 1 s).
    turn_micros: Log2Histogram<23>,
}

impl LoopMetrics {
    /// One turn: `events` from `poll`, handled in `took`. Four relaxed
    /// atomic adds.
    #[inline]
    pub(crate) fn record_turn(&self, events: usize, took: Duration) {
        self.poll_events.record(events as u64, events as u64);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.turn_micros.record(nanos.div_ceil(1000), nanos);
    }

    fn exported(&self) -> [Exported; 2] {
        [
            Exported {
                name: "poll_events",
                help: "Readiness events returned by one poll (one batch of the loop).",
                snapshot: self.poll_events.snapshot(),
                bound_unit: 1.0,
                sum_unit: 1.0,
            },
            Exported {
                name: "turn_duration_seconds",
                help: "Time one turn of the loop took, from poll returning to the next poll.",
                snapshot: self.turn_micros.snapshot(),
                bound_unit: 1e6,
                sum_unit: 1e9,
            },
        ]
    }
}

/// What `Server::bind` hands one reactor when metrics are on.
#[derive(Debug)]
pub(crate) struct MetricsShard {
    /// The metrics listener: the first reactor's only.
    pub(crate) listener: Option<TcpListener>,
    pub(crate) loop_metrics: Arc<LoopMetrics>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Kind, Stats};

    /// The whole exposition, as a scrape sees it: every counter and gauge,
    /// and both histograms with consistent buckets and count.
    #[test]
    fn a_scrape_holds_every_figure_and_both_histograms() {
        let stats = Stats::default();
        let lm = LoopMetrics::default();
        lm.record_turn(3, Duration::from_micros(150));
        lm.record_turn(0, Duration::from_nanos(1));
        let fields = stats.snapshot().fields();
        let text = exposition::render(&fields, &lm.exported());
        for f in &fields {
            // Microsecond figures go out in seconds (see `exposition.rs`).
            let (base, value) = match f.name.strip_suffix("_us") {
                Some(base) => (
                    format!("{base}_seconds"),
                    (f.value as f64 / 1e6).to_string(),
                ),
                None => (f.name.to_string(), f.value.to_string()),
            };
            let name = match f.kind {
                Kind::Counter => format!("echoloop_{base}_total"),
                Kind::Gauge => format!("echoloop_{base}"),
            };
            assert!(text.contains(&format!("\n{name} {value}\n")), "{name}");
        }
        assert!(text.contains("\necholoop_accepted_total 0\n"), "{text}");
        assert!(text.contains("\n# TYPE echoloop_active gauge\n"), "{text}");
        assert!(text.contains("\necholoop_poll_events_bucket{le=\"4\"} 2\n"));
        assert!(text.contains("\necholoop_poll_events_count 2\n"));
        assert!(text.contains("\necholoop_poll_events_sum 3\n"));
        // 1 ns rounds up to the 1 us bucket; 150 us falls under 256 us.
        assert!(text.contains("echoloop_turn_duration_seconds_bucket{le=\"0.000001\"} 1\n"));
        assert!(text.contains("echoloop_turn_duration_seconds_bucket{le=\"0.000128\"} 1\n"));
        assert!(text.contains("echoloop_turn_duration_seconds_bucket{le=\"0.000256\"} 2\n"));
        assert!(text.contains("echoloop_turn_duration_seconds_sum 0.000150001\n"));
    }
}
