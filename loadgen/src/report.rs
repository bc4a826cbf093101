//! The result of a run (or a merge), and its text and JSON forms.
//!
//! Latencies are kept in nanoseconds in an HdrHistogram (3 significant digits) and shown in
//! microseconds. Whether a run passed is decided here, in [`Report::failures`], so the text,
//! the JSON and the exit status can never disagree.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{json, Value};

use crate::config::Protocol;
use crate::config::RunConfig;
use crate::connections::ConnectionReport;
use crate::latency::Latency;
use crate::merged::Merged;
use crate::settings::Outputs;
use crate::verify::ErrorCounts;

/// Open-loop schedule keeping.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ScheduleReport {
    /// The requested total rate, messages/s.
    pub target_rate: f64,
    /// Measured messages sent more than 1 ms after their scheduled time.
    pub late_sends: u64,
    /// Largest send lag in the measured time, microseconds.
    pub max_lag_us: f64,
    /// Messages not sent because their connection was not up when they came due.
    pub not_sent: u64,
    /// ...of them, due in the measured window.
    pub not_sent_measured: u64,
}

/// Everything a run or merge found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The run's configuration (echoed as JSON `settings`); `None` for a merge.
    pub config: Option<RunConfig>,
    /// Where the report goes, echoed in JSON `settings` (set by the command line).
    pub outputs: Outputs,
    /// When the measured time began (wall clock); `None` for a merge.
    pub started_at: Option<SystemTime>,
    /// `--start-at`: how long after it the connect phase ended, if it did (a failure).
    pub late_start: Option<Duration>,
    /// A merge: the shards and what merging them found; `None` for a run.
    pub merged: Option<Merged>,
    /// Measured time (for a merge: the common window, or the union of the logged
    /// intervals of runs that were not shards of one run).
    pub duration: Duration,
    /// Wire bytes per message, when known.
    pub wire_bytes: Option<usize>,
    /// Latency of every measured message, ns. `len()` is the message count.
    pub histogram: Histogram<u64>,
    /// Verification errors by kind.
    pub errors: ErrorCounts,
    /// Connection counts, connect phase, handshakes, churn; `None` for a merge.
    pub connections: Option<ConnectionReport>,
    /// Messages sent, warm-up included (the denominator of UDP rates).
    pub sent: u64,
    /// Open loop only.
    pub schedule: Option<ScheduleReport>,
    /// Latencies beyond the histograms' range, recorded as their highest value.
    pub saturated: u64,
    /// The first data error, described (what differed, or what came instead of an echo).
    pub first_error: Option<String>,
    /// The first connection error, if any.
    pub conn_error: Option<String>,
}

impl Report {
    /// Measured messages.
    pub fn messages(&self) -> u64 {
        self.histogram.len()
    }

    /// Measured messages per second.
    pub fn msgs_per_sec(&self) -> f64 {
        crate::clock::per_sec(self.messages(), self.duration)
    }

    /// Echoed bytes per second (one direction), when the message size is known.
    pub fn bytes_per_sec(&self) -> Option<f64> {
        self.wire_bytes.map(|w| self.msgs_per_sec() * w as f64)
    }

    fn udp(&self) -> bool {
        self.config
            .as_ref()
            .is_some_and(|c| c.protocol == Protocol::Udp)
    }

    fn rate_of(&self, n: u64) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            n as f64 / self.sent as f64
        }
    }

    /// Why the run fails; empty when it passes.
    pub fn failures(&self) -> Vec<String> {
        let mut why = Vec::new();
        let e = &self.errors;
        let udp = self.udp();
        if e.fails(udp) > 0 {
            why.push(format!("{} data errors", e.fails(udp)));
        }
        if let Some(c) = &self.connections {
            c.failures(&mut why);
        }
        if let Some(late) = self.late_start {
            why.push(format!(
                "connect phase ended {:.3} s after --start-at",
                late.as_secs_f64()
            ));
        }
        if let Some(m) = &self.merged {
            why.extend(m.failures.iter().cloned());
        }
        if self.config.is_some() && self.messages() == 0 {
            why.push("no messages in the measured window".to_string());
        }
        let max_loss = self.config.as_ref().and_then(|c| c.max_loss);
        if let (true, Some(limit)) = (udp, max_loss) {
            let loss = self.rate_of(e.lost);
            if loss > limit {
                why.push(format!(
                    "loss {:.3}% over --max-loss {:.3}%",
                    loss * 100.0,
                    limit * 100.0
                ));
            }
        }
        why
    }

    /// Whether the run (or every shard of a merge, see `merged.rs`) passed. `None` only
    /// for a report with neither settings nor merge (a library caller's own).
    pub fn verdict(&self) -> Option<bool> {
        (self.config.is_some() || self.merged.is_some()).then(|| self.failures().is_empty())
    }

    /// Whether the run passed (exit status 0).
    pub fn passed(&self) -> bool {
        self.verdict() == Some(true)
    }

    /// Open loop: the warning when loadgen fell behind its schedule (over 1% of the
    /// measured sends more than 1 ms late), without the hint ([`SCHEDULE_HINT`]).
    pub fn schedule_warning(&self) -> Option<String> {
        let s = self.schedule?;
        let messages = self.messages();
        if messages == 0 || s.late_sends * 100 <= messages {
            return None;
        }
        let pct = s.late_sends as f64 * 100.0 / messages as f64;
        Some(format!(
            "loadgen fell behind its schedule ({pct:.1}% of sends late)."
        ))
    }

    /// The `--json` object.
    pub fn to_json(&self) -> serde_json::Value {
        let run = self.config.as_ref();
        let mut v = json!({
            "messages": self.messages(),
            "duration_s": self.duration.as_secs_f64(),
            "msgs_per_sec": self.msgs_per_sec(),
            "bytes_per_sec": self.bytes_per_sec(),
            "latency_us": Latency::of(&self.histogram),
            // A merge has no error or connection counts and no verdict: null, not a
            // misleading zero or pass.
            "errors": run.map(|_| self.errors),
            "sent": run.map(|_| self.sent),
            "passed": self.verdict(),
            "failures": self.verdict().map(|_| self.failures()),
            "merged": self.merged.as_ref().map(Merged::to_json),
            "first_error": self.first_error,
            "conn_error": self.conn_error,
            "settings": run.map(|c| crate::settings::to_json(c, self.wire_bytes, &self.outputs)),
        });
        let (connections, phase, connect) = match &self.connections {
            Some(c) => c.to_json(),
            None => (Value::Null, Value::Null, Value::Null),
        };
        v["connections"] = connections;
        v["connect_phase"] = phase;
        v["connect_latency_us"] = connect;
        if self.saturated > 0 {
            v["saturated"] = json!(self.saturated);
        }
        if self.udp() {
            v["udp"] = json!({
                "loss_rate": self.rate_of(self.errors.lost),
                "late_rate": self.rate_of(self.errors.late),
                "duplicate_rate": self.rate_of(self.errors.duplicate),
            });
        }
        if let Some(s) = self.schedule {
            v["schedule"] = json!(s);
        }
        v
    }

    /// The human report.
    pub fn to_text(&self) -> String {
        let mut t = String::new();
        if let Some(s) = &self.config {
            let mode = match s.rate {
                Some(r) => format!("open loop at {r} msg/s"),
                None => format!("closed loop, pipeline {}", s.pipeline),
            };
            let framed = if s.framed { ", framed" } else { "" };
            let _ = writeln!(
                t,
                "loadgen {} {}: {} connections, {} B messages{framed}, {mode}, {} thread(s)",
                s.protocol, s.target, s.connections, s.size, s.threads
            );
        }
        if let Some(m) = &self.merged {
            let n = m.shards.len();
            let _ = writeln!(t, "loadgen merge: {n} log{}", if n == 1 { "" } else { "s" });
        }
        let _ = writeln!(t, "  duration     {:.3} s", self.duration.as_secs_f64());
        let bytes = self
            .bytes_per_sec()
            .map_or(String::new(), |b| format!(", {:.2} MB/s", b / 1e6));
        let _ = writeln!(
            t,
            "  messages     {} ({:.1} msg/s{bytes})",
            self.messages(),
            self.msgs_per_sec()
        );
        Latency::of(&self.histogram).text("latency us", &mut t);
        if let Some(m) = &self.merged {
            m.text(&mut t);
        } else {
            self.errors_text(&mut t);
        }
        if let Some(c) = &self.connections {
            c.text(&mut t);
        }
        if let Some(e) = &self.first_error {
            let _ = writeln!(t, "  first error  {e}");
        }
        if let Some(e) = &self.conn_error {
            let _ = writeln!(t, "  conn error   {e}");
        }
        if let Some(s) = self.schedule {
            let _ = writeln!(
                t,
                "  schedule     {} of the measured sends were more than 1 ms late (max lag {:.1} us)",
                s.late_sends, s.max_lag_us
            );
            if s.not_sent > 0 {
                let _ = writeln!(
                    t,
                    "  not sent     {} (connection not up when due; {} of them in the measured time)",
                    s.not_sent, s.not_sent_measured
                );
            }
            if let Some(warning) = self.schedule_warning() {
                let _ = writeln!(t, "  WARNING      {warning}");
                let _ = writeln!(t, "               {SCHEDULE_HINT}");
            }
        }
        if self.saturated > 0 {
            let _ = writeln!(
                t,
                "  WARNING      {} latencies beyond the histogram's range were recorded as its maximum",
                self.saturated
            );
        }
        let verdict = match self.verdict() {
            None => "n/a".to_string(),
            Some(true) => "PASS".to_string(),
            Some(false) => format!("FAIL ({})", self.failures().join(", ")),
        };
        let _ = writeln!(t, "  result       {verdict}");
        t
    }

    fn errors_text(&self, t: &mut String) {
        let e = self.errors;
        if e.total() == 0 {
            let _ = writeln!(t, "  errors       none");
            return;
        }
        let _ = writeln!(
            t,
            "  errors       corrupt {}, missing {}, duplicate {}, reordered {}, lost {}, late {}",
            e.corrupt, e.missing, e.duplicate, e.reordered, e.lost, e.late
        );
        if self.udp() {
            let _ = writeln!(
                t,
                "  udp rates    lost {:.4}%, late {:.4}%, duplicate {:.4}% of {} sent",
                self.rate_of(e.lost) * 100.0,
                self.rate_of(e.late) * 100.0,
                self.rate_of(e.duplicate) * 100.0,
                self.sent
            );
        }
    }
}

/// What to do when the schedule slips.
pub const SCHEDULE_HINT: &str =
    "Latencies still count from the schedule, but the load was burstier than \
asked. After a server stall that is expected (the backlog comes back at once); otherwise add \
--threads, lower --rate, or give loadgen its own core.";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RunConfig;
    use crate::latency::new_histogram;

    fn report(hist: Histogram<u64>) -> Report {
        let cfg = RunConfig::new("127.0.0.1:9".parse().unwrap());
        let stats = crate::stats::ThreadStats {
            opened: 50,
            ..Default::default()
        };
        let second = Duration::from_secs(1);
        let conns = ConnectionReport::new(&cfg, &stats, new_histogram(), second, 2 * second);
        Report {
            config: Some(cfg),
            outputs: Outputs::default(),
            started_at: None,
            late_start: None,
            merged: None,
            duration: 2 * second,
            wire_bytes: Some(64),
            histogram: hist,
            errors: ErrorCounts::default(),
            connections: Some(conns),
            sent: 0,
            schedule: None,
            saturated: 0,
            first_error: None,
            conn_error: None,
        }
    }

    fn one_message() -> Histogram<u64> {
        let mut h = new_histogram();
        h.record(1000).unwrap();
        h
    }

    /// The JSON has the keys the issue promises, in microseconds.
    #[test]
    fn json_keys() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let v = report(h).to_json();
        assert_eq!(v["messages"], 1000);
        assert_eq!(v["msgs_per_sec"], 500.0);
        assert_eq!(v["bytes_per_sec"], 32_000.0);
        for k in ["min", "p50", "p90", "p99", "p999", "p9999", "max", "mean"] {
            assert!(v["latency_us"][k].is_number(), "latency_us.{k}");
        }
        assert!((v["latency_us"]["p50"].as_f64().unwrap() - 500.0).abs() < 1.0);
        assert_eq!(v["errors"]["corrupt"], 0);
        assert_eq!(v["connections"]["opened"], 50);
        assert_eq!(v["settings"]["connections"], 50);
        assert_eq!(v["passed"], true);
    }

    /// Any TCP data error, a connection that did not open, or a measured window with no
    /// message fails the run; UDP loss only past the limit.
    #[test]
    fn pass_fail_rules() {
        let mut r = report(one_message());
        assert!(r.passed(), "{}", r.to_text());
        r.errors.reordered = 1;
        assert!(!r.passed());
        r.errors = ErrorCounts::default();
        r.connections.as_mut().unwrap().initial_failed = 1;
        assert!(r
            .to_text()
            .contains("FAIL (opened fewer than asked (49 of 50))"));
        let empty = report(new_histogram());
        assert_eq!(empty.failures(), ["no messages in the measured window"]);
        let mut cfg = RunConfig::new("127.0.0.1:9".parse().unwrap());
        cfg.protocol = Protocol::Udp;
        cfg.max_loss = Some(0.01);
        let mut u = report(one_message());
        u.config = Some(cfg);
        u.sent = 1000;
        u.errors.lost = 10;
        u.errors.late = 3;
        assert!(u.passed(), "1.0% loss is within 1%");
        u.errors.lost = 11;
        assert!(!u.passed());
    }

    /// JSON `settings` holds every flag's value, the outputs included.
    #[test]
    fn settings_hold_every_flag() {
        let mut r = report(one_message());
        r.outputs = Outputs {
            json: true,
            hgrm: Some("a.hgrm".into()),
            plot: None,
        };
        let v = r.to_json();
        let settings = v["settings"].as_object().unwrap();
        for key in ["json", "quiet", "hgrm", "hlog", "plot", "reconnect_after"] {
            assert!(settings.contains_key(key), "{key}: {v}");
        }
        assert_eq!(
            (
                v["settings"]["json"].as_bool(),
                v["settings"]["hgrm"].as_str()
            ),
            (Some(true), Some("a.hgrm"))
        );
    }

    /// A merge's verdict is its shards' ([`Merged`]): its failures fail it; counts the
    /// logs do not carry stay null in JSON.
    #[test]
    fn merge_verdict_is_the_shards() {
        let mut m = report(new_histogram());
        (m.config, m.connections) = (None, None);
        assert_eq!(m.verdict(), None, "neither a run nor a merge");
        m.merged = Some(Merged::check(&[], &[]));
        assert!(m.passed(), "{}", m.to_text());
        m.merged
            .as_mut()
            .unwrap()
            .failures
            .push("shard 1/3 is missing".into());
        assert!(m
            .to_text()
            .contains("  result       FAIL (shard 1/3 is missing)\n"));
        let v = m.to_json();
        assert_eq!(v["passed"], false);
        assert_eq!(v["failures"][0], "shard 1/3 is missing");
        for key in [
            "sent",
            "errors",
            "connections",
            "connect_latency_us",
            "settings",
        ] {
            assert!(v[key].is_null(), "{key}: {v}");
        }
    }

    /// The schedule warning appears past 1% late sends, in the text report and on its own.
    #[test]
    fn schedule_warning_past_one_percent() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let mut r = report(h);
        let late = |late_sends| ScheduleReport {
            target_rate: 500.0,
            late_sends,
            max_lag_us: 5000.0,
            not_sent: 3,
            not_sent_measured: 0,
        };
        r.schedule = Some(late(10));
        assert_eq!(r.schedule_warning(), None);
        r.schedule = Some(late(34));
        let w = r.schedule_warning().unwrap();
        assert_eq!(w, "loadgen fell behind its schedule (3.4% of sends late).");
        let text = r.to_text();
        assert!(text.contains(&format!("  WARNING      {w}")));
        let not_sent =
            "  not sent     3 (connection not up when due; 0 of them in the measured time)";
        assert!(text.contains(not_sent), "{text}");
    }

    /// A data error and a connection error each get their line and JSON key.
    #[test]
    fn first_and_conn_errors_are_shown() {
        let mut r = report(new_histogram());
        r.errors.corrupt = 1;
        r.first_error = Some("conn 3 seq 17: byte 20 differs".into());
        r.conn_error = Some("Connection reset by peer".into());
        let text = r.to_text();
        assert!(
            text.contains("  first error  conn 3 seq 17: byte 20 differs\n"),
            "{text}"
        );
        assert!(
            text.contains("  conn error   Connection reset by peer\n"),
            "{text}"
        );
        let v = r.to_json();
        assert_eq!(v["first_error"], "conn 3 seq 17: byte 20 differs");
        assert_eq!(v["conn_error"], "Connection reset by peer");
    }
}
