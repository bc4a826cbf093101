//! Time as the reactors keep it: nanoseconds since the run's epoch, in a `u64`. Every
//! decision (deadlines, the schedule, the ramp, the timeline) takes such a `now` as a
//! parameter; only [`crate::ctx::Ctx::refresh_now`] reads the clock. And the one way a
//! count becomes a rate ([`per_sec`]).

use std::time::Duration;

/// `count` per second of `d`; 0 over an empty span (a run that never measured), not a
/// division by zero. Every rate a report shows goes through here.
pub(crate) fn per_sec(count: u64, d: Duration) -> f64 {
    match d.as_secs_f64() {
        secs if secs > 0.0 => count as f64 / secs,
        _ => 0.0,
    }
}

/// A duration in ns, saturating: user durations are capped far below the ~584 years a
/// u64 holds, but a library caller may pass `Duration::MAX` to mean "never".
pub(crate) fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
