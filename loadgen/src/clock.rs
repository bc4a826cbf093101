//! Time as the reactors keep it: nanoseconds since the run's epoch, in a `u64`. Every
//! decision (deadlines, the schedule, the ramp, the timeline) takes such a `now` as a
//! parameter; only [`crate::ctx::Ctx::refresh_now`] reads the clock.

use std::time::Duration;

/// A duration in ns, saturating: user durations are capped far below the ~584 years a
/// u64 holds, but a library caller may pass `Duration::MAX` to mean "never".
pub(crate) fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
