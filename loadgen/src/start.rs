//! `--start-at TIME`: a measured window fixed in wall-clock time, so that shards on
//! different machines measure the same seconds.
//!
//! TIME is Unix seconds (UTC), fractions allowed (`date -d '+30 sec' +%s.%N` prints one).
//! The run connects as soon as it starts, warms up for `--warmup` before TIME (open loop:
//! the schedule starts then; closed loop: traffic flows from the end of the connect phase),
//! measures `[TIME, TIME + --duration)`, and stamps its `.hlog` intervals from TIME.
//!
//! Each process turns TIME into its own monotonic clock once, at the start, so the window
//! is only as aligned as the machines' wall clocks are: they must be synchronised (NTP or
//! chrony; typically within a few ms on one network). A skew of `s` shifts one shard's
//! window by `s`: merged totals stay right as long as the load is steady, and the merged
//! rate over the common window is off by about `s / duration` (10 ms over a 60 s run is
//! 0.02 %). A shard whose connect phase ends after TIME fails: its window would start
//! with connections missing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How far ahead TIME may be: further is more likely a typo (milliseconds for seconds)
/// than a plan.
pub(crate) const MAX_AHEAD: Duration = Duration::from_secs(24 * 3600);

/// Parses Unix seconds, fractions allowed: `1767225600`, `1767225600.25`.
#[cfg_attr(not(feature = "cli"), allow(dead_code))] // the command line's parser
pub(crate) fn parse_start_at(text: &str) -> Result<SystemTime, UnixSecsError> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| UnixSecsError::Syntax(text.to_string()))?;
    if !(secs.is_finite() && secs > 0.0) {
        return Err(UnixSecsError::Before1970(text.to_string()));
    }
    Duration::try_from_secs_f64(secs)
        .ok()
        .and_then(|d| UNIX_EPOCH.checked_add(d))
        .ok_or_else(|| UnixSecsError::TooLate(text.to_string()))
}

/// Why a `--start-at` value is not a time.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[cfg_attr(not(feature = "cli"), allow(dead_code))] // the command line's parser
pub(crate) enum UnixSecsError {
    #[error("'{0}' is not Unix seconds (e.g. $(date -d '+30 sec' +%s), fractions allowed)")]
    Syntax(String),
    #[error("'{0}' is not a time after 1970")]
    Before1970(String),
    #[error("'{0}' is too far in the future")]
    TooLate(String),
}

/// Unix seconds of `t`, for reports and logs.
pub(crate) fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Why `--start-at` does not fit the clock; each says what to pick instead. All are usage
/// errors ([`crate::ConfigError::StartAt`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StartAtError {
    /// TIME has passed.
    #[error("{at:.3} is {ago:.3} s in the past: pick a time ahead of every shard's start")]
    Past {
        /// TIME, Unix seconds.
        at: f64,
        /// How long ago, seconds.
        ago: f64,
    },
    /// TIME is more than 24 h away: probably milliseconds given as seconds.
    #[error("{at:.3} is {ahead:.0} s ahead, more than {} h (Unix seconds, not milliseconds?)", MAX_AHEAD.as_secs() / 3600)]
    TooFar {
        /// TIME, Unix seconds.
        at: f64,
        /// How far ahead, seconds.
        ahead: f64,
    },
    /// TIME leaves less than `--warmup` to connect and warm up.
    #[error("{at:.3} is only {ahead:.3} s ahead, less than --warmup {warmup:?}: leave time to connect and warm up")]
    TooClose {
        /// TIME, Unix seconds.
        at: f64,
        /// How far ahead, seconds.
        ahead: f64,
        /// The `--warmup` it must leave.
        warmup: Duration,
    },
}

/// Checks TIME against the clock `now`: it must leave `--warmup` (and so the connect
/// phase) before it, and be at most [`MAX_AHEAD`] away.
pub(crate) fn check(
    start_at: SystemTime,
    now: SystemTime,
    warmup: Duration,
) -> Result<(), StartAtError> {
    let at = unix_secs(start_at);
    let ahead = match start_at.duration_since(now) {
        Ok(ahead) => ahead,
        Err(e) => {
            let ago = e.duration().as_secs_f64();
            return Err(StartAtError::Past { at, ago });
        }
    };
    if ahead > MAX_AHEAD {
        let ahead = ahead.as_secs_f64();
        return Err(StartAtError::TooFar { at, ahead });
    }
    if ahead < warmup {
        let ahead = ahead.as_secs_f64();
        return Err(StartAtError::TooClose { at, ahead, warmup });
    }
    Ok(())
}

/// TIME as ns on the run's monotonic clock, whose zero is the wall-clock time `epoch`
/// (0 if TIME is before it, which [`check`] rules out).
pub(crate) fn epoch_ns(start_at: SystemTime, epoch: SystemTime) -> u64 {
    start_at.duration_since(epoch).map_or(0, crate::clock::ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;

    /// Unix seconds parse with fractions; junk, zero and negative times do not.
    #[test]
    fn parses_unix_seconds() {
        let t = parse_start_at("1767225600.25").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap(),
            Duration::from_millis(1_767_225_600_250)
        );
        assert!((unix_secs(t) - 1_767_225_600.25).abs() < 1e-6);
        for bad in ["", "soon", "-5", "0", "nan", "inf", "1e300"] {
            assert!(parse_start_at(bad).is_err(), "{bad}");
        }
    }

    /// Past, too far ahead, and too close for the warm-up are usage errors naming
    /// --start-at; a time in range is fine.
    #[test]
    fn checks_against_the_clock() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let s = Duration::from_secs(1);
        let at = unix_secs(now);
        let past = check(now - 2 * s, now, s);
        assert_eq!(
            past,
            Err(StartAtError::Past {
                at: at - 2.0,
                ago: 2.0
            })
        );
        let far = check(now + MAX_AHEAD + s, now, s);
        assert!(matches!(far, Err(StartAtError::TooFar { .. })), "{far:?}");
        let close = check(now + s / 2, now, s);
        assert!(
            matches!(close, Err(StartAtError::TooClose { warmup, .. }) if warmup == s),
            "{close:?}"
        );
        // Said as a usage error naming the flag.
        let usage = ConfigError::from(close.unwrap_err()).to_string();
        assert!(
            usage.starts_with("--start-at: ") && usage.contains("--warmup"),
            "{usage}"
        );
        assert_eq!(check(now + 5 * s, now, s), Ok(()));
        assert_eq!(epoch_ns(now + 5 * s, now), 5_000_000_000);
        assert_eq!(epoch_ns(now, now + s), 0);
    }
}
