//! The end line of a `.hlog`: one comment loadgen writes after the last interval, carrying
//! what `loadgen merge` needs to give a verdict that the latencies alone cannot.
//!
//! ```text
//! #loadgen end {"shard":"1/3","passed":true,"failures":[],"messages":6000,...}
//! ```
//!
//! HdrHistogram readers skip comment lines, so the log stays a standard interval log.
//! Written last, it doubles as the proof that the log is whole: a log without it was cut
//! short (the run was killed, the disk filled) and fails the merge. It says which shard
//! of which run the log is (so a missing or doubled shard is noticed), the run's own
//! verdict and failures, how many messages its intervals hold (checked against them), and
//! the measured window in Unix seconds (for the common window). This module both writes
//! and reads it.

use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::shard::{Shard, ShardError};

/// The comment prefix of the end line (after the `#`).
pub(crate) const PREFIX: &str = "loadgen end ";

/// What a finished run says about itself at the end of its `.hlog`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct EndLine {
    /// `I/N` of `--shard` (`0/1` unsharded).
    pub(crate) shard: String,
    /// The run's verdict.
    pub(crate) passed: bool,
    /// Why it failed (the report's failures, or the error that ended it).
    pub(crate) failures: Vec<String>,
    /// Messages measured: the sum of the log's intervals.
    pub(crate) messages: u64,
    /// The measured window, Unix seconds `[start, end)`; `None` if it never began.
    pub(crate) window: Option<(f64, f64)>,
    /// The run the shard belongs to: every shard of one run has the same.
    pub(crate) run: RunId,
}

/// What every shard of one run shares; `merge` refuses to add shards of different runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RunId {
    /// `--connections`, the whole run's.
    pub(crate) connections: usize,
    /// `--rate`, the whole run's, if open loop.
    pub(crate) rate: Option<f64>,
    /// `--start-at`, Unix seconds, if set.
    pub(crate) start_at: Option<f64>,
    /// `--duration`, seconds.
    pub(crate) duration_s: f64,
}

impl EndLine {
    /// The end line of this process's shard of a run of `cfg`: its verdict and
    /// `failures`, the `messages` its intervals hold, its measured `window` (Unix seconds,
    /// `None` if it never began). The runner derives these from the run's outcome, so this
    /// module knows the format, not the report.
    pub(crate) fn new(
        cfg: &RunConfig,
        passed: bool,
        failures: Vec<String>,
        messages: u64,
        window: Option<(f64, f64)>,
    ) -> EndLine {
        EndLine {
            shard: cfg.shard.to_string(),
            passed,
            failures,
            messages,
            window,
            run: RunId {
                connections: cfg.connections,
                rate: cfg.rate,
                start_at: cfg.start_at.map(crate::start::unix_secs),
                duration_s: cfg.duration.as_secs_f64(),
            },
        }
    }

    /// The comment line, without the leading `#` (the log writer adds it).
    pub(crate) fn to_comment(&self) -> String {
        let json = serde_json::to_string(self).expect("an EndLine serialises");
        format!("{PREFIX}{json}")
    }

    /// The shard this line names, if it parses.
    pub(crate) fn shard(&self) -> Result<Shard, ShardError> {
        Shard::parse(&self.shard)
    }

    /// Finds and parses the end line in a log's text. `Ok(None)`: there is none (the log
    /// was cut short, or not written by loadgen); `Err`: one is there but unreadable.
    pub(crate) fn find(log: &str) -> Result<Option<EndLine>, EndLineError> {
        let Some(json) = log
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix('#').and_then(|l| l.strip_prefix(PREFIX)))
        else {
            return Ok(None);
        };
        serde_json::from_str(json).map(Some).map_err(EndLineError)
    }
}

/// An end line is there but its JSON does not parse: the log was damaged or edited.
#[derive(Debug, thiserror::Error)]
#[error("unreadable end line: {0}")]
pub struct EndLineError(serde_json::Error);

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> EndLine {
        EndLine {
            shard: "1/3".into(),
            passed: false,
            failures: vec!["could not connect to 127.0.0.1:9: Connection refused".into()],
            messages: 0,
            window: None,
            run: RunId {
                connections: 30,
                rate: Some(6000.0),
                start_at: Some(1_767_225_600.5),
                duration_s: 3.0,
            },
        }
    }

    /// Written and read back, the line is the same; a log without one has none, a
    /// damaged one is an error, not a silent "none".
    #[test]
    fn round_trip() {
        let log = format!(
            "#[StartTime: 1]\n0.000,1.000,0.5,HISTFAAA\n#{}\n",
            line().to_comment()
        );
        assert_eq!(EndLine::find(&log).unwrap(), Some(line()));
        assert_eq!(line().shard(), Ok(Shard { index: 1, count: 3 }));
        assert_eq!(EndLine::find("0.000,1.000,0.5,HISTFAAA\n").unwrap(), None);
        let cut = format!("#{PREFIX}{{\"shard\":\"1/3\",\"pas");
        assert!(matches!(EndLine::find(&cut), Err(EndLineError(_))));
    }
}
