//! The verdict of `loadgen merge`: which shards were merged, whether each one passed, and
//! whether any is missing, doubled, cut short or from another run.
//!
//! A merged PASS means every log ended with a passing end line ([`crate::endline`]), each
//! log's intervals hold the messages its end line counts, and, for the shards of one
//! sharded run, every shard `0..N` is there exactly once with the same run settings and
//! their measured windows overlap. The merged rate is taken over the **common window** (the
//! span every shard measured): with `--start-at` that is the whole window, up to the
//! clocks' skew, which is reported.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::endline::EndLine;
use crate::shard::Shard;

/// One input log, as `merge` read it.
#[derive(Debug, Clone)]
pub(crate) struct Input {
    /// The file.
    pub(crate) path: PathBuf,
    /// Messages its intervals hold.
    pub(crate) messages: u64,
    /// Its end line, if it has one.
    pub(crate) end: Option<EndLine>,
}

/// What merging found, beyond the added histograms.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    /// Per log: path, shard (if known), passed, messages.
    pub shards: Vec<(PathBuf, Option<Shard>, bool, u64)>,
    /// Why the merge fails; empty when every shard passed and all are there.
    pub failures: Vec<String>,
    /// The span every shard measured, Unix seconds, if the logs are shards of one run.
    pub common: Option<(f64, f64)>,
    /// How far apart the shards' window starts are, seconds (clock skew plus start jitter).
    pub start_spread: f64,
    /// Messages per second of wall clock across all logs, by interval start (Unix s).
    pub per_second: Vec<(f64, u64)>,
}

impl Merged {
    /// Checks the inputs; `intervals` are every log's (start Unix s, messages).
    pub(crate) fn check(inputs: &[Input], intervals: &[(f64, u64)]) -> Merged {
        let mut failures = Vec::new();
        let mut shards = Vec::new();
        let mut ends = Vec::new();
        for input in inputs {
            let path = input.path.display();
            let Some(end) = &input.end else {
                failures.push(format!(
                    "{path}: no end line: the run was cut short (or the log is not loadgen's)"
                ));
                shards.push((input.path.clone(), None, false, input.messages));
                continue;
            };
            let shard = end.shard().ok();
            let label = shard.map_or(end.shard.clone(), |s| s.to_string());
            if shard.is_none() {
                failures.push(format!("{path}: bad shard '{}' in its end line", end.shard));
            }
            if end.messages != input.messages {
                failures.push(format!(
                    "{path}: holds {} messages but its end line says {}: truncated",
                    input.messages, end.messages
                ));
            }
            if !end.passed {
                let why = end.failures.join(", ");
                failures.push(format!("shard {label} ({path}) failed: {why}"));
            }
            shards.push((input.path.clone(), shard, end.passed, input.messages));
            ends.push((shard, end));
        }
        let (common, start_spread) = check_run(&ends, &mut failures);
        Merged {
            shards,
            failures,
            common,
            start_spread,
            per_second: by_second(intervals),
        }
    }

    /// The merge part of the text report.
    pub fn text(&self, t: &mut String) {
        use std::fmt::Write as _;
        for (path, shard, passed, messages) in &self.shards {
            let shard = shard.map_or("?".to_string(), |s| s.to_string());
            let verdict = if *passed { "PASS" } else { "FAIL" };
            let _ = writeln!(
                t,
                "  shard {shard:<6} {verdict}  {messages} messages  {}",
                path.display()
            );
        }
        if let Some((a, b)) = self.common {
            let _ = writeln!(
                t,
                "  window       common {:.3} s from {a:.3} (Unix s); shard starts within {:.1} ms",
                b - a,
                self.start_spread * 1e3
            );
        }
        let counts: Vec<String> = self.per_second.iter().map(|(_, n)| n.to_string()).collect();
        let _ = writeln!(t, "  per second   {}", counts.join(" "));
    }

    /// The `merged` object of `--json`.
    pub fn to_json(&self) -> Value {
        let shards: Vec<Value> = self
            .shards
            .iter()
            .map(|(path, shard, passed, messages)| {
                json!({
                    "file": path,
                    "shard": shard.map(|s| s.to_string()),
                    "passed": passed,
                    "messages": messages,
                })
            })
            .collect();
        json!({
            "shards": shards,
            "common_window": self.common,
            "start_spread_s": self.start_spread,
            "per_second": self.per_second,
        })
    }
}

/// For shards of one sharded run: the same run, every index once, windows that overlap.
/// Returns the common window and the spread of the starts. Logs of unsharded runs (each
/// `0/1`) are independent runs merged one after another: nothing to check.
fn check_run(
    ends: &[(Option<Shard>, &EndLine)],
    failures: &mut Vec<String>,
) -> (Option<(f64, f64)>, f64) {
    let counts: Vec<usize> = ends
        .iter()
        .filter_map(|(s, _)| s.map(|s| s.count))
        .collect();
    let Some(&n) = counts.iter().max() else {
        return (None, 0.0);
    };
    if n == 1 {
        return (None, 0.0);
    }
    if counts.iter().any(|&c| c != n) || ends.windows(2).any(|w| w[0].1.run != w[1].1.run) {
        failures.push(
            "the logs are not all shards of one run (shard counts or settings differ)".into(),
        );
        return (None, 0.0);
    }
    let mut seen = vec![0usize; n];
    ends.iter()
        .flat_map(|(s, _)| *s)
        .for_each(|s| seen[s.index] += 1);
    for (i, times) in seen.iter().enumerate() {
        match times {
            0 => failures.push(format!("shard {i}/{n} is missing")),
            1 => {}
            k => failures.push(format!("shard {i}/{n} is given {k} times")),
        }
    }
    let windows: Vec<(f64, f64)> = ends.iter().filter_map(|(_, e)| e.window).collect();
    if windows.len() < ends.len() || windows.is_empty() {
        return (None, 0.0);
    }
    let start = windows.iter().map(|w| w.0).fold(f64::MIN, f64::max);
    let end = windows.iter().map(|w| w.1).fold(f64::MAX, f64::min);
    let first = windows.iter().map(|w| w.0).fold(f64::MAX, f64::min);
    if end <= start {
        failures.push("the shards' measured windows do not overlap (use --start-at)".into());
        return (None, start - first);
    }
    (Some((start, end)), start - first)
}

/// Adds the logs' intervals that start at the same wall-clock instant (to the ms).
fn by_second(intervals: &[(f64, u64)]) -> Vec<(f64, u64)> {
    let mut sums: BTreeMap<i64, u64> = BTreeMap::new();
    for &(start, n) in intervals {
        *sums.entry((start * 1e3).round() as i64).or_default() += n;
    }
    sums.into_iter()
        .map(|(ms, n)| (ms as f64 / 1e3, n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endline::RunId;

    fn input(shard: &str, passed: bool, messages: u64, start: f64) -> Input {
        Input {
            path: format!("s{shard}.hlog").replace('/', "of").into(),
            messages,
            end: Some(EndLine {
                shard: shard.into(),
                passed,
                failures: if passed {
                    vec![]
                } else {
                    vec!["1 data errors".into()]
                },
                messages,
                window: Some((start, start + 3.0)),
                run: RunId {
                    connections: 30,
                    rate: Some(6000.0),
                    start_at: Some(100.0),
                    duration_s: 3.0,
                },
            }),
        }
    }

    /// Three passing shards of one run pass, with their common window and skew.
    #[test]
    fn complete_run_passes() {
        let ins = [
            input("0/3", true, 6000, 100.0),
            input("1/3", true, 6000, 100.002),
            input("2/3", true, 6000, 100.001),
        ];
        let m = Merged::check(&ins, &[(100.0, 5), (100.0, 7), (101.0, 1)]);
        assert_eq!(m.failures, Vec::<String>::new());
        let (a, b) = m.common.unwrap();
        assert!((a - 100.002).abs() < 1e-9 && (b - 103.0).abs() < 1e-9);
        assert!((m.start_spread - 0.002).abs() < 1e-9);
        assert_eq!(m.per_second, [(100.0, 12), (101.0, 1)]);
    }

    /// A failed, missing, doubled, truncated or unterminated shard each fails the merge,
    /// saying which.
    #[test]
    fn every_gap_fails() {
        let ok = |i: usize| input(&format!("{i}/3"), true, 6000, 100.0);
        let fails = |ins: &[Input]| Merged::check(ins, &[]).failures.join("; ");
        let failed = fails(&[ok(0), input("1/3", false, 10, 100.0), ok(2)]);
        assert!(
            failed.contains("shard 1/3 (s1of3.hlog) failed: 1 data errors"),
            "{failed}"
        );
        assert!(fails(&[ok(0), ok(2)]).contains("shard 1/3 is missing"));
        assert!(fails(&[ok(0), ok(1), ok(1), ok(2)]).contains("shard 1/3 is given 2 times"));
        let mut cut = ok(1);
        cut.messages = 4000;
        assert!(
            fails(&[ok(0), cut, ok(2)]).contains("holds 4000 messages but its end line says 6000")
        );
        let mut open = ok(1);
        open.end = None;
        assert!(fails(&[ok(0), open, ok(2)]).contains("no end line"));
        let mut other = ok(1);
        other.end.as_mut().unwrap().run.connections = 31;
        assert!(fails(&[ok(0), other, ok(2)]).contains("not all shards of one run"));
        let late = input("1/3", true, 6000, 104.0);
        assert!(fails(&[ok(0), late, ok(2)]).contains("do not overlap"));
        // Unsharded runs merge one after another: each must pass, nothing else.
        assert_eq!(
            fails(&[input("0/1", true, 5, 0.0), input("0/1", true, 5, 10.0)]),
            ""
        );
    }
}
