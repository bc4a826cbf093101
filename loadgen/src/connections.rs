//! What a report says about a run's connections: how many opened, failed and broke, how
//! long the connect phase took and at what rate, every handshake's duration, and with
//! `--reconnect-after` the churn (connections per second over the measured window). Its
//! lines of the text report, its JSON keys, and its share of the verdict.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::clock::per_sec;
use crate::config::RunConfig;
use crate::latency::Latency;
use crate::stats::ThreadStats;

/// The connections of one run.
#[derive(Debug, Clone)]
pub struct ConnectionReport {
    /// Connections asked for (`--connections`).
    pub asked: u64,
    /// Successful connects, reconnects included (UDP: sockets that were not refused).
    pub opened: u64,
    /// Failed connects, reconnects included.
    pub failed: u64,
    /// Connections whose first connect failed: the run had fewer than asked.
    pub initial_failed: u64,
    /// Connections that were up and then closed or reset by the peer.
    pub broken: u64,
    /// How long the connect phase took (until every connection opened or failed).
    pub phase: Duration,
    /// Every TCP handshake's duration, ns (empty for UDP: no handshake).
    pub latency: Histogram<u64>,
    /// Connects that completed in the measured window.
    pub measured: u64,
    /// The measured window, for the churn rate.
    pub duration: Duration,
    /// `--reconnect-after`, if set.
    pub reconnect_after: Option<u64>,
}

impl ConnectionReport {
    /// The report of a run of `cfg` whose connect phase took `phase`, measured for
    /// `duration`.
    pub(crate) fn new(
        cfg: &RunConfig,
        stats: &ThreadStats,
        latency: Histogram<u64>,
        phase: Duration,
        duration: Duration,
    ) -> Self {
        ConnectionReport {
            asked: cfg.owned() as u64,
            opened: stats.opened,
            failed: stats.failed,
            initial_failed: stats.initial_failed,
            broken: stats.broken,
            phase,
            latency,
            measured: stats.connects_measured,
            duration,
            reconnect_after: cfg.reconnect_after,
        }
    }

    /// Connections that opened in the connect phase, per second of it.
    pub fn phase_rate(&self) -> f64 {
        let up = self.asked.saturating_sub(self.initial_failed);
        per_sec(up, self.phase)
    }

    /// Connects completed per second of the measured window: the churn rate.
    pub fn per_sec(&self) -> f64 {
        per_sec(self.measured, self.duration)
    }

    /// Adds why the connections fail the run, if they do.
    pub fn failures(&self, why: &mut Vec<String>) {
        if self.initial_failed > 0 {
            let up = self.asked.saturating_sub(self.initial_failed);
            why.push(format!("opened fewer than asked ({up} of {})", self.asked));
        }
        let reconnects = self.failed.saturating_sub(self.initial_failed);
        if reconnects > 0 {
            why.push(format!("{reconnects} reconnects failed"));
        }
        if self.broken > 0 {
            why.push(format!("{} connections broken", self.broken));
        }
    }

    /// The `connections`, `connect_phase` and `connect_latency_us` JSON values.
    pub fn to_json(&self) -> (Value, Value, Value) {
        let connections = json!({
            "asked": self.asked,
            "opened": self.opened,
            "failed": self.failed,
            "broken": self.broken,
            "per_sec": self.per_sec(),
        });
        let phase = json!({
            "duration_s": self.phase.as_secs_f64(),
            "per_sec": self.phase_rate(),
        });
        let latency = match self.latency.is_empty() {
            true => Value::Null,
            false => json!(Latency::of(&self.latency)),
        };
        (connections, phase, latency)
    }

    /// The text report's connection lines.
    pub fn text(&self, t: &mut String) {
        let _ = writeln!(
            t,
            "  connections  {} opened, {} failed, {} broken",
            self.opened, self.failed, self.broken
        );
        let _ = writeln!(
            t,
            "  connect      phase {:.3} s ({:.0} connections/s)",
            self.phase.as_secs_f64(),
            self.phase_rate()
        );
        if !self.latency.is_empty() {
            Latency::of(&self.latency).text("connect us", t);
        }
        if let Some(n) = self.reconnect_after {
            let _ = writeln!(
                t,
                "  churn        {:.1} connections/s over the measured time (each reconnects after {n} messages)",
                self.per_sec()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::new_histogram;

    fn report() -> ConnectionReport {
        let cfg = RunConfig {
            connections: 100,
            reconnect_after: Some(10),
            ..RunConfig::new("127.0.0.1:9".parse().unwrap())
        };
        let stats = ThreadStats {
            opened: 500,
            failed: 3,
            initial_failed: 1,
            broken: 2,
            connects_measured: 400,
            ..ThreadStats::default()
        };
        let mut h = new_histogram();
        h.record(20_000).unwrap();
        let half = Duration::from_millis(500);
        ConnectionReport::new(&cfg, &stats, h, half, 2 * half)
    }

    /// Fewer than asked, failed reconnects and broken connections each fail the run, in
    /// words; rates are per second of the phase and of the measured window.
    #[test]
    fn verdict_and_rates() {
        let r = report();
        let mut why = Vec::new();
        r.failures(&mut why);
        assert_eq!(
            why,
            [
                "opened fewer than asked (99 of 100)",
                "2 reconnects failed",
                "2 connections broken"
            ]
        );
        assert_eq!((r.phase_rate(), r.per_sec()), (198.0, 400.0));
    }

    /// JSON keys as documented; text lines for the counts, the phase, the handshake
    /// latency and the churn.
    #[test]
    fn json_and_text() {
        let r = report();
        let (c, phase, latency) = r.to_json();
        assert_eq!(
            (c["asked"].as_u64(), c["broken"].as_u64()),
            (Some(100), Some(2))
        );
        assert_eq!(c["per_sec"], 400.0);
        assert_eq!(phase["duration_s"], 0.5);
        assert_eq!(latency["p50"].as_f64().map(f64::round), Some(20.0));
        let mut t = String::new();
        r.text(&mut t);
        assert!(
            t.contains("  connections  500 opened, 3 failed, 2 broken\n"),
            "{t}"
        );
        assert!(
            t.contains("  connect      phase 0.500 s (198 connections/s)\n"),
            "{t}"
        );
        assert!(t.contains("  connect us         min"), "{t}");
        assert!(t.contains("  churn        400.0 connections/s"), "{t}");
    }
}
